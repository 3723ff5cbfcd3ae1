//! Content requests: GET_MANIFEST, GET_CHUNK, GET_SHARD, HOLDERS and PREFETCH.

use std::sync::Arc;

use bytes::Bytes;
use stoq_transport::IncomingRequest;

use super::super::access::{authorise, check_read};
use super::super::error::{Answered, Refusal};
use super::super::pull::{chunk_of, manifest_of};
use super::super::state::NodeState;
use super::Answer;
use crate::chunking::{ChunkId, ContentId};
use crate::protocol::{ManifestMeta, Placement, PrefetchAnswer};

/// GET_MANIFEST: the manifest as a body; the RESPONSE ([`ManifestMeta`]) carries the read
/// restriction to a member (so an edge keeps enforcing it) and the recorded media type.
pub async fn manifest(
    state: &Arc<NodeState>,
    req: &IncomingRequest,
    id: ContentId,
    read_token: Option<Bytes>,
) -> Answered<Answer> {
    let manifest = manifest_of(state, id, true).await?;
    let restriction = check_read(state, &req.conn, &id, read_token.as_ref())?;
    let meta = ManifestMeta {
        restriction,
        media_type: state.media_type(&id).await,
    };
    Ok(Answer::Body(
        Bytes::from(manifest.encode()),
        Bytes::from(meta.encode()),
    ))
}

/// GET_CHUNK: one chunk as a body.
pub async fn chunk(
    state: &Arc<NodeState>,
    req: &IncomingRequest,
    id: ContentId,
    index: u32,
    read_token: Option<Bytes>,
) -> Answered<Answer> {
    let manifest = manifest_of(state, id, false).await?;
    check_read(state, &req.conn, &id, read_token.as_ref())?;
    let bytes = chunk_of(state, id, manifest, index).await?;
    Ok(Answer::Body(bytes, Bytes::new()))
}

/// GET_SHARD: a blob this node holds, by id. A shard it does not hold is a miss, not a fault.
pub async fn shard(state: &NodeState, shard: ChunkId) -> Answered<Answer> {
    let store = state
        .holdings
        .store()
        .ok_or_else(|| Refusal::not_found("this node keeps no shards"))?;
    let bytes = store
        .read(move |s| s.blob_if_present(&shard))
        .await?
        .ok_or_else(|| Refusal::not_found(format!("no shard {shard} here")))?;
    Ok(Answer::Body(Bytes::from(bytes), Bytes::new()))
}

/// HOLDERS: where a content's shards were placed.
pub async fn holders(state: &NodeState, id: ContentId) -> Answered<Answer> {
    let not_placed = || Refusal::not_found(format!("content {id} is not placed across nodes"));
    let store = state.holdings.store().ok_or_else(not_placed)?;
    let placement = store
        .read(move |s| s.placement(&id))
        .await?
        .ok_or_else(not_placed)?;
    let placement: Placement = serde_json::from_slice(&placement).map_err(Refusal::internal)?;
    Answer::json(&placement)
}

/// PREFETCH: an edge pulls a whole content into its cache ahead of demand.
pub async fn prefetch(state: &Arc<NodeState>, token: &Bytes, id: ContentId) -> Answered<Answer> {
    authorise(state, token)?;
    if state.holdings.cache().is_none() {
        return Err(Refusal::bad_request(format!(
            "this node is an {}; prefetch to an edge",
            state.role()
        )));
    }
    let manifest = manifest_of(state, id, false).await?;
    let mut bytes = 0u64;
    for index in 0..manifest.chunks.len() as u32 {
        // Background work: it takes one of the slots kept for it, after clients' reads.
        let _slot = state.admission.enter_background().await;
        bytes += chunk_of(state, id, manifest.clone(), index).await?.len() as u64;
    }
    Answer::json(&PrefetchAnswer {
        id,
        chunks: manifest.chunks.len(),
        bytes,
    })
}
