// SPDX-License-Identifier: GPL-2.0

//! dm-io: writing one bio to several legs at once, asynchronously.

use super::{
    bindings,
    bio::{flags_of, per_bio, OpFlags, OwnedBio},
    target::Device,
    TargetOperations,
};
use core::ptr::NonNull;
use kernel::{
    error::{code::ENOMEM, from_err_ptr, Result},
    ffi::{c_ulong, c_void},
};

/// `REQ_OP_WRITE` or `REQ_OP_DISCARD`, without flags.
fn write_op(discard: bool) -> bindings::blk_opf_t {
    if discard {
        bindings::req_op_REQ_OP_DISCARD
    } else {
        bindings::req_op_REQ_OP_WRITE
    }
}

/// Most destinations one dm-io call may have: `sizeof(unsigned long) * 8`
/// error bits, and dm-raid1's nine legs are far below that.
pub(crate) const MAX_DESTINATIONS: usize = 16;

/// The completions of a target's dm-io requests. dm-io calls them from the
/// completion context of the last bio it issued (softirq or process): they
/// must not sleep.
pub(crate) trait IoCompletion: TargetOperations {
    /// Gets back a bio given to [`IoClient::write_all`], with one bit set
    /// per destination that failed, or that did not support the operation.
    fn write_done(&self, bio: OwnedBio<Self>, failed: u64, unsupported: u64);

    /// Gets back a bio given to [`IoClient::read`].
    fn read_done(&self, bio: OwnedBio<Self>, failed: bool, unsupported: bool);
}

/// A dm-io client: private mempools for the target's I/O.
///
/// # Invariants
///
/// `client` came from `dm_io_client_create` and is destroyed once, in `drop`.
pub(crate) struct IoClient {
    client: NonNull<bindings::dm_io_client>,
    reserve: u32,
}

impl IoClient {
    /// Creates a client (may sleep: constructor only).
    pub(crate) fn new() -> Result<Self> {
        // The client's pools keep what the parameter says when it is
        // created: read around it, the smaller value is a safe bound.
        // SAFETY: no preconditions (a module parameter read).
        let before = unsafe { bindings::dm_get_reserved_bio_based_ios() };
        // SAFETY: no preconditions; returns a client or an ERR_PTR.
        let ptr = from_err_ptr(unsafe { bindings::dm_io_client_create() })?;
        let client = NonNull::new(ptr).ok_or(ENOMEM)?;
        // SAFETY: as above.
        let after = unsafe { bindings::dm_get_reserved_bio_based_ios() };
        // INVARIANT: a client fresh from `dm_io_client_create`.
        Ok(Self {
            client,
            reserve: before.min(after),
        })
    }

    /// How many bios (and ios) the client's pools keep in reserve, at
    /// least (dm-mod's `reserved_bio_based_ios` at creation).
    pub(crate) fn reserve(&self) -> u32 {
        self.reserve
    }

    pub(super) fn as_raw(&self) -> *mut bindings::dm_io_client {
        self.client.as_ptr()
    }

    /// Writes `bio` (data, empty flush or discard) to every `(device, sector)`
    /// in `dests`, with those of its flags that `keep` names; when all are
    /// done, `T::write_done` gets the bio back with a bit set for each
    /// destination that failed. May sleep (dm-io's pools): process context.
    /// Under `submit_bio_noacct` (a target's `map`) the bios for all but
    /// the last destination are parked until `map` returns while the next
    /// is allocated: callers there bound how many threads do this at once
    /// by [`IoClient::reserve`].
    pub(crate) fn write_all<'d, T: IoCompletion>(
        &self,
        bio: OwnedBio<T>,
        dests: impl Iterator<Item = (&'d Device, u64)>,
        keep: OpFlags,
    ) {
        let mut regions = [bindings::dm_io_region::default(); MAX_DESTINATIONS];
        let kind = bio.kind();
        let count = u64::from(bio.sectors());
        let mut nr = 0;
        for (dev, sector) in dests {
            let Some(region) = regions.get_mut(nr) else {
                return bio.end(super::Status::io_error());
            };
            region.bdev = dev.bdev();
            region.sector = sector;
            region.count = count;
            nr += 1;
        }
        if nr == 0 {
            return bio.end(super::Status::io_error());
        }
        let discard = kind == super::BioKind::Discard;
        let no_data = discard || kind == super::BioKind::Flush;
        // SAFETY: the bio is live (type invariant of `OwnedBio`).
        let flags = unsafe { flags_of(bio.raw(), keep) };
        let opf = write_op(discard) | flags.raw();
        let Some(regions) = regions.get_mut(..nr) else {
            return bio.end(super::Status::io_error());
        };
        self.submit::<T>(bio, opf, no_data, regions, write_notify::<T>);
    }

    /// Flushes every device's write cache and waits; returns a bit per device
    /// whose flush failed. Process context only.
    pub(crate) fn flush_sync<'d>(&self, devs: impl Iterator<Item = &'d Device>) -> u64 {
        let mut regions = [bindings::dm_io_region::default(); MAX_DESTINATIONS];
        let mut nr = 0;
        for (region, dev) in regions.iter_mut().zip(devs) {
            region.bdev = dev.bdev();
            nr += 1;
        }
        let mut req = bindings::dm_io_request::default();
        let mut error_bits: c_ulong = 0;
        let mut unsup_bits: c_ulong = 0;
        // An empty, synchronous preflush (dm-raid1's `mirror_flush()`).
        let opf = write_op(false) | OpFlags::PREFLUSH.with(OpFlags::SYNC).raw();
        // SAFETY: an empty preflush (KMEM, no data) to devices the target
        // holds open; without a notify function dm-io waits and fills the bits.
        let ret = unsafe {
            bindings::dmmr_io_request_init(
                &mut req,
                opf,
                core::ptr::null_mut(),
                true,
                None,
                core::ptr::null_mut(),
                self.client.as_ptr(),
            );
            bindings::dm_io(
                &mut req,
                nr as u32,
                regions.as_mut_ptr(),
                &mut error_bits,
                &mut unsup_bits,
                bindings::dmmr_ioprio_default(),
            )
        };
        if ret != 0 && error_bits == 0 {
            // dm-io itself failed: count every device as failed.
            return (1u64 << nr) - 1;
        }
        error_bits as u64
    }

    /// Reads `bio` from `dev` at `sector`; `T::read_done` gets it back.
    pub(crate) fn read<T: IoCompletion>(&self, bio: OwnedBio<T>, dev: &Device, sector: u64) {
        let mut region = [bindings::dm_io_region {
            bdev: dev.bdev(),
            sector,
            count: u64::from(bio.sectors()),
        }];
        let opf = bindings::req_op_REQ_OP_READ;
        self.submit::<T>(bio, opf, false, &mut region, read_notify::<T>);
    }

    fn submit<T: IoCompletion>(
        &self,
        bio: OwnedBio<T>,
        opf: bindings::blk_opf_t,
        no_data: bool,
        regions: &mut [bindings::dm_io_region],
        notify: unsafe extern "C" fn(c_ulong, c_ulong, *mut c_void),
    ) {
        // From here on dm-io owns the bio until `notify`.
        let raw = bio.into_raw();
        let mut req = bindings::dm_io_request::default();
        // SAFETY: `raw` is live, `req` and `regions` are valid for the call,
        // and `notify` matches `io_notify_fn`. dm-io copies what it needs
        // from `req` and `regions` before returning.
        let ret = unsafe {
            bindings::dmmr_io_request_init(
                &mut req,
                opf,
                raw,
                no_data,
                Some(notify),
                raw.cast(),
                self.client.as_ptr(),
            );
            bindings::dm_io(
                &mut req,
                regions.len() as u32,
                regions.as_mut_ptr(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                bindings::dmmr_ioprio_default(),
            )
        };
        if ret != 0 {
            // dm-io refused before taking the bio (only for malformed requests).
            // SAFETY: the bio is still ours: dm-io calls `notify` only when it
            // accepted the request.
            unsafe {
                (*raw).bi_status = bindings::BLK_STS_IOERR;
                bindings::bio_endio(raw);
            }
        }
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

/// The target and the bio behind a dm-io completion's `context`.
///
/// # Safety
///
/// `context` is a bio the target handed to dm-io ([`IoClient::write_all`],
/// [`IoClient::read`]), still owned by the target: dm core waits for it
/// before the destructor, so its per-bio data holds the `ti` the map
/// trampoline stored, and `ti->private` the live instance. (dm core waits
/// for the bio, not for this callback to return: a callback that hands the
/// bio on and then still uses the instance relies, like dm-raid1's
/// `queue_bio`, on the destructor's `stop` flushing the worker that
/// completes it.)
unsafe fn completion<'a, T: IoCompletion>(context: *mut c_void) -> Option<(&'a T, OwnedBio<T>)> {
    let bio = NonNull::new(context.cast::<bindings::bio>())?;
    // SAFETY: per the function's contract.
    unsafe {
        let ti = (*per_bio::<T>(bio.as_ptr())).ti;
        Some((super::private::<T>(ti), OwnedBio::<T>::from_raw(bio)))
    }
}

/// dm-io's completion of a write: hands the bio back to the target.
///
/// # Safety
///
/// Called by dm-io only, with the `context` given in [`IoClient::write_all`].
unsafe extern "C" fn write_notify<T: IoCompletion>(
    error: c_ulong,
    unsup: c_ulong,
    context: *mut c_void,
) {
    // SAFETY: `context` is the bio `write_all` handed to dm-io.
    if let Some((target, bio)) = unsafe { completion::<T>(context) } {
        target.write_done(bio, error as u64, unsup as u64);
    }
}

/// dm-io's completion of a read.
///
/// # Safety
///
/// Called by dm-io only, with the `context` given in [`IoClient::read`].
unsafe extern "C" fn read_notify<T: IoCompletion>(
    error: c_ulong,
    unsup: c_ulong,
    context: *mut c_void,
) {
    // SAFETY: `context` is the bio `read` handed to dm-io.
    if let Some((target, bio)) = unsafe { completion::<T>(context) } {
        target.read_done(bio, error != 0, unsup != 0);
    }
}
