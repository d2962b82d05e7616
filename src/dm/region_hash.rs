// SPDX-License-Identifier: GPL-2.0

//! dm-region-hash: per-region write tracking over the dirty log, and the
//! recovery (resync) bookkeeping.

use super::{
    bindings,
    bio::{flags_of, BioKind, BioList, OpFlags, OwnedBio},
    dirty_log::DirtyLog,
    target::Target,
    TargetOperations,
};
use core::{
    marker::PhantomData,
    mem::ManuallyDrop,
    ptr::NonNull,
    sync::atomic::{AtomicBool, Ordering},
};
use kernel::{
    error::{
        code::{EINVAL, ENOMEM},
        from_err_ptr, Error, Result,
    },
    ffi::c_void,
};

/// The region hash's calls into the target.
pub(crate) trait RegionHashCallbacks: TargetOperations {
    /// The region hash hands back writes it delayed during a recovery.
    /// Called where the recovery ends (kcopyd's completion: process
    /// context).
    fn dispatch_delayed(&self, bios: BioList<Self>);

    /// The region hash asks for the target's worker to run. Any context.
    fn wake(&self);
}

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
/// `reg` is a region of a live region hash in the recovering state, and that
/// hash is a [`RegionHash<T>`] (its context is a target of type `T`).
pub(crate) struct Region<T: RegionHashCallbacks> {
    reg: NonNull<bindings::dm_region>,
    _t: PhantomData<fn() -> T>,
}

impl<T: RegionHashCallbacks> Region<T> {
    /// # Safety
    ///
    /// `reg` is NULL or a region that `dm_rh_recovery_start` of a
    /// [`RegionHash<T>`] handed out and that nobody has ended yet (the
    /// ownership of ending it moves here).
    pub(super) unsafe fn from_raw(reg: *mut bindings::dm_region) -> Option<Self> {
        // INVARIANT: per the function's contract.
        Some(Self {
            reg: NonNull::new(reg)?,
            _t: PhantomData,
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
unsafe impl<T: RegionHashCallbacks> Send for Region<T> {}

/// One pending write counted in a region of a [`RegionHash<T>`] by
/// [`RegionHash::hold_pending`], for a copy of a write the target issues
/// later; give it back with [`RegionHash::release`] or
/// [`RegionHash::release_nosync`]. Dropping it instead leaks the count (the
/// region would never be marked clean), so it is `must_use`.
///
/// # Invariants
///
/// `region` is in range and has one pending write counted for this token.
#[must_use]
pub(crate) struct PendingRef<T: RegionHashCallbacks> {
    region: u64,
    _t: PhantomData<fn() -> T>,
}

/// A region hash over the target's dirty log (which it owns).
///
/// Every region index this type hands to C is checked against the region
/// count first: C indexes its bitmaps with it unchecked, so a bad index (a
/// bug in the caller) is refused with `EINVAL` and one warning, never passed
/// on.
///
/// # Invariants
///
/// `rh` is live until `drop`, its context is the target `ti` of type `T`, and
/// `log` is the log it owns (not destroyed separately); both cover regions
/// `0..nr_regions` of `region_size` sectors (a power of two) from `begin`.
pub(crate) struct RegionHash<T: RegionHashCallbacks> {
    rh: NonNull<bindings::dm_region_hash>,
    log: ManuallyDrop<DirtyLog>,
    nr_regions: u64,
    region_shift: u32,
    begin: u64,
    _t: PhantomData<T>,
}

/// Warns (with a stack trace) the first time a caller passes a bad region.
fn bad_region(region: u64, nr_regions: u64) -> Error {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        dm_err!(
            "region {} out of range (0..{}): refused",
            region,
            nr_regions
        );
        kernel::warn_on!(true);
    }
    EINVAL
}

impl<T: RegionHashCallbacks> RegionHash<T> {
    /// Creates the region hash over `nr_regions` regions of `region_size`
    /// sectors, recovering at most `max_recovery` at once; it takes over
    /// `log`.
    pub(crate) fn new(
        target: &Target<T>,
        log: DirtyLog,
        region_size: u32,
        nr_regions: u64,
        max_recovery: u32,
    ) -> Result<Self> {
        // Its callbacks reach the instance through `ti->private`; `stop`
        // must end the I/O and recovery that trigger them.
        const {
            assert!(
                T::HAS_STOP,
                "a target with a RegionHash must implement stop()"
            )
        };
        let log = ManuallyDrop::new(log);
        // SAFETY: the callbacks match the C prototypes and get `ti` back as
        // context; they run only for I/O, after the constructor stored the
        // target in `ti->private`, and stop before the destructor drops it.
        // The log is live and handed over.
        let rh = from_err_ptr(unsafe {
            bindings::dm_region_hash_create(
                target.as_raw().cast(),
                Some(dispatch_bios::<T>),
                Some(wakeup_workers::<T>),
                Some(bindings::dmmr_wake_recovery_waiters),
                target.begin(),
                max_recovery,
                log.as_raw(),
                region_size,
                nr_regions,
            )
        });
        // `dm_region_hash_create` returns an ERR_PTR, never NULL.
        let Some(rh) = rh.ok().and_then(NonNull::new) else {
            // The region hash did not take the log: destroy it ourselves.
            drop(ManuallyDrop::into_inner(log));
            return Err(rh.err().unwrap_or(ENOMEM));
        };
        // INVARIANT: a fresh region hash owning `log`, context `ti`, over
        // `nr_regions` regions of `region_size` sectors from `begin`.
        Ok(Self {
            rh,
            log,
            nr_regions,
            region_shift: region_size.trailing_zeros(),
            begin: target.begin(),
            _t: PhantomData,
        })
    }

    /// `region`, if it is one of this hash's.
    fn checked(&self, region: u64) -> Result<u64> {
        if region < self.nr_regions {
            Ok(region)
        } else {
            Err(bad_region(region, self.nr_regions))
        }
    }

    /// The region of target-relative `sector`, checked.
    pub(crate) fn region_of(&self, sector: u64) -> Result<u64> {
        self.checked(sector >> self.region_shift)
    }

    fn raw(&self) -> *mut bindings::dm_region_hash {
        self.rh.as_ptr()
    }

    /// The dirty log.
    pub(crate) fn log(&self) -> &DirtyLog {
        &self.log
    }

    /// First sector (target-relative) of `region`.
    pub(crate) fn region_to_sector(&self, region: u64) -> u64 {
        region << self.region_shift
    }

    /// Whether the dirty log has `region` in sync. Without `can_block`, a
    /// log that would have to sleep answers `Err(EWOULDBLOCK)`.
    pub(crate) fn in_sync(&self, region: u64, can_block: bool) -> Result<bool> {
        self.log.in_sync(self.checked(region)?, can_block)
    }

    /// The region's state; `may_block`: the log may sleep to answer.
    pub(crate) fn state(&self, region: u64, may_block: bool) -> Result<RegionState> {
        let region = self.checked(region)?;
        // SAFETY: live region hash, region in range.
        let s = unsafe { bindings::dm_rh_get_state(self.raw(), region, i32::from(may_block)) };
        Ok(match s as u32 {
            bindings::dm_rh_region_states_DM_RH_CLEAN => RegionState::Clean,
            bindings::dm_rh_region_states_DM_RH_DIRTY => RegionState::Dirty,
            bindings::dm_rh_region_states_DM_RH_RECOVERING => RegionState::Recovering,
            _ => RegionState::NoSync,
        })
    }

    /// Whether C computes `region` for `bio` (as dm core gave it, not
    /// remapped to a leg), so that a C function taking the bio acts on it.
    fn bio_is_in(&self, bio: &OwnedBio<T>, region: u64) -> Result<()> {
        let region = self.checked(region)?;
        // SAFETY: live bio (type invariant of `OwnedBio`).
        let sector = unsafe { (*bio.raw()).bi_iter.bi_sector };
        match sector
            .checked_sub(self.begin)
            .map(|s| s >> self.region_shift)
        {
            Some(r) if r == region => Ok(()),
            _ => Err(bad_region(
                sector.saturating_sub(self.begin) >> self.region_shift,
                self.nr_regions,
            )),
        }
    }

    /// Counts the write `bio` to `region` as pending (marking the region
    /// dirty in the log at the next [`RegionHash::flush`]); it must later be
    /// matched by [`RegionHash::dec`].
    pub(crate) fn inc_pending(&self, bio: &mut OwnedBio<T>, region: u64) -> Result {
        self.bio_is_in(bio, region)?;
        // `dm_rh_inc_pending` skips preflushes and discards: a count the
        // caller later decrements must have been taken.
        // SAFETY: the bio is live (type invariant of `OwnedBio`).
        let preflush = unsafe { flags_of(bio.raw(), OpFlags::PREFLUSH) } != OpFlags::default();
        if bio.kind() != BioKind::Write || preflush {
            return Err(EINVAL);
        }
        let raw = bio.raw();
        // SAFETY: we own the live bio (`&mut OwnedBio`), so it is on no list
        // and nobody else links it: a one-bio list is `bi_next == NULL` with
        // head and tail on it. `dm_rh_inc_pending` only walks the list, and
        // the bio's region is in range (checked above).
        unsafe {
            (*raw).bi_next = core::ptr::null_mut();
            let mut one = bindings::bio_list {
                head: raw,
                tail: raw,
            };
            bindings::dm_rh_inc_pending(self.raw(), &mut one);
        }
        Ok(())
    }

    /// Counts one more pending write in `bio`'s region for a copy of `bio`
    /// the target writes later from its own buffer: the region stays dirty
    /// (and out of recovery) until the token is released.
    pub(crate) fn hold_pending(&self, bio: &mut OwnedBio<T>, region: u64) -> Result<PendingRef<T>> {
        self.inc_pending(bio, region)?;
        // INVARIANT: one pending write counted just now.
        Ok(PendingRef {
            region,
            _t: PhantomData,
        })
    }

    /// The copy `pending` stood for has been written: one pending write less.
    /// Callable from I/O completion.
    pub(crate) fn release(&self, pending: PendingRef<T>) {
        let PendingRef { region, .. } = pending;
        // SAFETY: live region hash; `region` is in range (checked when the
        // token was made) and the token's pending write is counted.
        unsafe { bindings::dm_rh_dec(self.raw(), region) };
    }

    /// The copy `pending` stood for failed on some leg: the region is
    /// marked out of sync (so it is resynchronised and never marked clean
    /// before that), then released. Process context (the worker).
    pub(crate) fn release_nosync(&self, pending: PendingRef<T>) {
        let sector = self
            .begin
            .saturating_add(self.region_to_sector(pending.region));
        // SAFETY: live region hash; the token's pending write keeps the
        // region in the hash, as `dm_rh_mark_nosync` requires; the sector is
        // the region's first, absolute, as a bio of it would carry. Process
        // context: the caller's promise (worker only), as for dm-raid1.
        unsafe { bindings::dmmr_rh_mark_sector_nosync(self.raw(), sector) };
        self.release(pending);
    }

    /// One pending write of `region` is done. Callable from I/O completion.
    pub(crate) fn dec(&self, region: u64) -> Result {
        let region = self.checked(region)?;
        // SAFETY: live region hash; `region` is in range and had a pending
        // write counted by `inc_pending`.
        unsafe { bindings::dm_rh_dec(self.raw(), region) };
        Ok(())
    }

    /// Holds a write to recovering `region` until its recovery ends (the
    /// region hash hands it back through `dispatch_delayed`).
    pub(crate) fn delay(&self, bio: OwnedBio<T>, region: u64) -> Result<(), OwnedBio<T>> {
        if self.bio_is_in(&bio, region).is_err() {
            return Err(bio);
        }
        let raw = bio.into_raw();
        // SAFETY: the region hash takes the bio, whose region is in range,
        // and gives it back later.
        unsafe { bindings::dm_rh_delay(self.raw(), raw) };
        Ok(())
    }

    /// Marks `region`, the region of write `bio`, out of sync (a leg missed
    /// the write). For an empty flush it records a flush failure instead,
    /// and a discard it ignores (as C does: neither has a region).
    pub(crate) fn mark_nosync(&self, bio: &OwnedBio<T>, region: u64) -> Result {
        if !matches!(bio.kind(), BioKind::Flush | BioKind::Discard) {
            self.bio_is_in(bio, region)?;
        }
        // SAFETY: live region hash and bio; C computes a region only for a
        // write of data, whose region is in range (checked above).
        unsafe { bindings::dm_rh_mark_nosync(self.raw(), bio.raw()) };
        Ok(())
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
    pub(crate) fn recovery_start(&self) -> Option<Region<T>> {
        // SAFETY: live region hash of a `T`; what `dm_rh_recovery_start`
        // returns is NULL or a region in recovery that only we will end.
        unsafe { Region::from_raw(bindings::dm_rh_recovery_start(self.raw())) }
    }

    /// Ends the recovery of `region`.
    pub(crate) fn recovery_end(&self, region: Region<T>, success: bool) {
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

impl<T: RegionHashCallbacks> Drop for RegionHash<T> {
    fn drop(&mut self) {
        // SAFETY: by the type invariant the hash is live and owns the log:
        // this destroys both, once.
        unsafe { bindings::dm_region_hash_destroy(self.raw()) };
    }
}

// SAFETY: the region hash locks internally; its functions may be called from
// any thread (the ones that sleep are documented as worker-only).
unsafe impl<T: RegionHashCallbacks> Send for RegionHash<T> {}
// SAFETY: as above.
unsafe impl<T: RegionHashCallbacks> Sync for RegionHash<T> {}

/// The region hash hands back delayed writes.
///
/// # Safety
///
/// Called by dm-region-hash only, with the context given in `RegionHash::new`.
unsafe extern "C" fn dispatch_bios<T: RegionHashCallbacks>(
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
unsafe extern "C" fn wakeup_workers<T: RegionHashCallbacks>(context: *mut c_void) {
    // SAFETY: `context` is the target, live while the region hash is.
    unsafe { super::private::<T>(context.cast()) }.wake();
}
