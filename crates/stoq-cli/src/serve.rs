//! `stoq serve` and `stoq ping`.

use std::io::Write;

use std::net::SocketAddr;

use anyhow::{Context, Result};
use stoq::http::{BoundFront, HttpError};
use stoq::node::{Node, NodeError, NodeOptions};
use stoq::transport::{NodeIdentity, PeerExpectation, StoqEndpoint};

use crate::cli::{self, PingArgs, ServeArgs};
use crate::known;
use crate::logging::notice;

/// Runs a node until Ctrl-C or SIGTERM, then shuts it down gracefully.
pub async fn run(args: ServeArgs) -> Result<()> {
    let config = crate::settings::serve_config(&args)?;
    let seeds = config
        .node
        .seeds
        .iter()
        .map(|s| known::resolve(s))
        .collect::<Result<Vec<_>>>()?;
    let data_dir = config.node.data_dir.clone();
    let new_token = config.node.admin_token_file.clone().filter(|p| !p.exists());
    let grace = config.transport.shutdown_grace();
    let listen = config.transport.listen;
    // The front binds first, so the node can announce its URL to its peers.
    let front = match config.http.listen {
        Some(_) => Some(BoundFront::bind(&config.http).map_err(|e| match e {
            HttpError::Bind { .. } => anyhow::Error::new(e).context("cannot start the HTTP front"),
            other => crate::usage::usage(other),
        })?),
        None => None,
    };
    let mut options = NodeOptions::new(config);
    options.seeds = seeds;
    options.http_url = front.as_ref().and_then(BoundFront::announced_url);
    let node = Node::start(options).await.map_err(|e| match e {
        NodeError::Config(e) => crate::usage::usage(e),
        NodeError::Token(e) => crate::usage::usage(e),
        other => anyhow::Error::new(other).context(format!(
            "cannot start the node (listen {listen}, data dir {})",
            data_dir.display()
        )),
    })?;
    // Listen for the stop signals before saying we are up: a signal sent the moment the
    // address is printed must stop the node gracefully, not kill the process.
    let stop = StopSignals::install()?;
    println!(
        "stoq listening on {} node {}",
        SocketAddr::V6(node.local_addr()),
        node.node_id()
    );
    let front = front.map(|front| {
        println!("stoq http listening on {}", front.url());
        front.serve(&node)
    });
    std::io::stdout().flush()?;
    if let Some(path) = new_token {
        notice(&format!(
            "created the admin token file {} (mode 0600); give it to the nodes that join and to clients that publish",
            path.display()
        ));
    }
    if let Err(e) = known::record(node.local_addr(), node.node_id()) {
        notice(&format!("warning: {e:#}"));
    }
    stop.wait().await;
    notice(&format!(
        "shutting down (waiting up to {} ms for in-flight requests)",
        grace.as_millis()
    ));
    if let Some(front) = front {
        front.shutdown(grace / 2).await;
    }
    let report = node.shutdown(grace).await;
    if report.drained {
        notice("stopped cleanly");
    } else {
        notice(&format!(
            "stopped; {} request(s) were still running at the deadline",
            report.abandoned
        ));
    }
    Ok(())
}

/// SIGINT (Ctrl-C) and SIGTERM, caught from the moment they are installed.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
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
    let id = stoq::client::ping(&conn).await?;
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
    conn.close(stoq::protocol::ErrorCode::NoError, "done");
    crate::session::hang_up(&client).await;
    Ok(())
}
