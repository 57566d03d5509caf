//! The auth layer's counters: exported to Prometheus and readable for `/status`, resolved once
//! so the request path never looks a label up.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::Counter;

use super::decide::AuthStatus;
use crate::reason::Reason;
use crate::telemetry::history::{Lane, OutcomeHistory};
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

    /// A forwarded request, also counted in `history`'s minute of `now_ms`.
    pub(super) fn forwarded(&self, status: AuthStatus, history: &OutcomeHistory, now_ms: i64) {
        let lane = match status {
            AuthStatus::SignedIn => {
                self.signed_in.inc();
                Lane::SIGNED_IN
            }
            AuthStatus::SignedOut => {
                self.signed_out.inc();
                Lane::SIGNED_OUT
            }
            AuthStatus::Grace => {
                self.grace.inc();
                self.grace_accepted.increment(1);
                Lane::GRACE
            }
            AuthStatus::Bypass => {
                self.bypass.inc();
                self.bypassed.increment(1);
                Lane::BYPASS
            }
        };
        history.record(now_ms, lane);
    }

    /// A refused request, by its reason's wire string (answers that are not refusals of ours
    /// are not counted here), also counted in `history`'s minute of `now_ms`.
    pub(super) fn rejected(&self, reason: &str, history: &OutcomeHistory, now_ms: i64) {
        if let Some(i) = self.rejected.iter().position(|(r, _)| r.as_str() == reason) {
            self.rejected[i].1.inc();
            if let Some(lane) = Lane::rejected(i) {
                history.record(now_ms, lane);
            }
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

/// What a lane of the outcome history counts, as the console labels it: `signed-in`,
/// `signed-out`, `bypass`, `grace`, `5xx`, or a refusal reason's wire string. `None` for a lane
/// nothing counts in.
pub fn lane_name(lane: Lane) -> Option<&'static str> {
    match lane {
        Lane::SIGNED_IN => Some("signed-in"),
        Lane::SIGNED_OUT => Some("signed-out"),
        Lane::BYPASS => Some("bypass"),
        Lane::GRACE => Some("grace"),
        Lane::SERVER_ERROR => Some("5xx"),
        Lane(i) => Reason::ALL.get(i.checked_sub(Lane::FIXED)?).map(|r| r.as_str()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::history::LANES;

    #[test]
    fn every_reason_has_a_lane_of_its_own() {
        assert!(Lane::FIXED + Reason::ALL.len() <= LANES, "raise telemetry::history::LANES");
        let names: Vec<_> = (0..LANES).filter_map(|i| lane_name(Lane(i))).collect();
        assert_eq!(names.len(), Lane::FIXED + Reason::ALL.len());
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "two lanes share a name: {names:?}");
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(Lane::rejected(i).and_then(lane_name), Some(r.as_str()));
        }
    }
}
