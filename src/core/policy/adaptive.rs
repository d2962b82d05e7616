// SPDX-License-Identifier: GPL-2.0

//! Latency-driven read balancing that needs no tuning.
//!
//! For every usable leg the policy predicts how long a read sent to it now
//! would take, and sends the read to the leg with the smallest prediction.
//! Legs whose predictions are within a tolerance band of the best one are
//! treated as equally good and take turns, so equally fast legs share the
//! load while a much slower leg gets (almost) nothing. Idle legs outside the
//! band are probed now and then so a leg that becomes fast again is noticed.
//!
//! # Measurements
//!
//! The [`super::Balancer`] keeps per leg (see [`super::LegStats`]):
//!
//! - `latency_ns`: an estimate of the completion latency of its reads that
//!   believes fast reads and doubts slow ones, because noise only ever makes
//!   a read slower (a stall of the host or the device, a worker thread or an
//!   interrupt that has to wake up, a queue behind other I/O): a faster read
//!   sets it, a slower one raises it by 1/8 of the difference and at most
//!   1/32 of itself. The first [`super::WARMUP_SAMPLES`] reads set it to the
//!   fastest of them (a device's first read is often slow);
//! - `queue_depth_x256`: a smooth moving average (1/32) of how many of our
//!   reads were already in flight on the leg when a read was sent to it -
//!   the load at which the latency was measured;
//! - `in_flight`: reads sent and not completed.
//!
//! A leg outside the band gets no user reads, only probes, so whatever pushed it
//! out stays until a probe corrects it. With a mean, one stall (which
//! delays every read in flight at once) or one slow first read did that for
//! a whole benchmark; this estimate barely moves on such reads.
//!
//! # Prediction
//!
//! The measured latency scaled from the load at which it was measured to
//! the load the new read would see:
//!
//! ```text
//! predicted = latency * (in_flight + 1) / (queue_depth + 1)
//! ```
//!
//! This is Little's law around the leg's own operating point: for a disk
//! whose latency grows linearly with queue depth it is exact, and for a
//! device with internal parallelism (an NVMe drive whose latency is flat up
//! to a deep queue) it does not penalise the leg merely for being busy at
//! the depth it was measured at. (A plain `latency * (in_flight + 1)`, the
//! "peak EWMA" of RPC load balancers, counts the queueing delay twice and
//! pushes reads to a slow idle leg as soon as the fast leg has a queue.)
//!
//! A leg with fewer than [`super::WARMUP_SAMPLES`] samples gets no user
//! read: a guess about it (once, "as fast as the fastest measured leg") let
//! a fresh mapping send a sequential stream to a WAN leg and keep it there
//! for seconds. The module measures such a leg with private warm-up reads
//! ([`super::Balancer::next_probe_read`]) from the moment the mapping
//! resumes; until then user reads go to the measured legs, or, with none
//! measured, to the default leg, where dm-raid1 sends them.
//!
//! # Choice
//!
//! 1. The band: usable legs with `predicted <= best * (100 + tolerance) /
//!    100`.
//! 2. Probe: a probe is [`PROBE_READS`] of the module's own reads in a row
//!    to an idle leg outside the band (never a user's read: see
//!    [`super::Balancer::next_probe_read`]), each sent as soon as the
//!    previous one completed: the first wakes the leg up, the others measure
//!    it awake (the fastest of them counts in full). A probe is asked for
//!    when probing is enabled, at least [`PROBE_MIN_READS`] reads went by
//!    since the last probe, and the leg has not been sent a read for 64
//!    times the latency it costs over the best leg (`predicted - best`), or
//!    for `probe_ms` if that is shorter and the probe cheap (64 times its
//!    extra latency below `probe_ms`); the leg idle the longest goes first.
//!    So probes keep a slow leg about 5% busy at most and cost under 1% of
//!    the reads. A leg that has just left the band may have left on noise,
//!    or its estimate may date from another load (a leg measured while the
//!    queue was deep looks slow next to one measured alone): it waits only
//!    8 times its extra latency, then 16 and 32 times, before its probes
//!    settle at 64 ([`QUICK_PROBE_SHIFT`]). The user's read goes on to
//!    3 or 4.
//! 3. Sequential affinity: a read that starts where the last read sent to a
//!    leg in the band ended goes to that leg (keeps streams on one disk for
//!    read-ahead and seek locality, as md raid1 does).
//! 4. Otherwise the band members with the fewest reads in flight take turns
//!    (round robin). (For legs whose latency does not depend on their queue,
//!    any split of the queue predicts the same latency; this keeps the split
//!    even.)
//!
//! Everything is integer arithmetic: latencies are clamped to
//! [`super::MAX_LATENCY_SAMPLE_NS`] and in-flight counts to
//! [`super::MAX_COUNTED_IN_FLIGHT`], which bounds every product below 2^63.

use super::super::io_balance::AdaptiveParams;
use super::super::legs::{LegSet, MAX_LEGS};
use super::{
    LeasedReads, LegStats, ReadContext, ReadPolicy, MAX_COUNTED_IN_FLIGHT, QUEUE_DEPTH_ONE,
};

/// Minimum number of reads between two probes.
pub const PROBE_MIN_READS: u32 = 32;

/// A probe is this many reads in a row to a leg: the first wakes it up, the
/// others measure it (see [`super::Balancer::next_probe_read`]).
pub const PROBE_READS: u8 = 3;

/// An idle leg outside the band is probed once it has not been sent a read
/// for `2^PROBE_SHIFT` (64) times the latency it costs over the best leg (or
/// for `probe_ms`, if that is shorter). A probe's three reads cost about
/// three times that, so probing adds at most about 3/64 (5%) to the time
/// reads take.
pub const PROBE_SHIFT: u8 = 6;

/// A leg that has just left the band probably left on noise, or its
/// estimate dates from another load: it is probed after `2^QUICK_PROBE_SHIFT`
/// (8) times its extra latency, then after 16, 32 and 64 times.
pub const QUICK_PROBE_SHIFT: u8 = 3;

/// At most this many reads may follow a choice to the same leg without a
/// choice of their own (see [`ReadPolicy::lease_reads`]): few enough that
/// what they would have taught (a leg slowing down) is at most this many
/// reads late; completions are folded only at the next choice anyway.
pub const LEASE_READS: u8 = 8;

const NS_PER_MS: u64 = 1_000_000;

/// The adaptive policy. See the module documentation.
// INVARIANT: `cursor < MAX_LEGS`; `measuring`, if set, is below `MAX_LEGS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adaptive {
    tolerance_pct: u16,
    probe_ms: u32,
    cursor: u8,
    reads_since_probe: u32,
    probes: u64,
    /// A leg to probe, for [`ReadPolicy::take_probe_request`].
    probe_request: Option<u8>,
    /// Per leg, log2 of how many times its extra latency it waits for a
    /// probe: [`QUICK_PROBE_SHIFT`] while it is in the band, one more after
    /// each probe, up to [`PROBE_SHIFT`].
    probe_shift: [u8; MAX_LEGS],
    /// Reads the last choice's leg, or the legs of `lease_legs` in turn,
    /// may take without a new choice (see [`ReadPolicy::lease_reads`]).
    lease: u8,
    /// The legs of the lease: equally good legs, each a clear winner over
    /// every other leg.
    lease_legs: LegSet,
}

impl Adaptive {
    /// An adaptive policy with `params` (defaults for what is not given).
    pub fn new(params: &AdaptiveParams) -> Adaptive {
        Adaptive {
            tolerance_pct: params.tolerance_pct(),
            probe_ms: params.probe_ms(),
            cursor: 0,
            reads_since_probe: 0,
            probes: 0,
            probe_request: None,
            probe_shift: [PROBE_SHIFT; MAX_LEGS],
            lease: 0,
            lease_legs: LegSet::EMPTY,
        }
    }

    /// The effective parameters (defaults filled in).
    pub fn params(&self) -> AdaptiveParams {
        AdaptiveParams {
            tolerance_pct: Some(self.tolerance_pct),
            probe_ms: Some(self.probe_ms),
        }
    }

    /// Probe reads sent so far (every read of a probe counts).
    pub fn probes(&self) -> u64 {
        self.probes
    }

    /// Predicted latency (ns) of a read of `nr_sectors` sent to a measured
    /// leg with `stats` now: its cost at that size (the latency of a
    /// reference read plus the transfer of the rest, see
    /// [`LegStats::cost_ns`]) scaled by the load.
    pub fn predicted_latency_ns(stats: &LegStats, nr_sectors: u32) -> u64 {
        let (latency, queue_depth) = (stats.cost_ns(nr_sectors), stats.queue_depth_x256);
        let load = u64::from(stats.in_flight.min(MAX_COUNTED_IN_FLIGHT)).saturating_add(1);
        let measured_load = u64::from(queue_depth).saturating_add(u64::from(QUEUE_DEPTH_ONE));
        latency
            .saturating_mul(load)
            .saturating_mul(u64::from(QUEUE_DEPTH_ONE))
            .checked_div(measured_load)
            .unwrap_or(u64::MAX)
    }

    fn probe_target(
        &self,
        context: &ReadContext<'_>,
        band: LegSet,
        predicted: &[u64; MAX_LEGS],
        best: u64,
    ) -> Option<usize> {
        if self.probe_ms == 0 || self.reads_since_probe < PROBE_MIN_READS {
            return None;
        }
        let now = context.read.now_ns;
        let max_wait = u64::from(self.probe_ms).saturating_mul(NS_PER_MS);
        let mut stalest: Option<(usize, u64)> = None;
        for leg in context.usable {
            if band.contains(leg) {
                continue;
            }
            let (Some(stats), Some(prediction)) = (context.stats.get(leg), predicted.get(leg))
            else {
                continue;
            };
            // Unmeasured legs get warm-up reads, never a user's probe.
            if !stats.is_measured() {
                continue;
            }
            // What a read costs on this leg over one on the best leg, times
            // 8 to 64.
            let shift = self.probe_shift.get(leg).copied().unwrap_or(PROBE_SHIFT);
            let times = 1_u64.checked_shl(u32::from(shift)).unwrap_or(u64::MAX);
            let extra = prediction.saturating_sub(best);
            // `probe_ms` only shortens the wait of a cheap probe: a leg whose
            // reads cost so much more (a WAN link) that probing it every
            // `probe_ms` would take more than the ~5% budget keeps the
            // budget's wait, or a sequential reader would spend most of its
            // time waiting on probes.
            let budget = extra.saturating_mul(1 << PROBE_SHIFT);
            let wait = if budget > max_wait {
                budget
            } else {
                extra.saturating_mul(times).min(max_wait)
            };
            let idle_for = now.saturating_sub(stats.last_dispatch_ns);
            if stats.in_flight == 0
                && idle_for >= wait
                && stalest.is_none_or(|(_, longest)| idle_for > longest)
            {
                stalest = Some((leg, idle_for));
            }
        }
        stalest.map(|(leg, _)| leg)
    }
}

impl ReadPolicy for Adaptive {
    fn choose(&mut self, context: &ReadContext<'_>) -> Option<usize> {
        let usable = context.usable;
        self.lease = 0;
        self.lease_legs = LegSet::EMPTY;
        let mut measured = LegSet::EMPTY;
        for leg in usable {
            if context.stats.get(leg).is_some_and(LegStats::is_measured) {
                measured = measured.with(leg);
            }
        }
        if measured.is_empty() {
            // Nothing known yet: dm-raid1's choice.
            return context.default_or_fallback();
        }

        let mut predicted = [u64::MAX; MAX_LEGS];
        let mut best = u64::MAX;
        for leg in measured {
            let (Some(stats), Some(slot)) = (context.stats.get(leg), predicted.get_mut(leg)) else {
                continue;
            };
            *slot = Self::predicted_latency_ns(stats, context.read.nr_sectors);
            best = best.min(*slot);
        }
        // predicted <= 2^52 (see the module doc), so these products fit.
        let limit = best.saturating_mul(u64::from(self.tolerance_pct).saturating_add(100));
        let mut band = LegSet::EMPTY;
        for leg in measured {
            if predicted
                .get(leg)
                .is_some_and(|p| p.saturating_mul(100) <= limit)
            {
                band = band.with(leg);
            }
        }

        // A probe is the module's own reads (see `Balancer::next_probe_read`),
        // never this user read.
        if let Some(leg) = self.probe_target(context, band, &predicted, best) {
            self.probe_request = u8::try_from(leg).ok();
            if let Some(shift) = self.probe_shift.get_mut(leg) {
                *shift = shift.saturating_add(1).min(PROBE_SHIFT);
            }
            self.reads_since_probe = 0;
            self.probes = self.probes.saturating_add(1);
        }
        self.reads_since_probe = self.reads_since_probe.saturating_add(1);
        for leg in band {
            if let Some(shift) = self.probe_shift.get_mut(leg) {
                *shift = QUICK_PROBE_SHIFT;
            }
        }

        let leg = self.choose_in_band(context, band)?;
        // Unmeasured legs get no user reads until their warm-up reads'
        // completions, which end the lease, measure them.
        if self.probe_request.is_none() {
            (self.lease_legs, self.lease) =
                self.lease_for(context, band, measured, &predicted, leg);
        }
        Some(leg)
    }

    fn reset(&mut self) {
        self.reads_since_probe = 0;
        self.probe_request = None;
        self.lease = 0;
        self.lease_legs = LegSet::EMPTY;
    }

    fn lease_reads(&self, _leg: usize) -> u32 {
        u32::from(self.lease)
    }

    fn lease_legs(&self, leg: usize) -> LegSet {
        self.lease_legs.with(leg)
    }

    fn note_leased(&mut self, leased: &LeasedReads) {
        self.reads_since_probe = self.reads_since_probe.saturating_add(leased.reads);
        // The turns go on after the lease's last read.
        if leased.legs.len() > 1 {
            if let Some(last) = leased.last_leg() {
                self.cursor = u8::try_from(last).unwrap_or(0);
            }
        }
    }

    fn take_probe_request(&mut self) -> Option<usize> {
        self.probe_request.take().map(usize::from)
    }

    fn needs_measured_legs(&self) -> bool {
        true
    }
}

impl Adaptive {
    /// The leg of `band` for the read: a sequential stream's leg, else the
    /// least loaded legs in turn.
    fn choose_in_band(&mut self, context: &ReadContext<'_>, band: LegSet) -> Option<usize> {
        let sector = context.read.sector;
        let sequential = band.iter().find(|leg| {
            context
                .stats
                .get(*leg)
                .is_some_and(|stats| stats.next_sector == Some(sector))
        });
        if let Some(leg) = sequential {
            return Some(leg);
        }

        // Among the band, the least loaded legs take turns: with legs whose
        // latency does not depend on load, predictions alone would accept
        // any split of the queue.
        let in_flight = |leg: usize| {
            context
                .stats
                .get(leg)
                .map_or(u32::MAX, |stats| stats.in_flight)
        };
        let least = band.iter().map(in_flight).min()?;
        let mut least_loaded = LegSet::EMPTY;
        for leg in band {
            if in_flight(leg) == least {
                least_loaded = least_loaded.with(leg);
            }
        }
        let leg = least_loaded.next_after(usize::from(self.cursor))?;
        // Only a real choice moves the turn on.
        if least_loaded.len() > 1 {
            self.cursor = u8::try_from(leg).unwrap_or(0);
        }
        Some(leg)
    }

    /// The legs that take the next reads in turn without a choice, and
    /// how many, after `leg` was chosen among the `measured` legs with the
    /// `predicted` latencies. The legs: those whose cost when idle is
    /// within the tolerance of the cheapest measured leg's (`leg` must be
    /// one of them, and the band within them): equally good legs, each
    /// cheaper than every other measured leg by more than the tolerance
    /// even when idle. A local leg next to a WAN leg is alone in it; two
    /// equal local legs share it. The reads: as many as could all be in
    /// flight on the legs at once, spread evenly, and leave each predicted
    /// faster than every leg outside, at most [`LEASE_READS`]. A leg out
    /// of the band only by its load (equal legs whose queues differ for a
    /// moment) stays in the turns, so it is not left idle (and probed).
    /// That makes the lease's reads blind to load within the legs: a leg
    /// that slows down keeps its turns until its estimate, raised by its
    /// slow reads, leaves the tolerance. Requiring the band to be all of
    /// them instead leased 8 of 20,000 reads at queue depth 4 in the
    /// simulation, and split worse under guest noise (a leg's share down
    /// to 113 of 400 reads, against 163 with the turns and 137 without
    /// leases).
    fn lease_for(
        &self,
        context: &ReadContext<'_>,
        band: LegSet,
        measured: LegSet,
        predicted: &[u64; MAX_LEGS],
        leg: usize,
    ) -> (LegSet, u8) {
        const NONE: (LegSet, u8) = (LegSet::EMPTY, 0);
        let nr_sectors = context.read.nr_sectors;
        let cost = |l: usize| context.stats.get(l).map(|s| s.cost_ns(nr_sectors));
        let Some(cheapest) = measured.iter().filter_map(cost).min() else {
            return NONE;
        };
        let tolerance = u64::from(self.tolerance_pct).saturating_add(100);
        let limit = cheapest.saturating_mul(tolerance);
        let mut equals = LegSet::EMPTY;
        for other in measured {
            if cost(other).is_some_and(|c| c.saturating_mul(100) <= limit) {
                equals = equals.with(other);
            }
        }
        if !equals.contains(leg) || !band.is_subset_of(equals) {
            return NONE;
        }
        let best_other = measured
            .difference(equals)
            .iter()
            .filter_map(|other| predicted.get(other).copied())
            .min();
        let Some(best_other) = best_other else {
            return (equals, LEASE_READS);
        };
        // Predictions are linear in the load (see `predicted_latency_ns`):
        // how many reads in flight each leg takes before it would be
        // predicted slower than `best_other`, less those it has (the chosen
        // read's among them). The turns give each leg one in `n`.
        let mut fits_each = u64::MAX;
        for member in equals {
            let Some(stats) = context.stats.get(member) else {
                return NONE;
            };
            let per_read = Self::predicted_latency_ns(
                &LegStats {
                    in_flight: 0,
                    ..*stats
                },
                nr_sectors,
            );
            let load = u64::from(stats.in_flight.min(MAX_COUNTED_IN_FLIGHT))
                .saturating_add(u64::from(member == leg));
            let fits = best_other.checked_div(per_read).unwrap_or(u64::MAX);
            fits_each = fits_each.min(fits.saturating_sub(load));
        }
        let n = u64::try_from(equals.len()).unwrap_or(1);
        let extra = fits_each.saturating_mul(n).min(u64::from(LEASE_READS));
        (equals, u8::try_from(extra).unwrap_or(0))
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::needless_range_loop,
    clippy::type_complexity
)]
mod tests {
    //! A small discrete-event simulation: a closed loop of `queue_depth`
    //! outstanding reads against legs with latency models, driving a
    //! [`Balancer`] with the adaptive policy. The legs' devices serve reads
    //! in parallel or one at a time, with a jitter and optionally the noise
    //! seen in the guest (QEMU TCG, loop devices): a heavy tail, a wake-up
    //! delay after idling, host stalls.

    use super::super::super::io_balance::{Command, PolicySpec};
    use super::super::super::legs::LegSet;
    use super::super::{
        Balancer, Completion, CompletionMailbox, MirrorState, ReadLease, ReadRequest,
        WARMUP_SAMPLES,
    };
    use super::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    use std::vec::Vec;

    /// How a leg's device answers.
    #[derive(Clone, Copy, Debug)]
    enum Device {
        /// Internal parallelism: every read takes `latency_ns` (± jitter)
        /// however many are queued (an SSD/NVMe drive below its queue limit).
        Parallel { latency_ns: u64 },
        /// One read at a time, FIFO, each `service_ns` (± jitter): a disk.
        Serial { service_ns: u64 },
    }

    /// Noise on top of a device's latency.
    #[derive(Clone, Copy, Debug)]
    struct Noise {
        /// Each read takes its nominal time ± `jitter_pct` percent (uniform).
        jitter_pct: u64,
        /// Heavy tail: one read in 10 takes 2 to 5 times as long, one in 100
        /// 10 to 40 times.
        heavy_tail: bool,
        /// A read that finds the device idle for `wake_after_ns` first waits
        /// for it to wake up (its worker thread, interrupts, power states):
        /// up to `wake_ns` (± jitter), in proportion to the idle time beyond
        /// `wake_after_ns` up to `wake_full_ns`.
        wake_after_ns: u64,
        wake_full_ns: u64,
        wake_ns: u64,
    }

    /// ±15%, nothing else.
    const QUIET: Noise = Noise {
        jitter_pct: 15,
        heavy_tail: false,
        wake_after_ns: u64::MAX,
        wake_full_ns: u64::MAX,
        wake_ns: 0,
    };

    /// What the guest (QEMU TCG, loop devices on tmpfs) shows: a heavy tail,
    /// and a loop worker idle for more than 40 us takes up to 100 us (four
    /// times the read itself) to wake up, the whole of it after 240 us.
    const GUEST: Noise = Noise {
        jitter_pct: 15,
        heavy_tail: true,
        wake_after_ns: 40_000,
        wake_full_ns: 240_000,
        wake_ns: 100_000,
    };

    /// Worse than the guest: six times the read to wake up after 100 us, so
    /// that legs taking turns keep waking each other up (a leg used alone
    /// is then 7 times faster than two taking turns).
    const HARSH: Noise = Noise {
        jitter_pct: 15,
        heavy_tail: true,
        wake_after_ns: 99_999,
        wake_full_ns: 100_000,
        wake_ns: 150_000,
    };

    /// Host stalls that freeze the whole guest: in each `every_ns` slot, one
    /// chance in two of a stall of `min_ns..=max_ns`; every read that would
    /// complete during a stall completes when it ends.
    #[derive(Clone, Copy, Debug)]
    struct Stalls {
        every_ns: u64,
        min_ns: u64,
        max_ns: u64,
    }

    /// As seen in the guest: several stalls of 0.5 to 5 ms per 100 ms.
    const GUEST_STALLS: Stalls = Stalls {
        every_ns: 10_000_000,
        min_ns: 500_000,
        max_ns: 5_000_000,
    };

    struct Sim {
        balancer: Balancer,
        devices: Vec<Device>,
        noise: Vec<Noise>,
        stalls: Option<Stalls>,
        seed: u64,
        busy_until: Vec<u64>,
        outstanding: Vec<usize>,
        idle_since: Vec<u64>,
        /// (completion time, leg, dispatch time, a warm-up read)
        pending: BinaryHeap<Reverse<(u64, usize, u64, bool)>>,
        /// User reads in `pending`.
        user_pending: usize,
        /// Probe reads sent (warm-up and probes).
        probe_reads: usize,
        now: u64,
        rng: u64,
        next_sector: u64,
        sequential: bool,
        /// As the kernel runs the balancer: user reads through the read
        /// lease while it lasts, their completions through the mailbox,
        /// folded by the next holder of the lock, which ends the lease.
        kernel_paths: bool,
        lease: ReadLease,
        /// User reads that went through the lease.
        leased: usize,
        mailbox: CompletionMailbox,
    }

    fn splitmix(mut x: u64) -> u64 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }

    impl Sim {
        fn new(devices: &[Device], policy: PolicySpec) -> Sim {
            Sim::seeded(devices, policy, 0)
        }

        fn seeded(devices: &[Device], policy: PolicySpec, seed: u64) -> Sim {
            let mut balancer = Balancer::new(devices.len()).unwrap();
            let state = MirrorState {
                usable: LegSet::first_n(devices.len()),
                fresh_everywhere: LegSet::first_n(devices.len()),
            };
            balancer.apply(&Command::SetPolicy(policy), &state).unwrap();
            // Start at a realistic monotonic clock value.
            let now = 1_000_000_000_000;
            Sim {
                balancer,
                devices: devices.to_vec(),
                noise: std::vec![QUIET; devices.len()],
                stalls: None,
                seed,
                busy_until: std::vec![0; devices.len()],
                outstanding: std::vec![0; devices.len()],
                idle_since: std::vec![now - 1_000_000_000; devices.len()],
                pending: BinaryHeap::new(),
                user_pending: 0,
                probe_reads: 0,
                now,
                rng: splitmix(seed) | 1,
                next_sector: 0,
                sequential: false,
                kernel_paths: true,
                lease: ReadLease::new(),
                leased: 0,
                mailbox: CompletionMailbox::new(),
            }
        }

        /// What taking the mirror set's lock does to the balancer first.
        fn lock(&mut self) {
            if !self.kernel_paths {
                return;
            }
            let now = self.now;
            self.lease.end_into(&mut self.balancer, || now);
            self.mailbox.fold_into(&mut self.balancer);
        }

        /// Every leg with `noise`, the guest's host stalls if `stalls`.
        fn guest_like(mut self, noise: Noise, stalls: bool) -> Sim {
            self.noise = std::vec![noise; self.devices.len()];
            self.stalls = stalls.then_some(GUEST_STALLS);
            self
        }

        fn random(&mut self) -> u64 {
            // xorshift64*
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33
        }

        fn jitter(&mut self, ns: u64, pct: u64) -> u64 {
            let r = self.random();
            ns * (100 - pct + r % (2 * pct + 1)) / 100
        }

        /// How long one read takes on `leg` once started, with noise.
        fn service_time(&mut self, leg: usize, ns: u64) -> u64 {
            let noise = self.noise[leg];
            let mut ns = self.jitter(ns, noise.jitter_pct);
            if noise.heavy_tail {
                let r = self.random() % 1000;
                let factor = self.random();
                if r < 10 {
                    ns *= 10 + factor % 31;
                } else if r < 100 {
                    ns *= 2 + factor % 4;
                }
            }
            ns
        }

        /// When a read due at `t` really completes, given the host stalls.
        fn stalled(&self, t: u64) -> u64 {
            let Some(stalls) = self.stalls else {
                return t;
            };
            let slot = t / stalls.every_ns;
            for slot in [slot.saturating_sub(1), slot] {
                let h = splitmix(self.seed ^ splitmix(slot));
                if h & 1 == 0 {
                    continue;
                }
                let start = slot * stalls.every_ns + (h >> 8) % stalls.every_ns;
                let length = stalls.min_ns + (h >> 40) % (stalls.max_ns - stalls.min_ns + 1);
                if (start..start + length).contains(&t) {
                    // Keep the order of what completes during the stall.
                    return start + length + (t - start) / 64;
                }
            }
            t
        }

        fn dispatch(&mut self) -> usize {
            let sector = if self.sequential {
                self.next_sector
            } else {
                // Random, never contiguous with an earlier read.
                ((self.random() << 20) | (self.random() % (1 << 20))) & !0xfff
            };
            self.next_sector = sector + 8;
            let read = ReadRequest {
                sector,
                nr_sectors: 8,
                now_ns: self.now,
            };
            let usable = LegSet::first_n(self.devices.len());
            if self.kernel_paths {
                if let Some(leg) = self.lease.take(sector, 8) {
                    self.leased += 1;
                    self.start(leg, false);
                    self.user_pending += 1;
                    return leg;
                }
            }
            self.lock();
            let leg = self.balancer.choose(usable, &read).unwrap();
            if self.kernel_paths {
                self.lease.grant(self.balancer.lease());
            }
            self.start(leg, false);
            self.user_pending += 1;
            // The kernel wakes its worker for probe reads only when asked.
            if !self.kernel_paths || self.balancer.wants_probe_read(usable) {
                self.warm_up();
            }
            leg
        }

        /// Sends the warm-up reads the balancer asks for, as the kernel does.
        fn warm_up(&mut self) {
            self.lock();
            let usable = LegSet::first_n(self.devices.len());
            while let Some(leg) = self.balancer.next_probe_read(usable, self.now) {
                self.start(leg, true);
                self.probe_reads += 1;
            }
        }

        /// A read on `leg`'s device from now.
        fn start(&mut self, leg: usize, warmup: bool) {
            let noise = self.noise[leg];
            let idle = self.now.saturating_sub(self.idle_since[leg]);
            let wake = if self.outstanding[leg] == 0 && idle > noise.wake_after_ns {
                let ramp = noise.wake_full_ns - noise.wake_after_ns;
                let part = (idle - noise.wake_after_ns).min(ramp);
                let ns = self.jitter(noise.wake_ns, noise.jitter_pct);
                ns * part / ramp
            } else {
                0
            };
            let done = match self.devices[leg] {
                Device::Parallel { latency_ns } => {
                    self.now + wake + self.service_time(leg, latency_ns)
                }
                Device::Serial { service_ns } => {
                    let start = self.busy_until[leg].max(self.now) + wake;
                    self.busy_until[leg] = start + self.service_time(leg, service_ns);
                    self.busy_until[leg]
                }
            };
            let done = self.stalled(done);
            if let Device::Serial { .. } = self.devices[leg] {
                self.busy_until[leg] = self.busy_until[leg].max(done);
            }
            self.outstanding[leg] += 1;
            self.pending.push(Reverse((done, leg, self.now, warmup)));
        }

        /// Takes the next completion: `Some(leg)` for a user read.
        fn complete_next(&mut self) -> Option<Option<usize>> {
            let Reverse((done, leg, start, warmup)) = self.pending.pop()?;
            self.now = done;
            self.outstanding[leg] -= 1;
            if self.outstanding[leg] == 0 {
                self.idle_since[leg] = done;
            }
            if warmup {
                self.lock();
                self.balancer.complete_probe_read(leg, done, 8, true);
                self.warm_up();
                return Some(None);
            }
            self.user_pending -= 1;
            let completion = Completion {
                leg,
                latency_ns: done - start,
                nr_sectors: 8,
                ok: true,
            };
            if !self.kernel_paths || !self.mailbox.post(completion) {
                self.lock();
                self.balancer.complete(leg, done - start, true);
            }
            Some(Some(leg))
        }

        /// Runs `reads` more reads keeping `queue_depth` outstanding;
        /// returns the reads each leg got.
        fn run(&mut self, queue_depth: usize, reads: usize) -> Vec<usize> {
            let mut counts = std::vec![0; self.devices.len()];
            let mut issued = 0;
            self.warm_up();
            while self.user_pending < queue_depth && issued < reads {
                counts[self.dispatch()] += 1;
                issued += 1;
            }
            while let Some(user) = self.complete_next() {
                if user.is_some() && issued < reads {
                    counts[self.dispatch()] += 1;
                    issued += 1;
                }
            }
            self.lock();
            counts
        }

        /// Like [`Sim::run`], but the number of reads kept in flight
        /// changes between 1 and `max_depth` every 10 to 60 reads (an
        /// application whose submissions and completions come in bursts).
        fn run_varying(&mut self, max_depth: usize, reads: usize) -> Vec<usize> {
            let mut counts = std::vec![0; self.devices.len()];
            let mut issued = 0;
            let mut depth = 1;
            let mut until = 0;
            loop {
                if issued >= until {
                    depth = 1 + (self.random() as usize) % max_depth;
                    until = issued + 10 + (self.random() as usize) % 51;
                }
                if self.user_pending < depth && issued < reads {
                    counts[self.dispatch()] += 1;
                    issued += 1;
                    continue;
                }
                if self.complete_next().is_none() {
                    break;
                }
            }
            self.lock();
            counts
        }

        /// The mapping resumes: the warm-up reads run to completion before
        /// the first user read, then 30 ms pass (a user starting to read
        /// after `dmsetup create` returned).
        fn resume(&mut self) {
            self.warm_up();
            while self.complete_next().is_some() {}
            self.pause(30_000_000);
        }

        /// No reads for `ns`.
        fn pause(&mut self, ns: u64) {
            self.now += ns;
        }
    }

    const FAST: Device = Device::Parallel {
        latency_ns: 100_000,
    };
    const SLOW: Device = Device::Parallel {
        latency_ns: 1_000_000,
    };
    const DISK: Device = Device::Serial {
        service_ns: 8_000_000,
    };
    /// A loop device in the guest: one read at a time.
    const LOOP: Device = Device::Serial { service_ns: 25_000 };
    /// The same, 3 times slower.
    const LOOP_3X: Device = Device::Serial { service_ns: 75_000 };
    /// A device that takes 3 times as long as a loop device, in parallel
    /// (like a loop device behind dm-delay).
    const DELAYED_3X: Device = Device::Parallel { latency_ns: 75_000 };
    /// A device as fast as a loop device, in parallel (an NVMe drive).
    const NVME: Device = Device::Parallel { latency_ns: 25_000 };
    /// A loop device behind dm-delay's 8 ms, as in the guest suite.
    const DELAYED: Device = Device::Parallel {
        latency_ns: 8_000_000,
    };

    fn adaptive() -> PolicySpec {
        PolicySpec::Adaptive(AdaptiveParams::default())
    }

    fn share(counts: &[usize], leg: usize) -> u64 {
        let total: usize = counts.iter().sum();
        (counts[leg] * 100 / total) as u64
    }

    /// The guest suite's check, 400 random reads at `queue_depth`, on
    /// `guests` simulated guests with legs `devices` and `noise`: a fresh
    /// mirror, then twice more after 30 ms without reads (so that the legs'
    /// workers are asleep); every other guest also has host stalls. Returns
    /// every run's split.
    fn guest_runs(
        devices: &[Device],
        noise: Noise,
        queue_depth: usize,
        guests: u64,
    ) -> Vec<Vec<usize>> {
        let mut splits = Vec::new();
        for seed in 0..guests {
            let mut sim = Sim::seeded(devices, adaptive(), seed).guest_like(noise, seed % 2 == 1);
            sim.resume();
            for _ in 0..3 {
                splits.push(sim.run(queue_depth, 400));
                sim.pause(30_000_000);
            }
        }
        splits
    }

    /// Runs whose smallest share is below `pct`, and the smallest share.
    fn below(splits: &[Vec<usize>], pct: usize) -> (usize, usize) {
        let smallest = |split: &Vec<usize>| *split.iter().min().unwrap();
        let bad = splits
            .iter()
            .filter(|split| smallest(split) * 100 < pct * 400)
            .count();
        let worst = splits.iter().map(smallest).min().unwrap();
        (bad, worst)
    }

    #[test]
    fn much_faster_leg_gets_nearly_all_reads() {
        for queue_depth in [1, 4, 32] {
            let mut sim = Sim::new(&[SLOW, FAST], adaptive());
            let counts = sim.run(queue_depth, 50_000);
            assert!(share(&counts, 1) >= 97, "qd {queue_depth}: {counts:?}");
        }
    }

    #[test]
    fn leases_go_to_clear_winners_and_to_equal_legs_in_turn() {
        // A local leg next to a slow one: most reads take the lease, the
        // slow leg idles as it would without leases. Equal legs: most
        // reads take a lease for both in turn, the split stays even, and
        // neither leg idles into probes.
        for queue_depth in [1, 4, 32] {
            let mut sim = Sim::new(&[NVME, DELAYED], adaptive());
            let counts = sim.run(queue_depth, 20_000);
            assert!(share(&counts, 0) >= 99, "qd {queue_depth}: {counts:?}");
            std::println!(
                "clear winner, qd {queue_depth}: {} of 20000 leased",
                sim.leased
            );
            assert!(
                sim.leased >= 16_000,
                "qd {queue_depth}: {} leased",
                sim.leased
            );
            let mut without = Sim::new(&[NVME, DELAYED], adaptive());
            without.kernel_paths = false;
            let base = without.run(queue_depth, 20_000);
            assert!(
                counts[1] <= base[1] + 20,
                "qd {queue_depth}: {counts:?} {base:?}"
            );

            let mut sim = Sim::new(&[FAST, FAST], adaptive());
            sim.resume();
            let counts = sim.run(queue_depth, 20_000);
            assert!(
                (48..=52).contains(&share(&counts, 0)),
                "qd {queue_depth}: {counts:?}, {} leased",
                sim.leased
            );
            std::println!(
                "equal legs, qd {queue_depth}: {} of 20000 leased, {} probe reads",
                sim.leased,
                sim.probe_reads
            );
            assert!(
                sim.leased >= 16_000,
                "qd {queue_depth}: {} leased",
                sim.leased
            );
            let mut without = Sim::new(&[FAST, FAST], adaptive());
            without.kernel_paths = false;
            without.resume();
            without.run(queue_depth, 20_000);
            assert!(
                sim.probe_reads <= without.probe_reads + 6,
                "qd {queue_depth}: {} probe reads, {} without leases",
                sim.probe_reads,
                without.probe_reads
            );
        }
    }

    #[test]
    fn ssd_beats_disk_at_any_depth() {
        for queue_depth in [1, 8, 64] {
            let mut sim = Sim::new(&[DISK, FAST], adaptive());
            let counts = sim.run(queue_depth, 50_000);
            assert!(share(&counts, 1) >= 98, "qd {queue_depth}: {counts:?}");
        }
    }

    #[test]
    fn equal_legs_share_the_load() {
        for seed in 0..4 {
            for queue_depth in [1, 2, 4, 16, 64] {
                let mut sim = Sim::seeded(&[FAST, FAST], adaptive(), seed);
                let counts = sim.run(queue_depth, 20_000);
                let first = share(&counts, 0);
                assert!((48..=52).contains(&first), "qd {queue_depth}: {counts:?}");

                // Three legs at depth 4 cannot split each queue evenly; the
                // measured queue depths must not drift apart and favour one.
                let mut sim = Sim::seeded(&[FAST, FAST, FAST], adaptive(), seed);
                let counts = sim.run(queue_depth, 30_000);
                for leg in 0..3 {
                    assert!(
                        (31..=35).contains(&share(&counts, leg)),
                        "qd {queue_depth}: {counts:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn equal_disks_share_the_load() {
        for queue_depth in [1, 8, 64] {
            let mut sim = Sim::new(&[DISK, DISK], adaptive());
            let counts = sim.run(queue_depth, 5_000);
            assert!(
                (45..=55).contains(&share(&counts, 0)),
                "qd {queue_depth}: {counts:?}"
            );
        }
    }

    /// What the guest suite checks, in the conditions of the guest: a heavy
    /// tail, a worker that takes four reads' time to wake up after 40 to
    /// 240 us idle, host stalls of up to 5 ms.
    #[test]
    fn equal_legs_spread_under_guest_noise() {
        for queue_depth in [1, 2, 4] {
            let splits = guest_runs(&[LOOP, LOOP], GUEST, queue_depth, 200);
            let (bad, worst) = below(&splits, 35);
            std::println!(
                "qd {queue_depth}: {bad} of {} runs with a leg under 35%, smallest share {worst}/400",
                splits.len()
            );
            // At depth 2 and 4 a read 10 to 40 times slower than usual
            // blocks its (serial) leg for up to 40 reads' time, and the
            // other leg rightly takes over meanwhile.
            assert!(bad * 200 <= splits.len(), "qd {queue_depth}");
            assert!(worst * 100 >= 30 * 400, "qd {queue_depth}");
        }
    }

    /// The guest's fio at `iodepth=4` has 1 to 4 reads in flight, changing
    /// all the time.
    #[test]
    fn equal_legs_spread_under_guest_noise_at_varying_depth() {
        let mut splits = Vec::new();
        for seed in 0..200 {
            let mut sim =
                Sim::seeded(&[LOOP, LOOP], adaptive(), seed).guest_like(GUEST, seed % 2 == 1);
            sim.resume();
            for _ in 0..3 {
                splits.push(sim.run_varying(4, 400));
                sim.pause(30_000_000);
            }
        }
        let (bad, worst) = below(&splits, 35);
        std::println!(
            "{bad} of {} runs with a leg under 35%, smallest share {worst}/400",
            splits.len()
        );
        assert!(bad * 200 <= splits.len());
        assert!(worst * 100 >= 30 * 400);
    }

    /// Worse than the guest: legs taking turns keep waking each other up,
    /// so that a leg used alone is 7 times faster than two taking turns. At
    /// depth 1 that makes using one leg the right answer for latency, and
    /// the policy still spreads reads nearly always.
    #[test]
    fn equal_legs_spread_when_taking_turns_is_slow() {
        for queue_depth in [1, 4] {
            let splits = guest_runs(&[LOOP, LOOP], HARSH, queue_depth, 100);
            let (bad, worst) = below(&splits, 35);
            std::println!(
                "qd {queue_depth}: {bad} of {} runs with a leg under 35%, smallest share {worst}/400",
                splits.len()
            );
            assert!(bad * 50 <= splits.len(), "qd {queue_depth}");
        }
    }

    #[test]
    fn slower_legs_idle_under_guest_noise() {
        // (legs, depth, max share of the slow leg 1 in percent: in the
        // first 400 reads of a mirror (measuring it), later)
        let cases = [
            ([LOOP, LOOP_3X], 1, 7, 5),
            ([LOOP, DELAYED], 1, 2, 1),
            ([LOOP, DELAYED], 4, 2, 1),
            ([NVME, DELAYED_3X], 1, 7, 5),
            ([NVME, DELAYED_3X], 4, 5, 3),
        ];
        for (legs, queue_depth, first_pct, later_pct) in cases {
            let splits = guest_runs(&legs, GUEST, queue_depth, 100);
            let (mut first, mut later) = (0, 0);
            for (run, split) in splits.iter().enumerate() {
                if run % 3 == 0 {
                    first += split[1];
                } else {
                    later += split[1];
                }
            }
            let runs = splits.len() / 3;
            std::println!(
                "{legs:?} qd {queue_depth}: leg 1 got {first} of {} first reads, {later} of {} later",
                runs * 400,
                runs * 800
            );
            assert!(
                first * 100 <= runs * 400 * first_pct,
                "{legs:?} qd {queue_depth}"
            );
            assert!(
                later * 100 <= runs * 800 * later_pct,
                "{legs:?} qd {queue_depth}"
            );
        }
        // A leg 3 times slower is worth a share at depth 4 if the fast leg
        // serves one read at a time: with 3 queued there, it answers sooner.
        for slow in [LOOP_3X, DELAYED_3X] {
            let splits = guest_runs(&[LOOP, slow], GUEST, 4, 20);
            let total: usize = splits.iter().map(|split| split[1]).sum();
            let pct = total * 100 / (splits.len() * 400);
            assert!((15..=45).contains(&pct), "{slow:?}: {pct}%");
        }
    }

    /// Two usable, in-sync legs under the untuned adaptive policy.
    fn adaptive_pair() -> Balancer {
        let mut balancer = Balancer::new(2).unwrap();
        let state = MirrorState {
            usable: LegSet::first_n(2),
            fresh_everywhere: LegSet::first_n(2),
        };
        balancer
            .apply(&Command::SetPolicy(adaptive()), &state)
            .unwrap();
        balancer
    }

    /// Runs the warm-up reads of both legs one after the other, the `i`th
    /// read of `leg` taking `latency(leg, i)`; returns the time after them.
    fn warm_up(balancer: &mut Balancer, mut now: u64, latency: impl Fn(usize, u64) -> u64) -> u64 {
        let mut count = [0u64; 2];
        while let Some(leg) = balancer.next_probe_read(LegSet::first_n(2), now) {
            now += latency(leg, count[leg]);
            count[leg] += 1;
            balancer.complete_probe_read(leg, now, 8, true);
        }
        assert_eq!(count, [WARMUP_SAMPLES; 2]);
        now
    }

    /// A fresh mapping sends no user read to a leg it has not measured:
    /// the default leg serves them until the warm-up reads measured the
    /// others, and a leg whose warm-up failed is never read.
    #[test]
    fn no_user_read_on_an_unmeasured_leg() {
        let mut balancer = adaptive_pair();
        let usable = LegSet::first_n(2);
        let read = |i: u64, now_ns| ReadRequest {
            sector: i * 8,
            nr_sectors: 8,
            now_ns,
        };
        // Nothing measured: the default leg, as dm-raid1.
        assert!(balancer.wants_probe_read(usable));
        assert_eq!(balancer.choose(usable, &read(0, 10)), Some(0));
        balancer.complete(0, 1_000, true);
        // Leg 0 measured (four warm-up reads at 25 us), leg 1 has one
        // warm-up read in flight: every read goes to leg 0, sequential or not.
        let mut now = 1_000;
        for _ in 1..WARMUP_SAMPLES {
            assert_eq!(balancer.next_probe_read(usable, now), Some(0));
            now += 25_000;
            balancer.complete_probe_read(0, now, 8, true);
        }
        assert_eq!(balancer.next_probe_read(usable, now), Some(1));
        assert_eq!(balancer.next_probe_read(usable, now), None, "one at a time");
        for i in 1..200 {
            assert_eq!(balancer.choose(usable, &read(i, now)), Some(0));
            balancer.complete(0, 25_000, true);
        }
        // Leg 1 measured fast: it shares.
        now += 20_000;
        balancer.complete_probe_read(1, now, 8, true);
        for _ in 1..WARMUP_SAMPLES {
            let leg = balancer.next_probe_read(usable, now).unwrap();
            now += 20_000;
            balancer.complete_probe_read(leg, now, 8, true);
        }
        assert!(!balancer.wants_probe_read(usable));
        let mut counts = [0; 2];
        for i in 0..200 {
            let leg = balancer.choose(usable, &read(1000 + 2 * i, now)).unwrap();
            now += 20_000;
            balancer.complete(leg, 20_000, true);
            counts[leg] += 1;
        }
        assert!(counts[1] >= 80, "{counts:?}");
        assert_eq!(balancer.stats(1).unwrap().probe_reads, WARMUP_SAMPLES);

        // A leg whose warm-up read fails is not read, nor warmed up again.
        let mut balancer = adaptive_pair();
        let now = warm_up(&mut balancer, 1_000, |_, _| 25_000);
        // Leg 1 fails and comes back: its estimates are forgotten.
        assert_eq!(balancer.choose(LegSet::first_n(1), &read(0, now)), Some(0));
        balancer.complete(0, 25_000, true);
        assert_eq!(balancer.next_probe_read(usable, now), Some(1));
        balancer.complete_probe_read(1, now + 1_000, 8, false);
        assert!(!balancer.wants_probe_read(usable));
        assert_eq!(balancer.next_probe_read(usable, now), None);
        for i in 0..100 {
            assert_eq!(balancer.choose(usable, &read(i, now)), Some(0));
            balancer.complete(0, 25_000, true);
        }
        // A read that never went out is undone.
        let mut balancer = adaptive_pair();
        assert_eq!(balancer.next_probe_read(usable, 0), Some(0));
        balancer.cancel_probe_read(0);
        let stats = balancer.stats(0).unwrap();
        assert_eq!(
            (stats.in_flight, stats.probe_reads, stats.probe_started_ns),
            (0, 0, None)
        );
        // Policies that do not measure want no warm-up.
        let mut balancer = Balancer::new(2).unwrap();
        assert!(!balancer.wants_probe_read(usable));
        assert_eq!(balancer.next_probe_read(usable, 0), None);
    }

    /// A read's cost depends on its size: a leg with the lower latency but
    /// a twentieth of the bandwidth is as good for 4 KiB reads and not for
    /// 1 MiB ones, once a large warm-up read measured the transfer.
    #[test]
    fn large_reads_avoid_a_low_bandwidth_leg() {
        // (latency of a 4 KiB read, ns per further sector)
        const LEGS: [(u64, u64); 2] = [(200_000, 5_000), (220_000, 250)];
        let cost = |leg: usize, sectors: u32| {
            LEGS[leg].0 + LEGS[leg].1 * u64::from(sectors.saturating_sub(8))
        };
        let mut balancer = adaptive_pair();
        let usable = LegSet::first_n(2);
        let mut now = 1_000_000_000;
        let mut nth = [0u32; 2];
        // As the kernel: the last of the four warm-up reads is 64 KiB.
        while let Some(leg) = balancer.next_probe_read(usable, now) {
            let sectors = if nth[leg] == 3 { 128 } else { 8 };
            nth[leg] += 1;
            now += cost(leg, sectors);
            balancer.complete_probe_read(leg, now, sectors, true);
        }
        for leg in 0..2 {
            let stats = balancer.stats(leg).unwrap();
            assert_eq!(stats.latency_ns, LEGS[leg].0, "leg {leg}");
            assert_eq!(stats.ns_per_sector, LEGS[leg].1, "leg {leg}");
        }
        let mut run = |balancer: &mut Balancer, sectors: u32, reads: u64| {
            let mut counts = [0; 2];
            for i in 0..reads {
                let read = ReadRequest {
                    sector: i * 1_000_000,
                    nr_sectors: sectors,
                    now_ns: now,
                };
                let leg = balancer.choose(usable, &read).unwrap();
                now += cost(leg, sectors);
                balancer.complete_sized(leg, cost(leg, sectors), sectors, true);
                counts[leg] += 1;
            }
            counts
        };
        let small = run(&mut balancer, 8, 400);
        assert!(small[0] >= 120 && small[1] >= 120, "4 KiB: {small:?}");
        let large = run(&mut balancer, 2048, 400);
        assert!(large[1] >= 390, "1 MiB: {large:?}");
        // Mixed sizes do not blur the estimates.
        let mixed = run(&mut balancer, 8, 200);
        assert!(mixed[0] >= 60 && mixed[1] >= 60, "4 KiB again: {mixed:?}");
        assert_eq!(balancer.stats(1).unwrap().latency_ns, LEGS[1].0);
        assert_eq!(balancer.stats(1).unwrap().ns_per_sector, LEGS[1].1);
    }

    /// The guest's failure: one stall made a leg look slow, and a leg
    /// outside the band got no reads to show it was not.
    #[test]
    fn a_stall_does_not_decide_the_split() {
        let mut balancer = adaptive_pair();
        let mut now = warm_up(&mut balancer, 1_000_000_000, |_, _| 25_000);
        let mut counts = [0; 2];
        for i in 0..1_000u64 {
            let read = ReadRequest {
                sector: i * 4096,
                nr_sectors: 8,
                now_ns: now,
            };
            let leg = balancer.choose(LegSet::first_n(2), &read).unwrap();
            // Reads 100 to 103 (two on each leg) and 200 to 202 hit stalls
            // of 5 ms and 2 ms; everything else takes 25 us.
            let latency = match i {
                100..=103 => 5_000_000,
                200..=202 => 2_000_000,
                _ => 25_000,
            };
            now += latency;
            balancer.complete(leg, latency, true);
            if i >= 600 {
                counts[leg] += 1;
            }
        }
        assert!(counts[0] >= 180 && counts[1] >= 180, "{counts:?}");
    }

    /// The other guest failure: the first read of each leg wakes the device
    /// up and is slow; it must not decide which leg is the fast one.
    #[test]
    fn a_slow_first_read_does_not_decide_the_split() {
        let mut balancer = adaptive_pair();
        // The first warm-up read of each leg wakes it up.
        let mut now = warm_up(&mut balancer, 1_000_000_000, |leg, i| {
            if i == 0 {
                [200_000, 900_000][leg]
            } else {
                25_000 + i * 1_000
            }
        });
        let mut counts = [0; 2];
        for i in 0..400u64 {
            let read = ReadRequest {
                sector: i * 4096,
                nr_sectors: 8,
                now_ns: now,
            };
            let leg = balancer.choose(LegSet::first_n(2), &read).unwrap();
            let latency = 25_000 + i % 7 * 1_000;
            now += latency;
            balancer.complete(leg, latency, true);
            counts[leg] += 1;
        }
        assert!(counts[0] >= 180 && counts[1] >= 180, "{counts:?}");
    }

    #[test]
    fn sequential_stream_sticks_to_one_leg_at_depth_one() {
        let mut sim = Sim::new(&[FAST, FAST], adaptive());
        sim.sequential = true;
        let counts = sim.run(1, 1_000);
        assert!(counts[0] >= 999 || counts[1] >= 999, "{counts:?}");
    }

    #[test]
    fn slow_leg_that_becomes_fast_is_noticed() {
        let mut sim = Sim::new(&[SLOW, FAST], adaptive());
        let counts = sim.run(1, 30_000);
        assert!(share(&counts, 1) >= 97, "{counts:?}");
        sim.devices[0] = FAST;
        // About 0.2 s of simulated time at 10k reads/s.
        sim.run(1, 2_000);
        let counts = sim.run(1, 10_000);
        assert!(share(&counts, 0) >= 45, "{counts:?}");
        // 80 times slower, then as fast.
        let mut sim = Sim::new(&[DELAYED, FAST], adaptive());
        sim.run(1, 30_000);
        sim.devices[0] = FAST;
        sim.run(1, 5_000);
        let counts = sim.run(1, 10_000);
        assert!(share(&counts, 0) >= 45, "{counts:?}");
    }

    #[test]
    fn fast_leg_that_becomes_slow_is_avoided() {
        for (slow, max_reads) in [(SLOW, 60), (DELAYED, 40)] {
            for queue_depth in [1, 4] {
                let mut sim = Sim::new(&[FAST, FAST], adaptive());
                sim.run(queue_depth, 10_000);
                sim.devices[1] = slow;
                let first = sim.run(queue_depth, 1_000);
                assert!(
                    first[1] <= max_reads,
                    "{slow:?} qd {queue_depth}: {first:?}"
                );
                let counts = sim.run(queue_depth, 20_000);
                assert!(
                    share(&counts, 0) >= 99,
                    "{slow:?} qd {queue_depth}: {counts:?}"
                );
            }
        }
    }

    #[test]
    fn probes_cost_little() {
        for (slow, slow_ns) in [(SLOW, 1_000_000), (DELAYED, 8_000_000)] {
            let mut sim = Sim::new(&[slow, FAST], adaptive());
            sim.run(1, 1_000);
            let (start, probes, reads) = (sim.now, sim.probes(), sim.probe_reads);
            let counts = sim.run(1, 100_000);
            // No user read goes to the slow leg: it gets probe reads only,
            // three per probe, which together take about 5% of the time
            // (three reads per 64 times what one costs over a read of the
            // fast leg) and less than 1% of the reads.
            assert_eq!(counts[0], 0, "{slow:?}: {counts:?}");
            let probe_reads = (sim.probe_reads - reads) as u64;
            assert_eq!(probe_reads, 3 * (sim.probes() - probes));
            assert!(probe_reads > 0);
            let elapsed = sim.now - start;
            assert!(
                probe_reads * slow_ns * 100 <= elapsed * 6,
                "{slow:?}: {probe_reads} probe reads in {elapsed} ns"
            );
            assert!(
                probe_reads * 100 < 100_000,
                "{slow:?}: {probe_reads} probe reads"
            );
        }
    }

    #[test]
    fn no_probes_when_disabled() {
        let params = AdaptiveParams {
            tolerance_pct: None,
            probe_ms: Some(0),
        };
        let mut sim = Sim::new(&[SLOW, FAST], PolicySpec::Adaptive(params));
        sim.run(1, 5_000);
        let counts = sim.run(1, 20_000);
        assert_eq!(counts[0], 0, "{counts:?}");
    }

    #[test]
    fn wide_tolerance_spreads_over_unequal_legs() {
        let params = AdaptiveParams {
            tolerance_pct: Some(1000),
            probe_ms: None,
        };
        let mut sim = Sim::new(&[SLOW, FAST], PolicySpec::Adaptive(params));
        let counts = sim.run(1, 20_000);
        assert!(share(&counts, 0) >= 30, "{counts:?}");
    }

    #[test]
    fn prediction_scales_with_load_not_with_measured_queue() {
        let mut stats = LegStats {
            samples: 10,
            latency_ns: 1000,
            queue_depth_x256: 15 * 256,
            in_flight: 15,
            ..LegStats::default()
        };
        // At the load it was measured at, the prediction is the measurement.
        assert_eq!(Adaptive::predicted_latency_ns(&stats, 8), 1000);
        stats.in_flight = 31;
        assert_eq!(Adaptive::predicted_latency_ns(&stats, 8), 2000);
        // A larger read adds its transfer beyond the reference size.
        stats.in_flight = 15;
        stats.ns_per_sector = 10;
        assert_eq!(Adaptive::predicted_latency_ns(&stats, 8), 1000);
        assert_eq!(Adaptive::predicted_latency_ns(&stats, 108), 2000);
        let extreme = LegStats {
            samples: u64::MAX,
            latency_ns: super::super::MAX_LATENCY_SAMPLE_NS,
            ns_per_sector: u64::MAX,
            in_flight: u32::MAX,
            ..LegStats::default()
        };
        assert!(Adaptive::predicted_latency_ns(&extreme, u32::MAX) < 1 << 61);
    }

    #[test]
    fn two_fast_legs_share_and_slow_leg_idles() {
        for queue_depth in [1, 4, 32] {
            let mut sim = Sim::new(&[FAST, SLOW, FAST], adaptive());
            let counts = sim.run(queue_depth, 30_000);
            assert!(share(&counts, 1) <= 1, "qd {queue_depth}: {counts:?}");
            assert!(
                (47..=53).contains(&share(&counts, 0)),
                "qd {queue_depth}: {counts:?}"
            );
        }
    }

    impl Sim {
        fn probes(&self) -> u64 {
            let Policy::Adaptive(policy) = self.balancer.policy_state() else {
                panic!("not adaptive");
            };
            policy.probes()
        }
    }

    use super::super::Policy;
}
