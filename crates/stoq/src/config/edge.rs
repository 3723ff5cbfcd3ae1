//! The `[edge]` section: the cache an edge keeps (size, eviction policy) and the prefix table
//! that places clients by their address.

use serde::{Deserialize, Serialize};

use crate::routing::GeoPoint;

/// Which eviction policy an edge cache uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// Least recently used.
    Lru,
    /// S3-FIFO: scan-resistant.
    S3fifo,
}

impl std::str::FromStr for PolicyKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lru" => Ok(PolicyKind::Lru),
            "s3fifo" => Ok(PolicyKind::S3fifo),
            other => Err(format!("unknown cache policy {other:?}: use lru or s3fifo")),
        }
    }
}

/// Edge settings: the cache an edge keeps, and where clients are by their address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Bound of the on-disk cache, in bytes.
    pub cache_bytes: u64,
    /// Eviction policy: `s3fifo` (scan-resistant) or `lru`.
    pub cache_policy: PolicyKind,
    /// The operator's prefix table: a client that gives no position is placed by the longest
    /// prefix covering its address.
    pub prefixes: Vec<PrefixEntry>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            cache_bytes: 1 << 30,
            cache_policy: PolicyKind::S3fifo,
            prefixes: Vec::new(),
        }
    }
}

/// One line of the prefix table: `prefix = "2001:db8:100::/40"`, a region, maybe a position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixEntry {
    /// An IPv6 prefix, `ADDR/LEN`.
    pub prefix: String,
    /// The region clients under it are in.
    pub region: String,
    /// Their typical position, `LAT,LON`.
    #[serde(default)]
    pub geo: Option<String>,
}

impl PrefixEntry {
    /// The prefix's address and length, if it parses.
    pub fn parse(&self) -> Option<(std::net::Ipv6Addr, u8)> {
        let (addr, len) = self.prefix.split_once('/')?;
        let len: u8 = len.parse().ok().filter(|l| *l <= 128)?;
        Some((addr.parse().ok()?, len))
    }
}

impl EdgeConfig {
    /// The name of the first bad field and why, if any.
    pub fn invalid_field(&self) -> Option<(&'static str, String)> {
        if self.cache_bytes < 1 << 20 {
            return Some(("edge.cache_bytes", "at least 1 MiB (1048576)".into()));
        }
        for entry in &self.prefixes {
            if entry.parse().is_none() {
                let reason = format!(
                    "{:?} is not an IPv6 prefix like 2001:db8::/32",
                    entry.prefix
                );
                return Some(("edge.prefixes.prefix", reason));
            }
            if entry
                .geo
                .as_deref()
                .is_some_and(|g| GeoPoint::parse(g).is_none())
            {
                return Some(("edge.prefixes.geo", "must be LAT,LON in degrees".into()));
            }
        }
        None
    }

    /// The prefix table these settings describe (entries were checked by `validate`).
    pub fn prefix_table(&self) -> crate::edge::PrefixTable {
        let mut table = crate::edge::PrefixTable::default();
        for entry in &self.prefixes {
            if let Some((addr, len)) = entry.parse() {
                let geo = entry.geo.as_deref().and_then(GeoPoint::parse);
                table.insert(addr, len, &entry.region, geo);
            }
        }
        table
    }
}
