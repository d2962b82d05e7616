// SPDX-License-Identifier: GPL-2.0

//! Kernel log lines with the target's prefix, like DMERR.
//!
//! The crate that uses this layer defines its prefix as C's
//! `DM_NAME ": " DM_MSG_PREFIX` would print it, at its root:
//!
//! ```ignore
//! pub(crate) const DM_MSG_PREFIX: &core::ffi::CStr = c"device-mapper: mirror";
//! ```
//!
//! and every line is `<prefix>: <text>`.

/// Prints an error line `<prefix>: <text>` (DMERR).
macro_rules! dm_err {
    ($($arg:tt)*) => {
        $crate::dm::print::emit(
            &::kernel::print::format_strings::ERR,
            $crate::DM_MSG_PREFIX,
            format_args!("{}\n", format_args!($($arg)*)),
        )
    };
}

/// Prints a warning line `<prefix>: <text>` (DMWARN).
macro_rules! dm_warn {
    ($($arg:tt)*) => {
        $crate::dm::print::emit(
            &::kernel::print::format_strings::WARNING,
            $crate::DM_MSG_PREFIX,
            format_args!("{}\n", format_args!($($arg)*)),
        )
    };
}

/// Prints an info line `<prefix>: <text>` (DMINFO).
macro_rules! dm_info {
    ($($arg:tt)*) => {
        $crate::dm::print::emit(
            &::kernel::print::format_strings::INFO,
            $crate::DM_MSG_PREFIX,
            format_args!("{}\n", format_args!($($arg)*)),
        )
    };
}

/// Prints one line with `prefix` at the level of `format`.
pub(crate) fn emit(
    format: &[u8; kernel::print::format_strings::LENGTH],
    prefix: &core::ffi::CStr,
    args: core::fmt::Arguments<'_>,
) {
    // SAFETY: `format` is one of the kernel's fixed format strings and
    // `prefix` is NUL-terminated, which is all `call_printk` requires.
    unsafe { kernel::print::call_printk(format, prefix.to_bytes_with_nul(), args) };
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
