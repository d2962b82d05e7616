// SPDX-License-Identifier: GPL-2.0

//! Hot regions: regions whose dirty-log mark is known to be on disk, kept
//! marked for a while so that writes to them can be sent from `map`
//! instead of waiting for the worker to mark and flush the log.
//!
//! dm-raid1 sends every write through its worker: the worker counts it
//! pending in the region hash, flushes the dirty log (a no-op unless a
//! region became dirty) and only then submits. For a write to a region
//! that is already dirty on disk, the hop to the worker is the whole cost
//! (under TCG about a third of a QD1 4 KiB write). md's write-intent bitmap
//! avoids it the same way: a bit stays set for a while after its last
//! write (md's `daemon_sleep`), and writes under a set bit go straight to
//! the legs.
//!
//! The worker holds one pending write of its own (a `token`) in the region
//! hash for every hot region, taken before a log flush that succeeded:
//! while the token is held the region stays dirty in the log and in the
//! hash, so a write counted here needs neither. A region leaves the set
//! only with no write of the set in flight, and its token is released
//! after it left (outside the set's lock), so a write that found the
//! region hot always finishes before the region can be marked clean.
//!
//! The set is closed whenever a write must not bypass the worker: a leg or
//! the log failed, the mapping suspends, or writes wait for room in the
//! write-behind backlog (they go in order). A closed set admits no write
//! and hands every idle entry back.

use core::sync::atomic::{AtomicU32, Ordering};

/// Regions the set holds at most. The crash-time cost of a hot region is a
/// resync of it (64 of lvm2's 512 KiB regions: 32 MiB).
pub const HOT_REGIONS: usize = 64;

/// Slots a region may occupy, from its home slot on: a lookup reads this
/// many entries, not the whole set (a region finding them all taken
/// replaces the least recently written of them).
const PROBES: usize = 8;

/// How long a region stays hot after its last write by default, in
/// milliseconds (the `hot_region_idle_ms` module parameter).
pub const HOT_IDLE_MS: u32 = 1000;

/// The largest `hot_region_idle_ms`: a minute.
pub const HOT_IDLE_MS_MAX: u32 = 60_000;

/// A `hot_region_idle_ms` value that is not a number of milliseconds from
/// 0 to [`HOT_IDLE_MS_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadIdleMs;

impl core::fmt::Display for BadIdleMs {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "not a number of milliseconds from 0 to {HOT_IDLE_MS_MAX}"
        )
    }
}

/// Parses the `hot_region_idle_ms` module parameter: empty for the default
/// ([`HOT_IDLE_MS`]), else milliseconds up to [`HOT_IDLE_MS_MAX`]; 0 turns
/// hot regions off (every write goes through the worker, as dm-raid1's).
pub fn parse_idle_ms(value: &str) -> Result<u32, BadIdleMs> {
    if value.is_empty() {
        return Ok(HOT_IDLE_MS);
    }
    super::number::parse_u32(value)
        .filter(|ms| *ms <= HOT_IDLE_MS_MAX)
        .ok_or(BadIdleMs)
}

/// One hot region.
#[derive(Debug)]
struct Entry<T> {
    region: u64,
    /// The pending write that keeps the region marked.
    token: T,
    /// Writes admitted by [`HotRegions::start_write`] and not yet ended.
    in_flight: u32,
    /// When the last write was admitted (or the region became hot).
    last_ns: u64,
    /// Admits no more writes and leaves once idle ([`HotRegions::forget`]).
    forgotten: bool,
}

/// How many threads may be inside `map`'s call to dm-io at once.
///
/// A bio-based target's `map` runs under `submit_bio_noacct`: the bios it
/// submits are parked on the caller's list until `map` returns. dm-io
/// allocates one bio per leg from its client's pool, without a rescuer, so
/// a thread waiting in that pool holds up to `nr_legs - 1` parked bios of
/// it (and one of its `struct io`s). The pool keeps `min_ios` of each.
/// With fewer than `min_ios` bios parked by waiting threads, some bio of
/// the reserve is free or in flight (it will come back), so a waiter always
/// gets one: `(min_ios - 1) / (nr_legs - 1)` writers at once. The worker
/// has no parked bios: it is not under `submit_bio_noacct`.
#[must_use]
pub fn map_writers_max(min_ios: u32, nr_legs: usize) -> u32 {
    let parked = u32::try_from(nr_legs.saturating_sub(1)).unwrap_or(u32::MAX);
    min_ios.saturating_sub(1).checked_div(parked).unwrap_or(0)
}

/// Counts the threads inside `map`'s call to dm-io, up to a limit
/// ([`map_writers_max`]).
#[derive(Debug)]
pub struct MapWriters {
    inside: AtomicU32,
    max: u32,
}

/// One thread counted by [`MapWriters::enter`], until dropped.
#[derive(Debug)]
pub struct MapWriter<'a>(&'a MapWriters);

impl MapWriters {
    /// A limit of `max` at once (0: none may).
    #[must_use]
    pub const fn new(max: u32) -> Self {
        Self {
            inside: AtomicU32::new(0),
            max,
        }
    }

    /// Counts one more writer, or `None` at the limit (the write then goes
    /// to the worker).
    #[must_use]
    pub fn enter(&self) -> Option<MapWriter<'_>> {
        self.inside
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < self.max).then(|| n.saturating_add(1))
            })
            .ok()
            .map(|_| MapWriter(self))
    }

    /// Writers inside now.
    #[must_use]
    pub fn inside(&self) -> u32 {
        self.inside.load(Ordering::Relaxed)
    }
}

impl Drop for MapWriter<'_> {
    fn drop(&mut self) {
        self.0.inside.fetch_sub(1, Ordering::Release);
    }
}

/// Errors of [`HotRegions::end_write`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HotError {
    /// The region has no write of the set in flight (a bug in the caller).
    NotInFlight,
}

/// What [`HotRegions::insert`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Inserted<T> {
    /// The region is hot now; the set keeps the token.
    Hot,
    /// The region is hot now in the slot of the least recently written
    /// region of its window, which had no write in flight: that region and
    /// its token are the caller's to release.
    Replaced(u64, T),
    /// The set did not take it (closed, already hot, or every slot of the
    /// region's window has writes in flight): the token is the caller's to
    /// release.
    Refused(T),
}

/// The hot regions of one mapping, generic over the token that keeps a
/// region marked (the kernel's pending-write reference; anything in tests).
///
/// # Invariants
///
/// At most one entry per region, in one of the [`PROBES`] slots from its
/// home slot; `count` entries. An entry with writes in flight is never
/// removed. A closed set admits no write.
#[derive(Debug)]
pub struct HotRegions<T> {
    slots: [Option<Entry<T>>; HOT_REGIONS],
    count: usize,
    open: bool,
    stats: HotStats,
}

/// Counters for `io_balance show`, since the mapping was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HotStats {
    /// Writes admitted by [`HotRegions::start_write`] (sent from `map`).
    pub map_writes: u64,
    /// Regions that became hot.
    pub made_hot: u64,
    /// Regions handed back.
    pub released: u64,
}

impl<T> Default for HotRegions<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> HotRegions<T> {
    /// An empty, closed set.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            slots: [const { None }; HOT_REGIONS],
            count: 0,
            open: false,
            stats: HotStats {
                map_writes: 0,
                made_hot: 0,
                released: 0,
            },
        }
    }

    /// The counters.
    #[must_use]
    pub fn stats(&self) -> HotStats {
        self.stats
    }

    /// Whether the set admits writes and takes new regions.
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Opens or closes the set. Closing keeps the entries: they leave
    /// through [`HotRegions::take_idle`] once their writes ended.
    pub fn set_open(&mut self, open: bool) {
        self.open = open;
    }

    /// No region is hot.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// How many regions are hot.
    #[must_use]
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether `region` is hot (open or not).
    #[must_use]
    pub fn contains(&self, region: u64) -> bool {
        self.find(region).is_some()
    }

    /// The slot indices a region may occupy: from a home slot, the
    /// Fibonacci hash's top 32 bits scaled to the set's size (regions next
    /// to each other get homes far apart).
    fn window(region: u64) -> impl Iterator<Item = usize> {
        let hash = region.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        let slots = u64::try_from(HOT_REGIONS).unwrap_or(1);
        let home = usize::try_from(hash.saturating_mul(slots) >> 32).unwrap_or(0);
        (0..PROBES).map(move |i| home.wrapping_add(i) % HOT_REGIONS)
    }

    fn find(&self, region: u64) -> Option<usize> {
        Self::window(region).find(|&i| {
            self.slots
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|e| e.region == region)
        })
    }

    fn entry_mut(&mut self, region: u64) -> Option<&mut Entry<T>> {
        let i = self.find(region)?;
        self.slots.get_mut(i).and_then(Option::as_mut)
    }

    /// Admits a write to `region` at `now_ns` if the set is open and the
    /// region hot: the region then stays until [`HotRegions::end_write`].
    /// `false`: the write goes the worker's way.
    pub fn start_write(&mut self, region: u64, now_ns: u64) -> bool {
        if !self.open {
            return false;
        }
        let Some(entry) = self.entry_mut(region).filter(|e| !e.forgotten) else {
            return false;
        };
        let Some(in_flight) = entry.in_flight.checked_add(1) else {
            return false;
        };
        entry.in_flight = in_flight;
        entry.last_ns = entry.last_ns.max(now_ns);
        self.stats.map_writes = self.stats.map_writes.saturating_add(1);
        true
    }

    /// A write [`HotRegions::start_write`] admitted has ended. `Ok(true)`:
    /// the set is closed (or the region forgotten) and this was the
    /// region's last write in flight, so the region can be handed back now.
    pub fn end_write(&mut self, region: u64) -> Result<bool, HotError> {
        let open = self.open;
        let entry = self.entry_mut(region).ok_or(HotError::NotInFlight)?;
        entry.in_flight = entry
            .in_flight
            .checked_sub(1)
            .ok_or(HotError::NotInFlight)?;
        Ok((!open || entry.forgotten) && entry.in_flight == 0)
    }

    /// Makes `region` hot with `token` (whose mark reached disk) at
    /// `now_ns`, if the set is open and the region is not hot (see [`Inserted`]).
    pub fn insert(&mut self, region: u64, token: T, now_ns: u64) -> Inserted<T> {
        if !self.open || self.contains(region) {
            return Inserted::Refused(token);
        }
        let entry = Entry {
            region,
            token,
            in_flight: 0,
            last_ns: now_ns,
            forgotten: false,
        };
        // A free slot of the window, else the least recently written entry
        // with nothing in flight: a writer that moved on leaves the set to
        // the regions it writes now.
        let free = Self::window(region).find(|&i| self.slots.get(i).is_some_and(Option::is_none));
        let victim = || {
            Self::window(region)
                .filter_map(|i| Some((i, self.slots.get(i)?.as_ref()?)))
                .filter(|(_, e)| e.in_flight == 0 && !e.forgotten)
                .min_by_key(|(_, e)| e.last_ns)
                .map(|(i, _)| i)
        };
        let Some(slot) = free.or_else(victim).and_then(|i| self.slots.get_mut(i)) else {
            return Inserted::Refused(entry.token);
        };
        self.stats.made_hot = self.stats.made_hot.saturating_add(1);
        match slot.replace(entry) {
            Some(old) => {
                self.stats.released = self.stats.released.saturating_add(1);
                Inserted::Replaced(old.region, old.token)
            }
            None => {
                self.count = self.count.saturating_add(1);
                Inserted::Hot
            }
        }
    }

    /// `region` is no longer in sync (a write to it failed): it admits no
    /// more writes and leaves as soon as its writes in flight ended, open
    /// set or not. `true` if it may leave now.
    pub fn forget(&mut self, region: u64) -> bool {
        match self.entry_mut(region) {
            Some(e) => {
                e.forgotten = true;
                e.in_flight == 0
            }
            None => false,
        }
    }

    /// Removes one region that may leave at `now_ns` and gives back its
    /// token: no write of the set in flight, and either the set is closed
    /// or the last write is at least `idle_ns` old. `None`: none may.
    pub fn take_idle(&mut self, now_ns: u64, idle_ns: u64) -> Option<(u64, T)> {
        let open = self.open;
        let slot = self.slots.iter_mut().find(|s| {
            s.as_ref().is_some_and(|e| {
                e.in_flight == 0
                    && (!open || e.forgotten || now_ns.saturating_sub(e.last_ns) >= idle_ns)
            })
        })?;
        self.stats.released = self.stats.released.saturating_add(1);
        self.count = self.count.saturating_sub(1);
        slot.take().map(|e| (e.region, e.token))
    }

    /// Removes every region, writes in flight or not: for a mapping being
    /// destroyed, where nothing is in flight any more. Each token goes to
    /// `release`.
    pub fn take_all(&mut self, mut release: impl FnMut(u64, T)) {
        self.open = false;
        for slot in &mut self.slots {
            if let Some(e) = slot.take() {
                self.stats.released = self.stats.released.saturating_add(1);
                self.count = self.count.saturating_sub(1);
                release(e.region, e.token);
            }
        }
    }

    /// Writes of the set in flight, over all regions.
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        self.slots
            .iter()
            .flatten()
            .map(|e| u64::from(e.in_flight))
            .sum()
    }
}

/// Writes the `io_balance show` line of a set with `hot` regions,
/// `open` or not, and `stats`:
/// `hot_regions <hot> max <max> open <0|1> map_writes <n> made_hot <n>
/// released <n>`.
pub fn write_hot_report(
    out: &mut dyn core::fmt::Write,
    hot: usize,
    open: bool,
    stats: &HotStats,
) -> core::fmt::Result {
    writeln!(
        out,
        "hot_regions {hot} max {HOT_REGIONS} open {} map_writes {} made_hot {} released {}",
        u8::from(open),
        stats.map_writes,
        stats.made_hot,
        stats.released
    )
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn closed_set_admits_nothing() {
        let mut hot = HotRegions::new();
        assert_eq!(hot.insert(3, 30u32, 0), Inserted::Refused(30));
        hot.set_open(true);
        assert_eq!(hot.insert(3, 30, 0), Inserted::Hot);
        assert!(hot.start_write(3, 1));
        hot.set_open(false);
        assert!(!hot.start_write(3, 2));
        // In flight: it stays, closed or not.
        assert_eq!(hot.take_idle(u64::MAX, 0), None);
        assert_eq!(hot.end_write(3), Ok(true));
        assert_eq!(hot.take_idle(2, 1_000_000_000), Some((3, 30)));
        assert!(hot.is_empty());
        let stats = hot.stats();
        assert_eq!(
            (stats.map_writes, stats.made_hot, stats.released),
            (1, 1, 1)
        );
        let mut line = String::new();
        write_hot_report(&mut line, hot.len(), hot.is_open(), &stats).unwrap();
        assert_eq!(
            line,
            "hot_regions 0 max 64 open 0 map_writes 1 made_hot 1 released 1\n"
        );
    }

    #[test]
    fn idle_regions_leave_after_the_idle_time() {
        let mut hot = HotRegions::new();
        hot.set_open(true);
        assert_eq!(hot.insert(1, 10u32, 0), Inserted::Hot);
        assert_eq!(hot.insert(2, 20, 0), Inserted::Hot);
        assert!(hot.start_write(2, 500));
        assert_eq!(hot.end_write(2), Ok(false));
        assert_eq!(hot.take_idle(999, 1000), None);
        assert_eq!(hot.take_idle(1000, 1000), Some((1, 10)));
        assert_eq!(hot.take_idle(1499, 1000), None);
        assert_eq!(hot.take_idle(1500, 1000), Some((2, 20)));
    }

    #[test]
    fn full_set_replaces_the_least_recently_written() {
        let mut hot = HotRegions::new();
        hot.set_open(true);
        let mut r = 0u64;
        while hot.len() < HOT_REGIONS && r < 10_000 {
            let _ = hot.insert(r, r, r);
            r += 1;
        }
        assert_eq!(hot.len(), HOT_REGIONS);
        let member = (0..r).find(|&q| hot.contains(q)).unwrap();
        assert_eq!(hot.insert(member, 7, 0), Inserted::Refused(7));
        // Every region in flight: nothing can make room.
        for r in 0..r {
            if hot.contains(r) {
                assert!(hot.start_write(r, 1000));
            }
        }
        assert_eq!(hot.in_flight(), HOT_REGIONS as u64);
        assert_eq!(hot.insert(r, 99, 2000), Inserted::Refused(99));
        // One region idle again: it makes room, and is handed back.
        let in_window = |q: u64| {
            hot.find(q)
                .is_some_and(|i| HotRegions::<u64>::window(r).any(|j| i == j))
        };
        let window: Vec<u64> = (0..r).filter(|&q| in_window(q)).collect();
        let idle = window[0];
        assert_eq!(hot.end_write(idle), Ok(false));
        assert_eq!(hot.insert(r, 99, 2000), Inserted::Replaced(idle, idle));
        assert_eq!(hot.len(), HOT_REGIONS);
        assert!(hot.contains(r) && !hot.contains(idle));
    }

    #[test]
    fn replacement_takes_the_oldest_of_the_window() {
        let home = |r: u64| HotRegions::<u64>::window(r).next();
        let same: Vec<u64> = (1..).filter(|&r| home(r) == home(0)).take(PROBES).collect();
        let mut hot = HotRegions::new();
        hot.set_open(true);
        assert_eq!(hot.insert(0, 0, 50), Inserted::Hot);
        for (t, &r) in same.iter().take(PROBES - 1).enumerate() {
            assert_eq!(hot.insert(r, r, 100 + t as u64), Inserted::Hot);
        }
        // Region 0 written last: the oldest is now same[0].
        assert!(hot.start_write(0, 500));
        assert_eq!(hot.end_write(0), Ok(false));
        let last = same[PROBES - 1];
        assert_eq!(
            hot.insert(last, last, 600),
            Inserted::Replaced(same[0], same[0])
        );
        assert!(hot.len() < HOT_REGIONS);
    }

    #[test]
    fn consecutive_regions_spread() {
        // Regions next to each other (a sequential writer) do not collide:
        // nearly all of 64 consecutive regions fit.
        let mut hot = HotRegions::new();
        hot.set_open(true);
        for r in 1000..1000 + HOT_REGIONS as u64 {
            let _ = hot.insert(r, r, 0);
        }
        assert!(
            hot.len() >= HOT_REGIONS - 4,
            "{} of {HOT_REGIONS}",
            hot.len()
        );
    }

    #[test]
    fn forgotten_regions_admit_nothing_and_leave_when_idle() {
        let mut hot = HotRegions::new();
        hot.set_open(true);
        assert_eq!(hot.insert(4, 40u32, 0), Inserted::Hot);
        assert!(hot.start_write(4, 1));
        assert!(!hot.forget(4));
        assert!(!hot.start_write(4, 2));
        assert_eq!(hot.take_idle(2, 1_000_000_000), None);
        assert_eq!(hot.end_write(4), Ok(true));
        assert_eq!(hot.take_idle(3, 1_000_000_000), Some((4, 40)));
        assert!(!hot.forget(4));
        // An idle one may leave at once; it is never a replacement victim
        // that is handed out twice.
        assert_eq!(hot.insert(5, 50, 0), Inserted::Hot);
        assert!(hot.forget(5));
        assert_eq!(hot.take_idle(0, 1_000_000_000), Some((5, 50)));
    }

    #[test]
    fn idle_ms_parameter() {
        assert_eq!(parse_idle_ms(""), Ok(HOT_IDLE_MS));
        assert_eq!(parse_idle_ms("0"), Ok(0));
        assert_eq!(parse_idle_ms("250"), Ok(250));
        assert_eq!(parse_idle_ms("60000"), Ok(60_000));
        for bad in [
            "60001",
            "-1",
            " 5",
            "5 ",
            "1e3",
            "0x10",
            "abc",
            "99999999999",
        ] {
            assert_eq!(parse_idle_ms(bad), Err(BadIdleMs), "{bad}");
        }
        assert!(BadIdleMs.to_string().contains("0 to 60000"));
    }

    #[test]
    fn map_writers_stay_under_the_reserve() {
        assert_eq!(map_writers_max(16, 2), 15);
        assert_eq!(map_writers_max(16, 3), 7);
        assert_eq!(map_writers_max(16, 9), 1);
        assert_eq!(map_writers_max(1, 2), 0);
        assert_eq!(map_writers_max(0, 2), 0);
        assert_eq!(map_writers_max(16, 1), 0);
        for min_ios in 0..40 {
            for legs in 2..=9usize {
                let max = map_writers_max(min_ios, legs);
                assert!(u64::from(max) * (legs as u64 - 1) < u64::from(min_ios.max(1)));
            }
        }
        let writers = MapWriters::new(2);
        let a = writers.enter();
        let b = writers.enter();
        assert!(a.is_some() && b.is_some());
        assert!(writers.enter().is_none());
        drop(a);
        assert_eq!(writers.inside(), 1);
        assert!(writers.enter().is_some());
        assert_eq!(writers.inside(), 1);
        assert!(MapWriters::new(0).enter().is_none());
    }

    #[test]
    fn end_without_start_is_an_error() {
        let mut hot = HotRegions::<u32>::new();
        assert_eq!(hot.end_write(5), Err(HotError::NotInFlight));
        hot.set_open(true);
        assert_eq!(hot.insert(5, 1, 0), Inserted::Hot);
        assert_eq!(hot.end_write(5), Err(HotError::NotInFlight));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Open(bool),
        Insert(u64),
        Start(u64),
        End(usize),
        TakeIdle(u64),
        Tick(u64),
        Forget(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            any::<bool>().prop_map(Op::Open),
            (0u64..96).prop_map(Op::Insert),
            (0u64..96).prop_map(Op::Start),
            (0usize..8).prop_map(Op::End),
            (0u64..2000).prop_map(Op::TakeIdle),
            (0u64..600).prop_map(Op::Tick),
            (0u64..96).prop_map(Op::Forget),
        ]
    }

    proptest! {
        // Tokens are conserved (each comes back once), a region leaves
        // only with no write in flight, writes are admitted exactly when
        // the set is open and the region hot.
        #[test]
        fn model(ops in proptest::collection::vec(op(), 1..400)) {
            let mut hot = HotRegions::new();
            let mut now = 0u64;
            let mut next_token = 0u64;
            let mut held: BTreeMap<u64, u64> = BTreeMap::new(); // region -> token
            let mut returned = BTreeSet::new();
            let mut in_flight: Vec<u64> = Vec::new();
            let mut forgotten = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Open(o) => hot.set_open(o),
                    Op::Insert(r) => {
                        let token = next_token;
                        next_token += 1;
                        // Refused for sure; otherwise refused only when the
                        // region's window is full of writes in flight.
                        let refuse = !hot.is_open() || held.contains_key(&r);
                        match hot.insert(r, token, now) {
                            Inserted::Hot => {
                                prop_assert!(!refuse);
                                held.insert(r, token);
                            }
                            Inserted::Replaced(old, t) => {
                                prop_assert!(!refuse);
                                prop_assert!(!in_flight.contains(&old));
                                prop_assert!(!forgotten.contains(&old));
                                prop_assert_eq!(held.remove(&old), Some(t));
                                prop_assert!(returned.insert(t));
                                held.insert(r, token);
                            }
                            Inserted::Refused(t) => {
                                prop_assert!(refuse || in_flight.len() + forgotten.len() >= PROBES);
                                prop_assert_eq!(t, token);
                                prop_assert!(returned.insert(t));
                            }
                        }
                    }
                    Op::Start(r) => {
                        let expect = hot.is_open() && held.contains_key(&r) && !forgotten.contains(&r);
                        prop_assert_eq!(hot.start_write(r, now), expect);
                        if expect {
                            in_flight.push(r);
                        }
                    }
                    Op::End(i) => {
                        if in_flight.is_empty() {
                            continue;
                        }
                        let r = in_flight.remove(i % in_flight.len());
                        let last = !in_flight.contains(&r);
                        let leaves = (!hot.is_open() || forgotten.contains(&r)) && last;
                        prop_assert_eq!(hot.end_write(r), Ok(leaves));
                    }
                    Op::TakeIdle(idle) => {
                        while let Some((r, t)) = hot.take_idle(now, idle) {
                            prop_assert!(!in_flight.contains(&r));
                            forgotten.remove(&r);
                            prop_assert_eq!(held.remove(&r), Some(t));
                            prop_assert!(returned.insert(t));
                        }
                    }
                    Op::Tick(d) => now += d,
                    Op::Forget(r) => {
                        let now_free = held.contains_key(&r) && !in_flight.contains(&r);
                        if held.contains_key(&r) {
                            forgotten.insert(r);
                        }
                        prop_assert_eq!(hot.forget(r), now_free);
                    }
                }
                prop_assert_eq!(hot.len(), held.len());
                prop_assert_eq!(hot.in_flight(), in_flight.len() as u64);
                let stats = hot.stats();
                prop_assert_eq!(stats.made_hot - stats.released, held.len() as u64);
            }
            let mut rest = Vec::new();
            hot.take_all(|r, t| rest.push((r, t)));
            for (r, t) in rest {
                prop_assert_eq!(held.remove(&r), Some(t));
                prop_assert!(returned.insert(t));
            }
            prop_assert!(held.is_empty());
            prop_assert_eq!(returned.len() as u64, next_token);
        }
    }
}
