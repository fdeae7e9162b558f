/*
 * The `printer` driver: USB Printer Class interfaces (7/1/1 unidirectional,
 * 7/1/2 bidirectional, 7/1/3 IEEE 1284.4), what Linux calls /dev/usb/lp0.
 *
 *   data       write = print: the bytes go to the bulk OUT endpoint, in
 *              order, and a write returns when the printer took them all.
 *              read = the back channel (bulk IN) of a bidirectional
 *              printer: what arrived, at least 1 byte; EINVAL on a
 *              unidirectional one.
 *   device_id  GET_DEVICE_ID: the IEEE 1284 ID text and a newline.
 *   status     GET_PORT_STATUS: ok, paper-out, offline or error.
 *   ctl        `reset` sends SOFT_RESET.
 *
 * A printer out of paper does not fail a transfer, it NAKs it: the bulk
 * OUT just stays pending.  So while a write is in flight the driver asks
 * GET_PORT_STATUS every STATUS_POLL_MS (Linux usblp does the same while a
 * write is stuck).  On paper empty it cancels the writes in flight; each
 * answers the bytes the printer took (a short count; the next write then
 * fails with ENOSPC) or ENOSPC when it took none.  Offline or error only
 * get a log line: the write keeps waiting, as with usblp, until the
 * printer comes back or the writer gives up (a signal cancels the
 * transfer).
 *
 * An O_NONBLOCK write fails with EAGAIN while any write is in flight;
 * otherwise it is queued and answered at once, like usblp, and its outcome
 * (an error, paper out) is reported by the next write.  POLLOUT means no
 * write is in flight.
 *
 * Try it: build/plugfs-emu --model printer-zh380 -- sh -c '...' (README).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "driver.h"
#include "printer_class.h"

#define USB_DIR_IN 0x80
#define SETUP_LEN  8
/* How often a pending write looks at the port status: paper out is noticed within this. */
#define STATUS_POLL_MS 200
/* Back-channel transfers ask for this much (rounded down to whole packets). */
#define BACKCHANNEL_XFER 4096
/* Room for the device_id file: the ID and a newline. */
#define TEXT_MAX (PRINTER_DEVICE_ID_MAX + 1)
/* printer.last_state besides enum printer_state. */
#define POLL_UNKNOWN (-1)
#define POLL_FAILED  (-2)

struct printer {
	struct drv_function *fn;
	uint8_t protocol;
	uint8_t ep_out, ep_in; /* ep_in 0: unidirectional */
	uint16_t in_packet;
	struct drv_file *data;

	/* Writes: blocking ones in submission order, plus at most one O_NONBLOCK one. */
	struct drv_req_queue writes;
	struct drv_xfer *bg_write;
	int write_error;       /* owed to the next write: ENOSPC after a short count, a background error */
	bool stopping;	       /* the writes in flight are being cancelled: paper out */
	struct drv_timer poll; /* status poll while writes are in flight */
	struct drv_xfer *poll_xfer;
	int last_state; /* of the poll, for logging changes, or POLL_* */

	/* Back channel: one IN transfer at a time; what no read took yet stays in buf[off..len). */
	uint8_t *buf;
	size_t off, len;
	int read_error;
	struct drv_xfer *in_xfer;
	struct drv_req *in_owner;
	struct drv_req_queue readers;
};

/* Per handle of device_id and status: the text read at offset 0, for reads further on. */
struct text_handle {
	size_t len;
	bool valid;
	char text[TEXT_MAX];
};

static bool writes_in_flight(const struct printer *p)
{
	return !TAILQ_EMPTY(&p->writes) || p->bg_write != NULL;
}

static void fill_control(struct drv_xfer *x, struct printer *p, uint8_t request_type, uint8_t request,
			 uint16_t value, uint16_t index, uint16_t length)
{
	libusb_fill_control_setup(x->t->buffer, request_type, request, value, index, length);
	libusb_fill_control_transfer(x->t, p->fn->dev->usb, x->t->buffer, NULL, NULL, 0);
}

/* ---- Status poll while writing ---- */

static void poll_status_done(struct drv_xfer *x);

static void stop_writes(struct printer *p)
{
	struct drv_req *req;

	p->stopping = true;
	TAILQ_FOREACH(req, &p->writes, wait)
	if (req->xfer != NULL)
		drv_xfer_cancel(req->xfer);
	if (p->bg_write != NULL)
		drv_xfer_cancel(p->bg_write);
}

static void poll_fire(struct drv_timer *t)
{
	struct printer *p = t->arg;
	struct drv_xfer *x;
	int r;

	if (!writes_in_flight(p) || p->poll_xfer != NULL || p->stopping)
		return;
	if ((x = drv_xfer_new(SETUP_LEN + 1, poll_status_done, p)) == NULL) {
		drv_timer_arm(&p->poll, STATUS_POLL_MS);
		return;
	}
	fill_control(x, p, PRINTER_RT_IN, PRINTER_GET_PORT_STATUS, 0, p->fn->ifnum, 1);
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_log(LOG_WARNING, "printer: GET_PORT_STATUS: %s", strerror(-r));
		drv_xfer_free(x);
		drv_timer_arm(&p->poll, STATUS_POLL_MS);
		return;
	}
	p->poll_xfer = x;
}

static void poll_status_done(struct drv_xfer *x)
{
	struct printer *p = x->arg;
	int r = drv_xfer_errno(x->t->status);

	p->poll_xfer = NULL;
	if (r == 0 && x->t->actual_length >= 1) {
		uint8_t status = libusb_control_transfer_get_data(x->t)[0];
		int state = (int)printer_state_of(status);
		if (state != p->last_state)
			drv_log(state == PRINTER_OK ? LOG_INFO : LOG_WARNING,
				"printer: port status %02x: %s while writing", status,
				printer_state_name((enum printer_state)state));
		p->last_state = state;
		/* The paper-empty line alone decides: a printer may also deselect itself. */
		if ((status & PRINTER_PAPER_EMPTY) && writes_in_flight(p))
			stop_writes(p);
	} else if (r != -EINTR && p->last_state != POLL_FAILED) {
		drv_log(LOG_WARNING, "printer: GET_PORT_STATUS failed (%s); paper out goes unnoticed",
			r < 0 ? strerror(-r) : "no data");
		p->last_state = POLL_FAILED;
	}
	drv_xfer_free(x);
	if (writes_in_flight(p) && !p->stopping)
		drv_timer_arm(&p->poll, STATUS_POLL_MS);
}

/* A write transfer started: make sure the status poll runs. */
static void poll_start(struct printer *p)
{
	if (!p->poll.armed && p->poll_xfer == NULL)
		drv_timer_arm(&p->poll, STATUS_POLL_MS);
}

/* A write transfer ended: when it was the last, the poll and a paper-out stop are over. */
static void write_ended(struct printer *p)
{
	if (writes_in_flight(p))
		return;
	p->stopping = false;
	p->last_state = POLL_UNKNOWN;
	drv_timer_disarm(&p->poll);
	drv_file_changed(p->data);
}

/* ---- data: writing ---- */

static void write_done(struct drv_xfer *x)
{
	struct printer *p = x->arg;
	struct drv_req *req = x->req;
	int r = drv_xfer_errno(x->t->status);
	int actual = x->t->actual_length;

	req->xfer = NULL;
	TAILQ_REMOVE(&p->writes, req, wait);
	if (r == 0)
		r = actual;
	else if (r == -EINTR && p->stopping && !req->cancelled) {
		/* Paper out: what the printer took is written; nothing taken is ENOSPC. */
		if (actual > 0) {
			p->write_error = -ENOSPC;
			r = actual;
		} else {
			r = -ENOSPC;
		}
	} else if (actual > 0) {
		/* Like write(2) cut short: the bytes the device took count; the error is lost with the rest.
		 */
		r = actual;
	}
	drv_xfer_free(x);
	drv_reply(req, r, NULL, 0);
	write_ended(p);
}

static void bg_write_done(struct drv_xfer *x)
{
	struct printer *p = x->arg;
	int r = drv_xfer_errno(x->t->status);

	p->bg_write = NULL;
	if (r == -EINTR && p->stopping)
		r = -ENOSPC;
	if (r < 0 && p->write_error == 0) {
		drv_log(LOG_WARNING, "printer: non-blocking write: %d of %d bytes taken: %s",
			x->t->actual_length, x->t->length, strerror(-r));
		p->write_error = r;
	}
	drv_xfer_free(x);
	write_ended(p);
}

static void data_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct printer *p = req->h->file->priv;
	bool nonblock = req->flags & PROTO_F_NONBLOCK;
	struct drv_xfer *x;
	int r;

	if (nonblock && writes_in_flight(p))
		return drv_reply(req, -EAGAIN, NULL, 0);
	if (p->write_error != 0) {
		r = p->write_error;
		p->write_error = 0;
		return drv_reply(req, r, NULL, 0);
	}
	/* The printer is out of paper and the writes in flight are being stopped: so is this one. */
	if (p->stopping)
		return drv_reply(req, -ENOSPC, NULL, 0);
	if (len == 0)
		return drv_reply(req, 0, NULL, 0);
	if ((x = drv_xfer_new(len, nonblock ? bg_write_done : write_done, p)) == NULL)
		return drv_reply(req, -ENOMEM, NULL, 0);
	memcpy(x->t->buffer, data, len);
	libusb_fill_bulk_transfer(x->t, p->fn->dev->usb, p->ep_out, x->t->buffer, (int)len, NULL, NULL, 0);
	x->req = nonblock ? NULL : req;
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return drv_reply(req, r, NULL, 0);
	}
	poll_start(p);
	if (nonblock) {
		p->bg_write = x;
		return drv_reply(req, (int32_t)len, NULL, 0);
	}
	req->xfer = x;
	TAILQ_INSERT_TAIL(&p->writes, req, wait);
}

/* ---- data: the back channel ---- */

static void in_pump(struct printer *p);

static size_t in_buffered(const struct printer *p)
{
	return p->len - p->off;
}

static void in_reply_buffered(struct printer *p, struct drv_req *req)
{
	size_t n = in_buffered(p);

	if (n > req->size)
		n = req->size;
	drv_reply(req, (int32_t)n, p->buf + p->off, n);
	p->off += n;
}

static void in_done(struct drv_xfer *x)
{
	struct printer *p = x->arg;
	struct libusb_transfer *t = x->t;
	struct drv_req *owner = p->in_owner;
	int r = drv_xfer_errno(t->status);

	p->in_xfer = NULL;
	p->in_owner = NULL;
	if (owner != NULL)
		owner->xfer = NULL;
	/* Bytes that arrived count even when the transfer was cancelled or failed. */
	if (t->actual_length > 0) {
		free(p->buf);
		p->buf = t->buffer;
		p->off = 0;
		p->len = (size_t)t->actual_length;
		t->buffer = NULL;
	}
	drv_xfer_free(x);
	if (in_buffered(p) == 0 && r == -EINTR && owner != NULL && owner->cancelled) {
		TAILQ_REMOVE(&p->readers, owner, wait);
		drv_reply(owner, -EINTR, NULL, 0);
	} else if (in_buffered(p) == 0 && r < 0 && r != -EINTR) {
		struct drv_req *req = TAILQ_FIRST(&p->readers);
		if (req != NULL) {
			TAILQ_REMOVE(&p->readers, req, wait);
			drv_reply(req, r, NULL, 0);
		} else {
			p->read_error = r;
		}
	}
	/* A zero-length packet carries nothing: a blocking read waits on for a byte. */
	in_pump(p);
	drv_file_changed(p->data);
}

static int in_submit(struct printer *p, struct drv_req *owner)
{
	size_t len = BACKCHANNEL_XFER - BACKCHANNEL_XFER % p->in_packet;
	struct drv_xfer *x;
	int r;

	if ((x = drv_xfer_new(len, in_done, p)) == NULL)
		return -ENOMEM;
	libusb_fill_bulk_transfer(x->t, p->fn->dev->usb, p->ep_in, x->t->buffer, (int)len, NULL, NULL, 0);
	x->req = owner;
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return r;
	}
	p->in_xfer = x;
	p->in_owner = owner;
	if (owner != NULL)
		owner->xfer = x;
	return 0;
}

/* Serves waiting reads from the buffer, then starts the transfer for the oldest one left. */
static void in_pump(struct printer *p)
{
	struct drv_req *req;

	while ((req = TAILQ_FIRST(&p->readers)) != NULL) {
		if (in_buffered(p) > 0) {
			TAILQ_REMOVE(&p->readers, req, wait);
			in_reply_buffered(p, req);
			continue;
		}
		if (p->in_xfer != NULL)
			return;
		int r = in_submit(p, req);
		if (r == 0)
			return;
		TAILQ_REMOVE(&p->readers, req, wait);
		drv_reply(req, r, NULL, 0);
	}
}

static void in_cancel_waiter(struct drv_req *req)
{
	struct printer *p = req->h->file->priv;

	TAILQ_REMOVE(&p->readers, req, wait);
	drv_reply(req, -EINTR, NULL, 0);
}

static void in_start_readahead(struct printer *p)
{
	int r;

	if (p->in_xfer != NULL || in_buffered(p) > 0 || p->read_error != 0)
		return;
	if ((r = in_submit(p, NULL)) < 0)
		p->read_error = r;
}

static void data_read(struct drv_req *req)
{
	struct printer *p = req->h->file->priv;

	if (p->ep_in == 0)
		return drv_reply(req, -EINVAL, NULL, 0);
	if (TAILQ_EMPTY(&p->readers) && in_buffered(p) > 0)
		return in_reply_buffered(p, req);
	if (TAILQ_EMPTY(&p->readers) && p->read_error != 0) {
		int r = p->read_error;
		p->read_error = 0;
		return drv_reply(req, r, NULL, 0);
	}
	if (req->size == 0)
		return drv_reply(req, 0, NULL, 0);
	if (req->flags & PROTO_F_NONBLOCK) {
		in_start_readahead(p);
		return drv_reply(req, -EAGAIN, NULL, 0);
	}
	req->cancel = in_cancel_waiter;
	TAILQ_INSERT_TAIL(&p->readers, req, wait);
	in_pump(p);
}

static unsigned data_poll(struct drv_handle *h)
{
	struct printer *p = h->file->priv;
	unsigned revents = writes_in_flight(p) ? 0 : POLLOUT;

	if (p->ep_in != 0 && (h->flags & O_ACCMODE) != O_WRONLY) {
		in_start_readahead(p);
		if (in_buffered(p) > 0 || p->read_error != 0)
			revents |= POLLIN;
	}
	return revents;
}

static void data_release(struct drv_handle *h)
{
	struct printer *p = h->file->priv;

	/* The last handle is gone: stop the read-ahead.  Writes already answered go on. */
	if (h->file->nopen == 1 && p->in_xfer != NULL && p->in_owner == NULL)
		drv_xfer_cancel(p->in_xfer);
}

static const struct drv_file_ops data_ops = {
    .read = data_read,
    .write = data_write,
    .poll = data_poll,
    .release = data_release,
};

/* ---- device_id and status ---- */

static int text_open(struct drv_handle *h, uint32_t flags)
{
	(void)flags;
	h->priv = calloc(1, sizeof(struct text_handle));
	return h->priv != NULL ? 0 : -ENOMEM;
}

static void text_release(struct drv_handle *h)
{
	free(h->priv);
}

static void text_done(struct drv_xfer *x)
{
	struct drv_req *req = x->req;
	struct drv_file *f = req->h->file;
	struct text_handle *th = req->h->priv;
	int r = drv_xfer_errno(x->t->status);
	const uint8_t *data = libusb_control_transfer_get_data(x->t);
	size_t got = (size_t)x->t->actual_length;

	req->xfer = NULL;
	if (r == 0 && strcmp(f->name, "status") == 0) {
		if (got < 1) {
			drv_log(LOG_WARNING, "printer: GET_PORT_STATUS returned no byte");
			r = -EIO;
		} else {
			th->len = (size_t)snprintf(th->text, sizeof(th->text), "%s\n",
						   printer_state_name(printer_state_of(data[0])));
		}
	} else if (r == 0) {
		bool bad;
		th->len = printer_device_id_text(data, got, th->text, sizeof(th->text), &bad);
		if (bad)
			drv_log(LOG_WARNING,
				"printer: GET_DEVICE_ID length field %u does not fit the %zu bytes received; "
				"using what came",
				got >= 2 ? (unsigned)(data[0] << 8 | data[1]) : 0, got);
	}
	drv_xfer_free(x);
	if (r < 0)
		return drv_reply(req, r, NULL, 0);
	th->valid = true;
	drv_reply_slice(req, th->text, th->len);
}

static void text_read(struct drv_req *req)
{
	struct drv_file *f = req->h->file;
	struct printer *p = f->priv;
	struct text_handle *th = req->h->priv;
	bool is_status = strcmp(f->name, "status") == 0;
	uint16_t length = is_status ? 1 : PRINTER_DEVICE_ID_MAX;
	struct drv_xfer *x;
	int r;

	/* A read further on continues the text read at offset 0, so `cat` sees one answer. */
	if (th->valid && req->offset > 0)
		return drv_reply_slice(req, th->text, th->len);
	if ((x = drv_xfer_new(SETUP_LEN + length, text_done, p)) == NULL)
		return drv_reply(req, -ENOMEM, NULL, 0);
	if (is_status)
		fill_control(x, p, PRINTER_RT_IN, PRINTER_GET_PORT_STATUS, 0, p->fn->ifnum, length);
	else
		/* Configuration index 0 (the one we run), altsetting 0 (the one we claimed). */
		fill_control(x, p, PRINTER_RT_IN, PRINTER_GET_DEVICE_ID, 0, (uint16_t)(p->fn->ifnum << 8),
			     length);
	x->req = req;
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return drv_reply(req, r, NULL, 0);
	}
	req->xfer = x;
}

static const struct drv_file_ops text_ops = {
    .open = text_open,
    .read = text_read,
    .release = text_release,
};

/* ---- ctl ---- */

static int ctl_reset(struct printer *p)
{
	libusb_device_handle *usb = p->fn->dev->usb;
	/* A ctl runs to its end before the next message: the daemon's deadline still covers it. */
	int r = libusb_control_transfer(usb, PRINTER_RT_OUT, PRINTER_SOFT_RESET, 0, p->fn->ifnum, NULL, 0, 0);

	if (r == LIBUSB_ERROR_PIPE) {
		/* A printer built to the 1.0 spec's typo stalls the 1.1 request: try its form. */
		drv_log(LOG_INFO, "printer: SOFT_RESET stalled, trying the 1.0 form");
		r = libusb_control_transfer(usb, PRINTER_RT_OUT_OTHER, PRINTER_SOFT_RESET, 0, p->fn->ifnum,
					    NULL, 0, 0);
	}
	if (r < 0)
		return drv_usb_errno(r);
	/* A fresh start: an ENOSPC owed from before the reset is not owed any more. */
	p->write_error = 0;
	return 0;
}

static int printer_ctl(struct drv_function *fn, int argc, char **argv)
{
	if (argc == 1 && strcmp(argv[0], "reset") == 0)
		return ctl_reset(fn->priv);
	return -EINVAL;
}

/* ---- Probe ---- */

/* The host drops the function's files; its state goes here. */
static int probe_fail(struct drv_function *fn, int err)
{
	free(fn->priv);
	fn->priv = NULL;
	return err;
}

static int printer_probe(struct drv_function *fn)
{
	const struct drv_device *dev = fn->dev;
	struct usbdesc_iface d;
	struct printer *p;

	if (usbdesc_find_alt(dev->desc, dev->desc_len, fn->ifnum, 0, &d) < 0)
		return -ENOENT;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -ENOMEM;
	fn->priv = p;
	p->fn = fn;
	p->protocol = d.protocol;
	p->last_state = POLL_UNKNOWN;
	p->poll.fire = poll_fire;
	p->poll.arg = p;
	TAILQ_INIT(&p->writes);
	TAILQ_INIT(&p->readers);
	for (unsigned i = 0; i < d.num_eps; i++) {
		const struct usbdesc_ep *e = &d.eps[i];
		if ((e->attributes & 3) != USB_XFER_BULK)
			continue;
		if (!(e->address & USB_DIR_IN) && p->ep_out == 0)
			p->ep_out = e->address;
		else if ((e->address & USB_DIR_IN) && p->ep_in == 0) {
			p->ep_in = e->address;
			p->in_packet =
			    e->max_packet > 0 && e->max_packet <= BACKCHANNEL_XFER ? e->max_packet : 64;
		}
	}
	if (p->ep_out == 0) {
		drv_log(LOG_ERR, "printer: interface %u has no bulk OUT endpoint", fn->ifnum);
		return probe_fail(fn, -ENOENT);
	}
	/* Protocol 1 is unidirectional even if the interface lists an IN endpoint. */
	if (p->protocol == 1)
		p->ep_in = 0;
	else if (p->ep_in == 0)
		drv_log(LOG_WARNING, "printer: protocol %u without a bulk IN endpoint: no back channel",
			p->protocol);
	/* A print job or a back-channel read may take as long as the printer needs: no deadline. */
	p->data = drv_file_add(fn, "data", 0666, PROTO_KIND_STREAM | PROTO_FILE_UNTIMED, &data_ops, p);
	if (p->data == NULL || drv_file_add(fn, "device_id", 0444, PROTO_KIND_SMALL, &text_ops, p) == NULL ||
	    drv_file_add(fn, "status", 0444, PROTO_KIND_SMALL, &text_ops, p) == NULL)
		return probe_fail(fn, -ENOSPC);
	drv_log(LOG_INFO, "printer: interface %u protocol %u, OUT %02x, %s", fn->ifnum, p->protocol,
		p->ep_out, p->ep_in != 0 ? "bidirectional" : "unidirectional");
	return 0;
}

const struct driver_ops printer_driver = {
    .name = "printer",
    .probe = printer_probe,
    .ctl = printer_ctl,
};
