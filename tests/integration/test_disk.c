/*
 * The disk driver over the emulated sticks (tests/emu/model_disk.c): dd
 * and cmp through disk0/data as a user would run them, the edges of the
 * medium, the sense-to-errno mapping, BOT error recovery, two LUNs, and a
 * driver killed under a running dd.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../emu/disk_pattern.h"
#include "harness.h"
#include "proto.h"
#include "suites.h"

#define MIB	   (1024 * 1024)
#define STICK_SIZE (64ll * MIB)
#define LUN1_SIZE  (16ll * MIB)
#define MAX_CHUNK  (300 * 1024)

static struct mnt m;

static void start(const char *model, unsigned nfuncs)
{
	const char *const models[] = {model, NULL};
	ck_assert_int_eq(mnt_start(&m, models, "timeout=5000", nfuncs), 0);
}

static void setup_disk(void)
{
	start("disk", 1);
}
static void setup_4k(void)
{
	start("disk-4k", 1);
}
static void setup_2lun(void)
{
	start("disk-2lun", 2);
}
static void setup_stall(void)
{
	start("disk-stall", 1);
}
static void setup_phase(void)
{
	start("disk-phase", 1);
}
static void setup_nomedium(void)
{
	start("disk-nomedium", 1);
}
static void setup_ro(void)
{
	start("disk-ro", 1);
}
static void setup_bad(void)
{
	start("disk-bad", 1);
}
static void setup_120k(void)
{
	start("disk-120k", 1);
}

static void teardown(void)
{
	mnt_stop(&m);
}

/* ---- helpers ---- */

/* xorshift64*, seeded and printed so a failure can be replayed. */
static uint64_t rng_state;
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static void seed(const char *what)
{
	rng_state = (uint64_t)time(NULL) * 2654435761u ^ (uint64_t)getpid();
	if (rng_state == 0)
		rng_state = 1;
	fprintf(stderr, "%s: seed %llu\n", what, (unsigned long long)rng_state);
}

/* The model's initial content of LUN `lun`, [off, off + len). */
static void pattern(unsigned lun, uint64_t off, uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = emu_disk_byte(lun, off + i);
}

static uint8_t *image_alloc(long long size)
{
	uint8_t *p = malloc((size_t)size);
	ck_assert_ptr_nonnull(p);
	return p;
}

static void write_whole(const char *path, const uint8_t *p, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, p, len), (ssize_t)len);
	close(fd);
}

static uint8_t *read_whole(const char *path, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);

	ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
	ck_assert_int_eq(fstat(fd, &st), 0);
	uint8_t *p = image_alloc(st.st_size > 0 ? st.st_size : 1);
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, p + got, (size_t)st.st_size - got);
		ck_assert_int_gt(n, 0);
		got += (size_t)n;
	}
	close(fd);
	*len = got;
	return p;
}

/* Runs a command with stderr to `err` (or the test's); returns its wait status. */
static pid_t spawn(char *const argv[], const char *err)
{
	pid_t pid = fork();

	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (err != NULL) {
			int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
			if (fd >= 0)
				dup2(fd, 2);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	return pid;
}

static int run(char *const argv[], const char *err)
{
	int status;
	pid_t pid = spawn(argv, err);

	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	return status;
}

static char *tmp(const char *name)
{
	static char bufs[4][256];
	static unsigned next;
	char *b = bufs[next++ % 4];

	snprintf(b, sizeof(bufs[0]), "%s/%s", m.dir, name);
	return b;
}

/* dd if=IN of=OUT bs=BS [count=N] conv=notrunc; returns the wait status. */
static int dd(const char *in, const char *out, const char *bs, const char *count, const char *err)
{
	char a_if[300], a_of[300], a_bs[32], a_count[32];

	snprintf(a_if, sizeof(a_if), "if=%s", in);
	snprintf(a_of, sizeof(a_of), "of=%s", out);
	snprintf(a_bs, sizeof(a_bs), "bs=%s", bs);
	snprintf(a_count, sizeof(a_count), "count=%s", count != NULL ? count : "");
	char *argv[] = {"dd", a_if, a_of, a_bs, "conv=notrunc", "status=none", count != NULL ? a_count : NULL,
			NULL};
	return run(argv, err);
}

static void assert_pread(int fd, const uint8_t *want, size_t len, off_t off)
{
	uint8_t *got = image_alloc((long long)len + 1);
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, got + done, len - done, off + (off_t)done);
		ck_assert_msg(n > 0, "pread at %lld: %zd (%s)", (long long)(off + (off_t)done), n,
			      strerror(errno));
		done += (size_t)n;
	}
	ck_assert_msg(memcmp(got, want, len) == 0, "content differs in [%lld, +%zu)", (long long)off, len);
	free(got);
}

/* What a new handle on FN/data reads at [off, off + len) is want. */
static void assert_on_medium(const char *fn, const uint8_t *want, size_t len, off_t off)
{
	char rel[64];

	snprintf(rel, sizeof(rel), "%s/data", fn);
	int fd = open(mpath(&m, rel), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	assert_pread(fd, want, len, off);
	close(fd);
}

/* ---- the stick ---- */

START_TEST(info_files)
{
	struct stat st;
	char link[256];

	ck_assert_str_eq(read_line(mpath(&m, "disk0/vendor")), "SanDisk");
	ck_assert_str_eq(read_line(mpath(&m, "disk0/model")), "Cruzer Contour");
	ck_assert_str_eq(read_line(mpath(&m, "disk0/revision")), "0.10");
	ck_assert_str_eq(read_line(mpath(&m, "disk0/block_size")), "512");
	ck_assert_str_eq(read_line(mpath(&m, "disk0/blocks")), "131072");
	ck_assert_str_eq(read_line(mpath(&m, "disk0/driver")), "disk");
	ck_assert_int_eq(stat(mpath(&m, "disk0/data"), &st), 0);
	ck_assert_int_eq(st.st_size, STICK_SIZE);
	ssize_t n = readlink(mpath(&m, "by-id/usb-SanDisk_Corporation_Cruzer_Contour_0000168307754383-if00"),
			     link, sizeof(link) - 1);
	ck_assert_int_gt(n, 0);
	link[n] = '\0';
	ck_assert_str_eq(link, "../disk0");
	/* One LUN: no second directory. */
	ck_assert_int_eq(stat(mpath(&m, "disk1"), &st), -1);
	/* The data file is seekable and its end is the capacity. */
	int fd = open(mpath(&m, "disk0/data"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_END), STICK_SIZE);
	close(fd);
}
END_TEST

/* dd out the whole stick, dd a new image in, dd it out again: byte-identical. */
/*
 * losetup over disk0/data: a read-only loop device shows the same bytes as
 * the file, and its size is the medium's.  Needs the loop driver
 * (/dev/loop-control); without it the test says so and checks nothing.
 */
START_TEST(losetup_over_data)
{
	if (access("/dev/loop-control", F_OK) != 0) {
		fprintf(stderr, "disk: losetup_over_data: no /dev/loop-control here, not checked\n");
		return;
	}
	const size_t len = 4 << 20;
	uint8_t *want = image_alloc(len), *got = image_alloc(len);
	int fd = open(mpath(&m, "disk0/data"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, want, len, 0), (ssize_t)len);
	close(fd);
	/* Nothing may fail between attach and detach: a loop device left on the file would pin the mount. */
	char *attach[] = {"losetup", "-r", "-f", "--show", (char *)mpath(&m, "disk0/data"), NULL};
	int pipefd[2];
	ck_assert_int_eq(pipe(pipefd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(pipefd[1], 1);
		execvp(attach[0], attach);
		_exit(127);
	}
	close(pipefd[1]);
	char dev[64] = "";
	ssize_t n = read(pipefd[0], dev, sizeof(dev) - 1);
	close(pipefd[0]);
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(status == 0 && n > 0, "losetup failed (status %#x)", status);
	dev[n] = '\0';
	dev[strcspn(dev, "\n")] = '\0';

	int lfd = open(dev, O_RDONLY);
	uint64_t size = 0;
	int size_ok = lfd >= 0 && ioctl(lfd, BLKGETSIZE64, &size) == 0;
	size_t done = 0;
	while (lfd >= 0 && done < len) {
		ssize_t r = read(lfd, got + done, len - done);
		if (r <= 0)
			break;
		done += (size_t)r;
	}
	if (lfd >= 0)
		close(lfd);
	char *detach[] = {"losetup", "-d", dev, NULL};
	ck_assert_int_eq(run(detach, NULL), 0);
	ck_assert_msg(size_ok, "%s: BLKGETSIZE64: %s", dev, strerror(errno));
	ck_assert_uint_eq(size, STICK_SIZE);
	ck_assert_uint_eq(done, len);
	ck_assert(memcmp(got, want, len) == 0);
	free(want);
	free(got);
}
END_TEST

START_TEST(dd_both_ways_1m)
{
	size_t len;
	uint8_t *want = image_alloc(STICK_SIZE);

	pattern(0, 0, want, STICK_SIZE);
	ck_assert_int_eq(dd(mpath(&m, "disk0/data"), tmp("out.img"), "1M", NULL, NULL), 0);
	uint8_t *got = read_whole(tmp("out.img"), &len);
	ck_assert_int_eq(len, STICK_SIZE);
	ck_assert(memcmp(got, want, STICK_SIZE) == 0);
	free(got);

	seed("dd_both_ways_1m");
	for (long long i = 0; i < STICK_SIZE / 8; i++)
		((uint64_t *)(void *)want)[i] = rng();
	write_whole(tmp("in.img"), want, STICK_SIZE);
	ck_assert_int_eq(dd(tmp("in.img"), mpath(&m, "disk0/data"), "1M", NULL, NULL), 0);
	ck_assert_int_eq(dd(mpath(&m, "disk0/data"), tmp("out.img"), "1M", NULL, NULL), 0);
	got = read_whole(tmp("out.img"), &len);
	ck_assert_int_eq(len, STICK_SIZE);
	ck_assert(memcmp(got, want, STICK_SIZE) == 0);
	free(got);
	free(want);
}
END_TEST

/*
 * 512-byte blocks: one BOT command per block, about 2 ms each in the
 * emulator, so `make check` does the first 2 MiB (4096 commands each way)
 * and `make check-long` (PLUGFS_DD512_MIB=64) all 64 MiB, about 9 minutes.
 */
START_TEST(dd_both_ways_512)
{
	size_t len;
	const char *env = getenv("PLUGFS_DD512_MIB");
	size_t span = 2 * MIB;

	if (env != NULL && atoi(env) > 0 && atoi(env) <= STICK_SIZE / MIB)
		span = (size_t)atoi(env) * MIB;
	char count[32];
	uint8_t *want = image_alloc(span);

	snprintf(count, sizeof(count), "%zu", span / 512);
	fprintf(stderr, "dd_both_ways_512: %zu MiB each way\n", span / MIB);

	seed("dd_both_ways_512");
	for (size_t i = 0; i < span / 8; i++)
		((uint64_t *)(void *)want)[i] = rng();
	write_whole(tmp("in512.img"), want, span);
	ck_assert_int_eq(dd(tmp("in512.img"), mpath(&m, "disk0/data"), "512", NULL, NULL), 0);
	ck_assert_int_eq(dd(mpath(&m, "disk0/data"), tmp("out512.img"), "512", count, NULL), 0);
	uint8_t *got = read_whole(tmp("out512.img"), &len);
	ck_assert_int_eq(len, span);
	ck_assert(memcmp(got, want, span) == 0);
	free(got);
	free(want);
}
END_TEST

/*
 * Random writes at any offset and length (partial blocks: read-modify-
 * write), mirrored into a file beside the mount; then `cmp` of random
 * ranges of the stick against it.
 */
static void random_rw(const char *data, long long size, int writes, int cmps)
{
	size_t len;
	int fd = open(data, O_RDWR);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(dd(data, tmp("shadow.img"), "1M", NULL, NULL), 0);
	uint8_t *shadow = read_whole(tmp("shadow.img"), &len);
	ck_assert_int_eq(len, size);
	uint8_t *chunk = image_alloc(MAX_CHUNK);
	for (int i = 0; i < writes; i++) {
		size_t n = 1 + (size_t)(rng() % MAX_CHUNK);
		off_t off = (off_t)(rng() % (uint64_t)(size - (long long)n));
		for (size_t k = 0; k < n; k++)
			chunk[k] = (uint8_t)rng();
		ssize_t w = pwrite(fd, chunk, n, off);
		ck_assert_msg(w == (ssize_t)n, "pwrite %zu at %lld: %zd (%s)", n, (long long)off, w,
			      strerror(errno));
		memcpy(shadow + off, chunk, n);
		/* Read back an unaligned window around it at once. */
		off_t from = off > 700 ? off - 700 : 0;
		size_t span = n + 1400 < (size_t)(size - from) ? n + 1400 : (size_t)(size - from);
		assert_pread(fd, shadow + from, span, from);
	}
	close(fd);
	write_whole(tmp("shadow.img"), shadow, (size_t)size);
	for (int i = 0; i < cmps; i++) {
		size_t n = 1 + (size_t)(rng() % (3 * MIB));
		off_t off = (off_t)(rng() % (uint64_t)(size - (long long)n));
		char skip[64], count[32];
		snprintf(skip, sizeof(skip), "%lld:%lld", (long long)off, (long long)off);
		snprintf(count, sizeof(count), "%zu", n);
		char *argv[] = {"cmp", "-i", skip, "-n", count, (char *)data, tmp("shadow.img"), NULL};
		int st = run(argv, NULL);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "cmp -i %s -n %s: status %d", skip,
			      count, st);
	}
	free(chunk);
	free(shadow);
}

START_TEST(random_offsets_and_lengths)
{
	seed("random_offsets_and_lengths");
	random_rw(mpath(&m, "disk0/data"), STICK_SIZE, 40, 20);
}
END_TEST

START_TEST(edges_of_the_medium)
{
	uint8_t buf[4096], want[100];
	int fd = open(mpath(&m, "disk0/data"), O_RDWR);

	ck_assert_int_ge(fd, 0);
	/* Reads at or past the end: 0; across it: what is there. */
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), STICK_SIZE), 0);
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), STICK_SIZE + 12345), 0);
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), STICK_SIZE - 100), 100);
	/* Writes: across the end, what fits; at or past it, ENOSPC. */
	memset(want, 0x5a, sizeof(want));
	memset(buf, 0x5a, sizeof(buf));
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), STICK_SIZE - 100), 100);
	assert_pread(fd, want, 100, STICK_SIZE - 100);
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), STICK_SIZE), -1);
	ck_assert_int_eq(errno, ENOSPC);
	ck_assert_int_eq(pwrite(fd, buf, 1, STICK_SIZE + 4096), -1);
	ck_assert_int_eq(errno, ENOSPC);
	/* A write of one byte in the middle of a block keeps its neighbours. */
	uint8_t blk[1024];
	ck_assert_int_eq(pread(fd, blk, sizeof(blk), 4096), (ssize_t)sizeof(blk));
	ck_assert_int_eq(pwrite(fd, "!", 1, 4096 + 511), 1);
	blk[511] = '!';
	assert_pread(fd, blk, sizeof(blk), 4096);
	close(fd);
	/* dd at the end: nothing written, an error, not a silent success. */
	int st = dd("/dev/zero", mpath(&m, "disk0/data"), "1M", NULL, tmp("dd.err"));
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0);
	ck_assert_ptr_nonnull(wait_file_has(tmp("dd.err"), "No space left on device", 1000));
}
END_TEST

START_TEST(ctl_sync_then_eject)
{
	uint8_t buf[512];
	int fd = open(mpath(&m, "disk0/data"), O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write_file(mpath(&m, "disk0/ctl"), "sync\n"), 0);
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	ck_assert_int_eq(write_file(mpath(&m, "disk0/ctl"), "bogus\n"), -EINVAL);
	/* A sequential reader, with windows read ahead of it when the medium goes... */
	int sfd = open(mpath(&m, "disk0/data"), O_RDONLY);
	ck_assert_int_ge(sfd, 0);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(read(sfd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	ck_assert_int_eq(write_file(mpath(&m, "disk0/ctl"), "eject\n"), 0);
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), 0), -1);
	ck_assert_int_eq(errno, ENOMEDIUM);
	/* ...gets the error, not bytes read before the eject. */
	ck_assert_int_eq(read(sfd, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, ENOMEDIUM);
	close(sfd);
	int wfd = open(mpath(&m, "disk0/data"), O_WRONLY);
	ck_assert_int_ge(wfd, 0);
	ck_assert_int_eq(pwrite(wfd, buf, sizeof(buf), 0), -1);
	ck_assert_int_eq(errno, ENOMEDIUM);
	close(wfd);
	ck_assert_int_eq(write_file(mpath(&m, "disk0/ctl"), "sync\n"), -ENOMEDIUM);
	close(fd);
	ck_assert_str_eq(read_line(mpath(&m, "disk0/state")), "running");
}
END_TEST

/* ---- a driver killed under dd ---- */

static long long dd_records(const char *err, const char *what)
{
	static char buf[4096];
	ssize_t n = read_file(err, buf, sizeof(buf) - 1);
	long long full = -1, part = -1;

	if (n <= 0)
		return -1;
	buf[n] = '\0';
	for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n"))
		if (strstr(line, what) != NULL && sscanf(line, "%lld+%lld", &full, &part) == 2)
			return full;
	return -1;
}

/* Waits until process pid has moved at least `bytes` through read() or write(). */
static int wait_io(pid_t pid, const char *field, long long bytes, int ms)
{
	char path[64], buf[1024];
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	snprintf(path, sizeof(path), "/proc/%d/io", (int)pid);
	do {
		ssize_t n = read_file(path, buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = '\0';
			char *p = strstr(buf, field);
			if (p != NULL && atoll(p + strlen(field) + 2) >= bytes)
				return 0;
		}
		usleep(2000);
	} while (mono_ms() < deadline);
	return -1;
}

static void kill_under_dd(bool writing)
{
	char a_if[300], a_of[300];
	uint8_t *img = NULL;
	pid_t drv = fn_pid(&m, "disk0");

	ck_assert_int_gt(drv, 0);
	if (writing) {
		seed("kill_under_dd");
		img = image_alloc(STICK_SIZE);
		for (long long i = 0; i < STICK_SIZE / 8; i++)
			((uint64_t *)(void *)img)[i] = rng();
		write_whole(tmp("kill.img"), img, STICK_SIZE);
	}
	/* What is at 32 MiB now (earlier tests wrote the stick), to check after the respawn. */
	uint8_t *before = image_alloc(MIB);
	int rfd = open(mpath(&m, "disk0/data"), O_RDONLY);
	ck_assert_int_ge(rfd, 0);
	ck_assert_int_eq(pread(rfd, before, MIB, 32 * MIB), MIB);
	close(rfd);
	snprintf(a_if, sizeof(a_if), "if=%s", writing ? tmp("kill.img") : mpath(&m, "disk0/data"));
	snprintf(a_of, sizeof(a_of), "of=%s", writing ? mpath(&m, "disk0/data") : "/dev/null");
	char *argv[] = {"dd", a_if, a_of, "bs=1M", "conv=notrunc", NULL};
	pid_t ddpid = spawn(argv, tmp("kill.err"));
	/* Let it get going (4 MiB through the driver), then kill the driver. */
	ck_assert_int_eq(wait_io(ddpid, writing ? "wchar" : "rchar", writing ? 4 * MIB : 4 * MIB, 20000), 0);
	ck_assert_int_eq(kill(drv, SIGKILL), 0);
	int st;
	ck_assert_int_eq(waitpid(ddpid, &st, 0), ddpid);
	/* dd fails with EIO: not a success with a short count. */
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 0, "dd status %d", st);
	ck_assert_ptr_nonnull(wait_file_has(tmp("kill.err"), "Input/output error", 1000));
	long long out = dd_records(tmp("kill.err"), "records out");
	ck_assert_int_ge(out, 0);
	ck_assert_int_lt(out, STICK_SIZE / MIB);

	/* The respawned driver serves the same medium. */
	ck_assert_int_gt(wait_new_pid(&m, "disk0", drv, 10000), 0);
	ck_assert_int_eq(wait_state(&m, "disk0", "running", 10000), 0);
	int fd = open(mpath(&m, "disk0/data"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	if (writing) {
		/* Every record dd counted as written is on the medium. */
		if (out > 0)
			assert_pread(fd, img, (size_t)out * MIB, 0);
	} else {
		assert_pread(fd, before, MIB, 32 * MIB);
	}
	close(fd);
	free(before);
	free(img);
}

START_TEST(driver_killed_under_dd_read)
{
	kill_under_dd(false);
}
END_TEST

START_TEST(driver_killed_under_dd_write)
{
	kill_under_dd(true);
}
END_TEST

/*
 * Read-ahead (supervisor.c): a sequential reader is served from windows
 * the daemon read beyond it.  Whatever the read size, it gets the medium's
 * bytes, up to its end and no further, and a write through any handle is
 * seen by the next read, however far ahead the windows were.
 */
static void read_sequentially(int fd, off_t from, size_t bs, size_t total, size_t medium)
{
	uint8_t *want = image_alloc((long long)bs), *got = image_alloc((long long)bs);
	size_t done = 0;

	while (done < total) {
		off_t off = from + (off_t)done;
		size_t expect = (size_t)off >= medium	    ? 0
				: bs < medium - (size_t)off ? bs
							    : medium - (size_t)off;
		ssize_t n = read(fd, got, bs);
		ck_assert_msg(n == (ssize_t)expect, "read of %zu at %lld: %zd (%s), %zu expected", bs,
			      (long long)off, n, n < 0 ? strerror(errno) : "", expect);
		if (n == 0)
			break;
		pattern(0, (uint64_t)off, want, (size_t)n);
		ck_assert_msg(memcmp(got, want, (size_t)n) == 0, "read of %zu at %lld: wrong bytes", bs,
			      (long long)off);
		done += (size_t)n;
	}
	free(want);
	free(got);
}

START_TEST(readahead_any_size_to_the_end)
{
	static const size_t sizes[] = {512, 3000, 4096, 65536, 100000, MIB};
	int fd = open(mpath(&m, "disk0/data"), O_RDWR);
	uint8_t *orig = image_alloc(4 * MIB);

	ck_assert_int_ge(fd, 0);
	/* Put back what the earlier cases wrote where this one reads. */
	pattern(0, 0, orig, 4 * MIB);
	ck_assert_int_eq(pwrite(fd, orig, 4 * MIB, 0), 4 * MIB);
	pattern(0, STICK_SIZE - 4 * MIB, orig, 4 * MIB);
	ck_assert_int_eq(pwrite(fd, orig, 4 * MIB, STICK_SIZE - 4 * MIB), 4 * MIB);
	free(orig);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		/* From an odd place 3 MiB before the end, to past it: windows end short there. */
		off_t from = STICK_SIZE - 3 * MIB - 7 * (off_t)i;
		ck_assert_int_eq(lseek(fd, from, SEEK_SET), from);
		read_sequentially(fd, from, sizes[i], 4 * MIB, STICK_SIZE);
		/* And from the start, as dd does. */
		ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
		read_sequentially(fd, 0, sizes[i], 2 * MIB, STICK_SIZE);
	}
	close(fd);
}
END_TEST

START_TEST(readahead_sees_every_write)
{
	uint8_t buf[4096], mark[4096], want[4096];
	int rfd = open(mpath(&m, "disk0/data"), O_RDWR), wfd = open(mpath(&m, "disk0/data"), O_RDWR);

	ck_assert_int_ge(rfd, 0);
	ck_assert_int_ge(wfd, 0);
	/* Restore what the earlier cases wrote where this one reads. */
	uint8_t *orig = image_alloc(8 * MIB);
	pattern(0, 40 * MIB, orig, 8 * MIB);
	ck_assert_int_eq(pwrite(wfd, orig, 8 * MIB, 40 * MIB), 8 * MIB);
	ck_assert_int_eq(lseek(rfd, 40 * MIB, SEEK_SET), 40 * MIB);
	for (int round = 0; round < 16; round++) {
		off_t pos = lseek(rfd, 0, SEEK_CUR);
		/* Sequential reads, so that windows run ahead of the reader... */
		for (int i = 0; i < 8; i++) {
			ck_assert_int_eq(read(rfd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
			ck_assert_int_eq(memcmp(buf, orig + (pos - 40 * MIB) + i * 4096, sizeof(buf)), 0);
		}
		pos += 8 * 4096;
		/* ...then a write ahead of it, through the other handle or its own. */
		memset(mark, 'a' + round, sizeof(mark));
		off_t at = pos + (off_t)(round % 4) * 4096 + 100;
		int via = round % 2 ? wfd : rfd;
		ck_assert_int_eq(pwrite(via, mark, sizeof(mark), at), (ssize_t)sizeof(mark));
		memcpy(orig + (at - 40 * MIB), mark, sizeof(mark));
		/* The reader goes on where it was and reads the new bytes. */
		for (int i = 0; i < 8; i++) {
			ck_assert_int_eq(read(rfd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
			memcpy(want, orig + (pos - 40 * MIB) + i * 4096, sizeof(want));
			ck_assert_msg(memcmp(buf, want, sizeof(buf)) == 0, "round %d: read at %lld is stale",
				      round, (long long)(pos + i * 4096));
		}
	}
	close(rfd);
	close(wfd);
	free(orig);
}
END_TEST

/* ---- 4096-byte blocks ---- */

/*
 * Write-back (supervisor.c): sequential writes are gathered by the daemon
 * and answered before the stick has them.  Whatever the pattern, the
 * medium ends up with every byte, a read through another handle sees what
 * was written before it, fsync and close wait, and a driver killed with
 * windows in flight loses none of the bytes the writer was told are
 * written: the next process writes them first.
 */
static void fill_random(uint8_t *p, size_t len)
{
	for (size_t i = 0; i + 8 <= len; i += 8) {
		uint64_t v = rng();
		memcpy(p + i, &v, 8);
	}
}

START_TEST(writeback_small_writes_reach_the_medium)
{
	const size_t len = 6 * MIB, bs = 4096;
	const off_t base = 5 * MIB + 512;
	uint8_t *img = image_alloc(len), *got = image_alloc(64 * 1024);
	int fd = open(mpath(&m, "disk0/data"), O_WRONLY);
	int rfd = open(mpath(&m, "disk0/data"), O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(rfd, 0);
	seed("writeback_small_writes_reach_the_medium");
	fill_random(img, len);
	ck_assert_int_eq(lseek(fd, base, SEEK_SET), base);
	for (size_t off = 0; off < len; off += bs) {
		ck_assert_int_eq(write(fd, img + off, bs), (ssize_t)bs);
		/* Now and then, another handle reads what was just written. */
		if (off % (1536 * 1024) == 1024 * 1024) {
			size_t n = off + bs < 64 * 1024 ? off + bs : 64 * 1024;
			ck_assert_int_eq(pread(rfd, got, n, base + (off_t)(off + bs - n)), (ssize_t)n);
			ck_assert_msg(memcmp(got, img + off + bs - n, n) == 0, "read after write at %zu",
				      off);
		}
	}
	ck_assert_int_eq(fsync(fd), 0);
	ck_assert_int_eq(close(fd), 0);
	assert_pread(rfd, img, len, base);
	/* And a run of odd sizes, through a handle that is never fsynced. */
	fd = open(mpath(&m, "disk0/data"), O_RDWR);
	ck_assert_int_ge(fd, 0);
	fill_random(img, len);
	size_t done = 0;
	for (unsigned i = 0; done < len; i++) {
		size_t n = (size_t)(rng() % 200000) + 1;
		if (n > len - done)
			n = len - done;
		ck_assert_int_eq(pwrite(fd, img + done, n, base + (off_t)done), (ssize_t)n);
		done += n;
	}
	ck_assert_int_eq(close(fd), 0);
	assert_pread(rfd, img, len, base);
	close(rfd);
	free(img);
	free(got);
}
END_TEST

/*
 * Writes img[0, len) at base on a new handle, 64 KiB a call: the first
 * while disk0's driver runs, the others once it is stopped, so that they
 * stay in windows it was given and did not answer.  Returns the handle;
 * *drv is the stopped driver.
 */
static int write_to_a_stopped_driver(const char *what, off_t base, uint8_t *img, size_t len, pid_t *drv)
{
	const size_t bs = 64 * 1024;
	int fd = open(mpath(&m, "disk0/data"), O_WRONLY);

	*drv = fn_pid(&m, "disk0");
	ck_assert_int_gt(*drv, 0);
	ck_assert_int_ge(fd, 0);
	seed(what);
	fill_random(img, len);
	ck_assert_int_eq(pwrite(fd, img, bs, base), (ssize_t)bs);
	ck_assert_int_eq(kill(*drv, SIGSTOP), 0);
	for (size_t off = bs; off < len; off += bs)
		ck_assert_int_eq(pwrite(fd, img + off, bs, base + (off_t)off), (ssize_t)bs);
	return fd;
}

/* Waits up to ms until pid is stopped (SIGSTOP); 0, or -1. */
static int wait_stopped(pid_t pid, int ms)
{
	for (uint64_t deadline = mono_ms() + (uint64_t)ms; mono_ms() < deadline; usleep(1000))
		if (proc_status(pid, "State")[0] == 'T')
			return 0;
	return -1;
}

/*
 * Whether a WRITE of `size` bytes at `off` is among the messages queued on
 * sock (a stopped driver's end), peeked one after the other without taking
 * them (SO_PEEK_OFF), then left as they were.
 */
static bool queued_write(int sock, uint64_t off, uint32_t size)
{
	static uint8_t msg[PROTO_MAX_MSG];
	int zero = 0, none = -1;
	bool found = false;

	ck_assert_int_eq(setsockopt(sock, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)), 0);
	for (;;) {
		struct proto_hdr h;
		ssize_t n = recv(sock, msg, sizeof(msg), MSG_PEEK | MSG_DONTWAIT);
		if (n <= 0)
			break;
		ck_assert_int_eq(proto_decode_hdr(msg, (size_t)n, &h, NULL), 0);
		if (h.type == PROTO_WRITE && h.offset == off && h.size == size)
			found = true;
	}
	ck_assert_int_eq(setsockopt(sock, SOL_SOCKET, SO_PEEK_OFF, &none, sizeof(none)), 0);
	return found;
}

/*
 * A gathered window goes to the driver on its own once its writer is idle
 * (WB_IDLE_MS), with nothing else asked of the driver: a writer that never
 * closes still gets its data to the medium.  Seen on the stopped driver's
 * socket, peeked without taking a message.
 */
START_TEST(writeback_idle_window_goes_on_its_own)
{
	const size_t bs = 4096;
	const off_t base = 48 * MIB;
	uint8_t img[2 * 4096];
	pid_t drv = fn_pid(&m, "disk0");
	int fd = open(mpath(&m, "disk0/data"), O_WRONLY);

	ck_assert_int_gt(drv, 0);
	ck_assert_int_ge(fd, 0);
	seed("writeback_idle_window_goes_on_its_own");
	fill_random(img, sizeof(img));
	/* The first write of a run goes alone, and is answered by the driver. */
	ck_assert_int_eq(pwrite(fd, img, bs, base), (ssize_t)bs);
	ck_assert_int_eq(kill(drv, SIGSTOP), 0);
	ck_assert_int_eq(wait_stopped(drv, 5000), 0);
	int pidfd = (int)syscall(SYS_pidfd_open, drv, 0);
	ck_assert_int_ge(pidfd, 0);
	int sock = (int)syscall(SYS_pidfd_getfd, pidfd, PROTO_DRIVER_FD, 0);
	ck_assert_int_ge(sock, 0);
	/* The second is gathered, and answered at once although the driver is stopped. */
	ck_assert_int_eq(pwrite(fd, img + bs, bs, base + (off_t)bs), (ssize_t)bs);
	bool sent = false;
	for (uint64_t deadline = mono_ms() + 5000; !sent && mono_ms() < deadline; usleep(2000))
		sent = queued_write(sock, (uint64_t)base + bs, (uint32_t)bs);
	ck_assert(sent);
	close(sock);
	close(pidfd);
	ck_assert_int_eq(kill(drv, SIGCONT), 0);
	ck_assert_int_eq(close(fd), 0);
	assert_on_medium("disk0", img, sizeof(img), base);
}
END_TEST

START_TEST(writeback_survives_a_driver_crash)
{
	const size_t bs = 64 * 1024, len = 2 * MIB + bs;
	const off_t base = 40 * MIB;
	uint8_t *img = image_alloc(len);
	pid_t drv;
	/* The 2 MiB after the first write stay in two windows. */
	int fd = write_to_a_stopped_driver("writeback_survives_a_driver_crash", base, img, len, &drv);

	ck_assert_int_eq(kill(drv, SIGKILL), 0);
	ck_assert_int_gt(wait_new_pid(&m, "disk0", drv, 10000), 0);
	ck_assert_int_eq(wait_state(&m, "disk0", "running", 10000), 0);
	ck_assert_ptr_nonnull(wait_file_has(mpath(&m, "events"), "replay 2 windows, 2097152 bytes", 5000));
	/* The handle is from before the crash: it fails, but its close says its writes are written. */
	ck_assert_int_eq(write(fd, img, bs), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(close(fd), 0);
	assert_on_medium("disk0", img, len, base);
	free(img);
}
END_TEST

/* An unplug loses what the stick had not taken, as it does for /dev/sdX: the close says so, ENODEV. */
START_TEST(writeback_unplug_fails_the_close)
{
	const size_t len = 2 * MIB + 64 * 1024;
	uint8_t *img = image_alloc(len);
	pid_t drv;
	int fd = write_to_a_stopped_driver("writeback_unplug_fails_the_close", 40 * MIB, img, len, &drv);

	ck_assert_int_eq(emu_unplug(&m, "1-1"), 0);
	ck_assert_int_eq(wait_function(&m, "disk0", 0, 5000), 0);
	/* The two windows the stopped driver was sent, and the log says so. */
	ck_assert_ptr_nonnull(wait_file_has(
	    mpath(&m, "events"), "lost 2097152 bytes written back: the device was unplugged", 5000));
	ck_assert_int_eq(close(fd), -1);
	ck_assert_int_eq(errno, ENODEV);
	ck_assert_int_eq(wait_pid_gone(drv, 5000), 0);
	free(img);
}
END_TEST

START_TEST(big_blocks)
{
	ck_assert_str_eq(read_line(mpath(&m, "disk0/block_size")), "4096");
	ck_assert_str_eq(read_line(mpath(&m, "disk0/blocks")), "16384");
	int fd = open(mpath(&m, "disk0/data"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	uint8_t want[10000];
	pattern(0, 4096 * 3 + 17, want, sizeof(want));
	assert_pread(fd, want, sizeof(want), 4096 * 3 + 17);
	close(fd);
	seed("big_blocks");
	random_rw(mpath(&m, "disk0/data"), STICK_SIZE, 30, 10);
}
END_TEST

/* ---- two LUNs ---- */

static void assert_luns(void)
{
	uint8_t want[8192];
	int fd0 = open(mpath(&m, "disk0/data"), O_RDONLY), fd1 = open(mpath(&m, "disk1/data"), O_RDONLY);

	ck_assert_int_ge(fd0, 0);
	ck_assert_int_ge(fd1, 0);
	pattern(0, 1000, want, sizeof(want));
	assert_pread(fd0, want, sizeof(want), 1000);
	pattern(1, 1000, want, sizeof(want));
	assert_pread(fd1, want, sizeof(want), 1000);
	pattern(1, LUN1_SIZE - 512, want, 512);
	assert_pread(fd1, want, 512, LUN1_SIZE - 512);
	ck_assert_int_eq(pread(fd1, want, 512, LUN1_SIZE), 0);
	close(fd0);
	close(fd1);
}

START_TEST(two_luns)
{
	struct stat st0, st1;
	char link[256];

	ck_assert_int_eq(stat(mpath(&m, "disk0/data"), &st0), 0);
	ck_assert_int_eq(stat(mpath(&m, "disk1/data"), &st1), 0);
	ck_assert_int_eq(st0.st_size, STICK_SIZE);
	ck_assert_int_eq(st1.st_size, LUN1_SIZE);
	ck_assert_str_eq(read_line(mpath(&m, "disk1/model")), "Cruzer Titanium");
	ck_assert_str_eq(read_line(mpath(&m, "disk1/blocks")), "32768");
	ck_assert_str_eq(read_line(mpath(&m, "disk1/interface")), "00");
	ssize_t n = readlink(mpath(&m, "by-path/1-1:1.0-lun1"), link, sizeof(link) - 1);
	ck_assert_int_gt(n, 0);
	link[n] = '\0';
	ck_assert_str_eq(link, "../disk1");
	n = readlink(
	    mpath(&m, "by-id/usb-SanDisk_Corporation_Cruzer_Titanium_SNDK5F3ED52015C05803-if00-lun1"), link,
	    sizeof(link) - 1);
	ck_assert_int_gt(n, 0);
	link[n] = '\0';
	ck_assert_str_eq(link, "../disk1");
	/* One driver process serves both. */
	pid_t pid = fn_pid(&m, "disk0");
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(fn_pid(&m, "disk1"), pid);
	assert_luns();
	/* A write to one LUN stays there. */
	int fd = open(mpath(&m, "disk1/data"), O_WRONLY);
	ck_assert_int_eq(pwrite(fd, "lun one", 7, 0), 7);
	close(fd);
	uint8_t want[7];
	pattern(0, 0, want, 7);
	fd = open(mpath(&m, "disk0/data"), O_RDONLY);
	assert_pread(fd, want, 7, 0);
	close(fd);
	fd = open(mpath(&m, "disk1/data"), O_RDONLY);
	assert_pread(fd, (const uint8_t *)"lun one", 7, 0);
	close(fd);
	ck_assert_int_eq(write_file(mpath(&m, "disk1/ctl"), "sync\n"), 0);

	/* Both survive a SIGKILL of their driver, with the same names. */
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_gt(wait_new_pid(&m, "disk0", pid, 10000), 0);
	ck_assert_int_eq(wait_state(&m, "disk1", "running", 10000), 0);
	ck_assert_int_eq(fn_pid(&m, "disk1"), fn_pid(&m, "disk0"));
	ck_assert_str_eq(read_line(mpath(&m, "disk1/restarts")), "1");
	struct stat st;
	ck_assert_int_eq(stat(mpath(&m, "disk2"), &st), -1);
	fd = open(mpath(&m, "disk1/data"), O_RDONLY);
	assert_pread(fd, (const uint8_t *)"lun one", 7, 0);
	close(fd);
	/* ctl reaches the LUN it was written to: eject LUN 1 only. */
	ck_assert_int_eq(write_file(mpath(&m, "disk1/ctl"), "eject\n"), 0);
	fd = open(mpath(&m, "disk1/data"), O_RDONLY);
	ck_assert_int_eq(pread(fd, want, 7, 0), -1);
	ck_assert_int_eq(errno, ENOMEDIUM);
	close(fd);
	fd = open(mpath(&m, "disk0/data"), O_RDONLY);
	pattern(0, 0, want, 7);
	assert_pread(fd, want, 7, 0);
	close(fd);
}
END_TEST

/* ---- misbehaving sticks and the errno mapping ---- */

START_TEST(stall_mid_data_stage)
{
	uint8_t *want = image_alloc(128 * 1024);
	int fd = open(mpath(&m, "disk0/data"), O_RDONLY);

	ck_assert_int_ge(fd, 0);
	pattern(0, 0, want, 4096);
	assert_pread(fd, want, 4096, 0);
	/* The first read past 1 MiB stalls halfway; the driver clears it, reads the CSW, retries. */
	pattern(0, MIB, want, 128 * 1024);
	assert_pread(fd, want, 128 * 1024, MIB);
	ck_assert_ptr_nonnull(wait_file_has(m.log, "data stage of command 28 stalled", 2000));
	ck_assert_ptr_nonnull(wait_file_has(m.log, "sense b/4b/00", 2000));
	pattern(0, 2 * MIB, want, 128 * 1024);
	assert_pread(fd, want, 128 * 1024, 2 * MIB);
	ck_assert_str_eq(read_line(mpath(&m, "disk0/restarts")), "0");
	close(fd);
	free(want);
}
END_TEST

START_TEST(phase_error_resets)
{
	uint8_t *want = image_alloc(128 * 1024);
	int fd = open(mpath(&m, "disk0/data"), O_RDONLY);

	ck_assert_int_ge(fd, 0);
	/* The phase error fails that request with EIO, after reset recovery ... */
	ck_assert_int_eq(pread(fd, want, 128 * 1024, MIB), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_ptr_nonnull(wait_file_has(m.log, "phase error: reset recovery", 2000));
	/* ... and the stick works again. */
	pattern(0, MIB, want, 128 * 1024);
	assert_pread(fd, want, 128 * 1024, MIB);
	ck_assert_str_eq(read_line(mpath(&m, "disk0/restarts")), "0");
	close(fd);
	free(want);
}
END_TEST

START_TEST(no_medium)
{
	struct stat st;
	char buf[16];

	ck_assert_int_eq(stat(mpath(&m, "disk0/data"), &st), 0);
	ck_assert_int_eq(st.st_size, 0);
	ck_assert_str_eq(read_line(mpath(&m, "disk0/blocks")), "0");
	ck_assert_str_eq(read_line(mpath(&m, "disk0/vendor")), "SanDisk");
	int fd = open(mpath(&m, "disk0/data"), O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), 0), -1);
	ck_assert_int_eq(errno, ENOMEDIUM);
	ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), 0), -1);
	ck_assert_int_eq(errno, ENOMEDIUM);
	close(fd);
}
END_TEST

START_TEST(write_protected)
{
	uint8_t want[512];

	ck_assert_int_eq(open(mpath(&m, "disk0/data"), O_WRONLY), -1);
	ck_assert_int_eq(errno, EROFS);
	int fd = open(mpath(&m, "disk0/data"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	pattern(0, 0, want, sizeof(want));
	assert_pread(fd, want, sizeof(want), 0);
	close(fd);
	int st = dd("/dev/zero", mpath(&m, "disk0/data"), "1M", "1", tmp("ro.err"));
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0);
	ck_assert_ptr_nonnull(wait_file_has(tmp("ro.err"), "Read-only file system", 1000));
}
END_TEST

/* A window that fails takes no read down with it: each read gets its own answer. */
START_TEST(readahead_error_is_the_reads_own)
{
	uint8_t buf[4096], want[4096];
	int fd = open(mpath(&m, "disk0/data"), O_RDONLY);
	off_t bad = 8192 * 512, off = bad - 64 * 4096;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(lseek(fd, off, SEEK_SET), off);
	/* Up to the bad blocks, sequentially: the windows over them fail, these reads do not. */
	for (; off < bad; off += 4096) {
		ssize_t n = read(fd, buf, sizeof(buf));
		ck_assert_msg(n == (ssize_t)sizeof(buf), "read at %lld: %zd (%s)", (long long)off, n,
			      n < 0 ? strerror(errno) : "");
		pattern(0, (uint64_t)off, want, sizeof(want));
		ck_assert_int_eq(memcmp(buf, want, sizeof(buf)), 0);
	}
	/* Read ahead: the stick was asked for the bad blocks before the reader got there. */
	ck_assert_ptr_nonnull(wait_file_has(m.log, "sense 3/11/00", 2000));
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EIO);
	/* Past them, reading goes on. */
	off = 8200 * 512;
	ck_assert_int_eq(lseek(fd, off, SEEK_SET), off);
	for (int i = 0; i < 40; i++, off += 4096) {
		ck_assert_int_eq(read(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
		pattern(0, (uint64_t)off, want, sizeof(want));
		ck_assert_int_eq(memcmp(buf, want, sizeof(buf)), 0);
	}
	close(fd);
}
END_TEST

/* A close waiting for windows when the driver dies waits for the next driver to write them: 0, not EIO. */
START_TEST(writeback_close_waits_through_a_crash)
{
	const size_t len = 8 * 64 * 1024;
	const off_t base = 44 * MIB;
	uint8_t *img = image_alloc(len);
	pid_t drv;
	int fd = write_to_a_stopped_driver("writeback_close_waits_through_a_crash", base, img, len, &drv);

	/* A child closes its copy of the descriptor: the close waits for the stopped driver. */
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0)
		_exit(close(fd) == 0 ? 0 : errno);
	ck_assert_int_eq(wait_blocked_in(child, SYS_close, 5000), 0);
	ck_assert_int_eq(kill(drv, SIGKILL), 0);
	int st;
	ck_assert_int_eq(waitpid(child, &st, 0), child);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "close through the crash: %s",
		      WIFEXITED(st) ? strerror(WEXITSTATUS(st)) : "killed");
	ck_assert_ptr_nonnull(wait_file_has(mpath(&m, "events"), "replay 1 windows, 458752 bytes", 5000));
	ck_assert_int_eq(close(fd), 0);
	assert_on_medium("disk0", img, len, base);
	free(img);
}
END_TEST

/*
 * Two LUNs, one driver: windows of both are in flight when it dies, and the
 * next one writes each to its own.
 */
START_TEST(writeback_replays_two_luns)
{
	const size_t bs = 64 * 1024, la = MIB + bs, lb = MIB / 2 + bs;
	uint8_t *a = image_alloc((long long)la), *b = image_alloc((long long)lb);
	int fa = open(mpath(&m, "disk0/data"), O_WRONLY), fb = open(mpath(&m, "disk1/data"), O_WRONLY);
	pid_t drv = fn_pid(&m, "disk0");

	ck_assert_int_ge(fa, 0);
	ck_assert_int_ge(fb, 0);
	ck_assert_int_gt(drv, 0);
	seed("writeback_replays_two_luns");
	fill_random(a, la);
	fill_random(b, lb);
	ck_assert_int_eq(pwrite(fa, a, bs, 0), (ssize_t)bs);
	ck_assert_int_eq(pwrite(fb, b, bs, 0), (ssize_t)bs);
	ck_assert_int_eq(kill(drv, SIGSTOP), 0);
	/* LUN 0's next MiB fills a window; LUN 1's first write sends it, and gathers the next 512 KiB. */
	for (size_t off = bs; off < la; off += bs)
		ck_assert_int_eq(pwrite(fa, a + off, bs, (off_t)off), (ssize_t)bs);
	for (size_t off = bs; off < lb; off += bs)
		ck_assert_int_eq(pwrite(fb, b + off, bs, (off_t)off), (ssize_t)bs);
	ck_assert_int_eq(kill(drv, SIGKILL), 0);
	ck_assert_int_gt(wait_new_pid(&m, "disk0", drv, 10000), 0);
	ck_assert_int_eq(wait_state(&m, "disk0", "running", 10000), 0);
	ck_assert_ptr_nonnull(wait_file_has(mpath(&m, "events"), "replay 2 windows, 1572864 bytes", 5000));
	ck_assert_int_eq(close(fa), 0);
	ck_assert_int_eq(close(fb), 0);
	assert_on_medium("disk0", a, la, 0);
	assert_on_medium("disk1", b, lb, 0);
	free(a);
	free(b);
}
END_TEST

/*
 * A written-back write that fails is reported by the next write, fsync or
 * close of its handle, and none of them succeeds past it; with O_DSYNC the
 * write itself fails.
 */
START_TEST(writeback_error_is_reported)
{
	uint8_t buf[4096];
	const off_t bad = 8192 * 512;
	int fd = open(mpath(&m, "disk0/data"), O_WRONLY);

	memset(buf, 0x5a, sizeof(buf));
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(lseek(fd, bad - 8 * 4096, SEEK_SET), bad - 8 * 4096);
	/* Up to and over the bad blocks: gathered, answered. */
	for (int i = 0; i < 9; i++)
		ck_assert_int_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	ck_assert_int_eq(fsync(fd), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_ptr_nonnull(wait_file_has(m.log, "sense 3/0c/00", 2000));
	/* Reported once: the handle writes on past the bad blocks. */
	ck_assert_int_eq(lseek(fd, 8200 * 512, SEEK_SET), 8200 * 512);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	ck_assert_int_eq(close(fd), 0);

	/* Without fsync: the next write says it, or the close does. */
	fd = open(mpath(&m, "disk0/data"), O_WRONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(lseek(fd, bad - 4 * 4096, SEEK_SET), bad - 4 * 4096);
	int failed = 0;
	for (int i = 0; i < 512 && !failed; i++) {
		ssize_t n = write(fd, buf, sizeof(buf));
		if (n < 0) {
			ck_assert_int_eq(errno, EIO);
			failed = 1;
		} else {
			ck_assert_int_eq(n, (ssize_t)sizeof(buf));
		}
	}
	int c = close(fd);
	ck_assert_msg(failed || (c == -1 && errno == EIO), "the failed write-back was never reported");

	/* O_DSYNC: the write that covers the bad blocks is the one that fails. */
	fd = open(mpath(&m, "disk0/data"), O_WRONLY | O_DSYNC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(lseek(fd, bad - 4 * 4096, SEEK_SET), bad - 4 * 4096);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	ck_assert_int_eq(write(fd, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(close(fd), 0);
}
END_TEST

START_TEST(unreadable_blocks)
{
	uint8_t buf[4096], want[4096];
	int fd = open(mpath(&m, "disk0/data"), O_RDWR);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), 8192 * 512), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_ptr_nonnull(wait_file_has(m.log, "sense 3/11/00", 2000));
	pattern(0, 8200 * 512, want, sizeof(want));
	assert_pread(fd, want, sizeof(want), 8200 * 512);
	close(fd);
}
END_TEST

Suite *disk_suite(void)
{
	Suite *s = suite_create("disk");
	TCase *tc = tcase_create("stick");

	tcase_add_unchecked_fixture(tc, setup_disk, teardown);
	tcase_set_timeout(tc, 240);
	tcase_add_test(tc, info_files);
	tcase_add_test(tc, dd_both_ways_1m);
	tcase_add_test(tc, dd_both_ways_512);
	tcase_add_test(tc, losetup_over_data);
	tcase_add_test(tc, random_offsets_and_lengths);
	tcase_add_test(tc, edges_of_the_medium);
	tcase_add_test(tc, driver_killed_under_dd_read);
	tcase_add_test(tc, driver_killed_under_dd_write);
	tcase_add_test(tc, readahead_any_size_to_the_end);
	tcase_add_test(tc, readahead_sees_every_write);
	tcase_add_test(tc, writeback_small_writes_reach_the_medium);
	tcase_add_test(tc, writeback_idle_window_goes_on_its_own);
	tcase_add_test(tc, writeback_survives_a_driver_crash);
	tcase_add_test(tc, writeback_close_waits_through_a_crash);
	tcase_add_test(tc, ctl_sync_then_eject);
	suite_add_tcase(s, tc);

	const struct {
		const char *name;
		void (*setup)(void);
		const TTest *test;
	} one[] = {
	    {"4k", setup_4k, big_blocks},
	    {"2lun", setup_2lun, two_luns},
	    {"2lun-writeback", setup_2lun, writeback_replays_two_luns},
	    {"unplug-writeback", setup_disk, writeback_unplug_fails_the_close},
	    {"stall", setup_stall, stall_mid_data_stage},
	    {"phase", setup_phase, phase_error_resets},
	    {"nomedium", setup_nomedium, no_medium},
	    {"ro", setup_ro, write_protected},
	    {"bad", setup_bad, unreadable_blocks},
	    {"bad-readahead", setup_bad, readahead_error_is_the_reads_own},
	    {"bad-writeback", setup_bad, writeback_error_is_reported},
	    /* A 1 MiB read or write is cut into commands the stick takes. */
	    {"120k", setup_120k, dd_both_ways_1m},
	};
	for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++)
		suite_add_one(s, one[i].name, one[i].setup, teardown, 120, one[i].test);
	return s;
}
