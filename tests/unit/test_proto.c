/*
 * The daemon <-> driver codec (common/proto.c): header round trips, every
 * way proto_decode_hdr() and proto_decode_hello() must refuse a message,
 * and a seeded fuzz loop.  The expected byte layout and payload bounds are
 * written out here from proto.h's documentation, not taken from the codec,
 * so a change to either side shows up as a failure.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"
#include "suites.h"

/* A message buffer big enough for anything the codec accepts, plus slack. */
static uint8_t msg[PROTO_MAX_MSG + 64];

static struct proto_hdr make_hdr(uint16_t type)
{
	struct proto_hdr h;

	memset(&h, 0, sizeof(h));
	h.type = type;
	return h;
}

/* Builds a message of `type` with `plen` payload bytes (0x5a) into msg; returns its length. */
static size_t build_msg(struct proto_hdr *h, size_t plen)
{
	static uint8_t payload[PROTO_MAX_IO + 64];

	memset(payload, 0x5a, plen);
	return proto_build(msg, h, payload, plen);
}

/* Asserts that msg[0..n) is refused and that the reason mentions `reason`. */
static void assert_hdr_rejected(size_t n, const char *reason)
{
	struct proto_hdr out;
	const char *why = NULL;
	int r = proto_decode_hdr(msg, n, &out, &why);

	ck_assert_int_eq(r, -EPROTO);
	ck_assert_ptr_nonnull(why);
	ck_assert_msg(strstr(why, reason) != NULL, "rejected for \"%s\", expected \"%s\"", why, reason);
}

static void assert_hdr_accepted(size_t n)
{
	struct proto_hdr out;
	const char *why = NULL;
	int r = proto_decode_hdr(msg, n, &out, &why);

	ck_assert_msg(r == 0, "rejected (%d): %s", r, why != NULL ? why : "(no reason)");
}

/* ---- header ---- */

START_TEST(test_hdr_layout)
{
	struct proto_hdr h = {
	    .len = 0x0a0b0c0d,
	    .type = PROTO_WRITE,
	    .flags = PROTO_F_NONBLOCK,
	    .req = 0x11223344,
	    .handle = 0x55667788,
	    .file = 0x99aabbcc,
	    .size = 0xddeeff01,
	    .offset = 0x0102030405060708ull,
	    .status = -ENODEV,
	};
	static const uint8_t expect[PROTO_HDR_LEN] = {
	    0x0d,
	    0x0c,
	    0x0b,
	    0x0a, /* len */
	    PROTO_WRITE,
	    0x00, /* type */
	    0x01,
	    0x00, /* flags */
	    0x44,
	    0x33,
	    0x22,
	    0x11, /* req */
	    0x88,
	    0x77,
	    0x66,
	    0x55, /* handle */
	    0xcc,
	    0xbb,
	    0xaa,
	    0x99, /* file */
	    0x01,
	    0xff,
	    0xee,
	    0xdd, /* size */
	    0x08,
	    0x07,
	    0x06,
	    0x05,
	    0x04,
	    0x03,
	    0x02,
	    0x01, /* offset */
	    (uint8_t)-ENODEV,
	    0xff,
	    0xff,
	    0xff, /* status */
	    0x00,
	    0x00,
	    0x00,
	    0x00, /* shm */
	};
	uint8_t buf[PROTO_HDR_LEN];

	memset(buf, 0xee, sizeof(buf));
	proto_encode_hdr(buf, &h);
	ck_assert_mem_eq(buf, expect, PROTO_HDR_LEN);
}
END_TEST

START_TEST(test_hdr_round_trip)
{
	struct proto_hdr in = {
	    .type = PROTO_WRITE,
	    .flags = PROTO_F_NONBLOCK,
	    .req = 0xfffffffe,
	    .handle = 0x80000001,
	    .file = 0x12345678,
	    .size = 0xcafef00d,
	    .offset = 0xfedcba9876543210ull,
	    .status = -ENODEV,
	};
	struct proto_hdr out;
	const char *why = NULL;
	size_t n = build_msg(&in, 3);

	ck_assert_uint_eq(n, PROTO_HDR_LEN + 3);
	memset(&out, 0xa5, sizeof(out));
	ck_assert_int_eq(proto_decode_hdr(msg, n, &out, &why), 0);
	ck_assert_uint_eq(out.len, PROTO_HDR_LEN + 3);
	ck_assert_uint_eq(out.type, PROTO_WRITE);
	ck_assert_uint_eq(out.flags, PROTO_F_NONBLOCK);
	ck_assert_uint_eq(out.req, 0xfffffffe);
	ck_assert_uint_eq(out.handle, 0x80000001);
	ck_assert_uint_eq(out.file, 0x12345678);
	ck_assert_uint_eq(out.size, 0xcafef00d);
	ck_assert_uint_eq(out.offset, 0xfedcba9876543210ull);
	ck_assert_int_eq(out.status, -ENODEV);
}
END_TEST

/* Extremes of every signed and 64-bit field survive the trip. */
START_TEST(test_hdr_round_trip_extremes)
{
	static const int32_t statuses[] = {INT32_MIN, -1, 0, 1, INT32_MAX};
	static const uint64_t offsets[] = {0, 1, 0xffffffffull, 0x100000000ull, INT64_MAX, UINT64_MAX};

	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		for (size_t j = 0; j < sizeof(offsets) / sizeof(offsets[0]); j++) {
			struct proto_hdr in = make_hdr(PROTO_REPLY), out;

			in.status = statuses[i];
			in.offset = offsets[j];
			in.req = UINT32_MAX;
			in.handle = UINT32_MAX;
			in.file = UINT32_MAX;
			in.size = UINT32_MAX;
			size_t n = build_msg(&in, 0);
			ck_assert_int_eq(proto_decode_hdr(msg, n, &out, NULL), 0);
			ck_assert_int_eq(out.status, statuses[i]);
			ck_assert_uint_eq(out.offset, offsets[j]);
			ck_assert_uint_eq(out.req, UINT32_MAX);
			ck_assert_uint_eq(out.handle, UINT32_MAX);
			ck_assert_uint_eq(out.file, UINT32_MAX);
			ck_assert_uint_eq(out.size, UINT32_MAX);
		}
	}
}
END_TEST

START_TEST(test_build)
{
	static const char payload[] = "hello, driver";
	struct proto_hdr h = make_hdr(PROTO_CTL);
	size_t plen = sizeof(payload) - 1;

	h.len = 12345; /* proto_build must overwrite it */
	h.req = 7;
	h.file = PROTO_CTL_TARGET(3, 1); /* function 3, its LUN 1 */
	memset(msg, 0xee, PROTO_HDR_LEN + plen + 8);
	size_t n = proto_build(msg, &h, payload, plen);
	ck_assert_uint_eq(n, PROTO_HDR_LEN + plen);
	ck_assert_uint_eq(h.len, PROTO_HDR_LEN + plen);
	ck_assert_uint_eq(get_le32(msg), PROTO_HDR_LEN + plen);
	ck_assert_uint_eq(get_le16(msg + 4), PROTO_CTL);
	ck_assert_uint_eq(get_le32(msg + 8), 7);
	ck_assert_uint_eq(get_le32(msg + 16), 0x103);
	ck_assert_uint_eq(PROTO_CTL_FUNCTION(get_le32(msg + 16)), 3);
	ck_assert_uint_eq(PROTO_CTL_UNIT(get_le32(msg + 16)), 1);
	ck_assert_mem_eq(msg + PROTO_HDR_LEN, payload, plen);
	ck_assert_uint_eq(msg[PROTO_HDR_LEN + plen], 0xee); /* nothing written past the message */

	struct proto_hdr out;
	ck_assert_int_eq(proto_decode_hdr(msg, n, &out, NULL), 0);
	ck_assert_uint_eq(out.len, n);
}
END_TEST

START_TEST(test_build_no_payload)
{
	struct proto_hdr h = make_hdr(PROTO_PING);

	h.req = 1;
	ck_assert_uint_eq(proto_build(msg, &h, NULL, 0), PROTO_HDR_LEN);
	ck_assert_uint_eq(h.len, PROTO_HDR_LEN);
	assert_hdr_accepted(PROTO_HDR_LEN);
}
END_TEST

START_TEST(test_type_names)
{
	ck_assert_str_eq(proto_type_name(PROTO_HELLO), "HELLO");
	ck_assert_str_eq(proto_type_name(PROTO_REPLY), "REPLY");
	ck_assert_str_eq(proto_type_name(PROTO_POLL_READY), "POLL_READY");
	ck_assert_str_eq(proto_type_name(PROTO_LOG), "LOG");
	ck_assert_str_eq(proto_type_name(PROTO_OPEN), "OPEN");
	ck_assert_str_eq(proto_type_name(PROTO_READ), "READ");
	ck_assert_str_eq(proto_type_name(PROTO_WRITE), "WRITE");
	ck_assert_str_eq(proto_type_name(PROTO_POLL), "POLL");
	ck_assert_str_eq(proto_type_name(PROTO_RELEASE), "RELEASE");
	ck_assert_str_eq(proto_type_name(PROTO_CANCEL), "CANCEL");
	ck_assert_str_eq(proto_type_name(PROTO_PING), "PING");
	ck_assert_str_eq(proto_type_name(PROTO_CTL), "CTL");
	ck_assert_str_eq(proto_type_name(0), "?");
	ck_assert_str_eq(proto_type_name(PROTO_READY), "READY");
	ck_assert_str_eq(proto_type_name(6), "?");
	ck_assert_str_eq(proto_type_name(PROTO_LOOKUP), "LOOKUP");
	ck_assert_str_eq(proto_type_name(PROTO_GETATTR), "GETATTR");
	ck_assert_str_eq(proto_type_name(PROTO_READDIR), "READDIR");
	ck_assert_str_eq(proto_type_name(PROTO_CREATE), "CREATE");
	ck_assert_str_eq(proto_type_name(PROTO_UNLINK), "UNLINK");
	ck_assert_str_eq(proto_type_name(PROTO_FLUSH), "FLUSH");
	ck_assert_str_eq(proto_type_name(PROTO_START), "START");
	ck_assert_str_eq(proto_type_name(PROTO_START + 1), "?");
	ck_assert_str_eq(proto_type_name(0xffff), "?");
}
END_TEST

START_TEST(test_hdr_short)
{
	struct proto_hdr h = make_hdr(PROTO_PING);

	build_msg(&h, 0);
	assert_hdr_rejected(PROTO_HDR_LEN - 1, "shorter");
	assert_hdr_rejected(1, "shorter");
	assert_hdr_rejected(0, "shorter");
}
END_TEST

START_TEST(test_hdr_long)
{
	struct proto_hdr h = make_hdr(PROTO_WRITE);

	/* The largest legal message is accepted ... */
	size_t n = build_msg(&h, PROTO_MAX_IO);
	ck_assert_uint_eq(n, PROTO_MAX_MSG);
	assert_hdr_accepted(n);
	/* ... one byte more is not, even with a matching length field. */
	n = build_msg(&h, PROTO_MAX_IO + 1);
	assert_hdr_rejected(n, "too long");
}
END_TEST

START_TEST(test_hdr_len_mismatch)
{
	struct proto_hdr h = make_hdr(PROTO_WRITE);
	size_t n = build_msg(&h, 10);

	assert_hdr_rejected(n - 1, "length field");
	put_le32(msg, (uint32_t)n + 1);
	assert_hdr_rejected(n, "length field");
	put_le32(msg, (uint32_t)n - 1);
	assert_hdr_rejected(n, "length field");
	put_le32(msg, 0);
	assert_hdr_rejected(n, "length field");
	put_le32(msg, UINT32_MAX);
	assert_hdr_rejected(n, "length field");
	put_le32(msg, (uint32_t)n);
	assert_hdr_accepted(n);
}
END_TEST

START_TEST(test_hdr_reserved)
{
	struct proto_hdr h = make_hdr(PROTO_PING);

	for (int byte = 36; byte < 40; byte++) {
		size_t n = build_msg(&h, 0);
		msg[byte] = 0x01;
		assert_hdr_rejected(n, "shm field set without PROTO_F_SHM");
		msg[byte] = 0x80;
		assert_hdr_rejected(n, "shm field set without PROTO_F_SHM");
	}
}
END_TEST

/* PROTO_F_SHM: which messages may carry it, and the bounds of `shm`. */
START_TEST(test_hdr_shm)
{
	struct proto_hdr h = make_hdr(PROTO_READ);

	h.flags = PROTO_F_SHM;
	h.size = 4096;
	for (uint32_t slot = 0; slot < PROTO_SHM_SLOTS; slot++) {
		h.shm = slot * PROTO_SHM_SLOT;
		assert_hdr_accepted(build_msg(&h, 0));
	}
	h.shm = PROTO_SHM_SIZE;
	assert_hdr_rejected(build_msg(&h, 0), "not at a slot");
	h.shm = PROTO_SHM_SLOT + 1;
	assert_hdr_rejected(build_msg(&h, 0), "not at a slot");

	h = make_hdr(PROTO_WRITE);
	h.flags = PROTO_F_SHM;
	h.shm = PROTO_SHM_SLOT;
	h.size = PROTO_SHM_SLOT;
	assert_hdr_accepted(build_msg(&h, 0));
	h.size = PROTO_SHM_SLOT + 1;
	assert_hdr_rejected(build_msg(&h, 0), "larger than a slot");
	h.size = 16;
	assert_hdr_rejected(build_msg(&h, 16), "with a payload");

	h = make_hdr(PROTO_REPLY);
	h.flags = PROTO_F_SHM;
	h.shm = PROTO_SHM_SIZE - 100;
	h.status = 100;
	assert_hdr_accepted(build_msg(&h, 0));
	h.status = 101;
	assert_hdr_rejected(build_msg(&h, 0), "outside the buffer");
	h.shm = UINT32_MAX;
	h.status = 1;
	assert_hdr_rejected(build_msg(&h, 0), "outside the buffer");
	h.shm = 0;
	h.status = (int32_t)PROTO_SHM_SLOT + 1;
	assert_hdr_rejected(build_msg(&h, 0), "outside the buffer");
	h.status = -EIO;
	assert_hdr_rejected(build_msg(&h, 0), "outside the buffer");
	h.status = 4;
	assert_hdr_rejected(build_msg(&h, 4), "with a payload");

	h = make_hdr(PROTO_HELLO);
	h.flags = PROTO_F_SHM;
	assert_hdr_accepted(build_msg(&h, 4));
	h.shm = PROTO_SHM_SLOT;
	assert_hdr_rejected(build_msg(&h, 4), "HELLO with a shm offset");

	static const uint16_t no_data[] = {PROTO_POLL_READY, PROTO_OPEN,   PROTO_POLL,
					   PROTO_RELEASE,    PROTO_CANCEL, PROTO_PING};
	for (size_t i = 0; i < sizeof(no_data) / sizeof(no_data[0]); i++) {
		h = make_hdr(no_data[i]);
		h.flags = PROTO_F_SHM;
		assert_hdr_rejected(build_msg(&h, 0), "carries no data");
	}
}
END_TEST

START_TEST(test_hdr_flags)
{
	static const uint16_t bad[] = {0x0008, 0x0100, 0x8000, 0xfffe, 0xffff, 0x000f};
	struct proto_hdr h = make_hdr(PROTO_READ);

	h.flags = PROTO_F_NONBLOCK;
	assert_hdr_accepted(build_msg(&h, 0));
	h.flags = PROTO_F_NODE | PROTO_F_NONBLOCK;
	assert_hdr_accepted(build_msg(&h, 0));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		h.flags = bad[i];
		assert_hdr_rejected(build_msg(&h, 0), "flags");
	}
}
END_TEST

START_TEST(test_hdr_unknown_type)
{
	static const uint16_t bad[] = {0, 6, 14, 15, 31, 255, 256, 0x8001, 0xffff};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct proto_hdr h = make_hdr(bad[i]);
		assert_hdr_rejected(build_msg(&h, 0), "unknown message type");
		h = make_hdr(bad[i]);
		assert_hdr_rejected(build_msg(&h, 8), "unknown message type");
	}
}
END_TEST

/* Payload bounds per type, as proto.h's documentation of each message implies. */
static const struct {
	uint16_t type;
	uint32_t min, max;
} payload_bounds[] = {
    {PROTO_HELLO, 4, PROTO_MAX_IO},
    {PROTO_REPLY, 0, PROTO_MAX_IO},
    {PROTO_POLL_READY, 0, 0},
    {PROTO_LOG, 1, PROTO_MAX_LOG},
    {PROTO_OPEN, 0, 0},
    {PROTO_READ, 0, 0},
    {PROTO_WRITE, 0, PROTO_MAX_IO},
    {PROTO_POLL, 0, 0},
    {PROTO_RELEASE, 0, 0},
    {PROTO_CANCEL, 0, 0},
    {PROTO_PING, 0, 0},
    {PROTO_CTL, 1, PROTO_MAX_CTL},
    {PROTO_LOOKUP, 1, PROTO_MAX_NODE_NAME},
    {PROTO_GETATTR, 0, 0},
    {PROTO_READDIR, 0, 0},
    {PROTO_CREATE, 1, PROTO_MAX_NODE_NAME},
    {PROTO_UNLINK, 1, PROTO_MAX_NODE_NAME},
    {PROTO_FLUSH, 0, 0},
    {PROTO_READY, 0, 0},
    {PROTO_START, 2, PROTO_MAX_IO},
};

static size_t build_with_payload(uint16_t type, size_t plen)
{
	struct proto_hdr h = make_hdr(type);

	if (type == PROTO_REPLY)
		h.status = (int32_t)plen; /* a reply's data length is its status */
	if (type == PROTO_START)
		h.size = plen > 0 ? (uint32_t)plen : 1; /* its arguments: the whole payload */
	return build_msg(&h, plen);
}

START_TEST(test_hdr_payload_bounds)
{
	uint16_t type = payload_bounds[_i].type;
	uint32_t min = payload_bounds[_i].min, max = payload_bounds[_i].max;

	assert_hdr_accepted(build_with_payload(type, min));
	assert_hdr_accepted(build_with_payload(type, max));
	assert_hdr_accepted(build_with_payload(type, min + (max - min) / 2));
	if (min > 0)
		assert_hdr_rejected(build_with_payload(type, min - 1), "payload length");
	if (max + 1 <= PROTO_MAX_IO)
		assert_hdr_rejected(build_with_payload(type, max + 1), "payload length");
	else
		assert_hdr_rejected(build_with_payload(type, max + 1), "too long");
	if (max == 0)
		assert_hdr_rejected(build_with_payload(type, PROTO_MAX_IO), "payload length");
}
END_TEST

START_TEST(test_hdr_read_size)
{
	struct proto_hdr h = make_hdr(PROTO_READ);

	h.size = PROTO_MAX_IO;
	assert_hdr_accepted(build_msg(&h, 0));
	h.size = 0;
	assert_hdr_accepted(build_msg(&h, 0));
	h.size = PROTO_MAX_IO + 1;
	assert_hdr_rejected(build_msg(&h, 0), "read size");
	h.size = UINT32_MAX;
	assert_hdr_rejected(build_msg(&h, 0), "read size");
	/* The limit is on READ only: OPEN carries open(2) flags in `size`. */
	h = make_hdr(PROTO_OPEN);
	h.size = UINT32_MAX;
	assert_hdr_accepted(build_msg(&h, 0));
}
END_TEST

START_TEST(test_hdr_reply_status)
{
	struct proto_hdr h = make_hdr(PROTO_REPLY);

	/* Without data the status is free: an errno, a write count, an open result. */
	h.status = -EIO;
	assert_hdr_accepted(build_msg(&h, 0));
	h.status = 4096;
	assert_hdr_accepted(build_msg(&h, 0));
	h.status = 0;
	assert_hdr_accepted(build_msg(&h, 0));
	/* With data, the status must be exactly the data length. */
	h.status = 10;
	assert_hdr_accepted(build_msg(&h, 10));
	h.status = 9;
	assert_hdr_rejected(build_msg(&h, 10), "reply payload");
	h.status = 11;
	assert_hdr_rejected(build_msg(&h, 10), "reply payload");
	h.status = 0;
	assert_hdr_rejected(build_msg(&h, 10), "reply payload");
	h.status = -EIO;
	assert_hdr_rejected(build_msg(&h, 10), "reply payload");
	h.status = INT32_MIN;
	assert_hdr_rejected(build_msg(&h, 10), "reply payload");
	/* -10 is 10 when read as unsigned: must still be refused. */
	h.status = -10;
	assert_hdr_rejected(build_msg(&h, 10), "reply payload");
}
END_TEST

/* ---- HELLO ---- */

/* Hello structs are ~45 KiB each: keep them off the stack. */
static struct proto_hello hin, hout;
static uint8_t hbuf[PROTO_MAX_IO];

static void hello_setup(void)
{
	memset(&hin, 0, sizeof(hin));
	memset(&hout, 0xa5, sizeof(hout));
	memset(hbuf, 0, sizeof(hbuf));
}

static void add_file(struct proto_hello *h, uint32_t id, uint8_t function, uint8_t kind, uint16_t mode,
		     uint64_t size, const char *name)
{
	struct proto_file *f = &h->files[h->nfiles++];

	f->id = id;
	f->function = function;
	f->kind = kind;
	f->mode = mode;
	f->size = size;
	size_t len = strnlen(name, PROTO_MAX_NAME);

	memcpy(f->name, name, len);
	f->name[len] = '\0';
}

/*
 * A raw HELLO writer that can produce anything, malformed included.
 * Its output for a valid hello is checked against proto_encode_hello().
 */
struct raw {
	uint8_t *p;
	size_t n;
	uint8_t unit; /* written into the following entries */
};

static void raw_begin(struct raw *r, uint16_t version, uint16_t nfiles)
{
	r->p = hbuf;
	put_le16(r->p, version);
	put_le16(r->p + 2, nfiles);
	r->n = 4;
	r->unit = 0;
}

static void raw_entry_n(struct raw *r, uint32_t id, uint8_t function, uint8_t kind, uint16_t mode,
			uint64_t size, uint8_t namelen, const char *name, size_t name_bytes)
{
	put_le32(r->p + r->n, id);
	r->p[r->n + 4] = function;
	r->p[r->n + 5] = r->unit;
	r->p[r->n + 6] = kind;
	put_le16(r->p + r->n + 7, mode);
	put_le64(r->p + r->n + 9, size);
	r->p[r->n + 17] = namelen;
	memcpy(r->p + r->n + 18, name, name_bytes);
	r->n += 18 + name_bytes;
}

static void raw_entry(struct raw *r, uint32_t id, uint8_t function, uint8_t kind, uint16_t mode,
		      uint64_t size, const char *name)
{
	raw_entry_n(r, id, function, kind, mode, size, (uint8_t)strlen(name), name, strlen(name));
}

static void assert_hello_rejected(const struct raw *r, const char *reason)
{
	const char *why = NULL;
	int ret = proto_decode_hello(r->p, r->n, &hout, &why);

	ck_assert_int_eq(ret, -EPROTO);
	ck_assert_ptr_nonnull(why);
	ck_assert_msg(strstr(why, reason) != NULL, "rejected for \"%s\", expected \"%s\"", why, reason);
}

static void assert_hello_accepted(const struct raw *r)
{
	const char *why = NULL;
	int ret = proto_decode_hello(r->p, r->n, &hout, &why);

	ck_assert_msg(ret == 0, "rejected (%d): %s", ret, why != NULL ? why : "(no reason)");
}

static void assert_files_equal(const struct proto_file *a, const struct proto_file *b)
{
	ck_assert_uint_eq(a->id, b->id);
	ck_assert_uint_eq(a->function, b->function);
	ck_assert_uint_eq(a->unit, b->unit);
	ck_assert_uint_eq(a->kind, b->kind);
	ck_assert_uint_eq(a->mode, b->mode);
	ck_assert_uint_eq(a->size, b->size);
	ck_assert_str_eq(a->name, b->name);
}

START_TEST(test_hello_round_trip)
{
	hin.version = PROTO_VERSION;
	/* A printer and a disk LUN served by one process: every kind, flags, functions. */
	add_file(&hin, 1, 0, PROTO_KIND_STREAM, 0666, 0, "data");
	add_file(&hin, 2, 0, PROTO_KIND_SMALL, 0444, 0, "device_id");
	add_file(&hin, 3, 0, PROTO_KIND_SMALL, 0444, 0, "status");
	add_file(&hin, 4, 0, PROTO_KIND_SMALL, 0222, 0, "ctl");
	add_file(&hin, 100, 1, PROTO_KIND_BLOCK, 0666, 8060928ull * 512, "data");
	add_file(&hin, 101, 1, PROTO_KIND_BLOCK, 0444, 0, "empty-medium");
	add_file(&hin, 102, 1, PROTO_KIND_BLOCK, 0600, (uint64_t)INT64_MAX, "huge");
	add_file(&hin, 0xffffffff, 2, PROTO_KIND_STREAM | PROTO_FILE_UNTIMED, 0444, 0, "input");
	add_file(&hin, 0, 255, PROTO_KIND_SMALL, 0, 0, "feature-3");
	add_file(&hin, 7, 2, PROTO_KIND_SMALL | PROTO_FILE_UNTIMED, 0644, 0, "report_descriptor");
	/* A second LUN of function 1: the same names in another unit. */
	add_file(&hin, 200, 1, PROTO_KIND_BLOCK, 0666, 4096, "data");
	hin.files[hin.nfiles - 1].unit = 1;
	add_file(&hin, 201, 1, PROTO_KIND_SMALL, 0444, 0, "empty-medium");
	hin.files[hin.nfiles - 1].unit = 255;

	int len = proto_encode_hello(hbuf, sizeof(hbuf), &hin);
	ck_assert_int_gt(len, 0);
	const char *why = NULL;
	int r = proto_decode_hello(hbuf, (size_t)len, &hout, &why);
	ck_assert_msg(r == 0, "rejected: %s", why != NULL ? why : "?");
	ck_assert_uint_eq(hout.version, PROTO_VERSION);
	ck_assert_uint_eq(hout.nfiles, hin.nfiles);
	for (unsigned i = 0; i < hin.nfiles; i++)
		assert_files_equal(&hout.files[i], &hin.files[i]);
}
END_TEST

/* The encoder writes exactly the layout documented in proto.h. */
START_TEST(test_hello_layout)
{
	static const uint8_t expect[] = {
	    0x03,
	    0x00,
	    0x02,
	    0x00, /* version 3, 2 files */
	    0x78,
	    0x56,
	    0x34,
	    0x12,	      /* id */
	    0x03,	      /* function */
	    0x01,	      /* unit */
	    PROTO_KIND_BLOCK, /* kind */
	    0xb6,
	    0x01, /* mode 0666 */
	    0x08,
	    0x07,
	    0x06,
	    0x05,
	    0x04,
	    0x03,
	    0x02,
	    0x01, /* size */
	    0x04,
	    'd',
	    'a',
	    't',
	    'a', /* name */
	    0x02,
	    0x00,
	    0x00,
	    0x00,
	    0x00,
	    0x00,
	    PROTO_KIND_SMALL,
	    0x24,
	    0x01,
	    0,
	    0,
	    0,
	    0,
	    0,
	    0,
	    0,
	    0,
	    0x03,
	    'c',
	    't',
	    'l',
	};
	struct raw r;

	hin.version = PROTO_VERSION;
	add_file(&hin, 0x12345678, 3, PROTO_KIND_BLOCK, 0666, 0x0102030405060708ull, "data");
	hin.files[0].unit = 1;
	add_file(&hin, 2, 0, PROTO_KIND_SMALL, 0444, 0, "ctl");
	memset(hbuf, 0xee, sizeof(hbuf));
	int len = proto_encode_hello(hbuf, sizeof(hbuf), &hin);
	ck_assert_int_eq(len, (int)sizeof(expect));
	ck_assert_mem_eq(hbuf, expect, sizeof(expect));
	ck_assert_uint_eq(hbuf[sizeof(expect)], 0xee);

	/* The raw writer used by the rejection tests agrees. */
	raw_begin(&r, 3, 2);
	r.unit = 1;
	raw_entry(&r, 0x12345678, 3, PROTO_KIND_BLOCK, 0666, 0x0102030405060708ull, "data");
	r.unit = 0;
	raw_entry(&r, 2, 0, PROTO_KIND_SMALL, 0444, 0, "ctl");
	ck_assert_uint_eq(r.n, sizeof(expect));
	ck_assert_mem_eq(r.p, expect, sizeof(expect));
}
END_TEST

START_TEST(test_hello_empty)
{
	struct raw r;

	hin.version = PROTO_VERSION;
	ck_assert_int_eq(proto_encode_hello(hbuf, 4, &hin), 4);
	/* Even the bare count does not fit in 3 bytes, and none of them is written past. */
	memset(hbuf, 0xee, sizeof(hbuf));
	ck_assert_int_eq(proto_encode_hello(hbuf, 3, &hin), -ENOSPC);
	ck_assert_uint_eq(hbuf[3], 0xee);
	raw_begin(&r, PROTO_VERSION, 0);
	assert_hello_accepted(&r);
	ck_assert_uint_eq(hout.nfiles, 0);
}
END_TEST

/* PROTO_MAX_FILES files, longest names, fits in one message and comes back whole. */
START_TEST(test_hello_max_files)
{
	char name[PROTO_MAX_NAME + 1];

	hin.version = PROTO_VERSION;
	for (unsigned i = 0; i < PROTO_MAX_FILES; i++) {
		memset(name, 'x', PROTO_MAX_NAME);
		name[PROTO_MAX_NAME] = '\0';
		name[0] = (char)('a' + i % 26);
		name[1] = (char)('a' + i / 26);
		add_file(&hin, i + 1, (uint8_t)(i % 3), (uint8_t)(i % 3), 0444, 0, name);
	}
	for (unsigned i = 0; i < PROTO_MAX_FILES; i++)
		if ((hin.files[i].kind & PROTO_KIND_MASK) == PROTO_KIND_BLOCK)
			hin.files[i].size = i * 4096ull;
	int len = proto_encode_hello(hbuf, sizeof(hbuf), &hin);
	ck_assert_int_eq(len, 4 + PROTO_MAX_FILES * (18 + PROTO_MAX_NAME));
	ck_assert_int_le(len, PROTO_MAX_IO);
	const char *why = NULL;
	int r = proto_decode_hello(hbuf, (size_t)len, &hout, &why);
	ck_assert_msg(r == 0, "rejected: %s", why != NULL ? why : "?");
	ck_assert_uint_eq(hout.nfiles, PROTO_MAX_FILES);
	for (unsigned i = 0; i < PROTO_MAX_FILES; i++)
		assert_files_equal(&hout.files[i], &hin.files[i]);
	ck_assert_uint_eq(strlen(hout.files[PROTO_MAX_FILES - 1].name), PROTO_MAX_NAME);

	/* The same HELLO also goes through the header decoder as one message. */
	struct proto_hdr h = make_hdr(PROTO_HELLO), hdr;
	size_t n = proto_build(msg, &h, hbuf, (size_t)len);
	ck_assert_int_eq(proto_decode_hdr(msg, n, &hdr, NULL), 0);
}
END_TEST

START_TEST(test_hello_enospc)
{
	hin.version = PROTO_VERSION;
	add_file(&hin, 1, 0, PROTO_KIND_STREAM, 0666, 0, "data");
	add_file(&hin, 2, 0, PROTO_KIND_SMALL, 0444, 0, "status");
	int need = 4 + 18 + 4 + 18 + 6;

	ck_assert_int_eq(proto_encode_hello(hbuf, sizeof(hbuf), &hin), need);
	ck_assert_int_eq(proto_encode_hello(hbuf, (size_t)need, &hin), need);
	ck_assert_int_eq(proto_encode_hello(hbuf, (size_t)need - 1, &hin), -ENOSPC);
	ck_assert_int_eq(proto_encode_hello(hbuf, 4 + 18 + 4, &hin), -ENOSPC);
	ck_assert_int_eq(proto_encode_hello(hbuf, 4 + 18 + 3, &hin), -ENOSPC);
	ck_assert_int_eq(proto_encode_hello(hbuf, 4, &hin), -ENOSPC);
	ck_assert_int_eq(proto_encode_hello(hbuf, 3, &hin), -ENOSPC);
	ck_assert_int_eq(proto_encode_hello(hbuf, 0, &hin), -ENOSPC);
	/* Nothing is written past a small buffer. */
	memset(hbuf, 0xee, sizeof(hbuf));
	ck_assert_int_eq(proto_encode_hello(hbuf, 10, &hin), -ENOSPC);
	for (size_t i = 10; i < (size_t)need; i++)
		ck_assert_uint_eq(hbuf[i], 0xee);
}
END_TEST

START_TEST(test_hello_short)
{
	struct raw r;

	raw_begin(&r, PROTO_VERSION, 0);
	for (r.n = 0; r.n < 4; r.n++)
		assert_hello_rejected(&r, "too short");
}
END_TEST

START_TEST(test_hello_version)
{
	static const uint16_t bad[] = {0, 1 /* before units */, PROTO_VERSION + 1, 0x0100, 0xffff};
	struct raw r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		raw_begin(&r, bad[i], 1);
		raw_entry(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, "status");
		assert_hello_rejected(&r, "version");
	}
}
END_TEST

START_TEST(test_hello_too_many_files)
{
	struct raw r;

	/* Refused on the count alone, before looking for the entries. */
	raw_begin(&r, PROTO_VERSION, PROTO_MAX_FILES + 1);
	assert_hello_rejected(&r, "too many files");
	raw_begin(&r, PROTO_VERSION, 0xffff);
	assert_hello_rejected(&r, "too many files");
}
END_TEST

START_TEST(test_hello_truncated_entry)
{
	struct raw r;
	size_t full;

	/* Two announced, one present. */
	raw_begin(&r, PROTO_VERSION, 2);
	raw_entry(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, "status");
	assert_hello_rejected(&r, "truncated");
	/* Announced but missing altogether. */
	raw_begin(&r, PROTO_VERSION, 1);
	assert_hello_rejected(&r, "truncated");
	/* Cut anywhere inside the fixed part of the entry. */
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, "status");
	full = r.n;
	for (r.n = 4 + 1; r.n < 4 + 18; r.n++)
		assert_hello_rejected(&r, "truncated");
	/* Cut inside the name. */
	for (r.n = 4 + 18; r.n < full; r.n++)
		assert_hello_rejected(&r, "name length");
	r.n = full;
	assert_hello_accepted(&r);
}
END_TEST

START_TEST(test_hello_name_length)
{
	char longname[PROTO_MAX_NAME + 2];
	struct raw r;

	memset(longname, 'n', sizeof(longname));
	/* PROTO_MAX_NAME is allowed ... */
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry_n(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, PROTO_MAX_NAME, longname, PROTO_MAX_NAME);
	assert_hello_accepted(&r);
	ck_assert_uint_eq(strlen(hout.files[0].name), PROTO_MAX_NAME);
	/* ... one more is not, though the bytes are there. */
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry_n(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, PROTO_MAX_NAME + 1, longname, PROTO_MAX_NAME + 1);
	assert_hello_rejected(&r, "name length");
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry_n(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, 255, longname, 0);
	assert_hello_rejected(&r, "name length");
	/* A name length running past the end of the message. */
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry_n(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, 7, "status", 6);
	assert_hello_rejected(&r, "name length");
}
END_TEST

/* Names a driver must not be able to put in the tree. */
static const struct {
	const char *name;
	size_t len;
} bad_names[] = {
    {"", 0},	 {".", 1},	    {"..", 2},	    {"/", 1},		{"/a", 2},	  {"../x", 4},
    {"a//b", 4}, {"a/./b", 5},	    {"a/../b", 6},  {"a/b/", 4},	{"a/b/c/d/e", 9}, {"a/b c", 5},
    {"x/", 2},	 {"a\0b", 3},	    {"\0", 1},	    {"a\nb", 3},	{"\t", 1},	  {"a\x01", 2},
    {"\x1f", 1}, {"esc\x1b[0m", 7}, {"del\x7f", 4}, {"caf\xc3\xa9", 5}, {"\xff", 1},	  {"\x80", 1},
    {"a b", 3},	 {" ", 1},
};

START_TEST(test_hello_bad_name)
{
	struct raw r;

	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry_n(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, (uint8_t)bad_names[_i].len, bad_names[_i].name,
		    bad_names[_i].len);
	assert_hello_rejected(&r, "invalid file name");
}
END_TEST

START_TEST(test_hello_good_names)
{
	static const char *const good[] = {
	    "data",
	    "...",
	    ".hidden",
	    "a..b",
	    "feature-1",
	    "ep81",
	    "store-00010001",
	    "frame.jpg",
	    "~",
	    "a_b+c=d",
	    "!#$%&'()*,:;<>?@[\\]^`{|}",
	    "controls/brightness",
	    "a/b/c/d",
	    "dir/...",
	};
	struct raw r;

	raw_begin(&r, PROTO_VERSION, sizeof(good) / sizeof(good[0]));
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		raw_entry(&r, (uint32_t)i, 0, PROTO_KIND_SMALL, 0444, 0, good[i]);
	assert_hello_accepted(&r);
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		ck_assert_str_eq(hout.files[i].name, good[i]);
}
END_TEST

START_TEST(test_hello_kind)
{
	static const uint8_t bad[] = {4, 0x0f, 0x20, 0x21, 0x40, 0x80, 0xff, 0x13};
	static const uint8_t good[] = {PROTO_KIND_SMALL,
				       PROTO_KIND_STREAM,
				       PROTO_KIND_BLOCK,
				       PROTO_KIND_SMALL | PROTO_FILE_UNTIMED,
				       PROTO_KIND_STREAM | PROTO_FILE_UNTIMED,
				       PROTO_KIND_BLOCK | PROTO_FILE_UNTIMED};
	struct raw r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		raw_begin(&r, PROTO_VERSION, 1);
		raw_entry(&r, 1, 0, bad[i], 0444, 0, "x");
		assert_hello_rejected(&r, "kind");
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		raw_begin(&r, PROTO_VERSION, 1);
		raw_entry(&r, 1, 0, good[i], 0444, 0, "x");
		assert_hello_accepted(&r);
		ck_assert_uint_eq(hout.files[0].kind, good[i]);
	}
}
END_TEST

START_TEST(test_hello_mode)
{
	static const uint16_t bad[] = {0777, 0100, 0010, 0001, 01000, 02444, 04000, 0xffff, 0667};
	static const uint16_t good[] = {0, 0444, 0222, 0666, 0600, 0640, 0004};
	struct raw r;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		raw_begin(&r, PROTO_VERSION, 1);
		raw_entry(&r, 1, 0, PROTO_KIND_SMALL, bad[i], 0, "x");
		assert_hello_rejected(&r, "mode");
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		raw_begin(&r, PROTO_VERSION, 1);
		raw_entry(&r, 1, 0, PROTO_KIND_SMALL, good[i], 0, "x");
		assert_hello_accepted(&r);
		ck_assert_uint_eq(hout.files[0].mode, good[i]);
	}
}
END_TEST

START_TEST(test_hello_size)
{
	struct raw r;

	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 1, 0, PROTO_KIND_SMALL, 0444, 1, "x");
	assert_hello_rejected(&r, "not a block file");
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 1, 0, PROTO_KIND_STREAM, 0444, 4096, "x");
	assert_hello_rejected(&r, "not a block file");
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 1, 0, PROTO_KIND_STREAM | PROTO_FILE_UNTIMED, 0444, UINT64_MAX, "x");
	assert_hello_rejected(&r, "not a block file");
	/* A block file's size must fit off_t. */
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 1, 0, PROTO_KIND_BLOCK, 0666, (uint64_t)INT64_MAX + 1, "x");
	assert_hello_rejected(&r, "size out of range");
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 1, 0, PROTO_KIND_BLOCK, 0666, (uint64_t)INT64_MAX, "x");
	assert_hello_accepted(&r);
	ck_assert_uint_eq(hout.files[0].size, (uint64_t)INT64_MAX);
}
END_TEST

START_TEST(test_hello_duplicate_id)
{
	struct raw r;

	raw_begin(&r, PROTO_VERSION, 3);
	raw_entry(&r, 42, 0, PROTO_KIND_SMALL, 0444, 0, "a");
	raw_entry(&r, 43, 0, PROTO_KIND_SMALL, 0444, 0, "b");
	raw_entry(&r, 42, 1, PROTO_KIND_SMALL, 0444, 0, "c");
	assert_hello_rejected(&r, "duplicate file id");
}
END_TEST

START_TEST(test_hello_duplicate_name)
{
	struct raw r;

	raw_begin(&r, PROTO_VERSION, 3);
	raw_entry(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, "status");
	raw_entry(&r, 2, 1, PROTO_KIND_SMALL, 0444, 0, "status");
	raw_entry(&r, 3, 1, PROTO_KIND_STREAM, 0666, 0, "status");
	assert_hello_rejected(&r, "duplicate file name");

	/* The same name in different functions is how two printers look. */
	raw_begin(&r, PROTO_VERSION, 4);
	raw_entry(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, "status");
	raw_entry(&r, 2, 1, PROTO_KIND_SMALL, 0444, 0, "status");
	raw_entry(&r, 3, 2, PROTO_KIND_SMALL, 0444, 0, "status");
	raw_entry(&r, 4, 2, PROTO_KIND_SMALL, 0444, 0, "Status");
	assert_hello_accepted(&r);
	ck_assert_uint_eq(hout.nfiles, 4);
	ck_assert_uint_eq(hout.files[1].function, 1);
	ck_assert_uint_eq(hout.files[2].function, 2);

	/* The same name in two units of one function is how two LUNs look ... */
	raw_begin(&r, PROTO_VERSION, 2);
	raw_entry(&r, 1, 0, PROTO_KIND_BLOCK, 0666, 512, "data");
	r.unit = 1;
	raw_entry(&r, 2, 0, PROTO_KIND_BLOCK, 0666, 1024, "data");
	assert_hello_accepted(&r);
	ck_assert_uint_eq(hout.files[0].unit, 0);
	ck_assert_uint_eq(hout.files[1].unit, 1);
	ck_assert_uint_eq(hout.files[1].size, 1024);
	/* ... but twice in one unit is a duplicate. */
	raw_begin(&r, PROTO_VERSION, 3);
	r.unit = 1;
	raw_entry(&r, 1, 0, PROTO_KIND_BLOCK, 0666, 512, "data");
	r.unit = 2;
	raw_entry(&r, 2, 0, PROTO_KIND_BLOCK, 0666, 512, "data");
	r.unit = 1;
	raw_entry(&r, 3, 0, PROTO_KIND_SMALL, 0444, 0, "data");
	assert_hello_rejected(&r, "duplicate file name");
}
END_TEST

START_TEST(test_hello_file_and_dir)
{
	struct raw r;

	raw_begin(&r, PROTO_VERSION, 2);
	raw_entry(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, "controls/pan/absolute");
	raw_entry(&r, 2, 0, PROTO_KIND_SMALL, 0444, 0, "controls/pan");
	assert_hello_rejected(&r, "both a file and a directory");
	raw_begin(&r, PROTO_VERSION, 2);
	raw_entry(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, "controls");
	raw_entry(&r, 2, 0, PROTO_KIND_SMALL, 0444, 0, "controls/brightness");
	assert_hello_rejected(&r, "both a file and a directory");
	/* A common prefix that is not a directory, or another function's directory, is fine. */
	raw_begin(&r, PROTO_VERSION, 3);
	raw_entry(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, "controls");
	raw_entry(&r, 2, 0, PROTO_KIND_SMALL, 0444, 0, "controls2/x");
	raw_entry(&r, 3, 1, PROTO_KIND_SMALL, 0444, 0, "controls/x");
	assert_hello_accepted(&r);
}
END_TEST

START_TEST(test_hello_trailing)
{
	struct raw r;

	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, "status");
	r.p[r.n++] = 0;
	assert_hello_rejected(&r, "trailing");
	raw_begin(&r, PROTO_VERSION, 0);
	r.p[r.n++] = 'x';
	assert_hello_rejected(&r, "trailing");
	/* A whole extra entry beyond nfiles is trailing too. */
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, "a");
	raw_entry(&r, 2, 0, PROTO_KIND_SMALL, 0444, 0, "b");
	assert_hello_rejected(&r, "trailing");
}
END_TEST

/* ---- fuzz ---- */

/* xorshift64*: a fixed sequence on every machine, unlike rand(). */
static uint64_t rng_state;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static uint32_t rng_below(uint32_t n)
{
	return (uint32_t)(rng() % n);
}

static const uint16_t all_types[] = {
    PROTO_HELLO, PROTO_REPLY, PROTO_POLL_READY, PROTO_LOG,    PROTO_OPEN, PROTO_READ,
    PROTO_WRITE, PROTO_POLL,  PROTO_RELEASE,	PROTO_CANCEL, PROTO_PING, PROTO_CTL,
};

/* A valid HELLO payload with a few random files, in buf; returns its length. */
static size_t fuzz_valid_hello(uint8_t *buf, size_t cap)
{
	static const char *const names[] = {"data", "ctl", "status", "input", "ep81", "x", "feature-1"};
	unsigned nfiles = rng_below(6);

	memset(&hin, 0, sizeof(hin));
	hin.version = PROTO_VERSION;
	for (unsigned i = 0; i < nfiles; i++) {
		uint8_t kind = (uint8_t)(rng_below(3) | (rng_below(2) ? PROTO_FILE_UNTIMED : 0));
		uint64_t size = (kind & PROTO_KIND_MASK) == PROTO_KIND_BLOCK ? rng() >> 1 : 0;
		add_file(&hin, i * 7 + 1, (uint8_t)rng_below(3), kind, (uint16_t)(rng() & 0666), size,
			 names[(i + rng_below(2) * 3) % 7]);
	}
	/* Fix up duplicate (function, name) pairs by moving to a private function. */
	for (unsigned i = 0; i < hin.nfiles; i++)
		hin.files[i].function = (uint8_t)(hin.files[i].function * 16 + i);
	int n = proto_encode_hello(buf, cap, &hin);
	ck_assert_int_gt(n, 0);
	return (size_t)n;
}

/* A valid message of any type in buf; returns its length. */
static size_t fuzz_valid_msg(uint8_t *buf)
{
	uint16_t type = all_types[rng_below(sizeof(all_types) / sizeof(all_types[0]))];
	struct proto_hdr h = make_hdr(type);
	uint8_t payload[600];
	size_t plen = 0;

	h.flags = (uint16_t)(rng() & PROTO_F_NONBLOCK);
	h.req = (uint32_t)rng();
	h.handle = (uint32_t)rng();
	h.file = (uint32_t)rng();
	h.size = (uint32_t)rng();
	h.offset = rng();
	h.status = (int32_t)rng();
	switch (type) {
	case PROTO_HELLO:
		plen = fuzz_valid_hello(payload, sizeof(payload));
		break;
	case PROTO_REPLY:
		plen = rng_below(2) ? rng_below(200) : 0;
		if (plen > 0)
			h.status = (int32_t)plen;
		break;
	case PROTO_LOG:
	case PROTO_CTL:
		plen = 1 + rng_below(200);
		break;
	case PROTO_WRITE:
		plen = rng_below(300);
		break;
	case PROTO_READ:
		h.size = rng_below(PROTO_MAX_IO + 1);
		break;
	}
	if (type != PROTO_HELLO)
		for (size_t i = 0; i < plen; i++)
			payload[i] = (uint8_t)rng();
	return proto_build(buf, &h, payload, plen);
}

static void fuzz_mutate(uint8_t *buf, size_t *n, size_t cap)
{
	unsigned count = 1 + rng_below(4);

	for (unsigned k = 0; k < count; k++) {
		switch (rng_below(6)) {
		case 0: /* flip a bit */
			if (*n > 0)
				buf[rng_below((uint32_t)*n)] ^= (uint8_t)(1u << rng_below(8));
			break;
		case 1: /* set a byte to an interesting value */
			if (*n > 0) {
				static const uint8_t vals[] = {0, 1, 0x7f, 0x80, 0xff, 0x2f, 0x2e, 64, 65};
				buf[rng_below((uint32_t)*n)] = vals[rng_below(sizeof(vals))];
			}
			break;
		case 2: /* truncate */
			*n = rng_below((uint32_t)*n + 1);
			break;
		case 3: /* append random bytes */
			for (unsigned e = rng_below(20); e > 0 && *n < cap; e--)
				buf[(*n)++] = (uint8_t)rng();
			break;
		case 4: /* fix the length field up to the new size, so the checks behind it run */
			if (*n >= 4)
				put_le32(buf, (uint32_t)*n);
			break;
		case 5: /* random 16-bit field anywhere */
			if (*n >= 2) {
				size_t at = rng_below((uint32_t)*n - 1);
				put_le16(buf + at, (uint16_t)rng());
			}
			break;
		}
	}
}

static unsigned fuzz_hdr_ok, fuzz_hello_ok;

/* Feeds buf[0..n) to both decoders from an exactly-sized copy (so ASan sees over-reads). */
static void fuzz_feed(const uint8_t *buf, size_t n)
{
	uint8_t *copy = malloc(n > 0 ? n : 1);
	struct proto_hdr h;
	const char *why = NULL;

	ck_assert_ptr_nonnull(copy);
	memcpy(copy, buf, n);
	int r = proto_decode_hdr(copy, n, &h, &why);
	if (r == 0) {
		uint8_t re[PROTO_HDR_LEN];
		proto_encode_hdr(re, &h);
		ck_assert_mem_eq(re, copy, PROTO_HDR_LEN);
		ck_assert_uint_eq(h.len, n);
		fuzz_hdr_ok++;
	} else {
		ck_assert_int_eq(r, -EPROTO);
		ck_assert_ptr_nonnull(why);
	}

	/* The HELLO decoder sees the payload, as the daemon would hand it over, and the whole buffer. */
	for (int pass = 0; pass < 2; pass++) {
		const uint8_t *p = copy + (pass == 0 && n >= PROTO_HDR_LEN ? PROTO_HDR_LEN : 0);
		size_t pn = n - (size_t)(p - copy);

		why = NULL;
		r = proto_decode_hello(p, pn, &hout, &why);
		if (r == 0) {
			int len = proto_encode_hello(hbuf, sizeof(hbuf), &hout);
			ck_assert_int_eq(len, (int)pn);
			ck_assert_mem_eq(hbuf, p, pn);
			fuzz_hello_ok++;
		} else {
			ck_assert_int_eq(r, -EPROTO);
			ck_assert_ptr_nonnull(why);
		}
		if (p == copy)
			break;
	}
	free(copy);
}

START_TEST(test_fuzz)
{
	static uint8_t buf[2048];
	unsigned mutated_hello_ok = 0;

	rng_state = 0x706c756766730001ull; /* "plugfs" 1 */
	for (int iter = 0; iter < 100000; iter++) {
		size_t n;

		switch (iter % 4) {
		case 0: /* pure noise, sometimes with a believable length and type */
			n = rng_below(160);
			for (size_t i = 0; i < n; i++)
				buf[i] = (uint8_t)rng();
			if (n >= PROTO_HDR_LEN && rng_below(2)) {
				put_le32(buf, (uint32_t)n);
				put_le16(buf + 4,
					 all_types[rng_below(sizeof(all_types) / sizeof(all_types[0]))]);
				put_le16(buf + 6, 0);
				put_le32(buf + 36, 0);
			}
			break;
		case 1: /* a valid message, unchanged: must be accepted */
			n = fuzz_valid_msg(buf);
			{
				struct proto_hdr h;
				const char *why = NULL;
				int r = proto_decode_hdr(buf, n, &h, &why);
				ck_assert_msg(r == 0, "valid message refused: %s", why);
			}
			break;
		case 2: /* a valid message, mutated */
			n = fuzz_valid_msg(buf);
			fuzz_mutate(buf, &n, sizeof(buf));
			break;
		default: { /* a valid HELLO payload, mutated */
			n = fuzz_valid_hello(buf, sizeof(buf));
			const char *why = NULL;
			ck_assert_msg(proto_decode_hello(buf, n, &hout, &why) == 0, "valid HELLO refused: %s",
				      why);
			fuzz_mutate(buf, &n, sizeof(buf));
			unsigned before = fuzz_hello_ok;
			fuzz_feed(buf, n);
			if (fuzz_hello_ok > before)
				mutated_hello_ok++;
			continue;
		}
		}
		fuzz_feed(buf, n);
	}
	/* The generator must reach past the first checks, or it tests nothing. */
	ck_assert_uint_gt(fuzz_hdr_ok, 25000);
	ck_assert_uint_gt(mutated_hello_ok, 100);
}
END_TEST

/* ---- driver-owned trees: HELLO directories and node records ---- */

START_TEST(test_hello_dir)
{
	struct raw r;

	raw_begin(&r, PROTO_VERSION, 2);
	raw_entry(&r, 0xffffff00u, 0, PROTO_KIND_DIR, 0755, 0, "store-00010001");
	raw_entry(&r, 1, 0, PROTO_KIND_SMALL, 0444, 0, "info");
	assert_hello_accepted(&r);
	ck_assert_uint_eq(hout.files[0].kind, PROTO_KIND_DIR);
	ck_assert_uint_eq(hout.files[0].mode, 0755);
	ck_assert_uint_eq(hout.files[0].id, 0xffffff00u);

	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 0, 0, PROTO_KIND_DIR, 0555, 0, "store");
	assert_hello_rejected(&r, "node id 0");
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 7, 0, PROTO_KIND_DIR, 01755, 0, "store");
	assert_hello_rejected(&r, "mode");
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 7, 0, PROTO_KIND_DIR, 0555, 0, "a/store");
	assert_hello_rejected(&r, "single name");
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 7, 0, PROTO_KIND_DIR, 0555, 4096, "store");
	assert_hello_rejected(&r, "size");
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 7, 0, PROTO_KIND_DIR | PROTO_FILE_UNTIMED, 0555, 0, "store");
	assert_hello_rejected(&r, "kind");
	/* x bits stay a directory's: a file with them is refused as before. */
	raw_begin(&r, PROTO_VERSION, 1);
	raw_entry(&r, 7, 0, PROTO_KIND_SMALL, 0755, 0, "file");
	assert_hello_rejected(&r, "mode");
}
END_TEST

static struct proto_node node_of(uint32_t id, uint8_t kind, uint16_t mode, uint64_t size, int64_t mtime,
				 const char *name)
{
	struct proto_node n;

	memset(&n, 0, sizeof(n));
	n.id = id;
	n.kind = kind;
	n.mode = mode;
	n.size = size;
	n.mtime = mtime;
	size_t len = strnlen(name, sizeof(n.name) - 1);
	memcpy(n.name, name, len);
	n.name[len] = '\0';
	return n;
}

START_TEST(test_node_layout)
{
	static const uint8_t expect[] = {
	    0x05,
	    0x00,
	    0x00,
	    0x80,	      /* node */
	    PROTO_KIND_BLOCK, /* kind */
	    0xa4,
	    0x01, /* mode 0644 */
	    0x00,
	    0x00,
	    0x00,
	    0x01,
	    0x00,
	    0x00,
	    0x00,
	    0x00, /* size 16 MiB */
	    0x80,
	    0xd0,
	    0x6d,
	    0x66,
	    0x00,
	    0x00,
	    0x00,
	    0x00, /* mtime 1718472832 */
	    0x0c,
	    'M',
	    'V',
	    'I',
	    '_',
	    '0',
	    '0',
	    '0',
	    '3',
	    '.',
	    'M',
	    'O',
	    'V',
	};
	uint8_t buf[128];
	size_t off = 0;
	struct proto_node in = node_of(0x80000005u, PROTO_KIND_BLOCK, 0644, 16u << 20, 0x666dd080,
				       "MVI_0003.MOV"),
			  out;
	const char *why = NULL;

	memset(buf, 0xee, sizeof(buf));
	ck_assert_int_eq(proto_encode_node(buf, sizeof(buf), &off, &in), 0);
	ck_assert_uint_eq(off, sizeof(expect));
	ck_assert_mem_eq(buf, expect, sizeof(expect));
	ck_assert_uint_eq(buf[sizeof(expect)], 0xee);
	off = 0;
	ck_assert_int_eq(proto_decode_node(buf, sizeof(expect), &off, &out, &why), 0);
	ck_assert_uint_eq(off, sizeof(expect));
	ck_assert_uint_eq(out.id, in.id);
	ck_assert_uint_eq(out.kind, in.kind);
	ck_assert_uint_eq(out.mode, in.mode);
	ck_assert_uint_eq(out.size, in.size);
	ck_assert_int_eq(out.mtime, in.mtime);
	ck_assert_str_eq(out.name, in.name);
	/* Room is checked, and nothing is written past it. */
	off = 0;
	ck_assert_int_eq(proto_encode_node(buf, sizeof(expect) - 1, &off, &in), -ENOSPC);
	ck_assert_uint_eq(off, 0);
}
END_TEST

START_TEST(test_node_sequence)
{
	/* A READDIR reply: records one after the other, read back in order. */
	uint8_t buf[4096];
	size_t off = 0, roff = 0;
	char name[32];
	struct proto_node n;

	for (unsigned i = 1; i <= 50; i++) {
		snprintf(name, sizeof(name), "IMG %04u \xc3\xa9.JPG", i);
		n = node_of(i, i % 5 == 0 ? PROTO_KIND_DIR : PROTO_KIND_BLOCK, i % 5 == 0 ? 0755 : 0444,
			    i % 5 == 0 ? 0 : i * 1000, i, name);
		ck_assert_int_eq(proto_encode_node(buf, sizeof(buf), &off, &n), 0);
	}
	for (unsigned i = 1; i <= 50; i++) {
		ck_assert_int_eq(proto_decode_node(buf, off, &roff, &n, NULL), 0);
		ck_assert_uint_eq(n.id, i);
		snprintf(name, sizeof(name), "IMG %04u \xc3\xa9.JPG", i);
		ck_assert_str_eq(n.name, name);
	}
	ck_assert_uint_eq(roff, off);
	/* A record cut anywhere is refused, never read past the end. */
	for (size_t cut = 0; cut < 24 + 12; cut++) {
		size_t o = 0;
		const char *why = NULL;
		ck_assert_int_eq(proto_decode_node(buf, cut, &o, &n, &why), -EPROTO);
		ck_assert_ptr_nonnull(why);
		ck_assert_uint_eq(o, 0);
	}
}
END_TEST

/* Node records a driver must not send, and why each is refused. */
static const struct {
	uint32_t id;
	uint8_t kind;
	uint16_t mode;
	uint64_t size;
	int64_t mtime;
	const char *name;
	const char *reason;
} bad_nodes[] = {
    {0, PROTO_KIND_BLOCK, 0444, 1, 0, "x", "node id 0"},
    {1, PROTO_KIND_SMALL, 0444, 0, 0, "x", "kind"},
    {1, PROTO_KIND_STREAM, 0444, 0, 0, "x", "kind"},
    {1, 4, 0444, 0, 0, "x", "kind"},
    {1, PROTO_KIND_BLOCK | PROTO_FILE_UNTIMED, 0444, 0, 0, "x", "kind"},
    {1, PROTO_KIND_BLOCK, 01444, 0, 0, "x", "mode"},
    {1, PROTO_KIND_BLOCK, 0xffff, 0, 0, "x", "mode"},
    {1, PROTO_KIND_DIR, 0755, 1, 0, "x", "size"},
    {1, PROTO_KIND_BLOCK, 0444, 1ull << 63, 0, "x", "size"},
    {1, PROTO_KIND_BLOCK, 0444, 0, -1, "x", "mtime"},
    {1, PROTO_KIND_BLOCK, 0444, 0, PROTO_MAX_MTIME + 1, "x", "mtime"},
    {1, PROTO_KIND_BLOCK, 0444, 0, 0, "", "name"},
    {1, PROTO_KIND_BLOCK, 0444, 0, 0, ".", "name"},
    {1, PROTO_KIND_BLOCK, 0444, 0, 0, "..", "name"},
    {1, PROTO_KIND_BLOCK, 0444, 0, 0, "a/b", "name"},
    {1, PROTO_KIND_BLOCK, 0444, 0, 0, "tab\there", "name"},
    {1, PROTO_KIND_BLOCK, 0444, 0, 0, "new\nline", "name"},
    {1, PROTO_KIND_BLOCK, 0444, 0, 0, "del\x7f", "name"},
};

START_TEST(test_node_rejects)
{
	uint8_t buf[512];
	size_t off = 0;
	struct proto_node n = node_of(bad_nodes[_i].id, bad_nodes[_i].kind, bad_nodes[_i].mode,
				      bad_nodes[_i].size, bad_nodes[_i].mtime, bad_nodes[_i].name);
	const char *why = NULL;

	/* The encoder writes what it is given: it is the decoder that must refuse. */
	ck_assert_int_eq(proto_encode_node(buf, sizeof(buf), &off, &n), 0);
	size_t roff = 0;
	ck_assert_int_eq(proto_decode_node(buf, off, &roff, &n, &why), -EPROTO);
	ck_assert_ptr_nonnull(why);
	ck_assert_msg(strstr(why, bad_nodes[_i].reason) != NULL, "refused for \"%s\", expected \"%s\"", why,
		      bad_nodes[_i].reason);
	ck_assert_uint_eq(roff, 0);
}
END_TEST

START_TEST(test_node_names)
{
	char name[PROTO_MAX_NODE_NAME + 2];
	uint8_t buf[512];
	struct proto_node n;
	size_t off, roff;

	/* Real devices' names: spaces, UTF-8, the longest NAME_MAX allows. */
	static const char *const good[] = {"Camera Roll", "Fotos \xc3\xa9t\xc3\xa9", "...", ".hidden", "a b"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		n = node_of(9, PROTO_KIND_DIR, 0555, 0, 0, good[i]);
		off = roff = 0;
		ck_assert_int_eq(proto_encode_node(buf, sizeof(buf), &off, &n), 0);
		ck_assert_int_eq(proto_decode_node(buf, off, &roff, &n, NULL), 0);
		ck_assert_str_eq(n.name, good[i]);
		ck_assert(proto_valid_node_name(good[i], strlen(good[i])));
	}
	memset(name, 'n', sizeof(name));
	name[PROTO_MAX_NODE_NAME] = '\0';
	n = node_of(9, PROTO_KIND_BLOCK, 0444, 0, 0, name);
	off = roff = 0;
	ck_assert_int_eq(proto_encode_node(buf, sizeof(buf), &off, &n), 0);
	ck_assert_int_eq(proto_decode_node(buf, off, &roff, &n, NULL), 0);
	ck_assert_uint_eq(strlen(n.name), PROTO_MAX_NODE_NAME);
	ck_assert(!proto_valid_node_name(name, PROTO_MAX_NODE_NAME + 1));
	ck_assert(!proto_valid_node_name("a\0b", 3));
}
END_TEST

START_TEST(test_hdr_node_requests)
{
	/* READDIR's size is bounded like READ's. */
	struct proto_hdr h = make_hdr(PROTO_READDIR);
	h.size = PROTO_MAX_IO;
	assert_hdr_accepted(build_msg(&h, 0));
	h = make_hdr(PROTO_READDIR);
	h.size = PROTO_MAX_IO + 1;
	assert_hdr_rejected(build_msg(&h, 0), "size");
	/* OPEN and READ of a node carry PROTO_F_NODE. */
	h = make_hdr(PROTO_OPEN);
	h.flags = PROTO_F_NODE;
	assert_hdr_accepted(build_msg(&h, 0));
}
END_TEST

/* ---- START (spare hosts) ---- */

START_TEST(test_start_round_trip)
{
	static const char *const args[] = {"--detach", "/dev/bus/usb/001/002", "usb:0", "hid:1"};
	static const uint8_t desc[] = {0x12, 0x01, 0x00, 0x02};
	uint8_t buf[256];
	uint32_t args_len = 0;
	char *argv[8];
	unsigned argc = 0;
	const uint8_t *d = NULL;
	size_t dlen = 99;
	const char *why = NULL;

	int n = proto_encode_start(buf, sizeof(buf), args, 4, desc, sizeof(desc), &args_len);
	ck_assert_int_eq(n, 9 + 21 + 6 + 6 + 4);
	ck_assert_uint_eq(args_len, 9 + 21 + 6 + 6);
	ck_assert_int_eq(memcmp(buf, "--detach\0/dev/bus/usb/001/002\0usb:0\0hid:1\0", args_len), 0);
	ck_assert_int_eq(proto_decode_start(buf, (size_t)n, args_len, argv, 8, &argc, &d, &dlen, &why), 0);
	ck_assert_uint_eq(argc, 4);
	for (unsigned i = 0; i < 4; i++)
		ck_assert_str_eq(argv[i], args[i]);
	ck_assert_uint_eq(dlen, sizeof(desc));
	ck_assert_int_eq(memcmp(d, desc, sizeof(desc)), 0);

	/* No descriptors. */
	n = proto_encode_start(buf, sizeof(buf), args + 1, 2, NULL, 0, &args_len);
	ck_assert_int_eq(n, 21 + 6);
	ck_assert_int_eq(proto_decode_start(buf, (size_t)n, args_len, argv, 8, &argc, &d, &dlen, &why), 0);
	ck_assert_uint_eq(argc, 2);
	ck_assert_ptr_null(d);
	ck_assert_uint_eq(dlen, 0);
}
END_TEST

START_TEST(test_start_encode_limits)
{
	static char longarg[PROTO_START_MAX_ARG + 2];
	const char *args[PROTO_START_MAX_ARGS + 1];
	uint8_t buf[64];
	uint32_t args_len;

	for (unsigned i = 0; i <= PROTO_START_MAX_ARGS; i++)
		args[i] = "x";
	ck_assert_int_eq(proto_encode_start(buf, sizeof(buf), args, 0, NULL, 0, &args_len), -EINVAL);
	ck_assert_int_eq(
	    proto_encode_start(buf, sizeof(buf), args, PROTO_START_MAX_ARGS + 1, NULL, 0, &args_len),
	    -EINVAL);
	args[0] = "";
	ck_assert_int_eq(proto_encode_start(buf, sizeof(buf), args, 1, NULL, 0, &args_len), -EINVAL);
	memset(longarg, 'a', sizeof(longarg) - 1);
	args[0] = longarg;
	ck_assert_int_eq(proto_encode_start(buf, sizeof(buf), args, 1, NULL, 0, &args_len), -EINVAL);
	args[0] = "0123456789012345678901234567890123456789";
	args[1] = "0123456789012345678901234567890123456789";
	ck_assert_int_eq(proto_encode_start(buf, sizeof(buf), args, 2, NULL, 0, &args_len), -ENOSPC);
	ck_assert_int_eq(proto_encode_start(buf, sizeof(buf), args, 1, buf, 30, &args_len), -ENOSPC);
}
END_TEST

static const struct {
	const char *payload;
	size_t len;
	uint32_t args_len;
	const char *why;
} bad_starts[] = {
    {"usb:0", 5, 5, "NUL-terminated"}, {"a\0\0", 3, 3, "empty"},     {"\0a\0", 3, 3, "empty"},
    {"a\tb\0", 4, 4, "control"},       {"a\x80\0", 3, 3, "control"}, {"a\0", 2, 3, "larger than"},
    {"a\0", 2, 0, "larger than"},
};

START_TEST(test_start_rejects)
{
	uint8_t buf[16];
	char *argv[4];
	unsigned argc;
	const uint8_t *d;
	size_t dlen;
	const char *why = NULL;

	memcpy(buf, bad_starts[_i].payload, bad_starts[_i].len);
	ck_assert_int_eq(proto_decode_start(buf, bad_starts[_i].len, bad_starts[_i].args_len, argv, 4, &argc,
					    &d, &dlen, &why),
			 -EPROTO);
	ck_assert_ptr_nonnull(why);
	ck_assert_msg(strstr(why, bad_starts[_i].why) != NULL, "%s: %s", bad_starts[_i].why, why);
}
END_TEST

START_TEST(test_start_arg_limits)
{
	static uint8_t buf[2 * (PROTO_START_MAX_ARG + 2)];
	char *argv[PROTO_START_MAX_ARGS + 1];
	unsigned argc;
	const uint8_t *d;
	size_t dlen;
	const char *why = NULL;

	/* Longest argument: accepted; one more byte: refused. */
	memset(buf, 'a', PROTO_START_MAX_ARG);
	buf[PROTO_START_MAX_ARG] = '\0';
	ck_assert_int_eq(proto_decode_start(buf, PROTO_START_MAX_ARG + 1, PROTO_START_MAX_ARG + 1, argv, 4,
					    &argc, &d, &dlen, &why),
			 0);
	memset(buf, 'a', PROTO_START_MAX_ARG + 1);
	buf[PROTO_START_MAX_ARG + 1] = '\0';
	ck_assert_int_eq(proto_decode_start(buf, PROTO_START_MAX_ARG + 2, PROTO_START_MAX_ARG + 2, argv, 4,
					    &argc, &d, &dlen, &why),
			 -EPROTO);
	ck_assert_ptr_nonnull(strstr(why, "too long"));

	/* More arguments than the caller has room for, or than a START may carry. */
	for (unsigned i = 0; i < PROTO_START_MAX_ARGS + 1; i++) {
		buf[2 * i] = 'x';
		buf[2 * i + 1] = '\0';
	}
	ck_assert_int_eq(proto_decode_start(buf, 6, 6, argv, 2, &argc, &d, &dlen, &why), -EPROTO);
	ck_assert_ptr_nonnull(strstr(why, "too many"));
	ck_assert_int_eq(proto_decode_start(buf, 6, 6, argv, 3, &argc, &d, &dlen, &why), 0);
	ck_assert_uint_eq(argc, 3);
	ck_assert_int_eq(proto_decode_start(buf, 2 * (PROTO_START_MAX_ARGS + 1),
					    2 * (PROTO_START_MAX_ARGS + 1), argv, PROTO_START_MAX_ARGS + 1,
					    &argc, &d, &dlen, &why),
			 -EPROTO);
}
END_TEST

START_TEST(test_hdr_start_size)
{
	struct proto_hdr h = make_hdr(PROTO_START);

	h.size = 8;
	assert_hdr_accepted(build_msg(&h, 8));
	h.size = 9;
	assert_hdr_rejected(build_msg(&h, 8), "START arguments");
	h.size = 0;
	assert_hdr_rejected(build_msg(&h, 8), "START arguments");
}
END_TEST

Suite *proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc;

	tc = tcase_create("header");
	tcase_add_test(tc, test_hdr_layout);
	tcase_add_test(tc, test_hdr_round_trip);
	tcase_add_test(tc, test_hdr_round_trip_extremes);
	tcase_add_test(tc, test_build);
	tcase_add_test(tc, test_build_no_payload);
	tcase_add_test(tc, test_type_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("header_rejects");
	tcase_add_test(tc, test_hdr_short);
	tcase_add_test(tc, test_hdr_long);
	tcase_add_test(tc, test_hdr_len_mismatch);
	tcase_add_test(tc, test_hdr_reserved);
	tcase_add_test(tc, test_hdr_shm);
	tcase_add_test(tc, test_hdr_flags);
	tcase_add_test(tc, test_hdr_unknown_type);
	tcase_add_loop_test(tc, test_hdr_payload_bounds, 0,
			    sizeof(payload_bounds) / sizeof(payload_bounds[0]));
	tcase_add_test(tc, test_hdr_read_size);
	tcase_add_test(tc, test_hdr_reply_status);
	tcase_add_test(tc, test_hdr_start_size);
	suite_add_tcase(s, tc);

	tc = tcase_create("start");
	tcase_add_test(tc, test_start_round_trip);
	tcase_add_test(tc, test_start_encode_limits);
	tcase_add_loop_test(tc, test_start_rejects, 0, sizeof(bad_starts) / sizeof(bad_starts[0]));
	tcase_add_test(tc, test_start_arg_limits);
	suite_add_tcase(s, tc);

	tc = tcase_create("hello");
	tcase_add_checked_fixture(tc, hello_setup, NULL);
	tcase_add_test(tc, test_hello_round_trip);
	tcase_add_test(tc, test_hello_layout);
	tcase_add_test(tc, test_hello_empty);
	tcase_add_test(tc, test_hello_max_files);
	tcase_add_test(tc, test_hello_enospc);
	tcase_add_test(tc, test_hello_good_names);
	tcase_add_test(tc, test_hello_file_and_dir);
	suite_add_tcase(s, tc);

	tc = tcase_create("hello_rejects");
	tcase_add_checked_fixture(tc, hello_setup, NULL);
	tcase_add_test(tc, test_hello_short);
	tcase_add_test(tc, test_hello_version);
	tcase_add_test(tc, test_hello_too_many_files);
	tcase_add_test(tc, test_hello_truncated_entry);
	tcase_add_test(tc, test_hello_name_length);
	tcase_add_loop_test(tc, test_hello_bad_name, 0, sizeof(bad_names) / sizeof(bad_names[0]));
	tcase_add_test(tc, test_hello_kind);
	tcase_add_test(tc, test_hello_mode);
	tcase_add_test(tc, test_hello_size);
	tcase_add_test(tc, test_hello_duplicate_id);
	tcase_add_test(tc, test_hello_duplicate_name);
	tcase_add_test(tc, test_hello_trailing);
	suite_add_tcase(s, tc);

	tc = tcase_create("nodes");
	tcase_add_test(tc, test_hello_dir);
	tcase_add_test(tc, test_node_layout);
	tcase_add_test(tc, test_node_sequence);
	tcase_add_loop_test(tc, test_node_rejects, 0, sizeof(bad_nodes) / sizeof(bad_nodes[0]));
	tcase_add_test(tc, test_node_names);
	tcase_add_test(tc, test_hdr_node_requests);
	suite_add_tcase(s, tc);

	tc = tcase_create("fuzz");
	tcase_add_checked_fixture(tc, hello_setup, NULL);
	/* 100000 messages take well under a second, but leave room for ASan/valgrind. */
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_fuzz);
	suite_add_tcase(s, tc);

	return s;
}
