/*
 * The `events` file (fs/log.c): one line per event, "TIME NAME WHAT\n"
 * with an ISO-8601 UTC time in milliseconds; offsets count from the mount
 * and keep counting when the oldest lines are dropped past 256 KiB, and a
 * reader at a dropped offset gets the oldest line kept, from its start.
 * Each test forks, so the log starts empty.
 */
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "plugfs.h"
#include "suites.h"

#define EVENTS_CAP (256 * 1024) /* fs/log.c */
#define TIME_LEN   24		/* 2026-11-24T10:00:00.123Z */

/* event_add() also logs each event to stderr in the foreground: keep the test output clean. */
static void quiet(void)
{
	int fd = open("/dev/null", O_WRONLY);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
	close(fd);
	log_init(1, 0);
}

/* Reads the whole log from `off`. */
static char *read_all(uint64_t off, size_t *len)
{
	size_t cap = EVENTS_CAP + 1;
	char *buf = malloc(cap);

	ck_assert_ptr_nonnull(buf);
	*len = events_read(buf, cap, off);
	buf[*len] = '\0';
	return buf;
}

START_TEST(test_empty)
{
	char buf[16];

	quiet();
	ck_assert_uint_eq(events_size(), 0);
	ck_assert_uint_eq(events_read(buf, sizeof(buf), 0), 0);
	ck_assert_uint_eq(events_read(buf, sizeof(buf), 100), 0);
}
END_TEST

START_TEST(test_line_format)
{
	regex_t re;
	regmatch_t m[8];
	size_t len;

	quiet();
	struct timeval before, after;
	/* gettimeofday as the daemon: time() may lag it by a clock tick. */
	gettimeofday(&before, NULL);
	event_add("printer0", "crash %s, restart %u in %u ms", "SIGSEGV", 1, 0);
	gettimeofday(&after, NULL);
	char *s = read_all(0, &len);

	ck_assert_uint_eq(len, events_size());
	ck_assert_int_eq(
	    regcomp(&re,
		    "^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})\\.[0-9]{3}Z "
		    "printer0 crash SIGSEGV, restart 1 in 0 ms\n$",
		    REG_EXTENDED),
	    0);
	ck_assert_msg(regexec(&re, s, 8, m, 0) == 0, "bad line: %s", s);
	regfree(&re);
	ck_assert_uint_eq(len, TIME_LEN + strlen(" printer0 crash SIGSEGV, restart 1 in 0 ms\n"));

	/* The time is now, in UTC. */
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	ck_assert_ptr_nonnull(strptime(s, "%Y-%m-%dT%H:%M:%S", &tm));
	time_t t = timegm(&tm);
	ck_assert_int_ge(t, before.tv_sec);
	ck_assert_int_le(t, after.tv_sec);
	/* The milliseconds too, when the second did not change. */
	if (before.tv_sec == after.tv_sec) {
		long ms = strtol(s + 20, NULL, 10);
		ck_assert_int_ge(ms, before.tv_usec / 1000);
		ck_assert_int_le(ms, after.tv_usec / 1000);
	}
	free(s);
}
END_TEST

START_TEST(test_lines_append)
{
	regex_t re;
	size_t len;

	quiet();
	event_add("usb0", "attach 1-1 0403:6001 interface %02x driver %s", 0, "usb");
	uint64_t first = events_size();
	event_add("usb1", "bind");
	uint64_t second = events_size();
	event_add("usb0", "detach");

	char *s = read_all(0, &len);
	ck_assert_uint_eq(len, events_size());
	ck_assert_uint_eq(first, TIME_LEN + strlen(" usb0 attach 1-1 0403:6001 interface 00 driver usb\n"));
	ck_assert_uint_eq(second - first, TIME_LEN + strlen(" usb1 bind\n"));
	ck_assert_uint_eq(events_size() - second, TIME_LEN + strlen(" usb0 detach\n"));

	ck_assert_int_eq(
	    regcomp(&re,
		    "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
		    "usb0 attach 1-1 0403:6001 interface 00 driver usb\n"
		    "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z usb1 bind\n"
		    "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z usb0 detach\n$",
		    REG_EXTENDED | REG_NOSUB),
	    0);
	ck_assert_msg(regexec(&re, s, 0, NULL, 0) == 0, "bad log:\n%s", s);
	regfree(&re);
	/* Times never go backwards. */
	ck_assert_int_le(memcmp(s, s + first, TIME_LEN), 0);
	ck_assert_int_le(memcmp(s + first, s + second, TIME_LEN), 0);
	free(s);
}
END_TEST

START_TEST(test_read_offsets)
{
	char buf[64];
	size_t len;

	quiet();
	event_add("hid0", "attach");
	event_add("hid0", "crash exit 3, restart 1 in 0 ms");
	char *all = read_all(0, &len);
	uint64_t size = events_size();
	ck_assert_uint_eq(len, size);

	/* From the middle of a line, in small pieces, the same bytes. */
	uint64_t off = 5;
	while (off < size) {
		size_t n = events_read(buf, 7, off);
		ck_assert_uint_gt(n, 0);
		ck_assert_uint_le(n, 7);
		ck_assert_int_eq(memcmp(buf, all + off, n), 0);
		off += n;
	}
	ck_assert_uint_eq(off, size);
	/* At and past the end: nothing. */
	ck_assert_uint_eq(events_read(buf, sizeof(buf), size), 0);
	ck_assert_uint_eq(events_read(buf, sizeof(buf), size + 1000), 0);
	/* The last byte alone. */
	ck_assert_uint_eq(events_read(buf, sizeof(buf), size - 1), 1);
	ck_assert_int_eq(buf[0], '\n');
	/* A zero-size read. */
	ck_assert_uint_eq(events_read(buf, 0, 0), 0);
	free(all);
}
END_TEST

START_TEST(test_long_line_truncated)
{
	char name[700];
	size_t len;

	quiet();
	memset(name, 'n', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	event_add(name, "attach");
	/* Cut to the daemon's line limit, still one line ending in a newline. */
	char *s = read_all(0, &len);
	ck_assert_uint_eq(len, events_size());
	ck_assert_uint_eq(len, 511);
	ck_assert_int_eq(s[len - 1], '\n');
	ck_assert_ptr_eq(memchr(s, '\n', len), s + len - 1);
	ck_assert_ptr_null(memchr(s, '\0', len));
	free(s);
}
END_TEST

/* Lines of exactly 256 bytes: 1024 of them fill the log to the byte. */
static void add_256(unsigned i)
{
	char pad[300];

	/* TIME_LEN + " ev " + what + "\n" = 256: what is 227 bytes, "n=NNNNNN " + 218 of padding. */
	memset(pad, 'x', 218);
	pad[218] = '\0';
	event_add("ev", "n=%06u %s", i, pad);
}

START_TEST(test_trim_exact_fit)
{
	char buf[300];

	quiet();
	for (unsigned i = 0; i < 1024; i++)
		add_256(i);
	ck_assert_uint_eq(events_size(), EVENTS_CAP);
	/* Full to the byte: nothing dropped yet. */
	ck_assert_uint_eq(events_read(buf, sizeof(buf), 0), sizeof(buf));
	ck_assert_int_eq(memcmp(buf + TIME_LEN, " ev n=000000 ", 13), 0);

	/* One more line drops exactly one, the oldest. */
	add_256(1024);
	ck_assert_uint_eq(events_size(), EVENTS_CAP + 256);
	size_t n = events_read(buf, sizeof(buf), 0);
	ck_assert_uint_eq(n, sizeof(buf));
	ck_assert_msg(memcmp(buf + TIME_LEN, " ev n=000001 ", 13) == 0, "oldest kept: %.40s", buf);
	/* The same line at its own offset. */
	char buf2[300];
	ck_assert_uint_eq(events_read(buf2, sizeof(buf2), 256), sizeof(buf2));
	ck_assert_int_eq(memcmp(buf, buf2, sizeof(buf)), 0);
	/* The newest line is at the end, whole. */
	ck_assert_uint_eq(events_read(buf, sizeof(buf), EVENTS_CAP), 256);
	ck_assert_int_eq(memcmp(buf + TIME_LEN, " ev n=001024 ", 13), 0);
	ck_assert_int_eq(buf[255], '\n');
	/* Everything kept: 1024 lines, 256 KiB. */
	size_t len;
	char *s = read_all(0, &len);
	ck_assert_uint_eq(len, EVENTS_CAP);
	free(s);
}
END_TEST

START_TEST(test_trim_variable_lines)
{
	/* A copy of everything logged, and where each line starts. */
	size_t cap = 1024 * 1024, total = 0;
	char *full = malloc(cap);
	uint64_t *starts = malloc(8192 * sizeof(*starts));
	unsigned nlines = 0;
	char what[400];
	char line[600];

	ck_assert_ptr_nonnull(full);
	ck_assert_ptr_nonnull(starts);
	quiet();
	srand(42);
	while (total < 3 * EVENTS_CAP / 2) {
		size_t wl = 1 + (size_t)rand() % 300;
		memset(what, 'a' + nlines % 26, wl);
		what[wl] = '\0';
		uint64_t before = events_size();
		ck_assert_uint_eq(before, total);
		event_add("serial0", "%s", what);
		size_t n = (size_t)(events_size() - before);
		ck_assert_uint_eq(n, TIME_LEN + strlen(" serial0 ") + wl + 1);
		/* The new line is readable at its offset whatever was trimmed. */
		ck_assert_uint_eq(events_read(line, sizeof(line), before), n);
		ck_assert_int_eq(line[n - 1], '\n');
		memcpy(full + total, line, n);
		starts[nlines++] = total;
		total += n;
	}
	ck_assert_uint_eq(events_size(), total);

	/* What is kept is the tail of everything, starting at a line boundary. */
	size_t kept;
	char *s = read_all(0, &kept);
	ck_assert_uint_le(kept, EVENTS_CAP);
	uint64_t base = total - kept;
	ck_assert_uint_gt(base, 0);
	ck_assert_int_eq(memcmp(s, full + base, kept), 0);
	unsigned first = 0;
	while (first < nlines && starts[first] < base)
		first++;
	ck_assert_msg(first < nlines && starts[first] == base, "kept range starts mid-line at %llu",
		      (unsigned long long)base);
	/* Only as many lines were dropped as needed: the last one dropped would not fit. */
	ck_assert_uint_gt(kept + (base - starts[first - 1]), EVENTS_CAP);

	/* Reads below the kept range start at the oldest kept line. */
	char buf[64];
	ck_assert_uint_eq(events_read(buf, sizeof(buf), 0), sizeof(buf));
	ck_assert_int_eq(memcmp(buf, full + base, sizeof(buf)), 0);
	ck_assert_uint_eq(events_read(buf, sizeof(buf), base - 1), sizeof(buf));
	ck_assert_int_eq(memcmp(buf, full + base, sizeof(buf)), 0);
	/* At and above it, exactly what is there, even mid-line. */
	ck_assert_uint_eq(events_read(buf, sizeof(buf), base + 3), sizeof(buf));
	ck_assert_int_eq(memcmp(buf, full + base + 3, sizeof(buf)), 0);
	ck_assert_uint_eq(events_read(buf, sizeof(buf), total - 10), 10);
	ck_assert_int_eq(memcmp(buf, full + total - 10, 10), 0);
	free(s);
	free(full);
	free(starts);
}
END_TEST

Suite *events_suite(void)
{
	Suite *s = suite_create("events");
	TCase *tc = tcase_create("events");

	tcase_add_test(tc, test_empty);
	tcase_add_test(tc, test_line_format);
	tcase_add_test(tc, test_lines_append);
	tcase_add_test(tc, test_read_offsets);
	tcase_add_test(tc, test_long_line_truncated);
	tcase_add_test(tc, test_trim_exact_fit);
	tcase_add_test(tc, test_trim_variable_lines);
	suite_add_tcase(s, tc);
	return s;
}
