//! Feeds arbitrary bytes to the decoders of node requests a peer can send: the token split,
//! PUT settings, NAME_SET arguments, name records, the STORE_SHARDS shard stream, a GET's
//! optional read token and a membership report. Errors, never panics; what decodes re-encodes.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stoq::edge::names::NameRecord;
use stoq::node::shards::ShardDecoder;
use stoq::node::wire;

fuzz_target!(|data: &[u8]| {
    if let Some((token, rest)) = wire::split_token(data) {
        assert_eq!(1 + token.len() + rest.len(), data.len());
        if let Ok((options, digest)) = wire::put_settings(rest) {
            let token = String::from_utf8_lossy(token);
            let again = wire::put_request(&token, &options, digest.as_ref());
            let (_, again_rest) = wire::split_token(&again[1..]).expect("a token");
            let (o2, d2) = wire::put_settings(again_rest).expect("re-encodes");
            assert_eq!((o2.erasure, o2.kind, d2), (options.erasure, options.kind, digest));
        }
        let _ = wire::name_set_args(rest);
    }
    if let Ok(record) = NameRecord::decode(data) {
        assert_eq!(record.encode(), data);
    }
    let mut shards = ShardDecoder::default();
    for piece in data.chunks(7) {
        if shards.push(piece).is_err() {
            break;
        }
    }
    let _ = wire::get_args(data, 36);
    let _ = postcard::from_bytes::<stoq::node::membership::Report>(data);
});
