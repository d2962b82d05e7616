// SPDX-License-Identifier: GPL-2.0

//! The mirror set's state lock, and the read lease that lets reads bypass
//! it (`crate::mcore::policy::lease` has the argument).
//!
//! The lease is sound only if no holder of the lock changes what reads may
//! do while a lease granted before is still handing out reads. So the lock
//! is private to this module, and [`StateLock::lock`] ends the lease before
//! it returns the guard: every change (a failed leg, a stale region, a copy
//! behind, a message, a new default) happens after the end of any lease
//! that did not see it. Only a choice under the lock grants a new one.

use super::LegState;
use crate::dm;
use crate::mcore::{
    legs::LegSet,
    policy::{LeasedReads, ReadLease},
};
use kernel::{
    prelude::*,
    sync::{new_spinlock_irq, SpinLockIrq, SpinLockIrqGuard},
};

/// [`LegState`] under its IRQ-off lock, with the read lease.
#[pin_data]
pub(super) struct StateLock {
    #[pin]
    state: SpinLockIrq<LegState>,
    lease: ReadLease,
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
    pub(super) fn lock(&self) -> SpinLockIrqGuard<'_, LegState> {
        let mut st = self.state.lock();
        let leased = self.lease.revoke();
        self.account(&mut st, leased);
        st
    }

    /// The lock for accounting a successful read's completion in the
    /// balancer's statistics and nothing else: the lease goes on (its
    /// reads so far are accounted, so the completion finds its dispatch).
    pub(super) fn lock_for_completion(&self) -> SpinLockIrqGuard<'_, LegState> {
        let mut st = self.state.lock();
        let leased = self.lease.settle();
        self.account(&mut st, leased);
        st
    }

    fn account(&self, st: &mut LegState, leased: Option<LeasedReads>) {
        let Some(leased) = leased else {
            return;
        };
        st.balancer.account_leased(&leased, dm::now_ns());
        // Reads of earlier leases may still add sectors to other legs.
        for leg in LegSet::first_n(st.balancer.nr_legs()) {
            let sectors = self.lease.take_sectors(leg);
            st.balancer.account_leased_sectors(leg, sectors);
        }
    }

    /// Reads the state under the lock, changing nothing: a lease in force
    /// stays in force.
    pub(super) fn peek<R>(&self, f: impl FnOnce(&LegState) -> R) -> R {
        f(&self.state.lock())
    }

    /// A leg for a read of `nr_sectors` at `sector` without the lock, if
    /// a lease is in force (see [`StateLock::grant`]).
    pub(super) fn take_lease(&self, sector: u64, nr_sectors: u32) -> Option<usize> {
        self.lease.take(sector, nr_sectors)
    }

    /// Lets the next `reads` reads go to `leg` without the lock. `held` is
    /// this lock's guard, from a [`StateLock::lock`] that has not been let
    /// go since; the caller checked that `leg` may serve the latest data
    /// of every region to any read while nothing changes.
    pub(super) fn grant(&self, held: &SpinLockIrqGuard<'_, LegState>, leg: usize, reads: u32) {
        let _ = held;
        self.lease.grant(leg, reads);
    }
}
