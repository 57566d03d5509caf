//! Signing keys through real sockets (SPEC §5–§7, peers.md §3 T16–T22): the background
//! refresh, the unknown-kid flood, rotation, bad JWKS answers, outages with a warm cache, a
//! slow JWKS, removed keys, restart from `keys.json` (the real binary), and the Backend API
//! flavour of the JWKS source.
//!
//! Every test runs a real JWKS HTTP server that counts the requests it receives; the JWKS hit
//! count is the witness for "how often did the gateway fetch". Waits for background events
//! poll a condition with a deadline; where wall-clock time decides an outcome inside the
//! gateway (`max_stale`) a manual clock is advanced instead of sleeping.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use clerkgate::clock::Clock;
use clerkgate::mint::{SigningKey, TokenSpec};
use serde_json::{json, Value};

use crate::support::{self, eventually, gateway, JwksReply, JwksServer, Reply, TestGateway, KID};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The admin token the test builder configures.
const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A fixed start for manual clocks (2030-03-17), a whole second.
const T0_MS: i64 = 1_900_000_000_000;

/// The kid the rotated-in key is published under.
const KID2: &str = "kid2";

/// A `[clerk.keys]` body.
fn keys(refresh_interval: &str, unknown_kid_cooldown: &str, max_stale: &str, fetch_timeout: &str) -> String {
    format!(
        "refresh_interval = \"{refresh_interval}\"\nunknown_kid_cooldown = \"{unknown_kid_cooldown}\"\n\
         max_stale = \"{max_stale}\"\nfetch_timeout = \"{fetch_timeout}\""
    )
}

/// The test JWKS: [`support::key`] under [`KID`].
fn good_jwks() -> Value {
    support::key().jwks(KID)
}

/// A JWKS holding the given JWKs.
fn jwks_of(keys: &[Value]) -> Value {
    json!({ "keys": keys })
}

/// A token for a distinct user (so the verdict cache never answers for it) signed by `signer`
/// under `kid`, issued at `now_s`.
fn token_by(signer: &SigningKey, kid: &str, label: &str, now_s: i64) -> String {
    let spec = TokenSpec { sub: format!("user_{label}"), sid: format!("sess_{label}"), ..TokenSpec::default() };
    signer.sign(Some(kid), &spec.claims(now_s))
}

/// A fresh token signed with the test key under [`KID`], issued now by the system clock.
fn kid_token(label: &str) -> String {
    token_by(support::key(), KID, label, support::now_s())
}

/// Asserts a refusal by the gateway: status and reason (header and body agree).
fn assert_refused(r: &Reply, status: u16, reason: &str) {
    assert_eq!(r.status, status, "expected {status} {reason}, got {} {:?}: {}", r.status, r.reason(), r.body);
    assert_eq!(r.reason(), Some(reason), "X-Clerk-Auth-Reason; body: {}", r.body);
    assert_eq!(r.json()["reason"], reason, "body reason: {}", r.body);
}

/// Asserts the 503 a request gets while no usable key set is loaded.
fn assert_jwks_unavailable(r: &Reply) {
    assert_refused(r, 503, "jwks-unavailable");
    let retry = r.header("retry-after").unwrap_or_else(|| panic!("503 without Retry-After: {:?}", r.headers));
    assert!(retry.parse::<u64>().is_ok_and(|s| s > 0), "Retry-After: {retry}");
}

/// GET with an optional bearer token against any URL.
async fn http_get(client: &reqwest::Client, url: &str, bearer: Option<&str>) -> Reply {
    let mut req = client.get(url);
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    Reply::from(req.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))).await
}

/// A guarded admin GET.
async fn admin_get(gw: &TestGateway, path: &str) -> Reply {
    http_get(&support::client(), &gw.admin_url(path), Some(ADMIN_TOKEN)).await
}

/// `POST /keys/refresh` with the admin token.
async fn force_refresh(gw: &TestGateway) -> Reply {
    let resp = support::client()
        .post(gw.admin_url("/keys/refresh"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .expect("POST /keys/refresh");
    Reply::from(resp).await
}

/// `/status`'s `keys` object.
async fn status_keys(gw: &TestGateway) -> Value {
    let r = admin_get(gw, "/status").await;
    assert_eq!(r.status, 200, "/status: {}", r.body);
    r.json()["keys"].clone()
}

/// The kids `/status` reports.
async fn status_kids(gw: &TestGateway) -> Vec<String> {
    kids_of(&status_keys(gw).await["kids"])
}

fn kids_of(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a kid list: {v}"))
        .iter()
        .map(|k| k.as_str().unwrap_or_default().to_string())
        .collect()
}

/// `/readyz`.
async fn readyz(gw: &TestGateway) -> Reply {
    http_get(&support::client(), &gw.admin_url("/readyz"), None).await
}

/// Waits until the gateway reports ready (a usable key set is loaded).
async fn wait_ready(gw: &TestGateway) {
    eventually("/readyz 200", Duration::from_secs(20), || async {
        let r = readyz(gw).await;
        (r.status == 200).then_some(())
    })
    .await;
}

/// Waits until the JWKS server has received more than `n` requests; returns the count.
async fn wait_hits_above(jwks: &JwksServer, n: usize) -> usize {
    eventually(&format!("more than {n} JWKS requests"), Duration::from_secs(20), || async {
        let h = jwks.hits();
        (h > n).then_some(h)
    })
    .await
}

/// A small xorshift generator (no extra dependency) for made-up kids.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        Rng(u64::try_from(nanos.as_nanos() & u128::from(u64::MAX)).unwrap_or(1) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn kid(&mut self) -> String {
        format!("ins_{:016x}{:016x}", self.next(), self.next())
    }
}

/// An EC P-256 signing key (RFC 7517 A.1's public key).
fn ec_jwk() -> Value {
    json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": "ec-1",
           "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4", "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"})
}

/// An Ed25519 key (RFC 8037 A.2).
fn okp_jwk() -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "okp-1",
           "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
}

/// A symmetric key.
fn oct_jwk() -> Value {
    json!({"kty": "oct", "alg": "HS256", "kid": "oct-1", "k": "GawgguFyGrWKav7AX4VKUg"})
}

/// A genuine 1024-bit RSA public key (generated once with `openssl genrsa 1024`).
fn weak_rsa_jwk() -> Value {
    json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "weak-1024", "e": "AQAB",
           "n": "5ST2X5lvvTyLfIcVDzE9eqwYfp0HXuYDkT9tTBbgjlpqnwhxxTvYVuEYj6fVps7x7Fm8hxqJkYFWrCQ7ohlbAcA8fMxtE9fqHe9yQ2MEhChuDwPNSG0FoBynBxdnYi62QGqkj5IyjI3koafZQ4xEv-wh1D8JY5abfGRozuLj4Xk"})
}

// ---------------------------------------------------------------------------------------------
// T16 – T21, in-process
// ---------------------------------------------------------------------------------------------

/// T16: a flood of made-up kids costs the JWKS at most one request per cooldown window, and
/// valid tokens keep passing throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t16_unknown_kid_flood_costs_one_fetch_per_cooldown_and_valid_tokens_keep_passing() {
    const COOLDOWN_MS: u128 = 2_000;
    const TASKS: usize = 50;
    const PER_TASK: usize = 40;
    let jwks = JwksServer::start(JwksReply::Json(good_jwks())).await;
    let gw = gateway().jwks(&jwks).section("clerk.keys", &keys("1h", "2s", "24h", "2s")).start().await;
    wait_ready(&gw).await;

    // Tokens are signed before the clock starts so the flood is paced by the requests alone.
    let mut rng = Rng::seeded();
    let now_s = support::now_s();
    let flood: Vec<String> =
        (0..TASKS * PER_TASK).map(|i| token_by(support::other_key(), &rng.kid(), &format!("f{i}"), now_s)).collect();
    let valid: Vec<String> = (0..400).map(|i| kid_token(&format!("v{i}"))).collect();
    let flood = Arc::new(flood);

    let before = jwks.hits();
    let started = Instant::now();
    let window = Duration::from_millis(3_000);
    let mut floods = Vec::new();
    for t in 0..TASKS {
        let flood = flood.clone();
        let url = gw.url("/api/me");
        floods.push(tokio::spawn(async move {
            let mut refused = 0usize;
            for i in 0..PER_TASK {
                // Spread each task's requests over the window.
                let due = window.mul_f64(i as f64 / PER_TASK as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                let r = http_get(&support::client(), &url, Some(&flood[t * PER_TASK + i])).await;
                assert_refused(&r, 401, "jwk-kid-mismatch");
                refused += 1;
            }
            refused
        }));
    }
    let valid_ok = Arc::new(AtomicUsize::new(0));
    let mut checkers = Vec::new();
    for chunk in valid.chunks(100) {
        let chunk = chunk.to_vec();
        let url = gw.url("/api/me");
        let ok = valid_ok.clone();
        checkers.push(tokio::spawn(async move {
            for (i, t) in chunk.iter().enumerate() {
                let due = window.mul_f64(i as f64 / 100.0);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                let r = http_get(&support::client(), &url, Some(t)).await;
                assert_eq!(r.status, 200, "a valid token was refused during the flood: {}", r.body);
                ok.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let mut refused = 0;
    for f in floods {
        refused += f.await.expect("flood task");
    }
    for c in checkers {
        c.await.expect("valid-token task");
    }
    let elapsed = started.elapsed();
    let flood_hits = jwks.hits() - before;

    assert_eq!(refused, TASKS * PER_TASK);
    assert_eq!(valid_ok.load(Ordering::SeqCst), valid.len(), "every valid request got 200");
    let allowed = (elapsed.as_millis() / COOLDOWN_MS) as usize + 1;
    assert!(flood_hits >= 1, "an unknown kid never triggered a refetch");
    assert!(
        flood_hits <= allowed,
        "{flood_hits} JWKS fetches during a {elapsed:?} flood with a 2s cooldown (at most {allowed} allowed)"
    );
    // Good keys were never evicted.
    assert_eq!(status_kids(&gw).await, vec![KID.to_string()]);
    assert_eq!(gw.get("/api/me", Some(&kid_token("after-flood")), &[]).await.status, 200);
}

/// T17: the IdP adds `kid2` and signs with it at once; the first `kid2` token is accepted
/// after exactly one refetch.
#[tokio::test]
async fn t17_rotation_first_new_kid_token_is_accepted_after_exactly_one_refetch() {
    let jwks = JwksServer::start(JwksReply::Json(good_jwks())).await;
    let gw = gateway().jwks(&jwks).section("clerk.keys", &keys("1h", "2s", "24h", "2s")).start().await;
    wait_ready(&gw).await;
    assert_eq!(gw.get("/api/me", Some(&kid_token("a")), &[]).await.status, 200);
    let h0 = jwks.hits();
    assert_eq!(h0, 1, "only the start-up fetch so far");

    jwks.set(JwksReply::Json(jwks_of(&[support::key().jwk(KID), support::other_key().jwk(KID2)])));
    let t2 = token_by(support::other_key(), KID2, "rotated", support::now_s());
    let r = gw.get("/api/me", Some(&t2), &[]).await;
    assert_eq!(r.status, 200, "the first kid2 token: {}", r.body);
    assert_eq!(r.echoed().one("x-clerk-user-id"), Some("user_rotated"));
    assert_eq!(jwks.hits(), h0 + 1, "exactly one refetch for the new kid");

    // Both keys now verify, with no further fetches.
    let r = gw.get("/api/me", Some(&token_by(support::other_key(), KID2, "rotated2", support::now_s())), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(gw.get("/api/me", Some(&kid_token("b")), &[]).await.status, 200);
    assert_eq!(jwks.hits(), h0 + 1);
    assert_eq!(status_kids(&gw).await, vec![KID.to_string(), KID2.to_string()]);
}

/// T18: every kind of bad answer leaves the last good set in force, and is counted.
#[tokio::test]
async fn t18_bad_jwks_answers_never_replace_the_good_set() {
    let jwks = JwksServer::start(JwksReply::Json(good_jwks())).await;
    // A good answer must come within fetch_timeout even on a loaded machine (the mixed set at
    // the end gets one try); the slow answer below outlasts it.
    let gw = gateway().jwks(&jwks).section("clerk.keys", &keys("1h", "2s", "24h", "2s")).start().await;
    wait_ready(&gw).await;

    // Each bad answer would, if taken, install the other key (so a KID token would fail).
    let other = support::other_key().jwks("intruder");
    let other_text = other.to_string();
    let mut big = format!("{{\"keys\":[{}],\"pad\":\"", support::other_key().jwk("intruder"));
    big.push_str(&"x".repeat(10 * 1024 * 1024));
    big.push_str("\"}");
    let enc = {
        let mut k = support::other_key().jwk("intruder");
        k["use"] = json!("enc");
        jwks_of(&[k])
    };
    let bad: Vec<(&str, JwksReply)> = vec![
        ("500 with a JWKS body", JwksReply::Status(500, other_text.clone())),
        ("500 with a JSON error", JwksReply::Status(500, "{\"error\":\"internal\"}".into())),
        ("200 with HTML", JwksReply::Raw("<!doctype html><html><body>Sign in</body></html>".into())),
        ("empty key list", JwksReply::Json(json!({"keys": []}))),
        ("no keys member", JwksReply::Json(json!({"kty": "RSA"}))),
        ("truncated JSON", JwksReply::Raw(other_text[..other_text.len() / 2].to_string())),
        ("a 10 MB body", JwksReply::Raw(big)),
        ("slower than fetch_timeout", JwksReply::Slow(Duration::from_secs(5), other.clone())),
        ("only EC/OKP/oct keys", JwksReply::Json(jwks_of(&[ec_jwk(), okp_jwk(), oct_jwk()]))),
        ("only an RSA key under 2048 bits", JwksReply::Json(jwks_of(&[weak_rsa_jwk()]))),
        ("only an encryption key", JwksReply::Json(enc)),
    ];
    for (i, (what, reply)) in bad.into_iter().enumerate() {
        jwks.set(reply);
        let h = jwks.hits();
        let r = force_refresh(&gw).await;
        assert_eq!(r.status, 502, "{what}: POST /keys/refresh should fail: {}", r.body);
        assert_eq!(r.json()["error"], "jwks_unavailable", "{what}: {}", r.body);
        assert_eq!(jwks.hits(), h + 1, "{what}: the refresh did not reach the JWKS");
        let r = gw.get("/api/me", Some(&kid_token(&format!("bad{i}"))), &[]).await;
        assert_eq!(r.status, 200, "{what}: the good key stopped verifying: {}", r.body);
        let k = status_keys(&gw).await;
        assert_eq!(kids_of(&k["kids"]), vec![KID.to_string()], "{what}: {k}");
        assert!(k["last_error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: no last_error: {k}");
        assert_eq!(readyz(&gw).await.status, 200, "{what}: a bad answer made the gateway unready");
    }
    // The persisted last-good set is still the good one.
    let persisted = std::fs::read_to_string(gw.state_dir().join("keys.json")).expect("keys.json");
    assert!(persisted.contains(KID) && !persisted.contains("intruder"), "keys.json: {persisted}");

    // Failures are exported.
    let metrics = http_get(&support::client(), &gw.admin_url("/metrics"), None).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.lines().any(|l| l.starts_with("clerkgate_jwks_fetch_total{") && l.contains("result=\"error\"")),
        "no clerkgate_jwks_fetch_total{{result=\"error\"}} in /metrics:\n{}",
        metrics.body
    );

    // A mixed set loads its RS256 key and skips the rest (EC, OKP, oct, a 1024-bit RSA key).
    jwks.set(JwksReply::Json(jwks_of(&[
        ec_jwk(),
        okp_jwk(),
        weak_rsa_jwk(),
        support::other_key().jwk("mixed-rsa"),
        oct_jwk(),
    ])));
    let r = force_refresh(&gw).await;
    assert_eq!(r.status, 200, "a mixed set with one RS256 key: {}", r.body);
    assert_eq!(kids_of(&r.json()["kids"]), vec!["mixed-rsa".to_string()]);
    assert_eq!(status_kids(&gw).await, vec!["mixed-rsa".to_string()]);
    let r = gw.get("/api/me", Some(&token_by(support::other_key(), "mixed-rsa", "mixed", support::now_s())), &[]).await;
    assert_eq!(r.status, 200, "the RSA key of the mixed set: {}", r.body);
    assert!(status_keys(&gw).await["last_error"].is_null(), "a success clears last_error");
}

/// T19: with the JWKS down, known kids keep passing until `max_stale` after the last good
/// fetch, then 503 (never 401); readiness says stale; the gateway recovers on its own.
#[tokio::test]
async fn t19_outage_with_a_warm_cache_serves_until_max_stale_then_503_and_recovers() {
    let clock = Clock::manual(T0_MS);
    let now_s = |c: &Clock| c.now_ms() / 1000;
    let jwks = JwksServer::start(JwksReply::Json(good_jwks())).await;
    let gw = gateway()
        .jwks(&jwks)
        .clock(clock.clone())
        // On the manual clock a fetch that times out is retried only when the test advances
        // it: fetch_timeout (real time) is generous, so that no fetch meant to succeed fails.
        .section("clerk.keys", &keys("10s", "2s", "60s", "5s"))
        .start()
        .await;
    wait_ready(&gw).await;
    let r = gw.get("/api/me", Some(&token_by(support::key(), KID, "warm", now_s(&clock))), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // The JWKS goes down. Half-way to max_stale the background refresh fails…
    jwks.set(JwksReply::Status(503, "{\"error\":\"outage\"}".into()));
    let h = jwks.hits();
    clock.advance_ms(30_000);
    wait_hits_above(&jwks, h).await;
    eventually("the failed refresh shows as last_error", Duration::from_secs(20), || async {
        status_keys(&gw).await["last_error"].as_str().map(str::to_string)
    })
    .await;
    // …and known kids keep passing on the last good set.
    let r = gw.get("/api/me", Some(&token_by(support::key(), KID, "outage-1", now_s(&clock))), &[]).await;
    assert_eq!(r.status, 200, "known kid during the outage, within max_stale: {}", r.body);
    let ready = readyz(&gw).await;
    assert_eq!(ready.status, 200, "still within max_stale: {}", ready.body);
    assert_eq!(ready.json()["stale"], false);

    // Just before max_stale: still served.
    clock.advance_ms(29_000);
    let r = gw.get("/api/me", Some(&token_by(support::key(), KID, "outage-2", now_s(&clock))), &[]).await;
    assert_eq!(r.status, 200, "59 s after the last good fetch (max_stale 60 s): {}", r.body);

    // Past max_stale: 503 jwks-unavailable with Retry-After, not 401.
    clock.advance_ms(2_000);
    let r = gw.get("/api/me", Some(&token_by(support::key(), KID, "outage-3", now_s(&clock))), &[]).await;
    assert_jwks_unavailable(&r);
    let ready = readyz(&gw).await;
    assert_eq!(ready.status, 503, "past max_stale: {}", ready.body);
    let body = ready.json();
    assert_eq!(body["stale"], true, "{body}");
    assert_eq!(body["ready"], false, "{body}");
    assert!(body["why"].as_str().is_some_and(|w| w.contains("max_stale")), "why: {body}");
    assert_eq!(status_keys(&gw).await["stale"], true);

    // The JWKS comes back: within one retry interval (the backoff is capped at refresh_interval)
    // the background retry restores service, with no admin action and no token traffic.
    jwks.set(JwksReply::Json(good_jwks()));
    let h = jwks.hits();
    clock.advance_ms(10_000);
    eventually("/readyz 200 after the JWKS came back", Duration::from_secs(10), || async {
        (readyz(&gw).await.status == 200).then_some(())
    })
    .await;
    assert!(jwks.hits() > h, "recovered without fetching?");
    let r = gw.get("/api/me", Some(&token_by(support::key(), KID, "recovered", now_s(&clock))), &[]).await;
    assert_eq!(r.status, 200, "after recovery: {}", r.body);
    assert_eq!(readyz(&gw).await.json()["stale"], false);
}

/// T19 (cache): a token verified while the keys were fresh must not keep passing from the
/// verdict cache once the keys are older than `max_stale` — a fresh verification would answer
/// 503, and a cache hit must never accept what a fresh verification refuses.
#[tokio::test]
async fn t19_a_cached_verdict_does_not_outlive_max_stale() {
    let clock = Clock::manual(T0_MS);
    let jwks = JwksServer::start(JwksReply::Json(good_jwks())).await;
    let gw = gateway()
        .jwks(&jwks)
        .clock(clock.clone())
        // Generous: on the manual clock a timed-out start-up fetch is never retried.
        .section("clerk.keys", &keys("1h", "2s", "20s", "5s"))
        .start()
        .await;
    wait_ready(&gw).await;
    jwks.set(JwksReply::Status(503, "down".into()));
    // One token, valid for ten minutes, presented before and after max_stale.
    let spec = TokenSpec { sub: "user_cached".into(), sid: "sess_cached".into(), ttl_s: 600, ..TokenSpec::default() };
    let token = support::key().sign(Some(KID), &spec.claims(clock.now_ms() / 1000));
    assert_eq!(gw.get("/api/me", Some(&token), &[]).await.status, 200);
    assert_eq!(gw.get("/api/me", Some(&token), &[]).await.status, 200);

    clock.advance_ms(25_000);
    assert_eq!(readyz(&gw).await.status, 503, "the keys are past max_stale");
    // A token the gateway has never seen: 503.
    let fresh = support::key()
        .sign(Some(KID), &TokenSpec { sub: "user_new".into(), ..spec.clone() }.claims(clock.now_ms() / 1000));
    assert_jwks_unavailable(&gw.get("/api/me", Some(&fresh), &[]).await);
    // The token seen before max_stale: must be the same answer.
    let r = gw.get("/api/me", Some(&token), &[]).await;
    assert_jwks_unavailable(&r);
}

/// T20: a JWKS that accepts and never answers delays nothing but the one unknown-kid request,
/// and that one only up to `fetch_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t20_a_hanging_jwks_never_delays_known_kids_and_bounds_the_unknown_kid_wait() {
    let jwks = JwksServer::start(JwksReply::Json(good_jwks())).await;
    let gw = gateway().jwks(&jwks).section("clerk.keys", &keys("1h", "2s", "24h", "10s")).start().await;
    wait_ready(&gw).await;
    let known: Vec<String> = (0..50).map(|i| kid_token(&format!("k{i}"))).collect();
    let unknown_a = token_by(support::other_key(), "ins_rotated_a", "ua", support::now_s());
    let unknown_b = token_by(support::other_key(), "ins_rotated_b", "ub", support::now_s());

    jwks.set(JwksReply::Hang);
    let h = jwks.hits();
    // Bounded by fetch_timeout (10 s): a client that waits twice as long must get the answer.
    let patient = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(20)).build().expect("client");
    let url = gw.url("/api/me");
    let first = {
        let (c, u) = (patient.clone(), url.clone());
        tokio::spawn(async move { c.get(u).bearer_auth(unknown_a).send().await })
    };
    wait_hits_above(&jwks, h).await;
    // A second unknown kid while the fetch hangs shares it instead of starting another.
    let second = {
        let (c, u) = (patient.clone(), url.clone());
        tokio::spawn(async move { c.get(u).bearer_auth(unknown_b).send().await })
    };

    // Known kids: a client that gives up after 3 s (well before the hanging fetch's 10 s, yet
    // room for 50 requests on a loaded machine) never times out.
    let hasty = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(3)).build().expect("client");
    let mut known_tasks = Vec::new();
    for t in known {
        let (c, u) = (hasty.clone(), url.clone());
        known_tasks.push(tokio::spawn(async move { c.get(u).bearer_auth(t).send().await }));
    }
    for (i, task) in known_tasks.into_iter().enumerate() {
        let resp =
            task.await.expect("task").unwrap_or_else(|e| panic!("known-kid request {i} waited on the JWKS: {e}"));
        assert_eq!(resp.status(), 200, "known-kid request {i}");
    }
    assert!(!first.is_finished(), "the hanging fetch was over before the known-kid requests ran; nothing was proven");

    for (name, task) in [("first", first), ("second", second)] {
        let resp = task.await.expect("task").unwrap_or_else(|e| panic!("{name} unknown-kid request not bounded: {e}"));
        let r = Reply::from(resp).await;
        assert_refused(&r, 401, "jwk-kid-mismatch");
    }
    assert_eq!(jwks.hits(), h + 1, "one fetch for both unknown kids (single flight)");
    // The hang left the good set in force.
    assert_eq!(status_kids(&gw).await, vec![KID.to_string()]);
    assert!(
        status_keys(&gw).await["last_error"].as_str().is_some_and(|e| e.contains("no answer")),
        "the timeout is reported"
    );
}

/// T21: a key removed from the JWKS stops verifying after the next background refresh, with no
/// unknown-kid traffic to prompt it — including a token whose verdict was cached.
#[tokio::test]
async fn t21_a_removed_key_stops_verifying_after_the_next_refresh() {
    let jwks = JwksServer::start(JwksReply::Json(good_jwks())).await;
    let gw = gateway().jwks(&jwks).section("clerk.keys", &keys("500ms", "2s", "24h", "500ms")).start().await;
    wait_ready(&gw).await;
    let cached = kid_token("cached");
    assert_eq!(gw.get("/api/me", Some(&cached), &[]).await.status, 200);
    assert_eq!(gw.get("/api/me", Some(&cached), &[]).await.status, 200);

    // Simulated compromise: the JWKS now serves only kid2.
    jwks.set(JwksReply::Json(support::other_key().jwks(KID2)));
    eventually("/status kids == [kid2]", Duration::from_secs(10), || async {
        (status_kids(&gw).await == vec![KID2.to_string()]).then_some(())
    })
    .await;

    assert_refused(&gw.get("/api/me", Some(&kid_token("removed")), &[]).await, 401, "jwk-kid-mismatch");
    assert_refused(&gw.get("/api/me", Some(&cached), &[]).await, 401, "jwk-kid-mismatch");
    let r = gw.get("/api/me", Some(&token_by(support::other_key(), KID2, "new", support::now_s())), &[]).await;
    assert_eq!(r.status, 200, "the remaining key: {}", r.body);
    let persisted = std::fs::read_to_string(gw.state_dir().join("keys.json")).expect("keys.json");
    assert!(persisted.contains(KID2) && !persisted.contains(KID), "keys.json still holds the removed key: {persisted}");
}

/// The Backend API flavour: `{api_url}/v1/jwks` with the secret key; a rejected secret key is a
/// configuration problem reported as such.
#[tokio::test]
async fn backend_api_jwks_uses_the_secret_key_and_reports_a_rejected_one() {
    let rejected =
        json!({"errors": [{"code": "clerk_key_invalid", "message": "The provided Clerk Secret Key is invalid."}]});
    let api = JwksServer::start(JwksReply::Status(401, rejected.to_string())).await;
    let gw = gateway()
        .clerk(&format!(
            "secret_key = \"sk_test_abc\"\napi_url = {}",
            support::toml_str(&format!("http://{}", api.addr()))
        ))
        .section("clerk.keys", &keys("1h", "2s", "24h", "5s"))
        .start()
        .await;

    let k = eventually("/status reports the rejected secret key", Duration::from_secs(10), || async {
        let k = status_keys(&gw).await;
        (k["secret_key_rejected"] == true).then_some(k)
    })
    .await;
    let last_error = k["last_error"].as_str().unwrap_or_default().to_string();
    assert!(last_error.contains("clerk_key_invalid"), "last_error does not name the cause: {k}");
    assert!(last_error.contains("The provided Clerk Secret Key is invalid."), "Clerk's message is lost: {k}");
    assert_eq!(k["source"], format!("http://{}/v1/jwks", api.addr()));

    let headers = api.last_headers();
    let header = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
    assert_eq!(header("authorization").as_deref(), Some("Bearer sk_test_abc"));
    assert_eq!(header("clerk-api-version").as_deref(), Some(clerkgate::keys::CLERK_API_VERSION));

    let ready = readyz(&gw).await;
    assert_eq!(ready.status, 503);
    assert!(ready.json()["why"].as_str().is_some_and(|w| w.contains("clerk_key_invalid")), "{}", ready.body);
    let r = force_refresh(&gw).await;
    assert_eq!(r.status, 502, "{}", r.body);
    assert_eq!(r.json()["error"], "secret_key_invalid", "{}", r.body);

    // A plain outage is not a secret-key problem.
    api.set(JwksReply::Status(401, "{\"errors\":[{\"code\":\"authentication_invalid\"}]}".into()));
    assert_eq!(force_refresh(&gw).await.status, 502);
    assert_eq!(status_keys(&gw).await["secret_key_rejected"], false);

    // A good answer clears it and loads the keys.
    api.set(JwksReply::Json(good_jwks()));
    let r = force_refresh(&gw).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let k = status_keys(&gw).await;
    assert_eq!(k["secret_key_rejected"], false, "{k}");
    assert!(k["last_error"].is_null(), "{k}");
    assert_eq!(gw.get("/api/me", Some(&kid_token("api")), &[]).await.status, 200);
}

/// The path the Backend API flavour requests, seen by a bare TCP listener.
#[tokio::test]
async fn backend_api_jwks_is_fetched_from_the_v1_jwks_path() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let body = good_jwks().to_string();
    {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                seen.lock().unwrap().push(head.lines().next().unwrap_or_default().to_string());
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
    }
    let gw = gateway()
        .clerk(&format!("secret_key = \"sk_test_abc\"\napi_url = \"http://{addr}/\""))
        .section("clerk.keys", &keys("1h", "2s", "24h", "500ms"))
        .start()
        .await;
    wait_ready(&gw).await;
    let first = seen.lock().unwrap().first().cloned().unwrap_or_default();
    assert_eq!(first, "GET /v1/jwks HTTP/1.1");
    assert_eq!(gw.get("/api/me", Some(&kid_token("path")), &[]).await.status, 200);
}

// ---------------------------------------------------------------------------------------------
// T22, the real binary
// ---------------------------------------------------------------------------------------------

/// The real `clerkgate` binary, killed on drop if still running.
struct Binary {
    child: Child,
    data: SocketAddr,
    admin: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Binary {
    /// Runs `clerkgate run --config <path>` and waits for its "clerkgate listening" log line.
    async fn start(config: &Path) -> Binary {
        let mut child = Command::new(env!("CARGO_BIN_EXE_clerkgate"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("CLERK_SECRET_KEY")
            .env_remove("CLERK_JWT_KEY")
            .env_remove("CLERK_API_URL")
            .env_remove("CLERK_EMERGENCY_BYPASS")
            .env_remove("CLERKGATE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn clerkgate");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<String>();
        {
            let lines = lines.clone();
            // Drains stderr for the life of the process so the pipe never fills.
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    lines.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match rx.try_recv() {
                Ok(line) => {
                    let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                    let message = v["message"].as_str().or_else(|| v["fields"]["message"].as_str());
                    if message != Some("clerkgate listening") {
                        continue;
                    }
                    let addr = |name: &str| -> SocketAddr {
                        let text = v[name].as_str().or_else(|| v["fields"][name].as_str());
                        text.and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("no {name} in {line}"))
                    };
                    let (data, admin) = (addr("data_addr"), addr("admin_addr"));
                    return Binary { child, data, admin, lines };
                }
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => {
                    let status = child.wait().ok();
                    panic!("clerkgate exited ({status:?}) before listening:\n{}", lines.lock().unwrap().join("\n"));
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("no \"clerkgate listening\" line within 20 s:\n{}", lines.lock().unwrap().join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn data_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.data)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// SIGTERM, then the exit status (within 15 s).
    async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "clerkgate did not exit within 15 s of SIGTERM:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A client without connection reuse, so a stopping binary is never held by an idle connection.
fn one_shot_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0).build().expect("client")
}

/// Writes a config for the binary: JSON logs, the given JWKS, keys settings and state dir.
fn write_binary_config(dir: &Path, upstream: SocketAddr, jwks: &JwksServer, keys_body: &str, state: &Path) -> PathBuf {
    let text = gateway()
        .jwks(jwks)
        .section("clerk.keys", keys_body)
        .section("log", "format = \"json\"\nlevel = \"info\"")
        .config_text(upstream, &state.display().to_string());
    let path = dir.join("clerkgate.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

async fn wait_binary_ready(client: &reqwest::Client, bin: &Binary, within: Duration) -> Value {
    let url = bin.admin_url("/readyz");
    let deadline = Instant::now() + within;
    loop {
        let r = http_get(client, &url, None).await;
        if r.status == 200 {
            return r.json();
        }
        assert!(Instant::now() < deadline, "/readyz never 200 ({}): {}\n--- log ---\n{}", r.status, r.body, bin.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// T22: restart while the JWKS is down; the binary serves from `keys.json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t22_restart_with_the_jwks_down_serves_from_keys_json_real_binary() {
    let jwks = JwksServer::start(JwksReply::Json(good_jwks())).await;
    let upstream = support::upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let config = write_binary_config(dir.path(), upstream, &jwks, &keys("1s", "2s", "1h", "500ms"), &state);
    let client = one_shot_client();

    let bin = Binary::start(&config).await;
    wait_binary_ready(&client, &bin, Duration::from_secs(10)).await;
    let r = http_get(&client, &bin.data_url("/api/me"), Some(&kid_token("first-run"))).await;
    assert_eq!(r.status, 200, "first run: {}", r.body);
    let persisted = state.join("keys.json");
    assert!(persisted.exists(), "no keys.json after a successful fetch");
    let status = bin.terminate().await;
    assert_eq!(status.code(), Some(0), "SIGTERM should exit 0, got {status:?}");

    // The JWKS is down (same URL, now answering 503) and the gateway restarts.
    jwks.set(JwksReply::Status(503, "{\"error\":\"outage\"}".into()));
    let h = jwks.hits();
    let bin = Binary::start(&config).await;
    let r = http_get(&client, &bin.admin_url("/readyz"), None).await;
    assert_eq!(r.status, 200, "ready from keys.json at once: {}\n{}", r.body, bin.log());
    assert_eq!(kids_of(&r.json()["remote_keys"]), vec![KID.to_string()]);
    let r = http_get(&client, &bin.data_url("/api/me"), Some(&kid_token("second-run"))).await;
    assert_eq!(r.status, 200, "a KID token after a restart with the JWKS down: {}\n{}", r.body, bin.log());
    // It did try the JWKS, and says so while staying ready.
    let url = bin.admin_url("/status");
    let keys_status = eventually("the failed start-up fetch shows on /status", Duration::from_secs(10), || async {
        let k = http_get(&client, &url, Some(ADMIN_TOKEN)).await.json()["keys"].clone();
        k["last_error"].as_str().is_some().then_some(k)
    })
    .await;
    assert!(jwks.hits() > h, "the restarted gateway never tried the JWKS");
    assert_eq!(keys_status["origin"], "persisted", "{keys_status}");
    assert_eq!(keys_status["stale"], false, "{keys_status}");
    let r = http_get(&client, &bin.admin_url("/readyz"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["last_error"].as_str().is_some(), "readiness hides the degraded JWKS: {}", r.body);
    // This process's own metrics (its registry is not shared with other tests) count the failure.
    let metrics = http_get(&client, &bin.admin_url("/metrics"), None).await.body;
    let errors: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("clerkgate_jwks_fetch_total{") && l.contains("result=\"error\""))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum();
    assert!(errors >= 1.0, "no failed fetch counted in /metrics:\n{metrics}");
    assert!(metrics.contains("clerkgate_jwks_age_seconds"), "no key-age gauge in /metrics:\n{metrics}");
    let status = bin.terminate().await;
    assert_eq!(status.code(), Some(0), "second SIGTERM: {status:?}");
}

/// T22 (cold): no keys.json and the JWKS down → 503 with Retry-After and an unready /readyz
/// saying why; the JWKS comes back → the binary recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t22_cold_start_without_the_jwks_answers_503_then_recovers_by_itself_real_binary() {
    let jwks = JwksServer::start(JwksReply::Status(503, "{\"error\":\"outage\"}".into())).await;
    let upstream = support::upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let config = write_binary_config(dir.path(), upstream, &jwks, &keys("2s", "2s", "1h", "500ms"), &state);
    let client = one_shot_client();

    let bin = Binary::start(&config).await;
    wait_hits_above(&jwks, 0).await;
    let url = bin.admin_url("/readyz");
    let body = eventually("/readyz names the failed fetch", Duration::from_secs(10), || async {
        let r = http_get(&client, &url, None).await;
        assert_eq!(r.status, 503, "ready with no keys: {}", r.body);
        let v = r.json();
        v["last_error"].as_str().is_some().then_some(v)
    })
    .await;
    assert_eq!(body["ready"], false);
    assert!(body["why"].as_str().is_some_and(|w| !w.is_empty()), "no why: {body}");
    let r = http_get(&client, &bin.data_url("/api/me"), Some(&kid_token("cold"))).await;
    assert_jwks_unavailable(&r);
    assert_eq!(http_get(&client, &bin.data_url("/api/me"), None).await.status, 401, "no token is still 401");

    jwks.set(JwksReply::Json(good_jwks()));
    wait_binary_ready(&client, &bin, Duration::from_secs(10)).await;
    let r = http_get(&client, &bin.data_url("/api/me"), Some(&kid_token("warm"))).await;
    assert_eq!(r.status, 200, "after the JWKS came back: {}", r.body);
    assert!(state.join("keys.json").exists());
    let status = bin.terminate().await;
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// The recovery half of the cold start, in-process, with real short durations.
#[tokio::test]
async fn t22_cold_start_in_process_recovers_by_itself_without_traffic() {
    let jwks = JwksServer::start(JwksReply::Status(503, "down".into())).await;
    let gw = gateway().jwks(&jwks).section("clerk.keys", &keys("1s", "2s", "1h", "500ms")).start().await;
    wait_hits_above(&jwks, 0).await;
    let r = readyz(&gw).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.json()["why"].as_str().is_some_and(|w| w.contains("no key set loaded")), "{}", r.body);
    assert_jwks_unavailable(&gw.get("/api/me", Some(&kid_token("cold")), &[]).await);
    // Retries keep coming while nothing is loaded.
    let h = jwks.hits();
    wait_hits_above(&jwks, h).await;

    jwks.set(JwksReply::Json(good_jwks()));
    wait_ready(&gw).await;
    assert_eq!(gw.get("/api/me", Some(&kid_token("recovered")), &[]).await.status, 200);
    assert_eq!(status_keys(&gw).await["origin"], "fetched");
}
