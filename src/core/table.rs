// SPDX-License-Identifier: GPL-2.0

//! Parsing of the `mirror` target's constructor line.
//!
//! ```text
//! <log_type> <#log_args> <log_args>... <#mirrors> {<dev> <offset>}x#mirrors
//!     [<#features> <feature>...]
//!
//! log: core <1|2> <region_size> [sync|nosync]
//!      disk <2|3> <log_dev> <region_size> [sync|nosync]
//! feature: handle_errors | keep_log | io_balance <io_balance words>
//!        | write_mostly <leg> | max_write_behind <sectors>
//! ```
//!
//! Checks are made in the order dm-raid1's `mirror_ctr()` and dm-log's
//! constructors make them, with the same `ti->error` texts (see
//! [`TableError::ti_error`]). `<#features>` counts words, like dm: the
//! feature `io_balance round_robin ios 8` counts 4.
//!
//! `io_balance` features use the message grammar of [`super::message`]
//! (without `show` and `reset_stats`); a `<leg>` is a leg index or the
//! leg's device exactly as written in this table.

use core::ffi::CStr;
use core::fmt;

use super::io_balance::{
    parse_io_balance_words, Command, MessageError, PolicySpec, Source, IO_BALANCE,
};
use super::legs::LegRef;
use super::legs::{MAX_LEGS, MIN_LEGS};
use super::number::{parse_u32, parse_u64};
use super::write_mostly::{
    apply_table_feature, parse_write_behind_words, WriteBehindConfig, WriteMostlyError,
    MAX_WRITE_BEHIND, WRITE_MOSTLY,
};

/// dm-log's resync mode (`enum sync` in dm-log.c).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SyncMode {
    /// No sync argument: resync whatever the log says is out of sync.
    #[default]
    Default,
    /// `sync`: force a full resynchronisation.
    Sync,
    /// `nosync`: the legs are known to be in sync already.
    NoSync,
}

impl SyncMode {
    /// The table word, `None` for [`SyncMode::Default`].
    pub fn word(self) -> Option<&'static str> {
        match self {
            SyncMode::Default => None,
            SyncMode::Sync => Some("sync"),
            SyncMode::NoSync => Some("nosync"),
        }
    }
}

/// Parameters shared by the `core` and `disk` dirty logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RegionLogParams {
    /// Region size in sectors: a power of two, at least 2, at most the
    /// target length.
    pub region_size: u32,
    /// Resync mode.
    pub sync: SyncMode,
}

/// The dirty log part of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LogSpec<'a> {
    /// `core <1|2> <region_size> [sync|nosync]`: an in-memory log.
    Core(RegionLogParams),
    /// `disk <2|3> <log_dev> <region_size> [sync|nosync]`: a persistent log.
    Disk {
        /// The log device as written in the table (the kernel prints its
        /// `dm_dev` name in status output).
        device: &'a str,
        /// Region size and resync mode.
        params: RegionLogParams,
    },
}

impl LogSpec<'_> {
    /// The log type name, `"core"` or `"disk"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            LogSpec::Core(_) => "core",
            LogSpec::Disk { .. } => "disk",
        }
    }

    /// Region size and resync mode.
    pub fn params(&self) -> RegionLogParams {
        match self {
            LogSpec::Core(params) | LogSpec::Disk { params, .. } => *params,
        }
    }
}

/// One leg as given in the table (or, for status output, as the kernel names
/// it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LegSpec<'a> {
    /// The device: in a parsed table the word as written, in status output
    /// the `dm_dev` name (`maj:min`).
    pub device: &'a str,
    /// Start sector on the device.
    pub offset: u64,
}

/// A leg weight given in the table, with how the leg was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LegWeight {
    /// The leg.
    pub leg: LegRef,
    /// Its weight.
    pub weight: u16,
}

/// The read-balancing settings given as `io_balance` table features, in
/// canonical form: the commands are applied in table order to an empty
/// configuration, and what is left is the default leg, the per-leg weights
/// and the final policy.
///
/// Printing ([`IoBalanceConfig::write_words`]) emits `default`, then the
/// weights in leg order, then the policy unless it is the `weighted` policy
/// that the weights already select; parsing that back gives the same value.
/// A table without `io_balance` features has an empty configuration and
/// prints nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IoBalanceConfig {
    default_leg: Option<LegRef>,
    weights: [Option<LegWeight>; MAX_LEGS],
    policy: Option<PolicySpec>,
}

impl IoBalanceConfig {
    /// Whether no `io_balance` feature was given.
    pub fn is_empty(&self) -> bool {
        self.default_leg.is_none()
            && self.policy.is_none()
            && self.weights.iter().all(Option::is_none)
    }

    /// The default leg, if given.
    pub fn default_leg(&self) -> Option<LegRef> {
        self.default_leg
    }

    /// The weight given for `leg`, if any.
    pub fn weight(&self, leg: usize) -> Option<u16> {
        self.weights
            .get(leg)
            .copied()
            .flatten()
            .map(|setting| setting.weight)
    }

    /// The policy selected by the features, if any.
    pub fn policy(&self) -> Option<PolicySpec> {
        self.policy
    }

    /// Applies one command. `show` and `reset_stats` are ignored (the
    /// table parser rejects them before this).
    pub fn apply(&mut self, command: &Command) {
        match *command {
            Command::SetPolicy(policy) => self.policy = Some(policy),
            Command::SetDefaultLeg(leg) => self.default_leg = Some(leg),
            Command::SetWeight { leg, weight } => {
                if let Some(slot) = self.weights.get_mut(leg.index()) {
                    *slot = Some(LegWeight { leg, weight });
                }
                self.policy = Some(PolicySpec::Weighted);
            }
            Command::Show | Command::ResetStats => {}
        }
    }

    fn has_weights(&self) -> bool {
        self.weights.iter().any(Option::is_some)
    }

    fn prints_policy(&self) -> Option<PolicySpec> {
        match self.policy {
            Some(PolicySpec::Weighted) if self.has_weights() => None,
            policy => policy,
        }
    }

    /// Number of feature words [`IoBalanceConfig::write_words`] writes.
    pub fn word_count(&self) -> u32 {
        let default_words = if self.default_leg.is_some() { 3 } else { 0 };
        let weight_count = self.weights.iter().filter(|slot| slot.is_some()).count();
        // At most MAX_LEGS weights: no overflow.
        let weight_words = u32::try_from(weight_count).unwrap_or(0).saturating_mul(4);
        let policy_words = self
            .prints_policy()
            .map_or(0, |policy| policy.word_count().saturating_add(1));
        weight_words
            .saturating_add(default_words)
            .saturating_add(policy_words)
    }

    /// Writes the canonical feature words, each preceded by a space (so the
    /// output can follow the feature count directly). Legs given by name are
    /// written as `leg_names[index]`.
    pub fn write_words(&self, out: &mut dyn fmt::Write, leg_names: &[&str]) -> fmt::Result {
        if let Some(leg) = self.default_leg {
            out.write_str(" io_balance ")?;
            Command::SetDefaultLeg(leg).write_words(out, leg_names)?;
        }
        for setting in self.weights.iter().flatten() {
            out.write_str(" io_balance ")?;
            Command::SetWeight {
                leg: setting.leg,
                weight: setting.weight,
            }
            .write_words(out, leg_names)?;
        }
        if let Some(policy) = self.prints_policy() {
            out.write_str(" io_balance ")?;
            policy.write_words(out)?;
        }
        Ok(())
    }
}

/// The table's feature words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Features {
    /// `handle_errors`: fail legs on I/O errors instead of ignoring them.
    pub handle_errors: bool,
    /// `keep_log`: keep using a failed log device's last state (requires
    /// `handle_errors`).
    pub keep_log: bool,
    /// Read-balancing settings from `io_balance` features.
    pub io_balance: IoBalanceConfig,
    /// Write-mostly legs and the write-behind bound (`write_mostly <leg>`,
    /// `max_write_behind <sectors>`).
    pub write_behind: WriteBehindConfig,
}

impl Features {
    /// The feature count dm prints: one per flag plus every `io_balance`
    /// word.
    pub fn word_count(&self) -> u32 {
        u32::from(self.handle_errors)
            .saturating_add(u32::from(self.keep_log))
            .saturating_add(self.io_balance.word_count())
            .saturating_add(self.write_behind.word_count())
    }
}

/// A parsed constructor line. Borrows the device words from the arguments.
///
/// Two tables are equal when they describe the same mirror: the raw
/// `log_args` words are not compared (`core 1 0016` equals `core 1 16`), so
/// `parse(format(table)) == table`.
// INVARIANT: `MIN_LEGS <= nr_legs <= MAX_LEGS`; `legs[..nr_legs]` are the
// legs in table order; entries past `nr_legs` are default values.
#[derive(Clone, Copy, Debug)]
pub struct MirrorTable<'a> {
    /// The dirty log.
    pub log: LogSpec<'a>,
    /// The log's arguments exactly as given (after `<#log_args>`), e.g. to
    /// hand to `dm_dirty_log_create()`.
    pub log_args: &'a [&'a str],
    legs: [LegSpec<'a>; MAX_LEGS],
    nr_legs: u8,
    /// Features.
    pub features: Features,
}

impl PartialEq for MirrorTable<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.log == other.log && self.legs() == other.legs() && self.features == other.features
    }
}

impl Eq for MirrorTable<'_> {}

/// Why a constructor line was rejected.
///
/// `Display` gives the most specific text (dm-log's `DMWARN` wording for
/// log errors); [`TableError::ti_error`] gives what dm-raid1 puts in
/// `ti->error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError<'a> {
    /// Fewer than two words, or `<#log_args>` larger than what follows.
    InsufficientLogArgs,
    /// `<#log_args>` is not a decimal number.
    InvalidLogArgCount(&'a str),
    /// A log type other than `core` or `disk`.
    UnknownLogType(&'a str),
    /// `core` with other than 1 or 2 arguments.
    WrongCoreLogArgCount,
    /// `disk` with other than 2 or 3 arguments.
    WrongDiskLogArgCount,
    /// A log sync argument other than `sync` or `nosync`.
    InvalidSyncArg(&'a str),
    /// A region size that is not a number, below 2, not a power of two or
    /// larger than the target.
    InvalidRegionSize(&'a str),
    /// More than `u32::MAX` regions.
    TooManyRegions,
    /// `<#mirrors>` missing, not a number, or outside 2..=9.
    InvalidMirrorCount,
    /// Fewer than `2 * #mirrors` words after `<#mirrors>`.
    TooFewMirrorArgs,
    /// A leg offset that is not a decimal `u64`.
    InvalidOffset(&'a str),
    /// `<#features>` is not a decimal number.
    InvalidFeatureCount(&'a str),
    /// `<#features>` larger than the number of remaining words.
    NotEnoughFeatureArgs,
    /// An unknown feature word.
    UnknownFeature(&'a str),
    /// A malformed `io_balance` feature.
    IoBalance(MessageError<'a>),
    /// `keep_log` without `handle_errors`.
    KeepLogWithoutHandleErrors,
    /// A malformed or impossible `write_mostly`/`max_write_behind` feature.
    WriteBehind(WriteMostlyError<'a>),
    /// Words left after the features.
    TooManyArgs,
}

impl TableError<'_> {
    /// The text dm-raid1 would put in `ti->error` (log constructor errors
    /// all become `"Error creating mirror dirty log"` there, as dm-log only
    /// logs the details).
    pub fn ti_error(&self) -> &'static CStr {
        match self {
            TableError::InsufficientLogArgs => c"Insufficient mirror log arguments",
            TableError::InvalidLogArgCount(_) => c"Invalid mirror log argument count",
            TableError::UnknownLogType(_)
            | TableError::WrongCoreLogArgCount
            | TableError::WrongDiskLogArgCount
            | TableError::InvalidSyncArg(_)
            | TableError::InvalidRegionSize(_)
            | TableError::TooManyRegions => c"Error creating mirror dirty log",
            TableError::InvalidMirrorCount => c"Invalid number of mirrors",
            TableError::TooFewMirrorArgs => c"Too few mirror arguments",
            TableError::InvalidOffset(_) => c"Invalid offset",
            TableError::InvalidFeatureCount(_) => c"Invalid number of features",
            TableError::NotEnoughFeatureArgs => c"Not enough arguments to support feature count",
            TableError::UnknownFeature(_) => c"Unrecognised feature requested",
            TableError::IoBalance(_) => c"Invalid io_balance feature",
            TableError::KeepLogWithoutHandleErrors => {
                c"keep_log feature requires the handle_errors feature"
            }
            TableError::WriteBehind(_) => c"Invalid write_mostly or max_write_behind feature",
            TableError::TooManyArgs => c"Too many mirror arguments",
        }
    }

    /// Whether dm-log (not dm-raid1) reports this error; the kernel should
    /// log the `Display` text as a warning in addition to setting
    /// `ti->error`.
    pub fn is_log_error(&self) -> bool {
        matches!(
            self,
            TableError::UnknownLogType(_)
                | TableError::WrongCoreLogArgCount
                | TableError::WrongDiskLogArgCount
                | TableError::InvalidSyncArg(_)
                | TableError::InvalidRegionSize(_)
                | TableError::TooManyRegions
        )
    }
}

impl fmt::Display for TableError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::UnknownLogType(name) => {
                write!(f, "Unsupported mirror log type \"{name}\" (core or disk)")
            }
            TableError::WrongCoreLogArgCount => {
                f.write_str("wrong number of arguments to dirty region log")
            }
            TableError::WrongDiskLogArgCount => {
                f.write_str("wrong number of arguments to disk dirty region log")
            }
            TableError::InvalidSyncArg(word) => {
                write!(f, "unrecognised sync argument to dirty region log: {word}")
            }
            TableError::InvalidRegionSize(word) => write!(f, "invalid region size {word}"),
            TableError::TooManyRegions => write!(f, "region count exceeds limit of {}", u32::MAX),
            TableError::IoBalance(inner) => write!(f, "Invalid io_balance feature: {inner}"),
            TableError::WriteBehind(inner) => write!(f, "Invalid write-behind feature: {inner}"),
            other => f.write_str(other.ti_error().to_str().unwrap_or("Invalid mirror table")),
        }
    }
}

/// Number of regions of `region_size` sectors (a power of two) needed to
/// cover `target_len` sectors, rounded up; `None` if `region_size` is not a
/// power of two.
pub fn region_count(target_len: u64, region_size: u32) -> Option<u64> {
    if !region_size.is_power_of_two() {
        return None;
    }
    let shift = region_size.trailing_zeros();
    let mask = u64::from(region_size).wrapping_sub(1);
    let whole = target_len.checked_shr(shift).unwrap_or(0);
    Some(whole.saturating_add(u64::from(target_len & mask != 0)))
}

/// dm-log's `_check_region_size()`.
fn region_size_is_valid(region_size: u32, target_len: u64) -> bool {
    region_size >= 2 && u64::from(region_size) <= target_len && region_size.is_power_of_two()
}

/// Parses `region_size [sync|nosync]` like dm-log's `create_log_context()`.
fn parse_region_log_params<'a>(
    args: &[&'a str],
    target_len: u64,
) -> Result<RegionLogParams, TableError<'a>> {
    let sync = match args.get(1) {
        None => SyncMode::Default,
        Some(&"sync") => SyncMode::Sync,
        Some(&"nosync") => SyncMode::NoSync,
        Some(other) => return Err(TableError::InvalidSyncArg(other)),
    };
    let size_word = args.first().copied().unwrap_or("");
    let region_size = parse_u32(size_word)
        .filter(|size| region_size_is_valid(*size, target_len))
        .ok_or(TableError::InvalidRegionSize(size_word))?;
    match region_count(target_len, region_size) {
        Some(count) if count <= u64::from(u32::MAX) => Ok(RegionLogParams { region_size, sync }),
        _ => Err(TableError::TooManyRegions),
    }
}

/// Parses `<log_type> <#log_args> <log_args>...`; returns the log, its
/// arguments and the number of words used.
fn parse_log<'a>(
    args: &'a [&'a str],
    target_len: u64,
) -> Result<(LogSpec<'a>, &'a [&'a str], usize), TableError<'a>> {
    let (type_name, count_word) = match args {
        [type_name, count_word, ..] => (*type_name, *count_word),
        _ => return Err(TableError::InsufficientLogArgs),
    };
    let param_count = parse_u32(count_word).ok_or(TableError::InvalidLogArgCount(count_word))?;
    let param_count = usize::try_from(param_count).map_err(|_| TableError::InsufficientLogArgs)?;
    let log_args = args
        .get(2..)
        .and_then(|rest| rest.get(..param_count))
        .ok_or(TableError::InsufficientLogArgs)?;
    let log = match type_name {
        "core" => {
            if !(1..=2).contains(&log_args.len()) {
                return Err(TableError::WrongCoreLogArgCount);
            }
            LogSpec::Core(parse_region_log_params(log_args, target_len)?)
        }
        "disk" => match log_args {
            [device, rest @ ..] if (1..=2).contains(&rest.len()) => LogSpec::Disk {
                device,
                params: parse_region_log_params(rest, target_len)?,
            },
            _ => return Err(TableError::WrongDiskLogArgCount),
        },
        other => return Err(TableError::UnknownLogType(other)),
    };
    Ok((log, log_args, param_count.saturating_add(2)))
}

/// Parses `[<#features> <feature>...]`; returns the features and the number
/// of words used.
fn parse_features<'a>(
    args: &[&'a str],
    leg_names: &[&str],
) -> Result<(Features, usize), TableError<'a>> {
    let mut features = Features::default();
    let Some((count_word, rest)) = args.split_first() else {
        return Ok((features, 0));
    };
    let count = parse_u32(count_word).ok_or(TableError::InvalidFeatureCount(count_word))?;
    let window = usize::try_from(count)
        .ok()
        .and_then(|count| rest.get(..count))
        .ok_or(TableError::NotEnoughFeatureArgs)?;
    let mut pos = 0;
    while let Some((word, after)) = window.get(pos..).and_then(<[&str]>::split_first) {
        pos = pos.saturating_add(1);
        match *word {
            "handle_errors" => features.handle_errors = true,
            "keep_log" => features.keep_log = true,
            IO_BALANCE => {
                let (command, used) = parse_io_balance_words(after, leg_names, Source::Table)
                    .map_err(TableError::IoBalance)?;
                features.io_balance.apply(&command);
                pos = pos.saturating_add(used);
            }
            WRITE_MOSTLY | MAX_WRITE_BEHIND => {
                let words = window.get(pos.saturating_sub(1)..).unwrap_or(&[]);
                let parsed = parse_write_behind_words(words, leg_names, true)
                    .ok_or(TableError::UnknownFeature(word))?;
                let (command, used) = parsed.map_err(TableError::WriteBehind)?;
                let leg_word = after.first().copied().unwrap_or(word);
                apply_table_feature(&mut features.write_behind, &command, leg_word)
                    .map_err(TableError::WriteBehind)?;
                pos = pos.saturating_add(used.saturating_sub(1));
            }
            other => return Err(TableError::UnknownFeature(other)),
        }
    }
    if features.keep_log && !features.handle_errors {
        return Err(TableError::KeepLogWithoutHandleErrors);
    }
    Ok((features, window.len().saturating_add(1)))
}

impl<'a> MirrorTable<'a> {
    /// Parses a constructor line (`args` as dm splits it) for a target of
    /// `target_len` sectors.
    pub fn parse(args: &'a [&'a str], target_len: u64) -> Result<MirrorTable<'a>, TableError<'a>> {
        let (log, log_args, used) = parse_log(args, target_len)?;
        let rest = args.get(used..).unwrap_or(&[]);

        let (count_word, rest) = rest.split_first().ok_or(TableError::InvalidMirrorCount)?;
        let nr_legs = parse_u32(count_word)
            .and_then(|count| usize::try_from(count).ok())
            .filter(|count| (MIN_LEGS..=MAX_LEGS).contains(count))
            .ok_or(TableError::InvalidMirrorCount)?;
        // nr_legs <= MAX_LEGS: no overflow.
        let leg_words = rest
            .get(..nr_legs.saturating_mul(2))
            .ok_or(TableError::TooFewMirrorArgs)?;

        let mut legs = [LegSpec::default(); MAX_LEGS];
        let mut leg_names = [""; MAX_LEGS];
        // Indexing by pair rather than `chunks_exact(2)`: the latter's zip
        // specialisation divides by the chunk size, a panic path that objtool
        // reports as falling through in the kernel build.
        for (i, (slot, name)) in legs
            .iter_mut()
            .zip(leg_names.iter_mut())
            .take(nr_legs)
            .enumerate()
        {
            let first = i.saturating_mul(2);
            let (device, offset_word) =
                match (leg_words.get(first), leg_words.get(first.saturating_add(1))) {
                    (Some(device), Some(offset_word)) => (*device, *offset_word),
                    _ => return Err(TableError::TooFewMirrorArgs),
                };
            let offset = parse_u64(offset_word).ok_or(TableError::InvalidOffset(offset_word))?;
            *slot = LegSpec { device, offset };
            *name = device;
        }

        let rest = rest.get(leg_words.len()..).unwrap_or(&[]);
        let (features, used) = parse_features(rest, leg_names.get(..nr_legs).unwrap_or(&[]))?;
        if rest.len() > used {
            return Err(TableError::TooManyArgs);
        }
        let default_leg = features
            .io_balance
            .default_leg()
            .map_or(0, |leg| leg.index());
        features
            .write_behind
            .check(nr_legs, default_leg)
            .map_err(TableError::WriteBehind)?;

        Ok(MirrorTable {
            log,
            log_args,
            legs,
            nr_legs: u8::try_from(nr_legs).unwrap_or(0),
            features,
        })
    }

    /// Builds a table from its parts, e.g. to print status from what the
    /// kernel kept; `None` unless `MIN_LEGS <= legs.len() <= MAX_LEGS`.
    pub fn new(
        log: LogSpec<'a>,
        legs: &[LegSpec<'a>],
        features: Features,
    ) -> Option<MirrorTable<'a>> {
        if !(MIN_LEGS..=MAX_LEGS).contains(&legs.len()) {
            return None;
        }
        let mut all = [LegSpec::default(); MAX_LEGS];
        for (slot, leg) in all.iter_mut().zip(legs) {
            *slot = *leg;
        }
        Some(MirrorTable {
            log,
            log_args: &[],
            legs: all,
            nr_legs: u8::try_from(legs.len()).ok()?,
            features,
        })
    }

    /// The legs in table order.
    pub fn legs(&self) -> &[LegSpec<'a>] {
        self.legs.get(..self.nr_legs()).unwrap_or(&[])
    }

    /// Number of legs.
    pub fn nr_legs(&self) -> usize {
        usize::from(self.nr_legs)
    }

    /// Number of regions for a target of `target_len` sectors.
    pub fn region_count(&self, target_len: u64) -> u64 {
        region_count(target_len, self.log.params().region_size).unwrap_or(0)
    }
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::needless_range_loop,
    clippy::type_complexity
)]
mod tests {
    use super::super::io_balance::AdaptiveParams;
    use super::super::legs::LegSet;
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    const LEN: u64 = 1 << 20;

    fn words(line: &str) -> Vec<&str> {
        line.split_whitespace().collect()
    }

    /// Parses `line`, leaking it so the borrowed result can outlive it.
    fn parse(line: &str) -> Result<MirrorTable<'static>, TableError<'static>> {
        let line: &'static str = String::from(line).leak();
        let words: &'static [&'static str] = words(line).leak();
        MirrorTable::parse(words, LEN)
    }

    fn format(table: &MirrorTable<'_>) -> String {
        let mut out = String::new();
        super::super::status::write_table(&mut out, table).unwrap();
        out
    }

    #[test]
    fn write_behind_features_parse_print_back_and_count_words() {
        let line = "core 1 1024 3 7:0 0 7:1 0 7:2 0 7 handle_errors write_mostly 7:2 \
                    max_write_behind 8192 write_mostly 1";
        let table = parse(line).unwrap();
        let wb = table.features.write_behind;
        assert_eq!(wb.write_mostly(), LegSet::EMPTY.with(1).with(2));
        assert_eq!(wb.max_write_behind(), 8192);
        assert!(table.features.handle_errors);
        assert_eq!(table.features.word_count(), 7);
        // Printed in leg order as given, the bound last; reparses equal.
        let out = format(&table);
        assert_eq!(
            out,
            "core 1 1024 3 7:0 0 7:1 0 7:2 0 7 handle_errors write_mostly 1 \
             write_mostly 7:2 max_write_behind 8192"
        );
        assert_eq!(parse(&out).unwrap(), table);
        // Without the features nothing changes in the table line.
        let plain = parse("core 1 1024 2 7:0 0 7:1 0").unwrap();
        assert!(plain.features.write_behind.is_empty());
        assert_eq!(format(&plain), "core 1 1024 2 7:0 0 7:1 0");
    }

    #[test]
    fn refuses_impossible_write_behind_features() {
        use super::super::write_mostly::WriteMostlyError as W;
        let cases: &[(&str, TableError<'static>)] = &[
            (
                "2 write_mostly 0",
                TableError::WriteBehind(W::DefaultLeg(0)),
            ),
            (
                "4 write_mostly 1 write_mostly 0",
                TableError::WriteBehind(W::AllLegs),
            ),
            (
                "5 io_balance default 1 write_mostly 1",
                TableError::WriteBehind(W::DefaultLeg(1)),
            ),
            (
                "4 write_mostly 1 write_mostly 1",
                TableError::WriteBehind(W::DuplicateLeg("1")),
            ),
            (
                "2 write_mostly 7:9",
                TableError::WriteBehind(W::UnknownLeg("7:9")),
            ),
            ("1 write_mostly", TableError::WriteBehind(W::MissingLeg)),
            (
                "2 max_write_behind 524289",
                TableError::WriteBehind(W::OutOfRange(524_289)),
            ),
            (
                "4 max_write_behind 1 max_write_behind 2",
                TableError::WriteBehind(W::DuplicateBound),
            ),
            (
                "2 max_write_behind x",
                TableError::WriteBehind(W::InvalidNumber("x")),
            ),
        ];
        for (features, expected) in cases {
            let line = std::format!("core 1 1024 2 7:0 0 7:1 0 {features}");
            assert_eq!(parse(&line), Err(*expected), "{line}");
        }
        // Every leg write-mostly (after moving the default) is refused too.
        let line = "core 1 1024 2 7:0 0 7:1 0 7 io_balance default 1 write_mostly 0 write_mostly 1";
        assert_eq!(parse(line), Err(TableError::WriteBehind(W::AllLegs)));
        assert_eq!(
            TableError::WriteBehind(W::AllLegs).ti_error(),
            c"Invalid write_mostly or max_write_behind feature"
        );
    }

    #[test]
    fn parses_core_log_table() {
        let table = parse("core 1 1024 2 7:0 0 7:1 0 1 handle_errors").unwrap();
        assert_eq!(
            table.log,
            LogSpec::Core(RegionLogParams {
                region_size: 1024,
                sync: SyncMode::Default
            })
        );
        assert_eq!(table.log_args, ["1024"]);
        assert_eq!(
            table.legs(),
            [
                LegSpec {
                    device: "7:0",
                    offset: 0
                },
                LegSpec {
                    device: "7:1",
                    offset: 0
                }
            ]
        );
        assert!(table.features.handle_errors && !table.features.keep_log);
        assert!(table.features.io_balance.is_empty());
        assert_eq!(table.region_count(LEN), 1024);
    }

    #[test]
    fn parses_disk_log_and_nosync() {
        let table =
            parse("disk 3 253:2 512 nosync 3 8:16 0 8:32 2048 8:48 18446744073709551615").unwrap();
        assert_eq!(
            table.log,
            LogSpec::Disk {
                device: "253:2",
                params: RegionLogParams {
                    region_size: 512,
                    sync: SyncMode::NoSync
                }
            }
        );
        assert_eq!(table.nr_legs(), 3);
        assert_eq!(table.legs()[2].offset, u64::MAX);
        assert_eq!(table.features, Features::default());
    }

    #[test]
    fn parses_io_balance_features() {
        let table = parse(
            "core 2 1024 sync 3 /dev/a 0 /dev/b 0 /dev/c 0 \
             12 handle_errors io_balance default /dev/b io_balance weight 2 5 io_balance round_robin ios 8",
        )
        .unwrap();
        let io = table.features.io_balance;
        assert_eq!(io.default_leg(), LegRef::by_name(1));
        assert_eq!(io.weight(2), Some(5));
        assert_eq!(io.weight(0), None);
        assert_eq!(io.policy(), Some(PolicySpec::RoundRobin { ios: 8 }));
        assert_eq!(table.features.word_count(), 12);
    }

    #[test]
    fn adaptive_params_end_at_next_feature() {
        let table = parse("core 1 1024 2 a 0 b 0 5 io_balance adaptive tolerance 10 handle_errors")
            .unwrap();
        assert!(table.features.handle_errors);
        assert_eq!(
            table.features.io_balance.policy(),
            Some(PolicySpec::Adaptive(AdaptiveParams {
                tolerance_pct: Some(10),
                probe_ms: None
            }))
        );
    }

    #[test]
    fn canonical_round_trips() {
        for line in [
            "core 1 1024 2 7:0 0 7:1 0",
            "core 1 1024 2 7:0 0 7:1 0 1 handle_errors",
            "core 2 2 nosync 2 7:0 0 7:1 0 2 handle_errors keep_log",
            "core 2 1048576 sync 9 a 0 b 1 c 2 d 3 e 4 f 5 g 6 h 7 i 8",
            "disk 2 253:2 1024 2 7:0 0 7:1 0",
            "disk 3 253:2 1024 sync 2 7:0 10 7:1 20 1 handle_errors",
            "core 1 1024 2 7:0 0 7:1 0 4 io_balance round_robin ios 16",
            "core 1 1024 2 7:0 0 7:1 0 5 handle_errors io_balance round_robin ios 0",
            "core 1 1024 2 7:0 0 7:1 0 3 io_balance default 7:1",
            "core 1 1024 2 7:0 0 7:1 0 3 io_balance default 1",
            "core 1 1024 2 7:0 0 7:1 0 8 io_balance weight 7:0 3 io_balance weight 1 0",
            "core 1 1024 2 7:0 0 7:1 0 2 io_balance weighted",
            "core 1 1024 2 7:0 0 7:1 0 2 io_balance adaptive",
            "core 1 1024 2 7:0 0 7:1 0 6 io_balance adaptive tolerance 0 probe_ms 0",
            "core 1 1024 2 7:0 0 7:1 0 4 io_balance adaptive probe_ms 250",
            "core 1 1024 2 7:0 0 7:1 0 8 io_balance weight 0 2 io_balance round_robin ios 3",
            "core 1 1024 3 7:0 0 7:1 0 7:2 0 11 handle_errors keep_log io_balance default 7:2 io_balance weight 7:1 9 io_balance adaptive",
        ] {
            let table = parse(line).unwrap();
            assert_eq!(format(&table), line, "{line}");
            assert_eq!(parse(&format(&table)).unwrap(), table);
        }
    }

    #[test]
    fn non_canonical_input_formats_canonically() {
        for (line, canonical) in [
            ("core 01 001024 2 7:0 00 7:1 0", "core 1 1024 2 7:0 0 7:1 0"),
            (
                "core 1 1024 2 7:0 0 7:1 0 2 handle_errors handle_errors",
                "core 1 1024 2 7:0 0 7:1 0 1 handle_errors",
            ),
            (
                "core 1 1024 2 7:0 0 7:1 0 2 keep_log handle_errors",
                "core 1 1024 2 7:0 0 7:1 0 2 handle_errors keep_log",
            ),
            ("core 1 1024 2 7:0 0 7:1 0 0", "core 1 1024 2 7:0 0 7:1 0"),
            (
                "core 1 1024 2 7:0 0 7:1 0 6 io_balance weight 1 2 io_balance weighted",
                "core 1 1024 2 7:0 0 7:1 0 4 io_balance weight 1 2",
            ),
            (
                "core 1 1024 2 7:0 0 7:1 0 7 io_balance round_robin ios 3 io_balance default 1",
                "core 1 1024 2 7:0 0 7:1 0 7 io_balance default 1 io_balance round_robin ios 3",
            ),
            (
                "core 1 1024 2 7:0 0 7:1 0 8 io_balance round_robin ios 3 io_balance weight 1 2 ",
                "core 1 1024 2 7:0 0 7:1 0 4 io_balance weight 1 2",
            ),
        ] {
            let table = parse(line).unwrap();
            assert_eq!(format(&table), canonical, "{line}");
            assert_eq!(parse(canonical).unwrap(), table, "{line}");
        }
    }

    #[test]
    fn rejects_malformed_tables() {
        use TableError as E;
        let cases: &[(&str, TableError<'_>)] = &[
            ("", E::InsufficientLogArgs),
            ("core", E::InsufficientLogArgs),
            ("core x 1024 2 a 0 b 0", E::InvalidLogArgCount("x")),
            ("core -1 1024 2 a 0 b 0", E::InvalidLogArgCount("-1")),
            ("core 3 1024 2", E::InsufficientLogArgs),
            (
                "core 99999999999 1024",
                E::InvalidLogArgCount("99999999999"),
            ),
            ("mem 1 1024 2 a 0 b 0", E::UnknownLogType("mem")),
            ("userspace 1 x 2 a 0 b 0", E::UnknownLogType("userspace")),
            ("core 0 2 a 0 b 0", E::WrongCoreLogArgCount),
            ("core 3 1024 sync x 2 a 0 b 0", E::WrongCoreLogArgCount),
            ("disk 1 1024 2 a 0 b 0", E::WrongDiskLogArgCount),
            ("disk 4 l 1024 sync x 2 a 0 b 0", E::WrongDiskLogArgCount),
            ("core 2 1024 async 2 a 0 b 0", E::InvalidSyncArg("async")),
            ("core 2 x SYNC 2 a 0 b 0", E::InvalidSyncArg("SYNC")),
            (
                "disk 3 l 1024 nosync_ 2 a 0 b 0",
                E::InvalidSyncArg("nosync_"),
            ),
            ("core 1 1000 2 a 0 b 0", E::InvalidRegionSize("1000")),
            ("core 1 1 2 a 0 b 0", E::InvalidRegionSize("1")),
            ("core 1 0 2 a 0 b 0", E::InvalidRegionSize("0")),
            ("core 1 0x400 2 a 0 b 0", E::InvalidRegionSize("0x400")),
            ("core 1 2097152 2 a 0 b 0", E::InvalidRegionSize("2097152")),
            (
                "core 1 4294967296 2 a 0 b 0",
                E::InvalidRegionSize("4294967296"),
            ),
            ("disk 2 l 3 2 a 0 b 0", E::InvalidRegionSize("3")),
            ("core 1 1024", E::InvalidMirrorCount),
            ("core 1 1024 1 a 0", E::InvalidMirrorCount),
            ("core 1 1024 10 a 0 b 0", E::InvalidMirrorCount),
            ("core 1 1024 two a 0 b 0", E::InvalidMirrorCount),
            ("core 1 1024 +2 a 0 b 0", E::InvalidMirrorCount),
            ("core 1 1024 2 a 0 b", E::TooFewMirrorArgs),
            ("core 1 1024 3 a 0 b 0", E::TooFewMirrorArgs),
            ("core 1 1024 2 a -1 b 0", E::InvalidOffset("-1")),
            ("core 1 1024 2 a 0 b 0x10", E::InvalidOffset("0x10")),
            (
                "core 1 1024 2 a 0 b 18446744073709551616",
                E::InvalidOffset("18446744073709551616"),
            ),
            ("core 1 1024 2 a 0 b 1k", E::InvalidOffset("1k")),
            ("core 1 1024 2 a 0 b 0 x", E::InvalidFeatureCount("x")),
            (
                "core 1 1024 2 a 0 b 0 -1 handle_errors",
                E::InvalidFeatureCount("-1"),
            ),
            (
                "core 1 1024 2 a 0 b 0 2 handle_errors",
                E::NotEnoughFeatureArgs,
            ),
            ("core 1 1024 2 a 0 b 0 1", E::NotEnoughFeatureArgs),
            (
                "core 1 1024 2 a 0 b 0 1 handle_error",
                E::UnknownFeature("handle_error"),
            ),
            (
                "core 1 1024 2 a 0 b 0 1 HANDLE_ERRORS",
                E::UnknownFeature("HANDLE_ERRORS"),
            ),
            (
                "core 1 1024 2 a 0 b 0 1 keep_log",
                E::KeepLogWithoutHandleErrors,
            ),
            ("core 1 1024 2 a 0 b 0 1 handle_errors x", E::TooManyArgs),
            ("core 1 1024 2 a 0 b 0 0 handle_errors", E::TooManyArgs),
            (
                "core 1 1024 2 a 0 b 0 1 io_balance",
                E::IoBalance(MessageError::MissingCommand),
            ),
            (
                "core 1 1024 2 a 0 b 0 3 io_balance round_robin ios 8",
                E::IoBalance(MessageError::Missing {
                    command: "round_robin",
                    expected: "ios <N>",
                }),
            ),
            (
                "core 1 1024 2 a 0 b 0 3 io_balance default c",
                E::IoBalance(MessageError::UnknownLeg("c")),
            ),
            (
                "core 1 1024 2 a 0 b 0 3 io_balance default 2",
                E::IoBalance(MessageError::UnknownLeg("2")),
            ),
            (
                "core 1 1024 2 a 0 b 0 2 io_balance show",
                E::IoBalance(MessageError::NotAllowedInTable("show")),
            ),
            (
                "core 1 1024 2 a 0 b 0 2 io_balance reset_stats",
                E::IoBalance(MessageError::NotAllowedInTable("reset_stats")),
            ),
            (
                "core 1 1024 2 a 0 b 0 4 io_balance weight 0 1001",
                E::IoBalance(MessageError::OutOfRange {
                    parameter: "weight",
                    value: 1001,
                    max: 1000,
                }),
            ),
            (
                "core 1 1024 2 a 0 b 0 3 io_balance adaptive tolerance",
                E::IoBalance(MessageError::Missing {
                    command: "adaptive",
                    expected: "tolerance <percent>",
                }),
            ),
            (
                "core 1 1024 2 a 0 b 0 3 io_balance adaptive bogus",
                E::UnknownFeature("bogus"),
            ),
            (
                "core 1 1024 2 a 0 b 0 2 io_balance round_robin ios 8",
                E::IoBalance(MessageError::Missing {
                    command: "round_robin",
                    expected: "ios",
                }),
            ),
        ];
        assert!(cases.len() >= 20);
        for (line, expected) in cases {
            assert_eq!(parse(line), Err(*expected), "{line}");
        }
    }

    #[test]
    fn rejects_too_many_regions() {
        let args = ["core", "1", "2", "2", "a", "0", "b", "0"];
        assert_eq!(
            MirrorTable::parse(&args, u64::MAX),
            Err(TableError::TooManyRegions)
        );
        assert!(MirrorTable::parse(&args, 2 * u64::from(u32::MAX)).is_ok());
        assert_eq!(
            MirrorTable::parse(&args, 2 * u64::from(u32::MAX) + 1),
            Err(TableError::TooManyRegions)
        );
    }

    #[test]
    fn region_size_up_to_target_length() {
        let args = ["core", "1", "1024", "2", "a", "0", "b", "0"];
        assert!(MirrorTable::parse(&args, 1024).is_ok());
        assert_eq!(
            MirrorTable::parse(&args, 1023),
            Err(TableError::InvalidRegionSize("1024"))
        );
        assert_eq!(region_count(1025, 1024), Some(2));
        assert_eq!(region_count(u64::MAX, 2), Some(1 << 63));
        assert_eq!(region_count(10, 3), None);
    }

    #[test]
    fn error_texts_match_dm() {
        let ti = |e: TableError<'_>| String::from(e.ti_error().to_str().unwrap());
        assert_eq!(
            ti(TableError::InvalidMirrorCount),
            "Invalid number of mirrors"
        );
        assert_eq!(ti(TableError::TooManyArgs), "Too many mirror arguments");
        assert_eq!(
            ti(TableError::InvalidFeatureCount("x")),
            "Invalid number of features"
        );
        assert_eq!(
            ti(TableError::NotEnoughFeatureArgs),
            "Not enough arguments to support feature count"
        );
        assert_eq!(
            ti(TableError::UnknownFeature("x")),
            "Unrecognised feature requested"
        );
        assert_eq!(ti(TableError::InvalidOffset("x")), "Invalid offset");
        assert_eq!(
            ti(TableError::InvalidSyncArg("x")),
            "Error creating mirror dirty log"
        );
        assert_eq!(
            std::format!("{}", TableError::InvalidSyncArg("maybe")),
            "unrecognised sync argument to dirty region log: maybe"
        );
        assert_eq!(
            std::format!("{}", TableError::InvalidRegionSize("3")),
            "invalid region size 3"
        );
        assert_eq!(
            std::format!("{}", TableError::KeepLogWithoutHandleErrors),
            "keep_log feature requires the handle_errors feature"
        );
        assert_eq!(
            std::format!("{}", TableError::TooManyRegions),
            "region count exceeds limit of 4294967295"
        );
        assert!(TableError::InvalidSyncArg("x").is_log_error());
        assert!(!TableError::InvalidOffset("x").is_log_error());
        assert!(
            std::format!("{}", TableError::IoBalance(MessageError::MissingCommand))
                .starts_with("Invalid io_balance feature: ")
        );
    }

    #[test]
    fn new_checks_leg_count() {
        let log = LogSpec::Core(RegionLogParams {
            region_size: 8,
            sync: SyncMode::Default,
        });
        let leg = LegSpec {
            device: "7:0",
            offset: 0,
        };
        assert!(MirrorTable::new(log, &[leg], Features::default()).is_none());
        assert!(MirrorTable::new(log, &[leg; 10], Features::default()).is_none());
        let table = MirrorTable::new(log, &[leg; 2], Features::default()).unwrap();
        assert_eq!(format(&table), "core 1 8 2 7:0 0 7:0 0");
    }

    mod properties {
        use super::super::*;
        use super::format;
        use proptest::prelude::*;
        use std::string::String;
        use std::vec::Vec;

        /// A word as dm splits them: not empty, no whitespace.
        fn word() -> impl Strategy<Value = String> {
            let any_word = prop_oneof![
                4 => prop::sample::select(std::vec![
                    "core", "disk", "0", "1", "2", "3", "4", "9", "10", "1024", "3", "sync", "nosync",
                    "handle_errors", "keep_log", "io_balance", "round_robin", "ios", "weighted", "weight",
                    "default", "adaptive", "tolerance", "probe_ms", "show", "7:0", "7:1", "-1", "4294967296",
                    "18446744073709551615", "18446744073709551616",
                ])
                .prop_map(String::from),
                1 => "\\PC{0,8}",
                1 => "[0-9]{1,22}",
            ];
            any_word.prop_filter("dm words have no whitespace", |word| {
                !word.is_empty() && !word.chars().any(char::is_whitespace)
            })
        }

        use super::super::super::io_balance::strategies::setting_command as table_command;

        /// (log, legs, features) for a random valid table; leg device names
        /// are distinct and not all digits.
        fn table_parts() -> impl Strategy<
            Value = (
                bool,
                u32,
                SyncMode,
                Vec<(String, u64)>,
                bool,
                bool,
                Vec<Command>,
            ),
        > {
            (2..=MAX_LEGS)
                .prop_flat_map(|nr_legs| {
                    (
                        any::<bool>(),
                        1u32..=20,
                        prop_oneof![
                            Just(SyncMode::Default),
                            Just(SyncMode::Sync),
                            Just(SyncMode::NoSync)
                        ],
                        proptest::collection::vec(any::<u64>(), nr_legs).prop_map(|offsets| {
                            offsets
                                .into_iter()
                                .enumerate()
                                .map(|(i, offset)| (std::format!("253:{i}"), offset))
                                .collect::<Vec<_>>()
                        }),
                        any::<bool>(),
                        any::<bool>(),
                        proptest::collection::vec(table_command(nr_legs), 0..5),
                    )
                })
                .prop_map(
                    |(disk, shift, sync, legs, handle_errors, keep_log, commands)| {
                        (
                            disk,
                            1u32 << shift,
                            sync,
                            legs,
                            handle_errors,
                            keep_log && handle_errors,
                            commands,
                        )
                    },
                )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn parser_never_panics(words in proptest::collection::vec(word(), 0..24), target_len in any::<u64>()) {
                let words: Vec<&str> = words.iter().map(String::as_str).collect();
                if let Ok(table) = MirrorTable::parse(&words, target_len) {
                    // Anything accepted formats to a table that parses back
                    // to the same thing.
                    let line = format(&table);
                    let again: Vec<&str> = line.split(' ').collect();
                    let reparsed = MirrorTable::parse(&again, target_len).unwrap();
                    prop_assert_eq!(reparsed, table);
                }
            }

            /// Valid lines with one word replaced, removed or inserted.
            #[test]
            fn mutated_lines_never_panic(
                line in prop::sample::select(std::vec![
                    "core 1 1024 2 7:0 0 7:1 0",
                    "disk 3 253:2 1024 sync 3 7:0 0 7:1 0 7:2 0 2 handle_errors keep_log",
                    "core 2 8 nosync 2 7:0 0 7:1 0 10 io_balance default 7:1 io_balance weight 0 3 io_balance weighted",
                    "core 1 1024 2 7:0 0 7:1 0 7 handle_errors io_balance adaptive tolerance 5 probe_ms 9",
                ]),
                position in any::<prop::sample::Index>(),
                replacement in word(),
                how in 0..3,
            ) {
                let mut words: Vec<&str> = line.split(' ').collect();
                let at = position.index(words.len());
                match how {
                    0 => words[at] = &replacement,
                    1 => { words.remove(at); }
                    _ => words.insert(at, &replacement),
                }
                if let Ok(table) = MirrorTable::parse(&words, 1 << 30) {
                    let line = format(&table);
                    let again: Vec<&str> = line.split(' ').collect();
                    let reparsed = MirrorTable::parse(&again, 1 << 30).unwrap();
                    prop_assert_eq!(reparsed, table);
                }
            }

            #[test]
            fn parse_format_round_trip(parts in table_parts()) {
                let (disk, region_size, sync, legs, handle_errors, keep_log, commands) = parts;
                let params = RegionLogParams { region_size, sync };
                let log = if disk { LogSpec::Disk { device: "254:7", params } } else { LogSpec::Core(params) };
                let legs: Vec<LegSpec<'_>> = legs.iter().map(|(device, offset)| LegSpec { device, offset: *offset }).collect();
                let mut features = Features { handle_errors, keep_log, ..Features::default() };
                for command in &commands {
                    features.io_balance.apply(command);
                }
                let table = MirrorTable::new(log, &legs, features).unwrap();
                let line = format(&table);
                let words: Vec<&str> = line.split(' ').collect();
                let parsed = MirrorTable::parse(&words, 1 << 30).unwrap();
                prop_assert_eq!(parsed, table);
                prop_assert_eq!(format(&parsed), line);
            }
        }
    }
}
