//! The background scrub: every `node.scrub_interval_ms`, an origin hashes each stored blob
//! again ([`crate::store::Store::scrub_blob`]) and an edge each cache entry it trusts
//! ([`super::cache::EdgeCache::scrub`]), one at a time, each in a background slot so clients'
//! reads come first. A damaged blob is logged, counted (`stoq_scrub_damaged_total`) and no
//! longer trusted, so it is never served again unnoticed; an edge deletes a damaged entry, so
//! its next request fetches it afresh.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::error::{Answered, Refusal};
use super::state::{Holdings, NodeState};
use crate::chunking::ChunkId;
use crate::store::BlobHealth;

/// Scrubs what the node holds every `every`, forever (the node aborts it at shutdown). A relay
/// holds nothing and returns at once.
pub async fn scrub_loop(state: Arc<NodeState>, every: Duration) {
    if matches!(state.holdings, Holdings::Relay) {
        return;
    }
    loop {
        tokio::time::sleep(every).await;
        let Ok(ids) = listed(&state).await else {
            continue;
        };
        for id in ids {
            let _slot = state.admission.enter_background().await;
            match check(&state, id).await {
                Ok(Some(BlobHealth::Intact(_))) => {
                    state.metrics.scrub_blobs.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(BlobHealth::Corrupt | BlobHealth::Missing)) => {
                    state.metrics.scrub_blobs.fetch_add(1, Ordering::Relaxed);
                    state.metrics.scrub_damaged.fetch_add(1, Ordering::Relaxed);
                }
                Ok(None) => {}
                Err(refusal) => tracing::warn!(blob = %id, %refusal, "scrub: cannot read"),
            }
        }
        state.metrics.scrub_passes.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one pass checks: every blob of an origin's store, every trusted entry of an edge.
async fn listed(state: &NodeState) -> Answered<Vec<ChunkId>> {
    match &state.holdings {
        Holdings::Origin(store) => store.read(|s| s.blob_ids()).await,
        Holdings::Edge(cache) => Ok(cache.trusted()),
        Holdings::Relay => Ok(Vec::new()),
    }
}

/// Hashes one blob or entry again, off the runtime.
async fn check(state: &NodeState, id: ChunkId) -> Answered<Option<BlobHealth>> {
    match &state.holdings {
        Holdings::Origin(store) => store.read(move |s| s.scrub_blob(&id)).await.map(Some),
        Holdings::Edge(cache) => {
            let cache = cache.clone();
            tokio::task::spawn_blocking(move || cache.scrub(&id))
                .await
                .map_err(Refusal::internal)
        }
        Holdings::Relay => Ok(None),
    }
}
