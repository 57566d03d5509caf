//! The runtime snapshot every request reads: the validated config plus the mode in force.
//!
//! Writers (the control task) build a whole new [`Runtime`] and swap it in; readers take one
//! atomic load per request and never lock. A change therefore applies to the next request and
//! never to one already in flight.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::clock::duration_ms;
use crate::config::Config;
use crate::mode::{Mode, ModeSetting, ModeSource};
use crate::telemetry::history::OutcomeHistory;

/// One immutable snapshot of everything a request needs to decide.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The validated config in force.
    pub config: Arc<Config>,
    /// The admin override, if any (it may have expired; [`Runtime::mode_at`] checks).
    pub admin_override: Option<ModeSetting>,
    /// The mode from `CLERK_EMERGENCY_BYPASS`, if set at start.
    pub env_mode: Option<ModeSetting>,
    /// The mode from the config file.
    pub file_mode: ModeSetting,
}

static ENFORCE_DEFAULT: std::sync::LazyLock<ModeSetting> = std::sync::LazyLock::new(ModeSetting::enforce_default);

impl Runtime {
    /// The mode in force at `now_ms`: admin override, then env, then file, skipping expired ones.
    #[inline]
    pub fn mode_at(&self, now_ms: i64) -> &ModeSetting {
        [self.admin_override.as_ref(), self.env_mode.as_ref(), Some(&self.file_mode)]
            .into_iter()
            .flatten()
            .find(|m| m.active(now_ms))
            .unwrap_or(&ENFORCE_DEFAULT)
    }

    /// The file's mode setting for `config`, loaded at `now_ms`. A bypass set by file always
    /// expires after `max_override_ttl`, like every other bypass.
    pub fn file_mode_for(config: &Config, now_ms: i64) -> ModeSetting {
        let m = &config.mode;
        ModeSetting {
            mode: m.mode,
            source: ModeSource::File,
            reason: m.reason.clone(),
            actor: "file".into(),
            since_ms: now_ms,
            expires_at_ms: (m.mode == Mode::Bypass).then(|| now_ms + duration_ms(m.max_override_ttl)),
        }
    }

    /// The env mode setting when `CLERK_EMERGENCY_BYPASS=true`, expiring after `max_override_ttl`.
    pub fn env_mode_for(config: &Config, now_ms: i64) -> Option<ModeSetting> {
        config.mode.emergency_bypass_env.then(|| ModeSetting {
            mode: Mode::Bypass,
            source: ModeSource::Env,
            reason: "CLERK_EMERGENCY_BYPASS=true".into(),
            actor: "env".into(),
            since_ms: now_ms,
            expires_at_ms: Some(now_ms + duration_ms(config.mode.max_override_ttl)),
        })
    }

    /// The first snapshot for a freshly loaded config.
    pub fn initial(config: Arc<Config>, now_ms: i64) -> Self {
        Runtime {
            file_mode: Self::file_mode_for(&config, now_ms),
            env_mode: Self::env_mode_for(&config, now_ms),
            admin_override: None,
            config,
        }
    }

    /// This snapshot with another admin override.
    pub fn with_override(&self, admin_override: Option<ModeSetting>) -> Runtime {
        Runtime { admin_override, ..self.clone() }
    }

    /// This snapshot with a reloaded config, loaded at `now_ms`. The file's mode keeps its
    /// original start (and so its expiry) while the file says the same thing; a changed `[mode]`
    /// section starts afresh.
    pub fn with_config(&self, config: Arc<Config>, now_ms: i64) -> Runtime {
        let fresh = Self::file_mode_for(&config, now_ms);
        let file_mode = if fresh.mode == self.file_mode.mode && fresh.reason == self.file_mode.reason {
            self.file_mode.clone()
        } else {
            fresh
        };
        Runtime { config, file_mode, ..self.clone() }
    }
}

/// The shared holder of the current [`Runtime`].
#[derive(Debug)]
pub struct Shared {
    runtime: ArcSwap<Runtime>,
    /// Request outcomes per minute, for the console's chart: the auth layer and the proxy both
    /// hold this holder already, so counting costs them no extra handle per request.
    pub outcomes: OutcomeHistory,
}

impl Shared {
    /// Holds `runtime`; the outcome history reads the system clock.
    pub fn new(runtime: Runtime) -> Self {
        Self::with_clock(runtime, crate::clock::Clock::system())
    }

    /// Holds `runtime`; the outcome history reads `clock`.
    pub fn with_clock(runtime: Runtime, clock: crate::clock::Clock) -> Self {
        Shared { runtime: ArcSwap::from_pointee(runtime), outcomes: OutcomeHistory::new(clock) }
    }

    /// The current snapshot (one atomic load; do not hold it across an await).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<Runtime>> {
        self.runtime.load()
    }

    /// The current snapshot as an owned `Arc`.
    pub fn load_full(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }

    /// Replaces the snapshot with `f(current)`. Only the control task calls this.
    pub fn update(&self, f: impl Fn(&Runtime) -> Runtime) -> Arc<Runtime> {
        let current = self.runtime.load_full();
        let next = Arc::new(f(&current));
        self.runtime.store(next.clone());
        next
    }
}

/// Formats a duration for humans, whole seconds.
pub fn human(d: Duration) -> String {
    humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}
