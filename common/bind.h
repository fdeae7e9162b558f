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
 *
 * Functions of more than one interface: an id row with BIND_TAKES_UNION binds
 * a CDC-style master interface together with the slave interfaces its CDC
 * Union functional descriptor lists (usbdesc_iface.slaves).  The daemon
 * gives such a slave no function of its own (bind_union_master() says
 * whose it is), skips the whole function when the master or any slave is
 * bound to a kernel driver and detach= does not name the device, and
 * passes only the master on the command line.  The class driver claims the
 * slaves itself in its probe with drv_claim_interface() (drivers/driver.h),
 * which honours --detach the same way and releases them at exit.
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

/* bind_id.flags */
#define BIND_TAKES_UNION 0x01
/*
 * The first interface matching the row takes every later interface that
 * matches the same row as its slaves (IPP over USB: a device offers
 * several identical 7/1/4 interfaces, one HTTP connection each).
 * bind_union_master() names that first interface for the others.
 */
#define BIND_TAKES_SIBLINGS 0x02

struct bind_id {
	uint8_t match;
	uint16_t vendor_id, product_id;
	uint8_t cls, subclass, protocol;
	uint8_t flags; /* BIND_TAKES_UNION, BIND_TAKES_SIBLINGS */
};

struct bind_driver {
	const char *name;	   /* `driver` file, devices column, DRIVER in argv */
	const char *kind;	   /* directory name prefix */
	const struct bind_id *ids; /* ends with a zero row */
};

/* The driver for one interface of a device; never NULL (the generic one matches all). */
const struct bind_driver *bind_lookup(const struct usbdesc_device *dev, const struct usbdesc_iface *iface);

/* Whether the row binding `iface` takes its union's slaves too. */
int bind_takes_union(const struct usbdesc_device *dev, const struct usbdesc_iface *iface);

/*
 * The master interface whose driver takes interface `ifnum` as a union
 * slave (see above), or NULL when `ifnum` is a function of its own.
 */
const struct usbdesc_iface *bind_union_master(const struct usbdesc_device *dev, uint8_t ifnum);

/* The driver called `name`, or NULL. */
const struct bind_driver *bind_by_name(const char *name);

#endif
