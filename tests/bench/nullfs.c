/*
 * nullfs: the in-process FUSE filesystem the isolation benchmark measures
 * plugfs against.  It serves the null driver's three files itself --
 * `zero` (a 1 TiB block file of zeros, 0444), `sink` (a 1 TiB block file
 * that keeps nothing, 0222) and `stream` (a write-only stream that takes
 * everything) -- with plugfs's libfuse settings: the low-level API,
 * direct_io on every open, max_read = max_write = PROTO_MAX_REQ, no
 * readahead, no writeback cache, default_permissions, and one thread
 * running an epoll loop over the non-blocking FUSE fd that receives and
 * processes requests as fs/main.c does.  The difference between the two is
 * then the daemon's request handling plus the driver process.
 *
 *     build/bench-io --nullfs MNT     (bench-io runs it in a child)
 */
#include "nullfs.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto.h"

#define NULLFS_SIZE (1ull << 40)

enum { INO_ZERO = 2, INO_SINK = 3, INO_STREAM = 4 };

/*
 * Where a read's zeros are made, by a memset per read: the null driver makes
 * them the same way in its slot of the shared buffer, as a driver reading a
 * device would fill its buffer.  Replying from a never-written static array
 * instead would copy from the one shared zero page, cache-hot, and compare
 * memory traffic rather than isolation.
 */
static char block[PROTO_MAX_REQ];
static volatile sig_atomic_t stop;

static int fill_stat(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_nlink = 1;
	switch (ino) {
	case FUSE_ROOT_ID:
		st->st_mode = S_IFDIR | 0555;
		st->st_nlink = 2;
		return 0;
	case INO_ZERO:
		st->st_mode = S_IFREG | 0444;
		st->st_size = (off_t)NULLFS_SIZE;
		return 0;
	case INO_SINK:
		st->st_mode = S_IFREG | 0222;
		st->st_size = (off_t)NULLFS_SIZE;
		return 0;
	case INO_STREAM:
		st->st_mode = S_IFREG | 0222;
		return 0;
	default:
		return -ENOENT;
	}
}

static void nf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e = {0};

	if (parent != FUSE_ROOT_ID)
		return (void)fuse_reply_err(req, ENOENT);
	if (strcmp(name, "zero") == 0)
		e.ino = INO_ZERO;
	else if (strcmp(name, "sink") == 0)
		e.ino = INO_SINK;
	else if (strcmp(name, "stream") == 0)
		e.ino = INO_STREAM;
	else
		return (void)fuse_reply_err(req, ENOENT);
	fill_stat(e.ino, &e.attr);
	fuse_reply_entry(req, &e);
}

static void nf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (fill_stat(ino, &st) < 0)
		return (void)fuse_reply_err(req, ENOENT);
	fuse_reply_attr(req, &st, 0);
}

/* As plugfs: truncation by `> sink` is accepted and ignored. */
static void nf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	(void)attr;
	(void)to_set;
	nf_getattr(req, ino, fi);
}

static void nf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != INO_ZERO && ino != INO_SINK && ino != INO_STREAM)
		return (void)fuse_reply_err(req, EISDIR);
	fi->direct_io = 1;
	fi->nonseekable = ino == INO_STREAM;
	fuse_reply_open(req, fi);
}

static void nf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	size_t n = 0;

	(void)fi;
	if (ino != INO_ZERO)
		return (void)fuse_reply_err(req, EBADF);
	if (size > PROTO_MAX_REQ)
		size = PROTO_MAX_REQ;
	if ((uint64_t)off < NULLFS_SIZE)
		n = NULLFS_SIZE - (uint64_t)off < size ? (size_t)(NULLFS_SIZE - (uint64_t)off) : size;
	memset(block, 0, n);
	fuse_reply_buf(req, block, n);
}

static void nf_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)buf;
	(void)fi;
	if (ino == INO_STREAM)
		return (void)fuse_reply_write(req, size);
	if (ino != INO_SINK)
		return (void)fuse_reply_err(req, EBADF);
	if ((uint64_t)off >= NULLFS_SIZE)
		return (void)fuse_reply_err(req, ENOSPC);
	fuse_reply_write(req,
			 NULLFS_SIZE - (uint64_t)off < size ? (size_t)(NULLFS_SIZE - (uint64_t)off) : size);
}

static void nf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	static const char *const names[] = {".", "..", "zero", "sink", "stream"};
	static const fuse_ino_t inos[] = {FUSE_ROOT_ID, FUSE_ROOT_ID, INO_ZERO, INO_SINK, INO_STREAM};
	char buf[512];
	size_t used = 0;

	(void)fi;
	if (ino != FUSE_ROOT_ID)
		return (void)fuse_reply_err(req, ENOTDIR);
	if (size > sizeof(buf))
		size = sizeof(buf);
	for (off_t i = off; i < (off_t)(sizeof(names) / sizeof(names[0])); i++) {
		struct stat st = {.st_ino = inos[i], .st_mode = i < 2 ? S_IFDIR : S_IFREG};
		size_t n = fuse_add_direntry(req, buf + used, size - used, names[i], &st, i + 1);
		if (n > size - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
}

static void nf_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->max_write = PROTO_MAX_REQ;
	conn->max_read = PROTO_MAX_REQ;
	conn->max_readahead = 0;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

static const struct fuse_lowlevel_ops nullfs_ops = {
    .init = nf_init,
    .lookup = nf_lookup,
    .getattr = nf_getattr,
    .setattr = nf_setattr,
    .open = nf_open,
    .read = nf_read,
    .write = nf_write,
    .readdir = nf_readdir,
};

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

/* fs/main.c's loop: epoll over the non-blocking FUSE fd, a bounded batch of requests per wakeup. */
static int serve(struct fuse_session *se)
{
	struct fuse_buf fbuf = {0};
	int ffd = fuse_session_fd(se), ep = epoll_create1(EPOLL_CLOEXEC), r = 0;
	struct epoll_event ev = {.events = EPOLLIN};

	fcntl(ffd, F_SETFL, fcntl(ffd, F_GETFL) | O_NONBLOCK);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ffd, &ev) < 0) {
		r = 1;
		goto out;
	}
	while (!stop) {
		if (epoll_wait(ep, &ev, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			r = 1;
			break;
		}
		/* One request per wake-up, as fs/main.c reads them. */
		int n = fuse_session_receive_buf(se, &fbuf);
		if (n == -EAGAIN || n == -EINTR)
			continue;
		if (n <= 0 || fuse_session_exited(se))
			break;
		fuse_session_process_buf(se, &fbuf);
	}
out:
	if (ep >= 0)
		close(ep);
	free(fbuf.mem);
	return r;
}

int nullfs_main(const char *mnt)
{
	char max_read[32];
	char *argv[] = {"nullfs", "-odefault_permissions", "-ofsname=nullfs", "-osubtype=nullfs", max_read};
	struct fuse_args args = FUSE_ARGS_INIT(5, argv);
	struct sigaction sa = {.sa_handler = on_term};
	int r = 1;

	snprintf(max_read, sizeof(max_read), "-omax_read=%u", PROTO_MAX_REQ);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	struct fuse_session *se = fuse_session_new(&args, &nullfs_ops, sizeof(nullfs_ops), NULL);
	if (se == NULL)
		return 1;
	if (fuse_session_mount(se, mnt) == 0) {
		r = serve(se);
		fuse_session_unmount(se);
	}
	fuse_session_destroy(se);
	return r;
}
