//! The embedding facade: a host builds `Stoq`, gets STOQ's parts or injects its own.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stoq::chunking::{
    Chunk, ChunkEngine, ChunkProfile, ChunkSpan, ContentKind, FastCdcEngine, Hash32,
};
use stoq::edge::{ClientLocation, EdgeNode};
use stoq::node::membership::Role;
use stoq::node::token::AdminToken;
use stoq::node::NodeOptions;
use stoq::routing::{GeoPoint, Objective, Topology};
use stoq::store::PutOptions;
use stoq::{Stoq, StoqConfig};

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
        let report = stoq::node::client::publish(
            &conn,
            "facade-test-admin-token",
            &file,
            &PutOptions::default(),
        )
        .await
        .unwrap();
        let id: Hash32 = report["id"].as_str().unwrap().parse().unwrap();
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
