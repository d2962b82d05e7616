// SPDX-License-Identifier: GPL-2.0

//! The `linear_rs` target: drivers/md/dm-linear.c's table, mapping and
//! status on the `dm` layer, in safe Rust.

#![forbid(unsafe_code)]

use crate::dm::{
    Args, Bio, CtrError, Device, Mapped, StatusType, StatusWriter, Target, TargetOperations,
};
use crate::mcore::number::parse_u64;
use core::fmt::Write;
use kernel::prelude::*;

/// The target type name.
pub(crate) const TARGET_NAME: &CStr = c"linear_rs";

/// dm-linear's version in the same kernel.
pub(crate) const TARGET_VERSION: [u32; 3] = [1, 5, 0];

/// One linear mapping: the target's sectors at `start` on `dev`.
pub(crate) struct Linear {
    dev: Device,
    start: u64,
}

#[vtable]
impl TargetOperations for Linear {
    type PerBio = ();

    fn ctr(target: &mut Target<Self>, args: &Args<'_>) -> Result<Pin<KBox<Self>>, CtrError> {
        let [path, start] = args.words() else {
            dm_err!("Invalid argument count");
            return Err(CtrError::invalid(c"Invalid argument count"));
        };
        let Some(start) = parse_u64(start) else {
            dm_err!("Invalid device sector: {}", start);
            return Err(CtrError::invalid(c"Invalid device sector"));
        };
        let dev = target.get_device(path).map_err(|err| {
            dm_err!("Device lookup failed: {}", path);
            CtrError {
                msg: c"Device lookup failed",
                err,
            }
        })?;
        target.set_num_flush_bios(1);
        target.set_num_discard_bios(1);
        KBox::pin(Linear { dev, start }, GFP_KERNEL).map_err(|_| CtrError {
            msg: c"Cannot allocate linear context",
            err: ENOMEM,
        })
    }

    fn map(&self, bio: Bio<'_, Self>) -> Mapped {
        let sector = self.start.saturating_add(bio.sector());
        bio.remap(&self.dev, sector)
    }

    fn status(&self, kind: StatusType, out: &mut StatusWriter<'_>) {
        // A full buffer is dm core's to notice (it retries with a larger one).
        let _ = match kind {
            StatusType::Info => Ok(()),
            StatusType::Table => write!(out, "{} {}", self.dev.name(), self.start),
            StatusType::Ima => write!(
                out,
                "target_name=linear_rs,target_version={}.{}.{},device_name={},start={};",
                TARGET_VERSION[0],
                TARGET_VERSION[1],
                TARGET_VERSION[2],
                self.dev.name(),
                self.start
            ),
        };
    }

    fn iterate_devices(&self, f: &mut dyn FnMut(&Device, u64) -> i32) -> i32 {
        f(&self.dev, self.start)
    }
}
