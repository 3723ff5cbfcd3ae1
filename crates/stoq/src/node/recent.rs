//! What a node did over about the last minute, for `stoq status`: its counters are sampled
//! each report interval, and the window is the difference between now and the oldest sample
//! that is at most a minute old.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::protocol::Window;

/// The window `stoq status` reports.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The counters a window is the difference of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Content bytes received.
    pub bytes_in: u64,
    /// Content bytes sent.
    pub bytes_out: u64,
    /// Requests answered (STOQ and HTTP).
    pub requests: u64,
    /// Refusals and failures (see [`Window::errors`]).
    pub errors: u64,
}

/// Samples of a node's counters over the last minute.
#[derive(Debug)]
pub struct Recent {
    started: Instant,
    samples: Mutex<VecDeque<(Instant, Totals)>>,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            started: Instant::now(),
            samples: Mutex::new(VecDeque::from([(Instant::now(), Totals::default())])),
        }
    }
}

impl Recent {
    /// How long the node has run.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Keeps a sample taken at `at`; drops those no window needs any more.
    pub fn record(&self, at: Instant, totals: Totals) {
        let mut samples = self.samples.lock().expect("recent lock");
        samples.push_back((at, totals));
        // Keep the newest sample at least WINDOW old, and everything after it.
        while samples.len() > 1 && at.duration_since(samples[1].0) >= WINDOW {
            samples.pop_front();
        }
    }

    /// What happened between the oldest sample at most a minute before `at` and `now`.
    pub fn window(&self, at: Instant, now: Totals) -> Window {
        let samples = self.samples.lock().expect("recent lock");
        let (from, then) = samples
            .iter()
            .find(|(t, _)| at.duration_since(*t) <= WINDOW)
            .or(samples.back())
            .copied()
            .unwrap_or((self.started, Totals::default()));
        Window {
            seconds: at.duration_since(from).as_secs_f64(),
            bytes_in: now.bytes_in.saturating_sub(then.bytes_in),
            bytes_out: now.bytes_out.saturating_sub(then.bytes_out),
            requests: now.requests.saturating_sub(then.requests),
            errors: now.errors.saturating_sub(then.errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(n: u64) -> Totals {
        Totals {
            bytes_in: n,
            bytes_out: 2 * n,
            requests: n,
            errors: n / 10,
        }
    }

    #[test]
    fn the_window_spans_the_last_minute_and_no_more() {
        let recent = Recent::default();
        let t0 = Instant::now();
        for s in 1..=120u64 {
            recent.record(t0 + Duration::from_secs(s), totals(s * 100));
        }
        let at = t0 + Duration::from_secs(120);
        let w = recent.window(at, totals(12_000));
        assert_eq!(w.seconds, 60.0);
        assert_eq!(
            (w.bytes_in, w.bytes_out, w.requests),
            (6_000, 12_000, 6_000)
        );
        assert_eq!(w.errors, 600);
        // Only what one window needs is kept.
        assert!(recent.samples.lock().unwrap().len() <= 62);
    }

    #[test]
    fn a_young_node_reports_since_its_start() {
        let recent = Recent::default();
        let at = recent.started + Duration::from_secs(5);
        recent.record(at, totals(50));
        let w = recent.window(at, totals(50));
        assert!((w.seconds - 5.0).abs() < 0.01, "{w:?}");
        assert_eq!(w.requests, 50);
    }
}
