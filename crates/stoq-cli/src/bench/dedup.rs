//! `stoq bench dedup --old A --new B`: what storing version B costs after version A, with
//! STOQ's chunking (a tar cut at its members), with plain content-defined chunking of each
//! whole file, and with fixed 256 KiB chunks; against the floor, the bytes of B's tar members
//! (or, for two directories, B's files) that are new or changed, paths compared without their
//! first component, which carries the version. A and B are files, tars or directories.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use stoq::chunking::{
    chunk_file, kind_of_file, sniff, ChunkEngine, ContentKind, FastCdcEngine, Hash32,
};

use super::machine;
use crate::bench_args::DedupBenchArgs;

/// Fixed chunks of the baseline.
const FIXED: usize = 256 * 1024;

/// Runs the benchmark and prints the figures.
pub fn run(args: DedupBenchArgs) -> Result<()> {
    let (old, new) = (version(&args.old)?, version(&args.new)?);
    let size: u64 = new.iter().map(|(_, b)| b.len() as u64).sum();
    let kind = match &new[..] {
        [(_, one)] => sniff(&one[..one.len().min(8192)]),
        _ => ContentKind::Binary,
    };
    let stoq = new_bytes(&old, &new, aware_chunks);
    let cdc = new_bytes(&old, &new, |data| {
        let profile = match sniff(&data[..data.len().min(8192)]) {
            ContentKind::Tar => ContentKind::Binary.profile(),
            other => other.profile(),
        };
        FastCdcEngine
            .chunk_slice(data, profile)
            .into_iter()
            .map(|s| (s.id, s.length as u64))
            .collect()
    });
    let fixed = new_bytes(&old, &new, |data| {
        data.chunks(FIXED)
            .map(|c| (Hash32::of(c), c.len() as u64))
            .collect()
    });
    let floor = match (&old[..], &new[..]) {
        ([(_, a)], [(_, b)]) if kind == ContentKind::Tar => Some(changed_members(a, b)?),
        ([_], [_]) => None,
        _ => Some(changed_files(&old, &new)),
    };
    let share = |bytes: u64| bytes as f64 / size.max(1) as f64;
    let report = serde_json::json!({
        "name": "dedup",
        "old": args.old.display().to_string(),
        "new": args.new.display().to_string(),
        "new_size": size,
        "kind": kind,
        "stored_bytes": { "stoq": stoq, "cdc": cdc, "fixed_256k": fixed },
        "stored_share": { "stoq": share(stoq), "cdc": share(cdc), "fixed_256k": share(fixed) },
        // What `stoq get --reuse A` of B fetches: B's chunks that A's lack, which is what a
        // store holding A adds (the client cuts A as the publisher does).
        "delta_download_bytes": stoq,
        "floor": floor.map(|(changed, members)| serde_json::json!({
            "changed_member_bytes": changed,
            "members": members,
            "target_bytes": 2 * (changed + 512 * members),
        })),
        "baseline": "cdc",
        "ratio": { "cdc": stoq as f64 / cdc.max(1) as f64, "fixed_256k": stoq as f64 / fixed.max(1) as f64 },
        "machine": machine(),
    });
    if args.json {
        println!("{report}");
        return Ok(());
    }
    println!(
        "storing {} ({size} bytes in {} file(s)) after {}:",
        args.new.display(),
        new.len(),
        args.old.display()
    );
    for (name, bytes) in [
        ("stoq (archives cut at members)", stoq),
        ("content-defined, whole files", cdc),
        ("fixed 256 KiB", fixed),
    ] {
        println!(
            "  {name:31} {bytes:>12} new bytes ({:5.1}%)",
            share(bytes) * 100.0
        );
    }
    if let Some((changed, members)) = floor {
        println!(
            "  floor: {changed} bytes of new or changed members ({:.1}%), {members} members; target <= {}",
            share(changed) * 100.0,
            2 * (changed + 512 * members)
        );
    }
    Ok(())
}

/// STOQ's chunks of `data` (what `stoq put` stores), as (id, length).
fn aware_chunks(data: &[u8]) -> Vec<(Hash32, u64)> {
    let mut file = std::io::Cursor::new(data);
    let kind = kind_of_file(&FastCdcEngine, &mut file).unwrap_or(ContentKind::Binary);
    let mut out = Vec::new();
    let _ = chunk_file(&FastCdcEngine, &mut file, kind, &mut |c| {
        out.push((c.id, c.data.len() as u64));
        Ok(())
    });
    out
}

/// A version: one file (named by itself) or every file under a directory (named by its path
/// inside it), with its bytes.
type Version = Vec<(String, Vec<u8>)>;

fn version(path: &Path) -> Result<Version> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    if !path.is_dir() {
        return Ok(vec![(path.display().to_string(), read(path)?)]);
    }
    super::chunking::tree_files(path)
        .into_iter()
        .map(|file| {
            let name = file
                .strip_prefix(path)
                .unwrap_or(&file)
                .display()
                .to_string();
            Ok((name, read(&file)?))
        })
        .collect()
}

/// Bytes of `new`'s chunks (each file cut by `chunks`) that neither `old` nor an earlier chunk
/// of `new` already holds: what a store holding `old` adds for `new`.
fn new_bytes(old: &Version, new: &Version, chunks: impl Fn(&[u8]) -> Vec<(Hash32, u64)>) -> u64 {
    let mut seen: HashSet<Hash32> = old
        .iter()
        .flat_map(|(_, bytes)| chunks(bytes))
        .map(|(id, _)| id)
        .collect();
    new.iter()
        .flat_map(|(_, bytes)| chunks(bytes))
        .filter(|(id, _)| seen.insert(*id))
        .map(|(_, len)| len)
        .sum()
}

/// For two directories: the bytes of `new`'s files that differ from the file at the same path
/// in `old` (or that `old` lacks), and how many files `new` has.
fn changed_files(old: &Version, new: &Version) -> (u64, u64) {
    let before: HashMap<&str, Hash32> = old
        .iter()
        .map(|(name, bytes)| (name.as_str(), Hash32::of(bytes)))
        .collect();
    let changed = new
        .iter()
        .filter(|(name, bytes)| before.get(name.as_str()) != Some(&Hash32::of(bytes)))
        .map(|(_, bytes)| bytes.len() as u64)
        .sum();
    (changed, new.len() as u64)
}

/// The bytes of `new`'s members whose data differs from the member at the same path in `old`
/// (or that `old` lacks), and how many members `new` has.
fn changed_members(old: &[u8], new: &[u8]) -> Result<(u64, u64)> {
    let before: HashMap<String, Hash32> = members(old)?
        .into_iter()
        .map(|(path, hash, _)| (path, hash))
        .collect();
    let after = members(new)?;
    let changed = after
        .iter()
        .filter(|(path, hash, _)| before.get(path) != Some(hash))
        .map(|(_, _, len)| len)
        .sum();
    Ok((changed, after.len() as u64))
}

/// A tar's members: path without its first component (which carries the version), BLAKE3 of
/// the data, and its length.
fn members(data: &[u8]) -> Result<Vec<(String, Hash32, u64)>> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(data);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let relative = path
            .split_once('/')
            .map_or(path.clone(), |(_, r)| r.to_owned());
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes)?;
        out.push((relative, Hash32::of(&bytes), bytes.len() as u64));
    }
    Ok(out)
}
