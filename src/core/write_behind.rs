// SPDX-License-Identifier: GPL-2.0

//! Write-behind: the bounded backlog of writes that write-mostly legs have
//! not completed yet.
//!
//! A write to a mirror with a write-mostly leg (md's and dm-raid's word) is
//! acknowledged once the other legs have it; the write-mostly leg gets a
//! copy of it later, from this backlog. The backlog is the bookkeeping of
//! those copies, one entry per (write, write-mostly leg):
//!
//! - **Bound.** A leg holds at most `max_sectors` sectors behind (one write
//!   larger than the bound is admitted alone, so no write waits forever) and
//!   the backlog at most as many entries as its storage has slots. A write
//!   that does not fit is refused with [`BacklogError::Full`]: the caller
//!   makes it wait, it is never dropped.
//! - **Order.** An entry is handed out for submission ([`Backlog::next_ready`])
//!   only when every earlier entry of the same leg whose sectors overlap
//!   it has completed, so a later write never overtakes an earlier one on
//!   the lagging leg. Writes that do not overlap go in parallel.
//! - **Freshness.** While a leg has an entry for a region, the leg is behind
//!   there ([`Backlog::behind`]): no read may go to it, and it may not be a
//!   resync source. The caller keeps the region marked in the dirty log
//!   until the entry completed, so a crash resyncs it from a leg that has it.
//!
//! Storage comes from the caller, like [`super::freshness::Freshness`]: a
//! slice of [`BehindSlot`]s (the capacity) and [`Backlog::words_needed`] words
//! of region bitmap. Admission and completion scan the slots up to the
//! highest one in use (new entries take the lowest free slot, so that is
//! about the number of entries behind, not the capacity); the read-side
//! question [`Backlog::behind`] is O(legs).

use core::ops::DerefMut;

use super::legs::{LegSet, MAX_LEGS, MIN_LEGS};
use super::region_bits::RegionBits;

/// Why a [`Backlog`] operation was refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BacklogError {
    /// A mirror set has `MIN_LEGS..=MAX_LEGS` legs.
    InvalidLegCount(usize),
    /// The bitmap storage does not have [`Backlog::words_needed`] words, or
    /// there are no slots, or more than `u16::MAX` of them.
    StorageSize,
    /// A region index at or past the region count: a bug in the caller.
    RegionOutOfRange(u64),
    /// A write of no sectors, or one whose end overflows.
    InvalidRange,
    /// The write does not fit under the bound now: wait for completions.
    Full,
    /// A ticket that names no pending entry: a bug in the caller.
    UnknownTicket,
}

/// Where an entry is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SlotState {
    /// No entry.
    #[default]
    Free,
    /// Admitted; an earlier overlapping entry of its leg has not completed.
    Waiting,
    /// May be submitted; not handed out yet.
    Ready,
    /// Handed out by [`Backlog::next_ready`], not completed yet.
    InFlight,
}

/// One backlog entry; storage for the caller to provide (`Default` is free).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BehindSlot {
    state: SlotState,
    leg: u8,
    nr_sectors: u32,
    /// Earlier overlapping entries of the same leg not completed yet.
    waits_for: u32,
    region: u64,
    sector: u64,
    seq: u64,
    admitted_ns: u64,
}

impl BehindSlot {
    fn is_pending(&self) -> bool {
        self.state != SlotState::Free
    }

    fn overlaps(&self, leg: u8, sector: u64, nr_sectors: u32) -> bool {
        let end = sector.saturating_add(u64::from(nr_sectors));
        let own_end = self.sector.saturating_add(u64::from(self.nr_sectors));
        self.leg == leg && self.sector < end && sector < own_end
    }
}

/// Names one pending entry: returned by [`Backlog::next_ready`], given back
/// to [`Backlog::complete`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    slot: u16,
    seq: u64,
}

impl Ticket {
    /// The entry's slot, `0..capacity`: where the caller keeps what belongs
    /// to the entry (its copy of the data), as [`Admitted::slot`] said.
    pub fn slot(&self) -> usize {
        usize::from(self.slot)
    }

    /// The ticket as one word, for an I/O's context. The sequence number
    /// keeps its low 48 bits: a backlog reaches 2^48 admissions after 8.9
    /// years at a million writes a second.
    pub fn to_bits(self) -> u64 {
        (self.seq << 16) | u64::from(self.slot)
    }

    /// The ticket [`Ticket::to_bits`] gave.
    pub fn from_bits(bits: u64) -> Ticket {
        Ticket {
            slot: (bits & 0xffff) as u16,
            seq: bits >> 16,
        }
    }
}

/// The slots [`Backlog::admit`] gave a write, one per leg.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Admitted {
    slots: [Option<u16>; MAX_LEGS],
    seq_end: u64,
}

impl Admitted {
    /// The slot of `leg`'s entry, if the write was admitted for it.
    pub fn slot(&self, leg: usize) -> Option<usize> {
        self.slots.get(leg).copied().flatten().map(usize::from)
    }

    /// Above the sequence number of every entry admitted up to and with
    /// this write: [`Backlog::settled_before`] tells when they are all done.
    pub fn seq_end(&self) -> u64 {
        self.seq_end
    }

    /// The legs the write was admitted for.
    pub fn legs(&self) -> LegSet {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.is_some())
            .fold(LegSet::EMPTY, |set, (leg, _)| set.with(leg))
    }
}

/// What to submit for a ticket: `nr_sectors` at `sector` (the mirror's
/// sector, before the leg's offset) to `leg`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BehindWrite {
    /// The write-mostly leg.
    pub leg: usize,
    /// The write's region.
    pub region: u64,
    /// First sector, in the mirror's address space.
    pub sector: u64,
    /// Length in sectors.
    pub nr_sectors: u32,
}

/// A completed entry: what it was and whether its leg caught up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completed {
    /// What was written.
    pub write: BehindWrite,
    /// The leg has no other entry for the region: it is no longer behind
    /// there.
    pub region_caught_up: bool,
    /// The leg has no entry left at all.
    pub leg_caught_up: bool,
}

/// How far one leg is behind, for `show`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BehindStats {
    /// Entries not completed.
    pub writes: u32,
    /// Their sectors.
    pub sectors: u64,
    /// The most sectors behind since the last reset.
    pub peak_sectors: u64,
    /// The most entries behind since the last reset.
    pub peak_writes: u32,
    /// Entries admitted since the last reset.
    pub admitted: u64,
    /// Admissions refused at the bound ([`BacklogError::Full`]) since the
    /// last reset: how often a write had to wait.
    pub waits: u64,
}

/// The write-behind backlog of a mirror set. See the module documentation.
// INVARIANT: `MIN_LEGS <= nr_legs <= MAX_LEGS`; `1 <= slots.len() <=
// u16::MAX`; `behind` covers `nr_legs` legs and `nr_regions` regions. For
// every leg `l`: `stats[l].writes` and `stats[l].sectors` are the count and
// sum of its pending slots; bit (`l`, `r`) of `behind` is set iff it has a
// pending slot of region `r`. For every
// pending slot `s`: `s.waits_for` is the number of pending slots of the
// same leg, lower `seq`, overlapping it; `s.state == Waiting` iff
// `s.waits_for > 0` (a slot handed out is `InFlight` and only ever had
// `waits_for == 0`). `ready` is the number of `Ready` slots, `free` of
// `Free` ones; `next_seq` is above every pending slot's `seq`. Every
// pending slot's index is below `high`, and `high == 0` or slot `high - 1`
// is pending.
#[derive(Debug)]
pub struct Backlog<S, B> {
    nr_legs: usize,
    nr_regions: u64,
    max_sectors: u64,
    slots: S,
    behind: RegionBits<B>,
    free: usize,
    ready: usize,
    high: usize,
    next_seq: u64,
    stats: [BehindStats; MAX_LEGS],
}

impl<S, B> Backlog<S, B>
where
    S: DerefMut<Target = [BehindSlot]>,
    B: DerefMut<Target = [u64]>,
{
    /// Words of region bitmap for `nr_legs` legs and `nr_regions` regions;
    /// `None` if that does not fit in `usize`.
    pub fn words_needed(nr_legs: usize, nr_regions: u64) -> Option<usize> {
        RegionBits::<B>::words_needed(nr_legs, nr_regions)
    }

    /// An empty backlog with a bound of `max_sectors` per leg, over `slots`
    /// and `bits` (both cleared).
    pub fn new(
        nr_legs: usize,
        nr_regions: u64,
        max_sectors: u64,
        mut slots: S,
        bits: B,
    ) -> Result<Self, BacklogError> {
        if !(MIN_LEGS..=MAX_LEGS).contains(&nr_legs) {
            return Err(BacklogError::InvalidLegCount(nr_legs));
        }
        if slots.is_empty() || slots.len() > usize::from(u16::MAX) {
            return Err(BacklogError::StorageSize);
        }
        let behind = RegionBits::new(nr_legs, nr_regions, bits).ok_or(BacklogError::StorageSize)?;
        slots.fill(BehindSlot::default());
        Ok(Backlog {
            nr_legs,
            nr_regions,
            max_sectors,
            free: slots.len(),
            slots,
            behind,
            ready: 0,
            high: 0,
            next_seq: 0,
            stats: [BehindStats::default(); MAX_LEGS],
        })
    }

    /// The bound, in sectors per leg.
    pub fn max_sectors(&self) -> u64 {
        self.max_sectors
    }

    /// Changes the bound; pending entries stay (a lower bound only makes
    /// new writes wait longer).
    pub fn set_max_sectors(&mut self, max_sectors: u64) {
        self.max_sectors = max_sectors;
    }

    /// Number of entry slots.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Whether no leg is behind anywhere.
    pub fn is_empty(&self) -> bool {
        self.free == self.slots.len()
    }

    /// Whether `leg` has no entry.
    pub fn leg_is_idle(&self, leg: usize) -> bool {
        self.stats.get(leg).is_none_or(|s| s.writes == 0)
    }

    /// The legs with an entry: behind in some region.
    pub fn behind_anywhere(&self) -> LegSet {
        let mut legs = LegSet::EMPTY;
        for leg in 0..self.nr_legs {
            if !self.leg_is_idle(leg) {
                legs = legs.with(leg);
            }
        }
        legs
    }

    /// How far `leg` is behind (zero for no such leg).
    pub fn stats(&self, leg: usize) -> BehindStats {
        if leg < self.nr_legs {
            self.stats.get(leg).copied().unwrap_or_default()
        } else {
            BehindStats::default()
        }
    }

    /// Forgets the peaks and counters (not what is pending).
    pub fn reset_stats(&mut self) {
        for s in &mut self.stats {
            *s = BehindStats {
                writes: s.writes,
                sectors: s.sectors,
                peak_sectors: s.sectors,
                peak_writes: s.writes,
                admitted: 0,
                waits: 0,
            };
        }
    }

    /// The slots that may be pending: up to the highest one in use.
    fn used(&self) -> &[BehindSlot] {
        self.slots.get(..self.high).unwrap_or(&[])
    }

    /// As [`Self::used`], to change them.
    fn used_mut(&mut self) -> &mut [BehindSlot] {
        let high = self.high;
        self.slots.get_mut(..high).unwrap_or(&mut [])
    }

    /// When `leg`'s oldest pending entry was admitted (`None`: no entry).
    pub fn oldest_ns(&self, leg: usize) -> Option<u64> {
        let leg = u8::try_from(leg).ok()?;
        self.used()
            .iter()
            .filter(|s| s.is_pending() && s.leg == leg)
            .map(|s| s.admitted_ns)
            .min()
    }

    /// Whether every entry admitted before `seq_end` (an
    /// [`Admitted::seq_end`]) has completed: a write's copies, and every
    /// earlier copy, are done. Later admissions do not delay the answer.
    pub fn settled_before(&self, seq_end: u64) -> bool {
        !self
            .used()
            .iter()
            .any(|s| s.is_pending() && s.seq < seq_end)
    }

    /// The legs that are behind in `region` (empty for a region out of
    /// range).
    pub fn behind(&self, region: u64) -> LegSet {
        let mut set = LegSet::EMPTY;
        if region >= self.nr_regions {
            return set;
        }
        for leg in 0..self.nr_legs {
            if self.behind.get(leg, region) {
                set = set.with(leg);
            }
        }
        set
    }

    /// Whether `nr_sectors` more fit under `leg`'s bound.
    fn fits(&self, leg: usize, nr_sectors: u32) -> bool {
        let Some(s) = self.stats.get(leg) else {
            return false;
        };
        s.writes == 0 || s.sectors.saturating_add(u64::from(nr_sectors)) <= self.max_sectors
    }

    /// Admits a write of `nr_sectors` at `sector` in `region` for each leg
    /// of `legs`: all of them or, with [`BacklogError::Full`], none. Hand
    /// the entries out with [`Backlog::next_ready`]; the result says which
    /// slot each leg's entry has.
    pub fn admit(
        &mut self,
        legs: LegSet,
        region: u64,
        sector: u64,
        nr_sectors: u32,
        now_ns: u64,
    ) -> Result<Admitted, BacklogError> {
        if region >= self.nr_regions {
            return Err(BacklogError::RegionOutOfRange(region));
        }
        if nr_sectors == 0 || sector.checked_add(u64::from(nr_sectors)).is_none() {
            return Err(BacklogError::InvalidRange);
        }
        let legs = legs.intersection(LegSet::first_n(self.nr_legs));
        if self.free < legs.len() || legs.iter().any(|leg| !self.fits(leg, nr_sectors)) {
            for leg in legs {
                if let Some(s) = self.stats.get_mut(leg) {
                    s.waits = s.waits.saturating_add(1);
                }
            }
            return Err(BacklogError::Full);
        }
        let mut admitted = Admitted::default();
        for leg in legs {
            let Ok(leg8) = u8::try_from(leg) else {
                continue;
            };
            let waits_for = self
                .used()
                .iter()
                .filter(|s| s.is_pending() && s.overlaps(leg8, sector, nr_sectors))
                .count();
            // The lowest free slot: one below `high`, or `high` itself.
            let index = self
                .used()
                .iter()
                .position(|s| !s.is_pending())
                .unwrap_or(self.high);
            let Some(slot) = self.slots.get_mut(index) else {
                break;
            };
            self.high = self.high.max(index.saturating_add(1));
            if let Some(entry) = admitted.slots.get_mut(leg) {
                *entry = u16::try_from(index).ok();
            }
            *slot = BehindSlot {
                state: if waits_for == 0 {
                    SlotState::Ready
                } else {
                    SlotState::Waiting
                },
                leg: leg8,
                nr_sectors,
                waits_for: u32::try_from(waits_for).unwrap_or(u32::MAX),
                region,
                sector,
                seq: self.next_seq,
                admitted_ns: now_ns,
            };
            self.next_seq = self.next_seq.saturating_add(1);
            self.free = self.free.saturating_sub(1);
            if waits_for == 0 {
                self.ready = self.ready.saturating_add(1);
            }
            if let Some(s) = self.stats.get_mut(leg) {
                s.writes = s.writes.saturating_add(1);
                s.sectors = s.sectors.saturating_add(u64::from(nr_sectors));
                s.peak_writes = s.peak_writes.max(s.writes);
                s.peak_sectors = s.peak_sectors.max(s.sectors);
                s.admitted = s.admitted.saturating_add(1);
            }
            self.behind.set(leg, region, true);
        }
        admitted.seq_end = self.next_seq;
        Ok(admitted)
    }

    /// Hands out the oldest entry that may be submitted now, marking it in
    /// flight; `None` when there is none.
    pub fn next_ready(&mut self) -> Option<(Ticket, BehindWrite)> {
        if self.ready == 0 {
            return None;
        }
        let (index, slot) = self
            .used_mut()
            .iter_mut()
            .enumerate()
            .filter(|(_, s)| s.state == SlotState::Ready)
            .min_by_key(|(_, s)| s.seq)?;
        slot.state = SlotState::InFlight;
        let ticket = Ticket {
            slot: u16::try_from(index).ok()?,
            seq: slot.seq,
        };
        let write = BehindWrite {
            leg: usize::from(slot.leg),
            region: slot.region,
            sector: slot.sector,
            nr_sectors: slot.nr_sectors,
        };
        self.ready = self.ready.saturating_sub(1);
        Some((ticket, write))
    }

    /// The entry `ticket` names has completed (or will never be submitted:
    /// the caller then makes its leg stale in the region). Later entries it
    /// held back may now be ready.
    pub fn complete(&mut self, ticket: Ticket) -> Result<Completed, BacklogError> {
        let index = usize::from(ticket.slot);
        let done = match self.slots.get(index) {
            Some(s) if s.is_pending() && s.seq == ticket.seq => *s,
            _ => return Err(BacklogError::UnknownTicket),
        };
        if let Some(s) = self.slots.get_mut(index) {
            *s = BehindSlot::default();
        }
        self.free = self.free.saturating_add(1);
        if done.state == SlotState::Ready {
            self.ready = self.ready.saturating_sub(1);
        }
        let mut region_caught_up = true;
        let mut newly_ready = 0usize;
        while self.high > 0
            && self
                .slots
                .get(self.high.saturating_sub(1))
                .is_some_and(|s| !s.is_pending())
        {
            self.high = self.high.saturating_sub(1);
        }
        for s in self.used_mut().iter_mut().filter(|s| s.is_pending()) {
            if s.leg != done.leg {
                continue;
            }
            if s.region == done.region {
                region_caught_up = false;
            }
            if s.seq > done.seq && s.overlaps(done.leg, done.sector, done.nr_sectors) {
                s.waits_for = s.waits_for.saturating_sub(1);
                if s.waits_for == 0 && s.state == SlotState::Waiting {
                    s.state = SlotState::Ready;
                    newly_ready = newly_ready.saturating_add(1);
                }
            }
        }
        self.ready = self.ready.saturating_add(newly_ready);
        let leg = usize::from(done.leg);
        let mut leg_caught_up = false;
        if let Some(s) = self.stats.get_mut(leg) {
            s.writes = s.writes.saturating_sub(1);
            s.sectors = s.sectors.saturating_sub(u64::from(done.nr_sectors));
            leg_caught_up = s.writes == 0;
        }
        if region_caught_up {
            self.behind.set(leg, done.region, false);
        }
        Ok(Completed {
            write: BehindWrite {
                leg,
                region: done.region,
                sector: done.sector,
                nr_sectors: done.nr_sectors,
            },
            region_caught_up,
            leg_caught_up,
        })
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {

    #[test]
    fn tickets_round_trip_through_one_word() {
        for (slot, seq) in [
            (0u16, 0u64),
            (1, 1),
            (u16::MAX, (1 << 48) - 1),
            (77, 123_456_789),
        ] {
            let ticket = Ticket { slot, seq };
            assert_eq!(Ticket::from_bits(ticket.to_bits()), ticket);
        }
    }

    use super::*;
    use proptest::prelude::*;

    type TestBacklog = Backlog<Vec<BehindSlot>, Vec<u64>>;

    fn backlog(nr_legs: usize, nr_regions: u64, max_sectors: u64, slots: usize) -> TestBacklog {
        let words = TestBacklog::words_needed(nr_legs, nr_regions).unwrap();
        Backlog::new(
            nr_legs,
            nr_regions,
            max_sectors,
            vec![BehindSlot::default(); slots],
            vec![0; words],
        )
        .unwrap()
    }

    #[test]
    fn rejects_bad_storage_and_arguments() {
        let words = TestBacklog::words_needed(2, 100).unwrap();
        let slots = || vec![BehindSlot::default(); 4];
        assert_eq!(
            TestBacklog::new(1, 100, 8, slots(), vec![0; words]).unwrap_err(),
            BacklogError::InvalidLegCount(1)
        );
        assert_eq!(
            TestBacklog::new(2, 100, 8, slots(), vec![0; words + 1]).unwrap_err(),
            BacklogError::StorageSize
        );
        assert_eq!(
            TestBacklog::new(2, 100, 8, Vec::new(), vec![0; words]).unwrap_err(),
            BacklogError::StorageSize
        );
        let mut b = backlog(2, 100, 8, 4);
        let one = LegSet::single(1);
        assert_eq!(
            b.admit(one, 100, 0, 8, 0),
            Err(BacklogError::RegionOutOfRange(100))
        );
        assert_eq!(b.admit(one, 0, 0, 0, 0), Err(BacklogError::InvalidRange));
        assert_eq!(
            b.admit(one, 0, u64::MAX, 1, 0),
            Err(BacklogError::InvalidRange)
        );
        assert!(b.is_empty());
    }

    #[test]
    fn a_write_is_behind_until_it_completes() {
        let mut b = backlog(2, 16, 64, 4);
        b.admit(LegSet::single(1), 3, 24, 8, 5).unwrap();
        assert_eq!(b.behind(3), LegSet::single(1));
        assert_eq!(b.behind(2), LegSet::EMPTY);
        assert_eq!(b.oldest_ns(1), Some(5));
        let (ticket, write) = b.next_ready().unwrap();
        assert_eq!(
            write,
            BehindWrite {
                leg: 1,
                region: 3,
                sector: 24,
                nr_sectors: 8
            }
        );
        assert_eq!(b.next_ready(), None);
        assert_eq!(b.behind(3), LegSet::single(1), "in flight is still behind");
        let done = b.complete(ticket).unwrap();
        assert!(done.region_caught_up && done.leg_caught_up);
        assert_eq!(b.behind(3), LegSet::EMPTY);
        assert!(b.is_empty());
        assert_eq!(b.complete(ticket), Err(BacklogError::UnknownTicket));
    }

    #[test]
    fn an_overlapping_write_waits_for_the_earlier_one() {
        let mut b = backlog(2, 16, 64, 8);
        let leg = LegSet::single(1);
        b.admit(leg, 0, 0, 8, 0).unwrap();
        b.admit(leg, 0, 4, 8, 0).unwrap(); // overlaps the first
        b.admit(leg, 1, 16, 8, 0).unwrap(); // does not
        let (first, w) = b.next_ready().unwrap();
        assert_eq!(w.sector, 0);
        let (third, w) = b.next_ready().unwrap();
        assert_eq!(w.sector, 16);
        assert_eq!(b.next_ready(), None, "the overlapping write must wait");
        let done = b.complete(third).unwrap();
        assert!(done.region_caught_up && !done.leg_caught_up);
        assert_eq!(b.next_ready(), None);
        let done = b.complete(first).unwrap();
        assert!(
            !done.region_caught_up,
            "the second write is in region 0 too"
        );
        let (second, w) = b.next_ready().unwrap();
        assert_eq!(w.sector, 4);
        assert!(b.complete(second).unwrap().leg_caught_up);
    }

    #[test]
    fn the_bound_makes_writes_wait_but_a_large_write_goes_alone() {
        let mut b = backlog(3, 16, 16, 8);
        b.admit(LegSet::single(2), 0, 0, 12, 0).unwrap();
        assert_eq!(
            b.admit(LegSet::single(2), 0, 12, 8, 0),
            Err(BacklogError::Full)
        );
        // All or none: leg 1 has room, leg 2 does not.
        assert_eq!(
            b.admit(LegSet::single(1).with(2), 0, 12, 8, 0),
            Err(BacklogError::Full)
        );
        assert!(b.leg_is_idle(1));
        assert_eq!(b.stats(2).waits, 2);
        assert_eq!(b.stats(1).waits, 1);
        let (t, _) = b.next_ready().unwrap();
        b.complete(t).unwrap();
        b.admit(LegSet::single(2), 0, 0, 100, 0).unwrap();
        assert_eq!(b.stats(2).sectors, 100);
        assert_eq!(b.stats(2).peak_sectors, 100);
    }

    #[test]
    fn behind_anywhere_is_the_legs_with_entries() {
        let mut b = backlog(3, 16, 1 << 20, 8);
        assert_eq!(b.behind_anywhere(), LegSet::EMPTY);
        b.admit(LegSet::single(2), 5, 0, 8, 0).unwrap();
        b.admit(LegSet::single(1).with(2), 9, 0, 8, 0).unwrap();
        assert_eq!(b.behind_anywhere(), LegSet::single(1).with(2));
        let (t, _) = b.next_ready().unwrap();
        b.complete(t).unwrap();
        assert_eq!(b.behind_anywhere(), LegSet::single(1).with(2));
        while let Some((t, _)) = b.next_ready() {
            b.complete(t).unwrap();
        }
        assert_eq!(b.behind_anywhere(), LegSet::EMPTY);
    }

    #[test]
    fn the_slots_bound_the_entries() {
        let mut b = backlog(3, 16, 1 << 20, 2);
        b.admit(LegSet::single(1).with(2), 0, 0, 8, 0).unwrap();
        assert_eq!(
            b.admit(LegSet::single(1), 0, 8, 8, 0),
            Err(BacklogError::Full)
        );
        assert_eq!(b.capacity(), 2);
    }

    /// One step of a random sequence.
    #[derive(Clone, Copy, Debug)]
    enum Op {
        Admit {
            legs: u16,
            region: u64,
            offset: u64,
            nr_sectors: u32,
        },
        Submit,
        Complete(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (1u16..8, 0u64..4, 0u64..16, 1u32..12).prop_map(|(legs, region, offset, nr)| {
                Op::Admit {
                    legs,
                    region,
                    offset,
                    nr_sectors: nr,
                }
            }),
            Just(Op::Submit),
            (0usize..64).prop_map(Op::Complete),
        ]
    }

    const REGION_SECTORS: u64 = 16;
    const NR_LEGS: usize = 3;
    const NR_REGIONS: u64 = 4;

    /// An admitted write of one leg, as the model sees it.
    #[derive(Debug)]
    struct Pending {
        leg: usize,
        region: u64,
        sector: u64,
        nr_sectors: u32,
        seq: u64,
        slot: Option<usize>,
        ticket: Option<Ticket>,
    }

    impl Pending {
        fn overlaps(&self, w: &BehindWrite) -> bool {
            self.leg == w.leg
                && self.sector < w.sector + u64::from(w.nr_sectors)
                && w.sector < self.sector + u64::from(self.nr_sectors)
        }
    }

    /// The lagging legs' disks (each sector holds the sequence number of
    /// the write that last reached it) and what they must hold once drained.
    struct Model {
        max_sectors: u64,
        slots: usize,
        pending: Vec<Pending>,
        in_flight: Vec<(Ticket, BehindWrite, u64)>,
        disk: Vec<Vec<u64>>,
        want: Vec<Vec<u64>>,
        seq: u64,
        /// Per admitted write: its number (`seq`) and [`Admitted::seq_end`].
        ends: Vec<(u64, u64)>,
    }

    impl Model {
        fn new(max_sectors: u64, slots: usize) -> Self {
            let size = (NR_REGIONS * REGION_SECTORS) as usize;
            Model {
                max_sectors,
                slots,
                pending: Vec::new(),
                in_flight: Vec::new(),
                disk: vec![vec![0; size]; NR_LEGS],
                want: vec![vec![0; size]; NR_LEGS],
                seq: 1,
                ends: Vec::new(),
            }
        }

        fn fits(&self, legs: LegSet, nr: u32) -> bool {
            self.pending.len() + legs.len() <= self.slots
                && legs.iter().all(|l| {
                    let mine = self.pending.iter().filter(|p| p.leg == l);
                    let (writes, sectors) =
                        mine.fold((0, 0), |(w, s), p| (w + 1, s + u64::from(p.nr_sectors)));
                    writes == 0 || sectors + u64::from(nr) <= self.max_sectors
                })
        }

        fn step(&mut self, b: &mut TestBacklog, op: Op) -> Result<(), TestCaseError> {
            match op {
                Op::Admit {
                    legs,
                    region,
                    offset,
                    nr_sectors,
                } => {
                    let legs = LegSet::from_bits(legs).intersection(LegSet::first_n(NR_LEGS));
                    let sector = region * REGION_SECTORS + offset;
                    let nr = nr_sectors.min((REGION_SECTORS - offset) as u32).max(1);
                    let fits = self.fits(legs, nr);
                    let r = b.admit(legs, region, sector, nr, self.seq);
                    if !fits {
                        prop_assert_eq!(r, Err(BacklogError::Full));
                        return self.check(b);
                    }
                    let admitted = r.unwrap();
                    prop_assert_eq!(admitted.legs(), legs);
                    self.ends.push((self.seq, admitted.seq_end()));
                    for leg in legs {
                        self.pending.push(Pending {
                            leg,
                            region,
                            sector,
                            nr_sectors: nr,
                            seq: self.seq,
                            slot: admitted.slot(leg),
                            ticket: None,
                        });
                        for x in sector..sector + u64::from(nr) {
                            self.want[leg][x as usize] = self.seq;
                        }
                    }
                    self.seq += 1;
                }
                Op::Submit => {
                    if let Some((t, w)) = b.next_ready() {
                        // The oldest not handed out with this leg and range.
                        let p = self
                            .pending
                            .iter_mut()
                            .find(|p| {
                                p.ticket.is_none()
                                    && p.leg == w.leg
                                    && p.sector == w.sector
                                    && p.nr_sectors == w.nr_sectors
                            })
                            .expect("handed out an entry that was not admitted");
                        p.ticket = Some(t);
                        prop_assert_eq!(p.slot, Some(t.slot()), "not the slot admit gave");
                        let seq = p.seq;
                        for q in &self.pending {
                            prop_assert!(
                                q.seq >= seq || !q.overlaps(&w),
                                "write {} overtakes write {}",
                                seq,
                                q.seq
                            );
                        }
                        self.in_flight.push((t, w, seq));
                    }
                }
                Op::Complete(i) => {
                    if !self.in_flight.is_empty() {
                        let (t, w, seq) = self.in_flight.remove(i % self.in_flight.len());
                        let done = b.complete(t).unwrap();
                        prop_assert_eq!(done.write, w);
                        for x in w.sector..w.sector + u64::from(w.nr_sectors) {
                            self.disk[w.leg][x as usize] = seq;
                        }
                        self.pending.retain(|p| p.ticket != Some(t));
                        let others = self
                            .pending
                            .iter()
                            .any(|p| p.leg == w.leg && p.region == w.region);
                        prop_assert_eq!(done.region_caught_up, !others);
                    }
                }
            }
            self.check(b)
        }

        fn check(&self, b: &TestBacklog) -> Result<(), TestCaseError> {
            for leg in 0..NR_LEGS {
                let mine: Vec<_> = self.pending.iter().filter(|p| p.leg == leg).collect();
                let st = b.stats(leg);
                prop_assert_eq!(st.writes as usize, mine.len());
                prop_assert_eq!(
                    st.sectors,
                    mine.iter().map(|p| u64::from(p.nr_sectors)).sum::<u64>()
                );
                prop_assert!(mine.len() <= 1 || st.sectors <= self.max_sectors);
            }
            for region in 0..NR_REGIONS {
                let want = self
                    .pending
                    .iter()
                    .filter(|p| p.region == region)
                    .fold(LegSet::EMPTY, |set, p| set.with(p.leg));
                prop_assert_eq!(b.behind(region), want);
            }
            // A write is settled once its entries and every earlier one
            // completed, whatever was admitted after it.
            for &(write, seq_end) in &self.ends {
                let open = self.pending.iter().any(|p| p.seq <= write);
                prop_assert_eq!(b.settled_before(seq_end), !open, "write {}", write);
            }
            Ok(())
        }
    }

    proptest! {
        /// Against the model: writes reach each lagging leg's disk in
        /// admission order wherever they overlap; the bound holds; a leg is
        /// behind in a region exactly while it has an entry there; a write
        /// is settled exactly when it and every earlier write completed; the
        /// backlog never stalls; and once drained, each disk holds what
        /// applying every admitted write in order gives.
        #[test]
        fn writes_land_in_order_and_the_backlog_drains(
            ops in proptest::collection::vec(op(), 1..200),
            max_sectors in 8u64..40,
            slots in 1usize..12,
        ) {
            let mut b = backlog(NR_LEGS, NR_REGIONS, max_sectors, slots);
            let mut model = Model::new(max_sectors, slots);
            for op in ops {
                model.step(&mut b, op)?;
            }
            let mut steps = 0;
            while !model.pending.is_empty() {
                steps += 1;
                prop_assert!(steps < 10_000, "the backlog stalled");
                let before = model.in_flight.len();
                model.step(&mut b, Op::Submit)?;
                if model.in_flight.len() == before {
                    prop_assert!(!model.in_flight.is_empty(), "entries pending but none can progress");
                    model.step(&mut b, Op::Complete(0))?;
                }
            }
            prop_assert!(b.is_empty());
            prop_assert_eq!(&model.disk, &model.want);
        }
    }
}
