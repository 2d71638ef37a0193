// SPDX-License-Identifier: GPL-2.0

//! The log-line limiter: 10 lines per window, whatever the tick values.

use dlm_proto::proto::ratelimit::{RateLimit, BURST};

fn allowed(rl: &RateLimit, now: usize, interval: usize, n: usize) -> usize {
    (0..n).filter(|_| rl.allow(now, interval)).count()
}

/// A burst within one tick: the case CI hit (30 retransmit lines printed
/// within 40 ms) when the window's start was stored as `now | 1` and an
/// even `now` made the elapsed time wrap to "window over" on every call.
#[test]
fn burst_within_one_tick() {
    for now in [0usize, 1, 2, 1000, 4294937296, usize::MAX - 1, usize::MAX] {
        let rl = RateLimit::new();
        assert_eq!(allowed(&rl, now, 1250, 30), BURST as usize, "now {now}");
    }
}

#[test]
fn windows() {
    let rl = RateLimit::new();
    let mut printed = 0;
    // One call per tick for 10 windows of 100 ticks, across the wrap.
    let base = usize::MAX - 450;
    for t in 0..1000usize {
        printed += allowed(&rl, base.wrapping_add(t), 100, 1);
    }
    assert_eq!(printed, 10 * BURST as usize);
    // A quiet window later: a new burst is allowed.
    assert_eq!(
        allowed(&rl, base.wrapping_add(5000), 100, 20),
        BURST as usize
    );
}

#[test]
fn flood_stays_limited() {
    let rl = RateLimit::new();
    assert!(rl.allow(7, 100));
    for _ in 0..100_000 {
        rl.allow(8, 100);
    }
    assert!(!rl.allow(9, 100));
}
