/*
 * The class driver `serial`: USB serial ports, CDC-ACM and the FTDI FT232
 * family, as files (man/plugfs-serial.7):
 *
 *   data    the byte stream both ways.  Reads return what has arrived, at
 *           least one byte (O_NONBLOCK: EAGAIN when nothing has); writes
 *           return once the device took every byte.
 *   line    `115200 8N1`: read the line settings, write new ones.
 *   status  modem lines and line-error counters, `key value` lines.
 *   ctl     (the function's) `dtr on|off`, `rts on|off`, `break MS`.
 *
 * The two chip kinds differ only in how they are told things, so each is a
 * small table of operations (struct serial_chip), as 9front's nusb/serial
 * does it.  CDC-ACM is two interfaces joined by a CDC Union descriptor: the
 * daemon passes the communication interface and this driver claims the
 * data interface (common/bind.h).
 *
 * Receiving: while a handle is open for reading, one bulk IN transfer is
 * kept in flight into a bounded buffer.  When the buffer cannot hold
 * another transfer, the driver stops reading the endpoint and the device
 * holds (or, if its own buffer overflows, loses and reports) the rest:
 * bytes are never dropped here.  With no reader open nothing is read.
 *
 * Control requests (line settings, modem lines, break) are synchronous:
 * they are short, and a device that never answers one stops the heartbeat,
 * so the daemon kills and respawns the driver (its deadline, not libusb's).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "driver.h"
#include "serial_line.h"

#define USB_DIR_IN 0x80
/* Bytes asked of the bulk IN endpoint per transfer, and the receive buffer. */
#define RX_XFER_LEN 4096
#define RX_BUF_LEN  (64 * 1024)
/* The notification transfer: SERIAL_STATE is 10 bytes. */
#define NOTIFY_XFER_LEN 64
/* `break MS`: at most a minute. */
#define BREAK_MAX_MS 60000

/* CDC PSTN 1.2 section 6.3: class requests of the communication interface. */
enum cdc_request {
	CDC_SET_LINE_CODING = 0x20,
	CDC_GET_LINE_CODING = 0x21,
	CDC_SET_CONTROL_LINE_STATE = 0x22,
	CDC_SEND_BREAK = 0x23,
};
#define CDC_NOTIFY_SERIAL_STATE 0x20
/* bmCapabilities of the ACM functional descriptor (PSTN 1.2 table 4). */
#define ACM_CAP_LINE  0x02
#define ACM_CAP_BREAK 0x04
/* SERIAL_STATE bits (PSTN 1.2 table 31). */
enum {
	SS_DCD = 0x01,
	SS_DSR = 0x02,
	SS_BREAK = 0x04,
	SS_RING = 0x08,
	SS_FRAMING = 0x10,
	SS_PARITY = 0x20,
	SS_OVERRUN = 0x40,
};

/* FTDI vendor requests, as Linux's ftdi_sio.h and FTDI's D2XX programmer's guide name them. */
enum ftdi_request {
	FTDI_SIO_RESET = 0x00,
	FTDI_SIO_SET_MODEM_CTRL = 0x01,
	FTDI_SIO_SET_FLOW_CTRL = 0x02,
	FTDI_SIO_SET_BAUD_RATE = 0x03,
	FTDI_SIO_SET_DATA = 0x04,
	FTDI_SIO_GET_MODEM_STATUS = 0x05,
	FTDI_SIO_SET_LATENCY_TIMER = 0x09,
};
#define FTDI_OUT 0x40
#define FTDI_IN	 0xc0
/* Every IN packet starts with two status bytes: modem status, then line status. */
#define FTDI_STATUS_LEN 2
enum { FTDI_CTS = 0x10, FTDI_DSR = 0x20, FTDI_RI = 0x40, FTDI_DCD = 0x80 };
enum { FTDI_OE = 0x02, FTDI_PE = 0x04, FTDI_FE = 0x08, FTDI_BI = 0x10 };
/* 16 ms, the chips' own default and ftdi_sio's. */
#define FTDI_LATENCY_MS 16

struct serial;

struct serial_chip {
	const char *name;
	/* Probe: endpoints, reset, first line settings.  0 or -errno. */
	int (*init)(struct serial *s);
	/* Sets `want`; s->line becomes what the device really uses.  0 or -errno. */
	int (*set_line)(struct serial *s, const struct serial_line *want);
	/* Reads the line settings back into s->line, if the chip can; 0 or -errno. */
	int (*get_line)(struct serial *s);
	int (*set_modem)(struct serial *s, bool dtr, bool rts);
	/* Starts a break; brk_end (if any) ends it after the timer. */
	int (*brk)(struct serial *s, unsigned ms);
	void (*brk_end)(struct serial *s);
	/* Refreshes the modem input lines, if the chip can be asked. */
	int (*get_status)(struct serial *s);
	/* Turns what a bulk IN transfer brought into data, in place; returns its length. */
	size_t (*rx)(struct serial *s, uint8_t *buf, size_t len);
};

/* A write waiting for its turn, or the one in flight (the head). */
struct tx_item {
	struct drv_req *req;
	struct drv_xfer *x;
	TAILQ_ENTRY(tx_item) link;
};

struct serial {
	struct drv_function *fn;
	const struct serial_chip *chip;
	libusb_device_handle *usb;
	struct drv_file *data;
	uint8_t ep_in, ep_out, ep_notify;
	uint16_t in_mps, notify_mps;

	/* CDC */
	uint8_t comm_iface, data_iface;
	uint8_t acm_caps;
	/* FTDI */
	uint16_t ftdi_port; /* the wIndex low byte: 0 on single-port chips, 1 + interface else */
	bool ftdi_hispeed;  /* H chip: 12 MHz baud reference */
	bool ftdi_multi;    /* divisor bits 16+ go in wIndex's high byte */
	uint8_t ftdi_lsr;   /* line status of the last packet, for edges */

	struct serial_line line;
	bool dtr, rts;
	bool cts, dsr, dcd, ri, cts_known;
	unsigned long breaks, framing, parity, overruns;
	struct drv_timer break_timer; /* armed while a break is on the line */

	/* Receiving: ring of RX_BUF_LEN bytes, buf[head..head+len). */
	uint8_t *rx;
	size_t rx_head, rx_len;
	int rx_error; /* of the last IN transfer, for the next read */
	unsigned readers;
	struct drv_xfer *in_xfer;
	bool rx_cancelling, rx_restart; /* in_xfer is being cancelled; a reader came since */
	struct drv_req_queue waiters;

	/* Sending: writes in order, the head in flight. */
	TAILQ_HEAD(, tx_item) tx;
	bool tx_busy;

	struct drv_xfer *notify_xfer;
};

static uint8_t scratch[PROTO_MAX_IO];

static int control(struct serial *s, uint8_t type, uint8_t request, uint16_t value, uint16_t index,
		   uint8_t *data, uint16_t len)
{
	int r = libusb_control_transfer(s->usb, type, request, value, index, data, len, 0);

	return r < 0 ? drv_usb_errno(r) : r;
}

/* ---- Receiving ---- */

static void rx_pump(struct serial *s);

static void rx_put(struct serial *s, const uint8_t *p, size_t n)
{
	/* rx_pump only starts a transfer that fits, so n <= space. */
	while (n > 0) {
		size_t tail = (s->rx_head + s->rx_len) % RX_BUF_LEN;
		size_t chunk = RX_BUF_LEN - tail < n ? RX_BUF_LEN - tail : n;
		memcpy(s->rx + tail, p, chunk);
		s->rx_len += chunk;
		p += chunk;
		n -= chunk;
	}
}

static size_t rx_get(struct serial *s, uint8_t *p, size_t n)
{
	size_t done = 0;

	if (n > s->rx_len)
		n = s->rx_len;
	while (done < n) {
		size_t chunk = RX_BUF_LEN - s->rx_head < n - done ? RX_BUF_LEN - s->rx_head : n - done;
		memcpy(p + done, s->rx + s->rx_head, chunk);
		s->rx_head = (s->rx_head + chunk) % RX_BUF_LEN;
		s->rx_len -= chunk;
		done += chunk;
	}
	if (s->rx_len == 0)
		s->rx_head = 0;
	return done;
}

static void rx_reply(struct serial *s, struct drv_req *req)
{
	size_t n = rx_get(s, scratch, req->size < sizeof(scratch) ? req->size : sizeof(scratch));

	drv_reply(req, (int32_t)n, scratch, n);
}

/* Serves waiting reads from the buffer (or the error), oldest first. */
static void rx_serve(struct serial *s)
{
	struct drv_req *req;

	while ((req = TAILQ_FIRST(&s->waiters)) != NULL && (s->rx_len > 0 || s->rx_error != 0)) {
		TAILQ_REMOVE(&s->waiters, req, wait);
		if (s->rx_len > 0) {
			rx_reply(s, req);
		} else {
			drv_reply(req, s->rx_error, NULL, 0);
			s->rx_error = 0;
		}
	}
}

static void rx_done(struct drv_xfer *x)
{
	struct serial *s = x->arg;
	struct libusb_transfer *t = x->t;
	int r = drv_xfer_errno(t->status);

	s->in_xfer = NULL;
	s->rx_cancelling = false;
	/* Bytes that arrived count even when the transfer was cancelled or failed. */
	if (t->actual_length > 0) {
		size_t n = s->chip->rx != NULL ? s->chip->rx(s, t->buffer, (size_t)t->actual_length)
					       : (size_t)t->actual_length;
		rx_put(s, t->buffer, n);
	}
	drv_xfer_free(x);
	if (r < 0 && r != -EINTR) {
		drv_log(LOG_WARNING, "serial: bulk IN %02x: %s", s->ep_in, strerror(-r));
		s->rx_error = r;
	}
	rx_serve(s);
	/*
	 * Cancelled: the last reader left, or the driver is exiting.  Read on
	 * only for a reader that came since or a read that waits.
	 */
	if (r != -EINTR || s->rx_restart || !TAILQ_EMPTY(&s->waiters)) {
		s->rx_restart = false;
		rx_pump(s);
	}
	drv_file_changed(s->data);
}

/*
 * Keeps one IN transfer in flight while someone reads and the buffer has
 * room for a whole one; an error waits for a read to report it first.
 */
static void rx_pump(struct serial *s)
{
	struct drv_xfer *x;
	int r;

	if (s->readers == 0 || s->in_xfer != NULL || s->rx_error != 0 || RX_BUF_LEN - s->rx_len < RX_XFER_LEN)
		return;
	if ((x = drv_xfer_new(RX_XFER_LEN, rx_done, s)) == NULL) {
		s->rx_error = -ENOMEM;
	} else {
		libusb_fill_bulk_transfer(x->t, s->usb, s->ep_in, x->t->buffer, RX_XFER_LEN, NULL, NULL, 0);
		if ((r = drv_xfer_submit(x)) < 0) {
			drv_xfer_free(x);
			s->rx_error = r;
		} else {
			s->in_xfer = x;
		}
	}
	if (s->rx_error != 0) {
		rx_serve(s);
		drv_file_changed(s->data);
	}
}

static void rx_cancel_waiter(struct drv_req *req)
{
	struct serial *s = req->h->file->priv;

	TAILQ_REMOVE(&s->waiters, req, wait);
	drv_reply(req, -EINTR, NULL, 0);
}

static void data_read(struct drv_req *req)
{
	struct serial *s = req->h->file->priv;

	/* Earlier blocking reads come first; they imply an empty buffer. */
	if (TAILQ_EMPTY(&s->waiters) && s->rx_len > 0) {
		rx_reply(s, req);
		return rx_pump(s);
	}
	if (TAILQ_EMPTY(&s->waiters) && s->rx_error != 0) {
		int r = s->rx_error;
		s->rx_error = 0;
		drv_reply(req, r, NULL, 0);
		return rx_pump(s);
	}
	if (req->size == 0)
		return drv_reply(req, 0, NULL, 0);
	if (req->flags & PROTO_F_NONBLOCK) {
		drv_reply(req, -EAGAIN, NULL, 0);
		return rx_pump(s);
	}
	req->cancel = rx_cancel_waiter;
	TAILQ_INSERT_TAIL(&s->waiters, req, wait);
	rx_pump(s);
}

/* ---- Sending ---- */

static void tx_pump(struct serial *s);

static void tx_done(struct drv_xfer *x)
{
	struct serial *s = x->arg;
	struct tx_item *it = TAILQ_FIRST(&s->tx);
	int r = drv_xfer_errno(x->t->status);

	/* Like write(2) cut short by a signal: report what the device took, if anything. */
	if (r == 0 || (r == -EINTR && x->t->actual_length > 0))
		r = x->t->actual_length;
	else if (r != -EINTR)
		drv_log(LOG_WARNING, "serial: bulk OUT %02x: %s", s->ep_out, strerror(-r));
	TAILQ_REMOVE(&s->tx, it, link);
	s->tx_busy = false;
	it->req->xfer = NULL;
	drv_reply(it->req, r, NULL, 0);
	drv_xfer_free(x);
	free(it);
	tx_pump(s);
	drv_file_changed(s->data);
}

static void tx_pump(struct serial *s)
{
	struct tx_item *it;

	while (!s->tx_busy && (it = TAILQ_FIRST(&s->tx)) != NULL) {
		int r = drv_xfer_submit(it->x);
		if (r == 0) {
			it->req->cancel = NULL;
			it->req->xfer = it->x;
			s->tx_busy = true;
			return;
		}
		TAILQ_REMOVE(&s->tx, it, link);
		drv_reply(it->req, r, NULL, 0);
		drv_xfer_free(it->x);
		free(it);
	}
}

/* CANCEL of a write still waiting for its turn: nothing of it went out. */
static void tx_cancel_queued(struct drv_req *req)
{
	struct serial *s = req->h->file->priv;
	struct tx_item *it;

	TAILQ_FOREACH(it, &s->tx, link)
	if (it->req == req)
		break;
	if (it == NULL)
		return;
	TAILQ_REMOVE(&s->tx, it, link);
	drv_xfer_free(it->x);
	free(it);
	drv_reply(req, -EINTR, NULL, 0);
}

static void data_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct serial *s = req->h->file->priv;
	struct tx_item *it;

	if (len == 0)
		return drv_reply(req, 0, NULL, 0);
	if ((req->flags & PROTO_F_NONBLOCK) && !TAILQ_EMPTY(&s->tx))
		return drv_reply(req, -EAGAIN, NULL, 0);
	if ((it = calloc(1, sizeof(*it))) == NULL || (it->x = drv_xfer_new(len, tx_done, s)) == NULL) {
		free(it);
		return drv_reply(req, -ENOMEM, NULL, 0);
	}
	memcpy(it->x->t->buffer, data, len);
	/*
	 * No zero-length packet after a write that ends on a packet boundary:
	 * CDC data is a byte stream, not transfers (Linux's cdc-acm sends one
	 * only for devices with a quirk), and FTDI chips need none either.
	 */
	libusb_fill_bulk_transfer(it->x->t, s->usb, s->ep_out, it->x->t->buffer, (int)len, NULL, NULL, 0);
	it->x->req = req;
	it->req = req;
	req->cancel = tx_cancel_queued;
	TAILQ_INSERT_TAIL(&s->tx, it, link);
	tx_pump(s);
}

static unsigned data_poll(struct drv_handle *h)
{
	struct serial *s = h->file->priv;
	unsigned ev = 0;

	if (s->rx_len > 0 || s->rx_error != 0)
		ev |= POLLIN;
	if (s->rx_error != 0)
		ev |= POLLERR;
	/* One write at a time goes out; the next may start when none waits. */
	if (TAILQ_EMPTY(&s->tx))
		ev |= POLLOUT;
	return ev;
}

static bool reads(uint32_t flags)
{
	return (flags & O_ACCMODE) == O_RDONLY || (flags & O_ACCMODE) == O_RDWR;
}

static int data_open(struct drv_handle *h, uint32_t flags)
{
	struct serial *s = h->file->priv;

	if (reads(flags)) {
		s->readers++;
		s->rx_restart = s->rx_cancelling;
		rx_pump(s);
	}
	return 0;
}

static void data_release(struct drv_handle *h)
{
	struct serial *s = h->file->priv;

	if (!reads(h->flags))
		return;
	/* The last reader is gone: stop reading.  What already arrived stays for the next one. */
	if (--s->readers == 0 && s->in_xfer != NULL) {
		s->rx_cancelling = true;
		s->rx_restart = false;
		drv_xfer_cancel(s->in_xfer);
	}
}

static const struct drv_file_ops data_ops = {
    .open = data_open,
    .read = data_read,
    .write = data_write,
    .poll = data_poll,
    .release = data_release,
};

/* ---- line and status ---- */

static void line_read(struct drv_req *req)
{
	struct serial *s = req->h->file->priv;
	char text[SERIAL_LINE_TEXT_MAX + 2];

	/* The device's own idea, if it can tell; else what we set. */
	if (req->offset == 0 && s->chip->get_line != NULL)
		s->chip->get_line(s);
	size_t n = serial_line_format(&s->line, text, sizeof(text) - 1);
	text[n++] = '\n';
	drv_reply_slice(req, text, n);
}

static void line_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct serial *s = req->h->file->priv;
	struct serial_line want;
	int r;

	if (req->offset != 0 || serial_line_parse((const char *)data, len, &want) < 0)
		return drv_reply(req, -EINVAL, NULL, 0);
	r = s->chip->set_line(s, &want);
	drv_reply(req, r < 0 ? r : (int32_t)len, NULL, 0);
}

static unsigned always_ready(struct drv_handle *h)
{
	(void)h;
	return POLLIN | POLLOUT;
}

static const struct drv_file_ops line_ops = {
    .read = line_read,
    .write = line_write,
    .poll = always_ready,
};

static const char *onoff(bool b)
{
	return b ? "on" : "off";
}

static void status_read(struct drv_req *req)
{
	struct serial *s = req->h->file->priv;
	char text[512];

	if (req->offset == 0 && s->chip->get_status != NULL)
		s->chip->get_status(s);
	int n =
	    snprintf(text, sizeof(text),
		     "dtr %s\nrts %s\ncts %s\ndsr %s\ndcd %s\nri %s\nbreaks %lu\nframing %lu\nparity %lu\n"
		     "overruns %lu\n",
		     onoff(s->dtr), onoff(s->rts), s->cts_known ? onoff(s->cts) : "unknown", onoff(s->dsr),
		     onoff(s->dcd), onoff(s->ri), s->breaks, s->framing, s->parity, s->overruns);
	drv_reply_slice(req, text, n > 0 && (size_t)n < sizeof(text) ? (size_t)n : 0);
}

static const struct drv_file_ops status_ops = {
    .read = status_read,
    .poll = always_ready,
};

/* ---- ctl ---- */

static int parse_onoff(int argc, char **argv, bool *out)
{
	if (argc != 2)
		return -EINVAL;
	if (strcmp(argv[1], "on") == 0)
		*out = true;
	else if (strcmp(argv[1], "off") == 0)
		*out = false;
	else
		return -EINVAL;
	return 0;
}

static int ctl_modem(struct serial *s, bool dtr, bool rts)
{
	int r = s->chip->set_modem(s, dtr, rts);

	if (r == 0) {
		s->dtr = dtr;
		s->rts = rts;
	}
	return r;
}

static void break_over(struct drv_timer *t)
{
	struct serial *s = t->arg;

	if (s->chip->brk_end != NULL)
		s->chip->brk_end(s);
}

static int ctl_break(struct serial *s, int argc, char **argv)
{
	char *end;
	unsigned long ms;
	int r;

	if (argc != 2 || argv[1][0] < '1' || argv[1][0] > '9')
		return -EINVAL;
	ms = strtoul(argv[1], &end, 10);
	if (*end != '\0' || ms > BREAK_MAX_MS)
		return -EINVAL;
	if (s->break_timer.armed)
		return -EBUSY;
	if ((r = s->chip->brk(s, (unsigned)ms)) < 0)
		return r;
	s->break_timer.fire = break_over;
	s->break_timer.arg = s;
	drv_timer_arm(&s->break_timer, (unsigned)ms);
	return 0;
}

static int serial_ctl(struct drv_function *fn, int argc, char **argv)
{
	struct serial *s = fn->priv;
	bool on;

	if (strcmp(argv[0], "dtr") == 0)
		return parse_onoff(argc, argv, &on) < 0 ? -EINVAL : ctl_modem(s, on, s->rts);
	if (strcmp(argv[0], "rts") == 0)
		return parse_onoff(argc, argv, &on) < 0 ? -EINVAL : ctl_modem(s, s->dtr, on);
	if (strcmp(argv[0], "break") == 0)
		return ctl_break(s, argc, argv);
	return -EINVAL;
}

/* ---- CDC-ACM ---- */

static void notify_done(struct drv_xfer *x);

static int notify_submit(struct serial *s)
{
	struct drv_xfer *x = drv_xfer_new(NOTIFY_XFER_LEN, notify_done, s);
	int r;

	if (x == NULL)
		return -ENOMEM;
	libusb_fill_interrupt_transfer(x->t, s->usb, s->ep_notify, x->t->buffer, NOTIFY_XFER_LEN, NULL, NULL,
				       0);
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return r;
	}
	s->notify_xfer = x;
	return 0;
}

static void serial_state(struct serial *s, uint16_t bits)
{
	s->dcd = bits & SS_DCD;
	s->dsr = bits & SS_DSR;
	s->ri = bits & SS_RING;
	/* The rest are irregular events, one per notification. */
	if (bits & SS_BREAK)
		s->breaks++;
	if (bits & SS_FRAMING)
		s->framing++;
	if (bits & SS_PARITY)
		s->parity++;
	if (bits & SS_OVERRUN)
		s->overruns++;
	if (bits & (SS_BREAK | SS_FRAMING | SS_PARITY | SS_OVERRUN))
		drv_log(LOG_WARNING, "serial: line%s%s%s%s", bits & SS_BREAK ? " break" : "",
			bits & SS_FRAMING ? " framing-error" : "", bits & SS_PARITY ? " parity-error" : "",
			bits & SS_OVERRUN ? " overrun (bytes lost in the device)" : "");
}

/* The interrupt endpoint: SERIAL_STATE notifications.  Never holds anything up. */
static void notify_done(struct drv_xfer *x)
{
	struct serial *s = x->arg;
	struct libusb_transfer *t = x->t;
	const uint8_t *p = t->buffer;
	int r = drv_xfer_errno(t->status);

	s->notify_xfer = NULL;
	if (r == 0 && t->actual_length >= 8 && p[0] == 0xa1 && p[1] == CDC_NOTIFY_SERIAL_STATE) {
		if (get_le16(p + 6) >= 2 && t->actual_length >= 10)
			serial_state(s, get_le16(p + 8));
		else
			drv_log(LOG_WARNING, "serial: short SERIAL_STATE notification (%d bytes)",
				t->actual_length);
	} else if (r == 0 && t->actual_length >= 2 && drv_verbose) {
		drv_log(LOG_DEBUG, "serial: notification %02x/%02x ignored", p[0], p[1]);
	}
	drv_xfer_free(x);
	/* Cancelled means the driver is exiting; another error would repeat at once. */
	if (r < 0) {
		if (r != -EINTR)
			drv_log(LOG_WARNING, "serial: notification endpoint %02x: %s; not read any more",
				s->ep_notify, strerror(-r));
		return;
	}
	if ((r = notify_submit(s)) < 0)
		drv_log(LOG_WARNING, "serial: notification endpoint: %s", strerror(-r));
}

static int cdc_set_line(struct serial *s, const struct serial_line *want)
{
	uint8_t lc[CDC_LINE_CODING_LEN];
	int r;

	serial_line_to_cdc(want, lc);
	r = control(s, 0x21, CDC_SET_LINE_CODING, 0, s->comm_iface, lc, sizeof(lc));
	/* A device that stalls a line coding does not support it. */
	if (r == -EPIPE)
		return -EINVAL;
	if (r < 0)
		return r;
	s->line = *want;
	return 0;
}

static int cdc_get_line(struct serial *s)
{
	uint8_t lc[CDC_LINE_CODING_LEN];
	struct serial_line l;
	int r = control(s, 0xa1, CDC_GET_LINE_CODING, 0, s->comm_iface, lc, sizeof(lc));

	if (r < 0)
		return r;
	if (r != CDC_LINE_CODING_LEN || serial_line_from_cdc(lc, &l) < 0)
		return -EPROTO;
	s->line = l;
	return 0;
}

static int cdc_set_modem(struct serial *s, bool dtr, bool rts)
{
	int r =
	    control(s, 0x21, CDC_SET_CONTROL_LINE_STATE, (uint16_t)(dtr | rts << 1), s->comm_iface, NULL, 0);

	return r < 0 ? r : 0;
}

static int cdc_brk(struct serial *s, unsigned ms)
{
	if (!(s->acm_caps & ACM_CAP_BREAK))
		return -EOPNOTSUPP;
	/* The device times the break itself (wValue = milliseconds). */
	int r = control(s, 0x21, CDC_SEND_BREAK, (uint16_t)ms, s->comm_iface, NULL, 0);
	return r < 0 ? r : 0;
}

/* bmCapabilities of the ACM functional descriptor among the interface's class-specific ones. */
static uint8_t acm_capabilities(const struct drv_device *dev, const struct usbdesc_iface *ifd)
{
	size_t off = ifd->raw_off, end = ifd->raw_off + ifd->raw_len;

	while (off + 2 <= end && dev->desc[off] >= 2 && dev->desc[off] <= end - off) {
		const uint8_t *d = dev->desc + off;
		if (d[1] == USB_DT_CS_INTERFACE && d[0] >= 4 && d[2] == USB_CDC_SUBTYPE_ACM)
			return d[3];
		off += d[0];
	}
	return 0;
}

static const struct usbdesc_iface *iface_of(const struct drv_device *dev, uint8_t number)
{
	for (unsigned i = 0; i < dev->info.num_ifaces; i++)
		if (dev->info.ifaces[i].number == number)
			return &dev->info.ifaces[i];
	return NULL;
}

/* The first endpoint of `ifd` of type `type` in direction `in`: 0 or -ENOENT. */
static int find_ep(const struct usbdesc_iface *ifd, uint8_t type, bool in, uint8_t *addr, uint16_t *mps)
{
	for (unsigned i = 0; i < ifd->num_eps; i++)
		if ((ifd->eps[i].attributes & 3) == type && !!(ifd->eps[i].address & USB_DIR_IN) == in) {
			*addr = ifd->eps[i].address;
			if (mps != NULL)
				*mps = ifd->eps[i].max_packet;
			return 0;
		}
	return -ENOENT;
}

static int cdc_init(struct serial *s)
{
	const struct drv_device *dev = s->fn->dev;
	const struct usbdesc_iface *comm = iface_of(dev, s->fn->ifnum), *data = NULL;
	int r;

	s->comm_iface = s->fn->ifnum;
	/* The first slave of the union that is a usable data interface carries the stream. */
	for (unsigned i = 0; comm != NULL && i < comm->num_slaves && data == NULL; i++) {
		const struct usbdesc_iface *d = iface_of(dev, comm->slaves[i]);
		if (d != NULL && find_ep(d, USB_XFER_BULK, true, &s->ep_in, &s->in_mps) == 0 &&
		    find_ep(d, USB_XFER_BULK, false, &s->ep_out, NULL) == 0)
			data = d;
	}
	if (data == NULL) {
		drv_log(LOG_ERR, "serial: interface %u has no CDC union with a bulk data interface",
			s->fn->ifnum);
		return -ENODEV;
	}
	s->data_iface = data->number;
	if ((r = drv_claim_interface(s->fn, s->data_iface)) < 0)
		return r;
	s->acm_caps = acm_capabilities(dev, comm);
	if (find_ep(comm, USB_XFER_INTR, true, &s->ep_notify, &s->notify_mps) < 0)
		drv_log(LOG_NOTICE, "serial: interface %u has no notification endpoint", s->comm_iface);

	r = cdc_get_line(s);
	if (r < 0) {
		/* Devices that do not keep one (or the Arduino's rate 0 before any SET): the tty default. */
		drv_log(LOG_NOTICE, "serial: GET_LINE_CODING: %s; setting 9600 8N1",
			r == -EPROTO ? "nothing usable" : strerror(-r));
		struct serial_line def = {9600, 8, 'N', 2};
		s->line = def;
		if ((r = cdc_set_line(s, &def)) < 0)
			drv_log(LOG_WARNING, "serial: SET_LINE_CODING 9600 8N1: %s", strerror(-r));
	}
	/* DTR and RTS up, as a tty open does: many boards only talk to a host that raised DTR. */
	if ((r = cdc_set_modem(s, true, true)) < 0)
		drv_log(LOG_WARNING, "serial: SET_CONTROL_LINE_STATE: %s", strerror(-r));
	else
		s->dtr = s->rts = true;
	if (s->ep_notify != 0 && (r = notify_submit(s)) < 0)
		drv_log(LOG_WARNING, "serial: notification endpoint: %s", strerror(-r));
	return 0;
}

static const struct serial_chip cdc_chip = {
    .name = "cdc-acm",
    .init = cdc_init,
    .set_line = cdc_set_line,
    .get_line = cdc_get_line,
    .set_modem = cdc_set_modem,
    .brk = cdc_brk,
};

/* ---- FTDI ---- */

static int ftdi_out(struct serial *s, uint8_t request, uint16_t value, uint16_t index_high)
{
	int r = control(s, FTDI_OUT, request, value, (uint16_t)(index_high | s->ftdi_port), NULL, 0);

	return r < 0 ? r : 0;
}

static int ftdi_set_data(struct serial *s, const struct serial_line *l, bool brk)
{
	uint16_t value;

	if (ftdi_data_value(l, brk, &value) < 0)
		return -EINVAL;
	return ftdi_out(s, FTDI_SIO_SET_DATA, value, 0);
}

static int ftdi_set_line(struct serial *s, const struct serial_line *want)
{
	uint32_t div, actual;
	uint16_t value;
	int r;

	if (ftdi_baud_divisor(want->rate, s->ftdi_hispeed, &div, &actual) < 0 ||
	    ftdi_data_value(want, false, &value) < 0)
		return -EINVAL;
	/* Divisor bits 16-17 go in wIndex: all of it on single-port chips, its high byte else. */
	uint16_t high = s->ftdi_multi ? (uint16_t)((div >> 8) & 0xff00) : (uint16_t)(div >> 16);
	if ((r = ftdi_out(s, FTDI_SIO_SET_BAUD_RATE, (uint16_t)div, high)) < 0)
		return r;
	if ((r = ftdi_set_data(s, want, false)) < 0)
		return r;
	s->line = *want;
	s->line.rate = actual;
	return 0;
}

static int ftdi_set_modem(struct serial *s, bool dtr, bool rts)
{
	/* Bits 8 and 9 say which of DTR (bit 0) and RTS (bit 1) to change: both. */
	return ftdi_out(s, FTDI_SIO_SET_MODEM_CTRL, (uint16_t)(0x0300 | dtr | rts << 1), 0);
}

static int ftdi_brk(struct serial *s, unsigned ms)
{
	(void)ms;
	return ftdi_set_data(s, &s->line, true);
}

static void ftdi_brk_end(struct serial *s)
{
	int r = ftdi_set_data(s, &s->line, false);

	if (r < 0)
		drv_log(LOG_ERR, "serial: ending the break: %s", strerror(-r));
}

static void ftdi_modem_status(struct serial *s, uint8_t msr)
{
	s->cts = msr & FTDI_CTS;
	s->dsr = msr & FTDI_DSR;
	s->ri = msr & FTDI_RI;
	s->dcd = msr & FTDI_DCD;
	s->cts_known = true;
}

static int ftdi_get_status(struct serial *s)
{
	uint8_t st[2];
	int r = control(s, FTDI_IN, FTDI_SIO_GET_MODEM_STATUS, 0, s->ftdi_port, st, sizeof(st));

	if (r < 1)
		return r < 0 ? r : -EPROTO;
	ftdi_modem_status(s, st[0]);
	return 0;
}

/* A line status byte: count and log the errors that came on since the last packet. */
static void ftdi_line_status(struct serial *s, uint8_t lsr)
{
	uint8_t on = (uint8_t)(lsr & ~s->ftdi_lsr);

	s->ftdi_lsr = lsr;
	if (on & FTDI_BI)
		s->breaks++;
	if (on & FTDI_FE)
		s->framing++;
	if (on & FTDI_PE)
		s->parity++;
	if (on & FTDI_OE)
		s->overruns++;
	if (on & (FTDI_BI | FTDI_FE | FTDI_PE | FTDI_OE))
		drv_log(LOG_WARNING, "serial: line%s%s%s%s", on & FTDI_BI ? " break" : "",
			on & FTDI_FE ? " framing-error" : "", on & FTDI_PE ? " parity-error" : "",
			on & FTDI_OE ? " overrun (bytes lost in the chip)" : "");
}

/*
 * Every max-packet-sized packet of the transfer begins with the two status
 * bytes; a transfer holds several packets (only its last may be short), so
 * they are stripped per packet.  A packet shorter than its header is not
 * something an FTDI chip sends: it is dropped and logged.
 */
static size_t ftdi_rx(struct serial *s, uint8_t *buf, size_t len)
{
	size_t mps = s->in_mps >= 8 ? s->in_mps : 64, out = 0;

	for (size_t off = 0; off < len; off += mps) {
		size_t plen = len - off < mps ? len - off : mps;
		if (plen < FTDI_STATUS_LEN) {
			drv_log(LOG_WARNING, "serial: %zu-byte FTDI packet without its status header dropped",
				plen);
			break;
		}
		ftdi_modem_status(s, buf[off]);
		ftdi_line_status(s, buf[off + 1]);
		memmove(buf + out, buf + off + FTDI_STATUS_LEN, plen - FTDI_STATUS_LEN);
		out += plen - FTDI_STATUS_LEN;
	}
	return out;
}

static int ftdi_init(struct serial *s)
{
	const struct drv_device *dev = s->fn->dev;
	const struct usbdesc_iface *ifd = iface_of(dev, s->fn->ifnum);
	struct serial_line def = {9600, 8, 'N', 2};
	int r;

	if (ifd == NULL || find_ep(ifd, USB_XFER_BULK, true, &s->ep_in, &s->in_mps) < 0 ||
	    find_ep(ifd, USB_XFER_BULK, false, &s->ep_out, NULL) < 0)
		return -ENODEV;
	/*
	 * ftdi_sio's rules: multi-port chips number their ports from 1 in
	 * wIndex; those, the FT232H (bcdDevice 9.00) and the FT-X (10.00)
	 * take the divisor's high bits in wIndex's high byte; the H chips
	 * (FT2232H 7.00, FT4232H 8.00, FT232H 9.00) have the 12 MHz reference.
	 */
	s->ftdi_multi =
	    dev->info.num_ifaces > 1 || dev->info.bcd_device == 0x0900 || dev->info.bcd_device == 0x1000;
	s->ftdi_port = dev->info.num_ifaces > 1 ? (uint16_t)(s->fn->ifnum + 1) : 0;
	s->ftdi_hispeed = dev->info.bcd_device == 0x0700 || dev->info.bcd_device == 0x0800 ||
			  dev->info.bcd_device == 0x0900;
	if ((r = ftdi_out(s, FTDI_SIO_RESET, 0, 0)) < 0)
		return r;
	if ((r = ftdi_out(s, FTDI_SIO_SET_LATENCY_TIMER, FTDI_LATENCY_MS, 0)) < 0)
		drv_log(LOG_NOTICE, "serial: FTDI latency timer: %s", strerror(-r));
	if ((r = ftdi_out(s, FTDI_SIO_SET_FLOW_CTRL, 0, 0)) < 0)
		return r;
	if ((r = ftdi_set_line(s, &def)) < 0)
		return r;
	if ((r = ftdi_set_modem(s, true, true)) < 0)
		return r;
	s->dtr = s->rts = true;
	return 0;
}

static const struct serial_chip ftdi_chip = {
    .name = "ftdi",
    .init = ftdi_init,
    .set_line = ftdi_set_line,
    .set_modem = ftdi_set_modem,
    .brk = ftdi_brk,
    .brk_end = ftdi_brk_end,
    .get_status = ftdi_get_status,
    .rx = ftdi_rx,
};

/* ---- Probe ---- */

static int serial_probe(struct drv_function *fn)
{
	const struct usbdesc_iface *ifd = iface_of(fn->dev, fn->ifnum);
	struct serial *s;
	int r;

	if (ifd == NULL)
		return -ENOENT;
	if ((s = calloc(1, sizeof(*s))) == NULL || (s->rx = malloc(RX_BUF_LEN)) == NULL) {
		free(s);
		return -ENOMEM;
	}
	s->fn = fn;
	s->usb = fn->dev->usb;
	TAILQ_INIT(&s->waiters);
	TAILQ_INIT(&s->tx);
	fn->priv = s;
	s->chip = fn->dev->info.vendor_id == 0x0403 && ifd->cls == 0xff ? &ftdi_chip : &cdc_chip;
	if ((r = s->chip->init(s)) < 0)
		goto fail;
	/*
	 * data reads wait for the device as long as it takes (a board may say
	 * nothing for hours); writes have the daemon's deadline.
	 */
	r = -ENOSPC;
	if ((s->data = drv_file_add(fn, "data", 0666, PROTO_KIND_STREAM | PROTO_FILE_UNTIMED, &data_ops,
				    s)) == NULL ||
	    drv_file_add(fn, "line", 0666, PROTO_KIND_SMALL, &line_ops, s) == NULL ||
	    drv_file_add(fn, "status", 0444, PROTO_KIND_SMALL, &status_ops, s) == NULL)
		goto fail;
	char text[SERIAL_LINE_TEXT_MAX + 1];
	serial_line_format(&s->line, text, sizeof(text));
	drv_log(LOG_INFO, "serial: interface %u, %s, bulk %02x/%02x, %s", fn->ifnum, s->chip->name, s->ep_in,
		s->ep_out, text);
	return 0;
fail:
	/* The host releases the interfaces; nothing is in flight but the notification. */
	if (s->notify_xfer != NULL)
		drv_xfer_cancel(s->notify_xfer);
	else {
		free(s->rx);
		free(s);
		fn->priv = NULL;
	}
	return r;
}

const struct driver_ops serial_driver = {
    .name = "serial",
    .probe = serial_probe,
    .ctl = serial_ctl,
};
