//! The gate: what the auth layer reads and the steps it takes for each request.
//!
//! [`Gate::admit`] runs the steps in order — prepare the head ([`facts::prepare`]), read the
//! facts ([`RequestFacts::read`]), [`decide`], then apply the decision to the head (identity
//! headers and tags) and count and log it. Only the first and the last touch the request; the
//! decision in between is a value.
//!
//! The gate is also the decision's [`Signatures`]: the verdict cache, then the keys, under an
//! [`Epoch`] of exactly what the cached stage depends on.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::HeaderValue;
use serde_json::{Map, Value};

use super::backend::{BackendApi, Resumed};
use super::bypass_log::{BypassLog, Note, SUMMARY_EVERY_MS};
use super::cache::{Epoch, VerdictCache, VerificationGenerations};
use super::counters::{Counters, OutcomeCounts};
use super::decide::{decide, AuthStatus, Decision, Forward, Signatures, Snapshot, Unsigned};
use super::facts::{self, RequestFacts};
use super::handshake::HANDSHAKE_PARAMS;
use super::public_url::{parse_query, serialize_query};
use super::verify::{self, Carrier, Policy, Refusal, Verified};
use crate::clock::{duration_ms, Clock};
use crate::config::Config;
use crate::headers::names;
use crate::keys::{KeySet, KeyStore};
use crate::mode::{Mode, ModeSetting};
use crate::reason::{Failure, Reason};
use crate::revocation::Revocations;
use crate::state::Shared;
use crate::webhooks::Journal;

/// Marks a request whose Svix signature the gateway verified (`X-Clerk-Webhook-Verified: true`;
/// the name is in the reserved `X-Clerk-` space, so no client can send it).
pub const WEBHOOK_VERIFIED: http::HeaderName = http::HeaderName::from_static("x-clerk-webhook-verified");

/// Marks a webhook the gateway re-delivered from its journal (`X-Clerk-Webhook-Replay: true`),
/// re-signed with `clerk.upstream_webhook_secret`; reserved like the header above.
pub const WEBHOOK_REPLAY: http::HeaderName = http::HeaderName::from_static("x-clerk-webhook-replay");

/// Everything the auth layer reads: runtime snapshot, keys, verdict cache, revocations, clock.
pub struct Gate {
    /// The runtime snapshot holder.
    pub shared: Arc<Shared>,
    /// The key store.
    pub keys: Arc<KeyStore>,
    /// The verdict cache.
    pub cache: VerdictCache,
    /// Revocations in force.
    pub revocations: Arc<Revocations>,
    /// The clock that decides token times and mode expiry.
    pub clock: Clock,
    /// The Backend API client of the browser flow (handshake payload, refresh).
    pub backend: BackendApi,
    /// The journal verified webhooks are written to before they are forwarded; without one
    /// (unit tests) they are forwarded unjournalled.
    pub webhooks: Option<Arc<Journal>>,
    verification: VerificationGenerations,
    counters: Counters,
    bypass_log: BypassLog,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

impl Gate {
    /// A gate over the given shared state.
    pub fn new(shared: Arc<Shared>, keys: Arc<KeyStore>, revocations: Arc<Revocations>, clock: Clock) -> Self {
        crate::telemetry::metrics_handle();
        let config = shared.load().config.clone();
        Gate {
            cache: VerdictCache::new(config.clerk.verdict_cache_entries),
            verification: VerificationGenerations::new(config),
            shared,
            keys,
            revocations,
            clock,
            backend: BackendApi::new(),
            webhooks: None,
            counters: Counters::new(),
            bypass_log: BypassLog::default(),
        }
    }

    /// The same gate, journalling verified webhooks in `journal`.
    pub fn with_journal(mut self, journal: Arc<Journal>) -> Self {
        self.webhooks = Some(journal);
        self
    }

    /// Request outcomes counted since start.
    pub fn outcome_counts(&self) -> OutcomeCounts {
        self.counters.snapshot()
    }

    /// Decides for one request and applies the decision to its head: reserved headers
    /// stripped, an allowed upgrade kept as a [`crate::headers::RequestedUpgrade`]
    /// extension, the path normalised, identity headers and tags set. `refetched` is true on
    /// the second pass after a key refetch, when an unknown `kid` is final.
    pub fn admit(&self, parts: &mut Parts, refetched: bool) -> Decision {
        self.admit_resumed(parts, &Resumed { refetched, ..Resumed::first() })
    }

    /// [`Gate::admit`] after the waits that `resumed` records (a key refetch, Backend API
    /// answers).
    pub fn admit_resumed(&self, parts: &mut Parts, resumed: &Resumed) -> Decision {
        let rt = self.shared.load();
        let now_ms = self.clock.now_ms();
        let mode = rt.mode_at(now_ms);
        let decision = match facts::prepare(parts, &rt.config) {
            Err(refused) => Decision::Answer(refused.answer(false)),
            Ok(routed) => {
                let facts = RequestFacts::read(parts, routed, mode, &rt.config, now_ms, resumed);
                let signatures = self.signatures(&rt.config, now_ms);
                let snapshot =
                    Snapshot { config: &rt.config, now_ms, revocations: &self.revocations, signatures: &signatures };
                decide(&facts, &snapshot)
            }
        };
        self.apply(parts, &decision, mode, now_ms);
        if matches!(decision, Decision::Forward(_)) && rt.config.clerk.publishable_key.is_some() {
            strip_handshake_params(parts);
        }
        decision
    }

    /// The decision for a `webhook = "clerk"` route once its body is read (`None`: it could
    /// not be, or was over the limit), applied to the head.
    pub fn admit_webhook(&self, parts: &mut Parts, body: Option<&Bytes>) -> Decision {
        let rt = self.shared.load();
        let now_ms = self.clock.now_ms();
        let clerk = &rt.config.clerk;
        let verified = match body {
            None => Err("The webhook body could not be read or is over 1 MiB.".to_string()),
            Some(bytes) => {
                let secrets = clerk.webhook_signing_secrets.iter().map(|s| s.expose());
                super::webhook::verify(secrets, &parts.headers, bytes, now_ms.div_euclid(1000))
                    .map_err(|message| format!("Unable to verify incoming webhook: {message}"))
                    .map(|v| (v, bytes))
            }
        };
        let decision = match verified {
            Ok((delivery, bytes)) => {
                parts.headers.insert(WEBHOOK_VERIFIED, HeaderValue::from_static("true"));
                // The upstream may verify with the gateway's secret alone, live and replayed.
                if let Some(secret) = &clerk.upstream_webhook_secret {
                    add_signature(parts, secret.expose(), &delivery, bytes);
                }
                parts.extensions.insert(delivery);
                Decision::Forward(Forward::new(AuthStatus::SignedOut, None))
            }
            Err(message) => {
                if let Some(journal) = &self.webhooks {
                    journal.refused(now_ms);
                }
                Decision::Answer(Failure::new(Reason::WebhookInvalid, message).answer(false))
            }
        };
        self.apply(parts, &decision, rt.mode_at(now_ms), now_ms);
        decision
    }

    /// The signed stage as the decision sees it: the verdict cache, then the keys, under
    /// `config` at `now_ms`.
    pub fn signatures<'a>(&'a self, config: &'a Arc<Config>, now_ms: i64) -> impl Signatures + 'a {
        SignedStage { gate: self, config, now_ms }
    }

    /// Writes a decision into the head, counts it, and notes bypass in the log.
    fn apply(&self, parts: &mut Parts, decision: &Decision, mode: &ModeSetting, now_ms: i64) {
        match decision {
            Decision::Forward(forward) => {
                set_identity(parts, forward);
                self.counters.forwarded(forward.status, &self.shared.outcomes, now_ms);
                if let Some(note) = forward.note {
                    static NOTES: crate::telemetry::Throttle = crate::telemetry::Throttle::per_second();
                    if let Some(held_back) = NOTES.admit() {
                        tracing::warn!(path = parts.uri.path(), held_back, "{note}");
                    }
                }
                if forward.status == AuthStatus::Bypass {
                    let note = self.bypass_log.forwarded(mode.since_ms, now_ms, forward.identity.is_some());
                    log_bypassed(parts, forward, mode, note);
                    return;
                }
            }
            Decision::Answer(answer) => self.counters.rejected(answer.reason(), &self.shared.outcomes, now_ms),
            Decision::NeedKid(_) | Decision::VerifyWebhook | Decision::Call(_) => return,
        }
        // Only the end of bypass closes its summary: a request refused or enforced while
        // bypass is still in force (a `bypass = "never"` route, a 405) does not.
        if mode.mode != Mode::Bypass {
            if let Some(note) = self.bypass_log.not_bypassed(now_ms) {
                log_bypass_note(note, mode);
            }
        }
    }

    /// The signed stage without the cache.
    fn verify_uncached(
        &self,
        token: &str,
        carrier: Carrier,
        config: &Config,
        now_ms: i64,
        refetched: bool,
    ) -> Result<Verified, Unsigned> {
        let clerk = &config.clerk;
        let set = self.keys.current();
        let remote = self.usable_remote(&set, config, now_ms);
        let policy = Policy {
            authorized_parties: &clerk.authorized_parties,
            issuer: clerk.issuer.as_deref(),
            skew_ms: duration_ms(clerk.clock_skew),
        };
        verify::verify_signed(token, carrier, remote, clerk.jwt_key.as_ref(), &policy)
            .map_err(|r| unsigned(r, carrier, refetched))
    }

    /// The remote key set when it is configured and usable.
    fn usable_remote<'k>(&self, set: &'k KeySet, config: &Config, now_ms: i64) -> Option<&'k KeySet> {
        let clerk = &config.clerk;
        (clerk.jwks.is_some() && set.usable(now_ms, clerk.keys.max_stale)).then_some(set)
    }
}

/// What a refusal of the signed stage means to the decision.
fn unsigned(refusal: Refusal, carrier: Carrier, refetched: bool) -> Unsigned {
    match refusal {
        Refusal::Failed(f) => Unsigned::Failed(f),
        Refusal::UnknownKid(kid) if !refetched => Unsigned::NeedKid(kid),
        Refusal::UnknownKid(kid) => Unsigned::Failed(verify::kid_mismatch(&kid, carrier)),
        Refusal::NoKeys => Unsigned::Failed(Failure::new(
            Reason::JwksUnavailable,
            "No usable signing keys are loaded: the JWKS has not answered yet, or the last good keys are older than clerk.keys.max_stale.",
        )),
    }
}

/// Removes the handshake's query parameters (`__clerk_handshake`, `__clerk_handshake_nonce`,
/// `__clerk_help`, `__clerk_db_jwt`) from a request about to be forwarded: they carry session
/// cookies and never reach the upstream. Any other parameter stays; the query is rewritten only
/// when one was there.
fn strip_handshake_params(parts: &mut Parts) {
    let Some(query) = parts.uri.query() else { return };
    if !query.contains("clerk") && !query.contains('%') {
        return;
    }
    let pairs = parse_query(query);
    if !pairs.iter().any(|(k, _)| HANDSHAKE_PARAMS.contains(&k.as_str())) {
        return;
    }
    let kept: Vec<(String, String)> =
        pairs.into_iter().filter(|(k, _)| !HANDSHAKE_PARAMS.contains(&k.as_str())).collect();
    let kept = serialize_query(&kept);
    let path_and_query =
        if kept.is_empty() { parts.uri.path().to_string() } else { format!("{}?{kept}", parts.uri.path()) };
    let mut uri = parts.uri.clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        uri.path_and_query = Some(pq);
    }
    if let Ok(uri) = http::Uri::from_parts(uri) {
        parts.uri = uri;
    }
}

/// The signed stage for one request: the verdict cache, else the keys.
struct SignedStage<'a> {
    gate: &'a Gate,
    config: &'a Arc<Config>,
    now_ms: i64,
}

impl Signatures for SignedStage<'_> {
    fn verify(&self, token: &str, carrier: Carrier, refetched: bool) -> Result<Arc<Verified>, Unsigned> {
        let Self { gate, config, now_ms } = *self;
        let clerk = &config.clerk;
        // A cached verdict stands only while the keys that produced it are still usable: past
        // max_stale a fresh verification answers 503, and so must a cache hit.
        let stale = clerk.jwks.is_some() && !gate.keys.current().usable(now_ms, clerk.keys.max_stale);
        let epoch = Epoch { keys: gate.keys.generation(), verification: gate.verification.of(config) };
        if let Some(v) = (!stale).then(|| gate.cache.get(token, epoch)).flatten() {
            gate.counters.cache_hit.inc();
            return Ok(v);
        }
        gate.counters.cache_miss.inc();
        let v = Arc::new(gate.verify_uncached(token, carrier, config, now_ms, refetched)?);
        // A verdict reached while the remote keys are stale (through the networkless key) is
        // not remembered: once the keys are usable again a fresh check may differ.
        if !stale {
            gate.cache.insert(token, epoch, v.clone());
        }
        Ok(v)
    }

    fn verify_handshake(&self, token: &str, refetched: bool) -> Result<Map<String, Value>, Unsigned> {
        let Self { gate, config, now_ms } = *self;
        let set = gate.keys.current();
        let remote = gate.usable_remote(&set, config, now_ms);
        verify::verify_handshake(token, remote, config.clerk.jwt_key.as_ref())
            .map_err(|r| unsigned(r, Carrier::Cookie, refetched))
    }
}

/// Adds a `v1` entry signed with the upstream's secret to the delivery's `svix-signature`, after
/// Clerk's own.
fn add_signature(parts: &mut Parts, secret: &str, delivery: &super::webhook::Verified, body: &[u8]) {
    let Some(ours) = crate::webhooks::svix::sign(secret, &delivery.id, delivery.timestamp_s, body) else { return };
    let theirs = parts.headers.get("svix-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Ok(v) = HeaderValue::from_str(format!("{} {ours}", theirs.trim()).trim()) {
        parts.headers.insert("svix-signature", v);
    }
}

/// Sets `X-Clerk-Auth-Status` (and the [`AuthStatus`] extension), the identity headers of a
/// verified token, and the mode's tag.
fn set_identity(parts: &mut Parts, forward: &Forward) {
    let h = &mut parts.headers;
    h.insert(names::AUTH_STATUS, HeaderValue::from_static(forward.status.as_str()));
    parts.extensions.insert(forward.status);
    match forward.status {
        AuthStatus::Bypass => {
            h.insert(names::AUTH_BYPASS, HeaderValue::from_static("true"));
        }
        AuthStatus::Grace => {
            h.insert(names::AUTH_DEGRADED, HeaderValue::from_static("grace"));
        }
        AuthStatus::SignedIn | AuthStatus::SignedOut => {}
    }
    let Some(v) = &forward.identity else { return };
    let id = &v.identity;
    h.insert(names::USER_ID, id.user_id.clone());
    for (name, value) in [
        (names::SESSION_ID, &id.session_id),
        (names::ORG_ID, &id.org_id),
        (names::ORG_SLUG, &id.org_slug),
        (names::ORG_ROLE, &id.org_role),
        (names::ORG_PERMISSIONS, &id.org_permissions),
        (names::ACTOR, &id.actor),
    ] {
        if let Some(value) = value {
            h.insert(name, value.clone());
        }
    }
}

/// One bypassed request: at DEBUG always, and the bypass log's line when one is due.
fn log_bypassed(parts: &Parts, forward: &Forward, mode: &ModeSetting, note: Option<Note>) {
    let user_id = forward.identity.as_ref().map(|v| v.claims.user_id.as_str());
    let (method, path) = (parts.method.as_str(), parts.uri.path());
    tracing::debug!(target: "clerkgate::bypass", method, path, user_id, "request forwarded under bypass");
    if let Some(Note::Started { earlier }) = note {
        tracing::warn!(
            target: "clerkgate::bypass",
            source = ?mode.source,
            reason = %mode.reason,
            actor = %mode.actor,
            expires_at_ms = mode.expires_at_ms,
            method,
            path,
            user_id,
            earlier,
            "bypass in force: requests are forwarded without enforcement, starting with this one; \
             a summary follows at most every {}s while it lasts",
            SUMMARY_EVERY_MS / 1000
        );
    } else if let Some(note) = note {
        log_bypass_note(note, mode);
    }
}

fn log_bypass_note(note: Note, mode: &ModeSetting) {
    let Note::Summary { forwarded, with_identity, over_ms, ended } = note else { return };
    let seconds = over_ms / 1000;
    if ended {
        tracing::warn!(
            target: "clerkgate::bypass",
            forwarded,
            with_identity,
            seconds,
            mode = %mode.mode,
            "bypass over: requests forwarded under bypass since the last bypass line"
        );
    } else {
        tracing::warn!(
            target: "clerkgate::bypass",
            forwarded,
            with_identity,
            seconds,
            reason = %mode.reason,
            "bypass continues: requests forwarded under bypass since the last bypass line"
        );
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
