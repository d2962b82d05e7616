// SPDX-License-Identifier: GPL-2.0

//! The C dirty region log (dm-log: `core` and `disk` log types).

use super::{args::Args, bindings, target::Target, StatusType, StatusWriter, TargetOperations};
use core::ptr::NonNull;
use kernel::{
    error::{code::EINVAL, Error, Result},
    ffi::c_uint,
    str::CStrExt,
};

/// The dirty log's calls into the target.
pub(crate) trait DirtyLogCallbacks: TargetOperations {
    /// The log asks for the target's devices' caches to be flushed (the
    /// disk log, before it records regions as clean). Process context.
    fn flush_legs(&self) -> Result;
}

/// A dirty region log created through `dm_dirty_log_create`.
///
/// # Invariants
///
/// `log` is a live log with a type that implements every method this file
/// calls (dm-log's core and disk logs do), destroyed once in `drop`, before
/// the target it was created for.
pub(crate) struct DirtyLog {
    log: NonNull<bindings::dm_dirty_log>,
}

impl DirtyLog {
    /// Creates a log of type `type_name` (`core`, `disk`) with `args`; the
    /// disk log calls [`DirtyLogCallbacks::flush_legs`] before it records
    /// regions as clean.
    pub(crate) fn create<T: DirtyLogCallbacks>(
        target: &mut Target<T>,
        type_name: &str,
        args: &Args<'_>,
    ) -> Result<Self> {
        let mut buf = [0u8; 32];
        let name = super::args::to_c_str(type_name, &mut buf).ok_or(EINVAL)?;
        let (argc, argv) = args.as_raw();
        // SAFETY: `ti` is being constructed, `name` is NUL-terminated and
        // `argv` holds `argc` valid strings (the invariant of `Args`); the
        // callback only runs for I/O, when `ti->private` holds the target.
        let log = unsafe {
            bindings::dm_dirty_log_create(
                name.as_char_ptr(),
                target.as_raw(),
                Some(flush_callback::<T>),
                argc,
                argv,
            )
        };
        let log = NonNull::new(log).ok_or(EINVAL)?;
        // INVARIANT: a fresh log of a registered type.
        Ok(Self { log })
    }

    pub(super) fn as_raw(&self) -> *mut bindings::dm_dirty_log {
        self.log.as_ptr()
    }

    fn ops(&self) -> &bindings::dm_dirty_log_type {
        // SAFETY: a live log always points to its (static, registered) type.
        unsafe { &*(*self.log.as_ptr()).type_ }
    }

    /// Region size in sectors.
    pub(crate) fn region_size(&self) -> u32 {
        match self.ops().get_region_size {
            // SAFETY: `log` is live and the method belongs to its type.
            Some(f) => unsafe { f(self.log.as_ptr()) },
            None => 0,
        }
    }

    /// Whether `region` is in sync. Without `can_block`, a log that would have
    /// to sleep answers `Err(EWOULDBLOCK)`. Only for [`super::region_hash`],
    /// which checks `region` against the region count first (C does not).
    pub(super) fn in_sync(&self, region: u64, can_block: bool) -> Result<bool> {
        let Some(f) = self.ops().in_sync else {
            return Ok(false);
        };
        // SAFETY: `log` is live and the method belongs to its type; the core
        // and disk logs' `in_sync` never sleeps with `can_block == 0`.
        let r = unsafe { f(self.log.as_ptr(), region, i32::from(can_block)) };
        if r < 0 {
            Err(Error::from_errno(r))
        } else {
            Ok(r != 0)
        }
    }

    /// Number of regions in sync.
    pub(crate) fn sync_count(&self) -> u64 {
        match self.ops().get_sync_count {
            // SAFETY: `log` is live and the method belongs to its type.
            Some(f) => unsafe { f(self.log.as_ptr()) },
            None => 0,
        }
    }

    fn call(&self, f: Option<unsafe extern "C" fn(*mut bindings::dm_dirty_log) -> i32>) -> Result {
        match f {
            // SAFETY: `log` is live and the method belongs to its type.
            Some(f) => kernel::error::to_result(unsafe { f(self.log.as_ptr()) }),
            None => Ok(()),
        }
    }

    /// Tells the log the target is about to suspend.
    pub(crate) fn presuspend(&self) -> Result {
        self.call(self.ops().presuspend)
    }

    /// Tells the log the target is suspended.
    pub(crate) fn postsuspend(&self) -> Result {
        self.call(self.ops().postsuspend)
    }

    /// Tells the log the target resumes (a disk log reads its state here).
    pub(crate) fn resume(&self) -> Result {
        self.call(self.ops().resume)
    }

    /// Appends the log's part of a status line (`1 core`, `core 1 1024 `, ...).
    pub(crate) fn status(&self, kind: StatusType, out: &mut StatusWriter<'_>) {
        let Some(f) = self.ops().status else {
            return;
        };
        let spare = out.spare();
        if spare.is_empty() {
            return;
        }
        let maxlen = c_uint::try_from(spare.len()).unwrap_or(c_uint::MAX);
        // SAFETY: `log` is live and the method belongs to its type; it
        // writes a NUL-terminated string of at most `maxlen` bytes into
        // `spare`, which is at least that long and borrowed for the call.
        unsafe {
            f(
                self.log.as_ptr(),
                kind.raw(),
                spare.as_mut_ptr().cast(),
                maxlen,
            )
        };
        out.take_nul_terminated();
    }
}

impl Drop for DirtyLog {
    fn drop(&mut self) {
        // SAFETY: by the type invariant this is the only destroy.
        unsafe { bindings::dm_dirty_log_destroy(self.log.as_ptr()) };
    }
}

// SAFETY: the log's methods may be called from any thread; dm-log locks
// internally where it needs to.
unsafe impl Send for DirtyLog {}
// SAFETY: as above.
unsafe impl Sync for DirtyLog {}

/// The log's request to make the legs' data durable.
///
/// # Safety
///
/// Called by dm-log only, for the target the log was created for, during I/O.
unsafe extern "C" fn flush_callback<T: DirtyLogCallbacks>(ti: *mut bindings::dm_target) -> i32 {
    // SAFETY: the log only flushes while the target is constructed.
    match unsafe { super::private::<T>(ti) }.flush_legs() {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}
