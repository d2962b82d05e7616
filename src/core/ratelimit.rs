// SPDX-License-Identifier: GPL-2.0

//! Rate limiting for log lines on I/O paths, like dm's `DMERR_LIMIT`
//! (printk's `pr_err_ratelimited`: at most [`BURST`] lines per
//! [`INTERVAL_NS`] per call site, then a count of what was left out).
//!
//! Lock-free: two racing callers may let a line more or less through, which
//! is all a log limit needs.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Length of a window: printk's `DEFAULT_RATELIMIT_INTERVAL` (5 s).
pub const INTERVAL_NS: u64 = 5_000_000_000;

/// Lines let through per window: printk's `DEFAULT_RATELIMIT_BURST`.
pub const BURST: u32 = 10;

/// The limit of one call site; a `static` in the logging macro.
#[derive(Debug)]
pub struct RateLimit {
    /// Start of the current window plus one (0: no window yet).
    window_start: AtomicU64,
    printed: AtomicU32,
    suppressed: AtomicU32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimit {
    /// A limit that lets the first [`BURST`] lines through.
    pub const fn new() -> Self {
        RateLimit {
            window_start: AtomicU64::new(0),
            printed: AtomicU32::new(0),
            suppressed: AtomicU32::new(0),
        }
    }

    /// Whether a line may be printed at `now_ns` (a monotonic clock):
    /// `Some(n)` with the number of lines left out since the last window
    /// (to be reported before it), or `None` to leave it out.
    pub fn check(&self, now_ns: u64) -> Option<u32> {
        let stamp = now_ns.saturating_add(1);
        let start = self.window_start.load(Ordering::Relaxed);
        let window_over = start == 0 || stamp.saturating_sub(start) >= INTERVAL_NS;
        // Whoever moves the window on prints and reports what was left out.
        if window_over
            && self
                .window_start
                .compare_exchange(start, stamp, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.printed.store(1, Ordering::Relaxed);
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        if self.printed.fetch_add(1, Ordering::Relaxed) < BURST {
            Some(0)
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_counts_what_it_left_out() {
        let limit = RateLimit::new();
        let t0 = 1_000;
        for i in 0..BURST {
            assert_eq!(limit.check(t0 + u64::from(i)), Some(0), "line {i}");
        }
        for _ in 0..1000 {
            assert_eq!(limit.check(t0 + 10), None);
        }
        assert_eq!(limit.check(t0 + INTERVAL_NS - 1), None);
        // The next window reports the lines left out.
        assert_eq!(limit.check(t0 + INTERVAL_NS), Some(1001));
        assert_eq!(limit.check(t0 + INTERVAL_NS + 1), Some(0));
    }

    #[test]
    fn a_clock_at_zero_still_works() {
        let limit = RateLimit::new();
        assert_eq!(limit.check(0), Some(0));
        for _ in 1..BURST {
            assert_eq!(limit.check(0), Some(0));
        }
        assert_eq!(limit.check(0), None);
        assert_eq!(limit.check(u64::MAX), Some(1));
    }
}
