// SPDX-License-Identifier: GPL-2.0

//! `dmsetup message <dev> 0 <words>`: the first word picks the vocabulary.
//!
//! ```text
//! io_balance ...      read balancing (super::io_balance)
//! ```

use super::io_balance::{parse_io_balance_words, Command, MessageError, Source, IO_BALANCE};

/// Parses a complete message: `args` as dm passes them after the sector
/// (`io_balance ...`), `leg_names` the legs' device names in table order.
///
/// A `<leg>` word made only of digits is a leg index; otherwise it must equal
/// one of `leg_names` (the first match wins).
pub fn parse_message<'a>(
    args: &[&'a str],
    leg_names: &[&str],
) -> Result<Command, MessageError<'a>> {
    let (first, rest) = args.split_first().ok_or(MessageError::Empty)?;
    if *first != IO_BALANCE {
        return Err(MessageError::UnknownMessage(first));
    }
    let (command, used) = parse_io_balance_words(rest, leg_names, Source::Message)?;
    match rest.get(used) {
        Some(extra) => Err(MessageError::TrailingWords(extra)),
        None => Ok(command),
    }
}
