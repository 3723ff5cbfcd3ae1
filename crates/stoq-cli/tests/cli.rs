//! The `stoq` binary as a user runs it: real processes, real sockets on [::1].

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::*;

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

    // Seeds: `config` refuses what `serve` would (one validation for both).
    for seed in ["garbage", "127.0.0.1:4433", "zz@[::1]:4433"] {
        std::fs::write(&file, format!("[node]\nseeds = [\"{seed}\"]\n")).unwrap();
        for cmd in ["config", "serve"] {
            let flag = if cmd == "config" {
                "--file"
            } else {
                "--config"
            };
            let out = run(&[cmd, flag, file.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(2), "{cmd} {seed}: {}", stderr(&out));
            assert!(stderr(&out).contains("node.seeds"), "{}", stderr(&out));
        }
    }
}

#[test]
fn flags_override_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stoq.toml");
    // The file asks for port 1; the flag replaces it with a free port.
    std::fs::write(&file, "[transport]\nlisten = \"[::1]:1\"\n").unwrap();
    // Server::start_with passes `--listen [::1]:0` after the subcommand, as a user would.
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--config", file.to_str().unwrap()],
    );
    assert!(
        server.addr.starts_with("[::1]:") && !server.addr.ends_with("]:1"),
        "{}",
        server.addr
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
    for step in [
        "1. ", "2. ", "3. ", "4. ", "5. ", "6. ", "7. ", "8. ", "9. ",
    ] {
        assert!(text.contains(step), "missing step {step} in:\n{text}");
    }
    assert!(text.contains("nearest edge is edge Frankfurt"), "{text}");
    assert!(text.contains("nearest edge is edge New York"), "{text}");
    assert!(text.contains("0 requests to the origin"), "{text}");
    assert!(text.contains("dropped: edge Singapore"), "{text}");
    assert!(text.contains("every chunk verified"), "{text}");
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

const TOPOLOGY: &str = r#"{
  "nodes": [
    {"id":"fra","region":"eu-central","lat":50.1,"lon":8.7,"load":0.3},
    {"id":"ams","region":"eu-west","lat":52.4,"lon":4.9,"load":0.1},
    {"id":"lon","region":"eu-west","lat":51.5,"lon":-0.1,"load":0.2},
    {"id":"par","region":"eu-west","lat":48.9,"lon":2.4,"load":0.9},
    {"id":"nyc","region":"us-east","lat":40.7,"lon":-74.0,"load":0.1}
  ],
  "links": [
    {"from":"fra","to":"ams","rtt_ms":7.2,"bandwidth_mbps":10000,"loss":0.0},
    {"from":"ams","to":"lon","rtt_ms":6.0,"bandwidth_mbps":10000,"loss":0.0},
    {"from":"fra","to":"par","rtt_ms":9.0,"bandwidth_mbps":100000,"loss":0.0},
    {"from":"par","to":"lon","rtt_ms":8.5,"bandwidth_mbps":100000,"loss":0.001},
    {"from":"fra","to":"lon","rtt_ms":16.0,"bandwidth_mbps":1000,"loss":0.0},
    {"from":"lon","to":"nyc","rtt_ms":70.0,"bandwidth_mbps":40000,"loss":0.0}
  ]
}"#;

fn topology_file(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("topology.json");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn route_json(args: &[&str]) -> serde_json::Value {
    let out = run(args);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn route_answers_each_objective_over_a_topology_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = topology_file(dir.path(), TOPOLOGY);
    let base = [
        "route",
        "--topology",
        &file,
        "--from",
        "fra",
        "--to",
        "nyc",
        "--json",
    ];

    let j = route_json(&[&base[..], &["--objective", "latency"]].concat());
    assert_eq!(j["path"], serde_json::json!(["fra", "ams", "lon", "nyc"]));
    assert!((j["latency_ms"].as_f64().unwrap() - 83.2).abs() < 1e-9);
    assert_eq!(j["cost"], j["latency_ms"]);
    assert_eq!(j["bottleneck_mbps"], 10000.0);

    let j = route_json(&[&base[..], &["--objective", "bandwidth"]].concat());
    assert_eq!(j["path"], serde_json::json!(["fra", "par", "lon", "nyc"]));
    assert_eq!(j["bottleneck_mbps"], 40000.0);
    assert!((j["latency_ms"].as_f64().unwrap() - 87.5).abs() < 1e-9);

    // Every way to nyc crosses lon, so there is one route; fra to lon has three disjoint ones.
    let j = route_json(
        &[
            &base[..],
            &["--objective", "balanced", "--alternatives", "3"],
        ]
        .concat(),
    );
    assert!(j["cost"].as_f64().unwrap() > 0.0);
    assert_eq!(j["alternatives"].as_array().unwrap().len(), 1);
    let j = route_json(&[
        "route",
        "--topology",
        &file,
        "--from",
        "fra",
        "--to",
        "lon",
        "--objective",
        "latency",
        "--alternatives",
        "3",
        "--json",
    ]);
    let paths: Vec<_> = j["alternatives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["path"].clone())
        .collect();
    assert_eq!(
        paths,
        [
            serde_json::json!(["fra", "ams", "lon"]),
            serde_json::json!(["fra", "lon"]),
            serde_json::json!(["fra", "par", "lon"])
        ]
    );
    assert_eq!(j["node_disjoint"], 3);

    // Weights from a config file change the balanced choice: with latency alone, it is the
    // latency route.
    let config = dir.path().join("stoq.toml");
    std::fs::write(&config, "[routing.weights]\nbandwidth = 0.0\nloss = 0.0\nload = 0.0\ngeo = 0.0\nhop = 0.0\nhistory = 0.0\n").unwrap();
    let j = route_json(
        &[
            &base[..],
            &[
                "--objective",
                "balanced",
                "--config",
                config.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert_eq!(j["path"], serde_json::json!(["fra", "ams", "lon", "nyc"]));
    assert!((j["cost"].as_f64().unwrap() - 83.2).abs() < 1e-9);
}

#[test]
fn route_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let bad = topology_file(
        dir.path(),
        r#"{"nodes":[{"id":"a"}],"links":[{"from":"a","to":"b","rtt_ms":1,"bandwidth_mbps":1}]}"#,
    );
    let out = run(&["route", "--topology", &bad, "--from", "a", "--to", "a"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown node \"b\""),
        "{}",
        stderr(&out)
    );

    let island = topology_file(
        dir.path(),
        r#"{"nodes":[{"id":"a"},{"id":"b"}],"links":[]}"#,
    );
    let out = run(&["route", "--topology", &island, "--from", "a", "--to", "b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no route"), "{}", stderr(&out));

    let out = run(&["route", "--topology", &island, "--from", "a", "--to", "zz"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        "route",
        "--topology",
        "/nonexistent.json",
        "--from",
        "a",
        "--to",
        "b",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bench_route_reports_times_memory_and_predictor_error() {
    let j = route_json(&[
        "bench",
        "route",
        "--nodes",
        "200",
        "--queries",
        "50",
        "--json",
    ]);
    assert_eq!(j["name"], "route");
    assert_eq!(j["baseline"], "petgraph_dijkstra");
    let size = &j["sizes"][0];
    assert_eq!(size["nodes"], 200);
    for o in ["latency", "bandwidth", "balanced", "petgraph"] {
        assert!(size["p99_us"][o].as_f64().unwrap() >= size["p50_us"][o].as_f64().unwrap());
    }
    assert!(size["memory_bytes_per_node"].as_f64().unwrap() > 100.0);
    assert!(j["p99_us"].as_f64().unwrap() > 0.0);
    assert!(j["ratio"]["petgraph"].as_f64().unwrap() > 0.0);
    let median = j["predictor"]["median_error"].as_f64().unwrap();
    assert!(median > 0.0 && median < j["predictor"]["naive_median_error"].as_f64().unwrap());
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn put_get_and_status_work_on_a_local_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("in.bin");
    write_noise(&file, 3 << 20, 1);
    let d = data.to_str().unwrap();

    let put = json_of(&run(&[
        "put",
        file.to_str().unwrap(),
        "--data-dir",
        d,
        "--json",
    ]));
    let id = put["id"].as_str().unwrap().to_owned();
    assert_eq!(put["size"], 3 << 20);
    assert!(put["chunks"].as_u64().unwrap() > 10);
    assert_eq!(put["new_chunks"], put["chunks"]);
    assert_eq!(put["new_bytes"], 3 << 20);

    let again = json_of(&run(&[
        "put",
        file.to_str().unwrap(),
        "--data-dir",
        d,
        "--json",
    ]));
    assert_eq!(again["id"], id.as_str());
    assert_eq!(again["new_chunks"], 0);

    let out = dir.path().join("out.bin");
    let got = json_of(&run(&[
        "get",
        &id,
        "-o",
        out.to_str().unwrap(),
        "--data-dir",
        d,
        "--json",
    ]));
    assert_eq!(got["size"], 3 << 20);
    assert_eq!(got["sources"][0]["bytes"], 3 << 20);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&file).unwrap());

    let status = json_of(&run(&["status", "--data-dir", d, "--json"]));
    assert_eq!(status["objects"], 1);
    assert_eq!(status["logical_bytes"], 3 << 20);
    assert_eq!(status["stored_bytes"], 3 << 20);
    assert_eq!(status["dedup_ratio"], 1.0);

    // Erasure coding stores (K+M)/K of the data, and reads back the same bytes.
    let put = json_of(&run(&[
        "put",
        file.to_str().unwrap(),
        "--data-dir",
        d,
        "--erasure",
        "4+2",
        "--json",
    ]));
    let overhead = put["new_bytes"].as_f64().unwrap() / f64::from(3 << 20);
    assert!(
        (overhead - 1.5).abs() < 0.001,
        "overhead {overhead} (shards are padded to an even length)"
    );
    let out2 = dir.path().join("out2.bin");
    run(&[
        "get",
        put["id"].as_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
        "--data-dir",
        d,
    ]);
    assert_eq!(std::fs::read(&out2).unwrap(), std::fs::read(&file).unwrap());
}

#[test]
fn content_commands_refuse_bad_input_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"hello").unwrap();
    for args in [
        vec![
            "put",
            file.to_str().unwrap(),
            "--data-dir",
            d,
            "--erasure",
            "4",
        ],
        vec![
            "put",
            file.to_str().unwrap(),
            "--data-dir",
            d,
            "--erasure",
            "0+1",
        ],
        vec!["put", "/no/such/file", "--data-dir", d],
        vec!["get", "not-an-id", "--data-dir", d],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
    let missing = "ab".repeat(32);
    let get_missing = || {
        run(&[
            "get",
            &missing,
            "-o",
            dir.path().join("x").to_str().unwrap(),
            "--data-dir",
            d,
        ])
    };
    // No store there yet: a usage error, and nothing is created.
    let out = get_missing();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("no store"), "{}", stderr(&out));
    assert!(run(&["put", file.to_str().unwrap(), "--data-dir", d])
        .status
        .success());
    let out = get_missing();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not in this store"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("x").exists() && !dir.path().join("x.part").exists());
}

#[test]
fn put_streams_large_files_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    write_noise(&file, 512 << 20, 3);
    let put = json_of(&run(&[
        "put",
        file.to_str().unwrap(),
        "--data-dir",
        dir.path().join("d").to_str().unwrap(),
        "--json",
    ]));
    assert_eq!(put["size"], 512u64 << 20);
    let rss = put["peak_rss_bytes"].as_u64().unwrap();
    assert!(
        rss < 64 << 20,
        "peak RSS {} MiB for a 512 MiB file",
        rss >> 20
    );
}

/// `kill -9` in the middle of a put: what was committed before is intact, no index entry
/// points at missing data, and the orphans of the killed put are collected.
#[test]
fn a_put_killed_with_sigkill_leaves_the_store_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let small = dir.path().join("small.bin");
    write_noise(&small, 2 << 20, 5);
    let kept = json_of(&run(&[
        "put",
        small.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ]));
    let big = dir.path().join("big.bin");
    write_noise(&big, 1 << 30, 6);

    let mut child = stoq()
        .args([
            "put",
            big.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the put has written a good number of new blobs, then kill it mid-way.
    let count = || {
        std::fs::read_dir(data.join("blobs"))
            .unwrap()
            .flatten()
            .map(|d| std::fs::read_dir(d.path()).map_or(0, |f| f.count()))
            .sum::<usize>()
    };
    let before = count();
    let deadline = Instant::now() + Duration::from_secs(120);
    while count() < before + 500 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the put finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "the put wrote nothing");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let mut store = stoq::store::Store::open(&data).unwrap();
    assert_eq!(store.check().unwrap(), Vec::<String>::new());
    assert_eq!(
        store.stats().unwrap().objects,
        1,
        "the killed put committed nothing"
    );
    let mut back = Vec::new();
    store
        .get_to(&kept["id"].as_str().unwrap().parse().unwrap(), &mut back)
        .unwrap();
    assert_eq!(back, std::fs::read(&small).unwrap());
    // Opening the store after the kill collected the put's orphans (it left its marker).
    assert_eq!(store.gc().unwrap().orphans_removed, 0);
    assert_eq!(count(), store.stats().unwrap().blobs as usize);
    assert!(!data.join("put-in-progress").exists());
    assert!(store.check().unwrap().is_empty());
}

#[test]
fn bench_chunking_and_erasure_report_ratios_to_their_baselines() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("v1"), dir.path().join("v2"));
    std::fs::create_dir_all(&old).unwrap();
    std::fs::create_dir_all(&new).unwrap();
    let text: String = (0..20_000)
        .map(|i| format!("fn line_{i}() {{ println!(\"{i}\"); }}\n"))
        .collect();
    std::fs::write(old.join("lib.rs"), &text).unwrap();
    std::fs::write(
        new.join("lib.rs"),
        text.replacen("line_10000", "line_ten_thousand", 1),
    )
    .unwrap();
    let j = route_json(&[
        "bench",
        "chunking",
        "--size",
        "8388608",
        "--rounds",
        "1",
        "--old",
        old.to_str().unwrap(),
        "--new",
        new.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(j["baseline"], "fastcdc");
    assert!(j["ratio"]["fastcdc"].as_f64().unwrap() > 0.0);
    assert!(j["ratio"]["blake3"].as_f64().unwrap() > 0.0);
    let d = &j["dedup"];
    assert_eq!(
        d["new_bytes_total"],
        text.len() + "_ten_thousand".len() - "_10000".len()
    );
    // One edit in a 700 KB file: content-defined chunks store a chunk or two, fixed 256 KiB
    // chunks store everything from the edit on.
    assert!(d["cdc_new_bytes"].as_u64().unwrap() < 100_000, "{d}");
    assert!(d["fixed_new_bytes"].as_u64().unwrap() > 200_000, "{d}");

    let j = route_json(&[
        "bench", "erasure", "--size", "4194304", "--rounds", "1", "--json",
    ]);
    assert_eq!(j["baseline"], "reed-solomon-simd");
    assert_eq!((j["k"].as_u64(), j["m"].as_u64()), (Some(4), Some(2)));
    for key in ["encode", "decode"] {
        assert!(j["ratio"][key].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn a_network_publishes_locates_serves_from_cache_resumes_and_purges() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("network.token");
    std::fs::write(&token, "cli-test-network-token-0123456789\n").unwrap();
    let token = token.to_str().unwrap();
    let origin = Server::start_with(
        &dir.path().join("origin"),
        &["--region", "eu", "--geo", "50.1,8.7", "--token-file", token],
    );
    let seed = format!("{}@{}", origin.node_id, origin.addr);
    let edge_args = |region: &'static str, geo: &'static str| {
        vec![
            "--role",
            "edge",
            "--region",
            region,
            "--geo",
            geo,
            "--seed",
            &seed,
            "--token-file",
            token,
        ]
    };
    let eu = Server::start_with(&dir.path().join("eu"), &edge_args("eu", "48.9,2.3"));
    let us = Server::start_with(&dir.path().join("us"), &edge_args("us", "40.7,-74.0"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = run(&["status", "--node", &origin.addr, "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        if json_of(&out)["peers"].as_array().unwrap().len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the edges never joined");
        std::thread::sleep(Duration::from_millis(100));
    }

    let file = dir.path().join("site.bin");
    write_noise(&file, 3_000_000, 21);
    let file = file.to_str().unwrap();
    // Publishing needs the token: a wrong one is refused and stores nothing.
    let wrong = dir.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-network-token-at-all").unwrap();
    let out = run(&[
        "put",
        file,
        "--node",
        &origin.addr,
        "--token-file",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("wrong admin token"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "put",
        file,
        "--node",
        &origin.addr,
        "--token-file",
        token,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = json_of(&out)["id"].as_str().unwrap().to_owned();

    // A client near New York is served by the us edge first.
    let got = dir.path().join("got.bin");
    let out = run(&[
        "get",
        &id,
        "--node",
        &origin.addr,
        "--near",
        "40.0,-75.0",
        "--parallel",
        "1",
        "-o",
        got.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json_of(&out);
    assert_eq!(report["size"], 3_000_000);
    assert_eq!(report["sources"][0]["addr"], us.addr.as_str());
    assert_eq!(report["sources"][0]["bytes"], 3_000_000);
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(file).unwrap());

    // The same content again from there is all cache hits.
    let out = run(&[
        "get",
        &id,
        "--node",
        &us.addr,
        "--near",
        "40.0,-75.0",
        "--parallel",
        "1",
        "-o",
        got.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = json_of(&run(&["status", "--node", &us.addr, "--json"]));
    assert!(status["cache_hits"].as_u64().unwrap() > 0, "{status}");

    // An interrupted download resumes: keep a good first megabyte plus garbage.
    let part = dir.path().join("again.bin.part");
    let mut partial = std::fs::read(file).unwrap()[..1_000_000].to_vec();
    partial.extend_from_slice(&[0u8; 5000]);
    std::fs::write(&part, partial).unwrap();
    let again = dir.path().join("again.bin");
    let out = run(&[
        "get",
        &id,
        "--node",
        &eu.addr,
        "-o",
        again.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let resumed = json_of(&out)["resumed_bytes"].as_u64().unwrap();
    assert!(resumed > 0 && resumed <= 1_000_000, "{resumed}");
    assert_eq!(std::fs::read(&again).unwrap(), std::fs::read(file).unwrap());

    // A mutable name points at the content; `get name:…` resolves it at the nearest edge.
    let out = run(&[
        "name",
        "set",
        "site",
        &id,
        "--node",
        &origin.addr,
        "--token-file",
        token,
        "--ttl",
        "5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["name", "get", "site", "--node", &eu.addr]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id);
    let named = dir.path().join("named.bin");
    let out = run(&[
        "get",
        "name:site",
        "--node",
        &origin.addr,
        "-o",
        named.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&named).unwrap(), std::fs::read(file).unwrap());

    // A purge through the origin reaches both edges; the content is gone everywhere.
    let out = run(&[
        "purge",
        &id,
        "--node",
        &origin.addr,
        "--token-file",
        token,
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        json_of(&out)["reached"].as_array().unwrap().len(),
        2,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&[
        "get",
        &id,
        "--node",
        &us.addr,
        "-o",
        dir.path().join("gone").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("not in this network"),
        "{}",
        stderr(&out)
    );
    drop((eu, us));
    let (code, err) = origin.stop();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn network_commands_refuse_unknown_nodes_with_status_2() {
    let out = run(&["get", &"a".repeat(64), "--node", "[::1]:9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no node id known"),
        "{}",
        stderr(&out)
    );
    let out = run(&["purge", &"a".repeat(64), "--node", "127.0.0.1:9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("IPv6-only"), "{}", stderr(&out));
    let out = run(&["serve", "--role", "cache"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bench_connections_retrieval_and_utilization_report_against_their_baselines() {
    let j = json_of(&run(&["bench", "connections", "--count", "50", "--json"]));
    assert_eq!(j["baseline"], "quinn");
    assert_eq!(j["stoq"]["alive"], 50, "{j}");
    assert_eq!(j["quinn"]["alive"], 50, "{j}");
    assert!(j["ratio"]["handshakes_per_s"].as_f64().unwrap() > 0.0);

    let j = json_of(&run(&["bench", "retrieval", "--size", "2097152", "--json"]));
    assert_eq!(j["baseline"], "quinn");
    for kind in ["origin", "edge_miss", "edge_hit", "quinn"] {
        let p50 = j[kind]["p50_ms"].as_f64().unwrap();
        assert!(
            p50 > 0.0 && p50 <= j[kind]["p99_ms"].as_f64().unwrap(),
            "{j}"
        );
    }

    let out = run(&[
        "bench",
        "utilization",
        "--rate",
        "100mbit",
        "--size",
        "4194304",
        "--rounds",
        "1",
        "--json",
    ]);
    if !out.status.success() && stderr(&out).contains("needs root") {
        println!("skipped utilization: {}", stderr(&out));
        return;
    }
    let j = json_of(&out);
    assert_eq!(j["baseline"], "tcp");
    let u = j["stoq"]["utilization"].as_f64().unwrap();
    assert!(
        u > 0.0 && u <= 1.05,
        "goodput cannot beat the shaped link by much: {j}"
    );
}

#[test]
fn a_benchmark_uses_stoq_bench_dir_and_names_it_when_it_cannot_be_made() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the directory should be: the benchmark stops at once and says where.
    let blocked = dir.path().join("not-a-directory");
    std::fs::write(&blocked, b"x").unwrap();
    let out = stoq()
        .args(["bench", "delivery", "--size", "1048576", "--rounds", "1"])
        .env("STOQ_BENCH_DIR", &blocked)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&blocked.display().to_string()),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bench_delivery_reports_whole_downloads_against_quinn_and_nginx() {
    let j = json_of(&run(&[
        "bench",
        "delivery",
        "--size",
        "2097152",
        "--rounds",
        "1",
        "--clients",
        "3",
        "--at-once",
        "2",
        "--client-threads",
        "2",
        "--json",
    ]));
    assert_eq!(j["name"], "delivery");
    for figure in [
        "origin_gbps",
        "edge_gbps",
        "two_sources_gbps",
        "quinn_gbps",
        "quinn_file_gbps",
    ] {
        assert!(j[figure].as_f64().unwrap() > 0.0, "{figure}: {j}");
    }
    assert!(j["ratio"]["quinn"].as_f64().unwrap() > 0.0, "{j}");
    assert!(j["ratio"]["quinn_file"].as_f64().unwrap() > 0.0, "{j}");
    assert_eq!(j["clients"]["completed"], 3, "{j}");
    assert_eq!(j["clients"]["identical"], 3, "{j}");
    assert!(
        j["ratio"]["clients_aggregate"].as_f64().unwrap() > 0.0,
        "{j}"
    );
    assert_eq!(j["clients"]["at_once"], 2, "{j}");
    assert_eq!(j["clients"]["client_threads"], 2, "{j}");
    assert!(j["clients"]["busy_answers"].is_u64(), "{j}");
    // nginx is a baseline when installed; otherwise the report says why it is missing.
    match j["nginx_https_gbps"].as_f64() {
        Some(https) => {
            assert!(https > 0.0 && j["ratio"]["nginx_https"].as_f64().unwrap() > 0.0);
            assert!(j["nginx_http_gbps"].as_f64().unwrap() > 0.0, "{j}");
        }
        None => assert!(
            j["nginx_skipped"].as_str().unwrap().contains("nginx"),
            "{j}"
        ),
    }
}

/// A store in `dir/data` holding `len` bytes of noise put from `dir/in.bin`: (data dir, file,
/// content id).
fn local_store(
    dir: &std::path::Path,
    len: u64,
    seed: u64,
) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let (data, file) = (dir.join("data"), dir.join("in.bin"));
    write_noise(&file, len, seed);
    let args = [
        "put",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--json",
    ];
    let id = json_of(&run(&args))["id"].as_str().unwrap().to_owned();
    (data, file, id)
}

#[test]
fn a_lost_or_damaged_index_stops_every_command_until_stoq_check_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let (data, file, id) = local_store(dir.path(), 2 << 20, 5);
    let d = data.to_str().unwrap();
    let blobs = |dir: &std::path::Path| {
        std::fs::read_dir(dir.join("blobs"))
            .unwrap()
            .map(|sub| std::fs::read_dir(sub.unwrap().path()).unwrap().count())
            .sum::<usize>()
    };
    let before = blobs(&data);
    std::fs::remove_file(data.join("index.redb")).unwrap();
    // status and gc refuse (exit 1, naming the repair); gc deletes nothing.
    for cmd in ["status", "gc"] {
        let out = run(&[cmd, "--data-dir", d]);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("stoq check --repair"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(blobs(&data), before, "gc deleted nothing");
    // check says what is wrong; check --repair rebuilds; the content reads back.
    assert_eq!(run(&["check", "--data-dir", d]).status.code(), Some(1));
    let repaired = json_of(&run(&["check", "--data-dir", d, "--repair", "--json"]));
    assert_eq!(repaired["rebuilt"], true);
    assert_eq!(repaired["indexed"], 1);
    let out = dir.path().join("out.bin");
    let got = run(&["get", &id, "--data-dir", d, "-o", out.to_str().unwrap()]);
    assert!(got.status.success(), "{}", stderr(&got));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&file).unwrap());
    // A damaged index: an error naming the repair, never a panic (exit 101).
    let index = data.join("index.redb");
    let mut bytes = std::fs::read(&index).unwrap();
    bytes.truncate(3000);
    std::fs::write(&index, bytes).unwrap();
    let out = run(&["status", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert!(run(&["check", "--data-dir", d, "--repair"])
        .status
        .success());
    assert!(run(&["status", "--data-dir", d]).status.success());
    // A command that only reads, pointed at a typo, exits 2 and creates nothing.
    let typo = dir.path().join("typo");
    let out = run(&["status", "--data-dir", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(!typo.exists());
}

#[test]
fn get_writes_into_devices_and_fifos_in_place_and_dash_is_standard_output() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    let (data, file, id) = local_store(dir.path(), 1 << 20, 6);
    let d = data.to_str().unwrap();
    let original = std::fs::read(&file).unwrap();
    // /dev/null stays a device (as root, a rename over it would have replaced it).
    let out = run(&["get", &id, "--data-dir", d, "-o", "/dev/null"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let null = std::fs::metadata("/dev/null").unwrap();
    assert!(null.file_type().is_char_device(), "/dev/null was replaced");
    // A FIFO's reader gets every byte, and the FIFO is still a FIFO.
    let fifo = dir.path().join("pipe");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read(fifo).unwrap())
    };
    let out = run(&["get", &id, "--data-dir", d, "-o", fifo.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        reader.join().unwrap() == original,
        "the FIFO's reader got the content"
    );
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    // `-o -` is standard output.
    let out = run(&["get", &id, "--data-dir", d, "-o", "-"]);
    assert!(out.status.success() && out.stdout == original);
    // --parallel 0 is refused.
    let out = run(&["get", &id, "--node", "[::1]:1", "--parallel", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn serve_creates_a_missing_token_file_private_and_says_where() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("net.token");
    let server = Server::start_with(
        &dir.path().join("node"),
        &["--token-file", token.to_str().unwrap()],
    );
    let mode = std::fs::metadata(&token).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let (code, err) = server.stop();
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("created the admin token file"), "{err}");
    // A token file others can read is accepted with a warning.
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start_with(
        &dir.path().join("node"),
        &["--token-file", token.to_str().unwrap()],
    );
    let (_, err) = server.stop();
    assert!(err.contains("readable by other users"), "{err}");
    // A token file that holds no valid token: a usage error (exit 2), said once.
    std::fs::write(&token, "short\n").unwrap();
    let out = run(&[
        "serve",
        "--listen",
        "[::1]:0",
        "--data-dir",
        dir.path().join("node").to_str().unwrap(),
        "--token-file",
        token.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).matches("must be 16 to 255").count(),
        1,
        "{}",
        stderr(&out)
    );
}

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _, _) = local_store(dir.path(), 200_000, 7);
    // What a killed put leaves makes the next command log a warning.
    std::fs::write(data.join("put-in-progress"), b"").unwrap();
    let out = run(&["status", "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("a put was interrupted"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI codes in a piped log: {err:?}"
    );
}

#[test]
fn a_dead_first_node_is_skipped_and_the_next_one_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (data, file, id) = local_store(dir.path(), 1 << 20, 8);
    let server = Server::start(&data);
    // A port nothing listens on, with a well-formed id.
    let dead_port = std::net::UdpSocket::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("{}@[::1]:{dead_port}", "ab".repeat(32));
    let live = format!("{}@{}", server.node_id, server.addr);
    let out_file = dir.path().join("got.bin");
    let out = run(&[
        "get",
        &id,
        "--node",
        &dead,
        "--node",
        &live,
        "-o",
        out_file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&out_file).unwrap(),
        std::fs::read(&file).unwrap()
    );
    let _ = server.stop();
}

/// Every line of `text` is a JSON log event; returns their messages.
fn json_messages(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| {
            let event: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(event["level"].is_string(), "{line}");
            assert!(event["timestamp"].is_string(), "{line}");
            event["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn logs_are_json_lines_when_the_flag_or_the_config_asks() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("net.token");
    let token = token.to_str().unwrap();
    let by_flag = Server::start_with(
        &dir.path().join("a"),
        &["--log-format", "json", "--token-file", token],
    );
    let (code, err) = by_flag.stop();
    assert_eq!(code, 0, "{err}");
    let messages = json_messages(&err);
    assert!(
        messages
            .iter()
            .any(|m| m.contains("created the admin token file")),
        "{err}"
    );
    assert!(
        messages.iter().any(|m| m.contains("stopped cleanly")),
        "{err}"
    );

    let config = dir.path().join("stoq.toml");
    std::fs::write(&config, "[node]\nlog_format = \"json\"\n").unwrap();
    let by_config = Server::start_with(
        &dir.path().join("b"),
        &["--config", config.to_str().unwrap()],
    );
    let (code, err) = by_config.stop();
    assert_eq!(code, 0, "{err}");
    assert!(
        json_messages(&err)
            .iter()
            .any(|m| m.contains("shutting down")),
        "{err}"
    );

    // A failure is a JSON event too, with the usual exit status.
    let missing = dir.path().join("no-such-store");
    let out = run(&[
        "status",
        "--data-dir",
        missing.to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let messages = json_messages(&stderr(&out));
    assert_eq!(messages.len(), 1, "{}", stderr(&out));
    // Text stays text.
    let out = run(&["status", "--data-dir", missing.to_str().unwrap()]);
    assert!(stderr(&out).starts_with("stoq: "), "{}", stderr(&out));
}

/// The shell commands of the README's "A network" section, continuation lines joined and
/// comments dropped.
fn readme_network_commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = &readme[readme
        .find("## A network")
        .expect("the README has a network section")..];
    let block = &section[section.find("```sh\n").unwrap() + 6..];
    let block = &block[..block.find("```").unwrap()];
    block
        .replace("\\\n", " ")
        .lines()
        .map(|l| l.split(" # ").next().unwrap().trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// A port nothing listens on now (UDP and TCP), for commands that name fixed ports.
fn free_port() -> u16 {
    let udp = std::net::UdpSocket::bind("[::1]:0").unwrap();
    udp.local_addr().unwrap().port()
}

#[test]
fn the_readme_network_commands_work_from_a_clean_directory() {
    let dir = tempfile::tempdir().unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_stoq"))
        .parent()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let known = dir.path().join("known-nodes");
    let ports = [
        ("4433", free_port()),
        ("4434", free_port()),
        ("9090", free_port()),
    ];
    let site: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect();
    std::fs::write(dir.path().join("site.tar"), &site).unwrap();
    let sh = |line: &str| {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", line])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("STOQ_KNOWN_NODES", &known)
            .env("STOQ_CACHE_DIR", dir.path().join("cache"));
        cmd
    };
    let mut servers = Vec::new();
    let mut id = String::new();
    for command in readme_network_commands() {
        let mut line = command.clone();
        for (from, to) in ports {
            line = line.replace(&format!(":{from}'"), &format!(":{to}'"));
        }
        line = line.replace(" ID ", &format!(" {id} "));
        if line.starts_with("stoq serve") {
            let (child, first) =
                spawn_for_first_line(sh(&format!("exec {line}")).stderr(Stdio::null()));
            assert!(first.starts_with("stoq listening on"), "{command}: {first}");
            servers.push(ServerProcess(child));
            continue;
        }
        let out = sh(&line).output().unwrap();
        assert!(out.status.success(), "{command}\n{}", stderr(&out));
        if line.starts_with("stoq put") {
            let text = String::from_utf8(out.stdout).unwrap();
            id = text
                .split(|c: char| !c.is_ascii_hexdigit())
                .find(|w| w.len() == 64)
                .unwrap_or_else(|| panic!("no content id in: {text}"))
                .to_owned();
        }
    }
    assert_eq!(servers.len(), 2, "the README starts an origin and an edge");
    assert!(!id.is_empty(), "the README publishes something");
    assert!(std::fs::read(dir.path().join("site.tar")).unwrap() == site);
}

/// A child process killed when dropped.
struct ServerProcess(std::process::Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn gc_help_describes_gc_and_its_own_options() {
    let out = run(&["gc", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(
        help.contains("Remove blob files no content refers to"),
        "{help}"
    );
    assert!(
        !help.contains("--node"),
        "gc works on a local store only: {help}"
    );
}

/// A release tarball on disk: a large member streamed from `big`, small members, one of
/// which says `version`, all under `pkg-VERSION/`.
fn release_tar(path: &std::path::Path, big: &std::path::Path, version: &str) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    builder
        .append_path_with_name(big, format!("pkg-{version}/data/big.bin"))
        .unwrap();
    for i in 0..40 {
        let text = format!("module {i}\n{}\n", "fn f() {}\n".repeat(200 + i));
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        builder
            .append_data(
                &mut header,
                format!("pkg-{version}/src/m{i}.rs"),
                text.as_bytes(),
            )
            .unwrap();
    }
    let note = format!("this is version {version}\n");
    let mut header = tar::Header::new_gnu();
    header.set_size(note.len() as u64);
    header.set_mode(0o644);
    builder
        .append_data(
            &mut header,
            format!("pkg-{version}/VERSION"),
            note.as_bytes(),
        )
        .unwrap();
    builder.finish().unwrap();
}

#[test]
fn a_new_release_tarball_stores_only_its_changes_and_streams_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    write_noise(&big, 128 << 20, 11);
    let (one, two) = (
        dir.path().join("pkg-1.0.tar"),
        dir.path().join("pkg-1.1.tar"),
    );
    release_tar(&one, &big, "1.0");
    release_tar(&two, &big, "1.1");
    let data = dir.path().join("d");
    let put = |file: &std::path::Path| {
        json_of(&run(&[
            "put",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
        ]))
    };
    let first = put(&one);
    assert_eq!(first["kind"], "tar", "{first}");
    let rss = first["peak_rss_bytes"].as_u64().unwrap();
    assert!(
        rss < 64 << 20,
        "peak RSS {} MiB for a 128 MiB member",
        rss >> 20
    );
    // Version 1.1 renames every path and changes one file: only headers and that file are new.
    let second = put(&two);
    let new_bytes = second["new_bytes"].as_u64().unwrap();
    assert!(new_bytes < 256 << 10, "{new_bytes} new bytes: {second}");
    let out = dir.path().join("back.tar");
    let got = run(&[
        "get",
        second["id"].as_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(got.status.success(), "{}", stderr(&got));
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&two).unwrap(),
        "the tar came back changed"
    );
}

#[test]
fn a_delta_download_fetches_only_the_chunks_the_old_version_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    write_noise(&big, 8 << 20, 12);
    let (one, two) = (
        dir.path().join("pkg-1.0.tar"),
        dir.path().join("pkg-1.1.tar"),
    );
    release_tar(&one, &big, "1.0");
    release_tar(&two, &big, "1.1");
    let origin = Server::start(&dir.path().join("origin"));
    let node = format!("{}@{}", origin.node_id, origin.addr);
    let token = dir.path().join("origin").join("admin.token");
    let publish = |file: &std::path::Path| {
        let out = run(&[
            "put",
            file.to_str().unwrap(),
            "--node",
            &node,
            "--token-file",
            token.to_str().unwrap(),
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        json_of(&out)["id"].as_str().unwrap().to_owned()
    };
    publish(&one);
    let id = publish(&two);
    let bytes_out = || {
        json_of(&run(&["status", "--node", &node, "--json"]))["bytes_out"]
            .as_u64()
            .unwrap()
    };
    let before = bytes_out();
    let got = dir.path().join("got.tar");
    let out = run(&[
        "get",
        &id,
        "--node",
        &node,
        "--reuse",
        one.to_str().unwrap(),
        "-o",
        got.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json_of(&out);
    assert!(std::fs::read(&got).unwrap() == std::fs::read(&two).unwrap());
    let size = report["size"].as_u64().unwrap();
    let (reused, fetched) = (
        report["reused_bytes"].as_u64().unwrap(),
        report["fetched_bytes"].as_u64().unwrap(),
    );
    assert_eq!(reused + fetched, size, "{report}");
    assert!(fetched < 256 << 10, "fetched {fetched} of {size}: {report}");
    // Counted at the source: it sent the new chunks and the manifest, not the content.
    let sent = bytes_out() - before;
    assert!(
        sent <= fetched + (256 << 10) && sent < size / 8,
        "the origin sent {sent} of {size}"
    );
    origin.stop();
}

#[test]
fn bench_dedup_compares_tar_aware_chunking_with_its_baselines_and_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    write_noise(&big, 2 << 20, 13);
    let (one, two) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    release_tar(&one, &big, "1.0");
    release_tar(&two, &big, "1.1");
    let out = run(&[
        "bench",
        "dedup",
        "--old",
        one.to_str().unwrap(),
        "--new",
        two.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json_of(&out);
    assert_eq!(report["kind"], "tar");
    let stored = &report["stored_bytes"];
    let (stoq, cdc) = (
        stored["stoq"].as_u64().unwrap(),
        stored["cdc"].as_u64().unwrap(),
    );
    assert!(stoq * 4 < cdc, "{report}");
    let target = report["floor"]["target_bytes"].as_u64().unwrap();
    assert!(stoq <= target, "{report}");
    let ratio = report["ratio"]["cdc"].as_f64().unwrap();
    assert!((ratio - stoq as f64 / cdc as f64).abs() < 1e-9);

    // Two directories: a file kept, one changed, one added; the floor is the files that
    // differ, and what is stored stays near it.
    let (a, b) = (dir.path().join("v1"), dir.path().join("v2"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d.join("src")).unwrap();
        std::fs::copy(&big, d.join("src/big.bin")).unwrap();
    }
    std::fs::write(a.join("src/lib.rs"), "fn one() {}\n".repeat(3000)).unwrap();
    std::fs::write(b.join("src/lib.rs"), "fn two() {}\n".repeat(3000)).unwrap();
    std::fs::write(b.join("NEW"), "added\n").unwrap();
    let out = run(&[
        "bench",
        "dedup",
        "--old",
        a.to_str().unwrap(),
        "--new",
        b.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let report = json_of(&out);
    let changed = report["floor"]["changed_member_bytes"].as_u64().unwrap();
    assert_eq!(changed, 3000 * 12 + 6, "{report}");
    let stored = report["stored_bytes"]["stoq"].as_u64().unwrap();
    assert!(stored <= 2 * changed, "{report}");
    assert_eq!(report["new_size"].as_u64().unwrap(), (2 << 20) + changed);
}

#[test]
fn put_gunzip_publishes_the_tar_inside_so_compressed_releases_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    write_noise(&big, 2 << 20, 14);
    let data = dir.path().join("d");
    let mut ids = Vec::new();
    for version in ["1.0", "1.1"] {
        let tar = dir.path().join(format!("pkg-{version}.tar"));
        release_tar(&tar, &big, version);
        let gz = dir.path().join(format!("pkg-{version}.tar.gz"));
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::default(),
        );
        std::io::copy(&mut std::fs::File::open(&tar).unwrap(), &mut encoder).unwrap();
        encoder.finish().unwrap();
        let out = run(&[
            "put",
            gz.to_str().unwrap(),
            "--gunzip",
            "--data-dir",
            data.to_str().unwrap(),
            "--json",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let put = json_of(&out);
        assert_eq!(put["kind"], "tar", "{put}");
        ids.push((put, tar));
    }
    let (second, tar) = &ids[1];
    assert!(
        second["new_bytes"].as_u64().unwrap() < 256 << 10,
        "{second}"
    );
    let back = dir.path().join("back.tar");
    let out = run(&[
        "get",
        second["id"].as_str().unwrap(),
        "-o",
        back.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        std::fs::read(&back).unwrap() == std::fs::read(tar).unwrap(),
        "readers get the tar"
    );
    // Not gzip: a clear usage error, nothing stored.
    let out = run(&[
        "put",
        big.to_str().unwrap(),
        "--gunzip",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a gzip file"),
        "{}",
        stderr(&out)
    );
}
