//! Per-client limits: requests per second and bytes per second, for each client address (an
//! IPv6 /64, what one subscriber or host usually holds) and for each connection.
//!
//! Each limit is a token bucket that may go into debt: a request takes one token before it is
//! answered, an answer's bytes are taken after they are sent (their size is known only then).
//! While a bucket is empty or in debt, the client's requests are answered BUSY with the pause
//! that brings it back to zero ("slow down"). Buckets hold one second's worth, so a client may
//! burst that much. Members of the network and requests carrying the admin token are not
//! limited. State is kept for a bounded number of clients; the longest idle are forgotten.

use std::net::SocketAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use super::bounded::BoundedMap;

/// Clients (and connections) whose buckets are remembered at once.
const MAX_TRACKED: usize = 65_536;

/// The limits, from `node.client_*` and `node.connection_*` (0 = no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct QosLimits {
    /// Requests per second per client address (/64).
    pub client_requests: f64,
    /// Bytes served per second per client address (/64).
    pub client_bytes: f64,
    /// Requests per second per connection.
    pub connection_requests: f64,
    /// Bytes served per second per connection.
    pub connection_bytes: f64,
}

impl QosLimits {
    /// The limits a node's configuration sets.
    pub fn of(node: &crate::config::NodeConfig) -> Self {
        QosLimits {
            client_requests: f64::from(node.client_requests_per_s),
            client_bytes: node.client_bytes_per_s as f64,
            connection_requests: f64::from(node.connection_requests_per_s),
            connection_bytes: node.connection_bytes_per_s as f64,
        }
    }

    fn any(&self) -> bool {
        [
            self.client_requests,
            self.client_bytes,
            self.connection_requests,
            self.connection_bytes,
        ]
        .iter()
        .any(|&r| r > 0.0)
    }
}

/// A token bucket of `rate` tokens per second holding at most `rate` (one second's worth),
/// which spending may take below zero.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    level: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: f64, now: Instant) -> Self {
        Bucket {
            level: rate,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * rate).min(rate);
        self.at = now;
    }

    /// How long until the bucket holds `need` tokens again (zero if it does now).
    fn wait_for(&self, need: f64, rate: f64) -> Duration {
        Duration::from_secs_f64(((need - self.level) / rate).max(0.0))
    }
}

/// Whose bucket: a client address prefix or a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Client(u64),
    Connection(usize),
}

/// What a request is counted against.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    prefix: u64,
    connection: usize,
}

impl Client {
    /// The peer of `conn`.
    pub fn of(conn: &stoq_transport::StoqConnection) -> Self {
        Self::new(conn.remote_addr(), conn.stable_id())
    }

    /// The client at `addr` on connection `connection` (the connection's stable id).
    pub fn new(addr: SocketAddr, connection: usize) -> Self {
        let prefix = match addr {
            SocketAddr::V6(a) => (u128::from(*a.ip()) >> 64) as u64,
            // STOQ speaks IPv6 only; kept total anyway.
            SocketAddr::V4(a) => u64::from(u32::from(*a.ip())),
        };
        Client { prefix, connection }
    }
}

/// Why a request must wait.
#[derive(Debug, Clone, PartialEq)]
pub struct SlowDown {
    /// How long until it would be admitted.
    pub after: Duration,
    /// Which limit, for the client.
    pub why: String,
}

/// The buckets of every client and connection.
#[derive(Debug)]
pub struct Qos {
    limits: RwLock<QosLimits>,
    requests: Mutex<BoundedMap<Key, Bucket>>,
    bytes: Mutex<BoundedMap<Key, Bucket>>,
}

impl Qos {
    /// Limits as configured; all zero turns the whole mechanism off.
    pub fn new(limits: QosLimits) -> Self {
        Qos {
            limits: RwLock::new(limits),
            requests: Mutex::new(BoundedMap::new(MAX_TRACKED)),
            bytes: Mutex::new(BoundedMap::new(MAX_TRACKED)),
        }
    }

    /// Whether any limit is set (all zero turns the mechanism off).
    pub fn active(&self) -> bool {
        self.limits().any()
    }

    /// The limits now.
    pub fn limits(&self) -> QosLimits {
        *self.limits.read().expect("qos limits lock")
    }

    /// Replaces the limits (a reload); buckets already tracked refill at the new rates.
    pub fn set_limits(&self, limits: QosLimits) {
        *self.limits.write().expect("qos limits lock") = limits;
    }

    /// The limited buckets of `client` for bytes or for requests: its address's and its
    /// connection's, with their rates and what to call them; unlimited ones are left out.
    fn limited(&self, client: Client, bytes: bool) -> Vec<(Key, f64, &'static str)> {
        let l = self.limits();
        let both = match bytes {
            true => [
                (
                    Key::Client(client.prefix),
                    l.client_bytes,
                    "bytes/s from your address",
                ),
                (
                    Key::Connection(client.connection),
                    l.connection_bytes,
                    "bytes/s on this connection",
                ),
            ],
            false => [
                (
                    Key::Client(client.prefix),
                    l.client_requests,
                    "requests/s from your address",
                ),
                (
                    Key::Connection(client.connection),
                    l.connection_requests,
                    "requests/s on this connection",
                ),
            ],
        };
        both.into_iter()
            .filter(|(_, rate, _)| *rate > 0.0)
            .collect()
    }

    /// Admits one request of `client` at `now`, taking a request token from its buckets, or
    /// says how long it must wait (taking nothing).
    pub fn admit(&self, client: Client, now: Instant) -> Result<(), SlowDown> {
        if !self.active() {
            return Ok(());
        }
        // Bytes: wait while a bucket is in debt (the answer is charged after it is sent).
        let mut bytes = self.bytes.lock().expect("qos lock");
        for (key, rate, what) in self.limited(client, true) {
            let bucket = refilled(&mut bytes, key, rate, now);
            if bucket.level < 0.0 {
                return Err(slow_down(bucket.wait_for(0.0, rate), rate, what));
            }
        }
        drop(bytes);
        // Requests: one token each, taken only when every bucket has one.
        let mut requests = self.requests.lock().expect("qos lock");
        let mut taken = Vec::with_capacity(2);
        for (key, rate, what) in self.limited(client, false) {
            let bucket = refilled(&mut requests, key, rate, now);
            if bucket.level < 1.0 {
                return Err(slow_down(bucket.wait_for(1.0, rate), rate, what));
            }
            taken.push((key, bucket));
        }
        for (key, mut bucket) in taken {
            bucket.level -= 1.0;
            requests.insert(key, bucket);
        }
        Ok(())
    }

    /// Charges `bytes` sent to `client` at `now`.
    pub fn spent(&self, client: Client, bytes: u64, now: Instant) {
        let limited = self.limited(client, true);
        if limited.is_empty() {
            return;
        }
        let mut buckets = self.bytes.lock().expect("qos lock");
        for (key, rate, _) in limited {
            let mut bucket = refilled(&mut buckets, key, rate, now);
            bucket.level -= bytes as f64;
            buckets.insert(key, bucket);
        }
    }
}

/// `key`'s bucket refilled to `now` (a full one if it is not known).
fn refilled(map: &mut BoundedMap<Key, Bucket>, key: Key, rate: f64, now: Instant) -> Bucket {
    let mut bucket = map.get(&key).copied().unwrap_or(Bucket::full(rate, now));
    bucket.refill(rate, now);
    bucket
}

fn slow_down(after: Duration, rate: f64, what: &str) -> SlowDown {
    SlowDown {
        after: after.max(Duration::from_millis(1)),
        why: format!("slow down: over {rate:.0} {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(addr: &str, connection: usize) -> Client {
        Client::new(addr.parse().unwrap(), connection)
    }

    #[test]
    fn requests_past_the_rate_wait_for_a_token_and_other_clients_are_untouched() {
        let qos = Qos::new(QosLimits {
            client_requests: 10.0,
            ..QosLimits::default()
        });
        let t0 = Instant::now();
        let a = client("[2001:db8:1:2::5]:1000", 1);
        for _ in 0..10 {
            qos.admit(a, t0).unwrap();
        }
        let refused = qos.admit(a, t0).unwrap_err();
        assert!(
            refused.why.contains("10 requests/s from your address"),
            "{refused:?}"
        );
        assert!(
            refused.after > Duration::from_millis(90)
                && refused.after <= Duration::from_millis(101)
        );
        // Another host in the same /64 shares the budget; another /64 does not.
        assert!(qos.admit(client("[2001:db8:1:2::9]:7", 2), t0).is_err());
        qos.admit(client("[2001:db8:1:3::5]:1000", 3), t0).unwrap();
        // A tenth of a second later, one more token.
        let t1 = t0 + Duration::from_millis(100);
        qos.admit(a, t1).unwrap();
        assert!(qos.admit(a, t1).is_err());
    }

    #[test]
    fn bytes_are_charged_after_sending_and_a_debt_is_waited_out() {
        let qos = Qos::new(QosLimits {
            connection_bytes: 1000.0,
            ..QosLimits::default()
        });
        let t0 = Instant::now();
        let c = client("[2001:db8::1]:1", 7);
        qos.admit(c, t0).unwrap();
        qos.spent(c, 3000, t0);
        let refused = qos.admit(c, t0).unwrap_err();
        assert!(
            refused.why.contains("bytes/s on this connection"),
            "{refused:?}"
        );
        assert_eq!(refused.after, Duration::from_secs(2));
        // Another connection from the same address is not limited per connection.
        qos.admit(client("[2001:db8::1]:2", 8), t0).unwrap();
        qos.admit(c, t0 + Duration::from_secs(2)).unwrap();
    }

    #[test]
    fn without_limits_everything_passes() {
        let qos = Qos::new(QosLimits::default());
        let c = client("[::1]:1", 1);
        for _ in 0..10_000 {
            qos.admit(c, Instant::now()).unwrap();
        }
        qos.spent(c, u64::MAX, Instant::now());
        qos.admit(c, Instant::now()).unwrap();
    }
}
