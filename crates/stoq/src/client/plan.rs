//! The bookkeeping of a multi-source fetch: how many chunks each source keeps in flight (sized
//! to its measured rate), how they are asked for in runs, when a source counts as stalled,
//! busy or failed, and which chunks are still to fetch.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use stoq_transport::StoqConnection;

use super::error::FetchError;
use crate::chunking::Manifest;
use crate::protocol::MAX_RUN_CHUNKS;
use crate::routing::Ewma;

/// Chunks a fetch keeps in flight per source.
pub const WINDOW_PER_SOURCE: usize = 4;

/// The most chunks one source may have in flight, however fast it is (memory is bounded by
/// [`MAX_IN_FLIGHT_BYTES`] first for chunks above 64 KiB).
pub const MAX_WINDOW_PER_SOURCE: usize = 512;

/// The bytes one run of chunks aims at: enough that a request's cost is spread over many
/// chunks, little enough that a stalled run strands little.
pub const RUN_BYTES: u64 = 1 << 20;

/// The most runs one source has in flight: each is one request, and a node holds each
/// connection to a share of its slots, so a client asks for a few long runs, not many short
/// ones.
pub const MAX_RUNS_PER_SOURCE: usize = 4;

/// The chunks in one run for a source with room for `room` chunks of about `chunk_len` bytes:
/// about [`RUN_BYTES`], or longer where that is needed to fill the room with
/// [`MAX_RUNS_PER_SOURCE`] runs; at most half the room (so a second run is already streaming
/// when one ends) and [`MAX_RUN_CHUNKS`]; at least 1.
pub fn run_len(room: usize, chunk_len: u32) -> usize {
    let by_bytes = (RUN_BYTES / u64::from(chunk_len.max(1))).max(1) as usize;
    let to_fill = room.div_ceil(MAX_RUNS_PER_SOURCE);
    let most = (room / 2).clamp(1, MAX_RUN_CHUNKS as usize);
    by_bytes.max(to_fill).min(most)
}

/// The longest a fetch waits on sources that only answer BUSY, with no chunk delivered, before
/// it gives up.
pub const MAX_BUSY_WAIT: Duration = Duration::from_secs(60);

/// The longest pause between a busy source's retries (the pause doubles while it stays busy).
pub const MAX_BUSY_PAUSE: Duration = Duration::from_secs(2);

/// The most bytes one source may have in flight (bounds memory for large chunks).
pub const MAX_IN_FLIGHT_BYTES: u64 = 32 << 20;

/// How much data a source should have in flight, in seconds of its measured rate: enough to
/// cover the round trip of a loaded path (queues add tens of milliseconds).
const IN_FLIGHT_SECONDS: f64 = 0.1;

/// Chunks in flight for a source that has shown `rate` bytes/s, for chunks of about
/// `chunk_len` bytes: enough to keep 100 ms of its rate in flight (so a fast source is never
/// idle waiting for requests), at least 2, at most [`MAX_WINDOW_PER_SOURCE`] and
/// [`MAX_IN_FLIGHT_BYTES`]. A source with no measurement yet starts at [`WINDOW_PER_SOURCE`]
/// and gets two more chunks for each one it has `delivered` (in bytes): like TCP's slow start,
/// the window doubles every round trip until the rate is known, so a fast path is not held to
/// four chunks for the first measuring span, and a loaded one grows only as it delivers.
pub fn window_for(rate: Option<f64>, delivered: u64, chunk_len: u32) -> usize {
    let len = u64::from(chunk_len.max(1));
    let cap = ((MAX_IN_FLIGHT_BYTES / len) as usize).clamp(2, MAX_WINDOW_PER_SOURCE);
    match rate {
        None => WINDOW_PER_SOURCE
            .max((2 * delivered / len) as usize)
            .min(cap),
        Some(r) => ((r * IN_FLIGHT_SECONDS / len as f64).ceil() as usize).clamp(2, cap),
    }
}

/// The least time a source gets for a chunk before it counts as stalled.
pub const STALL_FLOOR: Duration = Duration::from_millis(500);

/// How many stalls in a row the only source left may show before the fetch gives up; each one
/// doubles the time it gets (a source with others beside it is dropped at its first stall, and
/// its chunks go to the others).
pub const MAX_STRIKES: u32 = 5;

/// The rate assumed for a source before its first chunk arrives (1 MB/s: generous, so a slow
/// but working source is not dropped on its first chunk).
const INITIAL_RATE_BYTES_PER_S: f64 = 1e6;

/// How long a source may take for a chunk of `len` bytes, given the rate it has shown so far
/// (with its other chunks in flight): 500 ms plus three times the expected transfer time.
pub fn stall_deadline(len: u32, rate_bytes_per_s: f64) -> Duration {
    STALL_FLOOR + Duration::from_secs_f64(3.0 * f64::from(len) / rate_bytes_per_s.max(1.0))
}

/// What a fetch moved, per source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchReport {
    /// Content bytes delivered.
    pub size: u64,
    /// (source address, verified bytes it delivered), in the order the sources were given.
    pub sources: Vec<(String, u64)>,
    /// Sources dropped for failing or sending bad data.
    pub dropped: Vec<String>,
    /// Bytes the caller already had (a resumed download), not fetched again.
    pub resumed_bytes: u64,
    /// Bytes copied from the caller's own disk ([`FetchOptions::local`]).
    pub reused_bytes: u64,
}

/// How many chunks past the write cursor a fetch may ask for: [`MAX_IN_FLIGHT_BYTES`] per
/// active source of the content's typical chunk, within [`MAX_WINDOW_PER_SOURCE`] per source
/// and at least 2 per source. This bounds the memory of chunks received but not yet written.
pub(super) fn write_ahead(active: usize, typical_len: u32) -> u32 {
    let per_source =
        (MAX_IN_FLIGHT_BYTES / u64::from(typical_len)).clamp(2, MAX_WINDOW_PER_SOURCE as u64);
    (per_source * active as u64) as u32
}

/// What the fetch loop waits for next.
pub(super) enum Waiting {
    /// Chunks in flight.
    OnChunks,
    /// Nothing in flight, but a paused source may be asked again at this time.
    Until(Instant),
    /// Nothing in flight and no source left.
    Nothing,
}

/// The bookkeeping of one fetch: which chunks are still to fetch, and each source's state.
pub(super) struct Plan {
    /// Chunks not yet asked for (or handed back), in order.
    pub(super) todo: BTreeSet<u32>,
    alive: Vec<bool>,
    standby: VecDeque<usize>,
    in_flight: Vec<usize>,
    /// Requests (runs) in flight per source, at most [`MAX_RUNS_PER_SOURCE`].
    pub(super) runs: Vec<usize>,
    rate: Vec<Meter>,
    /// Stalls a source has shown since its last delivered chunk (see `MAX_STRIKES`).
    pub(super) strikes: Vec<u32>,
    /// When a busy source may be asked again, and the pause it got last.
    paused_until: Vec<Option<Instant>>,
    pause: Vec<Duration>,
    /// The last time any chunk arrived.
    progress: Instant,
    /// Chunks allowed ahead of the write cursor.
    window: u32,
    /// The content's mean chunk length (windows and runs are sized by it).
    typical_len: u32,
    pub(super) report: FetchReport,
    pub(super) last: String,
}

impl Plan {
    pub(super) fn new(
        sources: &[StoqConnection],
        active: usize,
        manifest: &Manifest,
        skip: u32,
    ) -> Self {
        let active = active.clamp(1, sources.len());
        let count = manifest.chunks.len() as u32;
        let typical_len = (manifest.size / u64::from(count.max(1))).max(1) as u32;
        let n = sources.len();
        Plan {
            todo: (skip..count).collect(),
            alive: (0..n).map(|s| s < active).collect(),
            standby: (active..n).collect(),
            in_flight: vec![0; n],
            runs: vec![0; n],
            rate: (0..n).map(|_| Meter::new(Instant::now())).collect(),
            strikes: vec![0; n],
            paused_until: vec![None; n],
            pause: vec![Duration::ZERO; n],
            progress: Instant::now(),
            window: write_ahead(active, typical_len),
            typical_len,
            report: FetchReport {
                size: 0,
                sources: sources
                    .iter()
                    .map(|c| (c.remote_addr().to_string(), 0))
                    .collect(),
                dropped: Vec::new(),
                reused_bytes: 0,
                resumed_bytes: manifest.chunks[..skip as usize]
                    .iter()
                    .map(|c| u64::from(c.length))
                    .sum(),
            },
            last: String::new(),
        }
    }

    /// The rate one run of source `s` may be expected to show: its measured rate shared among
    /// its runs in flight (the stall deadline of a run's next chunk is sized by it).
    pub(super) fn rate_of(&self, s: usize) -> f64 {
        let total = self.rate[s].value().unwrap_or(INITIAL_RATE_BYTES_PER_S);
        total / self.runs[s].max(1) as f64
    }

    /// The next run source `s` should ask for, if it is alive, not paused and has room.
    pub(super) fn next_run(
        &mut self,
        s: usize,
        next_write: u32,
        now: Instant,
    ) -> Option<std::ops::Range<u32>> {
        if !self.alive[s]
            || self.paused_until[s].is_some_and(|t| t > now)
            || self.runs[s] >= MAX_RUNS_PER_SOURCE
        {
            return None;
        }
        self.paused_until[s] = None;
        let measured = self.rate[s].value();
        // A source that stalled gets one chunk at a time until it delivers again.
        let room = match self.strikes[s] {
            0 => window_for(measured, self.report.sources[s].1, self.typical_len),
            _ => 1,
        };
        let free = room.saturating_sub(self.in_flight[s]);
        let longest = free.min(run_len(room, self.typical_len)) as u32;
        let first = *self.todo.first()?;
        if longest == 0 || first >= next_write + self.window {
            return None;
        }
        let mut end = first;
        while end - first < longest && end < next_write + self.window && self.todo.remove(&end) {
            end += 1;
        }
        self.in_flight[s] += (end - first) as usize;
        self.runs[s] += 1;
        Some(first..end)
    }

    /// What to wait for when nothing more can be handed out.
    pub(super) fn waiting(&self) -> Waiting {
        if self.runs.iter().any(|&n| n > 0) {
            return Waiting::OnChunks;
        }
        let wake = (0..self.alive.len())
            .filter(|&s| self.alive[s])
            .filter_map(|s| self.paused_until[s])
            .min();
        match wake {
            Some(t) => Waiting::Until(t),
            None => Waiting::Nothing,
        }
    }

    pub(super) fn delivered(&mut self, s: usize, len: usize) {
        self.in_flight[s] -= 1;
        self.rate[s].delivered(len as u64, Instant::now());
        self.report.sources[s].1 += len as u64;
        self.strikes[s] = 0;
        self.pause[s] = Duration::ZERO;
        self.progress = Instant::now();
    }

    /// A run stopped at `index`: the chunk and the rest of the run go back in line, and the
    /// source is paused (busy), given more time (the only one left, stalling) or dropped.
    pub(super) fn stopped(
        &mut self,
        s: usize,
        asked_at: u32,
        error: FetchError,
        index: u32,
        rest: std::ops::Range<u32>,
    ) {
        self.in_flight[s] -= 1 + rest.len();
        self.todo.insert(index);
        self.todo.extend(rest);
        self.last = error.to_string();
        if let Some(asked) = error.busy_pause() {
            if self.progress.elapsed() < MAX_BUSY_WAIT {
                // Busy is not failure: pause, doubling while it stays busy.
                let now = Instant::now();
                self.pause[s] = next_pause(self.pause[s], self.paused_until[s], now, asked);
                self.paused_until[s] = Some(now + self.pause[s]);
                return;
            }
        }
        let stalled = matches!(error, FetchError::Stalled { .. });
        let others = !self.standby.is_empty()
            || self
                .alive
                .iter()
                .enumerate()
                .any(|(o, &live)| live && o != s);
        if stalled && !others && self.strikes[s] < MAX_STRIKES {
            // Slowness is not failure: the only source left gets twice the time (once per
            // stall, however many of its requests stalled together).
            if asked_at == self.strikes[s] {
                self.strikes[s] += 1;
            }
        } else if self.alive[s] {
            self.alive[s] = false;
            self.report.dropped.push(self.report.sources[s].0.clone());
            if let Some(next) = self.standby.pop_front() {
                self.alive[next] = true;
            }
        }
    }
}

/// The pause after a BUSY answer: what the node `asked`, doubling (up to [`MAX_BUSY_PAUSE`])
/// each time the source is still busy when asked again. Once per pause: the other runs in
/// flight were asked at the same time and come back BUSY together, and doubling for each of
/// them would send this client to the back for seconds while others take the freed slots.
fn next_pause(
    last: Duration,
    paused_until: Option<Instant>,
    now: Instant,
    asked: Duration,
) -> Duration {
    if paused_until.is_some_and(|until| until > now) {
        last.max(asked)
    } else {
        (last * 2).max(asked).min(MAX_BUSY_PAUSE)
    }
}

/// The span over which a source's deliveries are summed into one rate sample.
const RATE_SPAN: Duration = Duration::from_millis(50);

/// A source's delivery rate: the bytes all its runs delivered over spans of at least
/// [`RATE_SPAN`], smoothed. Measured per source, not per chunk: timing each chunk from the one
/// before it in its run made a long run's back-to-back chunks look fast and a one-chunk run
/// (which waits a whole round trip) look slow, so windows sized by it grew for the clients
/// that were already fast and shrank for the slow ones, which then stayed slow under load.
#[derive(Debug)]
struct Meter {
    since: Instant,
    bytes: u64,
    rate: Ewma,
}

impl Meter {
    fn new(now: Instant) -> Self {
        Meter {
            since: now,
            bytes: 0,
            rate: Ewma::new(0.3),
        }
    }

    /// `len` bytes arrived at `now`; a span of at least [`RATE_SPAN`] becomes a sample.
    fn delivered(&mut self, len: u64, now: Instant) {
        self.bytes += len;
        let span = now.saturating_duration_since(self.since);
        if span >= RATE_SPAN {
            self.rate.update(self.bytes as f64 / span.as_secs_f64());
            self.bytes = 0;
            self.since = now;
        }
    }

    /// Bytes per second, once a span has closed.
    fn value(&self) -> Option<f64> {
        self.rate.value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_measured_throughput_within_bounds() {
        assert_eq!(window_for(None, 0, 65536), WINDOW_PER_SOURCE);
        assert_eq!(
            window_for(Some(1e3), 0, 65536),
            2,
            "a slow source keeps a minimum"
        );
        // 100 MB/s with 64 KiB chunks: 10 MB in 100 ms = 153 chunks.
        assert_eq!(window_for(Some(1e8), 1 << 30, 65536), 153);
        // 10 GB/s: 1 GB in flight would be 15,259 chunks; memory caps it at 32 MiB = 512.
        assert_eq!(
            window_for(Some(1e10), 1 << 30, 65536),
            MAX_WINDOW_PER_SOURCE
        );
        // 10 MB/s: 1 MB in flight = 16 chunks of 64 KiB.
        assert_eq!(window_for(Some(1e7), 1 << 30, 65536), 16);
        // 4 MiB chunks: memory caps the window at 8 however fast the source.
        assert_eq!(window_for(Some(1e10), 1 << 30, 4 << 20), 8);
    }

    #[test]
    fn before_its_rate_is_known_a_window_doubles_with_what_the_source_delivered() {
        let chunk = 65536u32;
        let c = u64::from(chunk);
        // Nothing delivered yet, or less than two chunks: the starting window.
        assert_eq!(window_for(None, 0, chunk), WINDOW_PER_SOURCE);
        assert_eq!(window_for(None, c, chunk), WINDOW_PER_SOURCE);
        // Each delivered chunk makes room for two: 4 delivered, 8 in flight; then 16, 32...
        assert_eq!(window_for(None, 4 * c, chunk), 8);
        assert_eq!(window_for(None, 16 * c, chunk), 32);
        // Up to the caps on chunks and bytes in flight.
        assert_eq!(window_for(None, 1 << 40, chunk), MAX_WINDOW_PER_SOURCE);
        assert_eq!(window_for(None, 1 << 40, 4 << 20), 8);
        // Once measured, the rate alone decides, whatever was delivered.
        assert_eq!(window_for(Some(1e3), 1 << 40, chunk), 2);
    }

    #[test]
    fn a_source_rate_sums_its_runs_over_a_span() {
        let start = Instant::now();
        let mut meter = Meter::new(start);
        // Four runs each deliver a 64 KiB chunk every 10 ms: 26.2 MB/s from the source, though
        // each run alone shows a quarter of it.
        for tick in 1..=4u64 {
            for _ in 0..4 {
                meter.delivered(65536, start + Duration::from_millis(10 * tick));
            }
        }
        assert_eq!(meter.value(), None, "no span has closed at 40 ms");
        meter.delivered(4 * 65536, start + Duration::from_millis(50));
        let rate = meter.value().expect("a 50 ms span closed");
        assert!((rate - 4.0 * 65536.0 / 0.010).abs() < 1.0, "{rate}");
        // Nothing before the first span closes.
        let mut fresh = Meter::new(start);
        fresh.delivered(65536, start + Duration::from_millis(20));
        assert_eq!(fresh.value(), None);
    }

    #[test]
    fn a_busy_source_pause_doubles_once_per_pause_up_to_the_cap() {
        let now = Instant::now();
        let asked = Duration::from_millis(100);
        let first = next_pause(Duration::ZERO, None, now, asked);
        assert_eq!(first, asked, "the node's own pause first");
        // Three more runs come back BUSY while that pause runs: it stays.
        let mut pause = first;
        for _ in 0..3 {
            pause = next_pause(pause, Some(now + first), now, asked);
        }
        assert_eq!(pause, asked);
        // Asked again after the pause and still busy: twice as long, then up to the cap.
        let later = now + first;
        assert_eq!(next_pause(pause, Some(later), later, asked), 2 * asked);
        let mut pause = 2 * asked;
        for _ in 0..10 {
            pause = next_pause(pause, None, later, asked);
        }
        assert_eq!(pause, MAX_BUSY_PAUSE);
        // A node asking for more than the doubling gives gets what it asks.
        assert_eq!(
            next_pause(Duration::ZERO, None, now, Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn runs_are_about_a_mebibyte_and_leave_room_for_a_second() {
        assert_eq!(run_len(64, 65536), 16, "1 MiB of 64 KiB chunks");
        assert_eq!(run_len(512, 65536), 128, "four runs fill a large room");
        assert_eq!(run_len(4, 65536), 2, "half the room");
        assert_eq!(
            run_len(1, 65536),
            1,
            "a stalling source asks one chunk at a time"
        );
        assert_eq!(run_len(2, 4 << 20), 1, "chunks above 1 MiB go one per run");
        assert_eq!(
            run_len(8, 4 << 20),
            2,
            "unless four runs would not fill the room"
        );
        assert_eq!(run_len(1 << 20, 1), MAX_RUN_CHUNKS as usize);
    }
}
