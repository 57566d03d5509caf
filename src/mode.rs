//! The mode vocabulary: what the gateway does with requests (enforce, grace, bypass), who set
//! it, why and until when. A leaf: the config file names a mode, the runtime snapshot holds one,
//! and the control task changes it, so it sits below all three.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How requests are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Normal: every protected request needs a valid token.
    Enforce,
    /// Clerk outage: a correctly signed token whose only fault is `exp` (within
    /// `grace_max_expired`) is still accepted.
    Grace,
    /// Emergency pass-through: every request is forwarded, tagged `X-Auth-Bypass: true`.
    Bypass,
}

impl Mode {
    /// The name used in config, headers and the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Grace => "grace",
            Mode::Bypass => "bypass",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "enforce" => Ok(Mode::Enforce),
            "grace" => Ok(Mode::Grace),
            "bypass" => Ok(Mode::Bypass),
            other => Err(format!("{other:?} must be \"enforce\", \"grace\" or \"bypass\"")),
        }
    }
}

/// Who set the mode in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeSource {
    /// An admin override (API or CLI) on this gateway.
    Admin,
    /// An override set for the whole fleet (the Redis backend: `clerkgate mode`).
    Fleet,
    /// `CLERK_EMERGENCY_BYPASS=true` at start.
    Env,
    /// The config file's `[mode]`.
    File,
    /// Nothing else applies (an expired bypass falls back here).
    Default,
}

impl ModeSource {
    /// The name used in the admin API and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            ModeSource::Admin => "admin",
            ModeSource::Env => "env",
            ModeSource::File => "file",
            ModeSource::Default => "default",
            ModeSource::Fleet => "fleet",
        }
    }
}

/// A mode with where it came from, why, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeSetting {
    /// The mode.
    pub mode: Mode,
    /// Who set it.
    pub source: ModeSource,
    /// Why.
    pub reason: String,
    /// Who exactly (admin token id, `env`, `file`).
    pub actor: String,
    /// When it took effect, ms since the epoch.
    pub since_ms: i64,
    /// When it stops applying, ms since the epoch; bypass always has one.
    pub expires_at_ms: Option<i64>,
}

impl ModeSetting {
    /// True while the setting applies at `now_ms`.
    #[inline]
    pub fn active(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_none_or(|at| now_ms < at)
    }

    /// The fallback when nothing else applies.
    pub fn enforce_default() -> Self {
        ModeSetting {
            mode: Mode::Enforce,
            source: ModeSource::Default,
            reason: String::new(),
            actor: "default".into(),
            since_ms: 0,
            expires_at_ms: None,
        }
    }
}
