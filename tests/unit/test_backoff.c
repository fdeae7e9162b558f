/*
 * The respawn policy (supervisor/backoff.c), as SPEC.md states it:
 * "first crash immediate, then doubling from min up to max", and "more
 * than restart_max crashes within restart_window: stop respawning, state
 * failed".  The supervisor fails a driver when drv_record_crash() returns
 * more than restart_max and otherwise waits drv_respawn_delay_ms() of that
 * count; the model at the bottom replays that rule with the defaults.
 */
#include <limits.h>
#include <stdint.h>

#include "suites.h"
#include "supervisor.h"

START_TEST(test_delay_first_crash_immediate)
{
	ck_assert_uint_eq(drv_respawn_delay_ms(0, 10, 5000), 0);
	ck_assert_uint_eq(drv_respawn_delay_ms(1, 10, 5000), 0);
	ck_assert_uint_eq(drv_respawn_delay_ms(1, 1000, 1000), 0);
}
END_TEST

START_TEST(test_delay_doubles_from_min)
{
	/* Defaults 10/5000: 0, 10, 20, 40 ... 2560, then 5120 is capped to 5000. */
	static const unsigned want[] = {0, 0, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 5000, 5000, 5000};

	for (unsigned n = 0; n < sizeof(want) / sizeof(want[0]); n++)
		ck_assert_msg(drv_respawn_delay_ms(n, 10, 5000) == want[n], "crash %u: %u ms, expected %u", n,
			      drv_respawn_delay_ms(n, 10, 5000), want[n]);
}
END_TEST

START_TEST(test_delay_power_of_two_max)
{
	/* When min divides max the cap is reached exactly, and stays. */
	ck_assert_uint_eq(drv_respawn_delay_ms(2, 8, 64), 8);
	ck_assert_uint_eq(drv_respawn_delay_ms(3, 8, 64), 16);
	ck_assert_uint_eq(drv_respawn_delay_ms(5, 8, 64), 64);
	ck_assert_uint_eq(drv_respawn_delay_ms(6, 8, 64), 64);
}
END_TEST

START_TEST(test_delay_min_equals_max)
{
	for (unsigned n = 2; n < 70; n++)
		ck_assert_uint_eq(drv_respawn_delay_ms(n, 250, 250), 250);
}
END_TEST

START_TEST(test_delay_huge_counts)
{
	/* No overflow however many crashes: the doubling stops at the cap. */
	ck_assert_uint_eq(drv_respawn_delay_ms(64, 10, 5000), 5000);
	ck_assert_uint_eq(drv_respawn_delay_ms(1000, 10, 5000), 5000);
	ck_assert_uint_eq(drv_respawn_delay_ms(UINT_MAX, 10, 5000), 5000);
	ck_assert_uint_eq(drv_respawn_delay_ms(UINT_MAX, 1, UINT_MAX), UINT_MAX);
	ck_assert_uint_eq(drv_respawn_delay_ms(40, 3, UINT_MAX), UINT_MAX);
	/* 3 << 30 still fits in 32 bits; 3 << 31 does not and is capped. */
	ck_assert_uint_eq(drv_respawn_delay_ms(32, 3, UINT_MAX), 3u << 30);
	ck_assert_uint_eq(drv_respawn_delay_ms(33, 3, UINT_MAX), UINT_MAX);
	ck_assert_uint_eq(drv_respawn_delay_ms(2, UINT_MAX, UINT_MAX), UINT_MAX);
}
END_TEST

START_TEST(test_record_counts)
{
	uint64_t hist[8];
	unsigned n = 0;

	for (unsigned i = 1; i <= 5; i++)
		ck_assert_uint_eq(drv_record_crash(hist, &n, 8, 1000 + i * 100, 60000), i);
	ck_assert_uint_eq(n, 5);
	for (unsigned i = 0; i < 5; i++)
		ck_assert_uint_eq(hist[i], 1000 + (i + 1) * 100);
}
END_TEST

START_TEST(test_record_window_expiry)
{
	uint64_t hist[8];
	unsigned n = 0;

	ck_assert_uint_eq(drv_record_crash(hist, &n, 8, 1000, 60000), 1);
	ck_assert_uint_eq(drv_record_crash(hist, &n, 8, 2000, 60000), 2);
	/* 1000 is 59999 ms old: still inside. */
	ck_assert_uint_eq(drv_record_crash(hist, &n, 8, 60999, 60000), 3);
	/* 1000 is exactly 60000 ms old: outside; 2000 is 59000 ms old: inside. */
	ck_assert_uint_eq(drv_record_crash(hist, &n, 8, 61000, 60000), 3);
	ck_assert_uint_eq(hist[0], 2000);
	ck_assert_uint_eq(hist[1], 60999);
	ck_assert_uint_eq(hist[2], 61000);
	/* Much later everything has expired but the new crash. */
	ck_assert_uint_eq(drv_record_crash(hist, &n, 8, 500000, 60000), 1);
	ck_assert_uint_eq(n, 1);
	ck_assert_uint_eq(hist[0], 500000);
}
END_TEST

START_TEST(test_record_same_instant)
{
	uint64_t hist[8];
	unsigned n = 0;

	/* Crashes in the same millisecond are 0 ms apart: all inside any window. */
	for (unsigned i = 1; i <= 4; i++)
		ck_assert_uint_eq(drv_record_crash(hist, &n, 8, 777, 1), i);
	/* A 1 ms window: one millisecond later all of them are exactly 1 ms old. */
	ck_assert_uint_eq(drv_record_crash(hist, &n, 8, 778, 1), 1);
}
END_TEST

START_TEST(test_record_cap_keeps_newest)
{
	uint64_t hist[4];
	unsigned n = 0;

	for (unsigned i = 0; i < 10; i++) {
		unsigned got = drv_record_crash(hist, &n, 4, 100 + i, 60000);
		ck_assert_uint_eq(got, i < 4 ? i + 1 : 4);
		ck_assert_uint_eq(n, got);
	}
	/* Oldest first, the newest four. */
	for (unsigned i = 0; i < 4; i++)
		ck_assert_uint_eq(hist[i], 106 + i);
}
END_TEST

START_TEST(test_record_cap_after_expiry)
{
	uint64_t hist[3] = {0, 0, 0};
	unsigned n = 0;

	drv_record_crash(hist, &n, 3, 1000, 100);
	drv_record_crash(hist, &n, 3, 1050, 100);
	drv_record_crash(hist, &n, 3, 1060, 100);
	/* 1000 expires, so nothing newer has to be pushed out. */
	ck_assert_uint_eq(drv_record_crash(hist, &n, 3, 1100, 100), 3);
	ck_assert_uint_eq(hist[0], 1050);
	ck_assert_uint_eq(hist[1], 1060);
	ck_assert_uint_eq(hist[2], 1100);
}
END_TEST

/* The supervisor's rule with SPEC's defaults: restart_max=5, restart_window=60 s, backoff 10/5000. */
struct model {
	uint64_t hist[DRV_MAX_CRASH_HISTORY];
	unsigned n;
};

/* Returns -1 for "failed", else the respawn delay. */
static long model_crash(struct model *m, uint64_t now_ms)
{
	unsigned c = drv_record_crash(m->hist, &m->n, DRV_MAX_CRASH_HISTORY, now_ms, 60 * 1000);

	if (c > 5)
		return -1;
	return (long)drv_respawn_delay_ms(c, 10, 5000);
}

START_TEST(test_model_sixth_crash_in_a_minute_fails)
{
	struct model m = {{0}, 0};
	static const long delays[] = {0, 10, 20, 40, 80};

	/* Five crashes ten seconds apart: all respawned, with the backoff. */
	for (unsigned i = 0; i < 5; i++)
		ck_assert_int_eq(model_crash(&m, 1000000 + i * 10000), delays[i]);
	/* The sixth, 50 s after the first, is one too many. */
	ck_assert_int_eq(model_crash(&m, 1000000 + 50000), -1);
}
END_TEST

START_TEST(test_model_burst_fails_at_six)
{
	struct model m = {{0}, 0};

	for (unsigned i = 0; i < 5; i++)
		ck_assert_int_ge(model_crash(&m, 5000 + i), 0);
	ck_assert_int_eq(model_crash(&m, 5005), -1);
}
END_TEST

START_TEST(test_model_spread_never_fails)
{
	struct model m = {{0}, 0};

	/*
	 * Every 12 s: the sixth crash comes exactly 60 s after the first, which
	 * has left the window.  At most five are ever inside it.
	 */
	for (unsigned i = 0; i < 200; i++) {
		long d = model_crash(&m, 1000000 + (uint64_t)i * 12000);
		ck_assert_msg(d >= 0, "crash %u at +%u s failed", i, i * 12);
		ck_assert_uint_le(m.n, 5);
	}
	/* Once a minute or slower: always the first crash in the window, so immediate. */
	struct model slow = {{0}, 0};
	for (unsigned i = 0; i < 100; i++)
		ck_assert_int_eq(model_crash(&slow, (uint64_t)i * 61000), 0);
}
END_TEST

START_TEST(test_model_11s_apart_fails)
{
	struct model m = {{0}, 0};

	/* Every 11 s: six crashes fit in 55 s. */
	for (unsigned i = 0; i < 5; i++)
		ck_assert_int_ge(model_crash(&m, (uint64_t)i * 11000), 0);
	ck_assert_int_eq(model_crash(&m, 55000), -1);
}
END_TEST

Suite *backoff_suite(void)
{
	Suite *s = suite_create("backoff");
	TCase *delay = tcase_create("delay");
	TCase *record = tcase_create("record");
	TCase *model = tcase_create("model");

	tcase_add_test(delay, test_delay_first_crash_immediate);
	tcase_add_test(delay, test_delay_doubles_from_min);
	tcase_add_test(delay, test_delay_power_of_two_max);
	tcase_add_test(delay, test_delay_min_equals_max);
	tcase_add_test(delay, test_delay_huge_counts);
	suite_add_tcase(s, delay);
	tcase_add_test(record, test_record_counts);
	tcase_add_test(record, test_record_window_expiry);
	tcase_add_test(record, test_record_same_instant);
	tcase_add_test(record, test_record_cap_keeps_newest);
	tcase_add_test(record, test_record_cap_after_expiry);
	suite_add_tcase(s, record);
	tcase_add_test(model, test_model_sixth_crash_in_a_minute_fails);
	tcase_add_test(model, test_model_burst_fails_at_six);
	tcase_add_test(model, test_model_spread_never_fails);
	tcase_add_test(model, test_model_11s_apart_fails);
	suite_add_tcase(s, model);
	return s;
}
