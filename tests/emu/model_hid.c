/*
 * HID device models, one interface each (class 3), sharing one engine:
 * GET_DESCRIPTOR(HID / Report), GET_REPORT, SET_REPORT, SET_IDLE on ep0,
 * and input reports on interrupt IN 0x81 that complete no sooner than the
 * model's interval after the previous one (a GLib timeout in the worker's
 * main context; the worker never blocks).
 *
 * `thermo` (1209:0030): a thermometer in the manner of the PCsensor TEMPer,
 *   but with numbered reports.  Input report 1 (9 bytes): 01, sequence
 *   number u32, temperature in 1/100 degC s16, current interval in ms u16,
 *   all little-endian.  Feature report 2 (3 bytes): 02, interval in ms u16,
 *   1..60000 (default 100); SET_REPORT with anything else stalls.  The
 *   sequence number counts the reports sent, so a reader sees gaps when
 *   reports were dropped.
 * `keypad` (1209:0031): the HID 1.11 boot keyboard (Appendix B.1),
 *   unnumbered: 8-byte input reports every 10 ms -- modifiers 0, then the
 *   LED state in the reserved byte (so a test sees an output report
 *   arrive), key usage 0x04 + seq % 26 ('a'..'z'), seq & 0xff, four zeros
 *   -- and a 1-byte LED output report by SET_REPORT (no interrupt OUT).
 * `keypad-out` (1209:0032): the keypad with an interrupt OUT endpoint 0x02
 *   for the LED report; its SET_REPORT(Output) stalls, so an LED change
 *   that shows proves the report took the endpoint.
 */
#include "emu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "util.h"

#define HID_DT_HID	   0x21
#define HID_DT_REPORT	   0x22
#define HID_REQ_GET_REPORT 0x01
#define HID_REQ_GET_IDLE   0x02
#define HID_REQ_SET_REPORT 0x09
#define HID_REQ_SET_IDLE   0x0a
#define REPORT_INPUT	   1
#define REPORT_OUTPUT	   2
#define REPORT_FEATURE	   3
#define HID_IN_EP	   0x81
#define HID_OUT_EP	   0x02

#define THERMO_DEFAULT_INTERVAL_MS 100
#define THERMO_MAX_INTERVAL_MS	   60000
#define KEYPAD_INTERVAL_MS	   10

struct hidm;

struct hidm_spec {
	const uint8_t *rdesc;
	size_t rdesc_len;
	const uint8_t *hid_desc; /* the 0x21 descriptor, also in the configuration */
	uint16_t interval_ms;	 /* at start */
	/* The next input report into buf; its length. */
	size_t (*input)(struct hidm *h, uint8_t *buf, size_t cap);
	/* GET_REPORT: bytes, or -EPIPE for no such report. */
	int (*get_report)(struct hidm *h, uint8_t type, uint8_t id, uint8_t *buf, size_t cap);
	/* SET_REPORT, or an OUT endpoint report (via_ep): 0 or -EPIPE. */
	int (*set_report)(struct hidm *h, uint8_t type, uint8_t id, const uint8_t *data, size_t len,
			  bool via_ep);
};

struct hidm {
	const struct hidm_spec *spec;
	struct emu_dev *dev;
	GSource *timer;
	uint64_t last_us; /* when the last input report went out; 0: never */
	uint32_t seq;
	uint16_t interval_ms;
	uint8_t leds;
	uint8_t idle;
};

/* ---- Engine ---- */

static void hidm_pump(struct hidm *h);

static gboolean on_timer(gpointer p)
{
	struct hidm *h = p;

	g_source_unref(h->timer);
	h->timer = NULL;
	hidm_pump(h);
	return G_SOURCE_REMOVE;
}

/* Completes the pending IN URB if its time has come, else arms the timer for it. */
static void hidm_pump(struct hidm *h)
{
	struct emu_urb *urb;

	while (h->timer == NULL && (urb = emu_urb_first_pending(h->dev, HID_IN_EP)) != NULL) {
		uint64_t now = now_us(), due = h->last_us + (uint64_t)h->interval_ms * 1000;

		if (h->last_us != 0 && now < due) {
			guint ms = (guint)((due - now + 999) / 1000);
			h->timer = g_timeout_source_new(ms);
			g_source_set_callback(h->timer, on_timer, h, NULL);
			g_source_attach(h->timer, g_main_context_get_thread_default());
			return;
		}
		uint8_t report[64];
		size_t n = h->spec->input(h, report, sizeof(report));
		h->last_us = now;
		h->seq++;
		/* A buffer shorter than the report: babble, as a real device's would. */
		if (n > urb->length) {
			emu_urb_complete(urb, -EOVERFLOW, 0);
			continue;
		}
		memcpy(urb->data, report, n);
		emu_urb_complete(urb, 0, (uint32_t)n);
	}
}

static int hidm_init(struct emu_dev *dev, const struct hidm_spec *spec)
{
	struct hidm *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return -ENOMEM;
	h->spec = spec;
	h->dev = dev;
	h->interval_ms = spec->interval_ms;
	dev->state = h;
	return 0;
}

static void hidm_fini(struct emu_dev *dev)
{
	struct hidm *h = dev->state;

	if (h == NULL)
		return;
	if (h->timer != NULL) {
		g_source_destroy(h->timer);
		g_source_unref(h->timer);
	}
	free(h);
	dev->state = NULL;
}

static void hidm_submit(struct emu_dev *dev, struct emu_urb *urb)
{
	struct hidm *h = dev->state;

	if (urb->endpoint == HID_IN_EP)
		return hidm_pump(h);
	if (urb->endpoint == HID_OUT_EP) {
		int r = h->spec->set_report(h, REPORT_OUTPUT, 0, urb->data, urb->length, true);
		emu_urb_complete(urb, r, r == 0 ? urb->length : 0);
	}
}

static int reply(uint8_t *data, uint16_t room, const void *src, size_t n)
{
	if (n > room)
		n = room;
	memcpy(data, src, n);
	return (int)n;
}

static int hidm_control(struct emu_dev *dev, struct emu_urb *urb, const struct emu_setup *s, uint8_t *data)
{
	struct hidm *h = dev->state;
	uint8_t hi = s->value >> 8, lo = s->value & 0xff;

	(void)urb;
	if ((s->index & 0xff) != 0)
		return -EPIPE; /* one interface */
	if (s->request_type == 0x81 && s->request == 0x06) {
		if (hi == HID_DT_REPORT)
			return reply(data, s->length, h->spec->rdesc, h->spec->rdesc_len);
		if (hi == HID_DT_HID)
			return reply(data, s->length, h->spec->hid_desc, h->spec->hid_desc[0]);
		return -EPIPE;
	}
	if (s->request_type == 0xa1 && s->request == HID_REQ_GET_REPORT) {
		uint8_t buf[64];
		int n = h->spec->get_report(h, hi, lo, buf, sizeof(buf));
		return n < 0 ? n : reply(data, s->length, buf, (size_t)n);
	}
	if (s->request_type == 0x21 && s->request == HID_REQ_SET_REPORT)
		return h->spec->set_report(h, hi, lo, data, s->length, false) < 0 ? -EPIPE : s->length;
	if (s->request_type == 0x21 && s->request == HID_REQ_SET_IDLE) {
		h->idle = hi;
		return 0;
	}
	if (s->request_type == 0xa1 && s->request == HID_REQ_GET_IDLE)
		return reply(data, s->length, &h->idle, 1);
	return -EPIPE;
}

/* ---- thermo ---- */

static const uint8_t thermo_rdesc[] = {
    0x06, 0x00, 0xff,		  /* Usage Page (vendor 0xFF00) */
    0x09, 0x01,			  /* Usage 1 */
    0xa1, 0x01,			  /* Collection (Application) */
    0x85, 0x01,			  /*   Report ID 1: the reading */
    0x09, 0x02,			  /*   Usage 2 */
    0x15, 0x00, 0x26, 0xff, 0x00, /*   Logical 0..255 */
    0x75, 0x08, 0x95, 0x08,	  /*   8 x 8 bits */
    0x81, 0x02,			  /*   Input (Data, Var, Abs) */
    0x85, 0x02,			  /*   Report ID 2: the interval */
    0x09, 0x03,			  /*   Usage 3 */
    0xa4,			  /*   Push */
    0x27, 0x60, 0xea, 0x00, 0x00, /*     Logical Maximum 60000 */
    0x75, 0x10, 0x95, 0x01,	  /*     1 x 16 bits */
    0xb1, 0x02,			  /*     Feature (Data, Var, Abs) */
    0xb4,			  /*   Pop */
    0xc0,			  /* End Collection */
};

static const uint8_t thermo_hid_desc[] = {
    9, HID_DT_HID, 0x11, 0x01, 0x00, 1, HID_DT_REPORT, sizeof(thermo_rdesc) & 0xff, sizeof(thermo_rdesc) >> 8,
};

static size_t thermo_reading(struct hidm *h, uint8_t *buf, uint32_t seq)
{
	buf[0] = 1;
	put_le32(buf + 1, seq);
	put_le16(buf + 5, (uint16_t)(int16_t)(2150 + (int)(seq % 7) * 10));
	put_le16(buf + 7, h->interval_ms);
	return 9;
}

static size_t thermo_input(struct hidm *h, uint8_t *buf, size_t cap)
{
	(void)cap;
	return thermo_reading(h, buf, h->seq);
}

static int thermo_get_report(struct hidm *h, uint8_t type, uint8_t id, uint8_t *buf, size_t cap)
{
	(void)cap;
	if (type == REPORT_INPUT && id == 1)
		return (int)thermo_reading(h, buf, h->seq);
	if (type == REPORT_FEATURE && id == 2) {
		buf[0] = 2;
		put_le16(buf + 1, h->interval_ms);
		return 3;
	}
	return -EPIPE;
}

static int thermo_set_report(struct hidm *h, uint8_t type, uint8_t id, const uint8_t *data, size_t len,
			     bool via_ep)
{
	(void)via_ep;
	if (type != REPORT_FEATURE || id != 2 || len != 3 || data[0] != 2)
		return -EPIPE;
	uint16_t ms = get_le16(data + 1);
	if (ms == 0 || ms > THERMO_MAX_INTERVAL_MS)
		return -EPIPE;
	h->interval_ms = ms;
	emu_log("%s: thermo: interval %u ms", h->dev->sysname, ms);
	/* A report waiting for the old, longer interval comes at the new one. */
	if (h->timer != NULL) {
		g_source_destroy(h->timer);
		g_source_unref(h->timer);
		h->timer = NULL;
	}
	hidm_pump(h);
	return 0;
}

static const struct hidm_spec thermo_spec = {
    .rdesc = thermo_rdesc,
    .rdesc_len = sizeof(thermo_rdesc),
    .hid_desc = thermo_hid_desc,
    .interval_ms = THERMO_DEFAULT_INTERVAL_MS,
    .input = thermo_input,
    .get_report = thermo_get_report,
    .set_report = thermo_set_report,
};

static int thermo_init(struct emu_dev *dev)
{
	return hidm_init(dev, &thermo_spec);
}

/* ---- keypad, keypad-out ---- */

/* HID 1.11 Appendix B.1. */
static const uint8_t keypad_rdesc[] = {
    0x05, 0x01, 0x09, 0x06, 0xa1, 0x01, 0x05, 0x07, 0x19, 0xe0, 0x29, 0xe7, 0x15, 0x00, 0x25, 0x01,
    0x75, 0x01, 0x95, 0x08, 0x81, 0x02, 0x95, 0x01, 0x75, 0x08, 0x81, 0x01, 0x95, 0x05, 0x75, 0x01,
    0x05, 0x08, 0x19, 0x01, 0x29, 0x05, 0x91, 0x02, 0x95, 0x01, 0x75, 0x03, 0x91, 0x01, 0x95, 0x06,
    0x75, 0x08, 0x15, 0x00, 0x25, 0x65, 0x05, 0x07, 0x19, 0x00, 0x29, 0x65, 0x81, 0x00, 0xc0,
};

static const uint8_t keypad_hid_desc[] = {
    9, HID_DT_HID, 0x11, 0x01, 0x00, 1, HID_DT_REPORT, sizeof(keypad_rdesc) & 0xff, sizeof(keypad_rdesc) >> 8,
};

static size_t keypad_input(struct hidm *h, uint8_t *buf, size_t cap)
{
	(void)cap;
	memset(buf, 0, 8);
	buf[1] = h->leds;
	buf[2] = (uint8_t)(0x04 + h->seq % 26);
	buf[3] = (uint8_t)h->seq;
	return 8;
}

static int keypad_get_report(struct hidm *h, uint8_t type, uint8_t id, uint8_t *buf, size_t cap)
{
	if (id != 0)
		return -EPIPE;
	if (type == REPORT_INPUT)
		return (int)keypad_input(h, buf, cap);
	if (type == REPORT_OUTPUT) {
		buf[0] = h->leds;
		return 1;
	}
	return -EPIPE;
}

static int keypad_set_report(struct hidm *h, uint8_t type, uint8_t id, const uint8_t *data, size_t len,
			     bool via_ep)
{
	(void)via_ep;
	if (type != REPORT_OUTPUT || id != 0 || len != 1)
		return -EPIPE;
	h->leds = data[0];
	emu_log("%s: keypad: LEDs %02x", h->dev->sysname, h->leds);
	return 0;
}

/* Only the endpoint takes the LED report. */
static int keypad_out_set_report(struct hidm *h, uint8_t type, uint8_t id, const uint8_t *data, size_t len,
				 bool via_ep)
{
	return via_ep ? keypad_set_report(h, type, id, data, len, via_ep) : -EPIPE;
}

static const struct hidm_spec keypad_spec = {
    .rdesc = keypad_rdesc,
    .rdesc_len = sizeof(keypad_rdesc),
    .hid_desc = keypad_hid_desc,
    .interval_ms = KEYPAD_INTERVAL_MS,
    .input = keypad_input,
    .get_report = keypad_get_report,
    .set_report = keypad_set_report,
};

static const struct hidm_spec keypad_out_spec = {
    .rdesc = keypad_rdesc,
    .rdesc_len = sizeof(keypad_rdesc),
    .hid_desc = keypad_hid_desc,
    .interval_ms = KEYPAD_INTERVAL_MS,
    .input = keypad_input,
    .get_report = keypad_get_report,
    .set_report = keypad_out_set_report,
};

static int keypad_init(struct emu_dev *dev)
{
	return hidm_init(dev, &keypad_spec);
}

static int keypad_out_init(struct emu_dev *dev)
{
	return hidm_init(dev, &keypad_out_spec);
}

/* ---- The models ---- */

static const struct emu_model_ops thermo_ops = {
    .init = thermo_init,
    .fini = hidm_fini,
    .submit = hidm_submit,
    .control = hidm_control,
};

static const struct emu_model_ops keypad_ops = {
    .init = keypad_init,
    .fini = hidm_fini,
    .submit = hidm_submit,
    .control = hidm_control,
};

static const struct emu_model_ops keypad_out_ops = {
    .init = keypad_out_init,
    .fini = hidm_fini,
    .submit = hidm_submit,
    .control = hidm_control,
};

const struct emu_model emu_model_thermo = {
    .name = "thermo",
    .summary = "1209:0030 HID thermometer: numbered input report 1 (readings), feature 2 (interval ms)",
    .vendor_id = 0x1209,
    .product_id = 0x0030,
    .bcd_device = 0x0100,
    .manufacturer = "plugfs",
    .product = "Thermometer",
    .serial = "TH0001",
    .num_ifaces = 1,
    .ifaces = {{
	.cls = 3,
	.num_eps = 1,
	.eps = {{.address = HID_IN_EP, .type = 3, .max_packet = 16, .interval = 10}},
	.extra = thermo_hid_desc,
	.extra_len = sizeof(thermo_hid_desc),
    }},
    .ops = &thermo_ops,
};

const struct emu_model emu_model_keypad = {
    .name = "keypad",
    .summary = "1209:0031 HID boot keyboard: 8-byte unnumbered input, LED output by SET_REPORT",
    .vendor_id = 0x1209,
    .product_id = 0x0031,
    .bcd_device = 0x0100,
    .manufacturer = "plugfs",
    .product = "Keypad",
    .serial = "KP0001",
    .num_ifaces = 1,
    .ifaces = {{
	.cls = 3,
	.subclass = 1,
	.protocol = 1,
	.num_eps = 1,
	.eps = {{.address = HID_IN_EP, .type = 3, .max_packet = 8, .interval = 10}},
	.extra = keypad_hid_desc,
	.extra_len = sizeof(keypad_hid_desc),
    }},
    .ops = &keypad_ops,
};

const struct emu_model emu_model_keypad_out = {
    .name = "keypad-out",
    .summary = "1209:0032 the keypad with an interrupt OUT endpoint 0x02 for its LED report",
    .vendor_id = 0x1209,
    .product_id = 0x0032,
    .bcd_device = 0x0100,
    .manufacturer = "plugfs",
    .product = "Keypad OUT",
    .serial = "KP0002",
    .num_ifaces = 1,
    .ifaces = {{
	.cls = 3,
	.subclass = 1,
	.protocol = 1,
	.num_eps = 2,
	.eps =
	    {
		{.address = HID_IN_EP, .type = 3, .max_packet = 8, .interval = 10},
		{.address = HID_OUT_EP, .type = 3, .max_packet = 8, .interval = 10},
	    },
	.extra = keypad_hid_desc,
	.extra_len = sizeof(keypad_hid_desc),
    }},
    .ops = &keypad_out_ops,
};
