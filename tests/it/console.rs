//! Issue #15, the on-call console on the admin listener, through the real binary: the security
//! headers on every console response, the login-only page without a token, cross-site posts
//! refused, the read-only page with scripts off (plain HTTP); then Debian's headless Chromium
//! signs in, reads the mode, key ids and timeline, shows an audit reason holding `<script>` as
//! text, flips to bypass through the confirmation and sees it on the data plane, revokes a
//! session, filters the timeline, and takes the screenshots the README shows.
//!
//! Set `CLERKGATE_WRITE_SCREENSHOTS=1` to write them to docs/console-enforce.png and
//! docs/console-bypass.png; otherwise they go to a temporary directory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::support::cdp::{self, Browser};
use crate::support::jwks::{JwksReply, JwksServer};
use crate::support::{self, binary_config, toml_str, BinaryGateway, Reply, ADMIN_TOKEN, KID};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// An audit reason an attacker might type into a revocation.
const HOSTILE: &str = "<script>window.pwned=1</script><img src=x onerror=\"window.pwned=2\"> & co";

/// The binary, its keys from a JWKS served on loopback (so the console has key ids to show).
async fn console_gateway() -> (BinaryGateway, JwksServer) {
    let jwks = JwksServer::start(JwksReply::Json(support::key().jwks(KID))).await;
    let networkless = format!("jwt_key = {}", toml_str(&support::key().public_pem()));
    let text = binary_config(support::upstream().await).text();
    assert!(text.contains(&networkless));
    let gw = BinaryGateway::start(&text.replace(&networkless, &format!("jwks_url = {}", toml_str(&jwks.url()))), &[]);
    let until = Instant::now() + Duration::from_secs(10);
    while !support::client().get(gw.admin_url("/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < until, "the gateway did not become ready:\n{}", gw.logs().join("\n"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (gw, jwks)
}

/// `method path` on the admin listener with these headers and an optional form body.
async fn call(gw: &BinaryGateway, method: &str, path: &str, headers: &[(&str, &str)], form: Option<&str>) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = support::client().request(method, gw.admin_url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = form {
        req = req.header("content-type", "application/x-www-form-urlencoded").body(body.to_string());
    }
    Reply::from(req.send().await.expect("admin request")).await
}

/// A console request: method, path, headers, form body, and the status it must get.
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Option<&'a str>, u16);

fn assert_secure(r: &Reply, what: &str) {
    let expected = [
        ("content-security-policy", CSP),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"),
    ];
    for (name, value) in expected {
        assert_eq!(r.header(name), Some(value), "{what}: {name} (status {}, headers {:?})", r.status, r.headers);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_over_plain_http_headers_login_only_cross_site_refused_and_a_read_only_page() {
    let (gw, _jwks) = console_gateway().await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let host = gw.admin_addr.to_string();
    let origin = format!("http://{host}");
    gw.admin("POST", "/revocations", Some(json!({"user_id": "user_hostile", "reason": HOSTILE}))).await;

    // Every console response, answers and refusals alike, carries the security headers.
    let cases: Vec<Case> = vec![
        ("GET", "/console", vec![], None, 200),
        ("GET", "/console/app.js", vec![], None, 200),
        ("GET", "/console/app.css", vec![], None, 200),
        ("GET", "/console/state", vec![("authorization", &bearer)], None, 200),
        ("GET", "/console/state", vec![], None, 401),
        ("GET", "/console/state", vec![("authorization", "Bearer wrong")], None, 401),
        ("GET", "/console/nothing-here", vec![], None, 404),
        ("GET", "/console", vec![("host", "evil.example")], None, 403),
        ("GET", "/console", vec![("origin", "http://evil.example")], None, 403),
        ("POST", "/console", vec![("origin", &origin)], Some("token=test-admin-token-0123456789"), 200),
        ("POST", "/console", vec![("origin", &origin)], Some("token=wrong"), 401),
        ("POST", "/console", vec![("origin", "http://evil.example")], Some("token=test-admin-token-0123456789"), 403),
        ("POST", "/console", vec![("sec-fetch-site", "cross-site")], Some("token=test-admin-token-0123456789"), 403),
        ("POST", "/console", vec![], Some("token=test-admin-token-0123456789"), 403),
    ];
    for (method, path, headers, form, status) in &cases {
        let r = call(&gw, method, path, headers, *form).await;
        let what = format!("{method} {path} {headers:?}");
        assert_eq!(r.status, *status, "{what}: {}", r.body);
        assert_secure(&r, &what);
    }

    // Without the token the page is the login and nothing else: no state, no key id.
    let page = call(&gw, "GET", "/console", &[], None).await;
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(page.body.contains("id=\"login-form\"") && page.body.contains("type=\"password\""), "{}", page.body);
    assert!(page.body.contains("<div id=\"state\"></div>"), "the shell carries state: {}", page.body);
    for secret in [KID, "enforce</p>", "revocation.add", "user_hostile"] {
        assert!(!page.body.contains(secret), "the page without a token shows {secret:?}: {}", page.body);
    }
    // One script, from the console's own origin; no inline script or style anywhere.
    assert_eq!(page.body.matches("<script").count(), 1);
    assert!(page.body.contains("<script src=\"/console/app.js\" defer></script>"));
    assert!(!page.body.contains("style=") && !page.body.contains("<style"));

    // A cross-site change through the JSON API is refused as before, and changes nothing.
    let flip = support::client()
        .put(gw.admin_url("/mode"))
        .header("authorization", &bearer)
        .header("origin", "http://evil.example")
        .json(&json!({"mode": "bypass", "reason": "csrf", "ttl": "5m"}))
        .send()
        .await
        .expect("put");
    assert_eq!(flip.status(), 403);
    assert_eq!(gw.admin("GET", "/mode", None).await.json()["mode"], "enforce");

    // Scripts off: the login form posts the token and the page holds the state and timeline,
    // the hostile reason escaped.
    let form = format!("token={}", ADMIN_TOKEN);
    let read_only = call(&gw, "POST", "/console", &[("origin", &origin)], Some(&form)).await;
    let body = &read_only.body;
    for expected in
        ["data-view=\"static\"", "Mode in force", KID, "revocation.add", "user_hostile", "<svg id=\"outcomes\""]
    {
        assert!(body.contains(expected), "the read-only page lacks {expected:?}: {body}");
    }
    assert!(body.contains(
        "&lt;script&gt;window.pwned=1&lt;/script&gt;&lt;img src=x onerror=&quot;window.pwned=2&quot;&gt; &amp; co"
    ));
    assert_eq!(body.matches("<script").count(), 1, "a script tag other than app.js: {body}");
}

/// Writes a PNG from `Page.captureScreenshot` and returns where.
async fn screenshot(browser: &mut Browser, page: &str, name: &str, dir: &std::path::Path) -> PathBuf {
    let shot = browser.call(Some(page), "Page.captureScreenshot", json!({"format": "png"})).await;
    let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().expect("data")).expect("base64");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let path = dir.join(name);
    std::fs::write(&path, png).expect("write screenshot");
    path
}

/// Evaluates `js` and returns its value as a string (JSON for objects).
async fn text(browser: &mut Browser, page: &str, js: &str) -> String {
    match browser.eval(page, js).await {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Polls `js` (every 100 ms, 15 s at most) until it is `true`.
async fn until(browser: &mut Browser, page: &str, what: &str, js: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while browser.eval(page, js).await != json!(true) {
        let body = text(browser, page, "document.body ? document.body.innerText : ''").await;
        assert!(Instant::now() < deadline, "the console never showed {what}; it shows:\n{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_browser_shows_the_state_and_flips_the_mode_with_a_confirmation() {
    let Some(chromium) = cdp::chromium() else {
        support::skip_without_tool("console: `chromium` is not on PATH (.ci/run installs Debian's chromium)");
        return;
    };
    let (gw, _jwks) = console_gateway().await;
    gw.admin("POST", "/revocations", Some(json!({"user_id": "user_hostile", "reason": HOSTILE}))).await;
    // Traffic for the chart: signed in, and refused without a token.
    let token = support::sign(&support::claims_at(support::now_s(), |_| {}));
    assert_eq!(gw.get("/dashboard", Some(&token)).await.status, 200);
    assert_eq!(gw.get("/dashboard", None).await.status, 401);
    let shots_dir = match std::env::var_os("CLERKGATE_WRITE_SCREENSHOTS").is_some_and(|v| v == "1") {
        true => (PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs"), None),
        false => {
            let tmp = tempfile::tempdir().expect("tempdir");
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    std::fs::create_dir_all(&shots_dir.0).expect("screenshot dir");

    let mut browser = Browser::launch(&chromium).await;
    let page = browser.new_page().await;
    browser
        .call(
            Some(&page),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 1500, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;

    // Without the token: the login, nothing else.
    browser.navigate(&page, &gw.admin_url("/console")).await;
    until(
        &mut browser,
        &page,
        "the login form",
        "document.readyState === 'complete' && !document.getElementById('login').hidden",
    )
    .await;
    let shown = text(&mut browser, &page, "document.body.innerText").await;
    assert!(shown.contains("Admin token"), "{shown}");
    for hidden in ["Mode in force", KID, "Switch the mode"] {
        assert!(!shown.contains(hidden), "before sign-in the page shows {hidden:?}:\n{shown}");
    }
    assert_eq!(browser.eval(&page, "document.getElementById('state').childElementCount").await, json!(0));

    // Sign in: the token goes to sessionStorage, the state comes in.
    browser
        .eval(&page, &format!("document.getElementById('token').value = {}; document.getElementById('login-form').requestSubmit(); true", json!(ADMIN_TOKEN)))
        .await;
    until(&mut browser, &page, "the state", "!!document.getElementById('mode-name')").await;
    assert_eq!(browser.eval(&page, "document.getElementById('mode-name').textContent").await, json!("enforce"));
    assert_eq!(browser.eval(&page, "document.getElementById('mode-source').textContent").await, json!("file"));
    assert_eq!(
        browser.eval(&page, "[...document.querySelectorAll('#kids code')].map(c => c.textContent)").await,
        json!([KID])
    );
    assert_eq!(browser.eval(&page, "sessionStorage.getItem('clerkgate.admin-token')").await, json!(ADMIN_TOKEN));
    assert!(!text(&mut browser, &page, "location.href").await.contains(ADMIN_TOKEN), "the token is in the URL");
    let legend = text(&mut browser, &page, "document.querySelector('.legend').innerText").await;
    assert!(legend.contains("signed-in") && legend.contains("session-token-missing"), "chart legend: {legend}");
    assert!(browser.eval(&page, "document.querySelectorAll('#outcomes rect').length >= 2").await == json!(true));

    // The hostile reason is text, and nothing of it ran.
    let reasons =
        browser.eval(&page, "[...document.querySelectorAll('#timeline .reason')].map(r => r.textContent)").await;
    assert!(reasons.as_array().is_some_and(|r| r.contains(&json!(HOSTILE))), "timeline reasons: {reasons}");
    assert_eq!(browser.eval(&page, "typeof window.pwned").await, json!("undefined"));
    assert_eq!(browser.eval(&page, "document.querySelectorAll('script').length").await, json!(1));
    assert_eq!(browser.eval(&page, "document.querySelectorAll('#state img').length").await, json!(0));
    let enforce_png = screenshot(&mut browser, &page, "console-enforce.png", &shots_dir.0).await;

    // The switch: bypass for 30m, with the confirmation repeating what will happen.
    browser
        .eval(
            &page,
            "document.querySelector('input[name=mode][value=bypass]').checked = true;\
             document.getElementById('mode-reason').value = 'console drill: Clerk is down';\
             document.getElementById('mode-ttl').value = '30m';\
             document.getElementById('mode-review').click(); true",
        )
        .await;
    assert_eq!(browser.eval(&page, "document.getElementById('confirm').hidden").await, json!(false));
    let confirm = text(&mut browser, &page, "document.getElementById('confirm-text').textContent").await;
    assert!(confirm.contains("BYPASS for 30m") && confirm.contains("WITHOUT authentication"), "{confirm}");
    assert!(confirm.contains("console drill: Clerk is down"), "{confirm}");
    assert_eq!(gw.admin("GET", "/mode", None).await.json()["mode"], "enforce", "the review alone changed the mode");
    browser.eval(&page, "document.getElementById('confirm-yes').click(); true").await;
    until(
        &mut browser,
        &page,
        "the gateway's answer",
        "document.getElementById('result').textContent.includes('mode bypass')",
    )
    .await;
    until(&mut browser, &page, "bypass in force", "document.getElementById('mode-name').textContent === 'bypass'")
        .await;
    assert_eq!(browser.eval(&page, "document.body.className").await, json!("mode-bypass"));
    assert!(browser.eval(&page, "!!document.getElementById('bypass-banner')").await == json!(true));
    let left = text(&mut browser, &page, "document.getElementById('countdown').textContent").await;
    assert!(left.starts_with("29m") || left.starts_with("30m"), "countdown: {left}");
    assert_eq!(browser.eval(&page, "document.getElementById('mode-source').textContent").await, json!("admin"));

    // On the data plane: a request without a token is forwarded, tagged.
    let open = gw.get("/dashboard", None).await;
    assert_eq!(open.status, 200, "{}", open.body);
    assert_eq!(open.header("x-auth-bypass"), Some("true"));
    let bypass_png = screenshot(&mut browser, &page, "console-bypass.png", &shots_dir.0).await;

    // Revoke a session through the page, confirmed.
    browser
        .eval(
            &page,
            "document.getElementById('revoke-what').value = 'session_id';\
             document.getElementById('revoke-id').value = 'sess_console';\
             document.getElementById('revoke-reason').value = 'stolen laptop';\
             document.getElementById('revoke-review').click(); true",
        )
        .await;
    let confirm = text(&mut browser, &page, "document.getElementById('confirm-text').textContent").await;
    assert!(confirm.contains("Revoke session sess_console"), "{confirm}");
    browser.eval(&page, "document.getElementById('confirm-yes').click(); true").await;
    until(&mut browser, &page, "the revocation", "!!document.querySelector('#revocation-rows') && document.querySelector('#revocation-rows').textContent.includes('sess_console')").await;
    assert!(gw.admin("GET", "/revocations", None).await.json()["sessions"]["sess_console"].is_object());

    // The timeline, filtered by kind.
    browser
        .eval(
            &page,
            "const k = document.getElementById('kind'); k.value = 'mode'; k.dispatchEvent(new Event('change')); true",
        )
        .await;
    until(
        &mut browser,
        &page,
        "only mode events",
        "(() => { const e = [...document.querySelectorAll('#timeline .event')]; return e.length > 0 && e.every(x => x.dataset.kind === 'mode'); })()",
    )
    .await;
    let first = text(&mut browser, &page, "document.querySelector('#timeline .action').textContent").await;
    assert_eq!(first, "mode.set", "the newest event is first");

    // The triage button: the gateway runs triage and the page shows its verdict.
    browser.eval(&page, "document.getElementById('run-triage').click(); true").await;
    until(
        &mut browser,
        &page,
        "the triage verdict",
        "document.getElementById('result').textContent.startsWith('Triage: ')",
    )
    .await;

    // A reload keeps the tab's token: the console, not the login.
    browser.navigate(&page, &gw.admin_url("/console")).await;
    until(
        &mut browser,
        &page,
        "the console again",
        "!!document.getElementById('mode-name') && document.getElementById('login').hidden",
    )
    .await;
    drop(browser);
    eprintln!("screenshots: {} {}", enforce_png.display(), bypass_png.display());
}

/// The console's triage button: `POST /console/triage` runs triage inside the gateway (`clerkgate
/// run` brings it; the probes reach nothing here, which triage names), answers its report and
/// records it, so the state's "Latest triage" shows it. Cross-site, it is refused like any
/// console change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_runs_triage_and_shows_its_verdict() {
    let (gw, _jwks) = console_gateway().await;
    let bearer = format!("Bearer {ADMIN_TOKEN}");
    let r =
        call(&gw, "POST", "/console/triage", &[("authorization", &bearer), ("origin", "https://evil.example")], None)
            .await;
    assert_eq!(r.status, 403, "a cross-site triage: {}", r.body);
    assert_secure(&r, "a refused triage");

    let r = call(&gw, "POST", "/console/triage", &[("authorization", &bearer)], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_secure(&r, "triage");
    let report: Value = r.json();
    let category = report["category"].as_str().expect("a category").to_string();
    assert!(report["severity"].is_string() && report["next"].is_string(), "{report}");
    assert_eq!(report["recorded"], "in the gateway's audit log (triage.run)", "{report}");

    let state = call(&gw, "GET", "/console/state", &[("authorization", &bearer)], None).await;
    assert_eq!(state.status, 200, "{}", state.body);
    assert!(state.body.contains("Latest triage") && state.body.contains(&category), "{}", state.body);
}
