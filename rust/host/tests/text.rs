// SPDX-License-Identifier: GPL-2.0

//! Tests of the configfs attribute text syntax (`kstrto*()` with base 0).
//! The expected results are those of lib/kstrtox.c; the cluster scenario
//! `configfs` checks the same cases against the stock module's parsers.

use dlm_proto::proto::text::{
    c_str, parse_i32, parse_i64, parse_u16, parse_u32, parse_u64, strscpy_len,
    ParseError::{Invalid, Range},
};
use proptest::prelude::*;

#[test]
fn bases() {
    assert_eq!(parse_u32(b"21064"), Ok(21064));
    assert_eq!(parse_u32(b"0x5248"), Ok(0x5248));
    assert_eq!(parse_u32(b"0X5248"), Ok(0x5248));
    assert_eq!(parse_u32(b"0xAbC"), Ok(0xabc));
    assert_eq!(parse_u32(b"017"), Ok(0o17));
    assert_eq!(parse_u32(b"0"), Ok(0));
    assert_eq!(parse_u32(b"00"), Ok(0));
    // "0x" without a hex digit after it is octal 0 followed by garbage.
    assert_eq!(parse_u32(b"0x"), Err(Invalid));
    assert_eq!(parse_u32(b"0xg"), Err(Invalid));
    // 8 is not an octal digit.
    assert_eq!(parse_u32(b"08"), Err(Invalid));
    assert_eq!(parse_u32(b"0b101"), Err(Invalid));
    assert_eq!(parse_u32(b"0o17"), Err(Invalid));
}

#[test]
fn newline_and_terminator() {
    assert_eq!(parse_u32(b"5\n"), Ok(5));
    assert_eq!(parse_u32(b"5\n\n"), Err(Invalid));
    assert_eq!(parse_u32(b"5 "), Err(Invalid));
    assert_eq!(parse_u32(b" 5"), Err(Invalid));
    assert_eq!(parse_u32(b"5\r\n"), Err(Invalid));
    // The text ends at the first NUL, as a C string does.
    assert_eq!(parse_u32(b"5\0garbage"), Ok(5));
    assert_eq!(parse_u32(b"\x005"), Err(Invalid));
    assert_eq!(parse_u32(b""), Err(Invalid));
    assert_eq!(parse_u32(b"\n"), Err(Invalid));
}

#[test]
fn signs() {
    assert_eq!(parse_u32(b"+7"), Ok(7));
    assert_eq!(parse_u32(b"-7"), Err(Invalid));
    assert_eq!(parse_u32(b"-0"), Err(Invalid));
    assert_eq!(parse_u32(b"++7"), Err(Invalid));
    assert_eq!(parse_i32(b"-7"), Ok(-7));
    assert_eq!(parse_i32(b"+7"), Ok(7));
    assert_eq!(parse_i32(b"-0"), Ok(0));
    assert_eq!(parse_i32(b"-0x10"), Ok(-16));
    // kstrtoll() does not skip a '+' after a '-'.
    assert_eq!(parse_i32(b"-+7"), Err(Invalid));
    assert_eq!(parse_i32(b"+-7"), Err(Invalid));
}

#[test]
fn ranges() {
    assert_eq!(parse_u16(b"65535"), Ok(65535));
    assert_eq!(parse_u16(b"65536"), Err(Range));
    assert_eq!(parse_u32(b"4294967295"), Ok(u32::MAX));
    assert_eq!(parse_u32(b"4294967296"), Err(Range));
    assert_eq!(parse_u32(b"0xffffffff"), Ok(u32::MAX));
    assert_eq!(parse_u32(b"0x100000000"), Err(Range));
    assert_eq!(parse_i32(b"2147483647"), Ok(i32::MAX));
    assert_eq!(parse_i32(b"2147483648"), Err(Range));
    assert_eq!(parse_i32(b"-2147483648"), Ok(i32::MIN));
    assert_eq!(parse_i32(b"-2147483649"), Err(Range));
    assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
    assert_eq!(parse_u64(b"18446744073709551616"), Err(Range));
    assert_eq!(parse_i64(b"-9223372036854775808"), Ok(i64::MIN));
    assert_eq!(parse_i64(b"-9223372036854775809"), Err(Range));
    assert_eq!(parse_i64(b"9223372036854775808"), Err(Range));
    // Overflow is reported before trailing garbage is looked at.
    assert_eq!(parse_u32(b"99999999999999999999999x"), Err(Range));
    // A value in range for u64 but not u32 with garbage after it: garbage.
    assert_eq!(parse_u32(b"4294967296x"), Err(Invalid));
    // Leading zeros do not overflow.
    let mut long = vec![b'0'; 4000];
    long.push(b'7');
    assert_eq!(parse_u32(&long), Ok(7));
}

#[test]
fn strscpy() {
    assert_eq!(strscpy_len(64, b"dlmrs"), 5);
    assert_eq!(strscpy_len(64, b"dlmrs\n"), 6);
    assert_eq!(strscpy_len(64, b"ab\0cd"), 2);
    assert_eq!(strscpy_len(64, &[b'x'; 100]), 63);
    assert_eq!(strscpy_len(64, &[b'x'; 63]), 63);
    assert_eq!(c_str(b"a\0b"), b"a");
}

/// A reference model written independently of the parser: Rust's own
/// radix parsing on the pieces the C syntax allows.
fn model_u64(s: &[u8]) -> Result<u64, dlm_proto::proto::text::ParseError> {
    let s = c_str(s);
    let s = s.strip_prefix(b"+").unwrap_or(s);
    let (radix, digits_and_rest) =
        if s.len() >= 3 && s[0] == b'0' && (s[1] | 0x20) == b'x' && s[2].is_ascii_hexdigit() {
            (16, &s[2..])
        } else if s.first() == Some(&b'0') {
            (8, s)
        } else {
            (10, s)
        };
    let n = digits_and_rest
        .iter()
        .take_while(|c| (**c as char).is_digit(radix))
        .count();
    if n == 0 {
        return Err(Invalid);
    }
    let digits = std::str::from_utf8(&digits_and_rest[..n]).unwrap();
    let rest = &digits_and_rest[n..];
    let v = u64::from_str_radix(digits, radix).map_err(|_| Range)?;
    if !(rest.is_empty() || rest == b"\n") {
        return Err(Invalid);
    }
    Ok(v)
}

proptest! {
    #[test]
    fn matches_model(s in proptest::collection::vec(
        prop_oneof![Just(b'0'), Just(b'1'), Just(b'7'), Just(b'8'), Just(b'9'), Just(b'a'),
                    Just(b'F'), Just(b'x'), Just(b'X'), Just(b'+'), Just(b'-'), Just(b'\n'),
                    Just(b' '), Just(0u8)], 0..24)) {
        prop_assert_eq!(parse_u64(&s), model_u64(&s));
        let u32_model = model_u64(&s).and_then(|v| u32::try_from(v).map_err(|_| Range));
        prop_assert_eq!(parse_u32(&s), u32_model);
    }

    #[test]
    fn decimal_roundtrip(v in any::<u32>()) {
        prop_assert_eq!(parse_u32(format!("{v}\n").as_bytes()), Ok(v));
        prop_assert_eq!(parse_u32(format!("{v:#x}").as_bytes()), Ok(v));
        prop_assert_eq!(parse_u32(format!("0{v:o}").as_bytes()), Ok(v));
    }

    #[test]
    fn signed_roundtrip(v in any::<i32>()) {
        prop_assert_eq!(parse_i32(format!("{v}").as_bytes()), Ok(v));
    }
}
