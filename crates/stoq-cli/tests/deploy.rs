//! What `deploy/` ships for operators, checked against the real tools and a real node:
//! the Prometheus alert rules (`promtool`, the Debian package `prometheus`) and the systemd
//! unit (`systemd-analyze`, the Debian package `systemd`).

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

