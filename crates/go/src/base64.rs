//! Standard base64 (RFC 4648, padded), with the leniencies of Go's `base64.StdEncoding`, which
//! `encoding/json` uses for `[]byte` fields such as message images.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Encodes with padding, as Go's `json.Marshal` does for `[]byte`.
pub fn encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn value_of(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes like Go's `StdEncoding.Decode`: padding is required, `\r` and `\n` are skipped anywhere,
/// and non-zero bits in the final quantum are ignored. The error is the offset of the offending input
/// byte (Go's `CorruptInputError`).
pub fn decode(input: &str) -> Result<Vec<u8>, usize> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    // Significant characters with their offsets in `input`.
    let mut quantum: [(u8, usize); 4] = [(0, 0); 4];
    let mut filled = 0;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\r' || c == b'\n' {
            i += 1;
            continue;
        }
        quantum[filled] = (c, i);
        filled += 1;
        i += 1;
        if filled < 4 {
            continue;
        }
        filled = 0;
        // Count padding: only "xx==" or "xxx=" are valid, and only at the end of the input.
        let pad = quantum.iter().rev().take_while(|(c, _)| *c == b'=').count();
        if pad > 2 {
            return Err(quantum[4 - pad].1);
        }
        let mut n: u32 = 0;
        for (c, at) in &quantum[..4 - pad] {
            n = (n << 6) | value_of(*c).ok_or(*at)?;
        }
        n <<= 6 * pad as u32;
        out.push((n >> 16) as u8);
        if pad < 2 {
            out.push((n >> 8) as u8);
        }
        if pad < 1 {
            out.push(n as u8);
        }
        if pad > 0 {
            // Anything but line breaks after padding is corrupt.
            if let Some(off) = bytes[i..].iter().position(|c| *c != b'\r' && *c != b'\n') {
                return Err(i + off);
            }
            return Ok(out);
        }
    }
    if filled == 0 {
        Ok(out)
    } else {
        // A truncated quantum: Go reports the first bad character, or the end of input.
        for (c, at) in &quantum[..filled] {
            if value_of(*c).is_none() {
                return Err(*at);
            }
        }
        Err(bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, coded) in vectors {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
    }

    #[test]
    fn go_leniency_and_errors() {
        assert_eq!(decode("Zm9v\r\nYg==\n").unwrap(), b"foob");
        assert_eq!(decode("Zh==").unwrap(), b"f"); // non-zero trailing bits accepted
        assert_eq!(decode("Zm9"), Err(3));
        assert_eq!(decode("Zm9v!"), Err(4));
        assert_eq!(decode("Zg==Zg=="), Err(4));
        assert_eq!(decode("Z==="), Err(1));
    }
}
