//! Bypass is an audited exception, never a silent one — and never a flood. Instead of a WARN
//! line per forwarded request (thousands a second in an incident, exactly when the gateway is
//! busiest), the log gets:
//!
//! - one line when a bypass setting starts forwarding requests (naming the first one, the
//!   setting's source, reason and expiry);
//! - then a summary with counts at most every [`SUMMARY_EVERY_MS`] while requests keep being
//!   forwarded under it;
//! - and a last summary when the first request after the bypass is decided otherwise.
//!
//! Every bypassed request is still counted (`clerkgate_bypassed_requests_total`), tagged
//! `X-Auth-Bypass: true`, and logged at DEBUG under the `clerkgate::bypass` target for anyone
//! who wants them one by one.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// How often, at most, a summary line is written while bypass forwards requests.
pub const SUMMARY_EVERY_MS: i64 = 60_000;

/// What to log after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// A bypass setting forwarded its first request; `earlier` were forwarded under a previous
    /// setting since the last line.
    Started {
        /// Forwarded under the previous bypass setting and not yet reported.
        earlier: u64,
    },
    /// Requests forwarded since the last line.
    Summary {
        /// How many.
        forwarded: u64,
        /// How many of them carried a verified identity.
        with_identity: u64,
        /// Since the last line, ms.
        over_ms: i64,
        /// Bypass no longer applies.
        ended: bool,
    },
}

/// Counts bypassed requests between log lines. Lock-free: a few relaxed atomics per bypassed
/// request, and one load per request outside bypass.
#[derive(Debug)]
pub struct BypassLog {
    /// The `since_ms` of the bypass setting announced last (`i64::MIN`: none).
    announced: AtomicI64,
    /// When the last line was written, ms.
    last_line_ms: AtomicI64,
    /// Forwarded under bypass since the last line.
    forwarded: AtomicU64,
    /// Of those, with a verified identity.
    with_identity: AtomicU64,
}

impl Default for BypassLog {
    fn default() -> Self {
        BypassLog {
            announced: AtomicI64::new(i64::MIN),
            last_line_ms: AtomicI64::new(0),
            forwarded: AtomicU64::new(0),
            with_identity: AtomicU64::new(0),
        }
    }
}

impl BypassLog {
    /// A request was forwarded under the bypass setting that took effect at `since_ms`.
    pub fn forwarded(&self, since_ms: i64, now_ms: i64, identified: bool) -> Option<Note> {
        // Acquire: a request that sees this setting announced counts after the announcing
        // request took the earlier counts (below), never into them.
        let announced = self.announced.load(Ordering::Acquire);
        if announced != since_ms {
            // Take what is pending before announcing: no request of this setting can count
            // until the announcement is seen, so everything taken is from before it.
            let earlier = self.forwarded.swap(0, Ordering::Relaxed);
            let earlier_identified = self.with_identity.swap(0, Ordering::Relaxed);
            if self.announced.compare_exchange(announced, since_ms, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                // This request is named in the line itself; the counts start after it.
                self.last_line_ms.store(now_ms, Ordering::Relaxed);
                return Some(Note::Started { earlier });
            }
            // Another request announced it first: give back what was taken, and count as one of
            // its requests.
            self.forwarded.fetch_add(earlier, Ordering::Relaxed);
            self.with_identity.fetch_add(earlier_identified, Ordering::Relaxed);
        }
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        if identified {
            self.with_identity.fetch_add(1, Ordering::Relaxed);
        }
        let last = self.last_line_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) < SUMMARY_EVERY_MS
            || self.last_line_ms.compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return None;
        }
        Some(self.summary(now_ms - last, false))
    }

    /// A request was decided outside bypass: reports what bypass forwarded since the last line,
    /// once.
    #[inline]
    pub fn not_bypassed(&self, now_ms: i64) -> Option<Note> {
        if self.forwarded.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.finish(now_ms)
    }

    #[cold]
    fn finish(&self, now_ms: i64) -> Option<Note> {
        let last = self.last_line_ms.swap(now_ms, Ordering::Relaxed);
        let note = self.summary(now_ms.saturating_sub(last), true);
        matches!(note, Note::Summary { forwarded, .. } if forwarded > 0).then_some(note)
    }

    fn summary(&self, over_ms: i64, ended: bool) -> Note {
        Note::Summary {
            forwarded: self.forwarded.swap(0, Ordering::Relaxed),
            with_identity: self.with_identity.swap(0, Ordering::Relaxed),
            over_ms,
            ended,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_bypass_setting_then_a_summary_a_minute_then_one_at_the_end() {
        let log = BypassLog::default();
        let since = 1_000;
        assert_eq!(log.forwarded(since, 1_000, false), Some(Note::Started { earlier: 0 }));
        // Thousands of requests within the minute: no line.
        for i in 0..5_000 {
            assert_eq!(log.forwarded(since, 1_000 + i, i % 2 == 0), None);
        }
        assert_eq!(
            log.forwarded(since, 61_000, true),
            Some(Note::Summary { forwarded: 5_001, with_identity: 2_501, over_ms: 60_000, ended: false })
        );
        assert_eq!(log.forwarded(since, 62_000, false), None);
        // Enforce again: the last count, once.
        assert_eq!(
            log.not_bypassed(70_000),
            Some(Note::Summary { forwarded: 1, with_identity: 0, over_ms: 9_000, ended: true })
        );
        assert_eq!(log.not_bypassed(70_001), None);
        // A new bypass setting is announced again.
        assert_eq!(log.forwarded(80_000, 80_000, false), Some(Note::Started { earlier: 0 }));
        // And a bypass replaced by another carries its unreported count into the new line.
        assert_eq!(log.forwarded(80_000, 80_001, false), None);
        assert_eq!(log.forwarded(90_000, 90_000, false), Some(Note::Started { earlier: 1 }));
    }

    /// Requests of a new bypass setting racing its first one are counted in its own summary,
    /// never reported as `earlier` (forwarded under a previous setting): the first bypass after
    /// a start has nothing earlier, and the totals add up exactly.
    #[test]
    fn racing_first_requests_are_counted_under_their_own_setting() {
        const THREADS: usize = 4;
        const EACH: u64 = 200;
        for round in 0..300 {
            let log = BypassLog::default();
            let start = std::sync::Barrier::new(THREADS);
            let earlier: u64 = std::thread::scope(|s| {
                let handles: Vec<_> = (0..THREADS)
                    .map(|_| {
                        s.spawn(|| {
                            start.wait();
                            (0..EACH)
                                .filter_map(|_| match log.forwarded(1_000, 1_000, false) {
                                    Some(Note::Started { earlier }) => Some(earlier),
                                    _ => None,
                                })
                                .sum::<u64>()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("thread")).sum()
            });
            assert_eq!(earlier, 0, "round {round}: a request of this setting was reported as an earlier one");
            let Some(Note::Summary { forwarded, .. }) = log.not_bypassed(2_000) else { panic!("a summary") };
            assert_eq!(forwarded, THREADS as u64 * EACH - 1, "round {round}");
        }
    }
}
