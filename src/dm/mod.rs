// SPDX-License-Identifier: GPL-2.0

//! The device-mapper abstraction layer: the only code of this module that
//! talks to C (dm-mod, dm-io, dm-log) and the only code with `unsafe`.
//!
//! A target implements [`TargetOperations`]; [`Registration`] registers it with
//! dm core through trampolines that turn the C callbacks into calls on the
//! target's private data (`ti->private`, a pinned `KBox<T>`).

mod args;
mod bindings;
pub(crate) mod bio;
pub(crate) mod buffer_io;
#[cfg(not(dmmr_no_region_hash))]
pub(crate) mod dirty_log;
pub(crate) mod io;
#[cfg(not(dmmr_no_region_hash))]
pub(crate) mod kcopyd;
#[macro_use]
pub(crate) mod print;
#[macro_use]
pub(crate) mod param;
#[cfg(not(dmmr_no_region_hash))]
pub(crate) mod region_hash;
pub(crate) mod target;
pub(crate) mod worker;

pub(crate) use args::Args;
pub(crate) use bio::{Bio, BioDetails, BioKind, BioList, EndIo, Mapped, OpFlags, OwnedBio, Status};
#[cfg(not(dmmr_no_region_hash))]
pub(crate) use region_hash::Region;
pub(crate) use target::{Device, Target};

use core::{ffi::CStr, pin::Pin, ptr::NonNull};
use kernel::{
    alloc::KBox,
    error::{code::EINVAL, Error, Result, VTABLE_DEFAULT_ERROR},
    ffi::{c_char, c_int, c_uint, c_void},
    prelude::*,
    str::CStrExt,
    time::{ClockSource, Monotonic},
    types::ForeignOwnable,
    ThisModule,
};

/// What `dmsetup status` / `dmsetup table` asks for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum StatusType {
    /// `dmsetup status`.
    Info,
    /// `dmsetup table`.
    Table,
    /// The IMA measurement string.
    Ima,
}

impl StatusType {
    fn from_raw(t: bindings::status_type_t) -> Self {
        match t {
            bindings::status_type_t_STATUSTYPE_TABLE => Self::Table,
            bindings::status_type_t_STATUSTYPE_IMA => Self::Ima,
            _ => Self::Info,
        }
    }

    fn raw(self) -> bindings::status_type_t {
        match self {
            Self::Info => bindings::status_type_t_STATUSTYPE_INFO,
            Self::Table => bindings::status_type_t_STATUSTYPE_TABLE,
            Self::Ima => bindings::status_type_t_STATUSTYPE_IMA,
        }
    }
}

/// A failed constructor: the `ti->error` text and the errno.
pub(crate) struct CtrError {
    /// What dm core prints as the reason.
    pub(crate) msg: &'static CStr,
    /// Returned to dm core (`-EINVAL` for bad input).
    pub(crate) err: Error,
}

impl CtrError {
    /// Bad input: `-EINVAL` with `msg`.
    pub(crate) fn invalid(msg: &'static CStr) -> Self {
        Self { msg, err: EINVAL }
    }
}

/// A device-mapper target type: what dm core calls for each target instance.
///
/// The instance is `Self`, built by [`TargetOperations::ctr`] and owned by
/// dm core through `ti->private` (as a `Pin<KBox<Self>>`, a
/// [`ForeignOwnable`]) until the destructor drops it. Only `ctr` and `map`
/// are required; dm core sees the other hooks only when the target
/// implements them (`#[vtable]`). Services the target uses have their own
/// completion traits: [`io::IoCompletion`], [`kcopyd::CopyCompletion`],
/// [`region_hash::RegionHashCallbacks`], [`dirty_log::DirtyLogCallbacks`]
/// and [`worker::WorkerCallback`].
#[vtable]
pub(crate) trait TargetOperations: Sized + Send + Sync {
    /// The target's record in each bio's per-bio data, set in `map`.
    type PerBio: Default + Copy;

    /// Builds the instance from its table line. Process context, may sleep.
    fn ctr(target: &mut Target<Self>, args: &Args<'_>) -> Result<Pin<KBox<Self>>, CtrError>;

    /// Maps a bio: remap it, keep it, or kill it. Process context or the
    /// submitter's context; must not sleep.
    fn map(&self, bio: Bio<'_, Self>) -> Mapped;

    /// Sees every bio `map` saw complete, also those the target completed
    /// itself. Any context, hardirq included; must not sleep.
    fn end_io(&self, _bio: Bio<'_, Self>, _status: Status) -> EndIo {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called by the destructor before the instance is dropped, with no
    /// bio in flight: stop everything that could still call back into it
    /// (workers). Process context.
    fn stop(&self) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Writes `dmsetup status` or `dmsetup table` output. Process context.
    fn status(&self, _kind: StatusType, _out: &mut StatusWriter<'_>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles `dmsetup message`; `Ok(true)` when it wrote a reply to `out`.
    /// Process context.
    fn message(&self, _args: &[&str], _out: &mut StatusWriter<'_>) -> Result<bool> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Calls `f(device, start)` for every device the target maps to,
    /// stopping at the first non-zero result, which it returns. Process
    /// context.
    fn iterate_devices(&self, _f: &mut dyn FnMut(&Device, u64) -> i32) -> i32 {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Before suspend. Process context.
    fn presuspend(&self) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The suspend that called `presuspend` failed or was interrupted (a
    /// signal while dm core waited for I/O): the target goes on running as
    /// if it had not been asked to suspend. Process context.
    fn presuspend_undo(&self) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// After suspend: no bio of the target is in flight. Process context.
    fn postsuspend(&self) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// On resume. Process context.
    fn resume(&self) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The bounded writer over the result buffer of a status or message call,
/// like dm's `DMEMIT`: the core's [`BufWriter`](crate::mcore::status::BufWriter),
/// tested on the host.
pub(crate) use crate::mcore::status::BufWriter as StatusWriter;

/// A registered target type; unregistered on drop.
///
/// # Invariants
///
/// `tt` is registered with dm core for the lifetime of this value, and its
/// callbacks are the trampolines for `T`.
pub(crate) struct Registration<T: TargetOperations> {
    tt: Pin<KBox<bindings::target_type>>,
    _t: core::marker::PhantomData<T>,
}

impl<T: TargetOperations> Registration<T> {
    /// Registers target type `name` (for example `mirror`) with `version`.
    pub(crate) fn new(
        name: &'static CStr,
        version: [u32; 3],
        features: u64,
        module: &'static ThisModule,
    ) -> Result<Self> {
        let tt = bindings::target_type {
            features,
            name: name.as_char_ptr(),
            module: module.as_ptr().cast(),
            version,
            ctr: Some(ctr::<T>),
            dtr: Some(dtr::<T>),
            map: Some(map::<T>),
            end_io: if T::HAS_END_IO {
                Some(end_io::<T>)
            } else {
                None
            },
            presuspend: if T::HAS_PRESUSPEND {
                Some(presuspend::<T>)
            } else {
                None
            },
            presuspend_undo: if T::HAS_PRESUSPEND_UNDO {
                Some(presuspend_undo::<T>)
            } else {
                None
            },
            postsuspend: if T::HAS_POSTSUSPEND {
                Some(postsuspend::<T>)
            } else {
                None
            },
            resume: if T::HAS_RESUME {
                Some(resume::<T>)
            } else {
                None
            },
            status: if T::HAS_STATUS {
                Some(status::<T>)
            } else {
                None
            },
            message: if T::HAS_MESSAGE {
                Some(message::<T>)
            } else {
                None
            },
            iterate_devices: if T::HAS_ITERATE_DEVICES {
                Some(iterate_devices::<T>)
            } else {
                None
            },
            ..Default::default()
        };
        let mut tt = KBox::pin(tt, GFP_KERNEL)?;
        // SAFETY: `tt` is fully initialised, pinned (dm core links it into its
        // list) and stays alive until `drop` unregisters it.
        let ret = unsafe { bindings::dm_register_target(tt.as_mut().get_unchecked_mut()) };
        kernel::error::to_result(ret)?;
        // INVARIANT: registered just above.
        Ok(Self {
            tt,
            _t: core::marker::PhantomData,
        })
    }
}

impl<T: TargetOperations> Drop for Registration<T> {
    fn drop(&mut self) {
        // SAFETY: registered (type invariant); dm core holds a module reference
        // for every live target of this type, so none is left when the module
        // unloads and drops this.
        unsafe { bindings::dm_unregister_target(self.tt.as_mut().get_unchecked_mut()) };
    }
}

// SAFETY: the registration is only touched at module init and exit.
unsafe impl<T: TargetOperations> Send for Registration<T> {}
// SAFETY: as above; shared references give no access.
unsafe impl<T: TargetOperations> Sync for Registration<T> {}

/// The instance behind `ti->private`.
///
/// # Safety
///
/// `ti` must be a target of type `T` that `ctr::<T>` constructed (so that
/// `private` came from [`ForeignOwnable::into_foreign`] on a
/// `Pin<KBox<T>>`) and that `dtr::<T>` does not drop during `'a`.
unsafe fn private<'a, T: TargetOperations>(ti: *mut bindings::dm_target) -> &'a T {
    // SAFETY: per the function's contract `private` came from
    // `into_foreign` and is passed to `from_foreign` only after `'a`.
    unsafe { <Pin<KBox<T>> as ForeignOwnable>::borrow((*ti).private) }.get_ref()
}

/// `ctr` of the target type.
///
/// # Safety
///
/// Called by dm core only: `ti` is a target under construction and `argv`
/// holds `argc` NUL-terminated words.
unsafe extern "C" fn ctr<T: TargetOperations>(
    ti: *mut bindings::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
) -> c_int {
    let mut words: [&str; args::MAX_ARGS] = [""; args::MAX_ARGS];
    // SAFETY: dm core passes a target under construction that stays live
    // during and after this call (until `dtr`); this is `T`'s constructor,
    // which stores a `T` in `private` when it succeeds.
    let mut target = unsafe { Target::<T>::from_raw(ti) };
    // SAFETY: dm core's `argv` holds `argc` NUL-terminated words that live
    // until the constructor returns.
    let args = match unsafe { Args::from_raw(argc, argv, &mut words) } {
        Ok(a) => a,
        Err(e) => {
            target.set_error(c"Too many or malformed arguments");
            dm_err!("constructor: too many or malformed (non-UTF-8) arguments");
            return e.to_errno();
        }
    };
    match T::ctr(&mut target, &args) {
        Ok(t) => {
            target.set_per_bio_data_size(core::mem::size_of::<bio::PerBioData<T::PerBio>>());
            // SAFETY: `ti` is live and being constructed; dm core keeps
            // `private` for us until `dtr`, which takes the box back.
            unsafe { (*ti).private = t.into_foreign() };
            0
        }
        Err(e) => {
            target.set_error(e.msg);
            e.err.to_errno()
        }
    }
}

/// `dtr` of the target type.
///
/// # Safety
///
/// Called by dm core only, once, for a target `ctr::<T>` constructed, with no
/// I/O in flight.
unsafe extern "C" fn dtr<T: TargetOperations>(ti: *mut bindings::dm_target) {
    if T::HAS_STOP {
        // SAFETY: a constructed target with no I/O left: quiesce what could
        // call back while it is still shared.
        unsafe { private::<T>(ti) }.stop();
    }
    // SAFETY: `ctr::<T>` succeeded, so `private` came from `into_foreign`;
    // dm core calls `dtr` once, with no I/O left, and `stop` ended every
    // callback, so no borrow outlives this.
    let instance = unsafe { <Pin<KBox<T>> as ForeignOwnable>::from_foreign((*ti).private) };
    // SAFETY: `ti` is live until dm core frees it after `dtr`.
    unsafe { (*ti).private = core::ptr::null_mut() };
    drop(instance);
}

/// `map` of the target type.
///
/// # Safety
///
/// Called by dm core only, with a live bio of a target `ctr::<T>` constructed.
unsafe extern "C" fn map<T: TargetOperations>(
    ti: *mut bindings::dm_target,
    bio: *mut bindings::bio,
) -> c_int {
    let Some(nn) = NonNull::new(bio) else {
        return bindings::DM_MAPIO_KILL as c_int;
    };
    // SAFETY: dm core maps a live bio of a constructed target; its per-bio
    // data has the size given in `ctr` and is ours to initialise here.
    unsafe {
        bio::per_bio::<T>(bio).write(bio::PerBioData {
            ti,
            record: T::PerBio::default(),
        });
        let b = Bio::<T>::from_raw(nn, (*ti).begin);
        private::<T>(ti).map(b).0
    }
}

/// `end_io` of the target type.
///
/// # Safety
///
/// Called by dm core only, for a bio `map::<T>` saw, with a valid `error`.
unsafe extern "C" fn end_io<T: TargetOperations>(
    ti: *mut bindings::dm_target,
    bio: *mut bindings::bio,
    error: *mut bindings::blk_status_t,
) -> c_int {
    let Some(nn) = NonNull::new(bio) else {
        return bindings::DM_ENDIO_DONE as c_int;
    };
    // SAFETY: dm core calls `end_io` for a bio that `map::<T>` saw (its
    // per-bio data initialised there), with a valid `error` pointer.
    unsafe {
        let b = Bio::<T>::from_raw(nn, (*ti).begin);
        match private::<T>(ti).end_io(b, Status::from_raw(*error)).0 {
            Some(st) => {
                *error = st.raw();
                bindings::DM_ENDIO_DONE as c_int
            }
            // The target kept the bio to send it again.
            None => bindings::DM_ENDIO_INCOMPLETE as c_int,
        }
    }
}

/// `presuspend` of the target type.
///
/// # Safety
///
/// Called by dm core only, for a constructed target.
unsafe extern "C" fn presuspend<T: TargetOperations>(ti: *mut bindings::dm_target) {
    // SAFETY: a constructed target.
    unsafe { private::<T>(ti) }.presuspend();
}

/// `presuspend_undo` of the target type.
///
/// # Safety
///
/// Called by dm core only, for a constructed target.
unsafe extern "C" fn presuspend_undo<T: TargetOperations>(ti: *mut bindings::dm_target) {
    // SAFETY: a constructed target.
    unsafe { private::<T>(ti) }.presuspend_undo();
}

/// `postsuspend` of the target type.
///
/// # Safety
///
/// Called by dm core only, for a constructed target.
unsafe extern "C" fn postsuspend<T: TargetOperations>(ti: *mut bindings::dm_target) {
    // SAFETY: a constructed target.
    unsafe { private::<T>(ti) }.postsuspend();
}

/// `resume` of the target type.
///
/// # Safety
///
/// Called by dm core only, for a constructed target.
unsafe extern "C" fn resume<T: TargetOperations>(ti: *mut bindings::dm_target) {
    // SAFETY: a constructed target.
    unsafe { private::<T>(ti) }.resume();
}

/// `status` of the target type.
///
/// # Safety
///
/// Called by dm core only, for a constructed target, with a writable buffer
/// of `maxlen` bytes at `result`.
unsafe extern "C" fn status<T: TargetOperations>(
    ti: *mut bindings::dm_target,
    kind: bindings::status_type_t,
    _flags: c_uint,
    result: *mut c_char,
    maxlen: c_uint,
) {
    if result.is_null() || maxlen == 0 {
        return;
    }
    // SAFETY: dm core passes a writable buffer of `maxlen` bytes that nothing
    // else touches during the call.
    let buf = unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), maxlen as usize) };
    let mut out = StatusWriter::new(buf);
    // SAFETY: a constructed target.
    unsafe { private::<T>(ti) }.status(StatusType::from_raw(kind), &mut out);
}

/// `message` of the target type.
///
/// # Safety
///
/// Called by dm core only, for a constructed target, with `argc` words in
/// `argv` and a writable buffer of `maxlen` bytes at `result`.
unsafe extern "C" fn message<T: TargetOperations>(
    ti: *mut bindings::dm_target,
    argc: c_uint,
    argv: *mut *mut c_char,
    result: *mut c_char,
    maxlen: c_uint,
) -> c_int {
    let mut words: [&str; args::MAX_ARGS] = [""; args::MAX_ARGS];
    // SAFETY: dm core's `argv` holds `argc` NUL-terminated words for the call.
    let Ok(args) = (unsafe { Args::from_raw(argc, argv, &mut words) }) else {
        dm_err!("message: too many or malformed (non-UTF-8) arguments");
        return EINVAL.to_errno();
    };
    let mut empty = [0u8; 1];
    let buf: &mut [u8] = if result.is_null() || maxlen == 0 {
        &mut empty
    } else {
        // SAFETY: dm core passes a writable buffer of `maxlen` bytes.
        unsafe { core::slice::from_raw_parts_mut(result.cast::<u8>(), maxlen as usize) }
    };
    let mut out = StatusWriter::new(buf);
    // SAFETY: a constructed target.
    match unsafe { private::<T>(ti) }.message(args.words(), &mut out) {
        // dm-ioctl returns the result buffer to userspace when we answer 1.
        Ok(true) => 1,
        Ok(false) => 0,
        Err(e) => e.to_errno(),
    }
}

/// `iterate_devices` of the target type.
///
/// # Safety
///
/// Called by dm core only, for a constructed target, with a callout that
/// accepts `data`.
unsafe extern "C" fn iterate_devices<T: TargetOperations>(
    ti: *mut bindings::dm_target,
    callout: bindings::iterate_devices_callout_fn,
    data: *mut c_void,
) -> c_int {
    let Some(callout) = callout else {
        return 0;
    };
    // SAFETY: a constructed target; `ti->len` is fixed.
    let (t, len) = unsafe { (private::<T>(ti), (*ti).len) };
    t.iterate_devices(&mut |dev, start| {
        // SAFETY: dm core's callout takes the target, one of its devices, and
        // the `data` it passed us.
        unsafe { callout(ti, dev.as_raw(), start, len, data) }
    })
}

impl Status {
    fn from_raw(s: bindings::blk_status_t) -> Self {
        bio::Status::from_u8(s)
    }
    fn raw(self) -> bindings::blk_status_t {
        self.to_u8()
    }
}

/// `DM_TARGET_ATOMIC_WRITES`: the target passes `REQ_ATOMIC` writes on intact.
pub(crate) const TARGET_ATOMIC_WRITES: u64 = bindings::DM_TARGET_ATOMIC_WRITES as u64;

/// Monotonic time in nanoseconds (`ktime_get()`), for I/O latency and rate
/// limits. Any context but NMI.
pub(crate) fn now_ns() -> u64 {
    // `ktime_get()` is never negative.
    u64::try_from(<Monotonic as ClockSource>::ktime_get()).unwrap_or(0)
}
