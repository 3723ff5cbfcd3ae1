//! The `stoq` binary as a user runs it: real processes, real sockets on [::1].

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn stoq() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stoq"))
}

fn run(args: &[&str]) -> Output {
    stoq().args(args).output().expect("stoq runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `stoq serve` child and the address and node id from its first line.
struct Server {
    child: Child,
    addr: String,
    node_id: String,
}

impl Server {
    fn start(data_dir: &std::path::Path) -> Server {
        let mut child = stoq()
            .args(["serve", "--listen", "[::1]:0", "--data-dir"])
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "stoq listening on ADDR node NODE-ID"
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&words[..3], ["stoq", "listening", "on"], "{line}");
        assert_eq!(words[4], "node", "{line}");
        Server {
            child,
            addr: words[3].to_owned(),
            node_id: words[5].to_owned(),
        }
    }

    /// SIGTERM, then wait (bounded) for a graceful exit.
    fn stop(mut self) -> (i32, String) {
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

#[test]
fn serve_prints_its_real_address_and_id_answers_pings_and_stops_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    assert!(
        server.addr.starts_with("[::1]:") && !server.addr.ends_with(":0"),
        "{}",
        server.addr
    );
    assert_eq!(server.node_id.len(), 64);

    let out = run(&[
        "ping",
        "--node",
        &server.addr,
        "--node-id",
        &server.node_id,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["node_id"], server.node_id.as_str());

    // A wrong node id is refused at the handshake, with status 1 and the reason.
    let wrong = "0".repeat(64);
    let out = run(&["ping", "--node", &server.addr, "--node-id", &wrong]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("node id mismatch"),
        "{}",
        stderr(&out)
    );

    let (code, err) = server.stop();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("stopped cleanly"), "{err}");
}

#[test]
fn a_node_keeps_its_identity_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path());
    let id = first.node_id.clone();
    first.stop();
    let second = Server::start(dir.path());
    assert_eq!(second.node_id, id);
    second.stop();
}

#[test]
fn ipv4_addresses_are_refused_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    for args in [
        vec!["serve", "--listen", "127.0.0.1:4433", "--data-dir", dir],
        vec![
            "serve",
            "--listen",
            "[::ffff:10.0.0.1]:4433",
            "--data-dir",
            dir,
        ],
        vec![
            "ping",
            "--node",
            "127.0.0.1:4433",
            "--node-id",
            &"0".repeat(64),
        ],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains("IPv6-only"), "{}", stderr(&out));
    }
}

#[test]
fn a_broken_config_file_is_refused_with_status_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stoq.toml");
    std::fs::write(&file, "[transport]\nmax_frame_size = 12\n").unwrap();
    let out = run(&["serve", "--config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("transport.max_frame_size"),
        "{}",
        stderr(&out)
    );

    std::fs::write(&file, "[transport]\nmax_connectionz = 12\n").unwrap();
    let out = run(&["config", "--file", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("max_connectionz"), "{}", stderr(&out));
}

#[test]
fn flags_override_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stoq.toml");
    // The file asks for port 1; the flag replaces it with a free port.
    std::fs::write(&file, "[transport]\nlisten = \"[::1]:1\"\n").unwrap();
    let mut child = stoq()
        .args([
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "[::1]:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        line.starts_with("stoq listening on [::1]:") && !line.contains("]:1 "),
        "{line}"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&["serve", "--no-such-flag"]).status.code(), Some(2));
    assert_eq!(run(&["bench", "nonsense"]).status.code(), Some(2));
    assert_eq!(
        run(&["bench", "transport", "--size", "0"]).status.code(),
        Some(2)
    );
}

#[test]
fn the_config_command_prints_presets_that_read_back() {
    let out = run(&["config", "--preset", "cdn"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("congestion = \"bbr\""), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cdn.toml");
    std::fs::write(&file, &text).unwrap();
    let again = run(&["config", "--file", file.to_str().unwrap()]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), text);
}

#[test]
fn bench_transport_reports_every_baseline_in_json() {
    let out = run(&[
        "bench",
        "transport",
        "--size",
        "4194304",
        "--rounds",
        "1",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["name"], "transport");
    assert_eq!(json["baseline"], "quinn");
    for key in ["stoq", "quinn", "tcp_tls", "tcp"] {
        let gbps = json["gbps"][key].as_f64().unwrap();
        assert!(gbps.is_finite() && gbps > 0.0, "{key}: {gbps}");
    }
    let ratio = json["ratio"]["quinn"].as_f64().unwrap();
    let expected = json["gbps"]["stoq"].as_f64().unwrap() / json["gbps"]["quinn"].as_f64().unwrap();
    assert!((ratio - expected).abs() < 1e-9);
}

#[test]
fn the_demo_runs_end_to_end() {
    let out = run(&["demo", "--size", "8388608"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for step in ["1. ", "2. ", "3. ", "4. ", "5. ", "6. ", "7. "] {
        assert!(text.contains(step), "missing step {step} in:\n{text}");
    }
    assert!(text.contains("BLAKE3 matches"), "{text}");
}

#[test]
fn a_node_can_run_with_configured_certificate_files() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(&dir.path().join("first"));
    let id = first.node_id.clone();
    first.stop();
    let file = dir.path().join("stoq.toml");
    let cert = dir.path().join("first").join("node.cert.pem");
    let key = dir.path().join("first").join("node.key.pem");
    std::fs::write(
        &file,
        format!(
            "[transport.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
    let mut child = stoq()
        .args([
            "serve",
            "--listen",
            "[::1]:0",
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
        ])
        .arg(dir.path().join("second"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.trim_end().ends_with(&id), "{line}");
    assert!(!dir.path().join("second").join("node.key.pem").exists());
}
