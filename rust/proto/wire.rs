// SPDX-License-Identifier: GPL-2.0

//! The DLM wire codec: parse and build the messages that DLM nodes exchange.
//!
//! Everything here works on byte slices: [`parse`] returns views into the
//! frame it was given (nothing is copied), and the encoders write into a
//! buffer supplied by the caller.  All multi-byte fields are little-endian,
//! as in `struct dlm_header`, `struct dlm_opts`, `struct dlm_message` and
//! `struct dlm_rcom` of the C implementation (fs/dlm/dlm_internal.h).
//!
//! Layout of the 16-byte `dlm_header` that starts every message:
//!
//! | Offset | Size | Field                       |
//! |--------|------|-----------------------------|
//! | 0      | 4    | `h_version`                 |
//! | 4      | 4    | `u.h_lockspace` / `u.h_seq` |
//! | 8      | 4    | `h_nodeid`                  |
//! | 12     | 2    | `h_length` (whole message)  |
//! | 14     | 1    | `h_cmd`                     |
//! | 15     | 1    | `h_pad`                     |
//!
//! `DLM_OPTS` adds 8 bytes after the header: `o_nextcmd` (16), `o_pad` (17),
//! `o_optlen` (18, 2 bytes), `o_pad2` (20, 4 bytes), then `o_optlen` bytes of
//! options, then the complete inner message.  See
//! Documentation/wire-protocol.rst for the full description and for every
//! place where the checks here are stricter than C's.
//!
//! Nothing in this module can panic on received bytes: every read goes
//! through a bounds-checked accessor and every problem is reported as a
//! [`WireError`] that says exactly what was wrong.

use core::fmt;

/// Size of `struct dlm_header`.
pub const HEADER_LEN: usize = 16;
/// Size of `struct dlm_opts` without options (`DLM_MIDCOMMS_OPT_LEN`).
pub const OPTS_LEN: usize = 24;
/// Size of `struct dlm_message` without `m_extra`: the shortest DLM_MSG.
pub const MESSAGE_MIN_LEN: usize = 88;
/// Size of `struct dlm_rcom` without `rc_buf`: the shortest DLM_RCOM.
pub const RCOM_MIN_LEN: usize = 48;
/// Length of a DLM_ACK (header only).
pub const ACK_LEN: usize = HEADER_LEN;
/// Length of a DLM_FIN (header only); it is always sent inside DLM_OPTS.
pub const FIN_LEN: usize = HEADER_LEN;
/// Length of a DLM_OPTS message that carries a DLM_FIN.
pub const OPTS_FIN_LEN: usize = OPTS_LEN + FIN_LEN;
/// Largest `h_length` of any message on the wire (`DLM_MAX_SOCKET_BUFSIZE`).
pub const MAX_MSG_LEN: usize = 4096;
/// Largest message the upper layer may hand to a 3.2 peer, so that it still
/// fits after the DLM_OPTS header (`DLM_MAX_APP_BUFSIZE`).
pub const MAX_APP_LEN: usize = MAX_MSG_LEN - OPTS_LEN;

/// Major part of the protocol version (`DLM_HEADER_MAJOR`).
pub const HEADER_MAJOR: u32 = 0x0003_0000;
/// Minor part of the protocol version we speak (`DLM_HEADER_MINOR`).
pub const HEADER_MINOR: u32 = 0x0000_0002;
/// Mask selecting the major half of `h_version`.
pub const MAJOR_MASK: u32 = 0xffff_0000;
/// `h_version` that we (like C) write into every message we send, whatever
/// the peer's version: `DLM_HEADER_MAJOR | DLM_HEADER_MINOR`.
pub const SEND_VERSION: u32 = HEADER_MAJOR | HEADER_MINOR;

// Byte offsets inside `struct dlm_header` (the others are decoded by
// `Header::decode` from a fixed array).
const H_VERSION: usize = 0;
const H_LENGTH: usize = 12;
const H_CMD: usize = 14;
// Byte offsets inside `struct dlm_opts`.
const O_NEXTCMD: usize = 16;
const O_OPTLEN: usize = 18;
// Byte offset of `rc_type` inside `struct dlm_rcom`.
const RC_TYPE: usize = 16;

/// A DLM protocol version that this implementation understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// 3.1 (`DLM_VERSION_3_1`): plain messages, no seq, no ack, no FIN.
    V3_1,
    /// 3.2 (`DLM_VERSION_3_2`): reliable messages wrapped in DLM_OPTS.
    V3_2,
}

impl Version {
    /// `h_version` of a 3.1 message (`DLM_VERSION_3_1`).
    pub const WIRE_3_1: u32 = 0x0003_0001;
    /// `h_version` of a 3.2 message (`DLM_VERSION_3_2`).
    pub const WIRE_3_2: u32 = 0x0003_0002;

    /// The `h_version` word of this version.
    pub const fn to_wire(self) -> u32 {
        match self {
            Version::V3_1 => Self::WIRE_3_1,
            Version::V3_2 => Self::WIRE_3_2,
        }
    }

    /// Decodes an `h_version` word: the major half must be 3
    /// ([`WireError::BadMajor`]) and the minor half 1 or 2
    /// ([`WireError::UnknownMinor`]).
    pub const fn from_wire(version: u32) -> Result<Self, WireError> {
        if version & MAJOR_MASK != HEADER_MAJOR {
            return Err(WireError::BadMajor { version });
        }
        match version {
            Self::WIRE_3_1 => Ok(Version::V3_1),
            Self::WIRE_3_2 => Ok(Version::V3_2),
            _ => Err(WireError::UnknownMinor { version }),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::V3_1 => f.write_str("3.1"),
            Version::V3_2 => f.write_str("3.2"),
        }
    }
}

/// The `h_cmd` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Cmd {
    /// `DLM_MSG`: a lock manager message (`struct dlm_message`).
    Msg = 1,
    /// `DLM_RCOM`: a recovery message (`struct dlm_rcom`).
    Rcom = 2,
    /// `DLM_OPTS`: 3.2 encapsulation with a seq and an inner message.
    Opts = 3,
    /// `DLM_ACK`: 3.2 cumulative acknowledgement.
    Ack = 4,
    /// `DLM_FIN`: 3.2 close handshake, only inside DLM_OPTS.
    Fin = 5,
}

impl Cmd {
    /// Decodes `h_cmd`; `None` for values outside the whitelist.
    pub const fn from_wire(cmd: u8) -> Option<Self> {
        match cmd {
            1 => Some(Cmd::Msg),
            2 => Some(Cmd::Rcom),
            3 => Some(Cmd::Opts),
            4 => Some(Cmd::Ack),
            5 => Some(Cmd::Fin),
            _ => None,
        }
    }

    /// The `h_cmd` byte.
    pub const fn to_wire(self) -> u8 {
        self as u8
    }

    /// The C name of the command.
    pub const fn name(self) -> &'static str {
        match self {
            Cmd::Msg => "DLM_MSG",
            Cmd::Rcom => "DLM_RCOM",
            Cmd::Opts => "DLM_OPTS",
            Cmd::Ack => "DLM_ACK",
            Cmd::Fin => "DLM_FIN",
        }
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The `rc_type` values of `struct dlm_rcom` (`DLM_RCOM_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RcomType {
    /// `DLM_RCOM_STATUS`: recovery status request, the first message sent.
    Status = 1,
    /// `DLM_RCOM_NAMES`.
    Names = 2,
    /// `DLM_RCOM_LOOKUP`.
    Lookup = 3,
    /// `DLM_RCOM_LOCK`.
    Lock = 4,
    /// `DLM_RCOM_STATUS_REPLY`.
    StatusReply = 5,
    /// `DLM_RCOM_NAMES_REPLY`.
    NamesReply = 6,
    /// `DLM_RCOM_LOOKUP_REPLY`.
    LookupReply = 7,
    /// `DLM_RCOM_LOCK_REPLY`.
    LockReply = 8,
}

impl RcomType {
    /// Decodes `rc_type`; `None` for values C does not define.
    pub const fn from_wire(rc_type: u32) -> Option<Self> {
        match rc_type {
            1 => Some(RcomType::Status),
            2 => Some(RcomType::Names),
            3 => Some(RcomType::Lookup),
            4 => Some(RcomType::Lock),
            5 => Some(RcomType::StatusReply),
            6 => Some(RcomType::NamesReply),
            7 => Some(RcomType::LookupReply),
            8 => Some(RcomType::LockReply),
            _ => None,
        }
    }

    /// Whether a 3.2 peer may send this type without DLM_OPTS, on the
    /// stateless path that works before the peer's version is known.
    ///
    /// These are the types C's 3.2 receive path accepts unencapsulated:
    /// STATUS and STATUS_REPLY (sent statelessly by every current node) and
    /// NAMES and NAMES_REPLY (sent statelessly by older 3.2 nodes).
    pub const fn is_stateless(rc_type: u32) -> bool {
        matches!(
            Self::from_wire(rc_type),
            Some(RcomType::Status | RcomType::StatusReply | RcomType::Names | RcomType::NamesReply)
        )
    }
}

/// Why received bytes were rejected.
///
/// Every variant carries the offending values so that a log line can say
/// exactly what was wrong.  Only the two length errors break the framing of
/// the byte stream (see [`WireError::breaks_stream`]); for every other error
/// the message can be dropped and the stream continues with the next one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than a 16-byte `dlm_header` were given.
    Truncated {
        /// Number of bytes available.
        len: usize,
    },
    /// `h_length` is smaller than the 16-byte header.
    LengthTooShort {
        /// The `h_length` read from the header.
        len: u16,
    },
    /// `h_length` is larger than `DLM_MAX_SOCKET_BUFSIZE` (4096).
    LengthTooLong {
        /// The `h_length` read from the header.
        len: u16,
    },
    /// The frame handed to [`parse`] is not exactly `h_length` bytes long.
    LengthMismatch {
        /// The `h_length` read from the header.
        h_length: u16,
        /// Length of the frame given.
        frame: usize,
    },
    /// The major half of `h_version` is not 3.
    BadMajor {
        /// The `h_version` word.
        version: u32,
    },
    /// The major half of `h_version` is 3 but the version is neither 3.1
    /// nor 3.2.
    UnknownMinor {
        /// The `h_version` word.
        version: u32,
    },
    /// `h_cmd` is not one of DLM_MSG, DLM_RCOM, DLM_OPTS, DLM_ACK, DLM_FIN.
    UnknownCmd {
        /// The `h_cmd` byte.
        cmd: u8,
    },
    /// A known `h_cmd` that this version does not allow at the top level:
    /// DLM_OPTS, DLM_ACK or DLM_FIN in a 3.1 message, unencapsulated
    /// DLM_MSG or DLM_FIN in a 3.2 message.
    CmdNotAllowed {
        /// The message's version.
        version: Version,
        /// The command.
        cmd: Cmd,
    },
    /// `h_nodeid` is not the nodeid configured for the connection.
    NodeIdMismatch {
        /// The connection's nodeid.
        expected: u32,
        /// The `h_nodeid` received.
        got: u32,
    },
    /// A DLM_MSG shorter than `struct dlm_message` (88 bytes).
    MsgTooShort {
        /// Its `h_length`.
        len: u16,
    },
    /// A DLM_RCOM shorter than `struct dlm_rcom` (48 bytes).
    RcomTooShort {
        /// Its `h_length`.
        len: u16,
    },
    /// An unencapsulated 3.2 DLM_RCOM of a type that must be sequenced.
    RcomNotStateless {
        /// Its `rc_type`.
        rc_type: u32,
    },
    /// A DLM_OPTS too short to hold `struct dlm_opts` plus an inner header.
    OptsTooShort {
        /// Its `h_length`.
        len: u16,
    },
    /// `o_optlen` leaves no room for the 16-byte inner header.
    OptsLenTooLong {
        /// The `o_optlen` received.
        optlen: u16,
        /// Bytes the outer frame carries after `struct dlm_opts`.
        room: usize,
    },
    /// The inner message's `h_length` differs from the number of bytes the
    /// outer DLM_OPTS carries after its options.
    OptsInnerLenMismatch {
        /// The inner `h_length`.
        inner: u16,
        /// Bytes carried by the outer frame after the options.
        outer: usize,
    },
    /// `o_nextcmd` is not a command DLM_OPTS may carry (MSG, RCOM, FIN).
    BadNextCmd {
        /// The `o_nextcmd` byte.
        nextcmd: u8,
    },
    /// The inner `h_cmd` is not a command DLM_OPTS may carry.
    BadInnerCmd {
        /// The inner `h_cmd` byte.
        cmd: u8,
    },
    /// `o_nextcmd` and the inner `h_cmd` disagree.
    NextCmdMismatch {
        /// The `o_nextcmd` byte.
        nextcmd: u8,
        /// The inner `h_cmd` byte.
        inner: u8,
    },
    /// The major half of the inner `h_version` is not 3.
    InnerBadMajor {
        /// The inner `h_version` word.
        version: u32,
    },
    /// The inner `h_nodeid` is not the connection's nodeid.
    InnerNodeIdMismatch {
        /// The connection's nodeid.
        expected: u32,
        /// The inner `h_nodeid` received.
        got: u32,
    },
    /// An inner DLM_MSG shorter than 88 bytes.
    InnerMsgTooShort {
        /// The inner `h_length`.
        len: u16,
    },
    /// An inner DLM_RCOM shorter than 48 bytes.
    InnerRcomTooShort {
        /// The inner `h_length`.
        len: u16,
    },
    /// A DLM_ACK that is not exactly its 16-byte header.
    AckLength {
        /// Its `h_length`.
        len: u16,
    },
    /// An inner DLM_FIN that is not exactly its 16-byte header.
    FinLength {
        /// The inner `h_length`.
        len: u16,
    },
}

impl WireError {
    /// Whether the error makes the rest of the byte stream unreadable.
    ///
    /// True for [`WireError::LengthTooShort`] and [`WireError::LengthTooLong`]:
    /// the stream can no longer be split into messages and the connection
    /// must be closed and re-established.  For every other error the message
    /// can be dropped and the next one parsed.
    pub const fn breaks_stream(&self) -> bool {
        matches!(
            self,
            WireError::LengthTooShort { .. } | WireError::LengthTooLong { .. }
        )
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WireError::Truncated { len } => {
                write!(f, "only {len} bytes, less than a {HEADER_LEN}-byte dlm_header")
            }
            WireError::LengthTooShort { len } => {
                write!(f, "h_length {len} is less than the {HEADER_LEN}-byte dlm_header")
            }
            WireError::LengthTooLong { len } => {
                write!(f, "h_length {len} exceeds the maximum of {MAX_MSG_LEN}")
            }
            WireError::LengthMismatch { h_length, frame } => {
                write!(f, "h_length {h_length} but the frame has {frame} bytes")
            }
            WireError::BadMajor { version } => {
                write!(f, "h_version {version:#010x} has major version {}, expected 3", version >> 16)
            }
            WireError::UnknownMinor { version } => {
                write!(f, "h_version {version:#010x} is neither 3.1 nor 3.2")
            }
            WireError::UnknownCmd { cmd } => write!(f, "unknown h_cmd {cmd}"),
            WireError::CmdNotAllowed { version, cmd } => {
                write!(f, "{cmd} is not allowed unencapsulated in a {version} message")
            }
            WireError::NodeIdMismatch { expected, got } => {
                write!(f, "h_nodeid {got} on the connection of node {expected}")
            }
            WireError::MsgTooShort { len } => {
                write!(f, "DLM_MSG of {len} bytes is shorter than {MESSAGE_MIN_LEN}")
            }
            WireError::RcomTooShort { len } => {
                write!(f, "DLM_RCOM of {len} bytes is shorter than {RCOM_MIN_LEN}")
            }
            WireError::RcomNotStateless { rc_type } => {
                write!(f, "unencapsulated 3.2 DLM_RCOM of rc_type {rc_type}, which must be sequenced")
            }
            WireError::OptsTooShort { len } => write!(
                f,
                "DLM_OPTS of {len} bytes cannot hold the {OPTS_LEN}-byte dlm_opts and a {HEADER_LEN}-byte inner header"
            ),
            WireError::OptsLenTooLong { optlen, room } => write!(
                f,
                "o_optlen {optlen} leaves no inner header in the {room} bytes after dlm_opts"
            ),
            WireError::OptsInnerLenMismatch { inner, outer } => write!(
                f,
                "inner h_length {inner} but DLM_OPTS carries {outer} bytes after its options"
            ),
            WireError::BadNextCmd { nextcmd } => {
                write!(f, "o_nextcmd {nextcmd} is not DLM_MSG, DLM_RCOM or DLM_FIN")
            }
            WireError::BadInnerCmd { cmd } => {
                write!(f, "inner h_cmd {cmd} is not DLM_MSG, DLM_RCOM or DLM_FIN")
            }
            WireError::NextCmdMismatch { nextcmd, inner } => {
                write!(f, "o_nextcmd {nextcmd} but inner h_cmd {inner}")
            }
            WireError::InnerBadMajor { version } => write!(
                f,
                "inner h_version {version:#010x} has major version {}, expected 3",
                version >> 16
            ),
            WireError::InnerNodeIdMismatch { expected, got } => {
                write!(f, "inner h_nodeid {got} on the connection of node {expected}")
            }
            WireError::InnerMsgTooShort { len } => {
                write!(f, "inner DLM_MSG of {len} bytes is shorter than {MESSAGE_MIN_LEN}")
            }
            WireError::InnerRcomTooShort { len } => {
                write!(f, "inner DLM_RCOM of {len} bytes is shorter than {RCOM_MIN_LEN}")
            }
            WireError::AckLength { len } => {
                write!(f, "DLM_ACK of {len} bytes, expected {ACK_LEN}")
            }
            WireError::FinLength { len } => {
                write!(f, "inner DLM_FIN of {len} bytes, expected {FIN_LEN}")
            }
        }
    }
}

/// Why a message could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is too small.
    BufferTooSmall {
        /// Bytes the message needs.
        needed: usize,
        /// Bytes the buffer has.
        have: usize,
    },
    /// The message would be longer than allowed: 4096 bytes on the wire,
    /// that is 4072 bytes for a message wrapped in DLM_OPTS.
    TooLong {
        /// Length of the message that was asked for.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message would be shorter than its minimum length.
    TooShort {
        /// Length of the message that was asked for.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The message to wrap in DLM_OPTS is not a valid inner message.
    BadInner(WireError),
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncodeError::BufferTooSmall { needed, have } => {
                write!(f, "buffer of {have} bytes, {needed} needed")
            }
            EncodeError::TooLong { len, max } => {
                write!(f, "message of {len} bytes exceeds the maximum of {max}")
            }
            EncodeError::TooShort { len, min } => {
                write!(
                    f,
                    "message of {len} bytes is shorter than the minimum of {min}"
                )
            }
            EncodeError::BadInner(e) => write!(f, "invalid inner message: {e}"),
        }
    }
}

/// A decoded `struct dlm_header`.  Values are in host order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// `h_version`.
    pub version: u32,
    /// C's union `u`: `h_lockspace` for DLM_MSG and DLM_RCOM, `h_seq` for
    /// DLM_OPTS and DLM_ACK, 0 in a DLM_FIN.
    pub u: u32,
    /// `h_nodeid`: the sender's nodeid.
    pub nodeid: u32,
    /// `h_length`: length of the whole message, header included.
    pub length: u16,
    /// `h_cmd`.
    pub cmd: u8,
    /// `h_pad`, 0 when sent and ignored when received.
    pub pad: u8,
}

impl Header {
    /// A header as we send it: version [`SEND_VERSION`], pad 0.
    pub const fn new(cmd: Cmd, u: u32, nodeid: u32, length: u16) -> Self {
        Header {
            version: SEND_VERSION,
            u,
            nodeid,
            length,
            cmd: cmd.to_wire(),
            pad: 0,
        }
    }

    /// Decodes the first 16 bytes of `buf` without validating them.
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let h = buf
            .first_chunk::<HEADER_LEN>()
            .ok_or(WireError::Truncated { len: buf.len() })?;
        Ok(Header {
            version: u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
            u: u32::from_le_bytes([h[4], h[5], h[6], h[7]]),
            nodeid: u32::from_le_bytes([h[8], h[9], h[10], h[11]]),
            length: u16::from_le_bytes([h[12], h[13]]),
            cmd: h[14],
            pad: h[15],
        })
    }

    /// The 16 wire bytes of this header.
    pub const fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let v = self.version.to_le_bytes();
        let u = self.u.to_le_bytes();
        let n = self.nodeid.to_le_bytes();
        let l = self.length.to_le_bytes();
        [
            v[0], v[1], v[2], v[3], u[0], u[1], u[2], u[3], n[0], n[1], n[2], n[3], l[0], l[1],
            self.cmd, self.pad,
        ]
    }

    /// Writes the header into the first 16 bytes of `out`.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let have = out.len();
        let dst = out
            .first_chunk_mut::<HEADER_LEN>()
            .ok_or(EncodeError::BufferTooSmall {
                needed: HEADER_LEN,
                have,
            })?;
        *dst = self.to_bytes();
        Ok(HEADER_LEN)
    }

    /// `u.h_seq`, for DLM_OPTS and DLM_ACK.
    pub const fn seq(&self) -> u32 {
        self.u
    }

    /// `u.h_lockspace`, for DLM_MSG and DLM_RCOM.
    pub const fn lockspace(&self) -> u32 {
        self.u
    }
}

/// Checks an `h_length` read from the stream and returns it as a length.
///
/// A length outside [16, 4096] means the stream can no longer be split into
/// messages; the framer also checks the version ([`check_frame_header`]).
pub fn check_length(h_length: u16) -> Result<usize, WireError> {
    let len = usize::from(h_length);
    if len < HEADER_LEN {
        Err(WireError::LengthTooShort { len: h_length })
    } else if len > MAX_MSG_LEN {
        Err(WireError::LengthTooLong { len: h_length })
    } else {
        Ok(len)
    }
}

/// Checks the two header words the framer relies on: `h_length` first (as
/// [`check_length`]), then `h_version`, which must be 3.1 or 3.2
/// ([`Version::from_wire`]).
///
/// A header that fails either check is not a DLM message at a message
/// boundary: the peer is broken or the stream lost its place, so no later
/// length read from it can be trusted.
pub fn check_frame_header(h_version: u32, h_length: u16) -> Result<usize, WireError> {
    let len = check_length(h_length)?;
    Version::from_wire(h_version).map(|_| len)
}

/// Reads `h_version` and `h_length` from the first 16 bytes of `buf` and
/// checks them with [`check_frame_header`].
///
/// Returns `Ok(None)` when `buf` is shorter than a header.
pub fn peek_length(buf: &[u8]) -> Result<Option<usize>, WireError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    match (read_u32(buf, H_VERSION), read_u16(buf, H_LENGTH)) {
        (Some(version), Some(len)) => check_frame_header(version, len).map(Some),
        _ => Ok(None),
    }
}

fn read_u32(buf: &[u8], off: usize) -> Option<u32> {
    buf.get(off..)?
        .first_chunk::<4>()
        .map(|b| u32::from_le_bytes(*b))
}

fn read_u16(buf: &[u8], off: usize) -> Option<u16> {
    buf.get(off..)?
        .first_chunk::<2>()
        .map(|b| u16::from_le_bytes(*b))
}

/// An application message for the lock manager: a DLM_MSG or a DLM_RCOM,
/// header included, exactly `h_length` bytes.  This is what C's
/// `dlm_receive_buffer()` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    header: Header,
    bytes: &'a [u8],
}

impl<'a> Message<'a> {
    /// The whole message, header included.
    pub const fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Its header.
    pub const fn header(&self) -> &Header {
        &self.header
    }

    /// [`Cmd::Msg`] or [`Cmd::Rcom`].
    pub const fn cmd(&self) -> Cmd {
        if self.header.cmd == Cmd::Rcom as u8 {
            Cmd::Rcom
        } else {
            Cmd::Msg
        }
    }

    /// `u.h_lockspace`: the lockspace's global id.
    pub const fn lockspace(&self) -> u32 {
        self.header.u
    }

    /// `rc_type` of a DLM_RCOM, `None` for a DLM_MSG.
    pub fn rc_type(&self) -> Option<u32> {
        match self.cmd() {
            Cmd::Rcom => read_u32(self.bytes, RC_TYPE),
            _ => None,
        }
    }

    /// `m_type` of a DLM_MSG (offset 16), `None` for a DLM_RCOM.
    pub fn m_type(&self) -> Option<u32> {
        match self.cmd() {
            Cmd::Msg => read_u32(self.bytes, 16),
            _ => None,
        }
    }
}

/// What a DLM_OPTS carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner<'a> {
    /// A DLM_MSG or DLM_RCOM for the lock manager.
    Message(Message<'a>),
    /// A DLM_FIN of the close handshake.
    Fin,
}

/// A DLM_OPTS message: one sequenced 3.2 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opts<'a> {
    /// The seq from the outer header.
    pub seq: u32,
    /// The option bytes (`o_optlen` of them); always empty from C senders.
    pub options: &'a [u8],
    /// The encapsulated message.
    pub inner: Inner<'a>,
}

/// The content of a valid message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// An unsequenced DLM_MSG or DLM_RCOM: any 3.1 message, or a 3.2 RCOM
    /// on the stateless path (see [`RcomType::is_stateless`]).
    Plain(Message<'a>),
    /// A sequenced 3.2 message.
    Opts(Opts<'a>),
    /// A 3.2 cumulative acknowledgement: every seq before `seq` arrived.
    Ack {
        /// The peer's next expected seq.
        seq: u32,
    },
}

/// A received message that passed every check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The version the message is labelled with.
    pub version: Version,
    /// The (outer) header.
    pub header: Header,
    /// What it carries.
    pub body: Body<'a>,
}

/// Parses and validates one whole message received from node `nodeid`.
///
/// `frame` must be exactly one message (`h_length` bytes), as the framer
/// delivers it.  The checks, in order:
///
/// 1. at least 16 bytes, `h_length` in [16, 4096] and equal to the frame
///    length;
/// 2. `h_version` is 3.1 or 3.2 (major 3 first);
/// 3. `h_cmd` is known, and allowed for that version at the top level:
///    3.1 allows DLM_MSG and DLM_RCOM, 3.2 allows DLM_RCOM (stateless
///    types only), DLM_OPTS and DLM_ACK;
/// 4. `h_nodeid` equals `nodeid`;
/// 5. per command: DLM_MSG ≥ 88 bytes, DLM_RCOM ≥ 48 bytes, DLM_ACK
///    exactly 16 bytes; for DLM_OPTS
///    room for `struct dlm_opts`, `o_optlen` and an inner header, an inner
///    `h_length` equal to the bytes the outer frame carries, `o_nextcmd`
///    and the inner `h_cmd` both MSG, RCOM or FIN and equal, inner major 3,
///    inner nodeid, inner MSG/RCOM minimum length, inner FIN exactly 16
///    bytes.
pub fn parse(frame: &[u8], nodeid: u32) -> Result<Packet<'_>, WireError> {
    let header = Header::decode(frame)?;
    let len = check_length(header.length)?;
    if len != frame.len() {
        return Err(WireError::LengthMismatch {
            h_length: header.length,
            frame: frame.len(),
        });
    }
    let version = Version::from_wire(header.version)?;
    let cmd = Cmd::from_wire(header.cmd).ok_or(WireError::UnknownCmd { cmd: header.cmd })?;
    let allowed = match version {
        Version::V3_1 => matches!(cmd, Cmd::Msg | Cmd::Rcom),
        Version::V3_2 => matches!(cmd, Cmd::Rcom | Cmd::Opts | Cmd::Ack),
    };
    if !allowed {
        return Err(WireError::CmdNotAllowed { version, cmd });
    }
    if header.nodeid != nodeid {
        return Err(WireError::NodeIdMismatch {
            expected: nodeid,
            got: header.nodeid,
        });
    }

    let body = match cmd {
        Cmd::Msg => {
            if len < MESSAGE_MIN_LEN {
                return Err(WireError::MsgTooShort { len: header.length });
            }
            Body::Plain(Message {
                header,
                bytes: frame,
            })
        }
        Cmd::Rcom => {
            if len < RCOM_MIN_LEN {
                return Err(WireError::RcomTooShort { len: header.length });
            }
            let msg = Message {
                header,
                bytes: frame,
            };
            if version == Version::V3_2 {
                let rc_type = msg.rc_type().unwrap_or(0);
                if !RcomType::is_stateless(rc_type) {
                    return Err(WireError::RcomNotStateless { rc_type });
                }
            }
            Body::Plain(msg)
        }
        Cmd::Ack => {
            if len != ACK_LEN {
                return Err(WireError::AckLength { len: header.length });
            }
            Body::Ack { seq: header.u }
        }
        Cmd::Opts => Body::Opts(parse_opts(frame, &header, nodeid)?),
        // A DLM_FIN only ever travels inside DLM_OPTS; the version check
        // above already refused it, this arm only keeps the match total.
        Cmd::Fin => return Err(WireError::CmdNotAllowed { version, cmd }),
    };
    Ok(Packet {
        version,
        header,
        body,
    })
}

fn parse_opts<'a>(frame: &'a [u8], header: &Header, nodeid: u32) -> Result<Opts<'a>, WireError> {
    let too_short = WireError::OptsTooShort { len: header.length };
    let rest = frame.get(OPTS_LEN..).ok_or(too_short)?;
    if rest.len() < HEADER_LEN {
        return Err(too_short);
    }
    let nextcmd = *frame.get(O_NEXTCMD).ok_or(too_short)?;
    let optlen = read_u16(frame, O_OPTLEN).ok_or(too_short)?;
    let room = rest.len();
    let (options, inner_bytes) = rest
        .split_at_checked(usize::from(optlen))
        .ok_or(WireError::OptsLenTooLong { optlen, room })?;
    if inner_bytes.len() < HEADER_LEN {
        return Err(WireError::OptsLenTooLong { optlen, room });
    }
    if !matches!(
        Cmd::from_wire(nextcmd),
        Some(Cmd::Msg | Cmd::Rcom | Cmd::Fin)
    ) {
        return Err(WireError::BadNextCmd { nextcmd });
    }

    let inner = Header::decode(inner_bytes)?;
    if usize::from(inner.length) != inner_bytes.len() {
        return Err(WireError::OptsInnerLenMismatch {
            inner: inner.length,
            outer: inner_bytes.len(),
        });
    }
    let inner_cmd = match Cmd::from_wire(inner.cmd) {
        Some(c @ (Cmd::Msg | Cmd::Rcom | Cmd::Fin)) => c,
        _ => return Err(WireError::BadInnerCmd { cmd: inner.cmd }),
    };
    if inner.cmd != nextcmd {
        return Err(WireError::NextCmdMismatch {
            nextcmd,
            inner: inner.cmd,
        });
    }
    if inner.version & MAJOR_MASK != HEADER_MAJOR {
        return Err(WireError::InnerBadMajor {
            version: inner.version,
        });
    }
    if inner.nodeid != nodeid {
        return Err(WireError::InnerNodeIdMismatch {
            expected: nodeid,
            got: inner.nodeid,
        });
    }
    let inner = match inner_cmd {
        Cmd::Msg if inner_bytes.len() < MESSAGE_MIN_LEN => {
            return Err(WireError::InnerMsgTooShort { len: inner.length })
        }
        Cmd::Rcom if inner_bytes.len() < RCOM_MIN_LEN => {
            return Err(WireError::InnerRcomTooShort { len: inner.length })
        }
        Cmd::Fin if inner_bytes.len() != FIN_LEN => {
            return Err(WireError::FinLength { len: inner.length })
        }
        Cmd::Fin => Inner::Fin,
        _ => Inner::Message(Message {
            header: inner,
            bytes: inner_bytes,
        }),
    };
    Ok(Opts {
        seq: header.u,
        options,
        inner,
    })
}

fn out_chunk(out: &mut [u8], needed: usize) -> Result<&mut [u8], EncodeError> {
    let have = out.len();
    out.get_mut(..needed)
        .ok_or(EncodeError::BufferTooSmall { needed, have })
}

/// Writes a DLM_ACK from `nodeid` acknowledging every seq before `seq`
/// (`seq` is our next expected seq).  Returns the 16 bytes written.
pub fn encode_ack(out: &mut [u8], nodeid: u32, seq: u32) -> Result<usize, EncodeError> {
    Header::new(Cmd::Ack, seq, nodeid, ACK_LEN as u16).encode(out)
}

/// Writes the 24-byte DLM_OPTS header for an inner message of `inner_len`
/// bytes that the caller will place right after it.  `o_nextcmd` is left
/// 0; [`set_opts_nextcmd`] fills it once the inner message is complete
/// (C does the same at commit time).  Returns 24.
pub fn encode_opts_header(
    out: &mut [u8],
    nodeid: u32,
    seq: u32,
    inner_len: usize,
) -> Result<usize, EncodeError> {
    if inner_len > MAX_APP_LEN {
        return Err(EncodeError::TooLong {
            len: inner_len,
            max: MAX_APP_LEN,
        });
    }
    if inner_len < HEADER_LEN {
        return Err(EncodeError::TooShort {
            len: inner_len,
            min: HEADER_LEN,
        });
    }
    let dst = out_chunk(out, OPTS_LEN)?;
    let total = (OPTS_LEN + inner_len) as u16;
    let header = Header::new(Cmd::Opts, seq, nodeid, total).to_bytes();
    let (h, o) = dst.split_at_mut(HEADER_LEN);
    h.copy_from_slice(&header);
    // o_nextcmd, o_pad, o_optlen, o_pad2 all 0.
    o.fill(0);
    Ok(OPTS_LEN)
}

/// Copies the inner `h_cmd` into `o_nextcmd` of the DLM_OPTS message that
/// starts at `frame[0]` (with no options), as C's commit does.
pub fn set_opts_nextcmd(frame: &mut [u8]) -> Result<(), EncodeError> {
    let have = frame.len();
    let needed = OPTS_LEN + HEADER_LEN;
    let cmd = *frame
        .get(OPTS_LEN + H_CMD)
        .ok_or(EncodeError::BufferTooSmall { needed, have })?;
    let nextcmd = frame
        .get_mut(O_NEXTCMD)
        .ok_or(EncodeError::BufferTooSmall { needed, have })?;
    *nextcmd = cmd;
    Ok(())
}

/// Writes a complete DLM_OPTS message from `nodeid` with `seq`, carrying
/// the already built `inner` message (a DLM_MSG, DLM_RCOM or DLM_FIN whose
/// `h_length` is `inner.len()`).  Returns the bytes written.
pub fn encode_opts(
    out: &mut [u8],
    nodeid: u32,
    seq: u32,
    inner: &[u8],
) -> Result<usize, EncodeError> {
    let h = Header::decode(inner).map_err(EncodeError::BadInner)?;
    if usize::from(h.length) != inner.len() {
        return Err(EncodeError::BadInner(WireError::OptsInnerLenMismatch {
            inner: h.length,
            outer: inner.len(),
        }));
    }
    if !matches!(Cmd::from_wire(h.cmd), Some(Cmd::Msg | Cmd::Rcom | Cmd::Fin)) {
        return Err(EncodeError::BadInner(WireError::BadInnerCmd { cmd: h.cmd }));
    }
    encode_opts_header(out, nodeid, seq, inner.len())?;
    let total = OPTS_LEN + inner.len();
    let dst = out_chunk(out, total)?;
    let (_, body) = dst.split_at_mut(OPTS_LEN);
    body.copy_from_slice(inner);
    set_opts_nextcmd(dst)?;
    Ok(total)
}

/// Writes a DLM_OPTS carrying a DLM_FIN from `nodeid` with `seq`.
/// Returns the 40 bytes written.
pub fn encode_fin(out: &mut [u8], nodeid: u32, seq: u32) -> Result<usize, EncodeError> {
    let fin = Header::new(Cmd::Fin, 0, nodeid, FIN_LEN as u16).to_bytes();
    encode_opts(out, nodeid, seq, &fin)
}

/// Writes the header of an application message (DLM_MSG or DLM_RCOM) of
/// `len` bytes for `lockspace`; the caller fills the remaining `len - 16`
/// bytes.  Checks the minimum length of the command and the 4096 maximum.
pub fn encode_message_header(
    out: &mut [u8],
    cmd: Cmd,
    lockspace: u32,
    nodeid: u32,
    len: usize,
) -> Result<usize, EncodeError> {
    let min = match cmd {
        Cmd::Msg => MESSAGE_MIN_LEN,
        Cmd::Rcom => RCOM_MIN_LEN,
        _ => {
            return Err(EncodeError::BadInner(WireError::BadInnerCmd {
                cmd: cmd.to_wire(),
            }))
        }
    };
    if len < min {
        return Err(EncodeError::TooShort { len, min });
    }
    if len > MAX_MSG_LEN {
        return Err(EncodeError::TooLong {
            len,
            max: MAX_MSG_LEN,
        });
    }
    let have = out.len();
    if have < len {
        return Err(EncodeError::BufferTooSmall { needed: len, have });
    }
    Header::new(cmd, lockspace, nodeid, len as u16).encode(out)
}
