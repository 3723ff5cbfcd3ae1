//! The `[http]` section: where the HTTP front listens and with which certificate.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The HTTP front of a node. Off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
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
