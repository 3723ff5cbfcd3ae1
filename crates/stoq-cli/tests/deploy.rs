//! What `deploy/` ships for operators, checked against the real tools and a real node:
//! the Prometheus alert rules (`promtool`, the Debian package `prometheus`) and the systemd
//! unit (`systemd-analyze`, the Debian package `systemd`), and the Grafana dashboard, whose
//! every query is asked of a real Prometheus scraping real nodes.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::Server;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_alert_rules_check_and_pass_a_test_case_for_every_alert() {
    if !have("promtool") {
        eprintln!("skipped: promtool is not installed (Debian: prometheus)");
        return;
    }
    let dir = deploy("prometheus");
    for args in [
        ["check", "rules", "stoq-rules.yml"],
        ["test", "rules", "stoq-rules.test.yml"],
    ] {
        let out = Command::new("timeout")
            .arg("60")
            .arg("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every alert has a case of its own in the tests.
    let rules = std::fs::read_to_string(dir.join("stoq-rules.yml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("stoq-rules.test.yml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 6, "{alerts:?}");
    for alert in alerts {
        assert!(
            tests.contains(&format!("alertname: {alert}")),
            "no test case for {alert}"
        );
    }
}

#[test]
fn every_series_the_rules_use_is_one_a_real_node_exposes() {
    if !have("curl") {
        eprintln!("skipped: curl is not installed");
        return;
    }
    let rules = std::fs::read_to_string(deploy("prometheus/stoq-rules.yml")).unwrap();
    let used: BTreeSet<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("stoq_"))
        .map(|w| w.trim_end_matches("_bucket").to_owned())
        .collect();
    assert!(used.len() >= 8, "{used:?}");
    let dir = tempfile::tempdir().unwrap();
    let metrics = std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let node = Server::start_with(&dir.path().join("node"), &["--metrics", &metrics]);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--retry",
            "5",
            "--retry-connrefused",
        ])
        .arg(format!("http://{metrics}/metrics"))
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    for series in &used {
        assert!(
            page.contains(&format!("# TYPE {series} ")),
            "the rules use {series}, which the node does not expose:\n{page}"
        );
    }
    // The disk series describe a real filesystem.
    let value = |name: &str| -> f64 {
        page.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap()
            .parse()
            .unwrap()
    };
    let (free, size) = (value("stoq_disk_free_bytes"), value("stoq_disk_size_bytes"));
    assert!(size > 0.0 && free <= size, "free {free} of {size}");
    // Only /metrics is served there.
    let other = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{metrics}/other"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&other.stdout), "404");
    drop(node);
}

#[test]
fn the_systemd_unit_verifies_is_hardened_and_reloads_with_sighup() {
    let unit = std::fs::read_to_string(deploy("systemd/stoq.service")).unwrap();
    // What the service runs, how it reloads, and as whom.
    for line in [
        "ExecStart=/usr/local/bin/stoq serve --config /etc/stoq/stoq.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "DynamicUser=yes",
        "StateDirectory=stoq",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_INET6 AF_UNIX",
        "Restart=on-failure",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line:?}");
    }
    if !have("systemd-analyze") {
        eprintln!("skipped: systemd-analyze is not installed (Debian: systemd)");
        return;
    }
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stoq.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/stoq", env!("CARGO_BIN_EXE_stoq")),
    )
    .unwrap();
    let analyze = |args: &[&str]| {
        Command::new("timeout")
            .args(["60", "systemd-analyze"])
            .args(args)
            .arg(&path)
            .output()
            .unwrap()
    };
    let verified = analyze(&["verify"]);
    assert!(
        verified.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verified.stderr)
    );
    // systemd's own exposure score, 0 (locked down) to 10: at most 3 ("OK").
    let security = analyze(&["security", "--offline=yes", "--threshold=30"]);
    assert!(
        security.status.success(),
        "systemd-analyze security: {}",
        String::from_utf8_lossy(&security.stdout)
    );
}

#[test]
fn the_example_config_for_the_unit_starts_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let config = deploy("systemd/stoq.toml");
    // Where the unit gives it /var/lib/stoq and port 4433, the test gives it its own.
    let edge = Server::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap(), "--metrics", "[::1]:0"],
    );
    let (code, log) = edge.stop();
    assert_eq!(code, 0, "{log}");
}

/// A free TCP port on [::1] (the kernel's choice, released for the program that takes it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every PromQL expression of the dashboard's panels, as Grafana would send it for all nodes.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy("grafana/stoq.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let expr = expr
                .replace("$__rate_interval", "10s")
                .replace("$instance", ".*");
            queries.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    queries
}

/// Prometheus's answer to an instant query: the result, or its error.
fn query(prometheus: &str, expr: &str) -> Result<Vec<serde_json::Value>, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-G", "--data-urlencode"])
        .arg(format!("query={expr}"))
        .arg(format!("{prometheus}/api/v1/query"))
        .output()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|_| String::from_utf8_lossy(&out.stderr).into_owned())?;
    match answer["status"].as_str() {
        Some("success") => Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()),
        _ => Err(answer["error"].to_string()),
    }
}

/// Publishes, fetches through the edge over STOQ and HTTP, and tries a wrong token: traffic
/// for every panel.
fn small_load(origin: &Server, edge: &Server, dir: &Path) {
    let file = dir.join("load.bin");
    common::write_noise(&file, 2 << 20, 9);
    let origin_at = format!("{}@{}", origin.node_id, origin.addr);
    let token = dir.join("origin/admin.token");
    let id = common::publish(&file, &origin_at, &token);
    let edge_at = format!("{}@{}", edge.node_id, edge.addr);
    let out = dir.join("out.bin");
    for _ in 0..2 {
        let get = common::run(&["get", &id, "--node", &edge_at, "-o", out.to_str().unwrap()]);
        assert!(get.status.success(), "{}", common::stderr(&get));
    }
    let url = format!("{}/c/{id}", edge.http_url.as_deref().unwrap());
    let http = Command::new("curl")
        .args(["-sS", "-f", "--max-time", "20", "-o", "/dev/null", &url])
        .status()
        .unwrap();
    assert!(http.success());
    let wrong = dir.join("wrong.token");
    std::fs::write(&wrong, "ab".repeat(32)).unwrap();
    assert!(!common::put_to(&file, &origin_at, &wrong).status.success());
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus_scraping_real_nodes() {
    if !have("curl")
        || Command::new("prometheus")
            .arg("--version")
            .output()
            .is_err()
    {
        eprintln!("skipped: prometheus or curl is not installed (Debian: prometheus, curl)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (origin_metrics, edge_metrics) = (free_port(), free_port());
    let origin = Server::start_with(
        &dir.path().join("origin"),
        &["--metrics", &format!("[::1]:{origin_metrics}")],
    );
    let token = dir.path().join("origin/admin.token");
    let metrics = format!("[::1]:{edge_metrics}");
    let edge = Server::edge(
        &origin,
        &dir.path().join("edge"),
        &token,
        &["--metrics", &metrics, "--http", "[::1]:0"],
    );
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: stoq\n    static_configs:\n      \
             - targets: [\"[::1]:{origin_metrics}\", \"[::1]:{edge_metrics}\"]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=[::1]:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let prometheus_url = format!("http://[::1]:{port}");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        small_load(&origin, &edge, dir.path());
        let queries = dashboard_queries();
        assert!(queries.len() >= 20, "{queries:?}");
        // Prometheus needs a few scrapes of both nodes before rates have two samples.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let failing: Vec<String> = queries
                .iter()
                .filter_map(|(title, expr)| match query(&prometheus_url, expr) {
                    Ok(result) if !result.is_empty() => None,
                    Ok(_) => Some(format!("{title}: {expr}: no data")),
                    Err(e) => Some(format!("{title}: {expr}: {e}")),
                })
                .collect();
            if failing.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "dashboard queries that fail against a real Prometheus:\n{}",
                failing.join("\n")
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        // Both nodes were scraped, and the traffic is seen.
        let up = query(&prometheus_url, "sum(up{job=\"stoq\"})").unwrap();
        assert_eq!(up[0]["value"][1].as_str(), Some("2"), "{up:?}");
        let out = query(&prometheus_url, "sum(stoq_bytes_out_total)").unwrap();
        let bytes: f64 = out[0]["value"][1].as_str().unwrap().parse().unwrap();
        assert!(bytes >= f64::from(2u32 << 20), "{out:?}");
    }));
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
