// SPDX-License-Identifier: GPL-2.0

//! Hot regions: writes that `map` sends to the legs itself, because their
//! region's mark is on disk already (`crate::mcore::hot_regions` has the
//! argument). The worker makes regions hot after a log flush that covered
//! them and lets them go when idle; anything that needs the worker's
//! error handling or ordering (failures, suspend, writes waiting for the
//! write-behind backlog) closes the set.

use super::MirrorSet;
use crate::dm::{self, region_hash::PendingRef, OwnedBio};
use crate::mcore::hot_regions::{HotRegions, Inserted};

/// Regions one worker batch makes hot at most (the set fills over
/// batches; this bounds the worker's stack).
const HOT_CANDIDATES: usize = 16;

/// Regions the worker counted one more pending write in for the hot set,
/// before the log flush that makes them hot.
pub(super) struct HotCandidates {
    tokens: [Option<(u64, PendingRef<MirrorSet>)>; HOT_CANDIDATES],
}

impl HotCandidates {
    pub(super) const fn new() -> Self {
        Self {
            tokens: [const { None }; HOT_CANDIDATES],
        }
    }

    fn contains(&self, region: u64) -> bool {
        self.tokens.iter().flatten().any(|(r, _)| *r == region)
    }
}

impl MirrorSet {
    /// Whether writes may bypass the worker now. Asked with the hot set's
    /// lock held (`_locked` is the set), so that a failure that closes the
    /// set after this cannot be overwritten by it.
    fn hot_allowed(&self, _locked: &HotRegions<PendingRef<MirrorSet>>) -> bool {
        let blocked = {
            let q = self.queues.lock();
            q.suspended || !q.behind_waiting.is_empty()
        };
        self.hot_idle_ms > 0 && !blocked && self.state.peek(|st| !st.leg_failure && !st.log_failure)
    }

    /// Stops `map` from writing to hot regions (the worker hands them back
    /// once their writes ended). Any context.
    pub(super) fn close_hot(&self) {
        self.hot.lock().set_open(false);
    }

    /// A write `map` sent to hot `region` has ended. Any context.
    pub(super) fn hot_write_done(&self, region: u64) {
        // The guard goes before anything is queued or logged.
        let ended = self.hot.lock().end_write(region);
        match ended {
            Ok(false) => {}
            // Closed, and this was the region's last write: hand it back.
            Ok(true) => self.worker.queue(),
            Err(_) => dm_err_limit!("hot write to region {} ended twice", region),
        }
    }

    /// Worker: counts one more pending write in `bio`'s region for the hot
    /// set, if the set is open and the region not hot yet (at most
    /// [`HOT_CANDIDATES`] per batch).
    /// The bio's own pending write is counted already (so the region is in
    /// the region hash and in sync).
    pub(super) fn hot_candidate(
        &self,
        candidates: &mut HotCandidates,
        bio: &mut OwnedBio<Self>,
        region: u64,
    ) {
        if candidates.contains(region) {
            return;
        }
        {
            let hot = self.hot.lock();
            if !hot.is_open() || hot.contains(region) {
                return;
            }
        }
        let Some(slot) = candidates.tokens.iter_mut().find(|t| t.is_none()) else {
            return;
        };
        if let Ok(token) = self.rh.hold_pending(bio, region) {
            *slot = Some((region, token));
        }
    }

    /// Worker, after the log flush that followed [`Self::hot_candidate`]:
    /// `flushed`, the candidates' marks are on disk and they become hot;
    /// otherwise (or if the set closed meanwhile, or their window has
    /// writes in flight in every slot) their pending writes are released,
    /// as are those of the regions they replaced.
    pub(super) fn make_hot(&self, mut candidates: HotCandidates, flushed: bool) {
        let now = dm::now_ns();
        if flushed {
            let mut hot = self.hot.lock();
            // Each slot ends up with the token to release, if any: the
            // candidate's (refused) or the region's it replaced.
            for slot in &mut candidates.tokens {
                let Some((region, token)) = slot.take() else {
                    continue;
                };
                *slot = match hot.insert(region, token, now) {
                    Inserted::Hot => None,
                    Inserted::Replaced(old, token) => Some((old, token)),
                    Inserted::Refused(token) => Some((region, token)),
                };
            }
        }
        for (_, token) in candidates.tokens.into_iter().flatten() {
            self.rh.release(token);
        }
    }

    /// Worker: `region` is marked out of sync (a write or a copy to it
    /// failed). It admits no more writes from `map` and is handed back once
    /// idle, even if the set opens again before that (a resync that ends
    /// in the same worker run clears the leg failure).
    pub(super) fn forget_hot(&self, region: u64) {
        if self.hot.lock().forget(region) {
            self.worker.queue();
        }
    }

    /// Worker: opens or closes the set as the mapping's state allows, and
    /// hands back the regions that may go (idle, or all once closed).
    /// Returns whether any went, so that the log is flushed clean.
    pub(super) fn refresh_hot(&self) -> bool {
        {
            let mut hot = self.hot.lock();
            let allowed = self.hot_allowed(&hot);
            hot.set_open(allowed);
        }
        let now = dm::now_ns();
        let idle_ns = u64::from(self.hot_idle_ms).saturating_mul(1_000_000);
        let mut released = false;
        loop {
            let Some((_, token)) = self.hot.lock().take_idle(now, idle_ns) else {
                break;
            };
            self.rh.release(token);
            released = true;
        }
        released
    }

    /// Worker, at the end of a run: comes back to look for idle regions
    /// while some are hot.
    pub(super) fn rearm_hot(&self) {
        if !self.hot.lock().is_empty() {
            // Every idle time, but at least every second: a region goes at
            // most one such interval after its idle time is up.
            self.worker.queue_after(self.hot_idle_ms.clamp(10, 1000));
        }
    }

    /// For `stop`: nothing is in flight and the worker is disabled; every
    /// region the set still holds is released.
    pub(super) fn release_all_hot(&self) {
        // Nothing else runs any more: released under the lock.
        self.hot.lock().take_all(|_, token| self.rh.release(token));
    }
}
