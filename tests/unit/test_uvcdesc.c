/*
 * common/uvcdesc.c: UVC class descriptors, the format line, intervals,
 * the probe block and payload headers; and usbdesc.c/bind.c taking a
 * VideoStreaming interface into its VideoControl interface's function.
 */
#include <errno.h>
#include <string.h>

#include "bind.h"
#include "proto.h"
#include "suites.h"
#include "usbdesc.h"
#include "uvcdesc.h"

#define W16(v) (uint8_t)((v)&0xff), (uint8_t)(((v) >> 8) & 0xff)
#define W32(v)                                                                                               \
	(uint8_t)((v)&0xff), (uint8_t)(((v) >> 8) & 0xff), (uint8_t)(((v) >> 16) & 0xff),                    \
	    (uint8_t)(((v) >> 24) & 0xff)

/* VideoControl of a UVC 1.1 camera: header (interfaces 1 and 2), camera terminal, processing unit, XU. */
static const uint8_t vc[] = {
    9, 4, 0, 0, 1, 0x0e, 1, 0, 0, /* the interface descriptor itself: skipped */
    14, 0x24, 0x01, W16(0x0110), W16(0), W32(48000000), 2, 1, 2, 18, 0x24, 0x02, 1, W16(0x0201), 0, 0, W16(0),
    W16(0), W16(0), 3, 0x0a, 0x00, 0x02, /* AE mode, exposure, focus auto */
    /* An extension unit whose bytes look like a CDC union naming interface 0: not one. */
    8, 0x24, 0x06, 0, 1, 2, 3, 4, 12, 0x24, 0x05, 2, 1, W16(0), 2, 0x03, 0x06, 0,
    0,			       /* brightness, contrast, gain, power line */
    7, 5, 0x83, 3, W16(16), 8, /* endpoint: skipped */
};

START_TEST(test_uvc_control)
{
	struct uvc_control_info info;
	const char *why = NULL;
	static const char *const names[] = {"exposure_auto",	   "exposure_absolute", "focus_auto",
					    "brightness",	   "contrast",		"gain",
					    "power_line_frequency"};

	ck_assert_int_eq(uvcdesc_parse_control(vc, sizeof(vc), &info, &why), 0);
	ck_assert_uint_eq(info.bcd_uvc, 0x0110);
	ck_assert_uint_eq(info.num_streaming, 2);
	ck_assert_uint_eq(info.streaming[0], 1);
	ck_assert_uint_eq(info.streaming[1], 2);
	ck_assert_uint_eq(info.camera_id, 1);
	ck_assert_uint_eq(info.processing_id, 2);
	ck_assert_uint_eq(info.num_controls, sizeof(names) / sizeof(names[0]));
	for (unsigned i = 0; i < info.num_controls; i++)
		ck_assert_str_eq(info.controls[i].name, names[i]);
	ck_assert(info.controls[0].bitmap);
	ck_assert_uint_eq(info.controls[1].size, 4);
	ck_assert_uint_eq(info.controls[1].selector, 0x04);
	ck_assert_uint_eq(info.controls[3].unit, 2);
	ck_assert(info.controls[3].is_signed);
	ck_assert(!info.controls[4].is_signed);
	ck_assert_uint_eq(info.controls[6].size, 1);
}
END_TEST

START_TEST(test_uvc_control_bad)
{
	struct uvc_control_info info;
	uint8_t buf[sizeof(vc)];
	const char *why = NULL;

	/* No header. */
	ck_assert_int_eq(uvcdesc_parse_control(vc + 23, 18, &info, &why), -EINVAL);
	ck_assert_ptr_nonnull(why);
	/* A length past the end, a zero length, a header shorter than its interface list. */
	memcpy(buf, vc, sizeof(buf));
	buf[9] = 200;
	ck_assert_int_eq(uvcdesc_parse_control(buf, sizeof(buf), &info, NULL), -EINVAL);
	buf[9] = 0;
	ck_assert_int_eq(uvcdesc_parse_control(buf, sizeof(buf), &info, NULL), -EINVAL);
	memcpy(buf, vc, sizeof(buf));
	buf[9 + 11] = 9;
	ck_assert_int_eq(uvcdesc_parse_control(buf, sizeof(buf), &info, NULL), -EINVAL);
	/* Every truncation is an error or a smaller result, never a read past the end. */
	for (size_t n = 0; n < sizeof(vc); n++)
		uvcdesc_parse_control(vc, n, &info, NULL);
}
END_TEST

#define FRAME_D(sub, idx, w, h, n)                                                                           \
	26 + 4 * (n), 0x24, sub, idx, 0, W16(w), W16(h), W32(1), W32(2), W32((w) * (h)*2), W32(333333), n

static const uint8_t vs[] = {
    16,
    0x24,
    0x01,
    3,
    W16(0),
    0x81,
    0,
    3,
    0,
    0,
    0,
    1,
    0,
    0,
    0,
    /* Format 1: MJPEG, default frame 2. */
    11,
    0x24,
    0x06,
    1,
    2,
    1,
    2,
    0,
    0,
    0,
    0,
    FRAME_D(0x07, 1, 1280, 720, 2),
    W32(333333),
    W32(666666),
    /* A continuous frame: 1 to 30 frames a second in steps of 1/30 s... */
    38,
    0x24,
    0x07,
    2,
    0,
    W16(640),
    W16(480),
    W32(1),
    W32(2),
    W32(614400),
    W32(333333),
    0,
    W32(333333),
    W32(10000000),
    W32(333333),
    /* Format 2: H.264 frame-based (not served): its frame is skipped with it. */
    28,
    0x24,
    0x10,
    2,
    1,
    'H',
    '2',
    '6',
    '4',
    0,
    0,
    0x10,
    0,
    0x80,
    0,
    0,
    0xaa,
    0,
    0x38,
    0x9b,
    0x71,
    16,
    1,
    0,
    0,
    0,
    0,
    1,
    FRAME_D(0x11, 1, 1920, 1080, 1),
    W32(333333),
    /* Format 3: YUY2 with one frame of one interval. */
    27,
    0x24,
    0x04,
    3,
    1,
    'Y',
    'U',
    'Y',
    '2',
    0,
    0,
    0x10,
    0,
    0x80,
    0,
    0,
    0xaa,
    0,
    0x38,
    0x9b,
    0x71,
    16,
    1,
    0,
    0,
    0,
    0,
    FRAME_D(0x05, 1, 160, 120, 1),
    W32(1333333),
    6,
    0x24,
    0x0d,
    1,
    1,
    4,
};

START_TEST(test_uvc_streaming)
{
	struct uvc_streaming s;
	const char *why = NULL;
	uint32_t iv;

	ck_assert_int_eq(uvcdesc_parse_streaming(vs, sizeof(vs), &s, &why), 0);
	ck_assert_uint_eq(s.endpoint, 0x81);
	ck_assert_uint_eq(s.num_formats, 2);
	ck_assert_uint_eq(s.formats[0].kind, UVC_FORMAT_MJPEG);
	ck_assert_uint_eq(s.formats[0].index, 1);
	ck_assert_uint_eq(s.formats[0].default_frame, 2);
	ck_assert_uint_eq(s.formats[0].num_frames, 2);
	ck_assert_uint_eq(s.formats[0].frames[0].width, 1280);
	ck_assert_uint_eq(s.formats[0].frames[0].height, 720);
	ck_assert_uint_eq(s.formats[0].frames[0].num_intervals, 2);
	ck_assert_uint_eq(s.formats[0].frames[0].intervals[1], 666666);
	ck_assert(s.formats[0].frames[1].continuous);
	ck_assert_uint_eq(s.formats[1].kind, UVC_FORMAT_YUY2);
	ck_assert_uint_eq(s.formats[1].index, 3);
	ck_assert_uint_eq(s.formats[1].num_frames, 1);
	ck_assert_uint_eq(s.formats[1].frames[0].max_frame_size, 160 * 120 * 2);

	/* Discrete: the nearest within 1%. */
	ck_assert_int_eq(uvc_frame_pick_interval(&s.formats[0].frames[0], 15000, &iv), 0);
	ck_assert_uint_eq(iv, 666666);
	ck_assert_int_eq(uvc_frame_pick_interval(&s.formats[0].frames[0], 20000, &iv), -EINVAL);
	/* Continuous: any step of 1/30 s between 1/30 s and 1 s. */
	ck_assert_int_eq(uvc_frame_pick_interval(&s.formats[0].frames[1], 10000, &iv), 0);
	ck_assert_uint_eq(iv, 999999);
	ck_assert_int_eq(uvc_frame_pick_interval(&s.formats[0].frames[1], 1000, &iv), 0);
	ck_assert_uint_eq(iv, 9999990);
	ck_assert_int_eq(uvc_frame_pick_interval(&s.formats[0].frames[1], 60000, &iv), -EINVAL);
	ck_assert_int_eq(uvc_frame_pick_interval(&s.formats[1].frames[0], 7500, &iv), 0);
}
END_TEST

START_TEST(test_uvc_streaming_bad)
{
	struct uvc_streaming s;
	uint8_t buf[sizeof(vs)];

	/* A frame descriptor shorter than its bFrameIntervalType says. */
	memcpy(buf, vs, sizeof(buf));
	buf[16 + 11 + 25] = 9;
	ck_assert_int_eq(uvcdesc_parse_streaming(buf, sizeof(buf), &s, NULL), -EINVAL);
	/* No input header. */
	ck_assert_int_eq(uvcdesc_parse_streaming(vs + 16, sizeof(vs) - 16, &s, NULL), -EINVAL);
	for (size_t n = 0; n < sizeof(vs); n++)
		uvcdesc_parse_streaming(vs, n, &s, NULL);
}
END_TEST

/* A device whose VideoControl interface 0 lists streaming interface 1; interface 2 is audio. */
static const uint8_t cam_device[] = {
    18,
    1,
    W16(0x0200),
    0xef,
    2,
    1,
    64,
    W16(0x046d),
    W16(0x0825),
    W16(0x0010),
    0,
    0,
    2,
    1,
    9,
    2,
    W16(9 + 8 + 9 + 13 + 9 + 14 + 9 + 7 + 9),
    3,
    1,
    0,
    0x80,
    250,
    8,
    0x0b,
    0,
    2,
    0x0e,
    0x03,
    0,
    0,
    9,
    4,
    0,
    0,
    0,
    0x0e,
    1,
    0,
    0,
    13,
    0x24,
    0x01,
    W16(0x0100),
    W16(13),
    W32(48000000),
    1,
    1,
    9,
    4,
    1,
    0,
    0,
    0x0e,
    2,
    0,
    0,
    14,
    0x24,
    0x01,
    1,
    W16(14),
    0x81,
    0,
    3,
    0,
    0,
    0,
    1,
    0,
    9,
    4,
    1,
    1,
    1,
    0x0e,
    2,
    0,
    0,
    7,
    5,
    0x81,
    5,
    W16(0x1380),
    1,
    9,
    4,
    2,
    0,
    0,
    1,
    1,
    0,
    0,
};

START_TEST(test_uvc_function)
{
	struct usbdesc_device dev;
	const char *why = NULL;

	ck_assert_int_eq(usbdesc_parse(cam_device, sizeof(cam_device), &dev, &why), 0);
	ck_assert_uint_eq(dev.num_ifaces, 3);
	ck_assert_uint_eq(dev.ifaces[0].num_slaves, 1);
	ck_assert_uint_eq(dev.ifaces[0].slaves[0], 1);
	ck_assert_uint_eq(dev.ifaces[1].num_slaves, 0);
	ck_assert_str_eq(bind_lookup(&dev, &dev.ifaces[0])->name, "uvc");
	ck_assert_str_eq(bind_lookup(&dev, &dev.ifaces[0])->kind, "webcam");
	ck_assert_ptr_eq(bind_union_master(&dev, 1), &dev.ifaces[0]);
	ck_assert_ptr_null(bind_union_master(&dev, 2));
	ck_assert_str_eq(bind_lookup(&dev, &dev.ifaces[2])->name, "usb");
}
END_TEST

START_TEST(test_uvc_format_line)
{
	uint8_t kind;
	uint16_t w, h;
	uint32_t mfps;
	static const char *const bad[] = {
	    "",
	    "mjpeg",
	    "mjpeg 640x480",
	    "h264 640x480 30",
	    "mjpeg 640 30",
	    "mjpeg x480 30",
	    "mjpeg 640x 30",
	    "mjpeg 640x480 fast",
	    "mjpeg 640x480 30 x",
	    "mjpeg 0x480 30",
	    "mjpeg 70000x480 30",
	    "mjpeg 640x480 0",
	    "mjpeg 640x480 -5",
	};

	ck_assert_int_eq(uvc_parse_format_line("mjpeg 1280x720 30\n", &kind, &w, &h, &mfps), 0);
	ck_assert_uint_eq(kind, UVC_FORMAT_MJPEG);
	ck_assert_uint_eq(w, 1280);
	ck_assert_uint_eq(h, 720);
	ck_assert_uint_eq(mfps, 30000);
	ck_assert_int_eq(uvc_parse_format_line("yuyv 160x120 7.5", &kind, &w, &h, &mfps), 0);
	ck_assert_uint_eq(kind, UVC_FORMAT_YUY2);
	ck_assert_uint_eq(mfps, 7500);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(uvc_parse_format_line(bad[i], &kind, &w, &h, &mfps) == -EINVAL, "'%s' accepted",
			      bad[i]);
}
END_TEST

START_TEST(test_uvc_intervals)
{
	char buf[16];

	uvc_interval_format(buf, sizeof(buf), 333333);
	ck_assert_str_eq(buf, "30");
	uvc_interval_format(buf, sizeof(buf), 1333333);
	ck_assert_str_eq(buf, "7.5");
	uvc_interval_format(buf, sizeof(buf), 50000000);
	ck_assert_str_eq(buf, "0.2");
	ck_assert_uint_eq(uvc_interval_mfps(0), 0);
	ck_assert_uint_eq(uvc_interval_mfps(666666), 15000);
}
END_TEST

START_TEST(test_uvc_probe)
{
	struct uvc_probe p = {.hint = 1, .format_index = 2, .frame_index = 3, .interval = 333333}, q;
	uint8_t buf[48];

	ck_assert_uint_eq(uvc_probe_len(0x0100), 26);
	ck_assert_uint_eq(uvc_probe_len(0x0110), 34);
	ck_assert_uint_eq(uvc_probe_len(0x0150), 48);
	memset(buf, 0xee, sizeof(buf));
	uvc_probe_encode(&p, buf, 34);
	ck_assert_uint_eq(buf[0], 1);
	ck_assert_uint_eq(buf[2], 2);
	ck_assert_uint_eq(buf[3], 3);
	ck_assert_uint_eq(get_le32(buf + 4), 333333);
	ck_assert_uint_eq(buf[33], 0);
	ck_assert_uint_eq(buf[34], 0xee);
	put_le32(buf + 18, 614400);
	put_le32(buf + 22, 3072);
	ck_assert_int_eq(uvc_probe_decode(buf, 26, &q), 0);
	ck_assert_uint_eq(q.max_frame_size, 614400);
	ck_assert_uint_eq(q.max_payload, 3072);
	ck_assert_int_eq(uvc_probe_decode(buf, 25, &q), -EINVAL);
}
END_TEST

START_TEST(test_uvc_payload_header)
{
	static const uint8_t ok[] = {12, 0x8f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0xff, 0xd8};
	static const uint8_t plain[] = {2, 0x81};
	static const uint8_t too_long[] = {13, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
	static const uint8_t short_pts[] = {4, 0x84, 0, 0, 0, 0};
	size_t hl;
	uint8_t info;

	ck_assert_int_eq(uvc_payload_header(ok, sizeof(ok), &hl, &info), 0);
	ck_assert_uint_eq(hl, 12);
	ck_assert_uint_eq(info & (UVC_PH_FID | UVC_PH_EOF), UVC_PH_FID | UVC_PH_EOF);
	ck_assert_int_eq(uvc_payload_header(plain, sizeof(plain), &hl, &info), 0);
	ck_assert_uint_eq(hl, 2);
	ck_assert_int_eq(uvc_payload_header(too_long, sizeof(too_long), &hl, &info), -EINVAL);
	ck_assert_int_eq(uvc_payload_header(short_pts, sizeof(short_pts), &hl, &info), -EINVAL);
	ck_assert_int_eq(uvc_payload_header(plain, 1, &hl, &info), -EINVAL);
	ck_assert_int_eq(uvc_payload_header((const uint8_t[]){1, 0}, 2, &hl, &info), -EINVAL);
}
END_TEST

Suite *uvcdesc_suite(void)
{
	Suite *s = suite_create("uvcdesc");
	TCase *tc = tcase_create("uvcdesc");

	tcase_add_test(tc, test_uvc_control);
	tcase_add_test(tc, test_uvc_control_bad);
	tcase_add_test(tc, test_uvc_streaming);
	tcase_add_test(tc, test_uvc_streaming_bad);
	tcase_add_test(tc, test_uvc_function);
	tcase_add_test(tc, test_uvc_format_line);
	tcase_add_test(tc, test_uvc_intervals);
	tcase_add_test(tc, test_uvc_probe);
	tcase_add_test(tc, test_uvc_payload_header);
	suite_add_tcase(s, tc);
	return s;
}
