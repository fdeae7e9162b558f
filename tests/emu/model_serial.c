/*
 * USB serial adapters with a loopback plug: what goes out on TX comes back
 * on RX, and the modem lines are wired like a loopback plug too (DTR to
 * DSR and DCD, RTS to CTS, a break sent is a break received).
 *
 * `acm`: an Arduino Uno R3 (2341:0043, ../shared/devices/arduino-uno-r3.txt):
 *   CDC communication interface 0 (02/02/01, header + ACM + union
 *   functional descriptors, interrupt IN 0x82 of 8 bytes) and CDC data
 *   interface 1 (bulk OUT 0x04, bulk IN 0x83, 64 bytes).
 *   - SET/GET_LINE_CODING: kept and returned; like the 16U2 firmware it
 *     starts at rate 0, and it stalls rates above 2 MBd (its USART at
 *     16 MHz) and data bits outside 5-8.
 *   - SET_CONTROL_LINE_STATE, SEND_BREAK: kept, and answered with a
 *     SERIAL_STATE notification (DCD and DSR = DTR, bBreak for a break).
 *
 * `ft232r`: an FTDI FT232R (0403:6001, ../shared/devices/ftdi-ft232r.txt),
 *   interface 0 ff/ff/ff, bulk IN 0x81 and OUT 0x02 of 64 bytes.
 *   - Every IN packet starts with the two status bytes (modem status:
 *     CTS = RTS, DSR and DCD = DTR; line status: THRE|TEMT, BI after a
 *     break), then up to 62 data bytes.  The data per IN transfer follows
 *     a rotating cap, so packets come full, part-filled, and status-only
 *     (when the modem lines changed), as a real chip's do.
 *   - Vendor requests RESET (purges the loopback), SET_MODEM_CTRL,
 *     SET_FLOW_CTRL, SET_BAUD_RATE (the divisor is decoded the way
 *     AN232B-05 describes; sub-integer divisors below 2 other than the
 *     special 1 and 1.5 codes stall), SET_DATA (bit 14: break),
 *     GET_MODEM_STATUS, SET/GET_LATENCY_TIMER, SET_EVENT/ERROR_CHAR.
 *
 * Both loop back through a bounded FIFO of SERIAL_FIFO bytes: with nobody
 * reading IN, an OUT transfer stops being accepted once it is full.
 * Every setting a host makes is printed ("plugfs-emu: acm: ...") so a test
 * can check what reached the device.
 */
#include "emu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

#define SERIAL_FIFO (16u * 1024)

enum {
	CDC_SET_LINE_CODING = 0x20,
	CDC_GET_LINE_CODING = 0x21,
	CDC_SET_CONTROL_LINE_STATE = 0x22,
	CDC_SEND_BREAK = 0x23
};
enum {
	FTDI_RESET = 0x00,
	FTDI_SET_MODEM_CTRL = 0x01,
	FTDI_SET_FLOW_CTRL = 0x02,
	FTDI_SET_BAUD_RATE = 0x03,
	FTDI_SET_DATA = 0x04,
	FTDI_GET_MODEM_STATUS = 0x05,
	FTDI_SET_EVENT_CHAR = 0x06,
	FTDI_SET_ERROR_CHAR = 0x07,
	FTDI_SET_LATENCY_TIMER = 0x09,
	FTDI_GET_LATENCY_TIMER = 0x0a,
};
#define FTDI_PACKET 64

struct serial_model {
	bool ftdi;
	uint8_t out_ep, in_ep, notify_ep;
	struct emu_fifo fifo;
	bool dtr, rts;
	bool brk_seen;	    /* a break to report (ACM notification / FTDI BI) */
	bool status_owed;   /* modem lines changed: a notification / status packet is owed */
	uint8_t coding[7];  /* ACM line coding */
	uint16_t ftdi_data; /* SET_DATA value */
	uint8_t latency;    /* ms */
	gint64 break_on_us; /* FTDI break started */
	unsigned in_transfers;
};

static int serial_init(struct emu_dev *dev)
{
	struct serial_model *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return -ENOMEM;
	s->ftdi = dev->model->vendor_id == 0x0403;
	if (s->ftdi) {
		s->out_ep = 0x02;
		s->in_ep = 0x81;
	} else {
		s->out_ep = 0x04;
		s->in_ep = 0x83;
		s->notify_ep = 0x82;
	}
	/* The 16U2 firmware's LineEncoding before any SET: rate 0, 1 stop bit, no parity, 8 bits. */
	s->coding[6] = 8;
	s->latency = 16;
	emu_fifo_init(&s->fifo, SERIAL_FIFO);
	dev->state = s;
	return 0;
}

static void serial_fini(struct emu_dev *dev)
{
	struct serial_model *s = dev->state;

	if (s == NULL)
		return;
	emu_fifo_free(&s->fifo);
	free(s);
	dev->state = NULL;
}

static void modem_status(const struct serial_model *s, uint8_t st[2])
{
	/* Bit 0 of the modem status byte is always set on the chips. */
	st[0] = (uint8_t)(0x01 | (s->rts ? 0x10 : 0) | (s->dtr ? 0x20 | 0x80 : 0));
	st[1] = (uint8_t)(0x60 | (s->brk_seen ? 0x10 : 0));
}

/* Data bytes the next FTDI IN transfer may carry: a rotating cap, so packet fills vary. */
static size_t ftdi_cap(struct serial_model *s)
{
	static const size_t caps[] = {1, 62, 61, 63, 124, 125, 200, 4096, 1000, 2};

	return caps[s->in_transfers++ % (sizeof(caps) / sizeof(caps[0]))];
}

/* Fills an FTDI IN transfer: status + up to 62 data bytes per packet, only the last packet short. */
static void ftdi_fill(struct serial_model *s, struct emu_urb *in)
{
	size_t budget = ftdi_cap(s), n = 0;

	if (budget > s->fifo.len)
		budget = s->fifo.len;
	for (;;) {
		size_t room = in->length - n < FTDI_PACKET ? in->length - n : FTDI_PACKET;
		if (room < 2)
			break;
		size_t chunk = budget < room - 2 ? budget : room - 2;
		modem_status(s, in->data + n);
		emu_fifo_get(&s->fifo, in->data + n + 2, chunk);
		n += 2 + chunk;
		budget -= chunk;
		if (chunk < room - 2 || budget == 0)
			break;
	}
	s->brk_seen = false;
	s->status_owed = false;
	emu_urb_complete(in, 0, (uint32_t)n);
}

static void send_notification(struct serial_model *s, struct emu_urb *urb)
{
	uint8_t n[10] = {0xa1, 0x20, 0, 0, 0, 0, 2, 0};
	uint16_t bits = (uint16_t)((s->dtr ? 0x03 : 0) | (s->brk_seen ? 0x04 : 0));
	uint32_t len = urb->length < sizeof(n) ? urb->length : (uint32_t)sizeof(n);

	put_le16(n + 8, bits);
	memcpy(urb->data, n, len);
	s->brk_seen = false;
	s->status_owed = false;
	emu_urb_complete(urb, 0, len);
}

/* Moves what can move: OUT into the FIFO, the FIFO (and owed status) into IN. */
static void serial_pump(struct emu_dev *dev)
{
	struct serial_model *s = dev->state;
	bool moved = true;

	while (moved) {
		struct emu_urb *out = emu_urb_first_pending(dev, s->out_ep);
		struct emu_urb *in = emu_urb_first_pending(dev, s->in_ep);

		moved = false;
		if (out != NULL) {
			size_t n = emu_fifo_put(&s->fifo, out->data + out->actual, out->length - out->actual);
			out->actual += (uint32_t)n;
			if (out->actual == out->length)
				emu_urb_complete(out, 0, out->length);
			moved = n > 0 || out->length == 0;
		}
		if (in != NULL && s->ftdi && (s->fifo.len > 0 || s->status_owed)) {
			ftdi_fill(s, in);
			moved = true;
		} else if (in != NULL && !s->ftdi && s->fifo.len > 0) {
			size_t n = emu_fifo_get(&s->fifo, in->data, in->length);
			emu_urb_complete(in, 0, (uint32_t)n);
			moved = true;
		}
	}
	struct emu_urb *notify = s->notify_ep ? emu_urb_first_pending(dev, s->notify_ep) : NULL;
	if (notify != NULL && s->status_owed)
		send_notification(s, notify);
}

static void serial_submit(struct emu_dev *dev, struct emu_urb *urb)
{
	(void)urb;
	serial_pump(dev);
}

static int acm_control(struct emu_dev *dev, const struct emu_setup *st, uint8_t *data)
{
	struct serial_model *s = dev->state;

	if (st->request_type == 0x21 && st->request == CDC_SET_LINE_CODING) {
		uint32_t rate = st->length >= 7 ? get_le32(data) : 0;
		if (st->length != 7 || rate == 0 || rate > 2000000 || data[4] > 2 || data[5] > 4 ||
		    data[6] < 5 || data[6] > 8) {
			emu_err("acm: SET_LINE_CODING refused (%u Bd)", rate);
			return -EPIPE;
		}
		memcpy(s->coding, data, 7);
		emu_err("acm: SET_LINE_CODING %u Bd, format %u, parity %u, %u bits", rate, data[4], data[5],
			data[6]);
		return 7;
	}
	if (st->request_type == 0xa1 && st->request == CDC_GET_LINE_CODING) {
		size_t n = st->length < 7 ? st->length : 7;
		memcpy(data, s->coding, n);
		return (int)n;
	}
	if (st->request_type == 0x21 && st->request == CDC_SET_CONTROL_LINE_STATE) {
		s->dtr = st->value & 1;
		s->rts = st->value & 2;
		s->status_owed = true;
		emu_err("acm: SET_CONTROL_LINE_STATE dtr %d rts %d", s->dtr, s->rts);
		serial_pump(dev);
		return 0;
	}
	if (st->request_type == 0x21 && st->request == CDC_SEND_BREAK) {
		s->brk_seen = true;
		s->status_owed = true;
		emu_err("acm: SEND_BREAK %u ms", st->value);
		serial_pump(dev);
		return 0;
	}
	return -EPIPE;
}

/* AN232B-05: the eighths a divisor's 3-bit fraction code stands for. */
static const unsigned ftdi_code_eighths[8] = {0, 4, 2, 1, 3, 5, 6, 7};

static int ftdi_control(struct emu_dev *dev, const struct emu_setup *st, uint8_t *data)
{
	struct serial_model *s = dev->state;

	/* The FT232R is a single-port chip: port 0 (or 1, "interface A"). */
	if ((st->request_type & 0x60) != 0x40 ||
	    ((st->index & 0xff) > 1 && st->request != FTDI_SET_BAUD_RATE))
		return -EPIPE;
	if (st->request_type == 0xc0 && st->request == FTDI_GET_MODEM_STATUS) {
		uint8_t ms[2];
		modem_status(s, ms);
		size_t n = st->length < 2 ? st->length : 2;
		memcpy(data, ms, n);
		return (int)n;
	}
	if (st->request_type == 0xc0 && st->request == FTDI_GET_LATENCY_TIMER) {
		if (st->length >= 1)
			data[0] = s->latency;
		return st->length >= 1 ? 1 : 0;
	}
	if (st->request_type != 0x40)
		return -EPIPE;
	switch (st->request) {
	case FTDI_RESET:
		if (st->value == 0 || st->value == 1) {
			/* The loopback's bytes sit in the chip's RX buffer, which a reset purges. */
			s->fifo.len = 0;
			s->fifo.head = 0;
		}
		emu_err("ft232r: RESET %u", st->value);
		return 0;
	case FTDI_SET_MODEM_CTRL:
		if (st->value & 0x100)
			s->dtr = st->value & 1;
		if (st->value & 0x200)
			s->rts = st->value & 2;
		s->status_owed = true;
		emu_err("ft232r: SET_MODEM_CTRL dtr %d rts %d", s->dtr, s->rts);
		serial_pump(dev);
		return 0;
	case FTDI_SET_FLOW_CTRL:
		emu_err("ft232r: SET_FLOW_CTRL 0x%02x", st->index >> 8);
		return 0;
	case FTDI_SET_BAUD_RATE: {
		/* wValue: divisor bits 0-15; wIndex: bit 16 (the FT232R has no 12 MHz bit 17). */
		uint32_t div = st->value | (uint32_t)(st->index & 0xff) << 16;
		unsigned whole = div & 0x3fff, eighths = ftdi_code_eighths[(div >> 14) & 7];
		unsigned rate;
		if (div > 0x1ffff || (whole < 2 && div > 1)) {
			emu_err("ft232r: SET_BAUD_RATE 0x%05x refused", div);
			return -EPIPE;
		}
		rate = div == 0	  ? 3000000
		       : div == 1 ? 2000000
				  : (unsigned)(24000000u / (whole * 8 + eighths));
		emu_err("ft232r: SET_BAUD_RATE 0x%05x = %u Bd", div, rate);
		return 0;
	}
	case FTDI_SET_DATA: {
		bool was = s->ftdi_data & 0x4000, now = st->value & 0x4000;
		s->ftdi_data = st->value;
		emu_err("ft232r: SET_DATA 0x%04x", st->value);
		if (now && !was) {
			s->break_on_us = g_get_monotonic_time();
			s->brk_seen = true;
			s->status_owed = true;
			serial_pump(dev);
		} else if (was && !now) {
			emu_err("ft232r: break lasted %lld ms",
				(long long)(g_get_monotonic_time() - s->break_on_us) / 1000);
		}
		return 0;
	}
	case FTDI_SET_LATENCY_TIMER:
		if (st->value < 1 || st->value > 255)
			return -EPIPE;
		s->latency = (uint8_t)st->value;
		emu_err("ft232r: SET_LATENCY_TIMER %u", st->value);
		return 0;
	case FTDI_SET_EVENT_CHAR:
	case FTDI_SET_ERROR_CHAR:
		return 0;
	}
	return -EPIPE;
}

static int serial_control(struct emu_dev *dev, struct emu_urb *urb, const struct emu_setup *st, uint8_t *data)
{
	struct serial_model *s = dev->state;

	(void)urb;
	return s->ftdi ? ftdi_control(dev, st, data) : acm_control(dev, st, data);
}

static const struct emu_model_ops serial_ops = {
    .init = serial_init,
    .fini = serial_fini,
    .submit = serial_submit,
    .control = serial_control,
};

/* arduino-uno-r3.txt: CDC header (bcdCDC 0x1001, sic), ACM (capabilities 0x06), union 0 -> 1. */
static const uint8_t acm_functional[] = {
    0x05, 0x24, 0x00, 0x01, 0x10, 0x04, 0x24, 0x02, 0x06, 0x05, 0x24, 0x06, 0x00, 0x01,
};

const struct emu_model emu_model_acm = {
    .name = "acm",
    .summary = "2341:0043 Arduino Uno R3 CDC-ACM loopback (line coding, control lines, break, SERIAL_STATE)",
    .vendor_id = 0x2341,
    .product_id = 0x0043,
    .bcd_device = 0x0001,
    .dev_class = 2,
    .manufacturer = "Arduino (www.arduino.cc)",
    .product = "Arduino Uno",
    .serial = "85736323838351F0C1A1",
    .num_ifaces = 2,
    .ifaces =
	{
	    {
		.cls = 2,
		.subclass = 2,
		.protocol = 1,
		.num_eps = 1,
		.eps = {{.address = 0x82, .type = 3, .max_packet = 8, .interval = 255}},
		.extra = acm_functional,
		.extra_len = sizeof(acm_functional),
	    },
	    {
		.cls = 0x0a,
		.num_eps = 2,
		.eps =
		    {
			{.address = 0x04, .type = 2, .max_packet = 64, .interval = 1},
			{.address = 0x83, .type = 2, .max_packet = 64, .interval = 1},
		    },
	    },
	},
    .ops = &serial_ops,
};

const struct emu_model emu_model_ft232r = {
    .name = "ft232r",
    .summary = "0403:6001 FTDI FT232R loopback (status bytes in every IN packet, vendor requests)",
    .vendor_id = 0x0403,
    .product_id = 0x6001,
    .bcd_device = 0x0600,
    .manufacturer = "FTDI",
    .product = "FT232R USB UART",
    .serial = "A900N7DV",
    .num_ifaces = 1,
    .ifaces =
	{
	    {
		.cls = 0xff,
		.subclass = 0xff,
		.protocol = 0xff,
		.num_eps = 2,
		.eps =
		    {
			{.address = 0x81, .type = 2, .max_packet = 64},
			{.address = 0x02, .type = 2, .max_packet = 64},
		    },
	    },
	},
    .ops = &serial_ops,
};
