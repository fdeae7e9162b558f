/*
 * Benchmark results (see report.h).  Percentiles are nearest-rank over the
 * sorted samples; the median of an even count is the mean of the middle two.
 */
#include "report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

double bench_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The commit measured: $PLUGFS_BENCH_COMMIT, else git's HEAD, else "unknown". */
static const char *commit_id(void)
{
	static char id[64];
	const char *env = getenv("PLUGFS_BENCH_COMMIT");

	if (id[0] != '\0')
		return id;
	if (env != NULL && env[0] != '\0') {
		snprintf(id, sizeof(id), "%s", env);
		return id;
	}
	FILE *p = popen("git rev-parse --short HEAD 2>/dev/null", "r");
	if (p != NULL) {
		if (fgets(id, sizeof(id), p) == NULL)
			id[0] = '\0';
		pclose(p);
	}
	id[strcspn(id, "\n")] = '\0';
	if (id[0] == '\0')
		snprintf(id, sizeof(id), "unknown");
	return id;
}

/* Names are ours, not the user's: only quotes and backslashes need escaping. */
static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

void bench_report(const char *bench, const char *figure, const char *unit, const double *samples, size_t n)
{
	double *s = n > 0 ? malloc(n * sizeof(*s)) : NULL;
	double median, p99, min, max;

	if (s == NULL) {
		printf("%-14s %-40s n=0\n", bench, figure);
		return;
	}
	memcpy(s, samples, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	size_t rank = (99 * n + 99) / 100; /* ceil(0.99 n) */
	p99 = s[rank > 0 ? rank - 1 : 0];
	min = s[0];
	max = s[n - 1];
	free(s);

	printf("%-14s %-44s n=%-4zu median %10.3f  p99 %10.3f  min %10.3f  max %10.3f  %s\n", bench, figure,
	       n, median, p99, min, max, unit);
	fflush(stdout);

	const char *path = getenv("PLUGFS_BENCH_RESULTS");
	FILE *f = fopen(path != NULL && path[0] != '\0' ? path : "build/bench-results.jsonl", "ae");
	if (f == NULL)
		return;
	char when[32];
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(f, "{\"time\":\"%s\",\"commit\":", when);
	json_string(f, commit_id());
	fputs(",\"bench\":", f);
	json_string(f, bench);
	fputs(",\"figure\":", f);
	json_string(f, figure);
	fputs(",\"unit\":", f);
	json_string(f, unit);
	fprintf(f, ",\"n\":%zu,\"median\":%.6g,\"p99\":%.6g,\"min\":%.6g,\"max\":%.6g}\n", n, median, p99,
		min, max);
	fclose(f);
}

void bench_report_value(const char *bench, const char *figure, const char *unit, double value)
{
	bench_report(bench, figure, unit, &value, 1);
}
