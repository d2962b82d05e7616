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
//! of region bitmap. The slots also hold the lists that find an entry's
//! neighbours, so admission, hand-out and completion cost O(1) plus the
//! entries of one hash bucket (those of the same leg and region, and the
//! odd collision), not O(entries behind): they run under an IRQ-off lock.
//! The read-side question [`Backlog::behind`] is O(legs).

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

/// No slot: the end of a list.
const NIL: u16 = u16::MAX;

/// One backlog entry; storage for the caller to provide ([`Backlog::new`]
/// initialises it).
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
    /// The next entry of this entry's hash bucket; for a free slot, the
    /// next free slot.
    chain_next: u16,
    /// The entries admitted just before and after this one (pending only).
    older: u16,
    newer: u16,
    /// The next entry of the ready queue (`Ready` only).
    ready_next: u16,
    /// Not this entry's: the first entry of hash bucket number (this
    /// slot's index). There are as many buckets as slots.
    bucket_head: u16,
}

impl BehindSlot {
    #[cfg(test)]
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
//
// Every operation on the write path is O(1) or O(its hash bucket), not
// O(entries): entries live in intrusive lists threaded through the slots.
// - Hash buckets: as many as slots; an entry is in the bucket of its (leg,
//   region), so the entries it may overlap (a write never crosses a region)
//   and the other entries of its region and leg are all in its bucket.
// - The admission order: a doubly linked list, oldest first
//   ([`Backlog::settled_before`] looks at its head).
// - The ready queue: `Ready` entries, first in first out.
// - The free list: free slots, through `chain_next`.
//
// INVARIANT: `MIN_LEGS <= nr_legs <= MAX_LEGS`; `1 <= slots.len() <=
// u16::MAX` (so no index is `NIL`); `behind` covers `nr_legs` legs and
// `nr_regions` regions. For every leg `l`: `stats[l].writes` and
// `stats[l].sectors` are the count and sum of its pending slots; bit (`l`,
// `r`) of `behind` is set iff it has a pending slot of region `r`. For
// every pending slot `s`: `s.waits_for` is the number of pending slots of
// the same leg, lower `seq`, overlapping it; `s.state == Waiting` iff
// `s.waits_for > 0` (a slot handed out is `InFlight` and only ever had
// `waits_for == 0`). Every pending slot is in exactly the chain of bucket
// `bucket(leg, region)` and in the admission list (ordered by `seq`,
// `oldest` to `newest`, `older`/`newer` consistent); the ready queue
// (`ready_head` to `ready_tail` through `ready_next`) holds exactly the
// `Ready` slots, once each, `ready` of them; the free list (`free_head` through
// `chain_next`) exactly the free slots, `free` of them. `next_seq` is above
// every pending slot's `seq`.
#[derive(Debug)]
pub struct Backlog<S, B> {
    nr_legs: usize,
    nr_regions: u64,
    max_sectors: u64,
    slots: S,
    behind: RegionBits<B>,
    free: usize,
    free_head: u16,
    ready: usize,
    oldest: u16,
    newest: u16,
    ready_head: u16,
    ready_tail: u16,
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
        let len = slots.len();
        for (index, slot) in slots.iter_mut().enumerate() {
            let next = index.saturating_add(1);
            *slot = BehindSlot {
                chain_next: if next < len {
                    u16::try_from(next).unwrap_or(NIL)
                } else {
                    NIL
                },
                older: NIL,
                newer: NIL,
                ready_next: NIL,
                bucket_head: NIL,
                ..BehindSlot::default()
            };
        }
        Ok(Backlog {
            nr_legs,
            nr_regions,
            max_sectors,
            free: len,
            free_head: 0,
            ready: 0,
            slots,
            behind,
            oldest: NIL,
            newest: NIL,
            ready_head: NIL,
            ready_tail: NIL,
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

    /// The slot at `index` (`None` for `NIL`).
    fn slot(&self, index: u16) -> Option<&BehindSlot> {
        self.slots.get(usize::from(index))
    }

    /// As [`Self::slot`], to change it.
    fn slot_mut(&mut self, index: u16) -> Option<&mut BehindSlot> {
        self.slots.get_mut(usize::from(index))
    }

    /// The hash bucket of `leg`'s entries in `region`.
    fn bucket(&self, leg: u8, region: u64) -> u16 {
        let key = region ^ (u64::from(leg) << 56);
        let hash = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let len = u64::try_from(self.slots.len()).unwrap_or(1);
        hash.checked_rem(len)
            .and_then(|b| u16::try_from(b).ok())
            .unwrap_or(0)
    }

    /// Entries that may be submitted now and were not handed out yet.
    pub fn ready(&self) -> usize {
        self.ready
    }

    /// Appends pending slot `index` to the ready queue.
    fn push_ready(&mut self, index: u16) {
        self.ready = self.ready.saturating_add(1);
        if let Some(s) = self.slot_mut(index) {
            s.ready_next = NIL;
        }
        let tail = self.ready_tail;
        match self.slot_mut(tail) {
            Some(t) => t.ready_next = index,
            None => self.ready_head = index,
        }
        self.ready_tail = index;
    }

    /// When `leg`'s oldest pending entry was admitted (`None`: no entry).
    /// Walks the admission order: for `show`, not the write path.
    pub fn oldest_ns(&self, leg: usize) -> Option<u64> {
        let leg = u8::try_from(leg).ok()?;
        let mut index = self.oldest;
        while let Some(s) = self.slot(index) {
            if s.leg == leg {
                return Some(s.admitted_ns);
            }
            index = s.newer;
        }
        None
    }

    /// Whether every entry admitted before `seq_end` (an
    /// [`Admitted::seq_end`]) has completed: a write's copies, and every
    /// earlier copy, are done. Later admissions do not delay the answer.
    pub fn settled_before(&self, seq_end: u64) -> bool {
        self.slot(self.oldest).is_none_or(|s| s.seq >= seq_end)
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
            let bucket = self.bucket(leg8, region);
            let Some(head) = self.slot(bucket).map(|s| s.bucket_head) else {
                break;
            };
            // Every entry this one may overlap is in its bucket.
            let mut waits_for = 0u32;
            let mut walk = head;
            while let Some(s) = self.slot(walk) {
                if s.overlaps(leg8, sector, nr_sectors) {
                    waits_for = waits_for.saturating_add(1);
                }
                walk = s.chain_next;
            }
            let index = self.free_head;
            let newest = self.newest;
            let seq = self.next_seq;
            let Some(slot) = self.slot_mut(index) else {
                break;
            };
            let next_free = slot.chain_next;
            *slot = BehindSlot {
                state: if waits_for == 0 {
                    SlotState::Ready
                } else {
                    SlotState::Waiting
                },
                leg: leg8,
                nr_sectors,
                waits_for,
                region,
                sector,
                seq,
                admitted_ns: now_ns,
                chain_next: head,
                older: newest,
                newer: NIL,
                ready_next: NIL,
                bucket_head: slot.bucket_head,
            };
            self.free_head = next_free;
            self.free = self.free.saturating_sub(1);
            if let Some(b) = self.slot_mut(bucket) {
                b.bucket_head = index;
            }
            match self.slot_mut(newest) {
                Some(n) => n.newer = index,
                None => self.oldest = index,
            }
            self.newest = index;
            if waits_for == 0 {
                self.push_ready(index);
            }
            if let Some(entry) = admitted.slots.get_mut(leg) {
                *entry = Some(index);
            }
            self.next_seq = self.next_seq.saturating_add(1);
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

    /// Hands out the entry that has been ready longest, marking it in
    /// flight; `None` when there is none.
    pub fn next_ready(&mut self) -> Option<(Ticket, BehindWrite)> {
        let index = self.ready_head;
        let slot = self.slot_mut(index)?;
        slot.state = SlotState::InFlight;
        let next = core::mem::replace(&mut slot.ready_next, NIL);
        let ticket = Ticket {
            slot: index,
            seq: slot.seq,
        };
        let write = BehindWrite {
            leg: usize::from(slot.leg),
            region: slot.region,
            sector: slot.sector,
            nr_sectors: slot.nr_sectors,
        };
        self.ready_head = next;
        self.ready = self.ready.saturating_sub(1);
        if next == NIL {
            self.ready_tail = NIL;
        }
        Some((ticket, write))
    }

    /// The entry `ticket` names, handed out by [`Backlog::next_ready`], has
    /// completed (or will never be submitted: the caller then makes its leg
    /// stale in the region). Later entries it held back may now be ready.
    pub fn complete(&mut self, ticket: Ticket) -> Result<Completed, BacklogError> {
        let index = ticket.slot;
        let done = match self.slot(index) {
            Some(s) if s.state == SlotState::InFlight && s.seq == ticket.seq => *s,
            _ => return Err(BacklogError::UnknownTicket),
        };
        // One walk of the bucket: unlink the entry, release the later
        // entries it held back, and see whether its leg has another entry in
        // its region.
        let bucket = self.bucket(done.leg, done.region);
        let mut region_caught_up = true;
        let mut prev = NIL;
        let mut walk = self.slot(bucket).map_or(NIL, |b| b.bucket_head);
        while let Some(s) = self.slot(walk).copied() {
            let next = s.chain_next;
            if walk == index {
                match self.slot_mut(prev) {
                    Some(p) => p.chain_next = next,
                    None => {
                        if let Some(b) = self.slot_mut(bucket) {
                            b.bucket_head = next;
                        }
                    }
                }
                walk = next;
                continue;
            }
            if s.leg == done.leg && s.region == done.region {
                region_caught_up = false;
            }
            if s.seq > done.seq && s.overlaps(done.leg, done.sector, done.nr_sectors) {
                let mut now_ready = false;
                if let Some(m) = self.slot_mut(walk) {
                    m.waits_for = m.waits_for.saturating_sub(1);
                    if m.waits_for == 0 && m.state == SlotState::Waiting {
                        m.state = SlotState::Ready;
                        now_ready = true;
                    }
                }
                if now_ready {
                    self.push_ready(walk);
                }
            }
            prev = walk;
            walk = next;
        }
        // Out of the admission order.
        match self.slot_mut(done.older) {
            Some(o) => o.newer = done.newer,
            None => self.oldest = done.newer,
        }
        match self.slot_mut(done.newer) {
            Some(n) => n.older = done.older,
            None => self.newest = done.older,
        }
        let free_head = self.free_head;
        if let Some(s) = self.slot_mut(index) {
            *s = BehindSlot {
                chain_next: free_head,
                older: NIL,
                newer: NIL,
                ready_next: NIL,
                bucket_head: s.bucket_head,
                ..BehindSlot::default()
            };
        }
        self.free_head = index;
        self.free = self.free.saturating_add(1);
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
            check_lists(b)?;
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

    /// The lists threaded through the slots hold exactly what the slots
    /// say (the type invariant), found by brute force.
    fn check_lists(b: &TestBacklog) -> Result<(), TestCaseError> {
        let n = b.slots.len();
        let walk = |start: u16, next: &dyn Fn(&BehindSlot) -> u16| {
            let mut seen = Vec::new();
            let mut i = start;
            while i != NIL {
                seen.push(usize::from(i));
                assert!(seen.len() <= n, "a list loops");
                i = next(&b.slots[usize::from(i)]);
            }
            seen
        };
        let pending: Vec<usize> = (0..n).filter(|&i| b.slots[i].is_pending()).collect();
        // Free list: the free slots, once each.
        let mut free = walk(b.free_head, &|s| s.chain_next);
        free.sort_unstable();
        let want: Vec<usize> = (0..n).filter(|&i| !b.slots[i].is_pending()).collect();
        prop_assert_eq!(&free, &want);
        prop_assert_eq!(b.free, want.len());
        // Buckets: each pending slot in its own bucket, once.
        let mut chained = Vec::new();
        for bucket in 0..n {
            for i in walk(b.slots[bucket].bucket_head, &|s| s.chain_next) {
                let s = &b.slots[i];
                prop_assert!(s.is_pending());
                prop_assert_eq!(usize::from(b.bucket(s.leg, s.region)), bucket);
                chained.push(i);
            }
        }
        chained.sort_unstable();
        prop_assert_eq!(&chained, &pending);
        // Admission order: every pending slot, by rising seq, both ways.
        let order = walk(b.oldest, &|s| s.newer);
        let mut by_seq = pending.clone();
        by_seq.sort_by_key(|&i| b.slots[i].seq);
        prop_assert_eq!(&order, &by_seq);
        let mut back = walk(b.newest, &|s| s.older);
        back.reverse();
        prop_assert_eq!(&back, &by_seq);
        // Ready queue: the Ready slots, once each; waits_for by brute force.
        let mut ready = walk(b.ready_head, &|s| s.ready_next);
        prop_assert_eq!(
            ready.last().copied(),
            (b.ready_tail != NIL).then(|| usize::from(b.ready_tail))
        );
        prop_assert_eq!(ready.len(), b.ready());
        ready.sort_unstable();
        let want: Vec<usize> = (0..n)
            .filter(|&i| b.slots[i].state == SlotState::Ready)
            .collect();
        prop_assert_eq!(&ready, &want);
        for &i in &pending {
            let s = &b.slots[i];
            let earlier = pending
                .iter()
                .filter(|&&j| {
                    let o = &b.slots[j];
                    o.seq < s.seq && o.overlaps(s.leg, s.sector, s.nr_sectors)
                })
                .count();
            prop_assert_eq!(s.waits_for as usize, earlier);
            prop_assert_eq!(s.state == SlotState::Waiting, earlier > 0);
        }
        Ok(())
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
