// SPDX-License-Identifier: GPL-2.0

//! Safe wrappers over kernel TCP and SCTP stream sockets: creation in `init_net`, options, bind
//! (and SCTP's extra local addresses), listen, non-blocking accept, connect, non-blocking
//! receive into a byte buffer, zero-copy (`MSG_SPLICE_PAGES`) send of a page range, shutdown,
//! and installation of our socket callbacks with a reference-counted owner in `sk_user_data`.

use core::ptr;
use kernel::{
    bindings,
    error::to_result,
    ffi::{c_int, c_void},
    prelude::*, //
};

use super::{ffi, page::SendPage};

const IPPROTO_TCP: c_int = 6;
const IPPROTO_SCTP: c_int = 132;
const SOCKADDR_IN_LEN: usize = 16;
const SOCKADDR_IN6_LEN: usize = 28;

/// A `struct sockaddr_storage` (128 bytes) as configfs hands it to `dlm_midcomms_addr()`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub(crate) struct SockAddr {
    bytes: [u8; 128],
}

impl SockAddr {
    /// An all-zero address (family `AF_UNSPEC`).
    pub(crate) const fn zeroed() -> Self {
        Self { bytes: [0; 128] }
    }

    /// Copies a `struct sockaddr_storage`.
    ///
    /// # Safety
    ///
    /// `p` must point to 128 readable bytes.
    pub(crate) unsafe fn from_ptr(p: *const c_void) -> Self {
        let mut a = Self::zeroed();
        // SAFETY: `p` is readable for 128 bytes per the contract; `a` is a local.
        unsafe { ptr::copy_nonoverlapping(p.cast::<u8>(), a.bytes.as_mut_ptr(), 128) };
        a
    }

    /// An address as a configfs `addr` write delivers it.
    pub(crate) const fn from_bytes(bytes: &[u8; 128]) -> Self {
        Self { bytes: *bytes }
    }

    /// The `struct sockaddr_storage` bytes.
    pub(crate) const fn as_bytes(&self) -> &[u8; 128] {
        &self.bytes
    }

    /// Raw pointer for C calls that fill or read a `sockaddr_storage`.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut c_void {
        self.bytes.as_mut_ptr().cast()
    }

    /// The address family (`AF_INET`, `AF_INET6`, ...).
    pub(crate) fn family(&self) -> u32 {
        u16::from_ne_bytes([self.bytes[0], self.bytes[1]]).into()
    }

    /// Sets the family (the C layer uses the family of the first local address everywhere).
    pub(crate) fn set_family(&mut self, family: u32) {
        self.bytes[..2].copy_from_slice(&(family as u16).to_ne_bytes());
    }

    /// Sets the port, given in network byte order as `dlm_config.ci_tcp_port` stores it.
    pub(crate) fn set_port_be(&mut self, port_be: u16) {
        self.bytes[2..4].copy_from_slice(&port_be.to_ne_bytes());
    }

    /// Length of the `sockaddr_in`/`sockaddr_in6` for this family; clears the bytes behind it
    /// as the C layer does.
    pub(crate) fn finish(&mut self) -> usize {
        let len = if self.family() == bindings::AF_INET {
            self.bytes[8..16].fill(0);
            SOCKADDR_IN_LEN
        } else {
            SOCKADDR_IN6_LEN
        };
        self.bytes[len..].fill(0);
        len
    }

    /// The address part compared when mapping a peer to a node: family, port and address.
    fn key(&self) -> &[u8] {
        match self.family() {
            bindings::AF_INET => &self.bytes[..8],
            bindings::AF_INET6 => &self.bytes[..24],
            _ => &self.bytes[..2],
        }
    }

    /// A hash of what [`SockAddr::same`] compares (family, port and address, not the IPv6 flow
    /// label), so that two addresses naming the same peer hash alike: FNV-1a, its high bits
    /// folded into the low ones that pick a bucket.
    pub(crate) fn hash(&self) -> u32 {
        let mut h: u32 = 0x811c_9dc5;
        let mut mix = |bytes: &[u8]| {
            for &b in bytes {
                h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
            }
        };
        if self.family() == bindings::AF_INET6 {
            mix(&self.bytes[..4]);
            mix(&self.bytes[8..24]);
        } else {
            mix(self.key());
        }
        h ^ (h >> 16)
    }

    /// Whether two addresses name the same peer, as C's `addr_compare()` decides.
    pub(crate) fn same(&self, other: &Self) -> bool {
        match self.family() {
            bindings::AF_INET => self.key() == other.key(),
            // sin6_flowinfo (bytes 4..8) is not part of the identity.
            bindings::AF_INET6 => {
                self.bytes[..4] == other.bytes[..4] && self.bytes[8..24] == other.bytes[8..24]
            }
            _ => false,
        }
    }
}

impl core::fmt::Display for SockAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let b = &self.bytes;
        match self.family() {
            bindings::AF_INET => write!(f, "{}.{}.{}.{}", b[4], b[5], b[6], b[7]),
            bindings::AF_INET6 => {
                for i in 0..8 {
                    if i > 0 {
                        f.write_str(":")?;
                    }
                    write!(f, "{:x}", u16::from_be_bytes([b[8 + 2 * i], b[9 + 2 * i]]))?;
                }
                Ok(())
            }
            fam => write!(f, "<family {fam}>"),
        }
    }
}

/// The transport of every DLM connection (`dlm_config.ci_protocol`): both are stream sockets
/// (`SOCK_STREAM`) carrying the same byte stream of DLM messages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `DLM_PROTO_TCP` (0).
    Tcp,
    /// `DLM_PROTO_SCTP` (1): one-to-one SCTP sockets, bound to every local address.
    Sctp,
}

impl Protocol {
    /// The protocol of `dlm_config.ci_protocol` value `p`, if it is one.
    pub(crate) fn from_config(p: u32) -> Option<Self> {
        match p {
            0 => Some(Self::Tcp),
            1 => Some(Self::Sctp),
            _ => None,
        }
    }

    /// The name C's log lines use.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Sctp => "SCTP",
        }
    }

    fn ipproto(self) -> c_int {
        match self {
            Self::Tcp => IPPROTO_TCP,
            Self::Sctp => IPPROTO_SCTP,
        }
    }
}

/// Result of a non-blocking socket operation.
pub(crate) enum Io {
    /// This many bytes were transferred (0 on receive means end of stream).
    Done(usize),
    /// Nothing could be transferred now (`-EAGAIN`).
    Again,
}

impl Io {
    /// The value C's `dlm_send`/`dlm_recv` tracepoints report for `res`: bytes moved or an errno.
    pub(crate) fn trace_ret(res: &Result<Io>) -> i32 {
        match res {
            Ok(Io::Done(n)) => *n as i32,
            Ok(Io::Again) => -(bindings::EAGAIN as i32),
            Err(e) => e.to_errno(),
        }
    }
}

/// An owned kernel socket; released (callbacks restored first) on drop.
///
/// # Invariants
///
/// `sock` is a valid socket created or accepted by us and not yet released, of protocol
/// `proto` (an accepted socket has its listener's). When `owner` is non-null it holds one
/// leaked `Arc` reference that `sk_user_data` points to, and our callbacks are installed;
/// `restore` are the callbacks to put back.
pub(crate) struct Socket {
    sock: *mut bindings::socket,
    proto: Protocol,
    owner: *const c_void,
    drop_owner: Option<unsafe fn(*const c_void)>,
    restore: ffi::SkCallbacks,
}

// SAFETY: Kernel sockets may be used from any thread; the owner pointer is an `Arc`.
unsafe impl Send for Socket {}

impl Socket {
    /// Creates a stream socket of `family` and `proto` in the initial network namespace.
    pub(crate) fn new(family: u32, proto: Protocol) -> Result<Self> {
        let mut sock: *mut bindings::socket = ptr::null_mut();
        // SAFETY: `init_net` lives forever; `sock` is a valid out pointer.
        to_result(unsafe {
            bindings::sock_create_kern(
                &raw mut bindings::init_net,
                family as c_int,
                bindings::sock_type_SOCK_STREAM as c_int,
                proto.ipproto(),
                &mut sock,
            )
        })?;
        // INVARIANT: `sock_create_kern` succeeded with `proto`.
        Ok(Self {
            sock,
            proto,
            owner: ptr::null(),
            drop_owner: None,
            restore: ffi::SkCallbacks::NONE,
        })
    }

    fn sk(&self) -> *mut bindings::sock {
        // SAFETY: `self.sock` is valid by the type invariant.
        unsafe { (*self.sock).sk }
    }

    /// `TCP_NODELAY` or `SCTP_NODELAY`: no Nagle.
    pub(crate) fn set_nodelay(&self) {
        match self.proto {
            // SAFETY: `sk()` is valid and a TCP socket by the type invariant.
            Protocol::Tcp => unsafe { ffi::tcp_sock_set_nodelay(self.sk()) },
            // SAFETY: `sk()` is valid and an SCTP socket by the type invariant (the helper
            // writes `sctp_sk(sk)->nodelay` under the socket lock).
            Protocol::Sctp => unsafe { ffi::dlm_rs_sctp_sock_set_nodelay(self.sk()) },
        }
    }

    /// `TCP_USER_TIMEOUT`: how long (ms) sent data or a SYN may stay unacknowledged before a
    /// TCP connection fails with `ETIMEDOUT`.  Nothing on an SCTP socket.
    pub(crate) fn set_user_timeout(&self, ms: u32) {
        if self.proto != Protocol::Tcp {
            return;
        }
        let ms = c_int::try_from(ms).unwrap_or(c_int::MAX);
        // SAFETY: `sk()` is valid and a TCP socket by the type invariant (the function writes
        // `inet_csk(sk)->icsk_user_timeout`); it fails only for a negative value, which `ms`
        // is not.
        let _ = unsafe { ffi::tcp_sock_set_user_timeout(self.sk(), ms) };
    }

    /// `SO_RCVBUF` (as the kernel sets it: at least the minimum, and doubled for overhead).
    pub(crate) fn set_rcvbuf(&self, bytes: i32) {
        // SAFETY: `sk()` is valid by the type invariant; `sock_set_rcvbuf` locks the socket.
        unsafe { ffi::sock_set_rcvbuf(self.sk(), bytes) }
    }

    /// `SO_REUSEADDR`.
    pub(crate) fn set_reuseaddr(&self) {
        // SAFETY: `sk()` is valid by the type invariant.
        unsafe { ffi::sock_set_reuseaddr(self.sk()) }
    }

    /// `SO_MARK`.
    pub(crate) fn set_mark(&self, mark: u32) {
        // SAFETY: `sk()` is valid by the type invariant.
        unsafe { ffi::sock_set_mark(self.sk(), mark) }
    }

    /// Binds to `addr`.
    pub(crate) fn bind(&self, addr: &mut SockAddr) -> Result {
        let len = addr.finish();
        // SAFETY: `addr` is a valid sockaddr of `len` bytes; the socket is valid.
        to_result(unsafe {
            bindings::kernel_bind(self.sock, addr.as_mut_ptr().cast(), len as c_int)
        })
    }

    /// Adds `addr` to the local addresses of a socket already bound (SCTP multi-homing:
    /// `sock_bind_add()`, `SCTP_BINDX_ADD_ADDR`); `EOPNOTSUPP` for protocols without it.
    pub(crate) fn bind_add(&self, addr: &mut SockAddr) -> Result {
        let len = addr.finish();
        // SAFETY: `addr` is a valid sockaddr of `len` bytes that outlives the call (the protocol
        // copies it); `sk()` is valid by the type invariant.
        to_result(unsafe { ffi::sock_bind_add(self.sk(), addr.as_mut_ptr().cast(), len as c_int) })
    }

    /// Starts listening.
    pub(crate) fn listen(&self, backlog: i32) -> Result {
        // SAFETY: The socket is valid.
        to_result(unsafe { bindings::kernel_listen(self.sock, backlog) })
    }

    /// Blocking connect to `addr` (`-EINPROGRESS` counts as success, as in the C layer).
    pub(crate) fn connect(&self, addr: &mut SockAddr) -> Result {
        let len = addr.finish();
        // SAFETY: `addr` is a valid sockaddr of `len` bytes; the socket is valid.
        let ret = unsafe {
            bindings::kernel_connect(self.sock, addr.as_mut_ptr().cast(), len as c_int, 0)
        };
        if ret == -(bindings::EINPROGRESS as c_int) {
            return Ok(());
        }
        to_result(ret)
    }

    /// Non-blocking accept; `Ok(None)` when no connection is pending.
    pub(crate) fn accept(&self) -> Result<Option<Socket>> {
        let mut new: *mut bindings::socket = ptr::null_mut();
        let flags = bindings::O_NONBLOCK as c_int;
        // SAFETY: The socket is valid; `new` is a valid out pointer.
        let ret = unsafe { bindings::kernel_accept(self.sock, &mut new, flags) };
        if ret == -(bindings::EAGAIN as c_int) {
            return Ok(None);
        }
        to_result(ret)?;
        // INVARIANT: `kernel_accept` succeeded and gave us `new`, of our protocol.
        Ok(Some(Self {
            sock: new,
            proto: self.proto,
            owner: ptr::null(),
            drop_owner: None,
            restore: ffi::SkCallbacks::NONE,
        }))
    }

    /// The peer's address.
    pub(crate) fn peer_addr(&self) -> Result<SockAddr> {
        let mut a = SockAddr::zeroed();
        // SAFETY: The socket is valid; `a` has room for any sockaddr.
        let ret = unsafe { bindings::kernel_getpeername(self.sock, a.as_mut_ptr().cast()) };
        if ret < 0 {
            return Err(Error::from_errno(ret));
        }
        Ok(a)
    }

    /// The callbacks currently installed (used once on the listen socket, whose originals are
    /// what every socket gets back when we let go of it, as in the C layer).
    pub(crate) fn callbacks(&self) -> ffi::SkCallbacks {
        let mut cbs = ffi::SkCallbacks::NONE;
        // SAFETY: The socket is valid; `cbs` is a valid out pointer.
        unsafe { ffi::dlm_rs_sock_save_callbacks(self.sock, &mut cbs) };
        cbs
    }

    /// Installs `cbs` with `owner` as `sk_user_data`; `restore` goes back on drop, at which point
    /// `drop_owner(owner)` runs.
    ///
    /// # Safety
    ///
    /// `owner` must stay valid until `drop_owner(owner)` is called, and the callbacks must
    /// tolerate being called with it until the socket is dropped.
    pub(crate) unsafe fn install(
        &mut self,
        owner: *const c_void,
        drop_owner: unsafe fn(*const c_void),
        cbs: &ffi::SkCallbacks,
        restore: &ffi::SkCallbacks,
    ) {
        // SAFETY: The socket is valid; the shim only stores the pointers.
        unsafe { ffi::dlm_rs_sock_set_callbacks(self.sock, owner.cast_mut(), cbs) };
        // INVARIANT: Callbacks installed; `owner` is kept until drop.
        self.owner = owner;
        self.drop_owner = Some(drop_owner);
        self.restore = *restore;
    }

    /// Non-blocking receive into `buf`.
    pub(crate) fn recv(&self, buf: &mut [u8]) -> Result<Io> {
        let mut msg = bindings::msghdr::default();
        let mut iov = bindings::kvec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: The socket is valid; `iov` describes `buf`, which outlives the call.
        let ret = unsafe {
            bindings::kernel_recvmsg(
                self.sock,
                &mut msg,
                &mut iov,
                1,
                buf.len(),
                (bindings::MSG_DONTWAIT | bindings::MSG_NOSIGNAL) as c_int,
            )
        };
        match ret {
            r if r >= 0 => Ok(Io::Done(r as usize)),
            r if r == -(bindings::EAGAIN as c_int) => Ok(Io::Again),
            r => Err(Error::from_errno(r)),
        }
    }

    /// Receives into the spare capacity of `buf` (non-blocking) and extends its length by what
    /// arrived.
    pub(crate) fn recv_append(&self, buf: &mut KVec<u8>) -> Result<Io> {
        let spare = buf.spare_capacity_mut();
        let (ptr, len) = (spare.as_mut_ptr().cast::<u8>(), spare.len());
        // SAFETY: `MaybeUninit<u8>` has the layout of `u8`; the socket only writes into the
        // spare capacity, and only the bytes it reports as written are counted below.
        let spare = unsafe { core::slice::from_raw_parts_mut(ptr, len) };
        let res = self.recv(spare);
        if let Ok(Io::Done(n)) = res {
            // SAFETY: `recv` initialised the first `n` bytes of the spare capacity.
            unsafe { buf.inc_len(n) };
        }
        res
    }

    /// Sends `len` bytes at `off` of `page` without copying (`MSG_SPLICE_PAGES`); the network
    /// stack takes its own page reference for what it queues.
    pub(crate) fn send_page(&self, page: &SendPage, off: usize, len: usize) -> Result<Io> {
        let mut msg = bindings::msghdr {
            msg_flags: bindings::MSG_SPLICE_PAGES | bindings::MSG_DONTWAIT | bindings::MSG_NOSIGNAL,
            ..Default::default()
        };
        let bvec = bindings::bio_vec {
            bv_page: page.as_page_ptr(),
            bv_len: len as u32,
            bv_offset: off as u32,
        };
        // SAFETY: `msg.msg_iter` is ours; `bvec` lives until `sock_sendmsg` returns, and the
        // page range is within the page.
        unsafe { bindings::iov_iter_bvec(&mut msg.msg_iter, bindings::ITER_SOURCE, &bvec, 1, len) };
        // SAFETY: The socket and `msg` are valid.
        let ret = unsafe { bindings::sock_sendmsg(self.sock, &mut msg) };
        match ret {
            0 => Ok(Io::Again),
            r if r > 0 => Ok(Io::Done(r as usize)),
            r if r == -(bindings::EAGAIN as c_int) => Ok(Io::Again),
            r => Err(Error::from_errno(r)),
        }
    }

    /// After a send made no progress: if the socket is out of space, tells TCP that we wait for
    /// `write_space` (under the socket lock) and returns true; `mark` decides (atomically with
    /// the check) whether we were not already waiting.
    pub(crate) fn wait_write_space(&self, mark: impl FnOnce() -> bool) -> bool {
        let sk = self.sk();
        // SAFETY: `sk` is valid; lock and release pair up below.
        unsafe { ffi::dlm_rs_lock_sock(sk) };
        // SAFETY: The socket is valid.
        let limited = unsafe { ffi::dlm_rs_sock_async_nospace(self.sock) } && mark();
        if limited {
            // SAFETY: The socket is valid and locked.
            unsafe { ffi::dlm_rs_sock_wait_write_space(self.sock) };
        }
        // SAFETY: Locked above.
        unsafe { ffi::release_sock(sk) };
        limited
    }

    /// The `write_space` bookkeeping of the C layer, from the callback.
    ///
    /// # Safety
    ///
    /// `sk` must be a live socket inside one of its callbacks.
    pub(crate) unsafe fn write_space_done(sk: *mut bindings::sock, app_limited: bool) {
        // SAFETY: `sk` is live per the contract.
        let sock = unsafe { ffi::dlm_rs_sk_socket(sk) };
        if !sock.is_null() {
            // SAFETY: `sock` is the live socket of `sk`.
            unsafe { ffi::dlm_rs_sock_write_space(sock, app_limited) };
        }
    }

    /// `sk_user_data` of a socket inside one of our callbacks.
    ///
    /// # Safety
    ///
    /// `sk` must be a live socket inside one of its callbacks.
    pub(crate) unsafe fn user_data(sk: *mut bindings::sock) -> *const c_void {
        // SAFETY: `sk` is live per the contract.
        unsafe { ffi::dlm_rs_sk_user_data(sk) }
    }

    /// `sk_err` of a socket inside one of our callbacks.
    ///
    /// # Safety
    ///
    /// `sk` must be a live socket.
    pub(crate) unsafe fn sk_err(sk: *mut bindings::sock) -> i32 {
        // SAFETY: `sk` is live per the contract.
        unsafe { ffi::dlm_rs_sk_err(sk) }
    }

    /// Whether a read now would find nothing (no data, no end of stream, no error), without
    /// taking the socket lock.  Whatever arrives later calls `sk_data_ready` (or
    /// `sk_error_report`), so a reader woken by those callbacks may stop when this says so.
    pub(crate) fn rx_idle(&self) -> bool {
        // SAFETY: `self.sk()` is live while `self` owns the socket; the helper only reads
        // (locklessly, as `tcp_poll()` does) the receive queue head, `sk_shutdown` and `sk_err`.
        unsafe { ffi::dlm_rs_sk_rx_idle(self.sk()) }
    }

    /// Makes the coming release reset the connection (`SO_LINGER` 0): the peer sees an error
    /// instead of an orderly end of stream, which makes a C peer retransmit its unacked messages.
    pub(crate) fn set_abort_on_close(&self) {
        // SAFETY: `sk()` is valid by the type invariant.
        unsafe { ffi::sock_no_linger(self.sk()) }
    }

    /// Half-closes the sending side (`SHUT_WR`).
    pub(crate) fn shutdown_write(&self) -> Result {
        // SAFETY: The socket is valid.
        to_result(unsafe {
            bindings::kernel_sock_shutdown(self.sock, bindings::sock_shutdown_cmd_SHUT_WR)
        })
    }

    /// Shuts down both directions (`SHUT_RDWR`): SCTP's graceful SHUTDOWN of the association.
    pub(crate) fn shutdown_both(&self) -> Result {
        // SAFETY: The socket is valid.
        to_result(unsafe {
            bindings::kernel_sock_shutdown(self.sock, bindings::sock_shutdown_cmd_SHUT_RDWR)
        })
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if let Some(drop_owner) = self.drop_owner.take() {
            // SAFETY: Valid socket; after this no callback of ours runs (the shim takes the socket
            // lock and `sk_callback_lock`).
            unsafe { ffi::dlm_rs_sock_restore_callbacks(self.sock, &self.restore) };
            // SAFETY: `owner` was handed to us with `drop_owner` in `install`.
            unsafe { drop_owner(self.owner) };
        }
        // SAFETY: We own the socket and release it exactly once.
        unsafe { bindings::sock_release(self.sock) };
    }
}
