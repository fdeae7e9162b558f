/*
 * Restart latency: a driver is SIGKILLed; how long until a driver file
 * answers again?  Measured from kill(2) to the first successful open+read
 * of usb0/ep0, over N crashes, each the first crash of its restart window
 * (so the respawn is immediate, as for a real, rare crash).  Also prints
 * the daemon's RSS.  A benchmark: it prints numbers and never fails for
 * being slow.
 *
 *     build/bench-restart [N]      (default 50; takes about N seconds)
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static uint64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static long daemon_rss_kib(const struct mnt *m)
{
	char path[64], buf[4096];

	snprintf(path, sizeof(path), "/proc/%d/status", (int)daemon_pid(m));
	ssize_t n = read_file(path, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *p = strstr(buf, "VmRSS:");
	return p != NULL ? strtol(p + 6, NULL, 10) : -1;
}

int main(int argc, char **argv)
{
	static const char *const models[] = {"loopback", NULL};
	int rounds = argc > 1 ? atoi(argv[1]) : 50;
	uint64_t *lat = calloc((size_t)rounds, sizeof(*lat));
	struct mnt m;
	char c;

	if (rounds <= 0 || lat == NULL || mnt_start(&m, models, "restart_window=1,restart_max=5", 1) < 0)
		return 1;
	printf("daemon RSS after start: %ld KiB\n", daemon_rss_kib(&m));
	for (int i = 0; i < rounds; i++) {
		pid_t pid = fn_pid(&m, "usb0");
		uint64_t t0 = now_us();
		if (pid <= 0 || kill(pid, SIGKILL) < 0) {
			fprintf(stderr, "bench-restart: no driver to kill in round %d\n", i);
			break;
		}
		for (;;) {
			int fd = open(mpath(&m, "usb0/ep0"), O_RDONLY);
			if (fd >= 0) {
				ssize_t r = read(fd, &c, 1);
				close(fd);
				/* A handle on the old driver may still be accepted: only a read counts. */
				if (r >= 0 && fn_pid(&m, "usb0") != pid)
					break;
			}
			if (now_us() - t0 > 10 * 1000000) {
				fprintf(stderr, "bench-restart: no answer 10 s after the kill in round %d\n",
					i);
				goto out;
			}
		}
		lat[i] = now_us() - t0;
		/* Wait out the restart window, so that every crash is a first one. */
		uint64_t until = t0 + 1100 * 1000;
		struct timespec ts = {(time_t)(until / 1000000), (long)(until % 1000000) * 1000};
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
	qsort(lat, (size_t)rounds, sizeof(*lat), cmp_u64);
	printf("restart latency over %d SIGKILLs (kill -> first successful read): "
	       "median %.2f ms, p90 %.2f ms, min %.2f ms, max %.2f ms\n",
	       rounds, lat[rounds / 2] / 1000.0, lat[rounds * 9 / 10] / 1000.0, lat[0] / 1000.0,
	       lat[rounds - 1] / 1000.0);
	printf("daemon RSS after %d restarts: %ld KiB\n", rounds, daemon_rss_kib(&m));
out:
	mnt_stop(&m);
	free(lat);
	return 0;
}
