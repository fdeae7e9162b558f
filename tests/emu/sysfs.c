/*
 * A device as sysfs and udev show it: the usb_device directory with the
 * attributes the kernel writes, the properties udev's usb_id and path_id
 * would add, and one usb_interface child per interface.  Written in
 * umockdev's record format, because only umockdev_testbed_add_from_string()
 * also creates the /dev node that the ioctl emulation needs.
 *
 * Paths look like a PC's xHCI controller:
 *     /sys/devices/pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0
 */
#include "emu.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <glib/gstdio.h>

#define EMU_PCI_PATH	 "/devices/pci0000:00/0000:00:14.0"
#define EMU_PCI_ID	 "pci-0000:00:14.0"
#define EMU_PCI_TAG	 "pci-0000_00_14_0"
#define USB_DEVICE_MAJOR 189

/* An ASCII attribute: the record format turns "\n" back into a newline. */
static void attr(GString *s, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void attr(GString *s, const char *name, const char *fmt, ...)
{
	va_list ap;

	g_string_append_printf(s, "A: %s=", name);
	va_start(ap, fmt);
	g_string_append_vprintf(s, fmt, ap);
	va_end(ap);
	g_string_append(s, "\\n\n");
}

static void prop(GString *s, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void prop(GString *s, const char *name, const char *fmt, ...)
{
	va_list ap;

	g_string_append_printf(s, "E: %s=", name);
	va_start(ap, fmt);
	g_string_append_vprintf(s, fmt, ap);
	va_end(ap);
	g_string_append_c(s, '\n');
}

/* udev's ID_MODEL style: whitespace becomes '_', as udev_util_replace_whitespace. */
static void udev_safe(char *dst, size_t cap, const char *src)
{
	size_t n = 0;

	for (; *src && n + 1 < cap; src++)
		dst[n++] = (*src == ' ' || *src == '/') ? '_' : *src;
	dst[n] = '\0';
}

/* udev's ID_MODEL_ENC style: blanks and backslashes as \xNN. */
static void udev_enc(char *dst, size_t cap, const char *src)
{
	size_t n = 0;

	for (; *src && n + 5 < cap; src++) {
		if (*src == ' ' || *src == '\\' || *src == '/')
			n += (size_t)snprintf(dst + n, cap - n, "\\x%02x", (unsigned char)*src);
		else
			dst[n++] = *src;
	}
	dst[n] = '\0';
}

/* "../" repeated until the sysfs root, for driver links inside `devpath`. */
static void to_sys_root(char *dst, size_t cap, const char *devpath)
{
	size_t n = 0;

	dst[0] = '\0';
	for (const char *p = devpath; *p; p++)
		if (*p == '/' && n + 4 < cap) {
			memcpy(dst + n, "../", 4);
			n += 3;
		}
}

static void driver_link(GString *s, UMockdevTestbed *tb, const char *devpath, const char *driver)
{
	char up[128];
	char *dir;

	/* The driver's directory exists in real sysfs; ls -l shows where the link goes. */
	dir = g_build_filename(umockdev_testbed_get_sys_dir(tb), "bus", "usb", "drivers", driver, NULL);
	g_mkdir_with_parents(dir, 0755);
	g_free(dir);
	to_sys_root(up, sizeof(up), devpath);
	g_string_append_printf(s, "L: driver=%sbus/usb/drivers/%s\n", up, driver);
	prop(s, "DRIVER", "%s", driver);
}

static void parent_path(const struct emu_dev *dev, char *dst, size_t cap)
{
	if (dev->port == 0)
		snprintf(dst, cap, EMU_PCI_PATH "/%s", dev->sysname);
	else
		snprintf(dst, cap, EMU_PCI_PATH "/usb%u/%s", dev->busnum, dev->sysname);
}

static void add_id_props(GString *s, const struct emu_dev *dev)
{
	const struct emu_model *m = dev->model;
	char safe[256], enc[512];

	if (m->manufacturer) {
		udev_safe(safe, sizeof(safe), m->manufacturer);
		udev_enc(enc, sizeof(enc), m->manufacturer);
		prop(s, "ID_VENDOR", "%s", safe);
		prop(s, "ID_VENDOR_ENC", "%s", enc);
	}
	prop(s, "ID_VENDOR_ID", "%04x", m->vendor_id);
	if (m->product) {
		udev_safe(safe, sizeof(safe), m->product);
		udev_enc(enc, sizeof(enc), m->product);
		prop(s, "ID_MODEL", "%s", safe);
		prop(s, "ID_MODEL_ENC", "%s", enc);
	}
	prop(s, "ID_MODEL_ID", "%04x", m->product_id);
	prop(s, "ID_REVISION", "%04x", m->bcd_device);
	{
		char vendor[128], model[128], serial[128];

		udev_safe(vendor, sizeof(vendor), m->manufacturer ? m->manufacturer : "");
		udev_safe(model, sizeof(model), m->product ? m->product : "");
		udev_safe(serial, sizeof(serial), dev->serial ? dev->serial : "");
		if (dev->serial)
			prop(s, "ID_SERIAL", "%s_%s_%s", vendor, model, serial);
		else
			prop(s, "ID_SERIAL", "%s_%s", vendor, model);
		if (dev->serial)
			prop(s, "ID_SERIAL_SHORT", "%s", serial);
	}
	prop(s, "ID_BUS", "usb");
}

static void add_device_text(GString *s, UMockdevTestbed *tb, const struct emu_dev *dev, const char *path)
{
	const struct emu_model *m = dev->model;
	unsigned minor = (dev->busnum - 1) * 128 + dev->devnum - 1;

	g_string_append_printf(s, "P: %s\n", path);
	g_string_append_printf(s, "N: bus/usb/%03u/%03u\n", dev->busnum, dev->devnum);
	prop(s, "SUBSYSTEM", "usb");
	prop(s, "DEVTYPE", "usb_device");
	prop(s, "DEVNAME", "%s", dev->devnode);
	prop(s, "PRODUCT", "%x/%x/%x", m->vendor_id, m->product_id, m->bcd_device);
	prop(s, "TYPE", "%u/%u/%u", m->dev_class, m->dev_subclass, m->dev_protocol);
	prop(s, "BUSNUM", "%03u", dev->busnum);
	prop(s, "DEVNUM", "%03u", dev->devnum);
	prop(s, "MAJOR", "%u", USB_DEVICE_MAJOR);
	prop(s, "MINOR", "%u", minor);
	add_id_props(s, dev);
	{
		GString *ifs = g_string_new(":");

		for (unsigned i = 0; i < m->num_ifaces; i++)
			g_string_append_printf(ifs, "%02x%02x%02x:", m->ifaces[i].cls, m->ifaces[i].subclass,
					       m->ifaces[i].protocol);
		prop(s, "ID_USB_INTERFACES", "%s", ifs->str);
		g_string_free(ifs, TRUE);
	}
	if (dev->port != 0) {
		prop(s, "ID_PATH", EMU_PCI_ID "-usb-0:%u", dev->port);
		prop(s, "ID_PATH_TAG", EMU_PCI_TAG "-usb-0_%u", dev->port);
	}
	driver_link(s, tb, path, "usb");

	attr(s, "dev", "%u:%u", USB_DEVICE_MAJOR, minor);
	attr(s, "busnum", "%u", dev->busnum);
	attr(s, "devnum", "%u", dev->devnum);
	attr(s, "devpath", "%u", dev->port);
	attr(s, "speed", "480");
	attr(s, "version", " 2.00");
	attr(s, "idVendor", "%04x", m->vendor_id);
	attr(s, "idProduct", "%04x", m->product_id);
	attr(s, "bcdDevice", "%04x", m->bcd_device);
	attr(s, "bDeviceClass", "%02x", m->dev_class);
	attr(s, "bDeviceSubClass", "%02x", m->dev_subclass);
	attr(s, "bDeviceProtocol", "%02x", m->dev_protocol);
	attr(s, "bMaxPacketSize0", "64");
	attr(s, "bNumConfigurations", "1");
	attr(s, "bConfigurationValue", "1");
	attr(s, "bNumInterfaces", "%2u", m->num_ifaces);
	attr(s, "bmAttributes", "80");
	attr(s, "bMaxPower", "100mA");
	attr(s, "maxchild", "%u", m->dev_class == 0x09 ? 4u : 0u);
	attr(s, "authorized", "1");
	attr(s, "removable", "%s", dev->port == 0 ? "unknown" : "removable");
	if (m->manufacturer)
		attr(s, "manufacturer", "%s", m->manufacturer);
	if (m->product)
		attr(s, "product", "%s", m->product);
	if (dev->serial)
		attr(s, "serial", "%s", dev->serial);
	g_string_append(s, "H: descriptors=");
	for (size_t i = 0; i < dev->desc_len; i++)
		g_string_append_printf(s, "%02X", dev->desc[i]);
	g_string_append(s, "\n\n");
}

static void add_iface_text(GString *s, UMockdevTestbed *tb, const struct emu_dev *dev, const char *parent,
			   unsigned i)
{
	const struct emu_model *m = dev->model;
	const struct emu_iface_spec *ifc = &m->ifaces[i];
	char path[320], modalias[128];
	/* Root hub interfaces are N-0:1.I; the rest B-P:1.I. */
	unsigned port = dev->port;

	snprintf(path, sizeof(path), "%.256s/%u-%u:1.%u", parent, dev->busnum, port, i);
	snprintf(modalias, sizeof(modalias),
		 "usb:v%04Xp%04Xd%04Xdc%02Xdsc%02Xdp%02Xic%02Xisc%02Xip%02Xin%02X", m->vendor_id,
		 m->product_id, m->bcd_device, m->dev_class, m->dev_subclass, m->dev_protocol, ifc->cls,
		 ifc->subclass, ifc->protocol, i);

	g_string_append_printf(s, "P: %s\n", path);
	prop(s, "SUBSYSTEM", "usb");
	prop(s, "DEVTYPE", "usb_interface");
	prop(s, "PRODUCT", "%x/%x/%x", m->vendor_id, m->product_id, m->bcd_device);
	prop(s, "TYPE", "%u/%u/%u", m->dev_class, m->dev_subclass, m->dev_protocol);
	/* The kernel's uevent prints INTERFACE in decimal. */
	prop(s, "INTERFACE", "%u/%u/%u", ifc->cls, ifc->subclass, ifc->protocol);
	prop(s, "MODALIAS", "%s", modalias);
	add_id_props(s, dev);
	prop(s, "ID_USB_INTERFACE_NUM", "%02x", i);
	if (dev->port != 0) {
		prop(s, "ID_PATH", EMU_PCI_ID "-usb-0:%u:1.%u", port, i);
		prop(s, "ID_PATH_TAG", EMU_PCI_TAG "-usb-0_%u_1_%u", port, i);
	}
	if (ifc->kernel_driver != NULL) {
		driver_link(s, tb, path, ifc->kernel_driver);
		prop(s, "ID_USB_DRIVER", "%s", ifc->kernel_driver);
	}
	attr(s, "bInterfaceNumber", "%02x", i);
	attr(s, "bAlternateSetting", "%2u", 0u);
	attr(s, "bInterfaceClass", "%02x", ifc->cls);
	attr(s, "bInterfaceSubClass", "%02x", ifc->subclass);
	attr(s, "bInterfaceProtocol", "%02x", ifc->protocol);
	attr(s, "bNumEndpoints", "%02x", ifc->num_eps);
	attr(s, "supports_autosuspend", "1");
	attr(s, "authorized", "1");
	attr(s, "modalias", "%s", modalias);
	g_string_append_c(s, '\n');
}

int emu_sysfs_add_device(UMockdevTestbed *tb, const struct emu_dev *dev)
{
	GString *s = g_string_new(NULL);
	GError *err = NULL;
	char path[256];
	int rc = 0;

	parent_path(dev, path, sizeof(path));
	/*
	 * umockdev sends a uevent "add" for each paragraph once it is written:
	 * the interfaces go first, so that when the device's own uevent goes
	 * out, everything a listener looks at (interfaces, their kernel
	 * drivers) is already there, as with the kernel.
	 */
	for (unsigned i = 0; i < dev->model->num_ifaces; i++)
		add_iface_text(s, tb, dev, path, i);
	add_device_text(s, tb, dev, path);
	if (!umockdev_testbed_add_from_string(tb, s->str, &err)) {
		emu_err("%s: cannot add to the testbed: %s", dev->sysname, err->message);
		g_error_free(err);
		rc = -EINVAL;
	}
	g_string_free(s, TRUE);
	return rc;
}

void emu_sysfs_path(const struct emu_dev *dev, char *dst, size_t cap)
{
	char path[256];

	parent_path(dev, path, sizeof(path));
	snprintf(dst, cap, "/sys%s", path);
}
