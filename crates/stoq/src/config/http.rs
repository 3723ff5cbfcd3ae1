//! The `[http]` section: where the HTTP front listens and with which certificate.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The HTTP front of a node. Off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// The TCP address (IPv6) to serve HTTP on, such as `[::]:443`; with a certificate, HTTP/3
    /// is served on the same port over UDP.
    pub listen: Option<SocketAddr>,
    /// A PEM certificate chain: HTTPS (HTTP/1.1 and HTTP/2 by ALPN) and HTTP/3. Without one,
    /// plain HTTP/1.1 (for loopback, or behind a TLS terminator).
    pub cert: Option<PathBuf>,
    /// The PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// The base URL other nodes send clients to, such as `https://sydney.cdn.example`: needed
    /// when `listen` is an unspecified address (`[::]:443`) or behind a proxy; otherwise the
    /// URL the front listens on is announced.
    pub public_url: Option<String>,
    /// On an origin or relay: answer a read with a redirect (302) to the client's nearest
    /// edge's front, when that edge announces one. Off by default; an edge always serves.
    pub redirect_to_nearest_edge: bool,
    /// Bytes of chunks read ahead for HTTP readers, all together: each reader holds up to two
    /// runs of about 1 MiB while its client takes them; past this, new reads are answered 503
    /// with `Retry-After` until readers finish. At least 4 MiB.
    pub read_ahead_bytes: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: None,
            cert: None,
            key: None,
            public_url: None,
            redirect_to_nearest_edge: false,
            read_ahead_bytes: 256 << 20,
        }
    }
}

/// Longest front URL a node announces to its peers.
pub const MAX_HTTP_URL_LEN: usize = 200;

/// `url` as a front's base URL (`http` or `https`, a host, maybe a port, no path or query),
/// without a trailing slash; or why it is not one.
pub fn front_base_url(url: &str) -> Result<String, &'static str> {
    if url.len() > MAX_HTTP_URL_LEN {
        return Err("longer than 200 bytes");
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|_| "not a URL like https://edge.example:8443")?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err("must start with http:// or https://");
    }
    if uri.authority().is_none() {
        return Err("has no host");
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("must be a base URL, with no path or query");
    }
    Ok(url.trim_end_matches('/').to_owned())
}

impl HttpConfig {
    /// The name of the first bad field and why, if any.
    pub fn invalid_field(&self) -> Option<(&'static str, &'static str)> {
        if let Some(addr) = self.listen {
            if !addr.is_ipv6() {
                return Some((
                    "http.listen",
                    "STOQ is IPv6-only: use an address like [::1]:8080",
                ));
            }
        }
        if let Some(url) = &self.public_url {
            if let Err(reason) = front_base_url(url) {
                return Some(("http.public_url", reason));
            }
        }
        if self.read_ahead_bytes < 4 << 20 {
            return Some(("http.read_ahead_bytes", "at least 4 MiB (4194304)"));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Some((
                "http.cert",
                "give both http.cert and http.key (HTTPS), or neither (plain HTTP)",
            ));
        }
        None
    }

    /// Whether the front serves TLS.
    pub fn tls(&self) -> bool {
        self.cert.is_some()
    }
}
