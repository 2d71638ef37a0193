// SPDX-License-Identifier: GPL-2.0

//! Text of the dlm configfs attributes: the integer syntax of the kernel's
//! `kstrto*()` family with base 0 (lib/kstrtox.c), which every numeric
//! attribute of fs/dlm/config.c and the nodeid in a comm or node directory
//! name are parsed with, and the `strscpy()` copy of `cluster_name`.
//!
//! configfs hands a store the bytes of one `write()` followed by a NUL, so
//! the C parsers see the text up to the first NUL.  The functions here take
//! those bytes as a slice and stop at the first NUL in it too.
//!
//! The syntax, as the C parsers accept it:
//!
//! * an optional sign: `+` for every type, `-` for the signed ones only;
//! * the base, detected after the sign: `0x`/`0X` followed by a hex digit
//!   means hexadecimal, any other leading `0` octal, anything else decimal;
//! * one or more digits of that base (a digit that is not of the base ends
//!   the number);
//! * at most one `\n`, and nothing after it.
//!
//! A number that does not fit in 64 bits, or in the target type, is
//! [`ParseError::Range`] (`-ERANGE`), and that check comes before the check
//! for trailing garbage; every other error is [`ParseError::Invalid`]
//! (`-EINVAL`).

/// Why a text is not a number of the requested type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not a number in the accepted syntax (`-EINVAL`).
    Invalid,
    /// A number, but out of range for the type (`-ERANGE`).
    Range,
}

/// The bytes before the first NUL, as the C string functions see them.
pub fn c_str(s: &[u8]) -> &[u8] {
    match s.iter().position(|&b| b == 0) {
        Some(i) => &s[..i],
        None => s,
    }
}

fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// `_tolower()` of lib/ctype: sets bit 5 whatever the character.
fn lower(c: u8) -> u8 {
    c | 0x20
}

/// `_kstrtoull(s, 0, ...)`: no sign; `s` ends at its first NUL.
fn unsigned(s: &[u8]) -> Result<u64, ParseError> {
    // _parse_integer_fixup_radix()
    let (base, mut i) = if at(s, 0) == b'0' {
        if lower(at(s, 1)) == b'x' && at(s, 2).is_ascii_hexdigit() {
            (16u64, 2)
        } else {
            (8, 0)
        }
    } else {
        (10, 0)
    };
    // _parse_integer()
    let start = i;
    let mut res: u64 = 0;
    let mut overflow = false;
    loop {
        let c = at(s, i);
        let val = match c {
            b'0'..=b'9' => u64::from(c - b'0'),
            _ if (b'a'..=b'f').contains(&lower(c)) => u64::from(lower(c) - b'a' + 10),
            _ => break,
        };
        if val >= base {
            break;
        }
        match res.checked_mul(base).and_then(|r| r.checked_add(val)) {
            Some(r) => res = r,
            None => {
                res = u64::MAX;
                overflow = true;
            }
        }
        i += 1;
    }
    if overflow {
        return Err(ParseError::Range);
    }
    if i == start {
        return Err(ParseError::Invalid);
    }
    if at(s, i) == b'\n' {
        i += 1;
    }
    if at(s, i) != 0 {
        return Err(ParseError::Invalid);
    }
    Ok(res)
}

/// `kstrtoull(s, 0, ...)`.
pub fn parse_u64(s: &[u8]) -> Result<u64, ParseError> {
    let s = c_str(s);
    match s.first() {
        Some(b'+') => unsigned(&s[1..]),
        _ => unsigned(s),
    }
}

/// `kstrtoll(s, 0, ...)`.
pub fn parse_i64(s: &[u8]) -> Result<i64, ParseError> {
    let s = c_str(s);
    if s.first() == Some(&b'-') {
        let tmp = unsigned(&s[1..])?;
        let neg = tmp.wrapping_neg() as i64;
        if neg > 0 {
            return Err(ParseError::Range);
        }
        Ok(neg)
    } else {
        let tmp = parse_u64(s)?;
        i64::try_from(tmp).map_err(|_| ParseError::Range)
    }
}

/// `kstrtouint(s, 0, ...)`.
pub fn parse_u32(s: &[u8]) -> Result<u32, ParseError> {
    u32::try_from(parse_u64(s)?).map_err(|_| ParseError::Range)
}

/// `kstrtou16(s, 0, ...)`.
pub fn parse_u16(s: &[u8]) -> Result<u16, ParseError> {
    u16::try_from(parse_u64(s)?).map_err(|_| ParseError::Range)
}

/// `kstrtoint(s, 0, ...)`.
pub fn parse_i32(s: &[u8]) -> Result<i32, ParseError> {
    i32::try_from(parse_i64(s)?).map_err(|_| ParseError::Range)
}

/// How many bytes of `src` `strscpy(dst, src, dst_len)` copies: the C
/// string in `src` (up to its first NUL), truncated to `dst_len - 1` bytes
/// so that the NUL it writes after them fits.
pub fn strscpy_len(dst_len: usize, src: &[u8]) -> usize {
    c_str(src).len().min(dst_len.saturating_sub(1))
}
