/*
 * Integration tests: plugfs mounted for real over emulated USB devices,
 * used the way a shell script uses it.  Needs root (FUSE mounts, mount(8))
 * and build/plugfs-emu.  PLUGFS_KEEP_LOGS=1 keeps each mount's log.
 *
 *     build/test-integration [SUITE [TCASE]]
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "suites.h"

static Suite *(*const suites[])(void) = {
    generic_suite,
    crash_suite,
    spare_suite,
    isolation_suite,
    mount_suite,
    hotplug_suite,
    hostile_suite,
    sandbox_suite,
    ops_suite,
    /* Class drivers. */
    printer_suite,
    hid_suite,
    disk_suite,
    serial_suite,
    uvc_suite,
    usbtmc_suite,
    ippusb_suite,
    still_suite,
};

int main(int argc, char **argv)
{
	SRunner *sr = srunner_create(NULL);
	int failed;

	if (getuid() != 0) {
		fprintf(stderr, "test-integration: needs root (FUSE mounts)\n");
		return 1;
	}
	/* Mounts whose log holds a sanitizer report are listed here (harness.c). */
	char tally[] = "/tmp/plugfs-sanitizer-tally.XXXXXX";
	int fd = mkstemp(tally);
	if (fd < 0) {
		perror("test-integration: mkstemp");
		return 1;
	}
	setenv("PLUGFS_SANITIZER_TALLY", tally, 1);
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		srunner_add_suite(sr, suites[i]());
	srunner_run(sr, argc > 1 ? argv[1] : NULL, argc > 2 ? argv[2] : NULL, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);

	char logs[4096];
	ssize_t n = read(fd, logs, sizeof(logs) - 1);
	close(fd);
	unlink(tally);
	if (n > 0) {
		logs[n] = '\0';
		fprintf(stderr, "test-integration: sanitizer reports in these mount logs (kept):\n%s", logs);
		failed++;
	}
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
