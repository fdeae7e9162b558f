/*
 * The still driver over the emulated camera (tests/emu/model_ptp.c): the
 * storages and folders as a tree, sizes and dates as stat shows them,
 * byte-identical copies (the 16 MiB movie streamed, the driver's memory
 * checked), reads at an offset, rm, upload, the read-only storage, a
 * capture announced by an event, a driver killed mid-copy (EIO, then the
 * same path and inode again), and an unplug (ENODEV).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../emu/disk_pattern.h"
#include "harness.h"
#include "suites.h"
#include "util.h"

#define MIB	 (1024 * 1024)
#define SD	 "still0/store-00010001"
#define ROM	 "still0/store-00020001"
#define FOLDER	 SD "/DCIM/100CANON"
#define MOVIE	 FOLDER "/MVI_0003.MOV"
#define MOVIE_H	 5
#define MOVIE_SZ (16 * MIB)
#define CHUNK	 (128 * 1024)

static struct mnt m;

static void setup(void)
{
	const char *const models[] = {"camera", NULL};
	ck_assert_int_eq(mnt_start(&m, models, "timeout=5000", 1), 0);
}

static void teardown(void)
{
	mnt_stop(&m);
}

/* The model's modification date of object h: 2024-06-15 10:MM:00 UTC, MM = h. */
static time_t model_mtime(unsigned h)
{
	struct tm tm = {.tm_year = 124, .tm_mon = 5, .tm_mday = 15, .tm_hour = 10, .tm_min = (int)h % 60};
	return timegm(&tm);
}

/* Names in a directory, sorted, joined by spaces. */
static const char *listing(const char *rel)
{
	static char out[1024];
	struct dirent **ents;
	int n = scandir(mpath(&m, rel), &ents, NULL, alphasort);

	out[0] = '\0';
	if (n < 0)
		return strerror(errno);
	for (int i = 0; i < n; i++) {
		if (strcmp(ents[i]->d_name, ".") != 0 && strcmp(ents[i]->d_name, "..") != 0) {
			if (out[0] != '\0')
				strncat(out, " ", sizeof(out) - strlen(out) - 1);
			strncat(out, ents[i]->d_name, sizeof(out) - strlen(out) - 1);
		}
		free(ents[i]);
	}
	free(ents);
	return out;
}

static void assert_stat(const char *rel, mode_t mode, off_t size, time_t mtime)
{
	struct stat st;

	ck_assert_msg(stat(mpath(&m, rel), &st) == 0, "stat %s: %s", rel, strerror(errno));
	ck_assert_msg(st.st_mode == mode, "%s: mode %o, not %o", rel, st.st_mode, mode);
	if (S_ISREG(mode))
		ck_assert_msg(st.st_size == size, "%s: size %lld, not %lld", rel, (long long)st.st_size,
			      (long long)size);
	if (mtime != 0)
		ck_assert_msg(st.st_mtime == mtime, "%s: mtime %lld, not %lld", rel, (long long)st.st_mtime,
			      (long long)mtime);
}

/* Reads `rel` from `off` to its end in CHUNK reads, checking every byte against object h's pattern. */
static long long read_check(const char *rel, unsigned h, off_t off)
{
	static uint8_t buf[CHUNK];
	int fd = open(mpath(&m, rel), O_RDONLY);
	long long total = 0;
	ssize_t n;

	ck_assert_msg(fd >= 0, "open %s: %s", rel, strerror(errno));
	ck_assert_int_eq(lseek(fd, off, SEEK_SET), off);
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != emu_disk_byte(h, (uint64_t)off + (uint64_t)total + (uint64_t)i))
				ck_abort_msg("%s: byte %lld differs", rel, (long long)off + total + i);
		total += n;
	}
	ck_assert_msg(n == 0, "read %s: %s", rel, strerror(errno));
	close(fd);
	return total;
}

/* VmHWM (peak resident set) of a process in kB, or -1. */
static long peak_kb(pid_t pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	ssize_t n = read_file(path, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *p = strstr(buf, "VmHWM:");
	return p != NULL ? atol(p + 6) : -1;
}

START_TEST(tree_sizes_and_dates)
{
	ck_assert_str_eq(listing("still0/"), "busnum ctl descriptors devnum driver interface manufacturer "
					     "port product product_id restarts serial speed state "
					     "store-00010001 store-00020001 vendor_id");
	ck_assert_str_eq(listing(SD), "DCIM");
	ck_assert_str_eq(listing(SD "/DCIM"), "100CANON");
	ck_assert_str_eq(listing(FOLDER), "IMG_0001.JPG IMG_0002.JPG MVI_0003.MOV");
	ck_assert_str_eq(listing(ROM), "MANUAL");
	ck_assert_str_eq(listing(ROM "/MANUAL"), "README.TXT");
	/* Writable storage: rwx folders, rw files; the read-only one has neither w. */
	assert_stat(SD, S_IFDIR | 0755, 0, 0);
	assert_stat(ROM, S_IFDIR | 0555, 0, 0);
	assert_stat(SD "/DCIM", S_IFDIR | 0755, 0, model_mtime(1));
	assert_stat(FOLDER "/IMG_0001.JPG", S_IFREG | 0644, 300000, model_mtime(3));
	assert_stat(FOLDER "/IMG_0002.JPG", S_IFREG | 0644, MIB + 123, model_mtime(4));
	assert_stat(MOVIE, S_IFREG | 0644, MOVIE_SZ, model_mtime(5));
	assert_stat(ROM "/MANUAL/README.TXT", S_IFREG | 0444, 4096, model_mtime(7));
	struct stat st;
	ck_assert_int_eq(stat(mpath(&m, FOLDER "/IMG_9999.JPG"), &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	/* A file is no directory, a folder no file. */
	ck_assert_ptr_null(opendir(mpath(&m, MOVIE)));
	ck_assert_int_eq(errno, ENOTDIR);
	ck_assert_int_eq(open(mpath(&m, SD "/DCIM"), O_WRONLY), -1);
	ck_assert_int_eq(errno, EISDIR);
}
END_TEST

START_TEST(copy_streamed_byte_identical)
{
	pid_t drv = fn_pid(&m, "still0");
	long before = rss_kb(drv);
	uint64_t t0 = mono_ms();

	ck_assert_int_gt(drv, 0);
	ck_assert_int_eq(read_check(MOVIE, MOVIE_H, 0), MOVIE_SZ);
	uint64_t ms = mono_ms() - t0;
	fprintf(stderr, "still: 16 MiB copied out in %llu ms: %.1f MiB/s\n", (unsigned long long)ms,
		ms > 0 ? 16.0 * 1000.0 / (double)ms : 0.0);
	ck_assert_int_eq(read_check(FOLDER "/IMG_0001.JPG", 3, 0), 300000);
	ck_assert_int_eq(read_check(FOLDER "/IMG_0002.JPG", 4, 0), MIB + 123);
	ck_assert_int_eq(read_check(ROM "/MANUAL/README.TXT", 7, 0), 4096);
#ifndef SANITIZER_BUILD
	/* Streamed: the driver never held the 16 MiB movie (ASan's quarantine would blur this). */
	long peak = peak_kb(drv);
	fprintf(stderr, "still: driver RSS %ld kB before, peak %ld kB\n", before, peak);
	ck_assert_int_gt(before, 0);
	ck_assert_int_lt(peak, before + 8 * 1024);
#else
	(void)before;
	(void)peak_kb;
#endif
}
END_TEST

START_TEST(reads_at_an_offset)
{
	uint8_t buf[4096];
	int fd = open(mpath(&m, FOLDER "/IMG_0002.JPG"), O_RDONLY);

	ck_assert_int_ge(fd, 0);
	/* dd skip=1000 bs=1000 count=2 */
	ck_assert_int_eq(pread(fd, buf, 2000, 1000 * 1000), 2000);
	for (int i = 0; i < 2000; i++)
		ck_assert_int_eq(buf[i], emu_disk_byte(4, 1000000u + (unsigned)i));
	/* Across the end: short; past it: 0. */
	ck_assert_int_eq(pread(fd, buf, 4096, MIB + 100), 23);
	ck_assert_int_eq(buf[22], emu_disk_byte(4, MIB + 122));
	ck_assert_int_eq(pread(fd, buf, 4096, MIB + 123), 0);
	ck_assert_int_eq(pread(fd, buf, 4096, 10ll * MIB), 0);
	close(fd);
	/* The tail of the movie, from 15 MiB + 3. */
	ck_assert_int_eq(read_check(MOVIE, MOVIE_H, 15 * MIB + 3), MIB - 3);
}
END_TEST

START_TEST(rm_and_read_only_storage)
{
	struct stat st;

	ck_assert_int_eq(unlink(mpath(&m, FOLDER "/IMG_0001.JPG")), 0);
	ck_assert_str_eq(listing(FOLDER), "IMG_0002.JPG MVI_0003.MOV");
	ck_assert_int_eq(stat(mpath(&m, FOLDER "/IMG_0001.JPG"), &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(unlink(mpath(&m, FOLDER "/IMG_0001.JPG")), -1);
	ck_assert_int_eq(errno, ENOENT);
	/* The read-only storage: no rm, no new file, no writing. */
	ck_assert_int_eq(unlink(mpath(&m, ROM "/MANUAL/README.TXT")), -1);
	ck_assert_int_eq(errno, EROFS);
	ck_assert_int_eq(open(mpath(&m, ROM "/MANUAL/NEW.TXT"), O_WRONLY | O_CREAT, 0644), -1);
	ck_assert_int_eq(errno, EROFS);
	ck_assert_int_eq(open(mpath(&m, ROM "/MANUAL/README.TXT"), O_WRONLY), -1);
	ck_assert_int_eq(errno, EROFS);
	ck_assert_str_eq(listing(ROM "/MANUAL"), "README.TXT");
	/* Folders are not removed, and objects are not rewritten in place. */
	ck_assert_int_eq(rmdir(mpath(&m, SD "/DCIM/100CANON")), -1);
	ck_assert_int_eq(errno, EPERM);
	ck_assert_int_eq(open(mpath(&m, MOVIE), O_WRONLY), -1);
	ck_assert_int_eq(errno, EPERM);
}
END_TEST

START_TEST(upload_by_cp)
{
	size_t len = 3 * MIB + 7;
	uint8_t *data = malloc(len), *back = malloc(len);
	const char *path = mpath(&m, FOLDER "/UPLOAD.BIN");

	ck_assert_ptr_nonnull(data);
	ck_assert_ptr_nonnull(back);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 131 + (i >> 13));
	/* What cp does: create, write in pieces, close (close's result is the upload's). */
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
	ck_assert_msg(fd >= 0, "create: %s", strerror(errno));
	for (size_t off = 0; off < len; off += CHUNK) {
		size_t n = len - off < CHUNK ? len - off : CHUNK;
		ck_assert_int_eq(write(fd, data + off, n), (ssize_t)n);
	}
	ck_assert_int_eq(close(fd), 0);
	ck_assert_str_eq(listing(FOLDER), "IMG_0001.JPG IMG_0002.JPG MVI_0003.MOV UPLOAD.BIN");
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, (off_t)len);
	fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	size_t got = 0;
	ssize_t n;
	while ((n = read(fd, back + got, len - got)) > 0)
		got += (size_t)n;
	close(fd);
	ck_assert_int_eq(got, len);
	ck_assert_int_eq(memcmp(back, data, len), 0);
	/* It exists now: O_EXCL says so, and a shell's `> file` (closes before writing) makes a second one.
	 */
	ck_assert_int_eq(open(path, O_WRONLY | O_CREAT | O_EXCL, 0644), -1);
	ck_assert_int_eq(errno, EEXIST);
	fd = open(mpath(&m, SD "/DCIM/NOTE.TXT"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	int fd2 = dup(fd);
	ck_assert_int_eq(close(fd), 0);
	ck_assert_int_eq(write(fd2, "hello camera\n", 13), 13);
	ck_assert_int_eq(close(fd2), 0);
	char text[64];
	ck_assert_int_eq(read_file(mpath(&m, SD "/DCIM/NOTE.TXT"), text, sizeof(text)), 13);
	ck_assert_int_eq(memcmp(text, "hello camera\n", 13), 0);
	free(data);
	free(back);
}
END_TEST

/* Waits until `rel` exists; 0 or -1. */
static int wait_exists(const char *rel, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;
	struct stat st;

	do {
		if (stat(mpath(&m, rel), &st) == 0)
			return 0;
		usleep(5000);
	} while (mono_ms() < deadline);
	return -1;
}

START_TEST(capture_event_adds_a_file)
{
	/* Listed (and so cached by the driver) before the camera adds a picture. */
	ck_assert_str_eq(listing(FOLDER), "IMG_0001.JPG IMG_0002.JPG MVI_0003.MOV");
	ck_assert_int_eq(write_file(mpath(&m, "still0/ctl"), "capture\n"), 0);
	/* Only the ObjectAdded event makes the driver ask the camera again. */
	ck_assert_int_eq(wait_exists(FOLDER "/IMG_0004.JPG", 5000), 0);
	ck_assert_str_eq(listing(FOLDER), "IMG_0001.JPG IMG_0002.JPG IMG_0004.JPG MVI_0003.MOV");
	assert_stat(FOLDER "/IMG_0004.JPG", S_IFREG | 0644, 20000, model_mtime(8));
	ck_assert_int_eq(read_check(FOLDER "/IMG_0004.JPG", 8, 0), 20000);
	ck_assert_int_eq(write_file(mpath(&m, "still0/ctl"), "focus\n"), -EINVAL);
}
END_TEST

START_TEST(driver_killed_mid_copy)
{
	static uint8_t buf[CHUNK];
	struct stat before, after;
	pid_t drv = fn_pid(&m, "still0");
	long long got = 0;

	ck_assert_int_gt(drv, 0);
	ck_assert_int_eq(stat(mpath(&m, MOVIE), &before), 0);
	int fd = open(mpath(&m, MOVIE), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	while (got < 4 * MIB) {
		ssize_t n = read(fd, buf, sizeof(buf));
		ck_assert_int_gt(n, 0);
		got += n;
	}
	ck_assert_int_eq(kill(drv, SIGKILL), 0);
	ck_assert_int_eq(wait_pid_gone(drv, 5000), 0);
	/* The copy in progress fails, and keeps failing on this descriptor after the respawn. */
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_gt(wait_new_pid(&m, "still0", drv, 10000), 0);
	ck_assert_int_eq(wait_state(&m, "still0", "running", 10000), 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EIO);
	close(fd);
	/* The same path is the same file (same inode: cp -r can go on), whole and right. */
	ck_assert_int_eq(stat(mpath(&m, MOVIE), &after), 0);
	ck_assert_int_eq(after.st_ino, before.st_ino);
	ck_assert_int_eq(read_check(MOVIE, MOVIE_H, 0), MOVIE_SZ);
}
END_TEST

START_TEST(unplug_enodev)
{
	uint8_t buf[16];
	int fd = open(mpath(&m, MOVIE), O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	ck_assert_int_eq(emu_unplug(&m, "1-1"), 0);
	ck_assert_int_eq(wait_function(&m, "still0", 0, 5000), 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, ENODEV);
	close(fd);
	struct stat st;
	ck_assert_int_eq(stat(mpath(&m, MOVIE), &st), -1);
	ck_assert_int_eq(errno, ENOENT);
}
END_TEST

static void setup_liar(void)
{
	const char *const models[] = {"camera-liar", NULL};
	ck_assert_int_eq(mnt_start(&m, models, "timeout=5000", 1), 0);
}

START_TEST(lying_camera)
{
	uint8_t buf[CHUNK];
	int fd = open(mpath(&m, MOVIE), O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, CHUNK, 0), CHUNK);
	/* More data than asked for: EIO, never the extra bytes. */
	ck_assert_int_eq(pread(fd, buf, CHUNK, MIB), -1);
	ck_assert_int_eq(errno, EIO);
	/* The transaction was cancelled and the pipes cleared: the same read now works. */
	ck_assert_int_eq(pread(fd, buf, CHUNK, MIB), CHUNK);
	for (int i = 0; i < CHUNK; i++)
		ck_assert_int_eq(buf[i], emu_disk_byte(MOVIE_H, MIB + (unsigned)i));
	/* A response of another transaction: EIO, then it works again. */
	ck_assert_int_eq(pread(fd, buf, CHUNK, 2 * MIB), -1);
	ck_assert_int_eq(errno, EIO);
	close(fd);
	ck_assert_int_eq(read_check(MOVIE, MOVIE_H, 0), MOVIE_SZ);
	/* Lies about data are the device's, not a driver crash. */
	ck_assert_str_eq(read_line(mpath(&m, "still0/restarts")), "0");
	static char events[64 * 1024];
	ssize_t n = read_file(mpath(&m, "events"), events, sizeof(events) - 1);
	ck_assert_int_gt(n, 0);
	events[n] = '\0';
	ck_assert_ptr_null(strstr(events, "crash"));
}
END_TEST

Suite *still_suite(void)
{
	Suite *s = suite_create("still");
	const struct {
		const char *name;
		const TTest *test;
	} cases[] = {
	    {"tree", tree_sizes_and_dates},   {"copy", copy_streamed_byte_identical},
	    {"offset", reads_at_an_offset},   {"rm", rm_and_read_only_storage},
	    {"upload", upload_by_cp},	      {"event", capture_event_adds_a_file},
	    {"kill", driver_killed_mid_copy}, {"unplug", unplug_enodev},
	};

	/* One mount per case: rm, upload and capture change the camera. */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		suite_add_one(s, cases[i].name, setup, teardown, 120, cases[i].test);
	suite_add_one(s, "liar", setup_liar, teardown, 120, lying_camera);
	return s;
}
