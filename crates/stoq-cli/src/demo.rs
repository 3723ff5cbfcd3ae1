//! `stoq demo`: the whole CDN on this machine, with real numbers.
//!
//! An origin and three edges (Frankfurt, New York, Singapore) on [::1], each with its own
//! identity, store or cache, joined by SWIM membership over mutually authenticated QUIC. A
//! file is published (and a new version deduplicated); two clients in different places are
//! each served by their nearest edge; a third fetch is served from an edge's cache without
//! touching the origin; an edge is killed mid-transfer and the download finishes from another;
//! a purge reaches every node; a route is found over a 1,000-node topology.

use std::net::SocketAddr;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use stoq::chunking::{ContentId, Manifest};
use stoq::client::{self, FetchOptions, FetchReport, Located};
use stoq::protocol::{Location, PutSettings};
use stoq::routing::{synthetic, CostWeights, Objective};
use stoq::transport::{NodeIdentity, StoqEndpoint};
use stoq::{AdminToken, Node, Role};

use crate::bench::noise;
use crate::cli::DemoArgs;
use crate::local::{dial, peers_become, start_node, Place, Scratch};

/// Source-like text: compresses badly enough to be honest, repeats enough to dedup.
fn sample_text(lines: usize, edit_at: Option<usize>) -> Vec<u8> {
    (0..lines)
        .flat_map(|i| {
            let line = if Some(i) == edit_at {
                format!("    let edited_{i} = compute({i}, \"this line changed\");\n")
            } else {
                format!(
                    "    let value_{i} = compute({i}, \"{:x}\");\n",
                    (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                )
            };
            line.into_bytes()
        })
        .collect()
}

const CITIES: [(&str, &str, &str); 3] = [
    ("Frankfurt", "eu-central", "50.11,8.68"),
    ("New York", "us-east", "40.71,-74.01"),
    ("Singapore", "ap-southeast", "1.35,103.82"),
];

fn name_of(nodes: &[(&str, &Node)], addr: &str) -> String {
    nodes
        .iter()
        .find(|(_, n)| SocketAddr::V6(n.local_addr()).to_string() == addr)
        .map_or(addr.to_owned(), |(name, _)| (*name).to_owned())
}

/// Where a client at `near` should fetch from, as the origin answers it, dialled.
async fn locate(client: &StoqEndpoint, origin: &Node, near: &str) -> Result<Located> {
    let near = Location::parse(&format!("geo:{near}")).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Located::locate(client, &[(origin.node_id(), origin.local_addr())], &near).await?)
}

/// A client at `near` asks the origin where to go and fetches from the nearest edge.
async fn client_fetch(
    client: &StoqEndpoint,
    origin: &Node,
    near: &str,
    id: &ContentId,
    parallel: usize,
) -> Result<(Located, Vec<u8>, FetchReport, Duration)> {
    let located = locate(client, origin, near).await?;
    let started = Instant::now();
    let mut out = Vec::new();
    let options = FetchOptions {
        active: parallel,
        ..Default::default()
    };
    let report = located.fetch(id, &mut out, &options, |_| Ok(0)).await?;
    Ok((located, out, report, started.elapsed()))
}

fn mbps(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64().max(1e-9) / 1e6
}

/// Runs the demo and prints a short summary of what happened and how fast.
pub async fn run(args: DemoArgs) -> Result<()> {
    println!("STOQ demo: an origin and three edges over QUIC/IPv6 on this machine\n");
    let scratch = Scratch::new("demo")?;
    // One admin token for the whole network, so a purge forwarded between nodes is accepted.
    let token = AdminToken::load_or_create(&scratch.0.join("network.token"))?;
    let started = Instant::now();
    let origin = start_node(
        scratch.0.join("origin"),
        Place {
            role: Role::Origin,
            region: "eu-central",
            geo: Some("50.11,8.68"),
            seed: None,
        },
        &token,
    )
    .await?;
    let mut edges = Vec::new();
    for (i, (_, region, geo)) in CITIES.iter().enumerate() {
        edges.push(
            start_node(
                scratch.0.join(format!("edge{i}")),
                Place {
                    role: Role::Edge,
                    region,
                    geo: Some(geo),
                    seed: Some(&origin),
                },
                &token,
            )
            .await?,
        );
    }
    let all: Vec<&Node> = std::iter::once(&origin).chain(edges.iter()).collect();
    ensure!(
        peers_become(&all, 3, Duration::from_secs(20)).await,
        "membership did not converge"
    );
    let names: Vec<(&str, &Node)> = vec![
        ("origin", &origin),
        ("edge Frankfurt", &edges[0]),
        ("edge New York", &edges[1]),
        ("edge Singapore", &edges[2]),
    ];
    println!(
        "1. origin (Frankfurt) and edges in Frankfurt, New York and Singapore started; SWIM membership over QUIC converged in {:.0} ms (every node sees 3 peers)",
        started.elapsed().as_secs_f64() * 1e3
    );

    let client = StoqEndpoint::client(Default::default(), NodeIdentity::generate()?)?;
    let publisher = dial(&client, &origin).await?;
    let v1 = sample_text(400_000, None);
    let v2 = sample_text(400_000, Some(200_000));
    let mut ids = Vec::new();
    let mut reports = Vec::new();
    for (i, version) in [&v1, &v2].iter().enumerate() {
        let path = scratch.0.join(format!("site-v{}.txt", i + 1));
        std::fs::write(&path, version)?;
        let report =
            client::publish(&publisher, token.as_str(), &path, PutSettings::default()).await?;
        ids.push(report.id);
        reports.push(report);
    }
    println!(
        "2. published a {} MiB text file ({} chunks) with the admin token; version 2, one line changed, added {} new chunk(s) ({} KiB)",
        v1.len() >> 20,
        reports[0].chunks,
        reports[1].new_chunks,
        reports[1].new_bytes >> 10
    );

    let (sources, out, report, took) =
        client_fetch(&client, &origin, "48.86,2.35", &ids[1], 1).await?;
    ensure!(out == v2, "Paris got different bytes");
    println!(
        "3. client in Paris: nearest edge is {}; fetched {} MiB in {:.0} ms ({:.0} MB/s), the edge pulled the chunks from the origin once, every chunk verified",
        name_of(&names, &sources.sources[0].1.remote_addr().to_string()),
        out.len() >> 20,
        took.as_secs_f64() * 1e3,
        mbps(out.len(), took)
    );
    let _ = report;
    let (sources, out, _, took) =
        client_fetch(&client, &origin, "42.36,-71.06", &ids[1], 1).await?;
    ensure!(out == v2, "Boston got different bytes");
    println!(
        "4. client in Boston: nearest edge is {}; fetched in {:.0} ms ({:.0} MB/s)",
        name_of(&names, &sources.sources[0].1.remote_addr().to_string()),
        took.as_secs_f64() * 1e3,
        mbps(out.len(), took)
    );
    let origin_chunks = origin.metrics().requests_of("chunk");
    let hits_before = edges[0].cache_stats().map_or(0, |c| c.hits);
    let (_, out, _, took) = client_fetch(&client, &origin, "52.52,13.40", &ids[1], 1).await?;
    ensure!(out == v2, "Berlin got different bytes");
    ensure!(
        origin.metrics().requests_of("chunk") == origin_chunks,
        "the origin was asked again"
    );
    println!(
        "5. client in Berlin: served by edge Frankfurt from its cache in {:.0} ms ({:.0} MB/s): {} cache hits, 0 requests to the origin",
        took.as_secs_f64() * 1e3,
        mbps(out.len(), took),
        edges[0].cache_stats().map_or(0, |c| c.hits) - hits_before
    );

    let big = noise(args.size, 42);
    let path = scratch.0.join("video.bin");
    std::fs::write(&path, &big)?;
    let report = client::publish(&publisher, token.as_str(), &path, PutSettings::default()).await?;
    let big_id: ContentId = report.id;
    let sydney = locate(&client, &origin, "-33.87,151.21").await?;
    let victim = edges
        .iter()
        .find(|e| e.node_id() == sydney.sources[0].0)
        .context("nearest edge")?
        .clone();
    let (tripped, trip) = tokio::sync::oneshot::channel();
    let (killed, done) = std::sync::mpsc::channel();
    let killer = {
        let victim = victim.clone();
        tokio::spawn(async move {
            if trip.await.is_ok() {
                victim.kill().await;
                let _ = killed.send(());
            }
        })
    };
    // The nearest edge dies once the client holds the manifest and before it asks for chunks:
    // killed any later, on [::1], it may already have sent every chunk it was asked for.
    let mut out = Vec::with_capacity(big.len());
    let started = Instant::now();
    let options = FetchOptions {
        active: 2,
        ..Default::default()
    };
    let kill_now = |_: &Manifest| {
        let _ = tripped.send(());
        let _ = done.recv_timeout(Duration::from_secs(10));
        Ok(0)
    };
    let report = sydney.fetch(&big_id, &mut out, &options, kill_now).await?;
    let took = started.elapsed();
    killer.await?;
    ensure!(out == big, "Sydney got different bytes");
    let served: Vec<String> = report
        .sources
        .iter()
        .filter(|(_, b)| *b > 0)
        .map(|(a, b)| format!("{} {:.1} MiB", name_of(&names, a), *b as f64 / 1048576.0))
        .collect();
    println!(
        "6. client in Sydney fetching {} MiB from the two nearest edges; {} was killed as the client began asking for chunks: finished in {:.0} ms ({:.0} MB/s) from {}; dropped: {}",
        big.len() >> 20,
        name_of(&names, &SocketAddr::V6(victim.local_addr()).to_string()),
        took.as_secs_f64() * 1e3,
        mbps(big.len(), took),
        served.join(", "),
        report.dropped.iter().map(|a| name_of(&names, a)).collect::<Vec<_>>().join(", ")
    );
    let started = Instant::now();
    ensure!(
        peers_become(&[&origin], 2, Duration::from_secs(20)).await,
        "the dead edge was never dropped"
    );
    println!(
        "7. membership declared the killed edge down {:.1} s after the kill",
        started.elapsed().as_secs_f64()
    );

    let answer = client::purge(&publisher, token.as_str(), &ids[0]).await?;
    let gone = client::purge(&publisher, "a-wrong-token-for-the-demo", &ids[1]).await;
    ensure!(gone.is_err(), "a wrong token was accepted");
    println!(
        "8. purged version 1 through the origin: it reached {} edge(s); a purge with a wrong token was refused and changed nothing",
        answer.reached.len()
    );

    let topology = synthetic::realistic(1000, 4, 7);
    let (from, to) = (
        topology.topology.nodes[0].id.clone(),
        topology.topology.nodes[45].id.clone(),
    );
    let matrix = topology.topology.into_matrix(CostWeights::default())?;
    let started = Instant::now();
    let route = matrix.find_optimal_route(&from, &to, Objective::Balanced)?;
    let took = started.elapsed();
    println!(
        "9. routing over a 1,000-node topology: {from} -> {to} via {} hop(s), {:.1} ms, found in {} us",
        route.hops(),
        route.latency_ms,
        took.as_micros()
    );

    let bytes_out = origin.metrics().bytes_out.load(Ordering::Relaxed);
    for node in edges.iter().filter(|e| e.node_id() != victim.node_id()) {
        node.shutdown(Duration::from_secs(2)).await;
    }
    origin.shutdown(Duration::from_secs(2)).await;
    println!(
        "\nSummary: the origin sent {} MiB in all; edges served the rest from cache. Every chunk was checked against its BLAKE3 id.",
        bytes_out >> 20
    );
    println!("More: `stoq bench transport|connections|retrieval|utilization|chunking|erasure|route` measure each part against its baseline; docs/OPERATIONS.md runs a network as separate processes.");
    Ok(())
}
