//! What store operations take and report.

use crate::chunking::{ContentId, ContentKind, ErasurePolicy};

/// Options of a put.
#[derive(Debug, Clone, Copy, Default)]
pub struct PutOptions {
    /// Erasure-code every chunk into k+m shards (stored instead of the chunk).
    pub erasure: Option<ErasurePolicy>,
    /// Chunk as this kind instead of sniffing the content.
    pub kind: Option<ContentKind>,
}

/// What a put did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PutReport {
    /// The content id.
    #[serde(serialize_with = "as_text")]
    pub id: ContentId,
    /// Bytes of content.
    pub size: u64,
    /// Chunks in the manifest.
    pub chunks: usize,
    /// Chunks this store did not have before.
    pub new_chunks: usize,
    /// Bytes written for new blobs (chunks or shards).
    pub new_bytes: u64,
    /// The content kind used for chunking.
    pub kind: ContentKind,
}

fn as_text<S: serde::Serializer>(id: &ContentId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

/// What a read found and fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ReadReport {
    /// Bytes delivered.
    pub bytes: u64,
    /// Shards found corrupt or missing and rewritten from parity.
    pub repaired_shards: usize,
}

/// Totals of a store.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StoreStats {
    /// Objects (manifests).
    pub objects: u64,
    /// Sum of the objects' sizes.
    pub logical_bytes: u64,
    /// Distinct blobs.
    pub blobs: u64,
    /// Bytes of distinct blobs on disk.
    pub stored_bytes: u64,
    /// logical / stored (1 with no sharing; higher is better; 0 for an empty store).
    pub dedup_ratio: f64,
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct GcReport {
    /// Blob files no index entry refers to (from interrupted puts or deletes).
    pub orphans_removed: u64,
    /// Their bytes.
    pub bytes_freed: u64,
}
