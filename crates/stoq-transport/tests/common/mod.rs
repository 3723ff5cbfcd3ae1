//! Shared helpers for transport tests: real endpoints on [::1].

#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use stoq_transport::{
    NodeIdentity, PeerExpectation, StoqEndpoint, TransportConfig, TransportError,
};

/// Every test runs under this bound so a hang fails instead of blocking CI.
pub const TEST_LIMIT: Duration = Duration::from_secs(60);

pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(TEST_LIMIT, f)
        .await
        .expect("test exceeded its time bound")
}

pub fn local_config() -> TransportConfig {
    TransportConfig {
        listen: "[::1]:0".parse().unwrap(),
        ..TransportConfig::default()
    }
}

pub fn server(config: TransportConfig) -> StoqEndpoint {
    StoqEndpoint::bind(config, NodeIdentity::generate().unwrap()).unwrap()
}

pub fn client() -> StoqEndpoint {
    StoqEndpoint::client(local_config(), NodeIdentity::generate().unwrap()).unwrap()
}

pub fn expect(server: &StoqEndpoint) -> PeerExpectation {
    PeerExpectation::Node(server.node_id())
}

/// A fresh client connected to `server`, trusting exactly its node id.
pub async fn connect_to(server: &StoqEndpoint) -> stoq_transport::StoqConnection {
    client()
        .connect(server.local_addr().unwrap(), &expect(server))
        .await
        .unwrap()
}

/// A server that streams every request body straight back, then answers with the body's
/// BLAKE3 hash.
pub fn echo_server(config: TransportConfig) -> StoqEndpoint {
    let endpoint = server(config);
    endpoint.serve(|mut req| async move {
        let mut hasher = blake3::Hasher::new();
        while let Some(piece) = req.body.recv_data().await? {
            hasher.update(&piece);
            req.reply.send_data(piece).await?;
        }
        req.reply.send_end().await?;
        req.reply
            .send_response(Bytes::copy_from_slice(hasher.finalize().as_bytes()))
            .await?;
        req.reply.finish()
    });
    endpoint
}

/// Deterministic pseudo-random bytes (xorshift), so payloads are not trivially compressible.
pub fn payload(len: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

pub fn is_refused_with(err: &TransportError, code: stoq_transport::protocol::ErrorCode) -> bool {
    matches!(err, TransportError::Closed { code: c, .. } if *c == code)
}
