//! Durable control state behind one async, change-based interface: [`ControlStore`].
//!
//! The control task is the only caller that writes. It hands the store one typed [`Change`]
//! with the [`AuditEvent`] that records it; the store makes both durable together, or neither,
//! and only then does the control task make the change visible to requests. Reads are a whole
//! [`Snapshot`] (at start, and after any doubt) and a stream of [`StoreEvent`]s: the changes
//! committed by someone else sharing the store.
//!
//! [`FileStore`] is the embedded default (`state.json`, `audit.jsonl` and `keys.json` under
//! `state.dir`). A fleet backend (Redis, SPEC §10) implements the same trait: one script writes
//! state, event and audit line together, and a follower turns the event stream into
//! [`StoreEvent`]s; the control task does not change.
//!
//! What each part holds, and whose it is:
//!
//! | Part | Shared by a fleet | Changes |
//! | --- | --- | --- |
//! | [`ControlState`]: the admin mode override and the revocations | yes | [`Change::SetOverride`], [`Change::ClearOverride`], [`Change::ExpireOverride`], [`Change::Revoke`], [`Change::Unrevoke`] |
//! | the last good key set ([`StoredKeys`]) | no: each gateway fetches its own | [`Change::KeySet`] |
//! | the audit trail | yes | every change, and [`Change::Note`] (an event that changes no state) |

pub mod file;
pub mod redis;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub use file::FileStore;

use crate::keys::StoredKeys;
use crate::mode::ModeSetting;
use crate::revocation::{Entry, Revocation, RevocationId, RevocationList};

/// A boxed future, so that [`ControlStore`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where control state lives. Object-safe: the gateway holds an `Arc<dyn ControlStore>`.
///
/// Implementations must not block the async runtime: durable writes run on a blocking thread
/// (`tokio::task::spawn_blocking`) or on the network.
pub trait ControlStore: Send + Sync + fmt::Debug + 'static {
    /// The whole durable state now, with the epoch it is at.
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, StoreError>>;

    /// Commits one change with its audit line, atomically: when this returns `Ok`, both are
    /// durable; with `Err`, neither took effect. Answers the epoch after the change: one more
    /// than before for a change to the [`ControlState`], the same for a key set or a note.
    ///
    /// `audit` is `None` only for a key-set refresh that changed no key (it moves the set's
    /// fetch time forward, which decides how long the set may be served after a restart).
    ///
    /// The answer carries the [`ControlState`] requests must see now: the change applied to
    /// the state before, for a store of one layer; the merged view, for a layered store (a
    /// fleet's shared layer and this gateway's local one).
    fn apply(&self, change: Change, audit: Option<AuditEvent>) -> BoxFuture<'_, Result<Applied, StoreError>>;

    /// Changes committed by others sharing this store (never the caller's own), in order.
    /// A store that nobody else writes (the file store) never sends one.
    fn changes(&self) -> broadcast::Receiver<StoreEvent>;

    /// Audit records at or after `since_ms`, oldest first, with every line that could not be
    /// read (never silently dropped: an audit that hides a line hides what happened).
    fn read_audit(&self, since_ms: i64) -> BoxFuture<'_, Result<AuditLines, StoreError>>;

    /// Proves that the store takes a write now, changing nothing (the file store writes, fsyncs
    /// and removes a probe file, and opens the audit log for appending). The control task calls
    /// it every few seconds, so a store that stopped taking writes shows in `/readyz` and
    /// `/status` before a change needs it. The error names what could not be written.
    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Where the store keeps its state, for operators (the file store: its directory).
    fn location(&self) -> String;

    /// What a shared store knows about its fleet, for `/status`; `None` for a store of one
    /// gateway (the file store).
    fn fleet(&self) -> Option<FleetReport> {
        None
    }

    /// Every gateway of the fleet as its acknowledgements tell (`GET /fleet`); `None` for a
    /// store of one gateway. Reads the shared store, so it may fail while it is away.
    fn fleet_status(&self) -> BoxFuture<'_, Result<Option<redis::FleetStatus>, StoreError>> {
        Box::pin(async { Ok(None) })
    }

    /// Gives a shared store a way to tell what this gateway runs (for its acknowledgement in
    /// `fleet status`); a store of one gateway ignores it.
    fn describe_gateway(&self, _facts: std::sync::Arc<dyn Fn() -> GatewayFacts + Send + Sync>) {}
}

/// What this gateway runs, as a fleet store reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayFacts {
    /// The mode in force.
    pub mode: String,
    /// Who set it (`fleet`, `admin`, `file`, `env`, `default`).
    pub mode_source: String,
    /// The config's hash.
    pub config_hash: String,
    /// The key set's kids.
    pub kids: Vec<String>,
}

/// A change committed: the epoch it took the store to, and the state in force afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The epoch after the change ([`ControlStore::apply`]).
    pub epoch: u64,
    /// The state requests must see now; `None` when the change touched no control state (a
    /// key set, a note).
    pub state: Option<ControlState>,
}

/// A shared store's view of its fleet, from this gateway (`/status`, metrics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetReport {
    /// The backend, e.g. `redis`.
    pub backend: String,
    /// The fleet's name.
    pub fleet: String,
    /// This gateway's name in the fleet.
    pub gateway_id: String,
    /// `connected` or `disconnected`.
    pub link: String,
    /// The last fleet epoch this gateway applied.
    pub epoch: u64,
    /// When this gateway last read or followed the store, ms since the epoch.
    pub last_sync_ms: Option<i64>,
    /// The last connection problem, while disconnected.
    pub problem: Option<String>,
    /// Audit records written here and not yet in the fleet's audit stream.
    pub audit_buffered: u64,
    /// Audit records dropped because the local buffer was full while the store was away.
    pub audit_dropped: u64,
    /// Times the store was found reset (lost or flushed data) or rewound since start.
    pub store_resets: u64,
    /// The fleet layer's mode override, if any (the local one is `/status`'s `override`).
    pub fleet_override: Option<ModeSetting>,
    /// This gateway's own (local) mode override, if any.
    pub local_override: Option<ModeSetting>,
}

/// The part of the control state that survives a restart and that a fleet shares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlState {
    /// The admin mode override, until it expires or is cleared.
    #[serde(default)]
    pub admin_override: Option<ModeSetting>,
    /// The revocations in force.
    #[serde(default)]
    pub revocations: RevocationList,
}

impl ControlState {
    /// Applies `change`: the one place that says what each change does to the state. The
    /// stores apply it to what they persist, the control task to what requests read.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::SetOverride(setting) => self.admin_override = Some(setting.clone()),
            Change::ClearOverride => self.admin_override = None,
            Change::ExpireOverride(setting) => {
                if self.admin_override.as_ref() == Some(setting) {
                    self.admin_override = None;
                }
            }
            Change::Revoke { what, entry } => self.revocations = self.revocations.with(what, entry),
            Change::Unrevoke(id) => self.revocations = self.revocations.without(id),
            Change::KeySet(_) | Change::Note => {}
        }
    }
}

/// One change to the control state, as the control task decided it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Change {
    /// Sets or replaces the admin mode override.
    SetOverride(ModeSetting),
    /// Removes the admin mode override (an admin cleared it).
    ClearOverride,
    /// Removes the admin mode override if it is still this one, which has run out. (In a
    /// shared store, a newer override set elsewhere meanwhile stays.)
    ExpireOverride(ModeSetting),
    /// Adds a revocation.
    Revoke {
        /// What.
        what: Revocation,
        /// Who, when and why.
        entry: Entry,
    },
    /// Lifts a revocation.
    Unrevoke(RevocationId),
    /// A new last good key set for this gateway.
    KeySet(StoredKeys),
    /// Nothing durable changes; the audit line is the whole record (a config reload, a refused
    /// reload, the end of a bypass set by the file or the environment, a bypass set by the
    /// environment at start).
    Note,
}

/// The durable state as a whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// How many changes to the [`ControlState`] the store has seen (its sequence; a fleet store
    /// keeps it in the store itself).
    pub epoch: u64,
    /// The mode override and the revocations.
    pub state: ControlState,
    /// This gateway's last good key set, if one was saved.
    pub keys: Option<StoredKeys>,
}

/// What a store reports about changes made by others.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreEvent {
    /// The state requests must see is now `state`, at `epoch` (a layered store's merged view
    /// after a change in its shared layer).
    State {
        /// The epoch of this view.
        epoch: u64,
        /// The state.
        state: ControlState,
    },
    /// Someone else committed `change`, which took the store to `epoch`.
    Committed {
        /// The epoch after the change.
        epoch: u64,
        /// The change.
        change: Change,
    },
    /// The store lost track (a gap in the events, a store that was reset): read a snapshot.
    Resync,
}

/// Why a store could not do what it was asked. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("cannot {doing} {}: {source}", path.display())]
    Io {
        /// What the store was doing, e.g. "append to the audit log".
        doing: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file holds something the store cannot read.
    #[error("{} is not valid: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The store itself failed (a writer thread that stopped, a backend that is unreachable).
    #[error("{0}")]
    Unavailable(String),
    /// The change is not this gateway's to make (a fleet's revocation lifted through one
    /// gateway's admin API); the message says who can make it.
    #[error("{0}")]
    Refused(String),
}

/// What an audit event records. Serialised to the action names of `audit.jsonl` and `/audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// A mode was set: an admin override, or a bypass from the environment at start.
    #[serde(rename = "mode.set")]
    ModeSet,
    /// An admin cleared the override.
    #[serde(rename = "mode.cleared")]
    ModeCleared,
    /// A mode ran out and the gateway fell back.
    #[serde(rename = "mode.expired")]
    ModeExpired,
    /// The config was reloaded.
    #[serde(rename = "config.reload")]
    ConfigReload,
    /// A reload was refused; the running config stays.
    #[serde(rename = "config.reload_failed")]
    ConfigReloadFailed,
    /// The key set changed.
    #[serde(rename = "keys.changed")]
    KeysChanged,
    /// A revocation was added.
    #[serde(rename = "revocation.add")]
    RevocationAdd,
    /// A revocation was lifted.
    #[serde(rename = "revocation.remove")]
    RevocationRemove,
    /// State files that could not be read were set aside at start (`run --discard-state`).
    #[serde(rename = "state.discarded")]
    StateDiscarded,
    /// A revocation at Clerk's Backend API (`clerkgate revoke --remote`) ended: what it covered
    /// and its totals. Recorded by the CLI through `POST /audit`.
    #[serde(rename = "revocation.remote")]
    RevocationRemote,
    /// A journalled webhook was re-delivered to the upstream (`clerkgate webhooks replay`).
    #[serde(rename = "webhook.replayed")]
    WebhookReplayed,
    /// `clerkgate triage` ran: its probes, category and severity. Recorded by the CLI through
    /// `POST /audit`, so the incident report can quote it.
    #[serde(rename = "triage.run")]
    TriageRun,
}

impl Action {
    /// The name written to the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ModeSet => "mode.set",
            Action::ModeCleared => "mode.cleared",
            Action::ModeExpired => "mode.expired",
            Action::ConfigReload => "config.reload",
            Action::ConfigReloadFailed => "config.reload_failed",
            Action::KeysChanged => "keys.changed",
            Action::RevocationAdd => "revocation.add",
            Action::RevocationRemove => "revocation.remove",
            Action::StateDiscarded => "state.discarded",
            Action::RevocationRemote => "revocation.remote",
            Action::WebhookReplayed => "webhook.replayed",
            Action::TriageRun => "triage.run",
        }
    }

    /// True for an action a runbook command records through `POST /audit` (it changes nothing
    /// the gateway holds); every other action is the gateway's own.
    pub fn is_runbook_record(self) -> bool {
        matches!(self, Action::RevocationRemote | Action::TriageRun)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit event: one JSON line in `audit.jsonl`. The gateway writes it with an [`Action`];
/// read back, it is an [`AuditRecord`], whose action is the name as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent<A = Action> {
    /// RFC 3339 time.
    pub time: String,
    /// Milliseconds since the epoch (for filtering).
    pub time_ms: i64,
    /// Who: an admin token id, `signal`, `env`, `timer`, `keys`, `cli` (a start flag).
    pub actor: String,
    /// What.
    pub action: A,
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

impl AuditEvent {
    /// An event at `now_ms`.
    pub fn new(
        now_ms: i64,
        actor: &str,
        action: Action,
        before: serde_json::Value,
        after: serde_json::Value,
        reason: &str,
    ) -> AuditEvent {
        AuditEvent {
            time: humantime::format_rfc3339_millis(crate::clock::from_ms(now_ms)).to_string(),
            time_ms: now_ms,
            actor: actor.to_string(),
            action,
            before,
            after,
            reason: reason.to_string(),
        }
    }
}

/// One audit line as read back, whoever wrote it. The action stays the text written, so a line
/// from a newer clerkgate (an action this build does not know, such as a fleet event) is read
/// and shown, not dropped.
pub type AuditRecord = AuditEvent<String>;

impl AuditRecord {
    /// The action, when this build knows it.
    pub fn known_action(&self) -> Option<Action> {
        serde_json::from_value(serde_json::Value::String(self.action.clone())).ok()
    }
}

impl From<AuditEvent> for AuditRecord {
    fn from(e: AuditEvent) -> Self {
        let name = e.action.as_str().to_string();
        e.with_action(name)
    }
}

impl<A> AuditEvent<A> {
    /// The same event with `action` in place of its own.
    pub fn with_action<B>(self, action: B) -> AuditEvent<B> {
        let AuditEvent { time, time_ms, actor, action: _, before, after, reason } = self;
        AuditEvent { time, time_ms, actor, action, before, after, reason }
    }
}

/// A line of the audit log that could not be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedLine {
    /// Its line number in `audit.jsonl`, from 1.
    pub line: u64,
    /// Why, e.g. "not JSON: expected value at line 1 column 1".
    pub why: String,
}

/// The audit log as read back: the records in the order written, and the lines skipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditLines {
    /// The records.
    pub records: Vec<AuditRecord>,
    /// The lines that could not be read.
    pub skipped: Vec<SkippedLine>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_keep_the_names_of_the_audit_log() {
        let all = [
            Action::ModeSet,
            Action::ModeCleared,
            Action::ModeExpired,
            Action::ConfigReload,
            Action::ConfigReloadFailed,
            Action::KeysChanged,
            Action::RevocationAdd,
            Action::RevocationRemove,
            Action::StateDiscarded,
            Action::RevocationRemote,
            Action::WebhookReplayed,
        ];
        for action in all {
            let json = serde_json::to_value(action).expect("serialise");
            assert_eq!(json, serde_json::Value::from(action.as_str()));
            assert_eq!(serde_json::from_value::<Action>(json).expect("read back"), action);
            let record = AuditRecord::from(AuditEvent::new(0, "a", action, serde_json::Value::Null, 1.into(), ""));
            assert_eq!(record.known_action(), Some(action));
        }
    }

    #[test]
    fn an_audit_line_has_the_same_fields_as_before() {
        let ev = AuditEvent::new(0, "timer", Action::ModeExpired, serde_json::Value::Null, serde_json::json!(1), "r");
        let line = serde_json::to_string(&ev).expect("serialise");
        assert_eq!(
            line,
            r#"{"time":"1970-01-01T00:00:00.000Z","time_ms":0,"actor":"timer","action":"mode.expired","before":null,"after":1,"reason":"r"}"#
        );
    }

    #[test]
    fn the_reducer_applies_each_change() {
        let entry = Entry { added_at_ms: 1, actor: "a".into(), reason: String::new() };
        let mut state = ControlState::default();
        state.apply(&Change::Revoke { what: Revocation::Session("s".into()), entry: entry.clone() });
        state.apply(&Change::Revoke { what: Revocation::IssuedBefore(10), entry: entry.clone() });
        state.apply(&Change::Revoke { what: Revocation::IssuedBefore(5), entry });
        assert!(state.revocations.sessions.contains_key("s"));
        assert_eq!(state.revocations.issued_before_ms, Some(10), "the cut-off never moves backwards");
        state.apply(&Change::Unrevoke(RevocationId::Session("s".into())));
        state.apply(&Change::Note);
        assert!(state.revocations.sessions.is_empty());
        let setting = ModeSetting::enforce_default();
        state.apply(&Change::SetOverride(setting.clone()));
        assert_eq!(state.admin_override, Some(setting.clone()));
        let older = ModeSetting { since_ms: -1, ..setting.clone() };
        state.apply(&Change::ExpireOverride(older));
        assert_eq!(state.admin_override, Some(setting.clone()), "the end of an older override leaves a newer one");
        state.apply(&Change::ExpireOverride(setting));
        assert_eq!(state.admin_override, None);
        state.apply(&Change::SetOverride(ModeSetting::enforce_default()));
        state.apply(&Change::ClearOverride);
        assert_eq!(state.admin_override, None);
    }
}
