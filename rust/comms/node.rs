// SPDX-License-Identifier: GPL-2.0

//! Per-node state: one [`Node`] per configured peer nodeid holds both what the C layer keeps in
//! `struct connection` (lowcomms: sockets, write queue, I/O work) and in `struct midcomms_node`
//! (version, sequence numbers, unacknowledged messages, DLM_FIN state).  Both are created by the
//! same configfs `addr` write and removed by the same `dlm_midcomms_close()`, so one object with
//! one lifetime replaces the two SRCU-protected hash tables of C: the table holds an `Arc`,
//! every user (a send reservation, a queued work item, a socket callback, a received buffer)
//! holds its own `Arc`, and removal from the table plus `IO_STOP` ends all new activity.

use core::sync::atomic::{AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use kernel::{
    alloc::Flags,
    ffi::c_void,
    new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    sync::{Arc, Mutex},
    workqueue::{
        impl_has_delayed_work, impl_has_work, new_delayed_work, new_work, DelayedWork, Work,
    }, //
};

use crate::proto::{
    peer::Peer,
    reliable::UnackedQueue,
    seq::Seq, //
};

use super::{
    page::SendPage,
    queue::ChunkQueue,
    sock::{SockAddr, Socket},
    sync::{new_spinlock_bh, new_wait_queue, NofsScope, SpinLockBh, WaitQueue},
};

/// At most this many addresses per node (`DLM_MAX_ADDR_COUNT`).
pub(crate) const MAX_ADDR_COUNT: usize = 8;

/// Bound on unacknowledged messages per peer, passed to the protocol core: the largest it
/// takes.  The lock manager cannot take back-pressure (a refused send loses a grant or a
/// bast), so, like C, we never refuse a send for the number of messages a peer has not
/// acknowledged yet; 2^30 messages of at least 40 bytes each are beyond any memory.  Their
/// memory is the pages the messages were sent from (no copy), as in C.
const MAX_UNACKED: u32 = crate::proto::reliable::MAX_MAX_UNACKED;

/// I/O flag bits in [`Node::io`] (the C `CF_*` flags).
pub(crate) mod io {
    /// The receive work is queued or running.
    pub(crate) const RECV_PENDING: usize = 1 << 0;
    /// `data_ready` fired since the receive work last looked.
    pub(crate) const RECV_INTR: usize = 1 << 1;
    /// The send work is queued or running.
    pub(crate) const SEND_PENDING: usize = 1 << 2;
    /// No new I/O work may be queued (close or shutdown in progress); set with the node lock
    /// held, so that a commit sees it or its work is cancelled.
    pub(crate) const IO_STOP: usize = 1 << 3;
    /// Waiting for `write_space` on the main socket.
    pub(crate) const APP_LIMITED: usize = 1 << 4;
    /// A new sending socket was installed: retransmit before sending anything else.
    pub(crate) const RESEND: usize = 1 << 5;
    /// A lockspace added the node (`dlm_lowcomms_connect_node()`): connect even with nothing
    /// to send, as C does; dropped once connected or when no lockspace uses the node.
    pub(crate) const CONNECT: usize = 1 << 6;
    /// A sequence gap from the peer persisted: the receive work resets its connections.
    pub(crate) const RESET: usize = 1 << 7;
    /// The node was removed (`dlm_midcomms_close()`): what it sent is not delivered any more.
    pub(crate) const CLOSED: usize = 1 << 8;
}

/// At most this many pages kept in advance per node (a message after a due ACK may need two).
const SPARE_PAGES: usize = 2;

/// One page of the write queue.
pub(crate) struct Entry {
    pub(crate) page: Arc<SendPage>,
    /// First byte not yet sent.
    pub(crate) offset: usize,
    /// Bytes ready to send from `offset` (set when no reservation is open).
    pub(crate) len: usize,
    /// Fill pointer.
    pub(crate) end: usize,
    /// Open reservations.
    pub(crate) users: u32,
    /// Some bytes were already sent.
    pub(crate) dirty: bool,
}

impl Entry {
    fn new(page: Arc<SendPage>) -> Self {
        Entry {
            page,
            offset: 0,
            len: 0,
            end: 0,
            users: 0,
            dirty: false,
        }
    }
}

/// Where an unacknowledged reliable message lives: its bytes stay in the page (the `Arc` keeps
/// the page) until the ack, so it can be copied again after a reconnect.  Every unacknowledged
/// message has its bytes: a sequence number is only used up once they are placed.
pub(crate) struct MsgRef {
    pub(crate) page: Arc<SendPage>,
    pub(crate) off: usize,
    pub(crate) len: usize,
}

/// The unacknowledged messages of one peer, oldest first, for the reliable layer of `proto`
/// (which owns the sequence logic).  A chunked queue: it never needs a large contiguous
/// allocation, and [`UnackedList::make_room`] allocates before a message is reserved.
pub(crate) struct UnackedList {
    q: ChunkQueue<(Seq, MsgRef)>,
}

impl UnackedList {
    fn new() -> Self {
        Self {
            q: ChunkQueue::new(),
        }
    }

    /// Makes sure the next message can be queued without allocating; called before its
    /// reservation, so that a failure uses up nothing.
    #[inline(never)]
    pub(crate) fn make_room(&mut self, flags: Flags) -> Result {
        self.q.make_room(1, flags)
    }

    /// Drops every entry.
    pub(crate) fn clear(&mut self) {
        self.q.clear();
    }

    /// Message `i` (0 is the oldest) with its number.
    pub(crate) fn get(&self, i: usize) -> Option<&(Seq, MsgRef)> {
        self.q.get(i)
    }
}

impl UnackedQueue for UnackedList {
    type Entry = MsgRef;

    fn push_back(&mut self, seq: Seq, entry: MsgRef) -> core::result::Result<(), MsgRef> {
        self.q.push_back((seq, entry)).map_err(|(_, e)| e)
    }

    fn front_seq(&self) -> Option<Seq> {
        self.q.front().map(|(s, _)| *s)
    }

    fn pop_front(&mut self) -> Option<(Seq, MsgRef)> {
        self.q.pop_front()
    }

    fn len(&self) -> usize {
        self.q.len()
    }

    fn for_each(&self, f: &mut dyn FnMut(Seq, &MsgRef)) {
        for (s, e) in self.q.iter() {
            f(*s, e);
        }
    }

    fn has_room(&self) -> bool {
        self.q.can_push()
    }
}

/// The write queue of one node.
pub(crate) struct WriteQueue {
    /// Pages in the order they go out; the last one takes new reservations.
    entries: ChunkQueue<Entry>,
    /// Copies of unacknowledged messages for a new connection: sent after a partly sent head of
    /// `entries` and before the rest of it.
    resend: ChunkQueue<Entry>,
    /// Pages allocated ahead of the reservations that need them.
    spare: [Option<Arc<SendPage>>; SPARE_PAGES],
    /// Open reservations (also those whose page was dropped by a reconnect).
    pub(crate) open: u32,
}

/// A space reserved in the write queue.
pub(crate) struct Reservation {
    pub(crate) page: Arc<SendPage>,
    pub(crate) off: usize,
}

impl WriteQueue {
    fn new() -> Self {
        WriteQueue {
            entries: ChunkQueue::new(),
            resend: ChunkQueue::new(),
            spare: [const { None }; SPARE_PAGES],
            open: 0,
        }
    }

    /// New pages that reserving messages of `lens`, in this order, needs (a message never
    /// crosses a page; the last page takes what fits).
    fn pages_needed(&self, lens: &[usize]) -> usize {
        let mut end = self.entries.back().map(|e| e.end);
        let mut n = 0;
        for &len in lens {
            match end {
                Some(e) if e + len <= PAGE_SIZE => end = Some(e + len),
                _ => {
                    n += 1;
                    end = Some(len);
                }
            }
        }
        n
    }

    fn spare_pages(&self) -> usize {
        self.spare.iter().filter(|p| p.is_some()).count()
    }

    /// Makes sure that messages of `lens` can then be reserved, in this order, without
    /// allocating: allocates the pages and queue room they need now, or fails having used up
    /// nothing (what was allocated is kept for later).  Call it before anything is consumed
    /// for the messages (an ACK, a sequence number).
    #[inline(never)]
    pub(crate) fn make_room(&mut self, lens: &[usize], flags: Flags) -> Result {
        let n = self.pages_needed(lens);
        if n > SPARE_PAGES || lens.iter().any(|&l| l > PAGE_SIZE) {
            return Err(EINVAL);
        }
        let mut missing = n.saturating_sub(self.spare_pages());
        for slot in self.spare.iter_mut() {
            if missing == 0 {
                break;
            }
            if slot.is_none() {
                *slot = Some(SendPage::new(flags)?);
                missing -= 1;
            }
        }
        self.entries.make_room(n, flags)
    }

    /// Whether a page or a queue chunk should be allocated ahead (see [`Node::top_up`]).
    fn wants_spares(&self) -> (bool, bool) {
        (self.spare_pages() == 0, self.entries.wants_spare())
    }

    /// Keeps `page` for a later reservation unless the spares are full; returns what it did
    /// not keep, for the caller to drop after its lock.
    fn give_spare(&mut self, page: Arc<SendPage>) -> Option<Arc<SendPage>> {
        match self.spare.iter_mut().find(|p| p.is_none()) {
            Some(slot) => {
                *slot = Some(page);
                None
            }
            None => Some(page),
        }
    }

    /// Reserves `len` bytes at the end of the queue (a message never crosses a page).  Never
    /// allocates: `None` when [`WriteQueue::make_room`] did not make room for it.
    pub(crate) fn reserve(&mut self, len: usize) -> Option<Reservation> {
        let fits = matches!(self.entries.back(), Some(e) if e.end + len <= PAGE_SIZE);
        if !fits {
            let page = self.spare.iter_mut().rev().find_map(Option::take)?;
            page.set_queued(true);
            if let Err(e) = self.entries.push_back(Entry::new(page)) {
                e.page.set_queued(false);
                self.give_spare(e.page);
                return None;
            }
        }
        let e = self.entries.back_mut()?;
        let off = e.end;
        e.end += len;
        e.users += 1;
        let page = e.page.clone();
        self.open += 1;
        Some(Reservation { page, off })
    }

    /// Ends a reservation; returns true when its page became sendable.
    pub(crate) fn commit(&mut self, page: &Arc<SendPage>) -> bool {
        self.open = self.open.saturating_sub(1);
        if !page.is_queued() {
            // The page was dropped by a reconnect while the reservation was open; a reliable
            // message is retransmitted from the unacked queue, others are lost as in C.
            return false;
        }
        // Open reservations are on the last pages; search from the end.
        let n = self.entries.len();
        let Some(i) = (0..n)
            .rev()
            .find(|&i| matches!(self.entries.get(i), Some(e) if Arc::ptr_eq(&e.page, page)))
        else {
            return false;
        };
        let Some(e) = self.entries.get_mut(i) else {
            return false;
        };
        e.users -= 1;
        if e.users == 0 {
            e.len = e.end - e.offset;
            return e.len > 0;
        }
        false
    }

    /// The next page range to send, if one is ready: the rest of a partly sent head page first
    /// (the connection is in the middle of it), then retransmissions, then the queue.
    pub(crate) fn next_send(&mut self) -> Option<(Arc<SendPage>, usize, usize)> {
        while matches!(self.entries.front(), Some(e) if e.users == 0 && e.len == 0) {
            if let Some(e) = self.entries.pop_front() {
                e.page.set_queued(false);
            }
        }
        let head_dirty = matches!(self.entries.front(), Some(e) if e.dirty);
        let e = match self.resend.front() {
            Some(r) if !head_dirty => r,
            _ => self.entries.front()?,
        };
        if e.users != 0 || e.len == 0 {
            return None;
        }
        Some((e.page.clone(), e.offset, e.len))
    }

    /// `n` bytes of the range [`WriteQueue::next_send`] gave for `page` went out.
    pub(crate) fn complete(&mut self, page: &Arc<SendPage>, n: usize) {
        for q in [&mut self.resend, &mut self.entries] {
            let Some(e) = q.front_mut() else {
                continue;
            };
            if !Arc::ptr_eq(&e.page, page) {
                continue;
            }
            e.offset += n;
            e.len -= n.min(e.len);
            e.dirty = true;
            if e.len == 0 && e.users == 0 {
                if let Some(e) = q.pop_front() {
                    e.page.set_queued(false);
                }
            }
            return;
        }
    }

    /// The connection broke: a partly sent head page is dropped so that a new connection
    /// never starts mid-message, and the copies made for the connection are dropped (the next
    /// one makes its own).
    pub(crate) fn connection_lost(&mut self) {
        if matches!(self.entries.front(), Some(e) if e.dirty) {
            if let Some(e) = self.entries.pop_front() {
                e.page.set_queued(false);
            }
        }
        self.resend.clear();
    }

    /// Whether any committed byte waits to be sent (a page with only open reservations does
    /// not count).
    pub(crate) fn has_unsent(&self) -> bool {
        !self.resend.is_empty() || self.entries.iter().any(|e| e.len > 0)
    }

    /// Appends a page of retransmitted copies (see [`WriteQueue::make_resend_room`]); hands it
    /// back if there is no room.
    pub(crate) fn push_resend(&mut self, page: Arc<SendPage>, len: usize) -> Option<Arc<SendPage>> {
        let mut e = Entry::new(page);
        e.end = len;
        e.len = len;
        self.resend.push_back(e).err().map(|e| e.page)
    }

    /// Room for `n` more pages of retransmitted copies.
    pub(crate) fn make_resend_room(&mut self, n: usize, flags: Flags) -> Result {
        self.resend.make_room(n, flags)
    }

    /// Drops everything queued (the node is stopped or reset).
    pub(crate) fn clear(&mut self) {
        while let Some(e) = self.entries.pop_front() {
            e.page.set_queued(false);
        }
        self.entries.clear();
        self.resend.clear();
    }
}

/// Send-side and protocol state under the node lock: the write queue, the peer's protocol
/// state and its unacknowledged messages.  One lock, so that sequence numbers are assigned in
/// the critical section that fixes the message's place in the byte stream.
pub(crate) struct Tx {
    pub(crate) wq: WriteQueue,
    pub(crate) peer: Peer,
    pub(crate) unacked: UnackedList,
    /// A sequence gap being watched: when it was seen (ms) and the number we then expected.
    pub(crate) gap: Option<(u64, Seq)>,
    /// Where the retransmission for the current connection goes on: the next message to copy.
    pub(crate) resend_next: Option<Seq>,
}

/// One socket of a node (the main, bidirectional one or the receive-only "othercon" of a
/// crossed connect) with its receive carry-over.
pub(crate) struct Conn {
    pub(crate) sock: Option<Socket>,
    pub(crate) leftover: KVec<u8>,
    pub(crate) retries: u32,
}

impl Conn {
    fn new() -> Self {
        Self {
            sock: None,
            leftover: KVec::new(),
            retries: 0,
        }
    }

    /// Closes the socket (callbacks restored first) and forgets partial input.
    pub(crate) fn close(&mut self) {
        self.sock = None;
        self.leftover.clear();
        self.retries = 0;
    }
}

/// Configured addresses.
pub(crate) struct Addrs {
    pub(crate) addr: [SockAddr; MAX_ADDR_COUNT],
    pub(crate) count: usize,
    /// The address the next connect dials (C's `curr_addr_index`); below `count`.
    pub(crate) curr: usize,
}

/// A configured peer.
#[pin_data]
pub(crate) struct Node {
    pub(crate) nodeid: i32,
    /// `io::*` bits.
    pub(crate) io: AtomicUsize,
    pub(crate) mark: AtomicU32,
    /// Mirror of the detected version for lock-free readers: 0, 0x00030001 or 0x00030002.
    pub(crate) version: AtomicU32,
    pub(crate) debugfs: AtomicPtr<c_void>,
    #[pin]
    pub(crate) addrs: SpinLockBh<Addrs>,
    #[pin]
    pub(crate) main: Mutex<Conn>,
    #[pin]
    pub(crate) other: Mutex<Conn>,
    #[pin]
    pub(crate) tx: SpinLockBh<Tx>,
    /// Woken on version detection, state changes, close and receive EOF.
    #[pin]
    pub(crate) wait: WaitQueue,
    #[pin]
    pub(crate) rwork: Work<Node, 0>,
    #[pin]
    pub(crate) swork: Work<Node, 1>,
    /// Checks whether a sequence gap from the peer persisted.
    #[pin]
    pub(crate) gwork: DelayedWork<Node, 2>,
}

impl_has_work! {
    impl HasWork<Self, 0> for Node { self.rwork }
    impl HasWork<Self, 1> for Node { self.swork }
}

impl_has_delayed_work! {
    impl HasDelayedWork<Self, 2> for Node { self.gwork }
}

impl Node {
    /// A new node with its first address; process context, called in a `NofsScope` by the
    /// caller (configfs serves a cluster file system: no reclaim into it).
    pub(crate) fn new(nodeid: i32, addr: &SockAddr, mark: u32) -> Result<Arc<Self>> {
        let mut addrs = Addrs {
            addr: [SockAddr::zeroed(); MAX_ADDR_COUNT],
            count: 1,
            curr: 0,
        };
        addrs.addr[0] = *addr;
        Arc::pin_init(
            try_pin_init!(Node {
                nodeid,
                io: AtomicUsize::new(0),
                mark: AtomicU32::new(mark),
                version: AtomicU32::new(0),
                debugfs: AtomicPtr::new(core::ptr::null_mut()),
                addrs <- new_spinlock_bh!(addrs, "dlm_node_addrs"),
                main <- new_mutex!(Conn::new(), "dlm_node_main"),
                other <- new_mutex!(Conn::new(), "dlm_node_other"),
                tx <- new_spinlock_bh!(
                    Tx {
                        wq: WriteQueue::new(),
                        peer: Peer::new(nodeid.unsigned_abs(), MAX_UNACKED),
                        unacked: UnackedList::new(),
                        gap: None,
                        resend_next: None,
                    },
                    "dlm_node_tx"
                ),
                wait <- new_wait_queue!("dlm_node_wait"),
                rwork <- new_work!("dlm_node_rwork"),
                swork <- new_work!("dlm_node_swork"),
                gwork <- new_delayed_work!("dlm_node_gwork"),
            }),
            GFP_KERNEL,
        )
    }

    /// Allocates ahead, with `flags` (process context: a sleeping allocation) and outside the
    /// node lock, what the next protocol message or send may need: a page and the queue
    /// chunks.  Best effort: whatever fails is allocated (atomically) when it is needed.
    pub(crate) fn top_up(&self, flags: Flags) {
        // No reclaim into the file system dlm serves.
        let _nofs = NofsScope::enter();
        let ((page, entry_chunk), unacked_chunk) = {
            let tx = self.tx.lock();
            (tx.wq.wants_spares(), tx.unacked.q.wants_spare())
        };
        if !page && !entry_chunk && !unacked_chunk {
            return;
        }
        let page = page.then(|| SendPage::new(flags).ok()).flatten();
        let entry_chunk = entry_chunk
            .then(|| ChunkQueue::alloc_spare(flags).ok())
            .flatten();
        let unacked_chunk = unacked_chunk
            .then(|| ChunkQueue::alloc_spare(flags).ok())
            .flatten();
        let unused = {
            let mut tx = self.tx.lock();
            let Tx { wq, unacked, .. } = &mut *tx;
            (
                page.and_then(|p| wq.give_spare(p)),
                entry_chunk.and_then(|c| wq.entries.give_spare(c)),
                unacked_chunk.and_then(|c| unacked.q.give_spare(c)),
            )
        };
        drop(unused);
    }

    /// Tests an `io::*` bit.
    pub(crate) fn io_test(&self, bit: usize) -> bool {
        self.io.load(Ordering::Acquire) & bit != 0
    }

    /// Sets an `io::*` bit, returning whether it was set before.
    pub(crate) fn io_test_and_set(&self, bit: usize) -> bool {
        self.io.fetch_or(bit, Ordering::AcqRel) & bit != 0
    }

    /// Clears an `io::*` bit, returning whether it was set before.
    pub(crate) fn io_test_and_clear(&self, bit: usize) -> bool {
        self.io.fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    /// Appends an address: `EEXIST` for a duplicate, `ENOSPC` beyond eight.
    pub(crate) fn add_addr(&self, a: &SockAddr) -> Result {
        let mut addrs = self.addrs.lock();
        let n = addrs.count;
        if addrs.addr[..n].iter().any(|x| x.same(a)) {
            return Err(EEXIST);
        }
        if n >= MAX_ADDR_COUNT {
            return Err(ENOSPC);
        }
        addrs.addr[n] = *a;
        addrs.count = n + 1;
        Ok(())
    }

    /// Removes address `a` again (undoes [`Node::add_addr`]).
    pub(crate) fn remove_addr(&self, a: &SockAddr) {
        let mut addrs = self.addrs.lock();
        let n = addrs.count;
        if let Some(i) = addrs.addr[..n].iter().position(|x| x.same(a)) {
            addrs.addr.copy_within(i + 1..n, i);
            addrs.count = n - 1;
            if addrs.curr >= addrs.count {
                addrs.curr = 0;
            }
        }
    }

    /// The address-table hashes of the node's addresses.
    pub(crate) fn addr_hashes(&self) -> [Option<u32>; MAX_ADDR_COUNT] {
        let addrs = self.addrs.lock();
        let mut hashes = [None; MAX_ADDR_COUNT];
        for (h, a) in hashes.iter_mut().zip(addrs.addr[..addrs.count].iter()) {
            *h = Some(a.hash());
        }
        hashes
    }

    /// The address the next connect dials, with its index and the number of addresses: the
    /// current one, which is then, if `try_new_addr`, moved on to the next (round robin), so
    /// that the connect after this one dials another address (C's `nodeid_to_addr()` with
    /// SCTP's `try_new_addr`).
    pub(crate) fn connect_addr(&self, try_new_addr: bool) -> (SockAddr, usize, usize) {
        let mut addrs = self.addrs.lock();
        let (i, n) = (addrs.curr, addrs.count);
        if try_new_addr {
            addrs.curr = (i + 1) % n.max(1);
        }
        (addrs.addr[i], i, n)
    }

    /// Moves the address the next connect dials on to the next one (no change with one).
    pub(crate) fn next_addr(&self) {
        let mut addrs = self.addrs.lock();
        addrs.curr = (addrs.curr + 1) % addrs.count.max(1);
    }

    /// Makes `a`, if it is one of the node's addresses, the one the next connect dials.
    pub(crate) fn dial_addr(&self, a: &SockAddr) {
        let mut addrs = self.addrs.lock();
        let n = addrs.count;
        if let Some(i) = addrs.addr[..n].iter().position(|x| x.same(a)) {
            addrs.curr = i;
        }
    }

    /// How many addresses the node has.
    pub(crate) fn addr_count(&self) -> usize {
        self.addrs.lock().count
    }
}
