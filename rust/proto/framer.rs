// SPDX-License-Identifier: GPL-2.0

//! The stream framer: turns bytes that arrive in arbitrary pieces into whole
//! DLM messages.
//!
//! A TCP or SCTP stream carries DLM messages back to back with no separator;
//! each message's `h_length` (offset 12 of its header) says where the next
//! one starts.  [`Framer`] keeps the bytes of at most one incomplete message
//! between calls, in a fixed 4096-byte array (the largest message), so its
//! memory is bounded whatever the peer sends.
//!
//! The receive path feeds each piece it reads with [`Framer::feed`] and pulls
//! frames with [`Feed::next_frame`].  A message that lies entirely inside the
//! piece is returned as a slice of that piece (zero-copy); only the message
//! that straddles two pieces is copied, into the carry-over array.
//!
//! ```ignore
//! let mut feed = framer.feed(&buf[..n]);
//! while let Some(frame) = feed.next_frame()? {
//!     // `frame` is exactly one message of h_length bytes: wire::parse() it.
//! }
//! ```
//!
//! A header whose `h_length` lies outside [16, 4096], or whose `h_version`
//! is not 3.1 or 3.2, means the stream can no longer be split into
//! messages: the framer reports a [`FramingError`] as soon as that header is
//! complete, stays failed, and the caller must close the connection and
//! reconnect, then call [`Framer::reset`].  (C logs and
//! drops the chunk but leaves the socket open, which stalls the receive
//! side; see Documentation/wire-protocol.rst.)
//!
//! [`frames`] offers the same splitting for a caller that keeps its own
//! buffer, the way C's `dlm_validate_incoming_buffer()` does.

use core::fmt;

use super::wire::{self, WireError, HEADER_LEN, MAX_MSG_LEN};

/// Why the framer cannot go on.  After any of these the connection must be
/// closed and the framer [`reset`](Framer::reset) before it is used again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramingError {
    /// The header starting at byte `offset` of the stream (counted from the
    /// last reset) has an `h_length` outside [16, 4096] or an `h_version`
    /// that is neither 3.1 nor 3.2: `error` is [`WireError::LengthTooShort`],
    /// [`WireError::LengthTooLong`], [`WireError::BadMajor`] or
    /// [`WireError::UnknownMinor`] (see [`wire::check_frame_header`]).
    BadHeader {
        /// Stream offset of the bad header.
        offset: u64,
        /// What was wrong with it.
        error: WireError,
    },
    /// A [`Feed`] was dropped before it returned `Ok(None)`, so part of the
    /// input was never looked at and the stream position is lost.
    Abandoned {
        /// Stream offset of the first byte that was not framed.
        offset: u64,
    },
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::BadHeader { offset, error } => {
                write!(f, "bad message header at stream offset {offset}: {error}")
            }
            FramingError::Abandoned { offset } => {
                write!(f, "receive stopped mid-buffer at stream offset {offset}")
            }
        }
    }
}

/// Splits a byte stream into whole messages, carrying at most one
/// incomplete message (≤ 4095 bytes) from one piece to the next.
///
/// One `Framer` belongs to one connection; it holds no reference and no
/// allocation, about 4 KiB in all.
#[derive(Clone)]
pub struct Framer {
    /// The start of a message that is not complete yet.
    carry: [u8; MAX_MSG_LEN],
    /// How many bytes of `carry` are in use (< `MAX_MSG_LEN` between calls).
    carry_len: usize,
    /// Stream offset of the first byte not yet returned in a frame (which
    /// is `carry[0]` when `carry_len > 0`).
    offset: u64,
    /// Set once the stream cannot be framed any more.
    failed: Option<FramingError>,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Framer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framer")
            .field("carry_len", &self.carry_len)
            .field("offset", &self.offset)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Framer {
    /// A framer at the start of a stream.
    pub const fn new() -> Self {
        Framer {
            carry: [0; MAX_MSG_LEN],
            carry_len: 0,
            offset: 0,
            failed: None,
        }
    }

    /// Forgets everything, for a new connection.
    pub fn reset(&mut self) {
        self.carry_len = 0;
        self.offset = 0;
        self.failed = None;
    }

    /// Bytes of an incomplete message held over to the next piece.
    pub fn pending(&self) -> usize {
        self.carry_len
    }

    /// Stream offset (since the last reset) of the first byte not yet
    /// returned in a frame.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The error that stopped the framer, if any.
    pub fn error(&self) -> Option<FramingError> {
        self.failed
    }

    /// Starts framing the next `input` piece of the stream.  Pull the
    /// frames with [`Feed::next_frame`] until it returns `Ok(None)`; the
    /// tail of an incomplete message is then kept for the next piece.
    pub fn feed<'f, 'i>(&'f mut self, input: &'i [u8]) -> Feed<'f, 'i> {
        Feed {
            framer: self,
            input,
            done: false,
        }
    }

    /// Frames all of `input`, calling `on_frame` for each whole message in
    /// stream order.  Returns the number of frames delivered.
    pub fn push<F: FnMut(&[u8])>(
        &mut self,
        input: &[u8],
        mut on_frame: F,
    ) -> Result<usize, FramingError> {
        let mut feed = self.feed(input);
        let mut n = 0;
        while let Some(frame) = feed.next_frame()? {
            on_frame(frame);
            n += 1;
        }
        Ok(n)
    }

    fn fail(&mut self, offset: u64, error: WireError) -> FramingError {
        let e = FramingError::BadHeader { offset, error };
        self.failed = Some(e);
        self.carry_len = 0;
        e
    }

    /// Appends up to `want` bytes of `input` to the carry-over and returns
    /// the rest of `input`.
    fn take<'i>(&mut self, input: &'i [u8], want: usize) -> &'i [u8] {
        let n = want.min(input.len());
        let (head, rest) = input.split_at(n);
        if let Some(dst) = self.carry.get_mut(self.carry_len..self.carry_len + n) {
            dst.copy_from_slice(head);
            self.carry_len += n;
        }
        rest
    }
}

/// One piece of input being framed; see [`Framer::feed`].
///
/// Dropping a `Feed` while part of its input is still unread leaves the
/// framer failed with [`FramingError::Abandoned`], because the unread rest
/// of the piece can no longer be put back into the stream.
pub struct Feed<'f, 'i> {
    framer: &'f mut Framer,
    input: &'i [u8],
    done: bool,
}

impl Feed<'_, '_> {
    /// The next whole message, exactly `h_length` bytes, or `Ok(None)` once
    /// the piece is used up (its incomplete tail, if any, is then held by
    /// the framer).
    ///
    /// The frame borrows either the input piece (when the whole message is
    /// in it) or the framer's carry-over (for the message that began in an
    /// earlier piece).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FramingError> {
        if let Some(e) = self.framer.failed {
            self.done = true;
            return Err(e);
        }
        if self.done {
            return Ok(None);
        }
        if self.framer.carry_len > 0 {
            return self.finish_carried();
        }

        match wire::peek_length(self.input) {
            Err(error) => {
                self.done = true;
                Err(self.framer.fail(self.framer.offset, error))
            }
            Ok(Some(len)) if len <= self.input.len() => {
                let (frame, rest) = self
                    .input
                    .split_at_checked(len)
                    .unwrap_or((self.input, &[]));
                self.input = rest;
                self.framer.offset += len as u64;
                Ok(Some(frame))
            }
            // Incomplete header or incomplete message: keep the tail.  It
            // is shorter than the message it starts, so it fits.
            Ok(_) => {
                let tail = self.input;
                self.input = &[];
                self.framer.take(tail, MAX_MSG_LEN);
                self.done = true;
                Ok(None)
            }
        }
    }

    /// Completes the message whose start is in the carry-over.
    fn finish_carried(&mut self) -> Result<Option<&[u8]>, FramingError> {
        let framer = &mut *self.framer;
        if framer.carry_len < HEADER_LEN {
            self.input = framer.take(self.input, HEADER_LEN - framer.carry_len);
        }
        let len = match wire::peek_length(framer.carry.get(..framer.carry_len).unwrap_or(&[])) {
            Err(error) => {
                self.done = true;
                return Err(framer.fail(framer.offset, error));
            }
            Ok(None) => {
                self.done = true;
                return Ok(None);
            }
            Ok(Some(len)) => len,
        };
        self.input = framer.take(self.input, len.saturating_sub(framer.carry_len));
        if framer.carry_len < len {
            self.done = true;
            return Ok(None);
        }
        framer.carry_len = 0;
        framer.offset += len as u64;
        Ok(Some(framer.carry.get(..len).unwrap_or(&[])))
    }
}

impl Drop for Feed<'_, '_> {
    fn drop(&mut self) {
        // Unread input is lost: the stream cannot be resumed.  (A feed
        // whose input is used up loses nothing, even if `next_frame` was
        // not called again to see `Ok(None)`.)
        if !self.done && !self.input.is_empty() && self.framer.failed.is_none() {
            self.framer.failed = Some(FramingError::Abandoned {
                offset: self.framer.offset,
            });
            self.framer.carry_len = 0;
        }
    }
}

/// Splits a caller-owned buffer into whole messages, without copying.
///
/// Yields each whole message in order, then stops at an incomplete tail,
/// which [`Frames::remainder`] returns (the caller keeps it, C-style, at
/// the start of its buffer for the next read).  Yields one error and then
/// stops if a header fails [`wire::check_frame_header`].
pub fn frames(buf: &[u8]) -> Frames<'_> {
    Frames {
        rest: buf,
        failed: false,
    }
}

/// Iterator returned by [`frames`].
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Frames<'a> {
    /// The bytes not yet returned: after the iterator ends without error,
    /// the incomplete tail (shorter than a header, or than its message).
    pub fn remainder(&self) -> &'a [u8] {
        self.rest
    }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<&'a [u8], WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match wire::peek_length(self.rest) {
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
            Ok(Some(len)) => {
                let (frame, rest) = self.rest.split_at_checked(len)?;
                self.rest = rest;
                Some(Ok(frame))
            }
            Ok(None) => None,
        }
    }
}

/// Length of the longest prefix of `buf` made of whole messages, like C's
/// `dlm_validate_incoming_buffer()`, and the error of the header that ended
/// it, if a header fails [`wire::check_frame_header`] (C checks only the
/// length there and skips a message of an unknown version later; we close
/// the connection for both, after delivering the prefix).
pub fn complete_len(buf: &[u8]) -> (usize, Option<WireError>) {
    let mut it = frames(buf);
    for frame in it.by_ref() {
        if let Err(e) = frame {
            return (buf.len() - it.remainder().len(), Some(e));
        }
    }
    (buf.len() - it.remainder().len(), None)
}
