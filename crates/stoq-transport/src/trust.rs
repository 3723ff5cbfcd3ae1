//! Whom a node trusts, and the rustls configs that enforce it.
//!
//! Two ways to trust a peer, both real:
//! - **pinned node id**: the peer's certificate key must hash to the expected [`NodeId`], and the
//!   peer must prove it holds that key in the TLS 1.3 handshake signature (checked by rustls'
//!   own signature verification). This is how nodes that know each other's ids connect.
//! - **CA bundle**: the peer's chain must lead to a trusted CA and name the expected server name
//!   (rustls' WebPKI verifier, unchanged).
//!
//! Nothing here accepts a certificate without checking it.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use stoq_protocol::ALPN;

use crate::{NodeId, NodeIdentity, TlsConfig, TransportError};

/// What a client requires of the server it connects to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerExpectation {
    /// The server's key must hash to this node id.
    Node(NodeId),
    /// The server's chain must lead to the endpoint's CA bundle and be valid for this name.
    Name(String),
}

/// The server name sent in SNI when dialling by node id (the certificate is checked by key,
/// not by name).
pub const PINNED_SERVER_NAME: &str = "stoq.node";

/// A server whose key is not the pinned one. (rustls prints these errors with `Debug`, so
/// `Debug` says the same as `Display`.)
#[derive(thiserror::Error)]
#[error("peer node id mismatch: expected {expected}, the peer presented {presented}")]
struct NodeIdMismatch {
    expected: NodeId,
    presented: NodeId,
}

/// A client certificate that no trust setting admits.
#[derive(thiserror::Error)]
#[error("client node id {0} is neither pinned in tls.trusted_peers nor issued by tls.ca_bundle")]
struct UntrustedClient(NodeId);

impl std::fmt::Debug for NodeIdMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Debug for UntrustedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: rustls::Error) -> TransportError {
    TransportError::Certificate(e.to_string())
}

/// Loads a PEM bundle of trust anchors.
pub fn load_ca_bundle(path: &Path) -> Result<RootCertStore, TransportError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| {
            TransportError::Certificate(format!("cannot read CA bundle {}: {e}", path.display()))
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            TransportError::Certificate(format!("bad CA bundle {}: {e}", path.display()))
        })?;
    roots_from(certs)
}

/// A root store from DER trust anchors; an empty set is an error, since it would trust nothing.
pub fn roots_from(certs: Vec<CertificateDer<'static>>) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TransportError::Certificate(
            "CA bundle holds no usable certificate".into(),
        ));
    }
    Ok(roots)
}

/// QUIC runs TLS 1.3 only; a TLS 1.2 signature never reaches a STOQ verifier.
fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls13RequiredForQuic,
    ))
}

/// Checks a server's certificate by the node id its key hashes to.
#[derive(Debug)]
struct PinnedServerVerifier {
    expected: NodeId,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = crate::identity::node_id_of_certificate(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if presented != self.expected {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(NodeIdMismatch {
                    expected: self.expected,
                    presented,
                })),
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Checks client certificates under mutual TLS: pinned node ids first, then the CA bundle.
/// Without mutual TLS (`open`), a certificate is optional; one that is presented must be
/// proven by the handshake signature, and its key becomes the connection's peer node id.
/// That is how nodes know which node sent a message while anonymous clients can still read.
#[derive(Debug)]
struct PeerClientVerifier {
    pinned: HashSet<NodeId>,
    ca: Option<Arc<dyn ClientCertVerifier>>,
    open: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PeerClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.ca.as_ref().map_or(&[], |ca| ca.root_hint_subjects())
    }

    fn client_auth_mandatory(&self) -> bool {
        !self.open
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let presented = crate::identity::node_id_of_certificate(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        // Open mode admits any key: the TLS 1.3 signature check below proves possession, so
        // the node id is authentic; what that node may do is the application's decision.
        if self.open || self.pinned.contains(&presented) {
            return Ok(ClientCertVerified::assertion());
        }
        match &self.ca {
            Some(ca) => ca.verify_client_cert(end_entity, intermediates, now),
            None => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(UntrustedClient(presented))),
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The TLS 1.3 server config of a node: its identity, ALPN `stoq/1` only, and client
/// certificates required and checked when `tls.mutual` is on, optional (but proven) otherwise.
pub(crate) fn server_crypto(
    identity: &NodeIdentity,
    tls: &TlsConfig,
    ca_roots: Option<&Arc<RootCertStore>>,
) -> Result<rustls::ServerConfig, TransportError> {
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?;
    let builder = if tls.mutual {
        let ca = match ca_roots {
            Some(roots) => Some(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.clone(),
                    provider.clone(),
                )
                .build()
                .map_err(|e| TransportError::Certificate(e.to_string()))?,
            ),
            None => None,
        };
        builder.with_client_cert_verifier(Arc::new(PeerClientVerifier {
            pinned: tls.trusted_peers.iter().copied().collect(),
            ca,
            open: false,
            algorithms: provider.signature_verification_algorithms,
        }))
    } else {
        builder.with_client_cert_verifier(Arc::new(PeerClientVerifier {
            pinned: HashSet::new(),
            ca: None,
            open: true,
            algorithms: provider.signature_verification_algorithms,
        }))
    };
    let mut config = builder
        .with_single_cert(identity.chain().to_vec(), identity.key())
        .map_err(tls_error)?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    // Clients never resume (see `client_crypto`): tickets would be work and memory for nothing.
    config.send_tls13_tickets = 0;
    Ok(config)
}

/// The TLS 1.3 client config for one dial: checks the server as `expect` says, offers ALPN
/// `alpn` (always `stoq/1` outside tests), and presents this node's certificate if asked.
pub(crate) fn client_crypto(
    identity: &NodeIdentity,
    expect: &PeerExpectation,
    ca_roots: Option<&Arc<RootCertStore>>,
    alpn: &[u8],
) -> Result<rustls::ClientConfig, TransportError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?;
    let verifier: Arc<dyn ServerCertVerifier> = match expect {
        PeerExpectation::Node(id) => Arc::new(PinnedServerVerifier {
            expected: *id,
            algorithms: provider.signature_verification_algorithms,
        }),
        PeerExpectation::Name(_) => {
            let roots = ca_roots.ok_or_else(|| {
                TransportError::config(
                    "transport.tls.ca_bundle",
                    "connecting by server name needs a CA bundle to check the server against",
                )
            })?;
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots.clone(),
                provider.clone(),
            )
            .build()
            .map_err(|e| TransportError::Certificate(e.to_string()))?
        }
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(identity.chain().to_vec(), identity.key())
        .map_err(tls_error)?;
    config.alpn_protocols = vec![alpn.to_vec()];
    // Every handshake is a full one, both keys proven: nothing to resume, no cache to keep.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// The SNI name to send for an expectation.
pub(crate) fn server_name(expect: &PeerExpectation) -> &str {
    match expect {
        PeerExpectation::Node(_) => PINNED_SERVER_NAME,
        PeerExpectation::Name(name) => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The proof of possession itself (the TLS 1.3 CertificateVerify signature) is checked by
    // rustls' `verify_tls13_signature` in `verify_tls13_signature` above; rustls calls it for
    // every client certificate, so a client that holds a certificate but not its key never
    // completes a handshake. rustls keeps signature structures private, so that part is
    // exercised by the handshakes in tests/transport.rs.

    #[test]
    fn without_mutual_tls_a_certificate_is_optional_and_must_parse() {
        let verifier = PeerClientVerifier {
            pinned: HashSet::new(),
            ca: None,
            open: true,
            algorithms: provider().signature_verification_algorithms,
        };
        let alice = NodeIdentity::generate().unwrap();
        assert!(!verifier.client_auth_mandatory());
        assert!(verifier
            .verify_client_cert(&alice.chain()[0], &[], UnixTime::now())
            .is_ok());
        let garbage = CertificateDer::from(vec![1u8, 2, 3]);
        assert!(verifier
            .verify_client_cert(&garbage, &[], UnixTime::now())
            .is_err());
    }

    #[test]
    fn with_mutual_tls_an_unpinned_client_is_refused() {
        let pinned = NodeIdentity::generate().unwrap();
        let verifier = PeerClientVerifier {
            pinned: HashSet::from([pinned.node_id()]),
            ca: None,
            open: false,
            algorithms: provider().signature_verification_algorithms,
        };
        let stranger = NodeIdentity::generate().unwrap();
        assert!(verifier.client_auth_mandatory());
        assert!(verifier
            .verify_client_cert(&pinned.chain()[0], &[], UnixTime::now())
            .is_ok());
        assert!(verifier
            .verify_client_cert(&stranger.chain()[0], &[], UnixTime::now())
            .is_err());
    }
}
