// SPDX-License-Identifier: GPL-2.0

//! The C ABI of fs/dlm/midcomms.h and fs/dlm/lowcomms.h (7.2) that the lock-manager C files of
//! dlm.ko call: `#[no_mangle] extern "C"` functions with the exact prototypes.  Each converts
//! raw arguments and defers to the safe code in `lowcomms` and `midcomms`.
//!
//! Opaque C types map as follows: `struct dlm_mhandle *` and `struct dlm_msg *` are a leaked
//! `KBox<midcomms::Handle>`; `struct midcomms_node *` (debugfs private data) is a `*const Node`
//! kept alive by the node table until the debugfs directory is removed.

use core::sync::atomic::Ordering;
use kernel::{
    bindings,
    ffi::{c_char, c_int, c_uint, c_ulong, c_void},
    prelude::*,
    sync::Arc, //
};

use super::{
    ffi,
    log::{log_print, warn_on_once},
    lowcomms::{self, comms},
    midcomms::{self, Handle},
    node::{io, Node},
    sock::SockAddr,
};

fn errno(e: Error) -> c_int {
    e.to_errno()
}

fn lookup(nodeid: c_int) -> Option<Arc<Node>> {
    comms()?.node(nodeid)
}

/// # Safety
///
/// `node` must be a pointer handed to debugfs by `dlm_midcomms_addr()` whose directory still
/// exists.
unsafe fn debug_node<'a>(node: *const c_void) -> &'a Node {
    // SAFETY: Per the contract, the node table keeps the node alive while debugfs can call us.
    unsafe { &*node.cast::<Node>() }
}

// ---- lowcomms.h -------------------------------------------------------------------------

#[no_mangle]
extern "C" fn dlm_lowcomms_is_running() -> bool {
    comms().is_some_and(|c| c.is_running())
}

#[no_mangle]
extern "C" fn dlm_lowcomms_connect_node(nodeid: c_int) -> c_int {
    let Some(node) = lookup(nodeid) else {
        warn_on_once!(true);
        return ENOENT.to_errno();
    };
    // The send work connects if there is no connection (and forgets the request if there is
    // one); asking it never waits for the node's socket lock.
    let _tx = node.tx.lock();
    node.io_test_and_set(io::CONNECT);
    lowcomms::queue_swork(&node);
    0
}

#[no_mangle]
pub(crate) extern "C" fn dlm_lowcomms_nodes_set_mark(nodeid: c_int, mark: c_uint) -> c_int {
    let Some(node) = lookup(nodeid) else {
        return ENOENT.to_errno();
    };
    node.mark.store(mark, Ordering::Relaxed);
    0
}

/// # Safety
///
/// `ppc` must be a valid out pointer; `cb`, if any, must accept `data`.
#[no_mangle]
unsafe extern "C" fn dlm_lowcomms_new_msg(
    nodeid: c_int,
    len: c_int,
    ppc: *mut *mut c_char,
    cb: Option<unsafe extern "C" fn(*mut c_void)>,
    data: *mut c_void,
) -> *mut c_void {
    if warn_on_once!(!(16..=lowcomms::MAX_SOCKET_BUFSIZE as c_int).contains(&len)) {
        log_print!("failed to allocate a buffer of size {}", len);
        return core::ptr::null_mut();
    }
    let Some(node) = lookup(nodeid) else {
        warn_on_once!(true);
        return core::ptr::null_mut();
    };
    match midcomms::new_plain(node, len as usize, cb, data) {
        Ok(h) => {
            // SAFETY: `ppc` is a valid out pointer per the contract.
            unsafe { *ppc = h.payload() };
            KBox::into_raw(h).cast()
        }
        Err(_) => core::ptr::null_mut(),
    }
}

/// # Safety
///
/// `msg` must come from `dlm_lowcomms_new_msg()` and not be committed yet.
#[no_mangle]
unsafe extern "C" fn dlm_lowcomms_commit_msg(msg: *mut c_void) {
    // SAFETY: Per the contract `msg` is a live handle; the caller keeps it until put.
    let h = unsafe { &*msg.cast::<Handle>() };
    h.commit(core::ptr::null(), 0);
}

/// # Safety
///
/// `msg` must come from `dlm_lowcomms_new_msg()`, be committed, and not be used afterwards.
#[no_mangle]
unsafe extern "C" fn dlm_lowcomms_put_msg(msg: *mut c_void) {
    // SAFETY: Per the contract this is the last use of the leaked box.
    drop(unsafe { KBox::from_raw(msg.cast::<Handle>()) });
}

#[no_mangle]
extern "C" fn dlm_lowcomms_writequeue_cache_create() -> *mut bindings::kmem_cache {
    // SAFETY: Static name; memory.c destroys the cache.
    unsafe { ffi::dlm_rs_kmem_cache_create(c"dlm_writequeue".as_char_ptr(), 64) }
}

#[no_mangle]
extern "C" fn dlm_lowcomms_msg_cache_create() -> *mut bindings::kmem_cache {
    // SAFETY: Static name; memory.c destroys the cache.
    unsafe { ffi::dlm_rs_kmem_cache_create(c"dlm_msg".as_char_ptr(), 64) }
}

// ---- midcomms.h -------------------------------------------------------------------------

#[no_mangle]
extern "C" fn dlm_midcomms_cache_create() -> *mut bindings::kmem_cache {
    // SAFETY: Static name; memory.c destroys the cache.
    unsafe { ffi::dlm_rs_kmem_cache_create(c"dlm_mhandle".as_char_ptr(), 64) }
}

/// # Safety
///
/// `ppc` must be a valid out pointer.
#[no_mangle]
unsafe extern "C" fn dlm_midcomms_get_mhandle(
    nodeid: c_int,
    len: c_int,
    ppc: *mut *mut c_char,
) -> *mut c_void {
    let Some(node) = lookup(nodeid) else {
        warn_on_once!(true);
        return core::ptr::null_mut();
    };
    if len < 0 {
        return core::ptr::null_mut();
    }
    match midcomms::get_mhandle(node, len as usize) {
        Some(h) => {
            // SAFETY: `ppc` is a valid out pointer per the contract.
            unsafe { *ppc = h.payload() };
            KBox::into_raw(h).cast()
        }
        None => core::ptr::null_mut(),
    }
}

/// # Safety
///
/// `mh` must come from `dlm_midcomms_get_mhandle()`; it is consumed.
#[no_mangle]
unsafe extern "C" fn dlm_midcomms_commit_mhandle(
    mh: *mut c_void,
    name: *const c_void,
    namelen: c_int,
) {
    // SAFETY: Per the contract this is the handle's only and last use.
    let h = unsafe { KBox::from_raw(mh.cast::<Handle>()) };
    h.commit(name, namelen);
}

/// # Safety
///
/// `addr` must point to a `struct sockaddr_storage`.
#[no_mangle]
unsafe extern "C" fn dlm_midcomms_addr(nodeid: c_int, addr: *const c_void) -> c_int {
    // SAFETY: `addr` points to a `sockaddr_storage` per the contract.
    let a = unsafe { SockAddr::from_ptr(addr) };
    match midcomms_addr(nodeid, &a) {
        Ok(()) => 0,
        Err(e) => errno(e),
    }
}

/// `dlm_midcomms_addr()` for the configfs `addr` write.
pub(crate) fn midcomms_addr(nodeid: c_int, a: &SockAddr) -> Result {
    let c = comms().ok_or(ENOMEM)?;
    if let Some(node) = c.add_addr(nodeid, a)? {
        debugfs_create(&node);
    }
    Ok(())
}

#[cfg(CONFIG_DLM_DEBUG)]
fn debugfs_create(node: &Arc<Node>) {
    let data = Arc::as_ptr(node).cast_mut().cast::<c_void>();
    // SAFETY: `data` stays valid until `debugfs_delete`, which runs before the table lets go.
    let d = unsafe { ffi::dlm_create_debug_comms_file(node.nodeid, data) };
    node.debugfs.store(d, Ordering::Release);
}

#[cfg(not(CONFIG_DLM_DEBUG))]
fn debugfs_create(_node: &Arc<Node>) {}

#[cfg(CONFIG_DLM_DEBUG)]
fn debugfs_delete(node: &Node) {
    let d = node.debugfs.swap(core::ptr::null_mut(), Ordering::AcqRel);
    if !d.is_null() {
        // SAFETY: `d` came from `dlm_create_debug_comms_file`.
        unsafe { ffi::dlm_delete_debug_comms_file(d) };
    }
}

#[cfg(not(CONFIG_DLM_DEBUG))]
fn debugfs_delete(_node: &Node) {}

#[no_mangle]
extern "C" fn dlm_midcomms_version_wait() {
    if let Some(c) = comms() {
        midcomms::version_wait(&c);
    }
}

/// Stops and frees everything of one node that is no longer in the table: no I/O, nothing of
/// it delivered any more, queues freed, debugfs gone.
fn finish_node(c: &lowcomms::Comms, node: &Arc<Node>) {
    lowcomms::close_node(c, node);
    debugfs_delete(node);
}

#[no_mangle]
pub(crate) extern "C" fn dlm_midcomms_close(nodeid: c_int) -> c_int {
    let Some(c) = comms() else {
        return ENOENT.to_errno();
    };
    // Abort a close handshake or version wait that is waiting for this node.
    if let Some(node) = c.node(nodeid) {
        midcomms::close(&node);
    }
    let _g = c.close_lock.lock();
    let Some(node) = c.remove_node(nodeid) else {
        return ENOENT.to_errno();
    };
    log_print!("closing connection to node {}", nodeid);
    midcomms::close(&node);
    finish_node(&c, &node);
    log_print!("io handling for node: {} stopped", nodeid);
    log_print!("closing connection to node {} done", nodeid);
    0
}

#[no_mangle]
extern "C" fn dlm_midcomms_start() -> c_int {
    let Some(c) = comms() else {
        return ENOMEM.to_errno();
    };
    match lowcomms::start(c) {
        Ok(()) => 0,
        Err(e) => errno(e),
    }
}

#[no_mangle]
extern "C" fn dlm_midcomms_stop() {
    if let Some(c) = comms() {
        lowcomms::stop(c);
    }
}

#[no_mangle]
extern "C" fn dlm_midcomms_init() {
    if let Err(e) = lowcomms::init() {
        log_print!("cannot initialise comms: {}", e.to_errno());
    }
}

#[no_mangle]
extern "C" fn dlm_midcomms_exit() {
    if let Some(c) = comms() {
        let nodes = c.remove_all_nodes();
        for node in nodes.iter() {
            midcomms::close(node);
            finish_node(&c, node);
        }
        drop(nodes);
        lowcomms::stop(c);
    }
    lowcomms::exit();
}

#[no_mangle]
extern "C" fn dlm_midcomms_shutdown() {
    if let Some(c) = comms() {
        midcomms::shutdown(c);
    }
}

#[no_mangle]
extern "C" fn dlm_midcomms_add_member(nodeid: c_int) {
    match lookup(nodeid) {
        Some(node) => midcomms::add_member(&node),
        None => {
            warn_on_once!(true);
        }
    }
}

#[no_mangle]
extern "C" fn dlm_midcomms_remove_member(nodeid: c_int) {
    if let Some(node) = lookup(nodeid) {
        midcomms::remove_member(&node);
    }
}

/// # Safety
///
/// `node` must be debugfs private data from `dlm_midcomms_addr()`.
#[no_mangle]
unsafe extern "C" fn dlm_midcomms_state(node: *const c_void) -> *const c_char {
    // SAFETY: debugfs passes back the private data `dlm_midcomms_addr()` gave it, and calls us
    // only while the file exists, i.e. before `finish_node` removed it (the caller's contract).
    midcomms::state_name(unsafe { debug_node(node) }).as_char_ptr()
}

/// # Safety
///
/// `node` must be debugfs private data from `dlm_midcomms_addr()`.
#[no_mangle]
unsafe extern "C" fn dlm_midcomms_flags(node: *const c_void) -> c_ulong {
    // SAFETY: debugfs passes back the private data `dlm_midcomms_addr()` gave it, and calls us
    // only while the file exists, i.e. before `finish_node` removed it (the caller's contract).
    midcomms::flags(unsafe { debug_node(node) }) as c_ulong
}

/// # Safety
///
/// `node` must be debugfs private data from `dlm_midcomms_addr()`.
#[no_mangle]
unsafe extern "C" fn dlm_midcomms_send_queue_cnt(node: *const c_void) -> c_int {
    // SAFETY: debugfs passes back the private data `dlm_midcomms_addr()` gave it, and calls us
    // only while the file exists, i.e. before `finish_node` removed it (the caller's contract).
    midcomms::send_queue_cnt(unsafe { debug_node(node) })
}

/// # Safety
///
/// `node` must be debugfs private data from `dlm_midcomms_addr()`.
#[no_mangle]
unsafe extern "C" fn dlm_midcomms_version(node: *const c_void) -> u32 {
    // SAFETY: debugfs passes back the private data `dlm_midcomms_addr()` gave it, and calls us
    // only while the file exists, i.e. before `finish_node` removed it (the caller's contract).
    unsafe { debug_node(node) }.version.load(Ordering::Acquire)
}

/// # Safety
///
/// `node` must be debugfs private data from `dlm_midcomms_addr()`; `buf` must hold `buflen`
/// bytes.
#[no_mangle]
unsafe extern "C" fn dlm_midcomms_rawmsg_send(
    node: *const c_void,
    buf: *const c_void,
    buflen: c_int,
) -> c_int {
    // SAFETY: debugfs passes back the private data `dlm_midcomms_addr()` gave it, and calls us
    // only while the file exists, i.e. before `finish_node` removed it (the caller's contract).
    let n = unsafe { debug_node(node) };
    let Some(node) = lookup(n.nodeid) else {
        return ENOENT.to_errno();
    };
    if buflen < 0 {
        return EINVAL.to_errno();
    }
    // SAFETY: `buf` holds `buflen` bytes per the contract.
    let bytes = unsafe { core::slice::from_raw_parts(buf.cast::<u8>(), buflen as usize) };
    match midcomms::rawmsg_send(&node, bytes) {
        Ok(()) => 0,
        Err(_) => ENOMEM.to_errno(),
    }
}

/// Unused by the 7.2 C files (the resend path is internal here); kept for the header's sake.
#[no_mangle]
extern "C" fn dlm_midcomms_unack_msg_resend(nodeid: c_int) {
    if let Some(node) = lookup(nodeid) {
        node.io_test_and_set(io::RESEND);
        let _tx = node.tx.lock();
        lowcomms::queue_swork(&node);
    }
}
