//! The network-namespace testbed: real hosts on one machine. Each node runs as its own `stoq
//! serve` process in its own namespace with its own IPv6 address on a shared bridge; links are
//! shaped with `tc tbf`; a link is cut mid-transfer. Needs root and iproute2; without them the
//! test prints why and passes without running (there is nothing it could check).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::spawn_for_first_line;

/// Runs a command, panicking with its output if it fails.
fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Why the testbed cannot run here, if it cannot.
fn unavailable(probe: &str) -> Option<String> {
    let euid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&euid.stdout).trim() != "0" {
        return Some("needs root (network namespaces)".into());
    }
    match Command::new("ip").args(["netns", "add", probe]).output() {
        Ok(o) if o.status.success() => {
            let _ = Command::new("ip").args(["netns", "del", probe]).status();
            let tc = Command::new("tc").arg("-V").output();
            if tc.map(|o| o.status.success()).unwrap_or(false) {
                None
            } else {
                Some("tc (iproute2) is not available".into())
            }
        }
        Ok(o) => Some(format!(
            "cannot create a network namespace: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("iproute2 `ip` is not available: {e}")),
    }
}

/// Namespaces on one bridge, removed (with their processes) when dropped.
struct Testbed {
    prefix: String,
    hosts: Vec<String>,
    children: Vec<Child>,
}

impl Testbed {
    /// A bridge namespace and `n` hosts `fd00:5a::{1..n}` each behind a veth on the bridge.
    fn new(n: usize) -> Testbed {
        let prefix = format!("sq{}", std::process::id() % 100_000);
        let mut bed = Testbed {
            prefix: prefix.clone(),
            hosts: Vec::new(),
            children: Vec::new(),
        };
        let sw = format!("{prefix}sw");
        sh(&["ip", "netns", "add", &sw]);
        bed.hosts.push(sw.clone());
        sh(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
        for i in 1..=n {
            let host = format!("{prefix}h{i}");
            sh(&["ip", "netns", "add", &host]);
            bed.hosts.push(host.clone());
            let (inner, outer) = (format!("{prefix}i{i}"), format!("{prefix}o{i}"));
            sh(&[
                "ip", "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ]);
            sh(&["ip", "link", "set", &inner, "netns", &host]);
            sh(&["ip", "link", "set", &outer, "netns", &sw]);
            sh(&[
                "ip", "-n", &sw, "link", "set", &outer, "master", "br0", "up",
            ]);
            sh(&["ip", "-n", &host, "link", "set", "lo", "up"]);
            sh(&["ip", "-n", &host, "link", "set", &inner, "name", "eth0"]);
            let addr = format!("fd00:5a::{i}/64");
            sh(&[
                "ip", "-n", &host, "-6", "addr", "add", &addr, "dev", "eth0", "nodad",
            ]);
            sh(&["ip", "-n", &host, "link", "set", "eth0", "up"]);
        }
        bed
    }

    fn host(&self, i: usize) -> String {
        format!("{}h{i}", self.prefix)
    }

    /// Shapes host `i`'s outgoing traffic to `rate` (e.g. `200mbit`) with a token bucket.
    fn shape(&self, i: usize, rate: &str) {
        sh(&[
            "ip",
            "netns",
            "exec",
            &self.host(i),
            "tc",
            "qdisc",
            "add",
            "dev",
            "eth0",
            "root",
            "tbf",
            "rate",
            rate,
            "burst",
            "256kb",
            "latency",
            "50ms",
        ]);
    }

    /// Cuts host `i` off the bridge.
    fn cut(&self, i: usize) {
        let sw = format!("{}sw", self.prefix);
        sh(&[
            "ip",
            "-n",
            &sw,
            "link",
            "set",
            &format!("{}o{i}", self.prefix),
            "down",
        ]);
    }

    /// Starts `stoq serve` on host `i`; returns its node id.
    fn serve(&mut self, i: usize, dir: &Path, known: &Path, extra: &[&str]) -> String {
        let listen = format!("[fd00:5a::{i}]:4433");
        let (child, line) = spawn_for_first_line(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.host(i),
                    env!("CARGO_BIN_EXE_stoq"),
                    "serve",
                ])
                .args(["--listen", &listen, "--data-dir"])
                .arg(dir)
                .args(extra)
                .env("STOQ_KNOWN_NODES", known)
                .stderr(Stdio::null()),
        );
        self.children.push(child);
        line.split_whitespace()
            .nth(5)
            .unwrap_or_else(|| panic!("no id in {line:?}"))
            .to_owned()
    }

    /// Runs `stoq ARGS` on host `i`.
    fn stoq(&self, i: usize, known: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.host(i), env!("CARGO_BIN_EXE_stoq")])
            .args(args)
            .env("STOQ_KNOWN_NODES", known)
            // Every get fetches over the shaped links: no client chunk cache.
            .env("STOQ_CACHE_BYTES", "0")
            .env("STOQ_CACHE_DIR", known.with_extension("cache"));
        cmd
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for h in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", h]).status();
        }
    }
}

#[test]
fn a_download_survives_a_link_cut_between_real_hosts_on_shaped_links() {
    if let Some(reason) = unavailable(&format!("sqprobe{}", std::process::id())) {
        println!("skipped: the namespace testbed {reason}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_nodes");
    let token = dir.path().join("net.token");
    std::fs::write(&token, "netns-testbed-token-0123456789").unwrap();
    let token = token.to_str().unwrap();
    // Hosts: 1 origin, 2 and 3 edges, 4 the client.
    let mut bed = Testbed::new(4);
    for edge in [2, 3] {
        bed.shape(edge, "200mbit");
    }
    let origin = bed.serve(1, &dir.path().join("o"), &known, &["--token-file", token]);
    let seed = format!("{origin}@[fd00:5a::1]:4433");
    let common = ["--role", "edge", "--seed", &seed, "--token-file", token];
    bed.serve(
        2,
        &dir.path().join("e2"),
        &known,
        &[&common[..], &["--geo", "50,8"]].concat(),
    );
    bed.serve(
        3,
        &dir.path().join("e3"),
        &known,
        &[&common[..], &["--geo", "40,-74"]].concat(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = bed
            .stoq(
                4,
                &known,
                &["status", "--node", "[fd00:5a::1]:4433", "--json"],
            )
            .output()
            .unwrap();
        let peers = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .map(|v| v["peers"].as_array().map_or(0, Vec::len))
            .unwrap_or(0);
        if peers == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the edges never joined across namespaces"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let file = dir.path().join("payload.bin");
    let data: Vec<u8> = (0..48u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let out = bed
        .stoq(
            1,
            &known,
            &[
                "put",
                file.to_str().unwrap(),
                "--node",
                "[fd00:5a::1]:4433",
                "--token-file",
                token,
            ],
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();

    // The client pulls from both edges; edge 3's link is cut a quarter of the way through.
    let target = dir.path().join("got.bin");
    let part = dir.path().join("got.bin.part");
    let started = Instant::now();
    let mut get = bed
        .stoq(
            4,
            &known,
            &[
                "get",
                &id,
                "--node",
                "[fd00:5a::1]:4433",
                "--near",
                "45,-30",
                "--parallel",
                "2",
                "-o",
                target.to_str().unwrap(),
                "--json",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < (data.len() / 4) as u64 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the download never got going"
        );
        assert!(
            get.try_wait().unwrap().is_none(),
            "get ended before the cut"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    bed.cut(3);
    let out = get.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        std::fs::read(&target).unwrap(),
        data,
        "intact despite the cut"
    );
    let dropped: Vec<&str> = report["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(dropped, ["[fd00:5a::3]:4433"], "{report}");
    println!(
        "testbed: 48 MiB over two 200 Mbit/s edges, one cut at 25%: {:.0} ms, sources {}",
        report["elapsed_ms"].as_f64().unwrap(),
        report["sources"]
    );
}
