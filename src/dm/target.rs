// SPDX-License-Identifier: GPL-2.0

//! `Target` (a `struct dm_target` being constructed or running) and `Device`
//! (a `struct dm_dev` the target holds: a leg or a log device).

use super::{args::to_c_str, bindings, TargetOperations};
use core::{ffi::CStr, marker::PhantomData};
use kernel::{
    error::{code::EINVAL, to_result, Result},
    str::CStrExt,
};

/// The target instance of type `T` dm core is constructing or running.
///
/// The type parameter ties the services that call back into the target
/// (work queue, region hash, dirty log) to the type its private data has:
/// only the constructor trampoline of `T` makes a `Target<T>`, so a service
/// created from it can only cast `ti->private` back to a `T`.
///
/// # Invariants
///
/// `ti` points to a live `struct dm_target` for as long as this value exists:
/// dm core hands it to the constructor and to every callback, and frees it only
/// after the destructor. Its private data is a `T` from the end of the
/// constructor until the destructor (or nothing, if the constructor fails).
pub(crate) struct Target<T: TargetOperations> {
    ti: *mut bindings::dm_target,
    _t: PhantomData<fn() -> T>,
}

impl<T: TargetOperations> Target<T> {
    /// # Safety
    ///
    /// `ti` must be a live dm target for the lifetime of the returned value,
    /// constructed by `T`'s constructor (so its private data is a `T` once
    /// that constructor succeeded).
    pub(super) unsafe fn from_raw(ti: *mut bindings::dm_target) -> Self {
        // INVARIANT: guaranteed by the caller.
        Self {
            ti,
            _t: PhantomData,
        }
    }

    /// Another handle to the same target, for the target's private data
    /// (which dm core frees before the target).
    pub(crate) fn handle(&self) -> Self {
        // INVARIANT: the same live target of the same type.
        Self {
            ti: self.ti,
            _t: PhantomData,
        }
    }

    pub(super) fn as_raw(&self) -> *mut bindings::dm_target {
        self.ti
    }

    /// Length of the target in 512-byte sectors.
    pub(crate) fn len(&self) -> u64 {
        // SAFETY: `ti` is live by the type invariant; `len` is set before the
        // constructor runs and never changes.
        unsafe { (*self.ti).len }
    }

    /// First sector of the target in the mapped device.
    pub(crate) fn begin(&self) -> u64 {
        // SAFETY: as in `len`.
        unsafe { (*self.ti).begin }
    }

    /// Raises a table event (`dmsetup wait`, dmeventd). May sleep: worker only.
    pub(crate) fn raise_event(&self) {
        // SAFETY: `ti` is live and `table` is set for a live target.
        unsafe { bindings::dm_table_event((*self.ti).table) };
    }

    /// Whether a `noflush` suspend is in progress (held bios may then be
    /// requeued to dm core instead of failed).
    pub(crate) fn noflush_suspending(&self) -> bool {
        // SAFETY: `ti` is live.
        unsafe { bindings::dm_noflush_suspending(self.ti) != 0 }
    }

    /// Sets the reason dm core prints when the constructor fails.
    pub(crate) fn set_error(&mut self, msg: &'static CStr) {
        // SAFETY: `ti` is live; dm core only reads `error`, and the string is static.
        unsafe { (*self.ti).error = msg.as_char_ptr().cast_mut() };
    }

    /// Splits bios so that none crosses a multiple of `sectors` (the region size).
    pub(crate) fn set_max_io_len(&mut self, sectors: u32) -> Result {
        // SAFETY: `ti` is live and still being constructed.
        to_result(unsafe { bindings::dm_set_target_max_io_len(self.ti, sectors.into()) })
    }

    /// How many empty flush bios dm core sends the target for each flush
    /// (`num_flush_bios`; 0: the target gets no flushes). Constructor only.
    pub(crate) fn set_num_flush_bios(&mut self, bios: u32) {
        // SAFETY: `ti` is live and still being constructed; dm core reads
        // the field afterwards.
        unsafe { (*self.ti).num_flush_bios = bios };
    }

    /// How many bios dm core sends the target for each discard
    /// (`num_discard_bios`; 0: discards are not supported). Constructor
    /// only.
    pub(crate) fn set_num_discard_bios(&mut self, bios: u32) {
        // SAFETY: as in `set_num_flush_bios`.
        unsafe { (*self.ti).num_discard_bios = bios };
    }

    /// Reserves `bytes` of per-bio data (the layer's, sized for the
    /// target's record). Constructor trampoline only.
    pub(super) fn set_per_bio_data_size(&mut self, bytes: usize) {
        // SAFETY: as in `set_num_flush_bios`.
        unsafe { (*self.ti).per_io_data_size = u32::try_from(bytes).unwrap_or(u32::MAX) };
    }

    /// Opens the block device `path` (a path or `major:minor`) in the table's mode.
    pub(crate) fn get_device(&mut self, path: &str) -> Result<Device> {
        let mut buf = [0u8; 256];
        let cpath = to_c_str(path, &mut buf).ok_or(EINVAL)?;
        let mut dev: *mut bindings::dm_dev = core::ptr::null_mut();
        // SAFETY: `ti` is live and being constructed, `cpath` is NUL-terminated
        // and `dev` is a valid out pointer.
        let ret = unsafe {
            let mode = bindings::dm_table_get_mode((*self.ti).table);
            bindings::dm_get_device(self.ti, cpath.as_char_ptr(), mode, &mut dev)
        };
        to_result(ret)?;
        // INVARIANT: `dm_get_device` succeeded, so `dev` is a reference that we
        // own until `dm_put_device`, and `ti` outlives it (see `Device`).
        Ok(Device { ti: self.ti, dev })
    }
}

// SAFETY: `Target` is a handle to a dm target; dm core allows its callbacks,
// and the accessors above, from any thread.
unsafe impl<T: TargetOperations> Send for Target<T> {}
// SAFETY: the shared accessors only read fields that are fixed after construction
// or call dm functions that do their own locking.
unsafe impl<T: TargetOperations> Sync for Target<T> {}

/// A block device the target holds open (`struct dm_dev`).
///
/// # Invariants
///
/// `dev` was returned by `dm_get_device(ti, ...)` and is released exactly once,
/// in `drop`. `Device` values are owned by the target's private data, which
/// the destructor drops before dm core frees `ti`.
pub(crate) struct Device {
    ti: *mut bindings::dm_target,
    dev: *mut bindings::dm_dev,
}

impl Device {
    /// The device's name as dm prints it in tables, `major:minor`.
    pub(crate) fn name(&self) -> &str {
        // SAFETY: `dev` is valid by the type invariant; dm core fills `name`
        // with a NUL-terminated `major:minor` string and never changes it.
        let name = unsafe { CStr::from_char_ptr((*self.dev).name.as_ptr()) };
        name.to_str().unwrap_or("?")
    }

    pub(super) fn bdev(&self) -> *mut bindings::block_device {
        // SAFETY: `dev` is valid by the type invariant.
        unsafe { (*self.dev).bdev }
    }

    pub(super) fn as_raw(&self) -> *mut bindings::dm_dev {
        self.dev
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        // SAFETY: by the type invariant `dev` came from `dm_get_device(ti)`, `ti`
        // is still live, and this is the only release.
        unsafe { bindings::dm_put_device(self.ti, self.dev) };
    }
}

// SAFETY: a `dm_dev` reference may be used and released from any thread.
unsafe impl Send for Device {}
// SAFETY: shared use only reads fields fixed at `dm_get_device` time.
unsafe impl Sync for Device {}
