//! The text form shared by every 32-byte id in STOQ (node ids, chunk ids, content ids):
//! 64 lowercase hexadecimal digits.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// 64 lowercase hex digits for 32 bytes. (By table, not `format!`: a store names every blob
/// file this way, once per chunk read.)
pub fn encode_hex32(bytes: &[u8; 32]) -> String {
    let mut out = String::with_capacity(64);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
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
        let by_format: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(text, by_format);
        assert_eq!(decode_hex32(&text), Some(bytes));
        assert_eq!(decode_hex32(&text.to_uppercase()), Some(bytes));
        assert_eq!(decode_hex32(&text[..63]), None);
        assert_eq!(decode_hex32(&"zz".repeat(32)), None);
        assert_eq!(decode_hex32(&"é".repeat(32)), None);
    }
}
