//! `clerkgate demo`, run as a user would: the real binary as a child process, and every `curl`
//! line it prints executed exactly as printed with `sh -c`. The addresses are read from the
//! printed lines (the demo prefers 8080/9901 and falls back to free ports).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::raw;

/// Demos run one at a time: two starting together could both see 8080 free and race for it.
static ONE_DEMO: Mutex<()> = Mutex::new(());

/// The reasons for a request without any session: the gateway's own, and Clerk's for a
/// production instance's cookie path (no `__session`, no `__client_uat`).
const NO_SESSION: &[&str] = &["session-token-missing", "session-token-and-uat-missing"];

/// How long the demo may take to print its lines (it generates an RSA key first).
const STARTUP: Duration = Duration::from_secs(60);

/// The running demo: the child, its printed command lines by section, and its stderr file.
struct Demo {
    child: Child,
    /// `sections[n]` holds the command lines printed under `# n.`.
    sections: Vec<Vec<String>>,
    stdout: String,
    stderr: tempfile::NamedTempFile,
}

impl Demo {
    fn start() -> Demo {
        let curl = Command::new("curl").arg("--version").output();
        assert!(
            curl.as_ref().is_ok_and(|o| o.status.success()),
            "the demo test runs the printed curl lines and needs curl on PATH (apt-get install curl): {curl:?}"
        );
        let stderr = tempfile::NamedTempFile::new().expect("stderr file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_clerkgate"))
            .arg("demo")
            .env_remove("CLERKGATE_CONFIG")
            .env_remove("CLERK_EMERGENCY_BYPASS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.reopen().expect("reopen stderr file"))
            .spawn()
            .expect("spawn clerkgate demo");

        // Read stdout on a thread so the wait for the printed lines can be bounded.
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            // Keep draining after the test stops listening: a closed pipe would make the demo's
            // next write fail while it is still serving the commands under test.
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });

        let mut demo = Demo { child, sections: vec![Vec::new(); 16], stdout: String::new(), stderr };
        let deadline = Instant::now() + STARTUP;
        let mut section = 0usize;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => demo.fail(&format!("the demo stopped printing before its `# 7.` command ({e:?})")),
            };
            demo.stdout.push_str(&line);
            demo.stdout.push('\n');
            if let Some(n) = line.strip_prefix("# ").and_then(|r| r.split('.').next()).and_then(|n| n.parse().ok()) {
                section = n;
                assert!(section < demo.sections.len(), "unexpected section # {section}");
            } else if line.starts_with("curl ") || line.contains(" token --key ") {
                demo.sections[section].push(line);
                if section == 7 {
                    break;
                }
            }
        }
        demo
    }

    /// The `i`-th command printed under `# n.`.
    fn line(&self, n: usize, i: usize) -> &str {
        self.sections[n]
            .get(i)
            .unwrap_or_else(|| panic!("no command {i} under # {n}; the demo printed:\n{}", self.stdout))
    }

    /// Runs a printed line exactly as printed; returns its stdout.
    fn run(&self, line: &str) -> String {
        let out = Command::new("sh").arg("-c").arg(line).output().expect("run sh");
        if !out.status.success() {
            self.fail(&format!("`{line}` exited with {}: {}", out.status, String::from_utf8_lossy(&out.stderr)));
        }
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Runs a printed `curl -s` line; its output is the body, which must be JSON.
    fn run_json(&self, line: &str) -> Value {
        let out = self.run(line);
        serde_json::from_str(&out).unwrap_or_else(|e| self.fail(&format!("`{line}` did not print JSON ({e}):\n{out}")))
    }

    /// Runs a printed `curl -si` line and parses the response.
    fn run_si(&self, line: &str) -> raw::RawReply {
        assert!(line.starts_with("curl -si "), "not a `curl -si` line: {line}");
        raw::parse(self.run(line).as_bytes())
    }

    /// The gateway's base URL as printed (`  gateway   http://…`).
    fn gateway_url(&self) -> String {
        self.printed("gateway")
    }

    /// The URL or path after `label` on the indented line that starts with it
    /// (`  sign in   http://…`, `  files     /tmp/…`).
    fn printed(&self, label: &str) -> String {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("  "))
            .filter_map(|l| l.trim_start().strip_prefix(label).filter(|r| r.starts_with(' ')))
            .filter_map(|r| r.split_whitespace().next())
            .find(|w| w.contains("://") || w.starts_with('/'))
            .unwrap_or_else(|| panic!("no `{label}` line in:\n{}", self.stdout))
            .to_string()
    }

    fn fail(&self, why: &str) -> ! {
        let stderr = std::fs::read_to_string(self.stderr.path()).unwrap_or_default();
        panic!("{why}\n--- demo stdout ---\n{}\n--- demo stderr ---\n{stderr}", self.stdout);
    }

    /// Ctrl-C: SIGINT, then the demo must exit 0 within a few seconds.
    fn interrupt(mut self) {
        let kill = Command::new("kill").arg("-INT").arg(self.child.id().to_string()).status().expect("run kill");
        assert!(kill.success(), "kill -INT failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the demo") {
                break status;
            }
            if Instant::now() > deadline {
                self.fail("the demo did not exit within 10 s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.success() {
            self.fail(&format!("the demo exited with {status} after SIGINT"));
        }
        // Its files (the dev signing key among them) are cleaned up on the way out.
        let files = self
            .stdout
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("files"))
            .map(str::trim)
            .unwrap_or_else(|| self.fail("no `files` line printed"));
        assert!(!std::path::Path::new(files).exists(), "the demo left {files} behind");
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        // A failed test must not leave the child running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Every value the echo upstream received for `name`.
fn echoed<'a>(echo: &'a Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("not an echo reply: {echo}"))
        .iter()
        .filter(|p| p[0].as_str().is_some_and(|k| k.eq_ignore_ascii_case(name)))
        .filter_map(|p| p[1].as_str())
        .collect()
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_DEMO.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn demo_prints_curl_lines_that_work_as_printed() {
    let _one = lock();
    let demo = Demo::start();

    // 1. A valid token: the echo answers, with the token's identity.
    let echo = demo.run_json(demo.line(1, 0));
    assert_eq!(echoed(&echo, "x-clerk-user-id"), ["user_2demo"], "{echo}");
    assert_eq!(echoed(&echo, "x-clerk-session-id"), ["sess_2demo"], "{echo}");
    assert_eq!(echoed(&echo, "x-clerk-auth-status"), ["signed-in"], "{echo}");
    assert_eq!(echo["path"], "/api/hello");

    // 2. No token: 401, no session (the gateway's reason, or Clerk's for a cookie-less request).
    let reply = demo.run_si(demo.line(2, 0));
    assert_eq!(reply.status, 401, "{reply:?}");
    let reason = reply.header("x-clerk-auth-reason").unwrap_or_default();
    assert!(NO_SESSION.contains(&reason), "{reply:?}");
    assert!(reply.body.contains(reason), "{reply:?}");

    // 3. A forged identity header is replaced by the token's.
    let echo = demo.run_json(demo.line(3, 0));
    assert_eq!(echoed(&echo, "x-clerk-user-id"), ["user_2demo"], "{echo}");
    assert!(!echo.to_string().contains("user_evil"), "user_evil reached the upstream: {echo}");

    // 4. Not a JWT: 401 token-invalid.
    let reply = demo.run_si(demo.line(4, 0));
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reply.header("x-clerk-auth-reason"), Some("token-invalid"));

    // 5. The org admin on the admin-only route, with org headers (v2 claims).
    let echo = demo.run_json(demo.line(5, 0));
    assert_eq!(echo["path"], "/api/admin/panel", "{echo}");
    assert_eq!(echoed(&echo, "x-clerk-user-id"), ["user_2admin"], "{echo}");
    assert_eq!(echoed(&echo, "x-clerk-org-id"), ["org_2demo"], "{echo}");
    assert_eq!(echoed(&echo, "x-clerk-org-role"), ["org:admin"], "{echo}");
    assert_eq!(echoed(&echo, "x-clerk-org-slug"), ["demo-org"], "{echo}");
    let permissions = echoed(&echo, "x-clerk-org-permissions");
    assert_eq!(permissions.len(), 1, "{echo}");
    assert!(permissions[0].split(',').any(|p| p == "org:billing:manage"), "{echo}");

    // 7. The printed `token --key` command mints a token the gateway accepts.
    let token = demo.run(demo.line(7, 0));
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token:?}");
    let out = Command::new("curl")
        .args(["-s", &format!("{}/api/hello", demo.gateway_url()), "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .output()
        .expect("run curl");
    let echo: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        demo.fail(&format!("minted token refused ({e}): {}", String::from_utf8_lossy(&out.stdout)))
    });
    assert_eq!(echoed(&echo, "x-clerk-user-id"), ["user_2you"], "{echo}");

    demo.interrupt();
}

#[test]
fn demo_bypass_lines_open_and_close_bypass() {
    let _one = lock();
    let demo = Demo::start();
    assert_eq!(demo.sections[6].len(), 3, "expected PUT bypass, curl, PUT enforce under # 6:\n{}", demo.stdout);

    // Before: enforced.
    let before = demo.run_si(demo.line(2, 0));
    assert_eq!(before.status, 401, "{before:?}");

    // Bypass on (the printed PUT), then the printed request passes, tagged.
    let put = demo.run(demo.line(6, 0));
    let reply = demo.run_si(demo.line(6, 1));
    assert_eq!(reply.status, 200, "after `{}` (answered {put:?}): {reply:?}", demo.line(6, 0));
    assert_eq!(reply.header("x-auth-bypass"), Some("true"), "{reply:?}");
    let echo: Value = serde_json::from_str(&reply.body).expect("echo JSON");
    assert_eq!(echoed(&echo, "x-auth-bypass"), ["true"], "{echo}");
    assert_eq!(echoed(&echo, "x-clerk-auth-status"), ["bypass"], "{echo}");

    // The admin-only route stays enforced in bypass (bypass = "never").
    let admin_only = demo.run_si(&demo.line(6, 1).replace("/api/hello", "/api/admin/panel"));
    assert_eq!(admin_only.status, 401, "{admin_only:?}");

    // Back to enforce (the printed PUT): the same request is refused again.
    let _ = demo.run(demo.line(6, 2));
    let after = demo.run_si(demo.line(6, 1));
    assert_eq!(after.status, 401, "after `{}`: {after:?}", demo.line(6, 2));
    assert!(NO_SESSION.contains(&after.header("x-clerk-auth-reason").unwrap_or_default()), "{after:?}");
    assert_eq!(after.header("x-auth-bypass"), None);

    demo.interrupt();
}

/// A browser's cookies by name: host-only on 127.0.0.1, which every port shares.
#[derive(Default, Debug)]
struct Jar(std::collections::BTreeMap<String, String>);

impl Jar {
    /// Takes a response's `Set-Cookie` headers (`Max-Age=0` deletes).
    fn take(&mut self, headers: &reqwest::header::HeaderMap) {
        for v in headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            let mut parts = v.split(';').map(str::trim);
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else { continue };
            if parts.any(|a| a.eq_ignore_ascii_case("max-age=0")) {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_string(), value.to_string());
            }
        }
    }

    fn header(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }
}

/// A page load as a browser sends it, with the jar's cookies; no redirect followed.
async fn page_load(client: &reqwest::Client, url: &str, jar: &mut Jar) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = client
        .get(url)
        .header("sec-fetch-dest", "document")
        .header("accept", "text/html,application/xhtml+xml")
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    jar.take(resp.headers());
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.text().await.unwrap_or_default())
}

#[test]
fn demo_sign_in_url_signs_a_browser_in_and_the_handshake_keeps_it_signed_in() {
    let _one = lock();
    let demo = Demo::start();
    let (sign_in, clerk, gw) = (demo.printed("sign in"), demo.printed("clerk"), demo.gateway_url());
    let key_file = std::path::Path::new(&demo.printed("files")).join("dev-signing-key.pem");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let client =
            reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let mut jar = Jar::default();

        // The printed sign-in URL answers with the sign-in page.
        let (status, _, page) = page_load(&client, &sign_in, &mut jar).await;
        assert_eq!(status, 200, "{sign_in}: {page}");
        assert!(page.contains(r#"<form method="post" action="/sign-in">"#), "{page}");

        // A signed-out page load of the protected page goes to that sign-in page.
        let app = format!("{gw}/app");
        let (status, headers, body) = page_load(&client, &app, &mut Jar::default()).await;
        assert_eq!(status, 307, "{app} signed out: {body}");
        let to = headers["location"].to_str().expect("location");
        assert!(to.starts_with(&format!("{clerk}/sign-in?redirect_url=")), "{to}");

        // Signing in sets Clerk's cookies and sends the browser to the protected page.
        let form = format!(
            "user=user_2demo&redirect_url={}",
            percent_encoding::utf8_percent_encode(&app, percent_encoding::NON_ALPHANUMERIC)
        );
        let resp = client
            .post(format!("{clerk}/sign-in"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("sign in");
        assert_eq!(resp.status().as_u16(), 303, "{resp:?}");
        assert_eq!(resp.headers()["location"], app.as_str());
        jar.take(resp.headers());
        let (status, _, body) = page_load(&client, &app, &mut jar).await;
        assert_eq!(status, 200, "{app} after signing in: {body}\njar: {jar:?}");
        let echo: Value = serde_json::from_str(&body).expect("echo JSON");
        assert_eq!(echoed(&echo, "x-clerk-auth-status"), ["signed-in"], "{echo}");
        assert_eq!(echoed(&echo, "x-clerk-user-id"), ["user_2demo"], "{echo}");

        // Past the token's lifetime: the session cookie has expired.
        let key = clerkgate::mint::SigningKey::from_pem(&std::fs::read_to_string(&key_file).expect("the demo's key"))
            .expect("key");
        let now = clerkgate::clock::Clock::system().now_ms() / 1000;
        let fresh = jar.0.get("__session").cloned().expect("a __session cookie");
        let mut claims =
            clerkgate::mint::TokenSpec { sub: "user_2demo".into(), ..Default::default() }.claims(now - 300);
        let fresh_claims = crate::support::claims_of(&fresh);
        claims["sid"] = fresh_claims["sid"].clone();
        claims["iss"] = fresh_claims["iss"].clone();
        let expired = key.sign(Some("demo-key"), &claims);
        for (name, value) in jar.0.iter_mut() {
            if name.starts_with("__session") {
                *value = expired.clone();
            } else if name.starts_with("__client_uat") {
                *value = (now - 600).to_string();
            }
        }

        // Reload: a 307 handshake through the stand-in Frontend API ...
        let (status, headers, body) = page_load(&client, &app, &mut jar).await;
        assert_eq!(status, 307, "an expired session on a page load gets Clerk's handshake: {body}");
        let location = headers["location"].to_str().expect("location").to_string();
        assert!(location.starts_with(&format!("{clerk}/v1/client/handshake?")), "{location}");
        assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
        let (status, headers, body) = page_load(&client, &location, &mut jar).await;
        assert_eq!(status, 307, "the stand-in's handshake: {body}");
        let back = headers["location"].to_str().expect("location").to_string();
        assert!(back.starts_with(&app), "{back}");

        // ... and back on the page, signed in, with a fresh session cookie.
        let (status, _, body) = page_load(&client, &back, &mut jar).await;
        assert_eq!(status, 200, "{back}: {body}");
        let echo: Value = serde_json::from_str(&body).expect("echo JSON");
        assert_eq!(echoed(&echo, "x-clerk-auth-status"), ["signed-in"], "{echo}");
        assert_eq!(echoed(&echo, "x-clerk-user-id"), ["user_2demo"], "{echo}");
        let renewed = jar.0.get("__session").cloned().expect("a __session cookie");
        assert_ne!(renewed, expired, "the browser still holds the expired token");
    });
    demo.interrupt();
}
