// SPDX-License-Identifier: GPL-2.0

//! One peer node as midcomms sees it: detected version, reliable
//! (seq/ack) state and close-handshake state, glued together the way
//! fs/dlm/midcomms.c does, without any I/O.
//!
//! [`Peer`] takes whole received frames (from the framer) and upper-layer
//! send requests, and calls back into a [`PeerIo`] implemented by the
//! caller for every effect: deliver a message to the lock manager, queue a
//! `DLM_ACK` or a `DLM_FIN` on the connection, send an unacked message
//! again, release an acked one, wake waiters, log.  The unacked messages
//! themselves live in the caller's [`UnackedQueue`].  The kernel glue and
//! the host simulator drive the very same code.
//!
//! Locking is the caller's business: every method takes `&mut self`, so the
//! glue holds its per-node lock around each call (and around the write-queue
//! placement done inside [`PeerIo::send_fin`] and the `build` closure of
//! [`Peer::send`], which is what keeps wire order equal to sequence order).

use super::fin::{self, Actions, Fin, State, Wait};
use super::reliable::{AckOutcome, Inner, RecvAction, Reliable, SendError, UnackedQueue};
use super::seq::Seq;
use super::version::{Observed, PeerVersion, RecvError, VersionError};
use super::wire::{self, Body, Message, RcomType, Version};

/// Something worth a (rate-limited) log line or a counter.  None of these
/// needs any action from the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A received frame was dropped: invalid, or from the wrong version.
    Dropped(RecvError),
    /// The peer's version was learned from this message.
    VersionDetected(Version),
    /// A retransmitted message we already had; re-acked.
    Duplicate {
        /// Its number.
        seq: Seq,
        /// The number we wait for.
        expected: Seq,
    },
    /// A message after a gap; dropped, not acked.
    Gap {
        /// Its number.
        seq: Seq,
        /// The number we wait for.
        expected: Seq,
    },
    /// An ACK for numbers we never sent; ignored.
    AckInvalid {
        /// The ACK value.
        ack: Seq,
        /// Our next number to send.
        seq_send: Seq,
    },
    /// A message numbered up to the peer's last FIN after that FIN was
    /// accepted: a leftover of the ended lifetime; acked, nothing else.
    Stale {
        /// Its number.
        seq: Seq,
    },
    /// A FIN that arrived while CLOSED with no users; acked, nothing else.
    StaleFin {
        /// Its number.
        seq: Seq,
    },
    /// A sequenced message (not a FIN) that arrived while no connection
    /// lifetime with the peer exists here ([`fin::Fin::outside_lifetime`]):
    /// a leftover of an earlier one; dropped, not acked.
    Leftover {
        /// Its number.
        seq: Seq,
    },
    /// An ACK that arrived while no connection lifetime with the peer
    /// exists here; ignored, no version detection.
    LeftoverAck {
        /// The ACK value.
        ack: Seq,
    },
    /// The peer started a new connection lifetime while we still held the
    /// old one, which its FIN had ended: our side of it (the close we were
    /// in, the unacked messages, the counters) was dropped.
    Restarted {
        /// The state we were in.
        state: State,
        /// Our unacked messages of the old lifetime that were dropped.
        unacked: u32,
    },
    /// A sequenced message delivered after the peer's FIN (C warns once);
    /// the peer sends nothing sequenced after its FIN, so this is a
    /// protocol violation.
    DeliveredAfterFin,
    /// The close state machine saw an input it did not expect.
    Unexpected(fin::Unexpected),
    /// The node was reset (handshake done, stuck close, shutdown).
    Reset,
}

/// Effects of [`Peer`] that the caller performs.
pub trait PeerIo {
    /// The caller's handle for an unacked message.
    type Entry;

    /// Hand a message to the lock manager (`dlm_receive_buffer()`); `seq`
    /// is its number for a sequenced message.
    fn deliver(&mut self, msg: Message<'_>, seq: Option<Seq>);

    /// Queue a `DLM_ACK` with value `ack` on the connection (unsequenced,
    /// never retransmitted).  False when it could not be queued now (no
    /// memory): [`Peer`] then owes it and sends it from
    /// [`Peer::flush_owed`] or ahead of the next message.
    fn send_ack(&mut self, ack: Seq) -> bool;

    /// Queue a `DLM_OPTS`-wrapped `DLM_FIN` with number `seq` on the
    /// connection and return its unacked-queue entry; `None` when it could
    /// not be queued now.  Its number is then not used up; [`Peer`] owes
    /// the FIN and queues it from [`Peer::flush_owed`].
    fn send_fin(&mut self, seq: Seq) -> Option<Self::Entry>;

    /// Queue another copy of unacked message `seq` on the connection, with
    /// its original bytes.
    fn resend(&mut self, seq: Seq, entry: &Self::Entry);

    /// Message `seq` is acked (or the node was reset): drop the handle.
    fn release(&mut self, seq: Seq, entry: Self::Entry);

    /// Wake whoever waits in shutdown or version wait for this node.
    fn wake(&mut self) {}

    /// Log or count something.
    fn event(&mut self, _event: Event) {}
}

/// Why [`Peer::send`] did not queue a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerSendError {
    /// Version not detected yet: only the stateless path may be used.
    NotDetected,
    /// A 3.1 peer: send the message plain, unsequenced.
    Plain,
    /// Our FIN is already out (C warns and sends anyway; we refuse, since
    /// the peer may already have reset its state).
    Closing,
    /// Too many unacked messages; retry after ACKs arrive.
    Backpressure(SendError),
    /// The caller could not place the message (the `build` closure of
    /// [`Peer::try_send`] returned `None`); nothing was used up.
    NoRoom,
}

/// Per-peer midcomms state.
#[derive(Clone, Debug)]
pub struct Peer {
    nodeid: u32,
    version: PeerVersion,
    reliable: Reliable,
    fin: Fin,
    /// An ACK the caller could not queue (its value); see
    /// [`PeerIo::send_ack`].
    owed_ack: Option<Seq>,
    /// The FIN asked for by the close state machine could not be queued;
    /// see [`PeerIo::send_fin`].
    owed_fin: bool,
}

impl Peer {
    /// A new peer for node `nodeid` (as `dlm_midcomms_addr()` creates it),
    /// with at most `max_unacked` unacked messages.
    pub const fn new(nodeid: u32, max_unacked: u32) -> Self {
        Peer {
            nodeid,
            version: PeerVersion::new(),
            reliable: Reliable::new(max_unacked),
            fin: Fin::new(),
            owed_ack: None,
            owed_fin: false,
        }
    }

    /// Like [`Peer::new`], with both sequence counters starting at `init`
    /// (and returning to it on every reset) instead of 0, to run the
    /// wrap-around in tests.  Both peers must use the same `init`.
    pub const fn with_initial_seq(nodeid: u32, max_unacked: u32, init: Seq) -> Self {
        Peer {
            nodeid,
            version: PeerVersion::new(),
            reliable: Reliable::with_initial_seq(max_unacked, init),
            fin: Fin::new(),
            owed_ack: None,
            owed_fin: false,
        }
    }

    /// The peer's nodeid.
    pub const fn nodeid(&self) -> u32 {
        self.nodeid
    }

    /// Detected version.
    pub const fn version(&self) -> Option<Version> {
        self.version.get()
    }

    /// Reliable-layer state (counters).
    pub const fn reliable(&self) -> &Reliable {
        &self.reliable
    }

    /// Close-handshake state.
    pub const fn fin(&self) -> &Fin {
        &self.fin
    }

    /// Close-handshake state name and number, for debugfs.
    pub const fn state(&self) -> State {
        self.fin.state()
    }

    fn is_3_2(&self) -> bool {
        self.version.get() == Some(Version::V3_2)
    }

    /// Queues an ACK with value `ack`, or owes it if the caller cannot
    /// place it now.  A later ACK supersedes an owed one (ACKs are
    /// cumulative).
    fn ack<I: PeerIo>(&mut self, io: &mut I, ack: Seq) {
        self.owed_ack = if io.send_ack(ack) { None } else { Some(ack) };
    }

    /// The ACK to send just ahead of a new message: the send-side
    /// threshold's, or an owed one.
    fn ack_before_send(&mut self) -> Option<Seq> {
        self.reliable.ack_before_send().or(self.owed_ack)
    }

    fn queue_fin<Q: UnackedQueue, I: PeerIo<Entry = Q::Entry>>(&mut self, q: &mut Q, io: &mut I) {
        if let Some(ack) = self.ack_before_send() {
            self.ack(io, ack);
        }
        let seq = self.reliable.seq_send();
        // Placed only if the unacked queue can take it: a FIN on the wire
        // that did not use up its number would make the next message a
        // duplicate of it.
        let entry = if q.has_room() { io.send_fin(seq) } else { None };
        let Some(entry) = entry else {
            // Nothing used up: the same number goes to the FIN later.
            self.owed_fin = true;
            return;
        };
        self.owed_fin = false;
        match self.reliable.queue_fin(q, entry) {
            Ok(s) => self.fin.fin_queued(s),
            // Only a full fixed-capacity queue gets here; the FIN is on the
            // wire but will not be retransmitted.
            Err((_, e)) => io.release(seq, e),
        }
    }

    /// True while an ACK or the FIN could not be queued; call
    /// [`Peer::flush_owed`] once the caller can place them again.
    pub const fn owes(&self) -> bool {
        self.owed_ack.is_some() || self.owed_fin
    }

    /// Queues what could not be queued before: the owed ACK, then the owed
    /// FIN (with the next sequence number, which nothing else can have
    /// taken: no message is sent after our FIN is due).
    pub fn flush_owed<Q: UnackedQueue, I: PeerIo<Entry = Q::Entry>>(
        &mut self,
        q: &mut Q,
        io: &mut I,
    ) {
        if let Some(ack) = self.owed_ack {
            self.ack(io, ack);
        }
        if self.owed_fin {
            self.queue_fin(q, io);
        }
    }

    fn reset_rest<Q: UnackedQueue, I: PeerIo<Entry = Q::Entry>>(&mut self, q: &mut Q, io: &mut I) {
        // Reported first, so the caller can tell that the releases that
        // follow are a flush, not acknowledgements.
        io.event(Event::Reset);
        self.reliable.reset(q, &mut |s, e| io.release(s, e));
        self.version.reset();
        self.owed_ack = None;
        self.owed_fin = false;
    }

    fn apply<Q: UnackedQueue, I: PeerIo<Entry = Q::Entry>>(
        &mut self,
        a: Actions,
        q: &mut Q,
        io: &mut I,
    ) {
        if let Some(u) = a.unexpected {
            io.event(Event::Unexpected(u));
        }
        if a.send_ack {
            let ack = self.reliable.ack_value();
            self.ack(io, ack);
        }
        if a.send_fin.is_some() {
            self.queue_fin(q, io);
        }
        if a.reset {
            self.reset_rest(q, io);
        }
        if a.wake {
            io.wake();
        }
    }

    /// Handles one whole received frame from this peer.
    ///
    /// Invalid frames and version conflicts are reported through
    /// [`PeerIo::event`] and returned; the caller drops them and goes on
    /// with the next frame (none of them breaks the stream: framing errors
    /// are the framer's).
    pub fn receive<Q: UnackedQueue, I: PeerIo<Entry = Q::Entry>>(
        &mut self,
        frame: &[u8],
        q: &mut Q,
        io: &mut I,
    ) -> Result<(), RecvError> {
        let packet = match wire::parse(frame, self.nodeid) {
            Ok(p) => p,
            Err(e) => {
                io.event(Event::Dropped(RecvError::Wire(e)));
                return Err(RecvError::Wire(e));
            }
        };

        // Signs that the peer started a new connection lifetime after the one its last FIN
        // ended: the old one is dropped here, once (see Fin::peer_restarted()).
        let status = matches!(packet.body, Body::Plain(m)
            if packet.version == Version::V3_2 && m.rc_type() == Some(RcomType::Status as u32));
        let restarted = match packet.body {
            // A peer that asks for our recovery status runs a lockspace with us.
            Body::Plain(_) => status,
            Body::Opts(o) => {
                matches!(o.inner, wire::Inner::Fin) && self.fin.new_lifetime_fin(Seq(o.seq))
            }
            Body::Ack { .. } => false,
        };
        if restarted {
            let state = self.fin.state();
            let unacked = q.len() as u32;
            let a = self.fin.peer_restarted();
            if a.reset {
                io.event(Event::Restarted { state, unacked });
            }
            self.apply(a, q, io);
        }

        // Leftovers of a lifetime that is over: answered so that the peer can finish it, and
        // none of them is version detection (which would start a lifetime on this side only).
        // For a peer known as 3.1 there are no lifetimes; its frames go on to version checks.
        let outside = self.fin.outside_lifetime() && self.version.get() != Some(Version::V3_1);
        match packet.body {
            Body::Opts(o) => {
                let seq = Seq(o.seq);
                if let Some(ack) = self.fin.stale_seq(seq) {
                    io.event(Event::Stale { seq });
                    self.ack(io, ack);
                    return Ok(());
                }
                if matches!(o.inner, wire::Inner::Fin)
                    && self.fin.stale_fin_in_closed()
                    && self.version.get() != Some(Version::V3_1)
                {
                    io.event(Event::StaleFin { seq });
                    self.ack(io, seq.next());
                    return Ok(());
                }
                if outside {
                    // Not acked: a peer that still holds the old lifetime keeps these messages
                    // until its FIN (which the rule above acks, releasing them all) or its
                    // next add_member resets it.
                    io.event(Event::Leftover { seq });
                    return Ok(());
                }
            }
            Body::Ack { seq } => {
                if outside {
                    io.event(Event::LeftoverAck { ack: Seq(seq) });
                    return Ok(());
                }
            }
            // A stateless RCOM other than STATUS (typically the reply to a STATUS of ours that
            // crossed the close) is delivered but is no version detection either.  The next
            // lifetime detects the version once the peer's STATUS arrived or a lockspace added
            // the node again.
            Body::Plain(msg) => {
                if outside && packet.version == Version::V3_2 && !status {
                    io.deliver(msg, None);
                    return Ok(());
                }
            }
        }

        match self.version.observe(packet.version) {
            Ok(Observed::Detected(v)) => {
                io.event(Event::VersionDetected(v));
                if v == Version::V3_2 {
                    let a = self.fin.version_detected();
                    self.apply(a, q, io);
                } else {
                    io.wake();
                }
            }
            Ok(Observed::Known(_)) => {}
            Err(e) => {
                io.event(Event::Dropped(RecvError::Version(e)));
                return Err(RecvError::Version(e));
            }
        }

        match packet.body {
            // Not checked against the peer's FIN: from a 3.2 peer a plain
            // message is a stateless RCOM (STATUS, NAMES or their replies),
            // which lives outside any connection lifetime: a peer that
            // reset after its FIN probes us with STATUS, and a reply to our
            // STATUS can cross the peer's FIN.  C senders send them after
            // their FIN too; C's receiver warns about them all the same
            // (WARN_ON_ONCE on STOP_RX), a false alarm we do not repeat.
            Body::Plain(msg) => io.deliver(msg, None),
            Body::Ack { seq } => self.on_ack(Seq(seq), q, io),
            Body::Opts(o) => {
                let seq = Seq(o.seq);
                let inner = match o.inner {
                    wire::Inner::Fin => Inner::Fin,
                    wire::Inner::Message(_) => Inner::Data,
                };
                match self.reliable.on_receive(seq, inner) {
                    RecvAction::Deliver { ack } => {
                        if let wire::Inner::Message(m) = o.inner {
                            if self.fin.stop_rx() {
                                io.event(Event::DeliveredAfterFin);
                            }
                            io.deliver(m, Some(seq));
                        }
                        if let Some(ack) = ack {
                            self.ack(io, ack);
                        }
                    }
                    RecvAction::Fin => {
                        let a = self.fin.fin_received(seq);
                        self.apply(a, q, io);
                    }
                    RecvAction::Duplicate { ack } => {
                        io.event(Event::Duplicate { seq, expected: ack });
                        self.ack(io, ack);
                    }
                    RecvAction::Gap { expected } => io.event(Event::Gap { seq, expected }),
                }
            }
        }
        Ok(())
    }

    fn on_ack<Q: UnackedQueue, I: PeerIo<Entry = Q::Entry>>(
        &mut self,
        ack: Seq,
        q: &mut Q,
        io: &mut I,
    ) {
        match self.reliable.on_ack(q, ack, &mut |s, e| io.release(s, e)) {
            AckOutcome::Released { to, .. } => {
                let a = self.fin.on_acked(to);
                self.apply(a, q, io);
            }
            AckOutcome::Stale => {}
            AckOutcome::Invalid { ack, seq_send } => io.event(Event::AckInvalid { ack, seq_send }),
        }
    }

    /// Sends a reliable message to a 3.2 peer: runs the send-side ACK
    /// threshold (which may queue an ACK first), checks back-pressure, then
    /// calls `build` with the glue and the message's number; `build` places
    /// the message (a `DLM_OPTS` with that number in `u.h_seq`) on the
    /// connection and returns its handle, which goes into the unacked
    /// queue.
    pub fn send<Q: UnackedQueue, I: PeerIo<Entry = Q::Entry>>(
        &mut self,
        q: &mut Q,
        io: &mut I,
        build: impl FnOnce(&mut I, Seq) -> Q::Entry,
    ) -> Result<Seq, PeerSendError> {
        self.try_send(q, io, |io, seq| Some(build(io, seq)))
    }

    /// Like [`Peer::send`], for a caller whose placement can fail: `build`
    /// returns `None` when it could not place the message, and then the
    /// number is not used up and nothing else changes but the ACK that went
    /// ahead of it ([`PeerSendError::NoRoom`]).  Every refusal is decided
    /// before anything is queued.
    pub fn try_send<Q: UnackedQueue, I: PeerIo<Entry = Q::Entry>>(
        &mut self,
        q: &mut Q,
        io: &mut I,
        build: impl FnOnce(&mut I, Seq) -> Option<Q::Entry>,
    ) -> Result<Seq, PeerSendError> {
        self.check_send(q)?;
        if let Some(ack) = self.ack_before_send() {
            self.ack(io, ack);
        }
        let seq = self.reliable.seq_send();
        let entry = build(io, seq).ok_or(PeerSendError::NoRoom)?;
        match self.reliable.queue_send(q, entry) {
            Ok(s) => Ok(s),
            Err((e, entry)) => {
                io.release(seq, entry);
                Err(PeerSendError::Backpressure(e))
            }
        }
    }

    /// Why [`Peer::send`] would refuse a message now, if it would.
    pub fn check_send<Q: UnackedQueue>(&self, q: &Q) -> Result<(), PeerSendError> {
        match self.version.send_mode() {
            Err(VersionError::NotDetected) | Err(VersionError::Mismatch { .. }) => {
                return Err(PeerSendError::NotDetected)
            }
            Ok(super::version::SendMode::Plain) => return Err(PeerSendError::Plain),
            Ok(super::version::SendMode::Sequenced) => {}
        }
        if self.fin.stop_tx() {
            return Err(PeerSendError::Closing);
        }
        if !self.reliable.can_send() || !q.has_room() {
            return Err(PeerSendError::Backpressure(SendError::Backpressure {
                unacked: self.reliable.unacked(),
            }));
        }
        Ok(())
    }

    /// Whether the next [`Peer::send`] queues an ACK ahead of its message
    /// (so that the caller can make room for both before it calls).
    pub fn ack_due_before_send(&self) -> bool {
        self.reliable.send_ack_due() || self.owed_ack.is_some()
    }

    /// True when [`Peer::send`] would accept a message now.
    pub fn can_send<Q: UnackedQueue>(&self, q: &Q) -> bool {
        self.is_3_2() && !self.fin.stop_tx() && self.reliable.can_send() && q.has_room()
    }

    /// A new connection to the peer is up: send our ACK, then every
    /// unacked message again, in order (3.2 peers only).  Returns how many
    /// messages.
    ///
    /// The ACK goes first because the last one may have been lost with the
    /// old connection: the peer then holds a window of messages we already
    /// have and sends it all again, while its own copies and ours take a
    /// window's worth of bytes each before an ACK queued behind them gets
    /// through.  Under repeated connection loss that can keep both windows
    /// full for good.  The caller places the ACK ahead of the copies.
    pub fn connected<Q: UnackedQueue, I: PeerIo<Entry = Q::Entry>>(
        &mut self,
        q: &Q,
        io: &mut I,
    ) -> u32 {
        if !self.is_3_2() {
            return 0;
        }
        io.send_ack(self.reliable.ack_value());
        self.reliable.retransmit(q, &mut |s, e| io.resend(s, e))
    }

    /// A lockspace added the node.
    pub fn add_member<Q: UnackedQueue, I: PeerIo<Entry = Q::Entry>>(
        &mut self,
        q: &mut Q,
        io: &mut I,
    ) {
        let a = self.fin.add_member();
        self.apply(a, q, io);
    }

    /// A lockspace removed the node.
    pub fn remove_member<Q: UnackedQueue, I: PeerIo<Entry = Q::Entry>>(
        &mut self,
        q: &mut Q,
        io: &mut I,
    ) {
        let a = self.fin.remove_member();
        self.apply(a, q, io);
    }

    /// Starts the active close at `now_ms`; then poll
    /// [`Peer::poll_shutdown`].
    pub fn shutdown<Q: UnackedQueue, I: PeerIo<Entry = Q::Entry>>(
        &mut self,
        now_ms: u64,
        q: &mut Q,
        io: &mut I,
    ) -> Wait {
        let a = self.fin.shutdown(self.is_3_2(), now_ms);
        self.apply(a, q, io);
        self.fin.poll_shutdown(now_ms)
    }

    /// Polls the active close.
    pub fn poll_shutdown(&mut self, now_ms: u64) -> Wait {
        self.fin.poll_shutdown(now_ms)
    }

    /// Version wait of the last lockspace release, started at `started_ms`.
    pub fn poll_version_wait(&self, started_ms: u64, now_ms: u64) -> Wait {
        self.fin
            .poll_version_wait(self.version.get().is_some(), started_ms, now_ms)
    }

    /// Full reset (end of `dlm_midcomms_shutdown()`): everything unacked is
    /// released, version and counters forgotten, state CLOSED.
    pub fn reset<Q: UnackedQueue, I: PeerIo<Entry = Q::Entry>>(&mut self, q: &mut Q, io: &mut I) {
        let a = self.fin.reset();
        self.apply(a, q, io);
    }

    /// The node is being removed (`dlm_midcomms_close()`): waiters leave;
    /// the caller then drops the peer and its queue.
    pub fn close<I: PeerIo>(&mut self, io: &mut I) {
        let _ = self.fin.close();
        io.wake();
    }
}
