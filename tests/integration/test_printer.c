/*
 * The printer driver over the emulated printers (tests/emu/model_printer.c).
 * The models append every byte they take to DIR/SYSNAME.printed, so each
 * print is checked byte for byte against what the printer received.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

/* As in model_printer.c. */
#define PAPER_BYTES 100000

static struct mnt m;

static void start(const char *const *models, unsigned nfuncs)
{
	ck_assert_int_eq(mnt_start(&m, models, "timeout=3000", nfuncs), 0);
}

static void setup_zh380(void)
{
	static const char *const models[] = {"printer-zh380", NULL};
	start(models, 1);
}

static void setup_dymo(void)
{
	static const char *const models[] = {"printer-dymo", NULL};
	start(models, 1);
}

static void setup_ql800(void)
{
	static const char *const models[] = {"printer-ql800", NULL};
	start(models, 1);
}

static void setup_slow(void)
{
	static const char *const models[] = {"printer-slow", NULL};
	start(models, 1);
}

/* One of each state, on ports 1-1 to 1-4; and the bad-ID printer on 1-5. */
static void setup_states(void)
{
	static const char *const models[] = {"printer-zh380", "printer-ql800", "printer-offline",
					     "printer-error", "printer-badid", NULL};
	start(models, 5);
}

static void teardown(void)
{
	mnt_stop(&m);
}

/* DIR/SYSNAME.EXT, where the model leaves what it saw. */
static const char *model_file(const char *sysname, const char *ext)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s.%s", m.dir, sysname, ext);
	return path;
}

static off_t printed_size(void)
{
	struct stat st;
	return stat(model_file("1-1", "printed"), &st) == 0 ? st.st_size : 0;
}

/* Bytes [from, from + len) of what printer 1-1 received. */
static uint8_t *printed_bytes(off_t from, size_t len)
{
	uint8_t *buf = malloc(len > 0 ? len : 1);
	int fd = open(model_file("1-1", "printed"), O_RDONLY);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, len, from), (ssize_t)len);
	close(fd);
	return buf;
}

static void fill_pattern(uint8_t *buf, size_t len, uint32_t seed)
{
	uint32_t x = seed * 2654435761u + 1;
	for (size_t i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (uint8_t)(x >> 16);
	}
}

/* What `cat job > data` does: write until all is written or a write fails.  Bytes written, or -errno. */
static ssize_t write_all(int fd, const uint8_t *buf, size_t len, size_t *done)
{
	*done = 0;
	while (*done < len) {
		ssize_t n = write(fd, buf + *done, len - *done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		ck_assert_int_gt(n, 0);
		*done += (size_t)n;
	}
	return (ssize_t)*done;
}

static const char *data_path(void)
{
	return mpath(&m, "printer0/data");
}

static const size_t job_sizes[] = {0, 1, 511, 512, 513, 8191, 8192, 8193, 10u << 20};

/* Every size arrives whole and in order, and write() returns only once the printer took it. */
START_TEST(print_job_sizes)
{
	size_t len = job_sizes[_i], done;
	uint8_t *job = malloc(len > 0 ? len : 1);
	off_t before = printed_size();

	ck_assert_ptr_nonnull(job);
	fill_pattern(job, len, (uint32_t)len);
	int fd = open(data_path(), O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write_all(fd, job, len, &done), (ssize_t)len);
	/* Before close: the bytes were taken when write() returned. */
	ck_assert_int_eq(printed_size(), before + (off_t)len);
	ck_assert_int_eq(close(fd), 0);
	uint8_t *got = printed_bytes(before, len);
	ck_assert_msg(memcmp(got, job, len) == 0, "%zu-byte job differs from what the printer took", len);
	free(got);
	free(job);
}
END_TEST

/* The ZH-380 answers DLE EOT n on its back channel; a read returns it. */
START_TEST(backchannel_read)
{
	static const uint8_t dle_eot_1[] = {0x10, 0x04, 0x01};
	uint8_t b[16];
	off_t before = printed_size();
	int fd = open(data_path(), O_RDWR | O_NONBLOCK);

	ck_assert_int_ge(fd, 0);
	/* Nothing sent yet: a non-blocking read has nothing. */
	ck_assert_int_eq(read(fd, b, sizeof(b)), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(write(fd, dle_eot_1, sizeof(dle_eot_1)), (ssize_t)sizeof(dle_eot_1));
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	ck_assert_int_eq(poll(&pfd, 1, 3000), 1);
	ck_assert(pfd.revents & POLLIN);
	ck_assert_int_eq(read(fd, b, sizeof(b)), 1);
	ck_assert_uint_eq(b[0], 0x12);
	close(fd);

	/* A blocking read waits for the answer. */
	fd = open(data_path(), O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, dle_eot_1, sizeof(dle_eot_1)), (ssize_t)sizeof(dle_eot_1));
	ck_assert_int_eq(read(fd, b, sizeof(b)), 1);
	ck_assert_uint_eq(b[0], 0x12);
	close(fd);
	/* The requests were printed bytes too. */
	uint8_t *got = printed_bytes(before, 6);
	ck_assert_mem_eq(got, "\x10\x04\x01\x10\x04\x01", 6);
	free(got);
}
END_TEST

START_TEST(unidirectional_read_einval)
{
	uint8_t b[16];
	int fd = open(data_path(), O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, b, sizeof(b)), -1);
	ck_assert_int_eq(errno, EINVAL);
	close(fd);
	/* Writing still prints. */
	ck_assert_int_eq(write_file(data_path(), "label\n"), 0);
	uint8_t *got = printed_bytes(0, 6);
	ck_assert_mem_eq(got, "label\n", 6);
	free(got);
}
END_TEST

static void assert_text(const char *rel, const char *want)
{
	char buf[2048];
	ssize_t n = read_file(mpath(&m, rel), buf, sizeof(buf) - 1);

	ck_assert_msg(n >= 0, "%s: %s", rel, strerror((int)-n));
	buf[n] = '\0';
	ck_assert_str_eq(buf, want);
}

START_TEST(device_id_and_status)
{
	assert_text("by-path/1-1:1.0/device_id",
		    "MFG:Gprinter;CMD:ESC/POS,TSPL;MDL:ZH-380;CLS:PRINTER;DES:Gprinter ZH-380;\n");
	assert_text("by-path/1-2:1.0/device_id", "MFG:Brother;CMD:PT-CBP;MDL:QL-800;CLS:PRINTER;\n");
	/* The length field says 4096: what arrived is used instead, and the driver says so. */
	assert_text("by-path/1-5:1.0/device_id", "MFG:Xprinter;CMD:TSPL,ESC/POS;MDL:XP-P323B;CLS:PRINTER;\n");
	char log[65536];
	ssize_t ln = read_file(m.log, log, sizeof(log) - 1);
	ck_assert_int_gt(ln, 0);
	log[ln] = '\0';
	ck_assert_ptr_nonnull(strstr(log, "GET_DEVICE_ID length field 4096"));
	assert_text("by-path/1-1:1.0/status", "ok\n");
	assert_text("by-path/1-2:1.0/status", "ok\n");
	assert_text("by-path/1-3:1.0/status", "offline\n");
	assert_text("by-path/1-4:1.0/status", "error\n");
	/* Read in small pieces: one answer, cut where asked, then EOF. */
	char piece[4];
	int fd = open(mpath(&m, "by-path/1-3:1.0/status"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, piece, 3), 3);
	ck_assert_int_eq(read(fd, piece + 3, 1), 1);
	ck_assert_mem_eq(piece, "offl", 4);
	close(fd);
}
END_TEST

START_TEST(device_id_unidirectional)
{
	assert_text("printer0/device_id", "MFG:DYMO;CMD: ;MDL:LabelWriter 450;CLASS:PRINTER;DESCRIPTION:DYMO "
					  "LabelWriter 450;SERN:01010112345600;\n");
	assert_text("printer0/status", "ok\n");
}
END_TEST

/* The roll ends after PAPER_BYTES: the write returns what the printer took, the next one ENOSPC. */
START_TEST(paper_out_mid_job)
{
	size_t len = 3 * PAPER_BYTES;
	uint8_t *job = malloc(len);
	ck_assert_ptr_nonnull(job);
	fill_pattern(job, len, 7);

	assert_text("printer0/status", "ok\n");
	int fd = open(data_path(), O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ssize_t n = write(fd, job, len);
	ck_assert_int_eq(n, PAPER_BYTES);
	ck_assert_int_eq(printed_size(), PAPER_BYTES);
	ck_assert_int_eq(write(fd, job + n, len - (size_t)n), -1);
	ck_assert_int_eq(errno, ENOSPC);
	assert_text("printer0/status", "paper-out\n");
	/* Still out of paper: a new job takes nothing and fails the same way. */
	ck_assert_int_eq(write(fd, job, 1000), -1);
	ck_assert_int_eq(errno, ENOSPC);
	close(fd);
	ck_assert_int_eq(printed_size(), PAPER_BYTES);
	uint8_t *got = printed_bytes(0, PAPER_BYTES);
	ck_assert(memcmp(got, job, PAPER_BYTES) == 0);
	free(got);
	free(job);
}
END_TEST

static const char *read_model_line(const char *sysname, const char *ext)
{
	static char line[64];
	ssize_t n = read_file(model_file(sysname, ext), line, sizeof(line) - 1);
	line[n > 0 ? n : 0] = '\0';
	return line;
}

/* `reset` reaches the printer as SOFT_RESET (the DYMO knows only the 1.0 form: the driver retries). */
START_TEST(ctl_reset)
{
	ck_assert_int_eq(write_file(mpath(&m, "printer0/ctl"), "reset\n"), 0);
	ck_assert_str_eq(read_model_line("1-1", "resets"), "1\n");
	ck_assert_int_eq(write_file(mpath(&m, "printer0/ctl"), "reset"), 0);
	ck_assert_str_eq(read_model_line("1-1", "resets"), "2\n");
	ck_assert_int_eq(write_file(mpath(&m, "printer0/ctl"), "reset now"), -EINVAL);
	ck_assert_int_eq(write_file(mpath(&m, "printer0/ctl"), "eject"), -EINVAL);
	ck_assert_str_eq(read_model_line("1-1", "resets"), "2\n");
	/* Printing works after a reset. */
	ck_assert_int_eq(write_file(data_path(), "after\n"), 0);
	uint8_t *got = printed_bytes(printed_size() - 6, 6);
	ck_assert_mem_eq(got, "after\n", 6);
	free(got);
}
END_TEST

struct writer {
	int fd;
	const uint8_t *buf;
	size_t len, done;
	ssize_t ret;
	volatile int finished;
	pthread_t thread;
};

static void *writer_run(void *arg)
{
	struct writer *w = arg;
	w->ret = write_all(w->fd, w->buf, w->len, &w->done);
	w->finished = 1;
	return NULL;
}

/* Killing the driver mid-job: EIO, never a count for bytes the printer did not take; then it prints again. */
START_TEST(kill_driver_mid_job)
{
	size_t len = 4u << 20;
	uint8_t *job = malloc(len);
	ck_assert_ptr_nonnull(job);
	fill_pattern(job, len, 99);

	struct writer w = {.buf = job, .len = len};
	w.fd = open(data_path(), O_WRONLY);
	ck_assert_int_ge(w.fd, 0);
	pid_t pid = fn_pid(&m, "printer0");
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(pthread_create(&w.thread, NULL, writer_run, &w), 0);
	uint64_t deadline = mono_ms() + 5000;
	while (printed_size() < 256 * 1024 && mono_ms() < deadline)
		usleep(1000);
	ck_assert_int_ge(printed_size(), 256 * 1024);
	ck_assert(!w.finished);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	pthread_join(w.thread, NULL);
	ck_assert_int_eq(w.ret, -EIO);
	/* What write() reported is all in the printer, in order; the printer may have taken more. */
	ck_assert_int_le((off_t)w.done, printed_size());
	ck_assert_int_lt(w.done, len);
	uint8_t *got = printed_bytes(0, w.done);
	ck_assert(memcmp(got, job, w.done) == 0);
	free(got);
	/* The old handle stays dead until closed. */
	ck_assert_int_eq(write(w.fd, job, 10), -1);
	ck_assert_int_eq(errno, EIO);
	close(w.fd);

	ck_assert_int_gt(wait_new_pid(&m, "printer0", pid, 5000), 0);
	ck_assert_int_eq(wait_state(&m, "printer0", "running", 5000), 0);
	off_t before = printed_size();
	int fd = open(data_path(), O_WRONLY);
	ck_assert_int_ge(fd, 0);
	size_t done;
	ck_assert_int_eq(write_all(fd, job, 100000, &done), 100000);
	close(fd);
	ck_assert_int_eq(printed_size(), before + 100000);
	got = printed_bytes(before, 100000);
	ck_assert(memcmp(got, job, 100000) == 0);
	free(got);
	free(job);
}
END_TEST

/* O_NONBLOCK: a write is queued and answered at once; another one while it prints gets EAGAIN. */
START_TEST(nonblocking_write)
{
	size_t len = 512 * 1024;
	uint8_t *job = malloc(len);
	ck_assert_ptr_nonnull(job);
	fill_pattern(job, len, 3);

	off_t before = printed_size();
	int fd = open(data_path(), O_WRONLY | O_NONBLOCK);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, job, 64 * 1024), 64 * 1024);
	/* The slow printer takes 16 KiB per 10 ms: the first write is still printing. */
	ck_assert_int_eq(write(fd, job + 64 * 1024, 1000), -1);
	ck_assert_int_eq(errno, EAGAIN);
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
	ck_assert(pfd.revents & POLLOUT);
	ck_assert_int_eq(printed_size(), before + 64 * 1024);
	ck_assert_int_eq(write(fd, job + 64 * 1024, 1000), 1000);
	ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
	ck_assert_int_eq(printed_size(), before + 64 * 1024 + 1000);
	close(fd);
	uint8_t *got = printed_bytes(before, 64 * 1024 + 1000);
	ck_assert(memcmp(got, job, 64 * 1024 + 1000) == 0);
	free(got);
	free(job);
}
END_TEST

Suite *printer_suite(void)
{
	Suite *s = suite_create("printer");
	TCase *tc;

	tc = tcase_create("zh380");
	tcase_add_unchecked_fixture(tc, setup_zh380, teardown);
	tcase_set_timeout(tc, 60);
	/* First: random jobs hold DLE EOT n sequences, whose answers would wait on the back channel. */
	tcase_add_test(tc, backchannel_read);
	tcase_add_loop_test(tc, print_job_sizes, 0, (int)(sizeof(job_sizes) / sizeof(job_sizes[0])));
	tcase_add_test(tc, ctl_reset);
	suite_add_tcase(s, tc);

	tc = tcase_create("dymo");
	tcase_add_unchecked_fixture(tc, setup_dymo, teardown);
	tcase_add_test(tc, unidirectional_read_einval);
	tcase_add_test(tc, device_id_unidirectional);
	suite_add_tcase(s, tc);

	tc = tcase_create("states");
	tcase_add_unchecked_fixture(tc, setup_states, teardown);
	tcase_add_test(tc, device_id_and_status);
	suite_add_tcase(s, tc);

	tc = tcase_create("paper");
	tcase_add_unchecked_fixture(tc, setup_ql800, teardown);
	tcase_add_test(tc, paper_out_mid_job);
	suite_add_tcase(s, tc);

	tc = tcase_create("slow");
	tcase_add_unchecked_fixture(tc, setup_slow, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, kill_driver_mid_job);
	tcase_add_test(tc, nonblocking_write);
	suite_add_tcase(s, tc);
	return s;
}
