// SPDX-License-Identifier: GPL-2.0

//! Probe reads: the module's own small reads that measure a leg, so that
//! the adaptive policy never makes a user read wait on a leg to learn what
//! it costs (see the core's `Balancer::next_probe_read`).
//!
//! - Warm-up: a leg with too few samples is measured from when the mapping
//!   resumes (the worker runs after `resume`), and again when a leg that
//!   came back has forgotten its estimates. So the first user reads
//!   already know which leg is fast; until then they go to the measured
//!   legs, or, with none, to the default leg, as dm-raid1 sends them.
//! - Probes: a leg the policy keeps out of reads (a slower one) is measured
//!   now and then, when the policy asks for it, with three reads in a row.
//!
//! One at a time per leg, each into a private buffer (4 KiB; every fourth
//! 64 KiB, which measures the transfer cost) that is freed when it
//! completes. Only the adaptive policy asks for them.

use super::MirrorSet;
use crate::dm::{self, buffer_io::IoBuffer};
use kernel::{alloc::KVVec, prelude::*};

/// Sectors of a probe read: 4 KiB (the policy's reference size), and
/// every fourth 64 KiB, which measures the leg's transfer cost.
const SMALL_SECTORS: u32 = 8;
const LARGE_SECTORS: u32 = 128;

/// A probe read's tag: the leg in the low byte, its size above.
fn tag(leg: usize, sectors: u32) -> u64 {
    (u64::from(sectors) << 8) | (u64::try_from(leg).unwrap_or(0xff) & 0xff)
}

fn untag(tag: u64) -> (usize, u32) {
    (
        usize::try_from(tag & 0xff).unwrap_or(usize::MAX),
        u32::try_from(tag >> 8).unwrap_or(0),
    )
}

/// A zeroed buffer for a read of `sectors`, if memory is at hand.
fn read_buffer(sectors: u32) -> Option<KVVec<u8>> {
    let bytes = usize::try_from(sectors).ok()?.checked_mul(512)?;
    KVVec::from_elem(0u8, bytes, GFP_NOWAIT | __GFP_NOWARN).ok()
}

impl MirrorSet {
    /// Sends the probe reads the policy asks for now. Worker only
    /// (process context: dm-io may sleep); none while suspended.
    pub(super) fn send_probe_reads(&self) {
        loop {
            if self.queues.lock().suspended {
                return;
            }
            let (leg, nth) = {
                let mut st = self.lock_balancing();
                let usable = st.usable(self.nr_legs());
                let Some(leg) = st.balancer.next_probe_read(usable, dm::now_ns()) else {
                    return;
                };
                let nth = st.balancer.stats(leg).map_or(0, |s| s.probe_reads);
                (leg, nth)
            };
            if !self.send_probe_read(leg, nth) {
                // No memory, or dm-io refused: the next read or resume
                // tries again.
                self.state.lock().balancer.cancel_probe_read(leg);
                return;
            }
        }
    }

    /// The `nth` probe read of `leg` (counting from 1): 4 KiB, or 64 KiB
    /// every fourth, at a sector that moves with `nth` (spread over the
    /// mapping, so a device cache or read-ahead does not answer them all).
    /// False if it could not be sent.
    fn send_probe_read(&self, leg: usize, nth: u64) -> bool {
        let Some(dev) = self.legs.get(leg) else {
            return false;
        };
        let large = (nth % 4 == 0).then(|| read_buffer(LARGE_SECTORS)).flatten();
        let (buf, sectors) = match large {
            Some(buf) => (buf, LARGE_SECTORS),
            None => match read_buffer(SMALL_SECTORS) {
                Some(buf) => (buf, SMALL_SECTORS),
                None => return false,
            },
        };
        let slots = self.target.len() / u64::from(sectors);
        if slots == 0 {
            return false;
        }
        // A large odd multiplier spreads consecutive reads over the mapping.
        let slot = nth
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .checked_rem(slots)
            .unwrap_or(0);
        let sector = slot.saturating_mul(u64::from(sectors));
        let Ok(buffer) = IoBuffer::new(buf, GFP_NOWAIT | __GFP_NOWARN) else {
            return false;
        };
        self.buffer_ios
            .read(
                &self.target,
                &self.io,
                (&dev.dev, dev.map_sector(sector)),
                buffer,
                tag(leg, sectors),
            )
            .is_ok()
    }

    /// A probe read of the leg `tag` ended (softirq or process context).
    pub(super) fn probe_read_done(&self, buf: KVVec<u8>, tag: u64, failed: bool) {
        let (leg, sectors) = untag(tag);
        let more = {
            let mut st = self.lock_balancing();
            st.balancer
                .complete_probe_read(leg, dm::now_ns(), sectors, !failed);
            let usable = st.usable(self.nr_legs());
            st.balancer.wants_probe_read(usable)
        };
        // Freed outside the lock.
        drop(buf);
        if failed {
            dm_warn_limit!(
                "probe read of leg {} failed: the adaptive policy will not read it",
                leg
            );
        }
        if more {
            self.worker.queue();
        }
    }
}
