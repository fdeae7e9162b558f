/*
 * What the driver host (host.c) offers the class drivers, and what a class
 * driver offers the host.  A driver is a table, not a framework: a name, a
 * probe that registers the function's files, an optional ctl handler, and
 * per file a table of open/read/write/poll/release handlers.
 *
 * Every request (struct drv_req) is answered exactly once with drv_reply(),
 * either at once or later from a USB transfer's completion.  A driver that
 * parks a request sets req->xfer (the transfer that answers it) or
 * req->cancel (how to take it off the driver's own queue), so that CANCEL,
 * RELEASE and EOF can stop it; either way the driver still replies.
 *
 * USB transfers go through struct drv_xfer so the host knows how many are
 * in flight (it polls libusb's fds only then) and can cancel them all at
 * exit.  Transfers never time out in libusb: the daemon owns deadlines.
 */
#ifndef PLUGFS_DRIVER_H
#define PLUGFS_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <libusb.h>

#include "proto.h"
#include "usbdesc.h"

struct drv_file;
struct drv_handle;
struct drv_req;
struct drv_xfer;

/* The device this process serves, shared by all its functions. */
struct drv_device {
	libusb_device_handle *usb;
	const uint8_t *desc; /* raw descriptors as read from the node */
	size_t desc_len;
	struct usbdesc_device info;
};

/*
 * One DRIVER:IFNUM argument: an interface bound to a driver; or one more
 * unit of it (a disk's LUN 1...), made by drv_function_unit().
 */
struct drv_function {
	unsigned index; /* position on the command line (HELLO, PROTO_CTL) */
	uint8_t unit;	/* 0: the interface's own function; else its extra unit */
	uint8_t ifnum;
	struct drv_device *dev;
	const struct driver_ops *ops;
	void *priv; /* the driver's per-function state */
};

struct drv_file_ops {
	/* Returns 0 or -errno; may set h->priv.  `flags` are open(2) flags. */
	int (*open)(struct drv_handle *h, uint32_t flags);
	/* READ: reply now or later with data (<= req->size bytes) or -errno. */
	void (*read)(struct drv_req *req);
	/* WRITE: reply now or later with the number of bytes taken or -errno. */
	void (*write)(struct drv_req *req, const uint8_t *data, size_t len);
	/* Current poll(2) revents of the handle. */
	unsigned (*poll)(struct drv_handle *h);
	/* The handle is closed and no request on it is in flight any more. */
	void (*release)(struct drv_handle *h);
	/* close(2) of a descriptor (nodes only): reply 0 or -errno; NULL replies 0. */
	void (*flush)(struct drv_req *req);
};

struct drv_file {
	uint32_t id;
	struct drv_function *fn;
	const struct drv_file_ops *ops;
	void *priv;
	char name[PROTO_MAX_NAME + 1];
	uint16_t mode;
	uint8_t kind;	/* enum proto_kind | PROTO_FILE_* */
	uint64_t size;	/* PROTO_KIND_BLOCK: st_size, set by probe before HELLO */
	unsigned nopen; /* handles open on this file */
	LIST_ENTRY(drv_file) link;
};

struct drv_handle {
	uint32_t id; /* chosen by the daemon */
	struct drv_file *file;
	uint32_t node; /* nonzero: open on this node of file->fn's tree (file is the tree's) */
	void *priv;
	uint32_t flags;	      /* open(2) flags */
	uint32_t poll_wanted; /* events of the last POLL, 0 when no POLL_READY is owed */
	unsigned refs;	      /* 1 while open + 1 per request in flight */
	bool released;
	LIST_ENTRY(drv_handle) link;
};

struct drv_req {
	uint32_t id;
	uint16_t type;	/* PROTO_READ, PROTO_WRITE, PROTO_FLUSH, or a tree request */
	uint16_t flags; /* PROTO_F_* */
	uint32_t size;	/* READ: bytes wanted; READDIR: most payload bytes */
	uint64_t offset;
	/*
	 * READ: the request's slot of the buffer shared with the daemon
	 * (req->size bytes), or NULL.  drv_reply() copies the data there; a
	 * driver that produces the data in place (data pointing into buf)
	 * saves that copy too.
	 */
	uint8_t *buf;
	struct drv_handle *h;		     /* NULL for LOOKUP GETATTR READDIR UNLINK */
	struct drv_function *fn;	     /* tree requests: the function whose tree it is */
	struct drv_xfer *xfer;		     /* the transfer answering it, cancelled by CANCEL */
	void (*cancel)(struct drv_req *req); /* or: how to cancel it when no transfer is its own */
	bool cancelled;			     /* CANCEL or RELEASE asked to stop it */
	TAILQ_ENTRY(drv_req) link;	     /* host: requests in flight */
	TAILQ_ENTRY(drv_req) wait;	     /* driver: its own queue, if any */
};

TAILQ_HEAD(drv_req_queue, drv_req);

/*
 * A one-shot timer owned by its caller (embed it in the driver's state).
 * The host's loop fires it once `ms` after drv_timer_arm(); the callback
 * may arm it again.  Arming an armed timer moves its deadline.
 */
struct drv_timer {
	void (*fire)(struct drv_timer *t);
	void *arg;
	uint64_t due_ms; /* monotonic, now_ms() */
	bool armed;
	LIST_ENTRY(drv_timer) link;
};

struct drv_xfer {
	struct libusb_transfer *t;	  /* t->buffer is malloc'd and freed with the xfer */
	void (*done)(struct drv_xfer *x); /* completion; must drv_xfer_free(x) eventually */
	void *arg;
	struct drv_req *req; /* request it answers, if any */
	LIST_ENTRY(drv_xfer) link;
};

/*
 * A tree the driver serves (proto.h, "driver-owned trees"): its root
 * directories are files of kind PROTO_KIND_DIR added with drv_dir_add(),
 * everything below is asked of these handlers by node id.  Each request is
 * answered once, with drv_reply_node(), drv_reply() of encoded records
 * (READDIR) or a status, now or later.  Node ids are the driver's: nonzero,
 * unique in the process, and best stable across a restart (the inode number
 * follows them).
 */
struct drv_tree_ops {
	void (*lookup)(struct drv_req *req, uint32_t parent, const char *name);
	void (*getattr)(struct drv_req *req, uint32_t node);
	/* Whole records from entry `index` on, at most req->size bytes; none at the end. */
	void (*readdir)(struct drv_req *req, uint32_t dir, uint64_t index);
	/* NULL: EROFS.  req->h is the new handle, to be opened on the node the reply names. */
	void (*create)(struct drv_req *req, uint32_t parent, const char *name);
	void (*unlink)(struct drv_req *req, uint32_t parent, const char *name);
	/* Opens h on node h->node: 0 or -errno (EISDIR, EACCES...). */
	int (*open)(struct drv_handle *h, uint32_t flags);
	/* read, write, flush, release of node handles (h->node). */
	struct drv_file_ops file_ops;
};

struct driver_ops {
	const char *name;
	/* Claimed interface: set up state and register files.  0 or -errno. */
	int (*probe)(struct drv_function *fn);
	/* A function ctl command split in words; 0 or -errno (unknown: -EINVAL). */
	int (*ctl)(struct drv_function *fn, int argc, char **argv);
};

/* The class drivers, one line each. */
extern const struct driver_ops usb_driver;
extern const struct driver_ops printer_driver;
extern const struct driver_ops hid_driver;
extern const struct driver_ops disk_driver;
extern const struct driver_ops serial_driver;
extern const struct driver_ops uvc_driver;
extern const struct driver_ops usbtmc_driver;
extern const struct driver_ops ippusb_driver;
extern const struct driver_ops still_driver;

/* Logs to the daemon (syslog priority) and, with -v, to stderr. */
void drv_log(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
extern bool drv_verbose;

/* Registers a file of `fn`; NULL when the table is full. */
struct drv_file *drv_file_add(struct drv_function *fn, const char *name, uint16_t mode, uint8_t kind,
			      const struct drv_file_ops *ops, void *priv);

/*
 * Another unit of `fn` (unit 1..255, e.g. a LUN), with the same index,
 * interface, device and ops: files added to it show in a directory of its
 * own (disk1), and its ctl calls come with the new object.  Call it from
 * probe only; the host owns the object.  NULL when out of memory, or if
 * `unit` is 0 or exists already.
 */
struct drv_function *drv_function_unit(struct drv_function *fn, unsigned unit);

/* Registers fn's tree (once) and a root directory of it, node `node`, named `name` in fn's directory. */
int drv_tree_set(struct drv_function *fn, const struct drv_tree_ops *ops);
struct drv_file *drv_dir_add(struct drv_function *fn, const char *name, uint32_t node, uint16_t mode);

/* Answers a LOOKUP, GETATTR or CREATE with one node. */
void drv_reply_node(struct drv_req *req, const struct proto_node *node);

/* Answers a request (data may be NULL when status <= 0) and frees it. */
void drv_reply(struct drv_req *req, int32_t status, const void *data, size_t len);

/* Answers a READ of a file whose whole content is buf[0..len): the part at req->offset. */
void drv_reply_slice(struct drv_req *req, const void *buf, size_t len);

/* The file's readiness changed: send POLL_READY to the handles that wait for it. */
void drv_file_changed(struct drv_file *file);

/* Transfers.  drv_xfer_new allocates a `len`-byte buffer. */
struct drv_xfer *drv_xfer_new(size_t len, void (*done)(struct drv_xfer *x), void *arg);
/* The same with room for `packets` isochronous packet descriptors. */
struct drv_xfer *drv_xfer_new_iso(size_t len, int packets, void (*done)(struct drv_xfer *x), void *arg);
int drv_xfer_submit(struct drv_xfer *x);
void drv_xfer_cancel(struct drv_xfer *x);
void drv_xfer_free(struct drv_xfer *x);

/* Timers: fire(t) runs from the main loop, never inside another callback. */
void drv_timer_arm(struct drv_timer *t, unsigned ms);
void drv_timer_disarm(struct drv_timer *t);

/*
 * Claims another interface of the device for `fn` (a CDC union slave, see
 * common/bind.h), honouring --detach like the function's own interface;
 * released when the driver host exits.  0 or -errno (-EBUSY: bound to a
 * kernel driver and no --detach, or claimed already).
 */
int drv_claim_interface(struct drv_function *fn, uint8_t ifnum);

/* libusb error code / transfer status to a negative errno (0 when fine). */
int drv_usb_errno(int libusb_error);
int drv_xfer_errno(enum libusb_transfer_status status);

/*
 * The sandbox (sandbox.c), entered by the host once the device is open and
 * claimed: becomes `user` when root (NULL: stays), wipes the environment,
 * limits fds, address space and cores, sets no_new_privs and installs the
 * seccomp allow-list.  0 or -errno (logged); the host then exits.
 */
int drv_sandbox_enter(const char *user);
/*
 * Generates the seccomp filter's program ahead, for a spare host to do
 * before it has a device (libseccomp probes the kernel and compiles the
 * rules: some 0.2 ms here); drv_sandbox_enter() then installs it with one
 * system call.
 */
void drv_sandbox_prepare(void);

#endif
