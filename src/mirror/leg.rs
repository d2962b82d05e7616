// SPDX-License-Identifier: GPL-2.0

//! One leg of a mirror: a device, an offset, and its error state.

use crate::dm::Device;
use crate::mcore::status::LegHealth;

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

/// Error bits of a leg, as dm-raid1 keeps them (`error_type`): each kind is
/// recorded once, and the status character shows the most serious.
#[derive(Clone, Copy, Default)]
pub(crate) struct LegErrors {
    pub(crate) flush: bool,
    pub(crate) write: bool,
    pub(crate) sync: bool,
    pub(crate) read: bool,
}

impl LegErrors {
    /// Whether the leg has failed in any way: it then receives no reads.
    pub(crate) fn failed(self) -> bool {
        self.flush || self.write || self.sync || self.read
    }

    /// The health for the status line.
    pub(crate) fn health(self) -> LegHealth {
        LegHealth {
            flush_error: self.flush,
            write_error: self.write,
            sync_error: self.sync,
            read_error: self.read,
        }
    }
}
