/*
 * `kbound` (1209:0004): two vendor interfaces, each a bulk loopback pair
 * (interface 0: 0x02 -> 0x81, interface 1: 0x04 -> 0x83).  Interface 1 is
 * bound to the kernel's "usbhid" at plug time: GETDRIVER names it, sysfs
 * shows DRIVER=usbhid and a driver link, and CLAIMINTERFACE fails with
 * EBUSY until USBDEVFS_DISCONNECT (libusb_detach_kernel_driver) unbinds it.
 * plugfs must leave that interface alone unless told detach=.
 */
#include "emu.h"

const struct emu_model emu_model_kbound = {
    .name = "kbound",
    .summary = "1209:0004 two loopback interfaces, interface 1 bound to kernel driver usbhid",
    .vendor_id = 0x1209,
    .product_id = 0x0004,
    .bcd_device = 0x0100,
    .manufacturer = "plugfs",
    .product = "Two Interfaces",
    .serial = "KB0001",
    .num_ifaces = 2,
    .ifaces =
	{
	    {
		.cls = 0xff,
		.subclass = 0xff,
		.protocol = 0xff,
		.num_eps = 2,
		.eps =
		    {
			{.address = 0x02, .type = 2, .max_packet = 512},
			{.address = 0x81, .type = 2, .max_packet = 512},
		    },
	    },
	    {
		.cls = 0xff,
		.subclass = 0xff,
		.protocol = 0xff,
		.num_eps = 2,
		.eps =
		    {
			{.address = 0x04, .type = 2, .max_packet = 512},
			{.address = 0x83, .type = 2, .max_packet = 512},
		    },
		.kernel_driver = "usbhid",
	    },
	},
    .ops = &emu_loopback_ops,
};
