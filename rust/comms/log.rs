// SPDX-License-Identifier: GPL-2.0

//! The admin log lines of the comms layer: `log_print!` prints `dlm: <text>` at `KERN_ERR`
//! like the C `log_print()` macro, and `log_print_ratelimited!` does the same through a
//! per-call-site limiter (10 lines per 5 s, like `printk_ratelimited()`).

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

/// `WARN_ON_ONCE(cond)`: a kernel warning (with a backtrace) the first time `cond` holds at
/// this call site; evaluates to `cond`.
macro_rules! warn_on_once {
    ($cond:expr) => {{
        static WARNED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
        let cond: bool = $cond;
        if cond && !WARNED.swap(true, core::sync::atomic::Ordering::Relaxed) {
            kernel::warn_on!(true);
        }
        cond
    }};
}
pub(crate) use warn_on_once;

/// A call site's limiter over `jiffies`: 10 lines per 5 s.
pub(crate) struct RateLimit(crate::proto::ratelimit::RateLimit);

const INTERVAL_MS: u32 = 5000;

impl RateLimit {
    /// A limiter with nothing printed yet.
    pub(crate) const fn new() -> Self {
        Self(crate::proto::ratelimit::RateLimit::new())
    }

    /// Whether one more line may be printed now.
    pub(crate) fn allow(&self) -> bool {
        let interval = kernel::time::msecs_to_jiffies(INTERVAL_MS) as usize;
        self.0.allow(jiffies(), interval)
    }
}

/// The current `jiffies`.
pub(crate) fn jiffies() -> usize {
    // SAFETY: `jiffies` is a kernel global that is only ever read atomically by word.
    unsafe { core::ptr::read_volatile(&raw const bindings::jiffies) as usize }
}

/// Milliseconds on the monotonic clock (`ktime_get()`), for the protocol's timeouts.
pub(crate) fn monotonic_ms() -> u64 {
    // SAFETY: `ktime_get()` may be called from any context once timekeeping is up.
    let ns = unsafe { bindings::ktime_get() };
    (ns.max(0) as u64) / 1_000_000
}

/// The comms tracepoints of `include/trace/events/dlm.h`.
pub(crate) mod trace {
    use super::super::ffi;
    use kernel::ffi::{c_int, c_void};

    /// `dlm_send`: result of one `sock_sendmsg()`.
    pub(crate) fn send(nodeid: i32, ret: c_int) {
        // SAFETY: The shim only passes the two integers to the tracepoint.
        unsafe { ffi::dlm_rs_trace_send(nodeid, ret) }
    }

    /// `dlm_recv`: result of one `kernel_recvmsg()`.
    pub(crate) fn recv(nodeid: i32, ret: c_int) {
        // SAFETY: The shim only passes the two integers to the tracepoint.
        unsafe { ffi::dlm_rs_trace_recv(nodeid, ret) }
    }

    /// `dlm_send_message` or `dlm_send_rcom` for a sequenced message about to be queued.
    /// `inner` is the whole inner DLM_MSG (at least 88 bytes) or DLM_RCOM (at least 48).
    pub(crate) fn send_inner(dst: i32, seq: u32, inner: &[u8], name: *const c_void, namelen: i32) {
        let ptr = inner.as_ptr().cast::<c_void>();
        match inner.get(14) {
            // SAFETY: `ptr` is a complete message of the type the tracepoint reads; `name` is
            // the caller's (lock.c's) buffer of `namelen` bytes or null.
            Some(1) if inner.len() >= 88 => unsafe {
                ffi::dlm_rs_trace_send_message(dst as u32, seq, ptr, name, namelen)
            },
            // SAFETY: As above, a complete DLM_RCOM.
            Some(2) if inner.len() >= 48 => unsafe {
                ffi::dlm_rs_trace_send_rcom(dst as u32, seq, ptr)
            },
            _ => {}
        }
    }

    /// `dlm_recv_message` or `dlm_recv_rcom` for a sequenced message delivered in order.
    pub(crate) fn recv_inner(dst: i32, seq: u32, inner: &[u8]) {
        let ptr = inner.as_ptr().cast::<c_void>();
        match inner.get(14) {
            // SAFETY: A complete, validated DLM_MSG.
            Some(1) if inner.len() >= 88 => unsafe {
                ffi::dlm_rs_trace_recv_message(dst as u32, seq, ptr)
            },
            // SAFETY: A complete, validated DLM_RCOM.
            Some(2) if inner.len() >= 48 => unsafe {
                ffi::dlm_rs_trace_recv_rcom(dst as u32, seq, ptr)
            },
            _ => {}
        }
    }
}
