// SPDX-License-Identifier: GPL-2.0

//! Tests of per-peer version detection and the stateless bootstrap path.

use dlm_proto::proto::version::{Observed, PeerVersion, RecvError, SendMode, VersionError};
use dlm_proto::proto::wire::{self, Body, Cmd, Inner, Version, WireError};

const V31: u32 = 0x0003_0001;
const V32: u32 = 0x0003_0002;

fn header(version: u32, u: u32, nodeid: u32, length: u16, cmd: u8) -> Vec<u8> {
    let mut b = vec![0u8; 16];
    b[0..4].copy_from_slice(&version.to_le_bytes());
    b[4..8].copy_from_slice(&u.to_le_bytes());
    b[8..12].copy_from_slice(&nodeid.to_le_bytes());
    b[12..14].copy_from_slice(&length.to_le_bytes());
    b[14] = cmd;
    b
}

/// `struct dlm_rcom` of 48 + 16 bytes (an rcom_status / rcom_config body).
fn rcom(version: u32, nodeid: u32, rc_type: u32) -> Vec<u8> {
    let mut b = header(version, 0x4444, nodeid, 64, 2);
    b.resize(64, 0);
    b[16..20].copy_from_slice(&rc_type.to_le_bytes());
    b
}

fn dlm_message(version: u32, nodeid: u32) -> Vec<u8> {
    let mut b = header(version, 0x4444, nodeid, 88, 1);
    b.resize(88, 0);
    b
}

#[test]
fn unset_until_the_first_valid_message() {
    let mut v = PeerVersion::new();
    assert_eq!(v.get(), None);
    assert_eq!(v.to_wire(), 0);
    assert_eq!(v.send_mode(), Err(VersionError::NotDetected));
    assert_eq!(PeerVersion::default(), v);

    // Invalid frames do not teach anything.
    let mut short = rcom(V32, 2, 1);
    short.truncate(40);
    short[12] = 40;
    assert_eq!(
        v.receive(&short, 2),
        Err(RecvError::Wire(WireError::RcomTooShort { len: 40 }))
    );
    assert_eq!(
        v.receive(&rcom(V32, 9, 1), 2),
        Err(RecvError::Wire(WireError::NodeIdMismatch {
            expected: 2,
            got: 9
        }))
    );
    assert_eq!(v.get(), None);
}

#[test]
fn bootstrap_between_two_3_2_nodes() {
    // Node 1 sends RCOM_STATUS statelessly to node 2; node 2 answers with
    // a stateless RCOM_STATUS_REPLY.  Each learns 3.2 from what it gets.
    let mut at_node2 = PeerVersion::new(); // node 2's view of node 1
    let mut at_node1 = PeerVersion::new(); // node 1's view of node 2

    let status = rcom(V32, 1, 1);
    let (p, o) = at_node2.receive(&status, 1).unwrap();
    assert_eq!(o, Observed::Detected(Version::V3_2));
    let Body::Plain(m) = p.body else {
        panic!("not plain")
    };
    assert_eq!(m.cmd(), Cmd::Rcom);
    assert_eq!(m.rc_type(), Some(1));
    assert_eq!(at_node2.send_mode(), Ok(SendMode::Sequenced));
    assert_eq!(at_node2.to_wire(), 0x0003_0002);

    let reply = rcom(V32, 2, 5);
    let (_, o) = at_node1.receive(&reply, 2).unwrap();
    assert_eq!(o, Observed::Detected(Version::V3_2));

    // From now on reliable traffic is wrapped in DLM_OPTS.
    let mut buf = [0u8; 128];
    let n = wire::encode_opts(&mut buf, 1, 0, &dlm_message(V32, 1)).unwrap();
    let (p, o) = at_node2.receive(&buf[..n], 1).unwrap();
    assert_eq!(o, Observed::Known(Version::V3_2));
    assert!(matches!(p.body, Body::Opts(op) if matches!(op.inner, Inner::Message(_))));
    let n = wire::encode_ack(&mut buf, 2, 1).unwrap();
    let (p, _) = at_node1.receive(&buf[..n], 2).unwrap();
    assert_eq!(p.body, Body::Ack { seq: 1 });

    // Stateless STATUS keeps working after detection (recovery retries).
    assert!(at_node2.receive(&status, 1).is_ok());
    // But a sequenced-only rcom type may not come unencapsulated.
    assert_eq!(
        at_node2.receive(&rcom(V32, 1, 4), 1),
        Err(RecvError::Wire(WireError::RcomNotStateless { rc_type: 4 }))
    );
}

#[test]
fn a_3_1_peer() {
    let mut v = PeerVersion::new();
    let first = rcom(V31, 5, 1);
    let (p, o) = v.receive(&first, 5).unwrap();
    assert_eq!(o, Observed::Detected(Version::V3_1));
    assert_eq!(p.version, Version::V3_1);
    assert_eq!(v.send_mode(), Ok(SendMode::Plain));
    assert_eq!(v.to_wire(), 0x0003_0001);
    // 3.1 peers may send any rcom type and DLM_MSG plainly.
    for t in 1..=8 {
        assert!(v.receive(&rcom(V31, 5, t), 5).is_ok());
    }
    let (_, o) = v.receive(&dlm_message(V31, 5), 5).unwrap();
    assert_eq!(o, Observed::Known(Version::V3_1));

    // A 3.2-labelled message from a node known as 3.1 is dropped.
    let mismatch = Err(RecvError::Version(VersionError::Mismatch {
        detected: Version::V3_1,
        got: Version::V3_2,
    }));
    assert_eq!(v.receive(&rcom(V32, 5, 1), 5), mismatch);
    let mut ack = [0u8; 16];
    wire::encode_ack(&mut ack, 5, 0).unwrap();
    assert_eq!(v.receive(&ack, 5), mismatch);
    assert_eq!(v.get(), Some(Version::V3_1), "mismatch does not change it");
}

#[test]
fn mismatch_after_3_2_and_relearning_after_reset() {
    let mut v = PeerVersion::new();
    assert_eq!(
        v.observe(Version::V3_2),
        Ok(Observed::Detected(Version::V3_2))
    );
    assert_eq!(v.observe(Version::V3_2), Ok(Observed::Known(Version::V3_2)));
    let e = v.observe(Version::V3_1).unwrap_err();
    assert_eq!(
        e,
        VersionError::Mismatch {
            detected: Version::V3_2,
            got: Version::V3_1
        }
    );
    let s = e.to_string();
    assert!(s.contains("3.2") && s.contains("3.1"), "{s}");
    assert_eq!(
        v.receive(&dlm_message(V31, 1), 1).unwrap_err().to_string(),
        s
    );

    // The node is reset (close handshake done): the next connection may
    // come from a node that was downgraded.
    v.reset();
    assert_eq!(v.get(), None);
    assert_eq!(
        v.observe(Version::V3_1),
        Ok(Observed::Detected(Version::V3_1))
    );
}

#[test]
fn we_always_label_3_2() {
    // C writes DLM_HEADER_MAJOR | DLM_HEADER_MINOR into everything it
    // sends, also to 3.1 peers; the encoders do the same.
    let mut b = [0u8; 64];
    wire::encode_ack(&mut b, 1, 1).unwrap();
    assert_eq!(b[0..4], V32.to_le_bytes());
    wire::encode_fin(&mut b, 1, 1).unwrap();
    assert_eq!(b[0..4], V32.to_le_bytes());
    assert_eq!(b[24..28], V32.to_le_bytes());
    assert_eq!(wire::SEND_VERSION, V32);
}

#[test]
fn error_messages() {
    assert!(VersionError::NotDetected
        .to_string()
        .contains("not detected"));
    let e: RecvError = WireError::UnknownCmd { cmd: 9 }.into();
    assert!(e.to_string().contains("h_cmd 9"));
    let e: RecvError = VersionError::NotDetected.into();
    assert_eq!(e, RecvError::Version(VersionError::NotDetected));
}
