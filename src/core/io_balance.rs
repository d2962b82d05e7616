// SPDX-License-Identifier: GPL-2.0

//! The `io_balance` vocabulary: read-balancing commands, as messages
//! (`dmsetup message <dev> 0 io_balance ...`, dispatched by
//! [`super::message`]) and as table features.
//!
//! Grammar (words are separated by whitespace; `<leg>` is a leg's device
//! name as dm reports it, e.g. `253:3`, or its 0-based index in the table):
//!
//! ```text
//! io_balance round_robin ios <N>        N in 0..=1000000
//! io_balance weighted
//! io_balance weight <leg> <W>           W in 0..=1000
//! io_balance default <leg>
//! io_balance adaptive [tolerance <P>] [probe_ms <MS>]
//!                                       P in 0..=1000 (%), MS in 0..=60000
//! io_balance show
//! io_balance reset_stats
//! ```
//!
//! The same `io_balance ...` words, except `show` and `reset_stats`, are
//! also accepted as table features (see [`super::table`]); the grammar is
//! shared through [`parse_io_balance_words`].

use core::fmt;

use super::legs::{resolve_leg, LegRef};
use super::number::parse_u64;
use super::write_mostly::WriteMostlyError;

/// The first word of every message (and of every table feature) handled here.
pub const IO_BALANCE: &str = "io_balance";

/// Largest accepted `round_robin ios <N>` value.
pub const MAX_ROUND_ROBIN_IOS: u32 = 1_000_000;

/// Largest accepted `weight <leg> <W>` value.
pub const MAX_WEIGHT: u16 = 1000;

/// Weight of every leg until a `weight` command changes it.
pub const DEFAULT_WEIGHT: u16 = 1;

/// Largest accepted `adaptive tolerance <P>` value (percent).
pub const MAX_TOLERANCE_PCT: u16 = 1000;

/// `adaptive` tolerance band when none is given (percent).
pub const DEFAULT_TOLERANCE_PCT: u16 = 25;

/// Largest accepted `adaptive probe_ms <MS>` value.
pub const MAX_PROBE_MS: u32 = 60_000;

/// `adaptive` longest wait for a probe when none is given (milliseconds).
pub const DEFAULT_PROBE_MS: u32 = 1000;

/// Parameters of the adaptive policy as given; `None` means "not given, use
/// the default" (kept apart so a table prints back only what it was given).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AdaptiveParams {
    /// Width of the band of "equally good" legs, in percent of the best
    /// leg's expected latency.
    pub tolerance_pct: Option<u16>,
    /// Longest time an idle leg outside the band goes without a probe, in
    /// milliseconds; 0 disables probing.
    pub probe_ms: Option<u32>,
}

impl AdaptiveParams {
    /// The tolerance band in percent, defaulted.
    pub fn tolerance_pct(&self) -> u16 {
        self.tolerance_pct.unwrap_or(DEFAULT_TOLERANCE_PCT)
    }

    /// The probe interval in milliseconds, defaulted.
    pub fn probe_ms(&self) -> u32 {
        self.probe_ms.unwrap_or(DEFAULT_PROBE_MS)
    }
}

/// A read-balancing policy and its parameters, as selected by a message or
/// a table feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicySpec {
    /// Round robin over the usable legs, `ios` reads per leg before moving
    /// on; `ios == 0` reads only the default leg (upstream dm-raid1).
    RoundRobin {
        /// Reads sent to one leg before switching to the next.
        ios: u32,
    },
    /// Smooth weighted round robin using the per-leg weights.
    Weighted,
    /// Latency-driven selection.
    Adaptive(AdaptiveParams),
}

impl PolicySpec {
    /// The policy at creation: every read goes to the default leg, like
    /// upstream dm-raid1.
    pub const UPSTREAM: PolicySpec = PolicySpec::RoundRobin { ios: 0 };

    /// The policy's name as used in messages.
    pub fn name(&self) -> &'static str {
        match self {
            PolicySpec::RoundRobin { .. } => "round_robin",
            PolicySpec::Weighted => "weighted",
            PolicySpec::Adaptive(_) => "adaptive",
        }
    }

    /// Number of words [`PolicySpec::write_words`] writes.
    pub fn word_count(&self) -> u32 {
        match self {
            PolicySpec::RoundRobin { .. } => 3,
            PolicySpec::Weighted => 1,
            PolicySpec::Adaptive(params) => {
                let given = u32::from(params.tolerance_pct.is_some())
                    .saturating_add(u32::from(params.probe_ms.is_some()));
                given.saturating_mul(2).saturating_add(1)
            }
        }
    }

    /// Writes the policy words as they follow `io_balance`, e.g.
    /// `round_robin ios 16` (no leading or trailing space). Adaptive
    /// parameters are written only if they were given.
    pub fn write_words(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        match self {
            PolicySpec::RoundRobin { ios } => write!(out, "round_robin ios {ios}"),
            PolicySpec::Weighted => out.write_str("weighted"),
            PolicySpec::Adaptive(params) => {
                out.write_str("adaptive")?;
                if let Some(pct) = params.tolerance_pct {
                    write!(out, " tolerance {pct}")?;
                }
                if let Some(ms) = params.probe_ms {
                    write!(out, " probe_ms {ms}")?;
                }
                Ok(())
            }
        }
    }
}

/// A parsed `io_balance` command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// `round_robin ios <N>`, `weighted`, `adaptive ...`: select a policy.
    SetPolicy(PolicySpec),
    /// `default <leg>`: make `leg` the default leg.
    SetDefaultLeg(LegRef),
    /// `weight <leg> <W>`: set a leg's weight and select the weighted policy.
    SetWeight {
        /// The leg.
        leg: LegRef,
        /// Its new weight, `0..=MAX_WEIGHT`.
        weight: u16,
    },
    /// `show`: report policy, parameters and per-leg statistics.
    Show,
    /// `reset_stats`: zero the per-leg read, sector and error counters.
    ResetStats,
}

impl Command {
    /// Whether the kernel should answer with a report (`io_balance show`)
    /// rather than change state.
    pub fn is_report(&self) -> bool {
        matches!(self, Command::Show)
    }

    /// Writes the command as a message, `io_balance ...`, legs written as
    /// they were given.
    pub fn write_message(&self, out: &mut dyn fmt::Write, leg_names: &[&str]) -> fmt::Result {
        out.write_str(IO_BALANCE)?;
        out.write_char(' ')?;
        self.write_words(out, leg_names)
    }

    /// Writes the words after `io_balance`.
    pub fn write_words(&self, out: &mut dyn fmt::Write, leg_names: &[&str]) -> fmt::Result {
        match self {
            Command::SetPolicy(policy) => policy.write_words(out),
            Command::SetDefaultLeg(leg) => {
                out.write_str("default ")?;
                leg.write(out, leg_names)
            }
            Command::SetWeight { leg, weight } => {
                out.write_str("weight ")?;
                leg.write(out, leg_names)?;
                write!(out, " {weight}")
            }
            Command::Show => out.write_str("show"),
            Command::ResetStats => out.write_str("reset_stats"),
        }
    }
}

/// Why a message (or an `io_balance` table feature) was rejected.
///
/// The `Display` text is what the kernel logs after `device-mapper: mirror: `.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageError<'a> {
    /// No words at all.
    Empty,
    /// The first word is not `io_balance`, `write_mostly` or
    /// `max_write_behind`.
    UnknownMessage(&'a str),
    /// A malformed `write_mostly` or `max_write_behind` message.
    WriteBehind(WriteMostlyError<'a>),
    /// `io_balance` with nothing after it.
    MissingCommand,
    /// `io_balance <word>` with an unknown command word.
    UnknownCommand(&'a str),
    /// The command ended before a required word.
    Missing {
        /// The command being parsed, e.g. `"round_robin"`.
        command: &'static str,
        /// What was expected, e.g. `"ios <N>"`.
        expected: &'static str,
    },
    /// A fixed keyword was expected but another word was found.
    ExpectedKeyword {
        /// The keyword, e.g. `"ios"`.
        keyword: &'static str,
        /// The word found instead.
        found: &'a str,
    },
    /// A word that should be a decimal number is not one (or overflows).
    InvalidNumber {
        /// The parameter, e.g. `"weight"`.
        parameter: &'static str,
        /// The word.
        word: &'a str,
    },
    /// A number outside its allowed range.
    OutOfRange {
        /// The parameter, e.g. `"weight"`.
        parameter: &'static str,
        /// The value given.
        value: u64,
        /// The largest allowed value (the smallest is always 0).
        max: u64,
    },
    /// A leg that is neither a leg's device name nor a valid leg index.
    UnknownLeg(&'a str),
    /// An unknown `adaptive` parameter.
    UnknownParameter(&'a str),
    /// An `adaptive` parameter given twice.
    DuplicateParameter(&'a str),
    /// Words left over after a complete command.
    TrailingWords(&'a str),
    /// `show` or `reset_stats` used as a table feature.
    NotAllowedInTable(&'static str),
}

impl fmt::Display for MessageError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::Empty => f.write_str("Empty message: expected io_balance <command>"),
            MessageError::UnknownMessage(word) => write!(
                f,
                "Unrecognised message \"{word}\": expected io_balance, write_mostly or max_write_behind"
            ),
            MessageError::WriteBehind(inner) => write!(f, "{inner}"),
            MessageError::MissingCommand => f.write_str(
                "io_balance: missing command (round_robin, weighted, weight, default, adaptive, show or reset_stats)",
            ),
            MessageError::UnknownCommand(word) => write!(
                f,
                "io_balance: unrecognised command \"{word}\" (round_robin, weighted, weight, default, adaptive, show or reset_stats)"
            ),
            MessageError::Missing { command, expected } => {
                write!(f, "io_balance {command}: missing {expected}")
            }
            MessageError::ExpectedKeyword { keyword, found } => {
                write!(f, "io_balance: expected \"{keyword}\", found \"{found}\"")
            }
            MessageError::InvalidNumber { parameter, word } => write!(
                f,
                "io_balance: invalid {parameter} \"{word}\": not a decimal number"
            ),
            MessageError::OutOfRange {
                parameter,
                value,
                max,
            } => write!(
                f,
                "io_balance: {parameter} {value} out of range (0..={max})"
            ),
            MessageError::UnknownLeg(word) => write!(
                f,
                "io_balance: unknown leg \"{word}\": not a leg device (maj:min) or leg index"
            ),
            MessageError::UnknownParameter(word) => write!(
                f,
                "io_balance adaptive: unrecognised parameter \"{word}\" (tolerance, probe_ms)"
            ),
            MessageError::DuplicateParameter(word) => {
                write!(f, "io_balance adaptive: parameter \"{word}\" given twice")
            }
            MessageError::TrailingWords(word) => {
                write!(f, "io_balance: unexpected extra argument \"{word}\"")
            }
            MessageError::NotAllowedInTable(command) => write!(
                f,
                "io_balance {command} is a message, not a table feature"
            ),
        }
    }
}

/// Longest accepted value of the `default_io_balance` module parameter, in
/// bytes (the C side's buffer holds one more, for the NUL).
pub const DEFAULT_POLICY_MAX_LEN: usize = 127;

/// Why a `default_io_balance` module parameter value was rejected.
///
/// The `Display` text is what the kernel logs after
/// `device-mapper: mirror: default_io_balance: `.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefaultPolicyError<'a> {
    /// Longer than [`DEFAULT_POLICY_MAX_LEN`].
    TooLong(usize),
    /// Not a policy command (`default`, `weight`, `show`, `reset_stats`
    /// name legs or report, which a module-wide default cannot).
    NotAPolicy(&'a str),
    /// Malformed policy words.
    Invalid(MessageError<'a>),
}

impl fmt::Display for DefaultPolicyError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultPolicyError::TooLong(len) => write!(
                f,
                "value of {len} bytes is too long (at most {DEFAULT_POLICY_MAX_LEN})"
            ),
            DefaultPolicyError::NotAPolicy(word) => write!(
                f,
                "\"{word}\" is not a read policy (round_robin ios <N>, weighted or adaptive [...])"
            ),
            DefaultPolicyError::Invalid(inner) => write!(f, "{inner}"),
        }
    }
}

/// Parses the `default_io_balance` module parameter: the words of one
/// policy command as after `io_balance` (`round_robin ios 128`,
/// `weighted`, `adaptive tolerance 25`, ...), separated by spaces or commas
/// (a kernel command line cannot quote spaces everywhere). An empty value
/// (or only separators) means "none": new mappings keep dm-raid1's
/// behaviour, [`PolicySpec::UPSTREAM`].
pub fn parse_default_policy(text: &str) -> Result<Option<PolicySpec>, DefaultPolicyError<'_>> {
    if text.len() > DEFAULT_POLICY_MAX_LEN {
        return Err(DefaultPolicyError::TooLong(text.len()));
    }
    // The longest policy command, `adaptive tolerance <P> probe_ms <MS>`,
    // has 5 words; a word beyond 8 is extra whatever the command.
    let mut words = [""; 8];
    let mut count = 0usize;
    for word in text
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter(|word| !word.is_empty())
    {
        let Some(slot) = words.get_mut(count) else {
            return Err(DefaultPolicyError::Invalid(MessageError::TrailingWords(
                word,
            )));
        };
        *slot = word;
        count = count.saturating_add(1);
    }
    let words = words.get(..count).unwrap_or(&[]);
    let Some(&first) = words.first() else {
        return Ok(None);
    };
    match parse_io_balance_words(words, &[], Source::Message) {
        Ok((Command::SetPolicy(policy), used)) => match words.get(used) {
            None => Ok(Some(policy)),
            Some(extra) => Err(DefaultPolicyError::Invalid(MessageError::TrailingWords(
                extra,
            ))),
        },
        Ok(_) => Err(DefaultPolicyError::NotAPolicy(first)),
        // `default`/`weight` fail on their leg word before a command is
        // made: name the command, not the leg.
        Err(_) if matches!(first, "default" | "weight") => {
            Err(DefaultPolicyError::NotAPolicy(first))
        }
        Err(e) => Err(DefaultPolicyError::Invalid(e)),
    }
}

/// Where `io_balance` words come from; decides what may follow a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A `dmsetup message`: nothing may follow a command.
    Message,
    /// A table's feature list: other features may follow; `show` and
    /// `reset_stats` are rejected; an `adaptive` parameter list ends at the
    /// first word that is not a parameter name.
    Table,
}

/// Parses one command from the words following `io_balance`. Returns the
/// command and how many words it used; the caller decides what to do with
/// the remaining words.
pub fn parse_io_balance_words<'a>(
    words: &[&'a str],
    leg_names: &[&str],
    source: Source,
) -> Result<(Command, usize), MessageError<'a>> {
    let mut cursor = Cursor { words, pos: 0 };
    let command_word = cursor.next().ok_or(MessageError::MissingCommand)?;
    let command = match command_word {
        "round_robin" => {
            cursor.expect_keyword("round_robin", "ios")?;
            let ios = cursor.number(
                "round_robin",
                "ios <N>",
                "ios",
                u64::from(MAX_ROUND_ROBIN_IOS),
            )?;
            let ios = u32::try_from(ios).unwrap_or(MAX_ROUND_ROBIN_IOS);
            Command::SetPolicy(PolicySpec::RoundRobin { ios })
        }
        "weighted" => Command::SetPolicy(PolicySpec::Weighted),
        "weight" => {
            let leg = cursor.leg("weight", "<leg> <weight>", leg_names)?;
            let weight = cursor.number("weight", "<weight>", "weight", u64::from(MAX_WEIGHT))?;
            let weight = u16::try_from(weight).unwrap_or(MAX_WEIGHT);
            Command::SetWeight { leg, weight }
        }
        "default" => Command::SetDefaultLeg(cursor.leg("default", "<leg>", leg_names)?),
        "adaptive" => Command::SetPolicy(PolicySpec::Adaptive(cursor.adaptive_params(source)?)),
        "show" | "reset_stats" if source == Source::Table => {
            let name = if command_word == "show" {
                "show"
            } else {
                "reset_stats"
            };
            return Err(MessageError::NotAllowedInTable(name));
        }
        "show" => Command::Show,
        "reset_stats" => Command::ResetStats,
        other => return Err(MessageError::UnknownCommand(other)),
    };
    Ok((command, cursor.pos))
}

/// Reads words one by one.
// INVARIANT: `pos <= words.len()`.
struct Cursor<'w, 'a> {
    words: &'w [&'a str],
    pos: usize,
}

impl<'a> Cursor<'_, 'a> {
    fn peek(&self) -> Option<&'a str> {
        self.words.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<&'a str> {
        let word = self.peek()?;
        self.pos = self.pos.saturating_add(1);
        Some(word)
    }

    fn require(
        &mut self,
        command: &'static str,
        expected: &'static str,
    ) -> Result<&'a str, MessageError<'a>> {
        self.next()
            .ok_or(MessageError::Missing { command, expected })
    }

    fn expect_keyword(
        &mut self,
        command: &'static str,
        keyword: &'static str,
    ) -> Result<(), MessageError<'a>> {
        let word = self.require(command, keyword)?;
        if word == keyword {
            Ok(())
        } else {
            Err(MessageError::ExpectedKeyword {
                keyword,
                found: word,
            })
        }
    }

    fn number(
        &mut self,
        command: &'static str,
        expected: &'static str,
        parameter: &'static str,
        max: u64,
    ) -> Result<u64, MessageError<'a>> {
        let word = self.require(command, expected)?;
        let value = parse_u64(word).ok_or(MessageError::InvalidNumber { parameter, word })?;
        if value > max {
            return Err(MessageError::OutOfRange {
                parameter,
                value,
                max,
            });
        }
        Ok(value)
    }

    fn leg(
        &mut self,
        command: &'static str,
        expected: &'static str,
        leg_names: &[&str],
    ) -> Result<LegRef, MessageError<'a>> {
        let word = self.require(command, expected)?;
        resolve_leg(word, leg_names).ok_or(MessageError::UnknownLeg(word))
    }

    fn adaptive_params(&mut self, source: Source) -> Result<AdaptiveParams, MessageError<'a>> {
        let mut params = AdaptiveParams::default();
        while let Some(word) = self.peek() {
            match word {
                "tolerance" => {
                    self.pos = self.pos.saturating_add(1);
                    if params.tolerance_pct.is_some() {
                        return Err(MessageError::DuplicateParameter(word));
                    }
                    let pct = self.number(
                        "adaptive",
                        "tolerance <percent>",
                        "tolerance",
                        u64::from(MAX_TOLERANCE_PCT),
                    )?;
                    params.tolerance_pct = Some(u16::try_from(pct).unwrap_or(MAX_TOLERANCE_PCT));
                }
                "probe_ms" => {
                    self.pos = self.pos.saturating_add(1);
                    if params.probe_ms.is_some() {
                        return Err(MessageError::DuplicateParameter(word));
                    }
                    let ms = self.number(
                        "adaptive",
                        "probe_ms <milliseconds>",
                        "probe_ms",
                        u64::from(MAX_PROBE_MS),
                    )?;
                    params.probe_ms = Some(u32::try_from(ms).unwrap_or(MAX_PROBE_MS));
                }
                _ if source == Source::Table => break,
                _ => return Err(MessageError::UnknownParameter(word)),
            }
        }
        Ok(params)
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::needless_range_loop,
    clippy::type_complexity
)]
mod tests {
    use super::super::message::{parse_message, Message};
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    const LEGS: [&str; 3] = ["253:3", "253:4", "8:16"];

    fn parse(line: &str) -> Result<Command, MessageError<'_>> {
        let words: Vec<&str> = line.split_whitespace().collect();
        parse_message(&words, &LEGS).map(|message| match message {
            Message::IoBalance(command) => command,
            Message::WriteBehind(other) => panic!("not an io_balance message: {other:?}"),
        })
    }

    fn format(command: &Command) -> String {
        let mut out = String::new();
        command.write_message(&mut out, &LEGS).unwrap();
        out
    }

    #[test]
    fn default_policy_parameter() {
        let adaptive = |tolerance_pct, probe_ms| {
            Ok(Some(PolicySpec::Adaptive(AdaptiveParams {
                tolerance_pct,
                probe_ms,
            })))
        };
        assert_eq!(parse_default_policy(""), Ok(None));
        assert_eq!(parse_default_policy(" \n"), Ok(None));
        assert_eq!(parse_default_policy(",,"), Ok(None));
        assert_eq!(
            parse_default_policy("round_robin ios 128"),
            Ok(Some(PolicySpec::RoundRobin { ios: 128 }))
        );
        assert_eq!(
            parse_default_policy("round_robin,ios,0\n"),
            Ok(Some(PolicySpec::UPSTREAM))
        );
        assert_eq!(
            parse_default_policy("weighted"),
            Ok(Some(PolicySpec::Weighted))
        );
        assert_eq!(parse_default_policy("adaptive"), adaptive(None, None));
        assert_eq!(
            parse_default_policy("adaptive tolerance 10 probe_ms 500"),
            adaptive(Some(10), Some(500))
        );
        assert_eq!(
            parse_default_policy("adaptive,probe_ms,0"),
            adaptive(None, Some(0))
        );

        for (text, want) in [
            ("default 0", DefaultPolicyError::NotAPolicy("default")),
            ("default", DefaultPolicyError::NotAPolicy("default")),
            ("weight 0 3", DefaultPolicyError::NotAPolicy("weight")),
            ("show", DefaultPolicyError::NotAPolicy("show")),
            ("reset_stats", DefaultPolicyError::NotAPolicy("reset_stats")),
            (
                "io_balance adaptive",
                DefaultPolicyError::Invalid(MessageError::UnknownCommand("io_balance")),
            ),
            (
                "round_robin ios",
                DefaultPolicyError::Invalid(MessageError::Missing {
                    command: "round_robin",
                    expected: "ios <N>",
                }),
            ),
            (
                "round_robin ios 1000001",
                DefaultPolicyError::Invalid(MessageError::OutOfRange {
                    parameter: "ios",
                    value: 1_000_001,
                    max: u64::from(MAX_ROUND_ROBIN_IOS),
                }),
            ),
            (
                "adaptive tolerance 5 tolerance 6",
                DefaultPolicyError::Invalid(MessageError::DuplicateParameter("tolerance")),
            ),
            (
                "weighted extra",
                DefaultPolicyError::Invalid(MessageError::TrailingWords("extra")),
            ),
            (
                "a b c d e f g h i",
                DefaultPolicyError::Invalid(MessageError::TrailingWords("i")),
            ),
        ] {
            assert_eq!(parse_default_policy(text), Err(want), "{text:?}");
        }
        let long = "weighted ".repeat(15);
        assert_eq!(
            parse_default_policy(&long),
            Err(DefaultPolicyError::TooLong(long.len()))
        );
        assert_eq!(
            DefaultPolicyError::NotAPolicy("default").to_string(),
            "\"default\" is not a read policy (round_robin ios <N>, weighted or adaptive [...])"
        );
    }

    #[test]
    fn parses_every_command() {
        let leg = |i| LegRef::by_index(i).unwrap();
        let name = |i| LegRef::by_name(i).unwrap();
        let cases = [
            (
                "io_balance round_robin ios 16",
                Command::SetPolicy(PolicySpec::RoundRobin { ios: 16 }),
            ),
            (
                "io_balance round_robin ios 0",
                Command::SetPolicy(PolicySpec::UPSTREAM),
            ),
            (
                "io_balance round_robin ios 1000000",
                Command::SetPolicy(PolicySpec::RoundRobin { ios: 1_000_000 }),
            ),
            (
                "io_balance weighted",
                Command::SetPolicy(PolicySpec::Weighted),
            ),
            (
                "io_balance weight 253:4 7",
                Command::SetWeight {
                    leg: name(1),
                    weight: 7,
                },
            ),
            (
                "io_balance weight 2 0",
                Command::SetWeight {
                    leg: leg(2),
                    weight: 0,
                },
            ),
            ("io_balance default 8:16", Command::SetDefaultLeg(name(2))),
            ("io_balance default 0", Command::SetDefaultLeg(leg(0))),
            (
                "io_balance adaptive",
                Command::SetPolicy(PolicySpec::Adaptive(AdaptiveParams::default())),
            ),
            (
                "io_balance adaptive probe_ms 5 tolerance 1000",
                Command::SetPolicy(PolicySpec::Adaptive(AdaptiveParams {
                    tolerance_pct: Some(1000),
                    probe_ms: Some(5),
                })),
            ),
            ("io_balance show", Command::Show),
            ("io_balance reset_stats", Command::ResetStats),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(line), Ok(expected), "{line}");
        }
    }

    #[test]
    fn format_parse_round_trips() {
        for line in [
            "io_balance round_robin ios 16",
            "io_balance weighted",
            "io_balance weight 253:4 7",
            "io_balance weight 1 7",
            "io_balance default 8:16",
            "io_balance default 2",
            "io_balance adaptive",
            "io_balance adaptive tolerance 10 probe_ms 0",
            "io_balance adaptive probe_ms 20",
            "io_balance show",
            "io_balance reset_stats",
        ] {
            let command = parse(line).unwrap();
            assert_eq!(format(&command), line);
        }
        // Leading zeros and parameter order are not preserved.
        assert_eq!(
            format(&parse("io_balance adaptive probe_ms 020 tolerance 5").unwrap()),
            "io_balance adaptive tolerance 5 probe_ms 20"
        );
    }

    #[test]
    fn digits_are_indices_names_are_names() {
        let names = ["7", "7:1"];
        assert_eq!(resolve_leg("1", &names), LegRef::by_index(1));
        assert_eq!(resolve_leg("7", &names), None);
        assert_eq!(resolve_leg("7:1", &names), LegRef::by_name(1));
        assert_eq!(resolve_leg("01", &names), LegRef::by_index(1));
        assert_eq!(resolve_leg("99999999999999999999999", &names), None);
    }

    #[test]
    fn rejects_malformed_messages() {
        use MessageError as E;
        let range = |parameter, value, max| E::OutOfRange {
            parameter,
            value,
            max,
        };
        let missing = |command, expected| E::Missing { command, expected };
        let number = |parameter, word| E::InvalidNumber { parameter, word };
        let cases: &[(&str, MessageError<'_>)] = &[
            ("", E::Empty),
            ("io-balance show", E::UnknownMessage("io-balance")),
            ("IO_BALANCE show", E::UnknownMessage("IO_BALANCE")),
            ("resync", E::UnknownMessage("resync")),
            ("io_balance", E::MissingCommand),
            ("io_balance Show", E::UnknownCommand("Show")),
            ("io_balance rr ios 1", E::UnknownCommand("rr")),
            ("io_balance round_robin", missing("round_robin", "ios")),
            (
                "io_balance round_robin ios",
                missing("round_robin", "ios <N>"),
            ),
            (
                "io_balance round_robin 5",
                E::ExpectedKeyword {
                    keyword: "ios",
                    found: "5",
                },
            ),
            ("io_balance round_robin ios x", number("ios", "x")),
            ("io_balance round_robin ios -1", number("ios", "-1")),
            ("io_balance round_robin ios +1", number("ios", "+1")),
            ("io_balance round_robin ios 0x10", number("ios", "0x10")),
            ("io_balance round_robin ios 1.5", number("ios", "1.5")),
            (
                "io_balance round_robin ios 1000001",
                range("ios", 1_000_001, 1_000_000),
            ),
            (
                "io_balance round_robin ios 99999999999999999999",
                number("ios", "99999999999999999999"),
            ),
            ("io_balance round_robin ios 4 5", E::TrailingWords("5")),
            ("io_balance weighted 1", E::TrailingWords("1")),
            ("io_balance weight", missing("weight", "<leg> <weight>")),
            ("io_balance weight 253:3", missing("weight", "<weight>")),
            ("io_balance weight 253:9 1", E::UnknownLeg("253:9")),
            ("io_balance weight 3 1", E::UnknownLeg("3")),
            ("io_balance weight 253:3 1001", range("weight", 1001, 1000)),
            (
                "io_balance weight 253:3 65536",
                range("weight", 65536, 1000),
            ),
            ("io_balance weight 253:3 heavy", number("weight", "heavy")),
            ("io_balance weight 253:3 1 2", E::TrailingWords("2")),
            ("io_balance default", missing("default", "<leg>")),
            ("io_balance default /dev/sda", E::UnknownLeg("/dev/sda")),
            ("io_balance default 253:3:0", E::UnknownLeg("253:3:0")),
            ("io_balance default 9", E::UnknownLeg("9")),
            ("io_balance default 0 1", E::TrailingWords("1")),
            ("io_balance adaptive fast", E::UnknownParameter("fast")),
            (
                "io_balance adaptive tolerance",
                missing("adaptive", "tolerance <percent>"),
            ),
            (
                "io_balance adaptive tolerance 1001",
                range("tolerance", 1001, 1000),
            ),
            (
                "io_balance adaptive tolerance 10%",
                number("tolerance", "10%"),
            ),
            (
                "io_balance adaptive probe_ms",
                missing("adaptive", "probe_ms <milliseconds>"),
            ),
            (
                "io_balance adaptive probe_ms 60001",
                range("probe_ms", 60001, 60000),
            ),
            (
                "io_balance adaptive tolerance 1 tolerance 2",
                E::DuplicateParameter("tolerance"),
            ),
            (
                "io_balance adaptive probe_ms 1 probe_ms 1",
                E::DuplicateParameter("probe_ms"),
            ),
            ("io_balance show all", E::TrailingWords("all")),
            ("io_balance reset_stats now", E::TrailingWords("now")),
        ];
        assert!(cases.len() >= 30);
        for (line, expected) in cases {
            assert_eq!(parse(line), Err(*expected), "{line}");
        }
    }

    #[test]
    fn error_texts() {
        let text = |line: &str| std::format!("{}", parse(line).unwrap_err());
        assert_eq!(
            text("io_balance weight 253:3 1001"),
            "io_balance: weight 1001 out of range (0..=1000)"
        );
        assert_eq!(
            text("io_balance default 253:9"),
            "io_balance: unknown leg \"253:9\": not a leg device (maj:min) or leg index"
        );
        assert_eq!(
            text("io_balance round_robin ios"),
            "io_balance round_robin: missing ios <N>"
        );
        assert_eq!(
            text("status"),
            "Unrecognised message \"status\": expected io_balance, write_mostly or max_write_behind"
        );
        assert_eq!(
            text("io_balance show x"),
            "io_balance: unexpected extra argument \"x\""
        );
    }

    #[test]
    fn table_source_stops_adaptive_at_unknown_word() {
        let words = ["adaptive", "probe_ms", "7", "handle_errors"];
        let (command, used) = parse_io_balance_words(&words, &LEGS, Source::Table).unwrap();
        assert_eq!(used, 3);
        assert_eq!(
            command,
            Command::SetPolicy(PolicySpec::Adaptive(AdaptiveParams {
                tolerance_pct: None,
                probe_ms: Some(7)
            }))
        );
        assert_eq!(
            parse_io_balance_words(&["show"], &LEGS, Source::Table),
            Err(MessageError::NotAllowedInTable("show"))
        );
    }

    #[test]
    fn policy_word_counts_match_output() {
        for spec in [
            PolicySpec::UPSTREAM,
            PolicySpec::Weighted,
            PolicySpec::Adaptive(AdaptiveParams::default()),
            PolicySpec::Adaptive(AdaptiveParams {
                tolerance_pct: Some(1),
                probe_ms: None,
            }),
            PolicySpec::Adaptive(AdaptiveParams {
                tolerance_pct: Some(1),
                probe_ms: Some(2),
            }),
        ] {
            let mut out = String::new();
            spec.write_words(&mut out).unwrap();
            assert_eq!(out.split(' ').count(), spec.word_count() as usize, "{out}");
        }
    }

    mod properties {
        use super::super::super::legs::MAX_LEGS;
        use super::super::super::message::{parse_message, Message};
        use super::super::*;
        use proptest::prelude::*;
        use std::string::String;
        use std::vec::Vec;

        const NAMES: [&str; MAX_LEGS] = [
            "253:0", "253:1", "253:2", "8:0", "8:16", "8:32", "7:0", "7:1", "259:0",
        ];

        /// A word as dm splits them: not empty, no whitespace.
        fn word() -> impl Strategy<Value = String> {
            let any_word = prop_oneof![
                prop::sample::select(std::vec![
                    "io_balance",
                    "round_robin",
                    "ios",
                    "weighted",
                    "weight",
                    "default",
                    "adaptive",
                    "tolerance",
                    "probe_ms",
                    "show",
                    "reset_stats",
                    "0",
                    "1",
                    "8",
                    "9",
                    "1000",
                    "1001",
                    "1000000",
                    "1000001",
                    "60000",
                    "253:0",
                    "8:16",
                    "-1",
                    "18446744073709551616",
                ])
                .prop_map(String::from),
                "\\PC{0,8}",
                "[0-9]{1,25}",
            ];
            any_word.prop_filter("dm words have no whitespace", |word| {
                !word.is_empty() && !word.chars().any(char::is_whitespace)
            })
        }

        fn command() -> impl Strategy<Value = Command> {
            prop_oneof![
                super::super::strategies::setting_command(MAX_LEGS),
                Just(Command::Show),
                Just(Command::ResetStats),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn parser_never_panics(words in proptest::collection::vec(word(), 0..10), nr_names in 0..=MAX_LEGS) {
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                let names = &NAMES[..nr_names];
                if let Ok(command) = parse_message(&words, names) {
                    // Anything accepted prints back to an equivalent message.
                    let mut out = String::new();
                    command.write_message(&mut out, names).unwrap();
                    let again: Vec<&str> = out.split(' ').collect();
                    prop_assert_eq!(parse_message(&again, names), Ok(command));
                }
                let _ = parse_io_balance_words(&words, names, Source::Table);
            }

            #[test]
            fn default_policy_never_panics(text in "[a-z0-9_ ,\\n]{0,140}") {
                if let Ok(Some(policy)) = parse_default_policy(&text) {
                    // A policy accepted here is the same as that message.
                    let mut out = String::from("io_balance ");
                    policy.write_words(&mut out).unwrap();
                    let words: Vec<&str> = out.split(' ').collect();
                    prop_assert_eq!(
                        parse_message(&words, &NAMES),
                        Ok(Message::IoBalance(Command::SetPolicy(policy)))
                    );
                }
            }

            #[test]
            fn default_policy_round_trip(command in command()) {
                let mut out = String::new();
                command.write_words(&mut out, &NAMES).unwrap();
                let got = parse_default_policy(&out);
                match command {
                    Command::SetPolicy(policy) => prop_assert_eq!(got, Ok(Some(policy))),
                    _ => prop_assert!(got.is_err()),
                }
            }

            #[test]
            fn io_balance_prefix_never_panics(words in proptest::collection::vec(word(), 0..8)) {
                let mut all = std::vec!["io_balance"];
                all.extend(words.iter().map(String::as_str));
                let _ = parse_message(&all, &NAMES);
            }

            #[test]
            fn format_parse_round_trip(command in command()) {
                let mut out = String::new();
                command.write_message(&mut out, &NAMES).unwrap();
                let words: Vec<&str> = out.split(' ').collect();
                prop_assert_eq!(parse_message(&words, &NAMES), Ok(Message::IoBalance(command)));
            }
        }
    }
}

/// Proptest strategies shared by the tests of this file and of `table.rs`.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod strategies {
    use super::{
        AdaptiveParams, Command, LegRef, PolicySpec, MAX_PROBE_MS, MAX_ROUND_ROBIN_IOS,
        MAX_TOLERANCE_PCT, MAX_WEIGHT,
    };
    use proptest::prelude::*;

    /// One of the first `nr_legs` legs, by index or by name.
    pub(crate) fn leg_ref(nr_legs: usize) -> impl Strategy<Value = LegRef> {
        (0..nr_legs, any::<bool>()).prop_map(|(leg, by_name)| {
            if by_name {
                LegRef::by_name(leg).unwrap()
            } else {
                LegRef::by_index(leg).unwrap()
            }
        })
    }

    /// A command that changes a setting: what a table feature may say.
    pub(crate) fn setting_command(nr_legs: usize) -> impl Strategy<Value = Command> {
        let adaptive = (
            proptest::option::of(0..=MAX_TOLERANCE_PCT),
            proptest::option::of(0..=MAX_PROBE_MS),
        )
            .prop_map(|(tolerance_pct, probe_ms)| {
                PolicySpec::Adaptive(AdaptiveParams {
                    tolerance_pct,
                    probe_ms,
                })
            });
        prop_oneof![
            (0..=MAX_ROUND_ROBIN_IOS)
                .prop_map(|ios| Command::SetPolicy(PolicySpec::RoundRobin { ios })),
            Just(Command::SetPolicy(PolicySpec::Weighted)),
            adaptive.prop_map(Command::SetPolicy),
            leg_ref(nr_legs).prop_map(Command::SetDefaultLeg),
            (leg_ref(nr_legs), 0..=MAX_WEIGHT)
                .prop_map(|(leg, weight)| Command::SetWeight { leg, weight }),
        ]
    }
}
