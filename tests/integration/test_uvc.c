/*
 * The webcam driver over its two emulated cameras: webcam0 is the C270
 * (`c270` model, 1-1: MJPEG and YUY2 through isochronous altsettings),
 * webcam1 the bulk YUY2 camera (`bulkcam`, 1-2).  Frames are decoded
 * here (libjpeg for MJPEG, by hand for PPM) and their counter read from
 * the picture's top band of 16 black or white cells; the models damage
 * every frame whose counter is a multiple of 5, the C270 loses a packet
 * of every multiple of 7: neither may come out.  Multiples of 3 have no
 * EOF: they end when the next frame toggles FID, and must come out.  What the camera itself is doing
 * (altsetting, streaming) comes from the model's state file, $dir/SYSNAME.uvc.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jpeglib.h>

#include "harness.h"
#include "suites.h"

/* What the models spoil (model_uvc.c): damaged frames, lost packets (c270 only), no EOF. */
#define DAMAGED_EVERY 5
#define LOST_EVERY    7
#define NO_EOF_EVERY  3
#define FRAME_MAX     (4u << 20)

static struct mnt m;

static void setup(void)
{
	static const char *const models[] = {"c270", "bulkcam", NULL};
	ck_assert_int_eq(mnt_start(&m, models, "timeout=3000", 2), 0);
}

static void teardown(void)
{
	mnt_stop(&m);
}

/* ---- decoding ---- */

struct image {
	unsigned w, h;
	uint8_t *rgb; /* w * h * 3 */
	long comment; /* MJPEG: the counter in the COM marker, else -1 */
};

struct jerr {
	struct jpeg_error_mgr pub;
	jmp_buf jump;
	char msg[JMSG_LENGTH_MAX];
};

static void jerr_exit(j_common_ptr cinfo)
{
	struct jerr *e = (struct jerr *)cinfo->err;

	(*cinfo->err->format_message)(cinfo, e->msg);
	longjmp(e->jump, 1);
}

/* Decodes a JPEG; one that does not decode fails the test with libjpeg's reason. */
static void decode_jpeg(const uint8_t *data, size_t len, struct image *img)
{
	struct jpeg_decompress_struct cinfo;
	struct jerr err;

	memset(img, 0, sizeof(*img));
	img->comment = -1;
	cinfo.err = jpeg_std_error(&err.pub);
	err.pub.error_exit = jerr_exit;
	if (setjmp(err.jump)) {
		jpeg_destroy_decompress(&cinfo);
		free(img->rgb);
		ck_abort_msg("JPEG of %zu bytes does not decode: %s", len, err.msg);
	}
	jpeg_create_decompress(&cinfo);
	jpeg_mem_src(&cinfo, data, (unsigned long)len);
	jpeg_save_markers(&cinfo, JPEG_COM, 0xffff);
	jpeg_read_header(&cinfo, TRUE);
	for (jpeg_saved_marker_ptr mk = cinfo.marker_list; mk != NULL; mk = mk->next) {
		char text[64] = {0};
		memcpy(text, mk->data,
		       mk->data_length < sizeof(text) - 1 ? mk->data_length : sizeof(text) - 1);
		sscanf(text, "plugfs-emu frame %ld", &img->comment);
	}
	cinfo.out_color_space = JCS_RGB;
	jpeg_start_decompress(&cinfo);
	img->w = cinfo.output_width;
	img->h = cinfo.output_height;
	img->rgb = malloc((size_t)img->w * img->h * 3);
	ck_assert_ptr_nonnull(img->rgb);
	while (cinfo.output_scanline < cinfo.output_height) {
		JSAMPROW row = img->rgb + (size_t)cinfo.output_scanline * img->w * 3;
		jpeg_read_scanlines(&cinfo, &row, 1);
	}
	jpeg_finish_decompress(&cinfo);
	jpeg_destroy_decompress(&cinfo);
}

static void decode_ppm(const uint8_t *data, size_t len, struct image *img)
{
	unsigned w, h, max;
	int at = 0;

	memset(img, 0, sizeof(*img));
	img->comment = -1;
	ck_assert_msg(len > 16 && sscanf((const char *)data, "P6\n%u %u\n%u\n%n", &w, &h, &max, &at) == 3 &&
			  at > 0,
		      "not a PPM");
	ck_assert_uint_eq(max, 255);
	ck_assert_uint_eq(len, (size_t)at + (size_t)w * h * 3);
	img->w = w;
	img->h = h;
	img->rgb = malloc((size_t)w * h * 3);
	ck_assert_ptr_nonnull(img->rgb);
	memcpy(img->rgb, data + at, (size_t)w * h * 3);
}

/* The counter in the top band: 16 cells, most significant bit first. */
static unsigned image_counter(const struct image *img)
{
	unsigned band = img->h / 8 < 16 ? 16 : img->h / 8, v = 0;

	for (unsigned i = 0; i < 16; i++) {
		unsigned x = (2 * i + 1) * img->w / 32, y = band / 2;
		const uint8_t *p = img->rgb + ((size_t)y * img->w + x) * 3;
		ck_assert_msg(p[1] > 200 || p[1] < 55, "cell %u is neither black nor white (%u)", i, p[1]);
		v = v << 1 | (p[1] > 128);
	}
	return v;
}

static uint8_t frame_buf[FRAME_MAX];

/* Reads a whole frame file; returns its length. */
static size_t read_frame(const char *rel)
{
	ssize_t n = read_file(mpath(&m, rel), (char *)frame_buf, sizeof(frame_buf));

	ck_assert_msg(n > 0, "read %s: %s", rel, n < 0 ? strerror((int)-n) : "empty");
	ck_assert_msg((size_t)n < sizeof(frame_buf), "%s: too big", rel);
	return (size_t)n;
}

/* frame.jpg of webcam0: decoded, of the expected size, counter in picture and COM agreeing. */
static unsigned grab_jpeg(unsigned w, unsigned h)
{
	struct image img;
	size_t n = read_frame("webcam0/frame.jpg");
	unsigned counter;

	decode_jpeg(frame_buf, n, &img);
	ck_assert_uint_eq(img.w, w);
	ck_assert_uint_eq(img.h, h);
	counter = image_counter(&img);
	ck_assert_int_eq(img.comment & 0xffff, counter);
	ck_assert_msg(img.comment % DAMAGED_EVERY != 0, "damaged frame %ld came out", img.comment);
	ck_assert_msg(img.comment % LOST_EVERY != 0, "frame %ld with a lost packet came out", img.comment);
	free(img.rgb);
	return (unsigned)img.comment;
}

/* ---- the camera's own state ---- */

/* Waits until the model's state line for `sysname` contains `s`. */
static int wait_cam(const char *sysname, const char *s, int ms)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s.uvc", m.dir, sysname);
	return wait_file_has(path, s, ms) != NULL ? 0 : -1;
}

static void set_format(const char *fn, const char *line)
{
	char rel[64];

	snprintf(rel, sizeof(rel), "%s/format", fn);
	ck_assert_int_eq(write_file(mpath(&m, rel), line), 0);
}

/* ---- tests ---- */

START_TEST(test_uvc_files)
{
	static const char c270_formats[] = "yuyv 640x480 30\nyuyv 640x480 15\nyuyv 640x480 5\n"
					   "yuyv 320x240 30\nyuyv 320x240 15\nyuyv 320x240 5\n"
					   "yuyv 160x120 30\nyuyv 160x120 15\nyuyv 160x120 5\n"
					   "mjpeg 640x480 30\nmjpeg 640x480 15\nmjpeg 640x480 5\n"
					   "mjpeg 1280x720 30\nmjpeg 1280x720 15\nmjpeg 1280x720 5\n"
					   "mjpeg 320x240 30\nmjpeg 320x240 15\nmjpeg 320x240 5\n";
	static const char bulk_formats[] = "yuyv 320x240 30\nyuyv 320x240 15\nyuyv 320x240 5\n"
					   "yuyv 160x120 30\nyuyv 160x120 15\nyuyv 160x120 5\n";
	char buf[4096];
	ssize_t n;

	/* The streaming interfaces are part of the webcams, not functions of their own. */
	ck_assert_int_eq(count_functions(&m, 0), 2);
	ck_assert_str_eq(read_line(mpath(&m, "webcam0/driver")), "uvc");
	n = read_file(mpath(&m, "webcam0/formats"), buf, sizeof(buf) - 1);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, c270_formats);
	n = read_file(mpath(&m, "webcam1/formats"), buf, sizeof(buf) - 1);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, bulk_formats);
	/* MJPEG is the default where there is one. */
	ck_assert_str_eq(read_line(mpath(&m, "webcam0/format")), "mjpeg 640x480 30");
	ck_assert_str_eq(read_line(mpath(&m, "webcam1/format")), "yuyv 320x240 30");
	ck_assert_int_eq(access(mpath(&m, "webcam0/frame.jpg"), R_OK), 0);
	ck_assert_int_eq(access(mpath(&m, "webcam0/frame.ppm"), R_OK), 0);
	ck_assert_int_eq(access(mpath(&m, "webcam1/frame.jpg"), F_OK), -1);
	ck_assert_int_eq(access(mpath(&m, "webcam1/frame.ppm"), R_OK), 0);
	ck_assert_int_eq(access(mpath(&m, "webcam0/controls/brightness"), R_OK | W_OK), 0);
	ck_assert_int_eq(access(mpath(&m, "webcam0/controls/exposure_absolute"), R_OK | W_OK), 0);
	ck_assert_int_eq(access(mpath(&m, "webcam1/controls/contrast"), R_OK | W_OK), 0);
	ck_assert_int_eq(access(mpath(&m, "webcam1/controls/gain"), F_OK), -1);
	ck_assert_int_eq(wait_cam("1-1", "alt 0 streaming 0", 100), 0);
}
END_TEST

START_TEST(test_uvc_format)
{
	static const char *const bad[] = {"mjpeg 1281x720 30\n",     "h264 1280x720 30\n",
					  "mjpeg 640x480 20\n",	     "yuyv 1280x720 30\n",
					  "mjpeg 640x480\n",	     "\n",
					  "mjpeg 640x480 30 extra\n"};
	int fd;

	set_format("webcam0", "mjpeg 1280x720 15\n");
	ck_assert_str_eq(read_line(mpath(&m, "webcam0/format")), "mjpeg 1280x720 15");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(write_file(mpath(&m, "webcam0/format"), bad[i]) == -EINVAL, "'%s' accepted",
			      bad[i]);
	ck_assert_str_eq(read_line(mpath(&m, "webcam0/format")), "mjpeg 1280x720 15");
	/* Not while frames flow. */
	fd = open(mpath(&m, "webcam0/frame.jpg"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write_file(mpath(&m, "webcam0/format"), "mjpeg 640x480 30\n"), -EBUSY);
	close(fd);
	set_format("webcam0", "mjpeg 640x480 30\n");
	ck_assert_str_eq(read_line(mpath(&m, "webcam0/format")), "mjpeg 640x480 30");
}
END_TEST

START_TEST(test_uvc_frame_jpg)
{
	unsigned last = 0;

	/* Each read-to-EOF is a new frame, the counter goes up, damaged frames never show. */
	for (int i = 0; i < 4; i++) {
		unsigned c = grab_jpeg(640, 480);
		ck_assert_uint_gt(c, last);
		last = c;
	}
	/* 640x480 at 30 needs ~300 bytes a microframe: altsetting 2 (384), the least that fits; closed: 0. */
	ck_assert_int_eq(wait_cam("1-1", "alt 0 streaming 0", 2000), 0);
	int fd = open(mpath(&m, "webcam0/frame.jpg"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(wait_cam("1-1", "alt 2 streaming 1 format 2 frame 1 interval 333333", 2000), 0);
	/* One handle, two frames: read to EOF, then again from offset 0. */
	ssize_t n1 = pread(fd, frame_buf, sizeof(frame_buf), 0);
	ck_assert_int_gt(n1, 0);
	ck_assert_int_eq(pread(fd, frame_buf + n1, 16, n1), 0);
	struct image a, b;
	decode_jpeg(frame_buf, (size_t)n1, &a);
	ssize_t n2 = pread(fd, frame_buf, sizeof(frame_buf), 0);
	ck_assert_int_gt(n2, 0);
	decode_jpeg(frame_buf, (size_t)n2, &b);
	ck_assert_int_gt(b.comment, a.comment);
	free(a.rgb);
	free(b.rgb);
	close(fd);
	ck_assert_int_eq(wait_cam("1-1", "alt 0 streaming 0", 2000), 0);

	/* 1280x720 needs ~876 bytes: altsetting 6 (944). */
	set_format("webcam0", "mjpeg 1280x720 30\n");
	fd = open(mpath(&m, "webcam0/frame.jpg"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(wait_cam("1-1", "alt 6 streaming 1 format 2 frame 2", 2000), 0);
	ck_assert_uint_gt(grab_jpeg(1280, 720), last);
	close(fd);
	set_format("webcam0", "mjpeg 640x480 30\n");
	ck_assert_int_eq(wait_cam("1-1", "alt 0 streaming 0", 2000), 0);
}
END_TEST

/* A PPM frame: size, the counter cells, and the grey ramp below them. */
static unsigned check_ppm(const char *rel, unsigned w, unsigned h)
{
	struct image img;
	size_t n = read_frame(rel);
	unsigned band = h / 8 < 16 ? 16 : h / 8, counter;

	decode_ppm(frame_buf, n, &img);
	ck_assert_uint_eq(img.w, w);
	ck_assert_uint_eq(img.h, h);
	counter = image_counter(&img);
	ck_assert_msg(counter % DAMAGED_EVERY != 0, "damaged frame %u came out", counter);
	for (unsigned y = band; y < h; y += 17)
		for (unsigned x = 0; x < w; x += 13) {
			const uint8_t *p = img.rgb + ((size_t)y * w + x) * 3;
			int want = (int)(x * 255 / (w - 1));
			for (int c = 0; c < 3; c++)
				ck_assert_msg(abs(p[c] - want) <= 2, "pixel %u,%u channel %d: %u, not %d", x,
					      y, c, p[c], want);
		}
	free(img.rgb);
	return counter;
}

START_TEST(test_uvc_frame_ppm_bulk)
{
	unsigned a = check_ppm("webcam1/frame.ppm", 320, 240);
	unsigned b = check_ppm("webcam1/frame.ppm", 320, 240);

	ck_assert_uint_gt(b, a);
	set_format("webcam1", "yuyv 160x120 15\n");
	check_ppm("webcam1/frame.ppm", 160, 120);
	set_format("webcam1", "yuyv 320x240 30\n");
	/* A bulk camera stops when its endpoint's halt is cleared. */
	ck_assert_int_eq(wait_cam("1-2", "streaming 0", 2000), 0);
}
END_TEST

START_TEST(test_uvc_frame_ppm_iso)
{
	int fd;

	set_format("webcam0", "yuyv 160x120 30\n");
	/* frame.jpg serves MJPEG formats only. */
	fd = open(mpath(&m, "webcam0/frame.jpg"), O_RDONLY);
	ck_assert_int_eq(fd, -1);
	ck_assert_int_eq(errno, ENODATA);
	check_ppm("webcam0/frame.ppm", 160, 120);
	set_format("webcam0", "mjpeg 640x480 30\n");
	fd = open(mpath(&m, "webcam0/frame.ppm"), O_RDONLY);
	ck_assert_int_eq(fd, -1);
	ck_assert_int_eq(errno, ENODATA);
}
END_TEST

/* Reads exactly n bytes from a stream. */
static void read_exact(int fd, uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		ck_assert_msg(r > 0, "stream read: %s", r < 0 ? strerror(errno) : "EOF");
		p += r;
		n -= (size_t)r;
	}
}

/* One multipart part: its headers, then the JPEG; returns the frame's counter. */
static long read_part(int fd)
{
	char line[128];
	size_t len = 0, i = 0;
	long clen = -1;
	bool jpeg = false;
	struct image img;

	for (int lines = 0;; lines++) {
		ck_assert_int_lt(lines, 8);
		for (i = 0;; i++) {
			ck_assert_uint_lt(i, sizeof(line) - 1);
			read_exact(fd, (uint8_t *)line + i, 1);
			if (line[i] == '\n')
				break;
		}
		line[i] = '\0';
		if (lines == 0)
			ck_assert_str_eq(line, "--plugfsframe\r");
		else if (strcmp(line, "Content-Type: image/jpeg\r") == 0)
			jpeg = true;
		else if (sscanf(line, "Content-Length: %zu", &len) == 1)
			clen = (long)len;
		else if (strcmp(line, "\r") == 0)
			break;
	}
	ck_assert(jpeg);
	ck_assert_int_gt(clen, 0);
	ck_assert_uint_lt(len + 2, sizeof(frame_buf));
	read_exact(fd, frame_buf, len + 2);
	ck_assert_int_eq(memcmp(frame_buf + len, "\r\n", 2), 0);
	decode_jpeg(frame_buf, len, &img);
	ck_assert_uint_eq(img.w, 640);
	ck_assert_int_eq(image_counter(&img), img.comment & 0xffff);
	ck_assert_msg(img.comment % DAMAGED_EVERY != 0, "damaged frame %ld came out", img.comment);
	ck_assert_msg(img.comment % LOST_EVERY != 0, "frame %ld with a lost packet came out", img.comment);
	free(img.rgb);
	return img.comment;
}

/* "M dropped" of the last "stream stopped" line in the mount's log, waiting up to 2 s for one; -1 if none. */
static long last_dropped(void)
{
	static char log[1 << 20];
	uint64_t deadline = mono_ms() + 2000;

	do {
		ssize_t n = read_file(m.log, log, sizeof(log) - 1);
		const char *p, *at = NULL;
		unsigned long long frames, dropped;

		if (n > 0) {
			log[n] = '\0';
			for (p = log; (p = strstr(p, "uvc: stream stopped: ")) != NULL; p++)
				at = p;
			if (at != NULL && sscanf(at, "uvc: stream stopped: %llu frames, %llu dropped",
						 &frames, &dropped) == 2)
				return (long)dropped;
		}
		usleep(10000);
	} while (mono_ms() < deadline);
	return -1;
}

START_TEST(test_uvc_stream)
{
	int fd = open(mpath(&m, "webcam0/stream"), O_RDONLY);
	long last = 0;
	uint64_t t0;
	int no_eof = 0;

	ck_assert_int_ge(fd, 0);
	last = read_part(fd);
	t0 = mono_ms();
	for (int i = 0; i < 12; i++) {
		long c = read_part(fd);
		ck_assert_int_gt(c, last);
		last = c;
		no_eof += c % NO_EOF_EVERY == 0;
	}
	/* About a third of the frames end without EOF; a reader that keeps up sees them. */
	ck_assert_int_gt(no_eof, 0);
	fprintf(stderr, "uvc: stream: 12 parts in %llu ms\n", (unsigned long long)(mono_ms() - t0));
	/* A second reader gets whole parts too, while the first goes on. */
	int fd2 = open(mpath(&m, "webcam0/stream"), O_RDONLY);
	ck_assert_int_ge(fd2, 0);
	ck_assert_int_gt(read_part(fd2), 0);
	ck_assert_int_gt(read_part(fd), last);
	close(fd2);
	close(fd);
	ck_assert_int_eq(wait_cam("1-1", "alt 0 streaming 0", 2000), 0);
	/* The driver counted what it dropped. */
	ck_assert_int_gt(last_dropped(), 0);
}
END_TEST

START_TEST(test_uvc_stream_poll)
{
	int fd = open(mpath(&m, "webcam0/stream"), O_RDONLY | O_NONBLOCK);
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char buf[16];
	ssize_t r;

	ck_assert_int_ge(fd, 0);
	r = read(fd, buf, sizeof(buf));
	ck_assert(r > 0 || (r < 0 && errno == EAGAIN));
	if (r < 0) {
		ck_assert_int_eq(poll(&p, 1, 3000), 1);
		ck_assert(p.revents & POLLIN);
		r = read(fd, buf, sizeof(buf));
	}
	ck_assert_int_eq(r, (ssize_t)sizeof(buf));
	ck_assert_int_eq(memcmp(buf, "--plugfsframe\r\n", 15), 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), -1);
	ck_assert_int_eq(errno, ESPIPE);
	close(fd);
}
END_TEST

static int write_ctl(const char *rel, const char *v)
{
	return write_file(mpath(&m, rel), v);
}

START_TEST(test_uvc_controls)
{
	const char *b = "webcam0/controls/brightness";

	/* The C270's brightness: 0..255. */
	ck_assert_int_eq(write_ctl(b, "200\n"), 0);
	ck_assert_str_eq(read_line(mpath(&m, b)), "200");
	ck_assert_int_eq(write_ctl(b, "256\n"), -ERANGE);
	ck_assert_int_eq(write_ctl(b, "-1\n"), -ERANGE);
	ck_assert_int_eq(write_ctl(b, "bright\n"), -EINVAL);
	ck_assert_int_eq(write_ctl(b, "\n"), -EINVAL);
	ck_assert_str_eq(read_line(mpath(&m, b)), "200");
	ck_assert_int_eq(write_ctl(b, "128"), 0);
	ck_assert_str_eq(read_line(mpath(&m, b)), "128");
	/* White balance 2800..6500 in steps of 10. */
	ck_assert_int_eq(write_ctl("webcam0/controls/white_balance_temperature", "2805\n"), -EINVAL);
	ck_assert_int_eq(write_ctl("webcam0/controls/white_balance_temperature", "2810\n"), 0);
	ck_assert_str_eq(read_line(mpath(&m, "webcam0/controls/white_balance_temperature")), "2810");
	ck_assert_int_eq(write_ctl("webcam0/controls/white_balance_temperature", "7000\n"), -ERANGE);
	/* Auto-exposure mode: one of the modes GET_RES lists (1 manual, 8 aperture priority). */
	ck_assert_str_eq(read_line(mpath(&m, "webcam0/controls/exposure_auto")), "8");
	ck_assert_int_eq(write_ctl("webcam0/controls/exposure_auto", "1\n"), 0);
	ck_assert_int_eq(write_ctl("webcam0/controls/exposure_auto", "2\n"), -EINVAL);
	ck_assert_int_eq(write_ctl("webcam0/controls/exposure_auto", "9\n"), -EINVAL);
	ck_assert_int_eq(write_ctl("webcam0/controls/exposure_auto", "8\n"), 0);
	/* Four bytes: exposure time 1..10000. */
	ck_assert_int_eq(write_ctl("webcam0/controls/exposure_absolute", "9999\n"), 0);
	ck_assert_str_eq(read_line(mpath(&m, "webcam0/controls/exposure_absolute")), "9999");
	ck_assert_int_eq(write_ctl("webcam0/controls/exposure_absolute", "0\n"), -ERANGE);
	/* The bulk camera's brightness is signed, -64..64; contrast 0..100 in steps of 5. */
	ck_assert_int_eq(write_ctl("webcam1/controls/brightness", "-10\n"), 0);
	ck_assert_str_eq(read_line(mpath(&m, "webcam1/controls/brightness")), "-10");
	ck_assert_int_eq(write_ctl("webcam1/controls/brightness", "-65\n"), -ERANGE);
	ck_assert_int_eq(write_ctl("webcam1/controls/contrast", "53\n"), -EINVAL);
	ck_assert_int_eq(write_ctl("webcam1/controls/contrast", "55\n"), 0);
	ck_assert_int_eq(write_ctl("webcam1/controls/contrast", "105\n"), -ERANGE);
	ck_assert_str_eq(read_line(mpath(&m, "webcam1/controls/contrast")), "55");
}
END_TEST

START_TEST(test_uvc_kill)
{
	int fd = open(mpath(&m, "webcam0/stream"), O_RDONLY);
	pid_t pid = fn_pid(&m, "webcam0"), fresh;
	char buf[64];

	ck_assert_int_ge(fd, 0);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_gt(read_part(fd), 0);
	ck_assert_int_eq(wait_cam("1-1", "alt 2 streaming 1", 2000), 0);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	fresh = wait_new_pid(&m, "webcam0", pid, 5000);
	ck_assert_int_gt(fresh, 0);
	/* The handle of the dead driver fails until closed... */
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EIO);
	close(fd);
	/* ...the camera went back to altsetting 0 when the dead driver's device node closed... */
	ck_assert_int_eq(wait_cam("1-1", "alt 0 streaming 0", 2000), 0);
	/* ...and a new open streams again. */
	ck_assert_int_eq(wait_state(&m, "webcam0", "running", 5000), 0);
	ck_assert_uint_gt(grab_jpeg(640, 480), 0);
}
END_TEST

START_TEST(test_uvc_unplug)
{
	int fd = open(mpath(&m, "webcam0/stream"), O_RDONLY);
	char buf[64];

	ck_assert_int_ge(fd, 0);
	ck_assert_int_gt(read_part(fd), 0);
	/* Unplugged while streaming: the reader gets ENODEV, the directory goes. */
	ck_assert_int_eq(emu_unplug(&m, "1-1"), 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, ENODEV);
	ck_assert_int_eq(wait_function(&m, "webcam0", 0, 2000), 0);
	close(fd);
	/* Plugged back: the same name, and it streams. */
	ck_assert_int_eq(emu_plug(&m, "c270", 1), 0);
	ck_assert_int_eq(wait_function(&m, "webcam0", 1, 5000), 0);
	ck_assert_int_eq(wait_state(&m, "webcam0", "running", 5000), 0);
	ck_assert_uint_gt(grab_jpeg(640, 480), 0);
}
END_TEST

Suite *uvc_suite(void)
{
	Suite *s = suite_create("uvc");
	TCase *tc = tcase_create("webcam");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_uvc_files);
	tcase_add_test(tc, test_uvc_format);
	tcase_add_test(tc, test_uvc_frame_jpg);
	tcase_add_test(tc, test_uvc_frame_ppm_bulk);
	tcase_add_test(tc, test_uvc_frame_ppm_iso);
	tcase_add_test(tc, test_uvc_stream);
	tcase_add_test(tc, test_uvc_stream_poll);
	tcase_add_test(tc, test_uvc_controls);
	tcase_add_test(tc, test_uvc_kill);
	tcase_add_test(tc, test_uvc_unplug);
	suite_add_tcase(s, tc);
	return s;
}
