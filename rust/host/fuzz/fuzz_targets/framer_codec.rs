// SPDX-License-Identifier: GPL-2.0

//! Fuzz target for the stream framer and the wire codec together.
//!
//! Input: byte 0 chooses how the rest is cut into pieces; the rest is the
//! byte stream a peer sent.  The stream is fed piece by piece into a
//! `Framer`, and every frame goes through `wire::parse` (with a fixed
//! nodeid and with the frame's own nodeid, to reach the deeper checks) and
//! through a `PeerVersion`.
//!
//! Checked, besides "no panic, no out-of-bounds access":
//! * the frames and the framing error equal those of `framer::frames` over
//!   the whole stream (chunking does not matter);
//! * the carry-over stays below one maximal message;
//! * every frame is exactly `h_length` bytes, within [16, 4096];
//! * a frame that parses satisfies what the parse result promises, and a
//!   parsed ACK or option-less OPTS re-encodes to the same bytes (pads
//!   aside);
//! * a parse error is never a stream-breaking length error (the framer
//!   already filtered those) and always displays.

#![no_main]

use std::fmt::Write;

use dlm_proto::proto::framer::{frames, Framer, FramingError};
use dlm_proto::proto::version::PeerVersion;
use dlm_proto::proto::wire::{self, Body, Cmd, Inner, Version, MAX_MSG_LEN};
use libfuzzer_sys::fuzz_target;

const NODE: u32 = 1;

/// Piece lengths from a small xorshift generator seeded by byte 0.
struct Chunker {
    state: u32,
    max: usize,
}

impl Chunker {
    fn new(seed: u8) -> Self {
        let max = match seed & 3 {
            0 => 1,
            1 => 17,
            2 => 300,
            _ => 5000,
        };
        Chunker {
            state: u32::from(seed).wrapping_mul(0x9e37_79b9) | 1,
            max,
        }
    }

    fn next(&mut self) -> usize {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        self.state as usize % (self.max + 1)
    }
}

fn zero_pads(frame: &[u8]) -> Vec<u8> {
    let mut v = frame.to_vec();
    v[15] = 0; // h_pad
    if v[14] == Cmd::Opts.to_wire() {
        v[17] = 0; // o_pad
        v[20..24].fill(0); // o_pad2
        v[24 + 15] = 0; // inner h_pad
    }
    v
}

fn check_frame(frame: &[u8], version: &mut PeerVersion) {
    let h_length = u16::from_le_bytes([frame[12], frame[13]]);
    assert_eq!(usize::from(h_length), frame.len());
    assert!((16..=MAX_MSG_LEN).contains(&frame.len()));

    let own = u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]);
    for nodeid in [NODE, own] {
        match wire::parse(frame, nodeid) {
            Ok(p) => check_packet(frame, nodeid, &p),
            Err(e) => {
                assert!(!e.breaks_stream(), "framer let {e:?} through");
                let mut s = String::new();
                write!(s, "{e}").unwrap();
                assert!(!s.is_empty());
            }
        }
    }
    if let Err(e) = version.receive(frame, own) {
        let mut s = String::new();
        write!(s, "{e}").unwrap();
    }
}

fn check_packet(frame: &[u8], nodeid: u32, p: &wire::Packet<'_>) {
    assert_eq!(usize::from(p.header.length), frame.len());
    assert_eq!(p.header.nodeid, nodeid);
    let mut buf = [0u8; MAX_MSG_LEN];
    match p.body {
        Body::Plain(m) => {
            assert_eq!(m.bytes(), frame);
            match m.cmd() {
                Cmd::Msg => {
                    assert_eq!(p.version, Version::V3_1);
                    assert!(frame.len() >= wire::MESSAGE_MIN_LEN);
                }
                Cmd::Rcom => {
                    assert!(frame.len() >= wire::RCOM_MIN_LEN);
                    let t = m.rc_type().unwrap();
                    assert!(p.version == Version::V3_1 || wire::RcomType::is_stateless(t));
                }
                c => panic!("plain {c:?}"),
            }
        }
        Body::Ack { seq } => {
            assert_eq!(p.version, Version::V3_2);
            let n = wire::encode_ack(&mut buf, nodeid, seq).unwrap();
            assert_eq!(&buf[..n], &zero_pads(frame)[..]);
        }
        Body::Opts(o) => {
            assert_eq!(p.version, Version::V3_2);
            assert_eq!(o.seq, p.header.u);
            let start = wire::OPTS_LEN + o.options.len();
            let inner = &frame[start..];
            match o.inner {
                Inner::Fin => assert_eq!(inner[14], Cmd::Fin.to_wire()),
                Inner::Message(m) => {
                    assert_eq!(m.bytes(), inner);
                    assert_eq!(m.header().nodeid, nodeid);
                    let min = match m.cmd() {
                        Cmd::Msg => wire::MESSAGE_MIN_LEN,
                        _ => wire::RCOM_MIN_LEN,
                    };
                    assert!(inner.len() >= min);
                }
            }
            if o.options.is_empty() && p.header.version == wire::SEND_VERSION {
                let n = wire::encode_opts(&mut buf, nodeid, o.seq, inner).unwrap();
                let mut want = zero_pads(frame);
                // The inner h_version is only checked for its major half.
                want[24..28].copy_from_slice(&frame[24..28]);
                assert_eq!(&zero_pads(&buf[..n])[..], &want[..]);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };

    // Reference: the whole stream at once.
    let mut expect: Vec<&[u8]> = Vec::new();
    let mut expect_err = None;
    let mut offset = 0u64;
    for f in frames(stream) {
        match f {
            Ok(f) => {
                offset += f.len() as u64;
                expect.push(f);
            }
            Err(error) => {
                expect_err = Some(FramingError::BadHeader { offset, error });
                break;
            }
        }
    }

    let mut framer = Framer::new();
    let mut version = PeerVersion::new();
    let mut chunker = Chunker::new(seed);
    let mut rest = stream;
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut err = None;
    while !rest.is_empty() {
        let n = chunker.next().min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        let r = framer.push(piece, |frame| {
            check_frame(frame, &mut version);
            got.push(frame.to_vec());
        });
        assert!(framer.pending() < MAX_MSG_LEN);
        if let Err(e) = r {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, expect_err);
    assert_eq!(got.len(), expect.len());
    for (g, e) in got.iter().zip(&expect) {
        assert_eq!(&g[..], *e);
    }
    if err.is_none() {
        let framed: usize = expect.iter().map(|f| f.len()).sum();
        assert_eq!(framer.pending(), stream.len() - framed);
    }
});
