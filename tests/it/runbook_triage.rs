//! Issue #13 item 2: `clerkgate triage` through the real binary, against the real binary as the
//! gateway, a stand-in Clerk (status page as Statuspage v2 JSON, clerk-ops §6, and the Frontend
//! API's health and JWKS) and the stand-in Backend API (`support::bapi`). One scenario per
//! category of clerk-ops §8.4's table (and clerkgate's `authorized-parties` and `clock-skew`),
//! the gateway's counters set up by sending it the requests that produce the reasons; and a run
//! where every remote hangs, which still ends and names the probes that timed out.
//!
//! The scenarios that need time to pass (a webhook gap, a key set gone stale) run the gateway
//! in-process with a manual clock, and the real CLI against its admin API and config file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use serde_json::{json, Value};

use clerkgate::clock::Clock;

use crate::support::bapi::{Bapi, Fault};
use crate::support::jwks::{JwksReply, JwksServer};
use crate::support::{self, BinaryGateway, TestGateway, KID};

const SECRET: &str = "sk_test_standin_0123456789abcdef";
const APP: &str = "https://app.example.com";
/// A development publishable key (`clerk.example.com$`); `clerk.frontend_api` points the
/// Frontend API at the stand-in.
const PUBLISHABLE: &str = "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k";

/// The stand-in Clerk: `summary.json` (any path but the Frontend API's), `/v1/health`,
/// `/.well-known/jwks.json`; or silence.
#[derive(Default)]
struct Page {
    indicator: String,
    component: (String, String),
    hang: bool,
    /// What the Frontend API's JWKS serves (default: [`support::key`] under [`KID`]).
    fapi_jwks: Option<Value>,
}

async fn clerk_standin(page: Page) -> (SocketAddr, Arc<Mutex<Page>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = Arc::new(Mutex::new(page));
    support::serve(listener, state.clone(), |state: Arc<Mutex<Page>>, req| async move {
        let (hang, body) = {
            let p = state.lock().unwrap();
            let body = match req.uri().path() {
                "/v1/health" => json!({"status": "healthy"}),
                "/.well-known/jwks.json" => p.fapi_jwks.clone().unwrap_or_else(|| support::key().jwks(KID)),
                _ => json!({
                    "page": {"id": "clerk", "name": "Clerk", "url": "https://status.clerk.com"},
                    "status": {"indicator": p.indicator, "description": "stand-in"},
                    "components": [
                        {"id": "c1", "name": "Session management", "status": "operational"},
                        {"id": "c2", "name": p.component.0, "status": p.component.1},
                    ],
                    "incidents": [],
                }),
            };
            (p.hang, body)
        };
        if hang {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        http::Response::builder()
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("response")
    });
    (addr, state)
}

fn healthy_page() -> Page {
    Page { indicator: "none".into(), component: ("Webhooks".into(), "operational".into()), ..Page::default() }
}

/// Everything one scenario runs against.
struct Scene {
    bapi: Bapi,
    page: Arc<Mutex<Page>>,
    gw: BinaryGateway,
}

/// The real gateway with the networkless key, the stand-in Backend API's secret key and
/// JWKS, `authorized_parties = [APP]`, Clerk's status page and Frontend API on the stand-in,
/// in front of `upstream`.
async fn scene(page: Page, upstream: SocketAddr) -> Scene {
    let clerk = standins(page).await;
    let text = support::binary_config(upstream).text().replacen("[clerk]\n", &format!("[clerk]\n{}", clerk.lines), 1);
    let gw = tokio::task::spawn_blocking(move || BinaryGateway::start(&text, &[])).await.expect("start");
    Scene { bapi: clerk.bapi, page: clerk.page, gw }
}

/// The stand-in Backend API, status page and Frontend API, and the `[clerk]` lines that point
/// at them (the publishable key, the secret key, `authorized_parties = [APP]`).
struct Standins {
    bapi: Bapi,
    page: Arc<Mutex<Page>>,
    lines: String,
}

async fn standins(page: Page) -> Standins {
    let bapi = Bapi::start(SECRET, support::key().jwks(KID), 3, |_| vec!["active"]).await;
    let (clerk, page) = clerk_standin(page).await;
    let lines = format!(
        "publishable_key = {}\nsecret_key = {}\napi_url = {}\nstatus_url = {}\nfrontend_api = {}\nauthorized_parties = [{}]\n",
        support::toml_str(PUBLISHABLE),
        support::toml_str(SECRET),
        support::toml_str(&bapi.url()),
        support::toml_str(&format!("http://{clerk}/api/v2/status.json")),
        support::toml_str(&format!("http://{clerk}")),
        support::toml_str(APP),
    );
    Standins { bapi, page, lines }
}

/// `clerkgate triage --json` with the gateway's config and admin address, bounded by a
/// generous timeout (the command's own deadline is 6 s).
async fn triage(gw: &BinaryGateway, config: Option<&str>) -> (Output, Value) {
    let dir = gw.dir.path().to_path_buf();
    triage_with(dir.clone(), dir.join("clerkgate.toml"), config, gw.admin_addr).await
}

/// `clerkgate triage --json` against an in-process gateway, with its config file or `config`.
async fn triage_in_process(gw: &TestGateway, config: Option<&str>) -> (Output, Value) {
    let dir = gw.config_path.parent().expect("config dir").to_path_buf();
    triage_with(dir, gw.config_path.clone(), config, gw.running().admin_addr).await
}

/// Triage run in `dir` with the config file `own`, or `text` written beside it.
async fn triage_with(dir: PathBuf, own: PathBuf, text: Option<&str>, admin: SocketAddr) -> (Output, Value) {
    let config = match text {
        Some(text) => {
            let path = dir.join("triage.toml");
            std::fs::write(&path, text).expect("write config");
            path
        }
        None => own,
    };
    let admin = admin.to_string();
    let run = tokio::task::spawn_blocking(move || {
        let config = config.display().to_string();
        support::cli_in(&dir, &["triage", "--json", "--config", &config, "--admin", &admin], &[])
    });
    let out = tokio::time::timeout(Duration::from_secs(60), run).await.expect("triage returned").expect("cli");
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}):\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (out, value)
}

/// Sends `n` requests with `token` to a protected path.
async fn send(gw: &BinaryGateway, token: &str, n: usize) {
    let client = support::client();
    for _ in 0..n {
        let _ = client.get(format!("http://{}/private", gw.data_addr)).bearer_auth(token).send().await;
    }
}

fn expect(value: &Value, out: &Output, category: &str, severity: &str, code: i32) {
    assert_eq!(value["category"], category, "{value:#}");
    assert_eq!(value["severity"], severity, "{value:#}");
    assert_eq!(out.status.code(), Some(code), "{value:#}");
    assert!(value["next"].as_str().is_some_and(|n| !n.is_empty()), "a next command: {value:#}");
}

/// The triage record in the gateway's audit log, as the incident report reads it.
async fn recorded(gw: &BinaryGateway) -> Vec<Value> {
    let resp = support::client()
        .get(format!("http://{}/audit", gw.admin_addr))
        .bearer_auth(support::ADMIN_TOKEN)
        .send()
        .await
        .expect("audit");
    let v: Value = resp.json().await.expect("audit json");
    v["events"].as_array().cloned().unwrap_or_default().into_iter().filter(|e| e["action"] == "triage.run").collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_when_everything_answers_and_the_run_is_audited() {
    let s = scene(healthy_page(), support::upstream().await).await;
    send(
        &s.gw,
        &support::sign(&support::claims_at(support::now_s(), |c| {
            c.insert("azp".into(), json!(APP));
        })),
        3,
    )
    .await;
    let (out, v) = triage(&s.gw, None).await;
    expect(&v, &out, "healthy", "none", 0);
    let probes = v["probes"].as_array().expect("probes");
    assert_eq!(probes.len(), 7);
    assert!(probes.iter().all(|p| p["state"] == "ok"), "{v:#}");
    assert!(probes.iter().all(|p| p["latency_ms"].is_u64()), "each probe has its latency: {v:#}");
    let records = recorded(&s.gw).await;
    assert_eq!(records.len(), 1, "one triage.run record");
    assert_eq!(records[0]["after"]["category"], "healthy");
    assert_eq!(records[0]["after"]["severity"], "none");
}

#[tokio::test(flavor = "multi_thread")]
async fn clerk_outage_from_the_status_page_and_from_a_failing_backend_api() {
    let s = scene(
        Page {
            indicator: "major".into(),
            component: ("User and authentication".into(), "major_outage".into()),
            ..Page::default()
        },
        support::upstream().await,
    )
    .await;
    let (out, v) = triage(&s.gw, None).await;
    expect(&v, &out, "clerk-outage", "SEV2", 12);
    let records = recorded(&s.gw).await;
    assert_eq!(records.last().expect("recorded")["after"]["category"], "clerk-outage");

    *s.page.lock().unwrap() = healthy_page();
    s.bapi.fault(Fault::Status(503));
    let (out, v) = triage(&s.gw, None).await;
    expect(&v, &out, "clerk-outage", "SEV2", 12);
    assert!(v["why"].as_str().unwrap().contains("Backend API"), "{v:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_invalid_when_the_backend_api_refuses_the_key() {
    let s = scene(healthy_page(), support::upstream().await).await;
    let text = std::fs::read_to_string(s.gw.dir.path().join("clerkgate.toml")).expect("config");
    let wrong = text.replace(SECRET, "sk_test_revoked_key_000000000000");
    let (out, v) = triage(&s.gw, Some(&wrong)).await;
    expect(&v, &out, "credential-invalid", "SEV2", 12);
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_key_change_when_clerk_serves_kids_the_gateway_does_not_hold() {
    let s = scene(healthy_page(), support::upstream().await).await;
    s.bapi.set_jwks(support::other_key().jwks("ins_rotated_key"));
    let (out, v) = triage(&s.gw, None).await;
    expect(&v, &out, "signing-key-change", "SEV2", 12);
    // Either the gateway still holds the old kid, or its own refresh already took the new one
    // and only the Frontend API (its JWKS unchanged here) disagrees: a key change either way.
    let why = v["why"].as_str().unwrap();
    assert!(why.contains("ins_rotated_key") || why.contains("different kids"), "{v:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn clerk_rate_limited_and_clerk_degraded() {
    let s = scene(healthy_page(), support::upstream().await).await;
    s.bapi.rate_limit_every(1, "30");
    let (out, v) = triage(&s.gw, None).await;
    expect(&v, &out, "clerk-rate-limited", "SEV3", 13);

    s.bapi.rate_limit_every(0, "1");
    *s.page.lock().unwrap() = Page {
        indicator: "minor".into(),
        component: ("Webhooks".into(), "degraded_performance".into()),
        ..Page::default()
    };
    let (out, v) = triage(&s.gw, None).await;
    expect(&v, &out, "clerk-degraded", "SEV3", 13);
}

#[tokio::test(flavor = "multi_thread")]
async fn authorized_parties_from_a_spike_of_wrong_azp() {
    let s = scene(healthy_page(), support::upstream().await).await;
    let claims = support::claims_at(support::now_s(), |c| {
        c.insert("azp".into(), json!("https://new.example.com"));
    });
    send(&s.gw, &support::sign(&claims), 6).await;
    let (out, v) = triage(&s.gw, None).await;
    expect(&v, &out, "authorized-parties", "SEV2", 12);
    assert!(v["next"].as_str().unwrap().contains("clerk.authorized_parties"), "{v:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn clock_skew_from_a_spike_of_expired_tokens() {
    let s = scene(healthy_page(), support::upstream().await).await;
    let claims = support::claims_at(support::now_s() - 3600, |c| {
        c.insert("azp".into(), json!(APP));
    });
    send(&s.gw, &support::sign(&claims), 6).await;
    let (out, v) = triage(&s.gw, None).await;
    expect(&v, &out, "clock-skew", "SEV2", 12);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_outage_when_the_upstream_fails_and_clerk_is_fine() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let s = scene(healthy_page(), closed).await;
    let claims = support::claims_at(support::now_s(), |c| {
        c.insert("azp".into(), json!(APP));
    });
    send(&s.gw, &support::sign(&claims), 3).await;
    let (out, v) = triage(&s.gw, None).await;
    expect(&v, &out, "upstream-outage", "SEV2", 12);
    let p7 = &v["probes"][6];
    assert_eq!((p7["id"].as_str(), p7["state"].as_str()), (Some("P7"), Some("fail")), "{v:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_remote_probe_hanging_still_ends_and_names_the_timeouts() {
    // An upstream that takes the connection and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let s = scene(healthy_page(), silent_addr).await;
    s.page.lock().unwrap().hang = true;
    s.bapi.fault(Fault::Slow(Duration::from_secs(3600)));

    let (out, v) = triage(&s.gw, None).await;
    let timed_out: Vec<&str> = v["timed_out"].as_array().expect("timed_out").iter().filter_map(Value::as_str).collect();
    assert_eq!(timed_out, ["P1", "P2", "P3", "P4", "P5", "P7"], "{v:#}");
    assert_eq!(v["probes"][5]["state"], "ok", "the gateway itself answered: {v:#}");
    expect(&v, &out, "clerk-outage", "SEV2", 12);
    assert!(v["recorded"].as_str().unwrap().contains("audit log"), "{v:#}");
}

/// `POST /audit` takes a runbook command's own actions (`triage.run`, `revocation.remote`) and
/// refuses the gateway's (`mode.set`), which only the change they record may write: the one
/// audit-only control message serves both, the whitelist stands where the API takes the call.
#[tokio::test]
async fn post_audit_takes_runbook_records_only() {
    let gw = support::gateway().jwt_key().start().await;
    let r = gw.admin("POST", "/audit", Some(json!({"action": "mode.set", "after": {"mode": "bypass"}}))).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.json()["message"].as_str().unwrap().contains("gateway's own record"), "{}", r.body);
    assert!(gw.audited("mode.set").await.is_empty(), "a refused record is not written");

    let r = gw
        .admin(
            "POST",
            "/audit",
            Some(json!({"action": "triage.run", "after": {"category": "healthy"}, "reason": "drill"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let records = gw.audited("triage.run").await;
    assert_eq!((records.len(), records[0]["reason"].as_str()), (1, Some("drill")), "{records:?}");
    gw.stop().await;
}

const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const WEBHOOK_PATH: &str = "/api/webhooks/clerk";
const HOUR_MS: i64 = 3_600_000;

/// Posts a Clerk event to the webhook route, signed with `secret` at the gateway's time.
async fn deliver(gw: &TestGateway, secret: &str, id: &str) -> u16 {
    let now_ms = gw.clock.now_ms();
    let body = json!({"type": "user.updated", "object": "event", "data": {"id": "user_1"}, "timestamp": now_ms});
    let body = body.to_string();
    let ts = now_ms / 1000;
    let sig = clerkgate::webhooks::svix::sign(secret, id, ts, body.as_bytes()).expect("a signing secret");
    let resp = support::client()
        .post(gw.url(WEBHOOK_PATH))
        .header("svix-id", id)
        .header("svix-timestamp", ts.to_string())
        .header("svix-signature", sig)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post the webhook");
    resp.status().as_u16()
}

/// §8.4's `webhook-gap`: no verified delivery for longer than `clerk.webhook_gap_window` while
/// the status page has Webhooks operational is SEV3, from the journal's last delivery by the
/// gateway's clock; then signature failures, SEV3 at first and SEV2 once they have lasted a day.
#[tokio::test(flavor = "multi_thread")]
async fn webhook_gap_when_no_delivery_came_within_the_window() {
    let clerk = standins(healthy_page()).await;
    let clock = Clock::manual(Clock::system().now_ms());
    let gw = support::gateway()
        .jwt_key()
        .clock(clock.clone())
        .clerk(&format!("{}webhook_signing_secret = {}", clerk.lines, support::toml_str(WEBHOOK_SECRET)))
        .section("[[routes.rule]]", &format!("path = \"{WEBHOOK_PATH}\"\nwebhook = \"clerk\""))
        .start()
        .await;
    assert_eq!(deliver(&gw, WEBHOOK_SECRET, "msg_gap_1").await, 200);
    let (out, v) = triage_in_process(&gw, None).await;
    expect(&v, &out, "healthy", "none", 0);
    let status = gw.admin("GET", "/status", None).await.json();
    let w = &status["webhooks"];
    assert_eq!((w["route"].as_bool(), w["events"].as_u64()), (Some(true), Some(1)), "{w}");
    assert!(w["last_verified_at"].is_string(), "{w}");
    assert_eq!(w["gap_window_seconds"], 86_400, "the default window is a day: {w}");

    // A day and an hour later, nothing more has come while Clerk's Webhooks are operational.
    clock.advance_ms(25 * HOUR_MS);
    let (out, v) = triage_in_process(&gw, None).await;
    expect(&v, &out, "webhook-gap", "SEV3", 13);
    assert!(v["why"].as_str().unwrap().contains("no verified webhook for 1day 1h"), "{v:#}");
    assert!(v["probes"][5]["detail"].as_str().unwrap().contains("webhooks: last verified"), "{v:#}");

    // A delivery signed with another secret: the failures are the gap now, SEV3 for a day…
    assert_eq!(deliver(&gw, "whsec_b3RoZXItc2VjcmV0LW9mLTMyLWJ5dGVzLi4uLi4=", "msg_gap_2").await, 400);
    let (out, v) = triage_in_process(&gw, None).await;
    expect(&v, &out, "webhook-gap", "SEV3", 13);
    assert!(v["why"].as_str().unwrap().contains("1 webhooks refused"), "{v:#}");
    // …then SEV2: Svix disables the endpoint after five days of failures.
    clock.advance_ms(25 * HOUR_MS);
    let (out, v) = triage_in_process(&gw, None).await;
    expect(&v, &out, "webhook-gap", "SEV2", 12);
    gw.stop().await;
}

/// §8.4's `gateway-fault` through the running gateway: its key set went stale while its JWKS
/// fails (the Backend API itself answering), so it has no usable keys; SEV2.
#[tokio::test(flavor = "multi_thread")]
async fn gateway_fault_when_the_key_set_is_stale_and_fetching_fails() {
    let clerk = standins(healthy_page()).await;
    let clock = Clock::manual(Clock::system().now_ms());
    let jwks = JwksServer::start(JwksReply::Json(support::key().jwks(KID))).await;
    let gw = support::gateway().jwks(&jwks).clock(clock.clone()).clerk(&clerk.lines).start().await;
    support::eventually("the gateway to load its keys", Duration::from_secs(10), || async {
        (gw.admin("GET", "/status", None).await.json()["ready"] == true).then_some(())
    })
    .await;
    let (out, v) = triage_in_process(&gw, None).await;
    expect(&v, &out, "healthy", "none", 0);

    jwks.set(JwksReply::Status(503, "{\"error\":\"outage\"}".into()));
    clock.advance_ms(25 * HOUR_MS);
    let refresh = gw.admin("POST", "/keys/refresh", None).await;
    assert_ne!(refresh.status, 200, "the JWKS fails: {}", refresh.body);
    let (out, v) = triage_in_process(&gw, None).await;
    expect(&v, &out, "gateway-fault", "SEV2", 12);
    assert!(v["why"].as_str().unwrap().contains("stale and fetching fails"), "{v:#}");
    gw.stop().await;
}

/// P6's clock check: the Backend API's `Date` 30 s ahead of this host is a `gateway-fault`,
/// and the offset is in the output (`clock_offset_ms`, and P4's line).
#[tokio::test(flavor = "multi_thread")]
async fn gateway_fault_when_the_clock_is_off_from_the_backend_api() {
    let clerk = standins(healthy_page()).await;
    let gw = support::gateway().jwt_key().clerk(&clerk.lines).start().await;
    let (out, v) = triage_in_process(&gw, None).await;
    expect(&v, &out, "healthy", "none", 0);
    assert!(v["clock_offset_ms"].as_i64().is_some_and(|ms| ms.abs() < 5_000), "{v:#}");

    clerk.bapi.shift_date(30);
    let (out, v) = triage_in_process(&gw, None).await;
    expect(&v, &out, "gateway-fault", "SEV2", 12);
    let offset = v["clock_offset_ms"].as_i64().expect("an offset");
    assert!((-31_500..=-28_500).contains(&offset), "this host is 30 s behind Clerk: {v:#}");
    assert!(v["probes"][3]["detail"].as_str().unwrap().contains("clock offset -"), "{v:#}");
    assert!(v["next"].as_str().unwrap().starts_with("chronyc"), "{v:#}");
    gw.stop().await;
}

/// A gateway on a pinned `clerk.jwt_key` alone holds no kids to compare: triage compares the
/// PEM's key with the Backend API's, and one Clerk no longer serves is a signing-key-change.
#[tokio::test(flavor = "multi_thread")]
async fn signing_key_change_when_clerk_no_longer_serves_the_pinned_key() {
    let clerk = standins(healthy_page()).await;
    // The gateway verifies with the PEM alone; triage also has the secret key.
    let gw = support::gateway()
        .jwt_key()
        .clerk(&format!("publishable_key = {}", support::toml_str(PUBLISHABLE)))
        .start()
        .await;
    let own = std::fs::read_to_string(&gw.config_path).expect("config");
    let with_key = own.replacen(&format!("publishable_key = {}\n", support::toml_str(PUBLISHABLE)), &clerk.lines, 1);
    assert_ne!(own, with_key);
    let (out, v) = triage_in_process(&gw, Some(&with_key)).await;
    expect(&v, &out, "healthy", "none", 0);
    assert!(v["probes"][3]["detail"].as_str().unwrap().contains("serves the pinned clerk.jwt_key"), "{v:#}");

    // Clerk rotated: both its APIs serve another key; the PEM is not among them.
    let rotated = support::other_key().jwks("ins_rotated_key");
    clerk.bapi.set_jwks(rotated.clone());
    clerk.page.lock().unwrap().fapi_jwks = Some(rotated);
    let (out, v) = triage_in_process(&gw, Some(&with_key)).await;
    expect(&v, &out, "signing-key-change", "SEV2", 12);
    assert!(v["why"].as_str().unwrap().contains("pinned clerk.jwt_key"), "{v:#}");
    gw.stop().await;
}

/// A 429 from the Backend API while a `revoke --remote --all` run is in progress (its
/// checkpoint in `state.dir` written within the hour) is SEV2, not SEV3.
#[tokio::test(flavor = "multi_thread")]
async fn clerk_rate_limited_is_sev2_while_a_remote_revoke_runs() {
    let clerk = standins(healthy_page()).await;
    let gw = support::gateway().jwt_key().clerk(&clerk.lines).start().await;
    clerk.bapi.rate_limit_every(1, "30");
    let (out, v) = triage_in_process(&gw, None).await;
    expect(&v, &out, "clerk-rate-limited", "SEV3", 13);

    std::fs::write(gw.state_dir().join("revoke-remote.json"), b"{}").expect("a checkpoint");
    let (out, v) = triage_in_process(&gw, None).await;
    expect(&v, &out, "clerk-rate-limited", "SEV2", 12);
    assert!(v["why"].as_str().unwrap().contains("revoke --remote --all run is in progress"), "{v:#}");
    gw.stop().await;
}
