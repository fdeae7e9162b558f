/*
 * Restart latency: how long after a driver dies does a driver file answer
 * again?  A benchmark: it prints numbers (tests/bench/report.h) and never
 * fails for being slow.
 *
 *     build/bench-restart [KILLS [STOPS]]      (default 200 and 50; about 50 s)
 *
 * SIGKILL: the driver is killed; measured from kill(2) to the first
 * successful open+read of its ep0, split at the moment the process is gone
 * (its pidfd turns readable).
 *
 * SIGSTOP: the driver is stopped and so misses its heartbeat; the daemon
 * (timeout=STOP_TIMEOUT_MS, a heartbeat every half of it) kills it and
 * respawns.  Measured from the stop to the first successful read, split
 * at the kill: the detection (between one and one and a half timeouts, by
 * design) and what comes after the timeout, the same path as a crash.
 *
 * Every crash is the first of its device's restart window, as a real, rare
 * crash is, so the respawn is immediate (no backoff): the crashes go round
 * KILL_DEVICES (STOP_DEVICES) loopback devices, and a device is crashed
 * again only once its window (restart_window=1) is over.  Nor does a real
 * crash come a few ms after another device's: a crash waits CRASH_GAP_MS
 * after the previous device answered again, so that each restart is
 * measured alone, not in the wake of the previous one (the daemon starts
 * its next spare driver host then, see supervisor.c).  A second series,
 * KILLS / 2 crashes with no gap, shows the other case: crashes of other
 * devices one right after another, each finding the spare host still
 * starting.  The stops run
 * on fewer devices: all of them start at once, and each must say HELLO
 * within the short timeout even on a busy machine.  Between two looks at a file the
 * reader pauses RETRY_PAUSE_US, as a script that retries would, rather
 * than spinning on the daemon it is waiting for.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "report.h"

#define KILL_DEVICES	16
#define STOP_DEVICES	4
#define MAX_DEVICES	KILL_DEVICES
#define WINDOW_MS	1000
#define STOP_TIMEOUT_MS 200
#define RETRY_PAUSE_US	200
#define CRASH_GAP_MS	100
/* Waiting longer than this for one step is a failure, not a slow result. */
#define STEP_LIMIT_MS 10000

struct sample {
	double total, to_exit, after_exit; /* ms */
};

static void pause_until(double when_ms)
{
	double ms = when_ms - bench_now_ms();

	if (ms <= 0)
		return;
	struct timespec ts = {(time_t)(ms / 1000), (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
	nanosleep(&ts, NULL);
}

/* Waits until the process behind pidfd has exited; its time, or -1. */
static double wait_exit(int pidfd)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};
	int r;

	while ((r = poll(&p, 1, STEP_LIMIT_MS)) < 0 && errno == EINTR)
		;
	return r == 1 ? bench_now_ms() : -1;
}

/* Retries open+read of fn/ep0 until one succeeds; its time, or -1. */
static double wait_read(const struct mnt *m, const char *fn)
{
	char rel[64];
	double deadline = bench_now_ms() + STEP_LIMIT_MS;
	struct timespec pause = {0, RETRY_PAUSE_US * 1000};

	snprintf(rel, sizeof(rel), "%s/ep0", fn);
	const char *path = mpath(m, rel);
	do {
		int fd = open(path, O_RDONLY);
		if (fd >= 0) {
			char c;
			ssize_t r = read(fd, &c, 1);
			close(fd);
			if (r >= 0)
				return bench_now_ms();
		}
		nanosleep(&pause, NULL);
	} while (bench_now_ms() < deadline);
	return -1;
}

/*
 * Sends `sig` to the driver of round i's device and measures the way back.
 * 0, or -1 with a message.
 */
static int one_crash(const struct mnt *m, int devices, int sig, int i, double *last_crash, double *last_back,
		     int gap_ms, struct sample *s)
{
	char fn[16];
	int dev = i % devices;

	snprintf(fn, sizeof(fn), "usb%d", dev);
	pause_until(last_crash[dev] + WINDOW_MS * 1.1);
	pause_until(*last_back + gap_ms);
	pid_t pid = fn_pid(m, fn);
	int pidfd = pid > 0 ? pidfd_open(pid, 0) : -1;
	if (pidfd < 0) {
		fprintf(stderr, "bench-restart: round %d: no driver for %s\n", i, fn);
		return -1;
	}
	double t0 = bench_now_ms();
	last_crash[dev] = t0;
	if (pidfd_send_signal(pidfd, sig, NULL, 0) < 0) {
		fprintf(stderr, "bench-restart: round %d: %s: %s\n", i, fn, strerror(errno));
		close(pidfd);
		return -1;
	}
	double t_exit = wait_exit(pidfd);
	close(pidfd);
	double t_read = t_exit > 0 ? wait_read(m, fn) : -1;
	if (t_read < 0) {
		fprintf(stderr, "bench-restart: round %d: %s not back within %d ms\n", i, fn, STEP_LIMIT_MS);
		return -1;
	}
	pid_t now = fn_pid(m, fn);
	if (now == pid || now <= 0) {
		fprintf(stderr, "bench-restart: round %d: %s answered but its driver is pid %d\n", i, fn,
			(int)now);
		return -1;
	}
	*last_back = t_read;
	s->total = t_read - t0;
	s->to_exit = t_exit - t0;
	s->after_exit = t_read - t_exit;
	return 0;
}

/* Runs `rounds` crashes by `sig`, gap_ms apart, on a fresh mount; the number measured, or -1. */
static int run(const char *opts, int devices, int sig, int rounds, int gap_ms, struct sample *s,
	       long *rss_before, long *rss_after)
{
	char model[32];
	const char *const models[] = {model, NULL};
	double last_crash[MAX_DEVICES] = {0}, last_back = 0;
	struct mnt m;
	int done = 0;

	snprintf(model, sizeof(model), "loopback:%d", devices);
	if (mnt_start(&m, models, opts, (unsigned)devices) < 0)
		return -1;
	*rss_before = rss_kb(daemon_pid(&m));
	for (; done < rounds; done++)
		if (one_crash(&m, devices, sig, done, last_crash, &last_back, gap_ms, &s[done]) < 0)
			break;
	*rss_after = rss_kb(daemon_pid(&m));
	mnt_stop(&m);
	return done;
}

static void report(const char *figure, const struct sample *s, int n, size_t field)
{
	double *v = calloc((size_t)n, sizeof(*v));

	if (v == NULL)
		return;
	for (int i = 0; i < n; i++)
		v[i] = *(const double *)((const char *)&s[i] + field);
	bench_report("restart", figure, "ms", v, (size_t)n);
	free(v);
}

int main(int argc, char **argv)
{
	int kills = argc > 1 ? atoi(argv[1]) : 200;
	int stops = argc > 2 ? atoi(argv[2]) : 50;
	char opts[64], figure[64];
	long rss0, rss1;
	int rc = 0;

	if (kills <= 0 || stops < 0)
		return 2;
	struct sample *s = calloc((size_t)(kills > stops ? kills : stops), sizeof(*s));
	if (s == NULL)
		return 1;

	int n = run("restart_window=1", KILL_DEVICES, SIGKILL, kills, CRASH_GAP_MS, s, &rss0, &rss1);
	if (n > 0) {
		report("SIGKILL -> first read", s, n, offsetof(struct sample, total));
		report("SIGKILL -> process gone", s, n, offsetof(struct sample, to_exit));
		report("process gone -> first read", s, n, offsetof(struct sample, after_exit));
		bench_report_value("restart", "daemon RSS before the kills", "KiB", (double)rss0);
		bench_report_value("restart", "daemon RSS after the kills", "KiB", (double)rss1);
	}
	if (n != kills)
		rc = 1;
	/* Crashes of other devices back to back: each finds the spare host used by the last. */
	n = run("restart_window=1", KILL_DEVICES, SIGKILL, kills / 2, 0, s, &rss0, &rss1);
	if (n > 0)
		report("SIGKILL -> first read, back to back", s, n, offsetof(struct sample, total));
	if (n != kills / 2)
		rc = 1;

	if (stops > 0) {
		snprintf(opts, sizeof(opts), "restart_window=1,timeout=%d", STOP_TIMEOUT_MS);
		n = run(opts, STOP_DEVICES, SIGSTOP, stops, CRASH_GAP_MS, s, &rss0, &rss1);
		if (n > 0) {
			snprintf(figure, sizeof(figure), "SIGSTOP -> first read (timeout=%d)",
				 STOP_TIMEOUT_MS);
			report(figure, s, n, offsetof(struct sample, total));
			report("SIGSTOP -> killed (heartbeat lost)", s, n, offsetof(struct sample, to_exit));
			report("killed -> first read (after timeout)", s, n,
			       offsetof(struct sample, after_exit));
		}
		if (n != stops)
			rc = 1;
	}
	free(s);
	return rc;
}
