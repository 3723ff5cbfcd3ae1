//! Manifests: the ordered list of chunks that makes up one piece of content, and the ids.
//!
//! Binary encoding, version 1 (all integers big-endian; specified in docs/PROTOCOL.md):
//!
//! ```text
//! "STQM" | version u8 = 1 | kind u8 | erasure k u8 | erasure m u8 | total size u64 | count u32
//! then per chunk:  chunk id [32] | length u32
//!                  and, when k > 0: shard length u32 | k+m shard ids [32 each]
//! ```
//!
//! Offsets are not stored: chunk `i` starts where chunk `i-1` ends, and the lengths must add up
//! to the total size. The content id is the BLAKE3 hash of this encoding.

use std::fmt;
use std::str::FromStr;

pub use super::erasure::ErasurePolicy;
use super::profile::{ContentKind, MAX_CHUNK_LEN};

const MAGIC: &[u8; 4] = b"STQM";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 20;

/// A BLAKE3 hash naming a chunk, a shard or a piece of content. Text form: 64 lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash32(pub [u8; 32]);

/// The id of a chunk or shard: BLAKE3 of its bytes.
pub type ChunkId = Hash32;
/// The id of a piece of content: BLAKE3 of its manifest's encoding.
pub type ContentId = Hash32;

impl Hash32 {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Hash32(*blake3::hash(bytes).as_bytes())
    }

    /// Whether `bytes` hash to this id.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        Self::of(bytes) == *self
    }
}

impl From<blake3::Hash> for Hash32 {
    fn from(h: blake3::Hash) -> Self {
        Hash32(*h.as_bytes())
    }
}

impl fmt::Display for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&stoq_protocol::encode_hex32(&self.0))
    }
}

impl fmt::Debug for Hash32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_string()[..12])
    }
}

impl serde::Serialize for Hash32 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Hash32 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for Hash32 {
    type Err = ManifestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        stoq_protocol::decode_hex32(s)
            .map(Hash32)
            .ok_or_else(|| ManifestError::BadId(s.trim().to_owned()))
    }
}

/// One chunk in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkEntry {
    /// BLAKE3 of the chunk's bytes.
    pub id: ChunkId,
    /// Where the chunk starts in the content.
    pub offset: u64,
    /// Its length.
    pub length: u32,
    /// With erasure coding: the length of each shard and the ids of the k+m shards.
    pub shards: Option<ShardSet>,
}

/// The shards of one erasure-coded chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSet {
    /// Bytes per shard (the chunk split in k, padded to an even length).
    pub shard_len: u32,
    /// Ids of data shards then parity shards.
    pub ids: Vec<ChunkId>,
}

/// What a piece of content is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// How the content was profiled for chunking.
    pub kind: ContentKind,
    /// Total size in bytes.
    pub size: u64,
    /// Erasure coding, if any.
    pub erasure: Option<ErasurePolicy>,
    /// The chunks, in order.
    pub chunks: Vec<ChunkEntry>,
}

/// Why bytes are not a manifest, or text not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Shorter than its header or its declared entries.
    #[error("manifest truncated: {0}")]
    Truncated(&'static str),
    /// Not a STOQ manifest.
    #[error("not a STOQ manifest (bad magic)")]
    BadMagic,
    /// A version this build does not read.
    #[error("manifest version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u8),
    /// A field out of range.
    #[error("invalid manifest: {0}")]
    Invalid(String),
    /// Text that is not a 64-hex-digit id.
    #[error("{0:?} is not an id (expected 64 hex digits)")]
    BadId(String),
}

impl Manifest {
    /// The content id: BLAKE3 of the encoding.
    pub fn content_id(&self) -> ContentId {
        Hash32::of(&self.encode())
    }

    /// How many bytes [`Manifest::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let per_chunk = 36 + self.erasure.map_or(0, |e| 4 + 32 * e.total());
        HEADER_LEN + per_chunk * self.chunks.len()
    }

    /// The version-1 binary encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(self.kind.code());
        let (k, m) = self.erasure.map_or((0, 0), |e| (e.k, e.m));
        out.push(k);
        out.push(m);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&(self.chunks.len() as u32).to_be_bytes());
        for c in &self.chunks {
            out.extend_from_slice(&c.id.0);
            out.extend_from_slice(&c.length.to_be_bytes());
            if let Some(shards) = &c.shards {
                out.extend_from_slice(&shards.shard_len.to_be_bytes());
                for id in &shards.ids {
                    out.extend_from_slice(&id.0);
                }
            }
        }
        out
    }

    /// Decodes and checks an encoding. Malformed input gives an error, never a panic, and
    /// nothing is allocated beyond what the input's own length can fill.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.len() < HEADER_LEN {
            return Err(ManifestError::Truncated("shorter than the 20-byte header"));
        }
        if &bytes[..4] != MAGIC {
            return Err(ManifestError::BadMagic);
        }
        if bytes[4] != VERSION {
            return Err(ManifestError::UnsupportedVersion(bytes[4]));
        }
        let kind = ContentKind::from_code(bytes[5])
            .ok_or_else(|| ManifestError::Invalid(format!("unknown content kind {}", bytes[5])))?;
        let erasure = match (bytes[6], bytes[7]) {
            (0, 0) => None,
            (k, m) => {
                let e = ErasurePolicy { k, m };
                e.validate().map_err(ManifestError::Invalid)?;
                Some(e)
            }
        };
        let size = u64::from_be_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let count = u32::from_be_bytes(bytes[16..20].try_into().expect("4 bytes")) as usize;
        let per_chunk = 36 + erasure.map_or(0, |e| 4 + 32 * e.total());
        let body = &bytes[HEADER_LEN..];
        if body.len() / per_chunk < count {
            return Err(ManifestError::Truncated(
                "fewer chunk entries than declared",
            ));
        }
        if body.len() != count * per_chunk {
            return Err(ManifestError::Invalid(
                "bytes after the last chunk entry".into(),
            ));
        }
        let mut chunks = Vec::with_capacity(count);
        let mut offset = 0u64;
        for entry in body.chunks_exact(per_chunk) {
            let id = Hash32(entry[..32].try_into().expect("32 bytes"));
            let length = u32::from_be_bytes(entry[32..36].try_into().expect("4 bytes"));
            if length == 0 || length > MAX_CHUNK_LEN {
                return Err(ManifestError::Invalid(format!(
                    "chunk length {length} outside 1..={MAX_CHUNK_LEN}"
                )));
            }
            let shards = match erasure {
                None => None,
                Some(e) => {
                    let shard_len = u32::from_be_bytes(entry[36..40].try_into().expect("4 bytes"));
                    let expected = super::erasure::shard_len(length as usize, e.k) as u32;
                    if shard_len != expected {
                        return Err(ManifestError::Invalid(format!(
                            "shard length {shard_len} does not fit chunk length {length} with k = {}",
                            e.k
                        )));
                    }
                    let ids = entry[40..]
                        .chunks_exact(32)
                        .map(|s| Hash32(s.try_into().expect("32 bytes")))
                        .collect();
                    Some(ShardSet { shard_len, ids })
                }
            };
            chunks.push(ChunkEntry {
                id,
                offset,
                length,
                shards,
            });
            offset += u64::from(length);
        }
        if offset != size {
            return Err(ManifestError::Invalid(format!(
                "chunk lengths add up to {offset}, not the size {size}"
            )));
        }
        Ok(Manifest {
            kind,
            size,
            erasure,
            chunks,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(erasure: Option<ErasurePolicy>) -> Manifest {
        let lengths = [1000u32, 70_000, 5];
        let mut offset = 0;
        let chunks = lengths
            .iter()
            .enumerate()
            .map(|(i, &length)| {
                let e = ChunkEntry {
                    id: Hash32::of(&[i as u8]),
                    offset,
                    length,
                    shards: erasure.map(|e| ShardSet {
                        shard_len: crate::chunking::erasure::shard_len(length as usize, e.k) as u32,
                        ids: (0..e.total())
                            .map(|s| Hash32::of(&[i as u8, s as u8]))
                            .collect(),
                    }),
                };
                offset += u64::from(length);
                e
            })
            .collect();
        Manifest {
            kind: ContentKind::Text,
            size: offset,
            erasure,
            chunks,
        }
    }

    #[test]
    fn manifests_round_trip_with_and_without_erasure() {
        for erasure in [None, Some(ErasurePolicy { k: 4, m: 2 })] {
            let m = sample(erasure);
            assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
            assert_eq!(m.encoded_len(), m.encode().len());
        }
        let empty = Manifest {
            kind: ContentKind::Binary,
            size: 0,
            erasure: None,
            chunks: vec![],
        };
        assert_eq!(Manifest::decode(&empty.encode()).unwrap(), empty);
    }

    #[test]
    fn content_ids_have_a_text_form_and_differ_by_content() {
        let a = sample(None).content_id();
        assert_eq!(a.to_string().parse::<Hash32>().unwrap(), a);
        assert_ne!(a, sample(Some(ErasurePolicy { k: 2, m: 1 })).content_id());
        assert!("zz".parse::<Hash32>().is_err());
    }

    #[test]
    fn malformed_manifests_are_named_errors() {
        let good = sample(None).encode();
        assert!(matches!(
            Manifest::decode(&good[..10]),
            Err(ManifestError::Truncated(_))
        ));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Manifest::decode(&bad), Err(ManifestError::BadMagic));
        let mut bad = good.clone();
        bad[4] = 9;
        assert_eq!(
            Manifest::decode(&bad),
            Err(ManifestError::UnsupportedVersion(9))
        );
        let mut bad = good.clone();
        bad[8..16].copy_from_slice(&1u64.to_be_bytes());
        assert!(matches!(
            Manifest::decode(&bad),
            Err(ManifestError::Invalid(_))
        ));
        // A count of four billion entries in a 20-byte input allocates nothing.
        let mut huge = good[..HEADER_LEN].to_vec();
        huge[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Manifest::decode(&huge),
            Err(ManifestError::Truncated(_))
        ));
    }

    #[test]
    fn erasure_text_form() {
        assert_eq!(
            "4+2".parse::<ErasurePolicy>().unwrap(),
            ErasurePolicy { k: 4, m: 2 }
        );
        assert!("4".parse::<ErasurePolicy>().is_err());
        assert!("0+2".parse::<ErasurePolicy>().is_err());
        assert!("4+x".parse::<ErasurePolicy>().is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Manifest::decode(&bytes);
        }

        #[test]
        fn headers_with_garbage_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..600), k in 0u8..4, m in 0u8..3, count in 0u32..20) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&[VERSION, 0, k, m]);
            bytes.extend_from_slice(&0u64.to_be_bytes());
            bytes.extend_from_slice(&count.to_be_bytes());
            bytes.extend_from_slice(&body);
            if let Ok(m) = Manifest::decode(&bytes) {
                prop_assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
            }
        }
    }
}
