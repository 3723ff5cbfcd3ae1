//! Routing fed by a real QUIC connection's path statistics on [::1].

use stoq::routing::{
    link_update_from_quic, CostWeights, LinkSpec, NodeSpec, Objective, RoutingMatrix,
};
use stoq::transport::{NodeIdentity, PeerExpectation, StoqEndpoint, TransportConfig};

#[tokio::test]
async fn the_matrix_learns_rtt_from_quic_path_stats() {
    let config = TransportConfig {
        listen: "[::1]:0".parse().unwrap(),
        ..TransportConfig::default()
    };
    let server = StoqEndpoint::bind(config.clone(), NodeIdentity::generate().unwrap()).unwrap();
    let id = server.node_id().to_string();
    let service = stoq::node::NodeService::new(id, None);
    server.serve(move |req| service.clone().handle(req));
    let client = StoqEndpoint::client(config, NodeIdentity::generate().unwrap()).unwrap();
    let conn = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        client.connect(
            server.local_addr().unwrap(),
            &PeerExpectation::Node(server.node_id()),
        ),
    )
    .await
    .unwrap()
    .unwrap();
    for _ in 0..5 {
        stoq::node::ping(&conn).await.unwrap();
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
        m.update_metrics(link_update_from_quic("here", "there", &stats))
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
