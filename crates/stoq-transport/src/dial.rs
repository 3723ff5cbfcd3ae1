//! The TLS configs an endpoint dials with: one per server expectation, built on first use
//! and shared by every connection to that server. A config built per connection gave each
//! one its own copy of the certificate chain, the loaded key and a session cache, and cost
//! the parsing every time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use quinn::crypto::rustls::QuicClientConfig;
use rustls::RootCertStore;
use stoq_protocol::ALPN;

use crate::trust::{self, PeerExpectation};
use crate::{NodeIdentity, TransportError};

/// Expectations remembered at most; past it the table starts again (a node dials far fewer
/// distinct servers, so this only bounds what a caller dialling endlessly many could grow).
const MAX_REMEMBERED: usize = 4096;

/// The dialling TLS configs of one endpoint.
pub(crate) struct DialConfigs {
    identity: NodeIdentity,
    ca_roots: Option<Arc<RootCertStore>>,
    built: Mutex<HashMap<PeerExpectation, Arc<QuicClientConfig>>>,
}

impl std::fmt::Debug for DialConfigs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let remembered = self.built.lock().map_or(0, |b| b.len());
        f.debug_struct("DialConfigs")
            .field("node_id", &self.identity.node_id())
            .field("remembered", &remembered)
            .finish()
    }
}

impl DialConfigs {
    pub(crate) fn new(identity: NodeIdentity, ca_roots: Option<Arc<RootCertStore>>) -> Self {
        DialConfigs {
            identity,
            ca_roots,
            built: Mutex::new(HashMap::new()),
        }
    }

    /// The config that checks the server as `expect` says and offers `alpn`.
    pub(crate) fn get(
        &self,
        expect: &PeerExpectation,
        alpn: &[u8],
    ) -> Result<Arc<QuicClientConfig>, TransportError> {
        if alpn != ALPN {
            // Only tests dial with another ALPN; not worth remembering.
            return self.build(expect, alpn);
        }
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(config) = built.get(expect) {
            return Ok(config.clone());
        }
        let config = self.build(expect, alpn)?;
        if built.len() >= MAX_REMEMBERED {
            built.clear();
        }
        built.insert(expect.clone(), config.clone());
        Ok(config)
    }

    fn build(
        &self,
        expect: &PeerExpectation,
        alpn: &[u8],
    ) -> Result<Arc<QuicClientConfig>, TransportError> {
        let crypto = trust::client_crypto(&self.identity, expect, self.ca_roots.as_ref(), alpn)?;
        QuicClientConfig::try_from(Arc::new(crypto))
            .map(Arc::new)
            .map_err(|e| TransportError::Certificate(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_config_per_expectation_and_none_kept_for_another_alpn() {
        let configs = DialConfigs::new(NodeIdentity::generate().unwrap(), None);
        let a = PeerExpectation::Node(NodeIdentity::generate().unwrap().node_id());
        let b = PeerExpectation::Node(NodeIdentity::generate().unwrap().node_id());
        let first = configs.get(&a, ALPN).unwrap();
        assert!(Arc::ptr_eq(&first, &configs.get(&a, ALPN).unwrap()));
        assert!(!Arc::ptr_eq(&first, &configs.get(&b, ALPN).unwrap()));
        let other = configs.get(&a, b"h3").unwrap();
        assert!(!Arc::ptr_eq(&other, &configs.get(&a, b"h3").unwrap()));
        assert_eq!(configs.built.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_name_without_a_ca_bundle_is_refused_and_not_kept() {
        let configs = DialConfigs::new(NodeIdentity::generate().unwrap(), None);
        let name = PeerExpectation::Name("cdn.example".into());
        assert!(configs.get(&name, ALPN).is_err());
        assert!(configs.built.lock().unwrap().is_empty());
    }
}
