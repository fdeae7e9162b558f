/*
 * The strict HTTP/1.1 response parser and request formatter (http.h).
 *
 * Lines (status, headers, chunk sizes, trailers) are gathered a byte at a
 * time into r->line, so a line may arrive split anywhere; body bytes are
 * never copied, only pointed at.  Limits are checked as bytes arrive, so a
 * device that sends an endless header fails at the limit instead of
 * making us wait or grow.
 */
#include "http.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Interim (1xx) answers accepted before the final one. */
#define HTTP_MAX_INTERIM 8

static int fail(struct http_response *r, int err, const char *why)
{
	r->state = HTTP_ERROR;
	r->why = why;
	/* Remember which error it was: later calls fail the same way. */
	r->status = err == -EMSGSIZE ? -2 : -1;
	return err;
}

static int failed(const struct http_response *r)
{
	return r->status == -2 ? -EMSGSIZE : -EBADMSG;
}

void http_response_init(struct http_response *r, bool head)
{
	memset(r, 0, sizeof(*r));
	r->state = HTTP_STATUS_LINE;
	r->head = head;
	r->content_length = -1;
	r->keep_alive = true;
}

/* Status, header and trailer lines count against the header limits. */
static bool is_header_state(enum http_state s)
{
	return s == HTTP_STATUS_LINE || s == HTTP_HEADER_LINE || s == HTTP_TRAILER_LINE;
}

/*
 * Gathers one CRLF-terminated line into r->line.  Returns 1 when the line
 * is complete (NUL-terminated, CRLF dropped), 0 when the input ran out
 * first, or an error.
 */
static int take_line(struct http_response *r, const uint8_t **in, size_t *len)
{
	bool counted = is_header_state(r->state);

	while (*len > 0) {
		uint8_t c = **in;

		(*in)++;
		(*len)--;
		if (counted && ++r->header_bytes > HTTP_MAX_HEADER_BYTES)
			return fail(r, -EMSGSIZE, "headers longer than the limit");
		if (r->cr) {
			if (c != '\n')
				return fail(r, -EBADMSG, "CR not followed by LF");
			r->cr = false;
			r->line[r->line_len] = '\0';
			return 1;
		}
		if (c == '\r') {
			r->cr = true;
			continue;
		}
		if (c == '\n')
			return fail(r, -EBADMSG, "bare LF line end");
		if (c == '\0')
			return fail(r, -EBADMSG, "NUL byte in a line");
		if (r->line_len == HTTP_MAX_LINE)
			return fail(r, -EMSGSIZE, "line longer than the limit");
		r->line[r->line_len++] = (char)c;
	}
	return 0;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* RFC 9110 tchar. */
static bool is_tchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
	       strchr("!#$%&'*+-.^_`|~", c);
}

/* Field values and reason phrases: VCHAR, SP, HTAB and obs-text; no other control bytes. */
static bool is_text(const char *s)
{
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

static int parse_status_line(struct http_response *r)
{
	const char *s = r->line;

	if (strncmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') || s[8] != ' ')
		return fail(r, -EBADMSG, "not an HTTP/1.x status line");
	if (!is_digit(s[9]) || !is_digit(s[10]) || !is_digit(s[11]) || s[9] < '1' || s[9] > '5')
		return fail(r, -EBADMSG, "bad status code");
	if (s[12] != '\0' && (s[12] != ' ' || !is_text(s + 13)))
		return fail(r, -EBADMSG, "bad reason phrase");
	r->minor = s[7] - '0';
	r->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
	/* HTTP/1.0 closes unless told otherwise; over USB that changes nothing but is recorded. */
	r->keep_alive = r->minor == 1;
	return 0;
}

static int parse_content_length(struct http_response *r, const char *v)
{
	uint64_t n = 0;

	if (*v == '\0')
		return fail(r, -EBADMSG, "empty Content-Length");
	for (const char *p = v; *p != '\0'; p++) {
		if (!is_digit(*p))
			return fail(r, -EBADMSG, "Content-Length is not a number");
		n = n * 10 + (uint64_t)(*p - '0');
		if (n > HTTP_MAX_CONTENT_LENGTH)
			return fail(r, -EMSGSIZE, "Content-Length over the limit");
	}
	if (r->content_length >= 0 && (uint64_t)r->content_length != n)
		return fail(r, -EBADMSG, "conflicting Content-Length headers");
	r->content_length = (int64_t)n;
	return 0;
}

/* Connection: a comma-separated token list. */
static void parse_connection(struct http_response *r, const char *v)
{
	char tok[32];

	while (*v != '\0') {
		size_t n = strcspn(v, ",");
		const char *p = v;
		size_t m = n;
		while (m > 0 && (*p == ' ' || *p == '\t'))
			p++, m--;
		while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t'))
			m--;
		if (m < sizeof(tok)) {
			memcpy(tok, p, m);
			tok[m] = '\0';
			if (strcasecmp(tok, "close") == 0)
				r->keep_alive = false;
			else if (strcasecmp(tok, "keep-alive") == 0)
				r->keep_alive = true;
		}
		v += n;
		if (*v == ',')
			v++;
	}
}

static int keep_value(struct http_response *r, char *dst, size_t cap, const char *v, const char *what)
{
	size_t n = strlen(v);

	if (dst[0] != '\0')
		return fail(r, -EBADMSG, what);
	if (n >= cap)
		return fail(r, -EMSGSIZE, "header value longer than kept");
	memcpy(dst, v, n + 1);
	return 0;
}

/* One "name: value" line; `trailer`: after a chunked body, checked but ignored. */
static int parse_field(struct http_response *r, bool trailer)
{
	char *line = r->line, *colon = strchr(line, ':'), *v, *end;

	if (++r->nheaders > HTTP_MAX_HEADERS)
		return fail(r, -EMSGSIZE, "more header lines than the limit");
	if (line[0] == ' ' || line[0] == '\t')
		return fail(r, -EBADMSG, "obsolete header line folding");
	if (colon == NULL || colon == line)
		return fail(r, -EBADMSG, "header line without a name");
	for (char *p = line; p < colon; p++)
		if (!is_tchar(*p))
			return fail(r, -EBADMSG, "bad character in a header name");
	*colon = '\0';
	v = colon + 1;
	while (*v == ' ' || *v == '\t')
		v++;
	end = v + strlen(v);
	while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	if (!is_text(v))
		return fail(r, -EBADMSG, "control character in a header value");
	if (trailer)
		return 0;
	if (strcasecmp(line, "Content-Length") == 0)
		return parse_content_length(r, v);
	if (strcasecmp(line, "Transfer-Encoding") == 0) {
		if (r->chunked || strcasecmp(v, "chunked") != 0)
			return fail(r, -EBADMSG, "unsupported Transfer-Encoding");
		r->chunked = true;
	} else if (strcasecmp(line, "Connection") == 0) {
		parse_connection(r, v);
	} else if (strcasecmp(line, "Location") == 0) {
		return keep_value(r, r->location, sizeof(r->location), v, "more than one Location");
	} else if (strcasecmp(line, "Content-Type") == 0) {
		return keep_value(r, r->content_type, sizeof(r->content_type), v,
				  "more than one Content-Type");
	}
	return 0;
}

/* The blank line after the headers: where does the body end? */
static int end_of_headers(struct http_response *r)
{
	if (r->status < 200) {
		/* 101 would switch protocols: nothing a scanner should do. */
		if (r->status == 101 || r->chunked || r->content_length >= 0)
			return fail(r, -EBADMSG, "interim response with a body or a protocol switch");
		return 1;
	}
	if (r->chunked && r->content_length >= 0)
		return fail(r, -EBADMSG, "both Content-Length and chunked");
	if (r->head || r->status == 204 || r->status == 304) {
		r->state = HTTP_DONE;
	} else if (r->chunked) {
		r->state = HTTP_CHUNK_SIZE;
	} else if (r->content_length >= 0) {
		r->remaining = (uint64_t)r->content_length;
		r->state = r->remaining > 0 ? HTTP_BODY : HTTP_DONE;
	} else {
		/* The pipe never closes: a body must say where it ends. */
		return fail(r, -EBADMSG, "body without Content-Length or chunked encoding");
	}
	return 0;
}

static int parse_chunk_size(struct http_response *r)
{
	const char *p = r->line;
	uint64_t n = 0;
	unsigned digits = 0;

	if (!isxdigit((unsigned char)*p))
		return fail(r, -EBADMSG, "bad chunk size");
	for (; isxdigit((unsigned char)*p); p++) {
		unsigned d = is_digit(*p) ? (unsigned)(*p - '0') : (unsigned)((*p | 0x20) - 'a' + 10);
		if (n > 0 || d > 0)
			digits++;
		if (digits > 8)
			return fail(r, -EMSGSIZE, "chunk size over the limit");
		n = n * 16 + d;
	}
	if (n > HTTP_MAX_CHUNK)
		return fail(r, -EMSGSIZE, "chunk size over the limit");
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p != '\0' && (*p != ';' || !is_text(p)))
		return fail(r, -EBADMSG, "bad chunk size");
	r->remaining = n;
	r->state = n > 0 ? HTTP_CHUNK_DATA : HTTP_TRAILER_LINE;
	return 0;
}

/* Body bytes of a Content-Length body or a chunk: as many as are there. */
static int take_body(struct http_response *r, const uint8_t **in, size_t *len, struct http_span *body)
{
	size_t n = *len;

	if (n > r->remaining)
		n = (size_t)r->remaining;
	body->data = *in;
	body->len = n;
	*in += n;
	*len -= n;
	r->remaining -= n;
	r->body_bytes += n;
	if (r->remaining == 0)
		r->state = r->state == HTTP_BODY ? HTTP_DONE : HTTP_CHUNK_CRLF;
	return HTTP_EV_BODY;
}

int http_parse(struct http_response *r, const uint8_t **in, size_t *len, struct http_span *body)
{
	int rc;

	body->data = NULL;
	body->len = 0;
	for (;;) {
		switch (r->state) {
		case HTTP_ERROR:
			return failed(r);
		case HTTP_DONE:
			return HTTP_EV_DONE;
		case HTTP_BODY:
		case HTTP_CHUNK_DATA:
			if (*len == 0)
				return HTTP_EV_MORE;
			return take_body(r, in, len, body);
		default:
			break;
		}
		/* Every other state reads a line. */
		if ((rc = take_line(r, in, len)) <= 0)
			return rc < 0 ? rc : HTTP_EV_MORE;
		r->line_len = 0;
		switch (r->state) {
		case HTTP_STATUS_LINE:
			if ((rc = parse_status_line(r)) < 0)
				return rc;
			r->state = HTTP_HEADER_LINE;
			break;
		case HTTP_HEADER_LINE:
			if (r->line[0] != '\0') {
				if ((rc = parse_field(r, false)) < 0)
					return rc;
				break;
			}
			if ((rc = end_of_headers(r)) < 0)
				return rc;
			if (rc == 1) {
				/* An interim answer: the real one follows.  Limits go on counting. */
				if (++r->interim > HTTP_MAX_INTERIM)
					return fail(r, -EBADMSG, "too many interim responses");
				r->location[0] = r->content_type[0] = '\0';
				r->state = HTTP_STATUS_LINE;
				break;
			}
			return HTTP_EV_HEADERS;
		case HTTP_CHUNK_SIZE:
			if ((rc = parse_chunk_size(r)) < 0)
				return rc;
			break;
		case HTTP_CHUNK_CRLF:
			if (r->line[0] != '\0')
				return fail(r, -EBADMSG, "chunk longer than its size");
			r->state = HTTP_CHUNK_SIZE;
			break;
		case HTTP_TRAILER_LINE:
			if (r->line[0] == '\0') {
				r->state = HTTP_DONE;
				break;
			}
			if ((rc = parse_field(r, true)) < 0)
				return rc;
			break;
		default:
			return fail(r, -EBADMSG, "parser state lost");
		}
	}
}

int http_eof(struct http_response *r)
{
	if (r->state == HTTP_DONE)
		return 0;
	if (r->state == HTTP_ERROR)
		return failed(r);
	return fail(r, -EBADMSG, "response truncated");
}

/* Request-line parts: printable ASCII without spaces. */
static bool is_request_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

int http_format_request(char *buf, size_t cap, const char *method, const char *path, const char *host,
			const char *content_type, size_t body_len)
{
	int n;

	if (!is_request_token(method) || !is_request_token(path) || path[0] != '/' ||
	    !is_request_token(host) || (content_type != NULL && !is_text(content_type)))
		return -EINVAL;
	if (content_type != NULL)
		n = snprintf(buf, cap,
			     "%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
			     method, path, host, content_type, body_len);
	else
		n = snprintf(buf, cap, "%s %s HTTP/1.1\r\nHost: %s\r\n\r\n", method, path, host);
	if (n < 0 || (size_t)n >= cap)
		return -ENOSPC;
	return n;
}

int http_location_path(const char *location, char *path, size_t cap)
{
	const char *p = location;

	if (strncasecmp(p, "http://", 7) == 0 || strncasecmp(p, "https://", 8) == 0) {
		p = strstr(p, "//") + 2;
		p += strcspn(p, "/");
		if (*p == '\0')
			return -EINVAL;
	}
	if (p[0] != '/' || !is_request_token(p))
		return -EINVAL;
	if (strlen(p) >= cap)
		return -EINVAL;
	strcpy(path, p);
	return 0;
}
