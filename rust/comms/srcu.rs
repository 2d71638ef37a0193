// SPDX-License-Identifier: GPL-2.0

//! Sleepable RCU (SRCU), which the `kernel` crate of 7.2 does not have, in the shape of the
//! `kernel::sync::srcu` of later kernels: [`Srcu`] (a pinned `srcu_struct` with
//! `read_lock()` and `synchronize()`) and its read guard [`Guard`]; and on top of it
//! [`SrcuHashTable`], a hash table whose readers take no lock, for the node table.
//!
//! C header: [`include/linux/srcu.h`](srctree/include/linux/srcu.h)

use core::{
    marker::PhantomData,
    ptr,
    sync::atomic::{AtomicPtr, Ordering},
};
use kernel::{
    bindings,
    error::to_result,
    ffi::c_int,
    prelude::*,
    sync::LockClassKey,
    types::{NotThreadSafe, Opaque},
};

use super::ffi;

/// A sleepable RCU domain (`struct srcu_struct`).
///
/// # Invariants
///
/// `inner` is initialised (`init_srcu_struct()`) until `drop` cleans it up.
#[pin_data(PinnedDrop)]
pub(crate) struct Srcu {
    #[pin]
    inner: Opaque<bindings::srcu_struct>,
}

// SAFETY: An `srcu_struct` is not tied to the thread that initialised it; `cleanup_srcu_struct()`
// may run on any thread.
unsafe impl Send for Srcu {}
// SAFETY: Read-side sections and grace periods of one `srcu_struct` may be entered and waited
// for from any number of threads at once; the C code synchronises them.
unsafe impl Sync for Srcu {}

impl Srcu {
    /// A new SRCU domain; `name` and `key` are its lockdep class.
    pub(crate) fn new(
        name: &'static CStr,
        key: Pin<&'static LockClassKey>,
    ) -> impl PinInit<Self, Error> {
        // INVARIANT: If `init_srcu_struct()` fails, so does the initialiser, and `drop` never
        // runs.
        try_pin_init!(Self {
            inner <- Opaque::try_ffi_init(|slot: *mut bindings::srcu_struct| {
                // SAFETY: `slot` is valid, writable and pinned memory for an `srcu_struct`;
                // `name` and `key` are static, as lockdep wants them.
                to_result(unsafe {
                    ffi::dlm_rs_init_srcu_struct(slot, name.as_char_ptr(), key.as_ptr())
                })
            }),
        }? Error)
    }

    /// Enters a read-side section; it lasts as long as the returned guard.  Any context but
    /// NMI; the section may sleep.
    pub(crate) fn read_lock(&self) -> Guard<'_> {
        // SAFETY: `inner` is initialised (type invariant).
        let idx = unsafe { ffi::dlm_rs_srcu_read_lock(self.inner.get()) };
        // INVARIANT: The section was just entered with index `idx`.
        Guard {
            srcu: self,
            idx,
            _not_send: NotThreadSafe,
        }
    }

    /// Waits until every read-side section that began before the call has ended.
    ///
    /// Process context; sleeps.  Calling it inside a read-side section of the same domain
    /// deadlocks (lockdep reports it).
    pub(crate) fn synchronize(&self) {
        // SAFETY: `inner` is initialised (type invariant); the function only sleeps.
        unsafe { bindings::synchronize_srcu(self.inner.get()) }
    }
}

#[pinned_drop]
impl PinnedDrop for Srcu {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `inner` is initialised (type invariant).  No read-side section is open, since
        // every `Guard` borrows `self`; no grace period is being waited for, since
        // `synchronize` borrows `self` too; and no callback is queued, because this type never
        // queues one (`call_srcu()`), so the domain can be cleaned up.
        unsafe { bindings::cleanup_srcu_struct(self.inner.get()) }
    }
}

/// An open read-side section of an [`Srcu`]; it ends when the guard is dropped.
///
/// The guard stays on the thread that made it (lockdep tracks the section per task).
///
/// # Invariants
///
/// A read-side section of `srcu`, entered with index `idx`, is open while the guard exists.
#[must_use = "the read-side section ends when the guard is dropped"]
pub(crate) struct Guard<'a> {
    srcu: &'a Srcu,
    idx: c_int,
    _not_send: NotThreadSafe,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        // SAFETY: The section entered with `idx` is open (type invariant) and this is the only
        // place that ends it.
        unsafe { ffi::dlm_rs_srcu_read_unlock(self.srcu.inner.get(), self.idx) }
    }
}

/// A hash table of `N` buckets whose readers take no lock and never wait: each bucket is an
/// array published under SRCU, which writers replace whole (copy on write) and free only after
/// a grace period.
///
/// Meant for tables read on hot paths from any context and changed rarely, from process
/// context.  Writers need no lock of their own for the table to stay sound (they publish with
/// compare-and-exchange and retry); callers that keep several tables in agreement serialise
/// their writers themselves.
///
/// # Invariants
///
/// Every `buckets[i]` is null (an empty bucket) or comes from `KBox::into_raw()` of a
/// `KBox<KVec<T>>` that is freed only after it was replaced in `buckets[i]` and a grace period
/// of `srcu` then passed, or when the table is dropped.  Elements in bucket `i` were inserted
/// with a hash that is `i` modulo `N`.
#[pin_data(PinnedDrop)]
pub(crate) struct SrcuHashTable<T, const N: usize> {
    #[pin]
    srcu: Srcu,
    buckets: [AtomicPtr<KVec<T>>; N],
    /// The table owns `T`s that readers share and writers drop on any thread (see the `Send`
    /// and `Sync` impls); this removes the automatic ones, which `AtomicPtr` would allow for
    /// any `T`.
    _owns: PhantomData<*const T>,
}

// SAFETY: Moving the table to another thread moves its `T`s with it (`T: Send`); a `T` is
// shared between the readers of every thread (`T: Sync`).
unsafe impl<T: Send + Sync, const N: usize> Send for SrcuHashTable<T, N> {}
// SAFETY: Readers on several threads get `&T` at once (`T: Sync`); a writer on any thread drops
// the `T`s it removes (`T: Send`).
unsafe impl<T: Send + Sync, const N: usize> Sync for SrcuHashTable<T, N> {}

/// Creates an [`SrcuHashTable`] initialiser with a static lock class for its SRCU domain.
macro_rules! new_srcu_hash_table {
    ($name:literal) => {
        $crate::comms::srcu::SrcuHashTable::new(kernel::c_str!($name), kernel::static_lock_class!())
    };
}
pub(crate) use new_srcu_hash_table;

impl<T, const N: usize> SrcuHashTable<T, N> {
    /// An empty table; `name` and `key` are the lockdep class of its SRCU domain.
    pub(crate) fn new(
        name: &'static CStr,
        key: Pin<&'static LockClassKey>,
    ) -> impl PinInit<Self, Error> {
        const { assert!(N > 0) };
        // INVARIANT: Every bucket starts out empty.
        try_pin_init!(Self {
            srcu <- Srcu::new(name, key),
            buckets: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            _owns: PhantomData,
        }? Error)
    }

    const fn index(hash: u32) -> usize {
        hash as usize % N
    }

    /// Opens a read-side section of the table: its buckets can be read until the guard is
    /// dropped.  Any context but NMI; it takes no lock.
    pub(crate) fn read(&self) -> ReadGuard<'_, T, N> {
        ReadGuard {
            table: self,
            _guard: self.srcu.read_lock(),
        }
    }

    /// Waits until every read-side section of the table open at the call has ended
    /// (`synchronize_srcu()`).  Process context; sleeps.  Calling it inside a read-side
    /// section of this table deadlocks.
    pub(crate) fn synchronize(&self) {
        self.srcu.synchronize();
    }

    /// Replaces the bucket of `hash` by what `f` makes of its present elements: `Ok(None)`
    /// leaves it as it is, `Ok(Some(v))` publishes `v` (every element of `v` must belong in this
    /// bucket, i.e. have a hash equal to `hash` modulo `N`).  Returns whether the bucket changed.
    ///
    /// `f` may run more than once if writers race.  On return, after a grace period, the old
    /// array with the elements `f` left out has been dropped: no reader can see them any more.
    ///
    /// Process context; sleeps (`f` runs in a read-side section, where it may allocate).
    /// Calling it inside a read-side section of this table deadlocks.
    pub(crate) fn update(
        &self,
        hash: u32,
        mut f: impl FnMut(&[T]) -> Result<Option<KVec<T>>>,
    ) -> Result<bool> {
        let bucket = &self.buckets[Self::index(hash)];
        let old = loop {
            let _guard = self.srcu.read_lock();
            let cur = bucket.load(Ordering::Acquire);
            let elems: &[T] = if cur.is_null() {
                &[]
            } else {
                // SAFETY: A non-null `cur` is a live `KVec<T>` (type invariant); it cannot be
                // freed before `_guard` is dropped, because whoever replaces it waits for a
                // grace period first.  Nobody mutates a published array.
                unsafe { &*cur }
            };
            let Some(new) = f(elems)? else {
                return Ok(false);
            };
            let new = if new.is_empty() {
                ptr::null_mut()
            } else {
                KBox::into_raw(KBox::new(new, GFP_KERNEL)?)
            };
            // `cur` cannot have been freed and reused while `_guard` is held, so a successful
            // exchange really replaces the array `f` saw.
            match bucket.compare_exchange(cur, new, Ordering::AcqRel, Ordering::Acquire) {
                // INVARIANT: The new array is published; the old one is ours to free.
                Ok(_) => break cur,
                Err(_) => {
                    if !new.is_null() {
                        // SAFETY: `new` came from `KBox::into_raw()` above and was never
                        // published.
                        drop(unsafe { KBox::from_raw(new) });
                    }
                }
            }
        };
        if !old.is_null() {
            self.srcu.synchronize();
            // SAFETY: `old` came from `KBox::into_raw()` (type invariant); it is no longer in
            // the table (this call replaced it), and the grace period that just passed ended
            // every read-side section that could still see it.
            drop(unsafe { KBox::from_raw(old) });
        }
        Ok(true)
    }
}

#[pinned_drop]
impl<T, const N: usize> PinnedDrop for SrcuHashTable<T, N> {
    fn drop(self: Pin<&mut Self>) {
        for bucket in self.buckets.iter() {
            let p = bucket.swap(ptr::null_mut(), Ordering::Acquire);
            if !p.is_null() {
                // SAFETY: `p` came from `KBox::into_raw()` (type invariant), and nobody can read
                // it any more: readers and writers borrow the table, which is being dropped.
                drop(unsafe { KBox::from_raw(p) });
            }
        }
    }
}

/// An open read-side section of an [`SrcuHashTable`].
pub(crate) struct ReadGuard<'a, T, const N: usize> {
    table: &'a SrcuHashTable<T, N>,
    _guard: Guard<'a>,
}

impl<T, const N: usize> ReadGuard<'_, T, N> {
    /// The elements in the bucket of `hash` (every element whose hash equals `hash` modulo
    /// `N`, and only those).
    pub(crate) fn bucket(&self, hash: u32) -> &[T] {
        self.bucket_at(SrcuHashTable::<T, N>::index(hash))
    }

    fn bucket_at(&self, i: usize) -> &[T] {
        let p = self.table.buckets[i].load(Ordering::Acquire);
        if p.is_null() {
            return &[];
        }
        // SAFETY: A non-null bucket is a live `KVec<T>` (type invariant of the table) that
        // nobody mutates; it is freed only after a grace period of the table's SRCU domain that
        // begins after it was replaced, and `_guard` holds a read-side section of that domain
        // open for as long as the returned borrow of `self` lasts.
        unsafe { &*p }
    }

    /// Every element of the table, bucket by bucket.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        (0..N).flat_map(move |i| self.bucket_at(i).iter())
    }
}
