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
//!
//! One file per job: `types.rs` (the validated form), `raw.rs` (the serde mirror),
//! `toml_recovery.rs` (reading past wrongly typed values; syntax errors with line and column),
//! `validate.rs` (raw → validated), `suggest.rs` ("did you mean" for an unknown key),
//! `unwise.rs` (the durations that are warned about), `publishable_key.rs`, `env.rs`,
//! `secret.rs` and `source.rs` (where values come from, and the name a problem with one is
//! reported under), `tls.rs` (certificates, keys and CAs: parsed and checked), `hygiene.rs`
//! (the `[upstream]` header policy), `cidr.rs` (`server.trusted_proxies`), `effective.rs`
//! (what `check-config` prints), `admin_access.rs` (`[admin]` alone, for the CLI to reach a
//! running gateway, and `[state] dir` alone), `restart.rs` (what a reload cannot change).

mod admin_access;
mod cidr;
mod effective;
mod env;
mod hygiene;
mod publishable_key;
mod raw;
mod restart;
mod secret;
mod source;
mod suggest;
mod tls;
mod toml_recovery;
mod types;
mod unwise;
mod validate;

use std::path::Path;

pub use admin_access::{state_dir, AdminAccess};

/// `state.dir` when the config does not set it.
pub const DEFAULT_STATE_DIR: &str = "./clerkgate-state";
pub use cidr::{Cidr, TrustedProxies};
pub use env::{vars, Env};
pub use hygiene::{is_http_like, protocol_name, HeaderPolicy, UpgradeProtocols, ROUTING_OVERRIDE_HEADERS};
pub use publishable_key::{cookie_suffix, parse_publishable_key, PublishableKey};
pub use secret::Secret;
pub use tls::{provider as tls_provider, server_name as tls_server_name, PROTOCOL_VERSIONS as TLS_PROTOCOL_VERSIONS};
pub use types::{
    problems_by_key, AdminConfig, ClerkConfig, Config, ConfigErrors, ConfigProblem, JwksSource, KeysConfig, LogConfig,
    LogFormat, ModeConfig, Origin, RedisConfig, ServerConfig, ServerTls, StateBackend, StateConfig, UpstreamConfig,
    UpstreamTls,
};
pub use validate::{hostname, log_filter, DEFAULT_VERDICT_CACHE_ENTRIES};

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
        let (raw, type_problems) = toml_recovery::parse_raw(text)?;
        Config::from_raw(raw, text, env, type_problems)
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
