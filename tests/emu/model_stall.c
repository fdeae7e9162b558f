/*
 * `stall` (1209:0002): the loopback's interface layout, but bulk 0x02 and
 * 0x81 stall every transfer (URB status -EPIPE).  CLEAR_HALT clears the
 * halt, and the next transfer stalls again: an endpoint that always
 * stalls, which is what a driver's clear-halt-and-retry path must survive.
 * Interrupt IN 0x83 never completes.  Vendor control requests stall;
 * standard ones (GET_DESCRIPTOR, GET_STATUS...) work, so the device
 * enumerates.
 */
#include "emu.h"

#include <errno.h>

static void stall_submit(struct emu_dev *dev, struct emu_urb *urb)
{
	(void)dev;
	if (urb->endpoint == 0x02 || urb->endpoint == 0x81)
		emu_urb_complete(urb, -EPIPE, 0);
}

static int stall_control(struct emu_dev *dev, struct emu_urb *urb, const struct emu_setup *setup,
			 uint8_t *data)
{
	(void)dev;
	(void)urb;
	(void)setup;
	(void)data;
	return -EPIPE;
}

static const struct emu_model_ops stall_ops = {
    .submit = stall_submit,
    .control = stall_control,
};

const struct emu_model emu_model_stall = {
    .name = "stall",
    .summary = "1209:0002 bulk 0x02/0x81 and vendor requests always stall (-EPIPE)",
    .vendor_id = 0x1209,
    .product_id = 0x0002,
    .bcd_device = 0x0100,
    .manufacturer = "plugfs",
    .product = "Stall",
    .serial = "ST0001",
    .num_ifaces = 1,
    .ifaces = {EMU_VENDOR_IFACE},
    .ops = &stall_ops,
};
