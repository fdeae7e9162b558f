/*
 * UVC descriptors and wire formats (see uvcdesc.h).
 */
#include "uvcdesc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "usbdesc.h"

/* Class-specific descriptor subtypes (A.5, A.6). */
enum {
	VC_HEADER = 0x01,
	VC_INPUT_TERMINAL = 0x02,
	VC_PROCESSING_UNIT = 0x05,
};
enum {
	VS_INPUT_HEADER = 0x01,
	VS_FORMAT_UNCOMPRESSED = 0x04,
	VS_FRAME_UNCOMPRESSED = 0x05,
	VS_FORMAT_MJPEG = 0x06,
	VS_FRAME_MJPEG = 0x07,
};
#define ITT_CAMERA 0x0201

/* The YUY2 GUID, 32595559-0000-0010-8000-00AA00389B71, as the descriptor stores it. */
static const uint8_t guid_yuy2[16] = {'Y',  'U',  'Y',	'2',  0x00, 0x00, 0x10, 0x00,
				      0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71};

/*
 * Controls by bmControls bit (3.7.2.3 camera terminal, 3.7.2.5 processing
 * unit).  Relative and compound controls (pan/tilt, white balance
 * component) have no single number to read and write and are left out.
 */
struct control_def {
	uint8_t bit;
	uint8_t selector;
	uint8_t size;
	bool is_signed, bitmap;
	const char *name;
};

static const struct control_def camera_defs[] = {
    {0, 0x01, 1, false, false, "scanning_mode"},
    {1, 0x02, 1, false, true, "exposure_auto"},
    {2, 0x03, 1, false, false, "exposure_auto_priority"},
    {3, 0x04, 4, false, false, "exposure_absolute"},
    {5, 0x06, 2, false, false, "focus_absolute"},
    {7, 0x09, 2, false, false, "iris_absolute"},
    {9, 0x0b, 2, false, false, "zoom_absolute"},
    {13, 0x0f, 2, true, false, "roll_absolute"},
    {17, 0x08, 1, false, false, "focus_auto"},
    {18, 0x11, 1, false, false, "privacy"},
};

static const struct control_def processing_defs[] = {
    {0, 0x02, 2, true, false, "brightness"},
    {1, 0x03, 2, false, false, "contrast"},
    {2, 0x06, 2, true, false, "hue"},
    {3, 0x07, 2, false, false, "saturation"},
    {4, 0x08, 2, false, false, "sharpness"},
    {5, 0x09, 2, false, false, "gamma"},
    {6, 0x0a, 2, false, false, "white_balance_temperature"},
    {8, 0x01, 2, false, false, "backlight_compensation"},
    {9, 0x04, 2, false, false, "gain"},
    {10, 0x05, 1, false, false, "power_line_frequency"},
    {11, 0x10, 1, false, false, "hue_auto"},
    {12, 0x0b, 1, false, false, "white_balance_temperature_auto"},
    {14, 0x0e, 2, false, false, "digital_multiplier"},
    {15, 0x0f, 2, false, false, "digital_multiplier_limit"},
    {18, 0x13, 1, false, false, "contrast_auto"},
};

static int fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return -EINVAL;
}

/* bmControls of `size` bytes, little-endian, at most 32 bits kept. */
static uint32_t get_bitmap(const uint8_t *p, size_t size)
{
	uint32_t v = 0;

	for (size_t i = 0; i < size && i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static void add_controls(struct uvc_control_info *vc, const struct control_def *defs, size_t n, uint8_t unit,
			 uint32_t bits)
{
	for (size_t i = 0; i < n && vc->num_controls < UVC_MAX_CONTROLS; i++) {
		if (!(bits & (1u << defs[i].bit)))
			continue;
		vc->controls[vc->num_controls++] = (struct uvc_control){
		    .name = defs[i].name,
		    .unit = unit,
		    .selector = defs[i].selector,
		    .size = defs[i].size,
		    .is_signed = defs[i].is_signed,
		    .bitmap = defs[i].bitmap,
		};
	}
}

/*
 * Calls `each` for every class-specific interface descriptor in
 * buf[0..len), checking that the chain holds together.
 */
typedef int (*cs_cb)(const uint8_t *d, uint8_t dlen, void *arg, const char **why);

static int walk_cs(const uint8_t *buf, size_t len, cs_cb each, void *arg, const char **why)
{
	size_t off = 0;

	while (off < len) {
		uint8_t dlen = buf[off];
		int r;

		if (len - off < 2 || dlen < 2 || dlen > len - off)
			return fail(why, "descriptor length breaks the chain");
		if (buf[off + 1] == USB_DT_CS_INTERFACE && dlen >= 3 &&
		    (r = each(buf + off, dlen, arg, why)) < 0)
			return r;
		off += dlen;
	}
	return 0;
}

static int control_desc(const uint8_t *d, uint8_t dlen, void *arg, const char **why)
{
	struct uvc_control_info *vc = arg;

	switch (d[2]) {
	case VC_HEADER:
		if (dlen < 12 || dlen < 12u + d[11])
			return fail(why, "short VideoControl header");
		vc->bcd_uvc = get_le16(d + 3);
		for (unsigned i = 0; i < d[11] && vc->num_streaming < UVC_MAX_STREAMING; i++)
			vc->streaming[vc->num_streaming++] = d[12 + i];
		break;
	case VC_INPUT_TERMINAL:
		if (dlen < 8 || get_le16(d + 4) != ITT_CAMERA || vc->camera_id != 0)
			break;
		if (dlen < 15 || dlen < 15u + d[14])
			return fail(why, "short camera terminal descriptor");
		vc->camera_id = d[3];
		vc->camera_controls = get_bitmap(d + 15, d[14]);
		break;
	case VC_PROCESSING_UNIT:
		if (vc->processing_id != 0)
			break;
		if (dlen < 8 || dlen < 8u + d[7])
			return fail(why, "short processing unit descriptor");
		vc->processing_id = d[3];
		vc->processing_controls = get_bitmap(d + 8, d[7]);
		break;
	}
	return 0;
}

int uvcdesc_parse_control(const uint8_t *buf, size_t len, struct uvc_control_info *vc, const char **why)
{
	int r;

	memset(vc, 0, sizeof(*vc));
	if ((r = walk_cs(buf, len, control_desc, vc, why)) < 0)
		return r;
	if (vc->bcd_uvc == 0)
		return fail(why, "no VideoControl header");
	if (vc->camera_id != 0)
		add_controls(vc, camera_defs, sizeof(camera_defs) / sizeof(camera_defs[0]), vc->camera_id,
			     vc->camera_controls);
	if (vc->processing_id != 0)
		add_controls(vc, processing_defs, sizeof(processing_defs) / sizeof(processing_defs[0]),
			     vc->processing_id, vc->processing_controls);
	return 0;
}

/* Parsing state: the format the frame descriptors that follow belong to. */
struct vs_walk {
	struct uvc_streaming *vs;
	struct uvc_format *cur; /* NULL: frames of a format we skip */
	bool header;
};

static int frame_desc(struct vs_walk *w, const uint8_t *d, uint8_t dlen, const char **why)
{
	struct uvc_format *f = w->cur;
	struct uvc_frame *fr;
	uint8_t type;

	if (f == NULL || f->num_frames == UVC_MAX_FRAMES)
		return 0;
	if (dlen < 26)
		return fail(why, "short frame descriptor");
	type = d[25];
	if ((type == 0 && dlen < 38) || (type > 0 && dlen < 26u + 4u * type))
		return fail(why, "frame descriptor shorter than its intervals");
	fr = &f->frames[f->num_frames];
	memset(fr, 0, sizeof(*fr));
	fr->index = d[3];
	fr->width = get_le16(d + 5);
	fr->height = get_le16(d + 7);
	fr->max_frame_size = get_le32(d + 17);
	fr->default_interval = get_le32(d + 21);
	if (type == 0) {
		fr->continuous = true;
		fr->num_intervals = 3;
		for (unsigned i = 0; i < 3; i++)
			fr->intervals[i] = get_le32(d + 26 + 4 * i);
		if (fr->intervals[0] == 0 || fr->intervals[0] > fr->intervals[1])
			return 0; /* an impossible range: the frame is skipped */
	} else {
		for (unsigned i = 0; i < type && fr->num_intervals < UVC_MAX_INTERVALS; i++) {
			uint32_t iv = get_le32(d + 26 + 4 * i);
			if (iv != 0)
				fr->intervals[fr->num_intervals++] = iv;
		}
		if (fr->num_intervals == 0)
			return 0;
	}
	if (fr->width == 0 || fr->height == 0)
		return 0;
	f->num_frames++;
	return 0;
}

static int streaming_desc(const uint8_t *d, uint8_t dlen, void *arg, const char **why)
{
	struct vs_walk *w = arg;
	struct uvc_streaming *vs = w->vs;
	uint8_t kind;

	switch (d[2]) {
	case VS_INPUT_HEADER:
		if (dlen < 13)
			return fail(why, "short VideoStreaming input header");
		vs->endpoint = d[6];
		w->header = true;
		return 0;
	case VS_FORMAT_UNCOMPRESSED:
	case VS_FORMAT_MJPEG:
		if (d[2] == VS_FORMAT_MJPEG && dlen < 11)
			return fail(why, "short MJPEG format descriptor");
		if (d[2] == VS_FORMAT_UNCOMPRESSED && dlen < 27)
			return fail(why, "short uncompressed format descriptor");
		w->cur = NULL;
		kind = d[2] == VS_FORMAT_MJPEG		   ? UVC_FORMAT_MJPEG
		       : memcmp(d + 5, guid_yuy2, 16) == 0 ? UVC_FORMAT_YUY2
							   : UVC_FORMAT_OTHER;
		if (kind == UVC_FORMAT_OTHER || vs->num_formats == UVC_MAX_FORMATS)
			return 0;
		w->cur = &vs->formats[vs->num_formats++];
		memset(w->cur, 0, sizeof(*w->cur));
		w->cur->index = d[3];
		w->cur->kind = kind;
		w->cur->default_frame = d[2] == VS_FORMAT_MJPEG ? d[6] : d[22];
		return 0;
	case VS_FRAME_UNCOMPRESSED:
	case VS_FRAME_MJPEG:
		return frame_desc(w, d, dlen, why);
	case 0x0a: /* MPEG-2 TS */
	case 0x0c: /* DV */
	case 0x10: /* frame based (H.264 in UVC 1.1) */
	case 0x12: /* stream based */
	case 0x13: /* H.264 (UVC 1.5) */
	case 0x15: /* H.264 simulcast */
	case 0x16: /* VP8 */
	case 0x18: /* VP8 simulcast */
		/* Formats not served: the frames that follow are theirs. */
		w->cur = NULL;
		return 0;
	default:
		return 0;
	}
}

int uvcdesc_parse_streaming(const uint8_t *buf, size_t len, struct uvc_streaming *vs, const char **why)
{
	struct vs_walk w = {.vs = vs};
	int r;

	memset(vs, 0, sizeof(*vs));
	if ((r = walk_cs(buf, len, streaming_desc, &w, why)) < 0)
		return r;
	if (!w.header)
		return fail(why, "no VideoStreaming input header");
	/* A format whose frames all were skipped is no format. */
	for (unsigned i = 0; i < vs->num_formats;) {
		if (vs->formats[i].num_frames == 0) {
			memmove(&vs->formats[i], &vs->formats[i + 1],
				(vs->num_formats - i - 1) * sizeof(vs->formats[0]));
			vs->num_formats--;
		} else {
			i++;
		}
	}
	return 0;
}

const char *uvc_format_name(uint8_t kind)
{
	switch (kind) {
	case UVC_FORMAT_MJPEG:
		return "mjpeg";
	case UVC_FORMAT_YUY2:
		return "yuyv";
	}
	return NULL;
}

uint32_t uvc_interval_mfps(uint32_t interval)
{
	if (interval == 0)
		return 0;
	return (uint32_t)((10000000000ull + interval / 2) / interval);
}

int uvc_interval_format(char *buf, size_t cap, uint32_t interval)
{
	uint32_t mfps = uvc_interval_mfps(interval);
	/* 333333 x 100 ns is 30.0003 fps: round to a tenth, and show whole rates whole. */
	uint32_t tenths = (mfps + 50) / 100;

	if (tenths % 10 == 0)
		return snprintf(buf, cap, "%u", tenths / 10);
	return snprintf(buf, cap, "%u.%u", tenths / 10, tenths % 10);
}

static uint32_t absdiff(uint32_t a, uint32_t b)
{
	return a > b ? a - b : b - a;
}

int uvc_frame_pick_interval(const struct uvc_frame *frame, uint32_t mfps, uint32_t *interval)
{
	uint32_t best = 0, want;

	if (mfps == 0)
		return -EINVAL;
	want = (uint32_t)((10000000000ull + mfps / 2) / mfps);
	if (frame->continuous) {
		uint32_t lo = frame->intervals[0], hi = frame->intervals[1], step = frame->intervals[2];

		if (want < lo)
			best = lo;
		else if (want > hi)
			best = hi;
		else if (step == 0)
			best = want;
		else
			best = lo + (want - lo + step / 2) / step * step;
		if (best > hi)
			best = hi;
	} else {
		for (unsigned i = 0; i < frame->num_intervals; i++)
			if (best == 0 || absdiff(frame->intervals[i], want) < absdiff(best, want))
				best = frame->intervals[i];
	}
	if (best == 0 || absdiff(uvc_interval_mfps(best), mfps) * 100 > mfps)
		return -EINVAL;
	*interval = best;
	return 0;
}

/* A decimal with at most three decimals, in thousandths; 0 or -EINVAL. */
static int parse_milli(const char *s, uint32_t *out)
{
	uint64_t v = 0;
	unsigned frac = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++)
		if ((v = v * 10 + (uint64_t)(*p - '0')) > 100000)
			return -EINVAL;
	v *= 1000;
	if (*p == '.') {
		unsigned scale = 100;
		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			if (scale > 0)
				frac += (unsigned)(*p - '0') * scale;
	}
	if (*p != '\0')
		return -EINVAL;
	*out = (uint32_t)(v + frac);
	return 0;
}

int uvc_parse_format_line(const char *line, uint8_t *kind, uint16_t *width, uint16_t *height, uint32_t *mfps)
{
	char name[16], size[24], rate[24], extra[2];
	unsigned long w, h;
	char *x, *end;

	if (sscanf(line, "%15s %23s %23s %1s", name, size, rate, extra) != 3)
		return -EINVAL;
	if (strcmp(name, "mjpeg") == 0)
		*kind = UVC_FORMAT_MJPEG;
	else if (strcmp(name, "yuyv") == 0 || strcmp(name, "yuy2") == 0)
		*kind = UVC_FORMAT_YUY2;
	else
		return -EINVAL;
	if ((x = strchr(size, 'x')) == NULL || size[0] < '0' || size[0] > '9' || x[1] < '0' || x[1] > '9')
		return -EINVAL;
	w = strtoul(size, &end, 10);
	if (end != x || w == 0 || w > 0xffff)
		return -EINVAL;
	h = strtoul(x + 1, &end, 10);
	if (*end != '\0' || h == 0 || h > 0xffff)
		return -EINVAL;
	*width = (uint16_t)w;
	*height = (uint16_t)h;
	return parse_milli(rate, mfps) < 0 || *mfps == 0 ? -EINVAL : 0;
}

size_t uvc_probe_len(uint16_t bcd_uvc)
{
	if (bcd_uvc >= 0x0150)
		return 48;
	if (bcd_uvc >= 0x0110)
		return 34;
	return 26;
}

void uvc_probe_encode(const struct uvc_probe *p, uint8_t *buf, size_t len)
{
	memset(buf, 0, len);
	put_le16(buf, p->hint);
	buf[2] = p->format_index;
	buf[3] = p->frame_index;
	put_le32(buf + 4, p->interval);
	/* dwMaxVideoFrameSize and dwMaxPayloadTransferSize are the device's to fill in. */
}

int uvc_probe_decode(const uint8_t *buf, size_t len, struct uvc_probe *p)
{
	if (len < 26)
		return -EINVAL;
	p->hint = get_le16(buf);
	p->format_index = buf[2];
	p->frame_index = buf[3];
	p->interval = get_le32(buf + 4);
	p->max_frame_size = get_le32(buf + 18);
	p->max_payload = get_le32(buf + 22);
	return 0;
}

int uvc_payload_header(const uint8_t *data, size_t len, size_t *hdr_len, uint8_t *info)
{
	size_t need;

	if (len < 2 || data[0] < 2 || data[0] > len)
		return -EINVAL;
	/* The optional fields must fit the length the header claims. */
	need = 2 + ((data[1] & UVC_PH_PTS) ? 4 : 0) + ((data[1] & UVC_PH_SCR) ? 6 : 0);
	if (data[0] < need)
		return -EINVAL;
	*hdr_len = data[0];
	*info = data[1];
	return 0;
}
