//! The edge network end to end: real nodes (origin, edges, relay) on [::1], joined by SWIM
//! membership over QUIC, serving content through their caches.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use stoq::chunking::ContentId;
use stoq::client::{self, fetch};
use stoq::protocol::{Location, Op, PutSettings, Request};
use stoq::transport::{
    NodeIdentity, PeerExpectation, StoqConnection, StoqEndpoint, TransportConfig, TransportError,
};
use stoq::StoqConfig;
use stoq::{AdminToken, Node, NodeOptions, Role};

const TOKEN: &str = "test-network-admin-token-0123456789";

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .expect("test exceeded its time bound")
}

fn at(location: &str) -> Location {
    Location::parse(location).unwrap()
}

/// A node on [::1] with fast failure detection, sharing the test network's admin token.
async fn start(dir: &Path, role: Role, region: &str, geo: Option<&str>, seeds: &[&Node]) -> Node {
    start_tuned(dir, role, region, geo, seeds, |_| {}).await
}

/// [`start`] with the configuration adjusted by `tune`.
async fn start_tuned(
    dir: &Path,
    role: Role,
    region: &str,
    geo: Option<&str>,
    seeds: &[&Node],
    tune: impl FnOnce(&mut StoqConfig),
) -> Node {
    start_holding(TOKEN, dir, role, seeds, |config| {
        config.node.region = region.into();
        config.node.geo = geo.map(str::to_owned);
        tune(config);
    })
    .await
}

/// A node on [::1] holding admin token `token` (a stranger's own, or the network's).
async fn start_holding(
    token: &str,
    dir: &Path,
    role: Role,
    seeds: &[&Node],
    tune: impl FnOnce(&mut StoqConfig),
) -> Node {
    let mut config = StoqConfig::default();
    config.transport.listen = "[::1]:0".parse().unwrap();
    config.node.data_dir = dir.to_path_buf();
    config.node.role = role;
    config.node.probe_interval_ms = 200;
    config.node.suspect_after_ms = 600;
    config.edge.cache_bytes = 256 << 20;
    tune(&mut config);
    let mut options = NodeOptions::new(config);
    options.token = Some(AdminToken::from_text(token).unwrap());
    options.seeds = seeds
        .iter()
        .map(|n| (n.node_id(), n.local_addr()))
        .collect();
    Node::start(options).await.unwrap()
}

/// Waits until every node sees all the others.
/// Whether every node comes to see exactly `count` peers within 20 s (membership wakes the
/// wait whenever a member comes or goes).
async fn peers_become(nodes: &[&Node], count: usize) -> bool {
    for node in nodes {
        let seen = node.membership();
        if !seen
            .wait_for(|p| p.len() == count, Duration::from_secs(20))
            .await
        {
            return false;
        }
    }
    true
}

/// Waits until every node sees all the others.
async fn converge(nodes: &[&Node]) {
    assert!(
        peers_become(nodes, nodes.len() - 1).await,
        "membership did not converge"
    );
}

fn client_endpoint() -> StoqEndpoint {
    let config = TransportConfig {
        listen: "[::1]:0".parse().unwrap(),
        ..TransportConfig::default()
    };
    StoqEndpoint::client(config, NodeIdentity::generate().unwrap()).unwrap()
}

async fn dial(client: &StoqEndpoint, node: &Node) -> StoqConnection {
    client
        .connect(
            SocketAddr::V6(node.local_addr()),
            &PeerExpectation::Node(node.node_id()),
        )
        .await
        .unwrap()
}

/// Publishes `data` to `origin` over the network with the admin token.
async fn publish(client: &StoqEndpoint, origin: &Node, data: &[u8]) -> ContentId {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    let conn = dial(client, origin).await;
    let report = client::publish(&conn, TOKEN, file.path(), PutSettings::default())
        .await
        .unwrap();
    report.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_multi_source_chunk_retrieval() {
    bounded(async {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let origin = start(dirs[0].path(), Role::Origin, "eu", Some("50.1,8.7"), &[]).await;
        let a = start(
            dirs[1].path(),
            Role::Edge,
            "eu",
            Some("48.9,2.3"),
            &[&origin],
        )
        .await;
        let b = start(
            dirs[2].path(),
            Role::Edge,
            "us",
            Some("40.7,-74.0"),
            &[&origin],
        )
        .await;
        converge(&[&origin, &a, &b]).await;
        let client = client_endpoint();
        let data = noise(6 << 20, 7);
        let id = publish(&client, &origin, &data).await;
        let conns = vec![dial(&client, &a).await, dial(&client, &b).await];
        let mut out = Vec::new();
        let report = fetch(&conns, &id, &mut out).await.unwrap();
        assert_eq!(out, data, "the bytes arrive intact and in order");
        assert!(report.dropped.is_empty());
        for (addr, bytes) in &report.sources {
            assert!(*bytes > 0, "source {addr} served nothing: {report:?}");
        }
        // Both edges pulled their share through from the origin and now hold it.
        assert!(a.cache_stats().unwrap().used_bytes > 0);
        assert!(b.cache_stats().unwrap().used_bytes > 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_geographic_routing() {
    bounded(async {
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let origin = start(
            dirs[0].path(),
            Role::Origin,
            "eu-central",
            Some("50.1,8.7"),
            &[],
        )
        .await;
        let fra = start(
            dirs[1].path(),
            Role::Edge,
            "eu-central",
            Some("50.1,8.7"),
            &[&origin],
        )
        .await;
        let nyc = start(
            dirs[2].path(),
            Role::Edge,
            "us-east",
            Some("40.7,-74.0"),
            &[&origin],
        )
        .await;
        let sgp = start(
            dirs[3].path(),
            Role::Edge,
            "ap-southeast",
            Some("1.35,103.8"),
            &[&origin],
        )
        .await;
        converge(&[&origin, &fra, &nyc, &sgp]).await;
        let client = client_endpoint();
        let conn = dial(&client, &origin).await;
        for (location, want) in [
            ("geo:48.9,2.3", &fra),    // Paris
            ("geo:37.8,-122.4", &nyc), // San Francisco
            ("geo:-33.9,151.2", &sgp), // Sydney
            ("region:ap-southeast", &sgp),
        ] {
            let sources = client::locate(&conn, &at(location)).await.unwrap();
            assert_eq!(sources[0].id, want.node_id(), "{location}: {sources:?}");
            assert_eq!(sources.len(), 4, "three edges then the origin");
            assert_eq!(sources[3].role, Role::Origin);
        }
        // Sent raw: the typed client cannot even encode a bad position.
        let bad = conn.request(&b"\x23geo:north"[..]).await.unwrap_err();
        assert!(bad.to_string().contains("LAT,LON"), "{bad}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_edge_cache_performance() {
    bounded(async {
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let origin = start(dirs[0].path(), Role::Origin, "eu", None, &[]).await;
        let edge = start(dirs[1].path(), Role::Edge, "eu", None, &[&origin]).await;
        converge(&[&origin, &edge]).await;
        let client = client_endpoint();
        let data = noise(3 << 20, 3);
        let id = publish(&client, &origin, &data).await;

        // Eight clients ask the edge for the same content at once: each chunk leaves the
        // origin once (request coalescing).
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let conn = dial(&client, &edge).await;
            tasks.push(tokio::spawn(async move {
                let mut out = Vec::new();
                fetch(&[conn], &id, &mut out).await.unwrap();
                out
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), data);
        }
        let chunks_from_origin = origin.metrics().requests_of("chunk");
        let manifest = {
            let conn = dial(&client, &origin).await;
            client::fetch_manifest(&conn, &id).await.unwrap()
        };
        assert_eq!(
            chunks_from_origin,
            manifest.chunks.len() as u64,
            "each chunk was pulled from the origin exactly once"
        );
        // Every client asked for the manifest and each chunk once: chunks + 1 lookups each,
        // and each of those things was fetched upstream once; the rest are hits or waits on a
        // fetch under way (coalesced), counted apart.
        let (chunks, stats) = (manifest.chunks.len() as u64, edge.cache_stats().unwrap());
        assert_eq!(stats.misses, chunks + 1, "{stats:?}");
        assert_eq!(
            stats.hits + stats.misses + stats.coalesced,
            8 * (chunks + 1),
            "every request counted once: {stats:?}"
        );

        // The next fetch is served by the edge without touching the origin.
        let hits_before = edge.cache_stats().unwrap().hits;
        let conn = dial(&client, &edge).await;
        let mut out = Vec::new();
        fetch(&[conn], &id, &mut out).await.unwrap();
        assert_eq!(out, data);
        assert_eq!(origin.metrics().requests_of("chunk"), chunks_from_origin);
        let hits = edge.cache_stats().unwrap().hits - hits_before;
        assert!(hits >= manifest.chunks.len() as u64, "{hits} hits");
        let status = edge.status();
        assert!(status.cache_hits >= hits);
        // The edge measured the origin's throughput while pulling; it travels in its reports.
        let seen = status
            .peers
            .iter()
            .find(|p| p.id == origin.node_id())
            .and_then(|p| p.throughput_mbps);
        assert!(seen.is_some_and(|mbps| mbps > 0.0), "{status:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_failover_scenarios() {
    bounded(async {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let origin = start(dirs[0].path(), Role::Origin, "eu", None, &[]).await;
        let a = start(dirs[1].path(), Role::Edge, "eu", None, &[&origin]).await;
        let b = start(dirs[2].path(), Role::Edge, "us", None, &[&origin]).await;
        converge(&[&origin, &a, &b]).await;
        let client = client_endpoint();
        let data = noise(24 << 20, 5);
        let id = publish(&client, &origin, &data).await;

        // 1. A source killed mid-transfer: the fetch finishes from the other. It is killed
        // once the client holds the manifest and before it asks for a chunk, so it always
        // has work outstanding however the machine schedules the two (a source killed later
        // may already have sent its whole share, and would rightly not be dropped).
        let conns = vec![dial(&client, &a).await, dial(&client, &b).await];
        let mut out = Vec::new();
        let options = client::FetchOptions {
            active: 2,
            ..Default::default()
        };
        let dying = b.clone();
        let report = client::fetch_with(&conns, &id, &mut out, &options, |_| {
            tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(dying.kill())
            });
            Ok(0)
        })
        .await
        .unwrap();
        assert_eq!(out, data, "complete and correct despite the kill");
        assert_eq!(report.dropped.len(), 1, "{report:?}");
        assert_eq!(
            report.dropped[0],
            SocketAddr::V6(b.local_addr()).to_string()
        );

        // 2. The dead edge is dropped from the membership within seconds.
        assert!(
            peers_become(&[&origin, &a], 1).await,
            "dead node never dropped"
        );
        assert!(
            origin.membership().changes() >= 3,
            "two joins and one death"
        );

        // 3. A purge sent to the origin reaches the edge: gone from its cache and the origin.
        assert!(a.cache_stats().unwrap().used_bytes > 0);
        let conn = dial(&client, &origin).await;
        let answer = client::purge(&conn, TOKEN, &id).await.unwrap();
        assert_eq!(answer.reached.len(), 1, "{answer:?}");
        assert_eq!(a.cache_stats().unwrap().used_bytes, 0);
        assert!(a.cache_stats().unwrap().purged > 0);
        let edge_conn = dial(&client, &a).await;
        let err = client::fetch_manifest(&edge_conn, &id).await.unwrap_err();
        assert!(err.to_string().contains("not in this network"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_and_purging_without_the_admin_token_are_refused_and_change_nothing() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let origin = start(dir.path(), Role::Origin, "eu", None, &[]).await;
        let client = client_endpoint();
        let data = noise(100_000, 9);
        let id = publish(&client, &origin, &data).await;
        let conn = dial(&client, &origin).await;
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b"should never be stored").unwrap();
        let refused = client::publish(&conn, "wrong-token-wrong-token", file.path(), PutSettings::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, TransportError::Remote { reason, .. } if reason.contains("wrong admin token")),
            "{refused}"
        );
        let refused = client::purge(&conn, "", &id).await.unwrap_err();
        assert!(refused.to_string().contains("admin token"), "{refused}");
        let status = origin.status();
        assert_eq!(status.store.as_ref().map(|s| s.objects), Some(1), "nothing stored, nothing purged: {status:?}");
        let mut out = Vec::new();
        fetch(&[conn], &id, &mut out).await.unwrap();
        assert_eq!(out, data);
        assert_eq!(origin.metrics().unauthorized.load(Ordering::Relaxed), 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_reaches_the_origin_through_a_relay_when_that_is_the_only_way_measured() {
    bounded(async {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let origin = start(dirs[0].path(), Role::Origin, "eu", None, &[]).await;
        let relay = start(dirs[1].path(), Role::Relay, "eu", None, &[&origin]).await;
        converge(&[&origin, &relay]).await;
        let client = client_endpoint();
        let data = noise(1 << 20, 11);
        let id = publish(&client, &origin, &data).await;
        // A relay serves content it does not store by fetching it from the origin.
        let conn = dial(&client, &relay).await;
        let mut out = Vec::new();
        fetch(&[conn], &id, &mut out).await.unwrap();
        assert_eq!(out, data);
        assert!(origin.metrics().requests_of("chunk") > 0);
        let pulled = relay.metrics().bytes_in.load(Ordering::Relaxed);
        assert!(
            pulled >= data.len() as u64,
            "the relay pulled {pulled} bytes"
        );
        assert!(relay.cache_stats().is_none(), "a relay keeps no cache");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_prefetches_on_request_and_survives_a_restart_with_its_cache() {
    bounded(async {
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let origin = start(dirs[0].path(), Role::Origin, "eu", None, &[]).await;
        let edge = start(dirs[1].path(), Role::Edge, "eu", None, &[&origin]).await;
        converge(&[&origin, &edge]).await;
        let client = client_endpoint();
        let data = noise(2 << 20, 13);
        let id = publish(&client, &origin, &data).await;
        let conn = dial(&client, &edge).await;
        let answer = client::prefetch(&conn, TOKEN, &id).await.unwrap();
        assert_eq!(answer.bytes, data.len() as u64);
        let used = edge.cache_stats().unwrap().used_bytes;
        assert!(used >= data.len() as u64);
        edge.shutdown(Duration::from_secs(1)).await;
        drop(edge);
        // Restarted alone: the origin is gone too, so everything must come from the disk cache.
        origin.shutdown(Duration::from_secs(1)).await;
        let edge = start(dirs[1].path(), Role::Edge, "eu", None, &[]).await;
        assert_eq!(edge.cache_stats().unwrap().used_bytes, used);
        let conn = dial(&client, &edge).await;
        let mut out = Vec::new();
        fetch(&[conn], &id, &mut out).await.unwrap();
        assert_eq!(out, data);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_flipped_in_an_edge_cache_is_found_by_its_scrub_and_repaired_from_the_origin() {
    bounded(async {
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let origin = start(dirs[0].path(), Role::Origin, "eu", None, &[]).await;
        let edge = start_tuned(dirs[1].path(), Role::Edge, "eu", None, &[&origin], |c| {
            c.node.scrub_interval_ms = 100
        })
        .await;
        converge(&[&origin, &edge]).await;
        let client = client_endpoint();
        let data = noise(2 << 20, 17);
        let id = publish(&client, &origin, &data).await;
        let conn = dial(&client, &edge).await;
        client::prefetch(&conn, TOKEN, &id).await.unwrap();
        // Flip a byte of one cached chunk on the edge's disk.
        let manifest = client::fetch_manifest(&conn, &id).await.unwrap();
        let hex = manifest.chunks[1].id.to_string();
        let path = dirs[1].path().join("cache").join(&hex[..2]).join(&hex);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 0x80;
        std::fs::write(&path, bytes).unwrap();
        // The scrub finds it and deletes the entry ...
        let damaged = || edge.metrics().scrub_damaged.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(20);
        while damaged() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(damaged(), 1, "the scrub found the one damaged entry");
        // ... and the next download from the edge alone is whole: it fetched the chunk anew.
        let mut out = Vec::new();
        let report = fetch(&[conn], &id, &mut out).await.unwrap();
        assert!(out == data, "repaired from the origin");
        assert!(report.dropped.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_served_fresh_then_stale_while_revalidating_then_updated() {
    bounded(async {
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let origin = start(dirs[0].path(), Role::Origin, "eu", None, &[]).await;
        let edge = start(dirs[1].path(), Role::Edge, "eu", None, &[&origin]).await;
        converge(&[&origin, &edge]).await;
        let client = client_endpoint();
        let v1 = publish(&client, &origin, &noise(10_000, 1)).await;
        let v2 = publish(&client, &origin, &noise(10_000, 2)).await;
        let at_origin = dial(&client, &origin).await;
        let at_edge = dial(&client, &edge).await;

        let set = client::set_name(&at_origin, TOKEN, "site", &v1, 1, 30)
            .await
            .unwrap();
        assert_eq!(set.version, 1);
        assert_eq!(client::resolve_name(&at_edge, "site").await.unwrap().id, v1);
        let asked = origin.metrics().requests_of("name");

        // Updated at the origin; the edge's copy is fresh for a second and answers alone.
        client::set_name(&at_origin, TOKEN, "site", &v2, 1, 30)
            .await
            .unwrap();
        let asked = asked + 1;
        assert_eq!(client::resolve_name(&at_edge, "site").await.unwrap().id, v1);
        assert_eq!(
            origin.metrics().requests_of("name"),
            asked,
            "fresh: no upstream request"
        );

        // Past the TTL: the stale copy is served at once and refreshed behind it.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let stale = client::resolve_name(&at_edge, "site").await.unwrap();
        assert_eq!((stale.id, stale.version), (v1, 1));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = client::resolve_name(&at_edge, "site").await.unwrap();
            if now.id == v2 {
                assert_eq!(now.version, 2);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the stale name was never refreshed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Without TTL or SWR every lookup goes upstream; unknown names and bad tokens fail.
        client::set_name(&at_origin, TOKEN, "live", &v1, 0, 0)
            .await
            .unwrap();
        assert_eq!(client::resolve_name(&at_edge, "live").await.unwrap().id, v1);
        client::set_name(&at_origin, TOKEN, "live", &v2, 0, 0)
            .await
            .unwrap();
        assert_eq!(client::resolve_name(&at_edge, "live").await.unwrap().id, v2);
        let missing = client::resolve_name(&at_edge, "nothing-here")
            .await
            .unwrap_err();
        assert!(missing.to_string().contains("not set"), "{missing}");
        let refused = client::set_name(&at_origin, "wrong-token-wrong-token", "site", &v1, 1, 1)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("admin token"), "{refused}");
        let unknown = stoq::chunking::Hash32([9; 32]);
        let refused = client::set_name(&at_origin, TOKEN, "site", &unknown, 1, 1)
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("not in this network"),
            "{refused}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_coded_content_is_placed_across_origins_and_served_from_any_k_holders() {
    bounded(async {
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let a = start(dirs[0].path(), Role::Origin, "eu", None, &[]).await;
        let b = start(dirs[1].path(), Role::Origin, "us", None, &[&a]).await;
        let c = start(dirs[2].path(), Role::Origin, "ap", None, &[&a]).await;
        let edge = start(dirs[3].path(), Role::Edge, "eu", None, &[&a]).await;
        converge(&[&a, &b, &c, &edge]).await;
        let client = client_endpoint();
        let data = noise(3 << 20, 17);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &data).unwrap();
        let options = PutSettings {
            erasure: Some("2+1".parse().unwrap()),
            ..PutSettings::default()
        };
        let report = client::publish(&dial(&client, &a).await, TOKEN, file.path(), options)
            .await
            .unwrap();
        let placement = report.placement.as_ref().unwrap();
        assert!(placement.distributed, "{report:?}");
        let holders = &placement.holders;
        assert_eq!(holders.len(), 3, "{report:?}");
        assert!(holders.iter().all(|h| h.ok), "{report:?}");
        let id: ContentId = report.id;

        // The publisher dies: B rebuilds every chunk from its own shards and C's.
        a.kill().await;
        assert!(
            peers_become(&[&b, &edge], 2).await,
            "the dead origin was never dropped"
        );
        let mut out = Vec::new();
        fetch(&[dial(&client, &b).await], &id, &mut out)
            .await
            .unwrap();
        assert_eq!(out, data, "2 of 3 holders are enough");
        // An edge pulls through the surviving holders as well.
        let mut out = Vec::new();
        fetch(&[dial(&client, &edge).await], &id, &mut out)
            .await
            .unwrap();
        assert_eq!(out, data);

        // With a second holder gone, 1 of 3 cannot rebuild: a clear error, no wrong bytes.
        c.kill().await;
        assert!(peers_become(&[&b], 1).await, "C was never dropped");
        let mut out = Vec::new();
        let err = fetch(&[dial(&client, &b).await], &id, &mut out)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("only 1 of the 2 shards needed are reachable"),
            "{err}"
        );
        assert!(out.len() < data.len());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_content_needs_its_read_token_at_origins_and_edges_even_after_a_restart() {
    use stoq::client::{fetch_with, FetchOptions};
    bounded(async {
        let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
        let origin = start(dirs[0].path(), Role::Origin, "eu", None, &[]).await;
        let edge = start(dirs[1].path(), Role::Edge, "eu", None, &[&origin]).await;
        converge(&[&origin, &edge]).await;
        let client = client_endpoint();
        let data = noise(500_000, 23);
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &data).unwrap();
        let settings = PutSettings {
            read_digest: Some(stoq::protocol::read_digest("reader-secret")),
            ..PutSettings::default()
        };
        let report = client::publish(&dial(&client, &origin).await, TOKEN, file.path(), settings)
            .await
            .unwrap();
        let id: ContentId = report.id;
        let with = |token: Option<&str>| FetchOptions {
            active: 1,
            read_token: token.map(str::to_owned),
            local: Vec::new(),
            manifest: None,
        };
        let get = |node: &Node, token: Option<&'static str>| {
            let (client, node) = (client.clone(), node.clone());
            async move {
                let conn = dial(&client, &node).await;
                let mut out = Vec::new();
                fetch_with(&[conn], &id, &mut out, &with(token), |_| Ok(0))
                    .await
                    .map(|_| out)
            }
        };
        for (node, name) in [(&origin, "origin"), (&edge, "edge")] {
            let refused = get(node, None).await.unwrap_err();
            assert!(
                refused.to_string().contains("restricted"),
                "{name}: {refused}"
            );
        }
        // Through the edge with the token: the edge pulls it (as a member) and learns the rule.
        assert_eq!(get(&edge, Some("reader-secret")).await.unwrap(), data);
        assert!(get(&edge, None).await.is_err(), "the edge enforces it too");
        assert!(get(&edge, Some("a-wrong-secret")).await.is_err());
        assert_eq!(get(&origin, Some("reader-secret")).await.unwrap(), data);
        // Open content next to it stays open.
        let open = publish(&client, &origin, &noise(10_000, 29)).await;
        let mut out = Vec::new();
        fetch(&[dial(&client, &edge).await], &open, &mut out)
            .await
            .unwrap();

        // Restarted alone, the edge serves from its disk cache and still asks for the token.
        edge.shutdown(Duration::from_secs(1)).await;
        origin.shutdown(Duration::from_secs(1)).await;
        let edge = start(dirs[1].path(), Role::Edge, "eu", None, &[]).await;
        let refused = get(&edge, None).await.unwrap_err();
        assert!(refused.to_string().contains("restricted"), "{refused}");
        assert_eq!(get(&edge, Some("reader-secret")).await.unwrap(), data);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_measured_rtt_to_a_client_area_overrides_geography_across_the_network() {
    bounded(async {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let origin = start(dirs[0].path(), Role::Origin, "eu", Some("50.1,8.7"), &[]).await;
        let fra = start(
            dirs[1].path(),
            Role::Edge,
            "eu",
            Some("50.1,8.7"),
            &[&origin],
        )
        .await;
        let nyc = start(
            dirs[2].path(),
            Role::Edge,
            "us",
            Some("40.7,-74.0"),
            &[&origin],
        )
        .await;
        converge(&[&origin, &fra, &nyc]).await;
        let client = client_endpoint();
        let at_origin = dial(&client, &origin).await;
        let paris = &at("geo:48.9,2.3");
        assert_eq!(
            client::locate(&at_origin, paris).await.unwrap()[0].id,
            fra.node_id()
        );
        // A Paris client reaches the New York edge in well under a millisecond here (it is
        // loopback): that edge measures it, reports it, and the network believes the measurement.
        client::locate(&dial(&client, &nyc).await, paris)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if client::locate(&at_origin, paris).await.unwrap()[0].id == nyc.node_id() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the measurement never reached the origin"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Other areas are still ranked by geography.
        assert_eq!(
            client::locate(&at_origin, &at("geo:45.8,4.8"))
                .await
                .unwrap()[0]
                .id,
            fra.node_id()
        );
    })
    .await;
}

const STRANGER_TOKEN: &str = "a-stranger-with-a-token-of-its-own";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_membership_drops_a_node_without_the_networks_token() {
    bounded(async {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let origin = start(dirs[0].path(), Role::Origin, "eu", None, &[]).await;
        let stranger = start_holding(
            STRANGER_TOKEN,
            dirs[1].path(),
            Role::Edge,
            &[&origin],
            |_| {},
        )
        .await;
        let member = start(dirs[2].path(), Role::Edge, "eu", None, &[&origin]).await;
        assert!(
            peers_become(&[&origin, &member], 1).await,
            "the member never joined"
        );
        // The stranger's membership messages are refused (counted), and it is never a peer.
        let deadline = Instant::now() + Duration::from_secs(20);
        while origin.metrics().unauthorized.load(Ordering::Relaxed) == 0 {
            assert!(
                Instant::now() < deadline,
                "the stranger's gossip was never refused"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let peers: Vec<_> = origin
            .membership()
            .peers()
            .iter()
            .map(|p| p.member.node_id())
            .collect();
        assert_eq!(peers, vec![member.node_id()]);
        assert!(!origin
            .membership()
            .peers()
            .iter()
            .any(|p| p.member.node_id() == stranger.node_id()));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_open_membership_forwarded_operations_carry_proofs_a_stranger_cannot_reuse() {
    bounded(async {
        let open = |c: &mut StoqConfig| c.node.membership = stoq::config::JoinPolicy::Open;
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let a = start_holding(TOKEN, dirs[0].path(), Role::Origin, &[], open).await;
        let b = start_holding(TOKEN, dirs[1].path(), Role::Origin, &[&a], open).await;
        let c = start_holding(TOKEN, dirs[2].path(), Role::Origin, &[&a], open).await;
        let stranger = start_holding(STRANGER_TOKEN, dirs[3].path(), Role::Edge, &[&a], open).await;
        converge(&[&a, &b, &c, &stranger]).await;

        // An erasure-coded publish places shards on B and C with proofs, not the token.
        let client = client_endpoint();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), noise(1 << 20, 5)).unwrap();
        let settings = PutSettings {
            erasure: Some("2+1".parse().unwrap()),
            ..PutSettings::default()
        };
        let report = client::publish(&dial(&client, &a).await, TOKEN, file.path(), settings)
            .await
            .unwrap();
        let placement = report.placement.as_ref().unwrap();
        assert!(placement.holders.iter().all(|h| h.ok), "{report:?}");
        let id: ContentId = report.id;

        // The purge reaches B and C with proofs they check; the stranger gets one it cannot.
        let answer = client::purge(&dial(&client, &a).await, TOKEN, &id)
            .await
            .unwrap();
        assert!(answer.reached.contains(&b.node_id()), "{answer:?}");
        assert!(answer.reached.contains(&c.node_id()), "{answer:?}");
        let refused = answer.failed.iter().find(|f| f.id == stranger.node_id());
        assert!(
            refused.is_some_and(|f| f.reason.contains("wrong admin token")),
            "{answer:?}"
        );

        // What the stranger received is a proof made for it: replayed at B, it is refused.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let network = AdminToken::from_text(TOKEN).unwrap();
        let theirs = network.vouch(Op::Purge, &id, &stranger.node_id(), now);
        let replay = Request::Purge {
            token: Request::admin_token(&theirs),
            id,
            forward: false,
        };
        let err = dial(&client, &b)
            .await
            .request(replay.encode())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("wrong admin token"), "{err}");
        // The same proof made for B is accepted there: it is the binding that refused it.
        let mine = Request::Purge {
            token: Request::admin_token(&network.vouch(Op::Purge, &id, &b.node_id(), now)),
            id,
            forward: false,
        };
        dial(&client, &b)
            .await
            .request(mine.encode())
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_edge_rejoins_at_once_and_answers_unavailable_never_not_found_meanwhile() {
    bounded(async {
        let (o, e) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let origin = start(o.path(), Role::Origin, "eu", None, &[]).await;
        let edge = start(e.path(), Role::Edge, "eu", None, &[&origin]).await;
        converge(&[&origin, &edge]).await;
        let client = client_endpoint();
        let data = noise(256 << 10, 9);
        let id = publish(&client, &origin, &data).await;

        // Killed (no goodbye) and started again at once on the same data dir: the origin
        // still holds the old incarnation.
        edge.kill().await;
        let edge = start(e.path(), Role::Edge, "eu", None, &[&origin]).await;
        let restarted = Instant::now();
        let conn = dial(&client, &edge).await;
        match client::fetch_manifest(&conn, &id).await {
            Ok(manifest) => assert_eq!(manifest.size, data.len() as u64),
            Err(e) => {
                let text = e.to_string();
                assert!(text.contains("unavailable"), "{text}");
                assert!(
                    stoq::protocol::retry_after(&text[text.find("unavailable:").unwrap()..])
                        .is_some(),
                    "{text}"
                );
            }
        }
        // A download pauses on UNAVAILABLE and completes once the edge has rejoined.
        let mut out = Vec::new();
        fetch(&[conn], &id, &mut out).await.unwrap();
        assert_eq!(out, data);
        let took = restarted.elapsed();
        assert!(
            took < Duration::from_secs(6),
            "the restarted edge took {took:?} to serve"
        );
        assert!(peers_become(&[&origin, &edge], 1).await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rates_is_told_to_slow_down_and_the_admin_and_members_are_not() {
    bounded(async {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        // One origin limits requests per client address, the other bytes per connection.
        let counted = start_tuned(dirs[0].path(), Role::Origin, "eu", None, &[], |c| {
            c.node.client_requests_per_s = 5;
        })
        .await;
        let metered = start_tuned(dirs[1].path(), Role::Origin, "eu", None, &[], |c| {
            c.node.connection_bytes_per_s = 128 * 1024;
        })
        .await;
        let edge = start(dirs[2].path(), Role::Edge, "eu", None, &[&metered]).await;
        converge(&[&metered, &edge]).await;
        let client = client_endpoint();

        // Requests: 40 pings at once against 5 per second: some are told to slow down, with
        // the pause to take (however slowly this machine runs them, 40 take far less than 8 s).
        let conn = dial(&client, &counted).await;
        let mut pings = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let conn = conn.clone();
            pings.spawn(async move { client::ping(&conn).await });
        }
        let mut slowed = Vec::new();
        while let Some(answer) = pings.join_next().await {
            if let Err(e) = answer.unwrap() {
                slowed.push(e.to_string());
            }
        }
        assert!(!slowed.is_empty(), "40 pings at once were all answered");
        for why in &slowed {
            assert!(
                why.contains("slow down: over 5 requests/s from your address"),
                "{why}"
            );
            assert!(stoq::protocol::retry_after(&why[why.find("busy:").unwrap()..]).is_some());
        }
        // The admin is not limited: its token goes through while the client is slowed.
        for _ in 0..10 {
            client::purge(&conn, TOKEN, &ContentId::of(b"nothing"))
                .await
                .unwrap();
        }

        // Bytes: one chunk at a time on a connection limited to 128 KiB/s; each answer is
        // charged once sent, and past the second's worth the client is told to slow down.
        let data = noise(1 << 20, 21);
        let id = publish(&client, &metered, &data).await;
        let paced = dial(&client, &metered).await;
        let manifest = client::fetch_manifest(&paced, &id).await.unwrap();
        let mut fetched = 0usize;
        let mut slowed = None;
        for index in 0..manifest.chunks.len() as u32 {
            match client::fetch_chunk(&paced, &id, &manifest, index).await {
                Ok(bytes) => fetched += bytes.len(),
                Err(e) => {
                    slowed = Some(e.to_string());
                    break;
                }
            }
        }
        let slowed = slowed.expect("1 MiB at once on a 128 KiB/s connection was never slowed");
        assert!(
            slowed.contains("slow down: over 131072 bytes/s on this connection"),
            "{slowed}"
        );
        assert!(
            fetched < 1 << 20,
            "all {fetched} bytes went out before the slow-down"
        );
        // A whole download on a fresh connection is paced by those pauses and arrives whole.
        let mut out = Vec::new();
        fetch(&[dial(&client, &metered).await], &id, &mut out)
            .await
            .unwrap();
        assert_eq!(out, data);
        // A member (the edge, fetching for its clients) is never slowed.
        let busy_before = metered.metrics().busy.load(Ordering::Relaxed);
        let mut out = Vec::new();
        fetch(&[dial(&client, &edge).await], &id, &mut out)
            .await
            .unwrap();
        assert_eq!(out, data);
        assert_eq!(
            metered.metrics().busy.load(Ordering::Relaxed),
            busy_before,
            "a member was slowed"
        );
    })
    .await;
}
