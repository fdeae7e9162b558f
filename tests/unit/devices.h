/*
 * Raw descriptors of real products, shared by the usbdesc and bind suites.
 * Bytes come from the `descriptors-hex:` lines of the files in ../shared/devices/
 * (the sysfs `descriptors` order: device descriptor, then the first
 * configuration); the expected values the tests assert are read off the
 * lsusb/pyusb dumps in the same files.
 */
#ifndef PLUGFS_TEST_DEVICES_H
#define PLUGFS_TEST_DEVICES_H

#include <stddef.h>
#include <stdint.h>

struct test_device {
	const char *name;
	const uint8_t *desc;
	size_t len;
};

extern const uint8_t desc_ftdi_ft232r[50];
extern const uint8_t desc_arduino_uno_r3[80];
extern const uint8_t desc_sandisk_cruzer_titanium[50];
extern const uint8_t desc_gprinter_zh380[50];
extern const uint8_t desc_rpi_pico_cdc[102];
extern const uint8_t desc_temper_7401[77];

/* All of the above, in that order. */
extern const struct test_device test_devices[];
extern const size_t test_devices_count;

#endif
