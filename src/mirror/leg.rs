// SPDX-License-Identifier: GPL-2.0

//! One leg of a mirror: a device and where on it the copy starts.

use crate::dm::Device;

/// A leg: where its copy of the data lives.
pub(crate) struct Leg {
    /// The device, held open for the life of the mapping.
    pub(crate) dev: Device,
    /// First sector of the copy on `dev`.
    pub(crate) offset: u64,
}

impl Leg {
    /// The sector on the leg's device for target-relative `sector`.
    pub(crate) fn map_sector(&self, sector: u64) -> u64 {
        self.offset.saturating_add(sector)
    }
}
