// SPDX-License-Identifier: GPL-2.0

//! The mirror target: `MirrorSet`, in safe Rust on top of `crate::dm`.
//!
//! The same state machine as dm-raid1: `map` remaps reads of in-sync regions
//! to the leg the read policy picks and queues everything else for the
//! worker (`kmirrord`), which runs, in order, region-state updates,
//! recovery (kcopyd from the default leg), reads, writes (through the region
//! hash, to every leg with dm-io) and failures (held for userspace under
//! `handle_errors`, requeued by a noflush suspend).

#![forbid(unsafe_code)]

mod hot;
mod leg;
mod probe;
mod state;
mod write_behind;

use crate::dm::{
    self,
    buffer_io::BufferIos,
    dirty_log::{DirtyLog, DirtyLogCallbacks},
    io::{IoClient, IoCompletion},
    kcopyd::{CopyCompletion, Kcopyd},
    region_hash::{PendingRef, RegionHash, RegionHashCallbacks, RegionState},
    worker::{QueueFlags, Worker, WorkerCallback},
    Args, Bio, BioDetails, BioKind, BioList, CtrError, EndIo, Mapped, OpFlags, OwnedBio, Region,
    Status, StatusType, StatusWriter, Target, TargetOperations,
};
use crate::mcore::{
    freshness::{Freshness, FreshnessError},
    hot_regions::{
        map_writers_max, parse_idle_ms, write_hot_report, HotRegions, MapWriters, HOT_IDLE_MS,
    },
    io_balance::{parse_default_policy, Command, DEFAULT_POLICY_MAX_LEN},
    legs::{LegSet, MAX_LEGS},
    message::{parse_message, Message},
    policy::{Balancer, Completion, CompletionMailbox, ReadRequest},
    status::{self, LegErrors, LegHealth},
    table::{region_count, Features, LegSpec, MirrorTable},
    write_mostly::{write_behind_report, WriteMostlyError},
};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use hot::HotCandidates;
use kernel::{
    alloc::KVVec,
    error::code::{EAGAIN, EINVAL, EIO, ENOMEM},
    new_condvar,
    prelude::*,
    sync::{new_spinlock_irq, CondVar, SpinLockIrq},
};
use leg::Leg;
use state::{StateGuard, StateLock};
use write_behind::BehindState;

/// The dm target type name, as lvm2 and dmsetup know it.
pub(crate) const TARGET_NAME: &CStr = c"mirror";
/// The version of dm-raid1 whose interface this implements (7.3: 1.15.0).
pub(crate) const TARGET_VERSION: [u32; 3] = [1, 15, 0];
/// As dm-raid1: atomic writes pass through to every leg.
pub(crate) const TARGET_FEATURES: u64 = dm::TARGET_ATOMIC_WRITES;

// The parameter's policy words fit the C side's buffer.
const _: () = assert!(DEFAULT_POLICY_MAX_LEN <= crate::dm::param::STRING_PARAM_MAX_LEN);

/// A module parameter's check: a value `parsed` refuses is logged with the
/// parameter's `name` and answered with `-EINVAL` (sysfs keeps the old one).
fn check_param<T, E: core::fmt::Display>(name: &str, parsed: Result<T, E>) -> Result {
    parsed.map(drop).map_err(|e| {
        dm_err!("{}: {}", name, e);
        EINVAL
    })
}

/// The check of the `default_io_balance` module parameter (called at module
/// load and on writes to its sysfs file): a policy as after `io_balance`,
/// or empty for dm-raid1's behaviour.
pub(crate) fn check_default_io_balance(value: &str) -> Result {
    check_param("default_io_balance", parse_default_policy(value))
}

/// The check of the `hot_region_idle_ms` module parameter: empty, or
/// milliseconds from 0 to 60000.
pub(crate) fn check_hot_region_idle_ms(value: &str) -> Result {
    check_param("hot_region_idle_ms", parse_idle_ms(value))
}

/// The flags of a write that its copies to the legs keep (dm-raid1's
/// `do_write()`).
const WRITE_FLAGS: OpFlags = OpFlags::FUA.with(OpFlags::PREFLUSH).with(OpFlags::ATOMIC);

/// A region being resynchronised, and the leg it is copied from.
#[derive(Clone, Copy)]
struct Recovery {
    region: u64,
    source: u8,
}

/// Most regions recovered at once (dm-raid1's `MAX_RECOVERY`).
const MAX_RECOVERY: u32 = 1;

/// Slots for the regions the region hash lets us recover at once.
const RECOVERY_SLOTS: usize = MAX_RECOVERY as usize;

/// Leg health, freshness, the read policy and the set-wide flags, under one
/// lock: the completion paths and the `io_balance` message decide against
/// the same state.
struct LegState {
    balancer: Balancer,
    /// Errors recorded per leg; a leg with any is failed and gets no reads.
    errors: [LegErrors; MAX_LEGS],
    /// Which legs hold each region's latest acknowledged data. Reads,
    /// resync sources and the default leg follow it, not `in_sync`/`errors`.
    freshness: Freshness<KVVec<u64>>,
    /// The first resume has marked what the dirty log says is not in sync
    /// as fresh on the default leg only.
    freshness_from_log: bool,
    /// Copies in flight, with their sources (the default leg may change
    /// while one runs).
    recoveries: [Option<Recovery>; RECOVERY_SLOTS],
    /// Every region is in sync (set by recovery, cleared by a failed write).
    /// dm-raid1's set-wide state, for the status and the events only.
    in_sync: bool,
    /// A leg failed since the last full resync.
    leg_failure: bool,
    /// The dirty log failed to flush: regions can no longer be marked.
    log_failure: bool,
    /// An event is due (raised by the worker: it may sleep).
    event_pending: bool,
    /// Write-mostly legs and the copies they are behind on.
    behind: BehindState,
}

impl LegState {
    /// Legs that may serve reads: not failed.
    fn usable(&self, nr_legs: usize) -> LegSet {
        let mut set = LegSet::EMPTY;
        for (i, e) in self.errors.iter().enumerate().take(nr_legs) {
            if *e == LegErrors::NONE {
                set = set.with(i);
            }
        }
        set
    }

    fn recovery_in_flight(&self) -> bool {
        self.recoveries.iter().any(Option::is_some)
    }

    /// A write to `region` reached the legs in `reached`: freshness follows,
    /// and the default leg moves off a leg that went stale. `Err`: a region
    /// out of range (a bug; logged by the caller, outside the lock).
    fn write_completed(
        &mut self,
        nr_legs: usize,
        region: u64,
        reached: LegSet,
        covers: bool,
    ) -> Result<(), FreshnessError> {
        let done = self.freshness.write_completed(region, reached, covers);
        let healthy = self.usable(nr_legs);
        let write_mostly = self.behind.config.write_mostly();
        self.freshness
            .keep_default_fresh(&mut self.balancer, healthy, write_mostly);
        done
    }
}

/// Work for the worker, and the suspend state that decides about held bios.
struct Queues {
    reads: BioList<MirrorSet>,
    writes: BioList<MirrorSet>,
    failures: BioList<MirrorSet>,
    holds: BioList<MirrorSet>,
    /// Discards waiting for the copies in flight to end: a discard and a
    /// copy of the same blocks must not overlap, or the legs diverge.
    discards: BioList<MirrorSet>,
    /// Discards queued for the worker and not yet sent.
    discards_queued: u32,
    /// Discards sent to the legs and not completed.
    discards_in_flight: u32,
    /// Writes whose regions are marked, waiting for room in the
    /// write-behind backlog (or for it to drain), oldest first.
    behind_waiting: BioList<MirrorSet>,
    /// Writes to out-of-sync regions whose one leg is behind there
    /// (`MirrorSet::dispatch_nosync`), each tried again on its own (none of
    /// them acknowledged: their order among themselves is free).
    nosync_waiting: BioList<MirrorSet>,
    /// Failed writes that only their write-behind copies hold (every leg
    /// they were sent to missed them), until those copies and every earlier
    /// one are done (`MirrorSet::end_copy_waits`).
    copy_waits: BioList<MirrorSet>,
    suspended: bool,
}

/// A mirror set.
#[pin_data]
pub(crate) struct MirrorSet {
    // Dropped first: destroying the queue drains the worker.
    worker: Worker<MirrorSet>,
    kcopyd: Kcopyd,
    io: IoClient,
    rh: RegionHash<MirrorSet>,
    // Dropped after everything that could still do I/O to them.
    legs: KVec<Leg>,
    target: Target<Self>,
    region_size: u32,
    nr_regions: u64,
    features: Features,
    /// Every path that changes what reads may do takes this lock, which
    /// ends the read lease first (`state`).
    #[pin]
    state: StateLock,
    /// Completions of user reads, accounted without `state`'s lock: the
    /// next holder of the lock folds them into the balancer before it
    /// decides anything with it.
    completions: CompletionMailbox,
    #[pin]
    queues: SpinLockIrq<Queues>,
    /// Regions whose log mark is on disk, which `map` writes to directly
    /// (`crate::mcore::hot_regions`). Lock order: `hot`, then `state` or
    /// `queues`.
    #[pin]
    hot: SpinLockIrq<HotRegions<PendingRef<MirrorSet>>>,
    /// Threads inside `map`'s call to dm-io, bounded by dm-io's reserve.
    map_writers: MapWriters,
    /// `hot_region_idle_ms` when the table was loaded (0: no hot regions).
    hot_idle_ms: u32,
    /// Copies to write-mostly legs in flight (dm core does not wait for
    /// them: `stop` does).
    #[pin]
    buffer_ios: BufferIos,
    /// Signalled when the write-behind backlog becomes empty.
    #[pin]
    behind_drained: CondVar,
    /// The write-behind configuration's write-mostly legs, and whether
    /// write-behind is on, for `map`'s copies (`WriteBehindConfig::copy_hint`):
    /// written under `state`'s lock with the configuration.
    behind_hint: AtomicU32,
    /// Whether `Queues::behind_waiting` holds writes: written under
    /// `queues`' lock with the list, read by `map` without it.
    behind_waiting_any: AtomicBool,
}

/// What `map` remembers about a bio for `end_io` and the callbacks: one
/// variant per kind of bio the mirror handles. A `region` is the one of the
/// sector dm core gave the bio (never a remapped one), checked against the
/// region count; a `start_ns` is when a read was sent, for the adaptive
/// policy's latency.
#[derive(Clone, Copy, Default)]
pub(crate) enum BioRecord {
    /// Not seen by `map` yet, or nothing to remember (an empty flush).
    #[default]
    Other,
    /// A write of data. `covers`: it writes every sector of its region;
    /// `one_leg`: the write went to this leg alone (the region is out of
    /// sync, or see `direct`); `pending`: counted pending in the region hash; `behind`: the
    /// write-mostly legs that get a copy later (the others got the bio);
    /// `hot`: sent by `map` to a hot region, counted in `MirrorSet::hot`;
    /// `direct`: with write-behind, the write went by itself to `one_leg`,
    /// the one leg that acknowledges writes, and if it fails there, these
    /// details restore it for the worker, which handles it as a write dm-io
    /// reported failed; `only_copies`: every leg it was sent to missed it,
    /// so only its copies in `behind` will hold it; `copies_end`: the
    /// backlog's [`Admitted::seq_end`] for those copies.
    ///
    /// [`Admitted::seq_end`]: crate::mcore::write_behind::Admitted::seq_end
    Write {
        region: u64,
        covers: bool,
        one_leg: Option<u8>,
        pending: bool,
        behind: LegSet,
        hot: bool,
        direct: Option<BioDetails>,
        only_copies: bool,
        copies_end: u64,
    },
    /// An empty flush sent to the legs of `sent_to` only (write-behind).
    Flush { sent_to: LegSet },
    /// A discard (sent to every leg, not counted in the region hash).
    Discard { region: u64 },
    /// A read of `sectors` remapped in `map` to `leg`; `details` restore
    /// it for a retry.
    RemappedRead {
        region: u64,
        leg: u8,
        sectors: u32,
        start_ns: u64,
        details: BioDetails,
    },
    /// A read of `sectors` the worker sends through dm-io: to `leg`
    /// (`None`: queued).
    WorkerRead {
        region: u64,
        leg: Option<u8>,
        sectors: u32,
        start_ns: u64,
    },
}

impl BioRecord {
    /// The bio's region (0 for an empty flush, which has none: dm-raid1's
    /// region functions give it region 0 too).
    fn region(&self) -> u64 {
        match *self {
            BioRecord::Other | BioRecord::Flush { .. } => 0,
            BioRecord::Write { region, .. }
            | BioRecord::Discard { region }
            | BioRecord::RemappedRead { region, .. }
            | BioRecord::WorkerRead { region, .. } => region,
        }
    }

    /// A queued worker read of `region`.
    fn queued_read(region: u64) -> Self {
        BioRecord::WorkerRead {
            region,
            leg: None,
            sectors: 0,
            start_ns: 0,
        }
    }
}

impl MirrorSet {
    fn nr_legs(&self) -> usize {
        self.legs.len()
    }

    fn all_legs(&self) -> LegSet {
        LegSet::first_n(self.nr_legs())
    }

    fn log(&self) -> &DirtyLog {
        self.rh.log()
    }

    fn leg_name(&self, idx: usize) -> &str {
        self.legs.get(idx).map_or("?", |l| l.dev.name())
    }

    fn leg_names(&self) -> [&str; MAX_LEGS] {
        let mut names = [""; MAX_LEGS];
        for (name, leg) in names.iter_mut().zip(self.legs.iter()) {
            *name = leg.dev.name();
        }
        names
    }

    fn default_leg(&self) -> usize {
        self.state.peek(|st| st.balancer.default_leg())
    }

    /// Whether a write of `nr_sectors` at `sector` writes all of `region`
    /// (the last region may be shorter than the others).
    fn covers_region(&self, region: u64, sector: u64, nr_sectors: u32) -> bool {
        let start = self.rh.region_to_sector(region);
        let end = start
            .saturating_add(u64::from(self.region_size))
            .min(self.target.len());
        sector == start && sector.saturating_add(u64::from(nr_sectors)) >= end
    }

    /// Picks a leg for a read of `region` among the healthy legs that hold
    /// its latest data, and counts it as sent at `now_ns` (the read's one
    /// clock reading, also its start time).
    /// The leg for a read, and whether a leg wants a probe read (then the
    /// caller wakes the worker).
    fn choose(
        &self,
        region: u64,
        sector: u64,
        nr_sectors: u32,
        now_ns: u64,
    ) -> (Option<usize>, bool) {
        let read = ReadRequest {
            sector,
            nr_sectors,
            now_ns,
        };
        let mut st = self.lock_balancing();
        let healthy = st.usable(self.nr_legs());
        let LegState {
            freshness,
            balancer,
            behind,
            freshness_from_log,
            ..
        } = &mut *st;
        let Ok(fresh) = freshness.fresh(region) else {
            return (None, balancer.wants_probe_read(healthy));
        };
        let candidates = behind.read_legs(region, fresh, healthy);
        // The core's routing, as the host freshness model tests it.
        let leg = freshness
            .route_read(balancer, region, candidates, &read)
            .ok()
            .flatten();
        // The choice may have asked for a probe.
        let probe = balancer.wants_probe_read(healthy);
        // A lease only for a choice that any region's read would get: from
        // the legs that every region may be read from (healthy, fresh
        // everywhere, behind nowhere), when they are this read's too.
        let lease = balancer.lease();
        let grant = leg.is_some() && *freshness_from_log && lease.reads > 0 && {
            let everywhere = behind.lease_legs(freshness.fresh_everywhere(), healthy);
            everywhere == candidates && lease.legs.is_subset_of(everywhere)
        };
        if grant {
            st.grant(lease);
        }
        (leg, probe)
    }

    /// Freshness after a write to `region` reached the legs in `reached`.
    fn write_completed(&self, region: u64, reached: LegSet, covers: bool) {
        let done = self
            .state
            .lock()
            .write_completed(self.nr_legs(), region, reached, covers);
        if done.is_err() {
            dm_err_limit!(
                "write to region {} out of range: freshness not updated",
                region
            );
        }
    }

    /// The state lock, with the read completions posted since its last
    /// holder folded into the balancer: whatever decides with the
    /// balancer's statistics takes the lock through this.
    fn lock_balancing(&self) -> StateGuard<'_> {
        let mut st = self.state.lock();
        self.completions.fold_into(&mut st.balancer);
        st
    }

    /// Accounts a user read's completion: through the mailbox when it
    /// succeeded (no lock), under the lock when it failed (the failure is
    /// handled under it next) or the mailbox is full.
    fn complete_read(&self, leg: usize, sectors: u32, start_ns: u64, ok: bool) {
        let completion = Completion {
            leg,
            latency_ns: dm::now_ns().saturating_sub(start_ns),
            nr_sectors: sectors,
            ok,
        };
        if ok && self.completions.post(completion) {
            return;
        }
        // This ends a read lease (a completion folded under a lease still
        // in force could come before its read's dispatch is accounted): a
        // burst of completions with leases ends one every
        // SLOTS_PER_LEG + 1 reads.
        self.lock_balancing()
            .balancer
            .complete_sized(leg, completion.latency_ns, sectors, ok);
    }

    fn queue(
        &self,
        which: impl FnOnce(&mut Queues) -> &mut BioList<MirrorSet>,
        bio: OwnedBio<Self>,
    ) {
        {
            let mut q = self.queues.lock();
            which(&mut q).push(bio);
        }
        self.worker.queue();
    }

    /// dm-raid1's `fail_mirror`: records an error of `kind` on leg `idx`.
    /// With `handle_errors`, the first error of each kind raises an event,
    /// and a failed default leg hands its role to a healthy leg that holds
    /// every region's latest data, if there is one. Never sleeps.
    fn fail_leg(&self, idx: usize, kind: LegErrors) {
        let nr = self.nr_legs();
        let handle_errors = self.features.handle_errors;
        self.state.lock().leg_failure = true;
        // Writes take the worker's way again: it decides about failures
        // (and keeps the set closed, seeing `leg_failure`).
        self.close_hot();
        let mut st = self.state.lock();
        let Some(errors) = st.errors.get_mut(idx) else {
            return;
        };
        let first = !errors.contains(kind);
        *errors = errors.union(kind);
        if !first || !handle_errors {
            return;
        }
        enum Report {
            None,
            OutOfSync,
            AllFailed,
        }
        let mut report = Report::None;
        if st.balancer.default_leg() == idx {
            let healthy = st.usable(nr);
            // A leg that acknowledges writes rather than a write-mostly one,
            // if one can be the default.
            let candidates = st
                .freshness
                .fresh_everywhere()
                .intersection(healthy)
                .preferring_not(st.behind.config.write_mostly());
            match candidates.at_or_before(idx) {
                // Cannot fail: `new` is a leg of this set.
                Some(new) => drop(st.balancer.set_default_leg(new)),
                // Better to read the failing leg than to return stale data.
                None if !healthy.is_empty() => report = Report::OutOfSync,
                None => report = Report::AllFailed,
            }
        }
        st.event_pending = true;
        drop(st);
        match report {
            Report::OutOfSync => dm_err!(
                "Primary mirror ({}) failed while out-of-sync: Reads may fail.",
                self.leg_name(idx)
            ),
            Report::AllFailed => dm_warn!("All sides of mirror have failed."),
            Report::None => {}
        }
        self.worker.queue();
    }

    /// Each leg's health, for the status line.
    fn health(&self) -> [LegHealth; MAX_LEGS] {
        let mut health = [LegHealth::ALIVE; MAX_LEGS];
        self.state.peek(|st| {
            for (h, e) in health.iter_mut().zip(st.errors.iter()) {
                if *e != LegErrors::NONE {
                    *h = LegHealth::failed(*e);
                }
            }
        });
        health
    }

    /// dm-raid1's `hold_bio`: keeps a failed write until userspace repairs the
    /// mirror; while suspending, hands it back to dm core (noflush) or fails it.
    fn hold(&self, bio: OwnedBio<Self>) {
        let mut q = self.queues.lock();
        if !q.suspended {
            q.holds.push(bio);
            return;
        }
        drop(q);
        if self.target.noflush_suspending() {
            bio.end(Status::dm_requeue());
        } else {
            bio.end(Status::io_error());
        }
    }

    /// Whether some healthy leg holds `region`'s latest data.
    fn read_is_possible(&self, region: u64) -> bool {
        self.state.peek(|st| {
            let healthy = st.usable(self.nr_legs());
            st.freshness
                .fresh(region)
                .is_ok_and(|fresh| !st.behind.read_legs(region, fresh, healthy).is_empty())
        })
    }

    /// At the first resume (the disk log reads its state in its resume):
    /// what the dirty log says is not in sync is fresh on the default leg
    /// only. The knowledge of an earlier table is gone; the log is all
    /// there is (as in dm-raid1).
    fn freshness_from_log(&self) {
        if self.state.peek(|st| st.freshness_from_log) {
            return;
        }
        let default = self.default_leg();
        let mut region = 0;
        while region < self.nr_regions {
            // Ask the log outside the IRQ-off lock, 64 regions at a time;
            // no I/O runs before the first resume ends.
            let end = region.saturating_add(64).min(self.nr_regions);
            let mut out_of_sync = 0u64;
            for r in region..end {
                if self.rh.in_sync(r, true) != Ok(true) {
                    out_of_sync |= 1 << (r - region);
                }
            }
            if out_of_sync != 0 {
                let mut st = self.state.lock();
                for r in region..end {
                    if out_of_sync & (1 << (r - region)) != 0 {
                        let _ = st.freshness.trust_only(r, default);
                    }
                }
            }
            region = end;
        }
        self.state.lock().freshness_from_log = true;
    }

    // ---- the worker ------------------------------------------------------

    fn do_recovery(&self) {
        // No copy starts while a discard runs (or waits): they would race.
        let discards = {
            let q = self.queues.lock();
            q.discards_in_flight != 0 || q.discards_queued != 0 || !q.discards.is_empty()
        };
        if !discards {
            self.rh.recovery_prepare();
            while let Some(region) = self.rh.recovery_start() {
                self.recover(region);
            }
        }
        let complete = self.log().sync_count() >= self.nr_regions;
        let newly = {
            let mut st = self.state.lock();
            if !st.in_sync && complete {
                st.in_sync = true;
                // As dm-raid1: a full resync brings every leg back (freshness
                // still keeps reads off the regions a leg missed).
                st.leg_failure = false;
                st.errors = [LegErrors::NONE; MAX_LEGS];
                true
            } else {
                false
            }
        };
        if newly {
            self.target.raise_event();
        }
    }

    fn recover(&self, region: Region<Self>) {
        let key = region.key();
        let start = self.rh.region_to_sector(key);
        let size = u64::from(self.region_size);
        // The last region may be shorter.
        let count = if key + 1 == self.nr_regions {
            match self.target.len() & (size - 1) {
                0 => size,
                n => n,
            }
        } else {
            size
        };
        // Copy from a leg that holds the region's latest data: the default
        // leg unless it missed a write there. Decided under the lock the
        // completions and the `default` message use.
        let source = {
            let mut st = self.state.lock();
            let healthy = st.usable(self.nr_legs());
            let source = st
                .freshness
                .source_for(key, st.balancer.default_leg(), healthy)
                .ok()
                .flatten();
            let slot = st.recoveries.iter_mut().find(|r| r.is_none());
            match (source, slot) {
                (Some(src), Some(slot)) => {
                    *slot = Some(Recovery {
                        region: key,
                        source: u8::try_from(src).unwrap_or(0),
                    });
                    Some(src)
                }
                _ => None,
            }
        };
        let Some((src, src_leg)) = source.and_then(|i| Some((i, self.legs.get(i)?))) else {
            dm_err_limit!(
                "No leg holds the latest data of region {}: not recovered",
                key
            );
            return self.rh.recovery_end(region, false);
        };
        let dests = self
            .legs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != src)
            .map(|(_, leg)| (&leg.dev, leg.map_sector(start)));
        // dm-raid1 copies with IGNORE_ERROR without handle_errors, which
        // writes what a failed read left in kcopyd's pages over every
        // destination, fresh ones included. Stopping at the first error
        // only ever writes the source's data (see `copy_completed`).
        self.kcopyd.copy::<Self>(
            region,
            (&src_leg.dev, src_leg.map_sector(start)),
            count,
            dests,
        );
    }

    fn do_reads(&self, mut reads: BioList<Self>) {
        while let Some(mut bio) = reads.pop() {
            let sector = bio.sector();
            let region = bio.record().region();
            let now_ns = dm::now_ns();
            // Probe reads go at the end of this work.
            match self
                .choose(region, sector, bio.sectors(), now_ns)
                .0
                .and_then(|i| Some((i, self.legs.get(i)?)))
            {
                Some((idx, leg)) => {
                    *bio.record() = BioRecord::WorkerRead {
                        region,
                        leg: u8::try_from(idx).ok(),
                        sectors: bio.sectors(),
                        start_ns: now_ns,
                    };
                    self.io.read(bio, &leg.dev, leg.map_sector(sector));
                }
                None => bio.end(Status::io_error()),
            }
        }
    }

    /// Counts a write pending in the region hash (before the log is
    /// flushed); a write whose region does not check out is failed.
    fn inc_pending(&self, mut bio: OwnedBio<Self>) -> Option<OwnedBio<Self>> {
        let region = bio.record().region();
        if self.rh.inc_pending(&mut bio, region).is_err() {
            bio.end(Status::io_error());
            return None;
        }
        if let BioRecord::Write { pending, .. } = bio.record() {
            *pending = true;
        }
        Some(bio)
    }

    fn do_writes(&self, mut writes: BioList<Self>) {
        if writes.is_empty() {
            return;
        }
        let mut sync = BioList::new();
        let mut nosync = BioList::new();
        let mut recover = BioList::new();
        let mut discards = BioList::new();
        let mut candidates = HotCandidates::new();
        while let Some(bio) = writes.pop() {
            match bio.kind() {
                BioKind::Flush => {
                    sync.push(bio);
                    continue;
                }
                BioKind::Discard => {
                    discards.push(bio);
                    continue;
                }
                _ => {}
            }
            let mut bio = bio;
            let region = bio.record().region();
            match self.rh.state(region, true) {
                Ok(RegionState::Clean | RegionState::Dirty) => {
                    if let Some(mut bio) = self.inc_pending(bio) {
                        self.hot_candidate(&mut candidates, &mut bio, region);
                        sync.push(bio);
                    }
                }
                Ok(RegionState::NoSync) => {
                    if let Some(bio) = self.inc_pending(bio) {
                        nosync.push(bio);
                    }
                }
                Ok(RegionState::Recovering) => recover.push(bio),
                Err(_) => bio.end(Status::io_error()),
            }
        }
        self.do_discards(discards);
        // The regions are marked dirty (in the log) before they are written.
        let flush_failed = self.rh.flush().is_err();
        if flush_failed {
            self.close_hot();
        }
        self.make_hot(candidates, !flush_failed);
        let (log_failure, leg_failure) = {
            let mut st = self.state.lock();
            // Only userspace clears a log failure (by reloading).
            st.log_failure |= flush_failed;
            (st.log_failure, st.leg_failure)
        };
        let handle_errors = self.features.handle_errors;
        if log_failure && handle_errors {
            self.queues.lock().failures.append(&mut sync);
            self.worker.queue();
        } else {
            self.dispatch_writes(sync);
        }
        while let Some(mut bio) = recover.pop() {
            let region = bio.record().region();
            if let Err(bio) = self.rh.delay(bio, region) {
                bio.end(Status::io_error());
            }
        }
        self.dispatch_nosync(nosync, leg_failure);
    }

    /// Sends writes to out-of-sync regions (counted pending) after those
    /// already waiting: each to one leg, the one the resync will copy from
    /// (the default leg unless it missed a write here), as dm-raid1 does.
    /// Not while that leg is behind in the region (write-behind): a copy of
    /// an earlier write still to come would land over it. Such a write
    /// waits in `nosync_waiting` (its pending count keeps the region out of
    /// recovery); the worker tries again after every copy.
    fn dispatch_nosync(&self, mut nosync: BioList<Self>, leg_failure: bool) {
        let handle_errors = self.features.handle_errors;
        let mut waiting = BioList::new();
        {
            let mut q = self.queues.lock();
            waiting.append(&mut q.nosync_waiting);
        }
        waiting.append(&mut nosync);
        while let Some(mut bio) = waiting.pop() {
            if leg_failure && handle_errors && !self.features.keep_log {
                self.queue(|q| &mut q.failures, bio);
                continue;
            }
            let region = bio.record().region();
            let (idx, behind) = self.state.peek(|st| {
                let healthy = st.usable(self.nr_legs());
                let idx = st
                    .freshness
                    .out_of_sync_write_leg(region, st.balancer.default_leg(), healthy)
                    .unwrap_or_else(|_| st.balancer.default_leg());
                (idx, st.behind.backlog.behind(region).contains(idx))
            });
            if behind {
                self.queues.lock().nosync_waiting.push(bio);
                continue;
            }
            let Some(leg) = self.legs.get(idx) else {
                bio.end(Status::io_error());
                continue;
            };
            if let BioRecord::Write { one_leg, .. } = bio.record() {
                *one_leg = u8::try_from(idx).ok();
            }
            let sector = leg.map_sector(bio.sector());
            bio.submit_to(&leg.dev, sector);
        }
    }

    /// Out-of-sync writes that waited for their leg to catch up.
    fn retry_nosync(&self) {
        if self.queues.lock().nosync_waiting.is_empty() {
            return;
        }
        let leg_failure = self.state.peek(|st| st.leg_failure);
        self.dispatch_nosync(BioList::new(), leg_failure);
    }

    /// Discards go to every leg, but never while a copy runs.
    fn do_discards(&self, mut discards: BioList<Self>) {
        let copying = self.discards_wait();
        let mut send = BioList::new();
        {
            let mut q = self.queues.lock();
            while let Some(bio) = discards.pop() {
                q.discards_queued = q.discards_queued.saturating_sub(1);
                if copying {
                    q.discards.push(bio);
                } else {
                    q.discards_in_flight = q.discards_in_flight.saturating_add(1);
                    send.push(bio);
                }
            }
        }
        while let Some(bio) = send.pop() {
            self.write_to_all_legs(bio);
        }
    }

    /// Whether discards must wait: while a copy runs (resync or
    /// write-behind), a discard of the same blocks could overtake it.
    fn discards_wait(&self) -> bool {
        self.state
            .peek(|st| st.recovery_in_flight() || !st.behind.backlog.is_empty())
    }

    fn write_to_all_legs(&self, bio: OwnedBio<Self>) {
        // Empty flushes carry no sector.
        let sector = if bio.kind() == BioKind::Flush {
            0
        } else {
            bio.sector()
        };
        // Every leg gets the write, failed ones too (as dm-raid1).
        self.io.write_all(
            bio,
            self.legs
                .iter()
                .map(|leg| (&leg.dev, leg.map_sector(sector))),
            WRITE_FLAGS,
        );
    }

    fn do_failures(&self, mut failures: BioList<Self>) {
        let keep_log = self.features.keep_log;
        while let Some(mut bio) = failures.pop() {
            let region = bio.record().region();
            let (log_failure, any_usable) = {
                let mut st = self.state.lock();
                if !st.log_failure {
                    st.in_sync = false;
                }
                (st.log_failure, !st.usable(self.nr_legs()).is_empty())
            };
            // Out of sync from here on: no more writes from `map` there.
            self.forget_hot(region);
            if !log_failure && self.rh.mark_nosync(&bio, region).is_err() {
                bio.end(Status::io_error());
                continue;
            }
            if !any_usable || (keep_log && log_failure) {
                bio.end(Status::io_error());
            } else if self.features.handle_errors && !keep_log {
                self.hold(bio);
            } else if matches!(
                bio.record(),
                BioRecord::Write {
                    only_copies: true,
                    ..
                }
            ) {
                // No leg has it yet, only its copies queued for the
                // write-mostly legs: acknowledged once they are written
                // (`end_copy_waits`), an error if they fail.
                self.queues.lock().copy_waits.push(bio);
            } else {
                // Without handle_errors dm-raid1 acknowledges the write: it is
                // on every healthy leg and the region is marked out of sync
                // (and the legs that missed it are stale there).
                bio.end(Status::ok());
            }
        }
    }
}

#[vtable]
impl TargetOperations for MirrorSet {
    type PerBio = BioRecord;

    fn ctr(target: &mut Target<Self>, args: &Args<'_>) -> Result<Pin<KBox<Self>>, CtrError> {
        let table = MirrorTable::parse(args.words(), target.len()).map_err(|e| {
            dm_err!("{}", e);
            CtrError::invalid(e.ti_error())
        })?;
        // dm-log parses the log arguments again itself; hand them on untouched.
        let log_args = args
            .slice(2, 2 + table.log_args.len())
            .ok_or_else(|| CtrError::invalid(c"Insufficient mirror log arguments"))?;
        let log =
            DirtyLog::create::<Self>(target, table.log.type_name(), &log_args).map_err(|_| {
                dm_err!("Error creating mirror dirty log");
                CtrError::invalid(c"Error creating mirror dirty log")
            })?;
        let region_size = log.region_size();
        let nr_regions = match region_count(target.len(), region_size) {
            Some(n) if region_size.is_power_of_two() => n,
            _ => return Err(CtrError::invalid(c"Error creating mirror dirty log")),
        };
        let rh =
            RegionHash::new(target, log, region_size, nr_regions, MAX_RECOVERY).map_err(|err| {
                CtrError {
                    msg: c"Error creating dirty region hash",
                    err,
                }
            })?;

        let nomem = |err| CtrError {
            msg: c"Cannot allocate mirror context",
            err,
        };
        let mut legs =
            KVec::with_capacity(table.nr_legs(), GFP_KERNEL).map_err(|e| nomem(e.into()))?;
        for spec in table.legs() {
            let dev = target.get_device(spec.device).map_err(|err| {
                dm_err!("Device lookup failure: {}", spec.device);
                CtrError {
                    msg: c"Device lookup failure",
                    err,
                }
            })?;
            legs.push(
                Leg {
                    dev,
                    offset: spec.offset,
                },
                GFP_KERNEL,
            )
            .map_err(|e| nomem(e.into()))?;
        }

        // One empty flush and one discard per target, as dm-raid1.
        target.set_num_flush_bios(1);
        target.set_num_discard_bios(1);
        target.set_max_io_len(region_size).map_err(|err| CtrError {
            msg: c"Invalid region size",
            err,
        })?;
        let io = IoClient::new().map_err(|err| CtrError {
            msg: c"Error creating dm_io client",
            err,
        })?;
        let kcopyd = Kcopyd::new().map_err(|err| CtrError {
            msg: c"Error creating kcopyd client",
            err,
        })?;
        // As dm-raid1: a per-CPU, reclaim-safe queue, one per mirror set.
        let flags = QueueFlags::MEM_RECLAIM.with(QueueFlags::PERCPU);
        let worker = Worker::new(target, c"kmirrord", flags).map_err(|err| {
            dm_err!("couldn't start kmirrord");
            CtrError {
                msg: c"Cannot allocate mirror context",
                err,
            }
        })?;
        // The module parameter, read once per table: a later change applies
        // to mappings created (or reloaded) after it. Its check let only
        // valid values in.
        let default_policy = parse_default_policy(crate::default_io_balance().as_str())
            .ok()
            .flatten();
        let balancer =
            Balancer::from_config(table.nr_legs(), &table.features.io_balance, default_policy)
                .map_err(|e| {
                    dm_err!("{}", e);
                    CtrError::invalid(c"Invalid io_balance feature")
                })?;
        let words = Freshness::<KVVec<u64>>::words_needed(table.nr_legs(), nr_regions)
            .ok_or_else(|| nomem(ENOMEM))?;
        let bitmaps = KVVec::from_elem(0u64, words, GFP_KERNEL).map_err(|e| nomem(e.into()))?;
        let freshness =
            Freshness::new(table.nr_legs(), nr_regions, bitmaps).map_err(|_| nomem(ENOMEM))?;
        let behind = BehindState::new(table.nr_legs(), nr_regions, table.features.write_behind)
            .map_err(nomem)?;

        let map_writers = MapWriters::new(map_writers_max(io.reserve(), table.nr_legs()));
        // Checked when set: a bad value cannot be there.
        let hot_idle_ms =
            parse_idle_ms(crate::hot_region_idle_ms().as_str()).unwrap_or(HOT_IDLE_MS);

        KBox::pin_init(
            try_pin_init!(MirrorSet {
                worker,
                kcopyd,
                io,
                rh,
                legs,
                target: target.handle(),
                region_size,
                nr_regions,
                features: table.features,
                state <- StateLock::new(
                    LegState {
                        balancer,
                        errors: [LegErrors::NONE; MAX_LEGS],
                        freshness,
                        freshness_from_log: false,
                        recoveries: [None; RECOVERY_SLOTS],
                        in_sync: false,
                        leg_failure: false,
                        log_failure: false,
                        event_pending: false,
                        behind,
                    },
                ),
                completions: CompletionMailbox::new(),
                queues <- new_spinlock_irq!(
                    Queues {
                        reads: BioList::new(),
                        writes: BioList::new(),
                        failures: BioList::new(),
                        holds: BioList::new(),
                        discards: BioList::new(),
                        discards_queued: 0,
                        discards_in_flight: 0,
                        behind_waiting: BioList::new(),
                        copy_waits: BioList::new(),
                        nosync_waiting: BioList::new(),
                        suspended: false,
                    },
                    "MirrorSet::queues"
                ),
                hot <- new_spinlock_irq!(HotRegions::new(), "MirrorSet::hot"),
                map_writers,
                hot_idle_ms,
                buffer_ios <- BufferIos::new(),
                behind_drained <- new_condvar!("MirrorSet::behind_drained"),
                behind_hint: AtomicU32::new(table.features.write_behind.copy_hint()),
                behind_waiting_any: AtomicBool::new(false),
            }),
            GFP_KERNEL,
        )
        .map_err(nomem)
    }

    fn map(&self, mut bio: Bio<'_, Self>) -> Mapped {
        let sector = bio.sector();
        let kind = bio.kind();
        // Empty flushes have no region.
        let region = if kind == BioKind::Flush {
            0
        } else {
            match self.rh.region_of(sector) {
                Ok(region) => region,
                Err(_) => return bio.kill(),
            }
        };
        if kind == BioKind::Write {
            // `writer` is dropped after the dm-io call, when this thread's
            // bios of the client's pool are all allocated.
            if let Some(_writer) = self.map_writers.enter() {
                if self.hot.lock().start_write(region, dm::now_ns()) {
                    // The region's mark is on disk and stays there until
                    // this write ends (`end_io`): nothing for the worker.
                    *bio.record() = BioRecord::Write {
                        region,
                        covers: self.covers_region(region, sector, bio.sectors()),
                        one_leg: None,
                        pending: false,
                        behind: LegSet::EMPTY,
                        hot: true,
                        direct: None,
                        only_copies: false,
                        copies_end: 0,
                    };
                    let (owned, mapped) = bio.submitted();
                    self.dispatch_hot_write(owned);
                    return mapped;
                }
            }
        }
        match kind {
            BioKind::Write | BioKind::Flush | BioKind::Discard => {
                *bio.record() = match kind {
                    BioKind::Write => BioRecord::Write {
                        region,
                        covers: self.covers_region(region, sector, bio.sectors()),
                        one_leg: None,
                        pending: false,
                        behind: LegSet::EMPTY,
                        hot: false,
                        direct: None,
                        only_copies: false,
                        copies_end: 0,
                    },
                    BioKind::Discard => BioRecord::Discard { region },
                    _ => BioRecord::Other,
                };
                let (owned, mapped) = bio.submitted();
                let mut q = self.queues.lock();
                if kind == BioKind::Discard {
                    q.discards_queued = q.discards_queued.saturating_add(1);
                }
                // As dm-raid1's queue_bio(): only the write that finds the
                // list empty wakes the worker. Whoever queued the writes
                // already there woke it after queueing, and the worker
                // takes the whole list at once, so it runs after them all.
                let wake = q.writes.is_empty();
                q.writes.push(owned);
                drop(q);
                if wake {
                    self.worker.queue();
                }
                mapped
            }
            BioKind::Read => {
                let in_sync = match self.rh.in_sync(region, false) {
                    Ok(s) => s,
                    // The log would have to sleep: let the worker ask.
                    Err(e) if e == EAGAIN => false,
                    Err(_) => return bio.kill(),
                };
                if !in_sync {
                    // As dm-raid1: read-ahead is not worth waiting for.
                    if bio.is_readahead() {
                        return bio.kill();
                    }
                    *bio.record() = BioRecord::queued_read(region);
                    let (owned, mapped) = bio.submitted();
                    self.queue(|q| &mut q.reads, owned);
                    return mapped;
                }
                let now_ns = dm::now_ns();
                let (chosen, probe) = match self.state.take_lease(sector, bio.sectors()) {
                    Some(leg) => (Some(leg), false),
                    None => self.choose(region, sector, bio.sectors(), now_ns),
                };
                if probe {
                    self.worker.queue();
                }
                let Some((idx, leg)) = chosen.and_then(|i| Some((i, self.legs.get(i)?))) else {
                    return bio.kill();
                };
                let details = bio.save_details();
                *bio.record() = BioRecord::RemappedRead {
                    region,
                    leg: u8::try_from(idx).unwrap_or(0),
                    sectors: bio.sectors(),
                    start_ns: now_ns,
                    details,
                };
                bio.remap(&leg.dev, leg.map_sector(sector))
            }
            BioKind::Other => bio.kill(),
        }
    }

    fn end_io(&self, mut bio: Bio<'_, Self>, status: Status) -> EndIo {
        let (region, idx, sectors, start_ns, details) = match *bio.record() {
            BioRecord::Write {
                region,
                covers,
                one_leg,
                pending,
                behind,
                hot,
                direct,
                ..
            } => {
                let bio = match one_leg {
                    Some(leg) => {
                        // A write sent to one leg: an out-of-sync region's,
                        // or, with write-behind, to the one leg that
                        // acknowledges writes (the legs it is behind on
                        // count as reached, as in `write_done`).
                        let leg = usize::from(leg);
                        let reached = if status.is_ok() {
                            LegSet::single(leg).union(behind)
                        } else {
                            behind
                        };
                        self.write_completed(region, reached, covers);
                        match direct.filter(|_| !status.is_ok() && !status.is_unsupported()) {
                            Some(details) => {
                                // As dm-io's failed write (`write_done`): the
                                // worker marks the region out of sync before
                                // it ends the bio; the bio's next `end_io`
                                // only ends its hot and pending counts, which
                                // keep the region until then.
                                self.fail_leg(leg, LegErrors::WRITE);
                                match bio.retry(&details) {
                                    Ok((mut owned, end)) => {
                                        if let BioRecord::Write {
                                            one_leg,
                                            direct,
                                            only_copies,
                                            ..
                                        } = owned.record()
                                        {
                                            *one_leg = None;
                                            *direct = None;
                                            *only_copies = !behind.is_empty();
                                        }
                                        self.queue(|q| &mut q.failures, owned);
                                        return end;
                                    }
                                    // Never: the details are this bio's. It
                                    // ends failed, its region not marked.
                                    Err(bio) => {
                                        dm_err_limit!(
                                            "write retry without its details: failing I/O"
                                        );
                                        bio
                                    }
                                }
                            }
                            None => bio,
                        }
                    }
                    None => bio,
                };
                if hot {
                    self.hot_write_done(region);
                }
                if pending && self.rh.dec(region).is_err() {
                    return bio.done(Status::io_error());
                }
                return bio.done(status);
            }
            BioRecord::RemappedRead {
                region,
                leg,
                sectors,
                start_ns,
                details,
            } => (region, usize::from(leg), sectors, start_ns, details),
            _ => return bio.done(status),
        };
        self.complete_read(idx, sectors, start_ns, status.is_ok());
        if status.is_ok() || status.is_unsupported() || bio.is_readahead() {
            return bio.done(status);
        }
        dm_err_limit!(
            "Mirror read failed from {}. Trying alternative device.",
            self.leg_name(idx)
        );
        self.fail_leg(idx, LegErrors::READ);
        if !self.read_is_possible(region) {
            dm_err_limit!("All replicated volumes dead, failing I/O");
            return bio.done(status);
        }
        match bio.retry(&details) {
            Ok((mut owned, end)) => {
                *owned.record() = BioRecord::queued_read(region);
                self.queue(|q| &mut q.reads, owned);
                end
            }
            // Never: the details are this bio's.
            Err(bio) => bio.done(status),
        }
    }

    fn stop(&self) {
        // Copies to write-mostly legs call back into the instance.
        self.drain_behind();
        // A resync copy's callback ends its recovery (which a suspend waits
        // for) before it returns, and its region hash wakes the worker
        // after that: wait for kcopyd's callbacks first, then the worker.
        self.kcopyd.flush();
        self.worker.disable();
        // Nothing is behind after the drain.
        self.end_copy_waits();
        // A region hash must not be destroyed with pending writes.
        self.release_all_hot();
    }

    fn presuspend(&self) {
        let mut holds = {
            let mut hot = self.hot.lock();
            hot.set_open(false);
            let mut q = self.queues.lock();
            q.suspended = true;
            drop(hot);
            let mut holds = BioList::new();
            holds.append(&mut q.holds);
            holds
        };
        // Suspended now: `hold` hands each back to dm core (or fails it).
        while let Some(bio) = holds.pop() {
            self.hold(bio);
        }
        self.rh.stop_recovery_and_wait();
        if self.log().presuspend().is_err() {
            dm_warn!("log presuspend failed");
        }
        // Everything queued so far is pushed out before dm core waits for I/O.
        self.worker.flush();
    }

    fn presuspend_undo(&self) {
        // dm-raid1 has no undo: an interrupted suspend left recovery
        // stopped and new failed writes handed back instead of held.
        self.queues.lock().suspended = false;
        self.rh.start_recovery();
        self.worker.queue();
    }

    fn postsuspend(&self) {
        // No bio is in flight, but copies to write-mostly legs may be: the
        // log must not be suspended with regions they still hold.
        self.drain_behind();
        // The worker hands every idle hot region back and flushes the log
        // clean. Nothing is in flight after a suspend; on dm's destroy path
        // (which does not wait for I/O) `stop` releases what is left.
        self.worker.queue();
        self.worker.flush();
        if self.log().postsuspend().is_err() {
            dm_warn!("log postsuspend failed");
        }
    }

    fn resume(&self) {
        self.queues.lock().suspended = false;
        if self.log().resume().is_err() {
            dm_warn!("log resume failed");
        }
        self.freshness_from_log();
        self.rh.start_recovery();
        self.worker.queue();
    }

    fn status(&self, kind: StatusType, out: &mut StatusWriter<'_>) {
        let names = self.leg_names();
        let nr = self.nr_legs();
        let names = names.get(..nr).unwrap_or(&[]);
        let health = self.health();
        let health = health.get(..nr).unwrap_or(&[]);
        match kind {
            StatusType::Info => {
                let _ = status::write_info_mirror_part(
                    out,
                    names,
                    health,
                    self.log().sync_count(),
                    self.nr_regions,
                );
                self.log().status(StatusType::Info, out);
            }
            StatusType::Table => {
                self.log().status(StatusType::Table, out);
                let mut legs = [LegSpec::default(); MAX_LEGS];
                for ((spec, leg), name) in legs.iter_mut().zip(self.legs.iter()).zip(names) {
                    *spec = LegSpec {
                        device: name,
                        offset: leg.offset,
                    };
                }
                let legs = legs.get(..nr).unwrap_or(&[]);
                let _ = status::write_table_mirror_part(out, legs, &self.features);
            }
            StatusType::Ima => {
                let _ = status::write_ima_mirror_part(
                    out,
                    TARGET_VERSION,
                    names,
                    health,
                    &self.features,
                );
                self.log().status(StatusType::Ima, out);
                let _ = out.write_str(";");
            }
        }
    }

    fn message(&self, args: &[&str], out: &mut StatusWriter<'_>) -> Result<bool> {
        let names = self.leg_names();
        let names = names.get(..self.nr_legs()).unwrap_or(&[]);
        let message = parse_message(args, names).map_err(|e| {
            dm_err!("{}", e);
            EINVAL
        })?;
        let cmd = match message {
            Message::IoBalance(cmd) => cmd,
            Message::WriteBehind(cmd) => {
                let checked = {
                    let mut st = self.state.lock();
                    let before = st.behind.config;
                    let mut config = before;
                    config.apply(&cmd);
                    let checked =
                        config.check_change(&before, self.nr_legs(), st.balancer.default_leg());
                    if checked.is_ok() {
                        st.behind.config = config;
                        self.behind_hint
                            .store(config.copy_hint(), Ordering::Relaxed);
                        st.behind
                            .backlog
                            .set_max_sectors(u64::from(config.max_write_behind()));
                        // A leg no longer write-mostly may take the default
                        // back from one that is.
                        let healthy = st.usable(self.nr_legs());
                        let LegState {
                            freshness,
                            balancer,
                            ..
                        } = &mut *st;
                        freshness.keep_default_fresh(balancer, healthy, config.write_mostly());
                    }
                    checked
                };
                checked.map_err(|e| {
                    dm_err!("{}", e);
                    EINVAL
                })?;
                // Writes that waited may go now (or must drain first).
                self.worker.queue();
                return Ok(false);
            }
        };
        let mut st = self.lock_balancing();
        let healthy = st.usable(self.nr_legs());
        if let Command::Show = cmd {
            // Formatted outside the IRQ-off lock, from a copy.
            let balancer = st.balancer;
            let mut stale = [0u64; MAX_LEGS];
            for (leg, count) in stale.iter_mut().enumerate() {
                *count = st.freshness.stale_regions(leg);
            }
            let config = st.behind.config;
            let (stats, oldest) = st.behind.report(dm::now_ns());
            drop(st);
            let _ = balancer.write_report(out, names, healthy, &stale);
            let _ = write_behind_report(out, names, &config, &stats, &oldest);
            let (hot, open, hot_stats) = {
                let hot = self.hot.lock();
                (hot.len(), hot.is_open(), hot.stats())
            };
            let _ = write_hot_report(out, hot, open, &hot_stats);
            return Ok(true);
        }
        if let Command::SetDefaultLeg(leg) = cmd {
            if st.behind.config.write_mostly().contains(leg.index()) {
                drop(st);
                dm_err!("{}", WriteMostlyError::DefaultLeg(leg.index()));
                return Err(EINVAL);
            }
        }
        let mirror = st.freshness.mirror_state(healthy);
        let applied = st.balancer.apply(&cmd, &mirror);
        if let (Command::ResetStats, Ok(())) = (cmd, &applied) {
            st.behind.backlog.reset_stats();
        }
        drop(st);
        applied.map_err(|e| {
            dm_err!("{}", e);
            EINVAL
        })?;
        Ok(false)
    }

    fn iterate_devices(&self, f: &mut dyn FnMut(&dm::Device, u64) -> i32) -> i32 {
        for leg in self.legs.iter() {
            let r = f(&leg.dev, leg.offset);
            if r != 0 {
                return r;
            }
        }
        0
    }
}

impl IoCompletion for MirrorSet {
    fn write_done(&self, mut bio: OwnedBio<Self>, failed: u64, unsupported: u64) {
        let record = *bio.record();
        // dm-io's bits name destinations in the order they were given: the
        // legs the bio was sent to, ascending.
        let sent_to = match record {
            BioRecord::Write { behind, .. } => self.all_legs().difference(behind),
            BioRecord::Flush { sent_to } => sent_to,
            _ => self.all_legs(),
        };
        let failed_legs = sent_to.members_at(failed);
        match record {
            BioRecord::Discard { .. } => {
                let mut q = self.queues.lock();
                q.discards_in_flight = q.discards_in_flight.saturating_sub(1);
                drop(q);
                // A copy may have been waiting for it.
                self.worker.queue();
            }
            BioRecord::Write {
                region,
                covers,
                behind,
                ..
            } => {
                // Before the write is acknowledged: a read after the
                // acknowledgement must not find a leg that missed it. The
                // legs it is behind on count as reached: their copies are
                // queued in order, and reads avoid them until the copies
                // are written (a failed copy fails the leg).
                let missed = sent_to.members_at(failed | unsupported);
                let reached = sent_to.difference(missed).union(behind);
                if let BioRecord::Write { only_copies, .. } = bio.record() {
                    *only_copies = !behind.is_empty() && reached == behind;
                }
                for idx in failed_legs {
                    self.fail_leg(idx, LegErrors::WRITE);
                }
                self.write_completed(region, reached, covers);
            }
            _ => {}
        }
        if failed == 0 && unsupported == 0 {
            return bio.end(Status::ok());
        }
        // A discard a leg cannot do does not degrade the mirror.
        if bio.kind() == BioKind::Discard {
            return bio.end(Status::not_supported());
        }
        if failed == 0 {
            return bio.end(Status::invalid());
        }
        if !matches!(record, BioRecord::Write { .. }) {
            for idx in failed_legs {
                self.fail_leg(idx, LegErrors::WRITE);
            }
        }
        // Raising events and holding may block: the worker decides.
        self.queue(|q| &mut q.failures, bio);
    }

    fn read_done(&self, mut bio: OwnedBio<Self>, failed: bool, unsupported: bool) {
        let BioRecord::WorkerRead {
            region,
            leg: Some(leg),
            sectors,
            start_ns,
        } = *bio.record()
        else {
            return bio.end(if failed {
                Status::io_error()
            } else {
                Status::ok()
            });
        };
        let idx = usize::from(leg);
        self.complete_read(idx, sectors, start_ns, !failed);
        if !failed {
            return bio.end(if unsupported {
                Status::invalid()
            } else {
                Status::ok()
            });
        }
        self.fail_leg(idx, LegErrors::READ);
        if self.read_is_possible(region) {
            dm_warn_limit!(
                "Read failure on mirror device {}. Trying alternative device.",
                self.leg_name(idx)
            );
            *bio.record() = BioRecord::queued_read(region);
            self.queue(|q| &mut q.reads, bio);
        } else {
            dm_err_limit!(
                "Read failure on mirror device {}.  Failing I/O.",
                self.leg_name(idx)
            );
            bio.end(Status::io_error());
        }
    }
}

impl CopyCompletion for MirrorSet {
    fn copy_done(&self, region: Region<Self>, read_failed: bool, write_failed: u64) {
        let key = region.key();
        let source = {
            let mut st = self.state.lock();
            let slot = st
                .recoveries
                .iter_mut()
                .find(|r| r.is_some_and(|r| r.region == key));
            match slot.and_then(Option::take) {
                Some(r) => usize::from(r.source),
                None => st.balancer.default_leg(),
            }
        };
        if read_failed {
            dm_err_limit!("Unable to read primary mirror during recovery");
            self.fail_leg(source, LegErrors::SYNC);
        }
        // Bits count the destinations: every leg but the source.
        let mut failed = LegSet::EMPTY;
        let dests = self.all_legs().without(source);
        for (bit, idx) in dests.iter().enumerate() {
            if write_failed & (1 << bit) != 0 {
                failed = failed.with(idx);
            }
        }
        if write_failed != 0 {
            dm_err_limit!("Write error during recovery (error = {:#x})", write_failed);
            for idx in failed {
                self.fail_leg(idx, LegErrors::SYNC);
            }
        }
        let done = {
            let mut st = self.state.lock();
            let done = st
                .freshness
                .copy_completed(key, source, dests, failed, read_failed);
            let healthy = st.usable(self.nr_legs());
            let LegState {
                freshness,
                balancer,
                behind,
                ..
            } = &mut *st;
            freshness.keep_default_fresh(balancer, healthy, behind.config.write_mostly());
            done
        };
        if done.is_err() {
            dm_err_limit!("recovered region {} out of range", key);
        }
        self.rh
            .recovery_end(region, !(read_failed || write_failed != 0));
    }
}

impl RegionHashCallbacks for MirrorSet {
    fn dispatch_delayed(&self, mut bios: BioList<Self>) {
        self.queues.lock().writes.append(&mut bios);
        self.worker.queue();
    }

    fn wake(&self) {
        self.worker.queue();
    }
}

impl WorkerCallback for MirrorSet {
    fn work(&self) {
        // Looked at first: taking the lock for it would end a read lease
        // on every run of the worker.
        let event = self.state.peek(|st| st.event_pending)
            && core::mem::take(&mut self.state.lock().event_pending);
        if event {
            self.target.raise_event();
        }
        let copying = self.discards_wait();
        let (reads, writes, failures) = {
            let mut q = self.queues.lock();
            let mut reads = BioList::new();
            let mut writes = BioList::new();
            let mut failures = BioList::new();
            if !copying {
                // The copies they waited for are over.
                let mut waiting = BioList::new();
                waiting.append(&mut q.discards);
                while let Some(bio) = waiting.pop() {
                    q.discards_queued = q.discards_queued.saturating_add(1);
                    writes.push(bio);
                }
            }
            reads.append(&mut q.reads);
            writes.append(&mut q.writes);
            failures.append(&mut q.failures);
            (reads, writes, failures)
        };
        let released = self.refresh_hot();
        self.rh.update_states(self.features.handle_errors);
        if released && self.rh.flush().is_err() {
            self.state.lock().log_failure = true;
            self.close_hot();
        }
        self.do_recovery();
        self.do_reads(reads);
        self.do_writes(writes);
        self.do_behind_failures();
        // Writes that waited for the backlog, and copies that may go now.
        self.dispatch_writes(BioList::new());
        self.retry_nosync();
        self.do_failures(failures);
        self.end_copy_waits();
        self.send_probe_reads();
        self.rearm_hot();
    }
}

impl DirtyLogCallbacks for MirrorSet {
    fn flush_legs(&self) -> Result {
        let failed = self.io.flush_sync(self.legs.iter().map(|l| &l.dev));
        if failed == 0 {
            return Ok(());
        }
        for idx in 0..self.nr_legs() {
            if failed & (1 << idx) != 0 {
                self.fail_leg(idx, LegErrors::FLUSH);
            }
        }
        Err(EIO)
    }
}
