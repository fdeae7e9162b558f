/*
 * Telling the kernel that a name is gone (a device was unplugged), so that
 * its dentry is dropped and inotify watchers of MOUNTPOINT, by-id/ and
 * by-path/ hear of it.
 *
 * fuse_lowlevel_notify_delete() takes the parent directory's lock in the
 * kernel.  A lookup in that directory, sent by another process and not yet
 * answered, holds the same lock until the daemon answers it -- and the
 * daemon has one thread: calling the notification from the loop would wait
 * for an answer only the loop can give.  So the loop hands names to this
 * one small thread through a pipe and goes on serving; the thread blocks
 * at most until the loop has answered what holds the lock.  It shares no
 * memory with the loop but the session, which libfuse lets two threads use.
 *
 * Lookups are never cached (entry_timeout 0), so a notification that is
 * late or dropped (pipe full) costs nothing but its inotify event.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "notify.h"
#include "plugfs.h"

struct notice {
	uint64_t parent, child;
	char name[232];
};

static struct fuse_session *notify_se;
static int notify_pipe[2] = {-1, -1};
static pthread_t notify_thread;
static int notify_running;

static void *notify_main(void *arg)
{
	struct notice n;
	(void)arg;

	/* A notice is smaller than PIPE_BUF: each read gets a whole one. */
	while (read(notify_pipe[0], &n, sizeof(n)) == (ssize_t)sizeof(n)) {
		n.name[sizeof(n.name) - 1] = '\0';
		int r = fuse_lowlevel_notify_delete(notify_se, n.parent, n.child, n.name, strlen(n.name));
		/* A directory with a file still open in it cannot be deleted: just invalidate it. */
		if (r == -ENOTEMPTY)
			r = fuse_lowlevel_notify_inval_entry(notify_se, n.parent, n.name, strlen(n.name));
		/* ENOENT: the kernel had no dentry for it, nothing to drop. */
		if (r < 0 && r != -ENOENT)
			log_msg(LOG_DEBUG, "notify delete %s: %s", n.name, strerror(-r));
	}
	return NULL;
}

int notify_start(struct fuse_session *se)
{
	int r;

	notify_se = se;
	if (pipe2(notify_pipe, O_CLOEXEC) < 0)
		return -errno;
	fcntl(notify_pipe[1], F_SETFL, O_NONBLOCK);
	if ((r = pthread_create(&notify_thread, NULL, notify_main, NULL)) != 0) {
		close(notify_pipe[0]);
		close(notify_pipe[1]);
		notify_pipe[0] = notify_pipe[1] = -1;
		return -r;
	}
	notify_running = 1;
	return 0;
}

void notify_entry_gone(uint64_t parent, uint64_t child, const char *name)
{
	struct notice n = {.parent = parent, .child = child};

	if (!notify_running)
		return;
	snprintf(n.name, sizeof(n.name), "%s", name);
	if (write(notify_pipe[1], &n, sizeof(n)) != (ssize_t)sizeof(n))
		log_msg(LOG_DEBUG, "notify delete %s: dropped (%s)", name, strerror(errno));
}

int notify_stop(void)
{
	struct timespec ts;

	if (!notify_running)
		return 0;
	notify_running = 0;
	close(notify_pipe[1]);
	notify_pipe[1] = -1;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 2;
	/* Only a kernel lock nobody will release keeps it: then leave it be. */
	if (pthread_timedjoin_np(notify_thread, NULL, &ts) != 0) {
		log_msg(LOG_WARNING, "the notification thread is stuck in the kernel; leaving it");
		return -EBUSY;
	}
	close(notify_pipe[0]);
	notify_pipe[0] = -1;
	return 0;
}
