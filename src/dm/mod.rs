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
pub(crate) mod dirty_log;
pub(crate) mod io;
pub(crate) mod kcopyd;
#[macro_use]
pub(crate) mod print;
pub(crate) mod region_hash;
pub(crate) mod target;
pub(crate) mod worker;

pub(crate) use args::Args;
pub(crate) use bio::{Bio, BioDetails, BioKind, BioList, EndIo, Mapped, OwnedBio, Status};
pub(crate) use region_hash::Region;
pub(crate) use target::{Device, Target};

use core::{ffi::CStr, pin::Pin, ptr::NonNull};
use kernel::{
    alloc::KBox,
    error::{code::EINVAL, Error, Result},
    ffi::{c_char, c_int, c_uint, c_void},
    prelude::*,
    str::CStrExt,
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

/// The callbacks of a device-mapper target type.
pub(crate) trait TargetOperations: Sized + Send + Sync {
    /// The target's record in each bio's per-bio data, set in `map`.
    type PerBio: Default + Copy;

    /// Builds the target from its table line.
    fn ctr(target: &mut Target, args: &Args<'_>) -> Result<Pin<KBox<Self>>, CtrError>;

    /// Maps a bio: remap it, hand it to dm-io, or kill it.
    fn map(&self, bio: Bio<'_, Self>) -> Mapped;

    /// Sees every bio of the target complete (also those it completed itself).
    fn end_io(&self, bio: Bio<'_, Self>, status: Status) -> EndIo;

    /// Gets back a bio given to [`io::IoClient::write_all`], with one bit set
    /// per destination that failed, or that did not support the operation.
    fn write_done(&self, bio: OwnedBio<Self>, failed: u64, unsupported: u64);

    /// Gets back a bio given to [`io::IoClient::read`].
    fn read_done(&self, bio: OwnedBio<Self>, failed: bool, unsupported: bool);

    /// A [`kcopyd::Kcopyd::copy`] of `region` ended.
    fn copy_done(&self, region: Region, read_failed: bool, write_failed: u64);

    /// The region hash hands back writes it delayed during a recovery.
    fn dispatch_delayed(&self, bios: BioList<Self>);

    /// The region hash asks for the worker to run. Any context.
    fn wake(&self);

    /// The body of the target's [`worker::Worker`].
    fn work(&self);

    /// Called by the destructor before the target is dropped: stop and flush
    /// everything that could still call back into it (the worker).
    fn stop(&self);

    /// The dirty log asks for the legs' caches to be flushed (disk log,
    /// before it records regions as clean). Process context.
    fn flush_legs(&self) -> Result;

    /// Writes `dmsetup status` or `dmsetup table` output.
    fn status(&self, kind: StatusType, out: &mut StatusWriter<'_>);

    /// Handles `dmsetup message`; `Ok(true)` when it wrote a reply to `out`.
    fn message(&self, args: &[&str], out: &mut StatusWriter<'_>) -> Result<bool>;

    /// Calls `f(device, start, len)` for every device the target maps to,
    /// stopping at the first non-zero result, which it returns.
    fn iterate_devices(&self, f: &mut dyn FnMut(&Device, u64) -> i32) -> i32;

    /// Before suspend. Process context.
    fn presuspend(&self) {}
    /// The suspend that called `presuspend` failed or was interrupted (a
    /// signal while dm core waited for I/O): the target goes on running as
    /// if it had not been asked to suspend. Process context.
    fn presuspend_undo(&self) {}
    /// After suspend: no I/O is in flight.
    fn postsuspend(&self) {}
    /// On resume.
    fn resume(&self) {}
}

/// A bounded writer over the result buffer of a status or message call, like
/// dm's `DMEMIT`: output is truncated at the buffer's end and kept NUL-terminated.
pub(crate) struct StatusWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> StatusWriter<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        if let Some(b) = buf.first_mut() {
            *b = 0;
        }
        Self { buf, pos: 0 }
    }

    /// Lets C write at the current position: `f(buf, maxlen)` returns the
    /// number of bytes it wrote (not counting the NUL).
    fn append_raw(&mut self, f: impl FnOnce(*mut c_char, c_uint) -> c_int) {
        let room = self.buf.len().saturating_sub(self.pos);
        if room == 0 {
            return;
        }
        let ptr = self.buf[self.pos..].as_mut_ptr().cast();
        let n = f(ptr, room as c_uint);
        let n = usize::try_from(n).unwrap_or(0);
        // C status methods return the length they wrote, which snprintf may
        // have truncated: find the real end.
        let end = self.buf[self.pos..]
            .iter()
            .position(|&b| b == 0)
            .map_or(self.buf.len(), |p| self.pos + p);
        self.pos = end.min(self.pos + n.max(end - self.pos));
        if self.pos >= self.buf.len() {
            self.pos = self.buf.len() - 1;
            self.buf[self.pos] = 0;
        }
    }
}

impl core::fmt::Write for StatusWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        // Leave room for the NUL.
        let room = self.buf.len().saturating_sub(self.pos + 1);
        let n = s.len().min(room);
        self.buf[self.pos..self.pos + n].copy_from_slice(&s.as_bytes()[..n]);
        self.pos += n;
        if let Some(b) = self.buf.get_mut(self.pos) {
            *b = 0;
        }
        if n < s.len() {
            Err(core::fmt::Error)
        } else {
            Ok(())
        }
    }
}

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
            end_io: Some(end_io::<T>),
            presuspend: Some(presuspend::<T>),
            presuspend_undo: Some(presuspend_undo::<T>),
            postsuspend: Some(postsuspend::<T>),
            resume: Some(resume::<T>),
            status: Some(status::<T>),
            message: Some(message::<T>),
            iterate_devices: Some(iterate_devices::<T>),
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

/// The target's private data.
///
/// # Safety
///
/// `ti` must be a constructed target of type `T` (its `private` set by `ctr::<T>`)
/// that is not being destroyed.
unsafe fn private<'a, T: TargetOperations>(ti: *mut bindings::dm_target) -> &'a T {
    // SAFETY: per the function's contract `private` holds a live `T`, freed only in `dtr`.
    unsafe { &*(*ti).private.cast::<T>() }
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
    // during and after this call (until `dtr`).
    let mut target = unsafe { Target::from_raw(ti) };
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
            target.set_io_shape(1, 1, core::mem::size_of::<bio::PerBioData<T::PerBio>>());
            // SAFETY: the pinned box is never moved again: its raw pointer
            // lives in `ti->private` until `dtr` rebuilds the box and drops it.
            let raw = KBox::into_raw(unsafe { Pin::into_inner_unchecked(t) });
            // SAFETY: `ti` is live and being constructed.
            unsafe { (*ti).private = raw.cast() };
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
    // SAFETY: a constructed target with no I/O left: quiesce its workers
    // while it is still shared.
    unsafe { private::<T>(ti) }.stop();
    // SAFETY: `ctr::<T>` succeeded, so `private` is the pointer of a pinned
    // `KBox<T>`; dm core calls `dtr` once, with no I/O left, and `stop`
    // ended every callback.
    unsafe {
        let raw = (*ti).private.cast::<T>();
        (*ti).private = core::ptr::null_mut();
        drop(Pin::new_unchecked(KBox::from_raw(raw)));
    }
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

/// Monotonic time in nanoseconds (`ktime_get_ns`), for I/O latency.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: no preconditions; callable from any context.
    unsafe { bindings::dmmr_ktime_ns() }
}
