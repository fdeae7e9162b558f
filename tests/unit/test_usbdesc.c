/*
 * The raw descriptor parser (common/usbdesc.c) against real products'
 * descriptors (devices.c) and against broken ones.  Expected values are
 * read off the lsusb/pyusb dumps in ../shared/devices/.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "devices.h"
#include "suites.h"
#include "usbdesc.h"

static struct usbdesc_device dev;
static uint8_t buf[4096];

/* An exactly-sized copy of desc, so that ASan sees any read past `len`. */
static uint8_t *exact_copy(const uint8_t *desc, size_t len)
{
	uint8_t *copy = malloc(len > 0 ? len : 1);

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, desc, len);
	return copy;
}

static void parse_ok(const uint8_t *desc, size_t len)
{
	const char *why = NULL;
	uint8_t *copy = exact_copy(desc, len);
	int r = usbdesc_parse(copy, len, &dev, &why);

	free(copy);
	ck_assert_msg(r == 0, "parse failed (%d): %s", r, why != NULL ? why : "(no reason)");
}

static void assert_parse_fails(const uint8_t *desc, size_t len)
{
	const char *why = NULL;
	uint8_t *copy = exact_copy(desc, len);
	struct usbdesc_iface alt;

	ck_assert_int_eq(usbdesc_parse(copy, len, &dev, &why), -EINVAL);
	ck_assert_ptr_nonnull(why);
	/* The walker is shared: the alt lookup must refuse the same buffer. */
	ck_assert_int_eq(usbdesc_find_alt(copy, len, 0, 0, &alt), -EINVAL);
	free(copy);
}

static void assert_iface(const struct usbdesc_iface *i, uint8_t number, uint8_t cls, uint8_t subclass,
			 uint8_t protocol, uint8_t num_eps)
{
	ck_assert_uint_eq(i->number, number);
	ck_assert_uint_eq(i->alt, 0);
	ck_assert_uint_eq(i->cls, cls);
	ck_assert_uint_eq(i->subclass, subclass);
	ck_assert_uint_eq(i->protocol, protocol);
	ck_assert_uint_eq(i->num_eps, num_eps);
}

static void assert_ep(const struct usbdesc_ep *ep, uint8_t address, enum usb_xfer_type type,
		      uint16_t max_packet, uint8_t interval)
{
	ck_assert_uint_eq(ep->address, address);
	ck_assert_uint_eq(ep->attributes & 3, type);
	ck_assert_uint_eq(ep->max_packet, max_packet);
	ck_assert_uint_eq(ep->interval, interval);
}

/* ---- real devices ---- */

START_TEST(test_ftdi_ft232r)
{
	parse_ok(desc_ftdi_ft232r, sizeof(desc_ftdi_ft232r));
	ck_assert_uint_eq(dev.vendor_id, 0x0403);
	ck_assert_uint_eq(dev.product_id, 0x6001);
	ck_assert_uint_eq(dev.bcd_usb, 0x0200);
	ck_assert_uint_eq(dev.bcd_device, 0x0600);
	ck_assert_uint_eq(dev.cls, 0);
	ck_assert_uint_eq(dev.max_packet0, 8);
	ck_assert_uint_eq(dev.i_manufacturer, 1);
	ck_assert_uint_eq(dev.i_product, 2);
	ck_assert_uint_eq(dev.i_serial, 3);
	ck_assert_uint_eq(dev.num_configs, 1);
	ck_assert_uint_eq(dev.config_value, 1);
	ck_assert_uint_eq(dev.num_ifaces, 1);
	assert_iface(&dev.ifaces[0], 0, 0xff, 0xff, 0xff, 2);
	assert_ep(&dev.ifaces[0].eps[0], 0x81, USB_XFER_BULK, 64, 0);
	assert_ep(&dev.ifaces[0].eps[1], 0x02, USB_XFER_BULK, 64, 0);
	/* The interface's bytes: itself and both endpoints, to the end of the configuration. */
	ck_assert_uint_eq(dev.ifaces[0].raw_off, 18 + 9);
	ck_assert_uint_eq(dev.ifaces[0].raw_len, 9 + 7 + 7);
}
END_TEST

START_TEST(test_arduino_uno_r3)
{
	parse_ok(desc_arduino_uno_r3, sizeof(desc_arduino_uno_r3));
	ck_assert_uint_eq(dev.vendor_id, 0x2341);
	ck_assert_uint_eq(dev.product_id, 0x0043);
	ck_assert_uint_eq(dev.bcd_usb, 0x0110);
	ck_assert_uint_eq(dev.bcd_device, 0x0001);
	ck_assert_uint_eq(dev.cls, 2);
	ck_assert_uint_eq(dev.i_serial, 220);
	ck_assert_uint_eq(dev.config_value, 1); /* next to bNumInterfaces 2 */
	ck_assert_uint_eq(dev.num_ifaces, 2);
	/* CDC ACM control: the class-specific header/ACM/union descriptors are skipped. */
	assert_iface(&dev.ifaces[0], 0, 2, 2, 1, 1);
	assert_ep(&dev.ifaces[0].eps[0], 0x82, USB_XFER_INTR, 8, 255);
	ck_assert_uint_eq(dev.ifaces[0].raw_off, 27);
	ck_assert_uint_eq(dev.ifaces[0].raw_len, 9 + 5 + 4 + 5 + 7);
	ck_assert_uint_eq(desc_arduino_uno_r3[dev.ifaces[0].raw_off + 1], USB_DT_INTERFACE);
	/* CDC data. */
	assert_iface(&dev.ifaces[1], 1, 0x0a, 0, 0, 2);
	assert_ep(&dev.ifaces[1].eps[0], 0x04, USB_XFER_BULK, 64, 1);
	assert_ep(&dev.ifaces[1].eps[1], 0x83, USB_XFER_BULK, 64, 1);
	ck_assert_uint_eq(dev.ifaces[1].raw_off, 27 + 30);
	ck_assert_uint_eq(dev.ifaces[1].raw_off + dev.ifaces[1].raw_len, sizeof(desc_arduino_uno_r3));
}
END_TEST

START_TEST(test_sandisk_cruzer_titanium)
{
	parse_ok(desc_sandisk_cruzer_titanium, sizeof(desc_sandisk_cruzer_titanium));
	ck_assert_uint_eq(dev.vendor_id, 0x0781);
	ck_assert_uint_eq(dev.product_id, 0x5200);
	ck_assert_uint_eq(dev.bcd_device, 0x0020);
	ck_assert_uint_eq(dev.max_packet0, 64);
	ck_assert_uint_eq(dev.num_ifaces, 1);
	assert_iface(&dev.ifaces[0], 0, 8, 6, 0x50, 2);
	assert_ep(&dev.ifaces[0].eps[0], 0x81, USB_XFER_BULK, 64, 0);
	assert_ep(&dev.ifaces[0].eps[1], 0x01, USB_XFER_BULK, 64, 0);
}
END_TEST

START_TEST(test_gprinter_zh380)
{
	parse_ok(desc_gprinter_zh380, sizeof(desc_gprinter_zh380));
	ck_assert_uint_eq(dev.vendor_id, 0x6868);
	ck_assert_uint_eq(dev.product_id, 0x0500);
	ck_assert_uint_eq(dev.bcd_device, 0x0400);
	ck_assert_uint_eq(dev.num_ifaces, 1);
	assert_iface(&dev.ifaces[0], 0, 7, 1, 2, 2);
	assert_ep(&dev.ifaces[0].eps[0], 0x84, USB_XFER_BULK, 64, 10);
	assert_ep(&dev.ifaces[0].eps[1], 0x03, USB_XFER_BULK, 64, 10);
}
END_TEST

/* An interface association descriptor before the interfaces, and an interface without endpoints. */
START_TEST(test_rpi_pico_cdc)
{
	parse_ok(desc_rpi_pico_cdc, sizeof(desc_rpi_pico_cdc));
	ck_assert_uint_eq(dev.vendor_id, 0x2e8a);
	ck_assert_uint_eq(dev.product_id, 0x000a);
	ck_assert_uint_eq(dev.cls, 0xef);
	ck_assert_uint_eq(dev.subclass, 2);
	ck_assert_uint_eq(dev.protocol, 1);
	ck_assert_uint_eq(dev.num_ifaces, 3);
	assert_iface(&dev.ifaces[0], 0, 2, 2, 0, 1);
	assert_ep(&dev.ifaces[0].eps[0], 0x81, USB_XFER_INTR, 8, 16);
	assert_iface(&dev.ifaces[1], 1, 0x0a, 0, 0, 2);
	assert_ep(&dev.ifaces[1].eps[0], 0x02, USB_XFER_BULK, 64, 0);
	assert_ep(&dev.ifaces[1].eps[1], 0x82, USB_XFER_BULK, 64, 0);
	assert_iface(&dev.ifaces[2], 2, 0xff, 0, 1, 0);
	ck_assert_uint_eq(dev.ifaces[2].raw_len, 9);
	ck_assert_uint_eq(dev.ifaces[2].raw_off + 9, sizeof(desc_rpi_pico_cdc));
}
END_TEST

/* HID class descriptors (type 0x21) between interface and endpoint. */
START_TEST(test_temper)
{
	parse_ok(desc_temper_7401, sizeof(desc_temper_7401));
	ck_assert_uint_eq(dev.vendor_id, 0x0c45);
	ck_assert_uint_eq(dev.product_id, 0x7401);
	ck_assert_uint_eq(dev.i_serial, 0);
	ck_assert_uint_eq(dev.num_ifaces, 2);
	assert_iface(&dev.ifaces[0], 0, 3, 1, 1, 1);
	assert_ep(&dev.ifaces[0].eps[0], 0x81, USB_XFER_INTR, 8, 10);
	assert_iface(&dev.ifaces[1], 1, 3, 1, 2, 1);
	assert_ep(&dev.ifaces[1].eps[0], 0x82, USB_XFER_INTR, 8, 10);
}
END_TEST

/* The interfaces' byte ranges tile the configuration after its header, with no gap or overlap. */
START_TEST(test_raw_ranges)
{
	const struct test_device *t = &test_devices[_i];

	parse_ok(t->desc, t->len);
	ck_assert_uint_gt(dev.num_ifaces, 0);
	for (unsigned i = 0; i < dev.num_ifaces; i++) {
		const struct usbdesc_iface *f = &dev.ifaces[i];
		ck_assert_uint_le(f->raw_off + f->raw_len, t->len);
		ck_assert_uint_ge(f->raw_len, 9);
		ck_assert_uint_eq(t->desc[f->raw_off], 9);
		ck_assert_uint_eq(t->desc[f->raw_off + 1], USB_DT_INTERFACE);
		ck_assert_uint_eq(t->desc[f->raw_off + 2], f->number);
		ck_assert_uint_eq(t->desc[f->raw_off + 4], f->num_eps); /* bNumEndpoints agrees */
		if (i + 1 < dev.num_ifaces)
			ck_assert_uint_eq(f->raw_off + f->raw_len, dev.ifaces[i + 1].raw_off);
		else
			ck_assert_uint_eq(f->raw_off + f->raw_len, t->len);
	}
}
END_TEST

/* sysfs `descriptors` holds every configuration: only the first one counts. */
START_TEST(test_second_config_ignored)
{
	static const uint8_t second[] = {
	    0x09, 0x02, 0x12, 0x00, 0x01, 0x02, 0x00, 0x80, 0x32, /* config 2 */
	    0x09, 0x04, 0x05, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, /* interface 5 */
	};
	size_t len = sizeof(desc_ftdi_ft232r);

	memcpy(buf, desc_ftdi_ft232r, len);
	buf[17] = 2; /* bNumConfigurations */
	memcpy(buf + len, second, sizeof(second));
	parse_ok(buf, len + sizeof(second));
	ck_assert_uint_eq(dev.num_configs, 2);
	ck_assert_uint_eq(dev.config_value, 1);
	ck_assert_uint_eq(dev.num_ifaces, 1);
	ck_assert_uint_eq(dev.ifaces[0].number, 0);
	ck_assert_uint_eq(dev.ifaces[0].raw_len, 9 + 7 + 7);
}
END_TEST

/* ---- a synthetic device with alternate settings (a UVC/UAC-like layout) ---- */

struct builder {
	uint8_t *p;
	size_t n;
	size_t cfg; /* offset of the configuration descriptor */
};

static void b_device(struct builder *b, uint16_t vid, uint16_t pid)
{
	static const uint8_t dd[18] = {18, USB_DT_DEVICE, 0x00, 0x02, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 1, 2, 3,
				       1};

	b->p = buf;
	memcpy(b->p, dd, sizeof(dd));
	b->p[8] = vid & 0xff;
	b->p[9] = vid >> 8;
	b->p[10] = pid & 0xff;
	b->p[11] = pid >> 8;
	b->n = 18;
	b->cfg = 18;
	static const uint8_t cd[9] = {9, USB_DT_CONFIG, 0, 0, 0, 1, 0, 0x80, 50};
	memcpy(b->p + b->n, cd, sizeof(cd));
	b->n += 9;
}

static void b_iface(struct builder *b, uint8_t number, uint8_t alt, uint8_t neps, uint8_t cls)
{
	uint8_t d[9] = {9, USB_DT_INTERFACE, number, alt, neps, cls, 0, 0, 0};

	memcpy(b->p + b->n, d, sizeof(d));
	b->n += 9;
}

static void b_ep(struct builder *b, uint8_t address, uint8_t attributes, uint16_t wmax, uint8_t interval)
{
	uint8_t d[7] = {
	    7, USB_DT_ENDPOINT, address, attributes, (uint8_t)(wmax & 0xff), (uint8_t)(wmax >> 8), interval};

	memcpy(b->p + b->n, d, sizeof(d));
	b->n += 7;
}

static void b_raw(struct builder *b, const uint8_t *d, size_t n)
{
	memcpy(b->p + b->n, d, n);
	b->n += n;
}

/* Sets wTotalLength and bNumInterfaces; returns the whole length. */
static size_t b_end(struct builder *b, uint8_t num_ifaces)
{
	size_t total = b->n - b->cfg;

	b->p[b->cfg + 2] = total & 0xff;
	b->p[b->cfg + 3] = (uint8_t)(total >> 8);
	b->p[b->cfg + 4] = num_ifaces;
	return b->n;
}

/*
 * Interface 0: alt 0 with no endpoints, alt 1 and alt 2 with an isochronous
 * IN endpoint (high-bandwidth bits set in alt 2); interface 1: a bulk pair;
 * interface 0 alt 3 comes last, after interface 1, as some devices order them.
 */
static size_t build_alt_device(void)
{
	struct builder b;

	b_device(&b, 0x046d, 0x0825);
	b_iface(&b, 0, 0, 0, 0x0e);
	b_iface(&b, 0, 1, 1, 0x0e);
	b_ep(&b, 0x81, 0x05, 0x0080, 1);
	b_iface(&b, 0, 2, 1, 0x0e);
	b_ep(&b, 0x81, 0x05, 0x1400, 1); /* 2 extra transactions x 1024 bytes */
	b_iface(&b, 1, 0, 2, 0xff);
	b_ep(&b, 0x02, 0x02, 512, 0);
	b_ep(&b, 0x86, 0x02, 512, 0);
	b_iface(&b, 0, 3, 1, 0x0e);
	b_ep(&b, 0x81, 0x05, 0x0c00, 1);
	return b_end(&b, 2);
}

START_TEST(test_alt_counted_once)
{
	size_t len = build_alt_device();

	parse_ok(buf, len);
	ck_assert_uint_eq(dev.vendor_id, 0x046d);
	ck_assert_uint_eq(dev.product_id, 0x0825);
	ck_assert_uint_eq(dev.num_ifaces, 2);
	/* Interface 0 is listed as its altsetting 0, with no endpoints. */
	assert_iface(&dev.ifaces[0], 0, 0x0e, 0, 0, 0);
	ck_assert_uint_eq(dev.ifaces[0].raw_len, 9);
	assert_iface(&dev.ifaces[1], 1, 0xff, 0, 0, 2);
	assert_ep(&dev.ifaces[1].eps[0], 0x02, USB_XFER_BULK, 512, 0);
	assert_ep(&dev.ifaces[1].eps[1], 0x86, USB_XFER_BULK, 512, 0);
}
END_TEST

/*
 * An interface is listed as its altsetting 0 even when another altsetting
 * comes first, and a repeated altsetting 0 does not make a second function.
 */
START_TEST(test_alt_order_and_duplicates)
{
	struct builder b;

	b_device(&b, 1, 2);
	b_iface(&b, 0, 1, 1, 0x01); /* alt 1 before alt 0 */
	b_ep(&b, 0x81, 0x05, 192, 1);
	b_iface(&b, 0, 0, 0, 0x01);
	b_iface(&b, 1, 0, 1, 0x03);
	b_ep(&b, 0x82, 0x03, 8, 10);
	b_iface(&b, 1, 0, 2, 0xff); /* interface 1 alt 0 again: the first one stands */
	b_ep(&b, 0x03, 0x02, 64, 0);
	b_ep(&b, 0x83, 0x02, 64, 0);
	parse_ok(buf, b_end(&b, 2));
	ck_assert_uint_eq(dev.num_ifaces, 2);
	assert_iface(&dev.ifaces[0], 0, 0x01, 0, 0, 0);
	assert_iface(&dev.ifaces[1], 1, 0x03, 0, 0, 1);
	assert_ep(&dev.ifaces[1].eps[0], 0x82, USB_XFER_INTR, 8, 10);
}
END_TEST

START_TEST(test_find_alt)
{
	size_t len = build_alt_device();
	struct usbdesc_iface alt;

	ck_assert_int_eq(usbdesc_find_alt(buf, len, 0, 0, &alt), 0);
	ck_assert_uint_eq(alt.number, 0);
	ck_assert_uint_eq(alt.alt, 0);
	ck_assert_uint_eq(alt.num_eps, 0);

	ck_assert_int_eq(usbdesc_find_alt(buf, len, 0, 1, &alt), 0);
	ck_assert_uint_eq(alt.number, 0);
	ck_assert_uint_eq(alt.alt, 1);
	ck_assert_uint_eq(alt.cls, 0x0e);
	ck_assert_uint_eq(alt.num_eps, 1);
	assert_ep(&alt.eps[0], 0x81, USB_XFER_ISOC, 128, 1);
	ck_assert_uint_eq(alt.raw_len, 9 + 7);
	ck_assert_uint_eq(buf[alt.raw_off + 3], 1);

	/* wMaxPacketSize bits 11-12 count extra transactions, not bytes. */
	ck_assert_int_eq(usbdesc_find_alt(buf, len, 0, 2, &alt), 0);
	ck_assert_uint_eq(alt.alt, 2);
	assert_ep(&alt.eps[0], 0x81, USB_XFER_ISOC, 1024, 1);

	/* After another interface's descriptors: found, and its range stops at the end. */
	ck_assert_int_eq(usbdesc_find_alt(buf, len, 0, 3, &alt), 0);
	ck_assert_uint_eq(alt.alt, 3);
	assert_ep(&alt.eps[0], 0x81, USB_XFER_ISOC, 1024, 1);
	ck_assert_uint_eq(alt.raw_off + alt.raw_len, len);

	ck_assert_int_eq(usbdesc_find_alt(buf, len, 1, 0, &alt), 0);
	ck_assert_uint_eq(alt.number, 1);
	ck_assert_uint_eq(alt.num_eps, 2);

	ck_assert_int_eq(usbdesc_find_alt(buf, len, 0, 4, &alt), -ENOENT);
	ck_assert_int_eq(usbdesc_find_alt(buf, len, 1, 1, &alt), -ENOENT);
	ck_assert_int_eq(usbdesc_find_alt(buf, len, 2, 0, &alt), -ENOENT);
	ck_assert_int_eq(usbdesc_find_alt(buf, len, 255, 255, &alt), -ENOENT);
}
END_TEST

START_TEST(test_find_alt_real)
{
	struct usbdesc_iface alt;

	ck_assert_int_eq(usbdesc_find_alt(desc_arduino_uno_r3, sizeof(desc_arduino_uno_r3), 1, 0, &alt), 0);
	assert_iface(&alt, 1, 0x0a, 0, 0, 2);
	assert_ep(&alt.eps[1], 0x83, USB_XFER_BULK, 64, 1);
	ck_assert_int_eq(usbdesc_find_alt(desc_arduino_uno_r3, sizeof(desc_arduino_uno_r3), 1, 1, &alt),
			 -ENOENT);
	ck_assert_int_eq(usbdesc_find_alt(desc_arduino_uno_r3, sizeof(desc_arduino_uno_r3), 2, 0, &alt),
			 -ENOENT);
}
END_TEST

/* Endpoint descriptors before any interface belong to nobody and are skipped. */
START_TEST(test_stray_endpoint)
{
	struct builder b;

	b_device(&b, 1, 2);
	b_ep(&b, 0x81, 0x02, 64, 0);
	b_iface(&b, 0, 0, 1, 0xff);
	b_ep(&b, 0x82, 0x03, 16, 4);
	parse_ok(buf, b_end(&b, 1));
	ck_assert_uint_eq(dev.num_ifaces, 1);
	ck_assert_uint_eq(dev.ifaces[0].num_eps, 1);
	assert_ep(&dev.ifaces[0].eps[0], 0x82, USB_XFER_INTR, 16, 4);
}
END_TEST

/* Limits: more interfaces or endpoints than the tables hold are dropped, not overflowed. */
START_TEST(test_many_ifaces_and_eps)
{
	struct builder b;

	b_device(&b, 1, 2);
	for (unsigned i = 0; i < USBDESC_MAX_IFACES + 8; i++)
		b_iface(&b, (uint8_t)i, 0, 0, 0xff);
	b_iface(&b, 200, 0, 40, 0xff);
	for (unsigned e = 0; e < USBDESC_MAX_EPS + 8; e++)
		b_ep(&b, (uint8_t)(0x80 | (e % 16)), 0x02, 64, 0);
	size_t len = b_end(&b, USBDESC_MAX_IFACES + 9);

	parse_ok(buf, len);
	ck_assert_uint_eq(dev.num_ifaces, USBDESC_MAX_IFACES);
	for (unsigned i = 0; i < USBDESC_MAX_IFACES; i++)
		ck_assert_uint_eq(dev.ifaces[i].number, i);

	struct usbdesc_iface alt;
	ck_assert_int_eq(usbdesc_find_alt(buf, len, 200, 0, &alt), 0);
	ck_assert_uint_eq(alt.num_eps, USBDESC_MAX_EPS);
}
END_TEST

/* A configuration with no interfaces at all parses to none. */
START_TEST(test_no_interfaces)
{
	struct builder b;

	b_device(&b, 1, 2);
	parse_ok(buf, b_end(&b, 0));
	ck_assert_uint_eq(dev.num_ifaces, 0);
	ck_assert_uint_eq(dev.vendor_id, 1);
}
END_TEST

/* ---- malformed ---- */

START_TEST(test_truncated_device)
{
	for (size_t len = 0; len < 18; len++)
		assert_parse_fails(desc_ftdi_ft232r, len);
	/* A device descriptor alone, no configuration. */
	assert_parse_fails(desc_ftdi_ft232r, 18);
	/* Every cut inside the configuration header. */
	for (size_t len = 19; len < 27; len++)
		assert_parse_fails(desc_ftdi_ft232r, len);
}
END_TEST

START_TEST(test_bad_device_descriptor)
{
	size_t len = sizeof(desc_ftdi_ft232r);

	memcpy(buf, desc_ftdi_ft232r, len);
	buf[1] = USB_DT_CONFIG;
	assert_parse_fails(buf, len);
	buf[1] = 0;
	assert_parse_fails(buf, len);
	memcpy(buf, desc_ftdi_ft232r, len);
	buf[0] = 17;
	assert_parse_fails(buf, len);
	buf[0] = 0;
	assert_parse_fails(buf, len);
	buf[0] = 0xff;
	assert_parse_fails(buf, len);
}
END_TEST

START_TEST(test_bad_config_header)
{
	size_t len = sizeof(desc_ftdi_ft232r);

	memcpy(buf, desc_ftdi_ft232r, len);
	buf[18 + 1] = USB_DT_INTERFACE;
	assert_parse_fails(buf, len);
	memcpy(buf, desc_ftdi_ft232r, len);
	buf[18] = 8; /* bLength shorter than a configuration descriptor */
	assert_parse_fails(buf, len);
	buf[18] = 0;
	assert_parse_fails(buf, len);

	/*
	 * A 7-byte "configuration" whose last two bytes happen to read as a
	 * valid 2-byte descriptor, so the rest of the chain is consistent.
	 */
	struct builder b;
	b_device(&b, 1, 2);
	buf[b.cfg] = 7;
	buf[b.cfg + 7] = 2; /* bmAttributes, read as a bLength */
	b_iface(&b, 0, 0, 0, 0xff);
	assert_parse_fails(buf, b_end(&b, 1));
}
END_TEST

START_TEST(test_total_length)
{
	/* Past the end, far past, and shorter than the configuration descriptor itself. */
	static const uint16_t bad_totals[] = {63, 0x0100, 0xffff, 8, 0};
	size_t len = sizeof(desc_arduino_uno_r3);

	/* Every truncation of a valid device: wTotalLength now points past the buffer. */
	for (size_t cut = 1; cut < len - 18; cut++)
		assert_parse_fails(desc_arduino_uno_r3, len - cut);

	memcpy(buf, desc_arduino_uno_r3, len);
	for (size_t i = 0; i < sizeof(bad_totals) / sizeof(bad_totals[0]); i++) {
		buf[20] = bad_totals[i] & 0xff;
		buf[21] = (uint8_t)(bad_totals[i] >> 8);
		assert_parse_fails(buf, len);
	}
	/* A shorter wTotalLength that still ends on a descriptor boundary is honoured. */
	buf[20] = 9 + 9 + 5 + 4 + 5 + 7;
	buf[21] = 0;
	parse_ok(buf, len);
	ck_assert_uint_eq(dev.num_ifaces, 1);
	ck_assert_uint_eq(dev.ifaces[0].raw_off + dev.ifaces[0].raw_len, 18 + buf[20]);
}
END_TEST

START_TEST(test_zero_length_descriptor)
{
	size_t len = sizeof(desc_arduino_uno_r3);

	/* bLength 0 or 1 at each descriptor in the chain: refused, and promptly (the tcase timeout). */
	static const size_t starts[] = {27, 36, 41, 45, 50, 57, 66, 73};
	for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
		for (uint8_t bl = 0; bl < 2; bl++) {
			memcpy(buf, desc_arduino_uno_r3, len);
			buf[starts[i]] = bl;
			assert_parse_fails(buf, len);
		}
	}
	/* Also a zero-filled tail within wTotalLength. */
	struct builder b;
	b_device(&b, 1, 2);
	b_iface(&b, 0, 0, 0, 0xff);
	memset(b.p + b.n, 0, 16);
	b.n += 16;
	assert_parse_fails(buf, b_end(&b, 1));
}
END_TEST

START_TEST(test_descriptor_past_end)
{
	size_t len = sizeof(desc_ftdi_ft232r);

	/* The last endpoint claims one byte more than the configuration holds. */
	memcpy(buf, desc_ftdi_ft232r, len);
	buf[len - 7] = 8;
	assert_parse_fails(buf, len);
	/* ... even when the buffer itself has the byte (it is past wTotalLength). */
	buf[len] = 0;
	assert_parse_fails(buf, len + 1);
	/* The interface descriptor claims the rest of the world. */
	memcpy(buf, desc_ftdi_ft232r, len);
	buf[27] = 0xff;
	assert_parse_fails(buf, len);
}
END_TEST

START_TEST(test_short_iface_and_ep)
{
	struct builder b;
	static const uint8_t short_iface[8] = {8, USB_DT_INTERFACE, 0, 0, 0, 0xff, 0, 0};
	static const uint8_t short_ep[6] = {6, USB_DT_ENDPOINT, 0x81, 0x02, 64, 0};

	b_device(&b, 1, 2);
	b_raw(&b, short_iface, sizeof(short_iface));
	assert_parse_fails(buf, b_end(&b, 1));

	b_device(&b, 1, 2);
	b_iface(&b, 0, 0, 1, 0xff);
	b_raw(&b, short_ep, sizeof(short_ep));
	assert_parse_fails(buf, b_end(&b, 1));
}
END_TEST

/* Every single-byte corruption of every real device: no crash, and a clean result either way. */
START_TEST(test_corruptions_do_not_crash)
{
	const struct test_device *t = &test_devices[_i];
	static const uint8_t vals[] = {0, 1, 2, 7, 9, 0x7f, 0x80, 0xff};

	for (size_t at = 0; at < t->len; at++) {
		for (size_t v = 0; v < sizeof(vals); v++) {
			memcpy(buf, t->desc, t->len);
			buf[at] = vals[v];
			const char *why = NULL;
			int r = usbdesc_parse(buf, t->len, &dev, &why);
			ck_assert(r == 0 || r == -EINVAL);
			if (r < 0)
				ck_assert_ptr_nonnull(why);
			ck_assert_uint_le(dev.num_ifaces, USBDESC_MAX_IFACES);
			for (unsigned i = 0; r == 0 && i < dev.num_ifaces; i++)
				ck_assert_uint_le(dev.ifaces[i].raw_off + dev.ifaces[i].raw_len, t->len);
			struct usbdesc_iface alt;
			r = usbdesc_find_alt(buf, t->len, 0, 0, &alt);
			ck_assert(r == 0 || r == -EINVAL || r == -ENOENT);
		}
	}
}
END_TEST

Suite *usbdesc_suite(void)
{
	Suite *s = suite_create("usbdesc");
	TCase *tc;

	tc = tcase_create("real_devices");
	tcase_add_test(tc, test_ftdi_ft232r);
	tcase_add_test(tc, test_arduino_uno_r3);
	tcase_add_test(tc, test_sandisk_cruzer_titanium);
	tcase_add_test(tc, test_gprinter_zh380);
	tcase_add_test(tc, test_rpi_pico_cdc);
	tcase_add_test(tc, test_temper);
	tcase_add_loop_test(tc, test_raw_ranges, 0, (int)test_devices_count);
	tcase_add_test(tc, test_second_config_ignored);
	suite_add_tcase(s, tc);

	tc = tcase_create("altsettings");
	tcase_add_test(tc, test_alt_counted_once);
	tcase_add_test(tc, test_alt_order_and_duplicates);
	tcase_add_test(tc, test_find_alt);
	tcase_add_test(tc, test_find_alt_real);
	tcase_add_test(tc, test_stray_endpoint);
	tcase_add_test(tc, test_many_ifaces_and_eps);
	tcase_add_test(tc, test_no_interfaces);
	suite_add_tcase(s, tc);

	tc = tcase_create("malformed");
	/* A parser stuck on a zero-length descriptor fails by timeout: keep it short. */
	tcase_set_timeout(tc, 2);
	tcase_add_test(tc, test_truncated_device);
	tcase_add_test(tc, test_bad_device_descriptor);
	tcase_add_test(tc, test_bad_config_header);
	tcase_add_test(tc, test_total_length);
	tcase_add_test(tc, test_zero_length_descriptor);
	tcase_add_test(tc, test_descriptor_past_end);
	tcase_add_test(tc, test_short_iface_and_ep);
	tcase_add_loop_test(tc, test_corruptions_do_not_crash, 0, (int)test_devices_count);
	suite_add_tcase(s, tc);

	return s;
}
