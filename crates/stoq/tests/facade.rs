//! The embedding facade: a host builds `Stoq`, gets STOQ's parts or injects its own.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stoq::chunking::{
    Chunk, ChunkEngine, ChunkProfile, ChunkSpan, ContentKind, FastCdcEngine, Hash32,
};
use stoq::client;
use stoq::edge::{ClientLocation, EdgeError, EdgeNetwork, EdgeNode};
use stoq::protocol::{Location, PutSettings};
use stoq::routing::{
    Alternatives, GeoPoint, MetricsUpdate, Objective, Route, Router, RoutingError, Topology,
};
use stoq::store::PutOptions;
use stoq::transport::{NodeIdentity, PeerExpectation, StoqConnection, StoqEndpoint};
use stoq::{AdminToken, Node, NodeOptions, Role, Stoq, StoqConfig};

/// A host's own chunking: fixed 4 KiB pieces (what a host with its own dedup scheme might use).
struct FixedChunks;

const PIECE: usize = 4096;

impl ChunkEngine for FixedChunks {
    fn profile_for(&self, head: &[u8]) -> (ContentKind, ChunkProfile) {
        FastCdcEngine.profile_for(head)
    }

    fn chunk_slice(&self, data: &[u8], _: ChunkProfile) -> Vec<ChunkSpan> {
        data.chunks(PIECE)
            .enumerate()
            .map(|(i, c)| ChunkSpan {
                id: Hash32::of(c),
                offset: i * PIECE,
                length: c.len(),
            })
            .collect()
    }

    fn chunk_stream(
        &self,
        reader: &mut dyn Read,
        _: ChunkProfile,
        sink: &mut dyn FnMut(Chunk<'_>) -> io::Result<()>,
    ) -> io::Result<u64> {
        let mut total = 0u64;
        let mut buf = vec![0u8; PIECE];
        loop {
            let mut filled = 0;
            while filled < PIECE {
                let n = reader.read(&mut buf[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                return Ok(total);
            }
            sink(Chunk {
                id: Hash32::of(&buf[..filled]),
                offset: total,
                data: &buf[..filled],
            })?;
            total += filled as u64;
        }
    }
}

fn config(dir: &std::path::Path) -> StoqConfig {
    let mut c = StoqConfig::default();
    c.transport.listen = "[::1]:0".parse().unwrap();
    c.node.data_dir = dir.to_path_buf();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_injects_its_chunk_engine_and_router_and_uses_stoqs_transport_and_edges() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let dir = tempfile::tempdir().unwrap();
        let topology =
            Topology::from_json(&std::fs::read_to_string("../../examples/topology.json").unwrap())
                .unwrap();
        let stoq = Stoq::builder(config(dir.path()))
            .chunk_engine(Arc::new(FixedChunks))
            .router(Box::new(topology.into_matrix(Default::default()).unwrap()))
            .build()
            .unwrap();

        // The host's chunk engine cuts what the facade's stores keep.
        let mut store = stoq.open_store(&dir.path().join("host-store")).unwrap();
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let put = store.put_reader(&data[..], PutOptions::default()).unwrap();
        assert_eq!(put.chunks, 5, "20,000 bytes in 4 KiB pieces");

        // The host's router answers routes.
        let route = stoq
            .router()
            .read()
            .unwrap()
            .find_optimal_route("fra", "nyc", Objective::Latency)
            .unwrap();
        assert_eq!(route.path.first().map(String::as_str), Some("fra"));
        assert_eq!(route.path.last().map(String::as_str), Some("nyc"));

        // STOQ's own edge selection, shared with the host.
        for (id, lat, lon) in [("paris", 48.9, 2.3), ("tokyo", 35.7, 139.7)] {
            stoq.edge_network()
                .write()
                .unwrap()
                .register_edge(EdgeNode {
                    id: id.into(),
                    region: String::new(),
                    geo: GeoPoint::new(lat, lon),
                    load: 0.0,
                    healthy: true,
                })
                .unwrap();
        }
        let seoul = ClientLocation::Geo(GeoPoint::new(37.6, 127.0).unwrap());
        assert_eq!(
            stoq.edge_network()
                .read()
                .unwrap()
                .find_nearest(&seoul)
                .unwrap()
                .id,
            "tokyo"
        );

        // STOQ's transport fetches from a node the facade started.
        let node_dir = tempfile::tempdir().unwrap();
        let node_stoq = Stoq::builder(config(node_dir.path())).build().unwrap();
        let mut options = NodeOptions::new(StoqConfig::default());
        options.token = Some(AdminToken::from_text("facade-test-admin-token").unwrap());
        let node = node_stoq.start_node(options).await.unwrap();
        assert_eq!(node.role(), Role::Origin);
        let file = node_dir.path().join("f.bin");
        std::fs::write(&file, &data).unwrap();
        let conn = stoq
            .transport()
            .connect(
                SocketAddr::V6(node.local_addr()),
                &stoq::transport::PeerExpectation::Node(node.node_id()),
            )
            .await
            .unwrap();
        let report = client::publish(
            &conn,
            "facade-test-admin-token",
            &file,
            PutSettings::default(),
        )
        .await
        .unwrap();
        let id: Hash32 = report.id;
        let mut out = Vec::new();
        stoq.fetch(
            &[(node.node_id(), SocketAddr::V6(node.local_addr()))],
            &id,
            &mut out,
        )
        .await
        .unwrap();
        assert_eq!(out, data);

        // A bad configuration is refused by the builder, naming the field.
        let mut bad = config(dir.path());
        bad.edge.cache_bytes = 1;
        let err = Stoq::builder(bad).build().unwrap_err();
        assert!(err.to_string().contains("edge.cache_bytes"), "{err}");
    })
    .await
    .expect("bounded");
}

const TOKEN: &str = "facade-test-admin-token";

/// A node on [::1] with fast membership, started from `stoq` (so with what its host injected)
/// or, without one, on its own.
async fn node_from(
    stoq: Option<&Stoq>,
    dir: &std::path::Path,
    role: Role,
    geo: &str,
    seeds: &[&Node],
) -> Node {
    let mut c = config(dir);
    c.node.role = role;
    c.node.geo = Some(geo.into());
    c.node.probe_interval_ms = 200;
    c.node.suspect_after_ms = 600;
    let mut options = NodeOptions::new(c);
    options.token = Some(AdminToken::from_text(TOKEN).unwrap());
    options.seeds = seeds
        .iter()
        .map(|n| (n.node_id(), n.local_addr()))
        .collect();
    match stoq {
        // A facade starts its node with its own configuration, built by `facade` alike.
        Some(stoq) => stoq.start_node(options).await.unwrap(),
        None => Node::start(options).await.unwrap(),
    }
}

fn facade(dir: &std::path::Path, role: Role, geo: &str) -> stoq::StoqBuilder {
    let mut c = config(dir);
    c.node.role = role;
    c.node.geo = Some(geo.into());
    c.node.probe_interval_ms = 200;
    c.node.suspect_after_ms = 600;
    Stoq::builder(c)
}

async fn dial(node: &Node) -> StoqConnection {
    let transport = config(std::path::Path::new(".")).transport;
    let client = StoqEndpoint::client(transport, NodeIdentity::generate().unwrap()).unwrap();
    client
        .connect(
            SocketAddr::V6(node.local_addr()),
            &PeerExpectation::Node(node.node_id()),
        )
        .await
        .unwrap()
}

async fn converge(nodes: &[&Node]) {
    for node in nodes {
        assert!(
            node.membership()
                .wait_for(|p| p.len() == nodes.len() - 1, Duration::from_secs(20))
                .await,
            "membership did not converge"
        );
    }
}

async fn publish(node: &Node, data: &[u8]) -> Hash32 {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    client::publish(
        &dial(node).await,
        TOKEN,
        file.path(),
        PutSettings::default(),
    )
    .await
    .unwrap()
    .id
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .expect("test exceeded its time bound")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_from_stoq_publishes_with_the_host_chunk_engine() {
    bounded(async {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let (host_dir, own_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let stoq = facade(host_dir.path(), Role::Origin, "50,8")
            .chunk_engine(Arc::new(FixedChunks))
            .build()
            .unwrap();
        let hosted = node_from(Some(&stoq), host_dir.path(), Role::Origin, "50,8", &[]).await;
        let own = node_from(None, own_dir.path(), Role::Origin, "50,8", &[]).await;
        let (hosted_id, own_id) = (publish(&hosted, &data).await, publish(&own, &data).await);
        let hosted_manifest = client::fetch_manifest(&dial(&hosted).await, &hosted_id)
            .await
            .unwrap();
        let lengths: Vec<u32> = hosted_manifest.chunks.iter().map(|c| c.length).collect();
        assert_eq!(lengths.len(), data.len().div_ceil(PIECE), "{lengths:?}");
        assert!(lengths[..lengths.len() - 1]
            .iter()
            .all(|&l| l as usize == PIECE));
        // The node's own engine (FastCDC) cuts the same bytes elsewhere: the host decided.
        let own_manifest = client::fetch_manifest(&dial(&own).await, &own_id)
            .await
            .unwrap();
        assert_ne!(hosted_id, own_id);
        assert!(own_manifest
            .chunks
            .iter()
            .any(|c| c.length as usize != PIECE));
    })
    .await;
}

/// A host router that sends every route through one origin: the others cost far more.
struct Prefer(String);

impl Router for Prefer {
    fn find_optimal_route(
        &self,
        src: &str,
        dst: &str,
        objective: Objective,
    ) -> Result<Route, RoutingError> {
        Ok(Route {
            path: vec![src.to_owned(), dst.to_owned()],
            latency_ms: 1.0,
            bottleneck_mbps: 1000.0,
            cost: if dst == self.0 { 1.0 } else { 1000.0 },
            objective,
        })
    }
    fn alternative_routes(
        &self,
        src: &str,
        dst: &str,
        objective: Objective,
        _: usize,
    ) -> Result<Alternatives, RoutingError> {
        Ok(Alternatives {
            routes: vec![self.find_optimal_route(src, dst, objective)?],
            node_disjoint: 1,
        })
    }
    fn update_metrics(&mut self, _: MetricsUpdate) -> Result<(), RoutingError> {
        Ok(())
    }
    fn latency_ms(&self, _: &str, _: &str) -> Result<f64, RoutingError> {
        Ok(1.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_started_from_stoq_pulls_from_the_upstream_the_host_router_chooses() {
    bounded(async {
        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let a = node_from(None, dirs[0].path(), Role::Origin, "50,8", &[]).await;
        let b = node_from(None, dirs[1].path(), Role::Origin, "40,-74", &[&a]).await;
        let towards = |origin: &Node, dir: &std::path::Path| {
            facade(dir, Role::Edge, "45,0")
                .router(Box::new(Prefer(origin.node_id().to_string())))
                .build()
                .unwrap()
        };
        let (via_a, via_b) = (towards(&a, dirs[2].path()), towards(&b, dirs[3].path()));
        let edge_a = node_from(Some(&via_a), dirs[2].path(), Role::Edge, "45,0", &[&a]).await;
        let edge_b = node_from(Some(&via_b), dirs[3].path(), Role::Edge, "45,0", &[&a]).await;
        converge(&[&a, &b, &edge_a, &edge_b]).await;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 253) as u8).collect();
        let id = publish(&a, &data).await;
        assert_eq!(
            publish(&b, &data).await,
            id,
            "both origins hold the content"
        );
        let chunks = |n: &Node| n.metrics().requests_of("chunk");
        let mut out = Vec::new();
        client::fetch(&[dial(&edge_a).await], &id, &mut out)
            .await
            .unwrap();
        assert_eq!(out, data);
        let pulled = chunks(&a);
        assert!(pulled > 0, "edge A pulled from origin A");
        assert_eq!(chunks(&b), 0, "and nothing from origin B");
        out.clear();
        client::fetch(&[dial(&edge_b).await], &id, &mut out)
            .await
            .unwrap();
        assert_eq!(out, data);
        assert_eq!(chunks(&a), pulled, "edge B pulled nothing from origin A");
        assert_eq!(
            chunks(&b),
            pulled,
            "edge B pulled every chunk from origin B"
        );
    })
    .await;
}

/// A host edge selection that sends every client to one named edge while it is registered.
struct Always {
    edge: String,
    known: Vec<EdgeNode>,
}

impl EdgeNetwork for Always {
    fn register_edge(&mut self, edge: EdgeNode) -> Result<(), EdgeError> {
        self.known.retain(|e| e.id != edge.id);
        self.known.push(edge);
        Ok(())
    }
    fn remove_edge(&mut self, id: &str) -> bool {
        let before = self.known.len();
        self.known.retain(|e| e.id != id);
        before != self.known.len()
    }
    fn find_nearest(&self, _: &ClientLocation) -> Result<EdgeNode, EdgeError> {
        self.known
            .iter()
            .find(|e| e.id == self.edge)
            .cloned()
            .ok_or(EdgeError::NoEdge)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locate_on_a_node_started_from_stoq_sends_clients_where_the_host_says() {
    bounded(async {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let paris = node_from(None, dirs[1].path(), Role::Edge, "48.9,2.3", &[]).await;
        let stoq = facade(dirs[0].path(), Role::Origin, "50,8")
            .edge_network(Box::new(Always {
                edge: paris.node_id().to_string(),
                known: Vec::new(),
            }))
            .build()
            .unwrap();
        let origin = node_from(Some(&stoq), dirs[0].path(), Role::Origin, "50,8", &[&paris]).await;
        let tokyo = node_from(None, dirs[2].path(), Role::Edge, "35.7,139.7", &[&origin]).await;
        converge(&[&origin, &paris, &tokyo]).await;
        let seoul = Location::parse("geo:37.6,127.0").unwrap();
        // STOQ's own ranking (asked at the Tokyo edge) sends Seoul to Tokyo ...
        let own = client::locate(&dial(&tokyo).await, &seoul).await.unwrap();
        assert_eq!(own[0].id, tokyo.node_id());
        // ... the host's edge network, which the origin consults, sends it to Paris.
        let hosted = client::locate(&dial(&origin).await, &seoul).await.unwrap();
        assert_eq!(hosted[0].id, paris.node_id(), "{hosted:?}");
        assert_eq!(hosted.last().map(|s| s.role), Some(Role::Origin));
    })
    .await;
}
