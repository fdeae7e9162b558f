/*
 * `hang` (1209:0003): the loopback's interface layout, but nothing on 0x02,
 * 0x81 or 0x83 ever completes, and neither does a vendor control request.
 * Only DISCARDURB ends them; the URB is then reaped with status -ENOENT,
 * as the kernel does.  This is the device behind every timeout test.
 * Standard control requests still work, so the device enumerates.
 */
#include "emu.h"

static int hang_control(struct emu_dev *dev, struct emu_urb *urb, const struct emu_setup *setup,
			uint8_t *data)
{
	(void)dev;
	(void)urb;
	(void)setup;
	(void)data;
	return EMU_PENDING;
}

/* No submit hook: every bulk and interrupt URB simply stays pending. */
static const struct emu_model_ops hang_ops = {
    .control = hang_control,
};

const struct emu_model emu_model_hang = {
    .name = "hang",
    .summary = "1209:0003 bulk/interrupt URBs and vendor requests never complete until discarded",
    .vendor_id = 0x1209,
    .product_id = 0x0003,
    .bcd_device = 0x0100,
    .manufacturer = "plugfs",
    .product = "Hang",
    .serial = "HG0001",
    .num_ifaces = 1,
    .ifaces = {EMU_VENDOR_IFACE},
    .ops = &hang_ops,
};
