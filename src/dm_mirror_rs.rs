// SPDX-License-Identifier: GPL-2.0

//! dm-mirror-rs: the device-mapper `mirror` target (a drop-in for
//! drivers/md/dm-raid1.c) with pluggable read balancing.
//!
//! Three layers, calls only go down:
//! - [`mirror`]: the target in safe Rust (`MirrorSet`);
//! - `dm`: the device-mapper abstractions, the only FFI and `unsafe`;
//! - `mcore`: kernel-independent parsing, formatting and read policies, also
//!   built and tested on the host (`cargo test`).

// Under `CLIPPY=1`: no indexing that could panic, as in the core.
#![warn(clippy::indexing_slicing)]

#[macro_use]
mod dm;
#[path = "core/lib.rs"]
pub mod mcore;
mod mirror;

use kernel::prelude::*;

/// What every log line of the module starts with (dm's `DM_NAME ": "
/// DM_MSG_PREFIX`), before `: <text>`.
pub(crate) const DM_MSG_PREFIX: &CStr = c"device-mapper: mirror";

module! {
    type: DmMirrorModule,
    name: "dm_mirror_rs",
    authors: ["dm-mirror-rs developers"],
    description: "device-mapper mirror target (dm-raid1 compatible) with read balancing",
    license: "GPL",
}

// `default_io_balance`: the read policy of new mappings whose table selects
// none (declared in src/dm/helpers.c).
dm_string_param!(default_io_balance, mirror::check_default_io_balance);
// `hot_region_idle_ms`: how long new mappings keep a region hot (see
// src/core/hot_regions.rs).
dm_string_param!(hot_region_idle_ms, mirror::check_hot_region_idle_ms);

struct DmMirrorModule {
    _target: dm::Registration<mirror::MirrorSet>,
}

impl kernel::Module for DmMirrorModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let target = dm::Registration::new(
            mirror::TARGET_NAME,
            mirror::TARGET_VERSION,
            mirror::TARGET_FEATURES,
            module,
        )?;
        dm_info!(
            "version {}.{}.{} (Rust) loaded",
            mirror::TARGET_VERSION[0],
            mirror::TARGET_VERSION[1],
            mirror::TARGET_VERSION[2]
        );
        Ok(Self { _target: target })
    }
}
