/*
 * The `ippusb` driver: IPP over USB (printer class 7/1/4) devices, whose
 * scanner is served through eSCL, HTTP/1.1 spoken over each 7/1/4
 * interface's bulk pair.  Printing over IPP is not served here.
 *
 *   capabilities  GET /eSCL/ScannerCapabilities: the XML as the device
 *                 sends it (also refreshes the capabilities settings are
 *                 checked against).
 *   status        GET /eSCL/ScannerStatus: idle, processing or stopped.
 *   settings      read: `key value` lines; write: lines of resolution N,
 *                 mode color|gray|bw, format jpeg|pdf|png, source
 *                 flatbed|adf, region X Y W H (1/300 inch).  One write is
 *                 applied whole or not at all: what the scanner cannot do
 *                 is EINVAL.
 *   scan          read: one document, streamed as it arrives, then EOF.
 *                 The first read (or poll) POSTs /eSCL/ScanJobs with the
 *                 settings and GETs the job's NextDocument.  With source
 *                 adf, each open gives the next page of the same job until
 *                 the feeder is empty: ENODATA.  Closing before EOF
 *                 cancels the job (DELETE).  One open scan at a time
 *                 (EBUSY).
 *
 * Connections.  A device offers several 7/1/4 interfaces (common/bind.h,
 * BIND_TAKES_SIBLINGS): the first is the function, the others are claimed
 * here, and each is one HTTP connection with one exchange at a time.
 * Exchanges queue and go to the first idle connection, so `cat status`
 * runs while a scan streams on another interface.  A connection whose
 * exchange failed half way (a malformed answer, a timeout) or that may
 * hold bytes of an answer meant for a previous driver process (at start)
 * is drained first: what arrives is thrown away until it has been quiet
 * for DRAIN_QUIET_MS.
 *
 * Deadlines.  The daemon's timeout= covers capabilities, status and
 * settings; below it, an exchange whose device stays silent for
 * EX_IDLE_MS fails by itself.  `scan` waits for the scanner without the
 * daemon's deadline (the lamp warms up, the head moves), but a scanner
 * silent for SCAN_IDLE_MS, or answering 503 (busy) for SCAN_BUSY_MS, fails
 * the scan: a dead device never hangs a reader.  Silence before an answer
 * is ETIMEDOUT; an answer cut short or malformed is EIO, with a log line.
 *
 * After a crash.  The new process asks ScannerStatus first and DELETEs
 * every job still Pending or Processing (eSCL's JobInfo/JobUri): the job
 * the dead process was reading is cancelled, and the next scan starts
 * clean.  Scans opened meanwhile wait for that.
 *
 * Try it: build/plugfs-emu --model escl -- sh -c '...' (README).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "driver.h"
#include "escl.h"
#include "http.h"
#include "util.h"

#define USB_DIR_IN 0x80
#define MAX_CONNS  8
#define HTTP_HOST  "localhost"
/* One bulk IN transfer asks for this much (whole packets). */
#define IN_XFER_LEN (512u * 1024)
/* Bodies gathered whole (capabilities, status, job answers). */
#define SMALL_BODY_MAX (256u * 1024)
/* Scanned bytes buffered ahead of the reader; beyond, the device waits. */
#define SCAN_BUF_MAX   (1u << 20)
#define EX_IDLE_MS     2000
#define SCAN_IDLE_MS   30000
#define SCAN_BUSY_MS   60000
#define SCAN_RETRY_MS  200
#define DRAIN_QUIET_MS 100
#define DRAIN_MAX_MS   10000
#define TEXT_MAX       (SMALL_BODY_MAX + 1)

struct ipp;
struct conn;
struct exchange;

enum conn_state { CONN_DRAIN, CONN_IDLE, CONN_BUSY, CONN_DEAD };

struct exchange {
	struct ipp *ipp;
	char method[8];
	char path[ESCL_MAX_URI + 16];
	char *body; /* request body (owned), or NULL */
	size_t body_len;
	unsigned idle_ms;
	/*
	 * Called at the response's headers: return true to stream the body
	 * through sink() (with room() for flow control) instead of gathering it.
	 */
	bool (*headers)(struct exchange *ex);
	void (*sink)(struct exchange *ex, const uint8_t *p, size_t n);
	bool (*room)(struct exchange *ex);
	/* The end: err 0 and resp/buf/len set, or a negative errno.  Not called once abandoned. */
	void (*done)(struct exchange *ex, int err);
	void *arg;
	struct http_response resp;
	bool stream;
	uint8_t *buf; /* gathered body */
	size_t len;
	bool abandoned;
	struct conn *conn;
	TAILQ_ENTRY(exchange) link;
};

TAILQ_HEAD(exchange_queue, exchange);

struct conn {
	struct ipp *ipp;
	uint8_t ifnum, ep_in, ep_out;
	size_t in_len;
	enum conn_state state;
	struct exchange *ex;
	struct drv_xfer *in_xfer, *out_xfer;
	struct drv_timer timer;
	bool timed_out; /* the timer cancelled the exchange's transfers */
	bool paused;	/* the streaming reader has no room: no IN transfer until it has */
	int fail;	/* the exchange failed: waiting for the transfers to come back */
	uint64_t drain_end_ms;
	size_t drained;
	bool parked; /* draining, stopped until the start-up recovery is done */
};

enum scan_state {
	SCAN_NEW,
	SCAN_WAIT,
	SCAN_POST,
	SCAN_FETCH,
	SCAN_RETRY,
	SCAN_STREAM,
	SCAN_EOF,
	SCAN_FAILED
};

struct scan {
	struct ipp *ipp;
	enum scan_state state;
	int error;
	uint8_t *buf;
	size_t off, len;
	uint64_t busy_until_ms; /* 503 answers are retried until then */
	struct drv_req_queue readers;
	struct exchange *ex; /* its POST or NextDocument in flight, whose arg is this scan */
};

struct ipp {
	struct drv_function *fn;
	unsigned nconns;
	struct conn conns[MAX_CONNS];
	struct exchange_queue queue;
	struct drv_file *scan_file;

	bool recovering;
	unsigned recover_pending;

	bool caps_valid, caps_fetching;
	struct escl_caps caps;
	struct escl_settings settings;
	struct drv_req_queue caps_waiters; /* settings reads and writes waiting for the capabilities */

	struct scan *scan;	/* the open scan handle's state, or NULL */
	char job[ESCL_MAX_URI]; /* path of the device's job we hold, "" if none */
	enum escl_source job_source;
	struct escl_settings job_settings; /* what it was started with */
	struct drv_timer retry;
};

/* Per handle of capabilities and status: the text read at offset 0. */
struct text_handle {
	struct exchange *ex; /* the fetch in flight */
	struct drv_req *req; /* the read waiting for it */
	char *text;
	size_t len;
};

static void conn_dispatch(struct ipp *ipp);
static void conn_drain(struct conn *c);
static void scan_continue(struct ipp *ipp);
static void scan_fail(struct scan *sc, int err);

/* ---- Exchanges ---- */

static struct exchange *ex_new(struct ipp *ipp, const char *method, const char *path,
			       void (*done)(struct exchange *ex, int err), void *arg)
{
	struct exchange *ex = calloc(1, sizeof(*ex));

	if (ex == NULL)
		return NULL;
	if (strlen(path) >= sizeof(ex->path)) {
		free(ex);
		return NULL;
	}
	ex->ipp = ipp;
	snprintf(ex->method, sizeof(ex->method), "%s", method);
	strcpy(ex->path, path);
	ex->idle_ms = EX_IDLE_MS;
	ex->done = done;
	ex->arg = arg;
	return ex;
}

static void ex_free(struct exchange *ex)
{
	free(ex->body);
	free(ex->buf);
	free(ex);
}

static void ex_queue(struct exchange *ex)
{
	TAILQ_INSERT_TAIL(&ex->ipp->queue, ex, link);
	conn_dispatch(ex->ipp);
}

/* The one who asked is gone: a queued exchange is dropped, a running one ends unseen. */
static void ex_abandon(struct exchange *ex)
{
	if (ex->conn == NULL) {
		TAILQ_REMOVE(&ex->ipp->queue, ex, link);
		ex_free(ex);
		return;
	}
	ex->abandoned = true;
	ex->arg = NULL;
	ex->idle_ms = EX_IDLE_MS;
}

/* An exchange whose answer nobody waits for (a DELETE): its outcome is logged. */
static void fire_and_forget_done(struct exchange *ex, int err)
{
	if (err < 0)
		drv_log(LOG_WARNING, "ippusb: %s %s: %s", ex->method, ex->path, strerror(-err));
	else if (ex->resp.status >= 300)
		drv_log(LOG_WARNING, "ippusb: %s %s: HTTP %d", ex->method, ex->path, ex->resp.status);
	else
		drv_log(LOG_INFO, "ippusb: %s %s: HTTP %d", ex->method, ex->path, ex->resp.status);
}

static void delete_job(struct ipp *ipp, const char *path)
{
	struct exchange *ex = ex_new(ipp, "DELETE", path, fire_and_forget_done, NULL);

	if (ex == NULL) {
		drv_log(LOG_ERR, "ippusb: cannot cancel job %s: out of memory", path);
		return;
	}
	ex_queue(ex);
}

/* ---- Connections ---- */

static void conn_in_done(struct drv_xfer *x);
static void conn_out_done(struct drv_xfer *x);

static int conn_submit_in(struct conn *c)
{
	struct drv_xfer *x = drv_xfer_new(c->in_len, conn_in_done, c);
	int r;

	if (x == NULL)
		return -ENOMEM;
	libusb_fill_bulk_transfer(x->t, c->ipp->fn->dev->usb, c->ep_in, x->t->buffer, (int)c->in_len, NULL,
				  NULL, 0);
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return r;
	}
	c->in_xfer = x;
	return 0;
}

static void conn_cancel_xfers(struct conn *c)
{
	if (c->in_xfer != NULL)
		drv_xfer_cancel(c->in_xfer);
	if (c->out_xfer != NULL)
		drv_xfer_cancel(c->out_xfer);
}

/* Ends the exchange: err 0 = the response is complete. */
static void conn_finish(struct conn *c, int err)
{
	struct exchange *ex = c->ex;

	c->ex = NULL;
	c->paused = false;
	drv_timer_disarm(&c->timer);
	if (!ex->abandoned && ex->done != NULL)
		ex->done(ex, err);
	ex_free(ex);
}

/* The exchange failed: stop its transfers, then drain the connection. */
static void conn_fail(struct conn *c, int err, const char *why)
{
	if (c->fail == 0)
		drv_log(LOG_WARNING, "ippusb: interface %u: %s %s: %s", c->ifnum, c->ex->method, c->ex->path,
			why);
	if (c->fail == 0)
		c->fail = err;
	conn_cancel_xfers(c);
	if (c->in_xfer != NULL || c->out_xfer != NULL)
		return;
	err = c->fail;
	c->fail = 0;
	conn_finish(c, err);
	conn_drain(c);
}

static void conn_go_idle(struct conn *c)
{
	c->state = CONN_IDLE;
	conn_dispatch(c->ipp);
}

static void conn_unpark_all(struct ipp *ipp);

static void conn_dead(struct conn *c, const char *why)
{
	drv_log(LOG_ERR, "ippusb: interface %u given up: %s", c->ifnum, why);
	c->state = CONN_DEAD;
	drv_timer_disarm(&c->timer);
	/* The parked ones waited for this one to serve the recovery: it will not. */
	conn_unpark_all(c->ipp);
	conn_dispatch(c->ipp);
}

/*
 * At start, a connection with stale bytes is the one a dead driver was
 * reading a page on.  It waits (the device waits with it) while another,
 * quiet connection asks ScannerStatus and cancels that job: a real scanner
 * then stops sending, and the job is cancelled rather than finished by
 * our draining.  With no other connection left to do that, it drains on.
 */
static bool conn_may_park(struct conn *c)
{
	struct ipp *ipp = c->ipp;

	if (!ipp->recovering)
		return false;
	for (unsigned i = 0; i < ipp->nconns; i++) {
		struct conn *o = &ipp->conns[i];
		if (o != c && o->state != CONN_DEAD && !o->parked)
			return true;
	}
	return false;
}

static void conn_unpark_all(struct ipp *ipp)
{
	for (unsigned i = 0; i < ipp->nconns; i++) {
		struct conn *c = &ipp->conns[i];
		int r;
		if (!c->parked)
			continue;
		c->parked = false;
		c->drain_end_ms = now_ms() + DRAIN_MAX_MS;
		if ((r = conn_submit_in(c)) < 0) {
			conn_dead(c, strerror(-r));
			continue;
		}
		drv_timer_arm(&c->timer, DRAIN_QUIET_MS);
	}
}

static void conn_drain(struct conn *c)
{
	int r;

	c->state = CONN_DRAIN;
	c->drain_end_ms = now_ms() + DRAIN_MAX_MS;
	c->drained = 0;
	if ((r = conn_submit_in(c)) < 0)
		return conn_dead(c, strerror(-r));
	drv_timer_arm(&c->timer, DRAIN_QUIET_MS);
}

static void drain_in_done(struct conn *c, struct drv_xfer *x, int r)
{
	size_t got = (size_t)x->t->actual_length;

	drv_xfer_free(x);
	if (got > 0) {
		c->drained += got;
		if (now_ms() > c->drain_end_ms)
			return conn_dead(c, "the device keeps sending an answer nobody asked for");
		if (conn_may_park(c)) {
			c->parked = true;
			drv_timer_disarm(&c->timer);
			return;
		}
		if ((r = conn_submit_in(c)) < 0)
			return conn_dead(c, strerror(-r));
		drv_timer_arm(&c->timer, DRAIN_QUIET_MS);
		return;
	}
	if (r == -EINTR) {
		/* Quiet for DRAIN_QUIET_MS: in step again. */
		if (c->drained > 0)
			drv_log(LOG_INFO, "ippusb: interface %u: %zu stale bytes thrown away", c->ifnum,
				c->drained);
		return conn_go_idle(c);
	}
	if (r == 0) {
		/* A zero-length packet: nothing, but the device is talking. */
		if ((r = conn_submit_in(c)) < 0)
			return conn_dead(c, strerror(-r));
		return;
	}
	conn_dead(c, strerror(-r));
}

static void conn_timer_fire(struct drv_timer *t)
{
	struct conn *c = t->arg;

	if (c->state == CONN_DRAIN || c->ex == NULL) {
		if (c->in_xfer != NULL)
			drv_xfer_cancel(c->in_xfer);
		return;
	}
	c->timed_out = true;
	conn_fail(c, c->ex->resp.state == HTTP_STATUS_LINE && c->ex->resp.line_len == 0 ? -ETIMEDOUT : -EIO,
		  c->ex->resp.state == HTTP_STATUS_LINE && c->ex->resp.line_len == 0
		      ? "no answer"
		      : "the answer stopped before its end");
}

/* Body bytes of the exchange's response. */
static int conn_body(struct conn *c, const struct http_span *b)
{
	struct exchange *ex = c->ex;

	if (ex->stream) {
		if (!ex->abandoned)
			ex->sink(ex, b->data, b->len);
		return 0;
	}
	if (ex->len + b->len > SMALL_BODY_MAX)
		return -EMSGSIZE;
	uint8_t *nb = realloc(ex->buf, ex->len + b->len + 1);
	if (nb == NULL)
		return -ENOMEM;
	ex->buf = nb;
	memcpy(ex->buf + ex->len, b->data, b->len);
	ex->len += b->len;
	ex->buf[ex->len] = '\0';
	return 0;
}

/* Feeds what arrived to the parser; 1: the response is complete, 0: more to come, <0 failed. */
static int conn_feed(struct conn *c, const uint8_t *p, size_t n)
{
	struct exchange *ex = c->ex;
	struct http_span body;
	int ev, r;

	for (;;) {
		ev = http_parse(&ex->resp, &p, &n, &body);
		if (ev < 0) {
			conn_fail(c, -EIO, ex->resp.why);
			return ev;
		}
		if (ev == HTTP_EV_HEADERS) {
			ex->stream = !ex->abandoned && ex->headers != NULL && ex->headers(ex);
		} else if (ev == HTTP_EV_BODY) {
			if ((r = conn_body(c, &body)) < 0) {
				conn_fail(c, -EIO,
					  r == -EMSGSIZE ? "answer body over the limit" : strerror(-r));
				return r;
			}
		} else if (ev == HTTP_EV_DONE) {
			if (n > 0) {
				conn_fail(c, -EIO, "bytes after the end of the answer");
				return -EIO;
			}
			return 1;
		} else {
			return 0;
		}
	}
}

static bool conn_has_room(struct conn *c)
{
	struct exchange *ex = c->ex;

	return !ex->stream || ex->abandoned || ex->room == NULL || ex->room(ex);
}

static void conn_in_done(struct drv_xfer *x)
{
	struct conn *c = x->arg;
	int r = drv_xfer_errno(x->t->status);
	int done;

	c->in_xfer = NULL;
	if (c->state == CONN_DRAIN)
		return drain_in_done(c, x, r);
	if (c->fail != 0 || c->ex == NULL) {
		drv_xfer_free(x);
		if (c->ex != NULL)
			conn_fail(c, c->fail, "");
		return;
	}
	if (r < 0 && r != -EINTR) {
		drv_xfer_free(x);
		return conn_fail(c, r, strerror(-r));
	}
	done = conn_feed(c, x->t->buffer, (size_t)x->t->actual_length);
	drv_xfer_free(x);
	if (done < 0)
		return;
	if (done == 1) {
		if (c->out_xfer != NULL)
			return; /* the request is still going out: finish when it did */
		conn_finish(c, 0);
		return conn_go_idle(c);
	}
	if (r == -EINTR)
		return conn_fail(c, -EINTR, "cancelled");
	if (!conn_has_room(c)) {
		c->paused = true;
		drv_timer_disarm(&c->timer);
		return;
	}
	if ((r = conn_submit_in(c)) < 0)
		return conn_fail(c, r, strerror(-r));
	drv_timer_arm(&c->timer, c->ex->idle_ms);
}

static void conn_out_done(struct drv_xfer *x)
{
	struct conn *c = x->arg;
	int r = drv_xfer_errno(x->t->status);

	c->out_xfer = NULL;
	drv_xfer_free(x);
	if (c->fail != 0)
		return conn_fail(c, c->fail, "");
	if (r < 0)
		return conn_fail(c, r, r == -EINTR ? "request not taken" : strerror(-r));
	/* The answer came complete before the request was seen sent. */
	if (c->ex->resp.state == HTTP_DONE && c->in_xfer == NULL) {
		conn_finish(c, 0);
		conn_go_idle(c);
	}
}

/* The streaming reader made room: fetch on. */
static void conn_resume(struct conn *c)
{
	int r;

	if (!c->paused || c->ex == NULL || !conn_has_room(c))
		return;
	c->paused = false;
	if ((r = conn_submit_in(c)) < 0)
		return conn_fail(c, r, strerror(-r));
	drv_timer_arm(&c->timer, c->ex->idle_ms);
}

static int conn_start(struct conn *c, struct exchange *ex)
{
	char head[ESCL_MAX_URI + 256];
	int n = http_format_request(head, sizeof(head), ex->method, ex->path, HTTP_HOST,
				    ex->body != NULL ? "text/xml" : NULL, ex->body_len);
	struct drv_xfer *x;
	int r;

	if (n < 0)
		return n;
	if ((x = drv_xfer_new((size_t)n + ex->body_len, conn_out_done, c)) == NULL)
		return -ENOMEM;
	memcpy(x->t->buffer, head, (size_t)n);
	if (ex->body_len > 0)
		memcpy(x->t->buffer + n, ex->body, ex->body_len);
	libusb_fill_bulk_transfer(x->t, c->ipp->fn->dev->usb, c->ep_out, x->t->buffer, n + (int)ex->body_len,
				  NULL, NULL, 0);
	if ((r = drv_xfer_submit(x)) < 0) {
		drv_xfer_free(x);
		return r;
	}
	c->out_xfer = x;
	http_response_init(&ex->resp, strcmp(ex->method, "HEAD") == 0);
	ex->conn = c;
	c->ex = ex;
	c->state = CONN_BUSY;
	c->timed_out = false;
	if ((r = conn_submit_in(c)) < 0) {
		conn_fail(c, r, strerror(-r));
		return 0;
	}
	drv_timer_arm(&c->timer, ex->idle_ms);
	return 0;
}

/* Hands queued exchanges to idle connections; fails them all when every connection is dead. */
static void conn_dispatch(struct ipp *ipp)
{
	struct exchange *ex;
	bool alive = false;

	for (unsigned i = 0; i < ipp->nconns; i++) {
		struct conn *c = &ipp->conns[i];
		alive |= c->state != CONN_DEAD;
		while (c->state == CONN_IDLE && (ex = TAILQ_FIRST(&ipp->queue)) != NULL) {
			TAILQ_REMOVE(&ipp->queue, ex, link);
			int r = conn_start(c, ex);
			if (r < 0) {
				drv_log(LOG_WARNING, "ippusb: %s %s: %s", ex->method, ex->path, strerror(-r));
				if (!ex->abandoned && ex->done != NULL)
					ex->done(ex, r);
				ex_free(ex);
			}
		}
	}
	while (!alive && (ex = TAILQ_FIRST(&ipp->queue)) != NULL) {
		TAILQ_REMOVE(&ipp->queue, ex, link);
		if (ex->done != NULL)
			ex->done(ex, -EIO);
		ex_free(ex);
	}
}

/* ---- Capabilities ---- */

static void caps_waiters_run(struct ipp *ipp, int err);

/* A capabilities answer: keep what it says if it reads well. */
static int caps_take(struct ipp *ipp, struct exchange *ex)
{
	struct escl_caps caps;
	const char *why = "";

	if (ex->resp.status != 200) {
		drv_log(LOG_WARNING, "ippusb: ScannerCapabilities: HTTP %d", ex->resp.status);
		return -EIO;
	}
	if (escl_parse_caps((const char *)ex->buf, ex->len, &caps, &why) < 0) {
		drv_log(LOG_WARNING, "ippusb: ScannerCapabilities unreadable: %s", why);
		return -EIO;
	}
	ipp->caps = caps;
	if (!ipp->caps_valid || escl_settings_check(&ipp->caps, &ipp->settings) < 0) {
		if (escl_settings_default(&ipp->caps, &ipp->settings) < 0) {
			drv_log(LOG_WARNING, "ippusb: no usable default settings in the capabilities");
			return -EIO;
		}
	}
	ipp->caps_valid = true;
	return 0;
}

static void caps_fetch_done(struct exchange *ex, int err)
{
	struct ipp *ipp = ex->ipp;

	ipp->caps_fetching = false;
	if (err == 0)
		err = caps_take(ipp, ex);
	caps_waiters_run(ipp, err);
	/* Without capabilities a waiting scan cannot start: it fails rather than asking forever. */
	if (err < 0 && ipp->scan != NULL && ipp->scan->state == SCAN_WAIT)
		return scan_fail(ipp->scan, err == -ETIMEDOUT ? err : -EIO);
	scan_continue(ipp);
}

static void caps_fetch(struct ipp *ipp)
{
	struct exchange *ex;

	if (ipp->caps_fetching)
		return;
	if ((ex = ex_new(ipp, "GET", "/eSCL/ScannerCapabilities", caps_fetch_done, NULL)) == NULL) {
		caps_waiters_run(ipp, -ENOMEM);
		return;
	}
	ipp->caps_fetching = true;
	ex_queue(ex);
}

/* ---- capabilities and status files ---- */

static int text_open(struct drv_handle *h, uint32_t flags)
{
	(void)flags;
	h->priv = calloc(1, sizeof(struct text_handle));
	return h->priv != NULL ? 0 : -ENOMEM;
}

static void text_release(struct drv_handle *h)
{
	struct text_handle *th = h->priv;

	if (th->ex != NULL)
		ex_abandon(th->ex);
	free(th->text);
	free(th);
}

static void text_done(struct exchange *ex, int err)
{
	struct drv_handle *h = ex->arg;
	struct text_handle *th = h->priv;
	struct drv_req *req = th->req;
	struct ipp *ipp = ex->ipp;
	bool is_status = strcmp(h->file->name, "status") == 0;
	char line[32];

	th->ex = NULL;
	th->req = NULL;
	if (err == 0 && is_status) {
		struct escl_status st;
		const char *why = "";
		if (ex->resp.status != 200) {
			drv_log(LOG_WARNING, "ippusb: ScannerStatus: HTTP %d", ex->resp.status);
			err = -EIO;
		} else if (escl_parse_status((const char *)ex->buf, ex->len, &st, &why) < 0) {
			drv_log(LOG_WARNING, "ippusb: ScannerStatus unreadable: %s", why);
			err = -EIO;
		} else {
			snprintf(line, sizeof(line), "%s\n", escl_state_name(st.state));
			th->text = strdup(line);
			th->len = strlen(line);
		}
	} else if (err == 0) {
		if ((err = caps_take(ipp, ex)) == 0) {
			th->text = (char *)ex->buf;
			th->len = ex->len;
			ex->buf = NULL;
		}
		caps_waiters_run(ipp, err);
		if (err == 0)
			scan_continue(ipp);
	}
	if (err == 0 && th->text == NULL)
		err = -ENOMEM;
	if (err < 0)
		return drv_reply(req, err == -ETIMEDOUT ? err : -EIO, NULL, 0);
	drv_reply_slice(req, th->text, th->len);
}

static void text_cancel(struct drv_req *req)
{
	struct text_handle *th = req->h->priv;

	ex_abandon(th->ex);
	th->ex = NULL;
	th->req = NULL;
	drv_reply(req, -EINTR, NULL, 0);
}

static void text_read(struct drv_req *req)
{
	struct text_handle *th = req->h->priv;
	struct ipp *ipp = req->h->file->priv;
	bool is_status = strcmp(req->h->file->name, "status") == 0;

	/* A read further on continues the answer read at offset 0, so `cat` sees one document. */
	if (th->text != NULL && req->offset > 0)
		return drv_reply_slice(req, th->text, th->len);
	if (th->req != NULL)
		return drv_reply(req, -EBUSY, NULL, 0);
	free(th->text);
	th->text = NULL;
	th->ex = ex_new(ipp, "GET", is_status ? "/eSCL/ScannerStatus" : "/eSCL/ScannerCapabilities",
			text_done, req->h);
	if (th->ex == NULL)
		return drv_reply(req, -ENOMEM, NULL, 0);
	th->req = req;
	req->cancel = text_cancel;
	ex_queue(th->ex);
}

static const struct drv_file_ops text_ops = {
    .open = text_open,
    .read = text_read,
    .release = text_release,
};

/* ---- settings ---- */

/* A settings read, served once the capabilities are known. */
static void settings_serve(struct drv_req *req, int err)
{
	struct ipp *ipp = req->h->file->priv;
	char text[256];
	int n;

	if (err < 0)
		return drv_reply(req, err == -ETIMEDOUT ? err : -EIO, NULL, 0);
	n = escl_settings_format(&ipp->settings, text, sizeof(text));
	if (n < 0)
		return drv_reply(req, -EIO, NULL, 0);
	drv_reply_slice(req, text, (size_t)n);
}

static void settings_cancel(struct drv_req *req)
{
	struct ipp *ipp = req->h->file->priv;

	TAILQ_REMOVE(&ipp->caps_waiters, req, wait);
	drv_reply(req, -EINTR, NULL, 0);
}

struct settings_handle {
	char pending[1024]; /* a write waiting for the capabilities */
	size_t pending_len;
};

static int settings_open(struct drv_handle *h, uint32_t flags)
{
	(void)flags;
	h->priv = calloc(1, sizeof(struct settings_handle));
	return h->priv != NULL ? 0 : -ENOMEM;
}

static void settings_release(struct drv_handle *h)
{
	free(h->priv);
}

static void settings_apply(struct drv_req *req, int err)
{
	struct ipp *ipp = req->h->file->priv;
	struct settings_handle *sh = req->h->priv;

	if (err < 0)
		return drv_reply(req, err == -ETIMEDOUT ? err : -EIO, NULL, 0);
	err = escl_settings_apply(&ipp->caps, &ipp->settings, sh->pending, sh->pending_len);
	drv_reply(req, err < 0 ? err : (int32_t)sh->pending_len, NULL, 0);
}

static void caps_waiters_run(struct ipp *ipp, int err)
{
	struct drv_req *req;

	while ((req = TAILQ_FIRST(&ipp->caps_waiters)) != NULL) {
		TAILQ_REMOVE(&ipp->caps_waiters, req, wait);
		if (req->type == PROTO_READ)
			settings_serve(req, err);
		else
			settings_apply(req, err);
	}
}

static void settings_wait_caps(struct ipp *ipp, struct drv_req *req)
{
	req->cancel = settings_cancel;
	TAILQ_INSERT_TAIL(&ipp->caps_waiters, req, wait);
	caps_fetch(ipp);
}

static void settings_read(struct drv_req *req)
{
	struct ipp *ipp = req->h->file->priv;

	if (!ipp->caps_valid)
		return settings_wait_caps(ipp, req);
	settings_serve(req, 0);
}

static void settings_write(struct drv_req *req, const uint8_t *data, size_t len)
{
	struct ipp *ipp = req->h->file->priv;
	struct settings_handle *sh = req->h->priv;

	if (len >= sizeof(sh->pending) || req->offset != 0)
		return drv_reply(req, -EINVAL, NULL, 0);
	memcpy(sh->pending, data, len);
	sh->pending_len = len;
	if (!ipp->caps_valid)
		return settings_wait_caps(ipp, req);
	settings_apply(req, 0);
}

static const struct drv_file_ops settings_ops = {
    .open = settings_open,
    .read = settings_read,
    .write = settings_write,
    .release = settings_release,
};

/* ---- scan ---- */

static size_t scan_buffered(const struct scan *sc)
{
	return sc->len - sc->off;
}

/* Answers waiting reads from what is buffered, or with EOF / the error. */
static void scan_serve(struct scan *sc)
{
	struct drv_req *req;

	while ((req = TAILQ_FIRST(&sc->readers)) != NULL) {
		size_t n = scan_buffered(sc);
		if (n == 0 && sc->state != SCAN_EOF && sc->state != SCAN_FAILED)
			break;
		TAILQ_REMOVE(&sc->readers, req, wait);
		if (n == 0) {
			drv_reply(req, sc->state == SCAN_EOF ? 0 : sc->error, NULL, 0);
			continue;
		}
		if (n > req->size)
			n = req->size;
		drv_reply(req, (int32_t)n, sc->buf + sc->off, n);
		sc->off += n;
	}
	if (sc->off == sc->len)
		sc->off = sc->len = 0;
	/* Room again: the connection streaming the document may fetch on. */
	for (unsigned i = 0; i < sc->ipp->nconns; i++)
		if (sc->ipp->conns[i].paused)
			conn_resume(&sc->ipp->conns[i]);
	drv_file_changed(sc->ipp->scan_file);
}

static void scan_fail(struct scan *sc, int err)
{
	sc->state = SCAN_FAILED;
	sc->error = err;
	scan_serve(sc);
}

static void scan_sink(struct exchange *ex, const uint8_t *p, size_t n)
{
	struct scan *sc = ex->arg;

	if (sc == NULL || n == 0 || sc->state == SCAN_FAILED)
		return; /* closed early, or failed: the rest of the document goes nowhere */
	if (sc->off > 0 && sc->len + n > SCAN_BUF_MAX + IN_XFER_LEN) {
		memmove(sc->buf, sc->buf + sc->off, sc->len - sc->off);
		sc->len -= sc->off;
		sc->off = 0;
	}
	/* room() keeps the buffer under SCAN_BUF_MAX before each transfer, so this never fails. */
	if (sc->len + n > SCAN_BUF_MAX + IN_XFER_LEN)
		return scan_fail(sc, -EIO);
	memcpy(sc->buf + sc->len, p, n);
	sc->len += n;
	sc->state = SCAN_STREAM;
	scan_serve(sc);
}

static bool scan_room(struct exchange *ex)
{
	struct scan *sc = ex->arg;

	return sc == NULL || scan_buffered(sc) + IN_XFER_LEN <= SCAN_BUF_MAX;
}

static bool scan_headers(struct exchange *ex)
{
	return ex->resp.status == 200;
}

static void scan_fetch(struct ipp *ipp);

static void scan_retry_fire(struct drv_timer *t)
{
	struct ipp *ipp = t->arg;

	if (ipp->scan != NULL && ipp->scan->state == SCAN_RETRY)
		scan_fetch(ipp);
}

static void next_document_done(struct exchange *ex, int err)
{
	struct ipp *ipp = ex->ipp;
	struct scan *sc = ex->arg;
	int status = ex->resp.status;

	/* Its scan was closed, and the job dealt with then. */
	if (sc == NULL)
		return;
	sc->ex = NULL;
	/* It failed on its own (its buffer) and cancelled nothing: the job is cancelled now. */
	if (sc->state == SCAN_FAILED) {
		if (ipp->job[0] != '\0')
			delete_job(ipp, ipp->job);
		ipp->job[0] = '\0';
		return;
	}
	if (err < 0) {
		/* Where the job stands is unknown: cancel it. */
		if (ipp->job[0] != '\0')
			delete_job(ipp, ipp->job);
		ipp->job[0] = '\0';
		if (sc != NULL)
			scan_fail(sc, err == -ETIMEDOUT ? err : -EIO);
		return;
	}
	if (status == 200) {
		/* A flatbed job is one document; a feeder job goes on with the next open. */
		if (ipp->job_source == ESCL_SOURCE_FLATBED)
			ipp->job[0] = '\0';
		if (sc != NULL) {
			sc->state = SCAN_EOF;
			scan_serve(sc);
		}
		return;
	}
	if (status == 503 && sc != NULL && now_ms() < sc->busy_until_ms) {
		/* Not ready yet (warming up, the page is still being scanned): ask again shortly. */
		sc->state = SCAN_RETRY;
		drv_timer_arm(&ipp->retry, SCAN_RETRY_MS);
		return;
	}
	if (status == 404) {
		/* The job has no more documents: the feeder is empty. */
		enum escl_source src = ipp->job_source;
		ipp->job[0] = '\0';
		if (sc != NULL) {
			if (src != ESCL_SOURCE_ADF)
				drv_log(LOG_WARNING, "ippusb: NextDocument of a flatbed job: HTTP 404");
			scan_fail(sc, src == ESCL_SOURCE_ADF ? -ENODATA : -EIO);
		}
		return;
	}
	drv_log(LOG_WARNING, "ippusb: %s: HTTP %d", ex->path, status);
	if (ipp->job[0] != '\0')
		delete_job(ipp, ipp->job);
	ipp->job[0] = '\0';
	if (sc != NULL)
		scan_fail(sc, status == 503 ? -EBUSY : -EIO);
}

static void scan_fetch(struct ipp *ipp)
{
	char path[ESCL_MAX_URI + 16];
	struct exchange *ex;

	snprintf(path, sizeof(path), "%s/NextDocument", ipp->job);
	if ((ex = ex_new(ipp, "GET", path, next_document_done, ipp->scan)) == NULL)
		return scan_fail(ipp->scan, -ENOMEM);
	ipp->scan->ex = ex;
	ex->idle_ms = SCAN_IDLE_MS;
	ex->headers = scan_headers;
	ex->sink = scan_sink;
	ex->room = scan_room;
	ipp->scan->state = SCAN_FETCH;
	ex_queue(ex);
}

static void post_done(struct exchange *ex, int err)
{
	struct ipp *ipp = ex->ipp;
	struct scan *sc = ex->arg;
	const struct http_response *r = &ex->resp;
	char path[ESCL_MAX_URI];

	if (sc != NULL)
		sc->ex = NULL;
	if (err < 0) {
		if (sc != NULL)
			scan_fail(sc, err == -ETIMEDOUT ? err : -EIO);
		return;
	}
	if (r->status == 201 && http_location_path(r->location, path, sizeof(path)) == 0) {
		/* eSCL 2.x: the job's URI; a job nobody reads any more is cancelled at once. */
		if (sc == NULL) {
			delete_job(ipp, path);
			return;
		}
		strcpy(ipp->job, path);
		ipp->job_source = ipp->settings.source;
		ipp->job_settings = ipp->settings;
		drv_log(LOG_INFO, "ippusb: job %s", path);
		return scan_fetch(ipp);
	}
	if (sc == NULL)
		return;
	if (r->status == 201) {
		drv_log(LOG_WARNING, "ippusb: ScanJobs: 201 with a bad Location '%s'", r->location);
		return scan_fail(sc, -EIO);
	}
	/* 409 Conflict: the feeder is empty; 503: the scanner is busy. */
	if (r->status == 409 && ipp->settings.source == ESCL_SOURCE_ADF)
		return scan_fail(sc, -ENODATA);
	if (r->status == 409 || r->status == 503)
		return scan_fail(sc, -EBUSY);
	drv_log(LOG_WARNING, "ippusb: ScanJobs: HTTP %d", r->status);
	scan_fail(sc, r->status == 400 ? -EINVAL : -EIO);
}

static void scan_post(struct ipp *ipp)
{
	char body[4096];
	int n = escl_scan_request(&ipp->settings, body, sizeof(body));
	struct exchange *ex;

	if (n < 0)
		return scan_fail(ipp->scan, -EIO);
	if ((ex = ex_new(ipp, "POST", "/eSCL/ScanJobs", post_done, ipp->scan)) == NULL ||
	    (ex->body = strdup(body)) == NULL) {
		if (ex != NULL)
			ex_free(ex);
		return scan_fail(ipp->scan, -ENOMEM);
	}
	ex->body_len = (size_t)n;
	ipp->scan->ex = ex;
	ipp->scan->state = SCAN_POST;
	ex_queue(ex);
}

/* Moves a waiting scan on, once nothing stands in its way any more. */
static void scan_continue(struct ipp *ipp)
{
	struct scan *sc = ipp->scan;

	if (sc == NULL || sc->state != SCAN_WAIT || ipp->recovering)
		return;
	if (!ipp->caps_valid) {
		if (!ipp->caps_fetching)
			caps_fetch(ipp);
		return;
	}
	sc->busy_until_ms = now_ms() + SCAN_BUSY_MS;
	/* The next page of the feeder job we hold, unless the settings changed since it started. */
	if (ipp->job[0] != '\0' && ipp->job_source == ESCL_SOURCE_ADF &&
	    memcmp(&ipp->job_settings, &ipp->settings, sizeof(ipp->settings)) == 0)
		return scan_fetch(ipp);
	if (ipp->job[0] != '\0') {
		delete_job(ipp, ipp->job);
		ipp->job[0] = '\0';
	}
	scan_post(ipp);
}

static void scan_start(struct scan *sc)
{
	if (sc->state != SCAN_NEW)
		return;
	sc->state = SCAN_WAIT;
	scan_continue(sc->ipp);
}

static int scan_open(struct drv_handle *h, uint32_t flags)
{
	struct ipp *ipp = h->file->priv;
	struct scan *sc;

	(void)flags;
	if (ipp->scan != NULL)
		return -EBUSY;
	if ((sc = calloc(1, sizeof(*sc))) == NULL || (sc->buf = malloc(SCAN_BUF_MAX + IN_XFER_LEN)) == NULL) {
		free(sc);
		return -ENOMEM;
	}
	sc->ipp = ipp;
	TAILQ_INIT(&sc->readers);
	h->priv = sc;
	ipp->scan = sc;
	return 0;
}

static void scan_release(struct drv_handle *h)
{
	struct scan *sc = h->priv;
	struct ipp *ipp = sc->ipp;

	ipp->scan = NULL;
	drv_timer_disarm(&ipp->retry);
	/* Closed before the end of a document it asked for: the job is cancelled. */
	if ((sc->state == SCAN_FETCH || sc->state == SCAN_RETRY || sc->state == SCAN_STREAM) &&
	    ipp->job[0] != '\0') {
		drv_log(LOG_INFO, "ippusb: scan closed early: cancelling %s", ipp->job);
		delete_job(ipp, ipp->job);
		ipp->job[0] = '\0';
	}
	/*
	 * Its exchange runs on without it: a POST's job is then cancelled, a
	 * document still streaming is read to its end and thrown away.
	 */
	if (sc->ex != NULL) {
		sc->ex->arg = NULL;
		sc->ex->idle_ms = EX_IDLE_MS;
		if (sc->ex->conn != NULL)
			conn_resume(sc->ex->conn);
	}
	free(sc->buf);
	free(sc);
}

static void scan_cancel(struct drv_req *req)
{
	struct scan *sc = req->h->priv;

	/* A signal ends this read; the scan goes on for the next one. */
	TAILQ_REMOVE(&sc->readers, req, wait);
	drv_reply(req, -EINTR, NULL, 0);
}

static void scan_read(struct drv_req *req)
{
	struct scan *sc = req->h->priv;

	scan_start(sc);
	if (TAILQ_EMPTY(&sc->readers) &&
	    (scan_buffered(sc) > 0 || sc->state == SCAN_EOF || sc->state == SCAN_FAILED)) {
		TAILQ_INSERT_TAIL(&sc->readers, req, wait);
		return scan_serve(sc);
	}
	if (req->flags & PROTO_F_NONBLOCK)
		return drv_reply(req, -EAGAIN, NULL, 0);
	req->cancel = scan_cancel;
	TAILQ_INSERT_TAIL(&sc->readers, req, wait);
}

static unsigned scan_poll(struct drv_handle *h)
{
	struct scan *sc = h->priv;

	scan_start(sc);
	if (scan_buffered(sc) > 0 || sc->state == SCAN_EOF)
		return POLLIN;
	return sc->state == SCAN_FAILED ? POLLIN | POLLERR : 0;
}

static const struct drv_file_ops scan_ops = {
    .open = scan_open,
    .read = scan_read,
    .poll = scan_poll,
    .release = scan_release,
};

/* ---- Recovery after a crash ---- */

static void recover_end(struct ipp *ipp)
{
	ipp->recovering = false;
	conn_unpark_all(ipp);
	scan_continue(ipp);
}

static void recover_delete_done(struct exchange *ex, int err)
{
	struct ipp *ipp = ex->ipp;

	fire_and_forget_done(ex, err);
	if (--ipp->recover_pending == 0)
		recover_end(ipp);
}

static void recover_status_done(struct exchange *ex, int err)
{
	struct ipp *ipp = ex->ipp;
	struct escl_status st;
	const char *why = "";

	if (err == 0 && ex->resp.status == 200 &&
	    escl_parse_status((const char *)ex->buf, ex->len, &st, &why) == 0) {
		for (unsigned i = 0; i < st.njobs; i++) {
			char path[ESCL_MAX_URI];
			struct exchange *del;
			if (!st.jobs[i].processing)
				continue;
			if (http_location_path(st.jobs[i].uri, path, sizeof(path)) < 0) {
				drv_log(LOG_WARNING, "ippusb: job with a bad URI '%s' left alone",
					st.jobs[i].uri);
				continue;
			}
			if ((del = ex_new(ipp, "DELETE", path, recover_delete_done, NULL)) == NULL)
				continue;
			drv_log(LOG_NOTICE, "ippusb: cancelling job %s left by a previous driver", path);
			ipp->recover_pending++;
			ex_queue(del);
		}
	} else {
		drv_log(LOG_WARNING,
			"ippusb: ScannerStatus at start: %s; jobs left running are not cancelled",
			err < 0			 ? strerror(-err)
			: ex->resp.status != 200 ? "bad HTTP status"
						 : why);
	}
	if (ipp->recover_pending == 0)
		recover_end(ipp);
}

/* ---- Probe ---- */

/* The bulk pair of an IPP-USB interface; 0 or -ENOENT. */
static int conn_init(struct ipp *ipp, struct conn *c, uint8_t ifnum)
{
	const struct drv_device *dev = ipp->fn->dev;
	struct usbdesc_iface d;
	uint16_t packet = 0;

	if (usbdesc_find_alt(dev->desc, dev->desc_len, ifnum, 0, &d) < 0)
		return -ENOENT;
	memset(c, 0, sizeof(*c));
	for (unsigned i = 0; i < d.num_eps; i++) {
		const struct usbdesc_ep *e = &d.eps[i];
		if ((e->attributes & 3) != USB_XFER_BULK)
			continue;
		if ((e->address & USB_DIR_IN) && c->ep_in == 0) {
			c->ep_in = e->address;
			packet = e->max_packet;
		} else if (!(e->address & USB_DIR_IN) && c->ep_out == 0) {
			c->ep_out = e->address;
		}
	}
	if (c->ep_in == 0 || c->ep_out == 0)
		return -ENOENT;
	if (packet == 0 || packet > 1024)
		packet = 512;
	c->ipp = ipp;
	c->ifnum = ifnum;
	c->in_len = IN_XFER_LEN - IN_XFER_LEN % packet;
	c->timer.fire = conn_timer_fire;
	c->timer.arg = c;
	return 0;
}

static int probe_fail(struct drv_function *fn, int err)
{
	free(fn->priv);
	fn->priv = NULL;
	return err;
}

static int ippusb_probe(struct drv_function *fn)
{
	const struct usbdesc_device *info = &fn->dev->info;
	struct ipp *ipp = calloc(1, sizeof(*ipp));
	struct exchange *ex;

	if (ipp == NULL)
		return -ENOMEM;
	fn->priv = ipp;
	ipp->fn = fn;
	TAILQ_INIT(&ipp->queue);
	TAILQ_INIT(&ipp->caps_waiters);
	ipp->retry.fire = scan_retry_fire;
	ipp->retry.arg = ipp;
	if (conn_init(ipp, &ipp->conns[0], fn->ifnum) < 0) {
		drv_log(LOG_ERR, "ippusb: interface %u has no bulk pair", fn->ifnum);
		return probe_fail(fn, -ENOENT);
	}
	ipp->nconns = 1;
	/* The other 7/1/4 interfaces: more connections, if we may have them. */
	for (unsigned i = 0; i < info->num_ifaces && ipp->nconns < MAX_CONNS; i++) {
		const struct usbdesc_iface *d = &info->ifaces[i];
		int r;
		if (d->number == fn->ifnum || d->cls != 7 || d->subclass != 1 || d->protocol != 4)
			continue;
		if (conn_init(ipp, &ipp->conns[ipp->nconns], d->number) < 0)
			continue;
		if ((r = drv_claim_interface(fn, d->number)) < 0) {
			drv_log(LOG_WARNING, "ippusb: interface %u not used: %s", d->number, strerror(-r));
			continue;
		}
		ipp->nconns++;
	}
	ipp->scan_file =
	    drv_file_add(fn, "scan", 0444, PROTO_KIND_STREAM | PROTO_FILE_UNTIMED, &scan_ops, ipp);
	if (ipp->scan_file == NULL ||
	    drv_file_add(fn, "capabilities", 0444, PROTO_KIND_SMALL, &text_ops, ipp) == NULL ||
	    drv_file_add(fn, "status", 0444, PROTO_KIND_SMALL, &text_ops, ipp) == NULL ||
	    drv_file_add(fn, "settings", 0644, PROTO_KIND_SMALL, &settings_ops, ipp) == NULL)
		return probe_fail(fn, -ENOSPC);
	/*
	 * Nothing is sent before HELLO: the connections first drain what a
	 * previous process may have left unread, then the status check runs
	 * from the main loop.
	 */
	ipp->recovering = true;
	if ((ex = ex_new(ipp, "GET", "/eSCL/ScannerStatus", recover_status_done, NULL)) == NULL)
		return probe_fail(fn, -ENOMEM);
	TAILQ_INSERT_TAIL(&ipp->queue, ex, link);
	for (unsigned i = 0; i < ipp->nconns; i++)
		conn_drain(&ipp->conns[i]);
	drv_log(LOG_INFO, "ippusb: interface %u, %u connection%s", fn->ifnum, ipp->nconns,
		ipp->nconns == 1 ? "" : "s");
	return 0;
}

const struct driver_ops ippusb_driver = {
    .name = "ippusb",
    .probe = ippusb_probe,
};
