//! The typed answers: what each RESPONSE carries, shared by the node that writes it and the
//! client that reads it. JSON answers serialise with exactly these fields.

use std::collections::BTreeMap;
use std::net::SocketAddrV6;

use serde::{Deserialize, Serialize};
use stoq_protocol::NodeId;

use crate::chunking::{ContentId, ContentKind};
use crate::config::Role;

/// What SINK answers: how many body bytes arrived and their hash (`u64 | 32 bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkReceipt {
    /// Body bytes the node read.
    pub bytes: u64,
    /// BLAKE3 of those bytes.
    pub hash: blake3::Hash,
}

impl SinkReceipt {
    /// The RESPONSE payload: 40 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40);
        out.extend_from_slice(&self.bytes.to_be_bytes());
        out.extend_from_slice(self.hash.as_bytes());
        out
    }

    /// Decodes a RESPONSE payload, which must be exactly 40 bytes.
    pub fn decode(payload: &[u8]) -> Result<Self, String> {
        let bytes: [u8; 40] = payload
            .try_into()
            .map_err(|_| format!("SINK response must be 40 bytes, got {}", payload.len()))?;
        Ok(SinkReceipt {
            bytes: u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes")),
            hash: blake3::Hash::from_bytes(bytes[8..].try_into().expect("32 bytes")),
        })
    }
}

/// PUT's answer: what the origin stored, and where the shards went for erasure-coded content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutAnswer {
    /// The content id.
    pub id: ContentId,
    /// Bytes of content.
    pub size: u64,
    /// Chunks in the manifest.
    pub chunks: usize,
    /// Chunks the origin did not have before.
    pub new_chunks: usize,
    /// Bytes written for new blobs.
    pub new_bytes: u64,
    /// The chunking profile used (`text`, `binary` or `media`).
    pub kind: ContentKind,
    /// For erasure-coded content: how the shards were placed across origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Distribution>,
}

/// How an erasure-coded content was spread across origins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Whether the shards went to other origins (false: they all stay on the publisher).
    pub distributed: bool,
    /// Why not, when they did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Each holder, the publisher first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<HolderOutcome>,
}

/// One holder of a distributed content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HolderOutcome {
    /// The holder.
    pub id: NodeId,
    /// Shards sent to it (absent for the publisher, which keeps its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,
    /// Whether it confirmed them.
    pub ok: bool,
    /// Why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// PURGE's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurgeAnswer {
    /// The content.
    pub id: ContentId,
    /// Entries removed on the node asked: cache entries (manifest and chunks) on an edge; on
    /// an origin 1 for the stored object plus 1 for shards it held.
    pub removed_here: u64,
    /// Peers that confirmed the forwarded purge.
    pub reached: Vec<NodeId>,
    /// Peers that did not, and why.
    pub failed: Vec<PurgeFailure>,
}

/// A peer a forwarded purge did not reach.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurgeFailure {
    /// The peer.
    pub id: NodeId,
    /// What happened.
    pub reason: String,
}

/// PREFETCH's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefetchAnswer {
    /// The content.
    pub id: ContentId,
    /// Its chunks, all now in the edge's cache.
    pub chunks: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// NAME_SET's answer: the record as the origin now keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameSetAnswer {
    /// The name.
    pub name: String,
    /// The content it points at.
    pub id: ContentId,
    /// Seconds an edge serves its copy without asking.
    pub ttl_s: u32,
    /// Seconds after that it may serve its copy while refreshing it.
    pub swr_s: u32,
    /// Increases with each update.
    pub version: u64,
}

/// STORE_SHARDS's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreShardsAnswer {
    /// The content.
    pub id: ContentId,
    /// Shards the holder wrote (those it already had are not counted).
    pub held: usize,
}

/// LOCATE's answer: where to fetch from, best first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocateAnswer {
    /// Edges nearest (and not overloaded) first, then every origin.
    pub sources: Vec<Source>,
}

/// A place to fetch content from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    /// The node's id (to pin when connecting).
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddrV6,
    /// What it is.
    pub role: Role,
    /// Its region.
    pub region: String,
    /// Its last reported load, 0 to 1.
    pub load: f32,
}

/// STATUS's answer: the node's view of itself and the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusAnswer {
    /// The node's id.
    pub node_id: NodeId,
    /// Where it listens.
    pub addr: SocketAddrV6,
    /// Its role.
    pub role: Role,
    /// Its region.
    pub region: String,
    /// Its position, `[lat, lon]`, if configured.
    pub geo: Option<[f64; 2]>,
    /// Its smoothed load, 0 to 1.
    pub load: f64,
    /// Live peers.
    pub peers: Vec<PeerStatus>,
    /// The best route to each peer.
    pub routes: Vec<RouteStatus>,
    /// Membership changes seen since start.
    pub membership_changes: u64,
    /// Cache counters (edges; null elsewhere).
    pub cache: Option<CacheStats>,
    /// Cache hits (0 where there is no cache), for scripts that want one number.
    pub cache_hits: u64,
    /// The content store (origins; null elsewhere).
    pub store: Option<StoreStatus>,
    /// Connection counters.
    pub connections: ConnectionCounts,
    /// Requests answered, by kind.
    pub requests: BTreeMap<String, u64>,
    /// Content bytes sent.
    pub bytes_out: u64,
    /// Content bytes received.
    pub bytes_in: u64,
    /// Seconds since the node started (0 from nodes that predate it).
    #[serde(default)]
    pub uptime_s: u64,
    /// Traffic and errors over about the last minute.
    #[serde(default)]
    pub last_minute: Window,
}

/// What a node did over a recent window of time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// How long the window is, in seconds (shorter than a minute just after start).
    pub seconds: f64,
    /// Content bytes received in it.
    pub bytes_in: u64,
    /// Content bytes sent in it.
    pub bytes_out: u64,
    /// Requests answered in it (STOQ and HTTP).
    pub requests: u64,
    /// Refusals and failures in it: BUSY, wrong tokens, refused connections, failed
    /// handshakes, stalled streams, full request buffers, HTTP answers 5xx.
    pub errors: u64,
}

/// One live peer in a STATUS answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// Its id.
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddrV6,
    /// Its role.
    pub role: Role,
    /// Its region.
    pub region: String,
    /// Its position, if it announced one.
    pub geo: Option<[f64; 2]>,
    /// The load it last reported.
    pub load: f32,
    /// This node's measured RTT to it, if connected.
    pub rtt_ms: Option<f64>,
    /// Throughput this node observed pulling from it, if it has.
    pub throughput_mbps: Option<f64>,
}

/// The best route to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStatus {
    /// The peer's id.
    pub to: String,
    /// Node ids along the route, this node first.
    pub path: Vec<String>,
    /// Sum of RTTs along it.
    pub latency_ms: f64,
    /// Its balanced cost.
    pub cost: f64,
}

/// Counters of an edge cache since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that were not, and so fetched upstream.
    pub misses: u64,
    /// Lookups that were not, but joined a fetch of the same thing already under way (no
    /// upstream request of their own).
    #[serde(default)]
    pub coalesced: u64,
    /// Entries evicted to stay within the bound.
    pub evictions: u64,
    /// Entries removed by purges.
    pub purged: u64,
    /// Bytes held.
    pub used_bytes: u64,
    /// The bound.
    pub capacity_bytes: u64,
}

/// An origin's store in a STATUS answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// Contents stored.
    pub objects: u64,
    /// Their bytes as published.
    pub logical_bytes: u64,
    /// Bytes on disk after deduplication.
    pub stored_bytes: u64,
    /// logical / stored.
    pub dedup_ratio: f64,
}

/// Connection counters in a STATUS answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionCounts {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused at `max_connections`.
    pub refused_limit: u64,
    /// Incoming handshakes that failed.
    pub failed_handshakes: u64,
    /// Accepted connections open now.
    pub open: u64,
    /// Request streams reset because the peer stalled (`transport.stall_timeout_ms`).
    #[serde(default)]
    pub stalled_streams: u64,
    /// Requests answered BUSY because the request buffers were full.
    #[serde(default)]
    pub request_buffers_full: u64,
}
