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
//!
//! Allocation: nothing is used up for a message (an ACK ahead of it, a sequence number, a
//! reservation) before everything it needs is allocated ([`WriteQueue::make_room`],
//! [`UnackedList::make_room`]).  Under the lock that is `GFP_ATOMIC`; a protocol message (ACK,
//! FIN) that cannot be placed then is owed by the [`Peer`] and placed by the send work, which
//! allocates in process context first ([`Node::top_up`]).  A send the lock manager asks for
//! fails (NULL, as C's does on allocation failure) with nothing used up.

use core::sync::atomic::Ordering;
use kernel::{ffi::c_void, prelude::*, sync::Arc, time::msecs_to_jiffies};

use crate::proto::{
    fin::{State, Wait},
    framer,
    peer::{Event, Peer, PeerIo, PeerSendError},
    reliable::{SendError, UnackedQueue},
    seq::Seq,
    version::RecvError,
    wire::{self, Message, Version},
};

use super::{
    ffi::{self, our_nodeid},
    log::{log_print, log_print_ratelimited, monotonic_ms, trace},
    lowcomms::{self, queue_gwork, queue_swork, MAX_SOCKET_BUFSIZE},
    node::{io, MsgRef, Node, Reservation, Tx, UnackedList, WriteQueue},
    page::SendPage,
};

const HEADER_LEN: usize = 16;
const OPTS_LEN: usize = 24;
/// `DLM_MAX_APP_BUFSIZE`.
const MAX_APP_BUFSIZE: usize = MAX_SOCKET_BUFSIZE - OPTS_LEN;
/// A DLM_OPTS-wrapped DLM_FIN.
const FIN_LEN: usize = OPTS_LEN + HEADER_LEN;
/// How long a sequence gap from a peer may last without the expected message arriving before
/// its connection is reset (so that the peer retransmits).  A C sender queues its
/// retransmissions behind the originals it had not sent yet, so a gap that a reconnect opens
/// closes by itself within a moment; only a gap that persists means lost messages that the
/// peer will not send again on its own.
const GAP_RESET_MS: u64 = 2000;
/// Retransmitted messages copied per hold of the node lock.
const RESEND_BATCH: usize = 16;

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
    /// The peer skipped a sequence number.
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

    /// Places a complete message built by `fill`, if room for it can be made now.
    fn place(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Option<MsgRef> {
        self.wq.make_room(&[len], GFP_ATOMIC).ok()?;
        let r = self.wq.reserve(len)?;
        // SAFETY: The reservation is ours until the commit below.
        fill(unsafe { r.page.bytes_mut(r.off, len) });
        if self.wq.commit(&r.page) {
            self.kick = true;
        }
        Some(MsgRef {
            page: r.page,
            off: r.off,
            len,
        })
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
        .is_some()
    }

    fn send_fin(&mut self, seq: Seq) -> Option<MsgRef> {
        let our = our_nodeid() as u32;
        self.place(FIN_LEN, |b| {
            let _ = wire::encode_fin(b, our, seq.get());
        })
    }

    fn resend(&mut self, _seq: Seq, _entry: &MsgRef) {
        // Retransmission is done by `resend_unacked`, outside the protocol core.
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
        // C's line for both, but separately limited: the duplicates that follow every
        // reconnect must not hide a gap, which is rarer and matters more.
        Event::Duplicate { seq, expected } => log_print_ratelimited!(
            "ignore dlm msg because seq mismatch, seq: {}, expected: {}, nodeid: {}",
            seq.get(),
            expected.get(),
            nodeid
        ),
        Event::Gap { seq, expected } => log_print_ratelimited!(
            "ignore dlm msg because seq mismatch, seq: {}, expected: {}, nodeid: {}",
            seq.get(),
            expected.get(),
            nodeid
        ),
        Event::AckInvalid { ack, seq_send } => log_print_ratelimited!(
            "ignore ack {} from node {}: we only sent up to {}",
            ack.get(),
            nodeid,
            seq_send.get()
        ),
        // Retransmissions of a lifetime that the peer's FIN ended (a C peer sends its FIN again
        // after every reconnect): acked so that the peer can finish, as C's duplicates are.
        Event::Stale { seq } => log_print_ratelimited!(
            "ignore dlm msg seq {} from node {}: left over from the connection its FIN ended",
            seq.get(),
            nodeid
        ),
        // Leftovers of a lifetime that our reset ended, while we hold none with the peer.
        Event::Leftover { seq } => log_print_ratelimited!(
            "ignore dlm msg seq {} from node {}: left over from a closed connection",
            seq.get(),
            nodeid
        ),
        // The peer's answers to our last FIN, or ACKs of a lifetime that our reset ended.
        Event::StaleFin { .. } | Event::LeftoverAck { .. } => {}
        Event::Reset => {}
        Event::Restarted { state, unacked } => log_print!(
            "reset node {} because it started a new connection (state {}, {} unacked dropped)",
            nodeid,
            state.name(),
            unacked
        ),
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
/// the lock: queue the send work (also to place what the protocol owes), wake waiters, watch a
/// sequence gap, deliver a message (from `frame`).
fn with_peer<R>(
    node: &Arc<Node>,
    frame: &[u8],
    f: impl FnOnce(&mut Peer, &mut UnackedList, &mut NodeIo<'_>) -> R,
) -> R {
    let (r, deliver, wake) = {
        let mut guard = node.tx.lock();
        let Tx {
            wq,
            peer,
            unacked,
            gap,
            ..
        } = &mut *guard;
        // A FIN the step may queue needs an unacked entry: make room for one now if there is
        // none (rarely an allocation); without it the protocol owes the FIN.
        let _ = unacked.make_room(GFP_ATOMIC);
        let (r, deliver, kick, wake, gapped) = {
            let mut nio = NodeIo::new(node.nodeid, wq);
            nio.frame = frame.as_ptr();
            let r = f(peer, unacked, &mut nio);
            (r, nio.deliver, nio.kick, nio.wake, nio.gap)
        };
        let v = peer.version().map_or(0, Version::to_wire);
        node.version.store(v, Ordering::Release);
        if gapped {
            watch_gap(node, gap, peer.reliable().seq_next());
        }
        if kick || peer.owes() {
            queue_swork(node);
        }
        (r, deliver, wake)
    };
    if wake {
        node.wait.notify_all();
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
    r
}

// ---- sequence gaps ----------------------------------------------------------------------

/// A frame after a sequence gap arrived (node lock held): start watching the gap unless it is
/// watched already and nothing arrived since.
fn watch_gap(node: &Arc<Node>, gap: &mut Option<(u64, Seq)>, expected: Seq) {
    match *gap {
        Some((_, s)) if s == expected => {}
        _ => {
            *gap = Some((monotonic_ms(), expected));
            queue_gwork(node, msecs_to_jiffies(GAP_RESET_MS as u32));
        }
    }
}

/// The gap check (process context): resets the peer's connection if the message we waited
/// for when the gap was seen has still not arrived after [`GAP_RESET_MS`]; checks again later
/// if a newer gap is being watched.
pub(crate) fn check_gap(node: &Arc<Node>) {
    let reset = {
        let mut tx = node.tx.lock();
        let expected = tx.peer.reliable().seq_next();
        match tx.gap {
            None => false,
            Some((_, s)) if s != expected => {
                // The peer filled the gap (its retransmissions arrived).
                tx.gap = None;
                false
            }
            Some((t, _)) => {
                let age = monotonic_ms().saturating_sub(t);
                if age < GAP_RESET_MS {
                    queue_gwork(node, msecs_to_jiffies((GAP_RESET_MS - age) as u32));
                    false
                } else {
                    tx.gap = None;
                    true
                }
            }
        }
    };
    if reset {
        // A message of the peer was lost with a broken connection and it sends on regardless
        // (C peers retransmit only after a socket error): reset its connection, so that it
        // retransmits everything unacknowledged from the lost one on.
        lowcomms::reset_connection(node);
    }
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

/// Processes a buffer of whole messages from `node`, in order, inside a read-side section of
/// the node table (`Comms::deliver`).  Nothing is delivered once the node is being removed
/// (`dlm_midcomms_close()` sets `CLOSED`, then waits for that section): its messages are
/// dropped, as C drops them.
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
        let sendable = tx.wq.commit(&self.page);
        // The last open reservation lets a retransmission that waits for it go on.
        if sendable || (tx.wq.open == 0 && self.node.io_test(io::RESEND)) {
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
        tx.wq.make_room(&[len], GFP_ATOMIC)?;
        let r = tx.wq.reserve(len).ok_or(ENOMEM)?;
        if let Some(cb) = cb {
            // SAFETY: The caller's callback with the caller's data, as the C API defines.
            unsafe { cb(data) };
        }
        r
    };
    Ok(KBox::write(slot, Handle::plain(node, r, len)))
}

/// Why a send to a node was refused.
enum Refused {
    /// Before the peer's version is known (C warns once).
    NotDetected,
    /// No memory; nothing was used up (C returns NULL too).
    NoMemory,
    /// Longer than a 3.2 peer takes (`DLM_MAX_APP_BUFSIZE`).
    TooLong,
    /// The protocol refused it (after our FIN).
    Protocol(PeerSendError),
}

/// `dlm_midcomms_get_mhandle()`: a reservation for a message of `len` bytes to `node`,
/// sequenced and wrapped in DLM_OPTS for 3.2 peers, plain for 3.1 peers.
pub(crate) fn get_mhandle(node: Arc<Node>, len: usize) -> Option<KBox<Handle>> {
    if !(HEADER_LEN..=MAX_SOCKET_BUFSIZE).contains(&len) {
        return None;
    }
    match reserve_message(&node, len) {
        Ok(h) => Some(h),
        Err(Refused::NotDetected) => {
            kernel::pr_warn_once!("send to node {} before its version is known\n", node.nodeid);
            None
        }
        Err(Refused::NoMemory) => {
            log_print_ratelimited!("no memory for a message to node {}", node.nodeid);
            None
        }
        Err(Refused::TooLong) => {
            log_print_ratelimited!(
                "message of {} bytes to node {} is longer than {}",
                len,
                node.nodeid,
                MAX_APP_BUFSIZE
            );
            None
        }
        Err(Refused::Protocol(e)) => {
            log_print_ratelimited!("send to node {} refused: {:?}", node.nodeid, e);
            None
        }
    }
}

fn reserve_message(node: &Arc<Node>, len: usize) -> core::result::Result<KBox<Handle>, Refused> {
    let slot = KBox::<Handle>::new_uninit(GFP_ATOMIC).map_err(|_| Refused::NoMemory)?;
    let total = len + OPTS_LEN;
    let mut guard = node.tx.lock();
    let Tx {
        wq, peer, unacked, ..
    } = &mut *guard;
    match peer.version() {
        None => return Err(Refused::NotDetected),
        Some(Version::V3_1) => {
            wq.make_room(&[len], GFP_ATOMIC)
                .map_err(|_| Refused::NoMemory)?;
            let r = wq.reserve(len).ok_or(Refused::NoMemory)?;
            drop(guard);
            return Ok(KBox::write(slot, Handle::plain(node.clone(), r, len)));
        }
        Some(Version::V3_2) => {}
    }
    if len > MAX_APP_BUFSIZE {
        return Err(Refused::TooLong);
    }
    // Everything the message needs, before anything is used up: its unacked entry (without
    // which the protocol refuses it), the ACK that goes ahead of it and the message itself as
    // one unit.
    if unacked.make_room(GFP_ATOMIC).is_err() {
        return Err(Refused::NoMemory);
    }
    peer.check_send(unacked).map_err(Refused::Protocol)?;
    let lens: &[usize] = if peer.ack_due_before_send() {
        &[HEADER_LEN, total]
    } else {
        &[total]
    };
    wq.make_room(lens, GFP_ATOMIC)
        .map_err(|_| Refused::NoMemory)?;
    let our = our_nodeid() as u32;
    let mut placed = None;
    let mut nio = NodeIo::new(node.nodeid, wq);
    let res = peer.try_send(unacked, &mut nio, |nio, seq| {
        let r = nio.wq.reserve(total)?;
        // SAFETY: The reservation is ours until commit.
        let b = unsafe { r.page.bytes_mut(r.off, OPTS_LEN) };
        let _ = wire::encode_opts_header(b, our, seq.get(), len);
        placed = Some((r.page.clone(), r.off, seq.get()));
        Some(MsgRef {
            page: r.page,
            off: r.off,
            len: total,
        })
    });
    if nio.kick || peer.owes() {
        queue_swork(node);
    }
    drop(guard);
    match (res, placed) {
        (Ok(_), Some((page, off, seq))) => Ok(KBox::write(
            slot,
            Handle {
                node: node.clone(),
                page,
                off,
                len: total,
                sequenced: true,
                seq,
            },
        )),
        // The unacked queue refusing its entry is a failed allocation too.
        (Err(PeerSendError::NoRoom), _)
        | (Err(PeerSendError::Backpressure(SendError::QueueFull)), _)
        | (Ok(_), None) => Err(Refused::NoMemory),
        (Err(PeerSendError::NotDetected), _) => Err(Refused::NotDetected),
        (Err(e), _) => Err(Refused::Protocol(e)),
    }
}

/// After a new sending socket was installed (send work, process context, holding the node's
/// main socket): puts copies of every unacknowledged message that already left the write
/// queue, in sequence order, ahead of the still-unsent queue, so that the peer sees every
/// message from its next expected number on.  Messages still in queued pages go out in place.
///
/// Works in batches: the node lock is held only to pick the next few messages; the copies are
/// made outside it with sleeping allocations.  Waits (returns false) while a reservation is
/// open, because a message in a page that left the queue may still be being written; the
/// commit that closes the last one queues the send work again.
pub(crate) fn resend_unacked(node: &Arc<Node>) -> Result<bool> {
    let starting = {
        let tx = node.tx.lock();
        if tx.wq.open != 0 {
            // Cleared under the lock: the commit of the last reservation queues us again.
            node.io_test_and_clear(io::SEND_PENDING);
            return Ok(false);
        }
        if tx.peer.version() != Some(Version::V3_2) {
            node.io_test_and_clear(io::RESEND);
            return Ok(true);
        }
        tx.resend_next.is_none()
    };
    // A new connection gets our current ACK first, ahead of the copies: the last one may have
    // been lost with the old connection, and behind a window of copies it would take as long
    // to get through as they do (Peer::connected, which the host users call, does the same).
    let mut ack_first = starting;
    loop {
        let mut batch: [Option<(Seq, MsgRef)>; RESEND_BATCH] = [const { None }; RESEND_BATCH];
        let n = {
            let tx = node.tx.lock();
            pick_resend(&tx, &mut batch)
        };
        let last = batch.iter().flatten().last().map(|(s, _)| *s);
        if n == 0 && !ack_first {
            let mut tx = node.tx.lock();
            tx.resend_next = None;
            node.io_test_and_clear(io::RESEND);
            return Ok(true);
        }
        let mut copies = CopyPages::new();
        if ack_first {
            copies.add_ack_slot()?;
        }
        for (seq, m) in batch.iter().flatten() {
            copies.add(m)?;
            log_print_ratelimited!(
                "retransmit dlm msg, seq {}, nodeid {}",
                seq.get(),
                node.nodeid
            );
        }
        let mut tx = node.tx.lock();
        let ack = tx.peer.reliable().ack_value();
        copies.queue(&mut tx.wq, ack)?;
        ack_first = false;
        match last {
            Some(s) => tx.resend_next = Some(s.next()),
            None => {
                tx.resend_next = None;
                node.io_test_and_clear(io::RESEND);
                return Ok(true);
            }
        }
    }
}

/// Up to `RESEND_BATCH` unacknowledged messages from `tx.resend_next` on whose page left the
/// write queue (sequence order is wire order, so they come first).
fn pick_resend(tx: &Tx, batch: &mut [Option<(Seq, MsgRef)>]) -> usize {
    let Some(front) = tx.unacked.front_seq() else {
        return 0;
    };
    let from = tx.resend_next.unwrap_or(front);
    // Messages acknowledged since the last batch are gone from the queue.
    let skip = if from.after(front) {
        from.distance_from(front) as usize
    } else {
        0
    };
    let mut n = 0;
    for i in skip..tx.unacked.len() {
        let Some((seq, m)) = tx.unacked.get(i) else {
            break;
        };
        if m.page.is_queued() || n == batch.len() {
            break;
        }
        batch[n] = Some((
            *seq,
            MsgRef {
                page: m.page.clone(),
                off: m.off,
                len: m.len,
            },
        ));
        n += 1;
    }
    n
}

/// Pages of retransmitted copies being filled outside the node lock.
struct CopyPages {
    pages: [Option<(Arc<SendPage>, usize)>; RESEND_BATCH],
    n: usize,
    /// The first page starts with room for an ACK, filled in when the pages are queued.
    ack_slot: bool,
}

impl CopyPages {
    fn new() -> Self {
        Self {
            pages: [const { None }; RESEND_BATCH],
            n: 0,
            ack_slot: false,
        }
    }

    /// Leaves room for an ACK ahead of the copies (call it first).
    fn add_ack_slot(&mut self) -> Result {
        if self.n != 0 {
            return Err(EINVAL);
        }
        // Process context (the send work, in a NOFS scope): a sleeping allocation.
        self.pages[0] = Some((SendPage::new(GFP_KERNEL)?, HEADER_LEN));
        self.n = 1;
        self.ack_slot = true;
        Ok(())
    }

    /// Appends a copy of `m` (committed, so nobody writes it any more).
    fn add(&mut self, m: &MsgRef) -> Result {
        let fits = matches!(
            self.n.checked_sub(1).and_then(|i| self.pages[i].as_ref()),
            Some((_, end)) if end + m.len <= kernel::page::PAGE_SIZE
        );
        if !fits {
            // Process context (the send work, in a NOFS scope): a sleeping allocation.
            let page = SendPage::new(GFP_KERNEL)?;
            *self.pages.get_mut(self.n).ok_or(EINVAL)? = Some((page, 0));
            self.n += 1;
        }
        let (page, end) = self.pages[self.n - 1].as_mut().ok_or(EINVAL)?;
        // SAFETY: `page` is our fresh page, not shared yet; the original bytes are committed
        // and immutable while the `Arc` in `m` keeps them.
        let dst = unsafe { page.bytes_mut(*end, m.len) };
        // SAFETY: `m` is a committed message (no reservation was open when the retransmission
        // started, and later ones go to queued pages): nobody writes its bytes any more.
        dst.copy_from_slice(unsafe { m.page.bytes(m.off, m.len) });
        *end += m.len;
        Ok(())
    }

    /// Queues the filled pages for sending (node lock held), with `ack` in the ACK slot if
    /// there is one: all of them or, without memory for the queue, none.
    fn queue(self, wq: &mut WriteQueue, ack: Seq) -> Result {
        wq.make_resend_room(self.n, GFP_ATOMIC)?;
        if let (true, Some((page, _))) = (self.ack_slot, self.pages[0].as_ref()) {
            // SAFETY: `page` is our fresh page, not shared until it is queued below, and its
            // first `HEADER_LEN` bytes were left for this ACK.
            let b = unsafe { page.bytes_mut(0, HEADER_LEN) };
            let _ = wire::encode_ack(b, our_nodeid() as u32, ack.get());
        }
        for (page, len) in self.pages.into_iter().flatten() {
            if wq.push_resend(page, len).is_some() {
                return Err(ENOMEM);
            }
        }
        Ok(())
    }
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
    tx.wq.has_unsent() || tx.unacked.len() != 0 || tx.peer.owes() || node.io_test(io::CONNECT)
}

/// Places what the protocol owes `node` (an ACK or the FIN it could not place under memory
/// pressure); send work, process context.  False if it still owes something.
pub(crate) fn flush_owed(node: &Arc<Node>) -> bool {
    node.top_up(GFP_KERNEL);
    with_peer(node, &[], |peer, unacked, nio| {
        peer.flush_owed(unacked, nio);
        !peer.owes()
    })
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
    // Our FIN may be due: allocate what it needs now, with a sleeping allocation.
    node.top_up(GFP_KERNEL);
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
            .wait_timeout(&node.tx, msecs_to_jiffies(100), |tx| {
                !matches!(poll(tx, monotonic_ms()), Wait::Until(_))
            });
        if done {
            return;
        }
    }
}

/// `dlm_midcomms_version_wait()`.
pub(crate) fn version_wait(c: &lowcomms::Comms) {
    for node in c.all_nodes().iter() {
        let started = monotonic_ms();
        wait_poll(node, |tx, now| tx.peer.poll_version_wait(started, now));
    }
}

/// `dlm_midcomms_shutdown()`.
pub(crate) fn shutdown(c: kernel::sync::ArcBorrow<'_, lowcomms::Comms>) {
    let _g = c.close_lock.lock();
    let nodes = c.all_nodes();
    for node in nodes.iter() {
        // Our FIN may be due: allocate what it needs now, with a sleeping allocation.
        node.top_up(GFP_KERNEL);
        let now = monotonic_ms();
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
    tx.wq.make_room(&[buf.len()], GFP_ATOMIC)?;
    let r = tx.wq.reserve(buf.len()).ok_or(ENOMEM)?;
    // SAFETY: The reservation is ours until the commit below.
    unsafe { r.page.bytes_mut(r.off, buf.len()) }.copy_from_slice(buf);
    if tx.wq.commit(&r.page) {
        queue_swork(node);
    }
    Ok(())
}

/// The state name for debugfs (C's names).
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
