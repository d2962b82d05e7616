// SPDX-License-Identifier: GPL-2.0

//! Per-leg region bitmaps over storage the caller provides: one bit per
//! (leg, region), `nr_legs` runs of [`RegionBits::words_needed`]`/ nr_legs`
//! words. [`super::freshness::Freshness`] (stale legs) and
//! [`super::write_behind::Backlog`] (legs with a write behind) keep theirs
//! in this layout.

use core::ops::DerefMut;

const WORD_BITS: u64 = u64::BITS as u64;

/// A bit per (leg, region) over `S`.
// INVARIANT: `bits.len() == nr_legs * words_per_leg` for the `nr_legs` and
// the region count `new` was given, and `words_per_leg * 64` covers that
// region count.
#[derive(Debug)]
pub struct RegionBits<S> {
    words_per_leg: usize,
    bits: S,
}

impl<S: DerefMut<Target = [u64]>> RegionBits<S> {
    /// Words of storage for `nr_legs` legs and `nr_regions` regions; `None`
    /// if that does not fit in `usize`.
    pub fn words_needed(nr_legs: usize, nr_regions: u64) -> Option<usize> {
        let per_leg = usize::try_from(nr_regions.div_ceil(WORD_BITS)).ok()?;
        per_leg.checked_mul(nr_legs)
    }

    /// Every bit clear, over `storage` (which is cleared); `None` unless it
    /// has [`RegionBits::words_needed`] words.
    pub fn new(nr_legs: usize, nr_regions: u64, mut storage: S) -> Option<Self> {
        let needed = Self::words_needed(nr_legs, nr_regions)?;
        if storage.len() != needed {
            return None;
        }
        storage.fill(0);
        Some(RegionBits {
            words_per_leg: needed.checked_div(nr_legs).unwrap_or(0),
            bits: storage,
        })
    }

    /// Index of the word holding `region`'s bit of `leg`, and the bit.
    fn position(&self, leg: usize, region: u64) -> Option<(usize, u64)> {
        let word = usize::try_from(region / WORD_BITS).ok()?;
        let index = leg.checked_mul(self.words_per_leg)?.checked_add(word)?;
        Some((index, 1u64 << (region % WORD_BITS)))
    }

    /// `region`'s bit of `leg` (clear for a position out of range).
    pub fn get(&self, leg: usize, region: u64) -> bool {
        self.position(leg, region)
            .and_then(|(index, bit)| self.bits.get(index).map(|word| word & bit != 0))
            .unwrap_or(false)
    }

    /// Sets `region`'s bit of `leg` to `value`; returns what it was (a
    /// position out of range changes nothing and reads as clear).
    pub fn set(&mut self, leg: usize, region: u64, value: bool) -> bool {
        let Some((index, bit)) = self.position(leg, region) else {
            return false;
        };
        let Some(word) = self.bits.get_mut(index) else {
            return false;
        };
        let was = *word & bit != 0;
        if value {
            *word |= bit;
        } else {
            *word &= !bit;
        }
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_leg_and_region_has_its_own_bit() {
        let words = RegionBits::<Vec<u64>>::words_needed(3, 130).unwrap();
        assert_eq!(words, 9);
        assert!(RegionBits::new(3, 130, vec![0u64; words + 1]).is_none());
        let mut bits = RegionBits::new(3, 130, vec![!0u64; words]).unwrap();
        assert!(!bits.get(2, 129), "storage is cleared");
        for (leg, region) in [(0, 0), (0, 63), (1, 64), (2, 129)] {
            assert!(!bits.set(leg, region, true));
            assert!(
                bits.set(leg, region, true),
                "setting again reports it was set"
            );
        }
        for leg in 0..3 {
            for region in 0..130 {
                let want = matches!((leg, region), (0, 0) | (0, 63) | (1, 64) | (2, 129));
                assert_eq!(bits.get(leg, region), want, "leg {leg} region {region}");
            }
        }
        assert!(bits.set(1, 64, false));
        assert!(!bits.get(1, 64));
        // Out of range: nothing changes, nothing panics.
        assert!(!bits.set(3, 0, true));
        assert!(!bits.get(9, 1 << 40));
        assert_eq!(RegionBits::<Vec<u64>>::words_needed(usize::MAX, 65), None);
    }
}
