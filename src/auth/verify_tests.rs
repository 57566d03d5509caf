//! Unit tests of the pure verifier against clerk-semantics §2 and the acceptance list §7 1–19.
//!
//! Tokens are signed here with a key generated once per test binary and carry Clerk's fixture
//! claim values (`iat 1666648250` etc.); the clock is frozen at `iat` unless a case says
//! otherwise, and is always passed in as `now_ms` — nothing sleeps.
//!
//! Cases of §7 1–25 that are not covered here, and why:
//! - 10's `NaN` / `+Infinity` skew: the gateway's skew is a config `Duration`, which cannot be
//!   NaN or infinite; a non-duration `clock_skew` is refused by the config (config tests).
//! - 15's `headerType` option: the gateway has no such option, so only `"JWT"` (or no `typ`) passes.
//! - 17 (audience): the gateway has no `audience` option; an `aud` claim is ignored (pinned below).
//! - 19's `jwk-local-missing`, 20: the networkless key is parsed once when the config loads (no
//!   per-call derivation, no cache to share); a missing PEM is simply "no static key", which is
//!   [`Refusal::NoKeys`] when there is no remote set either (pinned below).
//! - 21–25 (JWKS fetch, cache TTL, retries, no secret key, cache isolation) are about fetching
//!   and live in the key store; they are covered by the integration tests of the key store. At
//!   this level only their outcome is meaningful: a kid missing from the set is
//!   [`Refusal::UnknownKid`] (the caller refetches once), and the message after that refetch
//!   does not list the kids held (22, pinned below via [`kid_mismatch`]).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::keys::KeyOrigin;
use crate::mint::SigningKey;

const KID: &str = "ins_2GIoQhbUpy0hX7B2cVkuTMinXoD";
const IAT: i64 = 1_666_648_250;
const NBF: i64 = 1_666_648_240;
const EXP: i64 = 1_666_648_310;
const AZP: &str = "https://accounts.inspired.puma-74.lcl.dev";
const ISS: &str = "https://clerk.inspired.puma-74.lcl.dev";
const SID: &str = "sess_2GbDB4enNdCa5vS1zpC3Xzg9tK9";
const SUB: &str = "user_2GIpXOEpVyJw51rkZn9Kmnc6Sxr";
/// Clerk's fixture clock: frozen at `iat`.
const NOW_MS: i64 = IAT * 1000;
const DEFAULT_SKEW_MS: i64 = 5000;

const EXP_DATE: &str = "Mon, 24 Oct 2022 21:51:50 GMT";

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().expect("generate RSA key"))
}

/// An unrelated key: the attacker's, or a rotated-away one.
fn other_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().expect("generate RSA key"))
}

fn verifying(signer: &SigningKey, kid: &str) -> Arc<VerifyingKey> {
    let jwk = signer.jwk(kid);
    Arc::new(
        VerifyingKey::from_jwk_components(
            jwk["n"].as_str().unwrap(),
            jwk["e"].as_str().unwrap(),
            Some(kid.to_string()),
        )
        .expect("a 2048-bit key loads"),
    )
}

fn keyset_of(entries: &[(&str, &SigningKey)]) -> KeySet {
    KeySet {
        keys: entries.iter().map(|(kid, k)| (kid.to_string(), verifying(k, kid))).collect::<HashMap<_, _>>(),
        fetched_at_ms: Some(NOW_MS),
        origin: KeyOrigin::Fetched,
        url: None,
    }
}

/// The JWKS the gateway holds: our key under Clerk's fixture kid.
fn keys() -> &'static KeySet {
    static SET: OnceLock<KeySet> = OnceLock::new();
    SET.get_or_init(|| keyset_of(&[(KID, key())]))
}

fn good_claims() -> Value {
    json!({
        "azp": AZP,
        "exp": EXP,
        "iat": IAT,
        "iss": ISS,
        "nbf": NBF,
        "sid": SID,
        "sub": SUB,
    })
}

fn good_header() -> Value {
    json!({"alg": "RS256", "kid": KID, "typ": "JWT"})
}

/// `base` with `changes` merged in; a `null` in `changes` removes the field.
fn with(base: Value, changes: Value) -> Value {
    let mut out = base;
    let obj = out.as_object_mut().unwrap();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            obj.remove(k);
        } else {
            obj.insert(k.clone(), v.clone());
        }
    }
    out
}

fn sign(claims: &Value) -> String {
    key().sign_with_header(&good_header(), claims)
}

fn sign_h(header: &Value, claims: &Value) -> String {
    key().sign_with_header(header, claims)
}

fn good_token() -> String {
    sign(&good_claims())
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn policy() -> Policy<'static> {
    Policy { authorized_parties: &[], issuer: None, skew_ms: DEFAULT_SKEW_MS }
}

fn parties(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Stage one with the fixture key set and no static key.
fn signed(token: &str, policy: &Policy<'_>) -> Result<Verified, Refusal> {
    verify_signed(token, Carrier::Header, Some(keys()), None, policy)
}

/// Both stages, as a fresh verification does them, at `now_ms`.
fn full(token: &str, policy: &Policy<'_>, now_ms: i64) -> Result<Verified, Failure> {
    let v = match signed(token, policy) {
        Ok(v) => v,
        Err(Refusal::Failed(f)) => return Err(f),
        Err(other) => panic!("expected a verdict, got {other:?}"),
    };
    match check_time(&v, now_ms, policy.skew_ms, Carrier::Header) {
        TimeVerdict::Valid => Ok(v),
        TimeVerdict::Expired { failure, .. } | TimeVerdict::Failed(failure) => Err(failure),
    }
}

fn failure(token: &str, policy: &Policy<'_>, now_ms: i64) -> Failure {
    match full(token, policy, now_ms) {
        Ok(_) => panic!("expected a refusal for {token}"),
        Err(f) => f,
    }
}

fn reason(token: &str, policy: &Policy<'_>, now_ms: i64) -> Option<Reason> {
    full(token, policy, now_ms).err().map(|f| f.reason)
}

fn suffix(reason: &str) -> String {
    format!(" (reason={reason}, token-carrier=header)")
}

// === §7 1–2: form and decoding ===

#[test]
fn case_1_not_three_parts_is_token_invalid_with_the_form_message() {
    for token in ["", "null", "undefined", "whatever", "42", "a.b", "a.b.c.d", "...."] {
        for carrier in [Carrier::Header, Carrier::Cookie] {
            let err = match verify_signed(token, carrier, Some(keys()), None, &policy()) {
                Err(Refusal::Failed(f)) => f,
                other => panic!("{token:?}: {other:?}"),
            };
            assert_eq!(err.reason, Reason::TokenInvalid, "{token:?}");
            assert_eq!(
                err.message,
                format!(
                    "Invalid JWT form. A JWT consists of three parts separated by dots. (reason=token-invalid, token-carrier={})",
                    carrier.as_str()
                ),
                "{token:?}"
            );
        }
    }
}

#[test]
fn case_2_undecodable_segments_are_token_invalid_not_a_panic() {
    let not_json = format!("{}.{}.sig", b64("not json"), b64("{}"));
    let payload_not_object = format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), b64("[1,2]"));
    let bad_b64 = format!("{}.{}.sig", b64(r#"{"alg":"RS256"}"#), "@@@");
    let header_array = format!("{}.{}.", b64(r#"["RS256","JWT"]"#), b64("{}"));
    let header_null = format!("{}.{}.", b64("null"), b64("{}"));
    let signature_not_b64 = format!("{}.{}.!!!!", b64(r#"{"alg":"RS256"}"#), b64("{}"));
    // Stricter than JavaScript's JSON.parse (README, decisions): invalid UTF-8, a lone surrogate
    // escape and a number beyond f64.
    let not_utf8 =
        format!("{}.{}.", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"{\"alg\":\"RS\xff\"}"), b64("{}"));
    let lone_surrogate = format!("{}.{}.", b64(r#"{"alg":"RS256"}"#), b64(r#"{"sub":"\ud800"}"#));
    let huge_number = format!("{}.{}.", b64(r#"{"alg":"RS256"}"#), b64(r#"{"exp":1e400}"#));
    for token in [
        "aaa.bbb.ccc",
        "YWJj.YWJj.YWJj",
        "..",
        not_json.as_str(),
        payload_not_object.as_str(),
        bad_b64.as_str(),
        header_array.as_str(),
        header_null.as_str(),
        signature_not_b64.as_str(),
        not_utf8.as_str(),
        lone_surrogate.as_str(),
        huge_number.as_str(),
    ] {
        let f = failure(token, &policy(), NOW_MS);
        assert_eq!(f.reason, Reason::TokenInvalid, "{token:?}");
        assert_eq!(
            f.message,
            format!(
                "Invalid JWT form. The header, payload, or signature could not be decoded.{}",
                suffix("token-invalid")
            ),
            "{token:?}"
        );
    }
}

#[test]
fn decode_keeps_the_raw_signing_input_and_the_signature_bytes() {
    let h = b64(r#"{"alg":"RS256","kid":"k"}"#);
    let p = b64(r#"{"sub":"u"}"#);
    let token = format!("{h}.{p}.c2ln");
    let d = decode(&token, Carrier::Header).expect("decodes");
    assert_eq!(d.signing_input, format!("{h}.{p}"));
    assert_eq!(d.signature, b"sig");
    assert_eq!(d.header.kid, Some(Claim::Str("k".into())));
    assert_eq!(d.payload.get("sub"), Some(&json!("u")));
}

/// Every segment has exactly one accepted spelling: the URL-safe alphabet, no padding, and the
/// unused low bits of the last character zero. `c2ln` is "sig"; `c2lnMQ` is "sig1", whose
/// last character carries 2 bits and 4 unused ones.
#[test]
fn every_segment_is_decoded_strictly() {
    let h = b64(r#"{"alg":"RS256","kid":"k"}"#);
    let p = b64(r#"{"sub":"u"}"#);
    assert!(decode(&format!("{h}.{p}.c2lnMQ"), Carrier::Header).is_ok());
    assert!(decode(&format!("{h}.{p}.-_-_"), Carrier::Header).is_ok(), "the URL-safe alphabet");
    let refused = [
        ("padded signature", format!("{h}.{p}.c2lnMQ==")),
        ("one pad", format!("{h}.{p}.c2lnMQ=")),
        ("padding on a whole quantum", format!("{h}.{p}.c2ln=")),
        ("padded header", format!("{h}=.{p}.c2ln")),
        ("padded payload", format!("{h}.{p}==.c2ln")),
        ("standard alphabet", format!("{h}.{p}.+/+/")),
        ("trailing bits", format!("{h}.{p}.c2lnMR")),
        ("trailing bits in the header", format!("{}.{p}.c2ln", with_a_stray_bit(&h))),
        ("trailing bits in the payload", format!("{h}.{}.c2ln", with_a_stray_bit(&p))),
        ("a lone character", format!("{h}.{p}.c2lnM")),
        ("inner whitespace", format!("{h}.{p}.c2 ln")),
    ];
    for (what, token) in refused {
        let f = decode(&token, Carrier::Header).expect_err(what);
        assert_eq!(f.reason, Reason::TokenInvalid, "{what}");
    }
}

/// `segment` with one of the unused low bits of its last character set: the same bytes to a
/// lenient decoder, a second spelling to a strict one.
fn with_a_stray_bit(segment: &str) -> String {
    const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    assert_ne!(segment.len() % 4, 0, "{segment} has no unused bits");
    let (head, last) = segment.split_at(segment.len() - 1);
    let index = URL_SAFE.iter().position(|&c| c == last.as_bytes()[0]).expect("url-safe");
    format!("{head}{}", URL_SAFE[index | 1] as char)
}

#[test]
fn the_header_keeps_null_apart_from_absent() {
    let token = format!("{}.{}.", b64(r#"{"alg":"RS256","typ":null,"cat":null}"#), b64("{}"));
    let d = decode(&token, Carrier::Header).unwrap();
    assert_eq!(d.header.typ, Some(Claim::Json(Value::Null)));
    assert_eq!(d.header.cat, Some(Claim::Json(Value::Null)));
    assert_eq!(d.header.kid, None);
}

// === §7 3–7: authorized parties ===

#[test]
fn case_3_good_token_with_its_azp_authorised_returns_the_claims() {
    let list = parties(&[AZP]);
    let p = Policy { authorized_parties: &list, ..policy() };
    let v = full(&good_token(), &p, NOW_MS).expect("good token");
    assert_eq!(v.claims.user_id, SUB);
    assert_eq!(v.claims.session_id.as_deref(), Some(SID));
    assert_eq!(v.exp, TimeClaim::At(EXP * 1000));
    assert_eq!(v.nbf, TimeClaim::At(NBF * 1000));
    assert_eq!(v.iat, TimeClaim::At(IAT * 1000));
    assert_eq!(v.identity.user_id, SUB);
    assert_eq!(v.identity.session_id.as_ref().unwrap(), SID);
    assert!(v.identity.org_id.is_none());
}

#[test]
fn cases_4_to_7_authorized_parties_table() {
    let no_azp = with(good_claims(), json!({"azp": null}));
    let empty_azp = with(good_claims(), json!({"azp": ""}));
    let short_azp = with(good_claims(), json!({"azp": "azp"}));
    let numeric_azp = with(good_claims(), json!({"azp": 7}));
    // (claims, parties, expected message or None for accepted)
    let cases: Vec<(&str, Value, Vec<&str>, Option<String>)> = vec![
        ("4: '' and azp listed", good_claims(), vec!["", AZP], None),
        (
            "5: not listed",
            good_claims(),
            vec!["whatever"],
            Some(format!(
                "Invalid JWT Authorized party claim (azp) \"{AZP}\". Expected \"whatever\"."
            )),
        ),
        (
            "6: empty azp",
            empty_azp.clone(),
            vec!["azp-1"],
            Some("Invalid JWT Authorized party claim (azp) \"\". Expected \"azp-1\".".into()),
        ),
        (
            "6: absent azp",
            no_azp.clone(),
            vec!["azp-1"],
            Some(
                "Invalid JWT Authorized party claim (azp) undefined. Expected \"azp-1\".".into(),
            ),
        ),
        ("6: absent azp, no parties", no_azp, vec![], None),
        ("6: empty azp, no parties", empty_azp, vec![], None),
        (
            "7: azp vs ['']",
            short_azp,
            vec![""],
            Some("Invalid JWT Authorized party claim (azp) \"azp\". Expected \"\".".into()),
        ),
        (
            "several parties are joined with commas",
            good_claims(),
            vec!["https://a.example", "https://b.example"],
            Some(format!(
                "Invalid JWT Authorized party claim (azp) \"{AZP}\". Expected \"https://a.example,https://b.example\"."
            )),
        ),
        (
            "exact match only: trailing slash",
            good_claims(),
            vec!["https://accounts.inspired.puma-74.lcl.dev/"],
            Some(format!(
                "Invalid JWT Authorized party claim (azp) \"{AZP}\". Expected \"https://accounts.inspired.puma-74.lcl.dev/\"."
            )),
        ),
        (
            "exact match only: case",
            good_claims(),
            vec!["https://ACCOUNTS.inspired.puma-74.lcl.dev"],
            Some(format!(
                "Invalid JWT Authorized party claim (azp) \"{AZP}\". Expected \"https://ACCOUNTS.inspired.puma-74.lcl.dev\"."
            )),
        ),
        (
            "non-string azp",
            numeric_azp,
            vec!["7"],
            Some("Invalid JWT Authorized party claim (azp) 7. Expected \"7\".".into()),
        ),
    ];
    for (name, claims, list, expected) in cases {
        let list = parties(&list);
        let p = Policy { authorized_parties: &list, ..policy() };
        let got = full(&sign(&claims), &p, NOW_MS);
        match expected {
            None => assert!(got.is_ok(), "{name}: {got:?}"),
            Some(message) => {
                let f = got.expect_err(name);
                assert_eq!(f.reason, Reason::TokenInvalidAuthorizedParties, "{name}");
                assert_eq!(f.message, format!("{message}{}", suffix("token-invalid-authorized-parties")), "{name}");
            }
        }
    }
}

// === §7 8–9: signature, and its place in the order ===

fn tampered_token() -> String {
    let good = good_token();
    let sig = good.rsplit('.').next().unwrap();
    let header = good.split('.').next().unwrap();
    let claims = with(good_claims(), json!({"azp": "https://accounts.tampered-domain.dev"}));
    format!("{header}.{}.{sig}", b64(&claims.to_string()))
}

#[test]
fn case_8_tampered_payload_is_token_invalid_signature() {
    let f = failure(&tampered_token(), &policy(), NOW_MS);
    assert_eq!(f.reason, Reason::TokenInvalidSignature);
    assert_eq!(f.message, format!("JWT signature is invalid.{}", suffix("token-invalid-signature")));
}

#[test]
fn signature_table() {
    let good = good_token();
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let raw_signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).unwrap();
    let mut flipped = raw_signature.clone();
    flipped[10] ^= 1;
    let flipped = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(flipped);
    let cases = [
        ("empty signature", format!("{h}.{p}.")),
        ("one bit flipped", format!("{h}.{p}.{flipped}")),
        (
            "truncated",
            format!("{h}.{p}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw_signature[..250])),
        ),
        ("signed by another key", other_key().sign_with_header(&good_header(), &good_claims())),
        (
            "signature of another token",
            format!("{h}.{p}.{}", sign(&with(good_claims(), json!({"sid": "x"}))).rsplit('.').next().unwrap()),
        ),
    ];
    for (name, token) in cases {
        assert_eq!(reason(&token, &policy(), NOW_MS), Some(Reason::TokenInvalidSignature), "{name}");
    }
    // And the unmodified token passes, so the table is not vacuous.
    assert!(full(&good, &policy(), NOW_MS).is_ok());
}

#[test]
fn case_9_signature_is_checked_before_every_claim() {
    // Each claim fault alone gives its own reason; with a bad signature it is always the signature.
    let list = parties(&["https://other.example"]);
    let strict =
        Policy { authorized_parties: &list, issuer: Some("https://other-issuer.example"), skew_ms: DEFAULT_SKEW_MS };
    let faults = [
        ("expired (exp = iat - 100)", json!({"exp": IAT - 100}), Reason::TokenExpired),
        ("not active", json!({"nbf": IAT + 600}), Reason::TokenNotActiveYet),
        ("iat future", json!({"iat": IAT + 600}), Reason::TokenIatInTheFuture),
        ("no sub", json!({"sub": null}), Reason::TokenVerificationFailed),
        ("no exp", json!({"exp": null}), Reason::TokenVerificationFailed),
    ];
    for (name, change, alone) in faults {
        let claims = with(good_claims(), change);
        assert_eq!(reason(&sign(&claims), &policy(), NOW_MS), Some(alone), "{name}");
        let forged = other_key().sign_with_header(&good_header(), &claims);
        assert_eq!(reason(&forged, &policy(), NOW_MS), Some(Reason::TokenInvalidSignature), "{name}");
    }
    // azp and iss faults too.
    let forged = other_key().sign_with_header(&good_header(), &good_claims());
    assert_eq!(reason(&forged, &strict, NOW_MS), Some(Reason::TokenInvalidSignature));
    assert_eq!(reason(&good_token(), &strict, NOW_MS), Some(Reason::TokenInvalidAuthorizedParties));
}

// === §7 10–13: clock and skew ===

#[test]
fn case_10_expiry_message_and_default_skew() {
    let token = good_token();
    let at_exp_plus_1 = (EXP + 1) * 1000;
    assert!(full(&token, &policy(), at_exp_plus_1).is_ok(), "5 s default skew");
    let zero = Policy { skew_ms: 0, ..policy() };
    let f = failure(&token, &zero, at_exp_plus_1);
    assert_eq!(f.reason, Reason::TokenExpired);
    assert_eq!(
        f.message,
        format!(
            "JWT is expired. Expiry date: {EXP_DATE}, Current date: Mon, 24 Oct 2022 21:51:51 GMT.{}",
            suffix("token-expired")
        )
    );
    assert_eq!(reason(&token, &policy(), (EXP + 60) * 1000), Some(Reason::TokenExpired));
}

#[test]
fn cases_11_to_13_skew_boundaries() {
    let now_s = IAT;
    let now = now_s * 1000;
    // (name, claim changes, skew ms, now ms, expected)
    let cases: Vec<(&str, Value, i64, i64, Option<Reason>)> = vec![
        // 11: exp
        ("exp == now, skew 0", json!({"exp": now_s}), 0, now, Some(Reason::TokenExpired)),
        ("exp == now, skew 1000", json!({"exp": now_s}), 1000, now, None),
        ("exp = now - 5, skew 6000", json!({"exp": now_s - 5}), 6000, now, None),
        ("exp = now - 5, skew 5000 (≤ is expired)", json!({"exp": now_s - 5}), 5000, now, Some(Reason::TokenExpired)),
        ("exp + skew - 1 ms", json!({"exp": now_s}), 5000, now + 4999, None),
        ("exp + skew exactly", json!({"exp": now_s}), 5000, now + 5000, Some(Reason::TokenExpired)),
        ("exp far past", json!({"exp": now_s - 3600}), 5000, now, Some(Reason::TokenExpired)),
        // 12: nbf
        ("nbf = now + 5, skew 0", json!({"nbf": now_s + 5}), 0, now, Some(Reason::TokenNotActiveYet)),
        ("nbf = now + 5, skew 6000", json!({"nbf": now_s + 5}), 6000, now, None),
        ("nbf = now + 5, skew 5000 (> is refused)", json!({"nbf": now_s + 5}), 5000, now, None),
        ("nbf = now + 6, skew 5000", json!({"nbf": now_s + 6}), 5000, now, Some(Reason::TokenNotActiveYet)),
        ("nbf - skew - 1 ms", json!({"nbf": now_s}), 5000, now - 5001, Some(Reason::TokenNotActiveYet)),
        ("nbf == now", json!({"nbf": now_s}), 0, now, None),
        ("nbf absent", json!({"nbf": null}), 0, now, None),
        // 13: iat
        ("iat = now + 5, skew 0", json!({"iat": now_s + 5, "nbf": null}), 0, now, Some(Reason::TokenIatInTheFuture)),
        ("iat = now + 5, skew 6000", json!({"iat": now_s + 5, "nbf": null}), 6000, now, None),
        (
            "iat = now + 6, skew 5000",
            json!({"iat": now_s + 6, "nbf": null}),
            5000,
            now,
            Some(Reason::TokenIatInTheFuture),
        ),
        ("iat absent", json!({"iat": null}), 0, now, None),
        // Clerk's effective window with the default skew: [iat − 5 s, iat + 65 s).
        ("window start", json!({}), 5000, (IAT - 5) * 1000, None),
        (
            "before window start (iat, nbf = iat - 10)",
            json!({}),
            5000,
            (IAT - 5) * 1000 - 1,
            Some(Reason::TokenIatInTheFuture),
        ),
        ("nbf is checked before iat", json!({}), 5000, (NBF - 5) * 1000 - 1, Some(Reason::TokenNotActiveYet)),
        ("window end - 1 ms", json!({}), 5000, (IAT + 65) * 1000 - 1, None),
        ("window end", json!({}), 5000, (IAT + 65) * 1000, Some(Reason::TokenExpired)),
    ];
    for (name, change, skew_ms, now_ms, expected) in cases {
        let p = Policy { skew_ms, ..policy() };
        let token = sign(&with(good_claims(), change));
        assert_eq!(reason(&token, &p, now_ms), expected, "{name}");
    }
}

#[test]
fn time_claim_messages() {
    let zero = Policy { skew_ms: 0, ..policy() };
    let nbf = failure(&sign(&with(good_claims(), json!({"nbf": EXP}))), &zero, NOW_MS);
    assert_eq!(
        nbf.message,
        format!(
            "JWT cannot be used prior to not before date claim (nbf). Not before date: {EXP_DATE}; Current date: Mon, 24 Oct 2022 21:50:50 GMT;{}",
            suffix("token-not-active-yet")
        )
    );
    let iat = failure(&sign(&with(good_claims(), json!({"iat": EXP, "nbf": null}))), &zero, NOW_MS);
    assert_eq!(
        iat.message,
        format!(
            "JWT issued at date claim (iat) is in the future. Issued at date: {EXP_DATE}; Current date: Mon, 24 Oct 2022 21:50:50 GMT;{}",
            suffix("token-iat-in-the-future")
        )
    );
}

#[test]
fn time_claims_of_the_wrong_type_are_verification_failures() {
    let cases = [
        ("exp missing", json!({"exp": null}), "Invalid JWT expiry date claim (exp). Expected number."),
        ("exp string", json!({"exp": "1666648310"}), "Invalid JWT expiry date claim (exp). Expected number."),
        ("exp bool", json!({"exp": true}), "Invalid JWT expiry date claim (exp). Expected number."),
        ("nbf string", json!({"nbf": "0"}), "Invalid JWT not before date claim (nbf). Expected number."),
        ("nbf null", json!({"nbf": Value::Null}), "Invalid JWT not before date claim (nbf). Expected number."),
        ("iat array", json!({"iat": [1]}), "Invalid JWT issued at date claim (iat). Expected number."),
    ];
    for (name, change, message) in cases {
        let claims = if name == "nbf null" {
            // `with` removes on null; insert a literal JSON null instead.
            let mut c = good_claims();
            c["nbf"] = Value::Null;
            c
        } else {
            with(good_claims(), change)
        };
        let f = failure(&sign(&claims), &policy(), NOW_MS);
        assert_eq!(f.reason, Reason::TokenVerificationFailed, "{name}");
        assert_eq!(f.message, format!("{message}{}", suffix("token-verification-failed")), "{name}");
    }
}

#[test]
fn fractional_seconds_are_truncated() {
    let v = signed(&sign(&with(good_claims(), json!({"exp": 1666648310.9}))), &policy()).expect("signed stage");
    assert_eq!(v.exp, TimeClaim::At(EXP * 1000));
    // So at exp + skew exactly it is expired even though the fraction would say otherwise.
    assert!(matches!(check_time(&v, EXP * 1000 + 5000, 5000, Carrier::Header), TimeVerdict::Expired { .. }));
    assert!(matches!(check_time(&v, EXP * 1000 + 4999, 5000, Carrier::Header), TimeVerdict::Valid));
}

/// Every number serde_json accepts becomes a time in milliseconds: truncated towards zero like
/// JavaScript's `setUTCSeconds`, then saturated at the ends of `i64`.
#[test]
fn time_claims_read_every_number_totally() {
    let cases: Vec<(Value, TimeClaim)> = vec![
        (json!(-1), TimeClaim::At(-1000)),
        (json!(-1.9), TimeClaim::At(-1000)),
        (json!(-0.0), TimeClaim::At(0)),
        (json!(253_402_300_800_i64), TimeClaim::At(253_402_300_800_000)),
        (json!(1e20), TimeClaim::At(i64::MAX)),
        (json!(-1e20), TimeClaim::At(i64::MIN)),
        (json!(f64::MAX), TimeClaim::At(i64::MAX)),
        (json!(f64::MIN), TimeClaim::At(i64::MIN)),
        (json!(f64::MIN_POSITIVE), TimeClaim::At(0)),
        (json!(i64::MAX), TimeClaim::At(i64::MAX)),
        (json!(i64::MIN), TimeClaim::At(i64::MIN)),
        (json!(u64::MAX), TimeClaim::At(i64::MAX)),
        (json!("1"), TimeClaim::NotANumber),
    ];
    for (value, expected) in cases {
        assert_eq!(TimeClaim::from_value(Some(&value)), expected, "{value}");
    }
    // serde_json refuses what JavaScript would read as NaN or an infinity, so no such claim
    // ever reaches the verifier.
    for text in ["NaN", "Infinity", "-Infinity", "1e400"] {
        assert!(serde_json::from_str::<Value>(text).is_err(), "{text}");
    }
}

/// Issue #8 item 3: dates before 1970 or after 9999 used to panic while formatting the refusal.
/// Where a JavaScript `Date` cannot hold the claim, Clerk compares `NaN` and accepts; the gateway
/// decides by the saturated value and says `Invalid Date`, as Clerk's message would.
#[test]
fn time_claims_outside_the_calendar_get_an_answer() {
    let now = NOW_MS;
    let cases: Vec<(Value, Option<Reason>, &str)> = vec![
        (json!({"exp": -1}), Some(Reason::TokenExpired), "Expiry date: Wed, 31 Dec 1969 23:59:59 GMT,"),
        (json!({"exp": -1e20}), Some(Reason::TokenExpired), "Expiry date: Invalid Date,"),
        (json!({"exp": i64::MIN}), Some(Reason::TokenExpired), "Expiry date: Invalid Date,"),
        (json!({"exp": 1e20}), None, ""),
        (
            json!({"nbf": 253_402_300_800_i64}),
            Some(Reason::TokenNotActiveYet),
            "Not before date: Sat, 01 Jan 10000 00:00:00 GMT;",
        ),
        (json!({"nbf": 1e20}), Some(Reason::TokenNotActiveYet), "Not before date: Invalid Date;"),
        (json!({"nbf": -1e20}), None, ""),
        (
            json!({"iat": 253_402_300_800_i64, "nbf": null}),
            Some(Reason::TokenIatInTheFuture),
            "Issued at date: Sat, 01 Jan 10000 00:00:00 GMT;",
        ),
        (json!({"iat": 1e20, "nbf": null}), Some(Reason::TokenIatInTheFuture), "Issued at date: Invalid Date;"),
    ];
    for (change, expected, shown) in cases {
        let token = sign(&with(good_claims(), change.clone()));
        match full(&token, &policy(), now) {
            Ok(_) => assert_eq!(expected, None, "{change}"),
            Err(f) => {
                assert_eq!(Some(f.reason), expected, "{change}");
                assert!(f.message.contains(shown), "{change}: {}", f.message);
            }
        }
    }
}

#[test]
fn grace_reads_an_exp_before_the_calendar_as_expired_for_ever() {
    for exp in [json!(i64::MIN), json!(-9_223_372_036_854_775_i64), json!(-1e300)] {
        let v = signed(&sign(&with(good_claims(), json!({"exp": exp.clone()}))), &policy()).unwrap();
        for now in [NOW_MS, i64::MAX] {
            match check_time(&v, now, 5000, Carrier::Header) {
                TimeVerdict::Expired { by_ms, .. } => assert!(by_ms > 1_000_000_000_000, "{exp}: by {by_ms}"),
                other => panic!("{exp}: {other:?}"),
            }
        }
    }
}

proptest! {
    /// The clock checks answer for any claim value, clock and skew.
    #[test]
    fn check_time_is_total(
        exp in any::<i64>(),
        nbf in any::<i64>(),
        iat in any::<i64>(),
        now in any::<i64>(),
        skew in any::<i64>(),
    ) {
        let v = Verified {
            claims: SessionClaims::from_payload(&Default::default()).unwrap(),
            exp: TimeClaim::At(exp),
            nbf: TimeClaim::At(nbf),
            iat: TimeClaim::At(iat),
            identity: IdentityHeaders {
                user_id: http::HeaderValue::from_static("u"),
                session_id: None,
                org_id: None,
                org_slug: None,
                org_role: None,
                org_permissions: None,
                actor: None,
            },
        };
        if let TimeVerdict::Expired { by_ms, .. } = check_time(&v, now, skew, Carrier::Header) {
            prop_assert!(by_ms >= 0 || skew < 0);
        }
    }
}

#[test]
fn expired_only_is_graceable_but_expired_and_not_yet_valid_is_not() {
    let v = signed(&good_token(), &policy()).unwrap();
    match check_time(&v, (EXP + 100) * 1000, 5000, Carrier::Cookie) {
        TimeVerdict::Expired { by_ms, failure } => {
            assert_eq!(by_ms, 100_000, "counted from exp itself, not exp + skew");
            assert_eq!(failure.reason, Reason::TokenExpired);
            assert!(failure.message.ends_with("(reason=token-expired, token-carrier=cookie)"));
        }
        other => panic!("{other:?}"),
    }
    // exp before nbf: at any time it is either expired or not yet valid. Clerk reports the
    // first failure (expired) — but it must not be a graceable `Expired`.
    let odd = signed(&sign(&with(good_claims(), json!({"exp": IAT - 100, "nbf": IAT + 100}))), &policy()).unwrap();
    match check_time(&odd, NOW_MS, 5000, Carrier::Header) {
        TimeVerdict::Failed(f) => assert_eq!(f.reason, Reason::TokenExpired),
        other => panic!("{other:?}"),
    }
    let bad_iat = signed(&sign(&with(good_claims(), json!({"exp": IAT - 100, "iat": "soon"}))), &policy()).unwrap();
    assert!(matches!(
        check_time(&bad_iat, NOW_MS, 5000, Carrier::Header),
        TimeVerdict::Failed(Failure { reason: Reason::TokenExpired, .. })
    ));
}

// === §7 14: alg ===

#[test]
fn case_14_algorithms() {
    let invalid = [
        (json!(""), "\"\""),
        (json!("ES256"), "\"ES256\""),
        (json!("ES384"), "\"ES384\""),
        (json!("ES512"), "\"ES512\""),
        (json!("PS512"), "\"PS512\""),
        (json!("Aloha"), "\"Aloha\""),
        (json!("none"), "\"none\""),
        (json!("HS256"), "\"HS256\""),
        (json!("rs256"), "\"rs256\""),
        (json!(256), "256"),
        (Value::Null, "undefined"),
    ];
    for (alg, shown) in invalid {
        let header = with(good_header(), json!({"alg": alg}));
        // A signature made with our key: the refusal must come from the header, not the signature.
        let f = failure(&sign_h(&header, &good_claims()), &policy(), NOW_MS);
        assert_eq!(f.reason, Reason::TokenInvalidAlgorithm, "{alg}");
        assert_eq!(
            f.message,
            format!(
                "Invalid JWT algorithm {shown}. Supported: RS256,RS384,RS512.{}",
                suffix("token-invalid-algorithm")
            ),
            "{alg}"
        );
    }
    // RS384/RS512 pass the header check but Clerk's RS256 keys cannot verify them.
    for alg in ["RS384", "RS512"] {
        let header = with(good_header(), json!({"alg": alg}));
        let f = failure(&sign_h(&header, &good_claims()), &policy(), NOW_MS);
        assert_eq!(f.reason, Reason::TokenVerificationFailed, "{alg}");
        assert!(f.message.starts_with("Error verifying JWT signature."), "{}", f.message);
    }
    // And RS256 passes.
    assert!(full(&good_token(), &policy(), NOW_MS).is_ok());
}

#[test]
fn the_alg_check_precedes_the_key_lookup() {
    // An ES256 token naming an unknown kid is refused for its alg, without asking for keys.
    let header = json!({"alg": "ES256", "kid": "ins_unknown", "typ": "JWT"});
    match verify_signed(&sign_h(&header, &good_claims()), Carrier::Header, Some(keys()), None, &policy()) {
        Err(Refusal::Failed(f)) => assert_eq!(f.reason, Reason::TokenInvalidAlgorithm),
        other => panic!("{other:?}"),
    }
    match verify_signed(&sign_h(&header, &good_claims()), Carrier::Header, None, None, &policy()) {
        Err(Refusal::Failed(f)) => assert_eq!(f.reason, Reason::TokenInvalidAlgorithm),
        other => panic!("{other:?}"),
    }
}

// === §7 15: typ ===

#[test]
fn case_15_typ() {
    let cases: Vec<(Value, Option<(Reason, String)>)> = vec![
        (Value::Null, None), // removed by `with`: absent
        (json!("JWT"), None),
        (json!(""), Some((Reason::TokenInvalid, "Invalid JWT type \"\". Expected \"JWT\".".into()))),
        (json!("Aloha"), Some((Reason::TokenInvalid, "Invalid JWT type \"Aloha\". Expected \"JWT\".".into()))),
        (json!("jwt"), Some((Reason::TokenInvalid, "Invalid JWT type \"jwt\". Expected \"JWT\".".into()))),
        (json!(1), Some((Reason::TokenInvalid, "Invalid JWT type 1. Expected \"JWT\".".into()))),
        // OAuth access tokens are machine tokens (§4.2 step 1): a type mismatch, not a bad typ.
        (json!("at+jwt"), Some((Reason::TokenTypeMismatch, "The token is not a session token.".into()))),
        (json!("application/at+jwt"), Some((Reason::TokenTypeMismatch, "The token is not a session token.".into()))),
    ];
    for (typ, expected) in cases {
        let header = with(good_header(), json!({"typ": typ}));
        let got = full(&sign_h(&header, &good_claims()), &policy(), NOW_MS);
        match expected {
            None => assert!(got.is_ok(), "{typ}: {got:?}"),
            Some((reason, message)) => {
                let f = got.expect_err("refused");
                assert_eq!(f.reason, reason, "{typ}");
                assert_eq!(f.message, format!("{message}{}", suffix(reason.as_str())), "{typ}");
            }
        }
    }
}

#[test]
fn typ_check_precedes_alg_check() {
    let header = json!({"alg": "HS256", "kid": KID, "typ": "Aloha"});
    assert_eq!(reason(&sign_h(&header, &good_claims()), &policy(), NOW_MS), Some(Reason::TokenInvalid));
}

// === §7 16: sub ===

#[test]
fn case_16_sub() {
    // Clerk verifies an empty `sub`; the gateway refuses it, since a signed-in request must name
    // its user (see `identity_claims_a_header_cannot_carry_exactly_are_refused`).
    assert_eq!(reason(&sign(&with(good_claims(), json!({"sub": ""}))), &policy(), NOW_MS), Some(Reason::TokenInvalid));
    let cases =
        [(json!({"sub": null}), "undefined"), (json!({"sub": 42}), "42"), (json!({"sub": ["user_1"]}), "[\"user_1\"]")];
    for (change, shown) in cases {
        let f = failure(&sign(&with(good_claims(), change)), &policy(), NOW_MS);
        assert_eq!(f.reason, Reason::TokenVerificationFailed, "{shown}");
        assert_eq!(
            f.message,
            format!(
                "Subject claim (sub) is required and must be a string. Received {shown}. Make sure that this is a valid Clerk-generated JWT.{}",
                suffix("token-verification-failed")
            )
        );
    }
}

#[test]
fn case_17_aud_is_not_checked_by_the_gateway() {
    for aud in [json!("X"), json!(["a", "b"]), json!(""), json!(5)] {
        let token = sign(&with(good_claims(), json!({"aud": aud})));
        assert!(full(&token, &policy(), NOW_MS).is_ok(), "{aud}");
    }
}

// === §7 18 and §4.2 step 1: token categories and machine tokens ===

#[test]
fn case_18_and_categories() {
    let cases: Vec<(&str, Value, Value, Option<Reason>)> = vec![
        ("session cat", json!({"cat": CAT_SESSION}), json!({}), None),
        ("ignore cat", json!({"cat": CAT_IGNORE}), json!({}), None),
        ("no cat", json!({"cat": null}), json!({}), None),
        // The gateway runs the request-level check (§4.2 step 1) before verifyToken's own M2M
        // check (§2.2), so an M2M category is `token-type-mismatch`, not `token-invalid`.
        ("M2M cat", json!({"cat": CAT_M2M}), json!({}), Some(Reason::TokenTypeMismatch)),
        ("template cat", json!({"cat": "cl_B7d4PD222AAA"}), json!({"sid": null}), Some(Reason::TokenTypeMismatch)),
        ("unknown cat", json!({"cat": "cl_whatever"}), json!({}), Some(Reason::TokenTypeMismatch)),
        ("empty cat", json!({"cat": ""}), json!({}), Some(Reason::TokenTypeMismatch)),
        ("non-string cat", json!({"cat": 5}), json!({}), Some(Reason::TokenTypeMismatch)),
        ("M2M sub", json!({}), json!({"sub": "mch_2abc"}), Some(Reason::TokenTypeMismatch)),
        ("mch_ prefix is case-sensitive", json!({}), json!({"sub": "MCH_2abc"}), None),
        ("at+jwt typ", json!({"typ": "at+jwt"}), json!({}), Some(Reason::TokenTypeMismatch)),
    ];
    for (name, header_change, claims_change, expected) in cases {
        let token = sign_h(&with(good_header(), header_change), &with(good_claims(), claims_change));
        assert_eq!(reason(&token, &policy(), NOW_MS), expected, "{name}");
        if let Some(reason) = expected {
            let f = failure(&token, &policy(), NOW_MS);
            assert_eq!(f.message, format!("The token is not a session token.{}", suffix(reason.as_str())), "{name}");
        }
    }
}

#[test]
fn type_mismatch_is_decided_before_any_key_is_needed() {
    // "No JWKS request": with no keys at all it is still a type mismatch, never NoKeys.
    for (header, claims) in [
        (with(good_header(), json!({"cat": CAT_M2M})), good_claims()),
        (good_header(), with(good_claims(), json!({"sub": "mch_1"}))),
        (with(good_header(), json!({"typ": "at+jwt", "kid": "unknown"})), good_claims()),
    ] {
        // Signed by a stranger: the signature is never looked at either.
        let token = other_key().sign_with_header(&header, &claims);
        match verify_signed(&token, Carrier::Cookie, None, None, &policy()) {
            Err(Refusal::Failed(f)) => {
                assert_eq!(f.reason, Reason::TokenTypeMismatch);
                assert!(f.message.ends_with("(reason=token-type-mismatch, token-carrier=cookie)"));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn token_type_mismatch_on_decoded_tokens() {
    let cases = [
        (json!({"alg": "RS256"}), json!({"sub": "user_1"}), false),
        (json!({"typ": "at+jwt"}), json!({"sub": "user_1"}), true),
        (json!({"typ": "application/at+jwt"}), json!({}), true),
        (json!({}), json!({"sub": "mch_"}), true),
        (json!({}), json!({"sub": 5}), false),
        (json!({"cat": CAT_SESSION}), json!({}), false),
        (json!({"cat": CAT_IGNORE}), json!({}), false),
        (json!({"cat": CAT_M2M}), json!({}), true),
        // Clerk tests `cat !== undefined`: a JSON null is a category, and not a session one.
        (json!({"cat": null}), json!({}), true),
        (json!({"cat": 5}), json!({}), true),
    ];
    for (header, payload, expected) in cases {
        let token = format!("{}.{}.", b64(&header.to_string()), b64(&payload.to_string()));
        let d = decode(&token, Carrier::Header).unwrap();
        assert_eq!(d.token_type_mismatch(), expected, "{header} {payload}");
    }
}

// === §7 19 and key selection ===

#[test]
fn case_19_networkless_key_from_pem_verifies_any_kid() {
    let pem = key().public_pem();
    let armoured = Arc::new(VerifyingKey::from_pem(&pem, None).expect("armoured PEM"));
    let bare: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let bare = Arc::new(VerifyingKey::from_pem(&bare, None).expect("bare base64 PEM"));
    assert_eq!(armoured.n, bare.n);
    assert_eq!(armoured.e, "AQAB");
    assert_eq!(armoured.bits, 2048);
    for static_key in [&armoured, &bare] {
        for header in [
            good_header(),
            with(good_header(), json!({"kid": "test-kid"})),
            with(good_header(), json!({"kid": null})),
            with(good_header(), json!({"kid": 7})),
        ] {
            let token = sign_h(&header, &good_claims());
            let v = verify_signed(&token, Carrier::Header, None, Some(static_key), &policy());
            assert!(v.is_ok(), "{header}: {v:?}");
        }
        // Still a real signature check.
        let forged = other_key().sign_with_header(&good_header(), &good_claims());
        match verify_signed(&forged, Carrier::Header, None, Some(static_key), &policy()) {
            Err(Refusal::Failed(f)) => assert_eq!(f.reason, Reason::TokenInvalidSignature),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn static_key_covers_kids_the_remote_set_lacks() {
    let static_key = verifying(key(), "local");
    let remote = keyset_of(&[("ins_other", other_key())]);
    let token = sign_h(&with(good_header(), json!({"kid": "ins_unknown"})), &good_claims());
    assert!(verify_signed(&token, Carrier::Header, Some(&remote), Some(&static_key), &policy()).is_ok());
    // Without the static key the same token is an unknown kid.
    assert_eq!(
        verify_signed(&token, Carrier::Header, Some(&remote), None, &policy()).unwrap_err(),
        Refusal::UnknownKid("ins_unknown".into())
    );
}

#[test]
fn unknown_kid_and_no_keys() {
    let token = sign_h(&with(good_header(), json!({"kid": "ins_rotated"})), &good_claims());
    assert_eq!(signed(&token, &policy()).unwrap_err(), Refusal::UnknownKid("ins_rotated".into()));
    // No kid at all, with a remote set: nothing to look up.
    let no_kid = sign_h(&with(good_header(), json!({"kid": null})), &good_claims());
    assert_eq!(signed(&no_kid, &policy()).unwrap_err(), Refusal::UnknownKid(String::new()));
    // An empty remote set is still a remote set: the caller decides whether it is usable.
    let empty = KeySet::default();
    assert_eq!(
        verify_signed(&token, Carrier::Header, Some(&empty), None, &policy()).unwrap_err(),
        Refusal::UnknownKid("ins_rotated".into())
    );
    for t in [&token, &good_token(), &no_kid] {
        assert_eq!(verify_signed(t, Carrier::Header, None, None, &policy()).unwrap_err(), Refusal::NoKeys);
    }
}

#[test]
fn the_key_is_chosen_by_kid() {
    let two = keyset_of(&[("ins_a", key()), ("ins_b", other_key())]);
    let a = sign_h(&with(good_header(), json!({"kid": "ins_a"})), &good_claims());
    let b_named_but_a_signed = sign_h(&with(good_header(), json!({"kid": "ins_b"})), &good_claims());
    let b = other_key().sign_with_header(&with(good_header(), json!({"kid": "ins_b"})), &good_claims());
    assert!(verify_signed(&a, Carrier::Header, Some(&two), None, &policy()).is_ok());
    assert!(verify_signed(&b, Carrier::Header, Some(&two), None, &policy()).is_ok());
    match verify_signed(&b_named_but_a_signed, Carrier::Header, Some(&two), None, &policy()) {
        Err(Refusal::Failed(f)) => assert_eq!(f.reason, Reason::TokenInvalidSignature),
        other => panic!("{other:?}"),
    }
}

#[test]
fn case_22_kid_mismatch_message_does_not_list_kids() {
    let f = kid_mismatch("ins_nope", Carrier::Cookie);
    assert_eq!(f.reason, Reason::JwkKidMismatch);
    assert_eq!(
        f.message,
        "Unable to find a signing key in JWKS that matches the kid='ins_nope' of the provided session token. Please make sure that the __session cookie or the HTTP authorization header contain a Clerk-generated session JWT. Go to your Dashboard and validate your secret and public keys are correct. Contact support@clerk.com if the issue persists. (reason=jwk-kid-mismatch, token-carrier=cookie)"
    );
    assert!(!f.message.contains(KID));
}

#[test]
fn rsa_keys_below_2048_or_above_8192_bits_are_refused() {
    let e = [1u8, 0, 1];
    let mut n1024 = vec![0xC3u8; 128];
    n1024[127] |= 1;
    let err = VerifyingKey::from_raw_components(&n1024, &e, None).unwrap_err();
    assert!(err.contains("1024 bits") && err.contains("2048"), "{err}");
    // Leading zero bytes do not count towards the size.
    let mut padded = vec![0u8; 200];
    padded.extend_from_slice(&n1024);
    assert!(VerifyingKey::from_raw_components(&padded, &e, None).is_err());
    // 2047 bits: one short.
    let mut n2047 = vec![0xFFu8; 256];
    n2047[0] = 0x7F;
    assert!(VerifyingKey::from_raw_components(&n2047, &e, None).unwrap_err().contains("2047 bits"));
    let n8200 = vec![0xFFu8; 1025];
    assert!(VerifyingKey::from_raw_components(&n8200, &e, None).is_err());
    assert!(VerifyingKey::from_raw_components(&[], &e, None).is_err());
    // Via JWK too.
    let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    assert!(VerifyingKey::from_jwk_components(&b.encode(&n1024), "AQAB", Some("k".into())).is_err());
    // The generated 2048-bit key loads.
    assert_eq!(verifying(key(), KID).bits, 2048);
}

#[test]
fn key_material_in_token_headers_is_ignored() {
    let attacker = other_key();
    let attacker_jwk = attacker.jwk(KID);
    let hostile_header = with(
        good_header(),
        json!({
            "jwk": attacker_jwk,
            "jku": "https://attacker.example/jwks.json",
            "x5u": "https://attacker.example/cert.pem",
            "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
        }),
    );
    let forged = attacker.sign_with_header(&hostile_header, &good_claims());
    let f = failure(&forged, &policy(), NOW_MS);
    assert_eq!(f.reason, Reason::TokenInvalidSignature);
    // Same with a kid the set does not hold: it is unknown, never "trusted from the header".
    let forged_unknown =
        attacker.sign_with_header(&with(hostile_header.clone(), json!({"kid": "attacker"})), &good_claims());
    assert_eq!(signed(&forged_unknown, &policy()).unwrap_err(), Refusal::UnknownKid("attacker".into()));
    assert_eq!(verify_signed(&forged_unknown, Carrier::Header, None, None, &policy()).unwrap_err(), Refusal::NoKeys);
    // Our own token with those headers verifies: they are ignored, not refused.
    assert!(full(&sign_h(&hostile_header, &good_claims()), &policy(), NOW_MS).is_ok());
}

// === iss (ours) ===

#[test]
fn issuer_table() {
    let cases: Vec<(&str, Value, Option<String>)> = vec![
        ("equal", json!({}), None),
        ("trailing slash on the token", json!({"iss": format!("{ISS}/")}), None),
        (
            "other host",
            json!({"iss": "https://clerk.evil.example"}),
            Some("Invalid JWT issuer claim (iss) \"https://clerk.evil.example\".".into()),
        ),
        (
            "scheme differs",
            json!({"iss": "http://clerk.inspired.puma-74.lcl.dev"}),
            Some("Invalid JWT issuer claim (iss) \"http://clerk.inspired.puma-74.lcl.dev\".".into()),
        ),
        ("missing", json!({"iss": null}), Some("Invalid JWT issuer claim (iss) undefined.".into())),
        ("not a string", json!({"iss": 1}), Some("Invalid JWT issuer claim (iss) 1.".into())),
    ];
    let p = Policy { issuer: Some(ISS), ..policy() };
    for (name, change, expected) in cases {
        let got = full(&sign(&with(good_claims(), change)), &p, NOW_MS);
        match expected {
            None => assert!(got.is_ok(), "{name}: {got:?}"),
            Some(m) => {
                let f = got.expect_err(name);
                assert_eq!(f.reason, Reason::IssuerMismatch, "{name}");
                assert_eq!(f.message, format!("{m} Expected \"{ISS}\".{}", suffix("issuer-mismatch")), "{name}");
            }
        }
    }
    // Without a configured issuer, iss is not checked (Clerk's behaviour).
    assert!(full(&sign(&with(good_claims(), json!({"iss": "x"}))), &policy(), NOW_MS).is_ok());
}

#[test]
fn azp_is_checked_before_iss() {
    let list = parties(&["https://nope.example"]);
    let p = Policy { authorized_parties: &list, issuer: Some("https://other.example"), skew_ms: DEFAULT_SKEW_MS };
    assert_eq!(reason(&good_token(), &p, NOW_MS), Some(Reason::TokenInvalidAuthorizedParties));
}

#[test]
fn identity_headers_for_an_org_token() {
    let claims = with(
        good_claims(),
        json!({
            "org_id": "org_1",
            "org_slug": "acme",
            "org_role": "org:admin",
            "org_permissions": ["org:billing:manage", "org:x:read"],
            "act": {"sub": "user_admin"},
        }),
    );
    let v = full(&sign(&claims), &policy(), NOW_MS).unwrap();
    let id = &v.identity;
    assert_eq!(id.org_id.as_ref().unwrap(), "org_1");
    assert_eq!(id.org_slug.as_ref().unwrap(), "acme");
    assert_eq!(id.org_role.as_ref().unwrap(), "org:admin");
    assert_eq!(id.org_permissions.as_ref().unwrap(), "org:billing:manage,org:x:read");
    assert_eq!(id.actor.as_ref().unwrap(), "user_admin");
}

#[test]
fn identity_claims_a_header_cannot_carry_exactly_are_refused() {
    let org = json!({"org_id": "org_1", "org_slug": "acme", "org_role": "org:admin"});
    let cases: Vec<(&str, Value, &str)> = vec![
        ("sub with a newline", json!({"sub": "user\n1"}), "sub cannot be forwarded exactly as X-Clerk-User-Id"),
        ("empty sub", json!({"sub": ""}), "sub cannot be forwarded exactly as X-Clerk-User-Id"),
        ("sub with a space", json!({"sub": "user 1"}), "sub cannot be forwarded exactly as X-Clerk-User-Id"),
        ("sub with obs-text", json!({"sub": "usér"}), "sub cannot be forwarded exactly as X-Clerk-User-Id"),
        ("sid with a tab", json!({"sid": "sess\t1"}), "sid cannot be forwarded exactly as X-Clerk-Session-Id"),
        (
            "org id with NUL",
            with(org.clone(), json!({"org_id": "org\u{0}1"})),
            "organization id cannot be forwarded exactly as X-Clerk-Org-Id",
        ),
        (
            "org slug with a trailing space",
            with(org.clone(), json!({"org_slug": "acme "})),
            "organization slug cannot be forwarded exactly as X-Clerk-Org-Slug",
        ),
        (
            "org role with DEL",
            with(org.clone(), json!({"org_role": "org:admin\u{7f}"})),
            "organization role cannot be forwarded exactly as X-Clerk-Org-Role",
        ),
        (
            "permission with a comma",
            with(org.clone(), json!({"org_permissions": ["org:a:b,org:admin:all"]})),
            "organization permission cannot be forwarded exactly as X-Clerk-Org-Permissions",
        ),
        (
            "permission with CRLF",
            with(org.clone(), json!({"org_permissions": ["org:ok:read", "org:x\r\ny"]})),
            "organization permission cannot be forwarded exactly as X-Clerk-Org-Permissions",
        ),
        (
            "v2 permission name with obs-text",
            json!({"v": 2, "fea": "o:billing", "o": {"id": "org_1", "per": "mänage", "fpm": "1"}}),
            "organization permission cannot be forwarded exactly as X-Clerk-Org-Permissions",
        ),
        (
            "actor with a newline",
            json!({"act": {"sub": "user_admin\n"}}),
            "act.sub cannot be forwarded exactly as X-Clerk-Actor",
        ),
    ];
    for (what, change, says) in cases {
        let f = failure(&sign(&with(good_claims(), change)), &policy(), NOW_MS);
        assert_eq!(f.reason, Reason::TokenInvalid, "{what}");
        assert!(f.message.starts_with(&format!("The session token's {says}")), "{what}: {}", f.message);
        assert!(f.message.ends_with(&suffix("token-invalid")), "{what}: {}", f.message);
    }
    // Empty optional claims are forwarded as absent; unprefixed v1 permissions are not listed.
    let claims = with(
        good_claims(),
        json!({"sid": "", "org_id": "org_1", "org_slug": "", "org_role": "", "org_permissions": ["read"], "act": {"sub": ""}}),
    );
    let v = full(&sign(&claims), &policy(), NOW_MS).expect("forwardable");
    let id = &v.identity;
    assert_eq!(id.user_id, SUB);
    assert_eq!(id.org_id.as_ref().unwrap(), "org_1");
    for absent in [&id.session_id, &id.org_slug, &id.org_role, &id.org_permissions, &id.actor] {
        assert!(absent.is_none(), "{id:?}");
    }
}

#[test]
fn malformed_org_claims_are_verification_failures() {
    let claims = with(
        good_claims(),
        json!({"v": 2, "fea": "billing,o:dashboard", "o": {"id": "org_1", "rol": "admin", "per": "manage", "fpm": "1,1"}}),
    );
    let f = failure(&sign(&claims), &policy(), NOW_MS);
    assert_eq!(f.reason, Reason::TokenVerificationFailed);
    assert_eq!(
        f.message,
        format!(
            "The fea claim has an element without a scope (scope:feature). Make sure that this is a valid Clerk-generated JWT.{}",
            suffix("token-verification-failed")
        )
    );
}

#[test]
fn typ_null_is_an_invalid_type() {
    let mut header = good_header();
    header["typ"] = Value::Null;
    let f = failure(&sign_h(&header, &good_claims()), &policy(), NOW_MS);
    assert_eq!(f.reason, Reason::TokenInvalid);
    assert_eq!(f.message, format!("Invalid JWT type null. Expected \"JWT\".{}", suffix("token-invalid")));
}

#[test]
fn a_header_that_is_a_json_array_is_never_read_as_fields() {
    let token = sign_h(&json!(["RS256", "JWT", KID]), &good_claims());
    assert_eq!(reason(&token, &policy(), NOW_MS), Some(Reason::TokenInvalid));
}

// === Never panics ===

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop::sample::select(vec!["RS256", "JWT", KID, CAT_M2M, "mch_x", "at+jwt"])
            .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "alg",
                    "typ",
                    "kid",
                    "cat",
                    "sub",
                    "sid",
                    "exp",
                    "nbf",
                    "iat",
                    "azp",
                    "iss",
                    "sts",
                    "v",
                    "o",
                    "org_id",
                    "org_permissions",
                    "act",
                    "fea",
                    "x",
                ])
                .prop_map(str::to_string),
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn run_everything(token: &str) {
    let _ = decode(token, Carrier::Header);
    let list = parties(&[AZP]);
    let p = Policy { authorized_parties: &list, issuer: Some(ISS), skew_ms: 5000 };
    let static_key = verifying(key(), "s");
    for (set, stat) in
        [(Some(keys()), None), (None, Some(&static_key)), (None, None), (Some(keys()), Some(&static_key))]
    {
        if let Ok(v) = verify_signed(token, Carrier::Cookie, set, stat, &p) {
            for now in [i64::MIN, -1, 0, NOW_MS, i64::MAX] {
                let _ = check_time(&v, now, 5000, Carrier::Cookie);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_strings(s in any::<String>()) {
        run_everything(&s);
    }

    #[test]
    fn never_panics_on_dotted_strings(parts in prop::collection::vec("[A-Za-z0-9_=+/-]{0,40}", 0..5)) {
        run_everything(&parts.join("."));
    }

    #[test]
    fn never_panics_on_base64_of_arbitrary_json(
        header in json_value(),
        payload in json_value(),
        sig in prop::collection::vec(any::<u8>(), 0..300),
        raw_payload in prop::option::of(".{0,40}"),
    ) {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let p = raw_payload.unwrap_or_else(|| payload.to_string());
        let token = format!("{}.{}.{}", b.encode(header.to_string()), b.encode(p), b.encode(&sig));
        run_everything(&token);
    }

    #[test]
    fn never_panics_on_really_signed_arbitrary_claims(
        header_extra in json_value(),
        payload in json_value(),
    ) {
        // Our key's signature over arbitrary claims: every claim check sees arbitrary types.
        let mut header = good_header();
        if let Value::Object(extra) = header_extra {
            for (k, v) in extra {
                if k != "alg" && k != "kid" {
                    header[k] = v;
                }
            }
        }
        run_everything(&sign_h(&header, &payload));
    }
}
