/*
 * `null` (1209:00b0): a vendor-class device with no endpoints, the device
 * behind the isolation benchmark (tests/bench/io.c).  Its interface is
 * served by the test-only null driver (tests/bench/null_driver.c) of the
 * test-only driver host build/plugfs-bench-driver, which does no USB I/O
 * at all: what a read or write of its files costs is the cost of FUSE plus
 * the driver process.  The normal driver host gives it the generic driver
 * (ep0 only).
 */
#include "emu.h"

const struct emu_model emu_model_null = {
    .name = "null",
    .summary = "1209:00b0 no endpoints: the null driver's device (benchmarks only)",
    .vendor_id = 0x1209,
    .product_id = 0x00b0,
    .bcd_device = 0x0100,
    .manufacturer = "plugfs",
    .product = "Null",
    .serial = "NU0001",
    .num_ifaces = 1,
    .ifaces = {{.cls = 0xff, .subclass = 0xff, .protocol = 0xff}},
};
