//! Issue #13 item 5 and the webhook half of item 3: every verified Clerk webhook is journalled
//! before anything is answered, delivered once per `svix-id`, replayed by `clerkgate webhooks
//! replay` (the real binary) re-signed so that a Svix verifier accepts it, verified against
//! several secrets during a rotation, and the events that end sessions feed the revocation list.
//!
//! The upstream here is a recording stand-in on loopback; the Svix verifier the replays must
//! pass is written out below from the scheme (HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed
//! by the base64 after `whsec_`), not taken from the gateway's code.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use clerkgate::clock::Clock;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::support::{self, TestGateway, ADMIN_TOKEN};

/// The secret of the endpoint as it was (Svix's published test secret).
const OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The secret of the endpoint that replaces it.
const NEW: &str = "whsec_bmV3LXNlY3JldC1mb3ItdGhlLWVuZHBvaW50";
/// The gateway's secret for the upstream (`clerk.upstream_webhook_secret`).
const UPSTREAM: &str = "whsec_dXBzdHJlYW0tc2VjcmV0LWZvci1yZXBsYXlz";
const PATH: &str = "/api/webhooks/clerk";

// === A Svix verifier, from the scheme ===

fn reference_signature(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).expect("secret");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let signed = [format!("{id}.{ts}.").as_bytes(), body].concat();
    b64.encode(aws_lc_rs::hmac::sign(&key, &signed).as_ref())
}

/// Standard Webhooks verification of one received request against `secret` at `now_s`.
fn svix_accepts(secret: &str, r: &Received, now_s: i64) -> bool {
    let (Some(id), Some(ts), Some(sigs)) =
        (r.header("svix-id"), r.header("svix-timestamp"), r.header("svix-signature"))
    else {
        return false;
    };
    let Ok(ts) = ts.parse::<i64>() else { return false };
    let expected = reference_signature(secret, id, ts, &r.body);
    (now_s - ts).abs() <= 300 && sigs.split(' ').any(|e| e.strip_prefix("v1,") == Some(expected.as_str()))
}

// === A recording upstream ===

/// One request the upstream received.
#[derive(Debug, Clone)]
struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Whether the journal held this delivery's `svix-id` when the upstream received it.
    journalled_on_arrival: bool,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Records every request (and reads the journal file as it arrives); answers `status`.
#[derive(Clone)]
struct Upstream {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    journal: Arc<Mutex<Option<std::path::PathBuf>>>,
}

impl Upstream {
    async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let up = Upstream {
            addr: listener.local_addr().expect("addr"),
            received: Arc::default(),
            status: Arc::new(AtomicU16::new(200)),
            journal: Arc::default(),
        };
        let shared = up.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let up = shared.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let up = up.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                            let headers: Vec<(String, String)> = parts
                                .headers
                                .iter()
                                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or_default().to_string()))
                                .collect();
                            let id = parts.headers.get("svix-id").and_then(|v| v.to_str().ok()).unwrap_or("?");
                            let path = up.journal.lock().unwrap().clone();
                            let journalled_on_arrival = path
                                .and_then(|p| std::fs::read_to_string(p).ok())
                                .is_some_and(|text| text.contains(&format!("\"svix_id\":\"{id}\"")));
                            up.received.lock().unwrap().push(Received { headers, body, journalled_on_arrival });
                            let mut resp =
                                http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"ok")));
                            *resp.status_mut() = http::StatusCode::from_u16(up.status.load(Ordering::SeqCst)).unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        up
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

// === The gateway and Clerk's side ===

/// A gateway on `clock` whose `/api/webhooks/clerk` verifies with `secrets` (a TOML value),
/// forwarding to `up`; `upstream_secret` sets `clerk.upstream_webhook_secret`.
async fn gateway(up: &Upstream, clock: &Clock, secrets: &str, upstream_secret: bool) -> TestGateway {
    let mut clerk = format!("webhook_signing_secret = {secrets}");
    if upstream_secret {
        clerk.push_str(&format!("\nupstream_webhook_secret = {}", support::toml_str(UPSTREAM)));
    }
    let gw = support::gateway()
        .jwt_key()
        .upstream(up.addr)
        .clock(clock.clone())
        .clerk(&clerk)
        .section("[[routes.rule]]", &format!("path = \"{PATH}\"\nwebhook = \"clerk\""))
        .start()
        .await;
    *up.journal.lock().unwrap() = Some(gw.state_dir().join("webhooks.jsonl"));
    gw
}

/// A Clerk event body of `kind` about `data_id`, made at `event_ms`.
fn event(kind: &str, data_id: &str, event_ms: i64) -> String {
    format!(
        r#"{{"type":"{kind}","object":"event","data":{{"id":"{data_id}","user_id":"user_test"}},"timestamp":{event_ms},"instance_id":"ins_test"}}"#
    )
}

/// Delivers `body` as Svix would: `id`, signed with `secret` at `ts`.
async fn deliver(gw: &TestGateway, secret: &str, id: &str, ts: i64, body: &str) -> support::Reply {
    let sig = format!("v1,{}", reference_signature(secret, id, ts, body.as_bytes()));
    let req = support::client()
        .post(gw.url(PATH))
        .header("content-type", "application/json")
        .header("svix-id", id)
        .header("svix-timestamp", ts.to_string())
        .header("svix-signature", sig)
        .body(body.to_string());
    support::Reply::from(req.send().await.expect("deliver")).await
}

/// Runs the real `clerkgate` CLI against `gw`'s admin API, off the runtime the gateway runs on.
async fn cli(gw: &TestGateway, args: &[&str]) -> std::process::Output {
    let admin = gw.running().admin_addr.to_string();
    let dir = gw.state_dir().parent().expect("dir").to_path_buf();
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.extend(["--admin".to_string(), admin]);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::cli_in(&dir, &args, &[("CLERKGATE_ADMIN_TOKEN", ADMIN_TOKEN)])
    })
    .await
    .expect("cli")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

// === The tests ===

#[tokio::test]
async fn a_verified_webhook_is_journalled_before_the_upstream_sees_it_and_a_duplicate_is_not_delivered_again() {
    let up = Upstream::start().await;
    let clock = Clock::manual(support::now_s() * 1000);
    let gw = gateway(&up, &clock, &support::toml_str(OLD), false).await;
    let ts = clock.now_ms() / 1000;
    let body = event("user.created", "user_1", clock.now_ms());

    let first = deliver(&gw, OLD, "msg_1", ts, &body).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let got = up.received();
    assert_eq!(got.len(), 1);
    // The journal line was on disk (written and fsynced) before the event was forwarded, so
    // before any answer to Svix could exist.
    assert!(got[0].journalled_on_arrival, "the upstream received an event the journal did not hold yet");

    // Svix delivers the same message again (a retry, or the second endpoint of a rotation).
    let again = deliver(&gw, OLD, "msg_1", ts, &body).await;
    assert_eq!((again.status, again.reason()), (200, Some("webhook-duplicate")), "{}", again.body);
    assert_eq!(up.received().len(), 1, "a duplicate svix-id was delivered again");

    // A delivery the upstream fails is marked failed, and Svix's retry of it is delivered again.
    up.answer(500);
    let failing = deliver(&gw, OLD, "msg_2", ts, &event("user.updated", "user_1", clock.now_ms())).await;
    assert_eq!(failing.status, 500, "the client gets what the upstream answered");
    let listed = gw.admin("GET", "/webhooks?failed=true", None).await;
    let failed: Vec<String> = listed.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["svix_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(failed, ["msg_2"], "{}", listed.body);
    up.answer(200);
    let retried = deliver(&gw, OLD, "msg_2", ts, &event("user.updated", "user_1", clock.now_ms())).await;
    assert_eq!(retried.status, 200);
    assert_eq!(up.received().len(), 3, "the retry of a failed delivery goes to the upstream");
    let e = &gw.admin("GET", "/webhooks?ids=msg_2", None).await.json()["events"][0];
    assert_eq!((e["delivery"].as_str(), e["attempts"].as_u64()), (Some("delivered"), Some(2)), "{e}");

    // Nothing unverified is journalled.
    let forged = deliver(&gw, NEW, "msg_forged", ts, &body).await;
    assert_eq!((forged.status, forged.reason()), (400, Some("webhook-invalid")));
    let all = gw.admin("GET", "/webhooks", None).await.json();
    assert_eq!(all["events"].as_array().unwrap().len(), 2, "{all}");
}

#[tokio::test]
async fn during_a_secret_rotation_deliveries_signed_with_either_secret_verify() {
    let up = Upstream::start().await;
    let clock = Clock::manual(support::now_s() * 1000);
    let both = format!("[{}, {}]", support::toml_str(NEW), support::toml_str(OLD));
    let gw = gateway(&up, &clock, &both, false).await;
    let ts = clock.now_ms() / 1000;
    let body = event("user.updated", "user_1", clock.now_ms());
    assert_eq!(deliver(&gw, OLD, "msg_old", ts, &body).await.status, 200, "the old endpoint's secret");
    assert_eq!(deliver(&gw, NEW, "msg_new", ts, &body).await.status, 200, "the new endpoint's secret");
    let stranger = "whsec_c3RyYW5nZXItc2VjcmV0";
    let refused = deliver(&gw, stranger, "msg_x", ts, &body).await;
    assert_eq!((refused.status, refused.reason()), (400, Some("webhook-invalid")));
    assert_eq!(up.received().len(), 2);
}

#[tokio::test]
async fn replay_redelivers_in_event_order_re_signed_so_that_a_svix_verifier_accepts_it() {
    let up = Upstream::start().await;
    let t0 = support::now_s();
    let clock = Clock::manual(t0 * 1000);
    let gw = gateway(&up, &clock, &support::toml_str(OLD), true).await;

    // The upstream is down while three events arrive, out of their own order.
    up.answer(503);
    for (id, event_ms) in [("msg_b", 2_000), ("msg_c", 3_000), ("msg_a", 1_000)] {
        let r = deliver(&gw, OLD, id, t0, &event("user.updated", "user_1", event_ms)).await;
        assert_eq!(r.status, 503);
    }
    // Live deliveries carry a signature by the gateway's secret too, beside Clerk's.
    assert!(up.received().iter().all(|r| svix_accepts(UPSTREAM, r, t0) && svix_accepts(OLD, r, t0)));

    // An hour later the upstream is back; Clerk's signatures are long stale.
    up.answer(200);
    clock.advance_ms(3_600_000);
    let dry = cli(&gw, &["webhooks", "replay", "--failed", "--dry-run"]).await;
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(text(&dry.stdout).contains("dry run: would replay these 3 event(s)"), "{}", text(&dry.stdout));
    assert_eq!(up.received().len(), 3, "a dry run sends nothing");

    let out = cli(&gw, &["webhooks", "replay", "--failed", "--rate", "100"]).await;
    assert!(out.status.success(), "stdout {}\nstderr {}", text(&out.stdout), text(&out.stderr));
    assert!(
        text(&out.stdout).contains("replayed 3 event(s) to the upstream: 3 delivered, 0 failed"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("[3/3] delivered  msg_c  status 200"),
        "plain progress lines: {}",
        text(&out.stderr)
    );

    let replays: Vec<Received> = up.received().into_iter().skip(3).collect();
    let ids: Vec<&str> = replays.iter().map(|r| r.header("svix-id").unwrap()).collect();
    assert_eq!(ids, ["msg_a", "msg_b", "msg_c"], "replayed in the events' own time order, with their svix-id");
    let now_s = t0 + 3600;
    for r in &replays {
        assert_eq!(r.header("svix-timestamp"), Some(now_s.to_string().as_str()), "a fresh timestamp");
        assert!(svix_accepts(UPSTREAM, r, now_s), "a Svix verifier with the upstream secret refuses {r:?}");
        assert!(!svix_accepts(OLD, r, now_s), "a replay is not signed with Clerk's secret");
        assert_eq!(r.header("x-clerk-webhook-replay"), Some("true"));
        assert_eq!(r.header("x-clerk-webhook-verified"), Some("true"));
    }
    assert_eq!(replays[0].body, event("user.updated", "user_1", 1_000).into_bytes(), "the body byte for byte");

    // The journal and the audit log say so.
    let listed = cli(&gw, &["webhooks", "list", "--json"]).await;
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("json");
    for e in listed["events"].as_array().unwrap() {
        assert_eq!((e["delivery"].as_str(), e["replays"].as_u64()), (Some("delivered"), Some(1)), "{e}");
    }
    let audited = gw.audited("webhook.replayed").await;
    assert_eq!(audited.len(), 3);
    assert!(audited[0]["actor"].as_str().unwrap().starts_with("admin:"), "{}", audited[0]);
    assert_eq!(
        (audited[0]["after"]["svix_id"].as_str(), audited[0]["after"]["status"].as_u64()),
        (Some("msg_a"), Some(200))
    );
    // Nothing failed is left.
    let nothing = cli(&gw, &["webhooks", "replay", "--failed"]).await;
    assert!(nothing.status.success() && text(&nothing.stdout).contains("nothing to replay"));
}

#[tokio::test]
async fn replay_without_an_upstream_secret_is_refused_with_what_to_set() {
    let up = Upstream::start().await;
    let clock = Clock::manual(support::now_s() * 1000);
    let gw = gateway(&up, &clock, &support::toml_str(OLD), false).await;
    let ts = clock.now_ms() / 1000;
    deliver(&gw, OLD, "msg_1", ts, &event("user.created", "user_1", 1)).await;
    let out = cli(&gw, &["webhooks", "replay", "--id", "msg_1"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("set it, or CLERKGATE_UPSTREAM_WEBHOOK_SECRET"), "{}", text(&out.stderr));
    assert_eq!(up.received().len(), 1, "nothing was replayed");
    let listed = cli(&gw, &["webhooks", "list"]).await;
    let listed = text(&listed.stdout);
    assert!(listed.contains("msg_1  user.created") && listed.contains("1 event(s), 0 failed"), "{listed}");
}

#[tokio::test]
async fn events_that_end_sessions_feed_the_revocation_list_as_the_webhook_actor() {
    let up = Upstream::start().await;
    let clock = Clock::system();
    let gw = gateway(&up, &clock, &support::toml_str(OLD), false).await;
    let token = support::token();
    assert_eq!(gw.get("/api/x", Some(&token), &[]).await.status, 200);
    let ts = support::now_s();
    let r = deliver(&gw, OLD, "msg_end", ts, &event("session.revoked", "sess_test", ts * 1000)).await;
    assert_eq!(r.status, 200);
    support::eventually("the session is refused", Duration::from_secs(20), || async {
        let r = gw.get("/api/x", Some(&token), &[]).await;
        (r.status == 401 && r.reason() == Some("session-revoked")).then_some(())
    })
    .await;
    let added = gw.audited("revocation.add").await;
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(
        (added[0]["actor"].as_str(), added[0]["after"]["session_id"].as_str()),
        (Some("webhook"), Some("sess_test"))
    );
    assert!(added[0]["reason"].as_str().unwrap().contains("session.revoked (msg_end)"));

    // A duplicate feeds nothing; user.deleted revokes the user.
    deliver(&gw, OLD, "msg_end", ts, &event("session.revoked", "sess_test", ts * 1000)).await;
    deliver(&gw, OLD, "msg_gone", ts, &event("user.deleted", "user_gone", ts * 1000)).await;
    support::eventually("the user is revoked", Duration::from_secs(20), || async {
        let list = gw.admin("GET", "/revocations", None).await.json();
        list.to_string().contains("user_gone").then_some(())
    })
    .await;
    assert_eq!(gw.audited("revocation.add").await.len(), 2);
}
