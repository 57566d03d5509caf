//! The process environment as a plain map, so that tests pass their own instead of mutating
//! the real one (`std::env::set_var` is not safe in a multi-threaded test binary).

use std::collections::BTreeMap;

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env(BTreeMap<String, String>);

/// Clerk's own variable names, honoured as the SDK does.
pub mod vars {
    /// The Backend API secret key.
    pub const SECRET_KEY: &str = "CLERK_SECRET_KEY";
    /// The publishable key.
    pub const PUBLISHABLE_KEY: &str = "CLERK_PUBLISHABLE_KEY";
    /// The PEM public key for networkless verification.
    pub const JWT_KEY: &str = "CLERK_JWT_KEY";
    /// The Backend API base URL.
    pub const API_URL: &str = "CLERK_API_URL";
    /// The Svix webhook signing secret; several, space-separated, during a rotation.
    pub const WEBHOOK_SIGNING_SECRET: &str = "CLERK_WEBHOOK_SIGNING_SECRET";
    /// The secret replayed webhooks are re-signed with for the upstream.
    pub const UPSTREAM_WEBHOOK_SECRET: &str = "CLERKGATE_UPSTREAM_WEBHOOK_SECRET";
    /// The runbook's emergency switch: `true` starts the gateway in bypass mode.
    pub const EMERGENCY_BYPASS: &str = "CLERK_EMERGENCY_BYPASS";
    /// The admin API bearer token (also read by the CLI's admin commands).
    pub const ADMIN_TOKEN: &str = "CLERKGATE_ADMIN_TOKEN";
    /// This gateway's name in a fleet when `state.redis.gateway_id` is not set (Kubernetes sets
    /// it through the downward API, `fieldRef: metadata.name`).
    pub const POD_NAME: &str = "POD_NAME";
    /// The config file path when `--config` is not given.
    pub const CONFIG: &str = "CLERKGATE_CONFIG";
}

impl Env {
    /// The real process environment, read once.
    pub fn from_process() -> Self {
        Env(std::env::vars().collect())
    }

    /// An environment holding only the given pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Env(pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// The value of `name`, treating an empty value as unset.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }
}
