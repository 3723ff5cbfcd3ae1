//! One configuration for a whole node, in sections, loaded from TOML.
//!
//! Precedence: built-in defaults, then the file, then command-line flags; then [`StoqConfig::validate`]
//! checks the result and names the first bad field. Unknown fields are refused, so a typo never
//! silently does nothing. A section holds only settings that its layer applies: the edge
//! section gains its fields with the edge network.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stoq_transport::{CongestionController, PoolConfig, TransportConfig, TransportError};

use crate::routing::{CostWeights, GeoPoint};

mod edge;
mod http;

pub use edge::{EdgeConfig, PolicyKind, PrefixEntry};
pub use http::{front_base_url, HttpConfig, MAX_HTTP_URL_LEN};

/// How log lines are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event (coloured only on a terminal).
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`), for log shippers.
    Json,
}

/// Who may join a node's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinPolicy {
    /// Only nodes that prove they hold the network's token (see `node::token`); membership
    /// messages from any other node are dropped.
    #[default]
    Closed,
    /// Any node that can reach a member may join. Node-to-node operations still carry
    /// proofs only the network's nodes can check, never the token.
    Open,
}

/// What a node does in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Holds published content in its store.
    Origin,
    /// A pull-through cache near clients.
    Edge,
    /// Forwards requests toward origins along routes, caching nothing.
    Relay,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Origin => "origin",
            Role::Edge => "edge",
            Role::Relay => "relay",
        })
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "origin" => Ok(Role::Origin),
            "edge" => Ok(Role::Edge),
            "relay" => Ok(Role::Relay),
            other => Err(format!("unknown role {other:?}: use origin, edge or relay")),
        }
    }
}

/// Longest region name a member may carry.
pub const MAX_REGION_LEN: usize = 64;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (the message names the key and line).
    #[error("config {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said, naming the field.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid configuration: {field}: {reason}")]
    Invalid {
        /// The field's path, such as `transport.max_frame_size`.
        field: String,
        /// Why it is refused.
        reason: String,
    },
}

impl From<TransportError> for ConfigError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Config { field, reason } => ConfigError::Invalid { field, reason },
            other => ConfigError::Invalid {
                field: "transport".into(),
                reason: other.to_string(),
            },
        }
    }
}

/// Settings of the running node itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Where the node keeps its identity, admin token, content store and cache.
    pub data_dir: PathBuf,
    /// What the node does in the network.
    pub role: Role,
    /// Its region name (free text, such as `eu-central`).
    pub region: String,
    /// Its position as `LAT,LON` in degrees, if known (used for nearest-edge selection).
    pub geo: Option<String>,
    /// Nodes to join through, as `NODEID@[ip]:port` (or `[ip]:port` where the command line
    /// can find the id in a known-nodes file).
    pub seeds: Vec<String>,
    /// Link capacity in Mbit/s that load is measured against.
    pub capacity_mbps: u32,
    /// Where `/metrics` is served (Prometheus text), if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
    /// The admin token file; `DATA_DIR/admin.token` (created if missing) when unset.
    pub admin_token_file: Option<PathBuf>,
    /// How often membership probes a random member (ms).
    pub probe_interval_ms: u64,
    /// How long a suspected member has to answer before it is declared down (ms).
    pub suspect_after_ms: u64,
    /// Content requests (manifests, chunks, runs, shards) the node works on at once; the rest
    /// wait briefly in order, then are answered BUSY so the client retries after a pause.
    pub max_concurrent_reads: u32,
    /// How long a content request waits for a slot before it is answered BUSY (ms); keep it
    /// under the client's 500 ms stall floor so BUSY arrives before the client gives up.
    pub read_queue_ms: u64,
    /// How often an origin hashes every stored blob again, and an edge every cache entry it
    /// trusts (ms); 0 turns the scrub off. Blobs are hashed when stored or first read after a
    /// start, and trusted until the scrub comes round.
    pub scrub_interval_ms: u64,
    /// Who may join the membership: `closed` (nodes holding the network's token) or `open`.
    pub membership: JoinPolicy,
    /// How `stoq serve` writes its log: `text` or `json` (`--log-format` overrides it).
    pub log_format: LogFormat,
    /// Which log events `stoq serve` writes, as `tracing` directives such as `info` or
    /// `warn,stoq=debug`; empty = `STOQ_LOG`, else `warn`. `STOQ_LOG`, when set, wins.
    pub log_level: String,
    /// Requests per second one client address (/64) may make; past it, BUSY "slow down".
    /// 0 = no limit. Members and requests carrying the admin token are not limited.
    pub client_requests_per_s: u32,
    /// Bytes per second one client address (/64) may be sent; 0 = no limit.
    pub client_bytes_per_s: u64,
    /// Requests per second on one connection; 0 = no limit.
    pub connection_requests_per_s: u32,
    /// Bytes per second sent on one connection; 0 = no limit.
    pub connection_bytes_per_s: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("./stoq-data"),
            role: Role::Origin,
            region: String::new(),
            geo: None,
            seeds: Vec::new(),
            capacity_mbps: 10_000,
            metrics: None,
            admin_token_file: None,
            probe_interval_ms: 1000,
            suspect_after_ms: 3000,
            max_concurrent_reads: 256,
            read_queue_ms: 200,
            scrub_interval_ms: 24 * 3600 * 1000,
            membership: JoinPolicy::Closed,
            log_format: LogFormat::Text,
            log_level: String::new(),
            client_requests_per_s: 0,
            client_bytes_per_s: 0,
            connection_requests_per_s: 0,
            connection_bytes_per_s: 0,
        }
    }
}

/// Routing settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Weights of the `balanced` objective's factors (see `stoq::routing::cost`).
    pub weights: CostWeights,
}

/// Chunking settings. Empty on purpose: chunk sizes are fixed per content kind (see
/// docs/PROTOCOL.md §8) because content ids depend on them, and two nodes that chunked the
/// same bytes differently would neither share chunks nor agree on ids. The kind can be
/// chosen per put (`stoq put --kind`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ChunkingConfig {}

/// A whole node's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct StoqConfig {
    /// QUIC, TLS, limits and the connection pool.
    pub transport: TransportConfig,
    /// The node itself.
    pub node: NodeConfig,
    /// Route selection.
    pub routing: RoutingConfig,
    /// How content is cut into chunks.
    pub chunking: ChunkingConfig,
    /// Edge caching and selection.
    pub edge: EdgeConfig,
    /// The HTTP front (off unless `http.listen` is set).
    pub http: HttpConfig,
}

impl StoqConfig {
    /// Reads, parses and validates a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: StoqConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The configuration as TOML, every field spelled out (what `stoq config` prints).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config always serialises")
    }

    /// Checks every section; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.transport.validate("transport")?;
        if let Some(name) = self.routing.weights.invalid_field() {
            return Err(ConfigError::Invalid {
                field: format!("routing.weights.{name}"),
                reason: "must be a finite number, 0 or more".into(),
            });
        }
        let invalid = |field: &str, reason: &str| {
            Err(ConfigError::Invalid {
                field: field.into(),
                reason: reason.into(),
            })
        };
        if self.node.data_dir.as_os_str().is_empty() {
            return invalid("node.data_dir", "must not be empty");
        }
        if self.node.region.len() > MAX_REGION_LEN {
            return invalid("node.region", "at most 64 bytes");
        }
        if let Some(geo) = &self.node.geo {
            if GeoPoint::parse(geo).is_none() {
                return invalid("node.geo", "must be LAT,LON in degrees, such as 50.1,8.7");
            }
        }
        if self.node.capacity_mbps == 0 {
            return invalid("node.capacity_mbps", "must be at least 1");
        }
        if let Some(addr) = self.node.metrics {
            if stoq_transport::ensure_ipv6(addr).is_err() {
                return invalid(
                    "node.metrics",
                    "STOQ is IPv6-only: use an address like [::1]:9090",
                );
            }
        }
        if self.node.probe_interval_ms < 50 || self.node.suspect_after_ms < 100 {
            return invalid(
                "node.probe_interval_ms",
                "probing needs at least 50 ms between probes and 100 ms of suspicion",
            );
        }
        for seed in &self.node.seeds {
            if let Err(why) = check_seed(seed) {
                return invalid("node.seeds", &format!("{seed:?}: {why}"));
            }
        }
        if self.node.max_concurrent_reads == 0 {
            return invalid("node.max_concurrent_reads", "must be at least 1");
        }
        if self.node.read_queue_ms >= 500 {
            return invalid(
                "node.read_queue_ms",
                "must be under 500 (a client counts a stall after 500 ms)",
            );
        }
        if let Some((field, reason)) = self.http.invalid_field() {
            return invalid(field, reason);
        }
        if self.http.redirect_to_nearest_edge && self.node.role == Role::Edge {
            return invalid(
                "http.redirect_to_nearest_edge",
                "an edge serves what it is asked; only origins and relays redirect",
            );
        }
        if let Some((field, reason)) = self.edge.invalid_field() {
            return invalid(field, &reason);
        }
        Ok(())
    }

    /// For an edge or origin serving many clients: 100,000 connections (with a narrower
    /// window for strangers, so what they can hold stays near 25 GiB at worst), BBR (steadier
    /// on long lossy paths to clients), more concurrent streams per client, keep-alives so
    /// idle clients stay connected, and a large pool for upstream peers.
    pub fn cdn_optimized() -> Self {
        StoqConfig {
            transport: TransportConfig {
                max_connections: Some(100_000),
                accepted_receive_window: 256 * 1024,
                congestion: CongestionController::Bbr,
                idle_timeout_ms: 60_000,
                keep_alive_interval_ms: Some(15_000),
                max_concurrent_bidi_streams: 1024,
                max_concurrent_uni_streams: 256,
                stream_receive_window: 2 * 1024 * 1024,
                connection_receive_window: 32 * 1024 * 1024,
                send_window: 32 * 1024 * 1024,
                pool: PoolConfig {
                    max_size: Some(4096),
                    idle_timeout_ms: 120_000,
                },
                ..TransportConfig::default()
            },
            ..StoqConfig::default()
        }
    }

    /// For bulk transfer between a few nodes on fast links: large flow-control windows and
    /// socket buffers so one connection can fill the pipe, GSO on.
    pub fn high_performance() -> Self {
        StoqConfig {
            transport: TransportConfig {
                stream_receive_window: 32 * 1024 * 1024,
                connection_receive_window: 64 * 1024 * 1024,
                send_window: 64 * 1024 * 1024,
                socket_send_buffer: Some(16 * 1024 * 1024),
                socket_recv_buffer: Some(16 * 1024 * 1024),
                gso: true,
                ..TransportConfig::default()
            },
            ..StoqConfig::default()
        }
    }
}

/// Checks a seed's form: `NODEID@[ipv6]:port` or `[ipv6]:port` (whose id the command line may
/// find in its known-nodes file). The one check `stoq config` and `stoq serve` both apply.
pub fn check_seed(seed: &str) -> Result<(), String> {
    let addr = match seed.split_once('@') {
        Some((id, addr)) => {
            id.parse::<stoq_transport::NodeId>()
                .map_err(|e| format!("bad node id: {e}"))?;
            addr
        }
        None => seed,
    };
    stoq_transport::parse_ipv6(addr)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_and_defaults_validate() {
        StoqConfig::default().validate().unwrap();
        StoqConfig::cdn_optimized().validate().unwrap();
        StoqConfig::high_performance().validate().unwrap();
    }

    #[test]
    fn a_file_overrides_defaults_and_keeps_the_rest() {
        let c = StoqConfig::from_toml(
            "[transport]\nlisten = \"[::1]:9000\"\nmax_connections = 10\ncongestion = \"bbr\"\n",
            "test",
        )
        .unwrap();
        assert_eq!(c.transport.listen.port(), 9000);
        assert_eq!(c.transport.max_connections, Some(10));
        assert_eq!(c.transport.congestion, CongestionController::Bbr);
        assert_eq!(
            c.transport.max_frame_size,
            TransportConfig::default().max_frame_size
        );
    }

    #[test]
    fn keep_alives_can_be_turned_off_from_a_file() {
        let c = StoqConfig::from_toml("[transport]\nkeep_alive_interval_ms = 0\n", "t").unwrap();
        assert_eq!(c.transport.keep_alive_interval_ms, Some(0));
        let m = message("[transport]\nidle_timeout_ms = 1000\nkeep_alive_interval_ms = 5000\n");
        assert!(m.contains("keep_alive_interval_ms"), "{m}");
    }

    #[test]
    fn printed_config_reads_back_identically() {
        let c = StoqConfig::cdn_optimized();
        assert_eq!(StoqConfig::from_toml(&c.to_toml(), "printed").unwrap(), c);
    }

    fn message(text: &str) -> String {
        StoqConfig::from_toml(text, "stoq.toml")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_broken_config_names_its_field() {
        let m = message("[transport]\nmax_frame_size = \"big\"\n");
        assert!(m.contains("max_frame_size"), "{m}");
        let m = message("[transport]\nmax_conections = 5\n");
        assert!(m.contains("max_conections"), "typo is named: {m}");
        let m = message("[transport]\nmax_frame_size = 100\n");
        assert!(m.contains("transport.max_frame_size"), "{m}");
        let m = message("[transport]\nlisten = \"127.0.0.1:4433\"\n");
        assert!(
            m.contains("transport.listen") && m.contains("IPv6-only"),
            "{m}"
        );
        let m = message("[transport.tls]\nmutual = true\n");
        assert!(m.contains("transport.tls.mutual"), "{m}");
        let m = message("[routing]\nweight = 1\n");
        assert!(m.contains("weight"), "{m}");
        let m = message("[routing.weights]\nload = -2.0\n");
        assert!(m.contains("routing.weights.load"), "{m}");
        let m = message("[node]\ndata_dir = \"\"\n");
        assert!(m.contains("node.data_dir"), "{m}");
        let m = message("[node]\ngeo = \"north\"\n");
        assert!(m.contains("node.geo"), "{m}");
        let m = message("[node]\nrole = \"cache\"\n");
        assert!(m.contains("role"), "{m}");
        let m = message("[edge]\ncache_bytes = 10\n");
        assert!(m.contains("edge.cache_bytes"), "{m}");
        let m = message("[node]\nmetrics = \"127.0.0.1:9090\"\n");
        assert!(m.contains("IPv6-only"), "{m}");
        let m = message("[[edge.prefixes]]\nprefix = \"10.0.0.0/8\"\nregion = \"x\"\n");
        assert!(m.contains("edge.prefixes.prefix"), "{m}");
        let ok = StoqConfig::from_toml(
            "[[edge.prefixes]]\nprefix = \"2001:db8:100::/40\"\nregion = \"eu\"\ngeo = \"50,8\"\n",
            "t",
        )
        .unwrap();
        let table = ok.edge.prefix_table();
        assert_eq!(
            table
                .lookup("2001:db8:1ff::1".parse().unwrap())
                .map(|(r, _)| r),
            Some("eu")
        );
        let m = message("not toml at all [");
        assert!(m.contains("stoq.toml"), "{m}");
    }

    #[test]
    fn front_urls_and_redirects_are_checked() {
        let m = message("[http]\npublic_url = \"ftp://x.example\"\n");
        assert!(
            m.contains("http.public_url") && m.contains("http://"),
            "{m}"
        );
        let m = message("[http]\npublic_url = \"https://x.example/some/path\"\n");
        assert!(m.contains("no path"), "{m}");
        let m = message("[node]\nrole = \"edge\"\n[http]\nredirect_to_nearest_edge = true\n");
        assert!(m.contains("http.redirect_to_nearest_edge"), "{m}");
        assert_eq!(
            front_base_url("https://[2001:db8::5]:8443/").as_deref(),
            Ok("https://[2001:db8::5]:8443")
        );
        assert!(front_base_url(&format!("https://{}.example", "a".repeat(200))).is_err());
        assert!(front_base_url("https://x.example?q=1").is_err());
        assert!(front_base_url("/relative").is_err());
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let err = StoqConfig::load(Path::new("/nonexistent/stoq.toml")).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }
}
