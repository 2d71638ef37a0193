// SPDX-License-Identifier: GPL-2.0

//! Two [`Peer`]s against the simplest possible model of reliable delivery:
//! "each side receives exactly the list the other side sent, in order".
//! proptest drives sends, partial transmission, delivery, connection resets
//! (losing whatever is on the wire and the partly sent head of the write
//! queue) and reconnects in any order, and shrinks a failure to a short
//! sequence of operations.  The simulator does the same at the byte level
//! with many nodes; this one is for minimal counterexamples.

mod common;

use std::collections::VecDeque;

use dlm_proto::proto::peer::{Event, Peer, PeerIo};
use dlm_proto::proto::reliable::UnackedQueue;
use dlm_proto::proto::seq::Seq;
use dlm_proto::proto::wire::{self, Cmd, Message};
use proptest::prelude::*;

use common::Q;

/// One side's glue: its write queue (whole frames, tagged sequenced or
/// not) and what it delivered.
#[derive(Default)]
struct Side {
    out: VecDeque<(bool, Vec<u8>)>,
    delivered: Vec<u64>,
    bad: Option<String>,
}

struct Io<'a> {
    side: &'a mut Side,
    me: u32,
}

impl PeerIo for Io<'_> {
    type Entry = Vec<u8>;
    fn deliver(&mut self, msg: Message<'_>, _seq: Option<Seq>) {
        if msg.cmd() == Cmd::Msg {
            let b = msg.bytes();
            let mut id = [0u8; 8];
            id.copy_from_slice(&b[88..96]);
            self.side.delivered.push(u64::from_le_bytes(id));
        }
    }
    fn send_ack(&mut self, ack: Seq) -> bool {
        let mut f = vec![0u8; wire::ACK_LEN];
        wire::encode_ack(&mut f, self.me, ack.get()).unwrap();
        self.side.out.push_back((false, f));
        true
    }
    fn send_fin(&mut self, seq: Seq) -> Option<Vec<u8>> {
        let mut f = vec![0u8; wire::OPTS_FIN_LEN];
        wire::encode_fin(&mut f, self.me, seq.get()).unwrap();
        self.side.out.push_back((true, f.clone()));
        Some(f)
    }
    fn resend(&mut self, _seq: Seq, e: &Vec<u8>) {
        self.side.out.push_back((true, e.clone()));
    }
    fn release(&mut self, _seq: Seq, _e: Vec<u8>) {}
    fn event(&mut self, ev: Event) {
        if let Event::Dropped(e) = ev {
            self.side.bad = Some(format!("dropped: {e}"));
        }
    }
}

struct World {
    peer: [Peer; 2],
    q: [Q; 2],
    side: [Side; 2],
    /// wire[i]: frames from i to 1 - i.
    wire: [VecDeque<Vec<u8>>; 2],
    /// Ids sent by each side.
    sent: [u64; 2],
    up: bool,
}

fn msg_frame(me: u32, seq: Seq, id: u64) -> Vec<u8> {
    let mut inner = vec![0u8; 96];
    wire::encode_message_header(&mut inner, Cmd::Msg, 1, me, 96).unwrap();
    inner[88..96].copy_from_slice(&id.to_le_bytes());
    let mut f = vec![0u8; 120];
    wire::encode_opts(&mut f, me, seq.get(), &inner).unwrap();
    f
}

impl World {
    fn new() -> Self {
        let mut w = World {
            peer: [Peer::new(2, 0), Peer::new(1, 0)],
            q: [Q::default(), Q::default()],
            side: [Side::default(), Side::default()],
            wire: [VecDeque::new(), VecDeque::new()],
            sent: [0, 0],
            up: true,
        };
        for i in 0..2 {
            w.with(i, |p, q, io| p.add_member(q, io));
        }
        // Version detection through the stateless path.
        for i in 0..2 {
            let mut st = vec![0u8; wire::RCOM_MIN_LEN];
            wire::encode_message_header(&mut st, Cmd::Rcom, 1, i as u32 + 1, wire::RCOM_MIN_LEN)
                .unwrap();
            st[16] = 1; // RCOM_STATUS
            w.with(1 - i, |p, q, io| p.receive(&st, q, io).unwrap());
        }
        w
    }

    fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut Peer, &mut Q, &mut Io<'_>) -> R) -> R {
        let mut io = Io {
            side: &mut self.side[i],
            me: i as u32 + 1,
        };
        f(&mut self.peer[i], &mut self.q[i], &mut io)
    }

    fn send(&mut self, i: usize) {
        let id = self.sent[i];
        let me = i as u32 + 1;
        let r = self.with(i, |p, q, io| {
            p.send(q, io, |io, seq| {
                let f = msg_frame(me, seq, id);
                io.side.out.push_back((true, f.clone()));
                f
            })
        });
        if r.is_ok() {
            self.sent[i] += 1;
        }
    }

    fn transmit(&mut self, i: usize, n: usize) {
        if !self.up {
            return;
        }
        for _ in 0..n {
            match self.side[i].out.pop_front() {
                Some((_, f)) => self.wire[i].push_back(f),
                None => break,
            }
        }
    }

    fn deliver(&mut self, i: usize, n: usize) {
        for _ in 0..n {
            let Some(f) = self.wire[i].pop_front() else {
                break;
            };
            self.with(1 - i, |p, q, io| {
                let _ = p.receive(&f, q, io);
            });
        }
    }

    fn reset(&mut self, drop_head: [bool; 2]) {
        self.up = false;
        for (i, drop) in drop_head.into_iter().enumerate() {
            self.wire[i].clear();
            if drop {
                self.side[i].out.pop_front();
            }
            self.side[i].out.retain(|(seq, _)| !seq);
        }
    }

    fn connect(&mut self) {
        if self.up {
            return;
        }
        self.up = true;
        for i in 0..2 {
            self.side[i].out.retain(|(seq, _)| !seq);
            self.with(i, |p, q, io| p.connected(q, io));
        }
    }

    fn check(&self) -> Result<(), TestCaseError> {
        for i in 0..2 {
            prop_assert!(self.side[i].bad.is_none(), "{:?}", self.side[i].bad);
            let got = &self.side[1 - i].delivered;
            let want: Vec<u64> = (0..got.len() as u64).collect();
            prop_assert_eq!(got, &want, "side {} delivered out of order or twice", 1 - i);
            prop_assert!(got.len() as u64 <= self.sent[i]);
            prop_assert!(self.q[i].len() as u32 <= self.peer[i].reliable().max_unacked());
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
enum Op {
    Send(usize, u8),
    Transmit(usize, u8),
    Deliver(usize, u8),
    Reset(bool, bool),
    Connect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => ((0usize..2), (1u8..40)).prop_map(|(i, n)| Op::Send(i, n)),
        8 => ((0usize..2), (1u8..30)).prop_map(|(i, n)| Op::Transmit(i, n)),
        8 => ((0usize..2), (1u8..30)).prop_map(|(i, n)| Op::Deliver(i, n)),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(a, b)| Op::Reset(a, b)),
        2 => Just(Op::Connect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn exactly_once_in_order(ops in proptest::collection::vec(op(), 1..200)) {
        let mut w = World::new();
        for op in &ops {
            match *op {
                Op::Send(i, n) => (0..n).for_each(|_| w.send(i)),
                Op::Transmit(i, n) => w.transmit(i, n as usize),
                Op::Deliver(i, n) => w.deliver(i, n as usize),
                Op::Reset(a, b) => w.reset([a, b]),
                Op::Connect => w.connect(),
            }
            w.check()?;
        }
        // Quiet network: one more reconnect (which a lost ACK may need),
        // then everything flows.
        w.reset([false, false]);
        w.connect();
        for _ in 0..10_000 {
            if w.side.iter().all(|s| s.out.is_empty()) && w.wire.iter().all(|x| x.is_empty()) {
                break;
            }
            for i in 0..2 {
                w.transmit(i, usize::MAX);
                w.deliver(i, usize::MAX);
            }
        }
        w.check()?;
        for i in 0..2 {
            prop_assert_eq!(w.side[1 - i].delivered.len() as u64, w.sent[i], "side {} lost messages", i);
        }
    }
}

// Peer-level unit tests: the glue rules around the reliable layer and the
// close handshake, one frame at a time.

fn status_from(nodeid: u32) -> Vec<u8> {
    let mut st = vec![0u8; wire::RCOM_MIN_LEN];
    wire::encode_message_header(&mut st, Cmd::Rcom, 1, nodeid, wire::RCOM_MIN_LEN).unwrap();
    st[16] = 1; // RCOM_STATUS
    st
}

fn ack_from(nodeid: u32, v: u32) -> Vec<u8> {
    let mut f = vec![0u8; wire::ACK_LEN];
    wire::encode_ack(&mut f, nodeid, v).unwrap();
    f
}

fn fin_from(nodeid: u32, seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; wire::OPTS_FIN_LEN];
    wire::encode_fin(&mut f, nodeid, seq).unwrap();
    f
}

/// Node 1's view of peer node 2, and node 1's glue.
struct One {
    peer: Peer,
    q: Q,
    side: Side,
    events: Vec<Event>,
}

struct EvIo<'a> {
    side: &'a mut Side,
    events: &'a mut Vec<Event>,
}

impl PeerIo for EvIo<'_> {
    type Entry = Vec<u8>;
    fn deliver(&mut self, msg: Message<'_>, seq: Option<Seq>) {
        Io {
            side: self.side,
            me: 1,
        }
        .deliver(msg, seq)
    }
    fn send_ack(&mut self, ack: Seq) -> bool {
        Io {
            side: self.side,
            me: 1,
        }
        .send_ack(ack)
    }
    fn send_fin(&mut self, seq: Seq) -> Option<Vec<u8>> {
        Io {
            side: self.side,
            me: 1,
        }
        .send_fin(seq)
    }
    fn resend(&mut self, seq: Seq, e: &Vec<u8>) {
        Io {
            side: self.side,
            me: 1,
        }
        .resend(seq, e)
    }
    fn release(&mut self, _seq: Seq, _e: Vec<u8>) {}
    fn event(&mut self, ev: Event) {
        self.events.push(ev);
    }
}

impl One {
    fn new() -> Self {
        One {
            peer: Peer::new(2, 0),
            q: Q::default(),
            side: Side::default(),
            events: Vec::new(),
        }
    }
    fn io(&mut self) -> (&mut Peer, &mut Q, EvIo<'_>) {
        (
            &mut self.peer,
            &mut self.q,
            EvIo {
                side: &mut self.side,
                events: &mut self.events,
            },
        )
    }
    fn rx(&mut self, frame: &[u8]) {
        let (p, q, mut io) = self.io();
        let _ = p.receive(frame, q, &mut io);
    }
    fn send(&mut self, id: u64) -> Result<Seq, PeerSendError> {
        let (p, q, mut io) = self.io();
        p.send(q, &mut io, |io, seq| {
            let f = msg_frame(1, seq, id);
            io.side.out.push_back((true, f.clone()));
            f
        })
    }
    /// ACK values queued so far, in order; clears the write queue.
    fn acks(&mut self) -> Vec<u32> {
        let v = self
            .side
            .out
            .iter()
            .filter(|(seq, f)| !seq && f[14] == 4)
            .map(|(_, f)| u32::from_le_bytes([f[4], f[5], f[6], f[7]]))
            .collect();
        self.side.out.clear();
        v
    }
    fn fins(&self) -> usize {
        self.side
            .out
            .iter()
            .filter(|(seq, f)| *seq && f[24 + 14] == 5)
            .count()
    }
}

use dlm_proto::proto::fin::State;
use dlm_proto::proto::peer::PeerSendError;
use dlm_proto::proto::wire::Version;

#[test]
fn peer_send_needs_a_3_2_version() {
    let mut n = One::new();
    assert_eq!(n.send(0), Err(PeerSendError::NotDetected));
    // A 3.1 peer gets plain messages.
    let mut st = status_from(2);
    st[0..4].copy_from_slice(&Version::WIRE_3_1.to_le_bytes());
    n.rx(&st);
    assert_eq!(n.peer.version(), Some(Version::V3_1));
    assert_eq!(n.send(0), Err(PeerSendError::Plain));
    // ... and a later 3.2 message from it is a version mismatch.
    n.rx(&ack_from(2, 0));
    assert!(matches!(n.events.last(), Some(Event::Dropped(_))));
}

#[test]
fn peer_detects_3_2_and_sends_sequenced() {
    let mut n = One::new();
    n.rx(&status_from(2));
    assert_eq!(n.peer.version(), Some(Version::V3_2));
    assert_eq!(n.peer.state(), State::Established);
    assert_eq!(n.send(0), Ok(Seq(0)));
    assert_eq!(n.send(1), Ok(Seq(1)));
    assert_eq!(n.q.len(), 2);
    // A frame from the wrong node is dropped and reported.
    n.rx(&ack_from(3, 1));
    assert!(matches!(n.events.last(), Some(Event::Dropped(_))));
    assert_eq!(n.q.len(), 2);
    // An ACK beyond what was sent is ignored.
    n.rx(&ack_from(2, 5));
    assert!(matches!(n.events.last(), Some(Event::AckInvalid { .. })));
    assert_eq!(n.q.len(), 2);
    n.rx(&ack_from(2, 1));
    assert_eq!(n.q.len(), 1);
}

#[test]
fn peer_send_ack_threshold_goes_ahead_of_the_message() {
    let mut n = One::new();
    n.rx(&status_from(2));
    for i in 0..33u32 {
        n.rx(&msg_frame(2, Seq(i), i as u64));
    }
    assert!(n.acks().is_empty());
    n.send(0).unwrap();
    // The ACK (33) is queued before the message.
    assert_eq!(n.side.out.len(), 2);
    assert!(!n.side.out[0].0 && n.side.out[1].0);
    assert_eq!(n.acks(), vec![33]);
}

#[test]
fn peer_duplicates_are_reacked_and_gaps_dropped() {
    let mut n = One::new();
    n.rx(&status_from(2));
    n.rx(&msg_frame(2, Seq(0), 0));
    n.rx(&msg_frame(2, Seq(1), 1));
    n.rx(&msg_frame(2, Seq(0), 0));
    assert_eq!(n.acks(), vec![2]);
    n.rx(&msg_frame(2, Seq(3), 3));
    assert!(n.acks().is_empty());
    assert!(matches!(n.events.last(), Some(Event::Gap { .. })));
    assert_eq!(n.side.delivered, vec![0, 1]);
}

#[test]
fn peer_passive_close_and_stale_leftovers() {
    let mut n = One::new();
    {
        let (p, q, mut io) = n.io();
        p.add_member(q, &mut io);
    }
    n.rx(&status_from(2));
    n.rx(&msg_frame(2, Seq(0), 0));
    n.rx(&fin_from(2, 1));
    assert_eq!(n.peer.state(), State::CloseWait);
    assert_eq!(n.acks(), vec![2]);
    {
        let (p, q, mut io) = n.io();
        p.remove_member(q, &mut io);
    }
    assert_eq!(n.peer.state(), State::LastAck);
    assert_eq!(n.fins(), 1);
    assert_eq!(n.send(9), Err(PeerSendError::Closing));
    // Our FIN was seq 0; its ACK completes the close.
    n.rx(&ack_from(2, 1));
    assert_eq!(n.peer.state(), State::Closed);
    assert_eq!(n.peer.version(), None);
    assert_eq!(n.q.len(), 0);
    n.side.out.clear();
    // The peer did not see our earlier ACK and sends its message and FIN
    // again: not delivered twice, answered with ACK 2, no version detection.
    n.rx(&msg_frame(2, Seq(0), 0));
    n.rx(&fin_from(2, 1));
    assert_eq!(n.side.delivered, vec![0]);
    assert_eq!(n.acks(), vec![2, 2]);
    assert_eq!(n.peer.state(), State::Closed);
    assert_eq!(n.peer.version(), None);
    // A leftover ACK does not detect the version either.
    n.rx(&ack_from(2, 1));
    assert_eq!(n.peer.state(), State::Closed);
    // A new lifetime: add_member, then the peer starts again at 0.
    {
        let (p, q, mut io) = n.io();
        p.add_member(q, &mut io);
    }
    n.rx(&status_from(2));
    n.rx(&msg_frame(2, Seq(0), 1));
    assert_eq!(n.side.delivered, vec![0, 1]);
}

#[test]
fn peer_fin_to_closed_node_is_acked_only() {
    let mut n = One::new();
    n.rx(&fin_from(2, 7));
    assert_eq!(n.acks(), vec![8]);
    assert_eq!(n.peer.state(), State::Closed);
    assert_eq!(n.peer.version(), None);
    assert!(matches!(n.events.last(), Some(Event::StaleFin { .. })));
}

#[test]
fn peer_active_close_and_retransmission_on_connect() {
    let mut n = One::new();
    n.rx(&status_from(2));
    n.send(0).unwrap();
    n.send(1).unwrap();
    let w = {
        let (p, q, mut io) = n.io();
        p.shutdown(0, q, &mut io)
    };
    assert!(matches!(w, dlm_proto::proto::fin::Wait::Until(5000)));
    assert_eq!(n.peer.state(), State::FinWait1);
    assert_eq!(n.fins(), 1);
    n.side.out.clear();
    // Reconnect: everything unacked again, in order, FIN last.
    let k = {
        let (p, q, mut io) = n.io();
        p.connected(q, &mut io)
    };
    assert_eq!(k, 3);
    let seqs: Vec<u32> = n
        .side
        .out
        .iter()
        .filter(|(sequenced, _)| *sequenced)
        .map(|(_, f)| u32::from_le_bytes([f[4], f[5], f[6], f[7]]))
        .collect();
    assert_eq!(seqs, vec![0, 1, 2]);
    n.rx(&ack_from(2, 3));
    assert_eq!(n.peer.state(), State::FinWait2);
    n.rx(&fin_from(2, 0));
    assert_eq!(n.peer.state(), State::Closed);
    assert_eq!(n.peer.poll_shutdown(1), dlm_proto::proto::fin::Wait::Done);
}

#[test]
fn peer_only_sequenced_messages_count_as_delivered_after_fin() {
    let mut n = One::new();
    {
        let (p, q, mut io) = n.io();
        p.add_member(q, &mut io);
    }
    n.rx(&status_from(2));
    n.rx(&msg_frame(2, Seq(0), 0));
    n.rx(&fin_from(2, 1));
    {
        let (p, q, mut io) = n.io();
        p.remove_member(q, &mut io);
    }
    assert_eq!(n.peer.state(), State::LastAck);
    assert!(n.peer.fin().stop_rx());
    n.events.clear();
    // A stateless RCOM other than STATUS (a reply to a probe of ours that
    // crossed the FIN) is normal, and C does not warn about it either.
    let mut reply = status_from(2);
    reply[16] = 5; // RCOM_STATUS_REPLY
    n.rx(&reply);
    assert!(
        !n.events.contains(&Event::DeliveredAfterFin),
        "{:?}",
        n.events
    );
    // A sequenced message after the peer's FIN is a protocol violation.
    n.rx(&msg_frame(2, Seq(2), 2));
    assert_eq!(n.events.last(), Some(&Event::DeliveredAfterFin));
    assert_eq!(n.side.delivered, vec![0, 2]);
    // A STATUS is the version probe of a peer that reset after its FIN and
    // starts a new lifetime: no warning either, and the old one is dropped.
    n.events.clear();
    n.rx(&status_from(2));
    assert!(
        !n.events.contains(&Event::DeliveredAfterFin),
        "{:?}",
        n.events
    );
    assert_eq!(n.peer.state(), State::Established);
    assert!(!n.peer.fin().stop_rx());
}

#[test]
fn peer_connected_sends_our_ack_before_the_retransmissions() {
    let mut n = One::new();
    n.rx(&status_from(2));
    for i in 0..5u32 {
        n.rx(&msg_frame(2, Seq(i), i as u64));
    }
    n.send(0).unwrap();
    n.send(1).unwrap();
    n.side.out.clear();
    // A new connection: the peer may still hold the five messages we got
    // (our ACK was lost with the old connection).  Our ACK goes first, so
    // that it does not wait behind our own retransmissions.
    let k = {
        let (p, q, mut io) = n.io();
        p.connected(q, &mut io)
    };
    assert_eq!(k, 2);
    let out: Vec<(bool, u32)> = n
        .side
        .out
        .iter()
        .map(|(s, f)| (*s, u32::from_le_bytes([f[4], f[5], f[6], f[7]])))
        .collect();
    assert_eq!(out, vec![(false, 5), (true, 0), (true, 1)]);
}

#[test]
fn peer_stateless_rcom_after_a_finished_close_is_no_version_detection() {
    let mut n = One::new();
    {
        let (p, q, mut io) = n.io();
        p.add_member(q, &mut io);
    }
    n.rx(&status_from(2));
    n.rx(&fin_from(2, 0));
    {
        let (p, q, mut io) = n.io();
        p.remove_member(q, &mut io);
    }
    // Our passive FIN (0) is acked: the lifetime is over.
    n.rx(&ack_from(2, 1));
    assert_eq!(n.peer.state(), State::Closed);
    assert_eq!(n.peer.version(), None);
    n.side.out.clear();
    // The peer's reply to a STATUS of ours crosses the close: it is
    // delivered, but the node stays CLOSED and the version unknown, so a
    // leftover ACK after it changes nothing either.
    let mut reply = status_from(2);
    reply[16] = 5; // RCOM_STATUS_REPLY
    n.events.clear();
    n.rx(&reply);
    assert_eq!(n.peer.state(), State::Closed);
    assert_eq!(n.peer.version(), None);
    n.rx(&ack_from(2, 1));
    assert_eq!(n.peer.state(), State::Closed);
    assert!(
        !n.events
            .iter()
            .any(|e| matches!(e, Event::AckInvalid { .. } | Event::VersionDetected(_))),
        "{:?}",
        n.events
    );
    // A new lifetime: add_member, then the peer's STATUS detects it.
    {
        let (p, q, mut io) = n.io();
        p.add_member(q, &mut io);
    }
    n.rx(&status_from(2));
    assert_eq!(n.peer.version(), Some(Version::V3_2));
    assert_eq!(n.peer.state(), State::Established);
}
