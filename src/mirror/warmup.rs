// SPDX-License-Identifier: GPL-2.0

//! Warm-up reads: the module's own small reads that measure a leg before
//! the adaptive policy sends it a user read (see the core's
//! `Balancer::next_warmup_read`).
//!
//! They start when the mapping resumes (the worker runs after `resume`)
//! and whenever a leg becomes unmeasured again (a leg that comes back
//! forgets its estimates), one at a time per leg, each from a private
//! 4 KiB buffer that is freed when it completes. So the first user reads
//! already know which leg is fast, and none waits on a leg nobody
//! measured: until then they go to the measured legs, or, with none, to
//! the default leg, as dm-raid1 sends them. Only the adaptive policy asks
//! for them.

use super::MirrorSet;
use crate::dm::{self, buffer_io::IoBuffer};
use kernel::{alloc::KVVec, prelude::*};

/// Bytes of one warm-up read: one page, the smallest read worth measuring.
const WARMUP_BYTES: usize = 4096;
const WARMUP_SECTORS: u64 = (WARMUP_BYTES / 512) as u64;

impl MirrorSet {
    /// Sends the warm-up reads the policy asks for now. Worker only
    /// (process context: dm-io may sleep); none while suspended.
    pub(super) fn send_warmup_reads(&self) {
        loop {
            if self.queues.lock().suspended {
                return;
            }
            let (leg, nth) = {
                let mut st = self.state.lock();
                let usable = st.usable(self.nr_legs());
                let Some(leg) = st.balancer.next_warmup_read(usable, dm::now_ns()) else {
                    return;
                };
                let nth = st.balancer.stats(leg).map_or(0, |s| s.warmup_reads);
                (leg, nth)
            };
            if !self.send_warmup_read(leg, nth) {
                // No memory, or dm-io refused: the next read or resume
                // tries again.
                self.state.lock().balancer.cancel_warmup_read(leg);
                return;
            }
        }
    }

    /// The `nth` warm-up read of `leg`: 4 KiB at a sector that moves with
    /// `nth` (spread over the mapping, so a device cache or read-ahead does
    /// not answer them all). False if it could not be sent.
    fn send_warmup_read(&self, leg: usize, nth: u64) -> bool {
        let Some(dev) = self.legs.get(leg) else {
            return false;
        };
        let len = self.target.len();
        if len < WARMUP_SECTORS {
            return false;
        }
        let slots = len / WARMUP_SECTORS;
        // A large odd stride visits every slot before it repeats.
        let slot = nth
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .checked_rem(slots)
            .unwrap_or(0);
        let sector = slot.saturating_mul(WARMUP_SECTORS);
        let Ok(buf) = KVVec::from_elem(0u8, WARMUP_BYTES, GFP_NOWAIT | __GFP_NOWARN) else {
            return false;
        };
        let Ok(buffer) = IoBuffer::new(buf, GFP_NOWAIT | __GFP_NOWARN) else {
            return false;
        };
        self.buffer_ios
            .read(
                &self.target,
                &self.io,
                (&dev.dev, dev.map_sector(sector)),
                buffer,
                u64::try_from(leg).unwrap_or(u64::MAX),
            )
            .is_ok()
    }

    /// A warm-up read of the leg `tag` ended (softirq or process context).
    pub(super) fn warmup_read_done(&self, buf: KVVec<u8>, tag: u64, failed: bool) {
        let leg = usize::try_from(tag).unwrap_or(usize::MAX);
        let more = {
            let mut st = self.state.lock();
            st.balancer.complete_warmup_read(leg, dm::now_ns(), !failed);
            let usable = st.usable(self.nr_legs());
            st.balancer.wants_warmup(usable)
        };
        // Freed outside the lock.
        drop(buf);
        if failed {
            dm_warn_limit!(
                "warm-up read of leg {} failed: the adaptive policy will not read it",
                leg
            );
        }
        if more {
            self.worker.queue();
        }
    }
}
