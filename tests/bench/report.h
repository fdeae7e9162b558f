/*
 * The benchmark framework: every figure a benchmark measures goes through
 * here, as one row of the table on stdout and one JSON line appended to the
 * results file, so that runs on different commits can be compared.
 * Benchmarks print numbers; they never fail for being slow.
 */
#ifndef PLUGFS_BENCH_REPORT_H
#define PLUGFS_BENCH_REPORT_H

#include <stddef.h>
#include <sys/types.h>

/* One figure: samples -> median, p99, min, max, printed as a table row and appended as one JSON line
   {"time":ISO8601,"commit":"<git describe or env
   PLUGFS_COMMIT>","bench":B,"figure":F,"unit":U,"n":N,"median":..,"p99":..,"min":..,"max":..} to
   $PLUGFS_BENCH_RESULTS (default build/bench-results.jsonl). Samples are not modified (copy before sorting).
 */
void bench_report(const char *bench, const char *figure, const char *unit, const double *samples, size_t n);
/* A single value (a ratio, an RSS): same row and JSON with n=1 and all stats equal. */
void bench_report_value(const char *bench, const char *figure, const char *unit, double value);
double bench_now_ms(void); /* CLOCK_MONOTONIC in ms */
/* The median of n samples (the mean of the middle two for an even n; 0 for none); samples are not modified.
 */
double bench_median(const double *samples, size_t n);

/*
 * Starts build/plugfs -f on mnt, in the foreground, its stderr silenced,
 * with build/DRIVER as its driver host (plugfs-driver, plugfs-bench-driver).
 * Returns its pid, or -1.
 */
pid_t bench_plugfs_start(const char *mnt, const char *driver);

#endif
