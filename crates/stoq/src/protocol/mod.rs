//! The STOQ node protocol: one typed [`Request`] per operation, the typed answer to each, and
//! one codec for both, with no IO.
//!
//! Every exchange is one bidirectional QUIC stream carrying frames (the `stoq-protocol`
//! crate): the asker sends a REQUEST frame whose payload is an operation code and its
//! arguments, then (for operations that take one) a body as DATA frames closed by END, then
//! finishes its side. The answerer sends either an ERROR frame (a code and a reason), or, for
//! operations that answer with a body, DATA* END, and then a RESPONSE frame. Node and client
//! both use this module, so they cannot disagree on a byte; `docs/PROTOCOL.md` specifies the
//! same for implementers in other languages.
//!
//! The requests, by operation code:
//!
//! | code | request | arguments after the code | body | answer |
//! | --- | --- | --- | --- | --- |
//! | 0x01 | [`Request::Ping`] | none | none | RESPONSE: the node id, 64 hex characters |
//! | 0x02 | [`Request::Echo`] | none | required | the body back, then RESPONSE: its BLAKE3 |
//! | 0x03 | [`Request::Sink`] | none | required | RESPONSE: [`SinkReceipt`] (length, BLAKE3) |
//! | 0x04 | [`Request::Discard`] | none | required | RESPONSE: the length (u64) |
//! | 0x10 | [`Request::GetManifest`] | id, [read token] | none | body: manifest; RESPONSE: [`ManifestMeta`] (restriction, media type) |
//! | 0x11 | [`Request::GetChunk`] | id, u32 index, [read token] | none | body: the chunk; empty RESPONSE |
//! | 0x12 | [`Request::GetShard`] | shard id | none | body: the shard; empty RESPONSE |
//! | 0x13 | [`Request::StoreShards`] | admin token or node proof, id | required ([`shards`]) | [`StoreShardsAnswer`] |
//! | 0x14 | [`Request::Holders`] | id | none | [`Placement`] |
//! | 0x15 | [`Request::GetChunks`] | id, u32 first, u32 count, [read token] | none | body: the chunks back to back; empty RESPONSE |
//! | 0x20 | [`Request::Gossip`] | membership proof (32 bytes), a SWIM message | none | empty RESPONSE |
//! | 0x21 | [`Request::Put`] | admin token, [`PutSettings`] | required (the file) | [`PutAnswer`] |
//! | 0x22 | [`Request::Purge`] | admin token or node proof, id, forward flag | none | [`PurgeAnswer`] |
//! | 0x23 | [`Request::Locate`] | a [`Location`] as text | none | [`LocateAnswer`] |
//! | 0x24 | [`Request::Status`] | none | none | [`StatusAnswer`] |
//! | 0x25 | [`Request::Prefetch`] | admin token, id | none | [`PrefetchAnswer`] |
//! | 0x26 | [`Request::NameSet`] | admin token, TTL, SWR, id, name | none | [`NameSetAnswer`] |
//! | 0x27 | [`Request::NameGet`] | name | none | RESPONSE: a [`NameRecord`] encoding |
//!
//! Integers are big-endian; ids are 32 raw bytes. Tokens (admin and read) are length-prefixed
//! with one byte (`u8 len`, 1 to 255, then the token's UTF-8 bytes). JSON answers are UTF-8
//! JSON objects with exactly the fields of their type here.

mod answers;
mod meta;
mod request;
pub mod shards;

#[cfg(test)]
mod tests;

pub use answers::{
    CacheStats, ConnectionCounts, Distribution, HolderOutcome, LocateAnswer, NameSetAnswer,
    PeerStatus, PrefetchAnswer, PurgeAnswer, PurgeFailure, PutAnswer, RouteStatus, SinkReceipt,
    Source, StatusAnswer, StoreShardsAnswer, StoreStatus, Window,
};
pub use meta::{valid_media_type, ManifestMeta, MAX_MEDIA_TYPE_LEN};
pub use request::{read_digest, Location, PutSettings, Request};
pub use shards::{Holder, Placement};
pub use stoq_protocol::{busy_reason, retry_after, unavailable_reason, ErrorCode};

pub use crate::edge::names::NameRecord;

/// The longest token (admin or read) the wire carries: its length prefix is one byte.
pub const MAX_TOKEN_LEN: usize = 255;

/// The largest manifest a client accepts (a 1 TiB object in 64 KiB chunks needs 576 MiB; this
/// allows 16 M chunks of the smallest entry).
pub const MAX_MANIFEST_BYTES: usize = 64 << 20;

/// The most chunks one GET_CHUNKS asks for (with 64 KiB chunks, 64 MiB; an asker keeps runs
/// far shorter so a stall costs little).
pub const MAX_RUN_CHUNKS: u32 = 1024;

/// The longest JSON answer a client accepts.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Operation codes, the first byte of a REQUEST payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// Liveness.
    Ping = 0x01,
    /// The body comes back, then its hash.
    Echo = 0x02,
    /// The body is read and hashed.
    Sink = 0x03,
    /// The body is read and counted (what the transport benchmark measures).
    Discard = 0x04,
    /// A content's manifest.
    GetManifest = 0x10,
    /// One chunk of a content.
    GetChunk = 0x11,
    /// One shard blob by id.
    GetShard = 0x12,
    /// A run of chunks of a content, as one body.
    GetChunks = 0x15,
    /// Shards to hold for a content placed across origins.
    StoreShards = 0x13,
    /// Who holds which shard of a content.
    Holders = 0x14,
    /// A membership (SWIM) message.
    Gossip = 0x20,
    /// Publish a file.
    Put = 0x21,
    /// Remove a content from every node.
    Purge = 0x22,
    /// Where a client should fetch from.
    Locate = 0x23,
    /// The node's view of the network.
    Status = 0x24,
    /// An edge pulls a content into its cache.
    Prefetch = 0x25,
    /// Point a name at a content.
    NameSet = 0x26,
    /// What a name points at.
    NameGet = 0x27,
}

/// Every operation, in code order.
pub const ALL_OPS: [Op; 18] = [
    Op::Ping,
    Op::Echo,
    Op::Sink,
    Op::Discard,
    Op::GetManifest,
    Op::GetChunk,
    Op::GetShard,
    Op::StoreShards,
    Op::Holders,
    Op::GetChunks,
    Op::Gossip,
    Op::Put,
    Op::Purge,
    Op::Locate,
    Op::Status,
    Op::Prefetch,
    Op::NameSet,
    Op::NameGet,
];

impl Op {
    /// The code on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The operation for a code, if known.
    pub fn from_code(code: u8) -> Option<Self> {
        ALL_OPS.iter().copied().find(|op| op.code() == code)
    }

    /// Whether the request carries a body (DATA* END) after its REQUEST frame. Operations
    /// without one never read past the REQUEST frame.
    pub fn takes_body(self) -> bool {
        matches!(
            self,
            Op::Echo | Op::Sink | Op::Discard | Op::Put | Op::StoreShards
        )
    }
}

/// Why a request payload could not be decoded: the ERROR frame the answerer sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DecodeError {
    /// The code of the ERROR frame (BAD_REQUEST, or UNAUTHORIZED for a missing admin token).
    pub code: ErrorCode,
    /// What was wrong.
    pub reason: String,
}

impl DecodeError {
    pub(crate) fn bad(reason: impl Into<String>) -> Self {
        DecodeError {
            code: ErrorCode::BadRequest,
            reason: reason.into(),
        }
    }
}
