//! Logging and metrics setup.
//!
//! Metrics use the `metrics` facade with the Prometheus exporter's recorder installed once
//! per process; the admin listener renders it on `GET /metrics`. Names live in [`names`].
//!
//! Logs never hold up a request: events are formatted on the thread that emits them and handed
//! to one writer thread through a bounded buffer ([`LOG_BUFFER_LINES`]). When the buffer is
//! full (stderr cannot keep up) the line is dropped and counted in
//! [`names::LOG_LINES_DROPPED`], instead of the request waiting for the pipe.

pub mod names;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

use crate::config::{log_filter, LogConfig, LogFormat};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// Log lines waiting for the writer thread, at most; past that, lines are dropped and counted.
pub const LOG_BUFFER_LINES: usize = 8_192;

/// Lines the log writer dropped, once logging is initialised.
static DROPPED_LINES: OnceLock<ErrorCounter> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and returns the handle that renders it.
pub fn metrics_handle() -> PrometheusHandle {
    PROMETHEUS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // A recorder may already be installed (another gateway in the same test process);
            // then this handle renders an empty registry, which is acceptable for tests.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Renders every metric for `GET /metrics`, after bringing the ones read at scrape time up to
/// date.
pub fn render_metrics() -> String {
    if let Some(dropped) = DROPPED_LINES.get() {
        metrics::counter!(names::LOG_LINES_DROPPED).absolute(dropped.dropped_lines() as u64);
    }
    metrics_handle().render()
}

/// Keeps the log writer thread; dropping it writes out every buffered line (waiting a second
/// at most). Hold it until the process ends.
#[derive(Debug)]
#[must_use = "dropping the guard stops the log writer"]
pub struct LogGuard {
    _writer: WorkerGuard,
}

/// Installs the tracing subscriber for the binary, writing to stderr through the non-blocking
/// writer. Tests may skip it; when a subscriber is already installed this one is not.
pub fn init_logging(log: &LogConfig) -> LogGuard {
    let filter = log_filter(&log.level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(LOG_BUFFER_LINES)
        .thread_name("clerkgate-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let installed = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    if installed.is_ok() {
        let _ = DROPPED_LINES.set(dropped);
    }
    LogGuard { _writer: guard }
}

/// Lets a repeated log line through at most once a period, and counts the lines held back
/// in between, so that a condition met on every request makes one line a period, not one per
/// request.
#[derive(Debug)]
pub struct Throttle {
    period_ms: u64,
    /// When the last line went out, in ms since [`process_ms`]'s origin, plus one (0: never).
    last: AtomicU64,
    held_back: AtomicU64,
}

impl Throttle {
    /// One line a second.
    pub const fn per_second() -> Self {
        Throttle { period_ms: 1_000, last: AtomicU64::new(0), held_back: AtomicU64::new(0) }
    }

    /// `Some(lines held back since the last one)` when a line may go out now; `None` (and one
    /// more held back) otherwise.
    pub fn admit(&self) -> Option<u64> {
        let now = process_ms() + 1;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.period_ms;
        if due && self.last.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Milliseconds since the first call in this process (a monotonic clock for rate limits, which
/// decide no outcome).
fn process_ms() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_lets_one_line_through_and_counts_the_rest() {
        let t = Throttle::per_second();
        assert_eq!(t.admit(), Some(0));
        assert_eq!(t.admit(), None);
        assert_eq!(t.admit(), None);
        assert_eq!(t.held_back.load(Ordering::Relaxed), 2);
    }
}
