/*
 * The printer class's pure parts (common/printer_class.h): the port status
 * byte as a word, the GET_DEVICE_ID answer's length handling, and which
 * interfaces the printer driver binds.
 */
#include <stdbool.h>
#include <string.h>

#include "bind.h"
#include "printer_class.h"
#include "suites.h"

START_TEST(test_status_words)
{
	/* Selected, no error: the normal state of a ready printer. */
	ck_assert_str_eq(printer_state_name(printer_state_of(0x18)), "ok");
	ck_assert_str_eq(printer_state_name(printer_state_of(0x18 | 0x07 | 0x40 | 0x80)), "ok");
	ck_assert_str_eq(printer_state_name(printer_state_of(0x38)), "paper-out");
	/* Paper empty usually comes with the fault line: still paper out. */
	ck_assert_str_eq(printer_state_name(printer_state_of(0x30)), "paper-out");
	ck_assert_str_eq(printer_state_name(printer_state_of(0x10)), "error");
	ck_assert_str_eq(printer_state_name(printer_state_of(0x08)), "offline");
	/* Not selected wins over everything, as in Linux usblp. */
	ck_assert_str_eq(printer_state_name(printer_state_of(0x28)), "offline");
	ck_assert_str_eq(printer_state_name(printer_state_of(0x00)), "offline");
	ck_assert_str_eq(printer_state_name(printer_state_of(0x20)), "offline");
	/* Every byte gives one of the four words. */
	for (unsigned s = 0; s < 256; s++) {
		const char *w = printer_state_name(printer_state_of((uint8_t)s));
		ck_assert(strcmp(w, "ok") == 0 || strcmp(w, "paper-out") == 0 || strcmp(w, "offline") == 0 ||
			  strcmp(w, "error") == 0);
	}
	ck_assert_str_eq(printer_state_name((enum printer_state)42), "error");
}
END_TEST

/* Builds an answer: length field `field`, then `text` (n bytes). */
static size_t answer(uint8_t *buf, unsigned field, const char *text, size_t n)
{
	buf[0] = (uint8_t)(field >> 8);
	buf[1] = (uint8_t)field;
	memcpy(buf + 2, text, n);
	return n + 2;
}

static const char *id_text(const uint8_t *buf, size_t received, bool *bad)
{
	static char out[64];
	size_t n = printer_device_id_text(buf, received, out, sizeof(out) - 1, bad);
	out[n] = '\0';
	return out;
}

START_TEST(test_device_id_length)
{
	uint8_t buf[128];
	bool bad;
	size_t n;

	/* A good answer: the field counts itself. */
	n = answer(buf, 2 + 14, "MFG:X;MDL:Y-1;", 14);
	ck_assert_str_eq(id_text(buf, n, &bad), "MFG:X;MDL:Y-1;\n");
	ck_assert(!bad);
	/* Less in the field than arrived: the field wins, the rest is not ID. */
	n = answer(buf, 2 + 6, "MFG:X;garbage", 13);
	ck_assert_str_eq(id_text(buf, n, &bad), "MFG:X;\n");
	ck_assert(!bad);
	/* More in the field than arrived (or the classic little-endian mistake): what arrived. */
	n = answer(buf, 0x1000, "MFG:X;MDL:Y;", 12);
	ck_assert_str_eq(id_text(buf, n, &bad), "MFG:X;MDL:Y;\n");
	ck_assert(bad);
	n = answer(buf, (2 + 12) << 8, "MFG:X;MDL:Y;", 12);
	ck_assert_str_eq(id_text(buf, n, &bad), "MFG:X;MDL:Y;\n");
	ck_assert(bad);
	/* A field below 2 cannot count itself: what arrived. */
	n = answer(buf, 0, "MFG:Z;", 6);
	ck_assert_str_eq(id_text(buf, n, &bad), "MFG:Z;\n");
	ck_assert(bad);
	n = answer(buf, 1, "MFG:Z;", 6);
	ck_assert_str_eq(id_text(buf, n, &bad), "MFG:Z;\n");
	ck_assert(bad);
	/* Empty IDs: an empty file, no newline. */
	n = answer(buf, 2, "", 0);
	ck_assert_str_eq(id_text(buf, n, &bad), "");
	ck_assert(!bad);
	ck_assert_str_eq(id_text(buf, 0, &bad), "");
	ck_assert(!bad);
	/* One byte cannot even hold the field. */
	ck_assert_str_eq(id_text(buf, 1, &bad), "");
	ck_assert(bad);
	/* Trailing NUL padding is dropped; a NUL inside (DYMO Twin Turbo) is kept. */
	n = answer(buf, 2 + 8, "MFG:X;\0\0", 8);
	ck_assert_str_eq(id_text(buf, n, &bad), "MFG:X;\n");
	n = answer(buf, 2 + 7, "A;\0ERN:", 7);
	char out[16];
	ck_assert_uint_eq(printer_device_id_text(buf, n, out, sizeof(out), &bad), 8);
	ck_assert_mem_eq(out, "A;\0ERN:\n", 8);
}
END_TEST

START_TEST(test_device_id_cap)
{
	uint8_t buf[2 + 40];
	char out[11];
	bool bad;
	size_t n = answer(buf, 2 + 40, "0123456789012345678901234567890123456789", 40);

	/* Cut to leave room for the newline; never past cap. */
	memset(out, 'x', sizeof(out));
	ck_assert_uint_eq(printer_device_id_text(buf, n, out, 10, &bad), 10);
	ck_assert_mem_eq(out, "012345678\n", 10);
	ck_assert_int_eq(out[10], 'x');
	ck_assert_uint_eq(printer_device_id_text(buf, n, out, 0, &bad), 0);
	ck_assert_uint_eq(printer_device_id_text(buf, n, out, 1, &bad), 1);
	ck_assert_int_eq(out[0], '\n');
}
END_TEST

/* 7/1/1-3 are printers; 7/1/4 (IPP over USB) and other subclasses are not. */
START_TEST(test_printer_binding)
{
	struct usbdesc_device dev;
	struct usbdesc_iface iface;

	memset(&dev, 0, sizeof(dev));
	memset(&iface, 0, sizeof(iface));
	iface.cls = 7;
	iface.subclass = 1;
	for (uint8_t p = 1; p <= 3; p++) {
		iface.protocol = p;
		ck_assert_str_eq(bind_lookup(&dev, &iface)->name, "printer");
	}
	ck_assert_str_eq(bind_lookup(&dev, &iface)->kind, "printer");
	iface.protocol = 4;
	ck_assert_str_ne(bind_lookup(&dev, &iface)->name, "printer");
	iface.protocol = 0;
	ck_assert_str_ne(bind_lookup(&dev, &iface)->name, "printer");
	iface.protocol = 2;
	iface.subclass = 2;
	ck_assert_str_ne(bind_lookup(&dev, &iface)->name, "printer");
	iface.subclass = 1;
	iface.cls = 8;
	ck_assert_str_ne(bind_lookup(&dev, &iface)->name, "printer");
}
END_TEST

Suite *printer_suite(void)
{
	Suite *s = suite_create("printer");
	TCase *tc = tcase_create("printer");

	tcase_add_test(tc, test_status_words);
	tcase_add_test(tc, test_device_id_length);
	tcase_add_test(tc, test_device_id_cap);
	tcase_add_test(tc, test_printer_binding);
	suite_add_tcase(s, tc);
	return s;
}
