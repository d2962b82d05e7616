// SPDX-License-Identifier: GPL-2.0

//! dm-io writes from the target's own buffers (no bio of dm core behind
//! them): a mirror's copies of writes it already acknowledged.
//!
//! dm core waits for the target's bios before a suspend ends and before the
//! destructor, but it knows nothing of these writes. [`BufferWrites`]
//! counts them, and its completion path touches the instance for the last
//! time when it drops that count's lock, so a destructor that waited for the
//! count ([`BufferWrites::wait_idle`], in `stop`) never frees an instance a
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

/// The completion of a [`BufferWrites::write`]. dm-io calls it from the
/// completion context of its last bio (softirq or process): it must not
/// sleep.
pub(crate) trait BufferCompletion: TargetOperations {
    /// The write of `buf` with `tag` ended; `failed`: the device reported
    /// an error. The buffer is the target's again.
    fn buffer_written(&self, buf: KVVec<u8>, tag: u64, failed: bool);

    /// The instance's counter of these writes.
    fn buffer_writes(&self) -> &BufferWrites;
}

/// What a buffer write's dm-io context points to.
struct BufferIo {
    ti: *mut bindings::dm_target,
    buf: KVVec<u8>,
    tag: u64,
}

/// A buffer of whole sectors with what its write will need, allocated in
/// advance so that submitting it cannot fail for memory.
pub(crate) struct BufferWrite(KBox<BufferIo>);

impl BufferWrite {
    /// Wraps `buf` (a non-empty multiple of 512 bytes), allocating with
    /// `flags`; `Err` gives the buffer back.
    pub(crate) fn new(buf: KVVec<u8>, flags: kernel::alloc::Flags) -> Result<Self, KVVec<u8>> {
        if buf.is_empty() || buf.len() % 512 != 0 {
            return Err(buf);
        }
        let Ok(uninit) = KBox::<BufferIo>::new_uninit(flags) else {
            return Err(buf);
        };
        Ok(Self(KBox::write(
            uninit,
            BufferIo {
                ti: core::ptr::null_mut(),
                buf,
                tag: 0,
            },
        )))
    }
}

// SAFETY: the raw target pointer is only set and used by `write` and its
// completion; the rest is owned data.
unsafe impl Send for BufferWrite {}

/// The count of a target's buffer writes in flight.
///
/// # Invariants
///
/// `in_flight` is the number of writes submitted by [`BufferWrites::write`]
/// whose completion has not yet released the lock after decrementing it.
#[pin_data]
pub(crate) struct BufferWrites {
    #[pin]
    in_flight: SpinLockIrq<usize>,
    #[pin]
    idle: CondVar,
}

impl BufferWrites {
    /// No writes in flight.
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            in_flight <- new_spinlock_irq!(0, "BufferWrites::in_flight"),
            idle <- new_condvar!("BufferWrites::idle"),
        })
    }

    /// Waits until every write submitted so far has completed and its
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
        write: BufferWrite,
        tag: u64,
        flags: OpFlags,
    ) -> Result<(), KVVec<u8>> {
        // The completion reaches the instance through `ti->private`.
        const {
            assert!(
                T::HAS_STOP,
                "a target with BufferWrites must implement stop()"
            )
        };
        let mut ctx = write.0;
        ctx.ti = target.as_raw();
        ctx.tag = tag;
        let count = (ctx.buf.len() / 512) as u64;
        let ctx = KBox::into_raw(ctx);
        *self.in_flight.lock() += 1;
        let (dev, sector) = to;
        let mut region = [bindings::dm_io_region {
            bdev: dev.bdev(),
            sector,
            count,
        }];
        let mut req = bindings::dm_io_request::default();
        // SAFETY: `ctx` is a live box we leaked; its buffer holds `count`
        // whole sectors (`BufferWrite::new`) and stays put until the
        // completion takes the box back. `req` and `region` are valid for
        // the call (dm-io copies them), the device is held open by the
        // target, and `buffer_notify::<T>` matches `io_notify_fn`.
        let ret = unsafe {
            bindings::dmmr_io_request_init_buf(
                &mut req,
                bindings::req_op_REQ_OP_WRITE | flags.raw(),
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

/// dm-io's completion of a buffer write.
///
/// # Safety
///
/// Called by dm-io only, with the `context` given in [`BufferWrites::write`].
unsafe extern "C" fn buffer_notify<T: BufferCompletion>(
    error: c_ulong,
    _unsup: c_ulong,
    context: *mut c_void,
) {
    // SAFETY: `context` is the box `write` leaked, handed back once.
    let ctx = unsafe { KBox::from_raw(context.cast::<BufferIo>()) };
    let BufferIo { ti, buf, tag } = KBox::into_inner(ctx);
    // SAFETY: the instance is live: the destructor's `stop` waits
    // (`wait_idle`) for this write's count, which only `end` below drops.
    let target = unsafe { super::private::<T>(ti) };
    target.buffer_written(buf, tag, error != 0);
    target.buffer_writes().end();
}
