/*
 * The point of plugfs: a driver dies, only its device's files fail, for as
 * long as the respawn takes; then they work again.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

static struct mnt m;
static const char *const one_loopback[] = {"loopback", NULL};

static void teardown(void)
{
	mnt_stop(&m);
}

/* The second crash within the window waits backoff_min: long enough to look at. */
static void setup_crash(void)
{
	ck_assert_int_eq(
	    mnt_start(&m, one_loopback, "timeout=3000,backoff_min=1500,backoff_max=1500,restart_max=5", 1),
	    0);
}

static void setup_crashloop(void)
{
	ck_assert_int_eq(
	    mnt_start(&m, one_loopback, "restart_max=2,restart_window=60,backoff_min=1,backoff_max=1", 1), 0);
}

static void setup_sigstop(void)
{
	ck_assert_int_eq(mnt_start(&m, one_loopback, "timeout=500", 1), 0);
}

/* Kills the driver during a read; checks what the reader and a stale handle see. */
static pid_t crash_during_read(int sig, const char *signame)
{
	struct bg_read b;
	pid_t pid = fn_pid(&m, "usb0");
	int fd = open(mpath(&m, "usb0/ep81"), O_RDONLY);

	ck_assert_int_gt(pid, 0);
	ck_assert_int_ge(fd, 0);
	bg_read_start(&b, fd, 64);
	ck_assert_int_eq(kill(pid, sig), 0);
	ck_assert_int_eq(bg_read_join(&b, 5000), 0);
	ck_assert_int_eq(b.ret, -1);
	ck_assert_int_eq(b.err, EIO);
	ck_assert_int_eq(wait_event(&m, "usb0 crash", signame, 5000), 0);
	pid_t npid = wait_new_pid(&m, "usb0", pid, 10000);
	ck_assert_int_gt(npid, 0);
	/* The handle opened before the crash keeps failing... */
	char c;
	ck_assert_int_eq(read(fd, &c, 1), -1);
	ck_assert_int_eq(errno, EIO);
	close(fd);
	/* ...and a new one works. */
	assert_loopback_works(&m, "usb0");
	return npid;
}

START_TEST(sigkill_then_sigsegv)
{
	crash_during_read(SIGKILL, "SIGKILL");
	ck_assert_str_eq(read_line(mpath(&m, "usb0/restarts")), "1");
	ck_assert_int_eq(wait_event(&m, "usb0 restart 1 pid", "running after", 1000), 0);

	/* The second crash within the window waits backoff_min: opens fail with EIO meanwhile. */
	pid_t pid = fn_pid(&m, "usb0");
	ck_assert_int_eq(kill(pid, SIGSEGV), 0);
	ck_assert_int_eq(wait_state(&m, "usb0", "restarting", 1000), 0);
	ck_assert_int_eq(open(mpath(&m, "usb0/ep81"), O_RDONLY), -1);
	ck_assert_int_eq(errno, EIO);
	/* Daemon-served files still answer. */
	ck_assert_str_eq(read_line(mpath(&m, "usb0/vendor_id")), "1209");
	ck_assert_int_eq(wait_event(&m, "usb0 crash SIGSEGV", "restart 2 in 1500 ms", 5000), 0);
	ck_assert_int_gt(wait_new_pid(&m, "usb0", pid, 10000), 0);
	ck_assert_str_eq(read_line(mpath(&m, "usb0/restarts")), "2");
	assert_loopback_works(&m, "usb0");
}
END_TEST

START_TEST(crash_loop_fails_then_ctl_restart)
{
	pid_t pid = fn_pid(&m, "usb0");
	pid_t daemon = daemon_pid(&m);

	ck_assert_int_gt(daemon, 0);
	/* The spare driver host's socket is among the daemon's fds at every count. */
	ck_assert_int_gt(wait_spare(daemon, 0, 5000), 0);
	int fds = count_fds(daemon);
	ck_assert_int_gt(fds, 0);

	/* restart_max=2: the third crash within the window is one too many. */
	for (int i = 0; i < 3; i++) {
		ck_assert_int_gt(pid, 0);
		ck_assert_int_eq(kill(pid, SIGKILL), 0);
		if (i < 2)
			pid = wait_new_pid(&m, "usb0", pid, 5000);
	}
	ck_assert_int_eq(wait_state(&m, "usb0", "failed", 5000), 0);
	ck_assert_int_eq(wait_event(&m, "usb0 failed", "3 crashes", 1000), 0);
	ck_assert_int_eq(open(mpath(&m, "usb0/ep81"), O_RDONLY), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(fn_pid(&m, "usb0"), 0);

	/* Every dead driver was reaped, and its socket closed. */
	ck_assert_int_gt(wait_spare(daemon, 0, 5000), 0);
	ck_assert_int_eq(count_zombies(daemon), 0);
	ck_assert_int_eq(count_driver_processes(daemon), 0);
	ck_assert_int_eq(count_fds(daemon), fds - 1);

	ck_assert_int_eq(write_file(mpath(&m, "usb0/ctl"), "restart\n"), 0);
	ck_assert_int_gt(wait_new_pid(&m, "usb0", 0, 5000), 0);
	assert_loopback_works(&m, "usb0");
	ck_assert_int_gt(wait_spare(daemon, 0, 5000), 0);
	ck_assert_int_eq(count_fds(daemon), fds);
	ck_assert_int_eq(count_driver_processes(daemon), 1);
}
END_TEST

START_TEST(stopped_driver_times_out_and_is_replaced)
{
	pid_t pid = fn_pid(&m, "usb0");
	char c;
	int fd = open(mpath(&m, "usb0/ep81"), O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(kill(pid, SIGSTOP), 0);
	ck_assert_int_eq(read(fd, &c, 1), -1);
	ck_assert_int_eq(errno, ETIMEDOUT);
	close(fd);
	ck_assert_int_eq(wait_event(&m, "usb0 timeout heartbeat lost", NULL, 5000), 0);
	ck_assert_int_eq(wait_pid_gone(pid, 5000), 0);
	ck_assert_int_gt(wait_new_pid(&m, "usb0", pid, 5000), 0);
	assert_loopback_works(&m, "usb0");
}
END_TEST

/*
 * Data through the shared buffer (common/proto.h) across a crash: more
 * blocked reads than it has slots (the rest travel inline), a driver killed
 * while a 4 KiB read holds a slot, and its successor's fresh buffer
 * carrying 1 MiB both ways, byte for byte.
 */
static void setup_shm(void)
{
	ck_assert_int_eq(mnt_start(&m, one_loopback, "timeout=10000", 1), 0);
}

#define NREADERS 20 /* more than PROTO_SHM_SLOTS */

/* Writes all of buf[0..len) to usb0/ep02; reads len bytes back from ep81 in reads of up to `chunk`. */
static void round_trip(const uint8_t *buf, uint8_t *back, size_t len, size_t chunk)
{
	int w = open(mpath(&m, "usb0/ep02"), O_WRONLY), r = open(mpath(&m, "usb0/ep81"), O_RDONLY);
	size_t got = 0;

	ck_assert_msg(w >= 0 && r >= 0, "open: %s", strerror(errno));
	for (size_t off = 0; off < len;) {
		ssize_t n = write(w, buf + off, len - off);
		ck_assert_msg(n > 0, "write at %zu: %s", off, strerror(errno));
		off += (size_t)n;
	}
	while (got < len) {
		ssize_t n = read(r, back + got, len - got < chunk ? len - got : chunk);
		ck_assert_msg(n > 0, "read at %zu: %s", got, n < 0 ? strerror(errno) : "EOF");
		got += (size_t)n;
	}
	ck_assert_int_eq(memcmp(buf, back, len), 0);
	close(w);
	close(r);
}

START_TEST(shared_buffer_across_a_crash)
{
	static struct bg_read readers[NREADERS];
	static uint8_t out[1 << 20], back[1 << 20];
	int fds[NREADERS];

	/* NREADERS blocked 4 KiB reads: the first ones take every slot, the others go inline. */
	for (int i = 0; i < NREADERS; i++) {
		fds[i] = open(mpath(&m, "usb0/ep81"), O_RDONLY);
		ck_assert_int_ge(fds[i], 0);
		bg_read_start(&readers[i], fds[i], 4096);
	}
	/* One write with every slot taken (inline): each reader gets one 4 KiB block of it, whole. */
	for (int i = 0; i < NREADERS; i++)
		memset(out + i * 4096, i + 1, 4096);
	int w = open(mpath(&m, "usb0/ep02"), O_WRONLY);
	ck_assert_int_ge(w, 0);
	ck_assert_int_eq(write(w, out, NREADERS * 4096), NREADERS * 4096);
	close(w);
	unsigned seen = 0;
	for (int i = 0; i < NREADERS; i++) {
		ck_assert_int_eq(bg_read_join(&readers[i], 10000), 0);
		ck_assert_int_eq(readers[i].ret, 4096);
		uint8_t v = (uint8_t)readers[i].buf[0];
		ck_assert_msg(v >= 1 && v <= NREADERS && !(seen & (1u << v)), "block %u twice or unknown", v);
		seen |= 1u << v;
		for (int k = 0; k < 4096; k++)
			ck_assert_int_eq((uint8_t)readers[i].buf[k], v);
		close(fds[i]);
	}

	/* Killed while a 4 KiB read holds a slot: the reader gets EIO. */
	struct bg_read big;
	pid_t pid = fn_pid(&m, "usb0");
	int fd = open(mpath(&m, "usb0/ep81"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	bg_read_start(&big, fd, 4096);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(bg_read_join(&big, 5000), 0);
	ck_assert_int_eq(big.ret, -1);
	ck_assert_int_eq(big.err, EIO);
	close(fd);
	ck_assert_int_gt(wait_new_pid(&m, "usb0", pid, 10000), 0);

	/* The new driver's buffer: 1 MiB in one write, back in 1 MiB and 64 KiB reads. */
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 7 + i / 4096);
	round_trip(out, back, sizeof(out), sizeof(back));
	memset(back, 0, sizeof(back));
	round_trip(out, back, sizeof(out), 64 * 1024);
}
END_TEST

/*
 * A driver host that breaks the protocol: its first message is 7 bytes of
 * text.  The daemon must treat it exactly like a crash, and give up on it
 * after restart_max, while the mount lives on.
 */
static char liar[96];

static void setup_liar(void)
{
	static const char *const models[] = {"loopback", NULL};

	snprintf(liar, sizeof(liar), "/tmp/plugfs-liar.XXXXXX");
	int fd = mkstemp(liar);
	ck_assert_int_ge(fd, 0);
	/* It says garbage on the protocol socket, then waits to be killed. */
	dprintf(fd, "#!/bin/sh\nprintf garbage >&3\nread x <&3\n");
	close(fd);
	ck_assert_int_eq(chmod(liar, 0755), 0);
	ck_assert_int_eq(
	    mnt_start_with_driver(&m, models, "restart_max=2,backoff_min=1,backoff_max=1", 0, liar), 0);
}

static void teardown_liar(void)
{
	mnt_stop(&m);
	unlink(liar);
}

START_TEST(protocol_violation_is_a_crash)
{
	ck_assert_int_eq(wait_event(&m, "usb0 crash protocol error", "message shorter than the header", 5000),
			 0);
	ck_assert_int_eq(wait_state(&m, "usb0", "failed", 5000), 0);
	ck_assert_int_eq(wait_event(&m, "usb0 failed", "3 crashes", 1000), 0);
	/* The daemon itself is fine. */
	ck_assert_str_eq(read_line(mpath(&m, "usb0/vendor_id")), "1209");
	ck_assert_int_eq(fn_pid(&m, "usb0"), 0);
}
END_TEST

Suite *crash_suite(void)
{
	Suite *s = suite_create("crash");
	TCase *tc = tcase_create("respawn");

	tcase_add_unchecked_fixture(tc, setup_crash, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, sigkill_then_sigsegv);
	suite_add_tcase(s, tc);

	tc = tcase_create("crashloop");
	tcase_add_unchecked_fixture(tc, setup_crashloop, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, crash_loop_fails_then_ctl_restart);
	suite_add_tcase(s, tc);

	tc = tcase_create("sigstop");
	tcase_add_unchecked_fixture(tc, setup_sigstop, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, stopped_driver_times_out_and_is_replaced);
	suite_add_tcase(s, tc);

	tc = tcase_create("shm");
	tcase_add_unchecked_fixture(tc, setup_shm, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, shared_buffer_across_a_crash);
	suite_add_tcase(s, tc);

	tc = tcase_create("liar");
	tcase_add_unchecked_fixture(tc, setup_liar, teardown_liar);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, protocol_violation_is_a_crash);
	suite_add_tcase(s, tc);
	return s;
}
