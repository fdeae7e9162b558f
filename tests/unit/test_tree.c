/*
 * The tree of SPEC.md (fs/ops.c, fs/devices.c) without FUSE or udev:
 * devices are built by hand from the descriptors in devices.h, with a
 * driver in state running, and the tree is walked through tree_list,
 * tree_lookup, tree_stat and tree_render.  Each test forks, so the global
 * device and function lists start empty.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "devices.h"
#include "ops.h"
#include "suites.h"
#include "supervisor.h"

#define FTDI_MANUFACTURER "Future Technology Devices International, Ltd"
#define FTDI_BYID	  "usb-Future_Technology_Devices_International__Ltd_FT232R_USB_UART_A50285BI-if00"

static struct usbdev *add_dev(const char *sysname, const uint8_t *desc, size_t len, const char *manufacturer,
			      const char *product, const char *serial)
{
	struct usbdev *dev = calloc(1, sizeof(*dev));
	struct drv *drv = calloc(1, sizeof(*drv));

	ck_assert_ptr_nonnull(dev);
	ck_assert_ptr_nonnull(drv);
	snprintf(dev->sysname, sizeof(dev->sysname), "%s", sysname);
	dev->busnum = 1;
	dev->devnum = 4;
	snprintf(dev->speed, sizeof(dev->speed), "480");
	snprintf(dev->manufacturer, sizeof(dev->manufacturer), "%s", manufacturer);
	snprintf(dev->product, sizeof(dev->product), "%s", product);
	snprintf(dev->serial, sizeof(dev->serial), "%s", serial);
	dev->descriptors = malloc(len);
	ck_assert_ptr_nonnull(dev->descriptors);
	memcpy(dev->descriptors, desc, len);
	dev->descriptors_len = len;
	ck_assert_int_eq(usbdesc_parse(dev->descriptors, len, &dev->desc, NULL), 0);

	drv->dev = dev;
	drv->state = DRV_RUNNING;
	drv->pid = 1234;
	drv->restarts = 0;
	drv->sock = -1;
	TAILQ_INIT(&drv->requests);
	LIST_INIT(&drv->handles);
	STAILQ_INIT(&drv->outq);
	dev->drv = drv;
	for (unsigned i = 0; i < dev->desc.num_ifaces; i++)
		ck_assert_ptr_nonnull(function_new(dev, &dev->desc.ifaces[i], bind_by_name("usb")));
	TAILQ_INSERT_TAIL(&usbdevs, dev, link);
	return dev;
}

static struct usbdev *add_ftdi(const char *sysname)
{
	return add_dev(sysname, desc_ftdi_ft232r, sizeof(desc_ftdi_ft232r), FTDI_MANUFACTURER,
		       "FT232R USB UART", "A50285BI");
}

static struct dfile *add_file(struct function *fn, const char *name, uint8_t kind, uint16_t mode,
			      uint64_t size)
{
	struct dfile *files = realloc(fn->files, (fn->nfiles + 1) * sizeof(*files));

	ck_assert_ptr_nonnull(files);
	fn->files = files;
	struct dfile *f = &files[fn->nfiles];
	memset(f, 0, sizeof(*f));
	f->id = fn->nfiles + 1;
	f->kind = kind;
	f->mode = mode;
	f->size = size;
	f->present = 1;
	snprintf(f->name, sizeof(f->name), "%s", name);
	fn->nfiles++;
	return f;
}

/* A directory listing, collected. */
struct listing {
	unsigned n;
	char names[64][256];
	fuse_ino_t inos[64];
	mode_t types[64];
};

static int collect(void *ctx, const char *name, fuse_ino_t ino, mode_t type)
{
	struct listing *l = ctx;

	ck_assert_uint_lt(l->n, 64);
	snprintf(l->names[l->n], sizeof(l->names[l->n]), "%s", name);
	l->inos[l->n] = ino;
	l->types[l->n] = type;
	l->n++;
	return 0;
}

static void list(fuse_ino_t dir, struct listing *l)
{
	memset(l, 0, sizeof(*l));
	ck_assert_int_eq(tree_list(dir, collect, l), 0);
}

/* Index of `name` in the listing, or -1. */
static int listed(const struct listing *l, const char *name)
{
	for (unsigned i = 0; i < l->n; i++)
		if (strcmp(l->names[i], name) == 0)
			return (int)i;
	return -1;
}

static fuse_ino_t lookup(fuse_ino_t parent, const char *name)
{
	fuse_ino_t ino = 0;

	ck_assert_msg(tree_lookup(parent, name, &ino) == 0, "lookup %s failed", name);
	ck_assert_uint_ne(ino, 0);
	return ino;
}

static fuse_ino_t lookup2(const char *dir, const char *name)
{
	return lookup(lookup(INO_ROOT, dir), name);
}

/* Renders a daemon-served file into a static buffer, NUL-terminated; checks st_size against it. */
static const char *content(fuse_ino_t ino, ssize_t *len)
{
	static char buf[64 * 1024];
	struct stat st;
	ssize_t n = tree_render(ino, buf, sizeof(buf) - 1);

	ck_assert_int_ge(n, 0);
	buf[n] = '\0';
	ck_assert_int_eq(tree_stat(ino, &st), 0);
	ck_assert_msg(st.st_size == n, "st_size %lld, content %zd bytes", (long long)st.st_size, n);
	if (len != NULL)
		*len = n;
	return buf;
}

static const char *info(const char *fn, const char *file)
{
	return content(lookup2(fn, file), NULL);
}

START_TEST(test_root_empty)
{
	struct listing l;
	struct stat st;

	list(INO_ROOT, &l);
	ck_assert_uint_eq(l.n, 4);
	ck_assert_str_eq(l.names[0], "devices");
	ck_assert_str_eq(l.names[1], "events");
	ck_assert_str_eq(l.names[2], "by-id");
	ck_assert_str_eq(l.names[3], "by-path");
	ck_assert_uint_eq(l.inos[0], INO_DEVICES);
	ck_assert_uint_eq(l.inos[1], INO_EVENTS);
	ck_assert_uint_eq(l.inos[2], INO_BYID);
	ck_assert_uint_eq(l.inos[3], INO_BYPATH);
	ck_assert_uint_eq(l.types[0], S_IFREG);
	ck_assert_uint_eq(l.types[2], S_IFDIR);
	ck_assert_int_eq(tree_stat(INO_ROOT, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_ino, INO_ROOT);
	ck_assert_int_eq(tree_stat(INO_BYID, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_int_eq(tree_stat(INO_DEVICES, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_int_eq(st.st_size, 0);
	list(INO_BYID, &l);
	ck_assert_uint_eq(l.n, 0);
	list(INO_BYPATH, &l);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_str_eq(content(INO_DEVICES, NULL), "");
}
END_TEST

START_TEST(test_root_lists_functions)
{
	struct listing l;
	struct stat st;

	add_ftdi("1-1");
	list(INO_ROOT, &l);
	ck_assert_uint_eq(l.n, 5);
	ck_assert_str_eq(l.names[4], "usb0");
	ck_assert_uint_eq(l.types[4], S_IFDIR);
	ck_assert_uint_eq(lookup(INO_ROOT, "usb0"), l.inos[4]);
	ck_assert_uint_eq(lookup(INO_ROOT, "devices"), INO_DEVICES);
	ck_assert_uint_eq(lookup(INO_ROOT, "by-path"), INO_BYPATH);
	ck_assert_int_eq(tree_stat(l.inos[4], &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0555);
	ck_assert_uint_eq(st.st_ino, l.inos[4]);
	/* Every inode is distinct. */
	for (unsigned i = 0; i < l.n; i++)
		for (unsigned j = i + 1; j < l.n; j++)
			ck_assert_uint_ne(l.inos[i], l.inos[j]);
	fuse_ino_t ino;
	ck_assert_int_eq(tree_lookup(INO_ROOT, "usb1", &ino), -ENOENT);
	ck_assert_int_eq(tree_lookup(INO_ROOT, "", &ino), -ENOENT);
	ck_assert_int_eq(tree_lookup(INO_ROOT, "USB0", &ino), -ENOENT);
}
END_TEST

START_TEST(test_lowest_free_index)
{
	struct listing l;

	struct usbdev *a = add_ftdi("1-1");
	struct usbdev *b = add_dev("1-2", desc_arduino_uno_r3, sizeof(desc_arduino_uno_r3),
				   "Arduino (www.arduino.cc)", "", "");
	ck_assert_str_eq(a->funcs[0]->name, "usb0");
	ck_assert_uint_eq(b->nfuncs, 2);
	ck_assert_str_eq(b->funcs[0]->name, "usb1");
	ck_assert_str_eq(b->funcs[1]->name, "usb2");
	list(INO_ROOT, &l);
	ck_assert_uint_eq(l.n, 7);
	ck_assert_int_ge(listed(&l, "usb1"), 0);
	ck_assert_int_ge(listed(&l, "usb2"), 0);
	ck_assert_ptr_eq(function_by_name("usb2"), b->funcs[1]);

	/* Unplugged and freed: its name is free again, the others keep theirs. */
	TAILQ_REMOVE(&usbdevs, a, link);
	sup_free(a->drv);
	usbdev_free(a);
	ck_assert_ptr_null(function_by_name("usb0"));
	struct usbdev *c = add_ftdi("1-3");
	ck_assert_str_eq(c->funcs[0]->name, "usb0");
	/* A further one takes the next free index, past the ones in use. */
	struct usbdev *d = add_ftdi("1-4");
	ck_assert_str_eq(d->funcs[0]->name, "usb3");
	/* Function ids (inodes) are never reused, even when names are. */
	ck_assert_uint_ne(c->funcs[0]->id, 1);
	ck_assert_ptr_eq(function_by_id(c->funcs[0]->id), c->funcs[0]);
}
END_TEST

START_TEST(test_gone_device_frees_its_name)
{
	struct listing l;
	struct stat st;
	fuse_ino_t ino;

	struct usbdev *a = add_ftdi("1-1");
	fuse_ino_t old_dir = lookup(INO_ROOT, "usb0");
	a->gone = 1;
	a->drv->state = DRV_GONE;
	/* A gone device is in no listing and its directory is gone ... */
	list(INO_ROOT, &l);
	ck_assert_uint_eq(l.n, 4);
	list(INO_BYID, &l);
	ck_assert_uint_eq(l.n, 0);
	list(INO_BYPATH, &l);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_int_eq(tree_lookup(INO_ROOT, "usb0", &ino), -ENOENT);
	ck_assert_int_eq(tree_stat(old_dir, &st), -ENOENT);
	ck_assert_int_eq(tree_list(old_dir, collect, &l), -ENOENT);
	ck_assert_str_eq(content(INO_DEVICES, NULL), "");
	/* ... and its name is free while it is still on the list (handles may be open). */
	ck_assert_ptr_null(function_by_name("usb0"));
	struct usbdev *b = add_ftdi("1-2");
	ck_assert_str_eq(b->funcs[0]->name, "usb0");
	ck_assert_ptr_eq(function_by_name("usb0"), b->funcs[0]);
	fuse_ino_t new_dir = lookup(INO_ROOT, "usb0");
	ck_assert_uint_ne(new_dir, old_dir);
	ck_assert_str_eq(content(lookup(new_dir, "port"), NULL), "1-2\n");
	list(INO_ROOT, &l);
	ck_assert_uint_eq(l.n, 5);
}
END_TEST

static const char *const info_names[] = {
    "vendor_id", "product_id", "manufacturer", "product", "serial", "busnum",	"devnum", "port",
    "speed",	 "interface",  "descriptors",  "driver",  "state",  "restarts", "ctl",
};

START_TEST(test_function_dir)
{
	struct listing l;
	struct stat st;

	add_ftdi("1-1");
	fuse_ino_t dir = lookup(INO_ROOT, "usb0");
	list(dir, &l);
	ck_assert_uint_eq(l.n, sizeof(info_names) / sizeof(info_names[0]));
	for (size_t i = 0; i < sizeof(info_names) / sizeof(info_names[0]); i++) {
		int at = listed(&l, info_names[i]);
		ck_assert_msg(at >= 0, "%s not listed", info_names[i]);
		ck_assert_uint_eq(l.types[at], S_IFREG);
		fuse_ino_t ino = lookup(dir, info_names[i]);
		ck_assert_uint_eq(ino, l.inos[at]);
		ck_assert_int_eq(tree_stat(ino, &st), 0);
		ck_assert(S_ISREG(st.st_mode));
		ck_assert_uint_eq(st.st_ino, ino);
		ck_assert_uint_eq(st.st_mode & 07777, strcmp(info_names[i], "ctl") == 0 ? 0200 : 0444);
		ck_assert_int_eq(tree_list(ino, collect, &l), -ENOTDIR);
	}
	fuse_ino_t ino;
	ck_assert_int_eq(tree_lookup(dir, "data", &ino), -ENOENT);
}
END_TEST

/*
 * "." and ".." of any inode, as the kernel asks when it decodes an NFS
 * file handle (export_support): the inode itself, and its directory.
 */
START_TEST(test_dot_and_dotdot)
{
	struct usbdev *dev = add_ftdi("1-1");
	struct function *fn = dev->funcs[0];
	add_file(fn, "data", PROTO_KIND_STREAM, 0666, 0);
	add_file(fn, "controls/brightness", PROTO_KIND_SMALL, 0666, 0);
	add_file(fn, "controls/pan/absolute", PROTO_KIND_SMALL, 0666, 0);
	fuse_ino_t dir = lookup(INO_ROOT, "usb0");
	fuse_ino_t controls = lookup(dir, "controls"), pan = lookup(controls, "pan");
	const struct {
		fuse_ino_t ino, parent;
	} cases[] = {
	    {INO_ROOT, INO_ROOT},
	    {INO_DEVICES, INO_ROOT},
	    {INO_EVENTS, INO_ROOT},
	    {INO_BYID, INO_ROOT},
	    {INO_BYPATH, INO_ROOT},
	    {dir, INO_ROOT},
	    {lookup(dir, "vendor_id"), dir},
	    {lookup(dir, "data"), dir},
	    {controls, dir},
	    {lookup(controls, "brightness"), controls},
	    {pan, controls},
	    {lookup(pan, "absolute"), pan},
	    {lookup(INO_BYID, FTDI_BYID), INO_BYID},
	    {lookup(INO_BYPATH, "1-1:1.0"), INO_BYPATH},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_uint_eq(lookup(cases[i].ino, "."), cases[i].ino);
		ck_assert_uint_eq(lookup(cases[i].ino, ".."), cases[i].parent);
	}
	fuse_ino_t ino;
	ck_assert_int_eq(tree_lookup(dir + 0x7ff, ".", &ino), -ENOENT);
	ck_assert_int_eq(tree_lookup((fuse_ino_t)999 << 16, "..", &ino), -ENOENT);
}
END_TEST

START_TEST(test_info_content)
{
	ssize_t len;

	struct usbdev *dev = add_ftdi("1-1");
	ck_assert_str_eq(info("usb0", "vendor_id"), "0403\n");
	ck_assert_str_eq(info("usb0", "product_id"), "6001\n");
	ck_assert_str_eq(info("usb0", "manufacturer"), FTDI_MANUFACTURER "\n");
	ck_assert_str_eq(info("usb0", "product"), "FT232R USB UART\n");
	ck_assert_str_eq(info("usb0", "serial"), "A50285BI\n");
	ck_assert_str_eq(info("usb0", "busnum"), "1\n");
	ck_assert_str_eq(info("usb0", "devnum"), "4\n");
	ck_assert_str_eq(info("usb0", "port"), "1-1\n");
	ck_assert_str_eq(info("usb0", "speed"), "480\n");
	ck_assert_str_eq(info("usb0", "interface"), "00\n");
	ck_assert_str_eq(info("usb0", "driver"), "usb\n");
	ck_assert_str_eq(info("usb0", "state"), "running\n");
	ck_assert_str_eq(info("usb0", "restarts"), "0\n");
	ck_assert_str_eq(info("usb0", "ctl"), "");

	/* The values are live. */
	dev->drv->restarts = 12;
	dev->drv->state = DRV_RESTARTING;
	ck_assert_str_eq(info("usb0", "restarts"), "12\n");
	ck_assert_str_eq(info("usb0", "state"), "restarting\n");

	/* Descriptors: the raw bytes, binary. */
	const char *d = content(lookup2("usb0", "descriptors"), &len);
	ck_assert_int_eq(len, sizeof(desc_ftdi_ft232r));
	ck_assert_int_eq(memcmp(d, desc_ftdi_ft232r, sizeof(desc_ftdi_ft232r)), 0);
}
END_TEST

START_TEST(test_info_second_interface)
{
	struct usbdev *dev =
	    add_dev("3-1.4.2", desc_arduino_uno_r3, sizeof(desc_arduino_uno_r3), "Arduino", "Uno", "");
	ck_assert_uint_eq(dev->nfuncs, 2);
	ck_assert_str_eq(info("usb1", "interface"), "01\n");
	ck_assert_str_eq(info("usb1", "vendor_id"), "2341\n");
	ck_assert_str_eq(info("usb1", "product_id"), "0043\n");
	ck_assert_str_eq(info("usb1", "port"), "3-1.4.2\n");
	/* Functions of one device share its descriptors, all of them. */
	ssize_t len;
	content(lookup2("usb1", "descriptors"), &len);
	ck_assert_int_eq(len, sizeof(desc_arduino_uno_r3));
}
END_TEST

START_TEST(test_info_absent_strings)
{
	struct stat st;

	add_dev("1-1", desc_ftdi_ft232r, sizeof(desc_ftdi_ft232r), "", "", "");
	ck_assert_str_eq(info("usb0", "serial"), "");
	ck_assert_str_eq(info("usb0", "manufacturer"), "");
	ck_assert_str_eq(info("usb0", "product"), "");
	ck_assert_int_eq(tree_stat(lookup2("usb0", "serial"), &st), 0);
	ck_assert_int_eq(st.st_size, 0);
	ck_assert(S_ISREG(st.st_mode));
}
END_TEST

START_TEST(test_by_id)
{
	struct listing l;
	struct stat st;

	add_ftdi("1-1");
	list(INO_BYID, &l);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_str_eq(l.names[0], FTDI_BYID);
	ck_assert_uint_eq(l.types[0], S_IFLNK);
	ck_assert_uint_eq(lookup(INO_BYID, FTDI_BYID), l.inos[0]);
	ck_assert_int_eq(tree_stat(l.inos[0], &st), 0);
	ck_assert(S_ISLNK(st.st_mode));
	/* The link's size is its target's length: "../usb0". */
	ck_assert_int_eq(st.st_size, 7);
	ck_assert_int_eq(tree_render(l.inos[0], (char[8]){0}, 8), -EINVAL);
	ck_assert_int_eq(tree_list(l.inos[0], collect, &l), -ENOTDIR);
}
END_TEST

START_TEST(test_by_id_absent_strings)
{
	struct listing l;

	/* No manufacturer or product: their ids in hex; no serial: no trailing "_". */
	add_dev("1-1", desc_ftdi_ft232r, sizeof(desc_ftdi_ft232r), "", "", "");
	add_dev("1-2", desc_ftdi_ft232r, sizeof(desc_ftdi_ft232r), "FTDI", "FT232R USB UART", "");
	add_dev("1-3", desc_ftdi_ft232r, sizeof(desc_ftdi_ft232r), "", "Serial", "X1");
	list(INO_BYID, &l);
	ck_assert_uint_eq(l.n, 3);
	ck_assert_str_eq(l.names[0], "usb-0403_6001-if00");
	ck_assert_str_eq(l.names[1], "usb-FTDI_FT232R_USB_UART-if00");
	ck_assert_str_eq(l.names[2], "usb-0403_Serial_X1-if00");
}
END_TEST

START_TEST(test_by_id_escaping)
{
	struct listing l;

	/* Whitespace runs (space, tab) become one '_'; leading and trailing ones go. */
	add_dev("1-1", desc_ftdi_ft232r, sizeof(desc_ftdi_ft232r), "  Acme \t Corp  ", "Dev  One", " S N ");
	/* udev's allowed set #+-.:=@_ stays; anything else becomes '_', one per byte. */
	add_dev("1-2", desc_ftdi_ft232r, sizeof(desc_ftdi_ft232r), "a#b+c-d.e:f=g@h_i", "x/y(z)", "1*2");
	list(INO_BYID, &l);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_str_eq(l.names[0], "usb-Acme_Corp_Dev_One_S_N-if00");
	ck_assert_str_eq(l.names[1], "usb-a#b+c-d.e:f=g@h_i_x_y_z__1_2-if00");
	/* No name has a '/' or whitespace: each is one directory entry. */
	for (unsigned i = 0; i < l.n; i++)
		ck_assert_uint_eq(strcspn(l.names[i], "/ \t\n"), strlen(l.names[i]));
}
END_TEST

START_TEST(test_by_path)
{
	struct listing l;
	struct stat st;

	add_ftdi("1-1");
	add_dev("2-1.3", desc_arduino_uno_r3, sizeof(desc_arduino_uno_r3), "Arduino", "Uno", "");
	list(INO_BYPATH, &l);
	ck_assert_uint_eq(l.n, 3);
	ck_assert_str_eq(l.names[0], "1-1:1.0");
	ck_assert_str_eq(l.names[1], "2-1.3:1.0");
	ck_assert_str_eq(l.names[2], "2-1.3:1.1");
	for (unsigned i = 0; i < l.n; i++) {
		ck_assert_uint_eq(l.types[i], S_IFLNK);
		ck_assert_uint_eq(lookup(INO_BYPATH, l.names[i]), l.inos[i]);
		ck_assert_int_eq(tree_stat(l.inos[i], &st), 0);
		ck_assert(S_ISLNK(st.st_mode));
		ck_assert_int_eq(st.st_size, 7); /* ../usbN */
	}
	/* by-id and by-path entries of one function are different inodes. */
	ck_assert_uint_ne(lookup(INO_BYPATH, "1-1:1.0"), lookup(INO_BYID, FTDI_BYID));
	fuse_ino_t ino;
	ck_assert_int_eq(tree_lookup(INO_BYPATH, FTDI_BYID, &ino), -ENOENT);
	ck_assert_int_eq(tree_lookup(INO_BYID, "1-1:1.0", &ino), -ENOENT);
}
END_TEST

START_TEST(test_driver_files)
{
	struct listing l;
	struct stat st;
	fuse_ino_t ino;

	struct usbdev *dev = add_ftdi("1-1");
	struct function *fn = dev->funcs[0];
	add_file(fn, "ep81", PROTO_KIND_STREAM, 0444, 0);
	add_file(fn, "ep02", PROTO_KIND_STREAM | PROTO_FILE_UNTIMED, 0222, 0);
	add_file(fn, "data", PROTO_KIND_BLOCK, 0666, 4096);
	add_file(fn, "old", PROTO_KIND_STREAM, 0444, 0)->present = 0;
	add_file(fn, "stream-size", PROTO_KIND_STREAM, 0444, 999);

	fuse_ino_t dir = lookup(INO_ROOT, "usb0");
	list(dir, &l);
	ck_assert_uint_eq(l.n, sizeof(info_names) / sizeof(info_names[0]) + 4);
	ck_assert_int_ge(listed(&l, "ep81"), 0);
	ck_assert_int_ge(listed(&l, "ep02"), 0);
	ck_assert_int_ge(listed(&l, "data"), 0);
	ck_assert_int_ge(listed(&l, "stream-size"), 0);
	/* Not in the latest HELLO: neither listed nor found. */
	ck_assert_int_eq(listed(&l, "old"), -1);
	ck_assert_int_eq(tree_lookup(dir, "old", &ino), -ENOENT);

	ino = lookup(dir, "ep81");
	ck_assert_uint_eq(ino, l.inos[listed(&l, "ep81")]);
	ck_assert_int_eq(tree_stat(ino, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0444);
	ck_assert_int_eq(st.st_size, 0);
	ck_assert_uint_eq(st.st_ino, ino);
	/* Driver files are the driver's to serve. */
	ck_assert_int_eq(tree_render(ino, (char[8]){0}, 8), -EINVAL);
	ck_assert_int_eq(tree_list(ino, collect, &l), -ENOTDIR);

	ck_assert_int_eq(tree_stat(lookup(dir, "ep02"), &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0222);
	ck_assert_int_eq(st.st_size, 0);
	ck_assert_int_eq(tree_stat(lookup(dir, "data"), &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0666);
	ck_assert_int_eq(st.st_size, 4096);
	/* A stream's size is 0 whatever the driver said. */
	ck_assert_int_eq(tree_stat(lookup(dir, "stream-size"), &st), 0);
	ck_assert_int_eq(st.st_size, 0);
	/* A driver file's name does not shadow an info file, and vice versa. */
	ck_assert_uint_ne(lookup(dir, "data"), lookup(dir, "state"));
}
END_TEST

START_TEST(test_driver_subdirs)
{
	struct listing l;
	struct stat st;
	fuse_ino_t ino;

	struct usbdev *dev = add_ftdi("1-1");
	struct function *fn = dev->funcs[0];
	add_file(fn, "controls/old", PROTO_KIND_SMALL, 0444, 0)->present = 0;
	add_file(fn, "frame.jpg", PROTO_KIND_STREAM, 0444, 0);
	add_file(fn, "controls/brightness", PROTO_KIND_SMALL, 0666, 0);
	add_file(fn, "gone/x", PROTO_KIND_SMALL, 0444, 0)->present = 0;
	add_file(fn, "controls/pan/absolute", PROTO_KIND_SMALL, 0666, 0);
	add_file(fn, "controls/contrast", PROTO_KIND_SMALL, 0444, 0);

	fuse_ino_t dir = lookup(INO_ROOT, "usb0");
	list(dir, &l);
	/* frame.jpg and controls, once; no directory of absent files only. */
	ck_assert_uint_eq(l.n, sizeof(info_names) / sizeof(info_names[0]) + 2);
	ck_assert_int_eq(listed(&l, "gone"), -1);
	ck_assert_int_eq(tree_lookup(dir, "gone", &ino), -ENOENT);
	fuse_ino_t controls = lookup(dir, "controls");
	ck_assert_uint_eq(controls, l.inos[listed(&l, "controls")]);
	ck_assert_int_eq(tree_stat(controls, &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0555);
	ck_assert_int_eq(tree_render(controls, (char[8]){0}, 8), -EINVAL);

	list(controls, &l);
	ck_assert_uint_eq(l.n, 3);
	ck_assert_int_ge(listed(&l, "brightness"), 0);
	ck_assert_int_ge(listed(&l, "contrast"), 0);
	ck_assert_int_ge(listed(&l, "pan"), 0);
	ck_assert_int_eq(listed(&l, "old"), -1);
	ck_assert_int_eq(tree_stat(lookup(controls, "brightness"), &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0666);
	ck_assert_int_eq(tree_list(lookup(controls, "brightness"), collect, &l), -ENOTDIR);

	fuse_ino_t pan = lookup(controls, "pan");
	ck_assert_uint_ne(pan, controls);
	list(pan, &l);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_int_ge(listed(&l, "absolute"), 0);
	/* A path is found only through its directories. */
	ck_assert_int_eq(tree_lookup(dir, "brightness", &ino), -ENOENT);
	ck_assert_int_eq(tree_lookup(dir, "controls/brightness", &ino), -ENOENT);

	/* A directory is named by its lowest present slot: a file coming back there renames it. */
	fn->files[0].present = 1;
	ck_assert_uint_ne(lookup(dir, "controls"), controls);
	ck_assert_int_eq(tree_stat(controls, &st), -ENOENT);
	fn->files[0].present = 0;
	ck_assert_uint_eq(lookup(dir, "controls"), controls);
	/* Gone with the device. */
	dev->gone = 1;
	ck_assert_int_eq(tree_stat(controls, &st), -ENOENT);
	dev->gone = 0;
}
END_TEST

START_TEST(test_driver_tree)
{
	struct listing l;
	struct stat st;

	struct usbdev *dev = add_ftdi("1-1");
	struct function *fn = dev->funcs[0];
	struct dfile *store = add_file(fn, "store-00010001", PROTO_KIND_DIR, 0755, 0);
	store->id = 0xffffff00u;
	add_file(fn, "ctl-extra", PROTO_KIND_SMALL, 0444, 0);

	fuse_ino_t dir = lookup(INO_ROOT, "usb0");
	list(dir, &l);
	int i = listed(&l, "store-00010001");
	ck_assert_int_ge(i, 0);
	ck_assert_uint_eq(l.types[i], S_IFDIR);
	/* The inode is made of the function and the node id: the same after a respawn's HELLO. */
	fuse_ino_t ino = lookup(dir, "store-00010001");
	ck_assert_uint_eq(ino, l.inos[i]);
	ck_assert_uint_eq(ino, tree_node_ino(fn, 0xffffff00u));
	ck_assert_uint_ne(ino & (1ull << 63), 0);
	ck_assert_int_eq(tree_stat(ino, &st), 0);
	ck_assert_uint_eq(st.st_mode, S_IFDIR | 0755);
	ck_assert_uint_eq(st.st_ino, ino);
	/* Known while the driver is down: HELLO said so.  Another node's attributes are the driver's. */
	ck_assert_uint_ne(tree_node_ino(fn, 5), tree_node_ino(fn, 6));
	ck_assert_uint_ne(tree_node_ino(fn, 5), ino);
	struct proto_node pn = {
	    .id = 5, .kind = PROTO_KIND_BLOCK, .mode = 0644, .size = 300000, .mtime = 1718445900};
	snprintf(pn.name, sizeof(pn.name), "IMG_0001.JPG");
	tree_node_stat(fn, &pn, &st);
	ck_assert_uint_eq(st.st_ino, tree_node_ino(fn, 5));
	ck_assert_uint_eq(st.st_mode, S_IFREG | 0644);
	ck_assert_int_eq(st.st_size, 300000);
	ck_assert_int_eq(st.st_mtime, 1718445900);
	pn.kind = PROTO_KIND_DIR;
	pn.size = 0;
	pn.mode = 0555;
	tree_node_stat(fn, &pn, &st);
	ck_assert_uint_eq(st.st_mode, S_IFDIR | 0555);
	ck_assert_int_eq(tree_stat(tree_node_ino(fn, 5), &st), -ENOENT); /* the driver's to say */
	/* NFS's . and ..: the daemon knows them for the HELLO directory only. */
	fuse_ino_t up;
	ck_assert_int_eq(tree_lookup(ino, "..", &up), 0);
	ck_assert_uint_eq(up, dir);
	ck_assert_int_eq(tree_lookup(ino, ".", &up), 0);
	ck_assert_uint_eq(up, ino);
	ck_assert_int_eq(tree_lookup(tree_node_ino(fn, 5), "..", &up), -ENOENT);
	/* A node of a function that does not exist is nothing. */
	ck_assert_int_eq(tree_stat(((fuse_ino_t)1 << 63) | ((fuse_ino_t)999 << 32) | 5, &st), -ENOENT);
	ck_assert_int_eq(tree_stat(((fuse_ino_t)1 << 63) | ((fuse_ino_t)fn->id << 32), &st), -ENOENT);
}
END_TEST

START_TEST(test_unknown_inodes)
{
	struct stat st;
	struct listing l;
	char buf[16];

	add_ftdi("1-1");
	fuse_ino_t dir = lookup(INO_ROOT, "usb0");
	const fuse_ino_t bad[] = {
	    0,
	    6,
	    7,
	    0xffff,
	    dir + 16,
	    dir + 0x3f,
	    dir + 0x42,
	    dir + 0xff,
	    dir + 0x100,
	    dir + 0xffff,
	    dir + 0x8000,
	    dir + 0xb000,
	    dir + (1 << 16),
	    (fuse_ino_t)999 << 16,
	    ((fuse_ino_t)999 << 16) | 1,
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(tree_stat(bad[i], &st) == -ENOENT, "stat of %#llx", (unsigned long long)bad[i]);
		ck_assert_int_eq(tree_list(bad[i], collect, &l), -ENOENT);
		ck_assert_int_eq(tree_render(bad[i], buf, sizeof(buf)), -ENOENT);
	}
	fuse_ino_t ino;
	ck_assert_int_eq(tree_lookup(0x12345, "x", &ino), -ENOENT);
}
END_TEST

START_TEST(test_not_directories)
{
	struct listing l;
	fuse_ino_t ino;

	add_ftdi("1-1");
	ck_assert_int_eq(tree_list(INO_DEVICES, collect, &l), -ENOTDIR);
	ck_assert_int_eq(tree_list(INO_EVENTS, collect, &l), -ENOTDIR);
	ck_assert_int_eq(tree_list(lookup2("usb0", "state"), collect, &l), -ENOTDIR);
	ck_assert_int_eq(tree_lookup(INO_DEVICES, "x", &ino), -ENOTDIR);
	/* Directories have no content to render. */
	ck_assert_int_eq(tree_render(INO_ROOT, (char[8]){0}, 8), -EINVAL);
	ck_assert_int_eq(tree_render(lookup(INO_ROOT, "usb0"), (char[8]){0}, 8), -EINVAL);
}
END_TEST

START_TEST(test_devices_file)
{
	ssize_t len;

	struct usbdev *a = add_ftdi("1-1");
	ck_assert_str_eq(content(INO_DEVICES, &len), "usb0 1-1 0403:6001 usb running 0 1234\n");

	struct usbdev *b = add_dev("1-2", desc_arduino_uno_r3, sizeof(desc_arduino_uno_r3), "", "", "");
	b->drv->pid = 0;
	b->drv->state = DRV_FAILED;
	b->drv->restarts = 6;
	ck_assert_str_eq(content(INO_DEVICES, &len), "usb0 1-1 0403:6001 usb running 0 1234\n"
						     "usb1 1-2 2341:0043 usb failed 6 -\n"
						     "usb2 1-2 2341:0043 usb failed 6 -\n");
	a->gone = 1;
	ck_assert_str_eq(content(INO_DEVICES, &len), "usb1 1-2 2341:0043 usb failed 6 -\n"
						     "usb2 1-2 2341:0043 usb failed 6 -\n");
}
END_TEST

/*
 * Rendering into a buffer shorter than the content gives a prefix of it
 * (for the devices table, whole lines are fine too), never more than asked
 * and never snprintf's terminating NUL as if it were content.
 */
static void check_short_renders(fuse_ino_t ino)
{
	char full[4096], part[4096];
	ssize_t len = tree_render(ino, full, sizeof(full));

	ck_assert_int_gt(len, 0);
	for (size_t cap = 0; cap <= (size_t)len; cap++) {
		memset(part, '#', sizeof(part));
		ssize_t n = tree_render(ino, part, cap);
		ck_assert_int_ge(n, 0);
		ck_assert_msg((size_t)n <= cap, "cap %zu: %zd bytes", cap, n);
		ck_assert_msg(memcmp(part, full, (size_t)n) == 0,
			      "cap %zu: %zd bytes, not a prefix of \"%.*s\"", cap, n, (int)len, full);
		ck_assert_int_eq(part[cap], '#');
	}
	/* With room to spare, all of it. */
	ck_assert_int_eq(tree_render(ino, part, (size_t)len + 1), len);
}

START_TEST(test_short_buffers)
{
	add_ftdi("1-1");
	add_ftdi("1-2");
	check_short_renders(INO_DEVICES);
	check_short_renders(lookup2("usb0", "manufacturer"));
	check_short_renders(lookup2("usb0", "vendor_id"));
	check_short_renders(lookup2("usb0", "state"));
	check_short_renders(lookup2("usb1", "descriptors"));
}
END_TEST

START_TEST(test_state_names)
{
	static const struct {
		enum drv_state s;
		const char *name;
	} states[] = {
	    {DRV_STARTING, "starting"}, {DRV_RUNNING, "running"}, {DRV_RESTARTING, "restarting"},
	    {DRV_FAILED, "failed"},	{DRV_GONE, "gone"},
	};
	char line[80];

	struct usbdev *dev = add_ftdi("1-1");
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		ck_assert_str_eq(drv_state_name(states[i].s), states[i].name);
		dev->drv->state = states[i].s;
		snprintf(line, sizeof(line), "%s\n", states[i].name);
		ck_assert_str_eq(info("usb0", "state"), line);
		snprintf(line, sizeof(line), "usb0 1-1 0403:6001 usb %s 0 1234\n", states[i].name);
		ck_assert_str_eq(content(INO_DEVICES, NULL), line);
	}
}
END_TEST

START_TEST(test_events_file)
{
	struct stat st;
	ssize_t len;

	log_init(1, 0);
	ck_assert_int_eq(tree_stat(INO_EVENTS, &st), 0);
	ck_assert(S_ISREG(st.st_mode));
	ck_assert_uint_eq(st.st_mode & 07777, 0444);
	ck_assert_int_eq(st.st_size, 0);
	ck_assert_ptr_nonnull(freopen("/dev/null", "w", stderr));
	event_add("usb0", "attach");
	const char *s = content(INO_EVENTS, &len);
	ck_assert_uint_eq(len, events_size());
	ck_assert_ptr_nonnull(strstr(s, "Z usb0 attach\n"));
}
END_TEST

Suite *tree_suite(void)
{
	Suite *s = suite_create("tree");
	TCase *names = tcase_create("names");
	TCase *files = tcase_create("files");

	tcase_add_test(names, test_root_empty);
	tcase_add_test(names, test_root_lists_functions);
	tcase_add_test(names, test_lowest_free_index);
	tcase_add_test(names, test_gone_device_frees_its_name);
	tcase_add_test(names, test_by_id);
	tcase_add_test(names, test_by_id_absent_strings);
	tcase_add_test(names, test_by_id_escaping);
	tcase_add_test(names, test_by_path);
	suite_add_tcase(s, names);
	tcase_add_test(files, test_function_dir);
	tcase_add_test(files, test_info_content);
	tcase_add_test(files, test_info_second_interface);
	tcase_add_test(files, test_info_absent_strings);
	tcase_add_test(files, test_driver_files);
	tcase_add_test(files, test_driver_subdirs);
	tcase_add_test(files, test_dot_and_dotdot);
	tcase_add_test(files, test_unknown_inodes);
	tcase_add_test(files, test_driver_tree);
	tcase_add_test(files, test_not_directories);
	tcase_add_test(files, test_devices_file);
	tcase_add_test(files, test_short_buffers);
	tcase_add_test(files, test_state_names);
	tcase_add_test(files, test_events_file);
	suite_add_tcase(s, files);
	return s;
}
