// SPDX-License-Identifier: GPL-2.0

//! A burst limiter for log lines, like the kernel's `___ratelimit()`: at most
//! [`BURST`] lines in a window of `interval` ticks, the window starting at the
//! first line after the previous one ran out.  The caller supplies the time
//! (`jiffies` in the kernel); two CPUs racing may let a line or two more
//! through, as in C, which is harmless for logging.

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Lines allowed per window (`DEFAULT_RATELIMIT_BURST`).
pub const BURST: u32 = 10;

/// One call site's limiter.
pub struct RateLimit {
    /// Tick at which the current window began (valid once `count` > 0).
    start: AtomicUsize,
    /// Lines asked for in the current window; 0 before the first line.
    count: AtomicU32,
}

impl RateLimit {
    /// A limiter with nothing printed yet.
    pub const fn new() -> Self {
        Self {
            start: AtomicUsize::new(0),
            count: AtomicU32::new(0),
        }
    }

    /// Whether one more line may be printed at tick `now`, with windows of
    /// `interval` ticks.
    pub fn allow(&self, now: usize, interval: usize) -> bool {
        let count = self.count.load(Ordering::Relaxed);
        let start = self.start.load(Ordering::Relaxed);
        if count == 0 || now.wrapping_sub(start) >= interval {
            self.start.store(now, Ordering::Relaxed);
            self.count.store(1, Ordering::Relaxed);
            return true;
        }
        // Saturating, so that a flood within one window cannot wrap the
        // count back to the "nothing printed yet" state.
        let _ = self
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_add(1));
        count < BURST
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}
