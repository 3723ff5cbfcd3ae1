//! Answering requests: [`handle`] decodes each request with [`crate::protocol::Request`],
//! counts it, and hands it to the file that answers its group of operations:
//! [`basic`] (ping, echo, sink, discard), [`content`] (manifests, chunks, shards, holders,
//! prefetch), [`publish`] (put, purge, store shards) and [`network`] (gossip, locate, status,
//! names).

mod basic;
mod content;
pub(super) mod network;
mod publish;
mod run;

pub use network::status;
pub use publish::{not_an_origin, publish_file, purge_everywhere};
pub use run::read_run;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use stoq_transport::{IncomingRequest, StoqEndpoint, TransportError};

use super::error::{Answered, Refusal};
use super::qos::Client;
use super::state::NodeState;
use crate::protocol::{ErrorCode, Op, Request};

/// What a request is answered with.
pub enum Answer {
    /// A body (DATA frames, END), then a RESPONSE carrying the second part.
    Body(Bytes, Bytes),
    /// A RESPONSE only.
    Response(Bytes),
}

impl Answer {
    /// A RESPONSE carrying `value` as JSON.
    pub fn json<T: Serialize>(value: &T) -> Answered<Answer> {
        serde_json::to_vec(value)
            .map(|v| Answer::Response(Bytes::from(v)))
            .map_err(Refusal::internal)
    }
}

/// The request kind an operation is counted under in the metrics.
pub fn kind_of(op: Op) -> &'static str {
    match op {
        Op::GetManifest => "manifest",
        Op::GetChunk | Op::GetChunks => "chunk",
        Op::GetShard | Op::StoreShards | Op::Holders => "shard",
        Op::Put => "put",
        Op::Purge => "purge",
        Op::Prefetch => "prefetch",
        Op::Locate => "locate",
        Op::Status => "status",
        Op::Gossip => "gossip",
        Op::NameSet | Op::NameGet => "name",
        Op::Ping | Op::Echo | Op::Sink | Op::Discard => "other",
    }
}

/// Answers one request stream.
pub async fn handle(state: Arc<NodeState>, mut req: IncomingRequest) -> Result<(), TransportError> {
    let request = match Request::decode(&req.payload) {
        Ok(request) => request,
        Err(e) => {
            let op = req.payload.first().copied().and_then(Op::from_code);
            state.metrics.request(op.map_or("other", kind_of));
            if e.code == ErrorCode::Unauthorized {
                state.metrics.unauthorized.fetch_add(1, Ordering::Relaxed);
            }
            return req.reply.send_error(e.code, &e.reason).await;
        }
    };
    let op = request.op();
    state.metrics.request(kind_of(op));
    let member = || req.conn.peer_node_id().is_some_and(|p| state.is_member(&p));
    // Clients are held to their rates; members and the admin (its token) are not.
    let admin = || {
        request
            .credential()
            .is_some_and(|t| state.access.token().verify(t))
    };
    if state.qos.active() && !member() && !admin() {
        if let Err(slow) = state.qos.admit(Client::of(&req.conn), Instant::now()) {
            state.metrics.busy.fetch_add(1, Ordering::Relaxed);
            let reason = crate::protocol::busy_reason(slow.after, &slow.why);
            return req.reply.send_error(ErrorCode::Busy, &reason).await;
        }
    }
    // Content requests take a slot first (held until answered), or are answered BUSY.
    let _slot = match op {
        Op::GetManifest | Op::GetChunk | Op::GetChunks | Op::GetShard => {
            let share = (!member()).then(|| req.conn.stable_id());
            match state.admission.enter(share).await {
                Ok(slot) => Some(slot),
                Err(busy) => {
                    state.metrics.busy.fetch_add(1, Ordering::Relaxed);
                    return req.reply.send_error(busy.code, &busy.reason).await;
                }
            }
        }
        _ => None,
    };
    let started = Instant::now();
    let answer = match request {
        Request::Ping | Request::Echo | Request::Sink | Request::Discard => {
            return basic::answer(&state.me.node_id().to_string(), request, req).await;
        }
        Request::GetManifest { id, read_token } => {
            content::manifest(&state, &req, id, read_token).await
        }
        Request::GetChunk {
            id,
            index,
            read_token,
        } => content::chunk(&state, &req, id, index, read_token).await,
        Request::GetChunks {
            id,
            first,
            count,
            read_token,
        } => return run::run(&state, req, id, first, count, read_token).await,
        Request::GetShard { shard } => content::shard(&state, shard).await,
        Request::Holders { id } => content::holders(&state, id).await,
        Request::Prefetch { token, id } => content::prefetch(&state, &token, id).await,
        Request::Put { token, settings } => publish::put(&state, &mut req, &token, settings).await,
        Request::Purge { token, id, forward } => publish::purge(&state, &token, id, forward).await,
        Request::StoreShards { token, id } => {
            publish::store_shards(&state, &mut req, &token, id).await
        }
        Request::Gossip { proof, message } => network::gossip(&state, &req, &proof, message),
        Request::Locate { location } => network::locate(&state, &req, &location),
        Request::Status => Answer::json(&network::status(&state)),
        Request::NameSet {
            token,
            name,
            id,
            ttl_s,
            swr_s,
        } => network::name_set(&state, &token, name, id, ttl_s, swr_s).await,
        Request::NameGet { name } => network::name_get(&state, name).await,
    };
    if op == Op::GetChunk {
        state.metrics.chunk_latency.observe(started.elapsed());
    }
    send(&state, req, answer).await
}

/// The span a request from `req`'s peer is handled in: its number on this node, the peer's
/// address and, for a node, its id (events under it say which request they belong to).
pub fn request_span(state: &NodeState, req: &IncomingRequest) -> tracing::Span {
    let id = state.request_ids.fetch_add(1, Ordering::Relaxed) + 1;
    let peer = req.conn.remote_addr();
    match req.conn.peer_node_id() {
        Some(node) => tracing::error_span!("request", id, %peer, peer_node = %node.short()),
        None => tracing::error_span!("request", id, %peer),
    }
}

/// Serves the basic operations (PING, ECHO, SINK, DISCARD) on a bare endpoint that is not a
/// node, as the transport benchmarks do; any other request is refused with BAD_REQUEST.
pub fn serve_basic(endpoint: &StoqEndpoint) -> tokio::task::JoinHandle<()> {
    let node_id: Arc<str> = endpoint.node_id().to_string().into();
    endpoint.serve(move |mut req| {
        let node_id = node_id.clone();
        async move {
            match Request::decode(&req.payload) {
                Ok(r @ (Request::Ping | Request::Echo | Request::Sink | Request::Discard)) => {
                    basic::answer(&node_id, r, req).await
                }
                Ok(other) => {
                    let reason = format!("{:?} needs a node; this endpoint is not one", other.op());
                    req.reply.send_error(ErrorCode::BadRequest, &reason).await
                }
                Err(e) => req.reply.send_error(e.code, &e.reason).await,
            }
        }
    })
}

async fn send(
    state: &NodeState,
    mut req: IncomingRequest,
    answer: Answered<Answer>,
) -> Result<(), TransportError> {
    match answer {
        Ok(Answer::Body(body, response)) => {
            let len = body.len() as u64;
            req.reply.send_data(body).await?;
            req.reply.send_end().await?;
            req.reply.send_response(response).await?;
            state.served(&req.conn, len);
            req.reply.finish()
        }
        Ok(Answer::Response(payload)) => {
            req.reply.send_response(payload).await?;
            req.reply.finish()
        }
        Err(refusal) => {
            match refusal.code {
                // Wrong tokens are what an operator wants to see; the rest is routine.
                ErrorCode::Unauthorized => {
                    tracing::warn!(code = ?refusal.code, reason = %refusal.reason, "refused")
                }
                code => tracing::debug!(?code, reason = %refusal.reason, "refused"),
            }
            req.reply.send_error(refusal.code, &refusal.reason).await
        }
    }
}
