/*
 * The supervisor (see supervisor.h): spawns one plugfs-driver per device,
 * speaks the pipe protocol with it, forwards FUSE requests and answers them
 * when the driver does, and sends every failure -- exit, signal, EOF,
 * protocol violation, lost heartbeat -- down one path, drv_fail().
 *
 * Nothing a driver sends is trusted: every field of every message is
 * checked, and a violation kills the driver like a crash.
 */
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "config.h"
#include "loop.h"
#include "ops.h"
#include "util.h"

struct outmsg {
	STAILQ_ENTRY(outmsg) link;
	size_t len;
	uint8_t data[];
};

/*
 * The next spare host is started once no driver has been starting for this
 * long: its exec and dynamic loading take a few ms of CPU, which would
 * otherwise delay the start it follows (the first requests to the new
 * driver), and a burst of starts (a crash on several devices at once, a
 * hub plugged in) goes faster without one more process to start each time.
 */
#define SPARE_DELAY_MS 20

/* An unplugged device's driver gets this long to exit after SIGTERM. */
#define DETACH_KILL_MS 1000

/*
 * READs and WRITEs of at least this many bytes take a slot of the shared
 * buffer when one is free; smaller ones travel inline.  At 4 KiB the two
 * paths measure the same (the round trip dominates), and small reads that
 * may block for long (an input report, 8-64 bytes) then hold no slot.
 */
#define SHM_MIN_IO 4096

/* A driver that lets this much pile up unread is not reading: it is hung. */
#define OUTQ_LIMIT   (8u * 1024 * 1024)
#define SOCKBUF_SIZE (1024 * 1024)

/*
 * Unsolicited messages per second.  A driver sends POLL_READY at most once
 * per POLL the daemon sent, and LOG for rare events: FLOOD_LIMIT is a
 * driver gone mad, killed like a crash (a backlog cannot look like one:
 * the socket buffer holds far fewer small packets).  Below that, LOG lines
 * past LOG_RATE a second are dropped and counted, so that a chatty driver
 * cannot fill the log.
 */
#define FLOOD_LIMIT 10000
#define LOG_RATE    50

static void drv_on_sock(int fd, uint32_t events, void *arg);
static void ra_done(struct drv *d, struct request *r, int32_t status, const uint8_t *payload, size_t plen);
static void wb_done(struct drv *d, struct request *r, int32_t status);
static void wb_save(struct drv *d);
static void wb_fail(struct drv *d, int err);
static void wb_forget(struct drv *d, int err, const char *why);
static int wb_owed(struct drv *d, uint32_t handle);
static void wb_replay(struct drv *d);
static uint64_t wb_tick(struct drv *d, uint64_t now);

static char driver_path[4096];
/* driver_user as "UID:GID", looked up once: drivers do not each ask the name service. */
static char driver_ids[32];
static uint32_t next_req_id = 1;
static uint32_t next_handle_id = 1;
static int shutting_down;
static uint8_t msgbuf[PROTO_MAX_MSG];

/*
 * One driver host kept started ahead of need (proto.h, "Spare hosts"):
 * exec'd, its libraries loaded, libusb initialised, its seccomp program
 * generated, blocked reading its socket after saying READY.  A driver start
 * (attach, respawn, ctl restart) hands it the device with START instead of
 * exec'ing a host, and the next spare is started once no driver is
 * starting, so that it does not take the CPU from the one that is.  The
 * spare is the daemon's child like the drivers, reaped by sup_reap(),
 * stopped at shutdown, and belongs to no device: it shows nowhere in the
 * tree.  A spare that dies, says anything but READY, or is not READY
 * within the timeout is killed and replaced after the same backoff as a
 * crashing driver (doubling from backoff_min), so that one that keeps
 * dying cannot make the daemon spin.
 */
static struct {
	pid_t pid; /* 0: none */
	int sock;  /* -1: none, or being killed (waiting for the reap) */
	uint8_t *shm;
	int ready;
	uint64_t started_ms;
	uint64_t spawn_at_ms;	/* none: start the next one from then on (backoff) */
	uint64_t last_start_ms; /* the last time a driver was seen starting */
	unsigned ndeaths;
	uint64_t deaths_ms[DRV_MAX_CRASH_HISTORY];
} spare = {.sock = -1};

static void spare_reaped(int status);

static const char *const state_names[] = {
    [DRV_STARTING] = "starting", [DRV_RUNNING] = "running", [DRV_RESTARTING] = "restarting",
    [DRV_FAILED] = "failed",	 [DRV_GONE] = "gone",
};

const char *drv_state_name(enum drv_state s)
{
	return state_names[s];
}

static void drv_fail(struct drv *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int drv_spawn(struct drv *d);
static void drv_start(struct drv *d);

static uint64_t heartbeat_period_ms(void)
{
	return opts.timeout_ms / 2 > 5 ? opts.timeout_ms / 2 : 5;
}

/* Events name functions; a driver serves all the functions of its device. */
#define drv_event(d, ...)                                                                                    \
	do {                                                                                                 \
		for (unsigned i_ = 0; i_ < (d)->dev->nfuncs; i_++)                                           \
			event_add((d)->dev->funcs[i_]->name, __VA_ARGS__);                                   \
	} while (0)

/*
 * The driver's environment: only what makes it run under a preloaded
 * library (umockdev's emulation in the tests) and a sanitizer's options,
 * each copied from the daemon's own, plus PLUGFS_TEST_* (the knobs of the
 * test-only driver hosts).  The driver wipes even these once it is set up
 * (drivers/sandbox.c); a normal install passes nothing at all.
 */
static const char *const driver_env_names[] = {
    "LD_PRELOAD", "UMOCKDEV_DIR", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS",
};
#define DRIVER_ENV_TEST_PREFIX "PLUGFS_TEST_"
#define DRIVER_ENV_MAX	       (sizeof(driver_env_names) / sizeof(driver_env_names[0]) + 8)
static char *driver_env[DRIVER_ENV_MAX + 1];

static void driver_env_init(void)
{
	extern char **environ;
	unsigned n = 0;

	for (size_t i = 0; i < sizeof(driver_env_names) / sizeof(driver_env_names[0]); i++) {
		const char *v = getenv(driver_env_names[i]);
		if (v != NULL && asprintf(&driver_env[n], "%s=%s", driver_env_names[i], v) >= 0)
			n++;
	}
	for (char **e = environ; *e != NULL && n < DRIVER_ENV_MAX; e++)
		if (strncmp(*e, DRIVER_ENV_TEST_PREFIX, strlen(DRIVER_ENV_TEST_PREFIX)) == 0 &&
		    (driver_env[n] = strdup(*e)) != NULL)
			n++;
	driver_env[n] = NULL;
}

int sup_init(void)
{
	const char *env = getenv("PLUGFS_DRIVER");

	snprintf(driver_path, sizeof(driver_path), "%s",
		 env != NULL && env[0] != '\0' ? env : PLUGFS_LIBEXECDIR "/plugfs-driver");
	if (access(driver_path, X_OK) < 0) {
		log_msg(LOG_ERR, "driver host %s: %s", driver_path, strerror(errno));
		return -errno;
	}
	if (opts.driver_user != NULL) {
		struct passwd *pw = getpwnam(opts.driver_user);
		if (pw == NULL) {
			log_msg(LOG_ERR, "driver_user=%s: no such user", opts.driver_user);
			return -EINVAL;
		}
		snprintf(driver_ids, sizeof(driver_ids), "%u:%u", (unsigned)pw->pw_uid, (unsigned)pw->pw_gid);
	}
	driver_env_init();
	return 0;
}

/* ---- Requests ---- */

static struct request *request_new(struct drv *d, uint16_t type, fuse_req_t req, uint32_t handle, int timed)
{
	struct request *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return NULL;
	r->id = next_req_id++;
	if (next_req_id == 0)
		next_req_id = 1;
	r->type = type;
	r->req = req;
	r->handle = handle;
	r->slot = -1;
	r->deadline_ms = timed ? now_ms() + opts.timeout_ms : 0;
	TAILQ_INSERT_TAIL(&d->requests, r, link);
	return r;
}

/* Slot `slot` (slot_take, below) is free again. */
static void slot_give(struct drv *d, int slot)
{
	d->shm_busy &= ~(1u << slot);
}

/* Frees a request already off d's list: its slot, its handle-to-be, itself. */
static void request_destroy(struct drv *d, struct request *r)
{
	if (r->slot >= 0)
		slot_give(d, r->slot);
	free(r->opening);
	free(r->name);
	free(r);
}

static void request_free(struct drv *d, struct request *r)
{
	TAILQ_REMOVE(&d->requests, r, link);
	request_destroy(d, r);
}

/* A free slot of the shared buffer for a request of `size` bytes, or -1: then it goes inline. */
static int slot_take(struct drv *d, size_t size)
{
	if (!d->shm_mapped || size < SHM_MIN_IO || d->shm_busy == (1u << PROTO_SHM_SLOTS) - 1)
		return -1;
	int slot = __builtin_ctz(~d->shm_busy);
	d->shm_busy |= 1u << slot;
	return slot;
}

/* A sealed memfd of PROTO_SHM_SIZE bytes mapped at *map: the memfd, or -errno. */
static int shm_create(uint8_t **map)
{
	int fd = memfd_create("plugfs-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING), err;

	if (fd < 0)
		return -errno;
	/* Sealed: a driver that shrank it could make every access from the daemon fault. */
	if (ftruncate(fd, PROTO_SHM_SIZE) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
		goto fail;
	void *p = mmap(NULL, PROTO_SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		goto fail;
	*map = p;
	return fd;
fail:
	err = errno;
	close(fd);
	return -err;
}

/* d's shared buffer becomes `map` (NULL: none). */
static void drv_set_shm(struct drv *d, uint8_t *map)
{
	if (d->shm != NULL)
		munmap(d->shm, PROTO_SHM_SIZE);
	d->shm = map;
	d->shm_mapped = 0;
	d->shm_busy = 0;
}

int sup_shm_create(struct drv *d)
{
	uint8_t *map;
	int fd = shm_create(&map);

	if (fd >= 0)
		drv_set_shm(d, map);
	return fd;
}

static struct request *request_find(struct drv *d, uint32_t id)
{
	struct request *r;

	TAILQ_FOREACH(r, &d->requests, link)
	if (r->id == id)
		return r;
	return NULL;
}

static struct handle *handle_find(struct drv *d, uint32_t id)
{
	struct handle *h;

	LIST_FOREACH(h, &d->handles, link)
	if (h->id == id)
		return h;
	return NULL;
}

/* ---- Sending ---- */

static void drv_flush(struct drv *d)
{
	struct outmsg *m;

	while ((m = STAILQ_FIRST(&d->outq)) != NULL) {
		ssize_t n = send(d->sock, m->data, m->len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0) {
			drv_fail(d, NULL);
			return;
		}
		STAILQ_REMOVE_HEAD(&d->outq, link);
		d->outq_bytes -= m->len;
		free(m);
	}
	loop_mod(d->sock, EPOLLIN);
}

/*
 * Sends one message.  On failure the driver has been failed (every request,
 * including one the caller just queued, got its FUSE reply): the caller
 * must only return.
 */
static int drv_send(struct drv *d, struct proto_hdr *h, const void *payload, size_t plen)
{
	size_t len;

	if (d->sock < 0)
		return -EIO;
	len = proto_build(msgbuf, h, payload, plen);
	if (STAILQ_EMPTY(&d->outq)) {
		ssize_t n = send(d->sock, msgbuf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n >= 0)
			return 0;
		if (errno != EAGAIN) {
			drv_fail(d, NULL);
			return -EIO;
		}
	}
	if (d->outq_bytes + len > OUTQ_LIMIT) {
		drv_fail(d, "does not read its socket (%zu bytes queued)", d->outq_bytes);
		return -EIO;
	}
	struct outmsg *m = malloc(sizeof(*m) + len);
	if (m == NULL) {
		drv_fail(d, "out of memory queueing a message");
		return -EIO;
	}
	m->len = len;
	memcpy(m->data, msgbuf, len);
	STAILQ_INSERT_TAIL(&d->outq, m, link);
	d->outq_bytes += len;
	loop_mod(d->sock, EPOLLIN | EPOLLOUT);
	return 0;
}

static void send_cancel(struct drv *d, struct request *r)
{
	struct proto_hdr h = {.type = PROTO_CANCEL, .req = r->id};

	r->cancelled = 1;
	r->interrupted = 0;
	/* The driver now has one more timeout to honour the cancel. */
	r->deadline_ms = now_ms() + opts.timeout_ms;
	drv_send(d, &h, NULL, 0);
}

/* ---- Failure and respawn ---- */

static void describe_status(int status, char *buf, size_t cap)
{
	if (WIFSIGNALED(status))
		snprintf(buf, cap, "%s%s", sigabbrev_np(WTERMSIG(status)) ? "SIG" : "signal ",
			 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
	else
		snprintf(buf, cap, "exit %d", WEXITSTATUS(status));
}

static void fail_requests(struct drv *d, int err)
{
	struct request *r, *next;

	wb_fail(d, err);
	for (r = TAILQ_FIRST(&d->requests); r != NULL; r = next) {
		next = TAILQ_NEXT(r, link);
		/* An fsync or close owed windows the next process will write waits for them. */
		if (r->wb_wait && wb_owed(d, r->handle))
			continue;
		if (r->req != NULL)
			fuse_reply_err(r->req, err);
		request_free(d, r);
	}
	d->ping_req = 0;
}

/* Wakes every poll()er of the driver's files: their next call gets the error. */
static void wake_pollers(struct drv *d)
{
	struct handle *h;

	LIST_FOREACH(h, &d->handles, link)
	if (h->ph != NULL) {
		fuse_lowlevel_notify_poll(h->ph);
		fuse_pollhandle_destroy(h->ph);
		h->ph = NULL;
	}
}

static void drv_close_sock(struct drv *d)
{
	struct outmsg *m;

	if (d->sock >= 0) {
		loop_del(d->sock);
		close(d->sock);
		d->sock = -1;
	}
	while ((m = STAILQ_FIRST(&d->outq)) != NULL) {
		STAILQ_REMOVE_HEAD(&d->outq, link);
		free(m);
	}
	d->outq_bytes = 0;
	/* No message can point into it any more; each process gets a fresh one. */
	if (d->shm != NULL)
		munmap(d->shm, PROTO_SHM_SIZE);
	d->shm = NULL;
	d->shm_mapped = 0;
}

/* Once the dead process is reaped: count the crash and schedule the respawn. */
static void drv_after_death(struct drv *d, const char *how)
{
	uint64_t now = now_ms();

	if (shutting_down || d->state == DRV_GONE)
		return;
	if (d->restart_requested) {
		d->restart_requested = 0;
		d->state = DRV_RESTARTING;
		d->respawn_at_ms = now;
		drv_event(d, "stopped (%s), restart %u now", how, d->restarts + 1);
		return;
	}
	unsigned n = drv_record_crash(d->crashes_ms, &d->ncrashes, DRV_MAX_CRASH_HISTORY, now,
				      (uint64_t)opts.restart_window_s * 1000);
	if (n > opts.restart_max) {
		d->state = DRV_FAILED;
		drv_event(d, "crash %s", how);
		drv_event(d, "failed %u crashes in %u s, not restarting (echo restart > ctl)", n,
			  opts.restart_window_s);
		wb_forget(d, EIO, "the driver failed");
		return;
	}
	unsigned delay = drv_respawn_delay_ms(n, opts.backoff_min_ms, opts.backoff_max_ms);
	d->state = DRV_RESTARTING;
	d->respawn_at_ms = now + delay;
	drv_event(d, "crash %s, restart %u in %u ms", how, d->restarts + 1, delay);
}

/*
 * The one failure path.  `fmt` says why when the daemon decided (protocol
 * error, timeout); NULL when the driver died or hung up on its own, and
 * the exit status will say why.
 */
static void drv_fail(struct drv *d, const char *fmt, ...)
{
	if (d->state != DRV_STARTING && d->state != DRV_RUNNING)
		return;
	if (fmt != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(d->fail_reason, sizeof(d->fail_reason), fmt, ap);
		va_end(ap);
		log_msg(LOG_WARNING, "%s: driver pid %d: %s", d->dev->funcs[0]->name, (int)d->pid,
			d->fail_reason);
	}
	wb_save(d);
	drv_close_sock(d);
	d->generation++;
	fail_requests(d, EIO);
	wake_pollers(d);
	d->state = DRV_RESTARTING;
	d->respawn_at_ms = 0;
	tree_driver_settled(d->dev);
	if (!d->reaped && d->pid > 0)
		kill(d->pid, SIGKILL);
	/* The respawn waits for the reap: the old process may still hold the device. */
}

static struct drv *drv_by_pid(pid_t pid)
{
	struct usbdev *dev;

	TAILQ_FOREACH(dev, &usbdevs, link)
	if (dev->drv != NULL && dev->drv->pid == pid)
		return dev->drv;
	return NULL;
}

void sup_reap(void)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		struct drv *d = drv_by_pid(pid);
		char how[160];

		if (d == NULL && pid == spare.pid)
			spare_reaped(status);
		if (d == NULL)
			continue;
		d->pid = 0;
		d->reaped = 1;
		if (d->fail_reason[0] == '\0')
			describe_status(status, how, sizeof(how));
		else
			snprintf(how, sizeof(how), "%s", d->fail_reason);
		log_msg(LOG_DEBUG, "%s: driver pid %d reaped (%s)", d->dev->funcs[0]->name, (int)pid, how);
		/*
		 * A driver let go (unplug, unmount) exits or is stopped by the
		 * daemon's SIGTERM or SIGKILL; any other signal (SIGSYS: a call
		 * its sandbox forbids on the way out) is no crash to respawn, but
		 * still a bug to show.
		 */
		if ((shutting_down || d->state == DRV_GONE) && WIFSIGNALED(status) &&
		    WTERMSIG(status) != SIGKILL && WTERMSIG(status) != SIGTERM) {
			char sig[32];
			describe_status(status, sig, sizeof(sig));
			log_msg(LOG_WARNING, "%s: driver pid %d died of %s on its way out",
				d->dev->funcs[0]->name, (int)pid, sig);
		}
		if (d->state == DRV_GONE) {
			usbdev_release_if_unused(d->dev);
			continue;
		}
		drv_fail(d, NULL);
		if (d->state == DRV_RESTARTING)
			drv_after_death(d, how);
	}
}

static void drv_respawn(struct drv *d)
{
	d->restarts++;
	drv_start(d);
}

int sup_restart(struct drv *d)
{
	switch (d->state) {
	case DRV_FAILED:
		d->ncrashes = 0;
		drv_respawn(d);
		return 0;
	case DRV_RESTARTING:
		/* Respawn now; if the old process is not reaped yet, as soon as it is. */
		d->respawn_at_ms = now_ms();
		return 0;
	case DRV_STARTING:
	case DRV_RUNNING:
		drv_fail(d, "restart requested");
		/* Not a crash: no backoff, no intensity count (drv_after_death). */
		d->ncrashes = 0;
		d->restart_requested = 1;
		return 0;
	default:
		return -ENODEV;
	}
}

/* ---- Spawning ---- */

/*
 * The signals the daemon ignores (SIGPIPE, SIGHUP), which exec would pass
 * on as ignored; handled ones are reset by exec itself.  Resetting only
 * these, not all 64, spares the spawn as many sigaction calls (0.2 ms a
 * start here).  Looked up at the first spawn, once the daemon's own
 * dispositions are set (fs/main.c does before any device is attached).
 */
static const sigset_t *ignored_signals(void)
{
	static sigset_t set;
	static int ready;

	if (!ready) {
		sigemptyset(&set);
		for (int sig = 1; sig < NSIG; sig++) {
			struct sigaction sa;
			if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
				sigaddset(&set, sig);
		}
		ready = 1;
	}
	return &set;
}

/*
 * Starts a driver host: argv, the protocol socket on PROTO_DRIVER_FD and a
 * fresh shared buffer on PROTO_SHM_FD (mapped at *shm; NULL when it could
 * not be made: the host then serves inline).  `first`, if not NULL, is
 * queued on the socket before the exec (a START: the host then finds it
 * waiting).  Returns 0 with *pid and *sock (nonblocking, the daemon's
 * end), or -errno with the reason in `why`.
 */
static int host_spawn(char **argv, const char *name, const uint8_t *first, size_t first_len, pid_t *pid,
		      int *sock, uint8_t **shm, char *why, size_t whycap)
{
	int sv[2], r, shmfd;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		r = errno;
		snprintf(why, whycap, "socketpair: %s", strerror(r));
		return -r;
	}
	for (int i = 0; i < 2; i++) {
		int sz = SOCKBUF_SIZE;
		setsockopt(sv[i], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(sv[i], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	if (first != NULL && send(sv[0], first, first_len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		r = errno;
		snprintf(why, whycap, "queueing START: %s", strerror(r));
		close(sv[0]);
		close(sv[1]);
		return -r;
	}
	*shm = NULL;
	if ((shmfd = shm_create(shm)) < 0)
		log_msg(LOG_WARNING, "%s: no shared buffer (%s): data goes through the socket", name,
			strerror(-shmfd));

	sigemptyset(&none);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], PROTO_DRIVER_FD);
	if (shmfd >= 0)
		posix_spawn_file_actions_adddup2(&fa, shmfd, PROTO_SHM_FD);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addclosefrom_np(&fa, (shmfd >= 0 ? PROTO_SHM_FD : PROTO_DRIVER_FD) + 1);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, ignored_signals());
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	r = posix_spawn(pid, driver_path, &fa, &attr, argv, driver_env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(sv[1]);
	if (shmfd >= 0)
		close(shmfd);
	if (r != 0) {
		if (*shm != NULL)
			munmap(*shm, PROTO_SHM_SIZE);
		*shm = NULL;
		close(sv[0]);
		*pid = 0;
		snprintf(why, whycap, "cannot start the driver host: %s", strerror(r));
		return -r;
	}
	*sock = sv[0];
	fd_nonblock_cloexec(*sock);
	return 0;
}

/* The command line's options every host gets, device or spare; returns argc. */
static int host_options(char **argv)
{
	int argc = 0;

	argv[argc++] = driver_path;
	if (log_verbose)
		argv[argc++] = "-v";
	if (driver_ids[0] != '\0') {
		argv[argc++] = "--user";
		argv[argc++] = driver_ids;
	}
	return argc;
}

/*
 * The device part of a host's command line, as plugfs-driver takes it
 * (and a START carries it): [--detach] DEVNODE, then one DRIVER:IFNUM per
 * interface in index order (extra units come from HELLO).  `binds`
 * holds the DRIVER:IFNUM strings.  Returns the count.
 */
static int device_args(struct usbdev *dev, char **args, char binds[][PLUGFS_NAME_MAX + 8])
{
	int n = 0;

	if (dev->detach)
		args[n++] = "--detach";
	args[n++] = dev->devnode;
	for (unsigned i = 0; i < dev->nfuncs; i++) {
		if (dev->funcs[i]->unit != 0)
			continue;
		snprintf(binds[i], PLUGFS_NAME_MAX + 8, "%s:%u", dev->funcs[i]->bind->name,
			 dev->funcs[i]->ifnum);
		args[n++] = binds[i];
	}
	return n;
}

static int spare_take(struct drv *d);

static int drv_spawn(struct drv *d)
{
	struct usbdev *dev = d->dev;
	char *argv[8 + PLUGFS_MAX_FUNCS];
	char binds[PLUGFS_MAX_FUNCS][PLUGFS_NAME_MAX + 8];
	uint8_t *shm;
	int argc, r;

	d->fail_reason[0] = '\0';
	if (spare_take(d) < 0) {
		argc = host_options(argv);
		argc += device_args(dev, argv + argc, binds);
		argv[argc] = NULL;
		r = host_spawn(argv, dev->funcs[0]->name, NULL, 0, &d->pid, &d->sock, &shm, d->fail_reason,
			       sizeof(d->fail_reason));
		if (r < 0) {
			d->pid = 0;
			d->reaped = 1;
			return r;
		}
		drv_set_shm(d, shm);
	}
	loop_add(d->sock, EPOLLIN, drv_on_sock, d);
	d->reaped = 0;
	d->state = DRV_STARTING;
	d->started_ms = now_ms();
	d->ping_req = 0;
	d->window_ms = d->started_ms;
	d->window_msgs = d->window_logs = d->logs_dropped = 0;
	log_msg(LOG_DEBUG, "%s: driver pid %d started", dev->funcs[0]->name, (int)d->pid);
	return 0;
}

/* ---- The spare host ---- */

static void spare_close(void)
{
	if (spare.sock >= 0) {
		loop_del(spare.sock);
		close(spare.sock);
		spare.sock = -1;
	}
	if (spare.shm != NULL)
		munmap(spare.shm, PROTO_SHM_SIZE);
	spare.shm = NULL;
	spare.ready = 0;
}

/* Gives up on the spare: the reap (sup_reap) counts its death and schedules the next. */
static void spare_kill(const char *why)
{
	if (why != NULL)
		log_msg(LOG_WARNING, "spare driver host pid %d: %s", (int)spare.pid, why);
	spare_close();
	if (spare.pid > 0)
		kill(spare.pid, SIGKILL);
}

static void spare_on_sock(int fd, uint32_t events, void *arg)
{
	uint8_t buf[PROTO_HDR_LEN + 1];
	struct proto_hdr h;
	const char *why = NULL;
	(void)events;
	(void)arg;

	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		return spare_kill(NULL); /* it died: its exit status says why */
	if ((size_t)n > sizeof(buf) || proto_decode_hdr(buf, (size_t)n, &h, &why) < 0)
		return spare_kill(why != NULL ? why : "message too long");
	if (h.type != PROTO_READY || spare.ready || h.flags != 0 || h.req != 0 || h.handle != 0 ||
	    h.file != 0 || h.size != 0 || h.offset != 0 || h.status != 0)
		return spare_kill("protocol error: a spare host sends one plain READY");
	spare.ready = 1;
	log_msg(LOG_DEBUG, "spare driver host pid %d ready after %llu ms", (int)spare.pid,
		(unsigned long long)(now_ms() - spare.started_ms));
}

/*
 * Counts a spare's death (or failed spawn) in its own crash window and
 * schedules the next spare after the backoff for that many deaths plus
 * `extra`; returns the delay.
 */
static unsigned spare_death(unsigned extra)
{
	uint64_t now = now_ms();
	unsigned n = drv_record_crash(spare.deaths_ms, &spare.ndeaths, DRV_MAX_CRASH_HISTORY, now,
				      (uint64_t)opts.restart_window_s * 1000);
	unsigned delay = drv_respawn_delay_ms(n + extra, opts.backoff_min_ms, opts.backoff_max_ms);

	spare.spawn_at_ms = now + delay;
	return delay;
}

static void spare_spawn(void)
{
	char *argv[8], why[128];
	int argc = host_options(argv);

	argv[argc++] = "--spare";
	argv[argc] = NULL;
	if (host_spawn(argv, "spare", NULL, 0, &spare.pid, &spare.sock, &spare.shm, why, sizeof(why)) < 0) {
		log_msg(LOG_WARNING, "spare driver host: %s", why);
		spare.pid = 0;
		spare.sock = -1;
		/* As if it had died, and never at once: the backoff keeps a failing spawn from spinning. */
		spare_death(1);
		return;
	}
	loop_add(spare.sock, EPOLLIN, spare_on_sock, NULL);
	spare.ready = 0;
	spare.started_ms = now_ms();
	log_msg(LOG_DEBUG, "spare driver host pid %d started", (int)spare.pid);
}

/* The spare process `pid` was reaped: count the death unless the daemon is stopping. */
static void spare_reaped(int status)
{
	char how[64];

	spare_close();
	spare.pid = 0;
	if (shutting_down)
		return;
	/* The first death is replaced at once, like a driver's first crash; then backoff_min doubling. */
	unsigned delay = spare_death(0);
	describe_status(status, how, sizeof(how));
	log_msg(LOG_WARNING, "spare driver host died (%s); next one in %u ms", how, delay);
}

/*
 * Hands the spare, if it is ready, d's device: START on its socket, and
 * the process, socket and shared buffer become d's.  0, or -EAGAIN (no
 * ready spare, or it could not take the message: then it is killed) and
 * the caller starts a host of its own.
 */
static int spare_take(struct drv *d)
{
	static uint8_t payload[PROTO_MAX_IO];
	char *args[4 + PLUGFS_MAX_FUNCS];
	char binds[PLUGFS_MAX_FUNCS][PLUGFS_NAME_MAX + 8];
	struct usbdev *dev = d->dev;
	struct proto_hdr h = {.type = PROTO_START};
	int n;

	if (!spare.ready || spare.sock < 0)
		return -EAGAIN;
	int nargs = device_args(dev, args, binds);
	n = proto_encode_start(payload, sizeof(payload), (const char *const *)args, (unsigned)nargs,
			       dev->descriptors, dev->descriptors_len, &h.size);
	if (n == -ENOSPC) /* the host reads descriptors this large from the node itself */
		n = proto_encode_start(payload, sizeof(payload), (const char *const *)args, (unsigned)nargs,
				       NULL, 0, &h.size);
	if (n < 0)
		return -EAGAIN;
	size_t len = proto_build(msgbuf, &h, payload, (size_t)n);
	if (send(spare.sock, msgbuf, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
		char why[64];
		snprintf(why, sizeof(why), "START: %s", strerror(errno));
		spare_kill(why);
		return -EAGAIN;
	}
	loop_del(spare.sock);
	d->pid = spare.pid;
	d->sock = spare.sock;
	drv_set_shm(d, spare.shm);
	spare.pid = 0;
	spare.sock = -1;
	spare.shm = NULL;
	spare.ready = 0;
	log_msg(LOG_DEBUG, "%s: spare driver host pid %d takes the device", dev->funcs[0]->name, (int)d->pid);
	return 0;
}

/*
 * The spare's deadlines, from sup_tick(): start one when there is none,
 * its backoff is over and no driver has been starting (`starting`) for
 * SPARE_DELAY_MS; kill one not ready within the timeout.  Returns the
 * next deadline or 0.
 */
static uint64_t spare_tick(uint64_t now, int starting)
{
	if (shutting_down)
		return 0;
	if (starting)
		spare.last_start_ms = now;
	if (spare.pid > 0 && spare.sock >= 0 && !spare.ready) {
		if (now >= spare.started_ms + opts.timeout_ms) {
			spare_kill("not ready within the timeout");
			return 0;
		}
		return spare.started_ms + opts.timeout_ms;
	}
	if (spare.pid > 0 || starting)
		return 0;
	uint64_t at = spare.spawn_at_ms > spare.last_start_ms + SPARE_DELAY_MS
			  ? spare.spawn_at_ms
			  : spare.last_start_ms + SPARE_DELAY_MS;
	if (now < at)
		return at;
	spare_spawn();
	return spare.pid > 0 ? spare.started_ms + opts.timeout_ms : spare.spawn_at_ms;
}

static void drv_start(struct drv *d)
{
	if (drv_spawn(d) < 0)
		drv_after_death(d, d->fail_reason);
}

int sup_attach(struct usbdev *dev)
{
	struct drv *d = calloc(1, sizeof(*d));

	if (d == NULL)
		return -ENOMEM;
	d->dev = dev;
	d->sock = -1;
	d->reaped = 1;
	TAILQ_INIT(&d->requests);
	LIST_INIT(&d->handles);
	STAILQ_INIT(&d->outq);
	STAILQ_INIT(&d->wb_saved);
	dev->drv = d;
	drv_start(d);
	return 0;
}

/*
 * The device is gone.  Whatever the driver was doing (starting, running,
 * waiting out a backoff, failed), it is stopped for good: EOF on its socket
 * and SIGTERM ask it to exit, SIGKILL follows DETACH_KILL_MS later if it
 * has not (drv_tick), and sup_reap() reaps it.  No state leads out of
 * DRV_GONE, so nothing is respawned.
 */
void sup_detach(struct usbdev *dev)
{
	struct drv *d = dev->drv;
	enum drv_state was = d->state;

	drv_close_sock(d);
	d->generation++;
	d->state = DRV_GONE;
	dev->gone = 1;
	fail_requests(d, ENODEV);
	wb_forget(d, ENODEV, "the device was unplugged");
	wake_pollers(d);
	if (!d->reaped && d->pid > 0) {
		kill(d->pid, SIGTERM);
		d->kill_at_ms = now_ms() + DETACH_KILL_MS;
	}
	drv_event(d, "detach %s %04x:%04x (driver was %s)", dev->sysname, dev->desc.vendor_id,
		  dev->desc.product_id, drv_state_name(was));
	/* Lookups waiting for a HELLO that will not come: they now find nothing. */
	tree_driver_settled(dev);
}

/* ---- Receiving ---- */

static int valid_errno(int32_t status)
{
	return status < 0 && status >= -4095;
}

static void on_hello(struct drv *d, uint16_t flags, const uint8_t *payload, size_t plen)
{
	static struct proto_hello hello;
	const char *why = NULL;
	struct usbdev *dev = d->dev;

	if (d->state != DRV_STARTING)
		return drv_fail(d, "protocol error: HELLO when already running");
	if (proto_decode_hello(payload, plen, &hello, &why) < 0)
		return drv_fail(d, "protocol error: %s", why);
	for (unsigned i = 0; i < hello.nfiles; i++)
		if (function_of(dev, hello.files[i].function, 0) == NULL)
			return drv_fail(d, "protocol error: HELLO names function %u, not on its command line",
					hello.files[i].function);
	/* A unit announced for the first time gets its directory; it stays across respawns. */
	for (unsigned i = 0; i < hello.nfiles; i++) {
		const struct proto_file *pf = &hello.files[i];
		if (pf->unit != 0 && function_of(dev, pf->function, pf->unit) == NULL &&
		    function_new_unit(function_of(dev, pf->function, 0), pf->unit) == NULL)
			return drv_fail(d, "cannot add unit %u of function %u (at most %d functions)",
					pf->unit, pf->function, PLUGFS_MAX_FUNCS);
	}
	for (unsigned f = 0; f < dev->nfuncs; f++) {
		struct function *fn = dev->funcs[f];
		for (unsigned s = 0; s < fn->nfiles; s++)
			fn->files[s].present = 0;
	}
	for (unsigned i = 0; i < hello.nfiles; i++) {
		const struct proto_file *pf = &hello.files[i];
		struct function *fn = function_of(dev, pf->function, pf->unit);
		unsigned s;

		/* Files keep their slot (and so their inode number) across respawns. */
		for (s = 0; s < fn->nfiles; s++)
			if (strcmp(fn->files[s].name, pf->name) == 0)
				break;
		if (s == fn->nfiles) {
			if (fn->nfiles == PLUGFS_MAX_SLOTS)
				return drv_fail(d, "protocol error: more than %d file names over its HELLOs",
						PLUGFS_MAX_SLOTS);
			struct dfile *nf = realloc(fn->files, (fn->nfiles + 1) * sizeof(*nf));
			if (nf == NULL)
				return drv_fail(d, "out of memory for files");
			fn->files = nf;
			fn->nfiles++;
			memcpy(fn->files[s].name, pf->name, sizeof(pf->name));
		}
		struct dfile *df = &fn->files[s];
		df->id = pf->id;
		df->kind = pf->kind;
		df->mode = pf->mode;
		df->size = pf->size;
		df->present = 1;
	}
	/* A driver that maps no buffer (or gets none) is served inline. */
	d->shm_mapped = (flags & PROTO_F_SHM) && d->shm != NULL;
	d->state = DRV_RUNNING;
	d->next_ping_ms = now_ms() + heartbeat_period_ms();
	tree_driver_settled(dev);
	if (d->restarts == 0)
		drv_event(d, "bind %s pid %d", dev->funcs[0]->bind->name, (int)d->pid);
	else
		drv_event(d, "restart %u pid %d running after %llu ms", d->restarts, (int)d->pid,
			  (unsigned long long)(now_ms() - d->started_ms));
	wb_replay(d);
}

/* The kernel gave up on an open or create it asked for: it will never release the handle. */
static void handle_abandon(struct drv *d, struct handle *h)
{
	struct proto_hdr rel = {.type = PROTO_RELEASE, .handle = h->id};

	LIST_REMOVE(h, link);
	free(h);
	drv_send(d, &rel, NULL, 0);
}

static void complete_open(struct drv *d, struct request *r, int32_t status)
{
	struct handle *h = r->opening;

	if (status < 0) {
		if (r->req != NULL)
			fuse_reply_err(r->req, -status);
		return;
	}
	if (r->req == NULL) {
		/* The open was interrupted or timed out: nobody will release it. */
		struct proto_hdr rel = {.type = PROTO_RELEASE, .handle = h->id};
		drv_send(d, &rel, NULL, 0);
		return;
	}
	r->opening = NULL;
	LIST_INSERT_HEAD(&d->handles, h, link);
	struct fuse_file_info fi = {0};
	fi.fh = (uintptr_t)h;
	fi.direct_io = 1;
	fi.nonseekable = (handle_kind(h) & PROTO_KIND_MASK) == PROTO_KIND_STREAM;
	/* Answered: a failure while sending the RELEASE must not answer it again. */
	fuse_req_t req = r->req;
	r->req = NULL;
	if (fuse_reply_open(req, &fi) != 0)
		handle_abandon(d, h);
}

/* ---- Replies about nodes of driver-owned trees ---- */

static int carries_nodes(uint16_t type)
{
	return type == PROTO_LOOKUP || type == PROTO_GETATTR || type == PROTO_READDIR || type == PROTO_CREATE;
}

/*
 * Checks every record of a successful LOOKUP/GETATTR/READDIR/CREATE reply
 * against what was asked; 0, or -EPROTO once the driver has been failed.
 */
static int check_nodes(struct drv *d, struct request *r, int32_t status, const uint8_t *payload, size_t plen)
{
	const char *why = NULL;
	struct proto_node pn;
	size_t off = 0;
	unsigned count = 0;

	if ((size_t)status != plen) {
		drv_fail(d, "protocol error: %s reply status %d with %zu bytes", proto_type_name(r->type),
			 status, plen);
		return -EPROTO;
	}
	if (r->type == PROTO_READDIR && plen > r->size) {
		drv_fail(d, "protocol error: READDIR reply of %zu bytes for %u asked", plen, r->size);
		return -EPROTO;
	}
	while (off < plen) {
		if (proto_decode_node(payload, plen, &off, &pn, &why) < 0) {
			drv_fail(d, "protocol error: %s reply: %s", proto_type_name(r->type), why);
			return -EPROTO;
		}
		count++;
		if (r->type == PROTO_READDIR)
			continue;
		if (count > 1)
			why = "more than one node";
		else if (r->name != NULL && strcmp(pn.name, r->name) != 0)
			why = "a node of another name than asked";
		else if (r->type == PROTO_GETATTR && pn.id != r->node)
			why = "another node than asked";
		else if (r->type == PROTO_CREATE && pn.kind != PROTO_KIND_BLOCK)
			why = "created something else than a file";
		if (why != NULL) {
			drv_fail(d, "protocol error: %s reply: %s", proto_type_name(r->type), why);
			return -EPROTO;
		}
	}
	if (r->type != PROTO_READDIR && count == 0) {
		drv_fail(d, "protocol error: %s reply without a node", proto_type_name(r->type));
		return -EPROTO;
	}
	return 0;
}

/* Decodes the one record of a checked reply. */
static void first_node(const uint8_t *payload, size_t plen, struct proto_node *pn)
{
	size_t off = 0;

	proto_decode_node(payload, plen, &off, pn, NULL);
}

/* Answers a checked, successful LOOKUP, GETATTR or READDIR. */
static void answer_nodes(struct request *r, const uint8_t *payload, size_t plen)
{
	struct function *fn = function_by_id(r->fn_id);
	struct proto_node pn;

	if (fn == NULL)
		return (void)fuse_reply_err(r->req, ENODEV);
	if (r->type == PROTO_LOOKUP || r->type == PROTO_GETATTR) {
		struct fuse_entry_param e = {0};
		first_node(payload, plen, &pn);
		tree_node_stat(fn, &pn, &e.attr);
		if (r->type == PROTO_GETATTR)
			return (void)fuse_reply_attr(r->req, &e.attr, 0);
		e.ino = e.attr.st_ino;
		return (void)fuse_reply_entry(r->req, &e);
	}
	/* READDIR: as many entries as fit in what FUSE asked; the rest come at the next call. */
	char *buf = malloc(r->size);
	size_t used = 0, off = 0;
	uint64_t next = r->dir_off;
	if (buf == NULL)
		return (void)fuse_reply_err(r->req, ENOMEM);
	while (off < plen) {
		struct stat st;
		proto_decode_node(payload, plen, &off, &pn, NULL);
		tree_node_stat(fn, &pn, &st);
		size_t need = fuse_add_direntry(r->req, NULL, 0, pn.name, NULL, 0);
		if (used + need > r->size)
			break;
		fuse_add_direntry(r->req, buf + used, r->size - used, pn.name, &st, (off_t)++next);
		used += need;
	}
	fuse_reply_buf(r->req, buf, used);
	free(buf);
}

static void complete_create(struct drv *d, struct request *r, int32_t status, const uint8_t *payload,
			    size_t plen)
{
	struct handle *h = r->opening;
	struct function *fn = function_by_id(r->fn_id);
	struct proto_node pn;

	if (status < 0) {
		if (r->req != NULL)
			fuse_reply_err(r->req, -status);
		return;
	}
	first_node(payload, plen, &pn);
	if (r->req == NULL || fn == NULL) {
		struct proto_hdr rel = {.type = PROTO_RELEASE, .handle = h->id};
		if (r->req != NULL)
			fuse_reply_err(r->req, ENODEV);
		drv_send(d, &rel, NULL, 0);
		return;
	}
	r->opening = NULL;
	h->node = pn.id;
	LIST_INSERT_HEAD(&d->handles, h, link);
	struct fuse_entry_param e = {0};
	struct fuse_file_info fi = {0};
	tree_node_stat(fn, &pn, &e.attr);
	e.ino = e.attr.st_ino;
	fi.fh = (uintptr_t)h;
	fi.direct_io = 1;
	fi.flags = r->open_flags;
	fuse_req_t req = r->req;
	r->req = NULL;
	if (fuse_reply_create(req, &e, &fi) != 0)
		handle_abandon(d, h);
}

static void on_reply(struct drv *d, const struct proto_hdr *h, const uint8_t *payload, size_t plen)
{
	struct request *r = request_find(d, h->req);

	if (r == NULL || r->wb_wait)
		return drv_fail(d, "protocol error: reply to unknown request %u", h->req);
	if (h->status < 0 && !valid_errno(h->status))
		return drv_fail(d, "protocol error: reply status %d", h->status);
	if (plen > 0 && r->type != PROTO_READ && !carries_nodes(r->type))
		return drv_fail(d, "protocol error: data in a %s reply", proto_type_name(r->type));
	if (h->flags & PROTO_F_SHM) {
		/* Its own slot only (the codec checked the buffer's bounds). */
		uint64_t start = (uint64_t)r->slot * PROTO_SHM_SLOT;
		if (r->type != PROTO_READ || r->slot < 0 || h->shm < start ||
		    (uint64_t)h->shm + (uint64_t)h->status > start + PROTO_SHM_SLOT)
			return drv_fail(d, "protocol error: reply to request %u at %u+%d, outside its slot",
					h->req, h->shm, h->status);
		payload = d->shm + h->shm;
		plen = (size_t)h->status;
	}
	if (carries_nodes(r->type) && h->status >= 0 && check_nodes(d, r, h->status, payload, plen) < 0)
		return; /* failed */
	switch (r->type) {
	case PROTO_OPEN:
	case PROTO_CTL:
	case PROTO_PING:
	case PROTO_UNLINK:
	case PROTO_FLUSH:
		if (h->status > 0)
			return drv_fail(d, "protocol error: %s reply status %d", proto_type_name(r->type),
					h->status);
		break;
	case PROTO_READ:
		if (h->status > (int32_t)r->size || (h->status >= 0 && (size_t)h->status != plen))
			return drv_fail(d, "protocol error: read reply of %d bytes (%zu sent) for %u asked",
					h->status, plen, r->size);
		break;
	case PROTO_WRITE:
		if (h->status > (int32_t)r->size)
			return drv_fail(d, "protocol error: wrote %d bytes of %u", h->status, r->size);
		break;
	case PROTO_POLL:
		if (h->status > 0 && (h->status & ~(POLLIN | POLLOUT | POLLERR | POLLHUP | POLLPRI |
						    POLLRDNORM | POLLWRNORM | POLLRDBAND | POLLWRBAND)))
			return drv_fail(d, "protocol error: poll events %#x", h->status);
		break;
	}

	if (r->ra)
		return ra_done(d, r, h->status, payload, plen);
	if (r->wb || r->replay)
		return wb_done(d, r, h->status);
	/*
	 * Off the list before answering: completing an open may send a RELEASE,
	 * and a failed send fails (and frees) every request still listed.
	 */
	TAILQ_REMOVE(&d->requests, r, link);
	switch (r->type) {
	case PROTO_OPEN:
		complete_open(d, r, h->status);
		break;
	case PROTO_CREATE:
		complete_create(d, r, h->status, payload, plen);
		break;
	case PROTO_LOOKUP:
	case PROTO_GETATTR:
	case PROTO_READDIR:
		if (r->req != NULL && h->status < 0)
			fuse_reply_err(r->req, -h->status);
		else if (r->req != NULL)
			answer_nodes(r, payload, plen);
		break;
	case PROTO_PING:
		if (d->ping_req == r->id)
			d->ping_req = 0;
		break;
	default:
		if (r->req == NULL)
			break;
		if (h->status < 0)
			fuse_reply_err(r->req, -h->status);
		else if (r->type == PROTO_READ)
			fuse_reply_buf(r->req, plen > 0 ? (const char *)payload : NULL, plen);
		else if (r->type == PROTO_WRITE)
			fuse_reply_write(r->req, (size_t)h->status);
		else if (r->type == PROTO_CTL)
			fuse_reply_write(r->req, r->size);
		else if (r->type == PROTO_UNLINK || r->type == PROTO_FLUSH)
			fuse_reply_err(r->req, 0);
		else if (r->type == PROTO_POLL)
			fuse_reply_poll(r->req, (unsigned)h->status);
		break;
	}
	request_destroy(d, r);
}

/* Counts an unsolicited message: -EPROTO (driver failed) for a flood. */
static int unsolicited(struct drv *d)
{
	uint64_t now = now_ms();

	if (now >= d->window_ms + 1000) {
		if (d->logs_dropped > 0)
			log_msg(LOG_WARNING, "%s: driver: %u log lines dropped (more than %d a second)",
				d->dev->funcs[0]->name, d->logs_dropped, LOG_RATE);
		d->window_ms = now;
		d->window_msgs = d->window_logs = d->logs_dropped = 0;
	}
	if (++d->window_msgs > FLOOD_LIMIT) {
		drv_fail(d, "protocol error: flood of more than %d LOG/POLL_READY messages in 1 s",
			 FLOOD_LIMIT);
		return -EPROTO;
	}
	return 0;
}

static void on_log(struct drv *d, int32_t prio, const uint8_t *payload, size_t plen)
{
	char text[PROTO_MAX_LOG + 1];

	if (++d->window_logs > LOG_RATE) {
		d->logs_dropped++;
		return;
	}

	for (size_t i = 0; i < plen; i++)
		text[i] = payload[i] >= ' ' && payload[i] < 0x7f ? (char)payload[i] : '?';
	text[plen] = '\0';
	if (prio < LOG_EMERG || prio > LOG_DEBUG)
		prio = LOG_NOTICE;
	/* A driver is not allowed to sound like the daemon's own alarms. */
	if (prio < LOG_ERR)
		prio = LOG_ERR;
	log_msg(prio, "%s: driver: %s", d->dev->funcs[0]->name, text);
}

int sup_on_message(struct drv *d, const uint8_t *buf, size_t n)
{
	const char *why = NULL;
	struct proto_hdr h;

	if (n > PROTO_MAX_MSG) {
		drv_fail(d, "protocol error: message of %zu bytes", n);
		return -EPROTO;
	}
	if (proto_decode_hdr(buf, n, &h, &why) < 0) {
		drv_fail(d, "protocol error: %s", why);
		return -EPROTO;
	}
	const uint8_t *payload = buf + PROTO_HDR_LEN;
	size_t plen = h.len - PROTO_HDR_LEN;
	switch (h.type) {
	case PROTO_HELLO:
		on_hello(d, h.flags, payload, plen);
		break;
	case PROTO_REPLY:
		if (d->state != DRV_RUNNING) {
			drv_fail(d, "protocol error: REPLY before HELLO");
			return -EPROTO;
		}
		on_reply(d, &h, payload, plen);
		break;
	case PROTO_POLL_READY: {
		if (unsolicited(d) < 0)
			return -EPROTO;
		struct handle *hd = handle_find(d, h.handle);
		/* Unknown handles are fine: the release may have crossed the message. */
		if (hd != NULL && hd->ph != NULL && hd->generation == d->generation) {
			fuse_lowlevel_notify_poll(hd->ph);
			fuse_pollhandle_destroy(hd->ph);
			hd->ph = NULL;
		}
		break;
	}
	case PROTO_LOG:
		if (unsolicited(d) < 0)
			return -EPROTO;
		on_log(d, h.status, payload, plen);
		break;
	default:
		drv_fail(d, "protocol error: %s is not a driver message", proto_type_name(h.type));
		return -EPROTO;
	}
	return d->state == DRV_STARTING || d->state == DRV_RUNNING ? 0 : -EPROTO;
}

static void drv_on_sock(int fd, uint32_t events, void *arg)
{
	struct drv *d = arg;

	if (events & EPOLLOUT)
		drv_flush(d);
	if (d->sock != fd)
		return; /* the flush failed it */
	/*
	 * One message per wake-up: epoll reports the socket again while more
	 * are queued, so a reply that comes alone (one request in flight, the
	 * usual case) costs no second recv() to learn that none follows, and
	 * a chatty driver takes turns with the others.
	 */
	ssize_t n = recv(fd, msgbuf, sizeof(msgbuf), MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0)
		return drv_fail(d, NULL);
	sup_on_message(d, msgbuf, (size_t)n);
}

/* ---- Timing ---- */

static uint64_t earlier(uint64_t a, uint64_t b)
{
	if (a == 0)
		return b;
	if (b == 0)
		return a;
	return a < b ? a : b;
}

static uint64_t drv_tick(struct drv *d, uint64_t now)
{
	uint64_t next = 0;
	struct request *r, *tmp;

	switch (d->state) {
	case DRV_STARTING:
		if (now >= d->started_ms + opts.timeout_ms) {
			drv_event(d, "timeout no HELLO from pid %d within %u ms", (int)d->pid,
				  opts.timeout_ms);
			drv_fail(d, "no HELLO within %u ms", opts.timeout_ms);
			return 0;
		}
		return d->started_ms + opts.timeout_ms;
	case DRV_RESTARTING:
		if (!d->reaped || d->respawn_at_ms == 0)
			return 0;
		if (now >= d->respawn_at_ms) {
			drv_respawn(d);
			return d->state == DRV_STARTING ? d->started_ms + opts.timeout_ms : 0;
		}
		return d->respawn_at_ms;
	case DRV_RUNNING:
		break;
	case DRV_GONE:
		if (d->reaped || d->pid <= 0)
			return 0;
		if (now >= d->kill_at_ms) {
			log_msg(LOG_WARNING, "%s: driver pid %d did not exit after the unplug, killing it",
				d->dev->funcs[0]->name, (int)d->pid);
			kill(d->pid, SIGKILL);
			/* Once is enough; the reap follows. */
			d->kill_at_ms = UINT64_MAX;
			return 0;
		}
		return d->kill_at_ms;
	default:
		return 0;
	}

	if (d->ping_req != 0 && now >= d->ping_sent_ms + opts.timeout_ms) {
		drv_event(d, "timeout heartbeat lost: pid %d did not answer in %u ms", (int)d->pid,
			  opts.timeout_ms);
		drv_fail(d, "heartbeat lost");
		return 0;
	}
	if (d->ping_req == 0 && now >= d->next_ping_ms) {
		struct request *p = request_new(d, PROTO_PING, NULL, 0, 0);
		if (p == NULL)
			return now + 1;
		struct proto_hdr h = {.type = PROTO_PING, .req = p->id};
		d->ping_req = p->id;
		d->ping_sent_ms = now;
		d->next_ping_ms = now + heartbeat_period_ms();
		if (drv_send(d, &h, NULL, 0) < 0)
			return 0;
	}
	next = d->ping_req != 0 ? d->ping_sent_ms + opts.timeout_ms : d->next_ping_ms;
	next = earlier(next, wb_tick(d, now));
	if (d->state != DRV_RUNNING)
		return 0;

	for (r = TAILQ_FIRST(&d->requests); r != NULL; r = tmp) {
		tmp = TAILQ_NEXT(r, link);
		if (r->deadline_ms == 0)
			continue;
		if (now < r->deadline_ms) {
			next = earlier(next, r->deadline_ms);
			continue;
		}
		if (r->cancelled) {
			drv_fail(d, "request %u (%s) not answered %u ms after CANCEL", r->id,
				 proto_type_name(r->type), opts.timeout_ms);
			return 0;
		}
		struct handle *h = handle_find(d, r->handle);
		if (h != NULL && h->node != 0)
			event_add(h->fn->name, "timeout %s node %u: no answer in %u ms",
				  proto_type_name(r->type), h->node, opts.timeout_ms);
		else if (h != NULL)
			event_add(h->fn->name, "timeout %s %s: no answer in %u ms", proto_type_name(r->type),
				  handle_file(h)->name, opts.timeout_ms);
		else
			drv_event(d, "timeout %s: no answer in %u ms", proto_type_name(r->type),
				  opts.timeout_ms);
		if (r->req != NULL)
			fuse_reply_err(r->req, ETIMEDOUT);
		else if (r->wb && h != NULL && h->wb_err == 0)
			h->wb_err = ETIMEDOUT; /* answered to its writers already: theirs to hear next */
		r->req = NULL;
		send_cancel(d, r);
		if (d->state != DRV_RUNNING)
			return 0;
		next = earlier(next, r->deadline_ms);
	}
	return next;
}

uint64_t sup_tick(uint64_t now)
{
	struct usbdev *dev;
	uint64_t next = 0;
	int starting = 0;

	TAILQ_FOREACH(dev, &usbdevs, link)
	if (dev->drv != NULL) {
		next = earlier(next, drv_tick(dev->drv, now));
		starting |= dev->drv->state == DRV_STARTING;
	}
	return earlier(next, spare_tick(now, starting));
}

void sup_free(struct drv *d)
{
	struct handle *h;

	if (d == NULL)
		return;
	drv_close_sock(d);
	fail_requests(d, EIO);
	wb_forget(d, EIO, NULL);
	while ((h = LIST_FIRST(&d->handles)) != NULL) {
		LIST_REMOVE(h, link);
		if (h->ph != NULL)
			fuse_pollhandle_destroy(h->ph);
		free(h);
	}
	free(d);
}

unsigned sup_child_count(void)
{
	struct usbdev *dev;
	unsigned n = 0;

	TAILQ_FOREACH(dev, &usbdevs, link)
	if (dev->drv != NULL && !dev->drv->reaped)
		n++;
	return n + (spare.pid > 0);
}

void sup_shutdown(void)
{
	struct usbdev *dev;
	sigset_t chld;
	uint64_t deadline = now_ms() + 2000;

	shutting_down = 1;
	/* EOF on its socket tells a driver to cancel everything and exit. */
	TAILQ_FOREACH(dev, &usbdevs, link)
	if (dev->drv != NULL) {
		drv_close_sock(dev->drv);
		fail_requests(dev->drv, EIO);
		wb_forget(dev->drv, EIO, "plugfs is stopping");
		dev->drv->state = DRV_FAILED;
		tree_driver_settled(dev);
	}
	/* EOF tells the spare too; the reap counts no death while shutting down. */
	spare_close();
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sup_reap();
	while (sup_child_count() > 0) {
		uint64_t now = now_ms();
		if (now >= deadline) {
			TAILQ_FOREACH(dev, &usbdevs, link)
			if (dev->drv != NULL && !dev->drv->reaped && dev->drv->pid > 0) {
				log_msg(LOG_WARNING, "%s: driver pid %d did not exit, killing it",
					dev->funcs[0]->name, (int)dev->drv->pid);
				kill(dev->drv->pid, SIGKILL);
			}
			if (spare.pid > 0) {
				log_msg(LOG_WARNING, "spare driver host pid %d did not exit, killing it",
					(int)spare.pid);
				kill(spare.pid, SIGKILL);
			}
			deadline = now + 2000;
		}
		struct timespec ts = {0, 50 * 1000000};
		sigtimedwait(&chld, NULL, &ts);
		sup_reap();
	}
	for (char **e = driver_env; *e != NULL; e++) {
		free(*e);
		*e = NULL;
	}
}

/* ---- Forwarding FUSE requests ---- */

/*
 * libfuse calls this from inside its dispatch, sometimes with the request's
 * lock held (fuse_req_interrupt_func on an already interrupted request), so
 * replying here would free the request under libfuse's feet.  Only mark it:
 * sup_flush_interrupts() answers EINTR and sends the CANCEL at the end of
 * the loop pass.
 */
/* Set with any request's `interrupted`: most loop passes have none to look for. */
static int interrupts_pending;

static void on_interrupt(fuse_req_t req, void *data)
{
	struct request *r = data;

	if (r->req == req) {
		r->interrupted = 1;
		interrupts_pending = 1;
	}
}

void sup_flush_interrupts(void)
{
	struct usbdev *dev;
	struct request *r;

	if (!interrupts_pending)
		return;
	interrupts_pending = 0;
	TAILQ_FOREACH(dev, &usbdevs, link)
	{
		struct drv *d = dev->drv;
		if (d == NULL)
			continue;
	again:
		TAILQ_FOREACH(r, &d->requests, link)
		{
			if (!r->interrupted || r->req == NULL)
				continue;
			fuse_reply_err(r->req, EINTR);
			r->req = NULL;
			r->interrupted = 0;
			send_cancel(d, r);
			if (d->sock < 0)
				break; /* failed: the request list is empty now */
			goto again;
		}
	}
}

/* 0 if the handle's driver can take a request; else the errno for the user. */
static int handle_usable(struct drv *d, struct handle *h)
{
	if (d->dev->gone)
		return ENODEV;
	if (d->state != DRV_RUNNING || h->generation != d->generation)
		return EIO;
	return 0;
}

/*
 * Sends request h and tracks it.  READ and WRITE take a slot of the shared
 * buffer if they can: a WRITE's data is copied there rather than into the
 * message.
 */
static int forward(struct drv *d, fuse_req_t req, struct proto_hdr *h, const void *payload, size_t plen,
		   int timed, uint32_t size, struct handle *opening)
{
	struct request *r = request_new(d, h->type, req, h->handle, timed);

	if (r == NULL) {
		free(opening);
		return fuse_reply_err(req, ENOMEM);
	}
	r->size = size;
	r->opening = opening;
	h->req = r->id;
	if ((h->type == PROTO_READ || h->type == PROTO_WRITE) && (r->slot = slot_take(d, size)) >= 0) {
		h->flags |= PROTO_F_SHM;
		h->shm = (uint32_t)r->slot * PROTO_SHM_SLOT;
		if (h->type == PROTO_WRITE) {
			memcpy(d->shm + h->shm, payload, plen);
			h->size = (uint32_t)plen;
			plen = 0;
		}
	} else if (h->type == PROTO_READ && size > PROTO_MAX_IO) {
		/* No slot: what fits in a message; the reader gets a short read. */
		h->size = r->size = PROTO_MAX_IO;
	} else if (h->type == PROTO_WRITE && plen > PROTO_MAX_IO) {
		plen = r->size = PROTO_MAX_IO;
	}
	if (drv_send(d, h, payload, plen) < 0)
		return 0; /* drv_fail() answered it */
	fuse_req_interrupt_func(req, on_interrupt, r);
	return 0;
}

void sup_open(fuse_req_t req, struct function *fn, unsigned slot, struct fuse_file_info *fi)
{
	struct drv *d = fn->dev->drv;
	struct dfile *file = &fn->files[slot];

	if (fn->dev->gone)
		return (void)fuse_reply_err(req, ENODEV);
	if (d->state != DRV_RUNNING)
		return (void)fuse_reply_err(req, EIO);
	if (!file->present)
		return (void)fuse_reply_err(req, ENOENT);
	struct handle *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return (void)fuse_reply_err(req, ENOMEM);
	h->id = next_handle_id++;
	h->fn = fn;
	h->slot = slot;
	h->generation = d->generation;
	h->ra_next = UINT64_MAX; /* the first read is not "sequential" */
	h->wb_next = UINT64_MAX; /* nor the first write */
	h->wb_through = (fi->flags & (O_DSYNC | O_DIRECT)) != 0;
	struct proto_hdr m = {
	    .type = PROTO_OPEN, .handle = h->id, .file = file->id, .size = (uint32_t)fi->flags};
	forward(d, req, &m, NULL, 0, 1, 0, h);
}

/* The file field and flags of a request on handle h. */
static uint32_t handle_target(struct handle *h)
{
	return h->node != 0 ? h->node : handle_file(h)->id;
}

static uint16_t handle_flags(struct handle *h, int nonblock)
{
	return (uint16_t)((nonblock ? PROTO_F_NONBLOCK : 0) | (h->node != 0 ? PROTO_F_NODE : 0));
}

/* The READ of `size` bytes at `off` on handle h. */
static struct proto_hdr read_hdr(struct handle *h, uint64_t off, uint32_t size, int nonblock)
{
	return (struct proto_hdr){.type = PROTO_READ,
				  .handle = h->id,
				  .file = handle_target(h),
				  .size = size,
				  .offset = off,
				  .flags = handle_flags(h, nonblock)};
}

/*
 * ---- Read-ahead ----
 *
 * A block file (a disk's medium) read sequentially is read ahead: from the
 * second read in a row that starts where the last one ended and is as big,
 * the daemon keeps up to two READs ("windows") going beyond what was asked,
 * each into a slot of the shared buffer, and answers the reads that fall in
 * them from there.  The first window is RA_WINDOW_MIN bytes, each next one twice the
 * last up to RA_WINDOW_MAX (the kernel's readahead grows the same way), so
 * that a reader that stops early wasted little of the bus.  The reader
 * then pays the FUSE hop alone, while the driver fetches the next window:
 * the pipeline the kernel's block layer keeps for /dev/sdX.  Each window
 * is a whole number of the reader's size, so that a read never straddles
 * two (a dd never sees a short read).  A write or ctl to the driver drops
 * every window (a window already sent may still carry the old bytes, as a
 * read that crossed the write would); so does a non-sequential read.  A
 * window that fails is dropped and the read it held is sent on its own,
 * so an error is the read's own.  Read-ahead takes slots only while
 * SLOTS_KEPT of them stay free for what users ask (write-back too).
 */
#define RA_WINDOW_MIN (128u * 1024)
#define RA_WINDOW_MAX PROTO_SHM_SLOT
#define SLOTS_KEPT    4

/* A slot for read-ahead or write-back, if SLOTS_KEPT would still be free for what users ask; else -1. */
static int slot_spare(struct drv *d)
{
	if (__builtin_popcount(d->shm_busy) >= PROTO_SHM_SLOTS - SLOTS_KEPT)
		return -1;
	return slot_take(d, PROTO_SHM_SLOT);
}

static int ra_readable(struct drv *d, struct handle *h)
{
	return h->node == 0 && (handle_file(h)->kind & PROTO_KIND_MASK) == PROTO_KIND_BLOCK && d->shm_mapped;
}

static struct request *ra_get(struct drv *d, struct handle *h, int i)
{
	struct request *r = h->ra[i] != 0 ? request_find(d, h->ra[i]) : NULL;

	if (r == NULL)
		h->ra[i] = 0;
	return r;
}

/*
 * Forgets window i of h: freed if answered; else, no longer listed, it
 * answers the read waiting on it, if any, and goes when it comes back.
 */
static void ra_drop(struct drv *d, struct handle *h, int i)
{
	struct request *r = ra_get(d, h, i);

	h->ra[i] = 0;
	if (r != NULL && r->done)
		request_free(d, r);
}

static void ra_drop_all(struct drv *d, struct handle *h)
{
	ra_drop(d, h, 0);
	ra_drop(d, h, 1);
}

static void ra_invalidate(struct drv *d)
{
	struct handle *h;

	LIST_FOREACH(h, &d->handles, link)
	{
		ra_drop_all(d, h);
		h->ra_seq = 0;
	}
}

/* The next window of h for reads of `size` bytes: a whole number of them. */
static uint32_t ra_window(struct handle *h, uint32_t size)
{
	uint32_t want = h->ra_win < RA_WINDOW_MIN ? RA_WINDOW_MIN : h->ra_win;

	h->ra_win = want >= RA_WINDOW_MAX / 2 ? RA_WINDOW_MAX : want * 2;
	return size >= want ? size : want / size * size;
}

/* Sends a window of `size` bytes at `off` as h's window i, if a slot can be spared. */
static void ra_issue(struct drv *d, struct handle *h, int i, uint64_t off, uint32_t size)
{
	struct dfile *f = handle_file(h);

	if (off >= f->size)
		return;
	struct request *r = request_new(d, PROTO_READ, NULL, h->id, 1);
	if (r == NULL)
		return;
	if ((r->slot = slot_spare(d)) < 0) {
		request_free(d, r);
		return;
	}
	r->ra = 1;
	r->size = size;
	r->offset = off;
	h->ra[i] = r->id;
	struct proto_hdr m = read_hdr(h, off, size, 0);
	m.req = r->id;
	m.flags |= PROTO_F_SHM;
	m.shm = (uint32_t)r->slot * PROTO_SHM_SLOT;
	drv_send(d, &m, NULL, 0);
}

/*
 * Keeps h's windows ahead of a reader at `off` reading `size` bytes at a
 * time: windows wholly behind it go, and the next is sent once the reader
 * is in the last one (or there is none).
 */
static void ra_fill(struct drv *d, struct handle *h, uint64_t off, uint32_t size)
{
	for (int i = 0; i < 2; i++) {
		struct request *r = ra_get(d, h, i);
		if (r != NULL && r->offset + r->size <= off)
			ra_drop(d, h, i);
	}
	if (h->ra[0] == 0) {
		h->ra[0] = h->ra[1];
		h->ra[1] = 0;
	}
	struct request *last = ra_get(d, h, h->ra[1] != 0 ? 1 : 0);
	if (last == NULL)
		return ra_issue(d, h, 0, off, ra_window(h, size));
	if (h->ra[1] != 0 || last->offset > off)
		return;
	/* A window that came back short ended at the end of the medium. */
	if (last->done && last->status < (int32_t)last->size)
		return;
	ra_issue(d, h, 1, last->offset + last->size, ra_window(h, size));
}

/* Answers a read of `size` bytes at `off` from the answered window r. */
static void ra_answer(struct drv *d, struct request *r, fuse_req_t req, uint64_t off, uint32_t size)
{
	uint64_t skip = off - r->offset;
	size_t n = r->status > (int32_t)skip ? (size_t)r->status - skip : 0;

	if (n > size)
		n = size;
	fuse_reply_buf(req, (const char *)d->shm + (size_t)r->slot * PROTO_SHM_SLOT + skip, n);
}

/*
 * A read on a block file: 1 if it was answered from a window or will be
 * when its window comes back; 0 to send it as usual.
 */
static int ra_read(struct drv *d, struct handle *h, fuse_req_t req, uint32_t size, uint64_t off)
{
	struct request *r = NULL;

	/*
	 * Sequential means: where the last read ended, and as big.  A read()
	 * into an unaligned buffer of 1 MiB reaches the daemon as two requests,
	 * 1 MiB less a few bytes and those few bytes: windows cut for one size
	 * would never hold the other, and every one would be read for nothing.
	 */
	if (off == h->ra_next && size == h->ra_size) {
		h->ra_seq++;
	} else {
		h->ra_seq = 0;
		h->ra_win = RA_WINDOW_MIN;
		ra_drop_all(d, h);
	}
	h->ra_next = off + size;
	h->ra_size = size;
	if (h->ra_seq == 0)
		return 0;
	for (int i = 0; i < 2 && r == NULL; i++) {
		struct request *w = ra_get(d, h, i);
		if (w != NULL && w->offset <= off && off + size <= w->offset + w->size)
			r = w;
	}
	if (r == NULL || (!r->done && r->req != NULL)) {
		/* Not where the reader is: start again from here (sup_read sends the next window). */
		ra_drop_all(d, h);
		return 0;
	}
	if (r->done) {
		ra_answer(d, r, req, off, size);
	} else {
		r->req = req;
		r->want_off = off;
		r->want_size = size;
		fuse_req_interrupt_func(req, on_interrupt, r);
	}
	if (d->state == DRV_RUNNING)
		ra_fill(d, h, off + size, size);
	return 1;
}

/* The driver answered window r (already checked by on_reply). */
static void ra_done(struct drv *d, struct request *r, int32_t status, const uint8_t *payload, size_t plen)
{
	struct handle *h = handle_find(d, r->handle);
	uint8_t *slot = d->shm + (size_t)r->slot * PROTO_SHM_SLOT;
	fuse_req_t req = r->req;
	int listed = h != NULL && (h->ra[0] == r->id || h->ra[1] == r->id);

	r->req = NULL;
	r->done = 1;
	r->status = status;
	r->deadline_ms = 0;
	if (status > 0 && payload != slot)
		memmove(slot, payload, plen); /* inline, or elsewhere in its slot: keep them at its start */
	if (status < 0 || r->cancelled) {
		for (int i = 0; listed && i < 2; i++)
			if (h->ra[i] == r->id)
				h->ra[i] = 0;
		if (req != NULL) {
			/* The waiting read goes on its own: its error, if any, is its own. */
			uint64_t off = r->want_off;
			uint32_t size = r->want_size;
			request_free(d, r);
			if (h == NULL)
				return (void)fuse_reply_err(req, EIO);
			struct proto_hdr m = read_hdr(h, off, size, 0);
			forward(d, req, &m, NULL, 0, !(handle_kind(h) & PROTO_FILE_UNTIMED), size, NULL);
			return;
		}
		request_free(d, r);
		return;
	}
	if (req != NULL)
		ra_answer(d, r, req, r->want_off, r->want_size);
	if (!listed)
		request_free(d, r);
}

/*
 * ---- Write-back ----
 *
 * A block file written sequentially is written back, as the page cache
 * does for /dev/sdX: from the second write in a row that starts where the
 * last one ended, the daemon copies the data into a slot of the shared
 * buffer, the window being gathered, and answers the write at once.  The
 * window goes to the driver as one WRITE when the next write does not fit
 * in it (WB_WINDOW bytes) or goes elsewhere, when anything else is asked
 * of the driver (a read, a ctl, another handle's write: the driver serves
 * requests in the order they were sent, so they come after it), on fsync
 * and close, and WB_IDLE_MS after the last write into it.  One window is
 * gathered per driver.  A handle has at most WB_INFLIGHT windows sent and
 * not answered: the write that opens one more is answered when one of
 * them is.  The first write of a run is sent on its own, so that an error
 * every write would get (a write-protected medium, the end) is its own.
 *
 * A window that fails makes the next write, fsync or close on its handle
 * fail with its errno: the page cache reports a failed write-back at fsync
 * the same way.  fsync and close wait for the handle's windows.  A driver
 * that dies with windows its writers were told are written does not lose
 * them: they are copied out of the dying driver's buffer (wb_save) and
 * written by the next process, before anything else, once (wb_replay).
 * A handle opened with O_DSYNC, O_SYNC or O_DIRECT writes through.
 */
#define WB_WINDOW   PROTO_SHM_SLOT
#define WB_INFLIGHT 2
#define WB_IDLE_MS  10

/* A window's bytes, answered to their writers and not to the daemon, kept across a respawn. */
struct wb_saved {
	STAILQ_ENTRY(wb_saved) link;
	struct function *fn;
	unsigned file;	/* fn->files[file] */
	uint32_t owner; /* the handle it is owed to */
	uint64_t off;
	uint32_t len;
	uint8_t data[];
};

/* A write of `size` bytes at `off` on h that may be gathered. */
static int wb_writable(struct drv *d, struct handle *h, size_t size, uint64_t off)
{
	if (h->node != 0 || h->wb_through || !d->shm_mapped || size == 0 || size > WB_WINDOW)
		return 0;
	struct dfile *f = handle_file(h);
	return (f->kind & PROTO_KIND_MASK) == PROTO_KIND_BLOCK && off == h->wb_next && off <= f->size &&
	       size <= f->size - off;
}

/* The error a failed window owes h's writer, told once: 0 if none. */
static int wb_err_take(struct handle *h)
{
	int err = h->wb_err;

	h->wb_err = 0;
	return err;
}

/* Answers the fsyncs and closes waiting for h, once none of its windows is out. */
static void wb_wake_waiters(struct drv *d, struct handle *h)
{
	struct request *r, *tmp;
	int err = h->wb_err, any = 0;

	if (h->wb_inflight > 0)
		return;
	for (r = TAILQ_FIRST(&d->requests); r != NULL; r = tmp) {
		tmp = TAILQ_NEXT(r, link);
		if (r->wb_wait && r->handle == h->id) {
			fuse_reply_err(r->req, err);
			request_free(d, r);
			any = 1;
		}
	}
	if (any)
		h->wb_err = 0;
}

/* Frees the window being gathered (its bytes go nowhere). */
static void wb_discard(struct drv *d)
{
	slot_give(d, d->wb_slot);
	d->wb_h = NULL;
	d->wb_parked = NULL;
}

/* Sends the window being gathered, if any; the write waiting for room, if one does, goes with it. */
static void wb_send(struct drv *d)
{
	struct handle *h = d->wb_h;
	fuse_req_t parked = d->wb_parked;

	if (h == NULL)
		return;
	struct request *r = request_new(d, PROTO_WRITE, parked, h->id, 1);
	if (r == NULL) {
		wb_discard(d);
		if (parked != NULL)
			fuse_reply_err(parked, ENOMEM);
		else if (h->wb_err == 0)
			h->wb_err = ENOMEM;
		return;
	}
	r->wb = 1;
	r->wb_fn = h->fn;
	r->wb_file = h->slot;
	r->slot = d->wb_slot;
	r->size = d->wb_len;
	r->offset = d->wb_off;
	d->wb_h = NULL;
	d->wb_parked = NULL;
	h->wb_inflight++;
	struct proto_hdr m = {.type = PROTO_WRITE,
			      .req = r->id,
			      .handle = h->id,
			      .file = handle_target(h),
			      .offset = r->offset,
			      .size = r->size,
			      .flags = handle_flags(h, 0) | PROTO_F_SHM,
			      .shm = (uint32_t)r->slot * PROTO_SHM_SLOT};
	drv_send(d, &m, NULL, 0);
}

/*
 * A write on a block file: 1 if it was gathered (and answered, or will be
 * once one of its handle's windows is); 0 to send it on its own.
 */
static int wb_write(struct drv *d, struct handle *h, fuse_req_t req, const char *buf, size_t size,
		    uint64_t off)
{
	int seq = wb_writable(d, h, size, off);

	h->wb_next = off + size;
	if (seq && d->wb_h == h && d->wb_parked == NULL && d->wb_len + size <= WB_WINDOW) {
		/* Answered first: the writer makes its next write while the daemon copies this one. */
		fuse_reply_write(req, size);
		memcpy(d->shm + (size_t)d->wb_slot * PROTO_SHM_SLOT + d->wb_len, buf, size);
		d->wb_len += (uint32_t)size;
		d->wb_at_ms = now_ms();
		return 1;
	}
	/* Whatever was gathered, this handle's or another's, goes before this write. */
	wb_send(d);
	if (d->state != DRV_RUNNING) {
		fuse_reply_err(req, EIO);
		return 1;
	}
	int slot;
	if (!seq || (slot = slot_spare(d)) < 0)
		return 0;
	d->wb_h = h;
	d->wb_slot = slot;
	d->wb_off = off;
	d->wb_len = (uint32_t)size;
	d->wb_at_ms = now_ms();
	if (h->wb_inflight < WB_INFLIGHT)
		fuse_reply_write(req, size);
	else
		d->wb_parked = req;
	memcpy(d->shm + (size_t)slot * PROTO_SHM_SLOT, buf, size);
	return 1;
}

/* One of h's windows is answered, with errno err (0: written) if its writer was answered already. */
static void wb_settle(struct drv *d, struct handle *h, int err)
{
	if (err != 0 && h->wb_err == 0)
		h->wb_err = err;
	if (h->wb_inflight > 0)
		h->wb_inflight--;
	/* Room for the window whose write waited: answer it, with what went wrong meanwhile if anything. */
	if (d->wb_h == h && d->wb_parked != NULL && h->wb_inflight < WB_INFLIGHT) {
		fuse_req_t parked = d->wb_parked;
		d->wb_parked = NULL;
		if ((err = wb_err_take(h)) != 0) {
			wb_discard(d);
			fuse_reply_err(parked, err);
		} else {
			fuse_reply_write(parked, d->wb_len);
		}
	}
	wb_wake_waiters(d, h);
}

/* The driver answered window r, or a replay (already checked by on_reply). */
static void wb_done(struct drv *d, struct request *r, int32_t status)
{
	struct handle *h = handle_find(d, r->replay ? r->wb_owner : r->handle);
	fuse_req_t req = r->req;
	uint32_t size = r->size;
	int err = status < 0 ? -status : (uint32_t)status < size ? EIO : 0, replay = r->replay;
	int settles = r->wb || (replay && r->type == PROTO_WRITE && r->wb_last);

	if (replay && err != 0 && r->type == PROTO_WRITE)
		drv_event(d, "replay of %u bytes at %llu written back before the crash failed: %s", size,
			  (unsigned long long)r->offset, strerror(err));
	else if (replay && err != 0)
		drv_event(d, "replay: open of %s failed: %s", r->wb_fn->files[r->wb_file].name,
			  strerror(err));
	request_free(d, r);
	/* The replay's handles go only now: a RELEASE cancels what is still in flight on its handle. */
	if (replay && --d->replay_pending == 0)
		for (uint32_t id = d->replay_first; id <= d->replay_handle && d->state == DRV_RUNNING; id++) {
			struct proto_hdr rel = {.type = PROTO_RELEASE, .handle = id};
			if (drv_send(d, &rel, NULL, 0) < 0)
				return;
		}
	if (req != NULL) {
		if (err != 0)
			fuse_reply_err(req, err);
		else
			fuse_reply_write(req, size); /* the write that waited was the whole window */
		err = 0;			     /* its writer heard */
	}
	if (h != NULL && settles)
		wb_settle(d, h, err);
	else if (h != NULL && err != 0 && h->wb_err == 0)
		h->wb_err = err; /* a replay's open or first pieces: the window is still owed, and failed */
}

/* The gathered window's deadline: sent WB_IDLE_MS after its last write. Returns the next deadline. */
static uint64_t wb_tick(struct drv *d, uint64_t now)
{
	if (d->wb_h == NULL || d->wb_parked != NULL)
		return 0;
	if (now < d->wb_at_ms + WB_IDLE_MS)
		return d->wb_at_ms + WB_IDLE_MS;
	wb_send(d);
	return 0;
}

static void wb_save_one(struct drv *d, struct function *fn, unsigned file, uint32_t owner, uint64_t off,
			const uint8_t *p, uint32_t len)
{
	struct wb_saved *w = malloc(sizeof(*w) + len);

	if (w == NULL) {
		struct handle *h = handle_find(d, owner);
		drv_event(d, "lost %u bytes at %llu written back before the crash: out of memory", len,
			  (unsigned long long)off);
		if (h != NULL)
			wb_settle(d, h, ENOMEM);
		return;
	}
	w->fn = fn;
	w->file = file;
	w->owner = owner;
	w->off = off;
	w->len = len;
	memcpy(w->data, p, len);
	STAILQ_INSERT_TAIL(&d->wb_saved, w, link);
}

/*
 * The driver is failing, its buffer still mapped: every window answered to
 * its writers (sent and not answered, or gathered) is copied out, in the
 * order it would have been written, and stays owed to its handle until the
 * next process has written it.  A window whose write is still waiting is
 * not: that write fails instead.  A replay in flight is not tried twice.
 */
static void wb_save(struct drv *d)
{
	struct request *r;

	if (d->shm == NULL)
		return;
	TAILQ_FOREACH(r, &d->requests, link)
	{
		struct handle *h = handle_find(d, r->replay ? r->wb_owner : r->handle);
		if (r->replay && r->type == PROTO_WRITE) {
			drv_event(d,
				  "lost %u bytes at %llu written back before the crash: the driver failed "
				  "again while writing them",
				  r->size, (unsigned long long)r->offset);
			if (h != NULL && r->wb_last)
				wb_settle(d, h, EIO);
			else if (h != NULL && h->wb_err == 0)
				h->wb_err = EIO;
		}
		if (r->wb && r->req == NULL) {
			wb_save_one(d, r->wb_fn, r->wb_file, r->handle, r->offset,
				    d->shm + (size_t)r->slot * PROTO_SHM_SLOT, r->size);
			r->wb = 0; /* the saved copy is what is owed now */
		}
	}
	if (d->wb_h != NULL && d->wb_parked == NULL) {
		struct handle *h = d->wb_h;
		h->wb_inflight++;
		wb_save_one(d, h->fn, h->slot, h->id, d->wb_off, d->shm + (size_t)d->wb_slot * PROTO_SHM_SLOT,
			    d->wb_len);
		wb_discard(d);
	}
}

/*
 * Everything in flight fails with err (before fail_requests() answers the
 * requests): the gathered window, and the windows not saved.  A window
 * whose writer waits hears it from fail_requests(); the others owe it to
 * their handle's next write, fsync or close.
 */
static void wb_fail(struct drv *d, int err)
{
	struct request *r;
	unsigned long long lost = 0; /* bytes whose writers were told they were taken */

	if (d->wb_h != NULL) {
		fuse_req_t parked = d->wb_parked;
		if (parked == NULL) {
			lost += d->wb_len;
			if (d->wb_h->wb_err == 0)
				d->wb_h->wb_err = err;
		}
		wb_discard(d);
		if (parked != NULL)
			fuse_reply_err(parked, err);
	}
	TAILQ_FOREACH(r, &d->requests, link)
	{
		struct handle *h = r->wb ? handle_find(d, r->handle) : NULL;
		if (h == NULL)
			continue;
		r->wb = 0;
		if (h->wb_inflight > 0)
			h->wb_inflight--;
		if (r->req == NULL) {
			lost += r->size;
			if (h->wb_err == 0)
				h->wb_err = err;
		}
	}
	d->replay_pending = 0;
	/* A crash saved them all (wb_save) before this: an unplug, or plugfs stopping, did not. */
	if (lost > 0)
		drv_event(d, "lost %llu bytes written back: %s", lost,
			  err == ENODEV	  ? "the device was unplugged"
			  : shutting_down ? "plugfs is stopping"
					  : strerror(err));
}

/* Whether handle `handle` has windows saved for the next process (wb_save). */
static int wb_owed(struct drv *d, uint32_t handle)
{
	struct wb_saved *w;

	STAILQ_FOREACH(w, &d->wb_saved, link)
	if (w->owner == handle)
		return 1;
	return 0;
}

/* Drops the saved windows: their handles get err; `why`, when given, goes to the events log. */
static void wb_forget(struct drv *d, int err, const char *why)
{
	struct wb_saved *w;
	unsigned long long bytes = 0;

	while ((w = STAILQ_FIRST(&d->wb_saved)) != NULL) {
		STAILQ_REMOVE_HEAD(&d->wb_saved, link);
		bytes += w->len;
		struct handle *h = handle_find(d, w->owner);
		if (h != NULL)
			wb_settle(d, h, err);
		free(w);
	}
	if (bytes > 0 && why != NULL)
		drv_event(d, "lost %llu bytes written back before the crash: %s", bytes, why);
}

static struct request *replay_request(struct drv *d, uint16_t type, struct wb_saved *w)
{
	struct request *r = request_new(d, type, NULL, d->replay_handle, 1);

	if (r == NULL)
		return NULL;
	r->replay = 1;
	r->wb_fn = w->fn;
	r->wb_file = w->file;
	r->wb_owner = w->owner;
	d->replay_pending++;
	return r;
}

/* Sends window w's bytes through the current replay handle, in as many pieces as need be. */
static void replay_one(struct drv *d, struct wb_saved *w, uint32_t file)
{
	struct handle *h = handle_find(d, w->owner);

	for (uint32_t done = 0; done < w->len;) {
		struct proto_hdr m = {
		    .type = PROTO_WRITE, .handle = d->replay_handle, .file = file, .offset = w->off + done};
		uint32_t len = w->len - done;
		int slot = slot_take(d, len);
		if (slot < 0 && len > PROTO_MAX_IO)
			len = PROTO_MAX_IO;
		struct request *r = replay_request(d, PROTO_WRITE, w);
		if (r == NULL) {
			if (slot >= 0)
				slot_give(d, slot);
			if (h != NULL)
				wb_settle(d, h, ENOMEM);
			return;
		}
		r->slot = slot;
		r->size = m.size = len;
		r->offset = m.offset;
		r->wb_last = done + len == w->len;
		m.req = r->id;
		if (slot >= 0) {
			m.flags = PROTO_F_SHM;
			m.shm = (uint32_t)slot * PROTO_SHM_SLOT;
			memcpy(d->shm + m.shm, w->data + done, len);
		}
		if (drv_send(d, &m, slot >= 0 ? NULL : w->data + done, slot >= 0 ? 0 : len) < 0)
			return;
		done += len;
	}
}

/*
 * The new process is running: before anything else, it writes the saved
 * windows, in the order they were saved, through handles of its own, one
 * per file (released once all are answered).  Each is still owed to its writer's
 * handle until then; a failure goes to the events log and to that handle.
 */
static void wb_replay(struct drv *d)
{
	struct wb_saved *w;
	unsigned n = 0;
	unsigned long long bytes = 0;
	uint32_t opened = UINT32_MAX;

	STAILQ_FOREACH(w, &d->wb_saved, link)
	{
		n++;
		bytes += w->len;
	}
	if (n == 0)
		return;
	drv_event(d, "replay %u windows, %llu bytes written back before the crash", n, bytes);
	d->replay_first = d->replay_handle = next_handle_id++;
	while (d->state == DRV_RUNNING && (w = STAILQ_FIRST(&d->wb_saved)) != NULL) {
		STAILQ_REMOVE_HEAD(&d->wb_saved, link);
		struct dfile *f = &w->fn->files[w->file];
		struct handle *h = handle_find(d, w->owner);
		if (!f->present || (f->kind & PROTO_KIND_MASK) != PROTO_KIND_BLOCK) {
			drv_event(d, "lost %u bytes at %llu written back before the crash: %s is gone",
				  w->len, (unsigned long long)w->off, f->name);
			if (h != NULL)
				wb_settle(d, h, EIO);
			free(w);
			continue;
		}
		/* One handle serves one file: a window of another file (another LUN) gets the next. */
		if (opened != f->id) {
			if (opened != UINT32_MAX)
				d->replay_handle = next_handle_id++;
			struct proto_hdr open = {
			    .type = PROTO_OPEN, .handle = d->replay_handle, .file = f->id, .size = O_WRONLY};
			struct request *r = replay_request(d, PROTO_OPEN, w);
			if (r != NULL) {
				open.req = r->id;
				drv_send(d, &open, NULL, 0);
			}
			opened = f->id;
		}
		if (d->state == DRV_RUNNING)
			replay_one(d, w, f->id);
		free(w);
	}
	wb_forget(d, EIO, "the driver failed again");
}

void sup_read(fuse_req_t req, struct handle *h, size_t size, off_t off, int nonblock)
{
	struct drv *d = h->fn->dev->drv;
	int err = handle_usable(d, h);

	if (err)
		return (void)fuse_reply_err(req, err);
	if (size > PROTO_MAX_REQ)
		size = PROTO_MAX_REQ;
	/* What was written before is read: the driver serves requests in order. */
	wb_send(d);
	if (d->state != DRV_RUNNING)
		return (void)fuse_reply_err(req, EIO);
	int ahead = size > 0 && ra_readable(d, h);
	if (ahead && ra_read(d, h, req, (uint32_t)size, (uint64_t)off))
		return;
	struct proto_hdr m = read_hdr(h, (uint64_t)off, (uint32_t)size, nonblock);
	forward(d, req, &m, NULL, 0, !(handle_kind(h) & PROTO_FILE_UNTIMED), (uint32_t)size, NULL);
	/* Sent after the read it follows: the driver serves them in that order. */
	if (ahead && h->ra_seq > 0 && d->state == DRV_RUNNING)
		ra_fill(d, h, (uint64_t)off + size, (uint32_t)size);
}

void sup_write(fuse_req_t req, struct handle *h, const char *buf, size_t size, off_t off, int nonblock)
{
	struct drv *d = h->fn->dev->drv;
	int err = handle_usable(d, h);

	if (err)
		return (void)fuse_reply_err(req, err);
	if (size > PROTO_MAX_REQ)
		size = PROTO_MAX_REQ;
	ra_invalidate(d);
	/* A write-back that failed: this write does not happen, and says why. */
	if ((err = wb_err_take(h)) != 0)
		return (void)fuse_reply_err(req, err);
	if (wb_write(d, h, req, buf, size, (uint64_t)off))
		return;
	struct proto_hdr m = {.type = PROTO_WRITE,
			      .handle = h->id,
			      .file = handle_target(h),
			      .offset = (uint64_t)off,
			      .flags = handle_flags(h, nonblock)};
	forward(d, req, &m, buf, size, !(handle_kind(h) & PROTO_FILE_UNTIMED), (uint32_t)size, NULL);
}

void sup_poll(fuse_req_t req, struct handle *h, struct fuse_pollhandle *ph)
{
	struct drv *d = h->fn->dev->drv;
	int err = handle_usable(d, h);

	if (err) {
		if (ph != NULL)
			fuse_pollhandle_destroy(ph);
		/* A dead driver's file is "ready": the read that follows reports the error. */
		return (void)fuse_reply_poll(req, POLLIN | POLLOUT | POLLERR);
	}
	if (ph != NULL) {
		if (h->ph != NULL)
			fuse_pollhandle_destroy(h->ph);
		h->ph = ph;
	}
	struct proto_hdr m = {.type = PROTO_POLL,
			      .handle = h->id,
			      .file = handle_target(h),
			      .size = POLLIN | POLLOUT,
			      .flags = handle_flags(h, 0)};
	forward(d, req, &m, NULL, 0, 1, 0, NULL);
}

void sup_release(struct handle *h)
{
	struct usbdev *dev = h->fn->dev;
	struct drv *d = dev->drv;

	ra_drop_all(d, h);
	if (d->wb_h == h)
		wb_send(d);
	if (d->sock >= 0 && h->generation == d->generation) {
		struct proto_hdr m = {.type = PROTO_RELEASE, .handle = h->id, .flags = handle_flags(h, 0)};
		drv_send(d, &m, NULL, 0);
	}
	if (h->ph != NULL)
		fuse_pollhandle_destroy(h->ph);
	LIST_REMOVE(h, link);
	free(h);
	/* The last handle on an unplugged device was all that kept it. */
	if (dev->gone)
		usbdev_release_if_unused(dev);
}

void sup_ctl(fuse_req_t req, struct function *fn, const char *cmd, size_t len, size_t written)
{
	struct drv *d = fn->dev->drv;

	if (fn->dev->gone)
		return (void)fuse_reply_err(req, ENODEV);
	if (d->state != DRV_RUNNING)
		return (void)fuse_reply_err(req, EIO);
	/* `eject`, `reset` and the like may change what the medium reads; `sync` comes after every write. */
	ra_invalidate(d);
	wb_send(d);
	if (d->state != DRV_RUNNING)
		return (void)fuse_reply_err(req, EIO);
	struct proto_hdr m = {.type = PROTO_CTL, .file = PROTO_CTL_TARGET(fn->index, fn->unit)};
	forward(d, req, &m, cmd, len, 1, (uint32_t)written, NULL);
}

/* ---- Driver-owned trees ---- */

/* 0 if fn's driver can take a request now; else the errno for the user. */
static int driver_usable(struct function *fn)
{
	if (fn->dev->gone)
		return ENODEV;
	if (fn->dev->drv->state != DRV_RUNNING)
		return EIO;
	return 0;
}

/* Forwards a node request; name (LOOKUP, CREATE, UNLINK) travels as the payload. */
static void forward_node(fuse_req_t req, struct function *fn, struct proto_hdr *m, const char *name,
			 uint32_t size, struct handle *opening, struct request **out)
{
	struct drv *d = fn->dev->drv;
	size_t nlen = name != NULL ? strlen(name) : 0;
	int err = driver_usable(fn);

	*out = NULL;
	if (err == 0 && name != NULL && nlen > PROTO_MAX_NODE_NAME)
		err = ENAMETOOLONG;
	else if (err == 0 && name != NULL && !proto_valid_node_name(name, nlen))
		err = EINVAL;
	if (err != 0) {
		free(opening);
		return (void)fuse_reply_err(req, err);
	}
	struct request *r = request_new(d, m->type, req, m->handle, m->type != PROTO_FLUSH);
	char *copy = NULL;
	if (r == NULL || (name != NULL && (copy = strdup(name)) == NULL)) {
		if (r != NULL)
			request_free(d, r);
		free(opening);
		return (void)fuse_reply_err(req, ENOMEM);
	}
	r->size = size;
	r->opening = opening;
	r->fn_id = fn->id;
	r->node = m->file;
	m->status = (int32_t)PROTO_CTL_TARGET(fn->index, fn->unit);
	if (m->type == PROTO_LOOKUP || m->type == PROTO_CREATE)
		r->name = copy;
	else
		free(copy);
	m->req = r->id;
	*out = r;
	if (drv_send(d, m, name, nlen) < 0) {
		*out = NULL;
		return; /* drv_fail() answered it */
	}
	fuse_req_interrupt_func(req, on_interrupt, r);
}

void sup_lookup(fuse_req_t req, struct function *fn, uint32_t parent, const char *name)
{
	struct proto_hdr m = {.type = PROTO_LOOKUP, .file = parent};
	struct request *r;

	forward_node(req, fn, &m, name, 0, NULL, &r);
}

void sup_getattr(fuse_req_t req, struct function *fn, uint32_t node)
{
	struct proto_hdr m = {.type = PROTO_GETATTR, .file = node};
	struct request *r;

	forward_node(req, fn, &m, NULL, 0, NULL, &r);
}

void sup_readdir(fuse_req_t req, struct function *fn, fuse_ino_t ino, uint32_t dir, size_t size, off_t off)
{
	char buf[128];
	size_t used = 0;
	struct request *r;

	if (size > PROTO_MAX_IO)
		size = PROTO_MAX_IO;
	/* "." and "..": answered here when they are all that is left to give or to fit. */
	if (off < 2) {
		struct stat st = {.st_ino = ino, .st_mode = S_IFDIR};
		for (off_t i = off; i < 2; i++) {
			const char *name = i == 0 ? "." : "..";
			size_t need = fuse_add_direntry(req, NULL, 0, name, NULL, 0);
			if (used + need > size || used + need > sizeof(buf))
				break;
			fuse_add_direntry(req, buf + used, sizeof(buf) - used, name, &st, i + 1);
			used += need;
		}
		return (void)fuse_reply_buf(req, buf, used);
	}
	struct proto_hdr m = {
	    .type = PROTO_READDIR, .file = dir, .offset = (uint64_t)off - 2, .size = (uint32_t)size};
	forward_node(req, fn, &m, NULL, (uint32_t)size, NULL, &r);
	if (r != NULL)
		r->dir_off = (uint64_t)off;
}

static struct handle *handle_new(struct function *fn, uint32_t node)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (h == NULL)
		return NULL;
	h->id = next_handle_id++;
	h->fn = fn;
	h->node = node;
	h->generation = fn->dev->drv->generation;
	return h;
}

void sup_open_node(fuse_req_t req, struct function *fn, uint32_t node, struct fuse_file_info *fi)
{
	int err = driver_usable(fn);
	struct handle *h;

	if (err != 0)
		return (void)fuse_reply_err(req, err);
	if ((h = handle_new(fn, node)) == NULL)
		return (void)fuse_reply_err(req, ENOMEM);
	struct proto_hdr m = {.type = PROTO_OPEN,
			      .handle = h->id,
			      .file = node,
			      .size = (uint32_t)fi->flags,
			      .flags = PROTO_F_NODE,
			      .status = (int32_t)PROTO_CTL_TARGET(fn->index, fn->unit)};
	forward(fn->dev->drv, req, &m, NULL, 0, 1, 0, h);
}

void sup_create(fuse_req_t req, struct function *fn, uint32_t parent, const char *name,
		struct fuse_file_info *fi)
{
	int err = driver_usable(fn);
	struct handle *h;
	struct request *r;

	if (err != 0)
		return (void)fuse_reply_err(req, err);
	/* The node is not known yet: CREATE's reply names it. */
	if ((h = handle_new(fn, 0)) == NULL)
		return (void)fuse_reply_err(req, ENOMEM);
	struct proto_hdr m = {
	    .type = PROTO_CREATE, .handle = h->id, .file = parent, .size = (uint32_t)fi->flags};
	forward_node(req, fn, &m, name, 0, h, &r);
	if (r != NULL)
		r->open_flags = fi->flags;
}

void sup_unlink(fuse_req_t req, struct function *fn, uint32_t parent, const char *name)
{
	struct proto_hdr m = {.type = PROTO_UNLINK, .file = parent};
	struct request *r;

	forward_node(req, fn, &m, name, 0, NULL, &r);
}

void sup_flush(fuse_req_t req, struct handle *h)
{
	struct drv *d = h->fn->dev->drv;
	int err = handle_usable(d, h);

	if (err)
		return (void)fuse_reply_err(req, err);
	/* Untimed: an upload the flush finishes takes as long as its size needs; ^C cancels it. */
	struct proto_hdr m = {.type = PROTO_FLUSH, .handle = h->id, .file = h->node, .flags = PROTO_F_NODE};
	forward(d, req, &m, NULL, 0, 0, 0, NULL);
}

void sup_sync(fuse_req_t req, struct handle *h)
{
	struct drv *d = h->fn->dev->drv;

	if (d->wb_h == h)
		wb_send(d);
	if (h->wb_inflight == 0)
		return (void)fuse_reply_err(req, wb_err_take(h));
	/* Answered by wb_wake_waiters() once its windows are, or by fail_requests(). */
	struct request *w = request_new(d, PROTO_FLUSH, req, h->id, 0);
	if (w == NULL)
		return (void)fuse_reply_err(req, ENOMEM);
	w->wb_wait = 1;
}
