/*
 * The root hub every bus has (devnum 1, sysfs name usbN), so the tree looks
 * like a real machine's: enumeration code must skip hubs, and the hub's
 * interface is bound to the kernel's "hub" driver like the real one.
 * Its node answers the usbfs ioctls, so opening it does not break either;
 * its interrupt endpoint never completes.
 */
#include "emu.h"

const struct emu_model emu_model_roothub = {
    .name = "roothub",
    .summary = "1d6b:0002 root hub",
    .vendor_id = 0x1d6b,
    .product_id = 0x0002,
    .bcd_device = 0x0601,
    .dev_class = 0x09,
    .dev_subclass = 0x00,
    .dev_protocol = 0x01, /* single TT */
    .manufacturer = "Linux 6.1.0 xhci-hcd",
    .product = "xHCI Host Controller",
    .serial = "0000:00:14.0",
    .num_ifaces = 1,
    .ifaces =
	{
	    {
		.cls = 0x09,
		.subclass = 0x00,
		.protocol = 0x00,
		.num_eps = 1,
		.eps =
		    {
			{.address = 0x81, .type = 3, .max_packet = 4, .interval = 12},
		    },
		.kernel_driver = "hub",
	    },
	},
};
