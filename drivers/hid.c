/*
 * The `hid` driver: HID interfaces (class 3, any subclass and protocol),
 * with hidraw's rules (man/plugfs-hid.7 is the user's view).
 *
 *   report_descriptor  the raw report descriptor, fetched once at probe
 *                      (GET_DESCRIPTOR(Report) to the interface); st_size is
 *                      its length.
 *   input              one input report per read(), the report ID first when
 *                      the device numbers its reports; a short buffer gets the
 *                      report cut.  Every open handle has its own queue of
 *                      HID_QUEUE_LEN reports, filled from the moment it opens;
 *                      when it is full the oldest report is dropped.
 *   output             one output report per write(): interrupt OUT endpoint
 *                      if the interface has one, else SET_REPORT(Output).
 *   feature-ID         per feature report of the descriptor (feature-0 when
 *                      unnumbered): read = GET_REPORT, write = SET_REPORT.
 *
 * While at least one `input` handle is open, one interrupt IN transfer is
 * kept in flight and each report it brings is copied to every open
 * handle's queue; with no handle open the endpoint is not read, like
 * usbhid, which stops polling a closed hidraw node.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "driver.h"
#include "hidparse.h"

#define HID_QUEUE_LEN 64
/* Linux's HID_MAX_DESCRIPTOR_SIZE. */
#define HID_MAX_RDESC 4096

#define USB_DIR_IN	    0x80
#define USB_REQ_GET_DESC    0x06
#define USB_RT_STD_IFACE_IN 0x81 /* standard, interface, device-to-host */
#define HID_RT_CLASS_IN	    0xa1 /* class, interface, device-to-host */
#define HID_RT_CLASS_OUT    0x21
#define HID_DT_HID	    0x21
#define HID_DT_REPORT	    0x22
#define HID_REQ_GET_REPORT  0x01
#define HID_REQ_SET_REPORT  0x09
#define SETUP_LEN	    8

struct hid_fn;

/* One open `input` handle. */
struct hid_reader {
	struct hid_fn *hf;
	uint8_t *q[HID_QUEUE_LEN]; /* reports, oldest at head */
	size_t qlen[HID_QUEUE_LEN];
	unsigned head, count;
	unsigned long dropped;
	int error;		      /* an endpoint error not reported to this handle yet */
	struct drv_req_queue waiters; /* blocking reads; only while the queue is empty */
	LIST_ENTRY(hid_reader) link;
};

struct hid_fn {
	struct drv_function *fn;
	uint8_t *rdesc;
	size_t rdesc_len;
	bool parsed; /* info is valid: lengths can be checked, feature files exist */
	struct hid_desc_info info;
	uint8_t in_ep, out_ep;
	size_t in_len; /* interrupt IN transfer length */
	struct drv_file *input;
	struct drv_xfer *in_xfer;
	bool in_cancelling; /* the last reader left and in_xfer was cancelled for it */
	/* An endpoint error stopped reading; the next read restarts it. */
	int in_stopped;
	bool long_logged;
	LIST_HEAD(, hid_reader) readers;
	struct hid_feature *features; /* one per feature-ID file */
};

/* One feature-ID file. */
struct hid_feature {
	struct hid_fn *hf;
	uint8_t id;
	size_t len; /* on the wire, the ID byte included */
};

/* Per feature handle: the report the last GET_REPORT gave, read in pieces. */
struct feature_snapshot {
	uint8_t *data;
	size_t len;
	bool valid;
};

static void reader_push(struct hid_reader *rd, const uint8_t *data, size_t len);

/* ---- Control transfers ---- */

/* A class request to the interface, answering `req` through `done`; 0 or -errno. */
static int control_submit(struct hid_fn *hf, struct drv_req *req, uint8_t rt, uint8_t request, uint16_t value,
			  const uint8_t *out, uint16_t len, void (*done)(struct drv_xfer *x), void *arg)
{
	struct drv_xfer *x = drv_xfer_new(SETUP_LEN + (size_t)len, done, arg);
	int r;

	if (x == NULL)
		return -ENOMEM;
	libusb_fill_control_setup(x->t->buffer, rt, request, value, hf->fn->ifnum, len);
	if (out != NULL)
		memcpy(x->t->buffer + SETUP_LEN, out, len);
	libusb_fill_control_transfer(x->t, hf->fn->dev->usb, x->t->buffer, NULL, NULL, 0);
	x->req = req;
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return r;
	}
	req->xfer = x;
	return 0;
}

/* Completion of a request-answering OUT transfer: the byte count the user wrote, or -errno. */
static void write_done(struct drv_xfer *x)
{
	struct drv_req *req = x->req;
	size_t wrote = (size_t)(uintptr_t)x->arg;
	int r = drv_xfer_errno(x->t->status);

	req->xfer = NULL;
	drv_xfer_free(x);
	drv_reply(req, r == 0 ? (int32_t)wrote : r, NULL, 0);
}

/* ---- report_descriptor ---- */

static void rdesc_read(struct drv_req *req)
{
	struct hid_fn *hf = req->h->file->priv;

	drv_reply_slice(req, hf->rdesc, hf->rdesc_len);
}

static const struct drv_file_ops rdesc_ops = {
    .read = rdesc_read,
};

/* ---- input ---- */

static void in_done(struct drv_xfer *x);

/* Keeps one interrupt IN transfer in flight while someone listens; 0 or -errno. */
static int in_start(struct hid_fn *hf)
{
	struct drv_xfer *x;
	int r;

	if (hf->in_xfer != NULL || hf->in_stopped != 0 || LIST_EMPTY(&hf->readers))
		return 0;
	if ((x = drv_xfer_new(hf->in_len, in_done, hf)) == NULL)
		return -ENOMEM;
	libusb_fill_interrupt_transfer(x->t, hf->fn->dev->usb, hf->in_ep, x->t->buffer, (int)hf->in_len, NULL,
				       NULL, 0);
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return r;
	}
	hf->in_xfer = x;
	return 0;
}

/*
 * The endpoint failed: every blocked read fails with `err`, every other
 * handle sees it at its next read, and reading stops until then (a device
 * that always stalls would otherwise keep the driver spinning).
 */
static void in_fail(struct hid_fn *hf, int err)
{
	struct hid_reader *rd;

	drv_log(LOG_WARNING, "hid: interface %u: interrupt IN %02x: %s; reading stops until the next read",
		hf->fn->ifnum, hf->in_ep, strerror(-err));
	hf->in_stopped = err;
	LIST_FOREACH(rd, &hf->readers, link)
	{
		struct drv_req *req;

		if (TAILQ_EMPTY(&rd->waiters))
			rd->error = err;
		while ((req = TAILQ_FIRST(&rd->waiters)) != NULL) {
			TAILQ_REMOVE(&rd->waiters, req, wait);
			drv_reply(req, err, NULL, 0);
		}
	}
	drv_file_changed(hf->input);
}

/* A read after an endpoint error: clear a stall, then read again.  0 or -errno. */
static int in_restart(struct hid_fn *hf)
{
	int r;

	if (hf->in_stopped == 0)
		return 0;
	if (hf->in_stopped == -EPIPE) {
		/*
		 * Synchronous, but short: a device that does not answer
		 * CLEAR_FEATURE is caught by the daemon's heartbeat.
		 */
		r = drv_usb_errno(libusb_clear_halt(hf->fn->dev->usb, hf->in_ep));
		if (r < 0) {
			drv_log(LOG_WARNING, "hid: interface %u: clear halt %02x: %s", hf->fn->ifnum,
				hf->in_ep, strerror(-r));
			return r;
		}
	}
	hf->in_stopped = 0;
	if ((r = in_start(hf)) < 0)
		hf->in_stopped = r;
	return r;
}

static void in_done(struct drv_xfer *x)
{
	struct hid_fn *hf = x->arg;
	struct libusb_transfer *t = x->t;
	int r = drv_xfer_errno(t->status);
	struct hid_reader *rd;

	hf->in_xfer = NULL;
	if (r == 0 && t->actual_length > 0) {
		size_t len = (size_t)t->actual_length;
		size_t max = hidparse_max_len(&hf->info, HID_REPORT_INPUT);
		if (hf->parsed && len > max && !hf->long_logged) {
			drv_log(LOG_NOTICE,
				"hid: interface %u: a %zu-byte input report, longer than the %zu "
				"the descriptor allows; delivered as it came",
				hf->fn->ifnum, len, max);
			hf->long_logged = true;
		}
		LIST_FOREACH(rd, &hf->readers, link)
		reader_push(rd, t->buffer, len);
		drv_file_changed(hf->input);
	}
	drv_xfer_free(x);
	if (r == -EINTR && !hf->in_cancelling) {
		/* Not ours: the driver is exiting.  A later read would start again. */
		hf->in_stopped = r;
		return;
	}
	hf->in_cancelling = false;
	/* Zero-length reports carry nothing and are skipped, as usbhid does. */
	if (r < 0 && r != -EINTR)
		return in_fail(hf, r);
	/* A reader that opened while the cancel was under way wants it running again. */
	if ((r = in_start(hf)) < 0)
		in_fail(hf, r);
}

static void reader_reply(struct hid_reader *rd, struct drv_req *req)
{
	uint8_t *data = rd->q[rd->head];
	size_t n = rd->qlen[rd->head];

	/* hidraw: the report, cut to the reader's buffer; the rest is gone. */
	if (n > req->size)
		n = req->size;
	rd->head = (rd->head + 1) % HID_QUEUE_LEN;
	rd->count--;
	drv_reply(req, (int32_t)n, data, n);
	free(data);
}

static void reader_push(struct hid_reader *rd, const uint8_t *data, size_t len)
{
	struct drv_req *req;
	uint8_t *copy = malloc(len);

	if (copy == NULL) {
		drv_log(LOG_ERR, "hid: interface %u: no memory for an input report; dropped",
			rd->hf->fn->ifnum);
		return;
	}
	memcpy(copy, data, len);
	if (rd->count == HID_QUEUE_LEN) {
		free(rd->q[rd->head]);
		rd->head = (rd->head + 1) % HID_QUEUE_LEN;
		rd->count--;
		if (rd->dropped++ == 0)
			drv_log(
			    LOG_NOTICE,
			    "hid: interface %u: a reader's queue is full (%d reports): dropping the oldest",
			    rd->hf->fn->ifnum, HID_QUEUE_LEN);
	}
	unsigned tail = (rd->head + rd->count) % HID_QUEUE_LEN;
	rd->q[tail] = copy;
	rd->qlen[tail] = len;
	rd->count++;
	if ((req = TAILQ_FIRST(&rd->waiters)) != NULL) {
		TAILQ_REMOVE(&rd->waiters, req, wait);
		reader_reply(rd, req);
	}
}

static int input_open(struct drv_handle *h, uint32_t flags)
{
	struct hid_fn *hf = h->file->priv;
	struct hid_reader *rd = calloc(1, sizeof(*rd));
	int r;

	(void)flags;
	if (rd == NULL)
		return -ENOMEM;
	rd->hf = hf;
	TAILQ_INIT(&rd->waiters);
	LIST_INSERT_HEAD(&hf->readers, rd, link);
	h->priv = rd;
	/* Reports queue from now on, so the transfer starts at open, not at the first read. */
	r = hf->in_stopped != 0 ? in_restart(hf) : in_start(hf);
	if (r < 0) {
		LIST_REMOVE(rd, link);
		free(rd);
		h->priv = NULL;
	}
	return r;
}

static void input_cancel_waiter(struct drv_req *req)
{
	struct hid_reader *rd = req->h->priv;

	TAILQ_REMOVE(&rd->waiters, req, wait);
	drv_reply(req, -EINTR, NULL, 0);
}

static void input_read(struct drv_req *req)
{
	struct hid_reader *rd = req->h->priv;
	int r;

	if (rd->count > 0)
		return reader_reply(rd, req);
	if (rd->error != 0) {
		r = rd->error;
		rd->error = 0;
		return drv_reply(req, r, NULL, 0);
	}
	if ((r = in_restart(rd->hf)) < 0)
		return drv_reply(req, r, NULL, 0);
	if (req->flags & PROTO_F_NONBLOCK)
		return drv_reply(req, -EAGAIN, NULL, 0);
	req->cancel = input_cancel_waiter;
	TAILQ_INSERT_TAIL(&rd->waiters, req, wait);
}

static unsigned input_poll(struct drv_handle *h)
{
	struct hid_reader *rd = h->priv;

	if (rd->count > 0)
		return POLLIN;
	/* Stopped by an error: a read reports it or starts reading again. */
	if (rd->error != 0 || rd->hf->in_stopped != 0)
		return POLLIN | POLLERR;
	return 0;
}

static void input_release(struct drv_handle *h)
{
	struct hid_reader *rd = h->priv;
	struct hid_fn *hf = rd->hf;

	if (rd->dropped > 0)
		drv_log(LOG_NOTICE, "hid: interface %u: a reader closed after %lu reports were dropped",
			hf->fn->ifnum, rd->dropped);
	while (rd->count > 0) {
		free(rd->q[rd->head]);
		rd->head = (rd->head + 1) % HID_QUEUE_LEN;
		rd->count--;
	}
	LIST_REMOVE(rd, link);
	free(rd);
	if (LIST_EMPTY(&hf->readers) && hf->in_xfer != NULL && !hf->in_cancelling) {
		hf->in_cancelling = true;
		drv_xfer_cancel(hf->in_xfer);
	}
}

static const struct drv_file_ops input_ops = {
    .open = input_open,
    .read = input_read,
    .poll = input_poll,
    .release = input_release,
};

/* ---- output ---- */

static void output_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct hid_fn *hf = req->h->file->priv;
	const struct hid_report *rep;
	struct drv_xfer *x;
	int r;

	if (len == 0)
		return drv_reply(req, -EINVAL, NULL, 0);
	uint8_t id = hf->info.numbered ? data[0] : 0;
	if ((rep = hidparse_find(&hf->info, HID_REPORT_OUTPUT, id)) == NULL ||
	    len > hid_report_bytes(rep) + (hf->info.numbered ? 1 : 0))
		return drv_reply(req, -EINVAL, NULL, 0);
	if (hf->out_ep == 0) {
		r = control_submit(hf, req, HID_RT_CLASS_OUT, HID_REQ_SET_REPORT,
				   (uint16_t)(HID_REPORT_OUTPUT << 8 | id), data, (uint16_t)len, write_done,
				   (void *)(uintptr_t)len);
		if (r < 0)
			drv_reply(req, r, NULL, 0);
		return;
	}
	if ((x = drv_xfer_new(len, write_done, (void *)(uintptr_t)len)) == NULL)
		return drv_reply(req, -ENOMEM, NULL, 0);
	memcpy(x->t->buffer, data, len);
	libusb_fill_interrupt_transfer(x->t, hf->fn->dev->usb, hf->out_ep, x->t->buffer, (int)len, NULL, NULL,
				       0);
	x->req = req;
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return drv_reply(req, r, NULL, 0);
	}
	req->xfer = x;
}

static unsigned output_poll(struct drv_handle *h)
{
	(void)h;
	return POLLOUT;
}

static const struct drv_file_ops output_ops = {
    .write = output_write,
    .poll = output_poll,
};

/* ---- feature-ID ---- */

static int feature_open(struct drv_handle *h, uint32_t flags)
{
	(void)flags;
	h->priv = calloc(1, sizeof(struct feature_snapshot));
	return h->priv != NULL ? 0 : -ENOMEM;
}

static void feature_release(struct drv_handle *h)
{
	struct feature_snapshot *s = h->priv;

	free(s->data);
	free(s);
}

static void feature_get_done(struct drv_xfer *x)
{
	struct drv_req *req = x->req;
	struct hid_feature *feat = x->arg;
	struct feature_snapshot *s = req->h->priv;
	int r = drv_xfer_errno(x->t->status);

	req->xfer = NULL;
	if (r < 0) {
		drv_xfer_free(x);
		return drv_reply(req, r, NULL, 0);
	}
	size_t n = (size_t)x->t->actual_length;
	if (feat->hf->info.numbered && n > 0 && x->t->buffer[SETUP_LEN] != feat->id)
		drv_log(LOG_NOTICE, "hid: interface %u: GET_REPORT(feature %u) answered with report %u",
			feat->hf->fn->ifnum, feat->id, x->t->buffer[SETUP_LEN]);
	/* The device's answer as it came, like HIDIOCGFEATURE: the file holds what the device said. */
	free(s->data);
	s->data = x->t->buffer;
	x->t->buffer = NULL;
	memmove(s->data, s->data + SETUP_LEN, n);
	s->len = n;
	s->valid = true;
	drv_xfer_free(x);
	drv_reply_slice(req, s->data, s->len);
}

static void feature_read(struct drv_req *req)
{
	struct hid_feature *feat = req->h->file->priv;
	struct feature_snapshot *s = req->h->priv;
	int r;

	/* Like a sysfs attribute: reading from the start asks the device, the rest reads that answer. */
	if (req->offset > 0 && s->valid)
		return drv_reply_slice(req, s->data, s->len);
	r = control_submit(feat->hf, req, HID_RT_CLASS_IN, HID_REQ_GET_REPORT,
			   (uint16_t)(HID_REPORT_FEATURE << 8 | feat->id), NULL, (uint16_t)feat->len,
			   feature_get_done, feat);
	if (r < 0)
		drv_reply(req, r, NULL, 0);
}

static void feature_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct hid_feature *feat = req->h->file->priv;
	int r;

	if (len != feat->len || (feat->hf->info.numbered && data[0] != feat->id))
		return drv_reply(req, -EINVAL, NULL, 0);
	r = control_submit(feat->hf, req, HID_RT_CLASS_OUT, HID_REQ_SET_REPORT,
			   (uint16_t)(HID_REPORT_FEATURE << 8 | feat->id), data, (uint16_t)len, write_done,
			   (void *)(uintptr_t)len);
	if (r < 0)
		drv_reply(req, r, NULL, 0);
}

static const struct drv_file_ops feature_ops = {
    .open = feature_open,
    .read = feature_read,
    .write = feature_write,
    .release = feature_release,
};

/* ---- Probe ---- */

/* wDescriptorLength of the Report descriptor in the interface's HID descriptor; 0 if none. */
static size_t rdesc_length(const struct drv_device *dev, const struct usbdesc_iface *d)
{
	size_t off = d->raw_off, end = d->raw_off + d->raw_len;

	/* usbdesc checked the chain: every bLength is >= 2 and fits. */
	while (off < end) {
		const uint8_t *p = dev->desc + off;
		if (p[1] == HID_DT_HID && p[0] >= 9)
			for (size_t i = 6; i + 3 <= p[0] && i < 6 + 3u * p[5]; i += 3)
				if (p[i] == HID_DT_REPORT)
					return get_le16(p + i + 1);
		off += p[0];
	}
	return 0;
}

static int fetch_rdesc(struct hid_fn *hf, size_t want)
{
	uint8_t *buf = malloc(want);
	int r;

	if (buf == NULL)
		return -ENOMEM;
	/*
	 * Synchronous, before HELLO: the driver has nothing else to do yet, and
	 * the daemon kills a driver that does not say HELLO within timeout=.
	 */
	r = libusb_control_transfer(hf->fn->dev->usb, USB_RT_STD_IFACE_IN, USB_REQ_GET_DESC,
				    HID_DT_REPORT << 8, hf->fn->ifnum, buf, (uint16_t)want, 0);
	if (r < 0) {
		free(buf);
		drv_log(LOG_ERR, "hid: interface %u: GET_DESCRIPTOR(Report): %s", hf->fn->ifnum,
			libusb_strerror(r));
		return drv_usb_errno(r);
	}
	if ((size_t)r < want)
		drv_log(LOG_NOTICE,
			"hid: interface %u: report descriptor is %d bytes, the HID descriptor said %zu",
			hf->fn->ifnum, r, want);
	hf->rdesc = buf;
	hf->rdesc_len = (size_t)r;
	return 0;
}

static int add_files(struct hid_fn *hf)
{
	struct drv_function *fn = hf->fn;
	struct drv_file *f;

	if ((f = drv_file_add(fn, "report_descriptor", 0444, PROTO_KIND_BLOCK, &rdesc_ops, hf)) == NULL)
		return -ENOSPC;
	f->size = hf->rdesc_len;
	/* Input reports may not come for hours: no request deadline on a blocked read. */
	if (hf->in_ep != 0 &&
	    (hf->input = drv_file_add(fn, "input", 0444, PROTO_KIND_STREAM | PROTO_FILE_UNTIMED, &input_ops,
				      hf)) == NULL)
		return -ENOSPC;
	if (hidparse_max_len(&hf->info, HID_REPORT_OUTPUT) > 0 &&
	    drv_file_add(fn, "output", 0222, PROTO_KIND_STREAM, &output_ops, hf) == NULL)
		return -ENOSPC;
	if ((hf->features = calloc(hf->info.nreports + 1, sizeof(*hf->features))) == NULL)
		return -ENOMEM;
	struct hid_feature *feat = hf->features;
	for (unsigned i = 0; i < hf->info.nreports; i++) {
		const struct hid_report *rep = &hf->info.reports[i];
		char name[16];

		if (rep->type != HID_REPORT_FEATURE)
			continue;
		*feat = (struct hid_feature){
		    .hf = hf, .id = rep->id, .len = hid_report_bytes(rep) + (hf->info.numbered ? 1 : 0)};
		snprintf(name, sizeof(name), "feature-%u", rep->id);
		if (drv_file_add(fn, name, 0666, PROTO_KIND_SMALL, &feature_ops, feat++) == NULL)
			return -ENOSPC;
	}
	return 0;
}

/* A failed probe: the host drops the files, this drops what they pointed to. */
static int probe_fail(struct drv_function *fn, int r)
{
	struct hid_fn *hf = fn->priv;

	free(hf->features);
	free(hf->rdesc);
	free(hf);
	fn->priv = NULL;
	return r;
}

static int hid_probe(struct drv_function *fn)
{
	const struct drv_device *dev = fn->dev;
	struct usbdesc_iface d;
	struct hid_fn *hf;
	const char *why = NULL;
	int r;

	if (usbdesc_find_alt(dev->desc, dev->desc_len, fn->ifnum, 0, &d) < 0)
		return -ENOENT;
	size_t want = rdesc_length(dev, &d);
	if (want == 0 || want > HID_MAX_RDESC) {
		drv_log(LOG_ERR, "hid: interface %u: no usable HID descriptor (report descriptor length %zu)",
			fn->ifnum, want);
		return -ENOENT;
	}
	if ((hf = calloc(1, sizeof(*hf))) == NULL)
		return -ENOMEM;
	hf->fn = fn;
	fn->priv = hf;
	LIST_INIT(&hf->readers);
	for (unsigned i = 0; i < d.num_eps; i++) {
		const struct usbdesc_ep *e = &d.eps[i];
		if ((e->attributes & 3) != USB_XFER_INTR)
			continue;
		if ((e->address & USB_DIR_IN) && hf->in_ep == 0) {
			hf->in_ep = e->address;
			hf->in_len = e->max_packet > 0 ? e->max_packet : 64;
		} else if (!(e->address & USB_DIR_IN) && hf->out_ep == 0) {
			hf->out_ep = e->address;
		}
	}
	if ((r = fetch_rdesc(hf, want)) < 0)
		return probe_fail(fn, r);
	if (hidparse(hf->rdesc, hf->rdesc_len, &hf->info, &why) == 0) {
		hf->parsed = true;
	} else {
		/* The raw descriptor and the input reports are still worth having. */
		drv_log(LOG_ERR, "hid: interface %u: report descriptor: %s; no output or feature files",
			fn->ifnum, why);
		memset(&hf->info, 0, sizeof(hf->info));
	}
	/* Whole packets, and room for the longest report, so no report overflows the transfer. */
	size_t longest = hidparse_max_len(&hf->info, HID_REPORT_INPUT);
	if (hf->in_len > 0 && longest > hf->in_len)
		hf->in_len = (longest + hf->in_len - 1) / hf->in_len * hf->in_len;
	if ((r = add_files(hf)) < 0)
		return probe_fail(fn, r);
	drv_log(
	    LOG_INFO, "hid: interface %u: %zu-byte report descriptor, %u reports%s, input %02x, output %s",
	    fn->ifnum, hf->rdesc_len, hf->info.nreports, hf->info.numbered ? " (numbered)" : "", hf->in_ep,
	    hidparse_max_len(&hf->info, HID_REPORT_OUTPUT) == 0 ? "none"
	    : hf->out_ep != 0					? "interrupt OUT"
								: "SET_REPORT");
	return 0;
}

const struct driver_ops hid_driver = {
    .name = "hid",
    .probe = hid_probe,
};
