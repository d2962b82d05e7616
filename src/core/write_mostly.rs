// SPDX-License-Identifier: GPL-2.0

//! Write-mostly legs and their write-behind bound: the settings, in dm-raid's
//! words, as table features and as messages.
//!
//! ```text
//! table features (each may follow the others in any order):
//!   write_mostly <leg>                 once per leg
//!   max_write_behind <sectors>         once; 0..=MAX_WRITE_BEHIND_SECTORS
//! messages:
//!   write_mostly <leg> on|off
//!   max_write_behind <sectors>
//! ```
//!
//! As in md and dm-raid, a write-mostly leg is read only when no other leg
//! can serve the read, and a write is acknowledged before a write-mostly leg
//! has it only when `max_write_behind` is above 0 (the bound on what each
//! write-mostly leg may be behind, in sectors). Write-behind is opt-in
//! because it trades redundancy for latency: until the lagging leg catches
//! up, an acknowledged write lives on the other legs only.
//!
//! dm-raid stores half its `max_write_behind` value in md's bitmap (md counts
//! writes, not sectors) and prints that half back; here the value is
//! sectors throughout and prints back as given.
//!
//! Rules checked by [`WriteBehindConfig::check`], for tables and messages
//! alike: at least one leg is not write-mostly, and the default leg is not
//! write-mostly (it is the resync source and the leg dm-raid1 reads).

use core::fmt;

use super::legs::{resolve_leg, LegRef};
use super::legs::{LegSet, MAX_LEGS};
use super::number::parse_u64;
use super::write_behind::BehindStats;

/// The feature and message word that marks a leg write-mostly.
pub const WRITE_MOSTLY: &str = "write_mostly";

/// The feature and message word that sets the write-behind bound.
pub const MAX_WRITE_BEHIND: &str = "max_write_behind";

/// Largest accepted `max_write_behind` (256 MiB of copies per leg).
pub const MAX_WRITE_BEHIND_SECTORS: u32 = 524_288;

/// Write-mostly legs and the write-behind bound, as given (so a table
/// prints back what it was given, and prints nothing when given nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WriteBehindConfig {
    write_mostly: [Option<LegRef>; MAX_LEGS],
    max_write_behind: Option<u32>,
}

/// In [`WriteBehindConfig::copy_hint`]'s word: write-behind is on.
const COPY_HINT_ENABLED: u32 = 1 << 31;

/// The legs a write gets copies for, by a [`WriteBehindConfig::copy_hint`]
/// word: the write-mostly legs while write-behind is on, else none.
pub fn copy_legs(hint: u32) -> LegSet {
    if hint & COPY_HINT_ENABLED == 0 {
        return LegSet::EMPTY;
    }
    // The low 16 bits hold the legs.
    LegSet::from_bits(u16::try_from(hint & 0xffff).unwrap_or(0))
}

impl WriteBehindConfig {
    /// Whether no setting was given.
    pub fn is_empty(&self) -> bool {
        self.max_write_behind.is_none() && self.write_mostly.iter().all(Option::is_none)
    }

    /// The write-mostly legs.
    pub fn write_mostly(&self) -> LegSet {
        self.write_mostly
            .iter()
            .flatten()
            .fold(LegSet::EMPTY, |set, leg| set.with(leg.index()))
    }

    /// The bound in sectors per write-mostly leg; 0 (the default) means no
    /// write-behind.
    pub fn max_write_behind(&self) -> u32 {
        self.max_write_behind.unwrap_or(0)
    }

    /// Whether writes may be acknowledged before a write-mostly leg has
    /// them.
    pub fn behind_enabled(&self) -> bool {
        self.max_write_behind() > 0 && !self.write_mostly().is_empty()
    }

    /// What a write from `map` needs of the configuration, in one word
    /// that an atomic can hold: the write-mostly legs' bits, and whether
    /// write-behind is on (see [`copy_legs`]).
    pub fn copy_hint(&self) -> u32 {
        let enabled = if self.behind_enabled() {
            COPY_HINT_ENABLED
        } else {
            0
        };
        u32::from(self.write_mostly().bits()) | enabled
    }

    /// Applies `command` (nothing checked: see [`WriteBehindConfig::check`]).
    pub fn apply(&mut self, command: &WriteBehindCommand) {
        match *command {
            WriteBehindCommand::WriteMostly { leg, on } => {
                if let Some(slot) = self.write_mostly.get_mut(leg.index()) {
                    *slot = on.then_some(leg);
                }
            }
            WriteBehindCommand::MaxWriteBehind(sectors) => self.max_write_behind = Some(sectors),
        }
    }

    /// Checks the settings against a set of `nr_legs` legs whose default leg
    /// is `default_leg`.
    pub fn check(
        &self,
        nr_legs: usize,
        default_leg: usize,
    ) -> Result<(), WriteMostlyError<'static>> {
        let write_mostly = self.write_mostly();
        if write_mostly.intersection(LegSet::first_n(nr_legs)) == LegSet::first_n(nr_legs) {
            return Err(WriteMostlyError::AllLegs);
        }
        if write_mostly.contains(default_leg) {
            return Err(WriteMostlyError::DefaultLeg(default_leg));
        }
        Ok(())
    }

    /// Checks the settings a message made of `before` (as
    /// [`WriteBehindConfig::check`]), except that the default leg may stay
    /// write-mostly if it already was: it became the default when no leg
    /// that acknowledges writes could be (a failure), and the message may
    /// be what gives it one again.
    pub fn check_change(
        &self,
        before: &WriteBehindConfig,
        nr_legs: usize,
        default_leg: usize,
    ) -> Result<(), WriteMostlyError<'static>> {
        match self.check(nr_legs, default_leg) {
            Err(WriteMostlyError::DefaultLeg(_)) if before.write_mostly().contains(default_leg) => {
                Ok(())
            }
            checked => checked,
        }
    }

    /// Number of feature words [`WriteBehindConfig::write_words`] writes.
    pub fn word_count(&self) -> u32 {
        let legs = self.write_mostly.iter().flatten().count();
        let legs = u32::try_from(legs).unwrap_or(0).saturating_mul(2);
        legs.saturating_add(if self.max_write_behind.is_some() {
            2
        } else {
            0
        })
    }

    /// Writes the feature words, each preceded by a space: `write_mostly`
    /// in leg order (legs as they were given), then `max_write_behind`.
    pub fn write_words(&self, out: &mut dyn fmt::Write, leg_names: &[&str]) -> fmt::Result {
        for leg in self.write_mostly.iter().flatten() {
            write!(out, " {WRITE_MOSTLY} ")?;
            leg.write(out, leg_names)?;
        }
        if let Some(sectors) = self.max_write_behind {
            write!(out, " {MAX_WRITE_BEHIND} {sectors}")?;
        }
        Ok(())
    }
}

/// A parsed write-behind setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteBehindCommand {
    /// `write_mostly <leg> [on|off]`.
    WriteMostly {
        /// The leg.
        leg: LegRef,
        /// Mark (`on`) or unmark (`off`) it.
        on: bool,
    },
    /// `max_write_behind <sectors>`.
    MaxWriteBehind(u32),
}

impl WriteBehindCommand {
    /// Writes the command as a message, legs as they were given.
    pub fn write_message(&self, out: &mut dyn fmt::Write, leg_names: &[&str]) -> fmt::Result {
        match self {
            WriteBehindCommand::WriteMostly { leg, on } => {
                write!(out, "{WRITE_MOSTLY} ")?;
                leg.write(out, leg_names)?;
                out.write_str(if *on { " on" } else { " off" })
            }
            WriteBehindCommand::MaxWriteBehind(sectors) => {
                write!(out, "{MAX_WRITE_BEHIND} {sectors}")
            }
        }
    }
}

/// Why a write-behind setting was rejected. The `Display` text is what the
/// kernel logs after `device-mapper: mirror: `.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMostlyError<'a> {
    /// `write_mostly` with no leg.
    MissingLeg,
    /// A leg that is neither a leg's device name nor a valid leg index.
    UnknownLeg(&'a str),
    /// The message's `on`/`off` is missing or another word.
    ExpectedOnOff(Option<&'a str>),
    /// `max_write_behind` with no number.
    MissingSectors,
    /// Not a decimal number.
    InvalidNumber(&'a str),
    /// Above [`MAX_WRITE_BEHIND_SECTORS`].
    OutOfRange(u64),
    /// A table gives `write_mostly` twice for one leg.
    DuplicateLeg(&'a str),
    /// A table gives `max_write_behind` twice.
    DuplicateBound,
    /// Every leg would be write-mostly.
    AllLegs,
    /// The default leg would be write-mostly.
    DefaultLeg(usize),
    /// Words left over after a complete message.
    TrailingWords(&'a str),
}

impl fmt::Display for WriteMostlyError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteMostlyError::MissingLeg => write!(f, "{WRITE_MOSTLY}: missing <leg>"),
            WriteMostlyError::UnknownLeg(word) => write!(
                f,
                "{WRITE_MOSTLY}: unknown leg \"{word}\": not a leg device (maj:min) or leg index"
            ),
            WriteMostlyError::ExpectedOnOff(Some(word)) => {
                write!(f, "{WRITE_MOSTLY}: expected on or off, found \"{word}\"")
            }
            WriteMostlyError::ExpectedOnOff(None) => {
                write!(f, "{WRITE_MOSTLY}: missing on or off")
            }
            WriteMostlyError::MissingSectors => write!(f, "{MAX_WRITE_BEHIND}: missing <sectors>"),
            WriteMostlyError::InvalidNumber(word) => write!(
                f,
                "{MAX_WRITE_BEHIND}: invalid sectors \"{word}\": not a decimal number"
            ),
            WriteMostlyError::OutOfRange(value) => write!(
                f,
                "{MAX_WRITE_BEHIND}: {value} sectors out of range (0..={MAX_WRITE_BEHIND_SECTORS})"
            ),
            WriteMostlyError::DuplicateLeg(word) => {
                write!(f, "{WRITE_MOSTLY}: leg \"{word}\" given twice")
            }
            WriteMostlyError::DuplicateBound => {
                write!(f, "Only one {MAX_WRITE_BEHIND} argument pair allowed")
            }
            WriteMostlyError::AllLegs => {
                write!(f, "Can't set all mirror legs to {WRITE_MOSTLY}")
            }
            WriteMostlyError::DefaultLeg(leg) => write!(
                f,
                "{WRITE_MOSTLY}: leg {leg} is the default leg (move the default with io_balance default first)"
            ),
            WriteMostlyError::TrailingWords(word) => {
                write!(f, "{WRITE_MOSTLY}: unexpected extra argument \"{word}\"")
            }
        }
    }
}

/// Parses a `write_mostly` or `max_write_behind` setting whose first word is
/// `args[0]`. In a table (`in_table`), `write_mostly <leg>` takes no
/// `on`/`off` and the caller goes on after the words used; in a message the
/// words must be complete. Returns `None` when `args[0]` is neither word.
pub fn parse_write_behind_words<'a>(
    args: &[&'a str],
    leg_names: &[&str],
    in_table: bool,
) -> Option<Result<(WriteBehindCommand, usize), WriteMostlyError<'a>>> {
    let (first, rest) = args.split_first()?;
    let parsed = match *first {
        WRITE_MOSTLY => parse_write_mostly(rest, leg_names, in_table),
        MAX_WRITE_BEHIND => parse_bound(rest),
        _ => return None,
    };
    Some(parsed.and_then(|(command, used)| {
        let used = used.saturating_add(1);
        match args.get(used) {
            Some(extra) if !in_table => Err(WriteMostlyError::TrailingWords(extra)),
            _ => Ok((command, used)),
        }
    }))
}

fn parse_write_mostly<'a>(
    rest: &[&'a str],
    leg_names: &[&str],
    in_table: bool,
) -> Result<(WriteBehindCommand, usize), WriteMostlyError<'a>> {
    let word = rest.first().ok_or(WriteMostlyError::MissingLeg)?;
    let leg = resolve_leg(word, leg_names).ok_or(WriteMostlyError::UnknownLeg(word))?;
    if in_table {
        return Ok((WriteBehindCommand::WriteMostly { leg, on: true }, 1));
    }
    let on = match rest.get(1).copied() {
        Some("on") => true,
        Some("off") => false,
        other => return Err(WriteMostlyError::ExpectedOnOff(other)),
    };
    Ok((WriteBehindCommand::WriteMostly { leg, on }, 2))
}

fn parse_bound<'a>(rest: &[&'a str]) -> Result<(WriteBehindCommand, usize), WriteMostlyError<'a>> {
    let word = rest.first().ok_or(WriteMostlyError::MissingSectors)?;
    let value = parse_u64(word).ok_or(WriteMostlyError::InvalidNumber(word))?;
    let sectors = u32::try_from(value)
        .ok()
        .filter(|s| *s <= MAX_WRITE_BEHIND_SECTORS)
        .ok_or(WriteMostlyError::OutOfRange(value))?;
    Ok((WriteBehindCommand::MaxWriteBehind(sectors), 1))
}

/// Applies one table feature to `config`, refusing what a table may not
/// repeat.
pub fn apply_table_feature<'a>(
    config: &mut WriteBehindConfig,
    command: &WriteBehindCommand,
    word: &'a str,
) -> Result<(), WriteMostlyError<'a>> {
    match *command {
        WriteBehindCommand::WriteMostly { leg, .. }
            if config.write_mostly().contains(leg.index()) =>
        {
            return Err(WriteMostlyError::DuplicateLeg(word));
        }
        WriteBehindCommand::MaxWriteBehind(_) if config.max_write_behind.is_some() => {
            return Err(WriteMostlyError::DuplicateBound);
        }
        _ => {}
    }
    config.apply(command);
    Ok(())
}

/// The legs a read of a region may go to: the `healthy` legs that hold its
/// latest data (`fresh`) and have no write behind there (`behind`); of
/// those, the ones that are not write-mostly when there is one (md reads a
/// write-mostly device only when no other can serve the read).
pub fn read_candidates(
    fresh: LegSet,
    healthy: LegSet,
    behind: LegSet,
    write_mostly: LegSet,
) -> LegSet {
    fresh
        .intersection(healthy)
        .difference(behind)
        .preferring_not(write_mostly)
}

/// The legs a read lease may name (`crate::mcore::policy::lease`): those
/// that [`read_candidates`] allows in every region, whatever is stale or
/// behind where: of the `healthy` legs fresh in every region
/// (`fresh_everywhere`), those behind nowhere (`behind_anywhere`: the legs
/// with copies in the backlog), and not a write-mostly leg while a healthy
/// leg is not write-mostly (in a region where that leg is fresh, reads
/// must go there, not over the WAN).
pub fn lease_candidates(
    fresh_everywhere: LegSet,
    healthy: LegSet,
    behind_anywhere: LegSet,
    write_mostly: LegSet,
) -> LegSet {
    let safe = fresh_everywhere
        .intersection(healthy)
        .difference(behind_anywhere);
    if healthy.difference(write_mostly).is_empty() {
        safe
    } else {
        safe.difference(write_mostly)
    }
}

/// Writes the write-behind part of `io_balance show`: one line with the
/// settings, then one per write-mostly leg or leg with writes behind:
///
/// ```text
/// write_behind max_write_behind <sectors> write_mostly <leg>...
/// behind <idx> <name> writes <n> sectors <n> peak_writes <n> peak_sectors <n> admitted <n> waits <n> oldest_ms <n>
/// ```
///
/// Nothing when no leg is write-mostly and nothing is behind (the report is
/// then what it was before write-behind existed).
pub fn write_behind_report(
    out: &mut dyn fmt::Write,
    leg_names: &[&str],
    config: &WriteBehindConfig,
    stats: &[BehindStats],
    oldest_ms: &[Option<u64>],
) -> fmt::Result {
    let write_mostly = config.write_mostly();
    let behind = stats
        .iter()
        .enumerate()
        .filter(|(_, s)| s.writes > 0)
        .fold(LegSet::EMPTY, |set, (leg, _)| set.with(leg));
    let shown = write_mostly.union(behind);
    if shown.is_empty() {
        return Ok(());
    }
    write!(
        out,
        "write_behind {MAX_WRITE_BEHIND} {}",
        config.max_write_behind()
    )?;
    for leg in write_mostly {
        write!(out, " {WRITE_MOSTLY} {leg}")?;
    }
    out.write_char('\n')?;
    for leg in shown {
        let s = stats.get(leg).copied().unwrap_or_default();
        let oldest = oldest_ms.get(leg).copied().flatten().unwrap_or(0);
        writeln!(
            out,
            "behind {leg} {} writes {} sectors {} peak_writes {} peak_sectors {} admitted {} waits {} oldest_ms {oldest}",
            leg_names.get(leg).copied().unwrap_or("-"),
            s.writes,
            s.sectors,
            s.peak_writes,
            s.peak_sectors,
            s.admitted,
            s.waits,
        )?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {

    #[test]
    fn copy_hint_names_the_write_mostly_legs_while_behind_is_on() {
        let mut config = WriteBehindConfig::default();
        assert_eq!(copy_legs(config.copy_hint()), LegSet::EMPTY);
        for leg in [1, 8] {
            let leg = LegRef::by_index(leg).unwrap();
            config.apply(&WriteBehindCommand::WriteMostly { leg, on: true });
        }
        // Write-mostly legs, but no bound: no write-behind.
        assert_eq!(copy_legs(config.copy_hint()), LegSet::EMPTY);
        config.apply(&WriteBehindCommand::MaxWriteBehind(256));
        assert_eq!(copy_legs(config.copy_hint()), LegSet::EMPTY.with(1).with(8));
    }

    proptest::proptest! {
        /// A leased leg is one that every region's reads may go to: for
        /// any region, with more legs fresh there than everywhere and
        /// fewer behind there than anywhere, it is among the region's
        /// candidates.
        #[test]
        fn a_lease_candidate_is_a_candidate_in_every_region(
            fresh_everywhere in 0u16..512, more_fresh in 0u16..512, healthy in 0u16..512,
            behind_anywhere in 0u16..512, behind_here in 0u16..512, write_mostly in 0u16..512,
        ) {
            let set = |bits: u16| LegSet::from_bits(bits);
            let fresh_here = set(fresh_everywhere | more_fresh);
            let behind_here = set(behind_anywhere & behind_here);
            let leased = lease_candidates(
                set(fresh_everywhere), set(healthy), set(behind_anywhere), set(write_mostly),
            );
            let here = read_candidates(fresh_here, set(healthy), behind_here, set(write_mostly));
            for leg in leased {
                proptest::prop_assert!(here.contains(leg), "leg {leg}: leased {leased:?}, here {here:?}");
            }
        }
    }

    #[test]
    fn lease_candidates_avoid_write_mostly_legs_while_another_is_healthy() {
        let (a, w) = (LegSet::single(0), LegSet::single(1));
        let both = a.union(w);
        // Leg 0 stale somewhere: no lease, rather than one on the WAN leg.
        assert_eq!(lease_candidates(w, both, LegSet::EMPTY, w), LegSet::EMPTY);
        assert_eq!(lease_candidates(both, both, LegSet::EMPTY, w), a);
        // Leg 0 behind (its write_mostly just ended): no lease either.
        assert_eq!(lease_candidates(both, both, a, w), LegSet::EMPTY);
        // Leg 0 failed: the write-mostly leg is all there is.
        assert_eq!(lease_candidates(both, w, LegSet::EMPTY, w), w);
    }

    #[test]
    fn report_lists_write_mostly_and_lagging_legs_only() {
        let mut config = WriteBehindConfig::default();
        let mut out = String::new();
        let stats = [BehindStats::default(); 3];
        write_behind_report(&mut out, &NAMES, &config, &stats, &[None; 3]).unwrap();
        assert_eq!(out, "");
        config.apply(&WriteBehindCommand::WriteMostly {
            leg: LegRef::by_index(2).unwrap(),
            on: true,
        });
        config.apply(&WriteBehindCommand::MaxWriteBehind(4096));
        let mut stats = [BehindStats::default(); 3];
        stats[2] = BehindStats {
            writes: 3,
            sectors: 24,
            peak_sectors: 64,
            peak_writes: 8,
            admitted: 10,
            waits: 1,
        };
        write_behind_report(&mut out, &NAMES, &config, &stats, &[None, None, Some(12)]).unwrap();
        assert_eq!(
            out,
            "write_behind max_write_behind 4096 write_mostly 2\n\
             behind 2 253:3 writes 3 sectors 24 peak_writes 8 peak_sectors 64 admitted 10 waits 1 oldest_ms 12\n"
        );
    }

    use super::*;

    const NAMES: [&str; 3] = ["253:1", "253:2", "253:3"];

    fn message(line: &'static str) -> Result<WriteBehindCommand, WriteMostlyError<'static>> {
        // The parser borrows the words: give them the line's lifetime.
        let words: &'static [&'static str] = Box::leak(
            line.split_whitespace()
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        parse_write_behind_words(words, &NAMES, false)
            .expect("a write-behind word")
            .map(|(command, used)| {
                assert_eq!(used, words.len());
                command
            })
    }

    #[test]
    fn reads_avoid_write_mostly_legs_and_never_go_where_a_write_is_behind() {
        let set = |legs: &[usize]| legs.iter().fold(LegSet::EMPTY, |s, &l| s.with(l));
        let all = set(&[0, 1, 2]);
        let none = LegSet::EMPTY;
        // Nothing special: every fresh healthy leg.
        assert_eq!(read_candidates(all, all, none, none), all);
        // A write-mostly leg only when nothing else can serve.
        assert_eq!(read_candidates(all, all, none, set(&[2])), set(&[0, 1]));
        assert_eq!(read_candidates(all, set(&[2]), none, set(&[2])), set(&[2]));
        assert_eq!(read_candidates(set(&[2]), all, none, set(&[2])), set(&[2]));
        // Behind: never, even when it is the only one left.
        assert_eq!(read_candidates(all, set(&[2]), set(&[2]), set(&[2])), none);
        assert_eq!(read_candidates(all, all, set(&[0]), none), set(&[1, 2]));
        // Stale or failed legs are out whatever else holds.
        assert_eq!(read_candidates(set(&[0]), set(&[1]), none, none), none);
    }

    #[test]
    fn parses_messages_and_prints_them_back() {
        for line in [
            "write_mostly 253:2 on",
            "write_mostly 1 off",
            "max_write_behind 0",
            "max_write_behind 524288",
        ] {
            let command = message(line).unwrap();
            let mut out = String::new();
            command.write_message(&mut out, &NAMES).unwrap();
            assert_eq!(out, line);
        }
    }

    #[test]
    fn rejects_malformed_messages() {
        use WriteMostlyError as E;
        assert_eq!(message("write_mostly"), Err(E::MissingLeg));
        assert_eq!(message("write_mostly 9 on"), Err(E::UnknownLeg("9")));
        assert_eq!(message("write_mostly 7:7 on"), Err(E::UnknownLeg("7:7")));
        assert_eq!(message("write_mostly 1"), Err(E::ExpectedOnOff(None)));
        assert_eq!(
            message("write_mostly 1 yes"),
            Err(E::ExpectedOnOff(Some("yes")))
        );
        assert_eq!(message("write_mostly 1 on x"), Err(E::TrailingWords("x")));
        assert_eq!(message("max_write_behind"), Err(E::MissingSectors));
        assert_eq!(message("max_write_behind -1"), Err(E::InvalidNumber("-1")));
        assert_eq!(
            message("max_write_behind 524289"),
            Err(E::OutOfRange(524_289))
        );
        assert_eq!(
            message("max_write_behind 99999999999999999999"),
            Err(E::InvalidNumber("99999999999999999999"))
        );
        assert_eq!(message("max_write_behind 8 8"), Err(E::TrailingWords("8")));
        assert!(parse_write_behind_words(&["io_balance"], &NAMES, false).is_none());
        assert!(parse_write_behind_words(&[], &NAMES, false).is_none());
        for e in [
            E::MissingLeg,
            E::AllLegs,
            E::DefaultLeg(0),
            E::DuplicateBound,
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn table_words_take_no_on_off_and_stop_at_the_next_feature() {
        let words = ["write_mostly", "2", "handle_errors"];
        let (command, used) = parse_write_behind_words(&words, &NAMES, true)
            .unwrap()
            .unwrap();
        assert_eq!(used, 2);
        let mut config = WriteBehindConfig::default();
        apply_table_feature(&mut config, &command, "2").unwrap();
        assert_eq!(
            apply_table_feature(&mut config, &command, "2"),
            Err(WriteMostlyError::DuplicateLeg("2"))
        );
        let bound = WriteBehindCommand::MaxWriteBehind(64);
        apply_table_feature(&mut config, &bound, "64").unwrap();
        assert_eq!(
            apply_table_feature(&mut config, &bound, "64"),
            Err(WriteMostlyError::DuplicateBound)
        );
        assert_eq!(config.write_mostly(), LegSet::single(2));
        assert_eq!(config.max_write_behind(), 64);
        assert!(config.behind_enabled());
        assert_eq!(config.word_count(), 4);
        let mut out = String::new();
        config.write_words(&mut out, &NAMES).unwrap();
        assert_eq!(out, " write_mostly 2 max_write_behind 64");
    }

    #[test]
    fn a_message_may_leave_a_write_mostly_default_but_not_make_one() {
        let leg = |i| LegRef::by_index(i).unwrap();
        let mut before = WriteBehindConfig::default();
        for i in [1, 2] {
            before.apply(&WriteBehindCommand::WriteMostly {
                leg: leg(i),
                on: true,
            });
        }
        // Leg 2 became the default when leg 0 failed: leg 1 may stop being
        // write-mostly.
        let mut after = before;
        after.apply(&WriteBehindCommand::WriteMostly {
            leg: leg(1),
            on: false,
        });
        assert_eq!(after.check(3, 2), Err(WriteMostlyError::DefaultLeg(2)));
        assert_eq!(after.check_change(&before, 3, 2), Ok(()));
        // Making the default leg write-mostly is still refused.
        let mut only_one = WriteBehindConfig::default();
        only_one.apply(&WriteBehindCommand::WriteMostly {
            leg: leg(1),
            on: true,
        });
        assert_eq!(
            before.check_change(&only_one, 3, 2),
            Err(WriteMostlyError::DefaultLeg(2))
        );
        // And so is every leg write-mostly.
        let mut all = before;
        all.apply(&WriteBehindCommand::WriteMostly {
            leg: leg(0),
            on: true,
        });
        assert_eq!(
            all.check_change(&before, 3, 2),
            Err(WriteMostlyError::AllLegs)
        );
    }

    #[test]
    fn checks_the_default_leg_and_that_one_leg_is_not_write_mostly() {
        let mut config = WriteBehindConfig::default();
        assert!(config.is_empty());
        assert_eq!(config.check(2, 0), Ok(()));
        assert!(!config.behind_enabled());
        let leg = |i| LegRef::by_index(i).unwrap();
        config.apply(&WriteBehindCommand::WriteMostly {
            leg: leg(1),
            on: true,
        });
        assert_eq!(config.check(2, 0), Ok(()));
        assert_eq!(config.check(2, 1), Err(WriteMostlyError::DefaultLeg(1)));
        assert!(!config.behind_enabled(), "no bound: no write-behind");
        config.apply(&WriteBehindCommand::WriteMostly {
            leg: leg(0),
            on: true,
        });
        assert_eq!(config.check(2, 0), Err(WriteMostlyError::AllLegs));
        assert_eq!(
            config.check(3, 2),
            Ok(()),
            "a third leg is not write-mostly"
        );
        config.apply(&WriteBehindCommand::WriteMostly {
            leg: leg(0),
            on: false,
        });
        assert_eq!(config.write_mostly(), LegSet::single(1));
        config.apply(&WriteBehindCommand::MaxWriteBehind(0));
        assert!(!config.is_empty());
        assert_eq!(config.word_count(), 4);
    }
}
