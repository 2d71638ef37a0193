// SPDX-License-Identifier: GPL-2.0

//! Synchronisation wrappers the `kernel` crate of 7.2 does not have: a `spin_lock_bh()` lock
//! backend (for state shared between process context and the softirq side: socket callbacks,
//! the `WQ_BH` receive worker and the send API that the lock manager calls with BH disabled),
//! a wait queue with C's uninterruptible `wait_event_timeout()`, an owned workqueue, and a
//! `GFP_NOFS` allocation scope for the I/O workers.

use core::ptr::NonNull;
use kernel::{
    bindings,
    prelude::*,
    sync::{
        lock::{Backend, Lock},
        Arc, ArcBorrow, LockClassKey,
    },
    task::TASK_UNINTERRUPTIBLE,
    time::Jiffies,
    types::Opaque,
    workqueue::{HasDelayedWork, HasWork, Queue, Work, WorkItem}, //
};

use super::{ffi, log::jiffies};

/// A `spin_lock_bh()` backend for [`Lock`].
pub(crate) struct SpinLockBhBackend;

/// A spinlock taken with bottom halves disabled.
///
/// Use it for data touched from softirq context and from process context.
pub(crate) type SpinLockBh<T> = Lock<T, SpinLockBhBackend>;

/// Creates a [`SpinLockBh`] initialiser with a static lock class.
macro_rules! new_spinlock_bh {
    ($inner:expr, $name:literal) => {
        $crate::comms::sync::SpinLockBh::new(
            $inner,
            kernel::c_str!($name),
            kernel::static_lock_class!(),
        )
    };
}
pub(crate) use new_spinlock_bh;

// SAFETY: `spin_lock_bh()`/`spin_unlock_bh()` provide mutual exclusion on an initialised
// `spinlock_t`; the guard state is empty because the BH state is restored by the unlock.
unsafe impl Backend for SpinLockBhBackend {
    type State = bindings::spinlock_t;
    type GuardState = ();

    unsafe fn init(
        ptr: *mut Self::State,
        name: *const kernel::ffi::c_char,
        key: *mut bindings::lock_class_key,
    ) {
        // SAFETY: The caller passes valid, static `name` and `key` and a writable `ptr`.
        unsafe { bindings::__spin_lock_init(ptr, name, key) }
    }

    unsafe fn lock(ptr: *mut Self::State) -> Self::GuardState {
        // SAFETY: The caller guarantees `ptr` points to an initialised spinlock.
        unsafe { ffi::dlm_rs_spin_lock_bh(ptr) }
    }

    unsafe fn unlock(ptr: *mut Self::State, _guard_state: &Self::GuardState) {
        // SAFETY: The caller guarantees the lock is held by us.
        unsafe { ffi::dlm_rs_spin_unlock_bh(ptr) }
    }

    unsafe fn try_lock(ptr: *mut Self::State) -> Option<Self::GuardState> {
        // SAFETY: The caller guarantees `ptr` points to an initialised spinlock.
        (unsafe { ffi::dlm_rs_spin_trylock_bh(ptr) } != 0).then_some(())
    }

    unsafe fn assert_is_held(_ptr: *mut Self::State) {}
}

/// A workqueue we allocated and destroy on drop (`destroy_workqueue()` drains it first).
pub(crate) struct OwnedQueue(NonNull<bindings::workqueue_struct>);

// SAFETY: A `workqueue_struct` may be used from any thread.
unsafe impl Send for OwnedQueue {}
// SAFETY: All workqueue operations are thread-safe.
unsafe impl Sync for OwnedQueue {}

impl OwnedQueue {
    /// Allocates a workqueue named `name` with the `WQ_*` `flags`.
    pub(crate) fn new(name: &'static CStr, flags: u32) -> Result<Self> {
        // SAFETY: The format string takes one `%s` argument, a NUL-terminated static string.
        let wq = unsafe {
            bindings::alloc_workqueue_noprof(c"%s".as_char_ptr(), flags, 0, name.as_char_ptr())
        };
        NonNull::new(wq).map(Self).ok_or(ENOMEM)
    }

    /// Waits until every work item queued before the call has finished.
    pub(crate) fn flush(&self) {
        // SAFETY: The queue is valid until `drop`.
        unsafe { bindings::__flush_workqueue(self.0.as_ptr()) }
    }
}

impl core::ops::Deref for OwnedQueue {
    type Target = Queue;

    fn deref(&self) -> &Queue {
        // SAFETY: The queue is valid until `drop`, which cannot run while `self` is borrowed.
        unsafe { Queue::from_raw(self.0.as_ptr()) }
    }
}

impl Drop for OwnedQueue {
    fn drop(&mut self) {
        // SAFETY: We own the queue and nobody can queue to it after this.
        unsafe { bindings::destroy_workqueue(self.0.as_ptr()) }
    }
}

/// A `memalloc_nofs_save()` scope: allocations made while it lives do not recurse into file
/// system reclaim (dlm serves gfs2, so its I/O workers must not wait on gfs2 writeback).
pub(crate) struct NofsScope(kernel::ffi::c_uint);

impl NofsScope {
    /// Enters the scope.
    pub(crate) fn enter() -> Self {
        // SAFETY: Always safe to call from process context.
        Self(unsafe { ffi::dlm_rs_memalloc_nofs_save() })
    }
}

impl Drop for NofsScope {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from the matching save in the same task.
        unsafe { ffi::dlm_rs_memalloc_nofs_restore(self.0) }
    }
}

/// Cancels work item `ID` of the `Arc`-managed `T` at `p` and waits for a running instance to
/// finish (`cancel_work_sync()`).  A pending item owned the `Arc<T>` reference that `enqueue`
/// leaked; since it will not run now, that reference is dropped here.
///
/// # Safety
///
/// `p` must point to a live `T` owned by an `Arc<T>`, and work item `ID` of `T` must only ever
/// be enqueued as an `Arc<T>`.
unsafe fn cancel_arc_work<T, const ID: u64>(p: *const T)
where
    T: HasWork<T, ID>,
{
    // SAFETY: `p` points to a live `T` (the caller's promise).
    let w = unsafe { <T as HasWork<T, ID>>::raw_get_work(p.cast_mut()) };
    // SAFETY: `w` is the initialised work item embedded in that live `T`.
    let was_pending = unsafe { bindings::cancel_work_sync(Work::<T, ID>::raw_get(w)) };
    if was_pending {
        // SAFETY: The pending item held one reference of the `Arc<T>` that owns `p` (the
        // caller's promise that it is only enqueued as `Arc<T>`); reclaim and drop it.
        drop(unsafe { Arc::from_raw(p) });
    }
}

/// Cancels delayed work item `ID` of the `Arc`-managed `T` at `p` (its timer too) and waits for
/// a running instance to finish (`cancel_delayed_work_sync()`); drops the reference a pending
/// item owned, as [`cancel_arc_work`] does.
///
/// # Safety
///
/// As for [`cancel_arc_work`]; the item must be a [`kernel::workqueue::DelayedWork`].
unsafe fn cancel_arc_delayed_work<T, const ID: u64>(p: *const T)
where
    T: HasDelayedWork<T, ID>,
{
    // SAFETY: `p` points to a live `T` (the caller's promise).
    let w = unsafe { <T as HasWork<T, ID>>::raw_get_work(p.cast_mut()) };
    let dw =
        // SAFETY: `w` is the `work` member of the initialised `delayed_work` embedded in that
        // live `T` (`HasDelayedWork`), so its container is that `delayed_work`.
        unsafe { kernel::container_of!(Work::<T, ID>::raw_get(w), bindings::delayed_work, work) };
    // SAFETY: `dw` is a valid, initialised `delayed_work`.
    let was_pending = unsafe { bindings::cancel_delayed_work_sync(dw) };
    if was_pending {
        // SAFETY: The pending item held one reference of the `Arc<T>` that owns `p`; reclaim
        // and drop it.
        drop(unsafe { Arc::from_raw(p) });
    }
}

/// Cancels work item `ID` of `this` and waits for a running instance (`cancel_work_sync()`);
/// the reference a pending item held is dropped.
pub(crate) fn cancel_work<T, const ID: u64>(this: ArcBorrow<'_, T>)
where
    T: WorkItem<ID, Pointer = Arc<T>> + HasWork<T, ID>,
{
    let p: *const T = &*this;
    // SAFETY: `p` is a live `T` owned by an `Arc<T>` (`this`), and the item can only be
    // enqueued as an `Arc<T>`: that is its `WorkItem::Pointer`.
    unsafe { cancel_arc_work::<T, ID>(p) }
}

/// Cancels delayed work item `ID` of `this` (its timer too) and waits for a running instance
/// (`cancel_delayed_work_sync()`); the reference a pending item held is dropped.
pub(crate) fn cancel_delayed_work<T, const ID: u64>(this: ArcBorrow<'_, T>)
where
    T: WorkItem<ID, Pointer = Arc<T>> + HasDelayedWork<T, ID>,
{
    let p: *const T = &*this;
    // SAFETY: As for `cancel_work`: a live `T` in an `Arc<T>`, only ever enqueued as one.
    unsafe { cancel_arc_delayed_work::<T, ID>(p) }
}

/// A wait queue whose sleepers are uninterruptible, like C's `wait_event_timeout()`: a pending
/// signal (a process killed during unmount or lockspace release) does not end the wait, so the
/// close and shutdown paths sleep for their full timeout instead of spinning.
#[pin_data]
pub(crate) struct WaitQueue {
    #[pin]
    head: Opaque<bindings::wait_queue_head>,
}

// SAFETY: A `wait_queue_head` is used from any thread under its own spinlock.
unsafe impl Send for WaitQueue {}
// SAFETY: As for `Send`; every operation takes the wait queue's own lock.
unsafe impl Sync for WaitQueue {}

/// Creates a [`WaitQueue`] initialiser with a static lock class.
macro_rules! new_wait_queue {
    ($name:literal) => {
        $crate::comms::sync::WaitQueue::new(kernel::c_str!($name), kernel::static_lock_class!())
    };
}
pub(crate) use new_wait_queue;

impl WaitQueue {
    /// A new, empty wait queue.
    pub(crate) fn new(name: &'static CStr, key: Pin<&'static LockClassKey>) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid while the closure runs; `name` and `key` are static.
            head <- Opaque::ffi_init(|slot| unsafe {
                bindings::__init_waitqueue_head(slot, name.as_char_ptr(), key.as_ptr())
            }),
        })
    }

    /// Wakes every sleeper; any context.
    pub(crate) fn notify_all(&self) {
        // SAFETY: `head` is initialised; `__wake_up()` takes its lock.
        unsafe {
            bindings::__wake_up(
                self.head.get(),
                bindings::TASK_NORMAL,
                0,
                core::ptr::null_mut(),
            )
        };
    }

    /// Sleeps, uninterruptibly, until `done` returns true or `timeout` jiffies passed; returns
    /// false on timeout.  `done` runs with `lock` held, and the sleeper is queued before the
    /// lock is dropped, so a change made under the lock and followed by
    /// [`WaitQueue::notify_all`] is never missed.  Process context, no lock held.
    pub(crate) fn wait_timeout<T: Unpin, B: Backend>(
        &self,
        lock: &Lock<T, B>,
        timeout: Jiffies,
        mut done: impl FnMut(&mut T) -> bool,
    ) -> bool {
        let deadline = jiffies().wrapping_add(timeout);
        loop {
            let mut guard = lock.lock();
            if done(&mut guard) {
                return true;
            }
            let left = deadline.wrapping_sub(jiffies()) as isize;
            if left <= 0 {
                return false;
            }
            let wait = Opaque::<bindings::wait_queue_entry>::uninit();
            // SAFETY: `wait` is valid stack memory that stays in place until `finish_wait`.
            unsafe { bindings::init_wait(wait.get()) };
            // SAFETY: `head` and `wait` are valid; `wait` is removed by `finish_wait` below.
            unsafe { bindings::prepare_to_wait(self.head.get(), wait.get(), TASK_UNINTERRUPTIBLE) };
            drop(guard);
            // SAFETY: Process context with no lock held (the caller's promise); any timeout is
            // valid.
            unsafe { bindings::schedule_timeout(left) };
            // SAFETY: `wait` was queued on `head` by `prepare_to_wait` above.
            unsafe { bindings::finish_wait(self.head.get(), wait.get()) };
        }
    }
}
