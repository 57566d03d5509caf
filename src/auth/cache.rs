//! The verdict cache: repeated requests with the same token skip the RSA check.
//!
//! Safety rules (a cache hit must never accept what a fresh verification would refuse):
//!
//! - The key is the **whole token**, compared in full on a hit — never a `kid`, a signature or
//!   a short hash, so a reused signature with an edited payload can never hit.
//! - Only the time-independent stage ([`super::verify::verify_signed`]) is cached; the clock
//!   checks run on every hit, so an entry never outlives the token's own validity.
//! - Every entry carries the epoch it was verified under — the key-set generation and the
//!   verification-config generation ([`VerificationGenerations`]), exactly what the cached stage
//!   reads besides the token; an entry from another epoch is a miss. The cache is also emptied
//!   when the epoch moves, to free the memory.
//! - Nothing else is in the epoch, so the cache survives what does not change a verdict: a mode
//!   change (to grace or bypass in the middle of an incident, when the RSA check is the last
//!   thing the gateway needs), a revocation, a reload that changes only routes or the upstream.
//!   Mode, revocations and expiry are checked on every request, hit or miss.
//! - Bounded in entries; quick_cache evicts by its CLOCK-Pro policy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use quick_cache::sync::Cache;

use super::verify::Verified;
use crate::config::{ClerkConfig, Config};

/// What the verdict depends on besides the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Epoch {
    /// The key-set generation.
    pub keys: u64,
    /// The verification-config generation.
    pub verification: u64,
}

/// Whole token → the epoch it was verified under and its verdict.
type Entries = Cache<Box<str>, (Epoch, Arc<Verified>)>;

/// A bounded map from whole token to its time-independent verdict.
pub struct VerdictCache {
    /// `None` when caching is disabled (capacity 0).
    entries: Option<Entries>,
    /// The epoch last seen; when a lookup brings a newer one, the cache is cleared.
    seen: [AtomicU64; 2],
}

impl std::fmt::Debug for VerdictCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictCache").field("len", &self.len()).finish()
    }
}

impl VerdictCache {
    /// A cache holding at most `capacity` verdicts (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        VerdictCache {
            entries: (capacity > 0).then(|| Cache::new(capacity)),
            seen: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    fn observe(&self, epoch: Epoch) {
        let now = [epoch.keys, epoch.verification];
        let mut moved = false;
        for (slot, value) in self.seen.iter().zip(now) {
            // Read first: the common case is an unchanged epoch, and a plain load keeps the
            // cache line shared between cores instead of bouncing it on every request.
            if slot.load(Ordering::Acquire) != value {
                slot.store(value, Ordering::Release);
                moved = true;
            }
        }
        if moved {
            self.clear();
        }
    }

    /// The cached verdict for `token` under `epoch`.
    #[inline]
    pub fn get(&self, token: &str, epoch: Epoch) -> Option<Arc<Verified>> {
        let entries = self.entries.as_ref()?;
        self.observe(epoch);
        match entries.get(token) {
            Some((e, v)) if e == epoch => Some(v),
            _ => None,
        }
    }

    /// Remembers `verified` for `token` under `epoch`.
    pub fn insert(&self, token: &str, epoch: Epoch, verified: Arc<Verified>) {
        let Some(entries) = &self.entries else { return };
        self.observe(epoch);
        entries.insert(token.into(), (epoch, verified));
    }

    /// Drops every entry.
    pub fn clear(&self) {
        if let Some(e) = &self.entries {
            e.clear();
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.len())
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Numbers the verification configs the gateway has run with: a config gets the number of the
/// one before it when every setting the cached stage reads is the same
/// ([`same_verification`]), and a fresh number otherwise. A mode change keeps the config (the
/// same `Arc`), so it costs one pointer comparison and keeps the number.
pub struct VerificationGenerations {
    /// The config last numbered, kept alive so its address cannot be reused, and its number.
    last: ArcSwap<(Arc<Config>, u64)>,
    /// The last number handed out; every fresh number is unique.
    issued: AtomicU64,
}

impl std::fmt::Debug for VerificationGenerations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerificationGenerations").field("current", &self.last.load().1).finish()
    }
}

impl VerificationGenerations {
    /// Starts numbering at `config`.
    pub fn new(config: Arc<Config>) -> Self {
        VerificationGenerations { last: ArcSwap::from_pointee((config, 0)), issued: AtomicU64::new(0) }
    }

    /// The number of `config`'s verification settings.
    #[inline]
    pub fn of(&self, config: &Arc<Config>) -> u64 {
        let last = self.last.load();
        if Arc::ptr_eq(&last.0, config) {
            return last.1;
        }
        self.renumber(&last, config)
    }

    /// A config not seen last: same number when its verification settings are the same,
    /// otherwise a fresh one. Racing callers may renumber back and forth while requests from
    /// before and after a reload are both in flight; every number still names exactly one set
    /// of verification settings, so a verdict is only ever found under settings equal to the
    /// ones it was reached with.
    #[cold]
    fn renumber(&self, last: &(Arc<Config>, u64), config: &Arc<Config>) -> u64 {
        let n = if same_verification(&last.0.clerk, &config.clerk) {
            last.1
        } else {
            self.issued.fetch_add(1, Ordering::AcqRel) + 1
        };
        self.last.store(Arc::new((config.clone(), n)));
        n
    }
}

/// True when two `[clerk]` sections give every token the same verdict in the cached stage
/// ([`super::verify::verify_signed`] and what decides whether it runs on the remote set): the
/// networkless key, the remote key source, `authorized_parties`, `issuer`, `clock_skew` and the
/// publishable key. Whatever else changes (mode, routes, upstream, `reject_pending_sessions`,
/// `max_stale`, which are all applied after the cache) keeps the cached verdicts.
///
/// Every setting the cached stage reads must be compared here; the differential property in
/// the gate's tests changes each of them between two requests and checks a hit against a fresh
/// verification.
pub fn same_verification(a: &ClerkConfig, b: &ClerkConfig) -> bool {
    let same_key = match (&a.jwt_key, &b.jwt_key) {
        (None, None) => true,
        (Some(x), Some(y)) => Arc::ptr_eq(x, y) || (x.n == y.n && x.e == y.e && x.kid == y.kid),
        _ => false,
    };
    same_key
        && a.jwks.as_ref().map(|j| &j.url) == b.jwks.as_ref().map(|j| &j.url)
        && a.authorized_parties == b.authorized_parties
        && a.issuer == b.issuer
        && a.clock_skew == b.clock_skew
        && a.publishable_key.as_ref().map(|p| &p.raw) == b.publishable_key.as_ref().map(|p| &p.raw)
}
