/*
 * The driver host's sandbox, entered once the device is open and claimed
 * and before the first request is served.  One function, called by the
 * real host and by the test-only hostile host (tests/integration/
 * sandbox_driver.c), so what the test attacks is what ships.
 *
 * Order: drop to driver_user (when root), close what we did not open
 * ourselves, wipe the environment, rlimits, no_new_privs, and the seccomp
 * filter last (it forbids what the steps before it need).
 *
 * The allow-list is what the driver loop does: poll the protocol socket
 * and libusb's fds, send and receive messages, usbfs ioctls, read and
 * write its fds, memory, time, exit.  Anything else kills the process with
 * SIGSYS, which the daemon reports as a crash ("crash SIGSYS") and
 * respawns like any other.  The list was measured: strace of every model's
 * driver under umockdev (I/O, stalls, timeouts, exit), the kernel's seccomp
 * audit records for the sanitizer build, and `make check-rig` on a real
 * kernel, which fails on any SIGSYS.  Why each entry is there is said at it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <syslog.h>
#include <unistd.h>

#include "driver.h"
#include "util.h"

extern char **environ;

/* Address space: the disk driver's largest job is a few MiB; glibc reserves 64 MiB per arena. */
#define SANDBOX_AS_LIMIT (1024UL << 20)

/* "UID:GID", all digits: 0 and the ids, else -EINVAL. */
static int parse_ids(const char *s, uid_t *uid, gid_t *gid)
{
	char *end;
	unsigned long u, g;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	u = strtoul(s, &end, 10);
	if (*end != ':' || end[1] < '0' || end[1] > '9')
		return -EINVAL;
	g = strtoul(end + 1, &end, 10);
	if (*end != '\0' || u >= (uid_t)-1 || g >= (gid_t)-1)
		return -EINVAL;
	*uid = (uid_t)u;
	*gid = (gid_t)g;
	return 0;
}

/*
 * Becomes `user` (setgroups, setgid, setuid) when started as root; a driver
 * started by an ordinary user stays that user.  The daemon passes the ids
 * it looked up once, "UID:GID" (a user name has no ':'), which spares every
 * driver start the name service (nsswitch.conf, /etc/passwd, nscd); a name
 * is looked up here, for a driver run by hand.
 */
static int drop_privileges(const char *user)
{
	uid_t uid;
	gid_t gid;

	if (user == NULL || getuid() != 0)
		return 0;
	if (parse_ids(user, &uid, &gid) < 0) {
		struct passwd *pw = getpwnam(user);
		if (pw == NULL) {
			drv_log(LOG_ERR, "driver_user %s: no such user", user);
			return -EINVAL;
		}
		uid = pw->pw_uid;
		gid = pw->pw_gid;
	}
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0) {
		int e = errno;
		drv_log(LOG_ERR, "dropping to %s: %s", user, strerror(e));
		return -e;
	}
	/* Make sure there is no way back. */
	if (uid != 0 && setuid(0) == 0) {
		drv_log(LOG_ERR, "dropping to %s: could become root again", user);
		return -EPERM;
	}
	return 0;
}

/*
 * The daemon closes everything above the protocol socket at spawn, so every
 * fd here was opened by this process (the node, libusb's eventfd/timerfd,
 * umockdev's sockets in tests).  Returns the highest fd open, or -errno.
 */
static int highest_fd(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int max = -1, self;

	if (d == NULL)
		return -errno;
	self = dirfd(d);
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] != '.' && fd != self && fd > max)
			max = fd;
	}
	closedir(d);
	return max;
}

/*
 * The environment is wiped in place, not just unhooked: /proc/PID/environ
 * shows the block the kernel set up at exec, whatever environ points to.
 */
static void wipe_environment(void)
{
	for (char **e = environ; e != NULL && *e != NULL; e++)
		memset(*e, 0, strlen(*e));
	clearenv();
}

static int set_limit(int resource, rlim_t value, const char *name)
{
	struct rlimit rl = {value, value};

	if (setrlimit(resource, &rl) < 0) {
		int e = errno;
		drv_log(LOG_ERR, "sandbox: %s: %s", name, strerror(e));
		return -e;
	}
	return 0;
}

/* Syscalls allowed without conditions. */
static const int allowed[] = {
    /*
     * The loop: poll, the protocol socket (recv is recvfrom, sendmsg), libusb's
     * eventfd and timerfd (read, write, timerfd_settime), close at exit.
     * sendto/recvfrom also carry umockdev's emulated ioctls in the tests,
     * over a socket its preload connected when the node was opened.
     */
    SCMP_SYS(poll),
    SCMP_SYS(read),
    SCMP_SYS(write),
    SCMP_SYS(recvfrom),
    SCMP_SYS(sendto),
    SCMP_SYS(sendmsg),
    SCMP_SYS(close),
    SCMP_SYS(timerfd_settime),
    SCMP_SYS(timerfd_gettime),
    /* Memory: malloc and libusb's transfer buffers. */
    SCMP_SYS(brk),
    SCMP_SYS(munmap),
    SCMP_SYS(mremap),
    SCMP_SYS(madvise),
    /*
     * Time: clock_gettime falls back to the syscall when the vDSO cannot
     * read the clock source; usleep while draining at exit, and
     * umockdev's preload yields with a zero clock_nanosleep.
     */
    SCMP_SYS(clock_gettime),
    SCMP_SYS(clock_nanosleep),
    SCMP_SYS(nanosleep),
    /* libusb's locks when contended; drv_log's pid. */
    SCMP_SYS(futex),
    SCMP_SYS(getpid),
    /*
     * Signals: the driver installs no handler; rt_sigreturn and
     * restart_syscall are the kernel's own return paths.  rt_sigprocmask
     * (its own mask only): glibc's abort() and umockdev's preload, which
     * blocks signals around each emulated ioctl.
     */
    SCMP_SYS(rt_sigreturn),
    SCMP_SYS(restart_syscall),
    SCMP_SYS(rt_sigprocmask),
    /* Exit. */
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),
};

#ifdef SANITIZER_BUILD
/*
 * Test builds only (ASan+UBSan, `make check-sanitize`): LeakSanitizer's
 * check at exit stops the world from a tracer thread (clone with CLONE_VM,
 * ptrace of its own threads, /proc/self/task and /proc/self/maps read, the
 * suppressions file read).  Without these the driver would die of SIGSYS
 * at every exit and its leaks would go unreported.  Still no fork (clone
 * without CLONE_VM), no exec, no socket, no open for writing.
 */
static const int sanitizer_allowed[] = {
    SCMP_SYS(gettid),	  SCMP_SYS(getppid),	 SCMP_SYS(prctl),	SCMP_SYS(ptrace),
    SCMP_SYS(wait4),	  SCMP_SYS(sched_yield), SCMP_SYS(sigaltstack), SCMP_SYS(rt_sigaction),
    SCMP_SYS(getdents64), SCMP_SYS(getdents),	 SCMP_SYS(stat),	SCMP_SYS(lstat),
    SCMP_SYS(newfstatat), SCMP_SYS(fstat),	 SCMP_SYS(lseek),	SCMP_SYS(pread64),
    SCMP_SYS(readlink),	  SCMP_SYS(tgkill),
};

static int add_sanitizer_rules(scmp_filter_ctx ctx);
#endif

/* One argument comparison; spelt out because SCMP_A1() leaves datum_b implicit (clang warns). */
static struct scmp_arg_cmp arg_cmp(unsigned arg, enum scmp_compare op, scmp_datum_t a, scmp_datum_t b)
{
	return (struct scmp_arg_cmp){.arg = arg, .op = op, .datum_a = a, .datum_b = b};
}

static int add_rules(scmp_filter_ctx ctx)
{
	int r;

	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if ((r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, allowed[i], 0)) < 0)
			return r;
	/* ioctl: usbfs's only (type 'U'). */
	if ((r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1,
				  arg_cmp(1, SCMP_CMP_MASKED_EQ, 0xff00, 'U' << 8))) < 0)
		return r;
	/* mmap and mprotect (malloc growing an arena): never executable memory. */
	if ((r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
				  arg_cmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0))) < 0 ||
	    (r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
				  arg_cmp(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0))) < 0)
		return r;
#ifdef SANITIZER_BUILD
	if ((r = add_sanitizer_rules(ctx)) < 0)
		return r;
#endif
	return 0;
}

#ifdef SANITIZER_BUILD
static int add_sanitizer_rules(scmp_filter_ctx ctx)
{
	int r;

	for (size_t i = 0; i < sizeof(sanitizer_allowed) / sizeof(sanitizer_allowed[0]); i++)
		if ((r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, sanitizer_allowed[i], 0)) < 0)
			return r;
	if ((r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				  arg_cmp(0, SCMP_CMP_MASKED_EQ, CLONE_VM, CLONE_VM))) < 0)
		return r;
	/* The runtime calls open(2) itself, not glibc's openat. */
	if ((r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(open), 1,
				  arg_cmp(1, SCMP_CMP_MASKED_EQ, O_ACCMODE, O_RDONLY))) < 0)
		return r;
	return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
				arg_cmp(2, SCMP_CMP_MASKED_EQ, O_ACCMODE, O_RDONLY));
}
#endif

/*
 * The filter as a BPF program, generated by drv_sandbox_prepare() or at
 * the entry.  seccomp_load() would probe the kernel's seccomp features and
 * generate the program on the spot, some 0.2 ms here, on the way from a
 * spare host's START to its HELLO; exported ahead, the program is
 * installed with one system call.
 */
static struct sock_fprog prepared;

/* Generates the filter's program into `prepared`: 0 or -errno. */
static int prepare_filter(void)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	int fd = -1, r;

	if (ctx == NULL)
		return -ENOMEM;
	if ((r = add_rules(ctx)) < 0)
		goto out;
	if ((fd = memfd_create("plugfs-seccomp", MFD_CLOEXEC)) < 0) {
		r = -errno;
		goto out;
	}
	if ((r = seccomp_export_bpf(ctx, fd)) < 0)
		goto out;
	off_t len = lseek(fd, 0, SEEK_END);
	size_t n = len > 0 ? (size_t)len / sizeof(struct sock_filter) : 0;
	if (n == 0 || n > BPF_MAXINSNS || (size_t)len % sizeof(struct sock_filter) != 0) {
		r = -EINVAL;
		goto out;
	}
	struct sock_filter *prog = malloc((size_t)len);
	if (prog == NULL) {
		r = -ENOMEM;
		goto out;
	}
	if (pread(fd, prog, (size_t)len, 0) != len) {
		free(prog);
		r = -EIO;
		goto out;
	}
	prepared.filter = prog;
	prepared.len = (unsigned short)n;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	seccomp_release(ctx);
	return r;
}

void drv_sandbox_prepare(void)
{
	if (prepared.filter == NULL)
		prepare_filter(); /* on failure, tried again and reported at the entry */
}

/* After no_new_privs: installs the program prepared. */
static int install_filter(void)
{
	int r = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prepared) < 0 ? -errno : 0;

	free(prepared.filter);
	prepared.filter = NULL;
	if (r < 0)
		drv_log(LOG_ERR, "sandbox: seccomp: %s", strerror(-r));
	return r;
}

int drv_sandbox_enter(const char *user)
{
	int r, maxfd;

	/* Its memfd is one fd more: before RLIMIT_NOFILE. */
	if (prepared.filter == NULL && (r = prepare_filter()) < 0) {
		drv_log(LOG_ERR, "sandbox: seccomp filter: %s", strerror(-r));
		return r;
	}
	if ((r = drop_privileges(user)) < 0)
		return r;
	wipe_environment();
	if ((maxfd = highest_fd()) < 0) {
		drv_log(LOG_ERR, "sandbox: listing fds: %s", strerror(-maxfd));
		return maxfd;
	}
	/* No new fd at all: every fd the loop needs is open by now. */
	if ((r = set_limit(RLIMIT_NOFILE, (rlim_t)maxfd + 1, "RLIMIT_NOFILE")) < 0 ||
	    (r = set_limit(RLIMIT_CORE, 0, "RLIMIT_CORE")) < 0)
		return r;
#ifndef SANITIZER_BUILD
	/* ASan reserves terabytes of shadow memory: its builds have no RLIMIT_AS. */
	if ((r = set_limit(RLIMIT_AS, SANDBOX_AS_LIMIT, "RLIMIT_AS")) < 0)
		return r;
#endif
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		r = -errno;
		drv_log(LOG_ERR, "sandbox: no_new_privs: %s", strerror(-r));
		return r;
	}
	return install_filter();
}
