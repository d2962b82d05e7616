// SPDX-License-Identifier: GPL-2.0

//! The target's worker: one work item on a private, reclaim-safe work queue
//! (dm-raid1's `kmirrord`), calling [`TargetOperations::work`].

use super::{bindings, target::Target, TargetOperations};
use core::{ffi::CStr, marker::PhantomData, ptr::NonNull};
use kernel::{
    alloc::KBox,
    error::{code::ENOMEM, Result},
    prelude::*,
    str::CStrExt,
};

/// The work item and the target it works for.
///
/// `work` must stay the first field: the work function gets a pointer to it
/// and casts it back to the whole struct.
#[repr(C)]
struct WorkItem {
    work: bindings::work_struct,
    ti: *mut bindings::dm_target,
}

/// A work queue with one work item for target `T`.
///
/// # Invariants
///
/// `wq` is a live work queue and `item` an initialised work item for `item.ti`,
/// whose private data is a `T` from the end of the constructor until the
/// destructor has called [`Worker::flush`] (the dtr trampoline calls
/// [`TargetOperations::stop`], which must flush, before dropping `T`).
pub(crate) struct Worker<T: TargetOperations> {
    wq: NonNull<bindings::workqueue_struct>,
    item: KBox<WorkItem>,
    _t: PhantomData<T>,
}

impl<T: TargetOperations> Worker<T> {
    /// Creates the queue `name` and a work item for `target`.
    pub(crate) fn new(target: &Target, name: &'static CStr) -> Result<Self> {
        let mut item = KBox::new(
            WorkItem {
                work: bindings::work_struct::default(),
                ti: target.as_raw(),
            },
            GFP_KERNEL,
        )?;
        // SAFETY: `item.work` is valid, boxed (it never moves) and not queued.
        unsafe { bindings::dmmr_init_work(&mut item.work, Some(work_fn::<T>)) };
        // SAFETY: `name` is NUL-terminated and static.
        let wq = unsafe { bindings::dmmr_alloc_workqueue(name.as_char_ptr()) };
        let wq = NonNull::new(wq).ok_or(ENOMEM)?;
        // INVARIANT: a fresh queue and work item for `target`.
        Ok(Self {
            wq,
            item,
            _t: PhantomData,
        })
    }

    /// Queues the work item (a no-op while it is queued and not yet running).
    /// Callable from any context, I/O completion included.
    pub(crate) fn queue(&self) {
        let work = core::ptr::from_ref(&self.item.work).cast_mut();
        // SAFETY: both are live (type invariant); the work item's memory is
        // only written by the work queue code, which owns its synchronisation.
        unsafe { bindings::dmmr_queue_work(self.wq.as_ptr(), work) };
    }

    /// Waits until the work item is idle (not queued, not running).
    pub(crate) fn flush(&self) {
        // SAFETY: `wq` is live. May sleep: process context only.
        unsafe { bindings::dmmr_flush_workqueue(self.wq.as_ptr()) };
    }
}

impl<T: TargetOperations> Drop for Worker<T> {
    fn drop(&mut self) {
        // SAFETY: `wq` is live and destroyed once; destroying drains it, so
        // the work item is idle before its box is freed.
        unsafe { bindings::destroy_workqueue(self.wq.as_ptr()) };
    }
}

// SAFETY: queueing and flushing are allowed from any thread.
unsafe impl<T: TargetOperations> Send for Worker<T> {}
// SAFETY: as above; `&self` only queues or flushes.
unsafe impl<T: TargetOperations> Sync for Worker<T> {}

/// The work function.
///
/// # Safety
///
/// Called by the work queue only, for a work item of a [`Worker<T>`].
unsafe extern "C" fn work_fn<T: TargetOperations>(work: *mut bindings::work_struct) {
    // SAFETY: `work` is the first field of a `WorkItem` (repr(C)); per the
    // `Worker` invariant its target holds a `T` while work can run.
    unsafe {
        let item = work.cast::<WorkItem>();
        super::private::<T>((*item).ti).work();
    }
}
