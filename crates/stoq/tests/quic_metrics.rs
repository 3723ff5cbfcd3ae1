//! Routing fed by a real QUIC connection's path statistics on [::1].

use stoq::node::link_sample;
use stoq::routing::{link_update, CostWeights, LinkSpec, NodeSpec, Objective, RoutingMatrix};
use stoq::transport::{NodeIdentity, PeerExpectation, StoqEndpoint, TransportConfig};
use stoq::{Node, NodeOptions, Role, StoqConfig};

#[tokio::test]
async fn the_matrix_learns_rtt_from_quic_path_stats() {
    let config = TransportConfig {
        listen: "[::1]:0".parse().unwrap(),
        ..TransportConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut node_config = StoqConfig {
        transport: config.clone(),
        ..StoqConfig::default()
    };
    node_config.node.data_dir = dir.path().to_path_buf();
    node_config.node.role = Role::Relay;
    let server = Node::start(NodeOptions::new(node_config)).await.unwrap();
    let client = StoqEndpoint::client(config, NodeIdentity::generate().unwrap()).unwrap();
    let conn = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        client.connect(
            std::net::SocketAddr::V6(server.local_addr()),
            &PeerExpectation::Node(server.node_id()),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    for _ in 0..5 {
        stoq::client::ping(&conn).await.unwrap();
    }
    let stats = conn.stats();

    let mut m = RoutingMatrix::new(CostWeights::default());
    for id in ["here", "there"] {
        m.add_node(NodeSpec {
            id: id.into(),
            region: String::new(),
            lat: None,
            lon: None,
            load: 0.0,
        })
        .unwrap();
    }
    // Configured as a slow link; the live connection says otherwise.
    m.add_link(LinkSpec {
        from: "here".into(),
        to: "there".into(),
        rtt_ms: 50.0,
        bandwidth_mbps: 1000.0,
        loss: 0.0,
    })
    .unwrap();
    for _ in 0..60 {
        m.update_metrics(link_update("here", "there", link_sample(&stats)))
            .unwrap();
    }
    let measured = stats.rtt.as_secs_f64() * 1e3;
    let learned = m
        .find_optimal_route("here", "there", Objective::Latency)
        .unwrap()
        .latency_ms;
    assert!(
        measured > 0.0 && measured < 50.0,
        "loopback rtt {measured} ms"
    );
    assert!(
        (learned - measured).abs() < 1.0,
        "learned {learned} ms, quic says {measured} ms"
    );
}
