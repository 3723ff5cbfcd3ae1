//! The command-line surface (documented in README.md) and how flags become a config.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use stoq::transport::{parse_ipv6, NodeId};
use stoq::StoqConfig;

use crate::usage::usage;

/// STOQ: QUIC-over-IPv6 transport and content delivery.
#[derive(Debug, Parser)]
#[command(name = "stoq", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as `text` or `json` (one object per line); for `serve`, overrides the
    /// config's `node.log_format`. The level comes from `STOQ_LOG` (default `warn`).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    pub log_format: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node until Ctrl-C or SIGTERM, then shut down gracefully.
    Serve(ServeArgs),
    /// Ask a node for its id over a pinned connection (checks that it is up and who it is).
    Ping(PingArgs),
    /// Print a configuration as TOML (defaults, a preset, or a file merged with defaults).
    Config(ConfigArgs),
    /// Store a file: chunk it, deduplicate, optionally erasure-code; prints the content id.
    Put(PutArgs),
    /// Read content back by id, every chunk verified.
    Get(GetArgs),
    /// Show a store's totals (objects, logical and stored bytes, dedup ratio).
    Status(StatusArgs),
    /// Remove content from a store; chunks other content shares stay.
    Delete(DeleteArgs),
    /// Remove content from the whole network (every edge cache and origin) via one node.
    Purge(AdminArgs),
    /// Have an edge pull content into its cache ahead of demand.
    Prefetch(AdminArgs),
    /// Mutable names: point a name at a content id (with TTL), or look one up.
    #[command(subcommand)]
    Name(NameCommand),
    /// Remove blob files no content refers to (left by interrupted puts).
    Gc(GcArgs),
    /// Verify a store (every blob, the index against the files); `--repair` rebuilds a lost or
    /// damaged index from the files and drops corrupt blobs.
    Check(CheckArgs),
    /// Compute routes over a topology file.
    Route(RouteArgs),
    /// Run the system on this machine and say what happened and how fast.
    Demo(DemoArgs),
    /// Measure against baselines in the same run.
    Bench(BenchArgs),
}

/// `stoq serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on (IPv6), e.g. `[::1]:4433`; port 0 picks a free one.
    #[arg(long)]
    pub listen: Option<String>,
    /// Where the node keeps its identity and data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// What the node does: origin (stores content), edge (caches near clients) or relay.
    #[arg(long, value_parser = ["origin", "edge", "relay"])]
    pub role: Option<String>,
    /// The node's region name, e.g. `eu-central`.
    #[arg(long)]
    pub region: Option<String>,
    /// The node's position, `LAT,LON` in degrees.
    #[arg(long, allow_hyphen_values = true)]
    pub geo: Option<String>,
    /// A node to join through: `NODEID@[ip]:port`, or `[ip]:port` if in the known-nodes file.
    #[arg(long = "seed")]
    pub seeds: Vec<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (IPv6), e.g. `[::1]:9090`.
    #[arg(long)]
    pub metrics: Option<String>,
    /// Link capacity in Mbit/s that load is measured against.
    #[arg(long)]
    pub capacity_mbps: Option<u32>,
    /// The admin token file (share one across a network so forwarded purges are accepted);
    /// default DATA_DIR/admin.token, created at first start.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// `stoq ping`.
#[derive(Debug, Args)]
pub struct PingArgs {
    /// The node's address (IPv6).
    #[arg(long)]
    pub node: String,
    /// The node id it must prove (as printed by `stoq serve`).
    #[arg(long)]
    pub node_id: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Built-in configurations.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Preset {
    /// The defaults.
    Default,
    /// `StoqConfig::cdn_optimized()`.
    Cdn,
    /// `StoqConfig::high_performance()`.
    HighPerformance,
}

impl Preset {
    /// The preset's name as typed on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Default => "default",
            Preset::Cdn => "cdn",
            Preset::HighPerformance => "high-performance",
        }
    }

    /// The configuration the preset names.
    pub fn config(self) -> StoqConfig {
        match self {
            Preset::Default => StoqConfig::default(),
            Preset::Cdn => StoqConfig::cdn_optimized(),
            Preset::HighPerformance => StoqConfig::high_performance(),
        }
    }
}

/// `stoq config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Start from this preset.
    #[arg(long, value_enum, default_value = "default")]
    pub preset: Preset,
    /// Validate this file and print it merged with the defaults.
    #[arg(long, conflicts_with = "preset")]
    pub file: Option<PathBuf>,
}

/// `stoq put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// Publish to this origin over the network instead of a local store
    /// (`NODEID@[ip]:port`, or `[ip]:port` if in the known-nodes file).
    #[arg(long, conflicts_with = "data_dir")]
    pub node: Option<String>,
    /// The admin token file for `--node` (default: ./stoq-data/admin.token if present).
    #[arg(long, requires = "node")]
    pub token_file: Option<PathBuf>,
    /// Restrict reads of this content to holders of the token in this file.
    #[arg(long, requires = "node")]
    pub read_token_file: Option<PathBuf>,
    /// The file to store.
    pub file: PathBuf,
    /// The store's directory.
    #[arg(long, default_value = "./stoq-data")]
    pub data_dir: PathBuf,
    /// Erasure-code each chunk into K data + M parity shards, e.g. `4+2`.
    #[arg(long)]
    pub erasure: Option<String>,
    /// Chunk as this kind instead of sniffing the content.
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Content kinds, for `--kind`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    /// Small chunks (16 KiB average).
    Text,
    /// Medium chunks (64 KiB average).
    Binary,
    /// Large chunks (1 MiB average).
    Media,
}

impl From<KindArg> for stoq::chunking::ContentKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Text => stoq::chunking::ContentKind::Text,
            KindArg::Binary => stoq::chunking::ContentKind::Binary,
            KindArg::Media => stoq::chunking::ContentKind::Media,
        }
    }
}

/// `stoq get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The content id (64 hex digits).
    pub id: String,
    /// Where to write it: a regular file is written whole, then renamed into place; a device
    /// or FIFO is written into as it is; `-` or nothing is standard output.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// The store's directory.
    #[arg(long, default_value = "./stoq-data")]
    pub data_dir: PathBuf,
    /// Print one JSON object (needs -o).
    #[arg(long, requires = "output")]
    pub json: bool,
    /// Fetch over the network: the first node is asked for the nearest edges; every node
    /// given is also a candidate source (`NODEID@[ip]:port` or a known `[ip]:port`).
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// The client's position, `LAT,LON`, for choosing the nearest edge.
    #[arg(long, allow_hyphen_values = true, requires = "nodes")]
    pub near: Option<String>,
    /// How many sources to fetch from at once; the others stand by for failover.
    #[arg(long, default_value_t = 2, requires = "nodes",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub parallel: usize,
    /// The read token for restricted content (a file holding it).
    #[arg(long, requires = "nodes")]
    pub read_token_file: Option<PathBuf>,
}

/// `stoq status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Ask a running node for its view (peers, routes, cache, store) instead.
    #[arg(long)]
    pub node: Option<String>,
    /// The store's directory.
    #[arg(long, default_value = "./stoq-data")]
    pub data_dir: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `stoq gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// The store's directory.
    #[arg(long, default_value = "./stoq-data")]
    pub data_dir: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `stoq check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The store's directory.
    #[arg(long, default_value = "./stoq-data")]
    pub data_dir: PathBuf,
    /// Rebuild a missing or damaged index from the files, delete corrupt blobs.
    #[arg(long)]
    pub repair: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `stoq delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The content id.
    pub id: String,
    /// The store's directory.
    #[arg(long, default_value = "./stoq-data")]
    pub data_dir: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What a route is chosen for (see `stoq::routing::Objective`).
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ObjectiveArg {
    /// Lowest sum of link RTTs.
    Latency,
    /// Widest bottleneck, ties by latency.
    Bandwidth,
    /// The documented multi-factor cost.
    Balanced,
}

impl From<ObjectiveArg> for stoq::routing::Objective {
    fn from(o: ObjectiveArg) -> Self {
        match o {
            ObjectiveArg::Latency => stoq::routing::Objective::Latency,
            ObjectiveArg::Bandwidth => stoq::routing::Objective::Bandwidth,
            ObjectiveArg::Balanced => stoq::routing::Objective::Balanced,
        }
    }
}

/// `stoq route`.
#[derive(Debug, Args)]
pub struct RouteArgs {
    /// Topology JSON file: `{"nodes":[...],"links":[...]}` (see `examples/topology.json`).
    #[arg(long)]
    pub topology: PathBuf,
    /// Source node id.
    #[arg(long)]
    pub from: String,
    /// Destination node id.
    #[arg(long)]
    pub to: String,
    /// What the route is chosen for.
    #[arg(long, value_enum, default_value = "balanced")]
    pub objective: ObjectiveArg,
    /// Also list up to this many failover routes (node-disjoint first).
    #[arg(long, default_value_t = 0)]
    pub alternatives: usize,
    /// TOML configuration whose `[routing.weights]` the balanced objective uses.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `stoq demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Size of the file the failover step fetches, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub size: usize,
}

/// `stoq bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[command(subcommand)]
    pub name: BenchName,
}

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchName {
    /// Bulk transfer over [::1]: STOQ vs raw quinn vs TCP+TLS 1.3 vs plain TCP.
    Transport(TransportBenchArgs),
    /// Route computation on realistic topologies vs petgraph's Dijkstra, and predictor error.
    Route(RouteBenchArgs),
    /// Chunk + hash + index throughput vs fastcdc alone and blake3 alone; dedup on real trees.
    Chunking(ChunkingBenchArgs),
    /// Erasure encode/decode throughput vs reed-solomon-simd called directly.
    Erasure(ErasureBenchArgs),
    /// Concurrent connections: handshakes per second and memory per connection vs raw quinn.
    Connections(ConnectionsBenchArgs),
    /// Chunk retrieval latency from an origin, an edge miss and an edge hit vs raw quinn.
    Retrieval(RetrievalBenchArgs),
    /// Whole verified downloads from an origin, an edge and both vs raw quinn and nginx.
    Delivery(DeliveryBenchArgs),
    /// Share of a tbf-shaped link between two network namespaces a download uses, vs TCP.
    Utilization(UtilizationBenchArgs),
}

/// `stoq bench retrieval`.
#[derive(Debug, Args)]
pub struct RetrievalBenchArgs {
    /// Bytes of content to publish and retrieve chunk by chunk.
    #[arg(long, default_value_t = 16 << 20)]
    pub size: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `stoq bench delivery`.
#[derive(Debug, Args)]
pub struct DeliveryBenchArgs {
    /// Bytes of content to publish and download.
    #[arg(long, default_value_t = 256 << 20)]
    pub size: usize,
    /// Rounds of each case (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Also run this many downloads from the origin at once (0: none).
    #[arg(long, default_value_t = 0)]
    pub clients: usize,
    /// Sockets each node serves from on its port (SO_REUSEPORT; 0: one per core).
    #[arg(long, default_value_t = 0)]
    pub endpoints: u32,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `stoq bench utilization`.
#[derive(Debug, Args)]
pub struct UtilizationBenchArgs {
    /// The link's rate, as tc spells it.
    #[arg(long, default_value = "200mbit")]
    pub rate: String,
    /// Bytes of content to download.
    #[arg(long, default_value_t = 64 << 20)]
    pub size: usize,
    /// Downloads of each kind.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Configuration file for the serving node (e.g. another congestion controller).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Hidden helper: serve TCP at this address.
    #[arg(long, hide = true)]
    pub tcp_serve: Option<String>,
    /// Hidden helper: fetch over TCP from this address.
    #[arg(long, hide = true)]
    pub tcp_fetch: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `stoq bench connections`.
#[derive(Debug, Args)]
pub struct ConnectionsBenchArgs {
    /// Connections held open at once.
    #[arg(long, default_value_t = 2000)]
    pub count: usize,
    /// STOQ's configuration (for example without keep-alives); default settings otherwise.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Run one side only, in this process (used by the benchmark itself).
    #[arg(long, hide = true)]
    pub only: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `stoq bench chunking`.
#[derive(Debug, Args)]
pub struct ChunkingBenchArgs {
    /// Bytes of the in-memory buffer.
    #[arg(long, default_value_t = 512 << 20)]
    pub size: usize,
    /// Rounds; figures are medians.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Older version of a source tree (default: the largest crate with two versions in the
    /// local cargo registry).
    #[arg(long, requires = "new")]
    pub old: Option<PathBuf>,
    /// Newer version of the same tree.
    #[arg(long, requires = "old")]
    pub new: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `stoq bench erasure`.
#[derive(Debug, Args)]
pub struct ErasureBenchArgs {
    /// Bytes of data coded per round.
    #[arg(long, default_value_t = 256 << 20)]
    pub size: usize,
    /// Chunk size in bytes (each chunk is one stripe).
    #[arg(long, default_value_t = 1 << 20)]
    pub chunk: usize,
    /// Erasure policy K+M.
    #[arg(long, default_value = "4+2")]
    pub erasure: String,
    /// Rounds; figures are medians.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `stoq bench route`.
#[derive(Debug, Args)]
pub struct RouteBenchArgs {
    /// Topology sizes to measure (repeat the flag); default 100, 1000 and 10000.
    #[arg(long = "nodes")]
    pub nodes: Vec<usize>,
    /// Random source/destination pairs timed per size and objective.
    #[arg(long, default_value_t = 1000)]
    pub queries: usize,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `stoq bench transport`.
#[derive(Debug, Args)]
pub struct TransportBenchArgs {
    /// Bytes moved per round and per transport.
    #[arg(long, default_value_t = 256 << 20)]
    pub size: usize,
    /// Concurrent streams (TCP: connections) the bytes are split across.
    #[arg(long, default_value_t = 1)]
    pub streams: usize,
    /// Rounds; each transport's figure is its median round.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Configuration STOQ runs with.
    #[arg(long, value_enum, default_value = "default")]
    pub preset: Preset,
    /// A TOML configuration for STOQ instead of a preset (its listen address is ignored).
    #[arg(long, conflicts_with = "preset")]
    pub config: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `stoq purge` and `stoq prefetch`: an admin request about one content id.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The content id (64 hex characters).
    pub id: String,
    /// The node to send it to (`NODEID@[ip]:port` or a known `[ip]:port`).
    #[arg(long)]
    pub node: String,
    /// The admin token file (default: ./stoq-data/admin.token if present).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Print the node's answer as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `stoq name`.
#[derive(Debug, Subcommand)]
pub enum NameCommand {
    /// Point NAME at content ID on an origin (admin token).
    Set(NameSetArgs),
    /// What NAME points at, as a node answers it (edges answer from their copy while fresh).
    Get(NameGetArgs),
}

/// `stoq name set`.
#[derive(Debug, Args)]
pub struct NameSetArgs {
    /// The name.
    pub name: String,
    /// The content id it points at.
    pub id: String,
    /// The origin (`NODEID@[ip]:port` or a known `[ip]:port`).
    #[arg(long)]
    pub node: String,
    /// The admin token file (default: ./stoq-data/admin.token if present).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Seconds an edge may answer from its copy.
    #[arg(long, default_value_t = 60)]
    pub ttl: u32,
    /// Seconds after that it may still answer from its copy while refreshing it.
    #[arg(long, default_value_t = 300)]
    pub swr: u32,
    /// Print the record as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `stoq name get`.
#[derive(Debug, Args)]
pub struct NameGetArgs {
    /// The name.
    pub name: String,
    /// The node to ask.
    #[arg(long)]
    pub node: String,
    /// Print the record as JSON.
    #[arg(long)]
    pub json: bool,
}

/// An IPv6 address from the command line; IPv4 is a usage error.
pub fn address(text: &str) -> Result<SocketAddr> {
    parse_ipv6(text).map_err(usage)
}

/// A node id from the command line.
pub fn node_id(text: &str) -> Result<NodeId> {
    text.parse().map_err(usage)
}
