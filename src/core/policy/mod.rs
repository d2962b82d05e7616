// SPDX-License-Identifier: GPL-2.0

//! Read balancing: which leg serves a read.
//!
//! [`Balancer`] holds the whole read-balancing state of one mirror set
//! (default leg, weights, active policy, per-leg statistics). It is meant to
//! live under the mirror set's spinlock: every operation is O(legs), never
//! allocates and never sleeps.
//!
//! The policies implement [`ReadPolicy`] and are dispatched through the
//! [`Policy`] enum (no trait objects):
//!
//! - [`RoundRobin`]: `ios` reads per leg, then the next usable leg;
//!   `ios == 0` always reads the default leg (upstream dm-raid1 behaviour,
//!   the policy at creation).
//! - [`Weighted`]: smooth weighted round robin (nginx's algorithm).
//! - [`Adaptive`]: picks the leg with the least expected latency, spreads
//!   reads over legs that are about equally fast, and probes idle slower
//!   legs now and then.

pub mod adaptive;
pub mod balancer;
pub mod completions;
pub mod lease;
pub mod round_robin;
pub mod weighted;

pub use adaptive::Adaptive;
pub use balancer::{Balancer, BalancerError, MirrorState, ReadRequest};
pub use completions::{Completion, CompletionMailbox};
pub use lease::{LeaseGrant, LeasedReads, ReadLease, MAX_LEASE_READS};
pub use round_robin::RoundRobin;
pub use weighted::Weighted;

use super::io_balance::PolicySpec;
use super::legs::{LegSet, MAX_LEGS};

/// Latency samples are clamped to this many nanoseconds (about 68 s), which
/// keeps every product in the policies within `u64`.
pub const MAX_LATENCY_SAMPLE_NS: u64 = 1 << 36;

/// In-flight counts above this are treated as this value in estimates.
pub const MAX_COUNTED_IN_FLIGHT: u32 = 1 << 16;

/// Leased reads accounted one by one in the queue-depth average (see
/// `LegStats::record_leased`).
pub const LEASED_DEPTH_SAMPLES: u32 = 64;

/// Fractional bits of [`LegStats::queue_depth_x256`].
pub const QUEUE_DEPTH_SHIFT: u32 = 8;

/// Fixed-point 1.0 of [`LegStats::queue_depth_x256`].
pub const QUEUE_DEPTH_ONE: u32 = 1 << QUEUE_DEPTH_SHIFT;

/// Weight of a new sample in the queue-depth moving average is
/// `1 / 2^EWMA_SHIFT` (1/32). Smooth, so that legs sharing a queue do not
/// drift apart in measured depth: the adaptive policy would take the leg
/// measured at the deeper queue for the one that copes better with load.
pub const EWMA_SHIFT: u32 = 5;

/// A leg's first `WARMUP_SAMPLES` latency samples set its estimate to the
/// fastest of them; only then is the leg [`LegStats::is_measured`].
pub const WARMUP_SAMPLES: u64 = 4;

/// A latency sample above the estimate moves it `1 / 2^RISE_SHIFT` of the
/// way up (1/8)...
pub const RISE_SHIFT: u32 = 3;

/// ... but by at most `1 / 2^MAX_RISE_SHIFT` of the estimate (1/32): a
/// stall, a wake-up or a queue behind someone else's I/O hardly moves it; a
/// lasting slowdown does (the estimate doubles in 23 reads).
pub const MAX_RISE_SHIFT: u32 = 5;

/// A measurement (a probe read after the first, see
/// [`Balancer::next_probe_read`]) above the estimate raises it
/// by at most `1 / 2^MEASUREMENT_RISE_SHIFT` of the estimate (a quarter).
pub const MEASUREMENT_RISE_SHIFT: u32 = 2;

/// The latency estimate is that of a read of this many sectors (4 KiB);
/// larger reads add their transfer ([`LegStats::ns_per_sector`]).
pub const REFERENCE_SECTORS: u32 = 8;

/// Reads of at least this many sectors (32 KiB) measure a leg's transfer
/// cost: smaller ones are all latency.
pub const TRANSFER_SAMPLE_SECTORS: u32 = 64;

/// A lasting slowdown: after a sample more than `2^SLOWDOWN_SHIFT` (8)
/// times the estimate, every read then in flight (which one stall would
/// slow as well) and [`SLOWDOWN_CONFIRMATIONS`] more complete that slowly
/// too, with no faster sample between: the estimate then jumps to the
/// fastest of them. A stall slows the reads in flight at once, not those
/// sent after it, so it never gets that far; a device that stays slow is
/// believed within a few reads instead of the 1/32 steps (over a hundred
/// reads for a leg 100 times slower). Smaller slowdowns, like the wake-up
/// of a device that two legs taking turns keep idle (7 times in the host
/// simulation's harshest noise), still take the small steps.
pub const SLOWDOWN_SHIFT: u32 = 3;

/// See [`SLOWDOWN_SHIFT`].
pub const SLOWDOWN_CONFIRMATIONS: u32 = 4;

/// Per-leg statistics, maintained by [`Balancer`] for every policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LegStats {
    /// Reads sent to the leg (since creation or `reset_stats`).
    pub reads: u64,
    /// Sectors read from the leg.
    pub sectors: u64,
    /// Failed reads reported by [`Balancer::complete`].
    pub errors: u64,
    /// Reads sent to the leg and not completed yet.
    pub in_flight: u32,
    /// Successful completions that fed the latency estimate.
    pub samples: u64,
    /// Estimate of the leg's read completion latency in nanoseconds (see
    /// `LegStats::record_completion`); meaningful only if `samples > 0`.
    pub latency_ns: u64,
    /// Moving average of the number of reads already in flight on the leg
    /// when a read is sent to it, in 1/256 units (fixed point, 8 bits of
    /// fraction).
    pub queue_depth_x256: u32,
    /// Time (the caller's clock, ns) the leg was last sent a read.
    pub last_dispatch_ns: u64,
    /// Sector just after the last read sent to the leg, for sequential
    /// detection.
    pub next_sector: Option<u64>,
    /// The read that ended the leg's idle period is a measurement (a read
    /// of a probe after the first): its sample counts in full.
    pub measurement_pending: bool,
    /// Latency of the leg's last read if it succeeded (for a measurement,
    /// the fastest of its probe's reads so far), else 0.
    pub last_sample_ns: u64,
    /// Slow samples in a row (see [`SLOWDOWN_SHIFT`]), how many of them a
    /// lasting slowdown needs, and the fastest of them.
    pub slow_run: u32,
    /// See `slow_run`.
    pub slow_run_needed: u32,
    /// See `slow_run`.
    pub slow_run_min_ns: u64,
    /// Estimate of the leg's transfer cost: nanoseconds per sector beyond
    /// [`REFERENCE_SECTORS`] (0 until a read of at least
    /// [`TRANSFER_SAMPLE_SECTORS`] measured it). With it, a 4 KiB read
    /// cannot make a low-bandwidth leg look good for 1 MiB reads.
    pub ns_per_sector: u64,
    /// Probe reads sent to the leg: warm-up reads and the reads of probes,
    /// the module's own, never a user's (see
    /// [`super::Balancer::next_probe_read`]).
    pub probe_reads: u64,
    /// Reads of a probe the policy asked for still to send (see
    /// [`ReadPolicy::take_probe_request`]).
    pub probe_reads_due: u8,
    /// Dispatch time of the probe read in flight, if one is.
    pub probe_started_ns: Option<u64>,
    /// A warm-up read failed: no more until the estimates are forgotten.
    pub probe_failed: bool,
}

impl LegStats {
    /// Forgets the latency and queue-depth estimates (not the counters).
    pub fn forget_estimates(&mut self) {
        self.samples = 0;
        self.latency_ns = 0;
        self.queue_depth_x256 = 0;
        self.next_sector = None;
        self.measurement_pending = false;
        self.last_sample_ns = 0;
        self.probe_failed = false;
        self.probe_reads_due = 0;
        self.ns_per_sector = 0;
        self.slow_run = 0;
    }

    /// The transfer of a read of `nr_sectors` beyond the reference size,
    /// in nanoseconds (at most [`MAX_LATENCY_SAMPLE_NS`]).
    pub fn transfer_ns(&self, nr_sectors: u32) -> u64 {
        let extra = u64::from(nr_sectors.saturating_sub(REFERENCE_SECTORS));
        self.ns_per_sector
            .saturating_mul(extra)
            .min(MAX_LATENCY_SAMPLE_NS)
    }

    /// What a read of `nr_sectors` costs on the leg when idle: the latency
    /// estimate plus the transfer beyond the reference size (at most twice
    /// [`MAX_LATENCY_SAMPLE_NS`]).
    pub fn cost_ns(&self, nr_sectors: u32) -> u64 {
        self.latency_ns
            .min(MAX_LATENCY_SAMPLE_NS)
            .saturating_add(self.transfer_ns(nr_sectors))
    }

    /// Whether the leg wants a probe read now: not measured yet (a warm-up)
    /// or a probe asked for by the policy, none in flight, none failed.
    pub fn wants_probe_read(&self) -> bool {
        (!self.is_measured() || self.probe_reads_due > 0)
            && self.probe_started_ns.is_none()
            && !self.probe_failed
    }

    /// Whether the latency estimate rests on [`WARMUP_SAMPLES`] samples.
    pub fn is_measured(&self) -> bool {
        self.samples >= WARMUP_SAMPLES
    }

    /// Zeroes the counters (`reads`, `sectors`, `errors`, `probe_reads`); keeps in-flight
    /// accounting and estimates.
    pub fn reset_counters(&mut self) {
        self.reads = 0;
        self.sectors = 0;
        self.errors = 0;
        self.probe_reads = 0;
    }

    /// Accounts a user read sent to this leg; `measurement` if its sample
    /// should count as a probe's (see [`Balancer::next_probe_read`]), which
    /// a read that finds the leg busy never does.
    fn record_dispatch(&mut self, read: &ReadRequest, measurement: bool) {
        self.reads = self.reads.saturating_add(1);
        self.sectors = self.sectors.saturating_add(u64::from(read.nr_sectors));
        let ahead = self.in_flight.min(MAX_COUNTED_IN_FLIGHT);
        // ahead <= 2^16, so ahead * 256 fits; queue_depth_x256 stays below
        // 2^24 because it is an average of such values.
        let sample = ahead.saturating_mul(QUEUE_DEPTH_ONE);
        self.queue_depth_x256 = ewma_u32(self.queue_depth_x256, sample, EWMA_SHIFT);
        if self.in_flight == 0 {
            self.measurement_pending = measurement;
        }
        self.in_flight = self.in_flight.saturating_add(1);
        self.last_dispatch_ns = read.now_ns;
        self.next_sector = Some(read.sector.saturating_add(u64::from(read.nr_sectors)));
    }

    /// Accounts `reads` user reads sent through a lease (see
    /// [`ReadLease`]), the last ending before `next_sector` if it was this
    /// leg's (else the leg's stream hint stays), as that many
    /// dispatches at `now_ns`, each finding `ahead` reads in flight: what
    /// the choice that granted the lease found. Their own depths are not
    /// known (the in-flight count now includes reads whose completions
    /// are not folded yet), and a steady reader sends each as an earlier
    /// one completes. At most [`LEASED_DEPTH_SAMPLES`] of them count in
    /// the queue-depth average; it has settled by then.
    fn record_leased(&mut self, reads: u32, ahead: u32, next_sector: Option<u64>, now_ns: u64) {
        self.reads = self.reads.saturating_add(u64::from(reads));
        if self.in_flight == 0 {
            self.measurement_pending = false;
        }
        let sample = ahead
            .min(MAX_COUNTED_IN_FLIGHT)
            .saturating_mul(QUEUE_DEPTH_ONE);
        for _ in 0..reads.min(LEASED_DEPTH_SAMPLES) {
            self.queue_depth_x256 = ewma_u32(self.queue_depth_x256, sample, EWMA_SHIFT);
        }
        self.in_flight = self.in_flight.saturating_add(reads);
        self.last_dispatch_ns = now_ns;
        if next_sector.is_some() {
            self.next_sector = next_sector;
        }
    }

    /// Accounts a completed read and updates the latency estimate.
    ///
    /// Noise (a stall of the host or the device, a worker thread or an
    /// interrupt waking up, a queue behind other I/O) only ever makes a read
    /// slower, so the estimate believes fast reads and doubts slow ones:
    ///
    /// - the first [`WARMUP_SAMPLES`] samples: the fastest of them;
    /// - a faster sample: the estimate drops to it;
    /// - a slower one: the estimate moves 1/8 of the way up to it, by at
    ///   most 1/32 of itself ([`RISE_SHIFT`], [`MAX_RISE_SHIFT`]);
    /// - a measurement (a read of a probe after the first one, which woke
    ///   the leg up): the fastest of the probe's reads so far, followed down
    ///   in full and up by at most a quarter ([`MEASUREMENT_RISE_SHIFT`]).
    ///
    /// A read of `nr_sectors` above the reference size first updates the
    /// transfer estimate (reads of at least [`TRANSFER_SAMPLE_SECTORS`]:
    /// what it took beyond the latency estimate, per extra sector, a
    /// quarter of the way), then counts as a reference read without its
    /// transfer.
    fn record_completion(&mut self, latency_ns: u64, nr_sectors: u32, ok: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let measurement = core::mem::take(&mut self.measurement_pending);
        if !ok {
            self.errors = self.errors.saturating_add(1);
            self.last_sample_ns = 0;
            return;
        }
        let raw = latency_ns.clamp(1, MAX_LATENCY_SAMPLE_NS);
        let extra = u64::from(nr_sectors.saturating_sub(REFERENCE_SECTORS));
        if nr_sectors >= TRANSFER_SAMPLE_SECTORS && self.samples > 0 {
            let per_sector = raw
                .saturating_sub(self.latency_ns)
                .checked_div(extra)
                .unwrap_or(0);
            self.ns_per_sector = if self.ns_per_sector == 0 {
                per_sector
            } else {
                // (3 * old + new) / 4; old, new <= 2^36, no overflow.
                self.ns_per_sector
                    .saturating_mul(3)
                    .saturating_add(per_sector)
                    .checked_shr(2)
                    .unwrap_or(0)
            };
        }
        let sample = raw.saturating_sub(self.transfer_ns(nr_sectors)).max(1);
        let previous = self.last_sample_ns;
        let sample = if measurement && previous > 0 {
            sample.min(previous)
        } else {
            sample
        };
        self.last_sample_ns = sample;
        let estimate = self.latency_ns;
        // A lasting slowdown (see SLOWDOWN_SHIFT)?
        if self.is_measured() && sample > estimate.saturating_mul(1 << SLOWDOWN_SHIFT) {
            if self.slow_run == 0 {
                self.slow_run_needed = self
                    .in_flight
                    .min(MAX_COUNTED_IN_FLIGHT)
                    .saturating_add(SLOWDOWN_CONFIRMATIONS);
                self.slow_run_min_ns = sample;
            }
            self.slow_run = self.slow_run.saturating_add(1);
            self.slow_run_min_ns = self.slow_run_min_ns.min(sample);
            if self.slow_run > self.slow_run_needed {
                self.latency_ns = self.slow_run_min_ns;
                self.slow_run = 0;
                self.samples = self.samples.saturating_add(1);
                return;
            }
        } else {
            self.slow_run = 0;
        }
        self.latency_ns = if self.samples == 0 || sample <= estimate {
            sample
        } else if self.samples < WARMUP_SAMPLES {
            estimate
        } else if measurement {
            let max_step = estimate.checked_shr(MEASUREMENT_RISE_SHIFT).unwrap_or(0);
            sample.min(estimate.saturating_add(max_step))
        } else {
            let step = sample
                .saturating_sub(estimate)
                .checked_shr(RISE_SHIFT)
                .unwrap_or(0);
            let max_step = estimate.checked_shr(MAX_RISE_SHIFT).unwrap_or(0);
            // 1 <= step <= sample - estimate.
            estimate.saturating_add(step.min(max_step).max(1))
        };
        self.samples = self.samples.saturating_add(1);
    }
}

/// `average + (sample - average) / 2^shift` (roughly), without signed
/// arithmetic; `shift` must be below 32.
fn ewma_u32(average: u32, sample: u32, shift: u32) -> u32 {
    average
        .saturating_sub(average.checked_shr(shift).unwrap_or(0))
        .saturating_add(sample.checked_shr(shift).unwrap_or(0))
}

/// What a policy may look at to choose a leg.
#[derive(Clone, Copy, Debug)]
pub struct ReadContext<'a> {
    /// Legs that may serve the read; has at least two members, all below
    /// `nr_legs` (the [`Balancer`] handles the trivial cases itself).
    pub usable: LegSet,
    /// Number of legs in the mirror set.
    pub nr_legs: usize,
    /// The default leg (may be unusable).
    pub default_leg: usize,
    /// Per-leg weights (entries past `nr_legs` are unused).
    pub weights: &'a [u16; MAX_LEGS],
    /// Per-leg statistics.
    pub stats: &'a [LegStats; MAX_LEGS],
    /// The read.
    pub read: &'a ReadRequest,
}

impl ReadContext<'_> {
    /// The default leg if usable, else the next usable one in dm-raid1's
    /// `choose_mirror()` order (downwards from the default, wrapping).
    pub fn default_or_fallback(&self) -> Option<usize> {
        self.usable.at_or_before(self.default_leg)
    }
}

/// A read-balancing policy.
///
/// Implementations must be O(legs), allocation-free and must not sleep:
/// they run under a spinlock in the I/O path.
pub trait ReadPolicy {
    /// Chooses the leg for a read; should return a member of
    /// `context.usable` (the [`Balancer`] falls back to the default leg
    /// otherwise).
    fn choose(&mut self, context: &ReadContext<'_>) -> Option<usize>;

    /// Feedback for a completed read on `leg` that took `latency_ns`. The
    /// [`Balancer`] has already updated the shared [`LegStats`].
    fn complete(&mut self, _leg: usize, _latency_ns: u64) {}

    /// Forgets internal scheduling state (after weight or default changes).
    fn reset(&mut self) {}

    /// A leg the policy wants probed (a demoted leg whose estimate may be
    /// stale), asked once by [`ReadPolicy::choose`]; the [`Balancer`]
    /// turns it into [`adaptive::PROBE_READS`] private probe reads.
    fn take_probe_request(&mut self) -> Option<usize> {
        None
    }

    /// How many more reads the policy would send to `leg`, which its last
    /// [`ReadPolicy::choose`] returned, with nothing new learned (see
    /// [`ReadLease`]); 0: it decides every read.
    fn lease_reads(&self, _leg: usize) -> u32 {
        0
    }

    /// The legs that take turns on the reads of [`ReadPolicy::lease_reads`]
    /// (`leg` itself among them, the first after `leg` first): `leg`
    /// alone unless the policy would share them between legs.
    fn lease_legs(&self, leg: usize) -> LegSet {
        LegSet::single(leg)
    }

    /// Reads went through a lease, as if chosen.
    fn note_leased(&mut self, _leased: &LeasedReads) {}

    /// Whether the policy needs every leg measured before it reads from it:
    /// then the legs get private warm-up reads (see
    /// [`super::Balancer::next_probe_read`]).
    fn needs_measured_legs(&self) -> bool {
        false
    }
}

/// The active policy, dispatched without trait objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// See [`RoundRobin`].
    RoundRobin(RoundRobin),
    /// See [`Weighted`].
    Weighted(Weighted),
    /// See [`Adaptive`].
    Adaptive(Adaptive),
}

impl Policy {
    /// A fresh policy for `spec` (`default_leg` is where round robin starts).
    pub fn from_spec(spec: &PolicySpec, default_leg: usize) -> Policy {
        match *spec {
            PolicySpec::RoundRobin { ios } => Policy::RoundRobin(RoundRobin::new(ios, default_leg)),
            PolicySpec::Weighted => Policy::Weighted(Weighted::new()),
            PolicySpec::Adaptive(params) => Policy::Adaptive(Adaptive::new(&params)),
        }
    }

    /// The policy and its effective parameters (adaptive defaults filled
    /// in).
    pub fn spec(&self) -> PolicySpec {
        match self {
            Policy::RoundRobin(policy) => PolicySpec::RoundRobin { ios: policy.ios() },
            Policy::Weighted(_) => PolicySpec::Weighted,
            Policy::Adaptive(policy) => PolicySpec::Adaptive(policy.params()),
        }
    }
}

impl ReadPolicy for Policy {
    fn choose(&mut self, context: &ReadContext<'_>) -> Option<usize> {
        match self {
            Policy::RoundRobin(policy) => policy.choose(context),
            Policy::Weighted(policy) => policy.choose(context),
            Policy::Adaptive(policy) => policy.choose(context),
        }
    }

    fn complete(&mut self, leg: usize, latency_ns: u64) {
        match self {
            Policy::RoundRobin(policy) => policy.complete(leg, latency_ns),
            Policy::Weighted(policy) => policy.complete(leg, latency_ns),
            Policy::Adaptive(policy) => policy.complete(leg, latency_ns),
        }
    }

    fn reset(&mut self) {
        match self {
            Policy::RoundRobin(policy) => policy.reset(),
            Policy::Weighted(policy) => policy.reset(),
            Policy::Adaptive(policy) => policy.reset(),
        }
    }

    fn lease_reads(&self, leg: usize) -> u32 {
        match self {
            Policy::RoundRobin(policy) => policy.lease_reads(leg),
            Policy::Weighted(policy) => policy.lease_reads(leg),
            Policy::Adaptive(policy) => policy.lease_reads(leg),
        }
    }

    fn lease_legs(&self, leg: usize) -> LegSet {
        match self {
            Policy::Adaptive(policy) => policy.lease_legs(leg),
            Policy::RoundRobin(_) | Policy::Weighted(_) => LegSet::single(leg),
        }
    }

    fn note_leased(&mut self, leased: &LeasedReads) {
        match self {
            Policy::RoundRobin(policy) => policy.note_leased(leased),
            Policy::Weighted(policy) => policy.note_leased(leased),
            Policy::Adaptive(policy) => policy.note_leased(leased),
        }
    }

    fn needs_measured_legs(&self) -> bool {
        match self {
            Policy::Adaptive(policy) => policy.needs_measured_legs(),
            Policy::RoundRobin(_) | Policy::Weighted(_) => false,
        }
    }

    fn take_probe_request(&mut self) -> Option<usize> {
        match self {
            Policy::Adaptive(policy) => policy.take_probe_request(),
            Policy::RoundRobin(_) | Policy::Weighted(_) => None,
        }
    }
}
