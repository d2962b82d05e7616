// SPDX-License-Identifier: GPL-2.0

//! dm-io from and into the target's own buffers (no bio of dm core behind
//! them): a mirror's copies of writes it already acknowledged, and its
//! private reads that measure a leg.
//!
//! dm core waits for the target's bios before a suspend ends and before the
//! destructor, but it knows nothing of these. [`BufferIos`] counts them,
//! and its completion path touches the instance for the last time when it
//! drops that count's lock, so a destructor that waited for the count
//! ([`BufferIos::wait_idle`], in `stop`) never frees an instance a
//! completion still uses.

use super::{bindings, io::IoClient, target::Device, target::Target, OpFlags, TargetOperations};
use kernel::{
    alloc::{KBox, KVVec},
    error::Result,
    ffi::{c_ulong, c_void},
    new_condvar, new_spinlock_irq,
    prelude::*,
    sync::{CondVar, SpinLockIrq},
};

/// The completions of [`BufferIos::write`] and [`BufferIos::read`].
/// dm-io calls them from the completion context of its last bio (softirq
/// or process): they must not sleep.
pub(crate) trait BufferCompletion: TargetOperations {
    /// The write of `buf` with `tag` ended; `failed`: the device reported
    /// an error. The buffer is the target's again.
    fn buffer_written(&self, buf: KVVec<u8>, tag: u64, failed: bool);

    /// The read into `buf` with `tag` ended; `failed`: the device reported
    /// an error.
    fn buffer_read(&self, buf: KVVec<u8>, tag: u64, failed: bool);

    /// The instance's counter of these I/Os.
    fn buffer_ios(&self) -> &BufferIos;
}

/// What a buffer I/O's dm-io context points to.
struct IoContext {
    ti: *mut bindings::dm_target,
    buf: KVVec<u8>,
    tag: u64,
    read: bool,
}

/// A buffer of whole sectors with what its I/O will need, allocated in
/// advance so that submitting it cannot fail for memory.
pub(crate) struct IoBuffer(KBox<IoContext>);

impl IoBuffer {
    /// Wraps `buf` (a non-empty multiple of 512 bytes), allocating with
    /// `flags`; `Err` gives the buffer back.
    pub(crate) fn new(buf: KVVec<u8>, flags: kernel::alloc::Flags) -> Result<Self, KVVec<u8>> {
        if buf.is_empty() || buf.len() % 512 != 0 {
            return Err(buf);
        }
        let Ok(uninit) = KBox::<IoContext>::new_uninit(flags) else {
            return Err(buf);
        };
        Ok(Self(KBox::write(
            uninit,
            IoContext {
                ti: core::ptr::null_mut(),
                buf,
                tag: 0,
                read: false,
            },
        )))
    }
}

// SAFETY: the raw target pointer is only set and used by `submit` and its
// completion; the rest is owned data.
unsafe impl Send for IoBuffer {}

/// The count of a target's buffer I/Os in flight.
///
/// # Invariants
///
/// `in_flight` is the number of I/Os submitted by [`BufferIos::write`] or
/// [`BufferIos::read`] whose completion has not yet released the lock after
/// decrementing it.
#[pin_data]
pub(crate) struct BufferIos {
    #[pin]
    in_flight: SpinLockIrq<usize>,
    #[pin]
    idle: CondVar,
}

impl BufferIos {
    /// No I/O in flight.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            in_flight <- new_spinlock_irq!(0, "BufferIos::in_flight"),
            idle <- new_condvar!("BufferIos::idle"),
        })
    }

    /// Waits until every I/O submitted so far has completed and its
    /// completion is done with the instance. Process context.
    pub(crate) fn wait_idle(&self) {
        let mut n = self.in_flight.lock();
        while *n > 0 {
            self.idle.wait(&mut n);
        }
    }

    /// Writes `write`'s buffer to `to` (a device and sector) with `flags` (of a
    /// write); when it ends, `T::buffer_written(buf, tag, failed)` is called.
    /// May sleep (dm-io allocates): process context. `Err` gives the buffer
    /// back if dm-io refused the request (it then never calls back).
    pub(crate) fn write<T: BufferCompletion>(
        &self,
        target: &Target<T>,
        io: &IoClient,
        to: (&Device, u64),
        write: IoBuffer,
        tag: u64,
        flags: OpFlags,
    ) -> Result<(), KVVec<u8>> {
        self.submit(target, io, to, write, tag, Some(flags))
    }

    /// Reads into `read`'s buffer from `from` (a device and sector); when it
    /// ends, `T::buffer_read(buf, tag, failed)` is called. Process context,
    /// as [`BufferIos::write`].
    pub(crate) fn read<T: BufferCompletion>(
        &self,
        target: &Target<T>,
        io: &IoClient,
        from: (&Device, u64),
        read: IoBuffer,
        tag: u64,
    ) -> Result<(), KVVec<u8>> {
        self.submit(target, io, from, read, tag, None)
    }

    /// A write with `write_flags`, or a read if `None`.
    fn submit<T: BufferCompletion>(
        &self,
        target: &Target<T>,
        io: &IoClient,
        at: (&Device, u64),
        buffer: IoBuffer,
        tag: u64,
        write_flags: Option<OpFlags>,
    ) -> Result<(), KVVec<u8>> {
        let (opf, read) = match write_flags {
            Some(flags) => (bindings::req_op_REQ_OP_WRITE | flags.raw(), false),
            None => (bindings::req_op_REQ_OP_READ, true),
        };
        // The completion reaches the instance through `ti->private`.
        const { assert!(T::HAS_STOP, "a target with BufferIos must implement stop()") };
        let mut ctx = buffer.0;
        ctx.ti = target.as_raw();
        ctx.tag = tag;
        ctx.read = read;
        let count = (ctx.buf.len() / 512) as u64;
        let ctx = KBox::into_raw(ctx);
        *self.in_flight.lock() += 1;
        let (dev, sector) = at;
        let mut region = [bindings::dm_io_region {
            bdev: dev.bdev(),
            sector,
            count,
        }];
        let mut req = bindings::dm_io_request::default();
        // SAFETY: `ctx` is a live box we leaked; its buffer holds `count`
        // whole sectors (`IoBuffer::new`) and stays put until the
        // completion takes the box back. `req` and `region` are valid for
        // the call (dm-io copies them), the device is held open by the
        // target, and `buffer_notify::<T>` matches `io_notify_fn`.
        let ret = unsafe {
            bindings::dmmr_io_request_init_buf(
                &mut req,
                opf,
                (*ctx).buf.as_mut_ptr().cast(),
                Some(buffer_notify::<T>),
                ctx.cast(),
                io.as_raw(),
            );
            bindings::dm_io(
                &mut req,
                1,
                region.as_mut_ptr(),
                core::ptr::null_mut(),
                core::ptr::null_mut(),
                bindings::dmmr_ioprio_default(),
            )
        };
        if ret != 0 {
            // SAFETY: dm-io refused the request and will not call back: the
            // box is still ours.
            let ctx = unsafe { KBox::from_raw(ctx) };
            *self.in_flight.lock() -= 1;
            return Err(KBox::into_inner(ctx).buf);
        }
        Ok(())
    }

    /// A completion is done with the instance: the last thing it does.
    fn end(&self) {
        let mut n = self.in_flight.lock();
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.idle.notify_all();
        }
        // The guard drops here: the waiter in `wait_idle` returns only after
        // taking the lock, so after this completion stopped touching `self`.
    }
}

/// dm-io's completion of a buffer I/O.
///
/// # Safety
///
/// Called by dm-io only, with the `context` given in [`BufferIos::write`].
unsafe extern "C" fn buffer_notify<T: BufferCompletion>(
    error: c_ulong,
    _unsup: c_ulong,
    context: *mut c_void,
) {
    // SAFETY: `context` is the box `write` leaked, handed back once.
    let ctx = unsafe { KBox::from_raw(context.cast::<IoContext>()) };
    let IoContext { ti, buf, tag, read } = KBox::into_inner(ctx);
    // SAFETY: the instance is live: the destructor's `stop` waits
    // (`wait_idle`) for this I/O's count, which only `end` below drops.
    let target = unsafe { super::private::<T>(ti) };
    if read {
        target.buffer_read(buf, tag, error != 0);
    } else {
        target.buffer_written(buf, tag, error != 0);
    }
    target.buffer_ios().end();
}
