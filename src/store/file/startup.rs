//! The file store's check before the gateway serves, and `run --discard-state`.
//!
//! The state directory must exist or be creatable, take a real write (a probe file written,
//! fsynced and removed), and every state file in it must be readable and valid. Each problem
//! comes with its path and the fix; `check-config` reports the same problems under `state.dir`,
//! changing nothing. A bad file is never replaced by an empty state: `--discard-state` sets it
//! aside as `<name>.discarded-<time>`, beside it, after an audit line that says which files and
//! why — the audit line first, so no file leaves without a record.

use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Value};

use super::{read_json, FileStore};
use crate::fsutil::probe_writable;
use crate::keys::StoredKeys;
use crate::store::{Action, AuditEvent, ControlState, StoreError};

/// A file the store keeps in its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateFile {
    /// `state.json`: the mode override and the revocations.
    State,
    /// `keys.json`: the last good key set.
    Keys,
    /// `audit.jsonl`: the audit log.
    Audit,
    /// `fleet.json`: the last fleet state this gateway saw (the Redis backend only).
    Fleet,
}

impl StateFile {
    /// Every state file.
    pub const ALL: [StateFile; 4] = [StateFile::State, StateFile::Keys, StateFile::Audit, StateFile::Fleet];

    /// Its name in the state directory.
    pub fn name(self) -> &'static str {
        match self {
            StateFile::State => "state.json",
            StateFile::Keys => "keys.json",
            StateFile::Audit => "audit.jsonl",
            StateFile::Fleet => "fleet.json",
        }
    }

    /// What starting without it means.
    fn without(self) -> &'static str {
        match self {
            StateFile::State => "with no mode override and no revocations (revoke again what must stay revoked)",
            StateFile::Keys => "with no saved keys (they are fetched again)",
            StateFile::Audit => "with a new audit log",
            StateFile::Fleet => "with no copy of the fleet's state until Redis answers",
        }
    }

    /// Checks the file in `dir`: absent, or readable and valid.
    fn check(self, dir: &Path) -> Result<(), Bad> {
        let path = dir.join(self.name());
        let outcome = match self {
            StateFile::State => read_json::<ControlState>(&path).map(drop),
            StateFile::Keys => read_json::<StoredKeys>(&path).map(drop),
            StateFile::Audit => check_audit_log(&path),
            StateFile::Fleet => read_json::<crate::store::redis::FleetCopy>(&path).map(drop),
        };
        outcome.map_err(|e| match e {
            StoreError::Io { source, .. } => Bad::Unreadable(source.to_string()),
            StoreError::Corrupt { message, .. } => Bad::Invalid(message),
            StoreError::Unavailable(message) | StoreError::Refused(message) => Bad::Unreadable(message),
        })
    }
}

/// Each line of the audit log must be a JSON object. Readers skip a line they cannot type (an
/// action of another version), so the check asks no more than that.
fn check_audit_log(path: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io { doing: "read", path: path.to_path_buf(), source };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(e)),
    };
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    for n in 1.. {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(io)? == 0 {
            break;
        }
        if let Err(e) = serde_json::from_slice::<serde_json::Map<String, Value>>(&line) {
            let why = if e.is_eof() {
                "it ends early, as a write cut short does"
            } else if e.is_data() {
                "it is not a JSON object"
            } else {
                "it is not JSON"
            };
            let message = format!("line {n} is not an audit event: {why} (column {})", e.column());
            return Err(StoreError::Corrupt { path: path.to_path_buf(), message });
        }
    }
    Ok(())
}

/// What is wrong with a state file.
enum Bad {
    /// It cannot be read (the OS error).
    Unreadable(String),
    /// It does not hold what it should (the parse error).
    Invalid(String),
}

/// One thing wrong with the state directory: where, what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateProblem {
    /// The directory, or the file.
    pub path: PathBuf,
    /// What is wrong, with the OS error when there is one.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
    /// The bad file, which `--discard-state` may set aside; `None` for the directory itself.
    pub file: Option<StateFile>,
}

impl fmt::Display for StateProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}; fix: {}", self.path.display(), self.problem, self.fix)
    }
}

/// Every problem that stopped the start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct StateProblems(pub Vec<StateProblem>);

impl fmt::Display for StateProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the state directory is not usable:")?;
        for p in &self.0 {
            write!(f, "\n  {}: {}\n    fix: {}", p.path.display(), p.problem, p.fix)?;
        }
        Ok(())
    }
}

/// A file `--discard-state` set aside: what it was, why, and where it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Discarded {
    /// The file.
    pub file: PathBuf,
    /// Why it could not be used.
    pub problem: String,
    /// Its copy beside it, byte for byte.
    pub kept_as: PathBuf,
}

/// What the check does with a directory that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Missing {
    /// Makes it (a gateway about to start).
    Create,
    /// Makes it to prove it can be made, then removes what it made (`check-config`).
    Try,
}

/// The user the gateway runs as, for the fixes.
fn who() -> String {
    format!("uid {} (the user clerkgate runs as)", rustix::process::geteuid().as_raw())
}

/// Checks `dir` for `check-config`: the problems a start would refuse, changing nothing.
pub fn check_state_dir(dir: &Path) -> Vec<StateProblem> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    check(&dir, Missing::Try)
}

fn check(dir: &Path, missing: Missing) -> Vec<StateProblem> {
    let dir_problem = |problem: String, fix: String| vec![StateProblem { path: dir.into(), problem, fix, file: None }];
    let made = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => None,
        Ok(_) => {
            return dir_problem(
                "not a directory".into(),
                "point state.dir at a directory, or move this file out of the way".into(),
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match create(dir) {
            Ok(made) => Some(made),
            Err(e) => {
                return dir_problem(
                    format!("cannot create the state directory: {e}"),
                    format!("create it, writable by {}, or point state.dir at a writable directory", who()),
                )
            }
        },
        Err(e) => {
            return dir_problem(format!("cannot use the state directory: {e}"), format!("make it usable by {}", who()))
        }
    };
    let mut problems = Vec::new();
    if let Err((_, e)) = probe_writable(dir) {
        problems.push(StateProblem {
            path: dir.into(),
            problem: format!("cannot write a file in the state directory: {e}"),
            fix: format!(
                "make it writable by {}; with a read-only root filesystem, mount a writable volume \
                 there (an emptyDir) or point state.dir at one",
                who()
            ),
            file: None,
        });
    }
    for file in StateFile::ALL {
        if let Err(bad) = file.check(dir) {
            let (problem, first) = match bad {
                Bad::Unreadable(e) => (format!("cannot read it: {e}"), format!("make it readable by {}", who())),
                Bad::Invalid(e) => (format!("not valid: {e}"), "restore it from a backup".to_string()),
            };
            let fix = format!(
                "{first}, or start once with `clerkgate run --discard-state`: it is kept beside as \
                 {}.discarded-<time> and the gateway starts {}",
                file.name(),
                file.without()
            );
            problems.push(StateProblem { path: dir.join(file.name()), problem, fix, file: Some(file) });
        }
    }
    if let (Some(made), Missing::Try) = (made, missing) {
        for d in made.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
    problems
}

/// Creates `dir` and its missing parents; answers the directories it made, outermost first.
fn create(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing: Vec<PathBuf> = dir.ancestors().take_while(|d| !d.exists()).map(Path::to_path_buf).collect();
    missing.reverse();
    std::fs::create_dir_all(dir)?;
    Ok(missing)
}

impl FileStore {
    /// Opens the store for a gateway about to start (blocking): the directory is made if it is
    /// missing, must take a write, and every file in it must be readable and valid. With
    /// `discard`, bad files are set aside (audited) first; a directory that cannot be written is
    /// refused all the same.
    pub fn open(dir: PathBuf, discard: bool, now_ms: i64) -> Result<FileStore, StateProblems> {
        let store = FileStore::new(dir);
        let problems = check(&store.dir, Missing::Create);
        if !discard || problems.is_empty() {
            if discard {
                tracing::info!(dir = %store.dir.display(), "--discard-state: every state file is valid; nothing discarded");
            }
            return if problems.is_empty() { Ok(store) } else { Err(StateProblems(problems)) };
        }
        if problems.iter().any(|p| p.file.is_none()) {
            return Err(StateProblems(problems));
        }
        store.discard(&problems, now_ms).map_err(|e| {
            StateProblems(vec![StateProblem {
                path: store.dir.clone(),
                problem: format!("--discard-state could not set the bad files aside: {e}"),
                fix: format!("make the state directory writable by {}", who()),
                file: None,
            }])
        })?;
        let problems = check(&store.dir, Missing::Create);
        if problems.is_empty() {
            Ok(store)
        } else {
            Err(StateProblems(problems))
        }
    }

    /// Sets each bad file aside beside it, and records which and why in the audit log: first,
    /// or — when the audit log itself is bad — as the first line of a new one.
    fn discard(&self, problems: &[StateProblem], now_ms: i64) -> Result<Vec<Discarded>, StoreError> {
        let stamp: String = humantime::format_rfc3339_seconds(crate::clock::from_ms(now_ms))
            .to_string()
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect();
        let plan: Vec<(StateFile, Discarded)> = problems
            .iter()
            .filter_map(|p| {
                let file = p.file?;
                let path = self.dir.join(file.name());
                let kept_as = beside(&path, &stamp);
                Some((file, Discarded { file: path, problem: p.problem.clone(), kept_as }))
            })
            .collect();
        let set_aside = |d: &Discarded| {
            std::fs::rename(&d.file, &d.kept_as).map_err(|source| StoreError::Io {
                doing: "set aside",
                path: d.file.clone(),
                source,
            })
        };
        let (audit, others): (Vec<_>, Vec<_>) = plan.iter().partition(|(f, _)| *f == StateFile::Audit);
        for (_, d) in &audit {
            set_aside(d)?;
        }
        let files: Vec<&Discarded> = plan.iter().map(|(_, d)| d).collect();
        let event = AuditEvent::new(
            now_ms,
            "cli",
            Action::StateDiscarded,
            json!({ "files": files }),
            Value::Null,
            "clerkgate run --discard-state",
        );
        self.append_audit(&event)?;
        for (_, d) in &others {
            set_aside(d)?;
        }
        if let Ok(d) = std::fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        for d in &files {
            tracing::warn!(
                file = %d.file.display(),
                kept_as = %d.kept_as.display(),
                problem = %d.problem,
                "--discard-state: set a state file aside and started without it"
            );
        }
        Ok(files.into_iter().cloned().collect())
    }
}

/// `<path>.discarded-<stamp>`, or with `-2`, `-3`… when that name is taken.
fn beside(path: &Path, stamp: &str) -> PathBuf {
    let base = format!("{}.discarded-{stamp}", path.display());
    let mut candidate = PathBuf::from(&base);
    let mut n = 2;
    while candidate.symlink_metadata().is_ok() {
        candidate = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &str = r#"{"time":"1970-01-01T00:00:00.000Z","time_ms":0,"actor":"timer","action":"mode.expired","before":null,"after":null,"reason":""}"#;

    fn problem_files(problems: &[StateProblem]) -> Vec<(String, Option<StateFile>)> {
        problems
            .iter()
            .map(|p| (p.path.file_name().unwrap_or_default().to_string_lossy().into_owned(), p.file))
            .collect()
    }

    #[test]
    fn a_good_dir_passes_and_a_missing_one_is_made_or_only_tried() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("a/b/state");
        assert_eq!(check_state_dir(&dir), vec![]);
        assert!(!root.path().join("a").exists(), "check-config leaves nothing behind");
        assert_eq!(check(&dir, Missing::Create), vec![]);
        assert!(dir.is_dir());
        std::fs::write(dir.join("state.json"), b"{}").expect("write");
        std::fs::write(dir.join("audit.jsonl"), format!("{EVENT}\n{EVENT}\n")).expect("write");
        assert_eq!(check_state_dir(&dir), vec![]);
    }

    #[test]
    fn every_bad_file_is_named_with_its_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("state.json")).expect("a directory in its place");
        std::fs::write(dir.path().join("keys.json"), b"{\"url\": 1}").expect("write");
        std::fs::write(dir.path().join("audit.jsonl"), format!("{EVENT}\n{{\"torn")).expect("write");
        let problems = check_state_dir(dir.path());
        assert_eq!(
            problem_files(&problems),
            [
                ("state.json".into(), Some(StateFile::State)),
                ("keys.json".into(), Some(StateFile::Keys)),
                ("audit.jsonl".into(), Some(StateFile::Audit))
            ]
        );
        assert!(problems[0].problem.contains("Is a directory (os error 21)"), "{}", problems[0]);
        assert!(problems[1].problem.starts_with("not valid: "), "{}", problems[1]);
        assert!(problems[2].problem.contains("line 2"), "{}", problems[2]);
        assert!(problems.iter().all(|p| p.fix.contains("--discard-state")));
    }

    #[test]
    fn a_file_in_the_dir_s_place_is_named() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("state");
        std::fs::write(&dir, b"").expect("write");
        let problems = check_state_dir(&dir);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!((problems[0].path.as_path(), problems[0].problem.as_str()), (dir.as_path(), "not a directory"));
        assert!(check_state_dir(&dir.join("below"))[0].problem.contains("Not a directory (os error 20)"));
    }

    #[test]
    fn discard_sets_bad_files_aside_and_audits_it_first() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().to_path_buf();
        std::fs::write(dir.join("state.json"), b"garbage").expect("write");
        std::fs::write(dir.join("audit.jsonl"), format!("{EVENT}\n")).expect("write");
        assert!(FileStore::open(dir.clone(), false, 0).is_err(), "refused without the flag");
        assert_eq!(std::fs::read(dir.join("state.json")).expect("read"), b"garbage", "and left as it was");

        let store = FileStore::open(dir.clone(), true, 0).expect("open with --discard-state");
        assert!(!dir.join("state.json").exists());
        let kept = dir.join("state.json.discarded-19700101T000000Z");
        assert_eq!(std::fs::read(&kept).expect("the kept copy"), b"garbage");
        let events = store.read_audit_since(i64::MIN).expect("read");
        assert_eq!(events.len(), 2, "the old log goes on: {events:?}");
        assert_eq!(events[1].action, Action::StateDiscarded);
        assert_eq!(events[1].before["files"][0]["kept_as"], kept.display().to_string());

        // A second discard in the same second keeps both copies.
        std::fs::write(dir.join("state.json"), b"again").expect("write");
        FileStore::open(dir.clone(), true, 0).expect("open");
        assert_eq!(std::fs::read(&kept).expect("the first copy"), b"garbage");
        assert_eq!(std::fs::read(dir.join("state.json.discarded-19700101T000000Z-2")).expect("read"), b"again");
    }

    #[test]
    fn a_bad_audit_log_is_set_aside_and_the_new_one_starts_with_the_discard() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().to_path_buf();
        std::fs::write(dir.join("audit.jsonl"), b"not json\n").expect("write");
        let store = FileStore::open(dir.clone(), true, 0).expect("open");
        let events = store.read_audit_since(i64::MIN).expect("read");
        assert_eq!(events.iter().map(|e| e.action).collect::<Vec<_>>(), [Action::StateDiscarded]);
        assert_eq!(std::fs::read(dir.join("audit.jsonl.discarded-19700101T000000Z")).expect("read"), b"not json\n");
    }
}
