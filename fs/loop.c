/*
 * The event loop (see loop.h), after Redis's ae.c: a table indexed by fd,
 * and EPOLLERR/EPOLLHUP passed on so that the handler's own read() reports
 * the error.
 */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct loop_slot {
	loop_cb cb;
	void *arg;
	uint32_t serial;
};

static int epfd = -1;
static struct loop_slot *slots;
static int nslots;
static uint32_t next_serial = 1;
static unsigned nregistered;

int loop_init(void)
{
	epfd = epoll_create1(EPOLL_CLOEXEC);
	return epfd < 0 ? -errno : 0;
}

static int grow(int fd)
{
	if (fd < nslots)
		return 0;
	int n = nslots ? nslots : 64;
	while (n <= fd)
		n *= 2;
	struct loop_slot *s = realloc(slots, (size_t)n * sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	for (int i = nslots; i < n; i++)
		s[i] = (struct loop_slot){0};
	slots = s;
	nslots = n;
	return 0;
}

static uint64_t tag(int fd)
{
	return (uint64_t)slots[fd].serial << 32 | (uint32_t)fd;
}

int loop_add(int fd, uint32_t events, loop_cb cb, void *arg)
{
	int r = grow(fd);
	if (r < 0)
		return r;
	slots[fd] = (struct loop_slot){cb, arg, next_serial++};
	struct epoll_event ev = {.events = events, .data.u64 = tag(fd)};
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		r = -errno;
		slots[fd].cb = NULL;
		return r;
	}
	nregistered++;
	return 0;
}

int loop_mod(int fd, uint32_t events)
{
	if (fd < 0 || fd >= nslots || slots[fd].cb == NULL)
		return -EBADF;
	struct epoll_event ev = {.events = events, .data.u64 = tag(fd)};
	return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
}

void loop_del(int fd)
{
	if (fd < 0 || fd >= nslots || slots[fd].cb == NULL)
		return;
	epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
	slots[fd] = (struct loop_slot){0};
	nregistered--;
}

unsigned loop_fd_count(void)
{
	return nregistered;
}

int loop_run_once(int timeout_ms)
{
	struct epoll_event evs[64];
	int n = epoll_wait(epfd, evs, 64, timeout_ms);

	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		int fd = (int)(uint32_t)evs[i].data.u64;
		uint32_t serial = (uint32_t)(evs[i].data.u64 >> 32);
		/* An earlier callback of this pass may have removed or replaced it. */
		if (fd >= nslots || slots[fd].cb == NULL || slots[fd].serial != serial)
			continue;
		slots[fd].cb(fd, evs[i].events, slots[fd].arg);
	}
	return 0;
}
