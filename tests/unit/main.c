/*
 * build/test-unit: every unit suite in one runner.  Run it bare, or with
 * CK_RUN_SUITE=usbdesc / CK_RUN_CASE=fuzz to pick one suite or test case.
 * Tests fork (CK_FORK, the default), so a crash in one fails that test and
 * the others still run.
 */
#include <stdlib.h>

#include "suites.h"

static Suite *(*const suite_ctors[])(void) = {
    proto_suite,
    usbdesc_suite,
    bind_suite,
    backoff_suite,
    opts_suite,
    events_suite,
    tree_suite,
    /* Class drivers. */
    printer_suite,
    hidparse_suite,
    serial_line_suite,
    uvcdesc_suite,
    http_suite,
    escl_suite,
};

int main(void)
{
	SRunner *sr = srunner_create(NULL);
	int failed;

	for (size_t i = 0; i < sizeof(suite_ctors) / sizeof(suite_ctors[0]); i++)
		srunner_add_suite(sr, suite_ctors[i]());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
