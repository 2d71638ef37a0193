// SPDX-License-Identifier: GPL-2.0

//! The guard against leftovers of a connection lifetime that the peer's
//! DLM_FIN ended (`Fin::stale_seq`) must not outlive that lifetime: once the
//! peer shows that it started a new one (it asks for our recovery status),
//! its sequenced messages are new, even before a lockspace adds the node
//! here.  Otherwise the ACK F+1 we answer them with would release them on the
//! peer without their being delivered (issue 9, review item 9).

mod common;

use dlm_proto::proto::fin::State;
use dlm_proto::proto::peer::{Event, Peer, PeerIo};
use dlm_proto::proto::seq::Seq;
use dlm_proto::proto::wire::{self, Cmd, Message};

use common::Q;

#[derive(Default)]
struct Io {
    delivered: usize,
    acks: Vec<u32>,
    events: Vec<Event>,
}

impl PeerIo for Io {
    type Entry = Vec<u8>;
    fn deliver(&mut self, _msg: Message<'_>, _seq: Option<Seq>) {
        self.delivered += 1;
    }
    fn send_ack(&mut self, ack: Seq) -> bool {
        self.acks.push(ack.get());
        true
    }
    fn send_fin(&mut self, seq: Seq) -> Option<Vec<u8>> {
        let mut f = vec![0u8; wire::OPTS_FIN_LEN];
        wire::encode_fin(&mut f, 1, seq.get()).unwrap();
        Some(f)
    }
    fn resend(&mut self, _seq: Seq, _e: &Vec<u8>) {}
    fn release(&mut self, _seq: Seq, _e: Vec<u8>) {}
    fn event(&mut self, e: Event) {
        self.events.push(e);
    }
}

fn msg_frame(me: u32, seq: u32) -> Vec<u8> {
    let mut inner = vec![0u8; 96];
    wire::encode_message_header(&mut inner, Cmd::Msg, 1, me, 96).unwrap();
    let mut f = vec![0u8; 120];
    wire::encode_opts(&mut f, me, seq, &inner).unwrap();
    f
}

fn fin_from(nodeid: u32, seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; wire::OPTS_FIN_LEN];
    wire::encode_fin(&mut f, nodeid, seq).unwrap();
    f
}

fn rcom_from(nodeid: u32, rc_type: u8) -> Vec<u8> {
    let mut st = vec![0u8; wire::RCOM_MIN_LEN];
    wire::encode_message_header(&mut st, Cmd::Rcom, 1, nodeid, wire::RCOM_MIN_LEN).unwrap();
    st[16] = rc_type;
    st
}

/// Node 1 after node 2 ended a lifetime of 10 messages with its FIN
/// (number 10) while nobody used it here (node 2 started it with a STATUS
/// from a lockspace node 1 does not run): the handshake is done and node 1
/// is CLOSED, remembering the peer's FIN.
fn after_peer_fin() -> (Peer, Q, Io) {
    let (mut p, mut q, mut io) = (Peer::new(2, 0), Q::default(), Io::default());
    p.receive(&rcom_from(2, 1), &mut q, &mut io).unwrap();
    assert_eq!(p.state(), State::Established);
    for s in 0..10 {
        p.receive(&msg_frame(2, s), &mut q, &mut io).unwrap();
    }
    p.receive(&fin_from(2, 10), &mut q, &mut io).unwrap();
    assert_eq!(p.state(), State::LastAck);
    let mut ack = vec![0u8; wire::ACK_LEN];
    wire::encode_ack(&mut ack, 2, 1).unwrap();
    p.receive(&ack, &mut q, &mut io).unwrap();
    assert_eq!(p.state(), State::Closed);
    io.acks.clear();
    io.delivered = 0;
    (p, q, io)
}

#[test]
fn leftovers_of_the_ended_lifetime_are_only_acked() {
    let (mut p, mut q, mut io) = after_peer_fin();
    p.receive(&msg_frame(2, 3), &mut q, &mut io).unwrap();
    assert_eq!(io.delivered, 0);
    assert_eq!(io.acks, vec![11]);
}

#[test]
fn a_status_request_ends_the_guard() {
    let (mut p, mut q, mut io) = after_peer_fin();
    // Node 2 joins a lockspace with us again: its STATUS comes first, then
    // its first sequenced messages, numbered from 0 again.
    p.receive(&rcom_from(2, 1), &mut q, &mut io).unwrap();
    assert_eq!(io.delivered, 1);
    p.receive(&msg_frame(2, 0), &mut q, &mut io).unwrap();
    p.receive(&msg_frame(2, 1), &mut q, &mut io).unwrap();
    assert_eq!(io.delivered, 3);
    assert!(
        !io.acks.contains(&11),
        "acked a new message as a leftover: {:?}",
        io.acks
    );
}

#[test]
fn a_status_reply_does_not_end_the_guard() {
    let (mut p, mut q, mut io) = after_peer_fin();
    // A STATUS_REPLY is the answer to our own probe: the peer may still be
    // in its old lifetime (LAST_ACK), with leftovers to send.
    p.receive(&rcom_from(2, 5), &mut q, &mut io).unwrap();
    p.receive(&msg_frame(2, 3), &mut q, &mut io).unwrap();
    assert_eq!(io.delivered, 1);
    assert_eq!(io.acks, vec![11]);
}
