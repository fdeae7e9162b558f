/*
 * One emulated device: a model, where it sits on the bus, and the state
 * the usbfs layer keeps for it.
 */
#include "emu.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <linux/usbdevice_fs.h>

struct emu_dev *emu_dev_new(const struct emu_model *m, unsigned busnum, unsigned devnum, unsigned port,
			    unsigned copy)
{
	struct emu_dev *dev = calloc(1, sizeof(*dev));

	if (dev == NULL)
		return NULL;
	dev->model = m;
	dev->busnum = busnum;
	dev->devnum = devnum;
	dev->port = port;
	snprintf(dev->devnode, sizeof(dev->devnode), "/dev/bus/usb/%03u/%03u", busnum, devnum);
	/* Root hubs are usbN; devices on a root port are N-P. */
	if (port == 0)
		snprintf(dev->sysname, sizeof(dev->sysname), "usb%u", busnum);
	else
		snprintf(dev->sysname, sizeof(dev->sysname), "%u-%u", busnum, port);
	dev->serial = m->serial;
	/* Copies of one model are different units of one product, as a bus full of them would be. */
	if (m->serial != NULL && copy > 0) {
		snprintf(dev->serial_buf, sizeof(dev->serial_buf), "%s-%u", m->serial, copy);
		dev->serial = dev->serial_buf;
	}
	dev->desc_len = emu_desc_build(m, dev->desc, sizeof(dev->desc));
	for (unsigned i = 0; i < m->num_ifaces; i++)
		dev->kernel_driver[i] = m->ifaces[i].kernel_driver;
	g_queue_init(&dev->pending);
	if (dev->desc_len == 0 || (m->ops && m->ops->init && m->ops->init(dev) < 0)) {
		free(dev);
		return NULL;
	}
	return dev;
}

void emu_dev_free(struct emu_dev *dev)
{
	struct emu_urb *urb;

	if (dev == NULL)
		return;
	while ((urb = g_queue_peek_head(&dev->pending)) != NULL) {
		emu_urb_cancel(urb);
		emu_urb_free(urb);
	}
	if (dev->model->ops && dev->model->ops->fini)
		dev->model->ops->fini(dev);
	if (dev->handler != NULL)
		g_object_unref(dev->handler);
	free(dev);
}

int emu_dev_set_alt(struct emu_dev *dev, unsigned ifnum, unsigned alt)
{
	bool again = true;

	if (ifnum >= dev->model->num_ifaces || alt > dev->model->ifaces[ifnum].num_alts)
		return -EINVAL;
	while (again) {
		again = false;
		for (GList *l = dev->pending.head; l != NULL; l = l->next) {
			struct emu_urb *urb = l->data;
			int owner = -1;

			if (urb->type == USBDEVFS_URB_TYPE_CONTROL ||
			    emu_model_endpoint(dev->model, urb->endpoint, &owner) == NULL ||
			    owner != (int)ifnum)
				continue;
			emu_urb_cancel(urb);
			emu_urb_complete(urb, -ESHUTDOWN, 0);
			again = true;
			break;
		}
	}
	dev->alt[ifnum] = (uint8_t)alt;
	emu_log("%s: interface %u: altsetting %u", dev->sysname, ifnum, alt);
	if (dev->model->ops && dev->model->ops->set_alt)
		dev->model->ops->set_alt(dev, (uint8_t)ifnum, (uint8_t)alt);
	return 0;
}
