/*
 * Running plugfs for real: as an ordinary user through fusermount3,
 * `plugfs --list`, the messages and exit statuses of the common mistakes
 * (plugfs(1), EXIT STATUS), mount(8) and fstab lines, systemd's readiness
 * protocol and the unit files under `systemd-analyze verify`.
 *
 * The non-root cases run plugfs as the throwaway system user plugfs-test
 * (created here if missing).  plugfs-emu, root, makes the test bed; a
 * wrapper in place of build/plugfs opens the bed to the user and gives the
 * device nodes to root:plugdev 0664, as udev/70-plugfs.rules does, then
 * becomes the user with or without the group.  A FUSE mount without
 * allow_other serves its owner only, so those test bodies become the user
 * too (they run in a forked process: CK_FORK must not be "no").
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

#define TEST_USER "plugfs-test"

/* ---- running a command like a shell would ---- */

struct run {
	int status; /* exit status, 128+N for signal N, -1 if it could not run */
	char out[16384], err[16384];
};

/*
 * Runs `sh -c CMD` (printf-style) with stdout and stderr captured apart, at
 * most 30 s.  The build directory is $B in the command.
 */
static void run(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void run(struct run *r, const char *fmt, ...)
{
	char cmd[4096];
	int po[2], pe[2];
	size_t no = 0, ne = 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	memset(r, 0, sizeof(*r));
	r->status = -1;
	if (pipe2(po, O_CLOEXEC) < 0)
		return;
	if (pipe2(pe, O_CLOEXEC) < 0) {
		close(po[0]), close(po[1]);
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		char b[512], drv[600];
		dup2(po[1], 1);
		dup2(pe[1], 2);
		/* Absolute: mount(8) and its helpers change directory. */
		if (realpath(build_dir(), b) == NULL)
			_exit(126);
		snprintf(drv, sizeof(drv), "%s/plugfs-driver", b);
		setenv("B", b, 1);
		setenv("PLUGFS_DRIVER", drv, 1);
		execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	struct pollfd fds[2] = {{po[0], POLLIN, 0}, {pe[0], POLLIN, 0}};
	uint64_t deadline = mono_ms() + 30000;
	int open_fds = 2;
	while (pid > 0 && open_fds > 0 && mono_ms() < deadline) {
		if (poll(fds, 2, 100) <= 0)
			continue;
		for (int i = 0; i < 2; i++) {
			if (fds[i].fd < 0 || fds[i].revents == 0)
				continue;
			char *buf = i == 0 ? r->out : r->err;
			size_t *n = i == 0 ? &no : &ne;
			ssize_t got = read(fds[i].fd, buf + *n, sizeof(r->out) - 1 - *n);
			if (got <= 0) {
				close(fds[i].fd);
				fds[i].fd = -1;
				open_fds--;
			} else {
				*n += (size_t)got;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (fds[i].fd >= 0)
			close(fds[i].fd);
	r->out[no] = r->err[ne] = '\0';
	if (pid < 0)
		return;
	if (open_fds > 0) {
		fprintf(stderr, "ops: gave up on: %s\n", cmd);
		kill(pid, SIGKILL);
	}
	int st;
	waitpid(pid, &st, 0);
	r->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	if (r->err[0] != '\0')
		fprintf(stderr, "ops: `%s` said on stderr:\n%s", cmd, r->err);
}

static char scratch[128];

static void scratch_make(void)
{
	snprintf(scratch, sizeof(scratch), "/tmp/plugfs-test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(scratch));
	ck_assert_int_eq(chmod(scratch, 0755), 0);
}

static void scratch_remove(void)
{
	struct run r;

	if (scratch[0] == '\0')
		return;
	/* Whatever a failed case left: a mount first, then the files. */
	run(&r, "for d in %s/*; do mountpoint -q \"$d\" && umount -l \"$d\"; done; rm -rf %s", scratch,
	    scratch);
	scratch[0] = '\0';
}

/* ---- the user ---- */

static uid_t user_uid;
static gid_t user_gid, plugdev_gid;

static void user_ensure(void)
{
	struct passwd *pw;
	struct group *gr;
	struct run r;

	if ((gr = getgrnam("plugdev")) == NULL) {
		run(&r, "groupadd --system plugdev");
		gr = getgrnam("plugdev");
	}
	ck_assert_msg(gr != NULL, "no group plugdev and groupadd failed");
	plugdev_gid = gr->gr_gid;
	if ((pw = getpwnam(TEST_USER)) == NULL) {
		run(&r, "useradd --system --user-group --no-create-home --home-dir /nonexistent "
			"--shell /usr/sbin/nologin " TEST_USER);
		pw = getpwnam(TEST_USER);
	}
	ck_assert_msg(pw != NULL, "no user " TEST_USER " and useradd failed");
	user_uid = pw->pw_uid;
	user_gid = pw->pw_gid;
}

/* For the rest of this (forked) test: the user, in plugdev or not. */
static void become_user(int in_plugdev)
{
	const char *fork_mode = getenv("CK_FORK");

	ck_assert_msg(fork_mode == NULL || strcmp(fork_mode, "no") != 0,
		      "the ops suite's user cases drop root for good: they need CK_FORK");
	ck_assert_int_eq(setgroups(in_plugdev ? 1 : 0, &plugdev_gid), 0);
	ck_assert_int_eq(setresgid(user_gid, user_gid, user_gid), 0);
	ck_assert_int_eq(setresuid(user_uid, user_uid, user_uid), 0);
}

/*
 * A build directory for the harness whose `plugfs` is a wrapper: as root
 * inside plugfs-emu it opens the test bed to the user and gives the nodes
 * to root:plugdev 0664, then runs the real plugfs as the user.
 */
static void wrapper_make(const char *bin, int in_plugdev)
{
	char real[512], path[600];

	ck_assert_ptr_nonnull(realpath(build_dir(), real));
	ck_assert_int_eq(mkdir(bin, 0755), 0);
	snprintf(path, sizeof(path), "%s/plugfs", bin);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"#!/bin/sh\n"
		"chmod 1777 \"$UMOCKDEV_DIR\"\n"
		"chmod -R a+rwX \"$UMOCKDEV_DIR/ioctl\"\n"
		"chown root:plugdev \"$UMOCKDEV_DIR\"/dev/bus/usb/*/*\n"
		"chmod 0664 \"$UMOCKDEV_DIR\"/dev/bus/usb/*/*\n"
		"exec setpriv --reuid=%s --regid=%s %s %s/plugfs \"$@\"\n",
		TEST_USER, TEST_USER, in_plugdev ? "--groups=plugdev" : "--clear-groups", real);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(path, 0755), 0);
	static const char *const progs[] = {"plugfs-emu", "plugfs-driver"};
	for (unsigned i = 0; i < 2; i++) {
		char target[600];
		snprintf(target, sizeof(target), "%s/%s", real, progs[i]);
		snprintf(path, sizeof(path), "%s/%s", bin, progs[i]);
		ck_assert_int_eq(symlink(target, path), 0);
	}
}

static struct mnt um;

/* Mounts plugfs as the user over `models`: waits for the mount only (root cannot look inside). */
static void user_mount(const char *const *models, int in_plugdev)
{
	char bin[200], mnt[200], saved[512];
	const char *b = getenv("PLUGFS_BUILD");

	user_ensure();
	scratch_make();
	snprintf(bin, sizeof(bin), "%s/bin", scratch);
	wrapper_make(bin, in_plugdev);
	snprintf(mnt, sizeof(mnt), "%s/mnt", scratch);
	ck_assert_int_eq(mkdir(mnt, 0755), 0);
	ck_assert_int_eq(chown(mnt, user_uid, user_gid), 0);
	snprintf(saved, sizeof(saved), "%s", b != NULL ? b : "");
	setenv("PLUGFS_BUILD", bin, 1);
	int r =
	    mnt_spawn(&um, scratch, models, "timeout=3000,restart_max=2,backoff_min=5,backoff_max=20", NULL);
	if (b != NULL)
		setenv("PLUGFS_BUILD", saved, 1);
	else
		unsetenv("PLUGFS_BUILD");
	ck_assert_int_eq(r, 0);
	uint64_t deadline = mono_ms() + 20000;
	while (!mnt_is_mounted(um.path)) {
		int st;
		ck_assert_msg(waitpid(um.pid, &st, WNOHANG) != um.pid, "plugfs-emu exited early; see %s",
			      um.log);
		ck_assert_msg(mono_ms() < deadline, "not mounted within 20 s; see %s", um.log);
		usleep(2000);
	}
}

static void user_setup_plugdev(void)
{
	static const char *const models[] = {"loopback", "printer-zh380", NULL};
	user_mount(models, 1);
}

static void user_setup_outsider(void)
{
	static const char *const models[] = {"loopback", NULL};
	user_mount(models, 0);
}

static void user_teardown(void)
{
	mnt_stop(&um);
	scratch_remove();
}

static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512];
	int ppid = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	ssize_t n = read_file(path, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	/* After the command name, which may hold spaces: ") S PPID". */
	char *p = strrchr(buf, ')');
	if (p == NULL || sscanf(p, ") %*c %d", &ppid) != 1)
		return 0;
	return (pid_t)ppid;
}

/*
 * Whether a FUSE mount at `path` has `opt` in its super options
 * ("rw,user_id=...,group_id=..."); what mountinfo says there goes to
 * `seen` for the failure message.
 */
static int mount_has_option(const char *path, const char *opt, char *seen, size_t cap)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t len = 0, used = 0;
	int found = 0;

	seen[0] = '\0';
	if (f == NULL)
		return 0;
	while (getline(&line, &len, f) > 0) {
		char point[4096], type[64], super[4096];
		char *sep = strstr(line, " - ");
		if (sep == NULL || sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 ||
		    strcmp(point, path) != 0 || sscanf(sep, " - %63s %*s %4095s", type, super) != 2)
			continue;
		used += (size_t)snprintf(seen + used, used < cap ? cap - used : 0, "%s %s; ", type, super);
		if (used >= cap)
			used = cap - 1;
		found |= strncmp(type, "fuse", 4) == 0 && strstr(super, opt) != NULL;
	}
	free(line);
	fclose(f);
	return found;
}

START_TEST(user_mount_drivers_keep_uid)
{
	char want[64], buf[64];

	become_user(1);
	ck_assert_int_eq(wait_state(&um, "usb0", "running", 10000), 0);
	ck_assert_int_eq(wait_state(&um, "printer0", "running", 10000), 0);

	/* The mount is the user's, made through fusermount3. */
	char seen[1024];
	snprintf(want, sizeof(want), "user_id=%u,", (unsigned)user_uid);
	ck_assert_msg(mount_has_option(um.path, want, seen, sizeof(seen)), "mounts at %s: %s", um.path, seen);

	/* Drivers keep the daemon's uid (driver_user= is root's) and still sandbox themselves. */
	snprintf(want, sizeof(want), "%u %u %u %u", (unsigned)user_uid, (unsigned)user_uid,
		 (unsigned)user_uid, (unsigned)user_uid);
	static const char *const fns[] = {"usb0", "printer0"}, *const files[] = {"ep0", "status"};
	pid_t daemon = 0;
	for (unsigned i = 0; i < 2; i++) {
		pid_t pid = fn_pid_served(&um, fns[i], files[i]);
		ck_assert_int_gt(pid, 0);
		ck_assert_str_eq(proc_status(pid, "Uid"), want);
		ck_assert_str_eq(proc_status(pid, "NoNewPrivs"), "1");
		ck_assert_str_eq(proc_status(pid, "Seccomp"), "2");
		daemon = parent_of(pid);
	}
	ck_assert_int_gt(daemon, 0);
	ck_assert_str_eq(proc_status(daemon, "Uid"), want);

	/* Files work: the loopback's round trip, the printer's status. */
	ck_assert_int_eq(write_file(mpath(&um, "usb0/ep02"), "as a user"), 0);
	int fd = open(mpath(&um, "usb0/ep81"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, buf, 9), 9);
	close(fd);
	ck_assert_int_eq(memcmp(buf, "as a user", 9), 0);
	ck_assert_str_eq(read_line(mpath(&um, "printer0/status")), "ok");

	/* The monitor works without root too (hotplug). */
	char log[65536];
	ssize_t n = read_file(um.log, log, sizeof(log) - 1);
	ck_assert_int_ge(n, 0);
	log[n] = '\0';
	ck_assert_msg(strstr(log, "udev monitor") == NULL, "log: %s", log);

	/* The user unmounts: the daemon and its drivers go. */
	pid_t drv = fn_pid(&um, "usb0");
	struct run r;
	run(&r, "fusermount3 -u %s", um.path);
	ck_assert_int_eq(r.status, 0);
	ck_assert_int_eq(wait_pid_gone(daemon, 10000), 0);
	ck_assert_int_eq(wait_pid_gone(drv, 10000), 0);
	ck_assert(!mnt_is_mounted(um.path));
}
END_TEST

START_TEST(user_denied_node_names_group)
{
	become_user(0);
	/* Said once at attach, before the driver fails on it. */
	ck_assert_int_eq(wait_event(&um, "usb0 cannot open /dev/bus/usb/001/002: Permission denied",
				    "(group plugdev; add yourself to it)", 10000),
			 0);
	ck_assert_int_eq(wait_state(&um, "usb0", "failed", 10000), 0);
	ck_assert_int_eq(wait_event(&um, "usb0 crash", "exit 1", 1000), 0);
	char buf[16];
	ck_assert_int_eq(read_file(mpath(&um, "usb0/ep81"), buf, sizeof(buf)), -ENOENT);
}
END_TEST

/* ---- --list ---- */

/* Runs plugfs --list ARGS as root over models (space-separated --model flags). */
#define LIST(r, models, args) run(r, "\"$B/plugfs-emu\" %s -- \"$B/plugfs\" --list %s", models, args)

START_TEST(list_known_models)
{
	struct run r;

	LIST(
	    &r,
	    "--model loopback --model kbound --model printer-zh380 --model thermo --model acm --model ft232r "
	    "--model disk-2lun",
	    "");
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(r.out, "usb0 1-1 1209:0001 usb\n"
				"- 1-2:1.1 1209:0004 skip: bound to kernel driver usbhid (detach= does not "
				"name 1209:0004)\n"
				"usb1 1-2 1209:0004 usb\n"
				"printer0 1-3 6868:0500 printer\n"
				"hid0 1-4 1209:0030 hid\n"
				"serial0 1-5 2341:0043 serial\n"
				"serial1 1-6 0403:6001 serial\n"
				"disk0 1-7 0781:5200 disk\n");
	/* Nothing started: no driver's log line, no mount. */
	ck_assert_str_eq(r.err, "");
}
END_TEST

START_TEST(list_honours_only_and_detach)
{
	struct run r;

	LIST(&r, "--model loopback --model kbound", "-o only=1209:0004,detach=1209:0004");
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(r.out, "- 1-1 1209:0001 skip: only= does not name it\n"
				"usb0 1-2 1209:0004 usb\n"
				"usb1 1-2 1209:0004 usb\n");
	LIST(&r, "--model loopback", "/mnt/usb");
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "--list mounts nothing"));
}
END_TEST

/* In a mount namespace whose /dev is an empty tmpfs: no /dev/fuse. */
#define NO_DEV_FUSE "unshare --mount sh -c 'mount -t tmpfs none /dev && exec \"$0\" \"$@\"' "

START_TEST(list_needs_no_fuse)
{
	struct run r;

	run(&r, NO_DEV_FUSE "\"$B/plugfs-emu\" --model loopback -- \"$B/plugfs\" --list");
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(r.out, "usb0 1-1 1209:0001 usb\n");
}
END_TEST

START_TEST(list_names_unreadable_nodes)
{
	struct run r;

	user_ensure();
	/* Each node root-owned 0664 in plugdev, or root:root 0600: the user is in neither. */
	run(&r,
	    "\"$B/plugfs-emu\" --model loopback --model acm -- sh -c '"
	    "chmod 755 \"$UMOCKDEV_DIR\"; d=\"$UMOCKDEV_DIR\"/dev/bus/usb/001; "
	    "chown root:plugdev $d/002; chmod 0664 $d/002; chown root:root $d/003; chmod 0600 $d/003; "
	    "exec setpriv --reuid=" TEST_USER " --regid=" TEST_USER " --clear-groups \"$B/plugfs\" --list'");
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(r.out,
			 "usb0 1-1 1209:0001 usb cannot open /dev/bus/usb/001/002: Permission denied "
			 "(group plugdev; add yourself to it)\n"
			 "serial0 1-2 2341:0043 serial cannot open /dev/bus/usb/001/003: Permission denied "
			 "(owner root:root, mode 0600; install the plugfs udev rule)\n");
}
END_TEST

/* ---- the common mistakes: message and exit status ---- */

static void scratch_setup(void)
{
	scratch_make();
}

START_TEST(version_and_usage)
{
	struct run r;

	run(&r, "\"$B/plugfs\" --version");
	ck_assert_int_eq(r.status, 0);
	ck_assert_msg(strncmp(r.out, "plugfs 0.1, FUSE library 3.", 27) == 0, "%s", r.out);
	run(&r, "\"$B/plugfs\" -o timeout=soon %s", scratch);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "timeout=soon: expected a number"));
	run(&r, "\"$B/plugfs\"");
	ck_assert_int_eq(r.status, 2);
}
END_TEST

START_TEST(mountpoint_mistakes)
{
	struct run r;

	run(&r, "\"$B/plugfs\" -f %s/nowhere", scratch);
	ck_assert_int_eq(r.status, 4);
	ck_assert_ptr_nonnull(strstr(r.err, "does not exist (mkdir -p"));

	run(&r, "touch %s/file && \"$B/plugfs\" -f %s/file", scratch, scratch);
	ck_assert_int_eq(r.status, 4);
	ck_assert_ptr_nonnull(strstr(r.err, "is not a directory"));

	run(&r, "mkdir %s/full && touch %s/full/mine && \"$B/plugfs\" -f %s/full", scratch, scratch, scratch);
	ck_assert_int_eq(r.status, 4);
	ck_assert_ptr_nonnull(strstr(r.err, "is not empty: its files would be hidden"));

	run(&r,
	    "mkdir %s/other && mount -t tmpfs none %s/other && \"$B/plugfs\" -f %s/other; s=$?; "
	    "umount %s/other; exit $s",
	    scratch, scratch, scratch, scratch);
	ck_assert_int_eq(r.status, 4);
	ck_assert_ptr_nonnull(strstr(r.err, "busy: a tmpfs file system is mounted there"));

	run(&r, "mkdir %s/nofuse && " NO_DEV_FUSE "\"$B/plugfs\" -f %s/nofuse", scratch, scratch);
	ck_assert_int_eq(r.status, 3);
	ck_assert_ptr_nonnull(strstr(r.err, "/dev/fuse does not exist"));

	/* An ordinary user mounts only where he may write. */
	user_ensure();
	run(&r,
	    "mkdir %s/roots && setpriv --reuid=" TEST_USER " --regid=" TEST_USER " --clear-groups "
	    "\"$B/plugfs\" -f %s/roots",
	    scratch, scratch);
	ck_assert_int_eq(r.status, 4);
	ck_assert_ptr_nonnull(strstr(r.err, "Permission denied (an ordinary user mounts only"));
	ck_assert(!mnt_is_mounted(scratch));
}
END_TEST

static struct mnt rm;

static void root_setup(void)
{
	static const char *const models[] = {"loopback", NULL};

	scratch_make();
	ck_assert_int_eq(mnt_start(&rm, models, "timeout=3000", 1), 0);
}

static void root_teardown(void)
{
	mnt_stop(&rm);
	scratch_remove();
}

START_TEST(mountpoint_busy)
{
	struct run r;

	run(&r, "\"$B/plugfs\" -f %s", rm.path);
	ck_assert_int_eq(r.status, 4);
	ck_assert_ptr_nonnull(strstr(r.err, "busy: plugfs is already mounted there (fusermount3 -u"));
	/* The mount that was there still works. */
	ck_assert_str_eq(read_line(mpath(&rm, "usb0/state")), "running");
}
END_TEST

/*
 * mount(8) through mount.fuse3, as fstab does it, with the options systemd
 * and mount(8) use: plugfs forks into the background once mounted, umount
 * stops it.
 */
START_TEST(mount_helper_and_fstab)
{
	struct run r;
	char fstab[256];

	snprintf(fstab, sizeof(fstab), "%s/fstab", scratch);
	FILE *f = fopen(fstab, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f,
		"plugfs %s/mnt fuse.plugfs allow_other,nofail,noauto,x-systemd.automount,"
		"x-systemd.idle-timeout=60,_netdev,timeout=2000 0 0\n",
		scratch);
	ck_assert_int_eq(fclose(f), 0);
	/*
	 * mount.fuse3 runs `plugfs` from a fixed PATH, with an environment
	 * mount(8) cleaned: in a mount namespace of the test's own,
	 * /usr/local/bin/plugfs is a wrapper that puts the test bed's
	 * variables back and runs this build's plugfs.  The daemon's pid is its
	 * driver's parent.
	 */
	run(&r,
	    "mkdir %s/mnt && exec unshare --mount \"$B/plugfs-emu\" --model loopback -- sh -c '"
	    "mount -t tmpfs none /usr/local/bin || exit 9; "
	    "printf \"#!/bin/sh\\nexport LD_PRELOAD=%%s UMOCKDEV_DIR=%%s PLUGFS_DRIVER=%%s\\nexec %%s "
	    "\\\"\\$@\\\"\\n\" "
	    "\"$LD_PRELOAD\" \"$UMOCKDEV_DIR\" \"$PLUGFS_DRIVER\" \"$B/plugfs\" > /usr/local/bin/plugfs; "
	    "chmod 755 /usr/local/bin/plugfs; "
	    "mount --fstab %s %s/mnt || exit 10; "
	    "ls %s/mnt/usb0 >/dev/null; cat %s/mnt/devices; grep \" %s/mnt fuse.plugfs \" /proc/mounts; "
	    "drv=$(cut -d\" \" -f7 %s/mnt/devices); daemon=$(cut -d\" \" -f4 /proc/$drv/stat); "
	    "umount %s/mnt || exit 11; i=0; while kill -0 $daemon 2>/dev/null; do "
	    "i=$((i+1)); [ $i -lt 5000 ] || exit 12; sleep 0.002; done; "
	    "mountpoint -q %s/mnt && exit 13; exit 0'",
	    scratch, fstab, scratch, scratch, scratch, scratch, scratch, scratch, scratch);
	ck_assert_int_eq(r.status, 0);
	/* Listing usb0 waited for its driver's HELLO. */
	ck_assert_msg(strstr(r.out, "usb0 1-1 1209:0001 usb running 0 ") != NULL, "%s", r.out);
	/* allow_other reached the kernel; x-systemd.* and nofail did not reach libfuse. */
	ck_assert_ptr_nonnull(strstr(r.out, "allow_other"));
}
END_TEST

/* ---- NFS export ---- */

/* Every unused dentry and inode out of the kernel's caches, FUSE's included. */
static void drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "2", 1), 1);
	close(fd);
}

static struct file_handle *handle_of(const char *path)
{
	struct file_handle *h = calloc(1, sizeof(*h) + MAX_HANDLE_SZ);
	int mount_id;

	ck_assert_ptr_nonnull(h);
	h->handle_bytes = MAX_HANDLE_SZ;
	ck_assert_msg(name_to_handle_at(AT_FDCWD, path, h, &mount_id, 0) == 0, "%s: %s", path,
		      strerror(errno));
	return h;
}

/*
 * What nfsd does with a file handle, without an NFS server: encode it,
 * forget the inode, decode it.  Decoding an inode the kernel no longer has
 * is a FUSE lookup of "." on its number, and connecting a directory to the
 * root one of ".." (export_support); a handle outlives neither its device
 * nor the mount.
 */
START_TEST(nfs_handles_decode)
{
	struct stat st_dir, st;
	char buf[16];

	ck_assert_int_eq(stat(mpath(&rm, "usb0"), &st_dir), 0);
	struct file_handle *hdir = handle_of(mpath(&rm, "usb0"));
	struct file_handle *hfile = handle_of(mpath(&rm, "usb0/vendor_id"));
	struct file_handle *hlink = handle_of(mpath(&rm, "by-path/1-1:1.0"));
	int root = open(rm.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	ck_assert_int_ge(root, 0);
	drop_caches();

	int fd = open_by_handle_at(root, hdir, O_RDONLY | O_DIRECTORY);
	ck_assert_msg(fd >= 0, "usb0: %s", strerror(errno));
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_ino, st_dir.st_ino);
	ck_assert_int_eq(fstatat(fd, "vendor_id", &st, 0), 0);
	close(fd);
	fd = open_by_handle_at(root, hfile, O_RDONLY);
	ck_assert_msg(fd >= 0, "usb0/vendor_id: %s", strerror(errno));
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 5);
	ck_assert_int_eq(memcmp(buf, "1209\n", 5), 0);
	close(fd);
	fd = open_by_handle_at(root, hlink, O_PATH | O_NOFOLLOW);
	ck_assert_msg(fd >= 0, "by-path link: %s", strerror(errno));
	ck_assert_int_eq(readlinkat(fd, "", buf, sizeof(buf)), 7);
	ck_assert_int_eq(memcmp(buf, "../usb0", 7), 0);
	close(fd);

	/* Unplugged: the directory's handle is stale. */
	ck_assert_int_eq(emu_unplug(&rm, "1-1"), 0);
	ck_assert_int_eq(wait_function(&rm, "usb0", 0, 10000), 0);
	drop_caches();
	ck_assert_int_eq(open_by_handle_at(root, hdir, O_RDONLY | O_DIRECTORY), -1);
	ck_assert_int_eq(errno, ESTALE);
	close(root);
	free(hdir);
	free(hfile);
	free(hlink);
}
END_TEST

/* ---- systemd ---- */

/* plugfs tells $NOTIFY_SOCKET READY=1 once mounted and enumerated, STOPPING=1 on its way out. */
START_TEST(notify_ready_when_mounted)
{
	static const char *const models[] = {"loopback", NULL};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char buf[64];
	struct mnt m;

	ck_assert_int_lt(snprintf(sa.sun_path, sizeof(sa.sun_path), "%.80s/notify", scratch),
			 (int)sizeof(sa.sun_path));
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", sa.sun_path, 1);
	int r = mnt_spawn(&m, scratch, models, "timeout=3000", NULL);
	unsetenv("NOTIFY_SOCKET");
	ck_assert_int_eq(r, 0);

	struct pollfd p = {fd, POLLIN, 0};
	int ready = poll(&p, 1, 20000);
	ssize_t n = ready == 1 ? recv(fd, buf, sizeof(buf) - 1, 0) : -1;
	buf[n > 0 ? n : 0] = '\0';
	/* Ready means usable: the mount is there and the device listed. */
	int mounted = mnt_is_mounted(m.path);
	char devices[256];
	ssize_t dn = read_file(mpath(&m, "devices"), devices, sizeof(devices) - 1);
	devices[dn > 0 ? dn : 0] = '\0';
	mnt_stop(&m);
	p.revents = 0;
	int stopping = poll(&p, 1, 0);
	char buf2[64];
	ssize_t n2 = stopping == 1 ? recv(fd, buf2, sizeof(buf2) - 1, 0) : -1;
	buf2[n2 > 0 ? n2 : 0] = '\0';
	close(fd);

	ck_assert_str_eq(buf, "READY=1");
	ck_assert(mounted);
	ck_assert_msg(strncmp(devices, "usb0 1-1 1209:0001 usb ", 23) == 0, "devices: %s", devices);
	ck_assert_str_eq(buf2, "STOPPING=1");
	ck_assert(WIFEXITED(m.status) && WEXITSTATUS(m.status) == 0);
}
END_TEST

/*
 * The units as `make` wrote them for installing, with plugfs where this
 * build has it (verify checks that the command exists).  Any message is a
 * failure: verify exits 0 on a misspelt setting, and says so only.
 */
START_TEST(units_verify)
{
	struct run r;
	char real[512];

	run(&r, "command -v systemd-analyze");
	if (r.status != 0) {
		fprintf(stderr, "ops: units_verify: SKIPPED: no systemd-analyze (apt-get install systemd)\n");
		return;
	}
	ck_assert_ptr_nonnull(realpath(build_dir(), real));
	run(&r,
	    "cd %s && for u in plugfs.service plugfs@.service; do "
	    "sed \"s|^ExecStart=.*/plugfs |ExecStart=%s/plugfs |\" \"$B/systemd/$u\" > $u || exit 10; done "
	    "&& "
	    "grep -q '^ExecStart=%s/plugfs -f $PLUGFS_OPTIONS /mnt/usb$' plugfs.service && "
	    "ln -s plugfs@.service plugfs@srv-usb\\\\x2dlab.service && "
	    "systemd-analyze verify --man=no plugfs.service plugfs@srv-usb\\\\x2dlab.service",
	    scratch, real, real);
	ck_assert_int_eq(r.status, 0);
	ck_assert_str_eq(r.err, "");
	ck_assert_str_eq(r.out, "");
	/* The instance name is the mountpoint, as systemd-escape --path writes it. */
	run(&r, "systemd-escape --path /srv/usb-lab");
	ck_assert_str_eq(r.out, "srv-usb\\x2dlab\n");
}
END_TEST

Suite *ops_suite(void)
{
	Suite *s = suite_create("ops");
	TCase *tc;

	tc = tcase_create("user");
	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, user_setup_plugdev, user_teardown);
	tcase_add_test(tc, user_mount_drivers_keep_uid);
	suite_add_tcase(s, tc);

	tc = tcase_create("user_denied");
	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, user_setup_outsider, user_teardown);
	tcase_add_test(tc, user_denied_node_names_group);
	suite_add_tcase(s, tc);

	tc = tcase_create("list");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, list_known_models);
	tcase_add_test(tc, list_honours_only_and_detach);
	tcase_add_test(tc, list_needs_no_fuse);
	tcase_add_test(tc, list_names_unreadable_nodes);
	suite_add_tcase(s, tc);

	tc = tcase_create("mistakes");
	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, scratch_setup, scratch_remove);
	tcase_add_test(tc, version_and_usage);
	tcase_add_test(tc, mountpoint_mistakes);
	tcase_add_test(tc, mount_helper_and_fstab);
	tcase_add_test(tc, notify_ready_when_mounted);
	tcase_add_test(tc, units_verify);
	suite_add_tcase(s, tc);

	tc = tcase_create("busy");
	tcase_set_timeout(tc, 60);
	tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
	tcase_add_test(tc, mountpoint_busy);
	tcase_add_test(tc, nfs_handles_decode);
	suite_add_tcase(s, tc);
	return s;
}
