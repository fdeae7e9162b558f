/*
 * Respawn policy, kept pure so it is unit-tested without processes: the
 * first crash in a window restarts at once, later ones wait backoff_min
 * doubling up to backoff_max (MINIX rs: r_backoff = 1 << MIN(...)).
 */
#include "supervisor.h"

unsigned drv_respawn_delay_ms(unsigned crashes_in_window, unsigned backoff_min_ms, unsigned backoff_max_ms)
{
	if (crashes_in_window <= 1)
		return 0;
	unsigned shift = crashes_in_window - 2;
	uint64_t d = backoff_min_ms;
	while (shift-- > 0 && d < backoff_max_ms)
		d *= 2;
	return d > backoff_max_ms ? backoff_max_ms : (unsigned)d;
}

unsigned drv_record_crash(uint64_t *hist, unsigned *n, unsigned cap, uint64_t now_ms, uint64_t window_ms)
{
	unsigned keep = 0;

	for (unsigned i = 0; i < *n; i++)
		if (now_ms - hist[i] < window_ms)
			hist[keep++] = hist[i];
	if (keep == cap) {
		for (unsigned i = 1; i < keep; i++)
			hist[i - 1] = hist[i];
		keep--;
	}
	hist[keep++] = now_ms;
	*n = keep;
	return keep;
}
