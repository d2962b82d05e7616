// SPDX-License-Identifier: GPL-2.0

//! The mirror set's state lock, and the read lease that lets reads bypass
//! it (`crate::mcore::policy::lease` has the argument).
//!
//! The lease is sound only if no holder of the lock changes what reads may
//! do while a lease granted before is still handing out reads. So the lock
//! is private to this module, and [`StateLock::lock`] ends the lease before
//! it returns the guard (as does [`StateGuard::wait`] when it has the lock
//! again): every change (a failed leg, a stale region, a copy behind, a
//! message, a new default) happens after the end of any lease that did not
//! see it. Only a choice under a [`StateGuard`] grants a new one.

use super::LegState;
use crate::dm;
use crate::mcore::policy::{LeaseGrant, ReadLease};
use core::ops::{Deref, DerefMut};
use kernel::{
    prelude::*,
    sync::{new_spinlock_irq, CondVar, SpinLockIrq, SpinLockIrqGuard},
};

/// [`LegState`] under its IRQ-off lock, with the read lease.
#[pin_data]
pub(super) struct StateLock {
    #[pin]
    state: SpinLockIrq<LegState>,
    lease: ReadLease,
}

/// The state lock, held, with no read lease in force that was granted
/// before it was taken.
// INVARIANT: made only by `StateLock::lock` and kept by `wait`, each of
// which ends `lease` after taking `guard`'s lock; `lease` is that lock's.
pub(super) struct StateGuard<'a> {
    guard: SpinLockIrqGuard<'a, LegState>,
    lease: &'a ReadLease,
}

impl StateLock {
    pub(super) fn new(state: LegState) -> impl PinInit<Self> {
        pin_init!(StateLock {
            state <- new_spinlock_irq!(state, "MirrorSet::state"),
            lease: ReadLease::new(),
        })
    }

    /// The lock. The read lease ends first, and the reads it handed out
    /// are accounted in the balancer as if each had been chosen under it.
    pub(super) fn lock(&self) -> StateGuard<'_> {
        let mut guard = StateGuard {
            guard: self.state.lock(),
            lease: &self.lease,
        };
        guard.end_lease();
        guard
    }

    /// Reads the state under the lock, changing nothing: a lease in force
    /// stays in force.
    pub(super) fn peek<R>(&self, f: impl FnOnce(&LegState) -> R) -> R {
        f(&self.state.lock())
    }

    /// A leg for a read of `nr_sectors` at `sector` without the lock, if
    /// a lease is in force (see [`StateGuard::grant`]).
    pub(super) fn take_lease(&self, sector: u64, nr_sectors: u32) -> Option<usize> {
        self.lease.take(sector, nr_sectors)
    }
}

impl StateGuard<'_> {
    fn end_lease(&mut self) {
        self.lease.end_into(&mut self.guard.balancer, dm::now_ns);
    }

    /// Lets the next reads go where `lease` says without the lock. The
    /// caller checked that its legs may serve the latest data of every
    /// region to any read while nothing changes, and that the policy would
    /// send them there.
    pub(super) fn grant(&self, lease: LeaseGrant) {
        // No lease is in force (the type's invariant, and only this grants
        // one): replacing the word loses no read's account.
        self.lease.grant(lease);
    }

    /// Waits on `condvar`, releasing the lock meanwhile; ends the lease
    /// that others may have granted in between once it has the lock again.
    pub(super) fn wait(&mut self, condvar: &CondVar) {
        condvar.wait(&mut self.guard);
        self.end_lease();
    }
}

impl Deref for StateGuard<'_> {
    type Target = LegState;

    fn deref(&self) -> &LegState {
        &self.guard
    }
}

impl DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut LegState {
        &mut self.guard
    }
}
