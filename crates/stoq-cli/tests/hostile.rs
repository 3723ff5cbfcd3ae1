//! A stranger against a real `stoq serve` process: many connections, many requests that never
//! finish, answers never read. The node's memory stays within its budget, a normal download
//! still completes, the stalled streams are reset at the deadline, and memory comes back
//! when the stranger leaves.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use stoq::transport::protocol::{FrameHeader, FrameKind};
use stoq::transport::{
    FramedRecv, FramedSend, NodeId, NodeIdentity, PeerExpectation, StoqConnection, StoqEndpoint,
    TransportConfig,
};

const CONNECTIONS: usize = 20;
const STREAMS: usize = 100;

/// The node's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kib * 1024
}

fn pinned(server: &Server) -> String {
    format!("{}@{}", server.node_id, server.addr)
}

fn status_json(server: &Server) -> serde_json::Value {
    let out = run(&["status", "--node", &pinned(server), "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One hostile connection: half its streams announce a 1 MiB request, half a 60 KiB one, and
/// each sends 30 KiB of it and nothing more. Returns the streams, kept open.
async fn attack(conn: &StoqConnection) -> Vec<(FramedSend, FramedRecv)> {
    let mut held = Vec::new();
    for i in 0..STREAMS {
        let Ok((mut send, recv)) = conn.open_bi().await else {
            break;
        };
        let length = if i % 2 == 0 { 1 << 20 } else { 60 * 1024 };
        let header = FrameHeader {
            kind: FrameKind::Request,
            length,
        };
        let _ = send
            .send_raw(Bytes::copy_from_slice(&header.encode()))
            .await;
        let _ = send.send_raw(Bytes::from(vec![0x5a; 30 * 1024])).await;
        held.push((send, recv));
    }
    held
}

#[test]
fn a_stranger_cannot_grow_a_node_past_its_budget_and_memory_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("origin");
    let file = dir.path().join("content.bin");
    let bytes: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &bytes).unwrap();
    let out = run(&[
        "put",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let put: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = put["id"].as_str().unwrap().to_owned();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[transport]\nstall_timeout_ms = 6000\n").unwrap();
    let server = Server::start_with(&data, &["--config", config.to_str().unwrap()]);
    let pid = server.child.id();
    let got = dir.path().join("got.bin");
    let download = || {
        let _ = std::fs::remove_file(&got);
        let out = run(&[
            "get",
            &id,
            "--node",
            &pinned(&server),
            "-o",
            got.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            std::fs::read(&got).unwrap() == bytes,
            "downloaded bytes differ"
        );
    };
    // One normal download first, so the baseline includes what serving takes.
    download();
    let baseline = rss_bytes(pid);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let node: NodeId = server.node_id.parse().unwrap();
    let client = runtime.block_on(async {
        StoqEndpoint::client(
            TransportConfig {
                listen: "[::1]:0".parse().unwrap(),
                ..TransportConfig::default()
            },
            NodeIdentity::generate().unwrap(),
        )
        .unwrap()
    });
    let started = Instant::now();
    let (conns, held) = runtime.block_on(async {
        let mut conns = Vec::new();
        let mut held = Vec::new();
        for _ in 0..CONNECTIONS {
            let conn = client
                .connect(addr, &PeerExpectation::Node(node))
                .await
                .unwrap();
            held.push(attack(&conn).await);
            conns.push(conn);
        }
        (conns, held)
    });
    // Everything the stranger sent has arrived (or been refused) once the node answers a
    // STATUS after it; measure then, while the streams are held open.
    let during = status_json(&server);
    let attacked = rss_bytes(pid);
    assert!(
        started.elapsed() < Duration::from_millis(5000),
        "the attack took too long to measure before the stall deadline"
    );
    let grown = attacked.saturating_sub(baseline);
    eprintln!(
        "node RSS: baseline {} MiB, under attack {} MiB",
        baseline >> 20,
        attacked >> 20
    );
    // Budget: 20 connections × (1 MiB accepted window + 256 KiB request buffers) ≈ 25 MiB;
    // allow as much again for allocator and QUIC state. Unbounded, this grew by 460 MB.
    assert!(
        grown < 64 << 20,
        "node grew by {} MiB under the attack (baseline {} MiB)",
        grown >> 20,
        baseline >> 20
    );
    let refused = during["connections"]["request_buffers_full"]
        .as_u64()
        .unwrap();
    assert!(
        refused > 0,
        "no request was refused for full buffers: {during}"
    );

    // A normal user still downloads, verified, while the stranger holds its streams.
    download();

    // At the stall deadline every held request is reset and counted.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stalled = status_json(&server)["connections"]["stalled_streams"]
            .as_u64()
            .unwrap();
        if stalled >= CONNECTIONS as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "held requests never timed out ({stalled})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The stranger leaves; the node's memory comes back near its baseline.
    for conn in &conns {
        conn.close(stoq::transport::protocol::ErrorCode::NoError, "bye");
    }
    drop((held, conns));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = rss_bytes(pid);
        if now < baseline + (16 << 20) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "memory stayed {} MiB above its baseline of {} MiB after the stranger left",
            (now - baseline) >> 20,
            baseline >> 20
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, err) = server.stop();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn sigterm_with_requests_in_flight_exits_within_the_drain_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[transport]\nshutdown_grace_ms = 1000\n").unwrap();
    let server = Server::start_with(
        &dir.path().join("n"),
        &["--config", config.to_str().unwrap()],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr: std::net::SocketAddr = server.addr.parse().unwrap();
    let node: NodeId = server.node_id.parse().unwrap();
    let (client, held) = runtime.block_on(async {
        let client = StoqEndpoint::client(
            TransportConfig {
                listen: "[::1]:0".parse().unwrap(),
                ..TransportConfig::default()
            },
            NodeIdentity::generate().unwrap(),
        )
        .unwrap();
        let conn = client
            .connect(addr, &PeerExpectation::Node(node))
            .await
            .unwrap();
        // Requests that never finish arriving: in flight until the node gives up on them.
        let held = attack(&conn).await;
        (client, (conn, held))
    });
    let started = Instant::now();
    let (code, err) = server.stop();
    let took = started.elapsed();
    assert_eq!(code, 0, "{err}");
    assert!(
        took < Duration::from_millis(1000 + 1500),
        "the node took {took:?} to exit with a 1000 ms drain deadline"
    );
    assert!(err.contains("still running at the deadline"), "{err}");
    drop((held, client));
}
