/*
 * The command line (fs/opts.c, SPEC.md "Command line"): defaults, every
 * option, both calling conventions (plugfs MNT and mount.fuse3's SOURCE
 * MNT -o OPTS), fstab-only options dropped, FUSE's own passed through, and
 * every value the daemon refuses.  Error paths print to stderr; that's
 * expected noise.
 */
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugfs.h"
#include "suites.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static struct plugfs_opts o;
static struct fuse_args args;

static int parse(int argc, char **argv)
{
	return opts_parse(argc, argv, &o, &args);
}

static void done(void)
{
	fuse_opt_free_args(&args);
	opts_free(&o);
}

/* Whether an argument libfuse gets, or one option in an -o list it gets, equals `word`. */
static int args_have(const char *word)
{
	for (int i = 0; i < args.argc; i++) {
		const char *a = args.argv[i];
		size_t wl = strlen(word);

		if (strcmp(a, word) == 0)
			return 1;
		if (strncmp(a, "-o", 2) == 0)
			a += 2;
		for (const char *p = a; *p != '\0';) {
			size_t l = strcspn(p, ",");
			if (l == wl && strncmp(p, word, l) == 0)
				return 1;
			p += l;
			if (*p == ',')
				p++;
		}
	}
	return 0;
}

/* Whether `word` appears anywhere in what libfuse gets. */
static int args_mention(const char *word)
{
	for (int i = 0; i < args.argc; i++)
		if (strstr(args.argv[i], word) != NULL)
			return 1;
	return 0;
}

START_TEST(test_defaults)
{
	char *argv[] = {"plugfs", "/mnt/usb"};

	ck_assert_int_eq(parse(ARGC(argv), argv), 0);
	ck_assert_str_eq(o.mountpoint, "/mnt/usb");
	ck_assert_uint_eq(o.restart_max, 5);
	ck_assert_uint_eq(o.restart_window_s, 60);
	ck_assert_uint_eq(o.backoff_min_ms, 10);
	ck_assert_uint_eq(o.backoff_max_ms, 5000);
	ck_assert_uint_eq(o.timeout_ms, 5000);
	ck_assert_int_eq(o.foreground, 0);
	ck_assert_int_eq(o.debug, 0);
	ck_assert_int_eq(o.show_help, 0);
	ck_assert_int_eq(o.show_version, 0);
	ck_assert_ptr_null(o.driver_user);
	/* detach=none: nothing; only= absent: everything. */
	ck_assert_int_eq(o.detach.all, 0);
	ck_assert_uint_eq(o.detach.n, 0);
	ck_assert_int_eq(vidpid_list_has(&o.detach, 0x0403, 0x6001), 0);
	ck_assert_int_eq(o.only.all, 1);
	ck_assert_int_eq(vidpid_list_has(&o.only, 0x0403, 0x6001), 1);
	/* libfuse gets the program name and nothing of ours. */
	ck_assert_int_ge(args.argc, 1);
	ck_assert_str_eq(args.argv[0], "plugfs");
	ck_assert(!args_mention("/mnt/usb"));
	done();
}
END_TEST

START_TEST(test_every_option)
{
	char *argv[] = {"plugfs",
			"-o",
			"driver_user=lp,restart_max=7,restart_window=30,backoff_min=20,backoff_max=1000",
			"-o",
			"timeout=250,detach=1209:0001:0403:6001,only=0403:6001",
			"/mnt/x"};

	ck_assert_int_eq(parse(ARGC(argv), argv), 0);
	ck_assert_str_eq(o.mountpoint, "/mnt/x");
	ck_assert_str_eq(o.driver_user, "lp");
	ck_assert_uint_eq(o.restart_max, 7);
	ck_assert_uint_eq(o.restart_window_s, 30);
	ck_assert_uint_eq(o.backoff_min_ms, 20);
	ck_assert_uint_eq(o.backoff_max_ms, 1000);
	ck_assert_uint_eq(o.timeout_ms, 250);
	ck_assert_int_eq(o.detach.all, 0);
	ck_assert_uint_eq(o.detach.n, 2);
	ck_assert_uint_eq(o.detach.ids[0].vendor_id, 0x1209);
	ck_assert_uint_eq(o.detach.ids[0].product_id, 0x0001);
	ck_assert_uint_eq(o.detach.ids[1].vendor_id, 0x0403);
	ck_assert_uint_eq(o.detach.ids[1].product_id, 0x6001);
	ck_assert_int_eq(o.only.all, 0);
	ck_assert_uint_eq(o.only.n, 1);
	ck_assert_int_eq(vidpid_list_has(&o.only, 0x0403, 0x6001), 1);
	ck_assert_int_eq(vidpid_list_has(&o.only, 0x1209, 0x0001), 0);
	/* None of them is passed to libfuse, which would refuse them. */
	ck_assert(!args_mention("driver_user"));
	ck_assert(!args_mention("restart_"));
	ck_assert(!args_mention("backoff"));
	ck_assert(!args_mention("timeout"));
	ck_assert(!args_mention("detach"));
	ck_assert(!args_mention("only"));
	done();
}
END_TEST

START_TEST(test_detach_all_and_none)
{
	char *all[] = {"plugfs", "-odetach=all", "/m"};
	char *none[] = {"plugfs", "-o", "detach=none", "/m"};

	ck_assert_int_eq(parse(ARGC(all), all), 0);
	ck_assert_int_eq(o.detach.all, 1);
	ck_assert_int_eq(vidpid_list_has(&o.detach, 0x1234, 0x5678), 1);
	done();
	ck_assert_int_eq(parse(ARGC(none), none), 0);
	ck_assert_int_eq(o.detach.all, 0);
	ck_assert_uint_eq(o.detach.n, 0);
	done();
}
END_TEST

START_TEST(test_bounds_accepted)
{
	char *argv[] = {"plugfs", "-o",
			"restart_max=63,restart_window=1,backoff_min=7,backoff_max=7,timeout=10", "/m"};
	char *zero[] = {"plugfs", "-o", "restart_max=0,timeout=3600000", "/m"};

	ck_assert_int_eq(parse(ARGC(argv), argv), 0);
	ck_assert_uint_eq(o.restart_max, 63);
	ck_assert_uint_eq(o.restart_window_s, 1);
	ck_assert_uint_eq(o.backoff_min_ms, 7);
	ck_assert_uint_eq(o.backoff_max_ms, 7);
	ck_assert_uint_eq(o.timeout_ms, 10);
	done();
	ck_assert_int_eq(parse(ARGC(zero), zero), 0);
	ck_assert_uint_eq(o.restart_max, 0);
	ck_assert_uint_eq(o.timeout_ms, 3600000);
	done();
}
END_TEST

START_TEST(test_direct_convention)
{
	char *argv[] = {"plugfs", "-f", "/mnt/usb"};

	ck_assert_int_eq(parse(ARGC(argv), argv), 0);
	ck_assert_str_eq(o.mountpoint, "/mnt/usb");
	ck_assert_int_eq(o.foreground, 1);
	ck_assert_int_eq(o.debug, 0);
	ck_assert_uint_eq(o.npositional, 1);
	/* -f is ours: the daemon decides about daemonizing. */
	ck_assert(!args_have("-f"));
	done();
}
END_TEST

START_TEST(test_mount_convention)
{
	/* mount.fuse3 runs `plugfs SOURCE MOUNTPOINT -o OPTS`. */
	char *argv[] = {"plugfs", "plugfs", "/mnt/usb", "-o", "rw,restart_max=3"};

	ck_assert_int_eq(parse(ARGC(argv), argv), 0);
	ck_assert_str_eq(o.mountpoint, "/mnt/usb");
	ck_assert_uint_eq(o.npositional, 2);
	ck_assert_uint_eq(o.restart_max, 3);
	ck_assert_int_eq(o.foreground, 0);
	ck_assert(!args_mention("/mnt/usb"));
	done();
}
END_TEST

START_TEST(test_three_positionals_fail)
{
	char *argv[] = {"plugfs", "plugfs", "/mnt/usb", "extra"};

	ck_assert_int_eq(parse(ARGC(argv), argv), -EINVAL);
	done();
}
END_TEST

START_TEST(test_help_version)
{
	char *h[] = {"plugfs", "-h"};
	char *help[] = {"plugfs", "--help"};
	char *v[] = {"plugfs", "-V"};
	char *version[] = {"plugfs", "--version"};

	/* No mountpoint needed to ask for help or the version. */
	ck_assert_int_eq(parse(ARGC(h), h), 0);
	ck_assert_int_eq(o.show_help, 1);
	ck_assert_int_eq(o.show_version, 0);
	done();
	ck_assert_int_eq(parse(ARGC(help), help), 0);
	ck_assert_int_eq(o.show_help, 1);
	done();
	ck_assert_int_eq(parse(ARGC(v), v), 0);
	ck_assert_int_eq(o.show_version, 1);
	ck_assert_int_eq(o.show_help, 0);
	done();
	ck_assert_int_eq(parse(ARGC(version), version), 0);
	ck_assert_int_eq(o.show_version, 1);
	done();
}
END_TEST

START_TEST(test_debug)
{
	char *d[] = {"plugfs", "-d", "/m"};
	char *od[] = {"plugfs", "-o", "debug", "/m"};

	ck_assert_int_eq(parse(ARGC(d), d), 0);
	ck_assert_int_eq(o.debug, 1);
	ck_assert_int_eq(o.foreground, 1);
	/* Kept for libfuse, which then traces requests. */
	ck_assert(args_have("-d"));
	done();
	ck_assert_int_eq(parse(ARGC(od), od), 0);
	ck_assert_int_eq(o.debug, 1);
	ck_assert_int_eq(o.foreground, 1);
	ck_assert(args_have("debug"));
	done();
}
END_TEST

START_TEST(test_fstab_options_dropped)
{
	char *argv[] = {
	    "plugfs", "plugfs", "/mnt/usb", "-o",
	    "noauto,nofail,_netdev,defaults,x-systemd.automount,comment=foo,auto,user,users,x-gvfs-hide"};

	ck_assert_int_eq(parse(ARGC(argv), argv), 0);
	ck_assert_str_eq(o.mountpoint, "/mnt/usb");
	ck_assert(!args_mention("auto"));
	ck_assert(!args_mention("nofail"));
	ck_assert(!args_mention("_netdev"));
	ck_assert(!args_mention("defaults"));
	ck_assert(!args_mention("x-"));
	ck_assert(!args_mention("comment"));
	ck_assert(!args_mention("user"));
	/* Nothing left for libfuse: no empty -o either. */
	ck_assert_int_eq(args.argc, 1);
	done();
}
END_TEST

START_TEST(test_fuse_options_pass_through)
{
	char *argv[] = {"plugfs", "-o",	    "allow_other,restart_max=2,default_permissions",
			"-o",	  "nofail", "/mnt/usb"};

	ck_assert_int_eq(parse(ARGC(argv), argv), 0);
	ck_assert_uint_eq(o.restart_max, 2);
	ck_assert(args_have("allow_other"));
	ck_assert(args_have("default_permissions"));
	ck_assert(!args_mention("restart_max"));
	ck_assert(!args_mention("nofail"));
	ck_assert_str_eq(args.argv[0], "plugfs");
	done();
}
END_TEST

/* Each of these on its own makes opts_parse refuse the command line. */
static const char *const bad_options[] = {
    "timeout=5000ms",
    "restart_window=-1",
    "timeout=",
    "backoff_max=99999999999",
    "restart_max=64",
    "restart_max=1000",
    "restart_window=0",
    "backoff_min=0",
    "backoff_min=100,backoff_max=99",
    "backoff_max=9",
    "timeout=9",
    "timeout=0",
    "timeout=3600001",
    "detach=12",
    "detach=1209:zz01",
    "detach=1209:0001:",
    "detach=",
    "only=all",
    "only=none",
    "only=0403",
    "only=0403:60011",
};

START_TEST(test_rejected)
{
	char opt[64];
	char *argv[] = {"plugfs", "-o", opt, "/mnt/usb"};

	snprintf(opt, sizeof(opt), "%s", bad_options[_i]);
	ck_assert_msg(parse(ARGC(argv), argv) == -EINVAL, "%s accepted", bad_options[_i]);
	done();
}
END_TEST

START_TEST(test_missing_mountpoint)
{
	char *bare[] = {"plugfs"};
	char *f[] = {"plugfs", "-f", "-o", "restart_max=3"};

	ck_assert_int_eq(parse(ARGC(bare), bare), -EINVAL);
	done();
	ck_assert_int_eq(parse(ARGC(f), f), -EINVAL);
	done();
}
END_TEST

START_TEST(test_vidpid_none_all)
{
	struct vidpid_list l;

	memset(&l, 0xaa, sizeof(l));
	ck_assert_int_eq(opts_parse_vidpid_list("none", &l), 0);
	ck_assert_int_eq(l.all, 0);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_int_eq(vidpid_list_has(&l, 0, 0), 0);
	ck_assert_int_eq(vidpid_list_has(&l, 0x0403, 0x6001), 0);
	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(opts_parse_vidpid_list("all", &l), 0);
	ck_assert_int_eq(l.all, 1);
	ck_assert_int_eq(vidpid_list_has(&l, 0xffff, 0xffff), 1);
	ck_assert_int_eq(vidpid_list_has(&l, 0, 0), 1);
}
END_TEST

START_TEST(test_vidpid_pairs)
{
	struct vidpid_list l;

	ck_assert_int_eq(opts_parse_vidpid_list("0403:6001", &l), 0);
	ck_assert_int_eq(l.all, 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert_uint_eq(l.ids[0].vendor_id, 0x0403);
	ck_assert_uint_eq(l.ids[0].product_id, 0x6001);
	ck_assert_int_eq(vidpid_list_has(&l, 0x0403, 0x6001), 1);
	/* Both halves must match, not either. */
	ck_assert_int_eq(vidpid_list_has(&l, 0x0403, 0x6010), 0);
	ck_assert_int_eq(vidpid_list_has(&l, 0x6001, 0x0403), 0);
	ck_assert_int_eq(vidpid_list_has(&l, 0x1209, 0x6001), 0);

	ck_assert_int_eq(opts_parse_vidpid_list("1209:0001:0403:6001:2341:0043", &l), 0);
	ck_assert_uint_eq(l.n, 3);
	ck_assert_uint_eq(l.ids[2].vendor_id, 0x2341);
	ck_assert_uint_eq(l.ids[2].product_id, 0x0043);
	ck_assert_int_eq(vidpid_list_has(&l, 0x1209, 0x0001), 1);
	ck_assert_int_eq(vidpid_list_has(&l, 0x0403, 0x6001), 1);
	ck_assert_int_eq(vidpid_list_has(&l, 0x2341, 0x0043), 1);
	ck_assert_int_eq(vidpid_list_has(&l, 0x2341, 0x0001), 0);

	/* Hex digits in either case; values are numbers, not strings. */
	ck_assert_int_eq(opts_parse_vidpid_list("ABCD:eF01:FFFF:0000", &l), 0);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_uint_eq(l.ids[0].vendor_id, 0xabcd);
	ck_assert_uint_eq(l.ids[0].product_id, 0xef01);
	ck_assert_uint_eq(l.ids[1].vendor_id, 0xffff);
	ck_assert_uint_eq(l.ids[1].product_id, 0x0000);
	ck_assert_int_eq(vidpid_list_has(&l, 0xabcd, 0xef01), 1);
}
END_TEST

START_TEST(test_vidpid_malformed)
{
	static const char *const bad[] = {
	    "",
	    "0403",
	    "0403:",
	    "403:6001",
	    "0403:601",
	    "00403:6001",
	    "0403:60011",
	    ":6001",
	    "0403:6001:",
	    "0403:6001:1209",
	    "0403::6001",
	    "0403:6g01",
	    "0x03:6001",
	    " 0403:6001",
	    "0403:6001 ",
	    "0403-6001",
	    "ALL",
	    "None",
	    "0403:6001,1209:0001",
	};
	struct vidpid_list l;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(opts_parse_vidpid_list(bad[i], &l) == -EINVAL, "\"%s\" accepted", bad[i]);
}
END_TEST

START_TEST(test_vidpid_too_many)
{
	char s[(PLUGFS_MAX_VIDPID + 1) * 10 + 1];
	struct vidpid_list l;
	size_t n = 0;

	/* Exactly PLUGFS_MAX_VIDPID pairs fit. */
	for (unsigned i = 0; i < PLUGFS_MAX_VIDPID; i++)
		n += (size_t)snprintf(s + n, sizeof(s) - n, "%s%04x:%04x", i ? ":" : "", 0x1000 + i, i);
	ck_assert_int_eq(opts_parse_vidpid_list(s, &l), 0);
	ck_assert_uint_eq(l.n, PLUGFS_MAX_VIDPID);
	ck_assert_int_eq(vidpid_list_has(&l, 0x1000 + PLUGFS_MAX_VIDPID - 1, PLUGFS_MAX_VIDPID - 1), 1);
	/* One more does not. */
	snprintf(s + n, sizeof(s) - n, ":ffff:ffff");
	ck_assert_int_eq(opts_parse_vidpid_list(s, &l), -E2BIG);
}
END_TEST

Suite *opts_suite(void)
{
	Suite *s = suite_create("opts");
	TCase *cmd = tcase_create("command line");
	TCase *list = tcase_create("vidpid list");

	tcase_add_test(cmd, test_defaults);
	tcase_add_test(cmd, test_every_option);
	tcase_add_test(cmd, test_detach_all_and_none);
	tcase_add_test(cmd, test_bounds_accepted);
	tcase_add_test(cmd, test_direct_convention);
	tcase_add_test(cmd, test_mount_convention);
	tcase_add_test(cmd, test_three_positionals_fail);
	tcase_add_test(cmd, test_help_version);
	tcase_add_test(cmd, test_debug);
	tcase_add_test(cmd, test_fstab_options_dropped);
	tcase_add_test(cmd, test_fuse_options_pass_through);
	tcase_add_loop_test(cmd, test_rejected, 0, (int)(sizeof(bad_options) / sizeof(bad_options[0])));
	tcase_add_test(cmd, test_missing_mountpoint);
	suite_add_tcase(s, cmd);
	tcase_add_test(list, test_vidpid_none_all);
	tcase_add_test(list, test_vidpid_pairs);
	tcase_add_test(list, test_vidpid_malformed);
	tcase_add_test(list, test_vidpid_too_many);
	suite_add_tcase(s, list);
	return s;
}
