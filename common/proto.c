/*
 * Codec of the daemon <-> driver protocol (see proto.h).  Small on purpose:
 * it is what stands between the daemon and a driver that may lie, and it is
 * unit-tested and fuzzed.
 */
#include "proto.h"

#include <errno.h>
#include <string.h>

static const char *const type_names[] = {
    [PROTO_HELLO] = "HELLO",   [PROTO_REPLY] = "REPLY",	    [PROTO_POLL_READY] = "POLL_READY",
    [PROTO_LOG] = "LOG",       [PROTO_OPEN] = "OPEN",	    [PROTO_READ] = "READ",
    [PROTO_WRITE] = "WRITE",   [PROTO_POLL] = "POLL",	    [PROTO_RELEASE] = "RELEASE",
    [PROTO_CANCEL] = "CANCEL", [PROTO_PING] = "PING",	    [PROTO_CTL] = "CTL",
    [PROTO_LOOKUP] = "LOOKUP", [PROTO_GETATTR] = "GETATTR", [PROTO_READDIR] = "READDIR",
    [PROTO_CREATE] = "CREATE", [PROTO_UNLINK] = "UNLINK",   [PROTO_FLUSH] = "FLUSH",
    [PROTO_READY] = "READY",   [PROTO_START] = "START",
};

const char *proto_type_name(uint16_t type)
{
	if (type < sizeof(type_names) / sizeof(type_names[0]) && type_names[type] != NULL)
		return type_names[type];
	return "?";
}

void proto_encode_hdr(uint8_t *buf, const struct proto_hdr *h)
{
	put_le32(buf + 0, h->len);
	put_le16(buf + 4, h->type);
	put_le16(buf + 6, h->flags);
	put_le32(buf + 8, h->req);
	put_le32(buf + 12, h->handle);
	put_le32(buf + 16, h->file);
	put_le32(buf + 20, h->size);
	put_le64(buf + 24, h->offset);
	put_le32(buf + 32, (uint32_t)h->status);
	put_le32(buf + 36, h->shm);
}

size_t proto_build(uint8_t *buf, struct proto_hdr *h, const void *payload, size_t plen)
{
	h->len = (uint32_t)(PROTO_HDR_LEN + plen);
	proto_encode_hdr(buf, h);
	if (plen > 0)
		memcpy(buf + PROTO_HDR_LEN, payload, plen);
	return h->len;
}

/* Bounds of the payload length, per message type. */
struct payload_rule {
	uint32_t min, max;
};

static const struct payload_rule payload_rules[] = {
    [PROTO_HELLO] = {4, PROTO_MAX_IO},
    [PROTO_REPLY] = {0, PROTO_MAX_IO},
    [PROTO_POLL_READY] = {0, 0},
    [PROTO_LOG] = {1, PROTO_MAX_LOG},
    [PROTO_OPEN] = {0, 0},
    [PROTO_READ] = {0, 0},
    [PROTO_WRITE] = {0, PROTO_MAX_IO},
    [PROTO_POLL] = {0, 0},
    [PROTO_RELEASE] = {0, 0},
    [PROTO_CANCEL] = {0, 0},
    [PROTO_PING] = {0, 0},
    [PROTO_CTL] = {1, PROTO_MAX_CTL},
    [PROTO_LOOKUP] = {1, PROTO_MAX_NODE_NAME},
    [PROTO_GETATTR] = {0, 0},
    [PROTO_READDIR] = {0, 0},
    [PROTO_CREATE] = {1, PROTO_MAX_NODE_NAME},
    [PROTO_UNLINK] = {1, PROTO_MAX_NODE_NAME},
    [PROTO_FLUSH] = {0, 0},
    [PROTO_READY] = {0, 0},
    [PROTO_START] = {2, PROTO_MAX_IO},
};

static int fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return -EPROTO;
}

/* The shared-buffer fields (see proto.h); the daemon checks that a REPLY's data is in its request's slot. */
static int check_shm(const struct proto_hdr *h, uint32_t plen, const char **why)
{
	if (!(h->flags & PROTO_F_SHM))
		return h->shm == 0 ? 0 : fail(why, "shm field set without PROTO_F_SHM");
	switch (h->type) {
	case PROTO_HELLO:
		return h->shm == 0 ? 0 : fail(why, "HELLO with a shm offset");
	case PROTO_READ:
	case PROTO_WRITE:
		if (plen != 0)
			return fail(why, "shared-buffer request with a payload");
		if (h->shm % PROTO_SHM_SLOT != 0 || h->shm >= PROTO_SHM_SIZE)
			return fail(why, "shared-buffer request not at a slot");
		if (h->type == PROTO_WRITE && h->size > PROTO_SHM_SLOT)
			return fail(why, "shared-buffer write larger than a slot");
		return 0;
	case PROTO_REPLY:
		if (plen != 0)
			return fail(why, "shared-buffer reply with a payload");
		if (h->status < 0 || (uint64_t)h->shm + (uint64_t)h->status > PROTO_SHM_SIZE ||
		    (uint32_t)h->status > PROTO_SHM_SLOT)
			return fail(why, "shared-buffer reply outside the buffer");
		return 0;
	default:
		return fail(why, "PROTO_F_SHM on a message that carries no data");
	}
}

int proto_decode_hdr(const uint8_t *buf, size_t n, struct proto_hdr *h, const char **why)
{
	if (n < PROTO_HDR_LEN)
		return fail(why, "message shorter than the header");
	if (n > PROTO_MAX_MSG)
		return fail(why, "message too long");
	h->len = get_le32(buf + 0);
	h->type = get_le16(buf + 4);
	h->flags = get_le16(buf + 6);
	h->req = get_le32(buf + 8);
	h->handle = get_le32(buf + 12);
	h->file = get_le32(buf + 16);
	h->size = get_le32(buf + 20);
	h->offset = get_le64(buf + 24);
	h->status = (int32_t)get_le32(buf + 32);
	h->shm = get_le32(buf + 36);
	if (h->len != n)
		return fail(why, "length field does not match the message");
	if (h->flags & ~PROTO_F_ALL)
		return fail(why, "unknown flags");
	if (h->type >= sizeof(payload_rules) / sizeof(payload_rules[0]) || type_names[h->type] == NULL)
		return fail(why, "unknown message type");
	uint32_t plen = h->len - PROTO_HDR_LEN;
	if (plen < payload_rules[h->type].min || plen > payload_rules[h->type].max)
		return fail(why, "payload length wrong for the message type");
	if ((h->type == PROTO_READ && h->size > (h->flags & PROTO_F_SHM ? PROTO_SHM_SLOT : PROTO_MAX_IO)) ||
	    (h->type == PROTO_READDIR && h->size > PROTO_MAX_IO))
		return fail(why, "read size too large");
	if (h->type == PROTO_REPLY && plen > 0 && (h->status < 0 || (uint32_t)h->status != plen))
		return fail(why, "reply payload does not match its status");
	if (h->type == PROTO_START && (h->size == 0 || h->size > plen))
		return fail(why, "START arguments larger than its payload");
	return check_shm(h, plen, why);
}

/* Per file entry: id(4) function(1) unit(1) kind(1) mode(2) size(8) namelen(1). */
#define ENTRY_FIXED 18

int proto_encode_hello(uint8_t *buf, size_t cap, const struct proto_hello *hello)
{
	size_t off = 4;

	if (cap < 4)
		return -ENOSPC;
	if (hello->nfiles > PROTO_MAX_FILES)
		return -EINVAL;
	put_le16(buf, hello->version);
	put_le16(buf + 2, hello->nfiles);
	for (unsigned i = 0; i < hello->nfiles; i++) {
		const struct proto_file *f = &hello->files[i];
		size_t nlen = strnlen(f->name, PROTO_MAX_NAME);

		if (off + ENTRY_FIXED + nlen > cap)
			return -ENOSPC;
		put_le32(buf + off, f->id);
		buf[off + 4] = f->function;
		buf[off + 5] = f->unit;
		buf[off + 6] = f->kind;
		put_le16(buf + off + 7, f->mode);
		put_le64(buf + off + 9, f->size);
		buf[off + 17] = (uint8_t)nlen;
		memcpy(buf + off + ENTRY_FIXED, f->name, nlen);
		off += ENTRY_FIXED + nlen;
	}
	return (int)off;
}

static int valid_component(const char *name, size_t len)
{
	if (len == 0 || (len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= ' ' || c >= 0x7f || c == '/')
			return 0;
	}
	return 1;
}

/* A file name, or a path of at most PROTO_MAX_DEPTH such names joined by '/'. */
static int valid_file_name(const char *name, size_t len)
{
	unsigned depth = 0;

	for (size_t start = 0;;) {
		const char *slash = memchr(name + start, '/', len - start);
		size_t end = slash != NULL ? (size_t)(slash - name) : len;
		if (!valid_component(name + start, end - start) || ++depth > PROTO_MAX_DEPTH)
			return 0;
		if (slash == NULL)
			return 1;
		start = end + 1;
	}
}

/* b lies inside directory a: "controls" and "controls/brightness". */
static int is_below(const char *a, const char *b)
{
	size_t n = strlen(a);

	return strncmp(a, b, n) == 0 && b[n] == '/';
}

int proto_decode_hello(const uint8_t *buf, size_t n, struct proto_hello *hello, const char **why)
{
	size_t off = 4;

	if (n < 4)
		return fail(why, "HELLO too short");
	hello->version = get_le16(buf);
	hello->nfiles = get_le16(buf + 2);
	if (hello->version != PROTO_VERSION)
		return fail(why, "HELLO: unsupported protocol version");
	if (hello->nfiles > PROTO_MAX_FILES)
		return fail(why, "HELLO: too many files");
	for (unsigned i = 0; i < hello->nfiles; i++) {
		struct proto_file *f = &hello->files[i];

		if (n - off < ENTRY_FIXED)
			return fail(why, "HELLO: truncated file entry");
		f->id = get_le32(buf + off);
		f->function = buf[off + 4];
		f->unit = buf[off + 5];
		f->kind = buf[off + 6];
		f->mode = get_le16(buf + off + 7);
		f->size = get_le64(buf + off + 9);
		size_t nlen = buf[off + 17];
		off += ENTRY_FIXED;
		if (nlen > PROTO_MAX_NAME || n - off < nlen)
			return fail(why, "HELLO: bad file name length");
		if (!valid_file_name((const char *)buf + off, nlen))
			return fail(why, "HELLO: invalid file name");
		memcpy(f->name, buf + off, nlen);
		f->name[nlen] = '\0';
		off += nlen;
		if ((f->kind & PROTO_KIND_MASK) > PROTO_KIND_DIR ||
		    (f->kind & ~PROTO_KIND_MASK & ~PROTO_FILE_FLAGS_ALL))
			return fail(why, "HELLO: unknown file kind");
		if (f->kind == PROTO_KIND_DIR) {
			if (f->id == 0)
				return fail(why, "HELLO: directory with node id 0");
			if (f->mode & ~0777u)
				return fail(why, "HELLO: directory mode beyond permission bits");
			if (strchr(f->name, '/') != NULL)
				return fail(why, "HELLO: a driver's directory must be a single name");
		} else if ((f->kind & PROTO_KIND_MASK) == PROTO_KIND_DIR) {
			return fail(why, "HELLO: unknown file kind (flags on a directory)");
		} else if (f->mode & ~0666u)
			return fail(why, "HELLO: file mode beyond rw bits");
		if ((f->kind & PROTO_KIND_MASK) != PROTO_KIND_BLOCK && f->size != 0)
			return fail(why, "HELLO: size given for a file that is not a block file");
		if (f->size > (uint64_t)INT64_MAX)
			return fail(why, "HELLO: file size out of range");
		for (unsigned j = 0; j < i; j++) {
			if (hello->files[j].id == f->id)
				return fail(why, "HELLO: duplicate file id");
			if (hello->files[j].function == f->function && hello->files[j].unit == f->unit &&
			    strcmp(hello->files[j].name, f->name) == 0)
				return fail(why, "HELLO: duplicate file name");
			if (hello->files[j].function == f->function && hello->files[j].unit == f->unit &&
			    (is_below(hello->files[j].name, f->name) ||
			     is_below(f->name, hello->files[j].name)))
				return fail(why, "HELLO: a name is both a file and a directory");
		}
	}
	if (off != n)
		return fail(why, "HELLO: trailing bytes");
	return 0;
}

int proto_valid_node_name(const char *name, size_t len)
{
	if (len == 0 || len > PROTO_MAX_NODE_NAME || (len == 1 && name[0] == '.') ||
	    (len == 2 && name[0] == '.' && name[1] == '.'))
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < ' ' || c == 0x7f || c == '/')
			return 0;
	}
	return 1;
}

/* Per node record: node(4) kind(1) mode(2) size(8) mtime(8) namelen(1). */
#define NODE_FIXED 24

int proto_encode_node(uint8_t *buf, size_t cap, size_t *off, const struct proto_node *node)
{
	size_t nlen = strnlen(node->name, PROTO_MAX_NODE_NAME);
	uint8_t *p = buf + *off;

	if (*off > cap || cap - *off < NODE_FIXED + nlen)
		return -ENOSPC;
	put_le32(p, node->id);
	p[4] = node->kind;
	put_le16(p + 5, node->mode);
	put_le64(p + 7, node->size);
	put_le64(p + 15, (uint64_t)node->mtime);
	p[23] = (uint8_t)nlen;
	memcpy(p + NODE_FIXED, node->name, nlen);
	*off += NODE_FIXED + nlen;
	return 0;
}

int proto_decode_node(const uint8_t *buf, size_t n, size_t *off, struct proto_node *node, const char **why)
{
	const uint8_t *p = buf + *off;

	if (*off > n || n - *off < NODE_FIXED)
		return fail(why, "node record truncated");
	node->id = get_le32(p);
	node->kind = p[4];
	node->mode = get_le16(p + 5);
	node->size = get_le64(p + 7);
	node->mtime = (int64_t)get_le64(p + 15);
	size_t nlen = p[23];
	if (n - *off - NODE_FIXED < nlen)
		return fail(why, "node record: bad name length");
	if (!proto_valid_node_name((const char *)p + NODE_FIXED, nlen))
		return fail(why, "node record: invalid name");
	memcpy(node->name, p + NODE_FIXED, nlen);
	node->name[nlen] = '\0';
	if (node->id == 0)
		return fail(why, "node record: node id 0");
	if (node->kind != PROTO_KIND_DIR && node->kind != PROTO_KIND_BLOCK)
		return fail(why, "node record: unknown kind");
	if (node->mode & ~0777u)
		return fail(why, "node record: mode beyond permission bits");
	if (node->kind == PROTO_KIND_DIR && node->size != 0)
		return fail(why, "node record: a directory with a size");
	if (node->size > (uint64_t)INT64_MAX)
		return fail(why, "node record: size out of range");
	if (node->mtime < 0 || node->mtime > PROTO_MAX_MTIME)
		return fail(why, "node record: mtime out of range");
	*off += NODE_FIXED + nlen;
	return 0;
}

int proto_encode_start(uint8_t *buf, size_t cap, const char *const *args, unsigned n, const uint8_t *desc,
		       size_t desc_len, uint32_t *args_len)
{
	size_t off = 0;

	if (n == 0 || n > PROTO_START_MAX_ARGS)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		size_t len = strlen(args[i]);
		if (len == 0 || len > PROTO_START_MAX_ARG)
			return -EINVAL;
		if (off + len + 1 > cap)
			return -ENOSPC;
		memcpy(buf + off, args[i], len + 1);
		off += len + 1;
	}
	if (off + desc_len > cap || off + desc_len > PROTO_MAX_IO)
		return -ENOSPC;
	if (desc_len > 0)
		memcpy(buf + off, desc, desc_len);
	*args_len = (uint32_t)off;
	return (int)(off + desc_len);
}

int proto_decode_start(uint8_t *buf, size_t n, uint32_t args_len, char **argv, unsigned cap, unsigned *argc,
		       const uint8_t **desc, size_t *desc_len, const char **why)
{
	unsigned count = 0;
	size_t start = 0;

	if (args_len == 0 || args_len > n)
		return fail(why, "START arguments larger than its payload");
	if (buf[args_len - 1] != '\0')
		return fail(why, "START arguments not NUL-terminated");
	for (size_t i = 0; i < args_len; i++) {
		if (buf[i] != '\0') {
			if (buf[i] < ' ' || buf[i] >= 0x7f)
				return fail(why, "START argument with a control or non-ASCII byte");
			continue;
		}
		if (i == start)
			return fail(why, "empty START argument");
		if (i - start > PROTO_START_MAX_ARG)
			return fail(why, "START argument too long");
		if (count == cap || count == PROTO_START_MAX_ARGS)
			return fail(why, "too many START arguments");
		argv[count++] = (char *)buf + start;
		start = i + 1;
	}
	*argc = count;
	*desc = n > args_len ? buf + args_len : NULL;
	*desc_len = n - args_len;
	return 0;
}
