//! What the control task reports about itself, for `/readyz` and `/status`: whether its store
//! takes writes (every write, and a probe every [`PROBE_INTERVAL`], say so), and the last reload
//! attempt — so a store that stopped taking writes, or a config file that was refused, shows
//! before the next change or the next restart trips on it.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::config::ConfigProblem;
use crate::store::StoreError;

/// How often the control task probes its store when nothing else writes to it.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// The control task's report; the wiring shares it with the admin API.
#[derive(Debug, Default)]
pub struct Report {
    store: Mutex<StoreCheck>,
    last_reload: Mutex<Option<ReloadAttempt>>,
}

/// Whether the store takes writes, as the last write or probe found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreCheck {
    /// What failed, with the path and the OS error; `None` when the last write or probe worked.
    pub problem: Option<String>,
    /// When it started failing (ms since the epoch).
    pub since_ms: Option<i64>,
    /// When the store was last written or probed.
    pub checked_at_ms: Option<i64>,
}

/// The last reload attempt, good or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadAttempt {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// Who asked (`signal`, `file-watch`, an admin token id).
    pub actor: String,
    /// The hash of the config it put in force; `None` when refused.
    pub hash: Option<String>,
    /// Why it was refused; empty when it went through.
    pub problems: Vec<ConfigProblem>,
}

impl ReloadAttempt {
    /// The reload went through.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Report {
    /// Whether the store takes writes.
    pub fn store(&self) -> StoreCheck {
        self.store.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The last reload attempt, if any.
    pub fn last_reload(&self) -> Option<ReloadAttempt> {
        self.last_reload.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Records what a write or a probe of the store found at `now_ms`, and logs a change: at
    /// ERROR when the store stops taking writes, at WARN when it takes them again. (Each failed
    /// change logs its own error too.)
    pub(super) fn store_checked(&self, now_ms: i64, outcome: Result<(), &StoreError>) {
        let mut check = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        check.checked_at_ms = Some(now_ms);
        match outcome {
            Ok(()) => {
                if check.problem.take().is_some() {
                    check.since_ms = None;
                    tracing::warn!("the state store takes writes again; changes can be made");
                }
            }
            Err(e) => {
                let problem = e.to_string();
                if check.problem.is_none() {
                    tracing::error!(
                        problem = %problem,
                        "the state store does not take writes: every change (mode, revocation, reload, key set) \
                         fails until it does; requests are served as before"
                    );
                    check.since_ms = Some(now_ms);
                }
                check.problem = Some(problem);
            }
        }
    }

    /// Records a reload attempt.
    pub(super) fn reload_attempted(&self, attempt: ReloadAttempt) {
        *self.last_reload.lock().unwrap_or_else(PoisonError::into_inner) = Some(attempt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_problem_holds_until_a_write_works() {
        let report = Report::default();
        report.store_checked(1, Ok(()));
        assert_eq!(report.store(), StoreCheck { problem: None, since_ms: None, checked_at_ms: Some(1) });
        let e = StoreError::Unavailable("disk gone".into());
        report.store_checked(2, Err(&e));
        report.store_checked(3, Err(&e));
        assert_eq!(
            report.store(),
            StoreCheck { problem: Some("disk gone".into()), since_ms: Some(2), checked_at_ms: Some(3) }
        );
        report.store_checked(4, Ok(()));
        assert_eq!(report.store(), StoreCheck { problem: None, since_ms: None, checked_at_ms: Some(4) });
    }
}
