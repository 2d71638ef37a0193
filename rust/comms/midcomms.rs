// SPDX-License-Identifier: GPL-2.0

//! Protocol glue: drives the sans-IO [`Peer`] of `rust/proto` (version detection, DLM_OPTS
//! sequencing, cumulative acks, duplicates and gaps, the DLM_FIN close handshake) with the
//! node's write queue as its I/O, and implements the send API the lock manager uses
//! (`dlm_midcomms_get_mhandle()` and friends).
//!
//! Everything here runs under the node lock (`Node::tx`, a BH spinlock): received frames in the
//! `dlm_process` BH worker, sends in whatever context the lock manager calls from.  A delivery
//! to the lock manager is only recorded under the lock and made after it is dropped, because
//! `dlm_receive_buffer()` may send to the same node.

use core::sync::atomic::Ordering;
use kernel::{ffi::c_void, prelude::*, sync::Arc};

use crate::proto::reliable::UnackedQueue;

use crate::proto::{
    fin::{State, Wait},
    framer,
    peer::{Event, Peer, PeerIo, PeerSendError},
    seq::Seq,
    version::RecvError,
    wire::{self, Message, Version},
};

use super::{
    ffi::{self, our_nodeid},
    log::{jiffies, log_print, log_print_ratelimited, trace},
    lowcomms::{self, queue_swork, MAX_SOCKET_BUFSIZE},
    node::{io, Entry, MsgRef, Node, Reservation, Tx, UnackedList, WriteQueue},
    page::SendPage,
};

const HEADER_LEN: usize = 16;
const OPTS_LEN: usize = 24;
/// `DLM_MAX_APP_BUFSIZE`.
const MAX_APP_BUFSIZE: usize = MAX_SOCKET_BUFSIZE - OPTS_LEN;
/// Room one protocol step may need in the write queue: an ACK, another ACK and a FIN.
const STEP_ROOM: usize = 2 * HEADER_LEN + OPTS_LEN + HEADER_LEN;

/// Milliseconds on the jiffies clock, for the timeouts of the close state machine.
fn now_ms() -> u64 {
    let hz = kernel::time::msecs_to_jiffies(1000).max(1) as u64;
    (jiffies() as u64).wrapping_mul(1000) / hz
}

/// The [`PeerIo`] of one node: effects go to its write queue under the node lock; deliveries
/// and wake-ups are recorded for after the lock.
struct NodeIo<'a> {
    nodeid: i32,
    wq: &'a mut WriteQueue,
    /// Start of the frame being processed, to locate a delivered message in it.
    frame: *const u8,
    deliver: Option<(usize, usize, Option<Seq>)>,
    kick: bool,
    wake: bool,
    /// The peer skipped a sequence number: its connection must be reset.
    gap: bool,
}

impl<'a> NodeIo<'a> {
    fn new(nodeid: i32, wq: &'a mut WriteQueue) -> Self {
        Self {
            nodeid,
            wq,
            frame: core::ptr::null(),
            deliver: None,
            kick: false,
            wake: false,
            gap: false,
        }
    }

    /// Places a complete message built by `fill`; infallible after `ensure_room`.
    fn place(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> MsgRef {
        match self.wq.reserve(len) {
            Ok(r) => {
                // SAFETY: The reservation is ours until the commit below.
                fill(unsafe { r.page.bytes_mut(r.off, len) });
                if self.wq.commit(&r.page) {
                    self.kick = true;
                }
                MsgRef {
                    page: Some(r.page),
                    off: r.off,
                    len,
                }
            }
            Err(_) => {
                log_print_ratelimited!("no memory for a control message to node {}", self.nodeid);
                MsgRef {
                    page: None,
                    off: 0,
                    len,
                }
            }
        }
    }
}

impl PeerIo for NodeIo<'_> {
    type Entry = MsgRef;

    fn deliver(&mut self, msg: Message<'_>, seq: Option<Seq>) {
        let b = msg.bytes();
        let off = (b.as_ptr() as usize).wrapping_sub(self.frame as usize);
        self.deliver = Some((off, b.len(), seq));
    }

    fn send_ack(&mut self, ack: Seq) -> bool {
        let our = our_nodeid() as u32;
        self.place(HEADER_LEN, |b| {
            let _ = wire::encode_ack(b, our, ack.get());
        })
        .page
        .is_some()
    }

    fn send_fin(&mut self, seq: Seq) -> Option<MsgRef> {
        let our = our_nodeid() as u32;
        let m = self.place(OPTS_LEN + HEADER_LEN, |b| {
            let _ = wire::encode_fin(b, our, seq.get());
        });
        m.page.is_some().then_some(m)
    }

    fn resend(&mut self, _seq: Seq, _entry: &MsgRef) {
        // Retransmission is done by `resend_unacked` with its own `PeerIo`.
    }

    fn release(&mut self, _seq: Seq, _entry: MsgRef) {}

    fn wake(&mut self) {
        self.wake = true;
    }

    fn event(&mut self, e: Event) {
        if matches!(e, Event::Gap { .. }) {
            self.gap = true;
        }
        log_event(self.nodeid, e);
    }
}

fn log_event(nodeid: i32, e: Event) {
    match e {
        Event::Dropped(RecvError::Wire(w)) => log_print_ratelimited!(
            "invalid message from node {}: {}, will skip this message",
            nodeid,
            w
        ),
        Event::Dropped(RecvError::Version(v)) => log_print_ratelimited!(
            "version mismatch detected from node {}: {:?}, will skip this message",
            nodeid,
            v
        ),
        Event::VersionDetected(v) => {
            log_print!("version 0x{:08x} for node {} detected", v.to_wire(), nodeid)
        }
        Event::Duplicate { seq, expected } | Event::Gap { seq, expected } => {
            log_print_ratelimited!(
                "ignore dlm msg because seq mismatch, seq: {}, expected: {}, nodeid: {}",
                seq.get(),
                expected.get(),
                nodeid
            )
        }
        Event::AckInvalid { ack, seq_send } => log_print_ratelimited!(
            "ignore ack {} from node {}: we only sent up to {}",
            ack.get(),
            nodeid,
            seq_send.get()
        ),
        Event::StaleFin { .. } | Event::Reset => {}
        Event::DeliveredAfterFin => {
            kernel::pr_warn_once!("message from node {} after its FIN\n", nodeid)
        }
        Event::Unexpected(u) => log_print!("node {}: unexpected state: {:?}", nodeid, u),
        // Events added to the core later are logged generically.
        #[allow(unreachable_patterns)]
        other => log_print_ratelimited!("node {}: {:?}", nodeid, other),
    }
}

/// Runs `f` with the node's protocol state and a [`NodeIo`], then does what it asked for after
/// the lock: queue the send work, wake waiters, reset the connection after a sequence gap,
/// deliver a message (from `frame`).
fn with_peer<R>(
    node: &Arc<Node>,
    frame: &[u8],
    f: impl FnOnce(&mut Peer, &mut UnackedList, &mut NodeIo<'_>) -> R,
) -> Option<R> {
    let (r, deliver, wake, gap) = {
        let mut guard = node.tx.lock();
        let Tx { wq, peer, unacked } = &mut *guard;
        if wq.ensure_room(STEP_ROOM).is_err() {
            log_print_ratelimited!("no memory for the protocol of node {}", node.nodeid);
            return None;
        }
        let (r, deliver, kick, wake, gap) = {
            let mut nio = NodeIo::new(node.nodeid, wq);
            nio.frame = frame.as_ptr();
            let r = f(peer, unacked, &mut nio);
            (r, nio.deliver, nio.kick, nio.wake, nio.gap)
        };
        let v = peer.version().map_or(0, Version::to_wire);
        node.version.store(v, Ordering::Release);
        if kick {
            queue_swork(node);
        }
        (r, deliver, wake, gap)
    };
    if wake {
        node.wait.notify_all();
    }
    if gap {
        // A message of the peer was lost with a broken connection and it sends on regardless
        // (C peers retransmit only after a socket error): reset its connection, so that it
        // retransmits everything unacknowledged from the lost one on.
        lowcomms::reset_connection(node);
    }
    if let Some((off, len, seq)) = deliver {
        if let Some(msg) = frame.get(off..off + len) {
            if let Some(seq) = seq {
                trace::recv_inner(our_nodeid(), seq.get(), msg);
            }
            // SAFETY: `msg` is one whole, validated DLM_MSG or DLM_RCOM; `dlm_receive_buffer`
            // does not keep the pointer.
            unsafe { ffi::dlm_receive_buffer(msg.as_ptr().cast::<c_void>(), node.nodeid) };
        }
    }
    Some(r)
}

// ---- framing (dlm_io worker) ------------------------------------------------------------

/// Splits `buf` like C's `dlm_validate_incoming_buffer()`: returns the length of the leading
/// whole messages, and whether a header after them has an impossible length or version.  That
/// ends the stream: one rate-limited log line here, and the caller delivers the prefix and
/// closes the connection, so the peer reconnects and the reliable layer retransmits what was
/// not acknowledged (C drops the whole buffer and leaves the stream to stall).
pub(crate) fn frame(nodeid: i32, buf: &[u8]) -> (usize, bool) {
    let (complete, bad) = framer::complete_len(buf);
    if let Some(e) = bad {
        log_print_ratelimited!(
            "received invalid header from node {}: {}, will close the connection",
            nodeid,
            e
        );
    }
    (complete, bad.is_some())
}

// ---- receive (dlm_process BH worker) ----------------------------------------------------

/// Processes a buffer of whole messages from `node`, in order.  Nothing is delivered once the
/// node was removed (`dlm_midcomms_close()`): its messages are dropped, as C drops them.
pub(crate) fn process(node: &Arc<Node>, buf: &[u8]) {
    for frame in framer::frames(buf) {
        let Ok(frame) = frame else {
            break;
        };
        if node.io_test(io::CLOSED) {
            return;
        }
        with_peer(node, frame, |peer, unacked, nio| {
            let _ = peer.receive(frame, unacked, nio);
        });
    }
}

// ---- sending ----------------------------------------------------------------------------

/// What a send handle reserved.
pub(crate) struct Handle {
    node: Arc<Node>,
    page: Arc<SendPage>,
    off: usize,
    len: usize,
    sequenced: bool,
    seq: u32,
}

impl Handle {
    /// A plain (unsequenced) message of `len` bytes at reservation `r`.
    fn plain(node: Arc<Node>, r: Reservation, len: usize) -> Self {
        Handle {
            node,
            page: r.page,
            off: r.off,
            len,
            sequenced: false,
            seq: 0,
        }
    }

    /// Where the caller builds its message.
    pub(crate) fn payload(&self) -> *mut u8 {
        let skip = if self.sequenced { OPTS_LEN } else { 0 };
        self.page.ptr_at(self.off + skip)
    }

    /// Ends the reservation and queues transmission; `name`/`namelen` only go to the
    /// `dlm_send_message` tracepoint, as in C.
    pub(crate) fn commit(&self, name: *const c_void, namelen: i32) {
        if self.sequenced {
            // SAFETY: The reservation is still ours; fill in `o_nextcmd` from the inner header.
            let b = unsafe { self.page.bytes_mut(self.off, self.len) };
            let _ = wire::set_opts_nextcmd(b);
            trace::send_inner(self.node.nodeid, self.seq, &b[OPTS_LEN..], name, namelen);
        }
        let mut tx = self.node.tx.lock();
        if tx.wq.commit(&self.page) {
            queue_swork(&self.node);
        }
    }
}

/// Reserves `len` bytes for a plain (unsequenced) message; `cb(data)` runs under the node lock
/// at the moment the position is fixed.  `dlm_lowcomms_new_msg()`.
pub(crate) fn new_plain(
    node: Arc<Node>,
    len: usize,
    cb: Option<unsafe extern "C" fn(*mut c_void)>,
    data: *mut c_void,
) -> Result<KBox<Handle>> {
    let slot = KBox::<Handle>::new_uninit(GFP_ATOMIC)?;
    let r = {
        let mut tx = node.tx.lock();
        let r = tx.wq.reserve(len)?;
        if let Some(cb) = cb {
            // SAFETY: The caller's callback with the caller's data, as the C API defines.
            unsafe { cb(data) };
        }
        r
    };
    Ok(KBox::write(slot, Handle::plain(node, r, len)))
}

/// `dlm_midcomms_get_mhandle()`: a reservation for a message of `len` bytes to `node`,
/// sequenced and wrapped in DLM_OPTS for 3.2 peers, plain for 3.1 peers.
pub(crate) fn get_mhandle(node: Arc<Node>, len: usize) -> Option<KBox<Handle>> {
    if !(HEADER_LEN..=MAX_SOCKET_BUFSIZE).contains(&len) {
        return None;
    }
    let slot = KBox::<Handle>::new_uninit(GFP_ATOMIC).ok()?;
    let total = len + OPTS_LEN;
    let mut placed = None;
    let res = with_peer(&node, &[], |peer, unacked, nio| {
        if peer.version() == Some(Version::V3_2) && len > MAX_APP_BUFSIZE {
            return Err(PeerSendError::NotDetected);
        }
        if nio.wq.ensure_room(total).is_err() {
            return Err(PeerSendError::NotDetected);
        }
        let our = our_nodeid() as u32;
        peer.send(unacked, nio, |nio, seq| match nio.wq.reserve(total) {
            Ok(r) => {
                // SAFETY: The reservation is ours until commit.
                let b = unsafe { r.page.bytes_mut(r.off, OPTS_LEN) };
                let _ = wire::encode_opts_header(b, our, seq.get(), len);
                placed = Some((r.page.clone(), r.off, seq.get()));
                MsgRef {
                    page: Some(r.page),
                    off: r.off,
                    len: total,
                }
            }
            Err(_) => MsgRef {
                page: None,
                off: 0,
                len: total,
            },
        })
    })?;
    match res {
        Ok(_) => {
            let (page, off, seq) = placed?;
            Some(KBox::write(
                slot,
                Handle {
                    node,
                    page,
                    off,
                    len: total,
                    sequenced: true,
                    seq,
                },
            ))
        }
        Err(PeerSendError::Plain) => {
            let r = node.tx.lock().wq.reserve(len).ok()?;
            Some(KBox::write(slot, Handle::plain(node, r, len)))
        }
        Err(PeerSendError::NotDetected) => {
            kernel::pr_warn_once!("send to node {} before its version is known\n", node.nodeid);
            None
        }
        Err(e) => {
            log_print_ratelimited!("send to node {} refused: {:?}", node.nodeid, e);
            None
        }
    }
}

/// A [`PeerIo`] that only collects retransmissions, in front of the still-unsent queue.
struct ResendIo<'a> {
    nodeid: i32,
    queued: &'a WriteQueue,
    fresh: WriteQueue,
    failed: bool,
}

impl PeerIo for ResendIo<'_> {
    type Entry = MsgRef;

    fn deliver(&mut self, _msg: Message<'_>, _seq: Option<Seq>) {}
    fn send_ack(&mut self, _ack: Seq) -> bool {
        false
    }
    fn send_fin(&mut self, _seq: Seq) -> Option<MsgRef> {
        None
    }
    fn release(&mut self, _seq: Seq, _entry: MsgRef) {}

    fn resend(&mut self, seq: Seq, m: &MsgRef) {
        let Some(page) = m.page.as_ref() else {
            return;
        };
        if self.failed || self.queued.holds(page) {
            // Not on the wire yet: it goes out in place, after the copies.
            return;
        }
        match self.fresh.reserve(m.len) {
            Ok(r) => {
                // SAFETY: The fresh reservation is ours; the original is committed and immutable.
                let dst = unsafe { r.page.bytes_mut(r.off, m.len) };
                // SAFETY: As above.
                dst.copy_from_slice(unsafe { page.bytes(m.off, m.len) });
                self.fresh.commit(&r.page);
                log_print_ratelimited!(
                    "retransmit dlm msg, seq {}, nodeid {}",
                    seq.get(),
                    self.nodeid
                );
            }
            Err(_) => self.failed = true,
        }
    }
}

/// After a new sending socket was installed: puts copies of every unacknowledged message that
/// already went out (in sequence order) in front of the unsent queue, so the peer sees every
/// message from its next expected sequence number on.  False when an open reservation or an
/// allocation failure makes the caller retry shortly.
pub(crate) fn resend_unacked(node: &Arc<Node>) -> bool {
    let mut guard = node.tx.lock();
    let tx = &mut *guard;
    if tx.wq.open != 0 {
        return false;
    }
    let fresh = {
        let mut rio = ResendIo {
            nodeid: node.nodeid,
            queued: &tx.wq,
            fresh: WriteQueue {
                entries: KVec::new(),
                open: 0,
            },
            failed: false,
        };
        tx.peer.connected(&tx.unacked, &mut rio);
        if rio.failed {
            return false;
        }
        rio.fresh
    };
    if !fresh.entries.is_empty() {
        let mut entries: KVec<Entry> = KVec::new();
        if entries
            .reserve(fresh.entries.len() + tx.wq.entries.len(), GFP_ATOMIC)
            .is_err()
        {
            return false;
        }
        let mut old = tx.wq.entries.drain_all();
        // A partly sent head page (on a connection that is still up) must finish first.
        let mut head = None;
        if let Some(first) = old.next() {
            if first.dirty {
                let _ = entries.push_within_capacity(first);
            } else {
                head = Some(first);
            }
        }
        let mut fresh_entries = fresh.entries;
        for e in fresh_entries.drain_all() {
            let _ = entries.push_within_capacity(e);
        }
        if let Some(e) = head {
            let _ = entries.push_within_capacity(e);
        }
        for e in old {
            let _ = entries.push_within_capacity(e);
        }
        tx.wq.entries = entries;
    }
    node.io_test_and_clear(io::RESEND);
    true
}

/// The main connection to `node` ended: reconnect at once if the peer still owes us acks or
/// something waits to be sent.
pub(crate) fn connection_lost(node: &Arc<Node>) {
    let tx = node.tx.lock();
    if wants_connection(node, &tx) {
        queue_swork(node);
    }
}

/// Whether the send work should (re)connect to `node`: something to send or to retransmit,
/// or a lockspace asked for the connection.  Without it a peer that left (its comms closed,
/// the handshake done, nothing queued) would be dialled forever, once a second.
pub(crate) fn wants_connection(node: &Node, tx: &Tx) -> bool {
    tx.wq.has_unsent() || tx.unacked.len() != 0 || node.io_test(io::CONNECT)
}

// ---- membership and the close handshake (process context) -------------------------------

/// `dlm_midcomms_add_member()`.
pub(crate) fn add_member(node: &Arc<Node>) {
    with_peer(node, &[], |peer, unacked, nio| {
        peer.add_member(unacked, nio)
    });
}

/// `dlm_midcomms_remove_member()`.
pub(crate) fn remove_member(node: &Arc<Node>) {
    with_peer(node, &[], |peer, unacked, nio| {
        if peer.fin().users() > 0 {
            peer.remove_member(unacked, nio);
        }
        if peer.fin().users() == 0 {
            node.io_test_and_clear(io::CONNECT);
        }
    });
}

/// Sleeps (uninterruptibly, like C) until `poll` says done or timed out.  `poll` checks the
/// time itself; the sleep is cut into slices so that it does.
fn wait_poll(node: &Node, mut poll: impl FnMut(&mut Tx, u64) -> Wait) {
    loop {
        let done = node
            .wait
            .wait_timeout(&node.tx, kernel::time::msecs_to_jiffies(100), |tx| {
                !matches!(poll(tx, now_ms()), Wait::Until(_))
            });
        if done {
            return;
        }
    }
}

/// `dlm_midcomms_version_wait()`.
pub(crate) fn version_wait(c: &lowcomms::Comms) {
    for node in c.all_nodes().iter() {
        let started = now_ms();
        wait_poll(node, |tx, now| tx.peer.poll_version_wait(started, now));
    }
}

/// `dlm_midcomms_shutdown()`.
pub(crate) fn shutdown(c: kernel::sync::ArcBorrow<'_, lowcomms::Comms>) {
    let _g = c.close_lock.lock();
    let nodes = c.all_nodes();
    for node in nodes.iter() {
        let now = now_ms();
        with_peer(node, &[], |peer, unacked, nio| {
            peer.shutdown(now, unacked, nio)
        });
        wait_poll(node, |tx, now| tx.peer.poll_shutdown(now));
    }
    lowcomms::shutdown(c, &nodes);
    for node in nodes.iter() {
        reset(node);
    }
}

/// Full reset of the protocol state of `node`.
pub(crate) fn reset(node: &Arc<Node>) {
    with_peer(node, &[], |peer, unacked, nio| peer.reset(unacked, nio));
}

/// `dlm_midcomms_close()` protocol part: waiters leave.
pub(crate) fn close(node: &Arc<Node>) {
    with_peer(node, &[], |peer, _, nio| peer.close(nio));
}

/// Debugfs `send_queue_count`.
pub(crate) fn send_queue_cnt(node: &Node) -> i32 {
    node.tx.lock().unacked.len() as i32
}

/// Debugfs `flags`: C's bits (2 CLOSE, 4 STOP_TX, 8 STOP_RX).
pub(crate) fn flags(node: &Node) -> u32 {
    node.tx.lock().peer.fin().flags()
}

/// Debugfs `rawmsg`: sends `buf` as is.  Unlike C, an OPTS header with seq 0 is not given a
/// sequence number (the reliable layer offers no way to consume one without tracking it).
pub(crate) fn rawmsg_send(node: &Arc<Node>, buf: &[u8]) -> Result {
    if !(HEADER_LEN..=MAX_SOCKET_BUFSIZE).contains(&buf.len()) {
        return Err(EINVAL);
    }
    let mut tx = node.tx.lock();
    let r = tx.wq.reserve(buf.len())?;
    // SAFETY: The reservation is ours until the commit below.
    unsafe { r.page.bytes_mut(r.off, buf.len()) }.copy_from_slice(buf);
    if tx.wq.commit(&r.page) {
        queue_swork(node);
    }
    Ok(())
}

/// The state name for debugfs.
pub(crate) fn state_name(node: &Node) -> &'static CStr {
    match node.tx.lock().peer.state() {
        State::Closed => c"CLOSED",
        State::Established => c"ESTABLISHED",
        State::FinWait1 => c"FIN_WAIT1",
        State::FinWait2 => c"FIN_WAIT2",
        State::CloseWait => c"CLOSE_WAIT",
        State::LastAck => c"LAST_ACK",
        State::Closing => c"CLOSING",
    }
}
