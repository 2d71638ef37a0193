// SPDX-License-Identifier: GPL-2.0

//! A zeroed page that write-queue entries pack whole messages into, shared by reference count
//! between the write queue (until the bytes are on the wire) and every unacknowledged reliable
//! message located in it (until its ack), so that retransmission can copy the bytes again.
//! This is the `kref` design of the C layer expressed as `Arc<SendPage>`.

use core::sync::atomic::{AtomicBool, Ordering};
use kernel::{
    alloc::Flags,
    bindings,
    page::{Page, PAGE_SIZE},
    prelude::*,
    sync::Arc, //
};

use super::ffi;

/// One page of the send stream.
///
/// # Invariants
///
/// `base` is the kernel virtual address of `page`'s memory, which stays mapped (no highmem on
/// the supported configurations) as long as `page` lives.
pub(crate) struct SendPage {
    page: Page,
    base: *mut u8,
    /// The page is in its node's write queue: the bytes of the messages in it that are not
    /// sent yet go out from there (changed under the node lock).
    queued: AtomicBool,
}

// SAFETY: The page is owned; concurrent access to its bytes is coordinated by the write queue
// lock (space is handed out once; sent bytes are never written again).
unsafe impl Send for SendPage {}
// SAFETY: See `Send`; shared users only read bytes that are no longer written.
unsafe impl Sync for SendPage {}

impl SendPage {
    /// Allocates a zeroed page with `flags` (`GFP_ATOMIC` in atomic context).  Not inlined:
    /// the allocation-failure tests target it by name (a fault-injection stack filter).
    #[inline(never)]
    pub(crate) fn new(flags: Flags) -> Result<Arc<Self>> {
        let page = Page::alloc_page(flags | __GFP_ZERO)?;
        // SAFETY: `page` is a valid page that we own.
        let base = unsafe { ffi::dlm_rs_page_address(page.as_ptr()) }.cast::<u8>();
        if base.is_null() {
            return Err(ENOMEM);
        }
        // INVARIANT: `base` is the page's lowmem address.
        Ok(Arc::new(
            Self {
                page,
                base,
                queued: AtomicBool::new(false),
            },
            flags,
        )?)
    }

    /// Whether the page is in its node's write queue.
    pub(crate) fn is_queued(&self) -> bool {
        self.queued.load(Ordering::Relaxed)
    }

    /// Records that the page entered or left its node's write queue.
    pub(crate) fn set_queued(&self, queued: bool) {
        self.queued.store(queued, Ordering::Relaxed);
    }

    /// The raw `struct page`, for the zero-copy send.
    pub(crate) fn as_page_ptr(&self) -> *mut bindings::page {
        self.page.as_ptr()
    }

    /// A pointer to byte `off` of the page, for the lock manager to build a message in.
    pub(crate) fn ptr_at(&self, off: usize) -> *mut u8 {
        debug_assert!(off <= PAGE_SIZE);
        // SAFETY: `off` is within the page (callers only hand out space below `PAGE_SIZE`).
        unsafe { self.base.add(off) }
    }

    /// Reads `len` bytes at `off`.
    ///
    /// # Safety
    ///
    /// No one may be writing the range `off..off + len` (it must be committed).
    pub(crate) unsafe fn bytes(&self, off: usize, len: usize) -> &[u8] {
        debug_assert!(off + len <= PAGE_SIZE);
        // SAFETY: In bounds by the caller; not written concurrently per the safety contract.
        unsafe { core::slice::from_raw_parts(self.base.add(off), len) }
    }

    /// Gives mutable access to `len` bytes at `off`.
    ///
    /// # Safety
    ///
    /// The range must be a reservation owned exclusively by the caller.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn bytes_mut(&self, off: usize, len: usize) -> &mut [u8] {
        debug_assert!(off + len <= PAGE_SIZE);
        // SAFETY: In bounds and exclusively owned per the safety contract.
        unsafe { core::slice::from_raw_parts_mut(self.base.add(off), len) }
    }
}
