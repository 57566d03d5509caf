//! The control plane through the real binary: modes and their sources (SPEC §4), the admin API
//! and its guard (§5), signals, reload and lifecycle (§6), revocations, and the audit log; with
//! the peer cases T25 (the bypass toggle is safe) and T27 (SIGHUP atomicity) from peers.md §3.
//!
//! Every test runs `clerkgate run --config <file>` as a child process (networkless `jwt_key`,
//! both listeners on 127.0.0.1:0) in front of the real echo upstream, talks to it over real
//! sockets, and signals it with `kill`. Nothing here asserts on timing: waits are polls with
//! generous deadlines.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clerkgate::mint::TokenSpec;
use serde_json::{json, Value};

use crate::support::{self, binary_config, raw, BinaryConfig, BinaryGateway, Reply, ADMIN_TOKEN};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// How long a poll waits for the gateway to reach a state before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// The default routes plus extra public patterns.
fn routes_with_public(extra: &[&str]) -> String {
    let mut public = vec!["\"/\"".to_string(), "\"/public(.*)\"".into(), "\"/health\"".into()];
    public.extend(extra.iter().map(|p| format!("\"{p}\"")));
    format!("default = \"protected\"\npublic = [{}]", public.join(", "))
}

/// A fresh gateway on a fresh echo upstream.
async fn start(cfg: impl FnOnce(BinaryConfig) -> BinaryConfig) -> BinaryGateway {
    let up = support::upstream().await;
    BinaryGateway::start(&cfg(binary_config(up)).text(), &[])
}

/// Polls `check` until it yields `Some`, failing with `what` after [`DEADLINE`].
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    support::eventually(what, DEADLINE, check).await
}

/// Events with this action in `audit.jsonl`.
fn file_events(gw: &BinaryGateway, action: &str) -> Vec<Value> {
    gw.audit_file().into_iter().filter(|e| e["action"] == action).collect()
}

/// Events with this action from `GET /audit`.
async fn api_events(gw: &BinaryGateway, action: &str) -> Vec<Value> {
    let r = gw.admin("GET", "/audit", None).await;
    assert_eq!(r.status, 200, "GET /audit: {}", r.body);
    r.json()["events"]
        .as_array()
        .unwrap_or_else(|| panic!("GET /audit has no events array: {}", r.body))
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

/// Waits until `audit.jsonl` holds at least one event with this action, and returns them all.
async fn await_file_event(gw: &BinaryGateway, action: &str) -> Vec<Value> {
    eventually(&format!("a {action} event in audit.jsonl"), || {
        let events = file_events(gw, action);
        async move { (!events.is_empty()).then_some(events) }
    })
    .await
}

async fn get_mode(gw: &BinaryGateway) -> Value {
    let r = gw.admin("GET", "/mode", None).await;
    assert_eq!(r.status, 200, "GET /mode: {}", r.body);
    r.json()
}

async fn put_mode(gw: &BinaryGateway, body: Value) -> Reply {
    gw.admin("PUT", "/mode", Some(body)).await
}

async fn status(gw: &BinaryGateway) -> Value {
    let r = gw.admin("GET", "/status", None).await;
    assert_eq!(r.status, 200, "GET /status: {}", r.body);
    r.json()
}

/// A token for `sub`/`sid`, issued now, valid for 10 minutes.
fn token_for(sub: &str, sid: &str) -> String {
    support::token_for(&TokenSpec { sub: sub.into(), sid: sid.into(), ttl_s: 600, ..TokenSpec::default() })
}

/// A token with explicit times (seconds since the epoch).
fn timed_token(sub: &str, sid: &str, iat: i64, nbf: i64, exp: i64) -> String {
    support::sign(&json!({"sub": sub, "sid": sid, "iat": iat, "nbf": nbf, "exp": exp, "sts": "active"}))
}

/// True while the process answers `GET /healthz` on its admin listener.
async fn alive(gw: &BinaryGateway) -> bool {
    support::client().get(gw.admin_url("/healthz")).send().await.is_ok_and(|r| r.status() == 200)
}

/// True for `admin:` followed by exactly 8 lower-case hex characters.
fn is_admin_actor(actor: &str) -> bool {
    actor
        .strip_prefix("admin:")
        .is_some_and(|id| id.len() == 8 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// Keys listed in a `problems` array.
fn problem_keys(problems: &Value) -> Vec<String> {
    problems
        .as_array()
        .unwrap_or_else(|| panic!("problems is not an array: {problems}"))
        .iter()
        .map(|p| p["key"].as_str().unwrap_or_default().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Modes (SPEC §4) through the admin API
// ---------------------------------------------------------------------------------------------

/// T25: bypass with a reason lets a no-token request through, tagged on both hops; a
/// `bypass = "never"` route stays enforced; `{"mode":"enforce"}` restores 401.
#[tokio::test]
async fn bypass_with_reason_passes_tagged_except_never_routes_until_enforce() {
    let gw = start(|c| c.extra("[[routes.rule]]\npath = \"/critical(.*)\"\nbypass = \"never\"")).await;
    assert_eq!(gw.get("/api/orders", None).await.status, 401, "protected before bypass");

    let r = put_mode(&gw, json!({"mode": "bypass", "reason": "drill", "ttl": "5m"})).await;
    assert_eq!(r.status, 200, "PUT /mode bypass: {}", r.body);
    let m = get_mode(&gw).await;
    assert_eq!(
        (m["mode"].as_str(), m["source"].as_str(), m["reason"].as_str()),
        (Some("bypass"), Some("admin"), Some("drill"))
    );

    let r = gw.get("/api/orders", None).await;
    assert_eq!(r.status, 200, "no-token request in bypass: {}", r.body);
    assert_eq!(r.header("x-auth-bypass"), Some("true"), "client response must carry X-Auth-Bypass: true");
    let seen = r.echoed();
    assert_eq!(seen.one("x-auth-bypass"), Some("true"), "upstream must see X-Auth-Bypass: true");
    assert_eq!(seen.one("x-clerk-auth-status"), Some("bypass"));
    assert_eq!(seen.one("x-clerk-user-id"), None, "no identity without a token");

    let r = gw.get("/critical/launch", None).await;
    assert_eq!(r.status, 401, "a bypass = \"never\" route stays enforced in bypass: {}", r.body);
    assert_eq!(r.header("x-auth-bypass"), None);

    let r = put_mode(&gw, json!({"mode": "enforce"})).await;
    assert_eq!(r.status, 200, "PUT /mode enforce: {}", r.body);
    assert_eq!(get_mode(&gw).await["mode"], "enforce");
    let r = gw.get("/api/orders", None).await;
    assert_eq!(r.status, 401, "enforce again after clearing the override: {}", r.body);
    assert_eq!(r.header("x-auth-bypass"), None);
}

/// An override needs a reason: bypass without one (or with only blanks) is 422 and changes nothing.
#[tokio::test]
async fn bypass_without_reason_is_refused_and_mode_unchanged() {
    let gw = start(|c| c).await;
    let before = get_mode(&gw).await;
    for body in [
        json!({"mode": "bypass", "ttl": "5m"}),
        json!({"mode": "bypass", "reason": "", "ttl": "5m"}),
        json!({"mode": "bypass", "reason": "   "}),
        json!({"mode": "grace", "ttl": "5m"}),
    ] {
        let r = put_mode(&gw, body.clone()).await;
        assert_eq!(r.status, 422, "{body} must be refused: {}", r.body);
    }
    let after = get_mode(&gw).await;
    assert_eq!(after["mode"], "enforce");
    assert_eq!(after["source"], before["source"], "the mode's source must not change: {after}");
    assert_eq!(gw.get("/api/orders", None).await.status, 401, "still enforced");
    assert!(file_events(&gw, "mode.set").is_empty(), "a refused change must not be audited as mode.set");
}

/// An override with a short TTL expires by itself: requests fail again, and the expiry is
/// audited by the timer (API and file).
#[tokio::test]
async fn override_expires_by_itself_and_the_timer_audits_it() {
    let gw = start(|c| c).await;
    // Short, yet long enough that the next request lands inside it on a loaded machine.
    let r = put_mode(&gw, json!({"mode": "bypass", "reason": "short drill", "ttl": "5s"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = gw.get("/api/orders", None).await;
    assert_eq!(r.status, 200, "passes while the 5 s bypass is on: {}", r.body);
    assert_eq!(r.header("x-auth-bypass"), Some("true"));

    let m = eventually("the admin override to expire", || async {
        let m = get_mode(&gw).await;
        (m["source"] != "admin").then_some(m)
    })
    .await;
    assert_eq!(m["mode"], "enforce", "falls back to the file's enforce: {m}");
    let r = gw.get("/api/orders", None).await;
    assert_eq!(r.status, 401, "requests after expiry are enforced: {}", r.body);
    assert_eq!(r.header("x-auth-bypass"), None);

    let expired = await_file_event(&gw, "mode.expired").await;
    assert_eq!(expired.len(), 1, "one expiry, audited once: {expired:?}");
    assert_eq!(expired[0]["actor"], "timer", "{}", expired[0]);
    assert_eq!(expired[0]["reason"], "short drill", "{}", expired[0]);
    assert_eq!(expired[0]["before"]["mode"], "bypass", "{}", expired[0]);
    assert_eq!(expired[0]["after"]["mode"], "enforce", "{}", expired[0]);
    let api = api_events(&gw, "mode.expired").await;
    assert_eq!(api.len(), 1, "GET /audit shows the expiry too: {api:?}");
    assert_eq!(api[0]["actor"], "timer");
}

/// `max_override_ttl` caps the TTL: above it is 422 and nothing changes; at it is accepted.
#[tokio::test]
async fn ttl_above_the_cap_is_refused_and_mode_unchanged() {
    let gw = start(|c| c.extra("[mode]\nmax_override_ttl = \"1h\"")).await;
    let r = put_mode(&gw, json!({"mode": "bypass", "reason": "too long", "ttl": "2h"})).await;
    assert_eq!(r.status, 422, "ttl 2h above a 1h cap: {}", r.body);
    let m = get_mode(&gw).await;
    assert_eq!(m["mode"], "enforce", "{m}");
    assert_ne!(m["source"], "admin", "{m}");
    assert_eq!(gw.get("/api/orders", None).await.status, 401);

    let r = put_mode(&gw, json!({"mode": "bypass", "reason": "at the cap", "ttl": "1h"})).await;
    assert_eq!(r.status, 200, "ttl equal to the cap is accepted: {}", r.body);
    let m = get_mode(&gw).await;
    assert_eq!(m["mode"], "bypass");
    let left = m["seconds_left"].as_i64().unwrap_or_else(|| panic!("no seconds_left: {m}"));
    assert!(left > 3000 && left <= 3600, "seconds_left {left} must reflect a 1 h expiry");
}

/// Grace via the admin API: a correctly signed token expired 10 minutes ago passes (tagged);
/// one expired 2 hours ago, a forged one, and none at all do not.
#[tokio::test]
async fn grace_accepts_recently_expired_tokens_only() {
    let gw = start(|c| c).await;
    let now = support::now_s();
    let recent = timed_token("user_grace", "sess_grace", now - 660, now - 670, now - 600);
    assert_eq!(gw.get("/api/orders", Some(&recent)).await.status, 401, "expired token refused in enforce");

    let r = put_mode(&gw, json!({"mode": "grace", "reason": "clerk outage", "ttl": "10m"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(get_mode(&gw).await["mode"], "grace");

    let r = gw.get("/api/orders", Some(&recent)).await;
    assert_eq!(r.status, 200, "expired 10 min ago is accepted in grace: {}", r.body);
    let seen = r.echoed();
    assert_eq!(seen.one("x-auth-degraded"), Some("grace"), "upstream must see X-Auth-Degraded: grace");
    assert_eq!(seen.one("x-clerk-user-id"), Some("user_grace"));
    assert_eq!(seen.one("x-auth-bypass"), None);

    let fresh = token_for("user_fresh", "sess_fresh");
    let r = gw.get("/api/orders", Some(&fresh)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.echoed().one("x-auth-degraded"), None, "a valid token is not degraded");

    let old = timed_token("user_grace", "sess_grace", now - 7260, now - 7270, now - 7200);
    let r = gw.get("/api/orders", Some(&old)).await;
    assert_eq!(r.status, 401, "expired 2 h ago is beyond grace_max_expired: {}", r.body);
    assert_eq!(r.reason(), Some("token-expired"));

    let forged = support::other_key().sign(
        Some(support::KID),
        &json!({"sub": "user_grace", "sid": "sess_grace", "iat": now - 660, "nbf": now - 670, "exp": now - 600}),
    );
    let r = gw.get("/api/orders", Some(&forged)).await;
    assert_eq!(r.status, 401, "a forged token never passes in grace: {}", r.body);

    let r = gw.get("/api/orders", None).await;
    assert_eq!(r.status, 401, "strangers stay out in grace: {}", r.body);
}

/// `CLERK_EMERGENCY_BYPASS=true` starts the binary in bypass (source env), audited with actor env.
#[tokio::test]
async fn emergency_bypass_env_starts_in_bypass_and_is_audited() {
    let up = support::upstream().await;
    let gw = BinaryGateway::start(&binary_config(up).text(), &[("CLERK_EMERGENCY_BYPASS", "true")]);
    let m = get_mode(&gw).await;
    assert_eq!((m["mode"].as_str(), m["source"].as_str()), (Some("bypass"), Some("env")), "{m}");
    assert!(m["seconds_left"].as_i64().is_some_and(|s| s > 0), "an env bypass still expires: {m}");

    let r = gw.get("/api/orders", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-auth-bypass"), Some("true"));
    assert_eq!(r.echoed().one("x-auth-bypass"), Some("true"));

    let set: Vec<Value> = file_events(&gw, "mode.set").into_iter().filter(|e| e["actor"] == "env").collect();
    assert_eq!(set.len(), 1, "one mode.set by env in audit.jsonl: {:?}", gw.audit_file());
    assert_eq!(set[0]["after"]["mode"], "bypass", "{}", set[0]);
}

/// The override is in state.json: a SIGTERM and a new process keep it (mode, source, reason).
#[tokio::test]
async fn override_survives_a_restart() {
    let up = support::upstream().await;
    let text = binary_config(up).text();
    let gw = BinaryGateway::start(&text, &[]);
    let r = put_mode(&gw, json!({"mode": "bypass", "reason": "restart drill", "ttl": "10m"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let dir = gw.dir.clone();
    gw.stop().await;

    let gw = BinaryGateway::start_in(dir, &text, &[]);
    let m = get_mode(&gw).await;
    assert_eq!(m["mode"], "bypass", "{m}");
    assert_eq!(m["source"], "admin", "{m}");
    assert_eq!(m["reason"], "restart drill", "{m}");
    let left = m["seconds_left"].as_i64().unwrap_or_default();
    assert!(left > 0 && left <= 600, "keeps its original expiry, not a fresh one: {m}");
    let r = gw.get("/api/orders", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("x-auth-bypass"), Some("true"));
}

/// An override whose expiry passes while the gateway is down is not restored, and the fallback
/// is audited (SPEC §4: "on expiry the gateway falls back by itself and audits it").
#[tokio::test]
async fn override_that_expired_while_down_is_not_restored_and_its_expiry_is_audited() {
    let up = support::upstream().await;
    let text = binary_config(up).text();
    let gw = BinaryGateway::start(&text, &[]);
    // Long enough for the stop below to come first on a loaded machine.
    let ttl = Duration::from_secs(8);
    let r = put_mode(&gw, json!({"mode": "bypass", "reason": "expires while down", "ttl": "8s"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The override runs out by then: it was set before its answer came.
    let expired_by = std::time::Instant::now() + ttl;
    let dir = gw.dir.clone();
    gw.stop().await;
    let audit = std::fs::read_to_string(dir.path().join("state/audit.jsonl")).unwrap_or_default();
    assert!(
        !audit.contains("mode.expired"),
        "precondition: the first process must stop before the 8 s override expires:\n{audit}"
    );
    // Let the expiry pass while nothing runs.
    tokio::time::sleep_until((expired_by + Duration::from_millis(500)).into()).await;

    let gw = BinaryGateway::start_in(dir, &text, &[]);
    let m = get_mode(&gw).await;
    assert_eq!(m["mode"], "enforce", "an expired override is not restored: {m}");
    assert_ne!(m["source"], "admin", "{m}");
    assert_eq!(gw.get("/api/orders", None).await.status, 401);
    let events = gw.audit_file();
    assert!(events.iter().any(|e| e["action"] == "mode.set"), "{events:?}");
    let expired = eventually("a mode.expired event for the override that ran out while the gateway was down", || {
        let events = file_events(&gw, "mode.expired");
        async move { (!events.is_empty()).then_some(events) }
    })
    .await;
    assert_eq!(expired.len(), 1, "{expired:?}");
    assert_eq!(expired[0]["reason"], "expires while down");
}

/// T25: "every bypassed request logged and tagged": a request that passes only because of
/// bypass leaves a log line naming it.
#[tokio::test]
async fn bypassed_requests_are_logged() {
    let gw = start(|c| c).await;
    let r = put_mode(&gw, json!({"mode": "bypass", "reason": "log drill", "ttl": "5m"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let path = "/api/bypass-witness-7f3a";
    let r = gw.get(path, None).await;
    assert_eq!((r.status, r.header("x-auth-bypass")), (200, Some("true")), "{}", r.body);
    eventually("a log line for the bypassed request", || {
        let found = gw.logs().iter().any(|l| l.contains(path) && l.to_ascii_lowercase().contains("bypass"));
        async move { found.then_some(()) }
    })
    .await;
}

/// T27: a reload keeps the admin override (it is runtime state, not file state).
#[tokio::test]
async fn override_survives_a_sighup_reload() {
    let up = support::upstream().await;
    let cfg = binary_config(up);
    let gw = BinaryGateway::start(&cfg.text(), &[]);
    let r = put_mode(&gw, json!({"mode": "bypass", "reason": "reload drill", "ttl": "10m"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    gw.write_config(&cfg.routes(&routes_with_public(&["/after-reload"])).text());
    gw.signal("-HUP");
    await_file_event(&gw, "config.reload").await;
    let m = get_mode(&gw).await;
    assert_eq!((m["mode"].as_str(), m["source"].as_str()), (Some("bypass"), Some("admin")), "{m}");
    assert_eq!(gw.get("/api/orders", None).await.header("x-auth-bypass"), Some("true"));
}

// ---------------------------------------------------------------------------------------------
// Signals and reload (SPEC §6, T27)
// ---------------------------------------------------------------------------------------------

/// SIGHUP applies a rewritten route list, audited with actor `signal`.
#[tokio::test]
async fn sighup_applies_a_new_route_list() {
    let up = support::upstream().await;
    let cfg = binary_config(up);
    let gw = BinaryGateway::start(&cfg.text(), &[]);
    assert_eq!(gw.get("/newpublic", None).await.status, 401, "protected before the reload");
    let hash_before = status(&gw).await["config"]["hash"].clone();

    gw.write_config(&cfg.routes(&routes_with_public(&["/newpublic"])).text());
    gw.signal("-HUP");
    let r = eventually("/newpublic to become public after SIGHUP", || async {
        let r = gw.get("/newpublic", None).await;
        (r.status == 200).then_some(r)
    })
    .await;
    assert_eq!(r.echoed().one("x-clerk-auth-status"), Some("signed-out"));
    assert_eq!(gw.get("/api/orders", None).await.status, 401, "other routes still protected");

    let reloads = await_file_event(&gw, "config.reload").await;
    let by_signal: Vec<&Value> = reloads.iter().filter(|e| e["actor"] == "signal").collect();
    assert_eq!(by_signal.len(), 1, "one config.reload by signal: {reloads:?}");
    assert_eq!(by_signal[0]["before"]["hash"], hash_before, "{}", by_signal[0]);
    assert_ne!(by_signal[0]["after"]["hash"], hash_before, "a new hash after the change: {}", by_signal[0]);
    assert_eq!(status(&gw).await["config"]["hash"], by_signal[0]["after"]["hash"]);
    assert!(alive(&gw).await, "SIGHUP must not end the process");
}

/// An invalid file is refused (SIGHUP and POST /reload) with every problem listed, and the old
/// config keeps serving; a valid file then reloads with a new hash.
#[tokio::test]
async fn invalid_file_is_refused_and_the_old_config_keeps_serving() {
    let up = support::upstream().await;
    let cfg = binary_config(up);
    let gw = BinaryGateway::start(&cfg.text(), &[]);
    let hash_before = status(&gw).await["config"]["hash"].as_str().expect("hash").to_string();

    // Broken: an unknown key and a bad duration; it would also make every route public.
    let broken = cfg.clone().routes("default = \"public\"").text();
    let broken = support::with_keys(&broken, "server", "bogus_key = 1");
    let broken = support::with_keys(&broken, "upstream", "connect_timeout = \"soon\"");
    gw.write_config(&broken);
    gw.signal("-HUP");

    let failed = await_file_event(&gw, "config.reload_failed").await;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["actor"], "signal");
    let keys = problem_keys(&failed[0]["after"]["problems"]);
    for key in ["server.bogus_key", "upstream.connect_timeout"] {
        assert!(keys.iter().any(|k| k == key), "the audit lists {key}: {keys:?}");
    }
    assert!(file_events(&gw, "config.reload").is_empty(), "no successful reload happened");
    gw.await_log("logging the refused reload as an error naming the problem", |l| {
        l.contains("bogus_key") && l.contains("\"level\":\"ERROR\"")
    })
    .await;
    assert_eq!(gw.get("/api/orders", None).await.status, 401, "the old routes still apply");
    assert_eq!(gw.get("/api/orders", Some(&support::token())).await.status, 200, "keys still work");
    assert_eq!(status(&gw).await["config"]["hash"], hash_before.as_str());

    let r = gw.admin("POST", "/reload", None).await;
    assert_eq!(r.status, 422, "POST /reload on a broken file: {}", r.body);
    let keys = problem_keys(&r.json()["problems"]);
    for key in ["server.bogus_key", "upstream.connect_timeout"] {
        assert!(keys.iter().any(|k| k == key), "the 422 lists {key}: {keys:?}");
    }
    assert_eq!(gw.get("/api/orders", None).await.status, 401, "still the old routes");

    gw.write_config(&cfg.routes(&routes_with_public(&["/restored"])).text());
    let r = gw.admin("POST", "/reload", None).await;
    assert_eq!(r.status, 200, "POST /reload on a valid file: {}", r.body);
    let new_hash = r.json()["hash"].as_str().expect("hash in the reload answer").to_string();
    assert_ne!(new_hash, hash_before, "a changed file has a new hash");
    assert_eq!(status(&gw).await["config"]["hash"], new_hash.as_str());
    assert_eq!(gw.get("/restored", None).await.status, 200, "the new routes apply");
    assert_eq!(gw.get("/api/orders", None).await.status, 401);
}

/// T27: 60 SIGHUPs (alternating two valid files) during continuous load fail zero requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_sighups_under_load_fail_zero_requests() {
    let up = support::upstream().await;
    let cfg = binary_config(up);
    let variants = [
        cfg.clone().routes(&routes_with_public(&["/variant-a"])).text(),
        cfg.clone().routes(&routes_with_public(&["/variant-b"])).text(),
    ];
    let gw = Arc::new(BinaryGateway::start(&variants[0], &[]));
    let token = Arc::new(token_for("user_load", "sess_load"));
    let stop = Arc::new(AtomicBool::new(false));

    let mut workers = Vec::new();
    for w in 0..8 {
        let (gw, token, stop) = (gw.clone(), token.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failures) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                for (path, bearer) in [("/api/orders", Some(token.as_str())), ("/public/page", None)] {
                    let mut req = support::client().get(gw.url(path));
                    if let Some(t) = bearer {
                        req = req.bearer_auth(t);
                    }
                    match req.send().await {
                        Ok(resp) if resp.status() == 200 => {
                            let _ = resp.bytes().await;
                            ok += 1;
                        }
                        Ok(resp) => {
                            let status = resp.status();
                            let reason = resp
                                .headers()
                                .get("x-clerk-auth-reason")
                                .map(|v| v.to_str().unwrap_or_default().to_string());
                            failures.push(format!("worker {w}: {path} -> {status} {reason:?}"));
                        }
                        Err(e) => failures.push(format!("worker {w}: {path} -> error {e}")),
                    }
                }
            }
            (ok, failures)
        }));
    }

    for i in 0..60 {
        let next = variants[(i + 1) % 2].clone();
        let g = gw.clone();
        tokio::task::spawn_blocking(move || {
            g.write_config(&next);
            g.signal("-HUP");
        })
        .await
        .expect("signal task");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The 60th file (variant a) is the one in force once the last SIGHUP is handled.
    eventually("the last variant to apply", || async {
        (gw.get("/variant-a", None).await.status == 200 && gw.get("/variant-b", None).await.status == 401).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);

    let (mut ok, mut failures) = (0u64, Vec::new());
    for w in workers {
        let (n, f) = w.await.expect("worker");
        ok += n;
        failures.extend(f);
    }
    eprintln!("sixty_sighups_under_load: {ok} requests answered 200, {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during reloads: {:?}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(20)]
    );
    assert!(ok >= 100, "the load must actually run during the reloads ({ok} requests)");
    assert!(alive(&gw).await, "the gateway survived 60 SIGHUPs");
    let reloads: Vec<Value> =
        file_events(&gw, "config.reload").into_iter().filter(|e| e["actor"] == "signal").collect();
    assert!(!reloads.is_empty(), "the SIGHUPs were handled as reloads");
    assert!(file_events(&gw, "config.reload_failed").is_empty(), "no reload failed: {:?}", gw.audit_file());
}

/// SIGTERM: stop accepting, let the in-flight request finish with 200, exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_request_and_exits_zero() {
    let (up, arrived, release) = support::held_upstream().await;
    let mut gw = BinaryGateway::start(&binary_config(up).text(), &[]);
    let url = gw.url("/api/held");
    let token = support::token();
    let in_flight = tokio::spawn(async move {
        let resp =
            reqwest::Client::builder().no_proxy().build().expect("client").get(url).bearer_auth(token).send().await;
        match resp {
            Ok(r) => Ok(Reply::from(r).await),
            Err(e) => Err(e.to_string()),
        }
    });
    // In flight means at the upstream: a request still connecting when the listener closes is
    // refused, not drained, so no fixed wait can stand in for this.
    tokio::time::timeout(DEADLINE, arrived).await.expect("the request reaches the upstream").expect("arrived");
    gw.signal("-TERM");

    // New connections are refused once the listener is closed, while the request is still held.
    let data_addr = gw.data_addr;
    eventually("the data-plane listener to refuse new connections", || async move {
        match tokio::net::TcpStream::connect(data_addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    })
    .await;

    let _ = release.send(());
    let r = in_flight.await.expect("task").unwrap_or_else(|e| panic!("the in-flight request failed: {e}"));
    assert_eq!((r.status, r.body.as_str()), (200, "held"), "the in-flight request completes");
    let status = gw.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "exit status after SIGTERM: {status}; stderr:\n{}", gw.logs().join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Revocations
// ---------------------------------------------------------------------------------------------

/// Revocations by session, user and issued_before apply at once and hold across a restart;
/// DELETE lifts one.
#[tokio::test]
async fn revocations_hold_across_a_restart() {
    let up = support::upstream().await;
    let text = binary_config(up).text();
    let gw = BinaryGateway::start(&text, &[]);
    let before_cut = token_for("user_x", "sess_x"); // issued before the issued_before cut-off

    let r = gw.admin("POST", "/revocations", Some(json!({"session_id": "sess_a"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = gw.get("/api/orders", Some(&token_for("user_a", "sess_a"))).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.reason(), Some("session-revoked"));
    assert_eq!(
        gw.get("/api/orders", Some(&token_for("user_a", "sess_other"))).await.status,
        200,
        "other sessions pass"
    );

    let r = gw.admin("POST", "/revocations", Some(json!({"user_id": "user_b"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for sid in ["sess_b1", "sess_b2"] {
        let r = gw.get("/api/orders", Some(&token_for("user_b", sid))).await;
        assert_eq!(r.status, 401, "user_b's session {sid}: {}", r.body);
        assert_eq!(r.reason(), Some("session-revoked"));
    }
    assert_eq!(gw.get("/api/orders", Some(&token_for("user_c", "sess_c"))).await.status, 200);

    assert_eq!(gw.get("/api/orders", Some(&before_cut)).await.status, 200, "before the cut-off is set");
    let r = gw.admin("POST", "/revocations", Some(json!({"issued_before": "now"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = gw.get("/api/orders", Some(&before_cut)).await;
    assert_eq!(r.status, 401, "a token issued before the cut-off: {}", r.body);
    assert_eq!(r.reason(), Some("session-revoked"));
    // Let the clock pass the next whole second so a new token's iat is after the cut-off.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = gw.get("/api/orders", Some(&token_for("user_x", "sess_x"))).await;
    assert_eq!(r.status, 200, "a token minted after the cut-off: {}", r.body);

    let dir = gw.dir.clone();
    gw.stop().await;
    let gw = BinaryGateway::start_in(dir, &text, &[]);

    // Fresh tokens (iat after the cut-off): only the session and user entries can refuse them.
    let r = gw.get("/api/orders", Some(&token_for("user_a", "sess_a"))).await;
    assert_eq!((r.status, r.reason()), (401, Some("session-revoked")), "session revocation after restart");
    let r = gw.get("/api/orders", Some(&token_for("user_b", "sess_b3"))).await;
    assert_eq!((r.status, r.reason()), (401, Some("session-revoked")), "user revocation after restart");
    let r = gw.get("/api/orders", Some(&before_cut)).await;
    assert_eq!((r.status, r.reason()), (401, Some("session-revoked")), "issued_before after restart");
    assert_eq!(gw.get("/api/orders", Some(&token_for("user_x", "sess_x"))).await.status, 200);

    let r = gw.admin("GET", "/revocations", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let list = r.json();
    assert!(list["sessions"].get("sess_a").is_some(), "{list}");
    assert!(list["users"].get("user_b").is_some(), "{list}");
    assert!(list["issued_before"].is_string(), "{list}");

    let r = gw.admin("DELETE", "/revocations/sess_a", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = gw.get("/api/orders", Some(&token_for("user_a", "sess_a"))).await;
    assert_eq!(r.status, 200, "lifted: {}", r.body);
    let r = gw.get("/api/orders", Some(&token_for("user_b", "sess_b4"))).await;
    assert_eq!(r.status, 401, "the user entry still holds");
    let r = gw.admin("DELETE", "/revocations/sess_a", None).await;
    assert_eq!(r.status, 404, "lifting it twice: {}", r.body);
}

// ---------------------------------------------------------------------------------------------
// The admin guard (T25)
// ---------------------------------------------------------------------------------------------

/// A raw admin request with a chosen `Host` (reqwest always sends the real one).
async fn raw_admin(gw: &BinaryGateway, method: &str, path: &str, host: &str, body: &str) -> raw::RawReply {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw::send(gw.admin_addr, req.as_bytes()).await
}

/// T25: no token, a wrong token, a foreign Host, a foreign Origin, `Sec-Fetch-Site: cross-site`,
/// the data-plane port, and a gateway with no admin token: all refused, mode never changes.
#[tokio::test]
async fn admin_calls_are_refused_without_the_right_token_or_from_a_foreign_site() {
    let gw = start(|c| c).await;
    let bypass = json!({"mode": "bypass", "reason": "attack", "ttl": "5m"});
    let put = || support::client().put(gw.admin_url("/mode")).json(&bypass);

    let r = Reply::from(put().send().await.expect("request")).await;
    assert_eq!(r.status, 401, "no token: {}", r.body);
    let r = Reply::from(put().bearer_auth("wrong-token-0123456789").send().await.expect("request")).await;
    assert_eq!(r.status, 401, "wrong token: {}", r.body);
    let r = Reply::from(put().bearer_auth(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]).send().await.expect("request")).await;
    assert_eq!(r.status, 401, "a prefix of the token: {}", r.body);
    let r = Reply::from(put().header("authorization", ADMIN_TOKEN).send().await.expect("request")).await;
    assert_eq!(r.status, 401, "the token without the Bearer scheme: {}", r.body);
    let r = Reply::from(support::client().get(gw.admin_url("/status")).send().await.expect("request")).await;
    assert_eq!(r.status, 401, "GET /status without a token: {}", r.body);

    let body = bypass.to_string();
    for host in ["evil.example.com", "evil.example.com:80", &format!("evil.example.com:{}", gw.admin_addr.port())] {
        let r = raw_admin(&gw, "PUT", "/mode", host, &body).await;
        assert_eq!(r.status, 403, "foreign Host {host:?} with the right token: {}", r.body);
    }
    let r = Reply::from(
        put().bearer_auth(ADMIN_TOKEN).header("origin", "http://evil.example.com").send().await.expect("request"),
    )
    .await;
    assert_eq!(r.status, 403, "foreign Origin with the right token: {}", r.body);
    let r = Reply::from(put().bearer_auth(ADMIN_TOKEN).header("origin", "null").send().await.expect("request")).await;
    assert_eq!(r.status, 403, "Origin: null with the right token: {}", r.body);
    let r = Reply::from(
        put().bearer_auth(ADMIN_TOKEN).header("sec-fetch-site", "cross-site").send().await.expect("request"),
    )
    .await;
    assert_eq!(r.status, 403, "Sec-Fetch-Site: cross-site with the right token: {}", r.body);

    // The data-plane port does not serve the admin API: /mode there is just a protected route.
    let r = Reply::from(
        support::client().put(gw.url("/mode")).bearer_auth(ADMIN_TOKEN).json(&bypass).send().await.expect("request"),
    )
    .await;
    assert_eq!(r.status, 401, "PUT /mode on the data plane is proxied and refused: {}", r.body);
    let r = gw.get("/mode", None).await;
    assert_eq!(r.status, 401, "GET /mode on the data plane: {}", r.body);

    let m = get_mode(&gw).await;
    assert_eq!(m["mode"], "enforce", "no refused call changed the mode: {m}");
    assert!(file_events(&gw, "mode.set").is_empty(), "{:?}", gw.audit_file());
    // And the legitimate call from the same client still works (the refusals were not blanket).
    assert_eq!(put().bearer_auth(ADMIN_TOKEN).send().await.expect("request").status(), 200);

    // No admin token configured: every guarded endpoint is 403; the open ones stay open.
    let up = support::upstream().await;
    let open = BinaryGateway::start(&binary_config(up).no_admin_token().text(), &[]);
    let r = open.admin("PUT", "/mode", Some(bypass.clone())).await;
    assert_eq!(r.status, 403, "PUT /mode without a configured admin token: {}", r.body);
    let r =
        Reply::from(support::client().put(open.admin_url("/mode")).json(&bypass).send().await.expect("request")).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(open.admin("GET", "/mode", None).await.status, 403);
    for path in ["/healthz", "/metrics"] {
        let r = Reply::from(support::client().get(open.admin_url(path)).send().await.expect("request")).await;
        assert_eq!(r.status, 200, "{path} stays open: {}", r.body);
    }
    assert_eq!(open.get("/api/orders", None).await.status, 401, "still enforcing");
}

// ---------------------------------------------------------------------------------------------
// Audit, status, metrics
// ---------------------------------------------------------------------------------------------

/// Every mutation is one audit line with time, actor, action, before/after and reason; admin
/// actors are token ids, never the token.
#[tokio::test]
async fn every_mutation_is_audited_with_a_token_id_never_the_token() {
    let up = support::upstream().await;
    let cfg = binary_config(up);
    let gw = BinaryGateway::start(&cfg.text(), &[]);

    let r = put_mode(&gw, json!({"mode": "bypass", "reason": "audit drill", "ttl": "5m"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = put_mode(&gw, json!({"mode": "enforce"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    gw.write_config(&cfg.clone().routes(&routes_with_public(&["/audited"])).text());
    assert_eq!(gw.admin("POST", "/reload", None).await.status, 200);
    gw.write_config(&support::with_keys(&cfg.text(), "server", "bogus_key = 1"));
    assert_eq!(gw.admin("POST", "/reload", None).await.status, 422);
    let r =
        gw.admin("POST", "/revocations", Some(json!({"session_id": "sess_audit", "reason": "stolen laptop"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(gw.admin("DELETE", "/revocations/sess_audit", None).await.status, 200);

    let events = gw.audit_file();
    let expected = [
        ("mode.set", "audit drill"),
        ("mode.cleared", ""),
        ("config.reload", ""),
        ("config.reload_failed", ""),
        ("revocation.add", "stolen laptop"),
        ("revocation.remove", ""),
    ];
    for (action, reason) in expected {
        let matching: Vec<&Value> = events.iter().filter(|e| e["action"] == action).collect();
        assert_eq!(matching.len(), 1, "exactly one {action} event: {events:#?}");
        let e = matching[0];
        let time = e["time"].as_str().unwrap_or_else(|| panic!("{action}: no time: {e}"));
        assert!(humantime::parse_rfc3339_weak(time).is_ok(), "{action}: time {time:?} is not RFC 3339");
        let actor = e["actor"].as_str().unwrap_or_default();
        assert!(is_admin_actor(actor), "{action}: actor {actor:?} must be admin:<8 hex>");
        assert!(e.get("before").is_some() && e.get("after").is_some(), "{action}: before/after: {e}");
        assert_eq!(e["reason"].as_str(), Some(reason), "{action}: reason: {e}");
    }
    let set = events.iter().find(|e| e["action"] == "mode.set").expect("mode.set");
    assert_eq!((set["before"]["mode"].as_str(), set["after"]["mode"].as_str()), (Some("enforce"), Some("bypass")));
    assert!(set["after"]["expires_at_ms"].is_i64(), "the TTL is audited: {set}");
    let cleared = events.iter().find(|e| e["action"] == "mode.cleared").expect("mode.cleared");
    assert_eq!(
        (cleared["before"]["mode"].as_str(), cleared["after"]["mode"].as_str()),
        (Some("bypass"), Some("enforce"))
    );
    let actors: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|e| expected.iter().any(|(a, _)| e["action"] == *a))
        .filter_map(|e| e["actor"].as_str())
        .collect();
    assert_eq!(actors.len(), 1, "one token, one id: {actors:?}");

    let file = std::fs::read_to_string(gw.state_dir().join("audit.jsonl")).expect("audit.jsonl");
    assert!(!file.contains(ADMIN_TOKEN), "the admin token appears in audit.jsonl");
    assert!(!file.contains("test-admin-token"), "part of the admin token appears in audit.jsonl");
    assert!(!gw.logs().iter().any(|l| l.contains(ADMIN_TOKEN)), "the admin token appears in the gateway's log");
    let api: Vec<Value> =
        gw.admin("GET", "/audit", None).await.json()["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(api.len(), events.len(), "GET /audit returns the same events as the file");
}

/// /status carries mode, config, keys, revocation counts and counters by reason.
#[tokio::test]
async fn status_reports_mode_config_keys_revocations_and_counters() {
    let gw = start(|c| c).await;
    for _ in 0..3 {
        assert_eq!(gw.get("/api/orders", None).await.status, 401);
    }
    assert_eq!(gw.get("/api/orders", Some(&support::token())).await.status, 200);
    let r = gw.admin("POST", "/revocations", Some(json!({"session_id": "sess_s1"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = gw.admin("POST", "/revocations", Some(json!({"user_id": "user_s1"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = put_mode(&gw, json!({"mode": "bypass", "reason": "status drill", "ttl": "5m"})).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let s = status(&gw).await;
    let m = &s["mode"];
    assert_eq!(
        (m["mode"].as_str(), m["source"].as_str(), m["reason"].as_str()),
        (Some("bypass"), Some("admin"), Some("status drill")),
        "{s:#}"
    );
    let left = m["seconds_left"].as_i64().unwrap_or_else(|| panic!("no mode.seconds_left: {s:#}"));
    assert!(left > 0 && left <= 300, "seconds_left {left}");

    let c = &s["config"];
    assert_eq!(c["path"].as_str(), Some(gw.config_path().display().to_string().as_str()), "{s:#}");
    assert!(c["loaded_at"].as_str().is_some_and(|t| humantime::parse_rfc3339_weak(t).is_ok()), "{s:#}");
    assert!(c["hash"].as_str().is_some_and(|h| !h.is_empty()), "{s:#}");

    assert!(s["keys"].is_object(), "{s:#}");
    assert_eq!(s["keys"]["networkless_key"], true, "{s:#}");

    assert_eq!(s["revocations"]["sessions"], 1, "{s:#}");
    assert_eq!(s["revocations"]["users"], 1, "{s:#}");

    let missing = s["counters"]["rejected"]["session-token-missing"].as_u64().unwrap_or(0);
    assert!(missing >= 3, "counters.rejected[session-token-missing] = {missing}: {s:#}");
    assert!(s["counters"]["signed_in"].as_u64().unwrap_or(0) >= 1, "{s:#}");
}

/// /metrics is open and exports request totals, the mode gauge and reloads.
#[tokio::test]
async fn metrics_are_open_and_export_requests_mode_and_reloads() {
    let gw = start(|c| c).await;
    assert_eq!(gw.get("/api/orders", None).await.status, 401);
    assert_eq!(gw.get("/api/orders", Some(&support::token())).await.status, 200);
    let scrape = || async {
        let r = Reply::from(support::client().get(gw.admin_url("/metrics")).send().await.expect("metrics")).await;
        assert_eq!(r.status, 200, "/metrics needs no token: {}", r.body);
        r.body
    };
    let text = scrape().await;
    assert!(text.contains("clerkgate_requests_total"), "{text}");
    assert!(text.lines().any(|l| l == "clerkgate_mode{mode=\"enforce\"} 1"), "{text}");

    let r = put_mode(&gw, json!({"mode": "bypass", "reason": "metrics drill", "ttl": "5m"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(gw.get("/api/orders", None).await.status, 200);
    let text = scrape().await;
    assert!(text.lines().any(|l| l == "clerkgate_mode{mode=\"bypass\"} 1"), "{text}");
    assert!(text.lines().any(|l| l == "clerkgate_mode{mode=\"enforce\"} 0"), "{text}");
    assert!(text.contains("clerkgate_bypassed_requests_total"), "bypassed requests are counted: {text}");

    assert_eq!(gw.admin("POST", "/reload", None).await.status, 200);
    let text = scrape().await;
    assert!(text.lines().any(|l| l.starts_with("clerkgate_config_reloads_total") && l.ends_with(" 1")), "{text}");
}

/// Runs the real CLI binary with only PATH and the given variables.
fn cli(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_clerkgate"));
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the clerkgate CLI")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_drives_the_admin_api_and_says_what_went_wrong() {
    let gw = start(|c| c).await;
    let admin = format!("http://{}", gw.admin_addr);
    let token = [("CLERKGATE_ADMIN_TOKEN", support::ADMIN_TOKEN)];

    let out = cli(&["mode", "bypass", "--reason", "cli drill", "--ttl", "5m", "--admin", &admin], &token);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mode bypass") && text.contains("cli drill"), "{text}");
    assert_eq!(get_mode(&gw).await["mode"], "bypass");

    let out = cli(&["status", "--json", "--admin", &admin], &token);
    assert!(out.status.success());
    let status: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    assert_eq!(status["mode"]["reason"], "cli drill");

    let out = cli(&["revoke", "--session", "sess_cli", "--admin", &admin], &token);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 session(s)"));

    // A bypass without a reason is refused by the gateway, and the CLI exits non-zero.
    let out = cli(&["mode", "grace", "--admin", &admin], &token);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reason"));

    let out = cli(&["mode", "enforce", "--admin", &admin], &[("CLERKGATE_ADMIN_TOKEN", "wrong")]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused the token"));
    assert_eq!(get_mode(&gw).await["mode"], "bypass", "a refused call changes nothing");

    let out = cli(&["status", "--admin", "http://127.0.0.1:1"], &token);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the admin API"));
}
