/*
 * The integration suites; main.c runs them all.
 */
#ifndef PLUGFS_TEST_SUITES_H
#define PLUGFS_TEST_SUITES_H

#include <check.h>

Suite *generic_suite(void);
Suite *crash_suite(void);
Suite *spare_suite(void);
Suite *isolation_suite(void);
Suite *mount_suite(void);
Suite *printer_suite(void);
Suite *hid_suite(void);
Suite *disk_suite(void);
Suite *serial_suite(void);
Suite *usbtmc_suite(void);
Suite *hotplug_suite(void);
Suite *hostile_suite(void);
Suite *sandbox_suite(void);
Suite *uvc_suite(void);
Suite *ippusb_suite(void);
Suite *still_suite(void);
Suite *ops_suite(void);

#endif
