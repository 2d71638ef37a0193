// SPDX-License-Identifier: GPL-2.0

//! Deterministic multi-node simulator for the sans-IO protocol core.
//!
//! N nodes (2 to 32), every pair of them talking.  One seeded scheduler
//! decides everything: which connection moves how many bytes, when a
//! connection is reset or partitioned, when a node joins or leaves a
//! lockspace with another (add/remove member, version wait, active close
//! with the DLM_FIN handshake, the 5 s timeouts in virtual time), when a
//! node crashes and when it comes back.  Real frames go over the simulated
//! wire: DLM_OPTS-wrapped DLM_MSG of 96 to 4072 bytes (so frames of up to
//! 4096 bytes), stateless DLM_RCOM STATUS/STATUS_REPLY for version
//! detection, DLM_ACK, DLM_FIN, cut into arbitrary pieces and put back
//! together the way the kernel's receive path does.
//!
//! The simulated glue does what the kernel glue (rust/comms) does:
//!
//! * one write queue per peer, of pages of at most 4096 bytes; a message
//!   never crosses a page; only the head page is sent, in pieces;
//! * a connection loss drops the bytes in flight, the receiver's carry-over
//!   and the sender's partly sent head page (`WriteQueue::drop_dirty_head`);
//!   everything else stays queued, sequenced messages included;
//! * on every new connection the copies of the unacked messages whose page
//!   is no longer queued go in front of the queue, in order
//!   (`midcomms::resend_unacked`); the others go out in place;
//! * a receive reads at most 4096 bytes minus the carry-over, splits the
//!   whole messages off with `framer::complete_len` and keeps the rest for
//!   the next read (`lowcomms::drain`), then hands each message to
//!   [`Peer::receive`] (`midcomms::process`);
//! * a sequence gap resets the connection (`lowcomms::reset_connection`),
//!   after the rest of the buffer was processed; see [`Glue`];
//! * a lockspace leave that included an active close ends with
//!   `dlm_lowcomms_shutdown()`: the connection drains, then is closed and
//!   both write queues are freed, then the closing nodes are reset;
//! * a crashed node loses everything; its peers keep sending into the dead
//!   connection until they notice, then recovery removes the node from
//!   their lockspaces and `dlm_controld` removes its comm (the peer state
//!   and its unacked messages are dropped, `dlm_midcomms_close()`), as it
//!   does when corosync reports the node gone; only then can the node
//!   come back, with fresh protocol state on both sides.
//!
//! Faults: connection resets, partitions (no connection for up to 15 s of
//! virtual time), a slow recovery on the peer of a closing node (its
//! remove_member comes up to 12 s late), frames lost in the receiver's
//! glue (a protocol step that found no memory), node crashes and restarts.
//!
//! It checks, per ordered pair of nodes:
//!
//! * every message is delivered at most once and in order;
//! * a message is never released by an ACK before it was delivered;
//! * a message may be lost only through a *forced* reset: the reset of a
//!   closing node after its close timed out, the reset of a stuck close by
//!   the next add_member after such a timeout, the forced reset of its
//!   receiver, or a crash of its sender or receiver.  A reset at the end of
//!   a close handshake that releases an undelivered message fails the seed
//!   at once, and when the network is quiet every other message must have
//!   been delivered; a message that was given up is never delivered later;
//! * a close times out only if a fault (partition, slow recovery) hit the
//!   pair in that session;
//! * the core reports no protocol violation: `Dropped`, `Unexpected`
//!   (except `StuckIn`, the reset of a close that never finished),
//!   `DeliveredAfterFin`, and `AckInvalid` unless a forced reset happened
//!   in the session, fail the seed;
//! * a node removed by `dlm_midcomms_close()` ends its waits;
//! * memory stays bounded (unacked messages, write queue bytes, receive
//!   carry-over below 4096 bytes), and the run finishes within a step
//!   budget (no deadlock, no livelock).

#![allow(dead_code)]
#![allow(clippy::needless_range_loop)]

use std::collections::{HashSet, VecDeque};
use std::fmt::Write as _;
use std::rc::Rc;

use dlm_proto::proto::fin::{State, Unexpected, Wait, VERSION_WAIT_TIMEOUT_MS};
use dlm_proto::proto::framer;
use dlm_proto::proto::peer::{Event, Peer, PeerIo, PeerSendError};
use dlm_proto::proto::reliable::{UnackedQueue, MIN_MAX_UNACKED};
use dlm_proto::proto::seq::Seq;
use dlm_proto::proto::wire::{self, Cmd, Message};

/// splitmix64: small, fast, good enough, and the same everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `p` per mille.
    pub fn permille(&mut self, p: u64) -> bool {
        self.below(1000) < p
    }
}

/// An unacked queue over a `VecDeque`, the host stand-in for the kernel's
/// list of message handles.
#[derive(Debug)]
pub struct VecQueue<E>(pub VecDeque<(Seq, E)>);

impl<E> Default for VecQueue<E> {
    fn default() -> Self {
        VecQueue(VecDeque::new())
    }
}

impl<E> UnackedQueue for VecQueue<E> {
    type Entry = E;
    fn push_back(&mut self, seq: Seq, entry: E) -> Result<(), E> {
        self.0.push_back((seq, entry));
        Ok(())
    }
    fn front_seq(&self) -> Option<Seq> {
        self.0.front().map(|(s, _)| *s)
    }
    fn pop_front(&mut self) -> Option<(Seq, E)> {
        self.0.pop_front()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
    fn for_each(&self, f: &mut dyn FnMut(Seq, &E)) {
        for (s, e) in &self.0 {
            f(*s, e);
        }
    }
}

/// A deliberately broken glue (or peer), to show that the checks catch
/// what they claim to catch: `dlm-sim --break NAME`.  Each must make some
/// seeds fail (or, for the last two, the coverage check of a batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Break {
    /// A closing node resets the peer right after queuing its FIN,
    /// without waiting for the handshake: messages are abandoned by a
    /// reset that was not forced.
    EarlyReset,
    /// Now and then an ACK carries a value 1000 beyond what it should:
    /// `AckInvalid` without a forced reset.
    AckAhead,
    /// A sequenced (non-stateless) RCOM is sent right after our FIN:
    /// `DeliveredAfterFin`.
    MsgAfterFin,
    /// A second FIN is sent right after our FIN: `Unexpected(FinIn(..))`.
    FinAfterFin,
    /// The survivors of a crash keep the dead node's protocol state
    /// instead of dropping it with its comm: the restarted node's messages
    /// meet old sequence numbers.
    KeepCrashedPeer,
    /// The receive path drops a frame it has no memory for and does
    /// nothing else, as rust/comms' `with_peer` does today: a lost last
    /// message is never retransmitted.
    SilentRxLoss,
    /// Copies of unacked messages pile up in front of the write queue on
    /// every reconnect, as `resend_unacked` does today.
    StackCopies,
    /// No faults beyond connection resets (the simulator before this
    /// rework): the coverage check of a batch must fail.
    NoFaults,
    /// Frames of at most 144 bytes: the coverage check must fail.
    SmallFrames,
}

impl Break {
    pub const ALL: [(&'static str, Break); 9] = [
        ("early-reset", Break::EarlyReset),
        ("ack-ahead", Break::AckAhead),
        ("msg-after-fin", Break::MsgAfterFin),
        ("fin-after-fin", Break::FinAfterFin),
        ("keep-crashed-peer", Break::KeepCrashedPeer),
        ("silent-rx-loss", Break::SilentRxLoss),
        ("stack-copies", Break::StackCopies),
        ("no-faults", Break::NoFaults),
        ("small-frames", Break::SmallFrames),
    ];

    pub fn parse(s: &str) -> Option<Break> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|&(_, b)| b)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, b)| *b == self)
            .map(|(n, _)| *n)
            .unwrap_or("?")
    }
}

/// Simulation parameters.
#[derive(Clone, Debug)]
pub struct Config {
    pub seed: u64,
    pub nodes: usize,
    /// Trace every event to stderr.
    pub trace: bool,
    /// Where every sequence counter starts (C: 0); near 2^32 for a third
    /// of the seeds, so that the numbers wrap during the run.
    pub seq_init: u32,
    /// Break the glue on purpose.
    pub brk: Option<Break>,
    /// Partitions of up to 15 s that may outlast a close (see
    /// [`SHORT_PARTITION_MS`]).  Off by default: it shows an open problem.
    pub long_partitions: bool,
}

impl Config {
    /// The configuration for `seed`: the node count cycles through 2..=32.
    pub fn for_seed(seed: u64) -> Self {
        Config {
            seed,
            nodes: 2 + (seed % 31) as usize,
            trace: false,
            seq_init: if seed % 3 == 1 {
                0u32.wrapping_sub(((seed / 3) % 600) as u32)
            } else {
                0
            },
            brk: None,
            long_partitions: false,
        }
    }
}

/// Numbers from one run.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub steps: u64,
    pub messages: u64,
    pub bytes: u64,
    pub resets: u64,
    pub retransmits: u64,
    pub duplicates: u64,
    pub gaps: u64,
    /// Connections reset because of a gap.
    pub gap_resets: u64,
    /// Frames lost in the receiver's glue.
    pub rx_lost: u64,
    pub fins: u64,
    pub sessions: u64,
    pub version_timeouts: u64,
    pub fin_timeouts: u64,
    pub stuck_resets: u64,
    /// Messages given up by a forced reset (of the sender or receiver).
    pub abandoned: u64,
    /// Messages lost with a crashed sender or receiver.
    pub crash_lost: u64,
    /// `AckInvalid` after a forced reset (allowed).
    pub ack_invalid: u64,
    /// Leftovers of an ended lifetime, acked and dropped.
    pub stale: u64,
    /// Leftovers that arrived outside any lifetime (dropped, not acked):
    /// sequenced messages and ACKs.
    pub leftovers: u64,
    /// Old lifetimes dropped because the peer showed it started a new one.
    pub peer_restarts: u64,
    pub partitions: u64,
    pub slow_removes: u64,
    pub crashes: u64,
    pub restarts: u64,
    /// Bytes sent into the connection of a crashed peer.
    pub lost_bytes: u64,
    pub backpressure: u64,
    pub max_unacked: u64,
    pub max_wq_bytes: u64,
    /// Most sequenced messages (originals and copies) in a write queue.
    pub max_wq_seq: u64,
    pub max_frame: u64,
    /// Frames of more than 3072 bytes.
    pub big_frames: u64,
    pub max_carry: u64,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.steps += o.steps;
        self.messages += o.messages;
        self.bytes += o.bytes;
        self.resets += o.resets;
        self.retransmits += o.retransmits;
        self.duplicates += o.duplicates;
        self.gaps += o.gaps;
        self.gap_resets += o.gap_resets;
        self.rx_lost += o.rx_lost;
        self.fins += o.fins;
        self.sessions += o.sessions;
        self.version_timeouts += o.version_timeouts;
        self.fin_timeouts += o.fin_timeouts;
        self.stuck_resets += o.stuck_resets;
        self.abandoned += o.abandoned;
        self.crash_lost += o.crash_lost;
        self.ack_invalid += o.ack_invalid;
        self.stale += o.stale;
        self.leftovers += o.leftovers;
        self.peer_restarts += o.peer_restarts;
        self.partitions += o.partitions;
        self.slow_removes += o.slow_removes;
        self.crashes += o.crashes;
        self.restarts += o.restarts;
        self.lost_bytes += o.lost_bytes;
        self.backpressure += o.backpressure;
        self.max_unacked = self.max_unacked.max(o.max_unacked);
        self.max_wq_bytes = self.max_wq_bytes.max(o.max_wq_bytes);
        self.max_wq_seq = self.max_wq_seq.max(o.max_wq_seq);
        self.max_frame = self.max_frame.max(o.max_frame);
        self.big_frames += o.big_frames;
        self.max_carry = self.max_carry.max(o.max_carry);
    }

    /// What a batch of many seeds must have exercised: the names of the
    /// paths it never took (empty when all were taken).
    pub fn missing_coverage(&self) -> Vec<&'static str> {
        let need = [
            ("resets", self.resets),
            ("retransmissions", self.retransmits),
            ("duplicates", self.duplicates),
            ("sequence gaps", self.gaps),
            ("gap resets", self.gap_resets),
            ("frames lost on receive", self.rx_lost),
            ("FIN timeouts", self.fin_timeouts),
            ("version wait timeouts", self.version_timeouts),
            ("stuck-close resets", self.stuck_resets),
            ("messages abandoned by a forced reset", self.abandoned),
            ("messages lost with a crashed node", self.crash_lost),
            ("partitions", self.partitions),
            ("slow recoveries", self.slow_removes),
            ("crashes", self.crashes),
            ("restarts", self.restarts),
            ("back-pressure", self.backpressure),
            ("frames above 3072 bytes", self.big_frames),
        ];
        let mut v: Vec<&'static str> = need
            .iter()
            .filter(|(_, n)| *n == 0)
            .map(|(s, _)| *s)
            .collect();
        if self.max_frame < wire::MAX_MSG_LEN as u64 {
            v.push("a frame of 4096 bytes");
        }
        if self.max_unacked < MAX_UNACKED as u64 {
            v.push("a full unacked window");
        }
        v
    }
}

/// A violated property.
#[derive(Clone, Debug)]
pub struct Failure {
    pub seed: u64,
    pub nodes: usize,
    pub step: u64,
    pub what: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {} ({} nodes) step {}: {}",
            self.seed, self.nodes, self.step, self.what
        )
    }
}

/// How the simulated glue reacts where rust/comms has a policy that may
/// change.  One place to adjust the model when the kernel glue changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Glue {
    /// A frame the receive path could not hand to the protocol (no memory
    /// for the step): `true` resets the connection after the buffer, like a
    /// failed hand-over in `lowcomms::drain`, so the peer retransmits it;
    /// `false` drops it silently, as `midcomms::with_peer` does today, and
    /// only a later gap can recover it.
    pub reset_on_rx_loss: bool,
    /// A sequence gap resets the connection after the buffer
    /// (`lowcomms::reset_connection`).  A rule that resets only when the
    /// gap persists would go into [`Io::event`] and `Sim::receive`.
    pub reset_on_gap: bool,
    /// On a new connection, the copies that an earlier reconnect queued and
    /// that were never sent are dropped before the unacked messages are
    /// copied again.  `resend_unacked` does not do that today: it copies
    /// every unacked message whose original page left the queue, in front
    /// of the copies of the last reconnect, so a connection that fails
    /// before its copies went out adds a whole window to the queue each
    /// time (the write-queue bound fails within a few hundred seeds).
    pub drop_stale_copies: bool,
}

impl Glue {
    /// The model used unless a [`Break`] says otherwise.
    pub const MODEL: Glue = Glue {
        reset_on_rx_loss: true,
        reset_on_gap: true,
        drop_stale_copies: true,
    };
}

const PAGE: usize = 4096;
/// What one receive reads at most, carry-over included
/// (`max(buffer_size, DLM_MAX_SOCKET_BUFSIZE)` with the default 4096).
const RECV_BUF: usize = 4096;
const LOCKSPACE: u32 = 0x5eed;
const RCOM_STATUS: u32 = 1;
const RCOM_LOCK: u32 = 4;
const RCOM_STATUS_REPLY: u32 = 5;
/// Maximum unacked messages per peer in the simulation: the smallest the
/// core allows, so that back-pressure happens.
const MAX_UNACKED: u32 = MIN_MAX_UNACKED;
/// Largest frame: DLM_OPTS around the largest application message.
const MAX_FRAME: usize = wire::MAX_MSG_LEN;
/// Smallest application message: header plus our 8-byte id.
const APP_MIN: usize = wire::MESSAGE_MIN_LEN + 8;
/// Largest extra payload: the frame is then exactly 4096 bytes.
const EXTRA_MAX: usize = wire::MAX_APP_LEN - APP_MIN;
/// Longest partition, in virtual milliseconds, and the most a session
/// gets: short enough that a close started during it still finishes before
/// its 5 s timeout.  A partition that outlasts a close makes the closing
/// node reset while its peer keeps the old connection lifetime; the peer
/// then retransmits old messages into the new lifetime of the next session,
/// which delivers them a second time (C does the same, and worse).  In a
/// DLM cluster a partition that long is a membership change, after which
/// fencing and the removal of the node's comm reset both sides; that is
/// modelled by the crashes.  `Config::long_partitions` shows the problem.
pub const SHORT_PARTITION_MS: u64 = 3_000;
/// Longest partition with `Config::long_partitions`.
const LONG_PARTITION_MS: u64 = 15_000;
/// Longest delay of a remove_member by a slow recovery.
const SLOW_REMOVE_MAX_MS: u64 = 12_000;
/// Longest time from a crash to the survivors' removal of the node.
const CRASH_DETECT_MAX_MS: u64 = 12_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Seq,
    Ack,
    Plain,
}

#[derive(Debug)]
struct Page {
    id: u64,
    /// Holds copies made by `resend_unacked`.
    copy: bool,
    bytes: Vec<u8>,
    /// (kind, start, len) of every message in the page.
    frames: Vec<(Kind, usize, usize)>,
    /// Sequenced messages in the page.
    nseq: usize,
    sent: usize,
}

/// One direction of a connection: the sender's write queue, the bytes on
/// the wire, and the receiver's carry-over.
#[derive(Debug)]
struct Dir {
    wq: VecDeque<Page>,
    wq_bytes: usize,
    /// Sequenced messages (originals and copies) in `wq`.
    wq_seq: usize,
    /// Bytes on the wire: `inflight[inflight_head..]`.
    inflight: Vec<u8>,
    inflight_head: usize,
    /// The receiver's incomplete message from the last read.
    carry: Vec<u8>,
    /// Page numbers, never reused.
    next_page: u64,
    /// Sent pages, for reuse (fewer allocations, a faster simulator).
    spare: Vec<Page>,
}

impl Dir {
    fn new() -> Self {
        Dir {
            wq: VecDeque::new(),
            wq_bytes: 0,
            wq_seq: 0,
            inflight: Vec::new(),
            inflight_head: 0,
            carry: Vec::new(),
            next_page: 1,
            spare: Vec::new(),
        }
    }

    fn new_page(&mut self) -> Page {
        let id = self.next_page;
        self.next_page += 1;
        match self.spare.pop() {
            Some(mut p) => {
                p.id = id;
                p.copy = false;
                p.bytes.clear();
                p.frames.clear();
                p.nseq = 0;
                p.sent = 0;
                p
            }
            None => Page {
                id,
                copy: false,
                bytes: Vec::with_capacity(PAGE),
                frames: Vec::new(),
                nseq: 0,
                sent: 0,
            },
        }
    }

    /// Accounts for page `p` leaving the queue, and keeps it for reuse.
    fn recycle(&mut self, p: Page) {
        self.wq_bytes -= p.bytes.len();
        self.wq_seq -= p.nseq;
        if self.spare.len() < 8 {
            self.spare.push(p);
        }
    }

    /// Appends a message; a message never crosses a page.  Returns the
    /// number of its page.
    fn push(&mut self, kind: Kind, frame: &[u8]) -> u64 {
        assert!(frame.len() <= PAGE, "frame of {} bytes", frame.len());
        let need_new = match self.wq.back() {
            Some(p) => p.bytes.len() + frame.len() > PAGE,
            None => true,
        };
        if need_new {
            let p = self.new_page();
            self.wq.push_back(p);
        }
        let p = self.wq.back_mut().expect("page");
        p.frames.push((kind, p.bytes.len(), frame.len()));
        p.bytes.extend_from_slice(frame);
        if kind == Kind::Seq {
            p.nseq += 1;
            self.wq_seq += 1;
        }
        self.wq_bytes += frame.len();
        p.id
    }

    /// Puts copies in front of the queue, in order, in pages of their own
    /// (`resend_unacked`).
    fn push_front_all(&mut self, frames: &[(Kind, Rc<[u8]>)]) {
        if frames.is_empty() {
            return;
        }
        let mut pages: Vec<Page> = Vec::new();
        for (kind, f) in frames {
            if pages.last().is_none_or(|p| p.bytes.len() + f.len() > PAGE) {
                let mut p = self.new_page();
                p.copy = true;
                pages.push(p);
            }
            let p = pages.last_mut().expect("page");
            p.frames.push((*kind, p.bytes.len(), f.len()));
            p.bytes.extend_from_slice(f);
            if *kind == Kind::Seq {
                p.nseq += 1;
                self.wq_seq += 1;
            }
            self.wq_bytes += f.len();
        }
        for p in pages.into_iter().rev() {
            self.wq.push_front(p);
        }
    }

    /// Drops the pages of copies that were never sent.
    fn drop_unsent_copies(&mut self) {
        let (mut bytes, mut nseq) = (0, 0);
        self.wq.retain(|p| {
            let keep = !p.copy || p.sent > 0;
            if !keep {
                bytes += p.bytes.len();
                nseq += p.nseq;
            }
            keep
        });
        self.wq_bytes -= bytes;
        self.wq_seq -= nseq;
    }

    fn holds(&self, page: u64) -> bool {
        self.wq.iter().any(|p| p.id == page)
    }

    fn inflight_len(&self) -> usize {
        self.inflight.len() - self.inflight_head
    }

    fn clear_inflight(&mut self) {
        self.inflight.clear();
        self.inflight_head = 0;
    }

    fn idle(&self) -> bool {
        self.wq.is_empty() && self.inflight_len() == 0
    }

    /// Connection loss: bytes in flight and the receiver's carry-over are
    /// lost, the partly sent head page is dropped; the rest stays queued.
    fn lose_connection(&mut self) {
        self.clear_inflight();
        self.carry.clear();
        if self.wq.front().is_some_and(|p| p.sent > 0) {
            let p = self.wq.pop_front().expect("head");
            self.recycle(p);
        }
    }

    fn drop_queue(&mut self) {
        self.wq.clear();
        self.wq_bytes = 0;
        self.wq_seq = 0;
    }

    fn clear(&mut self) {
        self.clear_inflight();
        self.carry.clear();
        self.drop_queue();
    }
}

#[derive(Clone, Debug)]
struct Entry {
    bytes: Rc<[u8]>,
    /// App message id, `None` for a FIN.
    id: Option<u64>,
    /// The page the message was first placed in.
    page: u64,
}

/// A node's view of one peer.
struct Slot {
    peer: Peer,
    q: VecQueue<Entry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closer {
    /// Not closing.
    No,
    /// Will run version wait then shutdown.
    Pending,
    /// In version wait, started at this time.
    VersionWait(u64),
    /// In the active close, until this deadline.
    Shutdown(u64),
    /// Finished.
    Done,
    /// Finished by a timeout: the reset that follows is forced.
    TimedOut,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not members of a common lockspace; connection closed.
    Idle,
    /// Not members, but no close was run: the connection stays.
    IdleConnected,
    Joined,
    Leaving,
    /// Every active close is finished: the connection drains, then closes.
    Draining,
}

/// Per ordered pair (sender, receiver) bookkeeping.
#[derive(Default)]
struct Flow {
    /// Session index of each message id.
    session: Vec<u32>,
    /// Next id the receiver must get.
    next: u64,
    /// Ids given up (forced reset, crash): never to be delivered.
    abandoned: HashSet<u64>,
    /// Messages left to send in the current session.
    quota: u64,
}

impl Flow {
    fn delivered(&self, id: u64) -> bool {
        id < self.next && !self.abandoned.contains(&id)
    }
}

/// After a crash of one end of a link.
#[derive(Clone, Copy, Debug)]
struct Dead {
    /// The side of the crashed node.
    side: usize,
    /// The survivor removed it (`dlm_midcomms_close()`).
    removed: bool,
    /// The survivor's membership layer reports the node gone (token
    /// timeout, fencing) not before this time.
    remove_at: u64,
}

/// An unordered pair of nodes and their connection.
struct Link {
    a: usize,
    b: usize,
    /// dir[0]: a to b, dir[1]: b to a.
    dir: [Dir; 2],
    up: bool,
    phase: Phase,
    closer: [Closer; 2],
    remove_pending: [bool; 2],
    /// A slow recovery removes the member not before this time.
    remove_at: [u64; 2],
    sessions_left: u32,
    session: u32,
    /// Virtual milliseconds, advanced by each action on this link.
    now: u64,
    /// A forced reset (timeout) happened in this session.
    forced: bool,
    /// A fault that can delay a close (partition, slow recovery) hit this
    /// session.
    delayed: bool,
    /// No connection is possible before this time.
    partition_until: Option<u64>,
    /// The session had its partition.
    partitioned: bool,
    dead: Option<Dead>,
}

impl Link {
    fn quiet(&self) -> bool {
        self.dir[0].idle() && self.dir[1].idle()
    }
    fn ends(&self, side: usize) -> (usize, usize) {
        if side == 0 {
            (self.a, self.b)
        } else {
            (self.b, self.a)
        }
    }
    fn side_of(&self, node: usize) -> usize {
        if node == self.a {
            0
        } else {
            1
        }
    }
}

/// Per-seed fault rates.
#[derive(Clone, Copy, Debug)]
struct Faults {
    /// Per mille, after each byte movement: connection reset.
    reset: u64,
    /// Per mille, after each action: partition.
    partition: u64,
    /// Per mille, after a close step: partition.
    partition_closing: u64,
    /// Per mille per leave: the peer's recovery is slow.
    slow_remove: u64,
    /// Per mille per received frame: lost in the receiver's glue.
    rx_loss: u64,
    /// Crashes left.
    crashes: u32,
    /// Frames up to 4096 bytes.
    big: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Transmit(usize),
    Receive(usize),
    Reconnect,
    AppSend,
    Control,
    StatusRetry,
    /// Nothing else can happen on the link: its clock jumps to the next
    /// timer (partition end, slow remove, close deadline).
    Wait,
    /// The survivor of a crash sees its connection fail.
    Notice,
    /// The survivor removes the crashed node (recovery, then rmdir of its
    /// comm).
    RemoveDead,
    /// The crashed node boots again.
    Restart,
}

struct Sim {
    cfg: Config,
    rng: Rng,
    n: usize,
    glue: Glue,
    faults: Faults,
    /// slots[x][y]: node x's state for peer y.
    slots: Vec<Vec<Option<Slot>>>,
    links: Vec<Link>,
    /// link index for (x, y), x < y.
    link_of: Vec<usize>,
    /// flows[x * n + y]: messages from x to y.
    flows: Vec<Flow>,
    /// Crashed nodes: how many survivors have not removed them yet.
    down: Vec<Option<usize>>,
    stats: Stats,
    step: u64,
    failure: Option<String>,
    /// Links whose set of actions an action may have changed besides its
    /// own (node-level events).
    touched: Vec<usize>,
    /// Reused buffers.
    scratch: Vec<u8>,
    resent: Vec<(Kind, Rc<[u8]>)>,
}

/// The glue of node `me` for peer `them`: where the effects of
/// [`Peer`] go.
struct Io<'a> {
    me: usize,
    them: usize,
    /// Outgoing direction me -> them.
    out: &'a mut Dir,
    /// Flow them -> me (deliveries).
    inflow: &'a mut Flow,
    /// Flow me -> them (releases).
    outflow: &'a mut Flow,
    stats: &'a mut Stats,
    failure: &'a mut Option<String>,
    /// What `resend_unacked` puts in front of the queue: our ACK, then
    /// copies.
    resent: &'a mut Vec<(Kind, Rc<[u8]>)>,
    /// Inside [`Peer::connected`].
    connecting: bool,
    /// The connection must be reset after this step.
    reset_req: bool,
    /// Inside a reset (releases are a flush, not ACKs).
    resetting: bool,
    /// This reset is forced and may give up undelivered messages.
    forced: bool,
    /// A forced reset happened in the link's session.
    link_forced: bool,
    glue: Glue,
    brk: Option<Break>,
    trace: bool,
}

/// A DLM_OPTS-wrapped DLM_MSG built in place, the way the kernel glue
/// does it (`encode_opts_header`, the message, `set_opts_nextcmd`).
fn app_frame(from: usize, to: usize, seq: Seq, id: u64, extra: usize) -> Vec<u8> {
    let len = APP_MIN + extra;
    let mut out = vec![0u8; wire::OPTS_LEN + len];
    wire::encode_opts_header(&mut out, from as u32 + 1, seq.get(), len).expect("opts header");
    let inner = &mut out[wire::OPTS_LEN..];
    wire::encode_message_header(inner, Cmd::Msg, LOCKSPACE, from as u32 + 1, len)
        .expect("app message header");
    inner[16..20].copy_from_slice(&1u32.to_le_bytes()); // m_type REQUEST
    inner[20..24].copy_from_slice(&(to as u32 + 1).to_le_bytes());
    inner[88..96].copy_from_slice(&id.to_le_bytes());
    for (i, b) in inner[96..].iter_mut().enumerate() {
        *b = (id as u8).wrapping_add(i as u8);
    }
    wire::set_opts_nextcmd(&mut out).expect("o_nextcmd");
    out
}

fn rcom_frame(from: usize, rc_type: u32) -> Vec<u8> {
    let mut f = vec![0u8; wire::RCOM_MIN_LEN];
    wire::encode_message_header(
        &mut f,
        Cmd::Rcom,
        LOCKSPACE,
        from as u32 + 1,
        wire::RCOM_MIN_LEN,
    )
    .expect("rcom header");
    f[16..20].copy_from_slice(&rc_type.to_le_bytes());
    f
}

impl Io<'_> {
    fn fail(&mut self, what: String) {
        if self.failure.is_none() {
            *self.failure = Some(what);
        }
    }
}

impl PeerIo for Io<'_> {
    type Entry = Entry;

    fn deliver(&mut self, msg: Message<'_>, seq: Option<Seq>) {
        let b = msg.bytes();
        match msg.cmd() {
            Cmd::Rcom => {
                if msg.rc_type() == Some(RCOM_STATUS) {
                    self.out
                        .push(Kind::Plain, &rcom_frame(self.me, RCOM_STATUS_REPLY));
                }
            }
            _ => {
                if b.len() < APP_MIN {
                    let them = self.them;
                    self.fail(format!("short app message from {them}"));
                    return;
                }
                let mut idb = [0u8; 8];
                idb.copy_from_slice(&b[88..96]);
                let id = u64::from_le_bytes(idb);
                if self.trace {
                    eprintln!(
                        "  {} <- {}: deliver id {} seq {:?}",
                        self.me, self.them, id, seq
                    );
                }
                let (me, them) = (self.me, self.them);
                let f = &mut *self.inflow;
                if id < f.next {
                    let next = f.next;
                    self.fail(format!(
                        "node {me} got message {id} from node {them} again or out of order (expected {next}), seq {seq:?}"
                    ));
                    return;
                }
                if id as usize >= f.session.len() {
                    self.fail(format!(
                        "node {me} got message {id} from node {them} that was never sent"
                    ));
                    return;
                }
                if f.abandoned.contains(&id) {
                    self.fail(format!(
                        "node {me} got message {id} from node {them} after it was given up"
                    ));
                    return;
                }
                // Everything skipped must have been given up.
                if let Some(lost) = (f.next..id).find(|i| !f.abandoned.contains(i)) {
                    let next = f.next;
                    self.fail(format!(
                        "node {me} got message {id} from node {them} but never message {lost} (expected {next}), seq {seq:?}"
                    ));
                    return;
                }
                f.next = id + 1;
                self.stats.messages += 1;
            }
        }
    }

    fn send_ack(&mut self, ack: Seq) -> bool {
        let v = if self.brk == Some(Break::AckAhead) && ack.get() % 97 == 13 {
            ack.get().wrapping_add(1000)
        } else {
            ack.get()
        };
        let mut f = [0u8; wire::ACK_LEN];
        wire::encode_ack(&mut f, self.me as u32 + 1, v).expect("ack");
        if self.trace {
            eprintln!("  {} -> {}: ack {}", self.me, self.them, v);
        }
        if self.connecting {
            self.resent.push((Kind::Ack, Rc::from(&f[..])));
        } else {
            self.out.push(Kind::Ack, &f);
        }
        true
    }

    fn send_fin(&mut self, seq: Seq) -> Option<Entry> {
        let mut f = [0u8; wire::OPTS_FIN_LEN];
        wire::encode_fin(&mut f, self.me as u32 + 1, seq.get()).expect("fin");
        if self.trace {
            eprintln!("  {} -> {}: fin seq {}", self.me, self.them, seq);
        }
        self.stats.fins += 1;
        let page = self.out.push(Kind::Seq, &f);
        match self.brk {
            Some(Break::MsgAfterFin) => {
                let inner = rcom_frame(self.me, RCOM_LOCK);
                let mut g = vec![0u8; wire::OPTS_LEN + inner.len()];
                wire::encode_opts(&mut g, self.me as u32 + 1, seq.next().get(), &inner)
                    .expect("opts");
                self.out.push(Kind::Plain, &g);
            }
            Some(Break::FinAfterFin) => {
                let mut g = [0u8; wire::OPTS_FIN_LEN];
                wire::encode_fin(&mut g, self.me as u32 + 1, seq.next().get()).expect("fin");
                self.out.push(Kind::Plain, &g);
            }
            _ => {}
        }
        Some(Entry {
            bytes: Rc::from(&f[..]),
            id: None,
            page,
        })
    }

    fn resend(&mut self, _seq: Seq, entry: &Entry) {
        // `resend_unacked`: a message whose page is still queued goes out
        // in place.
        if !self.out.holds(entry.page) {
            self.stats.retransmits += 1;
            self.resent.push((Kind::Seq, entry.bytes.clone()));
        }
    }

    fn release(&mut self, seq: Seq, entry: Entry) {
        let Some(id) = entry.id else { return };
        let (me, them) = (self.me, self.them);
        let f = &mut *self.outflow;
        if f.delivered(id) {
            return;
        }
        let next = f.next;
        if !self.resetting {
            self.fail(format!(
                "node {me} released message {id} (seq {seq}) to node {them} on an ACK, but it was never delivered (receiver expects id {next})"
            ));
        } else if f.abandoned.contains(&id) {
            // Given up already, by a forced reset of the receiver.
        } else if self.forced {
            f.abandoned.insert(id);
            self.stats.abandoned += 1;
        } else {
            self.fail(format!(
                "node {me} gave up message {id} (seq {seq}) to node {them}, never delivered, in a reset that was not forced (receiver expects id {next})"
            ));
        }
    }

    fn event(&mut self, ev: Event) {
        if self.trace {
            eprintln!("  {} <- {}: {:?}", self.me, self.them, ev);
        }
        let (me, them) = (self.me, self.them);
        match ev {
            Event::Reset => self.resetting = true,
            Event::Duplicate { .. } => self.stats.duplicates += 1,
            Event::Gap { .. } => {
                self.stats.gaps += 1;
                if self.glue.reset_on_gap {
                    self.reset_req = true;
                }
            }
            Event::Stale { .. } | Event::StaleFin { .. } => self.stats.stale += 1,
            Event::Leftover { .. } | Event::LeftoverAck { .. } => self.stats.leftovers += 1,
            Event::Restarted { .. } => {
                // The peer reset the lifetime that its FIN ended and started
                // a new one; ours is dropped.  Like the reset of a stuck
                // close, it may give up messages only if a timeout cut that
                // lifetime short.
                self.stats.peer_restarts += 1;
                self.forced = self.link_forced;
            }
            Event::VersionDetected(_) => {}
            Event::Unexpected(Unexpected::StuckIn(_)) => {
                // The reset of a close that never finished.  It may give up
                // messages only if that close was cut short by a timeout.
                self.stats.stuck_resets += 1;
                self.forced = self.link_forced;
            }
            Event::AckInvalid { ack, seq_send } if !self.link_forced => self.fail(format!(
                "node {me} got ACK {ack} from node {them} beyond what it sent ({seq_send}) with no forced reset in the session"
            )),
            Event::AckInvalid { .. } => self.stats.ack_invalid += 1,
            Event::Dropped(e) => {
                self.fail(format!("node {me} dropped a frame from node {them}: {e}"))
            }
            Event::Unexpected(u) => {
                self.fail(format!("node {me}, peer {them}: unexpected state: {u:?}"))
            }
            Event::DeliveredAfterFin => self.fail(format!(
                "node {me} delivered a sequenced message from node {them} after its FIN"
            )),
        }
    }
}

/// Runs one seed.
pub fn run(cfg: Config) -> Result<Stats, Failure> {
    let mut sim = Sim::new(cfg);
    let r = sim.run();
    match r {
        Ok(()) => Ok(sim.stats),
        Err(what) => Err(Failure {
            seed: sim.cfg.seed,
            nodes: sim.n,
            step: sim.step,
            what,
        }),
    }
}

fn new_slot(peer: usize, seq_init: u32) -> Slot {
    Slot {
        peer: Peer::with_initial_seq(peer as u32 + 1, MAX_UNACKED, Seq(seq_init)),
        q: VecQueue::default(),
    }
}

impl Sim {
    fn new(cfg: Config) -> Self {
        let n = cfg.nodes.clamp(2, 32);
        let mut rng = Rng::new(cfg.seed);
        let mut slots = Vec::with_capacity(n);
        for x in 0..n {
            let mut row = Vec::with_capacity(n);
            for y in 0..n {
                row.push((x != y).then(|| new_slot(y, cfg.seq_init)));
            }
            slots.push(row);
        }
        let pairs = n * (n - 1);
        // A budget of messages per seed, spread over the ordered pairs;
        // small clusters sometimes get enough to hit back-pressure and the
        // receive-side ACK threshold.
        let budget = if n <= 4 && rng.permille(300) {
            rng.range(600, 1500)
        } else {
            rng.range(150, 1000)
        };
        let per_pair = (budget / pairs as u64).max(1);
        // In larger clusters one node (a lock master, say) talks much more
        // with a few others, so that every cluster size has busy links.
        let hot = if n > 4 {
            let h = rng.below(n as u64) as usize;
            let k = rng.range(1, 3) as usize;
            let mut v = Vec::new();
            for i in 0..k {
                let o = (h + 1 + i * (n / 3).max(1)) % n;
                if o != h {
                    v.push((h, o));
                }
            }
            v
        } else {
            Vec::new()
        };
        let mut links = Vec::new();
        let mut link_of = vec![usize::MAX; n * n];
        for a in 0..n {
            for b in a + 1..n {
                link_of[a * n + b] = links.len();
                links.push(Link {
                    a,
                    b,
                    dir: [Dir::new(), Dir::new()],
                    up: false,
                    phase: Phase::Idle,
                    closer: [Closer::No; 2],
                    remove_pending: [false; 2],
                    remove_at: [0; 2],
                    sessions_left: if n <= 8 {
                        rng.range(1, 3) as u32
                    } else {
                        rng.range(1, 2) as u32
                    },
                    session: 0,
                    now: 0,
                    forced: false,
                    delayed: false,
                    partition_until: None,
                    partitioned: false,
                    dead: None,
                });
            }
        }
        let mut flows = Vec::with_capacity(n * n);
        for _ in 0..n * n {
            flows.push(Flow {
                quota: per_pair,
                ..Flow::default()
            });
        }
        for &(h, o) in &hot {
            let extra = rng.range(60, 250);
            flows[h * n + o].quota += extra;
            flows[o * n + h].quota += extra;
        }
        // Fault mix.  Every seed has connection resets; about half have
        // partitions, a third lose frames on receive, a quarter slow
        // recoveries, a fifth crashes.
        let mut faults = Faults {
            reset: 10,
            partition: if cfg.seed.is_multiple_of(2) { 2 } else { 0 },
            partition_closing: if cfg.seed.is_multiple_of(2) { 25 } else { 0 },
            slow_remove: if cfg.seed % 4 == 1 { 250 } else { 0 },
            rx_loss: if cfg.seed % 3 == 2 { 3 } else { 0 },
            crashes: if cfg.seed % 5 == 3 {
                rng.range(1, 2) as u32
            } else {
                0
            },
            big: true,
        };
        let mut glue = Glue::MODEL;
        match cfg.brk {
            Some(Break::NoFaults) => {
                faults.partition = 0;
                faults.partition_closing = 0;
                faults.slow_remove = 0;
                faults.rx_loss = 0;
                faults.crashes = 0;
            }
            Some(Break::SmallFrames) => faults.big = false,
            Some(Break::SilentRxLoss) => {
                glue.reset_on_rx_loss = false;
                faults.rx_loss = faults.rx_loss.max(3);
            }
            Some(Break::KeepCrashedPeer) => faults.crashes = faults.crashes.max(1),
            Some(Break::StackCopies) => glue.drop_stale_copies = false,
            _ => {}
        }
        Sim {
            cfg,
            rng,
            n,
            glue,
            faults,
            slots,
            links,
            link_of,
            flows,
            down: vec![None; n],
            stats: Stats::default(),
            step: 0,
            failure: None,
            touched: Vec::new(),
            scratch: Vec::new(),
            resent: Vec::new(),
        }
    }

    fn link_index(&self, x: usize, y: usize) -> usize {
        self.link_of[x.min(y) * self.n + x.max(y)]
    }

    /// Runs `f` with node `me`'s slot for `them` and its glue; `forced`:
    /// a reset in this step may give up messages.  Returns whether the
    /// glue asked for a connection reset.
    fn with_peer<R>(
        &mut self,
        li: usize,
        side: usize,
        forced: bool,
        f: impl FnOnce(&mut Slot, &mut Io<'_>, u64) -> R,
    ) -> (R, bool) {
        let link = &mut self.links[li];
        let (me, them) = link.ends(side);
        let now = link.now;
        let slot = self.slots[me][them].as_mut().expect("slot");
        let n = self.n;
        let (inflow, outflow) = two_mut(&mut self.flows, them * n + me, me * n + them);
        let mut io = Io {
            me,
            them,
            out: &mut link.dir[side],
            inflow,
            outflow,
            stats: &mut self.stats,
            failure: &mut self.failure,
            resent: &mut self.resent,
            connecting: false,
            reset_req: false,
            resetting: false,
            forced,
            link_forced: link.forced,
            glue: self.glue,
            brk: self.cfg.brk,
            trace: self.cfg.trace,
        };
        let r = f(slot, &mut io, now);
        let reset = io.reset_req;
        (r, reset)
    }

    fn trace(&self, s: impl FnOnce() -> String) {
        if self.cfg.trace {
            eprintln!("[{}] {}", self.step, s());
        }
    }

    fn run(&mut self) -> Result<(), String> {
        let limit = 3_000_000u64;
        // Links are independent state machines apart from node crashes, so
        // only the link an action touched (and, for a crash or restart,
        // every link of that node) can change its set of possible actions.
        // `busy` holds the links that have any; each step picks one of
        // them, then one of its actions.
        let nl = self.links.len();
        let mut busy: Vec<usize> = Vec::with_capacity(nl);
        let mut pos: Vec<usize> = vec![usize::MAX; nl];
        let mut acts: Vec<Act> = Vec::with_capacity(12);
        for li in 0..nl {
            acts.clear();
            self.link_actions(li, &mut acts);
            if !acts.is_empty() {
                pos[li] = busy.len();
                busy.push(li);
            }
        }
        let mut check: Vec<usize> = Vec::new();
        while !busy.is_empty() {
            if let Some(f) = self.failure.take() {
                return Err(f);
            }
            self.step += 1;
            if self.step > limit {
                return Err(format!(
                    "no progress after {limit} steps (livelock?): {}",
                    self.describe_stuck()
                ));
            }
            let li = busy[self.rng.below(busy.len() as u64) as usize];
            acts.clear();
            self.link_actions(li, &mut acts);
            if let Some(&act) = acts.get(self.rng.below(acts.len().max(1) as u64) as usize) {
                self.links[li].now += 1;
                self.act(li, act);
                self.faults_after(li, act);
                self.check_bounds(li)?;
            }
            check.clear();
            check.push(li);
            check.append(&mut self.touched);
            for &lj in &check {
                acts.clear();
                self.link_actions(lj, &mut acts);
                let has = !acts.is_empty();
                if has && pos[lj] == usize::MAX {
                    pos[lj] = busy.len();
                    busy.push(lj);
                } else if !has && pos[lj] != usize::MAX {
                    let p = pos[lj];
                    let last = busy.pop().expect("busy");
                    if last != lj {
                        busy[p] = last;
                        pos[last] = p;
                    }
                    pos[lj] = usize::MAX;
                }
            }
        }
        if let Some(f) = self.failure.take() {
            return Err(f);
        }
        self.final_check()
    }

    fn act(&mut self, li: usize, act: Act) {
        match act {
            Act::Transmit(d) => self.transmit(li, d),
            Act::Receive(d) => self.receive(li, d),
            Act::Reconnect => self.reconnect(li),
            Act::AppSend => self.app_send(li),
            Act::Control => self.control(li),
            Act::StatusRetry => self.status_retry(li),
            Act::Wait => self.wait(li),
            Act::Notice => self.notice(li),
            Act::RemoveDead => self.remove_dead(li),
            Act::Restart => {
                let l = &self.links[li];
                let x = if let Some(d) = l.dead {
                    l.ends(d.side).0
                } else {
                    return;
                };
                self.restart(x);
            }
        }
    }

    /// Random faults after an action.
    fn faults_after(&mut self, li: usize, act: Act) {
        if self.links[li].dead.is_some() {
            return;
        }
        if matches!(act, Act::Transmit(_) | Act::Receive(_)) && self.rng.permille(self.faults.reset)
        {
            self.reset_link(li);
        }
        let closing = self.links[li].phase == Phase::Leaving;
        let p = if closing {
            self.faults.partition_closing
        } else {
            self.faults.partition
        };
        let l = &self.links[li];
        let free = l.partition_until.is_none() && (self.cfg.long_partitions || !l.partitioned);
        if p > 0 && free && self.rng.permille(p) {
            let ms = if self.cfg.long_partitions {
                match self.rng.below(3) {
                    0 => self.rng.range(1, 1000),
                    1 => self.rng.range(1000, 5000),
                    _ => self.rng.range(5000, LONG_PARTITION_MS),
                }
            } else {
                self.rng.range(1, SHORT_PARTITION_MS)
            };
            self.partition(li, ms);
        }
        if self.faults.crashes > 0
            && self.down.iter().all(|d| d.is_none())
            && self.rng.below(4000) == 0
        {
            let l = &self.links[li];
            let x = if self.rng.below(2) == 0 { l.a } else { l.b };
            self.faults.crashes -= 1;
            self.crash(x);
        }
    }

    fn link_actions(&self, li: usize, out: &mut Vec<Act>) {
        let l = &self.links[li];
        if let Some(d) = l.dead {
            // Only the survivor acts: it talks into the dead connection
            // until it notices, goes on with its own close, and removes the
            // node once its membership layer reports it gone.
            let s = 1 - d.side;
            if !d.removed {
                if l.up {
                    if !l.dir[s].wq.is_empty() {
                        out.push(Act::Transmit(s));
                    }
                    if l.dir[d.side].inflight_len() > 0 {
                        out.push(Act::Receive(d.side));
                    }
                    out.push(Act::Notice);
                }
                if l.phase == Phase::Joined && self.side_can_send(li, s) {
                    out.push(Act::AppSend);
                }
                if l.phase == Phase::Leaving
                    && (self.remove_ready(li, s) || self.closer_ready(li, s))
                {
                    out.push(Act::Control);
                }
                if l.now >= d.remove_at {
                    out.push(Act::RemoveDead);
                }
                if out.is_empty() {
                    out.push(Act::Wait);
                }
            } else if self.down[l.ends(d.side).0] == Some(0) {
                out.push(Act::Restart);
            }
            return;
        }
        if l.up {
            for d in 0..2 {
                if !l.dir[d].wq.is_empty() {
                    out.push(Act::Transmit(d));
                }
                if l.dir[d].inflight_len() > 0 {
                    out.push(Act::Receive(d));
                }
            }
        } else if l.partition_until.is_none() && self.wants_connection(li) {
            out.push(Act::Reconnect);
        }
        if l.phase == Phase::Joined && self.can_app_send(li) {
            out.push(Act::AppSend);
        }
        if self.has_control(li) {
            out.push(Act::Control);
        }
        if l.up && l.quiet() && self.needs_status(li) {
            out.push(Act::StatusRetry);
        }
        if out.is_empty() && self.next_timer(li).is_some() {
            out.push(Act::Wait);
        }
    }

    /// The earliest time something on link `li` is due.
    fn next_timer(&self, li: usize) -> Option<u64> {
        let l = &self.links[li];
        let mut t = l.partition_until;
        let mut at = |x: u64| t = Some(t.map_or(x, |y| y.min(x)));
        if let Some(d) = l.dead {
            if !d.removed && d.remove_at > l.now {
                at(d.remove_at);
            }
        }
        for side in 0..2 {
            match l.closer[side] {
                Closer::VersionWait(start) => at(start + VERSION_WAIT_TIMEOUT_MS),
                Closer::Shutdown(deadline) => at(deadline),
                _ => {}
            }
            if l.phase == Phase::Leaving && l.remove_pending[side] && l.remove_at[side] > l.now {
                at(l.remove_at[side]);
            }
        }
        t
    }

    fn wait(&mut self, li: usize) {
        let Some(t) = self.next_timer(li) else { return };
        let l = &mut self.links[li];
        l.now = l.now.max(t);
        if l.partition_until.is_some_and(|p| l.now >= p) {
            l.partition_until = None;
        }
        let (a, b, now) = (l.a, l.b, l.now);
        self.trace(|| format!("time {a}-{b} -> {now}"));
    }

    fn slot(&self, x: usize, y: usize) -> &Slot {
        self.slots[x][y].as_ref().expect("slot")
    }

    fn enabled(&self, li: usize) -> bool {
        matches!(
            self.links[li].phase,
            Phase::Joined | Phase::Leaving | Phase::IdleConnected
        )
    }

    fn wants_connection(&self, li: usize) -> bool {
        if !self.enabled(li) {
            return false;
        }
        let l = &self.links[li];
        !l.dir[0].wq.is_empty()
            || !l.dir[1].wq.is_empty()
            || !self.slot(l.a, l.b).q.is_empty()
            || !self.slot(l.b, l.a).q.is_empty()
            || self.needs_status(li)
            || (l.phase == Phase::Joined && self.quota_left(li))
    }

    fn quota_left(&self, li: usize) -> bool {
        let l = &self.links[li];
        self.flows[l.a * self.n + l.b].quota > 0 || self.flows[l.b * self.n + l.a].quota > 0
    }

    fn needs_status(&self, li: usize) -> bool {
        let l = &self.links[li];
        matches!(l.phase, Phase::Joined | Phase::Leaving)
            && (self.side_needs_status(l.a, l.b) || self.side_needs_status(l.b, l.a))
    }

    /// Recovery pings (stateless RCOM_STATUS) go only to lockspace
    /// members whose version is not known yet.
    fn side_needs_status(&self, me: usize, them: usize) -> bool {
        let p = &self.slot(me, them).peer;
        p.version().is_none() && p.fin().users() > 0
    }

    fn side_can_send(&self, li: usize, side: usize) -> bool {
        let (me, them) = self.links[li].ends(side);
        self.flows[me * self.n + them].quota > 0 && {
            let s = self.slot(me, them);
            s.peer.can_send(&s.q)
        }
    }

    fn can_app_send(&self, li: usize) -> bool {
        self.side_can_send(li, 0) || self.side_can_send(li, 1)
    }

    /// A closer's next step can change something now.
    fn closer_ready(&self, li: usize, side: usize) -> bool {
        let l = &self.links[li];
        let (me, them) = l.ends(side);
        let p = &self.slot(me, them).peer;
        match l.closer[side] {
            Closer::Pending => true,
            Closer::VersionWait(start) => {
                !matches!(p.poll_version_wait(start, l.now), Wait::Until(_))
            }
            Closer::Shutdown(deadline) => {
                p.state() == State::Closed || p.fin().closing_node() || l.now >= deadline
            }
            _ => false,
        }
    }

    fn remove_ready(&self, li: usize, side: usize) -> bool {
        let l = &self.links[li];
        l.remove_pending[side] && l.closer[side] == Closer::No && l.now >= l.remove_at[side]
    }

    fn has_control(&self, li: usize) -> bool {
        let l = &self.links[li];
        match l.phase {
            Phase::Idle | Phase::IdleConnected => l.sessions_left > 0,
            Phase::Joined => !self.quota_left(li) || self.rng_free_leave(li),
            Phase::Leaving => {
                (0..2).any(|s| self.remove_ready(li, s) || self.closer_ready(li, s))
                    || (!l.remove_pending.iter().any(|&r| r)
                        && l.closer
                            .iter()
                            .all(|c| matches!(c, Closer::No | Closer::Done | Closer::TimedOut)))
            }
            Phase::Draining => !l.up || l.quiet(),
        }
    }

    /// A session may end early (before its quota is used up) only on
    /// some links, decided by the link index and session number so that
    /// the action set stays a pure function of the state.
    fn rng_free_leave(&self, li: usize) -> bool {
        let l = &self.links[li];
        (li as u64 + l.session as u64 + self.cfg.seed).is_multiple_of(7)
    }

    fn transmit(&mut self, li: usize, d: usize) {
        let max = if self.rng.permille(300) { 64 } else { 6000 };
        let chunk = self.rng.range(1, max) as usize;
        let dead = self.links[li].dead.is_some();
        let dir = &mut self.links[li].dir[d];
        let Some(p) = dir.wq.front_mut() else { return };
        let n = chunk.min(p.bytes.len() - p.sent);
        if dead {
            // Into the connection of a crashed peer: gone.
            self.stats.lost_bytes += n as u64;
        } else {
            if dir.inflight_head > 0
                && (dir.inflight_head == dir.inflight.len() || dir.inflight_head > 1 << 16)
            {
                dir.inflight.drain(..dir.inflight_head);
                dir.inflight_head = 0;
            }
            dir.inflight.extend_from_slice(&p.bytes[p.sent..p.sent + n]);
        }
        p.sent += n;
        if p.sent == p.bytes.len() {
            if let Some(p) = dir.wq.pop_front() {
                dir.recycle(p);
            }
        }
        self.stats.bytes += n as u64;
    }

    /// `lowcomms::drain` and `midcomms::process`: one read of at most
    /// `RECV_BUF` bytes including the carry-over, then every whole message.
    fn receive(&mut self, li: usize, d: usize) {
        let max = if self.rng.permille(300) { 40 } else { 9000 };
        let chunk = self.rng.range(1, max) as usize;
        // Direction d goes to side 1 - d.
        let side = 1 - d;
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        {
            let dir = &mut self.links[li].dir[d];
            let room = RECV_BUF - dir.carry.len();
            let n = chunk.min(room).min(dir.inflight_len());
            let start = dir.inflight_head;
            dir.inflight_head += n;
            buf.extend_from_slice(&dir.carry);
            buf.extend_from_slice(&dir.inflight[start..start + n]);
            if dir.inflight_head == dir.inflight.len() {
                dir.clear_inflight();
            }
        }
        let (complete, bad) = framer::complete_len(&buf);
        {
            let dir = &mut self.links[li].dir[d];
            dir.carry.clear();
            dir.carry.extend_from_slice(&buf[complete..]);
            self.stats.max_carry = self.stats.max_carry.max(dir.carry.len() as u64);
        }
        let mut reset = false;
        for frame in framer::frames(&buf[..complete]) {
            let Ok(frame) = frame else { break };
            self.stats.max_frame = self.stats.max_frame.max(frame.len() as u64);
            if frame.len() > 3072 {
                self.stats.big_frames += 1;
            }
            if self.faults.rx_loss > 0 && self.rng.permille(self.faults.rx_loss) {
                self.stats.rx_lost += 1;
                self.trace(|| format!("link {li} dir {d}: frame of {} bytes lost", frame.len()));
                reset |= self.glue.reset_on_rx_loss;
                continue;
            }
            if self.cfg.trace {
                let (me, them) = self.links[li].ends(side);
                let st = self.slot(me, them).peer.state().name();
                eprintln!("  {me} <- {them}: {} in {st}", describe(frame));
            }
            let (_, r) = self.with_peer(li, side, false, |s, io, _| {
                let _ = s.peer.receive(frame, &mut s.q, io);
            });
            if r {
                self.stats.gap_resets += 1;
            }
            reset |= r;
        }
        self.scratch = buf;
        if let Some(e) = bad {
            self.failure = Some(format!("framing error on link {li} dir {d}: {e}"));
        }
        if reset && self.links[li].dead.is_none() {
            self.reset_link(li);
        }
    }

    fn reset_link(&mut self, li: usize) {
        if !self.links[li].up {
            return;
        }
        self.trace(|| format!("reset link {}-{}", self.links[li].a, self.links[li].b));
        let l = &mut self.links[li];
        l.up = false;
        l.dir[0].lose_connection();
        l.dir[1].lose_connection();
        self.stats.resets += 1;
    }

    fn partition(&mut self, li: usize, ms: u64) {
        self.reset_link(li);
        let l = &mut self.links[li];
        l.partition_until = Some(l.now + ms);
        l.partitioned = true;
        // A short partition does not explain a close that timed out.
        l.delayed |= self.cfg.long_partitions;
        self.stats.partitions += 1;
        let (a, b) = (l.a, l.b);
        self.trace(|| format!("partition {a}-{b} for {ms} ms"));
    }

    fn reconnect(&mut self, li: usize) {
        self.trace(|| format!("connect link {}-{}", self.links[li].a, self.links[li].b));
        self.links[li].up = true;
        for side in 0..2 {
            // `resend_unacked`: copies of the unacked messages that already
            // left the queue, in front of it.
            if self.glue.drop_stale_copies {
                self.links[li].dir[side].drop_unsent_copies();
            }
            self.resent.clear();
            self.with_peer(li, side, false, |s, io, _| {
                io.connecting = true;
                s.peer.connected(&s.q, io);
            });
            let resent = std::mem::take(&mut self.resent);
            self.links[li].dir[side].push_front_all(&resent);
            self.resent = resent;
        }
        for side in 0..2 {
            self.send_status_if_needed(li, side);
        }
    }

    fn send_status_if_needed(&mut self, li: usize, side: usize) {
        let l = &self.links[li];
        if !matches!(l.phase, Phase::Joined | Phase::Leaving) {
            return;
        }
        let (me, them) = l.ends(side);
        if self.side_needs_status(me, them) {
            let f = rcom_frame(me, RCOM_STATUS);
            self.links[li].dir[side].push(Kind::Plain, &f);
        }
    }

    fn status_retry(&mut self, li: usize) {
        for side in 0..2 {
            self.send_status_if_needed(li, side);
        }
    }

    fn pick_extra(&mut self) -> usize {
        if !self.faults.big {
            return self.rng.range(0, 48) as usize;
        }
        match self.rng.below(100) {
            0..=74 => self.rng.range(0, 48) as usize,
            75..=89 => self.rng.range(49, 1000) as usize,
            90..=96 => self.rng.range(1001, EXTRA_MAX as u64) as usize,
            _ => EXTRA_MAX,
        }
    }

    fn app_send(&mut self, li: usize) {
        let burst = if self.rng.permille(50) {
            self.rng.range(1, 400)
        } else {
            self.rng.range(1, 8)
        };
        for _ in 0..burst {
            if !self.app_send_one(li) {
                break;
            }
        }
    }

    fn app_send_one(&mut self, li: usize) -> bool {
        let n = self.n;
        let full = |side: usize| {
            let (me, them) = self.links[li].ends(side);
            let s = self.slot(me, them);
            self.flows[me * n + them].quota > 0 && !s.peer.reliable().can_send()
        };
        let dead = self.links[li].dead;
        let usable = |side: usize| dead.is_none_or(|d| d.side != side);
        let refused = (usable(0) && full(0)) || (usable(1) && full(1));
        let ok0 = usable(0) && self.side_can_send(li, 0);
        let ok1 = usable(1) && self.side_can_send(li, 1);
        if refused {
            self.stats.backpressure += 1;
        }
        let side = match (ok0, ok1) {
            (true, true) => self.rng.below(2) as usize,
            (true, false) => 0,
            (false, true) => 1,
            (false, false) => return false,
        };
        let (me, them) = self.links[li].ends(side);
        let fi = me * n + them;
        let id = self.flows[fi].session.len() as u64;
        let extra = self.pick_extra();
        let session = self.links[li].session;
        let trace = self.cfg.trace;
        let (r, _) = self.with_peer(li, side, false, |s, io, _| {
            s.peer.send(&mut s.q, io, |io, seq| {
                let f = app_frame(me, them, seq, id, extra);
                if trace {
                    eprintln!("  {me} -> {them}: send id {id} seq {seq} len {}", f.len());
                }
                let page = io.out.push(Kind::Seq, &f);
                Entry {
                    bytes: Rc::from(f),
                    id: Some(id),
                    page,
                }
            })
        });
        match r {
            Ok(_) => {
                let f = &mut self.flows[fi];
                f.session.push(session);
                f.quota -= 1;
                true
            }
            Err(PeerSendError::Backpressure(_)) => {
                self.stats.backpressure += 1;
                false
            }
            Err(e) => {
                self.failure = Some(format!("node {me} could not send to node {them}: {e:?}"));
                false
            }
        }
    }

    /// Lockspace membership and close events.
    fn control(&mut self, li: usize) {
        let phase = self.links[li].phase;
        match phase {
            Phase::Idle | Phase::IdleConnected => self.join(li),
            Phase::Joined => self.leave(li),
            Phase::Leaving => self.leave_step(li),
            Phase::Draining => self.finish_drain(li),
        }
    }

    fn join(&mut self, li: usize) {
        let n = self.n;
        let first = self.rng.below(2) as usize;
        for side in [first, 1 - first] {
            self.with_peer(li, side, false, |s, io, _| s.peer.add_member(&mut s.q, io));
        }
        let later_quota = self.rng.range(1, 3);
        let l = &mut self.links[li];
        l.sessions_left -= 1;
        l.session += 1;
        l.phase = Phase::Joined;
        l.forced = false;
        l.delayed = self.cfg.long_partitions && l.partition_until.is_some();
        l.partitioned = l.partition_until.is_some();
        self.stats.sessions += 1;
        let (a, b) = (l.a, l.b);
        // Each session gets a share of the flow's budget.
        for fi in [a * n + b, b * n + a] {
            let f = &mut self.flows[fi];
            if f.quota == 0 {
                f.quota = later_quota;
            }
        }
        self.trace(|| format!("join {a}-{b}"));
    }

    fn leave(&mut self, li: usize) {
        let n = self.n;
        let last = self.links[li].sessions_left == 0;
        // The last session of a pair stays up now and then.
        if last && self.rng.permille(300) {
            let l = &mut self.links[li];
            let (a, b) = (l.a, l.b);
            l.phase = Phase::IdleConnected;
            self.flows[a * n + b].quota = 0;
            self.flows[b * n + a].quota = 0;
            return;
        }
        let c = self.rng.below(4);
        let slow = [
            self.rng.permille(self.faults.slow_remove),
            self.rng.permille(self.faults.slow_remove),
        ];
        let delays = [
            self.rng.range(500, SLOW_REMOVE_MAX_MS),
            self.rng.range(500, SLOW_REMOVE_MAX_MS),
        ];
        let l = &mut self.links[li];
        l.closer = match c {
            0 => [Closer::Pending, Closer::No],
            1 => [Closer::No, Closer::Pending],
            2 => [Closer::Pending, Closer::Pending],
            _ => [Closer::No, Closer::No],
        };
        l.remove_pending = [true, true];
        l.remove_at = [0; 2];
        let mut slowed = 0;
        for side in 0..2 {
            // The recovery that removes the leaving node from the other
            // node's lockspace can take a while.
            if slow[side] && l.closer[side] == Closer::No && l.closer[1 - side] != Closer::No {
                l.remove_at[side] = l.now + delays[side];
                l.delayed = true;
                slowed += 1;
            }
        }
        self.stats.slow_removes += slowed;
        l.phase = Phase::Leaving;
        let (a, b) = (l.a, l.b);
        // No more application messages in this session.
        self.flows[a * n + b].quota = 0;
        self.flows[b * n + a].quota = 0;
        self.trace(|| format!("leave {a}-{b} closers {c}"));
    }

    fn leave_step(&mut self, li: usize) {
        let mut choices: Vec<(usize, bool)> = Vec::new();
        let dead_side = self.links[li].dead.map(|d| d.side);
        for side in 0..2 {
            if dead_side == Some(side) {
                continue;
            }
            // A closing node removes its members itself, between the
            // version wait and the shutdown (release_lockspace()).
            if self.remove_ready(li, side) {
                choices.push((side, true));
            }
            if self.closer_ready(li, side) {
                choices.push((side, false));
            }
        }
        if choices.is_empty() {
            if dead_side.is_none() {
                self.end_leave(li);
            }
            return;
        }
        let (side, remove) = choices[self.rng.below(choices.len() as u64) as usize];
        if remove {
            self.links[li].remove_pending[side] = false;
            self.with_peer(li, side, false, |s, io, _| {
                s.peer.remove_member(&mut s.q, io)
            });
            return;
        }
        let state = self.links[li].closer[side];
        let now = self.links[li].now;
        let next = match state {
            Closer::Pending => Closer::VersionWait(now),
            Closer::VersionWait(start) => {
                let w = self.slot_side(li, side).peer.poll_version_wait(start, now);
                if w == Wait::TimedOut {
                    self.timeout(li, side, "version wait");
                    self.stats.version_timeouts += 1;
                }
                if self.links[li].remove_pending[side] {
                    self.links[li].remove_pending[side] = false;
                    self.with_peer(li, side, false, |s, io, _| {
                        s.peer.remove_member(&mut s.q, io)
                    });
                }
                let (w, _) = self.with_peer(li, side, false, |s, io, now| {
                    s.peer.shutdown(now, &mut s.q, io)
                });
                if self.cfg.brk == Some(Break::EarlyReset) {
                    self.with_peer(li, side, false, |s, io, _| s.peer.reset(&mut s.q, io));
                }
                match w {
                    Wait::Until(d) => Closer::Shutdown(d),
                    _ => Closer::Done,
                }
            }
            Closer::Shutdown(deadline) => {
                let (w, _) = self.with_peer(li, side, false, |s, _, now| s.peer.poll_shutdown(now));
                match w {
                    Wait::Until(_) => Closer::Shutdown(deadline),
                    Wait::TimedOut => {
                        self.stats.fin_timeouts += 1;
                        self.timeout(li, side, "shutdown");
                        Closer::TimedOut
                    }
                    Wait::Done => Closer::Done,
                }
            }
            other => other,
        };
        self.links[li].closer[side] = next;
    }

    /// A close of `side` timed out: allowed only after a fault.
    fn timeout(&mut self, li: usize, side: usize, what: &str) {
        let l = &mut self.links[li];
        l.forced = true;
        let (me, them) = l.ends(side);
        if !l.delayed && self.failure.is_none() {
            let st = (
                self.slot(me, them).peer.state().name(),
                self.slot(them, me).peer.state().name(),
            );
            self.failure = Some(format!(
                "{what} of node {me} towards node {them} timed out although no fault delayed the pair in this session (states {} / {})",
                st.0, st.1
            ));
        }
        self.trace(|| format!("{what} timeout {me} -> {them}"));
    }

    fn slot_side(&self, li: usize, side: usize) -> &Slot {
        let (me, them) = self.links[li].ends(side);
        self.slot(me, them)
    }

    fn end_leave(&mut self, li: usize) {
        let l = &mut self.links[li];
        if l.closer == [Closer::No; 2] {
            l.phase = Phase::IdleConnected;
        } else {
            l.phase = Phase::Draining;
        }
    }

    /// `dlm_lowcomms_shutdown()` and the reset at the end of
    /// `dlm_midcomms_shutdown()` for the nodes that closed.
    fn finish_drain(&mut self, li: usize) {
        let closers = self.links[li].closer;
        {
            let l = &mut self.links[li];
            l.up = false;
            l.dir[0].clear();
            l.dir[1].clear();
            l.phase = Phase::Idle;
            l.closer = [Closer::No; 2];
        }
        for side in 0..2 {
            if closers[side] != Closer::No {
                let forced = closers[side] == Closer::TimedOut;
                if forced {
                    // The peer's messages that this node never got are
                    // gone for good: it forgets the lifetime now.
                    let (me, them) = self.links[li].ends(side);
                    self.give_up_flow(them, me, false);
                }
                self.with_peer(li, side, forced, |s, io, _| s.peer.reset(&mut s.q, io));
            }
        }
        let l = &self.links[li];
        self.trace(|| format!("closed {}-{}", l.a, l.b));
    }

    /// Every message from `from` to `to` not delivered yet is given up: its
    /// receiver forgot the lifetime (forced reset) or one end crashed.
    fn give_up_flow(&mut self, from: usize, to: usize, crash: bool) {
        let f = &mut self.flows[from * self.n + to];
        let len = f.session.len() as u64;
        let mut k = 0;
        for id in f.next..len {
            if f.abandoned.insert(id) {
                k += 1;
            }
        }
        f.next = len;
        if crash {
            self.stats.crash_lost += k;
        } else {
            self.stats.abandoned += k;
        }
    }

    /// Node `x` crashes: it loses all state; its peers' connections die
    /// without them knowing yet.
    fn crash(&mut self, x: usize) {
        self.trace(|| format!("crash node {x}"));
        self.stats.crashes += 1;
        let detect = self.rng.range(1, CRASH_DETECT_MAX_MS);
        let mut count = 0;
        for y in 0..self.n {
            if y == x {
                continue;
            }
            let li = self.link_index(x, y);
            let l = &mut self.links[li];
            let xs = l.side_of(x);
            l.dead = Some(Dead {
                side: xs,
                removed: false,
                remove_at: l.now + detect + self.rng.range(0, 500),
            });
            l.delayed = true;
            // x's write queue and receive carry-over are gone; bytes it
            // sent may still reach y, bytes to it are lost.
            l.dir[xs].drop_queue();
            l.dir[1 - xs].clear_inflight();
            l.dir[1 - xs].carry.clear();
            l.partition_until = None;
            if !l.up {
                l.dir[xs].clear_inflight();
                l.dir[xs].carry.clear();
            }
            count += 1;
            self.touched.push(li);
        }
        self.down[x] = Some(count);
    }

    /// The survivor of a crash sees its connection fail.
    fn notice(&mut self, li: usize) {
        let l = &mut self.links[li];
        l.up = false;
        l.dir[0].lose_connection();
        l.dir[1].lose_connection();
        self.stats.resets += 1;
    }

    /// Recovery removes the crashed node from the survivor's lockspace,
    /// then its comm goes (`dlm_midcomms_close()`): waits end, the peer
    /// state and its unacked messages are dropped, the connection closed.
    fn remove_dead(&mut self, li: usize) {
        let Some(dead) = self.links[li].dead else {
            return;
        };
        let s = 1 - dead.side;
        let (y, x) = self.links[li].ends(s);
        self.trace(|| format!("node {y} removes crashed node {x}"));
        if self.links[li].closer[s] == Closer::TimedOut {
            // Its close towards the dead node timed out: the reset at the
            // end of `dlm_midcomms_shutdown()` comes first.
            self.with_peer(li, s, true, |sl, io, _| sl.peer.reset(&mut sl.q, io));
        }
        self.with_peer(li, s, false, |sl, io, _| {
            if sl.peer.fin().users() > 0 {
                sl.peer.remove_member(&mut sl.q, io);
            }
            sl.peer.close(io);
        });
        let now = self.links[li].now;
        let w = self.slots[y][x]
            .as_mut()
            .expect("slot")
            .peer
            .poll_shutdown(now);
        if w != Wait::Done && self.failure.is_none() {
            self.failure = Some(format!(
                "node {y}: a wait for removed node {x} did not end: {w:?}"
            ));
        }
        if self.cfg.brk != Some(Break::KeepCrashedPeer) {
            // The comm goes, and a new one comes with the node.
            self.slots[y][x] = Some(new_slot(x, self.cfg.seq_init));
        }
        self.give_up_flow(x, y, true);
        self.give_up_flow(y, x, true);
        let l = &mut self.links[li];
        l.up = false;
        l.dir[0].clear();
        l.dir[1].clear();
        l.phase = Phase::Idle;
        l.closer = [Closer::No; 2];
        l.remove_pending = [false; 2];
        l.dead = Some(Dead {
            removed: true,
            ..dead
        });
        let n = self.n;
        self.flows[x * n + y].quota = 0;
        self.flows[y * n + x].quota = 0;
        if let Some(k) = self.down[x].as_mut() {
            *k -= 1;
            if *k == 0 {
                for z in 0..n {
                    if z != x {
                        let lj = self.link_index(x, z);
                        self.touched.push(lj);
                    }
                }
            }
        }
    }

    /// Node `x` boots again: fresh protocol state for every peer.
    fn restart(&mut self, x: usize) {
        self.trace(|| format!("restart node {x}"));
        self.stats.restarts += 1;
        self.down[x] = None;
        for y in 0..self.n {
            if y == x {
                continue;
            }
            self.slots[x][y] = Some(new_slot(y, self.cfg.seq_init));
            let li = self.link_index(x, y);
            let more = self.rng.range(0, 2) as u32;
            let l = &mut self.links[li];
            l.dead = None;
            l.up = false;
            l.phase = Phase::Idle;
            l.sessions_left += more;
            l.forced = false;
            l.delayed = false;
            self.touched.push(li);
        }
    }

    fn check_bounds(&mut self, li: usize) -> Result<(), String> {
        let l = &self.links[li];
        let mut max_unacked = self.stats.max_unacked;
        let mut max_wq = self.stats.max_wq_bytes;
        for d in 0..2 {
            let bytes = l.dir[d].wq_bytes as u64;
            max_wq = max_wq.max(bytes);
            // A window of originals, a window of copies queued by the last
            // reconnect, each message in a page of its own at worst, a FIN,
            // and a few pages of control messages: bounded by the window,
            // not by the traffic.
            let bound = 2 * (MAX_UNACKED as u64 + 1) * MAX_FRAME as u64 + 8 * PAGE as u64;
            if bytes > bound {
                let mut kinds = [0usize; 3];
                for p in &l.dir[d].wq {
                    for f in &p.frames {
                        kinds[f.0 as usize] += 1;
                    }
                }
                let (x, y) = l.ends(d);
                return Err(format!(
                    "write queue {x}->{y} holds {bytes} bytes (bound {bound}), {kinds:?} seq/ack/plain messages"
                ));
            }
            // Originals not sent yet and one copy of each unacked message:
            // never more than two windows of sequenced messages.
            let seq = l.dir[d].wq_seq as u64;
            self.stats.max_wq_seq = self.stats.max_wq_seq.max(seq);
            if seq > 2 * (MAX_UNACKED as u64 + 1) {
                let (x, y) = l.ends(d);
                return Err(format!(
                    "write queue {x}->{y} holds {seq} sequenced messages, more than two windows"
                ));
            }
            if l.dir[d].carry.len() >= wire::MAX_MSG_LEN {
                return Err("receive carry-over reached 4096 bytes".into());
            }
        }
        for (x, y) in [(l.a, l.b), (l.b, l.a)] {
            let s = self.slot(x, y);
            let unacked = s.q.len() as u64;
            max_unacked = max_unacked.max(unacked);
            if unacked > MAX_UNACKED as u64 + 1 {
                return Err(format!("{unacked} unacked messages from {x} to {y}"));
            }
            if unacked != s.peer.reliable().unacked() as u64 {
                return Err(format!(
                    "unacked queue {x}->{y} holds {unacked} entries, the reliable state counts {}",
                    s.peer.reliable().unacked()
                ));
            }
        }
        self.stats.max_unacked = max_unacked;
        self.stats.max_wq_bytes = max_wq;
        Ok(())
    }

    fn describe_stuck(&self) -> String {
        let mut s = String::new();
        for l in &self.links {
            if l.phase != Phase::Idle || !l.quiet() {
                let _ = write!(
                    s,
                    "[{}-{} {:?} up {} {} {} {:?}] ",
                    l.a,
                    l.b,
                    l.phase,
                    l.up,
                    self.slot(l.a, l.b).peer.state().name(),
                    self.slot(l.b, l.a).peer.state().name(),
                    l.closer,
                );
                if s.len() > 600 {
                    break;
                }
            }
        }
        s
    }

    fn final_check(&mut self) -> Result<(), String> {
        let n = self.n;
        if let Some(x) = self.down.iter().position(|d| d.is_some()) {
            return Err(format!("node {x} never came back after its crash"));
        }
        for x in 0..n {
            for y in 0..n {
                if x == y {
                    continue;
                }
                let f = &self.flows[x * n + y];
                let sent = f.session.len() as u64;
                if let Some(id) = (f.next..sent).find(|i| !f.abandoned.contains(i)) {
                    let l = &self.links[self.link_index(x, y)];
                    let s = self.slot(x, y);
                    return Err(format!(
                        "message {} from node {} to node {} (session {}) never delivered and not given up; receiver expects id {}, sender seq_send {} una {}, receiver seq_next {}, states {} / {}, link phase {:?} up {}",
                        id,
                        x,
                        y,
                        f.session[id as usize],
                        f.next,
                        s.peer.reliable().seq_send(),
                        s.peer.reliable().seq_una(),
                        self.slot(y, x).peer.reliable().seq_next(),
                        s.peer.state().name(),
                        self.slot(y, x).peer.state().name(),
                        l.phase,
                        l.up
                    ));
                }
            }
        }
        self.stats.steps = self.step;
        Ok(())
    }
}

/// One line about a frame, for the trace.
fn describe(frame: &[u8]) -> String {
    let word =
        |at: usize| u32::from_le_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
    match Cmd::from_wire(frame[14]) {
        Some(Cmd::Opts) => match Cmd::from_wire(frame[wire::OPTS_LEN + 14]) {
            Some(Cmd::Fin) => format!("FIN seq {}", word(4)),
            Some(c) => format!("{c:?} seq {} ({} bytes)", word(4), frame.len()),
            None => "OPTS ?".into(),
        },
        Some(Cmd::Ack) => format!("ACK {}", word(4)),
        Some(Cmd::Rcom) => format!("RCOM type {}", word(16)),
        Some(c) => format!("{c:?}"),
        None => "?".into(),
    }
}

fn two_mut<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert_ne!(i, j);
    if i < j {
        let (lo, hi) = v.split_at_mut(j);
        (&mut lo[i], &mut hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(i);
        (&mut hi[0], &mut lo[j])
    }
}
