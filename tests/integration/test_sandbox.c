/*
 * The driver sandbox (drivers/sandbox.c): the real driver runs as nobody
 * with no_new_privs, a seccomp filter, an empty environment, only its own
 * fds and tight limits, and still serves its device; a hostile driver host
 * (tests/sandbox/attacker.c) that enters the same sandbox can neither
 * open a file or another device, nor make a socket, fork or exec; and a
 * seccomp kill is a crash like any other, reported as SIGSYS and respawned.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"
#include "util.h"

/* Sanitizer builds allow read-only opens, for LeakSanitizer (drivers/sandbox.c). */

static struct mnt m;

static void teardown(void)
{
	mnt_stop(&m);
}

static void setup_real(void)
{
	static const char *const models[] = {"loopback", NULL};
	ck_assert_int_eq(mnt_start(&m, models, "timeout=3000", 1), 0);
}

/*
 * The same, but usb0's driver is the spare driver host the daemon handed
 * the device after a crash: it must end up in exactly the same sandbox.
 */
static void setup_spare(void)
{
	setup_real();
	pid_t daemon = daemon_pid(&m), spare = wait_spare(daemon, 0, 5000), old = fn_pid(&m, "usb0");
	ck_assert_int_gt(spare, 0);
	ck_assert_int_eq(kill(old, SIGKILL), 0);
	ck_assert_int_eq(wait_new_pid(&m, "usb0", old, 5000), spare);
	ck_assert_int_eq(wait_state(&m, "usb0", "running", 5000), 0);
}

static char evil[256];

/* usb0 and usb1 each get an evil host; each one's attack target is the other's node. */
static void setup_evil(void)
{
	static const char *const models[] = {"loopback", "stall", NULL};
	snprintf(evil, sizeof(evil), "%s/plugfs-sandbox-attacker", build_dir());
	ck_assert_int_eq(
	    mnt_start_with_driver(&m, models, "restart_max=1,backoff_min=1,backoff_max=1", 0, evil), 0);
}

START_TEST(real_driver_is_sandboxed)
{
	pid_t pid = fn_pid_served(&m, "usb0", "ep0");
	char path[96], link[512], buf[8192];

	ck_assert_int_gt(pid, 0);
	ck_assert_str_eq(proc_status(pid, "Uid"), "65534 65534 65534 65534");
	ck_assert_str_eq(proc_status(pid, "Gid"), "65534 65534 65534 65534");
	ck_assert_str_eq(proc_status(pid, "Groups"), "");
	ck_assert_str_eq(proc_status(pid, "NoNewPrivs"), "1");
	ck_assert_str_eq(proc_status(pid, "Seccomp"), "2");

	/* The environment: nothing, or only the NULs of the wiped block. */
	snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
	ssize_t n = read_file(path, buf, sizeof(buf));
	ck_assert_int_ge(n, 0);
	for (ssize_t i = 0; i < n; i++)
		ck_assert_msg(buf[i] == '\0', "environment byte %zd is %#x", i, (unsigned char)buf[i]);

	/*
	 * The fds: stdin/stdout /dev/null, stderr the daemon's, the protocol
	 * socket, the node, libusb's eventfd and timerfd, and under umockdev
	 * the emulator's ioctl socket.  Nothing else, and no room for more.
	 */
	int nfds = 0, nsock = 0, nnode = 0;
	for (int fd = 0; fd < 64; fd++) {
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
		ssize_t l = readlink(path, link, sizeof(link) - 1);
		if (l < 0)
			continue;
		link[l] = '\0';
		nfds++;
		if (fd <= 1)
			ck_assert_str_eq(link, "/dev/null");
		else if (fd == 2)
			ck_assert_str_eq(link, m.log);
		else if (strncmp(link, "socket:", 7) == 0)
			nsock++;
		else if (strstr(link, "/dev/bus/usb/001/002") != NULL)
			nnode++;
		else
			ck_assert_msg(strcmp(link, "anon_inode:[eventfd]") == 0 ||
					  strcmp(link, "anon_inode:[timerfd]") == 0,
				      "unexpected fd %d -> %s", fd, link);
	}
	ck_assert_int_eq(nnode, 1);
	ck_assert_int_ge(nsock, 1);
	ck_assert_int_le(nsock, 2);
	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	ck_assert_int_gt(read_file(path, buf, sizeof(buf) - 1), 0);
	char want[128];
	snprintf(want, sizeof(want), "Max open files            %-21d%-21dfiles", nfds, nfds);
	ck_assert_msg(strstr(buf, want) != NULL, "no '%s' in\n%s", want, buf);
	ck_assert_ptr_nonnull(strstr(buf, "Max core file size        0                    0 "));

	/* And it still serves its device. */
	assert_loopback_works(&m, "usb0");
	ck_assert_int_eq(fn_pid(&m, "usb0"), pid);
}
END_TEST

/*
 * At unmount the daemon hangs up and the driver leaves through its whole
 * exit path (drain, release, libusb_exit, and LeakSanitizer's check in
 * sanitizer builds) inside its sandbox: it must not die of SIGSYS on the
 * way (the daemon logs such a death, see supervisor.c).
 */
START_TEST(sandboxed_driver_exits_cleanly)
{
	static char buf[256 * 1024];
	pid_t pid = fn_pid(&m, "usb0"), daemon = daemon_pid(&m);

	ck_assert_int_gt(pid, 0);
	ck_assert_int_gt(daemon, 0);
	ck_assert_int_eq(umount2(m.path, 0), 0);
	ck_assert_int_eq(wait_pid_gone(pid, 10000), 0);
	ck_assert_int_eq(wait_pid_gone(daemon, 10000), 0);
	ssize_t n = read_file(m.log, buf, sizeof(buf) - 1);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_msg(strstr(buf, "on its way out") == NULL, "%s", buf);
}
END_TEST

/*
 * Waits up to ms for the n-th (1-based) log line of function fn that
 * contains `what`; returns it (static) or NULL.
 */
static const char *wait_log(const char *fn, const char *what, int nth, int ms)
{
	static char buf[256 * 1024], line[512];
	char prefix[64];
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	snprintf(prefix, sizeof(prefix), "plugfs: %s: driver: ", fn);
	do {
		ssize_t n = read_file(m.log, buf, sizeof(buf) - 1);
		int seen = 0;
		if (n > 0) {
			buf[n] = '\0';
			for (char *l = strtok(buf, "\n"); l != NULL; l = strtok(NULL, "\n"))
				if (strncmp(l, prefix, strlen(prefix)) == 0 && strstr(l, what) != NULL &&
				    ++seen == nth) {
					snprintf(line, sizeof(line), "%s", l + strlen(prefix));
					return line;
				}
		}
		usleep(20 * 1000);
	} while (mono_ms() < deadline);
	return NULL;
}

static void assert_attacks_fail(const char *fn, int round)
{
	static const char *const attacks[] = {"open /etc/shadow", "open another device node", "socket",
					      "fork", "exec"};
	const char *l = wait_log(fn, "sandbox attack target", round, 10000);

	ck_assert_msg(l != NULL, "%s: no attack %d", fn, round);
	/* The other node is a real target: it opens when not sandboxed. */
	ck_assert_msg(strstr(l, "before the sandbox") != NULL && strstr(l, " opens ") != NULL, "%s", l);
	for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
		char what[96];
		snprintf(what, sizeof(what), "sandbox attack %s: ", attacks[i]);
		l = wait_log(fn, what, round, 10000);
		ck_assert_msg(l != NULL, "%s: no outcome for %s", fn, attacks[i]);
#ifdef SANITIZER_BUILD
		ck_assert_msg(strstr(l, "killed by SIGSYS") != NULL || strstr(l, "denied: E") != NULL,
			      "%s: %s", fn, l);
#else
		ck_assert_msg(strstr(l, "killed by SIGSYS") != NULL, "%s: %s", fn, l);
#endif
	}
}

START_TEST(evil_driver_is_contained_and_its_kill_is_a_crash)
{
	assert_attacks_fail("usb0", 1);
	/* Its own seccomp kill: a crash with its cause, respawned... */
	ck_assert_int_eq(wait_event(&m, "usb0 crash SIGSYS", "restart 1 in", 10000), 0);
	/* ...and the respawned host is sandboxed just the same. */
	assert_attacks_fail("usb0", 2);
	ck_assert_int_eq(wait_event(&m, "usb0 failed", "crashes", 10000), 0);
	assert_attacks_fail("usb1", 1);
	/* The daemon is fine. */
	ck_assert_str_eq(read_line(mpath(&m, "usb0/vendor_id")), "1209");
}
END_TEST

Suite *sandbox_suite(void)
{
	Suite *s = suite_create("sandbox");
	TCase *tc = tcase_create("real");

	tcase_add_unchecked_fixture(tc, setup_real, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, real_driver_is_sandboxed);
	suite_add_tcase(s, tc);

	tc = tcase_create("spare");
	tcase_add_unchecked_fixture(tc, setup_spare, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, real_driver_is_sandboxed);
	suite_add_tcase(s, tc);

	tc = tcase_create("exit");
	tcase_add_unchecked_fixture(tc, setup_real, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, sandboxed_driver_exits_cleanly);
	suite_add_tcase(s, tc);

	tc = tcase_create("evil");
	tcase_add_unchecked_fixture(tc, setup_evil, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, evil_driver_is_contained_and_its_kill_is_a_crash);
	suite_add_tcase(s, tc);
	return s;
}
