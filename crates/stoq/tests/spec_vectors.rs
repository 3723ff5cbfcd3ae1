//! The test vectors docs/PROTOCOL.md gives implementers: content ids from FastCDC chunking and
//! manifests, and erasure shard ids. If one of these changes, every content id changes with
//! it, so they are pinned here.

use stoq::chunking::{erasure, ContentKind, ErasurePolicy};
use stoq::store::{PutOptions, Store};

/// The spec's input: byte `i` is `(i * 7 + i / 251) mod 256`, for `len` bytes.
fn input(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// The spec's random bytes: xorshift64 from 0x9E3779B97F4A7C15 (shift 13 left, 7 right, 17
/// left), the low byte of each state.
fn xorshift(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The spec's text: words from a 16-word list chosen by the random bytes, a newline after
/// every 8th word, a space after the others.
fn words(len: usize) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliett", "kilo", "lima", "mike", "november", "oscar", "papa",
    ];
    let mut out = Vec::with_capacity(len + 16);
    for (n, b) in xorshift(len).into_iter().enumerate() {
        if out.len() >= len {
            break;
        }
        out.extend_from_slice(WORDS[usize::from(b & 15)].as_bytes());
        out.push(if n % 8 == 7 { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn fastcdc_cuts_and_content_ids_match_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let cases = [
        (
            xorshift(1 << 20),
            ContentKind::Binary,
            &[
                96993, 169265, 45787, 64402, 66790, 88956, 88907, 33579, 174072, 35547, 46563,
                84255, 23758, 29702,
            ][..],
            "d653aba5d4a7a91fc80f9f04424b3492172d386929f186f4a09f0e4f729c6eb0",
        ),
        (
            words(200_000),
            ContentKind::Text,
            &[
                12201, 17204, 5461, 9989, 26784, 21638, 15611, 28557, 19945, 17309, 25301,
            ][..],
            "8083da6916c05acadc9ab02c5a4a475dd3325ff969ef14c55d4f7547df032180",
        ),
    ];
    for (data, kind, lengths, id) in cases {
        let report = store.put_reader(&data[..], PutOptions::default()).unwrap();
        assert_eq!(report.kind, kind, "sniffed kind");
        let manifest = store.manifest(&report.id).unwrap();
        let got: Vec<u32> = manifest.chunks.iter().map(|c| c.length).collect();
        assert_eq!(got, lengths);
        assert_eq!(report.id.to_string(), id);
    }
}

#[test]
fn erasure_shards_match_the_spec() {
    let shards = erasure::encode(&input(100), ErasurePolicy { k: 2, m: 1 }).unwrap();
    let want = [
        "00070e151c232a31383f464d545b626970777e858c939aa1a8afb6bdc4cbd2d9e0e7eef5fc030a11181f262d343b42495057",
        "5e656c737a81888f969da4abb2b9c0c7ced5dce3eaf1f8ff060d141b222930373e454c535a61686f767d848b9299a0a7aeb5",
        "5e62626666a2a2beaea2e2e6e6e2a2aebea2a2666662625eaea2a2a6e6e2e2eedea2a2a6a662627e6e62a2a6a6a2e2eefee2",
    ];
    let got: Vec<String> = shards.iter().map(|s| hex(s)).collect();
    assert_eq!(got, want);
    let shards = erasure::encode(&input(1000), ErasurePolicy { k: 3, m: 2 }).unwrap();
    let want = [
        "90c69f8d8fa8a57eefe35251cae27b29ed96dcf375391a63a968f543bd0cf035",
        "0be676afb275e1e47c204ad2f45074cc15da284da30243680e8a7b05c5e899b6",
        "a5fdc5ee396110c544c5634754bcffd1728b0aeb23e426620c2503738bb9fe23",
        "272320b313450d6533d470581e528640875ae8fa6ab50cc3aa56917c8af73e26",
        "e0e79b15fef27441dd5b9d81215bed50c3bf5d5fd7e0f8fa2c8477c83cd44bc4",
    ];
    assert!(shards.iter().all(|s| s.len() == 334));
    let got: Vec<String> = shards.iter().map(|s| blake3::hash(s).to_string()).collect();
    assert_eq!(got, want);
}
