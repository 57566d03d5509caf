//! Wall-clock time, injectable.
//!
//! Token claims (`exp`, `nbf`, `iat`), key staleness and override expiry are all decided by
//! wall-clock time. Everything that decides by time asks a [`Clock`], so tests can freeze and
//! advance it instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time: the system's, or a manual one for tests.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock frozen at `start` (milliseconds since the Unix epoch) until advanced.
    pub fn manual(start_ms: i64) -> Self {
        Clock { manual: Some(Arc::new(AtomicI64::new(start_ms))) }
    }

    /// Moves a manual clock forward (or back, with a negative amount). No effect on the system clock.
    pub fn advance_ms(&self, ms: i64) {
        if let Some(m) = &self.manual {
            m.fetch_add(ms, Ordering::SeqCst);
        }
    }

    /// Sets a manual clock. No effect on the system clock.
    pub fn set_ms(&self, ms: i64) {
        if let Some(m) = &self.manual {
            m.store(ms, Ordering::SeqCst);
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(m) => m.load(Ordering::Relaxed),
            None => system_ms(SystemTime::now()),
        }
    }

    /// The current time as a `SystemTime`.
    pub fn now(&self) -> SystemTime {
        from_ms(self.now_ms())
    }
}

/// Milliseconds since the Unix epoch for a `SystemTime` (negative before 1970).
pub fn system_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The `SystemTime` for milliseconds since the Unix epoch.
pub fn from_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// A duration in milliseconds, saturating.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
