//! Where the report's inputs come from.
//!
//! The audit log is read through the running gateway's admin API (`GET /audit`), found and
//! authorised as every admin command finds it: from any shell with `CLERKGATE_ADMIN_URL` and
//! `CLERKGATE_ADMIN_TOKEN`, the gateway reads its own `state.dir` (wherever it is mounted), and
//! it answers the lines it could not read too. When no gateway answers — the post-mortem after
//! it was stopped, or a copy of its state volume — `audit.jsonl` is read directly by the same
//! reader: from `--state-dir DIR`, else from `state.dir` of the config (`--config`, else
//! `$CLERKGATE_CONFIG` or `./clerkgate.toml`).
//!
//! The request counters come only from a running gateway (`GET /status`); without one, the
//! report says they are not available rather than failing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::admin::api::{AuditLog, Status};
use crate::admin::client::{self, GetError, Target};
use crate::config::{state_dir, vars, Env};
use crate::store::{AuditLines, FileStore};

/// How long each admin API call may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where to look.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// How to reach the admin API (`--admin`, `--admin-token-file`, `--config`).
    pub admin: client::Sources,
    /// `--state-dir`: read `audit.jsonl` there, without asking a gateway.
    pub state_dir: Option<PathBuf>,
}

/// What was gathered: the audit log, where it came from, the counters (or why not), notes.
#[derive(Debug)]
pub struct Gathered {
    /// The whole audit log.
    pub audit: AuditLines,
    /// Where it came from.
    pub source: String,
    /// The counters of `/status`, or why there are none.
    pub counters: Result<crate::admin::api::Counters, String>,
    /// What the reader should know about how the data was found.
    pub notes: Vec<String>,
}

/// Gathers the inputs. The error says what to do next.
pub async fn gather(sources: &Sources, env: &Env) -> Result<Gathered, String> {
    let target = Target::resolve(&sources.admin, env);
    if let Some(dir) = &sources.state_dir {
        let (audit, source) = read_file(dir).await?;
        let counters = match &target {
            Ok(t) => counters(t).await,
            Err(e) => Err(e.clone()),
        };
        return Ok(Gathered { audit, source, counters, notes: Vec::new() });
    }
    let target = target?;
    match client::get::<AuditLog>(&target, &["audit"], &[], TIMEOUT).await {
        Ok(log) => Ok(Gathered {
            audit: AuditLines { records: log.events, skipped: log.skipped },
            source: format!("GET /audit at {}", target.base()),
            counters: counters(&target).await,
            notes: Vec::new(),
        }),
        Err(GetError::Refused(why)) => Err(why),
        Err(GetError::Unreachable(why)) => {
            let Some(config) = config_file(&sources.admin, env) else {
                return Err(format!(
                    "{why}\n  With the gateway stopped, give --state-dir DIR (its state.dir) or --config FILE to read its audit.jsonl directly."
                ));
            };
            let dir = state_dir(&config).map_err(|errors| {
                let list: Vec<String> = errors.0.iter().map(|p| format!("{}: {}", p.key, p.message)).collect();
                format!("{why}\n  and state.dir cannot be read from {}: {}", config.display(), list.join("; "))
            })?;
            let (audit, source) = read_file(&dir).await?;
            let note = format!(
                "No gateway answered ({}); the audit log was read from state.dir in {}.",
                first_line(&why),
                config.display()
            );
            Ok(Gathered { audit, source, counters: Err("no gateway answered".into()), notes: vec![note] })
        }
    }
}

/// The counters of the gateway at `target`, or the first line of why not.
async fn counters(target: &Target) -> Result<crate::admin::api::Counters, String> {
    client::get::<Status>(target, &["status"], &[], TIMEOUT)
        .await
        .map(|s| s.counters)
        .map_err(|e| first_line(&e.to_string()))
}

/// The config that names `state.dir`: `--config`, else the default one when it exists.
fn config_file(admin: &client::Sources, env: &Env) -> Option<PathBuf> {
    if let Some(path) = &admin.config {
        return Some(path.clone());
    }
    let path = env.get(vars::CONFIG).map_or_else(|| PathBuf::from("clerkgate.toml"), PathBuf::from);
    path.exists().then_some(path)
}

/// `dir/audit.jsonl`, every line. A missing file is an error here: more likely a wrong
/// directory than a gateway that never recorded anything.
async fn read_file(dir: &Path) -> Result<(AuditLines, String), String> {
    let store = FileStore::new(dir.to_path_buf());
    let path = store.audit_path();
    if !path.is_file() {
        return Err(format!(
            "no audit log at {}: is {} the gateway's state.dir? (give it with --state-dir DIR)",
            path.display(),
            dir.display()
        ));
    }
    let lines = tokio::task::spawn_blocking(move || store.read_audit_lines(i64::MIN))
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .map_err(|e| e.to_string())?;
    Ok((lines, store_path_text(dir)))
}

fn store_path_text(dir: &Path) -> String {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()).join("audit.jsonl").display().to_string()
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}
