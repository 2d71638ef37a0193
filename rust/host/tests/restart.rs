// SPDX-License-Identifier: GPL-2.0

//! A node whose close did not finish in time resets and later starts a new
//! connection lifetime, while its peer still holds the old one (issue 9,
//! the `churn` scenario): the peer's retransmissions of the old lifetime
//! must not start a lifetime on the fresh node, and the peer must drop the
//! old lifetime, once, as soon as the fresh node shows its new one, without
//! taking the new lifetime's messages for leftovers of the old one.
//!
//! Two [`Peer`]s exchange real frames here; what one side queues is handed
//! to the other only when a test says so, so that the tests can lose,
//! delay and replay frames the way connection resets do.

mod common;

use dlm_proto::proto::fin::{State, Wait};
use dlm_proto::proto::peer::{Event, Peer, PeerIo};
use dlm_proto::proto::seq::Seq;
use dlm_proto::proto::wire::{self, Cmd, Message};

use common::Q;

/// Node 1 is the peer that keeps the old lifetime; node 3 resets.
const ONE: u32 = 1;
const THREE: u32 = 3;

#[derive(Default)]
struct Io {
    me: u32,
    /// Frames queued for the other node, in order.
    out: Vec<Vec<u8>>,
    /// Ids of the delivered messages (plain ones as `u64::MAX`).
    delivered: Vec<u64>,
    events: Vec<Event>,
}

impl PeerIo for Io {
    type Entry = Vec<u8>;
    fn deliver(&mut self, msg: Message<'_>, seq: Option<Seq>) {
        let id = if seq.is_some() && msg.cmd() == Cmd::Msg {
            let b = msg.bytes();
            u64::from_le_bytes(b[b.len() - 8..].try_into().unwrap())
        } else {
            u64::MAX
        };
        self.delivered.push(id);
    }
    fn send_ack(&mut self, ack: Seq) -> bool {
        let mut f = vec![0u8; wire::ACK_LEN];
        wire::encode_ack(&mut f, self.me, ack.get()).unwrap();
        self.out.push(f);
        true
    }
    fn send_fin(&mut self, seq: Seq) -> Option<Vec<u8>> {
        let mut f = vec![0u8; wire::OPTS_FIN_LEN];
        wire::encode_fin(&mut f, self.me, seq.get()).unwrap();
        self.out.push(f.clone());
        Some(f)
    }
    fn resend(&mut self, _seq: Seq, e: &Vec<u8>) {
        self.out.push(e.clone());
    }
    fn release(&mut self, _seq: Seq, _e: Vec<u8>) {}
    fn event(&mut self, e: Event) {
        self.events.push(e);
    }
}

struct Node {
    peer: Peer,
    q: Q,
    io: Io,
}

impl Node {
    /// Node `me`'s view of node `them`.
    fn new(me: u32, them: u32) -> Self {
        Node {
            peer: Peer::new(them, 0),
            q: Q::default(),
            io: Io {
                me,
                ..Io::default()
            },
        }
    }

    fn rx(&mut self, frame: &[u8]) {
        let _ = self.peer.receive(frame, &mut self.q, &mut self.io);
    }

    /// Receives everything `from` queued so far (in order); returns how many
    /// frames.
    fn rx_all(&mut self, from: &mut Node) -> usize {
        let frames = std::mem::take(&mut from.io.out);
        for f in &frames {
            self.rx(f);
        }
        frames.len()
    }

    /// Sends a sequenced message carrying `id`.
    fn send(&mut self, id: u64) -> Seq {
        let me = self.io.me;
        self.peer
            .send(&mut self.q, &mut self.io, |io, seq| {
                let f = msg_frame(me, seq.get(), id);
                io.out.push(f.clone());
                f
            })
            .unwrap()
    }

    /// A stateless RCOM (`RCOM_STATUS` = 1, `RCOM_STATUS_REPLY` = 5) from
    /// this node, queued for the other.
    fn rcom(&mut self, rc_type: u8) {
        let f = rcom_frame(self.io.me, rc_type);
        self.io.out.push(f);
    }

    fn add_member(&mut self) {
        self.peer.add_member(&mut self.q, &mut self.io);
    }

    fn remove_member(&mut self) {
        self.peer.remove_member(&mut self.q, &mut self.io);
    }

    /// A new connection: our ACK, then every unacked message again.
    fn connected(&mut self) {
        self.peer.connected(&self.q, &mut self.io);
    }

    /// The events that a healthy exchange never produces.
    fn complaints(&self) -> Vec<Event> {
        self.io
            .events
            .iter()
            .copied()
            .filter(|e| {
                matches!(
                    e,
                    Event::Stale { .. }
                        | Event::Gap { .. }
                        | Event::AckInvalid { .. }
                        | Event::Dropped(_)
                        | Event::Unexpected(_)
                        | Event::DeliveredAfterFin
                )
            })
            .collect()
    }
}

fn msg_frame(me: u32, seq: u32, id: u64) -> Vec<u8> {
    let len = wire::MESSAGE_MIN_LEN + 8;
    let mut inner = vec![0u8; len];
    wire::encode_message_header(&mut inner, Cmd::Msg, 1, me, len).unwrap();
    inner[len - 8..].copy_from_slice(&id.to_le_bytes());
    let mut f = vec![0u8; wire::OPTS_LEN + len];
    wire::encode_opts(&mut f, me, seq, &inner).unwrap();
    f
}

fn rcom_frame(me: u32, rc_type: u8) -> Vec<u8> {
    let mut st = vec![0u8; wire::RCOM_MIN_LEN];
    wire::encode_message_header(&mut st, Cmd::Rcom, 1, me, wire::RCOM_MIN_LEN).unwrap();
    st[16] = rc_type;
    st
}

fn fin_frame(me: u32, seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; wire::OPTS_FIN_LEN];
    wire::encode_fin(&mut f, me, seq).unwrap();
    f
}

fn acks(frames: &[Vec<u8>]) -> Vec<u32> {
    frames
        .iter()
        .filter(|f| f.len() == wire::ACK_LEN)
        .map(|f| u32::from_le_bytes([f[4], f[5], f[6], f[7]]))
        .collect()
}

/// The start of `churn`: nodes 1 and 3 share a lockspace and exchange
/// `n` messages each way.  Then node 3 leaves its last lockspace: its FIN
/// reaches node 1 (CLOSE_WAIT, node 1 still has users) and node 1's ACK
/// reaches node 3 (FIN_WAIT2), but node 1's recovery removes node 3 only
/// after node 3's close timed out and node 3 reset.  Node 1 then answers
/// with its passive FIN, which, like the message `late` node 1 sent while in
/// CLOSE_WAIT, never reaches node 3 before the reset.
///
/// Returns (node 1, node 3) with node 1 in LAST_ACK holding the unacked
/// message and its FIN, node 3 CLOSED with fresh counters.
fn node3_reset_before_node1_finished(n: u64, late: bool) -> (Node, Node) {
    let mut one = Node::new(ONE, THREE);
    let mut three = Node::new(THREE, ONE);
    one.add_member();
    three.add_member();
    three.rcom(1);
    one.rx_all(&mut three);
    one.rcom(1);
    three.rx_all(&mut one);
    for id in 0..n {
        one.send(100 + id);
        three.send(300 + id);
    }
    three.rx_all(&mut one);
    one.rx_all(&mut three);
    one.rx_all(&mut three);
    three.rx_all(&mut one);
    assert_eq!(one.io.delivered.len() as u64, 1 + n);
    assert_eq!(three.io.delivered.len() as u64, 1 + n);
    // A reconnect: both ACKs go through.
    one.connected();
    three.connected();
    one.rx_all(&mut three);
    three.rx_all(&mut one);
    assert_eq!((one.q.0.len(), three.q.0.len()), (0, 0));

    // Node 3 leaves: remove_member, then the active close.
    three.remove_member();
    let w = three.peer.shutdown(0, &mut three.q, &mut three.io);
    assert!(matches!(w, Wait::Until(_)));
    assert_eq!(three.peer.state(), State::FinWait1);
    one.rx_all(&mut three);
    assert_eq!(one.peer.state(), State::CloseWait);
    three.rx_all(&mut one);
    assert_eq!(three.peer.state(), State::FinWait2);
    if late {
        // Node 1's lock manager still talks to node 3 (it is a member here).
        one.send(199);
        one.io.out.clear();
    }
    // Node 1's recovery is slow: node 3's close times out and it resets.
    assert_eq!(three.peer.poll_shutdown(5000), Wait::TimedOut);
    three.peer.reset(&mut three.q, &mut three.io);
    assert_eq!(three.peer.state(), State::Closed);
    // Now node 1 removes node 3: its passive FIN is lost with the
    // connection that node 3's shutdown closed.
    one.remove_member();
    assert_eq!(one.peer.state(), State::LastAck);
    one.io.out.clear();
    assert_eq!(one.q.0.len(), 1 + late as usize);
    one.io.events.clear();
    three.io.events.clear();
    three.io.delivered.clear();
    one.io.delivered.clear();
    (one, three)
}

/// Node 3, reset, gets node 1's retransmissions of the old lifetime (its
/// ACK first, then the unacked message and the FIN): none of it starts a
/// lifetime on node 3, whose ACK of the FIN lets node 1 finish its close.
/// Before the fix node 3 took node 1's ACK for version detection, then
/// refused the ACK as invalid and the rest as a gap, on every reconnect.
#[test]
fn fresh_node_answers_the_old_lifetime_without_joining_it() {
    for late in [false, true] {
        let (mut one, mut three) = node3_reset_before_node1_finished(5, late);
        one.connected();
        let sent = one.io.out.clone();
        three.rx_all(&mut one);
        assert_eq!(sent.len(), 2 + late as usize, "late {late}");
        assert_eq!(three.peer.state(), State::Closed, "late {late}");
        assert_eq!(three.peer.version(), None, "late {late}");
        assert!(three.io.delivered.is_empty(), "late {late}");
        assert!(
            three.complaints().is_empty(),
            "late {late}: {:?}",
            three.io.events
        );
        // Node 3's answer acks node 1's FIN; node 1's close is done.
        one.rx_all(&mut three);
        assert_eq!(one.peer.state(), State::Closed, "late {late}");
        assert_eq!(one.q.0.len(), 0, "late {late}");
        assert!(
            one.complaints().is_empty(),
            "late {late}: {:?}",
            one.io.events
        );
        // Nothing left to send on a new connection: node 1 has no reason
        // to dial node 3 any more.
        one.connected();
        assert_eq!(one.io.out.len(), 0);
    }
}

/// Then node 3 starts a new lifetime with node 1 from a lockspace node 1
/// never joins (the ghost lockspace of `churn`): node 3's STATUS, node 1's
/// sequenced not-ready reply, more of both, all delivered, no complaint.
#[test]
fn new_lifetime_after_the_old_one_was_answered() {
    let (mut one, mut three) = node3_reset_before_node1_finished(20, true);
    one.connected();
    three.rx_all(&mut one);
    one.rx_all(&mut three);
    assert_eq!(one.peer.state(), State::Closed);
    three.add_member();
    for round in 0..3u64 {
        three.rcom(1);
        one.rx_all(&mut three);
        assert_eq!(one.peer.state(), State::Established);
        one.send(1000 + round);
        three.rx_all(&mut one);
        one.connected();
        three.connected();
        three.rx_all(&mut one);
        one.rx_all(&mut three);
    }
    assert_eq!(three.io.delivered, vec![1000, 1001, 1002]);
    assert!(three.complaints().is_empty(), "{:?}", three.io.events);
    assert!(one.complaints().is_empty(), "{:?}", one.io.events);
}

/// Node 1's passive FIN (and the message before it) never reached node 3,
/// and node 3 already started its new lifetime (it joined node 1's ghost
/// lockspace) before node 1 dialled it again: node 3's STATUS shows node 1
/// that the old lifetime is over.  Node 1 drops it (LAST_ACK, its unacked
/// message and FIN) once, answers as a node of the new lifetime, and a
/// second STATUS drops nothing of the new one.  Before the fix node 1 stayed
/// in LAST_ACK, refused to send its reply ("Closing") and kept
/// retransmitting the old lifetime, which node 3 took for a gap.
#[test]
fn status_ends_the_old_lifetime_once() {
    let (mut one, mut three) = node3_reset_before_node1_finished(5, true);
    three.add_member();
    three.rcom(1);
    one.rx_all(&mut three);
    assert_eq!(one.peer.state(), State::Established);
    assert_eq!(one.q.0.len(), 0);
    let restarts = |n: &Node| {
        n.io.events
            .iter()
            .filter(|e| matches!(e, Event::Restarted { .. }))
            .count()
    };
    assert_eq!(restarts(&one), 1);
    assert!(one.io.events.contains(&Event::Restarted {
        state: State::LastAck,
        unacked: 2
    }));
    // The not-ready reply: numbered from the start of the new lifetime.
    assert_eq!(one.send(2000), Seq(0));
    three.rx_all(&mut one);
    // Node 3 pings again; node 1's reply is still unacked and must stay.
    three.rcom(1);
    one.rx_all(&mut three);
    assert_eq!(restarts(&one), 1);
    assert_eq!(one.send(2001), Seq(1));
    one.connected();
    three.rx_all(&mut one);
    three.connected();
    one.rx_all(&mut three);
    assert_eq!(three.io.delivered, vec![2000, 2001]);
    assert_eq!(one.q.0.len(), 0);
    assert!(three.complaints().is_empty(), "{:?}", three.io.events);
    assert!(one.complaints().is_empty(), "{:?}", one.io.events);
}

/// A peer that detected our version from the old lifetime's leftovers (as
/// a stock node does: it takes our ACK for version detection) closes its
/// new lifetime with a FIN numbered from the start: that FIN proves the
/// restart.  Node 1 drops its old lifetime, and the FIN, which now meets a
/// node with no lifetime, is acked.  Before the fix node 1 took the FIN for
/// a leftover of the old lifetime ("Stale", ACK of the old FIN + 1).
#[test]
fn a_fin_before_the_old_one_ends_the_old_lifetime() {
    let (mut one, _three) = node3_reset_before_node1_finished(30, false);
    // The old lifetime's FIN from node 3 was number 30.
    one.rx(&fin_frame(THREE, 0));
    assert!(
        one.io.events.contains(&Event::Restarted {
            state: State::LastAck,
            unacked: 1
        }),
        "{:?}",
        one.io.events
    );
    assert_eq!(acks(&one.io.out), vec![1]);
    assert_eq!(one.q.0.len(), 0);
    assert_eq!(one.peer.state(), State::Closed);
    assert!(one.complaints().is_empty(), "{:?}", one.io.events);
}

/// The cases the stale guard was written for stay as they were: while node
/// 1 holds node 3's FIN (30), node 3's retransmissions of the old lifetime,
/// data and the FIN itself, are acked with 31 and not delivered, and they
/// end nothing (node 1 stays in LAST_ACK with its FIN unacked).
#[test]
fn retransmissions_of_the_old_lifetime_are_still_stale() {
    let (mut one, _three) = node3_reset_before_node1_finished(30, false);
    one.rx(&msg_frame(THREE, 29, 329));
    one.rx(&fin_frame(THREE, 30));
    assert_eq!(acks(&one.io.out), vec![31, 31]);
    assert!(one.io.delivered.is_empty());
    assert_eq!(one.peer.state(), State::LastAck);
    assert_eq!(one.q.0.len(), 1);
    assert!(!one
        .io
        .events
        .iter()
        .any(|e| matches!(e, Event::Restarted { .. })));
}

/// A node whose comm was removed and added again (no lifetime here) while
/// the peer still holds one: the peer's ACKs do not start a lifetime here
/// and are not reported as invalid; the peer's STATUS does start one.
#[test]
fn acks_outside_a_lifetime_are_no_version_detection() {
    let mut one = Node::new(ONE, THREE);
    let ack = {
        let mut f = vec![0u8; wire::ACK_LEN];
        wire::encode_ack(&mut f, THREE, 14).unwrap();
        f
    };
    one.rx(&ack);
    assert_eq!(one.peer.version(), None);
    assert_eq!(one.peer.state(), State::Closed);
    assert!(one.complaints().is_empty(), "{:?}", one.io.events);
    one.rx(&rcom_frame(THREE, 1));
    assert_eq!(one.peer.state(), State::Established);
    assert_eq!(one.io.delivered, vec![u64::MAX]);
}
