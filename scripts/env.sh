# SPDX-License-Identifier: GPL-2.0
# Sourced by the scripts: where things live and how the kernel is built.
# Override DMMR_CACHE to move the cache (it must be outside the repository).

DMMR_TOP=${DMMR_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
DMMR_CACHE=${DMMR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dm-mirror-rs}
DMMR_KSERIES=${DMMR_KSERIES:-7.3}
DMMR_KSRC=${DMMR_KSRC:-$DMMR_CACHE/src/linux-$DMMR_KSERIES}
DMMR_BINDGEN=${DMMR_BINDGEN:-$DMMR_CACHE/tools/bin/bindgen}
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}

# Debian's rustc-web (1.96) ships the core/alloc sources the kernel needs;
# the rustup toolchains on these machines have no rust-src.
DMMR_KMAKE_ARGS=(LLVM=-19 RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc
	RUSTDOC=/usr/bin/rustdoc RUSTFMT=/usr/bin/rustfmt
	CLIPPY_DRIVER=/usr/bin/clippy-driver BINDGEN="$DMMR_BINDGEN")

# The cache key of a kernel build: series, profile, and a hash of the config
# fragments that define it.
kernel_dir() {
	local profile=$1 h
	h=$( { cat "$DMMR_TOP/scripts/kernel/base.config"
		[ "$profile" = base ] || cat "$DMMR_TOP/scripts/kernel/$profile.config"; } |
		sha256sum | cut -c1-12)
	echo "$DMMR_CACHE/kernel-$DMMR_KSERIES-$profile-$h"
}

# Where `make module PROFILE=<profile>` puts dm_mirror_rs.ko: one output
# directory per profile (Kbuild's MO=), so they never overwrite each other.
module_dir() {
	echo "$DMMR_TOP/build/${1:-base}"
}
