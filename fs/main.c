/*
 * plugfs: USB devices as files.
 *
 *     plugfs [-f] [-d] [-o OPT[,OPT...]] MOUNTPOINT
 *     plugfs --list [-o only=...,detach=...]
 *
 * One thread, one epoll loop over the FUSE fd, every driver socket and a
 * signalfd; deadlines (backoff, heartbeat, request timeouts) come from the
 * supervisor and set the loop's wait.  A FUSE request for a driver file is
 * forwarded and answered when the driver answers, so a blocked read holds no
 * thread.
 *
 * Try it:  make demo
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "loop.h"
#include "notify.h"
#include "ops.h"
#include "plugfs.h"
#include "supervisor.h"
#include "util.h"

#define PLUGFS_VERSION "0.1"

/* Exit statuses, as plugfs(1) EXIT STATUS lists them; the unit files name 2-4 as permanent. */
enum {
	EXIT_FAILURE_RUN = 1, /* the mount failed, or a fatal error while mounted */
	EXIT_USAGE = 2,	      /* bad command line or option */
	EXIT_NO_FUSE = 3,     /* no /dev/fuse */
	EXIT_MOUNTPOINT = 4,  /* the mountpoint cannot be used */
};

static struct fuse_session *se;
static int exiting;
static int exit_status;
static struct fuse_buf fbuf;

static void usage(const char *prog)
{
	printf("usage: %s [-f] [-d] [-o OPT[,OPT...]] MOUNTPOINT\n"
	       "       %s --list [-o only=...,detach=...]\n"
	       "\n"
	       "plugfs options (see plugfs(1)):\n"
	       "    -l, --list             print the functions a mount would show, mount nothing\n"
	       "    -V, --version          print the version\n"
	       "    -f                     stay in the foreground, log to stderr\n"
	       "    -d                     debug: foreground, verbose, FUSE request trace\n"
	       "    -o driver_user=USER    account drivers drop to (default nobody as root)\n"
	       "    -o restart_max=N       crashes allowed within restart_window (default 5)\n"
	       "    -o restart_window=S    seconds (default 60)\n"
	       "    -o backoff_min=MS      first delayed respawn (default 10)\n"
	       "    -o backoff_max=MS      longest respawn delay (default 5000)\n"
	       "    -o timeout=MS          request and heartbeat timeout (default 5000)\n"
	       "    -o detach=none|all|VID:PID[:...]  take interfaces from kernel drivers\n"
	       "    -o only=VID:PID[:...]  show only these devices\n"
	       "    -o nonempty            mount over a non-empty directory or a mount point\n"
	       "\n"
	       "FUSE options:\n",
	       prog, prog);
	fuse_lowlevel_help();
}

static void on_fuse(int fd, uint32_t events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	/*
	 * One request per wake-up: epoll reports /dev/fuse again while more
	 * are queued, and a request that comes alone (a process reading or
	 * writing, waiting for each answer) costs no second read() to learn
	 * that none follows.
	 */
	int r = fuse_session_receive_buf(se, &fbuf);
	if (r == -EAGAIN || r == -EINTR)
		return;
	if (r <= 0 || fuse_session_exited(se)) {
		/* Unmounted from outside (fusermount3 -u, umount). */
		if (r < 0 && r != -ENODEV)
			log_msg(LOG_ERR, "reading /dev/fuse: %s", strerror(-r));
		exiting = 1;
		return;
	}
	fuse_session_process_buf(se, &fbuf);
}

static void on_signal(int fd, uint32_t events, void *arg)
{
	struct signalfd_siginfo si;
	(void)events;
	(void)arg;

	while (read(fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			sup_reap();
			break;
		case SIGTERM:
		case SIGINT:
			log_msg(LOG_INFO, "signal %d: unmounting", (int)si.ssi_signo);
			exiting = 1;
			break;
		default:
			break;
		}
	}
}

/*
 * A daemon killed without unmounting leaves "Transport endpoint is not
 * connected" behind; mount(2) cannot use such a directory, so lift it first.
 */
static void clear_stale_mount(const char *mnt)
{
	struct stat st;

	if (stat(mnt, &st) == 0 || errno != ENOTCONN)
		return;
	log_msg(LOG_NOTICE, "%s: stale FUSE mount found, unmounting it", mnt);
	if (getuid() == 0) {
		if (umount2(mnt, MNT_DETACH) < 0)
			log_msg(LOG_WARNING, "%s: umount: %s", mnt, strerror(errno));
		return;
	}
	pid_t pid = fork();
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", "-z", "-q", mnt, (char *)NULL);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
}

/*
 * The mount table's type for a mount point, "" if `path` (absolute, no
 * symlinks) is none.  The last entry wins: it is the one on top.
 */
static void mount_type_at(const char *path, char *type, size_t cap)
{
	char line[4096], point[PATH_MAX];
	FILE *f = fopen("/proc/self/mountinfo", "re");

	type[0] = '\0';
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		/* ID PARENT MAJ:MIN ROOT POINT OPTS [TAGS...] - TYPE SOURCE SUPER */
		char *p = line, *sep = strstr(line, " - ");
		for (int i = 0; i < 4 && p != NULL; i++)
			if ((p = strchr(p, ' ')) != NULL)
				p++;
		if (p == NULL || sep == NULL)
			continue;
		/* The kernel writes space, tab, newline and backslash as \ooo. */
		size_t n = 0;
		for (; *p != ' ' && *p != '\0' && n + 1 < sizeof(point); n++) {
			if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] >= '0' && p[2] <= '7' &&
			    p[3] >= '0' && p[3] <= '7') {
				point[n] = (char)((p[1] - '0') << 6 | (p[2] - '0') << 3 | (p[3] - '0'));
				p += 4;
			} else {
				point[n] = *p++;
			}
		}
		point[n] = '\0';
		if (strcmp(point, path) == 0)
			snprintf(type, cap, "%.*s", (int)strcspn(sep + 3, " "), sep + 3);
	}
	fclose(f);
}

static int dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int empty = 1;

	if (d == NULL)
		return 1; /* not ours to judge: mount(2) says what is wrong with it */
	while (empty && (e = readdir(d)) != NULL)
		empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
	closedir(d);
	return empty;
}

/*
 * The common mistakes, said plainly before libfuse says them obscurely (or
 * not at all: libfuse 3 mounts over anything).  0, or an exit status.
 */
static int check_before_mount(const char *mnt)
{
	char real[PATH_MAX], type[64];
	struct stat st;

	if (stat("/dev/fuse", &st) < 0 && errno == ENOENT) {
		fprintf(stderr, "plugfs: /dev/fuse does not exist: load the module (modprobe fuse), or in a "
				"container pass the device in (--device /dev/fuse)\n");
		return EXIT_NO_FUSE;
	}
	if (stat(mnt, &st) < 0) {
		if (errno == ENOTCONN)
			return 0; /* stale: clear_stale_mount() lifts it */
		if (errno == ENOENT)
			fprintf(stderr, "plugfs: mountpoint %s does not exist (mkdir -p %s)\n", mnt, mnt);
		else
			fprintf(stderr, "plugfs: mountpoint %s: %s\n", mnt, strerror(errno));
		return EXIT_MOUNTPOINT;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "plugfs: mountpoint %s is not a directory\n", mnt);
		return EXIT_MOUNTPOINT;
	}
	/* fusermount3 mounts only where the user may write. */
	if (getuid() != 0 && access(mnt, W_OK) < 0) {
		fprintf(stderr,
			"plugfs: mountpoint %s: %s (an ordinary user mounts only on a directory he may "
			"write to: chown %u %s)\n",
			mnt, strerror(errno), (unsigned)getuid(), mnt);
		return EXIT_MOUNTPOINT;
	}
	if (realpath(mnt, real) == NULL)
		snprintf(real, sizeof(real), "%s", mnt);
	mount_type_at(real, type, sizeof(type));
	if (strcmp(type, "fuse.plugfs") == 0) {
		fprintf(stderr,
			"plugfs: mountpoint %s is busy: plugfs is already mounted there "
			"(fusermount3 -u %s first)\n",
			mnt, mnt);
		return EXIT_MOUNTPOINT;
	}
	/*
	 * autofs is systemd's x-systemd.automount placeholder, which we are
	 * called to cover; opening it would wait for ourselves.
	 */
	if (strcmp(type, "autofs") == 0 || opts.nonempty)
		return 0;
	if (type[0] != '\0') {
		fprintf(stderr,
			"plugfs: mountpoint %s is busy: a %s file system is mounted there (-o nonempty "
			"mounts over it anyway)\n",
			mnt, type);
		return EXIT_MOUNTPOINT;
	}
	if (!dir_is_empty(mnt)) {
		fprintf(stderr,
			"plugfs: mountpoint %s is not empty: its files would be hidden (-o nonempty "
			"mounts over them anyway)\n",
			mnt);
		return EXIT_MOUNTPOINT;
	}
	return 0;
}

/*
 * systemd's readiness protocol (Type=notify in the unit files): one
 * datagram to $NOTIFY_SOCKET, without linking libsystemd.  Silent when
 * not started by systemd.
 */
static void notify_systemd(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len;

	if (path == NULL || (path[0] != '/' && path[0] != '@') || (len = strlen(path)) >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		log_msg(LOG_WARNING, "NOTIFY_SOCKET %s: %s", path, strerror(errno));
	close(fd);
}

static int setup_signals(void)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	return loop_add(fd, EPOLLIN, on_signal, NULL);
}

static void run(void)
{
	while (!exiting) {
		uint64_t now = now_ms();
		uint64_t next = sup_tick(now);
		int timeout = -1;

		if (next != 0)
			timeout = next <= now ? 0 : next - now > 60000 ? 60000 : (int)(next - now);
		int r = loop_run_once(timeout);
		if (r < 0) {
			log_msg(LOG_ERR, "epoll: %s", strerror(-r));
			exit_status = EXIT_FAILURE_RUN;
			break;
		}
		sup_flush_interrupts();
	}
}

static int run_mounted(struct fuse_args *args)
{
	int r;

	/* Driver files are streams and media: no page cache, and reads the size of a message. */
	fuse_opt_add_arg(args, "-odefault_permissions");
	fuse_opt_add_arg(args, "-ofsname=plugfs");
	fuse_opt_add_arg(args, "-osubtype=plugfs");
	char max_read[32];
	snprintf(max_read, sizeof(max_read), "-omax_read=%u", PROTO_MAX_REQ);
	fuse_opt_add_arg(args, max_read);

	clear_stale_mount(opts.mountpoint);
	se = fuse_session_new(args, &plugfs_ops, sizeof(plugfs_ops), NULL);
	if (se == NULL) {
		fprintf(stderr, "plugfs: bad options (see plugfs -h)\n");
		return EXIT_USAGE;
	}
	if (fuse_session_mount(se, opts.mountpoint) != 0) {
		r = EXIT_FAILURE_RUN;
		goto out_destroy;
	}
	/* Fork before any driver exists, so the drivers are the daemon's children. */
	if (fuse_daemonize(opts.foreground) != 0) {
		r = EXIT_FAILURE_RUN;
		goto out_unmount;
	}
	if ((r = loop_init()) < 0 || (r = setup_signals()) < 0) {
		log_msg(LOG_ERR, "event loop: %s", strerror(-r));
		r = EXIT_FAILURE_RUN;
		goto out_unmount;
	}
	int ffd = fuse_session_fd(se);
	fd_nonblock_cloexec(ffd);
	if (loop_add(ffd, EPOLLIN, on_fuse, NULL) < 0) {
		r = EXIT_FAILURE_RUN;
		goto out_unmount;
	}
	/* The monitor first: a device plugged during the enumeration is then seen by one or both. */
	if ((r = hotplug_init()) < 0)
		log_msg(LOG_ERR, "udev monitor: %s; devices plugged later will not show", strerror(-r));
	if ((r = notify_start(se)) < 0)
		log_msg(LOG_WARNING, "notification thread: %s", strerror(-r));
	if ((r = devices_enumerate()) < 0)
		log_msg(LOG_ERR, "enumerating USB devices: %s", strerror(-r));
	log_msg(LOG_INFO, "mounted on %s", opts.mountpoint);
	notify_systemd("READY=1");

	run();
	notify_systemd("STOPPING=1");
	r = exit_status;
	sup_shutdown();
	devices_free();
	hotplug_free();
out_unmount:
	fuse_session_unmount(se);
	/* A thread stuck in the kernel still holds the session: it must outlive us. */
	if (notify_stop() < 0)
		goto out_free;
out_destroy:
	fuse_session_destroy(se);
out_free:
	free(fbuf.mem);
	return r;
}

int main(int argc, char **argv)
{
	struct fuse_args args;
	int r = 0;

	if (opts_parse(argc, argv, &opts, &args) < 0) {
		r = EXIT_USAGE;
	} else if (opts.show_help) {
		usage(argv[0]);
	} else if (opts.show_version) {
		printf("plugfs %s, FUSE library %s\n", PLUGFS_VERSION, fuse_pkgversion());
	} else if (opts.list) {
		log_init(1, opts.debug);
		if ((r = devices_list(stdout)) < 0)
			fprintf(stderr, "plugfs: enumerating USB devices: %s\n", strerror(-r));
		r = fflush(stdout) != 0 || r < 0 ? EXIT_FAILURE_RUN : 0;
	} else {
		if (opts.driver_user == NULL && getuid() == 0)
			opts.driver_user = strdup("nobody");
		if (opts.driver_user != NULL && getpwnam(opts.driver_user) == NULL) {
			fprintf(stderr, "plugfs: driver_user=%s: no such user\n", opts.driver_user);
			r = EXIT_USAGE;
			goto out;
		}
		/* Only root can change user; an ordinary user's drivers run as that user. */
		if (opts.driver_user != NULL && getuid() != 0)
			fprintf(
			    stderr,
			    "plugfs: driver_user=%s ignored: not started as root, drivers run as uid %u\n",
			    opts.driver_user, (unsigned)getuid());
		if ((r = check_before_mount(opts.mountpoint)) != 0)
			goto out;
		log_init(opts.foreground, opts.debug);
		r = sup_init() < 0 ? EXIT_FAILURE_RUN : run_mounted(&args);
	}
out:
	fuse_opt_free_args(&args);
	opts_free(&opts);
	return r;
}
