//! The auth decision: `decide(facts, snapshot) -> Decision`, in SPEC §3's order.
//!
//! 1. A webhook route is decided by its body's signature: [`Decision::VerifyWebhook`].
//! 2. Credentials that disagree (two `Authorization` headers) are refused, except in bypass.
//! 3. A token is checked: its signed stage through [`Signatures`] (the verdict cache, then the
//!    keys), then on every request the clock, grace, revocation and pending checks.
//! 4. Bypass forwards everything, with identity only for a token that is fully valid.
//! 5. Otherwise a valid token (or one accepted by grace) is authorised against the route's role
//!    and permission and forwarded with its identity; a public route is forwarded signed out;
//!    a protected route without a valid token is refused.
//!
//! The decision reads only its arguments and returns a value; it writes nothing, counts
//! nothing and logs nothing (the gate does, from the decision). The one effect below it is the
//! verdict cache, a memo that never changes an outcome (the gate's differential test).

use std::sync::Arc;

use super::facts::RequestFacts;
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
}

/// A request to forward: with which status and identity, and so with which tags.
#[derive(Debug, Clone)]
pub struct Forward {
    /// `X-Clerk-Auth-Status`. [`AuthStatus::Bypass`] also tags the request and the response
    /// `X-Auth-Bypass: true`; [`AuthStatus::Grace`] tags the request `X-Auth-Degraded: grace`.
    pub status: AuthStatus,
    /// The verified identity, when there is one.
    pub identity: Option<Arc<Verified>>,
}

impl Forward {
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
    let checked = facts.token().map(|(token, carrier)| check_token(token, carrier, facts, snap));
    if bypass {
        // Bypass never waits on the network and never forwards an identity it has not verified.
        let identity = match checked {
            Some(TokenCheck::Accepted(v)) => Some(v),
            _ => None,
        };
        return forward(AuthStatus::Bypass, identity);
    }
    match checked {
        Some(TokenCheck::NeedKid(kid)) => Decision::NeedKid(kid),
        Some(TokenCheck::Accepted(v)) => authorised(v, AuthStatus::SignedIn, facts),
        Some(TokenCheck::Grace(v)) => authorised(v, AuthStatus::Grace, facts),
        _ if facts.route.is_public() => forward(AuthStatus::SignedOut, None),
        Some(TokenCheck::Refused(failure)) => refuse(failure, true),
        None => refuse(
            Failure::new(
                Reason::SessionTokenMissing,
                "No session token was found in the Authorization header or the __session cookie.",
            ),
            false,
        ),
    }
}

/// What a presented token came to.
enum TokenCheck {
    /// Valid.
    Accepted(Arc<Verified>),
    /// Valid only because of grace.
    Grace(Arc<Verified>),
    /// Refused: by verification, or after it (revoked, pending), so no identity even in bypass.
    Refused(Failure),
    /// Waiting for a key refetch.
    NeedKid(String),
}

/// The signed stage, then everything that depends on the clock and on state that changes
/// without the token: shared by cache hits and fresh verifications, so the two can never
/// disagree.
fn check_token(token: &str, carrier: Carrier, facts: &RequestFacts<'_>, snap: &Snapshot<'_>) -> TokenCheck {
    let verified = match snap.signatures.verify(token, carrier, facts.refetched) {
        Ok(v) => v,
        Err(Unsigned::NeedKid(kid)) => return TokenCheck::NeedKid(kid),
        Err(Unsigned::Failed(f)) => return TokenCheck::Refused(f),
    };
    let config = snap.config;
    let skew = duration_ms(config.clerk.clock_skew);
    let graced = match verify::check_time(&verified, snap.now_ms, skew, carrier) {
        TimeVerdict::Valid => false,
        TimeVerdict::Expired { by_ms, .. } if facts.grace() && by_ms <= duration_ms(config.mode.grace_max_expired) => {
            true
        }
        TimeVerdict::Expired { failure, .. } | TimeVerdict::Failed(failure) => return TokenCheck::Refused(failure),
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
/// `has()`); refuses it with 403 otherwise.
fn authorised(v: Arc<Verified>, status: AuthStatus, facts: &RequestFacts<'_>) -> Decision {
    if let Some(rule) = facts.rule() {
        if let Some(f) = authorise(&v, rule.role.as_deref(), rule.permission.as_deref()) {
            // The user is who the token says, only not allowed here: the answer says so.
            return Decision::Answer(f.answer(true).with_auth_status(status.as_str()));
        }
    }
    forward(status, Some(v))
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
    Decision::Forward(Forward { status, identity })
}

fn refuse(failure: Failure, token_presented: bool) -> Decision {
    Decision::Answer(failure.answer(token_presented))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
