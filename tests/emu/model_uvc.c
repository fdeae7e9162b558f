/*
 * Webcams (USB Video Class), streaming frames a test can check.
 *
 * `c270`: shaped on the Logitech C270 (046d:0825, device class ef/02/01
 * with an Interface Association).  /work/shared/devices/logitech-c270.txt
 * has only its device descriptor; the configuration below follows the
 * layout such cameras report (UVC 1.0; camera terminal, processing unit,
 * an extension unit, output terminal; YUY2 first, then MJPEG, three
 * sizes each; eleven isochronous altsettings on endpoint 0x81 from 192
 * bytes to 3 x 1020 per microframe).  Its microphone (USB Audio) is left
 * out.  Frames go out through isochronous URBs, paced like the bus: an
 * URB of N packets completes N x 125 us after the previous one ended.
 *
 * `bulkcam`: a UVC 1.1 camera with one YUY2 format (320x240, 160x120)
 * streaming through bulk endpoint 0x82 in altsetting 0, as some
 * industrial and Raspberry Pi cameras do.
 *
 * Every frame carries a counter (1, 2, 3...; across stream restarts too):
 * the top band of the picture has 16 cells, white for a 1 bit, black for
 * 0, most significant first, of counter & 0xffff; below it a horizontal
 * grey ramp (YUY2: Y = 16 + 219 x / (w - 1), U = V = 128) or a colour
 * ramp (MJPEG, which also carries "plugfs-emu frame N" in a COM marker).
 * Every frame whose counter is a multiple of UVC_EMU_DAMAGED has the
 * error bit set in one payload header halfway through, and on the
 * isochronous camera every multiple of UVC_EMU_LOST loses a packet
 * halfway through (status -EXDEV, as a missed microframe): a driver must
 * drop both.  Payload headers are 12 bytes (PTS and SCR), FID toggles
 * per frame, EOF marks the last payload except on multiples of
 * UVC_EMU_NO_EOF, which end only when the next frame's FID toggles (as
 * UVC allows); idle isochronous packets are empty.
 *
 * With PLUGFS_EMU_DIR set, $PLUGFS_EMU_DIR/SYSNAME.uvc holds one line,
 * rewritten at every change: "alt A streaming S format F frame R
 * interval I", what the tests read to know the camera's state.
 */
#include "emu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <linux/usbdevice_fs.h>

#include "proto.h"
#include "util.h"

#define UVC_EMU_DAMAGED 5
#define UVC_EMU_LOST	7 /* isochronous only */
#define UVC_EMU_NO_EOF	3
#define PAYLOAD_HDR	12
#define MICROFRAME_US	125

#define W16(v) (uint8_t)((v)&0xff), (uint8_t)(((v) >> 8) & 0xff)
#define W32(v)                                                                                               \
	(uint8_t)((v)&0xff), (uint8_t)(((v) >> 8) & 0xff), (uint8_t)(((v) >> 16) & 0xff),                    \
	    (uint8_t)(((v) >> 24) & 0xff)

/* Frame intervals in 100 ns: 30, 15 and 5 frames a second. */
#define IV30 333333
#define IV15 666666
#define IV5  2000000

/* A frame descriptor with the three intervals, 38 bytes. */
#define FRAME(sub, idx, w, h)                                                                                \
	38, 0x24, sub, idx, 0x00, W16(w), W16(h), W32((w) * (h)*16 * 5), W32((w) * (h)*16 * 30),             \
	    W32((w) * (h)*2), W32(IV30), 3, W32(IV30), W32(IV15), W32(IV5)

#define VS_FRAME_UNCOMPRESSED 0x05
#define VS_FRAME_MJPEG	      0x07
#define YUY2_GUID	      'Y', 'U', 'Y', '2', 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71

enum { KIND_YUY2 = 1, KIND_MJPEG = 2 };

struct cam_frame {
	uint16_t w, h;
};

struct cam_format {
	uint8_t kind;
	uint8_t num_frames;
	uint8_t default_frame;
	struct cam_frame frames[4];
};

struct cam_control {
	uint8_t unit, selector, size;
	int32_t min, max, res, def;
	bool bitmap; /* AE mode: GET_RES is the supported modes, no GET_MIN/MAX */
};

/* What differs between the two cameras. */
struct cam_variant {
	const struct emu_model *model;
	uint16_t bcd_uvc;
	uint8_t vc_if, vs_if, ep;
	bool bulk;
	uint8_t num_formats;
	struct cam_format formats[2];
	const struct cam_control *controls;
	size_t num_controls;
};

/* ---- c270 descriptors ---- */

static const uint8_t c270_iad[] = {8, 0x0b, 0, 2, 0x0e, 0x03, 0x00, 0};

#define C270_VC_LEN (13 + 18 + 11 + 27 + 9)
static const uint8_t c270_vc[] = {
    /* Header: UVC 1.00, 48 MHz clock, one streaming interface (1). */
    13, 0x24, 0x01, W16(0x0100), W16(C270_VC_LEN), W32(48000000), 1, 1,
    /* Camera terminal 1: AE mode, AE priority, exposure time (absolute). */
    18, 0x24, 0x02, 1, W16(0x0201), 0, 0, W16(0), W16(0), W16(0), 3, 0x0e, 0x00, 0x00,
    /* Processing unit 3: brightness, contrast, saturation, sharpness, WB temperature,
       backlight compensation, gain, power line frequency, WB temperature auto. */
    11, 0x24, 0x05, 3, 1, W16(0), 2, 0x5b, 0x17, 0,
    /* Extension unit 4 (Logitech's, unknown to the class: skipped). */
    27, 0x24, 0x06, 4, 0x82, 0x06, 0x6a, 0x7e, 0x8a, 0x2e, 0x4c, 0x4e, 0xa5, 0x2d, 0x3f, 0x41, 0x31, 0x77,
    0xd2, 0x4b, 8, 1, 3, 2, 0xff, 0x00, 0,
    /* Output terminal 5 (USB streaming) fed by unit 4. */
    9, 0x24, 0x03, 5, W16(0x0101), 0, 4, 0};
_Static_assert(sizeof(c270_vc) == C270_VC_LEN, "c270 VC length");

#define C270_VS_LEN (15 + 27 + 3 * 38 + 6 + 11 + 3 * 38 + 6)
static const uint8_t c270_vs[] = {
    /* Input header: two formats, endpoint 0x81, terminal link 5. */
    15, 0x24, 0x01, 2, W16(C270_VS_LEN), 0x81, 0, 5, 0, 0, 0, 1, 0, 0,
    /* Format 1: YUY2, 16 bits per pixel, default frame 1. */
    27, 0x24, 0x04, 1, 3, YUY2_GUID, 16, 1, 0, 0, 0, 0, FRAME(VS_FRAME_UNCOMPRESSED, 1, 640, 480),
    FRAME(VS_FRAME_UNCOMPRESSED, 2, 320, 240), FRAME(VS_FRAME_UNCOMPRESSED, 3, 160, 120),
    /* Colour matching: BT.709 primaries, BT.709 transfer, SMPTE 170M matrix. */
    6, 0x24, 0x0d, 1, 1, 4,
    /* Format 2: MJPEG, fixed-size samples, default frame 1. */
    11, 0x24, 0x06, 2, 3, 1, 1, 0, 0, 0, 0, FRAME(VS_FRAME_MJPEG, 1, 640, 480),
    FRAME(VS_FRAME_MJPEG, 2, 1280, 720), FRAME(VS_FRAME_MJPEG, 3, 320, 240), 6, 0x24, 0x0d, 1, 1, 4};
_Static_assert(sizeof(c270_vs) == C270_VS_LEN, "c270 VS length");

#define ISO_ALT(mps)                                                                                         \
	{                                                                                                    \
		.num_eps = 1, .eps = {{.address = 0x81, .type = 1, .max_packet = (mps), .interval = 1}},     \
	}
static const struct emu_alt_spec c270_alts[] = {
    ISO_ALT(0x00c0), ISO_ALT(0x0180), ISO_ALT(0x0200), ISO_ALT(0x0280), ISO_ALT(0x0320), ISO_ALT(0x03b0),
    ISO_ALT(0x0a80), ISO_ALT(0x0b20), ISO_ALT(0x0be0), ISO_ALT(0x1380), ISO_ALT(0x13fc),
};

static const struct cam_control c270_controls[] = {
    {.unit = 1, .selector = 0x02, .size = 1, .res = 0x09, .def = 0x08, .bitmap = true},	    /* AE mode */
    {.unit = 1, .selector = 0x03, .size = 1, .min = 0, .max = 1, .res = 1, .def = 0},	    /* AE priority */
    {.unit = 1, .selector = 0x04, .size = 4, .min = 1, .max = 10000, .res = 1, .def = 166}, /* exposure */
    {.unit = 3, .selector = 0x02, .size = 2, .min = 0, .max = 255, .res = 1, .def = 128},   /* brightness */
    {.unit = 3, .selector = 0x03, .size = 2, .min = 0, .max = 255, .res = 1, .def = 32},    /* contrast */
    {.unit = 3, .selector = 0x07, .size = 2, .min = 0, .max = 255, .res = 1, .def = 32},    /* saturation */
    {.unit = 3, .selector = 0x08, .size = 2, .min = 0, .max = 255, .res = 1, .def = 24},    /* sharpness */
    {.unit = 3, .selector = 0x0a, .size = 2, .min = 2800, .max = 6500, .res = 10, .def = 4000}, /* WB temp */
    {.unit = 3, .selector = 0x01, .size = 2, .min = 0, .max = 1, .res = 1, .def = 0},	/* backlight */
    {.unit = 3, .selector = 0x04, .size = 2, .min = 0, .max = 255, .res = 1, .def = 0}, /* gain */
    {.unit = 3, .selector = 0x05, .size = 1, .min = 0, .max = 2, .res = 1, .def = 2},	/* power line */
    {.unit = 3, .selector = 0x0b, .size = 1, .min = 0, .max = 1, .res = 1, .def = 1},	/* WB auto */
};

static const struct emu_model_ops uvc_ops;

const struct emu_model emu_model_c270 = {
    .name = "c270",
    .summary = "Logitech C270 webcam: UVC 1.0, MJPEG and YUY2 over isochronous altsettings",
    .vendor_id = 0x046d,
    .product_id = 0x0825,
    .bcd_device = 0x0010,
    .dev_class = 0xef,
    .dev_subclass = 0x02,
    .dev_protocol = 0x01,
    .serial = "6457F4D0",
    .num_ifaces = 2,
    .ifaces =
	{
	    {.cls = 0x0e,
	     .subclass = 1,
	     .num_eps = 1,
	     .eps = {{.address = 0x87, .type = 3, .max_packet = 16, .interval = 8}},
	     .pre = c270_iad,
	     .pre_len = sizeof(c270_iad),
	     .extra = c270_vc,
	     .extra_len = sizeof(c270_vc)},
	    {.cls = 0x0e,
	     .subclass = 2,
	     .extra = c270_vs,
	     .extra_len = sizeof(c270_vs),
	     .num_alts = sizeof(c270_alts) / sizeof(c270_alts[0]),
	     .alts = c270_alts},
	},
    .ops = &uvc_ops,
};

/* ---- bulkcam descriptors ---- */

static const uint8_t bulkcam_iad[] = {8, 0x0b, 0, 2, 0x0e, 0x03, 0x00, 0};

#define BULKCAM_VC_LEN (13 + 18 + 12 + 9)
static const uint8_t bulkcam_vc[] = {13, 0x24, 0x01, W16(0x0110), W16(BULKCAM_VC_LEN), W32(48000000), 1, 1,
				     /* Camera terminal 1: no controls. */
				     18, 0x24, 0x02, 1, W16(0x0201), 0, 0, W16(0), W16(0), W16(0), 3, 0x00,
				     0x00, 0x00,
				     /* Processing unit 2 (UVC 1.1 layout): brightness, contrast. */
				     12, 0x24, 0x05, 2, 1, W16(0), 2, 0x03, 0x00, 0, 0,
				     /* Output terminal 3. */
				     9, 0x24, 0x03, 3, W16(0x0101), 0, 2, 0};
_Static_assert(sizeof(bulkcam_vc) == BULKCAM_VC_LEN, "bulkcam VC length");

#define BULKCAM_VS_LEN (14 + 27 + 2 * 38)
static const uint8_t bulkcam_vs[] = {
    /* Input header: one format, endpoint 0x82, terminal link 3. */
    14, 0x24, 0x01, 1, W16(BULKCAM_VS_LEN), 0x82, 0, 3, 0, 0, 0, 1, 0,
    /* Format 1: YUY2, default frame 1. */
    27, 0x24, 0x04, 1, 2, YUY2_GUID, 16, 1, 0, 0, 0, 0,
    /* Frames. */
    FRAME(VS_FRAME_UNCOMPRESSED, 1, 320, 240), FRAME(VS_FRAME_UNCOMPRESSED, 2, 160, 120)};
_Static_assert(sizeof(bulkcam_vs) == BULKCAM_VS_LEN, "bulkcam VS length");

static const struct cam_control bulkcam_controls[] = {
    {.unit = 2, .selector = 0x02, .size = 2, .min = -64, .max = 64, .res = 1, .def = 0}, /* brightness */
    {.unit = 2, .selector = 0x03, .size = 2, .min = 0, .max = 100, .res = 5, .def = 50}, /* contrast */
};

const struct emu_model emu_model_bulkcam = {
    .name = "bulkcam",
    .summary = "UVC 1.1 camera, YUY2 only, streaming through a bulk endpoint",
    .vendor_id = 0x1209,
    .product_id = 0x0ca7,
    .bcd_device = 0x0100,
    .dev_class = 0xef,
    .dev_subclass = 0x02,
    .dev_protocol = 0x01,
    .manufacturer = "plugfs",
    .product = "Bulk Webcam",
    .serial = "BC0001",
    .num_ifaces = 2,
    .ifaces =
	{
	    {.cls = 0x0e,
	     .subclass = 1,
	     .pre = bulkcam_iad,
	     .pre_len = sizeof(bulkcam_iad),
	     .extra = bulkcam_vc,
	     .extra_len = sizeof(bulkcam_vc)},
	    {.cls = 0x0e,
	     .subclass = 2,
	     .num_eps = 1,
	     .eps = {{.address = 0x82, .type = 2, .max_packet = 512}},
	     .extra = bulkcam_vs,
	     .extra_len = sizeof(bulkcam_vs)},
	},
    .ops = &uvc_ops,
};

static const struct cam_variant variants[] = {
    {.model = &emu_model_c270,
     .bcd_uvc = 0x0100,
     .vc_if = 0,
     .vs_if = 1,
     .ep = 0x81,
     .num_formats = 2,
     .formats = {{KIND_YUY2, 3, 1, {{640, 480}, {320, 240}, {160, 120}}},
		 {KIND_MJPEG, 3, 1, {{640, 480}, {1280, 720}, {320, 240}}}},
     .controls = c270_controls,
     .num_controls = sizeof(c270_controls) / sizeof(c270_controls[0])},
    {.model = &emu_model_bulkcam,
     .bcd_uvc = 0x0110,
     .vc_if = 0,
     .vs_if = 1,
     .ep = 0x82,
     .bulk = true,
     .num_formats = 1,
     .formats = {{KIND_YUY2, 2, 1, {{320, 240}, {160, 120}}}},
     .controls = bulkcam_controls,
     .num_controls = sizeof(bulkcam_controls) / sizeof(bulkcam_controls[0])},
};

/* ---- state ---- */

struct probe {
	uint8_t format, frame; /* 1-based */
	uint32_t interval;
	uint32_t max_frame, max_payload;
};

struct iso_slot {
	struct emu_urb *urb;
	uint64_t due_us;
};

struct cam {
	struct emu_dev *dev;
	const struct cam_variant *v;
	int32_t cur[16]; /* per control */
	struct probe probe, commit;
	uint8_t alt;
	bool streaming;
	/* The stream: the frame being sent and when the next one is due. */
	uint8_t *frame;
	size_t frame_len, frame_off, frame_cap;
	bool in_frame, damaged, lose;
	uint8_t fid;
	uint32_t counter;
	uint64_t next_frame_us;
	/* URBs waiting for their time: iso by due time, bulk until a frame is there. */
	GQueue waiting;
	GSource *timer;
};

static void cam_pump(struct cam *c);

static void cam_report(struct cam *c)
{
	const char *dir = getenv("PLUGFS_EMU_DIR");
	char path[512], tmp[520];
	FILE *f;

	if (dir == NULL)
		return;
	snprintf(path, sizeof(path), "%s/%s.uvc", dir, c->dev->sysname);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL)
		return;
	fprintf(f, "alt %u streaming %u format %u frame %u interval %u\n", c->alt, c->streaming ? 1 : 0,
		c->commit.format, c->commit.frame, c->commit.interval);
	fclose(f);
	rename(tmp, path);
}

static const struct cam_frame *probe_frame(const struct cam *c, const struct probe *p)
{
	return &c->v->formats[p->format - 1].frames[p->frame - 1];
}

/* Bandwidth the stream needs per microframe (or per bulk payload). */
static uint32_t payload_size(const struct cam *c, const struct probe *p)
{
	const struct cam_frame *fr = probe_frame(c, p);
	uint64_t fps_milli = 10000000000ull / p->interval;
	/* MJPEG frames of this pattern stay well under a quarter of w x h bytes. */
	uint64_t frame = c->v->formats[p->format - 1].kind == KIND_MJPEG ? (uint64_t)fr->w * fr->h / 4
									 : (uint64_t)fr->w * fr->h * 2;
	uint64_t per_uframe = (frame * fps_milli / 1000 + 7999) / 8000 + PAYLOAD_HDR;

	if (c->v->bulk)
		return 16384;
	return per_uframe > 3060 ? 3060 : (uint32_t)per_uframe;
}

/* As cameras do: anything out of range is replaced by the default, the interval by the nearest. */
static void negotiate(const struct cam *c, struct probe *p)
{
	static const uint32_t ivs[] = {IV30, IV15, IV5};
	uint32_t best = IV30;

	if (p->format < 1 || p->format > c->v->num_formats)
		p->format = 1;
	if (p->frame < 1 || p->frame > c->v->formats[p->format - 1].num_frames)
		p->frame = c->v->formats[p->format - 1].default_frame;
	for (unsigned i = 0; i < 3; i++) {
		uint32_t d = ivs[i] > p->interval ? ivs[i] - p->interval : p->interval - ivs[i];
		uint32_t bd = best > p->interval ? best - p->interval : p->interval - best;
		if (d < bd)
			best = ivs[i];
	}
	p->interval = best;
	const struct cam_frame *fr = probe_frame(c, p);
	p->max_frame = (uint32_t)fr->w * fr->h * 2;
	p->max_payload = payload_size(c, p);
}

static void probe_put(const struct cam *c, const struct probe *p, uint8_t *buf, size_t len)
{
	uint8_t b[48] = {0};

	put_le16(b, 1); /* bmHint: keep the frame interval */
	b[2] = p->format;
	b[3] = p->frame;
	put_le32(b + 4, p->interval);
	put_le32(b + 18, p->max_frame);
	put_le32(b + 22, p->max_payload);
	if (c->v->bcd_uvc >= 0x0110) {
		put_le32(b + 26, 48000000);
		b[30] = 0x03; /* FID required, EOF may be present */
	}
	memcpy(buf, b, len < sizeof(b) ? len : sizeof(b));
}

/* ---- frames ---- */

static void set_bit_cells(uint8_t *row_bits, uint32_t counter)
{
	for (unsigned i = 0; i < 16; i++)
		row_bits[i] = (counter >> (15 - i)) & 1;
}

static int make_yuy2(struct cam *c, const struct cam_frame *fr)
{
	size_t len = (size_t)fr->w * fr->h * 2;
	unsigned band = fr->h / 8 < 16 ? 16 : fr->h / 8;
	uint8_t bits[16];

	if (len > c->frame_cap) {
		uint8_t *p = realloc(c->frame, len);
		if (p == NULL)
			return -ENOMEM;
		c->frame = p;
		c->frame_cap = len;
	}
	set_bit_cells(bits, c->counter);
	for (unsigned y = 0; y < fr->h; y++) {
		uint8_t *row = c->frame + (size_t)y * fr->w * 2;
		for (unsigned x = 0; x < fr->w; x++) {
			uint8_t luma;
			if (y < band)
				luma = bits[x * 16 / fr->w] ? 235 : 16;
			else
				luma = (uint8_t)(16 + x * 219 / (fr->w - 1u));
			row[2 * x] = luma;
			row[2 * x + 1] = 128; /* U for even x, V for odd x */
		}
	}
	c->frame_len = len;
	return 0;
}

static int make_mjpeg(struct cam *c, const struct cam_frame *fr)
{
	struct jpeg_compress_struct cinfo;
	struct jpeg_error_mgr jerr;
	unsigned char *out = NULL;
	unsigned long out_len = 0;
	unsigned band = fr->h / 8 < 16 ? 16 : fr->h / 8;
	uint8_t bits[16];
	uint8_t *row = malloc((size_t)fr->w * 3);
	char com[48];

	if (row == NULL)
		return -ENOMEM;
	set_bit_cells(bits, c->counter);
	cinfo.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&cinfo);
	jpeg_mem_dest(&cinfo, &out, &out_len);
	cinfo.image_width = fr->w;
	cinfo.image_height = fr->h;
	cinfo.input_components = 3;
	cinfo.in_color_space = JCS_RGB;
	jpeg_set_defaults(&cinfo);
	jpeg_set_quality(&cinfo, 85, TRUE);
	jpeg_start_compress(&cinfo, TRUE);
	snprintf(com, sizeof(com), "plugfs-emu frame %u", c->counter);
	jpeg_write_marker(&cinfo, JPEG_COM, (const JOCTET *)com, (unsigned)strlen(com));
	for (unsigned y = 0; y < fr->h; y++) {
		for (unsigned x = 0; x < fr->w; x++) {
			uint8_t *p = row + 3 * x;
			if (y < band) {
				p[0] = p[1] = p[2] = bits[x * 16 / fr->w] ? 255 : 0;
			} else {
				p[0] = (uint8_t)(x * 255 / (fr->w - 1u));
				p[1] = (uint8_t)(y * 255 / (fr->h - 1u));
				p[2] = (uint8_t)(c->counter * 8);
			}
		}
		JSAMPROW rp = row;
		jpeg_write_scanlines(&cinfo, &rp, 1);
	}
	jpeg_finish_compress(&cinfo);
	jpeg_destroy_compress(&cinfo);
	free(row);
	free(c->frame);
	c->frame = out;
	c->frame_cap = out_len;
	c->frame_len = out_len;
	return 0;
}

/* Starts the next frame. */
static void next_frame(struct cam *c)
{
	const struct cam_frame *fr = probe_frame(c, &c->commit);
	int r;

	c->counter++;
	if (c->v->formats[c->commit.format - 1].kind == KIND_MJPEG)
		r = make_mjpeg(c, fr);
	else
		r = make_yuy2(c, fr);
	if (r < 0) {
		emu_err("%s: no memory for a frame", c->dev->sysname);
		return;
	}
	c->frame_off = 0;
	c->in_frame = true;
	c->damaged = c->counter % UVC_EMU_DAMAGED == 0;
	c->lose = !c->v->bulk && c->counter % UVC_EMU_LOST == 0;
	c->fid ^= 1;
}

/*
 * One payload of at most `room` bytes at bus time `t`: a header and the
 * next piece of the frame, or nothing while no frame is due.  Returns its
 * length.
 */
static size_t gen_payload(struct cam *c, uint64_t t, uint8_t *out, size_t room)
{
	size_t n;
	uint8_t info;

	if (room <= PAYLOAD_HDR)
		return 0;
	if (!c->in_frame) {
		if (t < c->next_frame_us)
			return 0;
		uint64_t iv = c->commit.interval / 10;
		/* Keep the cadence, but never owe a burst of frames after a pause. */
		c->next_frame_us = c->next_frame_us + iv < t ? t + iv : c->next_frame_us + iv;
		next_frame(c);
		if (!c->in_frame)
			return 0;
	}
	n = c->frame_len - c->frame_off;
	if (n > room - PAYLOAD_HDR)
		n = room - PAYLOAD_HDR;
	info = 0x80 | 0x04 | 0x08 | c->fid; /* EOH, PTS, SCR */
	if (c->damaged && c->frame_off <= c->frame_len / 2 && c->frame_off + n > c->frame_len / 2)
		info |= 0x40;
	memcpy(out + PAYLOAD_HDR, c->frame + c->frame_off, n);
	c->frame_off += n;
	if (c->frame_off == c->frame_len) {
		if (c->counter % UVC_EMU_NO_EOF != 0)
			info |= 0x02;
		c->in_frame = false;
	}
	out[0] = PAYLOAD_HDR;
	out[1] = info;
	put_le32(out + 2, (uint32_t)(t * 48));		    /* PTS: the 48 MHz clock */
	put_le32(out + 6, (uint32_t)(now_us() * 48));	    /* SCR: source clock... */
	put_le16(out + 10, (uint16_t)((t / 1000) & 0x7ff)); /* ...and the 1 kHz SOF counter */
	return PAYLOAD_HDR + n;
}

/* Bytes an isochronous packet may carry in the current altsetting. */
static size_t iso_room(const struct cam *c)
{
	const struct emu_ep_spec *ep = emu_model_alt_endpoint(c->dev->model, c->v->vs_if, c->alt, c->v->ep);

	if (ep == NULL)
		return 0;
	return (size_t)(ep->max_packet & 0x7ff) * (1 + ((ep->max_packet >> 11) & 3));
}

static void finish_iso(struct cam *c, struct emu_urb *urb, uint64_t start_us)
{
	size_t off = 0, room = iso_room(c);
	uint32_t total = 0;

	for (unsigned i = 0; i < urb->num_iso; i++) {
		struct emu_iso_packet *p = &urb->iso[i];
		size_t len = p->length < room ? p->length : room;
		size_t n = c->streaming
			       ? gen_payload(c, start_us + (uint64_t)i * MICROFRAME_US, urb->data + off, len)
			       : 0;
		p->actual = (uint32_t)n;
		p->status = 0;
		/* A microframe lost on the bus: its data never arrives. */
		if (n > 0 && c->lose && c->frame_off >= c->frame_len / 2) {
			c->lose = false;
			p->actual = 0;
			p->status = -EXDEV;
			n = 0;
		}
		total += (uint32_t)n;
		off += p->length;
	}
	emu_urb_complete(urb, 0, total);
}

static gboolean on_timer(gpointer arg)
{
	struct cam *c = arg;

	g_source_unref(c->timer);
	c->timer = NULL;
	cam_pump(c);
	return G_SOURCE_REMOVE;
}

static void arm_timer(struct cam *c, uint64_t due_us)
{
	uint64_t now = now_us();
	unsigned ms = due_us > now ? (unsigned)((due_us - now + 999) / 1000) : 0;

	if (c->timer != NULL) {
		g_source_destroy(c->timer);
		g_source_unref(c->timer);
	}
	c->timer = g_timeout_source_new(ms);
	g_source_set_callback(c->timer, on_timer, c, NULL);
	g_source_attach(c->timer, g_main_context_get_thread_default());
}

/* Completes what is due and arms the timer for the rest. */
static void cam_pump(struct cam *c)
{
	struct iso_slot *s;

	while ((s = g_queue_peek_head(&c->waiting)) != NULL) {
		uint64_t now = now_us();
		struct emu_urb *urb = s->urb;

		if (!c->v->bulk) {
			if (s->due_us > now + 500)
				return arm_timer(c, s->due_us);
			g_queue_pop_head(&c->waiting);
			finish_iso(c, urb, s->due_us - (uint64_t)urb->num_iso * MICROFRAME_US);
			free(s);
			continue;
		}
		if (!c->streaming)
			return;
		if (!c->in_frame && now < c->next_frame_us)
			return arm_timer(c, c->next_frame_us);
		size_t n = gen_payload(c, now, urb->data, urb->length);
		g_queue_pop_head(&c->waiting);
		free(s);
		emu_urb_complete(urb, 0, (uint32_t)n);
	}
}

/* ---- hooks ---- */

static int uvc_init(struct emu_dev *dev)
{
	struct cam *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < sizeof(variants) / sizeof(variants[0]); i++)
		if (variants[i].model == dev->model)
			c->v = &variants[i];
	if (c->v == NULL) {
		free(c);
		return -EINVAL;
	}
	c->dev = dev;
	for (size_t i = 0; i < c->v->num_controls; i++)
		c->cur[i] = c->v->controls[i].def;
	c->probe.interval = IV30;
	negotiate(c, &c->probe);
	c->commit = c->probe;
	g_queue_init(&c->waiting);
	dev->state = c;
	cam_report(c);
	return 0;
}

static void uvc_fini(struct emu_dev *dev)
{
	struct cam *c = dev->state;
	struct iso_slot *s;

	if (c == NULL)
		return;
	if (c->timer != NULL) {
		g_source_destroy(c->timer);
		g_source_unref(c->timer);
	}
	while ((s = g_queue_pop_head(&c->waiting)) != NULL)
		free(s);
	free(c->frame);
	free(c);
}

static void start_stream(struct cam *c)
{
	c->streaming = true;
	c->in_frame = false;
	c->next_frame_us = now_us();
	emu_log("%s: streaming format %u frame %u interval %u", c->dev->sysname, c->commit.format,
		c->commit.frame, c->commit.interval);
	cam_report(c);
}

static void stop_stream(struct cam *c)
{
	if (!c->streaming)
		return;
	c->streaming = false;
	emu_log("%s: streaming stopped", c->dev->sysname);
	cam_report(c);
}

static void uvc_submit(struct emu_dev *dev, struct emu_urb *urb)
{
	struct cam *c = dev->state;
	struct iso_slot *s = calloc(1, sizeof(*s));

	if (urb->endpoint != c->v->ep || s == NULL) {
		free(s);
		/* The interrupt endpoint: no status events, it stays pending. */
		return;
	}
	s->urb = urb;
	if (urb->type == USBDEVFS_URB_TYPE_ISO) {
		/* The bus serves the URBs one after the other, a packet per microframe. */
		struct iso_slot *last = g_queue_peek_tail(&c->waiting);
		uint64_t start = now_us();
		if (last != NULL && last->due_us > start)
			start = last->due_us;
		s->due_us = start + (uint64_t)urb->num_iso * MICROFRAME_US;
	}
	g_queue_push_tail(&c->waiting, s);
	cam_pump(c);
}

static void uvc_cancelled(struct emu_dev *dev, struct emu_urb *urb)
{
	struct cam *c = dev->state;

	for (GList *l = c->waiting.head; l != NULL; l = l->next) {
		struct iso_slot *s = l->data;
		if (s->urb == urb) {
			g_queue_delete_link(&c->waiting, l);
			free(s);
			return;
		}
	}
}

static void uvc_set_alt(struct emu_dev *dev, uint8_t ifnum, uint8_t alt)
{
	struct cam *c = dev->state;

	if (ifnum != c->v->vs_if)
		return;
	c->alt = alt;
	/* An isochronous camera streams while a non-zero altsetting is selected; a bulk one stops at alt 0.
	 */
	if (!c->v->bulk && alt != 0)
		start_stream(c);
	else
		stop_stream(c);
	cam_report(c);
}

static void uvc_clear_halt(struct emu_dev *dev, uint8_t ep)
{
	struct cam *c = dev->state;

	/* A bulk camera's stream ends with CLEAR_FEATURE(ENDPOINT_HALT) on its endpoint, as Linux's uvcvideo
	 * stops it. */
	if (c->v->bulk && ep == c->v->ep)
		stop_stream(c);
}

static int control_index(const struct cam *c, uint8_t unit, uint8_t selector)
{
	for (size_t i = 0; i < c->v->num_controls; i++)
		if (c->v->controls[i].unit == unit && c->v->controls[i].selector == selector)
			return (int)i;
	return -1;
}

static int32_t get_value(const uint8_t *p, uint8_t size)
{
	switch (size) {
	case 1:
		return p[0];
	case 2:
		return (int16_t)get_le16(p);
	default:
		return (int32_t)get_le32(p);
	}
}

static void put_value(uint8_t *p, uint8_t size, int32_t v)
{
	for (unsigned i = 0; i < size; i++)
		p[i] = (uint8_t)((uint32_t)v >> (8 * i));
}

static int unit_request(struct cam *c, const struct emu_setup *s, uint8_t *data)
{
	int i = control_index(c, s->index >> 8, s->value >> 8);
	const struct cam_control *ctl;
	int32_t v;

	if (i < 0)
		return -EPIPE;
	ctl = &c->v->controls[i];
	if (s->request == 0x85) { /* GET_LEN */
		if (s->length < 2)
			return -EPIPE;
		put_le16(data, ctl->size);
		return 2;
	}
	if (s->request == 0x86) { /* GET_INFO: GET and SET supported */
		if (s->length < 1)
			return -EPIPE;
		data[0] = 0x03;
		return 1;
	}
	if (s->length != ctl->size)
		return -EPIPE;
	switch (s->request) {
	case 0x01: /* SET_CUR */
		v = get_value(data, ctl->size);
		if (ctl->bitmap ? (v == 0 || (v & (v - 1)) != 0 || (v & ~ctl->res) != 0)
				: (v < ctl->min || v > ctl->max || (v - ctl->min) % ctl->res != 0))
			return -EPIPE;
		c->cur[i] = v;
		emu_log("%s: control unit %u selector %u = %d", c->dev->sysname, ctl->unit, ctl->selector, v);
		return ctl->size;
	case 0x81:
		v = c->cur[i];
		break;
	case 0x82:
	case 0x83:
		if (ctl->bitmap)
			return -EPIPE;
		v = s->request == 0x82 ? ctl->min : ctl->max;
		break;
	case 0x84:
		v = ctl->res;
		break;
	case 0x87:
		v = ctl->def;
		break;
	default:
		return -EPIPE;
	}
	put_value(data, ctl->size, v);
	return ctl->size;
}

static int streaming_request(struct cam *c, const struct emu_setup *s, uint8_t *data)
{
	uint8_t sel = s->value >> 8;
	size_t len = c->v->bcd_uvc >= 0x0110 ? 34 : 26;
	struct probe p;

	if (sel != 1 && sel != 2)
		return -EPIPE;
	if (s->request == 0x85) {
		if (s->length < 2)
			return -EPIPE;
		put_le16(data, (uint16_t)len);
		return 2;
	}
	if (s->request == 0x86) {
		if (s->length < 1)
			return -EPIPE;
		data[0] = 0x03;
		return 1;
	}
	if (s->length != len)
		return -EPIPE;
	switch (s->request) {
	case 0x01:
		p = (struct probe){.format = data[2], .frame = data[3], .interval = get_le32(data + 4)};
		if (sel == 2 && (p.format < 1 || p.format > c->v->num_formats || p.frame < 1 ||
				 p.frame > c->v->formats[p.format - 1].num_frames))
			return -EPIPE;
		negotiate(c, &p);
		if (sel == 1) {
			c->probe = p;
		} else {
			c->commit = p;
			emu_log("%s: commit format %u frame %u interval %u payload %u", c->dev->sysname,
				p.format, p.frame, p.interval, p.max_payload);
			if (c->v->bulk)
				start_stream(c);
			cam_report(c);
		}
		return (int)len;
	case 0x81:
		probe_put(c, sel == 1 ? &c->probe : &c->commit, data, len);
		return (int)len;
	case 0x82:
	case 0x83:
	case 0x87:
		p = (struct probe){.format = 1, .frame = 0, .interval = s->request == 0x82 ? IV30 : IV5};
		negotiate(c, &p);
		probe_put(c, &p, data, len);
		return (int)len;
	}
	return -EPIPE;
}

static int uvc_control(struct emu_dev *dev, struct emu_urb *urb, const struct emu_setup *s, uint8_t *data)
{
	struct cam *c = dev->state;
	int r;

	(void)urb;
	/* Class requests to an interface only. */
	if ((s->request_type & 0x7f) != 0x21)
		return -EPIPE;
	if ((s->index & 0xff) == c->v->vs_if && (s->index >> 8) == 0)
		r = streaming_request(c, s, data);
	else if ((s->index & 0xff) == c->v->vc_if)
		r = unit_request(c, s, data);
	else
		r = -EPIPE;
	if (r >= 0 && c->streaming)
		cam_pump(c);
	return r;
}

static const struct emu_model_ops uvc_ops = {
    .init = uvc_init,
    .fini = uvc_fini,
    .submit = uvc_submit,
    .control = uvc_control,
    .clear_halt = uvc_clear_halt,
    .cancelled = uvc_cancelled,
    .set_alt = uvc_set_alt,
};
