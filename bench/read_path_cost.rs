// SPDX-License-Identifier: GPL-2.0

//! The host cost of the read path's kernel-independent part, per read:
//! what `MirrorSet::choose` and `end_io` run for a 2-leg mirror in sync
//! (freshness, the write-behind check, the policy's choice and dispatch
//! accounting, the completion), with the completions posted to the
//! mailbox and folded at the next choice as the module does, and with
//! each completion accounted directly instead (as under the lock, the lock
//! itself not counted).  16 reads in flight, random regions.
//!
//! cargo run --release --example read-path-cost
#![allow(
    clippy::arithmetic_side_effects,
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    missing_docs
)]

use dm_mirror_core::freshness::Freshness;
use dm_mirror_core::io_balance::{AdaptiveParams, Command, PolicySpec};
use dm_mirror_core::legs::LegSet;
use dm_mirror_core::policy::{Balancer, Completion, CompletionMailbox, MirrorState, ReadRequest};
use dm_mirror_core::write_mostly::read_candidates;
use std::hint::black_box;
use std::time::Instant;

const READS: u64 = 4_000_000;
const NR_REGIONS: u64 = 1024;
const IN_FLIGHT: usize = 16;

fn balancer(policy: Option<PolicySpec>) -> Balancer {
    let legs = LegSet::first_n(2);
    let mut b = Balancer::new(2).unwrap();
    let state = MirrorState {
        usable: legs,
        fresh_everywhere: legs,
    };
    if let Some(p) = policy {
        b.apply(&Command::SetPolicy(p), &state).unwrap();
    }
    // Warm-up probes, as at resume.
    while let Some(leg) = b.next_probe_read(legs, 0) {
        b.complete_probe_read(leg, 20_000, 8, true);
    }
    b
}

/// Nanoseconds per read.
fn run(policy: Option<PolicySpec>, mailbox: bool) -> f64 {
    let legs = LegSet::first_n(2);
    let mut b = balancer(policy);
    let words = Freshness::<Vec<u64>>::words_needed(2, NR_REGIONS).unwrap();
    let fresh_map = Freshness::new(2, NR_REGIONS, vec![0u64; words]).unwrap();
    let mb = CompletionMailbox::new();
    let mut pending = [(0usize, 0u64); IN_FLIGHT];
    let start = Instant::now();
    for i in 0..READS {
        let now = i * 1000;
        let region = i.wrapping_mul(2_654_435_761) % NR_REGIONS;
        let read = ReadRequest {
            sector: region * 1024,
            nr_sectors: 8,
            now_ns: now,
        };
        if mailbox {
            mb.fold_into(&mut b);
        }
        let fresh = fresh_map.fresh(region).unwrap();
        let candidates = read_candidates(fresh, legs, LegSet::EMPTY, LegSet::EMPTY);
        let leg = fresh_map
            .route_read(&mut b, region, candidates, &read)
            .unwrap()
            .unwrap();
        black_box(b.wants_probe_read(legs));
        let slot = i as usize % IN_FLIGHT;
        if i >= IN_FLIGHT as u64 {
            let (done_leg, started) = pending[slot];
            let latency_ns = now + 20_000 - started;
            if mailbox {
                let c = Completion {
                    leg: done_leg,
                    latency_ns,
                    nr_sectors: 8,
                    ok: true,
                };
                if !mb.post(c) {
                    b.complete_sized(c.leg, c.latency_ns, c.nr_sectors, c.ok);
                }
            } else {
                b.complete_sized(done_leg, latency_ns, 8, true);
            }
        }
        pending[slot] = (leg, now);
    }
    black_box(&b);
    start.elapsed().as_nanos() as f64 / READS as f64
}

fn main() {
    println!("| policy | mailbox (ns/read) | direct (ns/read) |");
    println!("|---|---:|---:|");
    for (name, policy) in [
        ("round_robin ios 0 (default)", None),
        (
            "adaptive",
            Some(PolicySpec::Adaptive(AdaptiveParams::default())),
        ),
    ] {
        // Best of 5: the least disturbed run.
        let best = |mailbox| {
            (0..5)
                .map(|_| run(policy, mailbox))
                .fold(f64::MAX, f64::min)
        };
        println!("| {name} | {:.1} | {:.1} |", best(true), best(false));
    }
}
