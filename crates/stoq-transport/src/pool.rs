//! A pool of outgoing connections, one per peer, reused across requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::{PeerExpectation, PoolConfig, StoqConnection, StoqEndpoint, TransportError};

#[derive(Debug)]
struct Entry {
    conn: Option<StoqConnection>,
    last_used: Instant,
}

/// Keeps one live connection per peer address: [`ConnectionPool::get`] reuses it while it is
/// open, dials when it is not, drops connections idle longer than the pool's idle timeout,
/// and keeps at most `max_size` peers, dropping the least recently used.
///
/// Dropping a connection from the pool does not cut requests in flight: their holders keep
/// it open until they finish.
#[derive(Debug, Clone)]
pub struct ConnectionPool {
    endpoint: StoqEndpoint,
    max_size: Option<usize>,
    idle_timeout: Duration,
    /// One slot per peer; dials to the same peer wait on the slot, so only one happens.
    slots: Arc<Mutex<HashMap<SocketAddr, Arc<Mutex<Entry>>>>>,
}

impl ConnectionPool {
    /// A pool that dials through `endpoint` with the bounds in `config`.
    pub fn new(endpoint: StoqEndpoint, config: &PoolConfig) -> Self {
        ConnectionPool {
            endpoint,
            max_size: config.max_size,
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            slots: Arc::default(),
        }
    }

    /// A live connection to `addr`, reused if the pool holds one, dialled otherwise.
    pub async fn get(
        &self,
        addr: SocketAddr,
        expect: &PeerExpectation,
    ) -> Result<StoqConnection, TransportError> {
        let slot = {
            let mut slots = self.slots.lock().await;
            self.evict_idle_locked(&mut slots, Instant::now());
            if !slots.contains_key(&addr) {
                if let Some(max) = self.max_size {
                    while slots.len() >= max {
                        evict_least_recent(&mut slots);
                    }
                }
            }
            slots
                .entry(addr)
                .or_insert_with(|| {
                    Arc::new(Mutex::new(Entry {
                        conn: None,
                        last_used: Instant::now(),
                    }))
                })
                .clone()
        };
        let mut entry = slot.lock().await;
        entry.last_used = Instant::now();
        if let Some(conn) = entry.conn.as_ref().filter(|c| !c.is_closed()) {
            return Ok(conn.clone());
        }
        let conn = self.endpoint.connect(addr, expect).await?;
        entry.conn = Some(conn.clone());
        Ok(conn)
    }

    /// Drops connections unused for longer than the idle timeout; returns how many.
    pub async fn evict_idle(&self) -> usize {
        let mut slots = self.slots.lock().await;
        self.evict_idle_locked(&mut slots, Instant::now())
    }

    fn evict_idle_locked(
        &self,
        slots: &mut HashMap<SocketAddr, Arc<Mutex<Entry>>>,
        now: Instant,
    ) -> usize {
        let before = slots.len();
        slots.retain(|_, slot| match slot.try_lock() {
            // A slot being dialled or used right now is not idle.
            Err(_) => true,
            Ok(entry) => {
                now.duration_since(entry.last_used) < self.idle_timeout
                    && entry.conn.as_ref().is_none_or(|c| !c.is_closed())
            }
        });
        before - slots.len()
    }

    /// Peers the pool holds a slot for.
    pub async fn len(&self) -> usize {
        self.slots.lock().await.len()
    }

    /// Whether the pool holds no peer.
    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }
}

fn evict_least_recent(slots: &mut HashMap<SocketAddr, Arc<Mutex<Entry>>>) {
    let oldest = slots
        .iter()
        .filter_map(|(addr, slot)| slot.try_lock().ok().map(|e| (*addr, e.last_used)))
        .min_by_key(|(_, used)| *used)
        .map(|(addr, _)| addr);
    match oldest {
        Some(addr) => {
            slots.remove(&addr);
        }
        // Every slot is busy: drop an arbitrary one rather than exceed the bound.
        None => {
            if let Some(addr) = slots.keys().next().copied() {
                slots.remove(&addr);
            }
        }
    }
}
