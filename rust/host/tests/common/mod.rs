// SPDX-License-Identifier: GPL-2.0
//! Shared by the integration tests that drive `Peer`: an in-memory unacked queue whose entries
//! are the sent bytes.

use std::collections::VecDeque;

use dlm_proto::proto::reliable::UnackedQueue;
use dlm_proto::proto::seq::Seq;

/// The unacked messages, oldest first; pushing never fails.
#[derive(Default)]
pub struct Q(pub VecDeque<(Seq, Vec<u8>)>);

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
