//! The text form shared by every 32-byte id in STOQ (node ids, chunk ids, content ids):
//! 64 lowercase hexadecimal digits.

use std::fmt::Write;

/// 64 lowercase hex digits for 32 bytes.
pub fn encode_hex32(bytes: &[u8; 32]) -> String {
    let mut out = String::with_capacity(64);
    for b in bytes {
        write!(out, "{b:02x}").expect("writing to a String cannot fail");
    }
    out
}

/// The 32 bytes of 64 hex digits (either case, surrounding whitespace ignored).
pub fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37) as u8);
        let text = encode_hex32(&bytes);
        assert_eq!(text.len(), 64);
        assert_eq!(decode_hex32(&text), Some(bytes));
        assert_eq!(decode_hex32(&text.to_uppercase()), Some(bytes));
        assert_eq!(decode_hex32(&text[..63]), None);
        assert_eq!(decode_hex32(&"zz".repeat(32)), None);
        assert_eq!(decode_hex32(&"é".repeat(32)), None);
    }
}
