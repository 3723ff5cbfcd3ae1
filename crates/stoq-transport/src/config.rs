//! Transport configuration: every field here is applied to the socket, quinn or rustls.
//!
//! Sizes are bytes, durations are milliseconds. `None` means "no limit" where a limit is
//! optional. [`TransportConfig::validate`] names the field and the reason for anything it
//! refuses, so a bad config file never half-applies.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stoq_protocol::{DEFAULT_MAX_FRAME_SIZE, MAX_FRAME_SIZE_CEILING, MIN_MAX_FRAME_SIZE};

/// Connections a node accepts at once unless configured otherwise: enough for a busy edge on
/// one machine, few enough that what strangers can hold stays bounded (see `max_connections`).
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10_000;

/// The largest request budget a configuration may give (the semaphore's range, with room).
const MAX_REQUEST_BUFFER_TOTAL: u64 = 1 << 40;

use crate::{addr::ensure_ipv6, NodeId, TransportError};

/// The congestion controller quinn runs for every connection of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CongestionController {
    /// CUBIC (RFC 8312): quinn's default, loss-based.
    #[default]
    Cubic,
    /// BBR: model-based; better on long fat pipes with random loss.
    Bbr,
    /// NewReno (RFC 6582): the classic, conservative.
    NewReno,
}

/// How the node proves itself and whom it trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first). Unset: the node generates a self-signed certificate
    /// in its data dir on first start and reuses it afterwards.
    pub cert_file: Option<PathBuf>,
    /// PEM private key for `cert_file`. Required exactly when `cert_file` is set.
    pub key_file: Option<PathBuf>,
    /// PEM bundle of CA certificates trusted for peers that present CA-issued certificates
    /// (connections made by server name, and client certificates under `mutual`).
    pub ca_bundle: Option<PathBuf>,
    /// Node ids trusted as clients when `mutual` is on (in addition to `ca_bundle`).
    pub trusted_peers: Vec<NodeId>,
    /// Mutual TLS: require every client to present a certificate that is either pinned in
    /// `trusted_peers` or issued by `ca_bundle`.
    pub mutual: bool,
}

/// Bounds of the per-peer connection pool used when this node dials others.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Most peers kept connected at once; the least recently used is dropped beyond it.
    /// `None` = unbounded.
    pub max_size: Option<usize>,
    /// A pooled connection unused this long is dropped.
    pub idle_timeout_ms: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            max_size: Some(1024),
            idle_timeout_ms: 60_000,
        }
    }
}

/// The transport section of a STOQ configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// Address to listen on; must be IPv6. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// UDP sockets a listening endpoint serves from, all on `listen`'s port (SO_REUSEPORT: the
    /// kernel spreads peers across them by address, so receiving, decryption and handshakes
    /// run on several cores). 0 = one per CPU core. With more than one, dialling uses a
    /// socket of its own on an ephemeral port.
    pub endpoints: u32,
    /// Most connections accepted at once. The next peer is refused with code
    /// `CONNECTION_LIMIT` and existing connections are untouched. `None` (from code
    /// only) = unlimited. The memory strangers can hold is at most `max_connections × accepted_receive_window` in
    /// QUIC buffers plus `request_buffer_total`.
    pub max_connections: Option<u32>,
    /// Longest frame this node accepts, in bytes (256 KiB to 16 MiB).
    pub max_frame_size: u32,
    /// Longest REQUEST frame a peer may send, in bytes (1 KiB up to `max_frame_size`).
    /// Requests are small (the largest, a membership message, is under 1.5 KB); bodies travel
    /// as DATA frames after the request.
    pub max_request_size: u32,
    /// Bytes one connection may hold in requests still arriving; a request past it is
    /// answered BUSY at once (at least `max_request_size`).
    pub request_buffer_per_connection: u32,
    /// The same for all connections together (at least `request_buffer_per_connection`).
    pub request_buffer_total: u64,
    /// Longest wait on a peer within one exchange, in ms: for its request to arrive whole,
    /// then for each further piece of a body it sends and for it to take each piece of an
    /// answer. Past it the stream is reset with TIMEOUT and what it held is freed. A slow
    /// peer is fine; one that stops is not.
    pub stall_timeout_ms: u64,
    /// Flow-control window of a connection a peer opened to this node, in bytes: what a
    /// stranger can park in the node's QUIC buffers. The node widens it to
    /// `connection_receive_window` for a peer it has authorised to upload (the admin token, a
    /// member storing shards). Downloads are unaffected: they use the client's window.
    pub accepted_receive_window: u64,
    /// A connection with no traffic for this long is closed (QUIC max_idle_timeout).
    pub idle_timeout_ms: u64,
    /// Send a keep-alive this often on connections this node dials, so idle ones survive NATs
    /// and the idle timeout. `None` or 0 = no keep-alives (a file says 0: TOML has no
    /// "none"). Connections peers open to this node never get one from it: the peer keeps
    /// its own connection alive if it wants to, and a node with 100,000 idle clients would
    /// otherwise send 10,000 packets a second at the default.
    pub keep_alive_interval_ms: Option<u64>,
    /// The congestion controller.
    pub congestion: CongestionController,
    /// Bidirectional streams a peer may have open at once on one connection.
    pub max_concurrent_bidi_streams: u32,
    /// Unidirectional streams a peer may have open at once on one connection.
    pub max_concurrent_uni_streams: u32,
    /// Flow-control window of one stream: bytes a peer may send ahead of our reads.
    pub stream_receive_window: u64,
    /// Flow-control window of a whole connection.
    pub connection_receive_window: u64,
    /// Bytes we buffer for sending per connection.
    pub send_window: u64,
    /// UDP socket send buffer (SO_SNDBUF). `None` = the kernel default.
    pub socket_send_buffer: Option<usize>,
    /// UDP socket receive buffer (SO_RCVBUF). `None` = the kernel default.
    pub socket_recv_buffer: Option<usize>,
    /// Use UDP generic segmentation offload where the kernel supports it.
    pub gso: bool,
    /// UDP payload size used before path MTU discovery confirms more (at least 1200).
    pub initial_mtu: u16,
    /// Upper bound for path MTU discovery (the largest packet this node sends); equal to
    /// `initial_mtu` turns discovery off. With `gso`, at most [`MAX_MTU_WITH_GSO`]. Over the
    /// network quinn searches between `initial_mtu` and this (RFC 8899); on loopback it sends
    /// one probe of this size instead (see [`PathKind`]).
    pub max_mtu: u16,
    /// Bytes of incoming QUIC datagrams buffered per connection before old ones are dropped.
    pub datagram_receive_buffer: usize,
    /// How long a graceful shutdown waits for in-flight streams before closing.
    pub shutdown_grace_ms: u64,
    /// Certificates and trust.
    pub tls: TlsConfig,
    /// The outgoing connection pool.
    pub pool: PoolConfig,
}

/// The kind of path a connection runs on, which decides how its packet size is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathKind {
    /// Through the network: quinn's binary search between `initial_mtu` and `max_mtu`, since
    /// any hop may carry less than the interface does.
    Network,
    /// This host's loopback (`::1`): the kernel carries any size up to `max_mtu` (the
    /// interface's MTU is 64 KiB), so a single probe at `max_mtu` replaces the search. Every
    /// probe is a packet of padding the peer parses byte by byte; a search to 6452 sends
    /// about ten of them each way, which cost 2.3× in handshakes per second.
    Loopback,
}

impl PathKind {
    /// The kind of the path to `peer`.
    pub(crate) fn to(peer: SocketAddr) -> Self {
        if peer.ip().is_loopback() {
            PathKind::Loopback
        } else {
            PathKind::Network
        }
    }
}

/// The largest UDP payload an endpoint accepts from peers (and advertises): at least what any
/// valid config sends with GSO, so nodes configured with different `max_mtu` still reach the
/// larger of the two they could both use.
pub(crate) fn accepted_udp_payload(max_mtu: u16) -> u16 {
    max_mtu.max(MAX_MTU_WITH_GSO)
}

/// The largest `max_mtu` that works with GSO: quinn batches up to 10 packets into one UDP
/// send, and the kernel refuses a send above 64 KiB (10 × 6552 + the 8-byte UDP header).
pub const MAX_MTU_WITH_GSO: u16 = 6552;

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            listen: "[::1]:4433".parse().expect("valid literal"),
            endpoints: 0,
            max_connections: Some(DEFAULT_MAX_CONNECTIONS),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_request_size: 64 * 1024,
            request_buffer_per_connection: 256 * 1024,
            request_buffer_total: 64 * 1024 * 1024,
            stall_timeout_ms: 10_000,
            accepted_receive_window: 1024 * 1024,
            idle_timeout_ms: 30_000,
            keep_alive_interval_ms: Some(10_000),
            congestion: CongestionController::Cubic,
            // quinn's default; each allowed stream costs the connection memory up front
            // (measured with `stoq bench connections`: 256 cost 25 KB more per connection pair).
            max_concurrent_bidi_streams: 100,
            max_concurrent_uni_streams: 64,
            stream_receive_window: 4 * 1024 * 1024,
            connection_receive_window: 16 * 1024 * 1024,
            send_window: 16 * 1024 * 1024,
            socket_send_buffer: Some(4 * 1024 * 1024),
            socket_recv_buffer: Some(4 * 1024 * 1024),
            gso: true,
            initial_mtu: 1200,
            // Path MTU discovery settles at what the path carries: 1452 across the Internet,
            // more on jumbo-frame networks and loopback (fewer packets to encrypt and parse).
            max_mtu: 6452,
            datagram_receive_buffer: 1024 * 1024,
            shutdown_grace_ms: 5_000,
            tls: TlsConfig::default(),
            pool: PoolConfig::default(),
        }
    }
}

/// The CPU cores this process may run on (at least 1): what "one per core" settings count.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl TransportConfig {
    /// The listening sockets this configuration asks for: `endpoints`, or one per CPU core.
    pub fn endpoint_count(&self) -> usize {
        match self.endpoints {
            0 => cores(),
            n => n as usize,
        }
    }

    /// Checks every field; the error names the first bad one (under `prefix`, such as
    /// `transport`) and why.
    pub fn validate(&self, prefix: &str) -> Result<(), TransportError> {
        let field = |name: &str| format!("{prefix}.{name}");
        ensure_ipv6(self.listen)
            .map_err(|e| TransportError::config(field("listen"), e.to_string()))?;
        if self.max_connections == Some(0) {
            return Err(TransportError::config(
                field("max_connections"),
                "0 would refuse every peer; omit the field for unlimited",
            ));
        }
        if !(MIN_MAX_FRAME_SIZE..=MAX_FRAME_SIZE_CEILING).contains(&self.max_frame_size) {
            return Err(TransportError::config(
                field("max_frame_size"),
                format!(
                    "{} is outside {MIN_MAX_FRAME_SIZE}..={MAX_FRAME_SIZE_CEILING} bytes",
                    self.max_frame_size
                ),
            ));
        }
        if self.idle_timeout_ms == 0 || quinn::IdleTimeout::try_from(self.idle_duration()).is_err()
        {
            return Err(TransportError::config(
                field("idle_timeout_ms"),
                "must be between 1 ms and 2^62 ms",
            ));
        }
        if let Some(k) = self.keep_alive_interval_ms.filter(|k| *k > 0) {
            if k >= self.idle_timeout_ms {
                return Err(TransportError::config(
                    field("keep_alive_interval_ms"),
                    format!(
                        "{k} must be below idle_timeout_ms ({}); 0 turns keep-alives off",
                        self.idle_timeout_ms
                    ),
                ));
            }
        }
        if !(1024..=self.max_frame_size).contains(&self.max_request_size) {
            return Err(TransportError::config(
                field("max_request_size"),
                format!(
                    "must be between 1024 and max_frame_size ({})",
                    self.max_frame_size
                ),
            ));
        }
        if self.request_buffer_per_connection < self.max_request_size {
            return Err(TransportError::config(
                field("request_buffer_per_connection"),
                "must be at least max_request_size, or no request of that size could arrive",
            ));
        }
        if self.request_buffer_total < u64::from(self.request_buffer_per_connection)
            || self.request_buffer_total > MAX_REQUEST_BUFFER_TOTAL
        {
            return Err(TransportError::config(
                field("request_buffer_total"),
                format!(
                    "must be between request_buffer_per_connection and {MAX_REQUEST_BUFFER_TOTAL}"
                ),
            ));
        }
        if !(100..=86_400_000).contains(&self.stall_timeout_ms) {
            return Err(TransportError::config(
                field("stall_timeout_ms"),
                "must be between 100 ms and one day",
            ));
        }
        if self.accepted_receive_window > self.connection_receive_window {
            return Err(TransportError::config(
                field("accepted_receive_window"),
                "must not exceed connection_receive_window (it is widened to that)",
            ));
        }
        for (name, v) in [
            ("accepted_receive_window", self.accepted_receive_window),
            ("stream_receive_window", self.stream_receive_window),
            ("connection_receive_window", self.connection_receive_window),
            ("send_window", self.send_window),
        ] {
            if v < 16 * 1024 || quinn::VarInt::from_u64(v).is_err() {
                return Err(TransportError::config(
                    field(name),
                    format!("{v} must be at least 16384 bytes and below 2^62"),
                ));
            }
        }
        if self.stream_receive_window > self.connection_receive_window {
            return Err(TransportError::config(
                field("stream_receive_window"),
                "must not exceed connection_receive_window",
            ));
        }
        if self.max_concurrent_bidi_streams == 0 {
            return Err(TransportError::config(
                field("max_concurrent_bidi_streams"),
                "must be at least 1: every request runs on a bidirectional stream",
            ));
        }
        for (name, v) in [
            ("socket_send_buffer", self.socket_send_buffer),
            ("socket_recv_buffer", self.socket_recv_buffer),
        ] {
            if v.is_some_and(|v| v < 64 * 1024) {
                return Err(TransportError::config(
                    field(name),
                    "must be at least 65536 bytes",
                ));
            }
        }
        if self.initial_mtu < 1200 {
            return Err(TransportError::config(
                field("initial_mtu"),
                "QUIC needs at least 1200 bytes",
            ));
        }
        if self.max_mtu < self.initial_mtu {
            return Err(TransportError::config(
                field("max_mtu"),
                format!(
                    "{} is below initial_mtu ({})",
                    self.max_mtu, self.initial_mtu
                ),
            ));
        }
        if self.gso && self.max_mtu > MAX_MTU_WITH_GSO {
            return Err(TransportError::config(
                field("max_mtu"),
                format!(
                    "{} is above {MAX_MTU_WITH_GSO}: with gso, quinn sends up to 10 packets in \
                     one 64 KiB UDP datagram (set gso = false for more)",
                    self.max_mtu
                ),
            ));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(TransportError::config(
                field("tls.key_file"),
                "cert_file and key_file must be set together",
            ));
        }
        if self.tls.mutual && self.tls.trusted_peers.is_empty() && self.tls.ca_bundle.is_none() {
            return Err(TransportError::config(
                field("tls.mutual"),
                "mutual TLS needs trusted_peers or ca_bundle to check clients against",
            ));
        }
        if self.pool.max_size == Some(0) {
            return Err(TransportError::config(
                field("pool.max_size"),
                "0 would keep no connection; omit the field for unbounded",
            ));
        }
        Ok(())
    }

    /// The idle timeout as a duration.
    pub fn idle_duration(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// The stall deadline as a duration.
    pub fn stall_timeout(&self) -> Duration {
        Duration::from_millis(self.stall_timeout_ms)
    }

    /// The graceful-shutdown deadline as a duration.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// The quinn transport parameters for connections peers open to this node over `path`:
    /// as [`Self::quinn_transport`], with the narrower `accepted_receive_window` and no
    /// keep-alives (the peer keeps its connection alive).
    pub(crate) fn quinn_transport_accepted(&self, path: PathKind) -> quinn::TransportConfig {
        let mut t = self.quinn_transport(path);
        t.receive_window(
            quinn::VarInt::from_u64(self.accepted_receive_window).unwrap_or(quinn::VarInt::MAX),
        )
        .keep_alive_interval(None);
        t
    }

    /// The quinn transport parameters this config stands for, for connections over `path`.
    /// Assumes `validate` passed.
    pub(crate) fn quinn_transport(&self, path: PathKind) -> quinn::TransportConfig {
        let mut t = quinn::TransportConfig::default();
        let var = |v: u64| quinn::VarInt::from_u64(v).unwrap_or(quinn::VarInt::MAX);
        t.max_concurrent_bidi_streams(self.max_concurrent_bidi_streams.into())
            .max_concurrent_uni_streams(self.max_concurrent_uni_streams.into())
            .max_idle_timeout(quinn::IdleTimeout::try_from(self.idle_duration()).ok())
            .keep_alive_interval(
                self.keep_alive_interval_ms
                    .filter(|k| *k > 0)
                    .map(Duration::from_millis),
            )
            .stream_receive_window(var(self.stream_receive_window))
            .receive_window(var(self.connection_receive_window))
            .send_window(self.send_window)
            .enable_segmentation_offload(self.gso)
            .initial_mtu(self.initial_mtu)
            .datagram_receive_buffer_size(Some(self.datagram_receive_buffer));
        if self.max_mtu > self.initial_mtu {
            let mut mtu = quinn::MtuDiscoveryConfig::default();
            mtu.upper_bound(self.max_mtu);
            // The search stops once a step would move less than `minimum_change`, then
            // probes the upper bound if it is at least that far.
            mtu.minimum_change(match path {
                // So its first step is that probe.
                PathKind::Loopback => self.max_mtu - self.initial_mtu,
                // To the byte: quinn's 20 stops an Ethernet path at 1444 of its 1452, and
                // every packet of a long transfer would carry 8 bytes less.
                PathKind::Network => 1,
            });
            t.mtu_discovery_config(Some(mtu));
        } else {
            t.mtu_discovery_config(None);
        }
        // On loopback the path is this host: ten packets of the size it takes from the start
        // (RFC 9002's 10 × max_datagram_size). Elsewhere quinn's 14,720 bytes stand, which a
        // path MTU probe of up to `max_mtu` bytes may half fill; on loopback a reply of a few
        // packets behind that probe waited for the peer's delayed ACK (25 ms).
        let initial_window = match path {
            PathKind::Loopback => Some(10 * u64::from(self.max_mtu.max(self.initial_mtu))),
            PathKind::Network => None,
        };
        use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
        match self.congestion {
            CongestionController::Cubic => t.congestion_controller_factory(Arc::new(
                starting_with(initial_window, CubicConfig::initial_window),
            )),
            CongestionController::Bbr => t.congestion_controller_factory(Arc::new(starting_with(
                initial_window,
                BbrConfig::initial_window,
            ))),
            CongestionController::NewReno => t.congestion_controller_factory(Arc::new(
                starting_with(initial_window, NewRenoConfig::initial_window),
            )),
        };
        t
    }
}

/// A congestion controller's default config, with its first window set to `window` if given
/// (`set` is the config's `initial_window` setter).
fn starting_with<C: Default>(window: Option<u64>, set: fn(&mut C, u64) -> &mut C) -> C {
    let mut config = C::default();
    if let Some(window) = window {
        set(&mut config, window);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_loopback_address_is_a_loopback_path() {
        assert_eq!(PathKind::to("[::1]:1".parse().unwrap()), PathKind::Loopback);
        for other in ["[2001:db8::1]:1", "[fe80::1]:1", "[::]:1"] {
            assert_eq!(
                PathKind::to(other.parse().unwrap()),
                PathKind::Network,
                "{other}"
            );
        }
    }

    fn field_of(err: TransportError) -> String {
        match err {
            TransportError::Config { field, .. } => field,
            other => panic!("expected a config error, got {other}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        TransportConfig::default().validate("transport").unwrap();
    }

    #[test]
    fn each_bad_field_is_named() {
        type Breaker = Box<dyn Fn(&mut TransportConfig)>;
        let cases: Vec<(&str, Breaker)> = vec![
            (
                "transport.listen",
                Box::new(|c| c.listen = "127.0.0.1:1".parse().unwrap()),
            ),
            (
                "transport.max_connections",
                Box::new(|c| c.max_connections = Some(0)),
            ),
            (
                "transport.max_frame_size",
                Box::new(|c| c.max_frame_size = 10),
            ),
            (
                "transport.idle_timeout_ms",
                Box::new(|c| c.idle_timeout_ms = 0),
            ),
            (
                "transport.keep_alive_interval_ms",
                Box::new(|c| c.keep_alive_interval_ms = Some(60_000)),
            ),
            ("transport.send_window", Box::new(|c| c.send_window = 1)),
            (
                "transport.stream_receive_window",
                Box::new(|c| c.stream_receive_window = 1 << 30),
            ),
            ("transport.initial_mtu", Box::new(|c| c.initial_mtu = 500)),
            ("transport.max_mtu", Box::new(|c| c.max_mtu = 1200)),
            ("transport.max_mtu", Box::new(|c| c.max_mtu = 9000)),
            (
                "transport.socket_recv_buffer",
                Box::new(|c| c.socket_recv_buffer = Some(10)),
            ),
            (
                "transport.tls.key_file",
                Box::new(|c| c.tls.cert_file = Some("a.pem".into())),
            ),
            ("transport.tls.mutual", Box::new(|c| c.tls.mutual = true)),
            (
                "transport.pool.max_size",
                Box::new(|c| c.pool.max_size = Some(0)),
            ),
        ];
        for (expected, breaker) in cases {
            let mut c = TransportConfig {
                initial_mtu: 1300,
                ..TransportConfig::default()
            };
            breaker(&mut c);
            assert_eq!(field_of(c.validate("transport").unwrap_err()), expected);
        }
    }
}
