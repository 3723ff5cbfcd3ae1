//! The requests a running node answers, and the client side of each.
//!
//! A request's REQUEST payload starts with a one-byte operation code (see `docs/PROTOCOL.md`).
//! [`NodeService`] answers the basic ones for a bare endpoint; [`server::Node`] is a whole
//! running node (roles, membership, edge cache, metrics); [`content`] fetches content from
//! several sources; [`client`] holds the client side of the management requests.

pub mod cache;
pub mod client;
pub mod coalesce;
pub mod content;
pub mod membership;
pub mod metrics;
pub mod server;
pub mod shards;
pub mod token;
pub mod wire;

pub use server::{Node, NodeError, NodeOptions};

use std::sync::Arc;

use crate::store::Store;

use bytes::{BufMut, Bytes, BytesMut};
use stoq_transport::protocol::ErrorCode;
use stoq_transport::{IncomingRequest, StoqConnection, TransportError};

/// Operation codes, the first byte of a REQUEST payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Liveness: the response is the node's id as text.
    Ping,
    /// The body comes back as it arrives, then a RESPONSE with its BLAKE3 hash.
    Echo,
    /// The body is read and dropped; the RESPONSE is its length (u64 BE) and BLAKE3 hash.
    Sink,
    /// The body is read and dropped unhashed; the RESPONSE is its length (u64 BE). This is
    /// what the transport benchmark uses, so it measures moving bytes and nothing else.
    Discard,
    /// A content's manifest, from the node's store (see [`content`]).
    GetManifest,
    /// One chunk of a content, from the node's store (see [`content`]).
    GetChunk,
    /// One shard (or chunk) blob by its id, if this node holds it.
    GetShard,
    /// Node to node: shards to hold for a content placed across origins (admin token).
    StoreShards,
    /// Who holds which shard of a content (JSON placement).
    Holders,
    /// A membership (SWIM) message between nodes; needs a node certificate.
    Gossip,
    /// Publish: the body is a file to store (admin token; origins only).
    Put,
    /// Remove a content from every edge and origin (admin token).
    Purge,
    /// Where a client should fetch from: edges nearest first, then origins.
    Locate,
    /// The node's view: peers, routes, cache, store (JSON).
    Status,
    /// An edge pulls a whole content into its cache now (admin token).
    Prefetch,
    /// Points a name at a content id, with TTL and stale-while-revalidate (admin token; origins).
    NameSet,
    /// What a name points at now (edges answer from their copy while it is fresh).
    NameGet,
}

impl Op {
    /// The code on the wire.
    pub fn code(self) -> u8 {
        match self {
            Op::Ping => 0x01,
            Op::Echo => 0x02,
            Op::Sink => 0x03,
            Op::Discard => 0x04,
            Op::GetManifest => 0x10,
            Op::GetChunk => 0x11,
            Op::GetShard => 0x12,
            Op::StoreShards => 0x13,
            Op::Holders => 0x14,
            Op::Gossip => 0x20,
            Op::Put => 0x21,
            Op::Purge => 0x22,
            Op::Locate => 0x23,
            Op::Status => 0x24,
            Op::Prefetch => 0x25,
            Op::NameSet => 0x26,
            Op::NameGet => 0x27,
        }
    }

    /// The operation for a code, if known.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0x01 => Some(Op::Ping),
            0x02 => Some(Op::Echo),
            0x03 => Some(Op::Sink),
            0x04 => Some(Op::Discard),
            0x10 => Some(Op::GetManifest),
            0x11 => Some(Op::GetChunk),
            0x12 => Some(Op::GetShard),
            0x13 => Some(Op::StoreShards),
            0x14 => Some(Op::Holders),
            0x20 => Some(Op::Gossip),
            0x21 => Some(Op::Put),
            0x22 => Some(Op::Purge),
            0x23 => Some(Op::Locate),
            0x24 => Some(Op::Status),
            0x25 => Some(Op::Prefetch),
            0x26 => Some(Op::NameSet),
            0x27 => Some(Op::NameGet),
            _ => None,
        }
    }
}

/// What a SINK answered: how many body bytes arrived and their hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkReceipt {
    /// Body bytes the node read.
    pub bytes: u64,
    /// BLAKE3 of those bytes.
    pub hash: blake3::Hash,
}

impl SinkReceipt {
    fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(40);
        out.put_u64(self.bytes);
        out.put_slice(self.hash.as_bytes());
        out.freeze()
    }

    fn decode(payload: &[u8]) -> Result<Self, TransportError> {
        let bad = || TransportError::Remote {
            code: ErrorCode::ProtocolViolation,
            reason: format!("SINK response must be 40 bytes, got {}", payload.len()),
        };
        let bytes: [u8; 8] = payload
            .get(..8)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?;
        let hash: [u8; 32] = payload
            .get(8..40)
            .ok_or_else(bad)?
            .try_into()
            .map_err(|_| bad())?;
        if payload.len() != 40 {
            return Err(bad());
        }
        Ok(SinkReceipt {
            bytes: u64::from_be_bytes(bytes),
            hash: blake3::Hash::from_bytes(hash),
        })
    }
}

/// What a node answers requests with: its id and, if it has one, its content store.
#[derive(Debug, Clone)]
pub struct NodeService {
    node_id: Arc<str>,
    store: Option<Arc<Store>>,
}

impl NodeService {
    /// A service for node `node_id`, serving content from `store` if given.
    pub fn new(node_id: impl Into<Arc<str>>, store: Option<Arc<Store>>) -> Self {
        NodeService {
            node_id: node_id.into(),
            store,
        }
    }

    /// Answers one request. Unknown operations get an ERROR frame with `BAD_REQUEST`; content
    /// requests to a node without a store get `NOT_FOUND`.
    pub async fn handle(self, req: IncomingRequest) -> Result<(), TransportError> {
        let op = req.payload.first().copied().and_then(Op::from_code);
        match (op, &self.store) {
            (Some(op @ (Op::GetManifest | Op::GetChunk)), Some(store)) => {
                content::serve(store.clone(), op, req).await
            }
            (Some(Op::GetManifest | Op::GetChunk), None) => {
                let mut req = req;
                req.reply
                    .send_error(ErrorCode::NotFound, "this node keeps no content")
                    .await
            }
            _ => basic(req, &self.node_id).await,
        }
    }
}

/// The operations that need no store; anything else is answered `BAD_REQUEST`.
pub(crate) async fn basic(mut req: IncomingRequest, node_id: &str) -> Result<(), TransportError> {
    let op = req.payload.first().copied().and_then(Op::from_code);
    match op {
        Some(Op::Ping) => {
            req.reply.send_response(node_id.to_owned()).await?;
        }
        Some(Op::Echo) => {
            let mut hasher = blake3::Hasher::new();
            while let Some(piece) = req.body.recv_data().await? {
                hasher.update(&piece);
                req.reply.send_data(piece).await?;
            }
            req.reply.send_end().await?;
            req.reply
                .send_response(Bytes::copy_from_slice(hasher.finalize().as_bytes()))
                .await?;
        }
        Some(Op::Sink) => {
            let mut hasher = blake3::Hasher::new();
            let mut bytes = 0u64;
            while let Some(piece) = req.body.recv_data().await? {
                bytes += piece.len() as u64;
                hasher.update(&piece);
            }
            let receipt = SinkReceipt {
                bytes,
                hash: hasher.finalize(),
            };
            req.reply.send_response(receipt.encode()).await?;
        }
        Some(Op::Discard) => {
            let mut bytes = 0u64;
            while let Some(piece) = req.body.recv_data().await? {
                bytes += piece.len() as u64;
            }
            req.reply
                .send_response(bytes.to_be_bytes().to_vec())
                .await?;
        }
        _ => {
            let reason = match req.payload.first() {
                Some(code) => format!("unknown operation 0x{code:02x}"),
                None => "empty request".to_owned(),
            };
            return req.reply.send_error(ErrorCode::BadRequest, &reason).await;
        }
    }
    req.reply.finish()
}

/// Asks a node for its id.
pub async fn ping(conn: &StoqConnection) -> Result<String, TransportError> {
    let answer = conn.request(vec![Op::Ping.code()]).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Sends `body` to a node's SINK and returns its receipt.
pub async fn sink(conn: &StoqConnection, body: Bytes) -> Result<SinkReceipt, TransportError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.send_request(vec![Op::Sink.code()]).await?;
    send.send_data(body).await?;
    send.send_end().await?;
    send.finish()?;
    SinkReceipt::decode(&recv.recv_response().await?)
}

/// Sends `body` to a node's DISCARD and returns how many bytes it read.
pub async fn discard(conn: &StoqConnection, body: Bytes) -> Result<u64, TransportError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.send_request(vec![Op::Discard.code()]).await?;
    send.send_data(body).await?;
    send.send_end().await?;
    send.finish()?;
    let answer = recv.recv_response().await?;
    let count: [u8; 8] = answer[..].try_into().map_err(|_| TransportError::Remote {
        code: ErrorCode::ProtocolViolation,
        reason: format!("DISCARD response must be 8 bytes, got {}", answer.len()),
    })?;
    Ok(u64::from_be_bytes(count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_codes_round_trip() {
        for op in [
            Op::Ping,
            Op::Echo,
            Op::Sink,
            Op::Discard,
            Op::GetManifest,
            Op::GetChunk,
            Op::GetShard,
            Op::StoreShards,
            Op::Holders,
            Op::Gossip,
            Op::Put,
            Op::Purge,
            Op::Locate,
            Op::Status,
            Op::Prefetch,
            Op::NameSet,
            Op::NameGet,
        ] {
            assert_eq!(Op::from_code(op.code()), Some(op));
        }
        assert_eq!(Op::from_code(0xee), None);
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
}
