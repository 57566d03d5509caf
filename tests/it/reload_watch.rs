//! Issue #11 item 5, reload from mounted files, without a signal: a kubelet-style `..data`
//! swap of the config directory changes the routes; an invalid swap keeps the running config;
//! a touch, an unrelated file or a swap to the same content is no reload; a rotated
//! `secret_key_file` is checked at the (test) Backend API first — refused or unchecked, the old
//! key stays; taken, the next fetch carries the new one; the watcher is re-armed when a reload
//! names a file in another directory; the polling fallback; the real binary watches by default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clerkgate::file_watch::WatchMode;
use serde_json::Value;

use crate::support::{self, gateway, BinaryGateway, JwksReply, JwksServer, TestGateway, KID};

const DEADLINE: Duration = Duration::from_secs(20);

/// A directory laid out as the kubelet lays out a mounted ConfigMap or Secret: each version in
/// a timestamped directory, `..data` a symlink to the current one, and every visible file a
/// symlink through `..data`. A new version is published as the kubelet does it: a new
/// directory, a temporary symlink to it renamed over `..data`, the old directory removed.
struct Mounted {
    dir: PathBuf,
    versions: u8,
}

impl Mounted {
    fn new(dir: PathBuf, files: &[(&str, &str)]) -> Mounted {
        std::fs::create_dir_all(&dir).expect("mount dir");
        let mut m = Mounted { dir, versions: 0 };
        m.publish(files);
        m
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn version_dir(&self, n: u8) -> PathBuf {
        self.dir.join(format!("..2026_11_29_{}", char::from(b'a' + n)))
    }

    fn publish(&mut self, files: &[(&str, &str)]) {
        let (old, new) = (self.versions.checked_sub(1).map(|n| self.version_dir(n)), self.version_dir(self.versions));
        self.versions += 1;
        std::fs::create_dir(&new).expect("version dir");
        for (name, content) in files {
            std::fs::write(new.join(name), content).expect("write a mounted file");
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(new.file_name().expect("name"), &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
        for (name, _) in files {
            let visible = self.dir.join(name);
            if std::fs::symlink_metadata(&visible).is_err() {
                std::os::unix::fs::symlink(Path::new("..data").join(name), &visible).expect("visible symlink");
            }
        }
        if let Some(old) = old {
            std::fs::remove_dir_all(old).expect("remove the old version");
        }
    }
}

/// The config text with one more public path.
fn with_public(text: &str, path: &str) -> String {
    let list = "public = [\"/\", \"/public(.*)\", \"/health\"]";
    assert!(text.contains(list), "the builder's [routes] changed:\n{text}");
    text.replace(list, &format!("public = [\"/\", \"/public(.*)\", \"/health\", \"{path}\"]"))
}

/// A gateway whose config file is `clerkgate.toml` in a kubelet-style `config/` directory.
async fn mounted_gateway() -> (TestGateway, Mounted, String) {
    let mut mount = None;
    let gw = gateway()
        .jwt_key()
        .watch(WatchMode::Events)
        .start_placed(|dir, text| {
            let m = Mounted::new(dir.join("config"), &[("clerkgate.toml", &text)]);
            let path = m.path("clerkgate.toml");
            mount = Some(m);
            path
        })
        .await;
    let text = std::fs::read_to_string(&gw.config_path).expect("read the config through its symlinks");
    (gw, mount.expect("placed"), text)
}

async fn status(gw: &TestGateway) -> Value {
    let r = gw.admin("GET", "/status", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Waits for the `n`th audit event with `action`, and answers all of them.
async fn await_audited(gw: &TestGateway, action: &str, n: usize) -> Vec<Value> {
    support::eventually(&format!("{n} {action} audit event(s)"), DEADLINE, || async {
        let events = gw.audited(action).await;
        (events.len() >= n).then_some(events)
    })
    .await
}

/// Waits until `path` answers `status` without a token (a reload is audited before it is in
/// force, so the audit line alone does not say the routes changed).
async fn await_route(gw: &TestGateway, path: &str, status: u16) {
    support::eventually(&format!("{path} to answer {status}"), DEADLINE, || async {
        (gw.get(path, None, &[]).await.status == status).then_some(())
    })
    .await;
}

/// Waits until `/status` shows the last reload attempt refused, and answers it.
async fn await_refused_status(gw: &TestGateway) -> Value {
    support::eventually("a refused reload in /status", DEADLINE, || async {
        let s = status(gw).await;
        (s["last_reload"]["ok"] == false).then_some(s)
    })
    .await
}

/// Waits until `/status` shows a reload by the file watch in force.
async fn await_watch_reload_in_force(gw: &TestGateway) {
    support::eventually("a reload by the file watch in /status", DEADLINE, || async {
        let s = status(gw).await;
        (s["last_reload"]["ok"] == true && s["last_reload"]["actor"] == "file-watch").then_some(())
    })
    .await;
}

/// The value of a counter in `/metrics` with this label set (0 when not yet counted).
async fn counter(gw: &TestGateway, name: &str, labels: &str) -> f64 {
    let metrics = gw.admin("GET", "/metrics", None).await.body;
    let prefix = format!("{name}{{{labels}}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn a_kubelet_swap_of_the_config_dir_changes_the_routes_without_a_signal() {
    let (gw, mut mount, text) = mounted_gateway().await;
    assert_eq!(gw.get("/newpublic", None, &[]).await.status, 401, "protected before the swap");
    let hash_before = status(&gw).await["config"]["hash"].clone();

    mount.publish(&[("clerkgate.toml", &with_public(&text, "/newpublic"))]);
    await_route(&gw, "/newpublic", 200).await;
    let r = gw.get("/newpublic", None, &[]).await;
    assert_eq!(r.echoed().one("x-clerk-auth-status"), Some("signed-out"));
    assert_eq!(gw.get("/api/orders", None, &[]).await.status, 401, "other routes still protected");

    let reloads = gw.audited("config.reload").await;
    assert_eq!(reloads.len(), 1, "one reload: {reloads:#?}");
    assert_eq!(reloads[0]["actor"], "file-watch", "{}", reloads[0]);
    assert_eq!(reloads[0]["before"]["hash"], hash_before);
    let s = status(&gw).await;
    assert_eq!(
        (s["last_reload"]["ok"].as_bool(), &s["last_reload"]["actor"]),
        (Some(true), &Value::from("file-watch"))
    );
    assert_eq!(s["config"]["hash"], reloads[0]["after"]["hash"]);
    gw.stop().await;
}

#[tokio::test]
async fn a_swap_to_an_invalid_config_keeps_the_running_one() {
    let (gw, mut mount, text) = mounted_gateway().await;
    let hash = status(&gw).await["config"]["hash"].clone();

    // Broken, and it would also make every route public.
    let broken =
        support::with_keys(&text.replace("default = \"protected\"", "default = \"public\""), "server", "bogus_key = 1");
    mount.publish(&[("clerkgate.toml", &broken)]);
    let failed = await_audited(&gw, "config.reload_failed", 1).await;
    assert_eq!(failed[0]["actor"], "file-watch", "{}", failed[0]);
    let keys: Vec<&str> =
        failed[0]["after"]["problems"].as_array().into_iter().flatten().filter_map(|p| p["key"].as_str()).collect();
    assert_eq!(keys, ["server.bogus_key"], "{}", failed[0]);

    let s = await_refused_status(&gw).await;
    assert_eq!(s["last_reload"]["actor"], "file-watch");
    assert_eq!(s["last_reload"]["problems"][0]["key"], "server.bogus_key", "{s:#}");
    assert_eq!(s["config"]["hash"], hash, "the running config stays");
    assert_eq!(gw.get("/api/orders", None, &[]).await.status, 401, "the old routes still apply");
    assert_eq!(gw.get("/api/orders", Some(&support::token()), &[]).await.status, 200);
    assert!(gw.audited("config.reload").await.is_empty(), "no reload went through");

    // Mended: the next swap goes through.
    mount.publish(&[("clerkgate.toml", &with_public(&text, "/mended"))]);
    await_route(&gw, "/mended", 200).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_touch_an_unrelated_file_or_the_same_content_is_no_reload() {
    let (gw, mut mount, text) = mounted_gateway().await;

    // An editor's or an operator's leftovers beside the config, the same content swapped in
    // again (an event on `..data`), and the file's times touched.
    std::fs::write(mount.path("notes.txt"), "remember the milk").expect("unrelated file");
    std::fs::write(mount.path(".clerkgate.toml.swp"), "swap").expect("swap file");
    mount.publish(&[("clerkgate.toml", &text)]);
    let file = std::fs::File::options().append(true).open(mount.path("clerkgate.toml")).expect("open");
    file.set_modified(std::time::SystemTime::now()).expect("touch");
    // A settle well past the debounce; a reload it caused would be audited before the next one.
    tokio::time::sleep(Duration::from_secs(1)).await;

    mount.publish(&[("clerkgate.toml", &with_public(&text, "/marker"))]);
    await_route(&gw, "/marker", 200).await;
    let reloads = gw.audited("config.reload").await;
    assert_eq!(reloads.len(), 1, "only the real change reloaded: {reloads:#?}");
    assert!(gw.audited("config.reload_failed").await.is_empty());
    gw.stop().await;
}

/// A gateway whose secret key comes from `secret_key` in a kubelet-style directory, checked at
/// (and fetching its JWKS from) `api`, the test Backend API.
async fn gateway_with_secret_file(api: &JwksServer, secrets: &Mounted) -> TestGateway {
    gateway()
        .clerk(&format!(
            "api_url = {}\nsecret_key_file = {}",
            support::toml_str(&format!("http://{}", api.addr())),
            support::toml_str(&secrets.path("secret_key").display().to_string())
        ))
        .watch(WatchMode::Events)
        .start()
        .await
}

/// Fetches the JWKS now, through the admin API, and answers the bearer the fetch carried.
async fn bearer_of_a_refresh(gw: &TestGateway, api: &JwksServer) -> Option<String> {
    let r = gw.admin("POST", "/keys/refresh", None).await;
    assert_eq!(r.status, 200, "POST /keys/refresh: {}", r.body);
    api.last_bearer()
}

#[tokio::test]
async fn a_rotated_secret_key_is_checked_at_the_backend_api_before_it_is_used() {
    let api = JwksServer::start(JwksReply::Json(support::key().jwks(KID))).await;
    api.accept_only(&["sk_test_old"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut secrets = Mounted::new(dir.path().join("clerk"), &[("secret_key", "sk_test_old\n")]);
    let gw = gateway_with_secret_file(&api, &secrets).await;
    support::eventually("the first key set", DEADLINE, || async {
        (gw.get("/api/orders", Some(&support::token()), &[]).await.status == 200).then_some(())
    })
    .await;
    assert_eq!(api.last_bearer().as_deref(), Some("sk_test_old"));
    let rejected = r#"result="rejected""#;
    let before = counter(&gw, "clerkgate_secret_key_checks_total", rejected).await;

    // Rotated to a key the Backend API does not take (deleted, or another instance's).
    secrets.publish(&[("secret_key", "sk_test_wrong\n")]);
    let failed = await_audited(&gw, "config.reload_failed", 1).await;
    assert_eq!(failed[0]["actor"], "file-watch", "{}", failed[0]);
    let problem = &failed[0]["after"]["problems"][0];
    assert_eq!(problem["key"], "clerk.secret_key_file", "{problem}");
    let message = problem["message"].as_str().unwrap_or_default();
    assert!(message.contains("401 clerk_key_invalid") && message.contains("running key stays"), "{message}");
    let s = await_refused_status(&gw).await;
    assert_eq!(s["last_reload"]["problems"][0]["key"], "clerk.secret_key_file", "{s:#}");
    assert!(counter(&gw, "clerkgate_secret_key_checks_total", rejected).await > before, "the metric counts it");
    assert_eq!(bearer_of_a_refresh(&gw, &api).await.as_deref(), Some("sk_test_old"), "the old key stays in use");
    assert_eq!(gw.get("/api/orders", Some(&support::token()), &[]).await.status, 200);
    let audit = gw.admin("GET", "/audit", None).await.body;
    assert!(!audit.contains("sk_test_wrong") && !s.to_string().contains("sk_test_wrong"), "never the key itself");

    // The Backend API is down: the new key cannot be checked, so it is not used either.
    api.accept_only(&["sk_test_old", "sk_test_new"]);
    api.set(JwksReply::Status(503, "upstream connect error".into()));
    secrets.publish(&[("secret_key", "sk_test_new\n")]);
    let failed = await_audited(&gw, "config.reload_failed", 2).await;
    let message = failed[1]["after"]["problems"][0]["message"].as_str().unwrap_or_default().to_string();
    assert!(message.contains("could not be checked") && message.contains("503"), "{message}");

    // Back up: the operator retries with a reload, the key is taken, and the next fetch
    // carries it.
    api.set(JwksReply::Json(support::key().jwks(KID)));
    let accepted = r#"result="accepted""#;
    let before = counter(&gw, "clerkgate_secret_key_checks_total", accepted).await;
    let r = gw.admin("POST", "/reload", None).await;
    assert_eq!(r.status, 200, "POST /reload with the new key: {}", r.body);
    assert!(counter(&gw, "clerkgate_secret_key_checks_total", accepted).await > before);
    assert_eq!(bearer_of_a_refresh(&gw, &api).await.as_deref(), Some("sk_test_new"), "the new key is in use");

    // The old key is deleted at Clerk; rotating once more, through the watcher alone.
    api.accept_only(&["sk_test_newer"]);
    secrets.publish(&[("secret_key", "sk_test_newer\n")]);
    await_watch_reload_in_force(&gw).await;
    let reloads = gw.audited("config.reload").await;
    assert_eq!(reloads.len(), 2, "{reloads:#?}");
    assert_eq!(reloads[1]["actor"], "file-watch", "{}", reloads[1]);
    assert_eq!(bearer_of_a_refresh(&gw, &api).await.as_deref(), Some("sk_test_newer"));
    assert_eq!(gw.get("/api/orders", Some(&support::token()), &[]).await.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn a_reload_that_names_a_file_elsewhere_rearms_the_watcher() {
    let (gw, mut mount, text) = mounted_gateway().await;
    let secrets = tempfile::tempdir().expect("tempdir");
    let whsec = secrets.path().join("whsec");
    std::fs::write(&whsec, "whsec_dGVzdA==").expect("write");
    let naming = support::with_keys(
        &text,
        "clerk",
        &format!("webhook_signing_secret_file = {}", support::toml_str(&whsec.display().to_string())),
    );
    mount.publish(&[("clerkgate.toml", &naming)]);
    await_watch_reload_in_force(&gw).await;
    let first = gw.audited("config.reload").await;

    // Only the secret file changes, in a directory that was not watched before the reload.
    std::fs::write(&whsec, "whsec_b3RoZXI=").expect("rewrite");
    let reloads = await_audited(&gw, "config.reload", 2).await;
    assert_eq!(reloads[1]["actor"], "file-watch", "{}", reloads[1]);
    assert_eq!(reloads[1]["before"]["hash"], first[0]["after"]["hash"]);
    assert_ne!(reloads[1]["after"]["hash"], reloads[1]["before"]["hash"], "the new secret is in the hash");
    gw.stop().await;
}

#[tokio::test]
async fn the_polling_fallback_picks_up_a_change() {
    let gw = gateway().jwt_key().watch(WatchMode::Poll(Duration::from_millis(100))).start().await;
    assert_eq!(gw.get("/polled", None, &[]).await.status, 401);
    let text = std::fs::read_to_string(&gw.config_path).expect("read config");
    std::fs::write(&gw.config_path, with_public(&text, "/polled")).expect("rewrite config");
    await_route(&gw, "/polled", 200).await;
    let reloads = gw.audited("config.reload").await;
    assert_eq!(reloads[0]["actor"], "file-watch", "{}", reloads[0]);

    // Polling an unchanged file is no reload.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(gw.audited("config.reload").await.len(), 1);
    gw.stop().await;
}

/// `clerkgate run` watches by default: an editor's save (write a new file, rename it over)
/// reloads without a signal.
#[tokio::test]
async fn the_binary_watches_its_config_by_default() {
    let up = support::upstream().await;
    let cfg = support::binary_config(up);
    let gw = BinaryGateway::start_watching(&cfg.text());
    assert_eq!(gw.get("/saved", None).await.status, 401);
    let next = cfg.routes("default = \"protected\"\npublic = [\"/\", \"/saved\"]").text();
    let tmp = gw.config_path().with_extension("toml.new");
    std::fs::write(&tmp, next).expect("write");
    std::fs::rename(&tmp, gw.config_path()).expect("rename over the config");
    support::eventually("/saved to become public without a signal", DEADLINE, || async {
        (gw.get("/saved", None).await.status == 200).then_some(())
    })
    .await;
    let reloads: Vec<Value> = gw.audit_file().into_iter().filter(|e| e["action"] == "config.reload").collect();
    assert_eq!(reloads.len(), 1, "{reloads:#?}");
    assert_eq!(reloads[0]["actor"], "file-watch");
    gw.stop().await;
}
