/*
 * plugfs against libusb itself, on the same emulated devices in the same
 * run: a 64 MiB stick (`disk`, a Cruzer Contour) and a bulk loopback
 * (`loopback`).  Each round mounts plugfs and measures through its files,
 * unmounts it (so the drivers let go of the interfaces), and measures the
 * same with a direct libusb program (open the node, wrap it, claim); the
 * order alternates from round to round.
 *
 *   disk     reading disk0/data with read(2) of 4 KiB, 64 KiB, 1 MiB, as
 *            dd bs= does, against Bulk-Only READ(10) commands of the same
 *            size, cut as the disk driver cuts them (120 KiB at most);
 *            then writing it with write(2), the close counted (it waits
 *            for what the daemon writes back), against WRITE(10)
 *   bulk     writing a block to usb0/ep02 and reading it back from ep81,
 *            against libusb bulk OUT then IN of the same size
 *   control  one 1-byte vendor IN request (0xC0/0x03) through usb0/ep0
 *            (write the setup packet, read the byte), against
 *            libusb_control_transfer: latency per transfer
 *
 * Throughputs are one sample per round; latencies one per transfer.  The
 * absolute numbers are the emulator's (umockdev answers every URB from a
 * thread of plugfs-emu); the ratios say what plugfs adds.  A benchmark: it
 * prints numbers and never fails for being slow.
 *
 *     build/bench-disk [ROUNDS]     (default 3)
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libusb.h>

#include "harness.h"
#include "proto.h"
#include "report.h"

#define KIB	      (1024)
#define MIB	      (1024 * 1024)
#define CONTROL_N     200
#define BOT_CBW_SIG   0x43425355u
#define BOT_CSW_SIG   0x53425355u
#define LOOPBACK_OUT  0x02
#define LOOPBACK_IN   0x81
#define REQ_PATTERN   0x03 /* the loopback's vendor request: wLength bytes of i & 0xff */
#define DISK_BULK_OUT 0x01
#define DISK_BULK_IN  0x81

/* Bytes per sample: enough for a fraction of a second on the emulator. */
static const struct {
	size_t bs;
	long long disk_bytes, bulk_bytes;
	const char *name;
} sizes[] = {
    {4 * KIB, 2 * MIB, 1 * MIB, "4KiB"},
    {64 * KIB, 16 * MIB, 8 * MIB, "64KiB"},
    {MIB, 64 * MIB, 16 * MIB, "1MiB"},
};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

enum side { PLUGFS, DIRECT, NSIDES };
static const char *const side_names[NSIDES] = {"plugfs", "libusb"};

struct results {
	double disk[NSIZES][NSIDES][16], disk_w[NSIZES][NSIDES][16], bulk[NSIZES][NSIDES][16];
	double *control[NSIDES];
	size_t ncontrol[NSIDES];
};

static double mibs(long long bytes, double ms)
{
	return ms > 0 ? (double)bytes / MIB / (ms / 1000) : 0;
}

/* ---- Through plugfs ---- */

static double plugfs_disk(const char *mnt, int write_side, size_t bs, long long total, uint8_t *buf)
{
	char path[256];
	long long done = 0;

	snprintf(path, sizeof(path), "%s/disk0/data", mnt);
	int fd = open(path, write_side ? O_WRONLY : O_RDONLY);
	if (fd < 0)
		return -1;
	double t0 = bench_now_ms();
	while (done < total) {
		ssize_t n = write_side ? write(fd, buf, bs) : read(fd, buf, bs);
		if (n <= 0)
			break;
		done += n;
	}
	if (close(fd) < 0)
		return -1;
	double ms = bench_now_ms() - t0;
	return done == total ? mibs(total, ms) : -1;
}

static double plugfs_bulk(const char *mnt, size_t bs, long long total, uint8_t *buf)
{
	char out[256], in[256];

	snprintf(out, sizeof(out), "%s/usb0/ep02", mnt);
	snprintf(in, sizeof(in), "%s/usb0/ep81", mnt);
	int w = open(out, O_WRONLY), r = open(in, O_RDONLY);
	double t0 = bench_now_ms(), v = -1;
	if (w < 0 || r < 0)
		goto out;
	for (long long done = 0; done < total; done += (long long)bs) {
		if (write(w, buf, bs) != (ssize_t)bs)
			goto out;
		for (size_t got = 0; got < bs;) {
			ssize_t n = read(r, buf + got, bs - got);
			if (n <= 0)
				goto out;
			got += (size_t)n;
		}
	}
	v = mibs(total, bench_now_ms() - t0);
out:
	if (w >= 0)
		close(w);
	if (r >= 0)
		close(r);
	return v;
}

static int plugfs_control(const char *mnt, double *lat, size_t *n)
{
	static const uint8_t setup[8] = {0xc0, REQ_PATTERN, 0, 0, 0, 0, 1, 0};
	char path[256], c;

	snprintf(path, sizeof(path), "%s/usb0/ep0", mnt);
	int fd = open(path, O_RDWR);
	if (fd < 0)
		return -1;
	for (int i = 0; i < CONTROL_N; i++) {
		double t0 = bench_now_ms();
		if (write(fd, setup, sizeof(setup)) != sizeof(setup) || read(fd, &c, 1) != 1) {
			close(fd);
			return -1;
		}
		lat[(*n)++] = (bench_now_ms() - t0) * 1000;
	}
	close(fd);
	return 0;
}

/* ---- Direct libusb ---- */

struct direct {
	int fd;
	libusb_device_handle *h;
};

static int direct_open(struct direct *d, const char *node)
{
	d->h = NULL;
	if ((d->fd = open(node, O_RDWR)) < 0)
		return -1;
	if (libusb_wrap_sys_device(NULL, (intptr_t)d->fd, &d->h) < 0 || libusb_claim_interface(d->h, 0) < 0)
		return -1;
	return 0;
}

static void direct_close(struct direct *d)
{
	if (d->h != NULL) {
		libusb_release_interface(d->h, 0);
		libusb_close(d->h);
	}
	if (d->fd >= 0)
		close(d->fd);
	d->h = NULL;
	d->fd = -1;
}

/* One command; its data stage, if len > 0, goes IN into buf, or OUT from it when `out`. */
static int bot_command(libusb_device_handle *h, uint32_t tag, const uint8_t *cdb, uint8_t cdb_len,
		       uint8_t *buf, int len, int out)
{
	uint8_t cbw[31] = {0}, csw[13];
	int n;

	put_le32(cbw, BOT_CBW_SIG);
	put_le32(cbw + 4, tag);
	put_le32(cbw + 8, (uint32_t)len);
	cbw[12] = len > 0 && !out ? 0x80 : 0;
	cbw[14] = cdb_len;
	memcpy(cbw + 15, cdb, cdb_len);
	if (libusb_bulk_transfer(h, DISK_BULK_OUT, cbw, sizeof(cbw), &n, 0) < 0 || n != sizeof(cbw))
		return -1;
	if (len > 0 &&
	    (libusb_bulk_transfer(h, out ? DISK_BULK_OUT : DISK_BULK_IN, buf, len, &n, 0) < 0 || n != len))
		return -1;
	if (libusb_bulk_transfer(h, DISK_BULK_IN, csw, sizeof(csw), &n, 0) < 0 || n != sizeof(csw))
		return -1;
	return get_le32(csw) == BOT_CSW_SIG && get_le32(csw + 4) == tag ? csw[12] : -1;
}

/* A known state: a Bulk-Only reset, and the power-on UNIT ATTENTION taken by a TEST UNIT READY. */
static void bot_start(libusb_device_handle *h)
{
	static const uint8_t tur[6] = {0};

	libusb_control_transfer(h, 0x21, 0xff, 0, 0, NULL, 0, 0);
	bot_command(h, 1, tur, sizeof(tur), NULL, 0, 0);
}

/*
 * The most one command moves, for both sides: the disk driver cuts a
 * request into commands of at most this on a high-speed stick, as Linux's
 * usb-storage does (drivers/disk.c, MAX_XFER_HIGH).
 */
#define DIRECT_MAX_XFER (240u * 512)

/*
 * READ(10), or WRITE(10) when write_side, of bs bytes at a time from the
 * start of the medium, each cut into commands of DIRECT_MAX_XFER at most.
 */
static double direct_disk(libusb_device_handle *h, int write_side, size_t bs, long long total, uint8_t *buf)
{
	static uint32_t tag = 2;
	double t0 = bench_now_ms();

	for (long long off = 0; off < total; off += (long long)bs)
		for (size_t at = 0; at < bs; at += DIRECT_MAX_XFER) {
			size_t len = bs - at < DIRECT_MAX_XFER ? bs - at : DIRECT_MAX_XFER;
			uint32_t lba = (uint32_t)((off + (long long)at) / 512);
			uint16_t blocks = (uint16_t)(len / 512);
			uint8_t cdb[10] = {write_side ? 0x2a : 0x28,
					   0,
					   (uint8_t)(lba >> 24),
					   (uint8_t)(lba >> 16),
					   (uint8_t)(lba >> 8),
					   (uint8_t)lba,
					   0,
					   (uint8_t)(blocks >> 8),
					   (uint8_t)blocks,
					   0};
			if (bot_command(h, tag++, cdb, sizeof(cdb), buf + at, (int)len, write_side) != 0)
				return -1;
		}
	return mibs(total, bench_now_ms() - t0);
}

static double direct_bulk(libusb_device_handle *h, size_t bs, long long total, uint8_t *buf)
{
	double t0 = bench_now_ms();
	int n;

	for (long long done = 0; done < total; done += (long long)bs) {
		if (libusb_bulk_transfer(h, LOOPBACK_OUT, buf, (int)bs, &n, 0) < 0 || n != (int)bs)
			return -1;
		for (int got = 0; got < (int)bs; got += n)
			if (libusb_bulk_transfer(h, LOOPBACK_IN, buf + got, (int)bs - got, &n, 0) < 0)
				return -1;
	}
	return mibs(total, bench_now_ms() - t0);
}

static int direct_control(libusb_device_handle *h, double *lat, size_t *n)
{
	uint8_t c;

	for (int i = 0; i < CONTROL_N; i++) {
		double t0 = bench_now_ms();
		if (libusb_control_transfer(h, 0xc0, REQ_PATTERN, 0, 0, &c, 1, 0) != 1)
			return -1;
		lat[(*n)++] = (bench_now_ms() - t0) * 1000;
	}
	return 0;
}

/* ---- One round of each side ---- */

static pid_t plugfs_start(const char *mnt)
{
	char path[300];
	pid_t pid = bench_plugfs_start(mnt, "plugfs-driver");

	if (pid < 0)
		return -1;
	uint64_t deadline = mono_ms() + 20000;
	const char *const fns[] = {"disk0", "usb0"};
	for (int i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "%s/%s/state", mnt, fns[i]);
		while (strcmp(read_line(path), "running") != 0 && mono_ms() < deadline)
			usleep(10000);
		if (strcmp(read_line(path), "running") != 0) {
			fprintf(stderr, "bench-disk: %s not running\n", fns[i]);
			kill(pid, SIGTERM);
			waitpid(pid, NULL, 0);
			return -1;
		}
	}
	return pid;
}

/* The device node of a function, read off the mount. */
static void node_of(const char *mnt, const char *fn, char *node, size_t cap)
{
	char path[300];

	snprintf(path, sizeof(path), "%s/%s/busnum", mnt, fn);
	unsigned bus = (unsigned)atoi(read_line(path));
	snprintf(path, sizeof(path), "%s/%s/devnum", mnt, fn);
	snprintf(node, cap, "/dev/bus/usb/%03u/%03u", bus, (unsigned)atoi(read_line(path)));
}

static int round_plugfs(const char *mnt, int round, struct results *res, uint8_t *buf, char nodes[2][64])
{
	pid_t pid = plugfs_start(mnt);
	int r = -1;

	if (pid < 0)
		return -1;
	node_of(mnt, "disk0", nodes[0], sizeof(nodes[0]));
	node_of(mnt, "usb0", nodes[1], sizeof(nodes[1]));
	for (size_t z = 0; z < NSIZES; z++) {
		res->disk[z][PLUGFS][round] = plugfs_disk(mnt, 0, sizes[z].bs, sizes[z].disk_bytes, buf);
		res->disk_w[z][PLUGFS][round] = plugfs_disk(mnt, 1, sizes[z].bs, sizes[z].disk_bytes, buf);
		res->bulk[z][PLUGFS][round] = plugfs_bulk(mnt, sizes[z].bs, sizes[z].bulk_bytes, buf);
		if (res->disk[z][PLUGFS][round] < 0 || res->disk_w[z][PLUGFS][round] < 0 ||
		    res->bulk[z][PLUGFS][round] < 0) {
			fprintf(stderr, "bench-disk: plugfs %s failed\n", sizes[z].name);
			goto out;
		}
	}
	r = plugfs_control(mnt, res->control[PLUGFS], &res->ncontrol[PLUGFS]);
out:
	/* Unmount: the drivers exit and let go of the interfaces. */
	kill(pid, SIGTERM);
	waitpid(pid, NULL, 0);
	return r;
}

static int round_direct(int round, struct results *res, uint8_t *buf, char nodes[2][64])
{
	struct direct disk = {.fd = -1}, lb = {.fd = -1};
	int r = -1;

	if (direct_open(&disk, nodes[0]) < 0 || direct_open(&lb, nodes[1]) < 0) {
		fprintf(stderr, "bench-disk: cannot open %s and %s with libusb\n", nodes[0], nodes[1]);
		goto out;
	}
	bot_start(disk.h);
	for (size_t z = 0; z < NSIZES; z++) {
		res->disk[z][DIRECT][round] = direct_disk(disk.h, 0, sizes[z].bs, sizes[z].disk_bytes, buf);
		res->disk_w[z][DIRECT][round] = direct_disk(disk.h, 1, sizes[z].bs, sizes[z].disk_bytes, buf);
		res->bulk[z][DIRECT][round] = direct_bulk(lb.h, sizes[z].bs, sizes[z].bulk_bytes, buf);
		if (res->disk[z][DIRECT][round] < 0 || res->disk_w[z][DIRECT][round] < 0 ||
		    res->bulk[z][DIRECT][round] < 0) {
			fprintf(stderr, "bench-disk: libusb %s failed\n", sizes[z].name);
			goto out;
		}
	}
	r = direct_control(lb.h, res->control[DIRECT], &res->ncontrol[DIRECT]);
out:
	direct_close(&disk);
	direct_close(&lb);
	return r;
}

static void report(const struct results *res, int rounds)
{
	char fig[96];

	for (size_t z = 0; z < NSIZES; z++) {
		const char *what[3] = {"disk read", "disk write", "bulk loopback"};
		for (int k = 0; k < 3; k++) {
			const double(*v)[16] = k == 0 ? res->disk[z] : k == 1 ? res->disk_w[z] : res->bulk[z];
			for (int i = 0; i < NSIDES; i++) {
				snprintf(fig, sizeof(fig), "%s %s %s", what[k], sizes[z].name, side_names[i]);
				bench_report("usb", fig, "MiB/s", v[i], (size_t)rounds);
			}
			double p = bench_median(v[PLUGFS], (size_t)rounds),
			       d = bench_median(v[DIRECT], (size_t)rounds);
			snprintf(fig, sizeof(fig), "%s %s ratio plugfs/libusb", what[k], sizes[z].name);
			bench_report_value("usb", fig, "x", d > 0 ? p / d : 0);
		}
	}
	for (int i = 0; i < NSIDES; i++) {
		snprintf(fig, sizeof(fig), "control 1 byte %s", side_names[i]);
		bench_report("usb", fig, "us", res->control[i], res->ncontrol[i]);
	}
}

static int inside(int rounds)
{
	char dir[] = "/tmp/plugfs-bench-disk.XXXXXX", mnt[64], nodes[2][64];
	static struct results res;
	uint8_t *buf = aligned_alloc(4096, MIB); /* page-aligned, as dd's buffer is */
	int r = 1;

	if (buf == NULL || mkdtemp(dir) == NULL)
		return 1;
	memset(buf, 0x5a, MIB);
	snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
	mkdir(mnt, 0755);
	for (int i = 0; i < NSIDES; i++)
		if ((res.control[i] = calloc((size_t)rounds * CONTROL_N, sizeof(double))) == NULL)
			goto out;
	libusb_set_option(NULL, LIBUSB_OPTION_NO_DEVICE_DISCOVERY);
	if (libusb_init(NULL) < 0)
		goto out;
	/* plugfs first on even rounds; it also finds the device nodes, so round 0 starts with it. */
	for (int round = 0; round < rounds; round++) {
		if (round % 2 == 0 && round_plugfs(mnt, round, &res, buf, nodes) < 0)
			goto out_libusb;
		if (round_direct(round, &res, buf, nodes) < 0)
			goto out_libusb;
		if (round % 2 == 1 && round_plugfs(mnt, round, &res, buf, nodes) < 0)
			goto out_libusb;
	}
	report(&res, rounds);
	r = 0;
out_libusb:
	libusb_exit(NULL);
out:
	for (int i = 0; i < NSIDES; i++)
		free(res.control[i]);
	rmdir(mnt);
	rmdir(dir);
	free(buf);
	return r;
}

int main(int argc, char **argv)
{
	char emu[512], self[512], r[16];
	int rounds = 3;

	if (argc > 1 && strcmp(argv[1], "--inside") == 0)
		return inside(argc > 2 ? atoi(argv[2]) : rounds);
	if (argc > 1)
		rounds = atoi(argv[1]);
	if (rounds <= 0 || rounds > 16)
		return 2;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 1;
	self[n] = '\0';
	snprintf(emu, sizeof(emu), "%s/plugfs-emu", build_dir());
	snprintf(r, sizeof(r), "%d", rounds);
	execl(emu, emu, "--model", "disk", "--model", "loopback", "--", self, "--inside", r, (char *)NULL);
	fprintf(stderr, "bench-disk: %s: %s\n", emu, strerror(errno));
	return 1;
}
