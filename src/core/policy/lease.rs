// SPDX-License-Identifier: GPL-2.0

//! Read leases: reads routed without the mirror set's lock.
//!
//! Choosing a leg takes the mirror set's IRQ-off state lock (freshness,
//! write-behind, the policy's statistics), where dm-raid1's read path takes
//! none. Most choices are foregone conclusions: `round_robin ios 0` sends
//! every read to the default leg, `round_robin ios N` sends the rest of a
//! batch to the same leg, and the adaptive policy, with nothing new
//! learned, sends the next few reads where it sent the last. So a choice
//! made under the lock may leave a [`ReadLease`]: the next `n` reads may go
//! to leg `L` without the lock, with one compare-and-swap each
//! ([`ReadLease::take`]).
//!
//! Whoever takes the lock to change anything first ends the lease
//! ([`ReadLease::revoke`], which also says how many of its reads were
//! taken, for the balancer's accounts); a holder that only looks may
//! leave it. A new lease is granted only by a
//! choice under the lock, from the state it sees, and only for a leg that
//! may serve every region with its latest data (the caller checks that:
//! healthy, fresh everywhere, behind nowhere). So a read that takes a
//! lease is decided as if it had held the lock just before the next
//! holder: every change to what reads may do happens under the lock, after
//! the lease that did not know of it ended.

use core::sync::atomic::{AtomicU64, Ordering};

use super::super::legs::MAX_LEGS;
use super::Balancer;

/// The most reads one lease grants.
pub const MAX_LEASE_READS: u32 = 1 << 12;

// The lease in one word, 0 when there is none:
// bit 63: granted; bits 32..36: the leg; bits 16..32: reads granted;
// bits 0..16: reads left. A read takes one by decrementing the word.
const GRANTED: u64 = 1 << 63;
const LEG_SHIFT: u32 = 32;
const LEG_MASK: u64 = 0xf;
const GRANTED_SHIFT: u32 = 16;
const COUNT_MASK: u64 = 0xffff;

// MAX_LEGS (9) legs fit the 4 bits of LEG_MASK, MAX_LEASE_READS the 16 of
// COUNT_MASK (a host test checks both).

/// What a revoked lease had handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeasedReads {
    /// The leg the reads went to.
    pub leg: usize,
    /// How many reads took the lease.
    pub reads: u32,
    /// The sector after the last of them (as far as a racing read lets
    /// this know: the sequential-read hint only).
    pub next_sector: u64,
}

/// One mirror set's read lease (see the module documentation).
///
/// [`take`](Self::take) may run on any CPU, in any context, at any time;
/// [`grant`](Self::grant), [`revoke`](Self::revoke) and
/// [`take_sectors`](Self::take_sectors) only under the lock that protects
/// the state the lease was granted from.
// INVARIANT: `word` is 0 or `GRANTED | leg << LEG_SHIFT | granted <<
// GRANTED_SHIFT | left` with `leg < MAX_LEGS` and `left <= granted <=
// MAX_LEASE_READS`; only `take` changes a granted word other than to 0,
// and only by decrementing a non-zero `left`.
#[derive(Debug, Default)]
pub struct ReadLease {
    word: AtomicU64,
    /// The sector after the last leased read (a hint, see [`LeasedReads`]).
    next_sector: AtomicU64,
    /// Sectors read through leases, per leg, not yet accounted.
    sectors: [AtomicU64; MAX_LEGS],
}

impl ReadLease {
    /// No lease.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one read of the lease, if one is left: the read of
    /// `nr_sectors` at `sector` goes to the returned leg.
    pub fn take(&self, sector: u64, nr_sectors: u32) -> Option<usize> {
        // Relaxed: the lease is the only message; what the leg may serve
        // was decided under the lock by its granter, and a read that took
        // the lease is ordered before the next holder of that lock by the
        // revocation's swap, which reads this decrement.
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            if word & GRANTED == 0 || word & COUNT_MASK == 0 {
                return None;
            }
            // `left` is non-zero: no borrow into the other fields.
            match self.word.compare_exchange_weak(
                word,
                word.wrapping_sub(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(now) => word = now,
            }
        }
        // `leg < MAX_LEGS` by the invariant.
        let leg = usize::try_from((word >> LEG_SHIFT) & LEG_MASK).unwrap_or(0);
        let end = sector.saturating_add(u64::from(nr_sectors));
        self.next_sector.store(end, Ordering::Relaxed);
        if let Some(sectors) = self.sectors.get(leg) {
            sectors.fetch_add(u64::from(nr_sectors), Ordering::Relaxed);
        }
        Some(leg)
    }

    /// Grants the next `reads` reads (at most [`MAX_LEASE_READS`]) to
    /// `leg`; no lease for 0 reads or a leg out of range. Call under the
    /// lock, after [`ReadLease::revoke`].
    pub fn grant(&self, leg: usize, reads: u32) {
        let reads = u64::from(reads.min(MAX_LEASE_READS));
        if reads == 0 || leg >= MAX_LEGS {
            return;
        }
        let Ok(leg) = u64::try_from(leg) else {
            return;
        };
        let word = GRANTED | (leg << LEG_SHIFT) | (reads << GRANTED_SHIFT) | reads;
        self.word.store(word, Ordering::Relaxed);
    }

    /// Ends the lease; returns what it handed out, if it handed out any
    /// read. Call under the lock, before anything else the lock protects.
    pub fn revoke(&self) -> Option<LeasedReads> {
        // The common case with no lease costs a load, not a write.
        if self.word.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let word = self.word.swap(0, Ordering::Relaxed);
        if word & GRANTED == 0 {
            return None;
        }
        let granted = (word >> GRANTED_SHIFT) & COUNT_MASK;
        let left = word & COUNT_MASK;
        let reads = u32::try_from(granted.saturating_sub(left)).unwrap_or(0);
        if reads == 0 {
            return None;
        }
        Some(LeasedReads {
            leg: usize::try_from((word >> LEG_SHIFT) & LEG_MASK).unwrap_or(0),
            reads,
            next_sector: self.next_sector.load(Ordering::Relaxed),
        })
    }

    /// Ends the lease ([`ReadLease::revoke`]) and accounts what it handed
    /// out in `balancer` as dispatched at `now_ns()` (asked only if a read
    /// took the lease), with the sectors every leased read added since the
    /// last call: what the lock holder does first. Call under the lock.
    pub fn end_into(&self, balancer: &mut Balancer, now_ns: impl FnOnce() -> u64) {
        let Some(leased) = self.revoke() else {
            return;
        };
        balancer.account_leased(&leased, now_ns());
        // Reads of earlier leases may still add sectors to other legs.
        for leg in 0..balancer.nr_legs() {
            balancer.account_leased_sectors(leg, self.take_sectors(leg));
        }
    }

    /// The sectors leased reads sent to `leg` since the last call (reads
    /// still taking a lease that just ended may add theirs after it: they
    /// count at the next call).
    pub fn take_sectors(&self, leg: usize) -> u64 {
        self.sectors
            .get(leg)
            .map_or(0, |s| s.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::vec::Vec;

    #[test]
    fn the_fields_fit() {
        assert!(MAX_LEGS as u64 <= LEG_MASK + 1);
        assert!(u64::from(MAX_LEASE_READS) <= COUNT_MASK);
    }

    #[test]
    fn no_lease_no_read() {
        let lease = ReadLease::new();
        assert_eq!(lease.take(0, 8), None);
        assert_eq!(lease.revoke(), None);
        lease.grant(1, 0);
        assert_eq!(lease.take(0, 8), None);
        lease.grant(MAX_LEGS, 5);
        assert_eq!(lease.take(0, 8), None);
    }

    #[test]
    fn a_lease_hands_out_its_reads_then_nothing() {
        let lease = ReadLease::new();
        lease.grant(2, 3);
        assert_eq!(lease.take(0, 8), Some(2));
        assert_eq!(lease.take(8, 8), Some(2));
        assert_eq!(lease.take(16, 16), Some(2));
        assert_eq!(lease.take(32, 8), None);
        assert_eq!(
            lease.revoke(),
            Some(LeasedReads {
                leg: 2,
                reads: 3,
                next_sector: 32
            })
        );
        assert_eq!(lease.take_sectors(2), 32);
        assert_eq!(lease.take_sectors(2), 0);
        assert_eq!(lease.revoke(), None);
    }

    #[test]
    fn a_revoked_lease_hands_out_nothing() {
        let lease = ReadLease::new();
        lease.grant(0, 10);
        assert_eq!(lease.take(0, 8), Some(0));
        assert_eq!(lease.revoke().map(|r| r.reads), Some(1));
        assert_eq!(lease.take(8, 8), None);
        // An unused lease hands out no reads.
        lease.grant(1, 10);
        assert_eq!(lease.revoke(), None);
        assert_eq!(lease.take(8, 8), None);
    }

    #[test]
    fn grants_are_capped() {
        let lease = ReadLease::new();
        lease.grant(MAX_LEGS - 1, u32::MAX);
        let mut n = 0;
        while lease.take(0, 1).is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_LEASE_READS);
        assert_eq!(
            lease.revoke().map(|r| (r.leg, r.reads)),
            Some((MAX_LEGS - 1, MAX_LEASE_READS))
        );
    }

    #[test]
    fn concurrent_reads_are_each_counted_once() {
        // Readers take leases while a "lock holder" revokes and grants: the
        // reads the revocations report are exactly the reads that took a
        // lease, and every read went to the leg of a lease then in force.
        let lease = Arc::new(ReadLease::new());
        let stop = Arc::new(core::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let lease = Arc::clone(&lease);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut per_leg = [0u64; MAX_LEGS];
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(leg) = lease.take(0, 8) {
                            per_leg[leg] += 1;
                        }
                    }
                    per_leg
                })
            })
            .collect();
        let mut reported = [0u64; MAX_LEGS];
        for round in 0..20_000usize {
            if let Some(r) = lease.revoke() {
                reported[r.leg] += u64::from(r.reads);
            }
            lease.grant(round % 3, 1 + (round % 7) as u32);
        }
        stop.store(true, Ordering::Relaxed);
        let mut taken = [0u64; MAX_LEGS];
        for r in readers {
            for (t, n) in taken.iter_mut().zip(r.join().unwrap()) {
                *t += n;
            }
        }
        if let Some(r) = lease.revoke() {
            reported[r.leg] += u64::from(r.reads);
        }
        assert_eq!(taken, reported);
        let sectors: Vec<u64> = (0..MAX_LEGS).map(|l| lease.take_sectors(l)).collect();
        let expected: Vec<u64> = taken.iter().map(|n| n * 8).collect();
        assert_eq!(sectors, expected);
    }

    proptest! {
        #[test]
        fn reads_taken_match_the_grant(leg in 0..MAX_LEGS, granted in 0u32..100, tries in 0u32..120) {
            let lease = ReadLease::new();
            lease.grant(leg, granted);
            let mut taken = 0;
            for i in 0..tries {
                if let Some(l) = lease.take(u64::from(i) * 8, 8) {
                    prop_assert_eq!(l, leg);
                    taken += 1;
                }
            }
            prop_assert_eq!(taken, granted.min(tries));
            let revoked = lease.revoke();
            prop_assert_eq!(revoked.map(|r| r.reads), (taken > 0).then_some(taken));
            prop_assert_eq!(lease.take_sectors(leg), u64::from(taken) * 8);
        }
    }
}
