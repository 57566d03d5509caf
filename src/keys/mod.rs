//! Signing keys: where they come from, how they are kept fresh, and how they survive outages.
//!
//! The request path only ever reads the current [`KeySet`] through one atomic load and never
//! waits on the network — except a request whose token names an unknown `kid`, which may wait
//! for one refetch bounded by `fetch_timeout` (SPEC §7). That refetch is single-flight (all
//! requests share the one fetch) and happens at most once per `unknown_kid_cooldown`, so a flood
//! of made-up kids costs the JWKS one request per window.
//!
//! A fetch replaces the set only when it succeeds with at least one usable RS256 key; every bad
//! answer (non-2xx, not JSON, empty, oversize, slow) leaves the last good set in force. A
//! successful fetch is authoritative: a key that disappears from it stops verifying at once.
//! The last good set is persisted to `state.dir/keys.json` and reloaded at start, and is
//! served until `max_stale` after the fetch that produced it.

mod jwks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

pub use crate::verifying_key::VerifyingKey;
pub use jwks::{parse_jwks, to_jwks_value, ParsedJwks};

use crate::clock::{duration_ms, Clock};
use crate::config::{Config, JwksSource, KeysConfig};
use crate::telemetry::names;

/// Largest JWKS body accepted; Clerk's is a few hundred bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// The Backend API version Clerk's SDK sends.
pub const CLERK_API_VERSION: &str = "2026-05-12";

/// The remote keys in force, by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    /// Keys by `kid`.
    pub keys: HashMap<String, Arc<VerifyingKey>>,
    /// When the fetch that produced these keys succeeded (ms since the epoch).
    pub fetched_at_ms: Option<i64>,
    /// Where the set came from.
    pub origin: KeyOrigin,
    /// The JWKS URL the keys were fetched from.
    pub url: Option<String>,
}

/// How the current key set was obtained.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyOrigin {
    /// No remote keys yet.
    #[default]
    None,
    /// Fetched from the JWKS by this process.
    Fetched,
    /// Loaded from `keys.json` at start.
    Persisted,
}

impl KeySet {
    /// The key for `kid`, if the set is within `max_stale` of its fetch.
    #[inline]
    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.keys.get(kid)
    }

    /// True when the set has keys and its fetch is younger than `max_stale`.
    pub fn usable(&self, now_ms: i64, max_stale: Duration) -> bool {
        match self.fetched_at_ms {
            Some(at) if !self.keys.is_empty() => now_ms.saturating_sub(at) < duration_ms(max_stale),
            _ => false,
        }
    }

    /// The kids, sorted.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.keys.keys().cloned().collect();
        kids.sort();
        kids
    }
}

/// Why a fetch failed. The last good key set stays in force in every case.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    /// Nothing to fetch from: only a networkless key is configured.
    #[error("no JWKS source is configured")]
    NoSource,
    /// The Backend API refused the secret key: a configuration problem, not an outage.
    #[error("the Backend API rejected the secret key (clerk_key_invalid): {0}")]
    SecretKeyInvalid(String),
    /// The JWKS could not be reached, answered an error, or answered something unusable.
    #[error("{0}")]
    Unavailable(String),
}

/// What the last fetch attempts looked like, for `/status` and `/readyz`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FetchStatus {
    /// Last attempt, ms since the epoch.
    pub last_attempt_ms: Option<i64>,
    /// Last success, ms since the epoch.
    pub last_success_ms: Option<i64>,
    /// The last error, cleared by a success.
    pub last_error: Option<String>,
    /// True when the last error was a rejected secret key.
    pub config_problem: bool,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Fetches made, all triggers.
    pub fetches: u64,
}

/// What started a fetch (a metric label).
#[derive(Debug, Clone, Copy)]
pub enum Trigger {
    /// The periodic refresh, or the retry loop while no set is usable.
    Background,
    /// A token named a `kid` the set does not hold.
    UnknownKid,
    /// `POST /keys/refresh` or `clerkgate keys refresh`.
    Admin,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Trigger::Background => "background",
            Trigger::UnknownKid => "unknown_kid",
            Trigger::Admin => "admin",
        }
    }
}

/// Fetch settings taken from the config, replaced on reload.
#[derive(Debug, Clone)]
struct Settings {
    source: Option<JwksSource>,
    keys: KeysConfig,
}

/// The key store: the current [`KeySet`] behind an atomic swap, and the fetch policy around it.
pub struct KeyStore {
    set: ArcSwap<KeySet>,
    settings: ArcSwap<Settings>,
    client: reqwest::Client,
    clock: Clock,
    persist_path: Option<PathBuf>,
    /// Held for the duration of one fetch: the single flight.
    fetch_lock: tokio::sync::Mutex<()>,
    /// When the last unknown-kid refetch started (ms since the epoch).
    last_kid_refetch_ms: AtomicI64,
    /// Kids recently looked for and not found, with when (negative memory).
    missing: Mutex<HashMap<String, i64>>,
    status: Mutex<FetchStatus>,
    /// Bumped whenever the key set changes; part of the verdict cache's epoch.
    generation: AtomicU64,
    /// Told about every key-set change (the control task audits them).
    listener: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<KeyChange>>,
}

/// A change of the key set, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChange {
    /// Kids before.
    pub before: Vec<String>,
    /// Kids after.
    pub after: Vec<String>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").field("kids", &self.set.load().kids()).finish()
    }
}

const MISSING_CAP: usize = 4096;

impl KeyStore {
    /// A store for `config`, loading `keys.json` from the state dir when it belongs to the same JWKS URL.
    pub fn new(config: &Config, clock: Clock) -> Self {
        let persist_path = Some(config.state.dir.join("keys.json"));
        let settings = Settings { source: config.clerk.jwks.clone(), keys: config.clerk.keys.clone() };
        let set = match (&persist_path, &settings.source) {
            (Some(path), Some(source)) => load_persisted(path, &source.url).unwrap_or_default(),
            _ => KeySet::default(),
        };
        let client = reqwest::Client::builder()
            .user_agent(concat!("clerkgate/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default();
        KeyStore {
            set: ArcSwap::from_pointee(set),
            settings: ArcSwap::from_pointee(settings),
            client,
            clock,
            persist_path,
            fetch_lock: tokio::sync::Mutex::new(()),
            last_kid_refetch_ms: AtomicI64::new(i64::MIN / 2),
            missing: Mutex::new(HashMap::new()),
            status: Mutex::new(FetchStatus::default()),
            generation: AtomicU64::new(0),
            listener: std::sync::OnceLock::new(),
        }
    }

    /// Sends every later key-set change to `tx`. Only the first call has an effect.
    pub fn on_change(&self, tx: tokio::sync::mpsc::UnboundedSender<KeyChange>) {
        let _ = self.listener.set(tx);
    }

    /// Applies a reloaded config's key settings. A changed JWKS URL drops the old set.
    pub fn reconfigure(&self, config: &Config) {
        let old = self.settings.load();
        let url_changed = old.source.as_ref().map(|s| &s.url) != config.clerk.jwks.as_ref().map(|s| &s.url);
        self.settings.store(Arc::new(Settings { source: config.clerk.jwks.clone(), keys: config.clerk.keys.clone() }));
        if url_changed {
            self.set.store(Arc::new(KeySet::default()));
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// The current key set (one atomic load).
    #[inline]
    pub fn current(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.set.load()
    }

    /// A number that changes whenever the key set changes.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A copy of the fetch status.
    pub fn status(&self) -> FetchStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Fetches the JWKS now (single flight with any other fetch) and returns the kids loaded.
    pub async fn refresh(&self, trigger: Trigger) -> Result<Vec<String>, FetchError> {
        let _guard = self.fetch_lock.lock().await;
        self.fetch_locked(trigger).await
    }

    /// Called by a request whose token names `kid`, which the set does not hold. Waits for at
    /// most one fetch, bounded by `fetch_timeout`, and only when the cooldown allows one (or one
    /// is already in flight). Afterwards the caller looks the kid up again.
    pub async fn refetch_for_unknown_kid(&self, kid: &str) {
        let settings = self.settings.load_full();
        if settings.source.is_none() {
            return;
        }
        let cooldown = duration_ms(settings.keys.unknown_kid_cooldown);
        let now = self.clock.now_ms();
        if self.recently_missing(kid, now, cooldown) {
            return;
        }
        match self.fetch_lock.try_lock() {
            Ok(guard) => {
                let last = self.last_kid_refetch_ms.load(Ordering::Acquire);
                if now.saturating_sub(last) < cooldown {
                    drop(guard);
                } else {
                    self.last_kid_refetch_ms.store(now, Ordering::Release);
                    let _ = self.fetch_locked(Trigger::UnknownKid).await;
                    drop(guard);
                }
            }
            Err(_) => {
                // A fetch is in flight: share it rather than start another.
                let _ = tokio::time::timeout(settings.keys.fetch_timeout, self.fetch_lock.lock()).await;
            }
        }
        if self.set.load().get(kid).is_none() {
            self.remember_missing(kid, self.clock.now_ms());
        }
    }

    fn recently_missing(&self, kid: &str, now: i64, window: i64) -> bool {
        let Ok(missing) = self.missing.lock() else {
            return false;
        };
        missing.get(kid).is_some_and(|&at| now.saturating_sub(at) < window)
    }

    fn remember_missing(&self, kid: &str, now: i64) {
        if let Ok(mut missing) = self.missing.lock() {
            if missing.len() >= MISSING_CAP {
                missing.clear();
            }
            missing.insert(kid.to_string(), now);
        }
    }

    /// Runs the background refresh until the task is dropped: every `refresh_interval`, or
    /// with backoff from about a second while no usable set is loaded.
    pub async fn run_refresher(self: Arc<Self>) {
        // Consecutive background failures; the wait before the next retry is 1 s, 2 s, 4 s, …
        // capped at refresh_interval.
        let mut failures: u32 = 0;
        loop {
            let settings = self.settings.load_full();
            if settings.source.is_none() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let usable = self.set.load().usable(self.clock.now_ms(), settings.keys.max_stale);
            let due = {
                let status = self.status();
                let interval = duration_ms(settings.keys.refresh_interval);
                match status.last_attempt_ms {
                    None => true,
                    Some(at) if usable && status.last_error.is_none() => self.clock.now_ms() - at >= interval,
                    Some(at) => {
                        let backoff = Duration::from_secs(1u64 << failures.saturating_sub(1).min(16));
                        self.clock.now_ms() - at >= duration_ms(backoff.min(settings.keys.refresh_interval))
                    }
                }
            };
            if due {
                match self.refresh(Trigger::Background).await {
                    Ok(_) => failures = 0,
                    Err(_) => failures = failures.saturating_add(1),
                }
            }
            self.export_gauges();
            tokio::time::sleep(Duration::from_millis(250).min(settings.keys.refresh_interval)).await;
        }
    }

    fn export_gauges(&self) {
        let set = self.set.load();
        metrics::gauge!(names::JWKS_KEYS).set(set.keys.len() as f64);
        if let Some(at) = set.fetched_at_ms {
            metrics::gauge!(names::JWKS_AGE).set((self.clock.now_ms() - at) as f64 / 1000.0);
        }
    }

    async fn fetch_locked(&self, trigger: Trigger) -> Result<Vec<String>, FetchError> {
        let settings = self.settings.load_full();
        let Some(source) = settings.source.clone() else {
            return Err(FetchError::NoSource);
        };
        let started = self.clock.now_ms();
        let result =
            tokio::time::timeout(settings.keys.fetch_timeout, self.fetch_once(&source)).await.unwrap_or_else(|_| {
                Err(FetchError::Unavailable(format!(
                    "no answer from {} within {}",
                    source.url,
                    humantime::format_duration(settings.keys.fetch_timeout)
                )))
            });
        let mut status = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        status.last_attempt_ms = Some(started);
        status.fetches += 1;
        let outcome = match result {
            Ok(parsed) => {
                for line in &parsed.skipped {
                    tracing::warn!(url = %source.url, "skipped a JWKS key: {line}");
                }
                let now = self.clock.now_ms();
                let changed = self.apply(parsed.keys, now, &source.url);
                status.last_success_ms = Some(now);
                status.last_error = None;
                status.config_problem = false;
                status.consecutive_failures = 0;
                metrics::counter!(names::JWKS_FETCHES, "result" => if changed { "ok" } else { "unchanged" }, "trigger" => trigger.label()).increment(1);
                Ok(self.set.load().kids())
            }
            Err(e) => {
                tracing::warn!(url = %source.url, error = %e, trigger = trigger.label(), "JWKS fetch failed; keeping the last good key set");
                status.last_error = Some(e.to_string());
                status.config_problem = matches!(e, FetchError::SecretKeyInvalid(_));
                status.consecutive_failures += 1;
                metrics::counter!(names::JWKS_FETCHES, "result" => "error", "trigger" => trigger.label()).increment(1);
                Err(e)
            }
        };
        if let Ok(mut s) = self.status.lock() {
            *s = status;
        }
        self.export_gauges();
        outcome
    }

    async fn fetch_once(&self, source: &JwksSource) -> Result<ParsedJwks, FetchError> {
        let mut req = self
            .client
            .get(&source.url)
            .header("Clerk-API-Version", CLERK_API_VERSION)
            .header("Accept", "application/json");
        if let Some(bearer) = &source.bearer {
            req = req.bearer_auth(bearer.expose());
        }
        let mut resp =
            req.send().await.map_err(|e| FetchError::Unavailable(format!("cannot reach {}: {e}", source.url)))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) =
            resp.chunk().await.map_err(|e| FetchError::Unavailable(format!("reading {}: {e}", source.url)))?
        {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(FetchError::Unavailable(format!(
                    "{} answered more than {MAX_JWKS_BYTES} bytes",
                    source.url
                )));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            if let Some(message) = clerk_key_invalid(&body) {
                return Err(FetchError::SecretKeyInvalid(message));
            }
            return Err(FetchError::Unavailable(format!(
                "Error loading Clerk JWKS from {} with code={}",
                source.url,
                status.as_u16()
            )));
        }
        parse_jwks(&body).map_err(|e| FetchError::Unavailable(format!("{}: {e}", source.url)))
    }

    /// Installs a key set as a successful fetch at `fetched_at_ms` would (persisting it too).
    /// For benches and property tests that need a known set without a JWKS server.
    pub fn install(&self, keys: HashMap<String, Arc<VerifyingKey>>, fetched_at_ms: i64) -> bool {
        let url = self.settings.load().source.as_ref().map(|s| s.url.clone()).unwrap_or_default();
        self.apply(keys, fetched_at_ms, &url)
    }

    /// Installs a fetched set. Returns whether the kids or keys changed.
    fn apply(&self, keys: HashMap<String, Arc<VerifyingKey>>, now: i64, url: &str) -> bool {
        let old = self.set.load();
        let changed = old.keys.len() != keys.len()
            || keys.iter().any(|(kid, k)| old.keys.get(kid).is_none_or(|o| o.n != k.n || o.e != k.e));
        let set = KeySet { keys, fetched_at_ms: Some(now), origin: KeyOrigin::Fetched, url: Some(url.to_string()) };
        if let Some(path) = &self.persist_path {
            if let Err(e) = persist(path, &set) {
                tracing::warn!(path = %path.display(), error = %e, "could not persist the key set");
            }
        }
        let before = old.kids();
        self.set.store(Arc::new(set));
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
            let after = self.set.load().kids();
            tracing::info!(?before, ?after, "key set changed");
            if let Some(tx) = self.listener.get() {
                let _ = tx.send(KeyChange { before, after });
            }
        }
        changed
    }
}

fn clerk_key_invalid(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let errors = v.get("errors")?.as_array()?;
    errors.iter().find(|e| e.get("code").and_then(|c| c.as_str()) == Some("clerk_key_invalid")).map(|e| {
        e.get("long_message")
            .or_else(|| e.get("message"))
            .and_then(|m| m.as_str())
            .unwrap_or("secret key invalid")
            .to_string()
    })
}

#[derive(Serialize, Deserialize)]
struct PersistedKeys {
    url: String,
    fetched_at_ms: i64,
    jwks: serde_json::Value,
}

/// Writes the set atomically: a temporary file, fsync, rename, fsync of the directory.
fn persist(path: &Path, set: &KeySet) -> std::io::Result<()> {
    let doc = PersistedKeys {
        url: set.url.clone().unwrap_or_default(),
        fetched_at_ms: set.fetched_at_ms.unwrap_or_default(),
        jwks: to_jwks_value(&set.keys),
    };
    let bytes = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(path, &bytes)
}

fn load_persisted(path: &Path, url: &str) -> Option<KeySet> {
    let bytes = std::fs::read(path).ok()?;
    let doc: PersistedKeys = match serde_json::from_slice(&bytes) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable keys.json");
            return None;
        }
    };
    if doc.url != url {
        tracing::info!(path = %path.display(), "keys.json belongs to another JWKS URL; not using it");
        return None;
    }
    let parsed = parse_jwks(doc.jwks.to_string().as_bytes()).ok()?;
    Some(KeySet {
        keys: parsed.keys,
        fetched_at_ms: Some(doc.fetched_at_ms),
        origin: KeyOrigin::Persisted,
        url: Some(doc.url),
    })
}

#[cfg(test)]
mod tests;
