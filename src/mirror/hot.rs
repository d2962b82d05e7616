// SPDX-License-Identifier: GPL-2.0

//! Hot regions: writes that `map` sends to the legs itself, because their
//! region's mark is on disk already (`crate::mcore::hot_regions` has the
//! argument). The worker makes regions hot after a log flush that covered
//! them and lets them go when idle; anything that needs the worker's
//! ordering or error handling closes the set.

use super::MirrorSet;
use crate::dm::{self, region_hash::PendingRef, OwnedBio};
use crate::mcore::hot_regions::{Inserted, HOT_IDLE_NS, HOT_REGIONS};

/// How often the worker looks for idle hot regions while there are some.
const HOT_SCAN_MS: u32 = 1000;

/// Regions the worker counted one more pending write in for the hot set,
/// before the log flush that makes them hot.
pub(super) struct HotCandidates {
    tokens: [Option<(u64, PendingRef<MirrorSet>)>; HOT_REGIONS],
}

impl HotCandidates {
    pub(super) const fn new() -> Self {
        Self {
            tokens: [const { None }; HOT_REGIONS],
        }
    }

    fn contains(&self, region: u64) -> bool {
        self.tokens.iter().flatten().any(|(r, _)| *r == region)
    }

    fn len(&self) -> usize {
        self.tokens.iter().flatten().count()
    }
}

impl MirrorSet {
    /// Whether writes may bypass the worker now. With the hot set's lock
    /// held, so that a failure that closes the set after this cannot be
    /// overwritten by it.
    fn hot_allowed(&self) -> bool {
        let blocked = {
            let q = self.queues.lock();
            q.suspended || !q.behind_waiting.is_empty()
        };
        let st = self.state.lock();
        // Write-behind copies are ordered by the worker: with them, every
        // write goes its way.
        !blocked
            && !st.leg_failure
            && !st.log_failure
            && !st.behind.config.behind_enabled()
            && st.behind.backlog.is_empty()
    }

    /// Stops `map` from writing to hot regions (the worker hands them back
    /// once their writes ended). Any context.
    pub(super) fn close_hot(&self) {
        self.hot.lock().set_open(false);
    }

    /// A write `map` sent to hot `region` has ended. Any context.
    pub(super) fn hot_write_done(&self, region: u64) {
        match self.hot.lock().end_write(region) {
            Ok(false) => {}
            // Closed, and this was the region's last write: hand it back.
            Ok(true) => self.worker.queue(),
            Err(_) => dm_err_limit!("hot write to region {} ended twice", region),
        }
    }

    /// Worker: counts one more pending write in `bio`'s region for the hot
    /// set, if the set is open, the region not hot yet and there is room.
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
            if !hot.is_open()
                || hot.contains(region)
                || hot.len().saturating_add(candidates.len()) >= HOT_REGIONS
            {
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
    /// otherwise (or if the set closed or filled meanwhile) their pending
    /// writes are released.
    pub(super) fn make_hot(&self, candidates: HotCandidates, flushed: bool) {
        let now = dm::now_ns();
        let mut refused = HotCandidates::new();
        {
            let mut hot = self.hot.lock();
            for (slot, (region, token)) in refused
                .tokens
                .iter_mut()
                .zip(candidates.tokens.into_iter().flatten())
            {
                if !flushed {
                    *slot = Some((region, token));
                    continue;
                }
                if let Inserted::Refused(token) = hot.insert(region, token, now) {
                    *slot = Some((region, token));
                }
            }
        }
        for (_, token) in refused.tokens.into_iter().flatten() {
            self.rh.release(token);
        }
    }

    /// Worker: opens or closes the set as the mapping's state allows, and
    /// hands back the regions that may go (idle, or all once closed).
    /// Returns whether any went, so that the log is flushed clean.
    pub(super) fn refresh_hot(&self) -> bool {
        {
            let mut hot = self.hot.lock();
            let allowed = self.hot_allowed();
            hot.set_open(allowed);
        }
        let now = dm::now_ns();
        let mut released = false;
        loop {
            let Some((_, token)) = self.hot.lock().take_idle(now, HOT_IDLE_NS) else {
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
            self.worker.queue_after(HOT_SCAN_MS);
        }
    }

    /// For `stop`: nothing is in flight and the worker is disabled; every
    /// region the set still holds is released.
    pub(super) fn release_all_hot(&self) {
        let mut all = HotCandidates::new();
        {
            let mut hot = self.hot.lock();
            let mut slots = all.tokens.iter_mut();
            hot.take_all(|region, token| {
                if let Some(slot) = slots.next() {
                    *slot = Some((region, token));
                }
            });
        }
        for (_, token) in all.tokens.into_iter().flatten() {
            self.rh.release(token);
        }
    }
}
