// SPDX-License-Identifier: GPL-2.0

//! The host cost of the read path's kernel-independent part, per read:
//! what `MirrorSet::choose` and `end_io` run for a 2-leg mirror in sync
//! (freshness, the write-behind check, the policy's choice and dispatch
//! accounting, the completion), with the completions posted to the
//! mailbox and folded at the next choice, with each completion accounted
//! directly instead (as under the lock, the lock itself not counted), and
//! as the module does now: through the read lease while it lasts, the
//! choices that grant one with the mailbox.  16 reads in flight, random
//! regions; both legs 20 us, or leg 1 at 2 ms (the adaptive policy's clear
//! winner is leg 0).
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
use dm_mirror_core::policy::{
    Balancer, Completion, CompletionMailbox, MirrorState, ReadLease, ReadRequest,
};
use dm_mirror_core::write_mostly::{lease_candidates, read_candidates};
use std::hint::black_box;
use std::time::Instant;

const READS: u64 = 4_000_000;
const NR_REGIONS: u64 = 1024;
const IN_FLIGHT: usize = 16;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Mailbox,
    Direct,
    Leased,
}

/// A read's latency on `leg`.
fn latency(leg: usize, slow_leg: bool) -> u64 {
    if slow_leg && leg == 1 {
        2_000_000
    } else {
        20_000
    }
}

fn balancer(policy: Option<PolicySpec>, slow_leg: bool) -> Balancer {
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
        b.complete_probe_read(leg, latency(leg, slow_leg), 8, true);
    }
    b
}

/// Nanoseconds per read.
fn run(policy: Option<PolicySpec>, mode: Mode, slow_leg: bool) -> f64 {
    let legs = LegSet::first_n(2);
    let mailbox = mode != Mode::Direct;
    let mut b = balancer(policy, slow_leg);
    let lease = ReadLease::new();
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
        let leased = if mode == Mode::Leased {
            lease.take(read.sector, read.nr_sectors)
        } else {
            None
        };
        let leg = match leased {
            Some(leg) => leg,
            None => {
                // The lock: end the lease, fold, choose, maybe grant.
                lease.end_into(&mut b, || now);
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
                if mode == Mode::Leased && b.lease_reads() > 0 {
                    let everywhere = lease_candidates(
                        fresh_map.fresh_everywhere(),
                        legs,
                        LegSet::EMPTY,
                        LegSet::EMPTY,
                    );
                    if everywhere == candidates && b.lease().legs.is_subset_of(everywhere) {
                        lease.grant(b.lease());
                    }
                }
                leg
            }
        };
        let slot = i as usize % IN_FLIGHT;
        if i >= IN_FLIGHT as u64 {
            let (done_leg, started) = pending[slot];
            let latency_ns = (now - started).max(latency(done_leg, slow_leg));
            if mailbox {
                let c = Completion {
                    leg: done_leg,
                    latency_ns,
                    nr_sectors: 8,
                    ok: true,
                };
                if !mb.post(c) {
                    // The lock, which ends the lease.
                    lease.end_into(&mut b, || now);
                    mb.fold_into(&mut b);
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
    println!("| policy | legs | mailbox (ns/read) | direct (ns/read) | leased (ns/read) |");
    println!("|---|---|---:|---:|---:|");
    let adaptive = Some(PolicySpec::Adaptive(AdaptiveParams::default()));
    for (name, policy, slow_leg) in [
        ("round_robin ios 0 (default)", None, false),
        ("adaptive", adaptive, false),
        ("adaptive", adaptive, true),
    ] {
        // Best of 5: the least disturbed run.
        let best = |mode| {
            (0..5)
                .map(|_| run(policy, mode, slow_leg))
                .fold(f64::MAX, f64::min)
        };
        let legs = if slow_leg { "leg 1 at 2 ms" } else { "equal" };
        println!(
            "| {name} | {legs} | {:.1} | {:.1} | {:.1} |",
            best(Mode::Mailbox),
            best(Mode::Direct),
            best(Mode::Leased)
        );
    }
}
