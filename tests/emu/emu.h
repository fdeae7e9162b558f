/*
 * plugfs-emu: emulated USB devices for plugfs's tests.
 *
 *     plugfs-emu [-v] --model NAME [--model NAME ...] [--bus N] -- COMMAND [ARGS...]
 *
 * The harness runs under umockdev's LD_PRELOAD library, builds a fake sysfs
 * (one usb_device per model, plus a root hub and the interfaces) and answers
 * the usbfs ioctls sent to each /dev/bus/usb/BBB/DDD node, then runs COMMAND,
 * which inherits LD_PRELOAD and UMOCKDEV_DIR and so sees the devices too.
 *
 * Everything in this directory that touches a device runs in umockdev's own
 * worker thread (the "umockdev-testbed-worker" thread of the testbed), one
 * callback at a time: no locks.  main() only builds the testbed, waits for
 * the child and tears everything down after the child is gone.
 *
 * A device is a model (a table entry: descriptors, strings, ops) plus the
 * state the usbfs layer keeps for it (claims, kernel-driver bindings, URBs
 * in flight).  Models never see umockdev: they get struct emu_urb with a
 * plain buffer and finish it with emu_urb_complete().
 */
#ifndef PLUGFS_EMU_H
#define PLUGFS_EMU_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>
#include <umockdev.h>

#define EMU_MAX_IFACES 4
#define EMU_MAX_EPS    4
#define EMU_MAX_DESC   4096

/* ---- log.c ---- */

extern bool emu_verbose;

/* Always printed, "plugfs-emu: " first. */
void emu_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Printed with -v only. */
void emu_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- models.c: what a model is ---- */

struct emu_ep_spec {
	uint8_t address;     /* bit 7 set: IN */
	uint8_t type;	     /* 1 isochronous, 2 bulk, 3 interrupt */
	uint16_t max_packet; /* wMaxPacketSize: bits 11-12 are extra transactions per microframe */
	uint8_t interval;
};

/* Alternate setting 1, 2... of an interface: same class, its own endpoints. */
struct emu_alt_spec {
	uint8_t num_eps;
	struct emu_ep_spec eps[EMU_MAX_EPS];
};

struct emu_iface_spec {
	uint8_t cls, subclass, protocol;
	uint8_t num_eps;
	struct emu_ep_spec eps[EMU_MAX_EPS];
	/* Name of the kernel driver bound at plug time, or NULL. */
	const char *kernel_driver;
	/*
	 * Class-specific descriptors (HID 0x21, CDC functional 0x24...), put
	 * right after the interface descriptor as real devices do.
	 */
	const uint8_t *extra;
	uint16_t extra_len;
	/* Descriptors put before the interface descriptor: an Interface Association (0x0b). */
	const uint8_t *pre;
	uint8_t pre_len;
	/* Alternate settings 1..num_alts, after altsetting 0 (this spec). */
	uint8_t num_alts;
	const struct emu_alt_spec *alts;
};

struct emu_dev;
struct emu_urb;

struct emu_setup {
	uint8_t request_type;
	uint8_t request;
	uint16_t value, index, length;
};

/*
 * What a model does.  Every hook may be NULL.  Hooks run in the worker
 * thread and must not block: a transfer that cannot finish now stays
 * pending and is completed later from another hook.
 */
struct emu_model_ops {
	int (*init)(struct emu_dev *dev); /* 0 or -errno; may set dev->state */
	void (*fini)(struct emu_dev *dev);
	/* A bulk or interrupt URB arrived; complete it now or leave it pending. */
	void (*submit)(struct emu_dev *dev, struct emu_urb *urb);
	/*
	 * A non-standard control request (standard ones are answered by
	 * ep0.c).  `data` holds setup->length bytes: OUT data to read or room
	 * for IN data.  Returns the number of data bytes transferred, -EPIPE to
	 * stall, or EMU_PENDING to leave the URB pending (the model then owns
	 * its completion).  Any other negative errno becomes the URB status.
	 */
	int (*control)(struct emu_dev *dev, struct emu_urb *urb, const struct emu_setup *setup,
		       uint8_t *data);
	/* CLEAR_HALT ioctl or CLEAR_FEATURE(ENDPOINT_HALT) on `ep`. */
	void (*clear_halt)(struct emu_dev *dev, uint8_t ep);
	/* A pending URB left (discarded, or its client went away). */
	void (*cancelled)(struct emu_dev *dev, struct emu_urb *urb);
	/* SET_INTERFACE: interface `ifnum` is now in altsetting `alt` (its old URBs are gone). */
	void (*set_alt)(struct emu_dev *dev, uint8_t ifnum, uint8_t alt);
};

/* A hook's "not finished yet": the URB stays pending. */
#define EMU_PENDING (-EINPROGRESS)

struct emu_model {
	const char *name;
	const char *summary; /* one line for --help */
	uint16_t vendor_id, product_id, bcd_device;
	uint8_t dev_class, dev_subclass, dev_protocol; /* 0: per interface */
	const char *manufacturer, *product, *serial;   /* NULL: no such string */
	uint8_t num_ifaces;
	struct emu_iface_spec ifaces[EMU_MAX_IFACES];
	const struct emu_model_ops *ops;
};

/*
 * The vendor interface the loopback, stall and hang models share, so that
 * one test works on each: bulk OUT 0x02, bulk IN 0x81, interrupt IN 0x83.
 */
#define EMU_VENDOR_IFACE                                                                                     \
	{                                                                                                    \
		.cls = 0xff, .subclass = 0xff, .protocol = 0xff, .num_eps = 3,                               \
		.eps = {                                                                                     \
		    {.address = 0x02, .type = 2, .max_packet = 512},                                         \
		    {.address = 0x81, .type = 2, .max_packet = 512},                                         \
		    {.address = 0x83, .type = 3, .max_packet = 64, .interval = 4},                           \
		},                                                                                           \
	}

/* NULL-terminated table of every model. */
extern const struct emu_model *const emu_models[];

const struct emu_model *emu_model_find(const char *name);

/* The models, one file each. */
extern const struct emu_model emu_model_loopback;
extern const struct emu_model emu_model_stall;
extern const struct emu_model emu_model_hang;
extern const struct emu_model emu_model_kbound;
extern const struct emu_model emu_model_printer_zh380, emu_model_printer_slow, emu_model_printer_offline,
    emu_model_printer_error, emu_model_printer_dymo, emu_model_printer_ql800, emu_model_printer_badid;
extern const struct emu_model emu_model_thermo, emu_model_keypad, emu_model_keypad_out;
extern const struct emu_model emu_model_disk, emu_model_disk_4k, emu_model_disk_2lun, emu_model_disk_stall,
    emu_model_disk_phase, emu_model_disk_nomedium, emu_model_disk_ro, emu_model_disk_bad, emu_model_disk_120k;
extern const struct emu_model emu_model_acm, emu_model_ft232r;
extern const struct emu_model emu_model_twin;
extern const struct emu_model emu_model_c270, emu_model_bulkcam;
extern const struct emu_model emu_model_null;
extern const struct emu_model emu_model_tmc_ds1054z, emu_model_tmc_pm16, emu_model_tmc_liar,
    emu_model_tmc_plain;
extern const struct emu_model emu_model_escl, emu_model_escl_garbage, emu_model_escl_liar;
extern const struct emu_model emu_model_camera, emu_model_camera_liar;
/* Not selectable: every bus gets one, as devnum 1. */
extern const struct emu_model emu_model_roothub;

/* ---- desc.c: descriptors built from a model ---- */

/*
 * Device descriptor followed by the one configuration, as sysfs
 * `descriptors` and a usbfs read() give them.  Returns the length.
 */
size_t emu_desc_build(const struct emu_model *m, uint8_t *buf, size_t cap);

/* Offsets of the parts inside what emu_desc_build() wrote. */
#define EMU_DESC_DEVICE_LEN 18

struct emu_dev;
/* String descriptor `index` (0: language IDs) of a device into buf; length or -ENOENT. */
int emu_desc_string(const struct emu_dev *dev, uint8_t index, uint8_t *buf, size_t cap);

/*
 * The endpoint spec for address `ep` in any altsetting and the interface
 * holding it, or NULL.
 */
const struct emu_ep_spec *emu_model_endpoint(const struct emu_model *m, uint8_t ep, int *iface);
/* The same in altsetting `alt` of interface `iface` only. */
const struct emu_ep_spec *emu_model_alt_endpoint(const struct emu_model *m, unsigned iface, unsigned alt,
						 uint8_t ep);

/* ---- device.c: one emulated device ---- */

struct emu_dev {
	const struct emu_model *model;
	unsigned busnum, devnum, port;
	char devnode[32]; /* /dev/bus/usb/001/002 */
	char sysname[16]; /* 1-1 */
	/* The serial number it reports: the model's, or the model's + "-N" for copy N (NULL: none). */
	const char *serial;
	char serial_buf[48];
	uint8_t desc[EMU_MAX_DESC];
	size_t desc_len;
	/* Bound kernel driver per interface (NULL: none), as GETDRIVER sees it. */
	const char *kernel_driver[EMU_MAX_IFACES];
	/* Which client connection claimed each interface (NULL: free). */
	void *claimed_by[EMU_MAX_IFACES];
	/* Current altsetting of each interface (SET_INTERFACE). */
	uint8_t alt[EMU_MAX_IFACES];
	/* Endpoints that stalled and were not cleared since: bit (ep & 15) + 16 for IN. */
	uint32_t halted;
	/* Every submitted URB not yet completed, oldest first. */
	GQueue pending;
	UMockdevIoctlBase *handler;
	void *state; /* the model's */
	/*
	 * Unplugged: every URB failed with -ENODEV, and every later ioctl or
	 * read on a node still open answers ENODEV, as usbfs does after a
	 * disconnect.  The struct lives on until exit: open clients point here.
	 */
	bool gone;
};

/* Copy 0 reports the model's serial number; copy N > 0 the model's + "-N". */
struct emu_dev *emu_dev_new(const struct emu_model *m, unsigned busnum, unsigned devnum, unsigned port,
			    unsigned copy);
void emu_dev_free(struct emu_dev *dev);
/*
 * SET_INTERFACE, from the ioctl or a control request: as the kernel does,
 * the URBs pending on the interface's endpoints fail with -ESHUTDOWN, then
 * the model hears of the new altsetting.  0 or -EINVAL.
 */
int emu_dev_set_alt(struct emu_dev *dev, unsigned ifnum, unsigned alt);

/* ---- sysfs.c: the device as sysfs and udev show it ---- */

/* The device (a root hub when dev->port is 0) and one child per interface.  0 or -errno. */
int emu_sysfs_add_device(UMockdevTestbed *tb, const struct emu_dev *dev);
/* The device's sysfs path as umockdev and uevents name it: /sys/devices/... */
void emu_sysfs_path(const struct emu_dev *dev, char *dst, size_t cap);

/* ---- usbfs.c: the usbfs ioctls of one device node ---- */

/* Attaches dev->handler to dev->devnode.  0 or -errno. */
int emu_usbfs_attach(UMockdevTestbed *tb, struct emu_dev *dev);

/* ---- bed.c: every device of the test bed, and hotplug ---- */

/*
 * The bus: a root hub as devnum 1, devices on ports 1, 2, ...  Devnums are
 * handed out as the kernel does, the next free one after the last given,
 * wrapping after 127, so a replugged device gets a new node.  A bus holds
 * 126 devices besides its root hub; the next one goes to a new bus,
 * busnum + 1, with a root hub of its own (up to EMU_MAX_BUSES).
 */
#define EMU_MAX_BUSES 4
int emu_bed_init(UMockdevTestbed *tb, unsigned busnum);
/*
 * Plugs a device of model m on `port` of the first bus (0: the lowest free
 * port of the first bus with a free devnum).  `copy` as for emu_dev_new().
 */
int emu_bed_plug(const struct emu_model *m, unsigned port, unsigned copy, struct emu_dev **out);
/* Unplugs the device `sysname` (1-3): URBs fail, node dead, uevent, sysfs gone. */
int emu_bed_unplug(const char *sysname);
/* After the testbed is unreferenced (its worker stopped): frees every device. */
void emu_bed_free(void);

/* ---- control.c: plug and unplug while the command runs ---- */

/*
 * A unix stream socket at `path`; each connection sends commands, one a
 * line, and gets one line back for each, in order:
 *     plug MODEL [PORT]   ->  ok SYSNAME DEVNODE   (the uevent "add" is sent)
 *     unplug SYSNAME      ->  ok                   (the uevent "remove" is sent)
 *     anything wrong      ->  err MESSAGE
 */
int emu_control_start(const char *path);
/* Stops serving and removes the socket. */
void emu_control_stop(void);

/* ---- urb.c: transfers in flight ---- */

struct emu_conn;

/* One packet of an isochronous URB, laid out as usbfs's struct usbdevfs_iso_packet_desc. */
struct emu_iso_packet {
	uint32_t length; /* room for it in the buffer; packets follow each other there */
	uint32_t actual; /* set by the model */
	int32_t status;	 /* 0 or -errno, set by the model */
};

struct emu_urb {
	struct emu_dev *dev;
	struct emu_conn *conn;
	uint8_t type;	  /* USBDEVFS_URB_TYPE_* */
	uint8_t endpoint; /* 0 for control */
	unsigned flags;	  /* USBDEVFS_URB_* */
	uint8_t *data;	  /* transfer data (control: after the setup packet) */
	uint32_t length;  /* bytes at data */
	struct emu_setup setup;
	/* Isochronous: the packets, in the client's URB (written back at reap). */
	unsigned num_iso;
	struct emu_iso_packet *iso;
	/* Result, set by emu_urb_complete(). */
	int status;
	uint32_t actual;
	/* Where it came from: SUBMITURB (urb_data) or a synchronous ioctl. */
	gulong client_addr;
	UMockdevIoctlData *urb_data, *buf_data;
	UMockdevIoctlClient *sync_client; /* USBDEVFS_BULK / CONTROL waiting */
	GSource *timeout;
	uint64_t submitted_us;
};

/* Finishes a pending URB: status 0 or -errno, `actual` bytes at urb->data. */
void emu_urb_complete(struct emu_urb *urb, int status, uint32_t actual);

/* The oldest pending URB of `dev` on endpoint `ep`, or NULL. */
struct emu_urb *emu_urb_first_pending(struct emu_dev *dev, uint8_t ep);

/* Takes a pending URB out without completing it, telling the model. */
void emu_urb_cancel(struct emu_urb *urb);

/* Releases an URB that is neither pending nor queued for reaping. */
void emu_urb_free(struct emu_urb *urb);

/* Bit in emu_dev.halted for endpoint address `ep`. */
static inline uint32_t emu_ep_bit(uint8_t ep)
{
	return 1u << ((ep & 0x0f) + ((ep & 0x80) ? 16 : 0));
}

/* ---- ep0.c: control transfers ---- */

/* Runs a control URB: standard requests here, the rest through the model. */
void emu_ep0_submit(struct emu_dev *dev, struct emu_urb *urb);

/* Clears a halt as CLEAR_FEATURE(ENDPOINT_HALT) does, telling the model. */
void emu_ep0_clear_halt(struct emu_dev *dev, uint8_t ep);

/* ---- fifo.c: a bounded byte queue ---- */

struct emu_fifo {
	uint8_t *buf;
	size_t cap, head, len;
};

int emu_fifo_init(struct emu_fifo *f, size_t cap);
void emu_fifo_free(struct emu_fifo *f);
size_t emu_fifo_space(const struct emu_fifo *f);
/* Copies min(n, space) bytes in; returns how many. */
size_t emu_fifo_put(struct emu_fifo *f, const uint8_t *p, size_t n);
/* Copies min(n, len) bytes out; returns how many. */
size_t emu_fifo_get(struct emu_fifo *f, uint8_t *p, size_t n);

/* ---- model_loopback.c: shared by the loopback and kbound models ---- */

extern const struct emu_model_ops emu_loopback_ops;

#endif
