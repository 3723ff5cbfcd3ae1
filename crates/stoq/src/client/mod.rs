//! The client side of every request: dialling a node with its id pinned, asking it the
//! management requests with typed answers, and the one path from "where should I fetch?" to a
//! verified download ([`Located`]) that the command line, the demo and the facade all take.

mod chunk_cache;
mod content;
mod download;
mod error;
mod plan;
mod reuse;
mod verifier;

pub use chunk_cache::{ChunkCache, DEFAULT_CACHE_BYTES};
pub use content::{
    fetch_chunk, fetch_chunk_as, fetch_manifest, fetch_manifest_as, fetch_run, ChunkRun,
    ReadDigest, RunEvent,
};
pub use download::{
    fetch, fetch_to_file, fetch_with, FetchOptions, MANIFEST_DEADLINE, WRITEBACK_EVERY,
};
pub use error::{FetchError, DEFAULT_BUSY_PAUSE};
pub use plan::{
    run_len, stall_deadline, window_for, FetchReport, MAX_BUSY_PAUSE, MAX_BUSY_WAIT,
    MAX_IN_FLIGHT_BYTES, MAX_RUNS_PER_SOURCE, MAX_STRIKES, MAX_WINDOW_PER_SOURCE, RUN_BYTES,
    STALL_FLOOR, WINDOW_PER_SOURCE,
};
pub use reuse::{LocalChunks, ReuseIndex};
pub use verifier::{Verifier, THREADED_FROM_CORES};

use std::future::Future;
use std::io::Write;
use std::net::{SocketAddr, SocketAddrV6};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use stoq_transport::protocol::ErrorCode;
use stoq_transport::{NodeId, PeerExpectation, StoqConnection, StoqEndpoint, TransportError};

use crate::chunking::{ContentId, Manifest};
use crate::protocol::{
    LocateAnswer, Location, NameRecord, NameSetAnswer, Placement, PrefetchAnswer, PurgeAnswer,
    PutAnswer, PutSettings, Request, SinkReceipt, Source, StatusAnswer, MAX_ANSWER_BYTES,
};

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Connections as a client (or a host application) makes them; [`StoqEndpoint`] is STOQ's own.
pub trait Transport: Send + Sync {
    /// This end's node id.
    fn node_id(&self) -> NodeId;
    /// A connection to `addr`, checked as `expect` says.
    fn connect<'a>(
        &'a self,
        addr: SocketAddr,
        expect: &'a PeerExpectation,
    ) -> BoxFuture<'a, Result<StoqConnection, TransportError>>;
}

impl Transport for StoqEndpoint {
    fn node_id(&self) -> NodeId {
        StoqEndpoint::node_id(self)
    }

    fn connect<'a>(
        &'a self,
        addr: SocketAddr,
        expect: &'a PeerExpectation,
    ) -> BoxFuture<'a, Result<StoqConnection, TransportError>> {
        Box::pin(StoqEndpoint::connect(self, addr, expect))
    }
}

/// How long a client waits for a node to answer a dial.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Dials node `id` at `addr` with its id pinned: the handshake fails unless the peer proves
/// it holds that node's key.
pub async fn dial(
    transport: &dyn Transport,
    id: NodeId,
    addr: SocketAddrV6,
) -> Result<StoqConnection, TransportError> {
    let expect = PeerExpectation::Node(id);
    tokio::time::timeout(
        DIAL_TIMEOUT,
        transport.connect(SocketAddr::V6(addr), &expect),
    )
    .await
    .map_err(|_| TransportError::Timeout(format!("dialling {addr}")))?
}

/// Dials every candidate at once; keeps those that answered, in the candidates' order.
pub async fn dial_all(
    transport: &dyn Transport,
    candidates: &[(NodeId, SocketAddrV6)],
) -> Vec<(NodeId, StoqConnection)> {
    let dials = candidates
        .iter()
        .map(|&(id, addr)| async move { (id, dial(transport, id, addr).await) });
    let mut out = Vec::new();
    for (id, result) in futures_all(dials).await {
        match result {
            Ok(conn) => out.push((id, conn)),
            Err(e) => tracing::info!(error = %e, "a candidate source is unreachable"),
        }
    }
    out
}

/// Runs futures concurrently on this task; their outputs in order.
async fn futures_all<F: Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in pending.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter()
        .map(|v| v.expect("every future finished"))
        .collect()
}

/// Where a download will come from: the sources a node located for the client (edges nearest
/// first, then origins), then the nodes the client named itself, each dialled with its id
/// pinned; those that did not answer are left out.
#[derive(Debug, Clone)]
pub struct Located {
    /// The sources that answered, best first.
    pub sources: Vec<(NodeId, StoqConnection)>,
}

impl Located {
    /// Asks the nodes of `given`, in order, where a client at `location` should fetch from
    /// (the first that answers decides; one that is down or does not answer is skipped), and
    /// dials the answer and the rest of `given` at once. A node that cannot locate (a lone
    /// node, an address with no prefix entry) is not an error when the location is by
    /// address: the nodes given are used.
    pub async fn locate(
        transport: &dyn Transport,
        given: &[(NodeId, SocketAddrV6)],
        location: &Location,
    ) -> Result<Located, TransportError> {
        if given.is_empty() {
            return Err(TransportError::Timeout("no node to ask".into()));
        }
        let (mut answer, mut last, mut unreachable) = (None, None, Vec::new());
        for &(id, addr) in given {
            let asked = match dial(transport, id, addr).await {
                Ok(entry) => locate(&entry, location).await,
                Err(e) => {
                    unreachable.push(id);
                    Err(e)
                }
            };
            match asked {
                Ok(sources) => {
                    answer = Some(sources);
                    break;
                }
                Err(e) => {
                    tracing::info!(node = %addr, error = %e, "cannot locate through this node");
                    last = Some(e);
                }
            }
        }
        let mut candidates: Vec<(NodeId, SocketAddrV6)> = match (answer, last) {
            (Some(sources), _) => sources.into_iter().map(|s| (s.id, s.addr)).collect(),
            (None, _) if *location == Location::ByAddress => Vec::new(),
            (None, Some(e)) => return Err(e),
            (None, None) => Vec::new(),
        };
        // The nodes given are candidates too, except those that just failed to answer a dial.
        for g in given {
            if !candidates.iter().any(|c| c.0 == g.0) && !unreachable.contains(&g.0) {
                candidates.push(*g);
            }
        }
        let sources = dial_all(transport, &candidates).await;
        if sources.is_empty() {
            return Err(TransportError::Timeout(format!(
                "none of the {} candidate sources answered",
                candidates.len()
            )));
        }
        Ok(Located { sources })
    }

    /// The connections, best first.
    pub fn connections(&self) -> Vec<StoqConnection> {
        self.sources.iter().map(|(_, c)| c.clone()).collect()
    }

    /// Downloads `id` from these sources (see [`fetch_with`]) into `out`.
    pub async fn fetch<W: Write>(
        &self,
        id: &ContentId,
        out: &mut W,
        options: &FetchOptions,
        already_have: impl FnOnce(&Manifest) -> std::io::Result<u32>,
    ) -> Result<FetchReport, FetchError> {
        fetch_with(&self.connections(), id, out, options, already_have).await
    }

    /// Downloads `id` from these sources into `file` (see [`fetch_to_file`]).
    pub async fn fetch_to_file(
        &self,
        id: &ContentId,
        file: Arc<std::fs::File>,
        options: &FetchOptions,
        already_have: impl FnOnce(&Manifest) -> std::io::Result<u32>,
        progress: impl FnMut(u64),
    ) -> Result<FetchReport, FetchError> {
        let sources = self.connections();
        fetch_to_file(&sources, id, file, options, already_have, progress).await
    }
}

fn protocol_error(reason: String) -> TransportError {
    TransportError::Remote {
        code: ErrorCode::ProtocolViolation,
        reason,
    }
}

/// Sends `request` and decodes its JSON answer as `T`.
async fn ask<T: DeserializeOwned>(
    conn: &StoqConnection,
    request: &Request,
) -> Result<T, TransportError> {
    let answer = conn.request(request.encode()).await?;
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(TransportError::UnexpectedEnd("answer too large"));
    }
    serde_json::from_slice(&answer)
        .map_err(|e| protocol_error(format!("bad answer to {:?}: {e}", request.op())))
}

/// Asks a node for its id.
pub async fn ping(conn: &StoqConnection) -> Result<String, TransportError> {
    let answer = conn.request(Request::Ping.encode()).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// Sends `body` to a node's SINK and returns its receipt.
pub async fn sink(conn: &StoqConnection, body: Bytes) -> Result<SinkReceipt, TransportError> {
    let answer = send_body(conn, Request::Sink, body).await?;
    SinkReceipt::decode(&answer).map_err(protocol_error)
}

/// Sends `body` to a node's DISCARD and returns how many bytes it read.
pub async fn discard(conn: &StoqConnection, body: Bytes) -> Result<u64, TransportError> {
    let answer = send_body(conn, Request::Discard, body).await?;
    let count: [u8; 8] = answer[..].try_into().map_err(|_| {
        protocol_error(format!(
            "DISCARD response must be 8 bytes, got {}",
            answer.len()
        ))
    })?;
    Ok(u64::from_be_bytes(count))
}

async fn send_body(
    conn: &StoqConnection,
    request: Request,
    body: Bytes,
) -> Result<Bytes, TransportError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.send_request(request.encode()).await?;
    send.send_data(body).await?;
    send.send_end().await?;
    send.finish()?;
    recv.recv_response().await
}

/// Uploads the file at `path` to an origin (admin `token`); reads of the content need
/// `settings.read_digest`'s token when it is set.
pub async fn publish(
    conn: &StoqConnection,
    token: &str,
    path: &Path,
    settings: PutSettings,
) -> Result<PutAnswer, TransportError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|source| TransportError::Io {
            what: "cannot open",
            path: path.display().to_string(),
            source,
        })?;
    publish_from(conn, token, &mut file, settings).await
}

/// [`publish`] with the content read from `body` (a file wrapped to count its bytes for a
/// progress bar, for instance).
pub async fn publish_from<R>(
    conn: &StoqConnection,
    token: &str,
    body: &mut R,
    settings: PutSettings,
) -> Result<PutAnswer, TransportError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    let request = Request::Put {
        token: Request::admin_token(token),
        settings,
    };
    let (mut send, mut recv) = conn.open_bi().await?;
    let sent = async {
        send.send_request(request.encode()).await?;
        send.send_data_from(body).await?;
        send.send_end().await?;
        send.finish()
    }
    .await;
    // A node that refuses (a wrong token, not an origin) answers before reading the body and
    // stops the stream; its answer says why, so read it before reporting the send error.
    let answer = match (sent, recv.recv_response().await) {
        (_, Ok(answer)) => answer,
        (_, Err(e @ TransportError::Remote { .. })) | (Ok(()), Err(e)) => return Err(e),
        (Err(e), Err(_)) => return Err(e),
    };
    serde_json::from_slice(&answer).map_err(|e| protocol_error(format!("bad PUT answer: {e}")))
}

/// Purges a content from the whole network through one node.
pub async fn purge(
    conn: &StoqConnection,
    token: &str,
    id: &ContentId,
) -> Result<PurgeAnswer, TransportError> {
    let request = Request::Purge {
        token: Request::admin_token(token),
        id: *id,
        forward: true,
    };
    ask(conn, &request).await
}

/// Asks an edge to pull a content into its cache now.
pub async fn prefetch(
    conn: &StoqConnection,
    token: &str,
    id: &ContentId,
) -> Result<PrefetchAnswer, TransportError> {
    let request = Request::Prefetch {
        token: Request::admin_token(token),
        id: *id,
    };
    ask(conn, &request).await
}

/// Points `name` at `id` on an origin.
pub async fn set_name(
    conn: &StoqConnection,
    token: &str,
    name: &str,
    id: &ContentId,
    ttl_s: u32,
    swr_s: u32,
) -> Result<NameSetAnswer, TransportError> {
    let request = Request::NameSet {
        token: Request::admin_token(token),
        name: name.to_owned(),
        id: *id,
        ttl_s,
        swr_s,
    };
    ask(conn, &request).await
}

/// What `name` points at, as `conn`'s node answers it.
pub async fn resolve_name(conn: &StoqConnection, name: &str) -> Result<NameRecord, TransportError> {
    let request = Request::NameGet {
        name: name.to_owned(),
    };
    let answer = conn.request(request.encode()).await?;
    let record = NameRecord::decode(&answer).map_err(|e| protocol_error(e.to_string()))?;
    if record.name != name {
        return Err(protocol_error(format!(
            "asked for {name:?}, the node answered for {:?}",
            record.name
        )));
    }
    Ok(record)
}

/// A node's status.
pub async fn status(conn: &StoqConnection) -> Result<StatusAnswer, TransportError> {
    ask(conn, &Request::Status).await
}

/// Where a content's shards were placed.
pub async fn holders(conn: &StoqConnection, id: &ContentId) -> Result<Placement, TransportError> {
    ask(conn, &Request::Holders { id: *id }).await
}

/// Asks a node where a client at `location` should fetch from: edges nearest first, then
/// origins.
pub async fn locate(
    conn: &StoqConnection,
    location: &Location,
) -> Result<Vec<Source>, TransportError> {
    let request = Request::Locate {
        location: location.clone(),
    };
    Ok(ask::<LocateAnswer>(conn, &request).await?.sources)
}
