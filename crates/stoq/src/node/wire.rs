//! Payloads of the node-management requests (PUT, PURGE, PREFETCH, LOCATE): encoding and
//! decoding with no IO, so both sides agree and the decoders can be tested on bad input.
//!
//! Authorised requests start with the admin token, length-prefixed:
//! `u8 len | token bytes | rest`.

use crate::chunking::{ContentId, ContentKind, ErasurePolicy, Hash32};
use crate::store::PutOptions;

use super::token::MAX_TOKEN_LEN;
use super::Op;

/// The 32-byte content id at the start of `bytes`, if there is one.
pub fn content_id(bytes: &[u8]) -> Option<ContentId> {
    Some(Hash32(bytes.get(..32)?.try_into().ok()?))
}

/// Splits a length-prefixed token off the front of `args`.
pub fn split_token(args: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = args.split_first()?;
    let len = usize::from(len);
    if len == 0 || rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

fn authorised(op: Op, token: &str, rest: &[u8]) -> Vec<u8> {
    let token = &token.as_bytes()[..token.len().min(MAX_TOKEN_LEN)];
    let mut out = Vec::with_capacity(2 + token.len() + rest.len());
    out.push(op.code());
    out.push(token.len() as u8);
    out.extend_from_slice(token);
    out.extend_from_slice(rest);
    out
}

/// A PUT request: token, then erasure K and M (0 and 0 for none), then the kind (0xff: sniff).
pub fn put_request(token: &str, options: &PutOptions) -> Vec<u8> {
    let (k, m) = options.erasure.map_or((0, 0), |e| (e.k, e.m));
    let kind = options.kind.map_or(0xff, ContentKind::code);
    authorised(Op::Put, token, &[k, m, kind])
}

/// Decodes a PUT's settings (what follows the token).
pub fn put_options(rest: &[u8]) -> Result<PutOptions, String> {
    let [k, m, kind] = rest else {
        return Err(format!("PUT settings must be 3 bytes, got {}", rest.len()));
    };
    let erasure = match (k, m) {
        (0, 0) => None,
        (&k, &m) => {
            let policy = ErasurePolicy { k, m };
            policy.validate()?;
            Some(policy)
        }
    };
    let kind = match kind {
        0xff => None,
        &code => Some(ContentKind::from_code(code).ok_or(format!("unknown content kind {code}"))?),
    };
    Ok(PutOptions { erasure, kind })
}

/// A PURGE request; `forward` asks the node to pass it on to every peer.
pub fn purge_request(token: &str, id: &ContentId, forward: bool) -> Vec<u8> {
    let mut rest = id.0.to_vec();
    rest.push(u8::from(forward));
    authorised(Op::Purge, token, &rest)
}

/// A PREFETCH request.
pub fn prefetch_request(token: &str, id: &ContentId) -> Vec<u8> {
    authorised(Op::Prefetch, token, &id.0)
}

/// A LOCATE request: `geo:LAT,LON`, `region:NAME`, or empty (locate by the client's address).
pub fn locate_request(location: &str) -> Vec<u8> {
    let mut out = vec![Op::Locate.code()];
    out.extend_from_slice(location.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn put_settings_round_trip() {
        let options = PutOptions {
            erasure: Some(ErasurePolicy { k: 4, m: 2 }),
            kind: Some(ContentKind::Text),
        };
        let payload = put_request("0123456789abcdef", &options);
        let (token, rest) = split_token(&payload[1..]).unwrap();
        assert_eq!(token, b"0123456789abcdef");
        let back = put_options(rest).unwrap();
        assert_eq!(back.erasure, options.erasure);
        assert_eq!(back.kind, options.kind);
        assert!(put_options(&[0, 0]).is_err());
        assert!(put_options(&[0, 0, 9]).is_err());
        assert!(put_options(&[0, 200, 0xff]).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Some((token, rest)) = split_token(&bytes) {
                prop_assert!(!token.is_empty());
                prop_assert_eq!(token.len() + rest.len() + 1, bytes.len());
            }
            let _ = put_options(&bytes);
            let _ = content_id(&bytes);
        }
    }
}
