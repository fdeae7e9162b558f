/*
 * fault-memcheck: one short life of the daemon, for `make check-valgrind`.
 *
 *     PLUGFS_BUILD=DIR build/fault-memcheck
 *
 * DIR/plugfs is expected to be the daemon under valgrind (the Makefile
 * writes that wrapper; plugfs-emu's preload reaches plugfs through it,
 * since valgrind keeps LD_PRELOAD for its client).  The scenario touches
 * what the daemon does: mount, the info files of every function, a
 * loopback round trip, a driver crash and respawn with a stale handle,
 * writes to the stick written back, and written again by the next driver
 * after a crash, an unplug and replug through plugfs-emu's control socket,
 * unmount on SIGTERM.  Every step is checked; valgrind's own verdict is plugfs's exit
 * status (--error-exitcode), which plugfs-emu passes on.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

static struct mnt m;
static int failures;

#define CHECK(cond, ...)                                                                                     \
	do {                                                                                                 \
		if (!(cond)) {                                                                               \
			failures++;                                                                          \
			fprintf(stderr, "fault-memcheck: FAILED: " __VA_ARGS__);                             \
			fputc('\n', stderr);                                                                 \
		}                                                                                            \
	} while (0)

static const char *const info_files[] = {"vendor_id",	"product_id", "manufacturer", "product", "serial",
					 "busnum",	"devnum",     "port",	      "speed",	 "interface",
					 "descriptors", "driver",     "state",	      "restarts"};

/* Every daemon-served file of every function. */
static void read_info(void)
{
	char buf[65536];

	CHECK(read_file(mpath(&m, "devices"), buf, sizeof(buf)) > 0, "read devices");
	CHECK(read_file(mpath(&m, "events"), buf, sizeof(buf)) > 0, "read events");
	DIR *d = opendir(m.path);
	CHECK(d != NULL, "opendir %s", m.path);
	if (d == NULL)
		return;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		if (e->d_type != DT_DIR || e->d_name[0] == '.' || strncmp(e->d_name, "by-", 3) == 0)
			continue;
		for (size_t i = 0; i < sizeof(info_files) / sizeof(info_files[0]); i++) {
			char rel[128];
			snprintf(rel, sizeof(rel), "%.60s/%s", e->d_name, info_files[i]);
			CHECK(read_file(mpath(&m, rel), buf, sizeof(buf)) >= 0, "read %s", rel);
		}
	}
	closedir(d);
}

/* One record out of usb0's ep02 and back from ep81. */
static void round_trip(const char *what)
{
	char in[16] = {0};
	int w = open(mpath(&m, "usb0/ep02"), O_WRONLY | O_CLOEXEC);
	int r = open(mpath(&m, "usb0/ep81"), O_RDONLY | O_CLOEXEC);

	CHECK(w >= 0 && r >= 0, "%s: open usb0's endpoints: %s", what, strerror(errno));
	if (w >= 0 && r >= 0)
		CHECK(write(w, "memcheck", 8) == 8 && read(r, in, sizeof(in)) == 8 &&
			  memcmp(in, "memcheck", 8) == 0,
		      "%s: round trip through usb0", what);
	if (w >= 0)
		close(w);
	if (r >= 0)
		close(r);
}

/*
 * Writes to the stick, gathered by the daemon (write-back): through fsync
 * and close; then with the driver stopped, so that two windows are still
 * unconfirmed when it is killed, and the next driver writes them.
 */
static void write_back(void)
{
	static uint8_t blk[64 * 1024], got[64 * 1024];
	const off_t base = 8 << 20;
	int fd = open(mpath(&m, "disk0/data"), O_WRONLY | O_CLOEXEC);

	CHECK(fd >= 0, "open disk0/data");
	if (fd < 0)
		return;
	for (int i = 0; i < 8; i++) {
		memset(blk, 'a' + i, sizeof(blk));
		CHECK(pwrite(fd, blk, sizeof(blk), base + i * (off_t)sizeof(blk)) == (ssize_t)sizeof(blk),
		      "write %d", i);
	}
	CHECK(fsync(fd) == 0, "fsync disk0/data");
	pid_t pid = fn_pid(&m, "disk0");
	/* Stopped, it answers nothing: the next 32 writes fill two windows (a 33rd would wait for room). */
	CHECK(pid > 0 && kill(pid, SIGSTOP) == 0, "stop disk0's driver");
	for (int i = 8; i < 40; i++) {
		memset(blk, 'a' + i % 26, sizeof(blk));
		CHECK(pwrite(fd, blk, sizeof(blk), base + i * (off_t)sizeof(blk)) == (ssize_t)sizeof(blk),
		      "write %d", i);
	}
	CHECK(kill(pid, SIGKILL) == 0, "kill disk0's driver");
	CHECK(wait_new_pid(&m, "disk0", pid, 20000) > 0 && wait_state(&m, "disk0", "running", 20000) == 0,
	      "disk0 respawned");
	CHECK(wait_file_has(mpath(&m, "events"), "replay 2 windows", 20000) != NULL, "the windows replayed");
	CHECK(write(fd, blk, sizeof(blk)) == -1 && errno == EIO, "stale handle gives EIO");
	CHECK(close(fd) == 0, "close after the replay");
	fd = open(mpath(&m, "disk0/data"), O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0, "reopen disk0/data");
	for (int i = 0; fd >= 0 && i < 40; i++) {
		memset(blk, 'a' + i % 26, sizeof(blk));
		CHECK(pread(fd, got, sizeof(got), base + i * (off_t)sizeof(got)) == (ssize_t)sizeof(got) &&
			  memcmp(got, blk, sizeof(got)) == 0,
		      "block %d on the medium", i);
	}
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	static const char *const models[] = {"loopback", "loopback", "printer-zh380", "disk", NULL};

	signal(SIGPIPE, SIG_IGN);
	/* Valgrind makes the daemon slow: the default timeout=, no tighter. */
	if (mnt_start(&m, models, "", 4) < 0)
		return 1;
	read_info();
	round_trip("after the mount");

	/* A crash: the handle opened before it gives EIO, the respawned driver works. */
	int stale = open(mpath(&m, "usb0/ep81"), O_RDONLY | O_CLOEXEC);
	char c;
	pid_t pid = fn_pid(&m, "usb0");
	CHECK(stale >= 0 && pid > 0 && kill(pid, SIGSEGV) == 0, "crash usb0's driver");
	CHECK(wait_new_pid(&m, "usb0", pid, 20000) > 0, "usb0 respawned");
	CHECK(read(stale, &c, 1) == -1 && errno == EIO, "stale handle gives EIO");
	if (stale >= 0)
		close(stale);
	round_trip("after the respawn");

	write_back();

	/* An unplug and a replug of the second loopback: its name comes back. */
	CHECK(emu_unplug(&m, "1-2") == 0, "unplug 1-2");
	CHECK(wait_function(&m, "usb1", 0, 20000) == 0, "usb1 gone");
	CHECK(emu_plug(&m, "loopback", 2) == 0, "plug 1-2");
	CHECK(wait_function(&m, "usb1", 1, 20000) == 0 && wait_state(&m, "usb1", "running", 20000) == 0,
	      "usb1 back and running");
	read_info();

	mnt_stop(&m);
	/* plugfs's status, passed on by plugfs-emu: 1 is valgrind's --error-exitcode. */
	CHECK(WIFEXITED(m.status) && WEXITSTATUS(m.status) == 0,
	      "plugfs under valgrind ended with status %#x (exit 1: valgrind found errors)", m.status);
	printf("fault-memcheck: %s\n", failures == 0 ? "passed" : "FAILED");
	return failures == 0 ? 0 : 1;
}
