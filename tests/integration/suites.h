/*
 * The integration suites; main.c runs them all.
 */
#ifndef PLUGFS_TEST_SUITES_H
#define PLUGFS_TEST_SUITES_H

#include <check.h>

Suite *generic_suite(void);
Suite *crash_suite(void);
Suite *isolation_suite(void);
Suite *mount_suite(void);
Suite *hotplug_suite(void);

#endif
