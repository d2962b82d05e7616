// SPDX-License-Identifier: GPL-2.0

//! The host cost of the write-behind backlog's bookkeeping per write: what
//! a write with one write-mostly leg runs in `crate::mcore::write_behind`
//! (admission, handing the copy out, its completion, and the read side's
//! `behind` check), over the module's 1024 slots, with 1 to 1000 copies
//! behind, the writes spread over 4096 regions or within 32 (a 16 MiB
//! working set of 512 KiB regions, as bench/guest.sh's QD1 write test).
//!
//! cargo run --release --example write-behind-cost
#![allow(
    clippy::arithmetic_side_effects,
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    clippy::unwrap_used,
    missing_docs
)]

use dm_mirror_core::legs::LegSet;
use dm_mirror_core::write_behind::{Backlog, BehindSlot};
use std::collections::VecDeque;
use std::hint::black_box;
use std::time::Instant;

const WRITES: u64 = 2_000_000;
const SLOTS: usize = 1024;
const NR_REGIONS: u64 = 4096;

/// Nanoseconds per write with `depth` copies behind, the writes spread
/// over the first `spread` regions.
fn run(depth: usize, spread: u64) -> f64 {
    let words = Backlog::<Vec<BehindSlot>, Vec<u64>>::words_needed(2, NR_REGIONS).unwrap();
    let mut b = Backlog::new(
        2,
        NR_REGIONS,
        1 << 20,
        vec![BehindSlot::default(); SLOTS],
        vec![0u64; words],
    )
    .unwrap();
    let leg = LegSet::single(1);
    let mut in_flight = VecDeque::new();
    let start = Instant::now();
    for i in 0..WRITES {
        let region = (i * 7919) % spread;
        // No two writes within 4096 of each other overlap: none waits.
        let sector = region * 1024 + ((i / spread) % 128) * 8;
        black_box(b.admit(leg, region, sector, 8, i).unwrap());
        black_box(b.behind(region));
        while let Some((ticket, _)) = b.next_ready() {
            in_flight.push_back(ticket);
        }
        while in_flight.len() >= depth {
            let ticket = in_flight.pop_front().unwrap();
            black_box(b.complete(ticket).unwrap());
        }
    }
    start.elapsed().as_nanos() as f64 / WRITES as f64
}

fn main() {
    println!("write-behind bookkeeping per write, {SLOTS} slots (ns)");
    println!(
        "{:>8} {:>14} {:>14}",
        "behind", "4096 regions", "32 regions"
    );
    for depth in [1, 16, 256, 1000] {
        println!(
            "{:>8} {:>14.0} {:>14.0}",
            depth,
            run(depth, NR_REGIONS),
            run(depth, 32)
        );
    }
}
