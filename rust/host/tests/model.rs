// SPDX-License-Identifier: GPL-2.0

//! Two [`Peer`]s against the simplest possible model of reliable delivery:
//! "each side receives exactly the list the other side sent, in order".
//! proptest drives sends, partial transmission, delivery, connection resets
//! (losing whatever is on the wire and the partly sent head of the write
//! queue) and reconnects in any order, and shrinks a failure to a short
//! sequence of operations.  The simulator does the same at the byte level
//! with many nodes; this one is for minimal counterexamples.

use std::collections::VecDeque;

use dlm_proto::proto::reliable::peer::{Event, Peer, PeerIo};
use dlm_proto::proto::reliable::UnackedQueue;
use dlm_proto::proto::seq::Seq;
use dlm_proto::proto::wire::{self, Cmd, Message};
use proptest::prelude::*;

#[derive(Default)]
struct Q(VecDeque<(Seq, Vec<u8>)>);

impl UnackedQueue for Q {
    type Entry = Vec<u8>;
    fn push_back(&mut self, seq: Seq, e: Vec<u8>) -> Result<(), Vec<u8>> {
        self.0.push_back((seq, e));
        Ok(())
    }
    fn front_seq(&self) -> Option<Seq> {
        self.0.front().map(|x| x.0)
    }
    fn pop_front(&mut self) -> Option<(Seq, Vec<u8>)> {
        self.0.pop_front()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn for_each(&self, f: &mut dyn FnMut(Seq, &Vec<u8>)) {
        for (s, e) in &self.0 {
            f(*s, e)
        }
    }
}

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
    fn send_ack(&mut self, ack: Seq) {
        let mut f = vec![0u8; wire::ACK_LEN];
        wire::encode_ack(&mut f, self.me, ack.get()).unwrap();
        self.side.out.push_back((false, f));
    }
    fn send_fin(&mut self, seq: Seq) -> Vec<u8> {
        let mut f = vec![0u8; wire::OPTS_FIN_LEN];
        wire::encode_fin(&mut f, self.me, seq.get()).unwrap();
        self.side.out.push_back((true, f.clone()));
        f
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
