// SPDX-License-Identifier: GPL-2.0

//! dm-io: writing one bio to several legs at once, asynchronously.

use super::{
    bindings,
    bio::{per_bio, Bio, Mapped, OwnedBio},
    target::Device,
    TargetOperations,
};
use core::ptr::NonNull;
use kernel::{
    error::{code::ENOMEM, Error, Result},
    ffi::{c_ulong, c_void},
};

/// Most destinations one dm-io call may have: `sizeof(unsigned long) * 8`
/// error bits, and dm-raid1's nine legs are far below that.
pub(crate) const MAX_DESTINATIONS: usize = 16;

/// A dm-io client: private mempools for the target's I/O.
///
/// # Invariants
///
/// `client` came from `dm_io_client_create` and is destroyed once, in `drop`.
pub(crate) struct IoClient {
    client: NonNull<bindings::dm_io_client>,
}

impl IoClient {
    /// Creates a client (may sleep: constructor only).
    pub(crate) fn new() -> Result<Self> {
        // SAFETY: no preconditions; returns a client or an ERR_PTR.
        let ptr = unsafe { bindings::dm_io_client_create() };
        let addr = ptr as usize;
        if addr >= (-4095isize) as usize {
            return Err(Error::from_errno(addr as isize as i32));
        }
        let client = NonNull::new(ptr).ok_or(ENOMEM)?;
        // INVARIANT: a client fresh from `dm_io_client_create`.
        Ok(Self { client })
    }

    /// Writes `bio` (data, empty flush or discard) to every `(device, sector)`
    /// in `dests`; when all are done, `T::write_done` gets the bio back with a
    /// bit set for each destination that failed.
    pub(crate) fn write_all<'d, T: TargetOperations>(
        &self,
        bio: Bio<'_, T>,
        dests: impl Iterator<Item = (&'d Device, u64)>,
    ) -> Mapped {
        let mut regions = [bindings::dm_io_region::default(); MAX_DESTINATIONS];
        let kind = bio.kind();
        let count = u64::from(bio.sectors());
        let mut nr = 0;
        for (dev, sector) in dests {
            let Some(region) = regions.get_mut(nr) else {
                return bio.kill();
            };
            region.bdev = dev.bdev();
            region.sector = sector;
            region.count = count;
            nr += 1;
        }
        if nr == 0 {
            return bio.kill();
        }
        let owned = bio.into_owned();
        let raw = owned.raw();
        // From here on dm-io owns the bio until `write_notify`.
        core::mem::forget(owned);
        let discard = kind == super::BioKind::Discard;
        let no_data = discard || kind == super::BioKind::Flush;
        let mut req = bindings::dm_io_request::default();
        // SAFETY: `raw` is live, `req` and `regions` are valid for the call,
        // and `write_notify::<T>` matches `io_notify_fn`. dm-io copies what it
        // needs from `req` and `regions` before returning.
        let ret = unsafe {
            let flags = bindings::dmmr_bio_write_flags(raw);
            bindings::dmmr_io_request_init(
                &mut req,
                bindings::dmmr_write_opf(flags, discard),
                raw,
                no_data,
                Some(write_notify::<T>),
                raw.cast(),
                self.client.as_ptr(),
            );
            bindings::dm_io(
                &mut req,
                nr as u32,
                regions.as_mut_ptr(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                bindings::dmmr_ioprio_default(),
            )
        };
        if ret != 0 {
            // dm-io refused before taking the bio (only for malformed requests):
            // complete it ourselves.
            // SAFETY: the bio is still ours: dm-io calls `notify` only when it
            // accepted the request.
            unsafe {
                bindings::dmmr_bio_set_status(raw, bindings::DMMR_BLK_STS_IOERR);
                bindings::bio_endio(raw);
            }
        }
        Mapped(bindings::DM_MAPIO_SUBMITTED as i32)
    }
}

impl Drop for IoClient {
    fn drop(&mut self) {
        // SAFETY: by the type invariant this is the only destroy, and no I/O is
        // in flight: the owner is dropped by the destructor, after dm core has
        // waited for every bio of the target.
        unsafe { bindings::dm_io_client_destroy(self.client.as_ptr()) };
    }
}

// SAFETY: dm-io clients are used from any context; dm-io locks internally.
unsafe impl Send for IoClient {}
// SAFETY: as above.
unsafe impl Sync for IoClient {}

/// dm-io's completion: hands the bio back to the target.
///
/// # Safety
///
/// Called by dm-io only, with the `context` given in [`IoClient::write_all`].
unsafe extern "C" fn write_notify<T: TargetOperations>(
    error: c_ulong,
    unsup: c_ulong,
    context: *mut c_void,
) {
    let bio: *mut bindings::bio = context.cast();
    // SAFETY: `context` is the bio passed in `write_all`, still owned by the
    // target (dm core waits for it before the destructor), so its per-bio data
    // holds the `ti` the map trampoline stored, and `ti->private` the target.
    unsafe {
        let ti = (*per_bio::<T>(bio)).ti;
        let target = &*((*ti).private as *const T);
        let Some(bio) = NonNull::new(bio) else {
            return;
        };
        let owned = OwnedBio::<T>::from_raw(bio);
        target.write_done(owned, error as u64, unsup as u64);
    }
}
