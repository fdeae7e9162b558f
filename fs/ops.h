/*
 * The FUSE low-level operations table (fs/ops.c).
 */
#ifndef PLUGFS_OPS_H
#define PLUGFS_OPS_H

#include <fuse_lowlevel.h>

#include <sys/stat.h>
#include <sys/types.h>

extern const struct fuse_lowlevel_ops plugfs_ops;

/*
 * The tree without FUSE, for the operations and for unit tests.  Inode
 * numbers are described at the top of fs/ops.c.
 */
enum { INO_ROOT = 1, INO_DEVICES = 2, INO_EVENTS = 3, INO_BYID = 4, INO_BYPATH = 5 };

/* Called per directory entry, in listing order; nonzero stops the listing. */
typedef int (*emit_fn)(void *ctx, const char *name, fuse_ino_t ino, mode_t type);

int tree_list(fuse_ino_t dir, emit_fn emit, void *ctx); /* 0, -ENOENT, -ENOTDIR */
int tree_lookup(fuse_ino_t parent, const char *name, fuse_ino_t *ino);
/* -ENOENT also for a node below a driver's directory: only the driver knows it. */
int tree_stat(fuse_ino_t ino, struct stat *st);
struct usbdev;
/* A driver said HELLO or failed: answers the lookups and listings that waited for it. */
void tree_driver_settled(struct usbdev *dev);

/* Drops an unplugged function's names from the kernel's caches (from another thread). */
struct function;
void tree_function_gone(struct function *fn);

/* Driver-owned trees: the inode of node `node` of fn, and its attributes. */
struct proto_node;
fuse_ino_t tree_node_ino(const struct function *fn, uint32_t node);
void tree_node_stat(const struct function *fn, const struct proto_node *pn, struct stat *st);

/* The content of a daemon-served file (devices, events, info files); -EINVAL for others. */
ssize_t tree_render(fuse_ino_t ino, char *buf, size_t cap);

#endif
