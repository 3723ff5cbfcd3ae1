//! What a front (the HTTP front, or any other way in that is not STOQ's own protocol) asks of a
//! running node: content by id, names, read checks, publishing and purging. Each goes the same
//! way as the STOQ request that does the same thing (pull-through and coalescing on an edge,
//! admission slots, counters), so a front adds a wire format and nothing else.

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::access::{authorise, restriction_of};
use super::error::Answered;
use super::pull::{manifest_of, name_of};
use super::serve::{publish_file, purge_everywhere, read_run};
use super::state::NodeState;
use crate::chunking::{ContentId, Manifest};
use crate::config::Role;
use crate::edge::names::NameRecord;
use crate::protocol::{read_digest, PurgeAnswer, PutAnswer, PutSettings};

/// Chunks a front's reader fetches ahead of the one being sent.
pub const FRONT_READ_AHEAD: usize = 4;

/// Chunks read under one admission slot (a few MiB: a slot is held for a while, not per chunk).
pub const FRONT_RUN: u32 = 64;

/// Why a read of restricted content was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadRefused {
    /// No read token was presented.
    Missing,
    /// The token presented is not the content's.
    Wrong,
}

/// A node's content as a front sees it. Cloning shares the node.
#[derive(Clone)]
pub struct NodeContent {
    state: Arc<NodeState>,
}

impl std::fmt::Debug for NodeContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeContent")
            .field("node", &self.state.endpoint.node_id())
            .finish()
    }
}

impl NodeContent {
    pub(super) fn new(state: Arc<NodeState>) -> Self {
        NodeContent { state }
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        self.state.role()
    }

    /// The manifest of `id`, from wherever this node gets it (an edge counts a hit or a miss).
    pub async fn manifest(&self, id: ContentId) -> Answered<Arc<Manifest>> {
        self.state.metrics.request("manifest");
        manifest_of(&self.state, id, true).await
    }

    /// Whether a reader presenting `token` may read `id`: `Ok(true)` for restricted content
    /// and the right token, `Ok(false)` for open content. Call it after [`Self::manifest`]:
    /// an edge learns a content's restriction with its manifest.
    pub fn may_read(&self, id: &ContentId, token: Option<&str>) -> Result<bool, ReadRefused> {
        let Some(digest) = restriction_of(&self.state, id) else {
            return Ok(false);
        };
        let refused = match token {
            None => ReadRefused::Missing,
            Some(t) if read_digest(t) == digest => return Ok(true),
            Some(_) => ReadRefused::Wrong,
        };
        self.state
            .metrics
            .unauthorized
            .fetch_add(1, Ordering::Relaxed);
        Err(refused)
    }

    /// Chunks `run` of `id`, in order, read ahead of the consumer by [`FRONT_READ_AHEAD`].
    /// They are read in runs of [`FRONT_RUN`] chunks, each run the way GET_CHUNKS reads one
    /// (an origin on one blocking thread, an edge chunk by chunk through its cache) holding an
    /// admission slot shared as `client`'s (a number the front gives each of its
    /// connections), so front and STOQ readers queue together. The channel ends after the last
    /// chunk, after the first refusal, or when the consumer has taken nothing for the
    /// transport's stall timeout (a client that stopped reading).
    pub fn chunks(
        &self,
        id: ContentId,
        manifest: Arc<Manifest>,
        run: Range<u32>,
        client: usize,
    ) -> mpsc::Receiver<Answered<Bytes>> {
        let (tx, rx) = mpsc::channel(FRONT_READ_AHEAD);
        let state = self.state.clone();
        let stall = state.endpoint.config().stall_timeout();
        tokio::spawn(async move {
            let mut next = run.start;
            while next < run.end {
                let part = next..run.end.min(next.saturating_add(FRONT_RUN));
                next = part.end;
                // Held until the run is handed over.
                let _slot = match state.admission.enter(Some(client)).await {
                    Ok(slot) => slot,
                    Err(busy) => {
                        state.metrics.busy.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send(Err(busy)).await;
                        return;
                    }
                };
                state.metrics.request("chunk");
                let mut chunks = read_run(&state, id, manifest.clone(), part).await;
                while let Some(result) = chunks.recv().await {
                    let failed = result.is_err();
                    let sent = tokio::time::timeout(stall, tx.send(result)).await;
                    if !matches!(sent, Ok(Ok(()))) || failed {
                        return;
                    }
                }
            }
        });
        rx
    }

    /// The media type recorded for `id` when it was published, if any.
    pub fn media_type(&self, id: &ContentId) -> Option<String> {
        self.state.media_type(id)
    }

    /// Counts `bytes` of content sent to a client of the front.
    pub fn served(&self, bytes: u64) {
        let metrics = &self.state.metrics;
        metrics.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        metrics.front.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        self.state.load.served(bytes);
    }

    /// The front's counters.
    pub fn metrics(&self) -> &super::FrontMetrics {
        &self.state.metrics.front
    }

    /// What `name` points at, and for how many more seconds this node's copy is fresh.
    pub async fn name(&self, name: &str) -> Answered<(NameRecord, u32)> {
        self.state.metrics.request("name");
        let (record, age_ms) = name_of(&self.state, name.to_owned()).await?;
        let fresh_for = record.fresh_for_s(age_ms);
        Ok((record, fresh_for))
    }

    /// Whether `token` is the admin token (counted as unauthorised when it is not).
    pub fn authorise(&self, token: &str) -> Answered<()> {
        authorise(&self.state, &Bytes::copy_from_slice(token.as_bytes()))
    }

    /// A fresh path in the node's data directory for an upload to be written to before it is
    /// stored (the same disk as the store, so a full disk fails the upload, not the store).
    pub fn upload_path(&self) -> std::path::PathBuf {
        self.state.upload_path()
    }

    /// Publishes the file at `path` (on an origin; call [`Self::authorise`] first).
    pub async fn publish(&self, path: &Path, settings: PutSettings) -> Answered<PutAnswer> {
        self.state.metrics.request("put");
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        self.state
            .metrics
            .bytes_in
            .fetch_add(bytes, Ordering::Relaxed);
        publish_file(&self.state, path.to_owned(), settings).await
    }

    /// Purges `id` here and from every live peer (call [`Self::authorise`] first).
    pub async fn purge(&self, id: ContentId) -> Answered<PurgeAnswer> {
        self.state.metrics.request("purge");
        purge_everywhere(&self.state, id).await
    }
}
