//! Logging and metrics setup.
//!
//! Metrics use the `metrics` facade with the Prometheus exporter's recorder installed once
//! per process; the admin listener renders it on `GET /metrics`. Names live in [`names`].

pub mod names;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::config::{log_filter, LogConfig, LogFormat};

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

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

/// Installs the tracing subscriber for the binary. Tests and the demo may skip it.
pub fn init_logging(log: &LogConfig) {
    let filter = log_filter(&log.level).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}
