/*
 * Scale: a full bus of emulated devices under one mount.  A benchmark: it
 * prints numbers (tests/bench/report.h) and never fails for being slow.
 *
 *     build/bench-scale [DEVICES [ROUNDS]]     (default 127 and 3)
 *
 * It runs itself again under plugfs-emu --model loopback:DEVICES
 * (`--inside`; one bus holds 126 devices, the 127th goes to a second bus),
 * then for each round starts plugfs itself and measures:
 *   - start: from posix_spawn(plugfs) to the mount answering, and to every
 *     function `running` in `devices` (looked at every millisecond);
 *   - memory: the daemon's VmRSS, and each driver host's private memory
 *     (Private_Clean + Private_Dirty of /proc/PID/smaps_rollup: what one
 *     more device costs) and Rss;
 *   - `ls -lR` of the whole mount (every directory and attribute), as a
 *     user runs it: without the emulator's preload library;
 *   - reading in parallel: 1 then PARALLEL loopback devices, interleaved,
 *     each reader writing CHUNK bytes to its device's ep02 and reading
 *     them back from ep81 until BYTES_PER_READER went round; the aggregate
 *     read rate, and the daemon's and the emulator's CPU use over it (the
 *     emulator is one thread serving every device: when it is the
 *     bottleneck, the daemon's CPU per MiB is the isolation's cost);
 *   - stop: from SIGTERM to the daemon's exit (every driver stopped).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "report.h"

#define MAX_DEVICES	 504
#define PARALLEL	 8
#define CHUNK		 (64 * 1024)
#define BYTES_PER_READER (16 * 1024 * 1024)
#define LS_RUNS		 5
#define PAIRS		 2 /* 1-reader and PARALLEL-reader runs per round, interleaved */
#define START_LIMIT_MS	 30000

extern char **environ;

static char mnt[128];

struct reader {
	int index;
	pthread_barrier_t *go;
	long long bytes;
	int err;
	pthread_t thread;
};

/* Functions in `devices` whose state is running; their pids into pids[] when not NULL. */
static int running_functions(pid_t *pids, int cap)
{
	static char buf[1 << 16];
	char path[192];
	int n = 0;

	snprintf(path, sizeof(path), "%s/devices", mnt);
	ssize_t len = read_file(path, buf, sizeof(buf) - 1);
	if (len <= 0)
		return 0;
	buf[len] = '\0';
	for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char name[64], port[64], id[16], drv[32], state[32], pid[16];
		unsigned restarts;
		if (sscanf(line, "%63s %63s %15s %31s %31s %u %15s", name, port, id, drv, state, &restarts,
			   pid) != 7 ||
		    strcmp(state, "running") != 0)
			continue;
		if (pids != NULL && n < cap)
			pids[n] = (pid_t)atoi(pid);
		n++;
	}
	return n;
}

/* A field of /proc/PID/smaps_rollup or status in kB, or -1. */
static long proc_kb(pid_t pid, const char *file, const char *field)
{
	char path[64], buf[4096];

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
	ssize_t n = read_file(path, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	for (char *p = buf; (p = strstr(p, field)) != NULL; p++)
		if ((p == buf || p[-1] == '\n') && p[strlen(field)] == ':')
			return strtol(p + strlen(field) + 1, NULL, 10);
	return -1;
}

/* utime + stime of a process in ms. */
static double cpu_ms(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long ut, st;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	ssize_t n = read_file(path, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	/* Fields 14 and 15; p points at the end of field 2. */
	if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
		return 0;
	return (double)(ut + st) * 1000.0 / (double)sysconf(_SC_CLK_TCK);
}

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	char out_path[192], in_path[192];
	uint8_t *wbuf = malloc(CHUNK), *rbuf = malloc(CHUNK);
	int out = -1, in = -1;

	snprintf(out_path, sizeof(out_path), "%s/usb%d/ep02", mnt, r->index);
	snprintf(in_path, sizeof(in_path), "%s/usb%d/ep81", mnt, r->index);
	if (wbuf == NULL || rbuf == NULL || (out = open(out_path, O_WRONLY)) < 0 ||
	    (in = open(in_path, O_RDONLY)) < 0) {
		r->err = errno != 0 ? errno : ENOMEM;
		pthread_barrier_wait(r->go);
		goto out;
	}
	for (int i = 0; i < CHUNK; i++)
		wbuf[i] = (uint8_t)(i * 7 + r->index);
	pthread_barrier_wait(r->go);
	while (r->bytes < BYTES_PER_READER) {
		if (write(out, wbuf, CHUNK) != CHUNK) {
			r->err = errno != 0 ? errno : EIO;
			break;
		}
		for (size_t got = 0; got < CHUNK;) {
			ssize_t n = read(in, rbuf + got, CHUNK - got);
			if (n <= 0) {
				r->err = n < 0 ? errno : EIO;
				goto out;
			}
			got += (size_t)n;
		}
		if (memcmp(wbuf, rbuf, CHUNK) != 0) {
			r->err = EILSEQ;
			break;
		}
		r->bytes += CHUNK;
	}
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	free(wbuf);
	free(rbuf);
	return NULL;
}

/*
 * `n` readers at once; the aggregate MiB/s, or -1.  The CPU the daemon
 * and the emulator used meanwhile, in % of one core, into *daemon_cpu and
 * *emu_cpu, and the daemon's CPU ms per MiB into *daemon_ms_per_mib.
 */
static double parallel_read(int n, pid_t daemon, double *daemon_cpu, double *emu_cpu,
			    double *daemon_ms_per_mib)
{
	struct reader r[PARALLEL];
	pthread_barrier_t go;
	long long total = 0;
	int failed = 0;

	pthread_barrier_init(&go, NULL, (unsigned)n + 1);
	for (int i = 0; i < n; i++) {
		r[i] = (struct reader){.index = i, .go = &go};
		pthread_create(&r[i].thread, NULL, reader_main, &r[i]);
	}
	pthread_barrier_wait(&go);
	double d0 = cpu_ms(daemon), e0 = cpu_ms(getppid()), t0 = bench_now_ms();
	for (int i = 0; i < n; i++) {
		pthread_join(r[i].thread, NULL);
		total += r[i].bytes;
		if (r[i].err != 0) {
			fprintf(stderr, "bench-scale: reader of usb%d: %s\n", i, strerror(r[i].err));
			failed = 1;
		}
	}
	double ms = bench_now_ms() - t0;
	double dcpu = cpu_ms(daemon) - d0, ecpu = cpu_ms(getppid()) - e0;
	pthread_barrier_destroy(&go);
	if (failed || ms <= 0)
		return -1;
	double mib = (double)total / (1024 * 1024);
	*daemon_cpu = 100 * dcpu / ms;
	*emu_cpu = 100 * ecpu / ms;
	*daemon_ms_per_mib = dcpu / mib;
	return mib / (ms / 1000);
}

/* Runs `ls -lR MNT` as a user would (no preload); its ms, or -1. */
static double ls_lR(void)
{
	static char *env[8];
	char *argv[] = {"ls", "-lR", mnt, NULL};
	posix_spawn_file_actions_t fa;
	int status;
	pid_t pid;

	if (env[0] == NULL) {
		unsigned n = 0;
		for (char **e = environ; *e != NULL && n + 1 < sizeof(env) / sizeof(env[0]); e++)
			if (strncmp(*e, "PATH=", 5) == 0 || strncmp(*e, "LANG=", 5) == 0)
				env[n++] = *e;
		env[n] = NULL;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	double t0 = bench_now_ms();
	int r = posix_spawnp(&pid, "ls", &fa, NULL, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	double ms = bench_now_ms() - t0;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? ms : -1;
}

struct results {
	double start_mount[8], start_running[8], stop[8], daemon_rss[8];
	double *private_kb, *rss_kb;
	size_t nprivate;
	double ls[8 * LS_RUNS];
	size_t nls;
	double one[8 * PAIRS], many[8 * PAIRS], one_dcpu[8 * PAIRS], many_dcpu[8 * PAIRS],
	    many_ecpu[8 * PAIRS], one_ms_mib[8 * PAIRS], many_ms_mib[8 * PAIRS];
	size_t nread;
};

/* One daemon life: start, measure, stop.  0 or -1. */
static int one_round(int devices, int round, struct results *res, pid_t *pids)
{
	char plugfs[512], path[192], log[192];
	char *argv[] = {plugfs, "-f", mnt, NULL};
	posix_spawn_file_actions_t fa;
	int status, rc = -1;
	pid_t pid;

	snprintf(plugfs, sizeof(plugfs), "%s/plugfs", build_dir());
	snprintf(path, sizeof(path), "%s/devices", mnt);
	snprintf(log, sizeof(log), "%s.log", mnt);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 2, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	double t0 = bench_now_ms();
	int r = posix_spawn(&pid, plugfs, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (r != 0) {
		fprintf(stderr, "bench-scale: %s: %s\n", plugfs, strerror(r));
		return -1;
	}
	double mounted = 0, running = 0;
	struct timespec pause = {0, 1000 * 1000};
	while (running == 0) {
		if (mounted == 0 && access(path, R_OK) == 0)
			mounted = bench_now_ms();
		if (mounted != 0 && running_functions(NULL, 0) == devices)
			running = bench_now_ms();
		else if (bench_now_ms() - t0 > START_LIMIT_MS || waitpid(pid, &status, WNOHANG) == pid)
			break;
		else
			nanosleep(&pause, NULL);
	}
	if (running == 0) {
		fprintf(stderr, "bench-scale: round %d: %d of %d functions running after %d ms; log %s\n",
			round, running_functions(NULL, 0), devices, START_LIMIT_MS, log);
		goto stop;
	}
	res->start_mount[round] = mounted - t0;
	res->start_running[round] = running - t0;

	res->daemon_rss[round] = (double)rss_kb(pid);
	int n = running_functions(pids, devices);
	for (int i = 0; i < n; i++) {
		long priv_clean = proc_kb(pids[i], "smaps_rollup", "Private_Clean");
		long priv_dirty = proc_kb(pids[i], "smaps_rollup", "Private_Dirty");
		long rss = proc_kb(pids[i], "smaps_rollup", "Rss");
		if (priv_clean < 0 || priv_dirty < 0 || rss < 0)
			continue;
		res->private_kb[res->nprivate] = (double)(priv_clean + priv_dirty);
		res->rss_kb[res->nprivate++] = (double)rss;
	}

	for (int i = 0; i < LS_RUNS; i++) {
		double ms = ls_lR();
		if (ms < 0) {
			fprintf(stderr, "bench-scale: round %d: ls -lR %s failed\n", round, mnt);
			goto stop;
		}
		res->ls[res->nls++] = ms;
	}

	if (devices >= PARALLEL)
		for (int i = 0; i < PAIRS; i++) {
			size_t k = res->nread;
			double ecpu;
			res->one[k] = parallel_read(1, pid, &res->one_dcpu[k], &ecpu, &res->one_ms_mib[k]);
			res->many[k] = parallel_read(PARALLEL, pid, &res->many_dcpu[k], &res->many_ecpu[k],
						     &res->many_ms_mib[k]);
			if (res->one[k] < 0 || res->many[k] < 0)
				goto stop;
			res->nread++;
		}
	rc = 0;
stop:;
	double t1 = bench_now_ms();
	kill(pid, SIGTERM);
	if (waitpid(pid, &status, 0) == pid && rc == 0)
		res->stop[round] = bench_now_ms() - t1;
	if (rc == 0)
		unlink(log);
	return rc;
}

static int inside(int devices, int rounds)
{
	char dir[] = "/tmp/plugfs-bench-scale.XXXXXX", fig[96];
	struct results res = {0};
	pid_t *pids = calloc((size_t)devices, sizeof(*pids));
	int done = 0;

	res.private_kb = calloc((size_t)devices * (size_t)rounds, sizeof(double));
	res.rss_kb = calloc((size_t)devices * (size_t)rounds, sizeof(double));
	if (pids == NULL || res.private_kb == NULL || res.rss_kb == NULL || mkdtemp(dir) == NULL)
		return 1;
	snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
	mkdir(mnt, 0755);
	char driver[512];
	snprintf(driver, sizeof(driver), "%s/plugfs-driver", build_dir());
	setenv("PLUGFS_DRIVER", driver, 1);
	for (; done < rounds; done++)
		if (one_round(devices, done, &res, pids) < 0)
			break;
	rmdir(mnt);
	rmdir(dir);
	if (done == 0)
		return 1;

	snprintf(fig, sizeof(fig), "start -> mounted (%d devices)", devices);
	bench_report("scale", fig, "ms", res.start_mount, (size_t)done);
	snprintf(fig, sizeof(fig), "start -> %d functions running", devices);
	bench_report("scale", fig, "ms", res.start_running, (size_t)done);
	bench_report("scale", "daemon VmRSS", "KiB", res.daemon_rss, (size_t)done);
	bench_report("scale", "driver host private (Private_Clean+Dirty)", "KiB", res.private_kb,
		     res.nprivate);
	bench_report("scale", "driver host Rss", "KiB", res.rss_kb, res.nprivate);
	bench_report("scale", "ls -lR of the mount", "ms", res.ls, res.nls);
	if (res.nread > 0) {
		snprintf(fig, sizeof(fig), "read, 1 device (loopback ep02->ep81)");
		bench_report("scale", fig, "MiB/s", res.one, res.nread);
		snprintf(fig, sizeof(fig), "read, %d devices in parallel (aggregate)", PARALLEL);
		bench_report("scale", fig, "MiB/s", res.many, res.nread);
		bench_report("scale", "daemon CPU, 1 reader", "%", res.one_dcpu, res.nread);
		snprintf(fig, sizeof(fig), "daemon CPU, %d readers", PARALLEL);
		bench_report("scale", fig, "%", res.many_dcpu, res.nread);
		snprintf(fig, sizeof(fig), "emulator CPU, %d readers", PARALLEL);
		bench_report("scale", fig, "%", res.many_ecpu, res.nread);
		bench_report("scale", "daemon CPU per MiB, 1 reader", "ms/MiB", res.one_ms_mib, res.nread);
		snprintf(fig, sizeof(fig), "daemon CPU per MiB, %d readers", PARALLEL);
		bench_report("scale", fig, "ms/MiB", res.many_ms_mib, res.nread);
	}
	snprintf(fig, sizeof(fig), "stop: SIGTERM -> exit (%d drivers)", devices);
	bench_report("scale", fig, "ms", res.stop, (size_t)done);
	free(res.private_kb);
	free(res.rss_kb);
	free(pids);
	return done == rounds ? 0 : 1;
}

int main(int argc, char **argv)
{
	char emu[512], self[512], model[32], r[16];
	int devices = 127, rounds = 3;

	if (argc > 3 && strcmp(argv[1], "--inside") == 0)
		return inside(atoi(argv[2]), atoi(argv[3]));
	if (argc > 1)
		devices = atoi(argv[1]);
	if (argc > 2)
		rounds = atoi(argv[2]);
	if (devices <= 0 || devices > MAX_DEVICES || rounds <= 0 || rounds > 8) {
		fprintf(stderr, "usage: bench-scale [DEVICES (1..%d) [ROUNDS (1..8)]]\n", MAX_DEVICES);
		return 2;
	}
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 1;
	self[n] = '\0';
	snprintf(emu, sizeof(emu), "%s/plugfs-emu", build_dir());
	snprintf(model, sizeof(model), "loopback:%d", devices);
	snprintf(r, sizeof(r), "%d", rounds);
	char d[16];
	snprintf(d, sizeof(d), "%d", devices);
	execl(emu, emu, "--model", model, "--", self, "--inside", d, r, (char *)NULL);
	fprintf(stderr, "bench-scale: %s: %s\n", emu, strerror(errno));
	return 1;
}
