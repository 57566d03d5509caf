//! The CLI side of the admin API: `clerkgate mode|status|reload|keys refresh|revoke`.
//! Human output by default, the raw JSON with `--json`, and errors that say what to do. Answers
//! are read into the same types the router writes ([`super::api`]).

use std::process::ExitCode;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::api::{ApiError, KeysLoaded, ModeView, ReloadView, Reloaded, Revocations, Status};
use crate::config::{vars, Env};
use crate::mode::ModeSource;

/// Calls the admin API and prints the answer, read as a `T`, with `show`. Exit 0 on success, 2
/// when the gateway refused the request as invalid (422: a bad config on reload, a missing
/// reason), 1 when the call failed otherwise.
pub async fn call<T: DeserializeOwned>(
    base: &str,
    env: &Env,
    method: http::Method,
    path: &str,
    body: Option<Value>,
    json: bool,
    show: fn(&T) -> String,
) -> ExitCode {
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let client = match reqwest::Client::builder().no_proxy().timeout(std::time::Duration::from_secs(30)).build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("clerkgate: {e}");
            return ExitCode::from(1);
        }
    };
    let mut req = client.request(method, &url);
    match env.get(vars::ADMIN_TOKEN) {
        Some(token) => req = req.bearer_auth(token),
        None => eprintln!("clerkgate: warning: {} is not set; the admin API will refuse the call", vars::ADMIN_TOKEN),
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("clerkgate: cannot reach the admin API at {url}: {e}");
            eprintln!("  Is clerkgate running, and is --admin (or CLERKGATE_ADMIN_URL) its [admin] listen address?");
            return ExitCode::from(1);
        }
    };
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if json {
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
        return exit_code(status);
    }
    if status.is_success() {
        match T::deserialize(&value) {
            Ok(answer) => println!("{}", show(&answer)),
            Err(e) => {
                // The call did succeed; only its answer is not what this CLI knows how to show.
                eprintln!(
                    "clerkgate: warning: the admin API answered in an unexpected shape ({e}); here it is as sent"
                );
                println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
            }
        }
        return ExitCode::SUCCESS;
    }
    let error = ApiError::deserialize(&value).ok();
    let message = error.as_ref().map_or("", |e| e.message.as_str());
    match status.as_u16() {
        401 => eprintln!(
            "clerkgate: the admin API refused the token: set {} to the gateway's admin token",
            vars::ADMIN_TOKEN
        ),
        403 => eprintln!("clerkgate: the admin API refused the call: {message}"),
        _ => eprintln!("clerkgate: {} {}: {message}", status.as_u16(), status.canonical_reason().unwrap_or("")),
    }
    for p in error.iter().flat_map(|e| &e.problems) {
        eprintln!("  {}: {}", p.key, p.message);
    }
    exit_code(status)
}

/// 0 for success; 2 for a request refused as invalid (422), like a bad config or bad usage at
/// the command line; 1 for every other failure.
fn exit_code(status: http::StatusCode) -> ExitCode {
    match status.as_u16() {
        200..=299 => ExitCode::SUCCESS,
        422 => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

/// `mode`: one line with the mode in force.
pub fn show_mode(m: &ModeView) -> String {
    let mut line = format!("mode {} (source {}", m.mode, m.source.as_str());
    if !m.actor.is_empty() && m.source == ModeSource::Admin {
        line.push_str(&format!(", set by {}", m.actor));
    }
    line.push(')');
    if !m.reason.is_empty() {
        line.push_str(&format!(": \"{}\"", m.reason));
    }
    if let Some(left) = m.seconds_left {
        line.push_str(&format!(
            ", {} left (until {})",
            crate::state::human(std::time::Duration::from_secs(left as u64)),
            m.expires_at.as_deref().unwrap_or("")
        ));
    }
    line
}

/// `status`: the on-call summary.
pub fn show_status(v: &Status) -> String {
    let mut out = Vec::new();
    out.push(format!("ready        {}", v.ready));
    out.push(format!("mode         {}", show_mode(&v.mode).trim_start_matches("mode ")));
    let c = &v.config;
    out.push(format!("config       {}  hash {}  loaded {}", c.path.as_deref().unwrap_or("-"), c.hash, c.loaded_at));
    if let Some(r) = &v.last_reload {
        out.push(show_last_reload(r, &c.hash));
    }
    let s = &v.state;
    match &s.problem {
        // An older gateway does not report its state store.
        None if s.dir.is_empty() => {}
        None => out.push(format!("state        {}  writable", s.dir)),
        Some(problem) => {
            out.push(format!("state        {}  NOT WRITABLE since {}", s.dir, s.since.as_deref().unwrap_or("-")));
            out.push(format!("             {problem}"));
            out.push("             every change (mode, revocation, reload) fails until it is writable again".into());
        }
    }
    let k = &v.keys;
    out.push(format!(
        "keys         source {}  networkless {}  kids [{}]  age {}s{}",
        k.source.as_deref().unwrap_or("-"),
        k.networkless_key,
        k.kids.join(", "),
        k.age_seconds.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        if k.stale { "  STALE" } else { "" }
    ));
    if let Some(e) = &k.last_error {
        out.push(format!("             last error: {e}"));
    }
    let r = &v.revocations;
    out.push(format!(
        "revocations  sessions {}  users {}  issued_before {}",
        r.sessions,
        r.users,
        r.issued_before.as_deref().unwrap_or("-")
    ));
    let n = &v.counters;
    out.push(format!(
        "requests     signed_in {}  signed_out {}  bypass {}  grace {}  cache hits {} / misses {}",
        n.signed_in, n.signed_out, n.bypass, n.grace, n.cache_hits, n.cache_misses
    ));
    if !n.rejected.is_empty() {
        let list: Vec<String> = n.rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
        out.push(format!("rejected     {}", list.join("  ")));
    }
    out.join("\n")
}

/// The `reload` line of `status`, with each problem of a refused reload below it.
fn show_last_reload(r: &ReloadView, hash_in_force: &str) -> String {
    if r.ok {
        return format!("reload       ok at {} by {} (hash {})", r.at, r.actor, r.hash.as_deref().unwrap_or("-"));
    }
    let mut lines = vec![format!(
        "reload       REFUSED at {} by {}: the config in force is the older one (hash {hash_in_force}); \
         the file on disk would not start a gateway",
        r.at, r.actor
    )];
    lines.extend(r.problems.iter().map(|p| format!("               {}: {}", p.key, p.message)));
    lines.join("\n")
}

/// `reload`.
pub fn show_reload(v: &Reloaded) -> String {
    format!("reloaded: config hash {}{}", v.hash, if v.changed { "" } else { " (unchanged)" })
}

/// `keys refresh`.
pub fn show_keys(v: &KeysLoaded) -> String {
    format!("keys loaded: {}", v.kids.join(", "))
}

/// `revoke`.
pub fn show_revocations(v: &Revocations) -> String {
    format!(
        "revocations now: {} session(s), {} user(s), issued_before {}",
        v.sessions.len(),
        v.users.len(),
        v.issued_before.as_deref().unwrap_or("-")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::api::tests::mode_view;
    use crate::mode::Mode;

    #[test]
    fn show_mode_says_who_why_and_until_when() {
        let mut m = mode_view();
        assert_eq!(
            show_mode(&m),
            "mode bypass (source admin, set by admin:0123abcd): \"drill\", 30m left (until 2026-01-01T00:30:00Z)"
        );
        m = ModeView {
            mode: Mode::Enforce,
            source: ModeSource::File,
            reason: String::new(),
            actor: "file".into(),
            expires_at: None,
            seconds_left: None,
            ..m
        };
        assert_eq!(show_mode(&m), "mode enforce (source file)");
    }
}
