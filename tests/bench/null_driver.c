/*
 * The null driver: test-only, linked into build/plugfs-bench-driver (a
 * build of drivers/host.c with PLUGFS_TEST_HOST) and nowhere else, and
 * bound there only to the emulated `null` model (1209:00b0).  It does no
 * USB I/O, so reading and writing its files measures what isolation costs:
 * FUSE, the daemon and the driver process, against an in-process FUSE
 * null filesystem (tests/bench/nullfs.c).
 *
 *   zero    0444 block file of NULL_SIZE bytes: every read returns zeros,
 *           as /dev/zero would, up to the end (so dd bs= and skip= both work)
 *   sink    0222 block file of NULL_SIZE bytes, a medium that keeps nothing:
 *           every write up to the end is taken and thrown away, as a disk's
 *           `data` would take it (the daemon writes it back: supervisor.c)
 *   stream  0222 stream: every write is taken whole and thrown away, as a
 *           printer's `data` would take it (each write waits for the driver)
 */
#include <errno.h>
#include <string.h>

#include "driver.h"

#define NULL_SIZE (1ull << 40)

static const uint8_t zeros[PROTO_MAX_REQ];

static void zero_read(struct drv_req *req)
{
	size_t n = 0;

	if (req->offset < NULL_SIZE)
		n = NULL_SIZE - req->offset < req->size ? (size_t)(NULL_SIZE - req->offset) : req->size;
	/* Made in place when the daemon gave a slot, as a driver reading a device into it would. */
	if (req->buf != NULL) {
		memset(req->buf, 0, n);
		return drv_reply(req, (int32_t)n, req->buf, n);
	}
	drv_reply(req, (int32_t)n, zeros, n);
}

/* As a disk's medium: up to the end, and ENOSPC at it. */
static void sink_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	(void)data;
	if (req->offset >= NULL_SIZE)
		return drv_reply(req, -ENOSPC, NULL, 0);
	if (len > NULL_SIZE - req->offset)
		len = (size_t)(NULL_SIZE - req->offset);
	drv_reply(req, (int32_t)len, NULL, 0);
}

static void stream_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	(void)data;
	drv_reply(req, (int32_t)len, NULL, 0);
}

static const struct drv_file_ops zero_ops = {.read = zero_read};
static const struct drv_file_ops sink_ops = {.write = sink_write};
static const struct drv_file_ops stream_ops = {.write = stream_write};

static int null_probe(struct drv_function *fn)
{
	struct drv_file *zero = drv_file_add(fn, "zero", 0444, PROTO_KIND_BLOCK, &zero_ops, NULL);
	struct drv_file *sink = drv_file_add(fn, "sink", 0222, PROTO_KIND_BLOCK, &sink_ops, NULL);

	if (zero == NULL || sink == NULL ||
	    drv_file_add(fn, "stream", 0222, PROTO_KIND_STREAM, &stream_ops, NULL) == NULL)
		return -ENOMEM;
	zero->size = NULL_SIZE;
	sink->size = NULL_SIZE;
	return 0;
}

const struct driver_ops null_driver = {
    .name = "null",
    .probe = null_probe,
};
