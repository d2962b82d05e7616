// SPDX-License-Identifier: GPL-2.0

//! Fuzzes the message parser: the first byte picks the number of legs
//! (0..=9), the rest is split into whitespace-separated words. Accepted
//! messages must print back to the same command and be applied to a
//! balancer atomically (unchanged on error). The same text, as the
//! `default_io_balance` module parameter, must parse to nothing or to a
//! policy that prints back as the same message.

#![no_main]

use dm_mirror_core::io_balance::{parse_default_policy, Command};
use dm_mirror_core::legs::{LegSet, MAX_LEGS};
use dm_mirror_core::message::{parse_message, Message};
use dm_mirror_core::policy::{Balancer, MirrorState};
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; MAX_LEGS] = [
    "253:0", "253:1", "253:2", "8:0", "8:16", "8:32", "7:0", "7:1", "259:0",
];

fuzz_target!(|data: &[u8]| {
    let Some((first, text)) = data.split_first() else {
        return;
    };
    let nr_legs = usize::from(*first) % (MAX_LEGS + 1);
    let names = &NAMES[..nr_legs];
    let text = String::from_utf8_lossy(text);
    let words: Vec<&str> = text.split_whitespace().collect();

    if let Ok(Some(policy)) = parse_default_policy(&text) {
        let mut out = String::from("io_balance ");
        policy.write_words(&mut out).unwrap();
        let again: Vec<&str> = out.split(' ').collect();
        assert_eq!(
            parse_message(&again, names),
            Ok(Message::IoBalance(Command::SetPolicy(policy))),
            "{out}"
        );
    }

    let Ok(message) = parse_message(&words, names) else {
        return;
    };
    let mut out = String::new();
    message.write_message(&mut out, names).unwrap();
    let again: Vec<&str> = out.split(' ').collect();
    assert_eq!(parse_message(&again, names), Ok(message), "{out}");
    let Message::IoBalance(command) = message else {
        return;
    };

    let Ok(mut balancer) = Balancer::new(nr_legs) else {
        return;
    };
    let state = MirrorState {
        usable: LegSet::from_bits(u16::from(*first) >> 4),
        fresh_everywhere: LegSet::from_bits(u16::from(*first)),
    };
    let before = balancer;
    if balancer.apply(&command, &state).is_err() {
        assert_eq!(balancer, before);
    }
    let mut report = String::new();
    balancer
        .write_report(&mut report, names, state.usable, &[u64::from(*first); 3])
        .unwrap();
});
