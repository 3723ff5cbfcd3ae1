//! Erasure coding across nodes: where an origin places each chunk's K+M shards, how shards
//! travel to their holders, and how a holder rebuilds a chunk from any K of them.
//!
//! Placement uses the pure planner ([`crate::chunking::placement::plan`]) over the live origins:
//! shard `i` of each chunk goes to a distinct node, regions spread first. The resulting
//! [`Placement`] is stored with the content on every holder, so any of them can answer for it.

use std::net::SocketAddrV6;

use serde::{Deserialize, Serialize};
use stoq_transport::NodeId;

use super::membership::Member;
use crate::chunking::placement::{plan, PlacementError, PlacementNode, Redundancy};
use crate::chunking::{ChunkId, ErasurePolicy, Manifest, MAX_CHUNK_LEN};

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
    /// The holder indexes that hold anything.
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

/// Plans where each chunk's shards go among `origins` (capacity-weighted, regions spread).
pub fn plan_placement(
    origins: &[Member],
    manifest: &Manifest,
    policy: ErasurePolicy,
) -> Result<Placement, PlacementError> {
    let nodes: Vec<PlacementNode> = origins
        .iter()
        .map(|m| PlacementNode {
            id: m.node_id().to_string(),
            region: m.region.clone(),
            capacity: f64::from(m.capacity_mbps.max(1)),
            healthy: true,
        })
        .collect();
    let items: Vec<ChunkId> = manifest.chunks.iter().map(|c| c.id).collect();
    let planned = plan(&items, &nodes, Redundancy::Erasure(policy))?;
    let index = |id: &str| {
        nodes
            .iter()
            .position(|n| n.id == id)
            .expect("planned on these nodes") as u16
    };
    Ok(Placement {
        nodes: origins
            .iter()
            .map(|m| Holder {
                id: m.node_id(),
                addr: m.addr,
            })
            .collect(),
        stripes: planned
            .iter()
            .map(|stripe| stripe.iter().map(|id| index(id)).collect())
            .collect(),
    })
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
            let id = crate::chunking::Hash32(self.buf[..32].try_into().expect("32 bytes"));
            out.push((id, self.buf[36..end].to_vec()));
            self.buf.drain(..end);
        }
    }

    /// Whether the body ended on a shard boundary.
    pub fn is_clean(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        bad.extend_from_slice(&(MAX_CHUNK_LEN + 1).to_be_bytes());
        assert!(ShardDecoder::default().push(&bad).is_err());
    }

    proptest! {
        #[test]
        fn the_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut d = ShardDecoder::default();
            let _ = d.push(&bytes);
        }
    }
}
