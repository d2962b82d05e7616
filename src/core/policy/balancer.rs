// SPDX-License-Identifier: GPL-2.0

//! The read-balancing state of one mirror set.

use core::fmt;

use super::super::io_balance::{Command, PolicySpec, DEFAULT_WEIGHT, MAX_WEIGHT};
use super::super::legs::{LegSet, MAX_LEGS, MIN_LEGS};
use super::super::table::IoBalanceConfig;
use super::{
    LeaseGrant, LeasedReads, LegStats, Policy, ReadContext, ReadPolicy, QUEUE_DEPTH_ONE,
    QUEUE_DEPTH_SHIFT,
};

/// A read to place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadRequest {
    /// First sector (target-relative).
    pub sector: u64,
    /// Length in sectors.
    pub nr_sectors: u32,
    /// Current time in nanoseconds from a monotonic clock
    /// (`ktime_get_ns()`); used for probe timing only.
    pub now_ns: u64,
}

/// What [`Balancer::apply`] needs to know about the mirror set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MirrorState {
    /// Legs without errors.
    pub usable: LegSet,
    /// Legs that hold the latest data of every region (see
    /// [`crate::freshness::Freshness::fresh_everywhere`]).
    pub fresh_everywhere: LegSet,
}

/// Why a [`Balancer`] operation was refused; state is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BalancerError {
    /// A mirror set must have `MIN_LEGS..=MAX_LEGS` legs.
    InvalidLegCount(usize),
    /// A leg index at or beyond the number of legs.
    NoSuchLeg(usize),
    /// A weight above [`MAX_WEIGHT`].
    WeightOutOfRange(u16),
    /// `default` naming a leg that has failed.
    DefaultLegNotUsable(usize),
    /// `default` naming a leg that misses the latest data of some region:
    /// the default leg is the resynchronisation source.
    DefaultLegStale(usize),
}

impl fmt::Display for BalancerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BalancerError::InvalidLegCount(count) => {
                write!(
                    f,
                    "io_balance: invalid number of legs {count} ({MIN_LEGS}..={MAX_LEGS})"
                )
            }
            BalancerError::NoSuchLeg(leg) => write!(f, "io_balance: no leg {leg}"),
            BalancerError::WeightOutOfRange(weight) => {
                write!(
                    f,
                    "io_balance: weight {weight} out of range (0..={MAX_WEIGHT})"
                )
            }
            BalancerError::DefaultLegNotUsable(leg) => {
                write!(
                    f,
                    "io_balance: cannot make failed leg {leg} the default leg"
                )
            }
            BalancerError::DefaultLegStale(leg) => write!(
                f,
                "io_balance: cannot make leg {leg} the default leg: it does not hold the latest data of every region"
            ),
        }
    }
}

/// Read-balancing state of one mirror set: default leg, weights, active
/// policy and per-leg statistics.
///
/// Guarantees of [`Balancer::choose`]:
///
/// - it never returns a leg outside `usable` (or `>= nr_legs`): the caller
///   passes the legs that are healthy and hold the latest data of the
///   read's region, so a read never goes to a stale leg;
/// - if exactly one leg is usable, that leg is returned, whatever its
///   weight;
/// - `None` only if no leg is usable.
///
/// Every leg returned must be reported back exactly once with
/// [`Balancer::complete`] (or [`Balancer::cancel`] if the read was never
/// sent).
// INVARIANT: `MIN_LEGS <= nr_legs <= MAX_LEGS`; `default_leg < nr_legs`;
// `weights[i] <= MAX_WEIGHT`; entries of `weights` and `stats` past
// `nr_legs` are unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Balancer {
    nr_legs: u8,
    default_leg: u8,
    weights: [u16; MAX_LEGS],
    policy: Policy,
    stats: [LegStats; MAX_LEGS],
    last_usable: LegSet,
    /// Reads after the last choice that may follow it, to the same leg or
    /// to equally good legs in turn, with nothing new learned (see
    /// [`Balancer::lease`]).
    lease: LeaseGrant,
    /// Per leg, the reads already in flight when the last choice sent its
    /// read: what the queue-depth average learns from each of the lease's
    /// reads (they were not counted one by one).
    lease_ahead: [u32; MAX_LEGS],
}

impl Balancer {
    /// A balancer for `nr_legs` legs: default leg 0, all weights 1, policy
    /// `round_robin ios 0` (every read to the default leg, like upstream).
    pub fn new(nr_legs: usize) -> Result<Balancer, BalancerError> {
        if !(MIN_LEGS..=MAX_LEGS).contains(&nr_legs) {
            return Err(BalancerError::InvalidLegCount(nr_legs));
        }
        Ok(Balancer {
            nr_legs: u8::try_from(nr_legs).map_err(|_| BalancerError::InvalidLegCount(nr_legs))?,
            default_leg: 0,
            weights: [DEFAULT_WEIGHT; MAX_LEGS],
            policy: Policy::from_spec(&PolicySpec::UPSTREAM, 0),
            stats: [LegStats::default(); MAX_LEGS],
            last_usable: LegSet::first_n(nr_legs),
            lease: LeaseGrant::NONE,
            lease_ahead: [0; MAX_LEGS],
        })
    }

    /// A balancer for `nr_legs` legs configured by a table's `io_balance`
    /// features; `default_policy` (the `default_io_balance` module
    /// parameter) is the policy when the features select none.
    pub fn from_config(
        nr_legs: usize,
        config: &IoBalanceConfig,
        default_policy: Option<PolicySpec>,
    ) -> Result<Balancer, BalancerError> {
        let mut balancer = Balancer::new(nr_legs)?;
        if let Some(leg) = config.default_leg() {
            balancer.default_leg = balancer.leg_u8(leg.index())?;
        }
        for leg in 0..nr_legs {
            if let Some(weight) = config.weight(leg) {
                balancer.check_weight(weight)?;
                if let Some(slot) = balancer.weights.get_mut(leg) {
                    *slot = weight;
                }
            }
        }
        // Reject weights for legs that do not exist.
        if let Some(leg) = (nr_legs..MAX_LEGS).find(|leg| config.weight(*leg).is_some()) {
            return Err(BalancerError::NoSuchLeg(leg));
        }
        let spec = config
            .policy()
            .or(default_policy)
            .unwrap_or(PolicySpec::UPSTREAM);
        balancer.policy = Policy::from_spec(&spec, balancer.default_leg());
        Ok(balancer)
    }

    fn leg_u8(&self, leg: usize) -> Result<u8, BalancerError> {
        if leg < self.nr_legs() {
            u8::try_from(leg).map_err(|_| BalancerError::NoSuchLeg(leg))
        } else {
            Err(BalancerError::NoSuchLeg(leg))
        }
    }

    fn check_weight(&self, weight: u16) -> Result<(), BalancerError> {
        if weight <= MAX_WEIGHT {
            Ok(())
        } else {
            Err(BalancerError::WeightOutOfRange(weight))
        }
    }

    /// Number of legs.
    pub fn nr_legs(&self) -> usize {
        usize::from(self.nr_legs)
    }

    /// The default leg.
    pub fn default_leg(&self) -> usize {
        usize::from(self.default_leg)
    }

    /// A leg's weight (`None` for no such leg).
    pub fn weight(&self, leg: usize) -> Option<u16> {
        if leg < self.nr_legs() {
            self.weights.get(leg).copied()
        } else {
            None
        }
    }

    /// The active policy and its effective parameters.
    pub fn policy(&self) -> PolicySpec {
        self.policy.spec()
    }

    /// The active policy's internal state (for tests and debugging).
    pub fn policy_state(&self) -> Policy {
        self.policy
    }

    /// A leg's statistics (`None` for no such leg).
    pub fn stats(&self, leg: usize) -> Option<&LegStats> {
        if leg < self.nr_legs() {
            self.stats.get(leg)
        } else {
            None
        }
    }

    /// Chooses the leg to read from (see the type's guarantees) and accounts
    /// the read to it.
    pub fn choose(&mut self, usable: LegSet, read: &ReadRequest) -> Option<usize> {
        let usable = usable.intersection(LegSet::first_n(self.nr_legs()));
        self.note_usable(usable);
        let default_leg = self.default_leg();

        let leg = if let Some(only) = usable.only_member() {
            // No choice to make until the usable legs change.
            self.lease = LeaseGrant {
                legs: usable,
                first: only,
                reads: super::lease::MAX_LEASE_READS,
                next_sector: 0,
            };
            only
        } else {
            let context = ReadContext {
                usable,
                nr_legs: self.nr_legs(),
                default_leg,
                weights: &self.weights,
                stats: &self.stats,
                read,
            };
            let chosen = self.policy.choose(&context);
            self.lease = LeaseGrant::NONE;
            match chosen {
                Some(leg) if usable.contains(leg) => {
                    // Several legs take turns from the one after `leg`.
                    let legs = self.policy.lease_legs(leg).intersection(usable).with(leg);
                    self.lease = LeaseGrant {
                        legs,
                        first: legs.next_after(leg).unwrap_or(leg),
                        reads: self.policy.lease_reads(leg),
                        next_sector: 0,
                    };
                    leg
                }
                _ => usable.at_or_before(default_leg)?,
            }
        };
        self.lease.next_sector = read.sector.saturating_add(u64::from(read.nr_sectors));
        for other in self.lease.legs {
            if let (Some(stats), Some(ahead)) =
                (self.stats.get(other), self.lease_ahead.get_mut(other))
            {
                *ahead = stats.in_flight;
            }
        }

        if let Some(stats) = self.stats.get_mut(leg) {
            // User reads are never measurements: probes are private.
            stats.record_dispatch(read, false);
        }
        if let Some(probed) = self.policy.take_probe_request() {
            if let Some(stats) = self
                .stats
                .get_mut(probed)
                .filter(|_| usable.contains(probed))
            {
                if stats.probe_reads_due == 0 {
                    stats.probe_reads_due = super::adaptive::PROBE_READS;
                }
            }
        }
        Some(leg)
    }

    /// Where the policy would send the reads after the last
    /// [`Balancer::choose`] (of the same usable legs) with nothing new
    /// learned: a [`super::ReadLease`] may route them without the lock.
    /// No reads after a choice that was not the policy's to make.
    pub fn lease(&self) -> LeaseGrant {
        self.lease
    }

    /// How many reads [`Balancer::lease`] grants.
    pub fn lease_reads(&self) -> u32 {
        self.lease.reads
    }

    /// Accounts the reads a [`super::ReadLease`] sent to `leased.legs` as
    /// [`Balancer::choose`] would have, as if dispatched at `now_ns`.
    pub fn account_leased(&mut self, leased: &LeasedReads, now_ns: u64) {
        let nr_legs = self.nr_legs();
        let last = leased.last_leg();
        for leg in leased.legs.intersection(LegSet::first_n(nr_legs)) {
            let reads = leased.reads_on(leg);
            let (Some(stats), Some(ahead)) = (self.stats.get_mut(leg), self.lease_ahead.get(leg))
            else {
                continue;
            };
            if reads > 0 {
                let next_sector = (last == Some(leg)).then_some(leased.next_sector);
                stats.record_leased(reads, *ahead, next_sector, now_ns);
            }
        }
        self.policy.note_leased(leased);
    }

    /// Accounts `sectors` read from `leg` through leases.
    pub fn account_leased_sectors(&mut self, leg: usize, sectors: u64) {
        let nr_legs = self.nr_legs();
        if let Some(stats) = self.stats.get_mut(..nr_legs).and_then(|s| s.get_mut(leg)) {
            stats.sectors = stats.sectors.saturating_add(sectors);
        }
    }

    /// Forgets the estimates of legs that just became usable again: their
    /// old latency says nothing about the repaired device.
    fn note_usable(&mut self, usable: LegSet) {
        if usable == self.last_usable {
            return;
        }
        let revived = LegSet::from_bits(usable.bits() & !self.last_usable.bits());
        for leg in revived {
            if let Some(stats) = self.stats.get_mut(leg) {
                stats.forget_estimates();
            }
        }
        self.last_usable = usable;
    }

    /// Reports the completion of a read sent to `leg` by [`Balancer::choose`]:
    /// `latency_ns` from dispatch to completion, `ok` false on error.
    pub fn complete(&mut self, leg: usize, latency_ns: u64, ok: bool) {
        self.complete_sized(leg, latency_ns, super::REFERENCE_SECTORS, ok);
    }

    /// [`Balancer::complete`] for a read of `nr_sectors`: reads larger than
    /// the reference size also measure the leg's transfer cost.
    pub fn complete_sized(&mut self, leg: usize, latency_ns: u64, nr_sectors: u32, ok: bool) {
        if leg >= self.nr_legs() {
            return;
        }
        if let Some(stats) = self.stats.get_mut(leg) {
            stats.record_completion(latency_ns, nr_sectors, ok);
        }
        if ok {
            self.policy.complete(leg, latency_ns);
        }
    }

    /// Whether some leg of `usable` wants a probe read now (see
    /// [`Balancer::next_probe_read`]): cheap, for the read path.
    pub fn wants_probe_read(&self, usable: LegSet) -> bool {
        self.policy.needs_measured_legs()
            && usable
                .intersection(LegSet::first_n(self.nr_legs()))
                .iter()
                .any(|leg| self.stats.get(leg).is_some_and(LegStats::wants_probe_read))
    }

    /// The leg of `usable` to send a private probe read now, if any, and
    /// accounts it as sent at `now_ns`.
    ///
    /// A policy that reads only measured legs (adaptive) sends no user read
    /// to a leg with fewer than [`super::WARMUP_SAMPLES`] samples, and
    /// never probes a leg with a user read; the caller measures legs with
    /// reads of its own (private buffers, one at a time per leg): warm-up
    /// reads of an unmeasured leg from when the mapping resumes, and the
    /// [`super::adaptive::PROBE_READS`] reads of each probe the policy asks
    /// for. It reports each with [`Balancer::complete_probe_read`]. Until a
    /// leg is measured, user reads go to the measured legs, or where
    /// dm-raid1 would send them if none is.
    pub fn next_probe_read(&mut self, usable: LegSet, now_ns: u64) -> Option<usize> {
        if !self.policy.needs_measured_legs() {
            return None;
        }
        let usable = usable.intersection(LegSet::first_n(self.nr_legs()));
        self.note_usable(usable);
        let leg = usable
            .iter()
            .find(|leg| self.stats.get(*leg).is_some_and(LegStats::wants_probe_read))?;
        let stats = self.stats.get_mut(leg)?;
        if stats.is_measured() {
            // A probe's reads one after the other: the first wakes the leg
            // up, the others measure it awake (they count in full).
            let first = stats.probe_reads_due == super::adaptive::PROBE_READS;
            stats.probe_reads_due = stats.probe_reads_due.saturating_sub(1);
            if stats.in_flight == 0 {
                stats.measurement_pending = !first;
            }
        }
        stats.probe_started_ns = Some(now_ns);
        stats.probe_reads = stats.probe_reads.saturating_add(1);
        stats.in_flight = stats.in_flight.saturating_add(1);
        stats.last_dispatch_ns = now_ns;
        Some(leg)
    }

    /// The probe read of `nr_sectors` sent to `leg` completed at `now_ns`
    /// (`ok`: without an error); its latency is a sample like a user
    /// read's.
    pub fn complete_probe_read(&mut self, leg: usize, now_ns: u64, nr_sectors: u32, ok: bool) {
        let nr_legs = self.nr_legs();
        let Some(stats) = self.stats.get_mut(..nr_legs).and_then(|s| s.get_mut(leg)) else {
            return;
        };
        let Some(started) = stats.probe_started_ns.take() else {
            return;
        };
        let was_measured = stats.is_measured();
        stats.record_completion(now_ns.saturating_sub(started), nr_sectors, ok);
        if !ok {
            stats.probe_failed = true;
        }
        if was_measured || !stats.is_measured() {
            return;
        }
        // Measured now, idle: give it the load of the least loaded measured
        // peer. Measured at depth 0, it would be predicted to slow down with
        // every read in flight, get reads only when idle and so never show
        // how it copes with load (a fixed point: 25% of the reads for one of
        // two equal legs while the other kept its queue).
        let peers = self
            .stats
            .iter()
            .take(nr_legs)
            .enumerate()
            .filter(|(other, s)| *other != leg && s.is_measured())
            .map(|(_, s)| s.queue_depth_x256)
            .min();
        if let (Some(depth), Some(stats)) = (peers, self.stats.get_mut(leg)) {
            stats.queue_depth_x256 = depth;
        }
    }

    /// Undoes [`Balancer::next_probe_read`] for a read that was never
    /// sent (no memory, or dm-io refused it); the rest of a probe is
    /// dropped.
    pub fn cancel_probe_read(&mut self, leg: usize) {
        let nr_legs = self.nr_legs();
        let Some(stats) = self.stats.get_mut(..nr_legs).and_then(|s| s.get_mut(leg)) else {
            return;
        };
        if stats.probe_started_ns.take().is_some() {
            stats.in_flight = stats.in_flight.saturating_sub(1);
            stats.probe_reads = stats.probe_reads.saturating_sub(1);
            stats.probe_reads_due = 0;
            stats.measurement_pending = false;
        }
    }

    /// Undoes the in-flight accounting of a read chosen for `leg` that was
    /// never sent.
    pub fn cancel(&mut self, leg: usize) {
        if leg >= self.nr_legs() {
            return;
        }
        if let Some(stats) = self.stats.get_mut(leg) {
            stats.in_flight = stats.in_flight.saturating_sub(1);
        }
    }

    /// Sets the default leg without the checks of the `default` message:
    /// for the kernel's own use, e.g. when the default leg fails and
    /// dm-raid1 picks a new one.
    pub fn set_default_leg(&mut self, leg: usize) -> Result<(), BalancerError> {
        self.default_leg = self.leg_u8(leg)?;
        self.policy.reset();
        Ok(())
    }

    /// Zeroes the per-leg counters (reads, sectors, errors); in-flight
    /// accounting and latency estimates are kept.
    pub fn reset_stats(&mut self) {
        for stats in &mut self.stats {
            stats.reset_counters();
        }
    }

    /// Applies a parsed message. Everything is validated first, so on error
    /// nothing has changed. [`Command::Show`] changes nothing (the caller
    /// answers it with [`Balancer::write_report`]).
    pub fn apply(&mut self, command: &Command, state: &MirrorState) -> Result<(), BalancerError> {
        match *command {
            // Selecting a policy (even the active one) starts it afresh;
            // the latency estimates live in `stats` and are kept.
            Command::SetPolicy(spec) => self.policy = Policy::from_spec(&spec, self.default_leg()),
            Command::SetDefaultLeg(leg) => {
                let index = self.leg_u8(leg.index())?;
                if !state.usable.contains(leg.index()) {
                    return Err(BalancerError::DefaultLegNotUsable(leg.index()));
                }
                if !state.fresh_everywhere.contains(leg.index()) {
                    return Err(BalancerError::DefaultLegStale(leg.index()));
                }
                self.default_leg = index;
                self.policy.reset();
            }
            Command::SetWeight { leg, weight } => {
                self.leg_u8(leg.index())?;
                self.check_weight(weight)?;
                if let Some(slot) = self.weights.get_mut(leg.index()) {
                    *slot = weight;
                }
                if matches!(self.policy, Policy::Weighted(_)) {
                    self.policy.reset();
                } else {
                    self.policy = Policy::from_spec(&PolicySpec::Weighted, self.default_leg());
                }
            }
            Command::ResetStats => self.reset_stats(),
            Command::Show => {}
        }
        Ok(())
    }

    /// Writes the `io_balance show` report:
    ///
    /// ```text
    /// policy adaptive tolerance 25 probe_ms 1000
    /// default 0 253:3
    /// leg 0 253:3 usable weight 1 reads 1200 sectors 9600 in_flight 1 errors 0 latency_ns 81234 queue_depth 0.75 samples 1203 stale 0 probe_reads 4 ns_per_sector 12
    /// leg 1 253:4 failed weight 1 reads 3 sectors 24 in_flight 0 errors 1 latency_ns - queue_depth 0.00 samples 0 stale 12 probe_reads 4 ns_per_sector 0
    /// ```
    ///
    /// one line each, every line ending in `\n`; `leg_names` are the legs'
    /// device names (a missing name prints as `-`), `usable` the legs
    /// without errors, `stale_regions` per leg the number of regions whose
    /// latest data it does not hold (missing entries print as 0). Less than
    /// 3500 bytes even for [`MAX_LEGS`] legs with every counter at its
    /// maximum.
    pub fn write_report(
        &self,
        out: &mut dyn fmt::Write,
        leg_names: &[&str],
        usable: LegSet,
        stale_regions: &[u64],
    ) -> fmt::Result {
        let name = |leg: usize| leg_names.get(leg).copied().unwrap_or("-");
        out.write_str("policy ")?;
        self.policy.spec().write_words(out)?;
        out.write_char('\n')?;
        writeln!(
            out,
            "default {} {}",
            self.default_leg,
            name(self.default_leg())
        )?;
        for (leg, stats) in self.stats.iter().enumerate().take(self.nr_legs()) {
            let state = if usable.contains(leg) {
                "usable"
            } else {
                "failed"
            };
            let weight = self.weights.get(leg).copied().unwrap_or(0);
            write!(
                out,
                "leg {leg} {} {state} weight {weight} reads {} sectors {} in_flight {} errors {} latency_ns ",
                name(leg),
                stats.reads,
                stats.sectors,
                stats.in_flight,
                stats.errors
            )?;
            if stats.samples > 0 {
                write!(out, "{}", stats.latency_ns)?;
            } else {
                out.write_char('-')?;
            }
            let whole = stats.queue_depth_x256 >> QUEUE_DEPTH_SHIFT;
            let fraction = stats.queue_depth_x256 & QUEUE_DEPTH_ONE.wrapping_sub(1);
            let hundredths = fraction.saturating_mul(100) >> QUEUE_DEPTH_SHIFT;
            writeln!(
                out,
                " queue_depth {whole}.{hundredths:02} samples {} stale {} probe_reads {} ns_per_sector {}",
                stats.samples,
                stale_regions.get(leg).copied().unwrap_or(0),
                stats.probe_reads,
                stats.ns_per_sector
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::needless_range_loop,
    clippy::type_complexity
)]
mod tests {
    use super::super::super::io_balance::AdaptiveParams;
    use super::super::super::legs::LegRef;
    use super::super::super::message::parse_message;
    use super::super::{LeaseGrant, MAX_LEASE_READS};
    use super::*;
    use proptest::prelude::*;
    use std::string::String;
    use std::vec::Vec;

    const NAMES: [&str; MAX_LEGS] = [
        "7:0", "7:1", "7:2", "7:3", "7:4", "7:5", "7:6", "7:7", "7:8",
    ];

    fn read(sector: u64) -> ReadRequest {
        ReadRequest {
            sector,
            nr_sectors: 8,
            now_ns: 0,
        }
    }

    fn all_in_sync(nr_legs: usize) -> MirrorState {
        MirrorState {
            usable: LegSet::first_n(nr_legs),
            fresh_everywhere: LegSet::first_n(nr_legs),
        }
    }

    fn message(balancer: &mut Balancer, line: &str) -> Result<(), BalancerError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let names = NAMES.get(..balancer.nr_legs()).unwrap();
        let super::super::super::message::Message::IoBalance(command) =
            parse_message(&words, names).unwrap()
        else {
            panic!("not an io_balance message: {line}");
        };
        balancer.apply(&command, &all_in_sync(balancer.nr_legs()))
    }

    /// Chooses `reads` times (completing each read at once) and counts the
    /// reads per leg.
    fn counts(balancer: &mut Balancer, usable: LegSet, reads: usize) -> [usize; MAX_LEGS] {
        let mut counts = [0; MAX_LEGS];
        for i in 0..reads {
            let leg = balancer.choose(usable, &read(i as u64 * 64)).unwrap();
            counts[leg] += 1;
            balancer.complete(leg, 1000, true);
        }
        counts
    }

    /// Sends `reads` sequential reads (none completes) as the kernel does:
    /// through the lease while it lasts, else a choice under the "lock",
    /// which first ends the lease and accounts its reads, then grants the
    /// choice's lease. Returns the legs in order.
    fn leased_reads(balancer: &mut Balancer, usable: LegSet, reads: usize) -> Vec<usize> {
        leased_reads_at(balancer, usable, reads, 8).0
    }

    /// [`leased_reads`] of reads `stride` sectors apart; also returns how
    /// many went through the lease.
    fn leased_reads_at(
        balancer: &mut Balancer,
        usable: LegSet,
        reads: usize,
        stride: u64,
    ) -> (Vec<usize>, usize) {
        let lease = super::super::ReadLease::new();
        let mut legs = Vec::new();
        let mut by_lease = 0;
        let lock = |balancer: &mut Balancer| {
            lease.end_into(balancer, || 0);
        };
        for i in 0..reads {
            let r = read(i as u64 * stride);
            let leg = match lease.take(r.sector, r.nr_sectors) {
                Some(leg) => {
                    by_lease += 1;
                    leg
                }
                None => {
                    lock(balancer);
                    let leg = balancer.choose(usable, &r).unwrap();
                    lease.grant(balancer.lease());
                    leg
                }
            };
            legs.push(leg);
        }
        lock(balancer);
        (legs, by_lease)
    }

    #[test]
    fn leased_reads_go_and_count_as_chosen_ones() {
        // Round robin, batches of 5 and every read to the default leg: the
        // policy's choices are foregone, so the leased reads go where the
        // choices would have sent them and the accounts come out the same.
        for spec in ["round_robin ios 5", "round_robin ios 0", "default 7:1"] {
            let mut locked = Balancer::new(3).unwrap();
            message(&mut locked, &std::format!("io_balance {spec}")).unwrap();
            let mut leased = locked;
            let usable = LegSet::first_n(3);
            let expected: Vec<usize> = (0..40)
                .map(|i| locked.choose(usable, &read(i * 8)).unwrap())
                .collect();
            assert_eq!(leased_reads(&mut leased, usable, 40), expected, "{spec}");
            // (The queue-depth averages differ: with no completion, every
            // chosen read finds one more in flight, while a lease's reads
            // count as finding what its choice found.)
            for leg in 0..3 {
                let (a, b) = (locked.stats(leg).unwrap(), leased.stats(leg).unwrap());
                assert_eq!(
                    (a.reads, a.sectors, a.in_flight, a.next_sector),
                    (b.reads, b.sectors, b.in_flight, b.next_sector),
                    "{spec}, leg {leg}"
                );
            }
        }
    }

    #[test]
    fn no_lease_without_a_foregone_choice() {
        let mut balancer = Balancer::new(3).unwrap();
        message(&mut balancer, "io_balance weighted").unwrap();
        balancer.choose(LegSet::first_n(3), &read(0)).unwrap();
        assert_eq!(balancer.lease_reads(), 0);
        // One usable leg: nothing to choose until that changes.
        balancer.choose(LegSet::single(2), &read(0)).unwrap();
        assert_eq!(balancer.lease_reads(), MAX_LEASE_READS);
        // Adaptive: none while a leg is unmeasured, none between legs that
        // share the reads, all for a clear winner.
        message(&mut balancer, "io_balance adaptive").unwrap();
        let legs = LegSet::first_n(2);
        let leg = balancer.choose(legs, &read(0)).unwrap();
        assert_eq!(balancer.lease_reads(), 0);
        balancer.cancel(leg);
        for leg in 0..2 {
            for _ in 0..super::super::WARMUP_SAMPLES {
                balancer.complete(leg, 1000, true);
            }
        }
        // Equal legs: in turn, from the one after the chosen leg.
        let leg = balancer.choose(legs, &read(0)).unwrap();
        assert_eq!(
            balancer.lease(),
            LeaseGrant {
                legs,
                first: 1 - leg,
                reads: u32::from(super::super::adaptive::LEASE_READS),
                next_sector: 8,
            },
            "equal legs"
        );
        balancer.cancel(leg);
        for _ in 0..200 {
            balancer.complete(1, 100_000, true);
        }
        assert_eq!(balancer.choose(legs, &read(0)), Some(0));
        assert_eq!(
            balancer.lease_reads(),
            u32::from(super::super::adaptive::LEASE_READS)
        );
        assert_eq!(balancer.lease().legs, LegSet::single(0));
        balancer.cancel(0);
        // Two equal legs next to a slow one: the two in turn.
        let mut balancer = Balancer::new(3).unwrap();
        message(&mut balancer, "io_balance adaptive").unwrap();
        for leg in 0..3 {
            for _ in 0..super::super::WARMUP_SAMPLES {
                balancer.complete(leg, if leg == 1 { 100_000 } else { 1000 }, true);
            }
        }
        let leg = balancer.choose(LegSet::first_n(3), &read(0)).unwrap();
        assert_ne!(leg, 1);
        assert_eq!(balancer.lease().legs, LegSet::EMPTY.with(0).with(2));
        assert!(balancer.lease_reads() > 0);
    }

    #[test]
    fn reads_leased_in_turn_go_and_count_as_chosen_ones() {
        // Adaptive between two measured equal legs, reads that never
        // complete and never continue each other: the chosen reads go to
        // the less loaded leg, the leased ones take turns; both keep the
        // legs within a read of each other, and the accounts of the
        // leased reads come out as those of the chosen ones.
        let mut locked = Balancer::new(2).unwrap();
        message(&mut locked, "io_balance adaptive").unwrap();
        for leg in 0..2 {
            for _ in 0..super::super::WARMUP_SAMPLES {
                locked.complete(leg, 1000, true);
            }
        }
        let mut leased = locked;
        let usable = LegSet::first_n(2);
        let expected: Vec<usize> = (0..40)
            .map(|i| locked.choose(usable, &read(i * 64)).unwrap())
            .collect();
        let (legs, by_lease) = leased_reads_at(&mut leased, usable, 40, 64);
        assert!(by_lease >= 30, "{by_lease} of 40 leased");
        for sequence in [&expected, &legs] {
            let mut counts = [0i32; 2];
            for leg in sequence.iter() {
                counts[*leg] += 1;
                assert!((counts[0] - counts[1]).abs() <= 1, "{sequence:?}");
            }
        }
        for leg in 0..2 {
            let (a, b) = (locked.stats(leg).unwrap(), leased.stats(leg).unwrap());
            assert_eq!(
                (a.reads, a.sectors, a.in_flight),
                (b.reads, b.sectors, b.in_flight),
                "leg {leg}"
            );
        }
    }

    #[test]
    fn new_balancer_reads_the_default_leg_like_upstream() {
        let mut balancer = Balancer::new(3).unwrap();
        assert_eq!(balancer.policy(), PolicySpec::UPSTREAM);
        assert_eq!(
            counts(&mut balancer, LegSet::first_n(3), 10),
            [10, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        // Default failed: choose_mirror() order, downwards from it (wrapping).
        assert_eq!(counts(&mut balancer, LegSet::from_bits(0b110), 4)[2], 4);
        assert!(Balancer::new(1).is_err());
        assert!(Balancer::new(10).is_err());
    }

    #[test]
    fn reads_go_only_where_the_caller_allows() {
        let mut balancer = Balancer::new(2).unwrap();
        message(&mut balancer, "io_balance round_robin ios 1").unwrap();
        // Only leg 1 holds the region's data: even the default leg is not read.
        for _ in 0..4 {
            assert_eq!(balancer.choose(LegSet::single(1), &read(0)), Some(1));
        }
        assert_eq!(balancer.choose(LegSet::EMPTY, &read(0)), None);
        assert_eq!(balancer.stats(1).unwrap().in_flight, 4);
        assert_eq!(balancer.stats(0).unwrap().in_flight, 0);
    }

    #[test]
    fn single_usable_leg_is_used_even_with_weight_zero() {
        let mut balancer = Balancer::new(3).unwrap();
        message(&mut balancer, "io_balance weight 7:2 0").unwrap();
        assert_eq!(balancer.policy(), PolicySpec::Weighted);
        assert_eq!(counts(&mut balancer, LegSet::single(2), 3)[2], 3);
        assert_eq!(
            counts(&mut balancer, LegSet::first_n(3), 4),
            [2, 2, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn usable_bits_beyond_the_legs_are_ignored() {
        let mut balancer = Balancer::new(2).unwrap();
        message(&mut balancer, "io_balance round_robin ios 1").unwrap();
        let c = counts(&mut balancer, LegSet::from_bits(u16::MAX), 20);
        assert_eq!(c[..2], [10, 10]);
    }

    #[test]
    fn default_message_checks_state() {
        let mut balancer = Balancer::new(3).unwrap();
        let default_to = |leg| Command::SetDefaultLeg(LegRef::by_index(leg).unwrap());
        let degraded = MirrorState {
            usable: LegSet::from_bits(0b011),
            fresh_everywhere: LegSet::first_n(3),
        };
        assert_eq!(
            balancer.apply(&default_to(2), &degraded),
            Err(BalancerError::DefaultLegNotUsable(2))
        );
        let resyncing = MirrorState {
            usable: LegSet::first_n(3),
            fresh_everywhere: LegSet::single(0),
        };
        assert_eq!(
            balancer.apply(&default_to(1), &resyncing),
            Err(BalancerError::DefaultLegStale(1))
        );
        assert_eq!(balancer.apply(&default_to(0), &resyncing), Ok(()));
        // A stale default leg can be left for a fresh one.
        let default_stale = MirrorState {
            usable: LegSet::first_n(3),
            fresh_everywhere: LegSet::single(2),
        };
        assert_eq!(
            balancer.apply(&default_to(0), &default_stale),
            Err(BalancerError::DefaultLegStale(0))
        );
        assert_eq!(balancer.apply(&default_to(2), &default_stale), Ok(()));
        assert_eq!(balancer.apply(&default_to(0), &resyncing), Ok(()));
        assert_eq!(balancer.default_leg(), 0);
        assert_eq!(balancer.apply(&default_to(1), &degraded), Ok(()));
        assert_eq!(balancer.default_leg(), 1);
        assert_eq!(counts(&mut balancer, LegSet::first_n(3), 3)[1], 3);
    }

    #[test]
    fn failed_apply_changes_nothing() {
        let mut balancer = Balancer::new(3).unwrap();
        message(&mut balancer, "io_balance adaptive").unwrap();
        counts(&mut balancer, LegSet::first_n(3), 7);
        let before = balancer;
        let bad = [
            Command::SetWeight {
                leg: LegRef::by_index(5).unwrap(),
                weight: 1,
            },
            Command::SetWeight {
                leg: LegRef::by_index(1).unwrap(),
                weight: MAX_WEIGHT + 1,
            },
            Command::SetDefaultLeg(LegRef::by_index(3).unwrap()),
        ];
        for command in bad {
            assert!(balancer.apply(&command, &all_in_sync(3)).is_err());
            assert_eq!(balancer, before);
        }
        assert!(balancer.set_default_leg(3).is_err());
        assert_eq!(balancer, before);
    }

    #[test]
    fn from_config_applies_table_features() {
        let mut config = IoBalanceConfig::default();
        config.apply(&Command::SetDefaultLeg(LegRef::by_name(1).unwrap()));
        config.apply(&Command::SetWeight {
            leg: LegRef::by_index(0).unwrap(),
            weight: 3,
        });
        let balancer = Balancer::from_config(2, &config, None).unwrap();
        assert_eq!(balancer.default_leg(), 1);
        assert_eq!(balancer.weight(0), Some(3));
        assert_eq!(balancer.weight(1), Some(DEFAULT_WEIGHT));
        assert_eq!(balancer.policy(), PolicySpec::Weighted);
        assert_eq!(
            Balancer::from_config(1, &config, None),
            Err(BalancerError::InvalidLegCount(1))
        );

        let mut config = IoBalanceConfig::default();
        config.apply(&Command::SetWeight {
            leg: LegRef::by_index(4).unwrap(),
            weight: 3,
        });
        assert_eq!(
            Balancer::from_config(3, &config, None),
            Err(BalancerError::NoSuchLeg(4))
        );
        assert_eq!(
            Balancer::from_config(3, &IoBalanceConfig::default(), None).unwrap(),
            Balancer::new(3).unwrap()
        );
    }

    #[test]
    fn report_text() {
        let mut balancer = Balancer::new(2).unwrap();
        message(&mut balancer, "io_balance adaptive").unwrap();
        let leg = balancer.choose(LegSet::first_n(2), &read(0)).unwrap();
        balancer.complete(leg, 81_234, true);
        let leg = balancer.choose(LegSet::first_n(2), &read(100)).unwrap();
        balancer.complete(leg, 5, false);
        balancer.choose(LegSet::first_n(2), &read(200)).unwrap();
        // A warm-up read of leg 1, in flight.
        assert_eq!(balancer.next_probe_read(LegSet::single(1), 0), Some(1));
        let mut out = String::new();
        // Adaptive with no measured leg reads the default leg: 0, 0, 0.
        balancer
            .write_report(&mut out, &NAMES[..2], LegSet::single(1), &[0, 3])
            .unwrap();
        assert_eq!(
            out,
            "policy adaptive tolerance 25 probe_ms 1000\n\
             default 0 7:0\n\
             leg 0 7:0 failed weight 1 reads 3 sectors 24 in_flight 1 errors 1 latency_ns 81234 queue_depth 0.00 samples 1 stale 0 probe_reads 0 ns_per_sector 0\n\
             leg 1 7:1 usable weight 1 reads 0 sectors 0 in_flight 1 errors 0 latency_ns - queue_depth 0.00 samples 0 stale 3 probe_reads 1 ns_per_sector 0\n"
        );
        message(&mut balancer, "io_balance reset_stats").unwrap();
        let stats = balancer.stats(0).unwrap();
        assert_eq!(
            (stats.reads, stats.sectors, stats.in_flight, stats.samples),
            (0, 0, 1, 1)
        );
        let stats = balancer.stats(1).unwrap();
        assert_eq!((stats.probe_reads, stats.in_flight), (0, 1));
        let mut out = String::new();
        message(&mut balancer, "io_balance round_robin ios 3").unwrap();
        balancer
            .write_report(&mut out, &[], LegSet::EMPTY, &[])
            .unwrap();
        assert!(
            out.starts_with("policy round_robin ios 3\ndefault 0 -\nleg 0 - failed"),
            "{out}"
        );
    }

    #[test]
    fn report_fits_in_3500_bytes() {
        let mut balancer = Balancer::new(MAX_LEGS).unwrap();
        for leg in 0..MAX_LEGS {
            let stats = balancer.stats.get_mut(leg).unwrap();
            *stats = LegStats {
                reads: u64::MAX,
                sectors: u64::MAX,
                errors: u64::MAX,
                in_flight: u32::MAX,
                samples: u64::MAX,
                latency_ns: u64::MAX,
                queue_depth_x256: u32::MAX,
                last_dispatch_ns: 0,
                next_sector: None,
                measurement_pending: false,
                last_sample_ns: u64::MAX,
                ns_per_sector: u64::MAX,
                slow_run: 0,
                slow_run_needed: 0,
                slow_run_min_ns: 0,
                probe_reads: u64::MAX,
                probe_reads_due: 0,
                probe_started_ns: None,
                probe_failed: false,
            };
        }
        balancer.policy = Policy::from_spec(
            &PolicySpec::Adaptive(AdaptiveParams {
                tolerance_pct: Some(1000),
                probe_ms: Some(60000),
            }),
            0,
        );
        let long_names = ["253:1048575"; MAX_LEGS];
        let mut out = String::new();
        balancer
            .write_report(
                &mut out,
                &long_names,
                LegSet::first_n(MAX_LEGS),
                &[u64::MAX; MAX_LEGS],
            )
            .unwrap();
        assert!(out.len() < 3500, "{}", out.len());
    }

    #[test]
    fn revived_leg_forgets_its_latency() {
        let mut balancer = Balancer::new(2).unwrap();
        message(&mut balancer, "io_balance round_robin ios 1").unwrap();
        counts(&mut balancer, LegSet::first_n(2), 4);
        assert_eq!(balancer.stats(1).unwrap().samples, 2);
        counts(&mut balancer, LegSet::single(0), 1);
        assert_eq!(balancer.stats(1).unwrap().samples, 2);
        counts(&mut balancer, LegSet::first_n(2), 1);
        assert_eq!(balancer.stats(1).unwrap().samples, 0);
    }

    /// Sends a read to `stats` and completes it after `latency_ns`.
    fn sample(stats: &mut LegStats, latency_ns: u64) {
        stats.record_dispatch(&read(0), false);
        stats.record_completion(latency_ns, 8, true);
    }

    #[test]
    fn latency_estimate_trusts_fast_reads() {
        let mut stats = LegStats::default();
        // Warm-up: the fastest of the first reads (the very first one of a
        // device is often slow: it wakes it up).
        for latency in [900_000, 60_000, 50_000] {
            sample(&mut stats, latency);
            assert!(!stats.is_measured());
        }
        sample(&mut stats, 70_000);
        assert!(stats.is_measured());
        assert_eq!((stats.latency_ns, stats.samples), (50_000, 4));
        // A stall: four reads 40 times slower raise it by 1/32 each.
        for _ in 0..4 {
            sample(&mut stats, 2_000_000);
        }
        assert_eq!(stats.latency_ns, 56_547);
        // A slightly slower read: 1/8 of the way.
        sample(&mut stats, 56_547 + 800);
        assert_eq!(stats.latency_ns, 56_647);
        // One fast read and it is gone.
        sample(&mut stats, 50_000);
        assert_eq!(stats.latency_ns, 50_000);
        // A lasting slowdown under 8 times: doubled within 23 reads, there
        // within 100.
        for _ in 0..23 {
            sample(&mut stats, 350_000);
        }
        assert!(
            (100_000..105_000).contains(&stats.latency_ns),
            "{}",
            stats.latency_ns
        );
        for _ in 23..100 {
            sample(&mut stats, 350_000);
        }
        assert!(
            (340_000..=350_000).contains(&stats.latency_ns),
            "{}",
            stats.latency_ns
        );
        // 20 times: believed at the fifth read (the reads in flight when it
        // began, none here, and four more), at the fastest of them.
        sample(&mut stats, 50_000);
        for (i, latency) in [1_100_000, 1_000_000, 1_200_000, 1_050_000]
            .into_iter()
            .enumerate()
        {
            sample(&mut stats, latency);
            assert!(stats.latency_ns < 60_000, "{i}: {}", stats.latency_ns);
        }
        sample(&mut stats, 1_300_000);
        assert_eq!(stats.latency_ns, 1_000_000);
        // A fast read between slow ones starts the count again.
        sample(&mut stats, 50_000);
        for latency in [
            1_000_000, 1_000_000, 60_000, 1_000_000, 1_000_000, 1_000_000, 1_000_000,
        ] {
            sample(&mut stats, latency);
        }
        assert!(stats.latency_ns < 100_000, "{}", stats.latency_ns);
        sample(&mut stats, u64::MAX);
        assert!(stats.latency_ns <= super::super::MAX_LATENCY_SAMPLE_NS);
        assert_eq!(stats.in_flight, 0);
    }

    #[test]
    fn measurement_counts_in_full() {
        let mut stats = LegStats::default();
        for _ in 0..4 {
            sample(&mut stats, 50_000);
        }
        let probe = |stats: &mut LegStats, first: u64, second: u64| {
            sample(stats, first);
            stats.record_dispatch(&read(0), true);
            stats.record_completion(second, 8, true);
        };
        // The faster of a probe's two reads counts, up by at most a quarter
        // (the first read, an ordinary one, raised it by 1/32)...
        probe(&mut stats, 8_000_000, 9_000_000);
        assert_eq!(stats.latency_ns, 51_562 + 51_562 / 4);
        probe(&mut stats, 900_000, 70_000);
        assert_eq!(stats.latency_ns, 70_000);
        // ... and down in full.
        probe(&mut stats, 900_000, 30_000);
        assert_eq!(stats.latency_ns, 30_000);
        // Only the read that finds the leg idle can be a measurement.
        stats.record_dispatch(&read(0), false);
        stats.record_dispatch(&read(0), true);
        stats.record_completion(1_000_000, 8, true);
        stats.record_completion(1_000_000, 8, true);
        assert_eq!(stats.latency_ns, 30_000 + 937 + 966);
        assert!(!stats.measurement_pending);
        // A failed probe read says nothing: the measurement alone counts.
        stats.record_dispatch(&read(0), false);
        stats.record_completion(10, 8, false);
        stats.record_dispatch(&read(0), true);
        stats.record_completion(35_000, 8, true);
        assert_eq!(stats.latency_ns, 35_000);
    }

    /// A random operation on a balancer.
    #[derive(Clone, Debug)]
    enum Op {
        Choose {
            usable: u16,
            sector: u64,
            now_ns: u64,
        },
        Complete {
            pick: usize,
            latency_ns: u64,
            ok: bool,
        },
        Apply {
            command: Command,
            usable: u16,
            fresh_everywhere: u16,
        },
        SetDefault(usize),
    }

    fn leg_ref() -> impl Strategy<Value = LegRef> {
        (0..MAX_LEGS, any::<bool>()).prop_map(|(leg, by_name)| {
            if by_name {
                LegRef::by_name(leg).unwrap()
            } else {
                LegRef::by_index(leg).unwrap()
            }
        })
    }

    fn policy_spec() -> impl Strategy<Value = PolicySpec> {
        prop_oneof![
            (0u32..20).prop_map(|ios| PolicySpec::RoundRobin { ios }),
            Just(PolicySpec::Weighted),
            (
                proptest::option::of(0u16..=1000),
                proptest::option::of(0u32..=1000)
            )
                .prop_map(|(tolerance_pct, probe_ms)| PolicySpec::Adaptive(
                    AdaptiveParams {
                        tolerance_pct,
                        probe_ms
                    }
                )),
        ]
    }

    pub(crate) fn command() -> impl Strategy<Value = Command> {
        prop_oneof![
            policy_spec().prop_map(Command::SetPolicy),
            leg_ref().prop_map(Command::SetDefaultLeg),
            (leg_ref(), 0u16..=1000).prop_map(|(leg, weight)| Command::SetWeight { leg, weight }),
            Just(Command::Show),
            Just(Command::ResetStats),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (any::<u16>(), 0u64..64, 0u64..1_000_000_000).prop_map(
                |(usable, sector, now_ns)| Op::Choose { usable, sector: sector * 8, now_ns }
            ),
            4 => (any::<usize>(), 0u64..10_000_000, any::<bool>()).prop_map(
                |(pick, latency_ns, ok)| Op::Complete { pick, latency_ns, ok }
            ),
            1 => (command(), any::<u16>(), any::<u16>()).prop_map(
                |(command, usable, fresh_everywhere)| Op::Apply { command, usable, fresh_everywhere }
            ),
            1 => (0..MAX_LEGS + 1).prop_map(Op::SetDefault),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever happens, `choose` honours its guarantees and the
        /// in-flight accounting matches the reads not yet completed.
        #[test]
        fn choose_guarantees_hold(nr_legs in 2..=MAX_LEGS, ops in proptest::collection::vec(op(), 1..200)) {
            let mut balancer = Balancer::new(nr_legs).unwrap();
            let mut outstanding: Vec<usize> = Vec::new();
            let all = LegSet::first_n(nr_legs);
            for op in ops {
                match op {
                    Op::Choose { usable, sector, now_ns } => {
                        let usable = LegSet::from_bits(usable);
                        let request = ReadRequest { sector, nr_sectors: 8, now_ns };
                        let effective = usable.intersection(all);
                        let chosen = balancer.choose(usable, &request);
                        match chosen {
                            Some(leg) => {
                                prop_assert!(effective.contains(leg));
                                if let Some(only) = effective.only_member() {
                                    prop_assert_eq!(leg, only);
                                }
                                outstanding.push(leg);
                            }
                            None => prop_assert!(effective.is_empty()),
                        }
                    }
                    Op::Complete { pick, latency_ns, ok } => {
                        if !outstanding.is_empty() {
                            let leg = outstanding.swap_remove(pick % outstanding.len());
                            balancer.complete(leg, latency_ns, ok);
                        }
                    }
                    Op::Apply { command, usable, fresh_everywhere } => {
                        let before = balancer;
                        let state = MirrorState {
                            usable: LegSet::from_bits(usable),
                            fresh_everywhere: LegSet::from_bits(fresh_everywhere),
                        };
                        match balancer.apply(&command, &state) {
                            Err(_) => prop_assert_eq!(balancer, before),
                            Ok(()) => if let Command::SetDefaultLeg(leg) = command {
                                // The default leg is never a stale one.
                                prop_assert!(state.fresh_everywhere.contains(leg.index()));
                                prop_assert!(state.usable.contains(leg.index()));
                            },
                        }
                    }
                    Op::SetDefault(leg) => {
                        let ok = balancer.set_default_leg(leg).is_ok();
                        prop_assert_eq!(ok, leg < nr_legs);
                    }
                }
                for leg in 0..nr_legs {
                    let expected = outstanding.iter().filter(|l| **l == leg).count();
                    prop_assert_eq!(balancer.stats(leg).unwrap().in_flight as usize, expected);
                }
            }
        }

        /// The latency estimate only ever moves toward samples: it stays
        /// between the fastest and the slowest sample seen.
        #[test]
        fn latency_estimate_stays_within_the_samples(
            samples in proptest::collection::vec((0u64..=u64::MAX, any::<bool>(), 0u8..8), 1..300),
        ) {
            let mut stats = LegStats::default();
            let (mut fastest, mut slowest) = (u64::MAX, 0);
            for (latency, measurement, ok) in samples {
                let ok = ok > 0;
                // Mostly ordinary latencies, now and then extreme ones.
                let latency = if latency % 16 == 0 { latency } else { latency % 10_000_000 };
                stats.record_dispatch(&read(0), measurement);
                stats.record_completion(latency, 8, ok);
                if ok {
                    let clamped = latency.clamp(1, super::super::MAX_LATENCY_SAMPLE_NS);
                    fastest = fastest.min(clamped);
                    slowest = slowest.max(clamped);
                }
                if stats.samples > 0 {
                    prop_assert!((fastest..=slowest).contains(&stats.latency_ns),
                        "{} not in {}..={}", stats.latency_ns, fastest, slowest);
                }
                prop_assert_eq!(stats.in_flight, 0);
            }
        }

        /// Weighted: over every full cycle the distribution matches the
        /// weights exactly.
        #[test]
        fn weighted_distribution_is_exact(
            nr_legs in 2..=MAX_LEGS,
            weights in proptest::collection::vec(0u16..=20, MAX_LEGS),
            usable in any::<u16>(),
            cycles in 1usize..4,
        ) {
            let all = LegSet::first_n(nr_legs);
            let usable = LegSet::from_bits(usable).intersection(all);
            prop_assume!(usable.len() >= 2);
            let mut balancer = Balancer::new(nr_legs).unwrap();
            for leg in 0..nr_legs {
                message(&mut balancer, &std::format!("io_balance weight {leg} {}", weights[leg])).unwrap();
            }
            let total: usize = usable.iter().map(|leg| usize::from(weights[leg])).sum();
            if total == 0 {
                // Only weight-0 legs: everything goes to the default leg's
                // choose_mirror() substitute.
                let c = counts(&mut balancer, usable, 10);
                prop_assert_eq!(c[usable.at_or_before(0).unwrap()], 10);
            } else {
                // Check every prefix that ends a cycle.
                for cycle in 1..=cycles {
                    let c = counts(&mut balancer, usable, total);
                    for leg in 0..MAX_LEGS {
                        let expected = if usable.contains(leg) { usize::from(weights[leg]) } else { 0 };
                        prop_assert_eq!(c[leg], expected, "cycle {} leg {}", cycle, leg);
                    }
                }
            }
        }

        /// Round robin: `ios` reads per usable leg, exactly, per cycle; with
        /// ios 0 everything goes to the default leg.
        #[test]
        fn round_robin_distribution_is_exact(
            nr_legs in 2..=MAX_LEGS,
            ios in 0u32..40,
            usable in any::<u16>(),
            default_leg in 0..MAX_LEGS,
            cycles in 1usize..4,
        ) {
            let all = LegSet::first_n(nr_legs);
            let usable = LegSet::from_bits(usable).intersection(all);
            prop_assume!(usable.len() >= 2);
            let default_leg = default_leg % nr_legs;
            let mut balancer = Balancer::new(nr_legs).unwrap();
            balancer.set_default_leg(default_leg).unwrap();
            message(&mut balancer, &std::format!("io_balance round_robin ios {ios}")).unwrap();
            if ios == 0 {
                let c = counts(&mut balancer, usable, 50);
                let expected_leg = if usable.contains(default_leg) { default_leg } else { usable.at_or_before(default_leg).unwrap() };
                prop_assert_eq!(c[expected_leg], 50);
            } else {
                let per_cycle = ios as usize * usable.len();
                let c = counts(&mut balancer, usable, per_cycle * cycles);
                for leg in 0..MAX_LEGS {
                    let expected = if usable.contains(leg) { ios as usize * cycles } else { 0 };
                    prop_assert_eq!(c[leg], expected);
                }
            }
        }
    }
}
