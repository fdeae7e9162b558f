/*
 * Every device of the test bed, plugged at start or later through the
 * control socket (control.c), and unplugged again.
 *
 * Plugging builds the device (model state, usbfs handler, sysfs, and with
 * it the uevent "add"); nothing there touches state the worker thread uses
 * before the uevent makes the device known.  Unplugging must stop what the
 * worker is doing with the device -- fail its URBs, kill its node -- so
 * that part runs in the worker thread.  umockdev does not expose the
 * worker's main context; instead the bed has a node of its own,
 * EMU_WORKER_NODE, whose ioctl handler runs in the worker like every other
 * handler: an ioctl on it carries a function pointer and its argument, and
 * returns once the function ran there.  No lock is involved, and the
 * caller knows the device is dead before it sends the uevent "remove".
 */
#include "emu.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <glib/gstdio.h>

#define EMU_WORKER_NODE "/dev/plugfs-emu-worker"
/* Any request number: the handler of EMU_WORKER_NODE answers only this one. */
#define EMU_WORKER_CALL _IO('P', 0x42)
#define EMU_MAX_DEVNUM	127

struct worker_call {
	void (*fn)(void *arg);
	void *arg;
};

static UMockdevTestbed *bed_tb;
static unsigned bed_busnum; /* the first bus; bus i is bed_busnum + i */
static unsigned bed_nbuses;
static unsigned last_devnum[EMU_MAX_BUSES];
static GPtrArray *bed_devs; /* every emu_dev ever plugged, gone ones included */
static UMockdevIoctlBase *worker_handler;
static int worker_fd = -1;

/* In the worker thread: the argument is the caller's struct worker_call *, same process. */
static gboolean on_worker_ioctl(UMockdevIoctlBase *handler, UMockdevIoctlClient *client, gpointer user)
{
	UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
	struct worker_call *call;

	(void)handler;
	(void)user;
	if (umockdev_ioctl_client_get_request(client) != EMU_WORKER_CALL ||
	    (size_t)arg->data_len < sizeof(call)) {
		umockdev_ioctl_client_complete(client, -1, ENOTTY);
		return TRUE;
	}
	memcpy(&call, arg->data, sizeof(call));
	call->fn(call->arg);
	umockdev_ioctl_client_complete(client, 0, 0);
	return TRUE;
}

/* Runs fn(arg) in umockdev's worker thread and returns when it has. */
static int run_in_worker(void (*fn)(void *), void *arg)
{
	struct worker_call call = {fn, arg};

	if (ioctl(worker_fd, EMU_WORKER_CALL, &call) < 0) {
		emu_err("cannot reach the worker thread: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

static int worker_node_init(UMockdevTestbed *tb)
{
	char *root = umockdev_testbed_get_root_dir(tb);
	char *path = g_build_filename(root, EMU_WORKER_NODE, NULL);
	GError *err = NULL;
	int r = 0;

	g_free(root);
	char *dir = g_path_get_dirname(path);
	g_mkdir_with_parents(dir, 0755);
	g_free(dir);
	if (!g_file_set_contents(path, "", 0, &err)) {
		emu_err("%s: %s", path, err->message);
		g_error_free(err);
		g_free(path);
		return -EIO;
	}
	g_free(path);
	worker_handler = umockdev_ioctl_base_new();
	g_signal_connect(worker_handler, "handle-ioctl", G_CALLBACK(on_worker_ioctl), NULL);
	if (!umockdev_testbed_attach_ioctl(tb, EMU_WORKER_NODE, worker_handler, &err)) {
		emu_err("%s: %s", EMU_WORKER_NODE, err->message);
		g_error_free(err);
		return -EIO;
	}
	worker_fd = open(EMU_WORKER_NODE, O_RDWR | O_CLOEXEC);
	if (worker_fd < 0) {
		r = -errno;
		emu_err("%s: %s", EMU_WORKER_NODE, strerror(errno));
	}
	return r;
}

static struct emu_dev *find_present(const char *sysname)
{
	for (guint i = 0; i < bed_devs->len; i++) {
		struct emu_dev *d = g_ptr_array_index(bed_devs, i);
		if (!d->gone && strcmp(d->sysname, sysname) == 0)
			return d;
	}
	return NULL;
}

static bool port_used(unsigned bus, unsigned port)
{
	for (guint i = 0; i < bed_devs->len; i++) {
		struct emu_dev *d = g_ptr_array_index(bed_devs, i);
		if (!d->gone && d->busnum == bed_busnum + bus && d->port == port)
			return true;
	}
	return false;
}

static bool devnum_used(unsigned bus, unsigned devnum)
{
	for (guint i = 0; i < bed_devs->len; i++) {
		struct emu_dev *d = g_ptr_array_index(bed_devs, i);
		if (!d->gone && d->busnum == bed_busnum + bus && d->devnum == devnum)
			return true;
	}
	return false;
}

/* The kernel's choice: the next free devnum after the last one given, from 2 (1 is the hub). */
static unsigned next_devnum(unsigned bus)
{
	for (unsigned i = 0; i < EMU_MAX_DEVNUM; i++) {
		unsigned n = (last_devnum[bus] + i) % EMU_MAX_DEVNUM + 1;
		if (n >= 2 && !devnum_used(bus, n)) {
			last_devnum[bus] = n;
			return n;
		}
	}
	return 0;
}

/*
 * A devnum comes round again after 126 plugs: the old device's handler was
 * detached, but its socket may still be there and would make the new
 * listener fail.
 */
static void clear_old_socket(const struct emu_dev *dev)
{
	char *root = umockdev_testbed_get_root_dir(bed_tb);
	char *sock = g_build_filename(root, "ioctl", dev->devnode, NULL);

	g_unlink(sock);
	g_free(sock);
	g_free(root);
}

static int add(const struct emu_model *m, unsigned bus, unsigned devnum, unsigned port, unsigned copy,
	       struct emu_dev **out)
{
	struct emu_dev *dev = emu_dev_new(m, bed_busnum + bus, devnum, port, copy);
	int r;

	if (dev == NULL) {
		emu_err("cannot create %s", m->name);
		return -ENOMEM;
	}
	clear_old_socket(dev);
	/* The handler first: the node must answer as soon as it exists. */
	if ((r = emu_usbfs_attach(bed_tb, dev)) < 0 || (r = emu_sysfs_add_device(bed_tb, dev)) < 0) {
		/* Not in the worker's hands yet unless attached: keep it till exit either way. */
		dev->gone = true;
		g_ptr_array_add(bed_devs, dev);
		return r;
	}
	/* emu_sysfs_add_device() sent the uevent "add" (umockdev does, per device added). */
	g_ptr_array_add(bed_devs, dev);
	emu_log("%s: %s %04x:%04x at %s plugged", dev->sysname, m->name, m->vendor_id, m->product_id,
		dev->devnode);
	if (out != NULL)
		*out = dev;
	return 0;
}

/* Bus number bed_busnum + bus, with its root hub as devnum 1. */
static int add_bus(unsigned bus)
{
	int r;

	last_devnum[bus] = 1;
	if ((r = add(&emu_model_roothub, bus, 1, 0, 0, NULL)) < 0)
		return r;
	bed_nbuses = bus + 1;
	return 0;
}

int emu_bed_init(UMockdevTestbed *tb, unsigned busnum)
{
	bed_tb = tb;
	bed_busnum = busnum;
	bed_devs = g_ptr_array_new();
	if (worker_node_init(tb) < 0)
		return -EIO;
	return add_bus(0);
}

int emu_bed_plug(const struct emu_model *m, unsigned port, unsigned copy, struct emu_dev **out)
{
	unsigned devnum;
	int r;

	if (port != 0) {
		if (port_used(0, port))
			return -EBUSY;
		if ((devnum = next_devnum(0)) == 0)
			return -ENOSPC;
		return add(m, 0, devnum, port, copy, out);
	}
	for (unsigned bus = 0; bus < EMU_MAX_BUSES && bed_busnum + bus <= 255; bus++) {
		if (bus == bed_nbuses && (r = add_bus(bus)) < 0)
			return r;
		if ((devnum = next_devnum(bus)) == 0)
			continue;
		for (port = 1; port_used(bus, port); port++)
			;
		return add(m, bus, devnum, port, copy, out);
	}
	return -ENOSPC;
}

/* In the worker: what a disconnect does to usbfs. */
static void kill_device(void *arg)
{
	struct emu_dev *dev = arg;
	struct emu_urb *urb;

	dev->gone = true;
	while ((urb = g_queue_peek_head(&dev->pending)) != NULL) {
		emu_urb_cancel(urb);
		emu_urb_complete(urb, -ENODEV, 0);
	}
}

/*
 * umockdev_testbed_remove_device() leaves the interfaces' /sys/bus/usb and
 * /sys/class/usb links dangling; the next device on the same port would
 * fail to create them.
 */
static void unlink_leftovers(const struct emu_dev *dev)
{
	char *sys = umockdev_testbed_get_sys_dir(bed_tb);

	for (unsigned i = 0; i < dev->model->num_ifaces; i++) {
		char name[64];

		snprintf(name, sizeof(name), "%s:1.%u", dev->sysname, i);
		for (unsigned d = 0; d < 2; d++) {
			char *link =
			    g_build_filename(sys, d == 0 ? "bus/usb/devices" : "class/usb", name, NULL);
			g_unlink(link);
			g_free(link);
		}
	}
	g_free(sys);
}

int emu_bed_unplug(const char *sysname)
{
	struct emu_dev *dev = find_present(sysname);
	GError *err = NULL;
	char syspath[300];
	int r;

	if (dev == NULL || dev->port == 0)
		return -ENOENT;
	if ((r = run_in_worker(kill_device, dev)) < 0)
		return r;
	emu_sysfs_path(dev, syspath, sizeof(syspath));
	/* The uevent is built from sysfs: it goes out before the device leaves it. */
	umockdev_testbed_uevent(bed_tb, syspath, "remove");
	umockdev_testbed_remove_device(bed_tb, syspath);
	unlink_leftovers(dev);
	if (!umockdev_testbed_detach_ioctl(bed_tb, dev->devnode, &err)) {
		emu_err("%s: detach: %s", dev->devnode, err->message);
		g_error_free(err);
	}
	emu_log("%s: unplugged", dev->sysname);
	return 0;
}

void emu_bed_free(void)
{
	if (worker_fd >= 0)
		close(worker_fd);
	worker_fd = -1;
	if (worker_handler != NULL)
		g_object_unref(worker_handler);
	worker_handler = NULL;
	if (bed_devs == NULL)
		return;
	for (guint i = 0; i < bed_devs->len; i++)
		emu_dev_free(g_ptr_array_index(bed_devs, i));
	g_ptr_array_free(bed_devs, TRUE);
	bed_devs = NULL;
}
