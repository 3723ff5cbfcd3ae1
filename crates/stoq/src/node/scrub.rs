//! The origin's background scrub: every `node.scrub_interval_ms`, each stored blob is hashed
//! again ([`crate::store::Store::scrub_blob`]), one at a time, each in a background slot so
//! clients' reads come first. A damaged blob is logged, counted
//! (`stoq_scrub_damaged_total`) and no longer trusted, so it is never served again unnoticed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::state::NodeState;
use super::stored::OriginStore;
use crate::store::BlobHealth;

/// Scrubs `store` every `every`, forever (the node aborts it at shutdown).
pub async fn scrub_loop(state: Arc<NodeState>, store: OriginStore, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Ok(ids) = store.read(|s| s.blob_ids()).await else {
            continue;
        };
        for id in ids {
            let _slot = state.admission.enter_background().await;
            let metrics = &state.metrics;
            match store.read(move |s| s.scrub_blob(&id)).await {
                Ok(BlobHealth::Intact(_)) => {
                    metrics.scrub_blobs.fetch_add(1, Ordering::Relaxed);
                }
                Ok(BlobHealth::Corrupt | BlobHealth::Missing) => {
                    metrics.scrub_blobs.fetch_add(1, Ordering::Relaxed);
                    metrics.scrub_damaged.fetch_add(1, Ordering::Relaxed);
                }
                Err(refusal) => tracing::warn!(blob = %id, %refusal, "scrub: cannot read"),
            }
        }
        state.metrics.scrub_passes.fetch_add(1, Ordering::Relaxed);
    }
}
