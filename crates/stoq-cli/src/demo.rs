//! `stoq demo`: what exists so far, on this machine, with real numbers.
//!
//! Three nodes on [::1] with their own identities and content stores: a pinned, verified QUIC
//! connection; a bulk transfer checked by BLAKE3; content published with deduplication and
//! fetched from two nodes at once, every chunk verified; a route over a 1,000-node topology;
//! the connection limit and a wrong node id refused; a graceful shutdown. The demo grows with
//! each layer (the edge network comes next).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Result};
use bytes::Bytes;
use stoq::node::{self, NodeService};
use stoq::protocol::ErrorCode;
use stoq::routing::{synthetic, CostWeights, Objective};
use stoq::store::{PutOptions, Store};
use stoq::transport::{
    NodeIdentity, PeerExpectation, StoqEndpoint, TransportConfig, TransportError,
};

use crate::bench::gbps;
use crate::cli::DemoArgs;

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("stoq-demo-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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

/// Runs the demo and prints a short summary of what happened and how fast.
pub async fn run(args: DemoArgs) -> Result<()> {
    println!("STOQ demo: QUIC over IPv6, content-addressed storage and routing, on this machine\n");
    let config = TransportConfig {
        listen: "[::1]:0".parse()?,
        max_connections: Some(3),
        ..TransportConfig::default()
    };
    let (dir_a, dir_c) = (Scratch::new("a")?, Scratch::new("c")?);
    let mut store_a = Store::open(&dir_a.0)?;
    let mut store_c = Store::open(&dir_c.0)?;

    // 1. Publishing: version 1 of a file, then version 2 with one line changed.
    let v1 = sample_text(400_000, None);
    let v2 = sample_text(400_000, Some(200_000));
    let put1 = store_a.put_reader(&v1[..], PutOptions::default())?;
    let put2 = store_a.put_reader(&v2[..], PutOptions::default())?;
    store_c.put_reader(&v2[..], PutOptions::default())?;
    println!(
        "1. node A stores a {} MiB {:?} file as {} chunks; version 2 (one line changed) adds {} new chunk(s), {} KiB",
        v1.len() >> 20,
        put1.kind,
        put1.chunks,
        put2.new_chunks,
        put2.new_bytes >> 10
    );

    let a = StoqEndpoint::bind(config.clone(), NodeIdentity::generate()?)?;
    let c = StoqEndpoint::bind(config.clone(), NodeIdentity::generate()?)?;
    for (endpoint, store) in [(&a, store_a), (&c, store_c)] {
        let service = NodeService::new(endpoint.node_id().to_string(), Some(Arc::new(store)));
        endpoint.serve(move |req| service.clone().handle(req));
    }
    let addr = a.local_addr()?;
    println!(
        "2. nodes A ({}) and C ({}) serve their stores on {addr} and {}",
        a.node_id().short(),
        c.node_id().short(),
        c.local_addr()?
    );

    let client = StoqEndpoint::client(config.clone(), NodeIdentity::generate()?)?;
    let started = Instant::now();
    let conn = client
        .connect(addr, &PeerExpectation::Node(a.node_id()))
        .await?;
    ensure!(
        node::ping(&conn).await? == a.node_id().to_string(),
        "node A answered with another id"
    );
    println!(
        "3. client B connected to A over TLS 1.3 (ALPN stoq/1); A proved node id {}: {:.2} ms incl. handshake",
        a.node_id().short(),
        started.elapsed().as_secs_f64() * 1e3
    );

    let data = Bytes::from(
        (0..args.size)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let started = Instant::now();
    let receipt = node::sink(&conn, data.clone()).await?;
    let elapsed = started.elapsed();
    ensure!(
        receipt.bytes as usize == data.len() && receipt.hash == blake3::hash(&data),
        "A received different bytes"
    );
    println!(
        "4. B sent A {} MiB in {:.0} ms = {:.2} Gbit/s, A hashing as it received; BLAKE3 matches",
        args.size >> 20,
        elapsed.as_secs_f64() * 1e3,
        gbps(args.size, elapsed)
    );

    let conn_c = client
        .connect(c.local_addr()?, &PeerExpectation::Node(c.node_id()))
        .await?;
    let started = Instant::now();
    let mut fetched = Vec::with_capacity(v2.len());
    let report =
        node::content::fetch(&[conn.clone(), conn_c.clone()], &put2.id, &mut fetched).await?;
    let elapsed = started.elapsed();
    ensure!(fetched == v2, "fetched content differs");
    println!(
        "5. B fetched content {}… ({} MiB) from A and C at once in {:.0} ms: {} KiB from A, {} KiB from C, every chunk verified",
        &put2.id.to_string()[..12],
        v2.len() >> 20,
        elapsed.as_secs_f64() * 1e3,
        report.sources[0].1 >> 10,
        report.sources[1].1 >> 10
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
    let alternatives = matrix.alternative_routes(&from, &to, Objective::Balanced, 3)?;
    println!(
        "6. routing over a 1,000-node topology: {} -> {} via {} hop(s), {:.1} ms, bottleneck {:.0} Gbit/s, found in {} us; {} node-disjoint alternatives",
        from,
        to,
        route.hops(),
        route.latency_ms,
        route.bottleneck_mbps / 1000.0,
        took.as_micros(),
        alternatives.node_disjoint
    );

    let stats = conn.stats();
    println!(
        "   B-A connection: rtt {:.3} ms, mtu {}, {} packets sent, {} lost",
        stats.rtt.as_secs_f64() * 1e3,
        stats.mtu,
        stats.packets_sent,
        stats.packets_lost
    );

    let second = client
        .connect(addr, &PeerExpectation::Node(a.node_id()))
        .await?;
    node::ping(&second).await?;
    let third = client
        .connect(addr, &PeerExpectation::Node(a.node_id()))
        .await?;
    node::ping(&third).await?;
    let fourth = client
        .connect(addr, &PeerExpectation::Node(a.node_id()))
        .await?;
    match node::ping(&fourth).await {
        Err(TransportError::Closed {
            code: ErrorCode::ConnectionLimit,
            reason,
        }) => {
            println!("7. A's limit is 3 connections: a fourth was refused ({reason}); the others still answer");
        }
        other => anyhow::bail!("expected the fourth connection to be refused, got {other:?}"),
    }
    node::ping(&conn).await?;

    let impostor = NodeIdentity::generate()?.node_id();
    match client.connect(addr, &PeerExpectation::Node(impostor)).await {
        Err(e) if e.to_string().contains("node id mismatch") => {
            println!("8. B dialled A expecting another node id: refused at the handshake");
        }
        other => anyhow::bail!("expected a node id mismatch, got {other:?}"),
    }

    drop((conn, conn_c, second, third, fourth));
    let report = a.shutdown(config.shutdown_grace()).await;
    c.shutdown(config.shutdown_grace()).await;
    println!(
        "9. A and C shut down gracefully ({})",
        if report.drained {
            "no request was cut"
        } else {
            "some requests were cut at the deadline"
        }
    );
    println!("\nMore: `stoq bench transport|route|chunking|erasure` measure each layer against its baseline.");
    Ok(())
}
