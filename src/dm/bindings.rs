// SPDX-License-Identifier: GPL-2.0

//! Generated bindings for the device-mapper C APIs (see `include/dm_mirror_rs.h`).
//!
//! Only the rest of `src/dm` uses these; the mirror target never does.

#![allow(
    dead_code,
    non_camel_case_types,
    non_upper_case_globals,
    non_snake_case,
    unreachable_pub,
    unsafe_op_in_unsafe_fn,
    missing_docs,
    improper_ctypes,
    unnecessary_transmutes,
    clippy::all,
    clippy::indexing_slicing,
    clippy::undocumented_unsafe_blocks,
    clippy::ptr_as_ptr,
    clippy::ref_as_ptr,
    clippy::cast_lossless,
    clippy::as_underscore
)]

use kernel::ffi;

// Blocklisted by the kernel's bindgen parameters and mapped by hand, as in
// rust/bindings/lib.rs.
type __kernel_size_t = usize;
type __kernel_ssize_t = isize;
type __kernel_ptrdiff_t = isize;

// Kbuild writes the generated file into the module's output directory
// (`MO=`, one per kernel profile) and names it in `DMMR_BINDINGS_RS`.
include!(env!("DMMR_BINDINGS_RS"));
