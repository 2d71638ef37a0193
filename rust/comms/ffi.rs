// SPDX-License-Identifier: GPL-2.0

//! Declarations of the C functions the comms layer calls that `kernel::bindings` does not
//! provide: our thin C shim (`rust/shim/dlm_shim.c`), a few exported networking helpers whose
//! header (`net/sock.h`, `linux/tcp.h`) bindgen does not see, and the lock manager's own
//! functions (`lock.c`, `debug_fs.c`) that live in the same module; plus the safe reads of the
//! `dlm_config` tunables and our node id for the transport (the Rust `config` owns them).
//!
//! The raw functions are called by the wrappers in `sock.rs`, `sync.rs`, `page.rs`,
//! `configfs.rs`, `dlm.rs` and `log.rs`, by the C entry points of `exports.rs`, and for the
//! upcall `dlm_receive_buffer()` and the socket callbacks by `midcomms.rs` and `lowcomms.rs`;
//! `config`, `fault` and `our_nodeid` below are safe wrappers.

#![allow(improper_ctypes)]

use kernel::bindings;
use kernel::ffi::{c_char, c_int, c_uint, c_void};

/// The four socket callbacks dlm replaces, as saved and restored by the shim
/// (`struct dlm_rs_sk_cbs`).
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct SkCallbacks {
    pub(crate) data_ready: Option<unsafe extern "C" fn(*mut bindings::sock)>,
    pub(crate) write_space: Option<unsafe extern "C" fn(*mut bindings::sock)>,
    pub(crate) state_change: Option<unsafe extern "C" fn(*mut bindings::sock)>,
    pub(crate) error_report: Option<unsafe extern "C" fn(*mut bindings::sock)>,
}

impl SkCallbacks {
    pub(crate) const NONE: Self = Self {
        data_ready: None,
        write_space: None,
        state_change: None,
        error_report: None,
    };
}

extern "C" {
    // rust/shim/dlm_shim.c
    pub(crate) fn dlm_rs_spin_lock_bh(lock: *mut bindings::spinlock_t);
    pub(crate) fn dlm_rs_spin_unlock_bh(lock: *mut bindings::spinlock_t);
    pub(crate) fn dlm_rs_spin_trylock_bh(lock: *mut bindings::spinlock_t) -> c_int;
    pub(crate) fn dlm_rs_page_address(page: *mut bindings::page) -> *mut c_void;
    pub(crate) fn dlm_rs_kmem_cache_create(
        name: *const c_char,
        size: c_uint,
    ) -> *mut bindings::kmem_cache;
    pub(crate) fn dlm_rs_sock_save_callbacks(sock: *mut bindings::socket, cbs: *mut SkCallbacks);
    pub(crate) fn dlm_rs_sock_set_callbacks(
        sock: *mut bindings::socket,
        user: *mut c_void,
        cbs: *const SkCallbacks,
    );
    pub(crate) fn dlm_rs_sock_restore_callbacks(
        sock: *mut bindings::socket,
        cbs: *const SkCallbacks,
    );
    pub(crate) fn dlm_rs_sk_user_data(sk: *mut bindings::sock) -> *mut c_void;
    pub(crate) fn dlm_rs_sk_socket(sk: *mut bindings::sock) -> *mut bindings::socket;
    pub(crate) fn dlm_rs_sk_err(sk: *mut bindings::sock) -> c_int;
    pub(crate) fn dlm_rs_sk_rx_idle(sk: *mut bindings::sock) -> bool;
    pub(crate) fn dlm_rs_lock_sock(sk: *mut bindings::sock);
    pub(crate) fn dlm_rs_sock_async_nospace(sock: *mut bindings::socket) -> bool;
    pub(crate) fn dlm_rs_sock_wait_write_space(sock: *mut bindings::socket);
    pub(crate) fn dlm_rs_sock_write_space(sock: *mut bindings::socket, app_limited: bool);
    pub(crate) fn dlm_rs_sctp_sock_set_nodelay(sk: *mut bindings::sock);
    pub(crate) fn dlm_rs_request_module(name: *const c_char) -> c_int;
    pub(crate) fn dlm_rs_memalloc_nofs_save() -> c_uint;
    pub(crate) fn dlm_rs_memalloc_nofs_restore(flags: c_uint);
    pub(crate) fn dlm_rs_init_srcu_struct(
        ssp: *mut bindings::srcu_struct,
        name: *const c_char,
        key: *mut bindings::lock_class_key,
    ) -> c_int;
    pub(crate) fn dlm_rs_srcu_read_lock(ssp: *mut bindings::srcu_struct) -> c_int;
    pub(crate) fn dlm_rs_srcu_read_unlock(ssp: *mut bindings::srcu_struct, idx: c_int);
    pub(crate) fn dlm_rs_configfs_add_default_group(
        new_group: *mut bindings::config_group,
        group: *mut bindings::config_group,
    );

    pub(crate) fn dlm_rs_trace_send(nodeid: c_int, ret: c_int);
    pub(crate) fn dlm_rs_trace_recv(nodeid: c_int, ret: c_int);
    pub(crate) fn dlm_rs_trace_send_message(
        dst: u32,
        seq: u32,
        ms: *const c_void,
        name: *const c_void,
        namelen: c_int,
    );
    pub(crate) fn dlm_rs_trace_send_rcom(dst: u32, seq: u32, rc: *const c_void);
    pub(crate) fn dlm_rs_trace_recv_message(dst: u32, seq: u32, ms: *const c_void);
    pub(crate) fn dlm_rs_trace_recv_rcom(dst: u32, seq: u32, rc: *const c_void);

    pub(crate) fn dlm_rs_fault_init();
    pub(crate) fn dlm_rs_fault_exit();
    pub(crate) fn dlm_rs_fault_accept_stall() -> bool;
    pub(crate) fn dlm_rs_fault_rx_hold() -> bool;

    // Exported by the networking core; declared in headers bindgen does not include.
    pub(crate) fn release_sock(sk: *mut bindings::sock);
    pub(crate) fn tcp_sock_set_nodelay(sk: *mut bindings::sock);
    pub(crate) fn tcp_sock_set_user_timeout(sk: *mut bindings::sock, val: c_int) -> c_int;
    pub(crate) fn sock_set_reuseaddr(sk: *mut bindings::sock);
    pub(crate) fn sock_set_mark(sk: *mut bindings::sock, val: u32);
    pub(crate) fn sock_no_linger(sk: *mut bindings::sock);
    pub(crate) fn sock_set_rcvbuf(sk: *mut bindings::sock, val: c_int);
    pub(crate) fn sock_bind_add(
        sk: *mut bindings::sock,
        addr: *mut bindings::sockaddr_unsized,
        addr_len: c_int,
    ) -> c_int;

    // The lock manager (same module).
    pub(crate) fn dlm_receive_buffer(p: *const c_void, nodeid: c_int);
    // config_exports.rs (the Rust config.h)
    pub(crate) fn dlm_create_debug_comms_file(nodeid: c_int, data: *mut c_void) -> *mut c_void;
    pub(crate) fn dlm_delete_debug_comms_file(ctx: *mut c_void);
}

/// The `dlm_config` tunables the transport reads (atomics of `config`'s `dlm_config`).
pub(crate) mod config {
    /// `ci_tcp_port`, network byte order.
    pub(crate) fn tcp_port_be() -> u16 {
        super::super::config::tcp_port_be()
    }

    /// `ci_buffer_size`.
    pub(crate) fn buffer_size() -> usize {
        super::super::config::buffer_size() as usize
    }

    /// `ci_protocol`.
    pub(crate) fn protocol() -> u32 {
        super::super::config::protocol()
    }

    /// `ci_mark`.
    pub(crate) fn mark() -> u32 {
        super::super::config::mark()
    }

    /// Local address `num` (`dlm_our_addr()`), if the local comm has that many.
    pub(crate) fn our_addr(num: usize) -> Option<super::super::sock::SockAddr> {
        super::super::config_exports::our_addr(num)
    }
}

/// `request_module(name)`: asks modprobe to load a module (process context, sleeps); the
/// errno of a failure is only informative, as in C, where it is ignored.
pub(crate) fn request_module(name: &kernel::str::CStr) -> kernel::error::Result {
    use kernel::str::CStrExt;
    // SAFETY: `name` is a NUL-terminated string that outlives the call; the shim passes it to
    // `request_module("%s", name)`, which copies it.  Process context (`dlm_lowcomms_start()`).
    kernel::error::to_result(unsafe { dlm_rs_request_module(name.as_char_ptr()) })
}

/// Our node id (`dlm_our_nodeid()`): lockless, 0 while no comm is local.
pub(crate) fn our_nodeid() -> i32 {
    super::config::our_nodeid()
}

/// Whether the current task may administer the system (`capable(CAP_SYS_ADMIN)`), as the
/// privileged configfs stores ask.
pub(crate) fn capable_sys_admin() -> bool {
    // SAFETY: `capable()` only reads the current task's credentials (and may note the use of
    // the capability for auditing); configfs stores run in process context.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as c_int) }
}

/// Test-only fault points of the debug test kernel (`CONFIG_FAULT_INJECTION_DEBUG_FS`): standard
/// fault attributes under `/sys/kernel/debug/dlm_accept_stall/` and `.../dlm_rx_hold/`, off
/// until a test arms them.  They open race windows that a single-vCPU guest cannot open by
/// itself (`Documentation/testing.rst`); on other kernels they are constant `false`.
pub(crate) mod fault {
    /// Creates the debugfs attributes (module init).
    pub(crate) fn init() {
        // SAFETY: Called once from `dlm_midcomms_init()`; the shim only registers static
        // attributes.
        unsafe { super::dlm_rs_fault_init() }
    }

    /// Removes them (module exit).
    pub(crate) fn exit() {
        // SAFETY: Called once from `dlm_midcomms_exit()`, after `init`.
        unsafe { super::dlm_rs_fault_exit() }
    }

    /// `dlm_accept_stall`: the accept work stalls between finding a connection's node and
    /// installing the socket.
    pub(crate) fn accept_stall() -> bool {
        // SAFETY: `should_fail()` on a static attribute; any context.
        unsafe { super::dlm_rs_fault_accept_stall() }
    }

    /// `dlm_rx_hold`: the `dlm_process` worker leaves the received buffers queued for its next
    /// run instead of processing them now.
    pub(crate) fn rx_hold() -> bool {
        // SAFETY: `should_fail()` on a static attribute; any context.
        unsafe { super::dlm_rs_fault_rx_hold() }
    }
}
