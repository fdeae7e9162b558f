/*
 * The Check suites linked into build/test-unit.  Adding a suite = its
 * constructor's prototype here plus one line in the table in main.c.
 */
#ifndef PLUGFS_TEST_SUITES_H
#define PLUGFS_TEST_SUITES_H

#include <check.h>

Suite *proto_suite(void);
Suite *usbdesc_suite(void);
Suite *bind_suite(void);
Suite *backoff_suite(void);
Suite *opts_suite(void);
Suite *events_suite(void);
Suite *tree_suite(void);
Suite *printer_suite(void);
Suite *hidparse_suite(void);
Suite *serial_line_suite(void);
Suite *uvcdesc_suite(void);
Suite *http_suite(void);
Suite *escl_suite(void);

#endif
