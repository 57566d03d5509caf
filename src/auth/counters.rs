//! The auth layer's counters: exported to Prometheus and readable for `/status`, resolved once
//! so the request path never looks a label up.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::Counter;

use super::decide::AuthStatus;
use crate::reason::Reason;
use crate::telemetry::names as metric;

/// One counter, exported to Prometheus and readable for `/status`.
pub(super) struct Count {
    metric: Counter,
    local: AtomicU64,
}

impl Count {
    fn new(metric: Counter) -> Self {
        Count { metric, local: AtomicU64::new(0) }
    }

    #[inline]
    pub(super) fn inc(&self) {
        self.metric.increment(1);
        self.local.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.local.load(Ordering::Relaxed)
    }
}

/// Metric handles resolved once.
pub(super) struct Counters {
    signed_in: Count,
    signed_out: Count,
    bypass: Count,
    grace: Count,
    rejected: Vec<(Reason, Count)>,
    bypassed: Counter,
    grace_accepted: Counter,
    pub(super) cache_hit: Count,
    pub(super) cache_miss: Count,
}

impl Counters {
    pub(super) fn new() -> Self {
        let ok = |outcome: &'static str| {
            Count::new(metrics::counter!(metric::REQUESTS, "outcome" => outcome, "reason" => "none"))
        };
        Counters {
            signed_in: ok(metric::outcome::SIGNED_IN),
            signed_out: ok(metric::outcome::SIGNED_OUT),
            bypass: ok(metric::outcome::BYPASS),
            grace: ok(metric::outcome::GRACE),
            rejected: Reason::ALL
                .iter()
                .map(|r| {
                    let c = metrics::counter!(metric::REQUESTS, "outcome" => metric::outcome::REJECTED, "reason" => r.as_str());
                    (*r, Count::new(c))
                })
                .collect(),
            bypassed: metrics::counter!(metric::BYPASSED),
            grace_accepted: metrics::counter!(metric::GRACE_ACCEPTED),
            cache_hit: Count::new(metrics::counter!(metric::VERDICT_CACHE, "result" => "hit")),
            cache_miss: Count::new(metrics::counter!(metric::VERDICT_CACHE, "result" => "miss")),
        }
    }

    /// A forwarded request.
    pub(super) fn forwarded(&self, status: AuthStatus) {
        match status {
            AuthStatus::SignedIn => self.signed_in.inc(),
            AuthStatus::SignedOut => self.signed_out.inc(),
            AuthStatus::Grace => {
                self.grace.inc();
                self.grace_accepted.increment(1);
            }
            AuthStatus::Bypass => {
                self.bypass.inc();
                self.bypassed.increment(1);
            }
        }
    }

    /// A refused request, by its reason's wire string (answers that are not refusals of ours
    /// are not counted here).
    pub(super) fn rejected(&self, reason: &str) {
        if let Some((_, c)) = self.rejected.iter().find(|(r, _)| r.as_str() == reason) {
            c.inc();
        }
    }

    pub(super) fn snapshot(&self) -> OutcomeCounts {
        OutcomeCounts {
            signed_in: self.signed_in.get(),
            signed_out: self.signed_out.get(),
            bypass: self.bypass.get(),
            grace: self.grace.get(),
            rejected: self.rejected.iter().filter(|(_, n)| n.get() > 0).map(|(r, n)| (r.as_str(), n.get())).collect(),
            cache_hits: self.cache_hit.get(),
            cache_misses: self.cache_miss.get(),
        }
    }
}

/// Request outcomes since start, for `/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutcomeCounts {
    /// Forwarded with a verified identity.
    pub signed_in: u64,
    /// Forwarded without identity (public routes).
    pub signed_out: u64,
    /// Forwarded because of bypass.
    pub bypass: u64,
    /// Accepted because of grace.
    pub grace: u64,
    /// Refused, by reason (only reasons seen).
    pub rejected: std::collections::BTreeMap<&'static str, u64>,
    /// Verdict-cache hits.
    pub cache_hits: u64,
    /// Verdict-cache misses.
    pub cache_misses: u64,
}
