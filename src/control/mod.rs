//! The control task: the only writer of what requests read besides the config file itself.
//!
//! Every change — a mode override set or cleared, a revocation added or lifted, a reload, a
//! fetched key set, the end of a bypass — is decided here, recorded as a typed [`Change`] with
//! its audit line through the [`ControlStore`], and only then put in force. SIGHUP, the admin
//! API and the expiry timer just send [`Control`] messages; the key store sends fetched sets
//! ([`KeyInstall`]); a shared store sends changes made elsewhere.
//!
//! Ordering, and what a caller can rely on:
//!
//! - **Recorded, then in force.** A mode, revocation or reload change is committed to the store
//!   (state and audit line durable together) before it is swapped in and before its caller is
//!   answered. If the store refuses, the caller gets the error and nothing changed.
//! - **One change at a time.** The next message is taken only when the change in hand is in
//!   force, so each change is decided on the state the last one left.
//! - **Writes never stall requests.** Stores write on blocking threads; this task awaits them
//!   without holding anything requests read, and keeps installing fetched key sets meanwhile.
//! - **Key sets too**, recorded in order by a small writer task while this task goes on: a
//!   fetched set goes in force once `keys.json` and its audit line are durable, and not at all
//!   if they cannot be written. The one exception is a set fetched because a request named an
//!   unknown `kid`: that request is waiting, so the set goes in force at once and is recorded
//!   right after (a failure is logged).
//! - **Watched.** Every write, and a probe every [`PROBE_INTERVAL`], tells the [`Report`]
//!   whether the store takes writes; the admin API shows it, with the last reload attempt.
//! - **A new secret key is asked about first.** A reload whose config carries another
//!   `clerk.secret_key` goes in force only once the Backend API has taken that key; a key it
//!   refuses, or that could not be checked, keeps the running config, as an invalid file does.
//!
//! The task also publishes the files the running config was read from
//! ([`ControlHandle::watched_files`]), for the file watcher, and remembers what they held at the
//! last reload attempt, so a reload the watcher asks for happens only when one of them changed.

pub mod feed;
pub mod files;
pub mod report;
pub mod signals;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::clock::{duration_ms, Clock};
use crate::config::{Config, ConfigErrors, ConfigProblem, Env};
use crate::keys::{InstallError, KeyInstall, KeySet, KeyStore, SecretKeyCheck};
use crate::mode::{Mode, ModeSetting, ModeSource};
pub use crate::revocation::Revocation;
use crate::revocation::{Entry, RevocationId, RevocationList, Revocations};
use crate::state::{Runtime, Shared};
use crate::store::{Action, AuditEvent, BoxFuture, Change, ControlState, ControlStore, StoreError, StoreEvent};
use crate::telemetry::names as metric;
use files::Fingerprint;
pub use report::{ReloadAttempt, Report, StoreCheck, PROBE_INTERVAL};

/// Who asked for a change (recorded in the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signal (SIGHUP).
    Signal,
    /// An admin API call, by token id.
    Admin(String),
    /// The expiry timer.
    Timer,
    /// The environment at start (`CLERK_EMERGENCY_BYPASS`).
    Env,
    /// The key refresh (a fetched key set).
    Keys,
    /// The file watcher: a file the config was read from changed.
    Watch,
    /// A verified Clerk webhook (`session.revoked`, `session.ended`, `user.deleted`, …).
    Webhook,
}

impl Actor {
    /// The name written to the audit log.
    pub fn name(&self) -> String {
        match self {
            Actor::Signal => "signal".into(),
            Actor::Admin(id) => id.clone(),
            Actor::Timer => "timer".into(),
            Actor::Env => "env".into(),
            Actor::Keys => "keys".into(),
            Actor::Watch => "file-watch".into(),
            Actor::Webhook => "webhook".into(),
        }
    }
}

/// Why a control request was refused.
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
    /// The change could not be recorded (its state or its audit line); nothing changed.
    #[error("{0}")]
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
        /// Always, or only when a file changed.
        when: ReloadWhen,
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
    /// Record an event that changes no control state: a webhook replayed to the upstream, or
    /// what a runbook command did elsewhere (`POST /audit`, which takes only
    /// [`Action::is_runbook_record`] actions).
    Note {
        /// What.
        action: Action,
        /// What it did.
        after: Value,
        /// Why (empty when the event says it all).
        reason: String,
        /// Who.
        actor: Actor,
        /// Done once the audit line is durable.
        reply: Reply<()>,
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

/// When a reload is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadWhen {
    /// Every time (SIGHUP, `POST /reload`).
    Always,
    /// Only when the config file or a file it names holds something else than at the last
    /// reload attempt (the file watcher: touching a file, or a change beside it, is no reload).
    /// An unchanged set answers the running config's hash, unaudited.
    FilesChanged,
}

/// A successful reload.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    /// The new config hash.
    pub hash: String,
    /// Whether anything changed.
    pub changed: bool,
    /// Changes that wait for a restart (a listener's address, TLS on or off), each a sentence;
    /// everything else is in force.
    pub restart_needed: Vec<String>,
}

/// The sending side of the funnel.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Control>,
    files: watch::Receiver<Vec<PathBuf>>,
}

impl ControlHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Control) -> Result<T, ControlError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| ControlError::Closed)?;
        rx.await.map_err(|_| ControlError::Closed)?
    }

    /// Asks for a reload and waits for its outcome.
    pub async fn reload(&self, actor: Actor) -> Result<ReloadOutcome, ControlError> {
        self.ask(|reply| Control::Reload { actor, when: ReloadWhen::Always, reply: Some(reply) }).await
    }

    /// Asks for a reload without waiting (signal handlers).
    pub fn reload_nowait(&self, actor: Actor) {
        let _ = self.tx.try_send(Control::Reload { actor, when: ReloadWhen::Always, reply: None });
    }

    /// Asks for a reload that happens only when a watched file changed, and waits for it.
    pub async fn reload_if_files_changed(&self, actor: Actor) -> Result<ReloadOutcome, ControlError> {
        self.ask(|reply| Control::Reload { actor, when: ReloadWhen::FilesChanged, reply: Some(reply) }).await
    }

    /// The config file and every file the running config names, as written in the config;
    /// changes when a reload puts a config naming other files in force.
    pub fn watched_files(&self) -> watch::Receiver<Vec<PathBuf>> {
        self.files.clone()
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

    /// Records an event that changes no control state in the audit log: one line, durable when
    /// this returns.
    pub async fn note(&self, action: Action, after: Value, reason: String, actor: Actor) -> Result<(), ControlError> {
        self.ask(|reply| Control::Note { action, after, reason, actor, reply }).await
    }

    /// Lifts a revocation.
    pub async fn unrevoke(&self, id: String, actor: Actor) -> Result<RevocationList, ControlError> {
        self.ask(|reply| Control::Unrevoke { id, actor, reply }).await
    }
}

/// The funnel's two ends; the inbox goes to [`start`].
pub fn channel() -> (ControlHandle, Inbox) {
    let (tx, rx) = mpsc::channel(64);
    let (files_tx, files) = watch::channel(Vec::new());
    (ControlHandle { tx, files }, Inbox { rx, files: files_tx })
}

/// The receiving side of the funnel, and where the task publishes the files it watches.
#[derive(Debug)]
pub struct Inbox {
    rx: mpsc::Receiver<Control>,
    files: watch::Sender<Vec<PathBuf>>,
}

/// What the control task writes, and the store it records every change in.
#[derive(Debug)]
pub struct Handles {
    /// The runtime snapshot (config and mode).
    pub shared: Arc<Shared>,
    /// The revocations in force.
    pub revocations: Arc<Revocations>,
    /// The key set in force.
    pub keys: Arc<KeyStore>,
    /// Where changes are recorded.
    pub store: Arc<dyn ControlStore>,
    /// The clock.
    pub clock: Clock,
    /// The config file, for reloads.
    pub config_path: Option<PathBuf>,
    /// The environment the config is resolved with.
    pub env: Env,
    /// Where the task reports on its store and its reloads.
    pub report: Arc<Report>,
}

/// How often the expiry timer looks (bounds drift of the injectable clock against tokio's timer).
const TIMER_TICK: Duration = Duration::from_millis(200);

/// How long the timer waits before trying again to record an expiry the store refused.
const EXPIRY_RETRY_MS: i64 = 5_000;

/// Starts the control task on `handles`, whose state the store had at `epoch`. First proves
/// the store takes writes and records how the gateway starts — a bypass from the environment
/// is audited before anything is served, and the gateway does not start if it cannot be —
/// then runs until `rx` closes.
pub async fn start(handles: Handles, inbox: Inbox, epoch: u64) -> Result<JoinHandle<()>, ControlError> {
    let Inbox { rx, files } = inbox;
    let (install_tx, installs) = mpsc::channel(16);
    handles.keys.send_fetched_sets_to(install_tx);
    let changes = handles.store.changes();
    // A shared store may have moved on between the caller's snapshot and this subscription.
    let shared_store = handles.store.fleet().is_some();
    let (saves, to_save) = mpsc::unbounded_channel();
    let (saved_tx, saved) = mpsc::unbounded_channel();
    let saver = KeySaver { store: handles.store.clone(), report: handles.report.clone(), clock: handles.clock.clone() };
    tokio::spawn(saver.run(to_save, saved_tx));
    let task = Arc::new(Task {
        h: handles,
        applied: AtomicU64::new(epoch),
        announced: Mutex::new(Vec::new()),
        expiry_retry_at_ms: AtomicI64::new(i64::MIN),
        files,
        loaded: Mutex::new(Fingerprint::default()),
    });
    task.read_watched_files().await;
    task.clone().probe().await;
    if let Some(problem) = task.h.report.store().problem {
        return Err(ControlError::Storage(problem));
    }
    if shared_store {
        task.resync().await;
    }
    task.record_start().await?;
    Ok(tokio::spawn(task.run(rx, Keys { installs, saves, saved }, changes)))
}

/// The control task's own state.
#[derive(Debug)]
struct Task {
    h: Handles,
    /// The store epoch whose state is in force.
    applied: AtomicU64,
    /// The file and env bypasses whose end has been audited.
    announced: Mutex<Vec<(ModeSource, i64)>>,
    /// No expiry is recorded before this moment (after the store refused one).
    expiry_retry_at_ms: AtomicI64,
    /// The config file and the files the running config names, for the file watcher.
    files: watch::Sender<Vec<PathBuf>>,
    /// What those files held at the last reload attempt (or the start).
    loaded: Mutex<Fingerprint>,
}

/// A change being recorded; it puts itself in force and answers its caller when it completes.
type InHand = BoxFuture<'static, ()>;

/// The key lane: fetched sets in, sets to record out, recorded sets back.
struct Keys {
    installs: mpsc::Receiver<KeyInstall>,
    saves: mpsc::UnboundedSender<KeySave>,
    saved: mpsc::UnboundedReceiver<KeySaved>,
}

impl Task {
    async fn run(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Control>,
        mut keys: Keys,
        mut changes: broadcast::Receiver<StoreEvent>,
    ) {
        let mut in_hand: Option<InHand> = None;
        let mut probing: Option<InHand> = None;
        let mut following = true;
        let mut tick = tokio::time::interval(TIMER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe_tick = tokio::time::interval(PROBE_INTERVAL);
        probe_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = finish(&mut in_hand) => in_hand = None,
                () = finish(&mut probing) => probing = None,
                _ = probe_tick.tick(), if probing.is_none() => probing = Some(Box::pin(self.clone().probe())),
                Some(install) = keys.installs.recv() => self.take_keys(install, &keys.saves),
                Some(saved) = keys.saved.recv() => self.keys_saved(saved),
                msg = rx.recv(), if in_hand.is_none() => match msg {
                    Some(msg) => in_hand = Some(Box::pin(self.clone().handle(msg))),
                    None => break,
                },
                event = changes.recv(), if in_hand.is_none() && following => match event {
                    Ok(event) => in_hand = Some(Box::pin(self.clone().follow(event))),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        in_hand = Some(Box::pin(self.clone().follow(StoreEvent::Resync)));
                    }
                    Err(broadcast::error::RecvError::Closed) => following = false,
                },
                _ = tick.tick(), if in_hand.is_none() => in_hand = self.expiry(),
            }
        }
    }

    async fn handle(self: Arc<Self>, msg: Control) {
        match msg {
            Control::Reload { actor, when, reply } => {
                let outcome = self.reload(&actor, when).await;
                if let Some(reply) = reply {
                    let _ = reply.send(outcome);
                }
            }
            Control::SetMode { mode, reason, ttl, actor, reply } => {
                let _ = reply.send(self.set_mode(mode, reason, ttl, &actor).await);
            }
            Control::Revoke { what, reason, actor, reply } => {
                let _ = reply.send(self.revoke(what, reason, &actor).await);
            }
            Control::Unrevoke { id, actor, reply } => {
                let _ = reply.send(self.unrevoke(&id, &actor).await);
            }
            Control::Note { action, after, reason, actor, reply } => {
                let event = self.event(&actor, action, Value::Null, after, &reason);
                let _ = reply.send(self.commit(Change::Note, event).await);
            }
        }
    }

    /// Asks the store whether it takes writes now, and reports the answer.
    async fn probe(self: Arc<Self>) {
        let outcome = self.h.store.probe().await;
        self.h.report.store_checked(self.h.clock.now_ms(), outcome.as_ref().map(drop));
    }

    fn event(&self, actor: &Actor, action: Action, before: Value, after: Value, reason: &str) -> AuditEvent {
        AuditEvent::new(self.h.clock.now_ms(), &actor.name(), action, before, after, reason)
    }

    /// Records `change` with its audit line, then puts it in force. Nothing is in force before
    /// the audit line is durable, and nothing changes if it cannot be written.
    async fn commit(&self, change: Change, event: AuditEvent) -> Result<(), ControlError> {
        let action = event.action;
        let written = self.h.store.apply(change, Some(event)).await;
        // A refusal says nothing about whether the store takes writes.
        let outcome = match &written {
            Ok(_) | Err(StoreError::Refused(_)) => Ok(()),
            Err(e) => Err(e),
        };
        self.h.report.store_checked(self.h.clock.now_ms(), outcome);
        let applied = written.map_err(|e| match e {
            StoreError::Refused(why) => ControlError::Invalid(why),
            e => {
                tracing::error!(error = %e, %action, "could not record a change; nothing changed");
                ControlError::Storage(format!(
                    "{e}; nothing changed: every change needs a state store that takes writes (make it writable, then retry)"
                ))
            }
        })?;
        if let Some(state) = applied.state {
            self.show_at(applied.epoch, state);
        }
        Ok(())
    }

    /// Puts `state` in force as the store's view at `epoch`, unless a newer one already is.
    fn show_at(&self, epoch: u64, state: ControlState) {
        if epoch > self.applied.load(Ordering::Acquire) {
            self.show_state(state);
            self.applied.store(epoch, Ordering::Release);
        }
    }

    /// The shared part of the state in force.
    fn state(&self) -> ControlState {
        ControlState {
            admin_override: self.h.shared.load().admin_override.clone(),
            revocations: (**self.h.revocations.current()).clone(),
        }
    }

    /// Puts a change recorded elsewhere in force.
    fn show(&self, change: &Change) {
        let mut state = self.state();
        state.apply(change);
        self.show_state(state);
    }

    /// Puts `state` in force, swapping only what differs.
    fn show_state(&self, state: ControlState) {
        if self.h.shared.load().admin_override != state.admin_override {
            let next = self.h.shared.update(|rt| rt.with_override(state.admin_override.clone()));
            export_mode(next.mode_at(self.h.clock.now_ms()).mode);
        }
        if **self.h.revocations.current() != state.revocations {
            self.h.revocations.replace(state.revocations);
        }
    }

    /// Reads the store whole and puts its state in force.
    async fn resync(&self) {
        match self.h.store.snapshot().await {
            Ok(snapshot) => {
                tracing::info!(epoch = snapshot.epoch, "read the state store afresh");
                self.show_state(snapshot.state);
                self.applied.store(snapshot.epoch, Ordering::Release);
            }
            Err(e) => tracing::error!(error = %e, "could not read the state store; the state in force stays"),
        }
    }

    /// Follows a change made elsewhere: applies the next one in sequence, skips one already
    /// in force, and reads the store whole after a gap.
    async fn follow(self: Arc<Self>, event: StoreEvent) {
        match event {
            StoreEvent::Committed { epoch, change } => {
                let applied = self.applied.load(Ordering::Acquire);
                if epoch <= applied {
                    return;
                }
                if epoch == applied + 1 {
                    tracing::info!(epoch, ?change, "applying a change made elsewhere");
                    self.show(&change);
                    self.applied.store(epoch, Ordering::Release);
                } else {
                    self.resync().await;
                }
            }
            StoreEvent::State { epoch, state } => self.show_at(epoch, state),
            StoreEvent::Resync => self.resync().await,
        }
    }

    /// Records how the gateway starts: a bypass from the environment is audited.
    async fn record_start(&self) -> Result<(), ControlError> {
        let rt = self.h.shared.load_full();
        let mode = rt.mode_at(self.h.clock.now_ms());
        if mode.source == ModeSource::Env {
            let event = self.event(&Actor::Env, Action::ModeSet, Value::Null, json!(mode), &mode.reason);
            self.commit(Change::Note, event).await?;
        }
        Ok(())
    }

    /// The expiry work due now, if any: the end of each bypass from the environment or the
    /// file, audited once, and an admin override that has run out, removed. Requests never
    /// depend on this: [`Runtime::mode_at`] already ignores an expired setting, so a late or
    /// failing timer can never extend a bypass.
    fn expiry(self: &Arc<Self>) -> Option<InHand> {
        let now = self.h.clock.now_ms();
        if now < self.expiry_retry_at_ms.load(Ordering::Acquire) {
            return None;
        }
        let rt = self.h.shared.load_full();
        let ended: Vec<ModeSetting> = {
            let announced = self.announced.lock().unwrap_or_else(PoisonError::into_inner);
            [rt.env_mode.as_ref(), Some(&rt.file_mode)]
                .into_iter()
                .flatten()
                .filter(|s| s.expires_at_ms.is_some() && !s.active(now))
                .filter(|s| !announced.contains(&(s.source, s.since_ms)))
                .cloned()
                .collect()
        };
        let expired_override = rt.admin_override.as_ref().filter(|o| !o.active(now)).cloned();
        if ended.is_empty() && expired_override.is_none() {
            return None;
        }
        let task = self.clone();
        Some(Box::pin(async move { task.expire(rt, ended, expired_override, now).await }))
    }

    async fn expire(&self, rt: Arc<Runtime>, ended: Vec<ModeSetting>, expired_override: Option<ModeSetting>, now: i64) {
        let retry_later = || self.expiry_retry_at_ms.store(now + EXPIRY_RETRY_MS, Ordering::Release);
        for setting in ended {
            tracing::warn!(source = ?setting.source, mode = %setting.mode, "mode expired; falling back");
            let event =
                self.event(&Actor::Timer, Action::ModeExpired, json!(setting), json!(rt.mode_at(now)), &setting.reason);
            if self.commit(Change::Note, event).await.is_err() {
                return retry_later();
            }
            self.announced.lock().unwrap_or_else(PoisonError::into_inner).push((setting.source, setting.since_ms));
        }
        if let Some(old) = expired_override {
            let after = rt.with_override(None).mode_at(now).clone();
            let event = self.event(&Actor::Timer, Action::ModeExpired, json!(old), json!(after), &old.reason);
            match self.commit(Change::ExpireOverride(old.clone()), event).await {
                Ok(()) => {
                    tracing::warn!(mode = %old.mode, reason = %old.reason, "admin override expired; falling back to {}", after.mode)
                }
                Err(_) => retry_later(),
            }
        }
    }

    async fn set_mode(
        &self,
        mode: Mode,
        reason: String,
        ttl: Option<Duration>,
        actor: &Actor,
    ) -> Result<ModeSetting, ControlError> {
        let now = self.h.clock.now_ms();
        let rt = self.h.shared.load_full();
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
        let after = rt.with_override(new_override.clone()).mode_at(now).clone();
        let (change, action) = match new_override {
            Some(setting) => (Change::SetOverride(setting), Action::ModeSet),
            None => (Change::ClearOverride, Action::ModeCleared),
        };
        self.commit(change, self.event(actor, action, json!(before), json!(after), &reason)).await?;
        // What is in force now, as the store merged it (a layered store may keep another
        // layer's override in force).
        let after = self.h.shared.load().mode_at(now).clone();
        tracing::warn!(actor = %actor.name(), from = %before.mode, to = %after.mode, reason = %reason, "{action}");
        Ok(after)
    }

    async fn revoke(&self, what: Revocation, reason: String, actor: &Actor) -> Result<RevocationList, ControlError> {
        let detail = match &what {
            Revocation::Session(id) if id.trim().is_empty() => {
                return Err(ControlError::Invalid("session_id must not be empty".into()))
            }
            Revocation::User(id) if id.trim().is_empty() => {
                return Err(ControlError::Invalid("user_id must not be empty".into()))
            }
            Revocation::Session(id) => json!({"session_id": id}),
            Revocation::User(id) => json!({"user_id": id}),
            Revocation::IssuedBefore(at) => {
                json!({"issued_before": humantime::format_rfc3339_millis(crate::clock::from_ms(*at)).to_string()})
            }
        };
        let entry = Entry { added_at_ms: self.h.clock.now_ms(), actor: actor.name(), reason: reason.clone() };
        let event = self.event(actor, Action::RevocationAdd, Value::Null, detail, &reason);
        self.commit(Change::Revoke { what, entry }, event).await?;
        Ok((**self.h.revocations.current()).clone())
    }

    async fn unrevoke(&self, id: &str, actor: &Actor) -> Result<RevocationList, ControlError> {
        let (which, removed) = {
            let list = self.h.revocations.current();
            let Some(which) = list.find(id) else {
                return Err(ControlError::NotFound(format!(
                    "no revocation with id {id:?}; an id is a revoked session or user id, or issued_before (GET /revocations lists them)"
                )));
            };
            let removed = match &which {
                RevocationId::IssuedBefore => json!({"issued_before_ms": list.issued_before_ms}),
                RevocationId::Session(id) => json!({"session_id": id}),
                RevocationId::User(id) => json!({"user_id": id}),
            };
            (which, removed)
        };
        let event = self.event(actor, Action::RevocationRemove, removed, Value::Null, "");
        self.commit(Change::Unrevoke(which), event).await?;
        Ok((**self.h.revocations.current()).clone())
    }

    /// Publishes the files the running config was read from, and what they hold now.
    async fn read_watched_files(&self) {
        let rt = self.h.shared.load_full();
        let paths = files::watched(self.h.config_path.as_deref(), &rt.config.origin.files);
        let read = paths.clone();
        if let Ok(fp) = tokio::task::spawn_blocking(move || Fingerprint::of(&read)).await {
            *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) = fp;
        }
        self.files.send_replace(paths);
    }

    /// Re-reads and validates the config; records the reload, then swaps it in — only when
    /// valid, and when a new secret key has been taken by the Backend API. A refused reload is
    /// recorded too. With [`ReloadWhen::FilesChanged`] and files that hold what they held at
    /// the last attempt, nothing is read, recorded or reported.
    async fn reload(&self, actor: &Actor, when: ReloadWhen) -> Result<ReloadOutcome, ControlError> {
        let outcome = match self.read_config(when).await {
            Ok(None) => {
                tracing::debug!(actor = %actor.name(), "no watched file changed; no reload");
                let hash = self.h.shared.load().config.origin.hash.clone();
                return Ok(ReloadOutcome { hash, changed: false, restart_needed: Vec::new() });
            }
            Ok(Some(loaded)) => self.put_in_force(actor, loaded).await,
            Err(e) => Err(e),
        };
        let problems = match &outcome {
            Ok(_) => Vec::new(),
            Err(ControlError::Config(errors)) => errors.0.clone(),
            // A valid file whose reload could not be recorded.
            Err(ControlError::Storage(m)) => vec![ConfigProblem { key: "state.dir".into(), message: m.clone() }],
            Err(e) => vec![ConfigProblem { key: "(gateway)".into(), message: e.to_string() }],
        };
        self.h.report.reload_attempted(ReloadAttempt {
            at_ms: self.h.clock.now_ms(),
            actor: actor.name(),
            hash: outcome.as_ref().ok().map(|o| o.hash.clone()),
            problems,
        });
        outcome
    }

    /// Reads the config file and its secret files, off the runtime, and remembers what the
    /// files held — read before the config, so a change made during the load is seen as a
    /// change next time rather than missed. `None`: asked for [`ReloadWhen::FilesChanged`],
    /// and nothing changed.
    async fn read_config(&self, when: ReloadWhen) -> Result<Option<Result<Config, ConfigErrors>>, ControlError> {
        let Some(path) = self.h.config_path.clone() else {
            return Err(config_problem("this gateway was not started from a config file".into()));
        };
        let rt = self.h.shared.load_full();
        let before = files::watched(Some(&path), &rt.config.origin.files);
        let last = self.loaded.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let env = self.h.env.clone();
        let read = tokio::task::spawn_blocking(move || {
            let mut fp = Fingerprint::of(&before);
            if when == ReloadWhen::FilesChanged && fp == last {
                return (fp, None);
            }
            let loaded = Config::load(&path, &env);
            if let Ok(config) = &loaded {
                let now = files::watched(Some(&path), &config.origin.files);
                fp.add(&now);
                fp.keep_only(&now);
            }
            (fp, Some(loaded))
        })
        .await
        .map_err(|e| config_problem(format!("the config could not be read: {e}")))?;
        let (fp, loaded) = read;
        *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) = fp;
        Ok(loaded)
    }

    /// Puts a freshly read config in force, once it is valid, its new secret key (if any) has
    /// been taken, and its reload is recorded; otherwise records the refusal.
    async fn put_in_force(
        &self,
        actor: &Actor,
        loaded: Result<Config, ConfigErrors>,
    ) -> Result<ReloadOutcome, ControlError> {
        let running = self.h.shared.load_full().config.clone();
        let old_hash = running.origin.hash.clone();
        let checked = match loaded {
            Ok(config) => self.check_new_secret_key(&running, config).await,
            Err(errors) => Err(errors),
        };
        let config = match checked {
            Ok(config) => Arc::new(config),
            Err(errors) => {
                metrics::counter!(metric::RELOADS, "result" => "error").increment(1);
                tracing::error!(actor = %actor.name(), errors = %errors, "config reload refused; the running config stays");
                let problems: Vec<Value> =
                    errors.0.iter().map(|p| json!({"key": p.key, "message": p.message})).collect();
                let event = self.event(
                    actor,
                    Action::ConfigReloadFailed,
                    json!({"hash": old_hash}),
                    json!({"problems": problems}),
                    "",
                );
                // A refusal the store cannot record is still a refusal; `commit` has logged it.
                let _ = self.commit(Change::Note, event).await;
                return Err(ControlError::Config(errors));
            }
        };
        let hash = config.origin.hash.clone();
        let event = self.event(actor, Action::ConfigReload, json!({"hash": old_hash}), json!({"hash": hash}), "");
        if let Err(e) = self.commit(Change::Note, event).await {
            metrics::counter!(metric::RELOADS, "result" => "error").increment(1);
            return Err(e);
        }
        let now = self.h.clock.now_ms();
        self.h.keys.reconfigure(&config);
        let next = self.h.shared.update(|rt| rt.with_config(config.clone(), now));
        metrics::counter!(metric::RELOADS, "result" => "ok").increment(1);
        let changed = old_hash != hash;
        for w in &next.config.warnings {
            tracing::warn!("config: {w}");
        }
        let restart_needed = config.restart_needed(&running);
        for r in &restart_needed {
            tracing::warn!("config reloaded, but {r}");
        }
        tracing::info!(actor = %actor.name(), %hash, changed, "config reloaded");
        export_mode(next.mode_at(now).mode);
        let watched = files::watched(self.h.config_path.as_deref(), &config.origin.files);
        self.files.send_if_modified(|files| {
            let differ = *files != watched;
            if differ {
                *files = watched;
            }
            differ
        });
        Ok(ReloadOutcome { hash, changed, restart_needed })
    }

    /// Asks the Backend API about `next`'s secret key when it is not the running one (the
    /// runbook's key rotation without a redeploy). A key Clerk refuses, or one that could not be
    /// checked, is a problem under the key that set it: the running key stays in force, and the
    /// operator is told what Clerk answered. Only a fingerprint of a key is ever written.
    async fn check_new_secret_key(&self, running: &Config, next: Config) -> Result<Config, ConfigErrors> {
        let Some(key) = next.clerk.secret_key.as_ref() else {
            return Ok(next);
        };
        if running.clerk.secret_key.as_ref() == Some(key) {
            return Ok(next);
        }
        let api_url = &next.clerk.api_url;
        let check = self.h.keys.check_secret_key(api_url, key, next.clerk.keys.fetch_timeout).await;
        metrics::counter!(metric::SECRET_KEY_CHECKS, "result" => check.label()).increment(1);
        let fingerprint = key.fingerprint();
        let message = match check {
            SecretKeyCheck::Accepted => {
                tracing::info!(%fingerprint, "the Backend API accepted the new secret key");
                return Ok(next);
            }
            SecretKeyCheck::Rejected(answer) => format!(
                "the Backend API ({api_url}) refused the new secret key (fingerprint {fingerprint}): {answer}; \
                 the running key stays in use. Put a secret key of this instance (API keys page of the Clerk \
                 dashboard) in its place, then reload"
            ),
            SecretKeyCheck::Unchecked(why) => format!(
                "the new secret key (fingerprint {fingerprint}) could not be checked at the Backend API, so it \
                 is not used yet: {why}; the running key stays in use. Reload again (`clerkgate reload`) once \
                 {api_url} answers"
            ),
        };
        let key = next.clerk.secret_key_from.clone().unwrap_or_else(|| "clerk.secret_key".into());
        Err(ConfigErrors(vec![ConfigProblem { key, message }]))
    }

    /// Takes a fetched key set: queues it to be recorded (saved, and audited when its keys
    /// changed) and put in force afterwards — or, when a request is waiting for it, puts it in
    /// force at once and records it right after. Saves run in order, so `keys.json` always
    /// ends with the last set.
    fn take_keys(&self, install: KeyInstall, saves: &mpsc::UnboundedSender<KeySave>) {
        let KeyInstall { set, urgent, reply } = install;
        if !self.h.keys.is_source(set.url.as_deref().unwrap_or_default()) {
            let _ = reply.send(Err(InstallError::SourceChanged));
            return;
        }
        let current = self.h.keys.current();
        let audit = (!current.same_keys(&set.keys))
            .then(|| self.event(&Actor::Keys, Action::KeysChanged, json!(current.kids()), json!(set.kids()), ""));
        let change = Change::KeySet(set.stored());
        let then = if urgent {
            self.put_keys(set);
            let _ = reply.send(Ok(()));
            None
        } else {
            Some((set, reply))
        };
        if let Err(mpsc::error::SendError(save)) = saves.send(KeySave { change, audit, then }) {
            if let Some((_, reply)) = save.then {
                let _ = reply.send(Err(InstallError::Closed));
            }
        }
    }

    /// Puts a recorded key set in force, unless the store refused it.
    fn keys_saved(&self, saved: KeySaved) {
        let KeySaved { result, set, reply } = saved;
        let answer = match result {
            Err(e) => Err(InstallError::NotRecorded(e)),
            Ok(()) if !self.h.keys.is_source(set.url.as_deref().unwrap_or_default()) => {
                Err(InstallError::SourceChanged)
            }
            Ok(()) => {
                self.put_keys(set);
                Ok(())
            }
        };
        let _ = reply.send(answer);
    }

    fn put_keys(&self, set: KeySet) {
        let before = self.h.keys.current().kids();
        let after = set.kids();
        if self.h.keys.put(set) {
            tracing::info!(?before, ?after, "key set changed");
        }
    }
}

fn config_problem(message: String) -> ControlError {
    ControlError::Config(ConfigErrors(vec![ConfigProblem { key: "(file)".into(), message }]))
}

/// Completes when the change in hand does; never, when there is none.
async fn finish(in_hand: &mut Option<InHand>) {
    match in_hand {
        Some(change) => change.await,
        None => std::future::pending().await,
    }
}

/// A key set to be recorded; `then` holds it and its caller until it may go in force.
#[derive(Debug)]
struct KeySave {
    change: Change,
    audit: Option<AuditEvent>,
    then: Option<(KeySet, oneshot::Sender<Result<(), InstallError>>)>,
}

/// A key set recorded (or refused by the store), back to the control task to go in force.
#[derive(Debug)]
struct KeySaved {
    result: Result<(), String>,
    set: KeySet,
    reply: oneshot::Sender<Result<(), InstallError>>,
}

/// Records key sets in order, one at a time. It changes nothing in force: sets waiting to go
/// in force go back to the control task.
struct KeySaver {
    store: Arc<dyn ControlStore>,
    report: Arc<Report>,
    clock: Clock,
}

impl KeySaver {
    async fn run(self, mut to_save: mpsc::UnboundedReceiver<KeySave>, saved: mpsc::UnboundedSender<KeySaved>) {
        while let Some(save) = to_save.recv().await {
            let written = self.store.apply(save.change, save.audit).await.map(drop);
            self.report.store_checked(self.clock.now_ms(), written.as_ref().map(drop));
            let result = written.map_err(|e| {
                tracing::error!(error = %e, "could not record a key set");
                e.to_string()
            });
            if let Some((set, reply)) = save.then {
                let _ = saved.send(KeySaved { result, set, reply });
            }
        }
    }
}

/// Sets the mode gauge: 1 for the mode in force, 0 for the others.
pub fn export_mode(mode: Mode) {
    for m in [Mode::Enforce, Mode::Grace, Mode::Bypass] {
        metrics::gauge!(metric::MODE, "mode" => m.as_str()).set(if m == mode { 1.0 } else { 0.0 });
    }
}

#[cfg(test)]
mod tests;
