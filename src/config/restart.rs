//! What a reload cannot change: the listeners are bound once, at start, and hold the
//! connection limits and the load-balancer trust they were started with. A reload that changes
//! one of those puts everything else in force and says which change waits for a restart.

use super::{Config, StateBackend};

impl Config {
    /// The changes from `running` to this config that only a restart puts in force, each a
    /// sentence that names its key and what stays in force meanwhile. Empty when there are none.
    pub fn restart_needed(&self, running: &Config) -> Vec<String> {
        let mut out = Vec::new();
        for (key, now, next) in [
            ("server.listen", running.server.listen, self.server.listen),
            ("admin.listen", running.admin.listen, self.admin.listen),
        ] {
            if now != next {
                out.push(format!("{key}: {next} takes a restart; the listener stays on {now} until then"));
            }
        }
        let (now, next) = (&running.server, &self.server);
        let shown = |a: Option<std::net::SocketAddr>| a.map_or_else(|| "off".to_string(), |a| a.to_string());
        if now.health_listen != next.health_listen {
            out.push(format!(
                "server.health_listen: {} takes a restart; it stays {} until then",
                shown(next.health_listen),
                shown(now.health_listen)
            ));
        }
        // Read by the data-plane listener at start.
        for (key, was, will) in [
            ("server.trusted_proxies", format!("{:?}", now.trusted_proxies), format!("{:?}", next.trusted_proxies)),
            ("server.proxy_protocol", now.proxy_protocol.to_string(), next.proxy_protocol.to_string()),
            (
                "server.header_read_timeout",
                format!("{:?}", now.header_read_timeout),
                format!("{:?}", next.header_read_timeout),
            ),
            ("server.idle_timeout", format!("{:?}", now.idle_timeout), format!("{:?}", next.idle_timeout)),
            ("server.send_timeout", format!("{:?}", now.send_timeout), format!("{:?}", next.send_timeout)),
            ("server.max_connections", now.max_connections.to_string(), next.max_connections.to_string()),
            (
                "server.max_connections_per_client",
                now.max_connections_per_client.to_string(),
                next.max_connections_per_client.to_string(),
            ),
            ("server.shutdown_grace", format!("{:?}", now.shutdown_grace), format!("{:?}", next.shutdown_grace)),
        ] {
            if was != will {
                out.push(format!("{key}: the new value takes a restart; the listener keeps the old one until then"));
            }
        }
        match (running.server.tls.is_some(), self.server.tls.is_some()) {
            (false, true) => out.push(
                "server.tls_cert: turning TLS on takes a restart; the data plane serves plain HTTP until then".into(),
            ),
            (true, false) => out.push(
                "server.tls_cert: turning TLS off takes a restart; the data plane serves TLS, with the last \
                 certificate it presented, until then"
                    .into(),
            ),
            _ => {}
        }
        out.extend(state_backend_changes(&running.state.backend, &self.state.backend));
        out
    }
}

/// The fleet sync connects once, at start, with the backend and `[state.redis]` it was started
/// with: a change of either waits for a restart.
fn state_backend_changes(now: &StateBackend, next: &StateBackend) -> Vec<String> {
    let name = |b: &StateBackend| match b {
        StateBackend::File => "file",
        StateBackend::Redis(_) => "redis",
    };
    match (now, next) {
        (StateBackend::Redis(a), StateBackend::Redis(b)) => [
            ("url", a.url != b.url),
            ("username", a.username != b.username),
            ("password_file", a.password != b.password),
            ("key_prefix", a.key_prefix != b.key_prefix),
            ("fleet", a.fleet != b.fleet),
            ("gateway_id", a.gateway_id != b.gateway_id),
            ("heartbeat", a.heartbeat != b.heartbeat),
            ("resync_interval", a.resync_interval != b.resync_interval),
            ("audit_buffer_max", a.audit_buffer_max != b.audit_buffer_max),
        ]
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| {
            format!("state.redis.{key}: the new value takes a restart; the fleet sync keeps the old one until then")
        })
        .collect(),
        (now, next) if name(now) != name(next) => vec![format!(
            "state.backend: \"{}\" takes a restart; the state stays on the {} backend until then",
            name(next),
            name(now)
        )],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    #[test]
    fn a_listener_change_waits_for_a_restart() {
        let load = |server: &str| {
            let text = format!("[server]\n{server}\n[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\n");
            Config::from_toml(&text, &Env::default()).unwrap()
        };
        let running = load("listen = \"127.0.0.1:8080\"\nidle_timeout = \"30s\"");
        assert!(load("listen = \"127.0.0.1:8080\"\nidle_timeout = \"30s\"").restart_needed(&running).is_empty());
        let moved = load("listen = \"127.0.0.1:8081\"\nidle_timeout = \"30s\"").restart_needed(&running);
        assert_eq!(
            moved,
            ["server.listen: 127.0.0.1:8081 takes a restart; the listener stays on 127.0.0.1:8080 until then"]
        );
        let limits = load("listen = \"127.0.0.1:8080\"\nidle_timeout = \"30s\"\nmax_connections = 10\ntrusted_proxies = [\"10.0.0.0/8\"]\nhealth_listen = \"127.0.0.1:9902\"")
            .restart_needed(&running);
        let keys: Vec<&str> = limits.iter().map(|l| l.split(':').next().unwrap_or_default()).collect();
        assert_eq!(keys, ["server.health_listen", "server.trusted_proxies", "server.max_connections"], "{limits:?}");
    }
}
