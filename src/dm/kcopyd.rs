// SPDX-License-Identifier: GPL-2.0

//! dm-kcopyd: copying a region from one leg to the others (resync).

use super::{
    bindings,
    region_hash::{Region, RegionHashCallbacks},
    target::Device,
};
use core::ptr::NonNull;
use kernel::{
    error::{code::ENOMEM, from_err_ptr, Result},
    ffi::{c_int, c_ulong, c_void},
};

/// The completion of a [`Kcopyd::copy`] of a region under recovery. kcopyd
/// calls it from its own work queue (process context).
pub(crate) trait CopyCompletion: RegionHashCallbacks {
    /// The copy of `region` ended: `read_failed` if the source read failed,
    /// bit `i` of `write_failed` if the `i`-th destination's write did.
    fn copy_done(&self, region: Region<Self>, read_failed: bool, write_failed: u64);
}

/// A kcopyd client, throttled by the `raid1_resync_throttle` module parameter.
///
/// # Invariants
///
/// `client` came from `dm_kcopyd_client_create` and is destroyed once, in
/// `drop` (which waits for the client's jobs).
pub(crate) struct Kcopyd {
    client: NonNull<bindings::dm_kcopyd_client>,
}

impl Kcopyd {
    /// Creates a client (constructor only: may sleep).
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: the throttle is a static of this module; the call returns
        // a client or an ERR_PTR.
        let ptr = from_err_ptr(unsafe {
            bindings::dm_kcopyd_client_create(bindings::dmmr_resync_throttle())
        })?;
        // INVARIANT: a live client (`dm_kcopyd_client_create` never returns
        // NULL).
        Ok(Self {
            client: NonNull::new(ptr).ok_or(ENOMEM)?,
        })
    }

    /// Copies `count` sectors from `from` to every destination; when done,
    /// `T::copy_done(region, read_failed, write_failed_bits)` is called with the
    /// region (bit `i` of the write bits: the `i`-th destination).
    /// The copy stops at the first error (no `DM_KCOPYD_IGNORE_ERROR`: after
    /// a failed read it would write whatever its pages held).
    pub(crate) fn copy<'d, T: CopyCompletion>(
        &self,
        region: Region<T>,
        from: (&Device, u64),
        count: u64,
        to: impl Iterator<Item = (&'d Device, u64)>,
    ) {
        let mut src = bindings::dm_io_region {
            bdev: from.0.bdev(),
            sector: from.1,
            count,
        };
        let mut dests =
            [bindings::dm_io_region::default(); bindings::DM_KCOPYD_MAX_REGIONS as usize];
        let mut nr = 0;
        for (dev, sector) in to {
            if let Some(d) = dests.get_mut(nr) {
                *d = bindings::dm_io_region {
                    bdev: dev.bdev(),
                    sector,
                    count,
                };
                nr += 1;
            }
        }
        let reg = region.into_raw();
        // SAFETY: the regions are valid for the call (kcopyd copies them),
        // the devices are held open by the target, and `copy_notify::<T>`
        // gets back the region handle we pass as context.
        unsafe {
            bindings::dm_kcopyd_copy(
                self.client.as_ptr(),
                &mut src,
                nr as u32,
                dests.as_mut_ptr(),
                0,
                Some(copy_notify::<T>),
                reg.cast(),
            )
        };
    }

    /// Waits for every completion callback kcopyd has started or queued
    /// (they run on the client's work queue). Process context.
    ///
    /// A copy's callback may end a recovery that a suspend waits for
    /// before the callback returns: a destructor must flush the client
    /// before it drops what the callback uses.
    pub(crate) fn flush(&self) {
        // SAFETY: the client is live (type invariant).
        unsafe { bindings::dm_kcopyd_client_flush(self.client.as_ptr()) };
    }
}

impl Drop for Kcopyd {
    fn drop(&mut self) {
        // SAFETY: by the type invariant this is the only destroy; it waits for
        // outstanding jobs.
        unsafe { bindings::dm_kcopyd_client_destroy(self.client.as_ptr()) };
    }
}

// SAFETY: kcopyd clients may be used from any thread.
unsafe impl Send for Kcopyd {}
// SAFETY: as above.
unsafe impl Sync for Kcopyd {}

/// kcopyd's completion.
///
/// # Safety
///
/// Called by kcopyd only, with the region handle given in [`Kcopyd::copy`].
unsafe extern "C" fn copy_notify<T: CopyCompletion>(
    read_err: c_int,
    write_err: c_ulong,
    context: *mut c_void,
) {
    // SAFETY: `context` is a region in recovery of a `RegionHash<T>` (the
    // type of the `Region<T>` given to `copy`), whose context is the target
    // (see `RegionHash::new`); the target is live while
    // the callback runs: recovery in flight keeps a suspend (and so the
    // destructor) waiting, and the target's `stop` flushes the client
    // ([`Kcopyd::flush`]) for the window in which a callback ends the
    // recovery before it returns.
    unsafe {
        let reg: *mut bindings::dm_region = context.cast();
        let ti: *mut bindings::dm_target = bindings::dm_rh_region_context(reg).cast();
        let Some(region) = Region::from_raw(reg) else {
            return;
        };
        super::private::<T>(ti).copy_done(region, read_err != 0, write_err as u64);
    }
}
