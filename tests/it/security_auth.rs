//! Issue #8, items 3–7: hostile but validly signed tokens, through a real socket against the
//! in-process gateway in front of the real echo upstream.
//!
//! - 3: time claims far outside the calendar are answered (never a dropped connection), and
//!   grace never mistakes an absurd `exp` for a recent one.
//! - 4: every segment is decoded strictly and the JOSE header must be a JSON object whose
//!   `typ` and `cat` have the types Clerk requires.
//! - 5: malformed organisation claims (`fea`, `o.per`, `o.fpm`) leave no usable session.
//! - 6: an identity that cannot be carried exactly in a header is refused, never forwarded as
//!   signed-in without it.
//! - 7: pending sessions are signed out by default, as in Clerk's SDK.

use base64::Engine;
use clerkgate::clock::Clock;
use serde_json::{json, Map, Value};

use crate::support::{self, claims_at, gateway, Reply, KID};

/// A fixed start for manual clocks (2030-03-17), a whole second.
const T0_MS: i64 = 1_900_000_000_000;
const T0_S: i64 = T0_MS / 1000;

/// Clerk's session-token category, as Clerk puts it in the JOSE header.
const CAT_SESSION: &str = "cl_B7d4PD111AAA";

const ADMIN_RULE: &str = "path = \"/api/admin(.*)\"\nrole = \"org:admin\"";
const BILLING_RULE: &str = "path = \"/api/billing(.*)\"\npermission = \"org:billing:manage\"";

/// A networkless gateway with a role route and a permission route; `/`, `/public(.*)` and
/// `/health` are public, everything else protected.
fn gateway_with_rules() -> support::GatewayBuilder {
    gateway().jwt_key().section("[[routes.rule]]", ADMIN_RULE).section("[[routes.rule]]", BILLING_RULE)
}

/// A token issued now, signed with the test key, its claims edited.
fn token(edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    support::sign(&claims_at(support::now_s(), edit))
}

/// The members of a `json!` object literal.
fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// `base` with the members of `changes` put over it.
fn merged(base: Value, changes: Value) -> Value {
    let mut map = object(base);
    map.extend(object(changes));
    Value::Object(map)
}

/// Clerk's JOSE header for the test key.
fn clerk_header() -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": KID, "cat": CAT_SESSION})
}

/// Asserts a refusal: status, `X-Clerk-Auth-Reason`, and the JSON body's reason.
fn assert_refused(r: &Reply, status: u16, reason: &str, what: &str) {
    assert_eq!(r.status, status, "{what}: status; body: {}", r.body);
    assert_eq!(r.reason(), Some(reason), "{what}: X-Clerk-Auth-Reason; body: {}", r.body);
    assert_eq!(r.json()["reason"], reason, "{what}: body reason: {}", r.body);
}

/// The body's message of a refusal.
fn message(r: &Reply) -> String {
    r.json()["message"].as_str().unwrap_or_default().to_string()
}

/// Asserts that the upstream received the request as signed out, with no identity at all.
fn assert_forwarded_signed_out(r: &Reply, what: &str) {
    assert_forwarded_without_identity(r, "signed-out", what);
}

/// Asserts that the upstream received the request with this auth status and no identity at all.
fn assert_forwarded_without_identity(r: &Reply, status: &str, what: &str) {
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    let e = r.echoed();
    assert_eq!(e.one("x-clerk-auth-status"), Some(status), "{what}");
    for name in [
        "x-clerk-user-id",
        "x-clerk-session-id",
        "x-clerk-org-id",
        "x-clerk-org-slug",
        "x-clerk-org-role",
        "x-clerk-org-permissions",
        "x-clerk-actor",
    ] {
        assert_eq!(e.one(name), None, "{what}: {name} forwarded for a session that did not authenticate");
    }
}

// ---------------------------------------------------------------------------------------------
// Item 3: time claims far outside the calendar
// ---------------------------------------------------------------------------------------------

/// Before the fix, formatting these dates for the refusal message panicked (httpdate handles
/// neither dates before 1970 nor years after 9999) and the client got no answer at all.
#[tokio::test]
async fn time_claims_outside_the_calendar_are_answered_not_dropped() {
    let gw = gateway().jwt_key().start().await;
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("exp", json!(-1), "token-expired", "Expiry date: Wed, 31 Dec 1969 23:59:59 GMT,"),
        ("exp", json!(-1e20), "token-expired", "Expiry date: Invalid Date,"),
        ("exp", json!(i64::MIN), "token-expired", "Expiry date: Invalid Date,"),
        ("nbf", json!(253_402_300_800_i64), "token-not-active-yet", "Not before date: Sat, 01 Jan 10000 00:00:00 GMT;"),
        ("nbf", json!(1e20), "token-not-active-yet", "Not before date: Invalid Date;"),
        (
            "iat",
            json!(253_402_300_800_i64),
            "token-iat-in-the-future",
            "Issued at date: Sat, 01 Jan 10000 00:00:00 GMT;",
        ),
        ("iat", json!(1e20), "token-iat-in-the-future", "Issued at date: Invalid Date;"),
        ("iat", json!(u64::MAX), "token-iat-in-the-future", "Issued at date: Invalid Date;"),
    ];
    for (claim, value, reason, shown) in cases {
        let what = format!("{claim} = {value}");
        let t = token(|c| {
            c.insert(claim.into(), value.clone());
        });
        let r = gw.get("/api/me", Some(&t), &[]).await;
        assert_refused(&r, 401, reason, &what);
        assert!(message(&r).contains(shown), "{what}: message {:?} lacks {shown:?}", message(&r));
    }
    // An expiry far in the future is just a valid token (Clerk accepts it too).
    for exp in [json!(253_402_300_800_i64), json!(1e20), json!(u64::MAX)] {
        let t = token(|c| {
            c.insert("exp".into(), exp.clone());
        });
        let r = gw.get("/api/me", Some(&t), &[]).await;
        assert_eq!(r.status, 200, "exp = {exp}: {}", r.body);
        assert_eq!(r.echoed().one("x-clerk-user-id"), Some("user_test"), "exp = {exp}");
    }
}

/// `now − exp` overflowed for an `exp` near `i64::MIN` milliseconds: a panic in a debug build,
/// and in a release build a wrapped, negative "expired by" that grace mode would accept.
#[tokio::test]
async fn grace_never_accepts_an_exp_from_before_the_calendar() {
    let gw = gateway()
        .jwt_key()
        .section("mode", "mode = \"grace\"\nreason = \"test\"")
        .clock(Clock::manual(T0_MS))
        .start()
        .await;
    for exp in [json!(-9_223_372_036_854_775_i64), json!(i64::MIN), json!(-1e300)] {
        let t = support::sign(&claims_at(T0_S, |c| {
            c.insert("exp".into(), exp.clone());
        }));
        let r = gw.get("/api/me", Some(&t), &[]).await;
        assert_refused(&r, 401, "token-expired", &format!("grace, exp = {exp}"));
    }
    // Grace itself still works on the same gateway: ten minutes expired is accepted.
    let t = support::sign(&claims_at(T0_S - 660, |_| {}));
    let r = gw.get("/api/me", Some(&t), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed().one("x-auth-degraded"), Some("grace"));
}

// ---------------------------------------------------------------------------------------------
// Item 4: strict decoding and a JOSE header of the right shape
// ---------------------------------------------------------------------------------------------

/// Signs an arbitrary JSON value as the JOSE header (an array included) with the test key.
fn sign_raw_header(header: &Value, claims: &Value) -> String {
    support::key().sign_with_header(header, claims)
}

#[tokio::test]
async fn a_jose_header_that_is_a_json_array_is_token_invalid() {
    let gw = gateway().jwt_key().start().await;
    // serde reads a struct from a sequence in field order: this array once read as
    // {alg: RS256, typ: JWT, kid, cat} and the token verified.
    let header = json!(["RS256", "JWT", KID, CAT_SESSION]);
    let t = sign_raw_header(&header, &claims_at(support::now_s(), |_| {}));
    let r = gw.get("/api/me", Some(&t), &[]).await;
    assert_refused(&r, 401, "token-invalid", "array header");
    // A public route treats it as no session at all.
    assert_forwarded_signed_out(&gw.get("/public/page", Some(&t), &[]).await, "array header, public route");
}

#[tokio::test]
async fn typ_null_and_cat_null_get_clerks_reasons() {
    let gw = gateway().jwt_key().start().await;
    let claims = claims_at(support::now_s(), |_| {});
    let mut typ_null = clerk_header();
    typ_null["typ"] = Value::Null;
    let r = gw.get("/api/me", Some(&sign_raw_header(&typ_null, &claims)), &[]).await;
    assert_refused(&r, 401, "token-invalid", "typ: null");
    assert!(message(&r).starts_with("Invalid JWT type null."), "{}", message(&r));

    let mut cat_null = clerk_header();
    cat_null["cat"] = Value::Null;
    let r = gw.get("/api/me", Some(&sign_raw_header(&cat_null, &claims)), &[]).await;
    assert_refused(&r, 401, "token-type-mismatch", "cat: null");

    // The same header with the fields absent is a good token, so the table is not vacuous.
    let mut absent = clerk_header();
    absent.as_object_mut().map(|h| (h.remove("typ"), h.remove("cat")));
    let r = gw.get("/api/me", Some(&sign_raw_header(&absent, &claims)), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

const URL_SAFE: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// A valid token whose signature segment contains `-` or `_` (so that it has a distinct
/// standard-alphabet spelling), split into `header.payload` and the signature.
fn token_with_url_safe_only_characters() -> (String, String) {
    for n in 0..64 {
        let t = token(|c| {
            c.insert("jti".into(), format!("jti_{n}").into());
        });
        let (input, sig) = t.rsplit_once('.').expect("three segments");
        if sig.contains(['-', '_']) {
            return (input.to_string(), sig.to_string());
        }
    }
    panic!("no signature with - or _ in 64 tries");
}

#[tokio::test]
async fn non_canonical_signature_encodings_are_token_invalid() {
    let gw = gateway().jwt_key().start().await;
    let (input, sig) = token_with_url_safe_only_characters();
    assert_eq!(gw.get("/api/me", Some(&format!("{input}.{sig}")), &[]).await.status, 200, "the original verifies");

    let padded = format!("{sig}{}", "=".repeat((4 - sig.len() % 4) % 4));
    assert_ne!(padded, sig, "a 256-byte signature needs padding");
    let standard = sig.replace('-', "+").replace('_', "/");
    // The last character carries fewer than six bits of the signature; setting an unused low
    // bit gives a spelling that a lenient decoder reads as the same bytes.
    let last = sig.chars().last().expect("non-empty");
    let index = URL_SAFE.find(last).expect("url-safe character");
    let trailing = format!("{}{}", &sig[..sig.len() - 1], URL_SAFE.as_bytes()[index | 1] as char);
    assert_ne!(trailing, sig, "the unused bits were already set");
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_allow_trailing_bits(true)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    assert_eq!(lenient.decode(&trailing).ok(), lenient.decode(&sig).ok(), "same bytes, other spelling");

    for (what, segment) in [("= padding", padded), ("standard alphabet", standard), ("trailing bits", trailing)] {
        let r = gw.get("/api/me", Some(&format!("{input}.{segment}")), &[]).await;
        assert_refused(&r, 401, "token-invalid", what);
        assert_forwarded_signed_out(
            &gw.get("/public/page", Some(&format!("{input}.{segment}")), &[]).await,
            &format!("{what}, public route"),
        );
    }
}

#[tokio::test]
async fn padded_header_and_payload_segments_are_token_invalid() {
    let gw = gateway().jwt_key().start().await;
    // Sign the padded segments themselves, so only the padding is at fault.
    let b64 = base64::engine::general_purpose::URL_SAFE;
    let header = b64.encode(clerk_header().to_string());
    let payload = b64.encode(claims_at(support::now_s(), |_| {}).to_string());
    assert!(header.ends_with('=') || payload.ends_with('='), "test data needs padding: {header}.{payload}");
    let input = format!("{header}.{payload}");
    let sig = rsa_sign(&input);
    let r = gw.get("/api/me", Some(&format!("{input}.{sig}")), &[]).await;
    assert_refused(&r, 401, "token-invalid", "padded header/payload");
}

/// RS256 over `input` with the test key, base64url without padding.
fn rsa_sign(input: &str) -> String {
    let body: String = support::key().private_pem().lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).expect("pem");
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).expect("pkcs8");
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .expect("sign");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
}

// ---------------------------------------------------------------------------------------------
// Item 5: malformed organisation claims
// ---------------------------------------------------------------------------------------------

/// A v2 admin of `org_1` holding `org:billing:manage`, with `edit` applied to the claims.
fn v2_admin(edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    token(|c| {
        c.insert("v".into(), 2.into());
        c.insert("fea".into(), "o:billing".into());
        c.insert("o".into(), json!({"id": "org_1", "slg": "acme", "rol": "admin", "per": "manage", "fpm": "1"}));
        edit(c);
    })
}

#[tokio::test]
async fn malformed_org_claims_leave_no_usable_session() {
    let gw = gateway_with_rules().start().await;
    // The well-formed token passes both rules, so every refusal below is the malformation's.
    let good = v2_admin(|_| {});
    assert_eq!(gw.get("/api/admin/x", Some(&good), &[]).await.status, 200);
    assert_eq!(gw.get("/api/billing/x", Some(&good), &[]).await.status, 200);

    let cases: [(&str, Value); 6] = [
        ("fea element without a scope", json!({"fea": "billing,o:dashboard"})),
        ("fea with an empty element", json!({"fea": "o:billing,"})),
        ("fea not a string", json!({"fea": ["o:billing"]})),
        ("o.per not a string", json!({"o": {"id": "org_1", "rol": "admin", "per": ["manage"], "fpm": "1"}})),
        ("o.fpm not a string", json!({"o": {"id": "org_1", "rol": "admin", "per": "manage", "fpm": 1}})),
        ("malformed fea with an o that has no id", json!({"fea": "billing", "o": {"rol": "admin"}})),
    ];
    for (what, changes) in cases {
        let t = v2_admin(|c| c.extend(object(changes)));
        for path in ["/api/admin/x", "/api/billing/x", "/api/me"] {
            let r = gw.get(path, Some(&t), &[]).await;
            assert_refused(&r, 401, "token-verification-failed", &format!("{what}, {path}"));
        }
        // Not forwarded as if valid anywhere: a public route sees no session and no org.
        assert_forwarded_signed_out(&gw.get("/public/x", Some(&t), &[]).await, what);
    }
}

#[tokio::test]
async fn malformed_org_claims_yield_no_identity_in_bypass_mode() {
    let gw = gateway().jwt_key().section("mode", "mode = \"bypass\"\nreason = \"test\"").start().await;
    let t = v2_admin(|c| {
        c.insert("fea".into(), "billing,o:dashboard".into());
    });
    let r = gw.get("/api/admin/x", Some(&t), &[]).await;
    assert_forwarded_without_identity(&r, "bypass", "malformed fea under bypass");
    assert_eq!(r.header("x-auth-bypass"), Some("true"));
}

// ---------------------------------------------------------------------------------------------
// Item 6: identity that a header cannot carry exactly
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_identity_a_header_cannot_carry_exactly_is_refused() {
    let gw = gateway().jwt_key().start().await;
    let org = |extra: Value| merged(json!({"org_id": "org_1", "org_slug": "acme", "org_role": "org:admin"}), extra);
    let cases: Vec<(&str, Value)> = vec![
        ("sub with a newline", json!({"sub": "user_1\nX-Clerk-Org-Role: org:admin"})),
        ("sub with a tab", json!({"sub": "user\t1"})),
        ("sub with a leading space", json!({"sub": " user_1"})),
        ("sub with non-ASCII", json!({"sub": "usér_1"})),
        ("empty sub", json!({"sub": ""})),
        ("sid with DEL", json!({"sid": "sess\u{7f}1"})),
        ("v1 org id with a newline", json!({"org_id": "org_1\n"})),
        ("v1 org slug with non-ASCII", org(json!({"org_slug": "acmé"}))),
        ("v1 org role with a space", org(json!({"org_role": "org:admin x"}))),
        ("v1 permission with non-ASCII", org(json!({"org_permissions": ["org:billing:read", "org:billing:mänage"]}))),
        ("v1 permission with a comma", org(json!({"org_permissions": ["org:billing:read,org:admin:all"]}))),
        (
            "v2 permission name with non-ASCII",
            json!({"v": 2, "fea": "o:billing", "o": {"id": "org_1", "rol": "admin", "per": "mänage", "fpm": "1"}}),
        ),
        ("act.sub with a carriage return", json!({"act": {"sub": "user_admin\r"}})),
    ];
    for (what, changes) in cases {
        let t = token(|c| c.extend(object(changes)));
        let r = gw.get("/api/me", Some(&t), &[]).await;
        assert_refused(&r, 401, "token-invalid", what);
        assert!(message(&r).contains("cannot be forwarded"), "{what}: {}", message(&r));
        assert_forwarded_signed_out(&gw.get("/public/x", Some(&t), &[]).await, what);
    }
    // Every field at its plain ASCII best is forwarded exactly.
    let t = token(|c| {
        c.insert("org_id".into(), "org_1".into());
        c.insert("org_slug".into(), "acme-inc".into());
        c.insert("org_role".into(), "org:admin".into());
        c.insert("org_permissions".into(), json!(["org:billing:manage", "org:billing:read"]));
        c.insert("act".into(), json!({"sub": "user_admin"}));
    });
    let r = gw.get("/api/me", Some(&t), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.echoed();
    assert_eq!(e.one("x-clerk-auth-status"), Some("signed-in"));
    assert_eq!(e.one("x-clerk-user-id"), Some("user_test"));
    assert_eq!(e.one("x-clerk-session-id"), Some("sess_test"));
    assert_eq!(e.one("x-clerk-org-id"), Some("org_1"));
    assert_eq!(e.one("x-clerk-org-slug"), Some("acme-inc"));
    assert_eq!(e.one("x-clerk-org-role"), Some("org:admin"));
    assert_eq!(e.one("x-clerk-org-permissions"), Some("org:billing:manage,org:billing:read"));
    assert_eq!(e.one("x-clerk-actor"), Some("user_admin"));
}

// ---------------------------------------------------------------------------------------------
// Item 7: pending sessions
// ---------------------------------------------------------------------------------------------

fn pending() -> String {
    token(|c| {
        c.insert("sts".into(), "pending".into());
    })
}

#[tokio::test]
async fn a_pending_session_is_signed_out_by_default() {
    // No `reject_pending_sessions` key: the default applies.
    let gw = gateway().jwt_key().start().await;
    let r = gw.get("/api/me", Some(&pending()), &[]).await;
    assert_refused(&r, 401, "session-pending", "pending, protected route");
    // A public route sees a signed-out visitor, as Clerk's auth object does.
    assert_forwarded_signed_out(&gw.get("/public/x", Some(&pending()), &[]).await, "pending, public route");
    // An active session is unaffected.
    assert_eq!(gw.get("/api/me", Some(&support::token()), &[]).await.status, 200);
}

#[tokio::test]
async fn pending_sessions_are_accepted_only_when_switched_on() {
    let gw = gateway().jwt_key().clerk("reject_pending_sessions = false").start().await;
    let r = gw.get("/api/me", Some(&pending()), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed().one("x-clerk-user-id"), Some("user_test"));
}
