/*
 * USB printers (class 7/1/x), several products sharing one set of ops.
 *
 *   printer-zh380    Gprinter ZH-380 receipt/label printer, 6868:0500, 7/1/2,
 *                    descriptors as the real one (../shared/devices), bulk
 *                    IN 0x84 and OUT 0x03 of 64 bytes.  Back channel: the
 *                    ESC/POS real-time status request DLE EOT n (10 04 n,
 *                    n = 1..4) is answered with one status byte, 0x12
 *                    ("online, paper present").
 *   printer-slow     the same printer, printing slowly: it takes
 *                    PRINTER_SLOW_BYTES every PRINTER_SLOW_TICK_MS and NAKs
 *                    in between, so a big write stays in flight a while.
 *   printer-dymo     a DYMO LabelWriter 450 (0922:0020, its real IEEE 1284
 *                    ID) made unidirectional: 7/1/1, bulk OUT 0x02 only.  It
 *                    knows SOFT_RESET only in the 1.0 spec's form (23 02).
 *   printer-ql800    Brother QL-800, 04f9:209b, 7/1/2, IN 0x81 / OUT 0x02 of
 *                    64 bytes (Brother's USB appendix).  The roll ends after
 *                    PRINTER_PAPER_BYTES: from then on the bulk OUT NAKs
 *                    (stays pending) and GET_PORT_STATUS says paper empty.
 *   printer-offline, printer-error
 *                    ZH-380s that stay deselected (port status 0x08) or
 *                    report a fault (0x10); their bulk OUT NAKs.
 *   printer-badid    Xprinter XP-P323B label printer, 2d37:cbb4, no strings;
 *                    its GET_DEVICE_ID length field (0x1000) claims far more
 *                    than the ID it sends.
 *
 * Every variant: GET_DEVICE_ID (wValue 0, wIndex 0x0000 only, else stall),
 * GET_PORT_STATUS (wIndex 0; 0x18 = selected, no error, or 0x30 = paper
 * empty), SOFT_RESET.  The ZH-380 and XP-P323B IDs were not published;
 * theirs are made in the shape of real ones.
 *
 * What the tests read back, when PLUGFS_EMU_DIR is set: every byte the
 * printer took is appended to $PLUGFS_EMU_DIR/SYSNAME.printed (1-1.printed)
 * at the moment it takes it, and SYSNAME.resets holds the number of
 * SOFT_RESETs received.
 */
#include "emu.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "printer_class.h"

#define PRINTER_PAPER_BYTES  100000u
#define PRINTER_SLOW_BYTES   16384u
#define PRINTER_SLOW_TICK_MS 10u
#define PRINTER_BACKCHANNEL  4096u
#define STATUS_READY	     (PRINTER_SELECTED | PRINTER_NOT_ERROR)
#define STATUS_PAPER_OUT     (PRINTER_SELECTED | PRINTER_PAPER_EMPTY)
#define ESCPOS_DLE	     0x10
#define ESCPOS_EOT	     0x04
#define ESCPOS_STATUS_OK     0x12

struct printer_variant {
	const struct emu_model *model;
	const char *device_id;
	int id_length; /* >= 0: the length field sent instead of the true one */
	size_t paper;  /* bytes until the roll ends; 0: never */
	bool slow;
	bool reset_1_0_only;
	bool escpos_status;
	uint8_t fixed_status; /* not 0: GET_PORT_STATUS always says this, and bulk OUT NAKs */
};

struct emu_printer {
	const struct printer_variant *v;
	uint8_t ep_out, ep_in;
	size_t taken; /* bytes taken since plug-in */
	unsigned resets;
	int printed_fd; /* -1: nobody reads it back */
	char resets_path[256];
	struct emu_fifo back; /* back-channel bytes not sent yet */
	uint8_t history[2];   /* the last two bytes taken, for DLE EOT n across packets */
	GSource *tick;	      /* printer-slow: the next time it takes bytes */
};

/* ---- Taking data ---- */

static void record(struct emu_printer *ps, const uint8_t *p, size_t n)
{
	size_t done = 0;

	while (ps->printed_fd >= 0 && done < n) {
		ssize_t w = write(ps->printed_fd, p + done, n - done);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			emu_err("printer: recording printed bytes: %s", strerror(errno));
			break;
		}
		done += (size_t)w;
	}
	for (size_t i = 0; i < n; i++) {
		if (ps->v->escpos_status && ps->history[0] == ESCPOS_DLE && ps->history[1] == ESCPOS_EOT &&
		    p[i] >= 1 && p[i] <= 4) {
			uint8_t status = ESCPOS_STATUS_OK;
			emu_fifo_put(&ps->back, &status, 1);
		}
		ps->history[0] = ps->history[1];
		ps->history[1] = p[i];
	}
	ps->taken += n;
}

static bool paper_out(const struct emu_printer *ps)
{
	return ps->v->paper > 0 && ps->taken >= ps->v->paper;
}

/* Takes what the printer will take now from pending OUT URBs, at most `budget` bytes. */
static void take_out(struct emu_dev *dev, size_t budget)
{
	struct emu_printer *ps = dev->state;
	struct emu_urb *urb;

	while ((urb = emu_urb_first_pending(dev, ps->ep_out)) != NULL) {
		size_t n = urb->length - urb->actual;
		if (ps->v->paper > 0 && n > ps->v->paper - ps->taken)
			n = ps->v->paper - ps->taken;
		if (n > budget)
			n = budget;
		/* urb->actual counts the bytes taken while the URB is pending (DISCARD reports it). */
		record(ps, urb->data + urb->actual, n);
		urb->actual += (uint32_t)n;
		budget -= n;
		if (urb->actual < urb->length)
			return;
		emu_urb_complete(urb, 0, urb->length);
	}
}

static void send_back(struct emu_dev *dev)
{
	struct emu_printer *ps = dev->state;
	struct emu_urb *urb;

	while (ps->ep_in != 0 && ps->back.len > 0 && (urb = emu_urb_first_pending(dev, ps->ep_in)) != NULL) {
		size_t n = emu_fifo_get(&ps->back, urb->data, urb->length);
		emu_urb_complete(urb, 0, (uint32_t)n);
	}
}

static gboolean slow_tick(gpointer arg)
{
	struct emu_dev *dev = arg;
	struct emu_printer *ps = dev->state;

	take_out(dev, PRINTER_SLOW_BYTES);
	send_back(dev);
	if (emu_urb_first_pending(dev, ps->ep_out) != NULL)
		return G_SOURCE_CONTINUE;
	g_source_unref(ps->tick);
	ps->tick = NULL;
	return G_SOURCE_REMOVE;
}

static void printer_submit(struct emu_dev *dev, struct emu_urb *urb)
{
	struct emu_printer *ps = dev->state;

	if (urb->endpoint == ps->ep_out && ps->v->slow) {
		if (ps->tick == NULL) {
			ps->tick = g_timeout_source_new(PRINTER_SLOW_TICK_MS);
			g_source_set_callback(ps->tick, slow_tick, dev, NULL);
			g_source_attach(ps->tick, g_main_context_get_thread_default());
		}
	} else if (urb->endpoint == ps->ep_out && ps->v->fixed_status == 0) {
		take_out(dev, SIZE_MAX);
	}
	send_back(dev);
}

/* ---- Class requests ---- */

static void count_reset(struct emu_printer *ps)
{
	ps->resets++;
	if (ps->resets_path[0] == '\0')
		return;
	FILE *f = fopen(ps->resets_path, "w");
	if (f == NULL) {
		emu_err("printer: %s: %s", ps->resets_path, strerror(errno));
		return;
	}
	fprintf(f, "%u\n", ps->resets);
	fclose(f);
}

static int printer_control(struct emu_dev *dev, struct emu_urb *urb, const struct emu_setup *s, uint8_t *data)
{
	struct emu_printer *ps = dev->state;
	uint8_t answer[2 + PRINTER_DEVICE_ID_MAX];
	size_t n;

	(void)urb;
	if (s->request_type == PRINTER_RT_IN && s->request == PRINTER_GET_DEVICE_ID) {
		/* Configuration index 0, interface 0 in the high byte, altsetting 0 in the low. */
		if (s->value != 0 || s->index != 0)
			return -EPIPE;
		n = strlen(ps->v->device_id);
		memcpy(answer + 2, ps->v->device_id, n);
		n += 2;
		unsigned field = ps->v->id_length >= 0 ? (unsigned)ps->v->id_length : (unsigned)n;
		answer[0] = (uint8_t)(field >> 8);
		answer[1] = (uint8_t)field;
		if (n > s->length)
			n = s->length;
		memcpy(data, answer, n);
		return (int)n;
	}
	if (s->request_type == PRINTER_RT_IN && s->request == PRINTER_GET_PORT_STATUS) {
		if (s->value != 0 || s->index != 0 || s->length < 1)
			return -EPIPE;
		data[0] = ps->v->fixed_status != 0 ? ps->v->fixed_status
			  : paper_out(ps)	   ? STATUS_PAPER_OUT
						   : STATUS_READY;
		return 1;
	}
	if (s->request == PRINTER_SOFT_RESET &&
	    (s->request_type == PRINTER_RT_OUT_OTHER ||
	     (s->request_type == PRINTER_RT_OUT && !ps->v->reset_1_0_only))) {
		if (s->value != 0 || s->index != 0)
			return -EPIPE;
		count_reset(ps);
		return 0;
	}
	return -EPIPE;
}

/* ---- Life ---- */

static const struct printer_variant variants[] = {
    {
	.model = &emu_model_printer_zh380,
	.device_id = "MFG:Gprinter;CMD:ESC/POS,TSPL;MDL:ZH-380;CLS:PRINTER;DES:Gprinter ZH-380;",
	.id_length = -1,
	.escpos_status = true,
    },
    {
	.model = &emu_model_printer_slow,
	.device_id = "MFG:Gprinter;CMD:ESC/POS,TSPL;MDL:ZH-380;CLS:PRINTER;DES:Gprinter ZH-380;",
	.id_length = -1,
	.slow = true,
	.escpos_status = true,
    },
    {
	.model = &emu_model_printer_offline,
	.device_id = "MFG:Gprinter;CMD:ESC/POS,TSPL;MDL:ZH-380;CLS:PRINTER;DES:Gprinter ZH-380;",
	.id_length = -1,
	.fixed_status = PRINTER_NOT_ERROR,
    },
    {
	.model = &emu_model_printer_error,
	.device_id = "MFG:Gprinter;CMD:ESC/POS,TSPL;MDL:ZH-380;CLS:PRINTER;DES:Gprinter ZH-380;",
	.id_length = -1,
	.fixed_status = PRINTER_SELECTED,
    },
    {
	.model = &emu_model_printer_dymo,
	.device_id = "MFG:DYMO;CMD: ;MDL:LabelWriter 450;CLASS:PRINTER;DESCRIPTION:DYMO LabelWriter "
		     "450;SERN:01010112345600;",
	.id_length = -1,
	.reset_1_0_only = true,
    },
    {
	.model = &emu_model_printer_ql800,
	.device_id = "MFG:Brother;CMD:PT-CBP;MDL:QL-800;CLS:PRINTER;",
	.id_length = -1,
	.paper = PRINTER_PAPER_BYTES,
    },
    {
	.model = &emu_model_printer_badid,
	.device_id = "MFG:Xprinter;CMD:TSPL,ESC/POS;MDL:XP-P323B;CLS:PRINTER;",
	.id_length = 0x1000,
    },
    {0},
};

static int printer_init(struct emu_dev *dev)
{
	const struct emu_iface_spec *ifs = &dev->model->ifaces[0];
	struct emu_printer *ps = calloc(1, sizeof(*ps));
	const char *dir = getenv("PLUGFS_EMU_DIR");

	if (ps == NULL)
		return -ENOMEM;
	for (const struct printer_variant *v = variants; v->model != NULL; v++)
		if (v->model == dev->model)
			ps->v = v;
	if (ps->v == NULL || emu_fifo_init(&ps->back, PRINTER_BACKCHANNEL) < 0) {
		free(ps);
		return -EINVAL;
	}
	for (unsigned e = 0; e < ifs->num_eps; e++) {
		if (ifs->eps[e].address & 0x80)
			ps->ep_in = ifs->eps[e].address;
		else
			ps->ep_out = ifs->eps[e].address;
	}
	ps->printed_fd = -1;
	if (dir != NULL && dir[0] != '\0') {
		char path[256];
		snprintf(path, sizeof(path), "%s/%s.printed", dir, dev->sysname);
		ps->printed_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (ps->printed_fd < 0)
			emu_err("printer: %s: %s", path, strerror(errno));
		snprintf(ps->resets_path, sizeof(ps->resets_path), "%s/%s.resets", dir, dev->sysname);
	}
	dev->state = ps;
	return 0;
}

static void printer_fini(struct emu_dev *dev)
{
	struct emu_printer *ps = dev->state;

	if (ps == NULL)
		return;
	if (ps->tick != NULL) {
		g_source_destroy(ps->tick);
		g_source_unref(ps->tick);
	}
	if (ps->printed_fd >= 0)
		close(ps->printed_fd);
	emu_fifo_free(&ps->back);
	free(ps);
	dev->state = NULL;
}

static const struct emu_model_ops printer_ops = {
    .init = printer_init,
    .fini = printer_fini,
    .submit = printer_submit,
    .control = printer_control,
};

#define BIDI_IFACE(in, out)                                                                                  \
	{                                                                                                    \
		.cls = 7, .subclass = 1, .protocol = 2, .num_eps = 2,                                        \
		.eps = {                                                                                     \
		    {.address = (in), .type = 2, .max_packet = 64, .interval = 10},                          \
		    {.address = (out), .type = 2, .max_packet = 64, .interval = 10},                         \
		},                                                                                           \
	}

const struct emu_model emu_model_printer_zh380 = {
    .name = "printer-zh380",
    .summary = "6868:0500 Gprinter ZH-380, bidirectional printer, ESC/POS DLE EOT status on the back channel",
    .vendor_id = 0x6868,
    .product_id = 0x0500,
    .bcd_device = 0x0400,
    .manufacturer = "Printer",
    .product = "Printer",
    .serial = "6A6958721237",
    .num_ifaces = 1,
    .ifaces = {BIDI_IFACE(0x84, 0x03)},
    .ops = &printer_ops,
};

const struct emu_model emu_model_printer_slow = {
    .name = "printer-slow",
    .summary = "6868:0500 Gprinter ZH-380 printing slowly (16 KiB every 10 ms)",
    .vendor_id = 0x6868,
    .product_id = 0x0500,
    .bcd_device = 0x0400,
    .manufacturer = "Printer",
    .product = "Printer",
    .serial = "6A6958721238",
    .num_ifaces = 1,
    .ifaces = {BIDI_IFACE(0x84, 0x03)},
    .ops = &printer_ops,
};

const struct emu_model emu_model_printer_offline = {
    .name = "printer-offline",
    .summary = "6868:0500 Gprinter ZH-380 that stays offline (port status 08), bulk OUT NAKs",
    .vendor_id = 0x6868,
    .product_id = 0x0500,
    .bcd_device = 0x0400,
    .manufacturer = "Printer",
    .product = "Printer",
    .serial = "6A6958721239",
    .num_ifaces = 1,
    .ifaces = {BIDI_IFACE(0x84, 0x03)},
    .ops = &printer_ops,
};

const struct emu_model emu_model_printer_error = {
    .name = "printer-error",
    .summary = "6868:0500 Gprinter ZH-380 reporting a fault (port status 10), bulk OUT NAKs",
    .vendor_id = 0x6868,
    .product_id = 0x0500,
    .bcd_device = 0x0400,
    .manufacturer = "Printer",
    .product = "Printer",
    .serial = "6A6958721240",
    .num_ifaces = 1,
    .ifaces = {BIDI_IFACE(0x84, 0x03)},
    .ops = &printer_ops,
};

const struct emu_model emu_model_printer_dymo = {
    .name = "printer-dymo",
    .summary = "0922:0020 DYMO LabelWriter 450 as a unidirectional printer (7/1/1), 1.0-spec SOFT_RESET",
    .vendor_id = 0x0922,
    .product_id = 0x0020,
    .bcd_device = 0x0100,
    .manufacturer = "DYMO",
    .product = "DYMO LabelWriter 450",
    .serial = "01010112345600",
    .num_ifaces = 1,
    .ifaces = {{
	.cls = 7,
	.subclass = 1,
	.protocol = 1,
	.num_eps = 1,
	.eps = {{.address = 0x02, .type = 2, .max_packet = 64}},
    }},
    .ops = &printer_ops,
};

const struct emu_model emu_model_printer_ql800 = {
    .name = "printer-ql800",
    .summary = "04f9:209b Brother QL-800, its roll ends after 100000 bytes (paper out mid-job)",
    .vendor_id = 0x04f9,
    .product_id = 0x209b,
    .bcd_device = 0x0100,
    .manufacturer = "Brother",
    .product = "QL-800",
    .serial = "000G0Z000000",
    .num_ifaces = 1,
    .ifaces = {BIDI_IFACE(0x81, 0x02)},
    .ops = &printer_ops,
};

const struct emu_model emu_model_printer_badid = {
    .name = "printer-badid",
    .summary = "2d37:cbb4 Xprinter XP-P323B, GET_DEVICE_ID length field larger than the answer",
    .vendor_id = 0x2d37,
    .product_id = 0xcbb4,
    .bcd_device = 0x0100,
    .num_ifaces = 1,
    .ifaces = {BIDI_IFACE(0x81, 0x02)},
    .ops = &printer_ops,
};
