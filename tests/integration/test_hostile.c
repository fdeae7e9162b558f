/*
 * The daemon never trusts a driver.  Two loopback devices; usb1's driver
 * host is switched to plugfs-evil-driver (tests/evil), which breaks the
 * protocol in one way per test case, while a reader does round trips on
 * usb0 the whole time.  A violation is a crash: the event says why, the
 * driver is respawned per policy and fails after restart_max, the good
 * device never sees an error, and nothing leaks (fds, children).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

static struct mnt m;
static char conf[64], evil_log[64];

static void setup_opts(const char *opts)
{
	static const char *const models[] = {"loopback", "loopback", NULL};
	char host[512];

	snprintf(conf, sizeof(conf), "/tmp/plugfs-evil-conf.XXXXXX");
	snprintf(evil_log, sizeof(evil_log), "/tmp/plugfs-evil-log.XXXXXX");
	int a = mkstemp(conf), b = mkstemp(evil_log);
	ck_assert_int_ge(a, 0);
	ck_assert_int_ge(b, 0);
	close(a);
	close(b);
	/* Inherited by plugfs-emu, plugfs and every driver host it starts. */
	setenv("PLUGFS_TEST_EVIL_CONF", conf, 1);
	setenv("PLUGFS_TEST_EVIL_LOG", evil_log, 1);
	snprintf(host, sizeof(host), "%s/plugfs-evil-driver", build_dir());
	ck_assert_int_eq(mnt_start_with_driver(&m, models, opts, 2, host), 0);
}

static void setup(void)
{
	setup_opts("timeout=1000,restart_max=2,restart_window=60,backoff_min=1,backoff_max=1");
}

static void teardown(void)
{
	mnt_stop(&m);
	unlink(conf);
	unlink(evil_log);
	unsetenv("PLUGFS_TEST_EVIL_CONF");
	unsetenv("PLUGFS_TEST_EVIL_LOG");
}

/* ---- The good neighbour: round trips on usb0 until told to stop ---- */

struct reader {
	pthread_t thread;
	volatile int stop;
	unsigned ok;
	int err;       /* first errno seen, 0 if none */
	char what[64]; /* and what failed */
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	int w = open(mpath(&m, "usb0/ep02"), O_WRONLY), rd = open(mpath(&m, "usb0/ep81"), O_RDONLY);

	if (w < 0 || rd < 0) {
		r->err = errno;
		snprintf(r->what, sizeof(r->what), "open");
		goto out;
	}
	while (!r->stop) {
		char out[32], in[32];
		int n = snprintf(out, sizeof(out), "round %u", r->ok);
		if (write(w, out, (size_t)n) != n) {
			r->err = errno;
			snprintf(r->what, sizeof(r->what), "write %u", r->ok);
			break;
		}
		if (read(rd, in, sizeof(in)) != n || memcmp(in, out, (size_t)n) != 0) {
			r->err = errno ? errno : EBADMSG;
			snprintf(r->what, sizeof(r->what), "read %u", r->ok);
			break;
		}
		r->ok++;
	}
out:
	if (w >= 0)
		close(w);
	if (rd >= 0)
		close(rd);
	return NULL;
}

static void reader_start(struct reader *r)
{
	memset(r, 0, sizeof(*r));
	ck_assert_int_eq(pthread_create(&r->thread, NULL, reader_main, r), 0);
}

static void reader_stop(struct reader *r, unsigned min_rounds)
{
	/* Let it show it is alive before stopping it. */
	uint64_t deadline = mono_ms() + 5000;
	while (r->ok < min_rounds && r->err == 0 && mono_ms() < deadline)
		usleep(1000);
	r->stop = 1;
	pthread_join(r->thread, NULL);
	ck_assert_msg(r->err == 0, "usb0 failed during the attack: %s: %s", r->what, strerror(r->err));
	ck_assert_uint_ge(r->ok, min_rounds);
}

/* ---- Turning usb1 evil ---- */

/* The devnode usb1's driver serves, from the evil host's log. */
static void devnode_of(const char *fn, char *out, size_t cap)
{
	pid_t pid = fn_pid(&m, fn);
	char line[300];
	FILE *f = fopen(evil_log, "r");

	ck_assert_int_gt(pid, 0);
	ck_assert_ptr_nonnull(f);
	out[0] = '\0';
	while (fgets(line, sizeof(line), f) != NULL) {
		int p;
		char node[256];
		if (sscanf(line, "%d %255s", &p, node) == 2 && p == pid)
			snprintf(out, cap, "%s", node);
	}
	fclose(f);
	ck_assert_msg(out[0] != '\0', "no devnode logged for %s (pid %d)", fn, (int)pid);
}

static void set_mode(const char *devnode, const char *mode)
{
	char tmp[80];
	snprintf(tmp, sizeof(tmp), "%s.new", conf);
	FILE *f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	if (mode != NULL)
		fprintf(f, "%s %s\n", devnode, mode);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(rename(tmp, conf), 0);
}

struct attack {
	char devnode[256];
	pid_t daemon;
	int fds;
	struct reader reader;
};

static void attack_start(struct attack *a, const char *mode)
{
	a->daemon = daemon_pid(&m);
	ck_assert_int_gt(a->daemon, 0);
	/* The spare driver host's socket is among the daemon's fds at every count. */
	ck_assert_int_gt(wait_spare(a->daemon, 0, 5000), 0);
	a->fds = count_fds(a->daemon);
	ck_assert_int_gt(a->fds, 0);
	ck_assert_int_eq(count_driver_processes(a->daemon), 2);
	devnode_of("usb1", a->devnode, sizeof(a->devnode));
	reader_start(&a->reader);
	set_mode(a->devnode, mode);
	ck_assert_int_eq(write_file(mpath(&m, "usb1/ctl"), "restart\n"), 0);
}

/* usb1 failed for good: nothing of its drivers is left, usb0 was served all along; then usb1 heals. */
static void attack_end(struct attack *a, unsigned crashes)
{
	char n[32];
	ck_assert_int_eq(wait_state(&m, "usb1", "failed", 20000), 0);
	snprintf(n, sizeof(n), "%u crashes", crashes);
	ck_assert_int_eq(wait_event(&m, "usb1 failed", n, 1000), 0);
	reader_stop(&a->reader, 20);
	ck_assert_int_gt(wait_spare(a->daemon, 0, 5000), 0);
	ck_assert_int_eq(count_zombies(a->daemon), 0);
	ck_assert_int_eq(count_driver_processes(a->daemon), 1);
	/* The failed driver's socket is closed, nothing else is left open. */
	ck_assert_int_eq(count_fds(a->daemon), a->fds - 1);
	ck_assert_str_eq(read_line(mpath(&m, "usb0/state")), "running");
	ck_assert_str_eq(read_line(mpath(&m, "usb0/restarts")), "0");

	/* A good host again: the device works, and the daemon is whole. */
	set_mode(a->devnode, NULL);
	ck_assert_int_eq(write_file(mpath(&m, "usb1/ctl"), "restart\n"), 0);
	ck_assert_int_gt(wait_new_pid(&m, "usb1", 0, 10000), 0);
	assert_loopback_works(&m, "usb1");
	assert_loopback_works(&m, "usb0");
	ck_assert_int_gt(wait_spare(a->daemon, 0, 5000), 0);
	ck_assert_int_eq(count_fds(a->daemon), a->fds);
	ck_assert_int_eq(count_driver_processes(a->daemon), 2);
}

/* Waits for an event; if it does not come, shows the events that did. */
static int wait_event_or_dump(const char *a, const char *b, int ms)
{
	static char buf[16384];
	if (wait_event(&m, a, b, ms) == 0)
		return 0;
	ssize_t n = read_file(mpath(&m, "events"), buf, sizeof(buf) - 1);
	if (n > 0) {
		buf[n] = '\0';
		fprintf(stderr, "events:\n%s", buf);
	}
	return -1;
}

/* Lines of the mount's log containing s. */
static unsigned log_lines_with(const char *s)
{
	char line[1024];
	unsigned n = 0;
	FILE *f = fopen(m.log, "r");

	ck_assert_ptr_nonnull(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, s) != NULL)
			n++;
	fclose(f);
	return n;
}

/* One protocol violation, three times (restart_max=2): each a crash with the reason. */
static void violation(const char *mode, const char *reason)
{
	struct attack a;

	attack_start(&a, mode);
	ck_assert_int_eq(wait_event_or_dump("usb1 crash protocol error", reason, 10000), 0);
	attack_end(&a, 3);
	/* Three violations, three crashes: the ctl restart that let the evil host in was not one. */
	ck_assert_uint_eq(log_lines_with("usb1 crash protocol error"), 3);
}

START_TEST(garbage)
{
	violation("garbage", "unknown message type");
}
END_TEST

START_TEST(oversized)
{
	violation("oversized", "protocol error: message of 135208 bytes");
}
END_TEST

START_TEST(truncated)
{
	violation("truncated", "length field does not match the message");
}
END_TEST

START_TEST(bad_hello)
{
	violation("bad-hello", "HELLO: truncated file entry");
}
END_TEST

START_TEST(reply_before_hello)
{
	violation("before-hello", "REPLY before HELLO");
}
END_TEST

START_TEST(hello_twice)
{
	violation("hello-twice", "HELLO when already running");
}
END_TEST

START_TEST(unknown_reply)
{
	violation("unknown-reply", "reply to unknown request 2147483647");
}
END_TEST

START_TEST(duplicated_reply)
{
	/* Its first request is the heartbeat's PING: answered twice. */
	violation("dup-reply", "reply to unknown request");
}
END_TEST

START_TEST(wrong_direction)
{
	violation("wrong-direction", "READ is not a driver message");
}
END_TEST

/*
 * Replies through the shared buffer (common/proto.h) that point outside it,
 * or into another request's slot.  A reader keeps asking usb1/ep81 for
 * 8 KiB (enough for a slot) until the driver has failed for good; it only
 * ever gets an error, never bytes from wherever the offset pointed.
 */
static void shm_violation(const char *mode, const char *reason)
{
	struct attack a;
	char buf[8192];
	uint64_t deadline;

	attack_start(&a, mode);
	deadline = mono_ms() + 20000;
	while (strcmp(read_line(mpath(&m, "usb1/state")), "failed") != 0 && mono_ms() < deadline) {
		int fd = open(mpath(&m, "usb1/ep81"), O_RDONLY);
		if (fd >= 0) {
			ssize_t n = read(fd, buf, sizeof(buf));
			ck_assert_msg(n < 0, "read %zd bytes from a driver that lied about them", n);
			close(fd);
		} else {
			/* Between two instances: wait for the next one without spinning. */
			wait_state(&m, "usb1", "running", 100);
		}
	}
	ck_assert_int_eq(wait_event_or_dump("usb1 crash protocol error", reason, 1000), 0);
	attack_end(&a, 3);
	ck_assert_uint_eq(log_lines_with("usb1 crash protocol error"), 3);
}

START_TEST(shm_outside)
{
	shm_violation("shm-outside", "shared-buffer reply outside the buffer");
}
END_TEST

START_TEST(shm_foreign)
{
	shm_violation("shm-foreign", "outside its slot");
}
END_TEST

/*
 * Floods of unsolicited messages: beyond 10000 a second the driver is
 * killed; before that, its LOG lines past 50 a second are dropped, so the
 * log holds at most 50 per instance (three instances here).
 */
START_TEST(log_flood)
{
	violation("log-flood", "flood of more than 10000 LOG/POLL_READY messages in 1 s");
	unsigned n = log_lines_with("a driver that will not stop talking");
	ck_assert_uint_gt(n, 0);
	ck_assert_uint_le(n, 3 * 50);
}
END_TEST

START_TEST(poll_ready_flood)
{
	violation("poll-ready-flood", "flood of more than 10000 LOG/POLL_READY messages in 1 s");
}
END_TEST

/*
 * A driver that never reads its socket.  What the daemon sends it is
 * bounded by the requests in flight (the kernel sends one direct write
 * per file at a time, every other message is 40 bytes), and what it queues
 * by OUTQ_LIMIT; what finds the driver out is the heartbeat: its PING is
 * never answered.  A user's open meanwhile times out instead of hanging.
 */
START_TEST(never_reads)
{
	struct attack a;

	attack_start(&a, "mute");
	pid_t pid = wait_new_pid(&m, "usb1", 0, 10000);
	ck_assert_int_gt(pid, 0);
	int fd = open(mpath(&m, "usb1/ep02"), O_WRONLY);
	ck_assert_int_eq(fd, -1);
	/* ETIMEDOUT at timeout=1000, or EIO if the heartbeat killed it first. */
	ck_assert_msg(errno == ETIMEDOUT || errno == EIO, "open: %s", strerror(errno));
	ck_assert_int_eq(wait_event_or_dump("usb1 timeout heartbeat lost", NULL, 5000), 0);
	attack_end(&a, 3);
}
END_TEST

Suite *hostile_suite(void)
{
	Suite *s = suite_create("hostile");

	suite_add_one(s, "garbage", setup, teardown, 60, garbage);
	suite_add_one(s, "oversized", setup, teardown, 60, oversized);
	suite_add_one(s, "truncated", setup, teardown, 60, truncated);
	suite_add_one(s, "bad_hello", setup, teardown, 60, bad_hello);
	suite_add_one(s, "reply_before_hello", setup, teardown, 60, reply_before_hello);
	suite_add_one(s, "hello_twice", setup, teardown, 60, hello_twice);
	suite_add_one(s, "unknown_reply", setup, teardown, 60, unknown_reply);
	suite_add_one(s, "duplicated_reply", setup, teardown, 60, duplicated_reply);
	suite_add_one(s, "wrong_direction", setup, teardown, 60, wrong_direction);
	suite_add_one(s, "never_reads", setup, teardown, 60, never_reads);
	suite_add_one(s, "shm_outside", setup, teardown, 60, shm_outside);
	suite_add_one(s, "shm_foreign", setup, teardown, 60, shm_foreign);
	suite_add_one(s, "log_flood", setup, teardown, 60, log_flood);
	suite_add_one(s, "poll_ready_flood", setup, teardown, 60, poll_ready_flood);
	return s;
}
