//! `stoq put DIR` publishes a directory as a collection (every file as its own content, then
//! the collection listing them), to a local store or an origin; `stoq get ID -o DIR` restores
//! a collection to a directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use serde::Serialize;
use stoq::chunking::collection::check_path;
use stoq::chunking::{Collection, CollectionEntry, ContentId, ContentKind};
use stoq::http::media::{sniff_type, type_of_name};
use stoq::protocol::{read_digest, PutSettings};
use stoq::store::{PutOptions, Store};

use crate::cli::PutArgs;
use crate::progress::Counting;
use crate::usage::usage;

/// What one put stored: the same fields whether it went to a store or an origin.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct Stored {
    size: u64,
    chunks: usize,
    new_chunks: usize,
    new_bytes: u64,
}

/// What `stoq put DIR --json` prints.
#[derive(Debug, Serialize)]
struct PutDirAnswer {
    id: ContentId,
    kind: &'static str,
    files: usize,
    /// Bytes of the files (the listing not counted).
    size: u64,
    chunks: usize,
    new_chunks: usize,
    new_bytes: u64,
    elapsed_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
}

/// Every regular file under `dir` with its collection path, sorted by path. Symbolic links
/// are followed to files but never into directories (no loops); a name that is not UTF-8 or
/// not a safe path is a usage error.
fn files_of(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let mut pending = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, at)) = pending.pop() {
        let entries =
            std::fs::read_dir(&at).with_context(|| format!("cannot read {}", at.display()))?;
        for entry in entries {
            let entry = entry?;
            let name = entry
                .file_name()
                .into_string()
                .map_err(|n| usage(format!("{:?} in {}: names must be UTF-8", n, at.display())))?;
            let path = format!("{prefix}{name}");
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push((format!("{path}/"), entry.path()));
            } else if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
                check_path(&path).map_err(|why| usage(format!("{path:?}: {why}")))?;
                found.push((path, entry.path()));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The media type a file is served with: from its name, else sniffed from its first bytes.
fn media_type_of(path: &str, file: &Path) -> Result<String> {
    if let Some(t) = type_of_name(path) {
        return Ok(t);
    }
    let mut head = Vec::with_capacity(4096);
    use std::io::Read;
    std::fs::File::open(file)?
        .take(4096)
        .read_to_end(&mut head)?;
    Ok(sniff_type(&head))
}

/// The media type a file published alone is recorded with, from its name (as what it holds
/// when `gunzip`: `x.tar.gz` and `x.tgz` are recorded as a tar).
pub fn type_for_file(file: &Path, gunzip: bool) -> Option<String> {
    let name = file.file_name()?.to_str()?;
    let name = match gunzip {
        true => match name.strip_suffix(".tgz") {
            Some(stem) => format!("{stem}.tar"),
            None => name.strip_suffix(".gz").unwrap_or(name).to_owned(),
        },
        false => name.to_owned(),
    };
    type_of_name(&name)
}

/// A file in the temp dir holding `bytes`, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn with(bytes: &[u8]) -> Result<Self> {
        let path =
            std::env::temp_dir().join(format!("stoq-collection-{}.json", std::process::id()));
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(TempFile(path))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Publishes every file, then the listing; `put` stores one file with an optional kind.
async fn publish_dir<F, Fut>(
    dir: &Path,
    bar: &ProgressBar,
    mut put: F,
) -> Result<(ContentId, usize, Stored)>
where
    F: FnMut(PathBuf, Option<ContentKind>, Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(ContentId, Stored)>>,
{
    let files = files_of(dir)?;
    let mut sizes = 0;
    for (_, file) in &files {
        sizes += std::fs::metadata(file)?.len();
    }
    bar.set_length(sizes);
    let mut total = Stored::default();
    let mut entries = Vec::with_capacity(files.len());
    for (path, file) in &files {
        let media_type = media_type_of(path, file)?;
        let (id, stored) = put(file.clone(), None, Some(media_type.clone()))
            .await
            .with_context(|| format!("cannot publish {}", file.display()))?;
        total.size += stored.size;
        total.chunks += stored.chunks;
        total.new_chunks += stored.new_chunks;
        total.new_bytes += stored.new_bytes;
        entries.push(CollectionEntry {
            path: path.clone(),
            id,
            size: stored.size,
            media_type,
        });
    }
    let listing = Collection::new(entries).map_err(usage)?;
    bar.finish_and_clear();
    let doc = TempFile::with(&listing.encode())?;
    let (id, stored) = put(doc.0.clone(), Some(ContentKind::Collection), None).await?;
    total.chunks += stored.chunks;
    total.new_chunks += stored.new_chunks;
    total.new_bytes += stored.new_bytes;
    Ok((id, files.len(), total))
}

/// `stoq put DIR [--node ADDR | --data-dir DIR]`.
pub async fn put(args: PutArgs) -> Result<()> {
    if args.gunzip {
        return Err(usage("--gunzip takes a file, not a directory"));
    }
    if args.kind.is_some() {
        return Err(usage(
            "--kind takes a file; a directory's files are each sniffed",
        ));
    }
    let erasure = args.erasure_policy()?;
    let started = Instant::now();
    let bar = crate::progress::bytes(0, args.json);
    let (id, files, total, node) = match &args.node {
        None => {
            let mut store = Store::open(&args.data_dir)
                .with_context(|| format!("cannot open the store in {}", args.data_dir.display()))?;
            let store = &mut store;
            let (id, files, total) = publish_dir(&args.file, &bar, |file, kind, media_type| {
                let report = store
                    .put_file_reporting(&file, PutOptions { erasure, kind }, &mut |n| bar.inc(n))
                    .and_then(|r| {
                        store
                            .set_media_type(&r.id, media_type.as_deref())
                            .map(|()| r)
                    });
                async move {
                    let r = report?;
                    Ok((r.id, stored(r.size, r.chunks, r.new_chunks, r.new_bytes)))
                }
            })
            .await?;
            (id, files, total, None)
        }
        Some(node) => {
            let remote = crate::session::Publisher::open(node, args.token_file.as_deref()).await?;
            let read_digest = crate::session::read_token(args.read_token_file.as_deref())?
                .map(|t| read_digest(&t));
            let remote_ref = &remote;
            let bar_ref = &bar;
            let (id, files, total) =
                publish_dir(&args.file, bar_ref, |file, kind, media_type| async move {
                    let settings = PutSettings {
                        erasure,
                        kind,
                        read_digest,
                        media_type,
                    };
                    let a = remote_ref.publish(&file, settings, bar_ref).await?;
                    Ok((a.id, stored(a.size, a.chunks, a.new_chunks, a.new_bytes)))
                })
                .await?;
            let addr = SocketAddr::V6(remote.addr).to_string();
            remote.hang_up().await;
            (id, files, total, Some(addr))
        }
    };
    let elapsed = started.elapsed();
    if args.json {
        let answer = PutDirAnswer {
            id,
            kind: "collection",
            files,
            size: total.size,
            chunks: total.chunks,
            new_chunks: total.new_chunks,
            new_bytes: total.new_bytes,
            elapsed_ms: elapsed.as_secs_f64() * 1e3,
            node,
        };
        println!("{}", serde_json::to_string(&answer)?);
    } else {
        println!("{id}");
        eprintln!(
            "published {files} files ({} bytes, {} new) as a collection in {:.0} ms",
            total.size,
            total.new_bytes,
            elapsed.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

fn stored(size: u64, chunks: usize, new_chunks: usize, new_bytes: u64) -> Stored {
    Stored {
        size,
        chunks,
        new_chunks,
        new_bytes,
    }
}

/// A progress bar over the bytes of `collection`'s files.
pub fn restore_bar(collection: &Collection, json: bool) -> ProgressBar {
    let total = collection.entries().iter().map(|e| e.size).sum();
    crate::progress::bytes(total, json)
}

/// Restores `collection` under `dir`: each file fetched by `fetch` into a `.part` file that
/// is renamed into place once whole. Returns the files and bytes written.
pub async fn restore<F, Fut>(
    collection: &Collection,
    dir: &Path,
    mut fetch: F,
) -> Result<(usize, u64)>
where
    F: FnMut(ContentId, PathBuf) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    if dir.exists() && !dir.is_dir() {
        bail!(
            "{} is a file; a collection is restored to a directory",
            dir.display()
        );
    }
    let mut bytes = 0;
    for entry in collection.entries() {
        // Paths were checked when the listing was decoded: relative, no '..'.
        let path = dir.join(&entry.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let part = PathBuf::from(format!("{}.part", path.display()));
        fetch(entry.id, part.clone())
            .await
            .with_context(|| format!("cannot fetch {}", entry.path))?;
        std::fs::rename(&part, &path)?;
        bytes += entry.size;
    }
    Ok((collection.entries().len(), bytes))
}

/// `stoq get ID -o DIR --data-dir STORE` for a collection.
pub async fn get_local(store: &Store, id: &ContentId, dir: &Path, json: bool) -> Result<()> {
    let started = Instant::now();
    let mut doc = Vec::new();
    store.get_to(id, &mut doc)?;
    let collection = Collection::decode(&doc)?;
    let bar = restore_bar(&collection, json);
    let (files, bytes) = restore(&collection, dir, |entry, part| {
        let result = (|| {
            let mut out = Counting {
                inner: std::io::BufWriter::new(std::fs::File::create(&part)?),
                bar: bar.clone(),
            };
            store.get_to(&entry, &mut out)?;
            use std::io::Write;
            out.flush()?;
            Ok(())
        })();
        async move { result }
    })
    .await?;
    bar.finish_and_clear();
    report_restore(id, dir, files, bytes, started, json);
    Ok(())
}

/// Prints what a restore wrote.
pub fn report_restore(
    id: &ContentId,
    dir: &Path,
    files: usize,
    bytes: u64,
    started: Instant,
    json: bool,
) {
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "id": id, "kind": "collection", "files": files, "size": bytes,
                "output": dir.display().to_string(), "elapsed_ms": elapsed_ms,
            })
        );
    } else {
        eprintln!(
            "restored {files} files ({bytes} bytes) to {} in {elapsed_ms:.0} ms",
            dir.display()
        );
    }
}
