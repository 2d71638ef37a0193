// SPDX-License-Identifier: GPL-2.0

//! The reliable layer against a simple model, with proptest, plus unit
//! tests of C's thresholds, the wrap-around and the fixed-capacity queue.

use std::collections::VecDeque;

use dlm_proto::proto::reliable::{
    AckOutcome, Inner, RecvAction, Reliable, RingQueue, SendError, UnackedQueue, MIN_MAX_UNACKED,
    RECV_ACK_THRESHOLD, SEND_ACK_THRESHOLD,
};
use dlm_proto::proto::seq::Seq;
use proptest::prelude::*;

#[derive(Default)]
struct Q(VecDeque<(Seq, u64)>);

impl UnackedQueue for Q {
    type Entry = u64;
    fn push_back(&mut self, seq: Seq, e: u64) -> Result<(), u64> {
        self.0.push_back((seq, e));
        Ok(())
    }
    fn front_seq(&self) -> Option<Seq> {
        self.0.front().map(|x| x.0)
    }
    fn pop_front(&mut self) -> Option<(Seq, u64)> {
        self.0.pop_front()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn for_each(&self, f: &mut dyn FnMut(Seq, &u64)) {
        for (s, e) in &self.0 {
            f(*s, e)
        }
    }
}

/// The model: plain unbounded integers, no wrap-around, no queue.
#[derive(Default, Debug)]
struct Model {
    /// Messages sent so far (sequence numbers 0..sent, as u64 offsets).
    sent: u64,
    /// Everything below this is acked.
    acked: u64,
    /// Next expected inbound offset.
    next: u64,
    /// Deliveries since the last ACK we sent.
    delivered: u64,
}

#[derive(Clone, Debug)]
enum Op {
    /// Try to send one message.
    Send,
    /// Receive an ACK for `acked + k` (k may overshoot what was sent).
    Ack(u64),
    /// Receive an ACK below what is already acked.
    OldAck(u64),
    /// Receive inbound message at `next + d - 3` (d = 3: in order).
    Recv(u64, bool),
    /// The send-side threshold check.
    BeforeSend,
    /// Walk the retransmission.
    Retransmit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Send),
        3 => (0u64..40).prop_map(Op::Ack),
        1 => (1u64..5).prop_map(Op::OldAck),
        6 => ((0u64..7), any::<bool>()).prop_map(|(d, f)| Op::Recv(d, f)),
        2 => Just(Op::BeforeSend),
        1 => Just(Op::Retransmit),
    ]
}

fn run_model(init: u32, max: u32, ops: &[Op]) -> Result<(), TestCaseError> {
    let base = Seq(init);
    let mut r = Reliable::with_initial_seq(max, base);
    let max = r.max_unacked() as u64;
    let mut q = Q::default();
    let mut m = Model::default();
    let at = |off: u64| base.add(off as u32);
    for op in ops {
        match *op {
            Op::Send => {
                let res = r.queue_send(&mut q, m.sent);
                if m.sent - m.acked < max {
                    prop_assert_eq!(res.ok(), Some(at(m.sent)));
                    m.sent += 1;
                } else {
                    let refused = matches!(res, Err((SendError::Backpressure { .. }, _)));
                    prop_assert!(refused, "not refused: {:?}", res);
                }
            }
            Op::Ack(k) => {
                let ack = m.acked + k;
                let mut released = Vec::new();
                let out = r.on_ack(&mut q, at(ack), &mut |s, e| released.push((s, e)));
                if ack > m.sent {
                    prop_assert!(matches!(out, AckOutcome::Invalid { .. }), "{:?}", out);
                    prop_assert!(released.is_empty());
                } else if k == 0 {
                    prop_assert_eq!(out, AckOutcome::Stale);
                    prop_assert!(released.is_empty());
                } else {
                    prop_assert_eq!(
                        out,
                        AckOutcome::Released {
                            from: at(m.acked),
                            to: at(ack)
                        }
                    );
                    let want: Vec<(Seq, u64)> = (m.acked..ack).map(|o| (at(o), o)).collect();
                    prop_assert_eq!(released, want);
                    m.acked = ack;
                }
            }
            Op::OldAck(k) => {
                if m.acked >= k {
                    let out = r.on_ack(&mut q, at(m.acked - k), &mut |_, _| panic!("released"));
                    prop_assert_eq!(out, AckOutcome::Stale);
                }
            }
            Op::Recv(d, fin) => {
                // d < 3: a duplicate (if that number was ever received),
                // 3: in order, > 3: after a gap.
                if d < 3 && m.next < 3 - d {
                    continue;
                }
                let off = m.next + d - 3;
                let inner = if fin { Inner::Fin } else { Inner::Data };
                let act = r.on_receive(at(off), inner);
                match d.cmp(&3) {
                    std::cmp::Ordering::Less => {
                        prop_assert_eq!(act, RecvAction::Duplicate { ack: at(m.next) })
                    }
                    std::cmp::Ordering::Greater => {
                        prop_assert_eq!(
                            act,
                            RecvAction::Gap {
                                expected: at(m.next)
                            }
                        )
                    }
                    std::cmp::Ordering::Equal => {
                        m.next += 1;
                        if fin {
                            prop_assert_eq!(act, RecvAction::Fin);
                        } else {
                            m.delivered += 1;
                            let ack = if m.delivered > RECV_ACK_THRESHOLD as u64 {
                                m.delivered = 0;
                                Some(at(m.next))
                            } else {
                                None
                            };
                            prop_assert_eq!(act, RecvAction::Deliver { ack });
                        }
                    }
                }
            }
            Op::BeforeSend => {
                let want = if m.delivered > SEND_ACK_THRESHOLD as u64 {
                    m.delivered = 0;
                    Some(at(m.next))
                } else {
                    None
                };
                prop_assert_eq!(r.ack_before_send(), want);
            }
            Op::Retransmit => {
                let mut seen = Vec::new();
                let n = r.retransmit(&q, &mut |s, e| seen.push((s, *e)));
                let want: Vec<(Seq, u64)> = (m.acked..m.sent).map(|o| (at(o), o)).collect();
                prop_assert_eq!(n as usize, want.len());
                prop_assert_eq!(seen, want);
            }
        }
        // Invariants after every step.
        prop_assert_eq!(r.unacked() as u64, m.sent - m.acked);
        prop_assert_eq!(q.len() as u64, m.sent - m.acked);
        prop_assert!(r.unacked() as u64 <= max);
        prop_assert_eq!(r.seq_send(), at(m.sent));
        prop_assert_eq!(r.seq_una(), at(m.acked));
        prop_assert_eq!(r.seq_next(), at(m.next));
        prop_assert_eq!(r.ack_value(), at(m.next));
        prop_assert_eq!(r.ulp_delivered() as u64, m.delivered);
        prop_assert_eq!(r.can_send(), m.sent - m.acked < max);
    }
    // A reset forgets everything and hands back every unacked entry.
    let mut flushed = Vec::new();
    r.reset(&mut q, &mut |_, e| flushed.push(e));
    prop_assert_eq!(flushed, (m.acked..m.sent).collect::<Vec<_>>());
    // ... and starts again where it started (0 for C).
    prop_assert_eq!(r.seq_send(), base);
    prop_assert_eq!(r.seq_next(), base);
    prop_assert_eq!(r.seq_una(), base);
    prop_assert_eq!(r.ulp_delivered(), 0);
    prop_assert_eq!(r.unacked(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Starting at 0 as C does.
    #[test]
    fn matches_model(ops in proptest::collection::vec(op(), 0..600)) {
        run_model(0, MIN_MAX_UNACKED, &ops)?;
    }

    /// Starting just below the 2^32 wrap, so every run crosses it.
    #[test]
    fn matches_model_across_wrap(back in 0u32..300, ops in proptest::collection::vec(op(), 0..600)) {
        run_model(0u32.wrapping_sub(back), MIN_MAX_UNACKED, &ops)?;
    }

    /// Anywhere in sequence space, with other window sizes.
    #[test]
    fn matches_model_anywhere(init in any::<u32>(), max in 0u32..2000, ops in proptest::collection::vec(op(), 0..400)) {
        run_model(init, max, &ops)?;
    }

    /// Arbitrary received numbers and ACK values never panic and never
    /// move the state backwards.
    #[test]
    fn arbitrary_input_is_safe(init in any::<u32>(), inputs in proptest::collection::vec((any::<u32>(), any::<bool>(), any::<bool>()), 0..300)) {
        let mut r = Reliable::with_initial_seq(0, Seq(init));
        let mut q = Q::default();
        for i in 0..5u64 {
            r.queue_send(&mut q, i).unwrap();
        }
        for (v, is_ack, fin) in inputs {
            let next = r.seq_next();
            let una = r.seq_una();
            if is_ack {
                r.on_ack(&mut q, Seq(v), &mut |_, _| {});
            } else {
                r.on_receive(Seq(v), if fin { Inner::Fin } else { Inner::Data });
            }
            prop_assert!(!r.seq_next().before(next));
            prop_assert!(!r.seq_una().before(una));
            prop_assert!(!r.seq_una().after(r.seq_send()));
            prop_assert_eq!(q.len() as u32, r.unacked());
        }
    }
}

#[test]
fn duplicate_across_wrap_is_reacked() {
    // C's `seq < oval` misses this one: expected 2 after the wrap, the
    // retransmitted 0xffffffff is a duplicate and must be re-acked.
    let mut r = Reliable::with_initial_seq(0, Seq(u32::MAX - 1));
    for s in [u32::MAX - 1, u32::MAX, 0, 1] {
        assert_eq!(
            r.on_receive(Seq(s), Inner::Data),
            RecvAction::Deliver { ack: None }
        );
    }
    assert_eq!(
        r.on_receive(Seq(u32::MAX), Inner::Data),
        RecvAction::Duplicate { ack: Seq(2) }
    );
    assert_eq!(
        r.on_receive(Seq(5), Inner::Data),
        RecvAction::Gap { expected: Seq(2) }
    );
}

#[test]
fn ack_across_wrap_releases_in_order() {
    let mut r = Reliable::with_initial_seq(0, Seq(u32::MAX - 2));
    let mut q = Q::default();
    for i in 0..6u64 {
        r.queue_send(&mut q, i).unwrap();
    }
    let mut rel = Vec::new();
    let out = r.on_ack(&mut q, Seq(1), &mut |s, e| rel.push((s.get(), e)));
    assert_eq!(
        out,
        AckOutcome::Released {
            from: Seq(u32::MAX - 2),
            to: Seq(1)
        }
    );
    assert_eq!(
        rel,
        vec![(u32::MAX - 2, 0), (u32::MAX - 1, 1), (u32::MAX, 2), (0, 3)]
    );
    assert_eq!(r.unacked(), 2);
}

#[test]
fn receive_threshold_is_c_s() {
    let mut r = Reliable::new(0);
    for i in 0..RECV_ACK_THRESHOLD {
        assert_eq!(
            r.on_receive(Seq(i), Inner::Data),
            RecvAction::Deliver { ack: None }
        );
    }
    // The 257th delivery since the last ACK sends one.
    assert_eq!(
        r.on_receive(Seq(RECV_ACK_THRESHOLD), Inner::Data),
        RecvAction::Deliver {
            ack: Some(Seq(RECV_ACK_THRESHOLD + 1))
        }
    );
    assert_eq!(r.ulp_delivered(), 0);
}

#[test]
fn send_threshold_is_c_s() {
    let mut r = Reliable::new(0);
    for i in 0..SEND_ACK_THRESHOLD {
        r.on_receive(Seq(i), Inner::Data);
    }
    assert_eq!(r.ack_before_send(), None);
    r.on_receive(Seq(SEND_ACK_THRESHOLD), Inner::Data);
    assert_eq!(r.ack_before_send(), Some(Seq(SEND_ACK_THRESHOLD + 1)));
    assert_eq!(r.ack_before_send(), None);
}

#[test]
fn fin_does_not_count_as_delivery() {
    let mut r = Reliable::new(0);
    assert_eq!(r.on_receive(Seq(0), Inner::Fin), RecvAction::Fin);
    assert_eq!(r.ulp_delivered(), 0);
    assert_eq!(r.ack_value(), Seq(1));
}

#[test]
fn window_is_clamped_and_fin_bypasses_it() {
    let mut r = Reliable::new(1);
    assert_eq!(r.max_unacked(), MIN_MAX_UNACKED);
    let mut q = Q::default();
    for i in 0..MIN_MAX_UNACKED as u64 {
        r.queue_send(&mut q, i).unwrap();
    }
    let (e, back) = r.queue_send(&mut q, 999).unwrap_err();
    assert_eq!(
        e,
        SendError::Backpressure {
            unacked: MIN_MAX_UNACKED
        }
    );
    assert_eq!(back, 999);
    assert_eq!(r.queue_fin(&mut q, 1000), Ok(Seq(MIN_MAX_UNACKED)));
    assert_eq!(r.unacked(), MIN_MAX_UNACKED + 1);
}

#[test]
fn ring_queue_refuses_when_full_and_keeps_order() {
    let mut q: RingQueue<u32, 3> = RingQueue::new();
    let mut r = Reliable::new(0);
    for i in 0..3 {
        assert_eq!(r.queue_send(&mut q, i), Ok(Seq(i)));
    }
    assert!(!q.has_room());
    assert_eq!(r.queue_send(&mut q, 7), Err((SendError::QueueFull, 7)));
    // The refused message did not consume a number.
    assert_eq!(r.seq_send(), Seq(3));
    let mut rel = Vec::new();
    r.on_ack(&mut q, Seq(2), &mut |s, e| rel.push((s.get(), e)));
    assert_eq!(rel, vec![(0, 0), (1, 1)]);
    assert_eq!(r.queue_send(&mut q, 3), Ok(Seq(3)));
    assert_eq!(r.queue_send(&mut q, 4), Ok(Seq(4)));
    let mut all = Vec::new();
    q.for_each(&mut |s, e| all.push((s.get(), *e)));
    assert_eq!(all, vec![(2, 2), (3, 3), (4, 4)]);
    let mut zero: RingQueue<u32, 0> = RingQueue::new();
    assert_eq!(zero.push_back(Seq(0), 1), Err(1));
    assert_eq!(zero.pop_front(), None);
}
