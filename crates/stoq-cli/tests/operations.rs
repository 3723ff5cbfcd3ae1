//! Running nodes as an operator does: live reload (`stoq serve` re-reads its config on SIGHUP
//! and applies what can change without a restart, while a download runs through it; a bad
//! file changes nothing), the status screen (`stoq status --node`, `--watch`) and progress
//! bars on long work (drawn on a terminal, never for JSON or a pipe), and structured logs
//! (every event names the node, and the request and peer where there is one).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{noise, run, stderr, stoq, Server};

fn write_token(path: &Path, byte: u8) -> String {
    let text = format!("{byte:02x}").repeat(32);
    std::fs::write(path, format!("{text}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    text
}

fn hangup(server: &Server) {
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
}

/// The edge's cache counters (asked again while the edge says "slow down": the download holds
/// this address's byte budget).
fn cache_of(edge: &Server) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = run(&["status", "--node", &edge.addr, "--json"]);
        if out.status.success() {
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            return status["cache"].clone();
        }
        assert!(Instant::now() < deadline, "status: {}", stderr(&out));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn edge_config(cache_bytes: u64, region: &str) -> String {
    // The download is held to 8 MiB/s so the reload lands in the middle of it.
    format!(
        "[node]\nclient_bytes_per_s = 8388608\nregion = \"{region}\"\n\n\
         [edge]\ncache_bytes = {cache_bytes}\n"
    )
}

#[test]
fn sighup_changes_the_cache_size_and_the_admin_token_while_a_download_runs() {
    let dir = tempfile::tempdir().unwrap();
    let net_token = dir.path().join("net.token");
    write_token(&net_token, 0x11);
    let old_token = dir.path().join("old.token");
    write_token(&old_token, 0x11);
    let token_flag = ["--token-file", net_token.to_str().unwrap()];
    let origin = Server::start_with(&dir.path().join("origin"), &token_flag);
    let config = dir.path().join("edge.toml");
    std::fs::write(&config, edge_config(64 << 20, "eu")).unwrap();
    let seed = format!("{}@{}", origin.node_id, origin.addr);
    let edge = Server::start_with(
        &dir.path().join("edge"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--role",
            "edge",
            "--seed",
            &seed,
            token_flag[0],
            token_flag[1],
        ],
    );
    let bytes = noise(24 << 20, 3);
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &bytes).unwrap();
    let id = common::publish(&file, &seed, &net_token);

    // A download through the edge; once the edge holds some of it, the reload.
    let out = dir.path().join("out.bin");
    let mut get = stoq()
        .args([
            "get",
            &id,
            "--node",
            &format!("{}@{}", edge.node_id, edge.addr),
            "-o",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cache_of(&edge)["used_bytes"].as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "the download never began");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&config, edge_config(4 << 20, "ap")).unwrap();
    write_token(&net_token, 0x22);
    hangup(&edge);
    hangup(&origin);

    // The download finishes, whole, and the edge's cache is bounded by the new size.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = get.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the download did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut get.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        status.success(),
        "the download failed across the reload: {err}"
    );
    assert!(std::fs::read(&out).unwrap() == bytes, "the bytes differ");
    let cache = cache_of(&edge);
    assert_eq!(cache["capacity_bytes"].as_u64(), Some(4 << 20), "{cache}");
    assert!(cache["used_bytes"].as_u64().unwrap() <= 4 << 20, "{cache}");

    // Changes now need the new token, on both nodes (the purge reaches the edge too).
    let purge = |token: &Path| {
        run(&[
            "purge",
            &id,
            "--node",
            &seed,
            "--token-file",
            token.to_str().unwrap(),
        ])
    };
    let refused = purge(&old_token);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("wrong admin token"),
        "{}",
        stderr(&refused)
    );
    let purged = purge(&net_token);
    assert!(purged.status.success(), "{}", stderr(&purged));

    // A file that does not parse changes nothing, and the node runs on.
    std::fs::write(&config, "[edge\ncache_bytes = 1\n").unwrap();
    hangup(&edge);
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache_of(&edge)["capacity_bytes"].as_u64() != Some(4 << 20) {
        assert!(Instant::now() < deadline, "the edge stopped answering");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(origin);
    let (code, log) = edge.stop();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("reloaded: applied") && log.contains("edge.cache_bytes"),
        "{log}"
    );
    assert!(log.contains("admin token"), "{log}");
    assert!(
        log.contains("node.region changed but take effect only after a restart"),
        "{log}"
    );
    assert!(log.contains("reload refused, nothing changed"), "{log}");
}

#[test]
fn the_status_screen_shows_role_uptime_peers_cache_and_the_last_minute() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Server::start_with(&dir.path().join("origin"), &["--region", "eu-west"]);
    let seed = format!("{}@{}", origin.node_id, origin.addr);
    let token = dir.path().join("origin/admin.token");
    let edge = Server::edge(
        &origin,
        &dir.path().join("edge"),
        &token,
        &["--region", "us-east"],
    );
    let file = dir.path().join("file.bin");
    common::write_noise(&file, 3 << 20, 4);
    let id = common::publish(&file, &seed, &token);
    let edge_at = format!("{}@{}", edge.node_id, edge.addr);
    let out = dir.path().join("out.bin");
    let get = run(&["get", &id, "--node", &edge_at, "-o", out.to_str().unwrap()]);
    assert!(get.status.success(), "{}", stderr(&get));

    let shown = run(&["status", "--node", &edge_at]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let screen = String::from_utf8(shown.stdout).unwrap();
    let short = &edge.node_id[..8];
    assert!(
        screen.starts_with(&format!("STOQ {short} (edge, us-east) at {}", edge.addr)),
        "{screen}"
    );
    assert!(screen.contains("  up "), "{screen}");
    assert!(screen.contains("cache: 3.00 MiB of"), "{screen}");
    assert!(screen.contains("peers: 1"), "{screen}");
    let peer = screen
        .lines()
        .find(|l| l.contains(&origin.node_id[..8]))
        .unwrap_or_else(|| panic!("no origin row: {screen}"));
    assert!(
        peer.contains("origin") && peer.contains("eu-west") && peer.ends_with(" ms"),
        "{peer}"
    );
    // The download is in the last minute's traffic, out of the edge.
    let last = screen.lines().find(|l| l.contains("  last ")).unwrap();
    assert!(
        last.contains("out 3.00 MiB") && last.contains("0 error(s)"),
        "{last}"
    );

    // --watch redraws until stopped; --json is the node's answer, a line each time.
    let mut watch = stoq()
        .args(["status", "--node", &edge_at, "--watch", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert_eq!(first["role"], "edge");
    assert!(
        first["last_minute"]["bytes_out"].as_u64() >= Some(3 << 20),
        "{first}"
    );
    assert!(
        second["uptime_s"].as_u64() >= first["uptime_s"].as_u64(),
        "{second}"
    );
    assert!(second["requests"]["status"].as_u64() > first["requests"]["status"].as_u64());
}

/// Runs `stoq ARGS` under a pseudo-terminal (`script`), as a person at a terminal would;
/// everything it drew, or `None` where `script` is missing.
fn at_a_terminal(args: &[&str]) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        return None;
    }
    let line = std::iter::once(env!("CARGO_BIN_EXE_stoq"))
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    // The same environment `stoq()` gives the binary (known-nodes file, chunk cache).
    let cmd = stoq();
    let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    let out = Command::new("timeout")
        .args(["60", "script", "-qec", &line, "/dev/null"])
        .envs(envs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether a progress bar (bytes, rate, time left) was drawn.
fn drew_a_bar(screen: &str) -> bool {
    screen.contains(" eta ") && screen.contains("/s")
}

#[test]
fn long_work_shows_a_progress_bar_on_a_terminal_and_never_for_json_or_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    common::write_noise(&file, 48 << 20, 8);
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    common::write_noise(&site.join("a.bin"), 24 << 20, 9);
    common::write_noise(&site.join("b.bin"), 24 << 20, 10);
    let (store, file_s, site_s) = (
        dir.path().join("store"),
        file.to_str().unwrap(),
        site.to_str().unwrap(),
    );
    let store_s = store.to_str().unwrap();
    let Some(put) = at_a_terminal(&["put", file_s, "--data-dir", store_s]) else {
        eprintln!("skipped: script (util-linux) is not installed");
        return;
    };
    assert!(drew_a_bar(&put), "local put: {put}");
    let id = put
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 64)
        .unwrap()
        .to_owned();
    let out = dir.path().join("out.bin");
    let get = at_a_terminal(&[
        "get",
        &id,
        "--data-dir",
        store_s,
        "-o",
        out.to_str().unwrap(),
    ])
    .unwrap();
    assert!(drew_a_bar(&get), "local get: {get}");
    let check = at_a_terminal(&["check", "--data-dir", store_s]).unwrap();
    assert!(drew_a_bar(&check), "check: {check}");
    let dir_put = at_a_terminal(&["put", site_s, "--data-dir", store_s]).unwrap();
    assert!(drew_a_bar(&dir_put), "collection put: {dir_put}");

    // Over the network too.
    let origin = Server::start(&dir.path().join("origin"));
    let node = format!("{}@{}", origin.node_id, origin.addr);
    let token = dir.path().join("origin/admin.token");
    let token_s = token.to_str().unwrap();
    let remote = at_a_terminal(&["put", file_s, "--node", &node, "--token-file", token_s]).unwrap();
    assert!(drew_a_bar(&remote), "remote put: {remote}");

    // Never with --json, and never into a pipe.
    let json = at_a_terminal(&["put", file_s, "--data-dir", store_s, "--json"]).unwrap();
    assert!(!drew_a_bar(&json) && json.contains("\"id\""), "{json}");
    let piped = run(&["put", file_s, "--data-dir", store_s]);
    assert!(piped.status.success());
    assert!(!drew_a_bar(&stderr(&piped)), "{}", stderr(&piped));
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&file).unwrap());
}

#[test]
fn every_log_event_names_the_node_and_a_requests_events_its_id_and_peer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("origin");
    let origin = Server::start_with(&data, &["--log-format", "json", "--http", "[::1]:0"]);
    let file = dir.path().join("f.bin");
    std::fs::write(&file, b"some bytes").unwrap();
    let wrong = dir.path().join("wrong.token");
    write_token(&wrong, 0xab);
    let node = format!("{}@{}", origin.node_id, origin.addr);
    assert!(!common::put_to(&file, &node, &wrong).status.success());
    if Command::new("curl").arg("--version").output().is_ok() {
        let url = format!("{}/c", origin.http_url.as_deref().unwrap());
        let status = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "10",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
            ])
            .args([
                "-X",
                "PUT",
                "-H",
                "Authorization: Bearer nope",
                "--data-binary",
            ])
            .arg(format!("@{}", file.display()))
            .arg(&url)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&status.stdout), "403");
    }
    let short = origin.node_id[..8].to_owned();
    let (code, log) = origin.stop();
    assert_eq!(code, 0, "{log}");
    // One JSON object per line, nothing else.
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l:?}")))
        .collect();
    let refused: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("refused"))
        })
        .collect();
    assert!(!refused.is_empty(), "{log}");
    for event in &refused {
        let spans = event["spans"].as_array().unwrap();
        assert_eq!(spans[0]["node"].as_str(), Some(short.as_str()), "{event}");
        let request = &spans[1];
        assert!(request["id"].as_u64() >= Some(1), "{event}");
        assert!(
            request["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("[::1]:")),
            "{event}"
        );
    }
    // The STOQ request also names the peer node (its certificate's id).
    assert!(
        refused
            .iter()
            .any(|e| e["spans"][1]["name"] == "request" && e["spans"][1]["peer_node"].is_string()),
        "{log}"
    );
}
