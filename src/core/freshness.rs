// SPDX-License-Identifier: GPL-2.0

//! Per-leg freshness: which legs hold each region's latest acknowledged data.
//!
//! dm-raid1 keeps one set-wide view (`in_sync`, the dirty log's sync bits and
//! per-leg error counters). That view is what its status reports, but it is
//! not enough to balance reads: without `handle_errors` a failed resync copy
//! is marked in sync anyway (`dm_rh_update_states`), a full resync clears
//! every leg's errors, and a write that failed on the default leg is
//! resynced *from* that leg. So the mirror keeps, per leg, a bitmap of the
//! regions in which that leg is **stale**: it may not hold the region's
//! latest acknowledged data. Reads are served only by fresh legs, resync
//! copies only from a fresh leg, and the default leg is moved off a leg
//! that goes stale.
//!
//! # Rules
//!
//! - A write that reached at least one leg makes every leg it did not reach
//!   stale for its region ([`Freshness::write_completed`]). One that reached
//!   no leg changes nothing: it was not acknowledged and no leg has newer
//!   data than another.
//! - A write that covers its whole region makes the legs it reached fresh.
//!   A partial write leaves a reached leg as fresh or stale as it was.
//! - A resync copy without errors makes its destinations fresh (the source
//!   is always fresh: [`Freshness::source_for`]). The copy never ignores
//!   errors, so it stops at the first one: a destination whose write failed
//!   is stale, and every other destination keeps the freshness it had
//!   ([`Freshness::copy_completed`]).
//! - A new mapping knows nothing of the old one: regions its dirty log says
//!   are not in sync are fresh on the default leg only
//!   ([`Freshness::trust_only`], at the first resume).
//!
//! The bitmaps live in storage the caller provides (`S`: a `Vec<u64>` on the
//! host, a `KVVec<u64>` in the kernel), [`Freshness::words_needed`] words.
//! Every operation is O(legs) and allocation-free, for use under the mirror
//! set's spinlock.

use core::ops::DerefMut;

use super::legs::{LegSet, MAX_LEGS, MIN_LEGS};
use super::policy::{Balancer, MirrorState, ReadRequest};
use super::region_bits::RegionBits;

/// Why a [`Freshness`] operation was refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreshnessError {
    /// A mirror set has `MIN_LEGS..=MAX_LEGS` legs.
    InvalidLegCount(usize),
    /// The storage does not have [`Freshness::words_needed`] words.
    StorageSize,
    /// A region index at or past the region count: a bug in the caller.
    RegionOutOfRange(u64),
}

/// Which legs hold each region's latest acknowledged data. See the module
/// documentation.
// INVARIANT: `MIN_LEGS <= nr_legs <= MAX_LEGS`; `stale` covers `nr_legs`
// legs and `nr_regions` regions; bit (`l`, `r`) is set iff leg `l` is stale
// for region `r`, no bit at or past `nr_regions` is set, and
// `stale_regions[l]` counts leg `l`'s set bits.
#[derive(Debug)]
pub struct Freshness<S> {
    nr_legs: usize,
    nr_regions: u64,
    stale: RegionBits<S>,
    stale_regions: [u64; MAX_LEGS],
}

impl<S: DerefMut<Target = [u64]>> Freshness<S> {
    /// Words of storage for `nr_legs` legs and `nr_regions` regions; `None`
    /// if that does not fit in `usize`.
    pub fn words_needed(nr_legs: usize, nr_regions: u64) -> Option<usize> {
        RegionBits::<S>::words_needed(nr_legs, nr_regions)
    }

    /// Every leg fresh for every region, over `storage` (which is cleared).
    pub fn new(nr_legs: usize, nr_regions: u64, storage: S) -> Result<Self, FreshnessError> {
        if !(MIN_LEGS..=MAX_LEGS).contains(&nr_legs) {
            return Err(FreshnessError::InvalidLegCount(nr_legs));
        }
        let stale =
            RegionBits::new(nr_legs, nr_regions, storage).ok_or(FreshnessError::StorageSize)?;
        Ok(Freshness {
            nr_legs,
            nr_regions,
            stale,
            stale_regions: [0; MAX_LEGS],
        })
    }

    /// Number of legs.
    pub fn nr_legs(&self) -> usize {
        self.nr_legs
    }

    /// Number of regions.
    pub fn nr_regions(&self) -> u64 {
        self.nr_regions
    }

    fn all_legs(&self) -> LegSet {
        LegSet::first_n(self.nr_legs)
    }

    fn check(&self, region: u64) -> Result<(), FreshnessError> {
        if region < self.nr_regions {
            Ok(())
        } else {
            Err(FreshnessError::RegionOutOfRange(region))
        }
    }

    fn is_stale_unchecked(&self, leg: usize, region: u64) -> bool {
        self.stale.get(leg, region)
    }

    fn set_stale(&mut self, leg: usize, region: u64, stale: bool) {
        let Some(count) = self.stale_regions.get_mut(leg) else {
            return;
        };
        let was = self.stale.set(leg, region, stale);
        if stale && !was {
            *count = count.saturating_add(1);
        } else if !stale && was {
            *count = count.saturating_sub(1);
        }
    }

    /// The legs that hold `region`'s latest acknowledged data.
    pub fn fresh(&self, region: u64) -> Result<LegSet, FreshnessError> {
        self.check(region)?;
        let mut fresh = LegSet::EMPTY;
        for leg in 0..self.nr_legs {
            if !self.is_stale_unchecked(leg, region) {
                fresh = fresh.with(leg);
            }
        }
        Ok(fresh)
    }

    /// Number of regions in which `leg` is stale (0 for no such leg).
    pub fn stale_regions(&self, leg: usize) -> u64 {
        if leg < self.nr_legs {
            self.stale_regions.get(leg).copied().unwrap_or(0)
        } else {
            0
        }
    }

    /// The legs that are fresh in every region: the only legs that may be
    /// the default leg.
    pub fn fresh_everywhere(&self) -> LegSet {
        let mut set = LegSet::EMPTY;
        for leg in 0..self.nr_legs {
            if self.stale_regions(leg) == 0 {
                set = set.with(leg);
            }
        }
        set
    }

    /// A write to `region` completed on the legs in `reached` and on no
    /// other; `covers_region`: it wrote every sector of the region.
    pub fn write_completed(
        &mut self,
        region: u64,
        reached: LegSet,
        covers_region: bool,
    ) -> Result<(), FreshnessError> {
        self.check(region)?;
        let reached = reached.intersection(self.all_legs());
        if reached.is_empty() {
            return Ok(());
        }
        for leg in self.all_legs() {
            if !reached.contains(leg) {
                self.set_stale(leg, region, true);
            } else if covers_region {
                self.set_stale(leg, region, false);
            }
        }
        Ok(())
    }

    /// A resync copy of all of `region` from `source` to `dests` ended:
    /// `failed` are the destinations whose write failed; `read_failed`: a
    /// read of the source failed.
    ///
    /// The copy must not ignore errors (no kcopyd `IGNORE_ERROR`, which
    /// writes whatever its pages held after a failed read): kcopyd then
    /// stops at the first error, so after one every destination may hold
    /// part of the copy, the source's data over its own. A destination that
    /// was fresh stays fresh (the source is fresh too: the data is the
    /// same), a stale one stays stale, and one whose write failed becomes
    /// stale (a failed write leaves its sectors undefined). Only a copy
    /// without errors refreshes its destinations.
    pub fn copy_completed(
        &mut self,
        region: u64,
        source: usize,
        dests: LegSet,
        failed: LegSet,
        read_failed: bool,
    ) -> Result<(), FreshnessError> {
        self.check(region)?;
        let dests = dests.intersection(self.all_legs()).without(source);
        let failed = failed.intersection(dests);
        if self.is_stale_unchecked(source, region) {
            // Whatever it wrote is not the latest data.
            for leg in dests {
                self.set_stale(leg, region, true);
            }
            return Ok(());
        }
        if read_failed || !failed.is_empty() {
            for leg in failed {
                self.set_stale(leg, region, true);
            }
            return Ok(());
        }
        for leg in dests {
            self.set_stale(leg, region, false);
        }
        Ok(())
    }

    /// Only `leg` is known to hold `region`'s data: every other leg is stale
    /// there (a region a new mapping's dirty log says is not in sync).
    pub fn trust_only(&mut self, region: u64, leg: usize) -> Result<(), FreshnessError> {
        self.check(region)?;
        for other in self.all_legs() {
            self.set_stale(other, region, other != leg);
        }
        Ok(())
    }

    /// The leg to copy `region` from: `preferred` (the default leg) if it is
    /// fresh there, else a fresh leg of `healthy` (in dm-raid1's
    /// `choose_mirror()` order from `preferred`), else any fresh leg. `None`
    /// if no leg holds the region's latest data.
    pub fn source_for(
        &self,
        region: u64,
        preferred: usize,
        healthy: LegSet,
    ) -> Result<Option<usize>, FreshnessError> {
        let fresh = self.fresh(region)?;
        if fresh.contains(preferred) {
            return Ok(Some(preferred));
        }
        Ok(fresh
            .intersection(healthy)
            .at_or_before(preferred)
            .or_else(|| fresh.at_or_before(preferred)))
    }

    /// The default leg to move to when `current` is stale somewhere, or is
    /// write-mostly while another leg could be the default: a healthy leg
    /// fresh everywhere (in `choose_mirror()` order), one that is not
    /// write-mostly if there is one; else `None` (keep `current`; reads and
    /// copies avoid it where it is stale). A write-mostly leg becomes the
    /// default only when no other leg holds every region's latest data
    /// (the default is then the leg that has it; with write-behind, the
    /// legs that acknowledge writes are gone).
    pub fn better_default(
        &self,
        current: usize,
        healthy: LegSet,
        write_mostly: LegSet,
    ) -> Option<usize> {
        let everywhere = self.fresh_everywhere();
        let candidates = everywhere
            .intersection(healthy)
            .preferring_not(write_mostly);
        // Staying is right where `current` holds everything and is as good
        // as the best candidates (not write-mostly, or none is better).
        if everywhere.contains(current)
            && (!write_mostly.contains(current) || candidates.difference(write_mostly).is_empty())
        {
            return None;
        }
        candidates.at_or_before(current)
    }

    /// Moves `balancer`'s default leg as [`Freshness::better_default`] says;
    /// returns the new default. Call after every change of freshness,
    /// health or write-mostly legs.
    pub fn keep_default_fresh(
        &self,
        balancer: &mut Balancer,
        healthy: LegSet,
        write_mostly: LegSet,
    ) -> Option<usize> {
        let new = self.better_default(balancer.default_leg(), healthy, write_mostly)?;
        balancer.set_default_leg(new).ok()?;
        Some(new)
    }

    /// Chooses the leg for a read of `region` among the `healthy` legs that
    /// hold its latest data (`None`: no such leg, fail the read).
    pub fn route_read(
        &self,
        balancer: &mut Balancer,
        region: u64,
        healthy: LegSet,
        read: &ReadRequest,
    ) -> Result<Option<usize>, FreshnessError> {
        let candidates = self.fresh(region)?.intersection(healthy);
        Ok(balancer.choose(candidates, read))
    }

    /// The one leg a write to `region` goes to while the region is out of
    /// sync (dm-raid1 writes such regions to the default leg alone, and the
    /// resync copies them later): the leg a resync would copy from.
    pub fn out_of_sync_write_leg(
        &self,
        region: u64,
        default_leg: usize,
        healthy: LegSet,
    ) -> Result<usize, FreshnessError> {
        Ok(self
            .source_for(region, default_leg, healthy)?
            .unwrap_or(default_leg))
    }

    /// What a `default` message is checked against.
    pub fn mirror_state(&self, healthy: LegSet) -> MirrorState {
        MirrorState {
            usable: healthy,
            fresh_everywhere: self.fresh_everywhere(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::vec;
    use std::vec::Vec;

    fn map(nr_legs: usize, nr_regions: u64) -> Freshness<Vec<u64>> {
        let words = Freshness::<Vec<u64>>::words_needed(nr_legs, nr_regions).unwrap();
        Freshness::new(nr_legs, nr_regions, vec![u64::MAX; words]).unwrap()
    }

    fn set(legs: &[usize]) -> LegSet {
        legs.iter().fold(LegSet::EMPTY, |s, l| s.with(*l))
    }

    #[test]
    fn starts_fresh_and_checks_its_arguments() {
        let f = map(3, 130);
        assert_eq!(f.fresh(0), Ok(set(&[0, 1, 2])));
        assert_eq!(f.fresh(129), Ok(set(&[0, 1, 2])));
        assert_eq!(f.fresh(130), Err(FreshnessError::RegionOutOfRange(130)));
        assert_eq!(
            f.fresh(u64::MAX),
            Err(FreshnessError::RegionOutOfRange(u64::MAX))
        );
        assert_eq!(f.fresh_everywhere(), set(&[0, 1, 2]));
        assert_eq!(
            Freshness::new(1, 10, vec![0; 1]).unwrap_err(),
            FreshnessError::InvalidLegCount(1)
        );
        assert_eq!(
            Freshness::new(2, 130, vec![0; 5]).unwrap_err(),
            FreshnessError::StorageSize
        );
        assert_eq!(Freshness::<Vec<u64>>::words_needed(2, 0), Some(0));
    }

    #[test]
    fn a_missed_write_makes_a_leg_stale_until_a_covering_write_or_copy() {
        let mut f = map(2, 8);
        f.write_completed(3, set(&[0]), false).unwrap();
        assert_eq!(f.fresh(3), Ok(set(&[0])));
        assert_eq!(f.stale_regions(1), 1);
        assert_eq!(f.fresh_everywhere(), set(&[0]));
        // A partial write that reaches it does not bring it back...
        f.write_completed(3, set(&[0, 1]), false).unwrap();
        assert_eq!(f.fresh(3), Ok(set(&[0])));
        // ... a covering one does.
        f.write_completed(3, set(&[0, 1]), true).unwrap();
        assert_eq!(f.fresh(3), Ok(set(&[0, 1])));
        assert_eq!(f.stale_regions(1), 0);
        // So does a copy from a fresh leg.
        f.write_completed(5, set(&[1]), true).unwrap();
        assert_eq!(f.fresh(5), Ok(set(&[1])));
        f.copy_completed(5, 1, set(&[0]), LegSet::EMPTY, false)
            .unwrap();
        assert_eq!(f.fresh(5), Ok(set(&[0, 1])));
    }

    #[test]
    fn a_write_that_reached_no_leg_changes_nothing() {
        let mut f = map(2, 4);
        f.write_completed(1, LegSet::EMPTY, true).unwrap();
        assert_eq!(f.fresh(1), Ok(set(&[0, 1])));
        assert_eq!(
            f.write_completed(4, LegSet::EMPTY, true),
            Err(FreshnessError::RegionOutOfRange(4))
        );
    }

    #[test]
    fn failed_copies() {
        let mut f = map(3, 4);
        f.trust_only(2, 0).unwrap();
        assert_eq!(f.fresh(2), Ok(set(&[0])));
        // Leg 2's write failed, so kcopyd stopped: leg 1 may hold only part
        // of the copy and stays stale too.
        f.copy_completed(2, 0, set(&[1, 2]), set(&[2]), false)
            .unwrap();
        assert_eq!(f.fresh(2), Ok(set(&[0])));
        // The source read failed: nothing changes.
        f.copy_completed(2, 0, set(&[1, 2]), LegSet::EMPTY, true)
            .unwrap();
        assert_eq!(f.fresh(2), Ok(set(&[0])));
        // A copy without errors brings both back.
        f.copy_completed(2, 0, set(&[1, 2]), LegSet::EMPTY, false)
            .unwrap();
        assert_eq!(f.fresh(2), Ok(set(&[0, 1, 2])));
        // A failed read leaves fresh destinations fresh (they were sent
        // the same data); a failed write makes its leg stale.
        f.write_completed(3, set(&[0, 1, 2]), true).unwrap();
        f.copy_completed(3, 0, set(&[1, 2]), LegSet::EMPTY, true)
            .unwrap();
        assert_eq!(f.fresh(3), Ok(set(&[0, 1, 2])));
        f.copy_completed(3, 0, set(&[1, 2]), set(&[1]), true)
            .unwrap();
        assert_eq!(f.fresh(3), Ok(set(&[0, 2])));
        // A copy from a stale source spreads staleness, never freshness.
        f.trust_only(1, 2).unwrap();
        f.copy_completed(1, 0, set(&[1]), LegSet::EMPTY, false)
            .unwrap();
        assert_eq!(f.fresh(1), Ok(set(&[2])));
    }

    #[test]
    fn source_and_default_avoid_stale_legs() {
        let mut f = map(3, 4);
        assert_eq!(f.source_for(0, 0, set(&[0, 1, 2])), Ok(Some(0)));
        // The default leg missed a write.
        f.write_completed(0, set(&[1, 2]), false).unwrap();
        assert_eq!(f.source_for(0, 0, set(&[0, 1, 2])), Ok(Some(2)));
        assert_eq!(f.source_for(0, 0, set(&[0, 1])), Ok(Some(1)));
        // No healthy fresh leg: a fresh one all the same.
        assert_eq!(f.source_for(0, 0, set(&[0])), Ok(Some(2)));
        assert_eq!(f.source_for(1, 0, set(&[1])), Ok(Some(0)));
        let none = LegSet::EMPTY;
        assert_eq!(f.better_default(0, set(&[0, 1, 2]), none), Some(2));
        assert_eq!(f.better_default(0, set(&[0, 1]), none), Some(1));
        assert_eq!(f.better_default(0, set(&[0]), none), None);
        assert_eq!(f.better_default(1, set(&[0, 1, 2]), none), None);
        // Not a write-mostly leg while another leg can be the default.
        assert_eq!(f.better_default(0, set(&[0, 1, 2]), set(&[2])), Some(1));
        assert_eq!(f.better_default(0, set(&[0, 2]), set(&[2])), Some(2));
        assert_eq!(f.better_default(2, set(&[0, 1, 2]), set(&[2])), Some(1));
        assert_eq!(f.better_default(2, set(&[0, 2]), set(&[1, 2])), None);
        assert_eq!(f.better_default(1, set(&[0, 1, 2]), set(&[2])), None);
        // Every leg stale somewhere: no better default, sources per region.
        f.write_completed(1, set(&[0]), false).unwrap();
        f.write_completed(2, set(&[0, 1]), false).unwrap();
        assert_eq!(f.fresh_everywhere(), LegSet::EMPTY);
        assert_eq!(f.better_default(0, set(&[0, 1, 2]), none), None);
        assert_eq!(f.better_default(0, set(&[0, 1, 2]), set(&[2])), None);
        assert_eq!(f.source_for(1, 1, set(&[0, 1, 2])), Ok(Some(0)));
        // A region nobody holds.
        f.trust_only(3, 0).unwrap();
        f.write_completed(3, set(&[1]), false).unwrap();
        assert_eq!(f.fresh(3), Ok(LegSet::EMPTY));
        assert_eq!(f.source_for(3, 0, set(&[0, 1, 2])), Ok(None));
    }

    #[test]
    fn counts_follow_the_bits() {
        let mut f = map(2, 200);
        for r in 0..200 {
            f.trust_only(r, 0).unwrap();
        }
        assert_eq!((f.stale_regions(0), f.stale_regions(1)), (0, 200));
        for r in (0..200).step_by(2) {
            f.copy_completed(r, 0, set(&[1]), LegSet::EMPTY, false)
                .unwrap();
        }
        assert_eq!(f.stale_regions(1), 100);
        assert_eq!(f.stale_regions(7), 0);
        assert_eq!(f.fresh(199), Ok(set(&[0])));
        assert_eq!(f.fresh(198), Ok(set(&[0, 1])));
    }
}
