//! The embedding surface: a [`Stoq`] built by a [`StoqBuilder`].
//!
//! A host application asks STOQ for the parts it needs — a [`Transport`], a [`Router`], a
//! [`ChunkEngine`], an [`EdgeNetwork`] — and may inject its own implementation of any of them;
//! what it does not inject is STOQ's own ([`StoqEndpoint`], [`RoutingMatrix`],
//! [`FastCdcEngine`], [`EdgeRegistry`]). The parts are trait objects, so the host's types never
//! appear in STOQ's signatures. A network node started from a [`Stoq`]
//! ([`Stoq::start_node`]) uses what the host injected: its router ranks the node's upstreams,
//! its chunk engine cuts what the node publishes, its edge network answers LOCATE.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use stoq_transport::{NodeId, NodeIdentity, StoqEndpoint, TransportError};

use crate::chunking::{ChunkEngine, ContentId, FastCdcEngine};
pub use crate::client::Transport;
use crate::client::{FetchError, FetchOptions, FetchReport, Located};
use crate::config::{ConfigError, StoqConfig};
use crate::edge::{EdgeNetwork, EdgeRegistry, PrefixTable};
use crate::node::{Node, NodeError, NodeOptions, SharedEdges, SharedRouter};
use crate::protocol::Location;
use crate::routing::{Router, RoutingMatrix};
use crate::store::{Store, StoreError};

/// Why a [`Stoq`] could not be built or could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum FacadeError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The default transport could not start.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A fetch failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// Builds a [`Stoq`]: STOQ's own parts unless the host injects its own.
pub struct StoqBuilder {
    config: StoqConfig,
    transport: Option<Arc<dyn Transport>>,
    router: Option<Box<dyn Router>>,
    engine: Option<Arc<dyn ChunkEngine>>,
    edges: Option<Box<dyn EdgeNetwork>>,
}

impl StoqBuilder {
    /// A builder for `config` with nothing injected yet.
    pub fn new(config: StoqConfig) -> Self {
        StoqBuilder {
            config,
            transport: None,
            router: None,
            engine: None,
            edges: None,
        }
    }

    /// Uses the host's transport.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Uses the host's router.
    pub fn router(mut self, router: Box<dyn Router>) -> Self {
        self.router = Some(router);
        self
    }

    /// Uses the host's chunk engine (for stores opened through the facade).
    pub fn chunk_engine(mut self, engine: Arc<dyn ChunkEngine>) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Uses the host's edge selection.
    pub fn edge_network(mut self, edges: Box<dyn EdgeNetwork>) -> Self {
        self.edges = Some(edges);
        self
    }

    /// Validates the configuration and fills what was not injected with STOQ's own parts
    /// (the default transport is a client endpoint with the identity in `node.data_dir`).
    pub fn build(self) -> Result<Stoq, FacadeError> {
        self.config.validate()?;
        let transport = match self.transport {
            Some(t) => t,
            None => {
                let identity = NodeIdentity::from_config(
                    &self.config.transport.tls,
                    &self.config.node.data_dir,
                )?;
                Arc::new(StoqEndpoint::client(
                    self.config.transport.clone(),
                    identity,
                )?)
            }
        };
        Ok(Stoq {
            injected: Injected {
                router: self.router.is_some(),
                engine: self.engine.is_some(),
                edges: self.edges.is_some(),
            },
            router: Arc::new(RwLock::new(self.router.unwrap_or_else(|| {
                Box::new(RoutingMatrix::new(self.config.routing.weights))
            }))),
            engine: self.engine.unwrap_or_else(|| Arc::new(FastCdcEngine)),
            edges: Arc::new(RwLock::new(
                self.edges
                    .unwrap_or_else(|| Box::new(EdgeRegistry::new(PrefixTable::default()))),
            )),
            transport,
            config: self.config,
        })
    }
}

/// Which parts the host injected (a node uses those; it builds its own otherwise).
#[derive(Debug, Clone, Copy)]
struct Injected {
    router: bool,
    engine: bool,
    edges: bool,
}

/// STOQ as a host application holds it: the parts, and what they do together.
pub struct Stoq {
    config: StoqConfig,
    injected: Injected,
    transport: Arc<dyn Transport>,
    router: SharedRouter,
    engine: Arc<dyn ChunkEngine>,
    edges: SharedEdges,
}

impl std::fmt::Debug for Stoq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stoq")
            .field("node_id", &self.transport.node_id())
            .finish()
    }
}

impl Stoq {
    /// A builder for `config`.
    pub fn builder(config: StoqConfig) -> StoqBuilder {
        StoqBuilder::new(config)
    }

    /// The configuration.
    pub fn config(&self) -> &StoqConfig {
        &self.config
    }

    /// The transport (the host's, or a STOQ client endpoint).
    pub fn transport(&self) -> Arc<dyn Transport> {
        self.transport.clone()
    }

    /// The router (the host's, or a [`RoutingMatrix`]), behind a lock the host shares.
    pub fn router(&self) -> &SharedRouter {
        &self.router
    }

    /// The chunk engine (the host's, or FastCDC).
    pub fn chunk_engine(&self) -> Arc<dyn ChunkEngine> {
        self.engine.clone()
    }

    /// Edge selection (the host's, or an [`EdgeRegistry`]), behind a lock the host shares.
    pub fn edge_network(&self) -> &SharedEdges {
        &self.edges
    }

    /// Opens a content store in `dir` that chunks with this facade's engine.
    pub fn open_store(&self, dir: &Path) -> Result<Store, StoreError> {
        Store::open_with(dir, self.engine.clone())
    }

    /// Fetches `id` as any STOQ client does, through this facade's transport: asks the first
    /// of `sources` where to fetch from, then downloads from what it names and the rest of
    /// `sources` at once, every chunk verified, and writes it to `out`.
    pub async fn fetch<W: Write>(
        &self,
        sources: &[(NodeId, SocketAddr)],
        id: &ContentId,
        out: &mut W,
    ) -> Result<FetchReport, FacadeError> {
        let given = sources
            .iter()
            .map(|&(node, addr)| match stoq_transport::ensure_ipv6(addr)? {
                SocketAddr::V6(v6) => Ok((node, v6)),
                SocketAddr::V4(_) => unreachable!("ensure_ipv6 refuses IPv4"),
            })
            .collect::<Result<Vec<_>, TransportError>>()?;
        if given.is_empty() {
            return Err(FacadeError::Fetch(FetchError::NoSource));
        }
        let located = Located::locate(&*self.transport, &given, &Location::ByAddress).await?;
        let options = FetchOptions {
            active: located.sources.len(),
            ..Default::default()
        };
        Ok(located.fetch(id, out, &options, |_| Ok(0)).await?)
    }

    /// Starts a network node with this facade's configuration and the parts the host
    /// injected: the router ranks its upstreams, the chunk engine cuts what it publishes, the
    /// edge network answers its LOCATE requests. Parts not injected are the node's own (a
    /// routing matrix built from membership, FastCDC, an edge registry).
    pub async fn start_node(&self, mut options: NodeOptions) -> Result<Node, NodeError> {
        options.config = self.config.clone();
        if self.injected.router {
            options.router = Some(self.router.clone());
        }
        if self.injected.engine {
            options.chunk_engine = Some(self.engine.clone());
        }
        if self.injected.edges {
            options.edge_network = Some(self.edges.clone());
        }
        Node::start(options).await
    }
}
