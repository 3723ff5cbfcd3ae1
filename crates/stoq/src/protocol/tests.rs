//! Every request and answer encoding round-trips, and no decoder panics on arbitrary bytes.

use bytes::Bytes;
use proptest::prelude::*;

use super::shards::{encode_shard, ShardDecoder, ShardsHead};
use super::*;
use crate::chunking::{ChunkId, ContentId, ContentKind, ErasurePolicy, Hash32};

fn id(n: u8) -> ContentId {
    Hash32([n; 32])
}

#[test]
fn busy_reasons_carry_their_pause() {
    let after = std::time::Duration::from_millis(250);
    assert_eq!(
        retry_after(&busy_reason(after, "every slot is taken")),
        Some(after)
    );
    assert_eq!(retry_after("busy: retry after soon"), None);
    assert_eq!(retry_after("not found"), None);
}

#[test]
fn op_codes_round_trip() {
    for op in ALL_OPS {
        assert_eq!(Op::from_code(op.code()), Some(op));
    }
    assert_eq!(Op::from_code(0xee), None);
}

#[test]
fn examples_round_trip_and_bad_arguments_are_refused() {
    let token = Request::admin_token("0123456789abcdef\n");
    assert_eq!(
        &token[..],
        b"0123456789abcdef",
        "the token file's text, trimmed"
    );
    let settings = PutSettings {
        erasure: Some(ErasurePolicy { k: 4, m: 2 }),
        kind: Some(ContentKind::Text),
        read_digest: Some(read_digest("r")),
        media_type: Some("text/css; charset=utf-8".into()),
    };
    let put = Request::Put {
        token: token.clone(),
        settings,
    };
    let encoded = put.encode();
    assert_eq!(encoded.len(), 1 + 1 + 16 + 4 + 32 + 23);
    assert_eq!(Request::decode(&Bytes::from(encoded)).unwrap(), put);
    // Bad settings: too short, unknown kind, invalid erasure, unknown flags, a digest cut
    // short, bytes after the end, a media type that is no header value.
    for rest in [
        &[0u8, 0, 0xff][..],
        &[0, 0, 9, 0],
        &[0, 200, 0xff, 0],
        &[0, 0, 0xff, 4],
        &[0, 0, 0xff, 1, 7, 7],
        &[0, 0, 0xff, 0, 1],
        &[0, 0, 0xff, 2, b'a', b'\n', b'/'],
    ] {
        let mut payload = vec![Op::Put.code(), 16];
        payload.extend_from_slice(b"0123456789abcdef");
        payload.extend_from_slice(rest);
        let err = Request::decode(&Bytes::from(payload)).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
    }
    // No token at all: unauthorized, not bad request.
    let err = Request::decode(&Bytes::from(vec![Op::Purge.code()])).unwrap_err();
    assert_eq!(err.code, ErrorCode::Unauthorized);
    // GET_CHUNK with a read token, then trailing bytes refused.
    let get = Request::GetChunk {
        id: id(7),
        index: 9,
        read_token: Request::read_token(Some("reader")),
    };
    let mut encoded = get.encode();
    assert_eq!(Request::decode(&Bytes::from(encoded.clone())).unwrap(), get);
    encoded.push(0);
    assert!(Request::decode(&Bytes::from(encoded)).is_err());
    // GET_CHUNKS: a run of 0, of more than the most, or past u32's end is refused.
    for (first, count) in [(0, 0), (0, MAX_RUN_CHUNKS + 1), (u32::MAX, 2)] {
        let mut payload = vec![Op::GetChunks.code()];
        payload.extend_from_slice(&id(1).0);
        payload.extend_from_slice(&first.to_be_bytes());
        payload.extend_from_slice(&count.to_be_bytes());
        let err = Request::decode(&Bytes::from(payload)).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "run {first}+{count}");
    }
    // A name must be valid.
    assert!(Request::decode(&Bytes::from(vec![Op::NameGet.code()])).is_err());
    // Locations.
    assert!(Request::decode(&Bytes::from(b"\x23geo:north".to_vec())).is_err());
    assert_eq!(
        Request::decode(&Bytes::from(b"\x23".to_vec())).unwrap(),
        Request::Locate {
            location: Location::ByAddress
        }
    );
    // Operations without arguments refuse any.
    assert!(Request::decode(&Bytes::from(vec![Op::Ping.code(), 0])).is_err());
    assert!(Request::decode(&Bytes::new()).is_err());
}

#[test]
fn sink_receipts_round_trip_and_bad_lengths_are_errors() {
    let r = SinkReceipt {
        bytes: 42,
        hash: blake3::hash(b"x"),
    };
    assert_eq!(SinkReceipt::decode(&r.encode()).unwrap(), r);
    assert!(SinkReceipt::decode(&r.encode()[..39]).is_err());
    assert!(SinkReceipt::decode(&[0u8; 41]).is_err());
}

#[test]
fn json_answers_round_trip() {
    let purge = PurgeAnswer {
        id: id(1),
        removed_here: 3,
        reached: vec![NodeIdOf(2).get()],
        failed: vec![PurgeFailure {
            id: NodeIdOf(3).get(),
            reason: "gone".into(),
        }],
    };
    let text = serde_json::to_string(&purge).unwrap();
    assert_eq!(serde_json::from_str::<PurgeAnswer>(&text).unwrap(), purge);
    let put = PutAnswer {
        id: id(4),
        size: 10,
        chunks: 1,
        new_chunks: 1,
        new_bytes: 10,
        kind: ContentKind::Binary,
        placement: None,
    };
    let value = serde_json::to_value(&put).unwrap();
    assert_eq!(value["kind"], "binary");
    assert!(value.get("placement").is_none());
    assert_eq!(serde_json::from_value::<PutAnswer>(value).unwrap(), put);
}

struct NodeIdOf(u8);
impl NodeIdOf {
    fn get(&self) -> stoq_protocol::NodeId {
        stoq_protocol::NodeId::from_bytes([self.0; 32])
    }
}

#[test]
fn shards_decode_across_arbitrary_piece_boundaries() {
    let shards: Vec<(ChunkId, Vec<u8>)> = (0..5u8)
        .map(|i| {
            let bytes = vec![i; 1000 + usize::from(i) * 37];
            (ChunkId::of(&bytes), bytes)
        })
        .collect();
    let mut body = Vec::new();
    for (id, bytes) in &shards {
        encode_shard(id, bytes, &mut body);
    }
    for piece in [1, 7, 36, 999, body.len()] {
        let mut d = ShardDecoder::default();
        let mut got = Vec::new();
        for p in body.chunks(piece) {
            got.extend(d.push(p).unwrap());
        }
        assert!(d.is_clean());
        assert_eq!(got, shards);
    }
    let mut bad = vec![0u8; 32];
    bad.extend_from_slice(&(crate::chunking::MAX_CHUNK_LEN + 1).to_be_bytes());
    assert!(ShardDecoder::default().push(&bad).is_err());
}

#[test]
fn shard_heads_arrive_in_pieces() {
    let head = ShardsHead {
        manifest: vec![1; 100],
        placement: b"{}".to_vec(),
        restriction: Some([9; 32]),
    };
    let mut encoded = head.encode();
    encoded.extend_from_slice(b"rest");
    let mut buf = Vec::new();
    for (i, byte) in encoded.iter().enumerate() {
        buf.push(*byte);
        match ShardsHead::take(&mut buf) {
            None => assert!(i + 1 < encoded.len() - 4),
            Some(got) => {
                assert_eq!(got.unwrap(), head);
                assert!(buf.is_empty());
                break;
            }
        }
    }
    let mut bad = Vec::new();
    bad.extend_from_slice(&0u32.to_be_bytes());
    bad.extend_from_slice(&0u32.to_be_bytes());
    bad.extend_from_slice(&3u32.to_be_bytes());
    bad.extend_from_slice(b"abc");
    assert!(ShardsHead::take(&mut bad).unwrap().is_err());
    let mut huge = (u32::MAX).to_be_bytes().to_vec();
    assert!(ShardsHead::take(&mut huge).unwrap().is_err());
}

fn any_token() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 1..=255).prop_map(Bytes::from)
}

fn any_name() -> impl Strategy<Value = String> {
    "[a-z0-9/._-]{1,64}"
}

fn any_request() -> impl Strategy<Value = Request> {
    let id = any::<[u8; 32]>().prop_map(Hash32);
    prop_oneof![
        Just(Request::Ping),
        Just(Request::Echo),
        Just(Request::Sink),
        Just(Request::Discard),
        Just(Request::Status),
        (id.clone(), proptest::option::of(any_token()))
            .prop_map(|(id, read_token)| Request::GetManifest { id, read_token }),
        (id.clone(), any::<u32>(), proptest::option::of(any_token())).prop_map(
            |(id, index, read_token)| Request::GetChunk {
                id,
                index,
                read_token
            }
        ),
        (
            id.clone(),
            0u32..1 << 30,
            1..=MAX_RUN_CHUNKS,
            proptest::option::of(any_token())
        )
            .prop_map(|(id, first, count, read_token)| Request::GetChunks {
                id,
                first,
                count,
                read_token
            }),
        id.clone().prop_map(|shard| Request::GetShard { shard }),
        id.clone().prop_map(|id| Request::Holders { id }),
        (any_token(), id.clone()).prop_map(|(token, id)| Request::StoreShards { token, id }),
        (any_token(), id.clone()).prop_map(|(token, id)| Request::Prefetch { token, id }),
        (
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(p, m)| {
                Request::Gossip {
                    proof: p,
                    message: Bytes::from(m),
                }
            }),
        (
            any_token(),
            1u8..=8,
            1u8..=8,
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of("[a-z]{1,20}/[a-z+.-]{1,30}"),
        )
            .prop_map(|(token, k, m, read_digest, media_type)| Request::Put {
                token,
                settings: PutSettings {
                    erasure: (k + m <= 16).then_some(ErasurePolicy { k, m }),
                    kind: Some(ContentKind::Media),
                    read_digest,
                    media_type,
                },
            }),
        (any_token(), id.clone(), any::<bool>()).prop_map(|(token, id, forward)| Request::Purge {
            token,
            id,
            forward
        }),
        "[a-z]{1,20}".prop_map(|r| Request::Locate {
            location: Location::Region(r)
        }),
        (any_token(), any_name(), id, any::<u32>(), any::<u32>()).prop_map(
            |(token, name, id, ttl_s, swr_s)| Request::NameSet {
                token,
                name,
                id,
                ttl_s,
                swr_s
            }
        ),
        any_name().prop_map(|name| Request::NameGet { name }),
    ]
}

proptest! {
    #[test]
    fn every_request_round_trips(request in any_request()) {
        let encoded = Bytes::from(request.encode());
        prop_assert_eq!(Request::decode(&encoded).unwrap(), request);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
        let payload = Bytes::from(bytes.clone());
        if let Some(request) = Request::decode(&payload).ok().filter(|r| r.op() != Op::Locate) {
            // Whatever decodes encodes back to the same bytes (a position's text may differ).
            prop_assert_eq!(Bytes::from(request.encode()), payload);
        }
        let _ = SinkReceipt::decode(&bytes);
        let _ = ShardDecoder::default().push(&bytes);
        let _ = ShardsHead::take(&mut bytes.clone());
        let _ = NameRecord::decode(&bytes);
    }
}
