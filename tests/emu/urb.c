/*
 * The life of a transfer: submitted (on dev->pending), completed by the
 * model (moved to its connection's done queue, or answered at once for the
 * synchronous ioctls), reaped, freed.  Cancelled URBs leave pending without
 * a result; the caller decides what the client sees.
 */
#include "usbfs.h"

#include <errno.h>
#include <stdlib.h>

#include <linux/usbdevice_fs.h>

#include "util.h"

static const char *urb_type_name(uint8_t type)
{
	switch (type) {
	case USBDEVFS_URB_TYPE_ISO:
		return "iso";
	case USBDEVFS_URB_TYPE_INTERRUPT:
		return "interrupt";
	case USBDEVFS_URB_TYPE_CONTROL:
		return "control";
	case USBDEVFS_URB_TYPE_BULK:
		return "bulk";
	}
	return "?";
}

static void urb_stop_timer(struct emu_urb *urb)
{
	if (urb->timeout != NULL) {
		g_source_destroy(urb->timeout);
		g_source_unref(urb->timeout);
		urb->timeout = NULL;
	}
}

void emu_urb_complete(struct emu_urb *urb, int status, uint32_t actual)
{
	struct emu_dev *dev = urb->dev;
	struct emu_conn *c = urb->conn;

	g_queue_remove(&dev->pending, urb);
	urb_stop_timer(urb);
	if (actual > urb->length)
		actual = urb->length;
	/* The kernel's USBDEVFS_URB_SHORT_NOT_OK: a short IN is an error. */
	if (status == 0 && (urb->flags & USBDEVFS_URB_SHORT_NOT_OK) && (urb->endpoint & 0x80) &&
	    actual < urb->length)
		status = -EREMOTEIO;
	urb->status = status;
	urb->actual = actual;
	if (status == -EPIPE && urb->type != USBDEVFS_URB_TYPE_CONTROL)
		dev->halted |= emu_ep_bit(urb->endpoint);
	emu_log("%s: %s ep %02x done: status %d, %u of %u bytes, %llu us", dev->sysname,
		urb_type_name(urb->type), urb->endpoint, status, actual, urb->length,
		(unsigned long long)(now_us() - urb->submitted_us));
	if (urb->sync_client != NULL) {
		emu_usbfs_finish_sync(urb);
		emu_urb_free(urb);
		return;
	}
	g_queue_push_tail(&c->done, urb);
	if (c->reap_waiting)
		emu_usbfs_reap_waiting(c);
}

struct emu_urb *emu_urb_first_pending(struct emu_dev *dev, uint8_t ep)
{
	for (GList *l = dev->pending.head; l != NULL; l = l->next) {
		struct emu_urb *urb = l->data;

		if (urb->endpoint == ep && urb->type != USBDEVFS_URB_TYPE_CONTROL)
			return urb;
	}
	return NULL;
}

void emu_urb_cancel(struct emu_urb *urb)
{
	struct emu_dev *dev = urb->dev;

	g_queue_remove(&dev->pending, urb);
	urb_stop_timer(urb);
	if (dev->model->ops && dev->model->ops->cancelled)
		dev->model->ops->cancelled(dev, urb);
}

void emu_urb_free(struct emu_urb *urb)
{
	if (urb == NULL)
		return;
	urb_stop_timer(urb);
	if (urb->buf_data != NULL)
		umockdev_ioctl_data_unref(urb->buf_data);
	if (urb->urb_data != NULL)
		umockdev_ioctl_data_unref(urb->urb_data);
	if (urb->sync_client != NULL)
		g_object_unref(urb->sync_client);
	free(urb);
}
