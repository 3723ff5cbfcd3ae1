//! The files that keep a store recoverable without its index (see [`super::recover`]): each
//! manifest as `manifests/ab/<content id>`, and the small per-content records (read
//! restrictions, held shards, placements) and names under `meta/`, each written through a
//! temporary file and a rename before the index transaction that records it commits.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::io_error;
use super::{Store, StoreError};
use crate::chunking::{ContentId, Hash32};

/// The manifest file of content `id` under `root`.
pub(super) fn manifest_file(root: &Path, id: &ContentId) -> PathBuf {
    let hex = id.to_string();
    root.join("manifests").join(&hex[..2]).join(hex)
}

/// The small records kept as files under `meta/`, one per content.
#[derive(Debug, Clone, Copy)]
pub(super) enum MetaKind {
    /// A read restriction: the 32-byte digest.
    Restricted,
    /// Shards held for content published elsewhere: the `held` table's value.
    Held,
    /// Where a content's shards were placed: the placement document.
    Placement,
    /// The media type recorded at publish: its text.
    MediaType,
}

impl MetaKind {
    fn dir(self) -> &'static str {
        match self {
            MetaKind::Restricted => "restricted",
            MetaKind::Held => "held",
            MetaKind::Placement => "placements",
            MetaKind::MediaType => "types",
        }
    }
}

/// The file of the record of `kind` about `id`.
pub(super) fn meta_file(root: &Path, kind: MetaKind, id: &ContentId) -> PathBuf {
    root.join("meta").join(kind.dir()).join(id.to_string())
}

/// Every record of `kind` kept under `root`.
pub(super) fn meta_records(root: &Path, kind: MetaKind) -> Vec<(ContentId, Vec<u8>)> {
    let Ok(entries) = fs::read_dir(root.join("meta").join(kind.dir())) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_str()?.parse::<Hash32>().ok()?;
            Some((id, fs::read(e.path()).ok()?))
        })
        .collect()
}

fn name_file(root: &Path, name: &str) -> PathBuf {
    // Named by the name's hash: a name may be longer than a file name can be.
    root.join("meta")
        .join("names")
        .join(blake3::hash(name.as_bytes()).to_hex().as_str())
}

/// Writes `bytes` to `path` through a temporary file and a rename (durable at the next sync).
fn write_atomically(store: &Store, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().expect("store files have a parent");
    fs::create_dir_all(dir).map_err(io_error("cannot create", dir))?;
    let tmp = store.tmp_path("meta");
    let result = fs::write(&tmp, bytes)
        .map_err(io_error("cannot write", &tmp))
        .and_then(|()| fs::rename(&tmp, path).map_err(io_error("cannot rename into", path)));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl Store {
    /// Keeps the manifest of `id` as a file beside the blobs (see the module doc).
    pub(super) fn keep_manifest_file(
        &self,
        id: &ContentId,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        write_atomically(self, &manifest_file(&self.root, id), bytes)
    }

    /// Forgets the manifest file of deleted content.
    pub(super) fn forget_manifest_file(&self, id: &ContentId) {
        let _ = fs::remove_file(manifest_file(&self.root, id));
        self.forget_meta(MetaKind::Restricted, id);
        self.forget_meta(MetaKind::MediaType, id);
    }

    /// Keeps a record of `kind` about `id` as a file.
    pub(super) fn keep_meta(
        &self,
        kind: MetaKind,
        id: &ContentId,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        write_atomically(self, &meta_file(&self.root, kind, id), bytes)
    }

    /// Removes the record of `kind` about `id`.
    pub(super) fn forget_meta(&self, kind: MetaKind, id: &ContentId) {
        let _ = fs::remove_file(meta_file(&self.root, kind, id));
    }

    /// Keeps (or, with `None`, removes) the read restriction of `id` as a file.
    pub(super) fn keep_restriction_file(
        &self,
        id: &ContentId,
        digest: Option<&[u8; 32]>,
    ) -> Result<(), StoreError> {
        match digest {
            Some(d) => self.keep_meta(MetaKind::Restricted, id, d),
            None => {
                self.forget_meta(MetaKind::Restricted, id);
                Ok(())
            }
        }
    }

    /// Records (or, with `None`, forgets) the media type of `id`. It is kept as a file only:
    /// there is nothing to rebuild if the index is lost.
    pub fn set_media_type(
        &self,
        id: &ContentId,
        media_type: Option<&str>,
    ) -> Result<(), StoreError> {
        match media_type {
            Some(t) => self.keep_meta(MetaKind::MediaType, id, t.as_bytes()),
            None => {
                self.forget_meta(MetaKind::MediaType, id);
                Ok(())
            }
        }
    }

    /// The media type recorded for `id`, if any.
    pub fn media_type(&self, id: &ContentId) -> Option<String> {
        let bytes = fs::read(meta_file(&self.root, MetaKind::MediaType, id)).ok()?;
        String::from_utf8(bytes).ok()
    }

    /// Keeps the encoded record of `name` as a file.
    pub(super) fn keep_name_file(&self, name: &str, record: &[u8]) -> Result<(), StoreError> {
        write_atomically(self, &name_file(&self.root, name), record)
    }
}
