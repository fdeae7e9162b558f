/*
 * fault-memcheck: one short life of the daemon, for `make check-valgrind`.
 *
 *     PLUGFS_BUILD=DIR build/fault-memcheck
 *
 * DIR/plugfs is expected to be the daemon under valgrind (the Makefile
 * writes that wrapper; plugfs-emu's preload reaches plugfs through it,
 * since valgrind keeps LD_PRELOAD for its client).  The scenario touches
 * what the daemon does: mount, the info files of every function, a
 * loopback round trip, a driver crash and respawn with a stale handle, an
 * unplug and replug through plugfs-emu's control socket, unmount on
 * SIGTERM.  Every step is checked; valgrind's own verdict is plugfs's exit
 * status (--error-exitcode), which plugfs-emu passes on.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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
