//! The README's embedding example, runnable: a server and a pinned client on [::1].

use stoq_transport::{NodeIdentity, PeerExpectation, StoqEndpoint, TransportConfig};

#[tokio::main]
async fn main() -> Result<(), stoq_transport::TransportError> {
    // A server that echoes every request's payload.
    let server = StoqEndpoint::bind(
        TransportConfig {
            listen: "[::1]:0".parse().unwrap(),
            ..Default::default()
        },
        NodeIdentity::generate()?,
    )?;
    server.serve(|mut req| async move {
        req.reply.send_response(req.payload).await?;
        req.reply.finish()
    });

    // A client that trusts exactly that server's node id.
    let client = StoqEndpoint::client(TransportConfig::default(), NodeIdentity::generate()?)?;
    let conn = client
        .connect(
            server.local_addr()?,
            &PeerExpectation::Node(server.node_id()),
        )
        .await?;
    assert_eq!(&conn.request("ping").await?[..], b"ping");
    println!(
        "echoed over a pinned connection to node {} (rtt {:?})",
        server.node_id().short(),
        conn.rtt()
    );
    Ok(())
}
