// SPDX-License-Identifier: GPL-2.0

//! Smooth weighted round robin.

use super::super::legs::{LegSet, MAX_LEGS};
use super::{ReadContext, ReadPolicy};

/// Smooth weighted round robin (the algorithm of nginx's upstream module).
///
/// Each read, every eligible leg (usable, weight > 0) gains its weight in
/// "current weight"; the leg with the highest current weight (lowest index
/// on ties) is chosen and loses the total weight. Over every run of
/// `total = sum(weights)` reads with the same eligible legs, starting from a
/// reset state, leg `i` gets exactly `weight[i]` reads, and they are spread
/// out rather than bunched (weights 5,1,1 give a a b a c a a).
///
/// The state is reset whenever the set of eligible legs changes, and by
/// [`ReadPolicy::reset`] (the [`super::Balancer`] calls it on weight changes).
///
/// A leg of weight 0 is never chosen while any eligible leg exists; if none
/// does, the read goes to the default leg (or dm-raid1's fallback), so a
/// weight-0 leg still serves reads when it is the only usable leg.
// INVARIANT: `current[i] == 0` for every `i` not in `eligible`; the sum of
// `current` over `eligible` is 0 after every `choose`, and each entry stays
// within `-total..=total` (total <= MAX_LEGS * MAX_WEIGHT), so no
// arithmetic below can overflow an `i32`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Weighted {
    current: [i32; MAX_LEGS],
    eligible: LegSet,
}

impl Weighted {
    /// A weighted round robin in its reset state.
    pub fn new() -> Weighted {
        Weighted::default()
    }
}

impl ReadPolicy for Weighted {
    fn choose(&mut self, context: &ReadContext<'_>) -> Option<usize> {
        let mut eligible = LegSet::EMPTY;
        for leg in context.usable {
            if context.weights.get(leg).is_some_and(|weight| *weight > 0) {
                eligible = eligible.with(leg);
            }
        }
        if eligible.is_empty() {
            return context.default_or_fallback();
        }
        if eligible != self.eligible {
            self.reset();
            self.eligible = eligible;
        }

        let mut total: i32 = 0;
        let mut best: Option<(usize, i32)> = None;
        for leg in eligible {
            let weight = i32::from(context.weights.get(leg).copied().unwrap_or(0));
            total = total.saturating_add(weight);
            let slot = self.current.get_mut(leg)?;
            *slot = slot.saturating_add(weight);
            if best.is_none_or(|(_, best_weight)| *slot > best_weight) {
                best = Some((leg, *slot));
            }
        }
        let (leg, _) = best?;
        let slot = self.current.get_mut(leg)?;
        *slot = slot.saturating_sub(total);
        Some(leg)
    }

    fn reset(&mut self) {
        self.current = [0; MAX_LEGS];
        self.eligible = LegSet::EMPTY;
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::needless_range_loop,
    clippy::type_complexity
)]
mod tests {
    use super::super::{LegStats, ReadRequest};
    use super::*;
    use std::vec::Vec;

    fn run(
        policy: &mut Weighted,
        usable: LegSet,
        weights: [u16; MAX_LEGS],
        reads: usize,
    ) -> Vec<usize> {
        let stats = [LegStats::default(); MAX_LEGS];
        let read = ReadRequest::default();
        let context = ReadContext {
            usable,
            nr_legs: MAX_LEGS,
            default_leg: 0,
            weights: &weights,
            stats: &stats,
            read: &read,
        };
        (0..reads)
            .map(|_| policy.choose(&context).unwrap())
            .collect()
    }

    fn weights(given: &[u16]) -> [u16; MAX_LEGS] {
        let mut all = [0; MAX_LEGS];
        all.iter_mut().zip(given).for_each(|(slot, w)| *slot = *w);
        all
    }

    #[test]
    fn nginx_sequence() {
        let mut policy = Weighted::new();
        let legs = run(&mut policy, LegSet::first_n(3), weights(&[5, 1, 1]), 14);
        assert_eq!(legs, [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn zero_weight_legs_are_skipped_unless_alone() {
        let mut policy = Weighted::new();
        let w = weights(&[0, 2, 1]);
        assert_eq!(
            run(&mut policy, LegSet::first_n(3), w, 6),
            [1, 2, 1, 1, 2, 1]
        );
        // Only weight-0 legs usable: the default leg (0) is read.
        assert_eq!(run(&mut policy, LegSet::from_bits(0b001), w, 2), [0, 0]);
        let w = weights(&[0, 0, 1]);
        assert_eq!(run(&mut policy, LegSet::from_bits(0b011), w, 2), [0, 0]);
    }

    #[test]
    fn eligible_change_resets_the_cycle() {
        let mut policy = Weighted::new();
        let w = weights(&[3, 1, 1]);
        run(&mut policy, LegSet::first_n(3), w, 2);
        let legs = run(&mut policy, LegSet::from_bits(0b011), w, 4);
        assert_eq!(legs.iter().filter(|leg| **leg == 0).count(), 3);
        assert_eq!(legs.iter().filter(|leg| **leg == 1).count(), 1);
    }
}
