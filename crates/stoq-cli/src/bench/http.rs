//! `stoq bench http`: curl downloading from a node's HTTP front over HTTPS, with HTTP/1.1 and
//! with HTTP/2, beside nginx + curl serving the same file over HTTPS in the same run (when
//! both are installed); and the time to the first byte through an edge whose cache is cold
//! (the edge pulls from the origin as it answers), warm, and from nginx.
//!
//! Nodes run in this process on [::1]; files live on tmpfs where there is one. Rounds
//! interleave the cases so drift hits them alike; figures are medians.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use stoq::chunking::ContentId;
use stoq::http::{HttpConfig, HttpFront};
use stoq::protocol::PutSettings;
use stoq::transport::{NodeIdentity, StoqEndpoint};
use stoq::{AdminToken, Node, Role};

use super::nginx::{curl, scratch, Nginx};
use super::{gbps, machine, median, noise};
use crate::bench_args::HttpBenchArgs;
use crate::local::{dial, peers_become, start_node_with, Place};
use crate::usage::usage;

/// Bytes of each content fetched cold through the edge.
const COLD_SIZE: usize = 4 << 20;

/// A node with an HTTPS front (certificate made for the run).
async fn node_with_front(
    dir: &Path,
    role: Role,
    seed: Option<&Node>,
    token: &AdminToken,
) -> Result<(Node, HttpFront)> {
    let place = Place {
        role,
        region: "",
        geo: None,
        seed,
    };
    let node = start_node_with(dir.to_path_buf(), place, token, |_| {}).await?;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "::1".to_owned()])?;
    let (cert_path, key_path) = (dir.join("http-cert.pem"), dir.join("http-key.pem"));
    std::fs::write(&cert_path, cert.cert.pem())?;
    std::fs::write(&key_path, cert.key_pair.serialize_pem())?;
    let config = HttpConfig {
        listen: Some("[::1]:0".parse()?),
        cert: Some(cert_path),
        key: Some(key_path),
        ..HttpConfig::default()
    };
    let front = HttpFront::start(&node, &config).await?;
    Ok((node, front))
}

async fn publish(
    client: &StoqEndpoint,
    origin: &Node,
    token: &AdminToken,
    file: &Path,
) -> Result<ContentId> {
    let conn = dial(client, origin).await?;
    Ok(
        stoq::client::publish(&conn, token.as_str(), file, PutSettings::default())
            .await?
            .id,
    )
}

/// `stoq bench http`.
pub async fn run(args: HttpBenchArgs) -> Result<()> {
    if args.size < 1 << 20 || args.rounds == 0 {
        return Err(usage(
            "--size must be at least 1 MiB and --rounds at least 1",
        ));
    }
    anyhow::ensure!(
        super::nginx::found("curl"),
        "stoq bench http downloads with curl, which is not installed (Debian: curl)"
    );
    let scratch = scratch("http")?;
    let dir = &scratch.0;
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    let file = www.join("content.bin");
    std::fs::write(&file, noise(args.size, 7))?;
    let token = AdminToken::load_or_create(&dir.join("token"))?;
    let (origin, origin_front) =
        node_with_front(&dir.join("origin"), Role::Origin, None, &token).await?;
    let (edge, edge_front) =
        node_with_front(&dir.join("edge"), Role::Edge, Some(&origin), &token).await?;
    ensure!(
        peers_become(&[&origin, &edge], 1, Duration::from_secs(20)).await,
        "the edge never joined the origin"
    );
    let client = StoqEndpoint::client(Default::default(), NodeIdentity::generate()?)?;
    let id = publish(&client, &origin, &token, &file).await?;
    let nginx = Nginx::start(dir);
    let out = dir.join("out.bin");
    let whole = format!("{}/c/{id}", origin_front.url());
    let (mut h1, mut h2, mut https) = (vec![], vec![], vec![]);
    let (mut cold, mut warm, mut nginx_first) = (vec![], vec![], vec![]);
    for round in 0..args.rounds {
        h1.push(gbps(
            args.size,
            curl(&whole, &["--http1.1"], &out, args.size)?.total,
        ));
        h2.push(gbps(
            args.size,
            curl(&whole, &["--http2"], &out, args.size)?.total,
        ));
        if let Ok(nginx) = &nginx {
            https.push(gbps(
                args.size,
                nginx.fetch("content.bin", true, &out, args.size)?.total,
            ));
        }
        // A content the edge has never seen: the first byte waits for the pull.
        let small = dir.join(format!("cold-{round}.bin"));
        std::fs::write(&small, noise(COLD_SIZE, 100 + round as u64))?;
        let cold_id = publish(&client, &origin, &token, &small).await?;
        let at_edge = format!("{}/c/{cold_id}", edge_front.url());
        cold.push(curl(&at_edge, &["--http2"], &out, COLD_SIZE)?.first_byte);
        warm.push(curl(&at_edge, &["--http2"], &out, COLD_SIZE)?.first_byte);
        if let Ok(nginx) = &nginx {
            std::fs::copy(&small, www.join("small.bin"))?;
            nginx_first.push(nginx.fetch("small.bin", true, &out, COLD_SIZE)?.first_byte);
        }
    }
    origin_front.shutdown(Duration::from_secs(1)).await;
    edge_front.shutdown(Duration::from_secs(1)).await;
    origin.shutdown(Duration::from_secs(1)).await;
    edge.shutdown(Duration::from_secs(1)).await;
    let ms = |v: &[Duration]| {
        (!v.is_empty())
            .then(|| median(&v.iter().map(|d| d.as_secs_f64() * 1e3).collect::<Vec<_>>()))
    };
    let nginx_gbps = (!https.is_empty()).then(|| median(&https));
    let (one, two) = (median(&h1), median(&h2));
    let report = serde_json::json!({
        "name": "http",
        "size": args.size,
        "rounds": args.rounds,
        "stoq_http1_gbps": one,
        "stoq_http2_gbps": two,
        "nginx_https_gbps": nginx_gbps,
        "nginx_skipped": nginx.as_ref().err(),
        "cold_edge_first_byte_ms": ms(&cold),
        "warm_edge_first_byte_ms": ms(&warm),
        "nginx_first_byte_ms": ms(&nginx_first),
        "first_byte_size": COLD_SIZE,
        "baseline": "nginx + curl over HTTPS (HTTP/1.1, TLS 1.3), the same file from tmpfs",
        "ratio": { "nginx_https": nginx_gbps.map(|n| one / n), "nginx_https_http2": nginx_gbps.map(|n| two / n) },
        "machine": machine(),
    });
    if args.json {
        println!("{report}");
        return Ok(());
    }
    println!(
        "http: {} MiB over HTTPS from an origin's front, curl, {} round(s), over [::1]",
        args.size >> 20,
        args.rounds
    );
    println!("  STOQ HTTP/1.1   {one:6.2} Gbit/s");
    println!("  STOQ HTTP/2     {two:6.2} Gbit/s");
    match (&nginx, nginx_gbps) {
        (Ok(_), Some(n)) => println!(
            "  nginx HTTPS     {n:6.2} Gbit/s   (STOQ HTTP/1.1 {:.2}x, HTTP/2 {:.2}x nginx)",
            one / n,
            two / n
        ),
        (Err(why), _) => println!("  nginx           skipped: {why}"),
        _ => {}
    }
    let show = |v: Option<f64>| v.map_or("-".to_owned(), |m| format!("{m:.1} ms"));
    println!(
        "  first byte of {} MiB: cold edge {}, warm edge {}, nginx {}",
        COLD_SIZE >> 20,
        show(ms(&cold)),
        show(ms(&warm)),
        show(ms(&nginx_first))
    );
    Ok(())
}
