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
//! The set is served until `max_stale` after the fetch that produced it.
//!
//! The key store fetches; it does not decide alone what is in force. A fetched set goes to the
//! control task ([`KeyInstall`]), which records it through the state store — `keys.json`, and
//! an audit line when its keys changed — off the async runtime, then puts it in force. One
//! exception: a set fetched because a request named an unknown `kid` goes in force at once and
//! is recorded right after, so that request never waits for a disk. A restart starts from the
//! saved set ([`KeyStore::restore`]).

mod jwks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use crate::verifying_key::VerifyingKey;
pub use jwks::{parse_jwks, to_jwks_value, ParsedJwks};

use crate::clerk_api::{self, ErrorBody, ErrorKind};
use crate::clock::{duration_ms, Clock};
use crate::config::{Config, JwksSource, KeysConfig, Secret};
use crate::telemetry::names;

/// Largest JWKS body accepted; Clerk's is a few hundred bytes.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
pub use crate::clerk_api::CLERK_API_VERSION;

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

    /// True when `keys` holds exactly these kids with exactly these keys.
    pub fn same_keys(&self, keys: &HashMap<String, Arc<VerifyingKey>>) -> bool {
        self.keys.len() == keys.len()
            && keys.iter().all(|(kid, k)| self.keys.get(kid).is_some_and(|o| o.n == k.n && o.e == k.e))
    }

    /// The set in the form `keys.json` holds.
    pub fn stored(&self) -> StoredKeys {
        StoredKeys {
            url: self.url.clone().unwrap_or_default(),
            fetched_at_ms: self.fetched_at_ms.unwrap_or_default(),
            jwks: to_jwks_value(&self.keys),
        }
    }
}

/// A key set as saved (`keys.json`): the JWKS it came from, when, and the keys as a JWKS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredKeys {
    /// The JWKS URL.
    pub url: String,
    /// When the fetch succeeded, ms since the epoch.
    pub fetched_at_ms: i64,
    /// The keys, as a JWKS document.
    pub jwks: serde_json::Value,
}

impl StoredKeys {
    /// The saved set, when it belongs to the JWKS at `url` and still parses.
    fn restore(self, url: &str) -> Option<KeySet> {
        if self.url != url {
            tracing::info!("the saved key set belongs to another JWKS URL; not using it");
            return None;
        }
        let parsed = parse_jwks(self.jwks.to_string().as_bytes()).ok()?;
        Some(KeySet {
            keys: parsed.keys,
            fetched_at_ms: Some(self.fetched_at_ms),
            origin: KeyOrigin::Persisted,
            url: Some(self.url),
        })
    }
}

/// A fetched key set on its way to the control task.
#[derive(Debug)]
pub struct KeyInstall {
    /// The set, as fetched.
    pub set: KeySet,
    /// True when a request is waiting for it (an unknown `kid`): it goes in force at once and
    /// is recorded right after. Otherwise it is recorded (saved, and audited when its keys
    /// changed) first, like every other change.
    pub urgent: bool,
    /// Answered when the set is in force, or with why it is not.
    pub reply: oneshot::Sender<Result<(), InstallError>>,
}

/// Why a fetched set is not in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstallError {
    /// The JWKS URL changed (a reload) while the set was being fetched; the set was dropped.
    #[error("the JWKS URL changed while the keys were fetched; the fetched set was dropped")]
    SourceChanged,
    /// Saving or auditing the set failed, so the last good set stays.
    #[error("the fetched key set could not be recorded, so the last good set stays: {0}")]
    NotRecorded(String),
    /// No control task is running (shutting down).
    #[error("the gateway is shutting down")]
    Closed,
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
    /// The fetch succeeded but the set could not be put in force.
    #[error("{0}")]
    Install(InstallError),
}

/// What the Backend API said about a secret key ([`KeyStore::check_secret_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretKeyCheck {
    /// 200 with a JWKS: the key works.
    Accepted,
    /// 401 or 403: the key is wrong or deleted; what Clerk said.
    Rejected(String),
    /// No verdict: unreachable, a timeout, a 5xx or an answer that is not a JWKS; why.
    Unchecked(String),
}

impl SecretKeyCheck {
    /// The metric label.
    pub fn label(&self) -> &'static str {
        match self {
            SecretKeyCheck::Accepted => "accepted",
            SecretKeyCheck::Rejected(_) => "rejected",
            SecretKeyCheck::Unchecked(_) => "unchecked",
        }
    }
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
    /// Held for the duration of one fetch: the single flight.
    fetch_lock: tokio::sync::Mutex<()>,
    /// When the last unknown-kid refetch started (ms since the epoch).
    last_kid_refetch_ms: AtomicI64,
    /// Kids recently looked for and not found, with when (negative memory).
    missing: Mutex<HashMap<String, i64>>,
    status: Mutex<FetchStatus>,
    /// Bumped whenever the key set changes; part of the verdict cache's epoch.
    generation: AtomicU64,
    /// Where fetched sets go: the control task.
    installer: std::sync::OnceLock<mpsc::Sender<KeyInstall>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore").field("kids", &self.set.load().kids()).finish()
    }
}

const MISSING_CAP: usize = 4096;

impl KeyStore {
    /// A store for `config` with no keys yet.
    pub fn new(config: &Config, clock: Clock) -> Self {
        Self::restore(config, clock, None)
    }

    /// A store for `config` starting from a saved set, when it belongs to the same JWKS URL.
    pub fn restore(config: &Config, clock: Clock, saved: Option<StoredKeys>) -> Self {
        let settings = Settings { source: config.clerk.jwks.clone(), keys: config.clerk.keys.clone() };
        let set = match (saved, &settings.source) {
            (Some(saved), Some(source)) => saved.restore(&source.url).unwrap_or_default(),
            _ => KeySet::default(),
        };
        // Present from the start, networkless key or not, so a dashboard never sees it missing.
        metrics::gauge!(names::JWKS_KEYS).set(set.keys.len() as f64);
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
            fetch_lock: tokio::sync::Mutex::new(()),
            last_kid_refetch_ms: AtomicI64::new(i64::MIN / 2),
            missing: Mutex::new(HashMap::new()),
            status: Mutex::new(FetchStatus::default()),
            generation: AtomicU64::new(0),
            installer: std::sync::OnceLock::new(),
        }
    }

    /// Sends every fetched set to `tx` (the control task) to be installed. Only the first call
    /// has an effect; until then a fetch has nowhere to go and fails.
    pub fn send_fetched_sets_to(&self, tx: mpsc::Sender<KeyInstall>) {
        let _ = self.installer.set(tx);
    }

    /// True when `url` is the JWKS the settings name (a fetched set from elsewhere is stale).
    pub fn is_source(&self, url: &str) -> bool {
        self.settings.load().source.as_ref().is_some_and(|s| s.url == url)
    }

    /// Applies a reloaded config's key settings. A changed JWKS URL drops the old set. Called
    /// by the control task.
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
        let installed = match result {
            Ok(parsed) => {
                for line in &parsed.skipped {
                    tracing::warn!(url = %source.url, "skipped a JWKS key: {line}");
                }
                let now = self.clock.now_ms();
                let set = KeySet {
                    keys: parsed.keys,
                    fetched_at_ms: Some(now),
                    origin: KeyOrigin::Fetched,
                    url: Some(source.url.clone()),
                };
                let changed = !self.set.load().same_keys(&set.keys);
                let urgent = matches!(trigger, Trigger::UnknownKid);
                self.hand_over(set, urgent).await.map(|()| (now, changed)).map_err(FetchError::Install)
            }
            Err(e) => Err(e),
        };
        let mut status = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        status.last_attempt_ms = Some(started);
        status.fetches += 1;
        let outcome = match installed {
            Ok((now, changed)) => {
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
        let (status, body) = self.get_jwks(source).await?;
        if !status.is_success() {
            let error = ErrorBody::parse(&body);
            if error.has_code("clerk_key_invalid") {
                return Err(FetchError::SecretKeyInvalid(error.summary()));
            }
            return Err(FetchError::Unavailable(format!(
                "Error loading Clerk JWKS from {} with code={}",
                source.url,
                status.as_u16()
            )));
        }
        parse_jwks(&body).map_err(|e| FetchError::Unavailable(format!("{}: {e}", source.url)))
    }

    /// One GET of `source`, with its bearer: the status and the body (at most
    /// [`MAX_JWKS_BYTES`]).
    async fn get_jwks(&self, source: &JwksSource) -> Result<(reqwest::StatusCode, Vec<u8>), FetchError> {
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
        Ok((status, body))
    }

    /// Asks the Backend API at `api_url` whether it takes `secret_key`, as `clerkgate keys
    /// check` does: `GET {api_url}/v1/jwks` with the key, through the one Backend API client,
    /// tried once and bounded by `timeout`. The control task asks before a reload puts a new
    /// secret key in force.
    pub async fn check_secret_key(&self, api_url: &str, secret_key: &Secret, timeout: Duration) -> SecretKeyCheck {
        let settings =
            clerk_api::Settings { timeout, attempts: 1, ..clerk_api::Settings::new(api_url, secret_key.clone()) };
        let client = match clerk_api::Client::new(settings) {
            Ok(c) => c,
            Err(e) => return SecretKeyCheck::Unchecked(e),
        };
        let url = format!("{}/v1/jwks", client.settings().api_url);
        match tokio::time::timeout(timeout, client.jwks()).await {
            Err(_) => SecretKeyCheck::Unchecked(format!(
                "no answer from {url} within {}",
                humantime::format_duration(timeout)
            )),
            Ok(Ok(jwks)) => match parse_jwks(&jwks.body) {
                Ok(_) => SecretKeyCheck::Accepted,
                Err(e) => SecretKeyCheck::Unchecked(format!("{url} answered without a usable JWKS: {e}")),
            },
            Ok(Err(e)) if matches!(e.kind, ErrorKind::Credential | ErrorKind::Forbidden) => {
                SecretKeyCheck::Rejected(format!("{} {}", e.status.unwrap_or_default(), e.detail))
            }
            Ok(Err(e)) => SecretKeyCheck::Unchecked(e.to_string()),
        }
    }

    /// Hands a fetched set to the control task and waits until it is in force (and, unless
    /// `urgent`, recorded first).
    async fn hand_over(&self, set: KeySet, urgent: bool) -> Result<(), InstallError> {
        let installer = self.installer.get().ok_or(InstallError::Closed)?;
        let (reply, answer) = oneshot::channel();
        installer.send(KeyInstall { set, urgent, reply }).await.map_err(|_| InstallError::Closed)?;
        answer.await.map_err(|_| InstallError::Closed)?
    }

    /// Puts `set` in force. Returns whether the kids or keys changed. Only the control task
    /// calls this in a running gateway.
    pub fn put(&self, set: KeySet) -> bool {
        let changed = !self.set.load().same_keys(&set.keys);
        self.set.store(Arc::new(set));
        if changed {
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        changed
    }

    /// Puts a set in force as a fetch from the configured JWKS at `fetched_at_ms` would. For
    /// benches and unit tests that run without a control task or a JWKS server.
    pub fn install(&self, keys: HashMap<String, Arc<VerifyingKey>>, fetched_at_ms: i64) -> bool {
        let url = self.settings.load().source.as_ref().map(|s| s.url.clone());
        self.put(KeySet { keys, fetched_at_ms: Some(fetched_at_ms), origin: KeyOrigin::Fetched, url })
    }
}

#[cfg(test)]
mod tests;
