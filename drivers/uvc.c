/*
 * The webcam driver `uvc` (USB Video Class, interface class 14): the
 * VideoControl interface and the VideoStreaming interface its header
 * lists, as one function webcamN.
 *
 *   formats    one line per format, frame size and rate: `mjpeg 1280x720 30`
 *   format     the current one, same syntax; write one of `formats` (EINVAL
 *              otherwise, EBUSY while streaming)
 *   frame.jpg  (MJPEG cameras) one complete frame that ended after the read
 *              at offset 0 began, then EOF; the next read from offset 0
 *              waits for a newer frame
 *   frame.ppm  (YUY2 cameras) the same as a binary PPM (P6)
 *   stream     frames back to back as multipart/x-mixed-replace parts
 *              (boundary `plugfsframe`), the newest frame each time
 *   controls/NAME  a camera terminal or processing unit control: read =
 *              GET_CUR, write = SET_CUR checked against GET_MIN/MAX/RES
 *
 * Streaming starts with the first open of frame.* or stream: probe and
 * commit (VS_PROBE_CONTROL, VS_COMMIT_CONTROL), then the isochronous
 * altsetting with the least bandwidth that carries the payload size the
 * camera asked for, or the bulk endpoint.  Frames are put together from
 * payload headers: FID toggles between frames, EOF ends one, the error
 * bit, a lost packet or a frame of the wrong size make it dropped.  The
 * last close stops the stream: transfers cancelled, then altsetting 0
 * (bulk: CLEAR_FEATURE(ENDPOINT_HALT) on the endpoint, as Linux does).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "driver.h"
#include "uvcdesc.h"

#define UVC_XFERS	4
#define UVC_ISO_PACKETS 32
/* A frame larger than this is refused, whatever the camera says. */
#define UVC_MAX_FRAME (32u << 20)
/* A bulk payload larger than this is read in pieces of this size. */
#define UVC_MAX_BULK_PAYLOAD (1u << 20)
#define UVC_MAX_ALTS	     32
#define UVC_FORMATS_MAX	     16384
#define BOUNDARY	     "plugfsframe"

#define REQ_TYPE_OUT 0x21 /* class, interface, host to device */
#define REQ_TYPE_IN  0xa1

enum stream_state {
	ST_IDLE,     /* nothing in flight, altsetting 0 */
	ST_PROBING,  /* probe/commit control transfers in flight */
	ST_RUNNING,  /* streaming transfers in flight */
	ST_STOPPING, /* waiting for cancelled transfers before altsetting 0 */
	ST_FAILED,   /* stopped after an error; readers get `error` until the last close */
};

struct iso_alt {
	uint8_t alt;
	uint32_t bytes; /* per microframe: size x (1 + extra transactions) */
};

struct cam;

/* One control of controls/. */
struct cam_control {
	struct cam *cam;
	struct uvc_control c;
	bool have_range;
	int32_t min, max, res;
};

struct cam {
	struct drv_function *fn;
	struct uvc_control_info vc;
	struct uvc_streaming vs;
	uint8_t vs_if;
	uint8_t ep; /* streaming endpoint */
	bool bulk;
	uint16_t bulk_mps;
	unsigned nalts;
	struct iso_alt alts[UVC_MAX_ALTS];
	struct cam_control controls[UVC_MAX_CONTROLS];
	char *formats; /* the `formats` file */
	size_t formats_len;

	/* The format the next stream uses. */
	const struct uvc_format *fmt;
	const struct uvc_frame *frame;
	uint32_t interval;

	/* The stream. */
	enum stream_state state;
	int error;
	unsigned users; /* open frame.* and stream handles */
	int probe_step;
	uint8_t probe_buf[48];
	size_t probe_len;
	struct uvc_probe probe;
	uint8_t alt;
	struct drv_xfer *xfers[UVC_XFERS];
	unsigned live; /* transfers (streaming or probe) in flight */
	bool active;   /* started and not yet finished: may hold an altsetting */

	/* Frame assembly. */
	uint8_t *asm_buf;
	size_t asm_len, asm_cap;
	bool asm_active, asm_bad;
	int asm_fid, last_fid;

	/* The newest complete frame. */
	uint8_t *latest;
	size_t latest_len;
	uint32_t seq;
	uint64_t frames_ok, frames_dropped;
	struct drv_req_queue waiters;

	struct drv_file *f_jpg, *f_ppm, *f_stream;
};

/* What a handle of frame.* or stream reads. */
struct view {
	uint8_t *data;
	size_t len, off;
	uint32_t seq;	/* of the frame in data */
	uint32_t after; /* a waiting read wants a frame newer than this */
	bool eof;	/* frame.*: EOF was returned, offset 0 means a new frame */
	bool have;	/* data holds a frame */
};

static void stream_start(struct cam *cam);
static void stream_fail(struct cam *cam, int err);

/* ---- Descriptors ---- */

static const struct usbdesc_iface *iface_of(const struct drv_device *dev, uint8_t number)
{
	for (unsigned i = 0; i < dev->info.num_ifaces; i++)
		if (dev->info.ifaces[i].number == number)
			return &dev->info.ifaces[i];
	return NULL;
}

/* The streaming endpoint's altsettings: isochronous ones sorted by bandwidth, or the bulk one. */
static void collect_alts(struct cam *cam)
{
	const struct drv_device *dev = cam->fn->dev;
	struct usbdesc_iface d;

	for (unsigned alt = 0; alt < 256 && cam->nalts < UVC_MAX_ALTS; alt++) {
		if (usbdesc_find_alt(dev->desc, dev->desc_len, cam->vs_if, (uint8_t)alt, &d) < 0)
			continue;
		for (unsigned e = 0; e < d.num_eps; e++) {
			const struct usbdesc_ep *ep = &d.eps[e];
			uint8_t type = ep->attributes & 3;

			if (ep->address != cam->ep)
				continue;
			if (type == USB_XFER_BULK && alt == 0) {
				cam->bulk = true;
				cam->bulk_mps = ep->max_packet;
			} else if (type == USB_XFER_ISOC && ep->max_packet > 0) {
				/* usbdesc keeps bits 0-10; the extra transactions are read raw below. */
				cam->alts[cam->nalts++] = (struct iso_alt){.alt = (uint8_t)alt};
			}
		}
	}
	/* The multiplier bits (11-12) of wMaxPacketSize, which usbdesc drops, from the raw descriptors. */
	for (unsigned i = 0; i < cam->nalts; i++) {
		usbdesc_find_alt(dev->desc, dev->desc_len, cam->vs_if, cam->alts[i].alt, &d);
		const uint8_t *p = dev->desc + d.raw_off;
		for (size_t off = 0; off + 7 <= d.raw_len && p[off] >= 2; off += p[off])
			if (p[off + 1] == USB_DT_ENDPOINT && p[off] >= 7 && p[off + 2] == cam->ep) {
				uint16_t mps = get_le16(p + off + 4);
				cam->alts[i].bytes = (uint32_t)(mps & 0x7ff) * (1u + ((mps >> 11) & 3));
			}
	}
	for (unsigned i = 1; i < cam->nalts; i++)
		for (unsigned j = i; j > 0 && cam->alts[j].bytes < cam->alts[j - 1].bytes; j--) {
			struct iso_alt t = cam->alts[j];
			cam->alts[j] = cam->alts[j - 1];
			cam->alts[j - 1] = t;
		}
}

static int build_formats(struct cam *cam)
{
	size_t cap = UVC_FORMATS_MAX, n = 0;
	char *s = malloc(cap);

	if (s == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < cam->vs.num_formats; i++) {
		const struct uvc_format *f = &cam->vs.formats[i];
		for (unsigned j = 0; j < f->num_frames; j++) {
			const struct uvc_frame *fr = &f->frames[j];
			uint32_t ivs[UVC_MAX_INTERVALS];
			unsigned niv = 0;

			if (fr->continuous) {
				/* Fastest, default and slowest. */
				ivs[niv++] = fr->intervals[0];
				if (fr->default_interval > fr->intervals[0] &&
				    fr->default_interval < fr->intervals[1])
					ivs[niv++] = fr->default_interval;
				ivs[niv++] = fr->intervals[1];
			} else {
				for (unsigned k = 0; k < fr->num_intervals; k++)
					ivs[niv++] = fr->intervals[k];
			}
			for (unsigned k = 0; k < niv; k++) {
				char rate[16];
				uvc_interval_format(rate, sizeof(rate), ivs[k]);
				int r = snprintf(s + n, cap - n, "%s %ux%u %s\n", uvc_format_name(f->kind),
						 fr->width, fr->height, rate);
				if (r < 0 || (size_t)r >= cap - n)
					goto full;
				n += (size_t)r;
			}
		}
	}
full:
	cam->formats = s;
	cam->formats_len = n;
	return 0;
}

/* ---- Control transfers ---- */

struct ctrl_op {
	void (*done)(void *arg, int r, const uint8_t *data, size_t len);
	void *arg;
};

static void ctrl_done(struct drv_xfer *x)
{
	struct ctrl_op *op = x->arg;
	struct libusb_transfer *t = x->t;
	int r = drv_xfer_errno(t->status);

	op->done(op->arg, r, libusb_control_transfer_get_data(t), r == 0 ? (size_t)t->actual_length : 0);
	free(op);
	drv_xfer_free(x);
}

/*
 * One class request to entity `unit` (0: the interface itself) of
 * interface `ifnum`.  `done` runs once, with 0 or -errno.  req (if any)
 * gets the transfer, so CANCEL stops it.  0 or -errno (done not called).
 */
static int ctrl_submit(struct cam *cam, struct drv_req *req, uint8_t type, uint8_t request, uint8_t selector,
		       uint8_t unit, uint8_t ifnum, const uint8_t *out, uint16_t len,
		       void (*done)(void *arg, int r, const uint8_t *data, size_t len), void *arg)
{
	struct ctrl_op *op = malloc(sizeof(*op));
	struct drv_xfer *x;
	int r;

	if (op == NULL || (x = drv_xfer_new(LIBUSB_CONTROL_SETUP_SIZE + len, ctrl_done, op)) == NULL) {
		free(op);
		return -ENOMEM;
	}
	op->done = done;
	op->arg = arg;
	libusb_fill_control_setup(x->t->buffer, type, request, (uint16_t)(selector << 8),
				  (uint16_t)(unit << 8 | ifnum), len);
	if (out != NULL)
		memcpy(x->t->buffer + LIBUSB_CONTROL_SETUP_SIZE, out, len);
	libusb_fill_control_transfer(x->t, cam->fn->dev->usb, x->t->buffer, NULL, NULL, 0);
	x->req = req;
	if ((r = drv_xfer_submit(x)) < 0) {
		free(op);
		drv_xfer_free(x);
		return r;
	}
	if (req != NULL)
		req->xfer = x;
	return 0;
}

/* ---- Frames ---- */

static size_t frame_bytes(const struct cam *cam)
{
	return (size_t)cam->frame->width * cam->frame->height * 2;
}

/* BT.601 studio-range YUV to RGB, in integers. */
static uint8_t clamp8(int v)
{
	return v < 0 ? 0 : v > 255 ? 255 : (uint8_t)v;
}

/* A YUY2 frame as a binary PPM; 0 or -ENOMEM. */
static int yuy2_to_ppm(const uint8_t *in, unsigned w, unsigned h, uint8_t **out, size_t *out_len)
{
	char head[32];
	int hl = snprintf(head, sizeof(head), "P6\n%u %u\n255\n", w, h);
	size_t len = (size_t)hl + (size_t)w * h * 3;
	uint8_t *p = malloc(len), *o;

	if (p == NULL)
		return -ENOMEM;
	memcpy(p, head, (size_t)hl);
	o = p + hl;
	for (size_t i = 0; i + 3 < (size_t)w * h * 2; i += 4) {
		int u = in[i + 1] - 128, v = in[i + 3] - 128;
		for (unsigned k = 0; k < 2; k++) {
			int c = 298 * (in[i + 2 * k] - 16);
			*o++ = clamp8((c + 409 * v + 128) >> 8);
			*o++ = clamp8((c - 100 * u - 208 * v + 128) >> 8);
			*o++ = clamp8((c + 516 * u + 128) >> 8);
		}
	}
	*out = p;
	*out_len = len;
	return 0;
}

static bool is_mjpeg(const struct cam *cam)
{
	return cam->fmt->kind == UVC_FORMAT_MJPEG;
}

/* The newest frame as a file (JPEG or PPM) or a multipart part, into v. */
static int view_fill(struct cam *cam, struct view *v, bool part)
{
	uint8_t *img = NULL, *data;
	size_t img_len = 0, len;
	char head[160];
	int hl = 0, r;

	if (is_mjpeg(cam)) {
		img = cam->latest;
		img_len = cam->latest_len;
	} else if ((r = yuy2_to_ppm(cam->latest, cam->frame->width, cam->frame->height, &img, &img_len)) <
		   0) {
		return r;
	}
	if (part)
		hl = snprintf(head, sizeof(head),
			      "--" BOUNDARY "\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
			      is_mjpeg(cam) ? "image/jpeg" : "image/x-portable-pixmap", img_len);
	len = (size_t)hl + img_len + (part ? 2 : 0);
	if ((data = malloc(len)) == NULL) {
		if (img != cam->latest)
			free(img);
		return -ENOMEM;
	}
	memcpy(data, head, (size_t)hl);
	memcpy(data + hl, img, img_len);
	if (part)
		memcpy(data + hl + img_len, "\r\n", 2);
	if (img != cam->latest)
		free(img);
	free(v->data);
	v->data = data;
	v->len = len;
	v->off = 0;
	v->seq = cam->seq;
	v->have = true;
	v->eof = false;
	return 0;
}

static bool is_stream_file(const struct drv_handle *h)
{
	struct cam *cam = h->file->priv;

	return h->file == cam->f_stream;
}

/* Answers a read from what its handle holds. */
static void view_reply(struct drv_req *req)
{
	struct view *v = req->h->priv;

	if (is_stream_file(req->h)) {
		size_t n = v->len - v->off;
		if (n > req->size)
			n = req->size;
		drv_reply(req, (int32_t)n, v->data + v->off, n);
		v->off += n;
		return;
	}
	if (req->offset >= v->len)
		v->eof = true;
	drv_reply_slice(req, v->data, v->len);
}

static void waiter_cancel(struct drv_req *req)
{
	struct cam *cam = req->h->file->priv;

	TAILQ_REMOVE(&cam->waiters, req, wait);
	drv_reply(req, -EINTR, NULL, 0);
}

/* A new frame (or an error): serve the reads that waited for it. */
static void waiters_serve(struct cam *cam)
{
	struct drv_req *req, *next;

	for (req = TAILQ_FIRST(&cam->waiters); req != NULL; req = next) {
		struct view *v = req->h->priv;
		int r = 0;

		next = TAILQ_NEXT(req, wait);
		if (cam->state == ST_FAILED || cam->state == ST_IDLE) {
			TAILQ_REMOVE(&cam->waiters, req, wait);
			drv_reply(req, cam->state == ST_FAILED ? cam->error : -EIO, NULL, 0);
			continue;
		}
		if (cam->latest == NULL || cam->seq <= v->after)
			continue;
		TAILQ_REMOVE(&cam->waiters, req, wait);
		if ((r = view_fill(cam, v, is_stream_file(req->h))) < 0)
			drv_reply(req, r, NULL, 0);
		else
			view_reply(req);
	}
	if (cam->f_stream != NULL)
		drv_file_changed(cam->f_stream);
}

static void frame_finish(struct cam *cam)
{
	bool good = !cam->asm_bad;
	uint8_t *p;

	cam->asm_active = false;
	if (good && is_mjpeg(cam))
		good = cam->asm_len >= 4 && cam->asm_buf[0] == 0xff && cam->asm_buf[1] == 0xd8;
	else if (good)
		good = cam->asm_len == frame_bytes(cam);
	if (!good) {
		cam->frames_dropped++;
		if (drv_verbose)
			drv_log(LOG_DEBUG, "uvc: frame dropped (%zu bytes%s)", cam->asm_len,
				cam->asm_bad ? ", damaged" : "");
		return;
	}
	/* The assembly buffer becomes the newest frame; the old one is reused for the next. */
	p = cam->latest;
	cam->latest = cam->asm_buf;
	cam->latest_len = cam->asm_len;
	cam->asm_buf = p != NULL ? p : malloc(cam->asm_cap);
	if (cam->asm_buf == NULL) {
		stream_fail(cam, -ENOMEM);
		return;
	}
	cam->seq++;
	cam->frames_ok++;
	waiters_serve(cam);
}

/* One payload: a header, then a piece of a frame. */
static void payload(struct cam *cam, const uint8_t *data, size_t len)
{
	size_t hl;
	uint8_t info;
	int fid;

	if (len == 0)
		return; /* an idle isochronous packet */
	if (uvc_payload_header(data, len, &hl, &info) < 0) {
		if (cam->asm_active)
			cam->asm_bad = true;
		return;
	}
	fid = info & UVC_PH_FID;
	if (cam->asm_active && fid != cam->asm_fid)
		frame_finish(cam); /* a new frame began without EOF on the last */
	if (!cam->asm_active) {
		/* Still the frame that ended with EOF: nothing new yet. */
		if (fid == cam->last_fid)
			return;
		cam->asm_active = true;
		cam->asm_bad = false;
		cam->asm_len = 0;
		cam->asm_fid = fid;
	}
	if (info & UVC_PH_ERR)
		cam->asm_bad = true;
	if (len - hl > cam->asm_cap - cam->asm_len)
		cam->asm_bad = true;
	else if (len > hl) {
		memcpy(cam->asm_buf + cam->asm_len, data + hl, len - hl);
		cam->asm_len += len - hl;
	}
	if (info & UVC_PH_EOF) {
		cam->last_fid = fid;
		frame_finish(cam);
	}
}

/* ---- Streaming ---- */

static void stream_finished(struct cam *cam)
{
	libusb_device_handle *usb = cam->fn->dev->usb;
	int r = 0;

	cam->active = false;
	/* Streaming stops: altsetting 0 frees the bus bandwidth; a bulk camera wants its halt cleared. */
	if (cam->bulk)
		r = libusb_clear_halt(usb, cam->ep);
	if (r == 0 && (cam->alt != 0 || cam->bulk))
		r = libusb_set_interface_alt_setting(usb, cam->vs_if, 0);
	if (r < 0)
		drv_log(LOG_WARNING, "uvc: stopping the stream: %s", libusb_strerror(r));
	cam->alt = 0;
	free(cam->asm_buf);
	cam->asm_buf = NULL;
	cam->asm_active = false;
	drv_log(LOG_INFO, "uvc: stream stopped: %llu frames, %llu dropped",
		(unsigned long long)cam->frames_ok, (unsigned long long)cam->frames_dropped);
	if (cam->state == ST_STOPPING || (cam->state == ST_FAILED && cam->users == 0))
		cam->state = ST_IDLE;
	if (cam->state == ST_IDLE && cam->users > 0)
		stream_start(cam);
}

/* Once nothing of a stopped or failed stream is in flight: let the bus go. */
static void maybe_finished(struct cam *cam)
{
	if (cam->active && cam->live == 0 && (cam->state == ST_STOPPING || cam->state == ST_FAILED))
		stream_finished(cam);
}

static void stream_cancel_all(struct cam *cam)
{
	for (unsigned i = 0; i < UVC_XFERS; i++)
		if (cam->xfers[i] != NULL)
			drv_xfer_cancel(cam->xfers[i]);
}

static void stream_fail(struct cam *cam, int err)
{
	if (cam->state == ST_FAILED)
		return;
	drv_log(LOG_ERR, "uvc: stream failed: %s", strerror(-err));
	cam->state = ST_FAILED;
	cam->error = err;
	waiters_serve(cam);
	stream_cancel_all(cam);
	maybe_finished(cam);
}

/* The last reader closed. */
static void stream_stop(struct cam *cam)
{
	if (cam->state == ST_RUNNING || cam->state == ST_PROBING) {
		cam->state = ST_STOPPING;
		stream_cancel_all(cam);
		maybe_finished(cam);
	} else if (cam->state == ST_FAILED && !cam->active) {
		cam->state = ST_IDLE;
	}
}

static void xfer_done(struct drv_xfer *x)
{
	struct cam *cam = x->arg;
	struct libusb_transfer *t = x->t;
	int r = drv_xfer_errno(t->status);

	/* A payload longer than the transfer: that frame is lost, the stream goes on. */
	if (cam->state == ST_RUNNING && r == -EOVERFLOW && t->type == LIBUSB_TRANSFER_TYPE_BULK) {
		if (cam->asm_active)
			cam->asm_bad = true;
		if ((r = drv_xfer_submit(x)) == 0)
			return;
	}
	if (cam->state == ST_RUNNING && r == 0) {
		if (t->type == LIBUSB_TRANSFER_TYPE_ISOCHRONOUS) {
			for (int i = 0; i < t->num_iso_packets; i++) {
				struct libusb_iso_packet_descriptor *p = &t->iso_packet_desc[i];
				if (p->status != LIBUSB_TRANSFER_COMPLETED || p->actual_length > p->length) {
					/* A lost packet: the frame it belonged to is incomplete. */
					if (cam->asm_active)
						cam->asm_bad = true;
					continue;
				}
				payload(cam, libusb_get_iso_packet_buffer_simple(t, (unsigned)i),
					p->actual_length);
			}
		} else {
			payload(cam, t->buffer, (size_t)t->actual_length);
		}
		if (cam->state == ST_RUNNING && (r = drv_xfer_submit(x)) == 0)
			return;
	}
	for (unsigned i = 0; i < UVC_XFERS; i++)
		if (cam->xfers[i] == x)
			cam->xfers[i] = NULL;
	cam->live--;
	drv_xfer_free(x);
	/* Cancelled while running: the host is exiting and stops every transfer. */
	if (cam->state == ST_RUNNING && r == -EINTR)
		cam->state = ST_STOPPING;
	else if (cam->state == ST_RUNNING)
		stream_fail(cam, r == -ENODEV ? -ENODEV : -EIO);
	maybe_finished(cam);
}

/* The least bandwidth that carries `payload` bytes per microframe; the largest if none does. */
static const struct iso_alt *pick_alt(const struct cam *cam, uint32_t payload)
{
	for (unsigned i = 0; i < cam->nalts; i++)
		if (cam->alts[i].bytes >= payload)
			return &cam->alts[i];
	return cam->nalts > 0 ? &cam->alts[cam->nalts - 1] : NULL;
}

static int stream_submit(struct cam *cam)
{
	libusb_device_handle *usb = cam->fn->dev->usb;
	size_t len;
	int r;

	/*
	 * MJPEG frames vary: the most the camera announced (some announce too
	 * little in the probe answer), at least width x height x 2.
	 */
	cam->asm_cap = frame_bytes(cam);
	if (is_mjpeg(cam)) {
		if (cam->probe.max_frame_size > cam->asm_cap)
			cam->asm_cap = cam->probe.max_frame_size;
		if (cam->frame->max_frame_size > cam->asm_cap)
			cam->asm_cap = cam->frame->max_frame_size;
	}
	if (cam->asm_cap > UVC_MAX_FRAME)
		cam->asm_cap = UVC_MAX_FRAME;
	free(cam->asm_buf);
	if ((cam->asm_buf = malloc(cam->asm_cap)) == NULL)
		return -ENOMEM;
	cam->asm_active = false;
	cam->last_fid = -1;
	if (cam->bulk) {
		len = cam->probe.max_payload;
		if (len == 0 || len > UVC_MAX_BULK_PAYLOAD)
			len = UVC_MAX_BULK_PAYLOAD;
	} else {
		const struct iso_alt *a = pick_alt(cam, cam->probe.max_payload);
		if (a == NULL)
			return -ENODEV;
		if (a->bytes < cam->probe.max_payload)
			drv_log(LOG_WARNING,
				"uvc: the camera wants %u bytes per microframe, at most %u can be had",
				cam->probe.max_payload, a->bytes);
		if ((r = drv_usb_errno(libusb_set_interface_alt_setting(usb, cam->vs_if, a->alt))) < 0)
			return r;
		cam->alt = a->alt;
		len = (size_t)a->bytes * UVC_ISO_PACKETS;
		drv_log(LOG_INFO, "uvc: altsetting %u, %u bytes per microframe", a->alt, a->bytes);
	}
	for (unsigned i = 0; i < UVC_XFERS; i++) {
		struct drv_xfer *x = drv_xfer_new_iso(len, cam->bulk ? 0 : UVC_ISO_PACKETS, xfer_done, cam);
		if (x == NULL)
			return -ENOMEM;
		if (cam->bulk) {
			libusb_fill_bulk_transfer(x->t, usb, cam->ep, x->t->buffer, (int)len, NULL, NULL, 0);
		} else {
			libusb_fill_iso_transfer(x->t, usb, cam->ep, x->t->buffer, (int)len, UVC_ISO_PACKETS,
						 NULL, NULL, 0);
			libusb_set_iso_packet_lengths(x->t, (unsigned)(len / UVC_ISO_PACKETS));
		}
		if ((r = drv_xfer_submit(x)) < 0) {
			drv_xfer_free(x);
			return r;
		}
		cam->xfers[i] = x;
		cam->live++;
	}
	return 0;
}

static void probe_step(void *arg, int r, const uint8_t *data, size_t len);

/* Probe: SET_CUR, GET_CUR; commit: SET_CUR with what the camera answered. */
static void probe_next(struct cam *cam)
{
	int r;

	switch (cam->probe_step) {
	case 0:
		r = ctrl_submit(cam, NULL, REQ_TYPE_OUT, UVC_SET_CUR, UVC_VS_PROBE_CONTROL, 0, cam->vs_if,
				cam->probe_buf, (uint16_t)cam->probe_len, probe_step, cam);
		break;
	case 1:
		r = ctrl_submit(cam, NULL, REQ_TYPE_IN, UVC_GET_CUR, UVC_VS_PROBE_CONTROL, 0, cam->vs_if,
				NULL, (uint16_t)cam->probe_len, probe_step, cam);
		break;
	default:
		r = ctrl_submit(cam, NULL, REQ_TYPE_OUT, UVC_SET_CUR, UVC_VS_COMMIT_CONTROL, 0, cam->vs_if,
				cam->probe_buf, (uint16_t)cam->probe_len, probe_step, cam);
		break;
	}
	if (r < 0)
		stream_fail(cam, r);
	else
		cam->live++;
}

static void probe_step(void *arg, int r, const uint8_t *data, size_t len)
{
	struct cam *cam = arg;

	cam->live--;
	if (cam->state != ST_PROBING)
		return maybe_finished(cam);
	if (r < 0)
		return stream_fail(cam, r == -ENODEV ? r : -EIO);
	if (cam->probe_step == 1) {
		if (uvc_probe_decode(data, len, &cam->probe) < 0) {
			drv_log(LOG_ERR, "uvc: probe answer of %zu bytes", len);
			return stream_fail(cam, -EIO);
		}
		if (cam->probe.format_index != cam->fmt->index ||
		    cam->probe.frame_index != cam->frame->index) {
			drv_log(LOG_ERR, "uvc: the camera answered format %u frame %u for %u/%u",
				cam->probe.format_index, cam->probe.frame_index, cam->fmt->index,
				cam->frame->index);
			return stream_fail(cam, -EIO);
		}
		memcpy(cam->probe_buf, data, len < cam->probe_len ? len : cam->probe_len);
	}
	if (cam->probe_step++ < 2)
		return probe_next(cam);
	drv_log(LOG_INFO, "uvc: committed %s %ux%u interval %u: frames up to %u bytes, payloads up to %u",
		uvc_format_name(cam->fmt->kind), cam->frame->width, cam->frame->height, cam->probe.interval,
		cam->probe.max_frame_size, cam->probe.max_payload);
	cam->state = ST_RUNNING;
	if ((r = stream_submit(cam)) < 0)
		stream_fail(cam, r);
}

static void stream_start(struct cam *cam)
{
	struct uvc_probe p = {
	    .hint = 1, /* keep dwFrameInterval */
	    .format_index = cam->fmt->index,
	    .frame_index = cam->frame->index,
	    .interval = cam->interval,
	};

	cam->state = ST_PROBING;
	cam->active = true;
	cam->error = 0;
	/* A frame of the last stream may be of another format: never serve it. */
	free(cam->latest);
	cam->latest = NULL;
	cam->latest_len = 0;
	cam->probe_step = 0;
	cam->probe_len = uvc_probe_len(cam->vc.bcd_uvc);
	uvc_probe_encode(&p, cam->probe_buf, cam->probe_len);
	probe_next(cam);
}

/* ---- frame.jpg, frame.ppm, stream ---- */

static int view_open(struct drv_handle *h, uint32_t flags)
{
	struct cam *cam = h->file->priv;
	struct view *v;

	(void)flags;
	/* frame.jpg only while the format is MJPEG, frame.ppm only while it is YUY2. */
	if ((h->file == cam->f_jpg && !is_mjpeg(cam)) || (h->file == cam->f_ppm && is_mjpeg(cam)))
		return -ENODATA;
	if ((v = calloc(1, sizeof(*v))) == NULL)
		return -ENOMEM;
	h->priv = v;
	cam->users++;
	/*
	 * A new reader starts a failed stream again (handles that saw the
	 * error wait for frames with it); a stopping one restarts once its
	 * transfers are back.
	 */
	if (cam->state == ST_FAILED)
		cam->state = cam->active ? ST_STOPPING : ST_IDLE;
	if (cam->state == ST_IDLE)
		stream_start(cam);
	return 0;
}

static void view_release(struct drv_handle *h)
{
	struct cam *cam = h->file->priv;
	struct view *v = h->priv;

	free(v->data);
	free(v);
	if (--cam->users == 0)
		stream_stop(cam);
}

static void view_read(struct drv_req *req)
{
	struct cam *cam = req->h->file->priv;
	struct view *v = req->h->priv;
	bool stream = is_stream_file(req->h);

	if (cam->state == ST_FAILED)
		return drv_reply(req, cam->error, NULL, 0);
	if (stream && v->off < v->len)
		return view_reply(req);
	if (!stream && v->have && !(req->offset == 0 && v->eof))
		return view_reply(req);
	/* A fresh frame: frame.* one that ends after this read began, stream the next after what it sent. */
	v->after = stream && v->have ? v->seq : cam->seq;
	if (stream && !v->have && cam->latest != NULL && cam->state == ST_RUNNING)
		v->after = cam->seq - 1; /* a new reader of stream starts with the newest frame */
	if (req->flags & PROTO_F_NONBLOCK) {
		if (cam->latest != NULL && cam->seq > v->after && cam->state == ST_RUNNING) {
			int r = view_fill(cam, v, stream);
			return r < 0 ? drv_reply(req, r, NULL, 0) : view_reply(req);
		}
		return drv_reply(req, -EAGAIN, NULL, 0);
	}
	req->cancel = waiter_cancel;
	TAILQ_INSERT_TAIL(&cam->waiters, req, wait);
	waiters_serve(cam);
}

static unsigned view_poll(struct drv_handle *h)
{
	struct cam *cam = h->file->priv;
	struct view *v = h->priv;

	if (cam->state == ST_FAILED)
		return POLLIN | POLLERR;
	if (v->off < v->len || (cam->latest != NULL && cam->seq > (v->have ? v->seq : 0)))
		return POLLIN;
	return 0;
}

static const struct drv_file_ops view_ops = {
    .open = view_open,
    .read = view_read,
    .poll = view_poll,
    .release = view_release,
};

/* ---- formats, format ---- */

static void formats_read(struct drv_req *req)
{
	struct cam *cam = req->h->file->priv;

	drv_reply_slice(req, cam->formats, cam->formats_len);
}

static const struct drv_file_ops formats_ops = {
    .read = formats_read,
};

static void format_read(struct drv_req *req)
{
	struct cam *cam = req->h->file->priv;
	char text[64], rate[16];

	uvc_interval_format(rate, sizeof(rate), cam->interval);
	int n = snprintf(text, sizeof(text), "%s %ux%u %s\n", uvc_format_name(cam->fmt->kind),
			 cam->frame->width, cam->frame->height, rate);
	drv_reply_slice(req, text, n > 0 && (size_t)n < sizeof(text) ? (size_t)n : 0);
}

static void format_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct cam *cam = req->h->file->priv;
	char text[64];
	uint8_t kind;
	uint16_t w, h;
	uint32_t mfps, interval;

	if (len == 0 || len >= sizeof(text))
		return drv_reply(req, -EINVAL, NULL, 0);
	memcpy(text, data, len);
	text[len] = '\0';
	if (uvc_parse_format_line(text, &kind, &w, &h, &mfps) < 0)
		return drv_reply(req, -EINVAL, NULL, 0);
	for (unsigned i = 0; i < cam->vs.num_formats; i++) {
		const struct uvc_format *f = &cam->vs.formats[i];
		if (f->kind != kind)
			continue;
		for (unsigned j = 0; j < f->num_frames; j++) {
			const struct uvc_frame *fr = &f->frames[j];
			if (fr->width != w || fr->height != h ||
			    uvc_frame_pick_interval(fr, mfps, &interval) < 0)
				continue;
			/* Like V4L2's S_FMT: not while frames are flowing. */
			if (cam->users > 0)
				return drv_reply(req, -EBUSY, NULL, 0);
			cam->fmt = f;
			cam->frame = fr;
			cam->interval = interval;
			drv_log(LOG_INFO, "uvc: format %s", text);
			return drv_reply(req, (int32_t)len, NULL, 0);
		}
	}
	drv_reply(req, -EINVAL, NULL, 0);
}

static const struct drv_file_ops format_ops = {
    .read = format_read,
    .write = format_write,
};

/* ---- controls/ ---- */

/* A control request in progress: a read (GET_CUR) or a write (ranges, then SET_CUR). */
struct ctl_req {
	struct drv_req *req;
	struct cam_control *ctl;
	int step;
	int32_t value;
	size_t len; /* of the write */
};

static uint32_t le_value(const uint8_t *p, unsigned size)
{
	uint32_t v = 0;

	for (unsigned i = 0; i < size; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static int32_t ctl_decode(const struct uvc_control *c, const uint8_t *p)
{
	uint32_t v = le_value(p, c->size);

	if (c->is_signed && c->size < 4 && (v & (1u << (8 * c->size - 1))))
		v |= ~0u << (8 * c->size);
	return (int32_t)v;
}

static void ctl_step(void *arg, int r, const uint8_t *data, size_t len);

static void ctl_finish(struct ctl_req *cr, int32_t status)
{
	cr->req->xfer = NULL;
	drv_reply(cr->req, status, NULL, 0);
	free(cr);
}

static int ctl_get(struct ctl_req *cr, uint8_t request)
{
	struct cam_control *ctl = cr->ctl;

	return ctrl_submit(ctl->cam, cr->req, REQ_TYPE_IN, request, ctl->c.selector, ctl->c.unit,
			   ctl->cam->fn->ifnum, NULL, ctl->c.size, ctl_step, cr);
}

/* Checks the value against what the camera said; 0, -ERANGE or -EINVAL. */
static int ctl_check(const struct cam_control *ctl, int32_t v)
{
	if (ctl->c.bitmap)
		return v != 0 && (v & (v - 1)) == 0 && (v & ~ctl->res) == 0 ? 0 : -EINVAL;
	if (v < ctl->min || v > ctl->max)
		return -ERANGE;
	if (ctl->res > 1 && ((int64_t)v - ctl->min) % ctl->res != 0)
		return -EINVAL;
	return 0;
}

/* Write steps: 1 GET_MIN, 2 GET_MAX, 3 GET_RES (bitmaps: 3 only), 4 SET_CUR. */
static void ctl_write_next(struct ctl_req *cr)
{
	struct cam_control *ctl = cr->ctl;
	uint8_t buf[4];
	int r;

	if (cr->step == 4) {
		if ((r = ctl_check(ctl, cr->value)) < 0)
			return ctl_finish(cr, r);
		for (unsigned i = 0; i < ctl->c.size; i++)
			buf[i] = (uint8_t)((uint32_t)cr->value >> (8 * i));
		r = ctrl_submit(ctl->cam, cr->req, REQ_TYPE_OUT, UVC_SET_CUR, ctl->c.selector, ctl->c.unit,
				ctl->cam->fn->ifnum, buf, ctl->c.size, ctl_step, cr);
	} else {
		static const uint8_t reqs[] = {0, UVC_GET_MIN, UVC_GET_MAX, UVC_GET_RES};
		r = ctl_get(cr, reqs[cr->step]);
	}
	if (r < 0)
		ctl_finish(cr, r);
}

static void ctl_step(void *arg, int r, const uint8_t *data, size_t len)
{
	struct ctl_req *cr = arg;
	struct cam_control *ctl = cr->ctl;
	char text[24];

	if (r < 0)
		return ctl_finish(cr, r);
	if (cr->step == 0 || (cr->step >= 1 && cr->step <= 3)) {
		if (len != ctl->c.size) {
			drv_log(LOG_WARNING, "uvc: %s: the camera answered %zu bytes, not %u", ctl->c.name,
				len, ctl->c.size);
			return ctl_finish(cr, -EIO);
		}
	}
	switch (cr->step) {
	case 0: { /* GET_CUR for a read */
		int n = snprintf(text, sizeof(text), "%d\n", ctl_decode(&ctl->c, data));
		cr->req->xfer = NULL;
		drv_reply_slice(cr->req, text, (size_t)n);
		free(cr);
		return;
	}
	case 1:
		ctl->min = ctl_decode(&ctl->c, data);
		break;
	case 2:
		ctl->max = ctl_decode(&ctl->c, data);
		break;
	case 3:
		/* GET_RES is a step, never signed; a bitmap's is the supported modes. */
		ctl->res = (int32_t)le_value(data, ctl->c.size);
		if (ctl->res <= 0 && !ctl->c.bitmap)
			ctl->res = 1;
		ctl->have_range = true;
		break;
	case 4:
		return ctl_finish(cr, (int32_t)cr->len);
	}
	cr->step++;
	ctl_write_next(cr);
}

static void ctl_read(struct drv_req *req)
{
	struct cam_control *ctl = req->h->file->priv;
	struct ctl_req *cr = calloc(1, sizeof(*cr));
	int r;

	if (cr == NULL)
		return drv_reply(req, -ENOMEM, NULL, 0);
	*cr = (struct ctl_req){.req = req, .ctl = ctl, .step = 0};
	if ((r = ctl_get(cr, UVC_GET_CUR)) < 0)
		ctl_finish(cr, r);
}

static void ctl_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct cam_control *ctl = req->h->file->priv;
	struct ctl_req *cr;
	char text[24], *end;
	long v;

	if (len == 0 || len >= sizeof(text))
		return drv_reply(req, -EINVAL, NULL, 0);
	memcpy(text, data, len);
	text[len] = '\0';
	if (text[len - 1] == '\n')
		text[len - 1] = '\0';
	errno = 0;
	v = strtol(text, &end, 0);
	if (text[0] == '\0' || *end != '\0' || errno != 0 || v < INT32_MIN || v > INT32_MAX)
		return drv_reply(req, -EINVAL, NULL, 0);
	if ((cr = calloc(1, sizeof(*cr))) == NULL)
		return drv_reply(req, -ENOMEM, NULL, 0);
	/* The range is asked once; a bitmap control has only GET_RES. */
	*cr = (struct ctl_req){.req = req, .ctl = ctl, .value = (int32_t)v, .len = len};
	cr->step = ctl->have_range ? 4 : ctl->c.bitmap ? 3 : 1;
	ctl_write_next(cr);
}

static const struct drv_file_ops ctl_ops = {
    .read = ctl_read,
    .write = ctl_write,
};

/* ---- Probe ---- */

static const struct uvc_format *default_format(const struct cam *cam)
{
	/* MJPEG first: it is what frame.jpg and stream serve as they are. */
	for (unsigned i = 0; i < cam->vs.num_formats; i++)
		if (cam->vs.formats[i].kind == UVC_FORMAT_MJPEG)
			return &cam->vs.formats[i];
	return cam->vs.num_formats > 0 ? &cam->vs.formats[0] : NULL;
}

static void select_default(struct cam *cam)
{
	const struct uvc_format *f = default_format(cam);

	cam->fmt = f;
	cam->frame = &f->frames[0];
	for (unsigned j = 0; j < f->num_frames; j++)
		if (f->frames[j].index == f->default_frame)
			cam->frame = &f->frames[j];
	cam->interval = cam->frame->default_interval;
	if (uvc_frame_pick_interval(cam->frame, uvc_interval_mfps(cam->interval), &cam->interval) < 0)
		cam->interval = cam->frame->intervals[0];
}

static int uvc_probe(struct drv_function *fn)
{
	const struct drv_device *dev = fn->dev;
	const struct usbdesc_iface *vc_if = iface_of(dev, fn->ifnum);
	struct usbdesc_iface d;
	const char *why = NULL;
	struct cam *cam;
	bool any_jpeg = false, any_yuy2 = false;
	int r;

	if (vc_if == NULL || (cam = calloc(1, sizeof(*cam))) == NULL)
		return vc_if == NULL ? -ENOENT : -ENOMEM;
	fn->priv = cam;
	cam->fn = fn;
	TAILQ_INIT(&cam->waiters);
	if (uvcdesc_parse_control(dev->desc + vc_if->raw_off, vc_if->raw_len, &cam->vc, &why) < 0) {
		drv_log(LOG_ERR, "uvc: VideoControl descriptors: %s", why);
		return -EINVAL;
	}
	/* The first streaming interface with a format we serve is the camera's. */
	for (unsigned i = 0; i < cam->vc.num_streaming && cam->fmt == NULL; i++) {
		uint8_t ifnum = cam->vc.streaming[i];
		if (usbdesc_find_alt(dev->desc, dev->desc_len, ifnum, 0, &d) < 0 || d.cls != 0x0e ||
		    d.subclass != UVC_SC_VIDEOSTREAMING)
			continue;
		if (uvcdesc_parse_streaming(dev->desc + d.raw_off, d.raw_len, &cam->vs, &why) < 0) {
			drv_log(LOG_WARNING, "uvc: streaming interface %u: %s", ifnum, why);
			continue;
		}
		if (cam->vs.num_formats == 0)
			continue;
		if ((r = drv_claim_interface(fn, ifnum)) < 0) {
			drv_log(LOG_ERR, "uvc: claiming streaming interface %u: %s", ifnum, strerror(-r));
			return r;
		}
		cam->vs_if = ifnum;
		cam->ep = cam->vs.endpoint;
		collect_alts(cam);
		if (!cam->bulk && cam->nalts == 0) {
			drv_log(LOG_WARNING, "uvc: streaming interface %u has no endpoint %02x", ifnum,
				cam->ep);
			continue;
		}
		select_default(cam);
	}
	if (cam->fmt == NULL) {
		drv_log(LOG_ERR, "uvc: no MJPEG or YUY2 stream");
		return -ENODEV;
	}
	for (unsigned i = 0; i < cam->vs.num_formats; i++) {
		any_jpeg |= cam->vs.formats[i].kind == UVC_FORMAT_MJPEG;
		any_yuy2 |= cam->vs.formats[i].kind == UVC_FORMAT_YUY2;
	}
	if ((r = build_formats(cam)) < 0)
		return r;
	if (drv_file_add(fn, "formats", 0444, PROTO_KIND_SMALL, &formats_ops, cam) == NULL ||
	    drv_file_add(fn, "format", 0666, PROTO_KIND_SMALL, &format_ops, cam) == NULL)
		return -ENOSPC;
	/* Reads wait for frames: a camera that stops sending is the daemon's timeout= to judge. */
	if (any_jpeg &&
	    (cam->f_jpg = drv_file_add(fn, "frame.jpg", 0444, PROTO_KIND_SMALL, &view_ops, cam)) == NULL)
		return -ENOSPC;
	if (any_yuy2 &&
	    (cam->f_ppm = drv_file_add(fn, "frame.ppm", 0444, PROTO_KIND_SMALL, &view_ops, cam)) == NULL)
		return -ENOSPC;
	if ((cam->f_stream = drv_file_add(fn, "stream", 0444, PROTO_KIND_STREAM, &view_ops, cam)) == NULL)
		return -ENOSPC;
	for (unsigned i = 0; i < cam->vc.num_controls; i++) {
		struct cam_control *ctl = &cam->controls[i];
		char name[PROTO_MAX_NAME + 1];

		ctl->cam = cam;
		ctl->c = cam->vc.controls[i];
		snprintf(name, sizeof(name), "controls/%s", ctl->c.name);
		if (drv_file_add(fn, name, 0666, PROTO_KIND_SMALL, &ctl_ops, ctl) == NULL)
			return -ENOSPC;
	}
	drv_log(LOG_INFO,
		"uvc: UVC %x.%02x, streaming interface %u (%s, endpoint %02x, %u altsettings), %u formats, "
		"%u controls",
		cam->vc.bcd_uvc >> 8, cam->vc.bcd_uvc & 0xff, cam->vs_if, cam->bulk ? "bulk" : "isochronous",
		cam->ep, cam->nalts, cam->vs.num_formats, cam->vc.num_controls);
	return 0;
}

const struct driver_ops uvc_driver = {
    .name = "uvc",
    .probe = uvc_probe,
};
