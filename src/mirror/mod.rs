// SPDX-License-Identifier: GPL-2.0

//! The mirror target: `MirrorSet`, in safe Rust on top of `crate::dm`.
//!
//! The same state machine as dm-raid1: `map` remaps reads of in-sync regions
//! to the leg the read policy picks and queues everything else for the
//! worker (`kmirrord`), which runs, in order, region-state updates,
//! recovery (kcopyd from the default leg), reads, writes (through the region
//! hash, to every leg with dm-io) and failures (held for userspace under
//! `handle_errors`, requeued by a noflush suspend).

mod leg;

use crate::dm::{
    self, dirty_log::DirtyLog, io::IoClient, kcopyd::Kcopyd, region_hash::RegionHash,
    region_hash::RegionState, worker::Worker, Args, Bio, BioDetails, BioKind, BioList, CtrError,
    EndIo, Mapped, OwnedBio, Region, Status, StatusType, StatusWriter, Target, TargetOperations,
};
use crate::mcore::{
    legs::{LegSet, MAX_LEGS},
    message::{parse_message, Command},
    policy::{Balancer, MirrorState, ReadRequest},
    status::{self, LegErrors, LegHealth},
    table::{region_count, Features, LegSpec, MirrorTable},
};
use core::fmt::Write;
use kernel::{
    error::code::{EAGAIN, EINVAL, EIO},
    prelude::*,
    sync::{new_spinlock_irq, SpinLockIrq},
};
use leg::Leg;

/// The dm target type name, as lvm2 and dmsetup know it.
pub(crate) const TARGET_NAME: &CStr = c"mirror";
/// The version of dm-raid1 whose interface this implements (7.3: 1.15.0).
pub(crate) const TARGET_VERSION: [u32; 3] = [1, 15, 0];
/// As dm-raid1: atomic writes pass through to every leg.
pub(crate) const TARGET_FEATURES: u64 = dm::TARGET_ATOMIC_WRITES;

/// Leg health, the read policy and the set-wide flags, under one lock.
struct LegState {
    balancer: Balancer,
    /// Errors recorded per leg; a leg with any is failed and gets no reads.
    errors: [LegErrors; MAX_LEGS],
    /// Every region is in sync (set by recovery, cleared by a failed write).
    in_sync: bool,
    /// A leg failed since the last full resync.
    leg_failure: bool,
    /// The dirty log failed to flush: regions can no longer be marked.
    log_failure: bool,
    /// An event is due (raised by the worker: it may sleep).
    event_pending: bool,
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
}

/// Work for the worker, and the suspend state that decides about held bios.
struct Queues {
    reads: BioList<MirrorSet>,
    writes: BioList<MirrorSet>,
    failures: BioList<MirrorSet>,
    holds: BioList<MirrorSet>,
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
    target: Target,
    region_size: u32,
    nr_regions: u64,
    features: Features,
    #[pin]
    state: SpinLockIrq<LegState>,
    #[pin]
    queues: SpinLockIrq<Queues>,
}

/// What `map` remembers about a bio for `end_io` and the callbacks.
#[derive(Clone, Copy, Default)]
pub(crate) struct BioRecord {
    /// A read remapped in `map` to this leg (retried on error).
    leg: Option<u8>,
    /// A read sent by the worker through dm-io to this leg.
    async_leg: Option<u8>,
    /// When the read was sent, for the adaptive policy's latency.
    start_ns: u64,
    /// A write's region, counted pending in the region hash.
    write_region: Option<u64>,
    /// What a retry of a remapped read restores.
    details: Option<BioDetails>,
}

impl MirrorSet {
    fn nr_legs(&self) -> usize {
        self.legs.len()
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

    fn region_of(&self, sector: u64) -> u64 {
        sector >> self.region_size.trailing_zeros()
    }

    fn default_leg(&self) -> usize {
        self.state.lock().balancer.default_leg()
    }

    /// Picks a leg for a read and counts it as sent.
    fn choose(&self, sector: u64, nr_sectors: u32, region_in_sync: bool) -> Option<usize> {
        let mut st = self.state.lock();
        let usable = st.usable(self.nr_legs());
        let read = ReadRequest {
            sector,
            nr_sectors,
            region_in_sync,
            now_ns: dm::now_ns(),
        };
        st.balancer.choose(usable, &read)
    }

    fn complete_read(&self, leg: usize, start_ns: u64, ok: bool) {
        let latency = dm::now_ns().saturating_sub(start_ns);
        self.state.lock().balancer.complete(leg, latency, ok);
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
    /// With `handle_errors`, the first error of each kind raises an event, and
    /// a failed default leg hands its role to the first healthy leg when the
    /// mirror is in sync. Never sleeps.
    fn fail_leg(&self, idx: usize, kind: LegErrors) {
        let nr = self.nr_legs();
        let handle_errors = self.features.handle_errors;
        let keep_log = self.features.keep_log;
        let mut st = self.state.lock();
        st.leg_failure = true;
        let Some(errors) = st.errors.get_mut(idx) else {
            return;
        };
        let first = !errors.contains(kind);
        *errors = errors.union(kind);
        if !first || !handle_errors {
            return;
        }
        if st.balancer.default_leg() == idx {
            if !st.in_sync && !keep_log {
                // Better to read the failing leg than to return stale data.
                dm_err!(
                    "Primary mirror ({}) failed while out-of-sync: Reads may fail.",
                    self.leg_name(idx)
                );
            } else if let Some(new) = st.usable(nr).first() {
                // Cannot fail: `new` is a usable leg of this set.
                let _ = st.balancer.set_default_leg(new);
            } else {
                dm_warn!("All sides of mirror have failed.");
            }
        }
        st.event_pending = true;
        drop(st);
        self.worker.queue();
    }

    fn any_leg_usable(&self) -> bool {
        !self.state.lock().usable(self.nr_legs()).is_empty()
    }

    /// Each leg's health, for the status line.
    fn health(&self) -> [LegHealth; MAX_LEGS] {
        let mut health = [LegHealth::ALIVE; MAX_LEGS];
        let st = self.state.lock();
        for (h, e) in health.iter_mut().zip(st.errors.iter()) {
            if *e != LegErrors::NONE {
                *h = LegHealth::failed(*e);
            }
        }
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

    fn read_is_possible(&self, sector: u64) -> bool {
        let in_sync = self.log().in_sync(self.region_of(sector), false) == Ok(true);
        let st = self.state.lock();
        let usable = st.usable(self.nr_legs());
        usable.contains(st.balancer.default_leg()) || (in_sync && !usable.is_empty())
    }

    // ---- the worker ------------------------------------------------------

    fn do_recovery(&self) {
        self.rh.recovery_prepare();
        while let Some(region) = self.rh.recovery_start() {
            self.recover(region);
        }
        let complete = self.log().sync_count() >= self.nr_regions;
        let newly = {
            let mut st = self.state.lock();
            if !st.in_sync && complete {
                st.in_sync = true;
                // As dm-raid1: a full resync brings every leg back.
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

    fn recover(&self, region: Region) {
        let key = region.key();
        let default = self.default_leg();
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
        let Some(src) = self.legs.get(default) else {
            return self.rh.recovery_end(region, false);
        };
        let dests = self
            .legs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != default)
            .map(|(_, leg)| (&leg.dev, leg.map_sector(start)));
        self.kcopyd.copy::<Self>(
            region,
            (&src.dev, src.map_sector(start)),
            count,
            dests,
            !self.features.handle_errors,
        );
    }

    fn do_reads(&self, mut reads: BioList<Self>) {
        while let Some(mut bio) = reads.pop() {
            let sector = bio.sector();
            let region = self.rh.bio_region(&bio);
            let in_sync = matches!(
                self.rh.state(region, true),
                RegionState::Clean | RegionState::Dirty
            );
            match self.choose(sector, bio.sectors(), in_sync) {
                Some(idx) => {
                    let Some(leg) = self.legs.get(idx) else {
                        bio.end(Status::io_error());
                        continue;
                    };
                    *bio.record() = BioRecord {
                        async_leg: u8::try_from(idx).ok(),
                        start_ns: dm::now_ns(),
                        ..BioRecord::default()
                    };
                    self.io.read(bio, &leg.dev, leg.map_sector(sector));
                }
                None => bio.end(Status::io_error()),
            }
        }
    }

    fn do_writes(&self, mut writes: BioList<Self>) {
        if writes.is_empty() {
            return;
        }
        let mut sync = BioList::new();
        let mut nosync = BioList::new();
        let mut recover = BioList::new();
        while let Some(bio) = writes.pop() {
            if matches!(bio.kind(), BioKind::Flush | BioKind::Discard) {
                sync.push(bio);
                continue;
            }
            match self.rh.state(self.rh.bio_region(&bio), true) {
                RegionState::Clean | RegionState::Dirty => sync.push(bio),
                RegionState::NoSync => nosync.push(bio),
                RegionState::Recovering => recover.push(bio),
            }
        }
        // Mark the regions dirty (in the log) before writing them.
        self.rh.inc_pending(&mut sync);
        self.rh.inc_pending(&mut nosync);
        let flush_failed = self.rh.flush().is_err();
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
            while let Some(bio) = sync.pop() {
                self.write_to_all_legs(bio);
            }
        }
        while let Some(bio) = recover.pop() {
            self.rh.delay(bio);
        }
        let default = self.default_leg();
        while let Some(bio) = nosync.pop() {
            if leg_failure && handle_errors && !self.features.keep_log {
                self.queue(|q| &mut q.failures, bio);
            } else if let Some(leg) = self.legs.get(default) {
                // Out of sync anyway: the default leg alone, resync copies later.
                let sector = leg.map_sector(bio.sector());
                bio.submit_to(&leg.dev, sector);
            } else {
                bio.end(Status::io_error());
            }
        }
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
        );
    }

    fn do_failures(&self, mut failures: BioList<Self>) {
        while let Some(bio) = failures.pop() {
            let log_failure = self.state.lock().log_failure;
            if !log_failure {
                self.state.lock().in_sync = false;
                self.rh.mark_nosync(&bio);
            }
            let keep_log = self.features.keep_log;
            if !self.any_leg_usable() || (keep_log && log_failure) {
                bio.end(Status::io_error());
            } else if self.features.handle_errors && !keep_log {
                self.hold(bio);
            } else {
                // Without handle_errors dm-raid1 acknowledges the write: it is
                // on every healthy leg and the region is marked out of sync.
                bio.end(Status::ok());
            }
        }
    }
}

impl TargetOperations for MirrorSet {
    type PerBio = BioRecord;

    fn ctr(target: &mut Target, args: &Args<'_>) -> Result<Pin<KBox<Self>>, CtrError> {
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
        let rh = RegionHash::new(target, log, region_size, nr_regions).map_err(|err| CtrError {
            msg: c"Error creating dirty region hash",
            err,
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
        let worker = Worker::new(target, c"kmirrord").map_err(|err| {
            dm_err!("couldn't start kmirrord");
            CtrError {
                msg: c"Cannot allocate mirror context",
                err,
            }
        })?;
        let balancer =
            Balancer::from_config(table.nr_legs(), &table.features.io_balance).map_err(|e| {
                dm_err!("{}", e);
                CtrError::invalid(c"Invalid io_balance feature")
            })?;

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
                state <- new_spinlock_irq!(
                    LegState {
                        balancer,
                        errors: [LegErrors::NONE; MAX_LEGS],
                        in_sync: false,
                        leg_failure: false,
                        log_failure: false,
                        event_pending: false,
                    },
                    "MirrorSet::state"
                ),
                queues <- new_spinlock_irq!(
                    Queues {
                        reads: BioList::new(),
                        writes: BioList::new(),
                        failures: BioList::new(),
                        holds: BioList::new(),
                        suspended: false,
                    },
                    "MirrorSet::queues"
                ),
            }),
            GFP_KERNEL,
        )
        .map_err(nomem)
    }

    fn map(&self, mut bio: Bio<'_, Self>) -> Mapped {
        let sector = bio.sector();
        match bio.kind() {
            BioKind::Write | BioKind::Flush | BioKind::Discard => {
                if bio.kind() == BioKind::Write {
                    bio.record().write_region = Some(self.region_of(sector));
                }
                let (owned, mapped) = bio.submitted();
                self.queue(|q| &mut q.writes, owned);
                mapped
            }
            BioKind::Read => {
                let in_sync = match self.log().in_sync(self.region_of(sector), false) {
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
                    let (owned, mapped) = bio.submitted();
                    self.queue(|q| &mut q.reads, owned);
                    return mapped;
                }
                let Some((idx, leg)) = self
                    .choose(sector, bio.sectors(), true)
                    .and_then(|i| Some((i, self.legs.get(i)?)))
                else {
                    return bio.kill();
                };
                let details = bio.save_details();
                *bio.record() = BioRecord {
                    leg: u8::try_from(idx).ok(),
                    start_ns: dm::now_ns(),
                    details: Some(details),
                    ..BioRecord::default()
                };
                bio.remap(&leg.dev, leg.map_sector(sector))
            }
            BioKind::Other => bio.kill(),
        }
    }

    fn end_io(&self, mut bio: Bio<'_, Self>, status: Status) -> EndIo {
        let record = *bio.record();
        if let Some(region) = record.write_region {
            self.rh.dec(region);
            return bio.done(status);
        }
        let Some(idx) = record.leg.map(usize::from) else {
            return bio.done(status);
        };
        self.complete_read(idx, record.start_ns, status.is_ok());
        if status.is_ok() || status.is_unsupported() || bio.is_readahead() {
            return bio.done(status);
        }
        dm_err!(
            "Mirror read failed from {}. Trying alternative device.",
            self.leg_name(idx)
        );
        self.fail_leg(idx, LegErrors::READ);
        let sector = bio.sector();
        match record.details {
            Some(details) if self.read_is_possible(sector) => {
                let (mut owned, end) = bio.retry(&details);
                *owned.record() = BioRecord::default();
                self.queue(|q| &mut q.reads, owned);
                end
            }
            _ => {
                dm_err!("All replicated volumes dead, failing I/O");
                bio.done(status)
            }
        }
    }

    fn write_done(&self, bio: OwnedBio<Self>, failed: u64, unsupported: u64) {
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
        for idx in 0..self.nr_legs() {
            if failed & (1 << idx) != 0 {
                self.fail_leg(idx, LegErrors::WRITE);
            }
        }
        // Raising events and holding may block: the worker decides.
        self.queue(|q| &mut q.failures, bio);
    }

    fn read_done(&self, mut bio: OwnedBio<Self>, failed: bool, unsupported: bool) {
        let record = *bio.record();
        let Some(idx) = record.async_leg.map(usize::from) else {
            return bio.end(if failed {
                Status::io_error()
            } else {
                Status::ok()
            });
        };
        self.complete_read(idx, record.start_ns, !failed);
        if !failed {
            return bio.end(if unsupported {
                Status::invalid()
            } else {
                Status::ok()
            });
        }
        self.fail_leg(idx, LegErrors::READ);
        if self.read_is_possible(bio.sector()) {
            dm_warn!(
                "Read failure on mirror device {}. Trying alternative device.",
                self.leg_name(idx)
            );
            *bio.record() = BioRecord::default();
            self.queue(|q| &mut q.reads, bio);
        } else {
            dm_err!(
                "Read failure on mirror device {}.  Failing I/O.",
                self.leg_name(idx)
            );
            bio.end(Status::io_error());
        }
    }

    fn copy_done(&self, region: Region, read_failed: bool, write_failed: u64) {
        let default = self.default_leg();
        if read_failed {
            dm_err!("Unable to read primary mirror during recovery");
            self.fail_leg(default, LegErrors::SYNC);
        }
        if write_failed != 0 {
            dm_err!("Write error during recovery (error = {:#x})", write_failed);
            // Bits count the destinations: every leg but the default one.
            let others = (0..self.nr_legs()).filter(|i| *i != default);
            for (bit, idx) in others.enumerate() {
                if write_failed & (1 << bit) != 0 {
                    self.fail_leg(idx, LegErrors::SYNC);
                }
            }
        }
        self.rh
            .recovery_end(region, !(read_failed || write_failed != 0));
    }

    fn dispatch_delayed(&self, mut bios: BioList<Self>) {
        self.queues.lock().writes.append(&mut bios);
        self.worker.queue();
    }

    fn wake(&self) {
        self.worker.queue();
    }

    fn work(&self) {
        let event = core::mem::take(&mut self.state.lock().event_pending);
        if event {
            self.target.raise_event();
        }
        let (reads, writes, failures) = {
            let mut q = self.queues.lock();
            let mut reads = BioList::new();
            let mut writes = BioList::new();
            let mut failures = BioList::new();
            reads.append(&mut q.reads);
            writes.append(&mut q.writes);
            failures.append(&mut q.failures);
            (reads, writes, failures)
        };
        self.rh.update_states(self.features.handle_errors);
        self.do_recovery();
        self.do_reads(reads);
        self.do_writes(writes);
        self.do_failures(failures);
    }

    fn stop(&self) {
        self.worker.flush();
    }

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

    fn presuspend(&self) {
        let mut holds = {
            let mut q = self.queues.lock();
            q.suspended = true;
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

    fn postsuspend(&self) {
        if self.log().postsuspend().is_err() {
            dm_warn!("log postsuspend failed");
        }
    }

    fn resume(&self) {
        self.queues.lock().suspended = false;
        if self.log().resume().is_err() {
            dm_warn!("log resume failed");
        }
        self.rh.start_recovery();
        self.worker.queue();
    }

    fn status(&self, kind: StatusType, out: &mut StatusWriter<'_>) {
        let names = self.leg_names();
        let nr = self.nr_legs();
        let names = &names[..nr];
        match kind {
            StatusType::Info => {
                let health = self.health();
                let _ = status::write_info_mirror_part(
                    out,
                    names,
                    &health[..nr],
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
                let _ = status::write_table_mirror_part(out, &legs[..nr], &self.features);
            }
            StatusType::Ima => {
                let health = self.health();
                let _ = status::write_ima_mirror_part(
                    out,
                    TARGET_VERSION,
                    names,
                    &health[..nr],
                    &self.features,
                );
                self.log().status(StatusType::Ima, out);
                let _ = out.write_str(";");
            }
        }
    }

    fn message(&self, args: &[&str], out: &mut StatusWriter<'_>) -> Result<bool> {
        let names = self.leg_names();
        let names = &names[..self.nr_legs()];
        let cmd = parse_message(args, names).map_err(|e| {
            dm_err!("{}", e);
            EINVAL
        })?;
        // Read before taking the lock: the log may take its own.
        let in_sync = self.log().sync_count() >= self.nr_regions;
        let mut st = self.state.lock();
        let usable = st.usable(self.nr_legs());
        if let Command::Show = cmd {
            let _ = st.balancer.write_report(out, names, usable);
            return Ok(true);
        }
        st.balancer
            .apply(&cmd, &MirrorState { usable, in_sync })
            .map_err(|e| {
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
