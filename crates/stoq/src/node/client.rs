//! The client side of the node-management requests: publish, purge, prefetch, locate, status.

use std::net::SocketAddrV6;
use std::path::Path;

use serde::Deserialize;
use stoq_transport::{NodeId, StoqConnection, TransportError};

use super::membership::Role;
use super::wire;
use super::Op;
use crate::chunking::ContentId;
use crate::store::PutOptions;

/// Longest JSON answer accepted from a node.
const MAX_ANSWER: usize = 16 << 20;

fn json(answer: &[u8]) -> Result<serde_json::Value, TransportError> {
    if answer.len() > MAX_ANSWER {
        return Err(TransportError::UnexpectedEnd("answer too large"));
    }
    serde_json::from_slice(answer).map_err(|e| TransportError::Remote {
        code: stoq_transport::protocol::ErrorCode::ProtocolViolation,
        reason: format!("the node's answer is not JSON: {e}"),
    })
}

/// Uploads the file at `path` to an origin; returns the node's report (`id`, `size`,
/// `chunks`, `new_chunks`, `new_bytes`, `kind`).
pub async fn publish(
    conn: &StoqConnection,
    token: &str,
    path: &Path,
    options: &PutOptions,
) -> Result<serde_json::Value, TransportError> {
    publish_restricted(conn, token, path, options, None).await
}

/// [`publish`], with reads of the content restricted to holders of `read_token`.
pub async fn publish_restricted(
    conn: &StoqConnection,
    token: &str,
    path: &Path,
    options: &PutOptions,
    read_token: Option<&str>,
) -> Result<serde_json::Value, TransportError> {
    let digest = read_token.map(wire::read_digest);
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|source| TransportError::Io {
            what: "cannot open",
            path: path.display().to_string(),
            source,
        })?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let sent = async {
        send.send_request(wire::put_request(token, options, digest.as_ref()))
            .await?;
        send.send_data_from(&mut file).await?;
        send.send_end().await?;
        send.finish()
    }
    .await;
    // A node that refuses (a wrong token, not an origin) answers before reading the body and
    // stops the stream; its answer says why, so read it before reporting the send error.
    let answer = recv.recv_response().await;
    match (sent, answer) {
        (_, Ok(answer)) => json(&answer),
        (_, Err(e @ TransportError::Remote { .. })) | (Ok(()), Err(e)) => Err(e),
        (Err(e), Err(_)) => Err(e),
    }
}

/// Purges a content from the whole network through one node.
pub async fn purge(
    conn: &StoqConnection,
    token: &str,
    id: &ContentId,
) -> Result<serde_json::Value, TransportError> {
    json(&conn.request(wire::purge_request(token, id, true)).await?)
}

/// Asks an edge to pull a content into its cache now.
pub async fn prefetch(
    conn: &StoqConnection,
    token: &str,
    id: &ContentId,
) -> Result<serde_json::Value, TransportError> {
    json(&conn.request(wire::prefetch_request(token, id)).await?)
}

/// Points `name` at `id` on an origin.
pub async fn set_name(
    conn: &StoqConnection,
    token: &str,
    name: &str,
    id: &ContentId,
    ttl_s: u32,
    swr_s: u32,
) -> Result<serde_json::Value, TransportError> {
    json(
        &conn
            .request(wire::name_set_request(token, name, id, ttl_s, swr_s))
            .await?,
    )
}

/// What `name` points at, as `conn`'s node answers it.
pub async fn resolve_name(
    conn: &StoqConnection,
    name: &str,
) -> Result<crate::edge::names::NameRecord, TransportError> {
    let answer = conn.request(wire::name_get_request(name)).await?;
    let record =
        crate::edge::names::NameRecord::decode(&answer).map_err(|e| TransportError::Remote {
            code: stoq_transport::protocol::ErrorCode::ProtocolViolation,
            reason: e.to_string(),
        })?;
    if record.name != name {
        return Err(TransportError::Remote {
            code: stoq_transport::protocol::ErrorCode::ProtocolViolation,
            reason: format!(
                "asked for {name:?}, the node answered for {:?}",
                record.name
            ),
        });
    }
    Ok(record)
}

/// A node's status document.
pub async fn status(conn: &StoqConnection) -> Result<serde_json::Value, TransportError> {
    json(&conn.request(vec![Op::Status.code()]).await?)
}

/// A place to fetch content from, as LOCATE answers it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Source {
    /// The node's id (to pin when connecting).
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddrV6,
    /// What it is.
    pub role: Role,
    /// Its region.
    pub region: String,
    /// Its last reported load.
    pub load: f32,
}

/// Asks a node where a client at `location` (`geo:LAT,LON`, `region:NAME`, or empty for "by
/// my address") should fetch from: edges nearest first, then origins.
pub async fn locate(conn: &StoqConnection, location: &str) -> Result<Vec<Source>, TransportError> {
    #[derive(Deserialize)]
    struct Answer {
        sources: Vec<Source>,
    }
    let answer: Answer =
        serde_json::from_value(json(&conn.request(wire::locate_request(location)).await?)?)
            .map_err(|e| TransportError::Remote {
                code: stoq_transport::protocol::ErrorCode::ProtocolViolation,
                reason: format!("bad LOCATE answer: {e}"),
            })?;
    Ok(answer.sources)
}
