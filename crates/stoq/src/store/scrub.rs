//! Verify once, then scrub: which blobs were checked since the store was opened, and the
//! background walk that checks every blob again.
//!
//! Hashing every chunk on every read costs a serving node a hash pass per byte sent, although
//! every client verifies what it receives. So a blob is hashed on its first read after the
//! store opens and trusted from then on, and a scrub ([`Store::scrub_blob`] over
//! [`Store::blob_ids`]) re-hashes every blob in the background. A byte that flips on disk after
//! a blob was trusted is caught by the scrub, which withdraws the trust: the next read hashes
//! the blob again and refuses it (an erasure-coded chunk is rebuilt from its parity). Until the
//! scrub comes round, a client that receives the flipped byte notices it (it verifies every
//! chunk) and fetches the chunk elsewhere.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Mutex;

use super::error::io_error;
use super::{Store, StoreError, BLOBS};
use crate::chunking::ChunkId;

/// The most blob ids kept as verified (32 bytes each plus the set's overhead, about 48 MiB;
/// 64 GiB of 64 KiB chunks). Past it, blobs are hashed on every read.
pub const MAX_VERIFIED: usize = 1 << 20;

/// The ids whose files were hashed since they were opened (a store's blobs, an edge's cache
/// entries), at most [`MAX_VERIFIED`] of them.
#[derive(Debug, Default)]
pub struct Verified(Mutex<HashSet<ChunkId>>);

impl Verified {
    /// Whether `id` was hashed and is trusted.
    pub fn contains(&self, id: &ChunkId) -> bool {
        self.0.lock().expect("verified lock").contains(id)
    }

    /// Trusts `id` (its bytes were just hashed), while there is room.
    pub fn insert(&self, id: ChunkId) {
        let mut set = self.0.lock().expect("verified lock");
        if set.len() < MAX_VERIFIED {
            set.insert(id);
        }
    }

    /// Withdraws trust: the next read of `id` hashes it again.
    pub fn remove(&self, id: &ChunkId) {
        self.0.lock().expect("verified lock").remove(id);
    }

    /// Every trusted id, for a scrub to check again.
    pub fn ids(&self) -> Vec<ChunkId> {
        self.0
            .lock()
            .expect("verified lock")
            .iter()
            .copied()
            .collect()
    }
}

/// What the scrub found for one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobHealth {
    /// Its bytes hash to its id; this many of them.
    Intact(u64),
    /// Its bytes do not hash to its id.
    Corrupt,
    /// The index refers to it but its file is gone.
    Missing,
}

/// Reads the file at `path` and says whether it holds the bytes of `id` (a missing file is
/// `Missing`; other read failures are errors). The one check the store's and the edge cache's
/// scrubs share.
pub fn health_of(path: &Path, id: &ChunkId) -> io::Result<BlobHealth> {
    match fs::read(path) {
        Ok(bytes) if id.matches(&bytes) => Ok(BlobHealth::Intact(bytes.len() as u64)),
        Ok(_) => Ok(BlobHealth::Corrupt),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BlobHealth::Missing),
        Err(e) => Err(e),
    }
}

impl Store {
    /// The ids of every blob the index refers to, for a scrub to walk one at a time.
    pub fn blob_ids(&self) -> Result<Vec<ChunkId>, StoreError> {
        self.ids_in(BLOBS)
    }

    /// Hashes blob `id` again. A corrupt or missing blob loses its trust, so its next read
    /// hashes it and refuses it; an intact one is trusted.
    pub fn scrub_blob(&self, id: &ChunkId) -> Result<BlobHealth, StoreError> {
        let path = self.blob_path(id);
        let health = health_of(&path, id).map_err(io_error("cannot read", &path))?;
        match health {
            BlobHealth::Intact(_) => self.verified.insert(*id),
            _ => {
                self.verified.remove(id);
                tracing::warn!(blob = %id, ?health, "scrub: a stored blob is damaged");
            }
        }
        Ok(health)
    }
}
