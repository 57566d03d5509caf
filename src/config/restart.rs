//! What a reload cannot change: the listeners are bound once, at start. A reload that changes
//! one of them puts everything else in force and says which change waits for a restart.

use super::Config;

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
        out
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
        assert!(load("listen = \"127.0.0.1:8080\"").restart_needed(&running).is_empty());
        let moved = load("listen = \"127.0.0.1:8081\"").restart_needed(&running);
        assert_eq!(
            moved,
            ["server.listen: 127.0.0.1:8081 takes a restart; the listener stays on 127.0.0.1:8080 until then"]
        );
    }
}
