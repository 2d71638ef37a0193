// SPDX-License-Identifier: GPL-2.0

//! DLM 3.2 sequence numbers.
//!
//! Every reliable message to a 3.2 peer carries a 32-bit sequence number in
//! the outer `DLM_OPTS` header (`u.h_seq`); a `DLM_ACK` carries the receiver's
//! next expected number.  Both counters start at [`SEQ_INIT`] after every
//! reset of the peer and wrap around at 2^32, so every comparison between two
//! sequence numbers must be the serial-number comparison below (the one TCP
//! uses, RFC 1982 style): `a` is before `b` when the signed 32-bit difference
//! `a - b` is negative.
//!
//! The comparison is only meaningful for numbers less than 2^31 apart.  The
//! reliable layer guarantees that by bounding the number of unacknowledged
//! messages far below that.

use core::fmt;

/// First sequence number after a reset (`DLM_SEQ_INIT` in C).
pub const SEQ_INIT: u32 = 0;

/// A DLM 3.2 sequence number, with wrap-around arithmetic.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seq(pub u32);

impl Seq {
    /// The sequence number every peer starts with.
    pub const INIT: Seq = Seq(SEQ_INIT);

    /// Wraps a raw value as read from or written to the wire.
    pub const fn new(v: u32) -> Self {
        Seq(v)
    }

    /// The raw value, as written to the wire (little-endian there).
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The number after this one (wrapping).
    #[must_use]
    pub const fn next(self) -> Self {
        Seq(self.0.wrapping_add(1))
    }

    /// This number plus `n` (wrapping).
    #[must_use]
    pub const fn add(self, n: u32) -> Self {
        Seq(self.0.wrapping_add(n))
    }

    /// `self` comes strictly before `other` in sequence space.
    pub const fn before(self, other: Seq) -> bool {
        (self.0.wrapping_sub(other.0) as i32) < 0
    }

    /// `self` comes strictly after `other` in sequence space.
    pub const fn after(self, other: Seq) -> bool {
        other.before(self)
    }

    /// How many numbers lie in `[from, self)`, i.e. `self - from` modulo
    /// 2^32.  Only meaningful when `from` is not after `self`.
    pub const fn distance_from(self, from: Seq) -> u32 {
        self.0.wrapping_sub(from.0)
    }

    /// `self` lies in the half-open window `[lo, hi)`.
    pub const fn in_window(self, lo: Seq, hi: Seq) -> bool {
        self.distance_from(lo) < hi.distance_from(lo)
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seq {}", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// `a` is before `b` (wrap-safe), on raw values.  The same test as
/// `before()` in the kernel's `include/net/tcp.h`.
pub const fn before(a: u32, b: u32) -> bool {
    Seq(a).before(Seq(b))
}

/// `a` is after `b` (wrap-safe), on raw values.
pub const fn after(a: u32, b: u32) -> bool {
    Seq(a).after(Seq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordering_near_wrap() {
        assert!(before(0xffff_ffff, 0));
        assert!(after(0, 0xffff_ffff));
        assert!(!before(5, 5));
        assert!(!after(5, 5));
        assert!(before(1, 2));
        assert!(Seq(0xffff_fff0).in_window(Seq(0xffff_ff00), Seq(3)));
        assert!(Seq(2).in_window(Seq(0xffff_ff00), Seq(3)));
        assert!(!Seq(3).in_window(Seq(0xffff_ff00), Seq(3)));
        assert_eq!(Seq(2).distance_from(Seq(0xffff_fffe)), 4);
        assert_eq!(Seq(u32::MAX).next(), Seq(0));
    }
}
