//! Who is in the network: SWIM membership (the `foca` crate) carried over STOQ connections.
//!
//! Each node is a [`Member`]: its node id, address, role, region, coordinates and capacity.
//! Foca probes members, spreads joins and deaths, and declares a silent member down within
//! seconds; its messages travel as GOSSIP requests over the mutually authenticated QUIC
//! links between nodes, and a message whose sender is not the TLS-proven node id is dropped.
//! What changes often (load, measured RTTs to peers) travels as foca custom broadcasts
//! ([`Report`]). The result is a [`View`] (see `view.rs`): the live peers with what each
//! last reported.

use std::net::SocketAddrV6;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use foca::{Codec, Foca, PostcardCodec, Timer};
use rand::rngs::StdRng;
use rand::SeedableRng;
use stoq_transport::NodeId;
use tokio::sync::{mpsc, watch};

use super::view::Reports;
pub use super::view::{Member, Peer, Report, View, MAX_MEMBERS, MAX_REPORTED_RTTS};
pub use crate::config::Role;

/// The file in the data dir that keeps the node's last membership incarnation.
pub const INCARNATION_FILE: &str = "membership.incarnation";

/// This start's incarnation (the member identity's `bump`): one more than the last start's,
/// kept in `data_dir`. Members that still hold the node's previous incarnation (alive,
/// suspected or down) take the new one as its successor at once (it wins the conflict on
/// the node id), so a restarted node rejoins within a probe or two instead of being ignored.
pub fn next_incarnation(data_dir: &std::path::Path) -> u16 {
    let path = data_dir.join(INCARNATION_FILE);
    let last = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse::<u16>().ok());
    let next = last.map_or(0, |n| n.saturating_add(1));
    if let Err(e) = std::fs::write(&path, next.to_string()) {
        tracing::warn!(file = %path.display(), error = %e, "cannot record the membership incarnation");
    }
    next
}

/// Timing of failure detection.
#[derive(Debug, Clone, Copy)]
pub struct MembershipTiming {
    /// How often a random member is probed.
    pub probe_period: Duration,
    /// How long a suspected member has to refute it before it is declared down.
    pub suspect_after: Duration,
}

impl Default for MembershipTiming {
    fn default() -> Self {
        MembershipTiming {
            probe_period: Duration::from_millis(1000),
            suspect_after: Duration::from_millis(3000),
        }
    }
}

/// Where membership messages go: the node sends them to a member over QUIC.
pub trait GossipSender: Send + Sync + 'static {
    /// Delivers `data` to `to`, best effort (foca tolerates loss).
    fn send(&self, to: &Member, data: Bytes);
}

enum Input {
    Data { data: Bytes, from: NodeId },
    Timer(Timer<Member>),
    Announce(Member),
    Report(Report),
    Leave(tokio::sync::oneshot::Sender<()>),
    Stop,
}

/// A running membership: a task that owns the foca instance, and the view it keeps.
#[derive(Clone)]
pub struct Membership {
    me: Member,
    inputs: mpsc::UnboundedSender<Input>,
    view: Arc<RwLock<View>>,
    /// Carries the view's change count, so waiters wake when a member comes or goes.
    changed: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("me", &self.me.node_id())
            .finish()
    }
}

/// Why a membership message was refused.
#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    /// The message does not decode.
    #[error("malformed membership message: {0}")]
    Malformed(String),
    /// The message claims a sender other than the node that sent it over TLS.
    #[error("membership message claims to be from {claimed} but came from {actual}")]
    Impostor {
        /// The sender named in the message.
        claimed: NodeId,
        /// The TLS-proven sender.
        actual: NodeId,
    },
    /// The membership task has stopped.
    #[error("membership has stopped")]
    Stopped,
}

impl Membership {
    /// Starts membership for `me`, sending through `sender`.
    pub fn start(me: Member, timing: MembershipTiming, sender: Arc<dyn GossipSender>) -> Self {
        let view = Arc::new(RwLock::new(View::default()));
        let mut config = foca::Config::new_lan(NonZeroU32::new(32).expect("non-zero"));
        config.probe_period = timing.probe_period;
        config.probe_rtt = timing.probe_period / 2;
        config.suspect_to_down_after = timing.suspect_after;
        config.periodic_gossip = Some(foca::PeriodicParams {
            frequency: Duration::from_millis(200),
            num_members: NonZeroUsize::new(3).expect("non-zero"),
        });
        let handler = Reports {
            me: me.id,
            view: view.clone(),
        };
        let foca = Foca::with_custom_broadcast(
            me.clone(),
            config,
            StdRng::from_os_rng(),
            PostcardCodec,
            handler,
        );
        let (inputs, rx) = mpsc::unbounded_channel();
        let changed = Arc::new(watch::Sender::new(0));
        let runtime = Driver {
            inputs: inputs.clone(),
            view: view.clone(),
            changed: changed.clone(),
            sender,
        };
        tokio::spawn(tracing::Instrument::in_current_span(drive(
            foca, rx, runtime,
        )));
        Membership {
            me,
            inputs,
            view,
            changed,
        }
    }

    /// This node's identity.
    pub fn me(&self) -> &Member {
        &self.me
    }

    /// The shared view of live peers.
    pub fn view(&self) -> &Arc<RwLock<View>> {
        &self.view
    }

    /// A copy of the live peers.
    pub fn peers(&self) -> Vec<Peer> {
        let view = self.view.read().expect("view lock");
        let mut peers: Vec<Peer> = view.peers.values().cloned().collect();
        peers.sort_by_key(|p| p.member.id);
        peers
    }

    /// A copy of one live peer.
    pub fn peer(&self, id: &NodeId) -> Option<Peer> {
        self.view.read().expect("view lock").peers.get(id).cloned()
    }

    /// Waits until `done` holds for the live peers, re-checking whenever a member comes or
    /// goes; returns whether it held within `within`.
    pub async fn wait_for(&self, done: impl Fn(&[Peer]) -> bool, within: Duration) -> bool {
        let mut changes = self.changed.subscribe();
        let wait = async {
            while !done(&self.peers()) {
                if changes.changed().await.is_err() {
                    return false;
                }
            }
            true
        };
        tokio::time::timeout(within, wait).await.unwrap_or(false)
    }

    /// How many times the membership changed since start.
    pub fn changes(&self) -> u64 {
        self.view.read().expect("view lock").changes
    }

    /// Joins through a known node (a seed). Only its id and address need to be right.
    pub fn join(&self, seed_id: NodeId, seed_addr: SocketAddrV6) {
        let seed = Member {
            id: *seed_id.as_bytes(),
            addr: seed_addr,
            bump: 0,
            role: Role::Origin,
            region: String::new(),
            geo_e6: None,
            capacity_mbps: 0,
            http_url: None,
        };
        let _ = self.inputs.send(Input::Announce(seed));
    }

    /// Hands a membership message that arrived from node `from` (TLS-proven) to foca.
    pub fn receive(&self, data: Bytes, from: NodeId) -> Result<(), GossipError> {
        let header: foca::Header<Member> = PostcardCodec
            .decode_header(&data[..])
            .map_err(|e| GossipError::Malformed(e.to_string()))?;
        let claimed = header.src.node_id();
        if claimed != from {
            return Err(GossipError::Impostor {
                claimed,
                actual: from,
            });
        }
        self.inputs
            .send(Input::Data { data, from })
            .map_err(|_| GossipError::Stopped)
    }

    /// Spreads this node's load and RTTs.
    pub fn report(&self, report: Report) {
        let _ = self.inputs.send(Input::Report(report));
    }

    /// Stops without telling anyone (the others notice through failed probes).
    pub fn stop(&self) {
        let _ = self.inputs.send(Input::Stop);
    }

    /// Tells the others this node is leaving, then stops.
    pub async fn leave(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.inputs.send(Input::Leave(tx)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        }
    }
}

type SwimNode = Foca<Member, PostcardCodec, StdRng, Reports>;

/// The membership task: feeds foca its inputs and carries out what it asks.
/// What the membership task acts on: its own input queue (for timers), the view, the change
/// signal and the transport.
struct Driver {
    inputs: mpsc::UnboundedSender<Input>,
    view: Arc<RwLock<View>>,
    changed: Arc<watch::Sender<u64>>,
    sender: Arc<dyn GossipSender>,
}

async fn drive(mut foca: SwimNode, mut rx: mpsc::UnboundedReceiver<Input>, driver: Driver) {
    let mut runtime = foca::AccumulatingRuntime::new();
    while let Some(input) = rx.recv().await {
        let result = match input {
            Input::Data { data, from } => foca.handle_data(&data, &mut runtime).map_err(|e| {
                tracing::debug!(%from, error = %e, "membership message refused");
            }),
            Input::Timer(timer) => foca.handle_timer(timer, &mut runtime).map_err(|_| ()),
            Input::Announce(seed) => foca.announce(seed, &mut runtime).map_err(|_| ()),
            Input::Report(report) => match postcard::to_allocvec(&report) {
                Ok(bytes) => foca.add_broadcast(&bytes).map(|_| ()).map_err(|e| {
                    tracing::warn!(error = %e, "cannot spread this node's report");
                }),
                Err(_) => Err(()),
            },
            Input::Stop => return,
            Input::Leave(done) => {
                let _ = foca.leave_cluster(&mut runtime);
                flush(&mut runtime, &driver);
                let _ = done.send(());
                return;
            }
        };
        let _ = result;
        flush(&mut runtime, &driver);
    }
}

/// Sends what foca queued, schedules its timers and applies its notifications to the view.
fn flush(runtime: &mut foca::AccumulatingRuntime<Member>, driver: &Driver) {
    while let Some((to, data)) = runtime.to_send() {
        driver.sender.send(&to, data);
    }
    while let Some((after, timer)) = runtime.to_schedule() {
        let inputs = driver.inputs.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = inputs.send(Input::Timer(timer));
        });
    }
    while let Some(notification) = runtime.to_notify() {
        let mut view = driver.view.write().expect("view lock");
        match notification {
            foca::OwnedNotification::MemberUp(m) => {
                tracing::info!(peer = %m.node_id().short(), role = %m.role, "member up");
                view.up(&m)
            }
            foca::OwnedNotification::MemberDown(m) => {
                tracing::info!(peer = %m.node_id().short(), "member down");
                view.down(&m)
            }
            foca::OwnedNotification::Rename(old, new) => {
                view.down(&old);
                view.up(&new);
            }
            _ => {}
        }
        driver.changed.send_replace(view.changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::view::ReportKey;
    use foca::{BroadcastHandler, Identity, Invalidates};

    fn member(n: u8) -> Member {
        Member {
            id: [n; 32],
            addr: "[::1]:4433".parse().unwrap(),
            bump: 0,
            role: Role::Edge,
            region: "eu".into(),
            geo_e6: Some(Member::geo_to_e6(50.1, 8.7)),
            capacity_mbps: 1000,
            http_url: None,
        }
    }

    #[test]
    fn a_renewed_member_wins_its_address_conflict() {
        let old = member(1);
        let new = old.renew().unwrap();
        assert!(new.win_addr_conflict(&old));
        assert!(!old.win_addr_conflict(&new));
        assert_eq!(old.addr(), new.addr());
    }

    #[test]
    fn newer_reports_replace_older_ones_and_older_ones_are_ignored() {
        let mut view = View::default();
        view.up(&member(1));
        let report = |seq, load| Report {
            from: [1; 32],
            seq,
            load,
            rtts: vec![([2; 32], 3.5)],
            areas: vec![("cell:48,2".into(), 12.0)],
            throughput: vec![([2; 32], 850.0)],
        };
        assert!(view.report(&report(2, 0.5)));
        assert!(
            !view.report(&report(1, 0.9)),
            "an older report must not apply"
        );
        let peer = &view.peers[&NodeId::from_bytes([1; 32])];
        assert_eq!(peer.load, 0.5);
        assert_eq!(peer.rtts, vec![(NodeId::from_bytes([2; 32]), 3.5)]);
        assert_eq!(peer.throughput, vec![(NodeId::from_bytes([2; 32]), 850.0)]);
        assert!(ReportKey {
            from: [1; 32],
            seq: 3
        }
        .invalidates(&ReportKey {
            from: [1; 32],
            seq: 2
        }));
        assert!(!ReportKey {
            from: [2; 32],
            seq: 3
        }
        .invalidates(&ReportKey {
            from: [1; 32],
            seq: 2
        }));
    }

    #[test]
    fn a_report_before_its_member_joins_is_applied_on_join() {
        let mut view = View::default();
        assert!(view.report(&Report {
            from: [7; 32],
            seq: 1,
            load: 0.25,
            rtts: vec![],
            areas: vec![],
            throughput: vec![],
        }));
        view.up(&member(7));
        assert_eq!(view.peers[&NodeId::from_bytes([7; 32])].load, 0.25);
        assert_eq!(view.changes, 1);
    }

    #[test]
    fn roles_parse_and_print() {
        for role in [Role::Origin, Role::Edge, Role::Relay] {
            assert_eq!(role.to_string().parse::<Role>().unwrap(), role);
        }
        assert!("cache"
            .parse::<Role>()
            .unwrap_err()
            .contains("origin, edge or relay"));
    }

    #[test]
    fn a_report_is_taken_only_from_the_node_it_is_about() {
        let view = Arc::new(RwLock::new(View::default()));
        let mut handler = Reports {
            me: [0; 32],
            view: view.clone(),
        };
        view.write().unwrap().up(&member(1));
        let about_1 = |seq, load| {
            postcard::to_allocvec(&Report {
                from: [1; 32],
                seq,
                load,
                rtts: vec![],
                areas: vec![],
                throughput: vec![],
            })
            .unwrap()
        };
        let load = || view.read().unwrap().peers[&NodeId::from_bytes([1; 32])].load;
        // Member 2 relays (or forges) a report about member 1: ignored, not spread.
        assert_eq!(
            handler
                .receive_item(&about_1(5, 0.9), Some(&member(2)))
                .unwrap(),
            None
        );
        assert_eq!(load(), 0.0);
        // Member 1's own report applies, and is not relayed either.
        assert_eq!(
            handler
                .receive_item(&about_1(6, 0.4), Some(&member(1)))
                .unwrap(),
            None
        );
        assert_eq!(load(), 0.4);
        // Our own report is spread when added locally (no sender), not when it comes back.
        let mine = postcard::to_allocvec(&Report {
            from: [0; 32],
            seq: 1,
            load: 0.1,
            rtts: vec![],
            areas: vec![],
            throughput: vec![],
        })
        .unwrap();
        assert!(handler.receive_item(&mine, None).unwrap().is_some());
        assert!(handler
            .receive_item(&mine, Some(&member(1)))
            .unwrap()
            .is_none());
    }

    #[test]
    fn malformed_reports_are_errors() {
        let mut handler = Reports {
            me: [0; 32],
            view: Arc::default(),
        };
        assert!(handler.receive_item(&[0xff, 0xff, 0xff], None).is_err());
        let too_many = Report {
            from: [1; 32],
            seq: 1,
            load: 0.1,
            rtts: vec![([2; 32], 1.0); MAX_REPORTED_RTTS + 1],
            areas: vec![],
            throughput: vec![],
        };
        let bytes = postcard::to_allocvec(&too_many).unwrap();
        assert!(handler.receive_item(&bytes, None).is_err());
    }
}
