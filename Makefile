# SPDX-License-Identifier: GPL-2.0-or-later
# dism: DismMountImage for Linux.  GNU make + pkg-config.
#
#   make                build everything into build/ (SANITIZE=1: ASan+UBSan into build-san/)
#   make check          install test dependencies (root), build, run the whole suite (TAP)
#                       twice: on build/, then on build-san/ (ASan+UBSan+LSan)
#   make demo           the README's first command
#   make bench          benchmarks beside qemu-nbd and nbdkit (not part of check)
#   make fuzz           run every libFuzzer target for FUZZ_SECONDS each (FUZZ_JOBS at
#                       once), report in $(BUILD)/fuzz/report.md (also: make fuzz-campaign)
#   make fresh-machine-test  the README's first command in a new Debian 12 (debootstrap)
#   make vm-test        only the VM tests (Debian kernel under qemu TCG: /dev/nbdN, ntfs-3g)
#   make install        PREFIX (default /usr/local) and DESTDIR honoured

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SBINDIR    ?= $(PREFIX)/sbin
LIBEXECDIR ?= $(PREFIX)/libexec/dism
MANDIR     ?= $(PREFIX)/share/man
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DOCDIR     ?= $(PREFIX)/share/doc/dism
SYSTEMDUNITDIR      ?= $(PREFIX)/lib/systemd/system
SYSTEMDGENERATORDIR ?= $(PREFIX)/lib/systemd/system-generators
UDEVRULESDIR        ?= $(PREFIX)/lib/udev/rules.d
DESTDIR    ?=

CC      ?= cc
CLANG   ?= clang
PKG_CONFIG ?= pkg-config

# A build directory named *-san is a sanitizer build whoever calls make (the
# suite's `make install` tests run with BUILD=build-san in the ASan pass).
ifeq ($(SANITIZE),)
ifneq ($(filter %-san,$(BUILD)),)
SANITIZE := 1
endif
endif

ifeq ($(SANITIZE),1)
BUILD   ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT      = -O1 -g
else
BUILD   ?= build
SANFLAGS =
OPT      = -O2 -g
endif

WARN     = -Wall -Wextra -Werror -Wshadow -Wvla -Wformat=2 -Wno-format-nonliteral
# common/ (the shared layer) is a quote-only include directory: its spawn.h
# must not hide the system's <spawn.h>.
CPPFLAGS += -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -iquote common -Inbd-server/engine \
            -DLIBEXECDIR='"$(LIBEXECDIR)"'
CFLAGS  ?=
CFLAGS  += -std=gnu11 $(OPT) $(WARN) $(SANFLAGS) -pthread -fPIC -MMD -MP
LDFLAGS += $(SANFLAGS) -pthread

COMMON_SRC := $(wildcard common/*.c)
ENGINE_SRC := $(wildcard nbd-server/engine/*.c)
SERVER_SRC := $(wildcard nbd-server/server/*.c)
TOOL_SRC   := $(wildcard nbd-server/tools/*.c)
# Test drivers (C programs the test scripts run) and unit tests (C, TAP, of
# pure functions: tests/unit/test-NAME.c for common/NAME.h; 01-unit.t).
DRIVER_SRC := $(wildcard tests/drivers/*.c)
UNIT_SRC   := $(wildcard tests/unit/*.c)
FUZZ_SRC   := $(wildcard tests/fuzz/*.c)

COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/%.o)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
COMMON_LIB := $(BUILD)/libdismcommon.a
ENGINE_LIB := $(BUILD)/libdiskengine.a
SERVER_LIB := $(BUILD)/libnbdserver.a

SERVER_BIN := $(BUILD)/bin/dism-nbd-server
TOOL_BINS  := $(patsubst nbd-server/tools/%.c,$(BUILD)/bin/%,$(TOOL_SRC))
DRIVER_BINS := $(patsubst tests/drivers/%.c,$(BUILD)/tests/%,$(DRIVER_SRC))
UNIT_BINS  := $(patsubst tests/unit/%.c,$(BUILD)/tests/unit/%,$(UNIT_SRC))
FUZZ_BINS  := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

# pkg-config is asked at recipe time, once per variable, not when the
# Makefile is parsed: `make deps demo` on a new machine installs the -dev
# packages (and pkg-config itself) before anything reads their flags.
# $(call pkg_config,VAR,ARGS,FALLBACK) defines VAR as a deferred variable
# that replaces itself with the answer the first time it is expanded.
pkg_config = $(eval $(1) = $$(eval $(1) := $$$$(shell $$(PKG_CONFIG) $(2) 2>/dev/null$(if $(3), || echo $(3))))$$($(1)))
# `make deps demo`, `make -j deps check`: when deps is a goal, everything the
# other goals build waits for it (order-only: $(AFTER_DEPS) in the object
# rule and the rule next to deps below).
AFTER_DEPS := $(filter deps,$(MAKECMDGOALS))
$(call pkg_config,FUSE_CFLAGS,--cflags fuse3)
$(call pkg_config,FUSE_LIBS,--libs fuse3)
CPPFLAGS    += $(FUSE_CFLAGS)
LIBS       = $(FUSE_LIBS) -lpthread
$(call pkg_config,NBD_LIBS,--libs libnbd)
# GnuTLS: the server's STARTTLS (nbd-server/server/tls.c).  Linked only
# where the server library is.
$(call pkg_config,GNUTLS_CFLAGS,--cflags gnutls)
$(call pkg_config,GNUTLS_LIBS,--libs gnutls,-lgnutls)
CPPFLAGS  += $(GNUTLS_CFLAGS)
# libseccomp: the server's sandbox (nbd-server/server/sandbox.c), which is
# linked into the server binary only, like main.c.
$(call pkg_config,SECCOMP_CFLAGS,--cflags libseccomp)
$(call pkg_config,SECCOMP_LIBS,--libs libseccomp,-lseccomp)
CPPFLAGS  += $(SECCOMP_CFLAGS)
$(call pkg_config,NBD_CFLAGS,--cflags libnbd)

# libdism (userspace/lib) with DISM's C API, and the dism command.  The
# shared library exports only the Dism* functions (libdism.map); the static
# one carries the disk engine too, so users link -ldism -lntfs-3g alone.
LIBDISM_SRC := $(wildcard userspace/lib/*.c)
LIBDISM_OBJ := $(LIBDISM_SRC:%.c=$(BUILD)/%.o)
LIBDISM_SO  := $(BUILD)/libdism.so.1
LIBDISM_A   := $(BUILD)/libdism.a
DISM_PC     := $(BUILD)/dism.pc
DISM_BIN    := $(BUILD)/bin/dism
$(call pkg_config,NTFS_CFLAGS,--cflags libntfs-3g)
$(call pkg_config,NTFS_LIBS,--libs libntfs-3g,-lntfs-3g)
# wimlib (WIM images).  Its .pc names fuse in Requires.private, which is
# often not installed: then pkg-config fails and plain -lwim is used.
$(call pkg_config,WIM_CFLAGS,--cflags wimlib)
$(call pkg_config,WIM_LIBS,--libs wimlib,-lwim)
# nettle: SHA-1 of the data the WIM builder reads whole (wim-build.c).
$(call pkg_config,NETTLE_LIBS,--libs nettle,-lnettle)
# hivex: the offline registry of an image, for /Get-ImageInfo (winreg.c).
$(call pkg_config,HIVEX_CFLAGS,--cflags hivex)
$(call pkg_config,HIVEX_LIBS,--libs hivex,-lhivex)
DISM_INC    := -Iuserspace/include -Iuserspace/lib

.PHONY: all check demo bench fuzz fuzz-campaign fuzz-build install uninstall clean deps
all: $(SERVER_BIN) $(TOOL_BINS) $(DRIVER_BINS) $(UNIT_BINS) $(LIBDISM_SO) $(LIBDISM_A) $(DISM_PC) $(DISM_BIN)

$(BUILD)/%.o: %.c | $(AFTER_DEPS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# common/: what the server and libdism both use (byte order, GUIDs, CRC-32C,
# UTF-16, child processes, the NBD wire).  Everything that links the engine
# links this after it.
$(COMMON_LIB): $(COMMON_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(ENGINE_LIB): $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# The server is a library (main.c and sandbox.c excluded) so tests and
# fuzzers can link it.
SERVER_MAIN := $(BUILD)/nbd-server/server/main.o $(BUILD)/nbd-server/server/sandbox.o
$(SERVER_LIB): $(filter-out $(SERVER_MAIN),$(SERVER_OBJ))
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(SERVER_BIN): $(SERVER_MAIN) $(SERVER_LIB) $(ENGINE_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(GNUTLS_LIBS) $(SECCOMP_LIBS) $(WIM_LIBS) $(LIBS)

# The engine reads WIM resources with wimlib's decompressors (wim-source.c):
# everything that links the engine links $(WIM_LIBS).
$(ENGINE_OBJ): CPPFLAGS += $(WIM_CFLAGS)

$(LIBDISM_OBJ) $(BUILD)/userspace/cli/dism.o: CPPFLAGS += $(DISM_INC) $(NTFS_CFLAGS) $(WIM_CFLAGS) $(HIVEX_CFLAGS)
$(LIBDISM_OBJ): CFLAGS += -fvisibility=hidden

# What both libraries are made of: libdism's objects, the engine's and
# common/'s.  A new part is added to this list, once.
LIBDISM_PARTS := $(LIBDISM_OBJ) $(ENGINE_OBJ) $(COMMON_OBJ)

$(LIBDISM_SO): $(LIBDISM_PARTS) userspace/lib/libdism.map
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libdism.so.1 -Wl,--version-script=userspace/lib/libdism.map \
	  $(LDFLAGS) -o $@ $(LIBDISM_PARTS) $(NTFS_LIBS) $(NETTLE_LIBS) $(HIVEX_LIBS) $(WIM_LIBS) $(LIBS)
	ln -sf libdism.so.1 $(BUILD)/libdism.so

# The static library: the same parts, each with every global symbol the
# parts define that is neither the API's (Dism*) nor internal and prefixed
# (dism_*) renamed dism__NAME (objcopy --redefine-syms renames definitions
# and references alike), so a program that links libdism.a meets none of
# the engine's names (crc32c, raw_open...) and still links only the members
# it needs.  The programs and tests that link it call only dism_* functions.
# The sanitizer build renames the same names: gcc's ASan and UBSan define no
# global symbol in the objects (tests/t/06-symbols.t checks both builds).
# Rebuilt when the Makefile changes (a build made by an older rule).
OBJCOPY ?= objcopy
LIBDISM_A_DIR  := $(BUILD)/libdism-a
LIBDISM_A_PART := $(patsubst $(BUILD)/%,$(LIBDISM_A_DIR)/%,$(LIBDISM_PARTS))
$(LIBDISM_A): $(LIBDISM_PARTS) Makefile
	rm -rf $(LIBDISM_A_DIR) && mkdir -p $(LIBDISM_A_DIR)
	nm -g --defined-only $(LIBDISM_PARTS) | awk 'NF == 3 && $$3 !~ /^(Dism|dism_)/ {print $$3, "dism__" $$3}' | \
	  sort -u > $(LIBDISM_A_DIR)/renames
	for o in $(LIBDISM_PARTS); do t=$(LIBDISM_A_DIR)/$${o#$(BUILD)/}; mkdir -p $$(dirname $$t) && \
	  $(OBJCOPY) --redefine-syms=$(LIBDISM_A_DIR)/renames $$o $$t || exit 1; done
	rm -f $@ && ar rcs $@ $(LIBDISM_A_PART)

# dism.pc names PREFIX: written again by install, for the PREFIX given there.
WRITE_DISM_PC = printf '%s\n' 'prefix=$(PREFIX)' 'libdir=$(LIBDIR)' 'includedir=$(INCLUDEDIR)' '' \
	  'Name: dism' 'Description: DISM image-mount API (DismApi.h) for Linux' 'Version: 1.0.0' \
	  'Cflags: -I$${includedir}' 'Libs: -L$${libdir} -ldism $(SANFLAGS)' \
	  'Libs.private: $(NTFS_LIBS) $(NETTLE_LIBS) $(HIVEX_LIBS) $(WIM_LIBS) -lpthread'
$(DISM_PC): Makefile
	@mkdir -p $(dir $@)
	$(WRITE_DISM_PC) > $@

# The CLI links libdism statically: it runs from the build tree as installed.
# Its argument parser (args.c) is a file of its own for fuzz-cli.
$(DISM_BIN): $(BUILD)/userspace/cli/dism.o $(BUILD)/userspace/cli/args.o $(LIBDISM_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(NTFS_LIBS) $(NETTLE_LIBS) $(HIVEX_LIBS) $(WIM_LIBS) $(LIBS)

# Mounting at boot (docs/boot.md): dism-generator turns /etc/dismtab into
# units and needs only the dismtab parser (libc alone: generators run early);
# dism-boot, the units' helper, links libdism like dism.  The generator and
# the static units name installed paths: they are rebuilt when SBINDIR or
# LIBEXECDIR change (paths.stamp).
GENERATOR_BIN := $(BUILD)/bin/dism-generator
BOOT_BIN      := $(BUILD)/bin/dism-boot
BOOT_UNITS    := $(BUILD)/udev/dism-remount.service
PATHS_STAMP   := $(BUILD)/paths.stamp
all: $(GENERATOR_BIN) $(BOOT_BIN) $(BOOT_UNITS)
.PHONY: FORCE
$(PATHS_STAMP): FORCE
	@mkdir -p $(dir $@)
	@echo '$(SBINDIR) $(LIBEXECDIR)' | cmp -s - $@ || echo '$(SBINDIR) $(LIBEXECDIR)' > $@
$(BUILD)/userspace/cli/dism-generator.o: $(PATHS_STAMP)
$(BUILD)/userspace/cli/dism-generator.o: CPPFLAGS += -Iuserspace/lib -DSBINDIR='"$(SBINDIR)"'
$(BUILD)/userspace/cli/dism-boot.o: CPPFLAGS += $(DISM_INC) $(NTFS_CFLAGS) $(WIM_CFLAGS)

$(GENERATOR_BIN): $(BUILD)/userspace/cli/dism-generator.o $(BUILD)/userspace/lib/dismtab.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

$(BOOT_BIN): $(BUILD)/userspace/cli/dism-boot.o $(LIBDISM_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(NTFS_LIBS) $(NETTLE_LIBS) $(HIVEX_LIBS) $(WIM_LIBS) $(LIBS)

SUBST_PATHS = sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@LIBEXECDIR@|$(LIBEXECDIR)|g'
$(BUILD)/udev/%: udev/%.in $(PATHS_STAMP)
	@mkdir -p $(dir $@)
	$(SUBST_PATHS) $< > $@

# udev (docs/udev.md): the rules name dism-udev-id, the helper they import
# the DISM_* properties from, by its installed path (LIBEXECDIR); the helper
# needs libc alone (udev runs it for every event on our devices).
UDEV_ID_BIN := $(BUILD)/bin/dism-udev-id
UDEV_RULES  := $(BUILD)/udev/60-dism.rules
all: $(UDEV_ID_BIN) $(UDEV_RULES)
$(UDEV_ID_BIN): $(BUILD)/userspace/cli/dism-udev-id.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

# The image servers' supervisor (docs/reliability.md, "Server crash and
# restart"): libdism starts every server under it; it restarts a server that
# dies and gives the kernel's /dev/nbdN connections to the new one
# (attach-nbd.c, so it links libdism).  Installed next to the server.
SUPERVISE_BIN := $(BUILD)/bin/dism-supervise
all: $(SUPERVISE_BIN)
$(BUILD)/userspace/cli/dism-supervise.o: CPPFLAGS += $(DISM_INC)
$(SUPERVISE_BIN): $(BUILD)/userspace/cli/dism-supervise.o $(LIBDISM_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(NTFS_LIBS) $(NETTLE_LIBS) $(HIVEX_LIBS) $(WIM_LIBS) $(LIBS)
.PHONY: install-supervise uninstall-supervise
install: install-supervise
install-supervise: $(SUPERVISE_BIN)
	install -d $(DESTDIR)$(LIBEXECDIR)
	install -m 0755 $(SUPERVISE_BIN) $(DESTDIR)$(LIBEXECDIR)/dism-supervise
uninstall: uninstall-supervise
uninstall-supervise:
	rm -f $(DESTDIR)$(LIBEXECDIR)/dism-supervise

# The C API test links the shared library (what applications use).
$(BUILD)/tests/test-dismapi: tests/drivers/test-dismapi.c $(LIBDISM_SO) userspace/include/DismApi.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Iuserspace/include $(CFLAGS) -o $@ $< -L$(BUILD) -ldism \
	  -Wl,-rpath,'$$ORIGIN/..' $(LDFLAGS) $(LIBS)

# The fd/leak cycle tests (tests/t/58-fd-cycles.t) too: a long-lived
# application process, one thread or many.
$(BUILD)/tests/test-fd-cycles $(BUILD)/tests/test-parallel-cycles: $(BUILD)/tests/%: tests/drivers/%.c $(LIBDISM_SO) userspace/include/DismApi.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Iuserspace/include $(CFLAGS) -o $@ $< -L$(BUILD) -ldism \
	  -Wl,-rpath,'$$ORIGIN/..' $(LDFLAGS) $(LIBS)

# /Get-ImageInfo through the API alone (DismGetImageInfo, every field).
$(BUILD)/tests/imageinfo-api: tests/drivers/imageinfo-api.c $(LIBDISM_SO) userspace/include/DismApi.h
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Iuserspace/include $(CFLAGS) -o $@ $< -L$(BUILD) -ldism \
	  -Wl,-rpath,'$$ORIGIN/..' $(LDFLAGS) $(LIBS)

# The attach-layer test calls libdism's internal functions (attach.h,
# partition.h), which the shared library hides: link the static one.
$(BUILD)/tests/test-attach: tests/drivers/test-attach.c $(LIBDISM_A)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(DISM_INC) $(CFLAGS) -o $@ $< $(LIBDISM_A) $(LDFLAGS) $(NTFS_LIBS) $(NETTLE_LIBS) $(HIVEX_LIBS) $(WIM_LIBS) $(LIBS)

# The WIM commit crash test drives dism_wim_capture directly (internal: static library).
$(BUILD)/tests/wim-capture: tests/drivers/wim-capture.c $(LIBDISM_A)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(DISM_INC) $(WIM_CFLAGS) $(CFLAGS) -o $@ $< $(LIBDISM_A) $(LDFLAGS) $(NTFS_LIBS) $(NETTLE_LIBS) $(HIVEX_LIBS) $(WIM_LIBS) $(LIBS)

# The WIM volume builder test drives dism_wim_build directly (internal: static library).
$(BUILD)/tests/wim-build: tests/drivers/wim-build.c $(LIBDISM_A) $(ENGINE_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(DISM_INC) $(WIM_CFLAGS) $(CFLAGS) -o $@ $< $(LIBDISM_A) $(ENGINE_LIB) \
	  $(COMMON_LIB) $(LDFLAGS) $(NTFS_LIBS) $(NETTLE_LIBS) $(HIVEX_LIBS) $(WIM_LIBS) $(LIBS)

# The incremental WIM commit tests (79, 59) drive dism_wim_commit_changes directly.
$(BUILD)/tests/wim-commit: tests/drivers/wim-commit.c $(LIBDISM_A)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(DISM_INC) $(WIM_CFLAGS) $(CFLAGS) -o $@ $< $(LIBDISM_A) $(LDFLAGS) $(NTFS_LIBS) $(NETTLE_LIBS) $(HIVEX_LIBS) $(WIM_LIBS) $(LIBS)

# Fault injection for crash tests (tests/shim/crash-shim.c): an LD_PRELOAD
# library, built without sanitizers so it loads into any process.
CRASH_SHIM := $(BUILD)/tests/crash-shim.so
all: $(CRASH_SHIM)
$(CRASH_SHIM): tests/shim/crash-shim.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -g $(WARN) -fPIC -shared -o $@ $< -ldl

$(BUILD)/bin/%: $(BUILD)/nbd-server/tools/%.o $(ENGINE_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(WIM_LIBS) $(LIBS)

$(BUILD)/tests/%: tests/drivers/%.c $(SERVER_LIB) $(ENGINE_LIB) $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -Inbd-server/server $(CFLAGS) $(NBD_CFLAGS) -o $@ $< $(SERVER_LIB) $(ENGINE_LIB) $(COMMON_LIB) $(LDFLAGS) $(NBD_LIBS) $(GNUTLS_LIBS) $(WIM_LIBS) $(LIBS)

# common/'s unit tests (TAP; tests/t/01-unit.t runs them): common/ alone.
$(UNIT_BINS): $(BUILD)/tests/unit/%: tests/unit/%.c $(COMMON_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $< $(COMMON_LIB) $(LDFLAGS)

# The test drivers were in tests/unit/ before: a build directory made then
# has dependency files naming tests/unit/<driver>.c.  Such a name needs no
# rule (the driver is rebuilt from tests/drivers/ and its .d rewritten).
$(patsubst tests/drivers/%,tests/unit/%,$(DRIVER_SRC)): ;

# libFuzzer targets: clang, ASan+UBSan, the engine/server sources rebuilt
# with coverage instrumentation.
FUZZ_FLAGS := -g -O1 -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer
FUZZ_LIBSRC := $(COMMON_SRC) $(ENGINE_SRC) $(filter-out nbd-server/server/main.c nbd-server/server/sandbox.c,$(SERVER_SRC))
$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_LIBSRC)
	@mkdir -p $(dir $@)
	$(CLANG) $(CPPFLAGS) -Inbd-server/server -std=gnu11 $(FUZZ_FLAGS) -DFUZZING -pthread -o $@ $< $(FUZZ_LIBSRC) $(FUZZ_EXTRA_$*) $(GNUTLS_LIBS) $(WIM_LIBS) $(LIBS)

# fuzz-partition: libdism's partition-table parser (no libntfs-3g in it).
FUZZ_EXTRA_fuzz-partition := -Iuserspace/lib userspace/lib/partition.c userspace/lib/dism-error.c
$(BUILD)/fuzz/fuzz-partition: userspace/lib/partition.c userspace/lib/partition.h userspace/lib/dism-error.c

# fuzz-hive: the offline-registry reader over hivex (winreg.c alone).
$(BUILD)/fuzz/fuzz-hive: tests/fuzz/fuzz-hive.c userspace/lib/winreg.c userspace/lib/winreg.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -Iuserspace/lib $(HIVEX_CFLAGS) -o $@ $< userspace/lib/winreg.c $(HIVEX_LIBS)

# fuzz-dismtab and fuzz-cli: parsers that need libc alone, built without
# the engine (their coverage figures count their own code only).
FUZZ_CC = $(CLANG) -D_GNU_SOURCE -std=gnu11 $(FUZZ_FLAGS)
$(BUILD)/fuzz/fuzz-dismtab: tests/fuzz/fuzz-dismtab.c userspace/lib/dismtab.c userspace/lib/dismtab.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -Iuserspace/lib -o $@ $< userspace/lib/dismtab.c
$(BUILD)/fuzz/fuzz-cli: tests/fuzz/fuzz-cli.c userspace/cli/args.c userspace/cli/args.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -Iuserspace/cli -o $@ $< userspace/cli/args.c

fuzz-build: $(FUZZ_BINS)

# A campaign: every target FUZZ_SECONDS, FUZZ_JOBS at once, over a copy of
# its seed corpus; the table (executions, exec/s, cov, ft, corpus,
# findings) goes to $(BUILD)/fuzz/report.md, reproducers to
# $(BUILD)/fuzz/artifacts/.
FUZZ_SECONDS ?= 60
FUZZ_JOBS    ?= 1
fuzz fuzz-campaign: fuzz-build
	FUZZ_JOBS=$(FUZZ_JOBS) tests/fuzz/run-all.sh $(BUILD)/fuzz $(FUZZ_SECONDS) $(BUILD)/fuzz/report.md

deps:
	bash tests/deps.sh

# When deps is a goal, the targets compiled straight from sources, or whose
# recipe reads pkg-config before any object is built, wait for it too.
$(DRIVER_BINS) $(UNIT_BINS) $(FUZZ_BINS) $(DISM_PC) $(CRASH_SHIM): | $(AFTER_DEPS)

check: deps
	$(MAKE) all
	$(MAKE) SANITIZE=1 all
	$(MAKE) fuzz-build
	BUILD=$(BUILD) tests/run-tests.sh

# The README's first command on a brand-new Debian 12 (debootstrap
# --variant=minbase, kept in FRESH_ROOT; each run on an overlay of it), as
# root; docs/reliability.md, "Fresh machine".  Not part of check (minutes,
# needs the Debian mirror).
FRESH_COMMAND ?= make deps demo
.PHONY: fresh-machine-test
fresh-machine-test:
	tests/fresh-machine.sh debootstrap $(BUILD)/fresh-machine '$(FRESH_COMMAND)'

# The VM tests alone (docs/vm-tests.md); `make check` runs them too.
.PHONY: vm-test
vm-test: deps
	$(MAKE) all
	BUILD=$(BUILD) prove --timer -f tests/t/*-vm-*.t

demo: all
	tests/demo.sh $(BUILD)

bench: all
	tests/bench/run-bench.sh $(BUILD)
	tests/bench/run-vm-serve-bench.sh $(BUILD)
	tests/bench/run-mount-bench.sh $(BUILD)
	tests/bench/run-wim-bench.sh $(BUILD)
	tests/bench/run-imageinfo-bench.sh $(BUILD)
	tests/bench/run-parallel-bench.sh $(BUILD)

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBEXECDIR)
	install -m 0755 $(SERVER_BIN) $(DESTDIR)$(LIBEXECDIR)/dism-nbd-server
	install -m 0755 $(TOOL_BINS) $(DESTDIR)$(BINDIR)/
	ln -sf $$(realpath -m --relative-to=$(SBINDIR) $(LIBEXECDIR))/dism-nbd-server $(DESTDIR)$(SBINDIR)/dism-nbd-server
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man3
	install -m 0755 $(DISM_BIN) $(DESTDIR)$(SBINDIR)/dism
	install -m 0755 $(LIBDISM_SO) $(DESTDIR)$(LIBDIR)/libdism.so.1
	ln -sf libdism.so.1 $(DESTDIR)$(LIBDIR)/libdism.so
	install -m 0644 $(LIBDISM_A) $(DESTDIR)$(LIBDIR)/libdism.a
	install -m 0644 userspace/include/DismApi.h $(DESTDIR)$(INCLUDEDIR)/DismApi.h
	$(WRITE_DISM_PC) > $(DESTDIR)$(LIBDIR)/pkgconfig/dism.pc
	install -m 0644 docs/man/dism.8 docs/man/dism-nbd-server.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 docs/man/DismApi.3 $(DESTDIR)$(MANDIR)/man3/DismApi.3
	install -d $(DESTDIR)$(SYSTEMDGENERATORDIR) $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(DOCDIR)
	install -m 0755 $(GENERATOR_BIN) $(DESTDIR)$(SYSTEMDGENERATORDIR)/dism-generator
	install -m 0755 $(BOOT_BIN) $(DESTDIR)$(LIBEXECDIR)/dism-boot
	install -m 0644 $(BOOT_UNITS) $(DESTDIR)$(SYSTEMDUNITDIR)/
	install -m 0644 docs/man/dismtab.5 $(DESTDIR)$(MANDIR)/man5/dismtab.5
	install -m 0644 udev/dismtab.example $(DESTDIR)$(DOCDIR)/dismtab.example
	install -d $(DESTDIR)$(UDEVRULESDIR)
	install -m 0755 $(UDEV_ID_BIN) $(DESTDIR)$(LIBEXECDIR)/dism-udev-id
	install -m 0644 $(UDEV_RULES) $(DESTDIR)$(UDEVRULESDIR)/60-dism.rules

uninstall:
	rm -f $(DESTDIR)$(LIBEXECDIR)/dism-nbd-server $(DESTDIR)$(SBINDIR)/dism-nbd-server
	rm -f $(patsubst $(BUILD)/bin/%,$(DESTDIR)$(BINDIR)/%,$(TOOL_BINS))
	rm -f $(DESTDIR)$(SBINDIR)/dism $(DESTDIR)$(LIBDIR)/libdism.so.1 $(DESTDIR)$(LIBDIR)/libdism.so
	rm -f $(DESTDIR)$(LIBDIR)/libdism.a $(DESTDIR)$(INCLUDEDIR)/DismApi.h $(DESTDIR)$(LIBDIR)/pkgconfig/dism.pc
	rm -f $(DESTDIR)$(MANDIR)/man8/dism.8 $(DESTDIR)$(MANDIR)/man8/dism-nbd-server.8
	rm -f $(DESTDIR)$(MANDIR)/man3/DismApi.3
	rm -f $(DESTDIR)$(SYSTEMDGENERATORDIR)/dism-generator $(DESTDIR)$(LIBEXECDIR)/dism-boot
	rm -f $(patsubst $(BUILD)/udev/%,$(DESTDIR)$(SYSTEMDUNITDIR)/%,$(BOOT_UNITS))
	rm -f $(DESTDIR)$(MANDIR)/man5/dismtab.5 $(DESTDIR)$(DOCDIR)/dismtab.example
	rm -f $(DESTDIR)$(LIBEXECDIR)/dism-udev-id $(DESTDIR)$(UDEVRULESDIR)/60-dism.rules
	-rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null
	-rmdir $(DESTDIR)$(LIBEXECDIR) 2>/dev/null

clean:
	rm -rf build build-san

-include $(shell find $(BUILD) -name '*.d' -type f -not -path '$(BUILD)/vm/*' 2>/dev/null)
