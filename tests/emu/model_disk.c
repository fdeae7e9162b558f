/*
 * `disk` and its variants: a USB flash stick, mass storage 8/6/0x50
 * (SCSI transparent, Bulk-Only Transport), bulk OUT 0x01 and IN 0x81 of
 * 512 bytes, backed by memory images filled with disk_pattern.h.
 *
 *   disk            SanDisk Cruzer Contour 0781:540e (descriptors from
 *                   /work/shared/devices): 64 MiB of 512-byte blocks
 *   disk-4k         the same with 4096-byte blocks
 *   disk-2lun       SanDisk Cruzer Titanium 0781:5200: GET MAX LUN = 1,
 *                   LUN 0 64 MiB, LUN 1 16 MiB (LUN 1's pattern differs)
 *   disk-stall      stalls bulk IN halfway through the data stage of the
 *                   first READ at or past 1 MiB, then fails it with
 *                   ABORTED COMMAND; works again once the halt is cleared
 *   disk-phase      answers the first READ at or past 1 MiB with a phase
 *                   error (CSW status 2); works again after reset recovery
 *   disk-nomedium   TEST UNIT READY: NOT READY, medium not present (3A)
 *   disk-ro         MODE SENSE reports write protect; writes fail with
 *                   DATA PROTECT (27)
 *   disk-bad        reads of blocks 8192..8199 fail with MEDIUM ERROR,
 *                   unrecovered read error (11); writes there with
 *                   MEDIUM ERROR, write error (0C)
 *   disk-120k       a READ or WRITE of more than 240 blocks (120 KiB)
 *                   fails with ILLEGAL REQUEST, invalid field in CDB (24),
 *                   as firmware that takes no longer transfers does
 *
 * Every variant answers the first command other than INQUIRY and
 * REQUEST SENSE with UNIT ATTENTION (power on, 29), as real sticks do.
 * START STOP UNIT with LoEj ejects the medium.  Commands run as BOT 1.0
 * says: CBW on OUT, data, CSW on IN; a CBW that is not valid stalls both
 * endpoints until a Bulk-Only Mass Storage Reset.  A command that fails
 * with data expected stalls the data endpoint, then sends its CSW.
 */
#include "emu.h"

#include <stdlib.h>
#include <string.h>

#include "disk_pattern.h"
#include "proto.h"

#define DISK_EP_OUT 0x01
#define DISK_EP_IN  0x81
#define DISK_LUNS   2
#define MIB	    (1024u * 1024u)
#define TRIGGER_OFF (1u * MIB) /* where the stall and phase variants misbehave */
#define BAD_LBA	    8192u
#define BAD_COUNT   8u

struct disk_cfg {
	const struct emu_model *model;
	unsigned nluns;
	uint32_t block_size;
	uint64_t bytes[DISK_LUNS];
	bool stall_once, phase_once, no_medium, write_protected, bad_blocks;
	uint32_t max_blocks; /* a READ or WRITE of more fails (0: any length) */
};

enum disk_stage { EXPECT_CBW, DATA_IN, DATA_OUT, STATUS };

struct disk_lun {
	uint8_t *image;
	uint64_t blocks;
	uint32_t bs;
	bool medium, wp;
	uint8_t key, asc; /* sense of the last failure */
};

struct disk {
	const struct disk_cfg *cfg;
	struct disk_lun luns[DISK_LUNS];
	struct disk_lun *cur; /* LUN of the command in progress */
	bool unit_attention;
	enum disk_stage stage;
	uint32_t tag, expected;
	bool dir_in;
	const uint8_t *in_data; /* DATA_IN: what to send */
	uint32_t in_len, in_off;
	uint8_t *out_dest; /* DATA_OUT: where it goes, NULL: stall */
	uint32_t out_len, out_off;
	uint8_t status;
	uint32_t residue;
	bool stall_in; /* DATA_IN: stall halfway (the stall variant) */
	bool in_halted, out_halted, need_reset;
	bool stall_done, phase_done;
	uint8_t resp[64];
};

static const struct disk_cfg *cfg_of(const struct emu_model *m);

static int disk_init(struct emu_dev *dev)
{
	const struct disk_cfg *cfg = cfg_of(dev->model);
	struct disk *d = calloc(1, sizeof(*d));

	if (d == NULL || cfg == NULL) {
		free(d);
		return -ENOMEM;
	}
	d->cfg = cfg;
	d->unit_attention = true;
	for (unsigned l = 0; l < cfg->nluns; l++) {
		struct disk_lun *lun = &d->luns[l];
		uint64_t *w;

		lun->bs = cfg->block_size;
		lun->blocks = cfg->bytes[l] / cfg->block_size;
		lun->medium = !cfg->no_medium;
		lun->wp = cfg->write_protected;
		if ((lun->image = malloc(cfg->bytes[l])) == NULL)
			goto fail;
		w = (uint64_t *)(void *)lun->image;
		for (uint64_t i = 0; i < cfg->bytes[l] / 8; i++)
			put_le64((uint8_t *)&w[i], emu_disk_word(l, i));
	}
	dev->state = d;
	return 0;
fail:
	for (unsigned l = 0; l < DISK_LUNS; l++)
		free(d->luns[l].image);
	free(d);
	return -ENOMEM;
}

static void disk_fini(struct emu_dev *dev)
{
	struct disk *d = dev->state;

	if (d == NULL)
		return;
	for (unsigned l = 0; l < DISK_LUNS; l++)
		free(d->luns[l].image);
	free(d);
	dev->state = NULL;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void set_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

/* The command fails: CHECK CONDITION with this sense, no data. */
static void fail(struct disk *d, struct disk_lun *lun, uint8_t key, uint8_t asc)
{
	if (lun != NULL) {
		lun->key = key;
		lun->asc = asc;
	}
	d->status = 1;
	d->in_len = 0;
	d->out_dest = NULL;
}

static void send(struct disk *d, const uint8_t *p, uint32_t len)
{
	d->in_data = p;
	d->in_len = len < d->expected ? len : d->expected;
}

/* READ/WRITE range check; the byte offset of the first block, or -1 after failing. */
static int64_t rw_range(struct disk *d, struct disk_lun *lun, uint64_t lba, uint64_t count)
{
	if (!lun->medium) {
		fail(d, lun, 0x02, 0x3a);
		return -1;
	}
	if (lba > lun->blocks || count > lun->blocks - lba || count * lun->bs != d->expected) {
		fail(d, lun, 0x05, 0x21); /* LBA out of range (or a length that disagrees) */
		return -1;
	}
	if (d->cfg->max_blocks != 0 && count > d->cfg->max_blocks) {
		fail(d, lun, 0x05, 0x24);
		return -1;
	}
	return (int64_t)(lba * lun->bs);
}

static void read_cmd(struct disk *d, struct disk_lun *lun, uint64_t lba, uint64_t count)
{
	int64_t off = rw_range(d, lun, lba, count);

	if (off < 0)
		return;
	if (d->cfg->bad_blocks && lba < BAD_LBA + BAD_COUNT && lba + count > BAD_LBA)
		return fail(d, lun, 0x03, 0x11);
	send(d, lun->image + off, (uint32_t)(count * lun->bs));
	if ((uint64_t)off + count * lun->bs > TRIGGER_OFF) {
		if (d->cfg->stall_once && !d->stall_done) {
			d->stall_done = true;
			d->stall_in = true;
		} else if (d->cfg->phase_once && !d->phase_done) {
			d->phase_done = true;
			d->status = 2;
		}
	}
}

static void write_cmd(struct disk *d, struct disk_lun *lun, uint64_t lba, uint64_t count)
{
	int64_t off = rw_range(d, lun, lba, count);

	if (off < 0)
		return;
	if (lun->wp)
		return fail(d, lun, 0x07, 0x27);
	if (d->cfg->bad_blocks && lba < BAD_LBA + BAD_COUNT && lba + count > BAD_LBA)
		return fail(d, lun, 0x03, 0x0c);
	d->out_dest = lun->image + off;
	d->out_len = (uint32_t)(count * lun->bs);
}

/* Runs the SCSI command of a valid CBW; sets what the data and status stages do. */
static void execute(struct disk *d, const uint8_t *cbw)
{
	const uint8_t *cdb = cbw + 15;
	unsigned l = cbw[13] & 0x0f;
	struct disk_lun *lun = l < d->cfg->nluns ? &d->luns[l] : NULL;
	uint8_t op = cdb[0];

	d->status = 0;
	d->in_data = NULL;
	d->in_len = d->in_off = 0;
	d->out_dest = NULL;
	d->out_len = d->out_off = 0;
	d->stall_in = false;
	d->cur = lun;
	if (lun == NULL)
		return fail(d, NULL, 0x05, 0x25);
	if (d->unit_attention && op != 0x12 && op != 0x03) {
		d->unit_attention = false;
		return fail(d, lun, 0x06, 0x29);
	}
	switch (op) {
	case 0x00: /* TEST UNIT READY */
		if (!lun->medium)
			fail(d, lun, 0x02, 0x3a);
		return;
	case 0x03: /* REQUEST SENSE, fixed format */
		memset(d->resp, 0, 18);
		d->resp[0] = 0x70;
		d->resp[2] = lun->key;
		d->resp[7] = 10;
		d->resp[12] = lun->asc;
		lun->key = lun->asc = 0;
		return send(d, d->resp, 18);
	case 0x12: /* INQUIRY */
		memset(d->resp, 0, 36);
		d->resp[1] = 0x80; /* removable */
		d->resp[2] = 0x02;
		d->resp[3] = 0x02;
		d->resp[4] = 31;
		memcpy(d->resp + 8, "SanDisk ", 8);
		memcpy(d->resp + 16,
		       d->cfg->model == &emu_model_disk_2lun ? "Cruzer Titanium " : "Cruzer Contour  ", 16);
		memcpy(d->resp + 32, d->cfg->model == &emu_model_disk_2lun ? "0.4 " : "0.10", 4);
		return send(d, d->resp, 36);
	case 0x1a: /* MODE SENSE(6): the header only */
		memset(d->resp, 0, 4);
		d->resp[0] = 3;
		d->resp[2] = lun->wp ? 0x80 : 0;
		return send(d, d->resp, 4);
	case 0x1b: /* START STOP UNIT */
		if ((cdb[4] & 0x03) == 0x02)
			lun->medium = false;
		return;
	case 0x25: /* READ CAPACITY(10) */
		if (!lun->medium)
			return fail(d, lun, 0x02, 0x3a);
		set_be32(d->resp, lun->blocks - 1 > 0xffffffffu ? 0xffffffffu : (uint32_t)(lun->blocks - 1));
		set_be32(d->resp + 4, lun->bs);
		return send(d, d->resp, 8);
	case 0x9e: /* READ CAPACITY(16) */
		if ((cdb[1] & 0x1f) != 0x10)
			return fail(d, lun, 0x05, 0x20);
		if (!lun->medium)
			return fail(d, lun, 0x02, 0x3a);
		memset(d->resp, 0, 32);
		set_be32(d->resp, (uint32_t)((lun->blocks - 1) >> 32));
		set_be32(d->resp + 4, (uint32_t)(lun->blocks - 1));
		set_be32(d->resp + 8, lun->bs);
		return send(d, d->resp, 32);
	case 0x28: /* READ(10) */
		return read_cmd(d, lun, be32(cdb + 2), (uint64_t)cdb[7] << 8 | cdb[8]);
	case 0x88: /* READ(16) */
		return read_cmd(d, lun, (uint64_t)be32(cdb + 2) << 32 | be32(cdb + 6), be32(cdb + 10));
	case 0x2a: /* WRITE(10) */
		return write_cmd(d, lun, be32(cdb + 2), (uint64_t)cdb[7] << 8 | cdb[8]);
	case 0x8a: /* WRITE(16) */
		return write_cmd(d, lun, (uint64_t)be32(cdb + 2) << 32 | be32(cdb + 6), be32(cdb + 10));
	case 0x35: /* SYNCHRONIZE CACHE(10) */
		if (!lun->medium)
			fail(d, lun, 0x02, 0x3a);
		return;
	}
	fail(d, lun, 0x05, 0x20); /* invalid command operation code */
}

static void take_cbw(struct disk *d, struct emu_urb *urb)
{
	const uint8_t *cbw = urb->data;

	if (urb->length != 31 || get_le32(cbw) != 0x43425355u || cbw[14] < 1 || cbw[14] > 16) {
		emu_log("disk: CBW not valid; stalling until reset");
		d->in_halted = d->out_halted = d->need_reset = true;
		return emu_urb_complete(urb, -EPIPE, 0);
	}
	d->tag = get_le32(cbw + 4);
	d->expected = get_le32(cbw + 8);
	d->dir_in = (cbw[12] & 0x80) != 0;
	execute(d, cbw);
	if (d->expected == 0)
		d->stage = STATUS;
	else
		d->stage = d->dir_in ? DATA_IN : DATA_OUT;
	d->residue = d->expected;
	emu_urb_complete(urb, 0, 31);
}

static void give_data(struct disk *d, struct emu_urb *urb)
{
	uint32_t left = d->in_len - d->in_off;
	uint32_t n = left < urb->length ? left : urb->length;

	if (!d->dir_in || d->in_len == 0) {
		/* Nothing to send (failed, or the host asked the wrong way): stall, then the CSW. */
		d->in_halted = true;
		d->stage = STATUS;
		return emu_urb_complete(urb, -EPIPE, 0);
	}
	if (d->stall_in) {
		n /= 2;
		memcpy(urb->data, d->in_data + d->in_off, n);
		d->residue -= n;
		d->in_halted = true;
		d->stage = STATUS;
		d->status = 1;
		d->cur->key = 0x0b; /* ABORTED COMMAND */
		d->cur->asc = 0x4b; /* data phase error */
		return emu_urb_complete(urb, -EPIPE, n);
	}
	memcpy(urb->data, d->in_data + d->in_off, n);
	d->in_off += n;
	d->residue -= n;
	/* All sent, or a short packet ended the stage. */
	if (d->in_off == d->in_len || n < urb->length)
		d->stage = STATUS;
	emu_urb_complete(urb, 0, n);
}

static void take_data(struct disk *d, struct emu_urb *urb)
{
	uint32_t left = d->out_len - d->out_off;
	uint32_t n = left < urb->length ? left : urb->length;

	if (d->dir_in || d->out_dest == NULL) {
		d->out_halted = true;
		d->stage = STATUS;
		return emu_urb_complete(urb, -EPIPE, 0);
	}
	memcpy(d->out_dest + d->out_off, urb->data, n);
	d->out_off += n;
	d->residue -= n;
	if (d->out_off == d->out_len)
		d->stage = STATUS;
	emu_urb_complete(urb, 0, n);
}

static void give_csw(struct disk *d, struct emu_urb *urb)
{
	uint8_t csw[13];

	put_le32(csw, 0x53425355u);
	put_le32(csw + 4, d->tag);
	put_le32(csw + 8, d->status == 2 ? 0 : d->residue);
	csw[12] = d->status;
	memcpy(urb->data, csw, urb->length < 13 ? urb->length : 13);
	d->stage = EXPECT_CBW;
	emu_urb_complete(urb, 0, urb->length < 13 ? urb->length : 13);
}

/* Serves pending URBs, in order per endpoint, as far as the stage allows. */
static void disk_pump(struct emu_dev *dev)
{
	struct disk *d = dev->state;
	bool moved = true;

	while (moved) {
		struct emu_urb *out = emu_urb_first_pending(dev, DISK_EP_OUT);
		struct emu_urb *in = emu_urb_first_pending(dev, DISK_EP_IN);

		moved = false;
		if (out != NULL && d->out_halted) {
			emu_urb_complete(out, -EPIPE, 0);
			moved = true;
		} else if (out != NULL && d->stage == EXPECT_CBW) {
			take_cbw(d, out);
			moved = true;
		} else if (out != NULL && d->stage == DATA_OUT) {
			take_data(d, out);
			moved = true;
		}
		if (moved)
			continue;
		if (in != NULL && d->in_halted) {
			emu_urb_complete(in, -EPIPE, 0);
			moved = true;
		} else if (in != NULL && d->stage == DATA_IN) {
			give_data(d, in);
			moved = true;
		} else if (in != NULL && d->stage == STATUS) {
			give_csw(d, in);
			moved = true;
		}
	}
}

static void disk_submit(struct emu_dev *dev, struct emu_urb *urb)
{
	(void)urb;
	disk_pump(dev);
}

static int disk_control(struct emu_dev *dev, struct emu_urb *urb, const struct emu_setup *s, uint8_t *data)
{
	struct disk *d = dev->state;

	(void)urb;
	if (s->request_type == 0x21 && s->request == 0xff && s->value == 0 && s->length == 0) {
		emu_log("%s: Bulk-Only Mass Storage Reset", dev->sysname);
		d->stage = EXPECT_CBW;
		d->need_reset = false;
		return 0;
	}
	if (s->request_type == 0xa1 && s->request == 0xfe && s->length >= 1) {
		data[0] = (uint8_t)(d->cfg->nluns - 1);
		return 1;
	}
	return -EPIPE;
}

static void disk_clear_halt(struct emu_dev *dev, uint8_t ep)
{
	struct disk *d = dev->state;

	/* BOT 6.6.1: after a bad CBW the pipes stay halted until the reset. */
	if (d->need_reset)
		return;
	if (ep == DISK_EP_IN)
		d->in_halted = false;
	else if (ep == DISK_EP_OUT)
		d->out_halted = false;
	disk_pump(dev);
}

static const struct emu_model_ops disk_ops = {
    .init = disk_init,
    .fini = disk_fini,
    .submit = disk_submit,
    .control = disk_control,
    .clear_halt = disk_clear_halt,
};

#define DISK_IFACE                                                                                           \
	{                                                                                                    \
		.cls = 8, .subclass = 6, .protocol = 0x50, .num_eps = 2,                                     \
		.eps = {                                                                                     \
		    {.address = DISK_EP_IN, .type = 2, .max_packet = 512},                                   \
		    {.address = DISK_EP_OUT, .type = 2, .max_packet = 512, .interval = 1},                   \
		},                                                                                           \
	}

#define CONTOUR(NAME, SUMMARY)                                                                               \
	{                                                                                                    \
		.name = NAME, .summary = SUMMARY, .vendor_id = 0x0781, .product_id = 0x540e,                 \
		.bcd_device = 0x0010, .manufacturer = "SanDisk Corporation", .product = "Cruzer Contour",    \
		.serial = "0000168307754383", .num_ifaces = 1, .ifaces = {DISK_IFACE}, .ops = &disk_ops,     \
	}

const struct emu_model emu_model_disk = CONTOUR("disk", "0781:540e flash stick, 64 MiB of 512-byte blocks");
const struct emu_model emu_model_disk_4k =
    CONTOUR("disk-4k", "0781:540e flash stick, 64 MiB of 4096-byte blocks");
const struct emu_model emu_model_disk_stall =
    CONTOUR("disk-stall", "disk whose first read past 1 MiB stalls mid data stage");
const struct emu_model emu_model_disk_phase =
    CONTOUR("disk-phase", "disk whose first read past 1 MiB answers a phase error");
const struct emu_model emu_model_disk_nomedium = CONTOUR("disk-nomedium", "disk reader with no medium");
const struct emu_model emu_model_disk_ro = CONTOUR("disk-ro", "write-protected disk");
const struct emu_model emu_model_disk_bad = CONTOUR("disk-bad", "disk with unreadable blocks 8192..8199");
const struct emu_model emu_model_disk_120k =
    CONTOUR("disk-120k", "disk that fails a READ or WRITE of more than 120 KiB");
const struct emu_model emu_model_disk_2lun = {
    .name = "disk-2lun",
    .summary = "0781:5200 two LUNs: 64 MiB and 16 MiB",
    .vendor_id = 0x0781,
    .product_id = 0x5200,
    .bcd_device = 0x0020,
    .manufacturer = "SanDisk Corporation",
    .product = "Cruzer Titanium",
    .serial = "SNDK5F3ED52015C05803",
    .num_ifaces = 1,
    .ifaces = {DISK_IFACE},
    .ops = &disk_ops,
};

static const struct disk_cfg disk_cfgs[] = {
    {&emu_model_disk, 1, 512, {64 * MIB}, false, false, false, false, false, 0},
    {&emu_model_disk_4k, 1, 4096, {64 * MIB}, false, false, false, false, false, 0},
    {&emu_model_disk_2lun, 2, 512, {64 * MIB, 16 * MIB}, false, false, false, false, false, 0},
    {&emu_model_disk_stall, 1, 512, {64 * MIB}, true, false, false, false, false, 0},
    {&emu_model_disk_phase, 1, 512, {64 * MIB}, false, true, false, false, false, 0},
    {&emu_model_disk_nomedium, 1, 512, {64 * MIB}, false, false, true, false, false, 0},
    {&emu_model_disk_ro, 1, 512, {64 * MIB}, false, false, false, true, false, 0},
    {&emu_model_disk_bad, 1, 512, {64 * MIB}, false, false, false, false, true, 0},
    {&emu_model_disk_120k, 1, 512, {64 * MIB}, false, false, false, false, false, 240},
};

static const struct disk_cfg *cfg_of(const struct emu_model *m)
{
	for (size_t i = 0; i < sizeof(disk_cfgs) / sizeof(disk_cfgs[0]); i++)
		if (disk_cfgs[i].model == m)
			return &disk_cfgs[i];
	return NULL;
}
