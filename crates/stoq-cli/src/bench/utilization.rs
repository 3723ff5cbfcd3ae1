//! `stoq bench utilization`: how much of a shaped link a download uses. Two network namespaces
//! joined by a veth pair whose server side is limited by `tc tbf` to `--rate` (and, with
//! `--delay-ms` or `--loss`, delayed and thinned by `tc netem` under it); a `stoq serve`
//! in one, `stoq get` in the other; plain TCP over the same link in the same run is the
//! baseline. Utilization is goodput (content bytes over the whole `get`, connection set-up and
//! manifest included) divided by the shaped rate. Needs root and iproute2.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{machine, median, noise};
use crate::cli::UtilizationBenchArgs;
use crate::usage::usage;

const SERVER_ADDR: &str = "fd00:5b::1";
const CLIENT_ADDR: &str = "fd00:5b::2";

/// Parses a tc rate such as `200mbit` into bits per second.
pub fn parse_rate(text: &str) -> Option<f64> {
    let text = text.trim().to_ascii_lowercase();
    let digits = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let value: f64 = text[..digits].parse().ok()?;
    let scale = match &text[digits..] {
        "bit" | "" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => return None,
    };
    (value > 0.0).then_some(value * scale)
}

fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("cannot run {}", args[0]))?;
    ensure!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Two namespaces and their veth pair, removed when dropped.
struct Link {
    server: String,
    client: String,
}

impl Link {
    fn new(rate: &str, delay_ms: u32, loss: f64) -> Result<Link> {
        let tag = std::process::id() % 100_000;
        let link = Link {
            server: format!("sqs{tag}"),
            client: format!("sqc{tag}"),
        };
        sh(&["ip", "netns", "add", &link.server])?;
        sh(&["ip", "netns", "add", &link.client])?;
        let (a, b) = (format!("sqa{tag}"), format!("sqb{tag}"));
        sh(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b])?;
        for (dev, ns, addr) in [
            (&a, &link.server, SERVER_ADDR),
            (&b, &link.client, CLIENT_ADDR),
        ] {
            sh(&["ip", "link", "set", dev, "netns", ns])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
            sh(&[
                "ip",
                "-n",
                ns,
                "-6",
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        }
        let tc = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &link.server, "tc", "qdisc", "add"];
            all.extend_from_slice(&["dev", &a]);
            all.extend_from_slice(args);
            sh(&all)
        };
        tc(&[
            "root", "handle", "1:", "tbf", "rate", rate, "burst", "256kb", "latency", "50ms",
        ])?;
        if delay_ms > 0 || loss > 0.0 {
            // Under the rate limit: delay (the link's RTT) and loss, with room for a full
            // bandwidth-delay product of packets in flight.
            let (delay, loss) = (format!("{delay_ms}ms"), format!("{loss}%"));
            tc(&[
                "parent", "1:1", "handle", "10:", "netem", "delay", &delay, "loss", &loss, "limit",
                "100000",
            ])
            .map_err(|e| match e.to_string().contains("qdisc kind is unknown") {
                true => anyhow::anyhow!(
                    "--delay-ms and --loss need tc netem, which this kernel lacks (sch_netem)"
                ),
                false => e,
            })?;
        }
        Ok(link)
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).args(args);
        cmd
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in [&self.server, &self.client] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs the benchmark (or one of its hidden TCP helpers) and prints the figures.
pub async fn run(args: UtilizationBenchArgs) -> Result<()> {
    if let Some(addr) = &args.tcp_serve {
        return tcp_serve(addr, args.size).await;
    }
    if let Some(addr) = &args.tcp_fetch {
        return tcp_fetch(addr, args.size).await;
    }
    let rate_bps = parse_rate(&args.rate).ok_or_else(|| {
        usage(format!(
            "--rate {:?}: use a tc rate such as 200mbit",
            args.rate
        ))
    })?;
    if args.size == 0 || args.rounds == 0 {
        return Err(usage("--size and --rounds must be at least 1"));
    }
    if !(0.0..100.0).contains(&args.loss) || args.delay_ms > 10_000 {
        return Err(usage(
            "--loss is a percentage under 100 and --delay-ms at most 10000",
        ));
    }
    let euid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    if euid != "0" {
        bail!("this benchmark needs root: it builds two network namespaces and shapes the link between them with tc");
    }
    let exe = std::env::current_exe()?;
    let exe = exe.to_str().context("the binary's path is not UTF-8")?;
    let link = Link::new(&args.rate, args.delay_ms, args.loss)?;
    let dir = std::env::temp_dir().join(format!("stoq-bench-utilization-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&args, &link, exe, &dir, rate_bps).await;
    let _ = std::fs::remove_dir_all(&dir);
    let report = result?;
    if args.json {
        println!("{report}");
    } else {
        println!(
            "utilization: {} MiB over a {} tbf-shaped veth link between two namespaces \
             ({} ms added delay, {} % loss)",
            args.size >> 20,
            args.rate,
            args.delay_ms,
            args.loss
        );
        println!(
            "  stoq get  {:7.1} Mbit/s goodput = {:5.1} % of the link",
            report["stoq"]["mbps"].as_f64().unwrap_or(0.0),
            report["stoq"]["utilization"].as_f64().unwrap_or(0.0) * 100.0
        );
        println!(
            "  tcp       {:7.1} Mbit/s goodput = {:5.1} % of the link   stoq/tcp = {:.3}",
            report["tcp"]["mbps"].as_f64().unwrap_or(0.0),
            report["tcp"]["utilization"].as_f64().unwrap_or(0.0) * 100.0,
            report["ratio"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

async fn measure(
    args: &UtilizationBenchArgs,
    link: &Link,
    exe: &str,
    dir: &Path,
    rate_bps: f64,
) -> Result<serde_json::Value> {
    let file = dir.join("content.bin");
    std::fs::write(&file, noise(args.size, 5))?;
    let known = dir.join("known_nodes");
    let data = dir.join("origin");
    let put = link
        .exec(
            &link.server,
            &[
                exe,
                "put",
                file.to_str().context("path")?,
                "--data-dir",
                data.to_str().context("path")?,
            ],
        )
        .output()?;
    ensure!(
        put.status.success(),
        "put failed: {}",
        String::from_utf8_lossy(&put.stderr)
    );
    let id = String::from_utf8_lossy(&put.stdout).trim().to_owned();
    let listen = format!("[{SERVER_ADDR}]:4433");
    let mut server = link
        .exec(
            &link.server,
            &[
                exe,
                "serve",
                "--listen",
                &listen,
                "--data-dir",
                data.to_str().context("path")?,
            ],
        )
        .env("STOQ_KNOWN_NODES", &known)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().context("stdout")?),
        &mut line,
    )?;
    let node = format!(
        "{}@{listen}",
        line.split_whitespace().nth(5).context("node id")?
    );
    let tcp_addr = format!("[{SERVER_ADDR}]:5001");
    let size = args.size.to_string();
    let mut tcp_server = link
        .exec(
            &link.server,
            &[
                exe,
                "bench",
                "utilization",
                "--tcp-serve",
                &tcp_addr,
                "--size",
                &size,
            ],
        )
        .stdout(Stdio::piped())
        .spawn()?;
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(tcp_server.stdout.take().context("stdout")?),
        &mut ready,
    )?;
    let mut stoq_ms = Vec::new();
    let mut tcp_ms = Vec::new();
    let mut paths = Vec::new();
    let out_file = dir.join("got.bin");
    let result = (|| -> Result<()> {
        for _ in 0..args.rounds {
            let _ = std::fs::remove_file(&out_file);
            let get = link
                .exec(
                    &link.client,
                    &[
                        exe,
                        "get",
                        &id,
                        "--node",
                        &node,
                        "-o",
                        out_file.to_str().context("path")?,
                        "--json",
                        // Every round over the link: not from the chunks an earlier round
                        // left in the client's cache.
                        "--no-cache",
                    ],
                )
                .output()?;
            ensure!(
                get.status.success(),
                "get failed: {}",
                String::from_utf8_lossy(&get.stderr)
            );
            let report: serde_json::Value = serde_json::from_slice(&get.stdout)?;
            ensure!(
                report["size"].as_u64() == Some(args.size as u64),
                "get returned {report}"
            );
            stoq_ms.push(report["elapsed_ms"].as_f64().context("elapsed_ms")?);
            paths.push(report["sources"][0].clone());
            let fetch = link
                .exec(
                    &link.client,
                    &[
                        exe,
                        "bench",
                        "utilization",
                        "--tcp-fetch",
                        &tcp_addr,
                        "--size",
                        &size,
                    ],
                )
                .output()?;
            ensure!(
                fetch.status.success(),
                "tcp fetch failed: {}",
                String::from_utf8_lossy(&fetch.stderr)
            );
            let report: serde_json::Value = serde_json::from_slice(&fetch.stdout)?;
            tcp_ms.push(report["elapsed_ms"].as_f64().context("elapsed_ms")?);
        }
        Ok(())
    })();
    let _ = server.kill();
    let _ = tcp_server.kill();
    let _ = server.wait();
    let _ = tcp_server.wait();
    result?;
    let mbps = |ms: f64| args.size as f64 * 8.0 / (ms / 1e3) / 1e6;
    let (s, t) = (mbps(median(&stoq_ms)), mbps(median(&tcp_ms)));
    let rate_mbps = rate_bps / 1e6;
    Ok(serde_json::json!({
        "name": "utilization",
        "rate": args.rate,
        "delay_ms": args.delay_ms,
        "loss_percent": args.loss,
        "size_bytes": args.size,
        "rounds": args.rounds,
        "config": args.config.as_ref().map(|c| c.display().to_string()),
        "stoq": { "mbps": s, "utilization": s / rate_mbps, "elapsed_ms": stoq_ms, "paths": paths },
        "tcp": { "mbps": t, "utilization": t / rate_mbps, "elapsed_ms": tcp_ms },
        "baseline": "tcp",
        "ratio": s / t,
        "machine": machine(),
    }))
}

/// Hidden helper: serves `size` bytes to every TCP client.
async fn tcp_serve(addr: &str, size: usize) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("ready");
    std::io::Write::flush(&mut std::io::stdout())?;
    let data = std::sync::Arc::new(noise(size, 5));
    loop {
        let (mut stream, _) = listener.accept().await?;
        let data = data.clone();
        tokio::spawn(async move {
            let _ = stream.write_all(&data).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// Hidden helper: reads `size` bytes from a TCP server and prints how long it took.
async fn tcp_fetch(addr: &str, size: usize) -> Result<()> {
    let started = Instant::now();
    let mut stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(addr),
    )
    .await??;
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0usize;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    ensure!(got == size, "received {got} of {size} bytes");
    println!(
        "{}",
        serde_json::json!({ "elapsed_ms": started.elapsed().as_secs_f64() * 1e3 })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tc_rates_parse() {
        assert_eq!(parse_rate("200mbit"), Some(200e6));
        assert_eq!(parse_rate("1gbit"), Some(1e9));
        assert_eq!(parse_rate("1.5Mbit"), Some(1.5e6));
        assert_eq!(parse_rate("fast"), None);
        assert_eq!(parse_rate("0mbit"), None);
    }
}
