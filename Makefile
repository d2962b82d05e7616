# SPDX-License-Identifier: GPL-2.0
#
# dm-mirror-rs: the targets a developer runs.  Kbuild (not this file) says how
# the module is built; this file wraps it and the scripts.
#
#   make demo       build what is missing, boot the VM, show a mirror working
#   make test       host tests + every guest suite (what CI runs)
#   make module     the module (dm_mirror_rs.ko) against the cached test kernel
#   make setup      toolchain, kernel source and test kernel only
#   make check      rustfmt --check, clippy (host) and CLIPPY=1 (kernel)
#   make fuzz       the parsers' fuzz targets, short run (FUZZ_SECONDS=...)
#   make clean

SHELL := /bin/bash
TOP := $(CURDIR)
PROFILE ?= base
export DMMR_PROFILE := $(PROFILE)

# Only resolved for targets that need the kernel (it may trigger a build).
KDIR = $(shell bash $(TOP)/scripts/setup --profile $(PROFILE) kernel --print-kdir | tail -n1)
# The base profile builds in the tree; other profiles into build/<profile>/.
MODDIR = $(if $(filter base,$(PROFILE)),$(TOP),$(TOP)/build/$(PROFILE))
KMAKE = source $(TOP)/scripts/env.sh && mkdir -p $(MODDIR) && \
	make -C "$$kdir" M=$(TOP) $(if $(filter base,$(PROFILE)),,MO=$(MODDIR)) "$${DMMR_KMAKE_ARGS[@]}"

.PHONY: all setup module demo test check fmt clippy fuzz bench clean rust-analyzer

all: module

setup:
	bash scripts/setup --profile $(PROFILE)

module: setup
	@kdir=$(KDIR); $(KMAKE) modules

demo: module
	bash scripts/vm-run tests/demo.sh

test:
	bash tests/run

check: setup
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	@kdir=$(KDIR); $(KMAKE) CLIPPY=1 W=1 modules
	/usr/bin/rustfmt --edition 2021 --check --config-path .rustfmt.toml src/dm_mirror_rs.rs

fmt:
	cargo fmt
	/usr/bin/rustfmt --edition 2021 --config-path .rustfmt.toml src/dm_mirror_rs.rs

fuzz:
	bash scripts/fuzz

bench: module
	bash bench/run

rust-analyzer: setup
	@kdir=$(KDIR); $(KMAKE) rust-analyzer

clean:
	@kdir=$$(ls -d $${DMMR_CACHE:-$$HOME/.cache/dm-mirror-rs}/kernel-* 2>/dev/null | head -n1); \
		if [ -n "$$kdir" ]; then $(KMAKE) clean; fi
	rm -f src/dm/bindings_generated.rs
	cargo clean
