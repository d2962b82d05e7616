// SPDX-License-Identifier: GPL-2.0

//! String module parameters.
//!
//! The kernel crate's `module!` parameters are integers, read-only after
//! load. A string parameter that sysfs can change is C plumbing:
//! `DMMR_STRING_PARAM(<name>, <description>)` in helpers.c declares it,
//! keeps its value and serialises access with the module's parameter lock;
//! [`dm_string_param!`] defines the Rust half, the reader and the check C
//! calls before it stores a new value. A refused value leaves the old one
//! in place and fails the load or the sysfs write with the check's error.

use super::bindings;
use kernel::{error::code::EINVAL, ffi::c_char, ffi::c_int, prelude::*};

/// Room for a value, NUL included (helpers.c's buffer).
const STRING_PARAM_MAX: usize = bindings::DMMR_STRING_PARAM_MAX as usize;

/// The longest value a string parameter holds, in bytes.
pub(crate) const STRING_PARAM_MAX_LEN: usize = STRING_PARAM_MAX - 1;

/// A copy of a string parameter's value.
pub(crate) struct ParamString {
    buf: [u8; STRING_PARAM_MAX],
}

impl ParamString {
    /// Copies the value with `read`, which writes a NUL-terminated string
    /// of at most the given size into the buffer.
    pub(crate) fn read(read: impl FnOnce(*mut c_char, usize)) -> Self {
        let mut value = Self {
            buf: [0; STRING_PARAM_MAX],
        };
        read(value.buf.as_mut_ptr().cast(), value.buf.len());
        value
    }

    /// The value, up to its NUL; empty if it is not UTF-8 (the check let
    /// no such value in).
    pub(crate) fn as_str(&self) -> &str {
        let len = self.buf.iter().position(|&b| b == 0).unwrap_or(0);
        self.buf
            .get(..len)
            .and_then(|bytes| core::str::from_utf8(bytes).ok())
            .unwrap_or("")
    }
}

/// The check C calls for a new value of the parameter `name`: refuses a
/// value that is not UTF-8 or does not fit, then asks `check`.
///
/// # Safety
///
/// `val` is non-null and points to at least `len` initialised bytes that
/// stay readable and unchanged for the duration of the call.
pub(crate) unsafe fn check(
    name: &str,
    val: *const c_char,
    len: usize,
    check: fn(&str) -> Result,
) -> c_int {
    // SAFETY: the caller promises a non-null `val` with `len` initialised,
    // unchanging bytes; `u8` has no alignment requirement, and `len` is a
    // C string's length, far below `isize::MAX`.
    let bytes = unsafe { core::slice::from_raw_parts(val.cast::<u8>(), len) };
    let Ok(text) = core::str::from_utf8(bytes) else {
        dm_err!("{}: value is not UTF-8 text", name);
        return EINVAL.to_errno();
    };
    if len > STRING_PARAM_MAX_LEN {
        dm_err!(
            "{}: value of {} bytes is too long (at most {})",
            name,
            len,
            STRING_PARAM_MAX_LEN
        );
        return EINVAL.to_errno();
    }
    match check(text) {
        Ok(()) => 0,
        Err(err) => err.to_errno(),
    }
}

/// The Rust half of a string module parameter declared in helpers.c with
/// `DMMR_STRING_PARAM(<name>, ...)`, at the crate's root:
///
/// ```ignore
/// dm_string_param!(default_io_balance, mirror::check_default_io_balance);
/// ```
///
/// defines `fn default_io_balance() -> ParamString`, the current value,
/// and the `dmmr_param_check_default_io_balance` C calls before it stores a
/// new one. The check (`fn(&str) -> Result`) runs in process context (at
/// module load, before `init`, or on a write to
/// `/sys/module/<module>/parameters/<name>`) with the parameter lock held;
/// it logs why it refuses a value.
macro_rules! dm_string_param {
    ($name:ident, $check:path) => {
        ::kernel::macros::paste! {
            /// The current value of the module parameter of this name.
            pub(crate) fn $name() -> $crate::dm::param::ParamString {
                extern "C" {
                    fn [<dmmr_param_read_ $name>](buf: *mut ::kernel::ffi::c_char, size: usize);
                }
                $crate::dm::param::ParamString::read(|buf, size| {
                    // SAFETY: `buf` is valid for `size` bytes of writes,
                    // and the C reader writes at most `size` bytes.
                    unsafe { [<dmmr_param_read_ $name>](buf, size) }
                })
            }

            #[no_mangle]
            extern "C" fn [<dmmr_param_check_ $name>](
                val: *const ::kernel::ffi::c_char,
                len: usize,
            ) -> ::kernel::ffi::c_int {
                // SAFETY: helpers.c passes the value it was given, a
                // NUL-terminated string of at least `len` bytes that lives
                // for the call.
                unsafe { $crate::dm::param::check(stringify!($name), val, len, $check) }
            }
        }
    };
}
