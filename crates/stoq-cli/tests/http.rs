//! The HTTP front, tried with real clients: curl over HTTP/1.1 and HTTP/2 (TLS with a
//! certificate made here), and headless Chromium loading a website published as a collection
//! through an edge. Tests that need a missing program say so and skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{noise, run, stderr, Server};

/// curl with a bounded time and the test certificate trusted; `args` follow.
fn curl(ca: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20"]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    cmd.args(args).output().expect("curl runs")
}

/// Whether curl is missing (saying so: the test then skips).
fn curl_missing() -> bool {
    let missing = !have("curl");
    if missing {
        eprintln!("skipped: curl is not installed");
    }
    missing
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The status line's code and the headers (lower-cased names) of a `curl -D -` dump.
fn head_of(dump: &str) -> (u16, Vec<(String, String)>) {
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

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The status and headers curl saw for `args` (the body thrown away).
fn head(ca: Option<&Path>, args: &[&str]) -> (u16, Vec<(String, String)>) {
    let mut all = vec!["-D", "-", "-o", "/dev/null"];
    all.extend_from_slice(args);
    head_of(&String::from_utf8_lossy(&curl(ca, &all).stdout))
}

/// A certificate for `localhost` and `::1`, and its key, as PEM files in `dir`.
fn test_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "::1".into()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// An origin with an HTTPS front (a certificate made here): the server, its data dir, and the
/// certificate to trust.
fn https_origin(dir: &Path) -> (Server, PathBuf, PathBuf) {
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
fn edge_of(origin: &Server, dir: &Path, token: &Path) -> Server {
    let seed = format!("{}@{}", origin.node_id, origin.addr);
    let flags = [
        "--role",
        "edge",
        "--seed",
        &seed,
        "--token-file",
        token.to_str().unwrap(),
        "--http",
        "[::1]:0",
    ];
    Server::start_with(&dir.join("edge"), &flags)
}

fn put(file: &Path, server: &Server, data: &Path, extra: &[&str]) -> String {
    let token = data.join("admin.token");
    let out = common::stoq()
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

/// A small website: a page whose script reports, once everything loaded, whether the script
/// ran and the image decoded.
fn write_site(dir: &Path) {
    std::fs::create_dir_all(dir.join("css")).unwrap();
    std::fs::create_dir_all(dir.join("img")).unwrap();
    std::fs::write(
        dir.join("index.html"),
        r#"<!doctype html><html><head><link rel="stylesheet" href="css/site.css"></head>
<body><p id="status">not run</p><img id="logo" src="img/logo.png">
<script src="app.js"></script></body></html>"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("css/site.css"),
        "#status { color: rgb(0, 128, 0); }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("app.js"),
        r#"window.addEventListener("load", function () {
  var img = document.getElementById("logo");
  var color = getComputedStyle(document.getElementById("status")).color;
  document.getElementById("status").textContent = "script ran; image " +
    (img.complete && img.naturalWidth === 1 ? "loaded" : "missing") + "; style " + color;
});
"#,
    )
    .unwrap();
    // A 1x1 PNG.
    let png: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f,
        0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8,
        0xcf, 0xc0, 0xf0, 0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00,
        0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    std::fs::write(dir.join("img/logo.png"), png).unwrap();
}

#[test]
fn a_website_published_as_a_collection_loads_through_an_edge_by_name() {
    if curl_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    write_site(&site);
    let data = dir.path().join("origin");
    let origin = Server::start(&data);
    let token = data.join("admin.token");
    let edge = edge_of(&origin, dir.path(), &token);
    let url = edge.http_url.clone().unwrap();
    let published = common::stoq()
        .args(["put"])
        .arg(&site)
        .args([
            "--node",
            &format!("{}@{}", origin.node_id, origin.addr),
            "--token-file",
        ])
        .arg(&token)
        .arg("--json")
        .output()
        .unwrap();
    assert!(published.status.success(), "{}", stderr(&published));
    let answer: serde_json::Value = serde_json::from_slice(&published.stdout).unwrap();
    assert_eq!(
        (answer["kind"].as_str(), answer["files"].as_u64()),
        (Some("collection"), Some(4))
    );
    let id = answer["id"].as_str().unwrap().to_owned();
    let named = run(&[
        "name",
        "set",
        "site",
        &id,
        "--node",
        &format!("{}@{}", origin.node_id, origin.addr),
        "--token-file",
        token.to_str().unwrap(),
        "--ttl",
        "30",
    ]);
    assert!(named.status.success(), "{}", stderr(&named));

    // The edge learns of the origin within its first probes; until then it answers 503.
    let page = format!("{url}/n/site/");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let (status, headers, body) = loop {
        let out = curl(None, &["-D", "-", &page]);
        let dump = String::from_utf8_lossy(&out.stdout).into_owned();
        let (status, headers) = head_of(&dump);
        if status != 503 || std::time::Instant::now() > deadline {
            let body = dump.split("\r\n\r\n").last().unwrap().to_owned();
            break (status, headers, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let max_age = header(&headers, "cache-control").unwrap();
    assert!(
        max_age.starts_with("public, max-age=") && !max_age.contains("immutable"),
        "{max_age}"
    );
    assert!(body.contains(r#"<p id="status">"#));
    // Each file with the type of its name, byte for byte.
    for (path, media) in [
        ("css/site.css", "text/css; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("img/logo.png", "image/png"),
    ] {
        let out = curl(
            None,
            &[
                "-D",
                "-",
                "-o",
                dir.path().join("file").to_str().unwrap(),
                &format!("{url}/c/{id}/{path}"),
            ],
        );
        let (status, headers) = head_of(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(
            (status, header(&headers, "content-type")),
            (200, Some(media)),
            "{path}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("file")).unwrap(),
            std::fs::read(site.join(path)).unwrap()
        );
    }
    // The collection and its directories without the slash are redirected to it.
    for (path, location) in [
        (format!("/c/{id}"), format!("/c/{id}/")),
        (format!("/c/{id}/css"), format!("/c/{id}/css/")),
    ] {
        let (status, headers) = head(None, &[&format!("{url}{path}")]);
        assert_eq!(
            (status, header(&headers, "location")),
            (301, Some(location.as_str()))
        );
    }
    let out = curl(
        None,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{url}/c/{id}/nothing.html"),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");

    // A file published alone keeps the type of its name, at the edge too.
    let alone = common::stoq()
        .arg("put")
        .arg(site.join("app.js"))
        .args([
            "--node",
            &format!("{}@{}", origin.node_id, origin.addr),
            "--token-file",
        ])
        .arg(&token)
        .output()
        .unwrap();
    let alone_id = String::from_utf8(alone.stdout).unwrap().trim().to_owned();
    let (status, headers) = head(None, &[&format!("{url}/c/{alone_id}")]);
    assert_eq!(
        (status, header(&headers, "content-type")),
        (200, Some("text/javascript; charset=utf-8"))
    );

    // stoq get restores the tree.
    let restored = dir.path().join("restored");
    let got = run(&[
        "get",
        &id,
        "--node",
        &edge.addr,
        "-o",
        restored.to_str().unwrap(),
    ]);
    assert!(got.status.success(), "{}", stderr(&got));
    for path in ["index.html", "css/site.css", "app.js", "img/logo.png"] {
        assert_eq!(
            std::fs::read(restored.join(path)).unwrap(),
            std::fs::read(site.join(path)).unwrap(),
            "{path}"
        );
    }

    // A real browser renders it: the script ran, the image decoded, the style applied.
    match ["chromium", "chromium-browser"]
        .into_iter()
        .find(|b| have(b))
    {
        None => eprintln!("skipped the browser check: chromium is not installed"),
        Some(browser) => {
            let profile = dir.path().join("chromium-profile");
            let out = Command::new("timeout")
                .args([
                    "60",
                    browser,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .args(["--virtual-time-budget=10000", "--dump-dom", &page])
                .output()
                .unwrap();
            let dom = String::from_utf8_lossy(&out.stdout);
            assert!(
                dom.contains("script ran; image loaded; style rgb(0, 128, 0)"),
                "the page did not render whole: {dom}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    drop(edge);
    drop(origin);
}

#[test]
fn a_range_through_an_edge_fetches_only_the_chunks_it_covers() {
    if curl_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("origin");
    let origin = Server::start(&data);
    let token = data.join("admin.token");
    let edge = edge_of(&origin, dir.path(), &token);
    let bytes = noise(8 << 20, 11);
    let file = dir.path().join("big.bin");
    std::fs::write(&file, &bytes).unwrap();
    let id = put(&file, &origin, &data, &[]);
    let url = edge.http_url.clone().unwrap();
    let at = format!("{url}/c/{id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let part = loop {
        let out = curl(None, &["-f", "-r", "4000000-4000099", &at]);
        if out.status.success() || std::time::Instant::now() > deadline {
            break out.stdout;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(part, &bytes[4_000_000..4_000_100]);
    // The edge pulled the manifest and a chunk or two, not 8 MiB: its cache holds only those.
    let status = run(&["status", "--node", &edge.addr, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let cached = status["cache"]["used_bytes"].as_u64().unwrap_or(u64::MAX);
    assert!(
        cached < 2 << 20,
        "a 100-byte range cached {cached} bytes: {status}"
    );
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
