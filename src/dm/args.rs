// SPDX-License-Identifier: GPL-2.0

//! The argument vectors dm core hands to a constructor or a message.

use core::ffi::CStr;
use kernel::{ffi::c_char, str::CStrExt};

/// Most words a constructor line or message may have; dm-raid1's longest line
/// (disk log, nine legs, every feature) is far below this.
pub(crate) const MAX_ARGS: usize = 64;

/// The words of a table line or message, as `&str`, plus the C vector they
/// came from so that parts of it can be handed to C (a dirty log's arguments).
///
/// # Invariants
///
/// `argv` points to `words.len()` valid, NUL-terminated strings that outlive `'a`,
/// and `words[i]` is the UTF-8 view of `argv[i]`.
pub(crate) struct Args<'a> {
    argv: *mut *mut c_char,
    words: &'a [&'a str],
}

impl<'a> Args<'a> {
    /// Wraps dm's `argc`/`argv`, converting each word into `buf`.
    ///
    /// Fails with `-EINVAL` when there are more than [`MAX_ARGS`] words or one is
    /// not UTF-8 (device paths and numbers always are).
    ///
    /// # Safety
    ///
    /// `argv` must point to `argc` valid NUL-terminated strings that live and do
    /// not change for `'a`.
    pub(crate) unsafe fn from_raw(
        argc: u32,
        argv: *mut *mut c_char,
        buf: &'a mut [&'a str; MAX_ARGS],
    ) -> kernel::error::Result<Self> {
        let argc = argc as usize;
        if argc > MAX_ARGS {
            return Err(kernel::error::code::EINVAL);
        }
        for (i, slot) in buf.iter_mut().enumerate().take(argc) {
            // SAFETY: `i < argc`, and the caller guarantees `argv[..argc]` are
            // valid NUL-terminated strings living for `'a`.
            let word = unsafe { CStr::from_char_ptr(*argv.add(i)) };
            *slot = word.to_str().map_err(|_| kernel::error::code::EINVAL)?;
        }
        let words = buf.get(..argc).ok_or(kernel::error::code::EINVAL)?;
        // INVARIANT: the first `argc` words were converted from `argv` above.
        Ok(Self { argv, words })
    }

    /// The words.
    pub(crate) fn words(&self) -> &'a [&'a str] {
        self.words
    }

    /// The words from `start` to `end`, as another `Args` (for handing to C).
    pub(crate) fn slice(&self, start: usize, end: usize) -> Option<Args<'a>> {
        let words = self.words.get(start..end)?;
        // SAFETY: `start <= end <= words.len()` (checked by `get` above), so the
        // offset stays inside the vector of the invariant.
        let argv = unsafe { self.argv.add(start) };
        // INVARIANT: a sub-range of the same vector and its views.
        Some(Args { argv, words })
    }

    /// The C vector, for `dm_dirty_log_create` and similar.
    pub(crate) fn as_raw(&self) -> (u32, *mut *mut c_char) {
        // A vector of at most MAX_ARGS words always fits.
        (self.words.len() as u32, self.argv)
    }
}

/// Copies `s` into `buf` with a terminating NUL, for C functions that take a
/// path or name.
pub(crate) fn to_c_str<'b>(s: &str, buf: &'b mut [u8]) -> Option<&'b CStr> {
    let bytes = s.as_bytes();
    if bytes.contains(&0) {
        return None;
    }
    let with_nul = buf.get_mut(..=bytes.len())?;
    let (text, nul) = with_nul.split_at_mut(bytes.len());
    text.copy_from_slice(bytes);
    nul.fill(0);
    CStr::from_bytes_with_nul(with_nul).ok()
}
