//! A real browser through the real binary (issue #12 item 8): Debian's headless Chromium signs
//! in on the stand-in Clerk's page, lands on the protected app signed in, and — with its
//! session cookie expired, as after a minute away from the tab — loads a page again: the
//! gateway's 307 handshake takes it through the stand-in Frontend API and back, and it ends on
//! the page it asked for, signed in, with a fresh cookie and no handshake parameter in the URL.
//!
//! Skipped with a message when `chromium` is not on PATH (`.ci/run` installs it).

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;
use clerkgate::devtools::frontend::{ClerkStandIn, StandInOptions};
use serde_json::{json, Value};

use crate::support::cdp::{self, Browser};
use crate::support::{self, binary_config, key, toml_str, with_keys, BinaryGateway, KID};

/// The instance: a development publishable key, as the demo's.
const FRONTEND_API: &str = "browser-dev-7.clerk.accounts.dev";

fn publishable_key() -> String {
    format!("pk_test_{}", base64::engine::general_purpose::STANDARD.encode(format!("{FRONTEND_API}$")))
}

/// The echo upstream's report, when the page shows one.
fn echo_of(page: &Value) -> Option<Value> {
    let v: Value = serde_json::from_str(page["text"].as_str()?).ok()?;
    v["headers"].is_array().then_some(v)
}

fn echoed_header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"].as_array()?.iter().find(|p| p[0].as_str() == Some(name)).and_then(|p| p[1].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_cookie_ends_on_the_page_signed_in_through_the_handshake() {
    let Some(chromium) = cdp::chromium() else {
        support::skip_without_tool("browser: `chromium` is not on PATH (.ci/run installs Debian's chromium)");
        return;
    };
    let pk = publishable_key();
    let standin = ClerkStandIn::spawn(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        StandInOptions::new(&pk, "sk_test_browser", key(), KID).expect("stand-in options"),
    )
    .await
    .expect("stand-in Clerk");
    let upstream = support::upstream().await;
    // The stand-in is the Frontend API (Clerk's proxy mode: clerk.proxy_url) and the Backend API.
    let config = with_keys(
        &binary_config(upstream).text(),
        "clerk",
        &format!(
            "publishable_key = {}\nsecret_key = {}\napi_url = {}\nproxy_url = {}",
            toml_str(&pk),
            toml_str("sk_test_browser"),
            toml_str(&standin.url()),
            toml_str(&standin.url())
        ),
    );
    let gw = BinaryGateway::start(&config, &[]);
    let app = gw.url("/dashboard");

    let mut browser = Browser::launch(&chromium).await;
    let page = browser.new_page().await;

    // Sign in on the stand-in's page; it sends the browser back to the protected page.
    browser.navigate(&page, &format!("{}?redirect_url={app}", standin.sign_in_url())).await;
    browser
        .wait_for(&page, "the sign-in form", Duration::from_secs(20), |p| {
            p["href"].as_str().unwrap_or_default().contains("/sign-in")
        })
        .await;
    browser
        .eval(&page, "document.querySelector('input[name=user]').value = 'user_2browser'; document.querySelector('form').submit(); true")
        .await;
    let first = browser
        .wait_for(&page, "the app, signed in, after signing in", Duration::from_secs(20), |p| {
            p["href"] == json!(app) && echo_of(p).is_some()
        })
        .await;
    let echo = echo_of(&first).expect("echo");
    assert_eq!(echoed_header(&echo, "x-clerk-auth-status"), Some("signed-in"), "after sign-in: {first}");
    assert_eq!(echoed_header(&echo, "x-clerk-user-id"), Some("user_2browser"));

    // A minute later: the session token has expired; the client was last updated ten minutes ago.
    let cookies = browser.cookies().await;
    let fresh = cookies
        .iter()
        .find(|c| c["name"] == "__session")
        .and_then(|c| c["value"].as_str())
        .expect("a __session cookie");
    let sid = support::claims_of(fresh)["sid"].as_str().expect("sid").to_string();
    let now = support::now_s();
    let expired = support::sign(&support::claims_at(now - 300, |c| {
        c.insert("sub".into(), "user_2browser".into());
        c.insert("sid".into(), sid.clone().into());
        c.insert("iss".into(), format!("https://{FRONTEND_API}").into());
    }));
    let stale: Vec<Value> = cookies
        .iter()
        .filter_map(|c| {
            let name = c["name"].as_str()?;
            let value = if name.starts_with("__session") {
                expired.clone()
            } else if name.starts_with("__client_uat") {
                (now - 600).to_string()
            } else {
                return None;
            };
            Some(json!({ "name": name, "value": value, "domain": "127.0.0.1", "path": "/" }))
        })
        .collect();
    browser.set_cookies(json!(stale)).await;

    // Load a page: 307 to the Frontend API, back with the handshake, resolved by the gateway.
    let target = gw.url("/dashboard?tab=1");
    let calls_before = standin.calls().len();
    browser.navigate(&page, &target).await;
    let last = browser
        .wait_for(&page, "the page, signed in again", Duration::from_secs(30), |p| {
            p["href"] == json!(target)
                && echo_of(p).is_some_and(|e| echoed_header(&e, "x-clerk-auth-status") == Some("signed-in"))
        })
        .await;
    let href = last["href"].as_str().unwrap_or_default();
    assert!(!href.contains("__clerk"), "a handshake parameter is left in the final URL: {href}");
    let echo = echo_of(&last).expect("echo");
    assert_eq!(echoed_header(&echo, "x-clerk-user-id"), Some("user_2browser"));
    assert_eq!(echo["uri"], json!("/dashboard?tab=1"), "the app got the clean URL");

    // The browser holds a fresh session token now, and the app received it.
    let cookies = browser.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "__session")
        .and_then(|c| c["value"].as_str())
        .expect("a __session cookie");
    assert_ne!(session, expired, "the browser still holds the expired token");
    let exp = support::claims_of(session)["exp"].as_i64().expect("exp");
    assert!(exp > support::now_s(), "the browser's new token is not fresh: exp {exp}");
    let sent = echoed_header(&echo, "cookie").unwrap_or_default();
    assert!(sent.contains(session), "the app did not receive the fresh token; it got cookies: {sent}");
    let calls = standin.calls()[calls_before..].to_vec();
    assert!(
        calls.iter().any(|c| c.starts_with("GET /v1/clients/handshake_payload")),
        "the gateway never resolved a handshake at the Backend API: {calls:?}"
    );
    drop(browser);
    gw.stop().await;
}
