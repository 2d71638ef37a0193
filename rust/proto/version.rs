// SPDX-License-Identifier: GPL-2.0

//! Per-peer protocol version (3.1 or 3.2), learned from received messages.
//!
//! As in C, a node's version is unset until the first valid message from
//! it arrives; that message's `h_version` becomes the node's version.  From
//! then on a message labelled with the other version is dropped ("version
//! mismatch") and nothing else happens.  The version is cleared only when
//! the node is reset (close handshake completed, shutdown, stuck-close
//! reset), not when the connection is re-established.
//!
//! The version decides how we send:
//!
//! * unset: only the stateless path works (RCOM_STATUS and its
//!   STATUS_REPLY, sent as plain DLM_RCOM); the reliable send path refuses;
//! * 3.1: plain DLM_MSG / DLM_RCOM, no seq, no ack, no FIN;
//! * 3.2: every reliable message wrapped in DLM_OPTS with a seq.
//!
//! We always label what we send [`wire::SEND_VERSION`] (3.2), also towards
//! 3.1 peers, as C does: older peers compare only the major half.
//!
//! The first messages between two nodes are RCOM_STATUS and STATUS_REPLY,
//! which travel unencapsulated and unsequenced, and are accepted before the
//! version is known; [`wire::parse`] allows an unencapsulated 3.2 DLM_RCOM
//! only for the types in [`wire::RcomType::is_stateless`].

use core::fmt;

use super::wire::{self, Packet, Version, WireError};

/// What observing a received message did to the peer's version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Observed {
    /// This message set the peer's version.  C wakes the shutdown waiters
    /// here and, for 3.2, moves a CLOSED node to ESTABLISHED.
    Detected(Version),
    /// The version was already known and the message agrees with it.
    Known(Version),
}

/// How messages to the peer must be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendMode {
    /// 3.1 peer: plain messages, no seq, no retransmission.
    Plain,
    /// 3.2 peer: wrapped in DLM_OPTS, sequenced, acknowledged.
    Sequenced,
}

/// Version errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionError {
    /// A message labelled `got` from a peer already known as `detected`.
    Mismatch {
        /// The peer's version.
        detected: Version,
        /// The message's version.
        got: Version,
    },
    /// The peer's version is not known yet: only stateless messages can be
    /// sent to it.
    NotDetected,
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionError::Mismatch { detected, got } => {
                write!(
                    f,
                    "version mismatch: node speaks {detected} but sent a {got} message"
                )
            }
            VersionError::NotDetected => f.write_str("node version not detected yet"),
        }
    }
}

/// Why a received frame was dropped: it is invalid, or its version does
/// not match the peer's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The frame failed a wire check.
    Wire(WireError),
    /// The frame is valid but its version conflicts with the peer's.
    Version(VersionError),
}

impl From<WireError> for RecvError {
    fn from(e: WireError) -> Self {
        RecvError::Wire(e)
    }
}

impl From<VersionError> for RecvError {
    fn from(e: VersionError) -> Self {
        RecvError::Version(e)
    }
}

impl fmt::Display for RecvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvError::Wire(e) => fmt::Display::fmt(e, f),
            RecvError::Version(e) => fmt::Display::fmt(e, f),
        }
    }
}

/// The protocol version of one peer node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerVersion {
    version: Option<Version>,
}

impl PeerVersion {
    /// A peer whose version is not known yet.
    pub const fn new() -> Self {
        PeerVersion { version: None }
    }

    /// The detected version, if any.
    pub const fn get(&self) -> Option<Version> {
        self.version
    }

    /// The value C shows in debugfs `version`: 0, 0x00030001 or 0x00030002.
    pub const fn to_wire(&self) -> u32 {
        match self.version {
            None => 0,
            Some(v) => v.to_wire(),
        }
    }

    /// Forgets the version (node reset).
    pub fn reset(&mut self) {
        self.version = None;
    }

    /// Records that a valid message labelled `got` arrived from the peer.
    ///
    /// The first one sets the version; later ones must agree with it.  On
    /// [`VersionError::Mismatch`] the message must be dropped.
    pub fn observe(&mut self, got: Version) -> Result<Observed, VersionError> {
        match self.version {
            None => {
                self.version = Some(got);
                Ok(Observed::Detected(got))
            }
            Some(v) if v == got => Ok(Observed::Known(v)),
            Some(detected) => Err(VersionError::Mismatch { detected, got }),
        }
    }

    /// How to send to the peer; [`VersionError::NotDetected`] while only the
    /// stateless path may be used.
    pub const fn send_mode(&self) -> Result<SendMode, VersionError> {
        match self.version {
            None => Err(VersionError::NotDetected),
            Some(Version::V3_1) => Ok(SendMode::Plain),
            Some(Version::V3_2) => Ok(SendMode::Sequenced),
        }
    }

    /// Parses one whole received frame from node `nodeid`
    /// ([`wire::parse`]) and checks it against the peer's version, learning
    /// the version from the first valid message.
    ///
    /// On success the caller dispatches on `packet.body`:
    /// [`wire::Body::Plain`] goes straight to the lock manager,
    /// [`wire::Body::Opts`] and [`wire::Body::Ack`] to the reliable layer.
    pub fn receive<'a>(
        &mut self,
        frame: &'a [u8],
        nodeid: u32,
    ) -> Result<(Packet<'a>, Observed), RecvError> {
        let packet = wire::parse(frame, nodeid)?;
        let observed = self.observe(packet.version)?;
        Ok((packet, observed))
    }
}
