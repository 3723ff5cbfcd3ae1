//! `stoq bench chunking`: chunk + hash + index throughput on one large in-memory buffer,
//! against the fastcdc crate alone and blake3 alone on the same buffer, in one run; and the
//! dedup of two versions of a real source tree, content-defined chunks vs fixed 256 KiB.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use stoq::chunking::{ChunkEngine, ContentKind, FastCdcEngine, Hash32};

use super::{gb_per_s, machine, median, noise};
use crate::cli::ChunkingBenchArgs;
use crate::usage::usage;

/// Runs the benchmark and prints the figures.
pub fn run(args: ChunkingBenchArgs) -> Result<()> {
    if args.size == 0 || args.rounds == 0 {
        return Err(usage("--size and --rounds must be at least 1"));
    }
    let data = noise(args.size, 7);
    let profile = ContentKind::Binary.profile();
    let engine = FastCdcEngine;
    let (mut ours, mut cdc, mut hash) = (Vec::new(), Vec::new(), Vec::new());
    let mut chunks = 0;
    for _ in 0..args.rounds {
        let t = Instant::now();
        let mut total = 0usize;
        for c in fastcdc::v2020::FastCDC::new(&data, profile.min, profile.avg, profile.max) {
            total += c.length;
        }
        cdc.push(gb_per_s(std::hint::black_box(total), t.elapsed()));

        let t = Instant::now();
        std::hint::black_box(blake3::hash(&data));
        hash.push(gb_per_s(data.len(), t.elapsed()));

        let t = Instant::now();
        let spans = engine.chunk_slice(&data, profile);
        let mut index: HashMap<Hash32, (usize, usize)> = HashMap::with_capacity(spans.len());
        for s in &spans {
            index.entry(s.id).or_insert((s.offset, s.length));
        }
        ours.push(gb_per_s(data.len(), t.elapsed()));
        chunks = index.len();
    }
    let (ours, cdc, hash) = (median(&ours), median(&cdc), median(&hash));
    let trees = match (&args.old, &args.new) {
        (Some(a), Some(b)) => Some((a.clone(), b.clone())),
        _ => registry_pair(),
    };
    let dedup = match &trees {
        Some((a, b)) => Some(tree_dedup(a, b)?),
        None => None,
    };
    let report = serde_json::json!({
        "name": "chunking",
        "size_bytes": args.size,
        "rounds": args.rounds,
        "profile": { "min": profile.min, "avg": profile.avg, "max": profile.max },
        "chunks": chunks,
        "gb_per_s": { "stoq": ours, "fastcdc": cdc, "blake3": hash },
        "baseline": "fastcdc",
        "ratio": { "fastcdc": ours / cdc, "blake3": ours / hash },
        "dedup": dedup,
        "machine": machine(),
    });
    if args.json {
        println!("{report}");
        return Ok(());
    }
    println!(
        "chunking {} MiB in memory ({} chunks, 64 KiB average), medians of {} rounds:",
        args.size >> 20,
        chunks,
        args.rounds
    );
    println!("  stoq (cut + BLAKE3 + index)  {ours:6.2} GB/s");
    println!(
        "  fastcdc alone (cut)          {cdc:6.2} GB/s   stoq/fastcdc = {:.3}",
        ours / cdc
    );
    println!(
        "  blake3 alone (hash)          {hash:6.2} GB/s   stoq/blake3  = {:.3}",
        ours / hash
    );
    match dedup {
        Some(d) => println!(
            "dedup, {} -> {}: storing the new version after the old costs {} bytes with content-defined chunks, \
             {} with fixed 256 KiB chunks ({:.1}x less), of {} bytes",
            d["old"].as_str().unwrap_or_default(),
            d["new"].as_str().unwrap_or_default(),
            d["cdc_new_bytes"],
            d["fixed_new_bytes"],
            d["fixed_new_bytes"].as_f64().unwrap_or(0.0) / d["cdc_new_bytes"].as_f64().unwrap_or(1.0).max(1.0),
            d["new_bytes_total"],
        ),
        None => println!("dedup: no pair of source trees found (give --old DIR --new DIR)"),
    }
    Ok(())
}

/// Of the crates with two versions in the local cargo registry, the pair of trees with the
/// most file paths in common (the most alike), if any.
fn registry_pair() -> Option<(PathBuf, PathBuf)> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let mut by_name: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for index in std::fs::read_dir(home.join("registry/src")).ok()?.flatten() {
        for krate in std::fs::read_dir(index.path()).ok()?.flatten() {
            let name = krate.file_name().to_string_lossy().into_owned();
            if let Some(pos) = name
                .rfind('-')
                .filter(|&p| name[p + 1..].starts_with(|c: char| c.is_ascii_digit()))
            {
                by_name
                    .entry(name[..pos].to_owned())
                    .or_default()
                    .push(krate.path());
            }
        }
    }
    by_name
        .into_values()
        .filter(|v| v.len() >= 2)
        .map(|mut v| {
            v.sort();
            let (a, b) = (v[v.len() - 2].clone(), v[v.len() - 1].clone());
            (shared_paths(&a, &b), a, b)
        })
        .max_by_key(|(shared, _, _)| *shared)
        .map(|(_, a, b)| (a, b))
}

pub(super) fn tree_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn shared_paths(a: &Path, b: &Path) -> usize {
    let relative = |root: &Path| -> HashSet<PathBuf> {
        tree_files(root)
            .into_iter()
            .filter_map(|p| p.strip_prefix(root).ok().map(Path::to_path_buf))
            .collect()
    };
    relative(a).intersection(&relative(b)).count()
}

/// Chunks every file of both trees both ways and counts what the new version adds.
fn tree_dedup(old: &Path, new: &Path) -> Result<serde_json::Value> {
    let engine = FastCdcEngine;
    let mut cdc_seen = HashSet::new();
    let mut fixed_seen = HashSet::new();
    let mut add = |path: &Path, count: bool| -> Result<(u64, u64, u64)> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let (_, profile) = engine.profile_for(&bytes[..bytes.len().min(8192)]);
        let mut cdc_new = 0u64;
        for s in engine.chunk_slice(&bytes, profile) {
            if cdc_seen.insert(s.id) && count {
                cdc_new += s.length as u64;
            }
        }
        let mut fixed_new = 0u64;
        for piece in bytes.chunks(256 * 1024) {
            if fixed_seen.insert(Hash32::of(piece)) && count {
                fixed_new += piece.len() as u64;
            }
        }
        Ok((cdc_new, fixed_new, bytes.len() as u64))
    };
    for f in tree_files(old) {
        add(&f, false)?;
    }
    let (mut cdc_new, mut fixed_new, mut total) = (0, 0, 0);
    for f in tree_files(new) {
        let (c, x, t) = add(&f, true)?;
        cdc_new += c;
        fixed_new += x;
        total += t;
    }
    Ok(serde_json::json!({
        "old": old.display().to_string(),
        "new": new.display().to_string(),
        "new_bytes_total": total,
        "cdc_new_bytes": cdc_new,
        "fixed_new_bytes": fixed_new,
    }))
}
