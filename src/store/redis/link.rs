//! Connections to the fleet's Redis: the client from `[state.redis]` (the password from its
//! file, never from the URL), and connections with the timeouts each use needs.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, IntoConnectionInfo};

use crate::config::RedisConfig;

/// How long a connection may take to open.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long an ordinary command may take.
pub(super) const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// The client for `config`, with `user` and `password` in place of the configured ones when
/// given (an operator's credentials).
pub(super) fn client(config: &RedisConfig, user: Option<&str>, password: Option<&str>) -> Result<Client, String> {
    let info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("state.redis.url {:?} is not a Redis URL: {e}", config.url))?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = user.or(config.username.as_deref()) {
        settings = settings.set_username(user);
    }
    if let Some(password) = password.or(config.password.as_ref().map(|p| p.expose())) {
        settings = settings.set_password(password);
    }
    Client::open(info.set_redis_settings(settings)).map_err(|e| format!("cannot use {}: {e}", config.url))
}

/// A connection whose commands time out after `response` (`None`: never, for a blocking
/// read that has its own bound).
pub(super) async fn connect(client: &Client, response: Duration) -> Result<MultiplexedConnection, redis::RedisError> {
    let config =
        AsyncConnectionConfig::new().set_connection_timeout(Some(CONNECT_TIMEOUT)).set_response_timeout(Some(response));
    client.get_multiplexed_async_connection_with_config(&config).await
}

/// A Redis error as an operator reads it, with what to check next.
pub(super) fn explain(url: &str, e: &redis::RedisError) -> String {
    let text = e.to_string();
    let next = if e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout() || e.is_io_error() {
        "check that Redis runs and that this host can reach it"
    } else if text.contains("NOPERM") {
        "the ACL user may not do this: see deploy/k8s/fleet/redis-acl.md for the rules each user needs"
    } else if text.contains("WRONGPASS") || text.contains("NOAUTH") || text.contains("AUTH") {
        "check state.redis.username and the password file"
    } else {
        "see the Redis server's log"
    };
    format!("Redis at {url}: {text} ({next})")
}
