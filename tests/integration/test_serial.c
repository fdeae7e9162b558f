/*
 * The serial driver over its two emulated adapters with loopback plugs:
 * serial0 is the CDC-ACM Arduino (`acm` model), serial1 the FTDI FT232R
 * (`ft232r`).  Loop tests run once per adapter (_i = 0, 1).  What a model
 * received is checked in its log lines ("plugfs-emu: acm: ...") and, for
 * the modem lines, in-band through the loopback wiring.
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

static struct mnt m;
static const char *const fns[] = {"serial0", "serial1"};

static void setup(void)
{
	static const char *const models[] = {"acm", "ft232r", NULL};
	ck_assert_int_eq(mnt_start(&m, models, "timeout=3000", 2), 0);
}

static void teardown(void)
{
	mnt_stop(&m);
}

static const char *fpath(int i, const char *file)
{
	static char buf[4][64];
	static int n;
	char *p = buf[n++ % 4];

	snprintf(p, sizeof(buf[0]), "%s/%s", fns[i], file);
	return mpath(&m, p);
}

static int open_data(int i, int flags)
{
	int fd = open(fpath(i, "data"), flags);

	ck_assert_msg(fd >= 0, "open %s/data: %s", fns[i], strerror(errno));
	return fd;
}

/* Waits up to ms until the mount's log has a line containing `s`. */
/* Waits up to ms until the mount's log holds s; 0 (log_at then points at it) or -1. */
static const char *log_at;
static int wait_log(const char *s, int ms)
{
	return (log_at = wait_file_has(m.log, s, ms)) != NULL ? 0 : -1;
}

static int ctl(int i, const char *cmd)
{
	return write_file(fpath(i, "ctl"), cmd);
}

static void read_exact(int fd, uint8_t *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		ck_assert_msg(r > 0, "read: %zd (%s) after %zu of %zu", r, strerror(errno), got, n);
		got += (size_t)r;
	}
}

START_TEST(one_function_per_adapter)
{
	char buf[1024], line[256];
	struct stat st;

	/* The Arduino's CDC data interface belongs to serial0: no usb0 for it. */
	ck_assert_int_eq(stat(mpath(&m, "usb0"), &st), -1);
	ck_assert_int_eq(read_file(mpath(&m, "devices"), buf, sizeof(buf) - 1) > 0, 1);
	snprintf(line, sizeof(line),
		 "serial0 1-1 2341:0043 serial running 0 %d\n"
		 "serial1 1-2 0403:6001 serial running 0 %d\n",
		 (int)fn_pid(&m, "serial0"), (int)fn_pid(&m, "serial1"));
	buf[strlen(line)] = '\0';
	ck_assert_str_eq(buf, line);
	ck_assert_str_eq(read_line(fpath(0, "driver")), "serial");
	ck_assert_str_eq(read_line(fpath(1, "interface")), "00");
	/* data is a stream: no size, no seeking. */
	ck_assert_int_eq(stat(fpath(0, "data"), &st), 0);
	ck_assert_int_eq(st.st_size, 0);
	int fd = open_data(1, O_RDWR);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), -1);
	ck_assert_int_eq(errno, ESPIPE);
	close(fd);
}
END_TEST

struct writer {
	int fd;
	const uint8_t *data;
	size_t len;
	ssize_t ret;
	int err;
	pid_t tid;
	pthread_t thread;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	size_t done = 0, chunk = 1000;

	w->tid = gettid();
	/* Odd, growing chunk sizes: writes that end inside and on packet boundaries. */
	while (done < w->len) {
		size_t n = w->len - done < chunk ? w->len - done : chunk;
		ssize_t r = write(w->fd, w->data + done, n);
		if (r <= 0) {
			w->ret = r;
			w->err = errno;
			return NULL;
		}
		done += (size_t)r;
		chunk = chunk * 3 / 2 + 64 > 65536 ? 4096 : chunk * 3 / 2 + 64;
	}
	w->ret = (ssize_t)done;
	return NULL;
}

/* 1 MiB of random bytes out and back while a reader reads concurrently. */
START_TEST(stream_1mib_random)
{
	const size_t len = 1 << 20;
	uint8_t *out = malloc(len), *in = malloc(len);
	struct writer w = {0};
	unsigned seed = 12345u + (unsigned)_i;

	ck_assert(out != NULL && in != NULL);
	for (size_t k = 0; k < len; k++)
		out[k] = (uint8_t)(rand_r(&seed) >> 7);
	int rfd = open_data(_i, O_RDONLY);
	w.fd = open_data(_i, O_WRONLY);
	w.data = out;
	w.len = len;
	uint64_t t0 = mono_ms();
	ck_assert_int_eq(pthread_create(&w.thread, NULL, writer_main, &w), 0);
	read_exact(rfd, in, len);
	ck_assert_int_eq(pthread_join(w.thread, NULL), 0);
	ck_assert_msg(w.ret == (ssize_t)len, "writer: %zd (%s)", w.ret, strerror(w.err));
	ck_assert_msg(memcmp(in, out, len) == 0, "%s: the bytes that came back differ", fns[_i]);
	fprintf(stderr, "serial: %s: 1 MiB looped back in %llu ms\n", fns[_i],
		(unsigned long long)(mono_ms() - t0));
	close(w.fd);
	close(rfd);
	free(out);
	free(in);
}
END_TEST

/* A blocking read returns as soon as something arrived, with what arrived. */
START_TEST(blocking_read_returns_what_arrived)
{
	struct bg_read b;
	int rfd = open_data(_i, O_RDONLY), wfd = open_data(_i, O_WRONLY);

	bg_read_start(&b, rfd, 4096);
	ck_assert_int_eq(write(wfd, "abc", 3), 3);
	ck_assert_int_eq(bg_read_join(&b, 3000), 0);
	ck_assert_int_ge(b.ret, 1);
	ck_assert_int_le(b.ret, 3);
	ck_assert_mem_eq(b.buf, "abc", (size_t)b.ret);
	uint8_t rest[3];
	read_exact(rfd, rest, 3 - (size_t)b.ret);
	close(rfd);
	close(wfd);
}
END_TEST

START_TEST(nonblock_and_poll)
{
	int rfd = open_data(_i, O_RDONLY | O_NONBLOCK), wfd = open_data(_i, O_WRONLY);
	char c;

	ck_assert_int_eq(read(rfd, &c, 1), -1);
	ck_assert_int_eq(errno, EAGAIN);
	struct pollfd p[2] = {{.fd = rfd, .events = POLLIN}, {.fd = wfd, .events = POLLOUT}};
	ck_assert_int_eq(poll(p, 1, 0), 0);
	ck_assert_int_eq(poll(p + 1, 1, 2000), 1);
	ck_assert(p[1].revents & POLLOUT);
	ck_assert_int_eq(write(wfd, "z", 1), 1);
	ck_assert_int_eq(poll(p, 1, 3000), 1);
	ck_assert(p[0].revents & POLLIN);
	ck_assert_int_eq(read(rfd, &c, 1), 1);
	ck_assert_int_eq(c, 'z');
	ck_assert_int_eq(read(rfd, &c, 1), -1);
	ck_assert_int_eq(errno, EAGAIN);
	close(rfd);
	close(wfd);
}
END_TEST

static void assert_line(int i, const char *want)
{
	char buf[64], expect[64];
	ssize_t n = read_file(fpath(i, "line"), buf, sizeof(buf) - 1);

	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	snprintf(expect, sizeof(expect), "%s\n", want);
	ck_assert_str_eq(buf, expect);
}

static void assert_line_einval(int i, const char *text)
{
	ck_assert_msg(write_file(fpath(i, "line"), text) == -EINVAL, "%s: '%s' accepted", fns[i], text);
}

START_TEST(line_cdc)
{
	/* The Arduino firmware starts at rate 0: the driver set the tty default. */
	assert_line(0, "9600 8N1");
	ck_assert_int_eq(wait_log("acm: SET_LINE_CODING 9600 Bd, format 0, parity 0, 8 bits", 1000), 0);
	ck_assert_int_eq(write_file(fpath(0, "line"), "115200 7E1\n"), 0);
	ck_assert_int_eq(wait_log("acm: SET_LINE_CODING 115200 Bd, format 0, parity 2, 7 bits", 1000), 0);
	assert_line(0, "115200 7E1");
	ck_assert_int_eq(write_file(fpath(0, "line"), "300 5O1.5"), 0);
	ck_assert_int_eq(wait_log("acm: SET_LINE_CODING 300 Bd, format 1, parity 1, 5 bits", 1000), 0);
	assert_line(0, "300 5O1.5");
	/* The device refuses (stalls) more than 2 MBd. */
	assert_line_einval(0, "3000000 8N1");
	ck_assert_int_eq(wait_log("acm: SET_LINE_CODING refused (3000000 Bd)", 1000), 0);
	assert_line(0, "300 5O1.5");
	static const char *const bad[] = {"fast",     "115200", "115200 8N1 x", "9600 9N1",
					  "9600 8n1", "0 8N1",	"9600 8N1.5"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		assert_line_einval(0, bad[k]);
	assert_line(0, "300 5O1.5");
}
END_TEST

START_TEST(line_ftdi_real_rate)
{
	assert_line(1, "9600 8N1");
	ck_assert_int_eq(wait_log("ft232r: SET_BAUD_RATE 0x04138 = 9600 Bd", 1000), 0);
	/* 3 MHz / 115200 = 26.04: the chip gets divisor 26, 115384 Bd. */
	ck_assert_int_eq(write_file(fpath(1, "line"), "115200 8N1\n"), 0);
	ck_assert_int_eq(wait_log("ft232r: SET_BAUD_RATE 0x0001a = 115384 Bd", 1000), 0);
	assert_line(1, "115384 8N1");
	ck_assert_int_eq(write_file(fpath(1, "line"), "2000000 7O2"), 0);
	ck_assert_int_eq(wait_log("ft232r: SET_BAUD_RATE 0x00001 = 2000000 Bd", 1000), 0);
	ck_assert_int_eq(wait_log("ft232r: SET_DATA 0x1107", 1000), 0);
	assert_line(1, "2000000 7O2");
	ck_assert_int_eq(write_file(fpath(1, "line"), "57600 8E1"), 0);
	ck_assert_int_eq(wait_log("ft232r: SET_BAUD_RATE 0x0c034 = 57553 Bd", 1000), 0);
	assert_line(1, "57553 8E1");
	/* No divisor within 3%, below the slowest, or data bits the chip lacks. */
	assert_line_einval(1, "2500000 8N1");
	assert_line_einval(1, "100 8N1");
	assert_line_einval(1, "9600 6N1");
	assert_line_einval(1, "9600 5N1.5");
	assert_line(1, "57553 8E1");
}
END_TEST

static void assert_status(int i, const char *want)
{
	ck_assert_msg(wait_file_has(fpath(i, "status"), want, 3000) != NULL, "%s/status never showed '%s'",
		      fns[i], want);
}

/* DTR and RTS reach the device; the loopback plug brings them back as DSR, DCD (and CTS). */
START_TEST(ctl_modem_lines)
{
	assert_status(_i, "dtr on\nrts on\n");
	assert_status(_i, "dsr on\ndcd on\n");
	ck_assert_int_eq(ctl(_i, "dtr off"), 0);
	assert_status(_i, "dtr off\nrts on\n");
	assert_status(_i, "dsr off\ndcd off\n");
	ck_assert_int_eq(ctl(_i, "rts off"), 0);
	assert_status(_i, "dtr off\nrts off\n");
	ck_assert_int_eq(wait_log(_i == 0 ? "acm: SET_CONTROL_LINE_STATE dtr 0 rts 0"
					  : "ft232r: SET_MODEM_CTRL dtr 0 rts 0",
				  1000),
			 0);
	/* Only the FTDI reports CTS; CDC's SERIAL_STATE has no such bit. */
	assert_status(_i, _i == 1 ? "cts off\n" : "cts unknown\n");
	ck_assert_int_eq(ctl(_i, "rts on"), 0);
	ck_assert_int_eq(ctl(_i, "dtr on"), 0);
	assert_status(_i, "dsr on\ndcd on\n");
	if (_i == 1)
		assert_status(_i, "cts on\n");

	static const char *const bad[] = {"dtr",      "dtr maybe",   "rts on off", "break",	"break 0",
					  "break -5", "break 60001", "break 10ms", "break 1 2", "frobnicate"};
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
		ck_assert_msg(ctl(_i, bad[k]) == -EINVAL, "'%s' accepted", bad[k]);
}
END_TEST

START_TEST(ctl_break)
{
	/* The FTDI reports a received break in the status bytes of IN packets: read. */
	int rfd = open_data(_i, O_RDONLY);

	assert_status(_i, "breaks 0\n");
	ck_assert_int_eq(ctl(_i, "break 150"), 0);
	/* One break at a time. */
	ck_assert_int_eq(ctl(_i, "break 10"), -EBUSY);
	assert_status(_i, "breaks 1\n");
	if (_i == 0) {
		ck_assert_int_eq(wait_log("acm: SEND_BREAK 150 ms", 1000), 0);
	} else {
		ck_assert_int_eq(wait_log("ft232r: SET_DATA 0x4", 1000), 0); /* bit 14: break */
		/* At least the 150 ms asked; how much longer depends on the machine's load. */
		long long lasted = 0;
		ck_assert_int_eq(wait_log("ft232r: break lasted ", 2000), 0);
		ck_assert_int_eq(sscanf(log_at, "ft232r: break lasted %lld", &lasted), 1);
		ck_assert_int_ge(lasted, 150);
	}
	ck_assert_int_eq(wait_log("serial: line break", 1000), 0);
	/* Over: the next one is accepted. */
	uint64_t deadline = mono_ms() + 2000;
	int r;
	while ((r = ctl(_i, "break 1")) == -EBUSY && mono_ms() < deadline)
		usleep(5000);
	ck_assert_int_eq(r, 0);
	close(rfd);
}
END_TEST

/* Data that looks like status bytes, in every read size, while the modem lines change. */
START_TEST(ftdi_status_bytes_never_in_data)
{
	static const size_t sizes[] = {1, 2, 7, 61, 62, 63, 64, 65, 124, 500};
	const size_t len = 20000;
	uint8_t *out = malloc(len), *in = malloc(len);
	int rfd = open_data(1, O_RDONLY), wfd = open_data(1, O_WRONLY);

	ck_assert(out != NULL && in != NULL);
	/* 0x31 0x60 / 0x01 0x60 are what the chip's status bytes look like here. */
	for (size_t k = 0; k < len; k++)
		out[k] = (k % 3 == 0) ? 0x31 : (k % 3 == 1) ? 0x60 : (uint8_t)k;
	size_t sent = 0, got = 0, round = 0;
	while (got < len) {
		if (sent < len) {
			size_t n = len - sent < 3001 ? len - sent : 3001;
			ck_assert_int_eq(write(wfd, out + sent, n), (ssize_t)n);
			sent += n;
			/* Status-only packets come between the data ones. */
			ck_assert_int_eq(ctl(1, round % 2 ? "rts on" : "rts off"), 0);
		}
		while (got < sent) {
			size_t want = sizes[round++ % (sizeof(sizes) / sizeof(sizes[0]))];
			if (want > sent - got)
				want = sent - got;
			ssize_t r = read(rfd, in + got, want);
			ck_assert_int_gt(r, 0);
			got += (size_t)r;
		}
	}
	ck_assert_int_eq(memcmp(in, out, len), 0);
	/* Nothing more came: no stray status byte left over. */
	int fl = fcntl(rfd, F_GETFL);
	ck_assert_int_eq(fcntl(rfd, F_SETFL, fl | O_NONBLOCK), 0);
	char c;
	ck_assert_int_eq(read(rfd, &c, 1), -1);
	ck_assert_int_eq(errno, EAGAIN);
	close(rfd);
	close(wfd);
	free(out);
	free(in);
}
END_TEST

static int wait_blocked_in_write(pid_t tid, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;
	char path[64], buf[256];

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)tid);
	do {
		ssize_t n = read_file(path, buf, sizeof(buf) - 1);
		/* "1 ..." is write(2) on x86-64. */
		if (n > 2 && buf[0] == '1' && buf[1] == ' ')
			return 0;
		usleep(2000);
	} while (mono_ms() < deadline);
	return -1;
}

static void *big_write_main(void *arg)
{
	struct writer *w = arg;

	w->tid = gettid();
	w->ret = write(w->fd, w->data, w->len);
	w->err = w->ret < 0 ? errno : 0;
	return NULL;
}

/*
 * Nobody reads, so the adapter's 16 KiB loopback fills and it stops
 * taking the 128 KiB write: kill the driver under it.
 */
START_TEST(kill_during_write)
{
	const size_t len = 128 * 1024;
	uint8_t *buf = malloc(len);
	struct writer w = {0};
	pid_t pid = fn_pid(&m, fns[_i]);

	ck_assert(buf != NULL);
	memset(buf, 'x', len);
	w.fd = open_data(_i, O_WRONLY);
	w.data = buf;
	w.len = len;
	w.ret = -2;
	ck_assert_int_eq(pthread_create(&w.thread, NULL, big_write_main, &w), 0);
	while (w.tid == 0)
		usleep(1000);
	ck_assert_int_eq(wait_blocked_in_write(w.tid, 3000), 0);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	uint64_t t0 = mono_ms();
	ck_assert_int_eq(pthread_join(w.thread, NULL), 0);
	uint64_t took = mono_ms() - t0;
	ck_assert_int_eq(w.ret, -1);
	ck_assert_int_eq(w.err, EIO);
	/* Promptly: well before the 3000 ms request deadline. */
	ck_assert_msg(took < 1000, "EIO after %llu ms", (unsigned long long)took);
	close(w.fd);
	ck_assert_int_gt(wait_new_pid(&m, fns[_i], pid, 10000), 0);
	ck_assert_int_eq(wait_state(&m, fns[_i], "running", 5000), 0);

	/* A new open works: a marker goes out and comes back after what was stuck in the device. */
	int fd = open_data(_i, O_RDWR);
	ck_assert_int_eq(write(fd, "MARK", 4), 4);
	size_t got = 0;
	char tail[4] = {0};
	while (memcmp(tail, "MARK", 4) != 0) {
		ssize_t r = read(fd, buf, 4096);
		ck_assert_int_gt(r, 0);
		for (ssize_t k = 0; k < r; k++) {
			memmove(tail, tail + 1, 3);
			tail[3] = (char)buf[k];
		}
		got += (size_t)r;
		ck_assert_uint_le(got, 16 * 1024 + 4);
	}
	close(fd);
	free(buf);
}
END_TEST

/* What the README shows: send a command, read the answer with a timeout, from sh. */
START_TEST(shell_command_with_timeout)
{
	char cmd[512], out[64];
	const char *data = fpath(_i, "data");

	snprintf(cmd, sizeof(cmd), "/bin/sh -c \"printf 'AT\\r' > %s; timeout 2 head -c 3 %s\"", data, data);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	size_t n = fread(out, 1, sizeof(out), p);
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_mem_eq(out, "AT\r", 3);

	/* No answer: timeout ends the blocked read (the driver cancels it) and says so. */
	snprintf(cmd, sizeof(cmd), "timeout 0.5 head -c 1 %s", data);
	uint64_t t0 = mono_ms();
	int st = system(cmd);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 124);
	ck_assert_uint_lt(mono_ms() - t0, 2500);
	/* And the port still works. */
	snprintf(cmd, sizeof(cmd), "/bin/sh -c \"printf 'OK' > %s; timeout 2 head -c 2 %s\"", data, data);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	n = fread(out, 1, sizeof(out), p);
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_mem_eq(out, "OK", 2);
}
END_TEST

Suite *serial_suite(void)
{
	Suite *s = suite_create("serial");
	TCase *tc = tcase_create("serial");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, one_function_per_adapter);
	tcase_add_loop_test(tc, stream_1mib_random, 0, 2);
	tcase_add_loop_test(tc, blocking_read_returns_what_arrived, 0, 2);
	tcase_add_loop_test(tc, nonblock_and_poll, 0, 2);
	tcase_add_test(tc, line_cdc);
	tcase_add_test(tc, line_ftdi_real_rate);
	tcase_add_loop_test(tc, ctl_modem_lines, 0, 2);
	tcase_add_loop_test(tc, ctl_break, 0, 2);
	tcase_add_test(tc, ftdi_status_bytes_never_in_data);
	tcase_add_loop_test(tc, shell_command_with_timeout, 0, 2);
	tcase_add_loop_test(tc, kill_during_write, 0, 2);
	suite_add_tcase(s, tc);
	return s;
}
