//! The node's admin credential: what publishing, purging and prefetching require.
//!
//! A node with no token configured writes a fresh random one (256 bits, hex) to
//! `DATA_DIR/admin.token` with mode 0600 at first start. Nodes of one network share a token
//! (copy the file): it is also the network's credential. It never leaves the node that holds
//! it: clients present it to one node over TLS, and nodes prove they hold it with keyed BLAKE3
//! MACs that name who they are for ([`AdminToken::vouch`], [`AdminToken::membership_proof`]),
//! so a node that receives one learns nothing it can use anywhere else or later.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use rand::TryRngCore;
use stoq_transport::NodeId;

use crate::chunking::ContentId;
use crate::protocol::Op;

/// How far a node-to-node proof's time may be from the receiver's clock, either way.
pub const PROOF_WINDOW_S: u64 = 120;

/// What a node-to-node proof starts with, where a client's token would stand.
const PROOF_PREFIX: &str = "proof1:";

/// The file a node keeps its admin token in, inside its data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// Shortest token accepted from a file (characters).
pub const MIN_TOKEN_LEN: usize = 16;

pub use crate::protocol::MAX_TOKEN_LEN;

/// Where a node reads its admin token: `node.admin_token_file`, else `TOKEN_FILE` in its data
/// directory `data_dir` (the one it started with).
pub fn token_path(data_dir: &Path, node: &crate::config::NodeConfig) -> PathBuf {
    node.admin_token_file
        .clone()
        .unwrap_or_else(|| data_dir.join(TOKEN_FILE))
}

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

    /// The token's text, for a client sending it to the node it talks to.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// What a node sends, in place of the token, to ask node `receiver` to do `op` on `id`
    /// (a forwarded purge, a shard placement): `proof1:SECONDS:MAC`, where MAC is a BLAKE3
    /// MAC, keyed from the token, over the operation, the content id, the receiver's node id
    /// and the time. Only a node holding the same token can check it; it is good for that
    /// receiver, that operation and that content, for [`PROOF_WINDOW_S`].
    pub fn vouch(&self, op: Op, id: &ContentId, receiver: &NodeId, now_s: u64) -> String {
        let mac = self.operation_mac(op, id, receiver, now_s);
        format!(
            "{PROOF_PREFIX}{now_s}:{}",
            stoq_transport::protocol::encode_hex32(mac.as_bytes())
        )
    }

    /// Whether `presented` lets `op` on `id` through at node `me`: the token itself (from a
    /// client), or a proof made for exactly this (from another node of the network).
    pub fn accepts(
        &self,
        presented: &[u8],
        op: Op,
        id: &ContentId,
        me: &NodeId,
        now_s: u64,
    ) -> bool {
        self.verify(presented) || self.checks_vouch(presented, op, id, me, now_s)
    }

    fn checks_vouch(
        &self,
        presented: &[u8],
        op: Op,
        id: &ContentId,
        me: &NodeId,
        now_s: u64,
    ) -> bool {
        let Some(rest) = std::str::from_utf8(presented)
            .ok()
            .and_then(|t| t.strip_prefix(PROOF_PREFIX))
        else {
            return false;
        };
        let Some((at, mac)) = rest.split_once(':') else {
            return false;
        };
        let (Ok(at), Some(mac)) = (
            at.parse::<u64>(),
            stoq_transport::protocol::decode_hex32(mac),
        ) else {
            return false;
        };
        // blake3::Hash compares in constant time.
        now_s.abs_diff(at) <= PROOF_WINDOW_S
            && self.operation_mac(op, id, me, at) == blake3::Hash::from_bytes(mac)
    }

    fn operation_mac(&self, op: Op, id: &ContentId, receiver: &NodeId, at_s: u64) -> blake3::Hash {
        let key = blake3::derive_key("stoq 2026 node-to-node operation v1", self.text.as_bytes());
        let mut mac = blake3::Hasher::new_keyed(&key);
        mac.update(&[op.code()]);
        mac.update(&id.0);
        mac.update(receiver.as_bytes());
        mac.update(&at_s.to_be_bytes());
        mac.finalize()
    }

    /// What node `node` shows with each membership message to prove it holds the network's
    /// token: a BLAKE3 MAC of its node id, keyed from the token. TLS proves the node id, so
    /// one node's proof is of no use to another.
    pub fn membership_proof(&self, node: &NodeId) -> [u8; 32] {
        let key = blake3::derive_key("stoq 2026 membership v1", self.text.as_bytes());
        *blake3::keyed_hash(&key, node.as_bytes()).as_bytes()
    }

    /// Whether `proof` is `node`'s membership proof for this token (constant time).
    pub fn checks_membership(&self, proof: &[u8; 32], node: &NodeId) -> bool {
        blake3::Hash::from_bytes(self.membership_proof(node)) == blake3::Hash::from_bytes(*proof)
    }
}

/// Seconds since the Unix epoch, the clock proofs are made and checked against.
pub fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    #[test]
    fn a_proof_works_once_for_whom_what_and_when_it_was_made_and_never_shows_the_token() {
        let token = AdminToken::from_text("network-token-0123456789abcdef").unwrap();
        let other = AdminToken::from_text("another-network-token-987654321").unwrap();
        let (id, also) = (
            crate::chunking::Hash32([7; 32]),
            crate::chunking::Hash32([8; 32]),
        );
        let proof = token.vouch(Op::Purge, &id, &node(1), 1_000_000);
        assert!(!proof.contains(token.as_str()));
        assert!(token.accepts(proof.as_bytes(), Op::Purge, &id, &node(1), 1_000_000));
        assert!(token.accepts(
            proof.as_bytes(),
            Op::Purge,
            &id,
            &node(1),
            1_000_000 + PROOF_WINDOW_S
        ));
        // Not at another node, for another operation or content, later, or with another token.
        assert!(!token.accepts(proof.as_bytes(), Op::Purge, &id, &node(2), 1_000_000));
        assert!(!token.accepts(proof.as_bytes(), Op::StoreShards, &id, &node(1), 1_000_000));
        assert!(!token.accepts(proof.as_bytes(), Op::Purge, &also, &node(1), 1_000_000));
        assert!(!token.accepts(
            proof.as_bytes(),
            Op::Purge,
            &id,
            &node(1),
            1_000_000 + PROOF_WINDOW_S + 1
        ));
        assert!(!other.accepts(proof.as_bytes(), Op::Purge, &id, &node(1), 1_000_000));
        // A tampered time or MAC fails; the token itself still passes.
        let tampered = proof.replace(":1000000:", ":1000001:");
        assert!(!token.accepts(tampered.as_bytes(), Op::Purge, &id, &node(1), 1_000_000));
        assert!(!token.accepts(b"proof1:garbage", Op::Purge, &id, &node(1), 1_000_000));
        assert!(token.accepts(token.as_str().as_bytes(), Op::Purge, &id, &node(9), 0));
    }

    #[test]
    fn a_membership_proof_is_bound_to_its_node_and_its_token() {
        let token = AdminToken::from_text("network-token-0123456789abcdef").unwrap();
        let other = AdminToken::from_text("another-network-token-987654321").unwrap();
        let proof = token.membership_proof(&node(1));
        assert!(token.checks_membership(&proof, &node(1)));
        assert!(!token.checks_membership(&proof, &node(2)));
        assert!(!other.checks_membership(&proof, &node(1)));
        assert_ne!(&proof[..], token.as_str().as_bytes());
    }

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
