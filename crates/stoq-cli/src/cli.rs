//! The command-line surface (documented in README.md) and how flags become a config.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

pub use crate::bench_args::*;
pub use crate::preset::Preset;
use stoq::transport::{parse_ipv6, NodeId};

use crate::usage::usage;

/// STOQ: QUIC-over-IPv6 transport and content delivery.
#[derive(Debug, Parser)]
#[command(name = "stoq", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as `text` or `json` (one object per line); for `serve`, overrides the
    /// config's `node.log_format`. The level comes from `STOQ_LOG`, else the config's
    /// `node.log_level`, else `warn`.
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

impl Command {
    /// Whether the command runs nodes (`serve`, `demo`, `bench`), which serve many peers at
    /// once and want a thread per core. Every other command is one client's requests: one
    /// thread drives its connections and its tasks hand work to each other without waking
    /// another thread (a 1 GiB `stoq get` spends about 15 % less CPU so, docs/PERFORMANCE.md).
    pub fn runs_nodes(&self) -> bool {
        matches!(
            self,
            Command::Serve(_) | Command::Demo(_) | Command::Bench(_)
        )
    }
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
    /// Serve the node's content over HTTP at ADDR (IPv6), e.g. `[::1]:8080`: /c/ID, /n/NAME.
    #[arg(long)]
    pub http: Option<String>,
    /// A PEM certificate chain for the HTTP front (HTTPS: HTTP/1.1 and HTTP/2).
    #[arg(long, requires = "http_key")]
    pub http_cert: Option<PathBuf>,
    /// The PEM private key of --http-cert.
    #[arg(long, requires = "http_cert")]
    pub http_key: Option<PathBuf>,
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
    /// The file to store, or a directory to publish as a collection (its files, then the
    /// listing of their paths, ids, sizes and media types; `get ID -o DIR` restores it).
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
    /// FILE is gzip-compressed (a .tar.gz, a .crate): publish what it holds, which dedups
    /// across versions where the compressed bytes do not; readers then get the tar.
    #[arg(long)]
    pub gunzip: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

impl PutArgs {
    /// `--erasure K+M`, checked (a usage error when it does not parse).
    pub fn erasure_policy(&self) -> anyhow::Result<Option<stoq::chunking::ErasurePolicy>> {
        self.erasure
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(crate::usage::usage)
    }
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
    /// A tar archive: a chunk per header, each member's data cut on its own.
    Tar,
    /// A zip archive: a chunk per local header, each member's data cut on its own.
    Zip,
}

impl From<KindArg> for stoq::chunking::ContentKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Text => stoq::chunking::ContentKind::Text,
            KindArg::Binary => stoq::chunking::ContentKind::Binary,
            KindArg::Media => stoq::chunking::ContentKind::Media,
            KindArg::Tar => stoq::chunking::ContentKind::Tar,
            KindArg::Zip => stoq::chunking::ContentKind::Zip,
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
    /// An earlier version on this machine (a file, or a directory of them; repeat the flag):
    /// chunks it shares with the content are copied from it, verified, instead of fetched.
    #[arg(long, requires = "nodes")]
    pub reuse: Vec<PathBuf>,
    /// Neither consult nor fill this machine's chunk cache (`$STOQ_CACHE_DIR`, else
    /// `~/.cache/stoq/chunks`; `$STOQ_CACHE_BYTES` bytes, 1 GiB by default).
    #[arg(long, requires = "nodes")]
    pub no_cache: bool,
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
    /// With --node: ask again every 2 s (the screen is redrawn; with --json, a line each)
    /// until Ctrl-C.
    #[arg(long, requires = "node")]
    pub watch: bool,
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
