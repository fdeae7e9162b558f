/*
 * Benchmark results: one table row on stdout and one JSON line appended to
 * $PLUGFS_BENCH_RESULTS (default build/bench-results.jsonl) per figure.
 */
#ifndef PLUGFS_BENCH_REPORT_H
#define PLUGFS_BENCH_REPORT_H

#include <stddef.h>

/*
 * Prints bench, figure, n, median, p99, min, max and unit, and appends
 * {"time":ISO8601,"commit":..,"bench":B,"figure":F,"unit":U,"n":N,
 *  "median":..,"p99":..,"min":..,"max":..}.  `samples` is not modified.
 */
void bench_report(const char *bench, const char *figure, const char *unit, const double *samples, size_t n);
/* One measured value (n 1: median = p99 = min = max = value). */
void bench_report_value(const char *bench, const char *figure, const char *unit, double value);
/* CLOCK_MONOTONIC in milliseconds. */
double bench_now_ms(void);

#endif
