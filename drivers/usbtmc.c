/*
 * The `usbtmc` driver: USB Test & Measurement Class interfaces (254/3),
 * protocol 0 (plain USBTMC) and 1 (USB488), what Linux calls /dev/usbtmc0.
 *
 *   cmd       a conversation with the instrument, per open handle.  Each
 *             write(2) is one message: DEV_DEP_MSG_OUT transfers of at most
 *             OUT_CHUNK bytes, EOM on the last.  A read asks for the answer
 *             (REQUEST_DEV_DEP_MSG_IN, TransferSize IN_CHUNK) and returns its
 *             bytes; once the transfer that carried EOM is read to its end,
 *             reads return 0 (EOF) until the next write.  A read on a handle
 *             that wrote nothing yet asks too, as the kernel driver does, so
 *             `echo '*IDN?' > cmd; cat cmd` works with two opens.
 *   stb       USB488 READ_STATUS_BYTE, in decimal (as *STB? answers); the
 *             byte comes on the interrupt IN endpoint when there is one.
 *   timeout   the USBTMC timeout in ms (default 5000, the kernel's).
 *   termchar  `off` or a character code 0-255: REQUEST_DEV_DEP_MSG_IN asks
 *             the instrument to end a transfer after it (if it can).
 *   ctl       `clear`, `abort`, `remote`, `local` (see plugfs-usbtmc(7)).
 *
 * Deadlines.  `cmd` and `stb` are PROTO_FILE_UNTIMED: the driver keeps its
 * own timer with the `timeout` the user set, because an instrument that
 * does not answer in time must be brought back in step (INITIATE_ABORT_*
 * and CHECK_ABORT_*_STATUS) before the caller hears ETIMEDOUT; with the
 * daemon's deadline the caller would be answered while the abort still
 * runs, and an instrument timeout longer than timeout= (a 30 s
 * acquisition) would be impossible.  The daemon's heartbeat still watches
 * the process.
 *
 * Bulk transfers are asynchronous (no libusb timeout: the timer cancels
 * them).  The class-request sequences -- abort, clear, the capabilities at
 * probe, REN/GTL/LLO -- are straight-line synchronous control transfers,
 * run from a timer, a ctl or the probe, never inside a transfer callback.
 * They block the loop, so each sequence is bounded by SEQ_MAX_MS, well
 * below the daemon's heartbeat (timeout=, 5000 ms by default): these are
 * the one place where a libusb timeout is given, the time left of that
 * bound.
 *
 * All bulk traffic of the instrument is one queue of operations (a
 * message to send, an answer to fetch), run one at a time in arrival
 * order, so the transfers of two handles never interleave.
 *
 * Try it: build/plugfs-emu --model tmc-ds1054z -- sh -c '...' (README).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "driver.h"
#include "util.h"

/* Bulk message IDs, USBTMC 1.0 tables 2 and 3. */
enum tmc_msgid {
	MSG_DEV_DEP_MSG_OUT = 1,
	MSG_REQUEST_DEV_DEP_MSG_IN = 2,
	MSG_DEV_DEP_MSG_IN = 2,
};
#define TMC_HDR_LEN	     12
#define TMC_ATTR_EOM	     0x01 /* bmTransferAttributes D0 */
#define TMC_ATTR_TERMCHAR_EN 0x02 /* REQUEST_DEV_DEP_MSG_IN bmTransferAttributes D1 */

/* Class requests, USBTMC 1.0 table 15 and USB488 table 9. */
enum tmc_request {
	REQ_INITIATE_ABORT_BULK_OUT = 1,
	REQ_CHECK_ABORT_BULK_OUT_STATUS = 2,
	REQ_INITIATE_ABORT_BULK_IN = 3,
	REQ_CHECK_ABORT_BULK_IN_STATUS = 4,
	REQ_INITIATE_CLEAR = 5,
	REQ_CHECK_CLEAR_STATUS = 6,
	REQ_GET_CAPABILITIES = 7,
	REQ_READ_STATUS_BYTE = 128,
	REQ_REN_CONTROL = 160,
	REQ_GO_TO_LOCAL = 161,
	REQ_LOCAL_LOCKOUT = 162,
};
/* bmRequestType: class, device-to-host, to the interface / to an endpoint. */
#define RT_IFACE_IN 0xa1
#define RT_EP_IN    0xa2

/* USBTMC_status values, USBTMC 1.0 table 16 and USB488 table 10. */
enum tmc_status {
	ST_SUCCESS = 0x01,
	ST_PENDING = 0x02,
	ST_INTERRUPT_IN_BUSY = 0x20,
	ST_FAILED = 0x80,
	ST_TRANSFER_NOT_IN_PROGRESS = 0x81,
};

/* GET_CAPABILITIES answer: bytes and bits we use. */
#define CAPS_LEN	  0x18
#define CAPS_DEV_TERMCHAR 0x01 /* byte 5 D0 */
#define CAPS_488_REN	  0x02 /* byte 14 D1: REN_CONTROL, GO_TO_LOCAL, LOCAL_LOCKOUT */
#define NOTIFY_SRQ	  0x81 /* interrupt-IN bNotify1 of a service request */
#define NOTIFY_STB(tag)	  (0x80 | (tag))
#define USB488_PROTOCOL	  1
#define USB_DIR_IN	  0x80
#define SETUP_LEN	  8

/* TransferSize asked per REQUEST_DEV_DEP_MSG_IN; a read's rest stays buffered. */
#define IN_CHUNK (128u * 1024)
/* Message bytes per DEV_DEP_MSG_OUT transfer: longer writes are split. */
#define OUT_CHUNK (64u * 1024)
/* A device answering empty non-EOM transfers this many times in a row is broken. */
#define MAX_EMPTY_IN	   16
#define DEFAULT_TIMEOUT_MS 5000
#define MAX_TIMEOUT_MS	   3600000
/* The longest a synchronous class-request sequence may block the loop. */
#define SEQ_MAX_MS 2000
/* Between two CHECK_*_STATUS that answered STATUS_PENDING. */
#define PENDING_POLL_MS 10
/* Bulk-IN transfers read away per drain (an abort or clear) at most. */
#define DRAIN_MAX_READS 64

struct tmc;
struct cmd_handle;

enum op_kind { OP_WRITE, OP_READ };
/* Where an operation is: a transfer in flight, or waiting for the recovery. */
enum op_phase { PH_QUEUED, PH_OUT, PH_IN, PH_RECOVER };
enum abort_dir { ABORT_NONE, ABORT_OUT, ABORT_IN };

/* One queued bulk operation: a message to send, or an answer to fetch. */
struct tmc_op {
	struct tmc *t;
	struct cmd_handle *ch; /* NULL once its handle is gone */
	struct drv_req *req;   /* NULL: a read-ahead (O_NONBLOCK, poll) */
	enum op_kind kind;
	enum op_phase phase;
	uint8_t *data; /* OP_WRITE: the message, data[done..len) still to send */
	size_t len, done, chunk;
	uint8_t tag;	     /* bTag of the transfer in flight */
	int error;	     /* why it is being stopped (-ETIMEDOUT...), 0 while fine */
	enum abort_dir dir;  /* PH_RECOVER: which abort to run */
	unsigned empty;	     /* OP_READ: empty non-EOM transfers in a row */
	int request_error;   /* OP_READ: how its REQUEST_DEV_DEP_MSG_IN went, 1 while in flight */
	struct drv_xfer *in; /* OP_READ: the IN transfer done, waiting for the REQUEST's callback */
	TAILQ_ENTRY(tmc_op) link;
};

TAILQ_HEAD(tmc_op_queue, tmc_op);

/* Per open handle of `cmd`: the answer being read. */
struct cmd_handle {
	struct tmc *t;
	uint8_t *buf; /* answer bytes not read yet: buf[off..len) */
	size_t off, len;
	bool eom;	      /* the answer is complete: once buf is read, EOF */
	bool asked;	      /* a command was written: poll may fetch its answer */
	int error;	      /* a read-ahead's failure, owed to the next read */
	struct tmc_op *ahead; /* its read-ahead, queued or running */
	LIST_ENTRY(cmd_handle) link;
};

/* Per open handle of `stb`: the text read at offset 0, for reads further on. */
struct stb_handle {
	char text[8];
	size_t len;
	bool valid;
};

struct tmc {
	struct drv_function *fn;
	uint8_t ep_out, ep_in, ep_intr; /* ep_intr 0: none */
	uint16_t in_packet, intr_packet;
	bool usb488;
	bool caps_valid;
	uint8_t caps_dev, caps_488;
	unsigned timeout_ms;
	int termchar; /* -1: off */
	uint8_t next_tag, next_stb_tag;
	uint8_t last_out_tag, last_in_tag;
	struct drv_file *cmd_file;
	LIST_HEAD(, cmd_handle) handles;

	/* The bulk queue: `active` runs, the rest wait. */
	struct tmc_op_queue ops;
	struct tmc_op *active;
	struct drv_xfer *xfer;	   /* the active op's transfer in flight (a read: the IN one) */
	struct drv_xfer *req_xfer; /* a read's REQUEST_DEV_DEP_MSG_IN, in flight with the IN one */
	struct drv_timer timer;	   /* the active op's USBTMC timeout */
	struct drv_timer recover;  /* runs the abort outside the transfer callback */
	uint64_t seq_deadline;	   /* of the synchronous sequence running */

	/* stb reads: one at a time, the rest wait. */
	struct drv_req_queue stb_waiters;
	struct drv_req *stb_req;
	struct drv_xfer *stb_xfer;
	struct drv_timer stb_timer;
	uint8_t stb_tag;
	bool stb_timed_out;
};

static void tmc_kick(struct tmc *t);

static size_t round_up(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

/* bTag 1..255: never 0 (USBTMC 1.0 3.2). */
static uint8_t take_tag(struct tmc *t)
{
	uint8_t tag = t->next_tag;

	t->next_tag = tag == 255 ? 1 : tag + 1;
	return tag;
}

/* READ_STATUS_BYTE bTag 2..127 (USB488 4.3.1: 1 is the SRQ notification's). */
static uint8_t take_stb_tag(struct tmc *t)
{
	uint8_t tag = t->next_stb_tag;

	t->next_stb_tag = tag >= 127 ? 2 : tag + 1;
	return tag;
}

static void put_bulk_header(uint8_t *p, uint8_t msgid, uint8_t tag, uint32_t size, uint8_t attr,
			    uint8_t termchar)
{
	memset(p, 0, TMC_HDR_LEN);
	p[0] = msgid;
	p[1] = tag;
	p[2] = (uint8_t)~tag;
	put_le32(p + 4, size);
	p[8] = attr;
	p[9] = termchar;
}

/* ---- Synchronous class requests (from a timer, a ctl or the probe only) ---- */

static void seq_begin(struct tmc *t)
{
	t->seq_deadline = now_ms() + SEQ_MAX_MS;
}

/* What is left of the sequence's time, for one transfer; 0: none. */
static unsigned seq_left(const struct tmc *t)
{
	uint64_t now = now_ms();

	return now < t->seq_deadline ? (unsigned)(t->seq_deadline - now) : 0;
}

/*
 * A class request with IN data: returns the bytes received (at least 1,
 * the USBTMC_status) or -errno.  Bounded by the sequence's deadline: the
 * loop is blocked meanwhile.
 */
static int class_in(struct tmc *t, uint8_t rt, uint8_t request, uint16_t value, uint16_t index, uint8_t *buf,
		    uint16_t len)
{
	unsigned left = seq_left(t);

	if (left == 0)
		return -ETIMEDOUT;
	int r = libusb_control_transfer(t->fn->dev->usb, rt, request, value, index, buf, len, left);
	if (r < 0)
		return drv_usb_errno(r);
	if (r < 1) {
		drv_log(LOG_WARNING, "usbtmc: class request %u answered no status byte", request);
		return -EIO;
	}
	return r;
}

static void pending_pause(void)
{
	struct timespec ts = {0, PENDING_POLL_MS * 1000000L};

	nanosleep(&ts, NULL);
}

/*
 * Reads the Bulk-IN endpoint until a short packet, as an abort or clear
 * asks (USBTMC 1.0 4.2.1.5, 4.2.1.7): whatever the instrument still had to
 * say is thrown away.  0 or -errno.
 */
static int drain_bulk_in(struct tmc *t)
{
	size_t len = round_up(16384, t->in_packet);
	uint8_t *buf = malloc(len);
	int r = 0, got = 0;

	if (buf == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < DRAIN_MAX_READS; i++) {
		unsigned left = seq_left(t);
		if (left == 0) {
			r = -ETIMEDOUT;
			break;
		}
		r = drv_usb_errno(libusb_bulk_transfer(t->fn->dev->usb, t->ep_in, buf, (int)len, &got, left));
		if (r < 0 || (size_t)got < len)
			break;
	}
	free(buf);
	if (r == 0 && (size_t)got == len) {
		drv_log(LOG_WARNING, "usbtmc: Bulk-IN still full after %u reads", DRAIN_MAX_READS);
		r = -EIO;
	}
	return r;
}

/*
 * Polls a CHECK_*_STATUS request until the device answers STATUS_SUCCESS:
 * 0 or -errno.  While it answers STATUS_PENDING, with `drain` a set D0 in
 * the second byte (bmAbortBulkIn, bmClear) says the Bulk-IN FIFO holds more
 * to read off; otherwise the device is given a moment.
 */
static int poll_status(struct tmc *t, uint8_t rt, uint8_t request, uint16_t index, uint16_t len, bool drain,
		       const char *name)
{
	uint8_t buf[8];
	int r;

	for (;;) {
		if ((r = class_in(t, rt, request, 0, index, buf, len)) < 0)
			return r;
		if (buf[0] == ST_SUCCESS)
			return 0;
		if (buf[0] != ST_PENDING) {
			drv_log(LOG_WARNING, "usbtmc: %s: status %#x", name, buf[0]);
			return -EIO;
		}
		if (drain && r >= 2 && (buf[1] & 1)) {
			if ((r = drain_bulk_in(t)) < 0)
				return r;
		} else {
			pending_pause();
		}
	}
}

/* Abort of the Bulk-IN transfer `tag`, USBTMC 1.0 4.2.1.4-5.  0 or -errno. */
static int abort_bulk_in(struct tmc *t, uint8_t tag)
{
	uint8_t buf[8];
	int r = class_in(t, RT_EP_IN, REQ_INITIATE_ABORT_BULK_IN, tag, t->ep_in, buf, 2);

	if (r < 0)
		return r;
	if (buf[0] == ST_FAILED)
		return 0; /* nothing in progress, FIFO empty: nothing to abort */
	if (buf[0] == ST_TRANSFER_NOT_IN_PROGRESS)
		return drain_bulk_in(t); /* another transfer's bytes may sit in the FIFO */
	if (buf[0] != ST_SUCCESS) {
		drv_log(LOG_WARNING, "usbtmc: INITIATE_ABORT_BULK_IN bTag %u: status %#x", tag, buf[0]);
		return -EIO;
	}
	if ((r = drain_bulk_in(t)) < 0)
		return r;
	return poll_status(t, RT_EP_IN, REQ_CHECK_ABORT_BULK_IN_STATUS, t->ep_in, 8, true,
			   "CHECK_ABORT_BULK_IN_STATUS");
}

/* Abort of the Bulk-OUT transfer `tag`, USBTMC 1.0 4.2.1.2-3.  0 or -errno. */
static int abort_bulk_out(struct tmc *t, uint8_t tag)
{
	uint8_t buf[8];
	int r = class_in(t, RT_EP_IN, REQ_INITIATE_ABORT_BULK_OUT, tag, t->ep_out, buf, 2);

	if (r < 0)
		return r;
	if (buf[0] == ST_FAILED || buf[0] == ST_TRANSFER_NOT_IN_PROGRESS)
		return 0; /* the device is not receiving that transfer */
	if (buf[0] != ST_SUCCESS) {
		drv_log(LOG_WARNING, "usbtmc: INITIATE_ABORT_BULK_OUT bTag %u: status %#x", tag, buf[0]);
		return -EIO;
	}
	if ((r = poll_status(t, RT_EP_IN, REQ_CHECK_ABORT_BULK_OUT_STATUS, t->ep_out, 8, false,
			     "CHECK_ABORT_BULK_OUT_STATUS")) < 0)
		return r;
	/* The spec asks the host to reset the endpoint's data toggle after the abort. */
	return drv_usb_errno(libusb_clear_halt(t->fn->dev->usb, t->ep_out));
}

/* INITIATE_CLEAR, CHECK_CLEAR_STATUS until done, clear the Bulk-OUT halt: USBTMC 1.0 4.2.1.6-7. */
static int clear_device(struct tmc *t)
{
	uint8_t buf[2];
	int r = class_in(t, RT_IFACE_IN, REQ_INITIATE_CLEAR, 0, t->fn->ifnum, buf, 1);

	if (r < 0)
		return r;
	if (buf[0] != ST_SUCCESS) {
		drv_log(LOG_WARNING, "usbtmc: INITIATE_CLEAR: status %#x", buf[0]);
		return -EIO;
	}
	if ((r = poll_status(t, RT_IFACE_IN, REQ_CHECK_CLEAR_STATUS, t->fn->ifnum, 2, true,
			     "CHECK_CLEAR_STATUS")) < 0)
		return r;
	return drv_usb_errno(libusb_clear_halt(t->fn->dev->usb, t->ep_out));
}

/* A USB488 request answering one USBTMC_status byte (REN_CONTROL, GO_TO_LOCAL, LOCAL_LOCKOUT). */
static int simple_488(struct tmc *t, uint8_t request, uint16_t value, const char *name)
{
	uint8_t status;
	int r = class_in(t, RT_IFACE_IN, request, value, t->fn->ifnum, &status, 1);

	if (r < 0)
		return r;
	if (status != ST_SUCCESS) {
		drv_log(LOG_WARNING, "usbtmc: %s: status %#x", name, status);
		return -EIO;
	}
	return 0;
}

static void get_capabilities(struct tmc *t)
{
	uint8_t buf[CAPS_LEN];
	int r;

	seq_begin(t);
	r = class_in(t, RT_IFACE_IN, REQ_GET_CAPABILITIES, 0, t->fn->ifnum, buf, CAPS_LEN);
	if (r < 0 || buf[0] != ST_SUCCESS || r < 6) {
		drv_log(LOG_WARNING, "usbtmc: GET_CAPABILITIES failed (%s); no TermChar, no REN",
			r < 0 ? strerror(-r) : "bad answer");
		return;
	}
	t->caps_valid = true;
	t->caps_dev = buf[5];
	t->caps_488 = t->usb488 && r >= 15 ? buf[14] : 0;
	drv_log(LOG_INFO,
		"usbtmc: bcdUSBTMC %x.%02x, interface caps %#x, device caps %#x, USB488 caps %#x/%#x", buf[3],
		buf[2], buf[4], buf[5], t->caps_488, t->usb488 && r >= 16 ? buf[15] : 0);
}

/* ---- The bulk queue ---- */

static void ch_drop_answer(struct cmd_handle *ch)
{
	free(ch->buf);
	ch->buf = NULL;
	ch->off = ch->len = 0;
}

static size_t ch_buffered(const struct cmd_handle *ch)
{
	return ch->len - ch->off;
}

/* Answers a read from what the handle holds: bytes, else EOF. */
static void ch_reply(struct cmd_handle *ch, struct drv_req *req)
{
	size_t n = ch_buffered(ch);

	if (n > req->size)
		n = req->size;
	drv_reply(req, (int32_t)n, n > 0 ? ch->buf + ch->off : NULL, n);
	ch->off += n;
	if (ch_buffered(ch) == 0)
		ch_drop_answer(ch);
}

static void op_free(struct tmc_op *op)
{
	free(op->data);
	free(op);
}

/* The operation is over: answer its request (if any), start the next one. */
static void op_end(struct tmc_op *op, int err)
{
	struct tmc *t = op->t;
	struct cmd_handle *ch = op->ch;
	struct drv_req *req = op->req;

	if (t->active == op)
		t->active = NULL;
	drv_timer_disarm(&t->timer);
	if (ch != NULL && ch->ahead == op)
		ch->ahead = NULL;
	if (ch != NULL && op->kind == OP_READ && err < 0) {
		/* The answer is lost: reads see EOF until the next command. */
		ch_drop_answer(ch);
		ch->eom = true;
		if (req == NULL)
			ch->error = err;
	}
	if (req != NULL) {
		req->xfer = NULL;
		req->cancel = NULL;
		if (err < 0)
			drv_reply(req, err, NULL, 0);
		else if (op->kind == OP_WRITE)
			drv_reply(req, (int32_t)op->len, NULL, 0);
		else
			ch_reply(ch, req);
	}
	op_free(op);
	tmc_kick(t);
	/* An answer arrived, or the queue drained: readiness may have changed. */
	drv_file_changed(t->cmd_file);
}

static void recover_later(struct tmc_op *op, int err, enum abort_dir dir)
{
	struct tmc *t = op->t;

	op->error = err;
	op->dir = dir;
	op->phase = PH_RECOVER;
	if (op->req != NULL) {
		op->req->xfer = NULL;
		op->req->cancel = NULL;
	}
	drv_timer_disarm(&t->timer);
	drv_timer_arm(&t->recover, 0);
}

/* Runs the active op's abort: the instrument is in step again when it returns. */
static int op_abort(struct tmc *t, struct tmc_op *op)
{
	int r = 0;

	seq_begin(t);
	/* A stalled endpoint must be cleared before it carries anything again, the abort's reads included. */
	if (op->error == -EPIPE && op->dir != ABORT_NONE) {
		uint8_t ep = op->dir == ABORT_IN ? t->ep_in : t->ep_out;
		if ((r = drv_usb_errno(libusb_clear_halt(t->fn->dev->usb, ep))) < 0)
			drv_log(LOG_WARNING, "usbtmc: clearing the halt of %02x: %s", ep, strerror(-r));
	}
	if (op->dir == ABORT_IN)
		r = abort_bulk_in(t, op->tag);
	else if (op->dir == ABORT_OUT)
		r = abort_bulk_out(t, op->tag);
	if (r < 0)
		drv_log(LOG_ERR, "usbtmc: abort of bTag %u failed (%s); `echo clear > ctl` may help", op->tag,
			strerror(-r));
	else if (op->dir != ABORT_NONE)
		drv_log(LOG_INFO, "usbtmc: bulk-%s bTag %u aborted", op->dir == ABORT_IN ? "IN" : "OUT",
			op->tag);
	return r;
}

static void recover_fire(struct drv_timer *timer)
{
	struct tmc *t = timer->arg;
	struct tmc_op *op = t->active;

	if (op == NULL || op->phase != PH_RECOVER)
		return;
	op_abort(t, op);
	op_end(op, op->error);
}

/* Why a transfer of `op` ended badly (or why it is stopped although it went well). */
static int op_failure(const struct tmc_op *op, int r)
{
	if (op->error != 0)
		return op->error;
	if (r == -EINTR || (op->req != NULL && op->req->cancelled))
		return -EINTR;
	return r;
}

/* Which abort a failed transfer needs: none when the device is gone. */
static enum abort_dir abort_for(int err, enum abort_dir dir)
{
	return err == -ENODEV ? ABORT_NONE : dir;
}

static void xfer_started(struct tmc *t, struct tmc_op *op, struct drv_xfer *x)
{
	t->xfer = x;
	if (op->req != NULL) {
		op->req->xfer = x;
		op->req->cancel = NULL;
	}
	drv_timer_arm(&t->timer, t->timeout_ms);
}

/* Ends the active op's transfer: its request no longer points at it. */
static void xfer_ended(struct tmc *t, struct tmc_op *op)
{
	t->xfer = NULL;
	if (op->req != NULL)
		op->req->xfer = NULL;
}

/* Stops every transfer of the active op; their callbacks still come. */
static void cancel_xfers(struct tmc *t)
{
	if (t->xfer != NULL)
		drv_xfer_cancel(t->xfer);
	if (t->req_xfer != NULL)
		drv_xfer_cancel(t->req_xfer);
}

static bool xfers_idle(const struct tmc *t)
{
	return t->xfer == NULL && t->req_xfer == NULL;
}

static int submit_bulk(struct tmc *t, struct tmc_op *op, struct drv_xfer *x, uint8_t ep)
{
	libusb_fill_bulk_transfer(x->t, t->fn->dev->usb, ep, x->t->buffer, x->t->length, NULL, NULL, 0);
	x->arg = op;
	int r = drv_xfer_submit(x);
	if (r < 0) {
		drv_xfer_free(x);
		return r;
	}
	xfer_started(t, op, x);
	return 0;
}

static void out_done(struct drv_xfer *x);
static void request_done(struct drv_xfer *x);
static void in_done(struct drv_xfer *x);

/* The next DEV_DEP_MSG_OUT transfer of a write. */
static int send_chunk(struct tmc *t, struct tmc_op *op)
{
	size_t chunk = op->len - op->done;
	bool last = chunk <= OUT_CHUNK;
	struct drv_xfer *x;

	if (!last)
		chunk = OUT_CHUNK;
	/* Header, message bytes, then zeros to a multiple of 4 (USBTMC 1.0 3.2). */
	if ((x = drv_xfer_new(round_up(TMC_HDR_LEN + chunk, 4), out_done, op)) == NULL)
		return -ENOMEM;
	op->tag = take_tag(t);
	t->last_out_tag = op->tag;
	op->chunk = chunk;
	put_bulk_header(x->t->buffer, MSG_DEV_DEP_MSG_OUT, op->tag, (uint32_t)chunk, last ? TMC_ATTR_EOM : 0,
			0);
	memcpy(x->t->buffer + TMC_HDR_LEN, op->data + op->done, chunk);
	memset(x->t->buffer + TMC_HDR_LEN + chunk, 0, (size_t)x->t->length - TMC_HDR_LEN - chunk);
	op->phase = PH_OUT;
	return submit_bulk(t, op, x, t->ep_out);
}

static void out_done(struct drv_xfer *x)
{
	struct tmc_op *op = x->arg;
	struct tmc *t = op->t;
	int r = drv_xfer_errno(x->t->status);

	if (r == 0 && x->t->actual_length != x->t->length)
		r = -EIO;
	drv_xfer_free(x);
	xfer_ended(t, op);
	drv_timer_disarm(&t->timer);
	if (r < 0 || op->error != 0) {
		int err = op_failure(op, r);
		if (err != -EINTR && err != -ECANCELED && err != -ETIMEDOUT)
			drv_log(LOG_WARNING, "usbtmc: DEV_DEP_MSG_OUT bTag %u: %s", op->tag, strerror(-err));
		return recover_later(op, err, abort_for(err, ABORT_OUT));
	}
	op->done += op->chunk;
	if (op->done == op->len)
		return op_end(op, 0);
	if ((r = send_chunk(t, op)) < 0)
		op_end(op, r);
}

static void read_join(struct tmc_op *op);

/*
 * REQUEST_DEV_DEP_MSG_IN for the next IN_CHUNK bytes of the answer, and
 * the IN transfer that receives them, submitted together: the device
 * NAKs the IN until it has the answer, and a query costs one USB round
 * trip less than sending the request first.  The op goes on once both
 * callbacks came (read_join).
 */
static int send_request(struct tmc *t, struct tmc_op *op)
{
	struct drv_xfer *rx = drv_xfer_new(TMC_HDR_LEN, request_done, op);
	/* Room for the header, IN_CHUNK bytes and the alignment, in whole packets: the device ends short. */
	struct drv_xfer *ix = drv_xfer_new(round_up(TMC_HDR_LEN + IN_CHUNK + 3, t->in_packet), in_done, op);
	int r;

	if (rx == NULL || ix == NULL) {
		drv_xfer_free(rx);
		drv_xfer_free(ix);
		return -ENOMEM;
	}
	op->tag = take_tag(t);
	t->last_out_tag = op->tag;
	t->last_in_tag = op->tag;
	put_bulk_header(rx->t->buffer, MSG_REQUEST_DEV_DEP_MSG_IN, op->tag, IN_CHUNK,
			t->termchar >= 0 ? TMC_ATTR_TERMCHAR_EN : 0,
			t->termchar >= 0 ? (uint8_t)t->termchar : 0);
	op->phase = PH_IN;
	libusb_fill_bulk_transfer(rx->t, t->fn->dev->usb, t->ep_out, rx->t->buffer, rx->t->length, NULL, NULL,
				  0);
	if ((r = drv_xfer_submit(rx)) < 0) {
		drv_xfer_free(rx);
		drv_xfer_free(ix);
		return r;
	}
	t->req_xfer = rx;
	op->request_error = 1;
	if ((r = submit_bulk(t, op, ix, t->ep_in)) < 0) {
		/* The request is out already: stop it, and let its callback end the op. */
		op->error = r;
		drv_xfer_cancel(rx);
		drv_timer_arm(&t->timer, t->timeout_ms);
	}
	return 0;
}

static void request_done(struct drv_xfer *x)
{
	struct tmc_op *op = x->arg;
	struct tmc *t = op->t;
	int r = drv_xfer_errno(x->t->status);

	if (r == 0 && x->t->actual_length != x->t->length)
		r = -EIO;
	drv_xfer_free(x);
	t->req_xfer = NULL;
	op->request_error = r;
	/* The answer to a request the device did not get will not come. */
	if (r < 0 && t->xfer != NULL)
		drv_xfer_cancel(t->xfer);
	if (t->xfer == NULL)
		read_join(op);
}

static void in_done(struct drv_xfer *x)
{
	struct tmc_op *op = x->arg;
	struct tmc *t = op->t;

	xfer_ended(t, op);
	op->in = x;
	if (x->t->status != LIBUSB_TRANSFER_COMPLETED && t->req_xfer != NULL)
		drv_xfer_cancel(t->req_xfer);
	if (t->req_xfer == NULL)
		read_join(op);
}

/* Checks a DEV_DEP_MSG_IN header: the data length, or -EIO with the reason logged. */
static int check_in_header(const struct tmc_op *op, const uint8_t *p, size_t got)
{
	if (got < TMC_HDR_LEN) {
		drv_log(LOG_ERR, "usbtmc: malformed answer: %zu bytes, shorter than a header", got);
		return -EIO;
	}
	if (p[0] != MSG_DEV_DEP_MSG_IN) {
		drv_log(LOG_ERR, "usbtmc: malformed answer: MsgID %u, expected DEV_DEP_MSG_IN (%u)", p[0],
			MSG_DEV_DEP_MSG_IN);
		return -EIO;
	}
	uint8_t inverse = (uint8_t)~op->tag;
	if (p[1] != op->tag || p[2] != inverse) {
		drv_log(LOG_ERR, "usbtmc: malformed answer: bTag %u/%u, expected %u/%u", p[1], p[2], op->tag,
			inverse);
		return -EIO;
	}
	uint32_t size = get_le32(p + 4);
	if (size > IN_CHUNK) {
		drv_log(LOG_ERR, "usbtmc: malformed answer: TransferSize %u, more than the %u asked", size,
			IN_CHUNK);
		return -EIO;
	}
	if (size > got - TMC_HDR_LEN) {
		drv_log(LOG_ERR, "usbtmc: malformed answer: TransferSize %u, but %zu bytes came", size,
			got - TMC_HDR_LEN);
		return -EIO;
	}
	return (int)size;
}

/* Both transfers of a read came back: deliver the answer, or find out which abort it needs. */
static void read_join(struct tmc_op *op)
{
	struct tmc *t = op->t;
	struct cmd_handle *ch = op->ch;
	struct drv_xfer *x = op->in;
	int r = x != NULL ? drv_xfer_errno(x->t->status) : -EIO;

	op->in = NULL;
	drv_timer_disarm(&t->timer);
	if (op->request_error != 0 || r < 0 || op->error != 0) {
		bool request_sent = op->request_error == 0;
		int err = op_failure(op, op->request_error < 0 ? op->request_error : r);
		drv_xfer_free(x);
		if (err != -EINTR && err != -ECANCELED && err != -ETIMEDOUT)
			drv_log(LOG_WARNING, "usbtmc: %s bTag %u: %s",
				request_sent ? "DEV_DEP_MSG_IN" : "REQUEST_DEV_DEP_MSG_IN", op->tag,
				strerror(-err));
		/* Not sent: the device may be stuck receiving it; sent: it may be sending the answer. */
		return recover_later(op, err, abort_for(err, request_sent ? ABORT_IN : ABORT_OUT));
	}
	int size = check_in_header(op, x->t->buffer, (size_t)x->t->actual_length);
	if (size < 0) {
		drv_xfer_free(x);
		return recover_later(op, -EIO, ABORT_IN);
	}
	bool eom = x->t->buffer[8] & TMC_ATTR_EOM;
	if (ch == NULL) {
		/* Its handle is gone: nobody wants the answer; a new command will replace it. */
		drv_xfer_free(x);
		return op_end(op, 0);
	}
	ch_drop_answer(ch);
	ch->buf = x->t->buffer;
	x->t->buffer = NULL;
	ch->off = TMC_HDR_LEN;
	ch->len = TMC_HDR_LEN + (size_t)size;
	ch->eom = eom;
	drv_xfer_free(x);
	if (size > 0 || eom)
		return op_end(op, 0);
	/* An empty transfer without EOM: ask again, a bounded number of times. */
	if (++op->empty > MAX_EMPTY_IN) {
		drv_log(LOG_ERR, "usbtmc: malformed answer: %u empty transfers without EOM", op->empty);
		return recover_later(op, -EIO, ABORT_IN);
	}
	if ((r = send_request(t, op)) < 0)
		op_end(op, r);
}

static void timeout_fire(struct drv_timer *timer)
{
	struct tmc *t = timer->arg;
	struct tmc_op *op = t->active;

	if (op == NULL || xfers_idle(t) || op->error != 0)
		return;
	drv_log(LOG_WARNING, "usbtmc: no %s bTag %u within %u ms: aborting",
		op->phase == PH_IN ? "answer to" : "room for", op->tag, t->timeout_ms);
	op->error = -ETIMEDOUT;
	cancel_xfers(t);
}

static void op_start(struct tmc *t, struct tmc_op *op)
{
	struct cmd_handle *ch = op->ch;
	int r;

	t->active = op;
	/*
	 * Nothing to fetch: an earlier read of the handle brought more than it
	 * took, or the whole answer, or the handle is gone.  Asking again would
	 * replace bytes nobody read yet.
	 */
	if (op->kind == OP_READ && (ch == NULL || ch_buffered(ch) > 0 || ch->eom))
		return op_end(op, 0);
	r = op->kind == OP_WRITE ? send_chunk(t, op) : send_request(t, op);
	if (r < 0)
		op_end(op, r);
}

static bool tmc_busy(const struct tmc *t)
{
	return t->active != NULL || !TAILQ_EMPTY(&t->ops);
}

static void tmc_kick(struct tmc *t)
{
	struct tmc_op *op;

	if (t->active != NULL || (op = TAILQ_FIRST(&t->ops)) == NULL)
		return;
	TAILQ_REMOVE(&t->ops, op, link);
	op_start(t, op);
}

/* CANCEL of a request whose op still waits in the queue. */
static void op_cancel_queued(struct drv_req *req)
{
	struct cmd_handle *ch = req->h->priv;
	struct tmc *t = ch->t;
	struct tmc_op *op;

	TAILQ_FOREACH(op, &t->ops, link)
	if (op->req == req) {
		TAILQ_REMOVE(&t->ops, op, link);
		if (ch->ahead == op)
			ch->ahead = NULL;
		op_free(op);
		break;
	}
	drv_reply(req, -EINTR, NULL, 0);
}

static struct tmc_op *op_new(struct cmd_handle *ch, struct drv_req *req, enum op_kind kind)
{
	struct tmc_op *op = calloc(1, sizeof(*op));

	if (op == NULL)
		return NULL;
	op->t = ch->t;
	op->ch = ch;
	op->req = req;
	op->kind = kind;
	if (req != NULL)
		req->cancel = op_cancel_queued;
	return op;
}

static void op_queue(struct tmc *t, struct tmc_op *op)
{
	TAILQ_INSERT_TAIL(&t->ops, op, link);
	tmc_kick(t);
}

/* ---- cmd ---- */

static int cmd_open(struct drv_handle *h, uint32_t flags)
{
	struct tmc *t = h->file->priv;
	struct cmd_handle *ch = calloc(1, sizeof(*ch));

	(void)flags;
	if (ch == NULL)
		return -ENOMEM;
	ch->t = t;
	LIST_INSERT_HEAD(&t->handles, ch, link);
	h->priv = ch;
	return 0;
}

static void cmd_release(struct drv_handle *h)
{
	struct cmd_handle *ch = h->priv;
	struct tmc *t = ch->t;
	struct tmc_op *op = ch->ahead;

	/* Its read-ahead: dropped if it waits, else it runs on (its abort too) for nobody. */
	if (op != NULL && op != t->active) {
		TAILQ_REMOVE(&t->ops, op, link);
		op_free(op);
	} else if (op != NULL) {
		op->ch = NULL;
		if (!xfers_idle(t) && op->error == 0) {
			op->error = -EINTR;
			cancel_xfers(t);
		}
	}
	LIST_REMOVE(ch, link);
	ch_drop_answer(ch);
	free(ch);
}

static void cmd_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct cmd_handle *ch = req->h->priv;
	struct tmc_op *op;

	if ((req->flags & PROTO_F_NONBLOCK) && tmc_busy(ch->t))
		return drv_reply(req, -EAGAIN, NULL, 0);
	/* A new command: what is left of the last answer is not wanted any more. */
	ch_drop_answer(ch);
	ch->eom = false;
	ch->error = 0;
	ch->asked = true;
	if (len == 0)
		return drv_reply(req, 0, NULL, 0);
	if ((op = op_new(ch, req, OP_WRITE)) == NULL || (op->data = malloc(len)) == NULL) {
		free(op);
		req->cancel = NULL;
		return drv_reply(req, -ENOMEM, NULL, 0);
	}
	memcpy(op->data, data, len);
	op->len = len;
	op_queue(ch->t, op);
}

/* Starts fetching the next part of the answer for nobody yet (O_NONBLOCK, poll). */
static void cmd_read_ahead(struct cmd_handle *ch)
{
	if (ch->ahead != NULL || ch_buffered(ch) > 0 || ch->eom || ch->error != 0)
		return;
	if ((ch->ahead = op_new(ch, NULL, OP_READ)) == NULL) {
		ch->error = -ENOMEM;
		return;
	}
	op_queue(ch->t, ch->ahead);
}

static void cmd_read(struct drv_req *req)
{
	struct cmd_handle *ch = req->h->priv;
	struct tmc *t = ch->t;
	struct tmc_op *op;

	if (ch_buffered(ch) > 0 && ch->ahead == NULL)
		return ch_reply(ch, req);
	if (ch->error != 0) {
		int r = ch->error;
		ch->error = 0;
		return drv_reply(req, r, NULL, 0);
	}
	if (ch->eom && ch->ahead == NULL)
		return drv_reply(req, 0, NULL, 0);
	if (req->size == 0)
		return drv_reply(req, 0, NULL, 0);
	if (req->flags & PROTO_F_NONBLOCK) {
		cmd_read_ahead(ch);
		return drv_reply(req, -EAGAIN, NULL, 0);
	}
	if ((op = ch->ahead) != NULL && op->req == NULL) {
		/* A read-ahead is under way: this read takes it over. */
		op->req = req;
		if (op == t->active && op->phase != PH_RECOVER)
			req->xfer = t->xfer;
		else if (op != t->active)
			req->cancel = op_cancel_queued;
		return;
	}
	if ((op = op_new(ch, req, OP_READ)) == NULL) {
		req->cancel = NULL;
		return drv_reply(req, -ENOMEM, NULL, 0);
	}
	op_queue(t, op);
}

static unsigned cmd_poll(struct drv_handle *h)
{
	struct cmd_handle *ch = h->priv;
	/* Writable when a write would not wait behind other operations. */
	unsigned revents = tmc_busy(ch->t) ? 0 : POLLOUT;

	if ((h->flags & O_ACCMODE) == O_WRONLY)
		return revents;
	/*
	 * Readable when a read would not wait: the answer (or its error, or
	 * EOF) is here.  After a command, polling fetches its answer; before
	 * one, nothing is asked of the instrument (a poll for POLLOUT must not
	 * send REQUEST_DEV_DEP_MSG_IN).
	 */
	if (ch->asked)
		cmd_read_ahead(ch);
	if (ch->ahead == NULL && (ch_buffered(ch) > 0 || ch->eom || ch->error != 0))
		revents |= POLLIN;
	return revents;
}

static const struct drv_file_ops cmd_ops = {
    .open = cmd_open,
    .read = cmd_read,
    .write = cmd_write,
    .poll = cmd_poll,
    .release = cmd_release,
};

/* ---- stb ---- */

static void stb_kick(struct tmc *t);

static int stb_open(struct drv_handle *h, uint32_t flags)
{
	(void)flags;
	h->priv = calloc(1, sizeof(struct stb_handle));
	return h->priv != NULL ? 0 : -ENOMEM;
}

static void stb_release(struct drv_handle *h)
{
	free(h->priv);
}

static void stb_end(struct tmc *t, int r, uint8_t stb)
{
	struct drv_req *req = t->stb_req;
	struct stb_handle *sh = req->h->priv;

	drv_timer_disarm(&t->stb_timer);
	t->stb_req = NULL;
	t->stb_xfer = NULL;
	req->xfer = NULL;
	if (r < 0) {
		drv_reply(req, r, NULL, 0);
	} else {
		sh->len = (size_t)snprintf(sh->text, sizeof(sh->text), "%u\n", stb);
		sh->valid = true;
		drv_reply_slice(req, sh->text, sh->len);
	}
	stb_kick(t);
}

static int stb_failure(struct tmc *t, int r)
{
	if (t->stb_timed_out)
		return -ETIMEDOUT;
	return r;
}

static void stb_intr_done(struct drv_xfer *x);

static int stb_submit_intr(struct tmc *t)
{
	size_t len = t->intr_packet >= 2 ? t->intr_packet : 2;
	struct drv_xfer *x = drv_xfer_new(len, stb_intr_done, t);
	int r;

	if (x == NULL)
		return -ENOMEM;
	libusb_fill_interrupt_transfer(x->t, t->fn->dev->usb, t->ep_intr, x->t->buffer, (int)len, NULL, NULL,
				       0);
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return r;
	}
	t->stb_xfer = x;
	t->stb_req->xfer = x;
	return 0;
}

static void stb_intr_done(struct drv_xfer *x)
{
	struct tmc *t = x->arg;
	int r = drv_xfer_errno(x->t->status);
	int got = x->t->actual_length;
	uint8_t b0 = got >= 1 ? x->t->buffer[0] : 0, b1 = got >= 2 ? x->t->buffer[1] : 0;

	drv_xfer_free(x);
	t->stb_xfer = NULL;
	if (r < 0)
		return stb_end(t, stb_failure(t, r), 0);
	if (got >= 2 && b0 == NOTIFY_STB(t->stb_tag))
		return stb_end(t, 0, b1);
	if (got >= 2 && (b0 == NOTIFY_SRQ || (b0 & 0x80))) {
		/* A service request, or the answer to an earlier READ_STATUS_BYTE that timed out. */
		drv_log(LOG_INFO, "usbtmc: interrupt-IN notification %#x %#x while waiting for bTag %u", b0,
			b1, t->stb_tag);
		if (t->stb_timed_out)
			return stb_end(t, -ETIMEDOUT, 0);
		if ((r = stb_submit_intr(t)) < 0)
			stb_end(t, r, 0);
		return;
	}
	drv_log(LOG_ERR, "usbtmc: malformed interrupt-IN notification (%d bytes, %#x)", got, b0);
	stb_end(t, -EIO, 0);
}

static void stb_ctrl_done(struct drv_xfer *x)
{
	struct tmc *t = x->arg;
	int r = drv_xfer_errno(x->t->status);
	const uint8_t *p = libusb_control_transfer_get_data(x->t);
	int got = x->t->actual_length;
	uint8_t status = got >= 1 ? p[0] : 0, tag = got >= 2 ? p[1] : 0, stb = got >= 3 ? p[2] : 0;

	drv_xfer_free(x);
	t->stb_xfer = NULL;
	if (r < 0)
		return stb_end(t, stb_failure(t, r), 0);
	if (got < 3 || tag != t->stb_tag) {
		drv_log(LOG_ERR, "usbtmc: malformed READ_STATUS_BYTE answer (%d bytes, bTag %u, expected %u)",
			got, tag, t->stb_tag);
		return stb_end(t, -EIO, 0);
	}
	if (status == ST_INTERRUPT_IN_BUSY)
		return stb_end(t, -EBUSY, 0);
	if (status != ST_SUCCESS) {
		drv_log(LOG_WARNING, "usbtmc: READ_STATUS_BYTE: status %#x", status);
		return stb_end(t, -EIO, 0);
	}
	/* With an interrupt-IN endpoint the byte comes there (USB488 4.3.1.1). */
	if (t->ep_intr == 0)
		return stb_end(t, 0, stb);
	if ((r = stb_submit_intr(t)) < 0)
		stb_end(t, r, 0);
}

static void stb_timeout_fire(struct drv_timer *timer)
{
	struct tmc *t = timer->arg;

	if (t->stb_xfer == NULL)
		return;
	drv_log(LOG_WARNING, "usbtmc: no status byte within %u ms", t->timeout_ms);
	t->stb_timed_out = true;
	drv_xfer_cancel(t->stb_xfer);
}

static void stb_start(struct tmc *t, struct drv_req *req)
{
	struct drv_xfer *x = drv_xfer_new(SETUP_LEN + 3, stb_ctrl_done, t);
	int r;

	req->cancel = NULL;
	if (x == NULL)
		return drv_reply(req, -ENOMEM, NULL, 0);
	t->stb_tag = take_stb_tag(t);
	t->stb_timed_out = false;
	libusb_fill_control_setup(x->t->buffer, RT_IFACE_IN, REQ_READ_STATUS_BYTE, t->stb_tag, t->fn->ifnum,
				  3);
	libusb_fill_control_transfer(x->t, t->fn->dev->usb, x->t->buffer, NULL, NULL, 0);
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return drv_reply(req, r, NULL, 0);
	}
	t->stb_req = req;
	t->stb_xfer = x;
	req->xfer = x;
	drv_timer_arm(&t->stb_timer, t->timeout_ms);
}

static void stb_kick(struct tmc *t)
{
	struct drv_req *req;

	while (t->stb_req == NULL && (req = TAILQ_FIRST(&t->stb_waiters)) != NULL) {
		TAILQ_REMOVE(&t->stb_waiters, req, wait);
		stb_start(t, req);
	}
}

static void stb_cancel_waiter(struct drv_req *req)
{
	struct tmc *t = req->h->file->priv;

	TAILQ_REMOVE(&t->stb_waiters, req, wait);
	drv_reply(req, -EINTR, NULL, 0);
}

static void stb_read(struct drv_req *req)
{
	struct tmc *t = req->h->file->priv;
	struct stb_handle *sh = req->h->priv;

	if (!t->usb488)
		return drv_reply(req, -EINVAL, NULL, 0);
	/* Further on: the rest of the value read at offset 0, so `cat` sees one answer. */
	if (sh->valid && req->offset > 0)
		return drv_reply_slice(req, sh->text, sh->len);
	req->cancel = stb_cancel_waiter;
	TAILQ_INSERT_TAIL(&t->stb_waiters, req, wait);
	stb_kick(t);
}

static const struct drv_file_ops stb_ops = {
    .open = stb_open,
    .read = stb_read,
    .release = stb_release,
};

/* ---- timeout and termchar ---- */

/* A decimal number in [min, max], maybe with a trailing newline; 0 or -EINVAL. */
static int parse_uint(const uint8_t *data, size_t len, unsigned long min, unsigned long max,
		      unsigned long *out)
{
	char text[16], *end;

	if (len > 0 && data[len - 1] == '\n')
		len--;
	if (len == 0 || len >= sizeof(text))
		return -EINVAL;
	memcpy(text, data, len);
	text[len] = '\0';
	if (text[0] < '0' || text[0] > '9')
		return -EINVAL;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

static void timeout_read(struct drv_req *req)
{
	struct tmc *t = req->h->file->priv;
	char text[16];
	int n = snprintf(text, sizeof(text), "%u\n", t->timeout_ms);

	drv_reply_slice(req, text, (size_t)n);
}

static void timeout_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct tmc *t = req->h->file->priv;
	unsigned long v;

	if (req->offset != 0 || parse_uint(data, len, 1, MAX_TIMEOUT_MS, &v) < 0)
		return drv_reply(req, -EINVAL, NULL, 0);
	t->timeout_ms = (unsigned)v;
	drv_reply(req, (int32_t)len, NULL, 0);
}

static const struct drv_file_ops timeout_ops = {
    .read = timeout_read,
    .write = timeout_write,
};

static void termchar_read(struct drv_req *req)
{
	struct tmc *t = req->h->file->priv;
	char text[16];
	int n = t->termchar < 0 ? snprintf(text, sizeof(text), "off\n")
				: snprintf(text, sizeof(text), "%d\n", t->termchar);

	drv_reply_slice(req, text, (size_t)n);
}

static void termchar_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct tmc *t = req->h->file->priv;
	unsigned long v;

	if (req->offset != 0)
		return drv_reply(req, -EINVAL, NULL, 0);
	if ((len == 3 || len == 4) && memcmp(data, "off", 3) == 0 && (len == 3 || data[3] == '\n')) {
		t->termchar = -1;
		return drv_reply(req, (int32_t)len, NULL, 0);
	}
	if (parse_uint(data, len, 0, 255, &v) < 0)
		return drv_reply(req, -EINVAL, NULL, 0);
	if (!(t->caps_dev & CAPS_DEV_TERMCHAR)) {
		drv_log(LOG_WARNING, "usbtmc: the instrument does not support TermChar (GET_CAPABILITIES)");
		return drv_reply(req, -EINVAL, NULL, 0);
	}
	t->termchar = (int)v;
	drv_reply(req, (int32_t)len, NULL, 0);
}

static const struct drv_file_ops termchar_ops = {
    .read = termchar_read,
    .write = termchar_write,
};

/* ---- ctl ---- */

/*
 * Takes the active op off the bus for a ctl: cancels its transfer and runs
 * libusb's events until the callback has put it in PH_RECOVER (with
 * `err`, unless it already had a reason).  0, or -ETIMEDOUT if the
 * transfer did not come back.
 */
static int quiesce(struct tmc *t, struct tmc_op *op, int err)
{
	if (op->phase == PH_RECOVER)
		return 0;
	if (op->error == 0)
		op->error = err;
	if (xfers_idle(t))
		return 0;
	cancel_xfers(t);
	/* A cancelled URB comes back at once (usbfs discards it): a second is plenty. */
	uint64_t deadline = now_ms() + 1000;
	while (!xfers_idle(t) && now_ms() < deadline) {
		struct timeval tv = {0, 10000};
		libusb_handle_events_timeout_completed(NULL, &tv, NULL);
	}
	if (!xfers_idle(t)) {
		drv_log(LOG_ERR, "usbtmc: a cancelled transfer did not come back");
		return -ETIMEDOUT;
	}
	return 0;
}

static int ctl_abort(struct tmc *t)
{
	struct tmc_op *op = t->active;
	int r;

	if (op != NULL) {
		if ((r = quiesce(t, op, -ECANCELED)) < 0)
			return r;
		drv_timer_disarm(&t->recover);
		r = op_abort(t, op);
		op_end(op, op->error);
		return r;
	}
	/* Nothing running here: the last transfers, in case the instrument is still at them (bTag 0: none
	 * yet). */
	seq_begin(t);
	if (t->last_in_tag != 0 && (r = abort_bulk_in(t, t->last_in_tag)) < 0)
		return r;
	return t->last_out_tag != 0 ? abort_bulk_out(t, t->last_out_tag) : 0;
}

static int ctl_clear(struct tmc *t)
{
	struct tmc_op *op = t->active;
	struct cmd_handle *ch;
	int r;

	if (op != NULL) {
		if ((r = quiesce(t, op, -ECANCELED)) < 0)
			return r;
		drv_timer_disarm(&t->recover);
	}
	seq_begin(t);
	r = clear_device(t);
	/* The instrument forgot every answer: so do the handles. */
	LIST_FOREACH(ch, &t->handles, link)
	{
		ch_drop_answer(ch);
		ch->eom = true;
	}
	if (op != NULL)
		op_end(op, op->error);
	return r;
}

static int ctl_remote(struct tmc *t, bool remote)
{
	int r;

	if (!(t->caps_488 & CAPS_488_REN))
		return -EINVAL;
	seq_begin(t);
	if (!remote)
		return simple_488(t, REQ_GO_TO_LOCAL, 0, "GO_TO_LOCAL");
	/* As the kernel's users do: assert REN, then lock the front panel out. */
	if ((r = simple_488(t, REQ_REN_CONTROL, 1, "REN_CONTROL")) < 0)
		return r;
	return simple_488(t, REQ_LOCAL_LOCKOUT, 0, "LOCAL_LOCKOUT");
}

static int usbtmc_ctl(struct drv_function *fn, int argc, char **argv)
{
	struct tmc *t = fn->priv;

	if (argc != 1)
		return -EINVAL;
	if (strcmp(argv[0], "clear") == 0)
		return ctl_clear(t);
	if (strcmp(argv[0], "abort") == 0)
		return ctl_abort(t);
	if (strcmp(argv[0], "remote") == 0)
		return ctl_remote(t, true);
	if (strcmp(argv[0], "local") == 0)
		return ctl_remote(t, false);
	return -EINVAL;
}

/* ---- Probe ---- */

static int probe_fail(struct drv_function *fn, int err)
{
	free(fn->priv);
	fn->priv = NULL;
	return err;
}

static int usbtmc_probe(struct drv_function *fn)
{
	const struct drv_device *dev = fn->dev;
	struct usbdesc_iface d;
	struct tmc *t;

	if (usbdesc_find_alt(dev->desc, dev->desc_len, fn->ifnum, 0, &d) < 0)
		return -ENOENT;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return -ENOMEM;
	fn->priv = t;
	t->fn = fn;
	t->usb488 = d.protocol == USB488_PROTOCOL;
	t->timeout_ms = DEFAULT_TIMEOUT_MS;
	t->termchar = -1;
	t->next_tag = 1;
	t->next_stb_tag = 2;
	t->timer = (struct drv_timer){.fire = timeout_fire, .arg = t};
	t->recover = (struct drv_timer){.fire = recover_fire, .arg = t};
	t->stb_timer = (struct drv_timer){.fire = stb_timeout_fire, .arg = t};
	TAILQ_INIT(&t->ops);
	TAILQ_INIT(&t->stb_waiters);
	LIST_INIT(&t->handles);
	for (unsigned i = 0; i < d.num_eps; i++) {
		const struct usbdesc_ep *e = &d.eps[i];
		uint8_t type = e->attributes & 3;
		uint16_t mps = e->max_packet > 0 && e->max_packet <= 1024 ? e->max_packet : 64;

		if (type == USB_XFER_BULK && !(e->address & USB_DIR_IN) && t->ep_out == 0)
			t->ep_out = e->address;
		else if (type == USB_XFER_BULK && (e->address & USB_DIR_IN) && t->ep_in == 0) {
			t->ep_in = e->address;
			t->in_packet = mps;
		} else if (type == USB_XFER_INTR && (e->address & USB_DIR_IN) && t->ep_intr == 0) {
			t->ep_intr = e->address;
			t->intr_packet = mps;
		}
	}
	if (t->ep_out == 0 || t->ep_in == 0) {
		drv_log(LOG_ERR, "usbtmc: interface %u lacks a bulk OUT or bulk IN endpoint", fn->ifnum);
		return probe_fail(fn, -ENOENT);
	}
	get_capabilities(t);
	/*
	 * Seekable although offsets mean nothing to a conversation: head(1)
	 * seeks back over what it read past the line, and on a regular file
	 * that cannot seek it complains and fails.
	 */
	t->cmd_file = drv_file_add(fn, "cmd", 0666, PROTO_KIND_SMALL | PROTO_FILE_UNTIMED, &cmd_ops, t);
	if (t->cmd_file == NULL ||
	    drv_file_add(fn, "stb", 0444, PROTO_KIND_SMALL | PROTO_FILE_UNTIMED, &stb_ops, t) == NULL ||
	    drv_file_add(fn, "timeout", 0666, PROTO_KIND_SMALL, &timeout_ops, t) == NULL ||
	    drv_file_add(fn, "termchar", 0666, PROTO_KIND_SMALL, &termchar_ops, t) == NULL)
		return probe_fail(fn, -ENOSPC);
	drv_log(LOG_INFO, "usbtmc: interface %u %s, OUT %02x, IN %02x, interrupt %02x", fn->ifnum,
		t->usb488 ? "USB488" : "USBTMC", t->ep_out, t->ep_in, t->ep_intr);
	return 0;
}

const struct driver_ops usbtmc_driver = {
    .name = "usbtmc",
    .probe = usbtmc_probe,
    .ctl = usbtmc_ctl,
};
