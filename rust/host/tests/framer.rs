// SPDX-License-Identifier: GPL-2.0

//! Tests of the stream framer: every split point, zero-copy, bounded
//! carry-over, framing errors and recovery.

use dlm_proto::proto::framer::{complete_len, frames, Framer, FramingError};
use dlm_proto::proto::wire::{self, WireError, MAX_MSG_LEN};
use proptest::prelude::*;

/// A message of `len` bytes with `h_length` at offset 12 and a payload
/// derived from `tag`, so that frames can be told apart.
fn msg(len: usize, tag: u8) -> Vec<u8> {
    let mut b = vec![0u8; len];
    b[0..4].copy_from_slice(&0x0003_0002u32.to_le_bytes());
    b[4] = tag;
    b[12..14].copy_from_slice(&(len as u16).to_le_bytes());
    b[14] = 3;
    for (i, x) in b.iter_mut().enumerate().skip(16) {
        *x = tag.wrapping_add(i as u8);
    }
    b
}

fn stream(lens: &[usize]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let msgs: Vec<Vec<u8>> = lens
        .iter()
        .enumerate()
        .map(|(i, &l)| msg(l, i as u8))
        .collect();
    (msgs.concat(), msgs)
}

/// Feeds `pieces` and returns every frame, checking on the way that the
/// carry-over never exceeds one incomplete message.
fn run(framer: &mut Framer, pieces: &[&[u8]]) -> Result<Vec<Vec<u8>>, FramingError> {
    let mut out = Vec::new();
    for p in pieces {
        let mut feed = framer.feed(p);
        while let Some(f) = feed.next_frame()? {
            out.push(f.to_vec());
        }
        drop(feed);
        assert!(framer.pending() < MAX_MSG_LEN);
    }
    Ok(out)
}

#[test]
fn whole_stream_in_one_piece() {
    let (s, msgs) = stream(&[16, 40, 88, 4096, 48, 17, 4095, 16]);
    let mut f = Framer::new();
    assert_eq!(run(&mut f, &[&s]).unwrap(), msgs);
    assert_eq!(f.pending(), 0);
    assert_eq!(f.offset(), s.len() as u64);
    assert_eq!(f.error(), None);
}

#[test]
fn every_single_split_point() {
    let (s, msgs) = stream(&[16, 40, 88, 300, 16, 16, 48, 4096, 24, 4095, 100]);
    for cut in 0..=s.len() {
        let mut f = Framer::new();
        let (a, b) = s.split_at(cut);
        assert_eq!(run(&mut f, &[a, b]).unwrap(), msgs, "split at {cut}");
        assert_eq!(f.pending(), 0, "split at {cut}");
    }
}

#[test]
fn every_pair_of_split_points() {
    let (s, msgs) = stream(&[16, 40, 88, 17, 16, 60]);
    for i in 0..=s.len() {
        for j in i..=s.len() {
            let mut f = Framer::new();
            let got = run(&mut f, &[&s[..i], &s[i..j], &s[j..]]).unwrap();
            assert_eq!(got, msgs, "splits at {i}, {j}");
            assert_eq!(f.pending(), 0);
        }
    }
}

#[test]
fn byte_by_byte() {
    let (s, msgs) = stream(&[4096, 16, 88, 4096, 4095, 16]);
    let pieces: Vec<&[u8]> = s.chunks(1).collect();
    let mut f = Framer::new();
    assert_eq!(run(&mut f, &pieces).unwrap(), msgs);
    // Also through the closure interface, with empty pieces in between.
    let mut f = Framer::new();
    let mut got = Vec::new();
    let mut n = 0;
    for b in s.chunks(1) {
        n += f.push(&[], |_| panic!("empty piece framed")).unwrap();
        n += f.push(b, |fr| got.push(fr.to_vec())).unwrap();
    }
    assert_eq!(n, msgs.len());
    assert_eq!(got, msgs);
}

#[test]
fn largest_message_at_every_split() {
    let m = msg(MAX_MSG_LEN, 9);
    for cut in 0..=m.len() {
        let mut f = Framer::new();
        let got = run(&mut f, &[&m[..cut], &m[cut..]]).unwrap();
        assert_eq!(got, vec![m.clone()]);
    }
}

#[test]
fn frames_inside_the_input_are_not_copied() {
    let (s, msgs) = stream(&[40, 88, 16, 100]);
    let mut f = Framer::new();
    // Piece 1 ends 10 bytes into the second message.
    let (a, b) = s.split_at(40 + 10);
    let mut feed = f.feed(a);
    let first = feed.next_frame().unwrap().unwrap();
    assert_eq!(
        first.as_ptr(),
        a.as_ptr(),
        "whole frame borrowed from input"
    );
    assert_eq!(feed.next_frame(), Ok(None));
    drop(feed);
    assert_eq!(f.pending(), 10);

    let mut feed = f.feed(b);
    let second = feed.next_frame().unwrap().unwrap().to_vec();
    assert_eq!(second, msgs[1], "straddling frame assembled");
    let third = feed.next_frame().unwrap().unwrap();
    assert_eq!(third.as_ptr(), b[78..].as_ptr(), "back to zero-copy");
    assert_eq!(third, &msgs[2][..]);
    let fourth = feed.next_frame().unwrap().unwrap();
    assert_eq!(fourth.as_ptr(), b[94..].as_ptr());
    assert_eq!(feed.next_frame(), Ok(None));
    assert_eq!(feed.next_frame(), Ok(None), "stays at the end");
}

#[test]
fn bad_length_is_reported_with_its_offset_and_sticks() {
    for bad in [0u16, 15, 4097, u16::MAX] {
        let (mut s, msgs) = stream(&[40, 88]);
        let mut b = msg(16, 7);
        b[12..14].copy_from_slice(&bad.to_le_bytes());
        s.extend_from_slice(&b);
        s.extend_from_slice(&msg(40, 8));
        let want_err = if bad < 16 {
            WireError::LengthTooShort { len: bad }
        } else {
            WireError::LengthTooLong { len: bad }
        };
        let expect = FramingError::BadHeader {
            offset: 128,
            error: want_err,
        };
        for cut in 0..=s.len() {
            let mut f = Framer::new();
            let mut good = Vec::new();
            let mut res = Ok(());
            for piece in [&s[..cut], &s[cut..]] {
                match f.push(piece, |fr| good.push(fr.to_vec())) {
                    Ok(_) => {}
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            assert_eq!(res, Err(expect), "cut {cut}");
            assert_eq!(good, msgs, "messages before the bad header, cut {cut}");
            assert_eq!(f.error(), Some(expect));
            assert_eq!(f.pending(), 0);
            // Sticky until reset.
            assert_eq!(
                f.push(&msg(16, 1), |_| panic!("framed after error")),
                Err(expect)
            );
            f.reset();
            assert_eq!(f.error(), None);
            assert_eq!(f.offset(), 0);
            let mut n = 0;
            f.push(&msg(16, 1), |_| n += 1).unwrap();
            assert_eq!(n, 1);
        }
    }
}

#[test]
fn bad_length_reported_as_soon_as_the_header_is_complete() {
    let mut b = msg(16, 0);
    b[12..14].copy_from_slice(&5000u16.to_le_bytes());
    let mut f = Framer::new();
    assert_eq!(f.push(&b[..15], |_| ()), Ok(0));
    assert_eq!(f.pending(), 15);
    assert_eq!(
        f.push(&b[15..], |_| ()),
        Err(FramingError::BadHeader {
            offset: 0,
            error: WireError::LengthTooLong { len: 5000 }
        })
    );
}

#[test]
fn bad_version_closes_the_stream_after_the_messages_before_it() {
    let (mut s, msgs) = stream(&[40, 24, 64]);
    // The third header claims version 2.2: nothing from it on is a frame.
    s[64..68].copy_from_slice(&0x0002_0002u32.to_le_bytes());
    for cut in 0..=s.len() {
        let mut f = Framer::new();
        let mut got = Vec::new();
        let mut err = None;
        for p in [&s[..cut], &s[cut..]] {
            if let Err(e) = f.push(p, |fr| got.push(fr.to_vec())) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(got, msgs[..2], "cut {cut}");
        assert_eq!(
            err,
            Some(FramingError::BadHeader {
                offset: 64,
                error: WireError::BadMajor {
                    version: 0x0002_0002
                }
            }),
            "cut {cut}"
        );
    }
    assert_eq!(
        complete_len(&s),
        (
            64,
            Some(WireError::BadMajor {
                version: 0x0002_0002
            })
        )
    );
}

#[test]
fn dropping_a_feed_early_fails_the_framer() {
    let (s, _) = stream(&[16, 16, 16]);
    let mut f = Framer::new();
    let mut feed = f.feed(&s);
    assert!(feed.next_frame().unwrap().is_some());
    drop(feed);
    let expect = FramingError::Abandoned { offset: 16 };
    assert_eq!(f.error(), Some(expect));
    assert_eq!(f.push(&s, |_| ()), Err(expect));
    assert!(expect.to_string().contains("16"));
    f.reset();
    assert_eq!(f.push(&s, |_| ()), Ok(3));

    // Nothing is lost, so nothing fails, when the feed's input is used up:
    // an empty piece, or a piece whose last frame was pulled without
    // asking for the Ok(None) after it.
    let mut f = Framer::new();
    drop(f.feed(&[]));
    assert_eq!(f.error(), None);
    let mut feed = f.feed(&s[..16]);
    assert_eq!(feed.next_frame().unwrap(), Some(&s[..16]));
    drop(feed);
    assert_eq!(f.error(), None);
    // The same when that last frame was completed from the carry-over.
    assert_eq!(f.push(&s[16..20], |_| ()), Ok(0));
    let mut feed = f.feed(&s[20..32]);
    assert_eq!(feed.next_frame().unwrap(), Some(&s[16..32]));
    drop(feed);
    assert_eq!(f.error(), None);
    assert_eq!(f.pending(), 0);
    // But unread bytes after a carried frame are lost.
    assert_eq!(f.push(&s[32..40], |_| ()), Ok(0));
    let mut feed = f.feed(&s[40..48]);
    assert!(feed.next_frame().unwrap().is_some());
    drop(feed);
    assert_eq!(f.error(), None, "input used up");
    let mut g = Framer::new();
    assert_eq!(g.push(&s[..8], |_| ()), Ok(0));
    let mut feed = g.feed(&s[8..]);
    assert!(feed.next_frame().unwrap().is_some());
    drop(feed);
    assert_eq!(g.error(), Some(FramingError::Abandoned { offset: 16 }));
}

#[test]
fn error_display() {
    let e = FramingError::BadHeader {
        offset: 1234,
        error: WireError::LengthTooLong { len: 4097 },
    };
    let s = e.to_string();
    assert!(s.contains("1234") && s.contains("4097"), "{s}");
}

#[test]
fn split_helper_matches_c_validate() {
    let (s, msgs) = stream(&[16, 88, 40]);
    for cut in 0..=s.len() {
        let buf = &s[..cut];
        let mut it = frames(buf);
        let got: Vec<&[u8]> = it.by_ref().map(Result::unwrap).collect();
        let whole: usize = got.iter().map(|f| f.len()).sum();
        assert_eq!(complete_len(buf), (whole, None));
        assert_eq!(it.remainder(), &buf[whole..]);
        for (g, m) in got.iter().zip(&msgs) {
            assert_eq!(*g, &m[..]);
        }
        let expect_n = [16usize, 104, 144].iter().filter(|&&e| e <= cut).count();
        assert_eq!(got.len(), expect_n, "cut {cut}");
    }
    let mut bad = s.clone();
    bad[16 + 12] = 3; // second header: h_length 3
    bad[16 + 13] = 0;
    let mut it = frames(&bad);
    assert_eq!(it.next(), Some(Ok(&bad[..16])));
    assert_eq!(it.next(), Some(Err(WireError::LengthTooShort { len: 3 })));
    assert_eq!(it.next(), None);
    assert_eq!(
        complete_len(&bad),
        (16, Some(WireError::LengthTooShort { len: 3 }))
    );
}

/// Reference model: split the concatenated stream with the obvious loop.
fn model(s: &[u8]) -> (Vec<Vec<u8>>, Option<(usize, WireError)>) {
    let mut out = Vec::new();
    let mut pos = 0;
    while s.len() - pos >= 16 {
        let version = u32::from_le_bytes([s[pos], s[pos + 1], s[pos + 2], s[pos + 3]]);
        let len = u16::from_le_bytes([s[pos + 12], s[pos + 13]]);
        match wire::check_frame_header(version, len) {
            Err(e) => return (out, Some((pos, e))),
            Ok(l) if s.len() - pos >= l => {
                out.push(s[pos..pos + l].to_vec());
                pos += l;
            }
            Ok(_) => break,
        }
    }
    (out, None)
}

fn arb_stream() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            8 => (16usize..200).prop_map(|l| msg(l, l as u8)),
            1 => (3500usize..=4096).prop_map(|l| msg(l, 1)),
            1 => prop::collection::vec(any::<u8>(), 16..40),
        ],
        0..12,
    )
    .prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Any stream, cut anywhere, frames exactly like the model.
    #[test]
    fn matches_model_for_any_chunking(
        s in arb_stream(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(s.len() + 1)).collect();
        points.push(0);
        points.push(s.len());
        points.sort_unstable();
        let pieces: Vec<&[u8]> = points.windows(2).map(|w| &s[w[0]..w[1]]).collect();

        let (want, want_err) = model(&s);
        let mut f = Framer::new();
        let mut got = Vec::new();
        let mut err = None;
        for p in &pieces {
            if let Err(e) = f.push(p, |fr| got.push(fr.to_vec())) {
                err = Some(e);
                break;
            }
            prop_assert!(f.pending() < MAX_MSG_LEN);
        }
        prop_assert_eq!(&got, &want);
        match want_err {
            None => {
                prop_assert_eq!(err, None);
                let framed: usize = want.iter().map(Vec::len).sum();
                prop_assert_eq!(f.pending(), s.len() - framed);
                prop_assert_eq!(f.offset(), framed as u64);
            }
            Some((pos, e)) => prop_assert_eq!(
                err,
                Some(FramingError::BadHeader { offset: pos as u64, error: e })
            ),
        }
    }
}

/// The committed fuzz seeds are what their names say (see
/// fuzz/gen_seeds.py): byte 0 is the chunking choice, the rest a stream
/// from node 1.
#[test]
fn fuzz_seeds_are_meaningful() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/framer_codec");
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let parse_all = |name: &str| -> (Vec<Result<(), WireError>>, Framer) {
        let data = read(name);
        let mut f = Framer::new();
        let mut results = Vec::new();
        f.push(&data[1..], |fr| {
            results.push(wire::parse(fr, 1).map(|_| ()));
        })
        .unwrap();
        (results, f)
    };
    for (name, frames) in [
        ("seed-3_2-session", 8),
        ("seed-3_2-bytewise", 3),
        ("seed-3_1-plain", 4),
        ("seed-max-length", 2),
        ("seed-opts-options", 1),
    ] {
        let (r, f) = parse_all(name);
        assert_eq!(r.len(), frames, "{name}");
        assert!(r.iter().all(Result::is_ok), "{name}: {r:?}");
        assert_eq!(f.pending(), 0, "{name}");
    }
    let (r, _) = parse_all("seed-inner-length-lie");
    assert_eq!(
        r,
        vec![Err(WireError::OptsInnerLenMismatch {
            inner: 4096,
            outer: 48
        })]
    );
    let (r, _) = parse_all("seed-inner-too-short");
    assert_eq!(
        r,
        vec![
            Err(WireError::InnerMsgTooShort { len: 40 }),
            Err(WireError::InnerRcomTooShort { len: 32 })
        ]
    );
    let (r, f) = parse_all("seed-partial-tail");
    assert_eq!(r, vec![Ok(())]);
    assert_eq!(f.pending(), 50);
    let data = read("seed-bad-length");
    assert_eq!(
        Framer::new().push(&data[1..], |_| ()),
        Err(FramingError::BadHeader {
            offset: 16,
            error: WireError::LengthTooLong { len: 4097 }
        })
    );
}
