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
 *                     POLL_READY: revents; LOG: syslog priority
 *    36    4 reserved must be 0
 *
 * Life of a connection: the driver sends HELLO (version and the files it
 * serves) once it has opened and claimed its device.  The daemon then sends
 * requests (OPEN READ WRITE POLL CTL PING), each answered by exactly one
 * REPLY carrying the same request id, and one-way messages (RELEASE,
 * CANCEL).  CANCEL asks the driver to cancel request `req`'s USB transfer;
 * that request still gets its REPLY (normally -EINTR).  The driver may send
 * POLL_READY (a handle became ready) and LOG at any time.
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

#define PROTO_VERSION	2
#define PROTO_DRIVER_FD 3
#define PROTO_HDR_LEN	40
/* Largest READ/WRITE payload; FUSE max_read/max_write are set to this. */
#define PROTO_MAX_IO	(128u * 1024)
#define PROTO_MAX_MSG	(PROTO_HDR_LEN + PROTO_MAX_IO)
#define PROTO_MAX_FILES 512
#define PROTO_MAX_NAME	64
/* A file name may be a path: "controls/brightness" (at most this many names). */
#define PROTO_MAX_DEPTH 4
#define PROTO_MAX_LOG	512
#define PROTO_MAX_CTL	256

enum proto_type {
	/* Driver to daemon. */
	PROTO_HELLO = 1,
	PROTO_REPLY = 2,
	PROTO_POLL_READY = 3,
	PROTO_LOG = 4,
	/* Daemon to driver. */
	PROTO_OPEN = 16,
	PROTO_READ = 17,
	PROTO_WRITE = 18,
	PROTO_POLL = 19,
	PROTO_RELEASE = 20,
	PROTO_CANCEL = 21,
	PROTO_PING = 22,
	PROTO_CTL = 23,
};

/* PROTO_CTL's file field: which function and unit the command is for. */
#define PROTO_CTL_TARGET(function, unit) ((uint32_t)(function) | (uint32_t)(unit) << 8)
#define PROTO_CTL_FUNCTION(file)	 ((uint32_t)(file)&0xffu)
#define PROTO_CTL_UNIT(file)		 (((file) >> 8) & 0xffu)

/* Header flags. */
#define PROTO_F_NONBLOCK 0x0001 /* READ/WRITE: the handle is O_NONBLOCK now */
#define PROTO_F_ALL	 0x0001

/* File kinds, announced in HELLO. */
enum proto_kind {
	PROTO_KIND_SMALL = 0,  /* short content, read to EOF, seekable */
	PROTO_KIND_STREAM = 1, /* non-seekable byte or record stream, st_size 0 */
	PROTO_KIND_BLOCK = 2,  /* seekable medium, st_size = size */
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
 * length must equal n, the type must be known, flags and reserved bits
 * clear, and the payload size must suit the type.  Returns 0 or -EPROTO;
 * on -EPROTO, *why (if not NULL) says what was wrong.
 */
int proto_decode_hdr(const uint8_t *buf, size_t n, struct proto_hdr *h, const char **why);

/*
 * HELLO payload: u16 version, u16 nfiles, then per file
 * u32 id, u8 function, u8 unit, u8 kind, u16 mode, u64 size, u8 namelen,
 * name (version 2 added `unit`).
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
