//! Session-token verification, exactly in the order of Clerk's `verifyToken` (clerk-semantics §2).
//!
//! Verification is pure and synchronous and is split in two stages so that the verdict cache
//! can never accept what a fresh check would refuse:
//!
//! 1. [`verify_signed`] — everything that depends only on the token, the keys and the config:
//!    form, token type, `typ`, `alg`, key, signature, `sub`, `azp`, `iss`. Its success, a
//!    [`Verified`], is what the verdict cache stores.
//! 2. [`check_time`] — everything that depends on the clock: `exp`, `nbf`, `iat` with the skew,
//!    in Clerk's order. It runs on every request, cache hit or not.
//!
//! Keys come only from the configured sources; `jku`, `x5u`, `jwk` and `x5c` in a token header
//! are never read.

use std::sync::Arc;

use base64::Engine;
use http::HeaderValue;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::claims::SessionClaims;
use super::reason::{Failure, Reason};
use crate::clock::from_ms;
use crate::keys::{KeySet, VerifyingKey};

/// Clerk's session-token category (`cat` header).
pub const CAT_SESSION: &str = "cl_B7d4PD111AAA";
/// Clerk's "ignore" category, accepted like a session token.
pub const CAT_IGNORE: &str = "cl_I7d4PD111III";
/// Clerk's M2M category.
pub const CAT_M2M: &str = "cl_B7d4PD333AAA";

/// Where the token was found; Clerk puts it in every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// `Authorization` header.
    Header,
    /// `__session` cookie.
    Cookie,
}

impl Carrier {
    /// The name Clerk uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Carrier::Header => "header",
            Carrier::Cookie => "cookie",
        }
    }
}

/// The verification settings taken from the config.
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    /// Allowed `azp` values; empty = not checked.
    pub authorized_parties: &'a [String],
    /// Required `iss`, when set.
    pub issuer: Option<&'a str>,
    /// Skew in milliseconds, applied to exp/nbf/iat.
    pub skew_ms: i64,
}

/// A time claim as found in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeClaim {
    /// Absent.
    Missing,
    /// A JSON number, as milliseconds (seconds truncated, like JS `setUTCSeconds`).
    At(i64),
    /// Present but not a number.
    NotANumber,
}

impl TimeClaim {
    fn from_value(v: Option<&Value>) -> Self {
        match v {
            None => TimeClaim::Missing,
            Some(Value::Number(n)) => {
                let secs = n.as_i64().or_else(|| n.as_f64().map(|f| f.trunc().clamp(-1e15, 1e15) as i64));
                secs.map_or(TimeClaim::NotANumber, |s| TimeClaim::At(s.saturating_mul(1000)))
            }
            Some(_) => TimeClaim::NotANumber,
        }
    }

    /// The time in ms when it is a number.
    pub fn ms(self) -> Option<i64> {
        match self {
            TimeClaim::At(ms) => Some(ms),
            _ => None,
        }
    }
}

/// The identity headers for a verified token, built once per verification so that a cache hit
/// only clones reference-counted values.
#[derive(Debug, Clone, Default)]
pub struct IdentityHeaders {
    /// `X-Clerk-User-Id`.
    pub user_id: Option<HeaderValue>,
    /// `X-Clerk-Session-Id`.
    pub session_id: Option<HeaderValue>,
    /// `X-Clerk-Org-Id`.
    pub org_id: Option<HeaderValue>,
    /// `X-Clerk-Org-Slug`.
    pub org_slug: Option<HeaderValue>,
    /// `X-Clerk-Org-Role`.
    pub org_role: Option<HeaderValue>,
    /// `X-Clerk-Org-Permissions`.
    pub org_permissions: Option<HeaderValue>,
    /// `X-Clerk-Actor`.
    pub actor: Option<HeaderValue>,
}

/// A token whose signature and time-independent claims passed: what the verdict cache holds.
#[derive(Debug)]
pub struct Verified {
    /// The normalised auth object.
    pub claims: SessionClaims,
    /// `exp`.
    pub exp: TimeClaim,
    /// `nbf`.
    pub nbf: TimeClaim,
    /// `iat`.
    pub iat: TimeClaim,
    /// Headers to hand the upstream.
    pub identity: IdentityHeaders,
}

/// Why [`verify_signed`] did not produce a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The token is refused.
    Failed(Failure),
    /// The token names a `kid` the key set does not hold; the caller may refetch once and retry.
    UnknownKid(String),
    /// No usable key is loaded at all.
    NoKeys,
}

/// The part of a token that is read before any key is chosen.
#[derive(Debug)]
pub struct Decoded<'t> {
    /// `header.payload`, the signed bytes.
    pub signing_input: &'t str,
    /// The signature, base64url as received.
    pub signature_b64: &'t str,
    /// The header.
    pub header: Header,
    /// The payload.
    pub payload: Map<String, Value>,
}

/// The JOSE header fields Clerk looks at.
#[derive(Debug, Default, Deserialize)]
pub struct Header {
    /// `alg`.
    pub alg: Option<Value>,
    /// `typ`.
    pub typ: Option<Value>,
    /// `kid`.
    pub kid: Option<Value>,
    /// `cat` (Clerk's token category).
    pub cat: Option<Value>,
}

const FORM_MESSAGE: &str = "Invalid JWT form. A JWT consists of three parts separated by dots.";

fn fail(reason: Reason, message: impl Into<String>, carrier: Carrier) -> Failure {
    Failure::new(reason, format!("{} (reason={}, token-carrier={})", message.into(), reason.as_str(), carrier.as_str()))
}

/// Splits and decodes a compact JWT without verifying anything (clerk-semantics §2.1).
pub fn decode(token: &str, carrier: Carrier) -> Result<Decoded<'_>, Failure> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(fail(Reason::TokenInvalid, FORM_MESSAGE, carrier));
    };
    let undecodable =
        || fail(Reason::TokenInvalid, "Invalid JWT. The header or payload could not be decoded.", carrier);
    let header_bytes = b64_loose(h).ok_or_else(undecodable)?;
    let payload_bytes = b64_loose(p).ok_or_else(undecodable)?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| undecodable())?;
    let payload: Map<String, Value> = serde_json::from_slice(&payload_bytes).map_err(|_| undecodable())?;
    Ok(Decoded { signing_input: &token[..h.len() + 1 + p.len()], signature_b64: s, header, payload })
}

/// Base64url in Clerk's loose mode: padding optional.
fn b64_loose(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

fn js_string(v: Option<&Value>) -> String {
    match v {
        None => "undefined".into(),
        Some(Value::String(s)) => format!("\"{s}\""),
        Some(other) => other.to_string(),
    }
}

/// Machine tokens (OAuth access tokens, M2M) and non-session categories are not session tokens
/// (clerk-semantics §4.2 step 1). Runs on the unverified token, before any key is touched.
pub fn token_type_mismatch(decoded: &Decoded<'_>) -> bool {
    let typ = decoded.header.typ.as_ref().and_then(Value::as_str);
    if matches!(typ, Some("at+jwt") | Some("application/at+jwt")) {
        return true;
    }
    if decoded.payload.get("sub").and_then(Value::as_str).is_some_and(|s| s.starts_with("mch_")) {
        return true;
    }
    match decoded.header.cat.as_ref() {
        None => false,
        Some(Value::String(c)) => c != CAT_SESSION && c != CAT_IGNORE,
        Some(_) => true,
    }
}

/// Stage one: everything but the clock. `keys` is the remote set (already checked for
/// staleness by the caller: pass `None` when it is unusable); `static_key` the networkless key.
pub fn verify_signed(
    token: &str,
    carrier: Carrier,
    keys: Option<&KeySet>,
    static_key: Option<&Arc<VerifyingKey>>,
    policy: &Policy<'_>,
) -> Result<Verified, Refusal> {
    let decoded = decode(token, carrier).map_err(Refusal::Failed)?;
    if token_type_mismatch(&decoded) {
        return Err(Refusal::Failed(fail(Reason::TokenTypeMismatch, "The token is not a session token.", carrier)));
    }
    let header = &decoded.header;
    match &header.typ {
        None => {}
        Some(Value::String(t)) if t == "JWT" => {}
        Some(other) => {
            return Err(Refusal::Failed(fail(
                Reason::TokenInvalid,
                format!("Invalid JWT type {}. Expected \"JWT\".", js_string(Some(other))),
                carrier,
            )))
        }
    }
    let alg = header.alg.as_ref().and_then(Value::as_str);
    if !matches!(alg, Some("RS256") | Some("RS384") | Some("RS512")) {
        return Err(Refusal::Failed(fail(
            Reason::TokenInvalidAlgorithm,
            format!("Invalid JWT algorithm {}. Supported: RS256,RS384,RS512.", js_string(header.alg.as_ref())),
            carrier,
        )));
    }
    let kid = header.kid.as_ref().and_then(Value::as_str);
    let key = match (kid.and_then(|k| keys.and_then(|set| set.get(k))), static_key) {
        (Some(k), _) => k,
        (None, Some(k)) => k,
        (None, None) if keys.is_some() => return Err(Refusal::UnknownKid(kid.unwrap_or_default().to_string())),
        (None, None) => return Err(Refusal::NoKeys),
    };
    if alg != Some("RS256") {
        // Clerk's keys are RS256 keys; WebCrypto refuses to use them for SHA-384/512, so Clerk
        // ends such tokens in `token-verification-failed`. The gateway does the same.
        return Err(Refusal::Failed(fail(
            Reason::TokenVerificationFailed,
            "Error verifying JWT signature. The key cannot verify this algorithm.",
            carrier,
        )));
    }
    let Some(signature) = b64_loose(decoded.signature_b64) else {
        return Err(Refusal::Failed(fail(Reason::TokenInvalidSignature, "JWT signature is invalid.", carrier)));
    };
    if !key.verify(decoded.signing_input.as_bytes(), &signature) {
        return Err(Refusal::Failed(fail(Reason::TokenInvalidSignature, "JWT signature is invalid.", carrier)));
    }
    let payload = &decoded.payload;
    if !matches!(payload.get("sub"), Some(Value::String(_))) {
        return Err(Refusal::Failed(fail(
            Reason::TokenVerificationFailed,
            format!(
                "Subject claim (sub) is required and must be a string. Received {}. Make sure that this is a valid Clerk-generated JWT.",
                js_string(payload.get("sub"))
            ),
            carrier,
        )));
    }
    if !policy.authorized_parties.is_empty() {
        let azp = payload.get("azp");
        let ok = match azp {
            Some(Value::String(a)) if !a.is_empty() => policy.authorized_parties.iter().any(|p| p == a),
            _ => false,
        };
        if !ok {
            return Err(Refusal::Failed(fail(
                Reason::TokenInvalidAuthorizedParties,
                format!(
                    "Invalid JWT Authorized party claim (azp) {}. Expected \"{}\".",
                    js_string(azp),
                    policy.authorized_parties.join(",")
                ),
                carrier,
            )));
        }
    }
    if let Some(expected) = policy.issuer {
        let iss = payload.get("iss");
        let ok = iss.and_then(Value::as_str).is_some_and(|i| i.trim_end_matches('/') == expected);
        if !ok {
            return Err(Refusal::Failed(fail(
                Reason::IssuerMismatch,
                format!("Invalid JWT issuer claim (iss) {}. Expected \"{expected}\".", js_string(iss)),
                carrier,
            )));
        }
    }
    let claims = SessionClaims::from_payload(payload);
    let identity = identity_headers(&claims);
    Ok(Verified {
        exp: TimeClaim::from_value(payload.get("exp")),
        nbf: TimeClaim::from_value(payload.get("nbf")),
        iat: TimeClaim::from_value(payload.get("iat")),
        claims,
        identity,
    })
}

fn header_value(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(s).ok()
}

fn identity_headers(c: &SessionClaims) -> IdentityHeaders {
    let org = c.org.as_ref();
    IdentityHeaders {
        user_id: header_value(&c.user_id),
        session_id: c.session_id.as_deref().and_then(header_value),
        org_id: org.and_then(|o| header_value(&o.id)),
        org_slug: org.and_then(|o| o.slug.as_deref()).and_then(header_value),
        org_role: org.and_then(|o| o.role.as_deref()).and_then(header_value),
        org_permissions: c.permissions_header().as_deref().and_then(header_value),
        actor: c.actor.as_deref().and_then(header_value),
    }
}

/// The outcome of the clock checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeVerdict {
    /// Within every bound.
    Valid,
    /// The only fault is `exp`, passed by this many milliseconds (grace may accept it).
    Expired {
        /// How long ago the token expired, counted from `exp` itself.
        by_ms: i64,
        /// The refusal to give when grace does not apply.
        failure: Failure,
    },
    /// Refused.
    Failed(Failure),
}

fn date(ms: i64) -> String {
    // `httpdate` panics outside 1970..=9999, and every time claim is the token's to choose.
    const LAST_MS: i64 = 253_402_300_799_999;
    if (0..=LAST_MS).contains(&ms) {
        httpdate::fmt_http_date(from_ms(ms))
    } else {
        "Invalid Date".into()
    }
}

/// Stage two: `exp`, `nbf`, `iat` against `now_ms` with the skew, in Clerk's order.
pub fn check_time(v: &Verified, now_ms: i64, skew_ms: i64, carrier: Carrier) -> TimeVerdict {
    let mut expired = None;
    match v.exp {
        TimeClaim::At(exp) => {
            if exp <= now_ms - skew_ms {
                let failure = fail(
                    Reason::TokenExpired,
                    format!("JWT is expired. Expiry date: {}, Current date: {}.", date(exp), date(now_ms)),
                    carrier,
                );
                expired = Some((now_ms - exp, failure));
            }
        }
        TimeClaim::Missing | TimeClaim::NotANumber => {
            return TimeVerdict::Failed(fail(
                Reason::TokenVerificationFailed,
                "Invalid JWT expiry date claim (exp). Expected number.",
                carrier,
            ))
        }
    }
    // Clerk stops at the first failure, so a token that is both expired and not yet valid is
    // reported as expired. Grace must not accept it though: its only fault has to be `exp`.
    let later = match v.nbf {
        TimeClaim::NotANumber => Some(fail(
            Reason::TokenVerificationFailed,
            "Invalid JWT not before date claim (nbf). Expected number.",
            carrier,
        )),
        TimeClaim::At(nbf) if nbf > now_ms + skew_ms => Some(fail(
            Reason::TokenNotActiveYet,
            format!(
                "JWT cannot be used prior to not before date claim (nbf). Not before date: {}; Current date: {};",
                date(nbf),
                date(now_ms)
            ),
            carrier,
        )),
        _ => None,
    }
    .or_else(|| match v.iat {
        TimeClaim::NotANumber => Some(fail(
            Reason::TokenVerificationFailed,
            "Invalid JWT issued at date claim (iat). Expected number.",
            carrier,
        )),
        TimeClaim::At(iat) if iat > now_ms + skew_ms => Some(fail(
            Reason::TokenIatInTheFuture,
            format!(
                "JWT issued at date claim (iat) is in the future. Issued at date: {}; Current date: {};",
                date(iat),
                date(now_ms)
            ),
            carrier,
        )),
        _ => None,
    });
    match (expired, later) {
        (Some((_, failure)), Some(_)) => TimeVerdict::Failed(failure),
        (Some((by_ms, failure)), None) => TimeVerdict::Expired { by_ms, failure },
        (None, Some(failure)) => TimeVerdict::Failed(failure),
        (None, None) => TimeVerdict::Valid,
    }
}

/// The message for a kid that is not in the key set even after a refetch (clerk-semantics §2.4).
pub fn kid_mismatch(kid: &str, carrier: Carrier) -> Failure {
    fail(
        Reason::JwkKidMismatch,
        format!(
            "Unable to find a signing key in JWKS that matches the kid='{kid}' of the provided session token. Please make sure that the __session cookie or the HTTP authorization header contain a Clerk-generated session JWT. Go to your Dashboard and validate your secret and public keys are correct. Contact support@clerk.com if the issue persists."
        ),
        carrier,
    )
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
