/*
 * The control socket (--control PATH): plug and unplug devices while the
 * command runs.  One thread serves it; each command runs to its end --
 * for unplug, until the device is dead and its uevent sent -- before the
 * reply goes out, so a test that got "ok" knows the uevent is on its way.
 *
 *     $ socat - UNIX-CONNECT:/tmp/ctl
 *     plug loopback
 *     ok 1-2 /dev/bus/usb/001/003
 *     unplug 1-2
 *     ok
 */
#include "emu.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_CLIENTS  8
#define LINE_MAX_LEN 256

struct client {
	int fd;
	size_t len;
	char buf[LINE_MAX_LEN];
};

static int listen_fd = -1;
static int stop_pipe[2] = {-1, -1};
static char sock_path[108];
static pthread_t thread;
static bool running;
static struct client clients[MAX_CLIENTS];

static void reply(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply(struct client *c, const char *fmt, ...)
{
	char line[LINE_MAX_LEN + 64];
	va_list ap;
	size_t off = 0;

	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n > sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	while (off < (size_t)n) {
		ssize_t w = write(c->fd, line + off, (size_t)n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* the client went away; its read side will say so */
		off += (size_t)w;
	}
}

static int parse_port(const char *s, unsigned *port)
{
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (*s == '\0' || *end != '\0' || v < 1 || v > 64)
		return -EINVAL;
	*port = (unsigned)v;
	return 0;
}

static void run_command(struct client *c, char *line)
{
	char *save = NULL;
	char *verb = strtok_r(line, " \t", &save);
	char *a1 = verb ? strtok_r(NULL, " \t", &save) : NULL;
	char *a2 = a1 ? strtok_r(NULL, " \t", &save) : NULL;
	char *extra = a2 ? strtok_r(NULL, " \t", &save) : NULL;
	int r;

	if (verb == NULL)
		return reply(c, "err empty command");
	emu_log("control: %s %s %s", verb, a1 ? a1 : "", a2 ? a2 : "");
	if (strcmp(verb, "plug") == 0 && a1 != NULL && extra == NULL) {
		const struct emu_model *m = emu_model_find(a1);
		struct emu_dev *dev = NULL;
		unsigned port = 0;

		if (m == NULL)
			return reply(c, "err unknown model %s", a1);
		if (a2 != NULL && parse_port(a2, &port) < 0)
			return reply(c, "err bad port %s", a2);
		if ((r = emu_bed_plug(m, port, 0, &dev)) < 0)
			return reply(c, "err plug %s: %s", a1, strerror(-r));
		return reply(c, "ok %s %s", dev->sysname, dev->devnode);
	}
	if (strcmp(verb, "unplug") == 0 && a1 != NULL && a2 == NULL) {
		if ((r = emu_bed_unplug(a1)) < 0)
			return reply(c, "err unplug %s: %s", a1, strerror(-r));
		return reply(c, "ok");
	}
	reply(c, "err usage: plug MODEL [PORT] | unplug SYSNAME");
}

/* Runs every whole line received; 0, or -1 when the client is done. */
static int client_input(struct client *c)
{
	ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
	char *nl;

	if (n < 0 && errno == EINTR)
		return 0;
	if (n <= 0)
		return -1;
	c->len += (size_t)n;
	while ((nl = memchr(c->buf, '\n', c->len)) != NULL) {
		size_t linelen = (size_t)(nl - c->buf);
		*nl = '\0';
		if (linelen > 0 && c->buf[linelen - 1] == '\r')
			c->buf[linelen - 1] = '\0';
		run_command(c, c->buf);
		memmove(c->buf, nl + 1, c->len - linelen - 1);
		c->len -= linelen + 1;
	}
	if (c->len == sizeof(c->buf)) {
		reply(c, "err line too long");
		return -1;
	}
	return 0;
}

static void *control_main(void *arg)
{
	(void)arg;
	for (;;) {
		struct pollfd pfd[2 + MAX_CLIENTS];
		int n = 0;

		pfd[n++] = (struct pollfd){.fd = stop_pipe[0], .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
		for (int i = 0; i < MAX_CLIENTS; i++)
			pfd[n++] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			emu_err("control: poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents)
			break;
		if (pfd[1].revents & POLLIN) {
			int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
			int i;
			for (i = 0; fd >= 0 && i < MAX_CLIENTS && clients[i].fd >= 0; i++)
				;
			if (fd >= 0 && i == MAX_CLIENTS) {
				emu_err("control: more than %d clients, refusing one", MAX_CLIENTS);
				close(fd);
			} else if (fd >= 0) {
				clients[i] = (struct client){.fd = fd};
			}
		}
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (clients[i].fd >= 0 && pfd[2 + i].revents && client_input(&clients[i]) < 0) {
				close(clients[i].fd);
				clients[i].fd = -1;
			}
	}
	return NULL;
}

int emu_control_start(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int r;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		emu_err("--control: path too long: %s", path);
		return -ENAMETOOLONG;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	snprintf(sock_path, sizeof(sock_path), "%s", path);
	for (int i = 0; i < MAX_CLIENTS; i++)
		clients[i].fd = -1;
	if (pipe2(stop_pipe, O_CLOEXEC) < 0)
		return -errno;
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(listen_fd, MAX_CLIENTS) < 0) {
		r = -errno;
		emu_err("--control %s: %s", path, strerror(errno));
		emu_control_stop();
		return r;
	}
	if ((r = pthread_create(&thread, NULL, control_main, NULL)) != 0) {
		emu_err("control thread: %s", strerror(r));
		emu_control_stop();
		return -r;
	}
	running = true;
	return 0;
}

void emu_control_stop(void)
{
	if (running) {
		if (write(stop_pipe[1], "x", 1) < 0)
			emu_err("control: cannot stop the thread: %s", strerror(errno));
		pthread_join(thread, NULL);
		running = false;
	}
	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i].fd >= 0) {
			close(clients[i].fd);
			clients[i].fd = -1;
		}
	if (listen_fd >= 0) {
		close(listen_fd);
		listen_fd = -1;
		unlink(sock_path);
	}
	for (int i = 0; i < 2; i++)
		if (stop_pipe[i] >= 0) {
			close(stop_pipe[i]);
			stop_pipe[i] = -1;
		}
}
