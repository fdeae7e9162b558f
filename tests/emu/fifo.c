/*
 * A bounded ring of bytes: what a loopback device holds between an OUT
 * transfer and the IN transfer that reads it back.  The buffer is allocated
 * on first use so an idle device costs nothing.
 */
#include "emu.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int emu_fifo_init(struct emu_fifo *f, size_t cap)
{
	memset(f, 0, sizeof(*f));
	if (cap == 0)
		return -EINVAL;
	f->cap = cap;
	return 0;
}

void emu_fifo_free(struct emu_fifo *f)
{
	free(f->buf);
	f->buf = NULL;
	f->head = f->len = 0;
}

size_t emu_fifo_space(const struct emu_fifo *f)
{
	return f->cap - f->len;
}

size_t emu_fifo_put(struct emu_fifo *f, const uint8_t *p, size_t n)
{
	size_t done = 0;

	if (n > emu_fifo_space(f))
		n = emu_fifo_space(f);
	if (n > 0 && f->buf == NULL && (f->buf = malloc(f->cap)) == NULL)
		return 0;
	while (done < n) {
		size_t tail = (f->head + f->len) % f->cap;
		size_t chunk = f->cap - tail;

		if (chunk > n - done)
			chunk = n - done;
		memcpy(f->buf + tail, p + done, chunk);
		f->len += chunk;
		done += chunk;
	}
	return done;
}

size_t emu_fifo_get(struct emu_fifo *f, uint8_t *p, size_t n)
{
	size_t done = 0;

	if (n > f->len)
		n = f->len;
	while (done < n) {
		size_t chunk = f->cap - f->head;

		if (chunk > n - done)
			chunk = n - done;
		memcpy(p + done, f->buf + f->head, chunk);
		f->head = (f->head + chunk) % f->cap;
		f->len -= chunk;
		done += chunk;
	}
	if (f->len == 0)
		f->head = 0;
	return done;
}
