//! Issue #13 items 1, 3 and 4 through the real binary against a stand-in Backend API
//! (`support::bapi`): `revoke --remote --all` over 2,000 users with 429s injected revokes every
//! active or pending session exactly once, also across a SIGKILL and `--resume`; the cursor's
//! offset fallback; `--user`, `--session`, `--dry-run`, the confirmation; `keys check` against
//! an accepting, a rejecting, an unreachable and a foreign instance; and a rejected key, 5xx and
//! slow answers end in an error that says what to do next.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::bapi::{Bapi, Fault};
use crate::support::{self, eventually, TestGateway, KID};

const SECRET: &str = "sk_test_standin_0123456789abcdef";

/// Three kinds of user: two live sessions and a pending one; one live among ended ones; none.
fn sessions(i: usize) -> Vec<&'static str> {
    match i % 4 {
        0 => vec!["active", "active", "pending"],
        1 => vec!["active", "ended", "revoked"],
        2 => vec!["pending", "active"],
        _ => vec!["expired"],
    }
}

/// A gateway (networkless key, plus the stand-in's JWKS through the secret key) and the
/// stand-in it names in its config.
async fn setup(users: usize) -> (Bapi, TestGateway) {
    let bapi = Bapi::start(SECRET, support::key().jwks(KID), users, sessions).await;
    let gw = support::gateway()
        .jwt_key()
        .clerk(&format!("secret_key = {}\napi_url = {}", support::toml_str(SECRET), support::toml_str(&bapi.url())))
        .start()
        .await;
    (bapi, gw)
}

/// The gateway's config with `edit` applied, written beside it; for a CLI run with other keys.
fn config_variant(gw: &TestGateway, name: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(&gw.config_path).expect("read config");
    let path = gw.config_path.with_file_name(name);
    std::fs::write(&path, edit(text)).expect("write config");
    path
}

/// `clerkgate ARGS --config CONFIG --admin ADDR` run to its end, off the async threads.
async fn cli(gw: &TestGateway, config: &Path, args: &[&str]) -> Output {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend([
        "--config".into(),
        config.display().to_string(),
        "--admin".into(),
        gw.running().admin_addr.to_string(),
    ]);
    let dir = config.parent().expect("dir").to_path_buf();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = all.iter().map(String::as_str).collect();
        support::cli_in(&dir, &args, &[])
    })
    .await
    .expect("cli")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", text(out)))
}

/// Every session that was live at the start was revoked exactly once, and no revoke reached a
/// session that had already ended.
fn exactly_once(bapi: &Bapi, live_at_start: &[String]) {
    let revoked = bapi.revoked();
    let missing: Vec<&String> = live_at_start.iter().filter(|id| !revoked.contains_key(*id)).collect();
    let twice: Vec<(&String, &u32)> = revoked.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        missing.is_empty(),
        "{} live sessions not revoked, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(twice.is_empty(), "revoked more than once: {twice:?}");
    assert_eq!(revoked.len(), live_at_start.len(), "only live sessions are revoked");
    assert!(bapi.revoked_again().is_empty(), "a revoke reached an ended session: {:?}", bapi.revoked_again());
}

fn live(bapi: &Bapi) -> Vec<String> {
    bapi.sessions()
        .into_iter()
        .filter(|(_, s)| s.status == "active" || s.status == "pending")
        .map(|(id, _)| id)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn all_revokes_every_live_session_of_2000_users_exactly_once_through_429s() {
    let (bapi, gw) = setup(2000).await;
    bapi.rate_limit_every(400, "1");
    let live_at_start = live(&bapi);
    assert_eq!(live_at_start.len(), 3000);

    let out = cli(
        &gw,
        &gw.config_path,
        &["revoke", "--remote", "--all", "--yes", "--verify", "--json", "--rate", "100000", "--reason", "drill"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    exactly_once(&bapi, &live_at_start);
    assert!(bapi.answered_429() > 0, "the stand-in did rate-limit");

    let summary = json(&out);
    assert_eq!(summary["outcome"], "done");
    assert_eq!(summary["instance"][0], KID);
    assert_eq!(summary["paging"], "cursor");
    assert_eq!(summary["totals"]["users"], 2000);
    assert_eq!(summary["totals"]["revoked"], live_at_start.len() as u64);
    assert_eq!(summary["verify"]["survivors"], 0);
    assert!(summary["api"]["rate_limited"].as_u64().unwrap() > 0, "{summary}");
    assert!(summary["gateway"].as_str().unwrap().starts_with("refuses every token issued before"), "{summary}");

    // Clerk's headers, never the key in the output.
    let headers = bapi.last_headers();
    let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    assert_eq!(header("clerk-api-version").as_deref(), Some(clerkgate::clerk_api::CLERK_API_VERSION));
    assert!(header("user-agent").unwrap_or_default().starts_with("clerkgate/"));
    assert!(!text(&out).contains(SECRET));

    // The gateway refused first, and the audit log has the totals.
    let revocations = gw.admin("GET", "/revocations", None).await.json();
    assert!(revocations["issued_before"].is_string(), "{revocations}");
    let audited = gw.audited("revocation.remote").await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0]["after"]["totals"]["revoked"], live_at_start.len() as u64);
    assert_eq!(audited[0]["reason"], "drill");
    assert!(!gw.state_dir().join("revoke-remote.json").exists(), "a finished run leaves no checkpoint");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_mid_walk_resumes_and_still_revokes_each_session_once() {
    let (bapi, gw) = setup(2000).await;
    bapi.rate_limit_every(700, "1");
    bapi.revoke_delay(Duration::from_millis(3));
    let live_at_start = live(&bapi);
    let admin = gw.running().admin_addr.to_string();
    let config = gw.config_path.display().to_string();
    let mut child = Command::new(support::binary())
        .args(["revoke", "--remote", "--all", "--yes", "--rate", "100000", "--config", &config, "--admin", &admin])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let third = live_at_start.len() / 3;
    eventually("a third of the sessions revoked", Duration::from_secs(120), || async {
        (bapi.revoked().len() >= third).then_some(())
    })
    .await;
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert!(!status.success());
    let checkpoint = gw.state_dir().join("revoke-remote.json");
    assert!(checkpoint.exists(), "the killed run left its checkpoint");
    assert!(bapi.revoked().len() < live_at_start.len(), "killed mid-run");

    // Without --resume, a second run refuses to start over.
    let again = cli(&gw, &gw.config_path, &["revoke", "--remote", "--all", "--yes", "--rate", "100000"]).await;
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("--resume"), "{}", text(&again));

    let out =
        cli(&gw, &gw.config_path, &["revoke", "--remote", "--all", "--resume", "--json", "--rate", "100000"]).await;
    assert!(out.status.success(), "{}", text(&out));
    exactly_once(&bapi, &live_at_start);
    let summary = json(&out);
    assert_eq!(summary["resumed"], true);
    assert_eq!(summary["totals"]["users"], 2000, "every user exactly once across both runs (or redone): {summary}");
    assert!(!checkpoint.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_cursor_the_walk_pages_by_offset_and_misses_nobody() {
    let (bapi, gw) = setup(1100).await;
    bapi.without_cursor();
    let live_at_start = live(&bapi);
    let out = cli(&gw, &gw.config_path, &["revoke", "--remote", "--all", "--yes", "--json", "--rate", "100000"]).await;
    assert!(out.status.success(), "{}", text(&out));
    exactly_once(&bapi, &live_at_start);
    let summary = json(&out);
    assert_eq!(summary["paging"], "offset");
    assert_eq!(summary["totals"]["users"], 1100);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_user_one_session_dry_runs_and_the_confirmation() {
    let (bapi, gw) = setup(8).await;

    // --dry-run counts and revokes nothing, not even at the gateway.
    let out = cli(&gw, &gw.config_path, &["revoke", "--remote", "--all", "--dry-run"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("8 users, about"), "{}", text(&out));
    let out = cli(&gw, &gw.config_path, &["revoke", "--remote", "--user", "user_000000", "--dry-run"]).await;
    assert!(text(&out).contains("sess_000000_0") && text(&out).contains("sess_000000_2"), "{}", text(&out));
    assert!(bapi.revoked().is_empty());
    assert!(gw.admin("GET", "/revocations", None).await.json()["issued_before"].is_null());

    // --all without a terminal and without --yes is refused.
    let out = cli(&gw, &gw.config_path, &["revoke", "--remote", "--all"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--yes"), "{}", text(&out));
    assert!(bapi.revoked().is_empty());

    // One user: the gateway refuses the user, Clerk revokes the two active and the pending one.
    let out = cli(&gw, &gw.config_path, &["revoke", "--remote", "--user", "user_000000", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["totals"]["revoked"], 3);
    let revocations = gw.admin("GET", "/revocations", None).await.json();
    assert!(revocations["users"]["user_000000"].is_object(), "{revocations}");

    // One session; then the same one again (ended) and one that does not exist (404).
    let out = cli(&gw, &gw.config_path, &["revoke", "--remote", "--session", "sess_000001_0", "--verify"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("1 now"), "{}", text(&out));
    assert!(text(&out).contains("0 sessions still active"), "{}", text(&out));
    let out = cli(&gw, &gw.config_path, &["revoke", "--remote", "--session", "sess_nope", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out)["totals"]["already_gone"], 1);
    assert_eq!(bapi.revoked().values().sum::<u32>(), 4);
    assert!(bapi.revoked_again().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_key_a_failing_api_and_slow_answers_end_in_what_to_do() {
    let (bapi, gw) = setup(10).await;

    // A key Clerk does not take: exit 3, nothing revoked anywhere, the next step named.
    let wrong = config_variant(&gw, "wrong-key.toml", |t| t.replace(SECRET, "sk_test_deleted_key"));
    let out = cli(&gw, &wrong, &["revoke", "--remote", "--all", "--yes"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("clerk_key_invalid") && said.contains("keys check"), "{said}");
    assert!(said.contains("clerkgate revoke --issued-before now"), "{said}");
    assert!(!said.contains("sk_test_deleted_key"));
    assert!(gw.admin("GET", "/revocations", None).await.json()["issued_before"].is_null());

    // Clerk failing with 500 on every try: exit 1, the status page and --resume named.
    bapi.fault(Fault::Status(500));
    let out = cli(&gw, &gw.config_path, &["revoke", "--remote", "--user", "user_000001"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("status.clerk.com") && text(&out).contains("after 6 attempts"), "{}", text(&out));

    // Answers slower than the timeout: the same, no hang.
    bapi.fault(Fault::Slow(Duration::from_secs(30)));
    let out = cli(&gw, &gw.config_path, &["revoke", "--remote", "--session", "sess_x", "--timeout", "300ms"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no answer within 300ms") && text(&out).contains("run the command again"),
        "{}",
        text(&out)
    );
    let out = cli(&gw, &gw.config_path, &["keys", "check", "--timeout", "300ms"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("NOT CHECKED"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_check_names_the_instance_and_says_when_the_key_is_wrong() {
    let (bapi, gw) = setup(1).await;
    let fingerprint = clerkgate::config::Secret::new(SECRET).fingerprint();
    // Wait until the gateway has fetched the stand-in's JWKS, so there is something to compare.
    eventually("the gateway's remote keys", Duration::from_secs(10), || async {
        let status = gw.admin("GET", "/status", None).await.json();
        (status["keys"]["kids"][0] == KID).then_some(())
    })
    .await;

    let out = cli(&gw, &gw.config_path, &["keys", "check"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("ACCEPTED") && said.contains(KID) && said.contains(&fingerprint), "{said}");
    assert!(said.contains("gateway       same instance") && said.contains("jwt_key       same instance"), "{said}");
    assert!(!said.contains(SECRET));
    let out = cli(&gw, &gw.config_path, &["keys", "check", "--json"]).await;
    let v = json(&out);
    assert_eq!((v["result"].as_str(), v["instances"][0].as_str()), (Some("accepted"), Some(KID)));
    assert_eq!(v["secret_key"]["fingerprint"], fingerprint.as_str());

    // Rejected.
    let wrong = config_variant(&gw, "wrong.toml", |t| t.replace(SECRET, "sk_test_other"));
    let out = cli(&gw, &wrong, &["keys", "check"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("REJECTED") && text(&out).contains("API keys"), "{}", text(&out));
    assert!(!text(&out).contains("sk_test_other"));

    // Unreachable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gone = config_variant(&gw, "gone.toml", |t| t.replace(&bapi.url(), &format!("http://{closed}")));
    let out = cli(&gw, &gone, &["keys", "check"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("did not answer"), "{}", text(&out));

    // A key of another instance: its JWKS holds another key than the gateway's.
    let other = Bapi::start(SECRET, support::other_key().jwks("ins_other"), 0, sessions).await;
    let foreign = config_variant(&gw, "foreign.toml", |t| t.replace(&bapi.url(), &other.url()));
    let out = cli(&gw, &foreign, &["keys", "check"]).await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("ANOTHER INSTANCE") && text(&out).contains("DIFFERENT"), "{}", text(&out));
}
