/*
 * plugfs-emu: runs a command in a world with emulated USB devices.
 *
 *     plugfs-emu [-v] [--model NAME[:COUNT] ...] [--bus N] [--control PATH] -- COMMAND [ARGS...]
 *
 * Example:
 *     $ build/plugfs-emu --model loopback -- ls /dev/bus/usb/001/
 *     001  002
 *     $ build/plugfs-emu --model loopback -- cat /sys/bus/usb/devices/1-1/idVendor
 *     1209
 *
 * Bus N (default 1) gets a root hub as devnum 1, then the models in the
 * order given as devnums 2, 3, ... on ports N-1, N-2, ...  NAME:COUNT plugs
 * COUNT devices of one model, told apart by their serial numbers (the
 * model's, then the model's + "-1", "-2"...); past 126 devices on bus N
 * the rest go to bus N+1 (`--model loopback:127` is a full bus and one
 * more).  COMMAND and
 * everything it starts see them through umockdev's preload library
 * (LD_PRELOAD and UMOCKDEV_DIR are inherited).  SIGINT and SIGTERM are
 * passed on to COMMAND; plugfs-emu exits with COMMAND's status, or 128 +
 * the signal that killed it, after removing the testbed directory.
 *
 * With --control PATH, devices are plugged and unplugged while COMMAND
 * runs, through a unix socket (see control.c):
 *     $ build/plugfs-emu --control /tmp/ctl -- sh -c 'udevadm monitor & sleep 9' &
 *     $ echo 'plug loopback' | socat - UNIX-CONNECT:/tmp/ctl
 *     ok 1-1 /dev/bus/usb/001/002
 */
#include "emu.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define EMU_MAX_MODELS 32
#define PRELOAD_LIB    "libumockdev-preload.so.0"
/* Set across the re-exec so a preload that fails to load cannot loop. */
#define REEXEC_ENV "PLUGFS_EMU_REEXEC"

extern char **environ;

/* A bus has 127 addresses, its root hub takes one. */
#define EMU_MAX_COUNT (EMU_MAX_BUSES * 126)

struct options {
	const struct emu_model *models[EMU_MAX_MODELS];
	unsigned counts[EMU_MAX_MODELS];
	unsigned nmodels;
	unsigned busnum;
	const char *control;
	char **command;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: plugfs-emu [-v] [--model NAME[:COUNT] ...] [--bus N] [--control PATH] -- COMMAND "
		   "[ARGS...]\n"
		   "models:\n");
	for (unsigned i = 0; emu_models[i] != NULL; i++)
		fprintf(f, "  %-15s %s\n", emu_models[i]->name, emu_models[i]->summary);
}

/* NAME or NAME:COUNT; 0, or -EINVAL after saying why. */
static int parse_model(const char *arg, const struct emu_model **m, unsigned *count)
{
	const char *colon = strchr(arg, ':');
	char name[64];

	*count = 1;
	if (colon != NULL) {
		char *end;
		unsigned long v = strtoul(colon + 1, &end, 10);

		if (colon[1] == '\0' || *end != '\0' || v < 1 || v > EMU_MAX_COUNT) {
			emu_err("--model %s: COUNT wants 1..%d", arg, EMU_MAX_COUNT);
			return -EINVAL;
		}
		*count = (unsigned)v;
	}
	snprintf(name, sizeof(name), "%.*s", colon != NULL ? (int)(colon - arg) : (int)strlen(arg), arg);
	if ((*m = emu_model_find(name)) == NULL) {
		emu_err("unknown model '%s'", name);
		usage(stderr);
		return -EINVAL;
	}
	return 0;
}

/* 0, or -EINVAL after saying why. */
static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	    {"model", required_argument, NULL, 'm'},   {"bus", required_argument, NULL, 'b'},
	    {"control", required_argument, NULL, 'c'}, {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},	       {NULL, 0, NULL, 0},
	};
	int opt;

	memset(o, 0, sizeof(*o));
	o->busnum = 1;
	/* '+': stop at COMMAND, so its own options are left alone. */
	while ((opt = getopt_long(argc, argv, "+m:b:c:vh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			if (o->nmodels == EMU_MAX_MODELS) {
				emu_err("at most %d models", EMU_MAX_MODELS);
				return -EINVAL;
			}
			if (parse_model(optarg, &o->models[o->nmodels], &o->counts[o->nmodels]) < 0)
				return -EINVAL;
			o->nmodels++;
			break;
		case 'b': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (*optarg == '\0' || *end != '\0' || v < 1 || v > 255) {
				emu_err("--bus wants 1..255, not '%s'", optarg);
				return -EINVAL;
			}
			o->busnum = (unsigned)v;
			break;
		}
		case 'c':
			o->control = optarg;
			break;
		case 'v':
			emu_verbose = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind >= argc) {
		emu_err("no COMMAND given");
		usage(stderr);
		return -EINVAL;
	}
	o->command = argv + optind;
	return 0;
}

static bool preloaded(void)
{
	const char *p = getenv("LD_PRELOAD");

	return p != NULL && strstr(p, "libumockdev-preload") != NULL;
}

/*
 * Starts this program again with the preload library, like umockdev-wrapper.
 * umockdev_in_mock_environment() is no help here: in 0.17.16 it reports
 * FALSE even when preloaded, so LD_PRELOAD itself is checked.
 */
static int reexec_preloaded(char **argv)
{
	const char *old = getenv("LD_PRELOAD");
	char *val;

	if (getenv(REEXEC_ENV) != NULL) {
		emu_err("%s did not load; is the umockdev package installed?", PRELOAD_LIB);
		return -ENOENT;
	}
	val = g_strdup_printf("%s%s%s", PRELOAD_LIB, old && *old ? ":" : "", old && *old ? old : "");
	setenv("LD_PRELOAD", val, 1);
	g_free(val);
	setenv(REEXEC_ENV, "1", 1);
	execv("/proc/self/exe", argv);
	emu_err("cannot re-exec myself: %s", strerror(errno));
	return -errno;
}

static int spawn_command(char **command, pid_t *pid)
{
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	int r;

	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGCHLD);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	r = posix_spawnp(pid, command[0], NULL, &attr, command, environ);
	posix_spawnattr_destroy(&attr);
	if (r != 0) {
		emu_err("cannot run %s: %s", command[0], strerror(r));
		return -r;
	}
	emu_log("started %s as pid %d", command[0], (int)*pid);
	return 0;
}

/* Waits for the child, forwarding SIGINT/SIGTERM; returns its exit code as a shell would. */
static int wait_command(pid_t pid, const sigset_t *set)
{
	for (;;) {
		siginfo_t si;
		int status;

		if (sigwaitinfo(set, &si) < 0) {
			if (errno == EINTR)
				continue;
			emu_err("sigwaitinfo: %s", strerror(errno));
			return 1;
		}
		if (si.si_signo == SIGINT || si.si_signo == SIGTERM) {
			emu_log("passing signal %d on to pid %d", si.si_signo, (int)pid);
			kill(pid, si.si_signo);
			continue;
		}
		/* SIGCHLD: only our one child matters. */
		if (waitpid(pid, &status, WNOHANG) != pid)
			continue;
		if (WIFEXITED(status))
			return WEXITSTATUS(status);
		if (WIFSIGNALED(status))
			return 128 + WTERMSIG(status);
	}
}

int main(int argc, char **argv)
{
	UMockdevTestbed *tb = NULL;
	struct options o;
	sigset_t set;
	char *root = NULL;
	pid_t pid;
	int r, rc = 1;

	if (parse_args(argc, argv, &o) < 0)
		return 2;
	if (!preloaded())
		return reexec_preloaded(argv) < 0 ? 1 : 0;
	unsetenv(REEXEC_ENV);

	/* Blocked before umockdev starts its threads, so only sigwaitinfo() sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGCHLD);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	tb = umockdev_testbed_new();
	root = umockdev_testbed_get_root_dir(tb);
	emu_log("testbed in %s", root);
	if (emu_bed_init(tb, o.busnum) < 0)
		goto out;
	for (unsigned i = 0; i < o.nmodels; i++)
		for (unsigned c = 0; c < o.counts[i]; c++)
			if ((r = emu_bed_plug(o.models[i], 0, c, NULL)) < 0) {
				emu_err("cannot plug %s number %u: %s", o.models[i]->name, c + 1,
					strerror(-r));
				goto out;
			}
	if (o.control != NULL && emu_control_start(o.control) < 0)
		goto out;
	if (spawn_command(o.command, &pid) < 0) {
		rc = 127;
		goto out;
	}
	rc = wait_command(pid, &set);
	emu_log("%s exited: %d", o.command[0], rc);
out:
	emu_control_stop();
	/* The testbed first: it stops umockdev's worker, the only thread using the devices. */
	g_object_unref(tb);
	emu_bed_free();
	if (root != NULL && g_file_test(root, G_FILE_TEST_EXISTS))
		emu_err("testbed %s was left behind", root);
	g_free(root);
	return rc;
}
