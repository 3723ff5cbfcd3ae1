//! A store that survives losing its index.
//!
//! The index (`index.redb`) is a cache of what the disk holds, not the only copy: every
//! manifest, read restriction, name, held shard set and placement is also kept as a file
//! ([`super::files`]), written before the index transaction that records it commits, so
//! [`check`] can rebuild a missing or damaged index from the files alone, drop corrupt blobs,
//! and say which contents cannot be recovered.
//!
//! Opening a store whose index is missing while content files exist, or whose index cannot be
//! read, is refused with [`StoreError::IndexUnusable`], which names the repair command; nothing
//! (`gc` least of all) runs against an index that does not describe the disk.

use std::fs;
use std::path::Path;

use redb::{Database, ReadableTable};
use serde::Serialize;

use super::error::io_error;
use super::files::{meta_file, meta_records, MetaKind};
use super::{access, held, BlobHealth, Store, StoreError, BLOBS, MANIFESTS, NAMES};
use crate::chunking::{ContentId, Hash32, Manifest};

/// The index file in a store's directory.
pub(super) const INDEX_FILE: &str = "index.redb";

/// Whether a store directory holds content files (so a missing index means a lost one).
pub(super) fn holds_content(root: &Path) -> bool {
    ["manifests", "blobs"]
        .iter()
        .any(|dir| fs::read_dir(root.join(dir)).is_ok_and(|mut entries| entries.next().is_some()))
}

/// Opens the index at `path`, turning redb's refusal or panic on a damaged file into
/// [`StoreError::IndexUnusable`].
pub(super) fn open_index(root: &Path) -> Result<Database, StoreError> {
    let path = root.join(INDEX_FILE);
    // redb asserts on some damage instead of returning an error. The panic is caught (and its
    // message kept off the terminal) so the caller gets an error that names the repair.
    let opened = quietly(|| Database::create(&path));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(StoreError::Index(format!(
            "{} is in use by another process",
            path.display()
        ))),
        Ok(Err(e)) => Err(StoreError::unusable(root, &e.to_string())),
        Err(_) => Err(StoreError::unusable(root, "its pages are damaged")),
    }
}

thread_local! {
    /// Whether a panic on this thread is expected and caught (see [`quietly`]).
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, catching a panic and keeping its message off the terminal. Only this thread's
/// panics are kept quiet, for as long as `f` runs: the process's panic hook is wrapped once
/// (never swapped back and forth, which would race with other threads doing the same and
/// could leave every later panic unprinted).
fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> std::thread::Result<T> {
    static WRAPPED: std::sync::Once = std::sync::Once::new();
    WRAPPED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let result = std::panic::catch_unwind(f);
    QUIET.with(|q| q.set(false));
    result
}

/// One content a repair could not bring back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unrecoverable {
    /// The content id.
    pub id: String,
    /// Blobs of it that are missing or corrupt.
    pub missing_blobs: usize,
}

/// What `stoq check` found (and, with repair, did).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// `ok`, `missing` or `damaged` (before any repair).
    pub index: String,
    /// Contents whose manifest file is on disk.
    pub contents: usize,
    /// Contents the index describes (after a repair: the rebuilt index).
    pub indexed: usize,
    /// Blobs hashed.
    pub blobs_checked: usize,
    /// Blobs found corrupt (deleted by a repair).
    pub corrupt_blobs: Vec<String>,
    /// Contents with a blob missing or corrupt.
    pub unrecoverable: Vec<Unrecoverable>,
    /// Contents on disk that the index does not list, and index entries with no file.
    pub index_mismatches: usize,
    /// Whether the index was rebuilt.
    pub rebuilt: bool,
}

impl CheckReport {
    /// Whether everything checked out.
    pub fn healthy(&self) -> bool {
        self.index == "ok"
            && self.corrupt_blobs.is_empty()
            && self.unrecoverable.is_empty()
            && self.index_mismatches == 0
    }
}

/// The manifests kept as files under `root`, checked against their ids.
fn manifest_files(root: &Path) -> Vec<(ContentId, Manifest)> {
    let mut found = Vec::new();
    let Ok(dirs) = fs::read_dir(root.join("manifests")) else {
        return found;
    };
    for file in dirs
        .flatten()
        .filter_map(|d| fs::read_dir(d.path()).ok())
        .flatten()
    {
        let path = file.map(|f| f.path());
        let Ok(path) = path else { continue };
        let id = path
            .file_name()
            .and_then(|n| n.to_str()?.parse::<Hash32>().ok());
        let Some(id) = id else { continue };
        let Ok(bytes) = fs::read(&path) else { continue };
        if !id.matches(&bytes) {
            tracing::warn!(content = %id, "a manifest file does not match its id; ignored");
            continue;
        }
        if let Ok(manifest) = Manifest::decode(&bytes) {
            found.push((id, manifest));
        }
    }
    found.sort_by_key(|(id, _)| id.0);
    found
}

/// Checks the store in `root`: the index, every blob a manifest refers to, and that the index
/// and the manifest files agree. With `repair`, a missing or damaged index is rebuilt from the
/// files (the damaged one kept as `index.redb.damaged`), corrupt blobs are deleted, and contents
/// with a missing blob are left out of the index and reported. Never creates a store: `root`
/// must exist.
pub fn check(root: &Path, repair: bool) -> Result<CheckReport, StoreError> {
    check_reporting(root, repair, &mut |_, _| {})
}

/// [`check`], telling `progress` (bytes hashed so far, bytes to hash in all) after each blob,
/// for a progress bar.
pub fn check_reporting(
    root: &Path,
    repair: bool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<CheckReport, StoreError> {
    if !root.is_dir() {
        return Err(StoreError::NoStore(root.display().to_string()));
    }
    let mut report = CheckReport::default();
    let store = match root.join(INDEX_FILE).exists() {
        false => {
            report.index = "missing".into();
            None
        }
        true => match Store::open(root) {
            Ok(store) => {
                report.index = "ok".into();
                Some(store)
            }
            Err(StoreError::IndexUnusable { .. }) => {
                report.index = "damaged".into();
                None
            }
            Err(other) => return Err(other),
        },
    };
    let files = manifest_files(root);
    report.contents = files.len();
    let mut store = match store {
        Some(store) => store,
        None if repair => {
            let index = root.join(INDEX_FILE);
            if index.exists() {
                let aside = root.join(format!("{INDEX_FILE}.damaged"));
                fs::rename(&index, &aside).map_err(io_error("cannot move aside", &index))?;
            }
            report.rebuilt = true;
            Store::create_empty(root)?
        }
        None => return Ok(report),
    };
    // Every blob of every manifest, hashed once.
    let mut sizes = std::collections::HashMap::new();
    for (_, manifest) in &files {
        sizes.extend(Store::blobs_of(manifest));
    }
    let (total, mut hashed) = (sizes.values().sum::<u64>(), 0u64);
    let mut health = std::collections::HashMap::new();
    for (id, manifest) in &files {
        let mut missing = 0;
        for (blob, len) in Store::blobs_of(manifest) {
            let blob = &blob;
            let state = *health.entry(*blob).or_insert_with(|| {
                report.blobs_checked += 1;
                hashed += len;
                progress(hashed, total);
                store.scrub_blob(blob).unwrap_or(BlobHealth::Missing)
            });
            if state == BlobHealth::Corrupt && !report.corrupt_blobs.contains(&blob.to_string()) {
                report.corrupt_blobs.push(blob.to_string());
            }
            missing += usize::from(!matches!(state, BlobHealth::Intact(_)));
        }
        if missing > 0 {
            report.unrecoverable.push(Unrecoverable {
                id: id.to_string(),
                missing_blobs: missing,
            });
        }
    }
    let indexed: std::collections::HashSet<ContentId> = store.content_ids()?.into_iter().collect();
    let on_disk: std::collections::HashSet<ContentId> = files.iter().map(|(id, _)| *id).collect();
    report.index_mismatches = indexed.iter().filter(|id| !on_disk.contains(id)).count()
        + on_disk.iter().filter(|id| !indexed.contains(id)).count();
    if repair {
        for blob in &report.corrupt_blobs {
            let id: Hash32 = blob.parse().expect("ids print as hex");
            let _ = fs::remove_file(store.blob_path(&id));
        }
        let lost: std::collections::HashSet<&str> =
            report.unrecoverable.iter().map(|u| u.id.as_str()).collect();
        for (id, manifest) in &files {
            if !lost.contains(id.to_string().as_str()) && !indexed.contains(id) {
                store.commit_manifest(id, manifest)?;
                let digest = fs::read(meta_file(root, MetaKind::Restricted, id))
                    .ok()
                    .and_then(|d| <[u8; 32]>::try_from(d).ok());
                if let Some(d) = digest {
                    store.set_restriction(id, Some(&d))?;
                }
            }
        }
        // Contents the index lists but no file keeps (a store from before the files): keep
        // them now, so the next loss of the index loses nothing.
        for id in indexed.iter().filter(|id| !on_disk.contains(id)) {
            let manifest = store.manifest(id)?;
            store.keep_manifest_file(id, &manifest.encode())?;
            if let Some(d) = store.restriction(id)? {
                store.keep_restriction_file(id, Some(&d))?;
            }
        }
        store.restore_names(root)?;
        if report.rebuilt {
            store.restore_held(root)?;
        }
        store.sync_data()?;
        report.index_mismatches = 0;
    }
    report.indexed = store.content_ids()?.len();
    Ok(report)
}

impl Store {
    /// The ids of every content the index lists.
    pub fn content_ids(&self) -> Result<Vec<ContentId>, StoreError> {
        self.ids_in(MANIFESTS)
    }

    /// Puts back the shards held for other origins and the placements, from their files; a
    /// holding whose shards are not all intact keeps the ones that are.
    fn restore_held(&mut self, root: &Path) -> Result<(), StoreError> {
        let records = meta_records(root, MetaKind::Held);
        let placements = meta_records(root, MetaKind::Placement);
        let txn = self.db.begin_write()?;
        {
            let mut held = txn.open_table(held::HELD)?;
            let mut blobs = txn.open_table(BLOBS)?;
            for (id, record) in &records {
                let Some((manifest, shards)) = held::decode_held(record) else {
                    continue;
                };
                if !id.matches(manifest) {
                    continue;
                }
                let mut kept = Vec::new();
                for shard in shards {
                    if let Ok(BlobHealth::Intact(len)) = self.scrub_blob(&shard) {
                        let refs = blobs.get(&shard.0)?.map_or(0, |v| v.value().0);
                        blobs.insert(&shard.0, (refs + 1, len))?;
                        kept.push(shard);
                    }
                }
                held.insert(&id.0, held::encode_held(manifest, &kept).as_slice())?;
            }
            let mut table = txn.open_table(held::PLACEMENTS)?;
            for (id, placement) in &placements {
                table.insert(&id.0, placement.as_slice())?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Puts back the names kept as files whose content the index lists.
    fn restore_names(&mut self, root: &Path) -> Result<(), StoreError> {
        let Ok(entries) = fs::read_dir(root.join("meta").join("names")) else {
            return Ok(());
        };
        let txn = self.db.begin_write()?;
        {
            let manifests = txn.open_table(MANIFESTS)?;
            let mut names = txn.open_table(NAMES)?;
            for entry in entries.flatten() {
                let Ok(bytes) = fs::read(entry.path()) else {
                    continue;
                };
                let Ok(record) = crate::edge::names::NameRecord::decode(&bytes) else {
                    continue;
                };
                if manifests.get(&record.id.0)?.is_some() {
                    names.insert(record.name.as_str(), bytes.as_slice())?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }
}

/// The tables every index has.
pub(super) fn create_tables(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write()?;
    txn.open_table(BLOBS)?;
    txn.open_table(MANIFESTS)?;
    txn.open_table(NAMES)?;
    txn.open_table(held::HELD)?;
    txn.open_table(held::PLACEMENTS)?;
    txn.open_table(access::RESTRICTED)?;
    txn.commit()?;
    Ok(())
}
