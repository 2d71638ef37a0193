// SPDX-License-Identifier: GPL-2.0

//! The protocol core when the glue cannot place a message (no memory): a
//! send that fails uses up no sequence number, every refusal is decided
//! before anything is queued, and an ACK or a FIN that cannot be queued is
//! owed and queued later by `Peer::flush_owed`, with the numbers it would
//! have had.  The kernel glue relies on each of these (issue 9).

mod common;

use dlm_proto::proto::fin::State;
use dlm_proto::proto::peer::{Peer, PeerIo, PeerSendError};
use dlm_proto::proto::reliable::UnackedQueue;
use dlm_proto::proto::seq::Seq;
use dlm_proto::proto::wire::{self, Cmd, Message};

use common::Q;

/// Node 1's glue towards node 2; `room` false makes every placement fail.
struct Io {
    room: bool,
    /// What was queued on the connection, in order.
    out: Vec<Vec<u8>>,
    delivered: usize,
}

impl PeerIo for Io {
    type Entry = Vec<u8>;
    fn deliver(&mut self, _msg: Message<'_>, _seq: Option<Seq>) {
        self.delivered += 1;
    }
    fn send_ack(&mut self, ack: Seq) -> bool {
        if self.room {
            let mut f = vec![0u8; wire::ACK_LEN];
            wire::encode_ack(&mut f, 1, ack.get()).unwrap();
            self.out.push(f);
        }
        self.room
    }
    fn send_fin(&mut self, seq: Seq) -> Option<Vec<u8>> {
        self.room.then(|| {
            let mut f = vec![0u8; wire::OPTS_FIN_LEN];
            wire::encode_fin(&mut f, 1, seq.get()).unwrap();
            self.out.push(f.clone());
            f
        })
    }
    fn resend(&mut self, _seq: Seq, _e: &Vec<u8>) {}
    fn release(&mut self, _seq: Seq, _e: Vec<u8>) {}
}

impl Io {
    /// (cmd, number) of every frame queued so far: an ACK's value, the
    /// sequence number of a DLM_OPTS; clears the queue.
    fn take(&mut self) -> Vec<(u8, u32)> {
        let v = self
            .out
            .iter()
            .map(|f| (f[14], u32::from_le_bytes([f[4], f[5], f[6], f[7]])))
            .collect();
        self.out.clear();
        v
    }
}

const ACK: u8 = 4;
const OPTS: u8 = 3;

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

struct One {
    peer: Peer,
    q: Q,
    io: Io,
}

impl One {
    /// A node that detected its 3.2 peer (node 2) and has it as a member.
    fn new() -> Self {
        let mut n = One {
            peer: Peer::new(2, 0),
            q: Q::default(),
            io: Io {
                room: true,
                out: Vec::new(),
                delivered: 0,
            },
        };
        n.peer.add_member(&mut n.q, &mut n.io);
        n.rx(&msg_frame(2, 0));
        assert_eq!(n.io.delivered, 1);
        n
    }
    fn rx(&mut self, frame: &[u8]) {
        self.peer.receive(frame, &mut self.q, &mut self.io).unwrap();
    }
    /// A send whose placement succeeds only if `place`.
    fn send(&mut self, place: bool) -> Result<Seq, PeerSendError> {
        self.peer.try_send(&mut self.q, &mut self.io, |io, seq| {
            place.then(|| {
                let f = msg_frame(1, seq.get());
                io.out.push(f.clone());
                f
            })
        })
    }
}

#[test]
fn a_failed_placement_uses_up_no_sequence_number() {
    let mut n = One::new();
    assert_eq!(n.send(true), Ok(Seq(0)));
    assert_eq!(n.send(false), Err(PeerSendError::NoRoom));
    assert_eq!(n.q.len(), 1);
    assert_eq!(n.peer.reliable().seq_send(), Seq(1));
    // The next message gets the number the failed one did not use: the
    // peer sees no gap.
    assert_eq!(n.send(true), Ok(Seq(1)));
    assert_eq!(n.io.take(), vec![(OPTS, 0), (OPTS, 1)]);
}

#[test]
fn the_due_ack_goes_out_even_if_its_message_cannot_be_placed() {
    let mut n = One::new();
    for s in 1..=33 {
        n.rx(&msg_frame(2, s));
    }
    assert!(n.peer.ack_due_before_send());
    assert_eq!(n.send(false), Err(PeerSendError::NoRoom));
    // The ACK was queued ahead of the message that failed, and is not due
    // again; nothing else was queued.
    assert_eq!(n.io.take(), vec![(ACK, 34)]);
    assert!(!n.peer.ack_due_before_send());
    assert_eq!(n.send(true), Ok(Seq(0)));
    assert_eq!(n.io.take(), vec![(OPTS, 0)]);
}

#[test]
fn a_refused_send_queues_nothing() {
    let mut n = One::new();
    for s in 1..=33 {
        n.rx(&msg_frame(2, s));
    }
    // The peer closes first and we have no user left: our FIN goes out
    // (after the ACK of the peer's FIN and the due ACK), and sends are
    // refused from then on, without queuing the ACK that is due before a
    // send: a refusal is decided before anything is queued.
    n.peer.remove_member(&mut n.q, &mut n.io);
    n.rx(&fin_from(2, 34));
    assert_eq!(n.peer.state(), State::LastAck);
    n.io.take();
    for s in 35..=70 {
        n.rx(&msg_frame(2, s));
    }
    n.io.take();
    assert!(n.peer.ack_due_before_send());
    assert_eq!(n.send(true), Err(PeerSendError::Closing));
    assert_eq!(n.io.take(), vec![]);
}

#[test]
fn an_ack_that_cannot_be_queued_is_owed() {
    let mut n = One::new();
    n.io.room = false;
    // 257 deliveries since the last ACK: the receive-side threshold asks for
    // one (value 257), which cannot be placed.
    for s in 1..=257 {
        n.rx(&msg_frame(2, s));
    }
    assert_eq!(n.io.delivered, 258);
    assert!(n.peer.owes());
    assert!(n.peer.ack_due_before_send());
    assert_eq!(n.io.take(), vec![]);
    n.io.room = true;
    n.peer.flush_owed(&mut n.q, &mut n.io);
    assert!(!n.peer.owes());
    assert_eq!(n.io.take(), vec![(ACK, 257)]);
}

#[test]
fn an_owed_ack_goes_ahead_of_the_next_message() {
    let mut n = One::new();
    n.io.room = false;
    n.rx(&msg_frame(2, 0)); // a duplicate: re-acked, but no room
    assert!(n.peer.owes());
    n.io.room = true;
    assert_eq!(n.send(true), Ok(Seq(0)));
    assert!(!n.peer.owes());
    assert_eq!(n.io.take(), vec![(ACK, 1), (OPTS, 0)]);
}

#[test]
fn a_fin_that_cannot_be_queued_is_owed_with_its_number() {
    let mut n = One::new();
    assert_eq!(n.send(true), Ok(Seq(0)));
    assert_eq!(n.send(true), Ok(Seq(1)));
    n.io.take();
    // The peer's FIN while we still use the node: CLOSE_WAIT.
    n.rx(&fin_from(2, 1));
    assert_eq!(n.peer.state(), State::CloseWait);
    n.io.take();
    // The last lockspace lets go: our FIN is due but cannot be placed.  The
    // state machine moves on regardless (membership bookkeeping is never
    // skipped); the FIN is owed and its number stays unused.
    n.io.room = false;
    n.peer.remove_member(&mut n.q, &mut n.io);
    assert_eq!(n.peer.state(), State::LastAck);
    assert_eq!(n.peer.fin().users(), 0);
    assert!(n.peer.owes());
    assert_eq!(n.peer.reliable().seq_send(), Seq(2));
    assert_eq!(n.send(true), Err(PeerSendError::Closing));
    n.io.room = true;
    n.peer.flush_owed(&mut n.q, &mut n.io);
    assert!(!n.peer.owes());
    assert_eq!(n.io.take(), vec![(OPTS, 2)]);
    assert_eq!(n.peer.fin().pending_fin(), Some(Seq(2)));
    // Its ACK ends the handshake.
    let mut ack = vec![0u8; wire::ACK_LEN];
    wire::encode_ack(&mut ack, 2, 3).unwrap();
    n.rx(&ack);
    assert_eq!(n.peer.state(), State::Closed);
}

#[test]
fn a_reset_forgets_what_was_owed() {
    let mut n = One::new();
    n.rx(&fin_from(2, 1));
    n.io.take();
    n.io.room = false;
    n.peer.remove_member(&mut n.q, &mut n.io);
    assert!(n.peer.owes());
    n.peer.reset(&mut n.q, &mut n.io);
    assert!(!n.peer.owes());
    n.io.room = true;
    n.peer.flush_owed(&mut n.q, &mut n.io);
    assert_eq!(n.io.take(), vec![]);
}

#[test]
fn a_fin_is_placed_only_when_the_unacked_queue_can_take_it() {
    use dlm_proto::proto::reliable::RingQueue;
    let mut peer = Peer::new(2, 0);
    let mut q: RingQueue<Vec<u8>, 1> = RingQueue::new();
    let mut io = Io {
        room: true,
        out: Vec::new(),
        delivered: 0,
    };
    peer.add_member(&mut q, &mut io);
    peer.receive(&msg_frame(2, 0), &mut q, &mut io).unwrap();
    peer.send(&mut q, &mut io, |io, seq| {
        let f = msg_frame(1, seq.get());
        io.out.push(f.clone());
        f
    })
    .unwrap();
    peer.receive(&fin_from(2, 1), &mut q, &mut io).unwrap();
    io.take();
    // The queue is full: the FIN would be on the wire without its number
    // used up, and the next message would reuse it.  It is owed instead.
    peer.remove_member(&mut q, &mut io);
    assert_eq!(peer.state(), State::LastAck);
    assert!(peer.owes());
    assert_eq!(io.take(), vec![]);
    let mut ack = vec![0u8; wire::ACK_LEN];
    wire::encode_ack(&mut ack, 2, 1).unwrap();
    peer.receive(&ack, &mut q, &mut io).unwrap();
    peer.flush_owed(&mut q, &mut io);
    assert!(!peer.owes());
    assert_eq!(io.take(), vec![(OPTS, 1)]);
}

#[test]
fn the_kernels_bound_never_refuses_a_send() {
    // The kernel glue passes MAX_MAX_UNACKED (rust/comms/node.rs): like C,
    // it never refuses a send for the number of messages the peer has not
    // acknowledged, because the lock manager loses what it cannot send.
    // 70000 unacknowledged messages (beyond the old bound of 65536) go out.
    use dlm_proto::proto::reliable::MAX_MAX_UNACKED;
    let mut n = One::new();
    n.peer = Peer::new(2, MAX_MAX_UNACKED);
    n.peer.add_member(&mut n.q, &mut n.io);
    n.rx(&msg_frame(2, 0));
    for i in 0..70_000u32 {
        assert_eq!(n.send(true), Ok(Seq(i)), "send {i} refused");
        n.io.out.clear();
    }
    assert_eq!(n.q.len(), 70_000);
}
