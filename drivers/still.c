/*
 * still: PTP cameras and MTP phones, USB still-image class 6/1/1
 * (PIMA 15740 over the USB Still Image Capture Device class, MTP 1.1).
 *
 *     stillN/store-00010001/DCIM/100CANON/IMG_0001.JPG
 *
 * Each storage of the device is a directory of the function, announced in
 * HELLO as a driver-owned tree (common/proto.h); folders and objects below
 * are served on demand: a listing runs GetObjectHandles(storage, 0, parent)
 * and GetObjectInfo for each handle not yet known, and the node id of an
 * object is its PTP object handle, so inode numbers survive a respawn.
 * A read is one GetPartialObject (GetPartialObject64 past 4 GiB) of the
 * bytes asked, so a file is never held whole in memory; rm is
 * DeleteObject; a file created in a folder is buffered here (at most
 * UPLOAD_MAX bytes) and sent with SendObjectInfo + SendObject when it is
 * closed, since PTP wants the size before the data and FUSE gives it last.
 *
 * Transactions run one at a time, as the class requires: command
 * container on bulk OUT, data container out or in, response container on
 * bulk IN, each checked against what was sent (type, code, transaction id,
 * lengths), never trusted.  A transfer that fails or is cancelled
 * mid-transaction is followed by the class Cancel Request (0x64) and
 * clearing both halts; a driver that starts on a device left mid-transfer
 * by its crashed predecessor sends Device Reset (0x66) first.  Events
 * (interrupt IN: ObjectAdded, ObjectRemoved, StoreAdded...) make the next
 * lookup or listing ask the device again.
 *
 * Metadata transactions (listing, lookup, stat) run to completion inside
 * the request handler, with libusb's events handled meanwhile; reads and
 * uploads are asynchronous, so the daemon's CANCEL and heartbeat reach
 * them.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <syslog.h>
#include <time.h>

#include "driver.h"

/* ---- PIMA 15740 / MTP codes ---- */

enum ptp_container { PTP_COMMAND = 1, PTP_DATA = 2, PTP_RESPONSE = 3, PTP_EVENT = 4 };
#define PTP_HDR	       12
#define PTP_MAX_PARAMS 5

enum ptp_op_code {
	OP_GET_DEVICE_INFO = 0x1001,
	OP_OPEN_SESSION = 0x1002,
	OP_GET_STORAGE_IDS = 0x1004,
	OP_GET_STORAGE_INFO = 0x1005,
	OP_GET_OBJECT_HANDLES = 0x1007,
	OP_GET_OBJECT_INFO = 0x1008,
	OP_DELETE_OBJECT = 0x100b,
	OP_SEND_OBJECT_INFO = 0x100c,
	OP_SEND_OBJECT = 0x100d,
	OP_INITIATE_CAPTURE = 0x100e,
	OP_GET_PARTIAL_OBJECT = 0x101b,
	OP_GET_PARTIAL_OBJECT64 = 0x95c1, /* MTP */
};

enum ptp_response {
	RC_OK = 0x2001,
	RC_SESSION_NOT_OPEN = 0x2003,
	RC_OPERATION_NOT_SUPPORTED = 0x2005,
	RC_INVALID_STORAGE_ID = 0x2008,
	RC_INVALID_OBJECT_HANDLE = 0x2009,
	RC_STORE_FULL = 0x200c,
	RC_OBJECT_WRITE_PROTECTED = 0x200d,
	RC_STORE_READ_ONLY = 0x200e,
	RC_ACCESS_DENIED = 0x200f,
	RC_PARTIAL_DELETION = 0x2012,
	RC_STORE_NOT_AVAILABLE = 0x2013,
	RC_DEVICE_BUSY = 0x2019,
	RC_INVALID_PARENT_OBJECT = 0x201a,
	RC_INVALID_PARAMETER = 0x201d,
	RC_SESSION_ALREADY_OPEN = 0x201e,
	RC_TRANSACTION_CANCELLED = 0x201f,
};

enum ptp_event {
	EV_CANCEL_TRANSACTION = 0x4001,
	EV_OBJECT_ADDED = 0x4002,
	EV_OBJECT_REMOVED = 0x4003,
	EV_STORE_ADDED = 0x4004,
	EV_STORE_REMOVED = 0x4005,
};

/* Still Image class requests (interface recipient). */
#define REQ_CANCEL	 0x64
#define REQ_DEVICE_RESET 0x66

#define FMT_UNDEFINED	0x3000
#define FMT_ASSOCIATION 0x3001
#define FMT_EXIF_JPEG	0x3801

/* StorageInfo AccessCapability: 0 read-write, 1 read-only, 2 read-only with deletion. */
#define ACCESS_RW 0

/* ---- Limits ---- */

#define SESSION_ID   1
#define MAX_STORAGES 16
/* Storage roots are nodes ROOT_NODE + index: object handles there are refused (logged). */
#define ROOT_NODE 0xffffff00u
/* Files being uploaded are nodes UPLOAD_NODE + slot until they are sent. */
#define UPLOAD_NODE  0xfffffe00u
#define MAX_UPLOADS  16
#define UPLOAD_MAX   (64u * 1024 * 1024)
#define MAX_HANDLES  65536 /* per folder */
#define META_MAX     (4u * 1024 * 1024)
#define RESPONSE_BUF 512
#define EVENT_BUF    64
#define MAX_OBJECTS  (1u << 20)

enum stage { ST_IDLE, ST_COMMAND, ST_DATA_OUT, ST_DATA_IN, ST_DRAIN, ST_RESPONSE, ST_RECOVER };

struct still;

/* One transaction. */
struct ptp_op {
	struct still *st;
	uint16_t code;
	uint32_t params[PTP_MAX_PARAMS];
	unsigned nparams;
	const uint8_t *out; /* data phase to the device (the caller's, until done) */
	size_t out_len;
	bool has_out, want_in;
	size_t in_cap; /* most data bytes expected */
	/* Results. */
	struct drv_xfer *in_x; /* owns the data phase's buffer */
	const uint8_t *in;
	size_t in_len;
	uint16_t rc;
	uint32_t rparams[PTP_MAX_PARAMS];
	unsigned nrparams;
	int result; /* 0 or -errno */
	bool cancelled;
	void (*done)(struct ptp_op *op);
	void *arg;
	TAILQ_ENTRY(ptp_op) link;
};

struct storage {
	uint32_t id;
	uint16_t access;
	bool listed;
	char name[32];
};

struct obj {
	uint32_t handle, storage, parent; /* parent: the folder's node (a storage root's ROOT_NODE + i) */
	uint16_t format, protection;
	bool dir, listed;
	uint64_t size;
	int64_t mtime;
	char name[PROTO_MAX_NODE_NAME + 1];
};

/* A file created in a folder: bytes kept until it is closed. */
struct upload {
	bool used, sent;
	bool released;		  /* its last handle is closed: freed once the send in flight ends */
	bool sending;		  /* SendObjectInfo or SendObject queued or running */
	uint32_t parent, storage; /* parent: the folder's PTP handle (0xffffffff: storage root) */
	uint32_t parent_node;
	char name[PROTO_MAX_NODE_NAME + 1];
	uint8_t *buf;
	size_t len, cap;
	int64_t mtime;
	struct drv_req *flush; /* the FLUSH being answered by the upload in flight */
	uint8_t info[512];     /* the ObjectInfo dataset sent */
};

struct still {
	struct drv_function *fn;
	libusb_device_handle *usb;
	uint8_t ifnum, ep_in, ep_out, ep_int;
	uint16_t in_mps, out_mps, int_mps;
	uint32_t tid;
	TAILQ_HEAD(, ptp_op) queue;
	struct ptp_op *cur;
	enum stage stage;
	struct drv_xfer *xfer; /* the current stage's transfer */
	uint32_t drain_left;
	bool resp_retried;
	int recover_result;
	bool gone;
	/* Operations the device lists in DeviceInfo. */
	bool can_partial, can_partial64, can_delete, can_send;
	struct drv_xfer *event_x;
	bool dirty; /* an event came: listings are stale */
	unsigned nstorages;
	struct storage storages[MAX_STORAGES];
	struct obj *objs;
	unsigned nobjs, capobjs;
	struct upload uploads[MAX_UPLOADS];
};

static void ptp_kick(struct still *st);

/* ---- Errors ---- */

static int rc_errno(uint16_t rc)
{
	switch (rc) {
	case RC_OK:
		return 0;
	case RC_INVALID_OBJECT_HANDLE:
	case RC_INVALID_STORAGE_ID:
	case RC_INVALID_PARENT_OBJECT:
		return -ENOENT;
	case RC_STORE_FULL:
		return -ENOSPC;
	case RC_OBJECT_WRITE_PROTECTED:
	case RC_ACCESS_DENIED:
		return -EACCES;
	case RC_STORE_READ_ONLY:
		return -EROFS;
	case RC_STORE_NOT_AVAILABLE:
		return -ENOMEDIUM;
	case RC_DEVICE_BUSY:
		return -EBUSY;
	case RC_OPERATION_NOT_SUPPORTED:
		return -EOPNOTSUPP;
	case RC_INVALID_PARAMETER:
		return -EINVAL;
	case RC_TRANSACTION_CANCELLED:
		return -EINTR;
	default:
		return -EIO;
	}
}

/* ---- The transaction engine ---- */

static void op_free(struct ptp_op *op)
{
	if (op == NULL)
		return;
	drv_xfer_free(op->in_x);
	free(op);
}

static struct ptp_op *op_new(struct still *st, uint16_t code, unsigned nparams, const uint32_t *params)
{
	struct ptp_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->st = st;
	op->code = code;
	op->nparams = nparams;
	for (unsigned i = 0; i < nparams && i < PTP_MAX_PARAMS; i++)
		op->params[i] = params[i];
	return op;
}

static void ptp_finish(struct still *st, int result)
{
	struct ptp_op *op = st->cur;

	st->cur = NULL;
	st->xfer = NULL;
	st->stage = ST_IDLE;
	op->result = result;
	op->done(op);
	ptp_kick(st);
}

static int ptp_submit(struct still *st, struct drv_xfer *x, enum stage stage)
{
	int r = drv_xfer_submit(x);

	if (r < 0) {
		drv_xfer_free(x);
		return r;
	}
	st->xfer = x;
	st->stage = stage;
	return 0;
}

static void cancel_done(struct drv_xfer *x)
{
	struct still *st = x->arg;
	enum libusb_transfer_status s = x->t->status;
	int r;

	drv_xfer_free(x);
	if (s == LIBUSB_TRANSFER_NO_DEVICE)
		st->gone = true;
	else if (s != LIBUSB_TRANSFER_COMPLETED)
		drv_log(LOG_NOTICE, "interface %u: Cancel Request not taken (%s); clearing halts", st->ifnum,
			strerror(-drv_xfer_errno(s)));
	if (!st->gone && ((r = libusb_clear_halt(st->usb, st->ep_in)) == LIBUSB_ERROR_NO_DEVICE ||
			  (r = libusb_clear_halt(st->usb, st->ep_out)) == LIBUSB_ERROR_NO_DEVICE))
		st->gone = true;
	ptp_finish(st, st->gone ? -ENODEV : st->recover_result);
}

/*
 * The transaction broke off mid-way (a cancel, a stall, garbage): tell the
 * device with the class Cancel Request, clear both pipes, and fail it.
 */
static void ptp_recover(struct still *st, int result, const char *why)
{
	struct drv_xfer *x;
	uint8_t *p;
	int r;

	if (st->gone || result == -ENODEV) {
		st->gone = true;
		return ptp_finish(st, -ENODEV);
	}
	if (result != -EINTR)
		drv_log(LOG_WARNING, "interface %u: transaction %u (op %04x): %s; cancelling it", st->ifnum,
			st->tid, st->cur->code, why);
	st->recover_result = result;
	if ((x = drv_xfer_new(LIBUSB_CONTROL_SETUP_SIZE + 6, cancel_done, st)) == NULL)
		return ptp_finish(st, -ENOMEM);
	p = x->t->buffer;
	libusb_fill_control_setup(p, LIBUSB_REQUEST_TYPE_CLASS | LIBUSB_RECIPIENT_INTERFACE, REQ_CANCEL, 0,
				  st->ifnum, 6);
	put_le16(p + LIBUSB_CONTROL_SETUP_SIZE, EV_CANCEL_TRANSACTION);
	put_le32(p + LIBUSB_CONTROL_SETUP_SIZE + 2, st->tid);
	libusb_fill_control_transfer(x->t, st->usb, p, NULL, NULL, 0);
	x->done = cancel_done;
	x->arg = st;
	if ((r = ptp_submit(st, x, ST_RECOVER)) < 0)
		ptp_finish(st, r);
}

/* A transfer that did not complete: its errno, after which the transaction is recovered. */
static void stage_failed(struct still *st, enum libusb_transfer_status s, const char *stage)
{
	char why[64];

	if (s == LIBUSB_TRANSFER_NO_DEVICE) {
		st->gone = true;
		return ptp_finish(st, -ENODEV);
	}
	snprintf(why, sizeof(why), "%s %s", stage, s == LIBUSB_TRANSFER_STALL ? "stalled" : "failed");
	ptp_recover(st, st->cur->cancelled || s == LIBUSB_TRANSFER_CANCELLED ? -EINTR : -EIO, why);
}

static void response_done(struct drv_xfer *x);

static void start_response(struct still *st)
{
	size_t len = st->in_mps > RESPONSE_BUF ? st->in_mps : RESPONSE_BUF;
	struct drv_xfer *x;
	int r;

	if (st->cur->cancelled)
		return ptp_recover(st, -EINTR, "cancelled");
	if ((x = drv_xfer_new(len, response_done, st)) == NULL)
		return ptp_recover(st, -ENOMEM, "out of memory");
	libusb_fill_bulk_transfer(x->t, st->usb, st->ep_in, x->t->buffer, (int)len, NULL, NULL, 0);
	x->done = response_done;
	x->arg = st;
	if ((r = ptp_submit(st, x, ST_RESPONSE)) < 0)
		ptp_recover(st, r, "submitting the response stage");
}

/* Parses a response container of n bytes; 0 or -EPROTO (why set). */
static int take_response(struct still *st, const uint8_t *p, size_t n, const char **why)
{
	struct ptp_op *op = st->cur;
	uint32_t len = get_le32(p);

	if (n < PTP_HDR || len != n || len > PTP_HDR + 4 * PTP_MAX_PARAMS || (len - PTP_HDR) % 4 != 0) {
		*why = "response container of a bad length";
		return -EPROTO;
	}
	if (get_le16(p + 4) != PTP_RESPONSE || get_le32(p + 8) != st->tid) {
		*why = "response container of another type or transaction";
		return -EPROTO;
	}
	op->rc = get_le16(p + 6);
	op->nrparams = (len - PTP_HDR) / 4;
	for (unsigned i = 0; i < op->nrparams; i++)
		op->rparams[i] = get_le32(p + PTP_HDR + 4 * i);
	return 0;
}

static void response_done(struct drv_xfer *x)
{
	struct still *st = x->arg;
	enum libusb_transfer_status s = x->t->status;
	size_t n = (size_t)x->t->actual_length;
	const char *why = NULL;
	uint8_t buf[RESPONSE_BUF];
	int r;

	if (n > sizeof(buf))
		n = sizeof(buf);
	memcpy(buf, x->t->buffer, n);
	drv_xfer_free(x);
	st->xfer = NULL;
	if (s != LIBUSB_TRANSFER_COMPLETED)
		return stage_failed(st, s, "response stage");
	/* The zero-length packet ending a data stage that filled whole packets. */
	if (n == 0 && !st->resp_retried) {
		st->resp_retried = true;
		return start_response(st);
	}
	if ((r = take_response(st, buf, n, &why)) < 0)
		return ptp_recover(st, -EIO, why);
	ptp_finish(st, rc_errno(st->cur->rc));
}

static void drain_done(struct drv_xfer *x);

static void start_drain(struct still *st)
{
	struct drv_xfer *x = drv_xfer_new(64 * 1024, drain_done, st);
	int r;

	if (x == NULL)
		return ptp_recover(st, -ENOMEM, "out of memory");
	libusb_fill_bulk_transfer(x->t, st->usb, st->ep_in, x->t->buffer, 64 * 1024, NULL, NULL, 0);
	x->done = drain_done;
	x->arg = st;
	if ((r = ptp_submit(st, x, ST_DRAIN)) < 0)
		ptp_recover(st, r, "submitting a drain");
}

/* More data than asked for: read it off the pipe and fail the operation. */
static void drain_done(struct drv_xfer *x)
{
	struct still *st = x->arg;
	enum libusb_transfer_status s = x->t->status;
	uint32_t n = (uint32_t)x->t->actual_length;

	drv_xfer_free(x);
	st->xfer = NULL;
	if (s != LIBUSB_TRANSFER_COMPLETED)
		return stage_failed(st, s, "data stage");
	st->drain_left = n < st->drain_left ? st->drain_left - n : 0;
	if (st->drain_left > 0 && n == 64 * 1024)
		return start_drain(st);
	ptp_recover(st, -EIO, "data container longer than asked for");
}

static void data_in_done(struct drv_xfer *x)
{
	struct still *st = x->arg;
	struct ptp_op *op = st->cur;
	enum libusb_transfer_status s = x->t->status;
	size_t n = (size_t)x->t->actual_length;
	const uint8_t *p = x->t->buffer;
	const char *why = NULL;

	st->xfer = NULL;
	if (s != LIBUSB_TRANSFER_COMPLETED) {
		drv_xfer_free(x);
		return stage_failed(st, s, "data stage");
	}
	/* A device that fails the operation skips the data stage and answers at once. */
	if (n >= PTP_HDR && get_le16(p + 4) == PTP_RESPONSE) {
		int r = take_response(st, p, n, &why);
		drv_xfer_free(x);
		if (r < 0)
			return ptp_recover(st, -EIO, why);
		if (op->rc == RC_OK)
			return ptp_recover(st, -EIO, "success without the data stage");
		return ptp_finish(st, rc_errno(op->rc));
	}
	uint32_t len = n >= PTP_HDR ? get_le32(p) : 0;
	if (n < PTP_HDR || get_le16(p + 4) != PTP_DATA || get_le16(p + 6) != op->code ||
	    get_le32(p + 8) != st->tid) {
		drv_xfer_free(x);
		return ptp_recover(st, -EIO, "data container of another type, operation or transaction");
	}
	if (len < PTP_HDR) {
		drv_xfer_free(x);
		return ptp_recover(st, -EIO, "data container shorter than its header");
	}
	if (len > PTP_HDR + op->in_cap) {
		/* More than asked: the rest may still be on its way. */
		st->drain_left = n < len ? len - (uint32_t)n : 0;
		drv_xfer_free(x);
		if (st->drain_left > 0)
			return start_drain(st);
		return ptp_recover(st, -EIO, "data container longer than asked for");
	}
	if (n != len) {
		drv_xfer_free(x);
		return ptp_recover(st, -EIO, "data container length disagrees with the bytes sent");
	}
	op->in_x = x;
	op->in = p + PTP_HDR;
	op->in_len = n - PTP_HDR;
	start_response(st);
}

static void start_data_in(struct still *st)
{
	struct ptp_op *op = st->cur;
	/* Room for one packet more than the container can be: the transfer then ends short. */
	size_t len = (PTP_HDR + op->in_cap + st->in_mps) / st->in_mps * st->in_mps;
	struct drv_xfer *x;
	int r;

	if ((x = drv_xfer_new(len, data_in_done, st)) == NULL)
		return ptp_recover(st, -ENOMEM, "out of memory");
	libusb_fill_bulk_transfer(x->t, st->usb, st->ep_in, x->t->buffer, (int)len, NULL, NULL, 0);
	x->done = data_in_done;
	x->arg = st;
	if ((r = ptp_submit(st, x, ST_DATA_IN)) < 0)
		ptp_recover(st, r, "submitting the data stage");
}

static void data_out_done(struct drv_xfer *x)
{
	struct still *st = x->arg;
	enum libusb_transfer_status s = x->t->status;
	bool whole = x->t->actual_length == x->t->length;

	drv_xfer_free(x);
	st->xfer = NULL;
	if (s != LIBUSB_TRANSFER_COMPLETED)
		return stage_failed(st, s, "data stage");
	if (!whole)
		return ptp_recover(st, -EIO, "data stage cut short");
	start_response(st);
}

static void start_data_out(struct still *st)
{
	struct ptp_op *op = st->cur;
	size_t len = PTP_HDR + op->out_len;
	struct drv_xfer *x;
	int r;

	if ((x = drv_xfer_new(len, data_out_done, st)) == NULL)
		return ptp_recover(st, -ENOMEM, "out of memory");
	put_le32(x->t->buffer, len > UINT32_MAX ? UINT32_MAX : (uint32_t)len);
	put_le16(x->t->buffer + 4, PTP_DATA);
	put_le16(x->t->buffer + 6, op->code);
	put_le32(x->t->buffer + 8, st->tid);
	if (op->out_len > 0)
		memcpy(x->t->buffer + PTP_HDR, op->out, op->out_len);
	libusb_fill_bulk_transfer(x->t, st->usb, st->ep_out, x->t->buffer, (int)len, NULL, NULL, 0);
	/* The data stage ends with a short packet: a zero-length one when it fills whole packets. */
	if (len % st->out_mps == 0)
		x->t->flags |= LIBUSB_TRANSFER_ADD_ZERO_PACKET;
	x->done = data_out_done;
	x->arg = st;
	if ((r = ptp_submit(st, x, ST_DATA_OUT)) < 0)
		ptp_recover(st, r, "submitting the data stage");
}

static void command_done(struct drv_xfer *x)
{
	struct still *st = x->arg;
	enum libusb_transfer_status s = x->t->status;

	drv_xfer_free(x);
	st->xfer = NULL;
	if (s != LIBUSB_TRANSFER_COMPLETED)
		return stage_failed(st, s, "command stage");
	if (st->cur->cancelled)
		return ptp_recover(st, -EINTR, "cancelled");
	if (st->cur->has_out)
		return start_data_out(st);
	if (st->cur->want_in)
		return start_data_in(st);
	start_response(st);
}

static void ptp_kick(struct still *st)
{
	struct ptp_op *op;
	struct drv_xfer *x;
	size_t len;
	int r;

	while (st->cur == NULL && (op = TAILQ_FIRST(&st->queue)) != NULL) {
		TAILQ_REMOVE(&st->queue, op, link);
		st->cur = op;
		if (st->gone) {
			ptp_finish(st, -ENODEV);
			return;
		}
		/* OpenSession is transaction 0; every other one gets the next id. */
		st->tid = op->code == OP_OPEN_SESSION ? 0 : st->tid + 1;
		if (st->tid == 0xffffffffu && op->code != OP_OPEN_SESSION)
			st->tid = 1;
		st->resp_retried = false;
		len = PTP_HDR + 4 * op->nparams;
		if ((x = drv_xfer_new(len, command_done, st)) == NULL) {
			ptp_finish(st, -ENOMEM);
			return;
		}
		put_le32(x->t->buffer, (uint32_t)len);
		put_le16(x->t->buffer + 4, PTP_COMMAND);
		put_le16(x->t->buffer + 6, op->code);
		put_le32(x->t->buffer + 8, st->tid);
		for (unsigned i = 0; i < op->nparams; i++)
			put_le32(x->t->buffer + PTP_HDR + 4 * i, op->params[i]);
		libusb_fill_bulk_transfer(x->t, st->usb, st->ep_out, x->t->buffer, (int)len, NULL, NULL, 0);
		x->done = command_done;
		x->arg = st;
		if ((r = ptp_submit(st, x, ST_COMMAND)) < 0) {
			ptp_finish(st, r);
			return;
		}
	}
}

static void ptp_queue(struct still *st, struct ptp_op *op)
{
	TAILQ_INSERT_TAIL(&st->queue, op, link);
	ptp_kick(st);
}

/* Takes an operation off the queue, or breaks off the running one; its done() still runs. */
static void ptp_cancel(struct still *st, struct ptp_op *op)
{
	if (op->cancelled)
		return;
	op->cancelled = true;
	if (st->cur != op) {
		TAILQ_REMOVE(&st->queue, op, link);
		op->result = -EINTR;
		op->done(op);
		return;
	}
	if (st->xfer != NULL && st->stage != ST_RECOVER)
		drv_xfer_cancel(st->xfer);
}

static void sync_done(struct ptp_op *op)
{
	*(int *)op->arg = 1;
}

/*
 * Runs one transaction to completion (probe, listings): the queue ahead of
 * it runs first and libusb's events are handled meanwhile.  The caller
 * frees op.
 */
static int ptp_run(struct still *st, struct ptp_op *op)
{
	int done = 0;

	op->done = sync_done;
	op->arg = &done;
	ptp_queue(st, op);
	while (!done) {
		int r = libusb_handle_events_completed(NULL, &done);
		if (r < 0 && r != LIBUSB_ERROR_INTERRUPTED) {
			drv_log(LOG_ERR, "handling USB events: %s", libusb_strerror(r));
			/* The op stays queued or running and will complete into `done`; never leave it
			 * dangling. */
			continue;
		}
	}
	return op->result;
}

/* A transaction with parameters and an optional data-in stage of at most in_cap bytes. */
static struct ptp_op *ptp_call(struct still *st, uint16_t code, unsigned nparams, const uint32_t *params,
			       size_t in_cap, int *result)
{
	struct ptp_op *op = op_new(st, code, nparams, params);

	if (op == NULL) {
		*result = -ENOMEM;
		return NULL;
	}
	op->want_in = in_cap > 0;
	op->in_cap = in_cap;
	*result = ptp_run(st, op);
	return op;
}

/* ---- Datasets ---- */

struct cursor {
	const uint8_t *p;
	size_t n, off;
	bool bad;
};

static uint16_t cur_u16(struct cursor *c)
{
	if (c->bad || c->n - c->off < 2) {
		c->bad = true;
		return 0;
	}
	c->off += 2;
	return get_le16(c->p + c->off - 2);
}

static uint32_t cur_u32(struct cursor *c)
{
	if (c->bad || c->n - c->off < 4) {
		c->bad = true;
		return 0;
	}
	c->off += 4;
	return get_le32(c->p + c->off - 4);
}

/* A u16 array: skipped, or searched for `want` (returns whether found). */
static bool cur_array_has(struct cursor *c, uint16_t want)
{
	uint32_t count = cur_u32(c);
	bool found = false;

	if (c->bad || count > (c->n - c->off) / 2) {
		c->bad = true;
		return false;
	}
	for (uint32_t i = 0; i < count; i++)
		if (cur_u16(c) == want)
			found = true;
	return found;
}

static void utf8_put(char *out, size_t cap, size_t *len, uint32_t cp)
{
	char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | cp >> 12);
		b[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		b[0] = (char)(0xf0 | cp >> 18);
		b[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	if (*len + n >= cap)
		return;
	memcpy(out + *len, b, n);
	*len += n;
}

/*
 * A PTP string (u8 count of UCS-2 units, the NUL included) as UTF-8 in
 * out[cap]; characters a file name cannot hold become '_', unpaired
 * surrogates U+FFFD.  Returns false if it did not fit in cap.
 */
static bool cur_string(struct cursor *c, char *out, size_t cap)
{
	size_t len = 0;
	unsigned count;
	bool fits = true;

	out[0] = '\0';
	if (c->bad || c->n - c->off < 1) {
		c->bad = true;
		return false;
	}
	count = c->p[c->off++];
	if (count > (c->n - c->off) / 2) {
		c->bad = true;
		return false;
	}
	size_t end = c->off + 2 * (size_t)count;
	for (unsigned i = 0; i < count; i++) {
		uint32_t u = cur_u16(c);
		if (u == 0)
			break;
		if (u >= 0xd800 && u < 0xdc00 && i + 1 < count && get_le16(c->p + c->off) >= 0xdc00 &&
		    get_le16(c->p + c->off) < 0xe000) {
			u = 0x10000 + ((u - 0xd800) << 10) + (cur_u16(c) - 0xdc00u);
			i++;
		} else if (u >= 0xd800 && u < 0xe000) {
			u = 0xfffd;
		}
		if (u < 0x20 || u == 0x7f || u == '/')
			u = '_';
		size_t before = len;
		utf8_put(out, cap, &len, u);
		if (len == before)
			fits = false;
	}
	/* Units after an early NUL are skipped, so the next field is read where it is. */
	c->off = end;
	out[len] = '\0';
	return fits;
}

static void put_string(uint8_t *buf, size_t cap, size_t *off, const char *s)
{
	/* UTF-8 of the Basic Multilingual Plane; anything else becomes '_'. */
	uint16_t units[256];
	unsigned n = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0' && n < 254; p++) {
		if (*p < 0x80)
			units[n++] = *p;
		else if ((*p & 0xe0) == 0xc0 && (p[1] & 0xc0) == 0x80) {
			units[n++] = (uint16_t)((*p & 0x1f) << 6 | (p[1] & 0x3f));
			p++;
		} else if ((*p & 0xf0) == 0xe0 && (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80) {
			units[n++] = (uint16_t)((*p & 0x0f) << 12 | (p[1] & 0x3f) << 6 | (p[2] & 0x3f));
			p += 2;
		} else if (*p >= 0xc0)
			units[n++] = '_';
	}
	if (n > 0)
		units[n++] = 0;
	if (*off + 1 + 2 * n > cap)
		return;
	buf[(*off)++] = (uint8_t)n;
	for (unsigned i = 0; i < n; i++, *off += 2)
		put_le16(buf + *off, units[i]);
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian); timegm() would read /etc/localtime, which the sandbox
 * forbids. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

/* "YYYYMMDDThhmmss[.s][Z|+hhmm]" as seconds since the epoch (taken as UTC); -1 if not a date. */
static int64_t parse_date(const char *s)
{
	int y, mo, d, h, mi, se;

	if (strlen(s) < 15 || sscanf(s, "%4d%2d%2dT%2d%2d%2d", &y, &mo, &d, &h, &mi, &se) != 6)
		return -1;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
		return -1;
	return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
}

/* ---- The object cache ---- */

static struct storage *storage_of_node(struct still *st, uint32_t node)
{
	if (node >= ROOT_NODE && node - ROOT_NODE < st->nstorages)
		return &st->storages[node - ROOT_NODE];
	return NULL;
}

static struct storage *storage_by_id(struct still *st, uint32_t id)
{
	for (unsigned i = 0; i < st->nstorages; i++)
		if (st->storages[i].id == id)
			return &st->storages[i];
	return NULL;
}

static struct obj *obj_find(struct still *st, uint32_t handle)
{
	for (unsigned i = 0; i < st->nobjs; i++)
		if (st->objs[i].handle == handle)
			return &st->objs[i];
	return NULL;
}

static void obj_remove(struct still *st, struct obj *o)
{
	unsigned i = (unsigned)(o - st->objs);

	memmove(&st->objs[i], &st->objs[i + 1], (st->nobjs - i - 1) * sizeof(*o));
	st->nobjs--;
}

static bool storage_writable(struct still *st, uint32_t storage)
{
	struct storage *s = storage_by_id(st, storage);

	return s != NULL && s->access == ACCESS_RW;
}

/* An event said the tree changed: every listing is asked again. */
static void apply_events(struct still *st)
{
	if (!st->dirty)
		return;
	st->dirty = false;
	for (unsigned i = 0; i < st->nstorages; i++)
		st->storages[i].listed = false;
	for (unsigned i = 0; i < st->nobjs; i++)
		st->objs[i].listed = false;
}

/* GetObjectInfo(handle) into o (handle, storage, parent as the dataset says). */
static int fetch_info(struct still *st, uint32_t handle, struct obj *o)
{
	int r;
	struct ptp_op *op = ptp_call(st, OP_GET_OBJECT_INFO, 1, &handle, META_MAX, &r);
	char date[64];

	if (r < 0) {
		op_free(op);
		return r;
	}
	struct cursor c = {op->in, op->in_len, 0, false};
	memset(o, 0, sizeof(*o));
	o->handle = handle;
	o->storage = cur_u32(&c);
	o->format = cur_u16(&c);
	o->protection = cur_u16(&c);
	o->size = cur_u32(&c);
	c.off += 2 + 4 * 6; /* thumb format, thumb size/width/height, image width/height, bit depth */
	if (c.off > c.n)
		c.bad = true;
	o->parent = cur_u32(&c);
	uint16_t assoc_type = cur_u16(&c);
	(void)assoc_type;
	cur_u32(&c); /* association description */
	cur_u32(&c); /* sequence number */
	bool fits = cur_string(&c, o->name, sizeof(o->name));
	cur_string(&c, date, sizeof(date)); /* capture date */
	int64_t captured = parse_date(date);
	cur_string(&c, date, sizeof(date)); /* modification date */
	o->mtime = parse_date(date);
	if (o->mtime < 0)
		o->mtime = captured > 0 ? captured : 0;
	if (o->mtime > PROTO_MAX_MTIME)
		o->mtime = 0;
	op_free(op);
	if (c.bad) {
		drv_log(LOG_WARNING, "object %08x: ObjectInfo dataset truncated", handle);
		return -EIO;
	}
	if (!fits || !proto_valid_node_name(o->name, strlen(o->name))) {
		drv_log(LOG_WARNING, "object %08x: name '%s' cannot be shown; skipped", handle, o->name);
		return -ENOENT;
	}
	o->dir = o->format == FMT_ASSOCIATION;
	if (o->dir)
		o->size = 0;
	return 0;
}

static struct obj *obj_add(struct still *st, const struct obj *o)
{
	if (st->nobjs == st->capobjs) {
		unsigned cap = st->capobjs == 0 ? 64 : st->capobjs * 2;
		struct obj *n;
		if (cap > MAX_OBJECTS || (n = realloc(st->objs, cap * sizeof(*n))) == NULL)
			return NULL;
		st->objs = n;
		st->capobjs = cap;
	}
	st->objs[st->nobjs] = *o;
	return &st->objs[st->nobjs++];
}

/* The PTP parent handle of a folder node, and its storage. */
static int folder_of(struct still *st, uint32_t node, uint32_t *storage, uint32_t *handle)
{
	struct storage *s = storage_of_node(st, node);
	struct obj *o;

	if (s != NULL) {
		*storage = s->id;
		*handle = 0xffffffffu; /* the storage's root */
		return 0;
	}
	if ((o = obj_find(st, node)) == NULL)
		return -ENOENT;
	if (!o->dir)
		return -ENOTDIR;
	*storage = o->storage;
	*handle = o->handle;
	return 0;
}

/* Makes sure the children of folder `node` are known. */
static int list_folder(struct still *st, uint32_t node)
{
	struct storage *s = storage_of_node(st, node);
	uint32_t storage, handle;
	int r;

	apply_events(st);
	if ((r = folder_of(st, node, &storage, &handle)) < 0)
		return r;
	if (s != NULL ? s->listed : obj_find(st, node)->listed)
		return 0;
	uint32_t params[3] = {storage, 0, handle};
	struct ptp_op *op = ptp_call(st, OP_GET_OBJECT_HANDLES, 3, params, 4 + 4 * MAX_HANDLES, &r);
	if (r < 0) {
		op_free(op);
		return r;
	}
	struct cursor c = {op->in, op->in_len, 0, false};
	uint32_t count = cur_u32(&c);
	if (c.bad || count > (c.n - c.off) / 4) {
		op_free(op);
		drv_log(LOG_WARNING, "folder %08x: object handle array truncated", node);
		return -EIO;
	}
	uint32_t *handles = malloc((count > 0 ? count : 1) * sizeof(*handles));
	if (handles == NULL) {
		op_free(op);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < count; i++)
		handles[i] = cur_u32(&c);
	op_free(op);
	/* Forget the children the device no longer lists. */
	for (unsigned i = 0; i < st->nobjs;) {
		bool listed = false;
		if (st->objs[i].parent != node) {
			i++;
			continue;
		}
		for (uint32_t k = 0; k < count && !listed; k++)
			listed = handles[k] == st->objs[i].handle;
		if (listed)
			i++;
		else
			obj_remove(st, &st->objs[i]);
	}
	r = 0;
	for (uint32_t k = 0; k < count && r == 0; k++) {
		struct obj o, *known = obj_find(st, handles[k]);
		if (known != NULL) {
			known->parent = node;
			continue;
		}
		if (handles[k] == 0 || handles[k] >= UPLOAD_NODE) {
			drv_log(LOG_WARNING, "folder %08x: object handle %08x is reserved here; skipped",
				node, handles[k]);
			continue;
		}
		int e = fetch_info(st, handles[k], &o);
		if (e == -ENOENT)
			continue; /* removed meanwhile, or a name we cannot show */
		if (e < 0) {
			r = e;
			break;
		}
		o.parent = node;
		if (obj_add(st, &o) == NULL)
			r = -ENOMEM;
	}
	free(handles);
	if (r < 0)
		return r;
	/* The folder may have moved in the array while objects were added. */
	if (s != NULL)
		s->listed = true;
	else if (obj_find(st, node) != NULL)
		obj_find(st, node)->listed = true;
	return 0;
}

static void node_of_obj(struct still *st, const struct obj *o, struct proto_node *pn)
{
	bool rw = storage_writable(st, o->storage);

	memset(pn, 0, sizeof(*pn));
	pn->id = o->handle;
	pn->kind = o->dir ? PROTO_KIND_DIR : PROTO_KIND_BLOCK;
	pn->mode = o->dir ? (rw ? 0755 : 0555) : (rw && o->protection == 0 ? 0644 : 0444);
	pn->size = o->dir ? 0 : o->size;
	pn->mtime = o->mtime;
	snprintf(pn->name, sizeof(pn->name), "%s", o->name);
}

static struct upload *upload_of_node(struct still *st, uint32_t node)
{
	if (node >= UPLOAD_NODE && node - UPLOAD_NODE < MAX_UPLOADS && st->uploads[node - UPLOAD_NODE].used)
		return &st->uploads[node - UPLOAD_NODE];
	return NULL;
}

static void node_of_upload(struct still *st, const struct upload *u, struct proto_node *pn)
{
	memset(pn, 0, sizeof(*pn));
	pn->id = UPLOAD_NODE + (uint32_t)(u - st->uploads);
	pn->kind = PROTO_KIND_BLOCK;
	pn->mode = 0644;
	pn->size = u->len;
	pn->mtime = u->mtime;
	snprintf(pn->name, sizeof(pn->name), "%s", u->name);
}

/* The attributes of any node: a storage root, an upload, or an object (asked of the device if unknown). */
static int node_attr(struct still *st, uint32_t node, struct proto_node *pn)
{
	struct storage *s = storage_of_node(st, node);
	struct upload *u = upload_of_node(st, node);
	struct obj *o;

	if (s != NULL) {
		memset(pn, 0, sizeof(*pn));
		pn->id = node;
		pn->kind = PROTO_KIND_DIR;
		pn->mode = s->access == ACCESS_RW ? 0755 : 0555;
		snprintf(pn->name, sizeof(pn->name), "%s", s->name);
		return 0;
	}
	if (u != NULL) {
		node_of_upload(st, u, pn);
		return 0;
	}
	if (node >= UPLOAD_NODE)
		return -ENOENT;
	apply_events(st);
	if ((o = obj_find(st, node)) == NULL) {
		struct obj fresh;
		int r = fetch_info(st, node, &fresh);
		if (r < 0)
			return r;
		/* Its folder, as a node: a storage root's, or the parent object. */
		struct storage *ps = storage_by_id(st, fresh.storage);
		if (fresh.parent == 0 || fresh.parent == 0xffffffffu)
			fresh.parent = ps != NULL ? ROOT_NODE + (uint32_t)(ps - st->storages) : 0;
		if ((o = obj_add(st, &fresh)) == NULL)
			return -ENOMEM;
	}
	node_of_obj(st, o, pn);
	return 0;
}

/* ---- The tree's requests ---- */

static struct still *still_of(struct drv_req *req)
{
	return req->fn->priv;
}

static void tree_lookup(struct drv_req *req, uint32_t parent, const char *name)
{
	struct still *st = still_of(req);
	struct proto_node pn;
	int r = list_folder(st, parent);

	if (r < 0)
		return drv_reply(req, r, NULL, 0);
	for (unsigned i = 0; i < MAX_UPLOADS; i++) {
		struct upload *u = &st->uploads[i];
		if (u->used && !u->sent && u->parent_node == parent && strcmp(u->name, name) == 0) {
			node_of_upload(st, u, &pn);
			return drv_reply_node(req, &pn);
		}
	}
	for (unsigned i = 0; i < st->nobjs; i++)
		if (st->objs[i].parent == parent && strcmp(st->objs[i].name, name) == 0) {
			node_of_obj(st, &st->objs[i], &pn);
			return drv_reply_node(req, &pn);
		}
	drv_reply(req, -ENOENT, NULL, 0);
}

static void tree_getattr(struct drv_req *req, uint32_t node)
{
	struct proto_node pn;
	int r = node_attr(still_of(req), node, &pn);

	if (r < 0)
		return drv_reply(req, r, NULL, 0);
	drv_reply_node(req, &pn);
}

static void tree_readdir(struct drv_req *req, uint32_t dir, uint64_t index)
{
	struct still *st = still_of(req);
	struct proto_node pn;
	uint8_t *buf;
	size_t off = 0;
	uint64_t k = 0;
	int r = list_folder(st, dir);

	if (r < 0)
		return drv_reply(req, r, NULL, 0);
	if ((buf = malloc(req->size > 0 ? req->size : 1)) == NULL)
		return drv_reply(req, -ENOMEM, NULL, 0);
	for (unsigned i = 0; i < st->nobjs; i++) {
		if (st->objs[i].parent != dir || k++ < index)
			continue;
		node_of_obj(st, &st->objs[i], &pn);
		if (proto_encode_node(buf, req->size, &off, &pn) < 0)
			break;
	}
	drv_reply(req, (int32_t)off, buf, off);
	free(buf);
}

static void tree_unlink(struct drv_req *req, uint32_t parent, const char *name)
{
	struct still *st = still_of(req);
	struct obj *o = NULL;
	int r = list_folder(st, parent);

	if (r < 0)
		return drv_reply(req, r, NULL, 0);
	for (unsigned i = 0; i < st->nobjs && o == NULL; i++)
		if (st->objs[i].parent == parent && strcmp(st->objs[i].name, name) == 0)
			o = &st->objs[i];
	if (o == NULL)
		return drv_reply(req, -ENOENT, NULL, 0);
	if (o->dir)
		return drv_reply(req, -EISDIR, NULL, 0);
	if (!storage_writable(st, o->storage))
		return drv_reply(req, -EROFS, NULL, 0);
	if (!st->can_delete)
		return drv_reply(req, -EPERM, NULL, 0);
	uint32_t params[2] = {o->handle, 0}, handle = o->handle;
	struct ptp_op *op = ptp_call(st, OP_DELETE_OBJECT, 2, params, 0, &r);
	op_free(op);
	if (r == 0 && (o = obj_find(st, handle)) != NULL)
		obj_remove(st, o);
	drv_log(r < 0 ? LOG_WARNING : LOG_INFO, "delete %s (object %08x): %s", name, handle,
		r < 0 ? strerror(-r) : "ok");
	drv_reply(req, r, NULL, 0);
}

static void tree_create(struct drv_req *req, uint32_t parent, const char *name)
{
	struct still *st = still_of(req);
	uint32_t storage, handle;
	struct proto_node pn;
	struct upload *u = NULL;
	int r = list_folder(st, parent);

	if (r < 0)
		return drv_reply(req, r, NULL, 0);
	if ((r = folder_of(st, parent, &storage, &handle)) < 0)
		return drv_reply(req, r, NULL, 0);
	if (!storage_writable(st, storage))
		return drv_reply(req, -EROFS, NULL, 0);
	if (!st->can_send)
		return drv_reply(req, -EPERM, NULL, 0);
	for (unsigned i = 0; i < st->nobjs; i++)
		if (st->objs[i].parent == parent && strcmp(st->objs[i].name, name) == 0)
			return drv_reply(req, -EEXIST, NULL, 0);
	for (unsigned i = 0; i < MAX_UPLOADS; i++) {
		if (st->uploads[i].used && st->uploads[i].parent_node == parent &&
		    strcmp(st->uploads[i].name, name) == 0)
			return drv_reply(req, -EEXIST, NULL, 0);
		if (!st->uploads[i].used && u == NULL)
			u = &st->uploads[i];
	}
	if (u == NULL)
		return drv_reply(req, -EMFILE, NULL, 0);
	memset(u, 0, sizeof(*u));
	u->used = true;
	u->parent = handle;
	u->parent_node = parent;
	u->storage = storage;
	u->mtime = (int64_t)time(NULL);
	snprintf(u->name, sizeof(u->name), "%s", name);
	req->h->priv = u;
	node_of_upload(st, u, &pn);
	drv_reply_node(req, &pn);
}

/* ---- Node handles: read, upload ---- */

/* What a handle is open on: an object being read (size known) or an upload. */
struct open_node {
	uint64_t size;
	struct upload *upload;
};

static int node_open(struct drv_handle *h, uint32_t flags)
{
	struct still *st = h->file->fn->priv;
	struct proto_node pn;
	uint32_t acc = flags & O_ACCMODE;
	struct upload *u = upload_of_node(st, h->node);
	int r;

	if (u != NULL) {
		h->priv = u;
		return 0;
	}
	if ((r = node_attr(st, h->node, &pn)) < 0)
		return r;
	if (pn.kind == PROTO_KIND_DIR)
		return -EISDIR;
	if (acc != O_RDONLY) {
		struct obj *o = obj_find(st, h->node);
		/* PTP has no rewriting in place: an object is replaced by rm and a new one. */
		return o != NULL && !storage_writable(st, o->storage) ? -EROFS : -EPERM;
	}
	struct open_node *on = calloc(1, sizeof(*on));
	if (on == NULL)
		return -ENOMEM;
	on->size = pn.size;
	h->priv = on;
	return 0;
}

static bool is_upload(struct still *st, const struct drv_handle *h)
{
	return h->priv != NULL && (const struct upload *)h->priv >= st->uploads &&
	       (const struct upload *)h->priv < st->uploads + MAX_UPLOADS;
}

static void read_done(struct ptp_op *op)
{
	struct drv_req *req = op->arg;

	req->cancel = NULL;
	if (op->result < 0)
		drv_reply(req, op->result, NULL, 0);
	else
		drv_reply(req, (int32_t)op->in_len, op->in, op->in_len);
	op_free(op);
}

static void read_cancel(struct drv_req *req)
{
	struct still *st = req->h->file->fn->priv;
	struct ptp_op *op;

	if (st->cur != NULL && st->cur->arg == req)
		return ptp_cancel(st, st->cur);
	TAILQ_FOREACH(op, &st->queue, link)
	if (op->arg == req)
		return ptp_cancel(st, op);
}

static void node_read(struct drv_req *req)
{
	struct still *st = req->h->file->fn->priv;
	struct open_node *on = req->h->priv;
	struct ptp_op *op;

	if (is_upload(st, req->h))
		return drv_reply(req, -EBADF, NULL, 0);
	if (req->offset >= on->size || req->size == 0)
		return drv_reply(req, 0, NULL, 0);
	uint32_t n = req->size;
	if (on->size - req->offset < n)
		n = (uint32_t)(on->size - req->offset);
	if (req->offset + n <= UINT32_MAX && st->can_partial) {
		uint32_t params[3] = {req->h->node, (uint32_t)req->offset, n};
		op = op_new(st, OP_GET_PARTIAL_OBJECT, 3, params);
	} else if (st->can_partial64) {
		uint32_t params[4] = {req->h->node, (uint32_t)req->offset, (uint32_t)(req->offset >> 32), n};
		op = op_new(st, OP_GET_PARTIAL_OBJECT64, 4, params);
	} else {
		return drv_reply(req, -EOPNOTSUPP, NULL, 0);
	}
	if (op == NULL)
		return drv_reply(req, -ENOMEM, NULL, 0);
	op->want_in = true;
	op->in_cap = n;
	op->done = read_done;
	op->arg = req;
	req->cancel = read_cancel;
	ptp_queue(st, op);
}

static void node_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct still *st = req->h->file->fn->priv;
	struct upload *u = req->h->priv;

	if (!is_upload(st, req->h))
		return drv_reply(req, -EBADF, NULL, 0);
	/* On the device now: PTP has no writing into an object. */
	if (u->sent || u->flush != NULL)
		return drv_reply(req, -EPERM, NULL, 0);
	if (req->offset > UPLOAD_MAX || len > UPLOAD_MAX - req->offset)
		return drv_reply(req, -EFBIG, NULL, 0);
	size_t end = (size_t)req->offset + len;
	if (end > u->cap) {
		size_t cap = u->cap == 0 ? 256 * 1024 : u->cap;
		while (cap < end)
			cap *= 2;
		if (cap > UPLOAD_MAX)
			cap = UPLOAD_MAX;
		uint8_t *n = realloc(u->buf, cap);
		if (n == NULL)
			return drv_reply(req, -ENOMEM, NULL, 0);
		u->buf = n;
		u->cap = cap;
	}
	if (req->offset > u->len)
		memset(u->buf + u->len, 0, (size_t)req->offset - u->len);
	memcpy(u->buf + req->offset, data, len);
	if (end > u->len)
		u->len = end;
	drv_reply(req, (int32_t)len, NULL, 0);
}

static uint16_t format_of(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot != NULL && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0))
		return FMT_EXIF_JPEG;
	return FMT_UNDEFINED;
}

/* Frees an upload whose handle is closed and whose send (if any) has ended. */
static void upload_end(struct upload *u)
{
	if (!u->released || u->sending)
		return;
	free(u->buf);
	memset(u, 0, sizeof(*u));
}

static void send_object_done(struct ptp_op *op)
{
	struct upload *u = op->arg;
	struct still *st = op->st;
	struct drv_req *req = u->flush;
	int r = op->result;

	op_free(op);
	u->flush = NULL;
	u->sending = false;
	if (r == 0) {
		u->sent = true;
		st->dirty = true; /* the folder lists the new object */
	}
	drv_log(r < 0 ? LOG_WARNING : LOG_INFO, "upload %s (%zu bytes): %s", u->name, u->len,
		r < 0 ? strerror(-r) : "ok");
	if (req != NULL) {
		req->cancel = NULL;
		drv_reply(req, r, NULL, 0);
	}
	upload_end(u);
}

static void send_info_done(struct ptp_op *op)
{
	struct upload *u = op->arg;
	struct still *st = op->st;
	struct drv_req *req = u->flush;
	int r = op->result;

	op_free(op);
	if (r == 0 && (req == NULL || !req->cancelled)) {
		struct ptp_op *send = op_new(st, OP_SEND_OBJECT, 0, NULL);
		if (send != NULL) {
			send->has_out = true;
			send->out = u->buf;
			send->out_len = u->len;
			send->done = send_object_done;
			send->arg = u;
			return ptp_queue(st, send);
		}
		r = -ENOMEM;
	}
	if (r == 0)
		r = -EINTR;
	u->flush = NULL;
	u->sending = false;
	drv_log(LOG_WARNING, "upload %s: SendObjectInfo: %s", u->name, strerror(-r));
	if (req != NULL) {
		req->cancel = NULL;
		drv_reply(req, r, NULL, 0);
	}
	upload_end(u);
}

static void flush_cancel(struct drv_req *req)
{
	struct still *st = req->h->file->fn->priv;
	struct upload *u = req->h->priv;
	struct ptp_op *op;

	if (st->cur != NULL && st->cur->arg == u)
		return ptp_cancel(st, st->cur);
	TAILQ_FOREACH(op, &st->queue, link)
	if (op->arg == u)
		return ptp_cancel(st, op);
}

/* Starts SendObjectInfo, then SendObject with the bytes written; `req` (a FLUSH, or NULL) gets the result. */
static int upload_send(struct still *st, struct upload *u, struct drv_req *req)
{
	size_t off = 0;

	/* ObjectInfo: storage, format, protection, size, thumb (5 fields), image (3), parent, association
	 * (3). */
	memset(u->info, 0, sizeof(u->info));
	put_le32(u->info + off, u->storage);
	put_le16(u->info + 4, format_of(u->name));
	put_le32(u->info + 8, (uint32_t)u->len);
	put_le32(u->info + 38, u->parent);
	off = 52;
	put_string(u->info, sizeof(u->info), &off, u->name);
	u->info[off++] = 0; /* capture date */
	u->info[off++] = 0; /* modification date */
	u->info[off++] = 0; /* keywords */
	uint32_t params[2] = {u->storage, u->parent};
	struct ptp_op *op = op_new(st, OP_SEND_OBJECT_INFO, 2, params);
	if (op == NULL)
		return -ENOMEM;
	op->has_out = true;
	op->out = u->info;
	op->out_len = off;
	op->done = send_info_done;
	op->arg = u;
	u->flush = req;
	u->sending = true;
	if (req != NULL)
		req->cancel = flush_cancel;
	ptp_queue(st, op);
	return 0;
}

/*
 * close(2) of an upload.  A shell's `> file` closes a descriptor before
 * anything is written (dup2, then close): an upload without bytes waits
 * for a later close, or for the release, which sends even an empty file.
 */
static void node_flush(struct drv_req *req)
{
	struct still *st = req->h->file->fn->priv;
	struct upload *u = req->h->priv;
	int r;

	if (!is_upload(st, req->h) || u->sent || u->len == 0)
		return drv_reply(req, 0, NULL, 0);
	if (u->sending)
		return drv_reply(req, -EBUSY, NULL, 0);
	if ((r = upload_send(st, u, req)) < 0)
		drv_reply(req, r, NULL, 0);
}

static void node_release(struct drv_handle *h)
{
	struct still *st = h->file->fn->priv;

	if (st == NULL || h->priv == NULL)
		return;
	if (is_upload(st, h)) {
		struct upload *u = h->priv;
		u->released = true;
		/* Never flushed with bytes (`touch`, `: > file`): sent now, the result only logged. */
		if (!u->sent && !u->sending && upload_send(st, u, NULL) < 0)
			drv_log(LOG_WARNING, "upload %s: out of memory; not sent", u->name);
		upload_end(u);
		return;
	}
	free(h->priv);
}

static const struct drv_tree_ops still_tree = {
    .lookup = tree_lookup,
    .getattr = tree_getattr,
    .readdir = tree_readdir,
    .create = tree_create,
    .unlink = tree_unlink,
    .open = node_open,
    .file_ops =
	{
	    .read = node_read,
	    .write = node_write,
	    .flush = node_flush,
	    .release = node_release,
	},
};

/* ---- Events ---- */

static void event_done(struct drv_xfer *x)
{
	struct still *st = x->arg;
	enum libusb_transfer_status s = x->t->status;
	const uint8_t *p = x->t->buffer;
	size_t n = (size_t)x->t->actual_length;

	if (s == LIBUSB_TRANSFER_NO_DEVICE || s == LIBUSB_TRANSFER_CANCELLED) {
		st->event_x = NULL;
		drv_xfer_free(x);
		return;
	}
	if (s == LIBUSB_TRANSFER_COMPLETED && n >= PTP_HDR && get_le32(p) == n &&
	    get_le16(p + 4) == PTP_EVENT) {
		uint16_t code = get_le16(p + 6);
		uint32_t param = n >= PTP_HDR + 4 ? get_le32(p + PTP_HDR) : 0;
		struct obj *o;
		if (drv_verbose)
			drv_log(LOG_DEBUG, "event %04x %08x", code, param);
		if (code == EV_OBJECT_REMOVED && (o = obj_find(st, param)) != NULL)
			obj_remove(st, o);
		if (code == EV_STORE_ADDED || code == EV_STORE_REMOVED)
			drv_log(LOG_NOTICE,
				"storage %08x %s: its directory follows at the next start "
				"(ctl restart)",
				param, code == EV_STORE_ADDED ? "added" : "removed");
		st->dirty = true;
	} else if (s == LIBUSB_TRANSFER_COMPLETED) {
		drv_log(LOG_NOTICE, "interface %u: event of %zu bytes ignored (not an event container)",
			st->ifnum, n);
	} else if (s == LIBUSB_TRANSFER_STALL) {
		libusb_clear_halt(st->usb, st->ep_int);
	}
	if (drv_xfer_submit(x) < 0) {
		st->event_x = NULL;
		drv_xfer_free(x);
	}
}

static void events_start(struct still *st)
{
	struct drv_xfer *x;

	if (st->ep_int == 0 || (x = drv_xfer_new(EVENT_BUF, event_done, st)) == NULL)
		return;
	libusb_fill_interrupt_transfer(x->t, st->usb, st->ep_int, x->t->buffer, EVENT_BUF, NULL, NULL, 0);
	x->done = event_done;
	x->arg = st;
	if (drv_xfer_submit(x) < 0) {
		drv_xfer_free(x);
		return;
	}
	st->event_x = x;
}

/* ---- Probe ---- */

static int open_session(struct still *st)
{
	uint32_t session = SESSION_ID;
	int r;
	struct ptp_op *op = ptp_call(st, OP_OPEN_SESSION, 1, &session, 0, &r);

	/* Our predecessor's session, if it crashed: carry on in it. */
	if (r < 0 && op != NULL && op->rc == RC_SESSION_ALREADY_OPEN)
		r = 0;
	op_free(op);
	return r;
}

static int device_info(struct still *st)
{
	int r;
	struct ptp_op *op = ptp_call(st, OP_GET_DEVICE_INFO, 0, NULL, META_MAX, &r);
	char text[128], model[128];

	if (r < 0) {
		op_free(op);
		return r;
	}
	struct cursor c = {op->in, op->in_len, 0, false};
	cur_u16(&c); /* standard version */
	cur_u32(&c); /* vendor extension id */
	cur_u16(&c); /* vendor extension version */
	cur_string(&c, text, sizeof(text));
	cur_u16(&c); /* functional mode */
	uint32_t count = cur_u32(&c);
	if (!c.bad && count <= (c.n - c.off) / 2) {
		for (uint32_t i = 0; i < count; i++) {
			uint16_t code = cur_u16(&c);
			st->can_partial |= code == OP_GET_PARTIAL_OBJECT;
			st->can_partial64 |= code == OP_GET_PARTIAL_OBJECT64;
			st->can_delete |= code == OP_DELETE_OBJECT;
			st->can_send |= code == OP_SEND_OBJECT;
		}
	} else {
		c.bad = true;
	}
	cur_array_has(&c, 0); /* events */
	cur_array_has(&c, 0); /* device properties */
	cur_array_has(&c, 0); /* capture formats */
	cur_array_has(&c, 0); /* image formats */
	cur_string(&c, text, sizeof(text));
	cur_string(&c, model, sizeof(model));
	op_free(op);
	if (c.bad)
		drv_log(LOG_WARNING, "interface %u: DeviceInfo dataset truncated", st->ifnum);
	else
		drv_log(LOG_INFO, "%s %s: partial reads %s, delete %s, upload %s", text, model,
			st->can_partial64 ? "64-bit"
			: st->can_partial ? "32-bit"
					  : "no",
			st->can_delete ? "yes" : "no", st->can_send ? "yes" : "no");
	return 0;
}

static int storages(struct still *st)
{
	int r;
	struct ptp_op *op = ptp_call(st, OP_GET_STORAGE_IDS, 0, NULL, 4 + 4 * 256, &r);

	if (r < 0) {
		op_free(op);
		return r;
	}
	struct cursor c = {op->in, op->in_len, 0, false};
	uint32_t count = cur_u32(&c), ids[MAX_STORAGES];
	unsigned n = 0;
	for (uint32_t i = 0; i < count && !c.bad; i++) {
		uint32_t id = cur_u32(&c);
		/* PTP: a logical id of 0 is a slot without a medium. */
		if (!c.bad && (id & 0xffff) != 0 && n < MAX_STORAGES)
			ids[n++] = id;
	}
	op_free(op);
	if (c.bad)
		return -EIO;
	for (unsigned i = 0; i < n; i++) {
		struct storage *s = &st->storages[st->nstorages];
		op = ptp_call(st, OP_GET_STORAGE_INFO, 1, &ids[i], META_MAX, &r);
		if (r < 0) {
			drv_log(LOG_WARNING, "storage %08x: GetStorageInfo: %s; skipped", ids[i],
				strerror(-r));
			op_free(op);
			continue;
		}
		struct cursor si = {op->in, op->in_len, 0, false};
		cur_u16(&si); /* storage type */
		cur_u16(&si); /* filesystem type */
		uint16_t access = cur_u16(&si);
		op_free(op);
		s->id = ids[i];
		s->access = si.bad ? 1 : access;
		snprintf(s->name, sizeof(s->name), "store-%08x", s->id);
		st->nstorages++;
	}
	return 0;
}

static void still_free(struct still *st)
{
	if (st == NULL)
		return;
	free(st->objs);
	for (unsigned i = 0; i < MAX_UPLOADS; i++)
		free(st->uploads[i].buf);
	free(st);
}

static int still_probe(struct drv_function *fn)
{
	const struct drv_device *dev = fn->dev;
	struct usbdesc_iface d;
	struct still *st;
	int r;

	if (usbdesc_find_alt(dev->desc, dev->desc_len, fn->ifnum, 0, &d) < 0)
		return -ENOENT;
	if ((st = calloc(1, sizeof(*st))) == NULL)
		return -ENOMEM;
	st->fn = fn;
	st->usb = dev->usb;
	st->ifnum = fn->ifnum;
	TAILQ_INIT(&st->queue);
	for (unsigned i = 0; i < d.num_eps; i++) {
		const struct usbdesc_ep *e = &d.eps[i];
		uint8_t type = e->attributes & 3;
		if (type == USB_XFER_BULK && (e->address & 0x80) && st->ep_in == 0) {
			st->ep_in = e->address;
			st->in_mps = e->max_packet;
		} else if (type == USB_XFER_BULK && !(e->address & 0x80) && st->ep_out == 0) {
			st->ep_out = e->address;
			st->out_mps = e->max_packet;
		} else if (type == USB_XFER_INTR && (e->address & 0x80) && st->ep_int == 0) {
			st->ep_int = e->address;
		}
	}
	if (st->ep_in == 0 || st->ep_out == 0 || st->in_mps == 0 || st->out_mps == 0) {
		drv_log(LOG_ERR, "interface %u: no bulk IN and OUT pair", fn->ifnum);
		free(st);
		return -ENODEV;
	}
	fn->priv = st;
	/*
	 * A predecessor killed mid-transaction may have left the device inside
	 * a data stage: Device Reset puts it back to idle.  Devices that do
	 * not know it (QEMU's usb-mtp) stall it, which is fine.
	 */
	r = libusb_control_transfer(st->usb, LIBUSB_REQUEST_TYPE_CLASS | LIBUSB_RECIPIENT_INTERFACE,
				    REQ_DEVICE_RESET, 0, st->ifnum, NULL, 0, 0);
	if (r == LIBUSB_ERROR_NO_DEVICE) {
		r = -ENODEV;
		goto fail;
	}
	libusb_clear_halt(st->usb, st->ep_in);
	libusb_clear_halt(st->usb, st->ep_out);
	if ((r = open_session(st)) < 0 || (r = device_info(st)) < 0 || (r = storages(st)) < 0) {
		drv_log(LOG_ERR, "interface %u: PTP session: %s", fn->ifnum, strerror(-r));
		goto fail;
	}
	if ((r = drv_tree_set(fn, &still_tree)) < 0)
		goto fail;
	for (unsigned i = 0; i < st->nstorages; i++)
		if (drv_dir_add(fn, st->storages[i].name, ROOT_NODE + i,
				st->storages[i].access == ACCESS_RW ? 0755 : 0555) == NULL) {
			r = -ENOMEM;
			goto fail;
		}
	events_start(st);
	return 0;
fail:
	still_free(st);
	fn->priv = NULL;
	return r;
}

/* ctl `capture`: InitiateCapture; the new picture shows once the camera's ObjectAdded event arrives. */
static int still_ctl(struct drv_function *fn, int argc, char **argv)
{
	struct still *st = fn->priv;
	uint32_t params[2] = {0, 0};
	int r;

	if (st == NULL)
		return -ENODEV;
	if (argc != 1 || strcmp(argv[0], "capture") != 0)
		return -EINVAL;
	op_free(ptp_call(st, OP_INITIATE_CAPTURE, 2, params, 0, &r));
	return r;
}

const struct driver_ops still_driver = {
    .name = "still",
    .probe = still_probe,
    .ctl = still_ctl,
};
