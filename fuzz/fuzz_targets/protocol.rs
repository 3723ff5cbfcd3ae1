//! Feeds arbitrary bytes to every decoder of the node protocol, request and answer alike: the
//! REQUEST payload of every operation, the SINK receipt, name records, the STORE_SHARDS head
//! and shard stream, every JSON answer, and a membership report. Errors, never panics; a
//! request that decodes re-encodes to the same bytes.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use stoq::protocol::shards::{ShardDecoder, ShardsHead};
use stoq::protocol::{
    LocateAnswer, NameRecord, NameSetAnswer, Op, Placement, PrefetchAnswer, PurgeAnswer,
    PutAnswer, Request, SinkReceipt, StatusAnswer, StoreShardsAnswer,
};

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    if let Ok(request) = Request::decode(&payload) {
        // A position's text may be written differently; everything else is byte-exact.
        if request.op() != Op::Locate {
            assert_eq!(request.encode(), data);
        }
        assert_eq!(Request::decode(&Bytes::from(request.encode())).unwrap(), request);
    }
    if let Ok(receipt) = SinkReceipt::decode(data) {
        assert_eq!(receipt.encode(), data);
    }
    if let Ok(record) = NameRecord::decode(data) {
        assert_eq!(record.encode(), data);
    }
    let mut head = data.to_vec();
    if let Some(Ok(decoded)) = ShardsHead::take(&mut head) {
        assert!(decoded.encode().len() + head.len() == data.len());
    }
    let mut shards = ShardDecoder::default();
    for piece in data.chunks(7) {
        if shards.push(piece).is_err() {
            break;
        }
    }
    let _ = serde_json::from_slice::<PutAnswer>(data);
    let _ = serde_json::from_slice::<PurgeAnswer>(data);
    let _ = serde_json::from_slice::<PrefetchAnswer>(data);
    let _ = serde_json::from_slice::<NameSetAnswer>(data);
    let _ = serde_json::from_slice::<StoreShardsAnswer>(data);
    let _ = serde_json::from_slice::<LocateAnswer>(data);
    let _ = serde_json::from_slice::<StatusAnswer>(data);
    let _ = serde_json::from_slice::<Placement>(data);
    let _ = postcard::from_bytes::<stoq::node::Report>(data);
});
