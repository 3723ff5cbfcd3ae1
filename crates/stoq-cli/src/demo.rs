//! `stoq demo`: what exists so far, on this machine, with real numbers.
//!
//! Today that is the transport: two nodes on [::1] with their own identities, a pinned and
//! verified connection between them, a bulk transfer checked end to end by BLAKE3, an echo
//! round trip, the connection limit refusing a third peer, a stranger's wrong node id refused
//! at the handshake, and a graceful shutdown. The demo grows with each layer.

use std::time::Instant;

use anyhow::{ensure, Result};
use bytes::Bytes;
use stoq::node;
use stoq::protocol::ErrorCode;
use stoq::transport::{
    NodeIdentity, PeerExpectation, StoqEndpoint, TransportConfig, TransportError,
};

use crate::bench::gbps;
use crate::cli::DemoArgs;

/// Runs the demo and prints a short summary of what happened and how fast.
pub async fn run(args: DemoArgs) -> Result<()> {
    println!("STOQ demo: QUIC over IPv6 on this machine\n");
    let config = TransportConfig {
        listen: "[::1]:0".parse()?,
        max_connections: Some(2),
        ..TransportConfig::default()
    };
    let origin = StoqEndpoint::bind(config.clone(), NodeIdentity::generate()?)?;
    let origin_id = origin.node_id().to_string();
    origin.serve(move |req| node::handle(req, origin_id.clone()));
    let addr = origin.local_addr()?;
    println!(
        "1. node A listening on {addr}, node id {}",
        origin.node_id().short()
    );

    let client = StoqEndpoint::client(config.clone(), NodeIdentity::generate()?)?;
    println!("   node B started, node id {}", client.node_id().short());

    let started = Instant::now();
    let conn = client
        .connect(addr, &PeerExpectation::Node(origin.node_id()))
        .await?;
    let answered = node::ping(&conn).await?;
    ensure!(
        answered == origin.node_id().to_string(),
        "node A answered with another id"
    );
    println!(
        "2. B connected to A over TLS 1.3 (ALPN stoq/1), A proved node id {}: {:.2} ms incl. handshake",
        origin.node_id().short(),
        started.elapsed().as_secs_f64() * 1e3
    );

    let data = Bytes::from(
        (0..args.size)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let expected = blake3::hash(&data);
    let started = Instant::now();
    let receipt = node::sink(&conn, data.clone()).await?;
    let elapsed = started.elapsed();
    ensure!(
        receipt.bytes as usize == data.len() && receipt.hash == expected,
        "A received different bytes"
    );
    println!(
        "3. B sent A {} MiB in {:.0} ms = {:.2} Gbit/s, A hashing as it received; BLAKE3 matches",
        args.size >> 20,
        elapsed.as_secs_f64() * 1e3,
        gbps(args.size, elapsed)
    );

    let (mut send, mut recv) = conn.open_bi().await?;
    let echo = data.slice(..data.len().min(16 << 20));
    let started = Instant::now();
    send.send_request(vec![node::Op::Echo.code()]).await?;
    let body = echo.clone();
    let writer = tokio::spawn(async move {
        send.send_data(body).await?;
        send.send_end().await?;
        send.finish()
    });
    let mut hasher = blake3::Hasher::new();
    while let Some(piece) = recv.recv_data().await? {
        hasher.update(&piece);
    }
    recv.recv_response().await?;
    writer.await??;
    ensure!(
        hasher.finalize() == blake3::hash(&echo),
        "echo came back different"
    );
    println!(
        "4. A echoed {} MiB back to B, streamed both ways at once: {:.0} ms round trip",
        echo.len() >> 20,
        started.elapsed().as_secs_f64() * 1e3
    );

    let stats = conn.stats();
    println!(
        "   connection: rtt {:.3} ms, mtu {}, {} packets sent, {} lost, cwnd {} KiB",
        stats.rtt.as_secs_f64() * 1e3,
        stats.mtu,
        stats.packets_sent,
        stats.packets_lost,
        stats.cwnd / 1024
    );

    let second = client
        .connect(addr, &PeerExpectation::Node(origin.node_id()))
        .await?;
    node::ping(&second).await?;
    let third = client
        .connect(addr, &PeerExpectation::Node(origin.node_id()))
        .await?;
    match node::ping(&third).await {
        Err(TransportError::Closed {
            code: ErrorCode::ConnectionLimit,
            reason,
        }) => {
            println!("5. A's limit is 2 connections: a third was refused ({reason}); the first two still answer");
        }
        other => anyhow::bail!("expected the third connection to be refused, got {other:?}"),
    }
    node::ping(&conn).await?;
    node::ping(&second).await?;

    let impostor = NodeIdentity::generate()?.node_id();
    match client.connect(addr, &PeerExpectation::Node(impostor)).await {
        Err(e) if e.to_string().contains("node id mismatch") => {
            println!("6. B dialled A expecting another node id: refused at the handshake");
        }
        other => anyhow::bail!("expected a node id mismatch, got {other:?}"),
    }

    drop((conn, second, third));
    let report = origin.shutdown(config.shutdown_grace()).await;
    println!(
        "7. A shut down gracefully ({})",
        if report.drained {
            "no request was cut"
        } else {
            "some requests were cut at the deadline"
        }
    );
    println!(
        "\nMore: `stoq bench transport` compares STOQ with raw quinn, TCP+TLS and TCP in one run."
    );
    Ok(())
}
