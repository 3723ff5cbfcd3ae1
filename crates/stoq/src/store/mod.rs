//! The on-disk content store: chunk data as content-addressed files, an embedded redb index.
//!
//! Layout under the data dir:
//! - `blobs/ab/abcdef…`: one file per chunk (or erasure shard), named by its BLAKE3 hash;
//! - `tmp/`: blobs being written; emptied at open;
//! - `index.redb`: blob refcounts and lengths, and the manifests.
//!
//! Writes are atomic and durable in this order: each new blob is written to `tmp/`, renamed
//! into `blobs/`, the filesystem is synced, and only then does the index transaction that
//! refers to them commit. A crash at any point leaves every committed object intact and no
//! index entry pointing at missing data; blobs of an interrupted put are orphans that
//! [`Store::gc`] removes. Every blob is checked against its id on its first read after the
//! store opens and again by the scrub ([`scrub`]), which withdraws trust from a damaged one.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::chunking::{
    erasure, ChunkEngine, ChunkEntry, ChunkId, ContentId, ErasurePolicy, FastCdcEngine, Hash32,
    Manifest,
};

/// Blob id → (refcount, length).
mod access;
mod error;
mod files;
mod held;
mod put;
mod recover;
mod reports;
mod scrub;

use error::io_error;
pub use error::StoreError;
pub use recover::{check, check_reporting, CheckReport, Unrecoverable};
pub use reports::{GcReport, PutOptions, PutReport, ReadReport, StoreStats};
pub use scrub::{health_of, BlobHealth, Verified, MAX_VERIFIED};

/// A file that exists while a put runs: found at open, it means a put was killed, and its
/// orphan blobs are collected.
const PUT_MARKER: &str = "put-in-progress";

const BLOBS: TableDefinition<&[u8; 32], (u64, u64)> = TableDefinition::new("blobs");
/// Content id → encoded manifest.
const MANIFESTS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("manifests");
/// Name → encoded [`crate::edge::names::NameRecord`].
const NAMES: TableDefinition<&str, &[u8]> = TableDefinition::new("names");

/// The content store of one node.
pub struct Store {
    root: PathBuf,
    db: Database,
    engine: Arc<dyn ChunkEngine>,
    tmp_counter: AtomicU64,
    verified: Verified,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("root", &self.root).finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `root` with the default chunk engine.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        Self::open_with(root, Arc::new(FastCdcEngine))
    }

    /// Opens (or creates) the store in `root` with a chunk engine of the host's choosing. A
    /// store whose index is missing while content files exist, or unreadable, is refused
    /// ([`StoreError::IndexUnusable`]): [`check`] repairs it.
    pub fn open_with(root: &Path, engine: Arc<dyn ChunkEngine>) -> Result<Self, StoreError> {
        if !root.join(recover::INDEX_FILE).exists() && recover::holds_content(root) {
            return Err(StoreError::unusable(root, "it is missing"));
        }
        Self::open_unchecked(root, engine)
    }

    /// Opens a store that must already exist (commands that only read create nothing).
    pub fn open_existing(root: &Path) -> Result<Self, StoreError> {
        if !root.join(recover::INDEX_FILE).exists() && !recover::holds_content(root) {
            return Err(StoreError::NoStore(root.display().to_string()));
        }
        Self::open(root)
    }

    /// A store with a fresh, empty index over whatever files `root` holds (a repair fills it).
    fn create_empty(root: &Path) -> Result<Self, StoreError> {
        Self::open_unchecked(root, Arc::new(FastCdcEngine))
    }

    fn open_unchecked(root: &Path, engine: Arc<dyn ChunkEngine>) -> Result<Self, StoreError> {
        for dir in [root.to_path_buf(), root.join("blobs"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(io_error("cannot create", &dir))?;
        }
        // Half-written files of an interrupted put: never referenced, safe to drop.
        let tmp = root.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(io_error("cannot list", &tmp))? {
            let path = entry.map_err(io_error("cannot list", &tmp))?.path();
            let _ = fs::remove_file(&path);
        }
        let db = recover::open_index(root)?;
        recover::create_tables(&db)?;
        let mut store = Store {
            root: root.to_path_buf(),
            db,
            engine,
            tmp_counter: AtomicU64::new(0),
            verified: Default::default(),
        };
        let marker = root.join(PUT_MARKER);
        if marker.exists() {
            let report = store.gc()?;
            tracing::warn!(
                orphans = report.orphans_removed,
                bytes = report.bytes_freed,
                "a put was interrupted; its orphan blobs were removed"
            );
            let _ = fs::remove_file(&marker);
        }
        Ok(store)
    }

    /// The keys (ids) of one of the index's tables.
    fn ids_in<V: redb::Value + 'static>(
        &self,
        definition: TableDefinition<&[u8; 32], V>,
    ) -> Result<Vec<Hash32>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(definition)?;
        let mut ids = Vec::new();
        for row in table.iter()? {
            ids.push(Hash32(*row?.0.value()));
        }
        Ok(ids)
    }

    /// A fresh temporary file name under `tmp/`.
    fn tmp_path(&self, prefix: &str) -> PathBuf {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{prefix}.{}.{n}", std::process::id()))
    }

    fn blob_path(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_string();
        self.root.join("blobs").join(&hex[..2]).join(hex)
    }

    /// Writes a blob file atomically (temp file, then rename). Durability comes from the
    /// filesystem sync before the index commit.
    fn write_blob(&self, id: &ChunkId, data: &[u8]) -> Result<(), StoreError> {
        let path = self.blob_path(id);
        let dir = path.parent().expect("blob paths have a parent");
        fs::create_dir_all(dir).map_err(io_error("cannot create", dir))?;
        let tmp = self.tmp_path(&id.to_string());
        let result = (|| {
            let mut file = File::create(&tmp).map_err(io_error("cannot create", &tmp))?;
            file.write_all(data)
                .map_err(io_error("cannot write", &tmp))?;
            fs::rename(&tmp, &path).map_err(io_error("cannot rename into", &path))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Flushes every written file of this filesystem before the index commits.
    fn sync_data(&self) -> Result<(), StoreError> {
        let dir = File::open(&self.root).map_err(io_error("cannot open", &self.root))?;
        rustix::fs::syncfs(&dir).map_err(|e| io_error("cannot sync", &self.root)(e.into()))
    }

    /// Whether blob `id` is on disk and matches its id (trusted blobs are not hashed again).
    fn blob_intact(&self, id: &ChunkId) -> bool {
        self.verified.contains(id) || matches!(self.read_blob(id, false), Ok(Some(_)))
    }

    /// Reads a blob and checks it against its id; `None` if missing or corrupt.
    fn read_verified(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_blob(id, true)
    }

    /// Reads a blob and checks it against its id. A missing blob is logged as a disk fault
    /// when the index says it should be there (`expected`), and is a plain miss otherwise.
    fn read_blob(&self, id: &ChunkId, expected: bool) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.blob_path(id);
        match fs::read(&path) {
            // Hashed once after the store opened, then trusted until a scrub says otherwise.
            Ok(bytes) if self.verified.contains(id) => Ok(Some(bytes)),
            Ok(bytes) if id.matches(&bytes) => {
                self.verified.insert(*id);
                Ok(Some(bytes))
            }
            Ok(_) => {
                tracing::warn!(blob = %id, "corrupt blob: bytes do not match their id");
                Ok(None)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if expected {
                    tracing::warn!(blob = %id, "blob missing from disk");
                }
                Ok(None)
            }
            Err(e) => Err(io_error("cannot read", &path)(e)),
        }
    }

    /// The distinct blobs a manifest refers to, with their lengths.
    fn blobs_of(manifest: &Manifest) -> HashMap<ChunkId, u64> {
        let mut blobs = HashMap::new();
        for c in &manifest.chunks {
            match &c.shards {
                None => {
                    blobs.insert(c.id, u64::from(c.length));
                }
                Some(s) => {
                    for id in &s.ids {
                        blobs.insert(*id, u64::from(s.shard_len));
                    }
                }
            }
        }
        blobs
    }

    /// One index transaction: the manifest, and one more reference on each distinct blob.
    /// Storing content that is already there changes nothing.
    fn commit_manifest(&self, id: &ContentId, manifest: &Manifest) -> Result<(), StoreError> {
        let txn = self.db.begin_write()?;
        {
            let mut manifests = txn.open_table(MANIFESTS)?;
            if manifests.get(&id.0)?.is_some() {
                return Ok(());
            }
            manifests.insert(&id.0, manifest.encode().as_slice())?;
            let mut blobs = txn.open_table(BLOBS)?;
            for (blob, len) in Self::blobs_of(manifest) {
                let refs = blobs.get(&blob.0)?.map_or(0, |v| v.value().0);
                blobs.insert(&blob.0, (refs + 1, len))?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// The manifest of stored content.
    pub fn manifest(&self, id: &ContentId) -> Result<Manifest, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MANIFESTS)?;
        let bytes = table.get(&id.0)?.ok_or(StoreError::NotFound(*id))?;
        Ok(Manifest::decode(bytes.value())?)
    }

    /// Points `name` at `id` with the given freshness; returns the record (its version one more
    /// than the previous). The content must be in the store.
    pub fn set_name(
        &mut self,
        name: &str,
        id: &ContentId,
        ttl_s: u32,
        swr_s: u32,
    ) -> Result<crate::edge::names::NameRecord, StoreError> {
        crate::edge::names::check_name(name).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if !self.contains(id)? {
            return Err(StoreError::NotFound(*id));
        }
        let txn = self.db.begin_write()?;
        let record = {
            let mut names = txn.open_table(NAMES)?;
            let version = match names.get(name)? {
                Some(old) => {
                    crate::edge::names::NameRecord::decode(old.value()).map_or(0, |r| r.version)
                }
                None => 0,
            } + 1;
            let record = crate::edge::names::NameRecord {
                name: name.to_owned(),
                id: *id,
                ttl_s,
                swr_s,
                version,
            };
            let encoded = record.encode();
            self.keep_name_file(name, &encoded)?;
            self.sync_data()?;
            names.insert(name, encoded.as_slice())?;
            record
        };
        txn.commit()?;
        Ok(record)
    }

    /// The record for `name`, if set.
    pub fn name(&self, name: &str) -> Result<Option<crate::edge::names::NameRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NAMES)?;
        let record = table.get(name)?;
        Ok(record.and_then(|r| crate::edge::names::NameRecord::decode(r.value()).ok()))
    }

    /// Whether the store holds this content.
    pub fn contains(&self, id: &ContentId) -> Result<bool, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(MANIFESTS)?.get(&id.0)?.is_some())
    }

    /// The bytes of one chunk, verified; erasure-coded chunks are rebuilt from any k good
    /// shards and bad shards are rewritten.
    pub fn read_chunk(
        &self,
        content: &ContentId,
        entry: &ChunkEntry,
        policy: Option<ErasurePolicy>,
    ) -> Result<(Vec<u8>, usize), StoreError> {
        let corrupt = || StoreError::Corrupt {
            chunk: entry.id,
            content: *content,
        };
        match (&entry.shards, policy) {
            (Some(set), Some(policy)) => {
                let k = usize::from(policy.k);
                let mut shards: Vec<Option<Vec<u8>>> = Vec::with_capacity(set.ids.len());
                for (i, id) in set.ids.iter().enumerate() {
                    // Parity is read only if a data shard is bad.
                    if i >= k && shards.iter().take(k).all(Option::is_some) {
                        shards.push(None);
                        continue;
                    }
                    shards.push(self.read_verified(id)?);
                }
                let chunk = erasure::decode(&shards, policy, entry.length as usize)
                    .map_err(|_| corrupt())?;
                if !entry.id.matches(&chunk) {
                    return Err(corrupt());
                }
                let bad: Vec<usize> = (0..shards.len())
                    .filter(|&i| i < k && shards[i].is_none())
                    .collect();
                if !bad.is_empty() {
                    let fresh = erasure::encode(&chunk, policy)?;
                    for &i in &bad {
                        self.write_blob(&set.ids[i], &fresh[i])?;
                        tracing::warn!(shard = %set.ids[i], "repaired shard from parity");
                    }
                    self.sync_data()?;
                }
                Ok((chunk, bad.len()))
            }
            _ => {
                let bytes = self.read_verified(&entry.id)?.ok_or_else(corrupt)?;
                Ok((bytes, 0))
            }
        }
    }

    /// Writes the content to `out`, chunk by chunk, each verified before it is written.
    pub fn get_to<W: Write>(&self, id: &ContentId, out: &mut W) -> Result<ReadReport, StoreError> {
        let manifest = self.manifest(id)?;
        let mut report = ReadReport::default();
        for entry in &manifest.chunks {
            let (bytes, repaired) = self.read_chunk(id, entry, manifest.erasure)?;
            out.write_all(&bytes)
                .map_err(io_error("cannot write", Path::new("output")))?;
            report.bytes += bytes.len() as u64;
            report.repaired_shards += repaired;
        }
        Ok(report)
    }

    /// Removes content; blobs no other content uses are deleted.
    pub fn delete(&mut self, id: &ContentId) -> Result<GcReport, StoreError> {
        let manifest = self.manifest(id)?;
        let mut freed = Vec::new();
        let txn = self.db.begin_write()?;
        {
            let mut manifests = txn.open_table(MANIFESTS)?;
            manifests.remove(&id.0)?;
            txn.open_table(access::RESTRICTED)?.remove(&id.0)?;
            let mut blobs = txn.open_table(BLOBS)?;
            for (blob, len) in Self::blobs_of(&manifest) {
                let refs = blobs.get(&blob.0)?.map_or(0, |v| v.value().0);
                if refs <= 1 {
                    blobs.remove(&blob.0)?;
                    freed.push((blob, len));
                } else {
                    blobs.insert(&blob.0, (refs - 1, len))?;
                }
            }
        }
        txn.commit()?;
        self.forget_manifest_file(id);
        let mut report = GcReport::default();
        for (blob, len) in freed {
            if fs::remove_file(self.blob_path(&blob)).is_ok() {
                report.orphans_removed += 1;
                report.bytes_freed += len;
            }
        }
        Ok(report)
    }

    /// Removes blob files that no index entry refers to.
    pub fn gc(&mut self) -> Result<GcReport, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(BLOBS)?;
        let mut report = GcReport::default();
        let blobs = self.root.join("blobs");
        for dir in fs::read_dir(&blobs).map_err(io_error("cannot list", &blobs))? {
            let dir = dir.map_err(io_error("cannot list", &blobs))?.path();
            let Ok(files) = fs::read_dir(&dir) else {
                continue;
            };
            for file in files.flatten() {
                let path = file.path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                let referenced = match name.parse::<Hash32>() {
                    Ok(id) => table.get(&id.0)?.is_some(),
                    Err(_) => false,
                };
                if !referenced {
                    let len = file.metadata().map_or(0, |m| m.len());
                    if fs::remove_file(&path).is_ok() {
                        report.orphans_removed += 1;
                        report.bytes_freed += len;
                    }
                }
            }
        }
        Ok(report)
    }

    /// Checks that every indexed blob exists and matches its id, and that every manifest's
    /// blobs are indexed. Returns the problems found (empty = consistent).
    pub fn check(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read()?;
        let blobs = txn.open_table(BLOBS)?;
        let manifests = txn.open_table(MANIFESTS)?;
        let mut problems = Vec::new();
        for row in blobs.iter()? {
            let (id, _) = row?;
            let id = Hash32(*id.value());
            if !matches!(self.scrub_blob(&id)?, BlobHealth::Intact(_)) {
                problems.push(format!("blob {id} is indexed but missing or corrupt"));
            }
        }
        for row in manifests.iter()? {
            let (id, bytes) = row?;
            let manifest = Manifest::decode(bytes.value())?;
            for blob in Self::blobs_of(&manifest).keys() {
                if blobs.get(&blob.0)?.is_none() {
                    problems.push(format!(
                        "content {} refers to unindexed blob {blob}",
                        Hash32(*id.value())
                    ));
                }
            }
        }
        Ok(problems)
    }

    /// Totals: objects, logical and stored bytes, dedup ratio.
    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        let txn = self.db.begin_read()?;
        let blobs = txn.open_table(BLOBS)?;
        let manifests = txn.open_table(MANIFESTS)?;
        let mut stored_bytes = 0u64;
        for row in blobs.iter()? {
            stored_bytes += row?.1.value().1;
        }
        let mut logical_bytes = 0u64;
        for row in manifests.iter()? {
            logical_bytes += Manifest::decode(row?.1.value())?.size;
        }
        Ok(StoreStats {
            objects: manifests.len()?,
            logical_bytes,
            blobs: blobs.len()?,
            stored_bytes,
            dedup_ratio: if stored_bytes == 0 {
                0.0
            } else {
                logical_bytes as f64 / stored_bytes as f64
            },
        })
    }
}
