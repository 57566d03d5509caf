//! How fast the client may call (clerk-ops §2, §8.1): a token bucket per client (the instance's
//! budget is per secret key), a pause per endpoint after a 429 (Clerk blocks the endpoint, not
//! just the request), and exponential backoff with full jitter for 5xx and connect errors.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// The most requests per `per`: a full bucket of `requests`, refilled evenly over `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per window.
    pub requests: u32,
    /// The window.
    pub per: Duration,
}

impl Rate {
    /// Clerk's window for the Backend API limit.
    pub const WINDOW: Duration = Duration::from_secs(10);

    /// 80 % of Clerk's published limit for the key's environment: 800 requests / 10 s for a
    /// production key (`sk_live_`), 80 / 10 s for any other (development, 100 / 10 s at Clerk),
    /// so the instance keeps room for the app's own calls.
    pub fn for_key(secret_key: &str) -> Rate {
        let requests = if secret_key.starts_with("sk_live_") { 800 } else { 80 };
        Rate { requests, per: Self::WINDOW }
    }
}

/// The token bucket. Waiters queue in order (the lock is fair and held while waiting).
#[derive(Debug)]
pub(super) struct Budget {
    rate: Rate,
    bucket: tokio::sync::Mutex<(f64, Instant)>,
}

impl Budget {
    pub(super) fn new(rate: Rate) -> Budget {
        let rate = Rate { requests: rate.requests.max(1), per: rate.per.max(Duration::from_millis(1)) };
        Budget { rate, bucket: tokio::sync::Mutex::new((f64::from(rate.requests), Instant::now())) }
    }

    /// Takes one request's worth, waiting for it when the bucket is empty.
    pub(super) async fn take(&self) {
        let mut bucket = self.bucket.lock().await;
        let per_token = self.rate.per.as_secs_f64() / f64::from(self.rate.requests);
        let capacity = f64::from(self.rate.requests);
        let refill = |b: &mut (f64, Instant)| {
            let now = Instant::now();
            b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() / per_token).min(capacity);
            b.1 = now;
        };
        refill(&mut bucket);
        if bucket.0 < 1.0 {
            tokio::time::sleep(Duration::from_secs_f64((1.0 - bucket.0) * per_token)).await;
            refill(&mut bucket);
        }
        bucket.0 = (bucket.0 - 1.0).max(0.0);
    }
}

/// Endpoints Clerk has blocked with a 429, until when.
#[derive(Debug, Default)]
pub(super) struct Pauses(Mutex<HashMap<&'static str, Instant>>);

impl Pauses {
    /// Waits until `endpoint` is no longer paused.
    pub(super) async fn wait(&self, endpoint: &'static str) {
        loop {
            let until = self.0.lock().ok().and_then(|p| p.get(endpoint).copied());
            match until {
                Some(at) if at > Instant::now() => tokio::time::sleep_until(at).await,
                _ => return,
            }
        }
    }

    /// Pauses `endpoint` for `wait` (never shortening a pause already in force).
    pub(super) fn pause(&self, endpoint: &'static str, wait: Duration) {
        if let Ok(mut p) = self.0.lock() {
            let until = Instant::now() + wait;
            let at = p.entry(endpoint).or_insert(until);
            *at = (*at).max(until);
        }
    }
}

/// The shortest wait after a 429, whatever `Retry-After` says: `0` or a date in the past would
/// otherwise retry at once, again and again, and never use up the time a call may spend on 429s.
pub(super) const MIN_429_WAIT: Duration = Duration::from_secs(1);

/// How long a 429 asks to wait: `Retry-After` as whole seconds or an HTTP date; 10 s (the limit
/// window) when it is absent or unreadable; at least [`MIN_429_WAIT`], at most `cap`.
pub fn retry_after(value: Option<&str>, now: SystemTime, cap: Duration) -> Duration {
    let wait = value.map(str::trim).and_then(|v| {
        v.parse::<u64>()
            .ok()
            .map(Duration::from_secs)
            .or_else(|| httpdate::parse_http_date(v).ok().map(|at| at.duration_since(now).unwrap_or(Duration::ZERO)))
    });
    wait.unwrap_or(Rate::WINDOW).max(MIN_429_WAIT).min(cap)
}

/// The wait before retry `attempt` (0 for the first retry): full jitter over `base × 2^attempt`,
/// capped at `cap`; `unit` is a random number in `[0, 1)`.
pub fn backoff(base: Duration, cap: Duration, attempt: u32, unit: f64) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// A random number in `[0, 1)` from the system's generator (0.5 should it ever fail).
pub fn unit_random() -> f64 {
    let mut bytes = [0u8; 4];
    match aws_lc_rs::rand::fill(&mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_by_key_environment() {
        assert_eq!(Rate::for_key("sk_live_x").requests, 800);
        assert_eq!(Rate::for_key("sk_test_x").requests, 80);
        assert_eq!(Rate::for_key("anything").requests, 80);
    }

    #[test]
    fn retry_after_in_seconds_or_a_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let cap = Duration::from_secs(600);
        assert_eq!(retry_after(Some("3"), now, cap), Duration::from_secs(3));
        assert_eq!(retry_after(Some(" 0 "), now, cap), MIN_429_WAIT, "a 0 never means retry at once");
        assert_eq!(retry_after(None, now, cap), Duration::from_secs(10));
        assert_eq!(retry_after(Some("abc"), now, cap), Duration::from_secs(10));
        assert_eq!(retry_after(Some("-1"), now, cap), Duration::from_secs(10));
        assert_eq!(retry_after(Some("99999999999"), now, cap), cap);
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        assert_eq!(retry_after(Some(&date), now, cap), Duration::from_secs(7));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(7));
        assert_eq!(retry_after(Some(&past), now, cap), MIN_429_WAIT);
    }

    #[test]
    fn backoff_is_capped_full_jitter() {
        let (base, cap) = (Duration::from_millis(500), Duration::from_secs(30));
        assert_eq!(backoff(base, cap, 0, 0.999_999), Duration::from_millis(500).mul_f64(0.999_999));
        assert_eq!(backoff(base, cap, 3, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(base, cap, 10, 0.5), Duration::from_secs(15));
        assert_eq!(backoff(base, cap, u32::MAX, 1.0), cap);
        assert_eq!(backoff(base, cap, 2, 0.0), Duration::ZERO);
        for _ in 0..100 {
            let u = unit_random();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_spends_a_window_then_refills_evenly() {
        let budget = Budget::new(Rate { requests: 10, per: Duration::from_secs(10) });
        let start = Instant::now();
        for _ in 0..10 {
            budget.take().await;
        }
        assert_eq!(Instant::now(), start, "a full bucket answers at once");
        for _ in 0..5 {
            budget.take().await;
        }
        let waited = Instant::now() - start;
        assert!(waited >= Duration::from_millis(4_999) && waited <= Duration::from_millis(5_001), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_only_its_endpoint() {
        let pauses = Pauses::default();
        pauses.pause("GET /v1/users", Duration::from_secs(3));
        pauses.pause("GET /v1/users", Duration::from_secs(1));
        let start = Instant::now();
        pauses.wait("GET /v1/sessions").await;
        assert_eq!(Instant::now(), start);
        pauses.wait("GET /v1/users").await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3), "a shorter pause never shortens a longer one");
    }
}
