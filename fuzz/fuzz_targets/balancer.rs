// SPDX-License-Identifier: GPL-2.0

//! Fuzzes the balancer with a byte-coded sequence of operations and checks
//! the guarantees of `Balancer::choose`, of the probe reads (at most one in
//! flight per leg, only to usable legs) and the in-flight accounting.

#![no_main]

use dm_mirror_core::legs::{LegSet, MAX_LEGS};
use dm_mirror_core::io_balance::{AdaptiveParams, Command, PolicySpec};
use dm_mirror_core::legs::LegRef;
use dm_mirror_core::policy::{Balancer, MirrorState, ReadRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((first, mut ops)) = data.split_first() else {
        return;
    };
    let nr_legs = 2 + usize::from(*first) % (MAX_LEGS - 1);
    let mut balancer = Balancer::new(nr_legs).unwrap();
    let all = LegSet::first_n(nr_legs);
    let mut outstanding: Vec<usize> = Vec::new();
    let mut probes: Vec<usize> = Vec::new();
    let mut now: u64 = 1 << 40;

    while let [op, a, b, rest @ ..] = ops {
        ops = rest;
        let (op, a, b) = (*op, *a, *b);
        now = now.wrapping_add(u64::from(b) * 997_331);
        match op % 4 {
            0 | 1 => {
                let usable = LegSet::from_bits(u16::from(a) | (u16::from(b & 1) << 8));
                let read = ReadRequest {
                    sector: u64::from(b) * 8,
                    nr_sectors: 8,
                    now_ns: now,
                };
                let effective = usable.intersection(all);
                match balancer.choose(usable, &read) {
                    Some(leg) => {
                        assert!(effective.contains(leg));
                        if let Some(only) = effective.only_member() {
                            assert_eq!(leg, only);
                        }
                        outstanding.push(leg);
                    }
                    None => assert!(effective.is_empty()),
                }
            }
            2 if op & 0x80 != 0 => {
                // Probe reads: send one, or complete one.
                if op & 0x20 == 0 {
                    let usable = LegSet::from_bits(u16::from(a) | (u16::from(b & 1) << 8));
                    if let Some(leg) = balancer.next_probe_read(usable, now) {
                        assert!(usable.intersection(all).contains(leg));
                        assert!(!probes.contains(&leg), "two probe reads in flight on leg {leg}");
                        probes.push(leg);
                    }
                } else if !probes.is_empty() {
                    let leg = probes.swap_remove(usize::from(a) % probes.len());
                    if op & 0x10 == 0 {
                        let sectors = if b & 1 == 0 { 8 } else { 128 };
                        balancer.complete_probe_read(leg, now, sectors, op & 0x40 == 0);
                    } else {
                        balancer.cancel_probe_read(leg);
                    }
                }
            }
            2 => {
                if !outstanding.is_empty() {
                    let leg = outstanding.swap_remove(usize::from(a) % outstanding.len());
                    let latency = u64::from(b).pow(3) * 1000;
                    let sectors = 8 << (b % 9);
                    balancer.complete_sized(leg, latency, sectors, op & 0x40 == 0);
                }
            }
            _ => {
                let leg = usize::from(a) % MAX_LEGS;
                let leg_ref = LegRef::by_index(leg).unwrap();
                let command = match b % 7 {
                    0 => Command::SetPolicy(PolicySpec::RoundRobin { ios: u32::from(a) % 5 }),
                    1 => Command::SetPolicy(PolicySpec::Weighted),
                    2 => Command::SetPolicy(PolicySpec::Adaptive(AdaptiveParams {
                        tolerance_pct: Some(u16::from(a)),
                        probe_ms: Some(u32::from(b)),
                    })),
                    3 => Command::SetDefaultLeg(leg_ref),
                    4 => Command::SetWeight { leg: leg_ref, weight: u16::from(b) * 5 },
                    5 => Command::ResetStats,
                    _ => Command::Show,
                };
                let state = MirrorState {
                    usable: LegSet::from_bits(u16::from(op) << 1),
                    fresh_everywhere: LegSet::from_bits(u16::from(b) << 1),
                };
                let before = balancer;
                if balancer.apply(&command, &state).is_err() {
                    assert_eq!(balancer, before);
                }
            }
        }
        for leg in 0..nr_legs {
            let expected = outstanding.iter().chain(probes.iter()).filter(|l| **l == leg).count();
            assert_eq!(balancer.stats(leg).unwrap().in_flight as usize, expected);
        }
    }
});
