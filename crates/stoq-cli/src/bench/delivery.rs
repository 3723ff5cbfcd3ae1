//! `stoq bench delivery`: whole downloads as `stoq get` does them (manifest, chunks, every
//! chunk verified, written to a file) from an origin, from a warm edge and from both at once;
//! beside, in the same run, raw quinn moving the same bytes (the ceiling), raw quinn doing the
//! same work without STOQ's protocol (file read, hashed, file written), and nginx + curl
//! serving the same file over HTTPS and plain HTTP, when both are installed.
//!
//! Nodes run in this process on [::1]; files live on tmpfs (`/dev/shm`) where there is one,
//! so the disk is not what is measured. Every case writes a new output file, and connection
//! set-up (the QUIC dial, curl's TCP and TLS handshakes) is outside every clock. Rounds
//! interleave the cases so drift hits them alike; figures are medians.

use std::net::SocketAddrV6;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use stoq::chunking::ContentId;
use stoq::client::{self, FetchOptions};
use stoq::protocol::PutSettings;
use stoq::transport::{NodeId, StoqConnection, StoqEndpoint};
use stoq::{AdminToken, Node, Role};

use super::client_thread::ClientThread;
use super::nginx::Nginx;
use super::quinn_file::QuinnFile;
use super::transport::RawQuinn;
use super::{gbps, machine, median, noise, quantile};
use crate::cli::DeliveryBenchArgs;
use crate::local::{dial, peers_become, start_node_with, Place};
use crate::session::endpoint;
use crate::usage::usage;

/// quinn's own upper bound for path MTU discovery (UDP payload bytes).
const QUINN_DEFAULT_MTU: u16 = 1452;

/// One download as `stoq get -o FILE` does it: each chunk verified, then written at its place
/// in the file.
async fn download(
    sources: &[StoqConnection],
    id: &ContentId,
    out: &Path,
    size: usize,
) -> Result<Duration> {
    let started = Instant::now();
    let file = std::sync::Arc::new(std::fs::File::create(out)?);
    let options = FetchOptions {
        active: sources.len(),
        ..Default::default()
    };
    let report = client::fetch_to_file(sources, id, file, &options, |_| Ok(0), |_| {}).await?;
    let took = started.elapsed();
    ensure!(report.size as usize == size, "a download came up short");
    Ok(took)
}

/// Where a download of a batch waits once it has dialed: it says so on `dialed` (failed or
/// not), then starts when `go` turns true, so the batch's clock, like the single download's,
/// leaves connection set-up out.
#[derive(Clone)]
struct StartGate {
    dialed: tokio::sync::mpsc::UnboundedSender<()>,
    go: tokio::sync::watch::Receiver<bool>,
}

/// Downloads `id` from `nodes` into `out` on the client thread, dialing from `shared` (the
/// thread's shared client) or, with `None`, from an endpoint of its own (a client of its
/// own), and with a `gate`, waiting at it after dialing; the download's time, dialing not
/// counted.
async fn download_on(
    client: &ClientThread,
    shared: Option<StoqEndpoint>,
    gate: Option<StartGate>,
    nodes: &[&Node],
    id: ContentId,
    out: &Path,
    size: usize,
) -> Result<Duration> {
    let sources: Vec<(NodeId, SocketAddrV6)> = nodes
        .iter()
        .map(|n| (n.node_id(), n.local_addr()))
        .collect();
    let out = out.to_path_buf();
    client
        .run(move || async move {
            let dialed = async {
                let endpoint = match shared {
                    Some(shared) => shared,
                    None => endpoint()?,
                };
                let mut conns = Vec::new();
                for (node, addr) in sources {
                    conns.push(client::dial(&endpoint, node, addr).await?);
                }
                anyhow::Ok(conns)
            }
            .await;
            if let Some(mut gate) = gate {
                let _ = gate.dialed.send(());
                if dialed.is_ok() {
                    gate.go.wait_for(|go| *go).await?;
                }
            }
            download(&dialed?, &id, &out, size).await
        })
        .await
}

/// Whether the file at `path` holds exactly `data`, read a block at a time (no copy of the
/// whole file in memory).
fn same_bytes(path: &Path, data: &[u8]) -> std::io::Result<bool> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut block = vec![0u8; 64 << 10];
    let mut at = 0;
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok(at == data.len());
        }
        if data.get(at..at + n) != Some(&block[..n]) {
            return Ok(false);
        }
        at += n;
    }
}

/// Removes the last case's output before the next case's clock starts. Every case writes a
/// new file, as a download usually does: truncating the last one would put freeing its pages
/// (11 ms for 64 MiB on tmpfs here, 175 ms for 1 GiB) inside the next case's time.
fn fresh(out: &Path) -> Result<()> {
    match std::fs::remove_file(out) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// The nodes of the benchmark: an origin holding the content and an edge that has it cached.
struct Network {
    origin: Node,
    edge: Node,
    id: ContentId,
}

async fn network(dir: &Path, file: &Path, size: usize, endpoints: u32) -> Result<Network> {
    let token = AdminToken::load_or_create(&dir.join("token"))?;
    let place = |role, seed| Place {
        role,
        region: "",
        geo: None,
        seed,
    };
    let tune = |c: &mut stoq::StoqConfig| {
        c.transport.endpoints = endpoints;
        // The edge keeps the whole content, so the warm edge is warm at any size.
        c.edge.cache_bytes = c.edge.cache_bytes.max(2 * size as u64);
    };
    let origin =
        start_node_with(dir.join("origin"), place(Role::Origin, None), &token, tune).await?;
    let edge = start_node_with(
        dir.join("edge"),
        place(Role::Edge, Some(&origin)),
        &token,
        tune,
    )
    .await?;
    ensure!(
        peers_become(&[&origin, &edge], 1, Duration::from_secs(20)).await,
        "the edge never joined the origin"
    );
    let client = endpoint()?;
    let at_origin = dial(&client, &origin).await?;
    let id = client::publish(&at_origin, token.as_str(), file, PutSettings::default())
        .await?
        .id;
    client::prefetch(&dial(&client, &edge).await?, token.as_str(), &id)
        .await
        .context("warming the edge")?;
    Ok(Network { origin, edge, id })
}

/// `n` downloads of `data` from the origin in batches of `at_once` started together, each its
/// own client on its own connection, spread over the client threads: completed,
/// byte-identical to `data`, failed, aggregate rate and the p50 / p99 of each download's
/// time. The aggregate is all bytes over the batches' wall times: a batch's clock starts
/// once all its clients have dialed (connection set-up is outside every clock here;
/// `stoq bench connections` measures it) and stops when its last download ends; the byte
/// comparison and the removal of the batch's files come after it stops, as they do for the
/// single download.
async fn concurrent(
    net: &Network,
    clients: &[ClientThread],
    n: usize,
    at_once: usize,
    dir: &Path,
    data: &Bytes,
) -> Result<serde_json::Value> {
    let size = data.len();
    let at_once = if at_once == 0 { n } else { at_once.min(n) };
    let busy = || {
        net.origin
            .metrics()
            .busy
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let busy_before = busy();
    let (mut times, mut identical, mut failed) = (Vec::new(), 0, 0);
    let mut wall = Duration::ZERO;
    for first in (0..n).step_by(at_once) {
        let batch = first..(first + at_once).min(n);
        let (dialed, mut dials) = tokio::sync::mpsc::unbounded_channel();
        let (go, start) = tokio::sync::watch::channel(false);
        let gate = StartGate { dialed, go: start };
        let mut tasks = tokio::task::JoinSet::new();
        for i in batch.clone() {
            let (origin, id, out) = (net.origin.clone(), net.id, dir.join(format!("c{i}")));
            let (client, gate) = (clients[i % clients.len()].clone(), gate.clone());
            tasks.spawn(async move {
                let took = download_on(&client, None, Some(gate), &[&origin], id, &out, size).await;
                (out, took)
            });
        }
        drop(gate);
        // Every client has dialed (or failed to) when the channel has a word from each.
        for _ in batch {
            if dials.recv().await.is_none() {
                break;
            }
        }
        let started = Instant::now();
        go.send_replace(true);
        let mut done = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            done.push(joined?);
        }
        wall += started.elapsed();
        for (out, took) in done {
            match took {
                Ok(took) => {
                    times.push(took.as_secs_f64());
                    let data = data.clone();
                    let same = tokio::task::spawn_blocking(move || {
                        let same = same_bytes(&out, &data).unwrap_or(false);
                        let _ = std::fs::remove_file(&out);
                        same
                    });
                    identical += usize::from(same.await?);
                }
                Err(_) => {
                    failed += 1;
                    let _ = std::fs::remove_file(&out);
                }
            }
        }
    }
    Ok(serde_json::json!({
        "clients": n,
        "at_once": at_once,
        "client_threads": clients.len(),
        "completed": times.len(),
        "identical": identical,
        // Requests the origin answered BUSY meanwhile (each a pause and a retry, not a failure).
        "busy_answers": busy() - busy_before,
        "failed": failed,
        "aggregate_gbps": gbps(size * times.len(), wall),
        "p50_s": quantile(&times, 0.5),
        "p99_s": quantile(&times, 0.99),
    }))
}

/// Runs the benchmark and prints the figures (JSON with `--json`).
pub async fn run(args: DeliveryBenchArgs) -> Result<()> {
    if args.size < 1 << 20 || args.rounds == 0 {
        return Err(usage(
            "--size must be at least 1 MiB and --rounds at least 1",
        ));
    }
    let scratch = super::nginx::scratch("delivery")?;
    let www = scratch.0.join("www");
    std::fs::create_dir_all(&www)?;
    let data = Bytes::from(noise(args.size, 7));
    let file = www.join("content.bin");
    std::fs::write(&file, &data)?;
    let net = network(&scratch.0, &file, args.size, args.endpoints).await?;
    let nginx = Nginx::start(&scratch.0);
    // The ceiling: raw quinn with the same path MTU bounds as STOQ's transport; and quinn as it
    // comes (1452-byte packets at most), for reference.
    let max_mtu = stoq::transport::TransportConfig::default().max_mtu;
    let mut quinn = RawQuinn::start(1, max_mtu).await?;
    let mut quinn_default = RawQuinn::start(1, QUINN_DEFAULT_MTU).await?;
    // The same work as a verified download, without STOQ's protocol; its client stands where
    // STOQ's does, on the client thread.
    let quinn_file = std::sync::Arc::new(QuinnFile::start(max_mtu)?);
    let expected = blake3::hash(&data);
    let out: PathBuf = scratch.0.join("out.bin");
    let (mut origin, mut edge, mut both, mut raw, mut https, mut http) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut raw_default, mut raw_file) = (vec![], vec![]);
    let client = ClientThread::start()?;
    let shared = client.run(|| async { endpoint() }).await?;
    let file_client = {
        let server = quinn_file.clone();
        client
            .run(move || async move { server.connect().await })
            .await?
    };
    for _ in 0..args.rounds {
        for (nodes, figures) in [
            (&[&net.origin][..], &mut origin),
            (&[&net.edge], &mut edge),
            (&[&net.origin, &net.edge], &mut both),
        ] {
            fresh(&out)?;
            let took = download_on(
                &client,
                Some(shared.clone()),
                None,
                nodes,
                net.id,
                &out,
                args.size,
            )
            .await?;
            figures.push(gbps(args.size, took));
        }
        raw.push(gbps(args.size, quinn.transfer(&data).await?));
        raw_default.push(gbps(args.size, quinn_default.transfer(&data).await?));
        fresh(&out)?;
        let (c, from, to) = (file_client.clone(), file.clone(), out.clone());
        let took = client
            .run(move || async move { c.fetch(&from, &to, &expected).await })
            .await?;
        raw_file.push(gbps(args.size, took));
        if let Ok(nginx) = &nginx {
            fresh(&out)?;
            https.push(gbps(
                args.size,
                nginx
                    .fetch("content.bin", true, &out, args.size)?
                    .transfer(),
            ));
            fresh(&out)?;
            http.push(gbps(
                args.size,
                nginx
                    .fetch("content.bin", false, &out, args.size)?
                    .transfer(),
            ));
        }
    }
    let clients = match args.clients {
        0 => serde_json::Value::Null,
        n => {
            let threads = match args.client_threads {
                0 => stoq::transport::cores(),
                t => t,
            };
            let mut pool = vec![client.clone()];
            for _ in 1..threads {
                pool.push(ClientThread::start()?);
            }
            concurrent(&net, &pool, n, args.at_once, &scratch.0, &data).await?
        }
    };
    net.origin.shutdown(Duration::from_secs(1)).await;
    net.edge.shutdown(Duration::from_secs(1)).await;
    let nginx_figure = |v: &[f64]| (!v.is_empty()).then(|| median(v));
    let endpoints = stoq::transport::TransportConfig {
        endpoints: args.endpoints,
        ..Default::default()
    }
    .endpoint_count();
    let (o, q, qf) = (median(&origin), median(&raw), median(&raw_file));
    let report = serde_json::json!({
        "name": "delivery",
        "size": args.size,
        "rounds": args.rounds,
        "origin_gbps": o,
        "edge_gbps": median(&edge),
        "two_sources_gbps": median(&both),
        "quinn_gbps": q,
        "quinn_default_mtu_gbps": median(&raw_default),
        "quinn_file_gbps": qf,
        "max_mtu": max_mtu,
        "nginx_https_gbps": nginx_figure(&https),
        "nginx_http_gbps": nginx_figure(&http),
        "nginx_skipped": nginx.as_ref().err(),
        "clients": clients,
        "endpoints": endpoints,
        "baseline": "quinn with the same MTU bounds (same bytes, memory to memory) and nginx + curl over HTTPS; quinn_file: quinn reading the file, the client hashing and writing it",
        "ratio": {
            "quinn": o / q,
            "quinn_file": o / qf,
            "nginx_https": nginx_figure(&https).map(|n| o / n),
            // The concurrent downloads' aggregate against the single download from the origin.
            "clients_aggregate": clients["aggregate_gbps"].as_f64().map(|a| a / o),
        },
        "machine": machine(),
    });
    if args.json {
        println!("{report}");
        return Ok(());
    }
    println!(
        "delivery: {} MiB, {} round(s), verified downloads written to a file, over [::1], {endpoints} socket(s) per node",
        args.size >> 20,
        args.rounds
    );
    println!(
        "  from the origin    {o:6.2} Gbit/s   ({:.2}x raw quinn)",
        o / q
    );
    println!("  from a warm edge   {:6.2} Gbit/s", median(&edge));
    println!("  from both at once  {:6.2} Gbit/s", median(&both));
    println!("  raw quinn          {q:6.2} Gbit/s   (the ceiling: packets up to {max_mtu} bytes, as STOQ)");
    println!(
        "  raw quinn, 1452    {:6.2} Gbit/s   (quinn's default packet bound)",
        median(&raw_default)
    );
    println!(
        "  raw quinn, a file  {qf:6.2} Gbit/s   (read from the file, hashed, written to a file: the same work without STOQ's protocol; origin {:.2}x)",
        o / qf
    );
    match (&nginx, nginx_figure(&https), nginx_figure(&http)) {
        (Ok(_), Some(s), Some(p)) => println!(
            "  nginx + curl       {s:6.2} Gbit/s HTTPS, {p:.2} HTTP   (origin {:.2}x nginx HTTPS)",
            o / s
        ),
        (Err(why), _, _) => println!("  nginx + curl       skipped: {why}"),
        _ => {}
    }
    if !clients.is_null() {
        println!(
            "  {} from the origin, in batches of {} on {} client thread(s): {} completed ({} byte-identical), {} failed, {:.2} Gbit/s in all ({:.2}x one download), p50 {:.2} s, p99 {:.2} s, {} BUSY answers",
            clients["clients"], clients["at_once"], clients["client_threads"], clients["completed"], clients["identical"], clients["failed"],
            clients["aggregate_gbps"].as_f64().unwrap_or(0.0),
            clients["aggregate_gbps"].as_f64().unwrap_or(0.0) / o,
            clients["p50_s"].as_f64().unwrap_or(0.0),
            clients["p99_s"].as_f64().unwrap_or(0.0),
            clients["busy_answers"]
        );
    }
    Ok(())
}
