//! `stoq put`, `get`, `status`, `delete` and `gc` against a local content store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use stoq::chunking::ContentId;
use stoq::store::{PutOptions, Store, StoreError};

use crate::cli::{CheckArgs, DeleteArgs, GcArgs, GetArgs, PutArgs, StatusArgs};
use crate::output::{self, Target};
use crate::progress::Counting;
use crate::usage::usage;

fn open(dir: &Path) -> Result<Store> {
    Store::open(dir).with_context(|| format!("cannot open the store in {}", dir.display()))
}

/// Opens a store a command only reads or tidies: a directory with no store is a usage error,
/// and nothing is created.
fn open_existing(dir: &Path) -> Result<Store> {
    match Store::open_existing(dir) {
        Err(e @ StoreError::NoStore(_)) => Err(usage(e)),
        other => other.with_context(|| format!("cannot open the store in {}", dir.display())),
    }
}

fn content_id(text: &str) -> Result<ContentId> {
    text.parse().map_err(usage)
}

/// Peak resident memory of this process so far (VmHWM), if the OS says.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Stores a file and prints its content id.
pub fn put(args: PutArgs) -> Result<()> {
    let erasure = args.erasure_policy()?;
    if !args.file.is_file() {
        return Err(usage(format!(
            "{} is not a readable file",
            args.file.display()
        )));
    }
    let mut store = open(&args.data_dir)?;
    let started = Instant::now();
    let unpacked = args
        .gunzip
        .then(|| crate::gunzip::decompressed(&args.file))
        .transpose()?;
    let path = unpacked.as_ref().map_or(args.file.as_path(), |u| u.path());
    let bar = crate::progress::bytes(std::fs::metadata(path)?.len(), args.json);
    let report = store.put_file_reporting(
        path,
        PutOptions {
            erasure,
            kind: args.kind.map(Into::into),
        },
        &mut |n| bar.inc(n),
    )?;
    bar.finish_and_clear();
    let media_type = crate::collection::type_for_file(&args.file, args.gunzip);
    if media_type.is_some() {
        store.set_media_type(&report.id, media_type.as_deref())?;
    }
    let elapsed = started.elapsed();
    if args.json {
        let mut j = serde_json::to_value(&report)?;
        j["elapsed_ms"] = (elapsed.as_secs_f64() * 1e3).into();
        j["erasure"] = erasure.map(|e| format!("{}+{}", e.k, e.m)).into();
        j["peak_rss_bytes"] = peak_rss_bytes().into();
        println!("{j}");
    } else {
        println!("{}", report.id);
        eprintln!(
            "stored {} bytes as {} chunks ({} new, {} new bytes) in {:.0} ms",
            report.size,
            report.chunks,
            report.new_chunks,
            report.new_bytes,
            elapsed.as_secs_f64() * 1e3
        );
    }
    Ok(())
}

/// Writes content to a file (via a `.part` file renamed into place) or to standard output;
/// a collection to a directory.
pub async fn get(args: GetArgs) -> Result<()> {
    let id = content_id(&args.id)?;
    let store = open_existing(&args.data_dir)?;
    if let Target::File(dir) = output::target(args.output.as_deref()) {
        if store.manifest(&id)?.kind == stoq::chunking::ContentKind::Collection {
            return crate::collection::get_local(&store, &id, &dir, args.json).await;
        }
    }
    let started = Instant::now();
    let report = match output::target(args.output.as_deref()) {
        Target::File(path) => {
            let part = PathBuf::from(format!("{}.part", path.display()));
            let bar = crate::progress::bytes(store.manifest(&id)?.size, args.json);
            let mut file = Counting {
                inner: std::io::BufWriter::new(
                    std::fs::File::create(&part)
                        .with_context(|| format!("cannot create {}", part.display()))?,
                ),
                bar: bar.clone(),
            };
            let result = store
                .get_to(&id, &mut file)
                .map_err(anyhow::Error::from)
                .and_then(|r| {
                    file.flush()?;
                    file.inner.get_ref().sync_all()?;
                    Ok(r)
                });
            bar.finish_and_clear();
            match result {
                Ok(r) => {
                    std::fs::rename(&part, &path)?;
                    r
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&part);
                    return Err(e);
                }
            }
        }
        Target::InPlace(path) => {
            let mut out = output::open_in_place(&path)
                .with_context(|| format!("cannot write to {}", path.display()))?;
            store.get_to(&id, &mut out)?
        }
        Target::Stdout => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let r = store.get_to(&id, &mut out)?;
            out.flush()?;
            r
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "id": id.to_string(),
                "size": report.bytes,
                "elapsed_ms": started.elapsed().as_secs_f64() * 1e3,
                "sources": [{ "addr": format!("local:{}", args.data_dir.display()), "bytes": report.bytes }],
                "repaired_shards": report.repaired_shards,
            })
        );
    } else if report.repaired_shards > 0 {
        eprintln!("repaired {} shard(s) from parity", report.repaired_shards);
    }
    Ok(())
}

/// Prints the store's totals.
pub fn status(args: StatusArgs) -> Result<()> {
    let stats = open_existing(&args.data_dir)?.stats()?;
    if args.json {
        println!("{}", serde_json::to_value(stats)?);
    } else {
        println!(
            "{} object(s), {} logical bytes stored in {} bytes ({} blobs): dedup ratio {:.2}",
            stats.objects, stats.logical_bytes, stats.stored_bytes, stats.blobs, stats.dedup_ratio
        );
    }
    Ok(())
}

/// Removes content.
pub fn delete(args: DeleteArgs) -> Result<()> {
    let id = content_id(&args.id)?;
    let report = open_existing(&args.data_dir)?.delete(&id)?;
    if args.json {
        println!("{}", serde_json::to_value(report)?);
    } else {
        println!(
            "deleted {id}: freed {} blob(s), {} bytes",
            report.orphans_removed, report.bytes_freed
        );
    }
    Ok(())
}

/// Removes unreferenced blob files.
pub fn gc(args: GcArgs) -> Result<()> {
    let report = open_existing(&args.data_dir)?.gc()?;
    if args.json {
        println!("{}", serde_json::to_value(report)?);
    } else {
        println!(
            "removed {} orphan blob(s), {} bytes",
            report.orphans_removed, report.bytes_freed
        );
    }
    Ok(())
}

/// `stoq check`: verifies a store (every blob, the index against the manifest files) and, with
/// `--repair`, rebuilds a missing or damaged index, drops corrupt blobs and names the contents
/// that cannot be recovered. Exits 1 while anything is wrong.
pub fn check(args: CheckArgs) -> Result<()> {
    let bar = crate::progress::bytes(0, args.json);
    let checked = stoq::store::check_reporting(&args.data_dir, args.repair, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let report = match checked {
        Err(e @ StoreError::NoStore(_)) => return Err(usage(e)),
        other => other?,
    };
    let fixed = args.repair && report.unrecoverable.is_empty();
    if args.json {
        println!("{}", serde_json::to_value(&report)?);
    } else {
        println!(
            "index {}{}; {} content(s) on disk, {} indexed; {} blob(s) hashed, {} corrupt{}",
            report.index,
            if report.rebuilt {
                ", rebuilt from the files"
            } else {
                ""
            },
            report.contents,
            report.indexed,
            report.blobs_checked,
            report.corrupt_blobs.len(),
            if args.repair && !report.corrupt_blobs.is_empty() {
                " (deleted)"
            } else {
                ""
            },
        );
        for lost in &report.unrecoverable {
            println!(
                "cannot recover {}: {} blob(s) missing or corrupt (put the original file again to heal it)",
                lost.id, lost.missing_blobs
            );
        }
        if report.index_mismatches > 0 {
            println!(
                "{} content(s) where the index and the files disagree",
                report.index_mismatches
            );
        }
    }
    if report.healthy() || fixed {
        return Ok(());
    }
    if !args.repair && report.index != "ok" {
        anyhow::bail!(
            "the store's index is {}: run `stoq check --repair --data-dir {}`",
            report.index,
            args.data_dir.display()
        );
    }
    anyhow::bail!("the store has damage that a repair cannot undo (listed above)")
}
