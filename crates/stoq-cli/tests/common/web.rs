//! Helpers for tests of the HTTP front: curl (bounded in time), the heads it saw, a test
//! certificate, and origins and edges with fronts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{stderr, stoq, Server};

/// curl with a bounded time and the test certificate trusted; `args` follow.
pub fn curl(ca: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    cmd.args(args).output().expect("curl runs")
}

/// Whether curl is missing (saying so: the test then skips).
pub fn curl_missing() -> bool {
    let missing = !have("curl");
    if missing {
        eprintln!("skipped: curl is not installed");
    }
    missing
}

pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The status line's code and the headers (lower-cased names) of a `curl -D -` dump.
pub fn head_of(dump: &str) -> (u16, Vec<(String, String)>) {
    // The last head in the dump (after any 1xx or redirect).
    let head = dump
        .split("\r\n\r\n")
        .filter(|h| h.starts_with("HTTP/"))
        .last()
        .unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The status and headers curl saw for `args` (the body thrown away).
pub fn head(ca: Option<&Path>, args: &[&str]) -> (u16, Vec<(String, String)>) {
    let mut all = vec!["-D", "-", "-o", "/dev/null"];
    all.extend_from_slice(args);
    head_of(&String::from_utf8_lossy(&curl(ca, &all).stdout))
}

/// A certificate for `localhost` and `::1`, and its key, as PEM files in `dir`.
pub fn test_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "::1".into()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// An origin with an HTTPS front (a certificate made here): the server, its data dir, and the
/// certificate to trust.
pub fn https_origin(dir: &Path) -> (Server, PathBuf, PathBuf) {
    let (cert, key) = test_certificate(dir);
    let data = dir.join("origin");
    let flags = [
        "--http",
        "[::1]:0",
        "--http-cert",
        cert.to_str().unwrap(),
        "--http-key",
        key.to_str().unwrap(),
    ];
    (Server::start_with(&data, &flags), data, cert)
}

/// An edge joined to `origin` (sharing its token) with a plain HTTP front.
pub fn edge_of(origin: &Server, dir: &Path, token: &Path) -> Server {
    edge_with(origin, &dir.join("edge"), token, &[])
}

/// The same with its data in `data` and `extra` flags (a region, a position).
pub fn edge_with(origin: &Server, data: &Path, token: &Path, extra: &[&str]) -> Server {
    let mut flags = vec!["--http", "[::1]:0"];
    flags.extend_from_slice(extra);
    Server::edge(origin, data, token, &flags)
}

/// Publishes `file` on `server` (whose data dir `data` holds the admin token); its id.
pub fn put(file: &Path, server: &Server, data: &Path, extra: &[&str]) -> String {
    let token = data.join("admin.token");
    let out = stoq()
        .args(["put"])
        .arg(file)
        .args([
            "--node",
            &format!("{}@{}", server.node_id, server.addr),
            "--token-file",
        ])
        .arg(&token)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
