//! Erasure coding across nodes, on the wire: the [`Placement`] (HOLDERS' answer, and part of
//! a STORE_SHARDS body), and the STORE_SHARDS body itself.
//!
//! A STORE_SHARDS body is a head, then the shards:
//! - the head: three blocks, each `u32 length | bytes` — the manifest encoding, the placement
//!   as JSON, and the read restriction (empty for open content, else 32 bytes); a block over
//!   [`MAX_HEAD_BLOCK`] bytes is refused;
//! - then any number of shards, each `id (32) | u32 length | bytes`, with a length of 1 to
//!   [`MAX_CHUNK_LEN`]; the body must end on a shard boundary.

use std::net::SocketAddrV6;

use serde::{Deserialize, Serialize};
use stoq_protocol::NodeId;

use crate::chunking::{ChunkId, ErasurePolicy, Hash32, Manifest, MAX_CHUNK_LEN};

/// A node that holds shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Its node id.
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddrV6,
}

/// Who holds which shard of every chunk of one content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The holders.
    pub nodes: Vec<Holder>,
    /// For chunk `c`, `stripes[c][i]` is the index in `nodes` of the holder of shard `i`.
    pub stripes: Vec<Vec<u16>>,
}

impl Placement {
    /// The (chunk, shard) pairs that holder `holder` (an index in `nodes`) holds.
    pub fn shards_of(&self, holder: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.stripes
            .iter()
            .enumerate()
            .flat_map(move |(c, stripe)| {
                stripe
                    .iter()
                    .enumerate()
                    .filter(move |(_, &h)| usize::from(h) == holder)
                    .map(move |(i, _)| (c, i))
            })
    }

    /// Checks the placement fits `manifest` and `policy` (a peer sent it).
    pub fn check(&self, manifest: &Manifest, policy: ErasurePolicy) -> Result<(), String> {
        if self.stripes.len() != manifest.chunks.len() {
            return Err("placement and manifest disagree on the number of chunks".into());
        }
        let ok = self.stripes.iter().all(|s| {
            s.len() == policy.total() && s.iter().all(|&h| usize::from(h) < self.nodes.len())
        });
        if ok {
            Ok(())
        } else {
            Err("a placement stripe is malformed".into())
        }
    }
}

/// The longest block (manifest or placement) a STORE_SHARDS head may carry.
pub const MAX_HEAD_BLOCK: usize = 64 << 20;

/// The head of a STORE_SHARDS body, as raw blocks (the node decodes and checks them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardsHead {
    /// The manifest's encoding.
    pub manifest: Vec<u8>,
    /// The placement as JSON.
    pub placement: Vec<u8>,
    /// The read-token digest, for restricted content.
    pub restriction: Option<[u8; 32]>,
}

impl ShardsHead {
    /// The head's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let restriction: &[u8] = self.restriction.as_ref().map_or(&[], |d| &d[..]);
        let mut out = Vec::new();
        for block in [&self.manifest[..], &self.placement[..], restriction] {
            out.extend_from_slice(&(block.len() as u32).to_be_bytes());
            out.extend_from_slice(block);
        }
        out
    }

    /// Takes a whole head off the front of `buf` once it has all arrived: `None` while more
    /// is needed, an error for an oversized block or a restriction that is not 32 bytes.
    pub fn take(buf: &mut Vec<u8>) -> Option<Result<ShardsHead, String>> {
        let mut at = 0;
        let mut blocks: Vec<&[u8]> = Vec::with_capacity(3);
        while blocks.len() < 3 {
            let len = u32::from_be_bytes(buf.get(at..at + 4)?.try_into().ok()?) as usize;
            if len > MAX_HEAD_BLOCK {
                return Some(Err(format!("a block of {len} bytes is over the limit")));
            }
            blocks.push(buf.get(at + 4..at + 4 + len)?);
            at += 4 + len;
        }
        let restriction = match blocks[2].len() {
            0 => None,
            32 => Some(blocks[2].try_into().expect("32 bytes")),
            _ => return Some(Err("a read restriction is 32 bytes".into())),
        };
        let head = ShardsHead {
            manifest: blocks[0].to_vec(),
            placement: blocks[1].to_vec(),
            restriction,
        };
        buf.drain(..at);
        Some(Ok(head))
    }
}

/// Encodes one shard for a STORE_SHARDS body: `id (32) | u32 length | bytes`.
pub fn encode_shard(id: &ChunkId, bytes: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&id.0);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Decodes the shards of a STORE_SHARDS body as it arrives in pieces, refusing any shard
/// longer than the longest possible chunk.
#[derive(Debug, Default)]
pub struct ShardDecoder {
    buf: Vec<u8>,
}

impl ShardDecoder {
    /// Adds a piece of the body; returns the shards it completed.
    pub fn push(&mut self, piece: &[u8]) -> Result<Vec<(ChunkId, Vec<u8>)>, String> {
        self.buf.extend_from_slice(piece);
        let mut out = Vec::new();
        loop {
            if self.buf.len() < 36 {
                return Ok(out);
            }
            let len = u32::from_be_bytes(self.buf[32..36].try_into().expect("4 bytes"));
            if len == 0 || len > MAX_CHUNK_LEN {
                return Err(format!("shard length {len} outside 1..={MAX_CHUNK_LEN}"));
            }
            let end = 36 + len as usize;
            if self.buf.len() < end {
                return Ok(out);
            }
            let id = Hash32(self.buf[..32].try_into().expect("32 bytes"));
            out.push((id, self.buf[36..end].to_vec()));
            self.buf.drain(..end);
        }
    }

    /// Whether the body ended on a shard boundary.
    pub fn is_clean(&self) -> bool {
        self.buf.is_empty()
    }
}
