// SPDX-License-Identifier: GPL-2.0

//! Byte-level tests of the wire codec.
//!
//! The byte vectors are built by hand from the struct layouts of 7.2's
//! fs/dlm/dlm_internal.h (`struct dlm_header`, `dlm_opts`, `dlm_message`,
//! `dlm_rcom`), writing each field at its documented offset, not with the
//! codec's own encoder, so that a wrong offset in the codec fails here.

use dlm_proto::proto::wire::*;
use proptest::prelude::*;

const NODE: u32 = 3;
const V31: u32 = 0x0003_0001;
const V32: u32 = 0x0003_0002;

/// `struct dlm_header` written field by field at its offsets.
fn header(version: u32, u: u32, nodeid: u32, length: u16, cmd: u8) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[0..4].copy_from_slice(&version.to_le_bytes()); // h_version
    b[4..8].copy_from_slice(&u.to_le_bytes()); // u.h_lockspace / u.h_seq
    b[8..12].copy_from_slice(&nodeid.to_le_bytes()); // h_nodeid
    b[12..14].copy_from_slice(&length.to_le_bytes()); // h_length
    b[14] = cmd; // h_cmd
    b[15] = 0; // h_pad
    b
}

/// A message of `len` bytes: header then a recognisable payload.
fn message(version: u32, lockspace: u32, nodeid: u32, len: usize, cmd: u8) -> Vec<u8> {
    let mut b = header(version, lockspace, nodeid, len as u16, cmd);
    b.extend((16..len).map(|i| (i * 7) as u8));
    b
}

/// A `struct dlm_message` (88 bytes + extra) with `m_type` at offset 16.
fn dlm_message(version: u32, nodeid: u32, m_type: u32, extra: usize) -> Vec<u8> {
    let mut b = message(version, 0x1234_5678, nodeid, 88 + extra, 1);
    b[16..20].copy_from_slice(&m_type.to_le_bytes());
    b
}

/// A `struct dlm_rcom` (48 bytes + buf) with `rc_type` at offset 16.
fn dlm_rcom(version: u32, nodeid: u32, rc_type: u32, buf: usize) -> Vec<u8> {
    let mut b = message(version, 0x0abc_def0, nodeid, 48 + buf, 2);
    b[16..20].copy_from_slice(&rc_type.to_le_bytes());
    b
}

/// A `struct dlm_opts` around `inner`, with `optlen` option bytes.
fn opts_with(seq: u32, nodeid: u32, nextcmd: u8, optlen: u16, inner: &[u8]) -> Vec<u8> {
    let total = 24 + usize::from(optlen) + inner.len();
    let mut b = header(V32, seq, nodeid, total as u16, 3);
    b.push(nextcmd); // o_nextcmd @16
    b.push(0); // o_pad @17
    b.extend_from_slice(&optlen.to_le_bytes()); // o_optlen @18
    b.extend_from_slice(&[0; 4]); // o_pad2 @20
    b.extend((0..optlen).map(|i| 0xa0 ^ i as u8)); // o_opts @24
    b.extend_from_slice(inner);
    b
}

fn opts(seq: u32, inner: &[u8]) -> Vec<u8> {
    opts_with(seq, NODE, inner[14], 0, inner)
}

fn fin_inner(nodeid: u32) -> Vec<u8> {
    header(V32, 0, nodeid, 16, 5)
}

fn err(frame: &[u8]) -> WireError {
    parse(frame, NODE).expect_err("frame must be rejected")
}

#[test]
fn constants_match_the_c_structs() {
    assert_eq!(HEADER_LEN, 16); // sizeof(struct dlm_header)
    assert_eq!(OPTS_LEN, 24); // sizeof(struct dlm_opts)
    assert_eq!(MESSAGE_MIN_LEN, 16 + 18 * 4); // header + eighteen __le32
    assert_eq!(RCOM_MIN_LEN, 16 + 4 + 4 + 8 + 8 + 8); // header, type, result, id, seq, seq_reply
    assert_eq!(MAX_MSG_LEN, 4096); // DLM_MAX_SOCKET_BUFSIZE
    assert_eq!(MAX_APP_LEN, 4072); // DLM_MAX_APP_BUFSIZE
    assert_eq!(ACK_LEN, 16);
    assert_eq!(FIN_LEN, 16);
    assert_eq!(OPTS_FIN_LEN, 40);
    assert_eq!(HEADER_MAJOR, 0x0003_0000);
    assert_eq!(HEADER_MINOR, 2);
    assert_eq!(SEND_VERSION, 0x0003_0002);
    assert_eq!(Version::V3_1.to_wire(), 0x0003_0001);
    assert_eq!(Version::V3_2.to_wire(), 0x0003_0002);
    let cmds = [
        (Cmd::Msg, 1),
        (Cmd::Rcom, 2),
        (Cmd::Opts, 3),
        (Cmd::Ack, 4),
        (Cmd::Fin, 5),
    ];
    for (cmd, v) in cmds {
        assert_eq!(cmd.to_wire(), v);
        assert_eq!(Cmd::from_wire(v), Some(cmd));
    }
    for v in [0u8, 6, 7, 0x80, 0xff] {
        assert_eq!(Cmd::from_wire(v), None);
    }
    for t in 1..=8u32 {
        assert_eq!(RcomType::from_wire(t).map(|r| r as u32), Some(t));
    }
    assert_eq!(RcomType::from_wire(0), None);
    assert_eq!(RcomType::from_wire(9), None);
}

#[test]
fn header_decodes_fields_at_their_offsets() {
    let bytes: [u8; 16] = [
        0x02, 0x00, 0x03, 0x00, // h_version 0x00030002
        0x78, 0x56, 0x34, 0x12, // u 0x12345678
        0x0d, 0xf0, 0xad, 0x0b, // h_nodeid 0x0badf00d
        0x58, 0x00, // h_length 88
        0x01, // h_cmd DLM_MSG
        0x99, // h_pad
    ];
    let h = Header::decode(&bytes).unwrap();
    assert_eq!(
        h,
        Header {
            version: 0x0003_0002,
            u: 0x1234_5678,
            nodeid: 0x0bad_f00d,
            length: 88,
            cmd: 1,
            pad: 0x99,
        }
    );
    assert_eq!(h.seq(), 0x1234_5678);
    assert_eq!(h.lockspace(), 0x1234_5678);
    assert_eq!(h.to_bytes(), bytes);
    assert_eq!(
        Header::decode(&bytes[..15]),
        Err(WireError::Truncated { len: 15 })
    );
    assert_eq!(Header::decode(&[]), Err(WireError::Truncated { len: 0 }));
    assert_eq!(
        Header::new(Cmd::Ack, 9, 0x0bad_f00d, 16).to_bytes(),
        header(V32, 9, 0x0bad_f00d, 16, 4).as_slice()
    );
}

#[test]
fn ack_bytes() {
    let mut out = [0xeeu8; 20];
    assert_eq!(encode_ack(&mut out, 0x0102_0304, 0xa1b2_c3d4), Ok(16));
    let expect: [u8; 16] = [
        0x02, 0x00, 0x03, 0x00, // 3.2
        0xd4, 0xc3, 0xb2, 0xa1, // h_seq
        0x04, 0x03, 0x02, 0x01, // h_nodeid
        0x10, 0x00, // h_length 16
        0x04, // DLM_ACK
        0x00,
    ];
    assert_eq!(out[..16], expect);
    assert_eq!(out[16..], [0xee; 4], "nothing written past the ACK");

    let p = parse(&expect, 0x0102_0304).unwrap();
    assert_eq!(p.version, Version::V3_2);
    assert_eq!(p.body, Body::Ack { seq: 0xa1b2_c3d4 });
    assert_eq!(
        encode_ack(&mut out[..15], 1, 1),
        Err(EncodeError::BufferTooSmall {
            needed: 16,
            have: 15
        })
    );
}

#[test]
fn fin_bytes() {
    let mut out = [0u8; 64];
    assert_eq!(encode_fin(&mut out, 7, 0xffff_fffe), Ok(40));
    let mut expect = header(V32, 0xffff_fffe, 7, 40, 3);
    expect.extend_from_slice(&[5, 0, 0, 0, 0, 0, 0, 0]); // nextcmd FIN, optlen 0
    expect.extend_from_slice(&header(V32, 0, 7, 16, 5));
    assert_eq!(out[..40], expect[..]);

    let p = parse(&expect, 7).unwrap();
    match p.body {
        Body::Opts(o) => {
            assert_eq!(o.seq, 0xffff_fffe);
            assert_eq!(o.inner, Inner::Fin);
            assert!(o.options.is_empty());
        }
        b => panic!("expected OPTS, got {b:?}"),
    }
}

#[test]
fn opts_header_then_nextcmd_at_commit() {
    // The kernel path: reserve, write the OPTS header, let the upper layer
    // build the inner message, then set o_nextcmd at commit.
    let mut page = vec![0xffu8; 24 + 48];
    assert_eq!(encode_opts_header(&mut page, 11, 77, 48), Ok(24));
    let mut expect = header(V32, 77, 11, 72, 3);
    expect.extend_from_slice(&[0; 8]);
    assert_eq!(page[..24], expect[..]);
    assert_eq!(page[24..], [0xff; 48], "inner space left to the caller");

    let rcom = dlm_rcom(V32, 11, 4, 0);
    page[24..].copy_from_slice(&rcom);
    set_opts_nextcmd(&mut page).unwrap();
    assert_eq!(page[16], 2, "o_nextcmd = inner h_cmd DLM_RCOM");
    let p = parse(&page, 11).unwrap();
    let Body::Opts(o) = p.body else {
        panic!("not OPTS")
    };
    assert_eq!(o.seq, 77);
    let Inner::Message(m) = o.inner else {
        panic!("not a message")
    };
    assert_eq!(m.cmd(), Cmd::Rcom);
    assert_eq!(m.rc_type(), Some(4));
    assert_eq!(m.bytes(), &rcom[..]);

    assert_eq!(
        encode_opts_header(&mut page, 1, 1, 4073),
        Err(EncodeError::TooLong {
            len: 4073,
            max: 4072
        })
    );
    assert_eq!(
        encode_opts_header(&mut page, 1, 1, 15),
        Err(EncodeError::TooShort { len: 15, min: 16 })
    );
    assert_eq!(
        encode_opts_header(&mut page[..23], 1, 1, 16),
        Err(EncodeError::BufferTooSmall {
            needed: 24,
            have: 23
        })
    );
    assert_eq!(
        set_opts_nextcmd(&mut page[..38]),
        Err(EncodeError::BufferTooSmall {
            needed: 40,
            have: 38
        })
    );
}

#[test]
fn encode_opts_wraps_every_inner_kind() {
    let inners = [
        dlm_message(V32, NODE, 1, 0),
        dlm_message(V32, NODE, 13, 64),
        dlm_rcom(V32, NODE, 3, 100),
        fin_inner(NODE),
    ];
    for inner in &inners {
        let mut out = vec![0u8; 24 + inner.len()];
        assert_eq!(encode_opts(&mut out, NODE, 5, inner), Ok(out.len()));
        assert_eq!(out, opts(5, inner), "hand-built and encoded OPTS differ");
        parse(&out, NODE).unwrap();
    }
    // The largest message a 3.2 peer can get: 4072 inner bytes.
    let big = dlm_message(V32, NODE, 2, 4072 - 88);
    let mut out = vec![0u8; 4096];
    assert_eq!(encode_opts(&mut out, NODE, 1, &big), Ok(4096));
    parse(&out, NODE).unwrap();
    let too_big = dlm_message(V32, NODE, 2, 4073 - 88);
    assert_eq!(
        encode_opts(&mut vec![0u8; 5000], NODE, 1, &too_big),
        Err(EncodeError::TooLong {
            len: 4073,
            max: 4072
        })
    );
    // Inner messages that are not valid inner messages.
    let mut bad_len = dlm_message(V32, NODE, 1, 0);
    bad_len[12] = 89;
    assert_eq!(
        encode_opts(&mut out, NODE, 1, &bad_len),
        Err(EncodeError::BadInner(WireError::OptsInnerLenMismatch {
            inner: 89,
            outer: 88
        }))
    );
    let ack = header(V32, 1, NODE, 16, 4);
    assert_eq!(
        encode_opts(&mut out, NODE, 1, &ack),
        Err(EncodeError::BadInner(WireError::BadInnerCmd { cmd: 4 }))
    );
    assert_eq!(
        encode_opts(&mut out, NODE, 1, &ack[..10]),
        Err(EncodeError::BadInner(WireError::Truncated { len: 10 }))
    );
    assert_eq!(
        encode_opts(&mut out[..30], NODE, 1, &inners[0]),
        Err(EncodeError::BufferTooSmall {
            needed: 112,
            have: 30
        })
    );
}

#[test]
fn encode_message_header_checks_lengths() {
    let mut out = vec![0u8; 100];
    assert_eq!(
        encode_message_header(&mut out, Cmd::Msg, 0x55, 9, 88),
        Ok(16)
    );
    assert_eq!(out[..16], header(V32, 0x55, 9, 88, 1)[..]);
    assert_eq!(
        encode_message_header(&mut out, Cmd::Rcom, 0x55, 9, 48),
        Ok(16)
    );
    assert_eq!(out[..16], header(V32, 0x55, 9, 48, 2)[..]);
    assert_eq!(
        encode_message_header(&mut out, Cmd::Msg, 0, 9, 87),
        Err(EncodeError::TooShort { len: 87, min: 88 })
    );
    assert_eq!(
        encode_message_header(&mut out, Cmd::Rcom, 0, 9, 47),
        Err(EncodeError::TooShort { len: 47, min: 48 })
    );
    assert_eq!(
        encode_message_header(&mut out, Cmd::Msg, 0, 9, 101),
        Err(EncodeError::BufferTooSmall {
            needed: 101,
            have: 100
        })
    );
    assert_eq!(
        encode_message_header(&mut vec![0; 5000], Cmd::Msg, 0, 9, 4097),
        Err(EncodeError::TooLong {
            len: 4097,
            max: 4096
        })
    );
    assert_eq!(
        encode_message_header(&mut out, Cmd::Ack, 0, 9, 16),
        Err(EncodeError::BadInner(WireError::BadInnerCmd { cmd: 4 }))
    );
}

#[test]
fn accepts_3_1_msg_and_every_3_1_rcom() {
    for extra in [0, 1, 64, 4096 - 88] {
        let m = dlm_message(V31, NODE, 9, extra);
        let p = parse(&m, NODE).unwrap();
        assert_eq!(p.version, Version::V3_1);
        let Body::Plain(msg) = p.body else {
            panic!("not plain")
        };
        assert_eq!(msg.cmd(), Cmd::Msg);
        assert_eq!(msg.m_type(), Some(9));
        assert_eq!(msg.rc_type(), None);
        assert_eq!(msg.lockspace(), 0x1234_5678);
        assert_eq!(msg.header().nodeid, NODE);
        assert_eq!(msg.bytes().as_ptr(), m.as_ptr(), "zero-copy view");
        assert_eq!(msg.bytes().len(), m.len());
    }
    // A 3.1 peer sends every rcom type plainly.
    for t in 1..=8 {
        let r = dlm_rcom(V31, NODE, t, 16);
        let Body::Plain(msg) = parse(&r, NODE).unwrap().body else {
            panic!("not plain")
        };
        assert_eq!(msg.cmd(), Cmd::Rcom);
        assert_eq!(msg.rc_type(), Some(t));
        assert_eq!(msg.m_type(), None);
        assert_eq!(msg.lockspace(), 0x0abc_def0);
    }
}

#[test]
fn accepts_3_2_stateless_rcom_only() {
    for t in 1..=10u32 {
        let r = dlm_rcom(V32, NODE, t, 16);
        let stateless = matches!(t, 1 | 2 | 5 | 6);
        assert_eq!(RcomType::is_stateless(t), stateless);
        match parse(&r, NODE) {
            Ok(p) if stateless => {
                assert_eq!(p.version, Version::V3_2);
                assert!(matches!(p.body, Body::Plain(m) if m.rc_type() == Some(t)));
            }
            Err(e) if !stateless => assert_eq!(e, WireError::RcomNotStateless { rc_type: t }),
            r => panic!("rc_type {t}: unexpected {r:?}"),
        }
    }
}

#[test]
fn accepts_every_sequenced_kind() {
    let cases: Vec<(Vec<u8>, Cmd)> = (1..=14)
        .map(|t| (dlm_message(V32, NODE, t, 40), Cmd::Msg))
        .chain((1..=8).map(|t| (dlm_rcom(V32, NODE, t, 8), Cmd::Rcom)))
        .chain([(fin_inner(NODE), Cmd::Fin)])
        .collect();
    for (seq, (inner, cmd)) in cases.iter().enumerate() {
        let frame = opts(seq as u32, inner);
        let p = parse(&frame, NODE).unwrap();
        assert_eq!(p.version, Version::V3_2);
        assert_eq!(p.header.cmd, 3);
        assert_eq!(p.header.length as usize, frame.len());
        let Body::Opts(o) = p.body else {
            panic!("not OPTS")
        };
        assert_eq!(o.seq, seq as u32);
        match (o.inner, cmd) {
            (Inner::Fin, Cmd::Fin) => {}
            (Inner::Message(m), Cmd::Msg | Cmd::Rcom) => {
                assert_eq!(m.cmd(), *cmd);
                assert_eq!(m.bytes(), &inner[..]);
                assert_eq!(m.bytes().as_ptr(), frame[24..].as_ptr(), "zero-copy");
            }
            (i, c) => panic!("{c:?} parsed as {i:?}"),
        }
    }
}

#[test]
fn opts_options_are_skipped() {
    let inner = dlm_message(V32, NODE, 1, 0);
    let frame = opts_with(1, NODE, 1, 16, &inner);
    let Body::Opts(o) = parse(&frame, NODE).unwrap().body else {
        panic!("not OPTS")
    };
    assert_eq!(o.options, &frame[24..40]);
    assert_eq!(o.options.as_ptr(), frame[24..].as_ptr());
    let Inner::Message(m) = o.inner else {
        panic!("not a message")
    };
    assert_eq!(m.bytes(), &inner[..]);
    assert_eq!(m.bytes().as_ptr(), frame[40..].as_ptr());
}

#[test]
fn length_errors() {
    let mut short = header(V32, 0, NODE, 15, 4);
    assert_eq!(err(&short), WireError::LengthTooShort { len: 15 });
    short[12] = 0;
    assert_eq!(err(&short), WireError::LengthTooShort { len: 0 });
    let mut long = dlm_message(V31, NODE, 1, 4096 - 88);
    long.push(0);
    long[12..14].copy_from_slice(&4097u16.to_le_bytes());
    assert_eq!(err(&long), WireError::LengthTooLong { len: 4097 });
    long[12..14].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(err(&long), WireError::LengthTooLong { len: 65535 });
    assert!(WireError::LengthTooShort { len: 0 }.breaks_stream());
    assert!(WireError::LengthTooLong { len: 4097 }.breaks_stream());

    assert_eq!(err(&[0; 15]), WireError::Truncated { len: 15 });
    let m = dlm_message(V31, NODE, 1, 0);
    let mut longer = m.clone();
    longer.push(0);
    assert_eq!(
        err(&longer),
        WireError::LengthMismatch {
            h_length: 88,
            frame: 89
        }
    );
    assert_eq!(
        err(&m[..87]),
        WireError::LengthMismatch {
            h_length: 88,
            frame: 87
        }
    );
    // Boundaries: 16 and 4096 are valid lengths.
    assert_eq!(check_length(16), Ok(16));
    assert_eq!(check_length(4096), Ok(4096));
    assert_eq!(peek_length(&m[..15]), Ok(None));
    assert_eq!(peek_length(&m), Ok(Some(88)));
    assert_eq!(
        peek_length(&header(V32, 0, 0, 4097, 1)),
        Err(WireError::LengthTooLong { len: 4097 })
    );
    // The framer's header check also wants a 3.1 or 3.2 version, length first.
    assert_eq!(peek_length(&header(0x0003_0001, 0, 0, 16, 1)), Ok(Some(16)));
    assert_eq!(
        peek_length(&header(0x0002_0002, 0, 0, 16, 1)),
        Err(WireError::BadMajor {
            version: 0x0002_0002
        })
    );
    assert_eq!(
        peek_length(&header(0x0003_0003, 0, 0, 16, 1)),
        Err(WireError::UnknownMinor {
            version: 0x0003_0003
        })
    );
    assert_eq!(
        check_frame_header(0, 8),
        Err(WireError::LengthTooShort { len: 8 })
    );
}

#[test]
fn version_errors() {
    for v in [0u32, 0x0002_0002, 0x0004_0002, 0xffff_ffff, 0x0103_0002] {
        assert_eq!(
            err(&header(v, 0, NODE, 16, 4)),
            WireError::BadMajor { version: v }
        );
        assert_eq!(
            Version::from_wire(v),
            Err(WireError::BadMajor { version: v })
        );
    }
    for v in [0x0003_0000u32, 0x0003_0003, 0x0003_ffff] {
        assert_eq!(
            err(&header(v, 0, NODE, 16, 4)),
            WireError::UnknownMinor { version: v }
        );
    }
    assert_eq!(Version::from_wire(V31), Ok(Version::V3_1));
    assert_eq!(Version::from_wire(V32), Ok(Version::V3_2));
}

#[test]
fn cmd_errors() {
    for cmd in [0u8, 6, 42, 255] {
        assert_eq!(
            err(&header(V32, 0, NODE, 16, cmd)),
            WireError::UnknownCmd { cmd }
        );
        assert_eq!(
            err(&header(V31, 0, NODE, 16, cmd)),
            WireError::UnknownCmd { cmd }
        );
    }
    // 3.1 knows only plain MSG and RCOM.
    let not_3_1 = [
        (opts(0, &fin_inner(NODE)), Cmd::Opts),
        (header(V31, 0, NODE, 16, 4), Cmd::Ack),
        (header(V31, 0, NODE, 16, 5), Cmd::Fin),
    ];
    for (mut frame, cmd) in not_3_1 {
        frame[0..4].copy_from_slice(&V31.to_le_bytes());
        assert_eq!(
            err(&frame),
            WireError::CmdNotAllowed {
                version: Version::V3_1,
                cmd
            }
        );
    }
    // 3.2 never sends DLM_MSG or DLM_FIN unencapsulated.
    assert_eq!(
        err(&dlm_message(V32, NODE, 1, 0)),
        WireError::CmdNotAllowed {
            version: Version::V3_2,
            cmd: Cmd::Msg
        }
    );
    assert_eq!(
        err(&fin_inner(NODE)),
        WireError::CmdNotAllowed {
            version: Version::V3_2,
            cmd: Cmd::Fin
        }
    );
}

#[test]
fn nodeid_errors() {
    let frames = [
        dlm_message(V31, 4, 1, 0),
        dlm_rcom(V31, 4, 1, 0),
        dlm_rcom(V32, 4, 1, 0),
        header(V32, 0, 4, 16, 4),
        opts_with(0, 4, 5, 0, &fin_inner(4)),
    ];
    for f in &frames {
        assert_eq!(
            err(f),
            WireError::NodeIdMismatch {
                expected: NODE,
                got: 4
            }
        );
        assert!(parse(f, 4).is_ok());
    }
    // Outer nodeid right, inner wrong.
    for inner in [
        dlm_message(V32, 4, 1, 0),
        dlm_rcom(V32, 4, 1, 0),
        fin_inner(4),
    ] {
        assert_eq!(
            err(&opts(0, &inner)),
            WireError::InnerNodeIdMismatch {
                expected: NODE,
                got: 4
            }
        );
    }
}

#[test]
fn minimum_length_errors() {
    assert_eq!(
        err(&message(V31, 0, NODE, 87, 1)),
        WireError::MsgTooShort { len: 87 }
    );
    assert_eq!(
        err(&message(V31, 0, NODE, 16, 1)),
        WireError::MsgTooShort { len: 16 }
    );
    assert_eq!(
        err(&message(V31, 0, NODE, 47, 2)),
        WireError::RcomTooShort { len: 47 }
    );
    assert_eq!(
        err(&message(V32, 0, NODE, 16, 2)),
        WireError::RcomTooShort { len: 16 }
    );
    assert_eq!(
        err(&opts(0, &message(V32, 0, NODE, 87, 1))),
        WireError::InnerMsgTooShort { len: 87 }
    );
    assert_eq!(
        err(&opts(0, &message(V32, 0, NODE, 47, 2))),
        WireError::InnerRcomTooShort { len: 47 }
    );
}

#[test]
fn ack_and_fin_are_exactly_a_header() {
    for len in [17usize, 24, 4096] {
        let ack = message(V32, 1, NODE, len, 4);
        assert_eq!(err(&ack), WireError::AckLength { len: len as u16 });
        // Inner FIN with trailing bytes, consistently sized.
        let fin = message(V32, 0, NODE, len.min(4072), 5);
        assert_eq!(
            err(&opts(0, &fin)),
            WireError::FinLength {
                len: len.min(4072) as u16
            }
        );
    }
}

#[test]
fn opts_structure_errors() {
    // Outer OPTS too short for dlm_opts plus an inner header.
    for len in [16u16, 23, 24, 39] {
        let mut f = header(V32, 0, NODE, len, 3);
        f.resize(len.into(), 0);
        if len > 16 {
            f[16] = 5;
        }
        assert_eq!(err(&f), WireError::OptsTooShort { len });
    }
    // o_optlen larger than what follows, or leaving less than a header.
    let inner = fin_inner(NODE);
    let mut f = opts(0, &inner);
    f[18..20].copy_from_slice(&100u16.to_le_bytes());
    assert_eq!(
        err(&f),
        WireError::OptsLenTooLong {
            optlen: 100,
            room: 16
        }
    );
    f[18..20].copy_from_slice(&1u16.to_le_bytes());
    assert_eq!(
        err(&f),
        WireError::OptsLenTooLong {
            optlen: 1,
            room: 16
        }
    );
    f[18..20].copy_from_slice(&u16::MAX.to_le_bytes());
    assert_eq!(
        err(&f),
        WireError::OptsLenTooLong {
            optlen: u16::MAX,
            room: 16
        }
    );
}

#[test]
fn opts_inner_length_must_match_outer() {
    // The C receive path bounds the inner h_length only from below; a 4096
    // inner length inside a short OPTS is what rcom.c would then copy.
    let rcom = dlm_rcom(V32, NODE, 5, 0);
    for bad in [4096u16, 49, 47, 16, 0] {
        let mut f = opts(0, &rcom);
        f[24 + 12..24 + 14].copy_from_slice(&bad.to_le_bytes());
        assert_eq!(
            err(&f),
            WireError::OptsInnerLenMismatch {
                inner: bad,
                outer: 48
            }
        );
    }
    // Outer frame longer than the inner message (trailing garbage).
    let mut f = opts(0, &rcom);
    f.extend_from_slice(&[0; 8]);
    let total = f.len() as u16;
    f[12..14].copy_from_slice(&total.to_le_bytes());
    assert_eq!(
        err(&f),
        WireError::OptsInnerLenMismatch {
            inner: 48,
            outer: 56
        }
    );
}

#[test]
fn opts_cmd_errors() {
    let msg = dlm_message(V32, NODE, 1, 0);
    for nextcmd in [0u8, 3, 4, 6, 255] {
        assert_eq!(
            err(&opts_with(0, NODE, nextcmd, 0, &msg)),
            WireError::BadNextCmd { nextcmd }
        );
    }
    for cmd in [0u8, 3, 4, 9] {
        let mut inner = msg.clone();
        inner[14] = cmd;
        assert_eq!(
            err(&opts_with(0, NODE, 1, 0, &inner)),
            WireError::BadInnerCmd { cmd }
        );
    }
    assert_eq!(
        err(&opts_with(0, NODE, 2, 0, &msg)),
        WireError::NextCmdMismatch {
            nextcmd: 2,
            inner: 1
        }
    );
    assert_eq!(
        err(&opts_with(0, NODE, 5, 0, &msg)),
        WireError::NextCmdMismatch {
            nextcmd: 5,
            inner: 1
        }
    );
    for v in [0u32, 0x0002_0002, 0x0004_0001] {
        let mut inner = msg.clone();
        inner[0..4].copy_from_slice(&v.to_le_bytes());
        assert_eq!(
            err(&opts(0, &inner)),
            WireError::InnerBadMajor { version: v }
        );
    }
    // An inner 3.1 label is tolerated: only the major half is checked.
    let mut inner = msg.clone();
    inner[0..4].copy_from_slice(&V31.to_le_bytes());
    assert!(parse(&opts(0, &inner), NODE).is_ok());
}

#[test]
fn every_error_has_a_precise_message() {
    let errors = [
        (WireError::Truncated { len: 7 }, "7"),
        (WireError::LengthTooShort { len: 9 }, "h_length 9"),
        (WireError::LengthTooLong { len: 4097 }, "4097"),
        (
            WireError::LengthMismatch {
                h_length: 88,
                frame: 90,
            },
            "90",
        ),
        (
            WireError::BadMajor {
                version: 0x0004_0002,
            },
            "0x00040002",
        ),
        (
            WireError::UnknownMinor {
                version: 0x0003_0007,
            },
            "0x00030007",
        ),
        (WireError::UnknownCmd { cmd: 77 }, "77"),
        (
            WireError::CmdNotAllowed {
                version: Version::V3_1,
                cmd: Cmd::Ack,
            },
            "DLM_ACK",
        ),
        (
            WireError::NodeIdMismatch {
                expected: 1,
                got: 2,
            },
            "h_nodeid 2",
        ),
        (WireError::MsgTooShort { len: 80 }, "80"),
        (WireError::RcomTooShort { len: 40 }, "40"),
        (WireError::RcomNotStateless { rc_type: 4 }, "rc_type 4"),
        (WireError::OptsTooShort { len: 30 }, "30"),
        (
            WireError::OptsLenTooLong {
                optlen: 500,
                room: 20,
            },
            "500",
        ),
        (
            WireError::OptsInnerLenMismatch {
                inner: 4096,
                outer: 48,
            },
            "4096",
        ),
        (WireError::BadNextCmd { nextcmd: 4 }, "o_nextcmd 4"),
        (WireError::BadInnerCmd { cmd: 3 }, "inner h_cmd 3"),
        (
            WireError::NextCmdMismatch {
                nextcmd: 1,
                inner: 2,
            },
            "inner h_cmd 2",
        ),
        (WireError::InnerBadMajor { version: 0x10 }, "0x00000010"),
        (
            WireError::InnerNodeIdMismatch {
                expected: 1,
                got: 9,
            },
            "inner h_nodeid 9",
        ),
        (WireError::InnerMsgTooShort { len: 20 }, "20"),
        (WireError::InnerRcomTooShort { len: 21 }, "21"),
        (WireError::AckLength { len: 17 }, "DLM_ACK of 17"),
        (WireError::FinLength { len: 18 }, "DLM_FIN of 18"),
    ];
    for (e, needle) in errors {
        let s = e.to_string();
        assert!(s.contains(needle), "{e:?} displays as {s:?}");
        assert_eq!(
            e.breaks_stream(),
            matches!(
                e,
                WireError::LengthTooShort { .. } | WireError::LengthTooLong { .. }
            )
        );
    }
    let enc = [
        (
            EncodeError::BufferTooSmall {
                needed: 40,
                have: 3,
            },
            "40",
        ),
        (
            EncodeError::TooLong {
                len: 5000,
                max: 4096,
            },
            "5000",
        ),
        (EncodeError::TooShort { len: 3, min: 16 }, "16"),
        (
            EncodeError::BadInner(WireError::BadInnerCmd { cmd: 4 }),
            "inner h_cmd 4",
        ),
    ];
    for (e, needle) in enc {
        assert!(e.to_string().contains(needle), "{e:?}");
    }
}

fn arb_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u32..100, 0usize..200).prop_map(|(t, x)| dlm_message(V31, NODE, t, x)),
        (1u32..=8, 0usize..200).prop_map(|(t, x)| dlm_rcom(V31, NODE, t, x)),
        (any::<u32>(), 0usize..200).prop_map(|(s, x)| opts(s, &dlm_message(V32, NODE, 1, x))),
        (any::<u32>(), 0usize..200).prop_map(|(s, x)| opts(s, &dlm_rcom(V32, NODE, 3, x))),
        any::<u32>().prop_map(|s| opts(s, &fin_inner(NODE))),
        any::<u32>().prop_map(|s| header(V32, s, NODE, 16, 4)),
    ]
}

proptest! {
    #[test]
    fn header_roundtrip(v: u32, u: u32, n: u32, l: u16, c: u8, p: u8) {
        let h = Header { version: v, u, nodeid: n, length: l, cmd: c, pad: p };
        let mut b = header(v, u, n, l, c);
        b[15] = p;
        prop_assert_eq!(&h.to_bytes()[..], &b[..]);
        prop_assert_eq!(Header::decode(&b), Ok(h));
    }

    /// Valid frames parse; flipping any byte never panics and, if the
    /// result still parses, it is within the frame.
    #[test]
    fn valid_frames_parse_and_mutations_do_not_panic(
        f in arb_frame(), pos in any::<prop::sample::Index>(), val: u8
    ) {
        prop_assert!(parse(&f, NODE).is_ok());
        let mut g = f.clone();
        let i = pos.index(g.len());
        g[i] = val;
        if let Ok(p) = parse(&g, NODE) {
            prop_assert_eq!(usize::from(p.header.length), g.len());
        }
        for cut in [0, 1, 15, 16, 17, g.len() / 2, g.len().saturating_sub(1)] {
            let _ = parse(&g[..cut.min(g.len())], NODE);
        }
    }

    /// What the encoders write, parse gives back, for any nodeid and seq.
    #[test]
    fn encoders_roundtrip(
        nodeid: u32,
        seq: u32,
        lockspace: u32,
        kind in 0u8..3,
        extra in 0usize..=4072 - 88,
    ) {
        let mut out = vec![0u8; 4096];
        let n = encode_ack(&mut out, nodeid, seq).unwrap();
        prop_assert_eq!(parse(&out[..n], nodeid).unwrap().body, Body::Ack { seq });

        let inner = match kind {
            0 => {
                let len = 88 + extra;
                let mut m = vec![0x5a; len];
                encode_message_header(&mut m, Cmd::Msg, lockspace, nodeid, len).unwrap();
                m
            }
            1 => {
                let len = 48 + extra;
                let mut m = vec![0x5a; len];
                encode_message_header(&mut m, Cmd::Rcom, lockspace, nodeid, len).unwrap();
                m
            }
            _ => Header::new(Cmd::Fin, 0, nodeid, 16).to_bytes().to_vec(),
        };
        let n = encode_opts(&mut out, nodeid, seq, &inner).unwrap();
        prop_assert_eq!(n, 24 + inner.len());
        let p = parse(&out[..n], nodeid).unwrap();
        let Body::Opts(o) = p.body else { panic!("not OPTS") };
        prop_assert_eq!(o.seq, seq);
        prop_assert!(o.options.is_empty());
        match o.inner {
            Inner::Fin => prop_assert_eq!(kind, 2),
            Inner::Message(m) => {
                prop_assert_eq!(m.bytes(), &inner[..]);
                prop_assert_eq!(m.lockspace(), lockspace);
                prop_assert_eq!(m.header().nodeid, nodeid);
            }
        }
        if kind == 2 {
            let mut fin = [0u8; 40];
            prop_assert_eq!(encode_fin(&mut fin, nodeid, seq), Ok(40));
            prop_assert_eq!(&fin[..], &out[..40]);
        }
    }

    #[test]
    fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse(&b, NODE);
        let _ = peek_length(&b);
    }
}
