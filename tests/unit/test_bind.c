/*
 * The driver table (common/bind.c): which driver each interface of each
 * real device binds to.  When a class driver gets its row in bind.c, change
 * that device's column in expected_drivers[] below: e.g. the Gprinter's
 * interface is "printer", the Cruzer's "disk".  (The Arduino's data
 * interface still looks up "usb": the daemon gives it to the serial
 * function as a union slave instead, see test_serial_line.c.)
 */
#include <stddef.h>
#include <string.h>

#include "bind.h"
#include "devices.h"
#include "suites.h"
#include "usbdesc.h"

/* Per test_devices[] entry, the driver of each interface in descriptor order. */
static const char *const expected_drivers[][4] = {
    {"serial"},		      /* ftdi-ft232r: vendor ff/ff/ff, 0403:6001 */
    {"serial", "usb"},	      /* arduino-uno-r3: CDC ACM + CDC data (a union slave: see test_serial_line.c) */
    {"disk"},		      /* sandisk-cruzer-titanium: mass storage 8/6/50 */
    {"printer"},	      /* gprinter-zh380: printer 7/1/2 */
    {"serial", "usb", "usb"}, /* rpi-pico-cdc: CDC ACM + CDC data + vendor reset */
    {"hid", "hid"},	      /* temper-0c45-7401: two HID interfaces */
};

START_TEST(test_bind_real_devices)
{
	const struct test_device *t = &test_devices[_i];
	struct usbdesc_device dev;
	unsigned expected = 0;

	ck_assert_uint_eq(test_devices_count, sizeof(expected_drivers) / sizeof(expected_drivers[0]));
	ck_assert_int_eq(usbdesc_parse(t->desc, t->len, &dev, NULL), 0);
	while (expected < 4 && expected_drivers[_i][expected] != NULL)
		expected++;
	ck_assert_uint_eq(dev.num_ifaces, expected);
	for (unsigned i = 0; i < dev.num_ifaces; i++) {
		const struct bind_driver *d = bind_lookup(&dev, &dev.ifaces[i]);

		ck_assert_ptr_nonnull(d);
		ck_assert_msg(strcmp(d->name, expected_drivers[_i][i]) == 0,
			      "%s interface %u: driver %s, expected %s", t->name, dev.ifaces[i].number,
			      d->name, expected_drivers[_i][i]);
		/* The same row by name: the daemon passes the name to the driver host. */
		ck_assert_ptr_eq(bind_by_name(d->name), d);
		ck_assert_ptr_nonnull(d->kind);
		ck_assert_ptr_nonnull(d->ids);
	}
}
END_TEST

/* Interfaces nobody describes (odd classes, vendor ids) still get the generic driver, never NULL. */
START_TEST(test_bind_fallback)
{
	static const uint8_t classes[] = {0x00, 0x01, 0x05, 0x0b, 0x0d, 0x10, 0xdc, 0xe0, 0xef, 0xfe, 0xff};
	struct usbdesc_device dev;
	struct usbdesc_iface iface;

	memset(&dev, 0, sizeof(dev));
	memset(&iface, 0, sizeof(iface));
	dev.vendor_id = 0xffff;
	dev.product_id = 0xffff;
	for (size_t i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		iface.cls = classes[i];
		iface.subclass = (uint8_t)(0xff - i);
		iface.protocol = (uint8_t)i;
		const struct bind_driver *d = bind_lookup(&dev, &iface);
		ck_assert_ptr_nonnull(d);
		ck_assert_str_eq(d->name, "usb");
	}
}
END_TEST

START_TEST(test_bind_by_name)
{
	const struct bind_driver *usb = bind_by_name("usb");

	ck_assert_ptr_nonnull(usb);
	ck_assert_str_eq(usb->name, "usb");
	ck_assert_str_eq(usb->kind, "usb");
	ck_assert_ptr_nonnull(usb->ids);
	/* The generic driver's id table matches anything and ends with a zero row. */
	ck_assert_uint_ne(usb->ids[0].match & BIND_MATCH_ANY, 0);
	ck_assert_uint_eq(usb->ids[1].match, 0);

	ck_assert_ptr_null(bind_by_name("nope"));
	ck_assert_ptr_null(bind_by_name(""));
	ck_assert_ptr_null(bind_by_name("usb0"));
	ck_assert_ptr_null(bind_by_name("us"));
}
END_TEST

Suite *bind_suite(void)
{
	Suite *s = suite_create("bind");
	TCase *tc = tcase_create("bind");

	tcase_add_loop_test(tc, test_bind_real_devices, 0, (int)test_devices_count);
	tcase_add_test(tc, test_bind_fallback);
	tcase_add_test(tc, test_bind_by_name);
	suite_add_tcase(s, tc);
	return s;
}
