//! `stoq bench connections`: how many concurrent connections a node holds, how fast it
//! accepts them, and what each costs in memory; raw quinn with the same count as the baseline.
//!
//! Each side runs in a child process of its own (`--only stoq|quinn`), so the resident memory
//! it reports belongs to that side alone. In a child: a server and a client endpoint in one
//! process open `count` connections (64 handshakes at a time), each does one request; then,
//! with all of them open, every connection does one more request, which shows they are all
//! still alive. Memory per connection is the growth of the process's resident set divided by
//! the count (both ends are in the process, so it is the cost of a client+server pair).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use stoq::transport::{NodeIdentity, PeerExpectation, StoqEndpoint, TransportConfig};
use tokio::sync::Semaphore;

use super::machine;
use crate::cli::ConnectionsBenchArgs;
use crate::usage::usage;

const HANDSHAKES_AT_ONCE: usize = 64;

/// A progress line (to stderr) every this many connections, so a slowing rate shows.
const PROGRESS_EVERY: usize = 10_000;

/// Resident memory of this process now (VmRSS), in bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Runs the benchmark (or, with `--only`, one side of it) and prints the figures.
pub async fn run(args: ConnectionsBenchArgs) -> Result<()> {
    if args.count == 0 {
        return Err(usage("--count must be at least 1"));
    }
    match args.only.as_deref() {
        Some("stoq") => {
            let transport = match &args.config {
                Some(path) => stoq::StoqConfig::load(path).map_err(usage)?.transport,
                None => TransportConfig::default(),
            };
            return side_report(stoq_side(args.count, transport).await?);
        }
        Some("quinn") => return side_report(quinn_side(args.count).await?),
        Some(other) => return Err(usage(format!("--only {other:?}: stoq or quinn"))),
        None => {}
    }
    let exe = std::env::current_exe()?;
    let side = |name: &str| -> Result<serde_json::Value> {
        let mut child = std::process::Command::new(&exe);
        child.args(["bench", "connections", "--only", name]);
        child.args(["--count", &args.count.to_string()]);
        if let Some(config) = &args.config {
            child.arg("--config").arg(config);
        }
        // The side's progress lines go straight to the terminal.
        let out = child
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run the {name} side"))?;
        ensure!(
            out.status.success(),
            "the {name} side failed (its error is above)"
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let stoq = side("stoq")?;
    let quinn = side("quinn")?;
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let report = serde_json::json!({
        "name": "connections",
        "count": args.count,
        "config": args.config.as_ref().map(|c| c.display().to_string()),
        "stoq": stoq,
        "quinn": quinn,
        "baseline": "quinn",
        "ratio": {
            "handshakes_per_s": f(&stoq, "handshakes_per_s") / f(&quinn, "handshakes_per_s"),
            "bytes_per_connection": f(&stoq, "bytes_per_connection") / f(&quinn, "bytes_per_connection"),
        },
        "machine": machine(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!(
            "connections: {} concurrent connections, client and server in one process",
            args.count
        );
        for (name, v) in [("stoq", &stoq), ("quinn", &quinn)] {
            println!(
                "  {name:6} {:8.0} handshakes/s   {:6.1} KB per connection pair   {} of {} alive at the end",
                f(v, "handshakes_per_s"),
                f(v, "bytes_per_connection") / 1e3,
                v["alive"],
                args.count
            );
        }
        println!(
            "  stoq/quinn: handshakes {:.2}x, memory {:.2}x",
            report["ratio"]["handshakes_per_s"]
                .as_f64()
                .unwrap_or(f64::NAN),
            report["ratio"]["bytes_per_connection"]
                .as_f64()
                .unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

fn side_report(v: serde_json::Value) -> Result<()> {
    println!("{v}");
    Ok(())
}

fn figures(count: usize, handshakes: Duration, rss_before: u64, alive: usize) -> serde_json::Value {
    let grown = rss_bytes().saturating_sub(rss_before);
    serde_json::json!({
        "handshakes_per_s": count as f64 / handshakes.as_secs_f64(),
        "handshake_seconds": handshakes.as_secs_f64(),
        "rss_growth_bytes": grown,
        "bytes_per_connection": grown as f64 / count as f64,
        "alive": alive,
    })
}

fn long_lived(base: TransportConfig) -> TransportConfig {
    TransportConfig {
        listen: "[::1]:0".parse().expect("an address"),
        max_connections: None,
        idle_timeout_ms: 600_000,
        ..base
    }
}

/// Opens `count` connections with `dial` (64 at a time; `dial` also makes the first request)
/// and times that; then, with all of them open, pings each once. Returns the figures.
async fn hold<C, D, DF, P, PF>(count: usize, dial: D, ping: P) -> Result<serde_json::Value>
where
    C: Clone + Send + 'static,
    D: Fn() -> DF,
    DF: std::future::Future<Output = Result<C>> + Send + 'static,
    P: Fn(C) -> PF,
    PF: std::future::Future<Output = bool> + Send + 'static,
{
    let before = rss_bytes();
    let gate = Arc::new(Semaphore::new(HANDSHAKES_AT_ONCE));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let (gate, dialled) = (gate.clone(), dial());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            dialled.await
        }));
    }
    let mut conns = Vec::with_capacity(count);
    let mut last = Instant::now();
    for (done, t) in tasks.into_iter().enumerate() {
        conns.push(t.await??);
        if (done + 1) % PROGRESS_EVERY == 0 {
            let rate = PROGRESS_EVERY as f64 / last.elapsed().as_secs_f64();
            eprintln!(
                "  {} connections open, the last {PROGRESS_EVERY} at {rate:.0}/s",
                done + 1
            );
            last = Instant::now();
        }
    }
    let handshakes = started.elapsed();
    let mut alive = 0;
    for chunk in conns.chunks(HANDSHAKES_AT_ONCE) {
        let pings: Vec<_> = chunk
            .iter()
            .map(|c| tokio::spawn(ping(c.clone())))
            .collect();
        for p in pings {
            alive += usize::from(p.await.unwrap_or(false));
        }
    }
    Ok(figures(count, handshakes, before, alive))
}

async fn stoq_side(count: usize, base: TransportConfig) -> Result<serde_json::Value> {
    let server = StoqEndpoint::bind(long_lived(base.clone()), NodeIdentity::generate()?)?;
    stoq::node::serve_basic(&server);
    let client = StoqEndpoint::client(long_lived(base), NodeIdentity::generate()?)?;
    let (addr, expect) = (
        server.local_addr()?,
        PeerExpectation::Node(server.node_id()),
    );
    let dial = || {
        let (client, expect) = (client.clone(), expect.clone());
        async move {
            let conn = client.connect(addr, &expect).await?;
            stoq::client::ping(&conn).await?;
            anyhow::Ok(conn)
        }
    };
    let ping = |conn: stoq::transport::StoqConnection| async move {
        stoq::client::ping(&conn).await.is_ok()
    };
    hold(count, dial, ping).await
}

/// One request on a raw quinn connection: "ping" answered by "pong".
async fn quinn_ping(conn: quinn::Connection) -> Result<quinn::Connection> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(b"ping").await?;
    send.finish()?;
    ensure!(recv.read_to_end(64).await? == b"pong", "wrong answer");
    Ok(conn)
}

async fn quinn_side(count: usize) -> Result<serde_json::Value> {
    let (cert, key) = super::raw_quinn::self_signed()?;
    let mut server_config = quinn::ServerConfig::with_single_cert(vec![cert.clone()], key)?;
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(Duration::from_secs(600).try_into()?));
    let transport = Arc::new(transport);
    server_config.transport_config(transport.clone());
    let server = quinn::Endpoint::server(server_config, "[::1]:0".parse()?)?;
    let addr = server.local_addr()?;
    let acceptor = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = acceptor.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let _ = recv.read_to_end(64).await;
                        let _ = send.write_all(b"pong").await;
                        let _ = send.finish();
                    });
                }
            });
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert)?;
    let mut client_config = quinn::ClientConfig::with_root_certificates(Arc::new(roots))?;
    client_config.transport_config(transport);
    let mut client = quinn::Endpoint::client("[::1]:0".parse()?)?;
    client.set_default_client_config(client_config);
    let dial = || {
        let client = client.clone();
        async move { quinn_ping(client.connect(addr, "localhost")?.await?).await }
    };
    let ping = |conn: quinn::Connection| async move { quinn_ping(conn).await.is_ok() };
    hold(count, dial, ping).await
}
