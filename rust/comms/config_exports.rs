// SPDX-License-Identifier: GPL-2.0

//! The C ABI of fs/dlm/config.h (7.2) that the lock-manager C files call: `#[no_mangle]
//! extern "C"` functions with the exact prototypes, which convert raw arguments and defer to
//! `config`.  The global `dlm_config` itself is a static of `config`.
//!
//! `dlm_config_init()` registers the `dlm` configfs subsystem and keeps it here until
//! `dlm_config_exit()`.  main.c calls the two from module init and exit; every other function
//! here is called by a lockspace (start, recovery, the comms layer it runs), which only exists in
//! between.

use core::{
    ptr,
    sync::atomic::{AtomicPtr, Ordering},
};
use kernel::{
    ffi::{c_char, c_int, c_void},
    prelude::*,
};

use super::config::{self, Clusters, ConfigNode};
use super::configfs::Subsystem;

/// The registered subsystem: a leaked `Pin<KBox<_>>`, or null outside init..exit.
static SUBSYSTEM: AtomicPtr<Subsystem<Clusters>> = AtomicPtr::new(ptr::null_mut());

/// The data of the subsystem root, between `dlm_config_init()` and `dlm_config_exit()`.
fn clusters() -> Option<&'static Clusters> {
    let p = SUBSYSTEM.load(Ordering::Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` came from the box leaked by `dlm_config_init`, which `dlm_config_exit` frees
    // only from module exit (or a failed init), when no lockspace exists that could call us.
    Some(unsafe { &*p }.data())
}

/// `dlm_our_addr()` for the transport: address `num` of the local comm.
pub(crate) fn our_addr(num: usize) -> Option<super::sock::SockAddr> {
    clusters().and_then(|c| c.our_addr(num))
}

#[no_mangle]
extern "C" fn dlm_config_init() -> c_int {
    let subsystem = match config::subsystem().and_then(|s| KBox::pin_init(s, GFP_KERNEL)) {
        Ok(s) => s,
        Err(e) => return e.to_errno(),
    };
    // SAFETY: The box is only turned back into a `Pin<KBox<_>>` by `dlm_config_exit`; the
    // subsystem does not move in between.
    let p = KBox::into_raw(unsafe { Pin::into_inner_unchecked(subsystem) });
    SUBSYSTEM.store(p, Ordering::Release);
    0
}

#[no_mangle]
extern "C" fn dlm_config_exit() {
    let p = SUBSYSTEM.swap(ptr::null_mut(), Ordering::AcqRel);
    if !p.is_null() {
        // SAFETY: `p` is the pinned box leaked by `dlm_config_init`; nobody uses it any more
        // (see `clusters`).  Dropping it unregisters the subsystem.
        drop(unsafe { Pin::new_unchecked(KBox::from_raw(p)) });
    }
}

/// # Safety
///
/// `lsname` must be a NUL-terminated string; `nodes_out` and `count_out` must be valid for
/// writes.  On success the caller owns `*nodes_out` and frees it with `kfree()`.
#[no_mangle]
unsafe extern "C" fn dlm_config_nodes(
    lsname: *const c_char,
    nodes_out: *mut *mut ConfigNode,
    count_out: *mut c_int,
) -> c_int {
    let Some(clusters) = clusters() else {
        return EEXIST.to_errno();
    };
    // SAFETY: `lsname` is NUL-terminated, per the contract.
    let name = unsafe { CStr::from_char_ptr(lsname) };
    match clusters.nodes(name) {
        Ok(nodes) => {
            let (p, len, _capacity) = nodes.into_raw_parts();
            // SAFETY: The out pointers are valid for writes, per the contract.  `p` is a
            // kmalloc'ed array (`KVec` uses `Kmalloc`) of `len` (at least one) entries, which the
            // caller frees with `kfree()`.
            unsafe {
                *nodes_out = p;
                *count_out = len as c_int;
            }
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// `seq` must be valid for writes.
#[no_mangle]
unsafe extern "C" fn dlm_comm_seq(nodeid: c_int, seq: *mut u32, _locked: bool) -> c_int {
    // `locked` tells config.c whether the caller holds the configfs subsystem mutex; our lookups
    // take locks of their own, so it does not matter here.
    let Some(clusters) = clusters() else {
        return ENOENT.to_errno();
    };
    match clusters.comm_seq(nodeid) {
        Ok(s) => {
            // SAFETY: `seq` is valid for writes, per the contract.
            unsafe { *seq = s };
            0
        }
        Err(e) => e.to_errno(),
    }
}

#[no_mangle]
extern "C" fn dlm_our_nodeid() -> c_int {
    config::our_nodeid()
}

/// # Safety
///
/// `addr` must be valid for writing a `struct sockaddr_storage` (128 bytes).
#[no_mangle]
unsafe extern "C" fn dlm_our_addr(addr: *mut c_void, num: c_int) -> c_int {
    let Ok(num) = usize::try_from(num) else {
        return -1;
    };
    let Some(a) = clusters().and_then(|c| c.our_addr(num)) else {
        return -1;
    };
    // SAFETY: `addr` is valid for 128 bytes of writes, per the contract; `a` is 128 bytes.
    unsafe { ptr::copy_nonoverlapping(a.as_bytes().as_ptr(), addr.cast::<u8>(), 128) };
    0
}
