/*
 * `twin` (1209:0005): the loopback device without a serial number, as many
 * cheap boards are.  Two of them are told apart only by the port they sit
 * in, which is what the hotplug tests check.
 */
#include "emu.h"

const struct emu_model emu_model_twin = {
    .name = "twin",
    .summary = "1209:0005 the loopback without a serial number: two are told apart by port",
    .vendor_id = 0x1209,
    .product_id = 0x0005,
    .bcd_device = 0x0100,
    .manufacturer = "plugfs",
    .product = "Twin",
    .num_ifaces = 1,
    .ifaces = {EMU_VENDOR_IFACE},
    .ops = &emu_loopback_ops,
};
