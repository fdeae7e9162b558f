/*
 * plugfs-driver: the process that serves one USB device's files for the
 * plugfs daemon.
 *
 *     plugfs-driver [-v] [--detach] [--user USER|UID:GID] DEVNODE DRIVER:IFNUM...
 *     plugfs-driver [-v] [--user USER|UID:GID] --spare
 *
 * The daemon execs it with the protocol socket on fd 3 (common/proto.h).
 * It opens DEVNODE itself (umockdev emulates only fds opened by path in the
 * process), wraps it with libusb without device discovery, claims each
 * interface named on the command line, lets the interface's driver
 * register its files, sends HELLO and then runs one poll() loop over the
 * socket, libusb's fds and the drivers' timers until the daemon hangs up.
 *
 * With --spare it does everything that does not depend on the device first
 * (libusb_init, the seccomp filter), then waits for the daemon's START,
 * which says what the command line would have (common/proto.h, "Spare
 * hosts"): the daemon keeps one host started ahead of need, so that a
 * respawn after a crash costs no exec.  Named `plugfs-spare` while it waits.
 *
 * Try it by hand with a fake daemon that dup2()s one end of a socketpair
 * to fd 3 and speaks the codec; with -v every request and reply is logged
 * on stderr too.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <unistd.h>

#include "driver.h"
#include "util.h"

/* The driver table: adding a class driver is one line here. */
static const struct driver_ops *const drivers[] = {
    &usb_driver, &printer_driver, &hid_driver,	  &disk_driver,	 &serial_driver,
    &uvc_driver, &usbtmc_driver,  &ippusb_driver, &still_driver,
};

#ifdef PLUGFS_TEST_HOST
/*
 * build/plugfs-bench-driver only: the null driver (tests/bench/null_driver.c)
 * takes the emulated `null` model's interfaces, which the daemon gives the
 * generic driver.  The installed plugfs-driver has no null driver at all.
 */
extern const struct driver_ops null_driver;
#define TEST_NULL_VID 0x1209
#define TEST_NULL_PID 0x00b0
#endif

#define MAX_FUNCTIONS USBDESC_MAX_IFACES
/* Extra units (LUNs) of all functions together. */
#define MAX_UNITS   32
#define MAX_USB_FDS 16
#define MAX_DESC    (64 * 1024)
/* Spurious-wakeup back-off of libusb's fds, see handle_usb_events(). */
#define USB_BACKOFF_MAX_US 16000
/* How long to wait at exit for cancelled transfers to come back. */
#define EXIT_DRAIN_MS 500

bool drv_verbose;

static struct drv_device device;
static struct drv_function functions[MAX_FUNCTIONS];
static bool function_active[MAX_FUNCTIONS];
static unsigned nfunctions;
static struct drv_function *units[MAX_UNITS];
static unsigned nunits;

static LIST_HEAD(, drv_file) files = LIST_HEAD_INITIALIZER(files);

/* Functions that serve a tree; `file` is what their node handles point at (never in HELLO). */
static struct drv_tree {
	struct drv_function *fn;
	const struct drv_tree_ops *ops;
	struct drv_file file;
} trees[MAX_FUNCTIONS + MAX_UNITS];
static unsigned ntrees;

static unsigned nfiles;
static LIST_HEAD(, drv_handle) handles = LIST_HEAD_INITIALIZER(handles);
static struct drv_req_queue requests = TAILQ_HEAD_INITIALIZER(requests);
static LIST_HEAD(, drv_xfer) xfers = LIST_HEAD_INITIALIZER(xfers);
static unsigned xfers_inflight;
static unsigned long xfers_completed;

static LIST_HEAD(, drv_timer) timers = LIST_HEAD_INITIALIZER(timers);

static struct pollfd usb_fds[MAX_USB_FDS];
static unsigned n_usb_fds;
static uint64_t usb_backoff_us;
static uint64_t usb_resume_at_us; /* 0: libusb's fds are polled */

static uint8_t rxbuf[PROTO_MAX_MSG];
/* The buffer shared with the daemon (proto.h), or NULL: everything inline. */
static uint8_t *shm;

/* --detach: interfaces bound to a kernel driver may be taken from it. */
static bool detach_allowed;
/* Interfaces claimed by drivers beyond their function's own (CDC union slaves). */
static struct {
	unsigned fn;
	uint8_t ifnum;
} extra_claims[MAX_FUNCTIONS];
static unsigned nextra_claims;

/* ---- Sending ---- */

static int send_msg(struct proto_hdr *h, const void *payload, size_t plen)
{
	uint8_t hdr[PROTO_HDR_LEN];
	struct iovec iov[2] = {
	    {.iov_base = hdr, .iov_len = PROTO_HDR_LEN},
	    {.iov_base = (void *)payload, .iov_len = plen},
	};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = plen > 0 ? 2 : 1};

	h->len = (uint32_t)(PROTO_HDR_LEN + plen);
	proto_encode_hdr(hdr, h);
	for (;;) {
		if (sendmsg(PROTO_DRIVER_FD, &msg, MSG_NOSIGNAL) >= 0)
			return 0;
		if (errno != EINTR)
			return -errno;
	}
}

void drv_log(int prio, const char *fmt, ...)
{
	char text[PROTO_MAX_LOG + 1];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	if ((size_t)n > PROTO_MAX_LOG)
		n = PROTO_MAX_LOG;
	/* Errors also go to stderr so a driver run by hand is not silent. */
	if (drv_verbose || prio <= LOG_ERR)
		fprintf(stderr, "plugfs-driver[%d]: %s\n", (int)getpid(), text);
	struct proto_hdr h = {.type = PROTO_LOG, .status = prio};
	send_msg(&h, text, (size_t)n);
}

static void reply_status(const struct proto_hdr *req, int32_t status)
{
	struct proto_hdr h = {.type = PROTO_REPLY, .req = req->req, .handle = req->handle, .status = status};

	if (drv_verbose)
		drv_log(LOG_DEBUG, "req %u %s -> %d", req->req, proto_type_name(req->type), status);
	send_msg(&h, NULL, 0);
}

/* ---- Files, handles and requests ---- */

struct drv_file *drv_file_add(struct drv_function *fn, const char *name, uint16_t mode, uint8_t kind,
			      const struct drv_file_ops *ops, void *priv)
{
	struct drv_file *f;
	unsigned idx = 0;

	if (nfiles >= PROTO_MAX_FILES || strlen(name) > PROTO_MAX_NAME)
		return NULL;
	for (f = LIST_FIRST(&files); f != NULL; f = LIST_NEXT(f, link))
		if (f->fn == fn)
			idx++;
	if (idx > 0xff || (f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	/* Stable ids: the function index, the unit and the file's position in it. */
	f->id = fn->index << 16 | (uint32_t)fn->unit << 8 | idx;
	f->fn = fn;
	f->ops = ops;
	f->priv = priv;
	snprintf(f->name, sizeof(f->name), "%s", name);
	f->mode = mode;
	f->kind = kind;
	LIST_INSERT_HEAD(&files, f, link);
	nfiles++;
	return f;
}

/* Drops the files of `fn` and of all its units. */
static void files_remove_function(struct drv_function *fn)
{
	struct drv_file *f = LIST_FIRST(&files), *next;

	for (; f != NULL; f = next) {
		next = LIST_NEXT(f, link);
		if (f->fn->index == fn->index) {
			LIST_REMOVE(f, link);
			free(f);
			nfiles--;
		}
	}
}

struct drv_function *drv_function_unit(struct drv_function *fn, unsigned unit)
{
	struct drv_function *u;

	if (unit == 0 || unit > 0xff || nunits == MAX_UNITS)
		return NULL;
	for (unsigned i = 0; i < nunits; i++)
		if (units[i]->index == fn->index && units[i]->unit == unit)
			return NULL;
	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	*u = *fn;
	u->unit = (uint8_t)unit;
	u->priv = NULL;
	units[nunits++] = u;
	return u;
}

static struct drv_function *function_by_target(uint32_t target)
{
	unsigned index = PROTO_CTL_FUNCTION(target), unit = PROTO_CTL_UNIT(target);

	if (target >> 16 != 0 || index >= nfunctions || !function_active[index])
		return NULL;
	if (unit == 0)
		return &functions[index];
	for (unsigned i = 0; i < nunits; i++)
		if (units[i]->index == index && units[i]->unit == unit)
			return units[i];
	return NULL;
}

/* A HELLO directory is not opened as a file: its contents are the tree's. */
static const struct drv_file_ops dir_ops;

int drv_tree_set(struct drv_function *fn, const struct drv_tree_ops *ops)
{
	for (unsigned i = 0; i < ntrees; i++)
		if (trees[i].fn == fn)
			return -EEXIST;
	if (ntrees == sizeof(trees) / sizeof(trees[0]))
		return -ENOSPC;
	trees[ntrees] = (struct drv_tree){.fn = fn, .ops = ops};
	trees[ntrees].file.fn = fn;
	trees[ntrees].file.ops = &ops->file_ops;
	trees[ntrees].file.kind = PROTO_KIND_BLOCK;
	snprintf(trees[ntrees].file.name, sizeof(trees[ntrees].file.name), "(nodes)");
	ntrees++;
	return 0;
}

struct drv_file *drv_dir_add(struct drv_function *fn, const char *name, uint32_t node, uint16_t mode)
{
	struct drv_file *f;

	if (node == 0 || strchr(name, '/') != NULL)
		return NULL;
	for (f = LIST_FIRST(&files); f != NULL; f = LIST_NEXT(f, link))
		if (f->id == node)
			return NULL;
	if ((f = drv_file_add(fn, name, mode, PROTO_KIND_DIR, &dir_ops, NULL)) != NULL)
		f->id = node;
	return f;
}

static struct drv_tree *tree_by_target(uint32_t target)
{
	struct drv_function *fn = function_by_target(target);

	for (unsigned i = 0; fn != NULL && i < ntrees; i++)
		if (trees[i].fn == fn)
			return &trees[i];
	return NULL;
}

static struct drv_file *file_by_id(uint32_t id)
{
	struct drv_file *f;

	for (f = LIST_FIRST(&files); f != NULL; f = LIST_NEXT(f, link))
		if (f->id == id)
			return f;
	return NULL;
}

static struct drv_handle *handle_by_id(uint32_t id)
{
	struct drv_handle *h;

	for (h = LIST_FIRST(&handles); h != NULL; h = LIST_NEXT(h, link))
		if (h->id == id)
			return h;
	return NULL;
}

static void handle_put(struct drv_handle *h)
{
	if (--h->refs > 0)
		return;
	if (h->file->ops->release != NULL)
		h->file->ops->release(h);
	h->file->nopen--;
	free(h);
}

void drv_reply(struct drv_req *req, int32_t status, const void *data, size_t len)
{
	struct proto_hdr h = {
	    .type = PROTO_REPLY, .req = req->id, .handle = req->h != NULL ? req->h->id : 0, .status = status};

	if (status <= 0 || ((req->type == PROTO_READ || req->type == PROTO_READDIR) && len > req->size))
		len = 0;
	if (status > 0 && req->type == PROTO_READ && (size_t)status != len)
		status = (int32_t)len;
	if (drv_verbose)
		drv_log(LOG_DEBUG, "req %u %s -> %d", req->id, proto_type_name(req->type), status);
	if (req->buf != NULL && len > 0) {
		/* Data the driver made in its slot stays where it is. */
		const uint8_t *p = data;
		uintptr_t at = (uintptr_t)data, slot = (uintptr_t)req->buf;
		if (at < slot || at + len > slot + req->size) {
			memmove(req->buf, data, len);
			p = req->buf;
		}
		h.flags = PROTO_F_SHM;
		h.shm = (uint32_t)(p - shm);
		len = 0;
	}
	send_msg(&h, data, len);
	TAILQ_REMOVE(&requests, req, link);
	if (req->h != NULL && req->type == PROTO_CREATE && status < 0 && !req->h->released) {
		/* No file was made: the daemon forgets the handle, and so do we. */
		LIST_REMOVE(req->h, link);
		req->h->released = true;
		req->h->refs--;
	}
	if (req->h != NULL)
		handle_put(req->h);
	free(req);
}

void drv_reply_node(struct drv_req *req, const struct proto_node *node)
{
	uint8_t buf[64 + PROTO_MAX_NODE_NAME];
	size_t off = 0;

	if (proto_encode_node(buf, sizeof(buf), &off, node) < 0)
		return drv_reply(req, -EIO, NULL, 0);
	if (req->type == PROTO_CREATE)
		req->h->node = node->id;
	drv_reply(req, (int32_t)off, buf, off);
}

void drv_reply_slice(struct drv_req *req, const void *buf, size_t len)
{
	size_t n = 0;

	if (req->offset < len) {
		n = len - (size_t)req->offset;
		if (n > req->size)
			n = req->size;
	}
	drv_reply(req, (int32_t)n, n > 0 ? (const uint8_t *)buf + req->offset : NULL, n);
}

static void cancel_request(struct drv_req *req)
{
	if (req->cancelled)
		return;
	req->cancelled = true;
	if (req->xfer != NULL)
		drv_xfer_cancel(req->xfer);
	else if (req->cancel != NULL)
		req->cancel(req); /* may reply and free req */
}

void drv_file_changed(struct drv_file *file)
{
	struct drv_handle *h;

	for (h = LIST_FIRST(&handles); h != NULL; h = LIST_NEXT(h, link)) {
		if (h->file != file || h->poll_wanted == 0 || file->ops->poll == NULL)
			continue;
		unsigned revents = file->ops->poll(h) & (h->poll_wanted | POLLERR | POLLHUP);
		if (revents == 0)
			continue;
		struct proto_hdr m = {.type = PROTO_POLL_READY, .handle = h->id, .status = (int32_t)revents};
		h->poll_wanted = 0;
		send_msg(&m, NULL, 0);
	}
}

/* ---- Transfers ---- */

static void LIBUSB_CALL xfer_complete(struct libusb_transfer *t)
{
	struct drv_xfer *x = t->user_data;

	LIST_REMOVE(x, link);
	xfers_inflight--;
	xfers_completed++;
	x->done(x);
}

struct drv_xfer *drv_xfer_new(size_t len, void (*done)(struct drv_xfer *x), void *arg)
{
	return drv_xfer_new_iso(len, 0, done, arg);
}

struct drv_xfer *drv_xfer_new_iso(size_t len, int packets, void (*done)(struct drv_xfer *x), void *arg)
{
	struct drv_xfer *x = calloc(1, sizeof(*x));

	if (x == NULL)
		return NULL;
	x->t = libusb_alloc_transfer(packets);
	/* malloc(0) may return NULL; a zero-length packet still needs a buffer pointer. */
	if (x->t == NULL || (x->t->buffer = malloc(len > 0 ? len : 1)) == NULL) {
		libusb_free_transfer(x->t);
		free(x);
		return NULL;
	}
	x->t->length = (int)len;
	x->done = done;
	x->arg = arg;
	return x;
}

int drv_xfer_submit(struct drv_xfer *x)
{
	x->t->callback = xfer_complete;
	x->t->user_data = x;
	x->t->timeout = 0; /* the daemon owns deadlines and sends CANCEL */
	int r = libusb_submit_transfer(x->t);
	if (r < 0)
		return drv_usb_errno(r);
	LIST_INSERT_HEAD(&xfers, x, link);
	xfers_inflight++;
	/* Something new is in flight: look at libusb's fds at once. */
	usb_backoff_us = 0;
	usb_resume_at_us = 0;
	return 0;
}

void drv_xfer_cancel(struct drv_xfer *x)
{
	int r = libusb_cancel_transfer(x->t);

	/* NOT_FOUND: it completed already and its callback will run (or ran). */
	if (r < 0 && r != LIBUSB_ERROR_NOT_FOUND)
		drv_log(LOG_WARNING, "cancelling a transfer on endpoint %02x: %s", x->t->endpoint,
			libusb_strerror(r));
}

void drv_xfer_free(struct drv_xfer *x)
{
	if (x == NULL)
		return;
	free(x->t->buffer);
	x->t->buffer = NULL;
	libusb_free_transfer(x->t);
	free(x);
}

static const int usb_errnos[] = {
    [-LIBUSB_ERROR_IO] = EIO,
    [-LIBUSB_ERROR_INVALID_PARAM] = EINVAL,
    [-LIBUSB_ERROR_ACCESS] = EACCES,
    [-LIBUSB_ERROR_NO_DEVICE] = ENODEV,
    [-LIBUSB_ERROR_NOT_FOUND] = ENOENT,
    [-LIBUSB_ERROR_BUSY] = EBUSY,
    [-LIBUSB_ERROR_TIMEOUT] = ETIMEDOUT,
    [-LIBUSB_ERROR_OVERFLOW] = EOVERFLOW,
    [-LIBUSB_ERROR_PIPE] = EPIPE,
    [-LIBUSB_ERROR_INTERRUPTED] = EINTR,
    [-LIBUSB_ERROR_NO_MEM] = ENOMEM,
    [-LIBUSB_ERROR_NOT_SUPPORTED] = EOPNOTSUPP,
};

int drv_usb_errno(int libusb_error)
{
	if (libusb_error >= 0)
		return 0;
	if ((size_t)-libusb_error < sizeof(usb_errnos) / sizeof(usb_errnos[0]) &&
	    usb_errnos[-libusb_error] != 0)
		return -usb_errnos[-libusb_error];
	return -EIO;
}

static const int xfer_errnos[] = {
    [LIBUSB_TRANSFER_COMPLETED] = 0,	     [LIBUSB_TRANSFER_ERROR] = EIO,
    [LIBUSB_TRANSFER_TIMED_OUT] = ETIMEDOUT, [LIBUSB_TRANSFER_CANCELLED] = EINTR,
    [LIBUSB_TRANSFER_STALL] = EPIPE,	     [LIBUSB_TRANSFER_NO_DEVICE] = ENODEV,
    [LIBUSB_TRANSFER_OVERFLOW] = EOVERFLOW,
};

int drv_xfer_errno(enum libusb_transfer_status status)
{
	if ((size_t)status < sizeof(xfer_errnos) / sizeof(xfer_errnos[0]))
		return -xfer_errnos[status];
	return -EIO;
}

/* ---- Timers ---- */

void drv_timer_arm(struct drv_timer *t, unsigned ms)
{
	if (t->armed)
		LIST_REMOVE(t, link);
	t->due_ms = now_ms() + ms;
	t->armed = true;
	LIST_INSERT_HEAD(&timers, t, link);
}

void drv_timer_disarm(struct drv_timer *t)
{
	if (!t->armed)
		return;
	LIST_REMOVE(t, link);
	t->armed = false;
}

/* Milliseconds until the next timer is due (0: one is due), or -1: none armed. */
static int timers_next_ms(void)
{
	uint64_t now = now_ms(), first = UINT64_MAX;

	for (struct drv_timer *t = LIST_FIRST(&timers); t != NULL; t = LIST_NEXT(t, link))
		if (t->due_ms < first)
			first = t->due_ms;
	if (first == UINT64_MAX)
		return -1;
	return first <= now ? 0 : (int)(first - now);
}

/*
 * Fires every due timer.  Each is unlinked before its callback runs, and
 * the scan starts over after it, because the callback may arm or disarm
 * any timer.
 */
static void timers_run(void)
{
	uint64_t now = now_ms();
	bool again = true;

	while (again) {
		again = false;
		for (struct drv_timer *t = LIST_FIRST(&timers); t != NULL; t = LIST_NEXT(t, link))
			if (t->due_ms <= now) {
				drv_timer_disarm(t);
				t->fire(t);
				again = true;
				break;
			}
	}
}

/* ---- libusb's fds ---- */

static void LIBUSB_CALL usb_fd_added(int fd, short events, void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < n_usb_fds; i++)
		if (usb_fds[i].fd == fd) {
			usb_fds[i].events = events;
			return;
		}
	if (n_usb_fds < MAX_USB_FDS)
		usb_fds[n_usb_fds++] = (struct pollfd){.fd = fd, .events = events};
	else
		drv_log(LOG_ERR, "too many libusb fds, fd %d not polled", fd);
}

static void LIBUSB_CALL usb_fd_removed(int fd, void *arg)
{
	(void)arg;
	for (unsigned i = 0; i < n_usb_fds; i++)
		if (usb_fds[i].fd == fd) {
			usb_fds[i] = usb_fds[--n_usb_fds];
			return;
		}
}

static void usb_fds_init(void)
{
	const struct libusb_pollfd **pfds = libusb_get_pollfds(NULL);

	libusb_set_pollfd_notifiers(NULL, usb_fd_added, usb_fd_removed, NULL);
	for (unsigned i = 0; pfds != NULL && pfds[i] != NULL; i++)
		usb_fd_added(pfds[i]->fd, pfds[i]->events, NULL);
	libusb_free_pollfds(pfds);
}

/*
 * Lets libusb reap what is ready.  Under umockdev an emulated usbfs node
 * always polls ready and REAPURBNDELAY answers EAGAIN while nothing is
 * done, so polling libusb's fds while a transfer is pending would spin at
 * 100% CPU.  When libusb's fds woke us but no transfer completed, we stop
 * polling them for a short, doubling delay (1 ms up to 16 ms; reset by a
 * completion or a new submission).  Real usbfs only polls ready when an
 * URB can be reaped, so there the back-off never kicks in.
 */
static void handle_usb_events(void)
{
	struct timeval zero = {0, 0};
	unsigned long before = xfers_completed;

	libusb_handle_events_timeout_completed(NULL, &zero, NULL);
	if (xfers_completed != before || xfers_inflight == 0) {
		usb_backoff_us = 0;
		usb_resume_at_us = 0;
		return;
	}
	usb_backoff_us = usb_backoff_us == 0 ? 1000 : usb_backoff_us * 2;
	if (usb_backoff_us > USB_BACKOFF_MAX_US)
		usb_backoff_us = USB_BACKOFF_MAX_US;
	usb_resume_at_us = now_us() + usb_backoff_us;
}

/* ---- Requests from the daemon ---- */

/* OPEN of a node: a handle on the tree's file, opened by the tree. */
static void open_node(const struct proto_hdr *m)
{
	struct drv_tree *t = tree_by_target((uint32_t)m->status);
	struct drv_handle *h;
	int r = -EACCES;

	if (t == NULL || m->file == 0)
		return reply_status(m, -ENOENT);
	if (handle_by_id(m->handle) != NULL)
		return reply_status(m, -EBADF);
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return reply_status(m, -ENOMEM);
	h->id = m->handle;
	h->file = &t->file;
	h->node = m->file;
	h->flags = m->size;
	h->refs = 1;
	if (t->ops->open == NULL || (r = t->ops->open(h, m->size)) < 0) {
		free(h);
		return reply_status(m, r);
	}
	t->file.nopen++;
	LIST_INSERT_HEAD(&handles, h, link);
	reply_status(m, 0);
}

/* One handler per daemon-to-driver message; each request gets exactly one reply. */
static void on_open(const struct proto_hdr *m, const uint8_t *payload, size_t plen)
{
	struct drv_file *f = file_by_id(m->file);
	struct drv_handle *h;
	uint32_t acc = m->size & O_ACCMODE;
	int r;

	(void)payload;
	(void)plen;
	if (m->flags & PROTO_F_NODE)
		return open_node(m);
	if (f == NULL)
		return reply_status(m, -ENOENT);
	if (f->kind == PROTO_KIND_DIR)
		return reply_status(m, -EISDIR);
	if (handle_by_id(m->handle) != NULL)
		return reply_status(m, -EBADF);
	if (((acc == O_RDONLY || acc == O_RDWR) && !(f->mode & 0444)) ||
	    ((acc == O_WRONLY || acc == O_RDWR) && !(f->mode & 0222)))
		return reply_status(m, -EACCES);
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return reply_status(m, -ENOMEM);
	h->id = m->handle;
	h->file = f;
	h->flags = m->size;
	h->refs = 1;
	if (f->ops->open != NULL && (r = f->ops->open(h, m->size)) < 0) {
		free(h);
		return reply_status(m, r);
	}
	f->nopen++;
	LIST_INSERT_HEAD(&handles, h, link);
	reply_status(m, 0);
}

static struct drv_req *request_new(const struct proto_hdr *m, struct drv_handle *h)
{
	struct drv_req *req = calloc(1, sizeof(*req));

	if (req == NULL)
		return NULL;
	req->id = m->req;
	req->type = m->type;
	req->flags = m->flags;
	req->size = m->size;
	req->offset = m->offset;
	req->buf = m->type == PROTO_READ && (m->flags & PROTO_F_SHM) ? shm + m->shm : NULL;
	req->h = h;
	if (h != NULL) {
		h->refs++;
		req->fn = h->file->fn;
	}
	TAILQ_INSERT_TAIL(&requests, req, link);
	return req;
}

/* LOOKUP GETATTR READDIR CREATE UNLINK: to the tree of the function in m->status. */
static void on_tree(const struct proto_hdr *m, const uint8_t *payload, size_t plen)
{
	struct drv_tree *t = tree_by_target((uint32_t)m->status);
	char name[PROTO_MAX_NODE_NAME + 1];
	struct drv_handle *h = NULL;
	struct drv_req *req;

	if (t == NULL)
		return reply_status(m, -ENOENT);
	memcpy(name, payload, plen);
	name[plen] = '\0';
	if (plen > 0 && !proto_valid_node_name(name, plen))
		return reply_status(m, -EINVAL);
	if (m->type == PROTO_CREATE) {
		if (t->ops->create == NULL)
			return reply_status(m, -EROFS);
		if (handle_by_id(m->handle) != NULL)
			return reply_status(m, -EBADF);
		if ((h = calloc(1, sizeof(*h))) == NULL)
			return reply_status(m, -ENOMEM);
		h->id = m->handle;
		h->file = &t->file;
		h->flags = m->size;
		h->refs = 1;
		t->file.nopen++;
		LIST_INSERT_HEAD(&handles, h, link);
	}
	if ((req = request_new(m, h)) == NULL) {
		if (h != NULL) {
			LIST_REMOVE(h, link);
			h->released = true;
			handle_put(h);
		}
		return reply_status(m, -ENOMEM);
	}
	req->fn = t->fn;
	if (drv_verbose)
		drv_log(LOG_DEBUG, "req %u %s node %u %s", m->req, proto_type_name(m->type), m->file, name);
	switch (m->type) {
	case PROTO_LOOKUP:
		return t->ops->lookup(req, m->file, name);
	case PROTO_GETATTR:
		return t->ops->getattr(req, m->file);
	case PROTO_READDIR:
		return t->ops->readdir(req, m->file, m->offset);
	case PROTO_CREATE:
		return t->ops->create(req, m->file, name);
	case PROTO_UNLINK:
		if (t->ops->unlink == NULL)
			return drv_reply(req, -EROFS, NULL, 0);
		return t->ops->unlink(req, m->file, name);
	}
}

static void on_flush(const struct proto_hdr *m, const uint8_t *payload, size_t plen)
{
	struct drv_handle *h = handle_by_id(m->handle);
	struct drv_req *req;

	(void)payload;
	(void)plen;
	if (h == NULL)
		return reply_status(m, -EBADF);
	if (h->file->ops->flush == NULL)
		return reply_status(m, 0);
	if ((req = request_new(m, h)) == NULL)
		return reply_status(m, -ENOMEM);
	h->file->ops->flush(req);
}

static void on_io(const struct proto_hdr *m, const uint8_t *payload, size_t plen)
{
	struct drv_handle *h = handle_by_id(m->handle);
	struct drv_req *req;

	if (h == NULL)
		return reply_status(m, -EBADF);
	if ((m->type == PROTO_READ && h->file->ops->read == NULL) ||
	    (m->type == PROTO_WRITE && h->file->ops->write == NULL))
		return reply_status(m, -EINVAL);
	if ((req = request_new(m, h)) == NULL)
		return reply_status(m, -ENOMEM);
	if (drv_verbose)
		drv_log(LOG_DEBUG, "req %u %s %s size %u", m->req, proto_type_name(m->type), h->file->name,
			m->type == PROTO_READ ? m->size : (unsigned)plen);
	if (m->type == PROTO_READ)
		h->file->ops->read(req);
	else
		h->file->ops->write(req, payload, plen);
}

static void on_poll(const struct proto_hdr *m, const uint8_t *payload, size_t plen)
{
	struct drv_handle *h = handle_by_id(m->handle);
	unsigned revents;

	(void)payload;
	(void)plen;
	if (h == NULL)
		return reply_status(m, -EBADF);
	revents = h->file->ops->poll != NULL ? h->file->ops->poll(h) : (POLLIN | POLLOUT);
	/* Owed a POLL_READY at the next change even if ready now: harmless, never missed. */
	h->poll_wanted = m->size;
	reply_status(m, (int32_t)(revents & (m->size | POLLERR | POLLHUP)));
}

static void on_release(const struct proto_hdr *m, const uint8_t *payload, size_t plen)
{
	struct drv_handle *h = handle_by_id(m->handle);
	struct drv_req *req, *next;

	(void)payload;
	(void)plen;
	if (h == NULL) {
		drv_log(LOG_WARNING, "RELEASE of unknown handle %u", m->handle);
		return;
	}
	LIST_REMOVE(h, link);
	h->released = true;
	h->poll_wanted = 0;
	/* Hold the handle while cancelling: a cancelled request may reply and drop its ref. */
	for (req = TAILQ_FIRST(&requests); req != NULL; req = next) {
		next = TAILQ_NEXT(req, link);
		if (req->h == h)
			cancel_request(req);
	}
	handle_put(h);
}

static void on_cancel(const struct proto_hdr *m, const uint8_t *payload, size_t plen)
{
	struct drv_req *req;

	(void)payload;
	(void)plen;
	for (req = TAILQ_FIRST(&requests); req != NULL; req = TAILQ_NEXT(req, link))
		if (req->id == m->req) {
			if (drv_verbose)
				drv_log(LOG_DEBUG, "cancel req %u", m->req);
			cancel_request(req);
			return;
		}
	/* Not found: already answered, the CANCEL crossed our REPLY. */
}

static void on_ping(const struct proto_hdr *m, const uint8_t *payload, size_t plen)
{
	(void)payload;
	(void)plen;
	reply_status(m, 0);
}

#define CTL_MAX_ARGS 8

static void on_ctl(const struct proto_hdr *m, const uint8_t *payload, size_t plen)
{
	char text[PROTO_MAX_CTL + 1], *argv[CTL_MAX_ARGS], *save = NULL, *w;
	int argc = 0;

	struct drv_function *fn = function_by_target(m->file);

	if (fn == NULL)
		return reply_status(m, -ENODEV);
	memcpy(text, payload, plen);
	text[plen] = '\0';
	for (w = strtok_r(text, " \t\n", &save); w != NULL; w = strtok_r(NULL, " \t\n", &save)) {
		if (argc == CTL_MAX_ARGS)
			return reply_status(m, -EINVAL);
		argv[argc++] = w;
	}
	int r = argc == 0 || fn->ops->ctl == NULL ? -EINVAL : fn->ops->ctl(fn, argc, argv);
	drv_log(r < 0 ? LOG_WARNING : LOG_INFO, "function %u unit %u ctl '%s': %s", fn->index, fn->unit,
		argc > 0 ? argv[0] : "", r < 0 ? strerror(-r) : "ok");
	reply_status(m, r);
}

typedef void (*msg_handler)(const struct proto_hdr *m, const uint8_t *payload, size_t plen);

static const msg_handler msg_handlers[] = {
    [PROTO_OPEN] = on_open,    [PROTO_READ] = on_io,	     [PROTO_WRITE] = on_io,
    [PROTO_POLL] = on_poll,    [PROTO_RELEASE] = on_release, [PROTO_CANCEL] = on_cancel,
    [PROTO_PING] = on_ping,    [PROTO_CTL] = on_ctl,	     [PROTO_LOOKUP] = on_tree,
    [PROTO_GETATTR] = on_tree, [PROTO_READDIR] = on_tree,    [PROTO_CREATE] = on_tree,
    [PROTO_UNLINK] = on_tree,  [PROTO_FLUSH] = on_flush,
};

/*
 * Reads one message the daemon sent: poll() reports the socket again while
 * more are queued, so a request that comes alone costs no second recv() to
 * learn that none follows, and USB completions get their turn between
 * messages.  Returns -1 to go on, or the exit status: 0 on EOF (the daemon
 * hung up), 1 on a malformed message.
 */
static int read_message(void)
{
	ssize_t n = recv(PROTO_DRIVER_FD, rxbuf, sizeof(rxbuf), MSG_DONTWAIT | MSG_TRUNC);
	struct proto_hdr m;
	const char *why = NULL;

	if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
		return -1;
	if (n < 0) {
		drv_log(LOG_ERR, "recv: %s", strerror(errno));
		return errno == ECONNRESET ? 0 : 1;
	}
	if (n == 0)
		return 0;
	if (proto_decode_hdr(rxbuf, (size_t)n, &m, &why) < 0) {
		drv_log(LOG_ERR, "malformed message from the daemon: %s", why);
		return 1;
	}
	if (m.type >= sizeof(msg_handlers) / sizeof(msg_handlers[0]) || msg_handlers[m.type] == NULL) {
		drv_log(LOG_ERR, "daemon sent %s, not a request for a running driver",
			proto_type_name(m.type));
		return 1;
	}
	if ((m.flags & PROTO_F_SHM) && shm == NULL) {
		drv_log(LOG_ERR, "daemon sent %s in a shared buffer this driver has not mapped",
			proto_type_name(m.type));
		return 1;
	}
	/* The codec checked that a WRITE's data lies within the buffer. */
	if (m.type == PROTO_WRITE && (m.flags & PROTO_F_SHM))
		msg_handlers[m.type](&m, shm + m.shm, m.size);
	else
		msg_handlers[m.type](&m, rxbuf + PROTO_HDR_LEN, m.len - PROTO_HDR_LEN);
	return -1;
}

/* ---- Main loop ---- */

static int run(void)
{
	for (;;) {
		struct pollfd pfd[1 + MAX_USB_FDS] = {{.fd = PROTO_DRIVER_FD, .events = POLLIN}};
		unsigned npfd = 1;
		int timeout = -1;
		struct timeval tv;
		uint64_t now = now_us();

		/* libusb's fds only matter while something is in flight (see handle_usb_events). */
		if (xfers_inflight > 0 && usb_resume_at_us > now)
			timeout = (int)((usb_resume_at_us - now + 999) / 1000);
		else if (xfers_inflight > 0) {
			memcpy(pfd + 1, usb_fds, n_usb_fds * sizeof(usb_fds[0]));
			npfd += n_usb_fds;
		}
		int lt = libusb_get_next_timeout(NULL, &tv);
		if (lt == 1) {
			int ms = (int)(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
			if (timeout < 0 || ms < timeout)
				timeout = ms;
		}
		int tt = timers_next_ms();
		if (tt >= 0 && (timeout < 0 || tt < timeout))
			timeout = tt;

		int r = poll(pfd, npfd, timeout);
		if (r < 0 && errno != EINTR) {
			drv_log(LOG_ERR, "poll: %s", strerror(errno));
			return 1;
		}
		if (r > 0 && pfd[0].revents != 0) {
			int st = read_message();
			if (st >= 0)
				return st;
		}
		bool usb_ready = lt == 1 && r == 0;
		for (unsigned i = 1; i < npfd && r > 0; i++)
			if (pfd[i].revents != 0)
				usb_ready = true;
		if (usb_ready)
			handle_usb_events();
		timers_run();
	}
}

/* The daemon hung up: stop every request and transfer, give them a moment to come back. */
static bool drain_transfers(void)
{
	struct drv_req *req, *next;
	struct drv_xfer *x;
	uint64_t deadline = now_ms() + EXIT_DRAIN_MS;

	for (req = TAILQ_FIRST(&requests); req != NULL; req = next) {
		next = TAILQ_NEXT(req, link);
		cancel_request(req);
	}
	for (x = LIST_FIRST(&xfers); x != NULL; x = LIST_NEXT(x, link))
		drv_xfer_cancel(x);
	while (xfers_inflight > 0 && now_ms() < deadline) {
		struct timeval tv = {0, 1000};
		libusb_handle_events_timeout_completed(NULL, &tv, NULL);
		/* Emulated nodes poll ready at once: sleep so this is not a spin. */
		usleep(1000);
	}
	return xfers_inflight == 0;
}

/* ---- Start-up ---- */

static void usage(void)
{
	fprintf(stderr, "usage: plugfs-driver [-v] [--detach] [--user USER|UID:GID] DEVNODE DRIVER:IFNUM...\n"
			"       plugfs-driver [-v] [--user USER|UID:GID] --spare\n");
}

struct options {
	bool detach;
	bool spare;
	const char *user;
	const char *devnode;
};

static int parse_device(int argc, char **argv, struct options *o);

/* Returns 0, or -EINVAL after printing why. */
static int parse_args(int argc, char **argv, struct options *o)
{
	int i = 1;

	for (; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		} else if (strcmp(argv[i], "-v") == 0) {
			drv_verbose = true;
		} else if (strcmp(argv[i], "--detach") == 0) {
			o->detach = true;
		} else if (strcmp(argv[i], "--spare") == 0) {
			o->spare = true;
		} else if (strcmp(argv[i], "--user") == 0 && i + 1 < argc) {
			o->user = argv[++i];
		} else if (strncmp(argv[i], "--user=", 7) == 0) {
			o->user = argv[i] + 7;
		} else {
			fprintf(stderr, "plugfs-driver: unknown option %s\n", argv[i]);
			return -EINVAL;
		}
	}
	if (o->spare && (i < argc || o->detach)) {
		fprintf(stderr, "plugfs-driver: --spare takes its device from START, not the command line\n");
		return -EINVAL;
	}
	return o->spare ? 0 : parse_device(argc - i, argv + i, o);
}

/*
 * The device part of the command line, or of a START message, where the
 * only option allowed is a leading --detach: DEVNODE DRIVER:IFNUM...
 * Returns 0, or -EINVAL after printing why.
 */
static int parse_device(int argc, char **argv, struct options *o)
{
	int i = 0;

	if (o->spare && i < argc && strcmp(argv[i], "--detach") == 0) {
		o->detach = true;
		i++;
	}
	/* From START, a node is an absolute path: never an option taken for one. */
	if (i >= argc || (o->spare && argv[i][0] != '/')) {
		fprintf(stderr, "plugfs-driver: no device node\n");
		return -EINVAL;
	}
	o->devnode = argv[i++];
	if (i >= argc) {
		fprintf(stderr, "plugfs-driver: no DRIVER:IFNUM\n");
		return -EINVAL;
	}
	for (; i < argc; i++) {
		char *colon = strrchr(argv[i], ':'), *end;
		const struct driver_ops *ops = NULL;

		if (nfunctions == MAX_FUNCTIONS) {
			fprintf(stderr, "plugfs-driver: more than %d functions\n", MAX_FUNCTIONS);
			return -EINVAL;
		}
		if (colon == NULL || colon == argv[i]) {
			fprintf(stderr, "plugfs-driver: %s is not DRIVER:IFNUM\n", argv[i]);
			return -EINVAL;
		}
		for (size_t d = 0; d < sizeof(drivers) / sizeof(drivers[0]); d++)
			if (strlen(drivers[d]->name) == (size_t)(colon - argv[i]) &&
			    strncmp(drivers[d]->name, argv[i], (size_t)(colon - argv[i])) == 0)
				ops = drivers[d];
		errno = 0;
		unsigned long ifnum = strtoul(colon + 1, &end, 10);
		if (ops == NULL || colon[1] == '\0' || *end != '\0' || errno != 0 || ifnum > 255) {
			fprintf(stderr, "plugfs-driver: bad binding %s (unknown driver or interface)\n",
				argv[i]);
			return -EINVAL;
		}
		functions[nfunctions] = (struct drv_function){
		    .index = nfunctions,
		    .ifnum = (uint8_t)ifnum,
		    .dev = &device,
		    .ops = ops,
		};
		nfunctions++;
	}
	return 0;
}

/*
 * Reads the raw descriptors the way libusb does for a wrapped fd: from the
 * start, until a read comes back short.
 */
static ssize_t read_descriptors(int fd, uint8_t *buf, size_t cap)
{
	size_t len = 0;

	if (lseek(fd, 0, SEEK_SET) < 0)
		return -errno;
	while (len < cap) {
		size_t want = cap - len < 4096 ? cap - len : 4096;
		ssize_t n = read(fd, buf + len, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		len += (size_t)n;
		if ((size_t)n < want)
			break;
	}
	return (ssize_t)len;
}

/*
 * Claims interface `ifnum`: one bound to a kernel driver is left alone
 * unless the daemon passed --detach.  0 or -errno.
 *
 * The claim comes first: usbfs refuses (EBUSY) an interface a kernel
 * driver holds, and only then is the driver asked about, so the usual
 * start (nobody bound) costs one ioctl, not two; under umockdev each is a
 * round trip to the emulator, a good part of a millisecond here.
 */
static int claim_interface(uint8_t ifnum)
{
	int r = libusb_claim_interface(device.usb, ifnum);

	if (r == 0)
		return 0;
	if (r == LIBUSB_ERROR_NO_DEVICE)
		return -ENODEV;
	if (r == LIBUSB_ERROR_BUSY && libusb_kernel_driver_active(device.usb, ifnum) == 1) {
		if (!detach_allowed) {
			drv_log(LOG_WARNING,
				"interface %u is bound to a kernel driver; left alone (no --detach)", ifnum);
			return -EBUSY;
		}
		r = libusb_detach_kernel_driver(device.usb, ifnum);
		if (r < 0) {
			drv_log(LOG_ERR, "interface %u: detaching the kernel driver: %s", ifnum,
				libusb_strerror(r));
			return drv_usb_errno(r);
		}
		drv_log(LOG_NOTICE, "interface %u: kernel driver detached", ifnum);
		r = libusb_claim_interface(device.usb, ifnum);
	}
	if (r < 0) {
		drv_log(LOG_ERR, "interface %u: claim: %s", ifnum, libusb_strerror(r));
		return drv_usb_errno(r);
	}
	return 0;
}

static bool device_has_interface(uint8_t ifnum)
{
	for (unsigned i = 0; i < device.info.num_ifaces; i++)
		if (device.info.ifaces[i].number == ifnum)
			return true;
	return false;
}

int drv_claim_interface(struct drv_function *fn, uint8_t ifnum)
{
	int r;

	if (!device_has_interface(ifnum) || ifnum == fn->ifnum)
		return -ENOENT;
	for (unsigned i = 0; i < nextra_claims; i++)
		if (extra_claims[i].ifnum == ifnum)
			return -EBUSY;
	if (nextra_claims == MAX_FUNCTIONS)
		return -ENOSPC;
	if ((r = claim_interface(ifnum)) < 0)
		return r;
	extra_claims[nextra_claims].fn = fn->index;
	extra_claims[nextra_claims].ifnum = ifnum;
	nextra_claims++;
	return 0;
}

/* Releases what drv_claim_interface() claimed for function `index` (all: ~0u). */
static void release_extra_claims(unsigned index)
{
	for (unsigned i = 0; i < nextra_claims;) {
		if (index != ~0u && extra_claims[i].fn != index) {
			i++;
			continue;
		}
		libusb_release_interface(device.usb, extra_claims[i].ifnum);
		extra_claims[i] = extra_claims[--nextra_claims];
	}
}

/* Claims one function's interface and probes its driver; 0, or -errno and the function is skipped. */
static int bind_function(struct drv_function *fn)
{
	int r;

	if (!device_has_interface(fn->ifnum)) {
		drv_log(LOG_ERR, "function %u: the device has no interface %u", fn->index, fn->ifnum);
		return -ENOENT;
	}
	if ((r = claim_interface(fn->ifnum)) < 0)
		return r;
	r = fn->ops->probe(fn);
	if (r < 0) {
		drv_log(LOG_ERR, "interface %u: %s probe: %s", fn->ifnum, fn->ops->name, strerror(-r));
		files_remove_function(fn);
		release_extra_claims(fn->index);
		libusb_release_interface(device.usb, fn->ifnum);
		return r;
	}
	drv_log(LOG_INFO, "interface %u bound to %s", fn->ifnum, fn->ops->name);
	return 0;
}

/*
 * Maps the buffer the daemon shares on PROTO_SHM_FD, then closes the fd:
 * the mapping is all the driver needs.  Without it (run by hand, or a
 * buffer of the wrong size or unsealed) everything travels inline.
 */
static void shm_map(void)
{
	struct stat st;

	if (fstat(PROTO_SHM_FD, &st) < 0)
		return;
	/* The daemon's memfd, sealed at its size; any other fd 4 (run by hand) is left alone. */
	int seals = fcntl(PROTO_SHM_FD, F_GET_SEALS);
	if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
		return;
	if (st.st_size == PROTO_SHM_SIZE) {
		void *p = mmap(NULL, PROTO_SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, PROTO_SHM_FD, 0);
		if (p != MAP_FAILED)
			shm = p;
		else
			drv_log(LOG_WARNING, "mapping the shared buffer: %s", strerror(errno));
	} else {
		drv_log(LOG_WARNING, "shared buffer of %lld bytes, not %u: not used", (long long)st.st_size,
			PROTO_SHM_SIZE);
	}
	close(PROTO_SHM_FD);
}

static int send_hello(void)
{
	static struct proto_hello hello;
	static uint8_t payload[PROTO_MAX_IO];
	struct drv_file *f;
	unsigned i = 0;

	hello.version = PROTO_VERSION;
	/* The list is built head-first; send the files in the order they were added. */
	for (f = LIST_FIRST(&files); f != NULL; f = LIST_NEXT(f, link))
		i++;
	hello.nfiles = (uint16_t)i;
	for (f = LIST_FIRST(&files); f != NULL; f = LIST_NEXT(f, link)) {
		struct proto_file *pf = &hello.files[--i];
		*pf = (struct proto_file){.id = f->id,
					  .function = (uint8_t)f->fn->index,
					  .unit = f->fn->unit,
					  .kind = f->kind,
					  .mode = f->mode,
					  .size =
					      (f->kind & PROTO_KIND_MASK) == PROTO_KIND_BLOCK ? f->size : 0};
		snprintf(pf->name, sizeof(pf->name), "%s", f->name);
	}
	int n = proto_encode_hello(payload, sizeof(payload), &hello);
	if (n < 0)
		return n;
	struct proto_hdr h = {.type = PROTO_HELLO, .flags = shm != NULL ? PROTO_F_SHM : 0};
	return send_msg(&h, payload, (size_t)n);
}

/*
 * A spare host's wait for its device (proto.h, "Spare hosts"): READY,
 * unless a START is waiting already (the daemon queues it before it execs
 * a host for a device), then one START, checked strictly.  Returns 0 with
 * the device parsed into `o` and its descriptors, if START carried them,
 * copied to desc (*desc_len, else 0); 1 when the daemon hung up instead
 * (it is shutting down); -errno or -EPROTO.
 */
static int await_start(struct options *o, uint8_t *desc, size_t cap, size_t *desc_len)
{
	static char devnode[PROTO_START_MAX_ARG + 1];
	struct pollfd p = {.fd = PROTO_DRIVER_FD, .events = POLLIN};
	char *args[PROTO_START_MAX_ARGS];
	const uint8_t *d;
	const char *why = NULL;
	struct proto_hdr m;
	unsigned nargs;
	ssize_t n;
	int r;

	if (poll(&p, 1, 0) == 0) {
		struct proto_hdr ready = {.type = PROTO_READY};
		if ((r = send_msg(&ready, NULL, 0)) < 0)
			return r == -EPIPE || r == -ECONNRESET ? 1 : r;
	}
	while ((n = recv(PROTO_DRIVER_FD, rxbuf, sizeof(rxbuf), MSG_TRUNC)) < 0 && errno == EINTR)
		;
	if (n < 0)
		return errno == ECONNRESET ? 1 : -errno;
	if (n == 0)
		return 1;
	if (proto_decode_hdr(rxbuf, (size_t)n, &m, &why) < 0) {
		drv_log(LOG_ERR, "malformed message from the daemon while spare: %s", why);
		return -EPROTO;
	}
	if (m.type != PROTO_START || m.flags != 0 || m.req != 0 || m.handle != 0 || m.file != 0 ||
	    m.offset != 0 || m.status != 0) {
		drv_log(LOG_ERR, "daemon sent %s to a spare host, not a plain START",
			proto_type_name(m.type));
		return -EPROTO;
	}
	if (proto_decode_start(rxbuf + PROTO_HDR_LEN, m.len - PROTO_HDR_LEN, m.size, args,
			       PROTO_START_MAX_ARGS, &nargs, &d, desc_len, &why) < 0) {
		drv_log(LOG_ERR, "bad START: %s", why);
		return -EPROTO;
	}
	if (parse_device((int)nargs, args, o) < 0) {
		drv_log(LOG_ERR, "bad START: not [--detach] DEVNODE DRIVER:IFNUM...");
		return -EPROTO;
	}
	/* rxbuf serves the next message: keep what outlives it. */
	snprintf(devnode, sizeof(devnode), "%s", o->devnode);
	o->devnode = devnode;
	if (*desc_len > cap)
		*desc_len = 0; /* read them from the node, as without START */
	if (*desc_len > 0)
		memcpy(desc, d, *desc_len);
	return 0;
}

int main(int argc, char **argv)
{
	static uint8_t desc[MAX_DESC];
	struct options opt = {0};
	const char *why = NULL;
	char comm[16] = "";
	size_t given_desc = 0;
	int fd = -1, r, status = 1;

	if (parse_args(argc, argv, &opt) < 0) {
		usage();
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	/*
	 * A crashing driver is routine here (the supervisor respawns it); a
	 * core file per crash in the daemon's working directory is not.
	 */
	struct rlimit nocore = {0, 0};
	setrlimit(RLIMIT_CORE, &nocore);
	/* The daemon always reads, so a blocking socket makes every send simple. */
	int fl = fcntl(PROTO_DRIVER_FD, F_GETFL);
	if (fl < 0) {
		fprintf(stderr, "plugfs-driver: no protocol socket on fd %d\n", PROTO_DRIVER_FD);
		return 1;
	}
	fcntl(PROTO_DRIVER_FD, F_SETFL, fl & ~O_NONBLOCK);
	fcntl(PROTO_DRIVER_FD, F_SETFD, FD_CLOEXEC);
	shm_map();
	libusb_set_option(NULL, LIBUSB_OPTION_NO_DEVICE_DISCOVERY);
	if ((r = libusb_init(NULL)) < 0) {
		drv_log(LOG_ERR, "libusb_init: %s", libusb_strerror(r));
		return 1;
	}
	if (opt.spare) {
		/* `ps` tells the waiting spare from the drivers; a driver gets its own name back. */
		prctl(PR_GET_NAME, comm);
		prctl(PR_SET_NAME, "plugfs-spare");
		drv_sandbox_prepare();
		r = await_start(&opt, desc, sizeof(desc), &given_desc);
		if (r != 0) {
			status = r > 0 ? 0 : 1;
			goto out_libusb;
		}
		prctl(PR_SET_NAME, comm);
	}
	detach_allowed = opt.detach;
	fd = open(opt.devnode, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		drv_log(LOG_ERR, "%s: %s", opt.devnode, strerror(errno));
		goto out_libusb;
	}
	if ((r = libusb_wrap_sys_device(NULL, (intptr_t)fd, &device.usb)) < 0) {
		drv_log(LOG_ERR, "%s: libusb_wrap_sys_device: %s", opt.devnode, libusb_strerror(r));
		goto out_fd;
	}
	/* The daemon's copy (sysfs) is what the node would say: one emulator round trip less. */
	ssize_t dlen = given_desc > 0 ? (ssize_t)given_desc : read_descriptors(fd, desc, sizeof(desc));
	if (dlen < 0) {
		drv_log(LOG_ERR, "%s: reading descriptors: %s", opt.devnode, strerror((int)-dlen));
		goto out_close;
	}
	device.desc = desc;
	device.desc_len = (size_t)dlen;
	if (usbdesc_parse(desc, (size_t)dlen, &device.info, &why) < 0) {
		drv_log(LOG_ERR, "%s: bad descriptors: %s", opt.devnode, why);
		goto out_close;
	}
	drv_log(LOG_INFO, "%s: %04x:%04x, %u interfaces", opt.devnode, device.info.vendor_id,
		device.info.product_id, device.info.num_ifaces);

#ifdef PLUGFS_TEST_HOST
	for (unsigned i = 0; i < nfunctions; i++)
		if (device.info.vendor_id == TEST_NULL_VID && device.info.product_id == TEST_NULL_PID &&
		    functions[i].ops == &usb_driver)
			functions[i].ops = &null_driver;
#endif
	for (unsigned i = 0; i < nfunctions; i++) {
		r = bind_function(&functions[i]);
		if (r == -ENODEV) {
			drv_log(LOG_ERR, "%s: device gone", opt.devnode);
			goto out_release;
		}
		function_active[i] = r == 0;
	}
	usb_fds_init();
	/*
	 * HELLO goes before the sandbox is entered, so that the daemon's
	 * answer to it (the state `running`, a user's first request) overlaps
	 * the entry; nothing the daemon sends is read before the sandbox is in
	 * place.  Everything that needs privileges or new fds is done by now:
	 * the device is open and claimed.
	 */
	if ((r = send_hello()) < 0) {
		drv_log(LOG_ERR, "sending HELLO: %s", strerror(-r));
		goto out_release;
	}
	if ((r = drv_sandbox_enter(opt.user)) < 0)
		goto out_release;

	status = run();
	if (!drain_transfers()) {
		/* libusb would wait on transfers that never come back: leave it to the kernel. */
		drv_log(LOG_WARNING, "%u transfers did not come back; exiting anyway", xfers_inflight);
		return status;
	}
out_release:
	release_extra_claims(~0u);
	for (unsigned i = 0; i < nfunctions; i++)
		if (function_active[i])
			libusb_release_interface(device.usb, functions[i].ifnum);
	for (unsigned i = 0; i < nunits; i++)
		free(units[i]);
out_close:
	libusb_close(device.usb);
out_fd:
	close(fd);
out_libusb:
	libusb_exit(NULL);
	return status;
}
