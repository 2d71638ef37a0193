// SPDX-License-Identifier: GPL-2.0

//! TCP and SCTP transport: the listening socket, lazy outgoing connects, accept with
//! address-to-node mapping, the per-node send and receive workers on the `dlm_io` workqueue, the
//! receive queue drained by the `dlm_process` BH worker, and the socket callbacks (which only
//! set flags and queue work).
//!
//! Execution contexts, as in the C layer:
//! * socket callbacks: softirq (or process context under the socket lock); atomics and
//!   `queue_work` only;
//! * `dlm_io` (unbound, `WQ_MEM_RECLAIM`): connect, accept, send, receive and framing;
//! * `dlm_process` (`WQ_BH`): protocol processing and the upcall into the lock manager, one
//!   buffer at a time in arrival order, so per-node FIFO order holds;
//! * the send API (`dlm_lowcomms_new_msg()` and friends) may be called with BH disabled and
//!   spinlocks held, so it only takes `spin_lock_bh` locks and allocates with `GFP_ATOMIC`.

use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use kernel::{
    bindings,
    ffi::c_void,
    new_mutex,
    prelude::*,
    sync::{Arc, ArcBorrow, Mutex},
    time::{delay::fsleep, msecs_to_jiffies, Delta, Jiffies},
    workqueue::{impl_has_work, new_work, Queue, Work, WorkItem}, //
};

use crate::proto::reliable::UnackedQueue;

use super::{
    ffi::{self, config, our_nodeid, SkCallbacks},
    log::{log_print, log_print_ratelimited, trace},
    midcomms,
    node::{io, Conn, Node, MAX_ADDR_COUNT},
    sock::{Io, Protocol, SockAddr, Socket},
    srcu::{new_srcu_hash_table, SrcuHashTable},
    sync::{
        cancel_delayed_work, cancel_work, new_spinlock_bh, new_wait_queue, NofsScope, OwnedQueue,
        SpinLockBh, WaitQueue,
    },
};

/// Largest message on the wire (`DLM_MAX_SOCKET_BUFSIZE`).
pub(crate) const MAX_SOCKET_BUFSIZE: usize = 4096;
/// Receive back-pressure threshold (`DLM_MAX_PROCESS_BUFFERS`).
const MAX_PROCESS_BUFFERS: usize = 24;
/// How long a half-closed connection may take to see the peer's end of stream.
const SHUTDOWN_WAIT_MS: u32 = 5000;
const LISTEN_BACKLOG: i32 = 128;
/// Bounded work per send-worker run before it requeues itself (fairness, as C's RESCHED).
const SEND_BATCH: usize = 64;
/// How long the `dlm_accept_stall` test hook stalls the accept work.
const ACCEPT_STALL_MS: i64 = 5000;
/// Pause before a worker retries after an allocation failed.
const RETRY_MS: i64 = 10;
/// Receive buffer of every SCTP socket (C's `NEEDED_RMEM`).
const SCTP_RCVBUF: i32 = 4 * 1024 * 1024;
/// `TCP_USER_TIMEOUT` of the TCP connections of a node with several addresses: how long sent
/// data (or a SYN) may stay unacknowledged before the connection is given up and the next
/// address is tried.  TCP's own limits (about 2 minutes for a connect, 15 for a connection)
/// are too long to fail over; nodes with one address keep them.
const TCP_FAILOVER_TIMEOUT_MS: u32 = 10_000;

/// Buckets of the node tables (C: `CONN_HASH_SIZE`, `NODE_HASH_SIZE`).
const NODE_HASH_SIZE: usize = 32;

/// The bucket of a node id, as C picks it.
const fn nodeid_hash(nodeid: i32) -> u32 {
    nodeid as u32
}

/// An entry of the address table: one configured address of a node.
#[derive(Clone)]
struct NodeAddr {
    addr: SockAddr,
    node: Arc<Node>,
}

/// Our own addresses (C's `dlm_local_addr`), read from the local comm by `start`.
#[derive(Clone, Copy)]
struct LocalAddrs {
    addr: [SockAddr; MAX_ADDR_COUNT],
    count: usize,
}

impl LocalAddrs {
    const fn new() -> Self {
        Self {
            addr: [SockAddr::zeroed(); MAX_ADDR_COUNT],
            count: 0,
        }
    }

    /// The first address: TCP binds to it, and its family is every socket's.
    fn first(&self) -> SockAddr {
        self.addr[0]
    }

    /// Address `i`, if we have that many.
    fn get(&self, i: usize) -> Option<SockAddr> {
        self.addr[..self.count].get(i).copied()
    }

    fn iter(&self) -> impl Iterator<Item = &SockAddr> {
        self.addr[..self.count].iter()
    }
}

/// The listen sockets: one for SCTP (bound to every local address), one per local address for
/// TCP.
type ListenSockets = [Option<Socket>; MAX_ADDR_COUNT];
const NO_LISTEN_SOCKETS: ListenSockets = [const { None }; MAX_ADDR_COUNT];

/// A buffer of whole received messages waiting for the BH worker.
pub(crate) struct RxBuf {
    node: Arc<Node>,
    data: KVec<u8>,
}

/// Workqueues that exist between `dlm_lowcomms_start()` and `dlm_lowcomms_stop()`.
struct Queues {
    io: Option<OwnedQueue>,
    process: Option<OwnedQueue>,
}

/// Global comms state, allocated by `dlm_midcomms_init()` and freed by `dlm_midcomms_exit()`.
#[pin_data]
pub(crate) struct Comms {
    /// Every configured node, by node id; readers (any context) take no lock.
    #[pin]
    nodes: SrcuHashTable<Arc<Node>, NODE_HASH_SIZE>,
    /// Every configured address of every node, by address (for accept).
    #[pin]
    addrs: SrcuHashTable<NodeAddr, NODE_HASH_SIZE>,
    /// Serialises the writers of `nodes` and `addrs`, which keeps the two in agreement.
    #[pin]
    nodes_lock: Mutex<()>,
    #[pin]
    queues: Mutex<Queues>,
    /// The `dlm_io` queue for callbacks and the send API (null when stopped).
    io_wq: AtomicPtr<bindings::workqueue_struct>,
    /// The `dlm_process` BH queue (null when stopped).
    process_wq: AtomicPtr<bindings::workqueue_struct>,
    #[pin]
    listen: Mutex<ListenSockets>,
    running: AtomicBool,
    /// The transport chosen by `start` (`ci_protocol` cannot change while we run): SCTP if set.
    sctp: AtomicBool,
    /// The listen socket's original callbacks: what every socket gets back.
    #[pin]
    orig_cbs: SpinLockBh<SkCallbacks>,
    /// Our addresses; the family of the first is used for every socket.
    #[pin]
    locals: SpinLockBh<LocalAddrs>,
    #[pin]
    rxq: SpinLockBh<KVec<RxBuf>>,
    /// Woken when the `dlm_process` worker emptied `rxq`.
    #[pin]
    rxq_wait: WaitQueue,
    /// Keeps `dlm_midcomms_close()` and `dlm_midcomms_shutdown()` apart.
    #[pin]
    pub(crate) close_lock: Mutex<()>,
    #[pin]
    accept_work: Work<Comms, 0>,
    #[pin]
    process_work: Work<Comms, 1>,
}

impl_has_work! {
    impl HasWork<Self, 0> for Comms { self.accept_work }
    impl HasWork<Self, 1> for Comms { self.process_work }
}

/// The global instance: one leaked `Arc` reference, or null outside init..exit.
static COMMS: AtomicPtr<Comms> = AtomicPtr::new(core::ptr::null_mut());

/// The global comms state, if initialised.
///
/// The `'static` borrow rests on the module's life cycle: `exit` releases the reference only
/// after every node, socket and work item is gone, and C calls no comms function after
/// `dlm_midcomms_exit()`.  Work items and sockets hold an `Arc` of their own.
pub(crate) fn comms() -> Option<ArcBorrow<'static, Comms>> {
    let p = COMMS.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` came from `Arc::into_raw` in `init` and is only released by `exit` after every
    // caller is gone (see above).
    Some(unsafe { ArcBorrow::from_raw(p) })
}

/// Creates the global state (`dlm_midcomms_init()`).
pub(crate) fn init() -> Result {
    let c = Arc::pin_init(
        try_pin_init!(Comms {
            nodes <- new_srcu_hash_table!("dlm_nodes_srcu"),
            addrs <- new_srcu_hash_table!("dlm_addrs_srcu"),
            nodes_lock <- new_mutex!((), "dlm_nodes_lock"),
            queues <- new_mutex!(Queues { io: None, process: None }, "dlm_queues"),
            io_wq: AtomicPtr::new(core::ptr::null_mut()),
            process_wq: AtomicPtr::new(core::ptr::null_mut()),
            listen <- new_mutex!(NO_LISTEN_SOCKETS, "dlm_listen"),
            running: AtomicBool::new(false),
            sctp: AtomicBool::new(false),
            orig_cbs <- new_spinlock_bh!(SkCallbacks::NONE, "dlm_orig_cbs"),
            locals <- new_spinlock_bh!(LocalAddrs::new(), "dlm_local"),
            rxq <- new_spinlock_bh!(KVec::new(), "dlm_rxq"),
            rxq_wait <- new_wait_queue!("dlm_rxq_wait"),
            close_lock <- new_mutex!((), "dlm_close_lock"),
            accept_work <- new_work!("dlm_accept_work"),
            process_work <- new_work!("dlm_process_work"),
        }),
        GFP_KERNEL,
    )?;
    COMMS.store(Arc::into_raw(c).cast_mut(), Ordering::Release);
    ffi::fault::init();
    Ok(())
}

/// Frees the global state (`dlm_midcomms_exit()`); every node must be gone.  Process context:
/// dropping the node tables cleans up their SRCU domains, which sleeps.
pub(crate) fn exit() {
    ffi::fault::exit();
    let p = COMMS.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        // SAFETY: `p` is the reference leaked by `init`; nobody uses it any more.
        drop(unsafe { Arc::from_raw(p) });
    }
}

impl Comms {
    fn io_queue(&self) -> Option<&Queue> {
        let p = self.io_wq.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: The queue stays alive until `stop` clears the pointer and destroys it, which
        // happens after every socket is closed and every node's I/O is stopped.
        Some(unsafe { Queue::from_raw(p) })
    }

    fn process_queue(&self) -> Option<&Queue> {
        let p = self.process_wq.load(Ordering::Acquire);
        if p.is_null() {
            return None;
        }
        // SAFETY: As for `io_queue`.
        Some(unsafe { Queue::from_raw(p) })
    }

    /// Looks a node up by id; any context, takes no lock.
    pub(crate) fn node(&self, nodeid: i32) -> Option<Arc<Node>> {
        self.nodes
            .read()
            .bucket(nodeid_hash(nodeid))
            .iter()
            .find(|n| n.nodeid == nodeid)
            .cloned()
    }

    /// Looks a node up by one of its addresses; any context, takes no lock.
    fn node_by_addr(&self, a: &SockAddr) -> Option<Arc<Node>> {
        self.addrs
            .read()
            .bucket(a.hash())
            .iter()
            .find(|e| e.addr.same(a))
            .map(|e| e.node.clone())
    }

    /// A snapshot of all nodes; process context.  It cannot come back short: the array is
    /// allocated with a sleeping allocation outside the read-side section, and again (after a
    /// pause) until that succeeds, so that shutdown and version wait never skip a node.
    pub(crate) fn all_nodes(&self) -> KVec<Arc<Node>> {
        let _nofs = NofsScope::enter();
        loop {
            let n = self.nodes.read().iter().count();
            let Ok(mut v) = KVec::with_capacity(n, GFP_KERNEL) else {
                fsleep(Delta::from_millis(RETRY_MS));
                continue;
            };
            let nodes = self.nodes.read();
            if nodes
                .iter()
                .any(|node| v.push_within_capacity(node.clone()).is_err())
            {
                // A node was added meanwhile.
                continue;
            }
            return v;
        }
    }

    /// `dlm_midcomms_addr()`: adds address `a` to node `nodeid`, or a new node with it.
    /// Returns the node if it is new.  Process context.
    pub(crate) fn add_addr(&self, nodeid: i32, a: &SockAddr) -> Result<Option<Arc<Node>>> {
        // configfs serves a cluster file system's daemon: no reclaim into it (C: GFP_NOFS).
        let _nofs = NofsScope::enter();
        let _w = self.nodes_lock.lock();
        if let Some(node) = self.node(nodeid) {
            node.add_addr(a)?;
            if let Err(e) = self.hash_addr(a, &node) {
                node.remove_addr(a);
                return Err(e);
            }
            return Ok(None);
        }
        let node = Node::new(nodeid, a, ffi::config::mark())?;
        self.hash_addr(a, &node)?;
        let hashed = self.nodes.update(nodeid_hash(nodeid), |bucket| {
            let mut v = KVec::with_capacity(bucket.len() + 1, GFP_KERNEL)?;
            v.extend_from_slice(bucket, GFP_KERNEL)?;
            v.push(node.clone(), GFP_KERNEL)?;
            Ok(Some(v))
        });
        if let Err(e) = hashed {
            self.unhash_addrs(&node);
            return Err(e);
        }
        Ok(Some(node))
    }

    /// Adds `a` of `node` to the address table; under `nodes_lock`.
    fn hash_addr(&self, a: &SockAddr, node: &Arc<Node>) -> Result {
        self.addrs.update(a.hash(), |bucket| {
            let mut v = KVec::with_capacity(bucket.len() + 1, GFP_KERNEL)?;
            v.extend_from_slice(bucket, GFP_KERNEL)?;
            v.push(
                NodeAddr {
                    addr: *a,
                    node: node.clone(),
                },
                GFP_KERNEL,
            )?;
            Ok(Some(v))
        })?;
        Ok(())
    }

    /// Removes every entry of `node` from the table `t`'s bucket of `hash`, and waits until no
    /// reader can see them.  It cannot fail: a failed allocation is retried after a pause.
    /// Under `nodes_lock`.
    fn unhash<T: Clone>(
        t: &SrcuHashTable<T, NODE_HASH_SIZE>,
        hash: u32,
        node: &Arc<Node>,
        of: impl Fn(&T) -> &Arc<Node>,
    ) {
        let update = |bucket: &[T]| {
            if !bucket.iter().any(|x| Arc::ptr_eq(of(x), node)) {
                return Ok(None);
            }
            let mut v = KVec::with_capacity(bucket.len(), GFP_KERNEL)?;
            for x in bucket.iter().filter(|x| !Arc::ptr_eq(of(x), node)) {
                v.push(x.clone(), GFP_KERNEL)?;
            }
            Ok(Some(v))
        };
        while t.update(hash, update).is_err() {
            fsleep(Delta::from_millis(RETRY_MS));
        }
    }

    /// Removes every address of `node` from the address table; under `nodes_lock`.
    fn unhash_addrs(&self, node: &Arc<Node>) {
        for hash in node.addr_hashes().into_iter().flatten() {
            Self::unhash(&self.addrs, hash, node, |e| &e.node);
        }
    }

    /// Takes node `nodeid` out of the tables and waits until no lookup can find it any more
    /// (C: `hlist_del_rcu()`, `synchronize_srcu()`); the caller then stops and drops it.
    ///
    /// First no delivery of its messages may begin any more (`CLOSED`), and the deliveries in
    /// progress, each inside a read-side section of `nodes` (see [`Comms::deliver`]), end: the
    /// lock manager's replies to them still find the node.  Process context.
    pub(crate) fn remove_node(&self, nodeid: i32) -> Option<Arc<Node>> {
        let _nofs = NofsScope::enter();
        let _w = self.nodes_lock.lock();
        let node = self.node(nodeid)?;
        node.io_test_and_set(io::CLOSED);
        self.nodes.synchronize();
        Self::unhash(&self.nodes, nodeid_hash(nodeid), &node, |n| n);
        self.unhash_addrs(&node);
        Some(node)
    }

    /// Takes every node out of the tables, as [`Comms::remove_node`] does; process context.
    pub(crate) fn remove_all_nodes(&self) -> KVec<Arc<Node>> {
        let mut nodes = self.all_nodes();
        nodes.retain(|n| self.remove_node(n.nodeid).is_some());
        nodes
    }

    /// Hands `buf`, received from `node`, to the reliable layer and the lock manager, inside a
    /// read-side section of the node table: [`Comms::remove_node`] marks the node `CLOSED`
    /// (checked before every message) and waits for this section before the node leaves the
    /// table, so that whatever the lock manager sends while handling a message finds its sender.
    /// BH context.
    fn deliver(&self, node: &Arc<Node>, buf: &[u8]) {
        let _r = self.nodes.read();
        midcomms::process(node, buf);
    }

    /// The transport `start` chose.
    fn protocol(&self) -> Protocol {
        if self.sctp.load(Ordering::Acquire) {
            Protocol::Sctp
        } else {
            Protocol::Tcp
        }
    }

    /// The connection to `node` failed (a connect, or an established connection broke): a TCP
    /// node with several addresses is dialled on the next one from now on.  (SCTP moves on at
    /// every connect, as C.)
    fn connection_failed(&self, node: &Node) {
        if self.protocol() == Protocol::Tcp {
            node.next_addr();
        }
    }

    /// `dlm_lowcomms_is_running()`.
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

/// Queues the receive work of `node` unless it is pending or I/O is stopped.
pub(crate) fn queue_rwork(node: &Arc<Node>) {
    if node.io_test(io::IO_STOP) || node.io_test_and_set(io::RECV_PENDING) {
        return;
    }
    match comms().as_ref().and_then(|c| c.io_queue()) {
        Some(q) => {
            let _ = q.enqueue::<Arc<Node>, 0>(node.clone());
        }
        None => {
            node.io_test_and_clear(io::RECV_PENDING);
        }
    }
}

/// Asks the receive work to reset `node`'s connections (any context): the peer then sees a
/// socket error, reconnects or resends, and retransmits what we never acknowledged.
pub(crate) fn reset_connection(node: &Arc<Node>) {
    if !node.io_test_and_set(io::RESET) {
        node.io.fetch_or(io::RECV_INTR, Ordering::AcqRel);
        queue_rwork(node);
    }
}

/// Queues the send work of `node` (which also connects) unless it is pending, waiting for
/// write space, or I/O is stopped.  Call it with the node's write queue lock held when it
/// follows a change of the queue, so that it cannot race with the worker going idle.
pub(crate) fn queue_swork(node: &Arc<Node>) {
    if node.io_test(io::IO_STOP) || node.io_test(io::APP_LIMITED) {
        return;
    }
    if node.io_test_and_set(io::SEND_PENDING) {
        return;
    }
    match comms().as_ref().and_then(|c| c.io_queue()) {
        Some(q) => {
            let _ = q.enqueue::<Arc<Node>, 1>(node.clone());
        }
        None => {
            node.io_test_and_clear(io::SEND_PENDING);
        }
    }
}

/// Queues the check of a sequence gap from `node` to run in `delay` jiffies, unless it is
/// queued already or I/O is stopped; any context.
pub(crate) fn queue_gwork(node: &Arc<Node>, delay: Jiffies) {
    if node.io_test(io::IO_STOP) {
        return;
    }
    if let Some(q) = comms().as_ref().and_then(|c| c.io_queue()) {
        let _ = q.enqueue_delayed::<Arc<Node>, 2>(node.clone(), delay);
    }
}

/// Requeues the running send work itself (keeps `SEND_PENDING`).
fn requeue_swork(node: Arc<Node>) {
    if node.io_test(io::IO_STOP) {
        node.io_test_and_clear(io::SEND_PENDING);
        return;
    }
    match comms().as_ref().and_then(|c| c.io_queue()) {
        Some(q) => {
            if q.enqueue::<Arc<Node>, 1>(node.clone()).is_err() {
                // Already queued: that run will do the work.
            }
        }
        None => {
            node.io_test_and_clear(io::SEND_PENDING);
        }
    }
}

// ---- socket callbacks -------------------------------------------------------------------

/// Releases the `Arc<Node>` a socket held in `sk_user_data`.
///
/// # Safety
///
/// `p` must come from `Arc::into_raw` of an `Arc<Node>` and not be used afterwards.
unsafe fn drop_node_ref(p: *const c_void) {
    // SAFETY: `p` is the reference `install_node_sock` leaked with `Arc::into_raw` for the
    // socket; the socket drops it exactly once, after its callbacks were restored.
    drop(unsafe { Arc::from_raw(p.cast::<Node>()) });
}

/// No owner to release (the listen socket).
///
/// # Safety
///
/// Always safe; `unsafe` only to match the owner-release signature.
unsafe fn drop_nothing(_p: *const c_void) {}

/// The node a socket callback is for.
///
/// # Safety
///
/// `sk` must be a live socket inside one of our node callbacks; the returned borrow must not
/// outlive the callback.
unsafe fn sk_node<'a>(sk: *mut bindings::sock) -> Option<ArcBorrow<'a, Node>> {
    // SAFETY: The caller is one of our callbacks of the live socket `sk`.
    let p = unsafe { Socket::user_data(sk) }.cast::<Node>();
    if p.is_null() {
        return None;
    }
    // SAFETY: A non-null `sk_user_data` is the `Arc<Node>` reference the socket owns until its
    // callbacks are restored, which waits for running callbacks.
    Some(unsafe { ArcBorrow::from_raw(p) })
}

/// Socket callback.
///
/// # Safety
///
/// Called by the network stack with a live socket that carries our callbacks.
unsafe extern "C" fn node_data_ready(sk: *mut bindings::sock) {
    // SAFETY: Called by the network stack for a socket we installed this callback on.
    let Some(node) = (unsafe { sk_node(sk) }) else {
        return;
    };
    node.io.fetch_or(io::RECV_INTR, Ordering::AcqRel);
    queue_rwork(&node.into());
}

/// Socket callback.
///
/// # Safety
///
/// Called by the network stack with a live socket that carries our callbacks.
unsafe extern "C" fn node_write_space(sk: *mut bindings::sock) {
    // SAFETY: Called by the network stack for a socket we installed this callback on.
    let Some(node) = (unsafe { sk_node(sk) }) else {
        return;
    };
    let node: Arc<Node> = node.into();
    let _tx = node.tx.lock();
    let limited = node.io_test_and_clear(io::APP_LIMITED);
    // SAFETY: `sk` is live inside its callback.
    unsafe { Socket::write_space_done(sk, limited) };
    queue_swork(&node);
}

/// Socket callback.
///
/// # Safety
///
/// Called by the network stack with a live socket that carries our callbacks.
unsafe extern "C" fn node_error_report(sk: *mut bindings::sock) {
    // SAFETY: Called by the network stack for a socket we installed this callback on.
    if let Some(node) = unsafe { sk_node(sk) } {
        // SAFETY: `sk` is live inside its callback.
        let err = unsafe { Socket::sk_err(sk) };
        log_print_ratelimited!(
            "node {}: socket error sending to node {}, sk_err={}",
            our_nodeid(),
            node.nodeid,
            err
        );
        // A reset may come without `data_ready`: let the receive worker see the error, close
        // the socket and reconnect, so unacked messages are retransmitted (C retransmits from
        // here directly).
        let node: Arc<Node> = node.into();
        node.io.fetch_or(io::RECV_INTR, Ordering::AcqRel);
        queue_rwork(&node);
    }
    let orig = comms().map(|c| *c.orig_cbs.lock());
    if let Some(f) = orig.and_then(|o| o.error_report) {
        // SAFETY: The saved original callback of the same socket type.
        unsafe { f(sk) };
    }
}

/// Listen socket callback.
///
/// # Safety
///
/// Called by the network stack with the live listen socket.
unsafe extern "C" fn listen_data_ready(_sk: *mut bindings::sock) {
    if let Some(c) = comms() {
        if let Some(q) = c.io_queue() {
            let _ = q.enqueue::<Arc<Comms>, 0>(c.into());
        }
    }
}

/// Installs the node callbacks on `sock` with a reference to `node`.
fn install_node_sock(c: &Comms, node: &Arc<Node>, sock: &mut Socket) {
    let cbs = SkCallbacks {
        data_ready: Some(node_data_ready),
        write_space: Some(node_write_space),
        // SCTP reports the peer's SHUTDOWN (end of stream) and ABORT (`sk_err`) by a state
        // change, calling neither of the others: the receive work reads either (it stops at
        // once when there is nothing to read).  C wakes it for the end of stream only.
        state_change: match c.protocol() {
            Protocol::Tcp => None,
            Protocol::Sctp => Some(node_data_ready),
        },
        error_report: Some(node_error_report),
    };
    let orig = *c.orig_cbs.lock();
    let owner = Arc::into_raw(node.clone()).cast::<c_void>();
    // SAFETY: `owner` is a leaked `Arc<Node>` released by `drop_node_ref` when the socket is
    // dropped; the callbacks handle any node.
    unsafe { sock.install(owner, drop_node_ref, &cbs, &orig) };
}

// ---- start / shutdown / stop ------------------------------------------------------------

/// `dlm_lowcomms_start()`.
pub(crate) fn start(c: ArcBorrow<'_, Comms>) -> Result {
    let mut locals = LocalAddrs::new();
    while locals.count < MAX_ADDR_COUNT {
        let Some(a) = config::our_addr(locals.count) else {
            break;
        };
        locals.addr[locals.count] = a;
        locals.count += 1;
    }
    if locals.count == 0 {
        log_print!("no local IP address has been set");
        return Err(Error::from_errno(-(bindings::ENOTCONN as i32)));
    }
    *c.locals.lock() = locals;

    let p = config::protocol();
    let Some(proto) = Protocol::from_config(p) else {
        log_print!("Invalid protocol identifier {} set", p);
        return Err(EINVAL);
    };
    c.sctp.store(proto == Protocol::Sctp, Ordering::Release);

    {
        let mut q = c.queues.lock();
        let iowq = OwnedQueue::new(
            c"dlm_io",
            bindings::wq_flags_WQ_HIGHPRI
                | bindings::wq_flags_WQ_MEM_RECLAIM
                | bindings::wq_flags_WQ_UNBOUND,
        )
        .inspect_err(|_| log_print!("can't start dlm_io"))?;
        let pwq = OwnedQueue::new(
            c"dlm_process",
            bindings::wq_flags_WQ_HIGHPRI | bindings::wq_flags_WQ_BH | bindings::wq_flags_WQ_PERCPU,
        )
        .inspect_err(|_| log_print!("can't start dlm_process"))?;
        c.io_wq.store(iowq_ptr(&iowq), Ordering::Release);
        c.process_wq.store(iowq_ptr(&pwq), Ordering::Release);
        q.io = Some(iowq);
        q.process = Some(pwq);
    }

    // Nodes stopped by a previous `stop` may do I/O again (not the removed ones).
    for node in c.all_nodes().iter() {
        let _tx = node.tx.lock();
        if !node.io_test(io::CLOSED) {
            node.io_test_and_clear(io::IO_STOP);
        }
    }
    if let Err(e) = listen_for_all(&c, proto, &locals) {
        stop(c);
        return Err(e);
    }
    c.running.store(true, Ordering::Release);
    Ok(())
}

fn iowq_ptr(q: &OwnedQueue) -> *mut bindings::workqueue_struct {
    let q: &Queue = q;
    core::ptr::from_ref(q).cast_mut().cast()
}

/// The socket options C sets on every SCTP socket: no Nagle, and a receive buffer of
/// `NEEDED_RMEM`.
fn sctp_sockopts(sock: &Socket) {
    sock.set_nodelay();
    sock.set_rcvbuf(SCTP_RCVBUF);
}

/// Binds an SCTP socket to every local address with port `port_be` (C's `sctp_bind_addrs()`):
/// the first by `kernel_bind()`, the others by `sock_bind_add()`.
fn bind_all(sock: &Socket, locals: &LocalAddrs, port_be: u16) -> Result {
    let family = locals.first().family();
    for (i, a) in locals.iter().enumerate() {
        let mut a = *a;
        a.set_family(family);
        a.set_port_be(port_be);
        let res = if i == 0 {
            sock.bind(&mut a)
        } else {
            sock.bind_add(&mut a)
        };
        if let Err(e) = res {
            log_bind_error(port_be, i, e);
            return Err(e);
        }
    }
    Ok(())
}

/// C's line for a local address (number `i`, from 0) that could not be bound.
fn log_bind_error(port_be: u16, i: usize, e: Error) {
    log_print!(
        "Can't bind to {} addr number {}, {}.",
        u16::from_be(port_be),
        i + 1,
        e.to_errno()
    );
}

/// A TCP listen socket bound to our address `a` (number `i`, from 0) and port `port_be`.
fn tcp_listen_socket(a: &SockAddr, family: u32, i: usize, port_be: u16) -> Result<Socket> {
    let sock = Socket::new(family, Protocol::Tcp)
        .inspect_err(|e| log_print!("Can't create comms socket: {}", e.to_errno()))?;
    sock.set_mark(config::mark());
    sock.set_nodelay();
    sock.set_reuseaddr();
    let mut a = *a;
    a.set_family(family);
    a.set_port_be(port_be);
    if let Err(e) = sock.bind(&mut a) {
        log_bind_error(port_be, i, e);
        return Err(e);
    }
    Ok(sock)
}

fn listen_for_all(c: &Comms, proto: Protocol, locals: &LocalAddrs) -> Result {
    log_print!("Using {} for communications", proto.name());
    let family = locals.first().family();
    let port_be = config::tcp_port_be();
    let mut socks = NO_LISTEN_SOCKETS;
    match proto {
        Protocol::Tcp => {
            if locals.count > 1 {
                // Not C's lines ("... use only the first IP address."): we do not.
                log_print!(
                    "Detect multi-homed hosts: TCP listens on all {} addresses and fails over between them",
                    locals.count
                );
            }
            // The first address as C; the others so that a node of ours can dial any of them
            // (a C node only dials the first).  An extra address we cannot bind is logged and
            // left out.
            for (i, (slot, a)) in socks.iter_mut().zip(locals.iter()).enumerate() {
                match tcp_listen_socket(a, family, i, port_be) {
                    Ok(sock) => *slot = Some(sock),
                    Err(e) if i == 0 => return Err(e),
                    Err(_) => {}
                }
            }
        }
        Protocol::Sctp => {
            if !cfg!(CONFIG_IP_SCTP) {
                log_print!("SCTP is not enabled by this kernel");
                return Err(Error::from_errno(-(bindings::EOPNOTSUPP as i32)));
            }
            // As C, ignoring the result: the socket creation below fails if it is missing.
            let _ = ffi::request_module(c"sctp");
            let sock = Socket::new(family, proto)
                .inspect_err(|e| log_print!("Can't create comms socket: {}", e.to_errno()))?;
            sock.set_mark(config::mark());
            sctp_sockopts(&sock);
            bind_all(&sock, locals, port_be)?;
            socks[0] = Some(sock);
        }
    }
    // The originals of the first: every socket of the protocol has the same.
    let orig = match socks[0].as_ref() {
        Some(sock) => sock.callbacks(),
        None => return Err(EINVAL),
    };
    *c.orig_cbs.lock() = orig;
    let cbs = SkCallbacks {
        data_ready: Some(listen_data_ready),
        // A new SCTP association on the listening socket is reported by a state change; its
        // `sk_data_ready` fires only with the association's first data (all C waits for).
        state_change: match proto {
            Protocol::Tcp => None,
            Protocol::Sctp => Some(listen_data_ready),
        },
        ..SkCallbacks::NONE
    };
    for sock in socks.iter_mut().flatten() {
        // SAFETY: No owner; the listen callback only uses the global state.
        unsafe { sock.install(core::ptr::null(), drop_nothing, &cbs, &orig) };
        sock.listen(LISTEN_BACKLOG)?;
    }
    *c.listen.lock() = socks;
    Ok(())
}

/// Waits (sleeping, uninterruptibly like C) until `node`'s main socket is gone or `ms` pass;
/// false on timeout.
fn wait_main_closed(node: &Node, ms: u32) -> bool {
    node.wait
        .wait_timeout(&node.main, msecs_to_jiffies(ms), |main| main.sock.is_none())
}

/// Stops and cancels all I/O of `node` and closes its sockets (sleeps).  `IO_STOP` is set with
/// the node lock held, as C sets `CF_IO_STOP` under the write queue lock: a commit either
/// queued its send work before (cancelled below) or sees the bit.
pub(crate) fn stop_node_io(node: &Arc<Node>) {
    {
        let _tx = node.tx.lock();
        node.io_test_and_set(io::IO_STOP);
    }
    node.main.lock().close();
    node.other.lock().close();
    cancel_work::<Node, 0>(node.as_arc_borrow());
    cancel_work::<Node, 1>(node.as_arc_borrow());
    cancel_delayed_work::<Node, 2>(node.as_arc_borrow());
    node.io_test_and_clear(io::RECV_PENDING);
    node.io_test_and_clear(io::SEND_PENDING);
    node.io_test_and_clear(io::APP_LIMITED);
    node.io_test_and_clear(io::RESET);
    node.wait.notify_all();
}

/// `dlm_midcomms_close()` transport part, for a node already out of the table: no I/O any
/// more, nothing it sent is delivered any more (what is queued for the lock manager is
/// dropped, and a delivery in progress is waited for), and its queues are freed.
pub(crate) fn close_node(c: &Comms, node: &Arc<Node>) {
    node.io_test_and_set(io::CLOSED);
    stop_node_io(node);
    // Buffers of other nodes stay, in order.  (A buffer being processed right now sees
    // `CLOSED` before its next message; the flush waits for it.)
    c.rxq.lock().retain(|b| !Arc::ptr_eq(&b.node, node));
    if let Some(q) = c.queues.lock().process.as_ref() {
        q.flush();
    }
    let mut tx = node.tx.lock();
    tx.wq.clear();
    tx.unacked.clear();
    tx.resend_next = None;
}

/// Closes the listen socket and cancels the accept work: no new connection comes in.
fn stop_listening(c: ArcBorrow<'_, Comms>) {
    c.running.store(false, Ordering::Release);
    let listen = core::mem::replace(&mut *c.listen.lock(), NO_LISTEN_SOCKETS);
    drop(listen);
    cancel_work::<Comms, 0>(c);
}

/// `dlm_lowcomms_shutdown()` for `nodes`: closes the listen socket, half-closes every
/// connection, waits up to 5 s for each peer's end of stream, then closes and forgets queued
/// output.
pub(crate) fn shutdown(c: ArcBorrow<'_, Comms>, nodes: &[Arc<Node>]) {
    stop_listening(c);
    for node in nodes.iter() {
        if let Some(q) = c.queues.lock().io.as_ref() {
            q.flush();
        }
        let had_sock = {
            let main = node.main.lock();
            match main.sock.as_ref() {
                Some(s) => {
                    // C's `how`: TCP half-closes; SCTP has no half-close and shuts the
                    // association down gracefully.
                    let res = match c.protocol() {
                        Protocol::Tcp => s.shutdown_write(),
                        Protocol::Sctp => s.shutdown_both(),
                    };
                    if let Err(e) = res {
                        log_print!(
                            "Connection to node {} failed to shutdown: {} will force close",
                            node.nodeid,
                            e.to_errno()
                        );
                    }
                    true
                }
                None => false,
            }
        };
        if had_sock && !wait_main_closed(node, SHUTDOWN_WAIT_MS) {
            log_print!(
                "Connection to node {} shutdown timed out, will force close",
                node.nodeid
            );
        }
        stop_node_io(node);
        if let Some(q) = c.queues.lock().process.as_ref() {
            q.flush();
        }
        let mut tx = node.tx.lock();
        tx.wq.clear();
        tx.resend_next = None;
        // As C's allow_connection_io(): the node may do I/O again until `stop`.
        if !node.io_test(io::CLOSED) {
            node.io_test_and_clear(io::IO_STOP);
        }
    }
}

/// `dlm_lowcomms_stop()`: destroys the workqueues.  Before that every node's I/O is stopped
/// (its sockets closed with our callbacks restored, its work items cancelled, `IO_STOP` set so
/// that nothing queues new ones) and the accept and processing works are cancelled, so no
/// socket callback or work item can reach a destroyed queue.
pub(crate) fn stop(c: ArcBorrow<'_, Comms>) {
    stop_listening(c);
    let nodes = c.all_nodes();
    for node in nodes.iter() {
        stop_node_io(node);
    }
    cancel_work::<Comms, 1>(c);
    c.io_wq.store(core::ptr::null_mut(), Ordering::Release);
    c.process_wq.store(core::ptr::null_mut(), Ordering::Release);
    let (io, process) = {
        let mut q = c.queues.lock();
        (q.io.take(), q.process.take())
    };
    drop(io);
    drop(process);
    let rx = core::mem::take(&mut *c.rxq.lock());
    drop(rx);
}

// ---- accept -----------------------------------------------------------------------------

impl WorkItem<0> for Comms {
    type Pointer = Arc<Comms>;

    fn run(c: Arc<Comms>) {
        let _nofs = NofsScope::enter();
        let listen = c.listen.lock();
        for lsock in listen.iter().flatten() {
            loop {
                let sock = match lsock.accept() {
                    Ok(Some(s)) => s,
                    Ok(None) => break,
                    Err(e) => {
                        log_print!("critical error accepting connection: {}", e.to_errno());
                        break;
                    }
                };
                accept_one(&c, sock);
            }
        }
    }
}

/// Maps an accepted connection to its node and installs it.
fn accept_one(c: &Comms, mut sock: Socket) {
    let Ok(mut peer) = sock.peer_addr() else {
        return;
    };
    peer.set_port_be(0);
    let Some(node) = c.node_by_addr(&peer) else {
        // Anyone can dial the port: the lines are C's, but limited (C prints each one).
        match peer.family() {
            bindings::AF_INET => {
                log_print_ratelimited!("connect from non cluster IPv4 node {}", peer)
            }
            bindings::AF_INET6 => {
                log_print_ratelimited!("connect from non cluster IPv6 node {}", peer)
            }
            _ => log_print_ratelimited!("invalid family from non cluster node"),
        }
        // Dropping `sock` refuses the peer; the caller accepts the others.
        return;
    };
    if ffi::fault::accept_stall() {
        // Test hook (debug kernels only): lets a close of the node run between the lookup and
        // the installation of the socket.
        fsleep(Delta::from_millis(ACCEPT_STALL_MS));
    }
    sock.set_mark(node.mark.load(Ordering::Relaxed));
    if c.protocol() == Protocol::Tcp && node.addr_count() > 1 {
        // It may become our main socket: a network that goes silent under it must end it
        // soon, so that we fail over (see `connect`).
        sock.set_user_timeout(TCP_FAILOVER_TIMEOUT_MS);
    }
    install_node_sock(c, &node, &mut sock);
    let mut main = node.main.lock();
    // `dlm_midcomms_close()` (or a shutdown) sets `IO_STOP` before it closes the node's
    // sockets under this lock: a connection accepted after that would stay open, with our
    // callbacks, owned by nobody.  Refuse it.
    if node.io_test(io::IO_STOP) {
        drop(main);
        log_print_ratelimited!(
            "refused a connection from node {}: its comm is closed",
            node.nodeid
        );
        return;
    }
    // A configured peer can reconnect in a loop (or a hostile program from its address):
    // limited, unlike C's.
    log_print_ratelimited!("got connection from {}", node.nodeid);
    if main.sock.is_none() {
        // Our outgoing connect has not happened: this becomes the main socket.
        main.close();
        main.sock = Some(sock);
        node.io_test_and_set(io::RESEND);
        let _tx = node.tx.lock();
        queue_swork(&node);
    } else if c.protocol() == Protocol::Tcp
        && node.addr_count() > 1
        && main
            .sock
            .as_ref()
            .and_then(|s| s.peer_addr().ok())
            .is_some_and(|mut a| {
                a.set_port_be(0);
                !a.same(&peer)
            })
    {
        // The peer dialled from another of its addresses than the one our connection goes to:
        // it failed over, and ours, over the network it left, may be dead without our knowing
        // before our own timeout, while the peer waits for what we send there.  This becomes
        // the main socket, what is unacknowledged goes again on it, and our next connects dial
        // that address.
        node.dial_addr(&peer);
        close_main(&node, &mut main);
        main.sock = Some(sock);
        node.io_test_and_set(io::RESEND);
        let _tx = node.tx.lock();
        queue_swork(&node);
    } else {
        // Crossed connects: keep ours for sending, receive on this one.
        let mut other = node.other.lock();
        other.close();
        other.sock = Some(sock);
        // A peer that connects again while we still have a main socket may have lost its end
        // of it (a reset we never saw, so our socket looks alive): send the unacknowledged
        // messages again.  On a live socket they are duplicates the peer drops and re-acks; on
        // a dead one the peer's reset makes us reconnect.
        let tx = node.tx.lock();
        if tx.unacked.len() != 0 {
            node.io_test_and_set(io::RESEND);
            queue_swork(&node);
        }
    }
    drop(main);
    node.io.fetch_or(io::RECV_INTR, Ordering::AcqRel);
    queue_rwork(&node);
}

// ---- connect and send -------------------------------------------------------------------

/// Connects a new socket to `node` (blocking, without holding the node's socket locks, so
/// receiving and accepting for the node go on meanwhile).
fn connect(c: &Comms, node: &Arc<Node>) -> Result<Socket> {
    let proto = c.protocol();
    let locals = *c.locals.lock();
    let family = locals.first().family();
    // SCTP dials the node's addresses in turn, one per connect (C's `try_new_addr`); once up,
    // the association itself fails over between the addresses of both ends.  TCP dials the
    // current one, which moves on when a connect fails or a connection breaks.
    let (mut addr, index, count) = node.connect_addr(proto == Protocol::Sctp);
    addr.set_family(family);
    addr.set_port_be(config::tcp_port_be());

    log_print_ratelimited!("connecting to {}", node.nodeid);
    let mut sock = Socket::new(family, proto)?;
    sock.set_mark(node.mark.load(Ordering::Relaxed));
    match proto {
        Protocol::Tcp => {
            sock.set_nodelay();
            if count > 1 {
                // A connect or connection on a network that went silent fails within the
                // timeout instead of TCP's minutes, and the next address is tried.
                sock.set_user_timeout(TCP_FAILOVER_TIMEOUT_MS);
            }
            // Bound to our cluster-known address, to avoid routing problems; not fatal.  For
            // the node's address `index`, ours of the same index (dlm_controld lists every
            // node's addresses in the same order, one per network); none if we have fewer.
            if let Some(mut la) = locals.get(index) {
                la.set_family(family);
                la.set_port_be(0);
                if let Err(e) = sock.bind(&mut la) {
                    log_print!("could not bind for connect: {}", e.to_errno());
                }
            }
        }
        Protocol::Sctp => {
            sctp_sockopts(&sock);
            // Every local address, so that the peer learns them all for the association.
            bind_all(&sock, &locals, 0)?;
        }
    }
    install_node_sock(c, node, &mut sock);
    if let Err(e) = sock.connect(&mut addr) {
        c.connection_failed(node);
        return Err(e);
    }
    Ok(sock)
}

/// Installs a socket we connected: as the main socket, or, if the peer's connection was
/// accepted as main meanwhile, as the receive-only one (the crossed-connect case).
fn install_connected(node: &Arc<Node>, main: &mut Conn, sock: Socket) {
    node.io_test_and_clear(io::CONNECT);
    if main.sock.is_none() {
        main.close();
        main.sock = Some(sock);
        node.io_test_and_set(io::RESEND);
    } else {
        let mut other = node.other.lock();
        other.close();
        other.sock = Some(sock);
    }
    node.io.fetch_or(io::RECV_INTR, Ordering::AcqRel);
    queue_rwork(node);
}

/// Closes the main socket after an error or end of stream: drops the partly sent head page
/// and the copies made for the connection (the reliable layer retransmits whole messages
/// after the reconnect).
fn close_main(node: &Arc<Node>, main: &mut Conn) {
    main.close();
    {
        let mut tx = node.tx.lock();
        tx.wq.connection_lost();
        tx.resend_next = None;
        // A socket that waited for write space will never report it now.
        node.io_test_and_clear(io::APP_LIMITED);
    }
    node.wait.notify_all();
}

enum SendStep {
    Sent,
    Idle,
    Wait,
    Broken,
}

fn send_one(node: &Arc<Node>, sock: &Socket) -> SendStep {
    let next = {
        let mut tx = node.tx.lock();
        match tx.wq.next_send() {
            Some(n) => n,
            None => {
                node.io_test_and_clear(io::SEND_PENDING);
                return SendStep::Idle;
            }
        }
    };
    let (page, off, len) = next;
    let res = sock.send_page(&page, off, len);
    trace::send(node.nodeid, Io::trace_ret(&res));
    match res {
        Ok(Io::Done(n)) => {
            node.tx.lock().wq.complete(&page, n);
            SendStep::Sent
        }
        Ok(Io::Again) => {
            let limited = sock.wait_write_space(|| {
                let _tx = node.tx.lock();
                if !node.io_test_and_set(io::APP_LIMITED) {
                    node.io_test_and_clear(io::SEND_PENDING);
                    true
                } else {
                    false
                }
            });
            if limited {
                SendStep::Idle
            } else {
                SendStep::Wait
            }
        }
        Err(_) => SendStep::Broken,
    }
}

/// What the send work does after a step.
enum Next {
    /// Go on in this run.
    More,
    /// Connect (without holding the main socket), then go on.
    Connect,
    /// Stop; `SEND_PENDING` is clear (something queues the work again when needed).
    Done,
    /// Run again after a pause (no memory, failed connect).
    Later(i64),
    /// Run again at once (a fair share of the worker was used).
    Again,
}

/// One step of the send work, holding the main socket.
fn send_step(node: &Arc<Node>, main: &mut Conn) -> Next {
    if node.io_test(io::IO_STOP) {
        node.io_test_and_clear(io::SEND_PENDING);
        return Next::Done;
    }
    if main.sock.is_none() {
        let tx = node.tx.lock();
        if !midcomms::wants_connection(node, &tx) {
            // Cleared under the node lock: a commit after this queues us again.
            node.io_test_and_clear(io::SEND_PENDING);
            main.retries = 0;
            return Next::Done;
        }
        return Next::Connect;
    } else {
        // Connected: a lockspace's request to connect is met.
        node.io_test_and_clear(io::CONNECT);
    }
    if node.io_test(io::RESEND) {
        match midcomms::resend_unacked(node) {
            Ok(true) => {}
            // A reservation is open; its commit queues us again.
            Ok(false) => return Next::Done,
            Err(_) => return Next::Later(RETRY_MS),
        }
    }
    let Some(sock) = main.sock.as_ref() else {
        return Next::More;
    };
    match send_one(node, sock) {
        SendStep::Sent => Next::More,
        SendStep::Idle => Next::Done,
        SendStep::Wait => Next::Again,
        SendStep::Broken => {
            close_main(node, main);
            if let Some(c) = comms() {
                c.connection_failed(node);
            }
            Next::More
        }
    }
}

/// After a connect made without the main socket lock (now held again).
fn connected(node: &Arc<Node>, main: &mut Conn, res: Result<Socket>) -> Next {
    match res {
        Ok(sock) => install_connected(node, main, sock),
        Err(e) => {
            main.retries += 1;
            log_print!(
                "connect to node {} try {} error {}",
                node.nodeid,
                main.retries,
                e.to_errno()
            );
            return Next::Later(1000);
        }
    }
    // A close or shutdown that set `IO_STOP` while we connected closed the sockets it saw; it
    // may have missed this one (as main or as the receive-only socket).
    if node.io_test(io::IO_STOP) {
        main.close();
        node.other.lock().close();
        node.io_test_and_clear(io::SEND_PENDING);
        return Next::Done;
    }
    Next::More
}

impl WorkItem<1> for Node {
    type Pointer = Arc<Node>;

    fn run(node: Arc<Node>) {
        let Some(c) = comms() else {
            return;
        };
        let _nofs = NofsScope::enter();
        // Place what the protocol could not place under memory pressure, with room allocated
        // here (a sleeping allocation) first.
        if node.tx.lock().peer.owes() {
            node.top_up(GFP_KERNEL);
            if !midcomms::flush_owed(&node) {
                fsleep(Delta::from_millis(RETRY_MS));
                requeue_swork(node);
                return;
            }
        }
        let mut main = node.main.lock();
        let mut more = true;
        for _ in 0..SEND_BATCH {
            let next = match send_step(&node, &mut main) {
                Next::Connect => {
                    // Without the socket lock: a connect that hangs (a peer that drops SYNs)
                    // must not stop receiving from or accepting the same node.
                    drop(main);
                    let res = connect(&c, &node);
                    main = node.main.lock();
                    connected(&node, &mut main, res)
                }
                next => next,
            };
            match next {
                Next::More | Next::Connect => {}
                Next::Done => {
                    more = false;
                    break;
                }
                Next::Later(ms) => {
                    drop(main);
                    node.top_up(GFP_KERNEL);
                    fsleep(Delta::from_millis(ms));
                    requeue_swork(node);
                    return;
                }
                Next::Again => break,
            }
        }
        drop(main);
        // Keep a page ready for the senders in atomic context: after the send, not before,
        // so that allocating and zeroing it does not delay what is queued.
        node.top_up(GFP_KERNEL);
        if more {
            requeue_swork(node);
        }
    }
}

// ---- receive ----------------------------------------------------------------------------

/// Outcome of draining one socket.
enum Drain {
    Done,
    /// End of stream, or we closed it (framing error, no memory).
    Closed,
    /// The socket reported an error: the connection broke.
    Failed,
    /// No memory: try again shortly.
    Retry,
    /// The receive queue is long: stop reading until the `dlm_process` worker drained it.
    Backlog,
}

/// Reads `conn` until it has no more data, handing whole messages over.  `spare` is a
/// receive buffer that a read found no data for (data that [`Socket::rx_idle`] saw was taken
/// by another read meanwhile), kept for the next read of this run.
fn drain(c: &Arc<Comms>, node: &Arc<Node>, conn: &mut Conn, spare: &mut Option<KVec<u8>>) -> Drain {
    loop {
        let Some(sock) = conn.sock.as_ref() else {
            return Drain::Done;
        };
        if sock.rx_idle() {
            // No read that would only say EAGAIN (the idle one of two crossed connections,
            // the end of every drain): the callbacks queue this work again for what comes.
            return Drain::Done;
        }
        let bufsize = config::buffer_size().max(MAX_SOCKET_BUFSIZE);
        let mut buf = match spare.take() {
            Some(b) if b.capacity() >= bufsize => b,
            _ => match KVec::<u8>::with_capacity(bufsize, GFP_KERNEL) {
                Ok(b) => b,
                Err(_) => return Drain::Retry,
            },
        };
        buf.clear();
        if buf.extend_from_slice(&conn.leftover, GFP_KERNEL).is_err() {
            return Drain::Retry;
        }
        let res = sock.recv_append(&mut buf);
        trace::recv(node.nodeid, Io::trace_ret(&res));
        match res {
            Ok(Io::Again) => {
                *spare = Some(buf);
                return Drain::Done;
            }
            Ok(Io::Done(0)) => return Drain::Closed,
            Ok(Io::Done(_)) => {}
            Err(_) => return Drain::Failed,
        }
        let (complete, bad) = midcomms::frame(node.nodeid, &buf);
        if bad {
            // The stream cannot be split any more: deliver the whole messages before the bad
            // header, then reset the connection, so the peer (C or ours) sees an error,
            // reconnects and retransmits everything unacknowledged.
            buf.truncate(complete);
            if complete > 0 && hand_over(c, node, buf).is_err() {
                log_print_ratelimited!("no memory for messages from node {}", node.nodeid);
            }
            sock.set_abort_on_close();
            return Drain::Closed;
        }
        conn.leftover.clear();
        if conn
            .leftover
            .extend_from_slice(&buf[complete..], GFP_KERNEL)
            .is_err()
        {
            log_print!("failed to keep partial message from node {}", node.nodeid);
            return Drain::Closed;
        }
        buf.truncate(complete);
        if complete == 0 {
            continue;
        }
        match hand_over(c, node, buf) {
            Ok(backlog) if backlog > MAX_PROCESS_BUFFERS => return Drain::Backlog,
            Ok(_) => {}
            Err(()) => {
                // Messages taken off the socket are gone: reset the connection so the peer
                // retransmits them rather than leave a gap in the sequence.
                log_print_ratelimited!("no memory for messages from node {}", node.nodeid);
                sock.set_abort_on_close();
                return Drain::Closed;
            }
        }
    }
}

/// Queues whole messages for the `dlm_process` BH worker, in arrival order; returns how many
/// buffers are queued.  On `Err` (no memory for the queue entry) the messages are dropped.
fn hand_over(c: &Arc<Comms>, node: &Arc<Node>, data: KVec<u8>) -> core::result::Result<usize, ()> {
    let entry = RxBuf {
        node: node.clone(),
        data,
    };
    let mut q = c.rxq.lock();
    if q.push(entry, GFP_ATOMIC).is_err() {
        return Err(());
    }
    // Queued with BH disabled (the lock), as C does: the softirq that runs the BH worker is
    // then only marked pending and runs when the lock is released, on this CPU, instead of
    // waking ksoftirqd (a scheduler round trip per received buffer).
    if let Some(pq) = c.process_queue() {
        // Already queued is fine: that run takes this buffer too.
        let _ = pq.enqueue::<Arc<Comms>, 1>(c.clone());
    }
    Ok(q.len())
}

/// Back-pressure, as C's: waits (uninterruptibly, no socket lock held) until the
/// `dlm_process` worker has emptied the receive queue.  Not a flush: the BH queue cannot be
/// flushed from a `WQ_MEM_RECLAIM` worker.
fn wait_rx_drained(c: &Comms, node: &Node) {
    while !c
        .rxq_wait
        .wait_timeout(&c.rxq, msecs_to_jiffies(1000), |q| q.is_empty())
    {
        if node.io_test(io::IO_STOP) {
            return;
        }
    }
}

/// Resets both sockets of `node` (`SO_LINGER` 0), after a sequence gap from it persisted.
fn reset_sockets(node: &Arc<Node>) {
    log_print_ratelimited!(
        "node {} skipped a message: resetting its connection so that it retransmits",
        node.nodeid
    );
    {
        let mut main = node.main.lock();
        if let Some(sock) = main.sock.as_ref() {
            sock.set_abort_on_close();
            close_main(node, &mut main);
        }
    }
    {
        let mut other = node.other.lock();
        if let Some(sock) = other.sock.as_ref() {
            sock.set_abort_on_close();
        }
        other.close();
    }
    midcomms::connection_lost(node);
}

impl WorkItem<0> for Node {
    type Pointer = Arc<Node>;

    fn run(node: Arc<Node>) {
        let Some(c) = comms() else {
            return;
        };
        let c: Arc<Comms> = c.into();
        let _nofs = NofsScope::enter();
        loop {
            node.io.fetch_and(!io::RECV_INTR, Ordering::AcqRel);
            if node.io_test_and_clear(io::RESET) {
                reset_sockets(&node);
            }
            let mut retry = false;
            let mut backlog = false;
            let mut spare = None;
            {
                let mut main = node.main.lock();
                match drain(&c, &node, &mut main, &mut spare) {
                    Drain::Done => {}
                    Drain::Retry => retry = true,
                    Drain::Backlog => backlog = true,
                    Drain::Closed => {
                        close_main(&node, &mut main);
                        midcomms::connection_lost(&node);
                    }
                    Drain::Failed => {
                        close_main(&node, &mut main);
                        midcomms::connection_lost(&node);
                        c.connection_failed(&node);
                    }
                }
            }
            if !backlog {
                let mut other = node.other.lock();
                match drain(&c, &node, &mut other, &mut spare) {
                    Drain::Done => {}
                    Drain::Retry => retry = true,
                    Drain::Backlog => backlog = true,
                    Drain::Closed | Drain::Failed => other.close(),
                }
            }
            if node.io_test(io::IO_STOP) {
                node.io_test_and_clear(io::RECV_PENDING);
                return;
            }
            if backlog {
                // Both socket locks are dropped: sending, accepting and connecting for the
                // node go on while we wait.
                wait_rx_drained(&c, &node);
                continue;
            }
            if retry {
                fsleep(Delta::from_millis(RETRY_MS));
                continue;
            }
            node.io_test_and_clear(io::RECV_PENDING);
            if node.io_test(io::RECV_INTR) && !node.io_test_and_set(io::RECV_PENDING) {
                continue;
            }
            return;
        }
    }
}

impl WorkItem<2> for Node {
    type Pointer = Arc<Node>;

    fn run(node: Arc<Node>) {
        midcomms::check_gap(&node);
    }
}

impl WorkItem<1> for Comms {
    type Pointer = Arc<Comms>;

    fn run(c: Arc<Comms>) {
        // BH context: no sleeping below.
        loop {
            let b = {
                let mut q = c.rxq.lock();
                if q.is_empty() {
                    break;
                }
                if ffi::fault::rx_hold() {
                    // Test hook (debug kernels only): the buffers wait for the next run, as
                    // if this worker ran late on another CPU.
                    return;
                }
                q.remove(0)
            };
            if let Ok(b) = b {
                c.deliver(&b.node, &b.data);
            }
        }
        c.rxq_wait.notify_all();
    }
}
