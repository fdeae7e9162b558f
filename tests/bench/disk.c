/*
 * Disk throughput: reading the 64 MiB `disk` model (a Cruzer Contour) at
 * 1 MiB blocks through plugfs's disk0/data, against a direct libusb
 * Bulk-Only reader of the same emulated stick in the same plugfs-emu run
 * (open the node, wrap it, claim, READ(10) of 1 MiB at a time).  The ratio
 * is the cost of FUSE plus the driver process; the absolute numbers are
 * the emulator's.  A benchmark: it prints numbers and never fails for
 * being slow.
 *
 *     build/bench-disk [ROUNDS]     (default 3; best round of each kind)
 *
 * It runs itself again under plugfs-emu (`--inside`), mounts plugfs there,
 * reads, unmounts (so the driver lets go of the interface), then reads
 * with libusb.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libusb.h>

#include "harness.h"
#include "proto.h"

#define MIB	   (1024 * 1024)
#define STICK_SIZE (64ll * MIB)

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static double mib_per_s(long long bytes, uint64_t us)
{
	return us > 0 ? (double)bytes / MIB / ((double)us / 1e6) : 0;
}

/* Reads the whole file at 1 MiB a read(), as dd bs=1M does; bytes read or -1. */
static long long read_through(const char *path, uint8_t *buf)
{
	int fd = open(path, O_RDONLY);
	long long total = 0;
	ssize_t n;

	if (fd < 0)
		return -1;
	while ((n = read(fd, buf, MIB)) > 0)
		total += n;
	close(fd);
	return n < 0 ? -1 : total;
}

/* One BOT command reading `len` bytes into buf; 0 or -1. */
static int bot_read(libusb_device_handle *h, uint32_t tag, uint32_t lba, uint16_t blocks, uint8_t *buf,
		    int len)
{
	uint8_t cbw[31] = {0}, csw[13];
	int n;

	put_le32(cbw, 0x43425355u);
	put_le32(cbw + 4, tag);
	put_le32(cbw + 8, (uint32_t)len);
	cbw[12] = 0x80;
	cbw[14] = 10;
	cbw[15] = 0x28; /* READ(10) */
	cbw[17] = (uint8_t)(lba >> 24);
	cbw[18] = (uint8_t)(lba >> 16);
	cbw[19] = (uint8_t)(lba >> 8);
	cbw[20] = (uint8_t)lba;
	cbw[22] = (uint8_t)(blocks >> 8);
	cbw[23] = (uint8_t)blocks;
	if (libusb_bulk_transfer(h, 0x01, cbw, sizeof(cbw), &n, 0) < 0 || n != sizeof(cbw))
		return -1;
	if (libusb_bulk_transfer(h, 0x81, buf, len, &n, 0) < 0 || n != len)
		return -1;
	if (libusb_bulk_transfer(h, 0x81, csw, sizeof(csw), &n, 0) < 0 || n != sizeof(csw))
		return -1;
	return get_le32(csw) == 0x53425355u && get_le32(csw + 4) == tag && csw[12] == 0 ? 0 : -1;
}

/* Microseconds for reading the whole stick with libusb, or 0 on failure. */
static uint64_t direct_read(const char *node, uint8_t *buf, int rounds)
{
	libusb_device_handle *h = NULL;
	uint64_t best = 0;
	int fd = open(node, O_RDWR);

	if (fd < 0) {
		fprintf(stderr, "bench-disk: %s: %s\n", node, strerror(errno));
		return 0;
	}
	libusb_set_option(NULL, LIBUSB_OPTION_NO_DEVICE_DISCOVERY);
	if (libusb_init(NULL) < 0 || libusb_wrap_sys_device(NULL, (intptr_t)fd, &h) < 0 ||
	    libusb_claim_interface(h, 0) < 0) {
		fprintf(stderr, "bench-disk: cannot open the stick with libusb\n");
		goto out;
	}
	/* A known state, and the power-on UNIT ATTENTION taken by a TEST UNIT READY. */
	libusb_control_transfer(h, 0x21, 0xff, 0, 0, NULL, 0, 0);
	uint8_t tur[31] = {0}, csw[13];
	int n;
	put_le32(tur, 0x43425355u);
	put_le32(tur + 4, 1);
	tur[14] = 6;
	libusb_bulk_transfer(h, 0x01, tur, sizeof(tur), &n, 0);
	libusb_bulk_transfer(h, 0x81, csw, sizeof(csw), &n, 0);
	uint32_t tag = 2;
	for (int r = 0; r < rounds; r++) {
		uint64_t t0 = now_us();
		for (long long off = 0; off < STICK_SIZE; off += MIB)
			if (bot_read(h, tag++, (uint32_t)(off / 512), MIB / 512, buf, MIB) < 0) {
				fprintf(stderr, "bench-disk: libusb READ(10) at %lld failed\n", off);
				best = 0;
				goto out;
			}
		uint64_t us = now_us() - t0;
		if (best == 0 || us < best)
			best = us;
	}
out:
	if (h != NULL) {
		libusb_release_interface(h, 0);
		libusb_close(h);
	}
	libusb_exit(NULL);
	close(fd);
	return best;
}

static int inside(int rounds)
{
	char dir[] = "/tmp/plugfs-bench-disk.XXXXXX", mnt[64], path[128], plugfs[512], driver[512], node[64];
	uint8_t *buf = malloc(MIB);
	uint64_t fuse_us = 0;
	int status;

	if (buf == NULL || mkdtemp(dir) == NULL)
		return 1;
	snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
	mkdir(mnt, 0755);
	snprintf(plugfs, sizeof(plugfs), "%s/plugfs", build_dir());
	snprintf(driver, sizeof(driver), "%s/plugfs-driver", build_dir());
	setenv("PLUGFS_DRIVER", driver, 1);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		execl(plugfs, plugfs, "-f", mnt, (char *)NULL);
		_exit(127);
	}
	snprintf(path, sizeof(path), "%s/disk0/state", mnt);
	uint64_t deadline = mono_ms() + 20000;
	while (strcmp(read_line(path), "running") != 0 && mono_ms() < deadline)
		usleep(10000);
	if (strcmp(read_line(path), "running") != 0) {
		fprintf(stderr, "bench-disk: disk0 not running\n");
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
		return 1;
	}
	snprintf(path, sizeof(path), "%s/disk0/busnum", mnt);
	unsigned bus = (unsigned)atoi(read_line(path));
	snprintf(path, sizeof(path), "%s/disk0/devnum", mnt);
	unsigned devnum = (unsigned)atoi(read_line(path));
	snprintf(node, sizeof(node), "/dev/bus/usb/%03u/%03u", bus, devnum);
	snprintf(path, sizeof(path), "%s/disk0/data", mnt);
	for (int r = 0; r < rounds; r++) {
		uint64_t t0 = now_us();
		long long n = read_through(path, buf);
		uint64_t us = now_us() - t0;
		if (n != STICK_SIZE) {
			fprintf(stderr, "bench-disk: read %lld bytes of disk0/data\n", n);
			fuse_us = 0;
			break;
		}
		if (fuse_us == 0 || us < fuse_us)
			fuse_us = us;
	}
	/* Unmount: the driver exits and lets go of the interface. */
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	rmdir(mnt);
	rmdir(dir);
	uint64_t direct_us = direct_read(node, buf, rounds);
	free(buf);
	if (fuse_us == 0 || direct_us == 0)
		return 1;
	double f = mib_per_s(STICK_SIZE, fuse_us), d = mib_per_s(STICK_SIZE, direct_us);
	printf("disk: 64 MiB at 1 MiB blocks, best of %d\n", rounds);
	printf("  through plugfs disk0/data: %7.1f MiB/s\n", f);
	printf("  direct libusb BOT reader:  %7.1f MiB/s\n", d);
	printf("  ratio plugfs/direct:       %7.2f\n", d > 0 ? f / d : 0);
	return 0;
}

int main(int argc, char **argv)
{
	char emu[512], self[512];
	int rounds = 3;

	if (argc > 1 && strcmp(argv[1], "--inside") == 0)
		return inside(argc > 2 ? atoi(argv[2]) : rounds);
	if (argc > 1)
		rounds = atoi(argv[1]);
	if (rounds <= 0)
		return 2;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 1;
	self[n] = '\0';
	snprintf(emu, sizeof(emu), "%s/plugfs-emu", build_dir());
	char r[16];
	snprintf(r, sizeof(r), "%d", rounds);
	execl(emu, emu, "--model", "disk", "--", self, "--inside", r, (char *)NULL);
	fprintf(stderr, "bench-disk: %s: %s\n", emu, strerror(errno));
	return 1;
}
