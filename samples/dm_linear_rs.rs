// SPDX-License-Identifier: GPL-2.0

//! dm-linear-rs: a sample target on dm-mirror-rs's device-mapper layer.
//!
//! It proves that `src/dm` is a generic layer the way rnull proves
//! `kernel::block::mq`: a second target, `linear_rs`, built from the same
//! files, mapping like drivers/md/dm-linear.c (`<dev> <offset>`), with no
//! `unsafe` of its own ([`linear`] forbids it). Only the tests load it
//! (tests/guest/sample-linear.sh compares it with dm-linear byte for byte).

#![warn(clippy::indexing_slicing)]

// The sample uses a small part of the layer and of the core.
#[allow(unused)]
#[macro_use]
#[path = "../src/dm/mod.rs"]
mod dm;
mod linear;
#[allow(unused)]
#[path = "../src/core/lib.rs"]
pub mod mcore;

use kernel::prelude::*;

/// What every log line of the module starts with.
pub(crate) const DM_MSG_PREFIX: &CStr = c"device-mapper: linear_rs";

module! {
    type: DmLinearModule,
    name: "dm_linear_rs",
    authors: ["dm-mirror-rs developers"],
    description: "sample device-mapper linear target on dm-mirror-rs's dm layer (tests only)",
    license: "GPL",
}

struct DmLinearModule {
    _target: dm::Registration<linear::Linear>,
}

impl kernel::Module for DmLinearModule {
    fn init(module: &'static ThisModule) -> Result<Self> {
        let target = dm::Registration::new(linear::TARGET_NAME, linear::TARGET_VERSION, 0, module)?;
        Ok(Self { _target: target })
    }
}
