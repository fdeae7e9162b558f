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
 * It runs itself again under plugfs-emu --model null (`--inside`), mounts
 * plugfs there with the test-only driver host build/plugfs-bench-driver
 * (which gives the null model the null driver) and nullfs beside it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "nullfs.h"
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

enum side { PLUGFS, INPROC, NSIDES };
static const char *const side_names[NSIDES] = {"plugfs", "in-process"};

struct series {
	double *mibs; /* one throughput sample per round */
	double *lat;  /* one latency sample (us) per call */
	size_t nmibs, nlat;
};

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
	struct series s[NSIZES][NOPS][NSIDES];
	uint8_t *buf = aligned_alloc(4096, MIB);
	int r = 1;

	if (buf == NULL || mkdtemp(dir) == NULL)
		return 1;
	snprintf(mnt[PLUGFS], sizeof(mnt[PLUGFS]), "%s/plugfs", dir);
	snprintf(mnt[INPROC], sizeof(mnt[INPROC]), "%s/nullfs", dir);
	for (int i = 0; i < NSIDES; i++)
		mkdir(mnt[i], 0755);
	for (size_t o = 0; o < NOPS; o++) {
		snprintf(path[PLUGFS][o], sizeof(path[0][0]), "%s/usb0/%s", mnt[PLUGFS], ops[o].file);
		snprintf(path[INPROC][o], sizeof(path[0][0]), "%s/%s", mnt[INPROC], ops[o].file);
	}
	pids[PLUGFS] = bench_plugfs_start(mnt[PLUGFS], "plugfs-bench-driver");
	pids[INPROC] = spawn_nullfs(mnt[INPROC]);
	for (int i = 0; i < NSIDES; i++)
		if (wait_for_file(path[i][NOPS - 1], 20000) < 0) {
			fprintf(stderr, "bench-io: %s did not appear (is %s/plugfs-bench-driver built?)\n",
				path[i][NOPS - 1], build_dir());
			goto out;
		}
	memset(s, 0, sizeof(s));
	for (size_t z = 0; z < NSIZES; z++)
		for (size_t w = 0; w < NOPS; w++)
			for (int i = 0; i < NSIDES; i++) {
				s[z][w][i].mibs = calloc((size_t)rounds, sizeof(double));
				s[z][w][i].lat = calloc((size_t)rounds * sizes[z].calls, sizeof(double));
				if (s[z][w][i].mibs == NULL || s[z][w][i].lat == NULL)
					goto out;
			}
	for (int round = 0; round < rounds; round++)
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
	for (size_t z = 0; z < NSIZES; z++)
		for (size_t w = 0; w < NOPS; w++) {
			char fig[96];
			const char *op = ops[w].name;
			for (int i = 0; i < NSIDES; i++) {
				snprintf(fig, sizeof(fig), "%s %s %s", op, sizes[z].name, side_names[i]);
				bench_report("io", fig, "MiB/s", s[z][w][i].mibs, s[z][w][i].nmibs);
				snprintf(fig, sizeof(fig), "%s %s %s latency", op, sizes[z].name,
					 side_names[i]);
				bench_report("io", fig, "us", s[z][w][i].lat, s[z][w][i].nlat);
			}
			/*
			 * One ratio per round, of the two samples taken back to back: a
			 * machine whose speed drifts between rounds (a shared host) moves
			 * both alike.  Median and spread over the rounds.
			 */
			double ratio[s[z][w][PLUGFS].nmibs + 1];
			size_t nr = 0;
			for (size_t k = 0; k < s[z][w][PLUGFS].nmibs && k < s[z][w][INPROC].nmibs; k++)
				if (s[z][w][INPROC].mibs[k] > 0)
					ratio[nr++] = s[z][w][PLUGFS].mibs[k] / s[z][w][INPROC].mibs[k];
			snprintf(fig, sizeof(fig), "%s %s ratio plugfs/in-process", op, sizes[z].name);
			bench_report("io", fig, "x", ratio, nr);
		}
	r = 0;
out:
	for (int i = 0; i < NSIDES; i++)
		stop(pids[i]);
	for (size_t z = 0; z < NSIZES; z++)
		for (size_t w = 0; w < NOPS; w++)
			for (int i = 0; i < NSIDES; i++) {
				free(s[z][w][i].mibs);
				free(s[z][w][i].lat);
			}
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
	execl(emu, emu, "--model", "null", "--", self, "--inside", r, (char *)NULL);
	fprintf(stderr, "bench-io: %s: %s\n", emu, strerror(errno));
	return 1;
}
