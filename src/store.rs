//! Durable runtime state behind one small interface: the admin mode override and the
//! revocation list (`state.json`), and the audit log (`audit.jsonl`).
//!
//! The file backend is the embedded default. A fleet backend (Redis, SPEC §10) implements the
//! same [`StateStore`] trait, so nothing above this module knows where state lives.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::mode::ModeSetting;
use crate::revocation::RevocationList;

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    /// The admin mode override, until it expires or is cleared.
    #[serde(default)]
    pub admin_override: Option<ModeSetting>,
    /// The revocations in force.
    #[serde(default)]
    pub revocations: RevocationList,
}

/// One audit event: one JSON line in `audit.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// RFC 3339 time.
    pub time: String,
    /// Milliseconds since the epoch (for filtering).
    pub time_ms: i64,
    /// Who: an admin token id, `signal`, `env`, `timer`, `keys`, `startup`.
    pub actor: String,
    /// What, e.g. `mode.set`, `mode.expired`, `config.reload`, `config.reload_failed`, `keys.changed`, `revocation.add`.
    pub action: String,
    /// State before, when meaningful.
    #[serde(default)]
    pub before: serde_json::Value,
    /// State after, when meaningful.
    #[serde(default)]
    pub after: serde_json::Value,
    /// The reason given, if any.
    #[serde(default)]
    pub reason: String,
}

/// Where durable state lives.
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Loads the persisted state (empty when there is none).
    fn load(&self) -> std::io::Result<PersistedState>;
    /// Saves the state atomically.
    fn save(&self, state: &PersistedState) -> std::io::Result<()>;
    /// Appends one audit event and flushes it to stable storage before returning.
    fn append_audit(&self, event: &AuditEvent) -> std::io::Result<()>;
    /// Audit events at or after `since_ms`, oldest first.
    fn read_audit(&self, since_ms: i64) -> std::io::Result<Vec<AuditEvent>>;
}

/// The file backend: `state.json` and `audit.jsonl` under `state.dir`.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    /// Serialises appends so lines never interleave.
    audit: Mutex<()>,
}

impl FileStore {
    /// A store in `dir` (created on first write).
    pub fn new(dir: PathBuf) -> Self {
        FileStore { dir, audit: Mutex::new(()) }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The audit log's path.
    pub fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }
}

impl StateStore for FileStore {
    fn load(&self) -> std::io::Result<PersistedState> {
        match std::fs::read(self.state_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PersistedState::default()),
            Err(e) => Err(e),
        }
    }

    fn save(&self, state: &PersistedState) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(&self.state_path(), &bytes)
    }

    fn append_audit(&self, event: &AuditEvent) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let _guard = self.audit.lock().map_err(|_| std::io::Error::other("audit lock poisoned"))?;
        std::fs::create_dir_all(&self.dir)?;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(self.audit_path())?;
        f.write_all(&line)?;
        f.sync_data()
    }

    fn read_audit(&self, since_ms: i64) -> std::io::Result<Vec<AuditEvent>> {
        let f = match std::fs::File::open(self.audit_path()) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for line in std::io::BufReader::new(f).lines() {
            let line = line?;
            // A torn last line (crash mid-write) is skipped rather than failing the whole read.
            if let Ok(ev) = serde_json::from_str::<AuditEvent>(&line) {
                if ev.time_ms >= since_ms {
                    out.push(ev);
                }
            }
        }
        Ok(out)
    }
}

/// Builds an audit event at `now_ms`.
pub fn event(
    now_ms: i64,
    actor: &str,
    action: &str,
    before: serde_json::Value,
    after: serde_json::Value,
    reason: &str,
) -> AuditEvent {
    AuditEvent {
        time: humantime::format_rfc3339_millis(crate::clock::from_ms(now_ms)).to_string(),
        time_ms: now_ms,
        actor: actor.to_string(),
        action: action.to_string(),
        before,
        after,
        reason: reason.to_string(),
    }
}
