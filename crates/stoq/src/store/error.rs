//! Why a store operation failed.

use std::io;
use std::path::Path;

use crate::chunking::{erasure, ChunkId, ContentId, ManifestError};

/// Why a store operation failed. The store is intact after every one of these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The disk is full; nothing of the failed operation was committed.
    #[error("disk full while writing {path}: nothing was committed, the store is intact")]
    DiskFull {
        /// The file being written.
        path: String,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The index database failed.
    #[error("index: {0}")]
    Index(String),
    /// No such content in this store.
    #[error("content {0} is not in this store")]
    NotFound(ContentId),
    /// Input that cannot be used (a bad name, a manifest or shard that does not match its id).
    #[error("{0}")]
    Invalid(String),
    /// A chunk's bytes do not match its id and no parity could rebuild it.
    #[error("chunk {chunk} of content {content} is corrupt or missing and cannot be rebuilt here")]
    Corrupt {
        /// The bad chunk.
        chunk: ChunkId,
        /// The content it belongs to.
        content: ContentId,
    },
    /// A stored manifest is unreadable.
    #[error("manifest: {0}")]
    Manifest(#[from] ManifestError),
    /// The index is missing (while content files exist) or cannot be read; nothing was done.
    #[error("the index of the store in {root} cannot be used ({why}); nothing was changed: run `stoq check --repair --data-dir {root}` to rebuild it from the files beside it")]
    IndexUnusable {
        /// The store's directory.
        root: String,
        /// What is wrong with the index.
        why: String,
    },
    /// A command that only reads was pointed at a directory with no store.
    #[error("there is no store in {0}")]
    NoStore(String),
    /// Erasure coding failed.
    #[error("erasure: {0}")]
    Erasure(#[from] erasure::ErasureError),
}

macro_rules! index_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Index(e.to_string())
            }
        }
    )*};
}
index_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl StoreError {
    pub(super) fn unusable(root: &Path, why: &str) -> Self {
        StoreError::IndexUnusable {
            root: root.display().to_string(),
            why: why.to_owned(),
        }
    }
}

pub(super) fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.display().to_string();
    move |source| {
        if source.kind() == io::ErrorKind::StorageFull {
            StoreError::DiskFull { path }
        } else {
            StoreError::Io { what, path, source }
        }
    }
}
