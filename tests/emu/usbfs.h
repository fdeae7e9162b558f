/*
 * Shared between usbfs.c (the ioctls) and urb.c (URB life): one client
 * connection, i.e. one open() of a device node by some process.  URBs,
 * claims and the read() offset belong to it, as they belong to a struct
 * file in the kernel's usbfs.
 */
#ifndef PLUGFS_EMU_USBFS_H
#define PLUGFS_EMU_USBFS_H

#include "emu.h"

struct emu_conn {
	struct emu_dev *dev;
	UMockdevIoctlClient *client; /* not a reference: the conn hangs off the client */
	GQueue done;		     /* completed URBs waiting for REAPURB */
	bool reap_waiting;	     /* a blocking REAPURB is parked on this client */
	size_t read_off;	     /* descriptor read() position */
};

/* A completed URB became available and a blocking REAPURB is waiting. */
void emu_usbfs_reap_waiting(struct emu_conn *c);

/* Answers the USBDEVFS_BULK or USBDEVFS_CONTROL ioctl behind a completed sync URB. */
void emu_usbfs_finish_sync(struct emu_urb *urb);

#endif
