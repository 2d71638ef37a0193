// SPDX-License-Identifier: GPL-2.0

//! The admin log lines of the comms layer: `log_print!` prints `dlm: <text>` at `KERN_ERR`
//! like the C `log_print()` macro, and `log_print_ratelimited!` does the same through a
//! per-call-site limiter (10 lines per 5 s, like `printk_ratelimited()`).

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use kernel::bindings;

/// `log_print()`: one line at `KERN_ERR`, prefixed `dlm: `.
macro_rules! log_print {
    ($($arg:tt)*) => {
        kernel::pr_err!("{}\n", format_args!($($arg)*))
    };
}
pub(crate) use log_print;

/// `log_print_ratelimited()`.
macro_rules! log_print_ratelimited {
    ($($arg:tt)*) => {{
        static RL: $crate::comms::log::RateLimit = $crate::comms::log::RateLimit::new();
        if RL.allow() {
            kernel::pr_err!("{}\n", format_args!($($arg)*));
        }
    }};
}
pub(crate) use log_print_ratelimited;

/// A small burst limiter over `jiffies`.
pub(crate) struct RateLimit {
    start: AtomicUsize,
    count: AtomicU32,
}

const BURST: u32 = 10;
const INTERVAL_MS: u32 = 5000;

impl RateLimit {
    /// A limiter with nothing printed yet.
    pub(crate) const fn new() -> Self {
        Self {
            start: AtomicUsize::new(0),
            count: AtomicU32::new(0),
        }
    }

    /// Whether one more line may be printed now.
    pub(crate) fn allow(&self) -> bool {
        let now = jiffies();
        let start = self.start.load(Ordering::Relaxed);
        let interval = kernel::time::msecs_to_jiffies(INTERVAL_MS) as usize;
        if start == 0 || now.wrapping_sub(start) >= interval {
            self.start.store(now | 1, Ordering::Relaxed);
            self.count.store(1, Ordering::Relaxed);
            return true;
        }
        self.count.fetch_add(1, Ordering::Relaxed) < BURST
    }
}

/// The current `jiffies`.
pub(crate) fn jiffies() -> usize {
    // SAFETY: `jiffies` is a kernel global that is only ever read atomically by word.
    unsafe { core::ptr::read_volatile(&raw const bindings::jiffies) as usize }
}
