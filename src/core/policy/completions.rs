// SPDX-License-Identifier: GPL-2.0

//! Read completions posted without the mirror set's lock.
//!
//! The read path takes the mirror set's IRQ-off state lock once, to choose
//! a leg. Accounting the read's completion under the same lock, from the
//! completion handler, would take it a second time on every read; dm-raid1
//! takes no lock on either side. [`CompletionMailbox`] lets the completion
//! handler leave the completion in one of a few slots per leg with one
//! compare-and-swap; whoever next holds the lock (the next choice, a probe
//! decision, `io_balance show`) folds the waiting completions into the
//! [`Balancer`] with [`CompletionMailbox::fold_into`] before deciding
//! anything. When every slot of a leg is taken, [`CompletionMailbox::post`]
//! says so and the caller accounts the completion under the lock as before,
//! so no completion is ever lost.
//!
//! Completions are folded in slot order, not in the order they happened;
//! they all happened since the last fold, which is what the policies see
//! of them anyway (a choice only ever sees the completions before it).

use core::sync::atomic::{AtomicU64, Ordering};

use super::super::legs::MAX_LEGS;
use super::{Balancer, MAX_LATENCY_SAMPLE_NS};

/// Slots per leg: more completions than this between two folds (a burst of
/// completions with no new read) are accounted under the lock instead.
pub const SLOTS_PER_LEG: usize = 16;

// A posted completion in one word, never 0 (the empty slot):
// bit 63: set; bit 62: the read succeeded; bits 36..62: sectors (at most
// 2^26 - 1); bits 0..36: latency in ns (at most 2^36 - 1).
const POSTED: u64 = 1 << 63;
const OK: u64 = 1 << 62;
const SECTORS_SHIFT: u32 = 36;
const SECTORS_MAX: u64 = (1 << 26) - 1;
const LATENCY_MAX: u64 = MAX_LATENCY_SAMPLE_NS - 1;

/// One read's completion, as [`Balancer::complete_sized`] takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The leg that served the read.
    pub leg: usize,
    /// Time from dispatch to completion, in ns.
    pub latency_ns: u64,
    /// The read's length in sectors.
    pub nr_sectors: u32,
    /// Whether it succeeded.
    pub ok: bool,
}

impl Completion {
    fn encode(&self) -> u64 {
        let sectors = u64::from(self.nr_sectors).min(SECTORS_MAX);
        let ok = if self.ok { OK } else { 0 };
        POSTED | ok | (sectors << SECTORS_SHIFT) | self.latency_ns.min(LATENCY_MAX)
    }

    fn decode(leg: usize, word: u64) -> Completion {
        Completion {
            leg,
            latency_ns: word & LATENCY_MAX,
            // At most SECTORS_MAX < 2^32 after the mask.
            nr_sectors: u32::try_from((word >> SECTORS_SHIFT) & SECTORS_MAX).unwrap_or(u32::MAX),
            ok: word & OK != 0,
        }
    }
}

/// Completions waiting to be folded into a [`Balancer`], per leg.
///
/// Any number of completion handlers may [`post`](Self::post) at once, on
/// any CPU and in any context (no lock, no sleeping, no allocation);
/// [`fold_into`](Self::fold_into) must be called by one holder of the lock
/// that protects the balancer at a time.
// INVARIANT: a slot is 0 (empty) or an encoded completion (never 0); `post`
// fills only an empty slot (compare-and-swap from 0) and only `drain`, one
// caller at a time, empties a full one (swap to 0). So a completion is
// taken exactly once: by the first drain that sees its slot full.
#[derive(Debug, Default)]
pub struct CompletionMailbox {
    slots: [[AtomicU64; SLOTS_PER_LEG]; MAX_LEGS],
}

impl CompletionMailbox {
    /// An empty mailbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Leaves `completion` for the next fold. `false` when every slot of
    /// its leg is taken (or the leg is out of range): the caller accounts
    /// it under the lock instead.
    #[must_use]
    pub fn post(&self, completion: Completion) -> bool {
        let Some(slots) = self.slots.get(completion.leg) else {
            return false;
        };
        let word = completion.encode();
        for slot in slots {
            // Release: pairs with the Acquire of `drain`'s load (the word
            // is the whole message; the ordering is for its readers' sake).
            if slot
                .compare_exchange(0, word, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                return true;
            }
        }
        false
    }

    /// Takes every waiting completion of the first `nr_legs` legs, in leg
    /// and slot order, and passes it to `f`. Returns how many were taken.
    pub fn drain(&self, nr_legs: usize, mut f: impl FnMut(Completion)) -> usize {
        let mut taken: usize = 0;
        for (leg, slots) in self.slots.iter().take(nr_legs).enumerate() {
            for slot in slots {
                // The common case, an empty slot, costs a load.
                if slot.load(Ordering::Acquire) == 0 {
                    continue;
                }
                let word = slot.swap(0, Ordering::Acquire);
                if word & POSTED != 0 {
                    f(Completion::decode(leg, word));
                    taken = taken.saturating_add(1);
                }
            }
        }
        taken
    }

    /// Folds every waiting completion into `balancer` (see
    /// [`Balancer::complete_sized`]). Call with the balancer's lock held,
    /// before any decision that reads its statistics.
    pub fn fold_into(&self, balancer: &mut Balancer) -> usize {
        self.drain(balancer.nr_legs(), |c| {
            balancer.complete_sized(c.leg, c.latency_ns, c.nr_sectors, c.ok)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;
    use std::vec::Vec;

    fn c(leg: usize, latency_ns: u64, nr_sectors: u32, ok: bool) -> Completion {
        Completion {
            leg,
            latency_ns,
            nr_sectors,
            ok,
        }
    }

    #[test]
    fn posted_completions_come_back_once() {
        let mb = CompletionMailbox::new();
        assert_eq!(mb.drain(MAX_LEGS, |_| panic!("nothing was posted")), 0);
        assert!(mb.post(c(0, 1000, 8, true)));
        assert!(mb.post(c(1, 5, 2048, false)));
        let mut got = Vec::new();
        assert_eq!(mb.drain(MAX_LEGS, |x| got.push(x)), 2);
        assert_eq!(got, [c(0, 1000, 8, true), c(1, 5, 2048, false)]);
        assert_eq!(mb.drain(MAX_LEGS, |_| panic!("drained twice")), 0);
    }

    #[test]
    fn a_full_leg_refuses_the_completion() {
        let mb = CompletionMailbox::new();
        for i in 0..SLOTS_PER_LEG {
            assert!(mb.post(c(0, i as u64 + 1, 8, true)));
        }
        assert!(!mb.post(c(0, 99, 8, true)));
        // The other legs still have room.
        assert!(mb.post(c(1, 7, 8, true)));
        assert!(!mb.post(c(MAX_LEGS, 7, 8, true)));
        assert_eq!(mb.drain(MAX_LEGS, |_| ()), SLOTS_PER_LEG + 1);
        assert!(mb.post(c(0, 99, 8, true)));
    }

    #[test]
    fn out_of_range_values_are_clamped() {
        let mb = CompletionMailbox::new();
        assert!(mb.post(c(2, u64::MAX, u32::MAX, true)));
        assert!(mb.post(c(2, 0, 0, false)));
        let mut got = Vec::new();
        mb.drain(MAX_LEGS, |x| got.push(x));
        assert_eq!(
            got,
            [
                c(2, MAX_LATENCY_SAMPLE_NS - 1, (1 << 26) - 1, true),
                c(2, 0, 0, false)
            ]
        );
    }

    #[test]
    fn folding_matches_completing_under_the_lock() {
        // Two legs, adaptive: the folded balancer equals one that was told
        // of the same completions directly, in the same order.
        let mut direct = Balancer::new(2).unwrap();
        let legs = crate::legs::LegSet::first_n(2);
        let adaptive = crate::io_balance::Command::SetPolicy(
            crate::io_balance::PolicySpec::Adaptive(Default::default()),
        );
        let state = crate::policy::MirrorState {
            usable: legs,
            fresh_everywhere: legs,
        };
        direct.apply(&adaptive, &state).unwrap();
        let mut folded = direct;
        let mb = CompletionMailbox::new();
        for i in 0..40u64 {
            let read = crate::policy::ReadRequest {
                sector: i * 8,
                nr_sectors: 8,
                now_ns: i * 1000,
            };
            mb.fold_into(&mut folded);
            let a = direct.choose(legs, &read);
            let b = folded.choose(legs, &read);
            assert_eq!(a, b, "read {i}");
            let leg = a.unwrap();
            let latency = 100_000 + 1000 * (i % 7) + 50_000 * leg as u64;
            direct.complete_sized(leg, latency, 8, true);
            assert!(mb.post(c(leg, latency, 8, true)));
        }
        mb.fold_into(&mut folded);
        assert_eq!(direct, folded);
    }

    #[test]
    fn concurrent_posts_are_each_folded_once() {
        let mb = Arc::new(CompletionMailbox::new());
        let per_thread = 20_000u64;
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let mb = Arc::clone(&mb);
                std::thread::spawn(move || {
                    let mut handed_back = 0u64;
                    let mut sum = 0u64;
                    for i in 0..per_thread {
                        let latency = t * per_thread + i + 1;
                        if !mb.post(c((t % 2) as usize, latency, 8, true)) {
                            // Accounted "under the lock" by the caller.
                            handed_back += latency;
                        }
                        sum += latency;
                    }
                    (sum, handed_back)
                })
            })
            .collect();
        let mut folded = 0u64;
        let mut done = 0;
        while done < threads.len() {
            mb.drain(MAX_LEGS, |x| folded += x.latency_ns);
            done = threads.iter().filter(|t| t.is_finished()).count();
        }
        let (mut sum, mut handed_back) = (0, 0);
        for t in threads {
            let (s, h) = t.join().unwrap();
            sum += s;
            handed_back += h;
        }
        mb.drain(MAX_LEGS, |x| folded += x.latency_ns);
        assert_eq!(
            mb.drain(MAX_LEGS, |_| panic!("left after the last drain")),
            0
        );
        assert_eq!(folded + handed_back, sum);
    }

    proptest! {
        #[test]
        fn encoding_round_trips(leg in 0..MAX_LEGS, latency in 0..MAX_LATENCY_SAMPLE_NS,
                                sectors in 0u32..(1 << 26), ok: bool) {
            let x = c(leg, latency, sectors, ok);
            prop_assert_eq!(Completion::decode(leg, x.encode()), x);
            prop_assert!(x.encode() != 0);
        }
    }
}
