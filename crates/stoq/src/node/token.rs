//! The node's admin credential: what publishing, purging and prefetching require.
//!
//! A node with no token configured writes a fresh random one (256 bits, hex) to
//! `DATA_DIR/admin.token` with mode 0600 at first start. Nodes of one network share a token
//! (copy the file) so that a purge forwarded from node to node is accepted everywhere.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use rand::TryRngCore;

/// The file a node keeps its admin token in, inside its data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// Shortest token accepted from a file (characters).
pub const MIN_TOKEN_LEN: usize = 16;

pub use crate::protocol::MAX_TOKEN_LEN;

/// An admin token, compared in constant time.
#[derive(Clone)]
pub struct AdminToken {
    digest: blake3::Hash,
    text: String,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// A token from its text (surrounding whitespace ignored).
    pub fn from_text(text: &str) -> Result<Self, io::Error> {
        let text = text.trim();
        if text.len() < MIN_TOKEN_LEN || text.len() > MAX_TOKEN_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "an admin token must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters, got {}",
                    text.len()
                ),
            ));
        }
        Ok(AdminToken {
            digest: blake3::hash(text.as_bytes()),
            text: text.to_owned(),
        })
    }

    /// Reads a token file (warning in the log if others can read it).
    pub fn read(path: &Path) -> Result<Self, io::Error> {
        if Self::readable_by_others(path) {
            tracing::warn!(file = %path.display(), "the admin token file is readable by other users; chmod 600 it");
        }
        let text = fs::read_to_string(path).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot read token file {}: {e}", path.display()),
            )
        })?;
        Self::from_text(&text)
            .map_err(|e| io::Error::new(e.kind(), format!("token file {}: {e}", path.display())))
    }

    /// Whether the token file at `path` can be read by users other than its owner (a secret
    /// others can read is not a secret).
    pub fn readable_by_others(path: &Path) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            false
        }
    }

    /// Reads `path`, or creates it with a fresh random token (mode 0600) if it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, io::Error> {
        if path.exists() {
            return Self::read(path);
        }
        let mut raw = [0u8; 32];
        rand::rngs::OsRng
            .try_fill_bytes(&mut raw)
            .map_err(io::Error::other)?;
        let text = stoq_transport::protocol::encode_hex32(&raw);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("token.tmp");
        {
            let mut options = fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        Self::from_text(&text)
    }

    /// Whether `presented` is this token (constant time: compares BLAKE3 digests).
    pub fn verify(&self, presented: &[u8]) -> bool {
        blake3::hash(presented) == self.digest
    }

    /// The token's text, for sending it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_token_is_private_stable_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        let token = AdminToken::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = AdminToken::load_or_create(&path).unwrap();
        assert_eq!(token.as_str(), again.as_str());
        assert_eq!(token.as_str().len(), 64);
        assert!(token.verify(token.as_str().as_bytes()));
        assert!(!token.verify(b"guess"));
    }

    #[test]
    fn short_or_empty_tokens_are_refused() {
        assert!(AdminToken::from_text("   ").is_err());
        assert!(AdminToken::from_text("short").is_err());
        assert!(AdminToken::from_text("0123456789abcdef").is_ok());
    }
}
