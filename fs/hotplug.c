/*
 * Devices that come and go while mounted.
 *
 * A udev monitor (usb_device events) is opened and receiving BEFORE the
 * start-up enumeration, so a device plugged meanwhile is seen by one or
 * both; every syspath is handled once (syspath_seen), whichever comes
 * first, so it shows exactly once.
 *
 * On "remove" the driver is stopped (sup_detach: EOF, SIGTERM, SIGKILL
 * after a bound, reaped), every request in flight and every later one on
 * an open handle gets ENODEV, and the device leaves every listing.  Its
 * memory goes once the driver is reaped and the last handle released
 * (usbdev_release_if_unused); function ids are never reused, so a stale
 * inode can never reach the next device.
 *
 * A device handed to another whole-device driver (usbip-host) leaves as
 * on "remove", and comes back when it is bound to `usb` again.
 *
 * Names persist for the life of the mount: a function that comes back
 * (same vid:pid and serial, else same vid:pid and port, same interface)
 * gets its old name if it is free.
 */
#include <errno.h>
#include <libudev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "loop.h"
#include "ops.h"
#include "plugfs.h"
#include "supervisor.h"

/* Room for a burst: 20 devices' events arrive before the loop reads one. */
#define MONITOR_RCVBUF (4 * 1024 * 1024)

static struct udev *hp_udev;
static struct udev_monitor *hp_mon;

/* ---- syspaths handled (added or skipped) and not removed since ---- */

static char **seen;
static unsigned nseen, seen_cap;

int syspath_seen(const char *syspath)
{
	for (unsigned i = 0; i < nseen; i++)
		if (strcmp(seen[i], syspath) == 0)
			return 1;
	return 0;
}

void syspath_remember(const char *syspath)
{
	if (syspath_seen(syspath))
		return;
	if (nseen == seen_cap) {
		unsigned cap = seen_cap ? seen_cap * 2 : 16;
		char **s = realloc(seen, cap * sizeof(*s));
		if (s == NULL)
			return; /* not remembered: a duplicate event may show it twice, nothing worse */
		seen = s;
		seen_cap = cap;
	}
	if ((seen[nseen] = strdup(syspath)) != NULL)
		nseen++;
}

static void syspath_forget(const char *syspath)
{
	for (unsigned i = 0; i < nseen; i++)
		if (strcmp(seen[i], syspath) == 0) {
			free(seen[i]);
			seen[i] = seen[--nseen];
			return;
		}
}

/* ---- names remembered for the life of the mount ---- */

struct name_memo {
	char key[200];
	char name[PLUGFS_NAME_MAX];
};

static struct name_memo *memos;
static unsigned nmemos, memos_cap;

/* A serial names the device wherever it is plugged; without one, the port does. */
static void name_key(char *key, size_t cap, const struct usbdev *dev, uint8_t ifnum, uint8_t unit)
{
	if (dev->serial[0] != '\0')
		snprintf(key, cap, "%04x:%04x serial %.128s if %02x unit %u", dev->desc.vendor_id,
			 dev->desc.product_id, dev->serial, ifnum, unit);
	else
		snprintf(key, cap, "%04x:%04x port %.60s if %02x unit %u", dev->desc.vendor_id,
			 dev->desc.product_id, dev->sysname, ifnum, unit);
}

void names_pick(char *out, size_t cap, const struct usbdev *dev, uint8_t ifnum, uint8_t unit,
		const char *kind)
{
	char key[sizeof(memos[0].key)];
	struct name_memo *m = NULL;
	size_t klen = strlen(kind);

	name_key(key, sizeof(key), dev, ifnum, unit);
	for (unsigned i = 0; i < nmemos && m == NULL; i++)
		if (strcmp(memos[i].key, key) == 0)
			m = &memos[i];
	if (m != NULL && strncmp(m->name, kind, klen) == 0 && function_by_name(m->name) == NULL) {
		snprintf(out, cap, "%s", m->name);
		return;
	}
	lowest_free_name(out, cap, kind);
	if (m == NULL) {
		if (nmemos == memos_cap) {
			unsigned ncap = memos_cap ? memos_cap * 2 : 16;
			struct name_memo *n = realloc(memos, ncap * sizeof(*n));
			if (n == NULL)
				return; /* not remembered: it gets the lowest free name next time */
			memos = n;
			memos_cap = ncap;
		}
		m = &memos[nmemos++];
		snprintf(m->key, sizeof(m->key), "%s", key);
	}
	snprintf(m->name, sizeof(m->name), "%s", out);
}

void names_forget_all(void)
{
	free(memos);
	memos = NULL;
	nmemos = memos_cap = 0;
}

/* ---- the monitor ---- */

static struct usbdev *usbdev_present(const char *syspath)
{
	struct usbdev *dev;

	TAILQ_FOREACH(dev, &usbdevs, link)
	if (!dev->gone && strcmp(dev->syspath, syspath) == 0)
		return dev;
	return NULL;
}

void usbdev_release_if_unused(struct usbdev *dev)
{
	if (!dev->gone || (dev->drv != NULL && (!dev->drv->reaped || !LIST_EMPTY(&dev->drv->handles))))
		return;
	log_msg(LOG_DEBUG, "%s: unplugged device freed", dev->sysname);
	TAILQ_REMOVE(&usbdevs, dev, link);
	sup_free(dev->drv);
	usbdev_free(dev);
}

static void device_removed(const char *syspath)
{
	struct usbdev *dev = usbdev_present(syspath);

	syspath_forget(syspath);
	if (dev == NULL)
		return; /* never shown: a hub, filtered out, or all kernel-bound */
	sup_detach(dev);
	for (unsigned i = 0; i < dev->nfuncs; i++)
		tree_function_gone(dev->funcs[i]);
	usbdev_release_if_unused(dev);
}

static void device_added(const char *syspath)
{
	/* Built from sysfs, as at enumeration, not from the event's few properties. */
	struct udev_device *ud = udev_device_new_from_syspath(hp_udev, syspath);
	int r;

	if (ud == NULL) {
		log_msg(LOG_DEBUG, "%s: gone before it could be read", syspath);
		return;
	}
	if ((r = devices_add(hp_udev, ud)) < 0)
		log_msg(LOG_ERR, "%s: %s", syspath, strerror(-r));
	udev_device_unref(ud);
}

/*
 * `usbip bind` hands a whole device to usbip-host, to be used on another
 * machine: here it goes as if unplugged.  `usbip unbind` gives it back to
 * the kernel's generic driver `usb`, and it comes back (a device just
 * plugged is bound to `usb` too, and is then already shown).
 */
static void device_rebound(const char *syspath, const char *driver)
{
	if (driver == NULL)
		return;
	if (strcmp(driver, "usb") == 0)
		device_added(syspath);
	else
		device_removed(syspath);
}

static void on_monitor(int fd, uint32_t events, void *arg)
{
	struct udev_device *ud;
	(void)fd;
	(void)events;
	(void)arg;

	/* Bounded, so a storm of events cannot starve the FUSE requests. */
	for (int budget = 64; budget > 0 && (ud = udev_monitor_receive_device(hp_mon)) != NULL; budget--) {
		const char *action = udev_device_get_action(ud);
		const char *syspath = udev_device_get_syspath(ud);

		log_msg(LOG_DEBUG, "uevent %s %s", action ? action : "?", syspath ? syspath : "?");
		if (action != NULL && syspath != NULL) {
			if (strcmp(action, "add") == 0)
				device_added(syspath);
			else if (strcmp(action, "remove") == 0)
				device_removed(syspath);
			else if (strcmp(action, "bind") == 0)
				device_rebound(syspath, udev_device_get_driver(ud));
		}
		udev_device_unref(ud);
	}
}

int hotplug_init(void)
{
	int r = -ENOMEM;

	if ((hp_udev = udev_new()) == NULL ||
	    (hp_mon = udev_monitor_new_from_netlink(hp_udev, "udev")) == NULL)
		goto fail;
	if ((r = udev_monitor_filter_add_match_subsystem_devtype(hp_mon, "usb", "usb_device")) < 0 ||
	    (r = udev_monitor_enable_receiving(hp_mon)) < 0)
		goto fail;
	/* Best effort: without it a burst may overflow the default buffer. */
	udev_monitor_set_receive_buffer_size(hp_mon, MONITOR_RCVBUF);
	if ((r = loop_add(udev_monitor_get_fd(hp_mon), EPOLLIN, on_monitor, NULL)) < 0)
		goto fail;
	return 0;
fail:
	hotplug_free();
	return r;
}

void hotplug_free(void)
{
	if (hp_mon != NULL) {
		loop_del(udev_monitor_get_fd(hp_mon));
		udev_monitor_unref(hp_mon);
		hp_mon = NULL;
	}
	if (hp_udev != NULL)
		udev_unref(hp_udev);
	hp_udev = NULL;
	for (unsigned i = 0; i < nseen; i++)
		free(seen[i]);
	free(seen);
	seen = NULL;
	nseen = seen_cap = 0;
}
