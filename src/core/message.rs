// SPDX-License-Identifier: GPL-2.0

//! `dmsetup message <dev> 0 <words>`: the first word picks the vocabulary.
//!
//! ```text
//! io_balance ...               read balancing (super::io_balance)
//! write_mostly <leg> on|off    write-mostly legs (super::write_mostly)
//! max_write_behind <sectors>   the write-behind bound (super::write_mostly)
//! ```

use core::fmt;

use super::io_balance::{parse_io_balance_words, Command, MessageError, Source, IO_BALANCE};
use super::write_mostly::{parse_write_behind_words, WriteBehindCommand};

/// A parsed message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    /// `io_balance ...`.
    IoBalance(Command),
    /// `write_mostly ...` or `max_write_behind ...`.
    WriteBehind(WriteBehindCommand),
}

impl Message {
    /// Writes the message words back (parsing them gives the same message).
    pub fn write_message(&self, out: &mut dyn fmt::Write, leg_names: &[&str]) -> fmt::Result {
        match self {
            Message::IoBalance(command) => command.write_message(out, leg_names),
            Message::WriteBehind(command) => command.write_message(out, leg_names),
        }
    }
}

/// Parses a complete message: `args` as dm passes them after the sector,
/// `leg_names` the legs' device names in table order.
///
/// A `<leg>` word made only of digits is a leg index; otherwise it must equal
/// one of `leg_names` (the first match wins).
pub fn parse_message<'a>(
    args: &[&'a str],
    leg_names: &[&str],
) -> Result<Message, MessageError<'a>> {
    let (first, rest) = args.split_first().ok_or(MessageError::Empty)?;
    if let Some(parsed) = parse_write_behind_words(args, leg_names, false) {
        let (command, _) = parsed.map_err(MessageError::WriteBehind)?;
        return Ok(Message::WriteBehind(command));
    }
    if *first != IO_BALANCE {
        return Err(MessageError::UnknownMessage(first));
    }
    let (command, used) = parse_io_balance_words(rest, leg_names, Source::Message)?;
    match rest.get(used) {
        Some(extra) => Err(MessageError::TrailingWords(extra)),
        None => Ok(Message::IoBalance(command)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::write_mostly::WriteMostlyError;
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    const NAMES: [&str; 2] = ["253:1", "253:2"];

    fn parse(line: &str) -> Result<Message, MessageError<'_>> {
        let words: Vec<&str> = line.split_whitespace().collect();
        // The words borrow `line`: re-borrow them for the error's lifetime.
        let words: &[&str] = std::boxed::Box::leak(words.into_boxed_slice());
        parse_message(words, &NAMES)
    }

    #[test]
    fn dispatches_on_the_first_word_and_prints_back() {
        for line in [
            "io_balance show",
            "io_balance round_robin ios 8",
            "write_mostly 253:2 on",
            "write_mostly 1 off",
            "max_write_behind 8192",
        ] {
            let message = parse(line).unwrap();
            let mut out = String::new();
            message.write_message(&mut out, &NAMES).unwrap();
            assert_eq!(parse(&out).unwrap(), message, "{line}");
        }
        assert!(matches!(
            parse("write_mostly 1 on"),
            Ok(Message::WriteBehind(_))
        ));
        assert!(matches!(
            parse("io_balance show"),
            Ok(Message::IoBalance(Command::Show))
        ));
    }

    #[test]
    fn refuses_malformed_write_behind_messages() {
        assert_eq!(
            parse("write_mostly 7:9 on"),
            Err(MessageError::WriteBehind(WriteMostlyError::UnknownLeg(
                "7:9"
            )))
        );
        assert_eq!(
            parse("write_mostly 1"),
            Err(MessageError::WriteBehind(WriteMostlyError::ExpectedOnOff(
                None
            )))
        );
        assert_eq!(
            parse("max_write_behind 524289"),
            Err(MessageError::WriteBehind(WriteMostlyError::OutOfRange(
                524_289
            )))
        );
        assert_eq!(
            parse("max_write_behind 8 9"),
            Err(MessageError::WriteBehind(WriteMostlyError::TrailingWords(
                "9"
            )))
        );
        assert_eq!(parse("resync"), Err(MessageError::UnknownMessage("resync")));
    }
}
