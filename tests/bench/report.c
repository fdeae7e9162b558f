/*
 * The benchmark framework (report.h): statistics over samples, one table
 * row on stdout and one JSON line in the results file per figure.
 *
 *     PLUGFS_BENCH_RESULTS=/tmp/r.jsonl PLUGFS_COMMIT=test build/bench-disk
 *
 * The p99 is the nearest-rank percentile: with fewer than 100 samples it
 * is the maximum, which is what a reader of a small run should see.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "report.h"

struct stats {
	double median, p99, min, max;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Sorts a copy; 0, or -1 when there is nothing to sort or no memory. */
static int stats_of(const double *samples, size_t n, struct stats *s)
{
	double *v;

	if (n == 0 || (v = malloc(n * sizeof(*v))) == NULL)
		return -1;
	memcpy(v, samples, n * sizeof(*v));
	qsort(v, n, sizeof(*v), cmp_double);
	s->median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
	size_t rank = (size_t)ceil(0.99 * (double)n);
	s->p99 = v[rank > 0 ? rank - 1 : 0];
	s->min = v[0];
	s->max = v[n - 1];
	free(v);
	return 0;
}

double bench_median(const double *samples, size_t n)
{
	struct stats s;

	return stats_of(samples, n, &s) == 0 ? s.median : 0;
}

double bench_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* PLUGFS_COMMIT, else `git describe`, asked once per process. */
static const char *commit(void)
{
	static char id[128];
	const char *env = getenv("PLUGFS_COMMIT");

	if (env != NULL && env[0] != '\0')
		return env;
	if (id[0] != '\0')
		return id;
	snprintf(id, sizeof(id), "unknown");
	FILE *p = popen("git describe --always --dirty 2>/dev/null", "r");
	if (p != NULL) {
		char line[sizeof(id)];
		if (fgets(line, sizeof(line), p) != NULL && line[0] != '\n') {
			line[strcspn(line, "\n")] = '\0';
			snprintf(id, sizeof(id), "%s", line);
		}
		pclose(p);
	}
	return id;
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* JSON has no NaN or infinity: those are written as null. */
static void json_number(FILE *f, const char *key, double v)
{
	if (isfinite(v))
		fprintf(f, ",\"%s\":%.9g", key, v);
	else
		fprintf(f, ",\"%s\":null", key);
}

/* One line, written by one write() to an O_APPEND file, so that concurrent benchmarks do not interleave. */
static void append_json(const char *bench, const char *figure, const char *unit, size_t n,
			const struct stats *s)
{
	const char *path = getenv("PLUGFS_BENCH_RESULTS");
	char stamp[32], *line = NULL;
	size_t len = 0;
	time_t t = time(NULL);
	struct tm tm;

	if (path == NULL || path[0] == '\0')
		path = "build/bench-results.jsonl";
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
	FILE *m = open_memstream(&line, &len);
	if (m == NULL)
		return;
	fprintf(m, "{\"time\":\"%s\",\"commit\":", stamp);
	json_string(m, commit());
	fputs(",\"bench\":", m);
	json_string(m, bench);
	fputs(",\"figure\":", m);
	json_string(m, figure);
	fputs(",\"unit\":", m);
	json_string(m, unit);
	fprintf(m, ",\"n\":%zu", n);
	json_number(m, "median", s != NULL ? s->median : NAN);
	json_number(m, "p99", s != NULL ? s->p99 : NAN);
	json_number(m, "min", s != NULL ? s->min : NAN);
	json_number(m, "max", s != NULL ? s->max : NAN);
	fputs("}\n", m);
	fclose(m);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, line, len) != (ssize_t)len)
		fprintf(stderr, "bench: cannot append to %s: %s\n", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	free(line);
}

static void row(const char *bench, const char *figure, const char *unit, size_t n, const struct stats *s)
{
	static int header;

	if (!header) {
		printf("%-14s %-40s %-6s %5s %12s %12s %12s %12s\n", "bench", "figure", "unit", "n", "median",
		       "p99", "min", "max");
		header = 1;
	}
	if (s == NULL)
		printf("%-14s %-40s %-6s %5zu %12s\n", bench, figure, unit, n, "(no samples)");
	else
		printf("%-14s %-40s %-6s %5zu %12.4g %12.4g %12.4g %12.4g\n", bench, figure, unit, n,
		       s->median, s->p99, s->min, s->max);
	fflush(stdout);
}

void bench_report(const char *bench, const char *figure, const char *unit, const double *samples, size_t n)
{
	struct stats s;
	const struct stats *sp = stats_of(samples, n, &s) == 0 ? &s : NULL;

	row(bench, figure, unit, n, sp);
	append_json(bench, figure, unit, n, sp);
}

void bench_report_value(const char *bench, const char *figure, const char *unit, double value)
{
	bench_report(bench, figure, unit, &value, 1);
}

pid_t bench_plugfs_start(const char *mnt, const char *driver)
{
	char plugfs[512], path[512];
	pid_t pid;

	snprintf(plugfs, sizeof(plugfs), "%s/plugfs", build_dir());
	snprintf(path, sizeof(path), "%s/%s", build_dir(), driver);
	setenv("PLUGFS_DRIVER", path, 1);
	if ((pid = fork()) == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 2);
		execl(plugfs, plugfs, "-f", mnt, (char *)NULL);
		_exit(127);
	}
	return pid;
}
