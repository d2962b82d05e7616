// SPDX-License-Identifier: GPL-2.0

//! dm-region-hash: per-region write tracking over the dirty log, and the
//! recovery (resync) bookkeeping.

use super::{
    bindings,
    bio::{BioList, OwnedBio},
    dirty_log::DirtyLog,
    target::Target,
    TargetOperations,
};
use core::{marker::PhantomData, mem::ManuallyDrop, ptr::NonNull};
use kernel::{
    error::{code::ENOMEM, Error, Result},
    ffi::c_void,
};

/// Most regions recovered at once (dm-raid1's `MAX_RECOVERY`).
const MAX_RECOVERY: u32 = 1;

/// What the region hash knows about a region.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum RegionState {
    /// In sync, no writes in flight.
    Clean,
    /// In sync, writes in flight.
    Dirty,
    /// Out of sync.
    NoSync,
    /// Being resynchronised.
    Recovering,
}

/// A region under recovery, handed out by [`RegionHash::recovery_start`] and
/// given back to [`RegionHash::recovery_end`] exactly once.
///
/// # Invariants
///
/// `reg` is a region of a live region hash in the recovering state.
pub(crate) struct Region {
    reg: NonNull<bindings::dm_region>,
}

impl Region {
    pub(super) fn from_raw(reg: *mut bindings::dm_region) -> Option<Self> {
        // INVARIANT: callers pass regions from `dm_rh_recovery_start`.
        Some(Self {
            reg: NonNull::new(reg)?,
        })
    }

    pub(super) fn into_raw(self) -> *mut bindings::dm_region {
        self.reg.as_ptr()
    }

    /// The region number.
    pub(crate) fn key(&self) -> u64 {
        // SAFETY: a live region (type invariant).
        unsafe { bindings::dm_rh_get_region_key(self.reg.as_ptr()) }
    }
}

// SAFETY: a recovering region may be finished from any thread.
unsafe impl Send for Region {}

/// A region hash over the target's dirty log (which it owns).
///
/// # Invariants
///
/// `rh` is live until `drop`, its context is the target `ti` of type `T`, and
/// `log` is the log it owns (not destroyed separately).
pub(crate) struct RegionHash<T: TargetOperations> {
    rh: NonNull<bindings::dm_region_hash>,
    log: ManuallyDrop<DirtyLog>,
    _t: PhantomData<T>,
}

impl<T: TargetOperations> RegionHash<T> {
    /// Creates the region hash; it takes over `log`.
    pub(crate) fn new(
        target: &Target,
        log: DirtyLog,
        region_size: u32,
        nr_regions: u64,
    ) -> Result<Self> {
        let log = ManuallyDrop::new(log);
        // SAFETY: the callbacks match the C prototypes and get `ti` back as
        // context; they run only for I/O, after the constructor stored the
        // target in `ti->private`, and stop before the destructor drops it.
        // The log is live and handed over.
        let rh = unsafe {
            bindings::dm_region_hash_create(
                target.as_raw().cast(),
                Some(dispatch_bios::<T>),
                Some(wakeup_workers::<T>),
                Some(bindings::dmmr_wake_recovery_waiters),
                target.begin(),
                MAX_RECOVERY,
                log.as_raw(),
                region_size,
                nr_regions,
            )
        };
        let addr = rh as usize;
        if rh.is_null() || addr >= (-4095isize) as usize {
            // The region hash did not take the log: destroy it ourselves.
            drop(ManuallyDrop::into_inner(log));
            return Err(if rh.is_null() {
                ENOMEM
            } else {
                Error::from_errno(addr as isize as i32)
            });
        }
        // INVARIANT: a fresh region hash owning `log`, context `ti`.
        Ok(Self {
            rh: NonNull::new(rh).ok_or(ENOMEM)?,
            log,
            _t: PhantomData,
        })
    }

    fn raw(&self) -> *mut bindings::dm_region_hash {
        self.rh.as_ptr()
    }

    /// The dirty log.
    pub(crate) fn log(&self) -> &DirtyLog {
        &self.log
    }

    /// The region of a bio.
    pub(crate) fn bio_region(&self, bio: &OwnedBio<T>) -> u64 {
        // SAFETY: live region hash and bio.
        unsafe { bindings::dm_rh_bio_to_region(self.raw(), bio.raw()) }
    }

    /// First sector (target-relative) of `region`.
    pub(crate) fn region_to_sector(&self, region: u64) -> u64 {
        // SAFETY: live region hash.
        unsafe { bindings::dm_rh_region_to_sector(self.raw(), region) }
    }

    /// The region's state; `may_block`: the log may sleep to answer.
    pub(crate) fn state(&self, region: u64, may_block: bool) -> RegionState {
        // SAFETY: live region hash.
        let s = unsafe { bindings::dm_rh_get_state(self.raw(), region, i32::from(may_block)) };
        match s as u32 {
            bindings::dm_rh_region_states_DM_RH_CLEAN => RegionState::Clean,
            bindings::dm_rh_region_states_DM_RH_DIRTY => RegionState::Dirty,
            bindings::dm_rh_region_states_DM_RH_RECOVERING => RegionState::Recovering,
            _ => RegionState::NoSync,
        }
    }

    /// Counts the writes in `bios` as pending on their regions (marking them
    /// dirty in the log); each must later be matched by [`RegionHash::dec`].
    pub(crate) fn inc_pending(&self, bios: &mut BioList<T>) {
        // SAFETY: live region hash; the list is well formed (type invariant).
        unsafe { bindings::dm_rh_inc_pending(self.raw(), bios.as_raw()) };
    }

    /// One pending write of `region` is done. Callable from I/O completion.
    pub(crate) fn dec(&self, region: u64) {
        // SAFETY: live region hash.
        unsafe { bindings::dm_rh_dec(self.raw(), region) };
    }

    /// Holds a write to a recovering region until its recovery ends
    /// (the region hash hands it back through `dispatch_delayed`).
    pub(crate) fn delay(&self, bio: OwnedBio<T>) {
        let raw = bio.into_raw();
        // SAFETY: the region hash takes the bio and gives it back later.
        unsafe { bindings::dm_rh_delay(self.raw(), raw) };
    }

    /// Marks the bio's region out of sync (a leg missed the write).
    pub(crate) fn mark_nosync(&self, bio: &OwnedBio<T>) {
        // SAFETY: live region hash and bio.
        unsafe { bindings::dm_rh_mark_nosync(self.raw(), bio.raw()) };
    }

    /// Moves regions between states after writes and recoveries ended.
    pub(crate) fn update_states(&self, errors_handled: bool) {
        // SAFETY: live region hash; called from the worker.
        unsafe { bindings::dm_rh_update_states(self.raw(), i32::from(errors_handled)) };
    }

    /// Flushes the dirty log; an error means the log device failed.
    pub(crate) fn flush(&self) -> Result {
        // SAFETY: live region hash; called from the worker (may sleep).
        kernel::error::to_result(unsafe { bindings::dm_rh_flush(self.raw()) })
    }

    /// Starts quiescing regions that need recovery.
    pub(crate) fn recovery_prepare(&self) {
        // SAFETY: live region hash; worker context.
        unsafe { bindings::dm_rh_recovery_prepare(self.raw()) };
    }

    /// A quiesced region ready to be copied, if any.
    pub(crate) fn recovery_start(&self) -> Option<Region> {
        // SAFETY: live region hash.
        Region::from_raw(unsafe { bindings::dm_rh_recovery_start(self.raw()) })
    }

    /// Ends the recovery of `region`.
    pub(crate) fn recovery_end(&self, region: Region, success: bool) {
        // SAFETY: a region from `recovery_start`, ended once (consumed).
        unsafe { bindings::dm_rh_recovery_end(region.into_raw(), i32::from(success)) };
    }

    /// Stops starting recoveries and waits for those in flight.
    pub(crate) fn stop_recovery_and_wait(&self) {
        // SAFETY: live region hash; process context.
        unsafe {
            bindings::dm_rh_stop_recovery(self.raw());
            bindings::dmmr_wait_recovery_stopped(self.raw());
        }
    }

    /// Allows recoveries again.
    pub(crate) fn start_recovery(&self) {
        // SAFETY: live region hash.
        unsafe { bindings::dm_rh_start_recovery(self.raw()) };
    }
}

impl<T: TargetOperations> Drop for RegionHash<T> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the hash is live and owns the log:
        // this destroys both, once.
        unsafe { bindings::dm_region_hash_destroy(self.raw()) };
    }
}

// SAFETY: the region hash locks internally; its functions may be called from
// any thread (the ones that sleep are documented as worker-only).
unsafe impl<T: TargetOperations> Send for RegionHash<T> {}
// SAFETY: as above.
unsafe impl<T: TargetOperations> Sync for RegionHash<T> {}

/// The region hash hands back delayed writes.
///
/// # Safety
///
/// Called by dm-region-hash only, with the context given in `RegionHash::new`.
unsafe extern "C" fn dispatch_bios<T: TargetOperations>(
    context: *mut c_void,
    bios: *mut bindings::bio_list,
) {
    // SAFETY: `context` is the target (see `new`), live while the region hash
    // is; `bios` is a list of the target's writes, which we take over.
    unsafe {
        let list = BioList::<T>::take_raw(bios);
        super::private::<T>(context.cast()).dispatch_delayed(list);
    }
}

/// The region hash wants the worker to run.
///
/// # Safety
///
/// As for `dispatch_bios`.
unsafe extern "C" fn wakeup_workers<T: TargetOperations>(context: *mut c_void) {
    // SAFETY: `context` is the target, live while the region hash is.
    unsafe { super::private::<T>(context.cast()) }.wake();
}
