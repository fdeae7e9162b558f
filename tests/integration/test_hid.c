/*
 * The hid driver over the emulated HID models (tests/emu/model_hid.c):
 * hid0 = thermo (numbered input report 1 and feature report 2), hid1 =
 * keypad (unnumbered boot keyboard, LED output by SET_REPORT), hid2 =
 * keypad-out (the same with an interrupt OUT endpoint; its SET_REPORT
 * stalls).  The thermometer's readings carry a sequence number and the
 * interval in force, so ordering, drops and the feature round trip are
 * checked from the data, never from timing.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

static struct mnt m;

/* The thermo model's report descriptor, as the device sends it. */
static const unsigned char thermo_rdesc[] = {
    0x06, 0x00, 0xff, 0x09, 0x01, 0xa1, 0x01, 0x85, 0x01, 0x09, 0x02, 0x15, 0x00, 0x26,
    0xff, 0x00, 0x75, 0x08, 0x95, 0x08, 0x81, 0x02, 0x85, 0x02, 0x09, 0x03, 0xa4, 0x27,
    0x60, 0xea, 0x00, 0x00, 0x75, 0x10, 0x95, 0x01, 0xb1, 0x02, 0xb4, 0xc0,
};

#define KEYPAD_RDESC_LEN 63 /* the HID 1.11 boot keyboard's */
#define READING_LEN	 9  /* ID, seq u32, centi-degC s16, interval u16 */

struct reading {
	uint32_t seq;
	int16_t centi;
	uint16_t interval;
};

static void setup_all(void)
{
	static const char *const models[] = {"thermo", "keypad", "keypad-out", NULL};
	ck_assert_int_eq(mnt_start(&m, models, "timeout=3000", 3), 0);
}

static void setup_thermo(void)
{
	static const char *const models[] = {"thermo", NULL};
	ck_assert_int_eq(mnt_start(&m, models, "timeout=3000", 1), 0);
}

static void teardown(void)
{
	mnt_stop(&m);
}

static int open_in(const char *rel, int flags)
{
	int fd = open(mpath(&m, rel), flags);

	ck_assert_msg(fd >= 0, "open %s: %s", rel, strerror(errno));
	return fd;
}

static struct reading parse_reading(const unsigned char *b, ssize_t n)
{
	ck_assert_int_eq(n, READING_LEN);
	ck_assert_int_eq(b[0], 1); /* the report ID comes first */
	return (struct reading){
	    .seq = (uint32_t)b[1] | (uint32_t)b[2] << 8 | (uint32_t)b[3] << 16 | (uint32_t)b[4] << 24,
	    .centi = (int16_t)(b[5] | b[6] << 8),
	    .interval = (uint16_t)(b[7] | b[8] << 8),
	};
}

/* One blocking read of the thermometer's input. */
static struct reading read_reading(int fd)
{
	unsigned char b[64];
	ssize_t n = read(fd, b, sizeof(b));

	ck_assert_msg(n >= 0, "read input: %s", strerror(errno));
	return parse_reading(b, n);
}

static void set_interval(unsigned ms)
{
	unsigned char f[3] = {2, (unsigned char)ms, (unsigned char)(ms >> 8)};
	int fd = open_in("hid0/feature-2", O_WRONLY);

	ck_assert_int_eq(write(fd, f, sizeof(f)), 3);
	close(fd);
}

static unsigned get_interval(void)
{
	unsigned char f[16];
	ssize_t n = read_file(mpath(&m, "hid0/feature-2"), (char *)f, sizeof(f));

	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(f[0], 2);
	return f[1] | f[2] << 8;
}

/* Reads until the queue is empty (EAGAIN) on a non-blocking handle; returns how many came. */
static int drain(int fd)
{
	unsigned char b[64];
	int n = 0;

	for (;;) {
		ssize_t r = read(fd, b, sizeof(b));
		if (r < 0) {
			ck_assert_int_eq(errno, EAGAIN);
			return n;
		}
		ck_assert_int_lt(++n, 1000);
	}
}

START_TEST(report_descriptor_exact)
{
	unsigned char buf[256];
	struct stat st;

	ck_assert_int_eq(stat(mpath(&m, "hid0/report_descriptor"), &st), 0);
	ck_assert_int_eq(st.st_size, sizeof(thermo_rdesc));
	ck_assert_int_eq(st.st_mode & 0777, 0444);
	ssize_t n = read_file(mpath(&m, "hid0/report_descriptor"), (char *)buf, sizeof(buf));
	ck_assert_int_eq(n, sizeof(thermo_rdesc));
	ck_assert_mem_eq(buf, thermo_rdesc, sizeof(thermo_rdesc));
	/* A piece from the middle, as dd skip= reads it. */
	int fd = open_in("hid0/report_descriptor", O_RDONLY);
	ck_assert_int_eq(pread(fd, buf, 4, 7), 4);
	ck_assert_mem_eq(buf, thermo_rdesc + 7, 4);
	ck_assert_int_eq(pread(fd, buf, 4, sizeof(thermo_rdesc)), 0);
	close(fd);

	ck_assert_int_eq(stat(mpath(&m, "hid1/report_descriptor"), &st), 0);
	ck_assert_int_eq(st.st_size, KEYPAD_RDESC_LEN);
	n = read_file(mpath(&m, "hid1/report_descriptor"), (char *)buf, sizeof(buf));
	ck_assert_int_eq(n, KEYPAD_RDESC_LEN);
	/* Usage Page (Generic Desktop), Usage (Keyboard) ... End Collection. */
	ck_assert_int_eq(buf[0], 0x05);
	ck_assert_int_eq(buf[3], 0x06);
	ck_assert_int_eq(buf[KEYPAD_RDESC_LEN - 1], 0xc0);
}
END_TEST

/* The files follow the descriptor: a feature file per feature report, output only with output reports. */
START_TEST(files_follow_descriptor)
{
	struct stat st;

	ck_assert_str_eq(read_line(mpath(&m, "hid0/driver")), "hid");
	ck_assert_int_eq(stat(mpath(&m, "hid0/feature-2"), &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0666);
	ck_assert_int_eq(stat(mpath(&m, "hid0/input"), &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0444);
	ck_assert_int_eq(st.st_size, 0);
	ck_assert_int_eq(stat(mpath(&m, "hid0/output"), &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(stat(mpath(&m, "hid0/feature-1"), &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(stat(mpath(&m, "hid1/output"), &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0222);
	ck_assert_int_eq(stat(mpath(&m, "hid1/feature-0"), &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	/* input is a stream. */
	int fd = open_in("hid0/input", O_RDONLY | O_NONBLOCK);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), -1);
	ck_assert_int_eq(errno, ESPIPE);
	close(fd);
}
END_TEST

START_TEST(numbered_input_one_report_per_read)
{
	set_interval(20);
	int fd = open_in("hid0/input", O_RDONLY);
	struct reading a = read_reading(fd);
	for (int i = 1; i <= 5; i++) {
		struct reading b = read_reading(fd);
		ck_assert_uint_eq(b.seq, a.seq + (uint32_t)i);
		ck_assert_int_ge(b.centi, 2000);
		ck_assert_int_le(b.centi, 2300);
	}
	close(fd);
}
END_TEST

START_TEST(unnumbered_input_one_report_per_read)
{
	unsigned char b[64];
	int fd = open_in("hid1/input", O_RDONLY);

	ck_assert_int_eq(read(fd, b, sizeof(b)), 8);
	unsigned seq = b[3];
	for (int i = 1; i <= 5; i++) {
		ck_assert_int_eq(read(fd, b, sizeof(b)), 8);
		/* No ID byte: the key usage is at byte 2, the model's counter at 3. */
		ck_assert_int_eq(b[0], 0);
		ck_assert_int_ge(b[2], 0x04);
		ck_assert_int_le(b[2], 0x1d);
		ck_assert_int_eq(b[3], (unsigned char)(seq + (unsigned)i));
	}
	close(fd);
}
END_TEST

/* hidraw: a buffer shorter than the report gets its start, and the rest is gone. */
START_TEST(short_buffer_truncates)
{
	unsigned char b[64];

	set_interval(20);
	int fd = open_in("hid0/input", O_RDONLY);
	ck_assert_int_eq(read(fd, b, 3), 3);
	ck_assert_int_eq(b[0], 1);
	uint32_t low = b[1] | (uint32_t)b[2] << 8;
	struct reading next = read_reading(fd);
	ck_assert_uint_eq(next.seq & 0xffff, (low + 1) & 0xffff);
	close(fd);
}
END_TEST

/* Reports queue from open: a handle that does not read still gets all of them, in order. */
START_TEST(reports_queue_from_open)
{
	set_interval(20);
	int idle = open_in("hid0/input", O_RDONLY | O_NONBLOCK);
	int busy = open_in("hid0/input", O_RDONLY);
	struct reading first = read_reading(busy), last = first;
	for (int i = 0; i < 5; i++)
		last = read_reading(busy);
	/* The idle handle holds everything since it opened, which was before `busy` did. */
	struct pollfd p = {.fd = idle, .events = POLLIN};
	ck_assert_int_eq(poll(&p, 1, 0), 1);
	unsigned char b[64];
	struct reading r = parse_reading(b, read(idle, b, sizeof(b)));
	ck_assert_uint_le(r.seq, first.seq);
	while (r.seq < last.seq) {
		struct reading n = parse_reading(b, read(idle, b, sizeof(b)));
		ck_assert_uint_eq(n.seq, r.seq + 1);
		r = n;
	}
	close(idle);
	close(busy);
}
END_TEST

/* A full queue (64 reports) drops the oldest: the idle reader sees the newest, in order. */
START_TEST(queue_overflow_drops_oldest)
{
	unsigned char b[64];

	set_interval(5);
	int idle = open_in("hid0/input", O_RDONLY | O_NONBLOCK);
	int busy = open_in("hid0/input", O_RDONLY);
	struct reading first = read_reading(busy), r = first;
	while (r.seq < first.seq + 100)
		r = read_reading(busy);
	/*
	 * Dropping the oldest keeps the queue a run of the latest reports; but
	 * while it is read, two reports between two reads would drop one more
	 * from its front.  Slow the sensor down before reading it.
	 */
	set_interval(10000);
	struct reading oldest = parse_reading(b, read(idle, b, sizeof(b)));
	/* Without drops the idle handle would start at or before `first`. */
	ck_assert_uint_ge(oldest.seq, first.seq + 100 - 63);
	struct reading prev = oldest;
	for (int i = 1; i < 64; i++) {
		struct reading n = parse_reading(b, read(idle, b, sizeof(b)));
		ck_assert_uint_eq(n.seq, prev.seq + 1);
		prev = n;
	}
	close(idle);
	close(busy);
	set_interval(100);
	ck_assert_ptr_nonnull(wait_file_has(m.log, "queue is full", 5000));
}
END_TEST

START_TEST(nonblocking_read_and_poll)
{
	unsigned char b[64];

	set_interval(500);
	int fd = open_in("hid0/input", O_RDONLY | O_NONBLOCK);
	struct pollfd p = {.fd = fd, .events = POLLIN};
	/* The first report comes at once or within the interval; the next one is 500 ms after it. */
	ck_assert_int_eq(poll(&p, 1, 5000), 1);
	ck_assert_int_ge(drain(fd), 1);
	ck_assert_int_eq(read(fd, b, sizeof(b)), -1);
	ck_assert_int_eq(errno, EAGAIN);
	/* The next report wakes the poller. */
	ck_assert_int_eq(poll(&p, 1, 0), 0);
	ck_assert_int_eq(poll(&p, 1, 5000), 1);
	ck_assert(p.revents & POLLIN);
	struct reading r = parse_reading(b, read(fd, b, sizeof(b)));
	ck_assert_uint_eq(r.interval, 500);
	ck_assert_int_eq(read(fd, b, sizeof(b)), -1);
	ck_assert_int_eq(errno, EAGAIN);
	close(fd);
	set_interval(100);
}
END_TEST

/* feature-2 is the sampling interval: GET_REPORT reads it, SET_REPORT changes what the readings say. */
START_TEST(feature_round_trip)
{
	unsigned char f[3];

	set_interval(100);
	ck_assert_uint_eq(get_interval(), 100);
	set_interval(30);
	ck_assert_uint_eq(get_interval(), 30);
	int fd = open_in("hid0/input", O_RDONLY);
	ck_assert_uint_eq(read_reading(fd).interval, 30);
	ck_assert_uint_eq(read_reading(fd).interval, 30);
	close(fd);
	/* Wrong length or ID: EINVAL before the device sees it; a value the device refuses: its stall. */
	int w = open_in("hid0/feature-2", O_WRONLY);
	f[0] = 2;
	f[1] = 10;
	f[2] = 0;
	ck_assert_int_eq(write(w, f, 2), -1);
	ck_assert_int_eq(errno, EINVAL);
	f[0] = 3;
	ck_assert_int_eq(write(w, f, 3), -1);
	ck_assert_int_eq(errno, EINVAL);
	f[0] = 2;
	f[1] = 0;
	ck_assert_int_eq(write(w, f, 3), -1);
	ck_assert_int_eq(errno, EPIPE);
	close(w);
	ck_assert_uint_eq(get_interval(), 30);
	set_interval(100);
}
END_TEST

/* Reads the keypad's input until the LED byte shows `leds`; 0, or -1 after 100 reports. */
static int wait_leds(const char *rel, unsigned char leds)
{
	unsigned char b[64];
	int fd = open_in(rel, O_RDONLY);

	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(read(fd, b, sizeof(b)), 8);
		if (b[1] == leds) {
			close(fd);
			return 0;
		}
	}
	close(fd);
	return -1;
}

START_TEST(output_by_set_report)
{
	unsigned char leds[2] = {0x05, 0x00};
	int fd = open_in("hid1/output", O_WRONLY);

	ck_assert_int_eq(write(fd, leds, 1), 1);
	ck_assert_int_eq(wait_leds("hid1/input", 0x05), 0);
	leds[0] = 0x02;
	ck_assert_int_eq(write(fd, leds, 1), 1);
	ck_assert_int_eq(wait_leds("hid1/input", 0x02), 0);
	/* Longer than the 1-byte LED report. */
	ck_assert_int_eq(write(fd, leds, 2), -1);
	ck_assert_int_eq(errno, EINVAL);
	close(fd);
}
END_TEST

/* keypad-out stalls SET_REPORT: an LED change that shows went through interrupt OUT. */
START_TEST(output_by_interrupt_out)
{
	unsigned char leds[2] = {0x03, 0x00};
	int fd = open_in("hid2/output", O_WRONLY);

	ck_assert_int_eq(write(fd, leds, 1), 1);
	ck_assert_int_eq(wait_leds("hid2/input", 0x03), 0);
	ck_assert_int_eq(write(fd, leds, 2), -1);
	ck_assert_int_eq(errno, EINVAL);
	close(fd);
}
END_TEST

/* The README's loop: each dd opens input, takes one whole report, closes. */
START_TEST(shell_loop_reads_sensor)
{
	char cmd[512];
	unsigned char out[256];

	set_interval(20);
	snprintf(cmd, sizeof(cmd),
		 "cd %s && for i in 1 2 3; do dd if=hid0/input bs=64 count=1 status=none || exit 1; done",
		 m.path);
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	size_t n = fread(out, 1, sizeof(out), p);
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_uint_eq(n, 3 * READING_LEN);
	struct reading a = parse_reading(out, READING_LEN);
	struct reading b = parse_reading(out + READING_LEN, READING_LEN);
	struct reading c = parse_reading(out + 2 * READING_LEN, READING_LEN);
	ck_assert_uint_gt(b.seq, a.seq);
	ck_assert_uint_gt(c.seq, b.seq);
	ck_assert_uint_eq(c.interval, 20);
	set_interval(100);
}
END_TEST

struct blocked_read {
	int fd;
	ssize_t ret;
	int err;
	pid_t tid;
	volatile int started;
	unsigned char buf[64];
};

static void *blocked_read_main(void *arg)
{
	struct blocked_read *b = arg;

	b->tid = gettid();
	b->started = 1;
	b->ret = read(b->fd, b->buf, sizeof(b->buf));
	b->err = b->ret < 0 ? errno : 0;
	return NULL;
}

/*
 * Starts a read of `fd` in a thread once the handle's queue is empty, and
 * returns when it sleeps in read(2).  A report may still be on its way
 * when the queue looks empty; then the read returns it and we go again.
 */
static void start_blocked_read(struct blocked_read *b, pthread_t *thread, int fd)
{
	for (int attempt = 0;; attempt++) {
		ck_assert_int_lt(attempt, 5);
		ck_assert_int_eq(fcntl(fd, F_SETFL, O_NONBLOCK), 0);
		drain(fd);
		ck_assert_int_eq(fcntl(fd, F_SETFL, 0), 0);
		*b = (struct blocked_read){.fd = fd, .ret = -2};
		ck_assert_int_eq(pthread_create(thread, NULL, blocked_read_main, b), 0);
		uint64_t deadline = mono_ms() + 5000;
		while (!b->started && mono_ms() < deadline)
			poll(NULL, 0, 1);
		if (wait_blocked_in_read(b->tid, 2000) == 0)
			return;
		ck_assert_int_eq(pthread_join(*thread, NULL), 0);
		ck_assert_int_eq(b->ret, READING_LEN);
	}
}

static void on_sigint(int sig)
{
	(void)sig;
}

/* A signal frees a reader blocked on input with EINTR (no deadline would have). */
START_TEST(signal_interrupts_blocked_read)
{
	int pipefd[2];

	set_interval(60000);
	ck_assert_int_eq(pipe(pipefd), 0);
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		/* No SA_RESTART: the interrupted read returns EINTR. */
		struct sigaction sa = {.sa_handler = on_sigint};
		unsigned char b[64];
		ssize_t r;
		sigaction(SIGINT, &sa, NULL);
		int fd = open(mpath(&m, "hid0/input"), O_RDONLY | O_NONBLOCK);
		if (fd < 0)
			_exit(2);
		/* Empty the queue, then block; a report that was on its way just means another round. */
		do {
			while (read(fd, b, sizeof(b)) > 0)
				;
			fcntl(fd, F_SETFL, 0);
			r = read(fd, b, sizeof(b));
			fcntl(fd, F_SETFL, O_NONBLOCK);
		} while (r > 0);
		int err = errno;
		if (write(pipefd[1], &err, sizeof(err)) < 0)
			_exit(4);
		_exit(r == -1 ? 0 : 3);
	}
	ck_assert_int_eq(wait_blocked_in_read(child, 5000), 0);
	/*
	 * The child may also be caught waiting in one of its non-blocking
	 * reads (a FUSE round trip sleeps too); a signal there only ends the
	 * drain.  So signal until the blocking read has given EINTR.
	 */
	int st, err = 0;
	pid_t w = 0;
	uint64_t deadline = mono_ms() + 5000;
	while (w == 0 && mono_ms() < deadline) {
		ck_assert_int_eq(kill(child, SIGINT), 0);
		for (int i = 0; i < 10 && (w = waitpid(child, &st, WNOHANG)) == 0; i++)
			poll(NULL, 0, 10);
	}
	ck_assert_int_eq(w, child);
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	ck_assert_int_eq(read(pipefd[0], &err, sizeof(err)), (ssize_t)sizeof(err));
	ck_assert_int_eq(err, EINTR);
	close(pipefd[0]);
	close(pipefd[1]);
	ck_assert_str_eq(read_line(mpath(&m, "hid0/state")), "running");
	ck_assert_str_eq(read_line(mpath(&m, "hid0/restarts")), "0");
}
END_TEST

/* SIGKILL while `cat input` is blocked: the reader gets EIO at once, a new open after the respawn works. */
START_TEST(kill_during_blocked_read)
{
	struct blocked_read b;
	pthread_t thread;
	pid_t pid = fn_pid(&m, "hid0");

	ck_assert_int_gt(pid, 0);
	/* A minute between reports: once the queue is empty, a read blocks. */
	set_interval(60000);
	int fd = open_in("hid0/input", O_RDONLY);
	start_blocked_read(&b, &thread, fd);
	uint64_t t0 = mono_ms();
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 3;
	ck_assert_int_eq(pthread_timedjoin_np(thread, NULL, &ts), 0);
	uint64_t took = mono_ms() - t0;
	ck_assert_int_eq(b.ret, -1);
	ck_assert_int_eq(b.err, EIO);
	printf("hid: blocked input read failed %llu ms after SIGKILL\n", (unsigned long long)took);
	ck_assert_int_eq(wait_event(&m, "hid0 crash", "SIGKILL", 5000), 0);
	ck_assert_int_gt(wait_new_pid(&m, "hid0", pid, 10000), 0);
	ck_assert_int_eq(wait_state(&m, "hid0", "running", 10000), 0);
	/* The old handle stays dead... */
	unsigned char c[64];
	ck_assert_int_eq(read(fd, c, sizeof(c)), -1);
	ck_assert_int_eq(errno, EIO);
	close(fd);
	/* ...and a new one works (the model still has the long interval: ask for a faster one). */
	set_interval(10);
	fd = open_in("hid0/input", O_RDONLY);
	struct reading r = read_reading(fd);
	ck_assert_uint_eq(r.interval, 10);
	close(fd);
}
END_TEST

Suite *hid_suite(void)
{
	Suite *s = suite_create("hid");
	TCase *tc = tcase_create("models");

	tcase_add_unchecked_fixture(tc, setup_all, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, report_descriptor_exact);
	tcase_add_test(tc, files_follow_descriptor);
	tcase_add_test(tc, numbered_input_one_report_per_read);
	tcase_add_test(tc, unnumbered_input_one_report_per_read);
	tcase_add_test(tc, short_buffer_truncates);
	tcase_add_test(tc, reports_queue_from_open);
	tcase_add_test(tc, queue_overflow_drops_oldest);
	tcase_add_test(tc, nonblocking_read_and_poll);
	tcase_add_test(tc, feature_round_trip);
	tcase_add_test(tc, output_by_set_report);
	tcase_add_test(tc, output_by_interrupt_out);
	tcase_add_test(tc, shell_loop_reads_sensor);
	suite_add_tcase(s, tc);

	tc = tcase_create("crash");
	tcase_add_unchecked_fixture(tc, setup_thermo, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, signal_interrupts_blocked_read);
	tcase_add_test(tc, kill_during_blocked_read);
	suite_add_tcase(s, tc);
	return s;
}
