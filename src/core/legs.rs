// SPDX-License-Identifier: GPL-2.0

//! Mirror legs: the leg-count limit, a small bit set of legs, and a leg as
//! messages and table features name it.

use core::fmt;

use super::number::parse_u64;

/// Maximum number of legs (mirrors) in one mirror set.
///
/// dm-raid1's `MAX_NR_MIRRORS` is `DM_KCOPYD_MAX_REGIONS + 1` = 8 + 1: one
/// source plus up to eight kcopyd destinations during recovery.
pub const MAX_LEGS: usize = 9;

/// Minimum number of legs dm-raid1 accepts in a table.
pub const MIN_LEGS: usize = 2;

/// All bits that can name a leg.
const LEG_BITS: u16 = (1 << MAX_LEGS) - 1;

/// A set of legs: bit `i` set means leg `i` is a member.
///
/// Used for "which legs may serve a read right now" (the kernel builds it
/// from the legs' error counts) and internally by the read policies.
// INVARIANT: only bits below `MAX_LEGS` are ever set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LegSet(u16);

impl LegSet {
    /// The empty set.
    pub const EMPTY: LegSet = LegSet(0);

    /// Builds a set from a bit mask; bits at or above [`MAX_LEGS`] are ignored.
    pub const fn from_bits(bits: u16) -> LegSet {
        LegSet(bits & LEG_BITS)
    }

    /// The set of legs `0..nr_legs` (clamped to [`MAX_LEGS`]).
    pub const fn first_n(nr_legs: usize) -> LegSet {
        if nr_legs >= MAX_LEGS {
            LegSet(LEG_BITS)
        } else {
            // nr_legs < MAX_LEGS <= 15, so the shift cannot overflow.
            LegSet((1u16 << nr_legs).wrapping_sub(1) & LEG_BITS)
        }
    }

    /// The set holding only `leg` (empty if `leg >= MAX_LEGS`).
    pub const fn single(leg: usize) -> LegSet {
        if leg < MAX_LEGS {
            LegSet(1u16 << leg)
        } else {
            LegSet::EMPTY
        }
    }

    /// The raw bit mask.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether `leg` is a member.
    pub const fn contains(self, leg: usize) -> bool {
        leg < MAX_LEGS && self.0 & (1u16 << leg) != 0
    }

    /// This set plus `leg` (unchanged if `leg >= MAX_LEGS`).
    #[must_use]
    pub const fn with(self, leg: usize) -> LegSet {
        LegSet(self.0 | LegSet::single(leg).0)
    }

    /// This set minus `leg`.
    #[must_use]
    pub const fn without(self, leg: usize) -> LegSet {
        LegSet(self.0 & !LegSet::single(leg).0)
    }

    /// The legs in either set.
    pub const fn union(self, other: LegSet) -> LegSet {
        LegSet(self.0 | other.0)
    }

    /// Members of both sets.
    #[must_use]
    pub const fn intersection(self, other: LegSet) -> LegSet {
        LegSet(self.0 & other.0)
    }

    /// Members of this set that are not in `other`.
    #[must_use]
    pub const fn difference(self, other: LegSet) -> LegSet {
        LegSet(self.0 & !other.0)
    }

    /// The members not in `avoid`, or all of them if every member is: a
    /// preference, not an exclusion (write-mostly legs serve reads and
    /// become the default only when no other leg can).
    #[must_use]
    pub const fn preferring_not(self, avoid: LegSet) -> LegSet {
        let preferred = self.difference(avoid);
        if preferred.is_empty() {
            self
        } else {
            preferred
        }
    }

    /// Number of members.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The lowest-numbered member.
    pub const fn first(self) -> Option<usize> {
        if self.0 == 0 {
            None
        } else {
            Some(self.0.trailing_zeros() as usize)
        }
    }

    /// The member if the set has exactly one.
    pub const fn only_member(self) -> Option<usize> {
        if self.0.count_ones() == 1 {
            self.first()
        } else {
            None
        }
    }

    /// The first member strictly after `leg`, wrapping around to the lowest
    /// member; `leg` itself is returned only if it is the sole member.
    pub fn next_after(self, leg: usize) -> Option<usize> {
        let above = match leg.checked_add(1) {
            Some(start) if start < MAX_LEGS => self.0 & !((1u16 << start).wrapping_sub(1)),
            _ => 0,
        };
        if above != 0 {
            Some(above.trailing_zeros() as usize)
        } else {
            self.first()
        }
    }

    /// The first member at or below `leg`, going downwards and wrapping
    /// around to the highest member: the order in which dm-raid1's
    /// `choose_mirror()` tries legs starting from the default one.
    pub fn at_or_before(self, leg: usize) -> Option<usize> {
        let start = if leg >= MAX_LEGS { MAX_LEGS - 1 } else { leg };
        // Bits 0..=start.
        let at_or_below = self.0 & ((2u16 << start).wrapping_sub(1));
        let bits = if at_or_below != 0 {
            at_or_below
        } else {
            self.0
        };
        if bits == 0 {
            None
        } else {
            Some(15usize.saturating_sub(bits.leading_zeros() as usize))
        }
    }

    /// The members that bits of `positions` name by rank: bit `i` stands
    /// for the `i`-th member (ascending). A dm-io error word has one bit per
    /// destination, and a write sent to the members of a set lists them in
    /// ascending order; this turns its bits back into legs.
    pub fn members_at(self, positions: u64) -> LegSet {
        let mut set = LegSet::EMPTY;
        for (rank, leg) in self.iter().enumerate() {
            if rank < 64 && positions & (1u64 << rank) != 0 {
                set = set.with(leg);
            }
        }
        set
    }

    /// Whether every member is also one of `other`.
    pub const fn is_subset_of(self, other: LegSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The member of rank `rank` (0: the lowest), if there are that many.
    pub fn nth(self, rank: usize) -> Option<usize> {
        self.iter().nth(rank)
    }

    /// The rank of member `leg` (how many members are below it), if it is one.
    pub const fn rank_of(self, leg: usize) -> Option<usize> {
        if !self.contains(leg) {
            return None;
        }
        // leg < MAX_LEGS (it is a member), so the shift cannot overflow.
        Some((self.0 & ((1u16 << leg).wrapping_sub(1))).count_ones() as usize)
    }

    /// Iterates over the members in ascending order.
    pub fn iter(self) -> LegSetIter {
        LegSetIter { remaining: self.0 }
    }
}

/// Iterator over the members of a [`LegSet`], ascending.
#[derive(Clone, Debug)]
pub struct LegSetIter {
    remaining: u16,
}

impl Iterator for LegSetIter {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        let leg = self.remaining.trailing_zeros() as usize;
        // Clear the lowest set bit.
        self.remaining &= self.remaining.wrapping_sub(1);
        Some(leg)
    }
}

impl IntoIterator for LegSet {
    type Item = usize;
    type IntoIter = LegSetIter;

    fn into_iter(self) -> LegSetIter {
        self.iter()
    }
}

/// A reference to a leg, resolved to its index, remembering whether it was
/// written as a device name or as an index (so it prints back the same way).
// INVARIANT: `index < MAX_LEGS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LegRef {
    index: u8,
    by_name: bool,
}

impl LegRef {
    /// A leg given by index; `None` if `index >= MAX_LEGS`.
    pub fn by_index(index: usize) -> Option<LegRef> {
        Self::new(index, false)
    }

    /// A leg given by device name; `None` if `index >= MAX_LEGS`.
    pub fn by_name(index: usize) -> Option<LegRef> {
        Self::new(index, true)
    }

    fn new(index: usize, by_name: bool) -> Option<LegRef> {
        if index < MAX_LEGS {
            let index = u8::try_from(index).ok()?;
            Some(LegRef { index, by_name })
        } else {
            None
        }
    }

    /// The leg's index.
    pub fn index(self) -> usize {
        usize::from(self.index)
    }

    /// Whether the leg was written as a device name.
    pub fn is_by_name(self) -> bool {
        self.by_name
    }

    /// Writes the leg as it was given: its name from `leg_names`, or its
    /// index (also used when `leg_names` has no entry for it).
    pub fn write(self, out: &mut dyn fmt::Write, leg_names: &[&str]) -> fmt::Result {
        match leg_names.get(self.index()) {
            Some(name) if self.by_name => out.write_str(name),
            _ => write!(out, "{}", self.index),
        }
    }
}

/// Resolves a `<leg>` word: all digits means an index (must be below
/// `leg_names.len()`), anything else must equal one of `leg_names`.
pub fn resolve_leg(word: &str, leg_names: &[&str]) -> Option<LegRef> {
    let nr_legs = leg_names.len().min(MAX_LEGS);
    if !word.is_empty() && word.bytes().all(|byte| byte.is_ascii_digit()) {
        let index = usize::try_from(parse_u64(word)?).ok()?;
        return if index < nr_legs {
            LegRef::by_index(index)
        } else {
            None
        };
    }
    leg_names
        .iter()
        .take(nr_legs)
        .position(|name| *name == word)
        .and_then(LegRef::by_name)
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::needless_range_loop,
    clippy::type_complexity
)]
mod tests {

    #[test]
    fn preferring_not_falls_back_to_the_whole_set() {
        let set = LegSet::EMPTY.with(0).with(2);
        assert_eq!(set.preferring_not(LegSet::single(2)), LegSet::single(0));
        assert_eq!(set.preferring_not(set), set);
        assert_eq!(set.preferring_not(LegSet::single(1)), set);
        assert_eq!(LegSet::EMPTY.preferring_not(set), LegSet::EMPTY);
    }

    #[test]
    fn ranks_and_members_agree() {
        let set = LegSet::EMPTY.with(0).with(2).with(5);
        assert_eq!(
            [0, 1, 2, 3].map(|r| set.nth(r)),
            [Some(0), Some(2), Some(5), None]
        );
        assert_eq!(
            [0, 1, 2, 5, MAX_LEGS].map(|l| set.rank_of(l)),
            [Some(0), None, Some(1), Some(2), None]
        );
        assert!(LegSet::single(2).is_subset_of(set));
        assert!(LegSet::EMPTY.is_subset_of(set));
        assert!(!LegSet::single(1).is_subset_of(set));
    }

    #[test]
    fn members_at_maps_destination_bits_to_legs() {
        let set = LegSet::EMPTY.with(0).with(2).with(5);
        assert_eq!(set.members_at(0), LegSet::EMPTY);
        assert_eq!(set.members_at(0b001), LegSet::single(0));
        assert_eq!(set.members_at(0b010), LegSet::single(2));
        assert_eq!(set.members_at(0b110), LegSet::EMPTY.with(2).with(5));
        // Bits past the members name nothing.
        assert_eq!(set.members_at(0b1000), LegSet::EMPTY);
        assert_eq!(LegSet::first_n(9).members_at(u64::MAX), LegSet::first_n(9));
    }

    use super::*;
    use std::vec::Vec;

    #[test]
    fn basics() {
        let set = LegSet::from_bits(0b1010_0101);
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 2, 5, 7]);
        assert_eq!(set.len(), 4);
        assert!(set.contains(5) && !set.contains(1) && !set.contains(100));
        assert_eq!(LegSet::from_bits(u16::MAX), LegSet::first_n(MAX_LEGS));
        assert_eq!(LegSet::first_n(3).bits(), 0b111);
        assert_eq!(LegSet::first_n(0), LegSet::EMPTY);
        assert_eq!(LegSet::single(3).only_member(), Some(3));
        assert_eq!(set.only_member(), None);
        assert_eq!(LegSet::single(MAX_LEGS), LegSet::EMPTY);
        assert_eq!(set.without(0).with(1).bits(), 0b1010_0110);
    }

    #[test]
    fn next_after_wraps() {
        let set = LegSet::from_bits(0b1_0000_0101); // 0, 2, 8
        assert_eq!(set.next_after(0), Some(2));
        assert_eq!(set.next_after(2), Some(8));
        assert_eq!(set.next_after(8), Some(0));
        assert_eq!(set.next_after(100), Some(0));
        assert_eq!(LegSet::single(4).next_after(4), Some(4));
        assert_eq!(LegSet::EMPTY.next_after(4), None);
    }

    #[test]
    fn at_or_before_is_choose_mirror_order() {
        let set = LegSet::from_bits(0b1_0000_0101); // 0, 2, 8
        assert_eq!(set.at_or_before(2), Some(2));
        assert_eq!(set.at_or_before(1), Some(0));
        assert_eq!(set.at_or_before(7), Some(2));
        let no_zero = LegSet::from_bits(0b0110); // 1, 2
        assert_eq!(no_zero.at_or_before(0), Some(2));
        assert_eq!(LegSet::EMPTY.at_or_before(0), None);
        assert_eq!(set.at_or_before(100), Some(8));
    }
}
