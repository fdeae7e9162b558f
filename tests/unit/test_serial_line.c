/*
 * The serial driver's pure parts (common/serial_line.c) and the CDC Union
 * parsing and binding it relies on (common/usbdesc.c, common/bind.c).
 *
 * FTDI divisors: the expected values follow FTDI's AN232B-05 ("Configuring
 * FT232R, FT2232 and FT232B Baud Rates"): divisor = 3000000 / rate, whole
 * number in bits 0-13, the eighths as the 3-bit code of its table in bits
 * 14-16, 3 MBd encoded 0 and 2 MBd encoded 1.  E.g. 9600 Bd: 312.5 =
 * 312 (0x138) + code 1 (.5) << 14 = 0x4138; 115200 Bd: 26.04 -> 26, which
 * the note lists as an actual 115384 Bd.  The H chips (AN_120) divide
 * 12 MHz instead and flag it with bit 17.
 */
#include <errno.h>
#include <string.h>

#include "bind.h"
#include "devices.h"
#include "serial_line.h"
#include "suites.h"
#include "usbdesc.h"

static struct serial_line parse_ok(const char *text)
{
	struct serial_line l;

	ck_assert_msg(serial_line_parse(text, strlen(text), &l) == 0, "'%s' rejected", text);
	return l;
}

START_TEST(test_parse_good)
{
	struct serial_line l = parse_ok("115200 8N1");
	ck_assert_uint_eq(l.rate, 115200);
	ck_assert_uint_eq(l.data_bits, 8);
	ck_assert_int_eq(l.parity, 'N');
	ck_assert_uint_eq(l.half_stop, 2);

	l = parse_ok("300 7E2\n");
	ck_assert_uint_eq(l.rate, 300);
	ck_assert_uint_eq(l.data_bits, 7);
	ck_assert_int_eq(l.parity, 'E');
	ck_assert_uint_eq(l.half_stop, 4);

	l = parse_ok("9600 5S1.5");
	ck_assert_uint_eq(l.data_bits, 5);
	ck_assert_int_eq(l.parity, 'S');
	ck_assert_uint_eq(l.half_stop, 3);

	l = parse_ok("4294967295 6O1");
	ck_assert_uint_eq(l.rate, 4294967295u);
	ck_assert_int_eq(parse_ok("1 8M1").parity, 'M');
}
END_TEST

START_TEST(test_parse_bad)
{
	static const char *const bad[] = {
	    "",
	    "\n",
	    "115200",
	    "115200 8N",
	    "115200 8N3",
	    "115200 9N1",
	    "115200 4N1",
	    "115200 8X1",
	    "115200 8n1",
	    "115200  8N1",
	    " 115200 8N1",
	    "115200 8N1 ",
	    "115200 8N1\n\n",
	    "0 8N1",
	    "0115200 8N1",
	    "+9600 8N1",
	    "-9600 8N1",
	    "4294967296 8N1",
	    "99999999999 8N1",
	    "9600 8N1.5",
	    "9600 5N1.0",
	    "9600 5N1.55",
	    "9600 8N2.5",
	    "9600\t8N1",
	    "9600 8N1x",
	    "0x2580 8N1",
	    "9600 8N0",
	    "96OO 8N1",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct serial_line l = {.rate = 7};
		ck_assert_msg(serial_line_parse(bad[i], strlen(bad[i]), &l) == -EINVAL, "'%s' accepted",
			      bad[i]);
		ck_assert_uint_eq(l.rate, 7); /* untouched */
	}
	/* The length counts, not a NUL: an embedded NUL is bad text. */
	struct serial_line l;
	ck_assert_int_eq(serial_line_parse("9600 8N1\0", 9, &l), -EINVAL);
	ck_assert_int_eq(serial_line_parse("9600 8\0"
					   "1",
					   8, &l),
			 -EINVAL);
}
END_TEST

START_TEST(test_format_roundtrip)
{
	static const char *const texts[] = {"115200 8N1", "300 7E2", "9600 5S1.5", "4294967295 6O1", "1 8M1"};
	char buf[SERIAL_LINE_TEXT_MAX + 1];

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		struct serial_line l = parse_ok(texts[i]);
		size_t n = serial_line_format(&l, buf, sizeof(buf));
		ck_assert_uint_eq(n, strlen(texts[i]));
		ck_assert_str_eq(buf, texts[i]);
	}
}
END_TEST

START_TEST(test_cdc_line_coding)
{
	/* CDC PSTN 1.2 table 17: 115200 = 0x0001c200, 1 stop = 0, no parity = 0, 8 bits. */
	static const uint8_t want[7] = {0x00, 0xc2, 0x01, 0x00, 0, 0, 8};
	uint8_t got[7];
	struct serial_line l = parse_ok("115200 8N1"), back;

	serial_line_to_cdc(&l, got);
	ck_assert_mem_eq(got, want, 7);
	ck_assert_int_eq(serial_line_from_cdc(got, &back), 0);
	ck_assert_mem_eq(&back, &l, sizeof(l));

	l = parse_ok("1200 5E1.5");
	serial_line_to_cdc(&l, got);
	ck_assert_uint_eq(got[4], 1);
	ck_assert_uint_eq(got[5], 2);
	ck_assert_uint_eq(got[6], 5);
	l = parse_ok("1200 7O2");
	serial_line_to_cdc(&l, got);
	ck_assert_uint_eq(got[4], 2);
	ck_assert_uint_eq(got[5], 1);

	/* What a device may answer that plugfs cannot show. */
	static const uint8_t bad[][7] = {
	    {0, 0, 0, 0, 0, 0, 8},	  /* rate 0: the Arduino 16U2 firmware before any SET */
	    {0x80, 0x25, 0, 0, 3, 0, 8},  /* bCharFormat 3 */
	    {0x80, 0x25, 0, 0, 0, 5, 8},  /* bParityType 5 */
	    {0x80, 0x25, 0, 0, 0, 0, 16}, /* 16 data bits */
	    {0x80, 0x25, 0, 0, 0, 0, 4},  /* 4 data bits */
	    {0x80, 0x25, 0, 0, 1, 0, 8},  /* 1.5 stop bits with 8 data bits */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_int_eq(serial_line_from_cdc(bad[i], &back), -EINVAL);
}
END_TEST

struct divisor_case {
	uint32_t rate;
	bool hispeed;
	uint32_t divisor, actual;
};

START_TEST(test_ftdi_divisor)
{
	static const struct divisor_case cases[] = {
	    /* AN232B-05, 3 MHz reference. */
	    {300, false, 0x2710, 300},	       /* 10000 */
	    {9600, false, 0x4138, 9600},       /* 312.5 */
	    {19200, false, 0x809c, 19200},     /* 156.25 */
	    {38400, false, 0xc04e, 38400},     /* 78.125 */
	    {57600, false, 0xc034, 57553},     /* 52.083 -> 52.125 */
	    {115200, false, 0x001a, 115384},   /* 26.04 -> 26 */
	    {230400, false, 0x000d, 230769},   /* 13.02 -> 13 */
	    {921600, false, 0x8003, 923076},   /* 3.255 -> 3.25 */
	    {1000000, false, 0x0003, 1000000}, /* 3 */
	    {2000000, false, 0x0001, 2000000}, /* 1.5: special code 1 */
	    {3000000, false, 0x0000, 3000000}, /* 1: special code 0 */
	    {184, false, 0x13fb0, 183},	       /* 16304.35 -> 16304.375 (code 4): near the 14-bit limit */
	    /* AN_120, 12 MHz reference flagged by bit 17 (FT232H, FT2232H, FT4232H). */
	    {115200, true, 0x20000 | 0xc068, 115246}, /* 104.17 -> 104.125 */
	    {12000000, true, 0x20000, 12000000},      /* 1 */
	    {8000000, true, 0x20001, 8000000},	      /* 1.5 */
	    {300, true, 0x2710, 300},		      /* below 1200: the 3 MHz reference */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct divisor_case *c = &cases[i];
		uint32_t div = 0xdeadbeef, actual = 0;
		ck_assert_msg(ftdi_baud_divisor(c->rate, c->hispeed, &div, &actual) == 0, "%u refused",
			      c->rate);
		ck_assert_msg(div == c->divisor, "%u: divisor 0x%x, want 0x%x", c->rate, div, c->divisor);
		ck_assert_msg(actual == c->actual, "%u: actual %u, want %u", c->rate, actual, c->actual);
	}
}
END_TEST

START_TEST(test_ftdi_divisor_unsupported)
{
	static const uint32_t bad[] = {
	    0,	     183,     /* needs 16393: more than 14 bits */
	    50,	     2500000, /* between 1.5 and 1: no such divisor, 2 MBd and 3 MBd are >3% away */
	    2900000,	      /* 3 MBd is 3.4% off */
	    1800000,	      /* 2 MBd is 11% off */
	    3200000, 4000000000u,
	};
	uint32_t div, actual;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(ftdi_baud_divisor(bad[i], false, &div, &actual) == -EINVAL, "%u accepted",
			      bad[i]);
	ck_assert_int_eq(ftdi_baud_divisor(13000000, true, &div, &actual), -EINVAL);
	ck_assert_int_eq(ftdi_baud_divisor(2950000, false, &div, &actual), 0); /* 1.7% off 3 MBd: fine */
	ck_assert_uint_eq(div, 0);
}
END_TEST

START_TEST(test_ftdi_data_value)
{
	uint16_t v;

	/* ftdi_sio.h FTDI_SIO_SET_DATA: bits 0-7 data, 8-10 parity, 11-13 stop, 14 break. */
	ck_assert_int_eq(ftdi_data_value(&(struct serial_line){9600, 8, 'N', 2}, false, &v), 0);
	ck_assert_uint_eq(v, 0x0008);
	ck_assert_int_eq(ftdi_data_value(&(struct serial_line){9600, 7, 'E', 4}, false, &v), 0);
	ck_assert_uint_eq(v, 0x1207);
	ck_assert_int_eq(ftdi_data_value(&(struct serial_line){9600, 8, 'S', 2}, true, &v), 0);
	ck_assert_uint_eq(v, 0x4408);
	ck_assert_int_eq(ftdi_data_value(&(struct serial_line){9600, 6, 'N', 2}, false, &v), -EINVAL);
	ck_assert_int_eq(ftdi_data_value(&(struct serial_line){9600, 5, 'N', 3}, false, &v), -EINVAL);
}
END_TEST

/* The CDC Union descriptors of real boards: the data interface belongs to the ACM one. */
START_TEST(test_cdc_union)
{
	struct usbdesc_device dev;

	ck_assert_int_eq(usbdesc_parse(desc_arduino_uno_r3, sizeof(desc_arduino_uno_r3), &dev, NULL), 0);
	ck_assert_uint_eq(dev.ifaces[0].num_slaves, 1);
	ck_assert_uint_eq(dev.ifaces[0].slaves[0], 1);
	ck_assert_uint_eq(dev.ifaces[1].num_slaves, 0);
	ck_assert_str_eq(bind_lookup(&dev, &dev.ifaces[0])->name, "serial");
	ck_assert_ptr_eq(bind_union_master(&dev, 1), &dev.ifaces[0]);
	ck_assert_ptr_null(bind_union_master(&dev, 0));

	/* The Pico: IAD, ACM 0 + data 1 in a union, then its vendor reset interface 2 on its own. */
	ck_assert_int_eq(usbdesc_parse(desc_rpi_pico_cdc, sizeof(desc_rpi_pico_cdc), &dev, NULL), 0);
	ck_assert_uint_eq(dev.num_ifaces, 3);
	ck_assert_uint_eq(dev.ifaces[0].num_slaves, 1);
	ck_assert_uint_eq(dev.ifaces[0].slaves[0], 1);
	ck_assert_ptr_eq(bind_union_master(&dev, 1), &dev.ifaces[0]);
	ck_assert_ptr_null(bind_union_master(&dev, 2));
	ck_assert_str_eq(bind_lookup(&dev, &dev.ifaces[2])->name, "usb");

	/* The FTDI has no union: its one interface is a function. */
	ck_assert_int_eq(usbdesc_parse(desc_ftdi_ft232r, sizeof(desc_ftdi_ft232r), &dev, NULL), 0);
	ck_assert_uint_eq(dev.ifaces[0].num_slaves, 0);
	ck_assert_str_eq(bind_lookup(&dev, &dev.ifaces[0])->name, "serial");
	ck_assert_ptr_null(bind_union_master(&dev, 0));
}
END_TEST

/* A union only counts after its master, and only for a driver that takes unions. */
START_TEST(test_cdc_union_rules)
{
	uint8_t d[128];
	size_t n = 0;
	struct usbdesc_device dev;

	memcpy(d, desc_arduino_uno_r3, 18);
	n = 18;
	static const uint8_t cfg[] = {
	    9,
	    2,
	    0,
	    0,
	    3,
	    1,
	    0,
	    0x80,
	    50,
	    /* if 0: vendor class, with a union claiming to be interface 2's: ignored. */
	    9,
	    4,
	    0,
	    0,
	    0,
	    0xff,
	    0,
	    0,
	    0,
	    5,
	    0x24,
	    0x06,
	    2,
	    1,
	    /* if 1: CDC ACM, union master 1 over slaves 2 and 1 (itself: dropped). */
	    9,
	    4,
	    1,
	    0,
	    1,
	    2,
	    2,
	    1,
	    0,
	    6,
	    0x24,
	    0x06,
	    1,
	    2,
	    1,
	    7,
	    5,
	    0x82,
	    3,
	    8,
	    0,
	    16,
	    /* if 2: CDC data, with a too-short union (bLength 4): ignored. */
	    9,
	    4,
	    2,
	    0,
	    2,
	    0x0a,
	    0,
	    0,
	    0,
	    4,
	    0x24,
	    0x06,
	    2,
	    7,
	    5,
	    0x04,
	    2,
	    64,
	    0,
	    0,
	    7,
	    5,
	    0x83,
	    2,
	    64,
	    0,
	    0,
	};
	memcpy(d + n, cfg, sizeof(cfg));
	d[n + 2] = sizeof(cfg);
	n += sizeof(cfg);
	ck_assert_int_eq(usbdesc_parse(d, n, &dev, NULL), 0);
	ck_assert_uint_eq(dev.num_ifaces, 3);
	ck_assert_uint_eq(dev.ifaces[0].num_slaves, 0);
	ck_assert_uint_eq(dev.ifaces[1].num_slaves, 1);
	ck_assert_uint_eq(dev.ifaces[1].slaves[0], 2);
	ck_assert_uint_eq(dev.ifaces[2].num_slaves, 0);
	ck_assert_ptr_eq(bind_union_master(&dev, 2), &dev.ifaces[1]);
	ck_assert_ptr_null(bind_union_master(&dev, 1));
	ck_assert_ptr_null(bind_union_master(&dev, 0));

	/* A union on an interface the generic driver takes joins nothing. */
	d[18 + 9 + 14 + 5] = 0xff; /* interface 1 becomes vendor class */
	ck_assert_int_eq(usbdesc_parse(d, n, &dev, NULL), 0);
	ck_assert_uint_eq(dev.ifaces[1].num_slaves, 1);
	ck_assert_ptr_null(bind_union_master(&dev, 2));
}
END_TEST

Suite *serial_line_suite(void)
{
	Suite *s = suite_create("serial_line");
	TCase *tc = tcase_create("serial_line");

	tcase_add_test(tc, test_parse_good);
	tcase_add_test(tc, test_parse_bad);
	tcase_add_test(tc, test_format_roundtrip);
	tcase_add_test(tc, test_cdc_line_coding);
	tcase_add_test(tc, test_ftdi_divisor);
	tcase_add_test(tc, test_ftdi_divisor_unsupported);
	tcase_add_test(tc, test_ftdi_data_value);
	tcase_add_test(tc, test_cdc_union);
	tcase_add_test(tc, test_cdc_union_rules);
	suite_add_tcase(s, tc);
	return s;
}
