# saepipe: `make` builds lib/libsaepipe.a and every stage into bin/;
# `make check` runs every test; `make demo` runs the experiment end to end;
# `make frontier` trains and scores every architecture at several L0s;
# `make bench` runs the benchmarks; `make install PREFIX=...`.
#
# Sources are discovered: lib/*.c go into the library, bin/*.c are one
# stage each, tests/unit/*.c are C unit tests (TAP), tests/t*.sh are shell
# tests (TAP). `make check SANITIZE=1` builds everything with ASan+UBSan.

CC      ?= cc
PREFIX  ?= /usr/local
OPT     ?= -O2 -march=x86-64-v2
CFLAGS  ?= $(OPT) -g
WARN    := -Wall -Wextra -Wshadow -Wno-unused-parameter
PKGS    := openblas msgpack libzstd libcurl jansson libpcre2-8 zlib
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CPPFLAGS += -Ilib -D_GNU_SOURCE $(PKG_CFLAGS)
LDLIBS   += $(PKG_LIBS) -lpthread -lm
# MPI (Open MPI from Debian) for sae-fit alone: its latent-sharded runs
# under mpirun (lib/sae_mpi.c); no other stage links libmpi.
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null)
CPPFLAGS   += $(MPI_CFLAGS)
ifeq ($(SANITIZE),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
ALL_CFLAGS = $(CFLAGS) $(WARN) -std=gnu11 -MMD -MP

# One short line per file built ("  CC      bin/sae-fit"); V=1 shows the
# full commands, as the Linux kernel's and git's builds do.
V ?= 0
ifeq ($(V),1)
Q :=
say := @:
else
Q := @
say := @printf '  %-7s %s\n'
endif

LIB_SRCS  := $(sort $(wildcard lib/*.c))
LIB_OBJS  := $(LIB_SRCS:lib/%.c=build/lib/%.o)
BIN_SRCS  := $(sort $(wildcard bin/*.c))
BINS      := $(BIN_SRCS:.c=)
UNIT_SRCS := $(sort $(wildcard tests/unit/*.c))
UNITS     := $(UNIT_SRCS:.c=.t)
HELPER_SRCS := $(sort $(wildcard tests/helpers/*.c))
HELPERS   := $(HELPER_SRCS:.c=)
SCRIPTS   := $(wildcard bin/*.sh)
MAN1      := $(sort $(wildcard man/man1/*.1))
MAN5      := $(sort $(wildcard man/man5/*.5))
MAN7      := $(sort $(wildcard man/man7/*.7))
LIBA      := lib/libsaepipe.a

# Debian packages: to build, to test, to benchmark.
DEBS_BUILD := build-essential pkg-config libopenblas-dev libmsgpack-dev libzstd-dev \
              libcurl4-openssl-dev libjansson-dev libpcre2-dev zlib1g-dev zstd \
              libopenmpi-dev openmpi-bin
DEBS_RUN   := parallel curl openssh-client rsync
DEBS_CHECK := perl python3-numpy chromium openssh-server rsync man-db
DEBS_BENCH := python3-torch hyperfine

.PHONY: all units check demo frontier bench install clean deps deps-check deps-bench flags
# (the empty recipes keep make from saying "is up to date" / "Nothing to be done")
all: $(LIBA) $(BINS) $(HELPERS)
	@:
units: $(UNITS)
	@:

# Rebuild everything when the compiler flags change (SANITIZE=1 and back).
build/.flags: flags
	@mkdir -p build
	@echo '$(CC) $(ALL_CFLAGS) $(CPPFLAGS) $(LDFLAGS)' | cmp -s - $@ || \
	  echo '$(CC) $(ALL_CFLAGS) $(CPPFLAGS) $(LDFLAGS)' > $@

build/lib/%.o: lib/%.c build/.flags
	@mkdir -p $(dir $@)
	$(say) CC $@
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c -o $@ $<
# Adam's loop vectorised: GCC keeps sqrtf's errno check (a branch, so a
# scalar loop) unless -fno-math-errno is on the command line; the optimize
# attribute's no-math-errno does not reach it. Same bytes: sqrt and
# division are correctly rounded in either form.
build/lib/sae_adam.o: ALL_CFLAGS += -fno-math-errno

bin/sae-fit: LDLIBS += $(MPI_LIBS)

$(LIBA): $(LIB_OBJS)
	$(say) AR $@
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

bin/%: bin/%.c $(LIBA) build/.flags
	$(say) CCLD $@
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MF build/$(notdir $@).d $(LDFLAGS) -o $@ $< $(LIBA) $(LDLIBS)

tests/unit/%.t: tests/unit/%.c $(LIBA) build/.flags
	$(say) CCLD $@
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MF build/unit-$(notdir $@).d $(LDFLAGS) -o $@ $< $(LIBA) $(LDLIBS)

tests/helpers/%: tests/helpers/%.c $(LIBA) build/.flags
	$(say) CCLD $@
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MF build/helper-$(notdir $@).d $(LDFLAGS) -o $@ $< $(LIBA) $(LDLIBS)

# Tests: C unit tests and shell tests, all TAP, all through prove.
# T= narrows the set: make check T='tests/t0100-tsz.sh'.
T ?= $(UNITS) $(sort $(wildcard tests/t[0-9]*.sh))
# The packages come first, then a new make builds: pkg-config's flags are
# read when a Makefile is parsed, so a make started before the -dev
# packages were installed would link without them.
check: deps-check
	@$(MAKE) --no-print-directory all units
	prove -j2 --exec '' $(T)

demo: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory -f pipelines/demo.mk

frontier: deps
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory -f pipelines/frontier.mk

bench: deps-bench
	@$(MAKE) --no-print-directory all
	@set -e; for b in bench/*.sh; do echo "== $$b"; sh $$b; done

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/saepipe \
	  $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 \
	  $(DESTDIR)$(PREFIX)/share/man/man7 \
	  $(DESTDIR)$(PREFIX)/share/saepipe
	install -m 755 $(BINS) $(SCRIPTS) $(DESTDIR)$(PREFIX)/bin
	install -m 644 $(LIBA) $(DESTDIR)$(PREFIX)/lib
	install -m 644 $(filter-out %_int.h,$(wildcard lib/*.h)) $(DESTDIR)$(PREFIX)/include/saepipe
	install -m 644 $(MAN1) $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 $(MAN5) $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 644 $(MAN7) $(DESTDIR)$(PREFIX)/share/man/man7
	if [ -d share/prompts ]; then cp -r share/prompts $(DESTDIR)$(PREFIX)/share/saepipe/; fi

clean:
	rm -rf build $(LIBA) $(BINS) $(UNITS) $(HELPERS) tests/trash.*

# `make deps` installs the Debian packages that are missing (as root, or
# through sudo). It does nothing when everything is there.
deps:
	@sh tests/install-debs.sh $(DEBS_BUILD) $(DEBS_RUN)
deps-check: deps
	@sh tests/install-debs.sh $(DEBS_CHECK)
deps-bench: deps
	@sh tests/install-debs.sh $(DEBS_BENCH)

-include $(wildcard build/lib/*.d build/*.d)
