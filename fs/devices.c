/*
 * USB devices and their functions, found through libudev.
 *
 * At start every usb_device is enumerated; each interface of its first
 * configuration is bound to a driver from the table in common/bind.c and
 * becomes a function directory named KIND + the lowest free index.  An
 * interface already bound to a kernel driver is left alone unless the user
 * named the device in detach=.
 *
 * `plugfs --list` runs the same code without mounting: devices_list()
 * enumerates, names and binds exactly as a mount would, and prints what it
 * decided instead of starting drivers.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libudev.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "plugfs.h"
#include "supervisor.h"
#include "util.h"

struct function_list functions = TAILQ_HEAD_INITIALIZER(functions);
struct usbdev_list usbdevs = TAILQ_HEAD_INITIALIZER(usbdevs);
static unsigned next_function_id = 1;
/* Where --list prints; NULL when mounted (the decisions go to `events`). */
static FILE *listing;

struct function *function_by_id(unsigned id)
{
	struct function *fn;

	TAILQ_FOREACH(fn, &functions, link)
	if (fn->id == id)
		return fn;
	return NULL;
}

struct function *function_by_name(const char *name)
{
	struct function *fn;

	TAILQ_FOREACH(fn, &functions, link)
	if (!fn->dev->gone && strcmp(fn->name, name) == 0)
		return fn;
	return NULL;
}

/* udev's by-id escaping: whitespace runs become one '_', other odd bytes '_'. */
static void udev_escape(char *out, size_t cap, const char *in)
{
	size_t n = 0;
	int space = 0;

	while (*in == ' ' || *in == '\t')
		in++;
	for (; *in != '\0' && n + 1 < cap; in++) {
		unsigned char c = (unsigned char)*in;
		if (c == ' ' || c == '\t' || c == '\n') {
			space = 1;
			continue;
		}
		if (space) {
			out[n++] = '_';
			space = 0;
			if (n + 1 >= cap)
				break;
		}
		if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    strchr("#+-.:=@_", c) != NULL)
			out[n++] = (char)c;
		else
			out[n++] = '_';
	}
	out[n] = '\0';
}

void lowest_free_name(char *out, size_t cap, const char *kind)
{
	for (unsigned i = 0;; i++) {
		snprintf(out, cap, "%s%u", kind, i);
		if (function_by_name(out) == NULL)
			return;
	}
}

static void sysattr_copy(struct udev_device *ud, const char *attr, char *out, size_t cap)
{
	const char *v = udev_device_get_sysattr_value(ud, attr);

	snprintf(out, cap, "%s", v != NULL ? v : "");
	/* sysfs strings end in a newline only when read raw; libudev strips it. */
	size_t n = strlen(out);
	while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
		out[--n] = '\0';
}

static int read_descriptors(struct usbdev *dev)
{
	char path[300];
	uint8_t buf[65536];
	ssize_t n = 0;

	snprintf(path, sizeof(path), "%s/descriptors", dev->syspath);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t r = read(fd, buf + n, sizeof(buf) - (size_t)n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += r;
		if ((size_t)n == sizeof(buf))
			break;
	}
	close(fd);
	if (n <= 0)
		return -EIO;
	dev->descriptors = malloc((size_t)n);
	if (dev->descriptors == NULL)
		return -ENOMEM;
	memcpy(dev->descriptors, buf, (size_t)n);
	dev->descriptors_len = (size_t)n;
	return 0;
}

/* The kernel driver bound to interface `ifnum`, or NULL. */
static const char *iface_kernel_driver(struct udev *udev, struct usbdev *dev, uint8_t ifnum, char *buf,
				       size_t cap)
{
	char path[400];
	const char *drv = NULL;

	snprintf(path, sizeof(path), "%s/%s:%u.%u", dev->syspath, dev->sysname, dev->desc.config_value,
		 ifnum);
	struct udev_device *ui = udev_device_new_from_syspath(udev, path);
	if (ui == NULL)
		return NULL;
	drv = udev_device_get_driver(ui);
	if (drv == NULL)
		drv = udev_device_get_property_value(ui, "DRIVER");
	if (drv != NULL) {
		snprintf(buf, cap, "%s", drv);
		drv = buf;
	}
	udev_device_unref(ui);
	return drv;
}

struct function *function_new(struct usbdev *dev, const struct usbdesc_iface *ifd,
			      const struct bind_driver *bd)
{
	struct function *fn = calloc(1, sizeof(*fn));
	char m[64], p[64], s[64];

	if (fn == NULL)
		return NULL;
	fn->id = next_function_id++;
	fn->dev = dev;
	fn->index = dev->nfuncs;
	fn->ifnum = ifd->number;
	fn->bind = bd;
	names_pick(fn->name, sizeof(fn->name), dev, ifd->number, 0, bd->kind);
	if (dev->manufacturer[0] != '\0')
		udev_escape(m, sizeof(m), dev->manufacturer);
	else
		snprintf(m, sizeof(m), "%04x", dev->desc.vendor_id);
	if (dev->product[0] != '\0')
		udev_escape(p, sizeof(p), dev->product);
	else
		snprintf(p, sizeof(p), "%04x", dev->desc.product_id);
	udev_escape(s, sizeof(s), dev->serial);
	snprintf(fn->by_id, sizeof(fn->by_id), "usb-%s_%s%s%s-if%02x", m, p, s[0] ? "_" : "", s, ifd->number);
	snprintf(fn->by_path, sizeof(fn->by_path), "%s:%u.%u", dev->sysname, dev->desc.config_value,
		 ifd->number);
	TAILQ_INSERT_TAIL(&functions, fn, link);
	dev->funcs[dev->nfuncs++] = fn;
	return fn;
}

struct function *function_new_unit(struct function *parent, uint8_t unit)
{
	struct usbdev *dev = parent->dev;
	struct function *fn;

	if (dev->nfuncs >= PLUGFS_MAX_FUNCS || (fn = calloc(1, sizeof(*fn))) == NULL)
		return NULL;
	fn->id = next_function_id++;
	fn->dev = dev;
	fn->index = parent->index;
	fn->unit = unit;
	fn->ifnum = parent->ifnum;
	fn->bind = parent->bind;
	names_pick(fn->name, sizeof(fn->name), dev, fn->ifnum, unit, fn->bind->kind);
	snprintf(fn->by_id, sizeof(fn->by_id), "%.200s-lun%u", parent->by_id, unit);
	snprintf(fn->by_path, sizeof(fn->by_path), "%.64s-lun%u", parent->by_path, unit);
	TAILQ_INSERT_TAIL(&functions, fn, link);
	dev->funcs[dev->nfuncs++] = fn;
	event_add(fn->name, "attach %s %04x:%04x interface %02x driver %s unit %u of %s", dev->sysname,
		  dev->desc.vendor_id, dev->desc.product_id, fn->ifnum, fn->bind->name, unit, parent->name);
	return fn;
}

struct function *function_of(struct usbdev *dev, unsigned index, unsigned unit)
{
	for (unsigned i = 0; i < dev->nfuncs; i++)
		if (dev->funcs[i]->index == index && dev->funcs[i]->unit == unit)
			return dev->funcs[i];
	return NULL;
}

void usbdev_free(struct usbdev *dev)
{
	for (unsigned i = 0; i < dev->nfuncs; i++) {
		TAILQ_REMOVE(&functions, dev->funcs[i], link);
		free(dev->funcs[i]->files);
		free(dev->funcs[i]);
	}
	free(dev->descriptors);
	free(dev);
}

void devices_free(void)
{
	struct usbdev *dev;

	while ((dev = TAILQ_FIRST(&usbdevs)) != NULL) {
		TAILQ_REMOVE(&usbdevs, dev, link);
		sup_free(dev->drv);
		usbdev_free(dev);
	}
	names_forget_all();
}

/*
 * Why this process cannot open a device node read-write, or NULL.  The
 * driver host opens it with the daemon's uid (root: always; an ordinary
 * user: only through the node's group, see udev/70-plugfs.rules), and a
 * bare EACCES in its log would not say what to do about it.
 */
static const char *node_access_problem(const char *node, char *buf, size_t cap)
{
	struct stat st;
	struct group *gr;

	if (access(node, R_OK | W_OK) == 0)
		return NULL;
	int e = errno;
	if (e != EACCES || stat(node, &st) < 0)
		snprintf(buf, cap, "cannot open %s: %s", node, strerror(e));
	else if ((st.st_mode & 060) == 060 && st.st_gid != 0 && (gr = getgrgid(st.st_gid)) != NULL)
		snprintf(buf, cap, "cannot open %s: %s (group %s; add yourself to it)", node, strerror(e),
			 gr->gr_name);
	else {
		struct passwd *pw = getpwuid(st.st_uid);
		char owner[32], grp[32];
		if (pw != NULL)
			snprintf(owner, sizeof(owner), "%s", pw->pw_name);
		else
			snprintf(owner, sizeof(owner), "%u", (unsigned)st.st_uid);
		if ((gr = getgrgid(st.st_gid)) != NULL)
			snprintf(grp, sizeof(grp), "%s", gr->gr_name);
		else
			snprintf(grp, sizeof(grp), "%u", (unsigned)st.st_gid);
		snprintf(buf, cap,
			 "cannot open %s: %s (owner %s:%s, mode %04o; install the plugfs udev rule)", node,
			 strerror(e), owner, grp, (unsigned)(st.st_mode & 07777));
	}
	return buf;
}

/* An interface or device left alone: an event when mounted, a `-` line for --list. */
static void report_skip(const char *where, const struct usbdev *dev, const char *why)
{
	if (listing != NULL)
		fprintf(listing, "- %s %04x:%04x skip: %s\n", where, dev->desc.vendor_id,
			dev->desc.product_id, why);
	else
		event_add(where, "skip %s", why);
}

int devices_add(struct udev *udev, struct udev_device *ud)
{
	const char *why = NULL;
	const char *node = udev_device_get_devnode(ud);
	const char *devtype = udev_device_get_devtype(ud);
	const char *devdrv = udev_device_get_driver(ud);
	char text[256];

	if (node == NULL || devtype == NULL || strcmp(devtype, "usb_device") != 0)
		return 0;
	/* Enumeration and the monitor may both report a device plugged during start-up. */
	if (syspath_seen(udev_device_get_syspath(ud)))
		return 0;
	struct usbdev *dev = calloc(1, sizeof(*dev));
	if (dev == NULL)
		return -ENOMEM;
	snprintf(dev->syspath, sizeof(dev->syspath), "%s", udev_device_get_syspath(ud));
	snprintf(dev->sysname, sizeof(dev->sysname), "%s", udev_device_get_sysname(ud));
	snprintf(dev->devnode, sizeof(dev->devnode), "%s", node);
	char num[16];
	sysattr_copy(ud, "busnum", num, sizeof(num));
	dev->busnum = (unsigned)strtoul(num, NULL, 10);
	sysattr_copy(ud, "devnum", num, sizeof(num));
	dev->devnum = (unsigned)strtoul(num, NULL, 10);
	sysattr_copy(ud, "speed", dev->speed, sizeof(dev->speed));
	sysattr_copy(ud, "manufacturer", dev->manufacturer, sizeof(dev->manufacturer));
	sysattr_copy(ud, "product", dev->product, sizeof(dev->product));
	sysattr_copy(ud, "serial", dev->serial, sizeof(dev->serial));

	int r = read_descriptors(dev);
	if (r < 0) {
		/* Not remembered: a device still being added is read again at its uevent. */
		log_msg(LOG_WARNING, "%s: cannot read descriptors: %s", dev->sysname, strerror(-r));
		free(dev);
		return 0;
	}
	syspath_remember(dev->syspath);
	if (usbdesc_parse(dev->descriptors, dev->descriptors_len, &dev->desc, &why) < 0) {
		log_msg(LOG_WARNING, "%s: malformed descriptors (%s), device ignored", dev->sysname, why);
		usbdev_free(dev);
		return 0;
	}
	/* Hubs belong to the kernel: plugfs shows what hangs off them. */
	if (dev->desc.cls == 9) {
		usbdev_free(dev);
		return 0;
	}
	if (!vidpid_list_has(&opts.only, dev->desc.vendor_id, dev->desc.product_id)) {
		if (listing != NULL)
			report_skip(dev->sysname, dev, "only= does not name it");
		else
			event_add(dev->sysname, "skip %04x:%04x (only= does not name it)",
				  dev->desc.vendor_id, dev->desc.product_id);
		usbdev_free(dev);
		return 0;
	}
	/*
	 * A whole-device driver other than the kernel's generic one owns the
	 * device: usbip-host after `usbip bind`, which exports it to another
	 * machine (that machine's plugfs shows it).
	 */
	if (devdrv != NULL && strcmp(devdrv, "usb") != 0) {
		snprintf(text, sizeof(text), "device bound to kernel driver %s", devdrv);
		report_skip(dev->sysname, dev, text);
		usbdev_free(dev);
		return 0;
	}
	dev->detach = vidpid_list_has(&opts.detach, dev->desc.vendor_id, dev->desc.product_id);
	for (unsigned i = 0; i < dev->desc.num_ifaces && dev->nfuncs < PLUGFS_MAX_FUNCS; i++) {
		const struct usbdesc_iface *ifd = &dev->desc.ifaces[i];
		const struct bind_driver *bd = bind_lookup(&dev->desc, ifd);
		char kbuf[64], where[80];
		const char *kdrv = iface_kernel_driver(udev, dev, ifd->number, kbuf, sizeof(kbuf));

		/* A union slave is part of its master's function (common/bind.h). */
		if (bind_union_master(&dev->desc, ifd->number) != NULL)
			continue;
		for (unsigned s = 0; kdrv == NULL && bind_takes_union(&dev->desc, ifd) && s < ifd->num_slaves;
		     s++)
			kdrv = iface_kernel_driver(udev, dev, ifd->slaves[s], kbuf, sizeof(kbuf));

		snprintf(where, sizeof(where), "%s:%u.%u", dev->sysname, dev->desc.config_value, ifd->number);
		if (kdrv != NULL && !dev->detach) {
			snprintf(text, sizeof(text),
				 "bound to kernel driver %s (detach= does not name %04x:%04x)", kdrv,
				 dev->desc.vendor_id, dev->desc.product_id);
			report_skip(where, dev, text);
			continue;
		}
		if (function_new(dev, ifd, bd) == NULL) {
			usbdev_free(dev);
			return -ENOMEM;
		}
	}
	if (dev->nfuncs == 0) {
		usbdev_free(dev);
		return 0;
	}
	TAILQ_INSERT_TAIL(&usbdevs, dev, link);
	const char *denied = node_access_problem(dev->devnode, text, sizeof(text));
	for (unsigned i = 0; i < dev->nfuncs; i++) {
		struct function *fn = dev->funcs[i];
		if (listing != NULL)
			fprintf(listing, "%s %s %04x:%04x %s%s%s\n", fn->name, dev->sysname,
				dev->desc.vendor_id, dev->desc.product_id, fn->bind->name, denied ? " " : "",
				denied ? denied : "");
		else
			event_add(fn->name, "attach %s %04x:%04x interface %02x driver %s", dev->sysname,
				  dev->desc.vendor_id, dev->desc.product_id, fn->ifnum, fn->bind->name);
	}
	if (listing != NULL)
		return 0;
	/* The driver is started all the same: the node's mode may change (udevadm trigger). */
	if (denied != NULL)
		event_add(dev->funcs[0]->name, "%s", denied);
	return sup_attach(dev);
}

int devices_enumerate(void)
{
	struct udev *udev = udev_new();
	struct udev_enumerate *en;
	struct udev_list_entry *e;
	int r = 0;

	if (udev == NULL)
		return -ENOMEM;
	en = udev_enumerate_new(udev);
	if (en == NULL) {
		udev_unref(udev);
		return -ENOMEM;
	}
	udev_enumerate_add_match_subsystem(en, "usb");
	udev_enumerate_add_match_property(en, "DEVTYPE", "usb_device");
	udev_enumerate_scan_devices(en);
	udev_list_entry_foreach(e, udev_enumerate_get_list_entry(en))
	{
		struct udev_device *ud = udev_device_new_from_syspath(udev, udev_list_entry_get_name(e));
		if (ud == NULL)
			continue;
		r = devices_add(udev, ud);
		udev_device_unref(ud);
		if (r < 0)
			break;
	}
	udev_enumerate_unref(en);
	udev_unref(udev);
	return r;
}

int devices_list(FILE *out)
{
	listing = out;
	int r = devices_enumerate();
	listing = NULL;
	devices_free();
	return r;
}

size_t devices_render(char *buf, size_t cap)
{
	struct function *fn;
	size_t n = 0;

	TAILQ_FOREACH(fn, &functions, link)
	{
		struct usbdev *dev = fn->dev;
		char pid[16] = "-";
		if (dev->gone || n >= cap)
			continue;
		if (dev->drv->pid > 0)
			snprintf(pid, sizeof(pid), "%d", (int)dev->drv->pid);
		int w = snprintf(buf + n, cap - n, "%s %s %04x:%04x %s %s %u %s\n", fn->name, dev->sysname,
				 dev->desc.vendor_id, dev->desc.product_id, fn->bind->name,
				 drv_state_name(dev->drv->state), dev->drv->restarts, pid);
		/* Whole lines only: a cut one would end in snprintf's NUL, not content. */
		if (w < 0 || (size_t)w >= cap - n)
			break;
		n += (size_t)w;
	}
	return n;
}
