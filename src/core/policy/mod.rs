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
pub mod round_robin;
pub mod weighted;

pub use adaptive::Adaptive;
pub use balancer::{Balancer, BalancerError, MirrorState, ReadRequest};
pub use round_robin::RoundRobin;
pub use weighted::Weighted;

use super::legs::{LegSet, MAX_LEGS};
use super::message::PolicySpec;

/// Latency samples are clamped to this many nanoseconds (about 68 s), which
/// keeps every product in the policies within `u64`.
pub const MAX_LATENCY_SAMPLE_NS: u64 = 1 << 36;

/// In-flight counts above this are treated as this value in estimates.
pub const MAX_COUNTED_IN_FLIGHT: u32 = 1 << 16;

/// Fractional bits of [`LegStats::queue_depth_x256`].
pub const QUEUE_DEPTH_SHIFT: u32 = 8;

/// Fixed-point 1.0 of [`LegStats::queue_depth_x256`].
pub const QUEUE_DEPTH_ONE: u32 = 1 << QUEUE_DEPTH_SHIFT;

/// Weight of a new sample in the latency and queue-depth moving averages is
/// `1 / 2^EWMA_SHIFT`.
pub const EWMA_SHIFT: u32 = 3;

/// A leg's latency estimate is stale when the leg was idle (nothing in
/// flight) and not sent a read for this long (50 ms); the sample of the read
/// that ends the idle period then weighs [`STALE_EWMA_SHIFT`] instead, so a
/// few probes suffice to notice that a slow leg became fast.
pub const STALE_ESTIMATE_NS: u64 = 50_000_000;

/// Weight of the sample of a read sent to a leg with a stale estimate is
/// `1 / 2^STALE_EWMA_SHIFT` (one half).
pub const STALE_EWMA_SHIFT: u32 = 1;

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
    /// Moving average of read completion latency in nanoseconds; meaningful
    /// only if `samples > 0`.
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
    /// The leg's estimate was stale (see [`STALE_ESTIMATE_NS`]) when its
    /// only in-flight read was sent; that read's sample weighs more.
    pub stale_sample_pending: bool,
}

impl LegStats {
    /// Forgets the latency and queue-depth estimates (not the counters).
    pub fn forget_estimates(&mut self) {
        self.samples = 0;
        self.latency_ns = 0;
        self.queue_depth_x256 = 0;
        self.next_sector = None;
        self.stale_sample_pending = false;
    }

    /// Zeroes the counters (`reads`, `sectors`, `errors`); keeps in-flight
    /// accounting and estimates.
    pub fn reset_counters(&mut self) {
        self.reads = 0;
        self.sectors = 0;
        self.errors = 0;
    }

    /// Accounts a read sent to this leg.
    fn record_dispatch(&mut self, read: &ReadRequest) {
        self.reads = self.reads.saturating_add(1);
        self.sectors = self.sectors.saturating_add(u64::from(read.nr_sectors));
        let ahead = self.in_flight.min(MAX_COUNTED_IN_FLIGHT);
        // ahead <= 2^16, so ahead * 256 fits; queue_depth_x256 stays below
        // 2^24 because it is an average of such values.
        let sample = ahead.saturating_mul(QUEUE_DEPTH_ONE);
        self.queue_depth_x256 = ewma_u32(self.queue_depth_x256, sample, EWMA_SHIFT);
        let idle_for = read.now_ns.saturating_sub(self.last_dispatch_ns);
        self.stale_sample_pending = self.in_flight == 0 && idle_for >= STALE_ESTIMATE_NS;
        self.in_flight = self.in_flight.saturating_add(1);
        self.last_dispatch_ns = read.now_ns;
        self.next_sector = Some(read.sector.saturating_add(u64::from(read.nr_sectors)));
    }

    /// Accounts a completed read.
    fn record_completion(&mut self, latency_ns: u64, ok: bool) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if !ok {
            self.errors = self.errors.saturating_add(1);
            return;
        }
        let sample = latency_ns.clamp(1, MAX_LATENCY_SAMPLE_NS);
        let shift = if self.stale_sample_pending {
            STALE_EWMA_SHIFT
        } else {
            EWMA_SHIFT
        };
        self.stale_sample_pending = false;
        self.latency_ns = if self.samples == 0 {
            sample
        } else {
            ewma_u64(self.latency_ns, sample, shift)
        };
        self.samples = self.samples.saturating_add(1);
    }
}

/// `average + (sample - average) / 2^shift` (roughly), without signed
/// arithmetic; `shift` must be below 64.
fn ewma_u64(average: u64, sample: u64, shift: u32) -> u64 {
    average
        .saturating_sub(average.checked_shr(shift).unwrap_or(0))
        .saturating_add(sample.checked_shr(shift).unwrap_or(0))
}

/// [`ewma_u64`] for `u32`.
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
}
