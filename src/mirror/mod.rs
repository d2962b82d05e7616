// SPDX-License-Identifier: GPL-2.0

//! The mirror target: `MirrorSet`, in safe Rust on top of `crate::dm`.
//!
//! Writes go to every leg through dm-io; reads go to one leg that the read
//! policy picks among the healthy legs (only the default leg for regions the
//! dirty log does not know to be in sync).

mod leg;

use crate::dm::{
    self, dirty_log::DirtyLog, io::IoClient, Args, Bio, BioKind, CtrError, Mapped, OwnedBio,
    Status, StatusType, StatusWriter, Target, TargetOperations,
};
use crate::mcore::{
    legs::{LegSet, MAX_LEGS},
    message::{parse_message, Command},
    policy::{Balancer, MirrorState, ReadRequest},
    status::{self, LegErrors, LegHealth},
    table::{region_count, Features, LegSpec, LogSpec, MirrorTable},
};
use core::fmt::Write;
use kernel::{
    error::code::{EAGAIN, EINVAL},
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

/// What the read path and the error handling share, under one lock.
struct ReadState {
    balancer: Balancer,
    /// Errors recorded per leg; a leg with any is failed and gets no reads.
    errors: [LegErrors; MAX_LEGS],
}

impl ReadState {
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

/// A mirror set: the legs, the dirty log and the read-balancing state.
#[pin_data]
pub(crate) struct MirrorSet {
    legs: KVec<Leg>,
    log: DirtyLog,
    io: IoClient,
    region_shift: u32,
    nr_regions: u64,
    features: Features,
    #[pin]
    state: SpinLockIrq<ReadState>,
}

/// What `map` remembers about a read for `end_io`.
#[derive(Clone, Copy, Default)]
pub(crate) struct BioRecord {
    /// The leg a read was sent to; `None` for writes and unmapped bios.
    leg: Option<u8>,
    /// When it was sent, for the latency the adaptive policy learns from.
    start_ns: u64,
}

impl MirrorSet {
    fn nr_legs(&self) -> usize {
        self.legs.len()
    }

    fn leg_names(&self) -> [&str; MAX_LEGS] {
        let mut names = [""; MAX_LEGS];
        for (name, leg) in names.iter_mut().zip(self.legs.iter()) {
            *name = leg.dev.name();
        }
        names
    }

    fn map_read(&self, mut bio: Bio<'_, Self>) -> Mapped {
        let sector = bio.sector();
        let region = sector >> self.region_shift;
        let in_sync = match self.log.in_sync(region, false) {
            Ok(s) => s,
            // A log that would have to sleep to answer: treat as not in sync,
            // which is always safe (the default leg has the data).
            Err(e) if e == EAGAIN => false,
            Err(_) => return bio.kill(),
        };
        if !in_sync && bio.is_readahead() {
            // As dm-raid1: read-ahead is not worth waiting for.
            return bio.kill();
        }
        let nr = self.nr_legs();
        let choice = {
            let mut st = self.state.lock();
            let usable = st.usable(nr);
            let read = ReadRequest {
                sector,
                nr_sectors: bio.sectors(),
                region_in_sync: in_sync,
                now_ns: dm::now_ns(),
            };
            st.balancer.choose(usable, &read)
        };
        let Some((idx, leg)) = choice.and_then(|i| Some((i, self.legs.get(i)?))) else {
            dm_err!("All replicated volumes dead, failing I/O");
            return bio.kill();
        };
        *bio.record() = BioRecord {
            leg: u8::try_from(idx).ok(),
            start_ns: dm::now_ns(),
        };
        bio.remap(&leg.dev, leg.map_sector(sector))
    }

    fn map_write(&self, bio: Bio<'_, Self>) -> Mapped {
        // Empty flushes carry no sector: dm-io ignores the offset then.
        let sector = if bio.kind() == BioKind::Flush {
            0
        } else {
            bio.sector()
        };
        // Every leg gets the write, failed ones too (as dm-raid1): a leg that
        // comes back must not miss writes it could still take.
        self.io.write_all(
            bio,
            self.legs
                .iter()
                .map(|leg| (&leg.dev, leg.map_sector(sector))),
        )
    }

    /// Records an error of `kind` on leg `idx` (dm-raid1's `fail_mirror`);
    /// returns true the first time the leg sees an error of that kind.
    ///
    /// A failed default leg hands its role to the first healthy leg, as
    /// dm-raid1 does, so that reads of regions not in sync still have a source.
    fn fail_leg(&self, idx: usize, kind: LegErrors) -> bool {
        let nr = self.nr_legs();
        let mut st = self.state.lock();
        let Some(errors) = st.errors.get_mut(idx) else {
            return false;
        };
        let first = !errors.contains(kind);
        *errors = errors.union(kind);
        if st.balancer.default_leg() == idx {
            if let Some(new) = st.usable(nr).first() {
                // Cannot fail: `new` is a usable leg of this set.
                let _ = st.balancer.set_default_leg(new);
            }
        }
        first
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

    fn any_leg_healthy(&self) -> bool {
        let st = self.state.lock();
        !st.usable(self.nr_legs()).is_empty()
    }
}

impl TargetOperations for MirrorSet {
    type PerBio = BioRecord;

    fn ctr(target: &mut Target, args: &Args<'_>) -> Result<Pin<KBox<Self>>, CtrError> {
        let table = MirrorTable::parse(args.words(), target.len()).map_err(|e| {
            dm_err!("{}", e);
            CtrError::invalid(e.ti_error())
        })?;
        if let LogSpec::Disk { .. } = table.log {
            dm_err!("the disk log is not supported yet; use a core log");
            return Err(CtrError::invalid(c"Error creating mirror dirty log"));
        }
        // dm-log parses the log arguments again itself; hand them on untouched.
        let log_args = args
            .slice(2, 2 + table.log_args.len())
            .ok_or_else(|| CtrError::invalid(c"Insufficient mirror log arguments"))?;
        let log = DirtyLog::create(target, table.log.type_name(), &log_args).map_err(|_| {
            dm_err!("Error creating mirror dirty log");
            CtrError::invalid(c"Error creating mirror dirty log")
        })?;
        let region_size = log.region_size();
        if region_size == 0 || !region_size.is_power_of_two() {
            return Err(CtrError::invalid(c"Error creating mirror dirty log"));
        }
        let nr_regions = region_count(target.len(), region_size)
            .ok_or_else(|| CtrError::invalid(c"Error creating mirror dirty log"))?;

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
        let balancer =
            Balancer::from_config(table.nr_legs(), &table.features.io_balance).map_err(|e| {
                dm_err!("{}", e);
                CtrError::invalid(c"Invalid io_balance feature")
            })?;

        KBox::pin_init(
            try_pin_init!(MirrorSet {
                legs,
                log,
                io,
                region_shift: region_size.trailing_zeros(),
                nr_regions,
                features: table.features,
                state <- new_spinlock_irq!(
                    ReadState {
                        balancer,
                        errors: [LegErrors::default(); MAX_LEGS],
                    },
                    "MirrorSet::state"
                ),
            }),
            GFP_KERNEL,
        )
        .map_err(nomem)
    }

    fn map(&self, bio: Bio<'_, Self>) -> Mapped {
        match bio.kind() {
            BioKind::Read => self.map_read(bio),
            BioKind::Write | BioKind::Flush | BioKind::Discard => self.map_write(bio),
            BioKind::Other => bio.kill(),
        }
    }

    fn end_io(&self, bio: &mut Bio<'_, Self>, status: Status) -> Status {
        let record = *bio.record();
        let Some(idx) = record.leg.map(usize::from) else {
            // Writes were completed by `write_done` already.
            return status;
        };
        let latency = dm::now_ns().saturating_sub(record.start_ns);
        self.state
            .lock()
            .balancer
            .complete(idx, latency, status.is_ok());
        if status.is_ok() || status.is_unsupported() || bio.is_readahead() {
            return status;
        }
        if self.fail_leg(idx, LegErrors::READ) {
            let name = self.legs.get(idx).map_or("?", |l| l.dev.name());
            dm_err!("Mirror read failed from {}.", name);
        }
        status
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
        let flush = bio.kind() == BioKind::Flush;
        for idx in 0..self.nr_legs() {
            if failed & (1 << idx) == 0 {
                continue;
            }
            let kind = if flush {
                LegErrors::FLUSH
            } else {
                LegErrors::WRITE
            };
            let first = self.fail_leg(idx, kind);
            if first {
                let name = self.legs.get(idx).map_or("?", |l| l.dev.name());
                dm_err!("Write error on mirror leg {}; leg failed.", name);
            }
        }
        // The write is on every healthy leg: acknowledge it. Only when no leg
        // is left does the writer see the error.
        if self.any_leg_healthy() {
            bio.end(Status::ok())
        } else {
            dm_err!("All mirror legs failed; failing I/O");
            bio.end(Status::io_error())
        }
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
                    self.log.sync_count(),
                    self.nr_regions,
                );
                self.log.status(StatusType::Info, out);
            }
            StatusType::Table => {
                self.log.status(StatusType::Table, out);
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
                self.log.status(StatusType::Ima, out);
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
        let in_sync = self.log.sync_count() >= self.nr_regions;
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
