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
//! # Prediction
//!
//! The [`super::Balancer`] keeps per leg (see [`super::LegStats`]):
//!
//! - `latency_ns`: an exponentially weighted moving average (EWMA, new
//!   sample weight 1/8) of the completion latency of its reads;
//! - `queue_depth_x256`: an EWMA of how many of our reads were already in
//!   flight on the leg when a read was sent to it - the load at which the
//!   latency average was measured;
//! - `in_flight`: reads sent and not completed.
//!
//! The prediction is the measured latency scaled from the load at which it
//! was measured to the load the new read would see:
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
//! A leg with no sample yet is assumed as fast as the fastest measured leg
//! (and, having no measured queue, is predicted to slow down with every
//! read in flight), so it gets a read or two and is measured quickly. With
//! no sample on any leg every leg is predicted 0 and they take turns.
//!
//! A leg that was idle for [`super::STALE_ESTIMATE_NS`] has a stale
//! estimate: the sample of the read that ends the idle period (typically a
//! probe) weighs 1/2 instead of 1/8, so a leg that went from 10x slower to
//! as fast as the others is back in the band after a handful of probes
//! (about half a second with the defaults).
//!
//! # Choice
//!
//! 1. The band: usable legs with `predicted <= best * (100 + tolerance) /
//!    100`.
//! 2. Probe: if probing is enabled, at least [`PROBE_MIN_READS`] reads went
//!    by since the last probe, and some usable leg outside the band is idle
//!    (nothing in flight) and has not been sent a read for `probe_ms`, the
//!    read goes to the one idle longest. So probes cost at most one read in
//!    [`PROBE_MIN_READS`] and at most one read per leg per `probe_ms`.
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

use super::super::legs::{LegSet, MAX_LEGS};
use super::super::message::AdaptiveParams;
use super::{LegStats, ReadContext, ReadPolicy, MAX_COUNTED_IN_FLIGHT, QUEUE_DEPTH_ONE};

/// Minimum number of reads between two probes.
pub const PROBE_MIN_READS: u32 = 32;

const NS_PER_MS: u64 = 1_000_000;

/// The adaptive policy. See the module documentation.
// INVARIANT: `cursor < MAX_LEGS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Adaptive {
    tolerance_pct: u16,
    probe_ms: u32,
    cursor: u8,
    reads_since_probe: u32,
    probes: u64,
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
        }
    }

    /// The effective parameters (defaults filled in).
    pub fn params(&self) -> AdaptiveParams {
        AdaptiveParams {
            tolerance_pct: Some(self.tolerance_pct),
            probe_ms: Some(self.probe_ms),
        }
    }

    /// Probe reads sent so far.
    pub fn probes(&self) -> u64 {
        self.probes
    }

    /// Predicted latency (ns) of a read sent to a leg with `stats` now;
    /// `assumed_ns` stands in for the latency of a leg without samples.
    pub fn predicted_latency_ns(stats: &LegStats, assumed_ns: u64) -> u64 {
        let (latency, queue_depth) = if stats.samples > 0 {
            (stats.latency_ns, stats.queue_depth_x256)
        } else {
            (assumed_ns, 0)
        };
        let load = u64::from(stats.in_flight.min(MAX_COUNTED_IN_FLIGHT)).saturating_add(1);
        let measured_load = u64::from(queue_depth).saturating_add(u64::from(QUEUE_DEPTH_ONE));
        latency
            .saturating_mul(load)
            .saturating_mul(u64::from(QUEUE_DEPTH_ONE))
            .checked_div(measured_load)
            .unwrap_or(u64::MAX)
    }

    fn probe_target(&self, context: &ReadContext<'_>, band: LegSet) -> Option<usize> {
        if self.probe_ms == 0 || self.reads_since_probe < PROBE_MIN_READS {
            return None;
        }
        let interval_ns = u64::from(self.probe_ms).saturating_mul(NS_PER_MS);
        let now = context.read.now_ns;
        let mut stalest: Option<(usize, u64)> = None;
        for leg in context.usable {
            if band.contains(leg) {
                continue;
            }
            let Some(stats) = context.stats.get(leg) else {
                continue;
            };
            let idle_for = now.saturating_sub(stats.last_dispatch_ns);
            if stats.in_flight == 0
                && idle_for >= interval_ns
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
        let assumed_ns = usable
            .iter()
            .filter_map(|leg| context.stats.get(leg))
            .filter(|stats| stats.samples > 0)
            .map(|stats| stats.latency_ns)
            .min()
            .unwrap_or(0);

        let mut predicted = [u64::MAX; MAX_LEGS];
        let mut best = u64::MAX;
        for leg in usable {
            let (Some(stats), Some(slot)) = (context.stats.get(leg), predicted.get_mut(leg)) else {
                continue;
            };
            *slot = Self::predicted_latency_ns(stats, assumed_ns);
            best = best.min(*slot);
        }
        // predicted <= 2^52 (see the module doc), so these products fit.
        let limit = best.saturating_mul(u64::from(self.tolerance_pct).saturating_add(100));
        let mut band = LegSet::EMPTY;
        for leg in usable {
            if predicted
                .get(leg)
                .is_some_and(|p| p.saturating_mul(100) <= limit)
            {
                band = band.with(leg);
            }
        }

        if let Some(leg) = self.probe_target(context, band) {
            self.reads_since_probe = 0;
            self.probes = self.probes.saturating_add(1);
            return Some(leg);
        }
        self.reads_since_probe = self.reads_since_probe.saturating_add(1);

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

    fn reset(&mut self) {
        self.reads_since_probe = 0;
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic,
    clippy::needless_range_loop,
    clippy::type_complexity
)]
mod tests {
    //! A small discrete-event simulation: a closed loop of `queue_depth`
    //! outstanding reads against legs with latency models, driving a
    //! [`Balancer`] with the adaptive policy.

    use super::super::super::legs::LegSet;
    use super::super::super::message::{Command, PolicySpec};
    use super::super::{Balancer, MirrorState, ReadRequest};
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

    struct Sim {
        balancer: Balancer,
        devices: Vec<Device>,
        busy_until: Vec<u64>,
        /// (completion time, leg, dispatch time)
        pending: BinaryHeap<Reverse<(u64, usize, u64)>>,
        now: u64,
        rng: u64,
        next_sector: u64,
        sequential: bool,
    }

    impl Sim {
        fn new(devices: &[Device], policy: PolicySpec) -> Sim {
            let mut balancer = Balancer::new(devices.len()).unwrap();
            let state = MirrorState {
                usable: LegSet::first_n(devices.len()),
                in_sync: true,
            };
            balancer.apply(&Command::SetPolicy(policy), &state).unwrap();
            Sim {
                balancer,
                devices: devices.to_vec(),
                busy_until: std::vec![0; devices.len()],
                pending: BinaryHeap::new(),
                // Start at a realistic monotonic clock value.
                now: 1_000_000_000_000,
                rng: 0x9e37_79b9_7f4a_7c15,
                next_sector: 0,
                sequential: false,
            }
        }

        fn jitter(&mut self, ns: u64) -> u64 {
            // xorshift64*
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let r = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33;
            // 85% .. 115%
            ns * (85 + r % 31) / 100
        }

        fn dispatch(&mut self) -> usize {
            let sector = if self.sequential {
                self.next_sector
            } else {
                // Random, never contiguous with an earlier read.
                self.jitter(1 << 40) & !0xfff
            };
            self.next_sector = sector + 8;
            let read = ReadRequest {
                sector,
                nr_sectors: 8,
                region_in_sync: true,
                now_ns: self.now,
            };
            let usable = LegSet::first_n(self.devices.len());
            let leg = self.balancer.choose(usable, &read).unwrap();
            let done = match self.devices[leg] {
                Device::Parallel { latency_ns } => self.now + self.jitter(latency_ns),
                Device::Serial { service_ns } => {
                    let start = self.busy_until[leg].max(self.now);
                    self.busy_until[leg] = start + self.jitter(service_ns);
                    self.busy_until[leg]
                }
            };
            self.pending.push(Reverse((done, leg, self.now)));
            leg
        }

        /// Runs `reads` more reads keeping `queue_depth` outstanding;
        /// returns the reads each leg got.
        fn run(&mut self, queue_depth: usize, reads: usize) -> Vec<usize> {
            let mut counts = std::vec![0; self.devices.len()];
            let mut issued = 0;
            while self.pending.len() < queue_depth && issued < reads {
                counts[self.dispatch()] += 1;
                issued += 1;
            }
            while let Some(Reverse((done, leg, start))) = self.pending.pop() {
                self.now = done;
                self.balancer.complete(leg, done - start, true);
                if issued < reads {
                    counts[self.dispatch()] += 1;
                    issued += 1;
                }
            }
            counts
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

    fn adaptive() -> PolicySpec {
        PolicySpec::Adaptive(AdaptiveParams::default())
    }

    fn share(counts: &[usize], leg: usize) -> u64 {
        let total: usize = counts.iter().sum();
        (counts[leg] * 100 / total) as u64
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
    fn ssd_beats_disk_at_any_depth() {
        for queue_depth in [1, 8, 64] {
            let mut sim = Sim::new(&[DISK, FAST], adaptive());
            let counts = sim.run(queue_depth, 50_000);
            assert!(share(&counts, 1) >= 98, "qd {queue_depth}: {counts:?}");
        }
    }

    #[test]
    fn equal_legs_share_the_load() {
        for queue_depth in [1, 2, 4, 16, 64] {
            let mut sim = Sim::new(&[FAST, FAST], adaptive());
            let counts = sim.run(queue_depth, 20_000);
            let first = share(&counts, 0);
            assert!((40..=60).contains(&first), "qd {queue_depth}: {counts:?}");

            let mut sim = Sim::new(&[FAST, FAST, FAST], adaptive());
            let counts = sim.run(queue_depth, 30_000);
            for leg in 0..3 {
                assert!(
                    (23..=43).contains(&share(&counts, leg)),
                    "qd {queue_depth}: {counts:?}"
                );
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
        // About 1 s of simulated time at 10k reads/s.
        sim.run(1, 10_000);
        let counts = sim.run(1, 10_000);
        assert!(share(&counts, 0) >= 35, "{counts:?}");
    }

    #[test]
    fn fast_leg_that_becomes_slow_is_avoided() {
        let mut sim = Sim::new(&[FAST, FAST], adaptive());
        sim.run(4, 10_000);
        sim.devices[1] = SLOW;
        sim.run(4, 1_000);
        let counts = sim.run(4, 20_000);
        assert!(share(&counts, 0) >= 97, "{counts:?}");
    }

    #[test]
    fn probes_are_rare() {
        let mut sim = Sim::new(&[SLOW, FAST], adaptive());
        let counts = sim.run(1, 100_000);
        let Policy::Adaptive(policy) = sim.balancer_policy() else {
            panic!("not adaptive");
        };
        // ~10 s simulated: at most one probe per 100 ms.
        assert!(policy.probes() <= 110, "{}", policy.probes());
        assert!(counts[0] <= 1_000, "{counts:?}");
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
        assert_eq!(Adaptive::predicted_latency_ns(&stats, 0), 1000);
        stats.in_flight = 31;
        assert_eq!(Adaptive::predicted_latency_ns(&stats, 0), 2000);
        stats.samples = 0;
        stats.in_flight = 0;
        assert_eq!(Adaptive::predicted_latency_ns(&stats, 700), 700);
        let extreme = LegStats {
            samples: 1,
            latency_ns: super::super::MAX_LATENCY_SAMPLE_NS,
            in_flight: u32::MAX,
            ..LegStats::default()
        };
        assert!(Adaptive::predicted_latency_ns(&extreme, 0) < 1 << 53);
    }

    #[test]
    fn two_fast_legs_share_and_slow_leg_idles() {
        for queue_depth in [1, 4, 32] {
            let mut sim = Sim::new(&[FAST, SLOW, FAST], adaptive());
            let counts = sim.run(queue_depth, 30_000);
            assert!(share(&counts, 1) <= 1, "qd {queue_depth}: {counts:?}");
            assert!(
                (45..=55).contains(&share(&counts, 0)),
                "qd {queue_depth}: {counts:?}"
            );
        }
    }

    impl Sim {
        fn balancer_policy(&self) -> Policy {
            self.balancer.policy_state()
        }
    }

    use super::super::Policy;
}
