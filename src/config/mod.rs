//! Configuration: the TOML file plus the environment, validated in one step into an
//! immutable [`Config`].
//!
//! Loading has two phases, like ripgrep's low-level and high-level arguments: [`raw`] is a
//! serde mirror of the file that accepts anything shaped like TOML, and [`Config::from_raw`]
//! turns it into the validated form, collecting *every* problem with the key it belongs to
//! rather than stopping at the first. A running gateway only ever swaps one valid `Config`
//! for another; a file that does not validate never replaces the running one.
//!
//! Secrets come from three places, highest first: the environment (Clerk's own variable
//! names), a `*_file` key, the inline key.

mod env;
mod raw;
mod secret;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;

pub use env::{vars, Env};
pub use secret::Secret;

use crate::keys::VerifyingKey;
use crate::routes::{Access, RoutePattern, RouteRule, RouteTable};
use crate::state::Mode;
use raw::{RawConfig, Unknown};

/// The validated configuration. Never mutated: a reload builds a new one.
#[derive(Debug)]
pub struct Config {
    /// Where the config came from, for `/status`.
    pub origin: Origin,
    /// `[server]`.
    pub server: ServerConfig,
    /// `[upstream]`.
    pub upstream: UpstreamConfig,
    /// `[clerk]` and `[clerk.keys]`.
    pub clerk: ClerkConfig,
    /// `[routes]`.
    pub routes: RouteTable,
    /// `[mode]`, plus the `CLERK_EMERGENCY_BYPASS` switch.
    pub mode: ModeConfig,
    /// `[admin]`.
    pub admin: AdminConfig,
    /// `[state]`.
    pub state: StateConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// Values that are accepted but look unwise; logged at start and by `check-config`.
    pub warnings: Vec<String>,
}

/// Where a config came from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The file, when there was one.
    pub path: Option<PathBuf>,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// A short SHA-256 over the file and every secret it resolved, so two loads can be compared.
    pub hash: String,
}

/// `[server]`: the data-plane listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address the data plane listens on.
    pub listen: SocketAddr,
    /// A client that has not sent a full request head by then is cut off (slowloris).
    pub header_read_timeout: Duration,
    /// How long SIGTERM waits for in-flight requests before exiting.
    pub shutdown_grace: Duration,
}

/// `[upstream]`: the app behind the gateway.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Scheme and authority of the upstream (`http://host:port`).
    pub url: http::uri::Authority,
    /// The upstream URL as written, for display.
    pub url_text: String,
    /// Limit on establishing a TCP connection to the upstream.
    pub connect_timeout: Duration,
    /// Limit on the time to the response head; bodies and upgrades are never cut.
    pub response_timeout: Duration,
}

/// A parsed publishable key.
#[derive(Debug, Clone)]
pub struct PublishableKey {
    /// The key as given.
    pub raw: String,
    /// The Frontend API host it encodes, e.g. `clerk.example.com`.
    pub frontend_api: String,
    /// `pk_live_` keys belong to production instances.
    pub production: bool,
    /// The suffix Clerk appends to cookie names for this instance (`__session_<suffix>`).
    pub cookie_suffix: String,
}

/// Where remote keys are fetched from.
#[derive(Debug, Clone)]
pub struct JwksSource {
    /// The JWKS URL.
    pub url: String,
    /// Sent as `Authorization: Bearer` (the Backend API needs the secret key).
    pub bearer: Option<Secret>,
}

/// `[clerk]`: how tokens are read and verified.
#[derive(Debug, Clone)]
pub struct ClerkConfig {
    /// The publishable key, when configured.
    pub publishable_key: Option<PublishableKey>,
    /// The Backend API secret key.
    pub secret_key: Option<Secret>,
    /// The networkless verification key, parsed once.
    pub jwt_key: Option<Arc<VerifyingKey>>,
    /// The Backend API base URL.
    pub api_url: String,
    /// The remote JWKS, when there is one.
    pub jwks: Option<JwksSource>,
    /// Allowed `azp` values; empty means `azp` is not checked (Clerk's default).
    pub authorized_parties: Vec<String>,
    /// Tolerance applied to `exp`, `nbf` and `iat`.
    pub clock_skew: Duration,
    /// When set, `iss` must equal it.
    pub issuer: Option<String>,
    /// `sts: pending` sessions are refused when true.
    pub reject_pending_sessions: bool,
    /// Where signed-out page loads are sent.
    pub sign_in_url: Option<String>,
    /// Clerk's status page, for triage.
    pub status_url: String,
    /// The Svix signing secret for `webhook = "clerk"` routes.
    pub webhook_signing_secret: Option<Secret>,
    /// How many verified tokens the verdict cache holds (0 disables it). Read at start.
    pub verdict_cache_entries: usize,
    /// `[clerk.keys]`.
    pub keys: KeysConfig,
}

/// `[clerk.keys]`: the key lifecycle.
#[derive(Debug, Clone)]
pub struct KeysConfig {
    /// Background refresh period.
    pub refresh_interval: Duration,
    /// At most one refetch per window when a token names an unknown `kid`.
    pub unknown_kid_cooldown: Duration,
    /// How long last-good keys keep being served while the JWKS is unreachable.
    pub max_stale: Duration,
    /// Limit on one JWKS fetch.
    pub fetch_timeout: Duration,
}

/// `[mode]`: the file's mode and the limits on emergency modes.
#[derive(Debug, Clone)]
pub struct ModeConfig {
    /// The file's mode, applied on load and reload.
    pub mode: Mode,
    /// Why the file sets that mode.
    pub reason: String,
    /// Grace accepts correctly signed tokens expired by at most this much.
    pub grace_max_expired: Duration,
    /// Caps the TTL of an admin override; also the lifetime of a bypass set by file or env.
    pub max_override_ttl: Duration,
    /// `CLERK_EMERGENCY_BYPASS=true` was set at load.
    pub emergency_bypass_env: bool,
}

/// `[admin]`: the admin listener.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Address of the admin API; never the data-plane port.
    pub listen: SocketAddr,
    /// The bearer token every mutating endpoint needs.
    pub token: Option<Secret>,
}

/// Where shared runtime state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateBackend {
    /// Files under `state.dir` (the default).
    File,
}

/// `[state]`.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// Holds `audit.jsonl`, `state.json` and `keys.json`.
    pub dir: PathBuf,
    /// The backend.
    pub backend: StateBackend,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// A tracing filter directive such as `info` or `clerkgate=debug`.
    pub level: String,
}

/// One problem with the configuration, with the key it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The dotted key, e.g. `clerk.keys.max_stale`, or `(file)` for the file as a whole.
    pub key: String,
    /// What is wrong, as a sentence for the operator.
    pub message: String,
}

/// Every problem found while loading a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// === impl Config ===

impl Config {
    /// Reads and validates the file at `path` with the given environment.
    pub fn load(path: &Path, env: &Env) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigProblem {
                key: "(file)".into(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        let mut config = Config::from_toml(&text, env)?;
        config.origin.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// Validates TOML text with the given environment.
    pub fn from_toml(text: &str, env: &Env) -> Result<Config, ConfigErrors> {
        let (raw, type_problems) = parse_raw(text)?;
        Config::from_raw(raw, text, env, type_problems)
    }

    fn from_raw(
        raw: RawConfig,
        text: &str,
        env: &Env,
        type_problems: Vec<ConfigProblem>,
    ) -> Result<Config, ConfigErrors> {
        let mut v = Validator { problems: type_problems, ..Validator::default() };
        v.unknown("", &raw.unknown);

        let server = v.server(raw.server);
        let upstream = v.upstream(raw.upstream);
        let clerk = v.clerk(raw.clerk, env);
        let routes = v.routes(raw.routes, clerk.as_ref());
        let mode = v.mode(raw.mode, env);
        let admin = v.admin(raw.admin, env);
        let state = v.state(raw.state);
        let log = v.log(raw.log);

        if let (Some(server), Some(admin)) = (&server, &admin) {
            if server.listen == admin.listen && server.listen.port() != 0 {
                v.problem(
                    "admin.listen",
                    "must differ from server.listen: the admin API never shares the data-plane port",
                );
            }
        }

        let Validator { problems, warnings, secrets_digest } = v;
        match (server, upstream, clerk, routes, mode, admin, state, log) {
            (
                Some(server),
                Some(upstream),
                Some(clerk),
                Some(routes),
                Some(mode),
                Some(admin),
                Some(state),
                Some(log),
            ) if problems.is_empty() => Ok(Config {
                origin: Origin { path: None, loaded_at: SystemTime::now(), hash: config_hash(text, &secrets_digest) },
                server,
                upstream,
                clerk,
                routes,
                mode,
                admin,
                state,
                log,
                warnings,
            }),
            _ => Err(ConfigErrors(problems)),
        }
    }

    /// The effective configuration as TOML, secrets redacted: what `check-config` prints.
    pub fn effective_toml(&self) -> String {
        use toml::{Table, Value};
        fn dur(d: Duration) -> Value {
            Value::String(humantime::format_duration(d).to_string())
        }
        fn strs(v: &[String]) -> Value {
            Value::Array(v.iter().cloned().map(Value::String).collect())
        }
        let redacted = |s: &Option<Secret>| s.as_ref().map(|_| Value::String("[redacted]".into()));
        let mut root = Table::new();

        let mut server = Table::new();
        server.insert("listen".into(), Value::String(self.server.listen.to_string()));
        server.insert("header_read_timeout".into(), dur(self.server.header_read_timeout));
        server.insert("shutdown_grace".into(), dur(self.server.shutdown_grace));
        root.insert("server".into(), Value::Table(server));

        let mut upstream = Table::new();
        upstream.insert("url".into(), Value::String(self.upstream.url_text.clone()));
        upstream.insert("connect_timeout".into(), dur(self.upstream.connect_timeout));
        upstream.insert("response_timeout".into(), dur(self.upstream.response_timeout));
        root.insert("upstream".into(), Value::Table(upstream));

        let c = &self.clerk;
        let mut clerk = Table::new();
        if let Some(pk) = &c.publishable_key {
            clerk.insert("publishable_key".into(), Value::String(pk.raw.clone()));
        }
        if let Some(v) = redacted(&c.secret_key) {
            clerk.insert("secret_key".into(), v);
        }
        if c.jwt_key.is_some() {
            clerk.insert("jwt_key".into(), Value::String("[set]".into()));
        }
        clerk.insert("api_url".into(), Value::String(c.api_url.clone()));
        if let Some(j) = &c.jwks {
            clerk.insert("jwks_url".into(), Value::String(j.url.clone()));
        }
        clerk.insert("authorized_parties".into(), strs(&c.authorized_parties));
        clerk.insert("clock_skew".into(), dur(c.clock_skew));
        if let Some(i) = &c.issuer {
            clerk.insert("issuer".into(), Value::String(i.clone()));
        }
        clerk.insert("reject_pending_sessions".into(), Value::Boolean(c.reject_pending_sessions));
        if let Some(s) = &c.sign_in_url {
            clerk.insert("sign_in_url".into(), Value::String(s.clone()));
        }
        clerk.insert("status_url".into(), Value::String(c.status_url.clone()));
        clerk.insert("verdict_cache_entries".into(), Value::Integer(c.verdict_cache_entries as i64));
        if let Some(v) = redacted(&c.webhook_signing_secret) {
            clerk.insert("webhook_signing_secret".into(), v);
        }
        let mut keys = Table::new();
        keys.insert("refresh_interval".into(), dur(c.keys.refresh_interval));
        keys.insert("unknown_kid_cooldown".into(), dur(c.keys.unknown_kid_cooldown));
        keys.insert("max_stale".into(), dur(c.keys.max_stale));
        keys.insert("fetch_timeout".into(), dur(c.keys.fetch_timeout));
        clerk.insert("keys".into(), Value::Table(keys));
        root.insert("clerk".into(), Value::Table(clerk));

        let mut routes = Table::new();
        let default = match self.routes.default {
            Access::Public => "public",
            Access::Protected => "protected",
        };
        routes.insert("default".into(), Value::String(default.into()));
        routes.insert(
            "public".into(),
            Value::Array(self.routes.public.iter().map(|p| Value::String(p.as_str().into())).collect()),
        );
        let rules = self
            .routes
            .rules
            .iter()
            .map(|r| {
                let mut t = Table::new();
                t.insert("path".into(), Value::String(r.pattern.as_str().into()));
                if let Some(m) = &r.methods {
                    t.insert("methods".into(), Value::Array(m.iter().map(|m| Value::String(m.to_string())).collect()));
                }
                if let Some(role) = &r.role {
                    t.insert("role".into(), Value::String(role.clone()));
                }
                if let Some(p) = &r.permission {
                    t.insert("permission".into(), Value::String(p.clone()));
                }
                if r.bypass_never {
                    t.insert("bypass".into(), Value::String("never".into()));
                }
                if r.webhook {
                    t.insert("webhook".into(), Value::String("clerk".into()));
                }
                Value::Table(t)
            })
            .collect();
        routes.insert("rule".into(), Value::Array(rules));
        root.insert("routes".into(), Value::Table(routes));

        let mut mode = Table::new();
        mode.insert("mode".into(), Value::String(self.mode.mode.as_str().into()));
        mode.insert("reason".into(), Value::String(self.mode.reason.clone()));
        mode.insert("grace_max_expired".into(), dur(self.mode.grace_max_expired));
        mode.insert("max_override_ttl".into(), dur(self.mode.max_override_ttl));
        root.insert("mode".into(), Value::Table(mode));

        let mut admin = Table::new();
        admin.insert("listen".into(), Value::String(self.admin.listen.to_string()));
        if let Some(v) = redacted(&self.admin.token) {
            admin.insert("token".into(), v);
        }
        root.insert("admin".into(), Value::Table(admin));

        let mut state = Table::new();
        state.insert("dir".into(), Value::String(self.state.dir.display().to_string()));
        state.insert("backend".into(), Value::String("file".into()));
        root.insert("state".into(), Value::Table(state));

        let mut log = Table::new();
        let format = match self.log.format {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        };
        log.insert("format".into(), Value::String(format.into()));
        log.insert("level".into(), Value::String(self.log.level.clone()));
        root.insert("log".into(), Value::Table(log));

        toml::to_string(&root).unwrap_or_default()
    }
}

/// Parses the file into the raw mirror. A syntax error ends it there (`(file)`); a value of the
/// wrong type is reported under its dotted key, taken out, and parsing goes on, so one wrongly
/// typed value never hides the file's other problems.
fn parse_raw(text: &str) -> Result<(RawConfig, Vec<ConfigProblem>), ConfigErrors> {
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(ConfigErrors(vec![ConfigProblem {
            key: "(file)".into(),
            message: format!("not valid TOML: {}", e.message().trim()),
        }]));
    }
    let mut text = text.to_string();
    let mut problems = Vec::new();
    for _ in 0..64 {
        let e = match toml::from_str::<RawConfig>(&text) {
            Ok(raw) => return Ok((raw, problems)),
            Err(e) => e,
        };
        let Some(span) = e.span().filter(|s| s.start < text.len()) else { break };
        let line_start = text[..span.start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[span.end.min(text.len())..].find('\n').map_or(text.len(), |i| span.end + i);
        problems.push(ConfigProblem { key: key_at(&text, line_start), message: e.message().trim().to_string() });
        text.replace_range(line_start..line_end, "");
    }
    problems.push(ConfigProblem { key: "(file)".into(), message: "not a clerkgate config".into() });
    Err(ConfigErrors(problems))
}

/// The dotted key of the `key = value` line starting at `line_start`, with its table header.
fn key_at(text: &str, line_start: usize) -> String {
    let line = &text[line_start..];
    let key = line.split('=').next().unwrap_or_default().trim().trim_matches('"').to_string();
    let section = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|h| h.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    match section {
        Some(s) if !key.starts_with('[') => format!("{s}.{key}"),
        _ => key,
    }
}

fn config_hash(text: &str, secrets: &[String]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(text.as_bytes());
    for s in secrets {
        ctx.update(b"\0");
        ctx.update(s.as_bytes());
    }
    let digest = ctx.finish();
    digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a publishable key the way Clerk's `parsePublishableKey` does.
pub fn parse_publishable_key(raw: &str) -> Result<PublishableKey, String> {
    let parts: Vec<&str> = raw.split('_').collect();
    if parts.len() != 3 || parts[0] != "pk" || !(parts[1] == "test" || parts[1] == "live") {
        return Err("must look like pk_test_… or pk_live_…".into());
    }
    let encoded = parts[2].trim_end_matches('=');
    let decoded = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded)
        .map_err(|_| "the part after pk_test_/pk_live_ is not base64".to_string())?;
    let text = String::from_utf8(decoded).map_err(|_| "does not decode to text".to_string())?;
    let Some(host) = text.strip_suffix('$') else {
        return Err("does not decode to a Frontend API host ending in '$'".into());
    };
    if host.contains('$') || !host.contains('.') {
        return Err("does not decode to a Frontend API host".into());
    }
    Ok(PublishableKey {
        raw: raw.to_string(),
        frontend_api: host.to_string(),
        production: parts[1] == "live",
        cookie_suffix: cookie_suffix(raw),
    })
}

/// Clerk's cookie suffix: the first 8 characters of the URL-safe base64 of SHA-1(publishable key).
pub fn cookie_suffix(publishable_key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, publishable_key.as_bytes());
    let b64 = base64::engine::general_purpose::URL_SAFE.encode(digest.as_ref());
    b64[..8].to_string()
}

// === Validator ===

/// Collects problems and warnings while turning raw sections into validated ones.
#[derive(Default)]
struct Validator {
    problems: Vec<ConfigProblem>,
    warnings: Vec<String>,
    /// Resolved secret material, folded into the config hash so a rotated secret file shows.
    secrets_digest: Vec<String>,
}

impl Validator {
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem { key: key.to_string(), message: message.into() });
    }

    fn warn(&mut self, key: &str, message: impl fmt::Display) {
        self.warnings.push(format!("{key}: {message}"));
    }

    fn unknown(&mut self, section: &str, unknown: &Unknown) {
        for name in unknown.keys() {
            let key = if section.is_empty() { name.clone() } else { format!("{section}.{name}") };
            self.problem(&key, "unknown key (a typo is refused, never ignored)");
        }
    }

    /// A positive duration such as `"5s"`; `allow_zero` for the one key where 0 is meaningful.
    fn duration(&mut self, key: &str, value: Option<String>, default: Duration, allow_zero: bool) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.problem(key, "must be a positive duration");
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.problem(key, format!("{text:?} is not a duration like \"5s\", \"10m\" or \"24h\" ({e})"));
                default
            }
        }
    }

    fn socket_addr(&mut self, key: &str, value: Option<String>, default: &str) -> Option<SocketAddr> {
        let text = value.unwrap_or_else(|| default.to_string());
        match text.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(key, format!("{text:?} is not an address like \"127.0.0.1:8080\""));
                None
            }
        }
    }

    /// Resolves a secret: environment, then `*_file`, then the inline value.
    fn secret(
        &mut self,
        key: &str,
        inline: Option<String>,
        file: Option<String>,
        env: &Env,
        env_name: &str,
    ) -> Option<Secret> {
        if inline.is_some() && file.is_some() {
            self.problem(&format!("{key}_file"), format!("set either {key} or {key}_file, not both"));
        }
        let value = if let Some(v) = env.get(env_name) {
            Some(v.to_string())
        } else if let Some(path) = file {
            match std::fs::read_to_string(&path) {
                Ok(s) => Some(s.trim().to_string()),
                Err(e) => {
                    self.problem(&format!("{key}_file"), format!("cannot read {path}: {e}"));
                    None
                }
            }
        } else {
            inline
        };
        let value = value.filter(|v| !v.trim().is_empty())?;
        self.secrets_digest.push(value.clone());
        Some(Secret::new(value))
    }

    fn http_url(&mut self, key: &str, text: &str) -> Option<http::Uri> {
        match text.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http") | Some("https")) && u.authority().is_some() => Some(u),
            _ => {
                self.problem(key, format!("{text:?} is not an http:// or https:// URL"));
                None
            }
        }
    }

    fn server(&mut self, raw: raw::RawServer) -> Option<ServerConfig> {
        self.unknown("server", &raw.unknown);
        if raw.tls_cert.is_some() || raw.tls_key.is_some() {
            self.problem(
                "server.tls_cert",
                "TLS termination is not available in this build; terminate TLS in front of clerkgate",
            );
        }
        let listen = self.socket_addr("server.listen", raw.listen, "0.0.0.0:8080");
        let header_read_timeout =
            self.duration("server.header_read_timeout", raw.header_read_timeout, Duration::from_secs(10), false);
        let shutdown_grace = self.duration("server.shutdown_grace", raw.shutdown_grace, Duration::from_secs(30), false);
        Some(ServerConfig { listen: listen?, header_read_timeout, shutdown_grace })
    }

    fn upstream(&mut self, raw: raw::RawUpstream) -> Option<UpstreamConfig> {
        self.unknown("upstream", &raw.unknown);
        let text = raw.url.unwrap_or_else(|| "http://127.0.0.1:3000".to_string());
        let connect_timeout =
            self.duration("upstream.connect_timeout", raw.connect_timeout, Duration::from_secs(5), false);
        let response_timeout =
            self.duration("upstream.response_timeout", raw.response_timeout, Duration::from_secs(60), false);
        let uri = self.http_url("upstream.url", &text)?;
        if uri.scheme_str() != Some("http") {
            self.problem("upstream.url", "only http:// upstreams are supported (the upstream hop is plain HTTP)");
            return None;
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            self.problem("upstream.url", "must not carry a path or query: requests keep their own path");
            return None;
        }
        Some(UpstreamConfig { url: uri.authority()?.clone(), url_text: text, connect_timeout, response_timeout })
    }

    fn clerk(&mut self, raw: raw::RawClerk, env: &Env) -> Option<ClerkConfig> {
        self.unknown("clerk", &raw.unknown);
        self.unknown("clerk.keys", &raw.keys.unknown);

        let publishable_key =
            env.get(vars::PUBLISHABLE_KEY).map(str::to_string).or(raw.publishable_key).and_then(|pk| {
                match parse_publishable_key(pk.trim()) {
                    Ok(pk) => Some(pk),
                    Err(e) => {
                        self.problem("clerk.publishable_key", e);
                        None
                    }
                }
            });
        let secret_key = self.secret("clerk.secret_key", raw.secret_key, raw.secret_key_file, env, vars::SECRET_KEY);
        let jwt_pem = self.secret("clerk.jwt_key", raw.jwt_key, raw.jwt_key_file, env, vars::JWT_KEY);
        let jwt_key = jwt_pem.and_then(|pem| match VerifyingKey::from_pem(pem.expose(), None) {
            Ok(k) => Some(Arc::new(k)),
            Err(e) => {
                self.problem("clerk.jwt_key", format!("not a usable RS256 public key: {e}"));
                None
            }
        });
        let webhook_signing_secret = self.secret(
            "clerk.webhook_signing_secret",
            raw.webhook_signing_secret,
            raw.webhook_signing_secret_file,
            env,
            vars::WEBHOOK_SIGNING_SECRET,
        );

        let api_url = env
            .get(vars::API_URL)
            .map(str::to_string)
            .or(raw.api_url)
            .unwrap_or_else(|| "https://api.clerk.com".to_string());
        let api_url = api_url.trim_end_matches('/').to_string();
        self.http_url("clerk.api_url", &api_url);

        let jwks = match (raw.jwks_url, &secret_key) {
            (Some(url), bearer) => {
                self.http_url("clerk.jwks_url", &url);
                // The secret key goes only to the Backend API, never to another host.
                let bearer = bearer.clone().filter(|_| url.starts_with(&format!("{api_url}/")));
                Some(JwksSource { url, bearer })
            }
            (None, Some(sk)) => Some(JwksSource { url: format!("{api_url}/v1/jwks"), bearer: Some(sk.clone()) }),
            (None, None) => None,
        };
        if jwt_key.is_none() && jwks.is_none() && !self.problems.iter().any(|p| p.key.starts_with("clerk.jwt_key")) {
            self.problem(
                "clerk",
                "no key source: set jwt_key (networkless), secret_key (Backend API JWKS) or jwks_url",
            );
        }

        let clock_skew = self.duration("clerk.clock_skew", raw.clock_skew, Duration::from_secs(5), true);
        if clock_skew > Duration::from_secs(60) {
            self.warn("clerk.clock_skew", "more than 60s widens every token's validity window; fix the clock instead");
        }
        let authorized_parties = raw.authorized_parties.unwrap_or_default();
        for (i, p) in authorized_parties.iter().enumerate() {
            if !p.is_empty() && !p.starts_with("http://") && !p.starts_with("https://") {
                self.warn(
                    &format!("clerk.authorized_parties[{i}]"),
                    format!("{p:?} is not an origin like https://app.example.com; azp is compared exactly"),
                );
            }
        }
        let sign_in_url = raw.sign_in_url;
        if let Some(u) = &sign_in_url {
            self.http_url("clerk.sign_in_url", u);
        }
        let status_url = raw.status_url.unwrap_or_else(|| "https://status.clerk.com/api/v2/status.json".to_string());
        self.http_url("clerk.status_url", &status_url);

        let k = raw.keys;
        let keys = KeysConfig {
            refresh_interval: self.duration(
                "clerk.keys.refresh_interval",
                k.refresh_interval,
                Duration::from_secs(300),
                false,
            ),
            unknown_kid_cooldown: self.duration(
                "clerk.keys.unknown_kid_cooldown",
                k.unknown_kid_cooldown,
                Duration::from_secs(10),
                false,
            ),
            max_stale: self.duration("clerk.keys.max_stale", k.max_stale, Duration::from_secs(24 * 3600), false),
            fetch_timeout: self.duration("clerk.keys.fetch_timeout", k.fetch_timeout, Duration::from_secs(5), false),
        };
        if keys.unknown_kid_cooldown < Duration::from_secs(1) {
            self.warn("clerk.keys.unknown_kid_cooldown", "under 1s lets a flood of unknown kids reach the JWKS often");
        }
        if keys.max_stale < keys.refresh_interval {
            self.warn("clerk.keys.max_stale", "shorter than refresh_interval: keys may go stale between refreshes");
        }

        let verdict_cache_entries = match raw.verdict_cache_entries {
            None => crate::auth::cache::DEFAULT_CAPACITY,
            Some(n) if (0..=10_000_000).contains(&n) => n as usize,
            Some(n) => {
                self.problem("clerk.verdict_cache_entries", format!("{n} must be between 0 (disabled) and 10000000"));
                0
            }
        };
        Some(ClerkConfig {
            verdict_cache_entries,
            publishable_key,
            secret_key,
            jwt_key,
            api_url,
            jwks,
            authorized_parties,
            clock_skew,
            issuer: raw.issuer.map(|i| i.trim_end_matches('/').to_string()),
            reject_pending_sessions: raw.reject_pending_sessions.unwrap_or(false),
            sign_in_url,
            status_url,
            webhook_signing_secret,
            keys,
        })
    }

    fn routes(&mut self, raw: raw::RawRoutes, clerk: Option<&ClerkConfig>) -> Option<RouteTable> {
        self.unknown("routes", &raw.unknown);
        let default = match raw.default.as_deref() {
            None | Some("protected") => Access::Protected,
            Some("public") => Access::Public,
            Some(other) => {
                self.problem("routes.default", format!("{other:?} must be \"protected\" or \"public\""));
                Access::Protected
            }
        };
        let public_raw = raw.public.unwrap_or_else(|| vec!["/".into(), "/sign-in(.*)".into(), "/sign-up(.*)".into()]);
        let mut public = Vec::new();
        for (i, p) in public_raw.iter().enumerate() {
            match RoutePattern::parse(p) {
                Ok(p) => public.push(p),
                Err(e) => self.problem(&format!("routes.public[{i}]"), format!("{p:?}: {e}")),
            }
        }
        let mut rules = Vec::new();
        for (i, r) in raw.rule.into_iter().enumerate() {
            let key = format!("routes.rule[{i}]");
            self.unknown(&key, &r.unknown);
            let pattern = match r.path.as_deref().map(RoutePattern::parse) {
                None => {
                    self.problem(&format!("{key}.path"), "is required");
                    None
                }
                Some(Err(e)) => {
                    self.problem(&format!("{key}.path"), e);
                    None
                }
                Some(Ok(p)) => Some(p),
            };
            let methods = r.methods.map(|ms| {
                ms.iter()
                    .filter_map(|m| match http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                        Ok(m) => Some(m),
                        Err(_) => {
                            self.problem(&format!("{key}.methods"), format!("{m:?} is not an HTTP method"));
                            None
                        }
                    })
                    .collect::<Vec<_>>()
            });
            let bypass_never = match r.bypass.as_deref() {
                None | Some("allow") => false,
                Some("never") => true,
                Some(other) => {
                    self.problem(&format!("{key}.bypass"), format!("{other:?} must be \"never\" or \"allow\""));
                    false
                }
            };
            let webhook = match r.webhook.as_deref() {
                None => false,
                Some("clerk") => true,
                Some(other) => {
                    self.problem(&format!("{key}.webhook"), format!("{other:?}: the only webhook kind is \"clerk\""));
                    false
                }
            };
            if webhook && (r.role.is_some() || r.permission.is_some()) {
                self.problem(
                    &key,
                    "a webhook route is authenticated by its signature; it cannot also ask for a role or permission",
                );
            }
            if webhook && clerk.is_some_and(|c| c.webhook_signing_secret.is_none()) {
                self.problem(
                    &format!("{key}.webhook"),
                    "needs clerk.webhook_signing_secret (or CLERK_WEBHOOK_SIGNING_SECRET)",
                );
            }
            for (name, value) in [("role", &r.role), ("permission", &r.permission)] {
                if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    self.problem(&format!("{key}.{name}"), "must not be empty");
                }
            }
            if let Some(pattern) = pattern {
                rules.push(RouteRule {
                    pattern,
                    methods,
                    role: r.role,
                    permission: r.permission,
                    bypass_never,
                    webhook,
                });
            }
        }
        Some(RouteTable { default, public, rules })
    }

    fn mode(&mut self, raw: raw::RawMode, env: &Env) -> Option<ModeConfig> {
        self.unknown("mode", &raw.unknown);
        let mode = match raw.mode.as_deref().map(str::parse::<Mode>) {
            None => Mode::Enforce,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                self.problem("mode.mode", e);
                Mode::Enforce
            }
        };
        let reason = raw.reason.unwrap_or_default();
        if mode == Mode::Bypass && reason.trim().is_empty() {
            self.problem("mode.reason", "is required when mode is \"bypass\": bypass never starts without a reason");
        }
        let emergency_bypass_env = match env.get(vars::EMERGENCY_BYPASS) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
            Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => false,
            Some(v) => {
                self.problem(vars::EMERGENCY_BYPASS, format!("{v:?} must be true or false"));
                false
            }
        };
        Some(ModeConfig {
            mode,
            reason,
            grace_max_expired: self.duration(
                "mode.grace_max_expired",
                raw.grace_max_expired,
                Duration::from_secs(3600),
                false,
            ),
            max_override_ttl: self.duration(
                "mode.max_override_ttl",
                raw.max_override_ttl,
                Duration::from_secs(4 * 3600),
                false,
            ),
            emergency_bypass_env,
        })
    }

    fn admin(&mut self, raw: raw::RawAdmin, env: &Env) -> Option<AdminConfig> {
        self.unknown("admin", &raw.unknown);
        let listen = self.socket_addr("admin.listen", raw.listen, "127.0.0.1:9901");
        let token = self.secret("admin.token", raw.token, raw.token_file, env, vars::ADMIN_TOKEN);
        if let Some(listen) = listen {
            if !listen.ip().is_loopback() {
                self.warn(
                    "admin.listen",
                    format!("{listen} is not loopback: the admin API is reachable from the network"),
                );
            }
        }
        if token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            self.warn("admin.token", "shorter than 16 characters");
        }
        Some(AdminConfig { listen: listen?, token })
    }

    fn state(&mut self, raw: raw::RawState) -> Option<StateConfig> {
        self.unknown("state", &raw.unknown);
        match raw.backend.as_deref() {
            None | Some("file") => {}
            Some("redis") => {
                self.problem("state.backend", "\"redis\" is not available in this build yet; use \"file\"")
            }
            Some(other) => self.problem("state.backend", format!("{other:?} must be \"file\" or \"redis\"")),
        }
        if raw.redis_url.is_some() && raw.backend.as_deref() != Some("redis") {
            self.problem("state.redis_url", "only applies with backend = \"redis\"");
        }
        let dir = PathBuf::from(raw.dir.unwrap_or_else(|| "./clerkgate-state".to_string()));
        Some(StateConfig { dir, backend: StateBackend::File })
    }

    fn log(&mut self, raw: raw::RawLog) -> Option<LogConfig> {
        self.unknown("log", &raw.unknown);
        let format = match raw.format.as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                self.problem("log.format", format!("{other:?} must be \"json\" or \"pretty\""));
                LogFormat::Json
            }
        };
        let level = raw.level.unwrap_or_else(|| "info".to_string());
        if log_filter(&level).is_err() {
            self.problem("log.level", format!("{level:?} is not a log filter like \"info\" or \"clerkgate=debug\""));
        }
        Some(LogConfig { format, level })
    }
}

/// Parses `log.level` into the filter the binary installs. Field values in a filter
/// (`[span{field=value}]`) match literally, not as tracing-subscriber's default regular
/// expressions: compiling those can take minutes and gigabytes for a 20-character value
/// (`[x{f=2....................}]`, found by the config fuzzer), so one config line could stall
/// `check-config`, a reload or the start until the process is killed.
pub fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    tracing_subscriber::EnvFilter::builder().with_regex(false).parse(level).map_err(|e| e.to_string())
}

/// The problems by key, for tests and tools that look one up.
pub fn problems_by_key(errors: &ConfigErrors) -> BTreeMap<&str, &str> {
    errors.0.iter().map(|p| (p.key.as_str(), p.message.as_str())).collect()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
