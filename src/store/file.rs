//! The file store: `state.json`, `audit.jsonl` and `keys.json` under `state.dir`.
//!
//! A commit runs on a blocking thread, never on the async runtime, in three steps:
//!
//! 1. **Prepare**: the new `state.json` (or `keys.json`) is written beside the old one and
//!    fsynced. Nothing a reader sees has changed yet.
//! 2. **Commit point**: the audit line is appended and fsynced. If that fails, the prepared
//!    file is removed and the caller hears the error: nothing changed.
//! 3. **Publish**: the prepared file is renamed over the old one. Should that fail, the caller
//!    hears the error and the audit line stands for a change that did not happen: the audit
//!    trail may say too much, never too little.
//!
//! Commits are serialised by one lock, so audit lines never interleave and each prepared
//! state builds on the last. The process is the only writer of its state dir, so the store
//! never reports changes by others.
//!
//! A file that cannot be read or is not valid is an error, never an empty state: the start
//! refuses it ([`startup`]: the directory and every file are checked before the gateway serves,
//! and `run --discard-state` is the only way past a bad file), and a commit never builds on it.

mod startup;

pub use startup::{check_state_dir, Discarded, StateFile, StateProblem, StateProblems};

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::broadcast;

use super::{
    Applied, AuditEvent, AuditLines, AuditRecord, BoxFuture, Change, ControlState, ControlStore, SkippedLine, Snapshot,
    StoreError, StoreEvent,
};
use crate::fsutil::Staged;
use crate::keys::StoredKeys;

/// The file store.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
    inner: Arc<Mutex<Inner>>,
    /// Never sent on: nobody else writes this state dir.
    others: broadcast::Sender<StoreEvent>,
}

#[derive(Debug, Default)]
struct Inner {
    /// What `state.json` holds, once read.
    state: Option<ControlState>,
    /// Changes to the state since this process started.
    epoch: u64,
}

impl FileStore {
    /// A store in `dir` (created on the first write), made absolute so that every message names
    /// the file wherever the gateway was started. [`FileStore::open`] checks the directory first.
    pub fn new(dir: PathBuf) -> Self {
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        FileStore { dir, inner: Arc::default(), others: broadcast::channel(1).0 }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `state.json`: the mode override and the revocations.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// `audit.jsonl`: one JSON line per event.
    pub fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    /// `keys.json`: the last good key set.
    pub fn keys_path(&self) -> PathBuf {
        self.dir.join("keys.json")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads the state dir (blocking). A file that cannot be read or is not valid is an error.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let mut inner = self.lock();
        let state = self.read_state()?;
        let keys = self.read_keys()?;
        inner.state = Some(state.clone());
        Ok(Snapshot { epoch: inner.epoch, state, keys })
    }

    /// Proves the store takes a write now, changing nothing (blocking): a probe file written,
    /// fsynced and removed in the directory (made first, as a write would), and the audit log
    /// opened for appending.
    pub fn probe_now(&self) -> Result<(), StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| StoreError::Io {
            doing: "create",
            path: self.dir.clone(),
            source,
        })?;
        crate::fsutil::probe_writable(&self.dir).map_err(|(path, source)| StoreError::Io {
            doing: "write",
            path,
            source,
        })?;
        let path = self.audit_path();
        match std::fs::OpenOptions::new().append(true).open(&path) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { doing: "append to the audit log", path, source }),
        }
    }

    /// Commits one change and its audit line (blocking): see the module docs for the steps.
    pub fn commit(&self, change: &Change, audit: Option<&AuditEvent>) -> Result<Applied, StoreError> {
        let mut inner = self.lock();
        let (staged, next) = match change {
            Change::Note => (None, None),
            Change::KeySet(keys) => (Some(stage(&self.keys_path(), keys)?), None),
            _ => {
                // Builds on the state read at start, or reads it now: never on a file that could
                // not be read, which would replace it.
                let mut next = match &inner.state {
                    Some(state) => state.clone(),
                    None => self.read_state()?,
                };
                next.apply(change);
                (Some(stage(&self.state_path(), &next)?), Some(next))
            }
        };
        if let Some(event) = audit {
            self.append_audit(event)?;
        }
        if let Some(staged) = staged {
            let path = staged.path().to_path_buf();
            staged.publish().map_err(|source| StoreError::Io { doing: "replace", path, source })?;
        }
        if let Some(next) = &next {
            inner.state = Some(next.clone());
            inner.epoch += 1;
        }
        Ok(Applied { epoch: inner.epoch, state: next })
    }

    /// Audit records at or after `since_ms`, oldest first (blocking), and each line that could
    /// not be read with its number and why: a line cut short by a crash, one that is not JSON
    /// or not an audit event. Blank lines are nothing to report.
    pub fn read_audit_lines(&self, since_ms: i64) -> Result<AuditLines, StoreError> {
        let path = self.audit_path();
        let io = |source| StoreError::Io { doing: "read the audit log", path: path.clone(), source };
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AuditLines::default()),
            Err(e) => return Err(io(e)),
        };
        let mut out = AuditLines::default();
        let mut reader = std::io::BufReader::new(f);
        let mut line = Vec::new();
        for number in 1.. {
            line.clear();
            if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
                break;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<AuditRecord>(&line) {
                Ok(record) if record.time_ms >= since_ms => out.records.push(record),
                Ok(_) => {}
                Err(e) if line.last() != Some(&b'\n') => {
                    out.skipped.push(SkippedLine { line: number, why: format!("cut short (no end of line): {e}") })
                }
                Err(e) if e.is_syntax() || e.is_eof() => {
                    out.skipped.push(SkippedLine { line: number, why: format!("not JSON: {e}") })
                }
                Err(e) => out.skipped.push(SkippedLine { line: number, why: format!("not an audit event: {e}") }),
            }
        }
        Ok(out)
    }

    /// The audit events at or after `since_ms` whose action this build knows (blocking).
    pub fn read_audit_since(&self, since_ms: i64) -> Result<Vec<AuditEvent>, StoreError> {
        let lines = self.read_audit_lines(since_ms)?;
        Ok(lines.records.into_iter().filter_map(|r| r.known_action().map(|action| r.with_action(action))).collect())
    }

    fn append_audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let path = self.audit_path();
        let mut line = serde_json::to_vec(event).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        line.push(b'\n');
        let append = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
            f.write_all(&line)?;
            f.sync_data()
        };
        append().map_err(|source| StoreError::Io { doing: "append to the audit log", path: path.clone(), source })
    }

    /// `state.json`, or the empty state when there is none.
    fn read_state(&self) -> Result<ControlState, StoreError> {
        Ok(read_json(&self.state_path())?.unwrap_or_default())
    }

    /// `keys.json`, or nothing when there is none.
    fn read_keys(&self) -> Result<Option<StoredKeys>, StoreError> {
        read_json(&self.keys_path())
    }
}

/// The JSON file at `path`, or `None` when there is none; an error when it cannot be read or
/// does not hold a `T`.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StoreError::Io { doing: "read", path: path.to_path_buf(), source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Corrupt { path: path.to_path_buf(), message: e.to_string() })
}

/// Writes the new version of `path` beside it, fsynced, not yet in place.
fn stage(path: &Path, value: &impl Serialize) -> Result<Staged, StoreError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Staged::prepare(path, &bytes).map_err(|source| StoreError::Io { doing: "write", path: path.to_path_buf(), source })
}

/// Runs `f` on a blocking thread, so a slow disk never stalls the async runtime.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("the state writer stopped: {e}")))?
}

impl ControlStore for FileStore {
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, StoreError>> {
        let store = self.clone();
        Box::pin(off_runtime(move || store.load()))
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        let store = self.clone();
        Box::pin(off_runtime(move || store.probe_now()))
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }

    fn apply(&self, change: Change, audit: Option<AuditEvent>) -> BoxFuture<'_, Result<Applied, StoreError>> {
        let store = self.clone();
        Box::pin(off_runtime(move || store.commit(&change, audit.as_ref())))
    }

    fn changes(&self) -> broadcast::Receiver<StoreEvent> {
        self.others.subscribe()
    }

    fn read_audit(&self, since_ms: i64) -> BoxFuture<'_, Result<AuditLines, StoreError>> {
        let store = self.clone();
        Box::pin(off_runtime(move || store.read_audit_lines(since_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::{Entry, Revocation};
    use crate::store::Action;

    fn revoke(id: &str) -> Change {
        Change::Revoke {
            what: Revocation::Session(id.into()),
            entry: Entry { added_at_ms: 1, actor: "a".into(), reason: String::new() },
        }
    }

    fn note(action: Action) -> AuditEvent {
        AuditEvent::new(1, "a", action, serde_json::Value::Null, serde_json::Value::Null, "")
    }

    #[test]
    fn a_commit_is_durable_and_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(dir.path().join("state"));
        assert_eq!(store.load().expect("load"), Snapshot::default());
        assert_eq!(store.commit(&revoke("s1"), Some(&note(Action::RevocationAdd))).expect("commit").epoch, 1);
        assert_eq!(
            store.commit(&Change::Note, Some(&note(Action::ConfigReload))).expect("note").epoch,
            1,
            "a note is no change"
        );
        let again = FileStore::new(dir.path().join("state")).load().expect("load");
        assert!(again.state.revocations.sessions.contains_key("s1"), "{again:?}");
        let actions: Vec<Action> = store.read_audit_since(0).expect("read").iter().map(|e| e.action).collect();
        assert_eq!(actions, [Action::RevocationAdd, Action::ConfigReload]);
    }

    #[test]
    fn every_line_is_read_or_reported_with_its_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(dir.path().to_path_buf());
        let known = serde_json::to_string(&note(Action::ModeSet)).expect("serialise");
        let newer = r#"{"time":"t","time_ms":2,"actor":"cli","action":"fleet.joined","after":{"severity":"SEV2"}}"#;
        let mut text = format!("{known}\nnot json\n\n{newer}\n[1]\n").into_bytes();
        text.extend_from_slice(b"\xff\n{\"time\":\"t\",\"time_ms\":3");
        std::fs::write(store.audit_path(), text).expect("write");
        let lines = store.read_audit_lines(i64::MIN).expect("read");
        let actions: Vec<&str> = lines.records.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(actions, ["mode.set", "fleet.joined"], "an action this build does not know is kept");
        let skipped: Vec<(u64, &str)> =
            lines.skipped.iter().map(|s| (s.line, s.why.split(':').next().unwrap_or(""))).collect();
        assert_eq!(
            skipped,
            [(2, "not JSON"), (5, "not an audit event"), (6, "not JSON"), (7, "cut short (no end of line)")],
            "{:?}",
            lines.skipped
        );
        assert_eq!(store.read_audit_lines(2).expect("read").records.len(), 1, "since is applied");
        assert_eq!(store.read_audit_since(i64::MIN).expect("read").len(), 1, "the typed view keeps known actions");
    }

    #[test]
    fn a_failed_audit_write_leaves_state_json_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(dir.path().to_path_buf());
        store.commit(&revoke("s1"), Some(&note(Action::RevocationAdd))).expect("commit");
        let before = std::fs::read(store.state_path()).expect("state.json");
        std::fs::remove_file(store.audit_path()).expect("remove audit.jsonl");
        std::fs::create_dir(store.audit_path()).expect("audit.jsonl as a directory");

        let err =
            store.commit(&revoke("s2"), Some(&note(Action::RevocationAdd))).expect_err("the audit cannot be written");
        let message = err.to_string();
        assert!(message.contains("audit.jsonl") && message.contains("os error"), "{message}");
        assert_eq!(std::fs::read(store.state_path()).expect("state.json"), before, "state.json is unchanged");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file is left behind: {names:?}");
        assert_eq!(store.commit(&Change::Note, None).expect("epoch").epoch, 1, "the failed change was not counted");
    }

    /// Finding 1 of issue #10: a state.json that cannot be read is an error, never the empty
    /// state, and a change never replaces it.
    #[test]
    fn a_bad_state_json_is_an_error_and_no_change_replaces_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(dir.path().to_path_buf());
        std::fs::write(store.state_path(), b"{\"revocations\": ").expect("write");
        let err = store.load().expect_err("not valid");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("state.json"), "{err}");
        store.commit(&revoke("s1"), Some(&note(Action::RevocationAdd))).expect_err("no change builds on it");
        assert_eq!(std::fs::read(store.state_path()).expect("read"), b"{\"revocations\": ");
        std::fs::write(store.keys_path(), b"[]").expect("write");
        std::fs::write(store.state_path(), b"{}").expect("write");
        assert!(store.load().expect_err("keys.json").to_string().contains("keys.json"));
    }

    #[test]
    fn a_probe_names_the_file_it_could_not_write() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileStore::new(dir.path().to_path_buf());
        store.probe_now().expect("a writable dir");
        std::fs::create_dir(store.audit_path()).expect("audit.jsonl as a directory");
        let err = store.probe_now().expect_err("the audit log cannot be appended to");
        assert!(err.to_string().contains("audit.jsonl") && err.to_string().contains("os error"), "{err}");
    }
}
