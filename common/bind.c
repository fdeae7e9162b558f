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

static const struct bind_driver drivers[] = {
    {"printer", "printer", printer_ids},
    {"hid", "hid", hid_ids},
    {"disk", "disk", disk_ids},
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

const struct bind_driver *bind_lookup(const struct usbdesc_device *dev, const struct usbdesc_iface *iface)
{
	for (const struct bind_driver *d = drivers; d->name != NULL; d++)
		for (const struct bind_id *id = d->ids; id->match != 0; id++)
			if (id_matches(id, dev, iface))
				return d;
	return bind_by_name("usb");
}

const struct bind_driver *bind_by_name(const char *name)
{
	for (const struct bind_driver *d = drivers; d->name != NULL; d++)
		if (strcmp(d->name, name) == 0)
			return d;
	return NULL;
}
