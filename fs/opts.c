/*
 * Command line and -o options (SPEC.md "Command line"), parsed with
 * libfuse's option parser.  plugfs's own options are consumed here; the
 * rest (allow_other, default_permissions...) stay in the argument list for
 * fuse_session_new(), which refuses what it does not know.
 *
 * Two calling conventions are accepted:
 *     plugfs [-f] [-d] [-o OPTS] MOUNTPOINT
 *     plugfs SOURCE MOUNTPOINT -o OPTS        (mount.fuse3, fstab)
 * and one that mounts nothing:
 *     plugfs --list [-o only=...,detach=...]
 */
#include <errno.h>
#include <limits.h>
#include <fuse_lowlevel.h>
#include <fuse_opt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugfs.h"

struct plugfs_opts opts;

enum { KEY_HELP, KEY_VERSION, KEY_LIST, KEY_NONEMPTY, KEY_FOREGROUND, KEY_DEBUG, KEY_DISCARD };

#define OPT(t, p)                                                                                            \
	{                                                                                                    \
		t, offsetof(struct plugfs_opts, p), 1                                                        \
	}

static const struct fuse_opt plugfs_opt_spec[] = {
    OPT("driver_user=%s", driver_user),
    /* Numbers are taken as text and parsed strictly: libfuse's %u takes "5000ms". */
    OPT("restart_max=%s", num_str[NUM_RESTART_MAX]),
    OPT("restart_window=%s", num_str[NUM_RESTART_WINDOW]),
    OPT("backoff_min=%s", num_str[NUM_BACKOFF_MIN]),
    OPT("backoff_max=%s", num_str[NUM_BACKOFF_MAX]),
    OPT("timeout=%s", num_str[NUM_TIMEOUT]),
    OPT("detach=%s", detach_str),
    OPT("only=%s", only_str),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    FUSE_OPT_KEY("-l", KEY_LIST),
    FUSE_OPT_KEY("--list", KEY_LIST),
    /* libfuse 3 mounts anywhere; plugfs refuses to hide files unless told (fs/main.c). */
    FUSE_OPT_KEY("nonempty", KEY_NONEMPTY),
    FUSE_OPT_KEY("-f", KEY_FOREGROUND),
    FUSE_OPT_KEY("-d", KEY_DEBUG),
    FUSE_OPT_KEY("debug", KEY_DEBUG),
    /* Options meant for mount(8) or systemd that reach us through fstab. */
    FUSE_OPT_KEY("auto", KEY_DISCARD),
    FUSE_OPT_KEY("noauto", KEY_DISCARD),
    FUSE_OPT_KEY("nofail", KEY_DISCARD),
    FUSE_OPT_KEY("_netdev", KEY_DISCARD),
    FUSE_OPT_KEY("defaults", KEY_DISCARD),
    FUSE_OPT_KEY("user", KEY_DISCARD),
    FUSE_OPT_KEY("users", KEY_DISCARD),
    FUSE_OPT_KEY("comment=", KEY_DISCARD),
    FUSE_OPT_END,
};

static int opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	struct plugfs_opts *o = data;
	(void)outargs;

	switch (key) {
	case KEY_HELP:
		o->show_help = 1;
		return 0;
	case KEY_VERSION:
		o->show_version = 1;
		return 0;
	case KEY_LIST:
		o->list = 1;
		return 0;
	case KEY_NONEMPTY:
		o->nonempty = 1;
		return 0;
	case KEY_FOREGROUND:
		o->foreground = 1;
		return 0;
	case KEY_DEBUG:
		o->debug = 1;
		o->foreground = 1;
		return 1; /* libfuse prints its own request trace too */
	case KEY_DISCARD:
		return 0;
	case FUSE_OPT_KEY_NONOPT:
		/* One positional: the mountpoint.  Two: mount.fuse3's SOURCE MOUNTPOINT. */
		if (++o->npositional > 2) {
			fprintf(stderr, "plugfs: too many arguments: %s\n", arg);
			return -1;
		}
		free(o->mountpoint);
		o->mountpoint = strdup(arg);
		return o->mountpoint == NULL ? -1 : 0;
	case FUSE_OPT_KEY_OPT:
		/* x-systemd.automount and friends are for systemd, not us. */
		return strncmp(arg, "x-", 2) == 0 ? 0 : 1;
	default:
		return 1;
	}
}

static int parse_hex16(const char *s, size_t len, uint16_t *out)
{
	unsigned v = 0;

	if (len != 4)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9'   ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10
					       : -1;
		if (d < 0)
			return -EINVAL;
		v = v << 4 | (unsigned)d;
	}
	*out = (uint16_t)v;
	return 0;
}

/* "none", "all", or VID:PID[:VID:PID...] with 4-digit hex numbers. */
int opts_parse_vidpid_list(const char *s, struct vidpid_list *l)
{
	memset(l, 0, sizeof(*l));
	if (strcmp(s, "none") == 0)
		return 0;
	if (strcmp(s, "all") == 0) {
		l->all = 1;
		return 0;
	}
	const char *p = s;
	for (;;) {
		const char *c1 = strchr(p, ':');
		if (c1 == NULL)
			return -EINVAL;
		const char *c2 = strchr(c1 + 1, ':');
		size_t plen = c2 != NULL ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1);
		if (l->n == PLUGFS_MAX_VIDPID)
			return -E2BIG;
		struct vidpid *v = &l->ids[l->n];
		if (parse_hex16(p, (size_t)(c1 - p), &v->vendor_id) < 0 ||
		    parse_hex16(c1 + 1, plen, &v->product_id) < 0)
			return -EINVAL;
		l->n++;
		if (c2 == NULL)
			return 0;
		p = c2 + 1;
	}
}

int vidpid_list_has(const struct vidpid_list *l, uint16_t vid, uint16_t pid)
{
	if (l->all)
		return 1;
	for (unsigned i = 0; i < l->n; i++)
		if (l->ids[i].vendor_id == vid && l->ids[i].product_id == pid)
			return 1;
	return 0;
}

void opts_free(struct plugfs_opts *o)
{
	free(o->mountpoint);
	free(o->driver_user);
	free(o->detach_str);
	free(o->only_str);
	for (int i = 0; i < NUM_OPTS; i++)
		free(o->num_str[i]);
	memset(o, 0, sizeof(*o));
}

/*
 * Parses argv into *o and leaves the options for libfuse in fuse_args.
 * Returns 0, or -EINVAL after printing what was wrong.
 */
int opts_parse(int argc, char **argv, struct plugfs_opts *o, void *fuse_args)
{
	struct fuse_args *args = fuse_args;

	memset(o, 0, sizeof(*o));
	o->restart_max = 5;
	o->restart_window_s = 60;
	o->backoff_min_ms = 10;
	o->backoff_max_ms = 5000;
	o->timeout_ms = 5000;
	o->only.all = 1;
	args->argc = argc;
	args->argv = argv;
	args->allocated = 0;
	if (fuse_opt_parse(args, o, plugfs_opt_spec, opt_proc) < 0)
		return -EINVAL;
	if (o->show_help || o->show_version)
		return 0;
	static const char *const num_names[NUM_OPTS] = {
	    [NUM_RESTART_MAX] = "restart_max", [NUM_RESTART_WINDOW] = "restart_window",
	    [NUM_BACKOFF_MIN] = "backoff_min", [NUM_BACKOFF_MAX] = "backoff_max",
	    [NUM_TIMEOUT] = "timeout",
	};
	unsigned *const num_dest[NUM_OPTS] = {
	    [NUM_RESTART_MAX] = &o->restart_max,    [NUM_RESTART_WINDOW] = &o->restart_window_s,
	    [NUM_BACKOFF_MIN] = &o->backoff_min_ms, [NUM_BACKOFF_MAX] = &o->backoff_max_ms,
	    [NUM_TIMEOUT] = &o->timeout_ms,
	};
	for (int i = 0; i < NUM_OPTS; i++) {
		const char *v = o->num_str[i];
		char *end;
		if (v == NULL)
			continue;
		errno = 0;
		unsigned long n = strtoul(v, &end, 10);
		if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0 || n > UINT_MAX) {
			fprintf(stderr, "plugfs: %s=%s: expected a number\n", num_names[i], v);
			return -EINVAL;
		}
		*num_dest[i] = (unsigned)n;
	}
	if (o->list && o->mountpoint != NULL) {
		fprintf(stderr, "plugfs: --list mounts nothing: no mountpoint wanted (got %s)\n",
			o->mountpoint);
		return -EINVAL;
	}
	if (o->mountpoint == NULL && !o->list) {
		fprintf(stderr, "plugfs: no mountpoint given (try plugfs -h)\n");
		return -EINVAL;
	}
	if (o->restart_max >= 64) {
		fprintf(stderr, "plugfs: restart_max=%u: must be below 64\n", o->restart_max);
		return -EINVAL;
	}
	if (o->restart_window_s == 0) {
		fprintf(stderr, "plugfs: restart_window must be at least 1 second\n");
		return -EINVAL;
	}
	if (o->backoff_min_ms == 0 || o->backoff_max_ms < o->backoff_min_ms) {
		fprintf(stderr, "plugfs: need 0 < backoff_min <= backoff_max (got %u, %u)\n",
			o->backoff_min_ms, o->backoff_max_ms);
		return -EINVAL;
	}
	if (o->timeout_ms < 10 || o->timeout_ms > 3600000) {
		fprintf(stderr, "plugfs: timeout=%u: must be between 10 and 3600000 ms\n", o->timeout_ms);
		return -EINVAL;
	}
	if (o->detach_str != NULL && opts_parse_vidpid_list(o->detach_str, &o->detach) < 0) {
		fprintf(stderr, "plugfs: detach=%s: expected none, all or VID:PID[:VID:PID...]\n",
			o->detach_str);
		return -EINVAL;
	}
	if (o->only_str != NULL) {
		if (opts_parse_vidpid_list(o->only_str, &o->only) < 0 || o->only.all || o->only.n == 0) {
			fprintf(stderr, "plugfs: only=%s: expected VID:PID[:VID:PID...]\n", o->only_str);
			return -EINVAL;
		}
	}
	return 0;
}
