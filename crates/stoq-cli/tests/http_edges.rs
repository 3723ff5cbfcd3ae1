//! Reads through the edge network over HTTP: a website published as a collection loads in
//! headless Chromium through an edge, a range through an edge fetches only what it covers,
//! and an origin redirects readers to their nearest edge's front.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::web::{curl, curl_missing, edge_of, edge_with, have, head, head_of, header, put};
use common::{noise, run, stderr, Server};

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

/// How many peers `server` sees now.
fn peers_of(server: &Server) -> usize {
    let out = run(&["status", "--node", &server.addr, "--json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["peers"].as_array().map(Vec::len))
        .unwrap_or(0)
}

#[test]
fn an_origin_redirects_reads_to_the_front_of_the_clients_nearest_edge() {
    if curl_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Clients at [::1] are in London, by the origin's prefix table.
    let config = dir.path().join("origin.toml");
    std::fs::write(
        &config,
        "[http]\nredirect_to_nearest_edge = true\n\n\
         [[edge.prefixes]]\nprefix = \"::1/128\"\nregion = \"eu-west\"\ngeo = \"51.5,-0.1\"\n",
    )
    .unwrap();
    let data = dir.path().join("origin");
    let origin = Server::start_with(
        &data,
        &["--config", config.to_str().unwrap(), "--http", "[::1]:0"],
    );
    let token = data.join("admin.token");
    let sydney = edge_with(
        &origin,
        &dir.path().join("sydney"),
        &token,
        &["--region", "ap-southeast", "--geo", "-33.9,151.2"],
    );
    let london = edge_with(
        &origin,
        &dir.path().join("london"),
        &token,
        &["--region", "eu-west", "--geo", "51.5,-0.1"],
    );
    let bytes = noise(3 << 20, 5);
    let file = dir.path().join("app.bin");
    std::fs::write(&file, &bytes).unwrap();
    let id = put(&file, &origin, &data, &[]);
    let origin_url = origin.http_url.clone().unwrap();
    let at = format!("{origin_url}/c/{id}?v=2");

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while peers_of(&origin) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the edges never joined"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // With both edges known, a read goes to the London one, path and query kept, uncached.
    let (status, headers) = head(None, &[&at]);
    assert_eq!(status, 302, "{headers:?}");
    let london_url = london.http_url.clone().unwrap();
    assert_eq!(
        header(&headers, "location"),
        Some(format!("{london_url}/c/{id}?v=2").as_str()),
        "sydney's front is {}",
        sydney.http_url.as_deref().unwrap()
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));

    // curl following the redirect gets the content from the edge, byte for byte.
    let body = loop {
        let out = curl(None, &["-f", "-L", &at]);
        if out.status.success() || std::time::Instant::now() > deadline {
            break out.stdout;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(body == bytes, "{} bytes came back", body.len());
    let status = run(&["status", "--node", &london.addr, "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(
        status["cache"]["used_bytes"].as_u64() >= Some(3 << 20),
        "{status}"
    );

    // A request with credentials is served where it arrived (clients drop them on a redirect).
    let (status, _) = head(None, &["-H", "Authorization: Bearer anything", &at]);
    assert_eq!(status, 200);
}
