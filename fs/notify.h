/*
 * Kernel notifications of removed names, from a thread of their own
 * (fs/notify.c says why).
 */
#ifndef PLUGFS_NOTIFY_H
#define PLUGFS_NOTIFY_H

#include <fuse_lowlevel.h>
#include <stdint.h>

int notify_start(struct fuse_session *se);
/* Queues "parent/name (inode child) is gone"; never blocks. */
void notify_entry_gone(uint64_t parent, uint64_t child, const char *name);
/* Ends the thread; -EBUSY if it could not (the session must then outlive us). */
int notify_stop(void);

#endif
