/*
 * Which driver binds which interface.  The daemon decides (it names the
 * function directories before any driver runs) and tells the driver host
 * on its command line:
 *
 *     plugfs-driver [-v] [--detach] [--user USER] DEVNODE DRIVER:IFNUM...
 *
 * e.g. `plugfs-driver /dev/bus/usb/001/004 usb:0 usb:1`.  The position of a
 * DRIVER:IFNUM argument (0, 1, ...) is the function index used in HELLO file
 * entries and in PROTO_CTL.  The driver's socket is fd PROTO_DRIVER_FD.
 *
 * The table is data, like Linux's usb_device_id: a row per driver, its
 * match rules, and the kind that names its directories (printer0, usb0).
 * The generic driver `usb` comes last and takes every interface.
 */
#ifndef PLUGFS_BIND_H
#define PLUGFS_BIND_H

#include <stdint.h>

#include "usbdesc.h"

#define BIND_MATCH_VIDPID   0x01
#define BIND_MATCH_CLASS    0x02
#define BIND_MATCH_SUBCLASS 0x04
#define BIND_MATCH_PROTOCOL 0x08
#define BIND_MATCH_ANY	    0x10

struct bind_id {
	uint8_t match;
	uint16_t vendor_id, product_id;
	uint8_t cls, subclass, protocol;
};

struct bind_driver {
	const char *name;	   /* `driver` file, devices column, DRIVER in argv */
	const char *kind;	   /* directory name prefix */
	const struct bind_id *ids; /* ends with a zero row */
};

/* The driver for one interface of a device; never NULL (the generic one matches all). */
const struct bind_driver *bind_lookup(const struct usbdesc_device *dev, const struct usbdesc_iface *iface);

/* The driver called `name`, or NULL. */
const struct bind_driver *bind_by_name(const char *name);

#endif
