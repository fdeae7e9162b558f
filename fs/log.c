/*
 * The daemon's one log function, and the `events` file.
 *
 * Events are kept in memory for the `events` file, newest last.  The log is
 * bounded: when it passes EVENTS_CAP bytes the oldest lines are dropped, and
 * offsets keep counting from the mount (a reader at an offset that was
 * dropped reads from the oldest line still kept), so `tail -f` works.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>

#include "plugfs.h"

#define EVENTS_CAP (256 * 1024)

int log_verbose;
static int log_foreground = 1;

void log_init(int foreground, int verbose)
{
	log_foreground = foreground;
	log_verbose = verbose;
	if (!foreground)
		openlog("plugfs", LOG_PID, LOG_DAEMON);
}

void log_msg(int prio, const char *fmt, ...)
{
	va_list ap;

	if (prio >= LOG_DEBUG && !log_verbose)
		return;
	va_start(ap, fmt);
	if (log_foreground) {
		char line[1024];
		vsnprintf(line, sizeof(line), fmt, ap);
		fprintf(stderr, "plugfs: %s\n", line);
	} else {
		vsyslog(prio, fmt, ap);
	}
	va_end(ap);
}

static char *ev_buf;
static size_t ev_len;	 /* bytes kept */
static uint64_t ev_base; /* offset of ev_buf[0] since the mount */

static void events_trim(size_t need)
{
	if (ev_len + need <= EVENTS_CAP)
		return;
	/* Drop whole lines from the front until the new line fits. */
	size_t drop = ev_len + need - EVENTS_CAP;
	char *nl = memchr(ev_buf + drop - 1, '\n', ev_len - (drop - 1));
	drop = nl != NULL ? (size_t)(nl - ev_buf) + 1 : ev_len;
	memmove(ev_buf, ev_buf + drop, ev_len - drop);
	ev_len -= drop;
	ev_base += drop;
}

void event_add(const char *name, const char *fmt, ...)
{
	char what[384], line[512];
	struct timeval tv;
	struct tm tm;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s\n",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (long)tv.tv_usec / 1000, name, what);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	log_msg(LOG_NOTICE, "%s %s", name, what);
	if (ev_buf == NULL && (ev_buf = malloc(EVENTS_CAP)) == NULL)
		return;
	events_trim((size_t)n);
	memcpy(ev_buf + ev_len, line, (size_t)n);
	ev_len += (size_t)n;
}

uint64_t events_size(void)
{
	return ev_base + ev_len;
}

size_t events_read(char *buf, size_t size, uint64_t off)
{
	if (off < ev_base)
		off = ev_base;
	if (off >= ev_base + ev_len)
		return 0;
	size_t start = (size_t)(off - ev_base);
	size_t n = ev_len - start < size ? ev_len - start : size;
	memcpy(buf, ev_buf + start, n);
	return n;
}
