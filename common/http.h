/*
 * A small, strict HTTP/1.1 client codec for IPP over USB, where the
 * "connection" is a bulk pipe pair that never closes: requests are
 * formatted here, responses are parsed from bytes fed in pieces of any
 * size (a USB transfer may end anywhere, even inside "\r\n").
 *
 * Strict means: CRLF line ends only, no obsolete line folding, header names
 * are tokens, values hold no control characters, one Content-Length (or
 * the same one repeated), Transfer-Encoding `chunked` only and never
 * together with Content-Length, and every limit below enforced.  Because
 * the pipe never closes, a response must say where it ends: a body with
 * neither Content-Length nor chunked encoding is an error (except where
 * HTTP says there is no body: 1xx, 204, 304, HEAD).  1xx interim answers
 * (100 Continue) are skipped.  Every malformed or oversized input is an
 * error code and a reason (http_response.why), never a crash: the parser
 * owns no memory and never reads past what it was given.
 */
#ifndef PLUGFS_HTTP_H
#define PLUGFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One status or header line, CRLF excluded. */
#define HTTP_MAX_LINE 2048
/* Header lines of one response (trailers of a chunked body included). */
#define HTTP_MAX_HEADERS 64
/* All header bytes of one response, CRLFs included. */
#define HTTP_MAX_HEADER_BYTES 16384
/* Largest chunk accepted: 16 MiB (chunk-size has at most 7 hex digits of value). */
#define HTTP_MAX_CHUNK (16u << 20)
/* Largest Content-Length accepted: 1 TiB. */
#define HTTP_MAX_CONTENT_LENGTH (1ull << 40)
/* Room for the kept header values, NUL included (longer ones are an error). */
#define HTTP_MAX_LOCATION     512
#define HTTP_MAX_CONTENT_TYPE 128

enum http_state {
	HTTP_STATUS_LINE,
	HTTP_HEADER_LINE,
	HTTP_BODY,	   /* Content-Length bytes */
	HTTP_CHUNK_SIZE,   /* the chunk-size line */
	HTTP_CHUNK_DATA,   /* the chunk's bytes */
	HTTP_CHUNK_CRLF,   /* the CRLF after them */
	HTTP_TRAILER_LINE, /* trailer fields after the last chunk */
	HTTP_DONE,
	HTTP_ERROR,
};

/* What one http_parse() call found. */
enum http_event {
	HTTP_EV_MORE = 0, /* every byte given was used; feed more */
	HTTP_EV_HEADERS,  /* the final response's headers are complete: status and fields are set */
	HTTP_EV_BODY,	  /* body bytes: the span points into the caller's input */
	HTTP_EV_DONE,	  /* the response is complete */
};

struct http_span {
	const uint8_t *data;
	size_t len;
};

struct http_response {
	/* Set at HTTP_EV_HEADERS. */
	int status;		/* 100..599 */
	int minor;		/* HTTP/1.minor */
	bool chunked;		/* Transfer-Encoding: chunked */
	bool keep_alive;	/* no Connection: close (1.1) or Connection: keep-alive (1.0) */
	int64_t content_length; /* -1: none */
	char location[HTTP_MAX_LOCATION];
	char content_type[HTTP_MAX_CONTENT_TYPE];

	/* Parser state. */
	enum http_state state;
	bool head; /* the request was HEAD: no body whatever the headers say */
	char line[HTTP_MAX_LINE + 1];
	size_t line_len;
	bool cr; /* the last byte of `line` so far was a CR */
	unsigned nheaders, interim;
	size_t header_bytes;
	uint64_t remaining; /* bytes left in the body or the chunk */
	uint64_t body_bytes;
	const char *why; /* HTTP_ERROR: what was wrong */
};

/* Ready to parse the response to a request (`head`: it was a HEAD). */
void http_response_init(struct http_response *r, bool head);

/*
 * Parses from *in (*len bytes), advancing both past what it used.  Returns
 * one event (enum http_event, >= 0) or a negative errno: -EBADMSG for
 * malformed input, -EMSGSIZE for input over a limit; r->why then says
 * what, and every later call fails the same way.  HTTP_EV_BODY fills
 * `body` with bytes from the input.  Bytes after HTTP_EV_DONE are not
 * used: they are the caller's problem (a device must not send them).
 */
int http_parse(struct http_response *r, const uint8_t **in, size_t *len, struct http_span *body);

/* The transport ended (the caller gives up waiting): 0 if the response was complete, else -EBADMSG. */
int http_eof(struct http_response *r);

/*
 * Formats a request head into buf: "METHOD PATH HTTP/1.1", Host, then
 * Content-Type and Content-Length when `content_type` is not NULL (a body
 * of body_len bytes follows, sent by the caller), and the blank line.
 * Returns its length, -EINVAL for a method, path or host that would break
 * the request line (empty, spaces, control characters), or -ENOSPC.
 */
int http_format_request(char *buf, size_t cap, const char *method, const char *path, const char *host,
			const char *content_type, size_t body_len);

/*
 * The path of a Location value: "/x" as it is, "http://host[:port]/x" ->
 * "/x".  0, or -EINVAL for anything else (relative references, bad
 * characters) or a path that does not fit.
 */
int http_location_path(const char *location, char *path, size_t cap);

#endif
