/*
 * Descriptors of a model, built as bytes the way a real high-speed vendor
 * device reports them: USB 2.0, bMaxPacketSize0 64, one bus-powered
 * configuration, strings 1/2/3 = manufacturer/product/serial.
 */
#include "emu.h"

#include <errno.h>
#include <string.h>

#include "proto.h"
#include "usbdesc.h"

enum { STR_MANUFACTURER = 1, STR_PRODUCT = 2, STR_SERIAL = 3 };

static size_t put_device(const struct emu_model *m, uint8_t *p)
{
	p[0] = 18;
	p[1] = USB_DT_DEVICE;
	put_le16(p + 2, 0x0200);
	p[4] = m->dev_class;
	p[5] = m->dev_subclass;
	p[6] = m->dev_protocol;
	p[7] = 64;
	put_le16(p + 8, m->vendor_id);
	put_le16(p + 10, m->product_id);
	put_le16(p + 12, m->bcd_device);
	p[14] = m->manufacturer ? STR_MANUFACTURER : 0;
	p[15] = m->product ? STR_PRODUCT : 0;
	p[16] = m->serial ? STR_SERIAL : 0;
	p[17] = 1;
	return 18;
}

static size_t config_len(const struct emu_model *m)
{
	size_t len = 9;

	for (unsigned i = 0; i < m->num_ifaces; i++) {
		const struct emu_iface_spec *ifc = &m->ifaces[i];

		len += ifc->pre_len + 9 + ifc->extra_len + 7u * ifc->num_eps;
		for (unsigned a = 0; a < ifc->num_alts; a++)
			len += 9 + 7u * ifc->alts[a].num_eps;
	}
	return len;
}

static size_t put_iface(const struct emu_iface_spec *ifc, unsigned number, unsigned alt, unsigned num_eps,
			uint8_t *p)
{
	p[0] = 9;
	p[1] = USB_DT_INTERFACE;
	p[2] = (uint8_t)number;
	p[3] = (uint8_t)alt;
	p[4] = (uint8_t)num_eps;
	p[5] = ifc->cls;
	p[6] = ifc->subclass;
	p[7] = ifc->protocol;
	p[8] = 0;
	return 9;
}

static size_t put_endpoints(const struct emu_ep_spec *eps, unsigned num_eps, uint8_t *p)
{
	size_t n = 0;

	for (unsigned e = 0; e < num_eps; e++) {
		const struct emu_ep_spec *ep = &eps[e];

		p[n++] = 7;
		p[n++] = USB_DT_ENDPOINT;
		p[n++] = ep->address;
		/* Isochronous endpoints are asynchronous (bits 2-3 = 01), as webcams' are. */
		p[n++] = ep->type == 1 ? 0x05 : ep->type;
		put_le16(p + n, ep->max_packet);
		n += 2;
		p[n++] = ep->interval;
	}
	return n;
}

static size_t put_config(const struct emu_model *m, uint8_t *p)
{
	size_t n = 0;

	p[n++] = 9;
	p[n++] = USB_DT_CONFIG;
	put_le16(p + n, (uint16_t)config_len(m));
	n += 2;
	p[n++] = m->num_ifaces;
	p[n++] = 1;    /* bConfigurationValue */
	p[n++] = 0;    /* iConfiguration */
	p[n++] = 0x80; /* bus powered */
	p[n++] = 50;   /* 100 mA */
	for (unsigned i = 0; i < m->num_ifaces; i++) {
		const struct emu_iface_spec *ifc = &m->ifaces[i];

		if (ifc->pre_len > 0) {
			memcpy(p + n, ifc->pre, ifc->pre_len);
			n += ifc->pre_len;
		}
		n += put_iface(ifc, i, 0, ifc->num_eps, p + n);
		if (ifc->extra_len > 0) {
			memcpy(p + n, ifc->extra, ifc->extra_len);
			n += ifc->extra_len;
		}
		n += put_endpoints(ifc->eps, ifc->num_eps, p + n);
		for (unsigned a = 0; a < ifc->num_alts; a++) {
			n += put_iface(ifc, i, a + 1, ifc->alts[a].num_eps, p + n);
			n += put_endpoints(ifc->alts[a].eps, ifc->alts[a].num_eps, p + n);
		}
	}
	return n;
}

size_t emu_desc_build(const struct emu_model *m, uint8_t *buf, size_t cap)
{
	if (cap < EMU_DESC_DEVICE_LEN + config_len(m))
		return 0;
	return put_device(m, buf) + put_config(m, buf + EMU_DESC_DEVICE_LEN);
}

int emu_desc_string(const struct emu_dev *dev, uint8_t index, uint8_t *buf, size_t cap)
{
	const struct emu_model *m = dev->model;
	const char *s = NULL;
	size_t n;

	if (index == 0) {
		if (cap < 4)
			return -ENOSPC;
		buf[0] = 4;
		buf[1] = USB_DT_STRING;
		put_le16(buf + 2, 0x0409); /* English (US) */
		return 4;
	}
	if (index == STR_MANUFACTURER)
		s = m->manufacturer;
	else if (index == STR_PRODUCT)
		s = m->product;
	else if (index == STR_SERIAL)
		s = dev->serial;
	if (s == NULL)
		return -ENOENT;
	/* The strings are ASCII, so UTF-16LE is each byte and a zero. */
	n = strlen(s);
	if (n > 126)
		n = 126;
	if (cap < 2 + 2 * n)
		return -ENOSPC;
	buf[0] = (uint8_t)(2 + 2 * n);
	buf[1] = USB_DT_STRING;
	for (size_t i = 0; i < n; i++)
		put_le16(buf + 2 + 2 * i, (uint8_t)s[i]);
	return (int)(2 + 2 * n);
}

const struct emu_ep_spec *emu_model_alt_endpoint(const struct emu_model *m, unsigned iface, unsigned alt,
						 uint8_t ep)
{
	const struct emu_iface_spec *ifc;
	const struct emu_ep_spec *eps;
	unsigned num_eps;

	if (iface >= m->num_ifaces || alt > m->ifaces[iface].num_alts)
		return NULL;
	ifc = &m->ifaces[iface];
	eps = alt == 0 ? ifc->eps : ifc->alts[alt - 1].eps;
	num_eps = alt == 0 ? ifc->num_eps : ifc->alts[alt - 1].num_eps;
	for (unsigned e = 0; e < num_eps; e++)
		if (eps[e].address == ep)
			return &eps[e];
	return NULL;
}

const struct emu_ep_spec *emu_model_endpoint(const struct emu_model *m, uint8_t ep, int *iface)
{
	for (unsigned i = 0; i < m->num_ifaces; i++)
		for (unsigned a = 0; a <= m->ifaces[i].num_alts; a++) {
			const struct emu_ep_spec *e = emu_model_alt_endpoint(m, i, a, ep);

			if (e != NULL) {
				if (iface)
					*iface = (int)i;
				return e;
			}
		}
	return NULL;
}
