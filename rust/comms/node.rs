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
    ffi::c_void,
    new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    sync::{Arc, Mutex},
    workqueue::{impl_has_work, new_work, Work}, //
};

use crate::proto::{
    peer::Peer,
    reliable::UnackedQueue,
    seq::Seq, //
};

use super::{
    page::SendPage,
    sock::{SockAddr, Socket},
    sync::{new_spinlock_bh, new_wait_queue, SpinLockBh, WaitQueue},
};

/// At most this many addresses per node (`DLM_MAX_ADDR_COUNT`).
pub(crate) const MAX_ADDR_COUNT: usize = 8;

/// Bound on unacknowledged messages per peer.  The lock manager cannot take back-pressure
/// (a refused send can lose a grant), so the bound only guards against a peer that never acks;
/// C has no bound at all.
const MAX_UNACKED: u32 = 1 << 16;

/// I/O flag bits in [`Node::io`] (the C `CF_*` flags).
pub(crate) mod io {
    /// The receive work is queued or running.
    pub(crate) const RECV_PENDING: usize = 1 << 0;
    /// `data_ready` fired since the receive work last looked.
    pub(crate) const RECV_INTR: usize = 1 << 1;
    /// The send work is queued or running.
    pub(crate) const SEND_PENDING: usize = 1 << 2;
    /// No new I/O work may be queued (close or shutdown in progress).
    pub(crate) const IO_STOP: usize = 1 << 3;
    /// Waiting for `write_space`.
    pub(crate) const APP_LIMITED: usize = 1 << 4;
    /// A new sending socket was installed: retransmit before sending anything else.
    pub(crate) const RESEND: usize = 1 << 5;
    /// A lockspace added the node (`dlm_lowcomms_connect_node()`): connect even with nothing
    /// to send, as C does; dropped once connected or when no lockspace uses the node.
    pub(crate) const CONNECT: usize = 1 << 6;
    /// The peer skipped a sequence number: the receive work resets its connections.
    pub(crate) const RESET: usize = 1 << 7;
    /// The node was removed (`dlm_midcomms_close()`): what it sent is not delivered any more.
    pub(crate) const CLOSED: usize = 1 << 8;
}

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

/// Where an unacknowledged reliable message lives: its bytes stay in the page (the `Arc` keeps
/// the page) until the ack, so it can be copied again after a reconnect.
pub(crate) struct MsgRef {
    /// `None` only if the message could not be placed (allocation failure).
    pub(crate) page: Option<Arc<SendPage>>,
    pub(crate) off: usize,
    pub(crate) len: usize,
}

/// The unacknowledged messages of one peer, oldest first, for the reliable layer of
/// `proto` (which owns the sequence logic).
pub(crate) struct UnackedList {
    items: KVec<Option<(Seq, MsgRef)>>,
    head: usize,
}

impl UnackedList {
    fn new() -> Self {
        Self {
            items: KVec::new(),
            head: 0,
        }
    }

    /// Drops every entry.
    pub(crate) fn clear(&mut self) {
        self.items.clear();
        self.head = 0;
    }
}

impl UnackedQueue for UnackedList {
    type Entry = MsgRef;

    fn push_back(&mut self, seq: Seq, entry: MsgRef) -> core::result::Result<(), MsgRef> {
        if self.head > 0 && self.head * 2 >= self.items.len() {
            // Compact: move the live tail to the front.
            let live = self.items.len() - self.head;
            for i in 0..live {
                self.items.swap(i, self.head + i);
            }
            self.items.truncate(live);
            self.head = 0;
        }
        match self.items.push(Some((seq, entry)), GFP_ATOMIC) {
            Ok(()) => Ok(()),
            Err(_) => Err(MsgRef {
                page: None,
                off: 0,
                len: 0,
            }),
        }
    }

    fn front_seq(&self) -> Option<Seq> {
        self.items.get(self.head)?.as_ref().map(|(s, _)| *s)
    }

    fn pop_front(&mut self) -> Option<(Seq, MsgRef)> {
        let e = self.items.get_mut(self.head)?.take();
        self.head += 1;
        if self.head == self.items.len() {
            self.items.clear();
            self.head = 0;
        }
        e
    }

    fn len(&self) -> usize {
        self.items.len() - self.head
    }

    fn for_each(&self, f: &mut dyn FnMut(Seq, &MsgRef)) {
        for (s, e) in self.items[self.head..].iter().flatten() {
            f(*s, e);
        }
    }
}

/// The write queue of one node.
pub(crate) struct WriteQueue {
    pub(crate) entries: KVec<Entry>,
    /// Open reservations (also those whose page was dropped by a reconnect).
    pub(crate) open: u32,
}

/// Send-side and protocol state under the node lock: the write queue, the peer's protocol
/// state and its unacknowledged messages.  One lock, so that sequence numbers are assigned in
/// the critical section that fixes the message's place in the byte stream.
pub(crate) struct Tx {
    pub(crate) wq: WriteQueue,
    pub(crate) peer: Peer,
    pub(crate) unacked: UnackedList,
}

/// A space reserved in the write queue.
pub(crate) struct Reservation {
    pub(crate) page: Arc<SendPage>,
    pub(crate) off: usize,
}

impl WriteQueue {
    /// Makes sure the next reservations of up to `len` bytes in total cannot fail.
    pub(crate) fn ensure_room(&mut self, len: usize) -> Result {
        let fits = matches!(self.entries.last(), Some(e) if e.end + len <= PAGE_SIZE);
        if !fits {
            self.new_page()?;
        }
        self.entries.reserve(1, GFP_ATOMIC)?;
        Ok(())
    }

    fn new_page(&mut self) -> Result {
        let page = SendPage::new_atomic()?;
        self.entries.push(
            Entry {
                page,
                offset: 0,
                len: 0,
                end: 0,
                users: 0,
                dirty: false,
            },
            GFP_ATOMIC,
        )?;
        Ok(())
    }

    /// Reserves `len` bytes at the end of the queue (a message never crosses a page).
    /// Atomic-safe.
    pub(crate) fn reserve(&mut self, len: usize) -> Result<Reservation> {
        let fits = matches!(self.entries.last(), Some(e) if e.end + len <= PAGE_SIZE);
        if !fits {
            self.new_page()?;
        }
        let Some(e) = self.entries.last_mut() else {
            return Err(ENOMEM);
        };
        let off = e.end;
        e.end += len;
        e.users += 1;
        let page = e.page.clone();
        self.open += 1;
        Ok(Reservation { page, off })
    }

    /// Ends a reservation; returns true when its page became sendable.
    pub(crate) fn commit(&mut self, page: &Arc<SendPage>) -> bool {
        self.open = self.open.saturating_sub(1);
        let Some(e) = self
            .entries
            .iter_mut()
            .rev()
            .find(|e| Arc::ptr_eq(&e.page, page))
        else {
            // The page was dropped by a reconnect while the reservation was open; a reliable
            // message is retransmitted from the unacked queue, others are lost as in C.
            return false;
        };
        e.users -= 1;
        if e.users == 0 {
            e.len = e.end - e.offset;
            return e.len > 0;
        }
        false
    }

    /// The head page range to send, if it is ready.  Drops empty pages at the head (left by
    /// `ensure_room` when a message needed a page of its own).
    pub(crate) fn next_send(&mut self) -> Option<(Arc<SendPage>, usize, usize)> {
        while matches!(self.entries.first(), Some(e) if e.users == 0 && e.len == 0 && e.end == e.offset)
        {
            let _ = self.entries.remove(0);
        }
        let e = self.entries.first()?;
        if e.users != 0 || e.len == 0 {
            return None;
        }
        Some((e.page.clone(), e.offset, e.len))
    }

    /// `n` bytes of the head page went out.
    pub(crate) fn complete(&mut self, page: &Arc<SendPage>, n: usize) {
        let Some(e) = self.entries.first_mut() else {
            return;
        };
        if !Arc::ptr_eq(&e.page, page) {
            return;
        }
        e.offset += n;
        e.len -= n.min(e.len);
        e.dirty = true;
        if e.len == 0 && e.users == 0 {
            let _ = self.entries.remove(0);
        }
    }

    /// Drops a partly sent head page so that a new connection never starts mid-message.
    pub(crate) fn drop_dirty_head(&mut self) {
        if matches!(self.entries.first(), Some(e) if e.dirty) {
            let _ = self.entries.remove(0);
        }
    }

    /// Whether any committed byte waits to be sent.  A page that was sent entirely stays
    /// queued for packing the next messages, so an empty `entries` is not the test.
    pub(crate) fn has_unsent(&self) -> bool {
        self.entries.iter().any(|e| e.len > 0)
    }

    /// Whether the page of `m` is still queued (its bytes are not on the wire yet).
    pub(crate) fn holds(&self, page: &Arc<SendPage>) -> bool {
        self.entries.iter().any(|e| Arc::ptr_eq(&e.page, page))
    }
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
}

impl_has_work! {
    impl HasWork<Self, 0> for Node { self.rwork }
    impl HasWork<Self, 1> for Node { self.swork }
}

impl Node {
    /// A new node with its first address; process context, called in a `NofsScope` by the
    /// caller (configfs serves a cluster file system: no reclaim into it).
    pub(crate) fn new(nodeid: i32, addr: &SockAddr, mark: u32) -> Result<Arc<Self>> {
        let mut addrs = Addrs {
            addr: [SockAddr::zeroed(); MAX_ADDR_COUNT],
            count: 1,
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
                        wq: WriteQueue {
                            entries: KVec::new(),
                            open: 0,
                        },
                        peer: Peer::new(nodeid.unsigned_abs(), MAX_UNACKED),
                        unacked: UnackedList::new(),
                    },
                    "dlm_node_tx"
                ),
                wait <- new_wait_queue!("dlm_node_wait"),
                rwork <- new_work!("dlm_node_rwork"),
                swork <- new_work!("dlm_node_swork"),
            }),
            GFP_KERNEL,
        )
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

    /// Whether `a` is one of the node's addresses.
    pub(crate) fn has_addr(&self, a: &SockAddr) -> bool {
        let addrs = self.addrs.lock();
        addrs.addr[..addrs.count].iter().any(|x| x.same(a))
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

    /// The address to connect to (TCP always uses the first one, as C does).
    pub(crate) fn connect_addr(&self) -> SockAddr {
        self.addrs.lock().addr[0]
    }
}
