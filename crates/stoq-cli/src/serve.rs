//! `stoq serve` and `stoq ping`.

use std::io::Write;

use anyhow::{Context, Result};
use stoq::transport::{NodeIdentity, PeerExpectation, StoqEndpoint};

use crate::cli::{self, PingArgs, ServeArgs};

/// Runs a node until Ctrl-C or SIGTERM, then shuts it down gracefully.
pub async fn run(args: ServeArgs) -> Result<()> {
    let config = cli::serve_config(&args)?;
    let identity = NodeIdentity::from_config(&config.transport.tls, &config.node.data_dir)
        .with_context(|| {
            format!(
                "cannot set up the node identity in {}",
                config.node.data_dir.display()
            )
        })?;
    let store = stoq::store::Store::open(&config.node.data_dir).with_context(|| {
        format!(
            "cannot open the content store in {}",
            config.node.data_dir.display()
        )
    })?;
    let endpoint = StoqEndpoint::bind(config.transport.clone(), identity)
        .with_context(|| format!("cannot listen on {}", config.transport.listen))?;
    println!(
        "stoq listening on {} node {}",
        endpoint.local_addr()?,
        endpoint.node_id()
    );
    std::io::stdout().flush()?;
    let service = stoq::node::NodeService::new(
        endpoint.node_id().to_string(),
        Some(std::sync::Arc::new(store)),
    );
    endpoint.serve(move |req| service.clone().handle(req));
    wait_for_stop_signal().await?;
    eprintln!(
        "stoq: shutting down (waiting up to {} ms for in-flight requests)",
        config.transport.shutdown_grace_ms
    );
    let report = endpoint.shutdown(config.transport.shutdown_grace()).await;
    if report.drained {
        eprintln!("stoq: stopped cleanly");
    } else {
        eprintln!(
            "stoq: stopped; {} request(s) were still running at the deadline",
            report.abandoned
        );
    }
    Ok(())
}

async fn wait_for_stop_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

/// Connects to a node, checks it is the node id given, and prints the round trip.
pub async fn ping(args: PingArgs) -> Result<()> {
    let addr = cli::address(&args.node)?;
    let expected = cli::node_id(&args.node_id)?;
    let client = StoqEndpoint::client(Default::default(), NodeIdentity::generate()?)?;
    let started = std::time::Instant::now();
    let conn = client
        .connect(addr, &PeerExpectation::Node(expected))
        .await
        .with_context(|| format!("cannot reach {addr}"))?;
    let id = stoq::node::ping(&conn).await?;
    let elapsed = started.elapsed();
    let rtt = conn.stats().rtt;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "node": addr.to_string(),
                "node_id": id,
                "elapsed_ms": elapsed.as_secs_f64() * 1e3,
                "rtt_ms": rtt.as_secs_f64() * 1e3,
            })
        );
    } else {
        println!(
            "{addr} is node {id}: connected and answered in {:.2} ms (rtt {:.3} ms)",
            elapsed.as_secs_f64() * 1e3,
            rtt.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
