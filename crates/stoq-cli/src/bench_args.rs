//! The `stoq bench` subcommands' arguments (the rest of the command line is in `cli.rs`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::preset::Preset;

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
    /// Bytes stored for a new version of an archive or file given the old one: tar-aware,
    /// content-defined and fixed 256 KiB chunks, against the changed members' bytes.
    Dedup(DedupBenchArgs),
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
    /// curl from a node's HTTPS front (HTTP/1.1, HTTP/2) vs nginx; first byte via a cold edge.
    Http(HttpBenchArgs),
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
    /// Also run this many downloads from the origin, each its own client (0: none).
    #[arg(long, default_value_t = 0)]
    pub clients: usize,
    /// With --clients: run them in batches of this many started together (0: all at once).
    /// Each holds its output file until its batch is checked, so this bounds their memory.
    #[arg(long, default_value_t = 0)]
    pub at_once: usize,
    /// With --clients: client threads they are spread over, each a current-thread runtime as
    /// a `stoq get` process has (0: one per core).
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
    /// Sockets each node serves from on its port (SO_REUSEPORT; 0: one per core).
    #[arg(long, default_value_t = 0)]
    pub endpoints: u32,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `stoq bench http`.
#[derive(Debug, Args)]
pub struct HttpBenchArgs {
    /// Bytes of content to publish and download.
    #[arg(long, default_value_t = 256 << 20)]
    pub size: usize,
    /// Rounds of each case (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
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
    /// Delay added to every packet the server sends, in ms (tc netem): the link's RTT.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u32,
    /// Share of the server's packets lost, in percent (tc netem), such as 0.5.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f64,
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

/// `stoq bench dedup`.
#[derive(Debug, Args)]
pub struct DedupBenchArgs {
    /// The earlier version (a file or a tar; decompress a .tar.gz first).
    #[arg(long)]
    pub old: PathBuf,
    /// The later version.
    #[arg(long)]
    pub new: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}
