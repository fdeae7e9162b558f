/*
 * Isolation cost: reads of the null driver's `zero`, writes to its `sink`
 * (a block file, as a disk's `data`: written back by the daemon) and to
 * its `stream` (as a printer's `data`: every write waits for the driver)
 * through plugfs (FUSE, the daemon, the driver process), against
 * the same files served in-process by nullfs (tests/bench/nullfs.c, same
 * libfuse settings), at 4 KiB, 64 KiB and 1 MiB a call.  Both sides run in
 * the same run, interleaved round by round (the order alternating), so a
 * busy machine slows both alike.  Per size and direction: throughput of
 * each side (one sample a round), latency of one read()/write() call (every
 * call of every round), and the ratio plugfs / in-process of each
 * round's two samples (median and spread over the rounds).  A benchmark:
 * it prints numbers and never fails for being slow.
 *
 *     build/bench-io [ROUNDS]     (default 5)
 *
 * It runs itself again under plugfs-emu --model null:PARALLEL (`--inside`),
 * mounts plugfs there with the test-only driver host
 * build/plugfs-bench-driver (which gives the null model the null driver)
 * and nullfs beside it.
 *
 * Reads of 64 KiB and 1 MiB are also made by PARALLEL threads at once,
 * each from its own null device (`usbN/zero`; in-process, each its own
 * handle of `zero`): the isolation cost with several devices busy, the
 * daemon one thread and each driver a process of its own, against one
 * in-process thread.
 *
 * Two more figures say where what is left of the difference goes, so that
 * every run measures it rather than a note once:
 *   - the machine's process round trip, a SOCK_SEQPACKET ping-pong of one
 *     protocol header between two processes, and from it the ceiling of
 *     the stream-write ratio (SPEC: a stream write waits for the driver, so
 *     it costs at least an in-process write plus one round trip);
 *   - the 1 MiB figures with each server held on one CPU and the
 *     reader on another (sched_setaffinity on every task of each server,
 *     its drivers included): what the ratio is once the bytes a driver
 *     makes no longer move between CPUs on their way to the reader.
 *     Measurement only; plugfs pins nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "nullfs.h"
#include "proto.h"
#include "report.h"

#define KIB 1024
#define MIB (1024 * 1024)

/* Calls per sample: about 16-64 MiB, a fraction of a second on either side. */
static const struct {
	size_t bs;
	unsigned calls;
	const char *name;
} sizes[] = {
    {4 * KIB, 16384, "4KiB"},
    {64 * KIB, 4096, "64KiB"},
    {MIB, 1024, "1MiB"},
};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/* What is measured: a read or a write, of which file. */
static const struct {
	const char *name, *file;
	int write;
} ops[] = {
    {"read", "zero", 0},
    {"write", "sink", 1},
    {"stream write", "stream", 1},
};
#define NOPS (sizeof(ops) / sizeof(ops[0]))

/* Readers at once, each from its own device (run_parallel), at the sizes from PAR_FIRST on. */
#define PARALLEL  8
#define PAR_FIRST 1
#define NPAR	  (NSIZES - PAR_FIRST)

/* The pinned comparison (run_pinned) repeats every op at the biggest size. */
#define NPINNED NOPS
/* Round trips per round of the ping-pong (run_round_trips). */
#define RT_CALLS 4096

enum side { PLUGFS, INPROC, NSIDES };
static const char *const side_names[NSIDES] = {"plugfs", "in-process"};

struct series {
	double *mibs; /* one throughput sample per round */
	double *lat;  /* one latency sample (us) per call */
	size_t nmibs, nlat;
};

/* Room for `rounds` samples of `calls` calls each. */
static int series_alloc(struct series *s, int rounds, unsigned calls)
{
	s->mibs = calloc((size_t)rounds, sizeof(double));
	s->lat = calls > 0 ? calloc((size_t)rounds * calls, sizeof(double)) : NULL;
	return s->mibs != NULL && (calls == 0 || s->lat != NULL) ? 0 : -1;
}

static void series_free(struct series *s)
{
	free(s->mibs);
	free(s->lat);
}

/* One sample: `calls` reads of `bs` bytes from path (write: to it); MiB/s, or -1. */
static double run_sample(const char *path, int write_side, size_t bs, unsigned calls, uint8_t *buf,
			 struct series *s)
{
	int fd = open(path, write_side ? O_WRONLY : O_RDONLY);

	/* Writes send this pattern; reads must overwrite it with zeros. */
	memset(buf, 0xa5, bs);

	if (fd < 0) {
		fprintf(stderr, "bench-io: %s: %s\n", path, strerror(errno));
		return -1;
	}
	double t0 = bench_now_ms();
	for (unsigned i = 0; i < calls; i++) {
		double c0 = bench_now_ms();
		ssize_t n = write_side ? write(fd, buf, bs) : read(fd, buf, bs);
		if (n != (ssize_t)bs) {
			fprintf(stderr, "bench-io: %s of %zu bytes on %s: %zd (%s)\n",
				write_side ? "write" : "read", bs, path, n,
				n < 0 ? strerror(errno) : "short");
			close(fd);
			return -1;
		}
		s->lat[s->nlat++] = (bench_now_ms() - c0) * 1000;
	}
	/* The close counts: it waits for what the daemon still writes back. */
	if (close(fd) < 0) {
		fprintf(stderr, "bench-io: close of %s: %s\n", path, strerror(errno));
		return -1;
	}
	double ms = bench_now_ms() - t0;
	/* What was measured must have been the file: the last block read is all zeros. */
	for (size_t i = 0; !write_side && i < bs; i++)
		if (buf[i] != 0) {
			fprintf(stderr, "bench-io: %s: byte %zu of a read is %#x, not 0\n", path, i, buf[i]);
			return -1;
		}
	return ms > 0 ? (double)bs * calls / MIB / (ms / 1000) : 0;
}

struct par_reader {
	const char *path;
	size_t bs;
	unsigned calls;
	int go;		 /* read end of a pipe whose closing starts every reader */
	const char *err; /* what failed, or NULL */
	int errnum;
	pthread_t thread;
};

static void *par_read(void *arg)
{
	struct par_reader *p = arg;
	uint8_t *buf = aligned_alloc(4096, p->bs);
	int fd = open(p->path, O_RDONLY);

	if (buf == NULL || fd < 0) {
		p->err = buf == NULL ? "no memory" : "open";
		p->errnum = errno;
	}
	char c;
	while (read(p->go, &c, 1) < 0 && errno == EINTR)
		;
	for (unsigned i = 0; p->err == NULL && i < p->calls; i++) {
		ssize_t n = read(fd, buf, p->bs);
		if (n != (ssize_t)p->bs) {
			p->err = n < 0 ? "read" : "short read";
			p->errnum = errno;
		}
	}
	for (size_t i = 0; p->err == NULL && i < p->bs; i++)
		if (buf[i] != 0)
			p->err = "a byte read is not 0";
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

/*
 * One sample: PARALLEL threads, started together, each making `calls`
 * reads of `bs` bytes from its own path; the aggregate MiB/s, or -1.
 */
static double run_parallel(char paths[PARALLEL][128], size_t bs, unsigned calls)
{
	struct par_reader rd[PARALLEL];
	int go[2], started = 0, failed = 0;

	if (pipe(go) < 0)
		return -1;
	for (; started < PARALLEL; started++) {
		rd[started] =
		    (struct par_reader){.path = paths[started], .bs = bs, .calls = calls, .go = go[0]};
		if (pthread_create(&rd[started].thread, NULL, par_read, &rd[started]) != 0)
			break;
	}
	/* Readers that would start alone measure nothing: they make no call. */
	for (int i = 0; started < PARALLEL && i < started; i++)
		rd[i].calls = 0;
	double t0 = bench_now_ms();
	close(go[1]);
	for (int i = 0; i < started; i++)
		pthread_join(rd[i].thread, NULL);
	double ms = bench_now_ms() - t0;
	close(go[0]);
	if (started < PARALLEL) {
		fprintf(stderr, "bench-io: could not start %d readers\n", PARALLEL);
		return -1;
	}
	for (int i = 0; i < PARALLEL; i++)
		if (rd[i].err != NULL) {
			fprintf(stderr, "bench-io: %s: %s%s%s\n", rd[i].path, rd[i].err,
				rd[i].errnum ? ": " : "", rd[i].errnum ? strerror(rd[i].errnum) : "");
			failed = 1;
		}
	if (failed)
		return -1;
	return ms > 0 ? (double)bs * calls * PARALLEL / MIB / (ms / 1000) : 0;
}

/*
 * One comparison: each side's throughput and call latency, and one ratio
 * per round, of the two samples taken back to back: a machine whose speed
 * drifts between rounds (a shared host) moves both alike.  Median and
 * spread over the rounds.
 */
static void report_pair(const char *op, const char *size, const char *how, const struct series *s)
{
	char fig[128];
	double ratio[s[PLUGFS].nmibs + 1];
	size_t nr = 0;

	for (int i = 0; i < NSIDES; i++) {
		snprintf(fig, sizeof(fig), "%s %s%s %s", op, size, how, side_names[i]);
		bench_report("io", fig, "MiB/s", s[i].mibs, s[i].nmibs);
		snprintf(fig, sizeof(fig), "%s %s%s %s latency", op, size, how, side_names[i]);
		if (s[i].nlat > 0)
			bench_report("io", fig, "us", s[i].lat, s[i].nlat);
	}
	for (size_t k = 0; k < s[PLUGFS].nmibs && k < s[INPROC].nmibs; k++)
		if (s[INPROC].mibs[k] > 0)
			ratio[nr++] = s[PLUGFS].mibs[k] / s[INPROC].mibs[k];
	snprintf(fig, sizeof(fig), "%s %s%s ratio plugfs/in-process", op, size, how);
	bench_report("io", fig, "x", ratio, nr);
}

/*
 * The machine's process round trip: one protocol header sent over a
 * SOCK_SEQPACKET socketpair (the pipe protocol's transport) to a child
 * that sends it back.  A blocking recv on both sides, no poll: the least a
 * daemon-driver round trip can cost.  Started once, sampled every round
 * (RT_CALLS round trips) beside the other figures.
 */
struct pingpong {
	int fd;
	pid_t pid;
};

static int pingpong_start(struct pingpong *p)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -1;
	if ((p->pid = fork()) == 0) {
		uint8_t msg[PROTO_HDR_LEN];
		ssize_t n;

		close(sv[0]);
		while ((n = recv(sv[1], msg, sizeof(msg), 0)) > 0 && send(sv[1], msg, (size_t)n, 0) == n)
			;
		_exit(0);
	}
	close(sv[1]);
	p->fd = sv[0];
	if (p->pid < 0) {
		close(p->fd);
		return -1;
	}
	return 0;
}

static int pingpong_sample(struct pingpong *p, struct series *s)
{
	uint8_t msg[PROTO_HDR_LEN] = {0};

	for (unsigned i = 0; i < RT_CALLS; i++) {
		double t0 = bench_now_ms();
		if (send(p->fd, msg, sizeof(msg), 0) != (ssize_t)sizeof(msg) ||
		    recv(p->fd, msg, sizeof(msg), 0) != (ssize_t)sizeof(msg)) {
			fprintf(stderr, "bench-io: round trip: %s\n", strerror(errno));
			return -1;
		}
		s->lat[s->nlat++] = (bench_now_ms() - t0) * 1000;
	}
	return 0;
}

static void pingpong_stop(struct pingpong *p)
{
	if (p->pid > 0) {
		close(p->fd);
		waitpid(p->pid, NULL, 0);
		p->pid = 0;
	}
}

/*
 * Holds every task of pid, and of its children and theirs, to the CPUs of
 * mask.  The number of tasks that could not be held.
 */
static int pin_tree(pid_t pid, const cpu_set_t *mask)
{
	char path[64];
	struct dirent *e;
	int failed = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	if ((d = opendir(path)) == NULL)
		return errno == ENOENT ? 0 : 1; /* gone, or not to be held */
	while ((e = readdir(d)) != NULL) {
		char children[96], buf[1024], *save = NULL;
		pid_t tid = (pid_t)atoi(e->d_name);

		if (tid <= 0)
			continue;
		/* A task that is gone (ESRCH) needs no holding. */
		if (sched_setaffinity(tid, sizeof(*mask), mask) < 0 && errno != ESRCH) {
			fprintf(stderr, "bench-io: CPUs of task %d: %s\n", (int)tid, strerror(errno));
			failed++;
		}
		snprintf(children, sizeof(children), "/proc/%d/task/%d/children", (int)pid, (int)tid);
		ssize_t n = read_file(children, buf, sizeof(buf) - 1);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		for (char *c = strtok_r(buf, " \n", &save); c != NULL; c = strtok_r(NULL, " \n", &save))
			failed += pin_tree((pid_t)atoi(c), mask);
	}
	closedir(d);
	return failed;
}

/*
 * The 1 MiB reads and writes again, each server (nullfs; the daemon
 * with its drivers) held on the first CPU this process may use and the
 * reader on the second; everything is let go afterwards.  Skipped on one CPU.
 */
static int run_pinned(const pid_t *pids, char path[NSIDES][NOPS][128], int rounds, uint8_t *buf,
		      struct series pinned[NPINNED][NSIDES])
{
	cpu_set_t all, server, reader;
	int cpu[2], ncpu = 0, failed = 0, r = 0;

	if (sched_getaffinity(0, sizeof(all), &all) < 0 || CPU_COUNT(&all) < 2)
		return 0;
	for (int c = 0; c < CPU_SETSIZE && ncpu < 2; c++)
		if (CPU_ISSET(c, &all))
			cpu[ncpu++] = c;
	CPU_ZERO(&server);
	CPU_SET(cpu[0], &server);
	CPU_ZERO(&reader);
	CPU_SET(cpu[1], &reader);
	for (int i = 0; i < NSIDES; i++)
		failed += pin_tree(pids[i], &server);
	if (sched_setaffinity(0, sizeof(reader), &reader) < 0)
		failed++;
	/* Figures called pinned must have been. */
	if (failed)
		fprintf(stderr, "bench-io: %d tasks not held on their CPU: no pinned figures\n", failed);
	for (int round = 0; !failed && r == 0 && round < rounds; round++)
		for (size_t w = 0; r == 0 && w < NPINNED; w++)
			for (int k = 0; r == 0 && k < NSIDES; k++) {
				int i = (round + k) % NSIDES;
				struct series *ss = &pinned[w][i];
				double v = run_sample(path[i][w], ops[w].write, sizes[NSIZES - 1].bs,
						      sizes[NSIZES - 1].calls, buf, ss);
				if (v < 0)
					r = -1;
				else
					ss->mibs[ss->nmibs++] = v;
			}
	for (int i = 0; i < NSIDES; i++)
		pin_tree(pids[i], &all);
	sched_setaffinity(0, sizeof(all), &all);
	if (failed || r < 0)
		return r;
	printf("bench-io: \"pinned\": each server held on CPU %d, the caller on CPU %d\n", cpu[0], cpu[1]);
	for (size_t w = 0; w < NPINNED; w++)
		report_pair(ops[w].name, sizes[NSIZES - 1].name, " pinned", pinned[w]);
	return 0;
}

static int wait_for_file(const char *path, int ms)
{
	struct stat st;
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	while (stat(path, &st) < 0) {
		if (mono_ms() >= deadline)
			return -1;
		usleep(10000);
	}
	return 0;
}

static pid_t spawn_nullfs(const char *mnt)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(nullfs_main(mnt));
	return pid;
}

static void stop(pid_t pid)
{
	int status;

	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
	}
}

static int inside(int rounds)
{
	char dir[] = "/tmp/plugfs-bench-io.XXXXXX", mnt[NSIDES][64], path[NSIDES][NOPS][128];
	pid_t pids[NSIDES] = {0};
	struct series s[NSIZES][NOPS][NSIDES], pinned[NPINNED][NSIDES] = {0}, par[NPAR][NSIDES] = {0},
					       rt = {0};
	char par_path[NSIDES][PARALLEL][128];
	struct pingpong pp = {.pid = 0};
	uint8_t *buf = aligned_alloc(4096, MIB);
	int r = 1;

	memset(s, 0, sizeof(s));
	if (buf == NULL || mkdtemp(dir) == NULL) {
		free(buf);
		return 1;
	}
	snprintf(mnt[PLUGFS], sizeof(mnt[PLUGFS]), "%s/plugfs", dir);
	snprintf(mnt[INPROC], sizeof(mnt[INPROC]), "%s/nullfs", dir);
	for (int i = 0; i < NSIDES; i++)
		mkdir(mnt[i], 0755);
	for (size_t o = 0; o < NOPS; o++) {
		snprintf(path[PLUGFS][o], sizeof(path[0][0]), "%s/usb0/%s", mnt[PLUGFS], ops[o].file);
		snprintf(path[INPROC][o], sizeof(path[0][0]), "%s/%s", mnt[INPROC], ops[o].file);
	}
	for (int k = 0; k < PARALLEL; k++) {
		snprintf(par_path[PLUGFS][k], sizeof(par_path[0][0]), "%s/usb%d/zero", mnt[PLUGFS], k);
		snprintf(par_path[INPROC][k], sizeof(par_path[0][0]), "%s/zero", mnt[INPROC]);
	}
	pids[PLUGFS] = bench_plugfs_start(mnt[PLUGFS], "plugfs-bench-driver");
	pids[INPROC] = spawn_nullfs(mnt[INPROC]);
	for (int i = 0; i < NSIDES; i++)
		for (int k = 0; k <= PARALLEL; k++) {
			const char *want = k < PARALLEL ? par_path[i][k] : path[i][NOPS - 1];
			if (wait_for_file(want, 20000) < 0) {
				fprintf(stderr,
					"bench-io: %s did not appear (is %s/plugfs-bench-driver built?)\n",
					want, build_dir());
				goto out;
			}
		}
	for (size_t z = 0; z < NSIZES; z++)
		for (size_t w = 0; w < NOPS; w++)
			for (int i = 0; i < NSIDES; i++)
				if (series_alloc(&s[z][w][i], rounds, sizes[z].calls) < 0)
					goto out;
	for (size_t w = 0; w < NPINNED; w++)
		for (int i = 0; i < NSIDES; i++)
			if (series_alloc(&pinned[w][i], rounds, sizes[NSIZES - 1].calls) < 0)
				goto out;
	for (size_t z = 0; z < NPAR; z++)
		for (int i = 0; i < NSIDES; i++)
			if (series_alloc(&par[z][i], rounds, 0) < 0)
				goto out;
	if (series_alloc(&rt, rounds, RT_CALLS) < 0)
		goto out;
	if (pingpong_start(&pp) < 0)
		goto out;
	for (int round = 0; round < rounds; round++) {
		for (size_t z = 0; z < NSIZES; z++)
			for (size_t w = 0; w < NOPS; w++)
				for (int k = 0; k < NSIDES; k++) {
					/* Alternate which side goes first. */
					int i = (round + k) % NSIDES;
					struct series *ss = &s[z][w][i];
					double v = run_sample(path[i][w], ops[w].write, sizes[z].bs,
							      sizes[z].calls, buf, ss);
					if (v < 0)
						goto out;
					ss->mibs[ss->nmibs++] = v;
				}
		for (size_t z = 0; z < NPAR; z++)
			for (int k = 0; k < NSIDES; k++) {
				int i = (round + k) % NSIDES;
				const size_t bs = sizes[PAR_FIRST + z].bs;
				double v =
				    run_parallel(par_path[i], bs, sizes[PAR_FIRST + z].calls / PARALLEL);
				if (v < 0)
					goto out;
				par[z][i].mibs[par[z][i].nmibs++] = v;
			}
		if (pingpong_sample(&pp, &rt) < 0)
			goto out;
	}
	for (size_t z = 0; z < NSIZES; z++)
		for (size_t w = 0; w < NOPS; w++)
			report_pair(ops[w].name, sizes[z].name, "", s[z][w]);
	for (size_t z = 0; z < NPAR; z++) {
		char how[32];
		snprintf(how, sizeof(how), ", %d in parallel", PARALLEL);
		report_pair("read", sizes[PAR_FIRST + z].name, how, par[z]);
	}
	bench_report("io", "process round trip (socketpair, 40 bytes)", "us", rt.lat, rt.nlat);
	for (size_t z = 0; z < NSIZES; z++) {
		/* The stream file is the last of ops. */
		double in = bench_median(s[z][NOPS - 1][INPROC].lat, s[z][NOPS - 1][INPROC].nlat);
		double trip = bench_median(rt.lat, rt.nlat);
		char fig[96];
		snprintf(fig, sizeof(fig), "stream write %s ceiling in-process/(in-process+round trip)",
			 sizes[z].name);
		bench_report_value("io", fig, "x", in / (in + trip));
	}
	if (run_pinned(pids, path, rounds, buf, pinned) < 0)
		goto out;
	r = 0;
out:
	pingpong_stop(&pp);
	for (int i = 0; i < NSIDES; i++)
		stop(pids[i]);
	for (size_t z = 0; z < NSIZES; z++)
		for (size_t w = 0; w < NOPS; w++)
			for (int i = 0; i < NSIDES; i++)
				series_free(&s[z][w][i]);
	for (size_t w = 0; w < NPINNED; w++)
		for (int i = 0; i < NSIDES; i++)
			series_free(&pinned[w][i]);
	for (size_t z = 0; z < NPAR; z++)
		for (int i = 0; i < NSIDES; i++)
			series_free(&par[z][i]);
	series_free(&rt);
	for (int i = 0; i < NSIDES; i++)
		rmdir(mnt[i]);
	rmdir(dir);
	free(buf);
	return r;
}

int main(int argc, char **argv)
{
	char emu[512], self[512], r[16];
	int rounds = 5;

	if (argc > 1 && strcmp(argv[1], "--inside") == 0)
		return inside(argc > 2 ? atoi(argv[2]) : rounds);
	if (argc > 2 && strcmp(argv[1], "--nullfs") == 0)
		return nullfs_main(argv[2]);
	if (argc > 1)
		rounds = atoi(argv[1]);
	if (rounds <= 0)
		return 2;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 1;
	self[n] = '\0';
	snprintf(emu, sizeof(emu), "%s/plugfs-emu", build_dir());
	snprintf(r, sizeof(r), "%d", rounds);
	char model[16];
	snprintf(model, sizeof(model), "null:%d", PARALLEL);
	execl(emu, emu, "--model", model, "--", self, "--inside", r, (char *)NULL);
	fprintf(stderr, "bench-io: %s: %s\n", emu, strerror(errno));
	return 1;
}
