//! Session-token verification, exactly in the order of Clerk's `verifyToken` (clerk-semantics §2).
//!
//! Verification is pure and synchronous and is split in two stages so that the verdict cache
//! can never accept what a fresh check would refuse:
//!
//! 1. [`verify_signed`] — everything that depends only on the token, the keys and the config:
//!    form (strict base64url, JSON objects), token type, `typ`, `alg`, key, signature, `sub`,
//!    `azp`, `iss`, then the organisation claims and the identity headers (a token whose claims
//!    Clerk's auth object cannot read, or whose identity a header cannot carry exactly, is
//!    refused here). Its success, a [`Verified`], is what the verdict cache stores.
//! 2. [`check_time`] — everything that depends on the clock: `exp`, `nbf`, `iat` with the skew,
//!    in Clerk's order. It runs on every request, cache hit or not, and is total over
//!    every claim and clock value.
//!
//! Keys come only from the configured sources; `jku`, `x5u`, `jwk` and `x5c` in a token header
//! are never read.

use std::sync::Arc;

use base64::Engine;
use http::HeaderValue;
use serde_json::{Map, Value};

use super::claims::SessionClaims;
pub use super::payload::Header;
use super::payload::{Claim, Parsed, Payload};
use crate::clock::js_utc_string;
use crate::keys::{KeySet, VerifyingKey};
use crate::reason::{Failure, Reason};

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
    /// Reads a claim; total for every number serde_json can hold.
    ///
    /// Seconds are truncated towards zero, as JavaScript's `setUTCSeconds` does, then scaled to
    /// milliseconds with saturation: a value beyond `i64` milliseconds (`1e300`, `u64::MAX`)
    /// becomes `i64::MIN` or `i64::MAX`, which every later comparison reads as "long ago" or
    /// "far ahead". serde_json never yields NaN or infinity; a float-to-int `as` cast would
    /// saturate them (NaN to 0) rather than panic anyway.
    fn from_value(v: Option<&Value>) -> Self {
        match v {
            None => TimeClaim::Missing,
            Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
                (Some(secs), _) => TimeClaim::At(secs.saturating_mul(1000)),
                (None, Some(secs)) => TimeClaim::At((secs.trunc() * 1000.0) as i64),
                (None, None) => TimeClaim::NotANumber,
            },
            Some(_) => TimeClaim::NotANumber,
        }
    }

    /// Reads a claim as [`TimeClaim::from_value`] does; a string is not a number.
    fn from_claim(claim: Option<&Claim<'_>>) -> Self {
        match claim {
            None => TimeClaim::Missing,
            Some(Claim::Str(_)) => TimeClaim::NotANumber,
            Some(Claim::Json(value)) => TimeClaim::from_value(Some(value)),
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
///
/// Every value is exactly the claim it comes from: a claim that a header cannot carry byte for
/// byte refuses the token instead (see [`verify_signed`]), so a signed-in request always has its
/// user id and never a silently shortened identity.
#[derive(Debug, Clone)]
pub struct IdentityHeaders {
    /// `X-Clerk-User-Id`, always present.
    pub user_id: HeaderValue,
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

/// A token read without verifying anything, its payload as the whole JSON object: for the
/// paths that look at an unverified token (the browser flow, the handshake). Verification reads
/// only the claims it checks, borrowed from the token ([`Segments`]).
#[derive(Debug)]
pub struct Decoded<'t> {
    /// `header.payload`, the signed bytes.
    pub signing_input: &'t str,
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// The header.
    pub header: Header<'static>,
    /// The payload.
    pub payload: Map<String, Value>,
}

const FORM_MESSAGE: &str = "Invalid JWT form. A JWT consists of three parts separated by dots.";
const SEGMENT_MESSAGE: &str = "Invalid JWT form. The header, payload, or signature could not be decoded.";

fn fail(reason: Reason, message: impl Into<String>, carrier: Carrier) -> Failure {
    Failure::new(reason, format!("{} (reason={}, token-carrier={})", message.into(), reason.as_str(), carrier.as_str()))
}

/// How every token segment is decoded: the URL-safe alphabet, no `=` padding, and the unused
/// low bits of the last character zero, so that each byte string has exactly one accepted
/// spelling (RFC 7515 §2 and RFC 4648 §3.5).
///
/// Clerk's `decodeJwt` (rfc4648's loose mode) refuses the other alphabet and stray trailing
/// bits too, but tolerates padding; the gateway refuses padding as well (README, decisions).
const SEGMENT: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// A compact JWT split into its three segments and each decoded from base64url
/// ([`SEGMENT`]), all three into one buffer (clerk-semantics §2.1). Nothing is verified.
#[derive(Debug)]
pub struct Segments<'t> {
    /// `header.payload`, the signed bytes.
    pub signing_input: &'t str,
    bytes: Vec<u8>,
    header_end: usize,
    payload_end: usize,
}

impl<'t> Segments<'t> {
    /// Splits and decodes `token`: three segments, each strictly base64url. Any failure is
    /// Clerk's `token-invalid`.
    pub fn split(token: &'t str, carrier: Carrier) -> Result<Self, Failure> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(fail(Reason::TokenInvalid, FORM_MESSAGE, carrier));
        };
        // Room for the three decoded segments at once: no segment's decoding reallocates.
        let mut bytes = Vec::with_capacity(token.len() / 4 * 3 + 12);
        let mut append = |segment: &str| SEGMENT.decode_vec(segment, &mut bytes).map(|()| bytes.len());
        let (Ok(header_end), Ok(payload_end), Ok(_)) = (append(h), append(p), append(s)) else {
            return Err(fail(Reason::TokenInvalid, SEGMENT_MESSAGE, carrier));
        };
        Ok(Segments { signing_input: &token[..h.len() + 1 + p.len()], bytes, header_end, payload_end })
    }

    /// The signature bytes.
    pub fn signature(&self) -> &[u8] {
        &self.bytes[self.payload_end..]
    }

    /// The header and the payload, each a JSON object (an array, a string or `null` is not
    /// one), the payload read as `P`: a failure is Clerk's `token-invalid`.
    pub fn read<'s, P: serde::Deserialize<'s>>(&'s self, carrier: Carrier) -> Result<(Header<'s>, P), Failure> {
        let header = serde_json::from_slice(&self.bytes[..self.header_end]);
        let payload = serde_json::from_slice(&self.bytes[self.header_end..self.payload_end]);
        match (header, payload) {
            (Ok(header), Ok(payload)) => Ok((header, payload)),
            _ => Err(fail(Reason::TokenInvalid, SEGMENT_MESSAGE, carrier)),
        }
    }
}

impl Decoded<'_> {
    /// [`token_type_mismatch`] for this token.
    pub fn token_type_mismatch(&self) -> bool {
        token_type_mismatch(&self.header, self.payload.get("sub").and_then(Value::as_str))
    }
}

/// Splits and decodes a compact JWT without verifying anything ([`Segments`]), the payload as
/// the whole JSON object, read as `JSON.parse` reads it ([`Parsed`]).
pub fn decode(token: &str, carrier: Carrier) -> Result<Decoded<'_>, Failure> {
    let segments = Segments::split(token, carrier)?;
    let (header, Parsed(Value::Object(payload))) = segments.read::<Parsed>(carrier)? else {
        return Err(fail(Reason::TokenInvalid, SEGMENT_MESSAGE, carrier));
    };
    Ok(Decoded {
        signing_input: segments.signing_input,
        signature: segments.signature().to_vec(),
        header: header.into_owned(),
        payload,
    })
}

/// A claim as Clerk's messages print it: a string in quotes, any other value as JSON.
fn js_string(claim: Option<&Claim<'_>>) -> String {
    match claim {
        None => "undefined".into(),
        Some(Claim::Str(s)) => format!("\"{s}\""),
        Some(Claim::Json(other)) => other.to_string(),
    }
}

/// Machine tokens (OAuth access tokens, M2M) and non-session categories are not session tokens
/// (clerk-semantics §4.2 step 1). Runs on the unverified token, before any key is touched.
pub fn token_type_mismatch(header: &Header<'_>, sub: Option<&str>) -> bool {
    let typ = header.typ.as_ref().and_then(Claim::as_str);
    if matches!(typ, Some("at+jwt") | Some("application/at+jwt")) {
        return true;
    }
    if sub.is_some_and(|s| s.starts_with("mch_")) {
        return true;
    }
    match &header.cat {
        None => false,
        Some(Claim::Str(c)) => c != CAT_SESSION && c != CAT_IGNORE,
        Some(Claim::Json(_)) => true,
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
    let segments = Segments::split(token, carrier).map_err(Refusal::Failed)?;
    let (header, payload) = segments.read::<Payload<'_>>(carrier).map_err(Refusal::Failed)?;
    if token_type_mismatch(&header, payload.sub.as_ref().and_then(Claim::as_str)) {
        return Err(Refusal::Failed(fail(Reason::TokenTypeMismatch, "The token is not a session token.", carrier)));
    }
    let key = header_and_key(&header, carrier, keys, static_key)?;
    if !key.verify(segments.signing_input.as_bytes(), segments.signature()) {
        return Err(Refusal::Failed(fail(Reason::TokenInvalidSignature, "JWT signature is invalid.", carrier)));
    }
    if !matches!(payload.sub, Some(Claim::Str(_))) {
        return Err(Refusal::Failed(fail(
            Reason::TokenVerificationFailed,
            format!(
                "Subject claim (sub) is required and must be a string. Received {}. Make sure that this is a valid Clerk-generated JWT.",
                js_string(payload.sub.as_ref())
            ),
            carrier,
        )));
    }
    if !policy.authorized_parties.is_empty() {
        let azp = payload.azp.as_ref();
        let ok = match azp.and_then(Claim::as_str) {
            Some(a) if !a.is_empty() => policy.authorized_parties.iter().any(|p| p == a),
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
        let iss = payload.iss.as_ref();
        let ok = iss.and_then(Claim::as_str).is_some_and(|i| i.trim_end_matches('/') == expected);
        if !ok {
            return Err(Refusal::Failed(fail(
                Reason::IssuerMismatch,
                format!("Invalid JWT issuer claim (iss) {}. Expected \"{expected}\".", js_string(iss)),
                carrier,
            )));
        }
    }
    let claims = SessionClaims::from_payload(&payload).map_err(|malformed| {
        Refusal::Failed(fail(
            Reason::TokenVerificationFailed,
            format!("{} Make sure that this is a valid Clerk-generated JWT.", malformed.problem),
            carrier,
        ))
    })?;
    let identity = identity_headers(&claims, carrier).map_err(Refusal::Failed)?;
    Ok(Verified {
        exp: TimeClaim::from_claim(payload.exp.as_ref()),
        nbf: TimeClaim::from_claim(payload.nbf.as_ref()),
        iat: TimeClaim::from_claim(payload.iat.as_ref()),
        claims,
        identity,
    })
}

/// The header checks every Clerk JWT gets (`typ`, `alg`) and the key that verifies it: the
/// remote set's key for its `kid`, else the networkless key. Keys only RS256 can use.
fn header_and_key<'k>(
    header: &Header<'_>,
    carrier: Carrier,
    keys: Option<&'k KeySet>,
    static_key: Option<&'k Arc<VerifyingKey>>,
) -> Result<&'k Arc<VerifyingKey>, Refusal> {
    match &header.typ {
        None => {}
        Some(Claim::Str(t)) if t == "JWT" => {}
        Some(other) => {
            return Err(Refusal::Failed(fail(
                Reason::TokenInvalid,
                format!("Invalid JWT type {}. Expected \"JWT\".", js_string(Some(other))),
                carrier,
            )))
        }
    }
    let alg = header.alg.as_ref().and_then(Claim::as_str);
    if !matches!(alg, Some("RS256") | Some("RS384") | Some("RS512")) {
        return Err(Refusal::Failed(fail(
            Reason::TokenInvalidAlgorithm,
            format!("Invalid JWT algorithm {}. Supported: RS256,RS384,RS512.", js_string(header.alg.as_ref())),
            carrier,
        )));
    }
    let kid = header.kid.as_ref().and_then(Claim::as_str);
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
    Ok(key)
}

/// Verifies a signed handshake token (the `__clerk_handshake` format, clerk-semantics §4.6) and
/// returns its payload, whose `handshake` claim lists the `Set-Cookie` directives. Clerk checks
/// only the form, `typ`, `alg`, the category (absent, session or "ignore": a JWT template could
/// otherwise carry author-chosen directives) and the signature; no time or party checks.
pub fn verify_handshake(
    token: &str,
    keys: Option<&KeySet>,
    static_key: Option<&Arc<VerifyingKey>>,
) -> Result<Map<String, Value>, Refusal> {
    let carrier = Carrier::Cookie;
    let decoded = decode(token, carrier).map_err(Refusal::Failed)?;
    let key = header_and_key(&decoded.header, carrier, keys, static_key)?;
    match &decoded.header.cat {
        None => {}
        Some(Claim::Str(c)) if c == CAT_SESSION || c == CAT_IGNORE => {}
        Some(_) => {
            return Err(Refusal::Failed(fail(
                Reason::TokenInvalid,
                "Invalid handshake token category. Make sure that this is a valid Clerk-generated JWT.",
                carrier,
            )))
        }
    }
    if !key.verify(decoded.signing_input.as_bytes(), &decoded.signature) {
        return Err(Refusal::Failed(fail(Reason::TokenInvalidSignature, "Handshake signature is invalid.", carrier)));
    }
    Ok(decoded.payload)
}

/// Builds the identity headers, or refuses the token when one of its identity claims cannot
/// reach the upstream exactly.
///
/// A value is carried exactly when it is visible ASCII (0x21–0x7E): a control character would be
/// refused or split the header, leading or trailing blanks are stripped by every HTTP parser,
/// and bytes above 0x7F (obs-text) are decoded differently by different frameworks. Clerk's ids,
/// slugs, role and permission keys are all plain ASCII, so only a hostile or broken token is
/// refused. The user id must be non-empty (a signed-in request always names its user); an empty
/// optional claim is forwarded as absent, as JavaScript reads both as unset. Permissions are
/// joined with `,`, so a comma inside one would read as several at the upstream and is refused.
fn identity_headers(c: &SessionClaims, carrier: Carrier) -> Result<IdentityHeaders, Failure> {
    let refuse = |claim: &str, header: &str, rule: &str| {
        fail(
            Reason::TokenInvalid,
            format!(
                "The session token's {claim} cannot be forwarded exactly as {header}: it must be {rule}. Make sure that this is a valid Clerk-generated JWT."
            ),
            carrier,
        )
    };
    let optional = |value: Option<&str>, claim: &str, header: &str| match value.filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => exact_header_value(v).map(Some).ok_or_else(|| refuse(claim, header, "visible ASCII")),
    };
    let user_id =
        exact_header_value(&c.user_id).ok_or_else(|| refuse("sub", "X-Clerk-User-Id", "non-empty visible ASCII"))?;
    let org = c.org.as_ref();
    let mut permissions = String::new();
    for permission in c.listed_permissions() {
        if permission.contains(',') || exact_header_value(permission).is_none() {
            return Err(refuse("organization permission", "X-Clerk-Org-Permissions", "visible ASCII without a comma"));
        }
        if !permissions.is_empty() {
            permissions.push(',');
        }
        permissions.push_str(permission);
    }
    Ok(IdentityHeaders {
        user_id,
        session_id: optional(c.session_id.as_deref(), "sid", "X-Clerk-Session-Id")?,
        org_id: optional(org.map(|o| o.id.as_str()), "organization id", "X-Clerk-Org-Id")?,
        org_slug: optional(org.and_then(|o| o.slug.as_deref()), "organization slug", "X-Clerk-Org-Slug")?,
        org_role: optional(org.and_then(|o| o.role.as_deref()), "organization role", "X-Clerk-Org-Role")?,
        // Each permission is already checked, so this is `None` exactly when there are none.
        org_permissions: exact_header_value(&permissions),
        actor: optional(c.actor.as_deref(), "act.sub", "X-Clerk-Actor")?,
    })
}

/// `value` as a header value when every byte is visible ASCII (and there is at least one).
fn exact_header_value(value: &str) -> Option<HeaderValue> {
    let exact = !value.is_empty() && value.bytes().all(|b| b.is_ascii_graphic());
    exact.then(|| HeaderValue::from_str(value).ok()).flatten()
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

/// Stage two: `exp`, `nbf`, `iat` against `now_ms` with the skew, in Clerk's order.
///
/// Total for every claim and clock value: the arithmetic saturates and dates are formatted by
/// [`js_utc_string`], so a validly signed token with `exp: -1e20` is answered, never a panic.
/// Where JavaScript's `Date` cannot hold a claim, Clerk compares `NaN` and accepts; here the
/// saturated value decides (an `exp` before the calendar is expired, an `nbf`/`iat` after it
/// is in the future), and the message shows `Invalid Date` as Clerk's would.
pub fn check_time(v: &Verified, now_ms: i64, skew_ms: i64, carrier: Carrier) -> TimeVerdict {
    let date = js_utc_string;
    let mut expired = None;
    match v.exp {
        TimeClaim::At(exp) => {
            if exp <= now_ms.saturating_sub(skew_ms) {
                let failure = fail(
                    Reason::TokenExpired,
                    format!("JWT is expired. Expiry date: {}, Current date: {}.", date(exp), date(now_ms)),
                    carrier,
                );
                expired = Some((now_ms.saturating_sub(exp), failure));
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
        TimeClaim::At(nbf) if nbf > now_ms.saturating_add(skew_ms) => Some(fail(
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
        TimeClaim::At(iat) if iat > now_ms.saturating_add(skew_ms) => Some(fail(
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
