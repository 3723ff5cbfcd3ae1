//! What docs/PROTOCOL.md promises about streams and answers, checked against a real node on
//! [::1] with raw frames: empty streams, bodies without END, bodies where none is taken,
//! one-way streams, chunk indexes past the end and unknown shards.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use stoq::chunking::Hash32;
use stoq::client;
use stoq::protocol::{ErrorCode, PutSettings, Request};
use stoq::transport::{
    NodeIdentity, PeerExpectation, StoqConnection, StoqEndpoint, TransportConfig, TransportError,
};
use stoq::{AdminToken, Node, NodeOptions, StoqConfig};

const TOKEN: &str = "conformance-admin-token-0123456789";

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test exceeded its time bound")
}

async fn origin(dir: &std::path::Path) -> (Node, StoqConnection) {
    let mut config = StoqConfig::default();
    config.transport.listen = "[::1]:0".parse().unwrap();
    config.node.data_dir = dir.to_path_buf();
    let mut options = NodeOptions::new(config);
    options.token = Some(AdminToken::from_text(TOKEN).unwrap());
    let node = Node::start(options).await.unwrap();
    let transport = TransportConfig {
        listen: "[::1]:0".parse().unwrap(),
        ..TransportConfig::default()
    };
    let client = StoqEndpoint::client(transport, NodeIdentity::generate().unwrap()).unwrap();
    let conn = client
        .connect(
            SocketAddr::V6(node.local_addr()),
            &PeerExpectation::Node(node.node_id()),
        )
        .await
        .unwrap();
    (node, conn)
}

fn code_of(e: &TransportError) -> Option<ErrorCode> {
    match e {
        TransportError::Remote { code, .. } => Some(*code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_that_end_early_are_answered_with_protocol_violation() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (_node, conn) = origin(dir.path()).await;

        // An empty stream: no REQUEST frame at all.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.send_raw(Bytes::new()).await.unwrap();
        send.finish().unwrap();
        let err = recv.recv_response().await.unwrap_err();
        assert_eq!(code_of(&err), Some(ErrorCode::ProtocolViolation), "{err}");

        // ECHO whose body ends without END: what arrived is echoed, then the ERROR.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.send_request(Request::Echo.encode()).await.unwrap();
        send.send_data(Bytes::from_static(b"half a body"))
            .await
            .unwrap();
        send.finish().unwrap();
        let err = recv.recv_body(1 << 20).await.unwrap_err();
        assert_eq!(code_of(&err), Some(ErrorCode::ProtocolViolation), "{err}");
        assert!(err.to_string().contains("END"), "{err}");

        // A PUT whose body ends without END stores nothing.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let put = Request::Put {
            token: Request::admin_token(TOKEN),
            settings: PutSettings::default(),
        };
        send.send_request(put.encode()).await.unwrap();
        send.send_data(Bytes::from_static(b"never stored"))
            .await
            .unwrap();
        send.finish().unwrap();
        let err = recv.recv_response().await.unwrap_err();
        assert_eq!(code_of(&err), Some(ErrorCode::ProtocolViolation), "{err}");
        let status = client::status(&conn).await.unwrap();
        assert_eq!(status.store.map(|s| s.objects), Some(0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_without_a_body_ignore_what_follows_and_one_way_streams_are_stopped() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (node, conn) = origin(dir.path()).await;

        // PING followed by END (and a stray DATA frame): answered as a plain PING.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.send_request(Request::Ping.encode()).await.unwrap();
        send.send_data(Bytes::from_static(b"ignored"))
            .await
            .unwrap();
        send.send_end().await.unwrap();
        send.finish().unwrap();
        let answer = recv.recv_response().await.unwrap();
        assert_eq!(answer, node.node_id().to_string().as_bytes());

        // A one-way stream is stopped at once with BAD_REQUEST.
        let mut uni = conn.open_uni().await.unwrap();
        uni.send_message("anyone there?").await.unwrap();
        let stopped = uni.stopped().await.unwrap_err();
        assert_eq!(code_of(&stopped), Some(ErrorCode::BadRequest), "{stopped}");

        // The connection still serves requests.
        assert_eq!(
            client::ping(&conn).await.unwrap(),
            node.node_id().to_string()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_not_here_is_not_found() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let (_node, conn) = origin(dir.path()).await;
        let file = dir.path().join("f.bin");
        std::fs::write(&file, vec![7u8; 10_000]).unwrap();
        let put = client::publish(&conn, TOKEN, &file, PutSettings::default())
            .await
            .unwrap();
        let manifest = client::fetch_manifest(&conn, &put.id).await.unwrap();
        let past_the_end = Request::GetChunk {
            id: put.id,
            index: manifest.chunks.len() as u32,
            read_token: None,
        };
        let err = conn.request(past_the_end.encode()).await.unwrap_err();
        assert_eq!(code_of(&err), Some(ErrorCode::NotFound), "{err}");
        let unknown = Request::GetShard {
            shard: Hash32::of(b"no such shard"),
        };
        let err = conn.request(unknown.encode()).await.unwrap_err();
        assert_eq!(code_of(&err), Some(ErrorCode::NotFound), "{err}");
        let unknown_op = conn.request(vec![0x7f]).await.unwrap_err();
        assert_eq!(code_of(&unknown_op), Some(ErrorCode::BadRequest));
    })
    .await;
}
