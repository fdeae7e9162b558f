/*
 * The tree, the daemon's info files and the generic driver's files, over the
 * emulated loopback and stall devices.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

static struct mnt m;

static void setup_loopback(void)
{
	static const char *const models[] = {"loopback", NULL};
	ck_assert_int_eq(mnt_start(&m, models, "timeout=3000", 1), 0);
}

static void setup_stall(void)
{
	static const char *const models[] = {"stall", NULL};
	ck_assert_int_eq(mnt_start(&m, models, "timeout=3000", 1), 0);
}

static void teardown(void)
{
	mnt_stop(&m);
}

/* A text info file holds `want` and a newline, and st_size says so. */
static void assert_info(const char *rel, const char *want)
{
	char buf[256], expect[256];
	struct stat st;
	ssize_t n = read_file(mpath(&m, rel), buf, sizeof(buf) - 1);

	ck_assert_msg(n >= 0, "%s: %s", rel, strerror((int)-n));
	buf[n] = '\0';
	snprintf(expect, sizeof(expect), "%s\n", want);
	ck_assert_str_eq(buf, expect);
	ck_assert_int_eq(stat(mpath(&m, rel), &st), 0);
	ck_assert_int_eq(st.st_size, n);
}

START_TEST(tree_lists_device)
{
	char link[256];
	struct stat st;
	ssize_t n;

	ck_assert_int_eq(stat(mpath(&m, "usb0"), &st), 0);
	ck_assert(S_ISDIR(st.st_mode));
	ck_assert_int_eq(stat(mpath(&m, "usb1"), &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	n = readlink(mpath(&m, "by-id/usb-plugfs_Loopback_LB0001-if00"), link, sizeof(link) - 1);
	ck_assert_int_gt(n, 0);
	link[n] = '\0';
	ck_assert_str_eq(link, "../usb0");
	n = readlink(mpath(&m, "by-path/1-1:1.0"), link, sizeof(link) - 1);
	ck_assert_int_gt(n, 0);
	link[n] = '\0';
	ck_assert_str_eq(link, "../usb0");
	/* The link resolves to the function directory. */
	ck_assert_str_eq(read_line(mpath(&m, "by-id/usb-plugfs_Loopback_LB0001-if00/vendor_id")), "1209");

	char line[256];
	pid_t pid = fn_pid(&m, "usb0");
	ck_assert_int_gt(pid, 0);
	snprintf(line, sizeof(line), "usb0 1-1 1209:0001 usb running 0 %d", (int)pid);
	ck_assert_str_eq(read_line(mpath(&m, "devices")), line);
	ck_assert_int_eq(wait_event(&m, "usb0 attach 1-1 1209:0001", NULL, 1000), 0);
	ck_assert_int_eq(wait_event(&m, "usb0 bind usb", NULL, 1000), 0);
}
END_TEST

START_TEST(info_files_match_device)
{
	assert_info("usb0/vendor_id", "1209");
	assert_info("usb0/product_id", "0001");
	assert_info("usb0/manufacturer", "plugfs");
	assert_info("usb0/product", "Loopback");
	assert_info("usb0/serial", "LB0001");
	assert_info("usb0/busnum", "1");
	assert_info("usb0/devnum", "2");
	assert_info("usb0/port", "1-1");
	assert_info("usb0/speed", "480");
	assert_info("usb0/interface", "00");
	assert_info("usb0/driver", "usb");
	assert_info("usb0/state", "running");
	assert_info("usb0/restarts", "0");

	/* descriptors: byte for byte what the (emulated) sysfs shows. */
	char cmd[512], want[4096], got[4096];
	snprintf(cmd, sizeof(cmd),
		 "%s/plugfs-emu --model loopback -- cat /sys/bus/usb/devices/1-1/descriptors", build_dir());
	FILE *p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	size_t wn = fread(want, 1, sizeof(want), p);
	ck_assert_int_eq(pclose(p), 0);
	ck_assert_int_gt(wn, 18 + 9);
	ssize_t gn = read_file(mpath(&m, "usb0/descriptors"), got, sizeof(got));
	ck_assert_int_eq(gn, (ssize_t)wn);
	ck_assert_mem_eq(got, want, wn);
	/* A device descriptor, then the configuration. */
	ck_assert_int_eq((unsigned char)got[0], 18);
	ck_assert_int_eq(got[1], 1);
}
END_TEST

/* Started as root, drivers drop to driver_user, nobody by default, once the device is open. */
START_TEST(driver_runs_as_nobody)
{
	char path[64], status[4096];
	struct passwd *pw = getpwnam("nobody");

	ck_assert_ptr_nonnull(pw);
	snprintf(path, sizeof(path), "/proc/%d/status", (int)fn_pid_served(&m, "usb0", "ep0"));
	ssize_t n = read_file(path, status, sizeof(status) - 1);
	ck_assert_int_gt(n, 0);
	status[n] = '\0';
	unsigned ruid, euid, suid, fsuid, rgid, egid, sgid, fsgid;
	ck_assert_int_eq(sscanf(strstr(status, "Uid:"), "Uid: %u %u %u %u", &ruid, &euid, &suid, &fsuid), 4);
	ck_assert_int_eq(sscanf(strstr(status, "Gid:"), "Gid: %u %u %u %u", &rgid, &egid, &sgid, &fsgid), 4);
	ck_assert_uint_eq(ruid, pw->pw_uid);
	ck_assert_uint_eq(euid, pw->pw_uid);
	ck_assert_uint_eq(suid, pw->pw_uid);
	ck_assert_uint_eq(egid, pw->pw_gid);
	ck_assert_uint_eq(sgid, pw->pw_gid);
	/* No supplementary groups left from root. */
	char *groups = strstr(status, "Groups:");
	ck_assert_ptr_nonnull(groups);
	ck_assert_int_eq(strspn(groups + 7, " \t"), strcspn(groups + 7, "\n"));
}
END_TEST

START_TEST(info_files_refuse_writes)
{
	ck_assert_int_eq(open(mpath(&m, "usb0/vendor_id"), O_WRONLY), -1);
	ck_assert_int_eq(errno, EACCES);
	ck_assert_int_eq(open(mpath(&m, "usb0/ctl"), O_RDONLY), -1);
	ck_assert_int_eq(errno, EACCES);
	ck_assert_int_eq(write_file(mpath(&m, "usb0/ctl"), "no-such-command\n"), -EINVAL);
	/* The tree is the devices': nothing is created, removed or renamed. */
	ck_assert_int_eq(open(mpath(&m, "usb0/newfile"), O_WRONLY | O_CREAT, 0644), -1);
	ck_assert_int_eq(errno, EPERM);
	ck_assert_int_eq(mkdir(mpath(&m, "usb9"), 0755), -1);
	ck_assert_int_eq(errno, EPERM);
	ck_assert_int_eq(unlink(mpath(&m, "usb0/ep81")), -1);
	ck_assert_int_eq(errno, EPERM);
	ck_assert_int_eq(rename(mpath(&m, "usb0/ep81"), mpath(&m, "usb0/in")), -1);
	ck_assert_int_eq(errno, EPERM);
	ck_assert_int_eq(write_file(mpath(&m, "usb0/ctl"), "\n"), -EINVAL);
}
END_TEST

static void fill_pattern(unsigned char *buf, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		buf[i] = (unsigned char)(seed >> 16);
	}
}

/* Writes n bytes to ep02 and reads them back from ep81. */
static void round_trip(size_t n, unsigned seed)
{
	unsigned char *out = malloc(n), *in = malloc(n);
	int wfd = open(mpath(&m, "usb0/ep02"), O_WRONLY);
	int rfd = open(mpath(&m, "usb0/ep81"), O_RDONLY);
	size_t done = 0;

	ck_assert_int_ge(wfd, 0);
	ck_assert_int_ge(rfd, 0);
	fill_pattern(out, n, seed);
	while (done < n) {
		ssize_t w = write(wfd, out + done, n - done);
		ck_assert_msg(w > 0, "write at %zu of %zu: %s", done, n, strerror(errno));
		done += (size_t)w;
	}
	done = 0;
	while (done < n) {
		ssize_t r = read(rfd, in + done, n - done);
		ck_assert_msg(r > 0, "read at %zu of %zu: %s", done, n, r < 0 ? strerror(errno) : "EOF");
		done += (size_t)r;
	}
	ck_assert_int_eq(memcmp(in, out, n), 0);
	close(wfd);
	close(rfd);
	free(out);
	free(in);
}

START_TEST(loopback_round_trip)
{
	static const size_t sizes[] = {1, 512, 65536, 1048576};
	round_trip(sizes[_i], (unsigned)_i + 1);
}
END_TEST

START_TEST(endpoint_files_are_streams)
{
	struct stat st;
	int fd = open(mpath(&m, "usb0/ep81"), O_RDONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(lseek(fd, 0, SEEK_SET), -1);
	ck_assert_int_eq(errno, ESPIPE);
	ck_assert_int_eq(fstat(fd, &st), 0);
	ck_assert_int_eq(st.st_size, 0);
	close(fd);
	/* IN endpoints are read-only, OUT endpoints write-only. */
	ck_assert_int_eq(open(mpath(&m, "usb0/ep81"), O_WRONLY), -1);
	ck_assert_int_eq(errno, EACCES);
	ck_assert_int_eq(open(mpath(&m, "usb0/ep02"), O_RDONLY), -1);
	ck_assert_int_eq(errno, EACCES);
}
END_TEST

START_TEST(nonblocking_read_and_poll)
{
	char buf[64];
	int fd = open(mpath(&m, "usb0/ep81"), O_RDONLY | O_NONBLOCK);
	struct pollfd p = {.fd = fd, .events = POLLIN};

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EAGAIN);
	ck_assert_int_eq(poll(&p, 1, 0), 0);
	/* Data arriving later wakes the poller, through the driver's POLL_READY. */
	ck_assert_int_eq(write_file(mpath(&m, "usb0/ep02"), "wake up"), 0);
	ck_assert_int_eq(poll(&p, 1, 5000), 1);
	ck_assert(p.revents & POLLIN);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 7);
	ck_assert_mem_eq(buf, "wake up", 7);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EAGAIN);
	close(fd);
	/* OUT endpoints are always writable. */
	fd = open(mpath(&m, "usb0/ep02"), O_WRONLY | O_NONBLOCK);
	p = (struct pollfd){.fd = fd, .events = POLLOUT};
	ck_assert_int_eq(poll(&p, 1, 0), 1);
	ck_assert(p.revents & POLLOUT);
	close(fd);
}
END_TEST

START_TEST(control_transfers)
{
	unsigned char setup[8 + 16], data[64];
	int fd = open(mpath(&m, "usb0/ep0"), O_RDWR);

	ck_assert_int_ge(fd, 0);
	/* Vendor OUT request 0x01 stores 16 bytes... */
	unsigned char store[8] = {0x40, 0x01, 0, 0, 0, 0, 16, 0};
	memcpy(setup, store, 8);
	for (int i = 0; i < 16; i++)
		setup[8 + i] = (unsigned char)(0xa0 + i);
	ck_assert_int_eq(write(fd, setup, sizeof(setup)), (ssize_t)sizeof(setup));
	/* ...and vendor IN request 0x02 gives them back on the next read. */
	unsigned char fetch[8] = {0xc0, 0x02, 0, 0, 0, 0, 16, 0};
	ck_assert_int_eq(write(fd, fetch, 8), 8);
	ck_assert_int_eq(read(fd, data, sizeof(data)), 16);
	ck_assert_mem_eq(data, setup + 8, 16);
	/* Nothing pending: end of file. */
	ck_assert_int_eq(read(fd, data, sizeof(data)), 0);
	/* Request 0x03: wLength bytes of i & 0xff. */
	unsigned char pattern[8] = {0xc0, 0x03, 0, 0, 0, 0, 64, 0};
	ck_assert_int_eq(write(fd, pattern, 8), 8);
	ck_assert_int_eq(read(fd, data, sizeof(data)), 64);
	for (int i = 0; i < 64; i++)
		ck_assert_int_eq(data[i], i);
	/* A setup packet must be 8 bytes. */
	ck_assert_int_eq(write(fd, setup, 5), -1);
	ck_assert_int_eq(errno, EINVAL);
	/* An unknown request stalls: EPIPE. */
	unsigned char bogus[8] = {0xc0, 0x7f, 0, 0, 0, 0, 4, 0};
	ck_assert_int_eq(write(fd, bogus, 8), -1);
	ck_assert_int_eq(errno, EPIPE);
	close(fd);
}
END_TEST

START_TEST(stall_gives_epipe)
{
	char buf[64];
	int rfd = open(mpath(&m, "usb0/ep81"), O_RDONLY);
	int wfd = open(mpath(&m, "usb0/ep02"), O_WRONLY);

	ck_assert_int_ge(rfd, 0);
	ck_assert_int_ge(wfd, 0);
	ck_assert_int_eq(read(rfd, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EPIPE);
	ck_assert_int_eq(write(wfd, "x", 1), -1);
	ck_assert_int_eq(errno, EPIPE);
	/* The user clears the halt through ctl; the stall model stalls again on the next transfer. */
	ck_assert_int_eq(write_file(mpath(&m, "usb0/ctl"), "clear-halt 81\n"), 0);
	ck_assert_int_eq(write_file(mpath(&m, "usb0/ctl"), "clear-halt 02\n"), 0);
	ck_assert_int_eq(read(rfd, buf, sizeof(buf)), -1);
	ck_assert_int_eq(errno, EPIPE);
	/* A stall is the device's answer, not a driver failure. */
	ck_assert_str_eq(read_line(mpath(&m, "usb0/state")), "running");
	ck_assert_str_eq(read_line(mpath(&m, "usb0/restarts")), "0");
	close(rfd);
	close(wfd);
}
END_TEST

static void setup_kbound(void)
{
	static const char *const models[] = {"kbound", NULL};
	ck_assert_int_eq(mnt_start(&m, models, NULL, 1), 0);
}

static void setup_kbound_detach(void)
{
	static const char *const models[] = {"kbound", NULL};
	ck_assert_int_eq(mnt_start(&m, models, "detach=1209:0004", 2), 0);
}

START_TEST(kernel_bound_interface_left_alone)
{
	struct stat st;
	char link[64];

	/* Interface 1 belongs to a kernel driver: no directory for it. */
	ck_assert_str_eq(read_line(mpath(&m, "usb0/interface")), "00");
	ck_assert_int_eq(stat(mpath(&m, "usb1"), &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(readlink(mpath(&m, "by-path/1-1:1.1"), link, sizeof(link)), -1);
	ck_assert_int_eq(wait_event(&m, "1-1:1.1 skip bound to kernel driver usbhid", NULL, 1000), 0);
	ck_assert_int_eq(stat(mpath(&m, "usb0/ep81"), &st), 0);
}
END_TEST

START_TEST(detach_takes_kernel_bound_interface)
{
	ck_assert_str_eq(read_line(mpath(&m, "usb0/interface")), "00");
	ck_assert_str_eq(read_line(mpath(&m, "usb1/interface")), "01");
	/* One device, one driver process for both functions. */
	ck_assert_int_eq(fn_pid(&m, "usb0"), fn_pid(&m, "usb1"));
	/* Interface 1's endpoints work (the model loops 0x04 back to 0x83). */
	ck_assert_int_eq(write_file(mpath(&m, "usb1/ep04"), "detached"), 0);
	char buf[16];
	int fd = open(mpath(&m, "usb1/ep83"), O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(read(fd, buf, sizeof(buf)), 8);
	ck_assert_mem_eq(buf, "detached", 8);
	close(fd);
}
END_TEST

Suite *generic_suite(void)
{
	Suite *s = suite_create("generic");
	TCase *tc = tcase_create("loopback");

	tcase_add_unchecked_fixture(tc, setup_loopback, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, tree_lists_device);
	tcase_add_test(tc, info_files_match_device);
	tcase_add_test(tc, driver_runs_as_nobody);
	tcase_add_test(tc, info_files_refuse_writes);
	tcase_add_loop_test(tc, loopback_round_trip, 0, 4);
	tcase_add_test(tc, endpoint_files_are_streams);
	tcase_add_test(tc, nonblocking_read_and_poll);
	tcase_add_test(tc, control_transfers);
	suite_add_tcase(s, tc);

	tc = tcase_create("stall");
	tcase_add_unchecked_fixture(tc, setup_stall, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, stall_gives_epipe);
	suite_add_tcase(s, tc);

	tc = tcase_create("kernel driver");
	tcase_add_unchecked_fixture(tc, setup_kbound, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, kernel_bound_interface_left_alone);
	suite_add_tcase(s, tc);

	tc = tcase_create("detach");
	tcase_add_unchecked_fixture(tc, setup_kbound_detach, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, detach_takes_kernel_bound_interface);
	suite_add_tcase(s, tc);
	return s;
}
