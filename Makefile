# plugfs -- USB devices as files.
#
#   make            build plugfs, plugfs-driver and the test bed into build/
#   make check      install missing packages, build, run every test
#   make demo       install missing packages, build, tour a mount over emulated devices
#   make install    PREFIX=/usr/local DESTDIR= (also the systemd units and the udev rule)
#   make fuzz       FUZZ_SECONDS=60: libFuzzer over the daemon's message handling
#   make bench      the benchmarks: a table, and JSON lines in build/bench-results.jsonl
#
# Every library comes through pkg-config.  `make check` and `make demo`
# install the Debian packages first (scripts/install-deps), then re-enter
# make, so pkg-config is only asked once the packages are there.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec
MANDIR     ?= $(PREFIX)/share/man
# Where systemd and udev look, as their .pc files say; else the usual places.
ifndef SYSTEMDUNITDIR
SYSTEMDUNITDIR := $(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),$(PREFIX)/lib/systemd/system)
endif
ifndef UDEVRULESDIR
UDEVRULESDIR := $(or $(shell pkg-config --variable=udevdir udev 2>/dev/null),/lib/udev)/rules.d
endif

CC       ?= cc
CFLAGS   ?= -O2 -g
WARN      = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS += -D_GNU_SOURCE -Icommon -I$(B)
ALL_CFLAGS = -std=gnu11 $(WARN) $(CFLAGS)

PKG_DAEMON = fuse3 libudev
PKG_DRIVER = libusb-1.0 libseccomp
PKG_EMU    = umockdev-1.0 glib-2.0 gobject-2.0 libjpeg
PKG_CHECK  = check
# The webcam tests decode the frames they read.
PKG_JPEG   = libjpeg

pkg_cflags = $(shell pkg-config --cflags $(1))
pkg_libs   = $(shell pkg-config --libs $(1))

# A driver host starts at every plug and after every crash.  DRIVER_STATIC=1
# links libusb and libseccomp into it (what they need, libudev, stays
# shared), which spares the dynamic loader two libraries, about 1 ms of each
# start (tests/bench/restart.c).  Shared by default: a libusb security fix
# then reaches the drivers without a rebuild.
DRIVER_STATIC ?= 0
ifeq ($(DRIVER_STATIC),1)
DRIVER_LIBS = -Wl,-Bstatic $(call pkg_libs,$(PKG_DRIVER)) -Wl,-Bdynamic \
	      -Wl,--as-needed $(shell pkg-config --libs --static $(PKG_DRIVER)) -Wl,--no-as-needed
else
DRIVER_LIBS = $(call pkg_libs,$(PKG_DRIVER))
endif

B = build

COMMON_SRC = $(wildcard common/*.c)
DAEMON_SRC = $(wildcard fs/*.c) $(wildcard supervisor/*.c)
DRIVER_SRC = $(wildcard drivers/*.c)
EMU_SRC    = $(wildcard tests/emu/*.c)
UNIT_SRC   = $(wildcard tests/unit/*.c)
INTEG_SRC  = $(wildcard tests/integration/*.c)
BENCH_SRC  = $(wildcard tests/bench/*.c)
FAULT_SRC  = $(wildcard tests/faults/*.c)
ATTACK_SRC = $(wildcard tests/sandbox/*.c)

define newline


endef

obj = $(patsubst %.c,$(B)/%.o,$(1))

PROGS = $(B)/plugfs $(B)/plugfs-driver
TESTPROGS = $(B)/plugfs-emu $(B)/test-unit $(B)/test-integration $(B)/bench-restart $(B)/bench-disk $(B)/bench-scale \
	    $(B)/fault-campaign $(B)/fault-memcheck $(B)/plugfs-evil-driver $(B)/plugfs-sandbox-attacker \
	    $(B)/plugfs-bench-driver $(B)/bench-io

UNITS = $(B)/systemd/plugfs@.service $(B)/systemd/plugfs.service

all: $(PROGS) $(TESTPROGS) $(UNITS)

# `make V=1` shows the whole commands.
ifeq ($(V),1)
Q =
else
Q = @
endif

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(OBJ_CFLAGS) -MMD -MP -c -o $@ $<

$(call obj,$(DAEMON_SRC)): OBJ_CFLAGS = $(call pkg_cflags,$(PKG_DAEMON)) -DFUSE_USE_VERSION=34 -Ifs -Isupervisor
$(call obj,$(DRIVER_SRC)): OBJ_CFLAGS = $(call pkg_cflags,$(PKG_DRIVER))
$(call obj,$(ATTACK_SRC)): OBJ_CFLAGS = $(call pkg_cflags,$(PKG_DRIVER)) -Idrivers
$(call obj,$(EMU_SRC)):    OBJ_CFLAGS = $(call pkg_cflags,$(PKG_EMU) $(PKG_DRIVER))
$(call obj,$(UNIT_SRC)):   OBJ_CFLAGS = $(call pkg_cflags,$(PKG_CHECK) $(PKG_DAEMON)) -Ifs -Isupervisor -DFUSE_USE_VERSION=34
$(call obj,$(INTEG_SRC)):  OBJ_CFLAGS = $(call pkg_cflags,$(PKG_CHECK) $(PKG_JPEG))
$(call obj,$(BENCH_SRC) $(FAULT_SRC)):  OBJ_CFLAGS = $(call pkg_cflags,$(PKG_CHECK)) -Itests/integration

# The installed paths, compiled in; rewritten only when they change, so that
# `make install PREFIX=/usr` after `make` rebuilds what uses them.
$(B)/config.h: FORCE
	@mkdir -p $(B)
	@echo '#define PLUGFS_LIBEXECDIR "$(LIBEXECDIR)/plugfs"' > $@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; fi

$(B)/supervisor/supervisor.o: $(B)/config.h

# The units name the installed plugfs; plugfs.service is the template's
# instance for /mnt/usb.  Rewritten only when they change, like config.h.
$(B)/systemd/plugfs@.service: systemd/plugfs@.service.in FORCE
	@mkdir -p $(dir $@)
	@sed -e 's|@BINDIR@|$(BINDIR)|g' $< > $@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; fi
$(B)/systemd/plugfs.service: $(B)/systemd/plugfs@.service
	@{ echo '# plugfs.service: plugfs@.service for /mnt/usb (systemctl enable --now plugfs).'; \
	   sed -e 's|%f|/mnt/usb|g' $<; } > $@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; fi

DAEMON_LIB_OBJ = $(filter-out $(B)/fs/main.o,$(call obj,$(DAEMON_SRC)))

$(B)/plugfs: $(call obj,$(DAEMON_SRC) $(COMMON_SRC))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(call pkg_libs,$(PKG_DAEMON))

$(B)/plugfs-driver: $(call obj,$(DRIVER_SRC) $(COMMON_SRC))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(DRIVER_LIBS)

# The test-only driver host that attacks the real sandbox (drivers/sandbox.c).
$(B)/plugfs-sandbox-attacker: $(call obj,$(ATTACK_SRC) $(COMMON_SRC)) $(B)/drivers/sandbox.o
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(DRIVER_LIBS)

$(B)/plugfs-emu: $(call obj,$(EMU_SRC) $(COMMON_SRC))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(call pkg_libs,$(PKG_EMU)) -lpthread

$(B)/test-unit: $(call obj,$(UNIT_SRC) $(COMMON_SRC)) $(DAEMON_LIB_OBJ)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(call pkg_libs,$(PKG_CHECK) $(PKG_DAEMON))

$(B)/test-integration: $(call obj,$(INTEG_SRC) $(COMMON_SRC))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(call pkg_libs,$(PKG_CHECK) $(PKG_JPEG))

# Test only: a driver host that breaks the protocol (the `hostile` suite).
$(B)/plugfs-evil-driver: $(B)/tests/evil/evil_driver.o $(call obj,$(COMMON_SRC))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS)

# Every benchmark reports through tests/bench/report.c.
BENCH_LIB = $(B)/tests/bench/report.o $(B)/tests/integration/harness.o

$(B)/bench-restart: $(B)/tests/bench/restart.o $(BENCH_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(call pkg_libs,$(PKG_CHECK)) -lm

# Test only: the driver host with the null driver (tests/bench/null_driver.c)
# for the emulated `null` model; the daemon runs it through PLUGFS_DRIVER.
$(B)/tests/bench/host-test.o: drivers/host.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $< (PLUGFS_TEST_HOST)")
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(call pkg_cflags,$(PKG_DRIVER)) -Idrivers -DPLUGFS_TEST_HOST -MMD -MP -c -o $@ $<
$(B)/tests/bench/null_driver.o: OBJ_CFLAGS = $(call pkg_cflags,$(PKG_DRIVER)) -Idrivers
$(B)/plugfs-bench-driver: $(B)/tests/bench/host-test.o $(B)/tests/bench/null_driver.o \
			  $(call obj,$(filter-out drivers/host.c,$(DRIVER_SRC)) $(COMMON_SRC))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(call pkg_libs,$(PKG_DRIVER))

# The in-process FUSE null filesystem the isolation benchmark compares with.
$(B)/tests/bench/nullfs.o: OBJ_CFLAGS = $(call pkg_cflags,$(PKG_DAEMON)) -DFUSE_USE_VERSION=34
$(B)/bench-io: $(B)/tests/bench/io.o $(B)/tests/bench/nullfs.o $(BENCH_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(call pkg_libs,$(PKG_CHECK) $(PKG_DAEMON)) -lm -lpthread

$(B)/bench-scale: $(B)/tests/bench/scale.o $(BENCH_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(call pkg_libs,$(PKG_CHECK)) -lm -lpthread

$(B)/tests/bench/disk.o: OBJ_CFLAGS += $(call pkg_cflags,$(PKG_DRIVER))
$(B)/bench-disk: $(B)/tests/bench/disk.o $(BENCH_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(call pkg_libs,$(PKG_CHECK) $(PKG_DRIVER)) -lm

$(B)/fault-%: $(B)/tests/faults/%.o $(B)/tests/integration/harness.o
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDFLAGS) $(call pkg_libs,$(PKG_CHECK)) -lpthread

deps:
	scripts/install-deps

check: deps
	$(MAKE) all
	$(MAKE) run-tests
	$(MAKE) check-sanitize
	$(MAKE) faults N=15
	$(MAKE) check-valgrind
	$(MAKE) check-fuzz
	$(MAKE) check-rig-if-present

# The generic driver on a real kernel USB stack, in a QEMU guest with QEMU's
# own USB devices (../shared/rig/qemu-usb; PLUGFS_RIG names another copy).
RIG ?= $(firstword $(PLUGFS_RIG) $(abspath $(CURDIR)/../shared/rig/qemu-usb/run-guest))

# What `make check` does in part because it takes minutes: dd at bs=512
# through all 64 MiB of the emulated stick, both ways.
check-long: all
	PLUGFS_BUILD=$(CURDIR)/$(B) PLUGFS_DD512_MIB=64 CK_RUN_SUITE=disk CK_RUN_CASE=stick \
		CK_TIMEOUT_MULTIPLIER=30 $(B)/test-integration

check-rig: all
	scripts/install-deps rig
	PLUGFS_BUILD=$(CURDIR)/$(B) PLUGFS_RIG=$(RIG) tests/rig/run

check-rig-if-present:
	@if [ -x "$(RIG)" ]; then $(MAKE) check-rig; else echo "check-rig: skipped: no QEMU rig at $(RIG)"; fi

# CK_FORK stays on: a crashing test must not take the others with it.
run-tests: $(TESTPROGS) $(PROGS)
	$(TEST_ENV) $(B)/test-unit
	$(TEST_ENV) PLUGFS_BUILD=$(CURDIR)/$(B) $(B)/test-integration

# Every test again, with every program built by clang (the normal build is
# gcc's: both compilers see every change) with ASan and UBSan.  The
# preloaded umockdev library comes before the ASan runtime, hence
# verify_asan_link_order=0; SIGSEGV sent by the crash tests must kill the
# driver as it would without ASan, hence handle_segv=0.
SAN_CC      = clang
SAN_CFLAGS  = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SAN_LDFLAGS = -fsanitize=address,undefined
# A report from the daemon or a driver lands in the mount's log, which the
# test harness reads at every unmount: any report fails the test.  The fault
# campaign runs too, its RSS margin widened by ASan's quarantine of freed
# memory (256 MB); LeakSanitizer checks for leaks instead.  Every forked
# Check test pays LeakSanitizer's scan at exit: on a loaded machine a 4 s
# unit test default is not enough, hence the multiplier.
SAN_ENV     = ASAN_OPTIONS=verify_asan_link_order=0:handle_segv=0:detect_leaks=1 \
	      LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	      UBSAN_OPTIONS=print_stacktrace=1 \
	      CK_TIMEOUT_MULTIPLIER=4

check-sanitize:
	$(MAKE) B=build-asan CC=$(SAN_CC) CFLAGS="$(SAN_CFLAGS)" LDFLAGS="$(SAN_LDFLAGS)" all
	$(MAKE) B=build-asan CC=$(SAN_CC) CFLAGS="$(SAN_CFLAGS)" LDFLAGS="$(SAN_LDFLAGS)" TEST_ENV="$(SAN_ENV)" run-tests
	$(SAN_ENV) PLUGFS_FAULTS_RSS_MARGIN_KB=262144 \
	  $(MAKE) B=build-asan CC=$(SAN_CC) CFLAGS="$(SAN_CFLAGS)" LDFLAGS="$(SAN_LDFLAGS)" faults N=10

# Signals, stops and unplugs at random under readers and writers for N
# seconds (tests/faults/campaign.c); fails on any violation.
N ?= 60
faults: all
	PLUGFS_BUILD=$(CURDIR)/$(B) $(B)/fault-campaign $(N)

# One daemon life (tests/faults/memcheck.c) with plugfs under valgrind:
# build/valgrind/plugfs is a wrapper, found through PLUGFS_BUILD.  Valgrind
# keeps plugfs-emu's LD_PRELOAD for plugfs; the drivers it forks and execs
# run natively (the forked child before its exec stays silent).  Zero
# errors and zero definite leaks, or plugfs exits 1 and the run fails.
VALGRIND = valgrind --tool=memcheck --error-exitcode=1 --leak-check=full \
	   --errors-for-leak-kinds=definite --child-silent-after-fork=yes
VG = $(CURDIR)/$(B)/valgrind
check-valgrind: all
	rm -rf $(VG) && mkdir -p $(VG)
	ln -s ../plugfs-emu ../plugfs-driver $(VG)/
	echo '#!/bin/sh' > $(VG)/plugfs
	echo 'exec $(VALGRIND) --log-file=$(VG)/memcheck.%p.log $(CURDIR)/$(B)/plugfs "$$@"' >> $(VG)/plugfs
	chmod +x $(VG)/plugfs
	PLUGFS_BUILD=$(VG) $(B)/fault-memcheck || { cat $(VG)/memcheck.*.log; exit 1; }
	grep -h 'ERROR SUMMARY\|definitely lost\|All heap blocks' $(VG)/memcheck.*.log

# libFuzzer (clang, ASan, UBSan) over sup_on_message(), every byte a driver
# sends, in build-fuzz/.  tests/fuzz/corpus/ is the seed corpus, read-only:
# what the run learns goes to build-fuzz/corpus/.  `make check` runs a
# fixed number of inputs from a fixed seed, stopping early after
# FUZZ_CHECK_SECONDS on a slow or busy machine.
FUZZ_SECONDS ?= 60
FUZZ_RUNS    ?= 100000
FUZZ_CHECK_SECONDS ?= 30
FUZZ_CFLAGS   = -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_FLAGS    = -close_fd_mask=2 -max_len=4096 -timeout=10

ifeq ($(B),build-fuzz)
$(B)/fuzz-proto: $(B)/tests/fuzz/fuzz_proto.o $(DAEMON_LIB_OBJ) $(call obj,$(COMMON_SRC))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $^ $(call pkg_libs,$(PKG_DAEMON))
$(B)/tests/fuzz/fuzz_proto.o: OBJ_CFLAGS = $(call pkg_cflags,$(PKG_DAEMON)) -DFUSE_USE_VERSION=34 -Ifs -Isupervisor
# The ippusb driver's parsers (common/http.c, common/escl.c) over what a device sends.
$(B)/fuzz-http: $(B)/tests/fuzz/fuzz_http.o $(call obj,$(COMMON_SRC))
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $^
endif

fuzz-build:
	$(MAKE) B=build-fuzz CC=clang CFLAGS="$(FUZZ_CFLAGS)" build-fuzz/fuzz-proto build-fuzz/fuzz-http

fuzz: fuzz-build
	@mkdir -p build-fuzz/corpus
	build-fuzz/fuzz-proto $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 build-fuzz/corpus tests/fuzz/corpus

check-fuzz: fuzz-build
	@mkdir -p build-fuzz/check-corpus
	build-fuzz/fuzz-proto $(FUZZ_FLAGS) -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_CHECK_SECONDS) -seed=1 -print_final_stats=1 build-fuzz/check-corpus tests/fuzz/corpus
	@mkdir -p build-fuzz/check-corpus-http
	build-fuzz/fuzz-http $(FUZZ_FLAGS) -runs=$(FUZZ_RUNS) -max_total_time=$(FUZZ_CHECK_SECONDS) -seed=1 -print_final_stats=1 build-fuzz/check-corpus-http tests/fuzz/corpus-http

# Benchmarks print numbers; they never fail for being slow.  Each figure is
# a table row on stdout and a JSON line appended to PLUGFS_BENCH_RESULTS
# (tests/bench/report.h).  Rounds: BENCH_IO_ROUNDS (isolation cost, default
# 5), BENCH_DISK_ROUNDS (plugfs against libusb, default 3), BENCH_ROUNDS
# (restarts, default 50).
PLUGFS_BENCH_RESULTS ?= $(CURDIR)/$(B)/bench-results.jsonl
BENCH_ENV = PLUGFS_BUILD=$(CURDIR)/$(B) PLUGFS_BENCH_RESULTS=$(PLUGFS_BENCH_RESULTS)
bench: all
	$(BENCH_ENV) $(B)/bench-io $(BENCH_IO_ROUNDS)
	$(BENCH_ENV) $(B)/bench-disk $(BENCH_DISK_ROUNDS)
	$(BENCH_ENV) $(B)/bench-restart $(BENCH_ROUNDS)
	$(BENCH_ENV) $(B)/bench-scale

demo: deps
	$(MAKE) all
	PLUGFS_BUILD=$(CURDIR)/$(B) tests/emu/demo

# Every man page in man/, in the section its suffix names.
MANPAGES = $(wildcard man/*.[1-8])
man_dest = $(DESTDIR)$(MANDIR)/man$(subst .,,$(suffix $(1)))/$(notdir $(1))

install: $(PROGS) $(UNITS)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR)/plugfs
	install -m 755 $(B)/plugfs $(DESTDIR)$(BINDIR)/plugfs
	install -m 755 $(B)/plugfs-driver $(DESTDIR)$(LIBEXECDIR)/plugfs/plugfs-driver
	$(foreach p,$(MANPAGES),install -D -m 644 $(p) $(call man_dest,$(p))$(newline))
	install -D -m 644 $(B)/systemd/plugfs@.service $(DESTDIR)$(SYSTEMDUNITDIR)/plugfs@.service
	install -D -m 644 $(B)/systemd/plugfs.service $(DESTDIR)$(SYSTEMDUNITDIR)/plugfs.service
	install -D -m 644 udev/70-plugfs.rules $(DESTDIR)$(UDEVRULESDIR)/70-plugfs.rules
	@# On the live system, make udev and systemd see them now (nothing to do in a DESTDIR).
	@if [ -z "$(DESTDIR)" ]; then \
		udevadm control --reload 2>/dev/null && udevadm trigger --subsystem-match=usb 2>/dev/null; \
		systemctl daemon-reload 2>/dev/null; true; fi

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/plugfs $(DESTDIR)$(LIBEXECDIR)/plugfs/plugfs-driver \
	      $(foreach p,$(MANPAGES),$(call man_dest,$(p))) \
	      $(DESTDIR)$(SYSTEMDUNITDIR)/plugfs@.service $(DESTDIR)$(SYSTEMDUNITDIR)/plugfs.service \
	      $(DESTDIR)$(UDEVRULESDIR)/70-plugfs.rules

clean:
	rm -rf build build-asan build-fuzz

format:
	clang-format -i $(shell git ls-files '*.c' '*.h')

FORCE:

.PHONY: FORCE all deps check run-tests check-sanitize check-long faults check-valgrind fuzz fuzz-build check-fuzz check-rig check-rig-if-present bench demo install uninstall clean format

-include $(shell find $(B) -name '*.d' 2>/dev/null)
