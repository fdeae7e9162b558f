/*
 * The driver table (see bind.h).  Adding a class driver = one row here and
 * one file in drivers/.
 */
#include "bind.h"

#include <stddef.h>
#include <string.h>

static const struct bind_id generic_ids[] = {
    {.match = BIND_MATCH_ANY},
    {0},
};

/* USB Printer Class 1.1: 1 unidirectional, 2 bidirectional, 3 IEEE 1284.4; 4 (IPP over USB) is not ours. */
static const struct bind_id printer_ids[] = {
    {.match = BIND_MATCH_CLASS | BIND_MATCH_SUBCLASS | BIND_MATCH_PROTOCOL,
     .cls = 7,
     .subclass = 1,
     .protocol = 1},
    {.match = BIND_MATCH_CLASS | BIND_MATCH_SUBCLASS | BIND_MATCH_PROTOCOL,
     .cls = 7,
     .subclass = 1,
     .protocol = 2},
    {.match = BIND_MATCH_CLASS | BIND_MATCH_SUBCLASS | BIND_MATCH_PROTOCOL,
     .cls = 7,
     .subclass = 1,
     .protocol = 3},
    {0},
};

static const struct bind_id hid_ids[] = {
    {.match = BIND_MATCH_CLASS, .cls = 3},
    {0},
};

/* Mass storage, SCSI transparent command set, Bulk-Only Transport. */
static const struct bind_id disk_ids[] = {
    {.match = BIND_MATCH_CLASS | BIND_MATCH_SUBCLASS | BIND_MATCH_PROTOCOL,
     .cls = 8,
     .subclass = 6,
     .protocol = 0x50},
    {0},
};

/* CDC-ACM (communication class 2, subclass 2, any protocol) and the FTDI FT232 family. */
static const struct bind_id serial_ids[] = {
    {.match = BIND_MATCH_CLASS | BIND_MATCH_SUBCLASS, .cls = 2, .subclass = 2, .flags = BIND_TAKES_UNION},
    {.match = BIND_MATCH_VIDPID | BIND_MATCH_CLASS,
     .vendor_id = 0x0403,
     .product_id = 0x6001,
     .cls = 0xff}, /* FT232R, FT232BM */
    {.match = BIND_MATCH_VIDPID | BIND_MATCH_CLASS,
     .vendor_id = 0x0403,
     .product_id = 0x6010,
     .cls = 0xff}, /* FT2232C/D/H */
    {.match = BIND_MATCH_VIDPID | BIND_MATCH_CLASS,
     .vendor_id = 0x0403,
     .product_id = 0x6011,
     .cls = 0xff}, /* FT4232H */
    {.match = BIND_MATCH_VIDPID | BIND_MATCH_CLASS,
     .vendor_id = 0x0403,
     .product_id = 0x6014,
     .cls = 0xff}, /* FT232H */
    {.match = BIND_MATCH_VIDPID | BIND_MATCH_CLASS,
     .vendor_id = 0x0403,
     .product_id = 0x6015,
     .cls = 0xff}, /* FT-X series */
    {0},
};

/* USB Video Class: the VideoControl interface, with the VideoStreaming interfaces its header lists. */
static const struct bind_id uvc_ids[] = {
    {.match = BIND_MATCH_CLASS | BIND_MATCH_SUBCLASS, .cls = 0x0e, .subclass = 1, .flags = BIND_TAKES_UNION},
    {0},
};

/* USB Test & Measurement Class: plain USBTMC (protocol 0) and USB488 (1), as the kernel's usbtmc. */
static const struct bind_id usbtmc_ids[] = {
    {.match = BIND_MATCH_CLASS | BIND_MATCH_SUBCLASS | BIND_MATCH_PROTOCOL,
     .cls = 0xfe,
     .subclass = 3,
     .protocol = 0},
    {.match = BIND_MATCH_CLASS | BIND_MATCH_SUBCLASS | BIND_MATCH_PROTOCOL,
     .cls = 0xfe,
     .subclass = 3,
     .protocol = 1},
    {0},
};

/* IPP over USB (printer class, protocol 4): the driver serves its scanner through eSCL. */
static const struct bind_id ippusb_ids[] = {
    {.match = BIND_MATCH_CLASS | BIND_MATCH_SUBCLASS | BIND_MATCH_PROTOCOL,
     .cls = 7,
     .subclass = 1,
     .protocol = 4,
     .flags = BIND_TAKES_SIBLINGS},
    {0},
};

/* Still Image Capture Device (PTP over USB, also MTP phones in PTP/MTP mode). */
static const struct bind_id still_ids[] = {
    {.match = BIND_MATCH_CLASS | BIND_MATCH_SUBCLASS | BIND_MATCH_PROTOCOL,
     .cls = 6,
     .subclass = 1,
     .protocol = 1},
    {0},
};

static const struct bind_driver drivers[] = {
    {"printer", "printer", printer_ids},
    {"hid", "hid", hid_ids},
    {"disk", "disk", disk_ids},
    {"serial", "serial", serial_ids},
    {"uvc", "webcam", uvc_ids},
    {"usbtmc", "instrument", usbtmc_ids},
    {"ippusb", "scanner", ippusb_ids},
    {"still", "still", still_ids},
    {"usb", "usb", generic_ids},
    {NULL, NULL, NULL},
};

static int id_matches(const struct bind_id *id, const struct usbdesc_device *dev,
		      const struct usbdesc_iface *iface)
{
	if (id->match & BIND_MATCH_ANY)
		return 1;
	if ((id->match & BIND_MATCH_VIDPID) &&
	    (id->vendor_id != dev->vendor_id || id->product_id != dev->product_id))
		return 0;
	if ((id->match & BIND_MATCH_CLASS) && id->cls != iface->cls)
		return 0;
	if ((id->match & BIND_MATCH_SUBCLASS) && id->subclass != iface->subclass)
		return 0;
	if ((id->match & BIND_MATCH_PROTOCOL) && id->protocol != iface->protocol)
		return 0;
	return id->match != 0;
}

/* The first row matching `iface`, and its driver. */
static const struct bind_id *lookup_id(const struct usbdesc_device *dev, const struct usbdesc_iface *iface,
				       const struct bind_driver **drv)
{
	for (const struct bind_driver *d = drivers; d->name != NULL; d++)
		for (const struct bind_id *id = d->ids; id->match != 0; id++)
			if (id_matches(id, dev, iface)) {
				*drv = d;
				return id;
			}
	return NULL;
}

const struct bind_driver *bind_lookup(const struct usbdesc_device *dev, const struct usbdesc_iface *iface)
{
	const struct bind_driver *d;

	return lookup_id(dev, iface, &d) != NULL ? d : bind_by_name("usb");
}

int bind_takes_union(const struct usbdesc_device *dev, const struct usbdesc_iface *iface)
{
	const struct bind_driver *d;
	const struct bind_id *id = lookup_id(dev, iface, &d);

	return id != NULL && (id->flags & BIND_TAKES_UNION);
}

const struct usbdesc_iface *bind_union_master(const struct usbdesc_device *dev, uint8_t ifnum)
{
	for (unsigned i = 0; i < dev->num_ifaces; i++) {
		const struct usbdesc_iface *m = &dev->ifaces[i];

		if (m->number == ifnum || !bind_takes_union(dev, m))
			continue;
		for (unsigned s = 0; s < m->num_slaves; s++)
			if (m->slaves[s] == ifnum)
				return m;
	}
	/* Siblings: the first interface matching the same BIND_TAKES_SIBLINGS row. */
	for (unsigned i = 0; i < dev->num_ifaces; i++) {
		const struct bind_driver *d;
		const struct bind_id *id;

		if (dev->ifaces[i].number != ifnum)
			continue;
		id = lookup_id(dev, &dev->ifaces[i], &d);
		if (id == NULL || !(id->flags & BIND_TAKES_SIBLINGS))
			return NULL;
		for (unsigned j = 0; j < i; j++)
			if (lookup_id(dev, &dev->ifaces[j], &d) == id)
				return &dev->ifaces[j];
		return NULL;
	}
	return NULL;
}

const struct bind_driver *bind_by_name(const char *name)
{
	for (const struct bind_driver *d = drivers; d->name != NULL; d++)
		if (strcmp(d->name, name) == 0)
			return d;
	return NULL;
}
