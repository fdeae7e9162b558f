/*
 * Devices unplugged and plugged back while mounted (plugfs-emu --control):
 * the tree follows, a user in the middle of a read or a dd gets ENODEV, a
 * driver in any state stops for good, names come back with their device,
 * and a hundred cycles leave the daemon as they found it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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

/* Between two looks at a condition; the deadline is the caller's. */
static void pause_briefly(void)
{
	struct timespec ts = {0, 2 * 1000 * 1000};

	nanosleep(&ts, NULL);
}

static struct mnt m;
static const char *const none[] = {NULL};
static const char *const one_loopback[] = {"loopback", NULL};

static void teardown(void)
{
	mnt_stop(&m);
}

static void setup_empty(void)
{
	ck_assert_int_eq(mnt_start(&m, none, "", 0), 0);
}

static void setup_loopback(void)
{
	ck_assert_int_eq(mnt_start(&m, one_loopback, "", 1), 0);
}

/* The second crash waits 800 ms: long enough to unplug during the backoff. */
static void setup_backoff(void)
{
	ck_assert_int_eq(mnt_start(&m, one_loopback, "backoff_min=800,backoff_max=800,restart_max=5", 1), 0);
}

/* The first crash is one too many. */
static void setup_fail_fast(void)
{
	ck_assert_int_eq(mnt_start(&m, one_loopback, "restart_max=0", 1), 0);
}

static void assert_link(const char *rel, const char *target)
{
	char buf[128];
	ssize_t n = readlink(mpath(&m, rel), buf, sizeof(buf) - 1);

	ck_assert_msg(n > 0, "readlink %s: %s", rel, strerror(errno));
	buf[n] = '\0';
	ck_assert_str_eq(buf, target);
}

static void assert_absent(const char *rel)
{
	struct stat st;

	ck_assert_msg(lstat(mpath(&m, rel), &st) == -1 && errno == ENOENT, "%s still there", rel);
}

/* Events lines holding both strings. */
static int count_events(const char *a, const char *b)
{
	static char buf[256 * 1024];
	ssize_t n = read_file(mpath(&m, "events"), buf, sizeof(buf) - 1);
	int count = 0;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save))
		if (strstr(l, a) != NULL && (b == NULL || strstr(l, b) != NULL))
			count++;
	return count;
}

/* After an unplug: the driver is reaped, nothing respawned, nothing left open. */
static void assert_driver_gone(pid_t daemon, pid_t driver)
{
	if (driver > 0)
		ck_assert_int_eq(wait_pid_gone(driver, 5000), 0);
	/* The spare driver host is not a driver; one being started is not named so yet. */
	ck_assert_int_gt(wait_spare(daemon, 0, 5000), 0);
	ck_assert_int_eq(count_zombies(daemon), 0);
	ck_assert_int_eq(count_driver_processes(daemon), 0);
}

START_TEST(plug_after_mount)
{
	ck_assert_int_eq(count_functions(&m, 0), 0);
	ck_assert_int_eq(emu_plug(&m, "loopback", 2), 0);
	ck_assert_int_eq(wait_function(&m, "usb0", 1, 5000), 0);
	ck_assert_int_eq(wait_state(&m, "usb0", "running", 5000), 0);
	ck_assert_str_eq(read_line(mpath(&m, "usb0/port")), "1-2");
	assert_link("by-id/usb-plugfs_Loopback_LB0001-if00", "../usb0");
	assert_link("by-path/1-2:1.0", "../usb0");
	ck_assert_int_eq(wait_event(&m, "usb0 attach 1-2 1209:0001", "driver usb", 1000), 0);
	ck_assert_int_eq(wait_event(&m, "usb0 bind usb pid", NULL, 1000), 0);
	assert_loopback_works(&m, "usb0");
}
END_TEST

START_TEST(unplug_during_blocked_read)
{
	pid_t daemon = daemon_pid(&m), driver = fn_pid(&m, "usb0");
	/* The spare driver host's socket is counted here and at the end (assert_driver_gone waits for it). */
	ck_assert_int_gt(wait_spare(daemon, 0, 5000), 0);
	int fds = count_fds(daemon);
	int fd = open(mpath(&m, "usb0/ep81"), O_RDONLY);
	int info = open(mpath(&m, "usb0/vendor_id"), O_RDONLY);
	struct bg_read b;
	char c;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(info, 0);
	/* Nothing was written: the read blocks in the driver. */
	bg_read_start(&b, fd, 64);
	uint64_t t0 = mono_ms();
	ck_assert_int_eq(emu_unplug(&m, "1-1"), 0);
	ck_assert_int_eq(bg_read_join(&b, 3000), 0);
	printf("hotplug: blocked read answered %llu ms after the unplug\n",
	       (unsigned long long)(mono_ms() - t0));
	ck_assert_int_eq(b.ret, -1);
	ck_assert_int_eq(b.err, ENODEV);

	/* The tree forgot it... */
	ck_assert_int_eq(wait_function(&m, "usb0", 0, 1000), 0);
	assert_absent("usb0");
	assert_absent("by-id/usb-plugfs_Loopback_LB0001-if00");
	assert_absent("by-path/1-1:1.0");
	ck_assert_int_eq(wait_event(&m, "usb0 detach 1-1 1209:0001", "was running", 1000), 0);
	/* ...but the open handles keep answering ENODEV until closed. */
	ck_assert_int_eq(read(fd, &c, 1), -1);
	ck_assert_int_eq(errno, ENODEV);
	ck_assert_int_eq(read(info, &c, 1), -1);
	ck_assert_int_eq(errno, ENODEV);
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ck_assert_int_eq(poll(&p, 1, 1000), 1);
	ck_assert(p.revents & (POLLERR | POLLIN));
	assert_driver_gone(daemon, driver);
	close(fd);
	close(info);
	/* The driver's socket is closed; the monitor and everything else stay. */
	ck_assert_int_eq(count_fds(daemon), fds - 1);
}
END_TEST

/* Waits until process pid sleeps in write(2) ("1 ..." on x86-64). */
static int wait_blocked_in_write(pid_t pid, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;
	char path[64], buf[256];

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
	do {
		ssize_t n = read_file(path, buf, sizeof(buf) - 1);
		if (n > 2 && buf[0] == '1' && buf[1] == ' ')
			return 0;
		pause_briefly();
	} while (mono_ms() < deadline);
	return -1;
}

START_TEST(unplug_during_dd)
{
	char of[256], errlog[256], buf[1024];
	int st;

	/* 64 MiB into a device that takes 8 MiB before it NAKs: dd is mid-job when the device goes. */
	snprintf(of, sizeof(of), "of=%s", mpath(&m, "usb0/ep02"));
	snprintf(errlog, sizeof(errlog), "%s/dd.err", m.dir);
	pid_t dd = fork();
	ck_assert_int_ge(dd, 0);
	if (dd == 0) {
		int e = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(e, 2);
		execlp("dd", "dd", "if=/dev/zero", of, "bs=65536", "count=1024", (char *)NULL);
		_exit(127);
	}
	ck_assert_int_eq(wait_blocked_in_write(dd, 10000), 0);
	ck_assert_int_eq(emu_unplug(&m, "1-1"), 0);
	ck_assert_int_eq(waitpid(dd, &st, 0), dd);
	ck_assert(WIFEXITED(st));
	ck_assert_int_ne(WEXITSTATUS(st), 0);
	ssize_t n = read_file(errlog, buf, sizeof(buf) - 1);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_msg(strstr(buf, "No such device") != NULL, "dd said: %s", buf);
	unlink(errlog);
	ck_assert_int_eq(wait_function(&m, "usb0", 0, 1000), 0);
}
END_TEST

/* Asserts for `ms` that nothing is respawned: no child, no restart event. */
static void assert_nothing_respawns(pid_t daemon, int ms)
{
	uint64_t until = mono_ms() + (uint64_t)ms;

	/* Once the spare driver host is there, no process starts unless something respawns. */
	ck_assert_int_gt(wait_spare(daemon, 0, 5000), 0);
	while (mono_ms() < until) {
		ck_assert_int_eq(count_driver_processes(daemon), 0);
		ck_assert_int_eq(count_events("usb0 restart 2", NULL), 0);
		pause_briefly();
	}
}

START_TEST(unplug_during_backoff)
{
	pid_t daemon = daemon_pid(&m), pid = fn_pid(&m, "usb0");

	/* The first crash respawns at once; the second waits backoff_min. */
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	pid = wait_new_pid(&m, "usb0", pid, 5000);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(wait_event(&m, "usb0 crash SIGKILL", "restart 2 in 800 ms", 5000), 0);
	ck_assert_str_eq(read_line(mpath(&m, "usb0/state")), "restarting");
	ck_assert_int_eq(emu_unplug(&m, "1-1"), 0);
	ck_assert_int_eq(wait_function(&m, "usb0", 0, 1000), 0);
	ck_assert_int_eq(wait_event(&m, "usb0 detach 1-1", "was restarting", 1000), 0);
	/* The backoff would have ended within this. */
	assert_nothing_respawns(daemon, 1200);
	assert_driver_gone(daemon, pid);
}
END_TEST

START_TEST(unplug_when_failed)
{
	pid_t daemon = daemon_pid(&m), pid = fn_pid(&m, "usb0");

	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(wait_state(&m, "usb0", "failed", 5000), 0);
	ck_assert_int_eq(emu_unplug(&m, "1-1"), 0);
	ck_assert_int_eq(wait_function(&m, "usb0", 0, 1000), 0);
	ck_assert_int_eq(wait_event(&m, "usb0 detach 1-1", "was failed", 1000), 0);
	assert_absent("usb0/ctl");
	assert_nothing_respawns(daemon, 200);
	assert_driver_gone(daemon, pid);
}
END_TEST

START_TEST(stale_handle_never_reaches_the_new_device)
{
	int w = open(mpath(&m, "usb0/ep02"), O_WRONLY);

	ck_assert_int_ge(w, 0);
	ck_assert_int_eq(emu_unplug(&m, "1-1"), 0);
	ck_assert_int_eq(wait_function(&m, "usb0", 0, 1000), 0);
	ck_assert_int_eq(write(w, "x", 1), -1);
	ck_assert_int_eq(errno, ENODEV);
	/* The same device comes back under the same name... */
	ck_assert_int_eq(emu_plug(&m, "loopback", 1), 0);
	ck_assert_int_eq(wait_state(&m, "usb0", "running", 5000), 0);
	/* ...and the old handle still answers ENODEV, while a new one works. */
	ck_assert_int_eq(write(w, "x", 1), -1);
	ck_assert_int_eq(errno, ENODEV);
	assert_loopback_works(&m, "usb0");
	close(w);
}
END_TEST

START_TEST(replug_keeps_names_and_links)
{
	ck_assert_int_eq(emu_plug(&m, "twin", 2), 0);
	ck_assert_int_eq(wait_state(&m, "usb1", "running", 5000), 0);
	ck_assert_str_eq(read_line(mpath(&m, "usb1/port")), "1-2");
	ck_assert_int_eq(emu_unplug(&m, "1-1"), 0);
	ck_assert_int_eq(emu_unplug(&m, "1-2"), 0);
	ck_assert_int_eq(wait_function(&m, "usb1", 0, 1000), 0);
	ck_assert_int_eq(count_functions(&m, 0), 0);

	/* The twin first: it would get usb0 if names were simply the lowest free. */
	ck_assert_int_eq(emu_plug(&m, "twin", 2), 0);
	ck_assert_int_eq(wait_state(&m, "usb1", "running", 5000), 0);
	/* The loopback has a serial: it keeps its name on another port. */
	ck_assert_int_eq(emu_plug(&m, "loopback", 3), 0);
	ck_assert_int_eq(wait_state(&m, "usb0", "running", 5000), 0);
	ck_assert_str_eq(read_line(mpath(&m, "usb0/port")), "1-3");
	assert_link("by-id/usb-plugfs_Loopback_LB0001-if00", "../usb0");
	assert_link("by-path/1-3:1.0", "../usb0");
	assert_link("by-path/1-2:1.0", "../usb1");
	assert_absent("by-path/1-1:1.0");
	assert_loopback_works(&m, "by-id/usb-plugfs_Loopback_LB0001-if00");
	assert_loopback_works(&m, "usb1");
	ck_assert_int_eq(count_events("usb0 attach 1-3 1209:0001", NULL), 1);
}
END_TEST

START_TEST(twins_told_apart_by_port)
{
	ck_assert_int_eq(emu_plug(&m, "twin", 1), 0);
	ck_assert_int_eq(emu_plug(&m, "twin", 2), 0);
	ck_assert_int_eq(wait_state(&m, "usb0", "running", 5000), 0);
	ck_assert_int_eq(wait_state(&m, "usb1", "running", 5000), 0);
	assert_link("by-path/1-1:1.0", "../usb0");
	assert_link("by-path/1-2:1.0", "../usb1");
	ck_assert_str_eq(read_line(mpath(&m, "usb0/serial")), "");
	for (int round = 0; round < 2; round++) {
		ck_assert_int_eq(emu_unplug(&m, "1-1"), 0);
		ck_assert_int_eq(emu_unplug(&m, "1-2"), 0);
		ck_assert_int_eq(wait_function(&m, "usb0", 0, 1000), 0);
		ck_assert_int_eq(wait_function(&m, "usb1", 0, 1000), 0);
		/* Port 2 first: without a serial, the port is what names it. */
		ck_assert_int_eq(emu_plug(&m, "twin", 2), 0);
		ck_assert_int_eq(wait_state(&m, "usb1", "running", 5000), 0);
		ck_assert_int_eq(emu_plug(&m, "twin", 1), 0);
		ck_assert_int_eq(wait_state(&m, "usb0", "running", 5000), 0);
		ck_assert_str_eq(read_line(mpath(&m, "usb0/port")), "1-1");
		ck_assert_str_eq(read_line(mpath(&m, "usb1/port")), "1-2");
	}
	assert_loopback_works(&m, "usb0");
	assert_loopback_works(&m, "usb1");
}
END_TEST

START_TEST(hundred_cycles_leave_nothing_behind)
{
	pid_t daemon = daemon_pid(&m);

	/* One cycle first, so that the baseline has every buffer a cycle allocates. */
	ck_assert_int_eq(emu_unplug(&m, "1-1"), 0);
	ck_assert_int_eq(emu_plug(&m, "loopback", 1), 0);
	ck_assert_int_eq(wait_state(&m, "usb0", "running", 5000), 0);
	/* The spare driver host, replaced after each plug took it, is counted both times. */
	ck_assert_int_gt(wait_spare(daemon, 0, 5000), 0);
	int fds = count_fds(daemon), children = count_driver_processes(daemon);
	long rss = rss_kb(daemon);
	ck_assert_int_eq(children, 1);

	uint64_t t0 = mono_ms();
	for (int i = 0; i < 100; i++) {
		pid_t pid = fn_pid(&m, "usb0");
		ck_assert_int_eq(emu_unplug(&m, "1-1"), 0);
		ck_assert_int_eq(wait_function(&m, "usb0", 0, 2000), 0);
		ck_assert_int_eq(emu_plug(&m, "loopback", 1), 0);
		ck_assert_int_eq(wait_new_pid(&m, "usb0", pid, 5000) > 0, 1);
	}
	uint64_t ms = mono_ms() - t0;
	assert_loopback_works(&m, "usb0");
	ck_assert_int_gt(wait_spare(daemon, 0, 5000), 0);
	int fds2 = count_fds(daemon), children2 = count_driver_processes(daemon);
	long rss2 = rss_kb(daemon);
	/* ASan's quarantine keeps freed memory for a while: only its leak check counts there. */
	long margin = getenv("ASAN_OPTIONS") != NULL ? 64 * 1024 : 512;
	printf("hotplug: 100 unplug/replug cycles in %llu ms: fds %d -> %d, children %d -> %d, "
	       "VmRSS %ld -> %ld kB (margin %ld kB)\n",
	       (unsigned long long)ms, fds, fds2, children, children2, rss, rss2, margin);
	ck_assert_int_eq(fds2, fds);
	ck_assert_int_eq(children2, children);
	ck_assert_int_eq(count_zombies(daemon), 0);
	ck_assert_int_le(rss2, rss + margin);
	ck_assert_int_eq(count_events("usb0 attach", NULL), 102);
	ck_assert_int_eq(count_events("usb0 detach", NULL), 101);
}
END_TEST

START_TEST(twenty_in_one_burst)
{
	char name[16];

	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(emu_send(&m, "plug loopback"), 0);
	for (int i = 0; i < 20; i++)
		ck_assert_int_eq(emu_reply(&m), 0);
	uint64_t deadline = mono_ms() + 20000;
	while (count_functions(&m, 1) < 20 && mono_ms() < deadline)
		pause_briefly();
	ck_assert_int_eq(count_functions(&m, 1), 20);
	ck_assert_int_eq(count_functions(&m, 0), 20);
	for (int i = 0; i < 20; i++) {
		snprintf(name, sizeof(name), "usb%d", i);
		ck_assert_int_eq(count_function(&m, name), 1);
	}
	ck_assert_int_eq(count_events(" attach ", NULL), 20);
	ck_assert_int_gt(wait_spare(daemon_pid(&m), 0, 5000), 0);
	ck_assert_int_eq(count_driver_processes(daemon_pid(&m)), 20);
	assert_loopback_works(&m, "usb19");
}
END_TEST

static void setup_only(void)
{
	ck_assert_int_eq(mnt_start(&m, none, "only=1209:0001:1209:0004", 0), 0);
}

/* only= and the kernel-driver rule apply to a device plugged later as at start. */
START_TEST(filters_apply_to_plugged_devices)
{
	ck_assert_int_eq(emu_plug(&m, "twin", 1), 0);
	ck_assert_int_eq(wait_event(&m, "1-1 skip 1209:0005", "only=", 5000), 0);
	ck_assert_int_eq(emu_plug(&m, "kbound", 2), 0);
	ck_assert_int_eq(wait_state(&m, "usb0", "running", 5000), 0);
	ck_assert_int_eq(wait_event(&m, "1-2:1.1 skip bound to kernel driver usbhid", NULL, 1000), 0);
	ck_assert_int_eq(count_functions(&m, 0), 1);
	ck_assert_str_eq(read_line(mpath(&m, "usb0/port")), "1-2");
	/* The skipped twin leaves as quietly as it came; the shown device says detach. */
	ck_assert_int_eq(emu_unplug(&m, "1-1"), 0);
	ck_assert_int_eq(emu_unplug(&m, "1-2"), 0);
	ck_assert_int_eq(wait_event(&m, "usb0 detach 1-2 1209:0004", NULL, 5000), 0);
	ck_assert_int_eq(count_events(" detach ", NULL), 1);
	ck_assert_int_eq(count_events("skip 1209:0005", NULL), 1);
}
END_TEST

/* plugfs-emu plugs a device while plugfs is enumerating: it shows once. */
START_TEST(plugged_during_start_shows_once)
{
	char dir[] = "/tmp/plugfs-test.XXXXXX";

	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(mnt_spawn(&m, dir, one_loopback, "", NULL), 0);
	m.own_dir = 1;
	ck_assert_int_eq(emu_plug(&m, "twin", 0), 0);
	ck_assert_int_eq(mnt_wait_up(&m, 2), 0);
	ck_assert_int_eq(count_functions(&m, 0), 2);
	ck_assert_int_eq(count_function(&m, "usb0"), 1);
	ck_assert_int_eq(count_function(&m, "usb1"), 1);
	ck_assert_int_eq(count_events(" attach 1-2 1209:0005", NULL), 1);
	ck_assert_int_gt(wait_spare(daemon_pid(&m), 0, 5000), 0);
	ck_assert_int_eq(count_driver_processes(daemon_pid(&m)), 2);
	mnt_stop(&m);
}
END_TEST

static void add_case(Suite *s, const char *name, void (*setup)(void), const TTest *test)
{
	TCase *tc = tcase_create(name);

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test);
	suite_add_tcase(s, tc);
}

Suite *hotplug_suite(void)
{
	Suite *s = suite_create("hotplug");
	TCase *tc;

	add_case(s, "plug", setup_empty, plug_after_mount);
	add_case(s, "blocked read", setup_loopback, unplug_during_blocked_read);
	add_case(s, "dd", setup_loopback, unplug_during_dd);
	add_case(s, "backoff", setup_backoff, unplug_during_backoff);
	add_case(s, "failed", setup_fail_fast, unplug_when_failed);
	add_case(s, "stale handle", setup_loopback, stale_handle_never_reaches_the_new_device);
	add_case(s, "names", setup_loopback, replug_keeps_names_and_links);
	add_case(s, "twins", setup_empty, twins_told_apart_by_port);
	add_case(s, "cycles", setup_loopback, hundred_cycles_leave_nothing_behind);
	add_case(s, "burst", setup_empty, twenty_in_one_burst);
	add_case(s, "filters", setup_only, filters_apply_to_plugged_devices);
	/* Its own mounts, made and stopped inside the test. */
	tc = tcase_create("start");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, plugged_during_start_shows_once, 0, 5);
	suite_add_tcase(s, tc);
	return s;
}
