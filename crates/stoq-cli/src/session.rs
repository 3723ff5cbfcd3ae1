//! What every command that reaches a node needs: a client endpoint, a pinned connection, the
//! admin or read token from its file, and a clean hang-up.

use std::net::SocketAddrV6;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use stoq::client;
use stoq::node::TOKEN_FILE;
use stoq::protocol::{PutAnswer, PutSettings};
use stoq::transport::{NodeId, NodeIdentity, StoqConnection, StoqEndpoint};
use stoq::AdminToken;

use crate::known;
use crate::usage::usage;

/// A client endpoint with a fresh identity.
pub fn endpoint() -> Result<StoqEndpoint> {
    Ok(StoqEndpoint::client(
        Default::default(),
        NodeIdentity::generate()?,
    )?)
}

pub async fn connect(
    client: &StoqEndpoint,
    id: NodeId,
    addr: SocketAddrV6,
) -> Result<StoqConnection> {
    client::dial(client, id, addr)
        .await
        .with_context(|| format!("cannot reach {addr}"))
}

/// The admin token: `--token-file`, else `./stoq-data/admin.token` if it exists.
pub fn token(file: Option<&Path>) -> Result<AdminToken> {
    let default = PathBuf::from("./stoq-data").join(TOKEN_FILE);
    let path = match file {
        Some(p) => p.to_path_buf(),
        None if default.exists() => default,
        None => {
            return Err(usage(
                "this needs the node's admin token: --token-file FILE (the node's DATA_DIR/admin.token)",
            ))
        }
    };
    AdminToken::read(&path).map_err(usage)
}

/// A read token from `--read-token-file`, if given.
pub fn read_token(file: Option<&Path>) -> Result<Option<String>> {
    file.map(|path| {
        std::fs::read_to_string(path)
            .map(|t| t.trim().to_owned())
            .with_context(|| format!("cannot read {}", path.display()))
    })
    .transpose()
}

/// A connection to an origin with the admin token, for publishing.
pub struct Publisher {
    client: StoqEndpoint,
    conn: StoqConnection,
    token: AdminToken,
    /// The origin's address.
    pub addr: SocketAddrV6,
}

impl Publisher {
    /// Connects to `node` (pinned) with the token from `token_file`.
    pub async fn open(node: &str, token_file: Option<&Path>) -> Result<Self> {
        let (id, addr) = known::resolve(node)?;
        let token = token(token_file)?;
        let client = endpoint()?;
        let conn = connect(&client, id, addr).await?;
        Ok(Publisher {
            client,
            conn,
            token,
            addr,
        })
    }

    /// Publishes the file at `path`, moving `bar` by the bytes sent.
    pub async fn publish(
        &self,
        path: &Path,
        settings: PutSettings,
        bar: &indicatif::ProgressBar,
    ) -> Result<PutAnswer> {
        let file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut body = bar.wrap_async_read(file);
        client::publish_from(&self.conn, self.token.as_str(), &mut body, settings)
            .await
            .with_context(|| format!("{} refused the upload", self.addr))
    }

    /// Closes the connection.
    pub async fn hang_up(self) {
        self.client.hang_up().await;
    }
}
