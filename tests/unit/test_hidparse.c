/*
 * The HID report descriptor parser (common/hidparse.c) against real
 * descriptors -- the PCsensor TEMPer's two (../shared/devices/
 * temper-0c45-7401.txt), the HID 1.11 boot keyboard's (Appendix B.1) and
 * the plugfs-emu thermometer's -- and against broken ones.  Every parse runs
 * on an exactly-sized heap copy so ASan sees any read past the end.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hidparse.h"
#include "suites.h"

static struct hid_desc_info info;

/* TEMPer interface 0: boot keyboard layout, but numbered (Report ID 1). */
static const uint8_t temper_if0[65] = {
    0x05, 0x01, 0x09, 0x06, 0xa1, 0x01, 0x85, 0x01, 0x05, 0x07, 0x19, 0xe0, 0x29, 0xe7, 0x15, 0x00, 0x25,
    0x01, 0x75, 0x01, 0x95, 0x08, 0x81, 0x02, 0x95, 0x01, 0x75, 0x08, 0x81, 0x01, 0x95, 0x03, 0x75, 0x01,
    0x05, 0x08, 0x19, 0x01, 0x29, 0x03, 0x91, 0x02, 0x95, 0x05, 0x75, 0x01, 0x91, 0x01, 0x95, 0x05, 0x75,
    0x08, 0x15, 0x00, 0x25, 0xff, 0x05, 0x07, 0x19, 0x00, 0x29, 0xff, 0x81, 0x00, 0xc0,
};

/* TEMPer interface 1: vendor page, 8-byte input, output and feature reports, unnumbered. */
static const uint8_t temper_if1[41] = {
    0x06, 0x00, 0xff, 0x09, 0x01, 0xa1, 0x01, 0x09, 0x01, 0x15, 0x00, 0x26, 0xff, 0x00,
    0x75, 0x08, 0x95, 0x08, 0x81, 0x02, 0x09, 0x01, 0x95, 0x08, 0x91, 0x02, 0x05, 0x0c,
    0x09, 0x00, 0x15, 0x80, 0x25, 0x7f, 0x75, 0x08, 0x95, 0x08, 0xb1, 0x02, 0xc0,
};

/* HID 1.11 Appendix B.1: the boot protocol keyboard. */
static const uint8_t boot_keyboard[63] = {
    0x05, 0x01, 0x09, 0x06, 0xa1, 0x01, 0x05, 0x07, 0x19, 0xe0, 0x29, 0xe7, 0x15, 0x00, 0x25, 0x01,
    0x75, 0x01, 0x95, 0x08, 0x81, 0x02, 0x95, 0x01, 0x75, 0x08, 0x81, 0x01, 0x95, 0x05, 0x75, 0x01,
    0x05, 0x08, 0x19, 0x01, 0x29, 0x05, 0x91, 0x02, 0x95, 0x01, 0x75, 0x03, 0x91, 0x01, 0x95, 0x06,
    0x75, 0x08, 0x15, 0x00, 0x25, 0x65, 0x05, 0x07, 0x19, 0x00, 0x29, 0x65, 0x81, 0x00, 0xc0,
};

static int parse(const uint8_t *desc, size_t len, const char **why)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, desc, len);
	*why = NULL;
	int r = hidparse(copy, len, &info, why);
	free(copy);
	return r;
}

static void parse_ok(const uint8_t *desc, size_t len)
{
	const char *why;
	int r = parse(desc, len, &why);

	ck_assert_msg(r == 0, "parse failed: %s", why != NULL ? why : "(no reason)");
}

static void assert_fails(const uint8_t *desc, size_t len, const char *reason)
{
	const char *why;

	ck_assert_int_eq(parse(desc, len, &why), -EINVAL);
	ck_assert_ptr_nonnull(why);
	ck_assert_msg(strstr(why, reason) != NULL, "reason '%s', expected '%s'", why, reason);
}

/* Asserts the report exists with `bytes` bytes of data. */
static void assert_report(uint8_t type, uint8_t id, size_t bytes)
{
	const struct hid_report *r = hidparse_find(&info, type, id);

	ck_assert_msg(r != NULL, "no report type %u id %u", type, id);
	ck_assert_uint_eq(hid_report_bytes(r), bytes);
}

START_TEST(temper_keyboard_interface)
{
	parse_ok(temper_if0, sizeof(temper_if0));
	ck_assert(info.numbered);
	ck_assert_uint_eq(info.nreports, 2);
	/* 8 modifier bits, a padding byte, five 8-bit keys. */
	assert_report(HID_REPORT_INPUT, 1, 7);
	/* 3 LED bits and 5 padding bits. */
	assert_report(HID_REPORT_OUTPUT, 1, 1);
	ck_assert_ptr_null(hidparse_find(&info, HID_REPORT_FEATURE, 1));
	ck_assert_ptr_null(hidparse_find(&info, HID_REPORT_INPUT, 0));
	/* On the wire the ID comes first. */
	ck_assert_uint_eq(hidparse_max_len(&info, HID_REPORT_INPUT), 8);
	ck_assert_uint_eq(hidparse_max_len(&info, HID_REPORT_OUTPUT), 2);
	ck_assert_uint_eq(hidparse_max_len(&info, HID_REPORT_FEATURE), 0);
}
END_TEST

START_TEST(temper_vendor_interface)
{
	parse_ok(temper_if1, sizeof(temper_if1));
	ck_assert(!info.numbered);
	ck_assert_uint_eq(info.nreports, 3);
	ck_assert_uint_eq(info.reports[0].type, HID_REPORT_INPUT);
	ck_assert_uint_eq(info.reports[1].type, HID_REPORT_OUTPUT);
	ck_assert_uint_eq(info.reports[2].type, HID_REPORT_FEATURE);
	assert_report(HID_REPORT_INPUT, 0, 8);
	assert_report(HID_REPORT_OUTPUT, 0, 8);
	assert_report(HID_REPORT_FEATURE, 0, 8);
	ck_assert_uint_eq(hidparse_max_len(&info, HID_REPORT_FEATURE), 8);
}
END_TEST

START_TEST(boot_keyboard_descriptor)
{
	parse_ok(boot_keyboard, sizeof(boot_keyboard));
	ck_assert(!info.numbered);
	ck_assert_uint_eq(info.nreports, 2);
	assert_report(HID_REPORT_INPUT, 0, 8);
	assert_report(HID_REPORT_OUTPUT, 0, 1);
}
END_TEST

/* Several IDs per type, bits that do not fill a byte, and a field spread over two items. */
START_TEST(numbered_reports_and_rounding)
{
	static const uint8_t d[] = {
	    0x06, 0x00, 0xff, 0x09, 0x01, 0xa1, 0x01,	    /* vendor page, application collection */
	    0x85, 0x01, 0x75, 0x08, 0x95, 0x08, 0x81, 0x02, /* ID 1: 8 input bytes */
	    0x85, 0x02, 0x75, 0x10, 0x95, 0x01, 0xb1, 0x02, /* ID 2: a 16-bit feature */
	    0x85, 0x03, 0x75, 0x01, 0x95, 0x03, 0xb1, 0x02, /* ID 3: 3 feature bits... */
	    0x75, 0x04, 0x95, 0x01, 0xb1, 0x03,		    /* ...and 4 more: 7 bits, 1 byte */
	    0x85, 0x01, 0x75, 0x08, 0x95, 0x02, 0x81, 0x02, /* ID 1 again: 2 more input bytes */
	    0x85, 0x04, 0x95, 0x00, 0x91, 0x02,		    /* ID 4: an empty output report */
	    0xc0,
	};

	parse_ok(d, sizeof(d));
	ck_assert(info.numbered);
	ck_assert_uint_eq(info.nreports, 4);
	assert_report(HID_REPORT_INPUT, 1, 10);
	assert_report(HID_REPORT_FEATURE, 2, 2);
	assert_report(HID_REPORT_FEATURE, 3, 1);
	assert_report(HID_REPORT_OUTPUT, 4, 0);
	ck_assert_uint_eq(hidparse_max_len(&info, HID_REPORT_FEATURE), 3);
	ck_assert_uint_eq(hidparse_max_len(&info, HID_REPORT_INPUT), 11);
}
END_TEST

/* Push saves Report ID, Size and Count; Pop brings them back. */
START_TEST(push_and_pop)
{
	static const uint8_t d[] = {
	    0xa1, 0x01, 0x85, 0x05, 0x75, 0x08, 0x95, 0x04, /* ID 5, 4 bytes */
	    0xa4,					    /* push */
	    0x85, 0x06, 0x75, 0x10, 0x95, 0x03, 0xb1, 0x02, /* ID 6: 3 x 16 bits */
	    0xa4, 0x85, 0x07, 0x95, 0x01, 0x81, 0x02,	    /* push again, ID 7: 1 x 16 */
	    0xb4,					    /* pop: ID 6, 16 x 3 */
	    0x81, 0x02,					    /* input ID 6: 6 bytes */
	    0xb4,					    /* pop: ID 5, 8 x 4 */
	    0x81, 0x02,					    /* input ID 5: 4 bytes */
	    0xc0,
	};

	parse_ok(d, sizeof(d));
	assert_report(HID_REPORT_FEATURE, 6, 6);
	assert_report(HID_REPORT_INPUT, 7, 2);
	assert_report(HID_REPORT_INPUT, 6, 6);
	assert_report(HID_REPORT_INPUT, 5, 4);
	ck_assert_uint_eq(info.nreports, 4);
}
END_TEST

/* Long items are skipped whole; 4-byte short items and reserved items are walked over. */
START_TEST(long_and_wide_items)
{
	static const uint8_t d[] = {
	    0x07, 0x00, 0x00, 0x00, 0xff,	      /* Usage Page, 4 data bytes */
	    0xfe, 0x03, 0x42, 0xb1, 0x02, 0xc0,	      /* long item whose data looks like items */
	    0xa1, 0x01, 0x77, 0x08, 0x00, 0x00, 0x00, /* Report Size 8 in 4 bytes */
	    0x97, 0x02, 0x00, 0x00, 0x00,	      /* Report Count 2 in 4 bytes */
	    0xfe, 0x00, 0x10,			      /* empty long item */
	    0x0c,				      /* reserved type item, no data */
	    0x81, 0x02, 0xc0,
	};

	parse_ok(d, sizeof(d));
	ck_assert(!info.numbered);
	ck_assert_uint_eq(info.nreports, 1);
	assert_report(HID_REPORT_INPUT, 0, 2);
}
END_TEST

START_TEST(broken_descriptors_fail)
{
	static const uint8_t truncated_short[] = {0x05, 0x01, 0x26, 0xff};
	static const uint8_t truncated_long[] = {0xfe, 0x05, 0x10, 0x01, 0x02};
	static const uint8_t long_no_header[] = {0x05, 0x01, 0xfe, 0x01};
	static const uint8_t pop_without_push[] = {0xa4, 0xb4, 0xb4};
	static const uint8_t push_overflow[] = {0xa4, 0xa4, 0xa4, 0xa4, 0xa4};
	static const uint8_t huge_size[] = {0x76, 0x01, 0x01, 0x95, 0x01, 0x81, 0x02};
	static const uint8_t huge_count[] = {0x75, 0x01, 0x96, 0x01, 0x40, 0x81, 0x02};
	static const uint8_t too_long[] = {0x75, 0x80, 0x96, 0x00, 0x01, 0x81, 0x02, 0x81, 0x02};
	static const uint8_t id_zero[] = {0x85, 0x00, 0x75, 0x08, 0x95, 0x01, 0x81, 0x02};
	static const uint8_t id_empty[] = {0x84, 0x75, 0x08};
	static const uint8_t unnumbered_first[] = {0x75, 0x08, 0x95, 0x01, 0x81,
						   0x02, 0x85, 0x01, 0x81, 0x02};
	static const uint8_t end_without_start[] = {0xa1, 0x01, 0xc0, 0xc0};
	static const uint8_t unbalanced[] = {0xa1, 0x01, 0xa1, 0x00, 0xc0};
	static const uint8_t unknown_global[] = {0xc4, 0x00};

	assert_fails(truncated_short, sizeof(truncated_short), "truncated short");
	assert_fails(truncated_long, sizeof(truncated_long), "truncated long");
	assert_fails(long_no_header, sizeof(long_no_header), "truncated long");
	assert_fails(pop_without_push, sizeof(pop_without_push), "Pop without Push");
	assert_fails(push_overflow, sizeof(push_overflow), "Push beyond");
	assert_fails(huge_size, sizeof(huge_size), "Report Size");
	assert_fails(huge_count, sizeof(huge_count), "Report Count");
	assert_fails(too_long, sizeof(too_long), "longer than 4096");
	assert_fails(id_zero, sizeof(id_zero), "Report ID");
	assert_fails(id_empty, sizeof(id_empty), "Report ID");
	assert_fails(unnumbered_first, sizeof(unnumbered_first), "without Report ID");
	assert_fails(end_without_start, sizeof(end_without_start), "End Collection");
	assert_fails(unbalanced, sizeof(unbalanced), "unbalanced");
	assert_fails(unknown_global, sizeof(unknown_global), "global");
	assert_fails(boot_keyboard, 0, "empty");
	/* Every proper prefix of a real descriptor either parses or fails cleanly. */
	for (size_t n = 1; n < sizeof(temper_if0); n++) {
		const char *why;
		int r = parse(temper_if0, n, &why);
		ck_assert(r == 0 || (r == -EINVAL && why != NULL));
	}
}
END_TEST

START_TEST(deep_collections)
{
	uint8_t d[3 * (HIDPARSE_MAX_COLLECTIONS + 1)];
	size_t n = 0;

	for (int i = 0; i < HIDPARSE_MAX_COLLECTIONS; i++) {
		d[n++] = 0xa1;
		d[n++] = 0x00;
	}
	for (int i = 0; i < HIDPARSE_MAX_COLLECTIONS; i++)
		d[n++] = 0xc0;
	parse_ok(d, n);
	n = 0;
	for (int i = 0; i <= HIDPARSE_MAX_COLLECTIONS; i++) {
		d[n++] = 0xa1;
		d[n++] = 0x00;
	}
	assert_fails(d, n, "too deep");
}
END_TEST

/* Random bytes: never a crash or a read past the end (ASan), always 0 or -EINVAL with a reason. */
START_TEST(random_bytes)
{
	uint8_t d[96];
	unsigned seed = 12345;

	for (int round = 0; round < 20000; round++) {
		size_t len = 1 + (size_t)(seed % sizeof(d));
		for (size_t i = 0; i < len; i++) {
			seed = seed * 1103515245u + 12345u;
			d[i] = (uint8_t)(seed >> 16);
		}
		const char *why;
		int r = parse(d, len, &why);
		ck_assert(r == 0 || (r == -EINVAL && why != NULL));
		if (r == 0)
			for (unsigned i = 0; i < info.nreports; i++)
				ck_assert_uint_le(hid_report_bytes(&info.reports[i]),
						  HIDPARSE_MAX_REPORT_BYTES);
	}
}
END_TEST

Suite *hidparse_suite(void)
{
	Suite *s = suite_create("hidparse");
	TCase *tc = tcase_create("hidparse");

	tcase_add_test(tc, temper_keyboard_interface);
	tcase_add_test(tc, temper_vendor_interface);
	tcase_add_test(tc, boot_keyboard_descriptor);
	tcase_add_test(tc, numbered_reports_and_rounding);
	tcase_add_test(tc, push_and_pop);
	tcase_add_test(tc, long_and_wide_items);
	tcase_add_test(tc, broken_descriptors_fail);
	tcase_add_test(tc, deep_collections);
	tcase_add_test(tc, random_bytes);
	suite_add_tcase(s, tc);
	return s;
}
