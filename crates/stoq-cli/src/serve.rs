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

/// Runs a node until Ctrl-C or SIGTERM, then shuts it down gracefully; on SIGHUP it reloads
/// its config file (`log_format` is the `--log-format` flag, which a reload leaves alone).
pub async fn run(args: ServeArgs, log_format: Option<String>) -> Result<()> {
    let config = crate::settings::serve_config(&args)?;
    crate::logging::check_level(&config).map_err(crate::usage::usage)?;
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
    let mut stop = StopSignals::install()?;
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
    while stop.wait().await == Signal::Reload {
        reload(&node, &args, log_format.as_deref());
    }
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

/// Re-reads the config (file and flags, as at start) and applies what can change live; says
/// what changed, what needs a restart, and why a bad file was not taken.
fn reload(node: &Node, args: &ServeArgs, log_format: Option<&str>) {
    let config = match crate::settings::serve_config(args) {
        Ok(config) => config,
        Err(e) => return notice(&format!("reload refused, nothing changed: {e:#}")),
    };
    if let Err(e) = crate::logging::check_level(&config) {
        return notice(&format!("reload refused, nothing changed: {e}"));
    }
    // The node's part can fail (a token file, a metrics address); the logs' part cannot once
    // the level was checked. So the node first: a refusal then leaves the logs as they were.
    let done = match node.reload(config.clone()) {
        Ok(done) => done,
        Err(e) => return notice(&format!("reload refused, nothing changed: {e}")),
    };
    let mut applied = crate::logging::reload(log_format, &config).unwrap_or_default();
    applied.extend(&done.applied);
    let applied = match applied.is_empty() {
        true => "nothing".to_owned(),
        false => applied.join(", "),
    };
    notice(&format!("reloaded: applied {applied}"));
    if !done.needs_restart.is_empty() {
        notice(&format!(
            "reload: {} changed but take effect only after a restart",
            done.needs_restart.join(", ")
        ));
    }
    for failure in done.failed {
        notice(&format!("reload: not applied: {failure}"));
    }
}

/// Which signal arrived.
#[derive(Debug, PartialEq, Eq)]
enum Signal {
    /// SIGINT or SIGTERM: stop.
    Stop,
    /// SIGHUP: reload the config.
    Reload,
}

/// SIGINT (Ctrl-C), SIGTERM and SIGHUP, caught from the moment they are installed.
struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    async fn wait(&mut self) -> Signal {
        tokio::select! {
            _ = self.interrupt.recv() => Signal::Stop,
            _ = self.terminate.recv() => Signal::Stop,
            _ = self.hangup.recv() => Signal::Reload,
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
    client.hang_up().await;
    Ok(())
}
