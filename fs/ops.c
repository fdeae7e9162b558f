/*
 * The tree of SPEC.md and the FUSE low-level operations that serve it.
 *
 * Inode numbers are computed, not allocated, so there are no lookup counts
 * to balance and a number never changes meaning while mounted:
 *
 *     1 /          2 devices     3 events     4 by-id/     5 by-path/
 *     F<<16            function directory F (function ids start at 1)
 *     F<<16 | 1..N     its daemon-served files (info_files[] below)
 *     F<<16 | 0x40     by-id/... -> ../NAME      F<<16 | 0x41  by-path/...
 *     F<<16 | 0x100+S  driver file in slot S of the function
 *     F<<16 | 0x8000 | D<<12 | S
 *                      directory at depth D (0: just below the function's) of
 *                      the driver file path in slot S, the lowest slot below it
 *
 *     1<<63 | F<<32 | N
 *                      node N of a tree function F's driver serves (a
 *                      PROTO_KIND_DIR of HELLO and everything below it):
 *                      the same node keeps its number across a respawn
 *
 * Daemon-served files are answered at once; driver files go through the
 * supervisor, which answers when the driver does.  Of a driver's tree the
 * daemon knows only the directories HELLO announced: every lookup, listing
 * and stat below them is asked of the driver, and the kernel caches none
 * (timeouts 0), so a file the device added or removed shows at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "notify.h"
#include "ops.h"
#include "supervisor.h"

#define FN_SHIFT	   16
#define SUB_DIR		   0
#define SUB_BYID	   0x40
#define SUB_BYPATH	   0x41
#define SUB_FILE	   0x100
#define SUB_SUBDIR	   0x8000
#define SUBDIR_DEPTH_SHIFT 12
#define NODE_BIT	   (1ull << 63)
#define NODE_FN_SHIFT	   32

enum info_id {
	INFO_VENDOR_ID,
	INFO_PRODUCT_ID,
	INFO_MANUFACTURER,
	INFO_PRODUCT,
	INFO_SERIAL,
	INFO_BUSNUM,
	INFO_DEVNUM,
	INFO_PORT,
	INFO_SPEED,
	INFO_INTERFACE,
	INFO_DESCRIPTORS,
	INFO_DRIVER,
	INFO_STATE,
	INFO_RESTARTS,
	INFO_CTL,
	NINFO,
};

static const struct {
	const char *name;
	mode_t mode;
} info_files[NINFO] = {
    [INFO_VENDOR_ID] = {"vendor_id", 0444},
    [INFO_PRODUCT_ID] = {"product_id", 0444},
    [INFO_MANUFACTURER] = {"manufacturer", 0444},
    [INFO_PRODUCT] = {"product", 0444},
    [INFO_SERIAL] = {"serial", 0444},
    [INFO_BUSNUM] = {"busnum", 0444},
    [INFO_DEVNUM] = {"devnum", 0444},
    [INFO_PORT] = {"port", 0444},
    [INFO_SPEED] = {"speed", 0444},
    [INFO_INTERFACE] = {"interface", 0444},
    [INFO_DESCRIPTORS] = {"descriptors", 0444},
    [INFO_DRIVER] = {"driver", 0444},
    [INFO_STATE] = {"state", 0444},
    [INFO_RESTARTS] = {"restarts", 0444},
    [INFO_CTL] = {"ctl", 0200},
};

static time_t mount_time;
/* Big enough for the devices file of a full bus and for any descriptors. */
static char render_buf[256 * 1024];

static fuse_ino_t fn_ino(const struct function *fn, unsigned sub)
{
	return (fuse_ino_t)fn->id << FN_SHIFT | sub;
}

/* A text value: the value and a newline; an absent string is an empty file. */
static size_t text(char *buf, size_t cap, const char *value)
{
	size_t len = strlen(value);

	if (len == 0)
		return 0;
	/* A short buffer gets a prefix: never a NUL where the content has a byte. */
	size_t n = len < cap ? len : cap;
	memcpy(buf, value, n);
	if (n < cap)
		buf[n++] = '\n';
	return n;
}

static size_t render_info(struct function *fn, enum info_id id, char *buf, size_t cap)
{
	struct usbdev *dev = fn->dev;
	char v[32];

	switch (id) {
	case INFO_VENDOR_ID:
		snprintf(v, sizeof(v), "%04x", dev->desc.vendor_id);
		return text(buf, cap, v);
	case INFO_PRODUCT_ID:
		snprintf(v, sizeof(v), "%04x", dev->desc.product_id);
		return text(buf, cap, v);
	case INFO_MANUFACTURER:
		return text(buf, cap, dev->manufacturer);
	case INFO_PRODUCT:
		return text(buf, cap, dev->product);
	case INFO_SERIAL:
		return text(buf, cap, dev->serial);
	case INFO_BUSNUM:
		snprintf(v, sizeof(v), "%u", dev->busnum);
		return text(buf, cap, v);
	case INFO_DEVNUM:
		snprintf(v, sizeof(v), "%u", dev->devnum);
		return text(buf, cap, v);
	case INFO_PORT:
		return text(buf, cap, dev->sysname);
	case INFO_SPEED:
		return text(buf, cap, dev->speed);
	case INFO_INTERFACE:
		snprintf(v, sizeof(v), "%02x", fn->ifnum);
		return text(buf, cap, v);
	case INFO_DESCRIPTORS: {
		size_t n = dev->descriptors_len < cap ? dev->descriptors_len : cap;
		memcpy(buf, dev->descriptors, n);
		return n;
	}
	case INFO_DRIVER:
		return text(buf, cap, fn->bind->name);
	case INFO_STATE:
		return text(buf, cap, drv_state_name(dev->drv->state));
	case INFO_RESTARTS:
		snprintf(v, sizeof(v), "%u", dev->drv->restarts);
		return text(buf, cap, v);
	default:
		return 0;
	}
}

/* What an inode is. */
struct node {
	enum {
		N_NONE,
		N_ROOT,
		N_DEVICES,
		N_EVENTS,
		N_BYID,
		N_BYPATH,
		N_FNDIR,
		N_SUBDIR,
		N_INFO,
		N_LINK,
		N_DFILE,
		N_NODE
	} type;
	struct function *fn;
	unsigned index; /* N_INFO: info id; N_DFILE, N_SUBDIR: slot; N_LINK: SUB_BYID/SUB_BYPATH; N_NODE: node
			   id */
	unsigned depth; /* N_SUBDIR */
};

/*
 * Driver files may be paths ("controls/brightness"): their directories
 * exist as long as a present file lies below them.  A directory is named
 * by the lowest slot below it and its depth, so its inode number is as
 * stable as its files' slots.
 */

/* Length of the directory at `depth` in path ("controls" of "controls/x" at 0); 0 if none. */
static size_t subdir_len(const char *path, unsigned depth)
{
	const char *p = path;

	for (unsigned d = 0;; d++) {
		const char *slash = strchr(p, '/');
		if (slash == NULL)
			return 0;
		if (d == depth)
			return (size_t)(slash - path);
		p = slash + 1;
	}
}

/* The lowest slot of a present file below directory dir[0..len), or fn->nfiles. */
static unsigned subdir_slot(const struct function *fn, const char *dir, size_t len)
{
	unsigned s;

	for (s = 0; s < fn->nfiles; s++)
		if (fn->files[s].present && strncmp(fn->files[s].name, dir, len) == 0 &&
		    fn->files[s].name[len] == '/')
			break;
	return s;
}

fuse_ino_t tree_node_ino(const struct function *fn, uint32_t node)
{
	return NODE_BIT | (fuse_ino_t)fn->id << NODE_FN_SHIFT | node;
}

/* The directory HELLO announced as node `node` of fn, or NULL: answered without the driver. */
static const struct dfile *hello_dir(const struct function *fn, uint32_t node)
{
	for (unsigned s = 0; s < fn->nfiles; s++)
		if (fn->files[s].present && fn->files[s].kind == PROTO_KIND_DIR && fn->files[s].id == node)
			return &fn->files[s];
	return NULL;
}

void tree_node_stat(const struct function *fn, const struct proto_node *pn, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = tree_node_ino(fn, pn->id);
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_atime = st->st_mtime = st->st_ctime = (time_t)pn->mtime;
	if (pn->kind == PROTO_KIND_DIR) {
		st->st_mode = S_IFDIR | pn->mode;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | pn->mode;
		st->st_nlink = 1;
		st->st_size = (off_t)pn->size;
		st->st_blocks = (blkcnt_t)((pn->size + 511) / 512);
	}
}

static struct node resolve(fuse_ino_t ino)
{
	struct node n = {N_NONE, NULL, 0, 0};

	if (ino & NODE_BIT) {
		n.fn = function_by_id((unsigned)((ino & ~NODE_BIT) >> NODE_FN_SHIFT));
		if (n.fn != NULL && (uint32_t)ino != 0) {
			n.type = N_NODE;
			n.index = (uint32_t)ino;
		}
		return n;
	}

	switch (ino) {
	case INO_ROOT:
		n.type = N_ROOT;
		return n;
	case INO_DEVICES:
		n.type = N_DEVICES;
		return n;
	case INO_EVENTS:
		n.type = N_EVENTS;
		return n;
	case INO_BYID:
		n.type = N_BYID;
		return n;
	case INO_BYPATH:
		n.type = N_BYPATH;
		return n;
	}
	struct function *fn = function_by_id((unsigned)(ino >> FN_SHIFT));
	unsigned sub = ino & ((1u << FN_SHIFT) - 1);
	if (fn == NULL)
		return n;
	n.fn = fn;
	if (sub == SUB_DIR && !fn->dev->gone) {
		n.type = N_FNDIR;
	} else if (sub >= 1 && sub <= NINFO) {
		n.type = N_INFO;
		n.index = sub - 1;
	} else if ((sub == SUB_BYID || sub == SUB_BYPATH) && !fn->dev->gone) {
		n.type = N_LINK;
		n.index = sub;
	} else if (sub >= SUB_FILE && sub - SUB_FILE < fn->nfiles) {
		n.type = N_DFILE;
		n.index = sub - SUB_FILE;
	} else if ((sub & SUB_SUBDIR) && !fn->dev->gone) {
		unsigned slot = sub & ((1u << SUBDIR_DEPTH_SHIFT) - 1);
		unsigned depth = (sub & ~SUB_SUBDIR) >> SUBDIR_DEPTH_SHIFT;
		size_t len;
		if (slot < fn->nfiles && (len = subdir_len(fn->files[slot].name, depth)) > 0 &&
		    subdir_slot(fn, fn->files[slot].name, len) == slot) {
			n.type = N_SUBDIR;
			n.index = slot;
			n.depth = depth;
		}
	}
	return n;
}

static void fill_stat(fuse_ino_t ino, const struct node *n, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	st->st_atime = st->st_mtime = st->st_ctime = mount_time;
	st->st_nlink = 1;
	switch (n->type) {
	case N_ROOT:
	case N_BYID:
	case N_BYPATH:
	case N_FNDIR:
	case N_SUBDIR:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		break;
	case N_DEVICES:
		st->st_mode = S_IFREG | 0444;
		st->st_size = (off_t)devices_render(render_buf, sizeof(render_buf));
		break;
	case N_EVENTS:
		st->st_mode = S_IFREG | 0444;
		st->st_size = (off_t)events_size();
		break;
	case N_INFO:
		st->st_mode = S_IFREG | info_files[n->index].mode;
		st->st_size = (off_t)render_info(n->fn, n->index, render_buf, sizeof(render_buf));
		break;
	case N_LINK:
		st->st_mode = S_IFLNK | 0777;
		st->st_size = (off_t)strlen(n->fn->name) + 3;
		break;
	case N_NODE: {
		/* Only a HELLO directory gets here (tree_stat); the supervisor fills the others. */
		const struct dfile *f = hello_dir(n->fn, n->index);
		st->st_mode = S_IFDIR | (f != NULL ? f->mode : 0555);
		st->st_nlink = 2;
		break;
	}
	case N_DFILE: {
		const struct dfile *f = &n->fn->files[n->index];
		st->st_mode = S_IFREG | f->mode;
		st->st_size = (f->kind & PROTO_KIND_MASK) == PROTO_KIND_BLOCK ? (off_t)f->size : 0;
		break;
	}
	case N_NONE:
		break;
	}
}

static void reply_entry(fuse_req_t req, fuse_ino_t ino)
{
	struct fuse_entry_param e;
	struct node n = resolve(ino);

	if (n.type == N_NONE)
		return (void)fuse_reply_err(req, ENOENT);
	memset(&e, 0, sizeof(e));
	e.ino = ino;
	/* Devices come and go, and state changes: let the kernel cache nothing. */
	e.attr_timeout = 0;
	e.entry_timeout = 0;
	fill_stat(ino, &n, &e.attr);
	fuse_reply_entry(req, &e);
}

/*
 * The driver files of fn in directory dir[0..len) ("" for the function's
 * own), and the directories just below it, which are at `depth`.
 */
static int list_files(struct function *fn, const char *dir, size_t len, unsigned depth, emit_fn emit,
		      void *ctx)
{
	for (unsigned s = 0; s < fn->nfiles; s++) {
		const char *path = fn->files[s].name;
		if (!fn->files[s].present || (len > 0 && (strncmp(path, dir, len) != 0 || path[len] != '/')))
			continue;
		const char *rest = len > 0 ? path + len + 1 : path;
		const char *slash = strchr(rest, '/');
		if (slash == NULL && fn->files[s].kind == PROTO_KIND_DIR) {
			if (emit(ctx, rest, tree_node_ino(fn, fn->files[s].id), S_IFDIR))
				return 1;
			continue;
		}
		if (slash == NULL) {
			if (emit(ctx, rest, fn_ino(fn, SUB_FILE + s), S_IFREG))
				return 1;
			continue;
		}
		/* A directory is listed once, at the lowest slot below it. */
		if (subdir_slot(fn, path, (size_t)(slash - path)) != s)
			continue;
		char name[PROTO_MAX_NAME + 1];
		snprintf(name, sizeof(name), "%.*s", (int)(slash - rest), rest);
		if (emit(ctx, name, fn_ino(fn, SUB_SUBDIR | depth << SUBDIR_DEPTH_SHIFT | s), S_IFDIR))
			return 1;
	}
	return 0;
}

/*
 * Directory listings, generated in one order for both lookup and readdir:
 * calls emit(name, ino) for each entry until it returns nonzero.
 */
static void list_dir(const struct node *dir, emit_fn emit, void *ctx)
{
	struct function *fn;

	switch (dir->type) {
	case N_ROOT:
		if (emit(ctx, "devices", INO_DEVICES, S_IFREG) || emit(ctx, "events", INO_EVENTS, S_IFREG) ||
		    emit(ctx, "by-id", INO_BYID, S_IFDIR) || emit(ctx, "by-path", INO_BYPATH, S_IFDIR))
			return;
		TAILQ_FOREACH(fn, &functions, link)
		if (!fn->dev->gone && emit(ctx, fn->name, fn_ino(fn, SUB_DIR), S_IFDIR))
			return;
		return;
	case N_BYID:
	case N_BYPATH:
		TAILQ_FOREACH(fn, &functions, link)
		{
			if (fn->dev->gone)
				continue;
			if (dir->type == N_BYID ? emit(ctx, fn->by_id, fn_ino(fn, SUB_BYID), S_IFLNK)
						: emit(ctx, fn->by_path, fn_ino(fn, SUB_BYPATH), S_IFLNK))
				return;
		}
		return;
	case N_FNDIR:
		fn = dir->fn;
		for (unsigned i = 0; i < NINFO; i++)
			if (emit(ctx, info_files[i].name, fn_ino(fn, 1 + i), S_IFREG))
				return;
		list_files(fn, "", 0, 0, emit, ctx);
		return;
	case N_SUBDIR: {
		const char *path = dir->fn->files[dir->index].name;
		list_files(dir->fn, path, subdir_len(path, dir->depth), dir->depth + 1, emit, ctx);
		return;
	}
	default:
		return;
	}
}

struct lookup_ctx {
	const char *name;
	fuse_ino_t found;
};

static int lookup_emit(void *ctx, const char *name, fuse_ino_t ino, mode_t type)
{
	struct lookup_ctx *l = ctx;
	(void)type;

	if (strcmp(name, l->name) != 0)
		return 0;
	l->found = ino;
	return 1;
}

static int is_dir(const struct node *n)
{
	return n->type == N_ROOT || n->type == N_BYID || n->type == N_BYPATH || n->type == N_FNDIR ||
	       n->type == N_SUBDIR;
}

int tree_list(fuse_ino_t dir, emit_fn emit, void *ctx)
{
	struct node n = resolve(dir);

	if (n.type == N_NONE)
		return -ENOENT;
	if (!is_dir(&n))
		return -ENOTDIR;
	list_dir(&n, emit, ctx);
	return 0;
}

/*
 * The directory holding `ino`, for ".." -- asked by the kernel only when
 * it decodes an NFS file handle (export_support), as is "." for any inode.
 */
/* The directory at `depth` of a driver file's path; depth -1 is the function's own. */
static fuse_ino_t dir_of(struct function *fn, const char *path, int depth)
{
	if (depth < 0)
		return fn_ino(fn, SUB_DIR);
	size_t len = subdir_len(path, (unsigned)depth);
	return fn_ino(fn, SUB_SUBDIR | (unsigned)depth << SUBDIR_DEPTH_SHIFT | subdir_slot(fn, path, len));
}

static fuse_ino_t tree_parent(const struct node *n)
{
	int slashes = 0;

	switch (n->type) {
	case N_INFO:
		return fn_ino(n->fn, SUB_DIR);
	case N_DFILE:
		for (const char *c = n->fn->files[n->index].name; *c != '\0'; c++)
			slashes += *c == '/';
		return dir_of(n->fn, n->fn->files[n->index].name, slashes - 1);
	case N_SUBDIR:
		return dir_of(n->fn, n->fn->files[n->index].name, (int)n->depth - 1);
	case N_LINK:
		return n->index == SUB_BYID ? INO_BYID : INO_BYPATH;
	case N_NODE: {
		/* A driver's own directory sits where its HELLO put it; below that only the driver knows. */
		const struct dfile *top = hello_dir(n->fn, n->index);
		if (top == NULL)
			return 0;
		for (const char *c = top->name; *c != '\0'; c++)
			slashes += *c == '/';
		return dir_of(n->fn, top->name, slashes - 1);
	}
	case N_NONE:
		return 0;
	default:
		return INO_ROOT; /* the root is its own parent */
	}
}

int tree_lookup(fuse_ino_t parent, const char *name, fuse_ino_t *ino)
{
	struct lookup_ctx l = {name, 0};

	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
		struct node n = resolve(parent);
		fuse_ino_t up = tree_parent(&n);
		if (up == 0)
			return -ENOENT;
		*ino = name[1] == '\0' ? parent : up;
		return 0;
	}
	int r = tree_list(parent, lookup_emit, &l);

	if (r < 0)
		return r;
	if (l.found == 0)
		return -ENOENT;
	*ino = l.found;
	return 0;
}

int tree_stat(fuse_ino_t ino, struct stat *st)
{
	struct node n = resolve(ino);

	/* Below a HELLO directory only the driver knows what a node is (sup_getattr). */
	if (n.type == N_NONE || (n.type == N_NODE && hello_dir(n.fn, n.index) == NULL))
		return -ENOENT;
	fill_stat(ino, &n, st);
	return 0;
}

ssize_t tree_render(fuse_ino_t ino, char *buf, size_t cap)
{
	struct node n = resolve(ino);

	switch (n.type) {
	case N_DEVICES:
		return (ssize_t)devices_render(buf, cap);
	case N_EVENTS:
		return (ssize_t)events_read(buf, cap, 0);
	case N_INFO:
		return (ssize_t)render_info(n.fn, n.index, buf, cap);
	case N_NONE:
		return -ENOENT;
	default:
		return -EINVAL;
	}
}

/*
 * Right after the mount (or a hotplug), a driver has not yet said which
 * files it serves.  A lookup or listing of its directory then waits for its
 * HELLO -- or its failure, at most timeout= later -- instead of answering
 * ENOENT to a script that runs `plugfs /mnt/usb && cat /mnt/usb/usb0/ep81`.
 */
struct deferred {
	fuse_req_t req;
	unsigned function_id;
	fuse_ino_t ino;
	size_t size;
	off_t off;
	char *name; /* lookup: the name; readdir: NULL */
	TAILQ_ENTRY(deferred) link;
};
static TAILQ_HEAD(, deferred) deferred_ops = TAILQ_HEAD_INITIALIZER(deferred_ops);

static int files_pending(const struct node *dir)
{
	return dir->type == N_FNDIR && dir->fn->nfiles == 0 && dir->fn->dev->drv->state == DRV_STARTING;
}

static int defer(fuse_req_t req, const struct node *dir, fuse_ino_t ino, const char *name, size_t size,
		 off_t off)
{
	struct deferred *d = calloc(1, sizeof(*d));

	if (d == NULL || (name != NULL && (d->name = strdup(name)) == NULL)) {
		free(d);
		return -ENOMEM;
	}
	d->req = req;
	d->function_id = dir->fn->id;
	d->ino = ino;
	d->size = size;
	d->off = off;
	TAILQ_INSERT_TAIL(&deferred_ops, d, link);
	return 0;
}

static void pl_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
static void pl_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);

void tree_driver_settled(struct usbdev *dev)
{
	TAILQ_HEAD(, deferred) ready = TAILQ_HEAD_INITIALIZER(ready);
	struct deferred *d, *next;

	/* Take them off the list first: a replay may defer again, and must not be seen twice. */
	for (d = TAILQ_FIRST(&deferred_ops); d != NULL; d = next) {
		next = TAILQ_NEXT(d, link);
		struct function *fn = function_by_id(d->function_id);
		if (fn != NULL && fn->dev != dev)
			continue;
		TAILQ_REMOVE(&deferred_ops, d, link);
		TAILQ_INSERT_TAIL(&ready, d, link);
	}
	while ((d = TAILQ_FIRST(&ready)) != NULL) {
		TAILQ_REMOVE(&ready, d, link);
		/* Run again: now the files are known, or the driver is down and they are not. */
		if (d->name != NULL)
			pl_lookup(d->req, d->ino, d->name);
		else
			pl_readdir(d->req, d->ino, d->size, d->off, NULL);
		free(d->name);
		free(d);
	}
}

static void pl_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	fuse_ino_t ino;
	struct node pn = resolve(parent);

	/* NFS's reconnection asks for . and ..: the daemon answers them where it knows them. */
	if (pn.type == N_NODE && strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
		return sup_lookup(req, pn.fn, pn.index, name);
	int r = tree_lookup(parent, name, &ino);

	if (r == -ENOENT) {
		struct node dir = resolve(parent);
		if (files_pending(&dir) && defer(req, &dir, parent, name, 0, 0) == 0)
			return;
	}
	if (r < 0)
		return (void)fuse_reply_err(req, -r);
	reply_entry(req, ino);
}

static void pl_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	struct node n = resolve(ino);
	(void)fi;

	if (n.type == N_NODE && hello_dir(n.fn, n.index) == NULL)
		return sup_getattr(req, n.fn, n.index);
	int r = tree_stat(ino, &st);

	if (r < 0)
		return (void)fuse_reply_err(req, -r);
	fuse_reply_attr(req, &st, 0);
}

static void pl_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)attr;
	/* `cat job > data` truncates: there is nothing to truncate, so ignore it. */
	if (to_set & ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
		       FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME))
		return (void)fuse_reply_err(req, EPERM);
	pl_getattr(req, ino, fi);
}

static void pl_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct node n = resolve(ino);
	char target[PLUGFS_NAME_MAX + 4];

	/* The link went with its device between the lookup and now: it is gone, not a non-link. */
	if (n.type == N_NONE)
		return (void)fuse_reply_err(req, ENOENT);
	if (n.type != N_LINK)
		return (void)fuse_reply_err(req, EINVAL);
	snprintf(target, sizeof(target), "../%s", n.fn->name);
	fuse_reply_readlink(req, target);
}

struct readdir_ctx {
	fuse_req_t req;
	char *buf;
	size_t size, used;
	off_t skip, index;
};

static int readdir_emit(void *ctx, const char *name, fuse_ino_t ino, mode_t type)
{
	struct readdir_ctx *r = ctx;
	struct stat st = {.st_ino = ino, .st_mode = type};

	if (r->index++ < r->skip)
		return 0;
	size_t need = fuse_add_direntry(r->req, NULL, 0, name, NULL, 0);
	if (r->used + need > r->size)
		return 1;
	fuse_add_direntry(r->req, r->buf + r->used, r->size - r->used, name, &st, r->index);
	r->used += need;
	return 0;
}

static void pl_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct node dir = resolve(ino);
	(void)fi;

	if (dir.type == N_NONE)
		return (void)fuse_reply_err(req, ENOENT);
	if (dir.type == N_NODE)
		return sup_readdir(req, dir.fn, ino, dir.index, size, off);
	if (!is_dir(&dir))
		return (void)fuse_reply_err(req, ENOTDIR);
	if (files_pending(&dir) && defer(req, &dir, ino, NULL, size, off) == 0)
		return;
	char *buf = malloc(size);
	if (buf == NULL)
		return (void)fuse_reply_err(req, ENOMEM);
	/* Entry i of the listing ("." is 0) carries offset i + 1, where the next read resumes. */
	struct readdir_ctx r = {req, buf, size, 0, off, 0};
	if (!readdir_emit(&r, ".", ino, S_IFDIR) && !readdir_emit(&r, "..", INO_ROOT, S_IFDIR))
		list_dir(&dir, readdir_emit, &r);
	fuse_reply_buf(req, buf, r.used);
	free(buf);
}

/* The access an open asks for, checked against the file's mode bits. */
static int check_access(mode_t mode, int flags)
{
	int acc = flags & O_ACCMODE;

	if ((acc == O_RDONLY || acc == O_RDWR) && !(mode & 0444))
		return EACCES;
	if ((acc == O_WRONLY || acc == O_RDWR) && !(mode & 0222))
		return EACCES;
	return 0;
}

static void pl_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct node n = resolve(ino);
	int err;

	switch (n.type) {
	case N_DEVICES:
	case N_EVENTS:
		err = check_access(0444, fi->flags);
		break;
	case N_INFO:
		err = check_access(info_files[n.index].mode, fi->flags);
		break;
	case N_DFILE:
		if (!n.fn->files[n.index].present)
			return (void)fuse_reply_err(req, ENOENT);
		err = check_access(n.fn->files[n.index].mode, fi->flags);
		if (err)
			return (void)fuse_reply_err(req, err);
		return sup_open(req, n.fn, n.index, fi);
	case N_NODE:
		/* The driver knows the node's mode, and answers EISDIR for a directory. */
		return sup_open_node(req, n.fn, n.index, fi);
	case N_NONE:
		return (void)fuse_reply_err(req, ENOENT);
	default:
		return (void)fuse_reply_err(req, EISDIR);
	}
	if (err)
		return (void)fuse_reply_err(req, err);
	/* Contents change under the reader (state, events): never cache them. */
	fi->direct_io = 1;
	fi->keep_cache = 0;
	fi->fh = 0;
	fuse_reply_open(req, fi);
}

static void reply_slice(fuse_req_t req, const char *buf, size_t len, size_t size, off_t off)
{
	if (off < 0 || (size_t)off >= len)
		return (void)fuse_reply_buf(req, NULL, 0);
	size_t n = len - (size_t)off < size ? len - (size_t)off : size;
	fuse_reply_buf(req, buf + off, n);
}

/*
 * A file of an unplugged device, still open: its reads and writes answer
 * ENODEV until it is closed, whether the device's memory is still there
 * (other handles keep it) or not.
 */
static int unplugged(fuse_ino_t ino, const struct node *n)
{
	if (n->fn != NULL)
		return n->fn->dev->gone;
	return n->type == N_NONE && (ino >> FN_SHIFT) != 0;
}

void tree_function_gone(struct function *fn)
{
	notify_entry_gone(INO_ROOT, fn_ino(fn, SUB_DIR), fn->name);
	notify_entry_gone(INO_BYID, fn_ino(fn, SUB_BYID), fn->by_id);
	notify_entry_gone(INO_BYPATH, fn_ino(fn, SUB_BYPATH), fn->by_path);
}

static void pl_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct node n = resolve(ino);

	if (unplugged(ino, &n))
		return (void)fuse_reply_err(req, ENODEV);

	switch (n.type) {
	case N_DEVICES:
		return reply_slice(req, render_buf, devices_render(render_buf, sizeof(render_buf)), size,
				   off);
	case N_EVENTS: {
		if (size > sizeof(render_buf))
			size = sizeof(render_buf);
		size_t got = events_read(render_buf, size, (uint64_t)off);
		return (void)fuse_reply_buf(req, render_buf, got);
	}
	case N_INFO:
		return reply_slice(req, render_buf,
				   render_info(n.fn, n.index, render_buf, sizeof(render_buf)), size, off);
	case N_DFILE:
	case N_NODE:
		if (fi->fh == 0)
			return (void)fuse_reply_err(req, EBADF);
		return sup_read(req, (struct handle *)(uintptr_t)fi->fh, size, off, fi->flags & O_NONBLOCK);
	default:
		return (void)fuse_reply_err(req, EBADF);
	}
}

/* ctl: one command per write, a trailing newline allowed. */
static void ctl_write(fuse_req_t req, struct function *fn, const char *buf, size_t size)
{
	size_t len = size;

	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		len--;
	if (len == 0 || len > PROTO_MAX_CTL || memchr(buf, '\n', len) != NULL ||
	    memchr(buf, '\0', len) != NULL)
		return (void)fuse_reply_err(req, EINVAL);
	if (len == 7 && memcmp(buf, "restart", 7) == 0) {
		int r = sup_restart(fn->dev->drv);
		if (r < 0)
			return (void)fuse_reply_err(req, -r);
		return (void)fuse_reply_write(req, size);
	}
	/* Everything else (reset, clear-halt, altsetting...) is the driver's. */
	sup_ctl(req, fn, buf, len, size);
}

static void pl_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct node n = resolve(ino);

	if (unplugged(ino, &n))
		return (void)fuse_reply_err(req, ENODEV);
	switch (n.type) {
	case N_INFO:
		if (n.index != INFO_CTL)
			return (void)fuse_reply_err(req, EBADF);
		return ctl_write(req, n.fn, buf, size);
	case N_DFILE:
	case N_NODE:
		if (fi->fh == 0)
			return (void)fuse_reply_err(req, EBADF);
		return sup_write(req, (struct handle *)(uintptr_t)fi->fh, buf, size, off,
				 fi->flags & O_NONBLOCK);
	default:
		return (void)fuse_reply_err(req, EBADF);
	}
}

static void pl_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	if (fi->fh != 0)
		sup_release((struct handle *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void pl_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	(void)ino;
	if (h == NULL)
		return (void)fuse_reply_err(req, 0);
	/* A node's driver may have an upload to finish: close(2) reports how it went. */
	if (h->node != 0)
		return sup_flush(req, h);
	/* A medium's writes may still be on their way (write-back): close(2) waits and reports them. */
	sup_sync(req, h);
}

static void pl_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	struct handle *h = (struct handle *)(uintptr_t)fi->fh;

	(void)ino;
	(void)datasync;
	if (h == NULL || h->node != 0)
		return (void)fuse_reply_err(req, 0);
	sup_sync(req, h);
}

static void pl_poll(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct fuse_pollhandle *ph)
{
	(void)ino;
	if (fi->fh != 0)
		return sup_poll(req, (struct handle *)(uintptr_t)fi->fh, ph);
	if (ph != NULL)
		fuse_pollhandle_destroy(ph);
	fuse_reply_poll(req, POLLIN | POLLOUT);
}

/*
 * The tree is the devices': files cannot be created, removed or renamed,
 * as in sysfs -- except in a driver's tree where the driver says so (a
 * camera's card: rm, and cp into a folder).  Without these, libfuse would
 * answer ENOSYS.
 */
static void pl_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)parent, (void)name, (void)mode, (void)rdev;
	fuse_reply_err(req, EPERM);
}

static void pl_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)parent, (void)name, (void)mode;
	fuse_reply_err(req, EPERM);
}

static void pl_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct node dir = resolve(parent);

	if (dir.type == N_NODE)
		return sup_unlink(req, dir.fn, dir.index, name);
	fuse_reply_err(req, EPERM);
}

static void pl_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent, (void)name;
	fuse_reply_err(req, EPERM);
}

static void pl_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	(void)link, (void)parent, (void)name;
	fuse_reply_err(req, EPERM);
}

static void pl_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	(void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
	fuse_reply_err(req, EPERM);
}

static void pl_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino, (void)newparent, (void)newname;
	fuse_reply_err(req, EPERM);
}

static void pl_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct node dir = resolve(parent);

	(void)mode;
	if (dir.type == N_NODE)
		return sup_create(req, dir.fn, dir.index, name, fi);
	fuse_reply_err(req, EPERM);
}

static void pl_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	mount_time = time(NULL);
	conn->max_write = PROTO_MAX_REQ;
	conn->max_read = PROTO_MAX_REQ;
	conn->max_readahead = 0;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	/* NFS export: inode numbers are stable while mounted, "." and ".." look up (tree_lookup). */
	if (conn->capable & FUSE_CAP_EXPORT_SUPPORT)
		conn->want |= FUSE_CAP_EXPORT_SUPPORT;
	/* Writes must reach the driver when the user makes them. */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

const struct fuse_lowlevel_ops plugfs_ops = {
    .init = pl_init,
    .lookup = pl_lookup,
    .getattr = pl_getattr,
    .setattr = pl_setattr,
    .readlink = pl_readlink,
    .open = pl_open,
    .read = pl_read,
    .write = pl_write,
    .flush = pl_flush,
    .release = pl_release,
    .fsync = pl_fsync,
    .readdir = pl_readdir,
    .poll = pl_poll,
    .mknod = pl_mknod,
    .mkdir = pl_mkdir,
    .unlink = pl_unlink,
    .rmdir = pl_rmdir,
    .symlink = pl_symlink,
    .rename = pl_rename,
    .link = pl_link,
    .create = pl_create,
};
