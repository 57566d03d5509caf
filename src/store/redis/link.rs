//! Connections to the fleet's Redis: the client from `[state.redis]` (the password from its
//! file, never from the URL), and connections with the timeouts each use needs.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ErrorKind, IntoConnectionInfo};

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
    // By the error's kind and code, not its text: redis-rs writes NOPERM as "NoPerm" and a
    // refused password as "Password authentication failed - AuthenticationFailed".
    let next = if e.is_connection_refusal() || e.is_connection_dropped() || e.is_timeout() || e.is_io_error() {
        "check that Redis runs and that this host can reach it"
    } else if e.code() == Some("NOPERM") {
        "the ACL user may not do this: see deploy/k8s/fleet/redis-acl.md for the rules each user needs"
    } else if e.kind() == ErrorKind::AuthenticationFailed || matches!(e.code(), Some("WRONGPASS" | "NOAUTH")) {
        "check the user and its password file: state.redis.username and password_file, or the CLI's --redis-user \
         and --redis-password-file"
    } else {
        "see the Redis server's log"
    };
    format!("Redis at {url}: {e} ({next})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(reply: &[u8]) -> redis::RedisError {
        match redis::parse_redis_value(reply).and_then(redis::Value::extract_error) {
            Err(e) => e,
            Ok(v) => panic!("not an error reply: {v:?}"),
        }
    }

    #[test]
    fn each_refusal_says_what_to_check() {
        let url = "redis://r:6379";
        for (e, next) in [
            (server_error(b"-NOPERM this user has no permissions to run the 'evalsha' command\r\n"), "redis-acl.md"),
            (server_error(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"), "password file"),
            (server_error(b"-NOAUTH Authentication required.\r\n"), "password file"),
            ((ErrorKind::AuthenticationFailed, "Password authentication failed").into(), "password file"),
            (server_error(b"-ERR something else\r\n"), "server's log"),
        ] {
            let text = explain(url, &e);
            assert!(text.starts_with("Redis at redis://r:6379: ") && text.contains(next), "{e:?}: {text}");
        }
    }
}
