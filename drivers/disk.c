/*
 * The `disk` driver: USB mass storage, Bulk-Only Transport (BOT 1.0),
 * SCSI transparent command set.  One function directory per LUN:
 *
 *   data        the medium, seekable, st_size = blocks * block_size; any
 *               offset and length (partial blocks: read-modify-write);
 *               reads at or past the end return 0, writes there ENOSPC
 *   vendor, model, revision    from INQUIRY
 *   block_size, blocks         from READ CAPACITY(10), or (16) beyond 2^32 blocks
 *   ctl         `sync` (SYNCHRONIZE CACHE), `eject` (sync, then START STOP
 *               UNIT with LoEj; the medium is gone afterwards: ENOMEDIUM)
 *
 * Every command runs CBW -> data -> CSW on the interface's bulk pair, one
 * at a time, from a FIFO queue shared by the LUNs.  A CSW is checked
 * (length 13, signature, tag, status 0..2, residue <= the CBW's length);
 * a bad one, a phase error or a stall outside the data and status stages
 * gets the BOT reset recovery (Bulk-Only Mass Storage Reset, then CLEAR
 * HALT on bulk IN and OUT) and fails that request with EIO.  A stall in
 * the data stage clears the halt and reads the CSW, as BOT 6.7.2 / 6.7.3
 * say; a stalled CSW is cleared and read once more.  Status 1 is followed
 * by REQUEST SENSE: medium not present -> ENOMEDIUM, data protect ->
 * EROFS, medium error -> EIO; unit attention and aborted command are
 * retried (twice at most).
 *
 * The commands a read or write needs (the read of a read-modify-write and
 * its write) run back to back: a follow-up goes to the head of the queue,
 * so an overlapping write cannot slip in between.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "driver.h"

#define BOT_CBW_LEN	    31
#define BOT_CSW_LEN	    13
#define BOT_CBW_SIGNATURE   0x43425355u /* "USBC" */
#define BOT_CSW_SIGNATURE   0x53425355u /* "USBS" */
#define BOT_CBW_FLAG_IN	    0x80
#define BOT_REQ_RESET	    0xff /* Bulk-Only Mass Storage Reset, class, interface */
#define BOT_REQ_GET_MAX_LUN 0xfe
#define BOT_MAX_LUNS	    16
#define BOT_RETRIES	    2

enum bot_status { CSW_GOOD = 0, CSW_FAILED = 1, CSW_PHASE_ERROR = 2 };

enum scsi_op {
	SCSI_TEST_UNIT_READY = 0x00,
	SCSI_REQUEST_SENSE = 0x03,
	SCSI_INQUIRY = 0x12,
	SCSI_MODE_SENSE_6 = 0x1a,
	SCSI_START_STOP_UNIT = 0x1b,
	SCSI_READ_CAPACITY_10 = 0x25,
	SCSI_READ_10 = 0x28,
	SCSI_WRITE_10 = 0x2a,
	SCSI_SYNCHRONIZE_CACHE_10 = 0x35,
	SCSI_READ_16 = 0x88,
	SCSI_WRITE_16 = 0x8a,
	SCSI_SERVICE_ACTION_IN_16 = 0x9e,
};
#define SAI_READ_CAPACITY_16 0x10

enum sense_key {
	SENSE_NO_SENSE = 0x0,
	SENSE_RECOVERED_ERROR = 0x1,
	SENSE_NOT_READY = 0x2,
	SENSE_MEDIUM_ERROR = 0x3,
	SENSE_HARDWARE_ERROR = 0x4,
	SENSE_ILLEGAL_REQUEST = 0x5,
	SENSE_UNIT_ATTENTION = 0x6,
	SENSE_DATA_PROTECT = 0x7,
	SENSE_ABORTED_COMMAND = 0xb,
};
#define ASC_MEDIUM_NOT_PRESENT 0x3a

#define SENSE_LEN	18
#define INQUIRY_LEN	36
#define MODE_SENSE_LEN	192
#define MODE_SENSE_WP	0x80 /* device-specific parameter, byte 2 of the mode header */
#define START_STOP_LOEJ 0x02
#define MIN_BLOCK_SIZE	512
#define MAX_BLOCK_SIZE	65536
#define TEXT_MAX	24

struct bot;
struct lun;

struct scsi_cmd {
	struct lun *lun;
	uint8_t cdb[16];
	uint8_t cdb_len;
	bool in;
	uint8_t *data; /* the caller's buffer of len bytes */
	uint32_t len;
	bool exact; /* the data stage must move all len bytes (READ/WRITE) */
	unsigned retries;
	/* Results. */
	int result; /* 0 or -errno */
	uint32_t actual;
	uint8_t sense_key, asc, ascq;
	void (*done)(struct scsi_cmd *c);
	void *arg;
	TAILQ_ENTRY(scsi_cmd) link;
};

TAILQ_HEAD(scsi_queue, scsi_cmd);

enum bot_stage { BOT_IDLE, BOT_CBW, BOT_DATA, BOT_CSW, BOT_RESET };

/* One interface: the bulk pair, the command queue, the LUNs. */
struct bot {
	libusb_device_handle *usb;
	uint8_t ifnum, ep_in, ep_out;
	uint32_t max_xfer; /* bytes one READ or WRITE may move (bot_max_xfer) */
	uint32_t tag;
	struct scsi_queue queue;
	struct scsi_cmd *cur;
	enum bot_stage stage;
	struct drv_xfer *xfer; /* the stage's transfer in flight */
	bool csw_retried;
	bool aborting; /* cur's request was cancelled */
	int reset_result;
	bool gone;
	/* REQUEST SENSE after a failed command; its arg is that command. */
	struct scsi_cmd sense;
	uint8_t sense_buf[SENSE_LEN];
	unsigned nluns;
	struct lun *luns[BOT_MAX_LUNS];
	TAILQ_HEAD(, job) jobs;
};

struct lun {
	struct bot *bot;
	struct drv_function *fn;
	uint8_t lun;
	char vendor[TEXT_MAX], model[TEXT_MAX], revision[TEXT_MAX];
	char block_size_text[TEXT_MAX], blocks_text[TEXT_MAX];
	uint32_t block_size;
	uint64_t blocks;
	int medium_error; /* 0, or why the medium cannot be used (-ENOMEDIUM) */
	bool write_protected;
};

/*
 * One read or write of `data`: blocks [lba, lba + nblocks), moved by as
 * many commands as the stick takes (bot->max_xfer), one after the other;
 * `at` blocks of the current pass are done.  A write of partial blocks
 * makes two passes: it reads the blocks, then writes them back.
 */
struct job {
	struct drv_req *req;
	struct lun *lun;
	bool write, cancelled; /* write: the current pass writes */
	uint64_t lba;
	uint32_t nblocks, at;
	uint8_t *buf;	/* nblocks * block_size */
	size_t skip;	/* where the caller's bytes start in buf */
	size_t len;	/* the caller's bytes */
	uint8_t *wdata; /* write with partial blocks: the caller's bytes until the read is back */
	struct scsi_cmd cmd;
	TAILQ_ENTRY(job) link;
};

static void bot_kick(struct bot *bot);

/*
 * The most one READ or WRITE moves, as Linux's usb-storage allows by
 * default: 240 sectors of 512 bytes on a high- or full-speed stick (some
 * firmware fails longer transfers), 2048 on a SuperSpeed one.  A longer
 * request is cut into commands of at most this many bytes.
 */
#define MAX_XFER_HIGH  (240u * 512)
#define MAX_XFER_SUPER (2048u * 512)

static uint32_t bot_max_xfer(libusb_device_handle *usb)
{
	int speed = libusb_get_device_speed(libusb_get_device(usb));

	return speed >= LIBUSB_SPEED_SUPER ? MAX_XFER_SUPER : MAX_XFER_HIGH;
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}
static void put_be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}
static void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}
static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

/* ---- The Bulk-Only Transport engine ---- */

static void bot_finish(struct bot *bot, int result)
{
	struct scsi_cmd *c = bot->cur;

	bot->cur = NULL;
	bot->xfer = NULL;
	bot->stage = BOT_IDLE;
	bot->aborting = false;
	c->result = result;
	c->done(c);
	bot_kick(bot);
}

/* Submits a bulk or control transfer for the current stage; 0 or -errno. */
static int bot_submit(struct bot *bot, struct drv_xfer *x, enum bot_stage stage)
{
	int r = drv_xfer_submit(x);

	if (r < 0) {
		drv_xfer_free(x);
		return r;
	}
	bot->xfer = x;
	bot->stage = stage;
	return 0;
}

static void reset_done(struct drv_xfer *x)
{
	struct bot *bot = x->arg;
	enum libusb_transfer_status st = x->t->status;
	int r;

	drv_xfer_free(x);
	if (st == LIBUSB_TRANSFER_NO_DEVICE) {
		bot->gone = true;
		return bot_finish(bot, -ENODEV);
	}
	if (st != LIBUSB_TRANSFER_COMPLETED)
		drv_log(LOG_WARNING, "interface %u: Bulk-Only Mass Storage Reset: %s", bot->ifnum,
			strerror(-drv_xfer_errno(st)));
	/* BOT 5.3.4: after the reset, clear both halts, IN first. */
	if ((r = libusb_clear_halt(bot->usb, bot->ep_in)) < 0 ||
	    (r = libusb_clear_halt(bot->usb, bot->ep_out)) < 0)
		drv_log(LOG_WARNING, "interface %u: clearing halts after the reset: %s", bot->ifnum,
			libusb_strerror(r));
	if (r == LIBUSB_ERROR_NO_DEVICE)
		bot->gone = true;
	bot_finish(bot, bot->gone ? -ENODEV : bot->reset_result);
}

/* BOT 5.3.4 reset recovery, then the current command fails with `result`. */
static void bot_reset_recovery(struct bot *bot, int result, const char *why)
{
	struct drv_xfer *x = drv_xfer_new(LIBUSB_CONTROL_SETUP_SIZE, reset_done, bot);
	int r;

	drv_log(LOG_WARNING, "interface %u: %s: reset recovery", bot->ifnum, why);
	bot->reset_result = result;
	if (x == NULL)
		return bot_finish(bot, -ENOMEM);
	libusb_fill_control_setup(x->t->buffer, LIBUSB_REQUEST_TYPE_CLASS | LIBUSB_RECIPIENT_INTERFACE,
				  BOT_REQ_RESET, 0, bot->ifnum, 0);
	libusb_fill_control_transfer(x->t, bot->usb, x->t->buffer, NULL, NULL, 0);
	x->done = reset_done;
	x->arg = bot;
	if ((r = bot_submit(bot, x, BOT_RESET)) < 0)
		bot_finish(bot, r);
}

/* A transfer ended in something else than success or stall: the common failures. */
static void bot_transfer_failed(struct bot *bot, enum libusb_transfer_status st, const char *stage)
{
	char why[64];

	if (st == LIBUSB_TRANSFER_NO_DEVICE) {
		bot->gone = true;
		return bot_finish(bot, -ENODEV);
	}
	snprintf(why, sizeof(why), "%s %s", stage, st == LIBUSB_TRANSFER_CANCELLED ? "cancelled" : "failed");
	bot_reset_recovery(bot, st == LIBUSB_TRANSFER_CANCELLED ? -EINTR : -EIO, why);
}

static void csw_done(struct drv_xfer *x);

static void bot_start_csw(struct bot *bot)
{
	struct drv_xfer *x;
	int r;

	if (bot->aborting)
		return bot_reset_recovery(bot, -EINTR, "request cancelled");
	if ((x = drv_xfer_new(BOT_CSW_LEN, csw_done, bot)) == NULL)
		return bot_reset_recovery(bot, -ENOMEM, "out of memory for the CSW");
	libusb_fill_bulk_transfer(x->t, bot->usb, bot->ep_in, x->t->buffer, BOT_CSW_LEN, NULL, NULL, 0);
	if ((r = bot_submit(bot, x, BOT_CSW)) < 0)
		bot_finish(bot, r);
}

static void sense_done(struct scsi_cmd *s);

static void csw_done(struct drv_xfer *x)
{
	struct bot *bot = x->arg;
	struct scsi_cmd *c = bot->cur;
	enum libusb_transfer_status st = x->t->status;
	uint8_t csw[BOT_CSW_LEN];
	int n = x->t->actual_length;

	memcpy(csw, x->t->buffer, sizeof(csw));
	drv_xfer_free(x);
	bot->xfer = NULL;
	if (st == LIBUSB_TRANSFER_STALL && !bot->csw_retried) {
		/* BOT 6.7.2/6.7.3: a stalled status stage is cleared and read once more. */
		bot->csw_retried = true;
		int r = libusb_clear_halt(bot->usb, bot->ep_in);
		if (r < 0)
			return bot_reset_recovery(bot, -EIO, "clearing the stalled CSW failed");
		return bot_start_csw(bot);
	}
	if (st == LIBUSB_TRANSFER_STALL)
		return bot_reset_recovery(bot, -EIO, "the CSW stalled twice");
	if (st != LIBUSB_TRANSFER_COMPLETED)
		return bot_transfer_failed(bot, st, "CSW");
	if (n != BOT_CSW_LEN)
		return bot_reset_recovery(bot, -EIO, "CSW of the wrong length");
	uint32_t sig = get_le32(csw), tag = get_le32(csw + 4), residue = get_le32(csw + 8);
	uint8_t status = csw[12];
	if (sig != BOT_CSW_SIGNATURE || tag != bot->tag || status > CSW_PHASE_ERROR || residue > c->len) {
		drv_log(LOG_WARNING,
			"interface %u: bad CSW: signature %08x tag %u (want %u) status %u residue %u of %u",
			bot->ifnum, sig, tag, bot->tag, status, residue, c->len);
		return bot_reset_recovery(bot, -EIO, "CSW not valid");
	}
	if (status == CSW_PHASE_ERROR)
		return bot_reset_recovery(bot, -EIO, "phase error");
	if (status == CSW_FAILED) {
		if (c == &bot->sense)
			return bot_finish(bot, -EIO);
		/* Ask why before anything else runs: REQUEST SENSE goes first, then c completes. */
		bot->cur = NULL;
		bot->stage = BOT_IDLE;
		bot->aborting = false;
		bot->sense = (struct scsi_cmd){
		    .lun = c->lun,
		    .cdb = {SCSI_REQUEST_SENSE, 0, 0, 0, SENSE_LEN, 0},
		    .cdb_len = 6,
		    .in = true,
		    .data = bot->sense_buf,
		    .len = SENSE_LEN,
		    .done = sense_done,
		    .arg = c,
		};
		TAILQ_INSERT_HEAD(&bot->queue, &bot->sense, link);
		return bot_kick(bot);
	}
	if (c->exact && (residue != 0 || c->actual != c->len)) {
		drv_log(LOG_WARNING, "interface %u LUN %u: command %02x moved %u of %u bytes (residue %u)",
			bot->ifnum, c->lun->lun, c->cdb[0], c->actual, c->len, residue);
		return bot_finish(bot, -EIO);
	}
	bot_finish(bot, 0);
}

static void data_done(struct drv_xfer *x)
{
	struct bot *bot = x->arg;
	struct scsi_cmd *c = bot->cur;
	enum libusb_transfer_status st = x->t->status;
	uint32_t n = (uint32_t)x->t->actual_length;

	if (n > c->len)
		n = c->len;
	if (c->in)
		memcpy(c->data, x->t->buffer, n);
	c->actual = n;
	drv_xfer_free(x);
	bot->xfer = NULL;
	if (st == LIBUSB_TRANSFER_STALL) {
		/* BOT 6.7.2/6.7.3: the device ended the data stage early; clear it and read the CSW. */
		drv_log(LOG_NOTICE,
			"interface %u LUN %u: data stage of command %02x stalled after %u of %u bytes",
			bot->ifnum, c->lun->lun, c->cdb[0], n, c->len);
		int r = libusb_clear_halt(bot->usb, c->in ? bot->ep_in : bot->ep_out);
		if (r == LIBUSB_ERROR_NO_DEVICE)
			return bot_transfer_failed(bot, LIBUSB_TRANSFER_NO_DEVICE, "data");
		if (r < 0)
			return bot_reset_recovery(bot, -EIO, "clearing the stalled data stage failed");
		return bot_start_csw(bot);
	}
	if (st != LIBUSB_TRANSFER_COMPLETED)
		return bot_transfer_failed(bot, st, "data stage");
	bot_start_csw(bot);
}

static void bot_start_data(struct bot *bot)
{
	struct scsi_cmd *c = bot->cur;
	struct drv_xfer *x;
	int r;

	if (bot->aborting)
		return bot_reset_recovery(bot, -EINTR, "request cancelled");
	if ((x = drv_xfer_new(c->len, data_done, bot)) == NULL)
		return bot_reset_recovery(bot, -ENOMEM, "out of memory for the data stage");
	if (!c->in)
		memcpy(x->t->buffer, c->data, c->len);
	libusb_fill_bulk_transfer(x->t, bot->usb, c->in ? bot->ep_in : bot->ep_out, x->t->buffer, (int)c->len,
				  NULL, NULL, 0);
	if ((r = bot_submit(bot, x, BOT_DATA)) < 0)
		bot_reset_recovery(bot, r, "submitting the data stage failed");
}

static void cbw_done(struct drv_xfer *x)
{
	struct bot *bot = x->arg;
	enum libusb_transfer_status st = x->t->status;
	int n = x->t->actual_length;

	drv_xfer_free(x);
	bot->xfer = NULL;
	if (st == LIBUSB_TRANSFER_STALL)
		return bot_reset_recovery(bot, -EIO, "the CBW stalled");
	if (st != LIBUSB_TRANSFER_COMPLETED)
		return bot_transfer_failed(bot, st, "CBW");
	if (n != BOT_CBW_LEN)
		return bot_reset_recovery(bot, -EIO, "the CBW went out short");
	if (bot->cur->len > 0)
		bot_start_data(bot);
	else
		bot_start_csw(bot);
}

/* Starts the next queued command when the pipe is free. */
static void bot_kick(struct bot *bot)
{
	struct scsi_cmd *c;
	struct drv_xfer *x;
	int r;

	while (bot->stage == BOT_IDLE && (c = TAILQ_FIRST(&bot->queue)) != NULL) {
		TAILQ_REMOVE(&bot->queue, c, link);
		bot->cur = c;
		bot->csw_retried = false;
		bot->aborting = false;
		c->actual = 0;
		c->sense_key = c->asc = c->ascq = 0;
		if (bot->gone) {
			bot_finish(bot, -ENODEV);
			return;
		}
		if ((x = drv_xfer_new(BOT_CBW_LEN, cbw_done, bot)) == NULL) {
			bot_finish(bot, -ENOMEM);
			return;
		}
		uint8_t *cbw = x->t->buffer;
		memset(cbw, 0, BOT_CBW_LEN);
		bot->tag++;
		put_le32(cbw, BOT_CBW_SIGNATURE);
		put_le32(cbw + 4, bot->tag);
		put_le32(cbw + 8, c->len);
		cbw[12] = c->in && c->len > 0 ? BOT_CBW_FLAG_IN : 0;
		cbw[13] = c->lun->lun;
		cbw[14] = c->cdb_len;
		memcpy(cbw + 15, c->cdb, c->cdb_len);
		libusb_fill_bulk_transfer(x->t, bot->usb, bot->ep_out, cbw, BOT_CBW_LEN, NULL, NULL, 0);
		if ((r = bot_submit(bot, x, BOT_CBW)) < 0) {
			if (r == -ENODEV)
				bot->gone = true;
			bot_finish(bot, r);
			return;
		}
	}
}

static void bot_queue(struct bot *bot, struct scsi_cmd *c, bool first)
{
	if (first)
		TAILQ_INSERT_HEAD(&bot->queue, c, link);
	else
		TAILQ_INSERT_TAIL(&bot->queue, c, link);
	bot_kick(bot);
}

/* Sense data to an errno, for the command REQUEST SENSE was asked about. */
static int sense_errno(struct scsi_cmd *c)
{
	switch (c->sense_key) {
	case SENSE_NOT_READY:
		if (c->asc == ASC_MEDIUM_NOT_PRESENT) {
			c->lun->medium_error = -ENOMEDIUM;
			return -ENOMEDIUM;
		}
		return -EIO;
	case SENSE_DATA_PROTECT:
		c->lun->write_protected = true;
		return -EROFS;
	case SENSE_ILLEGAL_REQUEST:
		return -EINVAL;
	case SENSE_MEDIUM_ERROR:
	case SENSE_HARDWARE_ERROR:
	default:
		return -EIO;
	}
}

static void sense_done(struct scsi_cmd *s)
{
	struct scsi_cmd *c = s->arg;
	struct bot *bot = c->lun->bot;

	if (s->result == 0 && s->actual >= 14 && (bot->sense_buf[0] & 0x7e) == 0x70) {
		c->sense_key = bot->sense_buf[2] & 0x0f;
		c->asc = bot->sense_buf[12];
		c->ascq = bot->sense_buf[13];
	}
	drv_log(LOG_INFO, "interface %u LUN %u: command %02x failed: sense %x/%02x/%02x", bot->ifnum,
		c->lun->lun, c->cdb[0], c->sense_key, c->asc, c->ascq);
	if ((c->sense_key == SENSE_UNIT_ATTENTION || c->sense_key == SENSE_ABORTED_COMMAND) &&
	    c->retries > 0) {
		c->retries--;
		/* Runs next: bot_finish() of the sense command kicks the queue. */
		TAILQ_INSERT_HEAD(&bot->queue, c, link);
		return;
	}
	c->result = s->result < 0 ? -EIO : sense_errno(c);
	c->done(c);
}

static void cmd_rw(struct scsi_cmd *c, bool write, uint64_t lba, uint32_t nblocks)
{
	memset(c->cdb, 0, sizeof(c->cdb));
	if (lba + nblocks <= 0x100000000ull && nblocks <= 0xffff) {
		c->cdb[0] = write ? SCSI_WRITE_10 : SCSI_READ_10;
		put_be32(c->cdb + 2, (uint32_t)lba);
		put_be16(c->cdb + 7, (uint16_t)nblocks);
		c->cdb_len = 10;
	} else {
		c->cdb[0] = write ? SCSI_WRITE_16 : SCSI_READ_16;
		put_be64(c->cdb + 2, lba);
		put_be32(c->cdb + 10, nblocks);
		c->cdb_len = 16;
	}
	c->in = !write;
	c->exact = true;
	c->retries = BOT_RETRIES;
}

/*
 * Runs one command to completion outside the main loop (probe, ctl):
 * whatever else is queued runs first, and completions keep being handled.
 */
static void sync_done(struct scsi_cmd *c)
{
	*(int *)c->arg = 1;
}

static int bot_run_sync(struct scsi_cmd *c)
{
	int done = 0;

	c->done = sync_done;
	c->arg = &done;
	bot_queue(c->lun->bot, c, false);
	while (!done) {
		int r = libusb_handle_events_completed(NULL, &done);
		if (r < 0 && r != LIBUSB_ERROR_INTERRUPTED) {
			drv_log(LOG_ERR, "handling USB events: %s", libusb_strerror(r));
			return -EIO;
		}
	}
	return c->result;
}

/* ---- Jobs: reads and writes of `data` ---- */

static void job_end(struct job *j, int32_t status, const void *data, size_t len)
{
	TAILQ_REMOVE(&j->lun->bot->jobs, j, link);
	drv_reply(j->req, status, data, len);
	free(j->buf);
	free(j->wdata);
	free(j);
}

static struct job *job_of(struct drv_req *req)
{
	struct lun *lun = req->h->file->priv;
	struct job *j;

	TAILQ_FOREACH(j, &lun->bot->jobs, link)
	if (j->req == req)
		return j;
	return NULL;
}

static void job_cancel(struct drv_req *req)
{
	struct job *j = job_of(req);
	struct bot *bot;

	if (j == NULL)
		return;
	bot = j->lun->bot;
	j->cancelled = true;
	if (bot->cur == &j->cmd) {
		/* In flight: stop the transfer; the engine resets the pipe and the job ends with EINTR. */
		bot->aborting = true;
		if (bot->xfer != NULL && bot->stage != BOT_RESET)
			drv_xfer_cancel(bot->xfer);
		return;
	}
	struct scsi_cmd *c;
	TAILQ_FOREACH(c, &bot->queue, link)
	if (c == &j->cmd) {
		TAILQ_REMOVE(&bot->queue, c, link);
		return job_end(j, -EINTR, NULL, 0);
	}
	/* Otherwise its REQUEST SENSE is running: it ends with it. */
}

static void job_chunk_done(struct scsi_cmd *c);

/* Queues the job's next command, of as many blocks as one may move; first in the queue if `front`. */
static void job_step(struct job *j, bool front)
{
	uint32_t bs = j->lun->block_size, max = j->lun->bot->max_xfer / bs;
	uint32_t n = j->nblocks - j->at;

	if (max == 0)
		max = 1;
	if (n > max)
		n = max;
	cmd_rw(&j->cmd, j->write, j->lba + j->at, n);
	j->cmd.data = j->buf + (size_t)j->at * bs;
	j->cmd.len = n * bs;
	j->cmd.done = job_chunk_done;
	bot_queue(j->lun->bot, &j->cmd, front);
}

static void job_chunk_done(struct scsi_cmd *c)
{
	struct job *j = c->arg;

	if (c->result < 0)
		return job_end(j, c->result, NULL, 0);
	j->at += c->len / j->lun->block_size;
	if (j->at < j->nblocks || (!j->write && j->wdata != NULL)) {
		if (j->cancelled)
			return job_end(j, -EINTR, NULL, 0);
		if (j->at == j->nblocks) {
			/* Partial blocks read: put the new bytes in and write them back. */
			memcpy(j->buf + j->skip, j->wdata, j->len);
			j->write = true;
			j->at = 0;
		}
		/* Right after: no other command comes between a request's own. */
		return job_step(j, true);
	}
	if (j->write)
		return job_end(j, (int32_t)j->len, NULL, 0);
	job_end(j, (int32_t)j->len, j->buf + j->skip, j->len);
}

/* A job for [offset, offset + len) of the medium, len > 0 and within it. */
static struct job *job_new(struct drv_req *req, struct lun *lun, uint64_t offset, size_t len)
{
	struct job *j = calloc(1, sizeof(*j));
	uint64_t bs = lun->block_size;

	if (j == NULL)
		return NULL;
	j->req = req;
	j->lun = lun;
	j->lba = offset / bs;
	j->nblocks = (uint32_t)((offset + len - 1) / bs - j->lba + 1);
	j->skip = (size_t)(offset % bs);
	j->len = len;
	if ((j->buf = malloc((size_t)j->nblocks * bs)) == NULL) {
		free(j);
		return NULL;
	}
	j->cmd.lun = lun;
	j->cmd.arg = j;
	TAILQ_INSERT_TAIL(&lun->bot->jobs, j, link);
	req->cancel = job_cancel;
	return j;
}

/* How much of [offset, offset + size) is on the medium; negative errno if it cannot be used. */
static int64_t medium_span(const struct lun *lun, uint64_t offset, size_t size)
{
	uint64_t cap = lun->blocks * lun->block_size;

	if (lun->medium_error < 0)
		return lun->medium_error;
	if (lun->bot->gone)
		return -ENODEV;
	if (offset >= cap)
		return 0;
	return (int64_t)(size < cap - offset ? size : cap - offset);
}

static void data_read(struct drv_req *req)
{
	struct lun *lun = req->h->file->priv;
	int64_t n = medium_span(lun, req->offset, req->size);
	struct job *j;

	if (n <= 0)
		return drv_reply(req, (int32_t)n, NULL, 0);
	if ((j = job_new(req, lun, req->offset, (size_t)n)) == NULL)
		return drv_reply(req, -ENOMEM, NULL, 0);
	job_step(j, false);
}

static void data_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct lun *lun = req->h->file->priv;
	int64_t n = medium_span(lun, req->offset, len);
	struct job *j;

	if (n < 0 || len == 0)
		return drv_reply(req, (int32_t)n, NULL, 0);
	if (lun->write_protected)
		return drv_reply(req, -EROFS, NULL, 0);
	/* At the end: nothing fits (a block device's write(2) there fails the same way). */
	if (n == 0)
		return drv_reply(req, -ENOSPC, NULL, 0);
	if ((j = job_new(req, lun, req->offset, (size_t)n)) == NULL)
		return drv_reply(req, -ENOMEM, NULL, 0);
	if (j->skip == 0 && j->len == (size_t)j->nblocks * lun->block_size) {
		memcpy(j->buf, data, j->len);
		j->write = true;
	} else {
		/* Partial blocks: read them first, put the new bytes in, write them back (job_chunk_done). */
		if ((j->wdata = malloc(j->len)) == NULL)
			return job_end(j, -ENOMEM, NULL, 0);
		memcpy(j->wdata, data, j->len);
	}
	job_step(j, false);
}

static int data_open(struct drv_handle *h, uint32_t flags)
{
	struct lun *lun = h->file->priv;

	/* As sd does for a write-protected disk. */
	if (lun->write_protected && (flags & O_ACCMODE) != O_RDONLY)
		return -EROFS;
	return 0;
}

static const struct drv_file_ops data_ops = {
    .open = data_open,
    .read = data_read,
    .write = data_write,
};

/* ---- Small text files ---- */

static void text_read(struct drv_req *req)
{
	const char *text = req->h->file->priv;

	drv_reply_slice(req, text, strlen(text));
}

static const struct drv_file_ops text_ops = {
    .read = text_read,
};

/* ---- ctl ---- */

static int lun_command(struct lun *lun, const uint8_t *cdb, uint8_t cdb_len, uint8_t *data, uint32_t len)
{
	struct scsi_cmd c = {
	    .lun = lun, .cdb_len = cdb_len, .in = true, .data = data, .len = len, .retries = BOT_RETRIES};

	memcpy(c.cdb, cdb, cdb_len);
	int r = bot_run_sync(&c);
	return r < 0 ? r : (int)c.actual;
}

static int lun_sync(struct lun *lun)
{
	static const uint8_t cdb[10] = {SCSI_SYNCHRONIZE_CACHE_10};
	int r;

	if (lun->medium_error < 0)
		return lun->medium_error;
	r = lun_command(lun, cdb, sizeof(cdb), NULL, 0);
	/* ILLEGAL REQUEST: no cache to flush (many sticks), as sd takes it. */
	return r == -EINVAL ? 0 : r < 0 ? r : 0;
}

static int disk_ctl(struct drv_function *fn, int argc, char **argv)
{
	struct lun *lun = fn->priv;
	int r;

	if (argc == 1 && strcmp(argv[0], "sync") == 0)
		return lun_sync(lun);
	if (argc == 1 && strcmp(argv[0], "eject") == 0) {
		static const uint8_t cdb[6] = {SCSI_START_STOP_UNIT, 0, 0, 0, START_STOP_LOEJ, 0};
		if ((r = lun_sync(lun)) < 0)
			return r;
		if ((r = lun_command(lun, cdb, sizeof(cdb), NULL, 0)) < 0)
			return r;
		lun->medium_error = -ENOMEDIUM;
		drv_log(LOG_INFO, "interface %u LUN %u: medium ejected", lun->bot->ifnum, lun->lun);
		return 0;
	}
	return -EINVAL;
}

/* ---- Probe ---- */

/* INQUIRY text: printable ASCII, trailing blanks dropped. */
static void inquiry_text(char *out, const uint8_t *p, size_t n)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++)
		out[len++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : ' ';
	while (len > 0 && out[len - 1] == ' ')
		len--;
	out[len++] = '\n';
	out[len] = '\0';
}

static int lun_capacity(struct lun *lun)
{
	static const uint8_t rc10[10] = {SCSI_READ_CAPACITY_10};
	uint8_t rc16[16] = {SCSI_SERVICE_ACTION_IN_16, SAI_READ_CAPACITY_16};
	uint8_t buf[32];
	uint64_t blocks;
	uint32_t bs;
	int r;

	if ((r = lun_command(lun, rc10, sizeof(rc10), buf, 8)) < 0)
		return r;
	if (r < 8)
		return -EIO;
	blocks = (uint64_t)get_be32(buf) + 1;
	bs = get_be32(buf + 4);
	if (get_be32(buf) == 0xffffffffu) {
		put_be32(rc16 + 10, sizeof(buf));
		if ((r = lun_command(lun, rc16, sizeof(rc16), buf, sizeof(buf))) < 0)
			return r;
		if (r < 12)
			return -EIO;
		blocks = get_be64(buf) + 1;
		bs = get_be32(buf + 8);
	}
	if (bs < MIN_BLOCK_SIZE || bs > MAX_BLOCK_SIZE || (bs & (bs - 1)) != 0 || blocks == 0 ||
	    blocks > (uint64_t)INT64_MAX / bs) {
		drv_log(LOG_ERR,
			"interface %u LUN %u: capacity %" PRIu64 " blocks of %u bytes makes no sense",
			lun->bot->ifnum, lun->lun, blocks, bs);
		return -EIO;
	}
	lun->blocks = blocks;
	lun->block_size = bs;
	return 0;
}

static int lun_probe(struct lun *lun)
{
	static const uint8_t tur[6] = {SCSI_TEST_UNIT_READY};
	static const uint8_t inquiry[6] = {SCSI_INQUIRY, 0, 0, 0, INQUIRY_LEN, 0};
	static const uint8_t mode_sense[6] = {SCSI_MODE_SENSE_6, 0, 0x3f, 0, MODE_SENSE_LEN, 0};
	uint8_t buf[MODE_SENSE_LEN];
	int r;

	memset(buf, ' ', INQUIRY_LEN);
	if ((r = lun_command(lun, inquiry, sizeof(inquiry), buf, INQUIRY_LEN)) < 0)
		return r;
	/* Peripheral qualifier 3: no device behind this LUN. */
	if (r < 1 || (buf[0] >> 5) == 3)
		return -ENODEV;
	if (r < INQUIRY_LEN)
		memset(buf + r, ' ', (size_t)(INQUIRY_LEN - r));
	inquiry_text(lun->vendor, buf + 8, 8);
	inquiry_text(lun->model, buf + 16, 16);
	inquiry_text(lun->revision, buf + 32, 4);
	/* The first commands may report the power-on UNIT ATTENTION: retried inside. */
	r = lun_command(lun, tur, sizeof(tur), NULL, 0);
	if (r == -ENOMEDIUM) {
		drv_log(LOG_INFO, "interface %u LUN %u: no medium", lun->bot->ifnum, lun->lun);
	} else if (r < 0 || (r = lun_capacity(lun)) < 0) {
		lun->medium_error = r == -ENOMEDIUM ? r : -EIO;
	} else if (lun_command(lun, mode_sense, sizeof(mode_sense), buf, MODE_SENSE_LEN) >= 4) {
		lun->write_protected = (buf[2] & MODE_SENSE_WP) != 0;
	}
	if (r == -ENOMEDIUM)
		lun->medium_error = -ENOMEDIUM;
	snprintf(lun->block_size_text, TEXT_MAX, "%u\n", lun->block_size);
	snprintf(lun->blocks_text, TEXT_MAX, "%" PRIu64 "\n", lun->blocks);
	drv_log(LOG_INFO, "interface %u LUN %u: %.*s %.*s, %" PRIu64 " blocks of %u bytes%s%s",
		lun->bot->ifnum, lun->lun, (int)strcspn(lun->vendor, "\n"), lun->vendor,
		(int)strcspn(lun->model, "\n"), lun->model, lun->blocks, lun->block_size,
		lun->write_protected ? ", write-protected" : "", lun->medium_error < 0 ? ", not usable" : "");
	return 0;
}

static int lun_add_files(struct lun *lun)
{
	struct drv_function *fn = lun->fn;
	struct drv_file *data = drv_file_add(fn, "data", 0666, PROTO_KIND_BLOCK, &data_ops, lun);

	if (data == NULL)
		return -ENOMEM;
	data->size = lun->blocks * lun->block_size;
	if (drv_file_add(fn, "vendor", 0444, PROTO_KIND_SMALL, &text_ops, lun->vendor) == NULL ||
	    drv_file_add(fn, "model", 0444, PROTO_KIND_SMALL, &text_ops, lun->model) == NULL ||
	    drv_file_add(fn, "revision", 0444, PROTO_KIND_SMALL, &text_ops, lun->revision) == NULL ||
	    drv_file_add(fn, "block_size", 0444, PROTO_KIND_SMALL, &text_ops, lun->block_size_text) == NULL ||
	    drv_file_add(fn, "blocks", 0444, PROTO_KIND_SMALL, &text_ops, lun->blocks_text) == NULL)
		return -ENOMEM;
	fn->priv = lun;
	return 0;
}

/* GET MAX LUN (BOT 3.2); a stall means one LUN. */
static unsigned bot_max_lun(struct bot *bot)
{
	uint8_t v = 0;
	int r = libusb_control_transfer(
	    bot->usb, LIBUSB_ENDPOINT_IN | LIBUSB_REQUEST_TYPE_CLASS | LIBUSB_RECIPIENT_INTERFACE,
	    BOT_REQ_GET_MAX_LUN, 0, bot->ifnum, &v, 1, 0);

	if (r == 1 && v < BOT_MAX_LUNS)
		return v;
	if (r == 1)
		drv_log(LOG_WARNING, "interface %u: GET MAX LUN says %u; using LUN 0 only", bot->ifnum, v);
	return 0;
}

static void bot_free(struct bot *bot)
{
	for (unsigned i = 0; i < bot->nluns; i++) {
		if (bot->luns[i]->fn != NULL)
			bot->luns[i]->fn->priv = NULL;
		free(bot->luns[i]);
	}
	free(bot);
}

static int disk_probe(struct drv_function *fn)
{
	const struct drv_device *dev = fn->dev;
	struct usbdesc_iface d;
	struct bot *bot;
	int r;

	if (usbdesc_find_alt(dev->desc, dev->desc_len, fn->ifnum, 0, &d) < 0)
		return -ENOENT;
	if ((bot = calloc(1, sizeof(*bot))) == NULL)
		return -ENOMEM;
	bot->usb = dev->usb;
	bot->max_xfer = bot_max_xfer(dev->usb);
	bot->ifnum = fn->ifnum;
	TAILQ_INIT(&bot->queue);
	TAILQ_INIT(&bot->jobs);
	for (unsigned i = 0; i < d.num_eps; i++) {
		const struct usbdesc_ep *e = &d.eps[i];
		if ((e->attributes & 3) != USB_XFER_BULK)
			continue;
		if ((e->address & 0x80) && bot->ep_in == 0)
			bot->ep_in = e->address;
		else if (!(e->address & 0x80) && bot->ep_out == 0)
			bot->ep_out = e->address;
	}
	if (bot->ep_in == 0 || bot->ep_out == 0) {
		drv_log(LOG_ERR, "interface %u: no bulk IN and OUT pair", fn->ifnum);
		free(bot);
		return -ENODEV;
	}
	/*
	 * Whoever used the device before (a driver killed mid-command) may
	 * have left it inside a data stage: start from a known state with the
	 * reset recovery of BOT 5.3.4.
	 */
	r = libusb_control_transfer(bot->usb, LIBUSB_REQUEST_TYPE_CLASS | LIBUSB_RECIPIENT_INTERFACE,
				    BOT_REQ_RESET, 0, bot->ifnum, NULL, 0, 0);
	if (r == LIBUSB_ERROR_NO_DEVICE) {
		free(bot);
		return -ENODEV;
	}
	if (r < 0)
		drv_log(LOG_WARNING, "interface %u: Bulk-Only Mass Storage Reset: %s", bot->ifnum,
			libusb_strerror(r));
	libusb_clear_halt(bot->usb, bot->ep_in);
	libusb_clear_halt(bot->usb, bot->ep_out);
	unsigned max_lun = bot_max_lun(bot);
	for (unsigned l = 0; l <= max_lun; l++) {
		struct lun *lun = calloc(1, sizeof(*lun));
		if (lun == NULL) {
			r = -ENOMEM;
			goto fail;
		}
		lun->bot = bot;
		lun->lun = (uint8_t)l;
		bot->luns[bot->nluns++] = lun;
		r = lun_probe(lun);
		if (r == -ENODEV && l > 0)
			continue;
		if (r == -ENODEV && bot->gone)
			goto fail;
		if (r < 0) {
			/* LUN 0 always gets its directory, so the failure can be seen (EIO). */
			lun->medium_error = -EIO;
			snprintf(lun->block_size_text, TEXT_MAX, "0\n");
			snprintf(lun->blocks_text, TEXT_MAX, "0\n");
		}
		lun->fn = l == 0 ? fn : drv_function_unit(fn, l);
		if (lun->fn == NULL) {
			r = -ENOMEM;
			goto fail;
		}
		if ((r = lun_add_files(lun)) < 0)
			goto fail;
	}
	return 0;
fail:
	/* The host drops the files of fn and its units. */
	bot_free(bot);
	fn->priv = NULL;
	return r;
}

const struct driver_ops disk_driver = {
    .name = "disk",
    .probe = disk_probe,
    .ctl = disk_ctl,
};
