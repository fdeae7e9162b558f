/*
 * The usbfs ioctls of one emulated device node, as Linux answers them and
 * as libusb 1.0.26 calls them (open/wrap, claim, async transfers, cancel,
 * detach).  umockdev hands each ioctl, read() and write() on the node to
 * the handlers below, in its worker thread; a handler either answers at
 * once or parks the ioctl (blocking REAPURB, USBDEVFS_BULK/CONTROL) and
 * answers it when an URB completes.
 *
 * Client memory is reached through UMockdevIoctlData: resolving a pointer
 * copies the client's bytes here, and everything resolved is written back
 * when the ioctl completes.  An URB keeps the copies made at SUBMITURB
 * until REAPURB hands the struct back, so IN data and the result reach the
 * client's own urb and buffer, as with the kernel.
 */
#include "usbfs.h"

#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <sys/ioctl.h>
#include <linux/usbdevice_fs.h>

#include "proto.h"
#include "util.h"

#define CONN_KEY "plugfs-emu-conn"
/* A handler's "the ioctl is answered later". */
#define DEFERRED INT_MIN
/* USB_SPEED_HIGH in the kernel's enum usb_device_speed, what GET_SPEED returns. */
#define EMU_SPEED_HIGH 3
/* What an xHCI host on a current kernel reports; SCATTER_GATHER makes libusb send one URB per transfer. */
#define EMU_CAPS                                                                                             \
	(USBDEVFS_CAP_ZERO_PACKET | USBDEVFS_CAP_BULK_CONTINUATION | USBDEVFS_CAP_NO_PACKET_SIZE_LIM |       \
	 USBDEVFS_CAP_BULK_SCATTER_GATHER | USBDEVFS_CAP_REAP_AFTER_DISCONNECT |                             \
	 USBDEVFS_CAP_DROP_PRIVILEGES)

/* ---- connections ---- */

/*
 * Lets an interface go.  As the kernel's usb_unbind_interface(), an
 * interface left in another altsetting goes back to 0 (a webcam stops
 * streaming when the process that streamed dies).
 */
static void release(struct emu_dev *dev, unsigned ifnum)
{
	dev->claimed_by[ifnum] = NULL;
	if (!dev->gone && dev->alt[ifnum] != 0)
		emu_dev_set_alt(dev, ifnum, 0);
}

/* Drops everything a client left behind: its URBs, its claims. */
static void conn_free(gpointer p)
{
	struct emu_conn *c = p;
	struct emu_dev *dev = c->dev;
	struct emu_urb *urb;
	bool again = true;

	while (again) {
		again = false;
		for (GList *l = dev->pending.head; l != NULL; l = l->next) {
			urb = l->data;
			if (urb->conn == c) {
				emu_urb_cancel(urb);
				emu_urb_free(urb);
				again = true;
				break;
			}
		}
	}
	while ((urb = g_queue_pop_head(&c->done)) != NULL)
		emu_urb_free(urb);
	for (unsigned i = 0; i < EMU_MAX_IFACES; i++)
		if (dev->claimed_by[i] == c)
			release(dev, i);
	emu_log("%s: client closed", dev->sysname);
	/* The client went away inside a blocking REAPURB: drop the reference parking took. */
	if (c->reap_waiting)
		g_object_unref(c->client);
	free(c);
}

static void on_client_notify(GObject *obj, GParamSpec *pspec, gpointer user)
{
	(void)pspec;
	(void)user;
	if (!umockdev_ioctl_client_get_connected(UMOCKDEV_IOCTL_CLIENT(obj)))
		g_object_set_data(obj, CONN_KEY, NULL);
}

static struct emu_conn *conn_of(struct emu_dev *dev, UMockdevIoctlClient *client)
{
	struct emu_conn *c = g_object_get_data(G_OBJECT(client), CONN_KEY);

	if (c != NULL)
		return c;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->dev = dev;
	c->client = client;
	g_queue_init(&c->done);
	g_object_set_data_full(G_OBJECT(client), CONN_KEY, c, conn_free);
	g_signal_connect(client, "notify::connected", G_CALLBACK(on_client_notify), NULL);
	emu_log("%s: client opened %s", dev->sysname, dev->devnode);
	return c;
}

/* ---- client memory ---- */

static UMockdevIoctlData *resolve(UMockdevIoctlData *d, size_t off, size_t len, int *err)
{
	GError *e = NULL;
	UMockdevIoctlData *r = umockdev_ioctl_data_resolve(d, off, len, &e);

	if (e != NULL) {
		emu_err("cannot reach client memory: %s", e->message);
		g_error_free(e);
		if (r != NULL)
			umockdev_ioctl_data_unref(r);
		r = NULL;
	}
	if (r == NULL)
		*err = -EFAULT;
	return r;
}

static int read_uint(UMockdevIoctlData *arg, unsigned *v)
{
	int err = 0;
	UMockdevIoctlData *d = resolve(arg, 0, sizeof(*v), &err);

	if (d == NULL)
		return err;
	memcpy(v, d->data, sizeof(*v));
	umockdev_ioctl_data_unref(d);
	return 0;
}

/* ---- interfaces ---- */

static int claim(struct emu_conn *c, unsigned ifnum)
{
	struct emu_dev *dev = c->dev;

	if (ifnum >= dev->model->num_ifaces)
		return -ENOENT;
	if (dev->claimed_by[ifnum] == c)
		return 0;
	if (dev->claimed_by[ifnum] != NULL || dev->kernel_driver[ifnum] != NULL)
		return -EBUSY;
	dev->claimed_by[ifnum] = c;
	return 0;
}

/* Unbinds the kernel driver of `ifnum`, as USBDEVFS_DISCONNECT does. */
static int kernel_unbind(struct emu_dev *dev, unsigned ifnum)
{
	if (ifnum >= dev->model->num_ifaces)
		return -EINVAL;
	if (dev->kernel_driver[ifnum] == NULL)
		return -ENODATA;
	emu_log("%s: interface %u: kernel driver %s detached", dev->sysname, ifnum,
		dev->kernel_driver[ifnum]);
	dev->kernel_driver[ifnum] = NULL;
	return 0;
}

static int do_claim(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	unsigned ifnum = 0;
	int r = read_uint(arg, &ifnum);

	(void)client;
	return r < 0 ? r : claim(c, ifnum);
}

static int do_release(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	unsigned ifnum = 0;
	int r = read_uint(arg, &ifnum);

	(void)client;
	if (r < 0)
		return r;
	if (ifnum >= EMU_MAX_IFACES || c->dev->claimed_by[ifnum] != c)
		return -EINVAL;
	release(c->dev, ifnum);
	return 0;
}

static int do_disconnect_claim(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	struct usbdevfs_disconnect_claim dc;
	struct emu_dev *dev = c->dev;
	UMockdevIoctlData *d;
	const char *bound;
	int err = 0;

	(void)client;
	if ((d = resolve(arg, 0, sizeof(dc), &err)) == NULL)
		return err;
	memcpy(&dc, d->data, sizeof(dc));
	umockdev_ioctl_data_unref(d);
	dc.driver[sizeof(dc.driver) - 1] = '\0';
	if (dc.interface >= dev->model->num_ifaces)
		return -EINVAL;
	bound = dev->kernel_driver[dc.interface];
	if (bound != NULL) {
		bool same = strcmp(bound, dc.driver) == 0;

		if ((dc.flags & USBDEVFS_DISCONNECT_CLAIM_IF_DRIVER) && !same)
			return -EBUSY;
		if ((dc.flags & USBDEVFS_DISCONNECT_CLAIM_EXCEPT_DRIVER) && same)
			return -EBUSY;
		kernel_unbind(dev, dc.interface);
	}
	return claim(c, dc.interface);
}

static int do_getdriver(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	struct usbdevfs_getdriver gd;
	struct emu_dev *dev = c->dev;
	UMockdevIoctlData *d;
	const char *name;
	int err = 0;

	(void)client;
	if ((d = resolve(arg, 0, sizeof(gd), &err)) == NULL)
		return err;
	memcpy(&gd, d->data, sizeof(gd));
	if (gd.interface >= dev->model->num_ifaces) {
		umockdev_ioctl_data_unref(d);
		return -EINVAL;
	}
	/* A claimed interface is bound to the kernel's usbfs driver; libusb relies on the name. */
	name = dev->claimed_by[gd.interface] != NULL ? "usbfs" : dev->kernel_driver[gd.interface];
	if (name == NULL) {
		umockdev_ioctl_data_unref(d);
		return -ENODATA;
	}
	memset(gd.driver, 0, sizeof(gd.driver));
	strncpy(gd.driver, name, sizeof(gd.driver) - 1);
	memcpy(d->data, &gd, sizeof(gd));
	umockdev_ioctl_data_unref(d);
	return 0;
}

/* USBDEVFS_IOCTL: only the two requests usbfs itself handles, DISCONNECT and CONNECT. */
static int do_ioctl(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	struct usbdevfs_ioctl io;
	struct emu_dev *dev = c->dev;
	UMockdevIoctlData *d;
	int err = 0;

	(void)client;
	if ((d = resolve(arg, 0, sizeof(io), &err)) == NULL)
		return err;
	memcpy(&io, d->data, sizeof(io));
	umockdev_ioctl_data_unref(d);
	if (io.ifno < 0 || (unsigned)io.ifno >= dev->model->num_ifaces)
		return -EINVAL;
	if (io.ioctl_code == (int)USBDEVFS_DISCONNECT)
		return kernel_unbind(dev, (unsigned)io.ifno);
	if (io.ioctl_code == (int)USBDEVFS_CONNECT) {
		const char *drv = dev->model->ifaces[io.ifno].kernel_driver;

		/* As the kernel's device_attach(): 1 when a driver bound, 0 when none wants it. */
		if (dev->claimed_by[io.ifno] != NULL || dev->kernel_driver[io.ifno] != NULL)
			return -EBUSY;
		if (drv == NULL)
			return 0;
		dev->kernel_driver[io.ifno] = drv;
		emu_log("%s: interface %d: kernel driver %s attached", dev->sysname, io.ifno, drv);
		return 1;
	}
	return -ENOTTY;
}

static int do_setinterface(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	struct usbdevfs_setinterface si;
	UMockdevIoctlData *d;
	int err = 0;

	(void)client;
	if ((d = resolve(arg, 0, sizeof(si), &err)) == NULL)
		return err;
	memcpy(&si, d->data, sizeof(si));
	umockdev_ioctl_data_unref(d);
	return emu_dev_set_alt(c->dev, si.interface, si.altsetting);
}

static int do_setconfiguration(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	unsigned v = 0;
	int r = read_uint(arg, &v);

	(void)c;
	(void)client;
	if (r < 0)
		return r;
	/* 1 is the only configuration; -1 and 0 unconfigure, which we accept and ignore. */
	return v == 1 || v == 0 || v == UINT_MAX ? 0 : -EINVAL;
}

static int do_clear_halt(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	unsigned ep = 0;
	int r = read_uint(arg, &ep);

	(void)client;
	if (r < 0)
		return r;
	if (emu_model_endpoint(c->dev->model, (uint8_t)ep, NULL) == NULL)
		return -ENOENT;
	emu_ep0_clear_halt(c->dev, (uint8_t)ep);
	return 0;
}

/* ---- simple answers ---- */

static int do_get_capabilities(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	uint32_t caps = EMU_CAPS;
	UMockdevIoctlData *d;
	int err = 0;

	(void)c;
	(void)client;
	if ((d = resolve(arg, 0, sizeof(caps), &err)) == NULL)
		return err;
	memcpy(d->data, &caps, sizeof(caps));
	umockdev_ioctl_data_unref(d);
	return 0;
}

static int do_connectinfo(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	struct usbdevfs_connectinfo ci = {.devnum = c->dev->devnum, .slow = 0};
	UMockdevIoctlData *d;
	int err = 0;

	(void)client;
	if ((d = resolve(arg, 0, sizeof(ci), &err)) == NULL)
		return err;
	memcpy(d->data, &ci, sizeof(ci));
	umockdev_ioctl_data_unref(d);
	return 0;
}

static int do_get_speed(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	(void)c;
	(void)client;
	(void)arg;
	return EMU_SPEED_HIGH;
}

/* RESET, RESETEP, DROP_PRIVILEGES: nothing to emulate, but they must succeed. */
static int do_nothing(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	(void)c;
	(void)client;
	(void)arg;
	return 0;
}

/* ---- transfers ---- */

/*
 * Checks an URB whose type, endpoint, data and length are filled in,
 * queues it and gives it to ep0 or the model.  On success the URB may
 * already be completed (and, if synchronous, freed): do not touch it.
 */
static int urb_start(struct emu_conn *c, struct emu_urb *urb)
{
	struct emu_dev *dev = c->dev;
	const struct emu_model_ops *ops = dev->model->ops;

	if (urb->type == USBDEVFS_URB_TYPE_CONTROL) {
		urb->endpoint = 0;
	} else {
		const struct emu_ep_spec *ep;
		int ifnum, r;

		if (emu_model_endpoint(dev->model, urb->endpoint, &ifnum) == NULL)
			return -ENOENT;
		/* As usbfs: only the endpoints of the interface's current altsetting exist. */
		ep = emu_model_alt_endpoint(dev->model, (unsigned)ifnum, dev->alt[ifnum], urb->endpoint);
		if (ep == NULL)
			return -ENOENT;
		if ((urb->type == USBDEVFS_URB_TYPE_ISO) != (ep->type == 1))
			return -EINVAL;
		/* Like the kernel, a transfer on an unclaimed interface claims it. */
		if ((r = claim(c, (unsigned)ifnum)) < 0)
			return r;
	}
	if (urb->length > 0 && urb->data == NULL)
		return -EFAULT;
	urb->dev = dev;
	urb->conn = c;
	urb->submitted_us = now_us();
	g_queue_push_tail(&dev->pending, urb);
	if (urb->type == USBDEVFS_URB_TYPE_CONTROL)
		emu_ep0_submit(dev, urb);
	else if (ops != NULL && ops->submit != NULL)
		ops->submit(dev, urb);
	return 0;
}

static void setup_decode(struct emu_setup *s, const uint8_t *p)
{
	s->request_type = p[0];
	s->request = p[1];
	s->value = get_le16(p + 2);
	s->index = get_le16(p + 4);
	s->length = get_le16(p + 6);
}

/* Packets per isochronous URB: usbfs refuses more. */
#define EMU_MAX_ISO_PACKETS 128

_Static_assert(sizeof(struct emu_iso_packet) == sizeof(struct usbdevfs_iso_packet_desc),
	       "emu_iso_packet mirrors usbdevfs_iso_packet_desc");

/*
 * An isochronous URB carries its packet descriptors right after struct
 * usbdevfs_urb, and only number_of_packets, inside the struct, says how
 * many.  umockdev resolves a pointer once, with the length asked the first
 * time, so the copy of the struct is grown in place and loaded again from
 * the client: it then holds the descriptors too, and writes them back
 * with the struct at reap.  0 or -errno.
 */
static int resolve_iso(struct emu_urb *urb)
{
	UMockdevIoctlData *d = urb->urb_data;
	struct usbdevfs_urb *u = (struct usbdevfs_urb *)d->data;
	GError *e = NULL;
	size_t len;

	if (u->number_of_packets <= 0 || u->number_of_packets > EMU_MAX_ISO_PACKETS)
		return -EINVAL;
	len = sizeof(*u) + (size_t)u->number_of_packets * sizeof(struct usbdevfs_iso_packet_desc);
	d->data = g_realloc(d->data, len);
	d->data_len = (gint)len;
	if (!umockdev_ioctl_data_reload(d, &e)) {
		emu_err("cannot reach an isochronous URB's packets: %s", e != NULL ? e->message : "?");
		if (e != NULL)
			g_error_free(e);
		return -EFAULT;
	}
	u = (struct usbdevfs_urb *)d->data;
	if ((size_t)u->number_of_packets * sizeof(struct usbdevfs_iso_packet_desc) != len - sizeof(*u))
		return -EINVAL;
	urb->num_iso = (unsigned)u->number_of_packets;
	urb->iso = (struct emu_iso_packet *)(void *)u->iso_frame_desc;
	/* As usbfs: the packets must fit the buffer, one after the other. */
	len = 0;
	for (unsigned i = 0; i < urb->num_iso; i++) {
		urb->iso[i].actual = 0;
		urb->iso[i].status = 0;
		len += urb->iso[i].length;
	}
	return len > (size_t)u->buffer_length ? -EINVAL : 0;
}

static int do_submiturb(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	struct usbdevfs_urb *u;
	struct emu_urb *urb;
	int err = 0;

	(void)client;
	if ((urb = calloc(1, sizeof(*urb))) == NULL)
		return -ENOMEM;
	if ((urb->urb_data = resolve(arg, 0, sizeof(*u), &err)) == NULL)
		goto fail;
	u = (struct usbdevfs_urb *)urb->urb_data->data;
	if (u->type == USBDEVFS_URB_TYPE_ISO) {
		if ((err = resolve_iso(urb)) < 0)
			goto fail;
		u = (struct usbdevfs_urb *)urb->urb_data->data;
	}
	if (u->buffer_length < 0) {
		err = -EINVAL;
		goto fail;
	}
	if (u->buffer_length > 0 &&
	    (urb->buf_data = resolve(urb->urb_data, offsetof(struct usbdevfs_urb, buffer),
				     (size_t)u->buffer_length, &err)) == NULL)
		goto fail;
	urb->client_addr = urb->urb_data->client_addr;
	urb->type = u->type;
	urb->endpoint = u->endpoint;
	urb->flags = u->flags;
	urb->data = urb->buf_data ? urb->buf_data->data : NULL;
	urb->length = (uint32_t)u->buffer_length;
	if (urb->type == USBDEVFS_URB_TYPE_CONTROL) {
		/* The setup packet leads the buffer; the data stage follows it. */
		if (urb->length < 8) {
			err = -EINVAL;
			goto fail;
		}
		setup_decode(&urb->setup, urb->data);
		if (8u + urb->setup.length > urb->length) {
			err = -EINVAL;
			goto fail;
		}
		urb->data += 8;
		urb->length = urb->setup.length;
	}
	emu_log("%s: SUBMITURB %s ep %02x len %u", c->dev->sysname,
		urb->type == USBDEVFS_URB_TYPE_CONTROL ? "control"
		: urb->type == USBDEVFS_URB_TYPE_BULK  ? "bulk"
		: urb->type == USBDEVFS_URB_TYPE_ISO   ? "iso"
						       : "interrupt",
		urb->endpoint, urb->length);
	if ((err = urb_start(c, urb)) < 0)
		goto fail;
	return 0;
fail:
	emu_log("%s: SUBMITURB failed: %s", c->dev->sysname, g_strerror(-err));
	emu_urb_free(urb);
	return err;
}

/* Hands the oldest completed URB back through the REAPURB argument. */
static int reap_one(struct emu_conn *c, UMockdevIoctlClient *client)
{
	UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
	struct emu_urb *urb = g_queue_pop_head(&c->done);
	struct usbdevfs_urb *u = (struct usbdevfs_urb *)urb->urb_data->data;
	UMockdevIoctlData *ptr;
	int err = 0;

	u->status = urb->status;
	u->actual_length = (int)urb->actual;
	u->error_count = 0;
	for (unsigned i = 0; i < urb->num_iso; i++)
		if (urb->iso[i].status != 0)
			u->error_count++;
	if ((ptr = resolve(arg, 0, sizeof(void *), &err)) == NULL) {
		emu_urb_free(urb);
		return err;
	}
	/* The client's `void *` now points at its own urb, written back on completion. */
	umockdev_ioctl_data_set_ptr(ptr, 0, urb->urb_data);
	umockdev_ioctl_data_unref(ptr);
	emu_log("%s: REAPURB ep %02x status %d actual %u", c->dev->sysname, urb->endpoint, urb->status,
		urb->actual);
	emu_urb_free(urb);
	return 0;
}

static int do_reapurbndelay(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	(void)arg;
	/* The node always polls ready, so libusb asks in a loop: EAGAIN is the common answer. */
	if (g_queue_is_empty(&c->done))
		return -EAGAIN;
	return reap_one(c, client);
}

static int do_reapurb(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	(void)arg;
	if (!g_queue_is_empty(&c->done))
		return reap_one(c, client);
	/*
	 * umockdev keeps a client alive only while one of its own coroutines
	 * runs; an ioctl answered later needs a reference until then.
	 */
	g_object_ref(client);
	c->reap_waiting = true;
	return DEFERRED;
}

void emu_usbfs_reap_waiting(struct emu_conn *c)
{

	UMockdevIoctlClient *client = c->client;
	int r;

	c->reap_waiting = false;
	r = reap_one(c, client);
	umockdev_ioctl_client_complete(client, r < 0 ? -1 : 0, r < 0 ? -r : 0);
	g_object_unref(client);
}

static int do_discardurb(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	gulong addr;

	(void)client;
	/* The argument is the urb pointer itself, not a pointer to it. */
	memcpy(&addr, arg->data, sizeof(addr));
	for (GList *l = c->dev->pending.head; l != NULL; l = l->next) {
		struct emu_urb *urb = l->data;

		if (urb->conn == c && urb->sync_client == NULL && urb->client_addr == addr) {
			emu_log("%s: DISCARDURB ep %02x", c->dev->sysname, urb->endpoint);
			emu_urb_cancel(urb);
			emu_urb_complete(urb, -ENOENT, urb->actual);
			return 0;
		}
	}
	/* Already completed (or never ours): the kernel says EINVAL and libusb copes. */
	return -EINVAL;
}

static gboolean on_sync_timeout(gpointer p)
{
	struct emu_urb *urb = p;
	GSource *src = urb->timeout;

	urb->timeout = NULL;
	emu_urb_cancel(urb);
	emu_log("%s: ep %02x synchronous transfer timed out", urb->dev->sysname, urb->endpoint);
	umockdev_ioctl_client_complete(urb->sync_client, -1, ETIMEDOUT);
	emu_urb_free(urb);
	g_source_unref(src);
	return G_SOURCE_REMOVE;
}

/* Starts a synchronous URB; it answers its ioctl itself, now or later. */
static int sync_start(struct emu_conn *c, UMockdevIoctlClient *client, struct emu_urb *urb,
		      unsigned timeout_ms)
{
	int r;

	urb->sync_client = g_object_ref(client);
	/* Armed first: the URB may complete and be freed inside urb_start(). */
	if (timeout_ms > 0) {
		urb->timeout = g_timeout_source_new(timeout_ms);
		g_source_set_callback(urb->timeout, on_sync_timeout, urb, NULL);
		g_source_attach(urb->timeout, g_main_context_get_thread_default());
	}
	if ((r = urb_start(c, urb)) < 0) {
		emu_urb_free(urb);
		return r;
	}
	return DEFERRED;
}

void emu_usbfs_finish_sync(struct emu_urb *urb)
{
	if (urb->status == 0)
		umockdev_ioctl_client_complete(urb->sync_client, (glong)urb->actual, 0);
	else
		umockdev_ioctl_client_complete(urb->sync_client, -1, -urb->status);
}

static int do_bulk(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	struct usbdevfs_bulktransfer *bt;
	const struct emu_ep_spec *ep;
	struct emu_urb *urb;
	int err = 0;

	if ((urb = calloc(1, sizeof(*urb))) == NULL)
		return -ENOMEM;
	if ((urb->urb_data = resolve(arg, 0, sizeof(*bt), &err)) == NULL)
		goto fail;
	bt = (struct usbdevfs_bulktransfer *)urb->urb_data->data;
	if (bt->len > 0 &&
	    (urb->buf_data =
		 resolve(urb->urb_data, offsetof(struct usbdevfs_bulktransfer, data), bt->len, &err)) == NULL)
		goto fail;
	urb->endpoint = bt->ep & 0xff;
	ep = emu_model_endpoint(c->dev->model, urb->endpoint, NULL);
	urb->type = ep != NULL && ep->type == 3 ? USBDEVFS_URB_TYPE_INTERRUPT : USBDEVFS_URB_TYPE_BULK;
	urb->data = urb->buf_data ? urb->buf_data->data : NULL;
	urb->length = bt->len;
	emu_log("%s: BULK ep %02x len %u timeout %u", c->dev->sysname, urb->endpoint, urb->length,
		bt->timeout);
	return sync_start(c, client, urb, bt->timeout);
fail:
	emu_urb_free(urb);
	return err;
}

static int do_control(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg)
{
	struct usbdevfs_ctrltransfer *ct;
	struct emu_urb *urb;
	int err = 0;

	if ((urb = calloc(1, sizeof(*urb))) == NULL)
		return -ENOMEM;
	if ((urb->urb_data = resolve(arg, 0, sizeof(*ct), &err)) == NULL)
		goto fail;
	ct = (struct usbdevfs_ctrltransfer *)urb->urb_data->data;
	if (ct->wLength > 0 &&
	    (urb->buf_data = resolve(urb->urb_data, offsetof(struct usbdevfs_ctrltransfer, data), ct->wLength,
				     &err)) == NULL)
		goto fail;
	urb->type = USBDEVFS_URB_TYPE_CONTROL;
	urb->setup = (struct emu_setup){ct->bRequestType, ct->bRequest, ct->wValue, ct->wIndex, ct->wLength};
	urb->data = urb->buf_data ? urb->buf_data->data : NULL;
	urb->length = ct->wLength;
	return sync_start(c, client, urb, ct->timeout);
fail:
	emu_urb_free(urb);
	return err;
}

/* ---- dispatch ---- */

typedef int (*ioctl_fn)(struct emu_conn *c, UMockdevIoctlClient *client, UMockdevIoctlData *arg);

static const struct {
	unsigned long request;
	const char *name;
	ioctl_fn fn;
	bool quiet; /* not logged: called in a busy loop */
} ioctl_ops[] = {
    {USBDEVFS_CONTROL, "CONTROL", do_control, false},
    {USBDEVFS_BULK, "BULK", do_bulk, false},
    {USBDEVFS_RESETEP, "RESETEP", do_nothing, false},
    {USBDEVFS_SETINTERFACE, "SETINTERFACE", do_setinterface, false},
    {USBDEVFS_SETCONFIGURATION, "SETCONFIGURATION", do_setconfiguration, false},
    {USBDEVFS_GETDRIVER, "GETDRIVER", do_getdriver, false},
    {USBDEVFS_SUBMITURB, "SUBMITURB", do_submiturb, true},
    {USBDEVFS_DISCARDURB, "DISCARDURB", do_discardurb, false},
    {USBDEVFS_REAPURB, "REAPURB", do_reapurb, true},
    {USBDEVFS_REAPURBNDELAY, "REAPURBNDELAY", do_reapurbndelay, true},
    {USBDEVFS_CLAIMINTERFACE, "CLAIMINTERFACE", do_claim, false},
    {USBDEVFS_RELEASEINTERFACE, "RELEASEINTERFACE", do_release, false},
    {USBDEVFS_CONNECTINFO, "CONNECTINFO", do_connectinfo, false},
    {USBDEVFS_IOCTL, "IOCTL", do_ioctl, false},
    {USBDEVFS_RESET, "RESET", do_nothing, false},
    {USBDEVFS_CLEAR_HALT, "CLEAR_HALT", do_clear_halt, false},
    {USBDEVFS_GET_CAPABILITIES, "GET_CAPABILITIES", do_get_capabilities, false},
    {USBDEVFS_DISCONNECT_CLAIM, "DISCONNECT_CLAIM", do_disconnect_claim, false},
    {USBDEVFS_DROP_PRIVILEGES, "DROP_PRIVILEGES", do_nothing, false},
    {USBDEVFS_GET_SPEED, "GET_SPEED", do_get_speed, false},
};

static gboolean on_ioctl(UMockdevIoctlBase *handler, UMockdevIoctlClient *client, gpointer user)
{
	struct emu_dev *dev = user;
	unsigned long request = umockdev_ioctl_client_get_request(client);
	UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
	struct emu_conn *c = conn_of(dev, client);
	int r;

	(void)handler;
	if (c == NULL) {
		umockdev_ioctl_client_complete(client, -1, ENOMEM);
		return TRUE;
	}
	/* After a disconnect usbfs answers ENODEV, but still hands back the URBs it failed. */
	if (dev->gone && !((request == USBDEVFS_REAPURB || request == USBDEVFS_REAPURBNDELAY) &&
			   !g_queue_is_empty(&c->done))) {
		umockdev_ioctl_client_complete(client, -1, ENODEV);
		return TRUE;
	}
	for (size_t i = 0; i < G_N_ELEMENTS(ioctl_ops); i++) {
		if (ioctl_ops[i].request != request)
			continue;
		r = ioctl_ops[i].fn(c, client, arg);
		if (r == DEFERRED)
			return TRUE;
		if (!ioctl_ops[i].quiet || (r < 0 && r != -EAGAIN))
			emu_log("%s: %s -> %s", dev->sysname, ioctl_ops[i].name,
				r < 0 ? g_strerror(-r) : "ok");
		umockdev_ioctl_client_complete(client, r < 0 ? -1 : r, r < 0 ? -r : 0);
		return TRUE;
	}
	emu_log("%s: unknown ioctl 0x%lx -> ENOTTY", dev->sysname, request);
	umockdev_ioctl_client_complete(client, -1, ENOTTY);
	return TRUE;
}

/* read() on a usbfs node returns the descriptors, from the client's position on. */
static gboolean on_read(UMockdevIoctlBase *handler, UMockdevIoctlClient *client, gpointer user)
{
	struct emu_dev *dev = user;
	UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
	struct emu_conn *c = conn_of(dev, client);
	size_t want = (size_t)arg->data_len, n;

	(void)handler;
	if (c == NULL || dev->gone) {
		umockdev_ioctl_client_complete(client, -1, c == NULL ? ENOMEM : ENODEV);
		return TRUE;
	}
	if (c->read_off > dev->desc_len)
		c->read_off = 0;
	n = dev->desc_len - c->read_off;
	if (n > want)
		n = want;
	if (n > 0)
		umockdev_ioctl_data_update(arg, 0, dev->desc + c->read_off, (gint)n);
	/*
	 * umockdev does not see lseek(), and libusb seeks to 0 before each
	 * pass: a short read ends a pass, so the next read starts over.
	 */
	c->read_off = n < want ? 0 : c->read_off + n;
	emu_log("%s: read %zu -> %zu bytes of descriptors", dev->sysname, want, n);
	umockdev_ioctl_client_complete(client, (glong)n, 0);
	return TRUE;
}

static gboolean on_write(UMockdevIoctlBase *handler, UMockdevIoctlClient *client, gpointer user)
{
	struct emu_dev *dev = user;

	(void)handler;
	emu_log("%s: write() -> EINVAL", dev->sysname);
	umockdev_ioctl_client_complete(client, -1, EINVAL);
	return TRUE;
}

int emu_usbfs_attach(UMockdevTestbed *tb, struct emu_dev *dev)
{
	GError *err = NULL;

	dev->handler = umockdev_ioctl_base_new();
	g_signal_connect(dev->handler, "handle-ioctl", G_CALLBACK(on_ioctl), dev);
	g_signal_connect(dev->handler, "handle-read", G_CALLBACK(on_read), dev);
	g_signal_connect(dev->handler, "handle-write", G_CALLBACK(on_write), dev);
	if (!umockdev_testbed_attach_ioctl(tb, dev->devnode, dev->handler, &err)) {
		emu_err("%s: cannot attach the usbfs emulation: %s", dev->devnode, err->message);
		g_error_free(err);
		return -EIO;
	}
	return 0;
}
