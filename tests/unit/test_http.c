/*
 * The strict HTTP/1.1 response parser (common/http.c): every response is
 * also fed split at every byte boundary and one byte at a time, and must
 * give the same status, fields and body; malformed and oversized input
 * must fail with the right code, never crash or wait.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "suites.h"

struct result {
	int err; /* 0, or the first error */
	bool done, headers;
	int status;
	int64_t content_length;
	bool chunked, keep_alive;
	char location[HTTP_MAX_LOCATION];
	char body[65536];
	size_t body_len;
	size_t leftover; /* bytes given after the end */
};

/* Feeds `len` bytes in pieces of the sizes in `cuts` (cycled); 0 in cuts: everything at once. */
static void feed(struct http_response *r, struct result *res, const uint8_t *in, size_t len)
{
	struct http_span body;

	while (!res->done && res->err == 0) {
		int ev = http_parse(r, &in, &len, &body);
		if (ev < 0) {
			res->err = ev;
			return;
		}
		if (ev == HTTP_EV_HEADERS) {
			ck_assert(!res->headers);
			res->headers = true;
			res->status = r->status;
			res->content_length = r->content_length;
			res->chunked = r->chunked;
			res->keep_alive = r->keep_alive;
			strcpy(res->location, r->location);
		} else if (ev == HTTP_EV_BODY) {
			ck_assert(res->headers);
			ck_assert_uint_gt(body.len, 0);
			ck_assert_uint_le(res->body_len + body.len, sizeof(res->body));
			memcpy(res->body + res->body_len, body.data, body.len);
			res->body_len += body.len;
		} else if (ev == HTTP_EV_DONE) {
			res->done = true;
			res->leftover = len;
		} else {
			ck_assert_uint_eq(len, 0);
			return;
		}
	}
}

static struct result parse_split(const char *text, size_t len, size_t split)
{
	struct http_response r;
	struct result res = {0};

	http_response_init(&r, false);
	if (split > len)
		split = len;
	feed(&r, &res, (const uint8_t *)text, split);
	if (!res.done && res.err == 0)
		feed(&r, &res, (const uint8_t *)text + split, len - split);
	return res;
}

static struct result parse_bytewise(const char *text, size_t len)
{
	struct http_response r;
	struct result res = {0};

	http_response_init(&r, false);
	for (size_t i = 0; i < len && !res.done && res.err == 0; i++)
		feed(&r, &res, (const uint8_t *)text + i, 1);
	return res;
}

static void same(const struct result *a, const struct result *b)
{
	ck_assert_int_eq(a->err, b->err);
	ck_assert_int_eq(a->done, b->done);
	ck_assert_int_eq(a->status, b->status);
	ck_assert_int_eq(a->content_length, b->content_length);
	ck_assert_str_eq(a->location, b->location);
	ck_assert_uint_eq(a->body_len, b->body_len);
	ck_assert(memcmp(a->body, b->body, a->body_len) == 0);
}

/* Parses whole, split at every boundary and byte by byte: all the same.  Returns the whole parse. */
static struct result parse_all_ways(const char *text)
{
	size_t len = strlen(text);
	struct result whole = parse_split(text, len, len);

	for (size_t s = 0; s <= len; s++) {
		struct result part = parse_split(text, len, s);
		same(&whole, &part);
	}
	struct result bytes = parse_bytewise(text, len);
	same(&whole, &bytes);
	return whole;
}

START_TEST(content_length)
{
	struct result r = parse_all_ways("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 11\r\n"
					 "Server: x\r\n\r\nhello world");
	ck_assert_int_eq(r.err, 0);
	ck_assert(r.done);
	ck_assert_int_eq(r.status, 200);
	ck_assert_int_eq(r.content_length, 11);
	ck_assert(r.keep_alive);
	ck_assert_uint_eq(r.body_len, 11);
	ck_assert_mem_eq(r.body, "hello world", 11);
	ck_assert_uint_eq(r.leftover, 0);
}
END_TEST

START_TEST(chunked)
{
	struct result r =
	    parse_all_ways("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			   "5\r\nhello\r\n1;ext=1\r\n \r\nA \r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n");
	ck_assert_int_eq(r.err, 0);
	ck_assert(r.done);
	ck_assert(r.chunked);
	ck_assert_uint_eq(r.body_len, 16);
	ck_assert_mem_eq(r.body, "hello 0123456789", 16);
}
END_TEST

START_TEST(no_body_answers)
{
	struct result r =
	    parse_all_ways("HTTP/1.1 201 Created\r\nLocation: http://localhost:80/eSCL/ScanJobs/7\r\n"
			   "Content-Length: 0\r\n\r\n");
	ck_assert_int_eq(r.err, 0);
	ck_assert(r.done);
	ck_assert_int_eq(r.status, 201);
	ck_assert_str_eq(r.location, "http://localhost:80/eSCL/ScanJobs/7");
	ck_assert_uint_eq(r.body_len, 0);
	r = parse_all_ways("HTTP/1.1 204 No Content\r\n\r\n");
	ck_assert(r.done);
	ck_assert_int_eq(r.status, 204);
	/* 100 Continue is skipped; HTTP/1.0 without keep-alive closes (recorded). */
	r = parse_all_ways(
	    "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 404 Not Found\r\nContent-Length: 2\r\n\r\nno");
	ck_assert_int_eq(r.err, 0);
	ck_assert_int_eq(r.status, 404);
	ck_assert(!r.keep_alive);
	ck_assert_mem_eq(r.body, "no", 2);
	r = parse_all_ways("HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n");
	ck_assert(!r.keep_alive);
	/* A HEAD answer has no body whatever its Content-Length says. */
	struct http_response h;
	struct result hr = {0};
	const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n";
	http_response_init(&h, true);
	feed(&h, &hr, (const uint8_t *)head, strlen(head));
	ck_assert(hr.done);
	ck_assert_uint_eq(hr.body_len, 0);
}
END_TEST

START_TEST(leftover_after_end)
{
	const char *t = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE";
	struct result r = parse_split(t, strlen(t), strlen(t));
	ck_assert(r.done);
	ck_assert_uint_eq(r.leftover, 7);
}
END_TEST

/* Each case with its length: one holds a NUL byte. */
#define BAD(text, err)                                                                                       \
	{                                                                                                    \
		text, err, sizeof(text) - 1                                                                  \
	}
static const struct {
	const char *text;
	int err;
	size_t len;
} bad[] = {
    BAD("HTTP/2 200 OK\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 2OO OK\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 600 Huh\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200OK\r\n\r\n", -EBADMSG),
    BAD("ICY 200 OK\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\n\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\rX\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n folded\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\n: empty name\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nX: a\x01z\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", -EMSGSIZE),
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\n\r\nbody without length", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZ\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000001\r\n", -EMSGSIZE),
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n123456789\r\n", -EMSGSIZE),
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n00000000000000000000001\r\n", 0),
    BAD("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", -EBADMSG),
    BAD("HTTP/1.1 101 Switching\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nLocation: /a\r\nLocation: /b\r\n\r\n", -EBADMSG),
    BAD("HTTP/1.1 200 OK\r\nX: \0\r\n\r\n", -EBADMSG),
};

START_TEST(malformed)
{
	const char *text = bad[_i].text;
	size_t len = bad[_i].len;

	for (size_t s = 0; s <= len; s++) {
		struct result r = parse_split(text, len, s);
		if (bad[_i].err == 0) {
			ck_assert_msg(r.err == 0, "case %d split %zu: %d", _i, s, r.err);
			continue;
		}
		ck_assert_msg(r.err == bad[_i].err, "case %d (%s) split %zu: %d, want %d", _i, text, s, r.err,
			      bad[_i].err);
	}
}
END_TEST

/* The error sticks: a parser that failed keeps failing, and says why. */
START_TEST(error_sticks)
{
	struct http_response r;
	struct http_span b;
	const uint8_t *p = (const uint8_t *)"HTTP/9.9 200 OK\r\n";
	size_t n = 17;

	http_response_init(&r, false);
	ck_assert_int_eq(http_parse(&r, &p, &n, &b), -EBADMSG);
	ck_assert_ptr_nonnull(r.why);
	p = (const uint8_t *)"HTTP/1.1 200 OK\r\n";
	n = 17;
	ck_assert_int_eq(http_parse(&r, &p, &n, &b), -EBADMSG);
	ck_assert_int_eq(http_eof(&r), -EBADMSG);
}
END_TEST

static char *repeat(const char *head, char c, size_t n, const char *tail)
{
	size_t hl = strlen(head), tl = strlen(tail);
	char *s = malloc(hl + n + tl + 1);

	ck_assert_ptr_nonnull(s);
	memcpy(s, head, hl);
	memset(s + hl, c, n);
	memcpy(s + hl + n, tail, tl + 1);
	return s;
}

START_TEST(oversized_headers)
{
	struct result r;
	char *s = repeat("HTTP/1.1 200 OK\r\nX-Long: ", 'a', HTTP_MAX_LINE, "\r\n\r\n");

	r = parse_split(s, strlen(s), 7);
	ck_assert_int_eq(r.err, -EMSGSIZE);
	free(s);
	/* Just under the line limit is fine. */
	s = repeat("HTTP/1.1 200 OK\r\nX-Long: ", 'a', HTTP_MAX_LINE - 8 - 10,
		   "\r\nContent-Length: 0\r\n\r\n");
	r = parse_split(s, strlen(s), strlen(s));
	ck_assert_int_eq(r.err, 0);
	free(s);
	/* Too many header lines. */
	size_t cap = 20 + (HTTP_MAX_HEADERS + 1) * 6 + 4;
	s = malloc(cap);
	strcpy(s, "HTTP/1.1 200 OK\r\n");
	for (int i = 0; i <= HTTP_MAX_HEADERS; i++)
		strcat(s, "A: b\r\n");
	strcat(s, "\r\n");
	r = parse_bytewise(s, strlen(s));
	ck_assert_int_eq(r.err, -EMSGSIZE);
	free(s);
	/* Many lines each under the limit, more bytes than all headers may have. */
	size_t lines = HTTP_MAX_HEADER_BYTES / 1000 + 2, off;
	s = malloc(32 + lines * 1003 + 4);
	strcpy(s, "HTTP/1.1 200 OK\r\n");
	off = strlen(s);
	for (size_t i = 0; i < lines; i++) {
		memcpy(s + off, "X: ", 3);
		memset(s + off + 3, 'v', 996);
		memcpy(s + off + 999, "\r\n", 2);
		off += 1001;
	}
	strcpy(s + off, "\r\n");
	r = parse_split(s, strlen(s), 1000);
	ck_assert_int_eq(r.err, -EMSGSIZE);
	free(s);
	/* An endless interim stream. */
	s = malloc(2000);
	s[0] = '\0';
	for (int i = 0; i < 20; i++)
		strcat(s, "HTTP/1.1 100 Continue\r\n\r\n");
	r = parse_split(s, strlen(s), strlen(s));
	ck_assert_int_eq(r.err, -EBADMSG);
	free(s);
}
END_TEST

START_TEST(truncated)
{
	static const char *const cuts[] = {
	    "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
	    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
	    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
	    "HTTP/1.1 200 OK\r\nContent-Le",
	    "HTTP/1.1 200 OK\r",
	    "",
	};

	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		struct http_response r;
		struct result res = {0};
		http_response_init(&r, false);
		feed(&r, &res, (const uint8_t *)cuts[i], strlen(cuts[i]));
		ck_assert_int_eq(res.err, 0);
		ck_assert(!res.done);
		ck_assert_int_eq(http_eof(&r), -EBADMSG);
		ck_assert_ptr_nonnull(r.why);
	}
	struct http_response r;
	struct result res = {0};
	const char *full = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
	http_response_init(&r, false);
	feed(&r, &res, (const uint8_t *)full, strlen(full));
	ck_assert(res.done);
	ck_assert_int_eq(http_eof(&r), 0);
}
END_TEST

/* A big chunked body in odd pieces, chunk sizes in upper and lower case hex. */
START_TEST(big_chunked_body)
{
	size_t total = 0, off = 0;
	char *s = malloc(200000);
	char expect[20000];

	off = (size_t)sprintf(s, "HTTP/1.1 200 OK\r\ntransfer-encoding: CHUNKED\r\n\r\n");
	for (int c = 1; total + (size_t)c * 37 < sizeof(expect); c++) {
		size_t n = (size_t)c * 37;
		off += (size_t)sprintf(s + off, c % 2 ? "%zx\r\n" : "%zX\r\n", n);
		for (size_t i = 0; i < n; i++)
			s[off + i] = expect[total + i] = (char)('a' + (total + i) % 26);
		off += n;
		memcpy(s + off, "\r\n", 2);
		off += 2;
		total += n;
	}
	off += (size_t)sprintf(s + off, "0\r\n\r\n");
	static const size_t steps[] = {1, 7, 64, 1000, 4096, 200000};

	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		size_t step = steps[k];
		struct http_response r;
		struct result res = {0};
		http_response_init(&r, false);
		for (size_t i = 0; i < off && !res.done; i += step)
			feed(&r, &res, (const uint8_t *)s + i, off - i < step ? off - i : step);
		ck_assert_int_eq(res.err, 0);
		ck_assert(res.done);
		ck_assert_uint_eq(res.body_len, total);
		ck_assert(memcmp(res.body, expect, total) == 0);
	}
	free(s);
}
END_TEST

START_TEST(format_request)
{
	char buf[256];
	int n = http_format_request(buf, sizeof(buf), "GET", "/eSCL/ScannerStatus", "localhost", NULL, 0);

	ck_assert_int_gt(n, 0);
	ck_assert_str_eq(buf, "GET /eSCL/ScannerStatus HTTP/1.1\r\nHost: localhost\r\n\r\n");
	n = http_format_request(buf, sizeof(buf), "POST", "/eSCL/ScanJobs", "localhost", "text/xml", 42);
	ck_assert_str_eq(buf, "POST /eSCL/ScanJobs HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
			      "Content-Length: 42\r\n\r\n");
	ck_assert_int_eq(n, (int)strlen(buf));
	ck_assert_int_eq(http_format_request(buf, sizeof(buf), "GET", "/a b", "h", NULL, 0), -EINVAL);
	ck_assert_int_eq(http_format_request(buf, sizeof(buf), "GET", "/a\r\nX: y", "h", NULL, 0), -EINVAL);
	ck_assert_int_eq(http_format_request(buf, sizeof(buf), "GET", "relative", "h", NULL, 0), -EINVAL);
	ck_assert_int_eq(http_format_request(buf, sizeof(buf), "", "/", "h", NULL, 0), -EINVAL);
	ck_assert_int_eq(http_format_request(buf, 10, "GET", "/", "h", NULL, 0), -ENOSPC);
}
END_TEST

START_TEST(location_path)
{
	char p[64];

	ck_assert_int_eq(http_location_path("/eSCL/ScanJobs/1", p, sizeof(p)), 0);
	ck_assert_str_eq(p, "/eSCL/ScanJobs/1");
	ck_assert_int_eq(http_location_path("http://localhost:60000/eSCL/ScanJobs/abc-1", p, sizeof(p)), 0);
	ck_assert_str_eq(p, "/eSCL/ScanJobs/abc-1");
	ck_assert_int_eq(http_location_path("HTTPS://[::1]/x", p, sizeof(p)), 0);
	ck_assert_str_eq(p, "/x");
	ck_assert_int_eq(http_location_path("http://localhost", p, sizeof(p)), -EINVAL);
	ck_assert_int_eq(http_location_path("eSCL/ScanJobs/1", p, sizeof(p)), -EINVAL);
	ck_assert_int_eq(http_location_path("/with space", p, sizeof(p)), -EINVAL);
	ck_assert_int_eq(http_location_path("", p, sizeof(p)), -EINVAL);
	ck_assert_int_eq(http_location_path("/0123456789", p, 8), -EINVAL);
}
END_TEST

Suite *http_suite(void)
{
	Suite *s = suite_create("http");
	TCase *tc = tcase_create("parse");

	/* Every split point of every input: seconds under ASan on a busy machine. */
	tcase_set_timeout(tc, 60);

	tcase_add_test(tc, content_length);
	tcase_add_test(tc, chunked);
	tcase_add_test(tc, no_body_answers);
	tcase_add_test(tc, leftover_after_end);
	tcase_add_loop_test(tc, malformed, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, error_sticks);
	tcase_add_test(tc, oversized_headers);
	tcase_add_test(tc, truncated);
	tcase_add_test(tc, big_chunked_body);
	tcase_add_test(tc, format_request);
	tcase_add_test(tc, location_path);
	suite_add_tcase(s, tc);
	return s;
}
