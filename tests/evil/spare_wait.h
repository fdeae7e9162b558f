/*
 * The spare side of the protocol (common/proto.h, "Spare hosts") for the
 * test-only driver hosts that the daemon also starts as spares
 * (plugfs-evil-driver, plugfs-sandbox-attacker): READY unless START is
 * already queued, then START's device node.  peek leaves START queued, for
 * a real host the caller execs.  NULL when the daemon hung up, or sent
 * something else: the caller exits, and the daemon replaces its spare.
 */
#ifndef PLUGFS_TESTS_SPARE_WAIT_H
#define PLUGFS_TESTS_SPARE_WAIT_H

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include "proto.h"

static inline const char *spare_wait_start(int peek)
{
	static uint8_t buf[PROTO_MAX_MSG];
	struct pollfd p = {.fd = PROTO_DRIVER_FD, .events = POLLIN};
	struct proto_hdr h = {.type = PROTO_READY, .len = PROTO_HDR_LEN};
	char *args[PROTO_START_MAX_ARGS];
	const uint8_t *desc;
	size_t desc_len;
	unsigned nargs;
	ssize_t n;

	prctl(PR_SET_NAME, "plugfs-spare");
	if (poll(&p, 1, 0) == 0) {
		proto_encode_hdr(buf, &h);
		send(PROTO_DRIVER_FD, buf, PROTO_HDR_LEN, MSG_NOSIGNAL);
	}
	while ((n = recv(PROTO_DRIVER_FD, buf, sizeof(buf), (peek ? MSG_PEEK : 0) | MSG_TRUNC)) < 0 &&
	       errno == EINTR)
		;
	if (n <= 0 || proto_decode_hdr(buf, (size_t)n, &h, NULL) < 0 || h.type != PROTO_START ||
	    proto_decode_start(buf + PROTO_HDR_LEN, h.len - PROTO_HDR_LEN, h.size, args, PROTO_START_MAX_ARGS,
			       &nargs, &desc, &desc_len, NULL) < 0)
		return NULL;
	return strcmp(args[0], "--detach") == 0 && nargs > 1 ? args[1] : args[0];
}

#endif
