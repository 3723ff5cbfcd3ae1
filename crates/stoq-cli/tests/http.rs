//! The HTTP front, tried with real clients: curl over HTTP/1.1 and HTTP/2 (TLS with a
//! certificate made here), an independent HTTP/3 client, and the front's benchmark and
//! settings. Reads through edges are in `http_edges.rs`. Tests that need a missing program
//! say so and skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::web::{curl, curl_missing, head, head_of, header, https_origin, put};
use common::{noise, run, stderr, Server};

#[test]
fn curl_reads_whole_content_ranges_and_conditionals_over_http1_and_http2() {
    if curl_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, data, cert) = https_origin(dir.path());
    let url = server.http_url.clone().unwrap();
    assert!(url.starts_with("https://[::1]:"), "{url}");
    let bytes = noise(3_000_000, 7);
    let file = dir.path().join("content.bin");
    std::fs::write(&file, &bytes).unwrap();
    let id = put(&file, &server, &data, &[]);
    let content = format!("{url}/c/{id}");
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let got = dir.path().join(format!("got-{version}"));
        let out = curl(
            Some(&cert),
            &[
                flag,
                "-D",
                "-",
                "-o",
                got.to_str().unwrap(),
                "-w",
                "%{http_version}",
                &content,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dump = String::from_utf8_lossy(&out.stdout);
        assert!(dump.ends_with(version), "asked {flag}, got {dump}");
        let (status, headers) = head_of(&dump);
        assert_eq!(status, 200);
        assert_eq!(std::fs::read(&got).unwrap(), bytes, "{flag}: bytes differ");
        assert_eq!(header(&headers, "etag"), Some(format!("\"{id}\"").as_str()));
        assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));
        assert_eq!(header(&headers, "content-length"), Some("3000000"));
        assert_eq!(
            header(&headers, "cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/octet-stream")
        );

        // A range crossing chunk boundaries.
        let part = dir.path().join(format!("part-{version}"));
        let out = curl(
            Some(&cert),
            &[
                flag,
                "-D",
                "-",
                "-r",
                "1000000-1999999",
                "-o",
                part.to_str().unwrap(),
                &content,
            ],
        );
        let (status, headers) = head_of(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(status, 206);
        assert_eq!(
            header(&headers, "content-range"),
            Some("bytes 1000000-1999999/3000000")
        );
        assert_eq!(std::fs::read(&part).unwrap(), &bytes[1_000_000..2_000_000]);
        // A suffix range.
        let out = curl(Some(&cert), &[flag, "-r", "-10", &content]);
        assert_eq!(out.stdout, &bytes[bytes.len() - 10..]);
        // Past the end: 416 with the size.
        let (status, headers) = head(Some(&cert), &[flag, "-r", "5000000-", &content]);
        assert_eq!(status, 416);
        assert_eq!(header(&headers, "content-range"), Some("bytes */3000000"));
        // If-Range with another copy's tag: the whole content.
        assert_eq!(
            head(
                Some(&cert),
                &[flag, "-r", "0-9", "-H", "If-Range: \"old\"", &content]
            )
            .0,
            200
        );
        // HEAD: the headers and no body.
        let out = curl(Some(&cert), &[flag, "-I", &content]);
        let (status, headers) = head_of(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(
            (status, header(&headers, "content-length")),
            (200, Some("3000000"))
        );
        // A client holding this copy gets 304.
        assert_eq!(
            head(
                Some(&cert),
                &[flag, "-H", &format!("If-None-Match: \"{id}\""), &content]
            )
            .0,
            304
        );
        // Unknown content, a bad id, a path that is nothing.
        let missing = format!("{url}/c/{}", "ab".repeat(32));
        for (target, want) in [
            (missing, 404),
            (format!("{url}/c/xyz"), 400),
            (format!("{url}/x"), 404),
        ] {
            let out = curl(
                Some(&cert),
                &[flag, "-o", "/dev/null", "-w", "%{http_code}", &target],
            );
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                want.to_string(),
                "{target}"
            );
        }
    }
    let (code, err) = server.stop();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn reads_of_restricted_content_and_every_change_need_their_tokens() {
    if curl_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("origin");
    let metrics = {
        let free = std::net::TcpListener::bind("[::1]:0").unwrap();
        free.local_addr().unwrap().to_string()
    };
    let server = Server::start_with(&data, &["--http", "[::1]:0", "--metrics", &metrics]);
    let url = server.http_url.clone().unwrap();
    assert!(url.starts_with("http://[::1]:"), "{url}");
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let code = |args: &[&str]| {
        let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&curl(None, &all).stdout)
            .parse::<u16>()
            .unwrap()
    };

    // Restricted reads: 401 without a token, 403 with a wrong one, 200 with it, kept private.
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "for readers with the token\n").unwrap();
    let read_token = dir.path().join("read.token");
    std::fs::write(&read_token, "reader-secret-0123456789").unwrap();
    let id = put(
        &secret,
        &server,
        &data,
        &["--read-token-file", read_token.to_str().unwrap()],
    );
    let at = format!("{url}/c/{id}");
    assert_eq!(code(&[&at]), 401);
    assert_eq!(code(&["-H", "Authorization: Bearer not-it", &at]), 403);
    let out = curl(
        None,
        &[
            "-D",
            "-",
            "-H",
            "Authorization: Bearer reader-secret-0123456789",
            &at,
        ],
    );
    let dump = String::from_utf8_lossy(&out.stdout);
    let (status, headers) = head_of(&dump);
    assert_eq!(status, 200);
    assert!(dump.ends_with("for readers with the token\n"));
    assert!(header(&headers, "cache-control")
        .unwrap()
        .starts_with("private"));
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/plain; charset=utf-8")
    );

    // PUT without the token, or with a wrong one: refused, nothing stored.
    let listed = run(&["status", "--node", &server.addr, "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let before: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let body = dir.path().join("body.bin");
    let bytes = noise(700_000, 3);
    std::fs::write(&body, &bytes).unwrap();
    let upload = format!("@{}", body.display());
    assert_eq!(
        code(&["-X", "PUT", "--data-binary", &upload, &format!("{url}/c")]),
        401
    );
    let wrong = ["-H", "Authorization: Bearer wrong-token-wrong-token"];
    assert_eq!(
        code(&[
            wrong[0],
            wrong[1],
            "-X",
            "PUT",
            "--data-binary",
            &upload,
            &format!("{url}/c")
        ]),
        403
    );
    // With the token: 201, the id, and the bytes served back.
    let auth = format!("Authorization: Bearer {admin}");
    let out = curl(
        None,
        &[
            "-D",
            "-",
            "-H",
            &auth,
            "-X",
            "PUT",
            "--data-binary",
            &upload,
            &format!("{url}/c"),
        ],
    );
    let dump = String::from_utf8_lossy(&out.stdout);
    let (status, headers) = head_of(&dump);
    assert_eq!(status, 201, "{dump}");
    let answer: serde_json::Value =
        serde_json::from_str(dump.split("\r\n\r\n").last().unwrap()).unwrap();
    let new_id = answer["id"].as_str().unwrap().to_owned();
    assert_eq!(answer["size"], 700_000);
    assert_eq!(
        header(&headers, "location"),
        Some(format!("/c/{new_id}").as_str())
    );
    assert_eq!(curl(None, &[&format!("{url}/c/{new_id}")]).stdout, bytes);
    // Only the authorised PUT stored anything.
    let after = run(&["status", "--node", &server.addr, "--json"]);
    let after: serde_json::Value = serde_json::from_slice(&after.stdout).unwrap();
    assert_eq!(
        after["store"]["objects"].as_u64().unwrap(),
        before["store"]["objects"].as_u64().unwrap() + 1,
        "{before} -> {after}"
    );

    // A type given with the upload is recorded and served.
    let typed_body = dir.path().join("typed.bin");
    std::fs::write(&typed_body, noise(5000, 9)).unwrap();
    let out = curl(
        None,
        &[
            "-H",
            &auth,
            "-H",
            "Content-Type: image/png",
            "-X",
            "PUT",
            "--data-binary",
            &format!("@{}", typed_body.display()),
            &format!("{url}/c"),
        ],
    );
    let typed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = curl(
        None,
        &["-I", &format!("{url}/c/{}", typed["id"].as_str().unwrap())],
    );
    let (_, headers) = head_of(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(header(&headers, "content-type"), Some("image/png"));

    // DELETE: refused without the token (still served), then purged with it (404 after).
    let content = format!("{url}/c/{new_id}");
    assert_eq!(code(&["-X", "DELETE", &content]), 401);
    assert_eq!(code(&[&content]), 200);
    let out = curl(None, &["-H", &auth, "-X", "DELETE", &content]);
    let purged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(purged["removed_here"], 1, "{purged}");
    assert_eq!(code(&[&content]), 404);
    // A method a path does not take.
    assert_eq!(code(&["-X", "POST", &content]), 405);
    // The front counted each answer by method, status and version, and its first bytes.
    let page =
        String::from_utf8(curl(None, &[&format!("http://{metrics}/metrics")]).stdout).unwrap();
    for series in [
        r#"stoq_http_requests_total{method="GET",status="401",version="1.1"} 1"#,
        r#"stoq_http_requests_total{method="GET",status="403",version="1.1"} 1"#,
        r#"stoq_http_requests_total{method="PUT",status="201",version="1.1"} 2"#,
        r#"stoq_http_requests_total{method="DELETE",status="401",version="1.1"} 1"#,
        r#"stoq_http_requests_total{method="POST",status="405",version="1.1"} 1"#,
    ] {
        assert!(page.contains(series), "{series} not in\n{page}");
    }
    assert!(page.contains("stoq_http_first_byte_seconds_count"));
    let sent: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("stoq_http_bytes_out_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(sent >= 700_000, "{sent}");
    let (code, err) = server.stop();
    assert_eq!(code, 0, "{err}");
}

/// A Python with the `aioquic` package: `STOQ_TEST_PYTHON`, the venv `.ci/run` makes
/// (`target/ci-venv`), or `python3`.
fn python_with_aioquic() -> Option<PathBuf> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        std::env::var_os("STOQ_TEST_PYTHON").map(PathBuf::from),
        Some(workspace.join("target/ci-venv/bin/python")),
        Some(PathBuf::from("python3")),
    ];
    candidates.into_iter().flatten().find(|python| {
        Command::new(python)
            .args(["-c", "import aioquic.h3.connection"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn an_independent_http3_client_gets_content_and_ranges_over_udp() {
    let Some(python) = python_with_aioquic() else {
        eprintln!("skipped: no Python with aioquic (pip install aioquic, or run .ci/run)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (server, data, cert) = https_origin(dir.path());
    let url = server.http_url.clone().unwrap();
    let bytes = noise(2_500_000, 5);
    let file = dir.path().join("content.bin");
    std::fs::write(&file, &bytes).unwrap();
    let id = put(&file, &server, &data, &[]);
    let content = format!("{url}/c/{id}");
    // HTTP/1.1 and HTTP/2 answers announce HTTP/3 on the same port.
    let port = url.rsplit(':').next().unwrap();
    let out = curl(Some(&cert), &["-I", &content]);
    let (_, headers) = head_of(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        header(&headers, "alt-svc"),
        Some(format!("h3=\":{port}\"; ma=86400").as_str())
    );

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/h3_get.py");
    let get = |range: Option<&str>, out: &Path| {
        let mut cmd = Command::new("timeout");
        cmd.arg("40")
            .arg(&python)
            .arg(&script)
            .arg(&content)
            .arg(&cert)
            .arg(out);
        cmd.args(range);
        let done = cmd.output().unwrap();
        assert!(
            done.status.success(),
            "{}",
            String::from_utf8_lossy(&done.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&done.stdout).unwrap()
    };
    let whole = dir.path().join("whole");
    let answer = get(None, &whole);
    assert_eq!(answer["status"], 200, "{answer}");
    assert_eq!(answer["headers"]["etag"], format!("\"{id}\""));
    assert_eq!(std::fs::read(&whole).unwrap(), bytes);
    let part = dir.path().join("part");
    let answer = get(Some("bytes=1000000-1500000"), &part);
    assert_eq!(answer["status"], 206, "{answer}");
    assert_eq!(
        answer["headers"]["content-range"],
        "bytes 1000000-1500000/2500000"
    );
    assert_eq!(std::fs::read(&part).unwrap(), &bytes[1_000_000..=1_500_000]);
    let (code, err) = server.stop();
    assert_eq!(code, 0, "{err}");
}

#[test]
fn bench_http_reports_curl_through_the_front_against_nginx() {
    if curl_missing() {
        return;
    }
    let out = run(&[
        "bench", "http", "--size", "2097152", "--rounds", "1", "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["name"], "http");
    for figure in [
        "stoq_http1_gbps",
        "stoq_http2_gbps",
        "cold_edge_first_byte_ms",
        "warm_edge_first_byte_ms",
    ] {
        assert!(j[figure].as_f64().unwrap() > 0.0, "{figure}: {j}");
    }
    // nginx is the baseline when installed; otherwise the report says why it is missing.
    match j["nginx_https_gbps"].as_f64() {
        Some(https) => assert!(
            https > 0.0 && j["ratio"]["nginx_https"].as_f64().unwrap() > 0.0,
            "{j}"
        ),
        None => assert!(
            j["nginx_skipped"].as_str().unwrap().contains("nginx"),
            "{j}"
        ),
    }
}

#[test]
fn a_bad_http_setting_is_a_usage_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let missing = dir.path().join("missing.pem");
    let cases: [(Vec<&str>, &str); 3] = [
        (vec!["--http", "127.0.0.1:8080"], "IPv6"),
        (
            vec![
                "--http",
                "[::1]:0",
                "--http-cert",
                missing.to_str().unwrap(),
                "--http-key",
                missing.to_str().unwrap(),
            ],
            "missing.pem",
        ),
        (
            vec![
                "--http",
                "[::1]:0",
                "--http-cert",
                missing.to_str().unwrap(),
            ],
            "--http-key",
        ),
    ];
    for (flags, named) in cases {
        let mut args = vec![
            "serve",
            "--listen",
            "[::1]:0",
            "--data-dir",
            data.to_str().unwrap(),
        ];
        args.extend(flags.iter());
        let out = common::stoq()
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(named), "{flags:?}: {}", stderr(&out));
    }
}

#[test]
fn slow_readers_hold_the_fronts_read_ahead_budget_and_a_new_read_gets_503_until_they_finish() {
    if curl_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stoq.toml");
    std::fs::write(&config, "[http]\nread_ahead_bytes = 4194304\n").unwrap();
    let data = dir.path().join("origin");
    let origin = Server::start_with(
        &data,
        &["--config", config.to_str().unwrap(), "--http", "[::1]:0"],
    );
    let bytes = noise(32 << 20, 21);
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &bytes).unwrap();
    let id = put(&file, &origin, &data, &[]);
    let url = format!("{}/c/{id}", origin.http_url.as_deref().unwrap());
    // Two clients that read slowly: once their socket buffers are full, each holds two runs.
    let slow: Vec<std::process::Child> = (0..2)
        .map(|_| {
            Command::new("curl")
                .args([
                    "-s",
                    "--max-time",
                    "60",
                    "--limit-rate",
                    "20K",
                    "-o",
                    "/dev/null",
                    &url,
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (status, headers, body) = loop {
        let dump = String::from_utf8_lossy(&curl(None, &["-D", "-", "-r", "0-0", &url]).stdout)
            .into_owned();
        let (status, headers) = head_of(&dump);
        if status == 503 || std::time::Instant::now() > deadline {
            let body = dump.split("\r\n\r\n").last().unwrap_or_default().to_owned();
            break (status, headers, body);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 503, "{headers:?}");
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    assert!(body.contains("read-ahead buffers are full"), "{body}");
    // Once they are gone, their share comes back.
    for mut child in slow {
        let _ = child.kill();
        let _ = child.wait();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let whole = loop {
        let out = curl(None, &["-f", &url]);
        if out.status.success() || std::time::Instant::now() > deadline {
            break out.stdout;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(whole == bytes, "{} bytes came back", whole.len());
}
