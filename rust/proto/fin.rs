// SPDX-License-Identifier: GPL-2.0

//! The DLM_FIN close handshake of DLM 3.2, as a pure state machine.
//!
//! This is the per-node termination state of fs/dlm/midcomms.c, modelled on
//! the TCP close of RFC 793 (without TIME_WAIT).  It is driven by:
//!
//! * the lockspace membership count (`users`): [`Fin::add_member`] and
//!   [`Fin::remove_member`], as `dlm_midcomms_add_member()` /
//!   `dlm_midcomms_remove_member()`;
//! * version detection of a 3.2 peer ([`Fin::version_detected`]);
//! * the active close of `dlm_midcomms_shutdown()` ([`Fin::shutdown`], then
//!   [`Fin::poll_shutdown`] with the current time until it says done);
//! * an in-order `DLM_FIN` from the peer ([`Fin::fin_received`]), which the
//!   reliable layer reports as [`super::reliable::RecvAction::Fin`];
//! * the cumulative ACK that covers our own FIN ([`Fin::on_acked`]);
//! * `dlm_midcomms_close()` ([`Fin::close`]) and the final reset of
//!   `dlm_midcomms_shutdown()` ([`Fin::reset`]).
//!
//! Every input returns [`Actions`]: what the caller must do, in this order:
//! send a `DLM_ACK` carrying the reliable layer's current ACK value, queue
//! our own `DLM_FIN` (and report its number with [`Fin::fin_queued`]), reset
//! the rest of the peer state (reliable counters and unacked queue,
//! version), wake shutdown waiters.  Time only enters as the `now_ms`
//! argument (any monotonic millisecond clock, e.g. `jiffies_to_msecs`).

use super::seq::Seq;

/// How long an active close waits for the handshake (`DLM_SHUTDOWN_TIMEOUT`).
pub const SHUTDOWN_TIMEOUT_MS: u64 = 5000;
/// How long `dlm_midcomms_version_wait()` waits per node (same constant).
pub const VERSION_WAIT_TIMEOUT_MS: u64 = 5000;

/// Close-handshake states, with C's numeric values (debugfs shows names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// No connection lifetime (after a reset).
    Closed = 1,
    /// Normal operation.
    Established = 2,
    /// We sent our FIN (active close) and wait for its ACK.
    FinWait1 = 3,
    /// Our FIN is acked; we wait for the peer's FIN.
    FinWait2 = 4,
    /// The peer sent its FIN while we still have users.
    CloseWait = 5,
    /// We answered the peer's FIN with ours and wait for its ACK.
    LastAck = 6,
    /// Both sides sent FIN at the same time; we wait for the ACK of ours.
    Closing = 7,
}

impl State {
    /// The name C uses (`dlm_state_str()`).
    pub const fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN_WAIT1",
            State::FinWait2 => "FIN_WAIT2",
            State::CloseWait => "CLOSE_WAIT",
            State::LastAck => "LAST_ACK",
            State::Closing => "CLOSING",
        }
    }
}

/// Which side of the handshake sent our FIN; decides what its ACK does
/// (`dlm_act_fin_ack_rcv()` or `dlm_pas_fin_ack_rcv()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinKind {
    /// Sent by [`Fin::shutdown`].
    Active,
    /// Sent in answer to the peer's FIN.
    Passive,
}

/// An input that arrived in a state where C logs "unexpected state" (and
/// warns once); the state is left unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unexpected {
    /// An in-order FIN arrived in this state.
    FinIn(State),
    /// The ACK of our active FIN arrived in this state.
    ActiveAckIn(State),
    /// The ACK of our passive FIN arrived in this state.
    PassiveAckIn(State),
    /// The last lockspace user went away in this state.
    RemoveIn(State),
    /// A member was added while a close was in progress in this state; the
    /// node was reset ("reset node because shutdown stuck").
    StuckIn(State),
}

/// What the caller must do after an input, in field order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// Send a `DLM_ACK` whose value is the reliable layer's ACK value (the
    /// FIN's number plus one, since the FIN was just accepted).
    pub send_ack: bool,
    /// Queue our `DLM_FIN` as the next reliable message, then call
    /// [`Fin::fin_queued`] with its number.
    pub send_fin: Option<FinKind>,
    /// Reset the rest of the peer state: reliable counters and unacked
    /// queue, detected version (`midcomms_node_reset()`).  This state
    /// machine has already reset itself.
    pub reset: bool,
    /// Wake anybody waiting in shutdown or version wait for this node.
    pub wake: bool,
    /// Log this (rate-limited); nothing else to do about it.
    pub unexpected: Option<Unexpected>,
}

/// Result of polling a wait with a timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The condition holds.
    Done,
    /// Still waiting; poll again at or before this time (ms).
    Until(u64),
    /// The timeout expired first (C logs it and carries on).
    TimedOut,
}

/// Per-node close-handshake state.
#[derive(Clone, Debug)]
pub struct Fin {
    state: State,
    /// Lockspaces that have this node as a member.
    users: u32,
    /// `DLM_NODE_FLAG_STOP_TX`: our FIN is out; nothing more may be sent.
    stop_tx: bool,
    /// `DLM_NODE_FLAG_STOP_RX`: the peer's FIN is in; nothing more should
    /// arrive.
    stop_rx: bool,
    /// `DLM_NODE_FLAG_CLOSE`: the node is being removed; waits end.
    close: bool,
    /// Kind and (once queued) number of our FIN, until it is acked.
    our_fin: Option<(FinKind, Option<Seq>)>,
    /// Deadline of the active close in progress.
    shutdown_deadline: Option<u64>,
    /// Number of the peer's FIN we accepted in the current or the last
    /// connection lifetime, until a lockspace adds the node again.
    peer_fin: Option<Seq>,
}

impl Default for Fin {
    fn default() -> Self {
        Self::new()
    }
}

impl Fin {
    /// A node as `dlm_midcomms_addr()` creates it: CLOSED, no users.
    pub const fn new() -> Self {
        Fin {
            state: State::Closed,
            users: 0,
            stop_tx: false,
            stop_rx: false,
            close: false,
            our_fin: None,
            shutdown_deadline: None,
            peer_fin: None,
        }
    }

    /// Current state.
    pub const fn state(&self) -> State {
        self.state
    }

    /// Number of lockspaces using the node.
    pub const fn users(&self) -> u32 {
        self.users
    }

    /// Our FIN has been sent: C warns on any further send (and sends
    /// anyway); callers should refuse new upper-layer messages.
    pub const fn stop_tx(&self) -> bool {
        self.stop_tx
    }

    /// The peer's FIN has been received: C warns on any further delivery.
    pub const fn stop_rx(&self) -> bool {
        self.stop_rx
    }

    /// The node is being removed (`dlm_midcomms_close()`).
    pub const fn closing_node(&self) -> bool {
        self.close
    }

    /// Number of our FIN while it waits for its ACK.
    pub fn pending_fin(&self) -> Option<Seq> {
        self.our_fin.and_then(|(_, s)| s)
    }

    /// C's `flags` word for debugfs: bit 1 CLOSE, bit 2 STOP_TX, bit 3 STOP_RX.
    pub const fn flags(&self) -> u32 {
        (self.close as u32) << 1 | (self.stop_tx as u32) << 2 | (self.stop_rx as u32) << 3
    }

    fn do_reset(&mut self, a: &mut Actions) {
        self.state = State::Closed;
        self.stop_tx = false;
        self.stop_rx = false;
        self.close = false;
        self.our_fin = None;
        a.reset = true;
        a.wake = true;
    }

    fn send_fin(&mut self, kind: FinKind, a: &mut Actions) {
        self.stop_tx = true;
        self.our_fin = Some((kind, None));
        a.send_fin = Some(kind);
    }

    /// Full reset (`midcomms_node_reset()`): the end of
    /// `dlm_midcomms_shutdown()` does this for every node.  The membership
    /// count is kept, as in C.
    pub fn reset(&mut self) -> Actions {
        let mut a = Actions::default();
        self.do_reset(&mut a);
        self.shutdown_deadline = None;
        a
    }

    /// The caller queued the FIN asked for by [`Actions::send_fin`] with
    /// number `seq`.
    pub fn fin_queued(&mut self, seq: Seq) {
        if let Some((kind, None)) = self.our_fin {
            self.our_fin = Some((kind, Some(seq)));
        }
    }

    /// A lockspace added the node (`dlm_midcomms_add_member()`).
    pub fn add_member(&mut self) -> Actions {
        let mut a = Actions::default();
        if self.users == 0 {
            // A new connection lifetime starts: the peer's old one is over.
            self.peer_fin = None;
            match self.state {
                State::Established => {}
                State::Closed => self.state = State::Established,
                stuck => {
                    // A close that never finished: start over.
                    a.unexpected = Some(Unexpected::StuckIn(stuck));
                    self.do_reset(&mut a);
                    self.state = State::Established;
                }
            }
        }
        self.users = self.users.saturating_add(1);
        a
    }

    /// A lockspace removed the node (`dlm_midcomms_remove_member()`).
    pub fn remove_member(&mut self) -> Actions {
        let mut a = Actions::default();
        if self.users == 0 {
            // Created by configuration but never added (or already closed).
            return a;
        }
        self.users -= 1;
        if self.users == 0 {
            match self.state {
                State::Established | State::LastAck | State::Closed => {}
                State::CloseWait => {
                    // Passive close, "case 2": the peer's FIN came first.
                    self.state = State::LastAck;
                    self.stop_rx = true;
                    self.send_fin(FinKind::Passive, &mut a);
                }
                other => a.unexpected = Some(Unexpected::RemoveIn(other)),
            }
        }
        a
    }

    /// The first message of a 3.2 peer arrived (version detection).
    pub fn version_detected(&mut self) -> Actions {
        if self.state == State::Closed {
            self.state = State::Established;
        }
        Actions {
            wake: true,
            ..Actions::default()
        }
    }

    /// Starts an active close (`midcomms_shutdown()` for one node) at time
    /// `now_ms`.  `peer_is_3_2` is false when the peer's version is unset or
    /// 3.1: then there is no handshake and nothing to wait for.  Afterwards
    /// poll [`Fin::poll_shutdown`].
    pub fn shutdown(&mut self, peer_is_3_2: bool, now_ms: u64) -> Actions {
        let mut a = Actions::default();
        if !peer_is_3_2 {
            self.shutdown_deadline = None;
            return a;
        }
        if self.state == State::Established {
            self.state = State::FinWait1;
            self.send_fin(FinKind::Active, &mut a);
        }
        // Any other state: CLOSED already is what we want; the others are
        // a passive close in progress that ends in CLOSED too.
        self.shutdown_deadline = Some(now_ms.saturating_add(SHUTDOWN_TIMEOUT_MS));
        a
    }

    /// Polls the active close started by [`Fin::shutdown`]: done when the
    /// node is CLOSED or being removed, timed out after
    /// [`SHUTDOWN_TIMEOUT_MS`].  After it returns anything but
    /// [`Wait::Until`], `dlm_midcomms_shutdown()` goes on to close the
    /// connections and then [`Fin::reset`]s the node.
    pub fn poll_shutdown(&mut self, now_ms: u64) -> Wait {
        if self.state == State::Closed || self.close {
            self.shutdown_deadline = None;
            return Wait::Done;
        }
        match self.shutdown_deadline {
            None => Wait::Done,
            Some(d) if now_ms >= d => {
                self.shutdown_deadline = None;
                Wait::TimedOut
            }
            Some(d) => Wait::Until(d),
        }
    }

    /// The condition of `dlm_midcomms_version_wait()` for this node:
    /// version known, node CLOSED or being removed.  The caller waits for it
    /// at most [`VERSION_WAIT_TIMEOUT_MS`] from `started_ms`.
    pub fn poll_version_wait(&self, version_known: bool, started_ms: u64, now_ms: u64) -> Wait {
        if version_known || self.state == State::Closed || self.close {
            Wait::Done
        } else {
            let d = started_ms.saturating_add(VERSION_WAIT_TIMEOUT_MS);
            if now_ms >= d {
                Wait::TimedOut
            } else {
                Wait::Until(d)
            }
        }
    }

    /// The reliable layer accepted the in-order `DLM_FIN` number `seq` from
    /// the peer.
    pub fn fin_received(&mut self, seq: Seq) -> Actions {
        let mut a = Actions::default();
        if self.state != State::Closed {
            self.peer_fin = Some(seq);
        }
        match self.state {
            State::Established => {
                a.send_ack = true;
                if self.users == 0 {
                    // Passive close, "case 1": nobody uses the node.
                    self.state = State::LastAck;
                    self.stop_rx = true;
                    self.send_fin(FinKind::Passive, &mut a);
                } else {
                    self.state = State::CloseWait;
                }
            }
            State::FinWait1 => {
                // Simultaneous close.
                a.send_ack = true;
                self.state = State::Closing;
                self.stop_rx = true;
            }
            State::FinWait2 => {
                a.send_ack = true;
                self.do_reset(&mut a);
            }
            State::LastAck => {
                // C consumes it without an ACK.  Acknowledging it costs
                // nothing and lets the peer finish its close.
                a.send_ack = true;
            }
            State::Closed => {
                // See Fin::stale_fin_in_closed(); a caller that gets here
                // answered the FIN already.
                a.send_ack = true;
            }
            other => a.unexpected = Some(Unexpected::FinIn(other)),
        }
        a
    }

    /// True when a sequenced `DLM_FIN` arriving now should not go through
    /// version detection and the sequence check, but only be answered with
    /// an ACK of its number plus one, leaving every state alone.
    ///
    /// That is the case in CLOSED with no users: the FIN belongs to a
    /// connection lifetime that ended here already (the peer did not get
    /// our last ACK and is still in LAST_ACK, CLOSING or FIN_WAIT1), or to a
    /// peer closing towards a node that never joined it.  C would detect the
    /// version, move to ESTABLISHED and, depending on the number, drop the
    /// FIN (the peer then stays stuck until its next add_member) or start a
    /// passive close of a lifetime that does not exist, which can bounce
    /// FINs between the two nodes.
    pub const fn stale_fin_in_closed(&self) -> bool {
        matches!(self.state, State::Closed) && self.users == 0
    }

    /// Checks a sequenced message with number `seq` against the peer's last
    /// FIN.  Once we accepted the peer's FIN, nothing numbered up to it can
    /// be new: it is a retransmission from the lifetime that the FIN ended,
    /// which can arrive after our side of the handshake finished and reset
    /// the counters (the peer still waits for our last ACK and sends its
    /// unacked messages again on a new connection; a C peer also sends its
    /// FIN again after every reconnect).  Returns the ACK value to answer it
    /// with (the FIN's number plus one, which lets the peer finish); the
    /// message must be dropped without version detection.
    ///
    /// C has no such check: after the reset it takes the retransmitted
    /// messages as the start of a new lifetime and delivers them a second
    /// time.  The guard ends when a lockspace adds the node again, or
    /// earlier, as soon as the peer shows that it started a new lifetime
    /// ([`Fin::new_lifetime_fin`], [`Fin::peer_restarted`]): then an ACK
    /// F+1 can never release a new message of a peer that reset.
    ///
    /// Callers check [`Fin::new_lifetime_fin`] first.
    pub fn stale_seq(&self, seq: Seq) -> Option<Seq> {
        match self.peer_fin {
            Some(f) if !seq.after(f) => Some(f.next()),
            _ => None,
        }
    }

    /// True when a `DLM_FIN` numbered `seq` proves that the peer started a
    /// new connection lifetime: we accepted its FIN number F of the old
    /// one, and `seq` comes before F.  A lifetime has one FIN and numbers
    /// nothing after it, so every number before F was a message of the old
    /// lifetime, never its FIN; only a peer that reset (its close timed out,
    /// or the module was reloaded) and numbers from the start again sends a
    /// FIN there.  Such a peer detected our version from leftovers of the old
    /// lifetime (our retransmissions or ACKs) and now closes the lifetime it
    /// took for new.  The caller then runs [`Fin::peer_restarted`] and
    /// handles the FIN as one of a new lifetime.
    pub fn new_lifetime_fin(&self, seq: Seq) -> bool {
        matches!(self.peer_fin, Some(f) if seq.before(f))
    }

    /// The peer started a new connection lifetime after the one its last
    /// FIN ended: it asked for our recovery status (a 3.2 `RCOM_STATUS`,
    /// which a node sends only to members of a lockspace it runs, so after
    /// its `add_member`, which resets a node whose close did not finish), or
    /// it sent a FIN that belongs to a new lifetime
    /// ([`Fin::new_lifetime_fin`]).  Nothing it sends from now on can be a
    /// leftover of the old lifetime (it dropped those when it reset).
    ///
    /// Forgets the number of its last FIN, so that its new messages are not
    /// taken for leftovers ([`Fin::stale_seq`]), even if they arrive before a
    /// lockspace adds the node here; and, unless the node is CLOSED already,
    /// drops our side of the old lifetime: the close we were in (CLOSE_WAIT,
    /// LAST_ACK or CLOSING) can never finish, since the peer answers nothing
    /// of it any more, and our unacked messages and counters of that
    /// lifetime mean nothing to the new one ([`Actions::reset`]).  With
    /// users left the node is ESTABLISHED again, as [`Fin::add_member`]
    /// would make it.  C keeps the old state until the next `add_member`
    /// ("reset node because shutdown stuck") or `dlm_midcomms_close()`, and
    /// meanwhile retransmits the old lifetime into the new one.
    ///
    /// Does nothing (returns no actions) unless we hold the peer's FIN, so
    /// the old state is dropped once, not on every later `RCOM_STATUS`.
    pub fn peer_restarted(&mut self) -> Actions {
        let mut a = Actions::default();
        if self.peer_fin.take().is_none() {
            return a;
        }
        if self.state != State::Closed {
            self.do_reset(&mut a);
            self.shutdown_deadline = None;
            if self.users > 0 {
                self.state = State::Established;
            }
        }
        a
    }

    /// True while no connection lifetime with the peer exists here: CLOSED
    /// with no lockspace using the node (a new node, or one whose lifetime
    /// ended in a reset), or CLOSED after a lifetime that ended with the
    /// peer's FIN, until a lockspace adds the node again.  Nothing numbered
    /// can belong to a lifetime then.  The peer starts a new one with a
    /// stateless `RCOM_STATUS` (which detects its version and moves the node
    /// to ESTABLISHED), or we do with [`Fin::add_member`]; before that the
    /// peer sends sequenced messages only in answer to such a STATUS, and
    /// lock messages only once its lockspace and ours both have each other.
    ///
    /// So an ACK, a `DLM_OPTS` or a plain message other than `RCOM_STATUS`
    /// that arrives now is a leftover of an earlier lifetime: typically the
    /// retransmissions of a peer that still holds the lifetime that our
    /// reset ended (its close did not finish in time), or the peer's answer
    /// to our own last FIN, or a reply to a STATUS of ours that crossed the
    /// close.  None of them counts as version detection, which would move
    /// the node to ESTABLISHED (C does that): a lifetime that exists on this
    /// side only, in which the leftovers look like gaps and invalid ACKs,
    /// and whose later FIN the peer takes for a stale one.
    pub const fn outside_lifetime(&self) -> bool {
        matches!(self.state, State::Closed) && (self.users == 0 || self.peer_fin.is_some())
    }

    /// A cumulative ACK released every message before `acked_to`.  If that
    /// covers our FIN, runs the FIN's ACK handler.
    pub fn on_acked(&mut self, acked_to: Seq) -> Actions {
        let mut a = Actions::default();
        let kind = match self.our_fin {
            Some((kind, Some(s))) if s.before(acked_to) => kind,
            _ => return a,
        };
        self.our_fin = None;
        match (kind, self.state) {
            (FinKind::Active, State::FinWait1) => self.state = State::FinWait2,
            (FinKind::Active, State::Closing) | (FinKind::Passive, State::LastAck) => {
                self.do_reset(&mut a)
            }
            (_, State::Closed) => a.wake = true,
            (FinKind::Active, s) => a.unexpected = Some(Unexpected::ActiveAckIn(s)),
            (FinKind::Passive, s) => a.unexpected = Some(Unexpected::PassiveAckIn(s)),
        }
        a
    }

    /// The node is being removed (`dlm_midcomms_close()`): waits end; the
    /// caller then tears the node down.
    pub fn close(&mut self) -> Actions {
        self.close = true;
        Actions {
            wake: true,
            ..Actions::default()
        }
    }
}
