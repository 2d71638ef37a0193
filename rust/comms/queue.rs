// SPDX-License-Identifier: GPL-2.0

//! A FIFO queue in fixed-size chunks, for the queues that live under a node's BH lock (the
//! write queue and the unacknowledged messages).  It never reallocates what it holds: it grows
//! one small chunk at a time, and [`ChunkQueue::make_room`] allocates, before anything is
//! queued, whatever the next pushes need, so that a push that follows cannot fail and a caller
//! can decide to go ahead only once all its allocations succeeded.  One emptied chunk is kept
//! for reuse.

use kernel::{alloc::Flags, prelude::*};

/// Slots per chunk.
const CHUNK: usize = 32;

type Chunk<T> = KBox<[Option<T>; CHUNK]>;

// Not inlined: the allocation-failure tests target it by name (a fault-injection stack filter).
#[inline(never)]
fn new_chunk<T>(flags: Flags) -> Result<Chunk<T>> {
    KBox::init(::pin_init::init_array_from_fn(|_| None::<T>), flags)
}

/// A FIFO of `T` in chunks of [`CHUNK`] slots.
///
/// # Invariants
///
/// The queued values are the `len` slots from slot `head` of the first chunk on, in order; every
/// other slot is `None`.  `head < CHUNK`, and the chunks hold `head + len` slots at least.
pub(crate) struct ChunkQueue<T> {
    chunks: KVec<Chunk<T>>,
    head: usize,
    len: usize,
    /// An emptied or preallocated chunk, used by the next push that needs one.
    spare: Option<Chunk<T>>,
}

impl<T> ChunkQueue<T> {
    /// An empty queue; allocates nothing.
    pub(crate) const fn new() -> Self {
        Self {
            chunks: KVec::new(),
            head: 0,
            len: 0,
            spare: None,
        }
    }

    /// Number of queued values.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn chunks_for(&self, n: usize) -> usize {
        (self.head + self.len + n).div_ceil(CHUNK)
    }

    /// Makes sure that the next `n` pushes (at most one chunk's worth) cannot fail: allocates
    /// the chunk and the chunk table room they need now, or fails with nothing changed but a
    /// chunk kept for later.
    pub(crate) fn make_room(&mut self, n: usize, flags: Flags) -> Result {
        if n > CHUNK {
            return Err(EINVAL);
        }
        let more = self.chunks_for(n).saturating_sub(self.chunks.len());
        if more == 0 {
            return Ok(());
        }
        // By the invariant the chunks hold `head + len` slots, so `n <= CHUNK` pushes need one
        // chunk more at most.
        if self.spare.is_none() {
            self.spare = Some(new_chunk(flags)?);
        }
        self.chunks.reserve(more, flags)?;
        Ok(())
    }

    /// Whether a push cannot fail now (no allocation needed).
    pub(crate) fn can_push(&self) -> bool {
        let abs = self.head + self.len;
        abs / CHUNK < self.chunks.len()
            || (self.spare.is_some() && self.chunks.len() < self.chunks.capacity())
    }

    /// Whether no chunk is kept ahead, so that the next push to cross into a new chunk would
    /// allocate under the caller's lock (atomically).  A caller in process context then
    /// preallocates one outside its lock ([`ChunkQueue::give_spare`]): it is kept whether or
    /// not the current chunk still has room, so that a burst of pushes from atomic context
    /// crosses a chunk boundary without allocating.
    pub(crate) fn wants_spare(&self) -> bool {
        self.spare.is_none()
    }

    /// Allocates a chunk for [`ChunkQueue::give_spare`], outside the caller's lock.
    pub(crate) fn alloc_spare(flags: Flags) -> Result<SpareChunk<T>> {
        Ok(SpareChunk(new_chunk(flags)?))
    }

    /// Keeps `chunk` for a later push, unless one is kept already; returns what it did not
    /// keep, for the caller to drop after its lock.
    pub(crate) fn give_spare(&mut self, chunk: SpareChunk<T>) -> Option<SpareChunk<T>> {
        if self.spare.is_none() {
            self.spare = Some(chunk.0);
            return None;
        }
        Some(chunk)
    }

    /// Appends `v`; hands it back if there is no room (see [`ChunkQueue::make_room`]).
    pub(crate) fn push_back(&mut self, v: T) -> core::result::Result<(), T> {
        let abs = self.head + self.len;
        if abs / CHUNK == self.chunks.len() {
            let Some(chunk) = self.spare.take() else {
                return Err(v);
            };
            if let Err(e) = self.chunks.push_within_capacity(chunk) {
                self.spare = Some(e.0);
                return Err(v);
            }
        }
        match self.chunks.get_mut(abs / CHUNK) {
            Some(c) => c[abs % CHUNK] = Some(v),
            None => return Err(v),
        }
        self.len += 1;
        Ok(())
    }

    /// Removes the oldest value.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let v = self.chunks.first_mut()?[self.head].take();
        self.head += 1;
        self.len -= 1;
        if self.head == CHUNK {
            if let Ok(c) = self.chunks.remove(0) {
                if self.spare.is_none() {
                    self.spare = Some(c);
                }
            }
            self.head = 0;
        } else if self.len == 0 {
            self.head = 0;
        }
        v
    }

    fn slot(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        let abs = self.head + i;
        self.chunks.get(abs / CHUNK)?[abs % CHUNK].as_ref()
    }

    fn slot_mut(&mut self, i: usize) -> Option<&mut T> {
        if i >= self.len {
            return None;
        }
        let abs = self.head + i;
        self.chunks.get_mut(abs / CHUNK)?[abs % CHUNK].as_mut()
    }

    /// Value `i` (0 is the oldest), mutably.
    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.slot_mut(i)
    }

    /// The oldest value.
    pub(crate) fn front(&self) -> Option<&T> {
        self.slot(0)
    }

    /// The oldest value, mutably.
    pub(crate) fn front_mut(&mut self) -> Option<&mut T> {
        self.slot_mut(0)
    }

    /// The newest value, mutably.
    pub(crate) fn back_mut(&mut self) -> Option<&mut T> {
        self.slot_mut(self.len.checked_sub(1)?)
    }

    /// The newest value.
    pub(crate) fn back(&self) -> Option<&T> {
        self.slot(self.len.checked_sub(1)?)
    }

    /// Value `i` (0 is the oldest).
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.slot(i)
    }

    /// The values, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        (0..self.len).filter_map(move |i| self.slot(i))
    }

    /// Drops every value (and every chunk but one kept for reuse).
    pub(crate) fn clear(&mut self) {
        while self.pop_front().is_some() {}
        if self.spare.is_none() {
            self.spare = self.chunks.pop();
        }
        self.chunks.clear();
        self.head = 0;
    }
}

/// A chunk allocated ahead of time for [`ChunkQueue::give_spare`].
pub(crate) struct SpareChunk<T>(Chunk<T>);
