//! The fleet store: the mode override, the revocations and the audit trail shared by every
//! gateway of a fleet through one Redis (or Valkey) server (SPEC §10; the design is
//! fleet-deploy §2.7 and §7.2).
//!
//! Two layers, merged into the [`ControlState`] requests read:
//!
//! - the **fleet layer**: what the operator wrote to Redis (`clerkgate mode`, `clerkgate
//!   revoke` with the Redis backend, through [`FleetClient`]: state, event and audit record in
//!   one script). Every gateway follows it ([`follow`]): a snapshot on every (re)connect, then
//!   the events stream from the last id it saw, a check of the store's id and epoch on every
//!   quiet heartbeat, and a whole read every `resync_interval`. Each applied fleet state is
//!   kept in `state.dir/fleet.json`, so a gateway restarted while Redis is away serves it.
//! - the **local layer**: this gateway's own admin API (`clerkgate mode --local`, `POST
//!   /mode`), kept in `state.json` exactly as the file store keeps it. A gateway's Redis user
//!   may only read the state and append acknowledgements and audit (deploy/k8s/fleet), so a
//!   pod cannot flip its fleet.
//!
//! The rules (README "Fleet"):
//!
//! - **Mode**: of the two layers' overrides, the most recently set one that still runs is in
//!   force; when it runs out or is cleared, the other one if it still runs; then the config
//!   file. A local change made while Redis is away is never written to the fleet later (it
//!   could overwrite a newer fleet decision): it stays local until it expires or a newer fleet
//!   override takes over.
//! - **Expiry never depends on Redis**: every override carries its `expires_at`; this
//!   gateway's control task ends it on time, Redis's TTL only cleans the key up afterwards.
//! - **Revocations** are the union of both layers and of the fleet revocations kept from
//!   before a store reset. A fleet revocation is lifted for the fleet only.
//! - **Store reset** (another store id: Redis lost or flushed its data; or an epoch that went
//!   back): the store's mode is taken as it is, but every fleet revocation known before is
//!   kept, counted in `clerkgate_fleet_store_resets_total` and logged as an error.
//! - **Audit**: every record is first durable in this gateway's `audit.jsonl` (the commit
//!   point, as with the file store), then copied to the fleet's audit stream with its origin
//!   and offset; while Redis is away the copy waits, bounded by `audit_buffer_max` (the oldest
//!   waiting records are skipped and counted).

mod client;
mod follow;
mod link;
mod names;
mod shape;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch, Notify};

pub use client::{FleetClient, FleetStatus, Member, Propagation, Written};
pub use names::Names;
pub use shape::Ack;

use super::file::{FileStore, StateProblems};
use super::{
    Applied, AuditEvent, AuditLines, BoxFuture, Change, ControlState, ControlStore, FleetReport, GatewayFacts,
    SkippedLine, Snapshot, StoreError, StoreEvent,
};
use crate::clock::Clock;
use crate::config::RedisConfig;
use crate::mode::ModeSetting;
use crate::revocation::{RevocationId, RevocationList};
use crate::telemetry::names as metric;

/// How long a gateway waits at start for its first read of the fleet's state before it
/// serves with the copy in `fleet.json` (and keeps trying).
pub const FIRST_SYNC_WAIT: Duration = Duration::from_secs(2);

/// The last fleet state this gateway applied: `fleet.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetCopy {
    /// The store's id when it was read; `None` before any operator write.
    #[serde(default)]
    pub store_id: Option<String>,
    /// The fleet's epoch it is at.
    #[serde(default)]
    pub epoch: u64,
    /// The id of the last event applied (`0-0`: none).
    #[serde(default = "first_id")]
    pub last_id: String,
    /// The fleet's mode override and revocations.
    #[serde(default)]
    pub state: ControlState,
    /// Fleet revocations kept from before a store reset.
    #[serde(default)]
    pub retained: RevocationList,
}

impl FleetCopy {
    /// Applies a fleet change; lifting a revocation lifts a kept one too.
    fn apply(&mut self, change: &Change) {
        self.state.apply(change);
        if let Change::Unrevoke(id) = change {
            self.retained = self.retained.without(id);
        }
    }
}

fn first_id() -> String {
    "0-0".into()
}

/// The merged view and what it is made of.
#[derive(Debug, Default)]
struct View {
    /// The local layer (`state.json`).
    local: ControlState,
    /// The fleet layer.
    fleet: FleetCopy,
    /// Changes to the merged view since start (the epoch the control task follows).
    epoch: u64,
}

impl View {
    /// The state requests must see at `now_ms`.
    fn merged(&self, now_ms: i64) -> ControlState {
        ControlState {
            admin_override: in_force(
                self.local.admin_override.as_ref(),
                self.fleet.state.admin_override.as_ref(),
                now_ms,
            ),
            revocations: self.local.revocations.union(&self.fleet.state.revocations).union(&self.fleet.retained),
        }
    }
}

/// Of two overrides, the most recently set one that still runs; when neither runs, the most
/// recent one (so the control task sees it has run out and ends it).
fn in_force(a: Option<&ModeSetting>, b: Option<&ModeSetting>, now_ms: i64) -> Option<ModeSetting> {
    let running = |s: Option<&ModeSetting>| s.is_some_and(|s| s.active(now_ms));
    let (a, b) = if running(a) || running(b) { (a.filter(|_| running(a)), b.filter(|_| running(b))) } else { (a, b) };
    newest(a, b).cloned()
}

/// The more recently set of two overrides.
fn newest<'a>(a: Option<&'a ModeSetting>, b: Option<&'a ModeSetting>) -> Option<&'a ModeSetting> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.since_ms > a.since_ms { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// How this gateway's link to Redis stands.
#[derive(Debug, Default)]
struct LinkState {
    connected: bool,
    problem: Option<String>,
    last_sync_ms: Option<i64>,
}

/// What the store shares with its follower task.
struct Inner {
    local: FileStore,
    config: RedisConfig,
    names: Names,
    client: redis::Client,
    clock: Clock,
    view: Mutex<View>,
    events: broadcast::Sender<StoreEvent>,
    link: Mutex<LinkState>,
    /// Wakes the reporter: an audit record to copy, an acknowledgement to write.
    wake: Notify,
    /// The fleet copy to persist (latest wins).
    persist: watch::Sender<FleetCopy>,
    /// Tells what this gateway runs, for its acknowledgement.
    facts: Mutex<Option<Arc<dyn Fn() -> GatewayFacts + Send + Sync>>>,
    /// The first read of the fleet's state happened.
    synced: watch::Sender<bool>,
    audit_buffered: AtomicU64,
    audit_dropped: AtomicU64,
    resets: AtomicU64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("dir", &self.local.dir()).field("names", &self.names).finish()
    }
}

/// The fleet store ([module docs](self)).
#[derive(Debug, Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl RedisStore {
    /// Opens the local part in `dir` (blocking: the same checks as the file store, and
    /// `fleet.json` with them) and prepares the link to `config`'s Redis. Nothing connects yet:
    /// [`RedisStore::start`] does.
    pub fn open(config: &RedisConfig, dir: PathBuf, discard: bool, clock: Clock) -> Result<RedisStore, OpenError> {
        let local = FileStore::open(dir, discard, clock.now_ms()).map_err(OpenError::State)?;
        let client = link::client(config, None, None).map_err(OpenError::Redis)?;
        let fleet: FleetCopy = super::file::read_json(&fleet_path(&local))
            .map_err(|e| OpenError::Redis(e.to_string()))?
            .unwrap_or_default();
        let local_state = local.load().map_err(|e| OpenError::Redis(e.to_string()))?.state;
        follow::init_audit_offset(&local).map_err(|e| OpenError::Redis(e.to_string()))?;
        // Records left waiting by the last run (Redis was away) count from the start.
        let waiting = follow::unflushed(&local).map_err(|e| OpenError::Redis(e.to_string()))?.records.len() as u64;
        let (persist, _) = watch::channel(fleet.clone());
        let inner = Inner {
            names: Names::new(&config.key_prefix, &config.fleet),
            config: config.clone(),
            client,
            clock,
            view: Mutex::new(View { local: local_state, fleet, epoch: 0 }),
            events: broadcast::channel(64).0,
            link: Mutex::default(),
            wake: Notify::new(),
            persist,
            facts: Mutex::new(None),
            synced: watch::channel(false).0,
            audit_buffered: AtomicU64::new(waiting),
            audit_dropped: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            local,
        };
        Ok(RedisStore { inner: Arc::new(inner) })
    }

    /// Starts following the fleet (and persisting what it applies), then waits up to
    /// [`FIRST_SYNC_WAIT`] for the first read of the fleet's state. Without one the gateway
    /// serves with `fleet.json`'s copy, and the follower keeps trying.
    pub async fn start(&self) {
        let mut rx = self.inner.persist.subscribe();
        let local = self.inner.local.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let copy = rx.borrow_and_update().clone();
                let local = local.clone();
                let written = tokio::task::spawn_blocking(move || write_fleet_copy(&local, &copy)).await;
                if let Ok(Err(e)) = written {
                    tracing::error!(error = %e, "could not save the fleet's state in fleet.json");
                }
            }
        });
        tokio::spawn(follow::run(self.inner.clone()));
        let mut synced = self.inner.synced.subscribe();
        if tokio::time::timeout(FIRST_SYNC_WAIT, synced.wait_for(|s| *s)).await.is_err() {
            let problem = self.inner.link().problem.clone().unwrap_or_else(|| "no answer yet".into());
            tracing::error!(
                %problem,
                "the fleet's Redis did not answer at start; serving with the last fleet state saved in fleet.json, \
                 and trying again"
            );
        }
    }

    /// This gateway's state directory.
    pub fn dir(&self) -> &std::path::Path {
        self.inner.local.dir()
    }
}

/// Why the fleet store could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The state directory or a file in it.
    #[error("{0}")]
    State(StateProblems),
    /// The Redis settings, or the saved fleet state.
    #[error("{0}")]
    Redis(String),
}

fn fleet_path(local: &FileStore) -> PathBuf {
    local.dir().join("fleet.json")
}

fn write_fleet_copy(local: &FileStore, copy: &FleetCopy) -> Result<(), String> {
    let path = fleet_path(local);
    let bytes = serde_json::to_vec_pretty(copy).map_err(|e| e.to_string())?;
    crate::fsutil::Staged::prepare(&path, &bytes)
        .and_then(crate::fsutil::Staged::publish)
        .map_err(|e| format!("{}: {e}", path.display()))
}

impl Inner {
    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn link(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the fleet layer with `edit`, then publishes the merged view, persists the copy
    /// and wakes the reporter (an acknowledgement is due).
    fn edit_fleet(&self, edit: impl FnOnce(&mut FleetCopy)) {
        let now = self.clock.now_ms();
        let mut view = self.view();
        edit(&mut view.fleet);
        view.epoch += 1;
        let _ = self.events.send(StoreEvent::State { epoch: view.epoch, state: view.merged(now) });
        self.persist.send_replace(view.fleet.clone());
        metrics::gauge!(metric::FLEET_EPOCH).set(view.fleet.epoch as f64);
        drop(view);
        self.link().last_sync_ms = Some(now);
        self.wake.notify_one();
    }

    /// Moves past an event whose change is already in force: the copy remembers where it is,
    /// nothing is published (the merged view did not change).
    fn pass(&self, event_id: &str) {
        let mut view = self.view();
        view.fleet.last_id = event_id.to_string();
        self.persist.send_replace(view.fleet.clone());
    }

    /// Commits a change made through this gateway (blocking): into the local layer, except the
    /// end of a fleet override (ended here, on time, whatever Redis does) and a kept revocation.
    fn apply(&self, change: Change, audit: Option<AuditEvent>) -> Result<Applied, StoreError> {
        let mut fleet_edit = None;
        {
            let view = self.view();
            match &change {
                Change::Unrevoke(id) if view.fleet.state.revocations.contains(id) => {
                    return Err(StoreError::Refused(format!(
                        "{} is revoked for the whole fleet {:?}; lift it for the fleet with the operator's Redis \
                         credentials (clerkgate revoke --lift {} --config <the fleet's config>), not through one gateway",
                        describe(id),
                        self.config.fleet,
                        lift_id(id)
                    )));
                }
                Change::Unrevoke(id) if view.fleet.retained.contains(id) => fleet_edit = Some(change.clone()),
                Change::ClearOverride
                    if view.local.admin_override.is_none()
                        && view.fleet.state.admin_override.as_ref().is_some_and(|o| o.active(self.clock.now_ms())) =>
                {
                    return Err(StoreError::Refused(format!(
                        "the override in force is the fleet {:?}'s and this gateway has none of its own to clear; \
                         end it for the fleet with the operator's Redis credentials (clerkgate mode enforce --config \
                         <the fleet's config>), or set one for this gateway alone (clerkgate mode enforce --reason … \
                         --local)",
                        self.config.fleet
                    )));
                }
                Change::ExpireOverride(setting) if view.fleet.state.admin_override.as_ref() == Some(setting) => {
                    fleet_edit = Some(change.clone());
                }
                _ => {}
            }
        }
        let applied = self.local.commit(&change, audit.as_ref())?;
        if audit.is_some() {
            // It waits for the reporter, which counts exactly when it copies; until then (all
            // the while Redis is away) it shows here.
            let waiting = self.audit_buffered.fetch_add(1, Ordering::Relaxed) + 1;
            metrics::gauge!(metric::AUDIT_BUFFERED).set(waiting as f64);
        }
        self.wake.notify_one();
        let now = self.clock.now_ms();
        let mut view = self.view();
        if let Some(state) = &applied.state {
            view.local = state.clone();
        }
        let touched = applied.state.is_some() || fleet_edit.is_some();
        if let Some(edit) = &fleet_edit {
            // The end of a fleet override, or a kept revocation lifted: this gateway's business.
            view.fleet.apply(edit);
            self.persist.send_replace(view.fleet.clone());
        }
        if !touched {
            return Ok(Applied { epoch: view.epoch, state: None });
        }
        view.epoch += 1;
        Ok(Applied { epoch: view.epoch, state: Some(view.merged(now)) })
    }

    fn report(&self) -> FleetReport {
        let view = self.view();
        let link = self.link();
        FleetReport {
            backend: "redis".into(),
            fleet: self.config.fleet.clone(),
            gateway_id: self.config.gateway_id.clone(),
            link: if link.connected { "connected" } else { "disconnected" }.into(),
            epoch: view.fleet.epoch,
            last_sync_ms: link.last_sync_ms,
            problem: link.problem.clone(),
            audit_buffered: self.audit_buffered.load(Ordering::Relaxed),
            audit_dropped: self.audit_dropped.load(Ordering::Relaxed),
            store_resets: self.resets.load(Ordering::Relaxed),
            fleet_override: view.fleet.state.admin_override.clone(),
            local_override: view.local.admin_override.clone(),
        }
    }
}

fn describe(id: &RevocationId) -> String {
    match id {
        RevocationId::Session(s) => format!("session {s}"),
        RevocationId::User(u) => format!("user {u}"),
        RevocationId::IssuedBefore => "the issued_before cut-off".into(),
    }
}

fn lift_id(id: &RevocationId) -> &str {
    match id {
        RevocationId::Session(s) | RevocationId::User(s) => s,
        RevocationId::IssuedBefore => "issued_before",
    }
}

impl ControlStore for RedisStore {
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let local = inner.local.clone();
            let snap = tokio::task::spawn_blocking(move || local.load())
                .await
                .map_err(|e| StoreError::Unavailable(format!("the state reader stopped: {e}")))??;
            let now = inner.clock.now_ms();
            let mut view = inner.view();
            view.local = snap.state;
            Ok(Snapshot { epoch: view.epoch, state: view.merged(now), keys: snap.keys })
        })
    }

    fn apply(&self, change: Change, audit: Option<AuditEvent>) -> BoxFuture<'_, Result<Applied, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.apply(change, audit))
                .await
                .map_err(|e| StoreError::Unavailable(format!("the state writer stopped: {e}")))?
        })
    }

    fn changes(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.events.subscribe()
    }

    fn read_audit(&self, since_ms: i64) -> BoxFuture<'_, Result<AuditLines, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let local = inner.local.clone();
            let waiting = tokio::task::spawn_blocking(move || follow::unflushed(&local))
                .await
                .map_err(|e| StoreError::Unavailable(format!("the audit reader stopped: {e}")))??;
            let mut lines = match follow::read_fleet_audit(&inner).await {
                Ok(records) => AuditLines { records, skipped: Vec::new() },
                Err(why) => {
                    // Only this gateway's own records, said so.
                    let local = inner.local.clone();
                    let mut own = tokio::task::spawn_blocking(move || local.read_audit_lines(i64::MIN))
                        .await
                        .map_err(|e| StoreError::Unavailable(format!("the audit reader stopped: {e}")))??;
                    own.skipped.push(SkippedLine {
                        line: 0,
                        why: format!("the fleet's audit stream could not be read, so these are this gateway's own records only: {why}"),
                    });
                    own.records.retain(|r| r.time_ms >= since_ms);
                    return Ok(own);
                }
            };
            lines.records.extend(waiting.records);
            lines.skipped.extend(waiting.skipped);
            lines.records.retain(|r| r.time_ms >= since_ms);
            lines.records.sort_by_key(|r| r.time_ms);
            Ok(lines)
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.local.probe()
    }

    fn location(&self) -> String {
        format!(
            "{} (fleet {:?} on {}, as gateway {:?})",
            self.inner.local.location(),
            self.inner.config.fleet,
            self.inner.config.url,
            self.inner.config.gateway_id
        )
    }

    fn fleet(&self) -> Option<FleetReport> {
        Some(self.inner.report())
    }

    fn fleet_status(&self) -> BoxFuture<'_, Result<Option<FleetStatus>, StoreError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let con = link::connect(&inner.client, link::COMMAND_TIMEOUT)
                .await
                .map_err(|e| StoreError::Unavailable(link::explain(&inner.config.url, &e)))?;
            let mut client = FleetClient::on(con, inner.names.clone(), &inner.config.url, &inner.config.gateway_id);
            let status = client.status(inner.config.heartbeat, inner.clock.now_ms()).await;
            status.map(Some).map_err(StoreError::Unavailable)
        })
    }

    fn describe_gateway(&self, facts: Arc<dyn Fn() -> GatewayFacts + Send + Sync>) {
        *self.inner.facts.lock().unwrap_or_else(PoisonError::into_inner) = Some(facts);
        self.inner.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::{Mode, ModeSource};

    fn setting(since_ms: i64, expires_at_ms: i64, source: ModeSource) -> ModeSetting {
        ModeSetting {
            mode: Mode::Bypass,
            source,
            reason: "r".into(),
            actor: "a".into(),
            since_ms,
            expires_at_ms: Some(expires_at_ms),
        }
    }

    #[test]
    fn the_newest_running_override_is_in_force() {
        let local = setting(10, 100, ModeSource::Admin);
        let fleet = setting(20, 50, ModeSource::Fleet);
        assert_eq!(in_force(Some(&local), Some(&fleet), 30), Some(fleet.clone()), "the newer one");
        assert_eq!(in_force(Some(&local), Some(&fleet), 60), Some(local.clone()), "the newer ran out: the other");
        assert_eq!(
            in_force(Some(&local), Some(&fleet), 200),
            Some(fleet.clone()),
            "none runs: the newest, to be ended"
        );
        assert_eq!(in_force(None, Some(&fleet), 30), Some(fleet));
        assert_eq!(in_force(None, None, 30), None);
    }
}
