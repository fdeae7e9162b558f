/*
 * libFuzzer target: arbitrary bytes as a driver's side of the pipe
 * protocol, fed through sup_on_message(), the function the daemon runs on
 * every packet it receives from a driver (supervisor/supervisor.c).  The
 * daemon's code is linked unchanged; only libfuse's reply functions are
 * replaced (an executable's definitions win over the shared library's), to
 * check that every FUSE request gets exactly one reply and every poll
 * handle is destroyed exactly once.
 *
 * Input: byte 0 picks the setting, the rest is a list of messages, each a
 * u16 little-endian length and that many bytes; a length of 0 is no
 * message but time passing: sup_tick() one timeout later each time, so
 * requests time out, CANCELs go out, and unanswered CANCELs fail the driver.
 *   bit 0 clear: the driver is starting (its first message should be HELLO).
 *   bit 0 set:   it already said a canned HELLO (with a driver-owned
 *                directory, node 0xffffff00) and has requests in flight:
 *                OPEN, READ (64 bytes), WRITE (16), POLL (with a poll
 *                handle), CTL, READ (512), POLL, then of the tree LOOKUP,
 *                GETATTR (node 5), READDIR (4096 bytes), CREATE, UNLINK,
 *                OPEN of node 5, FLUSH of a node handle, and a heartbeat
 *                PING.
 *   bit 1 set:   then every timed request times out (EINTR to the user,
 *                CANCEL to the driver), so replies come for answered requests.
 *   bit 2 set:   the driver has a shared buffer (sup_shm_create) and its
 *                HELLO says it maps it: after the PING, a READ of 8192 bytes
 *                (slot 0) and a WRITE of 4096 (slot 1) go through it.
 *                Without it those two travel inline.  Then the block file
 *                is written sequentially: a WRITE, two writes gathered
 *                (write-back), an fsync that sends them as one window and
 *                waits for it, and a write gathered into the next window.
 *                Without the buffer they are all plain WRITEs.
 * Request ids and handle ids are the daemon's: a message's req field of
 * 1..32 (handle field 1..16) is replaced by the daemon's Nth request
 * (handle) id, as read off the daemon's end of the socket, so short inputs
 * can name them.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bind.h"
#include "loop.h"
#include "plugfs.h"
#include "proto.h"
#include "supervisor.h"
#include "util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NREQ  24
#define NMADE 24 /* requests_in_flight()'s, each owed one reply */
#define NPH   2

/* Stand-ins for fuse_req_t and fuse_pollhandle: never dereferenced. */
static char fake_req[NREQ];
static int replies[NREQ];
static char fake_ph[NPH];
static int ph_destroyed[NPH];

static void replied(fuse_req_t req)
{
	ptrdiff_t i = (char *)req - fake_req;

	if (i < 0 || i >= NREQ) {
		fprintf(stderr, "fuzz: reply to a request that does not exist\n");
		abort();
	}
	if (replies[i]++ != 0) {
		fprintf(stderr, "fuzz: request %td answered twice\n", i);
		abort();
	}
}

int fuse_reply_err(fuse_req_t req, int err)
{
	/* 0 is success for replies without data (UNLINK, FLUSH). */
	if (err < 0 || err > 4095)
		abort();
	replied(req);
	return 0;
}

int fuse_reply_buf(fuse_req_t req, const char *buf, size_t size)
{
	volatile char sink = 0;

	/* Touch every byte, so ASan sees a reply pointing outside its buffer. */
	for (size_t i = 0; i < size; i++)
		sink ^= buf[i];
	(void)sink;
	replied(req);
	return 0;
}

int fuse_reply_write(fuse_req_t req, size_t count)
{
	(void)count;
	replied(req);
	return 0;
}

int fuse_reply_poll(fuse_req_t req, unsigned revents)
{
	(void)revents;
	replied(req);
	return 0;
}

int fuse_reply_open(fuse_req_t req, const struct fuse_file_info *fi)
{
	(void)fi;
	replied(req);
	return 0;
}

int fuse_reply_entry(fuse_req_t req, const struct fuse_entry_param *e)
{
	/* A node's inode is (function, node id) with the top bit set; never 0. */
	if (e->ino == 0 || e->attr.st_ino != e->ino)
		abort();
	replied(req);
	return 0;
}

int fuse_reply_attr(fuse_req_t req, const struct stat *attr, double attr_timeout)
{
	(void)attr;
	(void)attr_timeout;
	replied(req);
	return 0;
}

int fuse_reply_create(fuse_req_t req, const struct fuse_entry_param *e, const struct fuse_file_info *fi)
{
	if (e->ino == 0 || fi->fh == 0)
		abort();
	replied(req);
	return 0;
}

void fuse_req_interrupt_func(fuse_req_t req, fuse_interrupt_func_t func, void *data)
{
	(void)req;
	(void)func;
	(void)data;
}

static void check_ph(struct fuse_pollhandle *ph)
{
	ptrdiff_t i = (char *)ph - fake_ph;

	if (i < 0 || i >= NPH || ph_destroyed[i]) {
		fprintf(stderr, "fuzz: poll handle used after destroy\n");
		abort();
	}
}

int fuse_lowlevel_notify_poll(struct fuse_pollhandle *ph)
{
	check_ph(ph);
	return 0;
}

void fuse_pollhandle_destroy(struct fuse_pollhandle *ph)
{
	check_ph(ph);
	ph_destroyed[(char *)ph - fake_ph] = 1;
}

/* ---- The fake device: two functions of a generic driver ---- */

static struct usbdev *dev;
static struct drv *drv;
static int peer = -1;
#define MAX_IDS 32
static uint32_t req_ids[MAX_IDS], handle_ids[16];
static unsigned nreq_ids, nhandle_ids;

static void device_new(void)
{
	dev = calloc(1, sizeof(*dev));
	drv = calloc(1, sizeof(*drv));
	if (dev == NULL || drv == NULL)
		abort();
	snprintf(dev->sysname, sizeof(dev->sysname), "1-1");
	dev->desc.vendor_id = 0x1209;
	dev->desc.num_ifaces = 2;
	dev->desc.ifaces[1].number = 1;
	for (unsigned i = 0; i < 2; i++)
		if (function_new(dev, &dev->desc.ifaces[i], bind_by_name("usb")) == NULL)
			abort();
	TAILQ_INSERT_TAIL(&usbdevs, dev, link);

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
		abort();
	drv->dev = dev;
	drv->state = DRV_STARTING;
	drv->sock = sv[0];
	drv->reaped = 1; /* no process: drv_fail() must not kill anything */
	TAILQ_INIT(&drv->requests);
	LIST_INIT(&drv->handles);
	STAILQ_INIT(&drv->outq);
	STAILQ_INIT(&drv->wb_saved);
	dev->drv = drv;
	peer = sv[1];
}

static void device_free(void)
{
	sup_free(drv);
	TAILQ_REMOVE(&usbdevs, dev, link);
	usbdev_free(dev);
	names_forget_all();
	close(peer);
	dev = NULL;
	drv = NULL;
	peer = -1;
}

/* Reads what the daemon sent, remembering request and handle ids. */
static void drain_peer(void)
{
	static uint8_t buf[PROTO_MAX_MSG];
	struct proto_hdr h;
	ssize_t n;

	while ((n = recv(peer, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		if (proto_decode_hdr(buf, (size_t)n, &h, NULL) < 0) {
			fprintf(stderr, "fuzz: the daemon sent a message its own decoder refuses\n");
			abort();
		}
		if (h.req != 0 && h.type != PROTO_CANCEL && nreq_ids < MAX_IDS)
			req_ids[nreq_ids++] = h.req;
		if ((h.type == PROTO_OPEN || h.type == PROTO_CREATE) && nhandle_ids < 16)
			handle_ids[nhandle_ids++] = h.handle;
	}
}

static void send_to_daemon(struct proto_hdr *h, const void *payload, size_t plen)
{
	static uint8_t buf[PROTO_MAX_MSG];
	size_t n = proto_build(buf, h, payload, plen);

	sup_on_message(drv, buf, n);
}

static void canned_hello(uint16_t flags)
{
	static struct proto_hello hello = {
	    .version = PROTO_VERSION,
	    .nfiles = 3,
	    .files =
		{{.id = 1, .function = 0, .kind = PROTO_KIND_STREAM, .mode = 0666, .name = "ep81"},
		 {.id = 2,
		  .function = 1,
		  .kind = PROTO_KIND_BLOCK,
		  .mode = 0666,
		  .size = 4096,
		  .name = "data"},
		 {.id = 0xffffff00u, .function = 0, .kind = PROTO_KIND_DIR, .mode = 0755, .name = "store"}},
	};
	static uint8_t payload[256];
	int plen = proto_encode_hello(payload, sizeof(payload), &hello);
	struct proto_hdr h = {.type = PROTO_HELLO, .flags = flags};

	if (plen < 0)
		abort();
	send_to_daemon(&h, payload, (size_t)plen);
	if (drv->state != DRV_RUNNING)
		abort();
}

static struct handle *handle_new(unsigned fn, unsigned id, uint32_t node)
{
	struct handle *h = calloc(1, sizeof(*h));

	if (h == NULL)
		abort();
	h->id = id;
	h->fn = dev->funcs[fn];
	h->slot = 0;
	h->node = node;
	h->generation = drv->generation;
	LIST_INSERT_HEAD(&drv->handles, h, link);
	handle_ids[nhandle_ids++] = id;
	return h;
}

static void requests_in_flight(void)
{
	struct fuse_file_info fi = {.flags = O_RDWR};

	sup_open((fuse_req_t)&fake_req[0], dev->funcs[0], 0, &fi);
	struct handle *a = handle_new(0, 1000001, 0);
	struct handle *b = handle_new(1, 1000002, 0);
	struct handle *c = handle_new(0, 1000003, 5);
	sup_read((fuse_req_t)&fake_req[1], a, 64, 0, 0);
	sup_write((fuse_req_t)&fake_req[2], a, "0123456789abcdef", 16, 0, 1);
	sup_poll((fuse_req_t)&fake_req[3], a, (struct fuse_pollhandle *)&fake_ph[0]);
	sup_ctl((fuse_req_t)&fake_req[4], dev->funcs[1], "reset\n", 6, 6);
	sup_read((fuse_req_t)&fake_req[5], b, 512, 4096 - 512, 0);
	sup_poll((fuse_req_t)&fake_req[6], b, (struct fuse_pollhandle *)&fake_ph[1]);
	struct function *fn = dev->funcs[0];
	sup_lookup((fuse_req_t)&fake_req[7], fn, 0xffffff00u, "DCIM");
	sup_getattr((fuse_req_t)&fake_req[8], fn, 5);
	sup_readdir((fuse_req_t)&fake_req[9], fn, 42, 0xffffff00u, 4096, 2);
	struct fuse_file_info cfi = {.flags = O_WRONLY | O_CREAT};
	sup_create((fuse_req_t)&fake_req[10], fn, 0xffffff00u, "NEW.JPG", &cfi);
	sup_unlink((fuse_req_t)&fake_req[11], fn, 0xffffff00u, "OLD.JPG");
	struct fuse_file_info ofi = {.flags = O_RDONLY};
	sup_open_node((fuse_req_t)&fake_req[12], fn, 5, &ofi);
	sup_flush((fuse_req_t)&fake_req[13], c);
	/* The heartbeat is due half a timeout after HELLO; no request is late yet. */
	sup_tick(drv->next_ping_ms);
	/* Big enough for a slot of the shared buffer, if there is one. */
	static char page[4096];
	sup_read((fuse_req_t)&fake_req[14], b, 8192, 0, 0);
	sup_write((fuse_req_t)&fake_req[15], a, page, sizeof(page), 0, 0);
	/* Sequential reads of the block file: read-ahead windows, one with a read waiting on it. */
	sup_read((fuse_req_t)&fake_req[16], b, 512, 0, 0);
	sup_read((fuse_req_t)&fake_req[17], b, 512, 512, 0);
	sup_read((fuse_req_t)&fake_req[18], b, 512, 1024, 0);
	/* Sequential writes of the block file: write-back windows, one sent and waited for, one gathered. */
	sup_write((fuse_req_t)&fake_req[19], b, page, 1024, 0, 0);
	sup_write((fuse_req_t)&fake_req[20], b, page, 1024, 1024, 0);
	sup_write((fuse_req_t)&fake_req[21], b, page, 1024, 2048, 0);
	sup_sync((fuse_req_t)&fake_req[22], b);
	sup_write((fuse_req_t)&fake_req[23], b, page, 512, 3072, 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	opts.timeout_ms = 1000;
	opts.restart_max = 3;
	opts.restart_window_s = 10;
	opts.backoff_min_ms = 1;
	opts.backoff_max_ms = 1;
	if (loop_init() < 0)
		abort();
	return 0;
}

static void remap(uint8_t *msg, size_t n)
{
	if (n < PROTO_HDR_LEN)
		return;
	uint32_t r = get_le32(msg + 8), h = get_le32(msg + 12);
	if (r >= 1 && r <= MAX_IDS && nreq_ids > 0)
		put_le32(msg + 8, req_ids[(r - 1) % nreq_ids]);
	if (h >= 1 && h <= 16 && nhandle_ids > 0)
		put_le32(msg + 12, handle_ids[(h - 1) % nhandle_ids]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t msg[PROTO_MAX_MSG + 64];

	if (size < 1)
		return 0;
	memset(replies, 0, sizeof(replies));
	memset(ph_destroyed, 0, sizeof(ph_destroyed));
	nreq_ids = nhandle_ids = 0;
	device_new();
	uint8_t setting = data[0];
	if (setting & 4) {
		int fd = sup_shm_create(drv);
		if (fd < 0)
			abort();
		close(fd);
	}
	if (setting & 1) {
		canned_hello(setting & 4 ? PROTO_F_SHM : 0);
		requests_in_flight();
		if (setting & 2)
			sup_tick(now_ms() + opts.timeout_ms + 1);
	}
	drain_peer();
	size_t off = 1;
	unsigned ticks = 0;
	while (off + 2 <= size && drv->sock >= 0) {
		size_t n = get_le16(data + off);
		off += 2;
		if (n > size - off)
			n = size - off;
		if (n == 0) {
			/* Time passes: every deadline due now has expired. */
			sup_tick(now_ms() + (uint64_t)opts.timeout_ms * ++ticks + 1);
			drain_peer();
			continue;
		}
		memcpy(msg, data + off, n);
		off += n;
		remap(msg, n);
		sup_on_message(drv, msg, n);
		drain_peer();
	}
	/* A live driver keeps its requests; the teardown answers them (EIO). */
	device_free();
	for (unsigned i = 0; i < NREQ; i++)
		if (replies[i] > 1)
			abort();
	/* Every request made was answered exactly once. */
	unsigned made = (setting & 1) ? NMADE : 0;
	for (unsigned i = 0; i < made; i++)
		if (replies[i] != 1) {
			fprintf(stderr, "fuzz: request %u never answered\n", i);
			abort();
		}
	return 0;
}
