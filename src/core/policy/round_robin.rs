// SPDX-License-Identifier: GPL-2.0

//! Round robin with a fixed number of reads per leg.

use super::super::legs::MAX_LEGS;
use super::{LeasedReads, ReadContext, ReadPolicy};

/// Sends `ios` consecutive reads to one usable leg, then moves on to the
/// next usable leg (ascending, wrapping). Starts at the default leg.
///
/// With `ios == 0` every read goes to the default leg, or if it is not
/// usable to the leg dm-raid1's `choose_mirror()` would pick (downwards from
/// the default, wrapping): upstream dm-raid1 behaviour.
// INVARIANT: `current < MAX_LEGS`; `issued <= ios` after every `choose`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundRobin {
    ios: u32,
    current: u8,
    issued: u32,
}

impl RoundRobin {
    /// A round robin of `ios` reads per leg starting at `start_leg`.
    pub fn new(ios: u32, start_leg: usize) -> RoundRobin {
        let current = if start_leg < MAX_LEGS {
            u8::try_from(start_leg).unwrap_or(0)
        } else {
            0
        };
        RoundRobin {
            ios,
            current,
            issued: 0,
        }
    }

    /// Reads per leg.
    pub fn ios(&self) -> u32 {
        self.ios
    }
}

impl ReadPolicy for RoundRobin {
    fn choose(&mut self, context: &ReadContext<'_>) -> Option<usize> {
        if self.ios == 0 {
            return context.default_or_fallback();
        }
        let current = usize::from(self.current);
        let leg = if !context.usable.contains(current) || self.issued >= self.ios {
            self.issued = 0;
            context.usable.next_after(current)?
        } else {
            current
        };
        self.current = u8::try_from(leg).unwrap_or(0);
        self.issued = self.issued.saturating_add(1);
        Some(leg)
    }

    fn lease_reads(&self, leg: usize) -> u32 {
        if self.ios == 0 {
            // The default leg (or dm-raid1's fallback) until something
            // changes, and every change ends the lease.
            super::MAX_LEASE_READS
        } else if usize::from(self.current) == leg {
            // The rest of the batch.
            self.ios.saturating_sub(self.issued)
        } else {
            0
        }
    }

    fn note_leased(&mut self, leased: &LeasedReads) {
        if self.ios != 0 && leased.legs.only_member() == Some(usize::from(self.current)) {
            self.issued = self.issued.saturating_add(leased.reads).min(self.ios);
        }
    }

    fn reset(&mut self) {
        self.issued = 0;
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::needless_range_loop,
    clippy::type_complexity
)]
mod tests {
    use super::super::super::legs::LegSet;
    use super::super::{LegStats, ReadRequest};
    use super::*;
    use std::vec::Vec;

    fn run(
        policy: &mut RoundRobin,
        usable: LegSet,
        default_leg: usize,
        reads: usize,
    ) -> Vec<usize> {
        let weights = [1; MAX_LEGS];
        let stats = [LegStats::default(); MAX_LEGS];
        let read = ReadRequest::default();
        let context = ReadContext {
            usable,
            nr_legs: MAX_LEGS,
            default_leg,
            weights: &weights,
            stats: &stats,
            read: &read,
        };
        (0..reads)
            .map(|_| policy.choose(&context).unwrap())
            .collect()
    }

    #[test]
    fn switches_after_ios_reads() {
        let mut policy = RoundRobin::new(2, 1);
        let legs = run(&mut policy, LegSet::first_n(3), 1, 8);
        assert_eq!(legs, [1, 1, 2, 2, 0, 0, 1, 1]);
    }

    #[test]
    fn skips_unusable_legs_immediately() {
        let mut policy = RoundRobin::new(3, 0);
        assert_eq!(run(&mut policy, LegSet::first_n(3), 0, 2), [0, 0]);
        // Leg 0 fails mid-batch: the next read moves on at once.
        assert_eq!(
            run(&mut policy, LegSet::from_bits(0b110), 0, 4),
            [1, 1, 1, 2]
        );
    }

    #[test]
    fn zero_ios_pins_the_default_leg() {
        let mut policy = RoundRobin::new(0, 0);
        assert_eq!(run(&mut policy, LegSet::first_n(3), 2, 3), [2, 2, 2]);
        // Default unusable: dm-raid1 goes downwards from the default.
        assert_eq!(run(&mut policy, LegSet::from_bits(0b011), 2, 2), [1, 1]);
        assert_eq!(run(&mut policy, LegSet::from_bits(0b110), 0, 2), [2, 2]);
    }
}
