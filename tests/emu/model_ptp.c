/*
 * `camera`: a digital camera speaking PTP (PIMA 15740) over the USB Still
 * Image Capture Device class 6/1/1: bulk OUT 0x02, bulk IN 0x81 (512),
 * interrupt IN 0x83 (events).  pid.codes test VID:PID 1209:5050.
 *
 *   store 00010001  "SD" card, read-write:
 *       DCIM/                         folder, handle 1
 *       DCIM/100CANON/                folder, handle 2
 *       DCIM/100CANON/IMG_0001.JPG    300000 bytes, handle 3
 *       DCIM/100CANON/IMG_0002.JPG    1 MiB + 123 bytes, handle 4
 *       DCIM/100CANON/MVI_0003.MOV    16 MiB, handle 5
 *   store 00020001  internal "ROM", read-only:
 *       MANUAL/                       folder, handle 6
 *       MANUAL/README.TXT             4096 bytes, handle 7
 *
 * Object h holds byte `off` = emu_disk_byte(h, off) (disk_pattern.h), so a
 * test knows every byte without a copy; uploads (SendObjectInfo +
 * SendObject) keep their bytes and get the next handle.  Modification
 * dates are EMU_PTP_DATE plus h minutes.  InitiateCapture (0x100E) adds
 * IMG_NNNN.JPG (20000 bytes) to DCIM/100CANON and sends ObjectAdded on the
 * interrupt endpoint; DeleteObject sends nothing (the initiator asked).
 *
 * `camera-liar` is the same camera lying once each way: the first
 * GetPartialObject at or past 1 MiB sends 4096 bytes more than asked, the
 * first one at or past 2 MiB answers with a response container of another
 * transaction id.  Both then behave (the initiator cancels and goes on).
 *
 * Transactions follow the class spec: a command container on OUT, then a
 * data container (either way) and a response container on IN.  A command
 * while a transaction is in progress stalls bulk OUT (as QEMU's usb-mtp
 * does); the class Cancel Request (0x64) and Device Reset (0x66, which also
 * closes the session) return to idle, as do the halts being cleared.
 */
#include "emu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "disk_pattern.h"
#include "proto.h"

#define EP_OUT	 0x02
#define EP_IN	 0x81
#define EP_EVENT 0x83

#define HDR	   12
#define MAX_OBJS   64
#define MAX_EVENTS 16
#define MIB	   (1024u * 1024u)
/* Largest data container a command may send us (SendObject). */
#define MAX_OUT	    (80u * MIB)
#define STORE_SD    0x00010001u
#define STORE_ROM   0x00020001u
#define CAPTURE_LEN 20000u

struct pobj {
	bool used;
	uint32_t handle, storage, parent; /* parent 0: the storage's root */
	uint16_t format;
	char name[64];
	uint64_t size;
	uint8_t *data; /* NULL: the pattern */
};

enum pstage { IDLE, DATA_OUT, DATA_IN, RESPONSE };

struct ptpdev {
	enum pstage stage;
	uint32_t session;
	uint32_t tid, params[5];
	unsigned nparams;
	uint16_t code;
	uint8_t *in; /* DATA_IN: the whole container */
	size_t in_len, in_off;
	uint8_t *out; /* DATA_OUT: what arrived of the container */
	size_t out_len, out_need;
	uint8_t resp[HDR + 20];
	size_t resp_len;
	bool out_halted;
	struct pobj objs[MAX_OBJS];
	uint32_t next_handle;
	/* SendObjectInfo's object, waiting for SendObject. */
	bool pending_upload;
	struct pobj upload;
	uint8_t events[MAX_EVENTS][HDR + 4];
	unsigned nevents;
	unsigned captures;
	bool liar, lied_long, lied_tid;
};

static const uint16_t supported_ops[] = {
    0x1001, 0x1002, 0x1003, 0x1004, 0x1005, 0x1007, 0x1008, 0x100b, 0x100c, 0x100d, 0x100e, 0x101b,
};

static void add_obj(struct ptpdev *p, uint32_t storage, uint32_t parent, uint16_t format, const char *name,
		    uint64_t size)
{
	for (unsigned i = 0; i < MAX_OBJS; i++)
		if (!p->objs[i].used) {
			struct pobj *o = &p->objs[i];
			memset(o, 0, sizeof(*o));
			o->used = true;
			o->handle = p->next_handle++;
			o->storage = storage;
			o->parent = parent;
			o->format = format;
			snprintf(o->name, sizeof(o->name), "%s", name);
			o->size = size;
			return;
		}
}

static int ptp_init(struct emu_dev *dev)
{
	struct ptpdev *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return -ENOMEM;
	p->next_handle = 1;
	add_obj(p, STORE_SD, 0, 0x3001, "DCIM", 0);
	add_obj(p, STORE_SD, 1, 0x3001, "100CANON", 0);
	add_obj(p, STORE_SD, 2, 0x3801, "IMG_0001.JPG", 300000);
	add_obj(p, STORE_SD, 2, 0x3801, "IMG_0002.JPG", MIB + 123);
	add_obj(p, STORE_SD, 2, 0x300d, "MVI_0003.MOV", 16 * MIB);
	add_obj(p, STORE_ROM, 0, 0x3001, "MANUAL", 0);
	add_obj(p, STORE_ROM, 6, 0x3004, "README.TXT", 4096);
	p->captures = 3;
	p->liar = dev->model == &emu_model_camera_liar;
	dev->state = p;
	return 0;
}

static void reset_stage(struct ptpdev *p)
{
	free(p->in);
	free(p->out);
	p->in = p->out = NULL;
	p->in_len = p->in_off = p->out_len = p->out_need = 0;
	p->stage = IDLE;
}

static void ptp_fini(struct emu_dev *dev)
{
	struct ptpdev *p = dev->state;

	if (p == NULL)
		return;
	reset_stage(p);
	for (unsigned i = 0; i < MAX_OBJS; i++)
		free(p->objs[i].data);
	free(p->upload.data);
	free(p);
	dev->state = NULL;
}

static struct pobj *find(struct ptpdev *p, uint32_t handle)
{
	for (unsigned i = 0; i < MAX_OBJS; i++)
		if (p->objs[i].used && p->objs[i].handle == handle)
			return &p->objs[i];
	return NULL;
}

/* ---- Building containers ---- */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void b_grow(struct buf *b, size_t n)
{
	if (b->len + n <= b->cap)
		return;
	b->cap = (b->len + n) * 2;
	b->p = realloc(b->p, b->cap);
	if (b->p == NULL)
		abort();
}

static void b_u8(struct buf *b, uint8_t v)
{
	b_grow(b, 1);
	b->p[b->len++] = v;
}

static void b_u16(struct buf *b, uint16_t v)
{
	b_grow(b, 2);
	put_le16(b->p + b->len, v);
	b->len += 2;
}

static void b_u32(struct buf *b, uint32_t v)
{
	b_grow(b, 4);
	put_le32(b->p + b->len, v);
	b->len += 4;
}

static void b_u64(struct buf *b, uint64_t v)
{
	b_u32(b, (uint32_t)v);
	b_u32(b, (uint32_t)(v >> 32));
}

static void b_str(struct buf *b, const char *s)
{
	size_t n = strlen(s);

	if (n == 0)
		return b_u8(b, 0);
	b_u8(b, (uint8_t)(n + 1));
	for (size_t i = 0; i <= n; i++)
		b_u16(b, (uint8_t)s[i]);
}

static void respond(struct ptpdev *p, uint16_t rc, unsigned n, const uint32_t *params)
{
	p->resp_len = HDR + 4 * n;
	put_le32(p->resp, (uint32_t)p->resp_len);
	put_le16(p->resp + 4, 3);
	put_le16(p->resp + 6, rc);
	put_le32(p->resp + 8, p->tid);
	for (unsigned i = 0; i < n; i++)
		put_le32(p->resp + HDR + 4 * i, params[i]);
	p->stage = RESPONSE;
}

/* Starts the data-in stage with b's bytes (HDR bytes of room first), then the response. */
static void send_data(struct ptpdev *p, struct buf *b, uint16_t rc, unsigned n, const uint32_t *params)
{
	put_le32(b->p, (uint32_t)b->len);
	put_le16(b->p + 4, 2);
	put_le16(b->p + 6, p->code);
	put_le32(b->p + 8, p->tid);
	p->in = b->p;
	p->in_len = b->len;
	p->in_off = 0;
	respond(p, rc, n, params);
	p->stage = DATA_IN;
}

static void date_of(uint32_t handle, char *out, size_t cap)
{
	/* EMU_PTP_DATE (2024-06-15 10:00:00) plus `handle` minutes. */
	snprintf(out, cap, "20240615T10%02u%02u", handle % 60, 0u);
}

static void event(struct ptpdev *p, uint16_t code, uint32_t param)
{
	if (p->nevents == MAX_EVENTS)
		return;
	uint8_t *e = p->events[p->nevents++];
	put_le32(e, HDR + 4);
	put_le16(e + 4, 4);
	put_le16(e + 6, code);
	put_le32(e + 8, 0);
	put_le32(e + HDR, param);
}

/* ---- Operations ---- */

static void object_info(struct ptpdev *p, struct pobj *o)
{
	struct buf b = {0};
	char date[32];

	b_grow(&b, HDR);
	b.len = HDR;
	b_u32(&b, o->storage);
	b_u16(&b, o->format);
	b_u16(&b, 0); /* protection */
	b_u32(&b, o->size > 0xffffffffu ? 0xffffffffu : (uint32_t)o->size);
	b_u16(&b, 0);
	for (int i = 0; i < 6; i++)
		b_u32(&b, 0); /* thumb size/width/height, image width/height, depth */
	b_u32(&b, o->parent);
	b_u16(&b, o->format == 0x3001 ? 1 : 0); /* generic folder */
	b_u32(&b, 0);
	b_u32(&b, 0);
	b_str(&b, o->name);
	date_of(o->handle, date, sizeof(date));
	b_str(&b, date); /* capture */
	b_str(&b, date); /* modification */
	b_str(&b, "");
	send_data(p, &b, 0x2001, 0, NULL);
}

static void partial(struct ptpdev *p, struct pobj *o, uint64_t off, uint32_t n)
{
	struct buf b = {0};
	uint32_t res;

	if (off > o->size)
		off = o->size;
	if (n > o->size - off)
		n = (uint32_t)(o->size - off);
	uint32_t extra = 0;
	if (p->liar && off >= MIB && !p->lied_long) {
		p->lied_long = true;
		extra = 4096;
	}
	b_grow(&b, HDR + n + extra);
	b.len = HDR + n + extra;
	for (uint32_t i = 0; i < n + extra; i++)
		b.p[HDR + i] =
		    o->data != NULL && i < n ? o->data[off + i] : emu_disk_byte(o->handle, off + i);
	res = n;
	send_data(p, &b, 0x2001, 1, &res);
	if (p->liar && off >= 2 * MIB && !p->lied_tid) {
		p->lied_tid = true;
		put_le32(p->resp + 8, p->tid + 7);
	}
}

static void delete_tree(struct ptpdev *p, struct pobj *o)
{
	uint32_t h = o->handle;

	for (unsigned i = 0; i < MAX_OBJS; i++)
		if (p->objs[i].used && p->objs[i].parent == h && p->objs[i].storage == o->storage)
			delete_tree(p, &p->objs[i]);
	free(o->data);
	memset(o, 0, sizeof(*o));
}

static void command(struct emu_dev *dev, struct ptpdev *p)
{
	uint32_t *a = p->params;
	struct buf b = {0};
	struct pobj *o;
	uint32_t r[3];

	if (p->session == 0 && p->code != 0x1001 && p->code != 0x1002)
		return respond(p, 0x2003, 0, NULL);
	b_grow(&b, HDR);
	b.len = HDR;
	switch (p->code) {
	case 0x1001: /* GetDeviceInfo */
		b_u16(&b, 100);
		b_u32(&b, 0);
		b_u16(&b, 0);
		b_str(&b, "");
		b_u16(&b, 0);
		b_u32(&b, sizeof(supported_ops) / 2);
		for (size_t i = 0; i < sizeof(supported_ops) / 2; i++)
			b_u16(&b, supported_ops[i]);
		b_u32(&b, 3);
		b_u16(&b, 0x4002);
		b_u16(&b, 0x4003);
		b_u16(&b, 0x400d);
		b_u32(&b, 0);
		b_u32(&b, 0);
		b_u32(&b, 1);
		b_u16(&b, 0x3801);
		b_str(&b, "plugfs");
		b_str(&b, "test camera");
		b_str(&b, "1-0.0");
		b_str(&b, "0001234567");
		return send_data(p, &b, 0x2001, 0, NULL);
	case 0x1002: /* OpenSession */
		free(b.p);
		if (p->session != 0) {
			r[0] = p->session;
			return respond(p, 0x201e, 1, r);
		}
		if (p->nparams < 1 || a[0] == 0)
			return respond(p, 0x201d, 0, NULL);
		p->session = a[0];
		return respond(p, 0x2001, 0, NULL);
	case 0x1003: /* CloseSession */
		free(b.p);
		p->session = 0;
		return respond(p, 0x2001, 0, NULL);
	case 0x1004: /* GetStorageIDs */
		b_u32(&b, 2);
		b_u32(&b, STORE_SD);
		b_u32(&b, STORE_ROM);
		return send_data(p, &b, 0x2001, 0, NULL);
	case 0x1005: /* GetStorageInfo */
		if (a[0] != STORE_SD && a[0] != STORE_ROM) {
			free(b.p);
			return respond(p, 0x2008, 0, NULL);
		}
		b_u16(&b, a[0] == STORE_SD ? 4 : 3); /* removable RAM / fixed RAM */
		b_u16(&b, 2);			     /* generic hierarchical */
		b_u16(&b, a[0] == STORE_SD ? 0 : 1);
		b_u64(&b, 64ull * MIB);
		b_u64(&b, 32ull * MIB);
		b_u32(&b, 0xffffffffu);
		b_str(&b, a[0] == STORE_SD ? "SD" : "ROM");
		b_str(&b, "");
		return send_data(p, &b, 0x2001, 0, NULL);
	case 0x1007: { /* GetObjectHandles(storage, format, parent) */
		uint32_t parent = a[2] == 0xffffffffu ? 0 : a[2];
		uint32_t count = 0;
		if (a[0] != STORE_SD && a[0] != STORE_ROM && a[0] != 0xffffffffu) {
			free(b.p);
			return respond(p, 0x2008, 0, NULL);
		}
		if (parent != 0 && ((o = find(p, parent)) == NULL || o->format != 0x3001)) {
			free(b.p);
			return respond(p, o == NULL ? 0x2009 : 0x201a, 0, NULL);
		}
		b_u32(&b, 0);
		for (unsigned i = 0; i < MAX_OBJS; i++)
			if (p->objs[i].used && p->objs[i].parent == parent &&
			    (a[0] == 0xffffffffu || p->objs[i].storage == a[0])) {
				b_u32(&b, p->objs[i].handle);
				count++;
			}
		put_le32(b.p + HDR, count);
		return send_data(p, &b, 0x2001, 0, NULL);
	}
	case 0x1008: /* GetObjectInfo */
		free(b.p);
		if ((o = find(p, a[0])) == NULL)
			return respond(p, 0x2009, 0, NULL);
		return object_info(p, o);
	case 0x101b: /* GetPartialObject(handle, offset, max) */
		free(b.p);
		if ((o = find(p, a[0])) == NULL || o->format == 0x3001)
			return respond(p, 0x2009, 0, NULL);
		return partial(p, o, a[1], a[2]);
	case 0x100b: /* DeleteObject */
		free(b.p);
		if ((o = find(p, a[0])) == NULL)
			return respond(p, 0x2009, 0, NULL);
		if (o->storage != STORE_SD)
			return respond(p, 0x200e, 0, NULL);
		delete_tree(p, o);
		return respond(p, 0x2001, 0, NULL);
	case 0x100c: /* SendObjectInfo(storage, parent): the dataset follows */
	case 0x100d: /* SendObject: the object follows */
		free(b.p);
		if (p->code == 0x100d && !p->pending_upload)
			return respond(p, 0x2015, 0, NULL); /* no valid ObjectInfo */
		p->stage = DATA_OUT;
		p->out_len = 0;
		p->out_need = 0;
		return;
	case 0x100e: { /* InitiateCapture */
		char name[32];
		free(b.p);
		snprintf(name, sizeof(name), "IMG_%04u.JPG", ++p->captures);
		add_obj(p, STORE_SD, 2, 0x3801, name, CAPTURE_LEN);
		emu_log("%s: captured %s", dev->sysname, name);
		respond(p, 0x2001, 0, NULL);
		event(p, 0x4002, p->next_handle - 1);
		event(p, 0x400d, 0); /* CaptureComplete */
		return;
	}
	default:
		free(b.p);
		return respond(p, 0x2005, 0, NULL);
	}
}

/* The data container of SendObjectInfo or SendObject has arrived whole. */
static void data_out_complete(struct ptpdev *p)
{
	const uint8_t *d = p->out + HDR;
	size_t n = p->out_len - HDR;
	uint32_t r[3];

	if (p->code == 0x100c) {
		struct pobj *u = &p->upload;
		char name[64];
		uint32_t parent = p->params[1] == 0xffffffffu ? 0 : p->params[1];
		if (p->params[0] != STORE_SD)
			return respond(p, p->params[0] == STORE_ROM ? 0x200e : 0x2008, 0, NULL);
		if (n < 53 || (parent != 0 && find(p, parent) == NULL))
			return respond(p, n < 53 ? 0x2002 : 0x201a, 0, NULL);
		unsigned chars = d[52];
		if (chars == 0 || 53 + 2 * (size_t)chars > n || chars > sizeof(name))
			return respond(p, 0x2002, 0, NULL);
		for (unsigned i = 0; i < chars; i++)
			name[i] = (char)get_le16(d + 53 + 2 * i);
		name[chars - 1] = '\0';
		free(u->data);
		memset(u, 0, sizeof(*u));
		u->storage = STORE_SD;
		u->parent = parent;
		u->format = get_le16(d + 4);
		u->size = get_le32(d + 8);
		snprintf(u->name, sizeof(u->name), "%s", name);
		p->pending_upload = true;
		r[0] = STORE_SD;
		r[1] = parent;
		r[2] = p->next_handle;
		return respond(p, 0x2001, 3, r);
	}
	/* SendObject */
	if (n != p->upload.size)
		return respond(p, 0x2007, 0, NULL); /* incomplete transfer */
	for (unsigned i = 0; i < MAX_OBJS; i++)
		if (!p->objs[i].used) {
			struct pobj *o = &p->objs[i];
			*o = p->upload;
			o->used = true;
			o->handle = p->next_handle++;
			o->data = malloc(n > 0 ? n : 1);
			if (o->data == NULL)
				abort();
			memcpy(o->data, d, n);
			memset(&p->upload, 0, sizeof(p->upload));
			p->pending_upload = false;
			return respond(p, 0x2001, 0, NULL);
		}
	respond(p, 0x200c, 0, NULL); /* store full */
}

static void take_out(struct emu_dev *dev, struct ptpdev *p, struct emu_urb *urb)
{
	const uint8_t *d = urb->data;

	if (p->out_halted)
		return emu_urb_complete(urb, -EPIPE, 0);
	if (p->stage == IDLE) {
		if (urb->length < HDR || get_le16(d + 4) != 1 || get_le32(d) != urb->length ||
		    (urb->length - HDR) % 4 != 0 || urb->length > HDR + 20) {
			emu_log("%s: ptp: not a command container; stalling", dev->sysname);
			p->out_halted = true;
			return emu_urb_complete(urb, -EPIPE, 0);
		}
		p->code = get_le16(d + 6);
		p->tid = get_le32(d + 8);
		p->nparams = (urb->length - HDR) / 4;
		memset(p->params, 0, sizeof(p->params));
		for (unsigned i = 0; i < p->nparams; i++)
			p->params[i] = get_le32(d + HDR + 4 * i);
		emu_log("%s: ptp: op %04x tid %u", dev->sysname, p->code, p->tid);
		emu_urb_complete(urb, 0, urb->length);
		return command(dev, p);
	}
	if (p->stage != DATA_OUT) {
		emu_log("%s: ptp: OUT while a transaction is in progress; stalling", dev->sysname);
		p->out_halted = true;
		return emu_urb_complete(urb, -EPIPE, 0);
	}
	if (p->out_len == 0) {
		if (urb->length < HDR || get_le16(d + 4) != 2 || get_le16(d + 6) != p->code ||
		    get_le32(d + 8) != p->tid || get_le32(d) < HDR || get_le32(d) > MAX_OUT) {
			p->out_halted = true;
			return emu_urb_complete(urb, -EPIPE, 0);
		}
		p->out_need = get_le32(d);
		if ((p->out = malloc(p->out_need)) == NULL)
			abort();
	}
	size_t n = urb->length;
	if (n > p->out_need - p->out_len)
		n = p->out_need - p->out_len;
	memcpy(p->out + p->out_len, d, n);
	p->out_len += n;
	emu_urb_complete(urb, 0, urb->length);
	if (p->out_len == p->out_need) {
		data_out_complete(p);
		free(p->out);
		p->out = NULL;
		p->out_len = p->out_need = 0;
	}
}

static void give_in(struct ptpdev *p, struct emu_urb *urb)
{
	if (p->stage == DATA_IN) {
		size_t n = p->in_len - p->in_off;
		if (n > urb->length)
			n = urb->length;
		memcpy(urb->data, p->in + p->in_off, n);
		p->in_off += n;
		if (p->in_off == p->in_len) {
			free(p->in);
			p->in = NULL;
			p->stage = RESPONSE;
		}
		return emu_urb_complete(urb, 0, (uint32_t)n);
	}
	size_t n = p->resp_len < urb->length ? p->resp_len : urb->length;
	memcpy(urb->data, p->resp, n);
	p->stage = IDLE;
	emu_urb_complete(urb, 0, (uint32_t)n);
}

static void pump(struct emu_dev *dev)
{
	struct ptpdev *p = dev->state;
	bool moved = true;

	while (moved) {
		struct emu_urb *out = emu_urb_first_pending(dev, EP_OUT);
		struct emu_urb *in = emu_urb_first_pending(dev, EP_IN);
		struct emu_urb *ev = emu_urb_first_pending(dev, EP_EVENT);

		moved = false;
		if (out != NULL && (p->stage == IDLE || p->stage == DATA_OUT || p->out_halted)) {
			take_out(dev, p, out);
			moved = true;
		} else if (in != NULL && (p->stage == DATA_IN || p->stage == RESPONSE)) {
			give_in(p, in);
			moved = true;
		} else if (out != NULL && p->stage != IDLE && p->stage != DATA_OUT) {
			/* A new command before the last response was read. */
			take_out(dev, p, out);
			moved = true;
		}
		if (ev != NULL && p->nevents > 0) {
			size_t n = sizeof(p->events[0]) < ev->length ? sizeof(p->events[0]) : ev->length;
			memcpy(ev->data, p->events[0], n);
			memmove(p->events[0], p->events[1], (p->nevents - 1) * sizeof(p->events[0]));
			p->nevents--;
			emu_urb_complete(ev, 0, (uint32_t)n);
			moved = true;
		}
	}
}

static void ptp_submit(struct emu_dev *dev, struct emu_urb *urb)
{
	(void)urb;
	pump(dev);
}

static int ptp_control(struct emu_dev *dev, struct emu_urb *urb, const struct emu_setup *s, uint8_t *data)
{
	struct ptpdev *p = dev->state;

	(void)urb;
	if (s->request_type == 0x21 && s->request == 0x64 && s->length == 6 && get_le16(data) == 0x4001) {
		emu_log("%s: ptp: Cancel Request for transaction %u", dev->sysname, get_le32(data + 2));
		reset_stage(p);
		return 0;
	}
	if (s->request_type == 0x21 && s->request == 0x66 && s->length == 0) {
		emu_log("%s: ptp: Device Reset", dev->sysname);
		reset_stage(p);
		p->session = 0;
		p->out_halted = false;
		return 0;
	}
	if (s->request_type == 0xa1 && s->request == 0x67 && s->length >= 4) {
		put_le16(data, 4);
		put_le16(data + 2, 0x2001);
		return 4;
	}
	return -EPIPE;
}

static void ptp_clear_halt(struct emu_dev *dev, uint8_t ep)
{
	struct ptpdev *p = dev->state;

	if (ep == EP_OUT)
		p->out_halted = false;
	pump(dev);
}

static const struct emu_model_ops ptp_ops = {
    .init = ptp_init,
    .fini = ptp_fini,
    .submit = ptp_submit,
    .control = ptp_control,
    .clear_halt = ptp_clear_halt,
};

#define CAMERA_IFACE                                                                                         \
	{                                                                                                    \
		.cls = 6, .subclass = 1, .protocol = 1, .num_eps = 3,                                        \
		.eps = {                                                                                     \
		    {.address = EP_IN, .type = 2, .max_packet = 512},                                        \
		    {.address = EP_OUT, .type = 2, .max_packet = 512},                                       \
		    {.address = EP_EVENT, .type = 3, .max_packet = 64, .interval = 9},                       \
		},                                                                                           \
	}

const struct emu_model emu_model_camera_liar = {
    .name = "camera-liar",
    .summary = "the camera, sending more data than asked once and a wrong transaction id once",
    .vendor_id = 0x1209,
    .product_id = 0x5050,
    .bcd_device = 0x0100,
    .manufacturer = "plugfs",
    .product = "test camera",
    .serial = "0001234568",
    .num_ifaces = 1,
    .ifaces = {CAMERA_IFACE},
    .ops = &ptp_ops,
};

const struct emu_model emu_model_camera = {
    .name = "camera",
    .summary = "1209:5050 PTP camera: SD card (rw) with DCIM/100CANON, ROM (ro)",
    .vendor_id = 0x1209,
    .product_id = 0x5050,
    .bcd_device = 0x0100,
    .manufacturer = "plugfs",
    .product = "test camera",
    .serial = "0001234567",
    .num_ifaces = 1,
    .ifaces = {CAMERA_IFACE},
    .ops = &ptp_ops,
};
