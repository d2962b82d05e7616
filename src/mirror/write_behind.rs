// SPDX-License-Identifier: GPL-2.0

//! Write-behind: writes acknowledged once the legs that are not
//! write-mostly have them, copied to the write-mostly legs afterwards from
//! the target's own buffers (`crate::mcore::write_behind` keeps the books).
//!
//! What holds, and why:
//!
//! - **Acknowledgement.** A write is acknowledged when every leg that is not
//!   write-mostly completed it (with its FUA and preflush flags) and its
//!   region is marked in the dirty log. Its copy for a write-mostly leg is
//!   admitted to the backlog before that, so a read issued after the
//!   acknowledgement never goes to a leg the write is behind on.
//! - **A write those legs all missed.** Only its copies hold it: it is
//!   acknowledged once they and every earlier copy are written and a
//!   healthy leg of them flushed its cache, and fails with EIO if none is
//!   left (`end_copy_waits`). Without `handle_errors`, that is; with it the
//!   write is held for dmeventd, as dm-raid1 holds a failed write.
//! - **Bound.** At `max_write_behind` sectors behind on a leg (or when the
//!   backlog has no free slot, or a copy cannot be allocated without
//!   sleeping), a write waits in `behind_waiting`, in order, until
//!   completions make room. It is never dropped and never written around
//!   the backlog (that could overtake an earlier copy on the lagging leg).
//! - **Order.** The backlog hands a copy out only after every earlier copy
//!   of the same leg that overlaps it completed.
//! - **Regions.** Each copy holds a pending write in its region
//!   ([`PendingRef`]), counted before the copy is admitted: the region
//!   stays dirty in the log, and out of recovery, until the copy is on its
//!   leg. After a crash the resync copies it from the default leg, which
//!   has every write whose copy was behind (while copies are behind on the
//!   default leg itself, after a message ended its write_mostly, the
//!   regions they are in are dirty and out of recovery, and writes to an
//!   out-of-sync region wait for them: `MirrorSet::dispatch_nosync`). Not a
//!   write only its copies hold (above): the log says that a region is out
//!   of sync, not which leg has its latest data, so after a crash or a
//!   reload the resync writes the default leg's older data over it, as
//!   dm-raid1 does to a write its default leg failed without
//!   `handle_errors`. lvm2's tables have `handle_errors`.
//! - **Failure of a copy.** The leg fails (an event with `handle_errors`),
//!   it is stale in the region, and the region is marked out of sync before
//!   its pending write is released.
//! - **Flush and FUA.** With write-behind on, an empty flush goes to the
//!   legs that are not write-mostly only, and a write's copy for a
//!   write-mostly leg carries neither FUA nor a preflush: a completed flush
//!   makes acknowledged data durable on the legs that acknowledge writes,
//!   not on the lagging leg (DRBD's protocol A answers the same way; md
//!   raid1 waits for the write-mostly device's flush, which costs a round
//!   trip on a WAN for every flush).
//! - **No leg to acknowledge.** With no healthy leg that is not
//!   write-mostly, writes wait until the backlog is empty and then go to
//!   every leg, as without write-behind.
//! - **Suspend and destructor.** `postsuspend` and `stop` wait until the
//!   backlog is empty and the last copy's completion is done.

use super::{BioRecord, MirrorSet};
use crate::dm::{
    self,
    buffer_io::{BufferCompletion, BufferIos, IoBuffer},
    region_hash::PendingRef,
    BioKind, BioList, OpFlags, OwnedBio, Status,
};
use crate::mcore::{
    legs::{LegSet, MAX_LEGS},
    status::LegErrors,
    write_behind::{Admitted, Backlog, BacklogError, BehindSlot, BehindStats, Ticket},
    write_mostly::{copy_legs, lease_candidates, read_candidates, WriteBehindConfig},
};
use core::sync::atomic::Ordering;
use kernel::{alloc::KVVec, error::code::ENOMEM, prelude::*};

/// Backlog slots per mirror set: how many copies may be behind at once,
/// over all write-mostly legs (md's default write-behind is 256 writes).
const BEHIND_SLOTS: usize = 1024;

/// Copies ready at which `map` wakes the worker at once rather than at the
/// next tick: a quarter of the slots, reached within a tick only above 64k
/// writes a second (HZ=250), so that a fast writer does not fill the slots
/// and wait. (A sixteenth cost a sixth of the writes per second at queue
/// depth 1 under QEMU, where a tick's batch stays below it.)
const COPY_BATCH: usize = BEHIND_SLOTS / 4;

/// What a backlog slot holds besides its bookkeeping.
#[derive(Default)]
pub(super) struct BehindEntry {
    /// The copy's data, from admission until it is submitted.
    write: Option<IoBuffer>,
    /// The pending write it holds in its region.
    pending: Option<PendingRef<MirrorSet>>,
}

/// The write-behind state, under the mirror's state lock together with
/// freshness: admission and read routing decide against the same state.
pub(super) struct BehindState {
    pub(super) config: WriteBehindConfig,
    pub(super) backlog: Backlog<KVVec<BehindSlot>, KVVec<u64>>,
    entries: KVVec<BehindEntry>,
    /// Tickets of copies that failed, for the worker (capacity: one per
    /// slot, so pushing never allocates).
    failed: KVVec<Ticket>,
}

impl BehindState {
    /// An empty backlog for `nr_legs` legs and `nr_regions` regions.
    pub(super) fn new(nr_legs: usize, nr_regions: u64, config: WriteBehindConfig) -> Result<Self> {
        let words = Backlog::<KVVec<BehindSlot>, KVVec<u64>>::words_needed(nr_legs, nr_regions)
            .ok_or(ENOMEM)?;
        let bits = KVVec::from_elem(0u64, words, GFP_KERNEL)?;
        let slots = KVVec::from_elem(BehindSlot::default(), BEHIND_SLOTS, GFP_KERNEL)?;
        let backlog = Backlog::new(
            nr_legs,
            nr_regions,
            u64::from(config.max_write_behind()),
            slots,
            bits,
        )
        .map_err(|_| ENOMEM)?;
        let mut entries = KVVec::with_capacity(BEHIND_SLOTS, GFP_KERNEL)?;
        for _ in 0..BEHIND_SLOTS {
            entries.push(BehindEntry::default(), GFP_KERNEL)?;
        }
        Ok(Self {
            config,
            backlog,
            entries,
            failed: KVVec::with_capacity(BEHIND_SLOTS, GFP_KERNEL)?,
        })
    }

    /// The legs a read of `region` may go to, of the `healthy` legs that
    /// hold its latest data (`fresh`): none the write is behind on, and not
    /// a write-mostly leg while another can serve.
    pub(super) fn read_legs(&self, region: u64, fresh: LegSet, healthy: LegSet) -> LegSet {
        let write_mostly = self.config.write_mostly();
        if write_mostly.is_empty() && self.backlog.is_empty() {
            return fresh.intersection(healthy);
        }
        read_candidates(fresh, healthy, self.backlog.behind(region), write_mostly)
    }

    /// The legs a read lease may name, of the `healthy` legs that are
    /// fresh in every region (see [`lease_candidates`]).
    pub(super) fn lease_legs(&self, fresh_everywhere: LegSet, healthy: LegSet) -> LegSet {
        lease_candidates(
            fresh_everywhere,
            healthy,
            self.backlog.behind_anywhere(),
            self.config.write_mostly(),
        )
    }

    /// The legs a write to `region` sends a copy to: the write-mostly
    /// legs, and the legs that are behind there.
    pub(super) fn lagging_legs(&self, region: u64) -> LegSet {
        self.config
            .write_mostly()
            .union(self.backlog.behind(region))
    }

    /// Per-leg figures for `show`: stats and the age of the oldest copy.
    pub(super) fn report(&self, now_ns: u64) -> ([BehindStats; MAX_LEGS], [Option<u64>; MAX_LEGS]) {
        let mut stats = [BehindStats::default(); MAX_LEGS];
        let mut oldest = [None; MAX_LEGS];
        for leg in 0..MAX_LEGS {
            if let Some(s) = stats.get_mut(leg) {
                *s = self.backlog.stats(leg);
            }
            if let Some(o) = oldest.get_mut(leg) {
                *o = self
                    .backlog
                    .oldest_ns(leg)
                    .map(|t| now_ns.saturating_sub(t) / 1_000_000);
            }
        }
        (stats, oldest)
    }
}

/// How a write goes out.
enum WritePlan {
    /// To every leg (no write-behind).
    AllLegs,
    /// To the legs of `sync` (the bio's record says which are behind).
    Legs(LegSet),
    /// Not now: it joins `behind_waiting`.
    Wait,
    /// A bug (a region out of range): fail the write.
    Fail,
}

impl MirrorSet {
    /// Sends writes whose regions are marked, after those already waiting,
    /// in order: once a write waits, the later ones wait behind it.
    pub(super) fn dispatch_writes(&self, mut writes: BioList<Self>) {
        let mut pending = BioList::new();
        {
            let mut q = self.queues.lock();
            pending.append(&mut q.behind_waiting);
            self.behind_waiting_any.store(false, Ordering::Relaxed);
        }
        pending.append(&mut writes);
        let mut wait = false;
        while let Some(bio) = pending.pop() {
            let bio = if wait {
                Err(bio)
            } else {
                self.dispatch_write(bio, true)
            };
            if let Err(bio) = bio {
                wait = true;
                let mut q = self.queues.lock();
                q.behind_waiting.push(bio);
                self.behind_waiting_any.store(true, Ordering::Relaxed);
            }
        }
        self.submit_behind();
    }

    /// `map`: a write to a hot region (`super::hot`), sent as the worker
    /// sends writes: to every leg, or with write-behind to the legs that
    /// acknowledge writes and a copy admitted for the others, which the
    /// worker submits (from `map`, the copy's submission would hold up the
    /// caller, measured at 2.5 times the latency). A write that must wait,
    /// or that would overtake writes already waiting, goes to the worker,
    /// which keeps them in order.
    pub(super) fn dispatch_hot_write(&self, bio: OwnedBio<Self>) {
        // Without the queues' lock: a write the worker queues just after
        // this look is one this write could have come before anyway (the
        // lock would not order them either: neither has been acknowledged).
        let waiting = self.behind_waiting_any.load(Ordering::Relaxed);
        let sent = if waiting {
            Err(bio)
        } else {
            self.dispatch_write(bio, false)
        };
        match sent {
            // Without copies nothing is left for the worker: not waking it
            // is most of what this path saves.
            Ok(None) => {}
            // The copies go at the next tick, with every other copy admitted
            // until then: a worker run per write (a wake-up, and at queue
            // depth 1 a switch to the worker on the writer's CPU before the
            // write completes) halved the writes per second with a fast
            // write-mostly leg. The leg lags by up to a tick more, and by
            // at most COPY_BATCH copies: a fast writer must not fill the
            // backlog within a tick and then wait for room.
            Ok(Some(ready)) if ready >= COPY_BATCH => self.worker.queue(),
            Ok(Some(_)) => self.worker.queue_within(1),
            Err(bio) => self.queue(|q| &mut q.writes, bio),
        }
    }

    /// Sends one write (data or empty flush) or gives it back to wait;
    /// `Ok(Some(n))`: copies of it were admitted to the backlog, which
    /// then held `n` copies ready and not submitted. `exact`: make the
    /// copies for the legs the write lags on as the state says (a look
    /// under the state lock); else (`map`) for the write-mostly legs of
    /// `behind_hint`, without the lock, and a write that lags on another
    /// leg too (one whose write_mostly a message ended, with copies left)
    /// goes to the worker, which looks.
    fn dispatch_write(
        &self,
        mut bio: OwnedBio<Self>,
        exact: bool,
    ) -> Result<Option<usize>, OwnedBio<Self>> {
        let kind = bio.kind();
        let all = self.all_legs();
        let (region, sector, nr_sectors) = (bio.record().region(), bio.sector(), bio.sectors());
        // The legs that get a copy rather than the bio: the write-mostly
        // ones, and any leg still behind in the region (one whose
        // write_mostly a message ended: the bio would overtake its copies).
        let (enabled, lagging) = if exact {
            self.state.peek(|st| {
                (
                    st.behind.config.behind_enabled(),
                    st.behind.lagging_legs(region).intersection(all),
                )
            })
        } else {
            let legs = copy_legs(self.behind_hint.load(Ordering::Relaxed));
            (!legs.is_empty(), legs.intersection(all))
        };
        // Copies are made before taking the IRQ-off lock (no allocation
        // under it), for the write-mostly legs as they were a moment ago;
        // a change in between shows as a missing copy and the write waits.
        // So is each copy's pending write in the region (the region stays
        // marked until the copy is on its leg): counted before the entry
        // exists, so that whoever submits the copy (the worker, while `map`
        // may admit the next write) finds it with the entry.
        let mut copies: [Option<IoBuffer>; MAX_LEGS] = [const { None }; MAX_LEGS];
        let mut holds: [Option<PendingRef<Self>>; MAX_LEGS] = [const { None }; MAX_LEGS];
        if enabled && kind == BioKind::Write {
            for leg in lagging {
                let copy = bio
                    .copy_data(GFP_NOWAIT | __GFP_NOWARN)
                    .ok()
                    .and_then(|buf| IoBuffer::new(buf, GFP_NOWAIT | __GFP_NOWARN).ok());
                if let Some(slot) = copies.get_mut(leg) {
                    *slot = copy;
                }
                if let Some(slot) = holds.get_mut(leg) {
                    *slot = self.rh.hold_pending(&mut bio, region).ok();
                }
            }
        }
        let now_ns = dm::now_ns();
        let (plan, admitted, ready): (WritePlan, Admitted, usize) = {
            let mut st = self.state.lock();
            let healthy = st.usable(self.nr_legs());
            let behind = &mut st.behind;
            let write_mostly = behind.config.write_mostly().intersection(all);
            // An empty flush has no region: it is behind nowhere.
            let lagging = if kind == BioKind::Write {
                behind.lagging_legs(region).intersection(all)
            } else {
                write_mostly
            };
            let sync = all.difference(lagging);
            let active = behind.config.behind_enabled()
                && !write_mostly.is_empty()
                && !sync.intersection(healthy).is_empty();
            let drained = behind.backlog.is_empty();
            let have_copies = lagging.iter().all(|leg| {
                copies.get(leg).is_some_and(Option::is_some)
                    && holds.get(leg).is_some_and(Option::is_some)
            });
            let (plan, admitted) = if !active {
                (
                    if drained {
                        WritePlan::AllLegs
                    } else {
                        WritePlan::Wait
                    },
                    Admitted::default(),
                )
            } else if kind != BioKind::Write {
                // An empty flush: the legs that acknowledge writes.
                (
                    WritePlan::Legs(all.difference(write_mostly)),
                    Admitted::default(),
                )
            } else if !have_copies {
                (
                    if drained {
                        WritePlan::AllLegs
                    } else {
                        WritePlan::Wait
                    },
                    Admitted::default(),
                )
            } else {
                match behind
                    .backlog
                    .admit(lagging, region, sector, nr_sectors, now_ns)
                {
                    Ok(admitted) => {
                        for leg in admitted.legs() {
                            let slot = admitted.slot(leg);
                            if let (Some(entry), Some(copy), Some(hold)) = (
                                slot.and_then(|s| behind.entries.get_mut(s)),
                                copies.get_mut(leg),
                                holds.get_mut(leg),
                            ) {
                                entry.write = copy.take();
                                entry.pending = hold.take();
                            }
                        }
                        (WritePlan::Legs(sync), admitted)
                    }
                    Err(BacklogError::Full) => (WritePlan::Wait, Admitted::default()),
                    Err(_) => (WritePlan::Fail, Admitted::default()),
                }
            };
            (plan, admitted, st.behind.backlog.ready())
        };
        // Unused copies are freed here, outside the lock, and unused
        // pending writes released.
        drop(copies);
        for hold in holds.into_iter().flatten() {
            self.rh.release(hold);
        }
        let copies_ready = (!admitted.legs().is_empty()).then_some(ready);
        match plan {
            WritePlan::AllLegs => self.write_to_all_legs(bio),
            WritePlan::Wait => return Err(bio),
            WritePlan::Fail => bio.end(Status::io_error()),
            WritePlan::Legs(sync) => {
                if kind == BioKind::Write {
                    if let BioRecord::Write {
                        behind, copies_end, ..
                    } = bio.record()
                    {
                        *behind = admitted.legs();
                        *copies_end = admitted.seq_end();
                    }
                } else {
                    *bio.record() = BioRecord::Flush { sent_to: sync };
                }
                let sector = if kind == BioKind::Flush { 0 } else { sector };
                // One leg acknowledges writes (the usual write-behind
                // mirror: a local leg and a remote one): the bio goes there
                // itself, as a remapped bio would, without dm-io's own bio
                // and completion in between.
                let direct = sync
                    .only_member()
                    .filter(|_| kind == BioKind::Write)
                    .and_then(|idx| Some((idx, self.legs.get(idx)?)));
                if let Some((idx, leg)) = direct {
                    let details = bio.save_details();
                    if let BioRecord::Write {
                        one_leg, direct, ..
                    } = bio.record()
                    {
                        *one_leg = u8::try_from(idx).ok();
                        *direct = Some(details);
                    }
                    bio.submit_to(&leg.dev, leg.map_sector(sector));
                    return Ok(copies_ready);
                }
                self.io.write_all(
                    bio,
                    self.legs
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| sync.contains(*i))
                        .map(|(_, leg)| (&leg.dev, leg.map_sector(sector))),
                    super::WRITE_FLAGS,
                );
            }
        }
        Ok(copies_ready)
    }

    /// Submits every copy the backlog may hand out now. Process context
    /// (the worker, or `map`); concurrent callers each get other copies.
    pub(super) fn submit_behind(&self) {
        loop {
            let next = {
                let mut st = self.state.lock();
                let behind = &mut st.behind;
                behind.backlog.next_ready().map(|(ticket, write)| {
                    let copy = behind
                        .entries
                        .get_mut(ticket.slot())
                        .and_then(|e| e.write.take());
                    (ticket, write, copy)
                })
            };
            let Some((ticket, write, copy)) = next else {
                return;
            };
            let submitted = match (copy, self.legs.get(write.leg)) {
                (Some(copy), Some(leg)) => self
                    .buffer_ios
                    .write(
                        &self.target,
                        &self.io,
                        (&leg.dev, leg.map_sector(write.sector)),
                        copy,
                        ticket.to_bits(),
                        OpFlags::default(),
                    )
                    .is_ok(),
                _ => false,
            };
            if !submitted {
                // Nothing reached the leg: as a failed write.
                self.behind_failed(ticket);
            }
        }
    }

    /// A copy failed: the worker finishes it ([`Self::do_behind_failures`]).
    fn behind_failed(&self, ticket: Ticket) {
        // Capacity is one per slot: this never allocates and never fails.
        let _ = self.state.lock().behind.failed.push_within_capacity(ticket);
        self.worker.queue();
    }

    /// Finishes failed copies: the leg fails and is stale in the region,
    /// and the region is marked out of sync before its pending write goes.
    /// Worker only (marking a region out of sync is process context).
    pub(super) fn do_behind_failures(&self) {
        let all = self.all_legs();
        loop {
            let (done, pending) = {
                let mut st = self.state.lock();
                let Some(ticket) = st.behind.failed.pop() else {
                    break;
                };
                let pending = st
                    .behind
                    .entries
                    .get_mut(ticket.slot())
                    .and_then(|e| e.pending.take());
                let done = st.behind.backlog.complete(ticket);
                if let Ok(done) = done {
                    st.in_sync = false;
                    let _ = st.write_completed(
                        self.nr_legs(),
                        done.write.region,
                        all.without(done.write.leg),
                        false,
                    );
                }
                (done, pending)
            };
            if let Ok(done) = done {
                dm_err_limit!(
                    "write-behind to {} failed: region {} out of sync",
                    self.leg_name(done.write.leg),
                    done.write.region
                );
                self.fail_leg(done.write.leg, LegErrors::WRITE);
            }
            if let Some(pending) = pending {
                if let Ok(done) = &done {
                    self.forget_hot(done.write.region);
                }
                self.rh.release_nosync(pending);
            }
            self.behind_progress();
        }
    }

    /// Ends the failed writes that only their copies hold, each once its
    /// copies and every earlier copy are done (later writes do not hold it
    /// up): acknowledged if a leg of its copies is still healthy (a copy
    /// that failed failed its leg) and that leg then flushed its cache, an
    /// I/O error otherwise, never an acknowledgement of data no leg holds.
    /// The flush is what the write-mostly leg does not get for writes the
    /// other legs acknowledge: here it alone holds the write, which may have
    /// carried FUA or a preflush (and all earlier copies are written, so the
    /// flush covers what a preflush asks for too). Worker (or `stop`):
    /// process context, the flush waits.
    pub(super) fn end_copy_waits(&self) {
        let mut waits = BioList::new();
        {
            let mut q = self.queues.lock();
            if q.copy_waits.is_empty() {
                return;
            }
            waits.append(&mut q.copy_waits);
        }
        // The write-mostly legs its copies went to, and the backlog's
        // sequence number after them.
        let copies_of = |bio: &mut OwnedBio<Self>| match bio.record() {
            BioRecord::Write {
                behind, copies_end, ..
            } => (*behind, *copies_end),
            _ => (LegSet::EMPTY, 0),
        };
        let mut keep = BioList::new();
        let mut settled = BioList::new();
        let mut flush = LegSet::EMPTY;
        while let Some(mut bio) = waits.pop() {
            let (behind, copies_end) = copies_of(&mut bio);
            let settled_legs = self.state.peek(|st| {
                st.behind
                    .backlog
                    .settled_before(copies_end)
                    .then(|| behind.intersection(st.usable(self.nr_legs())))
            });
            if let Some(legs) = settled_legs {
                flush = flush.union(legs);
                settled.push(bio);
            } else {
                keep.push(bio);
            }
        }
        if !keep.is_empty() {
            // Only the worker adds to the list: nothing came in between.
            self.queues.lock().copy_waits.append(&mut keep);
        }
        if !flush.is_empty() {
            // `flush_sync` answers a bit per device in the order given.
            let failed = flush.members_at(
                self.io.flush_sync(
                    self.legs
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| flush.contains(*i))
                        .map(|(_, leg)| &leg.dev),
                ),
            );
            for leg in failed {
                self.fail_leg(leg, LegErrors::FLUSH);
            }
        }
        // A leg still healthy now got its copy and flushed it: it was
        // healthy before the flush too (only a full resync, which the worker
        // runs and this is the worker or `stop`, clears errors). One is
        // enough.
        let healthy = self.state.peek(|st| st.usable(self.nr_legs()));
        while let Some(mut bio) = settled.pop() {
            let (behind, _) = copies_of(&mut bio);
            if behind.intersection(healthy).is_empty() {
                dm_err_limit!("write failed on every leg and its write-behind copy: failing I/O");
                bio.end(Status::io_error());
            } else {
                bio.end(Status::ok());
            }
        }
    }

    /// After a copy completed: wake a drain waiting for an empty backlog,
    /// and the worker. At once when the backlog is empty or bios wait for
    /// the copies (writes that found the bound, writes only their copies
    /// hold, discards); otherwise what the completion may have let go (a
    /// copy an earlier overlapping one held back) waits for the next tick,
    /// so that a stream of completions costs a worker run per tick, not
    /// one each.
    fn behind_progress(&self) {
        let drained = self.state.peek(|st| st.behind.backlog.is_empty());
        if drained {
            self.behind_drained.notify_all();
        }
        let waiting = {
            let q = self.queues.lock();
            !q.behind_waiting.is_empty() || !q.copy_waits.is_empty() || !q.discards.is_empty()
        };
        if drained || waiting {
            self.worker.queue();
        } else {
            self.worker.queue_within(1);
        }
    }

    /// Waits until no copy is behind and the last completion is done.
    /// Process context; the worker must be running.
    pub(super) fn drain_behind(&self) {
        {
            let mut st = self.state.lock();
            while !st.behind.backlog.is_empty() {
                st.wait(&self.behind_drained);
            }
        }
        self.buffer_ios.wait_idle();
    }
}

impl BufferCompletion for MirrorSet {
    fn buffer_written(&self, buf: KVVec<u8>, tag: u64, failed: bool) {
        let ticket = Ticket::from_bits(tag);
        if failed {
            self.behind_failed(ticket);
        } else {
            // The region's pending write goes first, so that a drain that
            // sees the backlog empty also finds the regions released.
            let pending = self
                .state
                .lock()
                .behind
                .entries
                .get_mut(ticket.slot())
                .and_then(|e| e.pending.take());
            if let Some(pending) = pending {
                self.rh.release(pending);
            }
            if self.state.lock().behind.backlog.complete(ticket).is_err() {
                dm_err_limit!("write-behind completion for an unknown entry");
            }
            self.behind_progress();
        }
        drop(buf);
    }

    fn buffer_read(&self, buf: KVVec<u8>, tag: u64, failed: bool) {
        self.probe_read_done(buf, tag, failed);
    }

    fn buffer_ios(&self) -> &BufferIos {
        &self.buffer_ios
    }
}
