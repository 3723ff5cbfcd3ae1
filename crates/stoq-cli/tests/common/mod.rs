//! Shared helpers for the `stoq` binary's tests: the binary, and `stoq serve` children.

#![allow(dead_code)]

pub mod web;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary, with its known-nodes file kept out of the user's home.
pub fn stoq() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stoq"));
    let known = std::env::temp_dir().join(format!("stoq-known-nodes-{}", std::process::id()));
    cmd.env("STOQ_KNOWN_NODES", known);
    // Gets fetch from the network, as each test expects, and write nothing to the user's
    // cache; the tests of the chunk cache set their own.
    let cache = std::env::temp_dir().join(format!("stoq-cache-{}", std::process::id()));
    cmd.env("STOQ_CACHE_DIR", cache)
        .env("STOQ_CACHE_BYTES", "0");
    cmd
}

pub fn run(args: &[&str]) -> Output {
    stoq().args(args).output().expect("stoq runs")
}

/// `stoq put FILE --node NODE --token-file TOKEN`.
pub fn put_to(file: &std::path::Path, node: &str, token: &std::path::Path) -> Output {
    stoq()
        .arg("put")
        .arg(file)
        .args(["--node", node, "--token-file"])
        .arg(token)
        .output()
        .expect("stoq runs")
}

/// The same, which must succeed: the content id it printed.
pub fn publish(file: &std::path::Path, node: &str, token: &std::path::Path) -> String {
    let out = put_to(file, node, token);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `stoq serve` child and the address and node id from its first line.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub node_id: String,
    /// The HTTP front's URL, from the second line, when started with `--http`.
    pub http_url: Option<String>,
}

/// Starts `cmd` with its standard output piped and returns it with the first line it prints
/// (`stoq serve` prints its address and node id there once it listens).
pub fn spawn_for_first_line(cmd: &mut Command) -> (Child, String) {
    let (child, mut lines) = spawn_for_lines(cmd, 1);
    (child, lines.remove(0))
}

/// Starts `cmd` with its standard output piped and returns it with the first `n` lines.
pub fn spawn_for_lines(cmd: &mut Command, n: usize) -> (Child, Vec<String>) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let lines = (0..n)
        .map(|_| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line
        })
        .collect();
    (child, lines)
}

impl Server {
    pub fn start(data_dir: &std::path::Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &std::path::Path, extra: &[&str]) -> Server {
        let http = extra.contains(&"--http");
        let (child, lines) = spawn_for_lines(
            stoq()
                .args(["serve", "--listen", "[::1]:0", "--data-dir"])
                .arg(data_dir)
                .args(extra)
                .stderr(Stdio::piped()),
            1 + usize::from(http),
        );
        let line = &lines[0];
        // "stoq listening on ADDR node NODE-ID"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&words[..3], ["stoq", "listening", "on"], "{line}");
        assert_eq!(words[4], "node", "{line}");
        // "stoq http listening on URL"
        let http_url = lines.get(1).map(|l| {
            let url = l.trim().strip_prefix("stoq http listening on ");
            url.unwrap_or_else(|| panic!("no HTTP URL in {l:?}"))
                .to_owned()
        });
        Server {
            child,
            addr: words[3].to_owned(),
            node_id: words[5].to_owned(),
            http_url,
        }
    }

    /// An edge in `data` joined to `origin` with the admin token at `token` (the network's),
    /// with `extra` flags.
    pub fn edge(
        origin: &Server,
        data: &std::path::Path,
        token: &std::path::Path,
        extra: &[&str],
    ) -> Server {
        let seed = format!("{}@{}", origin.node_id, origin.addr);
        let token = token.to_str().unwrap();
        let mut flags = vec!["--role", "edge", "--seed", &seed, "--token-file", token];
        flags.extend_from_slice(extra);
        Server::start_with(data, &flags)
    }

    /// SIGTERM, then wait (bounded) for a graceful exit.
    pub fn stop(mut self) -> (i32, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut err)
                    .unwrap();
                return (status.code().unwrap_or(-1), err);
            }
            assert!(
                Instant::now() < deadline,
                "stoq serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Writes `len` pseudo-random bytes to `path` without holding them in memory.
pub fn write_noise(path: &std::path::Path, len: u64, seed: u64) {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut left = len;
    while left > 0 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes();
        let n = left.min(8) as usize;
        file.write_all(&bytes[..n]).unwrap();
        left -= n as u64;
    }
    file.flush().unwrap();
}

/// `len` pseudo-random bytes (the same as [`write_noise`] writes).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let file = tempfile::NamedTempFile::new().unwrap();
    write_noise(file.path(), len as u64, seed);
    std::fs::read(file.path()).unwrap()
}
