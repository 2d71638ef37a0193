// SPDX-License-Identifier: GPL-2.0

//! DLM 3.1/3.2 protocol glue: version detection, DLM_OPTS sequencing, cumulative acks,
//! duplicate and gap handling, retransmission after a reconnect, the DLM_FIN close handshake,
//! and the send API the lock manager uses (`dlm_midcomms_get_mhandle()` and friends).
//!
//! Runs in the `dlm_process` BH worker (receive side) and in whatever context the lock manager
//! sends from (BH disabled, spinlocks held): only `spin_lock_bh` locks and `GFP_ATOMIC`.
//! Lock order: node state lock, then node write queue lock.

use core::sync::atomic::Ordering;
use kernel::{ffi::c_void, prelude::*, sync::Arc};

use super::{
    ffi,
    log::{log_print, log_print_ratelimited},
    lowcomms::{self, our_nodeid, queue_swork, MAX_SOCKET_BUFSIZE},
    node::{io, mflag, FinKind, FinState, MidState, Node, Tx},
    page::SendPage,
};

/// Protocol 3.1: plain messages, no sequence numbers.
pub(crate) const VERSION_3_1: u32 = 0x0003_0001;
/// Protocol 3.2: reliable messages wrapped in DLM_OPTS.
pub(crate) const VERSION_3_2: u32 = 0x0003_0002;

const HEADER_LEN: usize = 16;
const OPTS_LEN: usize = 24;
const MSG_MIN: usize = 88;
const RCOM_MIN: usize = 48;
/// `DLM_MAX_APP_BUFSIZE`.
const MAX_APP_BUFSIZE: usize = MAX_SOCKET_BUFSIZE - OPTS_LEN;

const CMD_MSG: u8 = 1;
const CMD_RCOM: u8 = 2;
const CMD_OPTS: u8 = 3;
const CMD_ACK: u8 = 4;
const CMD_FIN: u8 = 5;

const RCOM_STATUS: u32 = 1;
const RCOM_NAMES: u32 = 2;
const RCOM_STATUS_REPLY: u32 = 5;
const RCOM_NAMES_REPLY: u32 = 6;

/// Ack after this many deliveries when we are not sending (`DLM_RECV_ACK_BACK_MSG_THRESHOLD`).
const RECV_ACK_THRESHOLD: u32 = 256;
/// Ack before a send after this many deliveries (`DLM_SEND_ACK_BACK_MSG_THRESHOLD`).
const SEND_ACK_THRESHOLD: u32 = 32;
/// `DLM_SHUTDOWN_TIMEOUT`.
const SHUTDOWN_TIMEOUT_MS: u32 = 5000;

// ---- header access ----------------------------------------------------------------------

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn h_version(b: &[u8]) -> u32 {
    le32(b, 0)
}

fn h_seq(b: &[u8]) -> u32 {
    le32(b, 4)
}

fn h_length(b: &[u8]) -> usize {
    u16::from_le_bytes([b[12], b[13]]).into()
}

fn h_cmd(b: &[u8]) -> u8 {
    b[14]
}

/// Writes a 16-byte `dlm_header`.
fn put_header(b: &mut [u8], seq: u32, len: usize, cmd: u8) {
    b[0..4].copy_from_slice(&VERSION_3_2.to_le_bytes());
    b[4..8].copy_from_slice(&seq.to_le_bytes());
    b[8..12].copy_from_slice(&(our_nodeid() as u32).to_le_bytes());
    b[12..14].copy_from_slice(&(len as u16).to_le_bytes());
    b[14] = cmd;
    b[15] = 0;
}

/// `before(a, b)` of TCP: wrap-safe sequence comparison.
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

// ---- framing (dlm_io worker) ------------------------------------------------------------

/// Returns how many leading bytes of `buf` form whole messages, or `Err` (after one log line)
/// when a header carries an impossible length: the caller closes the connection, the peer
/// reconnects and the reliable layer retransmits, instead of C's stalled receive.
pub(crate) fn frame(nodeid: i32, buf: &[u8]) -> core::result::Result<usize, ()> {
    crate::proto::framer::complete_len(buf).map_err(|e| {
        log_print!(
            "received invalid header from node {}: {}, will close the connection",
            nodeid,
            e
        );
    })
}

// ---- receive (dlm_process BH worker) ----------------------------------------------------

fn deliver(node: &Node, p: &[u8]) {
    // SAFETY: `p` is a whole message of at least the minimum size for its command, valid for
    // the duration of the call; `dlm_receive_buffer` does not keep the pointer.
    unsafe { ffi::dlm_receive_buffer(p.as_ptr().cast::<c_void>(), node.nodeid) };
}

/// Processes a buffer of whole messages from `node`, in order.
pub(crate) fn process(node: &Arc<Node>, buf: &[u8]) {
    let mut pos = 0;
    while buf.len() - pos >= HEADER_LEN {
        let len = h_length(&buf[pos..]);
        if len < HEADER_LEN || len > buf.len() - pos {
            break;
        }
        let msg = &buf[pos..pos + len];
        pos += len;
        match h_version(msg) {
            VERSION_3_1 => receive_3_1(node, msg),
            VERSION_3_2 => receive_3_2(node, msg),
            v => log_print!(
                "received invalid version header: {} from node {}, will skip this message",
                v,
                node.nodeid
            ),
        }
    }
}

/// Learns or checks the peer's version; false when the message must be dropped.
fn version_check(node: &Node, version: u32) -> bool {
    let cur = node.version.load(Ordering::Acquire);
    if cur == version {
        return true;
    }
    if cur != 0 {
        log_print_ratelimited!(
            "version mismatch detected, assumed 0x{:08x} but node {} has 0x{:08x}",
            cur,
            node.nodeid,
            version
        );
        return false;
    }
    {
        let mut st = node.st.lock();
        if node
            .version
            .compare_exchange(0, version, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            log_print!(
                "version 0x{:08x} for node {} detected",
                version,
                node.nodeid
            );
            if version == VERSION_3_2 && st.state == FinState::Closed {
                st.state = FinState::Established;
            }
        }
    }
    node.wait.notify_all();
    node.version.load(Ordering::Acquire) == version
}

fn receive_3_1(node: &Arc<Node>, msg: &[u8]) {
    if !version_check(node, VERSION_3_1) {
        return;
    }
    match h_cmd(msg) {
        CMD_MSG if msg.len() < MSG_MIN => log_print!(
            "msg too small: {}, will skip this message from node {}",
            msg.len(),
            node.nodeid
        ),
        CMD_RCOM if msg.len() < RCOM_MIN => log_print!(
            "rcom msg too small: {}, will skip this message from node {}",
            msg.len(),
            node.nodeid
        ),
        CMD_MSG | CMD_RCOM => deliver(node, msg),
        cmd => log_print!(
            "unsupported h_cmd received: {}, will skip this message from node {}",
            cmd,
            node.nodeid
        ),
    }
}

fn receive_3_2(node: &Arc<Node>, msg: &[u8]) {
    if !version_check(node, VERSION_3_2) {
        return;
    }
    match h_cmd(msg) {
        CMD_RCOM => {
            // Stateless recovery messages (version detection and bootstrap).
            if msg.len() < RCOM_MIN {
                log_print!(
                    "rcom msg too small: {}, will skip this message from node {}",
                    msg.len(),
                    node.nodeid
                );
                return;
            }
            match le32(msg, 16) {
                RCOM_STATUS | RCOM_NAMES | RCOM_STATUS_REPLY | RCOM_NAMES_REPLY => {
                    deliver(node, msg)
                }
                t => log_print!(
                    "unsupported rcom type received: {}, will skip this message from node {}",
                    t,
                    node.nodeid
                ),
            }
        }
        CMD_OPTS => receive_opts(node, msg),
        CMD_ACK => receive_ack(node, h_seq(msg)),
        cmd => log_print!(
            "unsupported h_cmd received: {}, will skip this message from node {}",
            cmd,
            node.nodeid
        ),
    }
}

fn min_len(cmd: u8) -> Option<usize> {
    match cmd {
        CMD_FIN => Some(HEADER_LEN),
        CMD_MSG => Some(MSG_MIN),
        CMD_RCOM => Some(RCOM_MIN),
        _ => None,
    }
}

fn receive_opts(node: &Arc<Node>, msg: &[u8]) {
    if msg.len() < OPTS_LEN {
        log_print!(
            "opts msg too small: {}, will skip this message from node {}",
            msg.len(),
            node.nodeid
        );
        return;
    }
    let nextcmd = msg[16];
    let optlen = usize::from(u16::from_le_bytes([msg[18], msg[19]]));
    let Some(min) = min_len(nextcmd) else {
        log_print!(
            "unsupported o_nextcmd received: {}, will skip this message from node {}",
            nextcmd,
            node.nodeid
        );
        return;
    };
    let inner_off = OPTS_LEN + optlen;
    if msg.len() < inner_off + min {
        log_print!(
            "opts msg too small: {}, will skip this message from node {}",
            msg.len(),
            node.nodeid
        );
        return;
    }
    let rest = &msg[inner_off..];
    let inner_len = h_length(rest);
    let inner_cmd = h_cmd(rest);
    let Some(inner_min) = min_len(inner_cmd) else {
        log_print!(
            "unsupported inner h_cmd received: {}, will skip this message from node {}",
            inner_cmd,
            node.nodeid
        );
        return;
    };
    // Stricter than C: the inner length must fit the outer frame.
    if inner_len < inner_min || inner_len > rest.len() {
        log_print!(
            "inner msg length {} invalid for cmd {}, will skip this message from node {}",
            inner_len,
            inner_cmd,
            node.nodeid
        );
        return;
    }
    receive_seq(node, &rest[..inner_len], h_seq(msg));
}

fn receive_seq(node: &Arc<Node>, inner: &[u8], seq: u32) {
    let mut st = node.st.lock();
    let expected = st.seq_next;
    if seq != expected {
        drop(st);
        if before(seq, expected) {
            send_ack(node, expected);
        }
        log_print_ratelimited!(
            "ignore dlm msg because seq mismatch, seq: {}, expected: {}, nodeid: {}",
            seq,
            expected,
            node.nodeid
        );
        return;
    }
    let next = expected.wrapping_add(1);
    st.seq_next = next;
    node.seq_next.store(next, Ordering::Release);
    if h_cmd(inner) == CMD_FIN {
        receive_fin(node, &mut st, next);
        drop(st);
        node.wait.notify_all();
        return;
    }
    drop(st);
    if node.mflag_test(mflag::STOP_RX) {
        kernel::pr_warn_once!("dlm: message from node {} after its FIN\n", node.nodeid);
    }
    deliver(node, inner);
    node.ulp_delivered.fetch_add(1, Ordering::AcqRel);
    send_ack_threshold(node, RECV_ACK_THRESHOLD);
}

fn receive_fin(node: &Arc<Node>, st: &mut MidState, next: u32) {
    match st.state {
        FinState::Established => {
            send_ack(node, next);
            if st.users == 0 {
                // Passive close, case 1.
                st.state = FinState::LastAck;
                node.mflag_set(mflag::STOP_RX);
                send_fin(node, FinKind::Passive);
            } else {
                st.state = FinState::CloseWait;
            }
        }
        FinState::FinWait1 => {
            send_ack(node, next);
            st.state = FinState::Closing;
            node.mflag_set(mflag::STOP_RX);
        }
        FinState::FinWait2 => {
            send_ack(node, next);
            reset_locked(node, st);
        }
        FinState::LastAck => {
            // Probably remove_member caught it; as C, nothing to do.
        }
        s => log_print!("receive_fin: unexpected state: {}", s as i32),
    }
}

fn receive_ack(node: &Arc<Node>, ack: u32) {
    let mut active = false;
    let mut passive = false;
    {
        let mut tx = node.tx.lock();
        tx.unacked.retain(|m| {
            if before(m.seq, ack) {
                match m.fin {
                    Some(FinKind::Active) => active = true,
                    Some(FinKind::Passive) => passive = true,
                    None => {}
                }
                false
            } else {
                true
            }
        });
        node.send_queue_cnt
            .store(tx.unacked.len() as i32, Ordering::Release);
    }
    if active {
        let mut st = node.st.lock();
        match st.state {
            FinState::FinWait1 => st.state = FinState::FinWait2,
            FinState::Closing => reset_locked(node, &mut st),
            FinState::Closed => {}
            s => log_print!("active fin ack: unexpected state: {}", s as i32),
        }
    }
    if passive {
        let mut st = node.st.lock();
        match st.state {
            FinState::LastAck => reset_locked(node, &mut st),
            FinState::Closed => {}
            s => log_print!("passive fin ack: unexpected state: {}", s as i32),
        }
    }
    if active || passive {
        node.wait.notify_all();
    }
}

/// `midcomms_node_reset()`: back to CLOSED with no version, no sequence state and nothing
/// waiting for an ack.  Called with the state lock held.
fn reset_locked(node: &Node, st: &mut MidState) {
    st.seq_next = 0;
    st.state = FinState::Closed;
    node.seq_next.store(0, Ordering::Release);
    node.ulp_delivered.store(0, Ordering::Release);
    node.version.store(0, Ordering::Release);
    node.mflags.store(0, Ordering::Release);
    let mut tx = node.tx.lock();
    tx.seq_send = 0;
    tx.unacked.clear();
    node.send_queue_cnt.store(0, Ordering::Release);
}

/// Resets `node` (state lock taken here) and wakes waiters.
pub(crate) fn reset(node: &Node) {
    {
        let mut st = node.st.lock();
        reset_locked(node, &mut st);
    }
    node.wait.notify_all();
}

// ---- sending ----------------------------------------------------------------------------

/// Reserves, fills and commits a complete message in one step.
fn send_now(
    node: &Arc<Node>,
    len: usize,
    reliable: Option<Option<FinKind>>,
    fill: impl FnOnce(&mut [u8], Option<u32>),
) -> Result {
    let mut tx = node.tx.lock();
    let r = tx.reserve(len, reliable)?;
    // SAFETY: The reservation `r.off..r.off + len` is ours until the commit below.
    fill(unsafe { r.page.bytes_mut(r.off, len) }, r.seq);
    if tx.commit(&r.page, r.seq) {
        queue_swork(node);
    }
    if reliable.is_some() {
        node.send_queue_cnt
            .store(tx.unacked.len() as i32, Ordering::Release);
    }
    Ok(())
}

/// Sends a DLM_ACK carrying `seq` (the next sequence number we expect).
fn send_ack(node: &Arc<Node>, seq: u32) {
    if send_now(node, HEADER_LEN, None, |b, _| {
        put_header(b, seq, HEADER_LEN, CMD_ACK)
    })
    .is_err()
    {
        log_print_ratelimited!("failed to allocate ack for node {}", node.nodeid);
    }
}

fn send_ack_threshold(node: &Arc<Node>, threshold: u32) {
    let mut cur = node.ulp_delivered.load(Ordering::Acquire);
    loop {
        if cur <= threshold {
            return;
        }
        match node
            .ulp_delivered
            .compare_exchange(cur, 0, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => break,
            Err(v) => cur = v,
        }
    }
    send_ack(node, node.seq_next.load(Ordering::Acquire));
}

/// Sends our FIN (sequenced, like any reliable message).
fn send_fin(node: &Arc<Node>, kind: FinKind) {
    let len = OPTS_LEN + HEADER_LEN;
    let ret = send_now(node, len, Some(Some(kind)), |b, seq| {
        put_header(&mut b[..HEADER_LEN], seq.unwrap_or(0), len, CMD_OPTS);
        b[16] = CMD_FIN;
        put_header(&mut b[OPTS_LEN..], 0, HEADER_LEN, CMD_FIN);
    });
    node.mflag_set(mflag::STOP_TX);
    if ret.is_err() {
        log_print_ratelimited!("failed to allocate fin for node {}", node.nodeid);
    }
}

/// What a send handle reserved.
pub(crate) struct Handle {
    node: Arc<Node>,
    page: Arc<SendPage>,
    off: usize,
    len: usize,
    seq: Option<u32>,
}

impl Handle {
    /// Where the caller builds its message.
    pub(crate) fn payload(&self) -> *mut u8 {
        let skip = if self.seq.is_some() { OPTS_LEN } else { 0 };
        self.page.ptr_at(self.off + skip)
    }

    /// Ends the reservation and queues transmission.
    pub(crate) fn commit(&self) {
        let mut tx = self.node.tx.lock();
        if self.seq.is_some() {
            // SAFETY: The reservation is still ours; fill in `o_nextcmd` from the inner header.
            let b = unsafe { self.page.bytes_mut(self.off, self.len) };
            b[16] = b[OPTS_LEN + 14];
        }
        if tx.commit(&self.page, self.seq) {
            queue_swork(&self.node);
        }
    }
}

/// Reserves `len` bytes for a plain (unsequenced) message; `cb(data)` runs under the write queue
/// lock at the moment the position is fixed.  `dlm_lowcomms_new_msg()`.
pub(crate) fn new_plain(
    node: Arc<Node>,
    len: usize,
    cb: Option<unsafe extern "C" fn(*mut c_void)>,
    data: *mut c_void,
) -> Result<KBox<Handle>> {
    let slot = KBox::<Handle>::new_uninit(GFP_ATOMIC)?;
    let mut tx = node.tx.lock();
    let r = tx.reserve(len, None)?;
    if let Some(cb) = cb {
        // SAFETY: The caller's callback with the caller's data, as the C API defines.
        unsafe { cb(data) };
    }
    drop(tx);
    Ok(KBox::write(
        slot,
        Handle {
            node,
            page: r.page,
            off: r.off,
            len,
            seq: None,
        },
    ))
}

/// `dlm_midcomms_get_mhandle()`: a reservation for a message of `len` bytes to `node`,
/// sequenced and wrapped in DLM_OPTS for 3.2 peers, plain for 3.1 peers.
pub(crate) fn get_mhandle(node: Arc<Node>, len: usize) -> Option<KBox<Handle>> {
    if node.mflag_test(mflag::STOP_TX) {
        kernel::pr_warn_once!("dlm: sending to node {} after our FIN\n", node.nodeid);
    }
    match node.version.load(Ordering::Acquire) {
        VERSION_3_1 => {
            if !(HEADER_LEN..=MAX_SOCKET_BUFSIZE).contains(&len) {
                kernel::warn_on!(true);
                return None;
            }
            new_plain(node, len, None, core::ptr::null_mut()).ok()
        }
        VERSION_3_2 => {
            if !(HEADER_LEN..=MAX_APP_BUFSIZE).contains(&len) {
                return None;
            }
            send_ack_threshold(&node, SEND_ACK_THRESHOLD);
            let total = len + OPTS_LEN;
            let slot = KBox::<Handle>::new_uninit(GFP_ATOMIC).ok()?;
            let r = {
                let mut tx = node.tx.lock();
                let r = tx.reserve(total, Some(None)).ok()?;
                node.send_queue_cnt
                    .store(tx.unacked.len() as i32, Ordering::Release);
                r
            };
            // SAFETY: The reservation is ours until commit.
            let b = unsafe { r.page.bytes_mut(r.off, OPTS_LEN) };
            put_header(&mut b[..HEADER_LEN], r.seq.unwrap_or(0), total, CMD_OPTS);
            Some(KBox::write(
                slot,
                Handle {
                    node,
                    page: r.page,
                    off: r.off,
                    len: total,
                    seq: r.seq,
                },
            ))
        }
        _ => {
            kernel::warn_on!(true);
            None
        }
    }
}

/// After a new sending socket was installed: puts copies of every unacknowledged message that
/// already went out (in sequence order) in front of the unsent queue, so the peer sees every
/// message from its next expected sequence number on.  False when an open reservation makes
/// the caller retry shortly.
pub(crate) fn resend_unacked(node: &Arc<Node>) -> bool {
    let mut tx = node.tx.lock();
    if node.version.load(Ordering::Acquire) != VERSION_3_2 || tx.unacked.is_empty() {
        node.io_test_and_clear(io::RESEND);
        return true;
    }
    if tx.has_open_reservation() || tx.unacked.iter().any(|m| !m.committed) {
        return false;
    }
    match requeue_sent(node.nodeid, &mut tx) {
        Ok(()) => {
            node.io_test_and_clear(io::RESEND);
            true
        }
        Err(_) => false,
    }
}

fn requeue_sent(nodeid: i32, tx: &mut Tx) -> Result {
    let mut fresh = Tx {
        entries: KVec::new(),
        seq_send: 0,
        unacked: KVec::new(),
    };
    for m in tx.unacked.iter() {
        if tx.entries.iter().any(|e| Arc::ptr_eq(&e.page, &m.page)) {
            // Still queued and not sent: goes out in place, after the copies.
            continue;
        }
        let r = fresh.reserve(m.len, None)?;
        // SAFETY: The fresh reservation is ours; the original is committed and immutable.
        unsafe { r.page.bytes_mut(r.off, m.len) }
            .copy_from_slice(unsafe { m.page.bytes(m.off, m.len) });
        fresh.commit(&r.page, None);
        log_print_ratelimited!("retransmit dlm msg, seq {}, nodeid {}", m.seq, nodeid);
    }
    if fresh.entries.is_empty() {
        return Ok(());
    }
    fresh.entries.reserve(tx.entries.len(), GFP_ATOMIC)?;
    for e in tx.entries.drain_all() {
        let _ = fresh.entries.push_within_capacity(e);
    }
    tx.entries = fresh.entries;
    Ok(())
}

/// The main connection to `node` ended: reconnect at once if the peer still owes us acks.
pub(crate) fn connection_lost(node: &Arc<Node>) {
    let tx = node.tx.lock();
    if !tx.unacked.is_empty() || !tx.entries.is_empty() {
        queue_swork(node);
    }
}

// ---- membership and the close handshake (process context) -------------------------------

/// `dlm_midcomms_add_member()`.
pub(crate) fn add_member(node: &Arc<Node>) {
    let mut st = node.st.lock();
    if st.users == 0 {
        match st.state {
            FinState::Established => {}
            FinState::Closed => st.state = FinState::Established,
            _ => {
                log_print!("reset node {} because shutdown stuck", node.nodeid);
                reset_locked(node, &mut st);
                st.state = FinState::Established;
            }
        }
    }
    st.users += 1;
}

/// `dlm_midcomms_remove_member()`.
pub(crate) fn remove_member(node: &Arc<Node>) {
    let mut st = node.st.lock();
    if st.users == 0 {
        return;
    }
    st.users -= 1;
    if st.users == 0 {
        match st.state {
            FinState::CloseWait => {
                // Passive close, case 2.
                st.state = FinState::LastAck;
                node.mflag_set(mflag::STOP_RX);
                send_fin(node, FinKind::Passive);
            }
            FinState::Established | FinState::LastAck | FinState::Closed => {}
            s => log_print!("remove_member: unexpected state: {}", s as i32),
        }
    }
}

/// Waits up to 5 s (sleeping) until `done(node)` holds; false on timeout.
fn wait_for(node: &Node, done: impl Fn(&Node, &MidState) -> bool) -> bool {
    let deadline = super::log::jiffies()
        .wrapping_add(kernel::time::msecs_to_jiffies(SHUTDOWN_TIMEOUT_MS) as usize);
    let mut st = node.st.lock();
    loop {
        if done(node, &st) {
            return true;
        }
        let left = deadline.wrapping_sub(super::log::jiffies()) as isize;
        if left <= 0 {
            return false;
        }
        let _ = node
            .wait
            .wait_interruptible_timeout(&mut st, left.min(10) as kernel::time::Jiffies);
    }
}

/// `dlm_midcomms_version_wait()`.
pub(crate) fn version_wait(c: &lowcomms::Comms) {
    for node in c.all_nodes().iter() {
        wait_for(node, |n, st| {
            n.version.load(Ordering::Acquire) != 0
                || st.state == FinState::Closed
                || n.mflag_test(mflag::CLOSE)
        });
    }
}

/// The active close with one node.
fn shutdown_node(node: &Arc<Node>) {
    if node.version.load(Ordering::Acquire) != VERSION_3_2 {
        return;
    }
    {
        let mut st = node.st.lock();
        if st.state == FinState::Established {
            st.state = FinState::FinWait1;
            send_fin(node, FinKind::Active);
        }
    }
    wait_for(node, |n, st| {
        st.state == FinState::Closed || n.mflag_test(mflag::CLOSE)
    });
}

/// `dlm_midcomms_shutdown()`.
pub(crate) fn shutdown(c: kernel::sync::ArcBorrow<'_, lowcomms::Comms>) {
    let _g = c.close_lock.lock();
    let nodes = c.all_nodes();
    for node in nodes.iter() {
        shutdown_node(node);
    }
    lowcomms::shutdown(c);
    for node in nodes.iter() {
        reset(node);
    }
}

/// Debugfs `send_queue_count`.
pub(crate) fn send_queue_cnt(node: &Node) -> i32 {
    node.send_queue_cnt.load(Ordering::Acquire)
}

/// Debugfs `rawmsg`: sends `buf` as is; an OPTS header with seq 0 gets the next seq (not
/// tracked for ack, as in C).
pub(crate) fn rawmsg_send(node: &Arc<Node>, buf: &[u8]) -> Result {
    if !(HEADER_LEN..=MAX_SOCKET_BUFSIZE).contains(&buf.len()) {
        return Err(EINVAL);
    }
    let fill_seq = node.version.load(Ordering::Acquire) != VERSION_3_1
        && h_cmd(buf) == CMD_OPTS
        && h_seq(buf) == 0;
    let mut tx = node.tx.lock();
    let r = tx.reserve(buf.len(), None)?;
    // SAFETY: The reservation is ours until the commit below.
    let b = unsafe { r.page.bytes_mut(r.off, buf.len()) };
    b.copy_from_slice(buf);
    if fill_seq {
        let seq = tx.seq_send;
        tx.seq_send = seq.wrapping_add(1);
        b[4..8].copy_from_slice(&seq.to_le_bytes());
    }
    if tx.commit(&r.page, None) {
        queue_swork(node);
    }
    Ok(())
}

/// The state name for debugfs.
pub(crate) fn state_name(node: &Node) -> &'static CStr {
    node.st.lock().state.name()
}
