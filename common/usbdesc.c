/*
 * Raw USB descriptor parser (see usbdesc.h).
 */
#include "usbdesc.h"

#include <errno.h>
#include <string.h>

#include "proto.h"

static int fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return -EINVAL;
}

/*
 * Walks the descriptors of the first configuration, calling `on_iface` for
 * every interface descriptor (any altsetting) once its endpoints are known.
 * Returns 0, a negative errno from the callback, or -EINVAL.
 */
typedef int (*iface_cb)(const struct usbdesc_iface *iface, void *arg);

static int walk_config(const uint8_t *buf, size_t len, uint8_t *config_value, iface_cb on_iface, void *arg,
		       const char **why)
{
	if (len < 18 || buf[0] != 18 || buf[1] != USB_DT_DEVICE)
		return fail(why, "bad device descriptor");
	size_t off = 18;
	if (len - off < 9 || buf[off] < 9 || buf[off + 1] != USB_DT_CONFIG)
		return fail(why, "no configuration descriptor");
	size_t total = get_le16(buf + off + 2);
	if (total < buf[off] || total > len - off)
		return fail(why, "configuration wTotalLength out of range");
	if (config_value != NULL)
		*config_value = buf[off + 5];

	size_t end = off + total;
	struct usbdesc_iface cur;
	int have = 0;
	off += buf[off];
	while (off < end) {
		uint8_t dlen = buf[off], dtype;
		if (dlen < 2 || dlen > end - off)
			return fail(why, "descriptor length breaks the chain");
		dtype = buf[off + 1];
		if (dtype == USB_DT_INTERFACE) {
			if (dlen < 9)
				return fail(why, "short interface descriptor");
			if (have) {
				cur.raw_len = off - cur.raw_off;
				int r = on_iface(&cur, arg);
				if (r < 0)
					return r;
			}
			memset(&cur, 0, sizeof(cur));
			cur.number = buf[off + 2];
			cur.alt = buf[off + 3];
			cur.cls = buf[off + 5];
			cur.subclass = buf[off + 6];
			cur.protocol = buf[off + 7];
			cur.raw_off = off;
			have = 1;
		} else if (dtype == USB_DT_ENDPOINT && have) {
			if (dlen < 7)
				return fail(why, "short endpoint descriptor");
			if (cur.num_eps < USBDESC_MAX_EPS) {
				struct usbdesc_ep *ep = &cur.eps[cur.num_eps++];
				ep->address = buf[off + 2];
				ep->attributes = buf[off + 3];
				ep->max_packet = get_le16(buf + off + 4) & 0x7ff;
				ep->interval = buf[off + 6];
			}
		} else if (dtype == USB_DT_CS_INTERFACE && have && cur.cls == USB_CLASS_VIDEO &&
			   cur.subclass == 1 && dlen >= 12 && buf[off + 2] == 0x01) {
			/* UVC VideoControl header: bInCollection, then its VideoStreaming interfaces. */
			for (size_t i = off + 12; i < off + dlen && i < off + 12u + buf[off + 11] &&
						  cur.num_slaves < USBDESC_MAX_SLAVES;
			     i++)
				if (buf[i] != cur.number)
					cur.slaves[cur.num_slaves++] = buf[i];
		} else if (dtype == USB_DT_CS_INTERFACE && have && cur.cls != USB_CLASS_VIDEO && dlen >= 5 &&
			   buf[off + 2] == USB_CDC_SUBTYPE_UNION && buf[off + 3] == cur.number) {
			/* bLength 4 + n: bMasterInterface, then n >= 1 bSlaveInterface bytes. */
			for (size_t i = off + 4; i < off + dlen && cur.num_slaves < USBDESC_MAX_SLAVES; i++)
				if (buf[i] != cur.number)
					cur.slaves[cur.num_slaves++] = buf[i];
		}
		off += dlen;
	}
	if (have) {
		cur.raw_len = end - cur.raw_off;
		return on_iface(&cur, arg);
	}
	return 0;
}

static int collect_alt0(const struct usbdesc_iface *iface, void *arg)
{
	struct usbdesc_device *dev = arg;

	if (iface->alt != 0)
		return 0;
	for (unsigned i = 0; i < dev->num_ifaces; i++)
		if (dev->ifaces[i].number == iface->number)
			return 0;
	if (dev->num_ifaces >= USBDESC_MAX_IFACES)
		return 0;
	dev->ifaces[dev->num_ifaces++] = *iface;
	return 0;
}

int usbdesc_parse(const uint8_t *buf, size_t len, struct usbdesc_device *dev, const char **why)
{
	memset(dev, 0, sizeof(*dev));
	if (len >= 18 && buf[0] == 18 && buf[1] == USB_DT_DEVICE) {
		dev->bcd_usb = get_le16(buf + 2);
		dev->cls = buf[4];
		dev->subclass = buf[5];
		dev->protocol = buf[6];
		dev->max_packet0 = buf[7];
		dev->vendor_id = get_le16(buf + 8);
		dev->product_id = get_le16(buf + 10);
		dev->bcd_device = get_le16(buf + 12);
		dev->i_manufacturer = buf[14];
		dev->i_product = buf[15];
		dev->i_serial = buf[16];
		dev->num_configs = buf[17];
	}
	return walk_config(buf, len, &dev->config_value, collect_alt0, dev, why);
}

struct find_alt {
	uint8_t number, alt;
	struct usbdesc_iface *out;
	int found;
};

static int match_alt(const struct usbdesc_iface *iface, void *arg)
{
	struct find_alt *f = arg;

	if (!f->found && iface->number == f->number && iface->alt == f->alt) {
		*f->out = *iface;
		f->found = 1;
	}
	return 0;
}

int usbdesc_find_alt(const uint8_t *buf, size_t len, uint8_t number, uint8_t alt, struct usbdesc_iface *out)
{
	struct find_alt f = {number, alt, out, 0};
	int r = walk_config(buf, len, NULL, match_alt, &f, NULL);

	if (r < 0)
		return r;
	return f.found ? 0 : -ENOENT;
}
