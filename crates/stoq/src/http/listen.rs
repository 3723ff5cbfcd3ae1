//! Where the front listens: an IPv6 TCP socket, TLS when a certificate is given (HTTP/1.1 and
//! HTTP/2 chosen by ALPN), and one task per connection served by hyper, each connection
//! bounded in time and in number.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use super::error::HttpError;
use super::limits::{
    HEAD_DEADLINE, MAX_HEAD_BYTES, MAX_HTTP_CONNECTIONS, MAX_STREAMS_PER_CONNECTION,
};
use crate::config::HttpConfig;
use http_body_util::BodyExt;

use super::answer::BodyError;
use super::front::{Client, Front};
use super::serve::handle;
use crate::node::{bind_tcp_v6, Node};

/// Numbers given to front connections start here, apart from QUIC connections' ids, so the
/// admission's per-connection shares never mix the two.
const FIRST_CLIENT: usize = 1 << (usize::BITS - 2);

/// A running HTTP front.
#[derive(Debug)]
pub struct HttpFront {
    url: String,
    local_addr: SocketAddr,
    http3: bool,
    stop: watch::Sender<Option<Duration>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The TCP listener, and with TLS the HTTP/3 endpoint on the same port number.
fn bind_both(
    addr: SocketAddr,
    tls: Option<&rustls::ServerConfig>,
) -> Result<(TcpListener, Option<quinn::Endpoint>), HttpError> {
    let listener = bind_tcp_v6(addr, 1024).map_err(|source| HttpError::Bind { addr, source })?;
    let Some(tls) = tls else {
        return Ok((listener, None));
    };
    let udp = listener
        .local_addr()
        .map_err(|source| HttpError::Bind { addr, source })?;
    let quic = super::h3::bind(udp, tls)?;
    Ok((listener, Some(quic)))
}

/// A front whose sockets are bound but that serves nothing yet: its URL is known, so a node
/// can announce it to its peers before it starts (see [`BoundFront::announced_url`]).
pub struct BoundFront {
    listener: TcpListener,
    quic: Option<quinn::Endpoint>,
    tls: Option<rustls::ServerConfig>,
    local_addr: SocketAddr,
    public_url: Option<String>,
    redirect: bool,
}

impl std::fmt::Debug for BoundFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundFront")
            .field("url", &self.url())
            .finish()
    }
}

impl BoundFront {
    /// Checks `config` and binds its sockets (`config.listen` must be set).
    pub fn bind(config: &HttpConfig) -> Result<BoundFront, HttpError> {
        if let Some((field, reason)) = config.invalid_field() {
            return Err(HttpError::Config(format!("{field}: {reason}")));
        }
        let addr = config
            .listen
            .ok_or_else(|| HttpError::Config("http.listen is not set".into()))?;
        let tls = match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
            _ => None,
        };
        // With TLS, HTTP/3 takes the same port number on UDP. Where `:0` was asked, the TCP
        // port the kernel gave may be taken on UDP: then another is tried.
        let attempts = if addr.port() == 0 && tls.is_some() {
            8
        } else {
            1
        };
        let mut bound = Err(HttpError::Config("no attempt".into()));
        for _ in 0..attempts {
            bound = bind_both(addr, tls.as_ref());
            if bound.is_ok() {
                break;
            }
        }
        let (listener, quic) = bound?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { addr, source })?;
        Ok(BoundFront {
            listener,
            quic,
            tls,
            local_addr,
            public_url: config.public_url.clone(),
            redirect: config.redirect_to_nearest_edge,
        })
    }

    /// The base URL it listens on, such as `https://[::1]:8443` (the real port where `:0`
    /// was asked).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.local_addr)
    }

    /// The URL to tell other nodes: `http.public_url` where set, else [`Self::url`] unless it
    /// names an unspecified address (`[::]`), which no client could reach.
    pub fn announced_url(&self) -> Option<String> {
        match &self.public_url {
            Some(url) => crate::config::front_base_url(url).ok(),
            None if self.local_addr.ip().is_unspecified() => None,
            None => Some(self.url()),
        }
    }

    /// Starts serving `node`'s content.
    pub fn serve(self, node: &Node) -> HttpFront {
        let url = self.url();
        let alt_svc = self.quic.as_ref().map(|_| {
            HeaderValue::from_str(&format!("h3=\":{}\"; ma=86400", self.local_addr.port()))
                .expect("a port makes a valid Alt-Svc value")
        });
        let front = Arc::new(Front {
            content: node.content(),
            collections: Default::default(),
            alt_svc,
            redirect: self.redirect,
        });
        let (stop, stopped) = watch::channel(None);
        let acceptor = self.tls.map(|tls| TlsAcceptor::from(Arc::new(tls)));
        let mut tasks = vec![tokio::spawn(accept_loop(
            self.listener,
            acceptor,
            front.clone(),
            stopped.clone(),
        ))];
        if let Some(quic) = self.quic {
            let first = FIRST_CLIENT + (1 << (usize::BITS - 3));
            tasks.push(tokio::spawn(super::h3::serve(quic, front, stopped, first)));
        }
        HttpFront {
            url,
            local_addr: self.local_addr,
            http3: tasks.len() > 1,
            stop,
            tasks,
        }
    }
}

impl HttpFront {
    /// Binds and starts serving `node`'s content as `config` says (`config.listen` must be
    /// set). A node that should announce its front binds first: [`BoundFront`].
    pub async fn start(node: &Node, config: &HttpConfig) -> Result<HttpFront, HttpError> {
        Ok(BoundFront::bind(config)?.serve(node))
    }

    /// The front's base URL, such as `https://[::1]:8443` (the real port where `:0` was asked).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Whether HTTP/3 is served (on UDP, same port), as it is with a certificate.
    pub fn http3(&self) -> bool {
        self.http3
    }

    /// Stops accepting, lets requests under way finish within `deadline`, then closes.
    pub async fn shutdown(self, deadline: Duration) {
        let _ = self.stop.send(Some(deadline));
        for task in self.tasks {
            let _ = tokio::time::timeout(deadline + Duration::from_millis(100), task).await;
        }
    }
}

/// A rustls server configuration from PEM files, offering HTTP/2 and HTTP/1.1 (HTTP/3 sets its
/// own ALPN on a copy).
fn tls_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, HttpError> {
    let bad = |path: &Path, reason: String| HttpError::Certificate {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| bad(key, e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// hyper's connection settings: HTTP/1.1 and HTTP/2, heads bounded in size and time.
fn builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_DEADLINE)
        .max_buf_size(MAX_HEAD_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .max_header_list_size(MAX_HEAD_BYTES as u32)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(HEAD_DEADLINE);
    builder
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    front: Arc<Front>,
    mut stop: watch::Receiver<Option<Duration>>,
) {
    let graceful = GracefulShutdown::new();
    let room = Arc::new(Semaphore::new(MAX_HTTP_CONNECTIONS));
    let builder = Arc::new(builder());
    let mut client = FIRST_CLIENT;
    let deadline = loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, usually: wait a little rather than spin.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break stop.borrow().unwrap_or_default(),
        };
        let Ok(permit) = room.clone().try_acquire_owned() else {
            continue;
        };
        client += 1;
        let _ = stream.set_nodelay(true);
        let (front, builder, tls) = (front.clone(), builder.clone(), tls.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let client = Client {
                number: client,
                addr: peer,
            };
            serve_connection(stream, tls, front, client, &builder, watcher).await;
        });
    };
    drop(listener);
    let _ = tokio::time::timeout(deadline, graceful.shutdown()).await;
}

async fn serve_connection(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    front: Arc<Front>,
    client: Client,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) {
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let req = req.map(|body| body.map_err(BodyError::from).boxed());
        handle(front.clone(), client, req)
    });
    let result = match tls {
        None => {
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            watcher.watch(conn.into_owned()).await
        }
        Some(acceptor) => {
            let Ok(Ok(stream)) = tokio::time::timeout(HEAD_DEADLINE, acceptor.accept(stream)).await
            else {
                return;
            };
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            watcher.watch(conn.into_owned()).await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "an HTTP connection ended with an error");
    }
}
