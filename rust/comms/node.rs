// SPDX-License-Identifier: GPL-2.0

//! Per-node state: one [`Node`] per configured peer nodeid holds both what the C layer keeps in
//! `struct connection` (lowcomms: sockets, write queue, I/O work) and in `struct midcomms_node`
//! (version, sequence numbers, unacknowledged messages, DLM_FIN state).  Both are created by the
//! same configfs `addr` write and removed by the same `dlm_midcomms_close()`, so one object with
//! one lifetime replaces the two SRCU-protected hash tables of C: the table holds an `Arc`,
//! every user (a send reservation, a queued work item, a socket callback, a received buffer)
//! holds its own `Arc`, and removal from the table plus `IO_STOP` ends all new activity.

use core::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicUsize, Ordering};
use kernel::{
    ffi::c_void,
    new_condvar,
    new_mutex,
    page::PAGE_SIZE,
    prelude::*,
    sync::{Arc, CondVar, Mutex},
    workqueue::{impl_has_work, new_work, Work}, //
};

use super::{
    page::SendPage,
    sock::{SockAddr, Socket},
    sync::{new_spinlock_bh, SpinLockBh},
};

/// At most this many addresses per node (`DLM_MAX_ADDR_COUNT`).
pub(crate) const MAX_ADDR_COUNT: usize = 8;

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
}

/// Midcomms flag bits in [`Node::mflags`], numbered as the C `DLM_NODE_FLAG_*` bits so the
/// debugfs `flags` file reads the same.
pub(crate) mod mflag {
    /// The node is being removed (`dlm_midcomms_close()`).
    pub(crate) const CLOSE: usize = 1 << 1;
    /// We sent our FIN.
    pub(crate) const STOP_TX: usize = 1 << 2;
    /// We received the peer's FIN.
    pub(crate) const STOP_RX: usize = 1 << 3;
}

/// `DLM_FIN` close states, numbered as in C.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FinState {
    Closed = 1,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    LastAck,
    Closing,
}

impl FinState {
    /// The name debugfs prints.
    pub(crate) fn name(self) -> &'static CStr {
        match self {
            FinState::Closed => c"CLOSED",
            FinState::Established => c"ESTABLISHED",
            FinState::FinWait1 => c"FIN_WAIT1",
            FinState::FinWait2 => c"FIN_WAIT2",
            FinState::CloseWait => c"CLOSE_WAIT",
            FinState::LastAck => c"LAST_ACK",
            FinState::Closing => c"CLOSING",
        }
    }
}

/// Who sent a FIN and so what its ack means.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FinKind {
    /// We started the close (`dlm_midcomms_shutdown()`).
    Active,
    /// We answer the peer's FIN.
    Passive,
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

/// A reliable (DLM 3.2) message waiting for its ack.
pub(crate) struct Unacked {
    pub(crate) seq: u32,
    pub(crate) page: Arc<SendPage>,
    pub(crate) off: usize,
    pub(crate) len: usize,
    pub(crate) committed: bool,
    pub(crate) fin: Option<FinKind>,
}

/// Send-side state under the write queue lock: the page queue plus the sequence numbers, which
/// must be assigned under the same lock so that sequence order equals wire order.
pub(crate) struct Tx {
    pub(crate) entries: KVec<Entry>,
    pub(crate) seq_send: u32,
    pub(crate) unacked: KVec<Unacked>,
}

/// A space reserved in the write queue.
pub(crate) struct Reservation {
    pub(crate) page: Arc<SendPage>,
    pub(crate) off: usize,
    pub(crate) seq: Option<u32>,
}

impl Tx {
    /// Reserves `len` bytes at the end of the queue (a message never crosses a page), taking
    /// the next sequence number when `reliable`.  Atomic-safe.
    pub(crate) fn reserve(
        &mut self,
        len: usize,
        reliable: Option<Option<FinKind>>,
    ) -> Result<Reservation> {
        if reliable.is_some() {
            self.unacked.reserve(1, GFP_ATOMIC)?;
        }
        let fits = matches!(self.entries.last(), Some(e) if e.end + len <= PAGE_SIZE);
        if !fits {
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
        }
        let Some(e) = self.entries.last_mut() else {
            return Err(ENOMEM);
        };
        let off = e.end;
        e.end += len;
        e.users += 1;
        let page = e.page.clone();
        let seq = match reliable {
            Some(fin) => {
                let seq = self.seq_send;
                self.seq_send = seq.wrapping_add(1);
                // Capacity was reserved above, so this cannot fail.
                let _ = self.unacked.push_within_capacity(Unacked {
                    seq,
                    page: page.clone(),
                    off,
                    len,
                    committed: false,
                    fin,
                });
                Some(seq)
            }
            None => None,
        };
        Ok(Reservation { page, off, seq })
    }

    /// Ends a reservation; returns true when its page became sendable.
    pub(crate) fn commit(&mut self, page: &Arc<SendPage>, seq: Option<u32>) -> bool {
        if let Some(seq) = seq {
            if let Some(m) = self.unacked.iter_mut().rev().find(|m| m.seq == seq) {
                m.committed = true;
            }
        }
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

    /// The head page range to send, if it is ready.
    pub(crate) fn next_send(&self) -> Option<(Arc<SendPage>, usize, usize)> {
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

    /// Whether any reservation is open.
    pub(crate) fn has_open_reservation(&self) -> bool {
        self.entries.iter().any(|e| e.users != 0)
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

/// Close-handshake state under the node state lock.
pub(crate) struct MidState {
    pub(crate) state: FinState,
    pub(crate) users: u32,
    pub(crate) seq_next: u32,
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
    /// `mflag::*` bits.
    pub(crate) mflags: AtomicUsize,
    pub(crate) mark: AtomicU32,
    /// 0 (unknown), `VERSION_3_1` or `VERSION_3_2`.
    pub(crate) version: AtomicU32,
    /// Mirror of `MidState::seq_next` for building acks without the state lock.
    pub(crate) seq_next: AtomicU32,
    pub(crate) ulp_delivered: AtomicU32,
    pub(crate) send_queue_cnt: AtomicI32,
    pub(crate) debugfs: AtomicPtr<c_void>,
    #[pin]
    pub(crate) addrs: SpinLockBh<Addrs>,
    #[pin]
    pub(crate) main: Mutex<Conn>,
    #[pin]
    pub(crate) other: Mutex<Conn>,
    #[pin]
    pub(crate) tx: SpinLockBh<Tx>,
    #[pin]
    pub(crate) st: SpinLockBh<MidState>,
    /// Woken on version detection, state changes, close and receive EOF.
    #[pin]
    pub(crate) wait: CondVar,
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
    /// A new node with its first address; process context.
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
                mflags: AtomicUsize::new(0),
                mark: AtomicU32::new(mark),
                version: AtomicU32::new(0),
                seq_next: AtomicU32::new(0),
                ulp_delivered: AtomicU32::new(0),
                send_queue_cnt: AtomicI32::new(0),
                debugfs: AtomicPtr::new(core::ptr::null_mut()),
                addrs <- new_spinlock_bh!(addrs, "dlm_node_addrs"),
                main <- new_mutex!(Conn::new(), "dlm_node_main"),
                other <- new_mutex!(Conn::new(), "dlm_node_other"),
                tx <- new_spinlock_bh!(
                    Tx {
                        entries: KVec::new(),
                        seq_send: 0,
                        unacked: KVec::new(),
                    },
                    "dlm_node_tx"
                ),
                st <- new_spinlock_bh!(
                    MidState {
                        state: FinState::Closed,
                        users: 0,
                        seq_next: 0,
                    },
                    "dlm_node_state"
                ),
                wait <- new_condvar!("dlm_node_wait"),
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

    /// Tests an `mflag::*` bit.
    pub(crate) fn mflag_test(&self, bit: usize) -> bool {
        self.mflags.load(Ordering::Acquire) & bit != 0
    }

    /// Sets an `mflag::*` bit.
    pub(crate) fn mflag_set(&self, bit: usize) {
        self.mflags.fetch_or(bit, Ordering::AcqRel);
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
