/*
 * The daemon's shared types: devices, functions, open handles, options.
 *
 * A `usbdev` is one physical USB device; it has one driver process
 * (`struct drv`, supervisor/supervisor.h) and one or more `function`s, each
 * a directory (usb0, printer0...).  A function keeps the files its driver
 * announced in the last HELLO, so that while the driver is down the files
 * still exist and answer EIO instead of vanishing.
 */
#ifndef PLUGFS_PLUGFS_H
#define PLUGFS_PLUGFS_H

#include <stdint.h>
#include <stdio.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "bind.h"
#include "proto.h"
#include "usbdesc.h"

struct drv;

#define PLUGFS_MAX_FUNCS 16 /* per device */
/* File slots per function, over all its HELLOs (inode numbers, fs/ops.c) */
#define PLUGFS_MAX_SLOTS  4096
#define PLUGFS_NAME_MAX	  32
#define PLUGFS_MAX_VIDPID 32

struct vidpid {
	uint16_t vendor_id, product_id;
};

/* detach= and only= lists. */
struct vidpid_list {
	int all; /* detach=all, or only= absent */
	unsigned n;
	struct vidpid ids[PLUGFS_MAX_VIDPID];
};

enum { NUM_RESTART_MAX, NUM_RESTART_WINDOW, NUM_BACKOFF_MIN, NUM_BACKOFF_MAX, NUM_TIMEOUT, NUM_OPTS };

struct plugfs_opts {
	char *mountpoint;
	int foreground;
	int debug;
	int show_help;
	int show_version;
	int list;     /* --list: print what would be shown, mount nothing */
	int nonempty; /* -o nonempty: mount over a non-empty directory or a mount point */
	char *driver_user;
	unsigned restart_max;
	unsigned restart_window_s;
	unsigned backoff_min_ms;
	unsigned backoff_max_ms;
	unsigned timeout_ms;
	struct vidpid_list detach;
	struct vidpid_list only;
	/* Raw strings, checked and converted after libfuse's parser. */
	char *detach_str, *only_str;
	char *num_str[NUM_OPTS];
	unsigned npositional;
};

extern struct plugfs_opts opts;

/* A file a driver serves, as announced in HELLO. */
struct dfile {
	uint32_t id;
	uint8_t kind;
	uint16_t mode;
	uint64_t size;
	char name[PROTO_MAX_NAME + 1];
	int present; /* in the latest HELLO */
};

struct function {
	unsigned id; /* inode base = id << 16; never reused while mounted */
	char name[PLUGFS_NAME_MAX];
	struct usbdev *dev;
	unsigned index; /* function index in the driver's argv */
	uint8_t unit;	/* 0, or the unit (LUN) of function `index` it shows */
	uint8_t ifnum;
	const struct bind_driver *bind;
	unsigned nfiles;
	struct dfile *files;
	char by_id[224];  /* usb-MANUFACTURER_PRODUCT_SERIAL-ifNN */
	char by_path[80]; /* B-P.P:C.I */
	TAILQ_ENTRY(function) link;
};

struct usbdev {
	char syspath[256];
	char sysname[64]; /* 1-1.2 */
	char devnode[64];
	unsigned busnum, devnum;
	char speed[16];
	char manufacturer[128], product[128], serial[128];
	uint8_t *descriptors;
	size_t descriptors_len;
	struct usbdesc_device desc;
	int detach; /* the user named this device in detach= */
	unsigned nfuncs;
	struct function *funcs[PLUGFS_MAX_FUNCS];
	struct drv *drv;
	int gone;
	TAILQ_ENTRY(usbdev) link;
};

TAILQ_HEAD(function_list, function);
TAILQ_HEAD(usbdev_list, usbdev);

extern struct function_list functions;
extern struct usbdev_list usbdevs;

/* Log through one function: stderr in the foreground, syslog otherwise. */
void log_init(int foreground, int verbose);
void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
extern int log_verbose;

/* The `events` file: one line per event, also logged. */
void event_add(const char *name, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies up to `size` bytes of the log from `off`; returns the count. */
size_t events_read(char *buf, size_t size, uint64_t off);
uint64_t events_size(void);

/* Options (fs/opts.c). */
int opts_parse(int argc, char **argv, struct plugfs_opts *o, void *fuse_args);
/* Frees the strings opts_parse() allocated, on success or failure. */
void opts_free(struct plugfs_opts *o);
int opts_parse_vidpid_list(const char *s, struct vidpid_list *l);
int vidpid_list_has(const struct vidpid_list *l, uint16_t vid, uint16_t pid);

/* Devices (fs/devices.c). */
int devices_enumerate(void);
/*
 * --list: enumerates, names and binds as a mount would and prints one line
 * per function (NAME PORT VID:PID DRIVER [why its node cannot be opened])
 * and per interface left alone (- WHERE VID:PID skip: WHY); starts nothing.
 */
int devices_list(FILE *out);
struct function *function_by_id(unsigned id);
struct function *function_by_name(const char *name);
/*
 * Adds a function for interface ifd of dev, bound to bd: named KIND + the
 * lowest free index, with its by-id and by-path names; on the global list.
 */
struct function *function_new(struct usbdev *dev, const struct usbdesc_iface *ifd,
			      const struct bind_driver *bd);
/*
 * Adds the directory for unit `unit` (> 0) of `parent`, announced by its
 * driver in HELLO: the same device, interface, driver and index, named
 * KIND + the lowest free index, with "-lunN" after its by-id and by-path
 * names.  It lives as long as the device.
 */
struct function *function_new_unit(struct function *parent, uint8_t unit);
/* The function of dev with that driver index and unit, or NULL. */
struct function *function_of(struct usbdev *dev, unsigned index, unsigned unit);
/* Shows a usb_device found by enumeration or hotplug, once per syspath; 0 or -errno. */
struct udev;
struct udev_device;
int devices_add(struct udev *udev, struct udev_device *ud);
/* KIND + the lowest index no present function uses. */
void lowest_free_name(char *out, size_t cap, const char *kind);
/* The `devices` file. */
size_t devices_render(char *buf, size_t cap);
void usbdev_free(struct usbdev *dev);
/* At exit, after sup_shutdown(): frees every device and its driver state. */
void devices_free(void);

/* Hotplug (fs/hotplug.c). */
/* The udev monitor, on the loop: call before devices_enumerate(). */
int hotplug_init(void);
void hotplug_free(void);
/* Nonzero if syspath was handled (shown or skipped) and not removed since. */
int syspath_seen(const char *syspath);
void syspath_remember(const char *syspath);
/* A function's name: its old one if it had one and it is free, else lowest_free_name(). */
void names_pick(char *out, size_t cap, const struct usbdev *dev, uint8_t ifnum, uint8_t unit,
		const char *kind);
void names_forget_all(void);
/* Frees an unplugged device once its driver is reaped and no handle is left. */
void usbdev_release_if_unused(struct usbdev *dev);

#endif
