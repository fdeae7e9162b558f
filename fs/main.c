/*
 * plugfs: USB devices as files.
 *
 *     plugfs [-f] [-d] [-o OPT[,OPT...]] MOUNTPOINT
 *
 * One thread, one epoll loop over the FUSE fd, every driver socket and a
 * signalfd; deadlines (backoff, heartbeat, request timeouts) come from the
 * supervisor and set the loop's wait.  A FUSE request for a driver file is
 * forwarded and answered when the driver answers, so a blocked read holds no
 * thread.
 *
 * Try it:  make demo
 */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
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

static struct fuse_session *se;
static int exiting;
static int exit_status;
static struct fuse_buf fbuf;

static void usage(const char *prog)
{
	printf("usage: %s [-f] [-d] [-o OPT[,OPT...]] MOUNTPOINT\n"
	       "\n"
	       "plugfs options (see plugfs(1)):\n"
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
	       "\n"
	       "FUSE options:\n",
	       prog);
	fuse_lowlevel_help();
}

static void on_fuse(int fd, uint32_t events, void *arg)
{
	(void)fd;
	(void)events;
	(void)arg;
	for (int budget = 64; budget > 0 && !exiting; budget--) {
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
			exit_status = 1;
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
		return 2;
	}
	if (fuse_session_mount(se, opts.mountpoint) != 0) {
		r = 1;
		goto out_destroy;
	}
	/* Fork before any driver exists, so the drivers are the daemon's children. */
	if (fuse_daemonize(opts.foreground) != 0) {
		r = 1;
		goto out_unmount;
	}
	if ((r = loop_init()) < 0 || (r = setup_signals()) < 0) {
		log_msg(LOG_ERR, "event loop: %s", strerror(-r));
		r = 1;
		goto out_unmount;
	}
	int ffd = fuse_session_fd(se);
	fd_nonblock_cloexec(ffd);
	if (loop_add(ffd, EPOLLIN, on_fuse, NULL) < 0) {
		r = 1;
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

	run();
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
		r = 2;
	} else if (opts.show_help) {
		usage(argv[0]);
	} else if (opts.show_version) {
		printf("plugfs %s, FUSE library %s\n", PLUGFS_VERSION, fuse_pkgversion());
	} else {
		if (opts.driver_user == NULL && getuid() == 0)
			opts.driver_user = strdup("nobody");
		if (opts.driver_user != NULL && getpwnam(opts.driver_user) == NULL) {
			fprintf(stderr, "plugfs: driver_user=%s: no such user\n", opts.driver_user);
			r = 2;
			goto out;
		}
		log_init(opts.foreground, opts.debug);
		r = sup_init() < 0 ? 1 : run_mounted(&args);
	}
out:
	fuse_opt_free_args(&args);
	opts_free(&opts);
	return r;
}
