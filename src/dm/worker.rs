// SPDX-License-Identifier: GPL-2.0

//! The target's worker: one work item on a private, reclaim-safe work queue
//! (dm-raid1's `kmirrord`), calling [`WorkerCallback::work`].

use super::{bindings, target::Target, TargetOperations};
use core::{ffi::CStr, marker::PhantomData, ptr::NonNull};
use kernel::{
    alloc::KBox,
    error::{code::ENOMEM, Result},
    prelude::*,
    str::CStrExt,
    types::Opaque,
};

/// The target's work function.
pub(crate) trait WorkerCallback: TargetOperations {
    /// The body of the target's [`Worker`]. Process context (the work
    /// queue), may sleep.
    fn work(&self);
}

/// The work item, its timer, and the target it works for.
///
/// `work` must stay the first field: the work function gets a pointer to it
/// and casts it back to the whole struct. The timer's function finds the
/// struct from `delayed` (C's `container_of`, hence `repr(C)`).
#[repr(C)]
struct WorkItem {
    /// Written by the work queue code (C) whenever it queues or runs it.
    work: Opaque<bindings::work_struct>,
    /// Queues `work` when its timer expires ([`Worker::queue_after`]). A
    /// work item of its own that only queues `work`: the target's work
    /// function never runs twice at once.
    delayed: Opaque<bindings::delayed_work>,
    ti: *mut bindings::dm_target,
    /// The queue both run on; set once, before either can be queued.
    wq: *mut bindings::workqueue_struct,
}

/// Flags of a work queue (`WQ_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueFlags(kernel::ffi::c_uint);

impl QueueFlags {
    /// `WQ_MEM_RECLAIM`: a rescuer thread guarantees progress under memory
    /// pressure (for queues on the I/O path).
    pub(crate) const MEM_RECLAIM: Self = Self(bindings::wq_flags_WQ_MEM_RECLAIM);
    /// `WQ_PERCPU`: work runs on the CPU that queued it.
    pub(crate) const PERCPU: Self = Self(bindings::wq_flags_WQ_PERCPU);

    /// Both sets.
    #[must_use]
    pub(crate) const fn with(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// A work queue with one work item for target `T`.
///
/// # Invariants
///
/// `wq` is a live work queue and `item` holds an initialised work item and
/// an initialised delayed work item for `item.ti`, with `item.wq == wq`; its
/// private data is a `T` from the end of the constructor until the
/// destructor has called [`Worker::flush`] (the dtr trampoline calls
/// [`TargetOperations::stop`], which must flush, before dropping `T`).
pub(crate) struct Worker<T: WorkerCallback> {
    wq: NonNull<bindings::workqueue_struct>,
    item: KBox<WorkItem>,
    _t: PhantomData<T>,
}

impl<T: WorkerCallback> Worker<T> {
    /// Creates the queue `name` with `flags` and a work item for `target`.
    ///
    /// A target with a worker must implement [`TargetOperations::stop`] and
    /// call [`Worker::disable`] there (checked at build time for the first,
    /// documented for the second): the work function reaches the instance
    /// through `ti->private`, so it must be idle before the instance goes.
    pub(crate) fn new(target: &Target<T>, name: &'static CStr, flags: QueueFlags) -> Result<Self> {
        const { assert!(T::HAS_STOP, "a target with a Worker must implement stop()") };
        let mut item = KBox::new(
            WorkItem {
                work: Opaque::uninit(),
                delayed: Opaque::uninit(),
                ti: target.as_raw(),
                wq: core::ptr::null_mut(),
            },
            GFP_KERNEL,
        )?;
        // SAFETY: `item.work` and `item.delayed` are boxed (they never move)
        // and not queued; `INIT_WORK` and `INIT_DELAYED_WORK` initialise them.
        unsafe {
            bindings::dmmr_init_work(item.work.get(), Some(work_fn::<T>));
            bindings::dmmr_init_delayed_work(item.delayed.get(), Some(delayed_fn));
        }
        // SAFETY: `name` is NUL-terminated and static.
        let wq = unsafe { bindings::dmmr_alloc_workqueue(name.as_char_ptr(), flags.0) };
        let wq = NonNull::new(wq).ok_or(ENOMEM)?;
        item.wq = wq.as_ptr();
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
        // SAFETY: both are live and the item initialised (type invariant);
        // the work queue code owns the item's synchronisation, and `Opaque`
        // lets it write through a shared reference.
        unsafe { bindings::dmmr_queue_work(self.wq.as_ptr(), self.item.work.get()) };
    }

    /// Queues the work item in `msecs` milliseconds, unless a timer is
    /// already set (then that one stands). Callable from any context.
    pub(crate) fn queue_after(&self, msecs: u32) {
        // SAFETY: as in `queue`; the delayed item is initialised and its
        // queue set (type invariant), and `Opaque` lets C write it.
        unsafe {
            bindings::dmmr_queue_delayed_work(self.wq.as_ptr(), self.item.delayed.get(), msecs)
        };
    }

    /// Makes the work item run within `msecs` milliseconds (at the next
    /// timer tick for 1): brings forward a timer set for later, leaves one
    /// set sooner. For work that may wait a little and is worth batching:
    /// many calls in a tick cost one run. Callable from any context.
    pub(crate) fn queue_within(&self, msecs: u32) {
        // SAFETY: as in `queue_after`; moving a pending timer is allowed in
        // any context, and the item's function only queues the work item.
        unsafe {
            bindings::dmmr_queue_delayed_work_within(
                self.wq.as_ptr(),
                self.item.delayed.get(),
                msecs,
            )
        };
    }

    /// Waits until the work item is idle (not queued, not running).
    pub(crate) fn flush(&self) {
        // SAFETY: `wq` is live. May sleep: process context only.
        unsafe { bindings::dmmr_flush_workqueue(self.wq.as_ptr()) };
    }

    /// Waits until the work item is idle and makes every later
    /// [`Worker::queue`] a no-op, so a completion that runs after the
    /// target's `stop` cannot start the work function on an instance being
    /// dropped. For `stop`; there is no re-enabling. May sleep.
    pub(crate) fn disable(&self) {
        // SAFETY: both items are initialised (type invariant); disabling
        // cancels the timer, waits for a running instance and marks the
        // item so that queueing refuses it. The timer's item goes first: it
        // queues the other. May sleep: process context only.
        unsafe {
            bindings::disable_delayed_work_sync(self.item.delayed.get());
            bindings::disable_work_sync(self.item.work.get());
        }
    }
}

impl<T: WorkerCallback> Drop for Worker<T> {
    fn drop(&mut self) {
        // SAFETY: the timer is cancelled first (draining the queue does not
        // wait for timers; disabling twice is allowed). `wq` is live and
        // destroyed once; destroying drains it, so both items are idle
        // before their box is freed.
        unsafe {
            bindings::disable_delayed_work_sync(self.item.delayed.get());
            bindings::destroy_workqueue(self.wq.as_ptr());
        }
    }
}

// SAFETY: queueing and flushing are allowed from any thread.
unsafe impl<T: WorkerCallback> Send for Worker<T> {}
// SAFETY: as above; `&self` only queues or flushes.
unsafe impl<T: WorkerCallback> Sync for Worker<T> {}

/// The work function.
///
/// # Safety
///
/// Called by the work queue only, for a work item of a [`Worker<T>`].
unsafe extern "C" fn work_fn<T: WorkerCallback>(work: *mut bindings::work_struct) {
    // SAFETY: `work` is the first field of a `WorkItem` (repr(C)); per the
    // `Worker` invariant its target holds a `T` while work can run.
    unsafe {
        let item = work.cast::<WorkItem>();
        super::private::<T>((*item).ti).work();
    }
}

/// The timer's work function: queues the target's work item.
///
/// # Safety
///
/// Called by the work queue only, for the delayed item of a [`Worker`].
unsafe extern "C" fn delayed_fn(work: *mut bindings::work_struct) {
    // SAFETY: `work` is the first field of the `delayed_work` in a
    // `WorkItem` (both `repr(C)`), so stepping back by that field's offset
    // gives the item, which lives while its work can run (`Worker`
    // invariant); its `wq` was set before the item could be queued.
    unsafe {
        let item = work
            .cast::<u8>()
            .sub(core::mem::offset_of!(WorkItem, delayed))
            .cast::<WorkItem>();
        bindings::dmmr_queue_work((*item).wq, (*item).work.get());
    }
}
