// SPDX-License-Identifier: GPL-2.0

//! Read leases: reads routed without the mirror set's lock.
//!
//! Choosing a leg takes the mirror set's IRQ-off state lock (freshness,
//! write-behind, the policy's statistics), where dm-raid1's read path takes
//! none. Most choices are foregone conclusions: `round_robin ios 0` sends
//! every read to the default leg, `round_robin ios N` sends the rest of a
//! batch to the same leg, and the adaptive policy, with nothing new
//! learned, sends the next few reads where it sent the last, or, between
//! equally fast legs, to each in turn. So a choice made under the lock may
//! leave a [`ReadLease`]: the next `n` reads may go to leg `L`, or to the
//! legs of a set in turn, without the lock, with one compare-and-swap each
//! ([`ReadLease::take`]). Which leg each read of the lease took follows from
//! its number, so the accounts need no counter per leg.
//!
//! Whoever takes the lock to change anything first ends the lease
//! ([`ReadLease::revoke`], which also says how many of its reads were
//! taken, for the balancer's accounts); a holder that only looks may
//! leave it. A new lease is granted only by a
//! choice under the lock, from the state it sees, and only for legs that
//! may serve every region with its latest data (the caller checks that:
//! healthy, fresh everywhere, behind nowhere). So a read that takes a
//! lease is decided as if it had held the lock just before the next
//! holder: every change to what reads may do happens under the lock, after
//! the lease that did not know of it ended.

use core::sync::atomic::{AtomicU64, Ordering};

use super::super::legs::{LegSet, MAX_LEGS};
use super::Balancer;

/// The most reads one lease grants.
pub const MAX_LEASE_READS: u32 = 1 << 12;

// The lease in one word, 0 when there is none:
// bit 63: granted; bits 41..45: the rank in `legs` of the first read's
// leg; bits 32..41: the legs; bits 16..32: reads granted; bits 0..16:
// reads left. A read takes one by decrementing the word.
const GRANTED: u64 = 1 << 63;
const FIRST_SHIFT: u32 = 41;
const FIRST_MASK: u64 = 0xf;
const LEGS_SHIFT: u32 = 32;
const LEGS_MASK: u64 = (1 << MAX_LEGS) - 1;
const GRANTED_SHIFT: u32 = 16;
const COUNT_MASK: u64 = 0xffff;

// MAX_LEGS (9) legs fit the 9 bits of LEGS_MASK, a rank below MAX_LEGS the
// 4 of FIRST_MASK, MAX_LEASE_READS the 16 of COUNT_MASK (a host test checks
// all three).

/// The legs of a lease's word.
fn legs_of(word: u64) -> LegSet {
    // Nine bits: a u16 holds them.
    LegSet::from_bits(u16::try_from((word >> LEGS_SHIFT) & LEGS_MASK).unwrap_or(0))
}

/// What a choice under the lock lets the next reads do without it: go to
/// the members of `legs` in turn, ascending and wrapping around, starting
/// with `first` (a lease for one leg sends them all there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The legs the reads take turns on.
    pub legs: LegSet,
    /// The first read's leg, a member of `legs`.
    pub first: usize,
    /// How many reads (none: no lease).
    pub reads: u32,
    /// Where the choice's own read ended: a read that starts there
    /// continues its stream and takes no lease for several legs.
    pub next_sector: u64,
}

impl LeaseGrant {
    /// No lease.
    pub const NONE: LeaseGrant = LeaseGrant {
        legs: LegSet::EMPTY,
        first: 0,
        reads: 0,
        next_sector: 0,
    };
}

/// What a revoked lease had handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeasedReads {
    /// The legs the reads took turns on.
    pub legs: LegSet,
    /// The rank in `legs` of the first read's leg.
    pub first_rank: usize,
    /// How many reads took the lease.
    pub reads: u32,
    /// The sector after the last of them (as far as a racing read lets
    /// this know: the sequential-read hint only).
    pub next_sector: u64,
}

impl LeasedReads {
    /// How many of the reads went to `leg`: read `i` went to the member
    /// of rank `(first_rank + i) % legs.len()`.
    pub fn reads_on(&self, leg: usize) -> u32 {
        let Some(rank) = self.legs.rank_of(leg) else {
            return 0;
        };
        // `legs` has `leg`: n >= 1.
        let n = self.legs.len();
        let first = self.first_rank.checked_rem(n).unwrap_or(0);
        // `leg` takes reads offset, offset + n, offset + 2n, ...
        let offset = rank
            .wrapping_add(n)
            .wrapping_sub(first)
            .checked_rem(n)
            .unwrap_or(0);
        let reads = usize::try_from(self.reads).unwrap_or(usize::MAX);
        match reads.checked_sub(offset) {
            Some(after) if after > 0 => {
                let count = (after.wrapping_sub(1))
                    .checked_div(n)
                    .unwrap_or(0)
                    .saturating_add(1);
                u32::try_from(count).unwrap_or(u32::MAX)
            }
            _ => 0,
        }
    }

    /// The leg of the last read.
    pub fn last_leg(&self) -> Option<usize> {
        let n = self.legs.len();
        let last = self
            .first_rank
            .wrapping_add(usize::try_from(self.reads).ok()?.checked_sub(1)?);
        self.legs.nth(last.checked_rem(n)?)
    }
}

/// One mirror set's read lease (see the module documentation).
///
/// [`take`](Self::take) may run on any CPU, in any context, at any time;
/// [`grant`](Self::grant), [`revoke`](Self::revoke) and
/// [`take_sectors`](Self::take_sectors) only under the lock that protects
/// the state the lease was granted from.
// INVARIANT: `word` is 0 or `GRANTED | first << FIRST_SHIFT | legs <<
// LEGS_SHIFT | granted << GRANTED_SHIFT | left` with `legs` a non-empty
// set of legs below `MAX_LEGS`, `first < legs.len()` and `left <= granted
// <= MAX_LEASE_READS`; only `take` changes a granted word other than to 0,
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
    /// `nr_sectors` at `sector` goes to the returned leg. A lease for
    /// several legs leaves a read that continues the last one (a
    /// sequential stream) to a choice of its own, which keeps streams on
    /// one leg.
    pub fn take(&self, sector: u64, nr_sectors: u32) -> Option<usize> {
        // Relaxed: the lease is the only message; what the legs may serve
        // was decided under the lock by its granter, and a read that took
        // the lease is ordered before the next holder of that lock by the
        // revocation's swap, which reads this decrement.
        let mut word = self.word.load(Ordering::Relaxed);
        let legs = loop {
            if word & GRANTED == 0 || word & COUNT_MASK == 0 {
                return None;
            }
            let legs = legs_of(word);
            if legs.len() > 1 && self.next_sector.load(Ordering::Relaxed) == sector {
                return None;
            }
            // `left` is non-zero: no borrow into the other fields.
            match self.word.compare_exchange_weak(
                word,
                word.wrapping_sub(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break legs,
                Err(now) => word = now,
            }
        };
        let leg = match legs.only_member() {
            Some(leg) => leg,
            None => {
                // This read is number `granted - left` of the lease.
                let granted = (word >> GRANTED_SHIFT) & COUNT_MASK;
                let taken = granted.wrapping_sub(word & COUNT_MASK);
                let first = (word >> FIRST_SHIFT) & FIRST_MASK;
                let n = u64::try_from(legs.len()).unwrap_or(1);
                let rank = first.wrapping_add(taken).checked_rem(n).unwrap_or(0);
                // rank < legs.len() <= MAX_LEGS; `legs` is not empty.
                legs.nth(usize::try_from(rank).unwrap_or(0))
                    .or(legs.first())?
            }
        };
        let end = sector.saturating_add(u64::from(nr_sectors));
        self.next_sector.store(end, Ordering::Relaxed);
        if let Some(sectors) = self.sectors.get(leg) {
            sectors.fetch_add(u64::from(nr_sectors), Ordering::Relaxed);
        }
        Some(leg)
    }

    /// Grants the next `grant.reads` reads (at most [`MAX_LEASE_READS`]) to
    /// `grant.legs` in turn; no lease for 0 reads, no legs, or a first leg
    /// that is not one of them. Call under the lock, after
    /// [`ReadLease::revoke`].
    pub fn grant(&self, grant: LeaseGrant) {
        let reads = u64::from(grant.reads.min(MAX_LEASE_READS));
        let Some(first) = grant.legs.rank_of(grant.first) else {
            return;
        };
        if reads == 0 {
            return;
        }
        let legs = u64::from(grant.legs.bits()) & LEGS_MASK;
        // first < legs.len() <= MAX_LEGS fits FIRST_MASK.
        let first = u64::try_from(first).unwrap_or(0) & FIRST_MASK;
        let word = GRANTED
            | (first << FIRST_SHIFT)
            | (legs << LEGS_SHIFT)
            | (reads << GRANTED_SHIFT)
            | reads;
        // Before the word: a read that sees the lease sees where the
        // choice's read ended (Relaxed suffices for a hint; both stores
        // happen under the lock, before any read of this lease).
        self.next_sector.store(grant.next_sector, Ordering::Relaxed);
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
            legs: legs_of(word),
            first_rank: usize::try_from((word >> FIRST_SHIFT) & FIRST_MASK).unwrap_or(0),
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
#[allow(clippy::arithmetic_side_effects, clippy::needless_range_loop)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::vec::Vec;

    /// `reads` reads to `leg`.
    fn to_leg(leg: usize, reads: u32) -> LeaseGrant {
        LeaseGrant {
            legs: LegSet::single(leg),
            first: leg,
            reads,
            next_sector: u64::MAX,
        }
    }

    /// `reads` reads to the legs of `bits` in turn, from `first`.
    fn in_turn(bits: u16, first: usize, reads: u32) -> LeaseGrant {
        LeaseGrant {
            legs: LegSet::from_bits(bits),
            first,
            reads,
            next_sector: u64::MAX,
        }
    }

    #[test]
    fn the_fields_fit() {
        assert!(MAX_LEGS as u64 <= LEGS_MASK.count_ones().into());
        assert!(MAX_LEGS as u64 <= FIRST_MASK + 1);
        assert!(u64::from(MAX_LEASE_READS) <= COUNT_MASK);
        assert!(FIRST_SHIFT >= LEGS_SHIFT + MAX_LEGS as u32);
        assert!(FIRST_SHIFT + FIRST_MASK.count_ones() < 63);
    }

    #[test]
    fn no_lease_no_read() {
        let lease = ReadLease::new();
        assert_eq!(lease.take(0, 8), None);
        assert_eq!(lease.revoke(), None);
        lease.grant(to_leg(1, 0));
        assert_eq!(lease.take(0, 8), None);
        lease.grant(to_leg(MAX_LEGS, 5));
        assert_eq!(lease.take(0, 8), None);
        // A first leg that is not one of the legs.
        lease.grant(in_turn(0b011, 2, 5));
        assert_eq!(lease.take(0, 8), None);
        lease.grant(in_turn(0, 0, 5));
        assert_eq!(lease.take(0, 8), None);
    }

    #[test]
    fn a_lease_hands_out_its_reads_then_nothing() {
        let lease = ReadLease::new();
        lease.grant(to_leg(2, 3));
        assert_eq!(lease.take(0, 8), Some(2));
        assert_eq!(lease.take(8, 8), Some(2));
        assert_eq!(lease.take(16, 16), Some(2));
        assert_eq!(lease.take(32, 8), None);
        let revoked = lease.revoke().unwrap();
        assert_eq!(
            revoked,
            LeasedReads {
                legs: LegSet::single(2),
                first_rank: 0,
                reads: 3,
                next_sector: 32
            }
        );
        assert_eq!((revoked.reads_on(2), revoked.reads_on(1)), (3, 0));
        assert_eq!(revoked.last_leg(), Some(2));
        assert_eq!(lease.take_sectors(2), 32);
        assert_eq!(lease.take_sectors(2), 0);
        assert_eq!(lease.revoke(), None);
    }

    #[test]
    fn legs_take_turns_from_the_first() {
        let lease = ReadLease::new();
        // Legs 0, 2 and 5, from leg 2.
        lease.grant(in_turn(0b100101, 2, 7));
        let legs: Vec<_> = (0..8).map(|i| lease.take(i * 100, 8)).collect();
        let expected = [2, 5, 0, 2, 5, 0, 2].map(Some);
        assert_eq!(legs[..7], expected);
        assert_eq!(legs[7], None);
        let revoked = lease.revoke().unwrap();
        assert_eq!(revoked.reads, 7);
        assert_eq!(
            [0, 1, 2, 5].map(|l| revoked.reads_on(l)),
            [2, 0, 3, 2],
            "{revoked:?}"
        );
        assert_eq!(revoked.last_leg(), Some(2));
    }

    #[test]
    fn a_stream_leaves_a_lease_for_several_legs_to_a_choice() {
        let lease = ReadLease::new();
        // The choice's read ended at 8: the next one continues it.
        lease.grant(LeaseGrant {
            next_sector: 8,
            ..in_turn(0b11, 1, 4)
        });
        assert_eq!(lease.take(8, 8), None);
        assert_eq!(lease.take(100, 8), Some(1));
        assert_eq!(lease.take(108, 8), None);
        assert_eq!(lease.take(200, 8), Some(0));
        assert_eq!(lease.revoke().map(|r| r.reads), Some(2));
        // A lease for one leg takes streams too.
        lease.grant(LeaseGrant {
            next_sector: 8,
            ..to_leg(1, 4)
        });
        assert_eq!(lease.take(8, 8), Some(1));
        assert_eq!(lease.take(16, 8), Some(1));
    }

    #[test]
    fn a_revoked_lease_hands_out_nothing() {
        let lease = ReadLease::new();
        lease.grant(to_leg(0, 10));
        assert_eq!(lease.take(0, 8), Some(0));
        assert_eq!(lease.revoke().map(|r| r.reads), Some(1));
        assert_eq!(lease.take(8, 8), None);
        // An unused lease hands out no reads.
        lease.grant(in_turn(0b11, 0, 10));
        assert_eq!(lease.revoke(), None);
        assert_eq!(lease.take(8, 8), None);
    }

    #[test]
    fn grants_are_capped() {
        let lease = ReadLease::new();
        lease.grant(to_leg(MAX_LEGS - 1, u32::MAX));
        let mut n = 0;
        while lease.take(0, 1).is_some() {
            n += 1;
        }
        assert_eq!(n, MAX_LEASE_READS);
        let revoked = lease.revoke().unwrap();
        assert_eq!(
            (revoked.reads_on(MAX_LEGS - 1), revoked.reads),
            (MAX_LEASE_READS, MAX_LEASE_READS)
        );
    }

    #[test]
    fn concurrent_reads_are_each_counted_once() {
        // Readers take leases while a "lock holder" revokes and grants: the
        // reads the revocations report, leg by leg, are exactly the reads
        // that took a lease, and every read went to a leg of a lease then
        // in force.
        let lease = Arc::new(ReadLease::new());
        let stop = Arc::new(core::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..3u64)
            .map(|reader| {
                let lease = Arc::clone(&lease);
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    let mut per_leg = [0u64; MAX_LEGS];
                    let mut sector = reader << 40;
                    while !stop.load(Ordering::Relaxed) {
                        // Never contiguous: no read is refused as a stream.
                        sector += 16;
                        if let Some(leg) = lease.take(sector, 8) {
                            per_leg[leg] += 1;
                        }
                    }
                    per_leg
                })
            })
            .collect();
        let mut reported = [0u64; MAX_LEGS];
        let mut report = |r: LeasedReads| {
            for (leg, n) in reported.iter_mut().enumerate() {
                *n += u64::from(r.reads_on(leg));
            }
        };
        let grants = [
            to_leg(0, 3),
            in_turn(0b110, 2, 5),
            in_turn(0b111, 0, 7),
            to_leg(2, 1),
            in_turn(0b101, 0, 4),
        ];
        for round in 0..20_000usize {
            if let Some(r) = lease.revoke() {
                report(r);
            }
            lease.grant(grants[round % grants.len()]);
        }
        stop.store(true, Ordering::Relaxed);
        let mut taken = [0u64; MAX_LEGS];
        for r in readers {
            for (t, n) in taken.iter_mut().zip(r.join().unwrap()) {
                *t += n;
            }
        }
        if let Some(r) = lease.revoke() {
            report(r);
        }
        assert_eq!(taken, reported);
        let sectors: Vec<u64> = (0..MAX_LEGS).map(|l| lease.take_sectors(l)).collect();
        let expected: Vec<u64> = taken.iter().map(|n| n * 8).collect();
        assert_eq!(sectors, expected);
    }

    proptest! {
        #[test]
        fn reads_taken_match_the_grant(
            bits in 1u16..(1 << MAX_LEGS),
            first_rank in 0usize..MAX_LEGS,
            granted in 0u32..100,
            tries in 0u32..120,
        ) {
            let legs = LegSet::from_bits(bits);
            let first = legs.nth(first_rank % legs.len()).unwrap();
            let lease = ReadLease::new();
            lease.grant(LeaseGrant { legs, first, reads: granted, next_sector: u64::MAX });
            let mut per_leg = [0u32; MAX_LEGS];
            let mut last = None;
            for i in 0..tries {
                if let Some(l) = lease.take(u64::from(i) * 16, 8) {
                    prop_assert!(legs.contains(l));
                    // In turn: each read's leg follows the last one's.
                    let expected = last.map_or(first, |last| legs.next_after(last).unwrap());
                    prop_assert_eq!(l, expected);
                    per_leg[l] += 1;
                    last = Some(l);
                }
            }
            let taken: u32 = per_leg.iter().sum();
            prop_assert_eq!(taken, granted.min(tries));
            let revoked = lease.revoke();
            prop_assert_eq!(revoked.map(|r| r.reads), (taken > 0).then_some(taken));
            if let Some(revoked) = revoked {
                for leg in 0..MAX_LEGS {
                    prop_assert_eq!(revoked.reads_on(leg), per_leg[leg]);
                }
                prop_assert_eq!(revoked.last_leg(), last);
            }
            for leg in 0..MAX_LEGS {
                prop_assert_eq!(lease.take_sectors(leg), u64::from(per_leg[leg]) * 8);
            }
        }
    }
}
