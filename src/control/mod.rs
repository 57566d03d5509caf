//! The control funnel: every change to the running gateway — SIGHUP, `POST /reload`, mode
//! changes, revocations, the expiry timer, key-set changes — is a [`Control`] message handled by
//! one task, one at a time. Nothing else writes the runtime snapshot, so two changes never
//! interleave, and every change is persisted and audited before its caller gets an answer.

pub mod signals;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use crate::clock::{duration_ms, Clock};
use crate::config::{Config, ConfigErrors, ConfigProblem, Env};
use crate::keys::{KeyChange, KeyStore};
use crate::mode::{Mode, ModeSetting, ModeSource};
use crate::revocation::{Entry, RevocationList, Revocations};
use crate::state::{Runtime, Shared};
use crate::store::{event, PersistedState, StateStore};
use crate::telemetry::names as metric;

/// What the control task writes, and what it reads to do so. Built by the wiring; only the
/// control task holds it.
#[derive(Debug)]
pub struct ControlState {
    /// The runtime snapshot it swaps.
    pub shared: Arc<Shared>,
    /// The key store, reconfigured on reload; its changes are audited.
    pub keys: Arc<KeyStore>,
    /// The revocations it replaces.
    pub revocations: Arc<Revocations>,
    /// The clock.
    pub clock: Clock,
    /// The config file, re-read on reload.
    pub config_path: Option<PathBuf>,
    /// The environment the config is resolved with.
    pub env: Env,
    /// Durable state and the audit log.
    pub store: Arc<dyn StateStore>,
}

/// Who asked for a change (recorded in the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signal (SIGHUP).
    Signal,
    /// An admin API call, by token id.
    Admin(String),
    /// The expiry timer.
    Timer,
}

impl Actor {
    /// The name written to the audit log.
    pub fn name(&self) -> String {
        match self {
            Actor::Signal => "signal".into(),
            Actor::Admin(id) => id.clone(),
            Actor::Timer => "timer".into(),
        }
    }
}

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// One session.
    Session(String),
    /// Every session of one user.
    User(String),
    /// Every token issued before this moment (ms since the epoch).
    IssuedBefore(i64),
}

/// Why a control request was refused (answered 422 by the admin API).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// The request itself is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The config file did not validate.
    #[error("the config file has problems")]
    Config(ConfigErrors),
    /// Not found (e.g. lifting a revocation that does not exist).
    #[error("{0}")]
    NotFound(String),
    /// The state could not be persisted; nothing changed.
    #[error("could not persist state: {0}")]
    Storage(String),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    Closed,
}

type Reply<T> = oneshot::Sender<Result<T, ControlError>>;

/// A request to the control task.
#[derive(Debug)]
pub enum Control {
    /// Re-read the config file and secret files, validate, swap; keep the old one on error.
    Reload {
        /// Who asked.
        actor: Actor,
        /// Where to send the outcome.
        reply: Option<Reply<ReloadOutcome>>,
    },
    /// Set or clear the admin mode override.
    SetMode {
        /// The requested mode; `Enforce` without a reason clears the override.
        mode: Mode,
        /// Why.
        reason: String,
        /// For how long; capped by `max_override_ttl`.
        ttl: Option<Duration>,
        /// Who asked.
        actor: Actor,
        /// The effective mode afterwards.
        reply: Reply<ModeSetting>,
    },
    /// Add a revocation.
    Revoke {
        /// What.
        what: Revocation,
        /// Why.
        reason: String,
        /// Who.
        actor: Actor,
        /// The list afterwards.
        reply: Reply<RevocationList>,
    },
    /// Lift a revocation by session id, user id, or `issued_before`.
    Unrevoke {
        /// The id.
        id: String,
        /// Who.
        actor: Actor,
        /// The list afterwards.
        reply: Reply<RevocationList>,
    },
}

/// A successful reload.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    /// The new config hash.
    pub hash: String,
    /// Whether anything changed.
    pub changed: bool,
}

/// The sending side of the funnel.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Control>,
}

impl ControlHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Control) -> Result<T, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| ControlError::Closed)?;
        rx.await.map_err(|_| ControlError::Closed)?
    }

    /// Asks for a reload and waits for its outcome.
    pub async fn reload(&self, actor: Actor) -> Result<ReloadOutcome, ControlError> {
        self.ask(|reply| Control::Reload { actor, reply: Some(reply) }).await
    }

    /// Asks for a reload without waiting (signal handlers).
    pub fn reload_nowait(&self, actor: Actor) {
        let _ = self.tx.try_send(Control::Reload { actor, reply: None });
    }

    /// Sets (or, with `Enforce` and no reason, clears) the admin override.
    pub async fn set_mode(
        &self,
        mode: Mode,
        reason: String,
        ttl: Option<Duration>,
        actor: Actor,
    ) -> Result<ModeSetting, ControlError> {
        self.ask(|reply| Control::SetMode { mode, reason, ttl, actor, reply }).await
    }

    /// Adds a revocation.
    pub async fn revoke(&self, what: Revocation, reason: String, actor: Actor) -> Result<RevocationList, ControlError> {
        self.ask(|reply| Control::Revoke { what, reason, actor, reply }).await
    }

    /// Lifts a revocation.
    pub async fn unrevoke(&self, id: String, actor: Actor) -> Result<RevocationList, ControlError> {
        self.ask(|reply| Control::Unrevoke { id, actor, reply }).await
    }
}

/// The funnel's two ends; the receiver goes to [`spawn`].
pub fn channel() -> (ControlHandle, mpsc::Receiver<Control>) {
    let (tx, rx) = mpsc::channel(64);
    (ControlHandle { tx }, rx)
}

/// How long the expiry timer sleeps at most before looking again (bounds drift of the
/// injectable clock against tokio's timer).
const TIMER_TICK: Duration = Duration::from_millis(200);

/// Starts the control task for `ctx`: drains `rx`, audits key changes, and expires modes.
pub fn spawn(ctx: Arc<ControlState>, mut rx: mpsc::Receiver<Control>) -> tokio::task::JoinHandle<()> {
    let (key_tx, mut key_rx) = mpsc::unbounded_channel::<KeyChange>();
    ctx.keys.on_change(key_tx);
    tokio::spawn(async move {
        let mut announced: Vec<(ModeSource, i64)> = Vec::new();
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => handle(&ctx, msg),
                    None => break,
                },
                Some(change) = key_rx.recv() => {
                    audit(&ctx, "keys", "keys.changed", json!(change.before), json!(change.after), "");
                }
                () = tokio::time::sleep(TIMER_TICK) => expire(&ctx, &mut announced),
            }
        }
    })
}

fn audit(ctx: &ControlState, actor: &str, action: &str, before: Value, after: Value, reason: &str) {
    let ev = event(ctx.clock.now_ms(), actor, action, before, after, reason);
    if let Err(e) = ctx.store.append_audit(&ev) {
        tracing::error!(error = %e, action, "could not write the audit log");
    }
}

fn persisted(ctx: &ControlState) -> PersistedState {
    PersistedState {
        admin_override: ctx.shared.load().admin_override.clone(),
        revocations: (**ctx.revocations.current()).clone(),
    }
}

fn save(ctx: &ControlState, state: &PersistedState) -> Result<(), ControlError> {
    ctx.store.save(state).map_err(|e| ControlError::Storage(e.to_string()))
}

fn handle(ctx: &ControlState, msg: Control) {
    match msg {
        Control::Reload { actor, reply } => {
            let outcome = reload(ctx, &actor);
            if let Some(reply) = reply {
                let _ = reply.send(outcome);
            }
        }
        Control::SetMode { mode, reason, ttl, actor, reply } => {
            let _ = reply.send(set_mode(ctx, mode, reason, ttl, &actor));
        }
        Control::Revoke { what, reason, actor, reply } => {
            let _ = reply.send(revoke(ctx, what, reason, &actor));
        }
        Control::Unrevoke { id, actor, reply } => {
            let _ = reply.send(unrevoke(ctx, &id, &actor));
        }
    }
}

/// Announces (logs and audits) each bypass that has run out, once, and drops an expired admin
/// override from the snapshot. Requests never depend on this: [`Runtime::mode_at`] already
/// ignores an expired setting, so a late timer can never extend a bypass.
fn expire(ctx: &ControlState, announced: &mut Vec<(ModeSource, i64)>) {
    let now = ctx.clock.now_ms();
    let rt = ctx.shared.load_full();
    let expired_override = rt.admin_override.as_ref().filter(|o| !o.active(now)).cloned();
    for setting in [rt.env_mode.as_ref(), Some(&rt.file_mode)].into_iter().flatten() {
        if setting.expires_at_ms.is_some()
            && !setting.active(now)
            && !announced.contains(&(setting.source, setting.since_ms))
        {
            announced.push((setting.source, setting.since_ms));
            tracing::warn!(source = ?setting.source, mode = %setting.mode, "mode expired; falling back");
            audit(ctx, "timer", "mode.expired", json!(setting), json!(rt.mode_at(now)), &setting.reason);
        }
    }
    if let Some(old) = expired_override {
        let next = ctx.shared.update(|rt| Runtime {
            admin_override: None,
            config: rt.config.clone(),
            env_mode: rt.env_mode.clone(),
            file_mode: rt.file_mode.clone(),
            generation: rt.generation,
        });
        if let Err(e) = save(ctx, &persisted(ctx)) {
            tracing::error!(error = %e, "could not persist the expired override");
        }
        tracing::warn!(mode = %old.mode, reason = %old.reason, "admin override expired; falling back to {}", next.mode_at(now).mode);
        audit(ctx, "timer", "mode.expired", json!(old), json!(next.mode_at(now)), &old.reason);
        export_mode(next.mode_at(now).mode);
    }
}

/// Sets the mode gauge: 1 for the mode in force, 0 for the others.
pub fn export_mode(mode: Mode) {
    for m in [Mode::Enforce, Mode::Grace, Mode::Bypass] {
        metrics::gauge!(metric::MODE, "mode" => m.as_str()).set(if m == mode { 1.0 } else { 0.0 });
    }
}

fn set_mode(
    ctx: &ControlState,
    mode: Mode,
    reason: String,
    ttl: Option<Duration>,
    actor: &Actor,
) -> Result<ModeSetting, ControlError> {
    let now = ctx.clock.now_ms();
    let rt = ctx.shared.load_full();
    let before = rt.mode_at(now).clone();
    let reason = reason.trim().to_string();
    let max = rt.config.mode.max_override_ttl;
    let new_override = if mode == Mode::Enforce && reason.is_empty() {
        None
    } else {
        if reason.is_empty() {
            return Err(ControlError::Invalid(format!("a reason is required to set {mode}")));
        }
        let ttl = ttl.unwrap_or_else(|| Duration::from_secs(30 * 60).min(max));
        if ttl.is_zero() {
            return Err(ControlError::Invalid("ttl must be positive".into()));
        }
        if ttl > max {
            return Err(ControlError::Invalid(format!(
                "ttl {} is above mode.max_override_ttl ({})",
                crate::state::human(ttl),
                crate::state::human(max)
            )));
        }
        Some(ModeSetting {
            mode,
            source: ModeSource::Admin,
            reason: reason.clone(),
            actor: actor.name(),
            since_ms: now,
            expires_at_ms: Some(now + duration_ms(ttl)),
        })
    };
    let mut state = persisted(ctx);
    state.admin_override = new_override.clone();
    save(ctx, &state)?;
    let next = ctx.shared.update(|rt| Runtime {
        admin_override: new_override.clone(),
        config: rt.config.clone(),
        env_mode: rt.env_mode.clone(),
        file_mode: rt.file_mode.clone(),
        generation: rt.generation,
    });
    let after = next.mode_at(now).clone();
    let action = if new_override.is_some() { "mode.set" } else { "mode.cleared" };
    tracing::warn!(actor = %actor.name(), from = %before.mode, to = %after.mode, reason = %reason, "{action}");
    audit(ctx, &actor.name(), action, json!(before), json!(after), &reason);
    export_mode(after.mode);
    Ok(after)
}

fn revoke(ctx: &ControlState, what: Revocation, reason: String, actor: &Actor) -> Result<RevocationList, ControlError> {
    let now = ctx.clock.now_ms();
    let before = (**ctx.revocations.current()).clone();
    let mut list = before.clone();
    let entry = Entry { added_at_ms: now, actor: actor.name(), reason: reason.clone() };
    let detail = match &what {
        Revocation::Session(id) => {
            if id.trim().is_empty() {
                return Err(ControlError::Invalid("session_id must not be empty".into()));
            }
            list.sessions.insert(id.clone(), entry);
            json!({"session_id": id})
        }
        Revocation::User(id) => {
            if id.trim().is_empty() {
                return Err(ControlError::Invalid("user_id must not be empty".into()));
            }
            list.users.insert(id.clone(), entry);
            json!({"user_id": id})
        }
        Revocation::IssuedBefore(at) => {
            // A later cut-off revokes a superset; never move it backwards by accident.
            list.issued_before_ms = Some(list.issued_before_ms.map_or(*at, |old| old.max(*at)));
            json!({"issued_before": humantime::format_rfc3339_millis(crate::clock::from_ms(*at)).to_string()})
        }
    };
    save(ctx, &PersistedState { admin_override: ctx.shared.load().admin_override.clone(), revocations: list.clone() })?;
    ctx.revocations.replace(list.clone());
    audit(ctx, &actor.name(), "revocation.add", json!(null), detail, &reason);
    Ok(list)
}

fn unrevoke(ctx: &ControlState, id: &str, actor: &Actor) -> Result<RevocationList, ControlError> {
    let mut list = (**ctx.revocations.current()).clone();
    let removed = if id == "issued_before" {
        list.issued_before_ms.take().map(|at| json!({"issued_before_ms": at}))
    } else if list.sessions.remove(id).is_some() {
        Some(json!({"session_id": id}))
    } else if list.users.remove(id).is_some() {
        Some(json!({"user_id": id}))
    } else {
        None
    };
    let Some(removed) = removed else {
        return Err(ControlError::NotFound(format!("no revocation with id {id:?}")));
    };
    save(ctx, &PersistedState { admin_override: ctx.shared.load().admin_override.clone(), revocations: list.clone() })?;
    ctx.revocations.replace(list.clone());
    audit(ctx, &actor.name(), "revocation.remove", removed, json!(null), "");
    Ok(list)
}

/// Re-reads and validates the config; swaps it in only when valid. Audited either way.
fn reload(ctx: &ControlState, actor: &Actor) -> Result<ReloadOutcome, ControlError> {
    let Some(path) = &ctx.config_path else {
        return Err(ControlError::Config(ConfigErrors(vec![ConfigProblem {
            key: "(file)".into(),
            message: "this gateway was not started from a config file".into(),
        }])));
    };
    let old_hash = ctx.shared.load().config.origin.hash.clone();
    match Config::load(path, &ctx.env) {
        Ok(config) => {
            let config = Arc::new(config);
            let now = ctx.clock.now_ms();
            ctx.keys.reconfigure(&config);
            let next = ctx.shared.update(|rt| {
                // The file's mode keeps its original start (and so its expiry) while the file
                // says the same thing; a changed [mode] section starts afresh.
                let fresh = Runtime::file_mode_for(&config, now);
                let file_mode = if fresh.mode == rt.file_mode.mode && fresh.reason == rt.file_mode.reason {
                    rt.file_mode.clone()
                } else {
                    fresh
                };
                Runtime {
                    config: config.clone(),
                    admin_override: rt.admin_override.clone(),
                    env_mode: rt.env_mode.clone(),
                    file_mode,
                    generation: rt.generation,
                }
            });
            metrics::counter!(metric::RELOADS, "result" => "ok").increment(1);
            let hash = next.config.origin.hash.clone();
            let changed = old_hash != hash;
            for w in &next.config.warnings {
                tracing::warn!("config: {w}");
            }
            tracing::info!(actor = %actor.name(), %hash, changed, "config reloaded");
            audit(ctx, &actor.name(), "config.reload", json!({"hash": old_hash}), json!({"hash": hash}), "");
            export_mode(next.mode_at(now).mode);
            Ok(ReloadOutcome { hash, changed })
        }
        Err(errors) => {
            metrics::counter!(metric::RELOADS, "result" => "error").increment(1);
            tracing::error!(actor = %actor.name(), errors = %errors, "config reload refused; the running config stays");
            let problems: Vec<Value> = errors.0.iter().map(|p| json!({"key": p.key, "message": p.message})).collect();
            audit(
                ctx,
                &actor.name(),
                "config.reload_failed",
                json!({"hash": old_hash}),
                json!({"problems": problems}),
                "",
            );
            Err(ControlError::Config(errors))
        }
    }
}
