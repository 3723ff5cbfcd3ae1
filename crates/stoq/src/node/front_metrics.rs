//! Counters of a node's HTTP front: requests by method, status and protocol version, bytes
//! sent, and the time to the first byte of an answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;

use super::histogram::Histogram;

/// The methods counted by name; any other is counted as `other` (a client cannot grow the
/// series without bound).
const METHODS: [&str; 6] = ["GET", "HEAD", "PUT", "DELETE", "POST", "OPTIONS"];

/// The HTTP front's counters.
#[derive(Debug, Default)]
pub struct FrontMetrics {
    requests: Mutex<BTreeMap<(&'static str, u16, &'static str), u64>>,
    /// Body bytes sent by the front.
    pub bytes_out: AtomicU64,
    /// From a request's arrival to its answer's head (status and headers) being ready.
    pub first_byte: Histogram,
}

impl FrontMetrics {
    /// Counts one answered request; `version` is `"1.1"`, `"2"` or `"3"`.
    pub fn answered(&self, method: &str, status: u16, version: &'static str, took: Duration) {
        let method = METHODS
            .iter()
            .find(|m| **m == method)
            .copied()
            .unwrap_or("other");
        *self
            .requests
            .lock()
            .expect("front metrics lock")
            .entry((method, status, version))
            .or_insert(0) += 1;
        self.first_byte.observe(took);
    }

    /// Requests answered so far with `status`, over every method and version.
    pub fn with_status(&self, status: u16) -> u64 {
        let requests = self.requests.lock().expect("front metrics lock");
        requests
            .iter()
            .filter(|((_, s, _), _)| *s == status)
            .map(|(_, n)| n)
            .sum()
    }

    /// Requests answered so far, and those answered with a server error (5xx).
    pub fn totals(&self) -> (u64, u64) {
        let requests = self.requests.lock().expect("front metrics lock");
        let all = requests.values().sum();
        let failed = requests
            .iter()
            .filter(|((_, s, _), _)| *s >= 500)
            .map(|(_, n)| n)
            .sum();
        (all, failed)
    }

    /// Encodes the front's series into a scrape (`http_requests_total{method,status,version}`,
    /// `http_bytes_out_total`, `http_first_byte_seconds`, under the registry's `stoq_` prefix).
    pub fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut family = encoder.encode_descriptor(
            "http_requests",
            "HTTP requests answered, by method, status and protocol version.",
            None,
            MetricType::Counter,
        )?;
        for ((method, status, version), n) in
            self.requests.lock().expect("front metrics lock").iter()
        {
            let labels = [
                ("method", method.to_string()),
                ("status", status.to_string()),
                ("version", version.to_string()),
            ];
            ConstCounter::new(*n).encode(family.encode_family(&labels)?)?;
        }
        let bytes = ConstCounter::new(self.bytes_out.load(Ordering::Relaxed));
        bytes.encode(encoder.encode_descriptor(
            "http_bytes_out",
            "Body bytes sent by the HTTP front.",
            None,
            bytes.metric_type(),
        )?)?;
        self.first_byte.encode(
            encoder,
            "http_first_byte_seconds",
            "Time from an HTTP request to its answer's head.",
        )
    }
}
