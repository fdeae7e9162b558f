/*
 * Mounting and unmounting: clean exits, stale mounts, bad options, and the
 * mount(8) calling convention.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

/*
 * Mounts made in a test (the forked child) are cleaned up by these
 * fixtures, which run in the runner process even if the test dies.
 */
static struct mnt m;
static char scratch[64];

static void setup_scratch(void)
{
	snprintf(scratch, sizeof(scratch), "/tmp/plugfs-test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(scratch));
}

static void teardown_scratch(void)
{
	char sub[96];

	/* A daemon left by a failed test exits once its mount is gone. */
	snprintf(sub, sizeof(sub), "%s/mnt", scratch);
	if (mnt_is_mounted(sub))
		umount2(sub, MNT_DETACH);
	if (mnt_is_mounted(scratch))
		umount2(scratch, MNT_DETACH);
	rmdir(sub);
	snprintf(sub, sizeof(sub), "%s/log", scratch);
	unlink(sub);
	rmdir(scratch);
}

START_TEST(unmount_leaves_nothing_behind)
{
	static const char *const models[] = {"loopback", "hang", NULL};

	ck_assert_int_eq(mnt_start_at(&m, scratch, models, NULL, 2), 0);
	pid_t d0 = fn_pid(&m, "usb0"), d1 = fn_pid(&m, "usb1");
	ck_assert_int_gt(d0, 0);
	ck_assert_int_gt(d1, 0);
	/* A read in flight on the hung device must not hold up the exit. */
	int fd = open(mpath(&m, "usb1/ep81"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	struct bg_read b;
	bg_read_start(&b, fd, 16);
	char path[sizeof(m.path)];
	memcpy(path, m.path, sizeof(path));
	mnt_stop(&m);
	ck_assert(WIFEXITED(m.status));
	ck_assert_int_eq(WEXITSTATUS(m.status), 0);
	ck_assert_int_eq(bg_read_join(&b, 5000), 0);
	ck_assert_int_eq(b.ret, -1);
	close(fd);
	ck_assert_int_eq(wait_pid_gone(d0, 5000), 0);
	ck_assert_int_eq(wait_pid_gone(d1, 5000), 0);
	ck_assert(!mnt_is_mounted(path));
}
END_TEST

/* Runs plugfs directly (no emulated devices) and returns its pid. */
static pid_t start_plain(const char *mnt, const char *opts)
{
	char prog[512], driver[512];
	pid_t pid;

	snprintf(prog, sizeof(prog), "%s/plugfs", build_dir());
	snprintf(driver, sizeof(driver), "%s/plugfs-driver", build_dir());
	pid = fork();
	if (pid == 0) {
		setenv("PLUGFS_DRIVER", driver, 1);
		if (opts != NULL)
			execl(prog, prog, "-f", "-o", opts, mnt, (char *)NULL);
		else
			execl(prog, prog, "-f", mnt, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int wait_mounted(const char *path, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	while (!mnt_is_mounted(path)) {
		if (mono_ms() > deadline)
			return -1;
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	}
	return 0;
}

START_TEST(stale_mount_is_reused)
{
	const char *dir = scratch;
	struct stat st;
	int status;

	pid_t pid = start_plain(dir, NULL);
	ck_assert_int_eq(wait_mounted(dir, 10000), 0);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	/* What a killed daemon leaves behind. */
	ck_assert_int_eq(stat(dir, &st), -1);
	ck_assert_int_eq(errno, ENOTCONN);

	pid = start_plain(dir, NULL);
	char devices[600];
	snprintf(devices, sizeof(devices), "%s/devices", dir);
	uint64_t deadline = mono_ms() + 10000;
	while (stat(devices, &st) != 0 && mono_ms() < deadline) {
		struct timespec ts = {0, 2000000};
		nanosleep(&ts, NULL);
	}
	ck_assert_int_eq(stat(devices, &st), 0);
	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert(!mnt_is_mounted(dir));
}
END_TEST

static const char *const bad_opts[] = {
    "restart_max=many", "timeout=0",	    "detach=12",
    "only=all",		"backoff_min=0",    "backoff_min=50,backoff_max=10",
    "no_such_option",	"restart_window=0", "driver_user=no-such-user-here",
};

START_TEST(bad_option_exits_2)
{
	const char *dir = scratch;
	int status;

	pid_t pid = start_plain(dir, bad_opts[_i]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 2, "-o %s: status %#x", bad_opts[_i],
		      status);
	ck_assert(!mnt_is_mounted(dir));
}
END_TEST

/*
 * mount(8) runs mount.fuse3, which runs `plugfs SOURCE DIR -o OPTS` and
 * expects a daemon.  `-t fuse.plugfs` finds plugfs only in the standard
 * PATH (mount.fuse3 drops PATH), so an uninstalled build is named in the
 * source as PROGRAM#SOURCE, which takes the same path through mount.fuse3.
 */
START_TEST(mount_helper_convention)
{
	const char *dir = scratch;
	char cmd[1024], path[256];
	struct stat st;

	snprintf(cmd, sizeof(cmd),
		 "PLUGFS_DRIVER=%s/plugfs-driver mount -t fuse '%s/plugfs#plugfs' %s -o timeout=2000,nofail",
		 build_dir(), build_dir(), dir);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert(mnt_is_mounted(dir));
	snprintf(path, sizeof(path), "%s/devices", dir);
	ck_assert_int_eq(stat(path, &st), 0);
	snprintf(path, sizeof(path), "%s/events", dir);
	ck_assert_int_eq(stat(path, &st), 0);
	snprintf(cmd, sizeof(cmd), "umount %s", dir);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert(!mnt_is_mounted(dir));
}
END_TEST

/* An fstab line, options for mount(8) and systemd included, used by `mount DIR`. */
START_TEST(fstab_line_mounts)
{
	char fstab[128], cmd[1024];
	FILE *f;

	snprintf(fstab, sizeof(fstab), "%s.fstab", scratch);
	f = fopen(fstab, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"%s/plugfs#plugfs %s fuse "
		"timeout=2000,restart_max=3,nofail,noauto,_netdev,x-systemd.automount 0 0\n",
		build_dir(), scratch);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "PLUGFS_DRIVER=%s/plugfs-driver mount -T %s %s", build_dir(), fstab,
		 scratch);
	int r = system(cmd);
	unlink(fstab);
	ck_assert_int_eq(r, 0);
	ck_assert(mnt_is_mounted(scratch));
	snprintf(cmd, sizeof(cmd), "%s/events", scratch);
	ck_assert_int_ge(access(cmd, R_OK), 0);
	snprintf(cmd, sizeof(cmd), "umount %s", scratch);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert(!mnt_is_mounted(scratch));
}
END_TEST

/*
 * A script mounts and uses the files at once: lookups wait for the
 * drivers' HELLO instead of answering ENOENT while they start.
 */
START_TEST(files_ready_when_mount_returns)
{
	char cmd[2048];

	snprintf(
	    cmd, sizeof(cmd),
	    "PLUGFS_DRIVER=%s/plugfs-driver %s/plugfs-emu --model loopback --model stall -- sh -c '"
	    "%s/plugfs %s && test -r %s/usb0/ep81 && ls %s/usb1 | grep -qx ep02; r=$?; umount %s; exit $r'",
	    build_dir(), build_dir(), build_dir(), scratch, scratch, scratch, scratch);
	ck_assert_int_eq(system(cmd), 0);
	ck_assert(!mnt_is_mounted(scratch));
}
END_TEST

Suite *mount_suite(void)
{
	Suite *s = suite_create("mount");
	TCase *tc = tcase_create("unmount");

	tcase_add_unchecked_fixture(tc, setup_scratch, teardown_scratch);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, unmount_leaves_nothing_behind);
	suite_add_tcase(s, tc);

	tc = tcase_create("mount");
	tcase_add_unchecked_fixture(tc, setup_scratch, teardown_scratch);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, stale_mount_is_reused);
	tcase_add_loop_test(tc, bad_option_exits_2, 0, sizeof(bad_opts) / sizeof(bad_opts[0]));
	tcase_add_test(tc, mount_helper_convention);
	tcase_add_test(tc, fstab_line_mounts);
	tcase_add_test(tc, files_ready_when_mount_returns);
	suite_add_tcase(s, tc);
	return s;
}
