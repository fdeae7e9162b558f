/*
 * Mounting plugfs for integration tests: plugfs runs under plugfs-emu (the
 * umockdev test bed) over a named set of device models, in a fresh
 * temporary directory.  The test process itself is not preloaded: it uses
 * the mount like a shell script would.
 *
 * Mounts are made in Check's unchecked fixtures (the runner process), so
 * the unmount in the teardown runs even when a forked test dies.
 */
#ifndef PLUGFS_TEST_HARNESS_H
#define PLUGFS_TEST_HARNESS_H

#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>

struct mnt {
	char dir[128];	/* the temporary directory holding everything */
	char path[160]; /* the mountpoint, dir/mnt */
	char log[160];	/* plugfs's and the harness's stderr */
	pid_t pid;	/* plugfs-emu, parent of plugfs */
	int status;	/* its wait status, after mnt_stop */
	int own_dir;	/* dir was made by mnt_start, and is removed by mnt_stop */
	char ctl[160];	/* plugfs-emu's control socket, dir/ctl */
	int ctl_fd;	/* connected on first use; -1 before */
};

/* Where the binaries are: $PLUGFS_BUILD, else ./build. */
const char *build_dir(void);

/*
 * Starts plugfs-emu --model M... -- plugfs -f -o OPTS MNT and waits until
 * the mount is up and `nfuncs` functions are `running`.  plugfs-emu gets
 * PLUGFS_EMU_DIR=m->dir, where models leave files for the test to read.  Returns 0 or -1
 * (with a message on stderr and everything cleaned up).
 */
int mnt_start(struct mnt *m, const char *const *models, const char *opts, unsigned nfuncs);
/* The same in an existing directory (mounting on DIR/mnt). */
int mnt_start_at(struct mnt *m, const char *dir, const char *const *models, const char *opts,
		 unsigned nfuncs);
/* The same with another driver host (a test-only misbehaving one). */
int mnt_start_with_driver(struct mnt *m, const char *const *models, const char *opts, unsigned nfuncs,
			  const char *driver_host);
int mnt_start_full(struct mnt *m, const char *dir, const char *const *models, const char *opts,
		   unsigned nfuncs, const char *driver_host);
/* The two halves of mnt_start_full: start plugfs-emu, then wait for the mount and nfuncs running. */
int mnt_spawn(struct mnt *m, const char *dir, const char *const *models, const char *opts,
	      const char *driver_host);
int mnt_wait_up(struct mnt *m, unsigned nfuncs);
/* SIGTERM, wait for exit, force the unmount if needed, remove the directory. */
void mnt_stop(struct mnt *m);
int mnt_is_mounted(const char *path);

/* mnt->path + "/" + rel, in a static rotating buffer. */
const char *mpath(const struct mnt *m, const char *rel);

/* Reads a whole file; returns bytes or -errno. */
ssize_t read_file(const char *path, char *buf, size_t cap);
/* Writes a string to a file (open, one write, close); 0 or -errno. */
int write_file(const char *path, const char *s);
/* The first line of a text file, newline stripped, or "" on error. */
const char *read_line(const char *path);

/* From the `devices` file: the driver pid of a function (0: none). */
pid_t fn_pid(const struct mnt *m, const char *name);
/*
 * fn's driver pid once that driver has answered a read of fn/file (0 if
 * the read failed): a driver reads no request before its sandbox is in
 * place (drivers/host.c), so from then on /proc shows it sandboxed.
 */
pid_t fn_pid_served(const struct mnt *m, const char *fn, const char *file);
/* Waits up to ms until fn/state reads `state`; 0 or -1. */
int wait_state(const struct mnt *m, const char *fn, const char *state, int ms);
/* Waits up to ms until the events file has a line containing both strings. */
int wait_event(const struct mnt *m, const char *a, const char *b, int ms);
/*
 * Waits up to ms until the file at path (a mount's log, a command's stderr)
 * holds text; where it does, in a static buffer, or NULL.
 */
const char *wait_file_has(const char *path, const char *text, int ms);
/* Waits up to ms until a pid no longer exists (and is not a zombie of ours). */
int wait_pid_gone(pid_t pid, int ms);
/* Waits for a new driver pid different from old; returns it or 0. */
pid_t wait_new_pid(const struct mnt *m, const char *fn, pid_t old, int ms);

uint64_t mono_ms(void);

/* Records that a mount's log holds a sanitizer report (see main.c). */
void sanitizer_report_found(const char *log);

/*
 * Hotplug through plugfs-emu's control socket (tests/emu/control.c).  Each
 * returns 0 only once the emulator acknowledged: the device is in sysfs
 * and its uevent sent (plug), or dead, its uevent sent and gone from sysfs
 * (unplug).  Port 0: the lowest free one; the device is then 1-PORT.
 */
int emu_plug(struct mnt *m, const char *model, unsigned port);
int emu_unplug(struct mnt *m, const char *sysname);
/* One command without waiting for its answer, and the next answer: 0 for "ok". */
int emu_send(struct mnt *m, const char *line);
int emu_reply(struct mnt *m);
/* Waits up to ms until function `name` is (present 1) or is not (0) in `devices`. */
int wait_function(const struct mnt *m, const char *name, int present, int ms);
/* Lines of `devices` whose first field is name (0 if none). */
int count_function(const struct mnt *m, const char *name);
/* Lines in `devices`, and how many of them are running. */
int count_functions(const struct mnt *m, int running_only);
/* VmRSS of a process in kB, or -1. */
long rss_kb(pid_t pid);

/* The plugfs daemon of a mount (plugfs-emu's child), or 0. */
pid_t daemon_pid(const struct mnt *m);
/* Open fds of a process, or -1. */
int count_fds(pid_t pid);
/* Children of ppid that are zombies / that exist at all. */
int count_zombies(pid_t ppid);
int count_child_processes(pid_t ppid);
/*
 * Children of ppid but the idle spare driver host: the drivers.  A spare
 * is named so only once it runs: call wait_spare() first, so that none is
 * being started.
 */
int count_driver_processes(pid_t ppid);
/*
 * The daemon's idle spare driver host (a child named plugfs-spare), or 0;
 * wait_spare() waits up to ms for one other than `other` that is ready: it
 * said READY and sleeps in recvfrom(2) waiting for START (one named so may
 * still be preparing, and a crash then gets a host exec'd for it); 0 if
 * none came.  The daemon reads that READY before the death of a driver
 * killed afterwards: it was queued first.
 */
pid_t spare_pid(pid_t daemon);
pid_t wait_spare(pid_t daemon, pid_t other, int ms);

/* A field of /proc/PID/status, whitespace squeezed to single spaces; "" if none (a static buffer). */
const char *proc_status(pid_t pid, const char *key);

#endif

/* A read() in another thread, to have a request in flight while acting. */
struct bg_read {
	int fd;
	size_t want;
	ssize_t ret;
	int err;
	pid_t tid;
	volatile int started;
	char buf[4096];
	pthread_t thread;
};

/* Starts read(fd, want) in a thread and waits until it blocks in the kernel. */
void bg_read_start(struct bg_read *b, int fd, size_t want);
/* Joins it, waiting at most ms: 0, or -1 if it is still blocked. */
int bg_read_join(struct bg_read *b, int ms);
/* One byte out through FN/ep02 and back from FN/ep81 of a loopback function: its driver works. */
void assert_loopback_works(const struct mnt *m, const char *fn);
/* Adds a test case of its own to s: one test, with its own fixture (a mount of its own) and timeout. */
void suite_add_one(Suite *s, const char *name, void (*setup)(void), void (*teardown)(void), int timeout_s,
		   const TTest *test);

/* Waits until task tid (of this process or another) sleeps in system call nr (SYS_close...). */
int wait_blocked_in(pid_t tid, long nr, int ms);
/* The same for read(2). */
int wait_blocked_in_read(pid_t tid, int ms);
