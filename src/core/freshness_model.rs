// SPDX-License-Identifier: GPL-2.0

//! Model-based test of per-leg freshness ([`super::freshness`]) against the
//! first law of the project: a read returns the latest acknowledged write,
//! or an error, never older data.
//!
//! The unit tests of `freshness.rs` check its rules one by one; this checks
//! that the rules, driven the way the kernel drives them, keep the law. It
//! runs random histories against two things side by side:
//!
//! - the **system under test**: a [`Freshness`], a [`Balancer`], the healthy
//!   legs, the dirty log's sync bits and the mapping's `handle_errors` /
//!   `keep_log`, driven exactly like `src/mirror` does: reads through
//!   `route_read` (a read that fails on a dead leg fails that leg and is
//!   retried), writes to every leg while the log says the region is in sync
//!   and to `out_of_sync_write_leg` alone while it does not, resync copies
//!   from `source_for` (stopping at the first error: any part of the copy
//!   may have landed),
//!   `keep_default_fresh` after every change of freshness or health,
//!   dm-raid1's `fail_mirror` default-leg hand-over and its "errors clear
//!   when the full resync completes", `io_balance` messages, and reloads or
//!   crashes that build a new mapping (`trust_only` on the regions the log
//!   says are not in sync);
//! - a **reference model** that knows nothing of freshness: per region four
//!   blocks, per leg and block the version of the data the leg holds (or
//!   garbage), and per block the latest acknowledged version plus the
//!   versions of writes that failed or were held (a read may return those
//!   too: they were never acknowledged). Failed writes and failed copy
//!   writes land on a random subset of their blocks, like a torn write.
//!
//! After every step: every leg `Freshness` calls fresh for a region holds
//! an acceptable value in every block of it (the whole region: freshness is
//! tracked per region), every read is routed to such a leg, every resync
//! source is such a leg, a write to a region that is not in sync goes to a
//! fresh leg if there is one (its data is on that leg alone), the default
//! leg is fresh everywhere unless no healthy leg is, and the per-leg stale
//! counts follow the bits. At the end, with every leg repaired, a resync
//! of every region leaves all legs identical and fresh, except regions no
//! leg is known to hold, which must fail reads.
//!
//! Freshness is conservative: a region is refreshed on a leg only by a
//! write that covers all of it, a copy, or a new mapping, so after partial
//! writes it may call no leg fresh although every leg holds the data. In
//! histories where every write covers its region (a quarter of the cases)
//! that cannot happen, and liveness is checked too: reads are routed
//! whenever every leg works and holds the latest data, and the final
//! resync leaves no region behind.
//!
//! Reloads follow what correct userspace does, because a new mapping cannot
//! know what the old one knew (the per-leg bitmaps are not persistent): the
//! new table's first leg holds the latest data of every region (the legs
//! are reordered to make it so; no such leg, no reload), and if any leg
//! misses something the new log resyncs every region.

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::super::freshness::Freshness;
    use super::super::io_balance::{AdaptiveParams, Command, PolicySpec};
    use super::super::legs::LegRef;
    use super::super::legs::LegSet;
    use super::super::policy::{Balancer, BalancerError, ReadRequest};
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use std::cell::RefCell;
    use std::format;
    use std::string::String;
    use std::vec;
    use std::vec::Vec;

    /// Blocks per region in the model.
    const BLOCKS: usize = 4;
    /// A write with this block mask covers its whole region.
    const ALL_BLOCKS: u8 = (1 << BLOCKS) - 1;
    /// Sectors per region, for the reads' sector numbers.
    const REGION_SECTORS: u64 = 1024;
    /// Most legs a generated history uses (`lands` bit masks are 16 bits).
    const MAX_MODEL_LEGS: usize = 4;

    /// What a leg's device does with I/O.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Fault {
        Ok,
        /// Writes (and resync copy writes) to it fail; reads work.
        FailWrites,
        /// Every I/O fails.
        Dead,
    }

    impl Fault {
        fn writes(self) -> bool {
            self == Fault::Ok
        }

        fn reads(self) -> bool {
            self != Fault::Dead
        }
    }

    /// The dirty log of a new mapping.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum LogMode {
        /// A disk log: keeps the sync bits (after a crash, the regions
        /// with writes in flight are dirty: not in sync).
        Disk,
        /// `core` without `nosync`: every region is resynchronised.
        Core,
        /// `core ... nosync`: every region in sync. Only used when every leg
        /// holds identical data; otherwise it falls back to `Core`.
        CoreNoSync,
    }

    /// A new table: which leg (of those holding everything) goes first, and
    /// its log and features.
    #[derive(Clone, Copy, Debug)]
    struct Mapping {
        pick: usize,
        log: LogMode,
        handle_errors: bool,
        keep_log: bool,
    }

    #[derive(Clone, Copy, Debug)]
    enum Msg {
        RoundRobin(u32),
        Weighted,
        Adaptive,
        Default(usize),
        Weight(usize, u16),
        ResetStats,
    }

    /// One step of a history. Leg and region numbers are reduced modulo the
    /// mirror's; `blocks` is a mask of the blocks of the region written;
    /// `lands` has bit `leg * BLOCKS + block` set if a failed (or, in a
    /// crash, an in-flight) write of that block still reached the leg.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        /// Nothing (what shrinking turns irrelevant steps into).
        Idle,
        Read {
            region: usize,
            latency_us: u64,
        },
        Write {
            region: usize,
            blocks: u8,
            lands: u16,
        },
        /// Recovery of the `pick`-th region that is not in sync (with none,
        /// just a pass of the worker).
        Resync {
            pick: usize,
            lands: u16,
        },
        SetFault {
            leg: usize,
            fault: Fault,
        },
        Message(Msg),
        Reload(Mapping),
        /// A crash with one write in flight, then a new mapping.
        Crash {
            region: usize,
            blocks: u8,
            lands: u16,
            mapping: Mapping,
        },
    }

    fn legs(set: LegSet) -> String {
        let members: Vec<String> = set.iter().map(|leg| format!("{leg}")).collect();
        format!("{{{}}}", members.join(","))
    }

    fn blocks_of(mask: u8) -> impl Iterator<Item = usize> {
        (0..BLOCKS).filter(move |b| mask & (1 << b) != 0)
    }

    fn lands(lands: u16, leg: usize, block: usize) -> bool {
        lands & (1 << (leg * BLOCKS + block)) != 0
    }

    /// Whether a write of `block` reaches a leg whose device does `fault`:
    /// always on a working one, never on a dead one, as `landing` says on
    /// one that fails writes (a torn write).
    fn written(fault: Fault, landing: u16, leg: usize, block: usize) -> bool {
        match fault {
            Fault::Ok => true,
            Fault::FailWrites => lands(landing, leg, block),
            Fault::Dead => false,
        }
    }

    /// The reference model: what each leg holds and what a read may return.
    #[derive(Debug)]
    struct Model {
        /// `data[leg][region][block]`: version held.
        data: Vec<Vec<[u32; BLOCKS]>>,
        /// Latest acknowledged version per region and block.
        latest: Vec<[u32; BLOCKS]>,
        /// Versions of writes not acknowledged since the latest one.
        unacked: Vec<Vec<Vec<u32>>>,
        next_version: u32,
        faults: Vec<Fault>,
    }

    impl Model {
        fn new(nr_legs: usize, nr_regions: usize) -> Model {
            Model {
                data: vec![vec![[0; BLOCKS]; nr_regions]; nr_legs],
                latest: vec![[0; BLOCKS]; nr_regions],
                unacked: vec![vec![Vec::new(); BLOCKS]; nr_regions],
                next_version: 1,
                faults: vec![Fault::Ok; nr_legs],
            }
        }

        fn version(&mut self) -> u32 {
            let v = self.next_version;
            self.next_version += 1;
            v
        }

        fn acceptable(&self, region: usize, block: usize, value: u32) -> bool {
            value == self.latest[region][block] || self.unacked[region][block].contains(&value)
        }

        /// Whether `leg` holds an acceptable value in every block of `region`.
        fn holds(&self, leg: usize, region: usize) -> bool {
            (0..BLOCKS).all(|b| self.acceptable(region, b, self.data[leg][region][b]))
        }

        fn holds_everything(&self, leg: usize) -> bool {
            (0..self.latest.len()).all(|r| self.holds(leg, r))
        }

        /// The legs that hold the latest data of every region.
        fn holders(&self) -> Vec<usize> {
            (0..self.data.len())
                .filter(|l| self.holds_everything(*l))
                .collect()
        }

        fn acknowledge(&mut self, region: usize, mask: u8, version: u32) {
            for b in blocks_of(mask) {
                self.latest[region][b] = version;
                self.unacked[region][b].clear();
            }
        }

        fn not_acknowledged(&mut self, region: usize, mask: u8, version: u32) {
            for b in blocks_of(mask) {
                self.unacked[region][b].push(version);
            }
        }

        fn describe(&self, region: usize) -> String {
            let mut out = format!(
                "region {region}: latest {:?} unacked {:?};",
                self.latest[region], self.unacked[region]
            );
            for (leg, data) in self.data.iter().enumerate() {
                out.push_str(&format!(" leg {leg} holds {:?}", data[region]));
            }
            out
        }
    }

    /// The system under test, as the kernel holds it.
    struct Sut {
        freshness: Freshness<Vec<u64>>,
        balancer: Balancer,
        healthy: LegSet,
        /// The dirty log's in-sync bit per region.
        log_in_sync: Vec<bool>,
        /// dm-raid1's `ms->in_sync`: errors clear when it turns true.
        ms_in_sync: bool,
        handle_errors: bool,
        keep_log: bool,
    }

    impl Sut {
        fn new(nr_legs: usize, nr_regions: usize, handle_errors: bool, keep_log: bool) -> Sut {
            let words = Freshness::<Vec<u64>>::words_needed(nr_legs, nr_regions as u64).unwrap();
            Sut {
                freshness: Freshness::new(nr_legs, nr_regions as u64, vec![0; words]).unwrap(),
                balancer: Balancer::new(nr_legs).unwrap(),
                healthy: LegSet::first_n(nr_legs),
                log_in_sync: vec![true; nr_regions],
                ms_in_sync: false,
                handle_errors,
                keep_log: keep_log && handle_errors,
            }
        }

        fn fresh(&self, region: usize) -> LegSet {
            self.freshness.fresh(region as u64).unwrap()
        }

        fn keep_default_fresh(&mut self) {
            self.freshness
                .keep_default_fresh(&mut self.balancer, self.healthy, LegSet::EMPTY);
        }
    }

    /// How often things happened, summed over all cases (to see that the
    /// generator reaches the interesting paths).
    #[derive(Clone, Copy, Debug, Default)]
    struct Coverage {
        reads_served: u64,
        reads_failed_over: u64,
        reads_eio: u64,
        writes_acked: u64,
        writes_not_acked: u64,
        copies_ok: u64,
        copies_failed: u64,
        copies_no_source: u64,
        reloads: u64,
        reloads_skipped: u64,
        full_resync_reloads: u64,
        crashes: u64,
        defaults_refused: u64,
        heals: u64,
        /// Reads under the liveness precondition (checked).
        live_reads: u64,
        /// Regions left without a fresh leg at the end.
        lost_regions: u64,
        /// ... of which some leg actually held the data (freshness was
        /// conservative).
        lost_but_held: u64,
    }

    impl Coverage {
        fn add(&mut self, other: &Coverage) {
            self.reads_served += other.reads_served;
            self.reads_failed_over += other.reads_failed_over;
            self.reads_eio += other.reads_eio;
            self.writes_acked += other.writes_acked;
            self.writes_not_acked += other.writes_not_acked;
            self.copies_ok += other.copies_ok;
            self.copies_failed += other.copies_failed;
            self.copies_no_source += other.copies_no_source;
            self.reloads += other.reloads;
            self.reloads_skipped += other.reloads_skipped;
            self.full_resync_reloads += other.full_resync_reloads;
            self.crashes += other.crashes;
            self.defaults_refused += other.defaults_refused;
            self.heals += other.heals;
            self.live_reads += other.live_reads;
            self.lost_regions += other.lost_regions;
            self.lost_but_held += other.lost_but_held;
        }
    }

    struct World {
        nr_legs: usize,
        nr_regions: usize,
        sut: Sut,
        model: Model,
        clock_ns: u64,
        step_no: usize,
        /// Every write covers its whole region: freshness then never loses
        /// track of a region some leg holds, and liveness is checked.
        whole_writes_only: bool,
        trace: Vec<String>,
        coverage: Coverage,
    }

    impl World {
        fn new(nr_legs: usize, nr_regions: usize, handle_errors: bool, keep_log: bool) -> World {
            assert!(nr_legs <= MAX_MODEL_LEGS);
            let mut world = World {
                nr_legs,
                nr_regions,
                sut: Sut::new(nr_legs, nr_regions, handle_errors, keep_log),
                model: Model::new(nr_legs, nr_regions),
                clock_ns: 0,
                step_no: 0,
                whole_writes_only: false,
                trace: Vec::new(),
                coverage: Coverage::default(),
            };
            world.note(format!(
                "mirror of {nr_legs} legs, {nr_regions} regions, handle_errors {}, keep_log {}",
                world.sut.handle_errors, world.sut.keep_log
            ));
            world.worker_pass();
            world
        }

        fn all_legs(&self) -> LegSet {
            LegSet::first_n(self.nr_legs)
        }

        fn note(&mut self, line: String) {
            self.trace.push(format!("#{} {line}", self.step_no));
        }

        /// `Err` (a failure report) unless `leg`, which a `what` ("read",
        /// "resync") of `region` was sent to, holds the region's latest data.
        fn must_hold(&mut self, leg: usize, region: usize, what: &str) -> Result<(), String> {
            if self.model.holds(leg, region) {
                return Ok(());
            }
            self.note(format!("{what} r{region}: leg {leg}"));
            Err(self.failure(
                format!(
                    "{what} of region {region} went to leg {leg}, which does not hold its \
                     latest data"
                ),
                Some(region),
            ))
        }

        /// A failure report: what went wrong, the state of the region
        /// concerned and the whole history.
        fn failure(&self, what: String, region: Option<usize>) -> String {
            let mut out = format!("FIRST LAW / FRESHNESS VIOLATION: {what}\n");
            if let Some(r) = region {
                out.push_str(&format!(
                    "  model {}\n  freshness: fresh legs {}\n",
                    self.model.describe(r),
                    legs(self.sut.fresh(r))
                ));
            }
            out.push_str(&format!(
                "  default leg {}, healthy {}, faults {:?}, log in sync {:?}\n  history:\n",
                self.sut.balancer.default_leg(),
                legs(self.sut.healthy),
                self.model.faults,
                self.sut.log_in_sync
            ));
            for line in &self.trace {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
            }
            out
        }

        /// dm-raid1's `fail_mirror`: the leg loses health; with
        /// `handle_errors`, a failed default leg hands over to the first
        /// healthy leg (`get_valid_mirror()`) unless the set is out of sync
        /// without `keep_log`. The caller then calls `keep_default_fresh`.
        fn fail_leg(&mut self, leg: usize) {
            let sut = &mut self.sut;
            sut.healthy = sut.healthy.without(leg);
            if sut.handle_errors
                && sut.balancer.default_leg() == leg
                && (sut.ms_in_sync || sut.keep_log)
            {
                if let Some(new) = sut.healthy.first() {
                    sut.balancer.set_default_leg(new).unwrap();
                }
            }
        }

        /// A pass of kmirrord's `do_recovery`: when the last region comes
        /// in sync, every leg's errors are cleared.
        fn worker_pass(&mut self) {
            if !self.sut.ms_in_sync && self.sut.log_in_sync.iter().all(|s| *s) {
                self.sut.ms_in_sync = true;
                if self.sut.healthy != self.all_legs() {
                    self.coverage.heals += 1;
                    self.note(String::from(
                        "  full resync complete: every leg healthy again",
                    ));
                }
                self.sut.healthy = self.all_legs();
                self.sut.keep_default_fresh();
            }
        }

        /// Every leg works, is healthy and holds exactly the latest data.
        fn all_latest(&self) -> bool {
            self.sut.healthy == self.all_legs()
                && self.model.faults.iter().all(|f| *f == Fault::Ok)
                && self
                    .model
                    .data
                    .iter()
                    .all(|leg| leg.iter().zip(&self.model.latest).all(|(d, l)| d == l))
        }

        /// A read of `region`; returns the leg that served it.
        fn read(&mut self, region: usize, latency_us: u64) -> Result<Option<usize>, String> {
            let request = ReadRequest {
                sector: region as u64 * REGION_SECTORS + (self.clock_ns / 1000 % 128) * 8,
                nr_sectors: 8,
                now_ns: self.clock_ns,
            };
            let latency_ns = latency_us * 1000;
            let live = self.whole_writes_only && self.all_latest();
            if live {
                self.coverage.live_reads += 1;
            }
            for attempt in 0..self.nr_legs {
                let routed = self
                    .sut
                    .freshness
                    .route_read(
                        &mut self.sut.balancer,
                        region as u64,
                        self.sut.healthy,
                        &request,
                    )
                    .unwrap();
                let Some(leg) = routed else {
                    self.note(format!("read r{region}: EIO (no healthy fresh leg)"));
                    self.coverage.reads_eio += 1;
                    if attempt == 0 && live {
                        return Err(self.failure(
                            format!(
                                "liveness: read of region {region} not routed although every \
                                 leg works, is healthy and holds the latest data"
                            ),
                            Some(region),
                        ));
                    }
                    return Ok(None);
                };
                self.must_hold(leg, region, "read")?;
                if self.model.faults[leg].reads() {
                    self.sut.balancer.complete(leg, latency_ns, true);
                    self.note(format!("read r{region}: leg {leg}"));
                    self.coverage.reads_served += 1;
                    return Ok(Some(leg));
                }
                self.sut.balancer.complete(leg, latency_ns, false);
                self.note(format!("read r{region}: leg {leg} failed, retry"));
                self.coverage.reads_failed_over += 1;
                self.fail_leg(leg);
                self.sut.keep_default_fresh();
            }
            self.note(format!("read r{region}: EIO (retries exhausted)"));
            self.coverage.reads_eio += 1;
            Ok(None)
        }

        /// A write of the blocks `mask` of `region`; returns whether it was
        /// acknowledged.
        fn write(&mut self, region: usize, mask: u8, landing: u16) -> Result<bool, String> {
            let covers = mask == ALL_BLOCKS;
            let version = self.model.version();
            let acked;
            if self.sut.log_in_sync[region] {
                let mut reached = LegSet::EMPTY;
                let mut failed = LegSet::EMPTY;
                for leg in 0..self.nr_legs {
                    let fault = self.model.faults[leg];
                    let ok = fault.writes();
                    for b in blocks_of(mask) {
                        if written(fault, landing, leg, b) {
                            self.model.data[leg][region][b] = version;
                        }
                    }
                    if ok {
                        reached = reached.with(leg);
                    } else {
                        failed = failed.with(leg);
                    }
                }
                self.sut
                    .freshness
                    .write_completed(region as u64, reached, covers)
                    .unwrap();
                for leg in failed {
                    self.fail_leg(leg);
                }
                self.sut.keep_default_fresh();
                if !failed.is_empty() {
                    // dm-raid1's do_failures: dm_rh_mark_nosync.
                    self.sut.log_in_sync[region] = false;
                    self.sut.ms_in_sync = false;
                }
                acked = !reached.is_empty()
                    && (failed.is_empty() || !self.sut.handle_errors || self.sut.keep_log);
                self.note(format!(
                    "write r{region} blocks {mask:04b} v{version} (in sync): reached {} failed {} -> {}",
                    legs(reached),
                    legs(failed),
                    if acked { "acknowledged" } else { "not acknowledged" }
                ));
            } else {
                let leg = self
                    .sut
                    .freshness
                    .out_of_sync_write_leg(
                        region as u64,
                        self.sut.balancer.default_leg(),
                        self.sut.healthy,
                    )
                    .unwrap();
                let fresh = self.sut.fresh(region);
                if !fresh.is_empty() && !fresh.contains(leg) {
                    // The write's data will be on this leg alone.
                    self.note(format!(
                        "write r{region} blocks {mask:04b} v{version} (out of sync): to leg {leg}"
                    ));
                    return Err(self.failure(
                        format!(
                            "a write to region {region} (out of sync) goes to leg {leg} alone, \
                             which is stale there, while legs {} are fresh",
                            legs(fresh)
                        ),
                        Some(region),
                    ));
                }
                let fault = self.model.faults[leg];
                acked = fault.writes();
                for b in blocks_of(mask) {
                    if written(fault, landing, leg, b) {
                        self.model.data[leg][region][b] = version;
                    }
                }
                if acked {
                    self.sut
                        .freshness
                        .write_completed(region as u64, LegSet::single(leg), covers)
                        .unwrap();
                    self.sut.keep_default_fresh();
                }
                self.note(format!(
                    "write r{region} blocks {mask:04b} v{version} (out of sync): to leg {leg} -> {}",
                    if acked { "acknowledged" } else { "EIO" }
                ));
            }
            if acked {
                self.model.acknowledge(region, mask, version);
                self.coverage.writes_acked += 1;
            } else {
                self.model.not_acknowledged(region, mask, version);
                self.coverage.writes_not_acked += 1;
            }
            Ok(acked)
        }

        /// Recovery of `region` (not in sync); returns the source leg.
        fn resync(&mut self, region: usize, landing: u16) -> Result<Option<usize>, String> {
            let source = self
                .sut
                .freshness
                .source_for(
                    region as u64,
                    self.sut.balancer.default_leg(),
                    self.sut.healthy,
                )
                .unwrap();
            let Some(source) = source else {
                self.coverage.copies_no_source += 1;
                if !self.sut.handle_errors {
                    self.sut.log_in_sync[region] = true;
                }
                self.note(format!(
                    "resync r{region}: no source; {}",
                    if self.sut.handle_errors {
                        "stays out of sync"
                    } else {
                        "marked in sync anyway"
                    }
                ));
                return Ok(None);
            };
            self.must_hold(source, region, "resync")?;
            let dests = self.all_legs().without(source);
            let read_ok = self.model.faults[source].reads();
            let mut failed = LegSet::EMPTY;
            for leg in dests {
                if !self.model.faults[leg].writes() {
                    failed = failed.with(leg);
                }
            }
            // kcopyd (no IGNORE_ERROR) stops at the first error: then every
            // destination may hold any part of the source's data.
            let stopped = !read_ok || !failed.is_empty();
            let payload = self.model.data[source][region];
            for leg in dests {
                let fault = self.model.faults[leg];
                for (b, value) in payload.iter().enumerate() {
                    let copied = if stopped {
                        fault != Fault::Dead && lands(landing, leg, b)
                    } else {
                        true
                    };
                    if copied {
                        self.model.data[leg][region][b] = *value;
                    }
                }
            }
            self.sut
                .freshness
                .copy_completed(region as u64, source, dests, failed, !read_ok)
                .unwrap();
            if !read_ok {
                self.fail_leg(source);
            }
            for leg in failed {
                self.fail_leg(leg);
            }
            self.sut.keep_default_fresh();
            let ok = read_ok && failed.is_empty();
            if ok {
                self.coverage.copies_ok += 1;
            } else {
                self.coverage.copies_failed += 1;
            }
            if ok || !self.sut.handle_errors {
                self.sut.log_in_sync[region] = true;
            }
            self.note(format!(
                "resync r{region}: from leg {source} to {}{}{} -> {}",
                legs(dests),
                if read_ok {
                    ""
                } else {
                    ", source read failed, part copied"
                },
                if failed.is_empty() {
                    String::new()
                } else {
                    format!(", writes failed on {}", legs(failed))
                },
                if ok {
                    "in sync"
                } else if self.sut.handle_errors {
                    "stays out of sync"
                } else {
                    "marked in sync anyway"
                }
            ));
            Ok(Some(source))
        }

        fn message(&mut self, msg: Msg) -> Result<Result<(), BalancerError>, String> {
            let leg_ref = |leg: usize| LegRef::by_index(leg % self.nr_legs).unwrap();
            let command = match msg {
                Msg::RoundRobin(ios) => Command::SetPolicy(PolicySpec::RoundRobin { ios }),
                Msg::Weighted => Command::SetPolicy(PolicySpec::Weighted),
                Msg::Adaptive => Command::SetPolicy(PolicySpec::Adaptive(AdaptiveParams {
                    tolerance_pct: None,
                    probe_ms: Some(0),
                })),
                Msg::Default(leg) => Command::SetDefaultLeg(leg_ref(leg)),
                Msg::Weight(leg, weight) => Command::SetWeight {
                    leg: leg_ref(leg),
                    weight,
                },
                Msg::ResetStats => Command::ResetStats,
            };
            let before = self.sut.balancer.default_leg();
            let state = self.sut.freshness.mirror_state(self.sut.healthy);
            let result = self.sut.balancer.apply(&command, &state);
            self.note(format!("message {command:?} -> {result:?}"));
            if let Command::SetDefaultLeg(leg) = command {
                let leg = leg.index();
                match result {
                    Ok(()) if !self.model.holds_everything(leg) => {
                        return Err(self.failure(
                            format!("`default {leg}` accepted but leg {leg} misses data"),
                            None,
                        ));
                    }
                    Ok(()) if !self.sut.healthy.contains(leg) => {
                        return Err(self
                            .failure(format!("`default {leg}` accepted for a failed leg"), None));
                    }
                    Ok(()) => {}
                    Err(_) => {
                        self.coverage.defaults_refused += 1;
                        if self.sut.balancer.default_leg() != before {
                            return Err(self.failure(
                                String::from("a refused `default` changed the default leg"),
                                None,
                            ));
                        }
                    }
                }
            }
            Ok(result)
        }

        /// A new mapping (after a crash with the write `in_flight`, if
        /// given), done as correct userspace does it.
        fn reload(&mut self, mapping: Mapping, in_flight: Option<(usize, u8, u16)>) {
            if self.model.holders().is_empty() {
                self.coverage.reloads_skipped += 1;
                self.note(String::from(
                    "reload skipped: no leg holds the latest data of every region",
                ));
                return;
            }
            let mut crashed_region = None;
            if let Some((region, mask, landing)) = in_flight {
                // Where the write in flight went, and how far it got.
                let version = self.model.version();
                let targets = if self.sut.log_in_sync[region] {
                    self.all_legs()
                } else {
                    LegSet::single(
                        self.sut
                            .freshness
                            .out_of_sync_write_leg(
                                region as u64,
                                self.sut.balancer.default_leg(),
                                self.sut.healthy,
                            )
                            .unwrap(),
                    )
                };
                for leg in targets {
                    for b in blocks_of(mask) {
                        if self.model.faults[leg].writes() && lands(landing, leg, b) {
                            self.model.data[leg][region][b] = version;
                        }
                    }
                }
                self.model.not_acknowledged(region, mask, version);
                crashed_region = Some(region);
                self.coverage.crashes += 1;
                self.note(format!(
                    "CRASH with write v{version} to r{region} blocks {mask:04b} in flight to {}",
                    legs(targets)
                ));
            }
            let candidates = self.model.holders();
            let first = candidates[mapping.pick % candidates.len()];
            let order: Vec<usize> = core::iter::once(first)
                .chain((0..self.nr_legs).filter(|l| *l != first))
                .collect();
            self.model.data = order.iter().map(|l| self.model.data[*l].clone()).collect();
            self.model.faults = order.iter().map(|l| self.model.faults[*l]).collect();

            let any_stale = (0..self.nr_legs).any(|l| !self.model.holds_everything(l));
            let identical = self.model.data.iter().all(|d| *d == self.model.data[0]);
            let log = match mapping.log {
                LogMode::CoreNoSync if !identical || crashed_region.is_some() => LogMode::Core,
                log => log,
            };
            let log = if any_stale { LogMode::Core } else { log };
            let mut log_in_sync = match log {
                LogMode::Disk => self.sut.log_in_sync.clone(),
                LogMode::Core => vec![false; self.nr_regions],
                LogMode::CoreNoSync => vec![true; self.nr_regions],
            };
            if let Some(region) = crashed_region {
                log_in_sync[region] = false;
            }
            if log == LogMode::Core {
                self.coverage.full_resync_reloads += 1;
            }
            self.sut = Sut::new(
                self.nr_legs,
                self.nr_regions,
                mapping.handle_errors,
                mapping.keep_log,
            );
            self.sut.log_in_sync = log_in_sync;
            let default = self.sut.balancer.default_leg();
            for region in 0..self.nr_regions {
                if !self.sut.log_in_sync[region] {
                    self.sut
                        .freshness
                        .trust_only(region as u64, default)
                        .unwrap();
                }
            }
            self.coverage.reloads += 1;
            self.note(format!(
                "reload: legs reordered {order:?} (new leg i = old leg order[i]), log {log:?}, \
                 handle_errors {}, keep_log {}",
                self.sut.handle_errors, self.sut.keep_log
            ));
        }

        fn step(&mut self, step: Step) -> Result<(), String> {
            let nr_legs = self.nr_legs;
            let nr_regions = self.nr_regions;
            self.step_no += 1;
            match step {
                Step::Idle => {}
                Step::Read { region, latency_us } => {
                    self.read(region % nr_regions, latency_us)?;
                }
                Step::Write {
                    region,
                    blocks,
                    lands,
                } => {
                    self.write(region % nr_regions, blocks, lands)?;
                }
                Step::Resync { pick, lands } => {
                    let pending: Vec<usize> = (0..nr_regions)
                        .filter(|r| !self.sut.log_in_sync[*r])
                        .collect();
                    if !pending.is_empty() {
                        self.resync(pending[pick % pending.len()], lands)?;
                    }
                }
                Step::SetFault { leg, fault } => {
                    let leg = leg % nr_legs;
                    self.model.faults[leg] = fault;
                    self.note(format!("leg {leg} device now {fault:?}"));
                }
                Step::Message(msg) => {
                    let _refused_or_not = self.message(msg)?;
                }
                Step::Reload(mapping) => self.reload(mapping, None),
                Step::Crash {
                    region,
                    blocks,
                    lands,
                    mapping,
                } => self.reload(mapping, Some((region % nr_regions, blocks, lands))),
            }
            self.worker_pass();
            self.clock_ns += 1_000_000;
            self.check()
        }

        /// The invariants that hold after every step.
        fn check(&self) -> Result<(), String> {
            for region in 0..self.nr_regions {
                for leg in self.sut.fresh(region) {
                    if !self.model.holds(leg, region) {
                        return Err(self.failure(
                            format!(
                                "Freshness calls leg {leg} fresh for region {region}, but it \
                                 does not hold the region's latest data"
                            ),
                            Some(region),
                        ));
                    }
                }
            }
            let everywhere = self.sut.freshness.fresh_everywhere();
            // The per-leg counts behind `fresh_everywhere` (and `stale` in
            // `io_balance show`) follow the bits.
            for leg in 0..self.nr_legs {
                let stale = (0..self.nr_regions)
                    .filter(|r| !self.sut.fresh(*r).contains(leg))
                    .count() as u64;
                if self.sut.freshness.stale_regions(leg) != stale
                    || everywhere.contains(leg) != (stale == 0)
                {
                    return Err(self.failure(
                        format!(
                            "leg {leg} is stale in {stale} regions, but stale_regions says {} \
                             and fresh_everywhere {}",
                            self.sut.freshness.stale_regions(leg),
                            legs(everywhere)
                        ),
                        None,
                    ));
                }
            }
            let default = self.sut.balancer.default_leg();
            if !everywhere.contains(default) {
                if let Some(better) = everywhere.intersection(self.sut.healthy).first() {
                    return Err(self.failure(
                        format!(
                            "default leg {default} is stale somewhere while healthy leg {better} \
                             is fresh everywhere"
                        ),
                        None,
                    ));
                }
            }
            Ok(())
        }

        /// Every leg repaired, every region resynchronised: all legs
        /// identical and fresh wherever some leg was known to be fresh.
        fn finish(&mut self) -> Result<(), String> {
            self.note(String::from(
                "END: every leg repaired, every region resynchronised",
            ));
            self.model.faults = vec![Fault::Ok; self.nr_legs];
            self.sut.log_in_sync = vec![false; self.nr_regions];
            self.sut.ms_in_sync = false;
            let mut sources = Vec::new();
            for region in 0..self.nr_regions {
                sources.push(self.resync(region, 0)?);
            }
            self.worker_pass();
            self.check()?;
            for (region, source) in sources.iter().enumerate() {
                if source.is_some() {
                    let identical = (1..self.nr_legs)
                        .all(|l| self.model.data[l][region] == self.model.data[0][region]);
                    if !identical || !self.model.holds(0, region) {
                        return Err(self.failure(
                            format!("after the final resync region {region} differs or is stale"),
                            Some(region),
                        ));
                    }
                    if self.sut.fresh(region) != self.all_legs() {
                        return Err(self.failure(
                            format!(
                                "after the final resync region {region} is not fresh on every leg"
                            ),
                            Some(region),
                        ));
                    }
                } else {
                    // No leg known to hold it: reads must fail.
                    if self.whole_writes_only {
                        return Err(self.failure(
                            format!(
                                "region {region} has no fresh leg after the final resync, \
                                 although every write covered its region"
                            ),
                            Some(region),
                        ));
                    }
                    self.coverage.lost_regions += 1;
                    if (0..self.nr_legs).any(|l| self.model.holds(l, region)) {
                        self.coverage.lost_but_held += 1;
                    }
                    if let Some(leg) = self.read(region, 100)? {
                        return Err(self.failure(
                            format!(
                                "region {region} has no fresh leg, yet leg {leg} served a read"
                            ),
                            Some(region),
                        ));
                    }
                }
            }
            Ok(())
        }
    }

    fn run(
        nr_legs: usize,
        nr_regions: usize,
        handle_errors: bool,
        keep_log: bool,
        partial_writes: bool,
        steps: &[Step],
    ) -> Result<Coverage, String> {
        let mut world = World::new(nr_legs, nr_regions, handle_errors, keep_log);
        world.whole_writes_only = !partial_writes;
        world.note(format!(
            "writes cover part of a region too: {partial_writes}"
        ));
        world.check()?;
        for step in steps {
            world.step(*step)?;
        }
        world.finish()?;
        Ok(world.coverage)
    }

    fn fault() -> impl Strategy<Value = Fault> {
        prop_oneof![
            4 => Just(Fault::Ok),
            3 => Just(Fault::FailWrites),
            2 => Just(Fault::Dead),
        ]
    }

    fn mapping() -> impl Strategy<Value = Mapping> {
        (
            any::<usize>(),
            prop_oneof![
                Just(LogMode::Disk),
                Just(LogMode::Core),
                Just(LogMode::CoreNoSync)
            ],
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(pick, log, handle_errors, keep_log)| Mapping {
                pick,
                log,
                handle_errors,
                keep_log,
            })
    }

    fn message() -> impl Strategy<Value = Msg> {
        prop_oneof![
            (0u32..4).prop_map(Msg::RoundRobin),
            Just(Msg::Weighted),
            Just(Msg::Adaptive),
            (0usize..MAX_MODEL_LEGS).prop_map(Msg::Default),
            (0usize..MAX_MODEL_LEGS, 0u16..4).prop_map(|(leg, w)| Msg::Weight(leg, w)),
            Just(Msg::ResetStats),
        ]
    }

    /// Block masks: whole regions often, partial writes too (if `partial`).
    fn block_mask(partial: bool) -> impl Strategy<Value = u8> {
        prop_oneof![
            1 => Just(ALL_BLOCKS),
            2 => 1u8..ALL_BLOCKS,
        ]
        .prop_map(move |mask| if partial { mask } else { ALL_BLOCKS })
    }

    /// A step; `faults` weighs device faults (0: none); `partial`: writes
    /// may cover part of a region.
    fn step(faults: u32, partial: bool) -> impl Strategy<Value = Step> {
        prop_oneof![
            1 => Just(Step::Idle),
            30 => (0usize..16, 1u64..2000)
                .prop_map(|(region, latency_us)| Step::Read { region, latency_us }),
            30 => (0usize..16, block_mask(partial), any::<u16>())
                .prop_map(|(region, blocks, lands)| Step::Write { region, blocks, lands }),
            15 => (any::<usize>(), any::<u16>())
                .prop_map(|(pick, lands)| Step::Resync { pick, lands }),
            faults => (0usize..MAX_MODEL_LEGS, fault())
                .prop_map(|(leg, fault)| Step::SetFault { leg, fault }),
            8 => message().prop_map(Step::Message),
            4 => mapping().prop_map(Step::Reload),
            3 => (0usize..16, block_mask(partial), any::<u16>(), mapping()).prop_map(
                |(region, blocks, lands, mapping)| Step::Crash {
                    region,
                    blocks,
                    lands,
                    mapping,
                }
            ),
        ]
    }

    /// Random histories keep the law; see the module documentation.
    #[test]
    fn freshness_keeps_the_first_law() {
        let config = Config {
            cases: 1000,
            failure_persistence: None,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let total = RefCell::new(Coverage::default());
        let strategy = (
            2usize..=MAX_MODEL_LEGS,
            4usize..=16,
            any::<bool>(),
            any::<bool>(),
            (
                prop_oneof![Just(0u32), Just(3), Just(10), Just(25)],
                prop_oneof![1 => Just(false), 3 => Just(true)],
            )
                .prop_flat_map(|(faults, partial)| {
                    (
                        Just(partial),
                        proptest::collection::vec(step(faults, partial), 50..300),
                    )
                }),
        );
        let result = runner.run(
            &strategy,
            |(nr_legs, nr_regions, handle_errors, keep_log, (partial, steps))| {
                let coverage = run(
                    nr_legs,
                    nr_regions,
                    handle_errors,
                    keep_log,
                    partial,
                    &steps,
                )
                .map_err(TestCaseError::fail)?;
                total.borrow_mut().add(&coverage);
                Ok(())
            },
        );
        if let Err(error) = result {
            panic!("{error}");
        }
        let total = total.into_inner();
        std::eprintln!("freshness model coverage: {total:?}");
        // The generator reaches the paths that matter.
        assert!(total.reads_served > 0 && total.reads_failed_over > 0 && total.reads_eio > 0);
        assert!(total.writes_acked > 0 && total.writes_not_acked > 0);
        assert!(total.copies_ok > 0 && total.copies_failed > 0 && total.copies_no_source > 0);
        assert!(total.reloads > 0 && total.crashes > 0 && total.full_resync_reloads > 0);
        assert!(total.defaults_refused > 0 && total.heals > 0);
    }

    fn ok<T>(result: Result<T, String>) -> T {
        result.unwrap_or_else(|error| panic!("{error}"))
    }

    fn run_steps(world: &mut World, steps: &[Step]) {
        for step in steps {
            world.step(*step).unwrap_or_else(|error| panic!("{error}"));
        }
    }

    /// Round robin `ios 1`, then 40 reads of `region`: the legs used.
    fn forty_reads(world: &mut World, region: usize) -> Vec<usize> {
        world.message(Msg::RoundRobin(1)).unwrap().unwrap();
        (0..40)
            .map(|_| {
                let leg = world.read(region, 100).unwrap_or_else(|e| panic!("{e}"));
                world.check().unwrap_or_else(|e| panic!("{e}"));
                leg.unwrap()
            })
            .collect()
    }

    /// Leg 1 fails writes; a write to region 3 misses it, and the resync
    /// copy to it fails. Without `handle_errors` the region is marked in
    /// sync anyway, and the full resync clears leg 1's errors: reads must
    /// still avoid it in region 3 (but not elsewhere).
    #[test]
    fn failed_resync_marked_in_sync_never_reads_the_stale_leg() {
        let mut world = World::new(2, 8, false, false);
        world.model.faults[1] = Fault::FailWrites;
        assert!(ok(world.write(3, 0b0011, 0)));
        world.worker_pass();
        assert_eq!(world.sut.fresh(3), LegSet::single(0));
        assert!(!world.sut.log_in_sync[3]);
        assert_eq!(world.resync(3, 0), Ok(Some(0)));
        world.worker_pass();
        assert!(world.sut.log_in_sync[3]);
        assert_eq!(world.sut.healthy, LegSet::first_n(2));
        assert_eq!(world.sut.fresh(3), LegSet::single(0));
        world.check().unwrap_or_else(|e| panic!("{e}"));
        assert!(forty_reads(&mut world, 3).iter().all(|leg| *leg == 0));
        assert!(forty_reads(&mut world, 2).contains(&1));
    }

    /// The same with the default leg 0 failing writes: reads go to leg 1,
    /// the resync copies from leg 1, and leg 1 becomes the default.
    #[test]
    fn failed_default_leg_hands_over_to_the_fresh_leg() {
        let mut world = World::new(2, 8, false, false);
        world.model.faults[0] = Fault::FailWrites;
        assert!(ok(world.write(3, 0b0001, 0)));
        world.worker_pass();
        assert_eq!(world.sut.fresh(3), LegSet::single(1));
        assert_eq!(world.sut.balancer.default_leg(), 1);
        assert_eq!(world.read(3, 100), Ok(Some(1)));
        assert_eq!(world.resync(3, 0), Ok(Some(1)));
        world.worker_pass();
        assert!(world.sut.log_in_sync[3]);
        assert_eq!(world.sut.healthy, LegSet::first_n(2));
        assert_eq!(world.sut.balancer.default_leg(), 1);
        world.check().unwrap_or_else(|e| panic!("{e}"));
        assert!(forty_reads(&mut world, 3).iter().all(|leg| *leg == 1));
        // With handle_errors the region stays out of sync instead, and the
        // reads still go to leg 1 alone.
        let mut world = World::new(3, 8, true, false);
        world.model.faults[0] = Fault::FailWrites;
        assert!(!ok(world.write(3, ALL_BLOCKS, 0b1111)));
        assert_eq!(world.sut.fresh(3), LegSet::from_bits(0b110));
        assert_eq!(world.sut.balancer.default_leg(), 1);
        assert_eq!(world.resync(3, 0), Ok(Some(1)));
        assert!(!world.sut.log_in_sync[3]);
        world.check().unwrap_or_else(|e| panic!("{e}"));
        assert!(forty_reads(&mut world, 3).iter().all(|leg| *leg != 0));
    }

    /// kcopyd stops a copy at its first error (the target never sets
    /// `IGNORE_ERROR`), so when one destination's write fails another may
    /// hold only part of the region: it must stay stale. And a copy whose
    /// source read fails writes nothing but the source's data, so a
    /// destination that was fresh stays fresh and readable (with
    /// `IGNORE_ERROR` it would be overwritten with what kcopyd's pages
    /// held, while reads could still be routed to it).
    #[test]
    fn a_copy_stopped_by_an_error_refreshes_no_destination() {
        for handle_errors in [false, true] {
            let mut world = World::new(3, 8, handle_errors, false);
            world.model.faults[1] = Fault::FailWrites;
            // Acknowledged only without handle_errors.
            assert_eq!(ok(world.write(3, ALL_BLOCKS, 0)), !handle_errors);
            assert_eq!(world.sut.fresh(3), LegSet::from_bits(0b101));
            world.model.faults[1] = Fault::Ok;
            world.model.faults[2] = Fault::FailWrites;
            // Nothing of the copy lands on leg 1 before leg 2's write fails.
            assert_eq!(world.resync(3, 0), Ok(Some(0)));
            assert_eq!(world.sut.fresh(3), LegSet::from_bits(0b001));
            world.check().unwrap_or_else(|e| panic!("{e}"));
            assert!(forty_reads(&mut world, 3).iter().all(|leg| *leg == 0));
        }
        let mut world = World::new(3, 8, false, false);
        assert!(ok(world.write(3, ALL_BLOCKS, 0)));
        world.model.faults[0] = Fault::Dead;
        assert_eq!(world.resync(3, 0b1010_1010_1010), Ok(Some(0)));
        assert_eq!(world.sut.fresh(3), LegSet::from_bits(0b111));
        world.check().unwrap_or_else(|e| panic!("{e}"));
    }

    /// `default` naming a stale leg (or a failed one) is refused and
    /// changes nothing; once the leg is fresh everywhere it is accepted.
    #[test]
    fn default_message_refuses_a_stale_leg() {
        let mut world = World::new(2, 8, false, false);
        run_steps(
            &mut world,
            &[
                Step::SetFault {
                    leg: 1,
                    fault: Fault::FailWrites,
                },
                Step::Write {
                    region: 5,
                    blocks: 0b0100,
                    lands: 0,
                },
            ],
        );
        assert!(!world.sut.healthy.contains(1));
        assert_eq!(
            world.message(Msg::Default(1)),
            Ok(Err(BalancerError::DefaultLegNotUsable(1)))
        );
        run_steps(&mut world, &[Step::Resync { pick: 0, lands: 0 }]);
        // Healthy again after the (failed) full resync, but stale.
        assert_eq!(world.sut.healthy, LegSet::first_n(2));
        assert_eq!(
            world.message(Msg::Default(1)),
            Ok(Err(BalancerError::DefaultLegStale(1)))
        );
        assert_eq!(world.sut.balancer.default_leg(), 0);
        // A write of the whole region that reaches leg 1 makes it fresh.
        world.model.faults[1] = Fault::Ok;
        run_steps(
            &mut world,
            &[Step::Write {
                region: 5,
                blocks: ALL_BLOCKS,
                lands: 0,
            }],
        );
        assert_eq!(world.message(Msg::Default(1)), Ok(Ok(())));
        assert_eq!(world.sut.balancer.default_leg(), 1);
    }
}
