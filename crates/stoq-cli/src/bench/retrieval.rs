//! `stoq bench retrieval`: how long one chunk takes to reach a client, request to verified
//! bytes, from an origin's store, from an edge that must pull it (a miss), and from an edge's
//! cache (a hit); raw quinn answering the same sizes from memory is the baseline.
//!
//! Nodes run in this process on [::1] (an origin and an edge joined by membership); the client
//! asks for one chunk at a time, so the figures are latencies, not throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use stoq::chunking::ContentId;
use stoq::client::{fetch_chunk, fetch_manifest};
use stoq::protocol::PutSettings;
use stoq::transport::{NodeIdentity, StoqConnection, StoqEndpoint};
use stoq::{AdminToken, Role};

use super::{machine, noise, quantile};
use crate::cli::RetrievalBenchArgs;
use crate::local::{dial, peers_become, start_node, Place, Scratch};
use crate::usage::usage;

/// Fetches every chunk once, in order, and returns each one's latency in ms.
async fn pass(
    conn: &StoqConnection,
    id: &ContentId,
    manifest: &stoq::chunking::Manifest,
) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(manifest.chunks.len());
    for index in 0..manifest.chunks.len() as u32 {
        let started = Instant::now();
        fetch_chunk(conn, id, manifest, index).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(times)
}

/// Raw quinn: the server answers a u32 index with that chunk's bytes from memory.
async fn quinn_pass(chunks: Arc<Vec<Vec<u8>>>) -> Result<Vec<f64>> {
    let (cert, key) = super::raw_quinn::self_signed()?;
    let server = quinn::Endpoint::server(
        quinn::ServerConfig::with_single_cert(vec![cert.clone()], key)?,
        "[::1]:0".parse()?,
    )?;
    let addr = server.local_addr()?;
    let acceptor = server.clone();
    let served = chunks.clone();
    tokio::spawn(async move {
        while let Some(incoming) = acceptor.accept().await {
            let served = served.clone();
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    let served = served.clone();
                    tokio::spawn(async move {
                        let Ok(ix) = recv.read_to_end(4).await else {
                            return;
                        };
                        let Ok(ix) = <[u8; 4]>::try_from(ix.as_slice()) else {
                            return;
                        };
                        if let Some(bytes) = served.get(u32::from_be_bytes(ix) as usize) {
                            let _ = send.write_all(bytes).await;
                        }
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let mut client = quinn::Endpoint::client("[::1]:0".parse()?)?;
    client.set_default_client_config(quinn::ClientConfig::with_root_certificates(Arc::new(
        roots,
    ))?);
    let conn = client.connect(addr, "localhost")?.await?;
    let mut times = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let started = Instant::now();
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(&(i as u32).to_be_bytes()).await?;
        send.finish()?;
        let bytes = recv.read_to_end(chunk.len()).await?;
        ensure!(
            blake3::hash(&bytes) == blake3::hash(chunk),
            "raw quinn returned other bytes"
        );
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(times)
}

/// Runs the benchmark and prints the figures (JSON with `--json`).
pub async fn run(args: RetrievalBenchArgs) -> Result<()> {
    if args.size < 1 << 20 {
        return Err(usage("--size must be at least 1 MiB"));
    }
    let scratch = Scratch::new("bench-retrieval")?;
    let token = AdminToken::load_or_create(&scratch.0.join("token"))?;
    let place = |role, seed| Place {
        role,
        region: "",
        geo: None,
        seed,
    };
    let origin = start_node(scratch.0.join("origin"), place(Role::Origin, None), &token).await?;
    let edge = start_node(
        scratch.0.join("edge"),
        place(Role::Edge, Some(&origin)),
        &token,
    )
    .await?;
    ensure!(
        peers_become(&[&origin, &edge], 1, Duration::from_secs(20)).await,
        "the edge never joined the origin"
    );
    let client = StoqEndpoint::client(Default::default(), NodeIdentity::generate()?)?;
    let data = noise(args.size, 99);
    let file = scratch.0.join("content.bin");
    std::fs::write(&file, &data)?;
    let at_origin = dial(&client, &origin).await?;
    let report =
        stoq::client::publish(&at_origin, token.as_str(), &file, PutSettings::default()).await?;
    let id: ContentId = report.id;
    let manifest = fetch_manifest(&at_origin, &id).await?;
    let at_edge = dial(&client, &edge).await?;

    let origin_ms = pass(&at_origin, &id, &manifest).await?;
    let miss_ms = pass(&at_edge, &id, &manifest).await?;
    let hit_ms = pass(&at_edge, &id, &manifest).await?;
    let chunks: Vec<Vec<u8>> = manifest
        .chunks
        .iter()
        .map(|c| data[c.offset as usize..c.offset as usize + c.length as usize].to_vec())
        .collect();
    let quinn_ms = quinn_pass(Arc::new(chunks)).await?;
    let stats = edge.cache_stats().unwrap_or_default();
    ensure!(
        stats.hits >= manifest.chunks.len() as u64,
        "the second pass was not served from cache"
    );
    origin.shutdown(Duration::from_secs(1)).await;
    edge.shutdown(Duration::from_secs(1)).await;

    let summary = |v: &[f64]| serde_json::json!({ "p50_ms": quantile(v, 0.5), "p99_ms": quantile(v, 0.99), "max_ms": quantile(v, 1.0) });
    let report = serde_json::json!({
        "name": "retrieval",
        "chunks": manifest.chunks.len(),
        "mean_chunk_bytes": args.size / manifest.chunks.len().max(1),
        "origin": summary(&origin_ms),
        "edge_miss": summary(&miss_ms),
        "edge_hit": summary(&hit_ms),
        "quinn": summary(&quinn_ms),
        "baseline": "quinn",
        "ratio": {
            "edge_hit_p50": quantile(&hit_ms, 0.5) / quantile(&quinn_ms, 0.5),
            "origin_p50": quantile(&origin_ms, 0.5) / quantile(&quinn_ms, 0.5),
            "edge_miss_p50": quantile(&miss_ms, 0.5) / quantile(&quinn_ms, 0.5),
        },
        "machine": machine(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "retrieval: {} chunks of about {} KiB, one at a time, request to verified bytes, over [::1]",
            manifest.chunks.len(),
            args.size / manifest.chunks.len().max(1) / 1024
        );
        for (name, v) in [
            ("origin", &origin_ms),
            ("edge miss", &miss_ms),
            ("edge hit", &hit_ms),
            ("raw quinn", &quinn_ms),
        ] {
            println!(
                "  {name:10} p50 {:7.3} ms   p99 {:7.3} ms   ({:.2}x quinn at p50)",
                quantile(v, 0.5),
                quantile(v, 0.99),
                quantile(v, 0.5) / quantile(&quinn_ms, 0.5)
            );
        }
    }
    Ok(())
}
