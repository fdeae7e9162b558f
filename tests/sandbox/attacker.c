/*
 * plugfs-sandbox-attacker: a test-only driver host that attacks its own
 * sandbox (tests/integration/test_sandbox.c).  Built only for the tests.
 *
 *     plugfs-sandbox-attacker [-v] [--detach] [--user USER] DEVNODE DRIVER:IFNUM...
 *     plugfs-sandbox-attacker [-v] [--user USER] --spare    (the device comes in START)
 *
 * It starts like plugfs-driver: opens DEVNODE by path and wraps it with
 * libusb, so the same fds (and under umockdev the same emulator sockets)
 * are open.  Then, once per attack, it forks a child that enters the very
 * sandbox the real host enters (drv_sandbox_enter(), drivers/sandbox.c)
 * and tries one forbidden thing; the parent logs the outcome as
 *
 *     sandbox attack ATTACK: killed by SIGSYS | denied: ERRNO | ALLOWED
 *
 * Finally the parent sandboxes itself and calls socket(): the daemon must
 * see that seccomp kill as a crash (SIGSYS) and respawn it.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "driver.h"
#include "../evil/spare_wait.h"

bool drv_verbose;

void drv_log(int prio, const char *fmt, ...)
{
	char text[PROTO_MAX_LOG + 1];
	uint8_t hdr[PROTO_HDR_LEN];
	va_list ap;

	va_start(ap, fmt);
	int n = vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (n <= 0)
		return;
	if ((size_t)n > PROTO_MAX_LOG)
		n = PROTO_MAX_LOG;
	struct proto_hdr h = {.type = PROTO_LOG, .status = prio, .len = (uint32_t)(PROTO_HDR_LEN + n)};
	struct iovec iov[2] = {{hdr, PROTO_HDR_LEN}, {text, (size_t)n}};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
	proto_encode_hdr(hdr, &h);
	sendmsg(PROTO_DRIVER_FD, &msg, MSG_NOSIGNAL);
}

/* The same directory's node with the next (or previous) number: another emulated device. */
static void other_node(const char *devnode, char *buf, size_t cap)
{
	const char *slash = strrchr(devnode, '/');
	int len = slash != NULL ? (int)(slash - devnode) : 0;
	long num = slash != NULL ? strtol(slash + 1, NULL, 10) : 0;

	snprintf(buf, cap, "%.*s/%03ld", len, devnode, num == 2 ? 3L : num - 1);
}

static char other[256];

/* Each attack returns -errno when refused; returning 0 means it worked. */
static int attack_shadow(void)
{
	int fd = open("/etc/shadow", O_RDONLY);
	return fd < 0 ? -errno : 0;
}

static int attack_node(void)
{
	int fd = open(other, O_RDWR);
	return fd < 0 ? -errno : 0;
}

static int attack_socket(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	return fd < 0 ? -errno : 0;
}

static int attack_fork(void)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	return pid < 0 ? -errno : 0;
}

static int attack_exec(void)
{
	char *const argv[] = {"/bin/true", NULL}, *const envp[] = {NULL};
	execve(argv[0], argv, envp);
	return -errno;
}

static const struct {
	const char *name;
	int (*run)(void);
} attacks[] = {
    {"open /etc/shadow", attack_shadow},
    {"open another device node", attack_node},
    {"socket", attack_socket},
    {"fork", attack_fork},
    {"exec", attack_exec},
};

/* In the child: exit code 0 means the attack worked (as /bin/true exits 0), else errno. */
static void try_attack(const char *user, int (*run)(void))
{
	if (drv_sandbox_enter(user) < 0)
		_exit(255);
	int r = run();
	_exit(r < 0 ? -r : 0);
}

/* As a spare: the device START names, under the name the real host would have. */
static const char *spare_devnode(void)
{
	const char *node = spare_wait_start(0);

	if (node != NULL)
		prctl(PR_SET_NAME, "plugfs-sandbox-");
	return node;
}

int main(int argc, char **argv)
{
	const char *user = NULL, *devnode = NULL;
	libusb_device_handle *usb;

	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--user") == 0 && i + 1 < argc)
			user = argv[++i];
		else if (strcmp(argv[i], "--spare") == 0 && (devnode = spare_devnode()) == NULL)
			return 0;
		else if (argv[i][0] != '-' && devnode == NULL)
			devnode = argv[i];
	}
	if (devnode == NULL)
		return 2;
	int fd = open(devnode, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		drv_log(LOG_ERR, "%s: %s", devnode, strerror(errno));
		return 1;
	}
	libusb_set_option(NULL, LIBUSB_OPTION_NO_DEVICE_DISCOVERY);
	if (libusb_init(NULL) < 0 || libusb_wrap_sys_device(NULL, (intptr_t)fd, &usb) < 0) {
		drv_log(LOG_ERR, "%s: libusb cannot wrap it", devnode);
		return 1;
	}
	/* The attack on another node only means something if that node opens without the sandbox. */
	other_node(devnode, other, sizeof(other));
	int probe = open(other, O_RDWR | O_CLOEXEC);
	drv_log(LOG_NOTICE, "sandbox attack target %s %s before the sandbox", other,
		probe >= 0 ? "opens" : "does not open");
	if (probe >= 0)
		close(probe);

	for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
		int status;
		pid_t pid = fork();
		if (pid == 0)
			try_attack(user, attacks[i].run);
		if (pid < 0 || waitpid(pid, &status, 0) != pid) {
			drv_log(LOG_ERR, "sandbox attack %s: cannot run it", attacks[i].name);
			continue;
		}
		if (WIFSIGNALED(status))
			drv_log(LOG_NOTICE, "sandbox attack %s: killed by SIG%s", attacks[i].name,
				sigabbrev_np(WTERMSIG(status)));
		else if (WEXITSTATUS(status) == 255)
			drv_log(LOG_NOTICE, "sandbox attack %s: no sandbox", attacks[i].name);
		else if (WEXITSTATUS(status) != 0)
			drv_log(LOG_NOTICE, "sandbox attack %s: denied: %s", attacks[i].name,
				strerrorname_np(WEXITSTATUS(status)));
		else
			drv_log(LOG_NOTICE, "sandbox attack %s: ALLOWED", attacks[i].name);
	}
	drv_log(LOG_NOTICE, "sandbox attacks done");
	if (drv_sandbox_enter(user) < 0)
		return 1;
	/* The seccomp kill the daemon must report as a crash. */
	attack_socket();
	drv_log(LOG_ERR, "sandbox attack: survived socket()");
	return 1;
}
