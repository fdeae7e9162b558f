/*
 * The supervisor: one plugfs-driver process per device, its life
 * (starting -> running -> restarting -> ... -> failed), and the requests
 * in flight to it.
 *
 *     starting --HELLO--> running --exit/signal/EOF/protocol error/heartbeat lost--> restarting
 *         ^                                                                               | backoff
 *         +-------------------------------------------------------------------------------+
 *     restarting --more than restart_max crashes in restart_window--> failed --ctl restart--> starting
 *
 * Every failure goes down one path, drv_fail(): in-flight requests get EIO,
 * the generation is bumped so handles opened before keep failing with EIO,
 * the process is killed if it still runs, and once it is reaped the respawn
 * is scheduled after the backoff.
 */
#ifndef PLUGFS_SUPERVISOR_H
#define PLUGFS_SUPERVISOR_H

#include <fuse_lowlevel.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "plugfs.h"

enum drv_state {
	DRV_STARTING,
	DRV_RUNNING,
	DRV_RESTARTING,
	DRV_FAILED,
	DRV_GONE,
};

const char *drv_state_name(enum drv_state s);

/* An open file handle (fi->fh). */
struct handle {
	uint32_t id;
	struct function *fn; /* NULL for daemon-served files */
	unsigned slot;	     /* index into fn->files (which may move: never keep a pointer) */
	uint32_t node;	     /* nonzero: a node of a driver-owned tree, and slot means nothing */
	uint32_t generation;
	struct fuse_pollhandle *ph;
	/* Read-ahead (block files): where the last read ended, how many in a row were sequential. */
	uint64_t ra_next;
	uint32_t ra_size; /* and its size */
	unsigned ra_seq;
	uint32_t ra_win; /* size of its next read-ahead window */
	uint32_t ra[2];	 /* ids of its read-ahead requests, earlier first; 0 = none */
	/*
	 * Write-back (block files): where the last write ended, its windows
	 * sent and not answered, the error one of them owes the writer.
	 */
	uint64_t wb_next;
	unsigned wb_inflight; /* windows sent and not answered, or saved for the next process */
	int wb_err;
	int wb_through; /* opened O_DSYNC, O_SYNC or O_DIRECT: every write waits for the device */
	LIST_ENTRY(handle) link;
};

/* A request forwarded to a driver, waiting for its REPLY. */
struct request {
	uint32_t id;
	uint16_t type;
	fuse_req_t req; /* NULL once answered (cancelled, timed out) */
	uint32_t handle;
	uint32_t size;		/* READ: bytes asked; WRITE: bytes sent */
	uint64_t deadline_ms;	/* 0: none */
	int cancelled;		/* CANCEL sent; the driver's REPLY is still owed */
	int interrupted;	/* FUSE interrupt seen, EINTR and CANCEL not sent yet */
	struct handle *opening; /* OPEN, CREATE: the handle to hand out on success */
	int slot;		/* READ/WRITE: its slot of the shared buffer, or -1 */
	/*
	 * Read-ahead: a READ no user asked for yet, of `size` bytes at `offset`,
	 * for handle `handle` (which lists it in ra[] until it is dropped).
	 * Once `done` it stays listed, answered, its `status` bytes in its slot;
	 * `req`, when set, is a user's read of want_size bytes at want_off
	 * waiting for it.
	 */
	int ra;
	int done;
	int32_t status;
	uint64_t offset, want_off;
	uint32_t want_size;
	/*
	 * Write-back: a window of `size` bytes at `offset` (req, when set, is
	 * the write that waited for room, the whole window, answered with it); a replay of such a window to
	 * the next process; an fsync or close waiting for handle's windows (never sent).
	 */
	int wb, replay, wb_wait;
	struct function *wb_fn; /* wb: the file written, fn->files[wb_file] */
	unsigned wb_file;
	uint32_t wb_owner; /* replay: the handle whose write it is */
	int wb_last;	   /* replay WRITE: the last piece of its window */
	/* Node requests: what the reply must match and how to answer it. */
	unsigned fn_id;	  /* the function whose tree it is (function ids are never reused) */
	uint32_t node;	  /* GETATTR: the node asked about */
	char *name;	  /* LOOKUP, CREATE: the name asked for */
	uint64_t dir_off; /* READDIR: the FUSE offset of the first driver entry */
	int open_flags;	  /* CREATE: for the fuse_file_info */
	TAILQ_ENTRY(request) link;
};

TAILQ_HEAD(request_list, request);
LIST_HEAD(handle_list, handle);

struct outmsg;
STAILQ_HEAD(outmsg_queue, outmsg);
struct wb_saved;
STAILQ_HEAD(wb_saved_list, wb_saved);

#define DRV_MAX_CRASH_HISTORY 64

struct drv {
	struct usbdev *dev;
	enum drv_state state;
	pid_t pid;
	int sock;
	uint32_t generation;
	unsigned restarts;
	int reaped;		/* the last process has been waited for */
	uint64_t respawn_at_ms; /* when restarting: respawn time (valid once reaped) */
	uint64_t started_ms;
	uint64_t kill_at_ms; /* gone: SIGKILL if not reaped by then */
	/* Heartbeat. */
	uint32_t ping_req;
	uint64_t ping_sent_ms;
	uint64_t next_ping_ms;
	/* Crash times within restart_window, oldest first. */
	unsigned ncrashes;
	uint64_t crashes_ms[DRV_MAX_CRASH_HISTORY];
	char fail_reason[128];
	int restart_requested; /* stopped by `ctl restart`: not a crash */
	/* Unsolicited messages (LOG, POLL_READY) in the current one-second window. */
	uint64_t window_ms;
	unsigned window_msgs, window_logs, logs_dropped;
	struct request_list requests;
	struct handle_list handles;
	struct outmsg_queue outq;
	size_t outq_bytes;
	/* The shared buffer (proto.h) of the current process: NULL when there is none. */
	uint8_t *shm;
	int shm_mapped;	   /* its HELLO said it mapped the buffer: slots may be given */
	uint32_t shm_busy; /* bit i: slot i belongs to a request in flight */
	/* Write-back: the one window being gathered, for handle wb_h (NULL: none). */
	struct handle *wb_h;
	int wb_slot;
	uint64_t wb_off, wb_at_ms;
	uint32_t wb_len;
	fuse_req_t wb_parked; /* the write that opened it, waiting for room */
	/* Windows answered to their writers and lost with the last process: written by the next. */
	struct wb_saved_list wb_saved;
	/* The next process's handles for them (ids replay_first..replay_handle), released together. */
	uint32_t replay_first, replay_handle;
	unsigned replay_pending;
};

/* Pure policy, unit-tested: backoff and restart intensity. */
unsigned drv_respawn_delay_ms(unsigned crashes_in_window, unsigned backoff_min_ms, unsigned backoff_max_ms);
/*
 * Records a crash at now_ms in the history, dropping crashes older than
 * window_ms; returns the number of crashes within the window.
 */
unsigned drv_record_crash(uint64_t *hist, unsigned *n, unsigned cap, uint64_t now_ms, uint64_t window_ms);

int sup_init(void);
/* Creates and starts the driver of a device. */
int sup_attach(struct usbdev *dev);
/*
 * Device unplugged: stop its driver for good (SIGTERM, SIGKILL after a
 * bound, reaped), fail everything in flight and every later request on its
 * handles with ENODEV.  The caller frees the device with
 * usbdev_release_if_unused() once nothing refers to it.
 */
void sup_detach(struct usbdev *dev);
/* `ctl restart`: leave failed (or restart a running driver) now. */
int sup_restart(struct drv *d);
/* Handles SIGCHLD: reaps every exited driver. */
void sup_reap(void);
/* Runs every expired deadline; returns the next deadline (ms) or 0 for none. */
uint64_t sup_tick(uint64_t now);
/* Stops every driver and waits for them (bounded). */
void sup_shutdown(void);
unsigned sup_child_count(void);
/* Frees a driver's state once it is stopped and reaped (NULL is fine). */
void sup_free(struct drv *d);

/*
 * One message of n bytes received from d's driver: decoded, checked and
 * acted on.  Returns 0, or -EPROTO once the driver has been failed (a
 * violation, or a failure while answering).  The only way a driver's
 * bytes enter the daemon; the fuzz target (tests/fuzz) calls it directly.
 */
int sup_on_message(struct drv *d, const uint8_t *buf, size_t n);
/*
 * Creates d's shared buffer: a sealed memfd of PROTO_SHM_SIZE bytes mapped
 * at d->shm.  Returns the memfd, for the caller to hand to the driver and
 * close, or -errno (the driver then goes without).  Unmapped when the
 * driver's socket is closed.
 */
int sup_shm_create(struct drv *d);

/* Forwarding FUSE requests. Each sends exactly one FUSE reply, now or later. */
void sup_open(fuse_req_t req, struct function *fn, unsigned slot, struct fuse_file_info *fi);
void sup_read(fuse_req_t req, struct handle *h, size_t size, off_t off, int nonblock);
void sup_write(fuse_req_t req, struct handle *h, const char *buf, size_t size, off_t off, int nonblock);
void sup_poll(fuse_req_t req, struct handle *h, struct fuse_pollhandle *ph);
void sup_release(struct handle *h);
/* Forwards a ctl command; a success reply reports `written` bytes. */
void sup_ctl(fuse_req_t req, struct function *fn, const char *cmd, size_t len, size_t written);
/*
 * Driver-owned trees (proto.h): each forwards one request about node ids of
 * fn's driver and answers FUSE when the driver does: ENODEV when unplugged,
 * EIO while the driver is down.
 */
void sup_lookup(fuse_req_t req, struct function *fn, uint32_t parent, const char *name);
void sup_getattr(fuse_req_t req, struct function *fn, uint32_t node);
/* Entries from FUSE offset `off` on; offsets 1 and 2 are "." and "..", driver entry i is 3 + i. */
void sup_readdir(fuse_req_t req, struct function *fn, fuse_ino_t ino, uint32_t dir, size_t size, off_t off);
void sup_open_node(fuse_req_t req, struct function *fn, uint32_t node, struct fuse_file_info *fi);
void sup_create(fuse_req_t req, struct function *fn, uint32_t parent, const char *name,
		struct fuse_file_info *fi);
void sup_unlink(fuse_req_t req, struct function *fn, uint32_t parent, const char *name);
/* close(2) of a node's descriptor: the driver may have work to finish (an upload). */
void sup_flush(fuse_req_t req, struct handle *h);
/*
 * fsync(2), and close(2) of a file that is not a node: answered once every
 * write on h the daemon answered before is answered by the driver, with
 * the error one of them got, if any.
 */
void sup_sync(fuse_req_t req, struct handle *h);

/* Answers the FUSE interrupts seen during the loop pass (EINTR + CANCEL). */
void sup_flush_interrupts(void);

static inline struct dfile *handle_file(struct handle *h)
{
	return &h->fn->files[h->slot];
}

/* The kind of file a handle is open on: a node is a seekable file. */
static inline uint8_t handle_kind(struct handle *h)
{
	return h->node != 0 ? PROTO_KIND_BLOCK : handle_file(h)->kind;
}

#endif
