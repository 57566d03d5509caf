//! The validator: turns the raw mirror into a [`Config`], section by section, collecting every
//! problem under its dotted key and every unwise-but-valid value as a warning. Secrets are
//! resolved here (environment, then `*_file`, then inline).

use std::fmt;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;

use super::publishable_key::parse_publishable_key;
use super::raw::{self, RawConfig, Unknown};
use super::source::Source;
use super::{suggest, tls, unwise};
use super::{
    vars, AdminConfig, Cidr, ClerkConfig, Config, ConfigErrors, ConfigProblem, Env, HeaderPolicy, JwksSource,
    KeysConfig, LogConfig, LogFormat, ModeConfig, Origin, RedisConfig, Secret, ServerConfig, ServerTls, StateBackend,
    StateConfig, TrustedProxies, UpgradeProtocols, UpstreamConfig, UpstreamTls,
};
use crate::mode::Mode;
use crate::routes::{Access, RoutePattern, RouteRule, RouteTable};
use crate::verifying_key::VerifyingKey;

/// `clerk.verdict_cache_entries` when unset: 64k tokens of about 1 KiB each.
pub const DEFAULT_VERDICT_CACHE_ENTRIES: usize = 65_536;

/// `state.webhook_journal_max_mib` when unset: some 30,000 Clerk events of a few KiB.
const DEFAULT_WEBHOOK_JOURNAL_MIB: u64 = 100;

/// `state.webhook_journal_max_age` when unset: Svix's retry horizon (about 28 h) and a manual
/// recovery window besides (clerk-ops §5.4).
const DEFAULT_WEBHOOK_JOURNAL_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// `state.redis.key_prefix` when unset.
const DEFAULT_REDIS_KEY_PREFIX: &str = "clerkgate";

/// `state.redis.fleet` when unset.
const DEFAULT_REDIS_FLEET: &str = "default";

/// `state.redis.heartbeat` when unset.
const DEFAULT_REDIS_HEARTBEAT: Duration = Duration::from_secs(5);

/// `state.redis.resync_interval` when unset.
const DEFAULT_REDIS_RESYNC: Duration = Duration::from_secs(60);

/// `state.redis.audit_buffer_max` when unset.
const DEFAULT_REDIS_AUDIT_BUFFER: usize = 10_000;
/// `clerk.webhook_gap_window` when unset: a day without a verified delivery is worth a look
/// (clerk-ops §8.4 `webhook-gap`).
const DEFAULT_WEBHOOK_GAP_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The largest file a config key may name (a secret, a key, a certificate chain).
pub(super) const MAX_REFERENCED_FILE: u64 = 1024 * 1024;

/// An admin token shorter than this is warned about on a loopback `admin.listen`, and refused
/// on one reachable from the network, where it can be guessed.
pub(super) const MIN_ADMIN_TOKEN_CHARS: usize = 16;

impl Config {
    /// Validates the raw mirror; `type_problems` are the wrongly typed values that
    /// [`super::toml_recovery`] already took out.
    pub(super) fn from_raw(
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
        let state = v.state(raw.state, env);
        let log = v.log(raw.log);

        if let (Some(server), Some(admin)) = (&server, &admin) {
            if server.listen == admin.listen && server.listen.port() != 0 {
                v.problem(
                    "admin.listen",
                    "must differ from server.listen: the admin API never shares the data-plane port",
                );
            }
            for (other, addr) in [("server.listen", server.listen), ("admin.listen", admin.listen)] {
                if server.health_listen.is_some_and(|h| same_port(h, addr)) {
                    v.problem(
                        "server.health_listen",
                        format!(
                            "must differ from {other} ({addr}): the health listener serves only /healthz, \
                             /readyz and /metrics, on a port of its own"
                        ),
                    );
                }
            }
        }

        let Validator { problems, warnings, secrets_digest, from_env, files } = v;
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
                origin: Origin {
                    path: None,
                    loaded_at: SystemTime::now(),
                    hash: config_hash(text, &secrets_digest),
                    from_env,
                    files,
                },
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
}

/// Two listen addresses that would take the same port: equal, or one of them the unspecified
/// address of the same family (`0.0.0.0:9902` holds `127.0.0.1:9902` too). Port 0 (any free
/// port, in tests) never clashes.
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port()
        && a.port() != 0
        && a.is_ipv4() == b.is_ipv4()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
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

/// Collects problems and warnings while turning raw sections into validated ones.
#[derive(Default)]
struct Validator {
    problems: Vec<ConfigProblem>,
    warnings: Vec<String>,
    /// Resolved secret material and the text of certificate files, folded into the config
    /// hash so a rotated secret or a renewed certificate shows.
    secrets_digest: Vec<String>,
    /// `(key, variable)` for each value the environment set.
    from_env: Vec<(&'static str, &'static str)>,
    /// Every file read besides the config file itself, as written in the config.
    files: Vec<PathBuf>,
}

impl Validator {
    fn problem(&mut self, key: &str, message: impl Into<String>) {
        self.problems.push(ConfigProblem { key: key.to_string(), message: message.into() });
    }

    fn warn(&mut self, key: &str, message: impl fmt::Display) {
        self.warnings.push(format!("{key}: {message}"));
    }

    fn unknown(&mut self, section: &str, unknown: &Unknown) {
        // Every `[[routes.rule]]` knows the same keys.
        let known_as = section.split('[').next().unwrap_or(section);
        for name in unknown.keys() {
            let key = if section.is_empty() { name.clone() } else { format!("{section}.{name}") };
            let message = match suggest::did_you_mean(known_as, name) {
                Some(hint) => format!("unknown key; {hint}"),
                None => "unknown key (a typo is refused, never ignored)".to_string(),
            };
            self.problem(&key, message);
        }
    }

    /// A positive duration such as `"5s"`; `allow_zero` for the one key where 0 is meaningful.
    /// A value outside its sensible range ([`unwise`]) is accepted with a warning.
    fn duration(&mut self, key: &str, value: Option<String>, default: Duration, allow_zero: bool) -> Duration {
        let Some(text) = value else { return default };
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.problem(key, "must be a positive duration");
                default
            }
            Ok(d) => {
                if let Some(w) = unwise::warning(key, &text, d) {
                    self.warn(key, w);
                }
                d
            }
            Err(e) => {
                self.problem(key, format!("{text:?} is not a duration like \"5s\", \"10m\" or \"24h\" ({e})"));
                default
            }
        }
    }

    /// A count from 1 to 1,000,000 (connection limits).
    fn count(&mut self, key: &str, value: Option<i64>, default: usize) -> usize {
        match value {
            None => default,
            Some(n) if (1..=1_000_000).contains(&n) => n as usize,
            Some(n) => {
                self.problem(key, format!("{n} must be between 1 and 1000000"));
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

    /// Resolves a secret: environment, then `*_file`, then the inline value; with where it came
    /// from, so that a problem with the value names that place. An empty inline value or
    /// variable counts as unset; an empty file is a problem (it was meant to hold something).
    fn secret(
        &mut self,
        key: &'static str,
        inline: Option<String>,
        file: Option<String>,
        env: &Env,
        var: &'static str,
    ) -> Option<(Secret, Source)> {
        let file_key = format!("{key}_file");
        if inline.is_some() && file.is_some() {
            self.problem(&file_key, format!("set either {key} or {key}_file, not both"));
        }
        let (value, source) = if let Some(v) = env.get(var) {
            (v.to_string(), Source::Env { var, key })
        } else if let Some(path) = file {
            (self.secret_file(&file_key, &path)?, Source::File { key: file_key, path })
        } else {
            (inline.filter(|v| !v.trim().is_empty())?, Source::Inline { key })
        };
        self.secrets_digest.push(value.clone());
        self.note_source(key, &source);
        Some((Secret::new(value), source))
    }

    /// The secret in the file a `*_file` key names, trimmed (a trailing newline is not part of
    /// it). An empty file is a problem under `file_key`: it was meant to hold something.
    fn secret_file(&mut self, file_key: &str, path: &str) -> Option<String> {
        let s = self.read_file(file_key, path)?;
        if s.trim().is_empty() {
            self.problem(file_key, format!("{path} is empty"));
            return None;
        }
        Some(s.trim().to_string())
    }

    /// Reads the file a config key names (`*_file` secrets, certificates), at most
    /// [`MAX_REFERENCED_FILE`] bytes, and records it among the files a reload watches. A file
    /// that cannot be read, is too large or is not UTF-8 is a problem under `key`.
    fn read_file(&mut self, key: &str, path: &str) -> Option<String> {
        self.files.push(PathBuf::from(path));
        let read = std::fs::File::open(path).and_then(|f| {
            let mut bytes = Vec::new();
            f.take(MAX_REFERENCED_FILE + 1).read_to_end(&mut bytes)?;
            Ok(bytes)
        });
        match read {
            Ok(bytes) if bytes.len() as u64 > MAX_REFERENCED_FILE => {
                self.problem(
                    key,
                    format!("{path} is larger than {} KiB; is it the right file?", MAX_REFERENCED_FILE / 1024),
                );
                None
            }
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(s) => Some(s),
                Err(_) => {
                    self.problem(key, format!("{path} is not UTF-8 text"));
                    None
                }
            },
            Err(e) => {
                self.problem(key, format!("cannot read {path}: {e}"));
                None
            }
        }
    }

    /// A plain value from the environment variable `var` or else the inline `key`.
    fn env_or_inline(
        &mut self,
        key: &'static str,
        inline: Option<String>,
        env: &Env,
        var: &'static str,
    ) -> Option<(String, Source)> {
        let (value, source) = match env.get(var) {
            Some(v) => (v.to_string(), Source::Env { var, key }),
            None => (inline?, Source::Inline { key }),
        };
        self.note_source(key, &source);
        Some((value, source))
    }

    fn note_source(&mut self, key: &'static str, source: &Source) {
        if let Some(var) = source.env_var() {
            self.from_env.push((key, var));
        }
    }

    /// The networkless key: an RS256 public key in PEM. A private key is refused with the
    /// command that derives the public one.
    fn jwt_key(&mut self, pem: &Secret, source: &Source) -> Option<Arc<VerifyingKey>> {
        if pem.expose().contains("PRIVATE KEY-----") {
            self.problem(
                source.key(),
                source.explain("this is a private key; give the public key: `openssl rsa -in key.pem -pubout`"),
            );
            return None;
        }
        match VerifyingKey::from_pem(pem.expose(), None) {
            Ok(k) => Some(Arc::new(k)),
            Err(e) => {
                self.problem(source.key(), source.explain(format!("not a usable RS256 public key: {e}")));
                None
            }
        }
    }

    /// The Backend API secret key: a publishable key in its place is refused, anything not
    /// shaped like `sk_…` is warned about.
    fn check_secret_key(&mut self, secret: &Secret, source: &Source) {
        let value = secret.expose();
        if value.starts_with("pk_") {
            self.problem(
                source.key(),
                source.explain(
                    "this is a publishable key; the secret key starts with sk_test_ or sk_live_ \
                     (API keys page of the Clerk dashboard)",
                ),
            );
        } else if !value.starts_with("sk_") {
            self.warn(source.key(), source.explain("does not look like a Clerk secret key (sk_test_… or sk_live_…)"));
        }
    }

    /// The Svix signing secret must decode (after an optional `whsec_`) to a non-empty key, or
    /// every webhook delivery would be refused.
    /// `which` names the secret among several (`secret 2 of 2`).
    fn check_webhook_secret(&mut self, secret: &Secret, source: &Source, which: Option<&str>) {
        let value = secret.expose();
        let encoded = value.strip_prefix("whsec_").unwrap_or(value);
        let decodes = base64::engine::general_purpose::STANDARD.decode(encoded).is_ok_and(|k| !k.is_empty());
        if !decodes {
            let message = "not a webhook signing secret: after `whsec_` it must be base64 \
                 (copy it from the webhook endpoint's page in the Clerk dashboard)";
            let message = match which {
                Some(which) => format!("{which}: {message}"),
                None => message.to_string(),
            };
            self.problem(source.key(), source.explain(message));
        }
    }

    /// An `http(s)://` URL, or a path (`/sign-in`) that Clerk resolves against the app's origin.
    fn url_or_path(&mut self, key: &str, text: &str) {
        let ok = if text.starts_with('/') && !text.starts_with("//") {
            text.parse::<http::uri::PathAndQuery>().is_ok() && !text.contains('#')
        } else {
            text.parse::<http::Uri>()
                .is_ok_and(|u| matches!(u.scheme_str(), Some("http") | Some("https")) && u.authority().is_some())
        };
        if !ok {
            self.problem(key, format!("{text:?} is not an http:// or https:// URL, nor a path like /sign-in"));
        }
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
        let listen = self.socket_addr("server.listen", raw.listen, "0.0.0.0:8080");
        let header_read_timeout =
            self.duration("server.header_read_timeout", raw.header_read_timeout, Duration::from_secs(10), false);
        let idle_timeout = self.duration("server.idle_timeout", raw.idle_timeout, Duration::from_secs(60), false);
        let request_body_timeout =
            self.duration("server.request_body_timeout", raw.request_body_timeout, Duration::from_secs(30), false);
        let send_timeout = self.duration("server.send_timeout", raw.send_timeout, Duration::from_secs(60), false);
        let max_connections = self.count("server.max_connections", raw.max_connections, 16_384);
        let max_connections_per_client =
            self.count("server.max_connections_per_client", raw.max_connections_per_client, 1_024);
        if max_connections_per_client > max_connections {
            self.warn("server.max_connections_per_client", "larger than server.max_connections, which caps it");
        }
        let shutdown_grace = self.duration("server.shutdown_grace", raw.shutdown_grace, Duration::from_secs(30), false);
        let tls = self.server_tls(raw.tls_cert, raw.tls_key);
        let health_listen = match raw.health_listen {
            None => None,
            Some(text) => Some(self.socket_addr("server.health_listen", Some(text), "")?),
        };
        let trusted_proxies = self.trusted_proxies(raw.trusted_proxies.unwrap_or_default());
        let proxy_protocol = raw.proxy_protocol.unwrap_or(false);
        if proxy_protocol && trusted_proxies.is_empty() {
            self.problem(
                "server.proxy_protocol",
                "needs server.trusted_proxies: a PROXY header is read only from a trusted peer, and none is listed",
            );
        }
        Some(ServerConfig {
            listen: listen?,
            header_read_timeout,
            idle_timeout,
            request_body_timeout,
            send_timeout,
            max_connections,
            max_connections_per_client,
            shutdown_grace,
            tls,
            health_listen,
            trusted_proxies,
            proxy_protocol,
        })
    }

    /// `server.tls_cert` and `server.tls_key`: both or neither; read, parsed, and the key
    /// checked against the certificate. Their text goes into the config hash, so a renewed
    /// certificate shows as a changed config.
    fn server_tls(&mut self, cert: Option<String>, key: Option<String>) -> Option<ServerTls> {
        let (cert_file, key_file) = match (cert, key) {
            (None, None) => return None,
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => {
                self.problem(
                    "server.tls_key",
                    "is required with server.tls_cert: TLS needs the certificate's private key",
                );
                return None;
            }
            (None, Some(_)) => {
                self.problem("server.tls_cert", "is required with server.tls_key: TLS needs the certificate chain");
                return None;
            }
        };
        let cert_pem = self.read_file("server.tls_cert", &cert_file);
        let key_pem = self.read_file("server.tls_key", &key_file);
        let (cert_pem, key_pem) = (cert_pem?, key_pem?);
        let certified = tls::certified_key(&cert_pem, &cert_file, &key_pem, &key_file);
        self.secrets_digest.push(cert_pem);
        self.secrets_digest.push(key_pem);
        match certified {
            Ok(certified) => Some(ServerTls {
                cert_file: PathBuf::from(cert_file),
                key_file: PathBuf::from(key_file),
                certified: Arc::new(certified),
            }),
            Err(p) => {
                self.problem(p.key, p.message);
                None
            }
        }
    }

    /// The TLS side of an `https://` upstream: its host must be a name a certificate can carry,
    /// and its certificate is checked against `ca_file`'s CAs, or the system's roots.
    fn upstream_tls(&mut self, host: &str, ca_file: Option<String>) -> Option<UpstreamTls> {
        if tls::server_name(host).is_none() {
            self.problem("upstream.url", format!("{host:?} is not a host name or address a TLS certificate can name"));
            return None;
        }
        let ca = match &ca_file {
            Some(path) => Some((self.read_file("upstream.ca_file", path)?, path.as_str())),
            None => None,
        };
        let roots_id = ca.as_ref().map_or(0, |(text, _)| {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
            let mut id = [0u8; 8];
            id.copy_from_slice(&digest.as_ref()[..8]);
            u64::from_be_bytes(id)
        });
        let client = tls::upstream_client(ca.as_ref().map(|(text, path)| (text.as_str(), *path)));
        if let Some((text, _)) = ca {
            self.secrets_digest.push(text);
        }
        match client {
            Ok(client) => Some(UpstreamTls { ca_file: ca_file.map(PathBuf::from), client, roots_id }),
            Err(p) => {
                self.problem(p.key, p.message);
                None
            }
        }
    }

    /// `server.trusted_proxies`: every entry an address or a network; each bad one is a problem.
    /// A network that holds every address is accepted with a warning: then any client can
    /// write its own `X-Forwarded-For` and PROXY header.
    fn trusted_proxies(&mut self, entries: Vec<String>) -> TrustedProxies {
        let mut nets = Vec::new();
        for entry in &entries {
            match Cidr::parse(entry.trim()) {
                Ok(net) => {
                    if net.is_everything() {
                        self.warn(
                            "server.trusted_proxies",
                            format!(
                                "{entry:?} trusts every peer: any client can then set the address the upstream sees"
                            ),
                        );
                    }
                    nets.push(net);
                }
                Err(message) => self.problem("server.trusted_proxies", message),
            }
        }
        TrustedProxies::new(nets)
    }

    fn upstream(&mut self, raw: raw::RawUpstream) -> Option<UpstreamConfig> {
        self.unknown("upstream", &raw.unknown);
        let text = raw.url.unwrap_or_else(|| "http://127.0.0.1:3000".to_string());
        let connect_timeout =
            self.duration("upstream.connect_timeout", raw.connect_timeout, Duration::from_secs(5), false);
        let response_timeout =
            self.duration("upstream.response_timeout", raw.response_timeout, Duration::from_secs(60), false);
        let max_connections = self.count("upstream.max_connections", raw.max_connections, 1_024);
        let headers = self.header_policy(raw.upgrade_protocols, raw.allow_routing_headers);
        let uri = self.http_url("upstream.url", &text)?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            self.problem("upstream.url", "must not carry a path or query: requests keep their own path");
            return None;
        }
        let tls = match (uri.scheme_str(), raw.ca_file) {
            (Some("https"), ca_file) => Some(self.upstream_tls(uri.host().unwrap_or_default(), ca_file)?),
            (_, Some(_)) => {
                self.problem("upstream.ca_file", "only applies to an https:// upstream.url");
                None
            }
            (_, None) => None,
        };
        Some(UpstreamConfig {
            url: uri.authority()?.clone(),
            url_text: text,
            connect_timeout,
            response_timeout,
            max_connections,
            headers,
            tls,
        })
    }

    fn header_policy(&mut self, upgrades: Option<Vec<String>>, routing: Option<Vec<String>>) -> HeaderPolicy {
        let mut policy = HeaderPolicy::default();
        if let Some(entries) = upgrades {
            match UpgradeProtocols::new(&entries) {
                Ok(p) => policy.upgrade_protocols = p,
                Err(problems) => problems.into_iter().for_each(|m| self.problem("upstream.upgrade_protocols", m)),
            }
        }
        match HeaderPolicy::routing_headers(&routing.unwrap_or_default()) {
            Ok(allowed) => policy.allow_routing_headers = allowed,
            Err(problems) => problems.into_iter().for_each(|m| self.problem("upstream.allow_routing_headers", m)),
        }
        policy
    }

    fn clerk(&mut self, raw: raw::RawClerk, env: &Env) -> Option<ClerkConfig> {
        self.unknown("clerk", &raw.unknown);
        self.unknown("clerk.keys", &raw.keys.unknown);

        let publishable_key = self
            .env_or_inline("clerk.publishable_key", raw.publishable_key, env, vars::PUBLISHABLE_KEY)
            .and_then(|(pk, source)| match parse_publishable_key(pk.trim()) {
                Ok(pk) => Some(pk),
                Err(e) => {
                    self.problem(source.key(), source.explain(e));
                    None
                }
            });
        let key_problems = self.problems.len();
        let secret_key = self.secret("clerk.secret_key", raw.secret_key, raw.secret_key_file, env, vars::SECRET_KEY);
        if let Some((sk, source)) = &secret_key {
            self.check_secret_key(sk, source);
        }
        let secret_key_from = secret_key.as_ref().map(|(_, source)| source.key().to_string());
        let secret_key = secret_key.map(|(sk, _)| sk);
        let jwt_pem = self.secret("clerk.jwt_key", raw.jwt_key, raw.jwt_key_file, env, vars::JWT_KEY);
        let jwt_key = jwt_pem.and_then(|(pem, source)| self.jwt_key(&pem, &source));
        let key_source_refused = self.problems.len() > key_problems;
        // Several secrets during a rotation: a list, or whitespace between them (in the string,
        // the file, or the variable); one source as for any secret, then split.
        let inline = raw.webhook_signing_secret.map(|v| v.into_vec().join(" "));
        let webhook_signing_secrets = match self.secret(
            "clerk.webhook_signing_secret",
            inline,
            raw.webhook_signing_secret_file,
            env,
            vars::WEBHOOK_SIGNING_SECRET,
        ) {
            None => Vec::new(),
            Some((all, source)) => {
                let secrets: Vec<Secret> = all.expose().split_whitespace().map(Secret::new).collect();
                for (i, secret) in secrets.iter().enumerate() {
                    let which = (secrets.len() > 1).then(|| format!("secret {} of {}", i + 1, secrets.len()));
                    self.check_webhook_secret(secret, &source, which.as_deref());
                }
                secrets
            }
        };
        let upstream_webhook_secret = self
            .secret(
                "clerk.upstream_webhook_secret",
                raw.upstream_webhook_secret,
                raw.upstream_webhook_secret_file,
                env,
                vars::UPSTREAM_WEBHOOK_SECRET,
            )
            .map(|(secret, source)| {
                self.check_webhook_secret(&secret, &source, None);
                secret
            });

        let (api_url, api_url_key) = match self.env_or_inline("clerk.api_url", raw.api_url, env, vars::API_URL) {
            Some((url, source)) => (url, source.key().to_string()),
            None => ("https://api.clerk.com".to_string(), "clerk.api_url".to_string()),
        };
        let api_url = api_url.trim_end_matches('/').to_string();
        self.http_url(&api_url_key, &api_url);

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
        // A key source that was given but refused has its own problem; "no key source" on top
        // would send the operator looking for the wrong thing.
        if jwt_key.is_none() && jwks.is_none() && !key_source_refused {
            self.problem(
                "clerk",
                "no key source: set jwt_key (networkless), secret_key (Backend API JWKS) or jwks_url",
            );
        }

        let clock_skew = self.duration("clerk.clock_skew", raw.clock_skew, Duration::from_secs(5), true);
        let webhook_gap_window =
            self.duration("clerk.webhook_gap_window", raw.webhook_gap_window, DEFAULT_WEBHOOK_GAP_WINDOW, false);
        let authorized_parties = raw.authorized_parties.unwrap_or_default();
        for (i, p) in authorized_parties.iter().enumerate() {
            if !p.is_empty() && !p.starts_with("http://") && !p.starts_with("https://") {
                self.warn(
                    &format!("clerk.authorized_parties[{i}]"),
                    format!("{p:?} is not an origin like https://app.example.com; azp is compared exactly"),
                );
            }
        }
        // Clerk resolves a sign-in URL against the app's URL, so a path is as good as a URL.
        let sign_in_url = raw.sign_in_url;
        if let Some(u) = &sign_in_url {
            self.url_or_path("clerk.sign_in_url", u);
        }
        let frontend_api = raw.frontend_api.map(|f| f.trim_end_matches('/').to_string());
        if let Some(f) = &frontend_api {
            if f.starts_with("http://") || f.starts_with("https://") {
                self.http_url("clerk.frontend_api", f);
            } else if f
                .parse::<http::uri::Authority>()
                .map_or(true, |a| a.as_str().contains('@') || a.host().is_empty())
            {
                self.problem("clerk.frontend_api", format!("{f:?} is not a host like clerk.example.com"));
            }
        }
        let proxy_url = raw.proxy_url;
        if let Some(u) = &proxy_url {
            self.url_or_path("clerk.proxy_url", u);
        }
        if publishable_key.is_none() {
            for (key, set) in [("clerk.frontend_api", frontend_api.is_some()), ("clerk.proxy_url", proxy_url.is_some())]
            {
                if set {
                    self.problem(
                        key,
                        "the browser handshake needs clerk.publishable_key (or CLERK_PUBLISHABLE_KEY) as well",
                    );
                }
            }
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
        if keys.max_stale < keys.refresh_interval {
            self.warn("clerk.keys.max_stale", "shorter than refresh_interval: keys may go stale between refreshes");
        }

        let verdict_cache_entries = match raw.verdict_cache_entries {
            None => DEFAULT_VERDICT_CACHE_ENTRIES,
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
            secret_key_from,
            jwt_key,
            api_url,
            jwks,
            authorized_parties,
            clock_skew,
            issuer: raw.issuer.map(|i| i.trim_end_matches('/').to_string()),
            reject_pending_sessions: raw.reject_pending_sessions.unwrap_or(true),
            sign_in_url,
            frontend_api,
            proxy_url,
            status_url,
            webhook_signing_secrets,
            upstream_webhook_secret,
            webhook_gap_window,
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
            if webhook && clerk.is_some_and(|c| c.webhook_signing_secrets.is_empty()) {
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
        Some(RouteTable::new(default, public, rules))
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
        let exposed = listen.filter(|l| !l.ip().is_loopback());
        if let Some(listen) = exposed {
            self.warn("admin.listen", format!("{listen} is not loopback: the admin API is reachable from the network"));
        }
        if let Some((token, source)) = &token {
            if token.expose().chars().count() < MIN_ADMIN_TOKEN_CHARS {
                let short = format!("shorter than {MIN_ADMIN_TOKEN_CHARS} characters");
                match exposed {
                    Some(listen) => self.problem(
                        source.key(),
                        source.explain(format!(
                            "{short}, and admin.listen ({listen}) is reachable from the network, where a short \
                             token can be guessed; use a long random one, e.g. `openssl rand -hex 32`"
                        )),
                    ),
                    None => self.warn(source.key(), source.explain(short)),
                }
            }
        }
        Some(AdminConfig { listen: listen?, token: token.map(|(t, _)| t) })
    }

    fn state(&mut self, raw: raw::RawState, env: &Env) -> Option<StateConfig> {
        self.unknown("state", &raw.unknown);
        let backend = match raw.backend.as_deref() {
            None | Some("file") => {
                if raw.redis.is_some() {
                    self.problem("state.redis", "only applies with backend = \"redis\"");
                }
                Some(StateBackend::File)
            }
            Some("redis") => self.redis(raw.redis.unwrap_or_default(), env).map(StateBackend::Redis),
            Some(other) => {
                self.problem("state.backend", format!("{other:?} must be \"file\" or \"redis\""));
                None
            }
        };
        let dir = PathBuf::from(raw.dir.unwrap_or_else(|| super::DEFAULT_STATE_DIR.to_string()));
        let webhook_journal_max_bytes = match raw.webhook_journal_max_mib {
            None => DEFAULT_WEBHOOK_JOURNAL_MIB << 20,
            Some(n) if (1..=1_048_576).contains(&n) => (n as u64) << 20,
            Some(n) => {
                self.problem(
                    "state.webhook_journal_max_mib",
                    format!("{n} must be between 1 and 1048576 (MiB; the default is {DEFAULT_WEBHOOK_JOURNAL_MIB})"),
                );
                DEFAULT_WEBHOOK_JOURNAL_MIB << 20
            }
        };
        let webhook_journal_max_age = self.duration(
            "state.webhook_journal_max_age",
            raw.webhook_journal_max_age,
            DEFAULT_WEBHOOK_JOURNAL_AGE,
            false,
        );
        Some(StateConfig { dir, backend: backend?, webhook_journal_max_bytes, webhook_journal_max_age })
    }

    /// `[state.redis]`, with `backend = "redis"` (SPEC §10).
    fn redis(&mut self, raw: raw::RawRedis, env: &Env) -> Option<RedisConfig> {
        self.unknown("state.redis", &raw.unknown);
        let url = match raw.url {
            Some(text) => self.redis_url(&text),
            None => {
                self.problem(
                    "state.redis.url",
                    "required with backend = \"redis\": the server, e.g. \"redis://redis:6379\" \
                     (\"rediss://\" for TLS)",
                );
                None
            }
        };
        let username = match (raw.username, url.as_ref().and_then(|(_, user)| user.clone())) {
            (Some(key), Some(in_url)) => {
                self.problem(
                    "state.redis.username",
                    format!("the URL names the user too ({in_url:?}); name it in one place, this key"),
                );
                Some(key)
            }
            (key, in_url) => key.or(in_url),
        };
        if let Some(user) = &username {
            self.redis_name("state.redis.username", user);
        }
        let password = raw.password_file.and_then(|path| {
            let password = self.secret_file("state.redis.password_file", &path)?;
            self.secrets_digest.push(password.clone());
            Some(Secret::new(password))
        });
        let key_prefix = raw.key_prefix.unwrap_or_else(|| DEFAULT_REDIS_KEY_PREFIX.to_string());
        self.redis_key_part("state.redis.key_prefix", &key_prefix);
        let fleet = raw.fleet.unwrap_or_else(|| DEFAULT_REDIS_FLEET.to_string());
        self.redis_key_part("state.redis.fleet", &fleet);
        let gateway_id = self.gateway_id(raw.gateway_id, env);
        let heartbeat = self.duration("state.redis.heartbeat", raw.heartbeat, DEFAULT_REDIS_HEARTBEAT, false);
        let resync_interval =
            self.duration("state.redis.resync_interval", raw.resync_interval, DEFAULT_REDIS_RESYNC, false);
        if resync_interval < heartbeat {
            self.problem(
                "state.redis.resync_interval",
                format!(
                    "{} is shorter than state.redis.heartbeat ({}); make it at least the heartbeat",
                    humantime::format_duration(resync_interval),
                    humantime::format_duration(heartbeat)
                ),
            );
        }
        let audit_buffer_max = match raw.audit_buffer_max {
            None => DEFAULT_REDIS_AUDIT_BUFFER,
            Some(n) if (100..=1_000_000).contains(&n) => n as usize,
            Some(n) => {
                self.problem(
                    "state.redis.audit_buffer_max",
                    format!(
                        "{n} must be between 100 and 1000000 (audit records; the default is \
                         {DEFAULT_REDIS_AUDIT_BUFFER})"
                    ),
                );
                DEFAULT_REDIS_AUDIT_BUFFER
            }
        };
        Some(RedisConfig {
            url: url?.0,
            username,
            password,
            key_prefix,
            fleet,
            gateway_id: gateway_id?,
            heartbeat,
            resync_interval,
            audit_buffer_max,
        })
    }

    /// `state.redis.url`: a `redis://`, `rediss://`, `valkey://` or `valkeys://` URL that the
    /// client can connect with, holding no password. Returns the text and the user it names.
    fn redis_url(&mut self, text: &str) -> Option<(String, Option<String>)> {
        use redis::IntoConnectionInfo;
        const KEY: &str = "state.redis.url";
        let scheme_ok = redis::parse_redis_url(text)
            .is_some_and(|u| matches!(u.scheme(), "redis" | "rediss" | "valkey" | "valkeys"));
        if !scheme_ok {
            self.problem(
                KEY,
                format!(
                    "{text:?} is not a redis://, rediss:// (TLS), valkey:// or valkeys:// URL like \
                     \"redis://redis:6379\""
                ),
            );
            return None;
        }
        let info = match text.into_connection_info() {
            Ok(info) => info,
            Err(e) => {
                self.problem(KEY, format!("{text:?} is not a usable Redis URL: {e}"));
                return None;
            }
        };
        let settings = info.redis_settings();
        if settings.password().is_some() {
            // Never echo the URL here: it holds the password.
            self.problem(
                KEY,
                "holds a password; put the password in a file named by state.redis.password_file, and leave \
                 it out of the URL (check-config prints the URL, and the config file is no place for a secret)",
            );
            return None;
        }
        Some((text.to_string(), settings.username().map(str::to_string)))
    }

    /// A Redis ACL user name: not empty, no whitespace or control characters (Redis refuses them).
    fn redis_name(&mut self, key: &str, name: &str) {
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.problem(key, format!("{name:?} is not a Redis user name: it must be non-empty, without spaces"));
        }
    }

    /// `key_prefix` and `fleet` are parts of every key name, `<key_prefix>:{<fleet>}:…`, where
    /// the braces are the Redis Cluster hash tag: a brace inside either would move the tag, and
    /// whitespace would make the names awkward to type in `redis-cli`.
    fn redis_key_part(&mut self, key: &str, value: &str) {
        if value.is_empty() {
            self.problem(key, "must not be empty: it is part of every key name (<key_prefix>:{<fleet>}:…)");
        } else if value.chars().any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control()) {
            self.problem(
                key,
                format!(
                    "{value:?} holds a brace or whitespace; it is part of every key name \
                     (<key_prefix>:{{<fleet>}}:…), where the braces mark the Redis Cluster hash tag"
                ),
            );
        }
    }

    /// `state.redis.gateway_id`: the key, else `$POD_NAME`, else the hostname. A bad value is
    /// blamed on where it came from.
    fn gateway_id(&mut self, inline: Option<String>, env: &Env) -> Option<String> {
        let (id, from) = match inline.filter(|id| !id.is_empty()) {
            Some(id) => (id, "state.redis.gateway_id"),
            None => match env.get(vars::POD_NAME) {
                Some(pod) => {
                    self.from_env.push(("state.redis.gateway_id", vars::POD_NAME));
                    (pod.to_string(), vars::POD_NAME)
                }
                None => match hostname(env) {
                    Some(host) => (host, "the hostname"),
                    None => {
                        self.problem(
                            "state.redis.gateway_id",
                            format!(
                                "not set, and neither {} nor the hostname gives one; name this gateway",
                                vars::POD_NAME
                            ),
                        );
                        return None;
                    }
                },
            },
        };
        // The id is a hash field and part of the connection's name (CLIENT SETNAME cg-<id>),
        // which Redis refuses with a space in it.
        if id.chars().any(|c| c.is_whitespace() || c.is_control()) || id.len() > 253 {
            self.problem(
                "state.redis.gateway_id",
                format!("{id:?} (from {from}) is not a gateway id: at most 253 characters, without spaces"),
            );
            return None;
        }
        Some(id)
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

/// This machine's host name (`state.redis.gateway_id`, the operator in a fleet's audit trail):
/// the kernel's, else `$HOSTNAME`.
pub fn hostname(env: &Env) -> Option<String> {
    let mut text = String::new();
    let kernel = std::fs::File::open("/proc/sys/kernel/hostname")
        .and_then(|f| f.take(256).read_to_string(&mut text))
        .ok()
        .map(|_| text.trim().to_string());
    kernel.filter(|h| !h.is_empty()).or_else(|| env.get("HOSTNAME").map(str::to_string))
}

/// Parses `log.level` into the filter the binary installs. Field values in a filter
/// (`[span{field=value}]`) match literally, not as tracing-subscriber's default regular
/// expressions: compiling those can take minutes and gigabytes for a 20-character value
/// (`[x{f=2....................}]`, found by the config fuzzer), so one config line could stall
/// `check-config`, a reload or the start until the process is killed.
pub fn log_filter(level: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    tracing_subscriber::EnvFilter::builder().with_regex(false).parse(level).map_err(|e| e.to_string())
}
