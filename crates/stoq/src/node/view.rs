//! What membership knows: each [`Member`] (the identity SWIM gossips), the [`Report`]s that
//! travel as broadcasts, and the [`View`] of live peers with what each last reported.

use std::collections::HashMap;
use std::net::SocketAddrV6;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use foca::{BroadcastHandler, Identity, Invalidates};
use serde::{Deserialize, Serialize};
use stoq_transport::NodeId;

use crate::config::{Role, MAX_REGION_LEN};

/// A node as the membership protocol knows it (foca's identity type). Small and stable:
/// it travels in every membership message, and it changes only when the node restarts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    /// The node id's bytes (BLAKE3 of its public key).
    pub id: [u8; 32],
    /// Where it listens.
    pub addr: SocketAddrV6,
    /// Bumped on rejoin so a restarted node wins over its old self.
    pub bump: u16,
    /// What it does.
    pub role: Role,
    /// Its region name (at most [`MAX_REGION_LEN`] bytes).
    pub region: String,
    /// Latitude and longitude in millionths of a degree, if known.
    pub geo_e6: Option<(i32, i32)>,
    /// Link capacity it announces, in Mbit/s (what load is measured against).
    pub capacity_mbps: u32,
    /// The base URL of its HTTP front, if it serves one (at most
    /// [`crate::config::MAX_HTTP_URL_LEN`] bytes; checked again where it is used).
    pub http_url: Option<String>,
}

impl Member {
    /// The node id.
    pub fn node_id(&self) -> NodeId {
        NodeId::from_bytes(self.id)
    }

    /// Coordinates in degrees, if known.
    pub fn geo(&self) -> Option<(f64, f64)> {
        self.geo_e6
            .map(|(lat, lon)| (f64::from(lat) / 1e6, f64::from(lon) / 1e6))
    }

    /// Degrees to the stored form.
    pub fn geo_to_e6(lat: f64, lon: f64) -> (i32, i32) {
        ((lat * 1e6).round() as i32, (lon * 1e6).round() as i32)
    }
}

impl Identity for Member {
    type Addr = [u8; 32];

    fn renew(&self) -> Option<Self> {
        Some(Member {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> Self::Addr {
        self.id
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

/// What a node reports about itself, often: its load and its measured RTT to peers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The reporting node.
    pub from: [u8; 32],
    /// Increases with each report; an older one never replaces a newer one.
    pub seq: u64,
    /// Load in [0, 1].
    pub load: f32,
    /// Smoothed RTT to peers it is connected to, in ms (at most [`MAX_REPORTED_RTTS`]).
    pub rtts: Vec<([u8; 32], f32)>,
    /// RTT it measured to clients of an area (see `edge::area_of`), in ms (at most
    /// [`MAX_REPORTED_RTTS`], names at most [`MAX_REGION_LEN`] bytes).
    pub areas: Vec<(String, f32)>,
    /// Throughput it observed pulling content from peers, in Mbit/s (at most
    /// [`MAX_REPORTED_RTTS`]).
    pub throughput: Vec<([u8; 32], f32)>,
}

/// Most members a view holds: gossip can name members it never proved, so it is bounded.
pub const MAX_MEMBERS: usize = 16_384;

/// At most this many RTTs per report (keeps a report within one gossip packet).
pub const MAX_REPORTED_RTTS: usize = 16;

/// A peer as this node sees it.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its membership identity.
    pub member: Member,
    /// Its last reported load (0 until it reports).
    pub load: f32,
    /// Its last reported RTTs to its peers, in ms.
    pub rtts: Vec<(NodeId, f32)>,
    /// Its last reported RTTs to client areas, in ms.
    pub areas: Vec<(String, f32)>,
    /// Its last reported throughput from its peers, in Mbit/s.
    pub throughput: Vec<(NodeId, f32)>,
    /// Its last report's sequence number.
    pub seq: u64,
    /// When it joined this node's view.
    pub since: Instant,
}

/// The live members this node knows, and how often the membership changed.
#[derive(Debug, Default)]
pub struct View {
    /// Live peers by node id (this node excluded).
    pub peers: HashMap<NodeId, Peer>,
    /// Members that came up, went down or were renamed, since start.
    pub changes: u64,
    /// Reports received before their node was known, kept until it joins.
    pending: HashMap<NodeId, Report>,
}

impl View {
    pub(super) fn up(&mut self, member: &Member) {
        let id = member.node_id();
        if self.peers.len() >= MAX_MEMBERS && !self.peers.contains_key(&id) {
            tracing::warn!(peer = %id.short(), "membership full; member ignored");
            return;
        }
        let mut peer = Peer {
            member: member.clone(),
            load: 0.0,
            rtts: Vec::new(),
            areas: Vec::new(),
            throughput: Vec::new(),
            seq: 0,
            since: Instant::now(),
        };
        if let Some(report) = self.pending.remove(&id) {
            apply_report(&mut peer, &report);
        }
        self.peers.insert(id, peer);
        self.changes += 1;
    }

    pub(super) fn down(&mut self, member: &Member) {
        if self.peers.remove(&member.node_id()).is_some() {
            self.changes += 1;
        }
    }

    /// Applies a report if it is newer than what is known; returns whether it was.
    pub(super) fn report(&mut self, report: &Report) -> bool {
        let id = NodeId::from_bytes(report.from);
        match self.peers.get_mut(&id) {
            Some(peer) if report.seq > peer.seq => {
                apply_report(peer, report);
                true
            }
            Some(_) => false,
            None => {
                let newer = self.pending.get(&id).is_none_or(|p| report.seq > p.seq);
                if newer && self.pending.len() < 1024 {
                    self.pending.insert(id, report.clone());
                }
                newer
            }
        }
    }
}

fn apply_report(peer: &mut Peer, report: &Report) {
    peer.seq = report.seq;
    peer.load = report.load.clamp(0.0, 1.0);
    peer.rtts = report
        .rtts
        .iter()
        .filter(|(_, ms)| ms.is_finite() && *ms >= 0.0)
        .map(|(id, ms)| (NodeId::from_bytes(*id), *ms))
        .collect();
    peer.areas = report
        .areas
        .iter()
        .filter(|(_, ms)| ms.is_finite() && *ms >= 0.0)
        .cloned()
        .collect();
    peer.throughput = report
        .throughput
        .iter()
        .filter(|(_, mbps)| mbps.is_finite() && *mbps > 0.0)
        .map(|(id, mbps)| (NodeId::from_bytes(*id), *mbps))
        .collect();
}

/// A report's key in foca's broadcast queue: a newer report from a node replaces an older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportKey {
    pub(super) from: [u8; 32],
    pub(super) seq: u64,
}

impl Invalidates for ReportKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.from == other.from && self.seq >= other.seq
    }
}

/// A report that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed membership report: {0}")]
pub struct BadReport(String);

/// Receives reports for foca and keeps the view current.
pub(super) struct Reports {
    pub(super) me: [u8; 32],
    pub(super) view: Arc<RwLock<View>>,
}

impl BroadcastHandler<Member> for Reports {
    type Key = ReportKey;
    type Error = BadReport;

    /// A report is taken only from the node it is about: `sender` is the member whose
    /// message carried it, whose id the node checked against the TLS handshake, so no member
    /// can speak for another. Reports are therefore not relayed: each node spreads its own.
    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&Member>,
    ) -> Result<Option<ReportKey>, BadReport> {
        let report: Report = postcard::from_bytes(data).map_err(|e| BadReport(e.to_string()))?;
        if report.rtts.len() > MAX_REPORTED_RTTS
            || report.areas.len() > MAX_REPORTED_RTTS
            || report.throughput.len() > MAX_REPORTED_RTTS
            || report.areas.iter().any(|(a, _)| a.len() > MAX_REGION_LEN)
            || !report.load.is_finite()
        {
            return Err(BadReport(
                "too many RTTs, an oversized area or a non-finite load".into(),
            ));
        }
        let key = ReportKey {
            from: report.from,
            seq: report.seq,
        };
        if report.from == self.me {
            // Our own report: spread it when added locally, ignore it when it comes back.
            return Ok(sender.is_none().then_some(key));
        }
        if sender.is_some_and(|s| s.id == report.from) {
            self.view.write().expect("view lock").report(&report);
        }
        Ok(None)
    }
}
