/*
 * The ippusb driver over the emulated eSCL scanners (tests/emu/model_escl.c):
 * `escl` (printer0 + scanner0, two IPP-USB interfaces, flatbed and a
 * 3-page feeder, PNG pages it draws itself) and the misbehaving
 * `escl-garbage` and `escl-liar`.  Pages are checked as PNG files: the
 * signature, the IHDR's size against region x resolution / 300, and every
 * chunk's CRC.  The model writes each DELETE it gets to DIR/1-1.deleted.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "util.h"
#include "suites.h"

static struct mnt m;

static void setup_escl(void)
{
	static const char *const models[] = {"escl", NULL};
	ck_assert_int_eq(mnt_start(&m, models, "timeout=5000", 2), 0);
}

static void setup_broken(void)
{
	static const char *const models[] = {"escl-garbage", "escl-liar", NULL};
	ck_assert_int_eq(mnt_start(&m, models, "timeout=5000", 2), 0);
}

static void teardown(void)
{
	mnt_stop(&m);
}

static const char *sc(const char *file)
{
	static char buf[4][64];
	static int n;
	char *p = buf[n++ % 4];

	snprintf(p, sizeof(buf[0]), "scanner0/%s", file);
	return mpath(&m, p);
}

/* Reads fd to EOF into a growing buffer; bytes, or -errno (bytes read before it in *got). */
static ssize_t read_all(int fd, uint8_t **out, size_t *got)
{
	size_t cap = 1 << 20, len = 0;
	uint8_t *buf = malloc(cap);

	ck_assert_ptr_nonnull(buf);
	for (;;) {
		if (cap - len < 65536) {
			cap *= 2;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
		ssize_t n = read(fd, buf + len, cap - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			*out = buf;
			*got = len;
			return -e;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	*out = buf;
	*got = len;
	return (ssize_t)len;
}

/* `cat scanner0/scan > page.png`: the page, or NULL with *err set. */
static uint8_t *scan_page(size_t *len, int *err)
{
	uint8_t *buf;
	int fd = open(sc("scan"), O_RDONLY);

	*err = 0;
	if (fd < 0) {
		*err = errno;
		return NULL;
	}
	ssize_t n = read_all(fd, &buf, len);
	close(fd);
	if (n < 0) {
		*err = (int)-n;
		free(buf);
		return NULL;
	}
	return buf;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t crc32_png(const uint8_t *p, size_t n)
{
	uint32_t crc = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? 0xedb88320u ^ (crc >> 1) : crc >> 1;
	}
	return crc ^ 0xffffffffu;
}

/* A valid PNG of w x h pixels with `depth` bits and colour type `ctype`, every chunk's CRC right, IEND last.
 */
static void assert_png(const uint8_t *p, size_t len, uint32_t w, uint32_t h, int depth, int ctype)
{
	static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
	size_t off = 8;
	bool iend = false;

	ck_assert_uint_ge(len, 8 + 25 + 12);
	ck_assert_mem_eq(p, sig, 8);
	ck_assert_mem_eq(p + 12, "IHDR", 4);
	ck_assert_uint_eq(be32(p + 16), w);
	ck_assert_uint_eq(be32(p + 20), h);
	ck_assert_int_eq(p[24], depth);
	ck_assert_int_eq(p[25], ctype);
	while (off + 12 <= len && !iend) {
		uint32_t clen = be32(p + off);
		ck_assert_uint_le(clen, len - off - 12);
		ck_assert_uint_eq(crc32_png(p + off + 4, clen + 4), be32(p + off + 8 + clen));
		iend = memcmp(p + off + 4, "IEND", 4) == 0;
		off += 12 + clen;
	}
	ck_assert(iend);
	ck_assert_uint_eq(off, len);
}

static void set(const char *text, int want)
{
	int r = write_file(sc("settings"), text);
	ck_assert_msg(r == want, "writing '%s': %d, want %d", text, r, want);
}

static const char *settings(void)
{
	static char buf[512];
	ssize_t n = read_file(sc("settings"), buf, sizeof(buf) - 1);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	return buf;
}

/* Lines of DIR/1-1.deleted. */
static int deleted_count(void)
{
	char path[256], buf[4096];
	int n = 0;

	snprintf(path, sizeof(path), "%s/1-1.deleted", m.dir);
	ssize_t len = read_file(path, buf, sizeof(buf) - 1);
	for (ssize_t i = 0; i < len; i++)
		n += buf[i] == '\n';
	return n;
}

static int wait_deleted(int want, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	while (deleted_count() < want) {
		if (mono_ms() > deadline)
			return -1;
		usleep(5000);
	}
	return 0;
}

/* ---- escl ---- */

START_TEST(defaults_and_capabilities)
{
	char buf[16384];
	ssize_t n = read_file(sc("capabilities"), buf, sizeof(buf) - 1);

	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_msg(strncmp(buf, "<?xml", 5) == 0, "capabilities: %.40s", buf);
	ck_assert_ptr_nonnull(strstr(buf, "<scan:ScannerCapabilities"));
	ck_assert_ptr_nonnull(strstr(buf, "</scan:ScannerCapabilities>\n"));
	ck_assert_ptr_nonnull(strstr(buf, "<scan:AdfSimplexInputCaps>"));
	/* The model offers PNG only: that is the default; 300 dpi colour, the whole platen. */
	ck_assert_str_eq(settings(),
			 "resolution 300\nmode color\nformat png\nsource flatbed\nregion 0 0 2550 3508\n");
	ck_assert_str_eq(read_line(sc("status")), "idle");
	struct stat st;
	ck_assert_int_eq(stat(sc("scan"), &st), 0);
	ck_assert_int_eq(st.st_size, 0);
}
END_TEST

/* `cat scan > page.png` at several resolutions and modes: a valid PNG of region x resolution / 300. */
START_TEST(scan_flatbed_png)
{
	static const struct {
		const char *settings;
		uint32_t w, h;
		int depth, ctype;
	} cases[] = {
	    {"resolution 300\nmode color\nregion 0 0 600 300\n", 600, 300, 8, 2},
	    {"resolution 150\nmode gray\nregion 100 200 900 450\n", 450, 225, 8, 0},
	    {"resolution 75\nmode bw\nregion 0 0 2550 3508\n", 637, 877, 1, 0},
	    {"resolution 600\nmode color\nregion 2500 3400 50 100\n", 100, 200, 8, 2},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len;
		int err;
		set(cases[i].settings, 0);
		uint8_t *page = scan_page(&len, &err);
		ck_assert_msg(page != NULL, "scan %zu: %s", i, strerror(err));
		assert_png(page, len, cases[i].w, cases[i].h, cases[i].depth, cases[i].ctype);
		free(page);
	}
	ck_assert_str_eq(read_line(sc("status")), "idle");
	/* Whole documents read to EOF cancel nothing. */
	ck_assert_int_eq(deleted_count(), 0);
}
END_TEST

START_TEST(bad_settings_refused)
{
	static const char *const bad[] = {
	    "resolution 123",
	    "resolution 0",
	    "resolution -300",
	    "resolution 300dpi",
	    "mode sepia",
	    "format jpeg",
	    "format pdf",
	    "source roll",
	    "region 0 0 2551 100",
	    "region 0 0 0 100",
	    "region 2550 0 1 1",
	    "region 0 3500 100 100",
	    "region 0 0 10 10",
	    "region 1 2 3",
	    "colour red",
	    "resolution 300 300",
	    "mode gray\nformat tiff",
	    "",
	};
	const char *before;
	char saved[512];

	set("resolution 150\nmode gray\nregion 0 0 300 300\n", 0);
	before = settings();
	snprintf(saved, sizeof(saved), "%s", before);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (bad[i][0] == '\0')
			continue;
		set(bad[i], -EINVAL);
		/* All or nothing: a refused write changed nothing. */
		ck_assert_str_eq(settings(), saved);
	}
	/* A region that fits the feeder (4200 high) but not the platen (3508), with the source in the same
	 * write. */
	set("region 0 0 2550 4000", -EINVAL);
	set("source adf\nregion 0 0 2550 4000\n", 0);
	ck_assert_str_eq(settings(),
			 "resolution 150\nmode gray\nformat png\nsource adf\nregion 0 0 2550 4000\n");
	set("source flatbed", -EINVAL);
	set("source flatbed\nregion 0 0 300 300", 0);
}
END_TEST

/* The feeder: three pages, each open the next, then ENODATA, also for a new job. */
START_TEST(adf_three_pages)
{
	uint8_t *pages[3];
	size_t lens[3], len;
	int err;

	set("source adf\nresolution 150\nmode color\nregion 0 0 300 600\n", 0);
	for (int i = 0; i < 3; i++) {
		pages[i] = scan_page(&lens[i], &err);
		ck_assert_msg(pages[i] != NULL, "page %d: %s", i + 1, strerror(err));
		assert_png(pages[i], lens[i], 150, 300, 8, 2);
	}
	/* The model draws each page differently: three documents, not one thrice. */
	ck_assert(memcmp(pages[0], pages[1], lens[0]) != 0);
	ck_assert(memcmp(pages[1], pages[2], lens[1]) != 0);
	for (int i = 0; i < 3; i++)
		free(pages[i]);
	ck_assert_ptr_null(scan_page(&len, &err));
	ck_assert_int_eq(err, ENODATA);
	/* The feeder stays empty: a new job is refused the same way. */
	ck_assert_ptr_null(scan_page(&len, &err));
	ck_assert_int_eq(err, ENODATA);
	/* The flatbed still works. */
	set("source flatbed\nregion 0 0 300 300\n", 0);
	uint8_t *page = scan_page(&len, &err);
	ck_assert_msg(page != NULL, "flatbed after the feeder: %s", strerror(err));
	assert_png(page, len, 150, 150, 8, 2);
	free(page);
}
END_TEST

/* While a page streams on one interface, status answers on the other; a second open is EBUSY. */
START_TEST(status_while_scanning)
{
	uint8_t buf[65536];
	int fd;

	set("resolution 300\nmode color\nregion 0 0 2550 3508\n", 0);
	fd = open(sc("scan"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(open(sc("scan"), O_RDONLY), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_gt(read(fd, buf, sizeof(buf)), 0);
	/* The driver buffers 1 MiB ahead of the reader; the 26 MB page is still being sent. */
	uint64_t t0 = mono_ms();
	ck_assert_str_eq(read_line(sc("status")), "processing");
	ck_assert_uint_lt(mono_ms() - t0, 2000);
	char caps[16384];
	ck_assert_int_gt(read_file(sc("capabilities"), caps, sizeof(caps)), 0);
	close(fd);
}
END_TEST

/* Closing before EOF cancels the job (DELETE); the next scan works. */
START_TEST(close_early_cancels)
{
	uint8_t buf[65536];
	int before = deleted_count(), err;
	size_t len;

	set("resolution 300\nmode color\nregion 0 0 2550 3508\n", 0);
	int fd = open(sc("scan"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_gt(read(fd, buf, sizeof(buf)), 0);
	close(fd);
	ck_assert_int_eq(wait_deleted(before + 1, 5000), 0);
	ck_assert_ptr_nonnull(wait_file_has(m.log, "scan closed early: cancelling /eSCL/ScanJobs/", 2000));
	set("region 0 0 300 300", 0);
	uint8_t *page = scan_page(&len, &err);
	ck_assert_msg(page != NULL, "scan after a cancel: %s", strerror(err));
	assert_png(page, len, 300, 300, 8, 2);
	free(page);
	ck_assert_str_eq(read_line(sc("status")), "idle");
}
END_TEST

/* O_NONBLOCK: EAGAIN until the page comes, poll() says when. */
START_TEST(nonblocking_poll)
{
	uint8_t buf[4096];
	size_t len = 0;

	set("resolution 75\nmode gray\nregion 0 0 300 300\n", 0);
	int fd = open(sc("scan"), O_RDONLY | O_NONBLOCK);
	ck_assert_int_ge(fd, 0);
	/* The model answers the first NextDocument 503 (warming up): nothing for a while. */
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EAGAIN);
	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EAGAIN)
			continue;
		ck_assert_int_ge(n, 0);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	/* 75 x 75 grey pixels: 75 rows of 76 bytes, in stored deflate blocks. */
	ck_assert_uint_gt(len, 75u * 76u);
}
END_TEST

/* Reads of every size, small ones too, while the driver keeps the device ahead of the reader: nothing lost. */
START_TEST(odd_reads_lose_nothing)
{
	static const size_t sizes[] = {1, 4096, 131072, 77, 65536, 100000};
	size_t cap = 8u << 20, len = 0;
	uint8_t *page = malloc(cap);

	ck_assert_ptr_nonnull(page);
	set("resolution 300\nmode color\nregion 0 0 1200 1200\n", 0);
	int fd = open(sc("scan"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	for (unsigned i = 0;; i++) {
		size_t want = sizes[i % 6];
		ck_assert_uint_le(len + want, cap);
		ssize_t n = read(fd, page + len, want);
		ck_assert_int_ge(n, 0);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	/* Every chunk's CRC: a lost or doubled piece shows. */
	assert_png(page, len, 1200, 1200, 8, 2);
	free(page);
}
END_TEST

/* The driver killed mid-page: EIO; after the respawn the job is cancelled on the device and scans work. */
START_TEST(kill_mid_scan)
{
	uint8_t buf[65536];
	int before = deleted_count(), err;
	size_t len;

	set("resolution 300\nmode color\nregion 0 0 2550 3508\n", 0);
	pid_t pid = fn_pid(&m, "scanner0");
	ck_assert_int_gt(pid, 0);
	int fd = open(sc("scan"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_gt(read(fd, buf, sizeof(buf)), 0);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ssize_t n;
	do
		n = read(fd, buf, sizeof(buf));
	while (n > 0);
	ck_assert_int_eq(n, -1);
	ck_assert_int_eq(errno, EIO);
	close(fd);
	ck_assert_int_gt(wait_new_pid(&m, "scanner0", pid, 5000), 0);
	ck_assert_int_eq(wait_state(&m, "scanner0", "running", 5000), 0);
	/* The new driver found the job still processing and cancelled it. */
	ck_assert_int_eq(wait_deleted(before + 1, 5000), 0);
	ck_assert_ptr_nonnull(wait_file_has(m.log, "left by a previous driver", 2000));
	/* The settings are the driver's: the new one starts from the defaults. */
	set("region 0 0 600 600", 0);
	uint8_t *page = scan_page(&len, &err);
	ck_assert_msg(page != NULL, "scan after the respawn: %s", strerror(err));
	assert_png(page, len, 600, 600, 8, 2);
	free(page);
	ck_assert_str_eq(read_line(sc("status")), "idle");
}
END_TEST

/*
 * Full page, 300 dpi colour (2550 x 3508 RGB, 26.8 MB): the rate `cat scan`
 * gets, from open to EOF and from the first byte on (the model answers the
 * job's first NextDocument 503, which costs one 200 ms retry).
 */
START_TEST(throughput)
{
	size_t cap = 32u << 20, len = 0;
	uint8_t *page = malloc(cap);
	uint64_t t0, t1 = 0;

	ck_assert_ptr_nonnull(page);
	set("resolution 300\nmode color\nregion 0 0 2550 3508\n", 0);
	t0 = now_us();
	int fd = open(sc("scan"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	for (;;) {
		ssize_t n = read(fd, page + len, cap - len < 131072 ? cap - len : 131072);
		ck_assert_int_ge(n, 0);
		if (n == 0)
			break;
		if (len == 0)
			t1 = now_us();
		len += (size_t)n;
	}
	uint64_t t2 = now_us();
	close(fd);
	assert_png(page, len, 2550, 3508, 8, 2);
	free(page);
	double mib = (double)len / (1 << 20);
	fprintf(
	    stderr,
	    "ippusb: full page %zu bytes: %.1f MiB/s open to EOF (%.0f ms), %.1f MiB/s from the first byte "
	    "(%.0f ms to it)\n",
	    len, mib / ((double)(t2 - t0) / 1e6), (double)(t2 - t0) / 1e3, mib / ((double)(t2 - t1) / 1e6),
	    (double)(t1 - t0) / 1e3);
}
END_TEST

/* ---- misbehaving devices ---- */

START_TEST(malformed_answers)
{
	char buf[16384];
	size_t len;
	int err;
	pid_t pid0 = fn_pid(&m, "scanner0"), pid1 = fn_pid(&m, "scanner1");

	/* escl-garbage: a malformed status line; an endless header line. */
	ck_assert_int_eq(read_file(mpath(&m, "scanner0/status"), buf, sizeof(buf)), -EIO);
	ck_assert_ptr_nonnull(wait_file_has(m.log, "GET /eSCL/ScannerStatus: bad status code", 2000));
	ck_assert_ptr_null(scan_page(&len, &err));
	ck_assert_int_eq(err, EIO);
	ck_assert_ptr_nonnull(wait_file_has(m.log, "POST /eSCL/ScanJobs: line longer than the limit", 2000));
	/* The connection is in step again: capabilities still read. */
	ck_assert_int_gt(read_file(mpath(&m, "scanner0/capabilities"), buf, sizeof(buf)), 0);

	/* escl-liar: a body shorter than promised (EIO after the driver's deadline, not a hang)... */
	uint64_t t0 = mono_ms();
	ck_assert_int_eq(read_file(mpath(&m, "scanner1/status"), buf, sizeof(buf)), -EIO);
	ck_assert_uint_lt(mono_ms() - t0, 4500);
	ck_assert_ptr_nonnull(wait_file_has(m.log, "the answer stopped before its end", 2000));
	/* ... and a page longer than promised. */
	uint8_t *page;
	int fd = open(mpath(&m, "scanner1/scan"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ssize_t n = read_all(fd, &page, &len);
	close(fd);
	free(page);
	ck_assert_int_eq(n, -EIO);
	ck_assert_uint_le(len, 1000);
	ck_assert_ptr_nonnull(wait_file_has(m.log, "bytes after the end of the answer", 2000));
	ck_assert_int_gt(read_file(mpath(&m, "scanner1/capabilities"), buf, sizeof(buf)), 0);
	/* Nobody crashed. */
	ck_assert_int_eq(fn_pid(&m, "scanner0"), pid0);
	ck_assert_int_eq(fn_pid(&m, "scanner1"), pid1);
}
END_TEST

Suite *ippusb_suite(void)
{
	Suite *s = suite_create("ippusb");
	TCase *tc;

	tc = tcase_create("escl");
	tcase_add_unchecked_fixture(tc, setup_escl, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, defaults_and_capabilities);
	tcase_add_test(tc, scan_flatbed_png);
	tcase_add_test(tc, bad_settings_refused);
	tcase_add_test(tc, adf_three_pages);
	tcase_add_test(tc, status_while_scanning);
	tcase_add_test(tc, close_early_cancels);
	tcase_add_test(tc, nonblocking_poll);
	tcase_add_test(tc, odd_reads_lose_nothing);
	tcase_add_test(tc, throughput);
	tcase_add_test(tc, kill_mid_scan);
	suite_add_tcase(s, tc);

	tc = tcase_create("broken");
	tcase_add_unchecked_fixture(tc, setup_broken, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, malformed_answers);
	suite_add_tcase(s, tc);
	return s;
}
