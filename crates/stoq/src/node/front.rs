//! What a front (the HTTP front, or any other way in that is not STOQ's own protocol) asks of a
//! running node: content by id, names, read checks, publishing and purging. Each goes the same
//! way as the STOQ request that does the same thing (pull-through and coalescing on an edge,
//! admission slots, counters), so a front adds a wire format and nothing else.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::access::{authorise, restriction_of};
use super::error::{Answered, Refusal};
use super::pull::{manifest_of, name_of};
use super::serve::{not_an_origin, publish_file, purge_everywhere, read_run};
use super::state::NodeState;
use crate::chunking::{ContentId, Manifest};
use crate::edge::names::NameRecord;
use crate::protocol::{read_digest, PurgeAnswer, PutAnswer, PutSettings};

/// Bytes a front reads under one admission slot, about (a run ends at the chunk that reaches
/// it).
pub const FRONT_RUN_BYTES: u64 = 1 << 20;

/// Most chunks in one run.
pub const FRONT_RUN_CHUNKS: u32 = 64;

/// The budget of read-ahead bytes (`http.read_ahead_bytes`) is counted in KiB.
const BUDGET_UNIT: u64 = 1024;

/// Budget units a chunk of `len` bytes holds.
fn units(len: u32) -> u32 {
    u64::from(len).div_ceil(BUDGET_UNIT).max(1) as u32
}

/// The front-wide budget of `bytes` of read-ahead chunks, shared by every reader of one node:
/// with many slow clients the others wait for room, and a new read is answered 503 while there
/// is none.
pub fn front_budget(bytes: u64) -> Arc<Semaphore> {
    Arc::new(Semaphore::new((bytes / BUDGET_UNIT) as usize))
}

/// A chunk read ahead for a reader, with its share of the front's budget (given back when
/// the reader takes it).
type Held = (Answered<Bytes>, Option<OwnedSemaphorePermit>);

/// What [`NodeContent::chunks`] hands a reader: the chunks in order, as they are read.
#[derive(Debug)]
pub struct Arriving(mpsc::Receiver<Held>);

impl Arriving {
    /// The next chunk, or `None` after the last (or after the reading stopped).
    pub async fn recv(&mut self) -> Option<Answered<Bytes>> {
        self.0.recv().await.map(|(chunk, _share)| chunk)
    }
}

impl tokio_stream::Stream for Arriving {
    type Item = Answered<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0
            .poll_recv(cx)
            .map(|held| held.map(|(chunk, _share)| chunk))
    }
}

/// Where the run starting at chunk `first` ends: after [`FRONT_RUN_BYTES`] or
/// [`FRONT_RUN_CHUNKS`], at `end` at the latest, and always after at least one chunk.
fn run_end(manifest: &Manifest, first: u32, end: u32) -> u32 {
    let mut bytes = 0u64;
    let mut at = first;
    while at < end && at - first < FRONT_RUN_CHUNKS && (at == first || bytes < FRONT_RUN_BYTES) {
        bytes += u64::from(manifest.chunks[at as usize].length);
        at += 1;
    }
    at
}

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

    /// The manifest of `id`, from wherever this node gets it (an edge counts a hit or a miss).
    pub async fn manifest(&self, id: ContentId) -> Answered<Arc<Manifest>> {
        self.state.metrics.request("manifest");
        manifest_of(&self.state, id, true).await
    }

    /// The span an HTTP request from `peer` is handled in: numbered like the node's STOQ
    /// requests, under the node's span, so its events name the node, the request and the peer.
    pub fn request_span(&self, peer: SocketAddr, method: &str, path: &str) -> tracing::Span {
        let id = self.state.request_ids.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error_span!(parent: &self.state.span, "http", id, %peer, method, path)
    }

    /// The base URL of the HTTP front of `client`'s nearest edge, when that is another node
    /// that announces one (what a redirect sends the client to).
    pub fn nearest_front(&self, client: SocketAddr) -> Option<String> {
        super::locator::nearest_front(&self.state, client)
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

    /// Chunks `run` of `id`, in order. They are read in runs of about [`FRONT_RUN_BYTES`]
    /// (at most [`FRONT_RUN_CHUNKS`] chunks), each run the way GET_CHUNKS reads one (an origin
    /// on one blocking thread, an edge chunk by chunk through its cache). Room for a whole run
    /// is taken in the channel first, then an admission slot (shared as `client`'s, a number
    /// the front gives each of its connections) only while the run is read: a slow client
    /// holds buffered chunks, never a slot. The channel holds two runs, so the next run is read
    /// while the last is sent. It ends after the last chunk, after the first refusal, or when
    /// the consumer has taken nothing for the transport's stall timeout (a client that stopped
    /// reading).
    ///
    /// Every read-ahead chunk also holds its bytes of the node's front-wide budget
    /// (`http.read_ahead_bytes`) until the reader takes it; a run waits for its share like it
    /// waits for channel room.
    pub fn chunks(
        &self,
        id: ContentId,
        manifest: Arc<Manifest>,
        run: Range<u32>,
        client: usize,
    ) -> Arriving {
        // Room for two runs like the first (a content's chunks are of one profile, so its
        // runs hold about as many chunks each): about 2 MiB buffered per reader.
        let first_run = run_end(&manifest, run.start, run.end).saturating_sub(run.start);
        let (tx, rx) = mpsc::channel(2 * first_run.max(1) as usize);
        let state = self.state.clone();
        let budget = state.front_budget.clone();
        let stall = state.endpoint.config().stall_timeout();
        super::spawn_in_span(async move {
            let mut next = run.start;
            while next < run.end {
                // A run never holds more chunks than the channel has room for.
                let fits = next.saturating_add(tx.max_capacity() as u32);
                let part = next..run_end(&manifest, next, run.end).min(fits);
                next = part.end;
                let room = (part.end - part.start) as usize;
                let Ok(Ok(permits)) = tokio::time::timeout(stall, tx.reserve_many(room)).await
                else {
                    return;
                };
                let units_of = |index: u32| units(manifest.chunks[index as usize].length);
                let wanted = part.clone().map(units_of).sum();
                let mut share =
                    match tokio::time::timeout(stall, budget.clone().acquire_many_owned(wanted))
                        .await
                    {
                        Ok(Ok(share)) => share,
                        _ => {
                            let busy =
                                Refusal::busy("the front's read-ahead buffers are full", stall);
                            let _ = tx.send((Err(busy), None)).await;
                            return;
                        }
                    };
                let _slot = match state.admission.enter(Some(client)).await {
                    Ok(slot) => slot,
                    Err(busy) => {
                        state.metrics.busy.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.send((Err(busy), None)).await;
                        return;
                    }
                };
                state.metrics.request("chunk");
                let mut chunks = read_run(&state, id, manifest.clone(), part.clone()).await;
                for (permit, index) in permits.zip(part) {
                    let Some(result) = chunks.recv().await else {
                        return;
                    };
                    let failed = result.is_err();
                    permit.send((result, share.split(units_of(index) as usize)));
                    if failed {
                        return;
                    }
                }
            }
        });
        Arriving(rx)
    }

    /// Whether the front's read-ahead budget has room for a reader to start (two runs); a
    /// read that finds none is answered 503 before its head is sent.
    pub fn has_read_room(&self) -> bool {
        let two_runs = 2 * FRONT_RUN_BYTES / BUDGET_UNIT;
        self.state.front_budget.available_permits() as u64 >= two_runs
    }

    /// The media type recorded for `id` when it was published, if any.
    pub async fn media_type(&self, id: &ContentId) -> Option<String> {
        self.state.media_type(id).await
    }

    /// Keeps a media type the front sniffed for `id`, so later requests need not sniff again.
    pub fn remember_media_type(&self, id: ContentId, media_type: String) {
        self.state.pull.learn_media_type(id, media_type);
    }

    /// Whether this node takes uploads (an origin); the refusal a STOQ PUT gets otherwise.
    pub fn check_publishable(&self) -> Answered<()> {
        match self.state.holdings.store() {
            Some(_) => Ok(()),
            None => Err(not_an_origin(&self.state)),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunking::{ChunkEntry, ContentKind};

    fn manifest(lengths: &[u32]) -> Manifest {
        let mut offset = 0u64;
        let chunks = lengths
            .iter()
            .map(|&length| {
                let entry = ChunkEntry {
                    id: ContentId::of(&offset.to_be_bytes()),
                    offset,
                    length,
                    shards: None,
                };
                offset += u64::from(length);
                entry
            })
            .collect();
        Manifest {
            kind: ContentKind::Binary,
            size: offset,
            erasure: None,
            chunks,
        }
    }

    #[test]
    fn runs_end_near_a_mebibyte_at_most_64_chunks_and_never_empty() {
        let small = manifest(&[64 * 1024; 100]);
        assert_eq!(run_end(&small, 0, 100), 16);
        assert_eq!(run_end(&small, 90, 100), 100);
        let tiny = manifest(&[100; 200]);
        assert_eq!(run_end(&tiny, 0, 200), 64);
        let huge = manifest(&[4 << 20; 3]);
        assert_eq!(run_end(&huge, 0, 3), 1);
        assert_eq!(run_end(&huge, 2, 3), 3);
    }
}
