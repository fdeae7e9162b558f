/*
 * plugfs-evil-driver: a test-only driver host that breaks the pipe
 * protocol on purpose, for the `hostile` integration suite.
 *
 *     PLUGFS_TEST_EVIL_CONF=FILE plugfs-evil-driver [options] DEVNODE DRIVER:IFNUM...
 *
 * The daemon runs it for every device (PLUGFS_DRIVER).  FILE holds one
 * line "DEVNODE MODE"; for that device it misbehaves as MODE says, for
 * every other device (or with no FILE) it execs the real plugfs-driver
 * next to it, so one mount can have one hostile device beside good ones;
 * before that it appends "PID DEVNODE" to $PLUGFS_TEST_EVIL_LOG, so a test can
 * tell which devnode a function's driver serves.
 * The file is read at every start: a test switches a running device to a
 * mode by writing the file and restarting it (ctl restart).
 *
 * Started as a spare host (--spare), it behaves as plugfs-driver does
 * until it knows its device: READY unless a START waits already, then it
 * looks at the START without taking it (MSG_PEEK), so that the real host
 * it execs for a good device finds it still waiting.
 *
 * Modes: garbage, oversized, truncated, before-hello, hello-twice,
 * unknown-reply, dup-reply, wrong-direction, bad-hello, mute (HELLO, then
 * never reads its socket), poll-ready-flood and log-flood (HELLO, then
 * answers the heartbeat while flooding), shm-outside and shm-foreign (HELLO
 * saying it maps the shared buffer, then the first READ given a slot is
 * answered with data said to be past the buffer's end, or in the next
 * request's slot).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proto.h"
#include "spare_wait.h"

static const int fd = PROTO_DRIVER_FD;

static __attribute__((noreturn)) void die(const char *what)
{
	fprintf(stderr, "plugfs-evil-driver: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void send_raw(const void *buf, size_t len)
{
	while (send(fd, buf, len, MSG_NOSIGNAL) < 0) {
		if (errno != EINTR)
			die("send");
	}
}

static void send_msg(struct proto_hdr *h, const void *payload, size_t plen)
{
	static uint8_t buf[PROTO_MAX_MSG];

	send_raw(buf, proto_build(buf, h, payload, plen));
}

static void hello_flags(uint16_t flags)
{
	static struct proto_hello hi = {
	    .version = PROTO_VERSION,
	    .nfiles = 2,
	    .files = {{.id = 1, .kind = PROTO_KIND_STREAM, .mode = 0444, .name = "ep81"},
		      {.id = 2, .kind = PROTO_KIND_STREAM, .mode = 0222, .name = "ep02"}},
	};
	uint8_t payload[256];
	int n = proto_encode_hello(payload, sizeof(payload), &hi);
	struct proto_hdr h = {.type = PROTO_HELLO, .flags = flags};

	if (n < 0)
		exit(1);
	send_msg(&h, payload, (size_t)n);
}

static void hello(void)
{
	hello_flags(0);
}

/* Waits for the next request from the daemon; exits on EOF. */
static void next_request(struct proto_hdr *h)
{
	static uint8_t buf[PROTO_MAX_MSG];

	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			exit(0);
		if (proto_decode_hdr(buf, (size_t)n, h, NULL) == 0 && h->req != 0 && h->type != PROTO_CANCEL)
			return;
	}
}

static void reply(uint32_t req, int32_t status)
{
	struct proto_hdr h = {.type = PROTO_REPLY, .req = req, .status = status};

	send_msg(&h, NULL, 0);
}

/* Answers whatever is pending without blocking: PING and OPEN succeed, the rest gets EAGAIN. */
static void answer_pending(void)
{
	static uint8_t buf[PROTO_MAX_MSG];
	struct proto_hdr h;
	ssize_t n;

	while ((n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) != 0) {
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			exit(0);
		}
		if (proto_decode_hdr(buf, (size_t)n, &h, NULL) < 0 || h.req == 0 || h.type == PROTO_CANCEL)
			continue;
		reply(h.req, h.type == PROTO_PING || h.type == PROTO_OPEN ? 0 : -EAGAIN);
	}
}

/* Sends `h` as fast as the socket takes it, forever, answering requests in between. */
static void flood(struct proto_hdr *h, const void *payload, size_t plen)
{
	static uint8_t buf[PROTO_MAX_MSG];
	size_t len = proto_build(buf, h, payload, plen);

	for (;;) {
		answer_pending();
		if (send(fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
			if (errno == EPIPE || errno == ECONNRESET)
				exit(0);
			struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
			poll(&p, 1, -1);
		}
	}
}

static void pause_forever(void)
{
	for (;;)
		pause();
}

static int misbehave(const char *mode)
{
	struct proto_hdr h = {0};

	if (strcmp(mode, "garbage") == 0) {
		/* A well-formed length, an unknown type. */
		h.type = 99;
		send_msg(&h, NULL, 0);
	} else if (strcmp(mode, "oversized") == 0) {
		static uint8_t big[PROTO_MAX_MSG + 4096];
		h.type = PROTO_LOG;
		h.len = sizeof(big);
		proto_encode_hdr(big, &h);
		send_raw(big, sizeof(big));
	} else if (strcmp(mode, "truncated") == 0) {
		uint8_t buf[PROTO_HDR_LEN + 20] = {0};
		h.type = PROTO_HELLO;
		h.len = PROTO_HDR_LEN + 60; /* says 60 bytes of payload, carries 20 */
		proto_encode_hdr(buf, &h);
		send_raw(buf, sizeof(buf));
	} else if (strcmp(mode, "before-hello") == 0) {
		reply(1, 0);
	} else if (strcmp(mode, "bad-hello") == 0) {
		uint8_t payload[4];
		put_le16(payload, PROTO_VERSION);
		put_le16(payload + 2, 1); /* one file announced, none sent */
		h.type = PROTO_HELLO;
		send_msg(&h, payload, sizeof(payload));
	} else if (strcmp(mode, "hello-twice") == 0) {
		hello();
		hello();
	} else if (strcmp(mode, "unknown-reply") == 0) {
		hello();
		reply(0x7fffffff, 0);
	} else if (strcmp(mode, "dup-reply") == 0) {
		hello();
		next_request(&h);
		reply(h.req, 0);
		reply(h.req, 0);
	} else if (strcmp(mode, "wrong-direction") == 0) {
		hello();
		h.type = PROTO_READ;
		h.req = 1;
		h.size = 1;
		send_msg(&h, NULL, 0);
	} else if (strcmp(mode, "shm-outside") == 0 || strcmp(mode, "shm-foreign") == 0) {
		/* It never maps the buffer: the daemon has only its word, and checks every offset. */
		hello_flags(PROTO_F_SHM);
		for (next_request(&h); h.type != PROTO_READ || !(h.flags & PROTO_F_SHM); next_request(&h))
			reply(h.req, h.type == PROTO_READ || h.type == PROTO_WRITE ? -EAGAIN : 0);
		struct proto_hdr r = {.type = PROTO_REPLY, .req = h.req, .flags = PROTO_F_SHM, .status = 16};
		if (strcmp(mode, "shm-outside") == 0)
			r.shm = PROTO_SHM_SIZE - 8; /* 8 of its 16 bytes past the end */
		else
			r.shm = (h.shm + PROTO_SHM_SLOT) % PROTO_SHM_SIZE; /* another request's slot */
		send_msg(&r, NULL, 0);
	} else if (strcmp(mode, "mute") == 0) {
		hello();
	} else if (strcmp(mode, "poll-ready-flood") == 0) {
		hello();
		h.type = PROTO_POLL_READY;
		h.handle = 0x7ffffff0; /* nobody's */
		flood(&h, NULL, 0);
	} else if (strcmp(mode, "log-flood") == 0) {
		static const char line[] = "evil: a driver that will not stop talking";
		hello();
		h.type = PROTO_LOG;
		h.status = 6;
		flood(&h, line, sizeof(line) - 1);
	} else {
		fprintf(stderr, "plugfs-evil-driver: unknown mode %s\n", mode);
		return 1;
	}
	/* Whatever it did, it stays and does nothing more: the daemon must kill it. */
	pause_forever();
	return 0;
}

/* As a spare: the device START names, under the name the real host would have. */
static const char *spare_devnode(void)
{
	const char *node = spare_wait_start(1);

	if (node != NULL)
		prctl(PR_SET_NAME, "plugfs-driver");
	return node;
}

int main(int argc, char **argv)
{
	const char *conf = getenv("PLUGFS_TEST_EVIL_CONF");
	const char *devnode = NULL;
	char victim[256], mode[64];
	int spare = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--user") == 0) {
			i++;
			continue;
		}
		if (strcmp(argv[i], "--spare") == 0) {
			spare = 1;
			if ((devnode = spare_devnode()) == NULL)
				return 0;
			break;
		}
		if (argv[i][0] != '-') {
			devnode = argv[i];
			break;
		}
	}
	FILE *f = conf != NULL ? fopen(conf, "r") : NULL;
	if (f != NULL) {
		int n = fscanf(f, "%255s %63s", victim, mode);
		fclose(f);
		if (n == 2 && devnode != NULL && strcmp(devnode, victim) == 0) {
			/* A spare's START is the real host's to read: here it is taken and ignored. */
			static uint8_t start[PROTO_MAX_MSG];
			if (spare && recv(fd, start, sizeof(start), MSG_DONTWAIT) < 0)
				die("recv START");
			return misbehave(mode);
		}
	}

	/* A good device: the real host, next to this one, after saying which device this pid serves. */
	const char *log = getenv("PLUGFS_TEST_EVIL_LOG");
	FILE *lf = log != NULL && devnode != NULL ? fopen(log, "a") : NULL;
	if (lf != NULL) {
		fprintf(lf, "%d %s\n", (int)getpid(), devnode);
		fclose(lf);
	}
	char self[PATH_MAX], real[PATH_MAX + 32];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0)
		die("readlink /proc/self/exe");
	self[n] = '\0';
	char *slash = strrchr(self, '/');
	if (slash != NULL)
		*slash = '\0';
	snprintf(real, sizeof(real), "%s/plugfs-driver", self);
	argv[0] = real;
	execv(real, argv);
	die(real);
}
