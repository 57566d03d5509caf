//! Request outcomes per minute over the last quarter hour, for the console's chart: a ring of
//! per-minute slots, each a row of counters ("lanes") that the auth layer and the proxy add to.
//!
//! Recording costs one atomic load and one atomic add; only the first request of a new minute
//! also claims the slot (a compare-and-swap) and zeroes its row. A request that lands in a slot
//! between another thread's claim and its zeroing is lost, so a minute's count may be short by
//! the few requests of its first instant: a chart, not a ledger (the exact totals since start
//! are the Prometheus counters and `/status`).
//!
//! The lanes are numbered by the caller: [`Lane`] names the fixed ones, and the auth layer puts
//! one lane per refusal reason after them ([`Lane::rejected`]).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::clock::Clock;

/// Minutes the console shows.
pub const WINDOW_MINUTES: usize = 15;

/// Slots in the ring: one more than the window, so the slot being claimed for the new minute is
/// never one the window reads.
const SLOTS: usize = WINDOW_MINUTES + 1;

/// Lanes per slot, at most: the fixed ones and one per refusal reason (a unit test in the auth
/// layer checks that every reason has one).
pub const LANES: usize = 48;

/// A lane: what one counter of a minute counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane(pub usize);

impl Lane {
    /// Forwarded with a verified identity.
    pub const SIGNED_IN: Lane = Lane(0);
    /// Forwarded without identity (a public route).
    pub const SIGNED_OUT: Lane = Lane(1);
    /// Forwarded because of bypass.
    pub const BYPASS: Lane = Lane(2);
    /// Accepted because of grace.
    pub const GRACE: Lane = Lane(3);
    /// A forwarded request answered with a 5xx: by the upstream, or the gateway's 502/504 when
    /// the upstream failed.
    pub const SERVER_ERROR: Lane = Lane(4);
    /// Lanes before the refusal reasons.
    pub const FIXED: usize = 5;

    /// The lane of the `index`-th refusal reason, or `None` past the last lane.
    pub fn rejected(index: usize) -> Option<Lane> {
        (Lane::FIXED + index < LANES).then_some(Lane(Lane::FIXED + index))
    }
}

struct Slot {
    /// The minute (ms since the epoch / 60 000) whose counts the row holds.
    minute: AtomicI64,
    counts: [AtomicU64; LANES],
}

/// The ring. See the module documentation.
pub struct OutcomeHistory {
    slots: [Slot; SLOTS],
    clock: Clock,
}

impl std::fmt::Debug for OutcomeHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeHistory").finish_non_exhaustive()
    }
}

/// One minute of the window: when it starts, and its count per lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Minute {
    /// The minute's start, ms since the epoch.
    pub start_ms: i64,
    /// The count per lane.
    pub counts: [u64; LANES],
}

impl OutcomeHistory {
    /// An empty ring on `clock` (which [`OutcomeHistory::record_now`] reads).
    pub fn new(clock: Clock) -> Self {
        OutcomeHistory {
            slots: std::array::from_fn(|_| Slot {
                minute: AtomicI64::new(i64::MIN),
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
            }),
            clock,
        }
    }

    /// Counts one request in `lane` at `now_ms`.
    #[inline]
    pub fn record(&self, now_ms: i64, lane: Lane) {
        let minute = now_ms.div_euclid(60_000);
        let slot = &self.slots[minute.rem_euclid(SLOTS as i64) as usize];
        let seen = slot.minute.load(Ordering::Acquire);
        if seen != minute {
            // A clock stepped back past a newer minute in this slot: that minute is out of the
            // window anyway, and the newer one's counts must not be wiped.
            if seen > minute {
                return;
            }
            if slot.minute.compare_exchange(seen, minute, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                slot.counts.iter().for_each(|c| c.store(0, Ordering::Relaxed));
            }
        }
        if let Some(c) = slot.counts.get(lane.0) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one request in `lane` now, by the ring's clock.
    pub fn record_now(&self, lane: Lane) {
        self.record(self.clock.now_ms(), lane);
    }

    /// The last [`WINDOW_MINUTES`] minutes up to `now_ms`, oldest first, the current one
    /// (partial) last; a minute without requests counts zero.
    pub fn window(&self, now_ms: i64) -> Vec<Minute> {
        let current = now_ms.div_euclid(60_000);
        (current + 1 - WINDOW_MINUTES as i64..=current)
            .map(|minute| {
                let slot = &self.slots[minute.rem_euclid(SLOTS as i64) as usize];
                let counts = if slot.minute.load(Ordering::Acquire) == minute {
                    std::array::from_fn(|i| slot.counts[i].load(Ordering::Relaxed))
                } else {
                    [0; LANES]
                };
                Minute { start_ms: minute.saturating_mul(60_000), counts }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z, a minute boundary

    fn lane_counts(h: &OutcomeHistory, now_ms: i64, lane: Lane) -> Vec<u64> {
        h.window(now_ms).iter().map(|m| m.counts[lane.0]).collect()
    }

    #[test]
    fn counts_land_in_their_minute_and_age_out_of_the_window() {
        let h = OutcomeHistory::new(Clock::manual(T0));
        h.record(T0, Lane::SIGNED_IN);
        h.record(T0 + 59_999, Lane::SIGNED_IN);
        h.record(T0 + 60_000, Lane::BYPASS);
        h.record(T0 + 120_000, Lane::SIGNED_IN);
        let now = T0 + 120_500;
        let window = h.window(now);
        assert_eq!(window.len(), WINDOW_MINUTES);
        assert_eq!(window.last().map(|m| m.start_ms), Some(T0 + 120_000));
        let signed_in = lane_counts(&h, now, Lane::SIGNED_IN);
        assert_eq!(&signed_in[WINDOW_MINUTES - 3..], &[2, 0, 1]);
        assert_eq!(lane_counts(&h, now, Lane::BYPASS)[WINDOW_MINUTES - 2], 1);
        // Fifteen minutes on, the first minute has left the window.
        let later = T0 + 15 * 60_000;
        assert_eq!(lane_counts(&h, later, Lane::SIGNED_IN).iter().sum::<u64>(), 1);
    }

    #[test]
    fn a_reused_slot_starts_from_zero_and_a_stale_one_reads_as_zero() {
        let h = OutcomeHistory::new(Clock::manual(T0));
        h.record(T0, Lane::GRACE);
        h.record(T0, Lane::GRACE);
        // The same slot, SLOTS minutes later: the old counts are gone.
        let again = T0 + SLOTS as i64 * 60_000;
        h.record(again, Lane::GRACE);
        assert_eq!(lane_counts(&h, again, Lane::GRACE).iter().sum::<u64>(), 1);
        // A slot last written long ago is not read as a minute of the window.
        let quiet = T0 + 100 * 60_000;
        assert_eq!(lane_counts(&h, quiet, Lane::GRACE).iter().sum::<u64>(), 0);
    }

    #[test]
    fn a_clock_stepped_back_never_wipes_a_newer_minute() {
        let h = OutcomeHistory::new(Clock::manual(T0));
        let newer = T0 + SLOTS as i64 * 60_000;
        h.record(newer, Lane::SIGNED_IN);
        h.record(T0, Lane::SIGNED_IN);
        assert_eq!(lane_counts(&h, newer, Lane::SIGNED_IN).iter().sum::<u64>(), 1);
    }

    #[test]
    fn lanes_past_the_last_are_refused_and_never_panic() {
        assert_eq!(Lane::rejected(0), Some(Lane(Lane::FIXED)));
        assert_eq!(Lane::rejected(LANES), None);
        let h = OutcomeHistory::new(Clock::manual(T0));
        h.record(T0, Lane(LANES + 3));
        h.record(i64::MIN, Lane::SIGNED_IN);
        h.record(i64::MAX, Lane::SIGNED_IN);
        let _ = (h.window(i64::MIN), h.window(i64::MAX));
        let h = OutcomeHistory::new(Clock::manual(T0));
        h.record_now(Lane::SERVER_ERROR);
        assert_eq!(lane_counts(&h, T0, Lane::SERVER_ERROR)[WINDOW_MINUTES - 1], 1);
    }
}
