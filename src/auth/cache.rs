//! The verdict cache: repeated requests with the same token skip the RSA check.
//!
//! Safety rules (a cache hit must never accept what a fresh verification would refuse):
//!
//! - The key is the **whole token**, compared in full on a hit — never a `kid`, a signature or
//!   a short hash, so a reused signature with an edited payload can never hit.
//! - Only the time-independent stage ([`super::verify::verify_signed`]) is cached; the clock
//!   checks run on every hit, so an entry never outlives the token's own validity.
//! - Every entry carries the epoch (config generation, key-set generation, revocation
//!   generation) it was verified under; an entry from another epoch is a miss. The cache is
//!   also emptied when the epoch moves, to free the memory.
//! - Bounded in entries; quick_cache evicts by its CLOCK-Pro policy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use quick_cache::sync::Cache;

use super::verify::Verified;

/// What the verdict depends on besides the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Epoch {
    /// The runtime (config and mode) generation.
    pub config: u64,
    /// The key-set generation.
    pub keys: u64,
    /// The revocation-list generation.
    pub revocations: u64,
}

/// Whole token → the epoch it was verified under and its verdict.
type Entries = Cache<Box<str>, (Epoch, Arc<Verified>)>;

/// A bounded map from whole token to its time-independent verdict.
pub struct VerdictCache {
    /// `None` when caching is disabled (capacity 0).
    entries: Option<Entries>,
    /// The epoch last seen; when a lookup brings a newer one, the cache is cleared.
    seen: [AtomicU64; 3],
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
            seen: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    fn observe(&self, epoch: Epoch) {
        let now = [epoch.config, epoch.keys, epoch.revocations];
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
