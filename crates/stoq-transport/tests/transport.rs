//! The transport over real QUIC on [::1]: every behaviour issue #2 names.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use stoq_transport::protocol::{ErrorCode, FrameHeader, FrameKind};
use stoq_transport::{
    ConnectionPool, NodeIdentity, PeerExpectation, PoolConfig, StoqEndpoint, TlsConfig,
    TransportConfig, TransportError,
};
use tokio::sync::{oneshot, Notify};

/// Sends `data` as a request body, receives the echo, and checks both the bytes and the
/// server's hash, holding at most one piece in memory on each side.
async fn echo_round_trip(conn: &stoq_transport::StoqConnection, data: Bytes) {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let expected = blake3::hash(&data);
    let len = data.len();
    let sender = tokio::spawn(async move {
        send.send_request("echo").await.unwrap();
        send.send_data(data).await.unwrap();
        send.send_end().await.unwrap();
        send.finish().unwrap();
    });
    let mut hasher = blake3::Hasher::new();
    let mut received = 0usize;
    while let Some(piece) = recv.recv_data().await.unwrap() {
        received += piece.len();
        hasher.update(&piece);
    }
    let server_hash = recv.recv_response().await.unwrap();
    sender.await.unwrap();
    assert_eq!(received, len);
    assert_eq!(hasher.finalize(), expected, "echoed bytes differ");
    assert_eq!(
        &server_hash[..],
        expected.as_bytes(),
        "server saw different bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_of_1_byte_1_mib_and_256_mib_round_trip() {
    bounded(async {
        let server = echo_server(local_config());
        let conn = connect_to(&server).await;
        for (len, seed) in [(1usize, 1u64), (1 << 20, 2), (256 << 20, 3)] {
            echo_round_trip(&conn, payload(len, seed)).await;
        }
        let stats = conn.stats();
        assert!(
            stats.bytes_sent > 256 << 20,
            "stats count the bytes sent: {stats:?}"
        );
        assert!(stats.bytes_received > 256 << 20);
        assert!(stats.rtt > Duration::ZERO && stats.rtt < Duration::from_secs(1));
    })
    .await;
}

#[tokio::test]
async fn ipv4_is_refused_everywhere() {
    bounded(async {
        let config = TransportConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..TransportConfig::default()
        };
        let err = StoqEndpoint::bind(config, NodeIdentity::generate().unwrap()).unwrap_err();
        assert!(err.to_string().contains("IPv6-only"), "{err}");

        let server = echo_server(local_config());
        let client = client();
        for addr in ["127.0.0.1:4433", "[::ffff:127.0.0.1]:4433"] {
            let err = client
                .connect(addr.parse().unwrap(), &expect(&server))
                .await
                .unwrap_err();
            assert!(matches!(err, TransportError::Ipv4Refused { .. }), "{err}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_peer_offering_another_alpn_is_refused() {
    bounded(async {
        let server = echo_server(local_config());
        let addr = server.local_addr().unwrap();
        let err = client()
            .connect_with_alpn(addr, &expect(&server), b"h3")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("known protocol"), "{err}");
        // The same client with the right ALPN gets in: the refusal was about ALPN alone.
        let conn = client().connect(addr, &expect(&server)).await.unwrap();
        echo_round_trip(&conn, payload(5, 1)).await;
        assert_eq!(server.counters().accepted, 1);
    })
    .await;
}

#[tokio::test]
async fn a_pinned_node_id_mismatch_fails_the_handshake() {
    bounded(async {
        let server = echo_server(local_config());
        let stranger = NodeIdentity::generate().unwrap().node_id();
        let err = client()
            .connect(
                server.local_addr().unwrap(),
                &PeerExpectation::Node(stranger),
            )
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("node id mismatch"), "{text}");
        assert!(
            text.contains(&stranger.to_string()),
            "names the expected id: {text}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_past_the_limit_is_refused_and_the_first_ones_keep_working() {
    bounded(async {
        const LIMIT: u32 = 3;
        let server = echo_server(TransportConfig {
            max_connections: Some(LIMIT),
            ..local_config()
        });
        let addr = server.local_addr().unwrap();
        let client = client();
        let mut admitted = Vec::new();
        for _ in 0..LIMIT {
            let conn = client.connect(addr, &expect(&server)).await.unwrap();
            echo_round_trip(&conn, payload(1000, 9)).await;
            admitted.push(conn);
        }
        let extra = client.connect(addr, &expect(&server)).await.unwrap();
        let why = extra.closed().await;
        assert!(is_refused_with(&why, ErrorCode::ConnectionLimit), "{why}");
        assert!(why.to_string().contains("limit of 3"), "{why}");
        for conn in &admitted {
            assert!(!conn.is_closed());
            echo_round_trip(conn, payload(64 * 1024, 10)).await;
        }
        assert_eq!(server.counters().refused_limit, 1);

        // A slot frees when a connection closes, and the next peer gets it.
        admitted.pop().unwrap().close(ErrorCode::NoError, "done");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let conn = client.connect(addr, &expect(&server)).await.unwrap();
            match conn.request("x").await {
                Err(e) if is_refused_with(&e, ErrorCode::ConnectionLimit) => {
                    assert!(tokio::time::Instant::now() < deadline, "slot never freed");
                    tokio::task::yield_now().await;
                }
                _ => break,
            }
        }
    })
    .await;
}

#[tokio::test]
async fn an_oversized_frame_is_refused_from_its_header_alone() {
    bounded(async {
        let server = echo_server(local_config());
        let conn = connect_to(&server).await;
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        // Announce an 8 MiB request (the limit is 1 MiB) and send none of it: the server must
        // answer from the header, neither waiting for nor allocating the payload.
        let header = FrameHeader {
            kind: FrameKind::Request,
            length: 8 << 20,
        };
        send.send_raw(Bytes::copy_from_slice(&header.encode()))
            .await
            .unwrap();
        let err = recv.recv_response().await.unwrap_err();
        match err {
            TransportError::Remote { code, reason } => {
                assert_eq!(code, ErrorCode::FrameTooLarge);
                assert!(reason.contains("8388608"), "{reason}");
            }
            other => panic!("expected an ERROR frame, got {other}"),
        }
        // The connection survives a bad stream.
        echo_round_trip(&conn, payload(10, 1)).await;
    })
    .await;
}

#[tokio::test]
async fn an_oversized_response_is_refused_by_the_client_too() {
    bounded(async {
        let server = server(local_config());
        server.serve(|mut req| async move {
            req.reply.send_response(vec![7u8; 2 << 20]).await?;
            req.reply.finish()
        });
        let conn = connect_to(&server).await;
        let err = conn.request("big please").await.unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::Protocol(
                    stoq_transport::protocol::ProtocolError::FrameTooLarge { .. }
                )
            ),
            "{err}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_completes_in_flight_streams() {
    bounded(async {
        let server = server(local_config());
        let (started_tx, started_rx) = oneshot::channel();
        let started_tx = Arc::new(std::sync::Mutex::new(Some(started_tx)));
        server.serve(move |mut req| {
            let started_tx = started_tx.clone();
            async move {
                if let Some(tx) = started_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                let mut hasher = blake3::Hasher::new();
                while let Some(piece) = req.body.recv_data().await? {
                    hasher.update(&piece);
                }
                req.reply
                    .send_response(Bytes::copy_from_slice(hasher.finalize().as_bytes()))
                    .await?;
                req.reply.finish()
            }
        });
        let addr = server.local_addr().unwrap();
        let client = client();
        let conn = client.connect(addr, &expect(&server)).await.unwrap();
        let data = payload(32 << 20, 5);
        let expected = blake3::hash(&data);
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.send_request("upload").await.unwrap();
        let upload = tokio::spawn(async move {
            send.send_data(data).await.unwrap();
            send.send_end().await.unwrap();
            send.finish().unwrap();
            recv.recv_response().await
        });
        started_rx.await.unwrap();
        let report = server.shutdown(Duration::from_secs(30)).await;
        assert!(report.drained, "{report:?}");
        assert_eq!(report.abandoned, 0);
        let hash = upload.await.unwrap().expect("in-flight upload completed");
        assert_eq!(&hash[..], expected.as_bytes());
        // After shutdown nobody new gets in (the closed endpoint no longer answers, so a client
        // with a short handshake timeout gives up quickly).
        let impatient = StoqEndpoint::client(
            TransportConfig {
                idle_timeout_ms: 500,
                keep_alive_interval_ms: None,
                ..local_config()
            },
            NodeIdentity::generate().unwrap(),
        )
        .unwrap();
        assert!(impatient.connect(addr, &expect(&server)).await.is_err());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_streams_that_outlive_the_deadline() {
    bounded(async {
        let server = server(local_config());
        let release = Arc::new(Notify::new());
        let held = release.clone();
        let (started_tx, started_rx) = oneshot::channel();
        let started_tx = Arc::new(std::sync::Mutex::new(Some(started_tx)));
        server.serve(move |mut req| {
            let held = held.clone();
            let started_tx = started_tx.clone();
            async move {
                if let Some(tx) = started_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                held.notified().await;
                req.reply.send_response("late").await?;
                req.reply.finish()
            }
        });
        let conn = connect_to(&server).await;
        let pending = tokio::spawn(async move { conn.request("wait").await });
        started_rx.await.unwrap();
        let asked = std::time::Instant::now();
        let report = server.shutdown(Duration::from_millis(200)).await;
        assert!(!report.drained);
        // It returns within its deadline (plus scheduling slack), not a second after it.
        let took = asked.elapsed();
        assert!(took < Duration::from_millis(500), "shutdown took {took:?}");
        let err = pending.await.unwrap().unwrap_err();
        assert!(is_refused_with(&err, ErrorCode::ShuttingDown), "{err}");
        release.notify_waiters();
    })
    .await;
}

/// A server config that requires client certificates and pins exactly `trusted`.
fn mutual_tls_trusting(trusted: &NodeIdentity) -> TransportConfig {
    TransportConfig {
        tls: TlsConfig {
            mutual: true,
            trusted_peers: vec![trusted.node_id()],
            ..TlsConfig::default()
        },
        ..local_config()
    }
}

#[tokio::test]
async fn mutual_tls_admits_pinned_clients_and_refuses_others() {
    bounded(async {
        let trusted = NodeIdentity::generate().unwrap();
        let server = echo_server(mutual_tls_trusting(&trusted));
        let addr = server.local_addr().unwrap();
        let good = StoqEndpoint::client(local_config(), trusted.clone()).unwrap();
        let conn = good.connect(addr, &expect(&server)).await.unwrap();
        echo_round_trip(&conn, payload(100, 2)).await;
        assert_eq!(conn.peer_node_id(), Some(server.node_id()));

        let stranger = client();
        let result = async {
            let conn = stranger.connect(addr, &expect(&server)).await?;
            conn.request("let me in").await
        }
        .await;
        assert!(result.is_err(), "an unpinned client must be refused");
    })
    .await;
}

#[tokio::test]
async fn without_mutual_tls_any_client_is_admitted_and_its_proven_id_is_known() {
    bounded(async {
        let server = server(local_config());
        server.serve(|mut req| async move {
            let who = req
                .conn
                .peer_node_id()
                .map(|id| id.to_string())
                .unwrap_or_default();
            req.reply.send_response(who).await?;
            req.reply.finish()
        });
        let me = NodeIdentity::generate().unwrap();
        let client = StoqEndpoint::client(local_config(), me.clone()).unwrap();
        let conn = client
            .connect(server.local_addr().unwrap(), &expect(&server))
            .await
            .unwrap();
        let answer = conn.request("who am i").await.unwrap();
        assert_eq!(String::from_utf8_lossy(&answer), me.node_id().to_string());
    })
    .await;
}

#[tokio::test]
async fn the_server_learns_a_mutual_tls_clients_node_id() {
    bounded(async {
        let trusted = NodeIdentity::generate().unwrap();
        let server = server(mutual_tls_trusting(&trusted));
        server.serve(|mut req| async move {
            let who = req
                .conn
                .peer_node_id()
                .map(|id| id.to_string())
                .unwrap_or_default();
            req.reply.send_response(who).await?;
            req.reply.finish()
        });
        let client = StoqEndpoint::client(local_config(), trusted.clone()).unwrap();
        let conn = client
            .connect(server.local_addr().unwrap(), &expect(&server))
            .await
            .unwrap();
        let answer = conn.request("who am i").await.unwrap();
        assert_eq!(
            String::from_utf8_lossy(&answer),
            trusted.node_id().to_string()
        );
    })
    .await;
}

fn write(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test]
async fn a_ca_issued_certificate_is_checked_by_name() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let node_key = rcgen::KeyPair::generate().unwrap();
        let node_cert = rcgen::CertificateParams::new(vec!["edge1.stoq.test".to_owned()])
            .unwrap()
            .signed_by(&node_key, &ca, &ca_key)
            .unwrap();
        write(&dir.path().join("ca.pem"), &ca.pem());
        write(&dir.path().join("node.pem"), &node_cert.pem());
        write(&dir.path().join("node.key"), &node_key.serialize_pem());

        let identity = NodeIdentity::from_pem_files(
            &dir.path().join("node.pem"),
            &dir.path().join("node.key"),
        )
        .unwrap();
        let server = {
            let endpoint = StoqEndpoint::bind(local_config(), identity).unwrap();
            endpoint.serve(|mut req| async move {
                req.reply.send_response(req.payload).await?;
                req.reply.finish()
            });
            endpoint
        };
        let addr = server.local_addr().unwrap();
        let trusting = StoqEndpoint::client(
            TransportConfig {
                tls: TlsConfig {
                    ca_bundle: Some(dir.path().join("ca.pem")),
                    ..TlsConfig::default()
                },
                ..local_config()
            },
            NodeIdentity::generate().unwrap(),
        )
        .unwrap();
        let conn = trusting
            .connect(addr, &PeerExpectation::Name("edge1.stoq.test".into()))
            .await
            .unwrap();
        assert_eq!(&conn.request("ok").await.unwrap()[..], b"ok");

        // The right CA but the wrong name is refused.
        let err = trusting
            .connect(addr, &PeerExpectation::Name("edge2.stoq.test".into()))
            .await
            .unwrap_err();
        assert!(
            err.to_string().to_lowercase().contains("certificate"),
            "{err}"
        );

        // A self-signed node is refused under CA trust.
        let other = echo_server(local_config());
        assert!(trusting
            .connect(
                other.local_addr().unwrap(),
                &PeerExpectation::Name("stoq.node".into())
            )
            .await
            .is_err());
    })
    .await;
}

#[tokio::test]
async fn datagrams_and_unidirectional_messages_arrive() {
    bounded(async {
        let server = server(local_config());
        let client = client();
        let addr = server.local_addr().unwrap();
        let pinned = expect(&server);
        let (conn, accepted) = tokio::join!(client.connect(addr, &pinned), server.accept());
        let conn = conn.unwrap();
        let accepted = accepted.unwrap();

        let mut uni = conn.open_uni().await.unwrap();
        uni.send_message("gossip").await.unwrap();
        uni.finish().unwrap();
        let mut incoming = accepted.accept_uni().await.unwrap();
        assert_eq!(&incoming.recv_message().await.unwrap()[..], b"gossip");

        assert!(conn.max_datagram_size().unwrap() >= 1000);
        conn.send_datagram(Bytes::from_static(b"probe")).unwrap();
        assert_eq!(&accepted.read_datagram().await.unwrap()[..], b"probe");
    })
    .await;
}

#[tokio::test]
async fn the_pool_reuses_connections_and_respects_its_bounds() {
    bounded(async {
        let servers: Vec<_> = (0..3).map(|_| echo_server(local_config())).collect();
        let client = client();
        let pool = ConnectionPool::new(
            client.clone(),
            &PoolConfig {
                max_size: Some(2),
                idle_timeout_ms: 60_000,
            },
        );
        let addr = |i: usize| servers[i].local_addr().unwrap();
        let a1 = pool.get(addr(0), &expect(&servers[0])).await.unwrap();
        let a2 = pool.get(addr(0), &expect(&servers[0])).await.unwrap();
        assert_eq!(a1.stable_id(), a2.stable_id(), "same peer, same connection");
        pool.get(addr(1), &expect(&servers[1])).await.unwrap();
        assert_eq!(pool.len().await, 2);
        pool.get(addr(2), &expect(&servers[2])).await.unwrap();
        assert_eq!(pool.len().await, 2, "the size bound holds");
        // Peer 0 was least recently used and was dropped; asking again dials anew.
        let a3 = pool.get(addr(0), &expect(&servers[0])).await.unwrap();
        assert_ne!(a1.stable_id(), a3.stable_id());

        // A closed connection is replaced, not handed out.
        a3.close(ErrorCode::NoError, "bye");
        let a4 = pool.get(addr(0), &expect(&servers[0])).await.unwrap();
        assert!(!a4.is_closed());
        echo_round_trip(&a4, payload(10, 3)).await;

        let idle = ConnectionPool::new(
            client,
            &PoolConfig {
                max_size: None,
                idle_timeout_ms: 1,
            },
        );
        idle.get(addr(1), &expect(&servers[1])).await.unwrap();
        let until = tokio::time::Instant::now() + Duration::from_millis(5);
        while tokio::time::Instant::now() < until {
            tokio::task::yield_now().await;
        }
        assert_eq!(idle.evict_idle().await, 1);
        assert!(idle.is_empty().await);
    })
    .await;
}

#[tokio::test]
async fn a_limit_applies_by_default_and_none_means_unlimited() {
    bounded(async {
        assert_eq!(
            TransportConfig::default().max_connections,
            Some(stoq_transport::DEFAULT_MAX_CONNECTIONS)
        );
        let server = echo_server(TransportConfig {
            max_connections: None,
            ..local_config()
        });
        let client = client();
        let mut conns = Vec::new();
        for _ in 0..40 {
            conns.push(
                client
                    .connect(server.local_addr().unwrap(), &expect(&server))
                    .await
                    .unwrap(),
            );
        }
        for conn in &conns {
            echo_round_trip(conn, payload(100, 4)).await;
        }
        assert_eq!(server.counters().refused_limit, 0);
        assert_eq!(server.counters().accepted, 40);
    })
    .await;
}

#[tokio::test]
async fn the_idle_timeout_closes_a_silent_connection_and_keep_alives_prevent_it() {
    // (The dialling side's keep-alives are what hold a connection: the node's own are off.)
    bounded(async {
        let quiet = TransportConfig {
            idle_timeout_ms: 300,
            keep_alive_interval_ms: None,
            ..local_config()
        };
        // A node configured with keep-alives sends none to the connections peers open: a
        // silent client's connection still ends at the idle timeout.
        let server = echo_server(TransportConfig {
            keep_alive_interval_ms: Some(50),
            ..quiet.clone()
        });
        let silent =
            StoqEndpoint::client(quiet.clone(), NodeIdentity::generate().unwrap()).unwrap();
        let conn = silent
            .connect(server.local_addr().unwrap(), &expect(&server))
            .await
            .unwrap();
        let started = tokio::time::Instant::now();
        let why = conn.closed().await;
        assert!(
            matches!(
                why,
                TransportError::Connection(quinn::ConnectionError::TimedOut)
            ),
            "{why}"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "closed too early"
        );

        let chatty = StoqEndpoint::client(
            TransportConfig {
                keep_alive_interval_ms: Some(50),
                ..quiet
            },
            NodeIdentity::generate().unwrap(),
        )
        .unwrap();
        let conn = chatty
            .connect(server.local_addr().unwrap(), &expect(&server))
            .await
            .unwrap();
        // Outlive three idle timeouts: only keep-alives can hold it open.
        let outlived = tokio::time::timeout(Duration::from_millis(1000), conn.closed()).await;
        assert!(
            outlived.is_err(),
            "keep-alives did not keep the connection open"
        );
        echo_round_trip(&conn, payload(100, 6)).await;
    })
    .await;
}

#[tokio::test]
async fn on_loopback_one_probe_takes_packets_to_max_mtu() {
    bounded(async {
        let config = local_config();
        let server = echo_server(config.clone());
        let conn = connect_to(&server).await;
        echo_round_trip(&conn, payload(1 << 20, 9)).await;
        // Discovery runs after the handshake; wait until it is over (bounded by `bounded`).
        while conn.stats().mtu < config.max_mtu {
            echo_round_trip(&conn, payload(1 << 16, 10)).await;
        }
        let stats = conn.stats();
        assert_eq!(stats.mtu, config.max_mtu);
        // A binary search from 1200 to 6452 would have sent about ten.
        assert_eq!(stats.mtu_probes_sent, 1, "{stats:?}");
    })
    .await;
}

/// On loopback a connection starts with ten packets' worth of congestion window at the
/// path's packet size, so a first answer of a few packets never waits behind the one MTU probe
/// for the peer's delayed ACK (it did, 25 ms, in about half of `stoq get`s).
#[tokio::test]
async fn on_loopback_the_first_window_holds_ten_packets_of_max_mtu() {
    bounded(async {
        let config = local_config();
        let server = echo_server(config.clone());
        let conn = connect_to(&server).await;
        let stats = conn.stats();
        assert!(
            stats.cwnd >= 10 * u64::from(config.max_mtu),
            "quinn's default starts at 12,000 bytes: {stats:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_file_body_streams_from_a_reader() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("body.bin");
        let data = payload(3 * (1 << 20) + 12345, 8);
        std::fs::write(&path, &data).unwrap();
        let server = echo_server(local_config());
        let conn = connect_to(&server).await;
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut file = tokio::fs::File::open(&path).await.unwrap();
        let sender = tokio::spawn(async move {
            send.send_request("echo").await.unwrap();
            let sent = send.send_data_from(&mut file).await.unwrap();
            send.send_end().await.unwrap();
            send.finish().unwrap();
            sent
        });
        let echoed = recv.recv_body(16 << 20).await.unwrap();
        let hash = recv.recv_response().await.unwrap();
        assert_eq!(sender.await.unwrap(), data.len() as u64);
        assert_eq!(echoed, data);
        assert_eq!(&hash[..], blake3::hash(&data).as_bytes());
    })
    .await;
}

#[tokio::test]
async fn a_body_over_the_callers_limit_is_refused() {
    bounded(async {
        let server = echo_server(local_config());
        let conn = connect_to(&server).await;
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.send_request("echo").await.unwrap();
        send.send_data(payload(1 << 20, 1)).await.unwrap();
        send.send_end().await.unwrap();
        send.finish().unwrap();
        let err = recv.recv_body(64 * 1024).await.unwrap_err();
        assert!(matches!(err, TransportError::Protocol(_)), "{err}");
    })
    .await;
}

#[tokio::test]
async fn dropping_an_unfinished_sender_resets_the_stream() {
    bounded(async {
        let server = server(local_config());
        let client = client();
        let addr = server.local_addr().unwrap();
        let pinned = expect(&server);
        let (conn, accepted) = tokio::join!(client.connect(addr, &pinned), server.accept());
        let (conn, accepted) = (conn.unwrap(), accepted.unwrap());
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.send_request("half").await.unwrap();
        send.send_data(payload(1000, 2)).await.unwrap();
        drop(send); // never finished: a truncated body must not look complete
        let (_reply, mut body) = accepted.accept_bi().await.unwrap().unwrap();
        // A reset may overtake the data, so the error can come at any frame; what must never
        // come is a clean END.
        let outcome = async {
            body.recv_request().await?;
            while body.recv_data().await?.is_some() {}
            Ok::<(), TransportError>(())
        }
        .await;
        match outcome {
            Err(TransportError::Remote { code, .. }) => assert_eq!(code, ErrorCode::Internal),
            other => panic!("expected a reset with INTERNAL, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sockets_on_one_port_serve_every_peer_and_still_dial() {
    bounded(async {
        let server = echo_server(TransportConfig {
            endpoints: 3,
            ..local_config()
        });
        assert_eq!(server.listeners(), 3);
        let addr = server.local_addr().unwrap();
        // Peers on many source ports: the kernel spreads them over the three sockets, and
        // every one of them is served (a packet landing on the wrong socket would fail it).
        let mut peers = Vec::new();
        for i in 0..24u64 {
            let client = client();
            let conn = client.connect(addr, &expect(&server)).await.unwrap();
            echo_round_trip(&conn, payload(200_000, i)).await;
            peers.push((client, conn));
        }
        assert_eq!(server.counters().accepted, 24);
        // The listening endpoint dials out too, from a socket of its own.
        let other = echo_server(local_config());
        let out = server
            .connect(other.local_addr().unwrap(), &expect(&other))
            .await
            .unwrap();
        echo_round_trip(&out, payload(1 << 20, 99)).await;
        let report = server.shutdown(Duration::from_secs(1)).await;
        assert!(report.drained);
    })
    .await;
}

/// A client that hangs up (as every command does before it exits) tells the node at once: the
/// node's connection ends on the close, not at its idle timeout 30 s later. The test runs on
/// one thread, as client commands do.
#[tokio::test]
async fn a_client_that_hangs_up_closes_its_connections_at_the_node_at_once() {
    bounded(async {
        let server = echo_server(local_config());
        let client = client();
        let conn = client
            .connect(server.local_addr().unwrap(), &expect(&server))
            .await
            .unwrap();
        echo_round_trip(&conn, payload(1000, 11)).await;
        assert_eq!(server.counters().open, 1);
        client.hang_up().await;
        assert!(conn.is_closed(), "the client's side is closed");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while server.counters().open > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the node never heard the close"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}
