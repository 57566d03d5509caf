//! Clerk's `authenticateRequest` state machine (clerk-semantics §4), for a gateway configured
//! with a publishable key: the header path (§4.2), the cookie path in Clerk's order (§4.3), a
//! verification failure turned into a refresh or a handshake (§4.4), the handshake redirect and
//! its loop guard (§4.5), and the resolution of a returning handshake (§4.6).
//!
//! Pure: [`authenticate`] reads the facts and the snapshot and returns a [`State`] — signed in,
//! signed out, handshake — or what it must wait for first: a key refetch, or a Backend API call
//! ([`BackendCall`]) whose answer comes back in the facts ([`Resumed`]) on the next pass. It never
//! asks for a call in bypass mode (the caller decides bypass before it gets here), and, like
//! Clerk's SDK without an API client, asks for none without a secret key.
//!
//! What the gateway does with a state (forward, redirect to sign-in, 401) is [`super::decide`]'s.
//!
//! [`Resumed`]: super::backend::Resumed

use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};
use serde_json::{json, Map, Value};

use super::backend::BackendCall;
use super::decide::{accept, Snapshot, TokenCheck, Unsigned};
use super::facts::{RequestFacts, SEC_FETCH_DEST};
use super::handshake::{self, js_number, parse_int};
use super::public_url::url_origin;
use super::verify::{self, Carrier, Verified};
use crate::config::PublishableKey;
use crate::headers::AuthStatus;
use crate::reason::{Failure, Reason};

/// Clerk's skew for a development instance's handshake, retried once when the first check
/// fails on time alone: 24 hours.
const DEV_HANDSHAKE_SKEW_MS: i64 = 86_400_000;

/// What Clerk's SDK comes to for one request, or what it waits for.
#[derive(Debug)]
pub enum State {
    /// Signed in (also grace's acceptance), with the headers the state carries.
    SignedIn {
        /// The verified token.
        verified: Arc<Verified>,
        /// [`AuthStatus::SignedIn`] or [`AuthStatus::Grace`].
        status: AuthStatus,
        /// `Set-Cookie` from a handshake or refresh; a development handshake's clean URL.
        headers: StateHeaders,
    },
    /// Signed out, with Clerk's reason and message.
    SignedOut {
        /// Why.
        failure: Failure,
        /// `Set-Cookie` from a handshake (a sign-out elsewhere clears the cookies).
        headers: StateHeaders,
        /// The handshake loop guard stopped a fourth redirect (the instance's keys may not match).
        loop_stopped: bool,
    },
    /// A 307 to the Frontend API's handshake.
    Handshake {
        /// Why (the reason Clerk sends in `__clerk_hs_reason`).
        failure: Failure,
        /// The handshake URL.
        location: String,
        /// `__clerk_redirect_count=<n+1>; SameSite=Lax; HttpOnly; Max-Age=2`.
        counter_cookie: String,
    },
    /// A development instance's handshake token does not verify: Clerk's SDK throws (a 500).
    Broken(Failure),
    /// Wait for a key refetch for this `kid`, then decide again.
    NeedKid(String),
    /// Wait for this Backend API call, then decide again.
    Call(BackendCall),
}

/// Headers a state carries to the response (Clerk's `requestState.headers`, less the debug ones).
#[derive(Debug, Clone, Default)]
pub struct StateHeaders {
    /// Cookie directives from a handshake or refresh, in order.
    pub set_cookies: Vec<HeaderValue>,
    /// A resolved handshake adds `Access-Control-Allow-Origin: null` and
    /// `Access-Control-Allow-Credentials: true`.
    pub cors: bool,
    /// A development instance's resolved handshake: 307 to the request's URL without the
    /// handshake's query parameters.
    pub location: Option<String>,
}

impl StateHeaders {
    /// The headers to add to a forwarded request's response, in order.
    pub fn response_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        if self.set_cookies.is_empty() && !self.cors {
            // The common case, on every signed-in request: nothing to add, nothing allocated.
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.set_cookies.len() + 2);
        if self.cors {
            out.push((http::header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("null")));
            out.push((http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true")));
        }
        out.extend(self.set_cookies.iter().map(|c| (http::header::SET_COOKIE, c.clone())));
        out
    }
}

/// Runs Clerk's state machine for one request.
pub fn authenticate(facts: &RequestFacts<'_>, snap: &Snapshot<'_>, pk: &PublishableKey) -> State {
    let flow = Flow { facts, snap, pk };
    match facts.token() {
        Some((token, Carrier::Header)) => flow.header_path(token),
        _ => flow.cookie_path(),
    }
}

/// How a returning handshake was resolved (clerk-semantics §4.6).
enum Resolution {
    /// Into a state (or a wait).
    Done(State),
    /// It failed; the cookie path goes on as if there had been none (Clerk logs it).
    Continue,
    /// A development instance's handshake token did not verify.
    Broken(Failure),
}

struct Flow<'f, 'a> {
    facts: &'f RequestFacts<'a>,
    snap: &'f Snapshot<'f>,
    pk: &'f PublishableKey,
}

fn signed_out(failure: Failure) -> State {
    State::SignedOut { failure, headers: StateHeaders::default(), loop_stopped: false }
}

fn signed_in(verified: Arc<Verified>, status: AuthStatus, headers: StateHeaders) -> State {
    State::SignedIn { verified, status, headers }
}

impl Flow<'_, '_> {
    fn development(&self) -> bool {
        !self.pk.production
    }

    /// Clerk's SDK has an API client when the gateway has a secret key. In bypass mode (on a
    /// `bypass = "never"` route, the only one that gets here) the Backend API is never called:
    /// the flow goes on as without a client.
    fn api_client(&self) -> bool {
        self.snap.config.clerk.secret_key.is_some() && self.facts.mode.mode != crate::mode::Mode::Bypass
    }

    fn check(&self, token: &str, carrier: Carrier) -> TokenCheck {
        match self.snap.signatures.verify(token, carrier, self.facts.refetched) {
            Ok(v) => accept(v, carrier, self.facts, self.snap, self.snap.skew_ms()),
            Err(Unsigned::NeedKid(kid)) => TokenCheck::NeedKid(kid),
            Err(Unsigned::Failed(f)) => TokenCheck::Invalid(f),
        }
    }

    /// A checked token as a state; a failure goes through [`Self::token_error`].
    fn checked(&self, check: TokenCheck) -> State {
        match check {
            TokenCheck::Accepted(v) => signed_in(v, AuthStatus::SignedIn, StateHeaders::default()),
            TokenCheck::Grace(v) => signed_in(v, AuthStatus::Grace, StateHeaders::default()),
            TokenCheck::Refused(f) => signed_out(f),
            TokenCheck::Invalid(f) => self.token_error(f),
            TokenCheck::NeedKid(kid) => State::NeedKid(kid),
        }
    }

    // === §4.2: the header path ===

    fn header_path(&self, token: &str) -> State {
        self.checked(self.check(token, Carrier::Header))
    }

    // === §4.3: the cookie path ===

    fn cookie_path(&self) -> State {
        // 1. A returning handshake.
        match self.resolve_handshake() {
            Some(Resolution::Done(state)) => return state,
            Some(Resolution::Broken(f)) => return State::Broken(f),
            Some(Resolution::Continue) | None => {}
        }
        // 2. Satellite and multi-domain sync: a gateway serves its primary domain only.
        let cookies = self.facts.cookies();
        // 3–4. A development instance needs its dev browser.
        if self.development() {
            if self.facts.has_query_param(handshake::DEV_BROWSER) {
                return self.candidate(Failure::new(Reason::DevBrowserSync, ""));
            }
            if self.dev_browser().is_none() {
                return self.candidate(Failure::new(Reason::DevBrowserMissing, ""));
            }
        }
        let client_uat = cookies.client_uat().map_or(0.0, |c| parse_int(c.as_str()));
        let active = client_uat != 0.0;
        let session = cookies.session();
        // 5–7. What `__client_uat` and the session cookie say together.
        let token = match (active, &session) {
            (false, None) => return signed_out(Failure::new(Reason::SessionTokenAndUatMissing, "")),
            (false, Some(_)) => return self.candidate(Failure::new(Reason::SessionTokenButNoClientUat, "")),
            (true, None) => return self.candidate(Failure::new(Reason::ClientUatButNoSessionToken, "")),
            (true, Some(token)) => token.as_str(),
        };
        // 8–11. Decode, token type, `iat` before `client_uat`, verify. The signed stage usually
        // answers from the verdict cache, so the claims are decoded again only when it fails.
        let check = match self.snap.signatures.verify(token, Carrier::Cookie, self.facts.refetched) {
            Ok(v) => {
                let iat_before = match v.iat {
                    verify::TimeClaim::At(ms) => (ms as f64 / 1000.0) < client_uat,
                    verify::TimeClaim::Missing => false,
                    verify::TimeClaim::NotANumber => unverified_iat_before(token, client_uat),
                };
                if iat_before {
                    return self.candidate(Failure::new(Reason::SessionTokenIatBeforeClientUat, ""));
                }
                accept(v, Carrier::Cookie, self.facts, self.snap, self.snap.skew_ms())
            }
            Err(unsigned) => {
                let decoded = match verify::decode(token, Carrier::Cookie) {
                    Ok(d) => d,
                    Err(f) => return self.token_error(f),
                };
                if decoded.token_type_mismatch() {
                    return signed_out(Failure::new(
                        Reason::TokenTypeMismatch,
                        "The token is not a session token. (reason=token-type-mismatch, token-carrier=cookie)",
                    ));
                }
                if decoded.payload.get("iat").is_some_and(|iat| js_less(iat, client_uat)) {
                    return self.candidate(Failure::new(Reason::SessionTokenIatBeforeClientUat, ""));
                }
                match unsigned {
                    Unsigned::NeedKid(kid) => TokenCheck::NeedKid(kid),
                    Unsigned::Failed(f) => TokenCheck::Invalid(f),
                }
            }
        };
        let state = self.checked(check);
        // 13. A page load from another site onto the primary domain syncs first. Grace, for a
        // Frontend API outage, never sends a signed-in visitor there.
        if let State::SignedIn { .. } = &state {
            if !self.facts.grace() && self.cross_origin_sync() {
                return self.candidate(Failure::new(
                    Reason::PrimaryDomainCrossOriginSync,
                    "Cross-origin request from satellite domain requires handshake",
                ));
            }
        }
        // 14. Organisation sync is not configured; 15. signed in.
        state
    }

    fn dev_browser(&self) -> Option<String> {
        dev_browser(self.facts)
    }

    /// Step 13 (`isCrossOriginReferrer` and not `isKnownClerkReferrer`): a `GET` page load
    /// (`Sec-Fetch-Dest: document` exactly) whose `Referer` is another origin that is not Clerk's,
    /// outside a handshake loop.
    fn cross_origin_sync(&self) -> bool {
        if *self.facts.method != Method::GET || self.facts.header(&SEC_FETCH_DEST) != Some("document") {
            return false;
        }
        let Some(referer) = self.facts.referer().and_then(url_origin) else {
            return false;
        };
        if referer.origin == self.facts.public_url().origin() {
            return false;
        }
        let fapi = handshake::frontend_api(self.snap.config, self.pk, self.facts.public_url().origin());
        if handshake::known_clerk_referrer(&referer, &fapi, self.pk.production) {
            return false;
        }
        self.redirect_count() == 0.0
    }

    /// `Number(__clerk_redirect_count) || 0`.
    fn redirect_count(&self) -> f64 {
        let n = self.facts.cookies().redirect_count().map_or(0.0, |c| js_number(c.as_str()));
        if n.is_nan() {
            0.0
        } else {
            n
        }
    }

    // === §4.4: a verification failure ===

    /// `handleSessionTokenError`: an expired token may be refreshed; an expired, early or
    /// future-issued one is a handshake candidate with Clerk's converted reason; anything else
    /// is signed out with its own reason.
    fn token_error(&self, failure: Failure) -> State {
        let mut refresh = None;
        if failure.reason == Reason::TokenExpired {
            let get = *self.facts.method == Method::GET;
            if get && self.facts.cookies().refresh().is_some() {
                match self.refresh() {
                    Ok(state) => return state,
                    Err(why) => refresh = Some(why),
                }
            } else if !get {
                refresh = Some("non-eligible-non-get".to_string());
            } else {
                refresh = Some("non-eligible-no-refresh-cookie".to_string());
            }
        }
        let reason = match failure.reason {
            Reason::TokenExpired => Reason::SessionTokenExpired,
            Reason::TokenNotActiveYet => Reason::SessionTokenNbf,
            Reason::TokenIatInTheFuture => Reason::SessionTokenIatInTheFuture,
            _ => return signed_out(failure),
        };
        self.candidate(Failure { reason, message: failure.message, refresh })
    }

    /// The session token Clerk's SDK reports and refreshes: the cookie's, else the header's.
    fn session_token(&self) -> Option<String> {
        match self.facts.cookies().session() {
            Some(c) => Some(c.as_str().to_string()),
            None => self.facts.token().map(|(t, _)| t.to_string()),
        }
    }

    /// The refresh (`refreshToken` + `attemptRefresh`): `Ok` with the state it comes to (or the
    /// call to wait for), `Err` with Clerk's refresh-failure reason.
    fn refresh(&self) -> Result<State, String> {
        if !self.api_client() {
            return Err("missing-api-client".into());
        }
        let Some(expired) = self.session_token() else {
            return Err("missing-session-token".into());
        };
        let Some(refresh_token) = self.facts.cookies().refresh() else {
            return Err("missing-refresh-token".into());
        };
        let Ok(decoded) = verify::decode(&expired, Carrier::Cookie) else {
            return Err("expired-session-token-decode-failed".into());
        };
        // Clerk's SDK puts the sid into the refresh URL's path as it is; one that is not a plain
        // id (`sess_…`) could change the URL, so it counts as missing.
        let session_id = match decoded.payload.get("sid") {
            Some(Value::String(s))
                if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                s.clone()
            }
            _ => return Err("expired-session-token-missing-sid-claim".into()),
        };
        let cookies = match &self.facts.resumed.refresh {
            None => {
                let body = json!({
                    "format": "cookie",
                    "expired_token": expired,
                    "refresh_token": refresh_token.as_str(),
                    "request_origin": self.facts.public_url().origin(),
                    "request_headers": request_headers(self.facts),
                });
                let suffixed = self.facts.cookies().suffixed();
                return Ok(State::Call(BackendCall::Refresh { session_id, suffixed, body }));
            }
            Some(Err(why)) => return Err(why.clone()),
            Some(Ok(cookies)) => cookies,
        };
        if cookies.is_empty() {
            return Err("unexpected-sdk-error".into());
        }
        let (headers, session) = directives(cookies).ok_or("unexpected-sdk-error")?;
        let token = session.flatten().unwrap_or_default();
        match self.check(token, Carrier::Cookie) {
            TokenCheck::Accepted(v) => Ok(signed_in(v, AuthStatus::SignedIn, headers)),
            TokenCheck::Grace(v) => Ok(signed_in(v, AuthStatus::Grace, headers)),
            TokenCheck::NeedKid(kid) => Ok(State::NeedKid(kid)),
            // Verified, but revoked or pending at the gateway: signed out, cookies still set.
            TokenCheck::Refused(failure) => Ok(State::SignedOut { failure, headers, loop_stopped: false }),
            TokenCheck::Invalid(_) => Err("invalid-session-token".into()),
        }
    }

    // === §4.5: the handshake redirect ===

    /// `handleMaybeHandshakeStatus`: a page load goes to the Frontend API's handshake, unless
    /// this would be the fourth redirect in a row; anything else is signed out for the same
    /// reason.
    fn candidate(&self, failure: Failure) -> State {
        if !self.facts.document() {
            return signed_out(failure);
        }
        let count = self.redirect_count();
        if count == 3.0 {
            return State::SignedOut { failure, headers: StateHeaders::default(), loop_stopped: true };
        }
        let public = self.facts.public_url();
        let fapi = handshake::frontend_api(self.snap.config, self.pk, public.origin());
        let dev_browser = if self.development() { self.dev_browser() } else { None };
        let location = handshake::location(&handshake::HandshakeUrl {
            frontend_api: &fapi,
            redirect_url: &public.href_without(&[handshake::DEV_BROWSER, handshake::LEGACY_DEV_BROWSER]),
            suffixed: self.facts.cookies().suffixed(),
            reason: &failure.wire_reason(),
            session: self.session_token().as_deref(),
            dev_browser: dev_browser.as_deref(),
        });
        State::Handshake { failure, location, counter_cookie: handshake::counter_cookie(count + 1.0) }
    }

    // === §4.6: resolving a returning handshake ===

    /// `resolveHandshake`, when the request carries a handshake nonce or token (query first,
    /// then cookie; a nonce wins).
    fn resolve_handshake(&self) -> Option<Resolution> {
        let cookies = self.facts.cookies();
        let from = |param: &str, cookie: Option<super::token::Cookie<'_>>| {
            self.facts.query_param(param).filter(|v| !v.is_empty()).or_else(|| cookie.map(|c| c.as_str().to_string()))
        };
        let nonce = from(handshake::HANDSHAKE_NONCE, cookies.handshake_nonce());
        let token = if nonce.is_none() { from(handshake::HANDSHAKE, cookies.handshake()) } else { None };
        let list: Vec<String> = if let Some(nonce) = nonce {
            if !self.api_client() {
                Vec::new()
            } else {
                match &self.facts.resumed.handshake_payload {
                    None => return Some(Resolution::Done(State::Call(BackendCall::HandshakePayload { nonce }))),
                    Some(Ok(directives)) => directives.clone(),
                    // Clerk's SDK logs the failure and goes on with no directives.
                    Some(Err(_)) => Vec::new(),
                }
            }
        } else {
            let token = token?;
            match self.snap.signatures.verify_handshake(&token, self.facts.refetched) {
                Ok(payload) => match payload.get("handshake") {
                    Some(Value::Array(list)) => {
                        match list.iter().map(|d| d.as_str().map(str::to_string)).collect::<Option<Vec<_>>>() {
                            Some(list) => list,
                            None => return Some(Resolution::Continue),
                        }
                    }
                    _ => Vec::new(),
                },
                Err(Unsigned::NeedKid(kid)) => return Some(Resolution::Done(State::NeedKid(kid))),
                Err(Unsigned::Failed(f)) if self.development() => {
                    return Some(Resolution::Broken(handshake::development_failure(&f)))
                }
                Err(Unsigned::Failed(_)) => return Some(Resolution::Continue),
            }
        };
        let Some((mut headers, session)) = directives(&list) else {
            return Some(Resolution::Continue);
        };
        headers.cors = true;
        if self.development() {
            headers.location = Some(self.facts.public_url().href_without(&handshake::HANDSHAKE_PARAMS));
        }
        let token = match session {
            None | Some(Some("")) => {
                let failure = Failure::new(Reason::SessionTokenMissing, "");
                return Some(Resolution::Done(State::SignedOut { failure, headers, loop_stopped: false }));
            }
            // A `__session` directive without `=`: Clerk's SDK verifies `undefined`, fails, goes on.
            Some(None) => return Some(Resolution::Continue),
            Some(Some(token)) => token,
        };
        let v = match self.snap.signatures.verify(token, Carrier::Cookie, self.facts.refetched) {
            Ok(v) => v,
            Err(Unsigned::NeedKid(kid)) => return Some(Resolution::Done(State::NeedKid(kid))),
            Err(Unsigned::Failed(_)) => return Some(Resolution::Continue),
        };
        let state = match accept(v.clone(), Carrier::Cookie, self.facts, self.snap, self.snap.skew_ms()) {
            TokenCheck::Accepted(v) => signed_in(v, AuthStatus::SignedIn, headers),
            TokenCheck::Grace(v) => signed_in(v, AuthStatus::Grace, headers),
            TokenCheck::Refused(failure) => State::SignedOut { failure, headers, loop_stopped: false },
            // A development instance forgives a wrong clock once, with a 24-hour skew.
            TokenCheck::Invalid(f) if self.development() && recoverable(f.reason) => {
                match accept(v, Carrier::Cookie, self.facts, self.snap, DEV_HANDSHAKE_SKEW_MS) {
                    TokenCheck::Accepted(v) => signed_in(v, AuthStatus::SignedIn, headers),
                    TokenCheck::Grace(v) => signed_in(v, AuthStatus::Grace, headers),
                    TokenCheck::Refused(failure) => State::SignedOut { failure, headers, loop_stopped: false },
                    TokenCheck::Invalid(_) | TokenCheck::NeedKid(_) => return Some(Resolution::Continue),
                }
            }
            TokenCheck::Invalid(_) | TokenCheck::NeedKid(_) => return Some(Resolution::Continue),
        };
        Some(Resolution::Done(state))
    }
}

/// The dev-browser token: the query's `__clerk_db_jwt`, else the cookie.
pub fn dev_browser(facts: &RequestFacts<'_>) -> Option<String> {
    facts
        .query_param(handshake::DEV_BROWSER)
        .filter(|v| !v.is_empty())
        .or_else(|| facts.cookies().dev_browser().map(|c| c.as_str().to_string()))
}

/// The reasons Clerk recovers from with a handshake (and a development handshake with a skew).
fn recoverable(reason: Reason) -> bool {
    matches!(reason, Reason::TokenExpired | Reason::TokenNotActiveYet | Reason::TokenIatInTheFuture)
}

/// Directives as `Set-Cookie` values, and the session token among them: the value of the last
/// directive whose name starts with `__session` (`Some(None)` when it has no `=`). `None` when a
/// directive cannot be a header value (Clerk's `Headers.append` throws on it).
fn directives(list: &[String]) -> Option<(StateHeaders, Option<Option<&str>>)> {
    let mut headers = StateHeaders::default();
    let mut session = None;
    for d in list {
        headers.set_cookies.push(HeaderValue::from_str(d).ok()?);
        let first = d.split(';').next().unwrap_or_default();
        let mut pieces = first.split('=');
        if pieces.next().unwrap_or_default().starts_with("__session") {
            session = Some(pieces.next());
        }
    }
    Some((headers, session))
}

/// The request's headers as Clerk sends them with a refresh: lower-case names in order, each
/// with its (comma-joined) value in a one-element list.
fn request_headers(facts: &RequestFacts<'_>) -> Value {
    let mut names: Vec<&str> = facts.headers().keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Map::new();
    for name in names {
        let values: Vec<&str> = facts.headers().get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        out.insert(name.to_string(), json!([values.join(", ")]));
    }
    Value::Object(out)
}

/// `payload.iat < clientUat` with JavaScript's comparison, for an `iat` that is not a number.
fn unverified_iat_before(token: &str, client_uat: f64) -> bool {
    verify::decode(token, Carrier::Cookie)
        .ok()
        .and_then(|d| d.payload.get("iat").map(|iat| js_less(iat, client_uat)))
        .unwrap_or(false)
}

/// `value < n` as JavaScript compares a JSON value with a number.
fn js_less(value: &Value, n: f64) -> bool {
    let x = match value {
        Value::Number(v) => v.as_f64().unwrap_or(f64::NAN),
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::String(s) => js_number(s),
        Value::Array(_) | Value::Object(_) => f64::NAN,
    };
    x < n
}

#[cfg(test)]
#[path = "browser_tests.rs"]
mod tests;
