// SPDX-License-Identifier: GPL-2.0

//! Kernel log lines with dm's prefix, `device-mapper: mirror: `, like DMERR.

/// The prefix DMERR/DMWARN/DMINFO print for `DM_MSG_PREFIX "mirror"`.
pub(crate) const PREFIX: &[u8] = b"device-mapper: mirror\0";

/// Prints an error line `device-mapper: mirror: <text>` (DMERR).
macro_rules! dm_err {
    ($($arg:tt)*) => {
        $crate::dm::print::emit(
            &::kernel::print::format_strings::ERR,
            format_args!("{}\n", format_args!($($arg)*)),
        )
    };
}

/// Prints a warning line `device-mapper: mirror: <text>` (DMWARN).
macro_rules! dm_warn {
    ($($arg:tt)*) => {
        $crate::dm::print::emit(
            &::kernel::print::format_strings::WARNING,
            format_args!("{}\n", format_args!($($arg)*)),
        )
    };
}

/// Prints an info line `device-mapper: mirror: <text>` (DMINFO).
macro_rules! dm_info {
    ($($arg:tt)*) => {
        $crate::dm::print::emit(
            &::kernel::print::format_strings::INFO,
            format_args!("{}\n", format_args!($($arg)*)),
        )
    };
}

/// Prints one line with the dm prefix at the level of `format`.
pub(crate) fn emit(
    format: &[u8; kernel::print::format_strings::LENGTH],
    args: core::fmt::Arguments<'_>,
) {
    // SAFETY: `format` is one of the kernel's fixed format strings and `PREFIX`
    // is NUL-terminated, which is all `call_printk` requires.
    unsafe { kernel::print::call_printk(format, PREFIX, args) };
}

/// Prints an error line like [`dm_err!`], rate limited per call site like
/// dm's `DMERR_LIMIT` (for I/O and resync paths); a line left out is
/// counted and the count printed before the next one that is not.
macro_rules! dm_err_limit {
    ($($arg:tt)*) => {
        dm_print_limited!(dm_err, $($arg)*)
    };
}

/// [`dm_warn!`], rate limited like [`dm_err_limit!`] (`DMWARN_LIMIT`).
macro_rules! dm_warn_limit {
    ($($arg:tt)*) => {
        dm_print_limited!(dm_warn, $($arg)*)
    };
}

/// `$print!(...)` behind a rate limit of its own: one per expansion, so
/// one per call site.
macro_rules! dm_print_limited {
    ($print:ident, $($arg:tt)*) => {{
        static LIMIT: $crate::mcore::ratelimit::RateLimit =
            $crate::mcore::ratelimit::RateLimit::new();
        if let Some(missed) = LIMIT.check($crate::dm::now_ns()) {
            if missed > 0 {
                dm_warn!("{} callbacks suppressed", missed);
            }
            $print!($($arg)*);
        }
    }};
}
