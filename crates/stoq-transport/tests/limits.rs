//! What a peer can make a serving endpoint hold, and for how long: request size, request
//! buffers per connection, the stall deadline for requests and answers. Real QUIC on [::1].

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use stoq_transport::protocol::{retry_after, ErrorCode, FrameHeader, FrameKind};
use stoq_transport::{FramedRecv, FramedSend, StoqConnection, TransportConfig, TransportError};

/// A serving config with a short stall deadline, so tests wait little.
fn strict() -> TransportConfig {
    TransportConfig {
        stall_timeout_ms: 300,
        max_request_size: 4096,
        request_buffer_per_connection: 8192,
        ..local_config()
    }
}

/// Opens a stream and sends a REQUEST header announcing `len` bytes, then `sent` of them.
async fn partial_request(conn: &StoqConnection, len: u32, sent: usize) -> (FramedSend, FramedRecv) {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let header = FrameHeader {
        kind: FrameKind::Request,
        length: len,
    };
    send.send_raw(Bytes::copy_from_slice(&header.encode()))
        .await
        .unwrap();
    send.send_raw(payload(sent, 3)).await.unwrap();
    (send, recv)
}

fn remote_code(e: &TransportError) -> Option<ErrorCode> {
    match e {
        TransportError::Remote { code, .. } => Some(*code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_never_arrives_whole_times_out_and_frees_its_room() {
    bounded(async {
        let server = echo_server(strict());
        let conn = connect_to(&server).await;
        let started = Instant::now();
        let (_send, mut recv) = partial_request(&conn, 4000, 10).await;
        let err = recv.recv_response().await.unwrap_err();
        assert_eq!(remote_code(&err), Some(ErrorCode::Timeout), "{err}");
        assert!(err.to_string().contains("300 ms"), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(server.counters().stalled_streams, 1);
        // The room it held is back: a request of the same size is answered.
        let echoed = conn.request(payload(4000, 1)).await;
        assert!(
            echoed.is_err(),
            "echo answers with a body, not a bare response"
        );
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.send_request(payload(4000, 2)).await.unwrap();
        send.send_end().await.unwrap();
        send.finish().unwrap();
        assert!(recv.recv_data().await.unwrap().is_none());
        assert_eq!(recv.recv_response().await.unwrap().len(), 32);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_connection_budget_are_busy_until_room_returns() {
    bounded(async {
        let server = echo_server(TransportConfig {
            stall_timeout_ms: 20_000,
            ..strict()
        });
        let conn = connect_to(&server).await;
        // Three unfinished 4000-byte requests: two fit the connection's 8192 bytes, whichever
        // comes third is answered BUSY at once.
        let mut streams = Vec::new();
        for _ in 0..3 {
            streams.push(partial_request(&conn, 4000, 1).await);
        }
        let (busy, err) = {
            let [a, b, c] = &mut streams[..] else {
                unreachable!()
            };
            tokio::select! {
                e = a.1.recv_response() => (0, e.unwrap_err()),
                e = b.1.recv_response() => (1, e.unwrap_err()),
                e = c.1.recv_response() => (2, e.unwrap_err()),
            }
        };
        assert_eq!(remote_code(&err), Some(ErrorCode::Busy), "{err}");
        let reason = err.to_string();
        assert!(
            reason.contains("this connection's request buffers"),
            "{reason}"
        );
        assert!(retry_after(&reason[reason.find("busy:").unwrap()..]).is_some());
        assert_eq!(server.counters().busy_requests, 1);
        // Another connection has its own budget.
        let other = connect_to(&server).await;
        let (mut send, mut recv) = other.open_bi().await.unwrap();
        send.send_request(payload(4000, 4)).await.unwrap();
        send.send_end().await.unwrap();
        send.finish().unwrap();
        assert!(recv.recv_data().await.unwrap().is_none());
        // Finishing the held requests answers them and gives their room back.
        for (i, (send, reply)) in streams.iter_mut().enumerate() {
            if i == busy {
                continue;
            }
            send.send_raw(payload(3999, 5)).await.unwrap();
            send.send_end().await.unwrap();
            send.finish().unwrap();
            assert!(reply.recv_data().await.unwrap().is_none());
        }
        for seed in 0..2 {
            let (mut send, mut recv) = conn.open_bi().await.unwrap();
            send.send_request(payload(4000, seed)).await.unwrap();
            send.send_end().await.unwrap();
            send.finish().unwrap();
            assert!(recv.recv_data().await.unwrap().is_none());
        }
    })
    .await;
}

#[tokio::test]
async fn a_request_over_max_request_size_is_refused_from_its_header() {
    bounded(async {
        let server = echo_server(strict());
        let conn = connect_to(&server).await;
        let (_send, mut recv) = partial_request(&conn, 4097, 0).await;
        let err = recv.recv_response().await.unwrap_err();
        assert_eq!(remote_code(&err), Some(ErrorCode::FrameTooLarge), "{err}");
        assert!(err.to_string().contains("4097"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_the_peer_never_takes_is_reset_at_the_stall_deadline() {
    bounded(async {
        let server = echo_server(strict());
        // A client whose windows are as small as QUIC allows, that never reads.
        let client = stoq_transport::StoqEndpoint::client(
            TransportConfig {
                stream_receive_window: 16 * 1024,
                connection_receive_window: 16 * 1024,
                accepted_receive_window: 16 * 1024,
                ..local_config()
            },
            stoq_transport::NodeIdentity::generate().unwrap(),
        )
        .unwrap();
        let conn = client
            .connect(server.local_addr().unwrap(), &expect(&server))
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.send_request("echo").await.unwrap();
        let sender = tokio::spawn(async move {
            // The echo stops reading once its answer blocks; this send may block or fail.
            let _ = send.send_data(payload(1 << 20, 8)).await;
            send
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.counters().stalled_streams == 0 {
            assert!(
                Instant::now() < deadline,
                "the stalled answer was never reset"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // What arrived before the reset is readable; then the reset's code.
        let outcome = async {
            while recv.recv_data().await?.is_some() {}
            Ok::<(), TransportError>(())
        }
        .await;
        let err = outcome.unwrap_err();
        assert_eq!(remote_code(&err), Some(ErrorCode::Timeout), "{err}");
        sender.abort();
    })
    .await;
}

#[test]
fn request_limits_are_validated() {
    let bad = [
        TransportConfig {
            max_request_size: 100,
            ..local_config()
        },
        TransportConfig {
            request_buffer_per_connection: 1024,
            ..local_config()
        },
        TransportConfig {
            request_buffer_total: 1024,
            ..local_config()
        },
        TransportConfig {
            stall_timeout_ms: 0,
            ..local_config()
        },
        TransportConfig {
            accepted_receive_window: 64 << 20,
            ..local_config()
        },
    ];
    let fields = [
        "max_request_size",
        "request_buffer_per_connection",
        "request_buffer_total",
        "stall_timeout_ms",
        "accepted_receive_window",
    ];
    for (config, field) in bad.iter().zip(fields) {
        let err = config.validate("transport").unwrap_err().to_string();
        assert!(
            err.contains(&format!("transport.{field}")),
            "{field}: {err}"
        );
    }
    assert!(local_config().validate("transport").is_ok());
}
