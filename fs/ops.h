/*
 * The FUSE low-level operations table (fs/ops.c).
 */
#ifndef PLUGFS_OPS_H
#define PLUGFS_OPS_H

#include <fuse_lowlevel.h>

extern const struct fuse_lowlevel_ops plugfs_ops;

#endif
