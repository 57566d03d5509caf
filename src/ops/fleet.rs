//! The fleet commands (SPEC §10): with `state.backend = "redis"` in the config, `clerkgate
//! mode …` and `clerkgate revoke …` change the whole fleet — written to Redis with the
//! operator's credentials through the one write script, then confirmed by each live gateway's
//! acknowledgement — and `clerkgate fleet status` lists every gateway. `--local` sends a change
//! to one gateway's admin API instead, as with the file backend.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use crate::clock::{duration_ms, Clock};
use crate::config::{Config, Env, RedisConfig, StateBackend};
use crate::mode::{Mode, ModeSetting, ModeSource};
use crate::revocation::{Entry, Revocation, RevocationId};
use crate::store::redis::{FleetClient, FleetStatus, Propagation};
use crate::store::{Action, AuditEvent, Change};

/// How long a fleet change waits for the live gateways to confirm it.
pub const CONFIRM_WAIT: Duration = Duration::from_secs(5);

/// Exit code: the change is written, but not every live gateway confirmed it in time.
pub const NOT_CONFIRMED: u8 = 4;

/// The operator's Redis credentials (the gateways' user may not write the fleet's state).
#[derive(Debug, Clone, Default)]
pub struct Operator {
    /// The ACL user; without it, `state.redis.username`.
    pub user: Option<String>,
    /// A file holding its password; without it, `state.redis.password_file`'s.
    pub password_file: Option<PathBuf>,
}

/// The fleet to talk to, and as whom.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// `[state.redis]`.
    pub redis: RedisConfig,
    /// `mode.max_override_ttl`, which caps a fleet override as it caps a local one.
    pub max_ttl: Duration,
    /// The operator's credentials.
    pub operator: Operator,
}

/// The fleet `path` names when its config uses the Redis backend; `None` for the file
/// backend, and for a file that is not a whole config (one holding only `[admin]` serves the
/// admin API commands). A config that asks for Redis but does not load is an error: every
/// problem, with its key.
pub fn from_config(path: &Path, env: &Env, operator: Operator) -> Result<Option<Fleet>, String> {
    match Config::load(path, env) {
        Ok(config) => Ok(match &config.state.backend {
            StateBackend::Redis(redis) => {
                Some(Fleet { redis: redis.clone(), max_ttl: config.mode.max_override_ttl, operator })
            }
            StateBackend::File => None,
        }),
        Err(errors) => {
            let asks_for_redis = std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.parse::<toml::Table>().ok())
                .and_then(|t| t.get("state")?.get("backend")?.as_str().map(|b| b == "redis"))
                .unwrap_or(false);
            if !asks_for_redis {
                return Ok(None);
            }
            let list: Vec<String> = errors.0.iter().map(|p| format!("  {}: {}", p.key, p.message)).collect();
            Err(format!(
                "{} asks for the Redis backend but does not load, so the fleet cannot be reached:\n{}\n(fix it, or use \
                 --local to change one gateway through its admin API)",
                path.display(),
                list.join("\n")
            ))
        }
    }
}

/// Who the operator is, for the audit trail: `cli:<user>@<host>`.
pub fn operator_name(env: &Env) -> String {
    let user = env.get("USER").or_else(|| env.get("LOGNAME")).unwrap_or("unknown");
    match crate::config::hostname(env) {
        Some(host) => format!("cli:{user}@{host}"),
        None => format!("cli:{user}"),
    }
}

impl Fleet {
    async fn connect(&self, origin: &str) -> Result<FleetClient, String> {
        let password = match &self.operator.password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map(|p| p.trim().to_string())
                    .map_err(|e| format!("cannot read the Redis password file {}: {e}", path.display()))?,
            ),
            None => None,
        };
        FleetClient::connect(&self.redis, self.operator.user.as_deref(), password.as_deref(), origin).await
    }

    /// Writes `change` for the fleet and waits for the live gateways to confirm it.
    async fn write(&self, actor: &str, change: Change, audit: AuditEvent) -> Result<(u64, Propagation), String> {
        let mut client = self.connect(actor).await?;
        let written = client.write(&change, &audit).await?;
        let clock = Clock::system();
        let confirmed =
            client.wait_for(written.epoch, self.redis.heartbeat, CONFIRM_WAIT, move || clock.now_ms()).await?;
        Ok((written.epoch, confirmed))
    }

    /// `clerkgate mode MODE --reason … [--ttl …]` for the fleet: bypass and grace need a reason
    /// and always expire; `enforce` without a reason clears the fleet's override.
    pub async fn set_mode(&self, mode: &str, reason: &str, ttl: Option<&str>, env: &Env, json_out: bool) -> ExitCode {
        let actor = operator_name(env);
        let now = Clock::system().now_ms();
        let change = match self.mode_change(mode, reason, ttl, &actor, now) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("clerkgate mode: {e}");
                return ExitCode::from(2);
            }
        };
        let (action, after) = match &change {
            Change::SetOverride(s) => (Action::ModeSet, json!(s)),
            _ => (Action::ModeCleared, Value::Null),
        };
        let audit = AuditEvent::new(
            now,
            &actor,
            action,
            Value::Null,
            json!({"fleet": self.redis.fleet, "override": after}),
            reason,
        );
        let what = match &change {
            Change::SetOverride(s) => format!(
                "{} for the fleet {:?} until {}",
                s.mode,
                self.redis.fleet,
                s.expires_at_ms.map(crate::clock::rfc3339).unwrap_or_default()
            ),
            _ => {
                format!("the fleet {:?}'s override cleared (each gateway falls back to its own mode)", self.redis.fleet)
            }
        };
        self.finish("mode", self.write(&actor, change, audit).await, &what, json_out)
    }

    fn mode_change(
        &self,
        mode: &str,
        reason: &str,
        ttl: Option<&str>,
        actor: &str,
        now: i64,
    ) -> Result<Change, String> {
        let mode: Mode = mode.parse()?;
        let reason = reason.trim();
        if mode == Mode::Enforce && reason.is_empty() {
            return Ok(Change::ClearOverride);
        }
        if reason.is_empty() {
            return Err(format!("a reason is required to set {mode} (--reason \"…\"; it goes in the audit trail)"));
        }
        let ttl = match ttl {
            Some(t) => humantime::parse_duration(t).map_err(|e| format!("--ttl {t:?}: {e} (e.g. 30m, 1h)"))?,
            None => Duration::from_secs(30 * 60).min(self.max_ttl),
        };
        if ttl.is_zero() {
            return Err("--ttl must be positive".into());
        }
        if ttl > self.max_ttl {
            return Err(format!(
                "--ttl {} is above mode.max_override_ttl ({})",
                crate::state::human(ttl),
                crate::state::human(self.max_ttl)
            ));
        }
        Ok(Change::SetOverride(ModeSetting {
            mode,
            source: ModeSource::Fleet,
            reason: reason.to_string(),
            actor: actor.to_string(),
            since_ms: now,
            expires_at_ms: Some(now + duration_ms(ttl)),
        }))
    }

    /// `clerkgate revoke --session|--user|--issued-before|--lift` for the fleet.
    pub async fn revoke(&self, what: FleetRevoke, reason: &str, env: &Env, json_out: bool) -> ExitCode {
        match self.revocation(what, reason, env) {
            Ok((change, audit, text)) => {
                let what = format!("{text} for the fleet {:?}", self.redis.fleet);
                let actor = audit.actor.clone();
                self.finish("revoke", self.write(&actor, change, audit).await, &what, json_out)
            }
            Err(e) => {
                eprintln!("clerkgate revoke: {e}");
                ExitCode::from(2)
            }
        }
    }

    /// Writes a revocation for the fleet and answers what is in force where: the gateway-side
    /// step of `revoke --remote` with the Redis backend.
    pub async fn revoke_quietly(&self, what: FleetRevoke, reason: &str, env: &Env) -> Result<String, String> {
        let (change, audit, text) = self.revocation(what, reason, env)?;
        let actor = audit.actor.clone();
        let (epoch, p) = self.write(&actor, change, audit).await?;
        let mut out = format!(
            "{text} for the fleet {:?} (epoch {epoch}; in force on {} of {} live gateways)",
            self.redis.fleet,
            p.applied.len(),
            p.applied.len() + p.behind.len()
        );
        if !p.behind.is_empty() {
            out.push_str(&format!("; not confirmed yet: {}", p.behind.join(", ")));
        }
        Ok(out)
    }

    /// The change, its audit record and a sentence for people.
    fn revocation(&self, what: FleetRevoke, reason: &str, env: &Env) -> Result<(Change, AuditEvent, String), String> {
        let actor = operator_name(env);
        let now = Clock::system().now_ms();
        let entry = Entry { added_at_ms: now, actor: actor.clone(), reason: reason.to_string() };
        let (change, action, detail, text) = match what {
            FleetRevoke::Add(Revocation::Session(id)) if !id.trim().is_empty() => (
                Change::Revoke { what: Revocation::Session(id.clone()), entry },
                Action::RevocationAdd,
                json!({"session_id": id}),
                format!("session {id} revoked"),
            ),
            FleetRevoke::Add(Revocation::User(id)) if !id.trim().is_empty() => (
                Change::Revoke { what: Revocation::User(id.clone()), entry },
                Action::RevocationAdd,
                json!({"user_id": id}),
                format!("every session of user {id} revoked"),
            ),
            FleetRevoke::Add(Revocation::IssuedBefore(at)) => (
                Change::Revoke { what: Revocation::IssuedBefore(at), entry },
                Action::RevocationAdd,
                json!({"issued_before": crate::clock::rfc3339(at)}),
                format!("every token issued before {} revoked", crate::clock::rfc3339(at)),
            ),
            FleetRevoke::Lift(id) => {
                let which = if id == "issued_before" {
                    RevocationId::IssuedBefore
                } else if id.starts_with("user_") {
                    RevocationId::User(id.clone())
                } else {
                    RevocationId::Session(id.clone())
                };
                (Change::Unrevoke(which), Action::RevocationRemove, json!({"id": id}), format!("{id} lifted"))
            }
            FleetRevoke::Add(_) => return Err("the id must not be empty".into()),
        };
        let (before, after) =
            if action == Action::RevocationRemove { (detail, Value::Null) } else { (Value::Null, detail) };
        Ok((change, AuditEvent::new(now, &actor, action, before, after, reason), text))
    }

    fn finish(
        &self,
        command: &str,
        outcome: Result<(u64, Propagation), String>,
        what: &str,
        json_out: bool,
    ) -> ExitCode {
        let (epoch, p) = match outcome {
            Ok(done) => done,
            Err(e) => {
                eprintln!(
                    "clerkgate {command}: nothing changed: {e}\n(to change one gateway while the fleet's Redis is away: \
                     clerkgate {command} … --local --admin ADDRESS)"
                );
                return ExitCode::from(1);
            }
        };
        let ms = p.elapsed.as_millis();
        if json_out {
            let v = json!({"epoch": epoch, "applied": p.applied, "behind": p.behind, "elapsed_ms": ms});
            println!("{v}");
        } else {
            println!("{what} (fleet epoch {epoch})");
            let live = p.applied.len() + p.behind.len();
            println!("in force on {} of {live} live gateways after {ms} ms", p.applied.len());
            if !p.behind.is_empty() {
                println!(
                    "not confirmed within {}s: {} (see clerkgate fleet status; they apply it when they reach Redis)",
                    CONFIRM_WAIT.as_secs(),
                    p.behind.join(", ")
                );
            }
        }
        if p.behind.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(NOT_CONFIRMED)
        }
    }

    /// `clerkgate fleet status [--json]`: exit 0 when every gateway is in step, 4 when one lags.
    pub async fn status(&self, json_out: bool) -> ExitCode {
        let outcome = async {
            let mut client = self.connect("cli").await?;
            client.status(self.redis.heartbeat, Clock::system().now_ms()).await
        }
        .await;
        let status = match outcome {
            Ok(s) => s,
            Err(e) => {
                eprintln!("clerkgate fleet status: {e}");
                return ExitCode::from(1);
            }
        };
        if json_out {
            println!("{}", serde_json::to_string_pretty(&status).unwrap_or_default());
        } else {
            print!("{}", show_status(&status));
        }
        if status.gateways.iter().any(|m| m.lagging.is_some()) {
            ExitCode::from(NOT_CONFIRMED)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// What `revoke` does for the fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetRevoke {
    /// Add a revocation.
    Add(Revocation),
    /// Lift one: a session id, a user id (`user_…`), or `issued_before`.
    Lift(String),
}

/// `fleet status` for people.
pub fn show_status(s: &FleetStatus) -> String {
    let mut out = format!("fleet {:?}: epoch {}", s.fleet, s.epoch);
    match &s.mode {
        Some(m) if m.active(s.at_ms) => out.push_str(&format!(
            ", override {} until {} by {} ({})\n",
            m.mode,
            m.expires_at_ms.map(crate::clock::rfc3339).unwrap_or_default(),
            m.actor,
            m.reason
        )),
        _ => out.push_str(", no override\n"),
    }
    let (sessions, users, cutoff) = s.revocations;
    out.push_str(&format!(
        "revocations: {sessions} sessions, {users} users{}\n",
        if cutoff { ", an issued_before cut-off" } else { "" }
    ));
    if s.gateways.is_empty() {
        out.push_str("no gateway has reported yet\n");
    }
    for m in &s.gateways {
        out.push_str(&format!(
            "{:<24} {:<8} {:<8} epoch {:<6} config {:<12} keys {:<20} {:>6} ms ago  {}\n",
            m.ack.gateway_id,
            m.ack.mode,
            m.ack.mode_source,
            m.ack.epoch,
            m.ack.config_hash,
            m.ack.kids.join(","),
            m.age_ms,
            m.lagging.as_deref().map_or_else(|| "ok".to_string(), |l| format!("LAGGING: {l}")),
        ));
    }
    out
}
