/*
 * USB Test & Measurement Class instruments (254/3/1, USB488), shaped after
 * the dumps in /work/shared/devices/.
 *
 * `tmc-ds1054z`: Rigol DS1054Z (1ab1:04ce) -- interrupt IN 0x81 (bInterval
 *   80, the real device's quirk), bulk IN 0x82 and bulk OUT 0x03 with
 *   64-byte packets.  TermChar and REN_CONTROL/GO_TO_LOCAL/LOCAL_LOCKOUT
 *   supported.  Answers:
 *     *IDN?         RIGOL TECHNOLOGIES,DS1054Z,DS1ZA000000001,00.04.04.SP3
 *     :MEAS:VPP?    2.480000e+00   (a deterministic measurement)
 *     :WAV:DATA?    #9001048576 + 1 MiB of byte i*7+3 + "\n" (IEEE 488.2 block)
 *     :DISP:TEXT X  keeps X; :DISP:TEXT? answers it (long messages both ways)
 *     *RST, *CLS    no answer
 * `tmc-pm16`: Thorlabs PM16-120 (1313:807b), bulk OUT 0x02, bulk IN 0x83,
 *   interrupt IN 0x84 (2 bytes), the real descriptors.  USB488 without REN
 *   support.  *IDN?, MEAS:POW? (1.234500E-03); CAL:ZERO? is never answered
 *   (the abort path); after CAL:ZERO the meter takes no bulk OUT data (it
 *   NAKs) until INITIATE_ABORT_BULK_OUT or INITIATE_CLEAR.  Its
 *   CHECK_*_STATUS answer STATUS_PENDING twice before they succeed.
 * `tmc-plain` (1209:0041): plain USBTMC, protocol 0: *IDN? only; the USB488
 *   requests (READ_STATUS_BYTE, REN_CONTROL...) stall.
 * `tmc-liar` (1209:0040): bulk pair only, no interrupt endpoint (the status
 *   byte comes in the control answer).  *IDN? is right; LIE:TAG?,
 *   LIE:MSGID?, LIE:SIZE? (TransferSize above what was asked) and
 *   LIE:SHORT? (TransferSize above the bytes sent) answer malformed.
 *
 * Bulk protocol as USBTMC 1.0 says: DEV_DEP_MSG_OUT transfers collect a
 * message until EOM, then it runs; a query queues its answer (STB bit 4,
 * MAV, is set meanwhile), which REQUEST_DEV_DEP_MSG_IN fetches in pieces of
 * at most TransferSize bytes, EOM on the last.  A bad Bulk-OUT header
 * stalls the endpoint.  A new command drops an answer not fully read.
 *
 * What the tests read back, when PLUGFS_EMU_DIR is set: the class-request
 * state in $PLUGFS_EMU_DIR/SYSNAME.tmc, one line rewritten after every
 * request: `ren=0 lockout=0 gtl=0 clears=0 aborts_in=0 aborts_out=0`.
 */
#include "emu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto.h"

#define HDR_LEN		   12
#define WAV_BYTES	   (1u << 20)
#define MSG_MAX		   (1u << 20)
#define NOTES_MAX	   8
#define ST_SUCCESS	   0x01
#define ST_PENDING	   0x02
#define ST_FAILED	   0x80
#define ST_NOT_IN_PROGRESS 0x81
#define STB_MAV		   0x10

enum tmc_lie { LIE_NONE, LIE_TAG, LIE_MSGID, LIE_SIZE, LIE_SHORT };

struct tmc_variant {
	const struct emu_model *model;
	uint8_t usb488_iface; /* GET_CAPABILITIES byte 14 */
	uint8_t dev_caps;     /* byte 5: D0 TermChar */
	bool slow;	      /* CAL:ZERO? never answered, CAL:ZERO busies the meter */
	bool liar;
	bool plain; /* protocol 0: no USB488 requests at all */
	unsigned pending_polls;
	const char *idn;
};

struct emu_tmc {
	const struct tmc_variant *v;
	uint8_t ep_out, ep_in, ep_intr;
	/* The message being received. */
	uint8_t *msg;
	size_t msg_len;
	/* The answer queued: out[off..len). */
	uint8_t *out;
	size_t out_len, out_off;
	enum tmc_lie lie;
	/* The REQUEST_DEV_DEP_MSG_IN waiting for an IN transfer. */
	bool req_pending;
	uint8_t req_tag, req_attr, req_termchar;
	uint32_t req_max;
	bool never_answer; /* CAL:ZERO? */
	bool busy;	   /* CAL:ZERO: bulk OUT NAKs */
	bool abort_zlp;	   /* an aborted Bulk-IN transfer owes its short packet */
	unsigned pending_left;
	uint8_t display[1024 * 256];
	size_t display_len;
	/* USB488 */
	bool ren, lockout;
	unsigned gtl, clears, aborts_in, aborts_out;
	uint8_t notes[NOTES_MAX][2];
	unsigned nnotes;
	char state_path[256];
};

static const struct tmc_variant variants[] = {
    {
	.model = &emu_model_tmc_ds1054z,
	.usb488_iface = 0x06, /* 488.2, REN_CONTROL/GO_TO_LOCAL/LOCAL_LOCKOUT */
	.dev_caps = 0x01,
	.idn = "RIGOL TECHNOLOGIES,DS1054Z,DS1ZA000000001,00.04.04.SP3\n",
    },
    {
	.model = &emu_model_tmc_pm16,
	.usb488_iface = 0x04,
	.slow = true,
	.pending_polls = 2,
	.idn = "Thorlabs,PM16-120,P5000001,1.3.0\n",
    },
    {
	.model = &emu_model_tmc_plain,
	.plain = true,
	.idn = "plugfs,Plain,PL0001,1.0\n",
    },
    {
	.model = &emu_model_tmc_liar,
	.usb488_iface = 0x04,
	.liar = true,
	.idn = "plugfs,Liar,LI0001,1.0\n",
    },
    {0},
};

static void save_state(struct emu_tmc *s)
{
	if (s->state_path[0] == '\0')
		return;
	FILE *f = fopen(s->state_path, "w");
	if (f == NULL) {
		emu_err("usbtmc: %s: %s", s->state_path, strerror(errno));
		return;
	}
	fprintf(f, "ren=%d lockout=%d gtl=%u clears=%u aborts_in=%u aborts_out=%u\n", s->ren, s->lockout,
		s->gtl, s->clears, s->aborts_in, s->aborts_out);
	fclose(f);
}

static void drop_answer(struct emu_tmc *s)
{
	free(s->out);
	s->out = NULL;
	s->out_len = s->out_off = 0;
	s->lie = LIE_NONE;
	s->never_answer = false;
}

static void set_answer(struct emu_tmc *s, const void *p, size_t n)
{
	drop_answer(s);
	if ((s->out = malloc(n)) == NULL)
		return;
	memcpy(s->out, p, n);
	s->out_len = n;
}

static void set_text(struct emu_tmc *s, const char *text)
{
	set_answer(s, text, strlen(text));
}

static void set_waveform(struct emu_tmc *s)
{
	static const char head[] = "#9001048576";
	size_t n = sizeof(head) - 1 + WAV_BYTES + 1;

	drop_answer(s);
	if ((s->out = malloc(n)) == NULL)
		return;
	memcpy(s->out, head, sizeof(head) - 1);
	for (size_t i = 0; i < WAV_BYTES; i++)
		s->out[sizeof(head) - 1 + i] = (uint8_t)(i * 7 + 3);
	s->out[n - 1] = '\n';
	s->out_len = n;
}

/* Runs one complete message. */
static void execute(struct emu_tmc *s, const uint8_t *m, size_t n)
{
	char cmd[64];
	size_t cn;

	while (n > 0 && (m[n - 1] == '\n' || m[n - 1] == '\r'))
		n--;
	/* A new command: an answer not read yet is gone (IEEE 488.2 query interrupted). */
	drop_answer(s);
	if (n >= 11 && strncasecmp((const char *)m, ":DISP:TEXT ", 11) == 0) {
		s->display_len = n - 11 < sizeof(s->display) ? n - 11 : sizeof(s->display);
		memcpy(s->display, m + 11, s->display_len);
		return;
	}
	cn = n < sizeof(cmd) - 1 ? n : sizeof(cmd) - 1;
	memcpy(cmd, m, cn);
	cmd[cn] = '\0';
	if (strcasecmp(cmd, "*IDN?") == 0) {
		set_text(s, s->v->idn);
	} else if (s->v->slow && strcasecmp(cmd, "MEAS:POW?") == 0) {
		set_text(s, "1.234500E-03\n");
	} else if (s->v->slow && strcasecmp(cmd, "CAL:ZERO?") == 0) {
		s->never_answer = true;
	} else if (s->v->slow && strcasecmp(cmd, "CAL:ZERO") == 0) {
		s->busy = true;
	} else if (s->v->liar && strncasecmp(cmd, "LIE:", 4) == 0) {
		set_text(s, "1.0\n");
		s->lie = strcasecmp(cmd, "LIE:TAG?") == 0     ? LIE_TAG
			 : strcasecmp(cmd, "LIE:MSGID?") == 0 ? LIE_MSGID
			 : strcasecmp(cmd, "LIE:SIZE?") == 0  ? LIE_SIZE
			 : strcasecmp(cmd, "LIE:SHORT?") == 0 ? LIE_SHORT
							      : LIE_NONE;
	} else if (!s->v->slow && !s->v->liar && strcasecmp(cmd, ":MEAS:VPP?") == 0) {
		set_text(s, "2.480000e+00\n");
	} else if (!s->v->slow && !s->v->liar && strcasecmp(cmd, ":WAV:DATA?") == 0) {
		set_waveform(s);
	} else if (strcasecmp(cmd, ":DISP:TEXT?") == 0) {
		drop_answer(s);
		if ((s->out = malloc(s->display_len + 1)) != NULL) {
			memcpy(s->out, s->display, s->display_len);
			s->out[s->display_len] = '\n';
			s->out_len = s->display_len + 1;
		}
	}
	/* *RST, *CLS and anything unknown: no answer. */
}

static size_t round4(size_t n)
{
	return (n + 3) & ~(size_t)3;
}

/* Sends what the pending IN transfer may carry: a short packet owed by an abort, or the answer. */
static void serve_in(struct emu_dev *dev)
{
	struct emu_tmc *s = dev->state;
	struct emu_urb *urb = emu_urb_first_pending(dev, s->ep_in);

	if (urb == NULL)
		return;
	if (s->abort_zlp) {
		s->abort_zlp = false;
		emu_urb_complete(urb, 0, 0);
		return;
	}
	if (!s->req_pending || s->never_answer || s->out == NULL || urb->length < HDR_LEN + 4)
		return;
	size_t n = s->out_len - s->out_off;
	size_t room = urb->length - HDR_LEN - 3;
	uint8_t attr = 0;
	if (n > s->req_max)
		n = s->req_max;
	if (n > room)
		n = room;
	if (s->req_attr & 0x02) {
		const uint8_t *tc = memchr(s->out + s->out_off, s->req_termchar, n);
		if (tc != NULL) {
			n = (size_t)(tc - (s->out + s->out_off)) + 1;
			attr |= 0x02;
		}
	}
	if (s->out_off + n == s->out_len)
		attr |= 0x01;
	uint8_t *p = urb->data;
	memset(p, 0, HDR_LEN);
	p[0] = 2;
	p[1] = s->req_tag;
	p[2] = (uint8_t)~s->req_tag;
	uint32_t claimed = (uint32_t)n;
	switch (s->lie) {
	case LIE_TAG:
		p[1] = (uint8_t)(s->req_tag + 1);
		p[2] = (uint8_t)~p[1];
		break;
	case LIE_MSGID:
		p[0] = 126; /* VENDOR_SPECIFIC_IN */
		break;
	case LIE_SIZE:
		claimed = s->req_max + 1;
		break;
	case LIE_SHORT:
		claimed = (uint32_t)n + 100;
		break;
	case LIE_NONE:
		break;
	}
	put_le32(p + 4, claimed);
	p[8] = attr;
	memcpy(p + HDR_LEN, s->out + s->out_off, n);
	size_t total = round4(HDR_LEN + n);
	memset(p + HDR_LEN + n, 0, total - HDR_LEN - n);
	s->out_off += n;
	s->req_pending = false;
	if (attr & 0x01)
		drop_answer(s);
	emu_urb_complete(urb, 0, (uint32_t)total);
}

static void serve_intr(struct emu_dev *dev)
{
	struct emu_tmc *s = dev->state;
	struct emu_urb *urb;

	if (s->ep_intr == 0 || s->nnotes == 0 || (urb = emu_urb_first_pending(dev, s->ep_intr)) == NULL ||
	    urb->length < 2)
		return;
	memcpy(urb->data, s->notes[0], 2);
	memmove(s->notes[0], s->notes[1], (--s->nnotes) * 2);
	emu_urb_complete(urb, 0, 2);
}

/* Takes the bulk OUT transfers it can: each is one USBTMC transfer, header first. */
static void take_out(struct emu_dev *dev)
{
	struct emu_tmc *s = dev->state;
	struct emu_urb *urb;

	while (!s->busy && (urb = emu_urb_first_pending(dev, s->ep_out)) != NULL) {
		const uint8_t *p = urb->data;
		uint8_t inverse = urb->length >= HDR_LEN ? (uint8_t)~p[1] : 0;
		if (urb->length < HDR_LEN || p[1] == 0 || p[2] != inverse || p[3] != 0) {
			emu_log("usbtmc: bad Bulk-OUT header, stalling");
			emu_urb_complete(urb, -EPIPE, 0);
			continue;
		}
		uint32_t size = get_le32(p + 4);
		if (p[0] == 1 && HDR_LEN + (size_t)size <= urb->length) {
			if (s->msg_len + size <= MSG_MAX) {
				memcpy(s->msg + s->msg_len, p + HDR_LEN, size);
				s->msg_len += size;
			}
			if (p[8] & 0x01) {
				execute(s, s->msg, s->msg_len);
				s->msg_len = 0;
			}
		} else if (p[0] == 2) {
			s->req_pending = true;
			s->req_tag = p[1];
			s->req_max = size;
			s->req_attr = p[8];
			s->req_termchar = p[9];
		} else {
			emu_log("usbtmc: Bulk-OUT MsgID %u size %u, stalling", p[0], size);
			emu_urb_complete(urb, -EPIPE, 0);
			continue;
		}
		emu_urb_complete(urb, 0, urb->length);
	}
}

static void tmc_submit(struct emu_dev *dev, struct emu_urb *urb)
{
	struct emu_tmc *s = dev->state;

	(void)urb;
	take_out(dev);
	serve_in(dev);
	if (s->ep_intr != 0)
		serve_intr(dev);
}

static uint8_t status_byte(const struct emu_tmc *s)
{
	return s->out != NULL ? STB_MAV : 0;
}

static int answer(uint8_t *data, uint16_t room, const uint8_t *p, size_t n)
{
	if (n > room)
		n = room;
	memcpy(data, p, n);
	return (int)n;
}

static int tmc_control(struct emu_dev *dev, struct emu_urb *urb, const struct emu_setup *st, uint8_t *data)
{
	struct emu_tmc *s = dev->state;
	uint8_t a[24] = {0};
	int n = -EPIPE;

	(void)urb;
	if (st->request_type == 0xa2 && st->request == 1 && st->index == s->ep_out) {
		/* INITIATE_ABORT_BULK_OUT: only a NAKed transfer is in progress here. */
		s->aborts_out++;
		a[0] = s->busy ? ST_SUCCESS : ST_FAILED;
		a[1] = (uint8_t)st->value;
		if (s->busy) {
			s->busy = false;
			s->msg_len = 0;
			s->pending_left = s->v->pending_polls;
		}
		n = answer(data, st->length, a, 2);
	} else if (st->request_type == 0xa2 && st->request == 2 && st->index == s->ep_out) {
		a[0] = s->pending_left > 0 ? ST_PENDING : ST_SUCCESS;
		if (s->pending_left > 0)
			s->pending_left--;
		n = answer(data, st->length, a, 8);
	} else if (st->request_type == 0xa2 && st->request == 3 && st->index == s->ep_in) {
		/* INITIATE_ABORT_BULK_IN: the request waiting for its answer is the transfer in progress. */
		s->aborts_in++;
		a[1] = (uint8_t)st->value;
		if (!s->req_pending) {
			a[0] = ST_FAILED;
		} else if (s->req_tag != (uint8_t)st->value) {
			a[0] = ST_NOT_IN_PROGRESS;
		} else {
			a[0] = ST_SUCCESS;
			s->req_pending = false;
			drop_answer(s);
			s->abort_zlp = true;
			s->pending_left = s->v->pending_polls;
		}
		n = answer(data, st->length, a, 2);
	} else if (st->request_type == 0xa2 && st->request == 4 && st->index == s->ep_in) {
		if (s->abort_zlp) {
			a[0] = ST_PENDING;
			a[1] = 1; /* bmAbortBulkIn D0: the short packet waits in the FIFO */
		} else if (s->pending_left > 0) {
			a[0] = ST_PENDING;
			s->pending_left--;
		} else {
			a[0] = ST_SUCCESS;
		}
		n = answer(data, st->length, a, 8);
	} else if (st->request_type == 0xa1 && st->request == 5) {
		s->clears++;
		s->busy = false;
		s->msg_len = 0;
		s->req_pending = false;
		s->abort_zlp = false;
		drop_answer(s);
		s->pending_left = s->v->pending_polls;
		a[0] = ST_SUCCESS;
		n = answer(data, st->length, a, 1);
	} else if (st->request_type == 0xa1 && st->request == 6) {
		a[0] = s->pending_left > 0 ? ST_PENDING : ST_SUCCESS;
		if (s->pending_left > 0)
			s->pending_left--;
		n = answer(data, st->length, a, 2);
	} else if (st->request_type == 0xa1 && st->request == 7) {
		a[0] = ST_SUCCESS;
		a[2] = 0x00; /* bcdUSBTMC 1.00 */
		a[3] = 0x01;
		a[5] = s->v->dev_caps;
		if (!s->v->plain) {
			a[12] = 0x00; /* bcdUSB488 1.00 */
			a[13] = 0x01;
			a[14] = s->v->usb488_iface;
			a[15] = 0x0f; /* SCPI, SR1, RL1, DT1 */
		}
		n = answer(data, st->length, a, 24);
	} else if (st->request_type == 0xa1 && st->request == 128 && !s->v->plain) {
		uint8_t tag = (uint8_t)st->value;
		a[0] = ST_SUCCESS;
		a[1] = tag;
		if (s->ep_intr != 0) {
			/* USB488 4.3.1.1: with an interrupt IN endpoint the byte goes there. */
			if (s->nnotes < NOTES_MAX) {
				s->notes[s->nnotes][0] = (uint8_t)(0x80 | tag);
				s->notes[s->nnotes][1] = status_byte(s);
				s->nnotes++;
			}
		} else {
			a[2] = status_byte(s);
		}
		n = answer(data, st->length, a, 3);
		serve_intr(dev);
	} else if (st->request_type == 0xa1 && st->request >= 160 && st->request <= 162 &&
		   (s->v->usb488_iface & 0x02)) {
		if (st->request == 160) {
			s->ren = st->value & 1;
			if (!s->ren)
				s->lockout = false;
		} else if (st->request == 161) {
			s->gtl++;
		} else {
			s->lockout = true;
		}
		a[0] = ST_SUCCESS;
		n = answer(data, st->length, a, 1);
	}
	save_state(s);
	return n;
}

static int tmc_init(struct emu_dev *dev)
{
	const struct emu_iface_spec *ifs = &dev->model->ifaces[0];
	struct emu_tmc *s = calloc(1, sizeof(*s));
	const char *dir = getenv("PLUGFS_EMU_DIR");

	if (s == NULL)
		return -ENOMEM;
	for (const struct tmc_variant *v = variants; v->model != NULL; v++)
		if (v->model == dev->model)
			s->v = v;
	if (s->v == NULL || (s->msg = malloc(MSG_MAX)) == NULL) {
		free(s);
		return -EINVAL;
	}
	for (unsigned e = 0; e < ifs->num_eps; e++) {
		const struct emu_ep_spec *ep = &ifs->eps[e];
		if (ep->type == 3)
			s->ep_intr = ep->address;
		else if (ep->address & 0x80)
			s->ep_in = ep->address;
		else
			s->ep_out = ep->address;
	}
	if (dir != NULL && dir[0] != '\0')
		snprintf(s->state_path, sizeof(s->state_path), "%s/%s.tmc", dir, dev->sysname);
	dev->state = s;
	save_state(s);
	return 0;
}

static void tmc_fini(struct emu_dev *dev)
{
	struct emu_tmc *s = dev->state;

	if (s == NULL)
		return;
	free(s->out);
	free(s->msg);
	free(s);
	dev->state = NULL;
}

static const struct emu_model_ops tmc_ops = {
    .init = tmc_init,
    .fini = tmc_fini,
    .submit = tmc_submit,
    .control = tmc_control,
};

#define TMC_IFACE(...)                                                                                       \
	{                                                                                                    \
		.cls = 0xfe, .subclass = 0x03, .protocol = 0x01, __VA_ARGS__                                 \
	}

const struct emu_model emu_model_tmc_ds1054z = {
    .name = "tmc-ds1054z",
    .summary = "1ab1:04ce Rigol DS1054Z scope (USB488): *IDN?, :MEAS:VPP?, :WAV:DATA? 1 MiB block",
    .vendor_id = 0x1ab1,
    .product_id = 0x04ce,
    .bcd_device = 0x0002,
    .manufacturer = "Rigol Technologies.",
    .product = "DS1000Z Series",
    .serial = "DS1ZA000000001",
    .num_ifaces = 1,
    .ifaces = {TMC_IFACE(.num_eps = 3, .eps =
					   {
					       {.address = 0x81, .type = 3, .max_packet = 64, .interval = 80},
					       {.address = 0x82, .type = 2, .max_packet = 64},
					       {.address = 0x03, .type = 2, .max_packet = 64},
					   })},
    .ops = &tmc_ops,
};

const struct emu_model emu_model_tmc_pm16 = {
    .name = "tmc-pm16",
    .summary = "1313:807b Thorlabs PM16-120 (USB488, no REN): CAL:ZERO? never answered, CAL:ZERO NAKs OUT",
    .vendor_id = 0x1313,
    .product_id = 0x807b,
    .bcd_device = 0x0130,
    .manufacturer = "Thorlabs",
    .product = "PM16-120",
    .serial = "P5000001",
    .num_ifaces = 1,
    .ifaces = {TMC_IFACE(.num_eps = 3, .eps =
					   {
					       {.address = 0x02, .type = 2, .max_packet = 64},
					       {.address = 0x83, .type = 2, .max_packet = 64},
					       {.address = 0x84, .type = 3, .max_packet = 2, .interval = 1},
					   })},
    .ops = &tmc_ops,
};

const struct emu_model emu_model_tmc_liar = {
    .name = "tmc-liar",
    .summary = "1209:0040 USB488 instrument whose LIE:*? answers have a bad bTag, MsgID or TransferSize",
    .vendor_id = 0x1209,
    .product_id = 0x0040,
    .bcd_device = 0x0100,
    .manufacturer = "plugfs",
    .product = "Liar",
    .serial = "LI0001",
    .num_ifaces = 1,
    .ifaces = {TMC_IFACE(.num_eps = 2, .eps =
					   {
					       {.address = 0x01, .type = 2, .max_packet = 512},
					       {.address = 0x82, .type = 2, .max_packet = 512},
					   })},
    .ops = &tmc_ops,
};

const struct emu_model emu_model_tmc_plain = {
    .name = "tmc-plain",
    .summary = "1209:0041 plain USBTMC instrument (protocol 0): no status byte, no remote/local",
    .vendor_id = 0x1209,
    .product_id = 0x0041,
    .bcd_device = 0x0100,
    .manufacturer = "plugfs",
    .product = "Plain",
    .serial = "PL0001",
    .num_ifaces = 1,
    .ifaces = {{.cls = 0xfe,
		.subclass = 0x03,
		.protocol = 0x00,
		.num_eps = 2,
		.eps =
		    {
			{.address = 0x01, .type = 2, .max_packet = 512},
			{.address = 0x81, .type = 2, .max_packet = 512},
		    }}},
    .ops = &tmc_ops,
};
