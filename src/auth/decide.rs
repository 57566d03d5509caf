//! The auth decision: `decide(facts, snapshot) -> Decision`, in SPEC §3's order.
//!
//! 1. A webhook route is decided by its body's signature: [`Decision::VerifyWebhook`].
//! 2. Credentials that disagree (two `Authorization` headers) are refused, except in bypass.
//! 3. Bypass forwards everything, with identity only for a token that is fully valid; it never
//!    waits for the network and never starts Clerk's browser flow.
//! 4. With a publishable key, Clerk's `authenticateRequest` runs ([`super::browser`]): the
//!    cookie rules, refresh and handshake; without one, the token alone is checked (Clerk's
//!    `verifyToken`). A token is checked by its signed stage through [`Signatures`] (the
//!    verdict cache, then the keys), then on every request the clock, grace, revocation and
//!    pending checks.
//! 5. Signed in (or accepted by grace): authorised against the route's role and permission and
//!    forwarded with its identity. Signed out: a public route is forwarded signed out; a
//!    protected one is refused — a page load redirected to sign-in when there is a sign-in URL.
//!    A handshake is a 307 to the Frontend API.
//!
//! The decision reads only its arguments and returns a value; it writes nothing, counts
//! nothing, logs nothing and calls nothing (the gate and the layer do, from the decision: a
//! key refetch or a Backend API call is a [`Decision`] to wait, after which the decision runs
//! again with what was learned). The one effect below it is the verdict cache, a memo that
//! never changes an outcome (the gate's differential test).

use std::sync::Arc;

use http::header::{ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN};
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

pub use super::backend::BackendCall;
use super::browser::{self, State, StateHeaders};
use super::facts::RequestFacts;
use super::handshake;
use super::has::has_role_and_permission;
use super::token::Found;
use super::verify::{self, Carrier, TimeVerdict, Verified};
use crate::answer::Answer;
use crate::clock::duration_ms;
use crate::config::Config;
pub use crate::headers::AuthStatus;
use crate::reason::{Failure, Reason};
use crate::revocation::Revocations;

/// What to do with one request.
#[derive(Debug)]
pub enum Decision {
    /// Forward it upstream.
    Forward(Forward),
    /// Answer it directly.
    Answer(Answer),
    /// Wait for one refetch of the key set for this `kid`, then decide again.
    NeedKid(String),
    /// A `webhook = "clerk"` route: read the body (bounded) and check its Svix signature.
    VerifyWebhook,
    /// Wait for this Backend API call (bounded by `fetch_timeout`), then decide again.
    Call(BackendCall),
}

/// A request to forward: with which status and identity, and so with which tags.
#[derive(Debug, Clone)]
pub struct Forward {
    /// `X-Clerk-Auth-Status`. [`AuthStatus::Bypass`] also tags the request and the response
    /// `X-Auth-Bypass: true`; [`AuthStatus::Grace`] tags the request `X-Auth-Degraded: grace`.
    pub status: AuthStatus,
    /// The verified identity, when there is one.
    pub identity: Option<Arc<Verified>>,
    /// Added to the client's response: a handshake's or refresh's `Set-Cookie` lines (and a
    /// resolved handshake's CORS pair).
    pub response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Something for the gate to log at WARN (the handshake loop guard stopped a redirect).
    pub note: Option<&'static str>,
}

impl Forward {
    /// A forward with nothing added to the response.
    pub fn new(status: AuthStatus, identity: Option<Arc<Verified>>) -> Self {
        Forward { status, identity, response_headers: Vec::new(), note: None }
    }

    /// The client's response is tagged `X-Auth-Bypass: true`.
    pub fn tags_response(&self) -> bool {
        self.status == AuthStatus::Bypass
    }
}

/// The signed (cacheable) stage of verification, as the decision sees it.
pub trait Signatures {
    /// The verdict of the time-independent checks for `token`. `refetched` is true when the
    /// key set was already refetched for this request, so an unknown `kid` is final.
    fn verify(&self, token: &str, carrier: Carrier, refetched: bool) -> Result<Arc<Verified>, Unsigned>;

    /// The payload of a signed handshake token (clerk-semantics §4.6), never cached.
    fn verify_handshake(&self, token: &str, refetched: bool) -> Result<Map<String, Value>, Unsigned>;
}

/// Why the signed stage gave no verdict.
#[derive(Debug)]
pub enum Unsigned {
    /// The token names a `kid` the key set lacks, and no refetch has happened for it yet.
    NeedKid(String),
    /// The token is refused.
    Failed(Failure),
}

/// What the decision reads besides the request: one view of the gateway's state.
pub struct Snapshot<'a> {
    /// The config in force.
    pub config: &'a Config,
    /// Now, by the gateway's clock.
    pub now_ms: i64,
    /// Revocations in force (read only when a token needs them).
    pub revocations: &'a Revocations,
    /// The signed stage.
    pub signatures: &'a dyn Signatures,
}

impl Snapshot<'_> {
    /// `clerk.clock_skew` in milliseconds.
    pub fn skew_ms(&self) -> i64 {
        duration_ms(self.config.clerk.clock_skew)
    }
}

/// Decides for one request.
pub fn decide(facts: &RequestFacts<'_>, snap: &Snapshot<'_>) -> Decision {
    // A webhook route is authenticated by its signature, which needs nothing from Clerk, so it
    // is checked in every mode.
    if facts.webhook() {
        return Decision::VerifyWebhook;
    }
    let bypass = facts.bypassed();
    if let Found::Conflict(why) = facts.credential {
        if bypass {
            return forward(AuthStatus::Bypass, None);
        }
        let message = format!("The request carries {why}.");
        return refuse(Failure::new(Reason::ConflictingCredentials, message), true);
    }
    if bypass {
        // Bypass never waits on the network and never forwards an identity it has not verified.
        let identity = match facts.token().map(|(token, carrier)| check_token(token, carrier, facts, snap)) {
            Some(TokenCheck::Accepted(v)) => Some(v),
            _ => None,
        };
        return forward(AuthStatus::Bypass, identity);
    }
    if let Some(pk) = &snap.config.clerk.publishable_key {
        return from_state(browser::authenticate(facts, snap, pk), facts, snap);
    }
    let none = StateHeaders::default();
    match facts.token().map(|(token, carrier)| check_token(token, carrier, facts, snap)) {
        Some(TokenCheck::NeedKid(kid)) => Decision::NeedKid(kid),
        Some(TokenCheck::Accepted(v)) => authorised(v, AuthStatus::SignedIn, facts, &none),
        Some(TokenCheck::Grace(v)) => authorised(v, AuthStatus::Grace, facts, &none),
        _ if facts.route.is_public() => forward(AuthStatus::SignedOut, None),
        Some(TokenCheck::Invalid(failure) | TokenCheck::Refused(failure)) => {
            Decision::Answer(refused(failure, facts, snap, &none))
        }
        None => Decision::Answer(refused(
            Failure::new(
                Reason::SessionTokenMissing,
                "No session token was found in the Authorization header or the __session cookie.",
            ),
            facts,
            snap,
            &none,
        )),
    }
}

/// What Clerk's state comes to at the gateway.
fn from_state(state: State, facts: &RequestFacts<'_>, snap: &Snapshot<'_>) -> Decision {
    match state {
        State::NeedKid(kid) => Decision::NeedKid(kid),
        State::Call(call) => Decision::Call(call),
        State::Broken(failure) => Decision::Answer(failure.answer(false)),
        State::Handshake { failure, location, counter_cookie } => {
            let cookie = HeaderValue::from_str(&counter_cookie);
            match (redirect(failure.reason.as_str(), &location), cookie) {
                (Some(answer), Ok(cookie)) => Decision::Answer(
                    answer
                        .with_auth_status("handshake")
                        .with_wire_reason(failure.wire_reason())
                        .with_message(failure.message)
                        .with_message_header()
                        .with_cookie(cookie),
                ),
                _ => Decision::Answer(refused(failure, facts, snap, &StateHeaders::default())),
            }
        }
        State::SignedIn { verified, status, headers } => {
            match headers.location.as_deref().and_then(|l| redirect("signed-in", l)) {
                // A development instance's resolved handshake: back to the clean URL, cookies set.
                Some(answer) => Decision::Answer(with_state_headers(
                    answer.with_auth_status(status.as_str()).without_reason_header(),
                    &headers,
                )),
                None => authorised(verified, status, facts, &headers),
            }
        }
        State::SignedOut { failure, headers, loop_stopped } => {
            let note = loop_stopped.then_some(LOOP_NOTE);
            if let Some(answer) = headers.location.as_deref().and_then(|l| redirect(failure.reason.as_str(), l)) {
                let answer =
                    answer.with_wire_reason(failure.wire_reason()).with_message(failure.message).with_message_header();
                return Decision::Answer(with_state_headers(answer, &headers).with_note(note));
            }
            if facts.route.is_public() {
                let mut f = Forward::new(AuthStatus::SignedOut, None);
                f.response_headers = headers.response_headers();
                f.note = note;
                return Decision::Forward(f);
            }
            Decision::Answer(refused(failure, facts, snap, &headers).with_note(note))
        }
    }
}

/// What Clerk's SDK logs when the loop guard stops a handshake.
const LOOP_NOTE: &str = "Clerk: Refreshing the session token resulted in an infinite redirect loop. This usually means that your Clerk instance keys do not match - make sure to copy the correct publishable and secret keys from the Clerk dashboard.";

/// A 307 to `location`, or `None` when it cannot be a header value.
fn redirect(label: &'static str, location: &str) -> Option<Answer> {
    HeaderValue::from_str(location).ok().map(|l| Answer::redirect(label, l))
}

fn with_state_headers(mut answer: Answer, headers: &StateHeaders) -> Answer {
    if headers.cors {
        answer = answer
            .with_header(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("null"))
            .with_header(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    headers.set_cookies.iter().fold(answer, |a, c| a.with_cookie(c.clone()))
}

/// The answer to a protected route's signed-out request: a page load goes to sign-in when
/// there is a sign-in URL (SPEC §8, clerk-semantics §4.10; a pending session to its tasks);
/// anything else gets the refusal (401, or 503 without usable keys).
fn refused(failure: Failure, facts: &RequestFacts<'_>, snap: &Snapshot<'_>, headers: &StateHeaders) -> Answer {
    let token_presented = facts.token().is_some();
    if failure.reason.status() == http::StatusCode::UNAUTHORIZED && facts.document() {
        let public = facts.public_url();
        let pending = failure.reason == Reason::SessionPending;
        if let Some(target) = handshake::sign_in_target(snap.config, public.origin(), pending) {
            let dev_browser = match &snap.config.clerk.publishable_key {
                Some(pk) if !pk.production => browser::dev_browser(facts),
                _ => None,
            };
            let location =
                handshake::sign_in_location(&target, &public.href(), public.origin(), dev_browser.as_deref());
            if let Some(answer) = redirect(failure.reason.as_str(), &location) {
                let answer =
                    answer.with_wire_reason(failure.wire_reason()).with_message(failure.message).with_message_header();
                return with_state_headers(answer, headers);
            }
        }
    }
    with_state_headers(failure.answer(token_presented), headers)
}

/// What a presented token came to.
#[derive(Debug)]
pub enum TokenCheck {
    /// Valid.
    Accepted(Arc<Verified>),
    /// Valid only because of grace.
    Grace(Arc<Verified>),
    /// Refused by verification: Clerk's reasons, and `issuer-mismatch`, `jwks-unavailable`.
    Invalid(Failure),
    /// Verified, then refused by the gateway (revoked, pending), so no identity even in bypass.
    Refused(Failure),
    /// Waiting for a key refetch.
    NeedKid(String),
}

/// The signed stage, then everything that depends on the clock and on state that changes
/// without the token: shared by cache hits and fresh verifications, so the two can never
/// disagree.
fn check_token(token: &str, carrier: Carrier, facts: &RequestFacts<'_>, snap: &Snapshot<'_>) -> TokenCheck {
    match snap.signatures.verify(token, carrier, facts.refetched) {
        Ok(v) => accept(v, carrier, facts, snap, snap.skew_ms()),
        Err(Unsigned::NeedKid(kid)) => TokenCheck::NeedKid(kid),
        Err(Unsigned::Failed(f)) => TokenCheck::Invalid(f),
    }
}

/// Everything after the signed stage, with this skew: the clock (grace may accept an expired
/// token), revocation, pending.
pub fn accept(
    verified: Arc<Verified>,
    carrier: Carrier,
    facts: &RequestFacts<'_>,
    snap: &Snapshot<'_>,
    skew_ms: i64,
) -> TokenCheck {
    let config = snap.config;
    let graced = match verify::check_time(&verified, snap.now_ms, skew_ms, carrier) {
        TimeVerdict::Valid => false,
        TimeVerdict::Expired { by_ms, .. } if facts.grace() && by_ms <= duration_ms(config.mode.grace_max_expired) => {
            true
        }
        TimeVerdict::Expired { failure, .. } | TimeVerdict::Failed(failure) => return TokenCheck::Invalid(failure),
    };
    if snap.revocations.current().revokes(
        &verified.claims.user_id,
        verified.claims.session_id.as_deref(),
        verified.iat.ms(),
    ) {
        return TokenCheck::Refused(Failure::new(Reason::SessionRevoked, "This session was revoked at the gateway."));
    }
    if verified.claims.pending && config.clerk.reject_pending_sessions {
        return TokenCheck::Refused(Failure::new(
            Reason::SessionPending,
            "The session is pending (sts=pending): the user has tasks to finish before signing in.",
        ));
    }
    if graced {
        TokenCheck::Grace(verified)
    } else {
        TokenCheck::Accepted(verified)
    }
}

/// Forwards a valid token's identity if it holds the route's role and permission (Clerk's
/// `has()`); refuses it with 403 otherwise. Either way the state's cookies are set.
fn authorised(v: Arc<Verified>, status: AuthStatus, facts: &RequestFacts<'_>, headers: &StateHeaders) -> Decision {
    if let Some(rule) = facts.rule() {
        if let Some(f) = authorise(&v, rule.role.as_deref(), rule.permission.as_deref()) {
            // The user is who the token says, only not allowed here: the answer says so.
            return Decision::Answer(with_state_headers(f.answer(true).with_auth_status(status.as_str()), headers));
        }
    }
    let mut f = Forward::new(status, Some(v));
    f.response_headers = headers.response_headers();
    Decision::Forward(f)
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

fn forward(status: AuthStatus, identity: Option<Arc<Verified>>) -> Decision {
    Decision::Forward(Forward::new(status, identity))
}

fn refuse(failure: Failure, token_presented: bool) -> Decision {
    Decision::Answer(failure.answer(token_presented))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
pub(super) mod tests;
