// SPDX-License-Identifier: GPL-2.0

//! Per-peer reliable delivery for DLM 3.2: sequence numbers, cumulative
//! acknowledgements, retransmission and the ack policy of
//! fs/dlm/midcomms.c, as a sans-IO state machine.
//!
//! One [`Reliable`] exists per peer node.  It owns the logic; the storage of
//! the unacknowledged messages belongs to the caller, behind the small
//! [`UnackedQueue`] trait (the kernel keeps its own list of reference-counted
//! message handles, the host tests use a `VecDeque`, [`RingQueue`] is a
//! fixed-capacity one in `core`).  Nothing here does I/O or reads a clock:
//! every method takes its inputs as arguments and says what the caller must
//! do in its return value.
//!
//! Send side:
//!
//! * [`Reliable::ack_before_send`] first (C's send-side threshold: more than
//!   [`SEND_ACK_THRESHOLD`] messages delivered since our last ACK means a
//!   standalone `DLM_ACK` goes out just ahead of the new message);
//! * [`Reliable::queue_send`] assigns the sequence number and appends the
//!   message to the unacked queue.  It must be called in the same critical
//!   section that fixes the message's position in the byte stream, so that
//!   wire order equals sequence order.  When [`Reliable::max_unacked`]
//!   messages are unacknowledged it refuses ([`SendError::Backpressure`])
//!   instead of letting the queue grow without bound;
//! * [`Reliable::on_ack`] releases every message before the cumulative ACK
//!   value, in order, using the wrap-safe comparison;
//! * [`Reliable::retransmit`] walks every unacked message in sequence order.
//!   The caller must do that on *every* new connection to the peer (C only
//!   does it when the socket reports an error).
//!
//! Receive side: [`Reliable::on_receive`] accepts exactly the expected
//! sequence number, asks for a re-ACK of duplicates (wrap-safe, unlike C's
//! plain `<`) and drops messages after a gap without acknowledging them, as
//! C does; the sender's retransmission fills the gap.

use super::seq::Seq;

/// More than this many messages delivered since our last ACK make the next
/// send to that peer queue an ACK first (`DLM_SEND_ACK_BACK_MSG_THRESHOLD`).
pub const SEND_ACK_THRESHOLD: u32 = 32;
/// More than this many messages delivered since our last ACK make the
/// receive path send an ACK on its own (`DLM_RECV_ACK_BACK_MSG_THRESHOLD`).
pub const RECV_ACK_THRESHOLD: u32 = SEND_ACK_THRESHOLD * 8;
/// The smallest allowed bound on unacked messages.  A peer that never sends
/// to us acknowledges only every `RECV_ACK_THRESHOLD + 1` deliveries, so a
/// smaller window could stall for ever waiting for an ACK that a C peer will
/// not send.
pub const MIN_MAX_UNACKED: u32 = RECV_ACK_THRESHOLD + 1;
/// Default bound on unacked messages per peer (at most 4 MiB of 4 KiB
/// messages).
pub const DEFAULT_MAX_UNACKED: u32 = 1024;
/// Upper limit for the bound: keeps every unacked number well inside the
/// half of sequence space where the wrap-safe comparison is exact.
pub const MAX_MAX_UNACKED: u32 = 1 << 30;

/// The caller's storage for messages that were sent and not yet acked.
///
/// Entries are kept in the order they were pushed, which is sequence order.
/// The kernel glue implements this over its list of message handles; the
/// entry type is whatever it needs to release or copy a message later.
pub trait UnackedQueue {
    /// What the caller keeps per unacked message.
    type Entry;

    /// Appends an entry.  A fixed-capacity queue may refuse by handing the
    /// entry back; [`Reliable`] then reports back-pressure.
    fn push_back(&mut self, seq: Seq, entry: Self::Entry) -> Result<(), Self::Entry>;

    /// Sequence number of the oldest entry.
    fn front_seq(&self) -> Option<Seq>;

    /// Removes the oldest entry.
    fn pop_front(&mut self) -> Option<(Seq, Self::Entry)>;

    /// Number of entries.
    fn len(&self) -> usize;

    /// True when there are no entries.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` on every entry, oldest first.
    fn for_each(&self, f: &mut dyn FnMut(Seq, &Self::Entry));

    /// False when a push would be refused.  Queues that never refuse keep
    /// the default.
    fn has_room(&self) -> bool {
        true
    }
}

/// A fixed-capacity [`UnackedQueue`] that needs no allocator.
pub struct RingQueue<E, const N: usize> {
    slots: [Option<(Seq, E)>; N],
    head: usize,
    len: usize,
}

impl<E, const N: usize> RingQueue<E, N> {
    /// An empty queue.
    pub fn new() -> Self {
        RingQueue {
            slots: core::array::from_fn(|_| None),
            head: 0,
            len: 0,
        }
    }

    fn slot(&self, i: usize) -> usize {
        // `N > 0` whenever this is called: `len > 0` or a push succeeded.
        (self.head + i) % N
    }
}

impl<E, const N: usize> Default for RingQueue<E, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E, const N: usize> UnackedQueue for RingQueue<E, N> {
    type Entry = E;

    fn push_back(&mut self, seq: Seq, entry: E) -> Result<(), E> {
        if self.len >= N {
            return Err(entry);
        }
        let i = self.slot(self.len);
        self.slots[i] = Some((seq, entry));
        self.len += 1;
        Ok(())
    }

    fn front_seq(&self) -> Option<Seq> {
        if self.len == 0 {
            return None;
        }
        self.slots[self.head].as_ref().map(|(s, _)| *s)
    }

    fn pop_front(&mut self) -> Option<(Seq, E)> {
        if self.len == 0 {
            return None;
        }
        let e = self.slots[self.head].take();
        self.head = self.slot(1);
        self.len -= 1;
        e
    }

    fn len(&self) -> usize {
        self.len
    }

    fn has_room(&self) -> bool {
        self.len < N
    }

    fn for_each(&self, f: &mut dyn FnMut(Seq, &E)) {
        for i in 0..self.len {
            if let Some((s, e)) = &self.slots[self.slot(i)] {
                f(*s, e);
            }
        }
    }
}

/// Why [`Reliable::queue_send`] refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// `max_unacked` messages are waiting for an ACK; retry once
    /// [`Reliable::on_ack`] released some.
    Backpressure {
        /// Messages currently unacked.
        unacked: u32,
    },
    /// The caller's queue refused the entry (it is full).
    QueueFull,
}

/// What a received `DLM_ACK` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// The messages with sequence numbers in `[from, to)` were released.
    Released {
        /// First released number.
        from: Seq,
        /// One past the last released number (the ACK value).
        to: Seq,
    },
    /// The ACK acknowledges nothing that is still unacked (an old or
    /// repeated ACK).  Nothing changed.
    Stale,
    /// The ACK acknowledges numbers we never sent.  C would release every
    /// queued message; we ignore it (log it, rate-limited).
    Invalid {
        /// The received ACK value.
        ack: Seq,
        /// Our next sequence number to assign.
        seq_send: Seq,
    },
}

/// What an in-order sequenced message carried, as far as this layer cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner {
    /// A `DLM_MSG` or `DLM_RCOM` for the upper layer.
    Data,
    /// A `DLM_FIN` for the close state machine.
    Fin,
}

/// What the caller must do with a received sequenced message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvAction {
    /// In order, `DLM_MSG`/`DLM_RCOM`: deliver it to the upper layer, then,
    /// if `ack` is set, send a `DLM_ACK` with that value (C's receive-side
    /// threshold).
    Deliver {
        /// ACK value to send after delivering, if any.
        ack: Option<Seq>,
    },
    /// In order, `DLM_FIN`: hand it to the close state machine.  The next
    /// expected number has already moved past it, so an ACK for the FIN
    /// carries [`Reliable::ack_value`].
    Fin,
    /// Already received (a retransmission): drop it and send a `DLM_ACK`
    /// with value `ack`.
    Duplicate {
        /// The ACK value to send.
        ack: Seq,
    },
    /// A later number than expected: something before it was lost.  Drop it
    /// without an ACK (log it, rate-limited); the sender retransmits
    /// everything unacked on its next connection.
    Gap {
        /// The number we are waiting for.
        expected: Seq,
    },
}

/// Per-peer sequence and acknowledgement state.
#[derive(Clone, Debug)]
pub struct Reliable {
    /// Next sequence number to assign (`seq_send`).
    seq_send: Seq,
    /// Oldest unacknowledged sequence number; equals `seq_send` when
    /// nothing is unacked.
    seq_una: Seq,
    /// Next sequence number expected from the peer (`seq_next`).
    seq_next: Seq,
    /// Messages delivered since we last sent an ACK (`ulp_delivered`).
    ulp_delivered: u32,
    max_unacked: u32,
    /// Where both counters start after a reset ([`Seq::INIT`] except in
    /// tests).
    init: Seq,
}

impl Default for Reliable {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_UNACKED)
    }
}

impl Reliable {
    /// Fresh state.  `max_unacked` is clamped to
    /// `[MIN_MAX_UNACKED, MAX_MAX_UNACKED]`.
    pub const fn new(max_unacked: u32) -> Self {
        let max = if max_unacked < MIN_MAX_UNACKED {
            MIN_MAX_UNACKED
        } else if max_unacked > MAX_MAX_UNACKED {
            MAX_MAX_UNACKED
        } else {
            max_unacked
        };
        Reliable {
            seq_send: Seq::INIT,
            seq_una: Seq::INIT,
            seq_next: Seq::INIT,
            ulp_delivered: 0,
            max_unacked: max,
            init: Seq::INIT,
        }
    }

    /// Like [`Reliable::new`] but starting both counters at `init`, now and
    /// after every reset, to test the wrap-around (C has `DLM_SEQ_INIT` for
    /// the same purpose).  Both peers must use the same `init`; a C peer
    /// always uses 0.
    pub const fn with_initial_seq(max_unacked: u32, init: Seq) -> Self {
        let mut r = Self::new(max_unacked);
        r.seq_send = init;
        r.seq_una = init;
        r.seq_next = init;
        r.init = init;
        r
    }

    /// Forgets everything, as `midcomms_node_reset()` does: both counters
    /// back to the initial number, the delivered count to 0, and every
    /// unacked entry handed to `release` in order.
    pub fn reset<Q: UnackedQueue>(
        &mut self,
        queue: &mut Q,
        release: &mut dyn FnMut(Seq, Q::Entry),
    ) {
        while let Some((s, e)) = queue.pop_front() {
            release(s, e);
        }
        *self = Self::with_initial_seq(self.max_unacked, self.init);
    }

    /// Next sequence number to assign.
    pub const fn seq_send(&self) -> Seq {
        self.seq_send
    }

    /// Oldest unacknowledged sequence number (`seq_send` if none).
    pub const fn seq_una(&self) -> Seq {
        self.seq_una
    }

    /// Next sequence number expected from the peer.
    pub const fn seq_next(&self) -> Seq {
        self.seq_next
    }

    /// The value every ACK we send carries: our next expected number.
    pub const fn ack_value(&self) -> Seq {
        self.seq_next
    }

    /// Messages delivered since our last ACK.
    pub const fn ulp_delivered(&self) -> u32 {
        self.ulp_delivered
    }

    /// Number of messages sent and not yet acknowledged.
    pub const fn unacked(&self) -> u32 {
        self.seq_send.distance_from(self.seq_una)
    }

    /// The bound on unacked messages.
    pub const fn max_unacked(&self) -> u32 {
        self.max_unacked
    }

    /// True when [`Reliable::queue_send`] would accept a message now.
    pub const fn can_send(&self) -> bool {
        self.unacked() < self.max_unacked
    }

    /// The send-side ACK policy, to run before every new reliable message:
    /// if more than [`SEND_ACK_THRESHOLD`] messages were delivered since our
    /// last ACK, returns the ACK value to send just ahead of the message.
    pub fn ack_before_send(&mut self) -> Option<Seq> {
        self.ack_threshold(SEND_ACK_THRESHOLD)
    }

    /// Whether [`Reliable::ack_before_send`] would return an ACK now.
    pub const fn send_ack_due(&self) -> bool {
        self.ulp_delivered > SEND_ACK_THRESHOLD
    }

    fn ack_threshold(&mut self, threshold: u32) -> Option<Seq> {
        if self.ulp_delivered > threshold {
            self.ulp_delivered = 0;
            Some(self.seq_next)
        } else {
            None
        }
    }

    /// Assigns the next sequence number to a reliable message and appends
    /// it to the unacked queue.  Refuses with back-pressure when
    /// `max_unacked` messages are unacked; the entry is handed back.
    pub fn queue_send<Q: UnackedQueue>(
        &mut self,
        queue: &mut Q,
        entry: Q::Entry,
    ) -> Result<Seq, (SendError, Q::Entry)> {
        if !self.can_send() {
            return Err((
                SendError::Backpressure {
                    unacked: self.unacked(),
                },
                entry,
            ));
        }
        self.queue_unbounded(queue, entry)
    }

    /// Like [`Reliable::queue_send`] but ignoring `max_unacked`: for the one
    /// `DLM_FIN` of a connection lifetime, which must go out even when the
    /// window is full (after it nothing more is sent).
    pub fn queue_fin<Q: UnackedQueue>(
        &mut self,
        queue: &mut Q,
        entry: Q::Entry,
    ) -> Result<Seq, (SendError, Q::Entry)> {
        if self.unacked() >= MAX_MAX_UNACKED {
            return Err((
                SendError::Backpressure {
                    unacked: self.unacked(),
                },
                entry,
            ));
        }
        self.queue_unbounded(queue, entry)
    }

    fn queue_unbounded<Q: UnackedQueue>(
        &mut self,
        queue: &mut Q,
        entry: Q::Entry,
    ) -> Result<Seq, (SendError, Q::Entry)> {
        let seq = self.seq_send;
        match queue.push_back(seq, entry) {
            Ok(()) => {
                self.seq_send = seq.next();
                Ok(seq)
            }
            Err(e) => Err((SendError::QueueFull, e)),
        }
    }

    /// Handles a received `DLM_ACK` with value `ack`: every unacked message
    /// whose number is before `ack` is removed from the queue and handed to
    /// `release`, oldest first.
    pub fn on_ack<Q: UnackedQueue>(
        &mut self,
        queue: &mut Q,
        ack: Seq,
        release: &mut dyn FnMut(Seq, Q::Entry),
    ) -> AckOutcome {
        if ack.after(self.seq_send) {
            return AckOutcome::Invalid {
                ack,
                seq_send: self.seq_send,
            };
        }
        if !ack.after(self.seq_una) {
            return AckOutcome::Stale;
        }
        let from = self.seq_una;
        while let Some(front) = queue.front_seq() {
            if !front.before(ack) {
                break;
            }
            if let Some((s, e)) = queue.pop_front() {
                release(s, e);
            }
        }
        self.seq_una = ack;
        AckOutcome::Released { from, to: ack }
    }

    /// Calls `f` on every unacked message, in sequence order, and returns how
    /// many there were.  The caller sends them again, keeping their original
    /// headers and numbers; it must do so on every new connection to the
    /// peer, before any message queued later.
    pub fn retransmit<Q: UnackedQueue>(&self, queue: &Q, f: &mut dyn FnMut(Seq, &Q::Entry)) -> u32 {
        let mut n = 0u32;
        queue.for_each(&mut |s, e| {
            n = n.wrapping_add(1);
            f(s, e)
        });
        n
    }

    /// Handles the sequence number `seq` of a received `DLM_OPTS` message
    /// whose inner message is `inner` (already validated by the codec).
    pub fn on_receive(&mut self, seq: Seq, inner: Inner) -> RecvAction {
        if seq == self.seq_next {
            self.seq_next = seq.next();
            match inner {
                Inner::Fin => RecvAction::Fin,
                Inner::Data => {
                    self.ulp_delivered = self.ulp_delivered.saturating_add(1);
                    RecvAction::Deliver {
                        ack: self.ack_threshold(RECV_ACK_THRESHOLD),
                    }
                }
            }
        } else if seq.before(self.seq_next) {
            RecvAction::Duplicate { ack: self.seq_next }
        } else {
            RecvAction::Gap {
                expected: self.seq_next,
            }
        }
    }
}
