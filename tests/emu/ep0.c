/*
 * Endpoint 0.  Standard requests are answered here from the model's
 * descriptors, the way every device answers them, so that even a
 * misbehaving model enumerates; class and vendor requests, and
 * GET_DESCRIPTOR of class descriptors (a HID report descriptor), go to the
 * model.
 */
#include "emu.h"

#include <errno.h>
#include <string.h>

#include "proto.h"
#include "usbdesc.h"

enum std_request {
	REQ_GET_STATUS = 0x00,
	REQ_CLEAR_FEATURE = 0x01,
	REQ_SET_FEATURE = 0x03,
	REQ_GET_DESCRIPTOR = 0x06,
	REQ_GET_CONFIGURATION = 0x08,
	REQ_SET_CONFIGURATION = 0x09,
	REQ_GET_INTERFACE = 0x0a,
	REQ_SET_INTERFACE = 0x0b,
};

#define USB_DT_DEVICE_QUALIFIER 6
#define RECIP_DEVICE		0
#define RECIP_INTERFACE		1
#define RECIP_ENDPOINT		2
#define FEATURE_ENDPOINT_HALT	0

/* Copies min(n, room) bytes of a reply; returns the count. */
static int reply(uint8_t *data, uint16_t room, const void *src, size_t n)
{
	if (n > room)
		n = room;
	memcpy(data, src, n);
	return (int)n;
}

static int get_descriptor(struct emu_dev *dev, const struct emu_setup *s, uint8_t *data)
{
	uint8_t type = s->value >> 8, index = s->value & 0xff;
	uint8_t buf[256];
	int n;

	switch (type) {
	case USB_DT_DEVICE:
		return reply(data, s->length, dev->desc, EMU_DESC_DEVICE_LEN);
	case USB_DT_CONFIG:
		if (index != 0)
			return -EPIPE;
		return reply(data, s->length, dev->desc + EMU_DESC_DEVICE_LEN,
			     dev->desc_len - EMU_DESC_DEVICE_LEN);
	case USB_DT_STRING:
		n = emu_desc_string(dev, index, buf, sizeof(buf));
		return n < 0 ? -EPIPE : reply(data, s->length, buf, (size_t)n);
	case USB_DT_DEVICE_QUALIFIER:
		/* A high-speed device describes its full-speed self: same fields. */
		buf[0] = 10;
		buf[1] = USB_DT_DEVICE_QUALIFIER;
		memcpy(buf + 2, dev->desc + 2, 6); /* bcdUSB, class, subclass, protocol, bMaxPacketSize0 */
		buf[8] = 1;
		buf[9] = 0;
		return reply(data, s->length, buf, 10);
	}
	return -EPIPE;
}

static void clear_halt(struct emu_dev *dev, uint8_t ep)
{
	dev->halted &= ~emu_ep_bit(ep);
	if (dev->model->ops && dev->model->ops->clear_halt)
		dev->model->ops->clear_halt(dev, ep);
}

/* Returns bytes of IN data, 0, or -EPIPE for a stall. */
static int standard_request(struct emu_dev *dev, const struct emu_setup *s, uint8_t *data)
{
	uint8_t recip = s->request_type & 0x1f;
	uint8_t one = 1;
	uint8_t status[2] = {0, 0};

	switch (s->request) {
	case REQ_GET_STATUS:
		if (recip == RECIP_ENDPOINT && (dev->halted & emu_ep_bit(s->index & 0xff)))
			status[0] = 1;
		return reply(data, s->length, status, 2);
	case REQ_CLEAR_FEATURE:
		if (recip == RECIP_ENDPOINT && s->value == FEATURE_ENDPOINT_HALT)
			clear_halt(dev, s->index & 0xff);
		return 0;
	case REQ_SET_FEATURE:
		return 0;
	case REQ_GET_DESCRIPTOR:
		return get_descriptor(dev, s, data);
	case REQ_GET_CONFIGURATION:
		return reply(data, s->length, &one, 1);
	case REQ_SET_CONFIGURATION:
		return s->value <= 1 ? 0 : -EPIPE;
	case REQ_GET_INTERFACE:
		if (s->index >= dev->model->num_ifaces)
			return -EPIPE;
		return reply(data, s->length, &dev->alt[s->index], 1);
	case REQ_SET_INTERFACE:
		return emu_dev_set_alt(dev, s->index, s->value) == 0 ? 0 : -EPIPE;
	}
	return -EPIPE;
}

void emu_ep0_submit(struct emu_dev *dev, struct emu_urb *urb)
{
	const struct emu_setup *s = &urb->setup;
	bool standard = ((s->request_type >> 5) & 3) == 0;
	uint8_t dtype = s->value >> 8;
	int r;

	/*
	 * Class descriptors (HID 0x21, Report 0x22) and any descriptor asked of
	 * an interface only the model knows.
	 */
	if (standard && s->request == REQ_GET_DESCRIPTOR &&
	    ((s->request_type & 0x1f) == RECIP_INTERFACE || dtype == 0x21 || dtype == 0x22))
		standard = false;

	emu_log("%s: control %02x %02x wValue %04x wIndex %04x wLength %u%s", dev->sysname, s->request_type,
		s->request, s->value, s->index, s->length, standard ? " (standard)" : "");
	if (standard)
		r = standard_request(dev, s, urb->data);
	else if (dev->model->ops && dev->model->ops->control)
		r = dev->model->ops->control(dev, urb, s, urb->data);
	else
		r = -EPIPE;
	if (r == EMU_PENDING)
		return;
	if (r < 0)
		emu_urb_complete(urb, r, 0);
	else
		emu_urb_complete(urb, 0, (uint32_t)r);
}

/* Used by usbfs.c for the CLEAR_HALT ioctl, which the kernel turns into CLEAR_FEATURE. */
void emu_ep0_clear_halt(struct emu_dev *dev, uint8_t ep)
{
	clear_halt(dev, ep);
}
