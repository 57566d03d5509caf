//! The validated configuration's types, one per section of the file, and the problems a
//! file can have. Built only by the validator ([`super::validate`]); never mutated.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{HeaderPolicy, PublishableKey, Secret, TrustedProxies};
use crate::mode::Mode;
use crate::routes::RouteTable;
use crate::verifying_key::VerifyingKey;

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
    /// `(key, variable)` for every value the environment set over the file, e.g.
    /// `("clerk.secret_key", "CLERK_SECRET_KEY")`; `check-config` shows them.
    pub from_env: Vec<(&'static str, &'static str)>,
    /// Every file the load read besides the config file (`*_file` secrets, certificates), as
    /// written in the config; a change to one of them is a reason to reload.
    pub files: Vec<PathBuf>,
}

/// `[server]`: the data-plane listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address the data plane listens on.
    pub listen: SocketAddr,
    /// A client that has not sent a full request head by then is cut off (slowloris); on a new
    /// connection the clock starts at accept, so a connection that never sends a byte is too.
    pub header_read_timeout: Duration,
    /// A connection (HTTP/1.1 or HTTP/2) with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// The longest wait for the next piece of a request body; then 408 (or the upload is cut).
    pub request_body_timeout: Duration,
    /// The longest a response piece may wait for the client to take it; then the connection is
    /// closed (nginx's `send_timeout`): a client that stops reading cannot hold upstream capacity.
    pub send_timeout: Duration,
    /// Client connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Client connections open at once from one IP address; more are answered 503 and closed.
    pub max_connections_per_client: usize,
    /// How long SIGTERM waits for in-flight requests before exiting.
    pub shutdown_grace: Duration,
    /// The certificate and key the data plane terminates TLS with; `None`: plain HTTP.
    pub tls: Option<ServerTls>,
    /// The health listener (`/healthz`, `/readyz`, `/metrics` only), for the kubelet and
    /// Prometheus; off when unset.
    pub health_listen: Option<SocketAddr>,
    /// Peers whose `X-Forwarded-For` chain and `X-Forwarded-Proto` are kept, which are exempt
    /// from the per-client limit, and from which a PROXY header is read. Empty: none.
    pub trusted_proxies: TrustedProxies,
    /// A connection from a trusted peer may start with a PROXY protocol (v1 or v2) header,
    /// whose source becomes the client address.
    pub proxy_protocol: bool,
}

/// `server.tls_cert` and `server.tls_key`, read, parsed and checked to belong together.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The certificate chain file, as written in the config.
    pub cert_file: PathBuf,
    /// The private key file, as written in the config.
    pub key_file: PathBuf,
    /// The chain (the server's certificate first) and its key, ready for a handshake.
    pub certified: Arc<rustls::sign::CertifiedKey>,
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
    /// Upstream connections open at once (pooled and busy); a request that needs another waits
    /// for one up to `connect_timeout`.
    pub max_connections: usize,
    /// Which upgrades are spliced and which routing-override headers pass.
    pub headers: HeaderPolicy,
    /// How the hop speaks TLS, for an `https://` upstream; `None`: plain HTTP.
    pub tls: Option<UpstreamTls>,
}

/// The TLS side of an `https://` upstream.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// `upstream.ca_file`, as written in the config; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The client config: TLS 1.2+, ALPN `http/1.1`, and the roots the upstream's certificate
    /// is checked against (its name is the host of `upstream.url`).
    pub client: Arc<rustls::ClientConfig>,
    /// Equal for two loads that trust the same roots (a digest of `ca_file`'s text; 0 for
    /// the system's roots), so a reload that keeps them keeps the upstream connection pool.
    pub roots_id: u64,
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
    /// What set the secret key — `clerk.secret_key_file`, `clerk.secret_key` or
    /// `CLERK_SECRET_KEY` — so that a problem found with it later (a reload's check against the
    /// Backend API) is listed where the operator set it.
    pub secret_key_from: Option<String>,
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
    /// `sts: pending` sessions are refused when true (the default, as Clerk's SDK signs them out).
    pub reject_pending_sessions: bool,
    /// Where signed-out page loads are sent: an absolute URL, or a path on the app's origin.
    pub sign_in_url: Option<String>,
    /// The Frontend API the handshake goes to, when it is not the publishable key's (a host,
    /// or an `https://` URL).
    pub frontend_api: Option<String>,
    /// Clerk's proxy mode: the Frontend API behind the app's own URL (absolute, or a path on
    /// the app's origin); it wins over `frontend_api`.
    pub proxy_url: Option<String>,
    /// Clerk's status page, for triage.
    pub status_url: String,
    /// The Svix signing secrets for `webhook = "clerk"` routes: a delivery verifies when any
    /// one matches (several during a rotation). Empty when none is set.
    pub webhook_signing_secrets: Vec<Secret>,
    /// The secret replayed webhooks are re-signed with for the upstream (and an extra signature
    /// added to live ones), so an upstream that verifies Svix signatures accepts them.
    pub upstream_webhook_secret: Option<Secret>,
    /// Triage's `webhook-gap`: no verified delivery for longer than this, while Clerk's status
    /// page has Webhooks operational, is a gap (only with a `webhook = "clerk"` route).
    pub webhook_gap_window: Duration,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateBackend {
    /// Files under `state.dir` (the default).
    File,
    /// A Redis (or Valkey) server shared by a fleet of gateways (`[state.redis]`, SPEC §10).
    /// `state.dir` still holds this gateway's own part: its local layer, its key set, its audit
    /// journal and the last fleet state it saw.
    Redis(RedisConfig),
}

/// `[state.redis]`: the fleet's shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://`, `rediss://` (TLS), `valkey://` or `valkeys://`, without credentials.
    pub url: String,
    /// The ACL user; `None` is Redis's `default` user.
    pub username: Option<String>,
    /// The password, read from `password_file` (never written in the config itself).
    pub password: Option<Secret>,
    /// The first part of every key name (`<key_prefix>:{<fleet>}:…`).
    pub key_prefix: String,
    /// The fleet's name: gateways with the same one share mode, revocations and audit.
    pub fleet: String,
    /// This gateway's name in the fleet (`gateway_id`, else `$POD_NAME`, else the hostname).
    pub gateway_id: String,
    /// How often a gateway refreshes its acknowledgement (its heartbeat in `fleet status`).
    pub heartbeat: Duration,
    /// How often a gateway reads the whole state again, whatever the event stream said.
    pub resync_interval: Duration,
    /// How many audit records a gateway keeps for the store while it is unreachable.
    pub audit_buffer_max: usize,
}

/// `[state]`.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// Holds `audit.jsonl`, `state.json` and `keys.json`.
    pub dir: PathBuf,
    /// The backend.
    pub backend: StateBackend,
    /// The webhook journal's size bound (`webhook_journal_max_mib`), in bytes. Read at start.
    pub webhook_journal_max_bytes: u64,
    /// How long the webhook journal keeps an event (`webhook_journal_max_age`). Read at start.
    pub webhook_journal_max_age: Duration,
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

/// The problems by key, for tests and tools that look one up.
pub fn problems_by_key(errors: &ConfigErrors) -> BTreeMap<&str, &str> {
    errors.0.iter().map(|p| (p.key.as_str(), p.message.as_str())).collect()
}
