//! docs/EMBEDDING.md's example: the same request/response exchange written on raw quinn and on
//! `stoq-transport`, side by side, run one after the other on [::1]. `cargo run -p
//! stoq-transport --example from_quinn`.

use std::error::Error;
use std::sync::Arc;

use bytes::Bytes;
use stoq_transport::{NodeIdentity, PeerExpectation, StoqEndpoint, TransportConfig};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Largest answer either side reads (raw quinn makes you pick one; STOQ enforces its own
/// `max_frame_size` and `max_request_size`).
const MAX_READ: usize = 64 * 1024;

/// Before: raw quinn. A certificate to make and trust by hand, one stream per request, and the
/// reading limits, timeouts and IPv4/IPv6 policy left to the program.
async fn with_quinn(request: &[u8]) -> Result<Bytes> {
    // 1. TLS by hand: a self-signed certificate for "localhost", trusted by the client.
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let cert_der = rustls::pki_types::CertificateDer::from(cert.cert);
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
    let server_config = quinn::ServerConfig::with_single_cert(vec![cert_der.clone()], key.into())?;
    let server = quinn::Endpoint::server(server_config, "[::1]:0".parse()?)?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der)?;
    let mut client = quinn::Endpoint::client("[::]:0".parse()?)?;
    client.set_default_client_config(quinn::ClientConfig::with_root_certificates(Arc::new(
        roots,
    ))?);

    // 2. The server: accept, then one bidirectional stream per request; echo it.
    let accept = server.clone();
    let serving = tokio::spawn(async move {
        let conn = accept.accept().await.ok_or("no connection")?.await?;
        let (mut send, mut recv) = conn.accept_bi().await?;
        let request = recv.read_to_end(MAX_READ).await?;
        send.write_all(&request).await?;
        send.finish()?;
        conn.closed().await;
        Ok::<_, Box<dyn Error + Send + Sync>>(())
    });

    // 3. The client: connect by name, open a stream, send, finish, read the answer whole.
    let conn = client.connect(server.local_addr()?, "localhost")?.await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(request).await?;
    send.finish()?;
    let answer = Bytes::from(recv.read_to_end(MAX_READ).await?);
    conn.close(0u32.into(), b"done");
    serving.await??;
    Ok(answer)
}

/// After: `stoq-transport`. Identity, trust and framing come with the endpoint; the handler
/// gets whole requests within the configured limits; IPv6 is enforced.
async fn with_stoq(request: &[u8]) -> Result<Bytes> {
    // 1. Each end has a node identity (a key and a self-signed certificate); the client pins
    //    the server's node id instead of trusting a name (a CA bundle works too: TlsConfig).
    let server = StoqEndpoint::bind(
        TransportConfig {
            listen: "[::1]:0".parse()?,
            ..Default::default()
        },
        NodeIdentity::generate()?,
    )?;
    let client = StoqEndpoint::client(TransportConfig::default(), NodeIdentity::generate()?)?;

    // 2. The server: one handler for every request on every connection; echo it.
    server.serve(|mut req| async move {
        req.reply.send_response(req.payload).await?;
        req.reply.finish()
    });

    // 3. The client: connect with the expected node id, one call per request.
    let conn = client
        .connect(
            server.local_addr()?,
            &PeerExpectation::Node(server.node_id()),
        )
        .await?;
    let answer = conn.request(Bytes::copy_from_slice(request)).await?;
    client.shutdown(std::time::Duration::from_millis(100)).await;
    Ok(answer)
}

#[tokio::main]
async fn main() -> Result<()> {
    let request = b"GET /c/ID: the same bytes, either way";
    let before = with_quinn(request).await?;
    let after = with_stoq(request).await?;
    assert_eq!(before, after);
    assert_eq!(&after[..], request);
    println!(
        "raw quinn and stoq-transport both echoed {} bytes",
        after.len()
    );
    Ok(())
}
