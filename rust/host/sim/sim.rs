// SPDX-License-Identifier: GPL-2.0

//! Deterministic multi-node simulator for the sans-IO protocol core.
//!
//! N nodes (2 to 32), every pair of them talking.  One seeded scheduler
//! decides everything: which connection moves how many bytes, when a
//! connection is reset (losing the bytes in flight and the partly sent
//! head page of each write queue), when it reconnects, when a node joins
//! or leaves a lockspace with another (add/remove member, version wait,
//! active close with the DLM_FIN handshake, the 5 s timeouts in virtual
//! time).  Real frames go over the simulated wire: DLM_OPTS-wrapped
//! DLM_MSG with a small payload, stateless DLM_RCOM STATUS/STATUS_REPLY
//! for version detection, DLM_ACK, DLM_FIN, split into arbitrary pieces
//! and put back together by the framer.
//!
//! What the simulated glue does is what the kernel glue should do:
//!
//! * one write queue per peer, of pages of at most 4096 bytes; only the
//!   head page is sent, in pieces;
//! * on a connection reset: drop the bytes in flight, drop the head page if
//!   it is partly sent (C's dirty page rule), remove every sequenced
//!   message from the rest of the queue (they are all in the unacked queue
//!   and will be sent again);
//! * on every new connection: [`Peer::connected`] re-queues every unacked
//!   message in order;
//! * ACKs are coalesced: a new ACK overwrites an unsent ACK in the last
//!   page, since a later cumulative value says everything an earlier one
//!   did;
//! * a lockspace leave that included an active close ends with
//!   `dlm_lowcomms_shutdown()`: the connection drains, then is closed and
//!   both write queues are freed, then the closing nodes are reset.
//!
//! It checks, per ordered pair of nodes: every message is delivered at most
//! once and in order; a message is never released by an ACK before it was
//! delivered; when the network is quiet every message was delivered unless
//! a reset threw it away (which only a forced reset after a timeout or a
//! stuck close may do); memory stays bounded (unacked messages, write queue
//! bytes, framer carry-over); and the run finishes within a step budget (no
//! deadlock, no livelock).

#![allow(dead_code)]
#![allow(clippy::needless_range_loop)]

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::rc::Rc;

use dlm_proto::proto::fin::{State, Wait};
use dlm_proto::proto::framer::Framer;
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
    pub fins: u64,
    pub sessions: u64,
    pub timeouts: u64,
    pub stuck_resets: u64,
    pub abandoned: u64,
    pub backpressure: u64,
    pub max_unacked: u64,
    pub max_wq_bytes: u64,
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
        self.fins += o.fins;
        self.sessions += o.sessions;
        self.timeouts += o.timeouts;
        self.stuck_resets += o.stuck_resets;
        self.abandoned += o.abandoned;
        self.backpressure += o.backpressure;
        self.max_unacked = self.max_unacked.max(o.max_unacked);
        self.max_wq_bytes = self.max_wq_bytes.max(o.max_wq_bytes);
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

const PAGE: usize = 4096;
const LOCKSPACE: u32 = 0x5eed;
const RCOM_STATUS: u32 = 1;
const RCOM_STATUS_REPLY: u32 = 5;
/// Maximum unacked messages per peer in the simulation: the smallest the
/// core allows, so that back-pressure happens.
const MAX_UNACKED: u32 = MIN_MAX_UNACKED;
/// Largest application frame the simulator sends (OPTS + MSG + id + 48).
const MAX_FRAME: usize = wire::OPTS_LEN + wire::MESSAGE_MIN_LEN + 8 + 48;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Sequenced (DLM_OPTS): dropped from the write queue on reset, since
    /// the unacked queue has it.
    Seq,
    /// DLM_ACK: coalesced.
    Ack,
    /// Stateless DLM_RCOM.
    Plain,
}

#[derive(Debug)]
struct Page {
    bytes: Vec<u8>,
    /// (kind, start, len) of every message in the page.
    frames: Vec<(Kind, usize, usize)>,
    sent: usize,
}

/// One direction of a connection: the sender's write queue, the bytes on
/// the wire, and the receiver's framer.
#[derive(Debug)]
struct Dir {
    wq: VecDeque<Page>,
    wq_bytes: usize,
    /// Bytes on the wire: `inflight[inflight_head..]`.
    inflight: Vec<u8>,
    inflight_head: usize,
    framer: Framer,
}

impl Dir {
    fn new() -> Self {
        Dir {
            wq: VecDeque::new(),
            wq_bytes: 0,
            inflight: Vec::new(),
            inflight_head: 0,
            framer: Framer::new(),
        }
    }

    fn push(&mut self, kind: Kind, frame: &[u8]) {
        let need_new = match self.wq.back() {
            Some(p) => p.bytes.len() + frame.len() > PAGE,
            None => true,
        };
        if need_new {
            self.wq.push_back(Page {
                bytes: Vec::with_capacity(PAGE),
                frames: Vec::new(),
                sent: 0,
            });
        }
        if let Some(p) = self.wq.back_mut() {
            p.frames.push((kind, p.bytes.len(), frame.len()));
            p.bytes.extend_from_slice(frame);
        }
        self.wq_bytes += frame.len();
    }

    fn push_ack(&mut self, frame: &[u8]) {
        if let Some(p) = self.wq.back_mut() {
            if let Some(&(Kind::Ack, start, len)) = p.frames.last() {
                if start >= p.sent && len == frame.len() {
                    p.bytes[start..start + len].copy_from_slice(frame);
                    return;
                }
            }
        }
        self.push(Kind::Ack, frame);
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

    /// Connection reset: bytes in flight are lost, the partly sent head
    /// page is dropped, sequenced messages leave the queue.
    fn reset(&mut self) {
        self.clear_inflight();
        self.framer.reset();
        if self.wq.front().is_some_and(|p| p.sent > 0) {
            self.wq.pop_front();
        }
        let old = std::mem::take(&mut self.wq);
        self.wq_bytes = 0;
        for p in old {
            for &(k, s, l) in &p.frames {
                if k != Kind::Seq {
                    let frame = p.bytes[s..s + l].to_vec();
                    self.push(k, &frame);
                }
            }
        }
    }

    /// Node reset: the sequenced messages still queued belong to a
    /// lifetime that just ended.  A partly sent head page must finish,
    /// so only the pages behind it are cleaned.
    fn purge_seq(&mut self) {
        let head = match self.wq.front() {
            Some(p) if p.sent > 0 => self.wq.pop_front(),
            _ => None,
        };
        let old = std::mem::take(&mut self.wq);
        self.wq_bytes = 0;
        if let Some(h) = head {
            self.wq_bytes = h.bytes.len();
            self.wq.push_back(h);
        }
        for p in old {
            for &(k, s, l) in &p.frames {
                if k != Kind::Seq {
                    let frame = p.bytes[s..s + l].to_vec();
                    self.push(k, &frame);
                }
            }
        }
    }

    fn clear(&mut self) {
        self.clear_inflight();
        self.framer.reset();
        self.wq.clear();
        self.wq_bytes = 0;
    }
}

#[derive(Clone, Debug)]
struct Entry {
    bytes: Rc<[u8]>,
    /// App message id, `None` for a FIN.
    id: Option<u64>,
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
    /// In the active close.
    Shutdown,
    /// Finished (done or timed out).
    Done,
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
    /// Ids skipped over at delivery (allowed only if abandoned).
    skipped: Vec<u64>,
    /// Ids thrown away by a reset of the sender before delivery.
    abandoned: Vec<u64>,
    /// Messages left to send in the current session.
    quota: u64,
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
    sessions_left: u32,
    session: u32,
    /// Virtual milliseconds, advanced by each action on this link.
    now: u64,
    /// A forced reset (timeout, stuck close) happened in this session.
    forced: bool,
}

impl Link {
    fn quiet(&self) -> bool {
        self.dir[0].idle() && self.dir[1].idle()
    }
}

struct Sim {
    cfg: Config,
    rng: Rng,
    n: usize,
    /// slots[x][y]: node x's state for peer y.
    slots: Vec<Vec<Option<Slot>>>,
    links: Vec<Link>,
    /// link index for (x, y), x < y.
    link_of: Vec<usize>,
    /// flows[x * n + y]: messages from x to y.
    flows: Vec<Flow>,
    stats: Stats,
    step: u64,
    failure: Option<String>,
    /// Reused buffers for the frames of one received piece.
    scratch: Vec<u8>,
    spans: Vec<(usize, usize)>,
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
    resetting: bool,
    trace: bool,
}

fn app_frame(from: usize, to: usize, seq: Seq, id: u64, extra: usize) -> Vec<u8> {
    let len = wire::MESSAGE_MIN_LEN + 8 + extra;
    let mut inner = vec![0u8; len];
    wire::encode_message_header(&mut inner, Cmd::Msg, LOCKSPACE, from as u32 + 1, len)
        .expect("app message header");
    inner[16..20].copy_from_slice(&1u32.to_le_bytes()); // m_type REQUEST
    inner[20..24].copy_from_slice(&(to as u32 + 1).to_le_bytes());
    inner[88..96].copy_from_slice(&id.to_le_bytes());
    for (i, b) in inner[96..].iter_mut().enumerate() {
        *b = (id as u8).wrapping_add(i as u8);
    }
    let mut out = vec![0u8; wire::OPTS_LEN + len];
    wire::encode_opts(&mut out, from as u32 + 1, seq.get(), &inner).expect("opts");
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
                if b.len() < 96 {
                    *self.failure = Some(format!("short app message from {}", self.them));
                    return;
                }
                let mut idb = [0u8; 8];
                idb.copy_from_slice(&b[88..96]);
                let id = u64::from_le_bytes(idb);
                let f = &mut *self.inflow;
                if self.trace {
                    eprintln!(
                        "  {} <- {}: deliver id {} seq {:?}",
                        self.me, self.them, id, seq
                    );
                }
                if id < f.next {
                    *self.failure = Some(format!(
                        "node {} got message {} from node {} again or out of order (expected {}), seq {:?}",
                        self.me, id, self.them, f.next, seq
                    ));
                    return;
                }
                if id as usize >= f.session.len() {
                    *self.failure = Some(format!(
                        "node {} got message {} from node {} that was never sent",
                        self.me, id, self.them
                    ));
                    return;
                }
                for skipped in f.next..id {
                    f.skipped.push(skipped);
                }
                f.next = id + 1;
                self.stats.messages += 1;
            }
        }
    }

    fn send_ack(&mut self, ack: Seq) -> bool {
        let mut f = [0u8; wire::ACK_LEN];
        wire::encode_ack(&mut f, self.me as u32 + 1, ack.get()).expect("ack");
        if self.trace {
            eprintln!("  {} -> {}: ack {}", self.me, self.them, ack);
        }
        self.out.push_ack(&f);
        true
    }

    fn send_fin(&mut self, seq: Seq) -> Option<Entry> {
        let mut f = [0u8; wire::OPTS_FIN_LEN];
        wire::encode_fin(&mut f, self.me as u32 + 1, seq.get()).expect("fin");
        if self.trace {
            eprintln!("  {} -> {}: fin seq {}", self.me, self.them, seq);
        }
        self.stats.fins += 1;
        self.out.push(Kind::Seq, &f);
        Some(Entry {
            bytes: Rc::from(&f[..]),
            id: None,
        })
    }

    fn resend(&mut self, _seq: Seq, entry: &Entry) {
        self.stats.retransmits += 1;
        self.out.push(Kind::Seq, &entry.bytes);
    }

    fn release(&mut self, seq: Seq, entry: Entry) {
        let Some(id) = entry.id else { return };
        let f = &mut *self.outflow;
        let delivered = id < f.next && !f.skipped.contains(&id);
        if delivered {
            return;
        }
        if self.resetting {
            f.abandoned.push(id);
            self.stats.abandoned += 1;
        } else {
            *self.failure = Some(format!(
                "node {} released message {} (seq {}) to node {} on an ACK, but it was never delivered (receiver expects id {})",
                self.me, id, seq, self.them, f.next
            ));
        }
    }

    fn event(&mut self, ev: Event) {
        if self.trace {
            eprintln!("  {} <- {}: {:?}", self.me, self.them, ev);
        }
        match ev {
            Event::Reset => {
                self.resetting = true;
                self.out.purge_seq();
            }
            Event::Duplicate { .. } => self.stats.duplicates += 1,
            Event::Gap { .. } => self.stats.gaps += 1,
            Event::Dropped(e) => {
                *self.failure = Some(format!(
                    "node {} dropped a frame from node {}: {}",
                    self.me, self.them, e
                ))
            }
            Event::Unexpected(dlm_proto::proto::fin::Unexpected::StuckIn(_)) => {
                self.stats.stuck_resets += 1
            }
            _ => {}
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

impl Sim {
    fn new(cfg: Config) -> Self {
        let n = cfg.nodes.clamp(2, 32);
        let mut rng = Rng::new(cfg.seed);
        let mut slots = Vec::with_capacity(n);
        for x in 0..n {
            let mut row = Vec::with_capacity(n);
            for y in 0..n {
                row.push((x != y).then(|| Slot {
                    peer: Peer::with_initial_seq(y as u32 + 1, MAX_UNACKED, Seq(cfg.seq_init)),
                    q: VecQueue::default(),
                }));
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
                    sessions_left: if n <= 8 {
                        rng.range(1, 3) as u32
                    } else {
                        rng.range(1, 2) as u32
                    },
                    session: 0,
                    now: 0,
                    forced: false,
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
        Sim {
            cfg,
            rng,
            n,
            slots,
            links,
            link_of,
            flows,
            stats: Stats::default(),
            step: 0,
            failure: None,
            scratch: Vec::new(),
            spans: Vec::new(),
        }
    }

    /// Runs `f` with node `me`'s slot for `them` and its glue.
    fn with_peer<R>(
        &mut self,
        li: usize,
        side: usize,
        f: impl FnOnce(&mut Slot, &mut Io<'_>, u64) -> R,
    ) -> R {
        let link = &mut self.links[li];
        let (me, them) = if side == 0 {
            (link.a, link.b)
        } else {
            (link.b, link.a)
        };
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
            resetting: false,
            trace: self.cfg.trace,
        };
        f(slot, &mut io, now)
    }

    fn trace(&self, s: impl FnOnce() -> String) {
        if self.cfg.trace {
            eprintln!("[{}] {}", self.step, s());
        }
    }

    fn run(&mut self) -> Result<(), String> {
        let limit = 2_000_000u64;
        // Links are independent state machines (every per-pair state
        // lives in its link), so only the link an action touched can
        // change its set of possible actions.  `busy` holds the links that
        // have any; each step picks one of them, then one of its actions.
        let nl = self.links.len();
        let mut busy: Vec<usize> = Vec::with_capacity(nl);
        let mut pos: Vec<usize> = vec![usize::MAX; nl];
        let mut acts: Vec<u8> = Vec::with_capacity(8);
        for li in 0..nl {
            acts.clear();
            self.link_actions(li, &mut acts);
            if !acts.is_empty() {
                pos[li] = busy.len();
                busy.push(li);
            }
        }
        loop {
            if let Some(f) = self.failure.take() {
                return Err(f);
            }
            if busy.is_empty() {
                // Nothing can move: let the timers of waiting links fire.
                if !self.jump_time() {
                    break;
                }
                for li in 0..nl {
                    acts.clear();
                    self.link_actions(li, &mut acts);
                    if !acts.is_empty() && pos[li] == usize::MAX {
                        pos[li] = busy.len();
                        busy.push(li);
                    }
                }
                continue;
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
            if let Some(&kind) = acts.get(self.rng.below(acts.len().max(1) as u64) as usize) {
                self.links[li].now += 1;
                match kind {
                    0 => self.transmit(li, 0),
                    1 => self.transmit(li, 1),
                    2 => self.receive(li, 0),
                    3 => self.receive(li, 1),
                    4 => self.reconnect(li),
                    5 => self.app_send(li),
                    6 => self.control(li),
                    7 => self.status_retry(li),
                    _ => {}
                }
                // Random connection resets, on links that carry bytes.
                if kind <= 3 && self.rng.permille(10) {
                    self.reset_link(li);
                }
                self.check_bounds(li)?;
            }
            if !self.has_actions(li) {
                // Swap-remove li from busy.
                let p = pos[li];
                let last = busy.pop().expect("busy");
                if last != li {
                    busy[p] = last;
                    pos[last] = p;
                }
                pos[li] = usize::MAX;
            }
        }
        self.final_check()
    }

    /// `link_actions` is not empty, cheaper.
    fn has_actions(&self, li: usize) -> bool {
        let l = &self.links[li];
        if l.up {
            if !l.dir[0].wq.is_empty()
                || !l.dir[1].wq.is_empty()
                || l.dir[0].inflight_len() > 0
                || l.dir[1].inflight_len() > 0
            {
                return true;
            }
        } else if self.wants_connection(li) {
            return true;
        }
        (l.phase == Phase::Joined && self.can_app_send(li))
            || self.has_control(li)
            || (l.up && l.quiet() && self.needs_status(li))
    }

    fn link_actions(&self, li: usize, actions: &mut Vec<u8>) {
        let l = &self.links[li];
        if l.up {
            for d in 0..2 {
                if !l.dir[d].wq.is_empty() {
                    actions.push(d as u8);
                }
                if l.dir[d].inflight_len() > 0 {
                    actions.push(2 + d as u8);
                }
            }
        } else if self.wants_connection(li) {
            actions.push(4);
        }
        if l.phase == Phase::Joined && self.can_app_send(li) {
            actions.push(5);
        }
        if self.has_control(li) {
            actions.push(6);
        }
        if l.up && l.quiet() && self.needs_status(li) {
            actions.push(7);
        }
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

    fn can_app_send(&self, li: usize) -> bool {
        let l = &self.links[li];
        let n = self.n;
        (self.flows[l.a * n + l.b].quota > 0 && {
            let s = self.slot(l.a, l.b);
            s.peer.can_send(&s.q)
        }) || (self.flows[l.b * n + l.a].quota > 0 && {
            let s = self.slot(l.b, l.a);
            s.peer.can_send(&s.q)
        })
    }

    fn has_control(&self, li: usize) -> bool {
        let l = &self.links[li];
        match l.phase {
            Phase::Idle | Phase::IdleConnected => l.sessions_left > 0,
            Phase::Joined => !self.quota_left(li) || self.rng_free_leave(li),
            Phase::Leaving => {
                l.remove_pending.iter().any(|&r| r)
                    || l.closer.iter().any(|c| {
                        matches!(
                            c,
                            Closer::Pending | Closer::VersionWait(_) | Closer::Shutdown
                        )
                    })
                    || l.closer
                        .iter()
                        .all(|c| matches!(c, Closer::No | Closer::Done))
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
        let dir = &mut self.links[li].dir[d];
        let Some(p) = dir.wq.front_mut() else { return };
        let n = chunk.min(p.bytes.len() - p.sent);
        if dir.inflight_head > 0
            && (dir.inflight_head == dir.inflight.len() || dir.inflight_head > 1 << 16)
        {
            dir.inflight.drain(..dir.inflight_head);
            dir.inflight_head = 0;
        }
        dir.inflight.extend_from_slice(&p.bytes[p.sent..p.sent + n]);
        p.sent += n;
        if p.sent == p.bytes.len() {
            let len = p.bytes.len();
            dir.wq.pop_front();
            dir.wq_bytes -= len;
        }
        self.stats.bytes += n as u64;
    }

    fn receive(&mut self, li: usize, d: usize) {
        let max = if self.rng.permille(300) { 40 } else { 9000 };
        let chunk = self.rng.range(1, max) as usize;
        // Direction d goes to side 1 - d.
        let side = 1 - d;
        let mut buf = std::mem::take(&mut self.scratch);
        let mut spans = std::mem::take(&mut self.spans);
        buf.clear();
        spans.clear();
        let r = {
            let dir = &mut self.links[li].dir[d];
            let n = chunk.min(dir.inflight_len());
            let start = dir.inflight_head;
            dir.inflight_head += n;
            let piece = &dir.inflight[start..start + n];
            let r = dir.framer.push(piece, |f| {
                spans.push((buf.len(), f.len()));
                buf.extend_from_slice(f);
            });
            if dir.inflight_head == dir.inflight.len() {
                dir.clear_inflight();
            }
            r
        };
        for &(at, len) in &spans {
            let frame = &buf[at..at + len];
            self.with_peer(li, side, |s, io, _| {
                let _ = s.peer.receive(frame, &mut s.q, io);
            });
        }
        self.scratch = buf;
        self.spans = spans;
        if let Err(e) = r {
            self.failure = Some(format!("framing error on link {li}: {e}"));
        }
    }

    fn reset_link(&mut self, li: usize) {
        if !self.links[li].up {
            return;
        }
        self.trace(|| format!("reset link {}-{}", self.links[li].a, self.links[li].b));
        let l = &mut self.links[li];
        l.up = false;
        l.dir[0].reset();
        l.dir[1].reset();
        self.stats.resets += 1;
        if l.phase == Phase::Draining {
            // lowcomms shutdown saw the error: close now.
        }
    }

    fn reconnect(&mut self, li: usize) {
        self.trace(|| format!("connect link {}-{}", self.links[li].a, self.links[li].b));
        self.links[li].up = true;
        for side in 0..2 {
            // Whatever sequenced messages were queued while disconnected
            // are all in the unacked queue: send them once, in order.
            self.links[li].dir[side].purge_seq();
            self.with_peer(li, side, |s, io, _| {
                s.peer.connected(&s.q, io);
            });
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
        let (me, them) = if side == 0 { (l.a, l.b) } else { (l.b, l.a) };
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
        let ok = |side: usize| {
            let l = &self.links[li];
            let (me, them) = if side == 0 { (l.a, l.b) } else { (l.b, l.a) };
            let s = self.slot(me, them);
            self.flows[me * n + them].quota > 0 && s.peer.can_send(&s.q)
        };
        let full = |side: usize| {
            let l = &self.links[li];
            let (me, them) = if side == 0 { (l.a, l.b) } else { (l.b, l.a) };
            let s = self.slot(me, them);
            self.flows[me * n + them].quota > 0 && !s.peer.reliable().can_send()
        };
        let refused = full(0) || full(1);
        let (ok0, ok1) = (ok(0), ok(1));
        if refused {
            self.stats.backpressure += 1;
        }
        let side = match (ok0, ok1) {
            (true, true) => self.rng.below(2) as usize,
            (true, false) => 0,
            (false, true) => 1,
            (false, false) => return false,
        };
        let (me, them) = {
            let l = &self.links[li];
            if side == 0 {
                (l.a, l.b)
            } else {
                (l.b, l.a)
            }
        };
        let fi = me * n + them;
        if self.flows[fi].quota == 0 {
            return false;
        }
        let id = self.flows[fi].session.len() as u64;
        let extra = self.rng.range(0, 48) as usize;
        let session = self.links[li].session;
        let trace = self.cfg.trace;
        let r = self.with_peer(li, side, |s, io, _| {
            s.peer.send(&mut s.q, io, |io, seq| {
                let f = app_frame(me, them, seq, id, extra);
                if trace {
                    eprintln!("  {me} -> {them}: send id {id} seq {seq}");
                }
                io.out.push(Kind::Seq, &f);
                Entry {
                    bytes: Rc::from(f),
                    id: Some(id),
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
            self.with_peer(li, side, |s, io, _| s.peer.add_member(&mut s.q, io));
        }
        let later_quota = self.rng.range(1, 3);
        let l = &mut self.links[li];
        l.sessions_left -= 1;
        l.session += 1;
        l.phase = Phase::Joined;
        l.forced = false;
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
        let l = &mut self.links[li];
        l.closer = match c {
            0 => [Closer::Pending, Closer::No],
            1 => [Closer::No, Closer::Pending],
            2 => [Closer::Pending, Closer::Pending],
            _ => [Closer::No, Closer::No],
        };
        l.remove_pending = [true, true];
        l.phase = Phase::Leaving;
        let (a, b) = (l.a, l.b);
        // No more application messages in this session.
        self.flows[a * n + b].quota = 0;
        self.flows[b * n + a].quota = 0;
        self.trace(|| format!("leave {a}-{b} closers {c}"));
    }

    fn leave_step(&mut self, li: usize) {
        let mut choices: Vec<(usize, bool)> = Vec::new();
        {
            let l = &self.links[li];
            for side in 0..2 {
                // A closing node removes its members itself, between the
                // version wait and the shutdown (release_lockspace()).
                if l.remove_pending[side] && l.closer[side] == Closer::No {
                    choices.push((side, true));
                }
                if matches!(
                    l.closer[side],
                    Closer::Pending | Closer::VersionWait(_) | Closer::Shutdown
                ) {
                    choices.push((side, false));
                }
            }
        }
        if choices.is_empty() {
            self.end_leave(li);
            return;
        }
        let (side, remove) = choices[self.rng.below(choices.len() as u64) as usize];
        if remove {
            self.links[li].remove_pending[side] = false;
            self.with_peer(li, side, |s, io, _| s.peer.remove_member(&mut s.q, io));
            return;
        }
        let state = self.links[li].closer[side];
        let now = self.links[li].now;
        let next = match state {
            Closer::Pending => Closer::VersionWait(now),
            Closer::VersionWait(start) => {
                match self.slot_side(li, side).peer.poll_version_wait(start, now) {
                    Wait::Until(_) => Closer::VersionWait(start),
                    w => {
                        if w == Wait::TimedOut {
                            self.trace(|| format!("version wait timeout link {li} side {side}"));
                            self.stats.timeouts += 1;
                            self.links[li].forced = true;
                        }
                        if self.links[li].remove_pending[side] {
                            self.links[li].remove_pending[side] = false;
                            self.with_peer(li, side, |s, io, _| s.peer.remove_member(&mut s.q, io));
                        }
                        match self
                            .with_peer(li, side, |s, io, now| s.peer.shutdown(now, &mut s.q, io))
                        {
                            Wait::Until(_) => Closer::Shutdown,
                            _ => Closer::Done,
                        }
                    }
                }
            }
            Closer::Shutdown => {
                match self.with_peer(li, side, |s, _, now| s.peer.poll_shutdown(now)) {
                    Wait::Until(_) => Closer::Shutdown,
                    Wait::TimedOut => {
                        self.stats.timeouts += 1;
                        self.trace(|| {
                            let l = &self.links[li];
                            format!(
                                "shutdown timeout {}-{} side {side}: states {} / {}",
                                l.a,
                                l.b,
                                self.slot(l.a, l.b).peer.state().name(),
                                self.slot(l.b, l.a).peer.state().name()
                            )
                        });
                        self.links[li].forced = true;
                        Closer::Done
                    }
                    Wait::Done => Closer::Done,
                }
            }
            other => other,
        };
        self.links[li].closer[side] = next;
    }

    fn slot_side(&self, li: usize, side: usize) -> &Slot {
        let l = &self.links[li];
        if side == 0 {
            self.slot(l.a, l.b)
        } else {
            self.slot(l.b, l.a)
        }
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
                self.with_peer(li, side, |s, io, _| s.peer.reset(&mut s.q, io));
            }
        }
        let l = &self.links[li];
        self.trace(|| format!("closed {}-{}", l.a, l.b));
    }

    /// With nothing else to do, advance the clocks of links that wait.
    fn jump_time(&mut self) -> bool {
        let mut moved = false;
        for l in &mut self.links {
            if l.phase == Phase::Leaving
                && l.closer
                    .iter()
                    .any(|c| matches!(c, Closer::VersionWait(_) | Closer::Shutdown))
            {
                l.now += fin_timeout();
                moved = true;
            }
        }
        moved
    }

    fn check_bounds(&mut self, li: usize) -> Result<(), String> {
        let l = &self.links[li];
        let mut max_unacked = self.stats.max_unacked;
        let mut max_wq = self.stats.max_wq_bytes;
        for d in 0..2 {
            let bytes = l.dir[d].wq_bytes as u64;
            max_wq = max_wq.max(bytes);
            // The copies queued by the last reconnect (which an ACK may
            // release before they are sent), the current window of
            // unacked messages, a FIN, a few control messages and a partly
            // sent page: all bounded by the window, not by the traffic.
            let bound = 2 * (MAX_UNACKED as u64 + 1) * MAX_FRAME as u64 + 4 * PAGE as u64;
            if bytes > bound {
                let mut kinds = [0usize; 3];
                for p in &l.dir[d].wq {
                    for f in &p.frames {
                        kinds[f.0 as usize] += 1;
                    }
                }
                return Err(format!(
                    "write queue {}->{} holds {} bytes (bound {}), {kinds:?} seq/ack/plain messages",
                    if d == 0 { l.a } else { l.b },
                    if d == 0 { l.b } else { l.a },
                    bytes,
                    bound
                ));
            }
            if l.dir[d].framer.pending() >= wire::MAX_MSG_LEN {
                return Err("framer carry-over reached 4096 bytes".into());
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
                    "[{}-{} {:?} up {} {} {}] ",
                    l.a,
                    l.b,
                    l.phase,
                    l.up,
                    self.slot(l.a, l.b).peer.state().name(),
                    self.slot(l.b, l.a).peer.state().name()
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
        for x in 0..n {
            for y in 0..n {
                if x == y {
                    continue;
                }
                let f = &self.flows[x * n + y];
                let sent = f.session.len() as u64;
                let mut missing: Vec<u64> = f.skipped.clone();
                missing.extend(f.next..sent);
                for id in missing {
                    if !f.abandoned.contains(&id) {
                        let l = &self.links[self.link_of[x.min(y) * n + x.max(y)]];
                        let s = self.slot(x, y);
                        return Err(format!(
                            "message {} from node {} to node {} (session {}) never delivered and not abandoned; receiver expects id {}, sender seq_send {} una {}, receiver seq_next {}, states {} / {}, link phase {:?} up {}",
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
        }
        self.stats.steps = self.step;
        let _ = State::Closed;
        Ok(())
    }
}

fn fin_timeout() -> u64 {
    dlm_proto::proto::fin::SHUTDOWN_TIMEOUT_MS
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
