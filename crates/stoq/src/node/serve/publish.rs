//! Changes to content: PUT, PURGE and STORE_SHARDS, each behind the admin token.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stoq_transport::IncomingRequest;
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::super::access::{authorise, authorise_forwarded, vouch};
use super::super::erasure::{distribute, store_shards as hold_shards};
use super::super::error::{Answered, Refusal};
use super::super::state::{Holdings, NodeState};
use super::Answer;
use crate::chunking::ContentId;
use crate::protocol::{Op, PurgeAnswer, PurgeFailure, PutAnswer, PutSettings, Request};
use crate::store::PutOptions;

/// How long a forwarded purge may take per peer.
const PURGE_TIMEOUT: Duration = Duration::from_secs(5);

/// An authorised uploader gets the full receive window: a stranger's connection keeps the
/// narrow one (`transport.accepted_receive_window`), which bounds what it can park here.
fn allow_upload(state: &NodeState, req: &IncomingRequest) {
    req.conn
        .set_receive_window(state.endpoint.config().connection_receive_window);
}

/// PUT: the body is written to a temporary file in the data dir (so a full disk fails
/// cleanly), then stored; an erasure-coded content is then spread across origins.
pub async fn put(
    state: &Arc<NodeState>,
    req: &mut IncomingRequest,
    token: &Bytes,
    settings: PutSettings,
) -> Answered<Answer> {
    authorise(state, token)?;
    allow_upload(state, req);
    if state.holdings.store().is_none() {
        return Err(not_an_origin(state));
    }
    let tmp = state.upload_path();
    let disk = |e: std::io::Error| Refusal::internal(format!("upload failed, nothing stored: {e}"));
    let received = async {
        let mut file = tokio::fs::File::create(&tmp).await.map_err(disk)?;
        let mut bytes = 0u64;
        while let Some(piece) = req
            .body
            .recv_data()
            .await
            .map_err(|e| Refusal::from_body(&e))?
        {
            bytes += piece.len() as u64;
            file.write_all(&piece).await.map_err(disk)?;
        }
        file.flush().await.map_err(disk)?;
        Ok::<u64, Refusal>(bytes)
    }
    .await;
    let bytes = match received {
        Ok(b) => b,
        Err(refusal) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(refusal);
        }
    };
    state.metrics.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    let answer = publish_file(state, tmp.clone(), settings).await;
    let _ = tokio::fs::remove_file(&tmp).await;
    Answer::json(&answer?)
}

/// Stores the file at `path` on this origin with `settings` (the caller checked the token),
/// then spreads an erasure-coded content across origins. The caller removes the file.
pub async fn publish_file(
    state: &Arc<NodeState>,
    path: std::path::PathBuf,
    settings: PutSettings,
) -> Answered<PutAnswer> {
    let Holdings::Origin(store) = &state.holdings else {
        return Err(not_an_origin(state));
    };
    let options = PutOptions {
        erasure: settings.erasure,
        kind: settings.kind,
    };
    let (digest, media_type) = (settings.read_digest, settings.media_type.clone());
    // One write lock over the put and its restriction: no reader sees the content open.
    let report = store
        .write(move |s| {
            let report = s.put_file(&path, options)?;
            if digest.is_some() || s.restriction(&report.id)?.is_some() {
                s.set_restriction(&report.id, digest.as_ref())?;
            }
            if media_type.is_some() {
                s.set_media_type(&report.id, media_type.as_deref())?;
            }
            Ok(report)
        })
        .await
        .map_err(|e| Refusal::internal(e.reason))?;
    if let Some(t) = settings.media_type {
        state.pull.learn_media_type(report.id, t);
    }
    let placement = match settings.erasure {
        Some(policy) => Some(distribute(state, store, report.id, policy).await),
        None => None,
    };
    Ok(PutAnswer {
        id: report.id,
        size: report.size,
        chunks: report.chunks,
        new_chunks: report.new_chunks,
        new_bytes: report.new_bytes,
        kind: report.kind,
        placement,
    })
}

/// The refusal of a publish to a node that is not an origin.
pub fn not_an_origin(state: &NodeState) -> Refusal {
    Refusal::bad_request(format!(
        "this node is an {}; publish to an origin",
        state.role()
    ))
}

/// PURGE: removes a content here (cache entries on edges, the stored object and held shards
/// on origins) and, when asked to, forwards it to every live peer.
pub async fn purge(
    state: &Arc<NodeState>,
    token: &Bytes,
    id: ContentId,
    forward: bool,
) -> Answered<Answer> {
    // A purge another node forwarded carries its proof (made for this node and this id);
    // only a client's, with the token itself, may be forwarded on.
    match forward {
        true => authorise(state, token)?,
        false => authorise_forwarded(state, token, Op::Purge, &id)?,
    }
    let answer = match forward {
        true => purge_everywhere(state, id).await?,
        false => purge_here(state, id).await?,
    };
    Answer::json(&answer)
}

/// Removes `id` here (the caller checked the token).
async fn purge_here(state: &Arc<NodeState>, id: ContentId) -> Answered<PurgeAnswer> {
    state.pull.forget(&id);
    let removed_here = match &state.holdings {
        Holdings::Edge(cache) => cache.purge(&id) as u64,
        Holdings::Origin(store) => store
            .write(move |s| {
                let held = u64::from(s.held_manifest(&id)?.is_some());
                s.release_held(&id)?;
                if s.contains(&id)? {
                    s.delete(&id).map(|_| 1 + held)
                } else {
                    Ok(held)
                }
            })
            .await
            .map_err(|e| Refusal::internal(e.reason))?,
        Holdings::Relay => 0,
    };
    Ok(PurgeAnswer {
        id,
        removed_here,
        reached: Vec::new(),
        failed: Vec::new(),
    })
}

/// Removes `id` here and on every live peer, each peer told with a proof made for it (the
/// caller checked the token).
pub async fn purge_everywhere(state: &Arc<NodeState>, id: ContentId) -> Answered<PurgeAnswer> {
    let mut answer = purge_here(state, id).await?;
    {
        let mut sends = JoinSet::new();
        for peer in state.membership.peers() {
            let state = state.clone();
            sends.spawn(async move {
                let request = Request::Purge {
                    token: vouch(&state, Op::Purge, &id, &peer.member.node_id()),
                    id,
                    forward: false,
                };
                let result = tokio::time::timeout(PURGE_TIMEOUT, async {
                    let conn = state.dialer.connect_to(&peer.member).await?;
                    conn.request(request.encode()).await
                })
                .await;
                let outcome = match result {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer in time".to_owned()),
                };
                (peer.member.node_id(), outcome)
            });
        }
        while let Some(joined) = sends.join_next().await {
            match joined {
                Ok((peer, Ok(()))) => answer.reached.push(peer),
                Ok((peer, Err(reason))) => answer.failed.push(PurgeFailure { id: peer, reason }),
                Err(e) => tracing::error!(error = %e, "a purge forwarder panicked"),
            }
        }
    }
    Ok(answer)
}

/// STORE_SHARDS: another origin places shards here.
pub async fn store_shards(
    state: &Arc<NodeState>,
    req: &mut IncomingRequest,
    token: &Bytes,
    id: ContentId,
) -> Answered<Answer> {
    authorise_forwarded(state, token, Op::StoreShards, &id)?;
    allow_upload(state, req);
    let Holdings::Origin(store) = &state.holdings else {
        return Err(Refusal::bad_request("only origins hold shards"));
    };
    Answer::json(&hold_shards(store, req, id).await?)
}
