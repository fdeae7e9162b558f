/*
 * The pipe protocol between the plugfs daemon and a plugfs-driver process.
 *
 * Transport: one AF_UNIX SOCK_SEQPACKET socketpair per driver; the driver's
 * end is always fd PROTO_DRIVER_FD.  One message = one packet, so message
 * boundaries come from the kernel and a truncated packet is detected with
 * MSG_TRUNC.  Every message is a fixed 40-byte little-endian header followed
 * by `len - PROTO_HDR_LEN` bytes of payload.  Fields are encoded byte by byte,
 * never by copying a struct.
 *
 *   off size field
 *     0    4 len      total length of the message, header included
 *     4    2 type     enum proto_type
 *     6    2 flags    PROTO_F_*
 *     8    4 req      request id chosen by the daemon (0: not a request)
 *    12    4 handle   open-handle id chosen by the daemon at OPEN
 *    16    4 file     file id announced by the driver in HELLO
 *                     (PROTO_CTL: function index | unit << 8, see
 *                     PROTO_CTL_TARGET)
 *    20    4 size     READ: bytes wanted; OPEN: open(2) flags;
 *                     POLL: events wanted
 *    24    8 offset   READ/WRITE: file offset
 *    32    4 status   REPLY: >= 0 result, < 0 a negative errno;
 *                     POLL_READY: revents; LOG: syslog priority;
 *                     LOOKUP GETATTR READDIR CREATE UNLINK, OPEN of a
 *                     node: the tree's function (PROTO_CTL_TARGET)
 *    36    4 shm      PROTO_F_SHM: where the data is in the shared
 *                     buffer (below); else must be 0
 *
 * The shared buffer.  Copying a 128 KiB payload into
 * a socket and out again costs as much as the FUSE hop itself, so READ and
 * WRITE data may travel through a memfd of PROTO_SHM_SIZE bytes instead,
 * cut into PROTO_SHM_SLOTS slots of PROTO_SHM_SLOT bytes.  The daemon
 * creates it at every spawn (sealed against shrinking and growing, so that
 * the driver cannot make the daemon's mapping fault), hands it to the
 * driver as fd PROTO_SHM_FD, and the driver maps it and says so with
 * PROTO_F_SHM on its HELLO.  From then on the daemon may give a READ or a
 * WRITE a slot of its own, for the life of the request:
 *   - WRITE with PROTO_F_SHM: the data is at `shm` (the slot's start),
 *     `size` bytes, and the message has no payload;
 *   - READ with PROTO_F_SHM: `shm` is the request's slot; the driver may
 *     answer with a REPLY with PROTO_F_SHM, no payload, `status` bytes at
 *     `shm`, which must lie within that request's slot (else a protocol
 *     violation, handled like a crash), or inline as always.
 * The daemon hands the data to FUSE straight from the mapping.  What a
 * driver can scribble on in the buffer is its own requests' data only
 * (each driver has its own buffer, replaced at every spawn): the daemon
 * reads nothing else from it and never trusts its content beyond passing
 * it to the reader, exactly as with inline data.
 *
 * Life of a connection: the driver sends HELLO (version and the files it
 * serves) once it has opened and claimed its device.  The daemon then sends
 * requests (OPEN READ WRITE POLL CTL PING, and for driver-owned trees
 * LOOKUP GETATTR READDIR CREATE UNLINK FLUSH), each answered by exactly one
 * REPLY carrying the same request id, and one-way messages (RELEASE,
 * CANCEL).  CANCEL asks the driver to cancel request `req`'s USB transfer;
 * that request still gets its REPLY (normally -EINTR).  The driver may send
 * POLL_READY (a handle became ready) and LOG at any time.
 *
 * Driver-owned trees (version 3).  A HELLO entry of kind PROTO_KIND_DIR
 * is a directory whose contents the driver serves: its id is a *node id*,
 * a nonzero 32-bit number the driver chooses (a PTP object handle), in a
 * space of its own, apart from file ids.  Below it, every name is asked of
 * the driver:
 *
 *   LOOKUP   file = parent node, payload = name
 *            REPLY: one node record (below), named as asked
 *   GETATTR  file = node
 *            REPLY: one node record
 *   READDIR  file = directory node, offset = index of the first entry
 *            wanted, size = most payload bytes wanted
 *            REPLY: as many whole node records as fit (none: the end)
 *   CREATE   file = parent node, handle = a new handle id, size = open(2)
 *            flags, payload = name
 *            REPLY: the new file's node record; the handle is open on it
 *   UNLINK   file = parent node, payload = name          REPLY: status
 *   FLUSH    handle (close(2) of a descriptor)            REPLY: status
 *
 * OPEN, READ, WRITE, POLL and RELEASE of a node set PROTO_F_NODE: the file
 * field then holds a node id, not a file id.  A node record is u32 node,
 * u8 kind (PROTO_KIND_DIR, or PROTO_KIND_BLOCK for a seekable file),
 * u16 mode (permission bits, at most 0777), u64 size (0 for a directory),
 * s64 mtime (seconds since the epoch), u8 namelen, name (a device's own
 * file name: spaces and UTF-8 allowed, see PROTO_MAX_NODE_NAME); a REPLY carrying
 * records has status = payload length, like a READ's.  The daemon makes
 * inode numbers from (function, node id), so the same node keeps its inode
 * across a respawn, and holds no other state about nodes: a driver that
 * answers for an id it does not know says ENOENT.  A device event that
 * changes the tree needs no message, since the daemon lets the kernel cache
 * no entry and no attribute of a node.
 *
 * Spare hosts.  Most of a driver's start (exec, the dynamic loader,
 * libusb_init, building the seccomp filter) does not depend on the device,
 * so the daemon keeps one host started ahead of need, `plugfs-driver
 * --spare`, with no device on its command line.  Once set up, a host that
 * finds no message waiting sends READY (no payload) and blocks reading its
 * socket; the daemon hands it a device with START.  START's payload is
 * what the command line would have said after the options: NUL-terminated
 * arguments (`[--detach] DEVNODE DRIVER:IFNUM...`), `size` bytes in all,
 * then, optionally, the device's raw descriptors as sysfs has them, which
 * spare the host reading them from the node again.  A host that gets
 * anything else first, or a START that proto_decode_start() refuses,
 * exits.  READY from a host that serves a device is a protocol violation.
 *
 * The daemon trusts nothing the driver sends: proto_decode_hdr() and
 * proto_decode_hello() check every field, and the daemon checks the rest
 * (known request id, reply size within what was asked).  A violation is
 * handled exactly like a crash.
 */
#ifndef PLUGFS_PROTO_H
#define PLUGFS_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION	3
#define PROTO_DRIVER_FD 3
#define PROTO_SHM_FD	4
#define PROTO_HDR_LEN	40
/* Largest READ/WRITE payload inside a message (a packet must fit the socket buffer). */
#define PROTO_MAX_IO	(128u * 1024)
#define PROTO_MAX_MSG	(PROTO_HDR_LEN + PROTO_MAX_IO)
#define PROTO_MAX_FILES 512
#define PROTO_MAX_NAME	64
/* A file name may be a path: "controls/brightness" (at most this many names). */
#define PROTO_MAX_DEPTH 4
/* A node's name (driver-owned trees): NAME_MAX, any byte but NUL, '/', controls and DEL. */
#define PROTO_MAX_NODE_NAME 255
#define PROTO_MAX_LOG	    512
#define PROTO_MAX_CTL	    256
/* The shared buffer: one slot per request, as large as the largest READ/WRITE. */
#define PROTO_SHM_SLOT	(1024u * 1024)
#define PROTO_SHM_SLOTS 16
#define PROTO_SHM_SIZE	(PROTO_SHM_SLOT * PROTO_SHM_SLOTS)
/*
 * Largest READ/WRITE, through a slot; FUSE max_read/max_write are set to
 * this.  A request that finds no free slot goes inline, cut to PROTO_MAX_IO.
 */
#define PROTO_MAX_REQ PROTO_SHM_SLOT

enum proto_type {
	/* Driver to daemon. */
	PROTO_HELLO = 1,
	PROTO_REPLY = 2,
	PROTO_POLL_READY = 3,
	PROTO_LOG = 4,
	PROTO_READY = 5, /* a spare host is set up and waits for START */
	/* Daemon to driver. */
	PROTO_OPEN = 16,
	PROTO_READ = 17,
	PROTO_WRITE = 18,
	PROTO_POLL = 19,
	PROTO_RELEASE = 20,
	PROTO_CANCEL = 21,
	PROTO_PING = 22,
	PROTO_CTL = 23,
	/* Daemon to driver, driver-owned trees (version 3). */
	PROTO_LOOKUP = 24,
	PROTO_GETATTR = 25,
	PROTO_READDIR = 26,
	PROTO_CREATE = 27,
	PROTO_UNLINK = 28,
	PROTO_FLUSH = 29,
	/* Daemon to a spare host: its device. */
	PROTO_START = 30,
};

/* PROTO_CTL's file field: which function and unit the command is for. */
#define PROTO_CTL_TARGET(function, unit) ((uint32_t)(function) | (uint32_t)(unit) << 8)
#define PROTO_CTL_FUNCTION(file)	 ((uint32_t)(file)&0xffu)
#define PROTO_CTL_UNIT(file)		 (((file) >> 8) & 0xffu)

/* Header flags. */
#define PROTO_F_NONBLOCK 0x0001 /* READ/WRITE: the handle is O_NONBLOCK now */
#define PROTO_F_SHM	 0x0002 /* HELLO: the shared buffer is mapped; READ/WRITE/REPLY: data at `shm` */
#define PROTO_F_NODE	 0x0004 /* OPEN/READ/WRITE/POLL/RELEASE: `file` is a node id */
#define PROTO_F_ALL	 0x0007

/* File kinds, announced in HELLO. */
enum proto_kind {
	PROTO_KIND_SMALL = 0,  /* short content, read to EOF, seekable */
	PROTO_KIND_STREAM = 1, /* non-seekable byte or record stream, st_size 0 */
	PROTO_KIND_BLOCK = 2,  /* seekable medium, st_size = size; reads have no side effects and come
				* back short only at its end, so the daemon may read ahead; a write only
				* stores its bytes there, so the daemon may gather writes, and write them
				* again through the next process after a crash (supervisor.c) */
	PROTO_KIND_DIR = 3,    /* a directory the driver serves; id is its node id */
};
#define PROTO_KIND_MASK 0x0f
/* Reads and writes may legitimately wait forever (input reports, a printer printing): no request deadline. */
#define PROTO_FILE_UNTIMED   0x10
#define PROTO_FILE_FLAGS_ALL 0x10

struct proto_hdr {
	uint32_t len;
	uint16_t type;
	uint16_t flags;
	uint32_t req;
	uint32_t handle;
	uint32_t file;
	uint32_t size;
	uint64_t offset;
	int32_t status;
	uint32_t shm;
};

/*
 * A function (one DRIVER:IFNUM of the driver's command line) may serve
 * several units: the LUNs of a disk.  Unit 0 is the function the daemon
 * created for the interface; the first HELLO that announces files for
 * (function, unit > 0) makes the daemon add a directory for that unit,
 * named like any other function of the same kind (disk1).
 */
struct proto_file {
	uint32_t id;
	uint8_t function; /* index into the driver's --bind list */
	uint8_t unit;	  /* 0, or the LUN of an extra unit of the function */
	uint8_t kind;	  /* enum proto_kind | PROTO_FILE_* flags */
	uint16_t mode;	  /* permission bits, 0444 / 0222 / 0666 ... */
	uint64_t size;
	char name[PROTO_MAX_NAME + 1];
};

struct proto_hello {
	uint16_t version;
	uint16_t nfiles;
	struct proto_file files[PROTO_MAX_FILES];
};

const char *proto_type_name(uint16_t type);

/* Writes the 40-byte header into buf. */
void proto_encode_hdr(uint8_t *buf, const struct proto_hdr *h);

/*
 * Decodes and checks a header from a received packet of `n` bytes: the
 * length must equal n, the type must be known, flags known, and the
 * payload size must suit the type; with PROTO_F_SHM, the message must be
 * a HELLO, READ, WRITE or REPLY without payload (HELLO: with its payload),
 * a READ's or WRITE's `shm` a slot's start and a WRITE's size at most a
 * slot, a REPLY's data within the buffer; without it `shm` must be 0.  Returns 0 or -EPROTO;
 * on -EPROTO, *why (if not NULL) says what was wrong.
 */
int proto_decode_hdr(const uint8_t *buf, size_t n, struct proto_hdr *h, const char **why);

/*
 * HELLO payload: u16 version, u16 nfiles, then per file
 * u32 id, u8 function, u8 unit, u8 kind, u16 mode, u64 size, u8 namelen,
 * name (version 2 added `unit`; version 3 kind PROTO_KIND_DIR, whose mode may
 * have x bits and whose name is one component).
 * proto_encode_hello returns the payload length, -ENOSPC if cap is
 * too small, or -EINVAL for more than PROTO_MAX_FILES files.  proto_decode_hello checks everything: version,
 * counts, unique ids and (function, unit, name) triples, names that are valid file names
 * or paths of them ("controls/brightness": the daemon shows `controls` as a directory),
 * and that no name is both a file and a directory of the same function.
 */
int proto_encode_hello(uint8_t *buf, size_t cap, const struct proto_hello *hello);
int proto_decode_hello(const uint8_t *buf, size_t n, struct proto_hello *hello, const char **why);

/*
 * Builds a complete message (header + payload) in buf (at least
 * PROTO_HDR_LEN + plen bytes); sets h->len.  Returns the message length.
 */
size_t proto_build(uint8_t *buf, struct proto_hdr *h, const void *payload, size_t plen);

/* Most arguments a START may carry: --detach, the node, one DRIVER:IFNUM per interface. */
#define PROTO_START_MAX_ARGS 40
/* Longest argument of a START (a device node path, a DRIVER:IFNUM). */
#define PROTO_START_MAX_ARG 255

/*
 * START payload (see "Spare hosts" above): the `n` arguments, each with its
 * NUL, then `desc_len` bytes of descriptors (none: desc_len 0).  Returns
 * the payload length and sets *args_len (the header's `size`), or -EINVAL
 * (an empty, too long or too many argument) or -ENOSPC (cap too small).
 */
int proto_encode_start(uint8_t *buf, size_t cap, const char *const *args, unsigned n, const uint8_t *desc,
		       size_t desc_len, uint32_t *args_len);
/*
 * Decodes a START payload of n bytes whose argument block is `args_len`
 * bytes, in place: argv[0..*argc-1] point into buf (at most `cap` of them),
 * *desc and *desc_len the descriptors (NULL, 0 for none).  Each argument
 * must be 1 to PROTO_START_MAX_ARG printable ASCII characters, the block
 * must end with a NUL and hold 1 to min(cap, PROTO_START_MAX_ARGS)
 * arguments.  0, or -EPROTO with *why set.
 */
int proto_decode_start(uint8_t *buf, size_t n, uint32_t args_len, char **argv, unsigned cap, unsigned *argc,
		       const uint8_t **desc, size_t *desc_len, const char **why);

/* A node of a driver-owned tree, as LOOKUP, GETATTR, READDIR and CREATE answer. */
struct proto_node {
	uint32_t id;  /* nonzero */
	uint8_t kind; /* PROTO_KIND_DIR or PROTO_KIND_BLOCK */
	uint16_t mode;
	uint64_t size;
	int64_t mtime;
	char name[PROTO_MAX_NODE_NAME + 1];
};

/* Largest mtime a node may carry: year 10000, as far as anyone's clock goes. */
#define PROTO_MAX_MTIME 253402300799LL

/* A name a node may have (and LOOKUP, CREATE, UNLINK may carry). */
int proto_valid_node_name(const char *name, size_t len);

/* Appends one node record at buf + *off (cap bytes in all); 0 or -ENOSPC. */
int proto_encode_node(uint8_t *buf, size_t cap, size_t *off, const struct proto_node *node);
/*
 * Decodes the record at buf + *off of a payload of n bytes and advances
 * *off; 0, or -EPROTO with *why set: truncated, node id 0, unknown kind,
 * mode beyond 0777, a directory with a size, size or mtime out of range,
 * a name that is not a valid file name (no '/').
 */
int proto_decode_node(const uint8_t *buf, size_t n, size_t *off, struct proto_node *node, const char **why);

/* Little-endian helpers, shared by the codec and the drivers. */
static inline void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = v & 0xff;
	p[1] = v >> 8;
}
static inline void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (v >> (8 * i)) & 0xff;
}
static inline void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (v >> (8 * i)) & 0xff;
}
static inline uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

#endif
