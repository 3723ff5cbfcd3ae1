//! A STOQ endpoint: one IPv6 UDP socket that accepts and dials QUIC connections.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stoq_protocol::{ErrorCode, ALPN};
use tokio::sync::{mpsc, Mutex, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use tracing::{debug, info};

use crate::config::{accepted_udp_payload, PathKind};
use crate::dial::DialConfigs;
use crate::serving::{serve_connection, IncomingRequest, Intake};
use crate::trust::{self, PeerExpectation};
use crate::{
    addr::ensure_ipv6,
    socket::{bind_udp, bind_udp_group},
    NodeId, NodeIdentity, StoqConnection, TransportConfig, TransportError,
};

/// Yields a closing endpoint gives the connection drivers to send their close.
const CLOSE_YIELDS: usize = 4;

/// What [`StoqEndpoint::hang_up`] waits at most after those yields, for a driver running on
/// another thread or a socket that was full.
const HANG_UP_GRACE: Duration = Duration::from_millis(5);

/// Bytes of the connection ids this endpoint issues. Every packet a peer sends here carries
/// one, so a download's packets carry the client's: 4 instead of quinn's 8 is 0.3 % more
/// content per 1,452-byte packet. Random, unique among the endpoint's connections (quinn
/// draws again on a clash), and 2^32 of them is ample for any one endpoint's connections.
const CID_LEN: usize = 4;

/// Connections that finished their handshake and wait for [`StoqEndpoint::accept`].
const ACCEPT_QUEUE: usize = 1024;

/// What a graceful shutdown achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether every in-flight stream finished before the deadline.
    pub drained: bool,
    /// Streams still running at the deadline, abandoned by the close.
    pub abandoned: usize,
}

/// Counters of one endpoint since it was bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct EndpointCounters {
    /// Connections accepted and handed to the application.
    pub accepted: u64,
    /// Connections refused because `max_connections` was reached.
    pub refused_limit: u64,
    /// Incoming connections whose handshake failed (wrong ALPN, untrusted client...).
    pub failed_handshakes: u64,
    /// Accepted connections open now.
    pub open: u64,
    /// Request streams reset because the peer stalled: a request that did not arrive whole
    /// within `stall_timeout_ms`, or a body or answer that made no progress for that long.
    pub stalled_streams: u64,
    /// Requests answered BUSY because the request buffers (per connection or per node) were
    /// full.
    pub busy_requests: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    refused_limit: AtomicU64,
    failed_handshakes: AtomicU64,
    open: AtomicU64,
}

#[derive(Debug)]
struct Shared {
    /// The endpoint connections are dialled from (a listener too when there is only one).
    endpoint: quinn::Endpoint,
    /// The endpoints that accept connections, all on one port; empty for a dial-only one.
    listeners: Vec<quinn::Endpoint>,
    node_id: NodeId,
    config: TransportConfig,
    /// Transport parameters of the connections this endpoint dials.
    dialled: PerPath<Arc<quinn::TransportConfig>>,
    dial_configs: DialConfigs,
    accept_queue: Mutex<mpsc::Receiver<StoqConnection>>,
    counters: Counters,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    intake: Arc<Intake>,
}

/// A STOQ node's endpoint. Cheap to clone; all clones share one socket.
///
/// A listening endpoint (from [`StoqEndpoint::bind`]) runs until [`StoqEndpoint::shutdown`]:
/// its accept loop and `serve` tasks hold it, so dropping the handles alone leaves the socket
/// and tasks running. A dial-only endpoint ([`StoqEndpoint::client`]) closes when its last
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct StoqEndpoint {
    shared: Arc<Shared>,
}

impl StoqEndpoint {
    /// Binds `config.listen` and starts accepting connections, enforcing `max_connections`.
    pub fn bind(config: TransportConfig, identity: NodeIdentity) -> Result<Self, TransportError> {
        Self::open(config, identity, true)
    }

    /// Binds an unspecified IPv6 address with an ephemeral port for dialling only; incoming
    /// connections are refused.
    pub fn client(config: TransportConfig, identity: NodeIdentity) -> Result<Self, TransportError> {
        let config = TransportConfig {
            listen: "[::]:0".parse().expect("valid literal"),
            ..config
        };
        Self::open(config, identity, false)
    }

    fn open(
        config: TransportConfig,
        identity: NodeIdentity,
        serve: bool,
    ) -> Result<Self, TransportError> {
        config.validate("transport")?;
        let ca_roots = match &config.tls.ca_bundle {
            Some(path) => Some(Arc::new(trust::load_ca_bundle(path)?)),
            None => None,
        };
        let dialled = PerPath::new(|path| Arc::new(config.quinn_transport(path)));
        let accepted = if serve {
            let crypto = trust::server_crypto(&identity, &config.tls, ca_roots.as_ref())?;
            let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(Arc::new(crypto))
                .map_err(|e| TransportError::Certificate(e.to_string()))?;
            let crypto = Arc::new(crypto);
            Some(Arc::new(PerPath::new(|path| {
                let mut server = quinn::ServerConfig::with_crypto(crypto.clone());
                server.transport_config(Arc::new(config.quinn_transport_accepted(path)));
                Arc::new(server)
            })))
        } else {
            None
        };
        let server_config = accepted
            .as_ref()
            .map(|a| quinn::ServerConfig::clone(&a.network));
        let runtime = quinn::default_runtime().ok_or_else(|| {
            TransportError::Socket(std::io::Error::other("no async runtime running"))
        })?;
        let quinn_endpoint = |socket, server: Option<quinn::ServerConfig>| {
            let mut endpoint_config = quinn::EndpointConfig::default();
            endpoint_config
                .max_udp_payload_size(accepted_udp_payload(config.max_mtu))
                .expect("a u16 payload size above 1200 is valid");
            endpoint_config
                .cid_generator(|| Box::new(quinn_proto::RandomConnectionIdGenerator::new(CID_LEN)));
            quinn::Endpoint::new(endpoint_config, server, socket, runtime.clone())
                .map_err(TransportError::Socket)
        };
        let count = if serve { config.endpoint_count() } else { 1 };
        let (endpoint, listeners) = match server_config {
            Some(server) if count > 1 => {
                // Several sockets on one port, which no other socket holds.
                let sockets = bind_udp_group(config.listen, &config, count)?;
                let port = sockets[0].local_addr().map_err(TransportError::Socket)?;
                let listeners = sockets
                    .into_iter()
                    .map(|socket| quinn_endpoint(socket, Some(server.clone())))
                    .collect::<Result<Vec<_>, _>>()?;
                // Replies to a dialled connection must reach the socket that dialled it; the
                // kernel spreads a shared port's packets by address, so dialling gets its own.
                let mut any = port;
                any.set_ip(std::net::Ipv6Addr::UNSPECIFIED.into());
                any.set_port(0);
                let dialler = quinn_endpoint(bind_udp(any, &config, false)?, None)?;
                (dialler, listeners)
            }
            server => {
                let serving = server.is_some();
                let one = quinn_endpoint(bind_udp(config.listen, &config, false)?, server)?;
                let listeners = if serving { vec![one.clone()] } else { vec![] };
                (one, listeners)
            }
        };
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let intake = Arc::new(Intake::new(&config));
        let shared = Arc::new(Shared {
            endpoint,
            listeners,
            node_id: identity.node_id(),
            config,
            dialled,
            dial_configs: DialConfigs::new(identity, ca_roots),
            accept_queue: Mutex::new(rx),
            counters: Counters::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            intake,
        });
        let limiter = shared
            .config
            .max_connections
            .map(|max| Arc::new(Semaphore::new(max as usize)));
        // Listeners exist only with a server config (`serve`).
        if let Some(accepted) = &accepted {
            for listener in &shared.listeners {
                let (listener, accepted) = (listener.clone(), accepted.clone());
                tokio::spawn(
                    accept_loop(
                        shared.clone(),
                        listener,
                        accepted,
                        limiter.clone(),
                        tx.clone(),
                    )
                    .in_current_span(),
                );
            }
        }
        Ok(StoqEndpoint { shared })
    }

    /// The address it listens on (or, dial-only, dials from), with the real port when port 0
    /// was asked.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.shared
            .listeners
            .first()
            .unwrap_or(&self.shared.endpoint)
            .local_addr()
            .map_err(TransportError::Socket)
    }

    /// How many sockets it accepts connections on (`TransportConfig::endpoints`).
    pub fn listeners(&self) -> usize {
        self.shared.listeners.len()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// The configuration the endpoint runs with.
    pub fn config(&self) -> &TransportConfig {
        &self.shared.config
    }

    /// Counters since the endpoint was bound.
    pub fn counters(&self) -> EndpointCounters {
        let c = &self.shared.counters;
        EndpointCounters {
            accepted: c.accepted.load(Ordering::Relaxed),
            refused_limit: c.refused_limit.load(Ordering::Relaxed),
            failed_handshakes: c.failed_handshakes.load(Ordering::Relaxed),
            open: c.open.load(Ordering::Relaxed),
            stalled_streams: self.shared.intake.stalled(),
            busy_requests: self.shared.intake.over_budget(),
        }
    }

    /// Dials `addr` and checks the server as `expect` says (pinned node id or CA + name).
    pub async fn connect(
        &self,
        addr: SocketAddr,
        expect: &PeerExpectation,
    ) -> Result<StoqConnection, TransportError> {
        self.connect_with_alpn(addr, expect, ALPN).await
    }

    /// Dials with another ALPN. Exists so tests can show such a peer is refused.
    #[doc(hidden)]
    pub async fn connect_with_alpn(
        &self,
        addr: SocketAddr,
        expect: &PeerExpectation,
        alpn: &[u8],
    ) -> Result<StoqConnection, TransportError> {
        let addr = ensure_ipv6(addr)?;
        if self.shared.shutdown.is_cancelled() {
            return Err(TransportError::Shutdown);
        }
        let mut client = quinn::ClientConfig::new(self.shared.dial_configs.get(expect, alpn)?);
        client.transport_config(self.shared.dialled.to(addr).clone());
        let connecting =
            self.shared
                .endpoint
                .connect_with(client, addr, trust::server_name(expect))?;
        let conn = connecting.await?;
        Ok(StoqConnection::new(conn, self.shared.config.max_frame_size))
    }

    /// The next accepted connection; `None` once the endpoint shuts down.
    pub async fn accept(&self) -> Option<StoqConnection> {
        let mut rx = self.shared.accept_queue.lock().await;
        tokio::select! {
            conn = rx.recv() => conn,
            _ = self.shared.shutdown.cancelled() => None,
        }
    }

    /// Accepts connections and runs `handler` for every request stream, until shutdown.
    /// Streams whose first frame is not a valid REQUEST are answered with an ERROR frame and
    /// never reach the handler. Every handler runs as a tracked task, which graceful
    /// [`StoqEndpoint::shutdown`] waits for.
    pub fn serve<H, Fut>(&self, handler: H) -> tokio::task::JoinHandle<()>
    where
        H: Fn(IncomingRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TransportError>> + Send + 'static,
    {
        let endpoint = self.clone();
        let handler = Arc::new(handler);
        // Tasks keep the caller's tracing span (a node's), so their events name the node.
        tokio::spawn(
            async move {
                while let Some(conn) = endpoint.accept().await {
                    let tasks = endpoint.shared.tasks.clone();
                    let shutdown = endpoint.shared.shutdown.clone();
                    let (handler, intake) = (handler.clone(), endpoint.shared.intake.clone());
                    endpoint.shared.tasks.spawn(
                        serve_connection(conn, tasks, shutdown, intake, handler).in_current_span(),
                    );
                }
            }
            .in_current_span(),
        )
    }

    /// For a client that is done and about to exit: closes every connection with
    /// `SHUTTING_DOWN` at once and gives each connection's driver its turn to send the close
    /// (a few yields, then at most 5 ms), without waiting out QUIC's draining
    /// period (three probe timeouts, which only serve to send a lost close again). The peer
    /// sees the connection end now instead of at its idle timeout.
    pub async fn hang_up(&self) {
        self.shared.close_all(b"client done", HANG_UP_GRACE).await;
    }

    /// Graceful shutdown: refuse new connections and streams at once, let in-flight request
    /// handlers run, then close every connection with `SHUTTING_DOWN`; all within `deadline`
    /// (the last fifth of it, at most a second, is kept for the close frames to leave).
    pub async fn shutdown(&self, deadline: Duration) -> ShutdownReport {
        let started = tokio::time::Instant::now();
        let shared = &self.shared;
        for listener in &shared.listeners {
            listener.set_server_config(None);
        }
        shared.shutdown.cancel();
        shared.tasks.close();
        let for_closing = (deadline / 5).min(Duration::from_secs(1));
        let drained = tokio::time::timeout(deadline - for_closing, shared.tasks.wait())
            .await
            .is_ok();
        let abandoned = shared.tasks.len();
        // Give the close frames what is left of the deadline to leave; never more.
        let left = deadline.saturating_sub(started.elapsed());
        shared.close_all(b"node shutting down", left).await;
        ShutdownReport { drained, abandoned }
    }
}

impl Shared {
    /// Closes every connection of every socket with `SHUTTING_DOWN` and `reason`, gives the
    /// connection drivers their turn to send the close (it reaches each as an event, and the
    /// drivers run before a yielding task resumes on its runtime), then waits at most `wait`
    /// for QUIC's draining period to end.
    async fn close_all(&self, reason: &[u8], wait: Duration) {
        let code = quinn::VarInt::from_u32(ErrorCode::ShuttingDown.to_u16().into());
        let all: Vec<&quinn::Endpoint> = std::iter::once(&self.endpoint)
            .chain(&self.listeners)
            .collect();
        for endpoint in &all {
            endpoint.close(code, reason);
        }
        for _ in 0..CLOSE_YIELDS {
            tokio::task::yield_now().await;
        }
        let _ = tokio::time::timeout(wait, async {
            for endpoint in &all {
                endpoint.wait_idle().await;
            }
        })
        .await;
    }
}

/// Accepts on one listener, with the server config for each peer's path; every listener
/// shares the connection limit and the queue.
async fn accept_loop(
    shared: Arc<Shared>,
    listener: quinn::Endpoint,
    accepted: Arc<PerPath<Arc<quinn::ServerConfig>>>,
    limiter: Option<Arc<Semaphore>>,
    tx: mpsc::Sender<StoqConnection>,
) {
    loop {
        let incoming = tokio::select! {
            incoming = listener.accept() => incoming,
            _ = shared.shutdown.cancelled() => None,
        };
        let Some(incoming) = incoming else { break };
        let slot = match &limiter {
            None => Slot::Unlimited,
            Some(sem) => sem
                .clone()
                .try_acquire_owned()
                .map_or(Slot::Full, Slot::Taken),
        };
        let config = accepted.to(incoming.remote_address()).clone();
        tokio::spawn(
            handshake(shared.clone(), incoming, config, slot, tx.clone()).in_current_span(),
        );
    }
}

/// One value for each kind of path a connection can run on ([`PathKind`]).
#[derive(Debug)]
struct PerPath<T> {
    network: T,
    loopback: T,
}

impl<T> PerPath<T> {
    fn new(make: impl Fn(PathKind) -> T) -> Self {
        PerPath {
            network: make(PathKind::Network),
            loopback: make(PathKind::Loopback),
        }
    }

    /// The value for the path to `peer`.
    fn to(&self, peer: SocketAddr) -> &T {
        match PathKind::to(peer) {
            PathKind::Network => &self.network,
            PathKind::Loopback => &self.loopback,
        }
    }
}

/// A connection's claim on the `max_connections` budget.
enum Slot {
    Unlimited,
    /// Holds the permit until dropped when the connection closes; never read.
    Taken(#[allow(dead_code)] OwnedSemaphorePermit),
    Full,
}

async fn handshake(
    shared: Arc<Shared>,
    incoming: quinn::Incoming,
    config: Arc<quinn::ServerConfig>,
    slot: Slot,
    tx: mpsc::Sender<StoqConnection>,
) {
    let remote = incoming.remote_address();
    let conn = match incoming.accept_with(config) {
        Ok(connecting) => connecting.await,
        Err(e) => Err(e),
    };
    let conn = match conn {
        Ok(conn) => conn,
        Err(e) => {
            shared
                .counters
                .failed_handshakes
                .fetch_add(1, Ordering::Relaxed);
            debug!(%remote, error = %e, "handshake failed");
            return;
        }
    };
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() != Some(ALPN) {
        shared
            .counters
            .failed_handshakes
            .fetch_add(1, Ordering::Relaxed);
        conn.close(
            quinn::VarInt::from_u32(ErrorCode::ProtocolViolation.to_u16().into()),
            b"ALPN stoq/1 required",
        );
        return;
    }
    if let Slot::Full = slot {
        shared
            .counters
            .refused_limit
            .fetch_add(1, Ordering::Relaxed);
        let max = shared.config.max_connections.unwrap_or_default();
        info!(%remote, max, "connection refused: limit reached");
        let reason = format!("connection limit of {max} reached");
        conn.close(
            quinn::VarInt::from_u32(ErrorCode::ConnectionLimit.to_u16().into()),
            reason.as_bytes(),
        );
        return;
    }
    shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
    shared.counters.open.fetch_add(1, Ordering::Relaxed);
    // Hold the slot until the connection is gone, however the application treats its handle.
    let watcher = conn.clone();
    let watched = shared.clone();
    tokio::spawn(async move {
        watcher.closed().await;
        watched.counters.open.fetch_sub(1, Ordering::Relaxed);
        drop(slot);
    });
    let conn = StoqConnection::new(conn, shared.config.max_frame_size);
    if tx.send(conn.clone()).await.is_err() {
        conn.close(ErrorCode::ShuttingDown, "node shutting down");
    }
}
