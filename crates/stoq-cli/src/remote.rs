//! `put`, `get`, `status`, `purge` and `prefetch` against running nodes over QUIC.

use std::io::{IsTerminal, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use stoq::chunking::{Collection, ContentId, ContentKind, Manifest};
use stoq::client::{self, ChunkCache, FetchOptions, LocalChunks, Located, DEFAULT_CACHE_BYTES};
use stoq::protocol::{read_digest, Location, PutSettings};

use crate::cli::{AdminArgs, GetArgs, NameCommand, PutArgs};
use crate::known;
use crate::output::{self, Target};
use crate::progress::{self, Counting};
use crate::session::{connect, endpoint, read_token, token, Publisher};
use crate::usage::usage;

/// `stoq put FILE --node ADDR`: publishes to an origin.
pub async fn put(args: PutArgs, node: &str) -> Result<()> {
    let erasure = args.erasure_policy()?;
    if !args.file.is_file() {
        return Err(usage(format!(
            "{} is not a readable file",
            args.file.display()
        )));
    }
    let publisher = Publisher::open(node, args.token_file.as_deref()).await?;
    let addr = publisher.addr;
    let started = Instant::now();
    let settings = PutSettings {
        erasure,
        kind: args.kind.map(Into::into),
        read_digest: read_token(args.read_token_file.as_deref())?.map(|t| read_digest(&t)),
        media_type: crate::collection::type_for_file(&args.file, args.gunzip),
    };
    let unpacked = args
        .gunzip
        .then(|| crate::gunzip::decompressed(&args.file))
        .transpose()?;
    let file = unpacked.as_ref().map_or(args.file.as_path(), |u| u.path());
    let bar = progress::bytes(std::fs::metadata(file)?.len(), args.json);
    let report = publisher.publish(file, settings, &bar).await?;
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    if args.json {
        let mut doc = serde_json::to_value(&report)?;
        doc["elapsed_ms"] = (elapsed.as_secs_f64() * 1e3).into();
        doc["node"] = SocketAddr::V6(addr).to_string().into();
        println!("{doc}");
    } else {
        println!("{}", report.id);
        eprintln!(
            "published {} bytes to {addr} as {} chunks ({} new) in {:.0} ms",
            report.size,
            report.chunks,
            report.new_chunks,
            elapsed.as_secs_f64() * 1e3
        );
    }
    publisher.hang_up().await;
    Ok(())
}

/// Restores collection `id` to `dir`, each file fetched from the located sources.
async fn get_collection(
    located: &Located,
    id: &ContentId,
    dir: &Path,
    options: &FetchOptions,
    json: bool,
) -> Result<()> {
    let started = Instant::now();
    let mut doc = Vec::new();
    located.fetch(id, &mut doc, options, |_| Ok(0)).await?;
    let collection = Collection::decode(&doc)?;
    let bar = crate::collection::restore_bar(&collection, json);
    let bar_ref = &bar;
    let (files, bytes) = crate::collection::restore(&collection, dir, |entry, part| async move {
        let mut file = Counting {
            inner: std::io::BufWriter::new(std::fs::File::create(&part)?),
            bar: bar_ref.clone(),
        };
        located.fetch(&entry, &mut file, options, |_| Ok(0)).await?;
        file.flush()?;
        Ok(())
    })
    .await?;
    bar.finish_and_clear();
    crate::collection::report_restore(id, dir, files, bytes, started, json);
    Ok(())
}

/// How many leading chunks of `manifest` the partial file already holds intact; the file is
/// cut back to exactly those.
fn verified_prefix(mut part: &std::fs::File, manifest: &Manifest) -> std::io::Result<u32> {
    part.seek(SeekFrom::Start(0))?;
    let mut good = 0u32;
    let mut offset = 0u64;
    let mut buf = Vec::new();
    for entry in &manifest.chunks {
        buf.resize(entry.length as usize, 0);
        if part.read_exact(&mut buf).is_err() || !entry.id.matches(&buf) {
            break;
        }
        good += 1;
        offset += u64::from(entry.length);
    }
    part.set_len(offset)?;
    part.seek(SeekFrom::Start(offset))?;
    Ok(good)
}

/// `stoq get ID --node ADDR...`: finds the nearest edges and fetches from several at once.
/// `ID` may be `name:NAME`, resolved through the nearest edge.
pub async fn get(args: GetArgs) -> Result<()> {
    let name = args.id.strip_prefix("name:").map(str::to_owned);
    let id: Option<ContentId> = match &name {
        Some(_) => None,
        None => Some(args.id.parse().map_err(usage)?),
    };
    let given = args
        .nodes
        .iter()
        .map(|n| known::resolve(n))
        .collect::<Result<Vec<_>>>()?;
    let location = match &args.near {
        Some(near) => Location::Geo(
            stoq::routing::GeoPoint::parse(near)
                .ok_or_else(|| usage(format!("--near {near:?}: use LAT,LON in degrees")))?,
        ),
        None => Location::ByAddress,
    };
    let client = endpoint()?;
    let located = Located::locate(&client, &given, &location)
        .await
        .context("cannot locate a source")?;
    let conns = located.connections();
    let id = match (id, &name) {
        (Some(id), _) => id,
        (None, Some(name)) => {
            client::resolve_name(&conns[0], name)
                .await
                .with_context(|| format!("cannot resolve name {name:?}"))?
                .id
        }
        (None, None) => unreachable!("an id or a name"),
    };
    let cache = match args.no_cache {
        true => None,
        false => chunk_cache(),
    };
    let mut local: Vec<Arc<dyn LocalChunks>> = Vec::new();
    if !args.reuse.is_empty() {
        let paths = args.reuse.clone();
        let index = tokio::task::spawn_blocking(move || {
            client::ReuseIndex::build(&paths, &stoq::chunking::FastCdcEngine)
        })
        .await?
        .map_err(usage)?;
        local.push(Arc::new(index));
    }
    if let Some(cache) = &cache {
        local.push(cache.clone());
    }
    let mut options = FetchOptions {
        active: args.parallel,
        read_token: read_token(args.read_token_file.as_deref())?,
        local,
        manifest: None,
    };
    let started = Instant::now();
    if let Target::File(dir) = output::target(args.output.as_deref()) {
        let (manifest, _) =
            client::fetch_manifest_as(&conns[0], &id, options.read_token.as_deref()).await?;
        if manifest.kind == ContentKind::Collection {
            get_collection(&located, &id, &dir, &options, args.json).await?;
            client.hang_up().await;
            return Ok(());
        }
        // The download below needs the same manifest: not asked for twice.
        options.manifest = Some(Arc::new(manifest));
    }
    let report = match output::target(args.output.as_deref()) {
        Target::File(path) => {
            let part = PathBuf::from(format!("{}.part", path.display()));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(false)
                .open(&part)
                .with_context(|| format!("cannot open {}", part.display()))?;
            let bar = progress::bytes(0, args.json);
            let file = Arc::new(file);
            let mut total = 0;
            let report = located
                .fetch_to_file(
                    &id,
                    file.clone(),
                    &options,
                    |m| {
                        let have = verified_prefix(&file, m)?;
                        total = m.size;
                        bar.set_length(m.size);
                        Ok(have)
                    },
                    |done| bar.set_position(done),
                )
                .await
                .with_context(|| {
                    format!(
                        "download stopped; run the same command again to resume from {}",
                        part.display()
                    )
                })?;
            bar.finish_and_clear();
            // A longer file left by something else at this path ends where the content does.
            file.set_len(total)?;
            file.sync_all()?;
            std::fs::rename(&part, &path)?;
            report
        }
        Target::InPlace(path) => {
            let mut out = output::open_in_place(&path)
                .with_context(|| format!("cannot write to {}", path.display()))?;
            located.fetch(&id, &mut out, &options, |_| Ok(0)).await?
        }
        Target::Stdout => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let r = located.fetch(&id, &mut out, &options, |_| Ok(0)).await?;
            out.flush()?;
            r
        }
    };
    let elapsed = started.elapsed();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "id": id.to_string(),
                "size": report.size + report.resumed_bytes,
                "elapsed_ms": elapsed.as_secs_f64() * 1e3,
                "sources": report.sources.iter().zip(&conns).map(|((addr, bytes), conn)| {
                    let stats = conn.stats();
                    serde_json::json!({
                        "addr": addr,
                        "bytes": bytes,
                        "rtt_ms": stats.rtt.as_secs_f64() * 1e3,
                        "mtu": stats.mtu,
                        "packets_lost": stats.packets_lost,
                    })
                }).collect::<Vec<_>>(),
                "dropped": report.dropped,
                "resumed_bytes": report.resumed_bytes,
                "reused_bytes": report.reused_bytes,
                "fetched_bytes": report.size - report.reused_bytes,
            })
        );
    } else if args.output.is_some() {
        let secs = elapsed.as_secs_f64().max(1e-9);
        eprintln!(
            "fetched {} bytes in {:.0} ms ({:.1} MB/s){}",
            report.size,
            secs * 1e3,
            report.size as f64 / secs / 1e6,
            match (report.resumed_bytes, report.reused_bytes) {
                (0, 0) => String::new(),
                (resumed, 0) => format!(", resumed after {resumed} bytes"),
                (_, reused) => format!(", {reused} of them copied from this machine"),
            }
        );
        for (addr, bytes) in &report.sources {
            eprintln!("  {addr}: {bytes} bytes");
        }
        for addr in &report.dropped {
            eprintln!("  dropped {addr}");
        }
    }
    if let Some(cache) = cache {
        if let Err(e) = cache.trim() {
            tracing::warn!(error = %e, "cannot trim the chunk cache");
        }
    }
    client.hang_up().await;
    Ok(())
}

/// The user's chunk cache ([`ChunkCache::default_dir`], `$STOQ_CACHE_BYTES` bytes, 1 GiB by
/// default); `None` (and a warning) if it cannot be opened: a get works without it.
fn chunk_cache() -> Option<Arc<ChunkCache>> {
    let dir = ChunkCache::default_dir()?;
    let budget = std::env::var("STOQ_CACHE_BYTES")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(DEFAULT_CACHE_BYTES);
    match ChunkCache::open(&dir, budget) {
        Ok(cache) => Some(Arc::new(cache)),
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "no chunk cache");
            None
        }
    }
}

/// How often `stoq status --watch` asks again.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// `stoq status --node ADDR [--watch]`: one screen (or JSON object), or one every
/// [`WATCH_EVERY`] until Ctrl-C.
pub async fn status(node: &str, json: bool, watch: bool) -> Result<()> {
    let (id, addr) = known::resolve(node)?;
    let client = endpoint()?;
    let conn = connect(&client, id, addr).await?;
    let clear = watch && !json && std::io::stdout().is_terminal();
    loop {
        let status = client::status(&conn)
            .await
            .with_context(|| format!("{addr} did not answer STATUS"))?;
        let mut out = std::io::stdout().lock();
        if json {
            writeln!(out, "{}", serde_json::to_value(&status)?)?;
        } else {
            if clear {
                // Home and clear: the next screen replaces the last.
                write!(out, "\x1b[H\x1b[2J")?;
            }
            write!(out, "{}", crate::status_view::render(&status))?;
        }
        out.flush()?;
        drop(out);
        if !watch {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    client.hang_up().await;
    Ok(())
}

/// `stoq purge ID --node ADDR` and `stoq prefetch ID --node ADDR`.
pub async fn admin(args: AdminArgs, purge: bool) -> Result<()> {
    let id: ContentId = args.id.parse().map_err(usage)?;
    let (node_id, addr) = known::resolve(&args.node)?;
    let token = token(args.token_file.as_deref())?;
    let client = endpoint()?;
    let conn = connect(&client, node_id, addr).await?;
    let answer = if purge {
        serde_json::to_value(
            client::purge(&conn, token.as_str(), &id)
                .await
                .with_context(|| format!("{addr} refused"))?,
        )?
    } else {
        serde_json::to_value(
            client::prefetch(&conn, token.as_str(), &id)
                .await
                .with_context(|| format!("{addr} refused"))?,
        )?
    };
    if args.json {
        println!("{answer}");
    } else if purge {
        let failed = answer["failed"].as_array().map_or(0, Vec::len);
        println!(
            "purged {id}: {} entries here, forwarded to {} node(s){}",
            answer["removed_here"],
            answer["reached"].as_array().map_or(0, Vec::len),
            if failed > 0 {
                format!(", {failed} unreachable")
            } else {
                String::new()
            }
        );
    } else {
        println!(
            "prefetched {id} into {addr}: {} chunks, {} bytes",
            answer["chunks"], answer["bytes"]
        );
    }
    client.hang_up().await;
    Ok(())
}

/// `stoq name set|get`.
pub async fn name(command: NameCommand) -> Result<()> {
    match command {
        NameCommand::Set(args) => {
            let id: ContentId = args.id.parse().map_err(usage)?;
            stoq::edge::names::check_name(&args.name).map_err(usage)?;
            let (node_id, addr) = known::resolve(&args.node)?;
            let token = token(args.token_file.as_deref())?;
            let client = endpoint()?;
            let conn = connect(&client, node_id, addr).await?;
            let record =
                client::set_name(&conn, token.as_str(), &args.name, &id, args.ttl, args.swr)
                    .await
                    .with_context(|| format!("{addr} refused"))?;
            if args.json {
                println!("{}", serde_json::to_value(&record)?);
            } else {
                println!(
                    "{} -> {id} (version {}, ttl {} s, stale-while-revalidate {} s)",
                    args.name, record.version, args.ttl, args.swr
                );
            }
            client.hang_up().await;
        }
        NameCommand::Get(args) => {
            stoq::edge::names::check_name(&args.name).map_err(usage)?;
            let (node_id, addr) = known::resolve(&args.node)?;
            let client = endpoint()?;
            let conn = connect(&client, node_id, addr).await?;
            let record = client::resolve_name(&conn, &args.name).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "name": record.name,
                        "id": record.id.to_string(),
                        "version": record.version,
                        "ttl_s": record.ttl_s,
                        "swr_s": record.swr_s,
                    })
                );
            } else {
                println!("{}", record.id);
            }
            client.hang_up().await;
        }
    }
    Ok(())
}
