//! The CLI side of the admin API: `clerkgate mode|status|reload|keys refresh|revoke|revocations|audit`.
//! [`Target`] finds the gateway and its token, each with where it came from so that an error
//! can name it; [`call`] makes one call and prints the answer, human by default and the raw
//! JSON with `--json`. Answers are read into the same types the router writes ([`super::api`]).

use std::path::PathBuf;
use std::process::ExitCode;

use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::api::{ApiError, AuditLog, KeysLoaded, KeysView, ModeView, ReloadView, Reloaded, Revocations, Status};
use crate::config::{vars, AdminAccess, Env, Secret};
use crate::mode::ModeSource;

/// The admin address when nothing names one: `admin.listen`'s default.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

/// The variable that names the admin address when neither `--admin` nor a config does.
pub const ADMIN_URL_VAR: &str = "CLERKGATE_ADMIN_URL";

/// Where the CLI was told to look for the admin address and token.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--admin`.
    pub admin: Option<String>,
    /// `--admin-token-file`.
    pub token_file: Option<PathBuf>,
    /// `--config`.
    pub config: Option<PathBuf>,
}

/// A gateway's admin API and the token to call it with.
#[derive(Debug, Clone)]
pub struct Target {
    base: Url,
    /// Where the address came from, e.g. `--admin` or `admin.listen in clerkgate.toml`.
    base_from: String,
    /// The token and where it came from.
    token: Option<(Secret, String)>,
    /// The sources below the chosen one that hold a token too (named in a 401's hint).
    unused_tokens: Vec<String>,
}

/// The sources of the token, highest first, as the CLI's errors say them.
pub const TOKEN_SOURCES: &str = "--admin-token-file FILE, else admin.token_file or admin.token in --config FILE, \
     else $CLERKGATE_ADMIN_TOKEN, else admin.token_file or admin.token in $CLERKGATE_CONFIG or ./clerkgate.toml";

impl Target {
    /// Finds the admin address and the token. Highest first: the flag (`--admin`,
    /// `--admin-token-file`); the config named by `--config`; the environment
    /// (`$CLERKGATE_ADMIN_URL`, `$CLERKGATE_ADMIN_TOKEN`); the default config
    /// (`$CLERKGATE_CONFIG`, else `./clerkgate.toml`, when it exists); `127.0.0.1:9901`.
    ///
    /// A config named on the command line is the operator's choice and beats the environment.
    /// A default config is only found, so a variable set in the shell beats it — and inside the
    /// gateway's own container, where both are set, the CLI sends what the gateway reads first
    /// (the gateway takes `CLERKGATE_ADMIN_TOKEN` before `admin.token_file`).
    /// A gateway's own admin API at `listen`, with its token: the console's triage calls it.
    pub fn local(listen: std::net::SocketAddr, token: Option<Secret>) -> Result<Target, String> {
        Ok(Target {
            base: url_of_listen(listen)?,
            base_from: "admin.listen".into(),
            token: token.map(|t| (t, "admin.token".to_string())),
            unused_tokens: Vec::new(),
        })
    }

    pub fn resolve(sources: &Sources, env: &Env) -> Result<Target, String> {
        let flag_token = match &sources.token_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--admin-token-file: cannot read {}: {e}", path.display()))?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(format!("--admin-token-file: {} is empty", path.display()));
                }
                Some((Secret::new(token), format!("--admin-token-file ({})", path.display())))
            }
        };
        let explicit = sources.config.is_some();
        let config = if sources.admin.is_some() && flag_token.is_some() { None } else { config_access(sources, env)? };
        let (listen, config_token, config_name) = match config {
            Some((name, access)) => (access.listen, access.token, name),
            None => (None, None, String::new()),
        };

        // Each source of the address, as (URL, where it came from); a bad value fails only
        // when it is the one that would be used.
        let from =
            |text: &str, name: &str| admin_url(text).map(|u| (u, name.to_string())).map_err(|e| format!("{name}: {e}"));
        let flag_url = sources.admin.as_deref().map(|t| from(t, "--admin"));
        let config_url = listen.map(|l| url_of_listen(l).map(|u| (u, format!("admin.listen in {config_name}"))));
        let env_url = env.get(ADMIN_URL_VAR).map(|t| from(t, ADMIN_URL_VAR));
        let (first, second) = if explicit { (config_url, env_url) } else { (env_url, config_url) };
        let default = || admin_url(DEFAULT_ADMIN).map(|u| (u, format!("the default {DEFAULT_ADMIN}")));
        let (base, base_from) = flag_url.or(first).or(second).unwrap_or_else(default)?;

        let config_token = config_token.map(|(t, key)| (t, format!("{key} in {config_name}")));
        let env_token = env.get(vars::ADMIN_TOKEN).map(|t| (Secret::new(t), vars::ADMIN_TOKEN.to_string()));
        let (first, second) = if explicit { (config_token, env_token) } else { (env_token, config_token) };
        let mut found = [flag_token, first, second].into_iter().flatten();
        let token = found.next();
        let unused_tokens = found.map(|(_, from)| from).collect();
        Ok(Target { base, base_from, token, unused_tokens })
    }

    /// The admin API's base URL.
    pub fn base(&self) -> &Url {
        &self.base
    }

    /// A request to `url` with the token (when there is one) and `timeout`.
    fn request(
        &self,
        method: http::Method,
        url: Url,
        timeout: std::time::Duration,
    ) -> Result<reqwest::RequestBuilder, String> {
        let client = reqwest::Client::builder().no_proxy().timeout(timeout).build().map_err(|e| chain(&e))?;
        let req = client.request(method, url);
        Ok(match &self.token {
            Some((token, _)) => req.bearer_auth(token.expose()),
            None => req,
        })
    }

    /// Why `url` could not be reached, and where its address came from.
    fn unreachable(&self, url: &Url, e: &reqwest::Error) -> String {
        // reqwest's own words only repeat the URL; what went wrong is in its sources.
        let why = std::error::Error::source(e).map_or_else(|| chain(e), chain);
        format!(
            "cannot reach the admin API at {url}: {why}\n  The address came from {}. Is clerkgate running, and is that its admin.listen? (--admin takes host:port or a URL)",
            self.base_from
        )
    }

    /// The URL of the endpoint at `segments` (each percent-encoded) with `query`.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }
}

/// The config the admin commands read, with the name errors give it: `--config` (which must
/// be readable), else the default file when it exists (a broken one is skipped with a warning,
/// so the other sources still work).
fn config_access(sources: &Sources, env: &Env) -> Result<Option<(String, AdminAccess)>, String> {
    let (path, explicit) = match &sources.config {
        Some(path) => (path.clone(), true),
        None => (env.get(vars::CONFIG).map_or_else(|| PathBuf::from("clerkgate.toml"), PathBuf::from), false),
    };
    if !explicit && !path.exists() {
        return Ok(None);
    }
    let name = path.display().to_string();
    match AdminAccess::load(&path) {
        Ok(access) => Ok(Some((name, access))),
        Err(errors) => {
            let list: Vec<String> = errors.0.iter().map(|p| format!("{}: {}", p.key, p.message)).collect();
            let what = format!("{name}: {}", list.join("; "));
            if explicit {
                return Err(what);
            }
            eprintln!("clerkgate: warning: skipping the default config {what}");
            Ok(None)
        }
    }
}

/// An admin address as `--admin` or `$CLERKGATE_ADMIN_URL` give it: `host:port` as in
/// `admin.listen` (`127.0.0.1:9901`, `[::1]:9901`, `localhost:9901`) or an `http://` or
/// `https://` URL.
pub fn admin_url(text: &str) -> Result<Url, String> {
    let text = text.trim();
    let bad = |why: &str| {
        format!(
            "{text:?} is not an admin address ({why}): give host:port as in admin.listen (127.0.0.1:9901, [::1]:9901) or a URL (http://127.0.0.1:9901)"
        )
    };
    let has_scheme = text.contains("://");
    let url = if has_scheme { Url::parse(text) } else { Url::parse(&format!("http://{text}")) }
        .map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host().is_none() || (!has_scheme && url.port().is_none()) {
        return Err(bad("no port"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a user, query or fragment has no place here"));
    }
    Ok(url)
}

/// The URL that reaches a gateway listening on `listen`: an unspecified address
/// (`0.0.0.0`, `[::]`) is reached on the loopback of its family.
pub(super) fn url_of_listen(listen: std::net::SocketAddr) -> Result<Url, String> {
    let ip = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    admin_url(&std::net::SocketAddr::new(ip, listen.port()).to_string())
}

/// An error and every error under it, so "error sending request" also says "Connection refused".
pub(super) use crate::clerk_api::error_chain as chain;

/// Calls the endpoint at `segments` with `query` and `body`, and prints the answer, read as a
/// `T`, with `show` (or raw with `json`). Exit 0 on success, 2 when the gateway refused the
/// request as invalid (422: a bad config on reload, a missing reason), 1 when the call failed
/// otherwise.
pub async fn call<T: DeserializeOwned>(
    target: &Target,
    method: http::Method,
    segments: &[&str],
    query: &[(&str, &str)],
    body: Option<Value>,
    json: bool,
    show: impl Fn(&T) -> String,
) -> ExitCode {
    let (status, value) = match request(target, method, segments, query, body).await {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("clerkgate: {e}");
            return ExitCode::from(1);
        }
    };
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
    refused(target, status, &value)
}

/// Why a [`get`] found no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GetError {
    /// Nothing answered at the address (no gateway running there, or a wrong address).
    Unreachable(String),
    /// The gateway answered, but not with what was asked for (a refused token, an old gateway).
    Refused(String),
}

impl std::fmt::Display for GetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GetError::Unreachable(why) | GetError::Refused(why) => f.write_str(why),
        }
    }
}

/// Reads the endpoint at `segments` with `query` as a `T`, printing nothing: for commands that
/// combine several answers (the incident report).
pub async fn get<T: DeserializeOwned>(
    target: &Target,
    segments: &[&str],
    query: &[(&str, &str)],
    timeout: std::time::Duration,
) -> Result<T, GetError> {
    let url = target.url(segments, query);
    let req = target.request(http::Method::GET, url.clone(), timeout).map_err(GetError::Refused)?;
    let resp = req.send().await.map_err(|e| GetError::Unreachable(target.unreachable(&url, &e)))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let message = serde_json::from_str::<ApiError>(&text).map_or(text, |e| e.message);
        let hint = if status == 401 { format!(" (the admin token comes from {TOKEN_SOURCES})") } else { String::new() };
        return Err(GetError::Refused(format!("{url} answered {}: {message}{hint}", status.as_u16())));
    }
    serde_json::from_str(&text).map_err(|e| GetError::Refused(format!("{url} answered in an unexpected shape: {e}")))
}

/// Makes one call to the endpoint at `segments` and answers its status and body (JSON, or the
/// text as a JSON string). Fails only when there is no answer, with what to check.
pub async fn request(
    target: &Target,
    method: http::Method,
    segments: &[&str],
    query: &[(&str, &str)],
    body: Option<Value>,
) -> Result<(http::StatusCode, Value), String> {
    let url = target.url(segments, query);
    let mut req = target.request(method, url.clone(), std::time::Duration::from_secs(30))?;
    if target.token.is_none() {
        eprintln!("clerkgate: warning: no admin token ({TOKEN_SOURCES}); the admin API will refuse the call");
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.map_err(|e| target.unreachable(&url, &e))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
}

/// Says why the admin API refused a call (`value` is its answer) and what to do; the exit code.
pub fn refused(target: &Target, status: http::StatusCode, value: &Value) -> ExitCode {
    for (i, line) in refusal(target, status, value).iter().enumerate() {
        eprintln!("{}{line}", if i == 0 { "clerkgate: " } else { "" });
    }
    exit_code(status)
}

/// Why the admin API refused a call, in the CLI's words: a token it did not take (and which
/// others were set), or its own message; the lines after the first are indented details.
pub fn refusal(target: &Target, status: http::StatusCode, value: &Value) -> Vec<String> {
    let error = ApiError::deserialize(value).ok();
    let message = error.as_ref().map_or("", |e| e.message.as_str());
    let mut lines = Vec::new();
    match (status.as_u16(), &target.token) {
        (401, Some((_, from))) => {
            lines.push(format!(
                "the admin API refused the token from {from}: it must be the gateway's admin token (its admin.token, admin.token_file or CLERKGATE_ADMIN_TOKEN)"
            ));
            if !target.unused_tokens.is_empty() {
                lines.push(format!(
                    "  Also set, not sent: {}. A gateway reads CLERKGATE_ADMIN_TOKEN before its admin.token_file; name the right one with --admin-token-file FILE.",
                    target.unused_tokens.join(", ")
                ));
            }
        }
        (401, None) => lines.push(format!("the admin API needs a token: give {TOKEN_SOURCES}")),
        (403, _) => lines.push(format!("the admin API refused the call: {message}")),
        _ => lines.push(format!("{} {}: {message}", status.as_u16(), status.canonical_reason().unwrap_or(""))),
    }
    lines.extend(error.iter().flat_map(|e| &e.problems).map(|p| format!("  {}: {}", p.key, p.message)));
    lines
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
    out.push(format!(
        "config       {}  hash {}  loaded {}",
        c.path.as_deref().unwrap_or("(no file)"),
        c.hash,
        c.loaded_at
    ));
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
    out.extend(show_keys_status(&v.keys));
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
    let w = &v.webhooks;
    if w.route {
        out.push(format!(
            "webhooks     last verified {} (quiet {}s, gap after {}s)  events {}  delivered {}  pending replay {}  duplicates {}",
            w.last_verified_at.as_deref().unwrap_or("none"),
            w.quiet_seconds,
            w.gap_window_seconds,
            w.events,
            w.delivered,
            w.pending_replay,
            w.duplicates
        ));
        if let Some(first) = &w.first_failure_at {
            out.push(format!("             {} signature failure(s) since {first}", w.signature_failures));
        }
    }
    if let Some(f) = &v.fleet {
        let layer = |o: &Option<crate::mode::ModeSetting>| match o {
            Some(o) => format!("{} until {}", o.mode, o.expires_at_ms.map(crate::clock::rfc3339).unwrap_or_default()),
            None => "none".into(),
        };
        out.push(format!(
            "fleet        {:?} as {:?}  {}  epoch {}  fleet override {}  local override {}",
            f.fleet,
            f.gateway_id,
            f.link.to_uppercase(),
            f.epoch,
            layer(&f.fleet_override),
            layer(&f.local_override)
        ));
        if let Some(problem) = &f.problem {
            out.push(format!("             {problem}"));
        }
        if f.audit_buffered > 0 || f.audit_dropped > 0 || f.store_resets > 0 {
            out.push(format!(
                "             audit waiting for Redis {}  skipped {}  store resets {}",
                f.audit_buffered, f.audit_dropped, f.store_resets
            ));
        }
    }
    out.join("\n")
}

/// The `keys` lines of `status`: only what applies to the key sources configured (a networkless
/// key has no kids, age or fetch errors).
fn show_keys_status(k: &KeysView) -> Vec<String> {
    const NETWORKLESS: &str = "networkless PEM key (clerk.jwt_key)";
    let Some(url) = &k.source else {
        return vec![format!("keys         {}", if k.networkless_key { NETWORKLESS } else { "no key source" })];
    };
    let set = match k.age_seconds {
        Some(age) => format!("kids [{}]  age {}s{}", k.kids.join(", "), age, if k.stale { "  STALE" } else { "" }),
        None => "no key set fetched yet".to_string(),
    };
    let mut out = vec![format!("keys         {url}  {set}")];
    if k.networkless_key {
        out.push(format!("             and a {NETWORKLESS} for any other kid"));
    }
    if let Some(e) = &k.last_error {
        out.push(format!("             last error: {e}"));
    }
    out
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
    let mut out = format!("reloaded: config hash {}{}", v.hash, if v.changed { "" } else { " (unchanged)" });
    for r in &v.restart_needed {
        out.push_str(&format!("\n  needs a restart: {r}"));
    }
    out
}

/// `keys refresh`.
pub fn show_keys(v: &KeysLoaded) -> String {
    format!("keys loaded: {}", v.kids.join(", "))
}

/// `revoke`: the counts now in force.
pub fn show_revocations(v: &Revocations) -> String {
    format!(
        "revocations now: {} session(s), {} user(s), issued_before {}",
        v.sessions.len(),
        v.users.len(),
        v.issued_before.as_deref().unwrap_or("-")
    )
}

/// `revocations`: every entry with the id that lifts it.
pub fn show_revocation_list(v: &Revocations) -> String {
    const ISSUED_BEFORE: &str = "issued_before";
    let entries = v.sessions.iter().map(|e| ("session", e)).chain(v.users.iter().map(|e| ("user", e)));
    let width =
        v.sessions.keys().chain(v.users.keys()).map(String::len).chain([ISSUED_BEFORE.len()]).max().unwrap_or(0);
    let mut out: Vec<String> = entries
        .map(|(kind, (id, e))| {
            let reason = if e.reason.is_empty() { String::new() } else { format!("  \"{}\"", e.reason) };
            format!("{id:<width$}  {kind:<7}  since {} by {}{reason}", crate::clock::rfc3339(e.added_at_ms), e.actor)
        })
        .collect();
    if let Some(at) = &v.issued_before {
        out.push(format!("{ISSUED_BEFORE:<width$}  every token issued before {at}"));
    }
    if out.is_empty() {
        return "no revocations in force".into();
    }
    out.push("lift one with: clerkgate revoke --lift ID".into());
    out.join("\n")
}

/// `audit`: one line per event — time, actor, action, what it changed, why — and a last line
/// for each line of the log that could not be read.
pub fn show_audit(log: &AuditLog) -> String {
    if log.events.is_empty() && log.skipped.is_empty() {
        return "no audit events".into();
    }
    let events = log.events.iter().map(|e| {
        let reason = if e.reason.is_empty() { String::new() } else { format!("  \"{}\"", e.reason) };
        format!(
            "{}  {}  {}  {} → {}{reason}",
            crate::clock::rfc3339(e.time_ms),
            e.actor,
            e.action,
            summary(&e.before),
            summary(&e.after)
        )
    });
    let skipped = log.skipped.iter().map(|s| format!("(audit.jsonl line {} skipped: {})", s.line, s.why));
    events.chain(skipped).collect::<Vec<_>>().join("\n")
}

/// One side of an audit event in a few words: a mode (and until when), a config hash, the
/// problems of a refused reload, a revocation, a list of kids; anything else as compact JSON.
pub fn summary(v: &Value) -> String {
    let field = |name: &str| v.get(name).filter(|f| !f.is_null());
    let text = |f: &Value| f.as_str().map_or_else(|| f.to_string(), str::to_string);
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!("[{}]", items.iter().map(summary).collect::<Vec<_>>().join(", ")),
        _ => {
            if let Some(mode) = field("mode") {
                let until = field("expires_at_ms").and_then(Value::as_i64).map(crate::clock::rfc3339);
                until.map_or_else(|| text(mode), |at| format!("{} until {at}", text(mode)))
            } else if let Some(hash) = field("hash") {
                format!("hash {}", text(hash))
            } else if let Some(problems) = field("problems").and_then(Value::as_array) {
                let keys: Vec<String> = problems.iter().map(|p| p.get("key").map(text).unwrap_or_default()).collect();
                format!("{} problem(s): {}", problems.len(), keys.join(", "))
            } else if let Some(id) = field("session_id") {
                format!("session {}", text(id))
            } else if let Some(id) = field("user_id") {
                format!("user {}", text(id))
            } else if let Some(at) = field("issued_before") {
                format!("issued before {}", text(at))
            } else if let Some(ms) = field("issued_before_ms").and_then(Value::as_i64) {
                format!("issued before {}", crate::clock::rfc3339(ms))
            } else {
                v.to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::admin::api::tests::mode_view;
    use crate::mode::Mode;
    use crate::store::{Action, AuditEvent, AuditRecord, SkippedLine};

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

    #[test]
    fn admin_addresses_in_both_forms() {
        let cases = [
            ("127.0.0.1:19901", "http://127.0.0.1:19901/"),
            ("http://127.0.0.1:19901", "http://127.0.0.1:19901/"),
            ("https://10.0.0.1:9901/", "https://10.0.0.1:9901/"),
            ("[::1]:9901", "http://[::1]:9901/"),
            ("http://[::1]:9901", "http://[::1]:9901/"),
            ("localhost:9901", "http://localhost:9901/"),
            (" 127.0.0.1:9901 ", "http://127.0.0.1:9901/"),
        ];
        for (text, url) in cases {
            assert_eq!(admin_url(text).map(|u| u.to_string()), Ok(url.to_string()), "{text}");
        }
        for bad in ["9901", "127.0.0.1", "ftp://127.0.0.1:9901", "not an address", "http://u:p@127.0.0.1:9901", ""] {
            let e = admin_url(bad).unwrap_err();
            assert!(e.contains("host:port as in admin.listen"), "{bad}: {e}");
        }
        let listen = |text: &str| url_of_listen(text.parse().unwrap()).unwrap().to_string();
        assert_eq!(listen("0.0.0.0:9901"), "http://127.0.0.1:9901/");
        assert_eq!(listen("[::]:9901"), "http://[::1]:9901/");
        assert_eq!(listen("10.1.2.3:9901"), "http://10.1.2.3:9901/");
    }

    #[test]
    fn endpoint_urls_encode_ids_and_queries() {
        let target = Target {
            base: admin_url("127.0.0.1:9901").unwrap(),
            base_from: String::new(),
            token: None,
            unused_tokens: vec![],
        };
        assert_eq!(target.url(&["revocations", "a/b c"], &[]).as_str(), "http://127.0.0.1:9901/revocations/a%2Fb%20c");
        assert_eq!(
            target.url(&["audit"], &[("since", "2026-01-01T00:00:00+01:00")]).as_str(),
            "http://127.0.0.1:9901/audit?since=2026-01-01T00%3A00%3A00%2B01%3A00"
        );
    }

    #[test]
    fn audit_lines_summarise_each_change() {
        let event = |action, before, after, reason: &str| -> AuditRecord {
            AuditEvent::new(0, "admin:0123abcd", action, before, after, reason).into()
        };
        let mut log = AuditLog {
            events: vec![
                event(
                    Action::ModeSet,
                    json!({"mode": "enforce", "source": "file", "expires_at_ms": null}),
                    json!({"mode": "grace", "source": "admin", "expires_at_ms": 3_600_000}),
                    "INC-1",
                ),
                event(Action::ConfigReload, json!({"hash": "aa"}), json!({"hash": "bb"}), ""),
                event(
                    Action::ConfigReloadFailed,
                    json!({"hash": "bb"}),
                    json!({"problems": [{"key": "clerk.jwt_key", "message": "m"}]}),
                    "",
                ),
                event(Action::KeysChanged, json!([]), json!(["ins_1"]), ""),
                event(Action::RevocationAdd, Value::Null, json!({"user_id": "user_1"}), "takeover"),
                event(Action::RevocationRemove, json!({"issued_before_ms": 0}), Value::Null, ""),
            ],
            skipped: vec![],
        };
        assert_eq!(
            show_audit(&log),
            [
                "1970-01-01T00:00:00Z  admin:0123abcd  mode.set  enforce → grace until 1970-01-01T01:00:00Z  \"INC-1\"",
                "1970-01-01T00:00:00Z  admin:0123abcd  config.reload  hash aa → hash bb",
                "1970-01-01T00:00:00Z  admin:0123abcd  config.reload_failed  hash bb → 1 problem(s): clerk.jwt_key",
                "1970-01-01T00:00:00Z  admin:0123abcd  keys.changed  [] → [ins_1]",
                "1970-01-01T00:00:00Z  admin:0123abcd  revocation.add  - → user user_1  \"takeover\"",
                "1970-01-01T00:00:00Z  admin:0123abcd  revocation.remove  issued before 1970-01-01T00:00:00Z → -",
            ]
            .join("\n")
        );
        log.events.truncate(1);
        log.skipped.push(SkippedLine { line: 2, why: "not JSON: x".into() });
        assert_eq!(
            show_audit(&log),
            "1970-01-01T00:00:00Z  admin:0123abcd  mode.set  enforce → grace until 1970-01-01T01:00:00Z  \"INC-1\"\n\
             (audit.jsonl line 2 skipped: not JSON: x)"
        );
        assert_eq!(show_audit(&AuditLog { events: vec![], skipped: vec![] }), "no audit events");
    }

    #[test]
    fn status_keys_say_only_what_applies_to_the_source() {
        let keys = KeysView {
            source: None,
            networkless_key: true,
            origin: crate::keys::KeyOrigin::None,
            kids: vec![],
            fetched_at: None,
            age_seconds: None,
            stale: false,
            last_attempt: None,
            last_error: None,
            secret_key_rejected: false,
            fetches: 0,
        };
        assert_eq!(show_keys_status(&keys), ["keys         networkless PEM key (clerk.jwt_key)"]);
        let jwks = KeysView { source: Some("https://api.clerk.com/v1/jwks".into()), networkless_key: false, ..keys };
        assert_eq!(show_keys_status(&jwks), ["keys         https://api.clerk.com/v1/jwks  no key set fetched yet"]);
        let fetched = KeysView { kids: vec!["ins_1".into()], age_seconds: Some(4), networkless_key: true, ..jwks };
        assert_eq!(
            show_keys_status(&fetched),
            [
                "keys         https://api.clerk.com/v1/jwks  kids [ins_1]  age 4s",
                "             and a networkless PEM key (clerk.jwt_key) for any other kid"
            ]
        );
    }
}
