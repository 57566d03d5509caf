//! The serde mirror of the TOML file: every key the file may hold, nothing validated yet.
//!
//! Unknown keys are not a serde error here but are collected in each section's `unknown`
//! map, so that validation can list every unknown key at once instead of stopping at the
//! first one (the effect is the same as `deny_unknown_fields`: a typo is always refused).

use std::collections::BTreeMap;

use serde::Deserialize;

/// Keys seen in a section that clerkgate does not know.
pub(crate) type Unknown = BTreeMap<String, toml::Value>;

/// Every key each section knows (`""` is the top level), for "did you mean" on an unknown
/// key. Kept beside the structs it mirrors; a unit test checks the two agree.
pub(crate) const KNOWN_KEYS: &[(&str, &[&str])] = &[
    ("", &["server", "upstream", "clerk", "routes", "mode", "admin", "state", "log"]),
    (
        "server",
        &[
            "listen",
            "header_read_timeout",
            "idle_timeout",
            "request_body_timeout",
            "send_timeout",
            "max_connections",
            "max_connections_per_client",
            "shutdown_grace",
            "tls_cert",
            "tls_key",
            "health_listen",
            "trusted_proxies",
            "proxy_protocol",
        ],
    ),
    (
        "upstream",
        &[
            "url",
            "connect_timeout",
            "response_timeout",
            "max_connections",
            "upgrade_protocols",
            "allow_routing_headers",
            "ca_file",
        ],
    ),
    (
        "clerk",
        &[
            "publishable_key",
            "secret_key",
            "secret_key_file",
            "jwt_key",
            "jwt_key_file",
            "api_url",
            "jwks_url",
            "authorized_parties",
            "clock_skew",
            "issuer",
            "reject_pending_sessions",
            "sign_in_url",
            "status_url",
            "frontend_api",
            "proxy_url",
            "webhook_signing_secret",
            "webhook_signing_secret_file",
            "upstream_webhook_secret",
            "upstream_webhook_secret_file",
            "webhook_gap_window",
            "verdict_cache_entries",
            "keys",
        ],
    ),
    ("clerk.keys", &["refresh_interval", "unknown_kid_cooldown", "max_stale", "fetch_timeout"]),
    ("routes", &["default", "public", "rule"]),
    ("routes.rule", &["path", "methods", "role", "permission", "bypass", "webhook"]),
    ("mode", &["mode", "reason", "grace_max_expired", "max_override_ttl"]),
    ("admin", &["listen", "token", "token_file"]),
    ("state", &["dir", "backend", "redis", "webhook_journal_max_mib", "webhook_journal_max_age"]),
    (
        "state.redis",
        &[
            "url",
            "username",
            "password_file",
            "key_prefix",
            "fleet",
            "gateway_id",
            "heartbeat",
            "resync_interval",
            "audit_buffer_max",
        ],
    ),
    ("log", &["format", "level"]),
];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawConfig {
    pub(crate) server: RawServer,
    pub(crate) upstream: RawUpstream,
    pub(crate) clerk: RawClerk,
    pub(crate) routes: RawRoutes,
    pub(crate) mode: RawMode,
    pub(crate) admin: RawAdmin,
    pub(crate) state: RawState,
    pub(crate) log: RawLog,
    #[serde(flatten)]
    pub(crate) unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawServer {
    pub(crate) listen: Option<String>,
    pub(crate) header_read_timeout: Option<String>,
    pub(crate) idle_timeout: Option<String>,
    pub(crate) request_body_timeout: Option<String>,
    pub(crate) send_timeout: Option<String>,
    pub(crate) max_connections: Option<i64>,
    pub(crate) max_connections_per_client: Option<i64>,
    pub(crate) shutdown_grace: Option<String>,
    pub(crate) tls_cert: Option<String>,
    pub(crate) tls_key: Option<String>,
    pub(crate) health_listen: Option<String>,
    pub(crate) trusted_proxies: Option<Vec<String>>,
    pub(crate) proxy_protocol: Option<bool>,
    #[serde(flatten)]
    pub(crate) unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawUpstream {
    pub(crate) url: Option<String>,
    pub(crate) connect_timeout: Option<String>,
    pub(crate) response_timeout: Option<String>,
    pub(crate) max_connections: Option<i64>,
    pub(crate) upgrade_protocols: Option<Vec<String>>,
    pub(crate) allow_routing_headers: Option<Vec<String>>,
    pub(crate) ca_file: Option<String>,
    #[serde(flatten)]
    pub(crate) unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawClerk {
    pub(crate) publishable_key: Option<String>,
    pub(crate) secret_key: Option<String>,
    pub(crate) secret_key_file: Option<String>,
    pub(crate) jwt_key: Option<String>,
    pub(crate) jwt_key_file: Option<String>,
    pub(crate) api_url: Option<String>,
    pub(crate) jwks_url: Option<String>,
    pub(crate) authorized_parties: Option<Vec<String>>,
    pub(crate) clock_skew: Option<String>,
    pub(crate) issuer: Option<String>,
    pub(crate) reject_pending_sessions: Option<bool>,
    pub(crate) sign_in_url: Option<String>,
    pub(crate) status_url: Option<String>,
    pub(crate) frontend_api: Option<String>,
    pub(crate) proxy_url: Option<String>,
    pub(crate) webhook_signing_secret: Option<OneOrMany>,
    pub(crate) webhook_signing_secret_file: Option<String>,
    pub(crate) upstream_webhook_secret: Option<String>,
    pub(crate) upstream_webhook_secret_file: Option<String>,
    pub(crate) webhook_gap_window: Option<String>,
    pub(crate) verdict_cache_entries: Option<i64>,
    pub(crate) keys: RawKeys,
    #[serde(flatten)]
    pub(crate) unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawKeys {
    pub(crate) refresh_interval: Option<String>,
    pub(crate) unknown_kid_cooldown: Option<String>,
    pub(crate) max_stale: Option<String>,
    pub(crate) fetch_timeout: Option<String>,
    #[serde(flatten)]
    pub(crate) unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRoutes {
    pub(crate) default: Option<String>,
    pub(crate) public: Option<Vec<String>>,
    pub(crate) rule: Vec<RawRule>,
    #[serde(flatten)]
    pub(crate) unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRule {
    pub(crate) path: Option<String>,
    pub(crate) methods: Option<Vec<String>>,
    pub(crate) role: Option<String>,
    pub(crate) permission: Option<String>,
    pub(crate) bypass: Option<String>,
    pub(crate) webhook: Option<String>,
    #[serde(flatten)]
    pub(crate) unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawMode {
    pub(crate) mode: Option<String>,
    pub(crate) reason: Option<String>,
    pub(crate) grace_max_expired: Option<String>,
    pub(crate) max_override_ttl: Option<String>,
    #[serde(flatten)]
    pub(crate) unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawAdmin {
    pub(crate) listen: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) token_file: Option<String>,
    #[serde(flatten)]
    pub(crate) unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawState {
    pub(crate) dir: Option<String>,
    pub(crate) backend: Option<String>,
    /// `[state.redis]`; `None` when the file has no such table (it is refused with the file
    /// backend, so whether it was written matters).
    pub(crate) redis: Option<RawRedis>,
    pub(crate) webhook_journal_max_mib: Option<i64>,
    pub(crate) webhook_journal_max_age: Option<String>,
    #[serde(flatten)]
    pub(crate) unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRedis {
    pub(crate) url: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) password_file: Option<String>,
    pub(crate) key_prefix: Option<String>,
    pub(crate) fleet: Option<String>,
    pub(crate) gateway_id: Option<String>,
    pub(crate) heartbeat: Option<String>,
    pub(crate) resync_interval: Option<String>,
    pub(crate) audit_buffer_max: Option<i64>,
    #[serde(flatten)]
    pub(crate) unknown: Unknown,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawLog {
    pub(crate) format: Option<String>,
    pub(crate) level: Option<String>,
    #[serde(flatten)]
    pub(crate) unknown: Unknown,
}

/// A string or a list of strings (`webhook_signing_secret`: one secret, or several during a
/// rotation).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The values: a string split on whitespace (so `"whsec_a whsec_b"` is two), a list as is.
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => s.split_whitespace().map(str::to_string).collect(),
            OneOrMany::Many(v) => v,
        }
    }
}
