//! The data plane through real sockets: SPEC §3's header table and answer table, the modes of
//! §4, and the peer security cases T01–T15, T23, T24, T26 and T28 (peers.md §3).
//!
//! Every test talks to an in-process gateway on 127.0.0.1:0 in front of the real echo upstream,
//! which reports every header line it received; what the upstream saw is the witness.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use clerkgate::app::{self, Options};
use clerkgate::clock::Clock;
use clerkgate::config::{Config, Env};
use clerkgate::mint::TokenSpec;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, claims_at, gateway, raw, Echoed, JwksReply, JwksServer, Reply, TestGateway, KID};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A fixed start for manual clocks (2030-03-17), a whole second.
const T0_MS: i64 = 1_900_000_000_000;
const T0_S: i64 = T0_MS / 1000;

const BYPASS: &str = "mode = \"bypass\"\nreason = \"test\"";
const GRACE: &str = "mode = \"grace\"\nreason = \"test\"";

/// The names the gateway itself sets for the upstream (SPEC §3 header table).
const GATEWAY_NAMES: [&str; 13] = [
    "x-clerk-auth-status",
    "x-clerk-user-id",
    "x-clerk-session-id",
    "x-clerk-org-id",
    "x-clerk-org-slug",
    "x-clerk-org-role",
    "x-clerk-org-permissions",
    "x-clerk-actor",
    "x-auth-bypass",
    "x-auth-degraded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// SPEC §3's reserved-name rule, re-implemented independently of the gateway.
fn is_reserved(name: &str) -> bool {
    let folded: String = name.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
    ["xclerk", "xauth", "xforwarded"].iter().any(|p| folded.starts_with(p))
        || folded == "forwarded"
        || folded == "xrealip"
}

/// Every reserved header line the upstream received, sorted.
fn reserved_lines(e: &Echoed) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = e.headers.iter().filter(|(k, _)| is_reserved(k)).cloned().collect();
    v.sort();
    v
}

/// Asserts that the reserved headers the upstream received are exactly `expected`: the
/// gateway's own values, once each, and no client copy in any spelling.
fn assert_reserved_exactly(e: &Echoed, expected: &[(&str, &str)]) {
    let mut want: Vec<(String, String)> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    want.sort();
    assert_eq!(
        reserved_lines(e),
        want,
        "reserved headers at the upstream differ from the gateway's own set; all headers: {:?}",
        e.headers
    );
}

/// A raw reply seen as a [`Reply`] (to read the echo report).
fn reply(r: raw::RawReply) -> Reply {
    Reply { status: r.status, headers: r.headers, body: r.body }
}

/// A token for `user_test` signed with the test key, issued at `iat` (seconds), edited.
fn token_at(iat: i64, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
    support::sign(&claims_at(iat, edit))
}

/// A token that expired `ago_s` seconds before `now_s` (Clerk's 60 s lifetime).
fn expired_token(now_s: i64, ago_s: i64) -> String {
    let exp = now_s - ago_s;
    token_at(exp - 60, |c| {
        c.insert("exp".into(), exp.into());
    })
}

/// A token with the given claims and signed by the test key.
fn spec_token(spec: TokenSpec) -> String {
    support::token_for(&spec)
}

fn org_token(role: &str, permissions: &[&str], v2: bool) -> String {
    spec_token(TokenSpec {
        sub: "user_org".into(),
        sid: "sess_org".into(),
        org_id: Some("org_123".into()),
        org_slug: Some("acme".into()),
        org_role: Some(role.into()),
        org_permissions: permissions.iter().map(|p| p.to_string()).collect(),
        claims_v2: v2,
        ..TokenSpec::default()
    })
}

/// Signs `header.claims` with the test RSA key using `encoding` (not necessarily RS256).
fn rsa_sign(header: &Value, claims: &Value, encoding: &'static dyn aws_lc_rs::signature::RsaEncoding) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let body: String = support::key().private_pem().lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(body).expect("pem");
    let pair = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der).expect("pkcs8");
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(encoding, &aws_lc_rs::rand::SystemRandom::new(), input.as_bytes(), &mut sig).expect("sign");
    format!("{input}.{}", b64(sig))
}

fn enforce() -> support::GatewayBuilder {
    gateway().jwt_key()
}

fn bypass() -> support::GatewayBuilder {
    gateway().jwt_key().section("mode", BYPASS)
}

/// A grace-mode gateway on a manual clock at [`T0_MS`].
fn grace() -> support::GatewayBuilder {
    gateway().jwt_key().section("mode", GRACE).clock(Clock::manual(T0_MS))
}

/// Waits (bounded) until the gateway reports a usable key set on `/readyz`.
async fn wait_ready(gw: &TestGateway) {
    for _ in 0..250 {
        if let Ok(r) = support::client().get(gw.admin_url("/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gateway never became ready");
}

/// Sends raw bytes and reads one response: the head, plus a `Content-Length` body if any.
/// Does not wait for the server to close (an upgraded connection stays open).
async fn exchange(addr: SocketAddr, request: &str) -> raw::RawReply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    raw::parse(&buf)
}

fn assert_refused(r: &Reply, status: u16, reason: &str) {
    assert_eq!(r.status, status, "status; body: {}", r.body);
    assert_eq!(r.reason(), Some(reason), "X-Clerk-Auth-Reason; body: {}", r.body);
    let body = r.json();
    assert_eq!(body["reason"], reason, "body reason: {}", r.body);
    assert!(body["error"].is_string(), "body error: {}", r.body);
    assert!(body["message"].is_string(), "body message: {}", r.body);
}

// ---------------------------------------------------------------------------------------------
// A. SPEC §3, headers the upstream receives
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn verified_token_forwards_signed_in_with_user_and_session_ids() {
    let gw = enforce().start().await;
    let t = support::token();
    let r = gw.get("/api/me", Some(&t), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.echoed();
    assert_eq!(e.one("x-clerk-auth-status"), Some("signed-in"));
    assert_eq!(e.one("x-clerk-user-id"), Some("user_test"));
    assert_eq!(e.one("x-clerk-session-id"), Some("sess_test"));
    for absent in [
        "x-clerk-org-id",
        "x-clerk-org-slug",
        "x-clerk-org-role",
        "x-clerk-org-permissions",
        "x-clerk-actor",
        "x-auth-bypass",
        "x-auth-degraded",
    ] {
        assert_eq!(e.one(absent), None, "{absent} without a reason to be there");
    }
    // Authorization is forwarded unchanged (the upstream may verify again).
    assert_eq!(e.one("authorization"), Some(format!("Bearer {t}").as_str()));
    assert_eq!(r.header("x-auth-bypass"), None, "no bypass tag in enforce");
}

#[tokio::test]
async fn public_route_without_token_is_forwarded_signed_out() {
    let gw = enforce().start().await;
    for path in ["/", "/public/page", "/health"] {
        let r = gw.get(path, None, &[]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let e = r.echoed();
        assert_eq!(e.one("x-clerk-auth-status"), Some("signed-out"), "{path}");
        assert_eq!(e.one("x-clerk-user-id"), None, "{path}");
        assert_eq!(e.one("x-clerk-session-id"), None, "{path}");
    }
}

#[tokio::test]
async fn public_route_with_invalid_token_is_forwarded_signed_out_without_identity() {
    let gw = enforce().start().await;
    let forged = support::other_key().sign(Some(KID), &claims_at(support::now_s(), |_| {}));
    for bad in ["garbage", forged.as_str()] {
        let r = gw.get("/public/page", Some(bad), &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        let e = r.echoed();
        assert_eq!(e.one("x-clerk-auth-status"), Some("signed-out"));
        assert_eq!(e.one("x-clerk-user-id"), None);
        assert_eq!(e.one("x-clerk-session-id"), None);
    }
}

#[tokio::test]
async fn public_route_with_valid_token_is_signed_in() {
    let gw = enforce().start().await;
    let r = gw.get("/public/page", Some(&support::token()), &[]).await;
    let e = r.echoed();
    assert_eq!(e.one("x-clerk-auth-status"), Some("signed-in"));
    assert_eq!(e.one("x-clerk-user-id"), Some("user_test"));
}

fn permission_set(header: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> =
        header.unwrap_or_default().split(',').filter(|s| !s.is_empty()).map(str::to_string).collect();
    v.sort();
    v
}

#[tokio::test]
async fn org_headers_come_from_v1_claims() {
    let gw = enforce().start().await;
    let t = org_token("org:admin", &["org:billing:manage", "org:billing:read", "org:teams:read"], false);
    let r = gw.get("/api/org", Some(&t), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.echoed();
    assert_eq!(e.one("x-clerk-user-id"), Some("user_org"));
    assert_eq!(e.one("x-clerk-org-id"), Some("org_123"));
    assert_eq!(e.one("x-clerk-org-slug"), Some("acme"));
    assert_eq!(e.one("x-clerk-org-role"), Some("org:admin"));
    let perms = e.one("x-clerk-org-permissions");
    assert!(perms.is_some_and(|p| !p.contains(' ')), "comma-separated without spaces: {perms:?}");
    assert_eq!(permission_set(perms), ["org:billing:manage", "org:billing:read", "org:teams:read"]);
}

#[tokio::test]
async fn org_headers_come_from_v2_claims_with_fpm_decoded() {
    let gw = enforce().start().await;
    let t = org_token("org:admin", &["org:billing:manage", "org:billing:read", "org:teams:read"], true);
    // The token really is v2: no v1 org claims, an `o` object with a bare role and bitmasks.
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(payload["v"], 2);
    assert_eq!(payload["o"]["rol"], "admin");
    assert!(payload.get("org_id").is_none());

    let r = gw.get("/api/org", Some(&t), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.echoed();
    assert_eq!(e.one("x-clerk-org-id"), Some("org_123"));
    assert_eq!(e.one("x-clerk-org-slug"), Some("acme"));
    assert_eq!(e.one("x-clerk-org-role"), Some("org:admin"), "v2 role gets the org: prefix");
    assert_eq!(
        permission_set(e.one("x-clerk-org-permissions")),
        ["org:billing:manage", "org:billing:read", "org:teams:read"]
    );
}

#[tokio::test]
async fn actor_header_comes_from_act_sub() {
    let gw = enforce().start().await;
    let t = token_at(support::now_s(), |c| {
        c.insert(
            "act".into(),
            json!({"iss": "https://dashboard.clerk.com", "sid": "sess_imp", "sub": "user_support_agent"}),
        );
    });
    let r = gw.get("/api/me", Some(&t), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.echoed();
    assert_eq!(e.one("x-clerk-actor"), Some("user_support_agent"));
    assert_eq!(e.one("x-clerk-user-id"), Some("user_test"));
}

#[tokio::test]
async fn bypass_mode_tags_the_upstream_request_and_the_client_response() {
    let gw = bypass().start().await;
    let r = gw.get("/api/private", None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-auth-bypass"), Some("true"), "client response tagged");
    let e = r.echoed();
    assert_eq!(e.one("x-auth-bypass"), Some("true"), "upstream request tagged");
    assert_eq!(e.one("x-clerk-auth-status"), Some("bypass"));
    assert_eq!(e.one("x-clerk-user-id"), None);

    // An invalid token in bypass: forwarded, tagged, no identity.
    let r = gw.get("/api/private", Some("garbage"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-auth-bypass"), Some("true"));
    assert_eq!(r.echoed().one("x-clerk-user-id"), None);
}

#[tokio::test]
async fn bypass_mode_still_yields_identity_for_a_valid_token() {
    let gw = bypass().start().await;
    let r = gw.get("/api/private", Some(&support::token()), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-auth-bypass"), Some("true"));
    let e = r.echoed();
    assert_eq!(e.one("x-clerk-user-id"), Some("user_test"));
    assert_eq!(e.one("x-clerk-session-id"), Some("sess_test"));
    assert_eq!(e.one("x-clerk-auth-status"), Some("bypass"));
    assert_eq!(e.one("x-auth-bypass"), Some("true"));
}

#[tokio::test]
async fn bypass_never_route_stays_enforced_in_bypass_mode() {
    let gw = bypass()
        .section("[[routes.rule]]", "path = \"/api/admin(.*)\"\nrole = \"org:admin\"\nbypass = \"never\"")
        .start()
        .await;
    let r = gw.get("/api/admin/users", None, &[]).await;
    assert_refused(&r, 401, "session-token-missing");
    assert_eq!(r.header("x-auth-bypass"), None, "a refusal is not tagged as bypassed");

    // The rule's role still applies in bypass.
    let member = org_token("org:member", &[], false);
    let r = gw.get("/api/admin/users", Some(&member), &[]).await;
    assert_refused(&r, 403, "missing-role");

    let admin = org_token("org:admin", &[], false);
    let r = gw.get("/api/admin/users", Some(&admin), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.echoed();
    assert_eq!(e.one("x-clerk-auth-status"), Some("signed-in"));
    assert_eq!(e.one("x-auth-bypass"), None, "enforced route: not a bypass pass");

    // Everything else passes untagged-by-token.
    let r = gw.get("/api/other", None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed().one("x-auth-bypass"), Some("true"));
}

/// `RouteTable::bypass_never` documents that every applying rule is considered, "so that
/// reordering rules cannot silently drop the guarantee". A broad rule listed before a
/// `bypass = "never"` rule must not switch the guarantee off.
#[tokio::test]
async fn bypass_never_holds_even_when_an_earlier_rule_matches_first() {
    let gw = bypass()
        .section("[[routes.rule]]", "path = \"/api(.*)\"\nmethods = [\"GET\"]")
        .section("[[routes.rule]]", "path = \"/api/admin(.*)\"\nrole = \"org:admin\"\nbypass = \"never\"")
        .start()
        .await;
    let r = gw.get("/api/admin/users", None, &[]).await;
    assert_eq!(
        r.status,
        401,
        "a bypass = \"never\" route was bypassed because an earlier rule matched first; \
         X-Auth-Bypass: {:?}",
        r.header("x-auth-bypass")
    );
}

#[tokio::test]
async fn grace_mode_accepts_a_token_expired_ten_minutes_ago_tagged_degraded() {
    let gw = grace().start().await;
    let t = expired_token(T0_S, 600);
    let r = gw.get("/api/me", Some(&t), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.echoed();
    assert_eq!(e.one("x-auth-degraded"), Some("grace"));
    assert_eq!(e.one("x-clerk-auth-status"), Some("grace"));
    assert_eq!(e.one("x-clerk-user-id"), Some("user_test"));
    assert_eq!(e.one("x-clerk-session-id"), Some("sess_test"));
    assert_eq!(e.one("x-auth-bypass"), None);

    // A token that is simply valid is plain signed-in, not degraded.
    let fresh = token_at(T0_S, |_| {});
    let e = gw.get("/api/me", Some(&fresh), &[]).await.echoed();
    assert_eq!(e.one("x-clerk-auth-status"), Some("signed-in"));
    assert_eq!(e.one("x-auth-degraded"), None);
}

#[tokio::test]
async fn grace_mode_refuses_a_token_expired_beyond_grace_max_expired() {
    let gw = grace().start().await;
    let r = gw.get("/api/me", Some(&expired_token(T0_S, 7200)), &[]).await;
    assert_refused(&r, 401, "token-expired");

    // The bound is grace_max_expired (1h): the same token is accepted while inside it and
    // refused once the clock moves past it.
    let t = expired_token(T0_S, 3500);
    assert_eq!(gw.get("/api/me", Some(&t), &[]).await.status, 200);
    gw.clock.advance_ms(200_000);
    let r = gw.get("/api/me", Some(&t), &[]).await;
    assert_refused(&r, 401, "token-expired");
}

#[tokio::test]
async fn grace_mode_refuses_a_forged_expired_token() {
    let gw = grace().start().await;
    let exp = T0_S - 600;
    let claims = claims_at(exp - 60, |c| {
        c.insert("exp".into(), exp.into());
    });
    let forged = support::other_key().sign(Some(KID), &claims);
    let r = gw.get("/api/me", Some(&forged), &[]).await;
    assert_refused(&r, 401, "token-invalid-signature");
    // A forged, unexpired token is refused too.
    let forged = support::other_key().sign(Some(KID), &claims_at(T0_S, |_| {}));
    assert_eq!(gw.get("/api/me", Some(&forged), &[]).await.status, 401);
}

#[tokio::test]
async fn forwarded_headers_are_rebuilt_from_the_real_connection() {
    let gw = enforce().start().await;
    let r = gw
        .get(
            "/api/me",
            Some(&support::token()),
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil.example"),
                ("x-forwarded-port", "443"),
                ("x-forwarded-prefix", "/public"),
                ("x-forwarded-uri", "/public/x"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.echoed();
    assert_eq!(e.one("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(e.one("x-forwarded-proto"), Some("http"));
    let host = gw.addr().to_string();
    assert_eq!(e.one("host"), Some(host.as_str()));
    assert_eq!(e.one("x-forwarded-host"), Some(host.as_str()));
    for gone in ["x-forwarded-port", "x-forwarded-prefix", "x-forwarded-uri"] {
        assert_eq!(e.one(gone), None, "{gone} from the client reached the upstream");
    }
}

// ---------------------------------------------------------------------------------------------
// B. SPEC §3, answers the gateway gives itself
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn missing_token_on_protected_route_is_401_with_plain_bearer_challenge() {
    let gw = enforce().start().await;
    let r = gw.get("/api/me", None, &[]).await;
    assert_refused(&r, 401, "session-token-missing");
    assert_eq!(r.header("x-clerk-auth-status"), Some("signed-out"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"clerkgate\""));
    assert!(
        r.header("content-type").is_some_and(|c| c.starts_with("application/json")),
        "{:?}",
        r.header("content-type")
    );
    let body = r.json();
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "exactly error, reason, message: {body}");
}

#[tokio::test]
async fn invalid_token_on_protected_route_is_401_with_invalid_token_challenge() {
    let gw = enforce().start().await;
    let r = gw.get("/api/me", Some("not.a.jwt"), &[]).await;
    assert_refused(&r, 401, "token-invalid");
    assert_eq!(r.header("x-clerk-auth-status"), Some("signed-out"));
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"clerkgate\", error=\"invalid_token\""));
    let forged = support::other_key().sign(Some(KID), &claims_at(support::now_s(), |_| {}));
    let r = gw.get("/api/me", Some(&forged), &[]).await;
    assert_refused(&r, 401, "token-invalid-signature");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"clerkgate\", error=\"invalid_token\""));
}

fn pending_token() -> String {
    token_at(support::now_s(), |c| {
        c.insert("sts".into(), "pending".into());
    })
}

#[tokio::test]
async fn pending_session_is_401_when_reject_pending_sessions_is_on() {
    let gw = enforce().clerk("reject_pending_sessions = true").start().await;
    let r = gw.get("/api/me", Some(&pending_token()), &[]).await;
    assert_refused(&r, 401, "session-pending");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"clerkgate\", error=\"invalid_token\""));
    // An active session on the same gateway passes.
    assert_eq!(gw.get("/api/me", Some(&support::token()), &[]).await.status, 200);
}

#[tokio::test]
async fn pending_session_is_accepted_when_reject_pending_sessions_is_off() {
    let gw = enforce().clerk("reject_pending_sessions = false").start().await;
    let r = gw.get("/api/me", Some(&pending_token()), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed().one("x-clerk-user-id"), Some("user_test"));
}

fn rules_gateway() -> support::GatewayBuilder {
    enforce()
        .section("[[routes.rule]]", "path = \"/api/admin(.*)\"\nrole = \"org:admin\"")
        .section("[[routes.rule]]", "path = \"/api/billing(.*)\"\npermission = \"org:billing:manage\"")
}

#[tokio::test]
async fn token_without_the_routes_role_is_403_missing_role() {
    let gw = rules_gateway().start().await;
    let member = org_token("org:member", &["org:billing:manage"], false);
    let r = gw.get("/api/admin/x", Some(&member), &[]).await;
    assert_refused(&r, 403, "missing-role");
    // A token with no organisation at all has no role either.
    let r = gw.get("/api/admin/x", Some(&support::token()), &[]).await;
    assert_refused(&r, 403, "missing-role");
    for v2 in [false, true] {
        let admin = org_token("org:admin", &[], v2);
        let r = gw.get("/api/admin/x", Some(&admin), &[]).await;
        assert_eq!(r.status, 200, "v2={v2}: {}", r.body);
    }
}

#[tokio::test]
async fn token_without_the_routes_permission_is_403_missing_permission() {
    let gw = rules_gateway().start().await;
    for v2 in [false, true] {
        let reader = org_token("org:member", &["org:billing:read"], v2);
        let r = gw.get("/api/billing/invoices", Some(&reader), &[]).await;
        assert_refused(&r, 403, "missing-permission");
        let manager = org_token("org:member", &["org:billing:manage"], v2);
        let r = gw.get("/api/billing/invoices", Some(&manager), &[]).await;
        assert_eq!(r.status, 200, "v2={v2}: {}", r.body);
    }
}

#[tokio::test]
async fn ambiguous_path_is_400() {
    let gw = enforce().start().await;
    let t = format!("Bearer {}", support::token());
    let r = reply(raw::get(gw.addr(), "/public/..%2fadmin", &[("Authorization", &t)]).await);
    assert_refused(&r, 400, "ambiguous-path");
    let r = reply(raw::get(gw.addr(), "/public/..%2fadmin", &[]).await);
    assert_refused(&r, 400, "ambiguous-path");
}

#[tokio::test]
async fn two_authorization_headers_are_400() {
    let gw = enforce().start().await;
    let a = format!("Bearer {}", support::token());
    let b = format!("Bearer {}", spec_token(TokenSpec { sub: "user_other".into(), ..TokenSpec::default() }));
    let r = reply(raw::get(gw.addr(), "/api/me", &[("Authorization", &a), ("Authorization", &b)]).await);
    assert_refused(&r, 400, "conflicting-credentials");
    // Even two copies of the same valid token.
    let r = reply(raw::get(gw.addr(), "/api/me", &[("Authorization", &a), ("Authorization", &a)]).await);
    assert_refused(&r, 400, "conflicting-credentials");
}

#[tokio::test]
async fn upstream_refusing_connections_is_502() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let gw = enforce().upstream(closed).start().await;
    let r = gw.get("/api/me", Some(&support::token()), &[]).await;
    assert_eq!(r.status, 502, "{}", r.body);
    let body = r.json();
    assert!(body["error"].is_string() && body["reason"].is_string() && body["message"].is_string());
    assert_eq!(r.reason(), body["reason"].as_str());
    assert!(r.header("x-clerk-auth-status").is_some());
}

#[tokio::test]
async fn upstream_without_a_head_within_response_timeout_is_504() {
    let upstream = support::upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let text = enforce().config_text(upstream, &state.display().to_string());
    let needle = format!("[upstream]\nurl = \"http://{upstream}\"\n");
    assert!(text.contains(&needle), "builder layout changed:\n{text}");
    let text = text.replace(&needle, &format!("{needle}response_timeout = \"300ms\"\n"));
    let path = dir.path().join("clerkgate.toml");
    std::fs::write(&path, &text).expect("write config");
    let env = Env::from_pairs(Vec::<(String, String)>::new());
    let config = Config::load(&path, &env).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let running =
        app::start(config, Options { clock: Clock::system(), config_path: Some(path), env, ..Options::default() })
            .await
            .expect("start");
    let url = format!("http://{}", running.data_addr);
    let send = |path: &str| support::client().get(format!("{url}{path}")).bearer_auth(support::token()).send();
    let r = Reply::from(send("/slow/5000").await.expect("request")).await;
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.reason(), Some("upstream-timeout"));
    assert_eq!(r.json()["reason"], "upstream-timeout");
    // A fast answer on the same gateway is not cut.
    let r = Reply::from(send("/slow/0").await.expect("request")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    running.shutdown().await;
}

#[tokio::test]
async fn no_key_ever_loaded_is_503_with_retry_after_but_no_token_is_still_401() {
    let jwks = JwksServer::start(JwksReply::Status(500, "down".into())).await;
    let gw = gateway().jwks(&jwks).start().await;
    let r = gw.get("/api/me", Some(&support::token()), &[]).await;
    assert_refused(&r, 503, "jwks-unavailable");
    let retry = r.header("retry-after").expect("Retry-After");
    assert!(retry.parse::<u64>().is_ok_and(|s| s > 0), "Retry-After: {retry}");
    assert_eq!(r.header("x-clerk-auth-status"), Some("signed-out"));

    let r = gw.get("/api/me", None, &[]).await;
    assert_refused(&r, 401, "session-token-missing");
    // A public route is still served.
    assert_eq!(gw.get("/public/x", None, &[]).await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// C. peers.md §3 security cases
// ---------------------------------------------------------------------------------------------

/// The alias and spelling variants of T01/T02, plus a few more reserved names.
const SMUGGLED: [(&str, &str); 19] = [
    ("X_Auth_User", "admin"),
    ("X_Auth_Bypass", "true"),
    ("X_Forwarded_For", "6.6.6.6"),
    ("X.Auth.User", "admin"),
    ("X~Auth~User", "admin"),
    ("X+Auth+User", "admin"),
    ("x-CLERK-user-id", "user_victim"),
    ("X-CLERK-USER-ID", "user_victim2"),
    ("X_Clerk_User_Id", "user_victim3"),
    ("X.Clerk.Org.Role", "org:admin"),
    ("X-Clerk-Org-Role", "org:admin"),
    ("x-auth-bypass", "true"),
    ("X-Auth-Degraded", "grace"),
    ("x-clerk-auth-status", "signed-in"),
    ("Forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
    ("X-Real-IP", "10.0.0.1"),
    ("X_Real_IP", "10.0.0.1"),
    ("X-Forwarded-Host", "evil.example"),
    ("x~forwarded~proto", "https"),
];

async fn smuggle(gw: &TestGateway, token: &str) -> Echoed {
    let auth = format!("Bearer {token}");
    let mut headers: Vec<(&str, &str)> = SMUGGLED.to_vec();
    headers.push(("Authorization", &auth));
    let r = reply(raw::get(gw.addr(), "/api/data", &headers).await);
    assert_eq!(r.status, 200, "{}", r.body);
    r.echoed()
}

#[tokio::test]
async fn t01_t02_header_aliases_never_reach_the_upstream_in_enforce_mode() {
    let gw = enforce().start().await;
    let e = smuggle(&gw, &support::token()).await;
    let host = gw.addr().to_string();
    assert_reserved_exactly(
        &e,
        &[
            ("x-clerk-auth-status", "signed-in"),
            ("x-clerk-user-id", "user_test"),
            ("x-clerk-session-id", "sess_test"),
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", &host),
        ],
    );
    assert!(e.any_folded_prefix("xauth").is_empty());
    assert!(e.any_folded_prefix("forwarded").is_empty());
    assert!(e.any_folded_prefix("xrealip").is_empty());
}

#[tokio::test]
async fn t01_t02_header_aliases_never_reach_the_upstream_in_grace_mode() {
    let gw = grace().start().await;
    let e = smuggle(&gw, &expired_token(T0_S, 600)).await;
    let host = gw.addr().to_string();
    assert_reserved_exactly(
        &e,
        &[
            ("x-clerk-auth-status", "grace"),
            ("x-auth-degraded", "grace"),
            ("x-clerk-user-id", "user_test"),
            ("x-clerk-session-id", "sess_test"),
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", &host),
        ],
    );
    assert_eq!(e.any_folded_prefix("xauth"), ["x-auth-degraded"]);
}

#[tokio::test]
async fn t01_t02_header_aliases_never_reach_the_upstream_in_bypass_mode() {
    let gw = bypass().start().await;
    let e = smuggle(&gw, &support::token()).await;
    let host = gw.addr().to_string();
    assert_reserved_exactly(
        &e,
        &[
            ("x-clerk-auth-status", "bypass"),
            ("x-auth-bypass", "true"),
            ("x-clerk-user-id", "user_test"),
            ("x-clerk-session-id", "sess_test"),
            ("x-forwarded-for", "127.0.0.1"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", &host),
        ],
    );
    assert_eq!(e.any_folded_prefix("xauth"), ["x-auth-bypass"]);
}

#[tokio::test]
async fn t03_forged_bypass_tag_without_a_token_is_refused_in_enforce_mode() {
    let gw = enforce().start().await;
    for (name, value) in [("X-Auth-Bypass", "1"), ("X_Auth_Bypass", "true")] {
        let r = reply(raw::get(gw.addr(), "/api/data", &[(name, value)]).await);
        assert_refused(&r, 401, "session-token-missing");
        assert_eq!(r.header("x-auth-bypass"), None);
    }
    // On a public route the upstream never sees it.
    let r = reply(raw::get(gw.addr(), "/public/x", &[("X-Auth-Bypass", "1")]).await);
    assert!(r.echoed().any_folded_prefix("xauth").is_empty());
}

#[tokio::test]
async fn t06_connection_listed_names_cannot_remove_gateway_headers() {
    let send = |gw: &TestGateway| {
        let req = format!(
            "GET /api/data HTTP/1.1\r\nHost: {}\r\n\
             Connection: close, X-Clerk-User-Id, X-Auth-Bypass, X-Forwarded-For\r\n\
             X-Clerk-User-Id: user_victim\r\nX-Auth-Bypass: true\r\nX-Forwarded-For: 6.6.6.6\r\n\
             Keep-Alive: timeout=5\r\nAuthorization: Bearer {}\r\n\r\n",
            gw.addr(),
            support::token()
        );
        let addr = gw.addr();
        async move { reply(raw::send(addr, req.as_bytes()).await) }
    };

    let gw = enforce().start().await;
    let r = send(&gw).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.echoed();
    assert_eq!(e.one("x-clerk-user-id"), Some("user_test"));
    assert_eq!(e.one("x-clerk-session-id"), Some("sess_test"));
    assert_eq!(e.one("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(e.one("x-auth-bypass"), None, "enforce mode never tags");
    assert_eq!(e.one("keep-alive"), None, "hop-by-hop header forwarded");
    assert!(
        e.all("connection").iter().all(|v| !v.to_ascii_lowercase().contains("x-")),
        "the client's Connection list was forwarded: {:?}",
        e.all("connection")
    );

    let gw = bypass().start().await;
    let r = send(&gw).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.echoed();
    assert_eq!(e.all("x-auth-bypass"), ["true"], "exactly one gateway-set tag");
    assert_eq!(e.one("x-clerk-user-id"), Some("user_test"));
    assert_eq!(e.one("x-forwarded-for"), Some("127.0.0.1"));
}

#[tokio::test]
async fn t08_public_route_matching_ignores_query_and_fragment() {
    let gw = enforce().start().await;
    assert_eq!(gw.get("/health", None, &[]).await.status, 200, "control: /health is public");
    let r = gw.get("/private?x=/health", None, &[]).await;
    assert_refused(&r, 401, "session-token-missing");
    for target in ["/private#/health", "/private%23/health", "/private?/health#/health"] {
        let r = reply(raw::get(gw.addr(), target, &[]).await);
        assert_eq!(r.status, 401, "{target}: {}", r.body);
    }
}

#[tokio::test]
async fn t09_rules_see_the_path_the_upstream_receives() {
    let gw = enforce().section("[[routes.rule]]", "path = \"/admin(.*)\"\nrole = \"org:admin\"").start().await;
    let member = format!("Bearer {}", org_token("org:member", &[], false));
    let admin = format!("Bearer {}", org_token("org:admin", &[], false));
    let cases = [
        ("/public/../admin", "/admin"),
        ("/public/%2e%2e/admin", "/admin"),
        ("/public/%2E%2E/admin", "/admin"),
        ("/public/./../admin", "/admin"),
        ("//admin", "/admin"),
        ("/%61dmin", "/admin"),
        ("/admin;x=1", "/admin;x=1"),
        ("/ADMIN", "/ADMIN"),
    ];
    for (target, upstream_path) in cases {
        let r = reply(raw::get(gw.addr(), target, &[]).await);
        assert_eq!(r.status, 401, "{target} without a token: {}", r.body);
        let r = reply(raw::get(gw.addr(), target, &[("Authorization", &member)]).await);
        assert_eq!(r.status, 403, "{target} as member: the /admin rule must apply: {}", r.body);
        let r = reply(raw::get(gw.addr(), target, &[("Authorization", &admin)]).await);
        assert_eq!(r.status, 200, "{target} as admin: {}", r.body);
        assert_eq!(r.echoed().path, upstream_path, "{target}: the upstream acts on another path");
    }
    for target in ["/public/..%2fadmin", "/public/..%2Fadmin", "/public/..;/admin", "/public/..%5cadmin"] {
        let r = reply(raw::get(gw.addr(), target, &[("Authorization", &admin)]).await);
        assert_refused(&r, 400, "ambiguous-path");
    }
}

#[tokio::test]
async fn t10_probe_user_agent_gets_no_shortcut() {
    let gw = enforce().start().await;
    for ua in ["kube-probe/1.29", "GoogleHC/1.0", "ELB-HealthChecker/2.0"] {
        let r = gw.get("/api", None, &[("user-agent", ua)]).await;
        assert_refused(&r, 401, "session-token-missing");
    }
}

#[tokio::test]
async fn t11_internal_forwarded_addresses_earn_no_trust() {
    let gw = enforce().start().await;
    let r = gw.get("/api", None, &[("x-forwarded-for", "10.0.0.1"), ("x-real-ip", "127.0.0.1")]).await;
    assert_refused(&r, 401, "session-token-missing");
    let r = reply(
        raw::get(
            gw.addr(),
            "/api",
            &[("X-Forwarded-For", "127.0.0.1"), ("Forwarded", "for=127.0.0.1"), ("X-Real-IP", "::1")],
        )
        .await,
    );
    assert_eq!(r.status, 401, "{}", r.body);
}

#[tokio::test]
async fn t12_token_presence_is_not_authentication() {
    let gw = enforce().start().await;
    let good = support::token();
    let (signing_input, _) = good.rsplit_once('.').unwrap();
    let other_sig = support::other_key()
        .sign(Some(KID), &claims_at(support::now_s(), |_| {}))
        .rsplit_once('.')
        .unwrap()
        .1
        .to_string();
    // Nine bytes short, re-encoded: a canonical segment whose signature cannot verify. (Cutting
    // characters instead leaves stray bits in the last one: Clerk's `token-invalid`, issue #8.)
    let (_, good_sig) = good.rsplit_once('.').unwrap();
    let sig_bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(good_sig).unwrap();
    let truncated_sig = format!("{signing_input}.{}", b64(&sig_bytes[..sig_bytes.len() - 9]));
    let cases: [(&str, String, &str); 6] = [
        ("garbage", "garbage".into(), "token-invalid"),
        ("two segments", signing_input.to_string(), "token-invalid"),
        ("empty signature", format!("{signing_input}."), "token-invalid-signature"),
        ("truncated signature", truncated_sig.to_string(), "token-invalid-signature"),
        ("another key's signature", format!("{signing_input}.{other_sig}"), "token-invalid-signature"),
        (
            "garbage payload",
            format!("{}.e30K!!.{}", signing_input.split('.').next().unwrap(), other_sig),
            "token-invalid",
        ),
    ];
    for (what, t, reason) in &cases {
        let r = gw.get("/api/me", Some(t), &[]).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.reason(), Some(*reason), "{what}");
    }
    // Payload swapped under a valid signature.
    let mut parts: Vec<&str> = good.split('.').collect();
    let evil_payload = b64(claims_at(support::now_s(), |c| {
        c.insert("sub".into(), "user_admin".into());
    })
    .to_string());
    parts[1] = &evil_payload;
    let r = gw.get("/api/me", Some(&parts.join(".")), &[]).await;
    assert_refused(&r, 401, "token-invalid-signature");
    // Control: the untouched token passes.
    assert_eq!(gw.get("/api/me", Some(&good), &[]).await.status, 200);
}

#[tokio::test]
async fn t13_multiple_credentials_have_one_documented_precedence() {
    let gw = enforce().start().await;
    let alice = support::token();
    let bob = spec_token(TokenSpec { sub: "user_bob".into(), sid: "sess_bob".into(), ..TokenSpec::default() });

    let two = reply(
        raw::get(
            gw.addr(),
            "/api/me",
            &[("Authorization", &format!("Bearer {alice}")), ("Authorization", &format!("Bearer {bob}"))],
        )
        .await,
    );
    assert_refused(&two, 400, "conflicting-credentials");

    // Header and a different __session cookie: the header wins.
    let r = gw.get("/api/me", Some(&alice), &[("cookie", &format!("__session={bob}"))]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed().one("x-clerk-user-id"), Some("user_test"));

    // A bad header token is used alone: the good cookie does not rescue it.
    let r = gw.get("/api/me", Some("garbage"), &[("cookie", &format!("__session={bob}"))]).await;
    assert_refused(&r, 401, "token-invalid");
    let forged = support::other_key().sign(Some(KID), &claims_at(support::now_s(), |_| {}));
    let r = gw.get("/api/me", Some(&forged), &[("cookie", &format!("__session={bob}"))]).await;
    assert_refused(&r, 401, "token-invalid-signature");
}

#[tokio::test]
async fn t13_several_credentials_during_a_jwks_outage_never_crash() {
    let jwks = JwksServer::start(JwksReply::Status(503, "outage".into())).await;
    let gw = gateway().jwks(&jwks).start().await;
    let alice = format!("Bearer {}", support::token());
    let cookie = format!("__session={}", support::token());
    let requests: [Vec<(&str, &str)>; 5] = [
        vec![("Authorization", &alice), ("Authorization", &alice)],
        vec![("Authorization", &alice), ("Cookie", &cookie)],
        vec![("Authorization", "garbage"), ("Cookie", &cookie)],
        vec![("Authorization", "Basic dXNlcjpwdw=="), ("Cookie", &cookie), ("Cookie", "__session=x")],
        vec![("Authorization", &alice), ("Authorization", "garbage"), ("Cookie", &cookie)],
    ];
    for headers in &requests {
        let r = reply(raw::get(gw.addr(), "/api/me", headers).await);
        assert!([400, 401, 503].contains(&r.status), "{headers:?}: status {} body {}", r.status, r.body);
        assert!(r.reason().is_some(), "{headers:?}: the gateway answered itself");
    }
    // Still serving afterwards.
    assert_eq!(gw.get("/public/x", None, &[]).await.status, 200);
    assert_eq!(gw.get("/api/me", None, &[]).await.status, 401);
}

#[tokio::test]
async fn t14_only_rs256_with_the_matching_key_is_accepted() {
    let gw = enforce().start().await;
    let claims = claims_at(support::now_s(), |_| {});
    let pem = support::key().public_pem();

    let none =
        format!("{}.{}.", b64(json!({"alg": "none", "typ": "JWT", "kid": KID}).to_string()), b64(claims.to_string()));
    let hs256 = {
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "HS256", "typ": "JWT", "kid": KID}).to_string()),
            b64(claims.to_string())
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, pem.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        format!("{input}.{}", b64(tag.as_ref()))
    };
    let rs512 =
        rsa_sign(&json!({"alg": "RS512", "typ": "JWT", "kid": KID}), &claims, &aws_lc_rs::signature::RSA_PKCS1_SHA512);
    let ps256 =
        rsa_sign(&json!({"alg": "PS256", "typ": "JWT", "kid": KID}), &claims, &aws_lc_rs::signature::RSA_PSS_SHA256);
    let es256 = {
        let pair = aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect("ec key");
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "ES256", "typ": "JWT", "kid": KID}).to_string()),
            b64(claims.to_string())
        );
        let sig = pair.sign(&aws_lc_rs::rand::SystemRandom::new(), input.as_bytes()).expect("ec sign");
        format!("{input}.{}", b64(sig.as_ref()))
    };
    let cases = [
        ("alg none", none, "token-invalid-algorithm"),
        ("HS256 keyed with the RSA public key", hs256, "token-invalid-algorithm"),
        ("RS512 by the right key", rs512, "token-verification-failed"),
        ("PS256 by the right key", ps256, "token-invalid-algorithm"),
        ("ES256", es256, "token-invalid-algorithm"),
    ];
    for (what, t, reason) in &cases {
        let r = gw.get("/api/me", Some(t), &[]).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.reason(), Some(*reason), "{what}");
    }
    let rs256 =
        rsa_sign(&json!({"alg": "RS256", "typ": "JWT", "kid": KID}), &claims, &aws_lc_rs::signature::RSA_PKCS1_SHA256);
    let r = gw.get("/api/me", Some(&rs256), &[]).await;
    assert_eq!(r.status, 200, "RS256 with the matching key: {}", r.body);
}

#[tokio::test]
async fn t15_key_material_in_token_headers_is_never_fetched_or_used() {
    let legit = JwksServer::start(JwksReply::Json(support::key().jwks(KID))).await;
    let attacker = JwksServer::start(JwksReply::Json(support::other_key().jwks("evil"))).await;
    let gw = gateway().jwks(&legit).start().await;
    wait_ready(&gw).await;
    let attacker_url = attacker.url();
    let attacker_iss = format!("http://{}", attacker.addr());
    let claims = claims_at(support::now_s(), |c| {
        c.insert("iss".into(), attacker_iss.clone().into());
    });
    let evil_jwk = support::other_key().jwk("evil");
    let headers = [
        json!({"alg": "RS256", "typ": "JWT", "kid": KID, "jku": attacker_url}),
        json!({"alg": "RS256", "typ": "JWT", "kid": "evil", "jku": attacker_url}),
        json!({"alg": "RS256", "typ": "JWT", "kid": KID, "x5u": format!("http://{}/cert.pem", attacker.addr())}),
        json!({"alg": "RS256", "typ": "JWT", "kid": KID, "jwk": evil_jwk}),
        json!({"alg": "RS256", "typ": "JWT", "jwk": evil_jwk}),
        json!({"alg": "RS256", "typ": "JWT", "kid": KID, "x5c": [b64(b"not a certificate")]}),
    ];
    for h in &headers {
        let t = support::other_key().sign_with_header(h, &claims);
        let r = gw.get("/api/me", Some(&t), &[]).await;
        assert_eq!(r.status, 401, "{h}: {}", r.body);
    }
    assert_eq!(attacker.hits(), 0, "the gateway fetched from a URL named in a token");
    // Control: the legit key still verifies on this gateway.
    assert_eq!(gw.get("/api/me", Some(&support::token()), &[]).await.status, 200);
}

#[tokio::test]
async fn t23_clock_skew_is_five_seconds_by_default() {
    let gw = enforce().clock(Clock::manual(T0_MS)).start().await;
    let now = T0_S;
    let cases: [(&str, String, Option<&str>); 6] = [
        (
            "nbf and iat now+3s",
            token_at(now, |c| {
                c.insert("nbf".into(), (now + 3).into());
                c.insert("iat".into(), (now + 3).into());
            }),
            None,
        ),
        (
            "nbf now+30s",
            token_at(now, |c| {
                c.insert("nbf".into(), (now + 30).into());
            }),
            Some("token-not-active-yet"),
        ),
        (
            "iat now+30s",
            token_at(now, |c| {
                c.insert("iat".into(), (now + 30).into());
            }),
            Some("token-iat-in-the-future"),
        ),
        ("exp now-4s", expired_token(now, 4), None),
        ("exp now-6s", expired_token(now, 6), Some("token-expired")),
        ("exp now-5s (boundary: exp <= now - skew)", expired_token(now, 5), Some("token-expired")),
    ];
    for (what, t, want) in &cases {
        let r = gw.get("/api/me", Some(t), &[]).await;
        match want {
            None => assert_eq!(r.status, 200, "{what}: {}", r.body),
            Some(reason) => assert_refused(&r, 401, reason),
        }
    }
}

#[tokio::test]
async fn t23_a_token_accepted_once_is_refused_after_its_expiry() {
    let gw = enforce().clock(Clock::manual(T0_MS)).start().await;
    let t = token_at(T0_S, |_| {});
    assert_eq!(gw.get("/api/me", Some(&t), &[]).await.status, 200);
    gw.clock.advance_ms(66_000);
    let r = gw.get("/api/me", Some(&t), &[]).await;
    assert_refused(&r, 401, "token-expired");
}

#[tokio::test]
async fn t23_zero_clock_skew_refuses_exp_equal_to_now() {
    let gw = enforce().clerk("clock_skew = \"0s\"").clock(Clock::manual(T0_MS)).start().await;
    let r = gw.get("/api/me", Some(&expired_token(T0_S, 0)), &[]).await;
    assert_refused(&r, 401, "token-expired");
    assert_eq!(gw.get("/api/me", Some(&expired_token(T0_S, -1)), &[]).await.status, 200);
    let nbf = token_at(T0_S, |c| {
        c.insert("nbf".into(), (T0_S + 1).into());
    });
    let r = gw.get("/api/me", Some(&nbf), &[]).await;
    assert_refused(&r, 401, "token-not-active-yet");
}

#[tokio::test]
async fn t24_clerk_claims_are_enforced() {
    const ISS: &str = "https://clerk.example.com";
    const APP: &str = "https://app.example.com";
    let gw = enforce()
        .clerk(&format!("issuer = \"{ISS}\"\nauthorized_parties = [\"{APP}\"]\nreject_pending_sessions = true"))
        .start()
        .await;
    let now = support::now_s();
    let good = |c: &mut Map<String, Value>| {
        c.insert("iss".into(), ISS.into());
        c.insert("azp".into(), APP.into());
    };
    assert_eq!(gw.get("/api/me", Some(&token_at(now, good)), &[]).await.status, 200);

    type Edit = Box<dyn Fn(&mut Map<String, Value>)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "wrong iss",
            Box::new(|c| {
                c.insert("iss".into(), "https://clerk.evil.example".into());
            }),
            "issuer-mismatch",
        ),
        (
            "missing iss",
            Box::new(|c| {
                c.remove("iss");
            }),
            "issuer-mismatch",
        ),
        (
            "azp not allowed",
            Box::new(|c| {
                c.insert("azp".into(), "https://evil.example".into());
            }),
            "token-invalid-authorized-parties",
        ),
        (
            "azp missing",
            Box::new(|c| {
                c.remove("azp");
            }),
            "token-invalid-authorized-parties",
        ),
        (
            "sub missing",
            Box::new(|c| {
                c.remove("sub");
            }),
            "token-verification-failed",
        ),
        (
            "sub not a string",
            Box::new(|c| {
                c.insert("sub".into(), 42.into());
            }),
            "token-verification-failed",
        ),
        (
            "sts pending",
            Box::new(|c| {
                c.insert("sts".into(), "pending".into());
            }),
            "session-pending",
        ),
    ];
    for (what, edit, reason) in &cases {
        let t = token_at(now, |c| {
            good(c);
            edit(c);
        });
        let r = gw.get("/api/me", Some(&t), &[]).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(r.reason(), Some(*reason), "{what}");
    }

    let act = token_at(now, |c| {
        good(c);
        c.insert("act".into(), json!({"sub": "user_impersonator", "sid": "sess_x"}));
    });
    let r = gw.get("/api/me", Some(&act), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed().one("x-clerk-actor"), Some("user_impersonator"));
}

#[tokio::test]
async fn t26_token_in_the_query_string_authenticates_nothing() {
    let gw = enforce().start().await;
    let t = support::token();
    for q in ["__session", "token", "jwt", "access_token", "authorization"] {
        let r = gw.get(&format!("/api?{q}={t}"), None, &[]).await;
        assert_refused(&r, 401, "session-token-missing");
    }
}

fn upgrade_request(addr: SocketAddr, extra: &str) -> String {
    format!(
        "GET /api/ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn t28_websocket_upgrade_without_a_token_is_401() {
    let gw = enforce().start().await;
    let r = exchange(gw.addr(), &upgrade_request(gw.addr(), "")).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.header("x-clerk-auth-reason"), Some("session-token-missing"));
    let r = exchange(gw.addr(), &upgrade_request(gw.addr(), "Authorization: Bearer garbage\r\n")).await;
    assert_eq!(r.status, 401, "{r:?}");
    // Control: with a valid token the upgrade goes through.
    let auth = format!("Authorization: Bearer {}\r\n", support::token());
    let r = exchange(gw.addr(), &upgrade_request(gw.addr(), &auth)).await;
    assert_eq!(r.status, 101, "{r:?}");
    assert_eq!(r.header("x-auth-bypass"), None);
}

#[tokio::test]
async fn t28_websocket_upgrade_in_bypass_mode_is_tagged() {
    let gw = bypass().start().await;
    let r = exchange(gw.addr(), &upgrade_request(gw.addr(), "")).await;
    assert_eq!(r.status, 101, "{r:?}");
    assert_eq!(r.header("x-auth-bypass"), Some("true"), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// D. Where the token comes from (clerk-semantics §1.2, §1.6)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn session_cookie_token_is_accepted() {
    let gw = enforce().start().await;
    let t = support::token();
    let r = gw.get("/api/me", None, &[("cookie", &format!("theme=dark; __session={t}; other=1"))]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.echoed();
    assert_eq!(e.one("x-clerk-user-id"), Some("user_test"));
    // The cookie is forwarded unchanged.
    assert!(e.all("cookie").iter().any(|c| c.contains(&t)));
    // Only the exact name counts.
    let r = gw.get("/api/me", None, &[("cookie", &format!("__session_x={t}"))]).await;
    assert_refused(&r, 401, "session-token-missing");
}

#[tokio::test]
async fn other_authorization_schemes_fall_through_to_the_cookie() {
    let gw = enforce().start().await;
    let t = support::token();
    let cookie = format!("__session={t}");
    for auth in ["Basic dXNlcjpwYXNz".to_string(), format!("bearer {t}"), format!("Token {t}")] {
        let r = gw.get("/api/me", None, &[("authorization", &auth), ("cookie", &cookie)]).await;
        assert_eq!(r.status, 200, "{auth:.20}: {}", r.body);
        assert_eq!(r.echoed().one("x-clerk-user-id"), Some("user_test"));
        // Without the cookie there is no token at all.
        let r = gw.get("/api/me", None, &[("authorization", &auth)]).await;
        assert_refused(&r, 401, "session-token-missing");
    }
}

#[tokio::test]
async fn scheme_less_authorization_value_is_the_token() {
    let gw = enforce().start().await;
    let r = gw.get("/api/me", None, &[("authorization", &support::token())]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed().one("x-clerk-user-id"), Some("user_test"));
}

#[tokio::test]
async fn bare_bearer_is_an_invalid_token() {
    let gw = enforce().start().await;
    let cookie = format!("__session={}", support::token());
    let r = gw.get("/api/me", None, &[("authorization", "Bearer"), ("cookie", &cookie)]).await;
    assert_refused(&r, 401, "token-invalid");
}

// ---------------------------------------------------------------------------------------------
// E. Property: no spelling of a reserved header ever reaches the upstream, in any mode
// ---------------------------------------------------------------------------------------------

mod property {
    use super::*;
    use proptest::prelude::*;

    const WORDS: [&[&str]; 14] = [
        &["x", "clerk", "user", "id"],
        &["x", "clerk", "session", "id"],
        &["x", "clerk", "auth", "status"],
        &["x", "clerk", "org", "role"],
        &["x", "clerk", "org", "permissions"],
        &["x", "clerk", "actor"],
        &["x", "clerk", "anything"],
        &["x", "auth", "bypass"],
        &["x", "auth", "degraded"],
        &["x", "auth", "user"],
        &["x", "forwarded", "for"],
        &["x", "forwarded", "host"],
        &["forwarded"],
        &["x", "real", "ip"],
    ];

    fn reserved_name() -> impl Strategy<Value = String> {
        (
            0..WORDS.len(),
            prop::collection::vec(prop::sample::select(vec!["-", "_", ".", "~", "+", "--", "_-"]), 4),
            prop::collection::vec(any::<bool>(), 32),
        )
            .prop_map(|(i, seps, upper)| {
                let mut name = String::new();
                for (n, w) in WORDS[i].iter().enumerate() {
                    if n > 0 {
                        name.push_str(seps[n - 1]);
                    }
                    name.push_str(w);
                }
                name.chars()
                    .zip(upper.iter().cycle())
                    .map(|(c, &u)| if u { c.to_ascii_uppercase() } else { c })
                    .collect()
            })
    }

    #[test]
    fn no_spelling_of_a_reserved_header_reaches_the_upstream_in_any_mode() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let gws: Vec<TestGateway> =
            rt.block_on(async { vec![enforce().start().await, grace().start().await, bypass().start().await] });
        let config = ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() };
        proptest!(config, |(
            names in prop::collection::vec(reserved_name(), 1..4),
            value in "[A-Za-z0-9=;:,./ ]{0,16}",
            mode in 0usize..3,
            with_token in any::<bool>(),
        )| {
            let gw = &gws[mode];
            let token = if mode == 1 { expired_token(T0_S, 600) } else { support::token() };
            let auth = format!("Bearer {token}");
            let smuggled = format!("smuggled{}", value.trim());
            let mut headers: Vec<(&str, &str)> =
                names.iter().map(|n| (n.as_str(), smuggled.as_str())).collect();
            let path = if with_token {
                headers.push(("Authorization", &auth));
                "/api/x"
            } else {
                "/public/x"
            };
            let r = rt.block_on(raw::get(gw.addr(), path, &headers));
            prop_assert_eq!(r.status, 200, "{:?}: {}", names, r.body);
            let e = reply(r).echoed();
            for (k, v) in &e.headers {
                prop_assert!(!v.contains("smuggled"), "client copy arrived as {}: {}", k, v);
                if is_reserved(k) {
                    prop_assert!(GATEWAY_NAMES.contains(&k.as_str()), "unexpected reserved name {}", k);
                    prop_assert_eq!(e.all(k).len(), 1, "{} arrived more than once", k);
                }
            }
            let status = e.one("x-clerk-auth-status").unwrap_or_default().to_string();
            let want = match (mode, with_token) {
                (0, true) => "signed-in",
                (1, true) => "grace",
                (2, _) => "bypass",
                _ => "signed-out",
            };
            prop_assert_eq!(status, want);
            prop_assert_eq!(e.one("x-auth-bypass").is_some(), mode == 2);
        });
        rt.block_on(async {
            for gw in gws {
                gw.stop().await;
            }
        });
    }
}

// === Webhook routes: the Svix signature is checked at the gateway ===

const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WEBHOOK_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const WEBHOOK_TS: i64 = 1_614_265_330;
const WEBHOOK_BODY: &str = r#"{"test": 2432232314}"#;
const WEBHOOK_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

async fn webhook_gateway(mode: &str) -> (support::TestGateway, clerkgate::clock::Clock) {
    let clock = clerkgate::clock::Clock::manual(WEBHOOK_TS * 1000);
    let mut b = support::gateway()
        .jwt_key()
        .clock(clock.clone())
        .clerk(&format!("webhook_signing_secret = {}", support::toml_str(WEBHOOK_SECRET)))
        .section("[[routes.rule]]", "path = \"/api/webhooks/clerk\"\nwebhook = \"clerk\"");
    if !mode.is_empty() {
        b = b.section("mode", &format!("mode = \"{mode}\"\nreason = \"test\"\nmax_override_ttl = \"1000000h\""));
    }
    (b.start().await, clock)
}

async fn post_webhook(gw: &support::TestGateway, sig: &str, body: &str, extra: &[(&str, &str)]) -> support::Reply {
    let mut req = support::client()
        .post(gw.url("/api/webhooks/clerk"))
        .header("svix-id", WEBHOOK_ID)
        .header("svix-timestamp", WEBHOOK_TS.to_string())
        .header("svix-signature", sig)
        .body(body.to_string());
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    support::Reply::from(req.send().await.expect("post")).await
}

#[tokio::test]
async fn a_signed_clerk_webhook_is_verified_and_forwarded_with_its_body() {
    let (gw, _clock) = webhook_gateway("").await;
    let reply = post_webhook(&gw, WEBHOOK_SIG, WEBHOOK_BODY, &[("x-clerk-webhook-verified", "forged")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let echoed = reply.echoed();
    assert_eq!(echoed.one("x-clerk-webhook-verified"), Some("true"));
    assert_eq!(echoed.raw["body_len"], WEBHOOK_BODY.len());
    assert_eq!(echoed.one("svix-id"), Some(WEBHOOK_ID));
    assert_eq!(echoed.one("x-clerk-user-id"), None);
}

#[tokio::test]
async fn a_tampered_unsigned_or_stale_webhook_is_refused_with_400() {
    let (gw, clock) = webhook_gateway("").await;
    let tampered = post_webhook(&gw, WEBHOOK_SIG, r#"{"test": 1}"#, &[]).await;
    assert_eq!((tampered.status, tampered.reason()), (400, Some("webhook-invalid")));
    assert!(tampered.json()["message"].as_str().unwrap().contains("No matching signature found"));
    let unsigned = support::Reply::from(
        support::client().post(gw.url("/api/webhooks/clerk")).body(WEBHOOK_BODY).send().await.unwrap(),
    )
    .await;
    assert_eq!((unsigned.status, unsigned.reason()), (400, Some("webhook-invalid")));
    clock.advance_ms(301_000);
    let stale = post_webhook(&gw, WEBHOOK_SIG, WEBHOOK_BODY, &[]).await;
    assert_eq!((stale.status, stale.reason()), (400, Some("webhook-invalid")));
    assert!(stale.json()["message"].as_str().unwrap().contains("too old"));
}

#[tokio::test]
async fn webhook_signatures_are_checked_even_in_bypass_mode() {
    let (gw, _clock) = webhook_gateway("bypass").await;
    let forged = post_webhook(&gw, "v1,AAAA", WEBHOOK_BODY, &[]).await;
    assert_eq!(forged.status, 400);
    let good = post_webhook(&gw, WEBHOOK_SIG, WEBHOOK_BODY, &[]).await;
    assert_eq!(good.status, 200);
}
