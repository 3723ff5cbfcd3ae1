//! docs/EMBEDDING.md's second example: a program that used an in-tree transport moves to the
//! `Stoq` facade, starts an origin node in its own process, publishes a file to it and fetches
//! it back verified, all on [::1]. `cargo run -p stoq --example embed_node`.

use std::error::Error;
use std::net::SocketAddr;

use stoq::client;
use stoq::protocol::PutSettings;
use stoq::transport::PeerExpectation;
use stoq::{AdminToken, NodeOptions, Stoq, StoqConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error + Send + Sync>> {
    let dir = tempfile::tempdir()?;

    // 1. One configuration for everything (what `stoq config` prints), checked by the builder:
    //    a bad field is an error naming it, never a panic.
    let mut config = StoqConfig::default();
    config.transport.listen = "[::1]:0".parse()?;
    config.node.data_dir = dir.path().join("origin");
    let stoq = Stoq::builder(config.clone()).build()?;

    // 2. A node in this process, with the admin token the program keeps.
    let token = AdminToken::from_text("an-admin-token-the-host-keeps-secret")?;
    let mut options = NodeOptions::new(config);
    options.token = Some(token.clone());
    let node = stoq.start_node(options).await?;
    let at = SocketAddr::V6(node.local_addr());

    // 3. Publish over the facade's transport (the connection pins the node's id).
    let file = dir.path().join("release.bin");
    std::fs::write(&file, vec![7u8; 3 << 20])?;
    let conn = stoq
        .transport()
        .connect(at, &PeerExpectation::Node(node.node_id()))
        .await?;
    let published = client::publish(&conn, token.as_str(), &file, PutSettings::default()).await?;

    // 4. Fetch it back: located, every chunk verified against its id.
    let mut out = Vec::new();
    let report = stoq
        .fetch(&[(node.node_id(), at)], &published.id, &mut out)
        .await?;
    assert_eq!(out, std::fs::read(&file)?);
    println!(
        "published {} ({} chunks) and fetched {} bytes back, verified",
        published.id, published.chunks, report.size
    );
    node.shutdown(std::time::Duration::from_secs(1)).await;
    Ok(())
}
