//! How the command line learns a node's id from its address: the known-nodes file.
//!
//! `stoq serve` appends `ADDR NODE-ID` to it when it starts, so on one machine
//! `--node [::1]:4433` just works. Across machines, give `NODEID@[ip]:port` (the id
//! `stoq serve` printed) or copy the line. The file is `$STOQ_KNOWN_NODES`, else
//! `~/.stoq/known_nodes`; the last line for an address wins. No connection is ever made
//! without a node id to check the peer against.

use std::io::Write;
use std::net::{SocketAddr, SocketAddrV6};
use std::path::PathBuf;

use anyhow::{Context, Result};
use stoq::transport::NodeId;

use crate::cli::address;
use crate::usage::usage;

/// Where the known-nodes file is.
pub fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("STOQ_KNOWN_NODES") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".stoq").join("known_nodes")
}

fn v6(addr: SocketAddr) -> SocketAddrV6 {
    match addr {
        SocketAddr::V6(a) => a,
        SocketAddr::V4(_) => unreachable!("addresses are checked to be IPv6"),
    }
}

/// Records that `id` listens at `addr` (and at `[::1]:port` when it listens on `[::]`).
pub fn record(addr: SocketAddrV6, id: NodeId) -> Result<()> {
    let file = path();
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut lines = format!("{addr} {id}\n");
    if addr.ip().is_unspecified() {
        lines.push_str(&format!("[::1]:{} {id}\n", addr.port()));
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&file)
        .with_context(|| format!("cannot open {}", file.display()))?;
    f.write_all(lines.as_bytes())
        .with_context(|| format!("cannot write {}", file.display()))
}

/// A node from the command line: `NODEID@[ip]:port`, or `[ip]:port` looked up in the file.
pub fn resolve(text: &str) -> Result<(NodeId, SocketAddrV6)> {
    if let Some((id, addr)) = text.split_once('@') {
        let id: NodeId = id.parse().map_err(usage)?;
        return Ok((id, v6(address(addr)?)));
    }
    let addr = v6(address(text)?);
    let file = path();
    let known = std::fs::read_to_string(&file).unwrap_or_default();
    known
        .lines()
        .rev()
        .filter_map(|line| line.split_once(' '))
        .find(|(a, _)| a.parse::<SocketAddr>().ok() == Some(SocketAddr::V6(addr)))
        .and_then(|(_, id)| id.trim().parse().ok())
        .map(|id| (id, addr))
        .ok_or_else(|| {
            usage(format!(
                "no node id known for {addr}: give NODEID@{addr} (the id `stoq serve` printed), \
                 or start the node on this machine so it records itself in {}",
                file.display()
            ))
        })
}
