//! The CLI side of the admin API: `clerkgate mode|status|reload|keys refresh|revoke`.
//! Human output by default, the raw JSON with `--json`, and errors that say what to do.

use std::process::ExitCode;

use serde_json::Value;

use crate::config::{vars, Env};

/// Calls the admin API and prints the answer. Exit 0 on success, 1 when the call failed.
pub async fn call(
    base: &str,
    env: &Env,
    method: http::Method,
    path: &str,
    body: Option<Value>,
    json: bool,
    show: fn(&Value) -> String,
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
        return if status.is_success() { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    if status.is_success() {
        println!("{}", show(&value));
        return ExitCode::SUCCESS;
    }
    let message = value.get("message").and_then(Value::as_str).unwrap_or("");
    match status.as_u16() {
        401 => eprintln!(
            "clerkgate: the admin API refused the token: set {} to the gateway's admin token",
            vars::ADMIN_TOKEN
        ),
        403 => eprintln!("clerkgate: the admin API refused the call: {message}"),
        _ => eprintln!("clerkgate: {} {}: {message}", status.as_u16(), status.canonical_reason().unwrap_or("")),
    }
    if let Some(problems) = value.get("problems").and_then(Value::as_array) {
        for p in problems {
            eprintln!("  {}: {}", p["key"].as_str().unwrap_or("?"), p["message"].as_str().unwrap_or(""));
        }
    }
    ExitCode::from(1)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `mode`: one line with the mode in force.
pub fn show_mode(v: &Value) -> String {
    let mut line = format!("mode {} (source {}", s(v, "mode"), s(v, "source"));
    if !s(v, "actor").is_empty() && s(v, "source") == "admin" {
        line.push_str(&format!(", set by {}", s(v, "actor")));
    }
    line.push(')');
    if !s(v, "reason").is_empty() {
        line.push_str(&format!(": \"{}\"", s(v, "reason")));
    }
    if let Some(left) = v.get("seconds_left").and_then(Value::as_i64) {
        line.push_str(&format!(
            ", {} left (until {})",
            crate::state::human(std::time::Duration::from_secs(left as u64)),
            s(v, "expires_at")
        ));
    }
    line
}

/// `status`: the on-call summary.
pub fn show_status(v: &Value) -> String {
    let mut out = Vec::new();
    out.push(format!("ready        {}", v["ready"]));
    out.push(format!("mode         {}", show_mode(&v["mode"]).trim_start_matches("mode ")));
    let c = &v["config"];
    out.push(format!(
        "config       {}  hash {}  loaded {}",
        c["path"].as_str().unwrap_or("-"),
        s(c, "hash"),
        s(c, "loaded_at")
    ));
    let k = &v["keys"];
    let kids: Vec<&str> =
        k["kids"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    out.push(format!(
        "keys         source {}  networkless {}  kids [{}]  age {}s{}",
        k["source"].as_str().unwrap_or("-"),
        k["networkless_key"],
        kids.join(", "),
        k["age_seconds"].as_i64().map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        if k["stale"].as_bool() == Some(true) { "  STALE" } else { "" }
    ));
    if let Some(e) = k["last_error"].as_str() {
        out.push(format!("             last error: {e}"));
    }
    let r = &v["revocations"];
    out.push(format!(
        "revocations  sessions {}  users {}  issued_before {}",
        r["sessions"],
        r["users"],
        r["issued_before"].as_str().unwrap_or("-")
    ));
    let n = &v["counters"];
    out.push(format!(
        "requests     signed_in {}  signed_out {}  bypass {}  grace {}  cache hits {} / misses {}",
        n["signed_in"], n["signed_out"], n["bypass"], n["grace"], n["cache_hits"], n["cache_misses"]
    ));
    if let Some(rej) = n["rejected"].as_object() {
        let list: Vec<String> = rej.iter().map(|(k, v)| format!("{k} {v}")).collect();
        if !list.is_empty() {
            out.push(format!("rejected     {}", list.join("  ")));
        }
    }
    out.join("\n")
}

/// `reload`.
pub fn show_reload(v: &Value) -> String {
    format!(
        "reloaded: config hash {}{}",
        s(v, "hash"),
        if v["changed"].as_bool() == Some(false) { " (unchanged)" } else { "" }
    )
}

/// `keys refresh`.
pub fn show_keys(v: &Value) -> String {
    let kids: Vec<&str> =
        v["kids"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    format!("keys loaded: {}", kids.join(", "))
}

/// `revoke`.
pub fn show_revocations(v: &Value) -> String {
    let count = |k: &str| v[k].as_object().map(|o| o.len()).unwrap_or(0);
    format!(
        "revocations now: {} session(s), {} user(s), issued_before {}",
        count("sessions"),
        count("users"),
        v["issued_before"].as_str().unwrap_or("-")
    )
}
