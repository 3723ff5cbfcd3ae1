//! Who a node is: its key, its certificate chain and the node id derived from the key.

use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ParsedCertificate;

pub use stoq_protocol::{NodeId, NodeIdParseError};

use crate::TransportError;

/// The node id of the key in a DER-encoded certificate (BLAKE3 of its SubjectPublicKeyInfo).
pub fn node_id_of_certificate(cert: &CertificateDer<'_>) -> Result<NodeId, TransportError> {
    let parsed = ParsedCertificate::try_from(cert)
        .map_err(|e| TransportError::Certificate(format!("unparsable certificate: {e}")))?;
    Ok(NodeId::from_spki(parsed.subject_public_key_info().as_ref()))
}

/// A node's certificate chain and private key, and the node id they stand for.
#[derive(Debug)]
pub struct NodeIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    node_id: NodeId,
}

/// File name of a generated certificate inside a data dir.
pub const CERT_FILE: &str = "node.cert.pem";
/// File name of a generated private key inside a data dir (mode 0600).
pub const KEY_FILE: &str = "node.key.pem";

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        NodeIdentity {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
            node_id: self.node_id,
        }
    }
}

impl NodeIdentity {
    /// A fresh self-signed identity held only in memory (ECDSA P-256).
    pub fn generate() -> Result<Self, TransportError> {
        let (cert_pem, key_pem) = generate_self_signed()?;
        Self::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())
    }

    /// Loads the identity kept in `dir`, or generates one and keeps it there on first start.
    /// The key file is written with mode 0600 and the certificate only after it, so a crash
    /// between the two leaves no certificate without its key.
    pub fn load_or_generate(dir: &Path) -> Result<Self, TransportError> {
        let cert_path = dir.join(CERT_FILE);
        let key_path = dir.join(KEY_FILE);
        if cert_path.exists() && key_path.exists() {
            return Self::from_pem_files(&cert_path, &key_path);
        }
        std::fs::create_dir_all(dir).map_err(io_err("cannot create data dir", dir))?;
        let (cert_pem, key_pem) = generate_self_signed()?;
        write_private(&key_path, key_pem.as_bytes())?;
        write_atomically(&cert_path, cert_pem.as_bytes())?;
        Self::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())
    }

    /// The identity a TLS config names: its `cert_file` and `key_file` when set, else the
    /// identity kept in (or first generated into) `data_dir`.
    pub fn from_config(tls: &crate::TlsConfig, data_dir: &Path) -> Result<Self, TransportError> {
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => Self::from_pem_files(cert, key),
            (None, None) => Self::load_or_generate(data_dir),
            _ => Err(TransportError::config(
                "transport.tls.key_file",
                "cert_file and key_file must be set together",
            )),
        }
    }

    /// Loads a PEM certificate chain (leaf first) and its PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TransportError> {
        let cert_pem = std::fs::read(cert).map_err(io_err("cannot read certificate", cert))?;
        let key_pem = std::fs::read(key).map_err(io_err("cannot read private key", key))?;
        Self::from_pem(&cert_pem, &key_pem)
    }

    /// Builds an identity from PEM text, checking that the key really belongs to the leaf.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TransportError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TransportError::Certificate(format!("bad certificate PEM: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TransportError::Certificate(format!("bad private key PEM: {e}")))?;
        Self::from_der(chain, key)
    }

    /// Builds an identity from DER, checking that the key really belongs to the leaf.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TransportError> {
        let leaf = chain
            .first()
            .ok_or_else(|| TransportError::Certificate("certificate chain is empty".into()))?;
        let node_id = node_id_of_certificate(leaf)?;
        let signing_key = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| TransportError::Certificate(format!("unusable private key: {e}")))?;
        if let Some(spki) = signing_key.public_key() {
            if NodeId::from_spki(spki.as_ref()) != node_id {
                return Err(TransportError::Certificate(
                    "private key does not match the certificate".into(),
                ));
            }
        }
        Ok(NodeIdentity {
            chain,
            key,
            node_id,
        })
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The certificate chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }

    /// A copy of the private key, for building TLS configs.
    pub(crate) fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

fn generate_self_signed() -> Result<(String, String), TransportError> {
    let key = rcgen::KeyPair::generate()
        .map_err(|e| TransportError::Certificate(format!("key generation failed: {e}")))?;
    let mut params = rcgen::CertificateParams::new(vec!["stoq.node".to_owned()])
        .map_err(|e| TransportError::Certificate(e.to_string()))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "stoq node");
    let cert = params
        .self_signed(&key)
        .map_err(|e| TransportError::Certificate(format!("self-signing failed: {e}")))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TransportError {
    let path = path.display().to_string();
    move |source| TransportError::Io { what, path, source }
}

/// Writes `bytes` to `path` through a temp file, fsync and rename, so readers never see half
/// a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TransportError> {
    write_with_mode(path, bytes, 0o644)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TransportError> {
    write_with_mode(path, bytes, 0o600)
}

fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TransportError> {
    use std::io::Write;
    let tmp: PathBuf = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp).map_err(io_err("cannot write", &tmp))?;
    file.write_all(bytes)
        .map_err(io_err("cannot write", &tmp))?;
    file.sync_all().map_err(io_err("cannot sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("cannot rename into", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_text_round_trips() {
        let id = NodeIdentity::generate().unwrap().node_id();
        assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
        assert!("xyz".parse::<NodeId>().is_err());
        assert!("g".repeat(64).parse::<NodeId>().is_err());
    }

    #[test]
    fn identity_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeIdentity::load_or_generate(dir.path()).unwrap();
        let again = NodeIdentity::load_or_generate(dir.path()).unwrap();
        assert_eq!(first.node_id(), again.node_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let a = NodeIdentity::generate().unwrap();
        let b = NodeIdentity::generate().unwrap();
        let err = NodeIdentity::from_der(a.chain().to_vec(), b.key()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn configured_files_win_over_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let kept = NodeIdentity::load_or_generate(&dir.path().join("a")).unwrap();
        let tls = crate::TlsConfig {
            cert_file: Some(dir.path().join("a").join(CERT_FILE)),
            key_file: Some(dir.path().join("a").join(KEY_FILE)),
            ..Default::default()
        };
        let loaded = NodeIdentity::from_config(&tls, &dir.path().join("b")).unwrap();
        assert_eq!(loaded.node_id(), kept.node_id());
        assert!(
            !dir.path().join("b").exists(),
            "no identity generated when files are given"
        );
    }

    #[test]
    fn garbage_pem_is_a_clear_error() {
        let err = NodeIdentity::from_pem(b"not pem", b"not pem").unwrap_err();
        assert!(matches!(err, TransportError::Certificate(_)), "{err}");
    }
}
