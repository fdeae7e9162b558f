/*
 * fault-campaign: faults injected at random into a busy mount.
 *
 *     PLUGFS_BUILD=build build/fault-campaign [SECONDS]
 *
 * plugfs runs under plugfs-emu over three loopbacks, a device whose bulk
 * endpoints always stall, one whose transfers never complete, and a stick.  Per
 * loopback, a writer fills ep02 with records of the loopback's own letter
 * and a reader drains ep81 and checks that every byte is that letter: a
 * byte from another device is a leak.  Readers and writers of the stall
 * and hang devices get their EPIPE and ETIMEDOUT.  A reader of an emulated
 * stick reads runs of sequential blocks (the daemon reads ahead of it) and
 * checks every byte against the model's pattern, outside the region a
 * writer owns: the writer writes runs of sequential blocks of random data
 * there (the daemon writes them back), and whenever close() returned 0,
 * reads the run back through a new handle: every write that succeeded must
 * be on the medium, through crashes and malformed messages (the respawned
 * driver replays what the dead one had not written), unless a later call on
 * the handle failed for it (see disk_writer_main()).  Meanwhile an injector
 * sends SIGKILL, SIGSEGV, SIGABRT or SIGSTOP to a random driver, or
 * unplugs a random device and plugs it back on the same port.
 *
 * Workers reach devices through by-path/PORT:1.0, which follows a device
 * whatever name it gets back after a replug.
 *
 * Every call is timed and its result checked against what SPEC.md allows
 * on that device (see allowed()).  After the run: every function running
 * again, a round trip on every device (a write and its read back on the
 * stick), at least one run of the stick's writer read back as written, the
 * daemon the same process, its fd and child counts back to what they were
 * before the first fault, its own RSS within RSS_MARGIN_KB.  Any failure is a
 * violation; the exit status is 1 if there was one.
 *
 * Malformed messages: every driver runs through plugfs-evil-driver
 * (tests/evil), which execs the real host unless its conf file names the
 * device; the injector names one, restarts it (ctl restart), waits for the
 * daemon to log the protocol error, and clears the file, so the respawn
 * after that is the real driver again.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../emu/disk_pattern.h"
#include "harness.h"

#define TIMEOUT_MS 500
/*
 * A call may take the request deadline, plus the heartbeat's own deadline
 * when the driver was stopped mid-request (another timeout), plus the
 * respawn and a scheduling margin on a shared machine.
 */
#define CALL_LIMIT_MS (TIMEOUT_MS + 2 * TIMEOUT_MS + 1000)
#define RSS_MARGIN_KB 8192
#define EXTRA_MS      30000 /* at most this much more while no stick write was read back */
#define OPTS	      "timeout=500,restart_max=63,restart_window=1,backoff_min=10,backoff_max=100"

enum kind { LOOPBACK, STALL, HANG, DISK };

/*
 * The `disk` model's medium (tests/emu/model_disk.c), filled with
 * disk_pattern.h at every plug: a replug gives a fresh medium.  The stick
 * writer owns [WRITE_START, WRITE_END); nobody writes the rest, so it keeps
 * its pattern, and the reader reads only there.
 */
#define MIB	    (1024ull * 1024)
#define DISK_SIZE   (64 * MIB)
#define WRITE_START (40 * MIB)
#define WRITE_END   (56 * MIB)

struct device {
	const char *model;
	enum kind kind;
	unsigned port; /* 1-PORT */
	char letter;   /* loopbacks: every byte written to this one */
	/*
	 * Bumped by the injector before it unplugs the device and again once it
	 * is plugged back: odd while it is out.  The same even value before and
	 * after a run means the medium was the same all along.
	 */
	atomic_uint replugs;
};

static struct device devs[] = {
    {"loopback", LOOPBACK, 1, 'a', 0}, {"loopback", LOOPBACK, 2, 'b', 0}, {"loopback", LOOPBACK, 3, 'c', 0},
    {"stall", STALL, 4, 0, 0},	       {"hang", HANG, 5, 0, 0},		  {"disk", DISK, 6, 0, 0},
};
#define NDEVS (sizeof(devs) / sizeof(devs[0]))

enum fault { F_SIGKILL, F_SIGSEGV, F_SIGABRT, F_SIGSTOP, F_UNPLUG, F_MALFORMED, NFAULTS };
static const char *const fault_names[NFAULTS] = {"SIGKILL", "SIGSEGV",	     "SIGABRT",
						 "SIGSTOP", "unplug+replug", "malformed"};
static const int fault_signals[] = {SIGKILL, SIGSEGV, SIGABRT, SIGSTOP};

enum op { OP_OPEN, OP_READ, OP_WRITE, OP_FSYNC, OP_CLOSE, NOPS };
static const char *const op_names[NOPS] = {"open", "read", "write", "fsync", "close"};

static struct mnt m;
static atomic_int stop;
static atomic_ulong faults[NFAULTS];
static atomic_ulong fault_skipped; /* no driver pid at that moment (restarting, unplugged) */
static atomic_ulong calls[NOPS];
/* Results by errno (0: success); errnos above 255 are counted in the last slot. */
static atomic_ulong results[256];
static atomic_ulong bytes_checked;
static atomic_ulong short_timed_out; /* stick reads cut short by a timeout, the driver alive */
static atomic_ulong violations;
static atomic_ulong slowest_ms;

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void violation(const char *fmt, ...)
{
	va_list ap;

	atomic_fetch_add(&violations, 1);
	fprintf(stderr, "fault-campaign: VIOLATION: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void pause_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/*
 * What SPEC.md allows a call on this device while its driver may crash, be
 * stopped until the heartbeat kills it, or the device be unplugged:
 * - any call on any device: EIO (driver down, or a handle from before a
 *   respawn), ENODEV (device unplugged), ETIMEDOUT (no answer: the driver
 *   is stopped, or a read found nothing within timeout=);
 * - open: also ENOENT (the function's directory is gone while unplugged);
 * - read/write on the stall device: also EPIPE, the endpoint's answer; a
 *   read or write there never succeeds, nor does a read on the hang device;
 * - fsync and close on the stick also report a written-back write that
 *   failed (plugfs-disk(7)): its errno is one of the three above, EIO when
 *   its replay after a crash failed, ENODEV when an unplug lost it,
 *   ETIMEDOUT when the driver did not answer it in time.
 * EINTR is not allowed: no signal is sent to this process.  EAGAIN is not
 * either: no handle is O_NONBLOCK.
 */
static int allowed(const struct device *d, enum op op, int err)
{
	if (err == 0)
		return op == OP_OPEN || op == OP_CLOSE || d->kind == LOOPBACK || d->kind == DISK;
	if (err == EIO || err == ENODEV || err == ETIMEDOUT)
		return 1;
	if (op == OP_OPEN && err == ENOENT)
		return 1;
	if (d->kind == STALL && (op == OP_READ || op == OP_WRITE) && err == EPIPE)
		return 1;
	return 0;
}

static void record(const struct device *d, enum op op, uint64_t start, long ret, int err)
{
	uint64_t took = mono_ms() - start;
	unsigned long prev = atomic_load(&slowest_ms);

	while (took > prev && !atomic_compare_exchange_weak(&slowest_ms, &prev, took))
		;
	atomic_fetch_add(&calls[op], 1);
	atomic_fetch_add(&results[ret < 0 ? (err < 255 ? err : 255) : 0], 1);
	if (took > CALL_LIMIT_MS)
		violation("%s on 1-%u (%s) took %llu ms (limit %d)", op_names[op], d->port, d->model,
			  (unsigned long long)took, CALL_LIMIT_MS);
	if (!allowed(d, op, ret < 0 ? err : 0))
		violation("%s on 1-%u (%s) returned %ld (%s)", op_names[op], d->port, d->model, ret,
			  ret < 0 ? strerror(err) : "success");
}

static const char *dev_path(const struct device *d, const char *file, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s/by-path/1-%u:1.0/%s", m.path, d->port, file);
	return buf;
}

static int timed_open(struct device *d, const char *file, int flags)
{
	char path[256];
	uint64_t t = mono_ms();
	int fd = open(dev_path(d, file, path, sizeof(path)), flags | O_CLOEXEC);

	record(d, OP_OPEN, t, fd, errno);
	return fd;
}

/* close(fd): 0 or -errno. */
static int timed_close(struct device *d, int fd)
{
	uint64_t t = mono_ms();
	int r = close(fd), err = errno;

	record(d, OP_CLOSE, t, r, err);
	return r < 0 ? -err : 0;
}

/* A few records of the device's letter to ep02, sizes 1 to 4096. */
static void *writer_main(void *arg)
{
	struct device *d = arg;
	char buf[4096];
	unsigned seed = d->port * 7919u;

	memset(buf, d->letter, sizeof(buf));
	while (!atomic_load(&stop)) {
		int fd = timed_open(d, "ep02", O_WRONLY);
		if (fd < 0) {
			pause_ms(5); /* unplugged or restarting: look again soon */
			continue;
		}
		for (int i = 0; i < 8 && !atomic_load(&stop); i++) {
			size_t len = 1 + (size_t)rand_r(&seed) % sizeof(buf);
			uint64_t t = mono_ms();
			ssize_t r = write(fd, buf, len);
			record(d, OP_WRITE, t, r, errno);
			if (r < 0)
				break;
		}
		timed_close(d, fd);
	}
	return NULL;
}

/* Drains ep81; every byte must be this device's letter. */
static void *reader_main(void *arg)
{
	struct device *d = arg;
	char buf[8192];

	while (!atomic_load(&stop)) {
		int fd = timed_open(d, "ep81", O_RDONLY);
		if (fd < 0) {
			pause_ms(5);
			continue;
		}
		for (int i = 0; i < 8 && !atomic_load(&stop); i++) {
			uint64_t t = mono_ms();
			ssize_t r = read(fd, buf, sizeof(buf));
			record(d, OP_READ, t, r, errno);
			if (r < 0)
				break;
			for (ssize_t k = 0; k < r; k++)
				if (buf[k] != d->letter) {
					violation("1-%u read byte %#x at %zd of %zd: not its own '%c'",
						  d->port, (unsigned char)buf[k], k, r, d->letter);
					break;
				}
			atomic_fetch_add(&bytes_checked, (unsigned long)r);
		}
		timed_close(d, fd);
	}
	return NULL;
}

/* Whether buf holds the disk's bytes at [off, off + n); else a violation. */
static int disk_bytes_ok(const struct device *d, const uint8_t *buf, uint64_t off, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (buf[k] != emu_disk_byte(0, off + k)) {
			violation("1-%u: byte %llu of the medium read as %#x, not %#x", d->port,
				  (unsigned long long)(off + k), buf[k], emu_disk_byte(0, off + k));
			return 0;
		}
	return 1;
}

/*
 * Reads the disk's medium in runs of sequential reads (so the daemon reads
 * ahead), from a random place with a random block size: every read whole up
 * to the end of the medium, every byte the model's.  The reads stay out of
 * the writer's region: a run below it stops at its start (the reads ahead
 * may go into it; a write there throws them away), a run above it may go
 * to the end of the medium.
 */
static void *disk_reader_main(void *arg)
{
	static const size_t sizes[] = {512, 4096, 65536, 100000, 1024 * 1024};
	struct device *d = arg;
	uint8_t *buf = malloc(1024 * 1024);
	unsigned seed = d->port * 104729u;
	const unsigned below = WRITE_START / 512, above = (DISK_SIZE - WRITE_END) / 512;

	while (buf != NULL && !atomic_load(&stop)) {
		int fd = timed_open(d, "data", O_RDONLY);
		if (fd < 0) {
			pause_ms(5);
			continue;
		}
		size_t bs = sizes[(unsigned)rand_r(&seed) % (sizeof(sizes) / sizeof(sizes[0]))];
		unsigned blk = (unsigned)rand_r(&seed) % (below + above);
		uint64_t off = blk < below ? (uint64_t)blk * 512 : WRITE_END + (uint64_t)(blk - below) * 512;
		uint64_t limit = off < WRITE_START ? WRITE_START : DISK_SIZE;
		for (int i = 0; i < 32 && !atomic_load(&stop); i++) {
			/* Up to the end of the medium as asked; short of the writer's region. */
			size_t ask = limit == DISK_SIZE || bs < limit - off ? bs : (size_t)(limit - off);
			if (ask == 0)
				break;
			uint64_t t = mono_ms();
			ssize_t r = pread(fd, buf, ask, (off_t)off);
			record(d, OP_READ, t, r, errno);
			if (r < 0)
				break;
			size_t want = off >= DISK_SIZE	      ? 0
				      : ask < DISK_SIZE - off ? ask
							      : (size_t)(DISK_SIZE - off);
			if (r == 0 || !disk_bytes_ok(d, buf, off, (size_t)r))
				break;
			if ((size_t)r < want) {
				/*
				 * The kernel cuts a read into requests of at most 256 pages: one into
				 * an unaligned 1 MiB buffer is two, and a crash between them leaves
				 * the first one's count.  The handle must then be failing.  Unless
				 * the second one timed out (ETIMEDOUT, which the kernel drops for the
				 * first one's count): the driver may be alive, the read having waited
				 * behind others (reads ahead, windows written back).
				 */
				uint64_t took = mono_ms() - t;
				t = mono_ms();
				ssize_t again = pread(fd, buf, ask, (off_t)(off + (uint64_t)r));
				int err = errno;
				record(d, OP_READ, t, again, err);
				if (again >= 0 && took < TIMEOUT_MS)
					violation(
					    "1-%u: read of %zu at %llu gave %zd, not %zu, in %llu ms, and "
					    "the next one %zd",
					    d->port, ask, (unsigned long long)off, r, want,
					    (unsigned long long)took, again);
				else if (again >= 0)
					atomic_fetch_add(&short_timed_out, 1);
				atomic_fetch_add(&bytes_checked, (unsigned long)r);
				break;
			}
			atomic_fetch_add(&bytes_checked, (unsigned long)r);
			off += (uint64_t)r;
		}
		timed_close(d, fd);
	}
	free(buf);
	return NULL;
}

/* What the stick writer did, for the summary (see disk_writer_main). */
static atomic_ulong wr_runs, wr_bytes, wr_verified, wr_bytes_verified, wr_stale_verified;
static atomic_ulong wr_close_failed, wr_close_failed_there, wr_excused, wr_replugged, wr_read_failed;

/* xorshift64*: the writer's data, fresh for every run. */
static uint64_t next_random(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

/*
 * Reads [off, off + len) of the medium through a new handle into buf (1
 * MiB) piece by piece, comparing it with want.  0: the same; 1: not (*bad
 * the offset of the first difference, *got its byte); 2: the file ended
 * short of it; -1: a call failed (record() judged its errno).
 */
static int disk_readback(struct device *d, uint8_t *buf, uint64_t off, const uint8_t *want, size_t len,
			 uint64_t *bad, uint8_t *got)
{
	int fd = timed_open(d, "data", O_RDONLY), ret = 0;

	if (fd < 0)
		return -1;
	for (size_t done = 0; done < len && ret == 0;) {
		size_t ask = len - done < MIB ? len - done : MIB;
		uint64_t t = mono_ms();
		ssize_t r = pread(fd, buf, ask, (off_t)(off + done));
		record(d, OP_READ, t, r, errno);
		if (r <= 0) {
			ret = r < 0 ? -1 : 2;
			break;
		}
		for (ssize_t k = 0; k < r; k++)
			if (buf[k] != want[done + (size_t)k]) {
				*bad = off + done + (uint64_t)k;
				*got = buf[k];
				ret = 1;
				break;
			}
		/* A short read is the first of the kernel's pieces before a crash: the next one fails. */
		done += (size_t)r;
	}
	timed_close(d, fd);
	return ret;
}

/*
 * Writes the stick's [WRITE_START, WRITE_END) in runs: one handle, a random
 * start and block size (aligned or not), sequential pwrites of fresh random
 * data (written back from the second on), sometimes an fsync between them,
 * then close.  A write's success is a promise (plugfs-disk(7)): if close
 * returns 0, every write that succeeded is on the medium, crashes and
 * malformed messages notwithstanding (the respawned driver replays what the
 * dead one had not written), unless a later call on the handle reported a
 * failure that covers it.  On this stick a written-back window fails only
 * by time (ETIMEDOUT, the driver stopped) or with its driver; a failed
 * fsync reports them all, and so does a failed or short write unless it
 * fails with EIO: that is the handle of a dead driver, which says nothing
 * of the windows owed to it, and fsync and close still wait for their
 * replay.  So after close returns 0, the run is read back through a new
 * handle from the first byte no failure covers to the last one written.
 * An unplug gives a fresh medium on replug: a run it overlaps is not read
 * back, nor one whose read back fails as a fault allows.
 */
static void *disk_writer_main(void *arg)
{
	static const size_t sizes[] = {512, 4096, 65536, 256 * 1024, 1000, 100000, 0 /* random */};
	struct device *d = arg;
	const unsigned max_blocks = 32;
	uint8_t *shadow = malloc(max_blocks * 256 * 1024), *buf = malloc(MIB);
	unsigned seed = d->port * 15485863u;
	uint64_t rnd = 0x9e3779b97f4a7c15ull;

	while (shadow != NULL && buf != NULL && !atomic_load(&stop)) {
		unsigned gen = atomic_load(&d->replugs);
		int fd = timed_open(d, "data", O_WRONLY);
		if (fd < 0) {
			pause_ms(5);
			continue;
		}
		size_t bs = sizes[(unsigned)rand_r(&seed) % (sizeof(sizes) / sizeof(sizes[0]))];
		if (bs == 0)
			bs = 1 + (size_t)rand_r(&seed) % (256 * 1024);
		/* Short runs, so that many are checked; long ones, whose writes wait for windows. */
		unsigned nblk = 1 + (unsigned)rand_r(&seed) % (rand_r(&seed) % 2 == 0 ? max_blocks : 8);
		size_t total = bs * nblk;
		uint64_t room = (WRITE_END - WRITE_START - 512 - total) / 512;
		uint64_t start = WRITE_START + (uint64_t)rand_r(&seed) % (room + 1) * 512;
		if (rand_r(&seed) % 4 == 0)
			start += (uint64_t)rand_r(&seed) % 512;
		for (size_t k = 0; k < total; k += 8) {
			uint64_t v = next_random(&rnd);
			memcpy(shadow + k, &v, total - k < 8 ? total - k : 8);
		}
		unsigned sync_at = rand_r(&seed) % 3 == 0 ? (unsigned)rand_r(&seed) % nblk : 0;
		/*
		 * Half the runs think between writes, as tar or a camera would: their
		 * windows leave on the idle timer while the run goes on, so a crash
		 * meets the writer between writes rather than in close().
		 */
		unsigned think_ms = rand_r(&seed) % 2 == 0 ? 1 + (unsigned)rand_r(&seed) % 20 : 0;
		size_t ok = 0;	 /* [start, start + ok) written with success */
		size_t from = 0; /* what lies before was covered by a failure reported later */
		int stale = 0;	 /* a write failed with EIO: the driver died, the handle with it */
		char what[96] = "";
		for (unsigned i = 0; i < nblk && !atomic_load(&stop); i++) {
			if (think_ms > 0 && i > 0)
				pause_ms(think_ms);
			if (i == sync_at && i > 0) {
				uint64_t t = mono_ms();
				int r = fsync(fd), err = errno;
				record(d, OP_FSYNC, t, r, err);
				if (r < 0) {
					from = ok;
					snprintf(what, sizeof(what), ", fsync after %u writes: %s", i,
						 strerrorname_np(err));
					break;
				}
			}
			uint64_t t = mono_ms();
			ssize_t r = pwrite(fd, shadow + ok, bs, (off_t)(start + ok));
			int err = errno;
			record(d, OP_WRITE, t, r, err);
			if (r == (ssize_t)bs) {
				ok += bs;
				continue;
			}
			if (r > 0)
				ok += (size_t)r;
			if (r >= 0 || err != EIO)
				from = ok;
			else
				stale = 1;
			snprintf(what, sizeof(what), ", write %u: %s", i,
				 r >= 0 ? "short" : strerrorname_np(err));
			break;
		}
		int closed = timed_close(d, fd);
		if (ok == 0)
			continue;
		atomic_fetch_add(&wr_runs, 1);
		atomic_fetch_add(&wr_bytes, ok);
		if (from == ok) {
			atomic_fetch_add(closed < 0 ? &wr_close_failed : &wr_excused, 1);
			continue;
		}
		if (gen % 2 != 0) {
			atomic_fetch_add(&wr_replugged, 1);
			continue;
		}
		/*
		 * After a failed close too: whether the data is there anyway (not a
		 * promise) is worth a count.  A read back that fails (the driver died
		 * meanwhile) is tried again a few times: the next driver writes what
		 * the dead one owed before it serves the read.
		 */
		uint64_t bad = 0;
		uint8_t got = 0;
		int res = -1;
		for (int tries = 0; tries < 50 && res < 0 && (tries == 0 || !atomic_load(&stop)); tries++) {
			if (tries > 0)
				pause_ms(20);
			res = disk_readback(d, buf, start + from, shadow + from, ok - from, &bad, &got);
		}
		if (atomic_load(&d->replugs) != gen) {
			atomic_fetch_add(&wr_replugged, 1);
		} else if (closed < 0) {
			atomic_fetch_add(&wr_close_failed, 1);
			if (res == 0)
				atomic_fetch_add(&wr_close_failed_there, 1);
		} else if (res < 0) {
			atomic_fetch_add(&wr_read_failed, 1);
		} else if (res == 1) {
			violation(
			    "1-%u: byte %llu read back as %#x, not %#x: run of %u writes of %zu at %llu, "
			    "%zu bytes written with success%s, close 0",
			    d->port, (unsigned long long)bad, got, shadow[bad - start], nblk, bs,
			    (unsigned long long)start, ok, what);
		} else if (res == 2) {
			violation("1-%u: the medium ended before %llu, reading back a run at %llu", d->port,
				  (unsigned long long)(start + ok), (unsigned long long)start);
		} else {
			atomic_fetch_add(&wr_verified, 1);
			atomic_fetch_add(&wr_bytes_verified, ok - from);
			atomic_fetch_add(&wr_stale_verified, (unsigned long)stale);
		}
	}
	free(shadow);
	free(buf);
	return NULL;
}

/* The stall and hang devices: one read or one write per open. */
static void *poker_main(void *arg)
{
	struct device *d = arg;
	char buf[64] = "poke";
	int wr = 0;

	while (!atomic_load(&stop)) {
		wr = !wr;
		int fd = timed_open(d, wr ? "ep02" : "ep81", wr ? O_WRONLY : O_RDONLY);
		if (fd < 0) {
			pause_ms(5);
			continue;
		}
		uint64_t t = mono_ms();
		ssize_t r = wr ? write(fd, buf, sizeof(buf)) : read(fd, buf, sizeof(buf));
		record(d, wr ? OP_WRITE : OP_READ, t, r, errno);
		timed_close(d, fd);
	}
	return NULL;
}

/* The function name behind by-path/1-PORT:1.0, or "" while there is none. */
static const char *fn_name(const struct device *d, char *buf, size_t cap)
{
	char link[256], target[128];
	ssize_t n;

	snprintf(link, sizeof(link), "%s/by-path/1-%u:1.0", m.path, d->port);
	n = readlink(link, target, sizeof(target) - 1);
	if (n <= 0) {
		buf[0] = '\0';
		return buf;
	}
	target[n] = '\0';
	const char *slash = strrchr(target, '/');
	snprintf(buf, cap, "%.60s", slash != NULL ? slash + 1 : target);
	return buf;
}

/* A driver pid of this mount's daemon, never some other process's. */
static int is_driver_of(pid_t pid, pid_t daemon)
{
	char path[64], st[512];
	int parent;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	ssize_t n = read_file(path, st, sizeof(st) - 1);
	if (n <= 0)
		return 0;
	st[n] = '\0';
	char *p = strrchr(st, ')');
	return p != NULL && sscanf(p + 1, " %*c %d", &parent) == 1 && parent == daemon;
}

/* Waits up to ms until 1-PORT has a function again, running. */
static int wait_running(const struct device *d, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;
	char name[64], rel[96];

	do {
		if (fn_name(d, name, sizeof(name))[0] != '\0') {
			snprintf(rel, sizeof(rel), "%s/state", name);
			if (strcmp(read_line(mpath(&m, rel)), "running") == 0)
				return 0;
		}
		pause_ms(2);
	} while (mono_ms() < deadline);
	return -1;
}

/* Waits up to ms while 1-PORT's driver is stopped (SIGSTOP): the daemon kills and respawns it. */
static void wait_not_stopped(const struct device *d, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;
	char name[64];

	while (mono_ms() < deadline) {
		pid_t pid = fn_name(d, name, sizeof(name))[0] != '\0' ? fn_pid(&m, name) : 0;
		if (pid <= 0 || proc_status(pid, "State")[0] != 'T')
			return;
		pause_ms(10);
	}
}

static void unplug_replug(struct device *d)
{
	char sysname[16], name[64];

	snprintf(sysname, sizeof(sysname), "1-%u", d->port);
	fn_name(d, name, sizeof(name));
	if (emu_unplug(&m, sysname) < 0) {
		violation("plugfs-emu refused to unplug %s", sysname);
		return;
	}
	/* The name comes back with the device only once the old function is gone. */
	if (name[0] != '\0' && wait_function(&m, name, 0, 5000) < 0)
		violation("%s (%s) still listed 5 s after its unplug", name, sysname);
	if (emu_plug(&m, d->model, d->port) < 0) {
		violation("plugfs-emu refused to plug %s back on %s", d->model, sysname);
		return;
	}
	if (wait_running(d, 5000) < 0)
		violation("%s not running 5 s after its replug", sysname);
}

/* Modes of plugfs-evil-driver that break the protocol after HELLO or instead of it. */
static const char *const evil_modes[] = {"garbage",	"oversized", "truncated",      "before-hello",
					 "hello-twice", "bad-hello", "wrong-direction"};
static char evil_conf[256];

/* Lines of the events file holding `what`. */
static unsigned events_with(const char *what)
{
	static char buf[1 << 20];
	ssize_t n = read_file(mpath(&m, "events"), buf, sizeof(buf) - 1);
	unsigned count = 0;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (const char *p = buf; (p = strstr(p, what)) != NULL; p++)
		count++;
	return count;
}

/* Returns 0 if injected, -1 if the device had no running driver to replace. */
static int malformed(struct device *d, unsigned *seed)
{
	char name[64], rel[96], what[128];

	if (fn_name(d, name, sizeof(name))[0] == '\0')
		return -1;
	snprintf(rel, sizeof(rel), "%s/busnum", name);
	unsigned bus = (unsigned)atoi(read_line(mpath(&m, rel)));
	snprintf(rel, sizeof(rel), "%s/devnum", name);
	unsigned dev = (unsigned)atoi(read_line(mpath(&m, rel)));
	snprintf(what, sizeof(what), "%s crash protocol error", name);
	unsigned before = events_with(what);
	const char *mode = evil_modes[(unsigned)rand_r(seed) % (sizeof(evil_modes) / sizeof(evil_modes[0]))];
	char line[128];
	snprintf(line, sizeof(line), "/dev/bus/usb/%03u/%03u %s\n", bus, dev, mode);
	snprintf(rel, sizeof(rel), "%s/ctl", name);
	FILE *conf = fopen(evil_conf, "w");
	if (conf != NULL) {
		fputs(line, conf);
		fclose(conf);
	}
	if (bus == 0 || dev == 0 || conf == NULL || write_file(mpath(&m, rel), "restart") < 0) {
		unlink(evil_conf);
		return -1;
	}
	uint64_t deadline = mono_ms() + 3000;
	while (events_with(what) == before && mono_ms() < deadline)
		pause_ms(2);
	unlink(evil_conf);
	if (events_with(what) == before)
		violation("%s: no protocol error logged 3 s after switching it to %s", name, mode);
	return 0;
}

static void *injector_main(void *arg)
{
	pid_t daemon = *(pid_t *)arg;
	unsigned seed = 12345;

	while (!atomic_load(&stop)) {
		pause_ms(40 + (unsigned)rand_r(&seed) % 80);
		struct device *d = &devs[(unsigned)rand_r(&seed) % NDEVS];
		enum fault f = (enum fault)((unsigned)rand_r(&seed) % NFAULTS);
		char name[64];

		if (f == F_UNPLUG) {
			atomic_fetch_add(&d->replugs, 1);
			unplug_replug(d);
			atomic_fetch_add(&d->replugs, 1);
			atomic_fetch_add(&faults[f], 1);
			continue;
		}
		if (f == F_MALFORMED) {
			if (malformed(d, &seed) == 0)
				atomic_fetch_add(&faults[f], 1);
			else
				atomic_fetch_add(&fault_skipped, 1);
			continue;
		}
		pid_t pid = fn_name(d, name, sizeof(name))[0] != '\0' ? fn_pid(&m, name) : 0;
		if (pid <= 0 || !is_driver_of(pid, daemon) || kill(pid, fault_signals[f]) < 0) {
			atomic_fetch_add(&fault_skipped, 1);
			continue;
		}
		atomic_fetch_add(&faults[f], 1);
	}
	return NULL;
}

/* One round trip through every loopback, EPIPE from the stall, ETIMEDOUT from the hang. */
static int mount_works(void)
{
	int bad = 0;

	for (size_t i = 0; i < NDEVS; i++) {
		struct device *d = &devs[i];
		char path[256], in[16];
		if (d->kind == DISK) {
			uint8_t blk[4096];
			int fd = open(dev_path(d, "data", path, sizeof(path)), O_RDONLY | O_CLOEXEC);
			ssize_t n = fd >= 0 ? pread(fd, blk, sizeof(blk), 12345) : -1;
			if (n != (ssize_t)sizeof(blk) || !disk_bytes_ok(d, blk, 12345, sizeof(blk))) {
				violation("after the campaign: read of 1-%u's medium gave %zd (%s)", d->port,
					  n, n < 0 ? strerror(errno) : "");
				bad = 1;
			}
			if (fd >= 0)
				close(fd);
			/* Two writes in a row (the second written back), close, and read back. */
			uint8_t out[8192], back[8192];
			for (size_t k = 0; k < sizeof(out); k++)
				out[k] = (uint8_t)(k * 7 + 1);
			fd = open(dev_path(d, "data", path, sizeof(path)), O_WRONLY | O_CLOEXEC);
			ssize_t w1 = fd >= 0 ? pwrite(fd, out, 4096, WRITE_START + 12345) : -1;
			ssize_t w2 =
			    w1 == 4096 ? pwrite(fd, out + 4096, 4096, WRITE_START + 12345 + 4096) : -1;
			int c = fd >= 0 ? close(fd) : -1;
			fd = open(dev_path(d, "data", path, sizeof(path)), O_RDONLY | O_CLOEXEC);
			n = fd >= 0 ? pread(fd, back, sizeof(back), WRITE_START + 12345) : -1;
			if (w2 != 4096 || c != 0 || n != (ssize_t)sizeof(back) ||
			    memcmp(back, out, sizeof(back)) != 0) {
				violation(
				    "after the campaign: write of 1-%u's medium gave %zd, %zd, close %d, "
				    "read back %zd%s",
				    d->port, w1, w2, c, n,
				    n == (ssize_t)sizeof(back) ? " (not the same)" : "");
				bad = 1;
			}
			if (fd >= 0)
				close(fd);
			continue;
		}
		int r = open(dev_path(d, "ep81", path, sizeof(path)), O_RDONLY | O_CLOEXEC);
		int w = open(dev_path(d, "ep02", path, sizeof(path)), O_WRONLY | O_CLOEXEC);
		if (r < 0 || w < 0) {
			violation("after the campaign: cannot open 1-%u's endpoints: %s", d->port,
				  strerror(errno));
			bad = 1;
		} else if (d->kind == LOOPBACK) {
			/* Drain what the writers left: read until a read finds nothing within timeout=. */
			char drain[8192];
			uint64_t deadline = mono_ms() + 10000;
			while (read(r, drain, sizeof(drain)) > 0 && mono_ms() < deadline)
				;
			char rec[8] = {d->letter, 'e', 'n', 'd', d->letter};
			size_t got = 0;
			ssize_t n = write(w, rec, 5);
			while (n == 5 && got < 5) {
				ssize_t k = read(r, in + got, sizeof(in) - got);
				if (k <= 0)
					break;
				got += (size_t)k;
			}
			if (n != 5 || got != 5 || memcmp(in, rec, 5) != 0) {
				violation(
				    "after the campaign: no round trip through 1-%u (wrote %zd, read %zu)",
				    d->port, n, got);
				bad = 1;
			}
		} else {
			ssize_t n = read(r, in, sizeof(in));
			int want = d->kind == STALL ? EPIPE : ETIMEDOUT;
			if (n != -1 || errno != want) {
				violation("after the campaign: read on 1-%u (%s) gave %zd (%s), not %s",
					  d->port, d->model, n, n < 0 ? strerror(errno) : "data",
					  strerror(want));
				bad = 1;
			}
		}
		if (r >= 0)
			close(r);
		if (w >= 0)
			close(w);
	}
	return bad ? -1 : 0;
}

/*
 * The daemon's resident memory but for the drivers' shared buffers: how
 * much of each 16 MiB buffer is resident depends on how many of its slots
 * the current process has used (reads ahead, windows written back), not on
 * what the daemon keeps.
 */
static long own_rss_kb(pid_t pid)
{
	long rss = rss_kb(pid);

	return rss < 0 ? -1 : rss - atol(proc_status(pid, "RssShmem"));
}

/* Waits up to ms until f(pid) == want. */
static int wait_count(int (*f)(pid_t), pid_t pid, int want, int ms, int *got)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	do {
		*got = f(pid);
		if (*got == want)
			return 0;
		pause_ms(5);
	} while (mono_ms() < deadline);
	return -1;
}

int main(int argc, char **argv)
{
	unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 60;
	const char *models[NDEVS + 1];
	pthread_t threads[2 * NDEVS + 1];
	unsigned nthreads = 0;

	if (seconds == 0) {
		fprintf(stderr, "usage: fault-campaign [SECONDS]\n");
		return 2;
	}
	/* A write on a handle whose device is gone must fail, not kill us. */
	signal(SIGPIPE, SIG_IGN);
	for (size_t i = 0; i < NDEVS; i++)
		models[i] = devs[i].model;
	models[NDEVS] = NULL;
	/* A sanitizer report in the mount's log (an ASan build) lands here, see mnt_stop(). */
	char tally[] = "/tmp/fault-campaign-tally.XXXXXX";
	int tally_fd = mkstemp(tally);
	if (tally_fd < 0) {
		perror("fault-campaign: mkstemp");
		return 1;
	}
	setenv("PLUGFS_SANITIZER_TALLY", tally, 1);
	/* Every driver through the evil host, which is the real one until evil_conf names a device. */
	char evil[PATH_MAX];
	snprintf(evil_conf, sizeof(evil_conf), "%s.evil", tally);
	setenv("PLUGFS_TEST_EVIL_CONF", evil_conf, 1);
	snprintf(evil, sizeof(evil), "%s/plugfs-evil-driver", build_dir());
	if (mnt_start_with_driver(&m, models, OPTS, NDEVS, evil) < 0) {
		unlink(tally);
		return 1;
	}
	pid_t daemon = daemon_pid(&m);
	/* The spare driver host counts among the children and fds before and after: wait for it. */
	if (wait_spare(daemon, 0, 5000) <= 0)
		violation("no spare driver host 5 s after the mount");
	int base_fds = count_fds(daemon), base_children = count_child_processes(daemon);
	long base_rss = own_rss_kb(daemon);
	printf("fault-campaign: %u s over %zu devices (3 loopback, stall, hang, disk), %s\n", seconds, NDEVS,
	       OPTS);
	printf(
	    "fault-campaign: daemon pid %d: %d fds, %d children, %ld kB RSS (shared buffers aside) before\n",
	    (int)daemon, base_fds, base_children, base_rss);
	fflush(stdout);

	uint64_t start = mono_ms();
	for (size_t i = 0; i < NDEVS; i++) {
		if (devs[i].kind == LOOPBACK) {
			pthread_create(&threads[nthreads++], NULL, writer_main, &devs[i]);
			pthread_create(&threads[nthreads++], NULL, reader_main, &devs[i]);
		} else if (devs[i].kind == DISK) {
			pthread_create(&threads[nthreads++], NULL, disk_reader_main, &devs[i]);
			pthread_create(&threads[nthreads++], NULL, disk_writer_main, &devs[i]);
		} else {
			pthread_create(&threads[nthreads++], NULL, poker_main, &devs[i]);
		}
	}
	pthread_t injector;
	pthread_create(&injector, NULL, injector_main, &daemon);
	/*
	 * On a loaded machine (an ASan build, 10 s) the stick's writer may not
	 * have had a run to read back yet: the faults go on for up to
	 * EXTRA_MS more, so that "none read back" is a finding, not bad luck.
	 */
	uint64_t end = (uint64_t)seconds * 1000;
	while (kill(daemon, 0) == 0 && (mono_ms() - start < end || (atomic_load(&wr_verified) == 0 &&
								    mono_ms() - start < end + EXTRA_MS)))
		pause_ms(50);
	atomic_store(&stop, 1);
	pthread_join(injector, NULL);
	for (unsigned i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	uint64_t took = mono_ms() - start;
	/* Otherwise the check of what close() promises checked nothing. */
	if (atomic_load(&wr_verified) == 0)
		violation("no run written to the stick was read back as written");

	/* Afterwards: the same daemon, every device running and working, nothing leaked. */
	int got;
	if (kill(daemon, 0) != 0 || daemon_pid(&m) != daemon)
		violation("the daemon (pid %d) is gone", (int)daemon);
	/* A driver stopped just before the end is killed by its heartbeat a timeout later: not yet "running".
	 */
	for (size_t i = 0; i < NDEVS; i++)
		wait_not_stopped(&devs[i], 5000);
	for (size_t i = 0; i < NDEVS; i++)
		if (wait_running(&devs[i], 10000) < 0)
			violation("1-%u (%s) not running 10 s after the campaign", devs[i].port,
				  devs[i].model);
	/* A stopped driver may still be waiting for its heartbeat deadline. */
	if (wait_count(count_child_processes, daemon, base_children, 5000, &got) < 0)
		violation("daemon has %d children, %d before", got, base_children);
	mount_works();
	/* Releases reach the daemon after close() returns: give them a moment. */
	if (wait_count(count_fds, daemon, base_fds, 5000, &got) < 0)
		violation("daemon has %d fds open, %d before", got, base_fds);
	long rss = own_rss_kb(daemon), margin = RSS_MARGIN_KB;
	/* ASan keeps freed memory in quarantine (256 MB by default): its build says so here. */
	if (getenv("PLUGFS_FAULTS_RSS_MARGIN_KB") != NULL)
		margin = atol(getenv("PLUGFS_FAULTS_RSS_MARGIN_KB"));
	if (rss < 0 || rss > base_rss + margin)
		violation("daemon RSS (shared buffers aside) %ld kB, %ld before (margin %ld kB)", rss,
			  base_rss, margin);

	unsigned long total_faults = 0, total_calls = 0;
	for (int f = 0; f < NFAULTS; f++)
		total_faults += faults[f];
	for (int o = 0; o < NOPS; o++)
		total_calls += calls[o];
	printf("fault-campaign: ran %llu ms; daemon %d fds, %d children, %ld kB RSS after\n",
	       (unsigned long long)took, count_fds(daemon), count_child_processes(daemon), rss);
	printf("fault-campaign: faults injected: %lu:", total_faults);
	for (int f = 0; f < NFAULTS; f++)
		printf(" %s %lu", fault_names[f], (unsigned long)faults[f]);
	printf(" (%lu not injected: no driver at that moment)\n", (unsigned long)fault_skipped);
	printf("fault-campaign: calls: %lu:", total_calls);
	for (int o = 0; o < NOPS; o++)
		printf(" %s %lu", op_names[o], (unsigned long)calls[o]);
	printf("\nfault-campaign: results:");
	for (int e = 0; e < 256; e++)
		if (results[e] != 0)
			printf(" %s %lu",
			       e == 0	  ? "ok"
			       : e == 255 ? "errno>254"
					  : strerrorname_np(e),
			       (unsigned long)results[e]);
	printf("\nfault-campaign: %lu bytes checked for their device, slowest call %lu ms (limit %d)\n",
	       (unsigned long)bytes_checked, (unsigned long)slowest_ms, CALL_LIMIT_MS);
	printf("fault-campaign: stick reads cut short by a timeout, the driver alive: %lu\n",
	       (unsigned long)short_timed_out);
	printf("fault-campaign: stick writes: %lu runs, %lu bytes written; close 0 and read back as written: "
	       "%lu runs (%lu through a crash), %lu bytes; not checked: close failed %lu (%lu of them on "
	       "the medium all the same), failure reported %lu, unplugged %lu, read back failed %lu\n",
	       (unsigned long)wr_runs, (unsigned long)wr_bytes, (unsigned long)wr_verified,
	       (unsigned long)wr_stale_verified, (unsigned long)wr_bytes_verified,
	       (unsigned long)wr_close_failed, (unsigned long)wr_close_failed_there,
	       (unsigned long)wr_excused, (unsigned long)wr_replugged, (unsigned long)wr_read_failed);
	fflush(stdout);
	mnt_stop(&m);
	if (WIFSIGNALED(m.status) || (WIFEXITED(m.status) && WEXITSTATUS(m.status) != 0))
		violation("plugfs-emu ended with status %#x", m.status);
	struct stat st;
	if (fstat(tally_fd, &st) == 0 && st.st_size > 0)
		violation("sanitizer report in the log, kept in %s", m.log);
	close(tally_fd);
	unlink(tally);
	unlink(evil_conf);
	printf("fault-campaign: violations: %lu\n", (unsigned long)violations);
	return violations != 0 ? 1 : 0;
}
