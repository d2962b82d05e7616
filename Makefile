# SPDX-License-Identifier: GPL-2.0
#
# dm-mirror-rs: the targets a developer runs.  Kbuild (not this file) says how
# the module is built; this file wraps it and the scripts.
#
#   make demo       build what is missing, boot the VM, show a mirror working
#   make test       host tests + every guest suite (what CI runs)
#   make module     the module (build/$(PROFILE)/dm_mirror_rs.ko) against the
#                   cached test kernel of PROFILE (base; debug: the debug kernel)
#   make setup      toolchain, kernel source and test kernel only
#   make check      rustfmt --check, clippy (host) and CLIPPY=1 (kernel)
#   make fuzz       the parsers' fuzz targets, short run (10 s each)
#   make fuzz-long  the same for 10 million inputs each
#   make test-debug every guest suite on the debug kernel (KASAN, lockdep, ...)
#   make test-sequences  1000 random fault sequences (tests/guest/fault-sequences.sh;
#                   SEQUENCES=N, SEED=S to change them); about 85 minutes under TCG
#   make clean

SHELL := /bin/bash
TOP := $(CURDIR)
PROFILE ?= base
export DMMR_PROFILE := $(PROFILE)

# Only resolved for targets that need the kernel (it may trigger a build).
KDIR = $(shell bash $(TOP)/scripts/setup --profile $(PROFILE) kernel --print-kdir | tail -n1)
# Each kernel profile builds into its own build/<profile>/ (Kbuild's MO=),
# so that switching profiles rebuilds nothing and the tree stays clean.
MODDIR = $(TOP)/build/$(PROFILE)
KMAKE = source $(TOP)/scripts/env.sh && mkdir -p $(MODDIR) && \
	make -C "$$kdir" M=$(TOP) MO=$(MODDIR) "$${DMMR_KMAKE_ARGS[@]}"

.PHONY: all setup module demo test test-debug test-sequences check fmt clippy fuzz fuzz-long bench clean rust-analyzer

all: module

setup:
	bash scripts/setup --profile $(PROFILE)

module: setup
	@kdir=$(KDIR); $(KMAKE) modules

demo: module
	bash scripts/vm-run tests/demo.sh

test:
	bash tests/run

test-debug:
	bash tests/run --guest-only --profile debug

# Four sequences at a time (DMMR_JOBS): about 5 s per sequence under TCG on
# 2 cores, 1000 in about 85 minutes.  The VM timeout allows 60 s per sequence.
SEQUENCES ?= 1000
test-sequences:
	DMMR_SEQUENCES=$(SEQUENCES) $(if $(SEED),DMMR_SEED=$(SEED)) \
		DMMR_VM_TIMEOUT=$$(( $(SEQUENCES) * 60 + 600 )) \
		bash tests/run --suite fault-sequences

check: setup
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	@kdir=$(KDIR); $(KMAKE) CLIPPY=1 W=1 modules
	/usr/bin/rustfmt --edition 2021 --check --config-path .rustfmt.toml src/dm_mirror_rs.rs samples/dm_linear_rs.rs

fmt:
	cargo fmt
	/usr/bin/rustfmt --edition 2021 --config-path .rustfmt.toml src/dm_mirror_rs.rs samples/dm_linear_rs.rs

fuzz:
	bash scripts/fuzz

fuzz-long:
	bash scripts/fuzz --long

bench: module
	bash bench/run

rust-analyzer: setup
	@kdir=$(KDIR); $(KMAKE) rust-analyzer

clean:
	rm -rf build
