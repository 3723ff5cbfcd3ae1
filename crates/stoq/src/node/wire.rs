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

/// A PUT request: token, then erasure K and M (0 and 0 for none), then the kind (0xff: sniff),
/// then, for content whose reads are restricted, the BLAKE3 digest of its read token.
pub fn put_request(token: &str, options: &PutOptions, read_digest: Option<&[u8; 32]>) -> Vec<u8> {
    let (k, m) = options.erasure.map_or((0, 0), |e| (e.k, e.m));
    let kind = options.kind.map_or(0xff, ContentKind::code);
    let mut rest = vec![k, m, kind];
    if let Some(d) = read_digest {
        rest.extend_from_slice(d);
    }
    authorised(Op::Put, token, &rest)
}

/// Decodes a PUT's settings (what follows the token) and its read restriction, if any.
pub fn put_settings(rest: &[u8]) -> Result<(PutOptions, Option<[u8; 32]>), String> {
    match rest.len() {
        3 => Ok((put_options(rest)?, None)),
        35 => Ok((
            put_options(&rest[..3])?,
            Some(rest[3..].try_into().expect("32 bytes")),
        )),
        n => Err(format!("PUT settings must be 3 or 35 bytes, got {n}")),
    }
}

/// Decodes a PUT's erasure and kind settings.
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

/// Appends a read token (length-prefixed) to a GET request, if there is one.
pub fn append_read_token(payload: &mut Vec<u8>, token: Option<&str>) {
    if let Some(t) = token {
        let t = &t.as_bytes()[..t.len().min(MAX_TOKEN_LEN)];
        payload.push(t.len() as u8);
        payload.extend_from_slice(t);
    }
}

/// Splits a GET request's arguments into the fixed part (`fixed` bytes) and the read token
/// that may follow it.
pub fn get_args(args: &[u8], fixed: usize) -> Option<(&[u8], Option<&[u8]>)> {
    let (head, rest) = (args.get(..fixed)?, &args[fixed..]);
    if rest.is_empty() {
        return Some((head, None));
    }
    let (token, tail) = split_token(rest)?;
    tail.is_empty().then_some((head, Some(token)))
}

/// The digest a read token is checked against.
pub fn read_digest(token: &str) -> [u8; 32] {
    *blake3::hash(token.trim().as_bytes()).as_bytes()
}

/// A PURGE request; `forward` asks the node to pass it on to every peer.
pub fn purge_request(token: &str, id: &ContentId, forward: bool) -> Vec<u8> {
    let mut rest = id.0.to_vec();
    rest.push(u8::from(forward));
    authorised(Op::Purge, token, &rest)
}

/// A STORE_SHARDS request (the body carries the manifest, the placement and the shards).
pub fn store_shards_request(token: &str, id: &ContentId) -> Vec<u8> {
    authorised(Op::StoreShards, token, &id.0)
}

/// A PREFETCH request.
pub fn prefetch_request(token: &str, id: &ContentId) -> Vec<u8> {
    authorised(Op::Prefetch, token, &id.0)
}

/// A NAME_SET request: token, TTL and stale-while-revalidate seconds, content id, name.
pub fn name_set_request(
    token: &str,
    name: &str,
    id: &ContentId,
    ttl_s: u32,
    swr_s: u32,
) -> Vec<u8> {
    let mut rest = Vec::with_capacity(40 + name.len());
    rest.extend_from_slice(&ttl_s.to_be_bytes());
    rest.extend_from_slice(&swr_s.to_be_bytes());
    rest.extend_from_slice(&id.0);
    rest.extend_from_slice(name.as_bytes());
    authorised(Op::NameSet, token, &rest)
}

/// Decodes a NAME_SET's arguments (what follows the token): (name, id, ttl_s, swr_s).
pub fn name_set_args(rest: &[u8]) -> Result<(&str, ContentId, u32, u32), String> {
    if rest.len() < 40 {
        return Err("NAME_SET needs ttl, swr, a content id and a name".into());
    }
    let ttl = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes"));
    let swr = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes"));
    let id = content_id(&rest[8..40]).expect("32 bytes");
    let name = std::str::from_utf8(&rest[40..]).map_err(|_| "a name must be UTF-8".to_owned())?;
    crate::edge::names::check_name(name).map_err(|e| e.to_string())?;
    Ok((name, id, ttl, swr))
}

/// A NAME_GET request.
pub fn name_get_request(name: &str) -> Vec<u8> {
    let mut out = vec![Op::NameGet.code()];
    out.extend_from_slice(name.as_bytes());
    out
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
        let payload = put_request("0123456789abcdef", &options, None);
        let (token, rest) = split_token(&payload[1..]).unwrap();
        assert_eq!(token, b"0123456789abcdef");
        let back = put_options(rest).unwrap();
        assert_eq!(back.erasure, options.erasure);
        assert_eq!(back.kind, options.kind);
        assert!(put_options(&[0, 0]).is_err());
        assert!(put_options(&[0, 0, 9]).is_err());
        assert!(put_options(&[0, 200, 0xff]).is_err());
    }

    #[test]
    fn get_arguments_carry_an_optional_read_token() {
        let mut payload = vec![7u8; 36];
        assert_eq!(get_args(&payload, 36), Some((&payload[..], None)));
        append_read_token(&mut payload, Some("reader"));
        let (head, token) = get_args(&payload, 36).unwrap();
        assert_eq!((head.len(), token), (36, Some(&b"reader"[..])));
        payload.push(0);
        assert_eq!(get_args(&payload, 36), None, "trailing bytes are refused");
        assert_eq!(get_args(&payload[..20], 32), None);
        let (options, digest) = put_settings(
            &put_request(
                "t0123456789abcdef",
                &PutOptions::default(),
                Some(&read_digest("r")),
            )[19..],
        )
        .unwrap();
        assert_eq!((options.erasure, digest), (None, Some(read_digest("r"))));
    }

    #[test]
    fn name_set_arguments_round_trip() {
        let id = Hash32([3; 32]);
        let payload = name_set_request("0123456789abcdef", "site/index.html", &id, 60, 300);
        let (_, rest) = split_token(&payload[1..]).unwrap();
        assert_eq!(
            name_set_args(rest).unwrap(),
            ("site/index.html", id, 60, 300)
        );
        assert!(name_set_args(&rest[..39]).is_err());
        let mut bad = rest.to_vec();
        bad.truncate(40);
        assert!(name_set_args(&bad).is_err(), "an empty name is refused");
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
            let _ = name_set_args(&bytes);
            let _ = put_settings(&bytes);
            if let Some((head, token)) = get_args(&bytes, 32) {
                prop_assert_eq!(head.len(), 32);
                prop_assert!(token.is_none_or(|t| !t.is_empty()));
            }
        }
    }
}
