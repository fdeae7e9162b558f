/*
 * The harness's one way to talk: stderr, every line prefixed so that its
 * output can be told apart from the command it runs.
 */
#include "emu.h"

#include <stdarg.h>
#include <stdio.h>

bool emu_verbose;

static void emu_vprint(const char *fmt, va_list ap)
{
	char line[1024];

	/* One write per line so lines from two threads never interleave. */
	vsnprintf(line, sizeof(line), fmt, ap);
	fprintf(stderr, "plugfs-emu: %s\n", line);
}

void emu_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emu_vprint(fmt, ap);
	va_end(ap);
}

void emu_log(const char *fmt, ...)
{
	va_list ap;

	if (!emu_verbose)
		return;
	va_start(ap, fmt);
	emu_vprint(fmt, ap);
	va_end(ap);
}
