/*
 * One device's trouble is that device's alone: a device that never answers
 * times out while another keeps answering, a crash next door does not
 * disturb a read in progress, and a signal frees a blocked reader at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "suites.h"

static struct mnt m;

/* usb0 = loopback (1-1), usb1 = hang (1-2). */
static void setup(void)
{
	static const char *const models[] = {"loopback", "hang", NULL};
	ck_assert_int_eq(mnt_start(&m, models, "timeout=3000", 2), 0);
}

static void teardown(void)
{
	mnt_stop(&m);
}

START_TEST(hung_device_times_out_while_other_answers)
{
	struct bg_read b;
	int hfd = open(mpath(&m, "usb1/ep81"), O_RDONLY);
	uint64_t start = mono_ms();

	ck_assert_str_eq(read_line(mpath(&m, "usb1/product")), "Hang");
	ck_assert_int_ge(hfd, 0);
	bg_read_start(&b, hfd, 64);
	/* While usb1's read hangs, usb0 answers, many times over. */
	for (int i = 0; i < 20; i++) {
		char out[32], in[32];
		int w = open(mpath(&m, "usb0/ep02"), O_WRONLY), r = open(mpath(&m, "usb0/ep81"), O_RDONLY);
		ck_assert_int_ge(w, 0);
		ck_assert_int_ge(r, 0);
		int n = snprintf(out, sizeof(out), "ping %d", i);
		ck_assert_int_eq(write(w, out, (size_t)n), n);
		ck_assert_int_eq(read(r, in, sizeof(in)), n);
		ck_assert_mem_eq(in, out, (size_t)n);
		close(w);
		close(r);
	}
	ck_assert_int_eq(bg_read_join(&b, 20000), 0);
	ck_assert_int_eq(b.ret, -1);
	ck_assert_int_eq(b.err, ETIMEDOUT);
	/* Not early: the deadline is timeout=3000. */
	ck_assert_uint_ge(mono_ms() - start, 2900);
	ck_assert_int_eq(wait_event(&m, "usb1 timeout READ ep81", "no answer in 3000 ms", 1000), 0);
	close(hfd);
	/* A device that does not answer is not a crashed driver. */
	ck_assert_str_eq(read_line(mpath(&m, "usb1/state")), "running");
	ck_assert_str_eq(read_line(mpath(&m, "usb1/restarts")), "0");
}
END_TEST

START_TEST(crash_next_door_does_not_disturb_a_read)
{
	struct bg_read b;
	int rfd = open(mpath(&m, "usb0/ep81"), O_RDONLY);
	pid_t other = fn_pid(&m, "usb1");

	ck_assert_int_ge(rfd, 0);
	bg_read_start(&b, rfd, 64);
	ck_assert_int_eq(kill(other, SIGKILL), 0);
	ck_assert_int_gt(wait_new_pid(&m, "usb1", other, 5000), 0);
	/* The read on usb0 is still waiting, and gets its data. */
	ck_assert_int_eq(b.ret, -2);
	ck_assert_int_eq(write_file(mpath(&m, "usb0/ep02"), "still here"), 0);
	ck_assert_int_eq(bg_read_join(&b, 5000), 0);
	ck_assert_int_eq(b.ret, 10);
	ck_assert_mem_eq(b.buf, "still here", 10);
	close(rfd);
	ck_assert_str_eq(read_line(mpath(&m, "usb0/restarts")), "0");
}
END_TEST

static void on_sigint(int sig)
{
	(void)sig;
}

START_TEST(sigint_frees_a_blocked_reader)
{
	int pipefd[2];
	ck_assert_int_eq(pipe(pipefd), 0);
	pid_t child = fork();
	ck_assert_int_ge(child, 0);
	if (child == 0) {
		/* No SA_RESTART: the interrupted read returns EINTR. */
		struct sigaction sa = {.sa_handler = on_sigint};
		char c;
		sigaction(SIGINT, &sa, NULL);
		int fd = open(mpath(&m, "usb1/ep81"), O_RDONLY);
		if (fd < 0)
			_exit(2);
		ssize_t r = read(fd, &c, 1);
		int err = errno;
		if (write(pipefd[1], &err, sizeof(err)) < 0)
			_exit(4);
		_exit(r == -1 ? 0 : 3);
	}
	ck_assert_int_eq(wait_blocked_in_read(child, 5000), 0);
	uint64_t start = mono_ms();
	ck_assert_int_eq(kill(child, SIGINT), 0);
	int st, err = 0;
	ck_assert_int_eq(waitpid(child, &st, 0), child);
	uint64_t took = mono_ms() - start;
	ck_assert(WIFEXITED(st));
	ck_assert_int_eq(WEXITSTATUS(st), 0);
	ck_assert_int_eq(read(pipefd[0], &err, sizeof(err)), (ssize_t)sizeof(err));
	/* EINTR, not the ETIMEDOUT that timeout=3000 would have given later. */
	ck_assert_int_eq(err, EINTR);
	fprintf(stderr, "sigint_frees_a_blocked_reader: read returned after %llu ms\n",
		(unsigned long long)took);
	close(pipefd[0]);
	close(pipefd[1]);
	/* The cancelled transfer left the driver healthy. */
	ck_assert_str_eq(read_line(mpath(&m, "usb1/state")), "running");
}
END_TEST

Suite *isolation_suite(void)
{
	Suite *s = suite_create("isolation");
	TCase *tc = tcase_create("two devices");

	tcase_add_unchecked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 90);
	tcase_add_test(tc, hung_device_times_out_while_other_answers);
	tcase_add_test(tc, crash_next_door_does_not_disturb_a_read);
	tcase_add_test(tc, sigint_frees_a_blocked_reader);
	suite_add_tcase(s, tc);
	return s;
}
