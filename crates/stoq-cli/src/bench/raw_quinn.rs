//! Raw quinn for the benchmarks' baselines: a server and its clients on [::1] with quinn's
//! defaults but for the path MTU bounds (STOQ's, like for like), and a self-signed certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Where the baselines listen: any free port on IPv6 loopback.
pub(super) const LOCALHOST: &str = "[::1]:0";

/// A self-signed certificate for `localhost` and its key.
pub(super) fn self_signed() -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let key = PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
    Ok((cert.cert.der().clone(), key.into()))
}

/// A quinn server and a client connected to it on [::1], both with quinn's defaults but for
/// the path MTU bounds (`max_mtu`, as STOQ's); the server hands each connection it accepts to
/// `serve`. The endpoints must be kept for the connection to live.
pub(super) async fn quinn_pair<F, Fut>(
    max_mtu: u16,
    serve: F,
) -> Result<(quinn::Endpoint, quinn::Endpoint, quinn::Connection)>
where
    F: Fn(quinn::Connection) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let server = QuinnServer::start(max_mtu, serve)?;
    let (client, conn) = server.connect().await?;
    Ok((server.endpoint, client, conn))
}

/// A raw quinn server on [::1] (quinn's defaults but for the path MTU bounds) and what a
/// client needs to reach it, from any runtime.
pub(super) struct QuinnServer {
    pub(super) endpoint: quinn::Endpoint,
    cert: CertificateDer<'static>,
    transport: Arc<quinn::TransportConfig>,
    endpoint_config: quinn::EndpointConfig,
}

impl QuinnServer {
    /// Binds the server on the current runtime; it hands each connection it accepts to `serve`.
    pub(super) fn start<F, Fut>(max_mtu: u16, serve: F) -> Result<QuinnServer>
    where
        F: Fn(quinn::Connection) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (cert, key) = self_signed()?;
        let mut transport = quinn::TransportConfig::default();
        let mut discovery = quinn::MtuDiscoveryConfig::default();
        discovery.upper_bound(max_mtu);
        transport.mtu_discovery_config(Some(discovery));
        let transport = Arc::new(transport);
        let mut endpoint_config = quinn::EndpointConfig::default();
        endpoint_config.max_udp_payload_size(max_mtu.max(1472))?;
        let runtime = quinn::default_runtime().context("no async runtime")?;
        let mut server_config = quinn::ServerConfig::with_single_cert(vec![cert.clone()], key)?;
        server_config.transport_config(transport.clone());
        let endpoint = quinn::Endpoint::new(
            endpoint_config.clone(),
            Some(server_config),
            std::net::UdpSocket::bind(LOCALHOST.parse::<SocketAddr>()?)?,
            runtime,
        )?;
        let acceptor = endpoint.clone();
        let serve = Arc::new(serve);
        tokio::spawn(async move {
            while let Some(incoming) = acceptor.accept().await {
                let serve = serve.clone();
                tokio::spawn(async move {
                    if let Ok(conn) = incoming.await {
                        serve(conn).await;
                    }
                });
            }
        });
        Ok(QuinnServer {
            endpoint,
            cert,
            transport,
            endpoint_config,
        })
    }

    /// A client endpoint on the current runtime, connected to the server with the same
    /// transport settings.
    pub(super) async fn connect(&self) -> Result<(quinn::Endpoint, quinn::Connection)> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone())?;
        let mut client_config = quinn::ClientConfig::with_root_certificates(Arc::new(roots))?;
        client_config.transport_config(self.transport.clone());
        let runtime = quinn::default_runtime().context("no async runtime")?;
        let mut client = quinn::Endpoint::new(
            self.endpoint_config.clone(),
            None,
            std::net::UdpSocket::bind(LOCALHOST.parse::<SocketAddr>()?)?,
            runtime,
        )?;
        client.set_default_client_config(client_config);
        let conn = client
            .connect(self.endpoint.local_addr()?, "localhost")?
            .await?;
        Ok((client, conn))
    }
}
