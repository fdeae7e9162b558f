/*
 * The spare driver host (supervisor.c, "The spare host"): the plugfs_pid keeps
 * one plugfs-driver started ahead of need, hands it the device of a driver
 * that crashed (or of a device plugged in) and starts the next one later.
 * It shows nowhere as a device, is replaced when it dies (with a backoff
 * when it keeps dying), is not waited for (a start without a ready spare
 * execs a host as before), and leaves with the plugfs_pid.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

static struct mnt m;
static pid_t plugfs_pid;

static void teardown(void)
{
	mnt_stop(&m);
}

static void start(const char *const *models, const char *opts, unsigned nfuncs)
{
	ck_assert_int_eq(mnt_start(&m, models, opts, nfuncs), 0);
	plugfs_pid = daemon_pid(&m);
	ck_assert_int_gt(plugfs_pid, 0);
}

static void setup_two(void)
{
	static const char *const two[] = {"loopback:2", NULL};
	start(two, "timeout=2000", 2);
}

/* Each death of a spare waits longer: 0, 300, 600, 1200 ms. */
static void setup_backoff(void)
{
	static const char *const one[] = {"loopback", NULL};
	start(one, "timeout=2000,backoff_min=300,backoff_max=5000", 1);
}

static void setup_empty(void)
{
	static const char *const none[] = {NULL};
	start(none, "timeout=2000", 0);
}

/* Whether pid's command line holds `arg` (the spare's --spare, a plain start's node). */
static int cmdline_has(pid_t pid, const char *arg)
{
	char path[64], buf[1024];

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	ssize_t n = read_file(path, buf, sizeof(buf) - 1);
	for (ssize_t i = 0; i < n; i += (ssize_t)strlen(buf + i) + 1) {
		buf[n] = '\0';
		if (strcmp(buf + i, arg) == 0)
			return 1;
	}
	return 0;
}

/* Waits until fn's driver (in any state) is pid. */
static int wait_driver_is(const char *fn, pid_t pid, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	do {
		if (fn_pid(&m, fn) == pid)
			return 0;
		usleep(2000);
	} while (mono_ms() < deadline);
	return -1;
}

/* Kills fn's driver; returns the pid of the one that serves it next (running). */
static pid_t crash(const char *fn)
{
	pid_t pid = fn_pid(&m, fn);

	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	pid_t next = wait_new_pid(&m, fn, pid, 5000);
	ck_assert_int_gt(next, 0);
	ck_assert_int_eq(wait_state(&m, fn, "running", 5000), 0);
	return next;
}

START_TEST(crash_hands_the_device_to_the_spare)
{
	pid_t spare = wait_spare(plugfs_pid, 0, 5000);

	ck_assert_int_gt(spare, 0);
	ck_assert(cmdline_has(spare, "--spare"));
	ck_assert_int_eq(crash("usb0"), spare);
	/* Now it is the driver: named so, serving the device. */
	ck_assert_str_eq(proc_status(spare, "Name"), "plugfs-driver");
	assert_loopback_works(&m, "usb0");
	assert_loopback_works(&m, "usb1");
	ck_assert_int_eq(wait_event(&m, "usb0 restart 1", "running after", 1000), 0);
	/* The next spare comes once the start is over. */
	pid_t next = wait_spare(plugfs_pid, spare, 5000);
	ck_assert_int_gt(next, 0);
	ck_assert_int_ne(next, spare);
	ck_assert_int_eq(crash("usb1"), next);
	assert_loopback_works(&m, "usb1");
	ck_assert_int_eq(count_zombies(plugfs_pid), 0);
}
END_TEST

START_TEST(spare_is_no_device)
{
	char buf[4096];
	pid_t spare = wait_spare(plugfs_pid, 0, 5000);

	ck_assert_int_gt(spare, 0);
	ck_assert_int_eq(count_functions(&m, 0), 2);
	ck_assert_int_eq(count_driver_processes(plugfs_pid), 2);
	ck_assert_int_eq(count_child_processes(plugfs_pid), 3);
	ssize_t n = read_file(mpath(&m, "devices"), buf, sizeof(buf) - 1);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	char pidstr[16];
	snprintf(pidstr, sizeof(pidstr), " %d\n", (int)spare);
	ck_assert_msg(strstr(buf, pidstr) == NULL, "the spare's pid is in devices:\n%s", buf);
	/* It runs as the drivers start: root until it has a device, no sandbox yet. */
	ck_assert_str_eq(proc_status(spare, "Seccomp"), "0");
}
END_TEST

START_TEST(spare_killed_while_idle_is_replaced)
{
	pid_t spare = wait_spare(plugfs_pid, 0, 5000);

	ck_assert_int_gt(spare, 0);
	ck_assert_int_eq(kill(spare, SIGKILL), 0);
	ck_assert_int_eq(wait_pid_gone(spare, 5000), 0);
	/* Its first death is replaced at once, like a driver's first crash. */
	pid_t next = wait_spare(plugfs_pid, spare, 2000);
	ck_assert_int_gt(next, 0);
	ck_assert_int_eq(count_zombies(plugfs_pid), 0);
	/* ...and the next crash is served by the new one within the usual bound. */
	uint64_t t0 = mono_ms();
	ck_assert_int_eq(crash("usb0"), next);
	ck_assert_uint_lt(mono_ms() - t0, 1000);
	assert_loopback_works(&m, "usb0");
	/* Not a device's crash: nothing about it in the events. */
	ck_assert_int_eq(wait_event(&m, "usb1", "crash", 0), -1);
}
END_TEST

START_TEST(start_without_ready_spare_execs_a_host)
{
	pid_t spare = wait_spare(plugfs_pid, 0, 5000);
	pid_t p0 = fn_pid(&m, "usb0"), p1 = fn_pid(&m, "usb1");
	char node1[64];

	ck_assert_int_gt(spare, 0);
	snprintf(node1, sizeof(node1), "%s", read_line(mpath(&m, "usb1/devnum")));
	/* Two crashes at once: one takes the spare, the other cannot wait for the next one. */
	ck_assert_int_eq(kill(p0, SIGKILL), 0);
	ck_assert_int_eq(kill(p1, SIGKILL), 0);
	pid_t n0 = wait_new_pid(&m, "usb0", p0, 5000), n1 = wait_new_pid(&m, "usb1", p1, 5000);
	ck_assert_int_gt(n0, 0);
	ck_assert_int_gt(n1, 0);
	ck_assert_int_eq(wait_state(&m, "usb0", "running", 5000), 0);
	ck_assert_int_eq(wait_state(&m, "usb1", "running", 5000), 0);
	ck_assert_msg((n0 == spare) != (n1 == spare), "spare %d, new drivers %d and %d", (int)spare, (int)n0,
		      (int)n1);
	/* The other one was exec'd with its device on the command line, as before spares. */
	pid_t plain = n0 == spare ? n1 : n0;
	ck_assert(!cmdline_has(plain, "--spare"));
	assert_loopback_works(&m, "usb0");
	assert_loopback_works(&m, "usb1");
	ck_assert_int_gt(wait_spare(plugfs_pid, spare, 5000), 0);
}
END_TEST

/* A spare that hangs once it has the device is a driver that hangs at its start. */
START_TEST(hung_spare_times_out_like_a_start)
{
	pid_t spare = wait_spare(plugfs_pid, 0, 5000), old = fn_pid(&m, "usb0");

	ck_assert_int_gt(spare, 0);
	ck_assert_int_eq(kill(spare, SIGSTOP), 0);
	ck_assert_int_eq(kill(old, SIGKILL), 0);
	/* It takes the device, and never says HELLO. */
	ck_assert_int_eq(wait_driver_is("usb0", spare, 5000), 0);
	ck_assert_str_eq(read_line(mpath(&m, "usb0/state")), "starting");
	ck_assert_int_eq(wait_event(&m, "usb0 timeout", "no HELLO", 5000), 0);
	ck_assert_int_gt(wait_new_pid(&m, "usb0", spare, 5000), 0);
	ck_assert_int_eq(wait_state(&m, "usb0", "running", 5000), 0);
	ck_assert_int_eq(wait_pid_gone(spare, 5000), 0);
	assert_loopback_works(&m, "usb0");
	assert_loopback_works(&m, "usb1");
}
END_TEST

START_TEST(dying_spare_is_rate_limited)
{
	pid_t spare = wait_spare(plugfs_pid, 0, 5000);
	uint64_t gap = 0;

	ck_assert_int_gt(spare, 0);
	/* Deaths 1 to 4 within the window: the replacements wait 0, 300, 600, 1200 ms. */
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(kill(spare, SIGKILL), 0);
		uint64_t t0 = mono_ms();
		pid_t next = wait_spare(plugfs_pid, spare, 5000);
		gap = mono_ms() - t0;
		ck_assert_msg(next > 0, "no spare after death %d", i + 1);
		if (i == 3)
			ck_assert_msg(gap >= 1100, "a fourth death replaced after %llu ms",
				      (unsigned long long)gap);
		spare = next;
	}
	ck_assert_int_eq(count_zombies(plugfs_pid), 0);
	/* The backoff is the spare's own: a crash meanwhile respawns as usual. */
	ck_assert_int_eq(kill(spare, SIGKILL), 0);
	ck_assert_int_eq(wait_pid_gone(spare, 5000), 0);
	uint64_t t0 = mono_ms();
	pid_t driver = crash("usb0");
	ck_assert_uint_lt(mono_ms() - t0, 1000);
	ck_assert(!cmdline_has(driver, "--spare"));
	assert_loopback_works(&m, "usb0");
}
END_TEST

START_TEST(shutdown_leaves_no_child)
{
	static char log[1 << 20];
	pid_t spare = wait_spare(plugfs_pid, 0, 5000);
	pid_t d0 = fn_pid(&m, "usb0"), d1 = fn_pid(&m, "usb1");

	ck_assert_int_gt(spare, 0);
	/* SIGTERM: unmount, stop every child, exit (the fixture's teardown then finds it gone). */
	ck_assert_int_eq(kill(plugfs_pid, SIGTERM), 0);
	ck_assert_int_eq(wait_pid_gone(plugfs_pid, 5000), 0);
	ck_assert_int_eq(wait_pid_gone(spare, 1000), 0);
	ck_assert_int_eq(wait_pid_gone(d0, 1000), 0);
	ck_assert_int_eq(wait_pid_gone(d1, 1000), 0);
	/* Each left on the EOF of its socket: none had to be killed, none died on the way. */
	ssize_t n = read_file(m.log, log, sizeof(log) - 1);
	ck_assert_int_gt(n, 0);
	log[n] = '\0';
	ck_assert_msg(strstr(log, "killing it") == NULL && strstr(log, "died") == NULL, "%s", log);
}
END_TEST

START_TEST(plugged_device_takes_the_spare)
{
	pid_t spare = wait_spare(plugfs_pid, 0, 5000);

	ck_assert_int_gt(spare, 0);
	ck_assert_int_eq(emu_plug(&m, "loopback", 2), 0);
	ck_assert_int_eq(wait_function(&m, "usb0", 1, 5000), 0);
	ck_assert_int_eq(wait_state(&m, "usb0", "running", 5000), 0);
	ck_assert_int_eq(fn_pid(&m, "usb0"), spare);
	assert_loopback_works(&m, "usb0");
	ck_assert_int_eq(emu_unplug(&m, "1-2"), 0);
	ck_assert_int_eq(wait_pid_gone(spare, 5000), 0);
	/* The next spare first: one being started is not named plugfs-spare yet. */
	ck_assert_int_gt(wait_spare(plugfs_pid, spare, 5000), 0);
	ck_assert_int_eq(count_driver_processes(plugfs_pid), 0);
	ck_assert_int_eq(count_zombies(plugfs_pid), 0);
}
END_TEST

/* One mount per test: each counts crashes, processes and spares from a fresh start. */
Suite *spare_suite(void)
{
	Suite *s = suite_create("spare");

	suite_add_one(s, "handover", setup_two, teardown, 60, crash_hands_the_device_to_the_spare);
	suite_add_one(s, "nodevice", setup_two, teardown, 60, spare_is_no_device);
	suite_add_one(s, "replaced", setup_two, teardown, 60, spare_killed_while_idle_is_replaced);
	suite_add_one(s, "notready", setup_two, teardown, 60, start_without_ready_spare_execs_a_host);
	suite_add_one(s, "shutdown", setup_two, teardown, 60, shutdown_leaves_no_child);
	suite_add_one(s, "hung", setup_two, teardown, 60, hung_spare_times_out_like_a_start);
	suite_add_one(s, "backoff", setup_backoff, teardown, 60, dying_spare_is_rate_limited);
	suite_add_one(s, "hotplug", setup_empty, teardown, 60, plugged_device_takes_the_spare);
	return s;
}
