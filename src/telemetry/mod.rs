//! Logging and metrics setup.
//!
//! Metrics use the `metrics` facade with the Prometheus exporter's recorder installed once
//! per process; the admin listener renders it on `GET /metrics`. Names live in [`names`].
//!
//! Logs never hold up a request: events are formatted on the thread that emits them and handed
//! to one writer thread through a bounded buffer ([`LOG_BUFFER_LINES`]). When the buffer is
//! full (stderr cannot keep up) the line is dropped and counted in
//! [`names::LOG_LINES_DROPPED`], instead of the request waiting for the pipe.

pub mod history;
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
            if metrics::set_global_recorder(recorder).is_ok() {
                describe();
            }
            handle
        })
        .clone()
}

/// Gives every metric its `# HELP` line (and unit) in `/metrics`.
fn describe() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_counter!(names::REQUESTS, "Requests forwarded or answered, by outcome and refusal reason.");
    describe_counter!(names::BYPASSED, "Requests forwarded only because of bypass mode.");
    describe_counter!(names::GRACE_ACCEPTED, "Requests whose expired token was accepted only because of grace mode.");
    describe_gauge!(names::MODE, "The mode in force: 1 for the active mode label, 0 for the others.");
    describe_counter!(
        names::VERDICT_CACHE,
        "Verdict cache lookups, by result (hit, miss); hit / (hit + miss) is the hit ratio."
    );
    describe_counter!(names::JWKS_FETCHES, "JWKS fetches, by result and trigger (only with a JWKS source).");
    describe_gauge!(
        names::JWKS_AGE,
        Unit::Seconds,
        "Seconds since the last successful JWKS fetch (only with a JWKS source)."
    );
    describe_gauge!(names::JWKS_KEYS, "Keys in the remote key set (0 with only a networkless key).");
    describe_counter!(names::RELOADS, "Config reloads, by result (ok, error).");
    describe_counter!(
        names::SECRET_KEY_CHECKS,
        "A reload's new secret key checked at the Backend API, by result (accepted, rejected, unchecked); \
         only an accepted key goes in force."
    );
    describe_counter!(
        names::UPSTREAM_ERRORS,
        "Failures of the upstream hop, by kind (connect, timeout, broken, upgrade)."
    );
    describe_counter!(
        names::ANSWERS,
        "Responses the gateway wrote itself, by fault (client, upstream, clerk, gateway) and reason."
    );
    describe_counter!(names::LOG_LINES_DROPPED, "Log lines dropped because the log writer fell behind.");
    describe_gauge!(names::CONNECTIONS_OPEN, "Client connections open now.");
    describe_counter!(
        names::CONNECTIONS_REFUSED,
        "Client connections refused, by why (total, per_client, proxy_protocol: a PROXY header from an untrusted peer, or broken)."
    );
    describe_counter!(
        names::FORWARDED_REPLACED,
        "Requests from a trusted peer whose X-Forwarded-For or X-Forwarded-Proto was not usable and was rebuilt."
    );
    describe_counter!(
        names::CONNECTIONS_CLOSED,
        "Client connections closed by the watchdog, by why (no_request, idle, send_stalled)."
    );
    describe_counter!(
        names::TLS_HANDSHAKE_FAILURES,
        "TLS handshakes that clients failed (a silent client counts as a closed connection, no_request)."
    );
    describe_counter!(
        names::CLIENT_BODY_ERRORS,
        "Requests answered because of the client's body, by kind (malformed, timeout)."
    );
    describe_counter!(
        names::CANCELLED_UPSTREAM,
        "Upstream requests left to finish after their client went away, by result."
    );
    describe_counter!(
        names::BACKEND_API_CALLS,
        "Backend API calls of the browser flow, by call (handshake_payload, refresh) and result (ok, error, unreachable)."
    );
    describe_gauge!(names::FLEET_CONNECTED, "1 while the fleet's Redis is followed, 0 while it is away.");
    describe_gauge!(names::FLEET_EPOCH, "The last fleet epoch this gateway applied.");
    describe_counter!(names::FLEET_RESYNCS, "Whole reads of the fleet's state, by reason.");
    describe_counter!(names::FLEET_STORE_RESETS, "Times the fleet's Redis was found to have lost or rewound its data.");
    describe_gauge!(names::AUDIT_BUFFERED, "Audit records not yet copied to the fleet's audit stream.");
    describe_counter!(names::AUDIT_DROPPED, "Audit records skipped from the copy to the fleet (local buffer full).");
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
        // Colour only on a terminal: escape codes in a log file or a collector are noise.
        LogFormat::Pretty => {
            builder.compact().with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init()
        }
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
