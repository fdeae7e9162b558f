/*
 * Integration test harness (see harness.h).
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The pause between two looks at a condition; the deadline is the caller's. */
static void poll_pause(void)
{
	struct timespec ts = {0, 2 * 1000 * 1000};

	nanosleep(&ts, NULL);
}

const char *build_dir(void)
{
	static char self[4096];
	const char *b = getenv("PLUGFS_BUILD");

	if (b != NULL && b[0] != '\0')
		return b;
	/* The directory the test or benchmark program was built into: an absolute path, so that
	 * `build/bench-io` works from anywhere and the daemon (which leaves the cwd) finds it too. */
	if (self[0] == '\0') {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		char *slash = n > 0 ? memrchr(self, '/', (size_t)n) : NULL;
		if (slash == NULL)
			return "build";
		*slash = '\0';
	}
	return self;
}

const char *mpath(const struct mnt *m, const char *rel)
{
	static char bufs[8][512];
	static unsigned next;
	char *b = bufs[next++ % 8];

	snprintf(b, sizeof(bufs[0]), "%s/%s", m->path, rel);
	return b;
}

int mnt_is_mounted(const char *path)
{
	char line[4096];
	FILE *f = fopen("/proc/self/mountinfo", "re");
	int found = 0;

	if (f == NULL)
		return 0;
	while (!found && fgets(line, sizeof(line), f) != NULL) {
		/* Field 5 is the mount point. */
		char *p = line;
		for (int i = 0; i < 4 && p != NULL; i++) {
			p = strchr(p, ' ');
			if (p != NULL)
				p++;
		}
		if (p == NULL)
			continue;
		size_t len = strcspn(p, " ");
		found = len == strlen(path) && strncmp(p, path, len) == 0;
	}
	fclose(f);
	return found;
}

ssize_t read_file(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n = 0;

	if (fd < 0)
		return -errno;
	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0) {
			int e = errno;
			close(fd);
			return -e;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	return (ssize_t)n;
}

int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	ssize_t r = write(fd, s, strlen(s));
	int e = errno;
	close(fd);
	if (r < 0)
		return -e;
	return (size_t)r == strlen(s) ? 0 : -EIO;
}

const char *read_line(const char *path)
{
	static char buf[4096];
	ssize_t n = read_file(path, buf, sizeof(buf) - 1);

	if (n < 0)
		n = 0;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return buf;
}

pid_t fn_pid(const struct mnt *m, const char *name)
{
	static char buf[65536];
	ssize_t n = read_file(mpath(m, "devices"), buf, sizeof(buf) - 1);

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		char fname[64], port[64], id[16], drv[32], state[32], pid[16];
		unsigned restarts;
		if (sscanf(line, "%63s %63s %15s %31s %31s %u %15s", fname, port, id, drv, state, &restarts,
			   pid) != 7)
			continue;
		if (strcmp(fname, name) == 0)
			return pid[0] == '-' ? 0 : (pid_t)atoi(pid);
	}
	return 0;
}

pid_t fn_pid_served(const struct mnt *m, const char *fn, const char *file)
{
	char rel[128], buf[256];

	snprintf(rel, sizeof(rel), "%s/%s", fn, file);
	return read_file(mpath(m, rel), buf, sizeof(buf)) >= 0 ? fn_pid(m, fn) : 0;
}

int wait_state(const struct mnt *m, const char *fn, const char *state, int ms)
{
	char rel[128];
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	snprintf(rel, sizeof(rel), "%s/state", fn);
	do {
		if (strcmp(read_line(mpath(m, rel)), state) == 0)
			return 0;
		poll_pause();
	} while (mono_ms() < deadline);
	fprintf(stderr, "harness: %s/state is '%s', waited %d ms for '%s'\n", fn, read_line(mpath(m, rel)),
		ms, state);
	return -1;
}

int wait_event(const struct mnt *m, const char *a, const char *b, int ms)
{
	static char buf[256 * 1024];
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	do {
		ssize_t n = read_file(mpath(m, "events"), buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = '\0';
			for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n"))
				if (strstr(line, a) != NULL && (b == NULL || strstr(line, b) != NULL))
					return 0;
		}
		poll_pause();
	} while (mono_ms() < deadline);
	fprintf(stderr, "harness: no event with '%s' and '%s' within %d ms\n", a, b ? b : "", ms);
	return -1;
}

const char *wait_file_has(const char *path, const char *text, int ms)
{
	static char buf[1 << 20];
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	do {
		ssize_t n = read_file(path, buf, sizeof(buf) - 1);
		if (n > 0) {
			buf[n] = '\0';
			const char *at = strstr(buf, text);
			if (at != NULL)
				return at;
		}
		poll_pause();
	} while (mono_ms() < deadline);
	return NULL;
}

int wait_pid_gone(pid_t pid, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;
	char path[64], st[512];

	/* A zombie still has its /proc entry: gone means reaped too. */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	do {
		if (read_file(path, st, sizeof(st)) < 0)
			return 0;
		poll_pause();
	} while (mono_ms() < deadline);
	return -1;
}

pid_t wait_new_pid(const struct mnt *m, const char *fn, pid_t old, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	do {
		char rel[128];
		pid_t p = fn_pid(m, fn);
		snprintf(rel, sizeof(rel), "%s/state", fn);
		if (p != 0 && p != old && strcmp(read_line(mpath(m, rel)), "running") == 0)
			return p;
		poll_pause();
	} while (mono_ms() < deadline);
	return 0;
}

static unsigned count_running(const struct mnt *m)
{
	static char buf[65536];
	ssize_t n = read_file(mpath(m, "devices"), buf, sizeof(buf) - 1);
	unsigned running = 0;

	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (char *p = buf; (p = strstr(p, " running ")) != NULL; p++)
		running++;
	return running;
}

/* Files the models left in a directory of ours (SYSNAME.printed...), see PLUGFS_EMU_DIR. */
static void remove_model_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL)
		if (e->d_type == DT_REG)
			unlinkat(dirfd(d), e->d_name, 0);
	closedir(d);
}

int mnt_start(struct mnt *m, const char *const *models, const char *opts, unsigned nfuncs)
{
	char dir[sizeof(m->dir)];

	snprintf(dir, sizeof(dir), "/tmp/plugfs-test.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("harness: mkdtemp");
		return -1;
	}
	int r = mnt_start_at(m, dir, models, opts, nfuncs);
	m->own_dir = 1;
	if (r < 0)
		rmdir(dir);
	return r;
}

int mnt_start_at(struct mnt *m, const char *dir, const char *const *models, const char *opts, unsigned nfuncs)
{
	return mnt_start_full(m, dir, models, opts, nfuncs, NULL);
}

int mnt_start_with_driver(struct mnt *m, const char *const *models, const char *opts, unsigned nfuncs,
			  const char *driver_host)
{
	char dir[sizeof(m->dir)];

	snprintf(dir, sizeof(dir), "/tmp/plugfs-test.XXXXXX");
	if (mkdtemp(dir) == NULL) {
		perror("harness: mkdtemp");
		return -1;
	}
	int r = mnt_start_full(m, dir, models, opts, nfuncs, driver_host);
	m->own_dir = 1;
	if (r < 0)
		rmdir(dir);
	return r;
}

int mnt_start_full(struct mnt *m, const char *dir, const char *const *models, const char *opts,
		   unsigned nfuncs, const char *driver_host)
{
	if (mnt_spawn(m, dir, models, opts, driver_host) < 0)
		return -1;
	return mnt_wait_up(m, nfuncs);
}

int mnt_spawn(struct mnt *m, const char *dir, const char *const *models, const char *opts,
	      const char *driver_host)
{
	char emu[512], plugfs[512], driver[512];
	const char *argv[64];
	int argc = 0;

	memset(m, 0, sizeof(*m));
	m->ctl_fd = -1;
	snprintf(m->dir, sizeof(m->dir), "%s", dir);
	snprintf(m->path, sizeof(m->path), "%s/mnt", m->dir);
	snprintf(m->log, sizeof(m->log), "%s/log", m->dir);
	snprintf(m->ctl, sizeof(m->ctl), "%s/ctl", m->dir);
	mkdir(m->path, 0755);
	snprintf(emu, sizeof(emu), "%s/plugfs-emu", build_dir());
	snprintf(plugfs, sizeof(plugfs), "%s/plugfs", build_dir());
	if (driver_host != NULL)
		snprintf(driver, sizeof(driver), "%s", driver_host);
	else
		snprintf(driver, sizeof(driver), "%s/plugfs-driver", build_dir());

	argv[argc++] = emu;
	argv[argc++] = "--control";
	argv[argc++] = m->ctl;
	for (const char *const *p = models; *p != NULL; p++) {
		argv[argc++] = "--model";
		argv[argc++] = *p;
	}
	argv[argc++] = "--";
	argv[argc++] = plugfs;
	argv[argc++] = "-f";
	if (opts != NULL && opts[0] != '\0') {
		argv[argc++] = "-o";
		argv[argc++] = opts;
	}
	argv[argc++] = m->path;
	argv[argc] = NULL;

	m->pid = fork();
	if (m->pid < 0) {
		perror("harness: fork");
		return -1;
	}
	if (m->pid == 0) {
		int fd = open(m->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd >= 0) {
			dup2(fd, 2);
			dup2(fd, 1);
		}
		setenv("PLUGFS_DRIVER", driver, 1);
		/* Models that record what they received (printers) write it here. */
		setenv("PLUGFS_EMU_DIR", m->dir, 1);
		execv(emu, (char *const *)argv);
		_exit(127);
	}
	return 0;
}

int mnt_wait_up(struct mnt *m, unsigned nfuncs)
{
	uint64_t deadline = mono_ms() + 20000;
	/* nfuncs 0: only the mount itself (the devices file) must be there. */
	while (!mnt_is_mounted(m->path) || count_running(m) < nfuncs ||
	       (nfuncs == 0 && access(mpath(m, "devices"), R_OK) != 0)) {
		int st;
		if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
			fprintf(stderr, "harness: plugfs-emu exited early (status %#x); log %s:\n", st,
				m->log);
			char buf[4096];
			ssize_t n = read_file(m->log, buf, sizeof(buf) - 1);
			if (n > 0) {
				buf[n] = '\0';
				fputs(buf, stderr);
			}
			m->pid = 0;
			mnt_stop(m);
			return -1;
		}
		if (mono_ms() > deadline) {
			fprintf(stderr, "harness: mount or drivers not up within 20 s; log %s:\n", m->log);
			char buf[4096];
			ssize_t n = read_file(m->log, buf, sizeof(buf) - 1);
			if (n > 0) {
				buf[n] = '\0';
				fputs(buf, stderr);
			}
			mnt_stop(m);
			return -1;
		}
		poll_pause();
	}
	return 0;
}

static int ctl_connect(struct mnt *m)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	uint64_t deadline = mono_ms() + 10000;

	if (m->ctl_fd >= 0)
		return 0;
	if (strlen(m->ctl) >= sizeof(sa.sun_path))
		return -1;
	memcpy(sa.sun_path, m->ctl, strlen(m->ctl) + 1);
	/* plugfs-emu creates the socket before it starts plugfs: it may not be there yet. */
	do {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			m->ctl_fd = fd;
			return 0;
		}
		close(fd);
		poll_pause();
	} while (mono_ms() < deadline);
	fprintf(stderr, "harness: cannot connect to %s: %s\n", m->ctl, strerror(errno));
	return -1;
}

int emu_send(struct mnt *m, const char *line)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "%s\n", line);

	if (ctl_connect(m) < 0)
		return -1;
	return write(m->ctl_fd, buf, (size_t)n) == n ? 0 : -1;
}

int emu_reply(struct mnt *m)
{
	char line[256];
	size_t n = 0;

	if (m->ctl_fd < 0)
		return -1;
	/* Byte by byte: the next answer stays in the socket for the next call. */
	while (n + 1 < sizeof(line)) {
		ssize_t r = read(m->ctl_fd, line + n, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (line[n] == '\n')
			break;
		n++;
	}
	line[n] = '\0';
	if (strncmp(line, "ok", 2) == 0)
		return 0;
	fprintf(stderr, "harness: plugfs-emu answered '%s'\n", line);
	return -1;
}

int emu_plug(struct mnt *m, const char *model, unsigned port)
{
	char cmd[128];

	if (port != 0)
		snprintf(cmd, sizeof(cmd), "plug %s %u", model, port);
	else
		snprintf(cmd, sizeof(cmd), "plug %s", model);
	return emu_send(m, cmd) < 0 ? -1 : emu_reply(m);
}

int emu_unplug(struct mnt *m, const char *sysname)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "unplug %s", sysname);
	return emu_send(m, cmd) < 0 ? -1 : emu_reply(m);
}

/* Counts `devices` lines: all, running ones, or those of function `name`. */
static int devices_lines(const struct mnt *m, const char *name, int running_only)
{
	static char buf[65536];
	ssize_t n = read_file(mpath(m, "devices"), buf, sizeof(buf) - 1);
	int count = 0;

	if (n < 0)
		return -1;
	buf[n] = '\0';
	for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		if (name != NULL && (strncmp(line, name, strlen(name)) != 0 || line[strlen(name)] != ' '))
			continue;
		if (running_only && strstr(line, " running ") == NULL)
			continue;
		count++;
	}
	return count;
}

int count_function(const struct mnt *m, const char *name)
{
	return devices_lines(m, name, 0);
}

int count_functions(const struct mnt *m, int running_only)
{
	return devices_lines(m, NULL, running_only);
}

int wait_function(const struct mnt *m, const char *name, int present, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	do {
		if ((devices_lines(m, name, 0) > 0) == (present != 0))
			return 0;
		poll_pause();
	} while (mono_ms() < deadline);
	fprintf(stderr, "harness: %s still %s after %d ms\n", name, present ? "absent" : "present", ms);
	return -1;
}

long rss_kb(pid_t pid)
{
	char path[64], buf[4096];

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	ssize_t n = read_file(path, buf, sizeof(buf) - 1);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *p = strstr(buf, "VmRSS:");
	return p != NULL ? strtol(p + 6, NULL, 10) : -1;
}

void mnt_stop(struct mnt *m)
{
	if (m->ctl_fd > 0) {
		close(m->ctl_fd);
		m->ctl_fd = -1;
	}
	if (m->pid > 0) {
		int st;
		uint64_t deadline = mono_ms() + 10000;
		kill(m->pid, SIGTERM);
		m->status = -1;
		while (waitpid(m->pid, &st, WNOHANG) == 0) {
			if (mono_ms() > deadline) {
				fprintf(stderr, "harness: plugfs-emu pid %d did not exit, killing it\n",
					(int)m->pid);
				kill(m->pid, SIGKILL);
				waitpid(m->pid, &st, 0);
				break;
			}
			poll_pause();
		}
		m->status = st;
		m->pid = 0;
	}
	if (m->path[0] != '\0' && mnt_is_mounted(m->path)) {
		fprintf(stderr, "harness: %s still mounted after stop, detaching it\n", m->path);
		umount2(m->path, MNT_DETACH);
	}
	/* A sanitizer report from the daemon or a driver fails the test, even if nothing else did. */
	static const char *const reports[] = {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
					      "runtime error:"};
	char *log = malloc(1 << 20);
	ssize_t n = log != NULL ? read_file(m->log, log, (1 << 20) - 1) : -1;
	const char *found = NULL;
	if (n > 0) {
		log[n] = '\0';
		for (size_t i = 0; i < sizeof(reports) / sizeof(reports[0]) && found == NULL; i++)
			if (strstr(log, reports[i]) != NULL)
				found = reports[i];
		if (found != NULL)
			fprintf(stderr, "harness: sanitizer report in %s:\n%s\n", m->log, log);
	}
	free(log);
	if (m->dir[0] != '\0') {
		/* plugfs-emu removes it when it exits normally. */
		if (m->ctl[0] != '\0')
			unlink(m->ctl);
		if (getenv("PLUGFS_KEEP_LOGS") == NULL && found == NULL) {
			unlink(m->log);
			rmdir(m->path);
			if (m->own_dir) {
				remove_model_files(m->dir);
				rmdir(m->dir);
			}
		}
	}
	if (found != NULL)
		sanitizer_report_found(m->log);
}

void assert_loopback_works(const struct mnt *m, const char *fn)
{
	char path[300], c = 0;

	snprintf(path, sizeof(path), "%s/ep02", fn);
	int w = open(mpath(m, path), O_WRONLY);
	snprintf(path, sizeof(path), "%s/ep81", fn);
	int r = open(mpath(m, path), O_RDONLY);
	ck_assert_msg(w >= 0 && r >= 0, "open %s's endpoints: %s", fn, strerror(errno));
	ck_assert_int_eq(write(w, "k", 1), 1);
	ck_assert_int_eq(read(r, &c, 1), 1);
	ck_assert_int_eq(c, 'k');
	close(w);
	close(r);
}

void suite_add_one(Suite *s, const char *name, void (*setup)(void), void (*teardown)(void), int timeout_s,
		   const TTest *test)
{
	TCase *tc = tcase_create(name);

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, timeout_s);
	tcase_add_test(tc, test);
	suite_add_tcase(s, tc);
}

/* Whether task tid (of this process or another) sleeps in system call nr now. */
static int blocked_in(pid_t tid, long nr)
{
	char path[64], buf[256], *end;

	snprintf(path, sizeof(path), "/proc/%d/syscall", (int)tid);
	/* The call's number, then its arguments: the task is inside it, asleep. */
	ssize_t n = read_file(path, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtol(buf, &end, 10) == nr && *end == ' ';
}

int wait_blocked_in(pid_t tid, long nr, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	do {
		if (blocked_in(tid, nr))
			return 0;
		poll_pause();
	} while (mono_ms() < deadline);
	return -1;
}

int wait_blocked_in_read(pid_t tid, int ms)
{
	return wait_blocked_in(tid, SYS_read, ms);
}

static void *bg_read_main(void *arg)
{
	struct bg_read *b = arg;

	b->tid = gettid();
	b->started = 1;
	b->ret = read(b->fd, b->buf, b->want);
	b->err = b->ret < 0 ? errno : 0;
	return NULL;
}

void bg_read_start(struct bg_read *b, int fd, size_t want)
{
	b->fd = fd;
	b->want = want < sizeof(b->buf) ? want : sizeof(b->buf);
	b->started = 0;
	b->ret = -2;
	ck_assert_int_eq(pthread_create(&b->thread, NULL, bg_read_main, b), 0);
	uint64_t deadline = mono_ms() + 5000;
	while (!b->started && mono_ms() < deadline)
		poll_pause();
	ck_assert_msg(wait_blocked_in_read(b->tid, 5000) == 0, "background read did not block");
}

int bg_read_join(struct bg_read *b, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return pthread_timedjoin_np(b->thread, NULL, &ts) == 0 ? 0 : -1;
}

/*
 * Sanitizer reports are counted in a file named by PLUGFS_SANITIZER_TALLY:
 * mounts end in test processes and in the runner alike, and main() checks
 * the tally once every suite has run (a failing assertion in a teardown
 * would stop the runner).
 */
void sanitizer_report_found(const char *log)
{
	const char *tally = getenv("PLUGFS_SANITIZER_TALLY");
	int fd = tally != NULL ? open(tally, O_WRONLY | O_APPEND | O_CLOEXEC) : -1;

	if (fd >= 0) {
		dprintf(fd, "%s\n", log);
		close(fd);
	}
}

pid_t daemon_pid(const struct mnt *m)
{
	char path[64], buf[256];

	/* plugfs is plugfs-emu's only child. */
	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)m->pid, (int)m->pid);
	ssize_t n = read_file(path, buf, sizeof(buf) - 1);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return (pid_t)atoi(buf);
}

int count_fds(pid_t pid)
{
	char path[64];
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *d = opendir(path);
	if (d == NULL)
		return -1;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

enum child_kind {
	CHILD_ANY,
	CHILD_ZOMBIE,
	CHILD_NOT_SPARE, /* anything but an idle spare driver host (comm plugfs-spare) */
	CHILD_SPARE,
};

/* Children of ppid of a kind: their count, and in *first the first one's pid. */
static int find_children(pid_t ppid, enum child_kind kind, pid_t *first)
{
	DIR *d = opendir("/proc");
	int n = 0;

	if (d == NULL)
		return -1;
	for (struct dirent *e; (e = readdir(d)) != NULL;) {
		char path[300], buf[512];
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		ssize_t len = read_file(path, buf, sizeof(buf) - 1);
		if (len <= 0)
			continue;
		buf[len] = '\0';
		/* "pid (comm) S ppid ...": comm may hold spaces, so parse after the last ')'. */
		char *p = strrchr(buf, ')');
		char state;
		int parent;
		if (p == NULL || sscanf(p + 1, " %c %d", &state, &parent) != 2)
			continue;
		if (parent != ppid)
			continue;
		char *comm = strchr(buf, '(');
		int spare = comm != NULL && strncmp(comm, "(plugfs-spare)", 14) == 0 && state != 'Z';
		if ((kind == CHILD_ZOMBIE && state != 'Z') || (kind == CHILD_NOT_SPARE && spare) ||
		    (kind == CHILD_SPARE && !spare))
			continue;
		if (n++ == 0 && first != NULL)
			*first = (pid_t)atoi(e->d_name);
	}
	closedir(d);
	return n;
}

int count_zombies(pid_t ppid)
{
	return find_children(ppid, CHILD_ZOMBIE, NULL);
}

int count_child_processes(pid_t ppid)
{
	return find_children(ppid, CHILD_ANY, NULL);
}

int count_driver_processes(pid_t ppid)
{
	return find_children(ppid, CHILD_NOT_SPARE, NULL);
}

pid_t spare_pid(pid_t daemon)
{
	pid_t pid = 0;

	return find_children(daemon, CHILD_SPARE, &pid) > 0 ? pid : 0;
}

pid_t wait_spare(pid_t daemon, pid_t other, int ms)
{
	uint64_t deadline = mono_ms() + (uint64_t)ms;

	do {
		pid_t pid = spare_pid(daemon);
		if (pid > 0 && pid != other && blocked_in(pid, SYS_recvfrom))
			return pid;
		poll_pause();
	} while (mono_ms() < deadline);
	return 0;
}

/* A field of /proc/PID/status, whitespace squeezed to single spaces; "" if none. */
const char *proc_status(pid_t pid, const char *key)
{
	static char buf[8192], out[256];
	char path[64];
	size_t klen = strlen(key);

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	ssize_t n = read_file(path, buf, sizeof(buf) - 1);
	out[0] = '\0';
	if (n <= 0)
		return out;
	buf[n] = '\0';
	for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		if (strncmp(line, key, klen) != 0 || line[klen] != ':')
			continue;
		size_t o = 0;
		for (char *c = line + klen + 1; *c != '\0' && o + 1 < sizeof(out); c++)
			if (*c != '\t' && *c != ' ')
				out[o++] = *c;
			else if (o > 0 && out[o - 1] != ' ')
				out[o++] = ' ';
		while (o > 0 && out[o - 1] == ' ')
			o--;
		out[o] = '\0';
		break;
	}
	return out;
}
