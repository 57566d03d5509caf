//! Issue #9, control as the only writer: a change the gateway cannot audit does not happen;
//! a slow state write never stalls traffic on a one-thread runtime; key-set changes are audited
//! like every other change.
//!
//! A failing write is made real: `audit.jsonl` is replaced with a directory, which even root
//! cannot append to. The slow store is a test store implementing the state interface: it wraps
//! the file store and holds its blocking write until the test lets it go — the path under test
//! is the request path.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use clerkgate::store::{
    Applied, AuditEvent, AuditLines, BoxFuture, Change, ControlStore, FileStore, Snapshot, StoreError, StoreEvent,
};
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::support::{self, gateway, JwksReply, JwksServer, Reply, TestGateway, KID};

const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// An admin call with the test admin token.
async fn admin(gw: &TestGateway, method: &str, path: &str, body: Option<Value>) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = support::client().request(method, gw.admin_url(path)).bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    Reply::from(req.send().await.expect("admin request")).await
}

/// Makes every later append to `audit.jsonl` fail for real: the file becomes a directory.
fn break_the_audit_log(gw: &TestGateway) -> PathBuf {
    let path = gw.state_dir().join("audit.jsonl");
    let _ = std::fs::remove_file(&path);
    std::fs::create_dir_all(&path).expect("audit.jsonl as a directory");
    path
}

fn mend_the_audit_log(path: &PathBuf) {
    std::fs::remove_dir(path).expect("remove the audit.jsonl directory");
}

/// Asserts a 5xx whose message names the audit log and the OS error.
fn assert_not_recorded(r: &Reply, what: &str) {
    assert!(r.status >= 500, "{what}: a change that cannot be audited must fail, got {}: {}", r.status, r.body);
    let v = r.json();
    assert_eq!(v["error"], "storage", "{what}: {v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(message.contains("audit.jsonl") && message.contains("os error"), "{what}: path and OS error: {message}");
}

/// Audit events with this action, from `GET /audit`.
async fn audited(gw: &TestGateway, action: &str) -> Vec<Value> {
    let r = admin(gw, "GET", "/audit", None).await;
    assert_eq!(r.status, 200, "GET /audit: {}", r.body);
    r.json()["events"].as_array().cloned().unwrap_or_default().into_iter().filter(|e| e["action"] == action).collect()
}

fn token_for(sub: &str, sid: &str) -> String {
    support::token_for(&clerkgate::mint::TokenSpec { sub: sub.into(), sid: sid.into(), ..Default::default() })
}

#[tokio::test]
async fn a_change_that_cannot_be_audited_fails_and_changes_nothing() {
    let gw = gateway().jwt_key().start().await;
    let r = admin(&gw, "POST", "/revocations", Some(json!({"session_id": "sess_kept", "reason": "before"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let state_json = std::fs::read(gw.state_dir().join("state.json")).expect("state.json");
    let audit_dir = break_the_audit_log(&gw);

    // A mode change: 5xx, and the mode in force and on disk stays enforce.
    let r = admin(&gw, "PUT", "/mode", Some(json!({"mode": "bypass", "reason": "unauditable", "ttl": "5m"}))).await;
    assert_not_recorded(&r, "PUT /mode");
    let mode = admin(&gw, "GET", "/mode", None).await.json();
    assert_eq!(mode["mode"], "enforce", "{mode}");
    assert_ne!(mode["source"], "admin", "{mode}");
    assert_eq!(gw.get("/api/orders", None, &[]).await.status, 401, "still enforcing");

    // A revocation: 5xx, and the session still passes.
    let r = admin(&gw, "POST", "/revocations", Some(json!({"session_id": "sess_new", "reason": "unauditable"}))).await;
    assert_not_recorded(&r, "POST /revocations");
    assert_eq!(gw.get("/api/orders", Some(&token_for("user_new", "sess_new")), &[]).await.status, 200);

    // Lifting one: 5xx, and the session stays revoked.
    let r = admin(&gw, "DELETE", "/revocations/sess_kept", None).await;
    assert_not_recorded(&r, "DELETE /revocations");
    let r = gw.get("/api/orders", Some(&token_for("user_kept", "sess_kept")), &[]).await;
    assert_eq!((r.status, r.reason()), (401, Some("session-revoked")), "{}", r.body);
    let list = admin(&gw, "GET", "/revocations", None).await.json();
    assert!(list["sessions"].get("sess_kept").is_some() && list["sessions"].get("sess_new").is_none(), "{list}");

    // A reload: 5xx, and the new route list is not in force.
    let text = std::fs::read_to_string(&gw.config_path).expect("config");
    let opened = text.replace("public = [\"/\",", "public = [\"/api/orders\", \"/\",");
    assert_ne!(text, opened, "the test config has the expected public list");
    std::fs::write(&gw.config_path, opened).expect("rewrite config");
    assert_not_recorded(&admin(&gw, "POST", "/reload", None).await, "POST /reload");
    assert_eq!(gw.get("/api/orders", None, &[]).await.status, 401, "the refused reload is not in force");

    let on_disk = std::fs::read(gw.state_dir().join("state.json")).expect("state.json");
    assert_eq!(on_disk, state_json, "state.json is unchanged");

    // Once the log can be written again, the same change goes through.
    mend_the_audit_log(&audit_dir);
    let r = admin(&gw, "PUT", "/mode", Some(json!({"mode": "bypass", "reason": "auditable", "ttl": "5m"}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(audited(&gw, "mode.set").await.len(), 1);
    gw.stop().await;
}

/// The file store, with every write held on its blocking thread until the test opens `hold`.
#[derive(Debug)]
struct SlowStore {
    inner: FileStore,
    hold: Arc<Hold>,
    writing: Arc<AtomicBool>,
    written: Arc<AtomicBool>,
}

/// A write waits at most this long for the test to let it go, so a failing test ends.
const HOLD_LIMIT: Duration = Duration::from_secs(30);

/// Where a write waits until the test opens it; once open, writes pass.
#[derive(Debug, Default)]
struct Hold {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Hold {
    fn open(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.opened.notify_all();
    }

    /// Blocks until the hold is open, or [`HOLD_LIMIT`] has passed.
    fn pass(&self) {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.opened.wait_timeout_while(open, HOLD_LIMIT, |open| !*open);
    }
}

impl ControlStore for SlowStore {
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, StoreError>> {
        self.inner.snapshot()
    }

    fn apply(&self, change: Change, audit: Option<AuditEvent>) -> BoxFuture<'_, Result<Applied, StoreError>> {
        let (inner, hold) = (self.inner.clone(), self.hold.clone());
        let (writing, written) = (self.writing.clone(), self.written.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                writing.store(true, Ordering::SeqCst);
                hold.pass();
                let committed = inner.commit(&change, audit.as_ref());
                written.store(true, Ordering::SeqCst);
                committed
            })
            .await
            .expect("the blocking write")
        })
    }

    fn changes(&self) -> broadcast::Receiver<StoreEvent> {
        self.inner.changes()
    }

    fn read_audit(&self, since_ms: i64) -> BoxFuture<'_, Result<AuditLines, StoreError>> {
        self.inner.read_audit(since_ms)
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.probe()
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}

/// `#[tokio::test]` runs on a current-thread runtime: the gateway, the client and the admin
/// call share one thread, as in a process allowed one core.
#[tokio::test]
async fn requests_are_served_while_a_mode_change_is_being_written() {
    let hold = Arc::new(Hold::default());
    let writing = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicBool::new(false));
    let (h, w, d) = (hold.clone(), writing.clone(), written.clone());
    let gw = gateway()
        .jwt_key()
        .store(move |dir| Arc::new(SlowStore { inner: FileStore::new(dir), hold: h, writing: w, written: d }))
        .start()
        .await;
    let token = support::token();
    assert_eq!(gw.get("/api/orders", Some(&token), &[]).await.status, 200);

    let put = {
        let url = gw.admin_url("/mode");
        tokio::spawn(async move {
            let req = support::client().put(url).bearer_auth(ADMIN_TOKEN);
            let req = req.json(&json!({"mode": "bypass", "reason": "slow disk drill", "ttl": "5m"}));
            Reply::from(req.send().await.expect("PUT /mode")).await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !writing.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the mode change never reached the store");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    // Requests sent while the write is held complete, answered in the mode still in force: the
    // change is not in force before it is recorded. The write goes on only once they have (a
    // timed write would make this a race between the requests and the clock).
    for served in 0..5 {
        let r = gw.get("/api/orders", Some(&token), &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(
            !written.load(Ordering::SeqCst),
            "request {served} was answered only after the write ended (held {HOLD_LIMIT:?} at most)"
        );
        assert!(!put.is_finished(), "the PUT /mode answered before its write ended");
        assert_eq!(r.header("x-auth-bypass"), None, "bypass in force before it was recorded");
    }
    hold.open();

    let r = put.await.expect("PUT task");
    assert!(written.load(Ordering::SeqCst), "the PUT /mode answered before its write ended");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["mode"], "bypass");
    assert_eq!(gw.get("/api/orders", None, &[]).await.header("x-auth-bypass"), Some("true"));
    gw.stop().await;
}

/// The kid the rotated-in key is published under.
const KID2: &str = "kid2";

fn kids(event: &Value, side: &str) -> Vec<String> {
    event[side].as_array().map(|a| a.iter().filter_map(|k| k.as_str().map(String::from)).collect()).unwrap_or_default()
}

async fn status_kids(gw: &TestGateway) -> Vec<String> {
    let status = admin(gw, "GET", "/status", None).await.json();
    status["keys"]["kids"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter_map(|k| k.as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn a_key_set_change_is_audited_like_every_other_change() {
    let jwks = JwksServer::start(JwksReply::Json(support::key().jwks(KID))).await;
    let gw = gateway()
        .jwks(&jwks)
        .section("clerk.keys", "refresh_interval = \"1s\"\nfetch_timeout = \"2s\"\nunknown_kid_cooldown = \"1h\"")
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_kids(&gw).await != [KID] {
        assert!(Instant::now() < deadline, "the first key set never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = audited(&gw, "keys.changed").await;
    assert_eq!(first.len(), 1, "the first set is one change: {first:?}");
    assert_eq!((kids(&first[0], "before"), kids(&first[0], "after")), (vec![], vec![KID.to_string()]));
    assert_eq!(first[0]["actor"], "keys");

    // The JWKS rotates; the background refresh records the change before it is in force.
    jwks.set(JwksReply::Json(json!({"keys": [support::other_key().jwk(KID2)]})));
    while status_kids(&gw).await != [KID2] {
        assert!(Instant::now() < deadline, "the rotated key set never loaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rotated = audited(&gw, "keys.changed").await;
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    assert_eq!(
        (kids(&rotated[1], "before"), kids(&rotated[1], "after")),
        (vec![KID.to_string()], vec![KID2.to_string()])
    );

    // An admin refresh is answered once the change is recorded.
    jwks.set(JwksReply::Json(json!({"keys": [support::key().jwk(KID), support::other_key().jwk(KID2)]})));
    let r = admin(&gw, "POST", "/keys/refresh", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let both = audited(&gw, "keys.changed").await;
    assert_eq!(both.len(), 3, "{both:?}");
    assert_eq!(kids(&both[2], "after"), [KID.to_string(), KID2.to_string()]);
    let keys_json = std::fs::read_to_string(gw.state_dir().join("keys.json")).expect("keys.json");
    assert!(keys_json.contains(KID) && keys_json.contains(KID2), "{keys_json}");

    // A key set that cannot be audited is not put in force, and the refresh says why.
    let audit_dir = break_the_audit_log(&gw);
    jwks.set(JwksReply::Json(json!({"keys": [support::key().jwk(KID)]})));
    let r = admin(&gw, "POST", "/keys/refresh", None).await;
    assert_not_recorded(&r, "POST /keys/refresh");
    assert_eq!(status_kids(&gw).await, [KID.to_string(), KID2.to_string()], "the last good set stays");
    let unchanged = std::fs::read_to_string(gw.state_dir().join("keys.json")).expect("keys.json");
    assert_eq!(unchanged, keys_json, "keys.json is unchanged");
    mend_the_audit_log(&audit_dir);
    gw.stop().await;
}
