//! The effective configuration printed by `check-config`: every value in force, defaults
//! included, as TOML that loads back to the same config; secrets redacted. A value the
//! environment set carries a `# from VARIABLE` comment, and with `CLERK_EMERGENCY_BYPASS=true`
//! the `[mode]` shown is the bypass that variable puts in force, not the file's mode.

use std::time::Duration;

use super::{vars, Config, LogFormat, Secret, StateBackend};
use crate::mode::Mode;
use crate::routes::Access;

impl Config {
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
        server.insert("idle_timeout".into(), dur(self.server.idle_timeout));
        server.insert("request_body_timeout".into(), dur(self.server.request_body_timeout));
        server.insert("send_timeout".into(), dur(self.server.send_timeout));
        server.insert("max_connections".into(), Value::Integer(self.server.max_connections as i64));
        server
            .insert("max_connections_per_client".into(), Value::Integer(self.server.max_connections_per_client as i64));
        server.insert("shutdown_grace".into(), dur(self.server.shutdown_grace));
        if let Some(tls) = &self.server.tls {
            server.insert("tls_cert".into(), Value::String(tls.cert_file.display().to_string()));
            server.insert("tls_key".into(), Value::String(tls.key_file.display().to_string()));
        }
        if let Some(health) = self.server.health_listen {
            server.insert("health_listen".into(), Value::String(health.to_string()));
        }
        server.insert(
            "trusted_proxies".into(),
            Value::Array(self.server.trusted_proxies.nets().iter().map(|n| Value::String(n.to_string())).collect()),
        );
        server.insert("proxy_protocol".into(), Value::Boolean(self.server.proxy_protocol));
        root.insert("server".into(), Value::Table(server));

        let mut upstream = Table::new();
        upstream.insert("url".into(), Value::String(self.upstream.url_text.clone()));
        upstream.insert("connect_timeout".into(), dur(self.upstream.connect_timeout));
        upstream.insert("response_timeout".into(), dur(self.upstream.response_timeout));
        upstream.insert("max_connections".into(), Value::Integer(self.upstream.max_connections as i64));
        if let Some(ca_file) = self.upstream.tls.as_ref().and_then(|t| t.ca_file.as_ref()) {
            upstream.insert("ca_file".into(), Value::String(ca_file.display().to_string()));
        }
        upstream.insert("upgrade_protocols".into(), strs(self.upstream.headers.upgrade_protocols.names()));
        upstream.insert(
            "allow_routing_headers".into(),
            Value::Array(
                self.upstream.headers.allow_routing_headers.iter().map(|h| Value::String((*h).into())).collect(),
            ),
        );
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
        if let Some(f) = &c.frontend_api {
            clerk.insert("frontend_api".into(), Value::String(f.clone()));
        }
        if let Some(p) = &c.proxy_url {
            clerk.insert("proxy_url".into(), Value::String(p.clone()));
        }
        clerk.insert("status_url".into(), Value::String(c.status_url.clone()));
        clerk.insert("verdict_cache_entries".into(), Value::Integer(c.verdict_cache_entries as i64));
        // One secret as a string, several (a rotation) as a list, as they may be written.
        let each = || c.webhook_signing_secrets.iter().map(|_| Value::String("[redacted]".into()));
        match c.webhook_signing_secrets.len() {
            0 => {}
            1 => drop(clerk.insert("webhook_signing_secret".into(), Value::String("[redacted]".into()))),
            _ => drop(clerk.insert("webhook_signing_secret".into(), Value::Array(each().collect()))),
        }
        if let Some(v) = redacted(&c.upstream_webhook_secret) {
            clerk.insert("upstream_webhook_secret".into(), v);
        }
        clerk.insert("webhook_gap_window".into(), dur(c.webhook_gap_window));
        let mut keys = Table::new();
        keys.insert("refresh_interval".into(), dur(c.keys.refresh_interval));
        keys.insert("unknown_kid_cooldown".into(), dur(c.keys.unknown_kid_cooldown));
        keys.insert("max_stale".into(), dur(c.keys.max_stale));
        keys.insert("fetch_timeout".into(), dur(c.keys.fetch_timeout));
        clerk.insert("keys".into(), Value::Table(keys));
        root.insert("clerk".into(), Value::Table(clerk));

        let mut routes = Table::new();
        let default = match self.routes.default() {
            Access::Public => "public",
            Access::Protected => "protected",
        };
        routes.insert("default".into(), Value::String(default.into()));
        routes.insert(
            "public".into(),
            Value::Array(self.routes.public().iter().map(|p| Value::String(p.as_str().into())).collect()),
        );
        let rules = self
            .routes
            .rules()
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
        // The environment's bypass wins over the file's mode until max_override_ttl runs out.
        let (mode_in_force, reason) = match self.mode.emergency_bypass_env {
            true => (Mode::Bypass, format!("{}=true", vars::EMERGENCY_BYPASS)),
            false => (self.mode.mode, self.mode.reason.clone()),
        };
        mode.insert("mode".into(), Value::String(mode_in_force.as_str().into()));
        mode.insert("reason".into(), Value::String(reason));
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
        match &self.state.backend {
            StateBackend::File => drop(state.insert("backend".into(), Value::String("file".into()))),
            StateBackend::Redis(r) => {
                state.insert("backend".into(), Value::String("redis".into()));
                let mut redis = Table::new();
                redis.insert("url".into(), Value::String(r.url.clone()));
                if let Some(user) = &r.username {
                    redis.insert("username".into(), Value::String(user.clone()));
                }
                if let Some(v) = redacted(&r.password) {
                    redis.insert("password".into(), v);
                }
                redis.insert("key_prefix".into(), Value::String(r.key_prefix.clone()));
                redis.insert("fleet".into(), Value::String(r.fleet.clone()));
                redis.insert("gateway_id".into(), Value::String(r.gateway_id.clone()));
                redis.insert("heartbeat".into(), dur(r.heartbeat));
                redis.insert("resync_interval".into(), dur(r.resync_interval));
                redis.insert("audit_buffer_max".into(), Value::Integer(r.audit_buffer_max as i64));
                state.insert("redis".into(), Value::Table(redis));
            }
        }
        state.insert(
            "webhook_journal_max_mib".into(),
            Value::Integer((self.state.webhook_journal_max_bytes >> 20) as i64),
        );
        state.insert("webhook_journal_max_age".into(), dur(self.state.webhook_journal_max_age));
        root.insert("state".into(), Value::Table(state));

        let mut log = Table::new();
        let format = match self.log.format {
            LogFormat::Json => "json",
            LogFormat::Pretty => "pretty",
        };
        log.insert("format".into(), Value::String(format.into()));
        log.insert("level".into(), Value::String(self.log.level.clone()));
        root.insert("log".into(), Value::Table(log));

        let mut out = toml::to_string(&root).unwrap_or_default();
        for (key, var) in &self.origin.from_env {
            out = annotate(&out, key, &format!("from {var}"));
        }
        if self.mode.emergency_bypass_env {
            let comment = format!(
                "from {}, for max_override_ttl; then the file's \"{}\"",
                vars::EMERGENCY_BYPASS,
                self.mode.mode.as_str()
            );
            out = annotate(&out, "mode.mode", &comment);
        }
        out
    }
}

/// `toml` with `# comment` after the line of the dotted `key` (its table header, then
/// `name = …` before the next header). Unchanged when the key is not shown.
fn annotate(toml: &str, key: &str, comment: &str) -> String {
    let Some((section, name)) = key.rsplit_once('.') else { return toml.to_string() };
    let header = format!("[{section}]");
    let assignment = format!("{name} = ");
    let mut in_section = false;
    let mut done = false;
    let mut out = String::with_capacity(toml.len() + comment.len() + 4);
    for line in toml.lines() {
        if line.starts_with('[') {
            in_section = line == header;
        }
        out.push_str(line);
        if in_section && !done && line.starts_with(&assignment) {
            out.push_str("  # ");
            out.push_str(comment);
            done = true;
        }
        out.push('\n');
    }
    out
}
