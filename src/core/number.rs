// SPDX-License-Identifier: GPL-2.0

//! Strict decimal number parsing for table and message words.
//!
//! dm parses numbers with `sscanf(word, "%u%c", &n, &dummy) == 1`: the word
//! must be one or more decimal digits and nothing else (no sign, no space,
//! no `0x`, no trailing junk). Leading zeros are accepted. Unlike the
//! kernel's `sscanf()`, which silently wraps on overflow, these functions
//! reject values that do not fit.

/// Parses a word made only of ASCII decimal digits into a `u64`.
///
/// Returns `None` for an empty word, any non-digit byte, or overflow.
pub fn parse_u64(word: &str) -> Option<u64> {
    if word.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for byte in word.bytes() {
        if !byte.is_ascii_digit() {
            return None;
        }
        let digit = u64::from(byte.wrapping_sub(b'0'));
        value = value.checked_mul(10)?.checked_add(digit)?;
    }
    Some(value)
}

/// Parses a word made only of ASCII decimal digits into a `u32`.
///
/// Returns `None` for an empty word, any non-digit byte, or overflow.
pub fn parse_u32(word: &str) -> Option<u32> {
    parse_u64(word).and_then(|value| u32::try_from(value).ok())
}

#[cfg(test)]
#[allow(
    clippy::arithmetic_side_effects,
    clippy::needless_range_loop,
    clippy::type_complexity
)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_decimal() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("007"), Some(7));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
    }

    #[test]
    fn rejects_what_sscanf_percent_u_percent_c_rejects() {
        for word in [
            "", "-1", "+1", " 1", "1 ", "0x10", "1a", "1.0", "½", "١", "1_000",
        ] {
            assert_eq!(parse_u64(word), None, "{word:?}");
        }
    }

    #[test]
    fn rejects_overflow() {
        assert_eq!(parse_u64("18446744073709551616"), None);
        assert_eq!(parse_u32("4294967296"), None);
    }
}
