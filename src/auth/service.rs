//! The auth layer: a tower [`Layer`] whose service decides, per request, whether to forward it
//! (and with which identity) or to answer it directly.
//!
//! Per request, in this order (SPEC §3): refuse `CONNECT` and `TRACE` (405, in every mode) →
//! strip reserved, routing-override and hop-by-hop headers (keeping only an allowed upgrade) →
//! check `Host` → normalise the path and find the route → read the mode → find the token →
//! verify (cache, then keys) → authorise → forward with identity headers, or answer.
//!
//! The decision is synchronous and never awaits anything, with one exception: a token whose
//! `kid` is not in the key set may wait for one single-flight refetch, bounded by
//! `fetch_timeout` (see [`crate::keys`]). Only that path allocates a boxed future.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn demo(gate: Arc<clerkgate::auth::Gate>) {
//! use tower::ServiceBuilder;
//! let svc = ServiceBuilder::new()
//!     .layer(clerkgate::auth::AuthLayer::new(gate))
//!     .service_fn(|req: http::Request<axum::body::Body>| async move {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
//!     });
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response};
use metrics::Counter;
use tower::{Layer, Service};

use super::cache::{Epoch, VerdictCache};
use super::has::has_role_and_permission;
use super::token::{self, Found};
use super::verify::{self, Carrier, Policy, Refusal, TimeVerdict, Verified};
use crate::answer;
use crate::clock::{duration_ms, Clock};
use crate::headers::{self, names, AuthStatus};
use crate::keys::KeyStore;
use crate::mode::Mode;
use crate::reason::{Failure, Reason};
use crate::revocation::Revocations;
use crate::routes::{self, Route};
use crate::state::Shared;
use crate::telemetry::names as metric;

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
    counters: Counters,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

/// One counter, exported to Prometheus and readable for `/status`.
struct Count {
    metric: Counter,
    local: AtomicU64,
}

impl Count {
    fn new(metric: Counter) -> Self {
        Count { metric, local: AtomicU64::new(0) }
    }

    #[inline]
    fn inc(&self) {
        self.metric.increment(1);
        self.local.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.local.load(Ordering::Relaxed)
    }
}

/// Metric handles resolved once, so the request path does not look labels up.
struct Counters {
    signed_in: Count,
    signed_out: Count,
    bypass: Count,
    grace: Count,
    rejected: Vec<(Reason, Count)>,
    bypassed: Counter,
    grace_accepted: Counter,
    cache_hit: Count,
    cache_miss: Count,
}

impl Counters {
    fn new() -> Self {
        let ok = |outcome: &'static str| {
            Count::new(metrics::counter!(metric::REQUESTS, "outcome" => outcome, "reason" => "none"))
        };
        Counters {
            signed_in: ok(metric::outcome::SIGNED_IN),
            signed_out: ok(metric::outcome::SIGNED_OUT),
            bypass: ok(metric::outcome::BYPASS),
            grace: ok(metric::outcome::GRACE),
            rejected: Reason::ALL
                .iter()
                .map(|r| {
                    let c = metrics::counter!(metric::REQUESTS, "outcome" => metric::outcome::REJECTED, "reason" => r.as_str());
                    (*r, Count::new(c))
                })
                .collect(),
            bypassed: metrics::counter!(metric::BYPASSED),
            grace_accepted: metrics::counter!(metric::GRACE_ACCEPTED),
            cache_hit: Count::new(metrics::counter!(metric::VERDICT_CACHE, "result" => "hit")),
            cache_miss: Count::new(metrics::counter!(metric::VERDICT_CACHE, "result" => "miss")),
        }
    }

    fn rejected(&self, reason: Reason) {
        if let Some((_, c)) = self.rejected.iter().find(|(r, _)| *r == reason) {
            c.inc();
        }
    }
}

/// Request outcomes since start, for `/status`.
#[derive(Debug, Clone)]
pub struct OutcomeCounts {
    /// Forwarded with a verified identity.
    pub signed_in: u64,
    /// Forwarded without identity (public routes).
    pub signed_out: u64,
    /// Forwarded because of bypass.
    pub bypass: u64,
    /// Accepted because of grace.
    pub grace: u64,
    /// Refused, by reason (only reasons seen).
    pub rejected: std::collections::BTreeMap<&'static str, u64>,
    /// Verdict-cache hits.
    pub cache_hits: u64,
    /// Verdict-cache misses.
    pub cache_misses: u64,
}

/// What the gate decided for one request.
#[derive(Debug)]
pub enum Admission {
    /// Forward; `tag_response` marks the client response `X-Auth-Bypass: true`.
    Forward {
        /// Bypass tags the response too.
        tag_response: bool,
    },
    /// Answer directly with this response.
    Answer(Response<Body>),
    /// Wait for one refetch of the key set for this `kid`, then decide again.
    NeedKid(String),
    /// A `webhook = "clerk"` route: read the body (bounded) and check its Svix signature.
    Webhook,
}

/// Largest webhook body read for signature verification; Clerk's events are a few KiB.
pub const MAX_WEBHOOK_BYTES: usize = 1024 * 1024;

/// Marks a request whose Svix signature the gateway verified (`X-Clerk-Webhook-Verified: true`;
/// the name is in the reserved `X-Clerk-` space, so no client can send it).
pub const WEBHOOK_VERIFIED: http::HeaderName = http::HeaderName::from_static("x-clerk-webhook-verified");

/// The outcome of checking a presented token.
enum TokenOutcome {
    Accepted(Arc<Verified>),
    Grace(Arc<Verified>),
    /// Verified, but refused after verification (revoked, pending): no identity, even in bypass.
    Refused(Failure),
}

impl Gate {
    /// A gate over the given shared state.
    pub fn new(shared: Arc<Shared>, keys: Arc<KeyStore>, revocations: Arc<Revocations>, clock: Clock) -> Self {
        crate::telemetry::metrics_handle();
        let capacity = shared.load().config.clerk.verdict_cache_entries;
        Gate { shared, keys, cache: VerdictCache::new(capacity), revocations, clock, counters: Counters::new() }
    }

    /// Request outcomes counted since start.
    pub fn outcome_counts(&self) -> OutcomeCounts {
        let c = &self.counters;
        OutcomeCounts {
            signed_in: c.signed_in.get(),
            signed_out: c.signed_out.get(),
            bypass: c.bypass.get(),
            grace: c.grace.get(),
            rejected: c.rejected.iter().filter(|(_, n)| n.get() > 0).map(|(r, n)| (r.as_str(), n.get())).collect(),
            cache_hits: c.cache_hit.get(),
            cache_misses: c.cache_miss.get(),
        }
    }

    /// Decides for one request, mutating its head: reserved headers stripped, an allowed
    /// upgrade kept as a [`headers::RequestedUpgrade`] extension, the path normalised, identity
    /// headers set. `refetched` is true on the second pass after a key refetch, when an
    /// unknown `kid` is final.
    pub fn admit(&self, parts: &mut Parts, refetched: bool) -> Admission {
        if let Some(why) = refused_method(&parts.method) {
            return self.refuse(Failure::new(Reason::MethodNotAllowed, why), false);
        }
        let rt = self.shared.load();
        let config = &rt.config;
        if let Some(upgrade) = headers::sanitize_request(&mut parts.headers, parts.version, &config.upstream.headers) {
            parts.extensions.insert(upgrade);
        }
        if let Err(why) = check_host(parts) {
            return self.refuse(Failure::new(Reason::InvalidHost, why), false);
        }
        let now = self.clock.now_ms();

        // Any matching rule marked `bypass = "never"` keeps the request enforced, not only the
        // first match, so reordering rules can never drop the guarantee.
        let (route, never) = if routes::already_normal(parts.uri.path()) {
            // The common case: the path is its own normal form; nothing to allocate or rewrite.
            let p = parts.uri.path();
            (config.routes.route(&parts.method, p), config.routes.bypass_never(&parts.method, p))
        } else {
            let path = match routes::normalise(parts.uri.path()) {
                Ok(p) => p,
                Err(e) => {
                    return self.refuse(Failure::new(Reason::AmbiguousPath, e.message()), false);
                }
            };
            if path.forward != parts.uri.path() {
                rewrite_path(&mut parts.uri, &path.forward);
            }
            (
                config.routes.route(&parts.method, &path.matching),
                config.routes.bypass_never(&parts.method, &path.matching),
            )
        };
        let mode = rt.mode_at(now).mode;
        let rule = route.rule();
        // Grace applies on every route: it admits only correctly signed tokens of real
        // sessions, and roles and revocations still apply.
        let bypass = mode == Mode::Bypass && !never;
        let grace = mode == Mode::Grace;
        // A webhook route is authenticated by its signature, which needs nothing from Clerk,
        // so it is checked in every mode.
        if rule.is_some_and(|r| r.webhook) {
            return Admission::Webhook;
        }

        let pk = config.clerk.publishable_key.as_ref();
        let found = token::find(&parts.headers, pk, now / 1000);
        let owned;
        let (token, carrier) = match &found {
            Found::Token(t, c) => (Some(*t), *c),
            Found::OwnedCookie(t) => {
                owned = t.clone();
                (Some(owned.as_str()), Carrier::Cookie)
            }
            Found::None => (None, Carrier::Header),
            Found::Conflict(why) => {
                if bypass {
                    return self.forward_bypass(parts, None);
                }
                return self
                    .refuse(Failure::new(Reason::ConflictingCredentials, format!("The request carries {why}.")), true);
            }
        };

        let outcome = match token {
            None => None,
            Some(t) => match self.check_token(t, carrier, &rt, now, grace, refetched) {
                Ok(o) => Some(Ok(o)),
                Err(Checked::NeedKid(kid)) => {
                    if bypass {
                        // Bypass never waits on the network: the request goes through without identity.
                        return self.forward_bypass(parts, None);
                    }
                    return Admission::NeedKid(kid);
                }
                Err(Checked::Failed(f)) => Some(Err(f)),
            },
        };

        if bypass {
            let identity = match &outcome {
                Some(Ok(TokenOutcome::Accepted(v))) => Some(v.clone()),
                _ => None,
            };
            return self.forward_bypass(parts, identity);
        }

        match (route, outcome) {
            (_, Some(Ok(TokenOutcome::Accepted(v)))) => {
                if let Some(rule) = rule {
                    if let Some(f) = authorise(&v, rule.role.as_deref(), rule.permission.as_deref()) {
                        return self.refuse(f, true);
                    }
                }
                set_identity(parts, &v, AuthStatus::SignedIn);
                self.counters.signed_in.inc();
                Admission::Forward { tag_response: false }
            }
            (_, Some(Ok(TokenOutcome::Grace(v)))) => {
                if let Some(rule) = rule {
                    if let Some(f) = authorise(&v, rule.role.as_deref(), rule.permission.as_deref()) {
                        return self.refuse(f, true);
                    }
                }
                set_identity(parts, &v, AuthStatus::Grace);
                parts.headers.insert(names::AUTH_DEGRADED, HeaderValue::from_static("grace"));
                self.counters.grace.inc();
                self.counters.grace_accepted.increment(1);
                Admission::Forward { tag_response: false }
            }
            (Route::Public, _) => {
                set_status(parts, AuthStatus::SignedOut);
                self.counters.signed_out.inc();
                Admission::Forward { tag_response: false }
            }
            (Route::Protected { .. }, Some(Ok(TokenOutcome::Refused(f))) | Some(Err(f))) => self.refuse(f, true),
            (Route::Protected { .. }, None) => self.refuse(
                Failure::new(
                    Reason::SessionTokenMissing,
                    "No session token was found in the Authorization header or the __session cookie.",
                ),
                false,
            ),
        }
    }

    fn refuse_answer(&self, failure: Failure) -> Response<Body> {
        self.counters.rejected(failure.reason);
        answer::refusal(&failure, false)
    }

    fn refuse(&self, failure: Failure, token_presented: bool) -> Admission {
        self.counters.rejected(failure.reason);
        Admission::Answer(answer::refusal(&failure, token_presented))
    }

    fn forward_bypass(&self, parts: &mut Parts, identity: Option<Arc<Verified>>) -> Admission {
        // Every bypassed request is logged: bypass is an audited exception, never a silent one.
        tracing::warn!(
            target: "clerkgate::bypass",
            method = %parts.method,
            path = parts.uri.path(),
            user_id = identity.as_ref().map(|v| v.claims.user_id.as_str()),
            "request forwarded under bypass"
        );
        match identity {
            Some(v) => set_identity(parts, &v, AuthStatus::Bypass),
            None => set_status(parts, AuthStatus::Bypass),
        }
        parts.headers.insert(names::AUTH_BYPASS, HeaderValue::from_static("true"));
        self.counters.bypass.inc();
        self.counters.bypassed.increment(1);
        Admission::Forward { tag_response: true }
    }

    /// Verifies a token: verdict cache, else keys; then the clock, grace, pending, revocation.
    fn check_token(
        &self,
        token: &str,
        carrier: Carrier,
        rt: &crate::state::Runtime,
        now: i64,
        grace: bool,
        refetched: bool,
    ) -> Result<TokenOutcome, Checked> {
        let clerk = &rt.config.clerk;
        let epoch =
            Epoch { config: rt.generation, keys: self.keys.generation(), revocations: self.revocations.generation() };
        // A cached verdict stands only while the keys that produced it are still usable: past
        // max_stale a fresh verification answers 503, and so must a cache hit.
        let stale = clerk.jwks.is_some() && !self.keys.current().usable(now, clerk.keys.max_stale);
        let cached = if stale { None } else { self.cache.get(token, epoch) };
        let verified = match cached {
            Some(v) => {
                self.counters.cache_hit.inc();
                v
            }
            None => {
                self.counters.cache_miss.inc();
                let v = Arc::new(self.verify_uncached(token, carrier, clerk, now, refetched)?);
                // A verdict reached while the remote keys are stale (through the networkless key)
                // is not remembered: once the keys are usable again a fresh check may differ.
                if !stale {
                    self.cache.insert(token, epoch, v.clone());
                }
                v
            }
        };
        decide_after_signature(verified, carrier, rt, now, grace, &self.revocations.current())
    }

    fn verify_uncached(
        &self,
        token: &str,
        carrier: Carrier,
        clerk: &crate::config::ClerkConfig,
        now: i64,
        refetched: bool,
    ) -> Result<Verified, Checked> {
        let set = self.keys.current();
        let remote = (clerk.jwks.is_some() && set.usable(now, clerk.keys.max_stale)).then_some(&**set);
        let policy = Policy {
            authorized_parties: &clerk.authorized_parties,
            issuer: clerk.issuer.as_deref(),
            skew_ms: duration_ms(clerk.clock_skew),
        };
        match verify::verify_signed(token, carrier, remote, clerk.jwt_key.as_ref(), &policy) {
            Ok(v) => Ok(v),
            Err(Refusal::Failed(f)) => Err(Checked::Failed(f)),
            Err(Refusal::UnknownKid(kid)) if !refetched => Err(Checked::NeedKid(kid)),
            Err(Refusal::UnknownKid(kid)) => Err(Checked::Failed(verify::kid_mismatch(&kid, carrier))),
            Err(Refusal::NoKeys) => Err(Checked::Failed(Failure::new(
                Reason::JwksUnavailable,
                "No usable signing keys are loaded: the JWKS has not answered yet, or the last good keys are older than clerk.keys.max_stale.",
            ))),
        }
    }
}

/// Why a token check did not produce an outcome.
enum Checked {
    NeedKid(String),
    Failed(Failure),
}

/// Everything after the signature stage; shared by cache hits and fresh verifications so the
/// two can never disagree.
fn decide_after_signature(
    verified: Arc<Verified>,
    carrier: Carrier,
    rt: &crate::state::Runtime,
    now: i64,
    grace: bool,
    revocations: &crate::revocation::RevocationList,
) -> Result<TokenOutcome, Checked> {
    let config = &rt.config;
    let skew = duration_ms(config.clerk.clock_skew);
    let graced = match verify::check_time(&verified, now, skew, carrier) {
        TimeVerdict::Valid => false,
        TimeVerdict::Expired { by_ms, .. } if grace && by_ms <= duration_ms(config.mode.grace_max_expired) => true,
        TimeVerdict::Expired { failure, .. } | TimeVerdict::Failed(failure) => return Err(Checked::Failed(failure)),
    };
    let claims = &verified.claims;
    if revocations.revokes(&claims.user_id, claims.session_id.as_deref(), verified.iat.ms()) {
        return Ok(TokenOutcome::Refused(Failure::new(
            Reason::SessionRevoked,
            "This session was revoked at the gateway.",
        )));
    }
    if verified.claims.pending && config.clerk.reject_pending_sessions {
        return Ok(TokenOutcome::Refused(Failure::new(
            Reason::SessionPending,
            "The session is pending (sts=pending): the user has tasks to finish before signing in.",
        )));
    }
    Ok(if graced { TokenOutcome::Grace(verified) } else { TokenOutcome::Accepted(verified) })
}

/// Checks a route's role and permission with Clerk's `has()`.
fn authorise(v: &Verified, role: Option<&str>, permission: Option<&str>) -> Option<Failure> {
    if role.is_none() && permission.is_none() {
        return None;
    }
    if has_role_and_permission(&v.claims, role, permission) {
        return None;
    }
    let role_ok = role.is_none_or(|r| has_role_and_permission(&v.claims, Some(r), None));
    Some(if !role_ok {
        Failure::new(Reason::MissingRole, format!("This route needs the role {:?}.", role.unwrap_or_default()))
    } else {
        Failure::new(
            Reason::MissingPermission,
            format!("This route needs the permission {:?}.", permission.unwrap_or_default()),
        )
    })
}

/// Methods the gateway answers 405 itself, in every mode, with why. `CONNECT` would turn the
/// gateway into a tunnel (nginx answers 405 too); `TRACE` (and IIS's `TRACK`) echoes the
/// request, `Cookie` and `Authorization` included, back to whoever can read the response.
fn refused_method(method: &Method) -> Option<&'static str> {
    if *method == Method::CONNECT {
        Some("The gateway does not forward CONNECT requests: it is not a tunnel.")
    } else if *method == Method::TRACE || method.as_str() == "TRACK" {
        Some("The gateway does not forward TRACE or TRACK requests: they echo credentials back.")
    } else {
        None
    }
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one valid `Host`; an HTTP/2 request's `Host`,
/// when present, must agree with its `:authority`. Upstreams and frameworks disagree on which
/// of two `Host` lines wins, so anything else is refused rather than forwarded. Userinfo
/// (`user@host`) is not part of a valid `Host` (RFC 9110 §7.2) and is refused in an
/// `:authority` or absolute-form target too (§4.2.4), rather than forwarded as `Host`.
fn check_host(parts: &Parts) -> Result<(), &'static str> {
    if parts.uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("The request's authority carries userinfo (user@host).");
    }
    let mut hosts = parts.headers.get_all(http::header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return Err("The request carries several Host headers.");
    }
    let parsed = match first {
        Some(v) if v.as_bytes().contains(&b'@') => return Err("The Host header carries userinfo (user@host)."),
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<http::uri::Authority>().ok())
                .filter(|a| !a.host().is_empty())
                .ok_or("The Host header is not a valid host[:port].")?,
        ),
        None => None,
    };
    match (parts.version, parsed, parts.uri.authority()) {
        (http::Version::HTTP_11, None, _) => Err("An HTTP/1.1 request needs a Host header."),
        (http::Version::HTTP_2 | http::Version::HTTP_3, Some(h), Some(a)) if h != *a => {
            Err("The Host header disagrees with the request's :authority.")
        }
        _ => Ok(()),
    }
}

fn set_status(parts: &mut Parts, status: AuthStatus) {
    parts.headers.insert(names::AUTH_STATUS, HeaderValue::from_static(status.as_str()));
    parts.extensions.insert(status);
}

fn set_identity(parts: &mut Parts, v: &Verified, status: AuthStatus) {
    set_status(parts, status);
    let id = &v.identity;
    let h = &mut parts.headers;
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

fn rewrite_path(uri: &mut http::Uri, path: &str) {
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = std::mem::take(uri).into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
    }
    if let Ok(u) = http::Uri::from_parts(parts) {
        *uri = u;
    }
}

// === impl AuthLayer ===

/// Applies [`Auth`] to a service. See the module docs for ordering.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    gate: Arc<Gate>,
}

impl AuthLayer {
    /// A layer deciding with `gate`.
    pub fn new(gate: Arc<Gate>) -> Self {
        AuthLayer { gate }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth { inner, gate: self.gate.clone() }
    }
}

// === impl Auth ===

/// Authenticates each request, then forwards it to the inner service or answers it.
/// Produced by [`AuthLayer`].
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    gate: Arc<Gate>,
}

impl<S> Auth<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, gate: Arc<Gate>) -> Self {
        Auth { inner, gate }
    }
}

impl<S> Service<Request<Body>> for Auth<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        match self.gate.admit(&mut parts, false) {
            Admission::Forward { tag_response } => {
                ResponseFuture::forward(self.inner.call(Request::from_parts(parts, body)), tag_response)
            }
            Admission::Answer(resp) => ResponseFuture::ready(resp),
            Admission::NeedKid(kid) => {
                // Take the service that was driven to readiness and leave a clone in its place.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let gate = self.gate.clone();
                ResponseFuture::slow(Box::pin(async move {
                    gate.keys.refetch_for_unknown_kid(&kid).await;
                    match gate.admit(&mut parts, true) {
                        Admission::Forward { tag_response } => {
                            let resp = inner.call(Request::from_parts(parts, body)).await?;
                            Ok(tag(resp, tag_response))
                        }
                        Admission::Answer(resp) => Ok(resp),
                        Admission::NeedKid(_) | Admission::Webhook => unreachable_need_kid(),
                    }
                }))
            }
            Admission::Webhook => {
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let gate = self.gate.clone();
                ResponseFuture::slow(Box::pin(async move {
                    use http_body_util::BodyExt;
                    let bytes = match http_body_util::Limited::new(body, MAX_WEBHOOK_BYTES).collect().await {
                        Ok(collected) => collected.to_bytes(),
                        Err(_) => {
                            let f = Failure::new(
                                Reason::WebhookInvalid,
                                "The webhook body could not be read or is over 1 MiB.",
                            );
                            return Ok(gate.refuse_answer(f));
                        }
                    };
                    let secret = gate.shared.load().config.clerk.webhook_signing_secret.clone();
                    let now_s = gate.clock.now_ms().div_euclid(1000);
                    match super::webhook::verify(secret.as_ref().map(|s| s.expose()), &parts.headers, &bytes, now_s) {
                        Ok(()) => {
                            set_status(&mut parts, AuthStatus::SignedOut);
                            parts.headers.insert(WEBHOOK_VERIFIED, HeaderValue::from_static("true"));
                            gate.counters.signed_out.inc();
                            inner.call(Request::from_parts(parts, Body::from(bytes))).await
                        }
                        Err(message) => Ok(gate.refuse_answer(Failure::new(
                            Reason::WebhookInvalid,
                            format!("Unable to verify incoming webhook: {message}"),
                        ))),
                    }
                }))
            }
        }
    }
}

/// `admit(.., true)` never asks for another refetch; answer 503 rather than panic if it did.
fn unreachable_need_kid() -> Result<Response<Body>, Infallible> {
    Ok(answer::refusal(&Failure::new(Reason::JwksUnavailable, "key refetch did not settle"), true))
}

fn tag(mut resp: Response<Body>, tag_response: bool) -> Response<Body> {
    if tag_response {
        resp.headers_mut().insert(names::AUTH_BYPASS, HeaderValue::from_static("true"));
    }
    resp
}

type SlowFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

pin_project_lite::pin_project! {
    /// Response future of [`Auth`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Forward { #[pin] fut: F, tag_response: bool },
        Ready { resp: Option<Response<Body>> },
        Slow { fut: SlowFuture },
    }
}

impl<F> ResponseFuture<F> {
    fn forward(fut: F, tag_response: bool) -> Self {
        ResponseFuture { kind: Kind::Forward { fut, tag_response } }
    }
    fn ready(resp: Response<Body>) -> Self {
        ResponseFuture { kind: Kind::Ready { resp: Some(resp) } }
    }
    fn slow(fut: SlowFuture) -> Self {
        ResponseFuture { kind: Kind::Slow { fut } }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<Body>, Infallible>>,
{
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Forward { fut, tag_response } => {
                let tag_response = *tag_response;
                fut.poll(cx).map(|r| r.map(|resp| tag(resp, tag_response)))
            }
            KindProj::Ready { resp } => Poll::Ready(Ok(resp.take().unwrap_or_else(|| Response::new(Body::empty())))),
            KindProj::Slow { fut } => fut.as_mut().poll(cx),
        }
    }
}

#[cfg(test)]
#[path = "service_tests.rs"]
mod tests;
