//! Builders that make tests read like prose: a JWKS server, the echo upstream, a gateway.

#![allow(dead_code)]

pub mod jwks;
pub mod raw;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use clerkgate::app::{self, Options, Running};
use clerkgate::clock::Clock;
use clerkgate::config::{Config, Env};
use clerkgate::mint::{SigningKey, TokenSpec};
use serde_json::Value;

pub use jwks::{JwksReply, JwksServer};

/// The key id the test JWKS publishes by default.
pub const KID: &str = "ins_test_key_1";

/// A signing key generated once per test process.
pub fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().expect("generate RSA key"))
}

/// A second, unrelated key (for rotation and forgery tests).
pub fn other_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().expect("generate RSA key"))
}

/// Seconds since the epoch by the system clock.
pub fn now_s() -> i64 {
    Clock::system().now_ms() / 1000
}

/// A valid token for `user_test` signed with [`key`] under [`KID`], issued now.
pub fn token() -> String {
    token_for(&TokenSpec { sub: "user_test".into(), sid: "sess_test".into(), ..TokenSpec::default() })
}

/// A token with these claims, signed with [`key`] under [`KID`], issued now.
pub fn token_for(spec: &TokenSpec) -> String {
    key().sign(Some(KID), &spec.claims(now_s()))
}

/// Signs arbitrary claims with [`key`] under [`KID`].
pub fn sign(claims: &Value) -> String {
    key().sign(Some(KID), claims)
}

/// Starts the echo upstream.
pub async fn upstream() -> SocketAddr {
    clerkgate::echo::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("echo upstream")
}

/// A gateway being configured.
pub struct GatewayBuilder {
    upstream: Option<SocketAddr>,
    jwks_url: Option<String>,
    jwt_key: bool,
    extra: String,
    sections: Vec<(String, String)>,
    clock: Clock,
    env: Vec<(String, String)>,
}

/// Starts describing a gateway.
pub fn gateway() -> GatewayBuilder {
    GatewayBuilder {
        upstream: None,
        jwks_url: None,
        jwt_key: false,
        extra: String::new(),
        sections: Vec::new(),
        clock: Clock::system(),
        env: Vec::new(),
    }
}

impl GatewayBuilder {
    /// Forward to this upstream (default: a fresh echo upstream).
    pub fn upstream(mut self, addr: SocketAddr) -> Self {
        self.upstream = Some(addr);
        self
    }

    /// Fetch keys from this JWKS server.
    pub fn jwks(mut self, server: &JwksServer) -> Self {
        self.jwks_url = Some(server.url());
        self
    }

    /// Verify with [`key`]'s public PEM (networkless).
    pub fn jwt_key(mut self) -> Self {
        self.jwt_key = true;
        self
    }

    /// Extra lines for the `[clerk]` table (e.g. `authorized_parties = ["https://a.example"]`).
    pub fn clerk(mut self, lines: &str) -> Self {
        self.extra.push_str(lines);
        self.extra.push('\n');
        self
    }

    /// A whole extra section, e.g. `("routes", "default = \"public\"")` or `("[routes.rule]]", ..)`.
    pub fn section(mut self, header: &str, body: &str) -> Self {
        self.sections.push((header.to_string(), body.to_string()));
        self
    }

    /// Use this clock.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Set an environment variable for config resolution.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// The config text this builder produces for a given upstream and state dir.
    pub fn config_text(&self, upstream: SocketAddr, state_dir: &str) -> String {
        let mut clerk = String::new();
        if self.jwt_key {
            clerk.push_str(&format!("jwt_key = {}\n", toml_str(&key().public_pem())));
        }
        if let Some(url) = &self.jwks_url {
            clerk.push_str(&format!("jwks_url = {}\n", toml_str(url)));
        }
        clerk.push_str(&self.extra);
        let has_keys_section = self.sections.iter().any(|(h, _)| h == "clerk.keys");
        let mut text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[upstream]\nurl = \"http://{upstream}\"\n\n[clerk]\n{clerk}\n"
        );
        if !has_keys_section {
            text.push_str("[clerk.keys]\nfetch_timeout = \"2s\"\n\n");
        }
        let has_admin = self.sections.iter().any(|(h, _)| h == "admin");
        if !has_admin {
            text.push_str("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"test-admin-token-0123456789\"\n\n");
        }
        let has_routes = self.sections.iter().any(|(h, _)| h == "routes");
        if !has_routes {
            text.push_str("[routes]\ndefault = \"protected\"\npublic = [\"/\", \"/public(.*)\", \"/health\"]\n\n");
        }
        for (h, body) in &self.sections {
            if h.starts_with('[') {
                text.push_str(&format!("{h}\n{body}\n\n"));
            } else {
                text.push_str(&format!("[{h}]\n{body}\n\n"));
            }
        }
        text.push_str(&format!("[state]\ndir = {}\n", toml_str(state_dir)));
        text
    }

    /// Starts the gateway in-process.
    pub async fn start(self) -> TestGateway {
        let upstream = match self.upstream {
            Some(u) => u,
            None => upstream().await,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        let text = self.config_text(upstream, &state_dir.display().to_string());
        let path = dir.path().join("clerkgate.toml");
        std::fs::write(&path, &text).expect("write config");
        let env = Env::from_pairs(self.env.clone());
        let config = Config::load(&path, &env).unwrap_or_else(|e| panic!("test config invalid:\n{e}\n---\n{text}"));
        let running = app::start(config, Options { clock: self.clock.clone(), config_path: Some(path.clone()), env })
            .await
            .expect("start gateway");
        TestGateway { upstream, config_path: path, running: Some(running), clock: self.clock, _dir: dir }
    }
}

/// Quotes a string as TOML.
pub fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A running in-process gateway.
pub struct TestGateway {
    /// The upstream it forwards to.
    pub upstream: SocketAddr,
    /// Its config file (rewrite it, then reload).
    pub config_path: PathBuf,
    running: Option<Running>,
    /// Its clock.
    pub clock: Clock,
    _dir: tempfile::TempDir,
}

impl TestGateway {
    /// The running gateway.
    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    /// `http://127.0.0.1:port` of the data plane.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running().data_addr)
    }

    /// `http://127.0.0.1:port` of the admin API.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.running().admin_addr)
    }

    /// The data-plane address.
    pub fn addr(&self) -> SocketAddr {
        self.running().data_addr
    }

    /// The state dir.
    pub fn state_dir(&self) -> PathBuf {
        self._dir.path().join("state")
    }

    /// Stops it (drains in-flight requests).
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    /// GET `path` with an optional bearer token and extra headers.
    pub async fn get(&self, path: &str, bearer: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        let mut req = client().get(self.url(path));
        if let Some(t) = bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Reply::from(req.send().await.expect("request"))
            .await
    }
}

/// A shared HTTP client that never uses a proxy.
pub fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| reqwest::Client::builder().no_proxy().build().expect("client")).clone()
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Response headers (lower-case names).
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// Reads a reqwest response.
    pub async fn from(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = resp.text().await.unwrap_or_default();
        Reply { status, headers, body }
    }

    /// The first value of a response header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The gateway's refusal reason (`X-Clerk-Auth-Reason`).
    pub fn reason(&self) -> Option<&str> {
        self.header("x-clerk-auth-reason")
    }

    /// What the echo upstream reported receiving.
    pub fn echoed(&self) -> Echoed {
        let v = self.json();
        let headers = v["headers"]
            .as_array()
            .unwrap_or_else(|| panic!("not an echo reply: {}", self.body))
            .iter()
            .map(|p| (p[0].as_str().unwrap_or_default().to_string(), p[1].as_str().unwrap_or_default().to_string()))
            .collect();
        Echoed { headers, path: v["path"].as_str().unwrap_or_default().to_string(), raw: v }
    }
}

/// What the echo upstream received.
#[derive(Debug, Clone)]
pub struct Echoed {
    /// Every header line received, in order, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The path received.
    pub path: String,
    /// The whole report.
    pub raw: Value,
}

impl Echoed {
    /// Every value received for `name` (case-insensitive).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }

    /// The single value received for `name`; panics when there were several.
    pub fn one(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} arrived {} times: {all:?}", all.len());
        all.first().copied()
    }

    /// True when any received header name, folded (lower-case, alphanumerics only), starts with `prefix`.
    pub fn any_folded_prefix(&self, prefix: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| {
                let folded: String = k.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
                folded.starts_with(prefix)
            })
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

/// Shares an `Arc` across test tasks.
pub type Shared<T> = Arc<T>;
