/*
 * The daemon's event loop: one epoll set, a {callback, argument} per fd.
 * Any callback may remove any fd, its own included: a removed or replaced
 * fd's pending events are dropped (each registration has a serial number).
 */
#ifndef PLUGFS_LOOP_H
#define PLUGFS_LOOP_H

#include <stdint.h>
#include <sys/epoll.h>

typedef void (*loop_cb)(int fd, uint32_t events, void *arg);

int loop_init(void);
int loop_add(int fd, uint32_t events, loop_cb cb, void *arg);
int loop_mod(int fd, uint32_t events);
void loop_del(int fd);
/* Waits up to timeout_ms (-1: forever) and dispatches; 0 or -errno. */
int loop_run_once(int timeout_ms);
unsigned loop_fd_count(void);

#endif
