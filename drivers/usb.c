/*
 * The generic driver `usb`: raw access to any interface nobody else binds.
 *
 *   ep0   write an 8-byte setup packet (+ wLength bytes of OUT data) to run
 *         one control transfer; the write returns when it completed.  The
 *         IN data of a device-to-host request is kept on the handle and
 *         returned by the following reads (0 = nothing left).
 *   epXX  one per bulk or interrupt endpoint, XX its address in hex: read
 *         an IN endpoint, write an OUT endpoint, one transfer per call.
 *   ctl   `clear-halt XX`, `altsetting IF ALT`, `reset`.
 *
 * The endpoint files are the union over all altsettings of the interface;
 * an endpoint missing from the current altsetting answers ENXIO.
 *
 * IN endpoints keep at most one transfer in flight, so data comes out in
 * the order the device sent it: blocking reads queue behind it, bytes a
 * read did not take stay buffered for the next read, and a read-ahead
 * started by a non-blocking read or a POLL fills the same buffer.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "driver.h"

#define USB_DIR_IN   0x80
#define EP0_MAX_DATA 4096
#define SETUP_LEN    8
/* Read-ahead started by a POLL (no read size known): this many packets. */
#define READAHEAD_PACKETS_BULK 32
#define READAHEAD_PACKETS_INTR 1

struct usb_fn;

struct usb_ep {
	struct usb_fn *uf;
	struct drv_file *file;
	uint8_t address;
	uint8_t type; /* USB_XFER_BULK or USB_XFER_INTR */
	uint16_t max_packet;
	bool present; /* in the current altsetting */
	/* IN endpoints only. */
	uint8_t *buf; /* data received and not read yet: buf[off..len) */
	size_t off, len;
	int error;		      /* error of a read-ahead nobody read yet */
	struct drv_xfer *xfer;	      /* the one transfer in flight */
	struct drv_req *owner;	      /* blocking read it was started for, or NULL: read-ahead */
	struct drv_req_queue waiters; /* blocking reads, oldest first */
};

struct usb_fn {
	struct drv_function *fn;
	uint8_t alt;
	unsigned neps;
	struct usb_ep eps[USBDESC_MAX_EPS];
};

/* Per ep0 handle: the IN data of the last device-to-host request. */
struct ep0_handle {
	uint8_t *data;
	size_t off, len;
};

static void in_pump(struct usb_ep *ep);

/* ---- Endpoint bookkeeping ---- */

/* Marks the endpoints of altsetting `alt` present; 0 or -ENOENT. */
static int apply_altsetting(struct usb_fn *uf, uint8_t alt)
{
	const struct drv_device *dev = uf->fn->dev;
	struct usbdesc_iface d;

	if (usbdesc_find_alt(dev->desc, dev->desc_len, uf->fn->ifnum, alt, &d) < 0)
		return -ENOENT;
	uf->alt = alt;
	for (unsigned i = 0; i < uf->neps; i++)
		uf->eps[i].present = false;
	for (unsigned j = 0; j < d.num_eps; j++)
		for (unsigned i = 0; i < uf->neps; i++)
			if (uf->eps[i].address == d.eps[j].address) {
				uf->eps[i].present = true;
				uf->eps[i].type = d.eps[j].attributes & 3;
				uf->eps[i].max_packet = d.eps[j].max_packet;
			}
	return 0;
}

static struct usb_ep *ep_by_address(struct usb_fn *uf, uint8_t address)
{
	for (unsigned i = 0; i < uf->neps; i++)
		if (uf->eps[i].address == address)
			return &uf->eps[i];
	return NULL;
}

/* Collects every bulk/interrupt endpoint of every altsetting, in descriptor order. */
static void collect_endpoints(struct usb_fn *uf)
{
	const struct drv_device *dev = uf->fn->dev;
	struct usbdesc_iface d;

	for (unsigned alt = 0; alt < 256; alt++) {
		if (usbdesc_find_alt(dev->desc, dev->desc_len, uf->fn->ifnum, (uint8_t)alt, &d) < 0)
			continue;
		for (unsigned j = 0; j < d.num_eps; j++) {
			const struct usbdesc_ep *e = &d.eps[j];
			uint8_t type = e->attributes & 3;
			if ((type != USB_XFER_BULK && type != USB_XFER_INTR) ||
			    ep_by_address(uf, e->address) || uf->neps == USBDESC_MAX_EPS)
				continue;
			struct usb_ep *ep = &uf->eps[uf->neps++];
			ep->uf = uf;
			ep->address = e->address;
			ep->type = type;
			ep->max_packet = e->max_packet;
			TAILQ_INIT(&ep->waiters);
		}
	}
}

/* ---- ep0 ---- */

static int ep0_open(struct drv_handle *h, uint32_t flags)
{
	(void)flags;
	h->priv = calloc(1, sizeof(struct ep0_handle));
	return h->priv != NULL ? 0 : -ENOMEM;
}

static void ep0_release(struct drv_handle *h)
{
	struct ep0_handle *e = h->priv;

	free(e->data);
	free(e);
}

static void ep0_done(struct drv_xfer *x)
{
	struct drv_req *req = x->req;
	struct libusb_transfer *t = x->t;
	struct ep0_handle *e = req->h->priv;
	int r = drv_xfer_errno(t->status);

	req->xfer = NULL;
	if (r == 0 && (t->buffer[0] & USB_DIR_IN)) {
		/* The buffer holds setup + data: keep it and read past the setup. */
		free(e->data);
		e->data = t->buffer;
		e->off = SETUP_LEN;
		e->len = SETUP_LEN + (size_t)t->actual_length;
		t->buffer = NULL;
		r = SETUP_LEN;
	} else if (r == 0) {
		r = SETUP_LEN + t->actual_length;
	}
	drv_xfer_free(x);
	drv_reply(req, r, NULL, 0);
}

static void ep0_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct drv_xfer *x;
	int r;

	if (len < SETUP_LEN)
		return drv_reply(req, -EINVAL, NULL, 0);
	uint16_t wlength = get_le16(data + 6);
	bool in = data[0] & USB_DIR_IN;
	if (wlength > EP0_MAX_DATA || len != SETUP_LEN + (in ? 0u : (size_t)wlength))
		return drv_reply(req, -EINVAL, NULL, 0);
	if ((x = drv_xfer_new(SETUP_LEN + wlength, ep0_done, NULL)) == NULL)
		return drv_reply(req, -ENOMEM, NULL, 0);
	memcpy(x->t->buffer, data, len);
	libusb_fill_control_transfer(x->t, req->h->file->fn->dev->usb, x->t->buffer, NULL, NULL, 0);
	x->req = req;
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return drv_reply(req, r, NULL, 0);
	}
	req->xfer = x;
}

static void ep0_read(struct drv_req *req)
{
	struct ep0_handle *e = req->h->priv;
	size_t n = e->len - e->off;

	if (n > req->size)
		n = req->size;
	/* Nothing kept: e->data is NULL, and NULL + 0 is undefined in C. */
	drv_reply(req, (int32_t)n, n > 0 ? e->data + e->off : NULL, n);
	e->off += n;
	if (e->off == e->len) {
		free(e->data);
		*e = (struct ep0_handle){0};
	}
}

static unsigned ep0_poll(struct drv_handle *h)
{
	(void)h;
	/* Neither a read (returns what is kept, or 0) nor a write ever waits to start. */
	return POLLIN | POLLOUT;
}

static const struct drv_file_ops ep0_ops = {
    .open = ep0_open,
    .read = ep0_read,
    .write = ep0_write,
    .poll = ep0_poll,
    .release = ep0_release,
};

/* ---- IN endpoints ---- */

static size_t in_buffered(const struct usb_ep *ep)
{
	return ep->len - ep->off;
}

/* Answers `req` from the buffer, which holds data. */
static void in_reply_buffered(struct usb_ep *ep, struct drv_req *req)
{
	size_t n = in_buffered(ep);

	if (n > req->size)
		n = req->size;
	drv_reply(req, (int32_t)n, ep->buf + ep->off, n);
	ep->off += n;
}

/*
 * Transfer length for a read of `size` bytes: whole packets, so a packet
 * never overflows the buffer; less than a packet still asks for one, and
 * the rest stays buffered.
 */
static size_t in_xfer_len(const struct usb_ep *ep, size_t size)
{
	size_t mps = ep->max_packet > 0 ? ep->max_packet : 64;

	if (size < mps)
		return mps;
	return size - size % mps;
}

static void in_done(struct drv_xfer *x)
{
	struct usb_ep *ep = x->arg;
	struct libusb_transfer *t = x->t;
	struct drv_req *owner = ep->owner;
	int r = drv_xfer_errno(t->status);

	ep->xfer = NULL;
	ep->owner = NULL;
	if (owner != NULL)
		owner->xfer = NULL;
	/* Bytes that arrived count even when the transfer was cancelled or failed. */
	if (t->actual_length > 0 || r == 0) {
		free(ep->buf);
		ep->buf = t->buffer;
		ep->off = 0;
		ep->len = (size_t)t->actual_length;
		t->buffer = NULL;
	}
	drv_xfer_free(x);

	if (r == 0 && in_buffered(ep) == 0 && !TAILQ_EMPTY(&ep->waiters)) {
		/* A zero-length packet: it ends a record, so the oldest read sees it as 0. */
		struct drv_req *req = TAILQ_FIRST(&ep->waiters);
		TAILQ_REMOVE(&ep->waiters, req, wait);
		drv_reply(req, 0, NULL, 0);
	} else if (r == -EINTR && owner != NULL && owner->cancelled && in_buffered(ep) == 0) {
		TAILQ_REMOVE(&ep->waiters, owner, wait);
		drv_reply(owner, -EINTR, NULL, 0);
	} else if (r < 0 && r != -EINTR && in_buffered(ep) == 0) {
		if (!TAILQ_EMPTY(&ep->waiters)) {
			struct drv_req *req = TAILQ_FIRST(&ep->waiters);
			TAILQ_REMOVE(&ep->waiters, req, wait);
			drv_reply(req, r, NULL, 0);
		} else {
			ep->error = r;
		}
	}
	in_pump(ep);
	drv_file_changed(ep->file);
}

/* Starts the endpoint's one transfer; 0 or -errno. */
static int in_submit(struct usb_ep *ep, size_t size, struct drv_req *owner)
{
	struct drv_xfer *x;
	int r;

	if (!ep->present)
		return -ENXIO;
	size = in_xfer_len(ep, size);
	if ((x = drv_xfer_new(size, in_done, ep)) == NULL)
		return -ENOMEM;
	if (ep->type == USB_XFER_INTR)
		libusb_fill_interrupt_transfer(x->t, ep->uf->fn->dev->usb, ep->address, x->t->buffer,
					       (int)size, NULL, NULL, 0);
	else
		libusb_fill_bulk_transfer(x->t, ep->uf->fn->dev->usb, ep->address, x->t->buffer, (int)size,
					  NULL, NULL, 0);
	x->req = owner;
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return r;
	}
	ep->xfer = x;
	ep->owner = owner;
	if (owner != NULL)
		owner->xfer = x;
	return 0;
}

/*
 * Serves waiting reads from the buffer, then starts a transfer for the
 * oldest one left.  A read that cannot start fails, and the next one tries.
 */
static void in_pump(struct usb_ep *ep)
{
	struct drv_req *req;

	while ((req = TAILQ_FIRST(&ep->waiters)) != NULL) {
		if (in_buffered(ep) > 0) {
			TAILQ_REMOVE(&ep->waiters, req, wait);
			in_reply_buffered(ep, req);
			continue;
		}
		if (ep->xfer != NULL)
			return;
		int r = in_submit(ep, req->size, req);
		if (r == 0)
			return;
		TAILQ_REMOVE(&ep->waiters, req, wait);
		drv_reply(req, r, NULL, 0);
	}
}

/* CANCEL of a read that waits behind another transfer: it owns nothing to cancel. */
static void in_cancel_waiter(struct drv_req *req)
{
	struct usb_ep *ep = req->h->file->priv;

	TAILQ_REMOVE(&ep->waiters, req, wait);
	drv_reply(req, -EINTR, NULL, 0);
}

static void in_start_readahead(struct usb_ep *ep, size_t size)
{
	int r;

	if (ep->xfer != NULL || in_buffered(ep) > 0 || ep->error != 0 || !ep->present)
		return;
	if ((r = in_submit(ep, size, NULL)) < 0)
		ep->error = r;
}

static void in_read(struct drv_req *req)
{
	struct usb_ep *ep = req->h->file->priv;

	if (!ep->present)
		return drv_reply(req, -ENXIO, NULL, 0);
	/* Earlier blocking reads come first; they imply an empty buffer. */
	if (TAILQ_EMPTY(&ep->waiters) && in_buffered(ep) > 0)
		return in_reply_buffered(ep, req);
	if (TAILQ_EMPTY(&ep->waiters) && ep->error != 0) {
		int r = ep->error;
		ep->error = 0;
		return drv_reply(req, r, NULL, 0);
	}
	if (req->size == 0)
		return drv_reply(req, 0, NULL, 0);
	if (req->flags & PROTO_F_NONBLOCK) {
		in_start_readahead(ep, req->size);
		return drv_reply(req, -EAGAIN, NULL, 0);
	}
	req->cancel = in_cancel_waiter;
	TAILQ_INSERT_TAIL(&ep->waiters, req, wait);
	in_pump(ep);
}

static unsigned in_poll(struct drv_handle *h)
{
	struct usb_ep *ep = h->file->priv;
	size_t packets = ep->type == USB_XFER_INTR ? READAHEAD_PACKETS_INTR : READAHEAD_PACKETS_BULK;

	if (!ep->present)
		return POLLERR;
	in_start_readahead(ep, packets * (ep->max_packet > 0 ? ep->max_packet : 64));
	if (in_buffered(ep) > 0)
		return POLLIN;
	return ep->error != 0 ? POLLIN | POLLERR : 0;
}

static void in_release(struct drv_handle *h)
{
	struct usb_ep *ep = h->file->priv;

	/* The last reader is gone: stop the read-ahead.  What already arrived stays buffered. */
	if (h->file->nopen == 1 && ep->xfer != NULL && ep->owner == NULL)
		drv_xfer_cancel(ep->xfer);
}

static const struct drv_file_ops in_ops = {
    .read = in_read,
    .poll = in_poll,
    .release = in_release,
};

/* ---- OUT endpoints ---- */

static void out_done(struct drv_xfer *x)
{
	struct drv_req *req = x->req;
	int r = drv_xfer_errno(x->t->status);

	req->xfer = NULL;
	/* Like write(2) cut short by a signal: report what the device took, if anything. */
	if (r == 0 || (r == -EINTR && x->t->actual_length > 0))
		r = x->t->actual_length;
	drv_xfer_free(x);
	drv_reply(req, r, NULL, 0);
}

static void out_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct usb_ep *ep = req->h->file->priv;
	struct drv_xfer *x;
	int r;

	if (!ep->present)
		return drv_reply(req, -ENXIO, NULL, 0);
	if ((x = drv_xfer_new(len, out_done, ep)) == NULL)
		return drv_reply(req, -ENOMEM, NULL, 0);
	if (len > 0)
		memcpy(x->t->buffer, data, len);
	if (ep->type == USB_XFER_INTR)
		libusb_fill_interrupt_transfer(x->t, ep->uf->fn->dev->usb, ep->address, x->t->buffer,
					       (int)len, NULL, NULL, 0);
	else
		libusb_fill_bulk_transfer(x->t, ep->uf->fn->dev->usb, ep->address, x->t->buffer, (int)len,
					  NULL, NULL, 0);
	x->req = req;
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return drv_reply(req, r, NULL, 0);
	}
	req->xfer = x;
}

static unsigned out_poll(struct drv_handle *h)
{
	struct usb_ep *ep = h->file->priv;

	/* Writes queue in usbfs without limit: an OUT endpoint is always writable. */
	return ep->present ? POLLOUT : POLLERR;
}

static const struct drv_file_ops out_ops = {
    .write = out_write,
    .poll = out_poll,
};

/* ---- Function ctl ---- */

static int parse_byte(const char *s, int base, uint8_t *out)
{
	char *end;
	unsigned long v = strtoul(s, &end, base);

	if (*s == '\0' || *end != '\0' || v > 255)
		return -EINVAL;
	*out = (uint8_t)v;
	return 0;
}

static int ctl_clear_halt(struct usb_fn *uf, int argc, char **argv)
{
	uint8_t address;
	struct usb_ep *ep;

	if (argc != 2 || parse_byte(argv[1], 16, &address) < 0 || (ep = ep_by_address(uf, address)) == NULL)
		return -EINVAL;
	int r = drv_usb_errno(libusb_clear_halt(uf->fn->dev->usb, address));
	if (r == 0 && ep->error == -EPIPE)
		ep->error = 0;
	return r;
}

static int ctl_altsetting(struct usb_fn *uf, int argc, char **argv)
{
	uint8_t ifnum, alt;
	struct usbdesc_iface d;
	const struct drv_device *dev = uf->fn->dev;

	if (argc != 3 || parse_byte(argv[1], 10, &ifnum) < 0 || parse_byte(argv[2], 10, &alt) < 0 ||
	    ifnum != uf->fn->ifnum || usbdesc_find_alt(dev->desc, dev->desc_len, ifnum, alt, &d) < 0)
		return -EINVAL;
	/* The kernel stops the old endpoints' URBs; their reads see the error. */
	int r = drv_usb_errno(libusb_set_interface_alt_setting(dev->usb, ifnum, alt));
	if (r < 0)
		return r;
	apply_altsetting(uf, alt);
	for (unsigned i = 0; i < uf->neps; i++)
		drv_file_changed(uf->eps[i].file);
	return 0;
}

static int ctl_reset(struct usb_fn *uf, int argc, char **argv)
{
	(void)argv;
	if (argc != 1)
		return -EINVAL;
	int r = libusb_reset_device(uf->fn->dev->usb);
	/* NOT_FOUND: the device came back different and must be enumerated again. */
	if (r == LIBUSB_ERROR_NOT_FOUND)
		return -ENODEV;
	if (r == 0)
		apply_altsetting(uf, 0);
	return drv_usb_errno(r);
}

struct ctl_command {
	const char *name;
	int (*run)(struct usb_fn *uf, int argc, char **argv);
};

static const struct ctl_command ctl_commands[] = {
    {.name = "clear-halt", .run = ctl_clear_halt},
    {.name = "altsetting", .run = ctl_altsetting},
    {.name = "reset", .run = ctl_reset},
    {0},
};

static int usb_ctl(struct drv_function *fn, int argc, char **argv)
{
	for (const struct ctl_command *c = ctl_commands; c->name != NULL; c++)
		if (strcmp(argv[0], c->name) == 0)
			return c->run(fn->priv, argc, argv);
	return -EINVAL;
}

/* ---- Probe ---- */

static int usb_probe(struct drv_function *fn)
{
	struct usb_fn *uf = calloc(1, sizeof(*uf));

	if (uf == NULL)
		return -ENOMEM;
	uf->fn = fn;
	fn->priv = uf;
	collect_endpoints(uf);
	/*
	 * The kernel leaves a claimed interface in altsetting 0 unless someone
	 * changed it; asking (GET_INTERFACE) would be a blocking control
	 * transfer to a device that may never answer, so we assume 0.
	 */
	if (apply_altsetting(uf, 0) < 0)
		return -ENOENT;
	if (drv_file_add(fn, "ep0", 0666, PROTO_KIND_STREAM, &ep0_ops, uf) == NULL)
		return -ENOSPC;
	for (unsigned i = 0; i < uf->neps; i++) {
		struct usb_ep *ep = &uf->eps[i];
		bool in = ep->address & USB_DIR_IN;
		char name[8];

		snprintf(name, sizeof(name), "ep%02x", ep->address);
		/*
		 * Reads have the daemon's deadline (timeout=), like a usbfs bulk
		 * transfer with a timeout: a device that never answers gives
		 * ETIMEDOUT.  A script that waits for data for hours uses poll(2),
		 * which has no deadline.
		 */
		ep->file =
		    drv_file_add(fn, name, in ? 0444 : 0222, PROTO_KIND_STREAM, in ? &in_ops : &out_ops, ep);
		if (ep->file == NULL)
			return -ENOSPC;
	}
	drv_log(LOG_INFO, "usb: interface %u, %u endpoints", fn->ifnum, uf->neps);
	return 0;
}

const struct driver_ops usb_driver = {
    .name = "usb",
    .probe = usb_probe,
    .ctl = usb_ctl,
};
