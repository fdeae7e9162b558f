/*
 * A parser for raw USB descriptors as the kernel's sysfs `descriptors`
 * attribute and usbfs give them: the 18-byte device descriptor, then each
 * configuration with its interface, class-specific and endpoint
 * descriptors.  It trusts no length field: every descriptor must fit in
 * what is left, and a malformed chain is an error, not a crash.
 */
#ifndef PLUGFS_USBDESC_H
#define PLUGFS_USBDESC_H

#include <stddef.h>
#include <stdint.h>

#define USBDESC_MAX_IFACES 32
#define USBDESC_MAX_EPS	   32
/* Slave interfaces kept from one CDC Union functional descriptor. */
#define USBDESC_MAX_SLAVES 8

enum {
	USB_DT_DEVICE = 1,
	USB_DT_CONFIG = 2,
	USB_DT_STRING = 3,
	USB_DT_INTERFACE = 4,
	USB_DT_ENDPOINT = 5,
	USB_DT_CS_INTERFACE = 0x24, /* class-specific, e.g. CDC functional descriptors */
};

/* CDC 1.2 section 5.2.3: functional descriptor subtypes plugfs reads. */
enum { USB_CDC_SUBTYPE_ACM = 0x02, USB_CDC_SUBTYPE_UNION = 0x06 };

/* Interface class of UVC: its class-specific subtypes are not CDC's. */
#define USB_CLASS_VIDEO 0x0e

enum usb_xfer_type { USB_XFER_CONTROL = 0, USB_XFER_ISOC = 1, USB_XFER_BULK = 2, USB_XFER_INTR = 3 };

struct usbdesc_ep {
	uint8_t address;    /* bit 7 set: IN */
	uint8_t attributes; /* bits 0-1: enum usb_xfer_type */
	uint16_t max_packet;
	uint8_t interval;
};

struct usbdesc_iface {
	uint8_t number;
	uint8_t alt;
	uint8_t cls, subclass, protocol;
	uint8_t num_eps;
	struct usbdesc_ep eps[USBDESC_MAX_EPS];
	/*
	 * A CDC Union functional descriptor (0x24/0x06) after this interface
	 * naming it bMasterInterface: the slave interfaces it lists (CDC data
	 * interfaces), which belong to this interface's function.  A union
	 * whose master is another interface is ignored.  For a UVC
	 * VideoControl interface: the VideoStreaming interfaces its header
	 * lists (baInterfaceNr).
	 */
	uint8_t num_slaves;
	uint8_t slaves[USBDESC_MAX_SLAVES];
	/* Where this interface's descriptors (itself included) sit in the raw buffer. */
	size_t raw_off, raw_len;
};

struct usbdesc_device {
	uint16_t bcd_usb;
	uint8_t cls, subclass, protocol;
	uint8_t max_packet0;
	uint16_t vendor_id, product_id, bcd_device;
	uint8_t i_manufacturer, i_product, i_serial;
	uint8_t num_configs;
	uint8_t config_value;
	/* Interfaces of the first configuration, altsetting 0 only. */
	unsigned num_ifaces;
	struct usbdesc_iface ifaces[USBDESC_MAX_IFACES];
};

/*
 * Parses the device descriptor and the first configuration.  Returns 0 or
 * -EINVAL; *why (if not NULL) says what was wrong.
 */
int usbdesc_parse(const uint8_t *buf, size_t len, struct usbdesc_device *dev, const char **why);

/* Finds altsetting `alt` of interface `number` in the first configuration: 0 or -ENOENT. */
int usbdesc_find_alt(const uint8_t *buf, size_t len, uint8_t number, uint8_t alt, struct usbdesc_iface *out);

#endif
