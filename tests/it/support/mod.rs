//! Builders that make tests read like prose: a JWKS server, the echo upstream, a gateway.

#![allow(dead_code)]

pub mod bapi;
pub mod cdp;
pub mod jwks;
pub mod raw;
pub mod redis;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clerkgate::app::{self, Options, Running};
use clerkgate::clock::Clock;
use clerkgate::config::{Config, Env};
use clerkgate::file_watch::WatchMode;
use clerkgate::mint::{SigningKey, TokenSpec};
use clerkgate::store::ControlStore;
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

/// Clerk-shaped claims for `user_test`/`sess_test` issued at `iat` (seconds), then `edit`ed.
pub fn claims_at(iat: i64, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let spec = TokenSpec { sub: "user_test".into(), sid: "sess_test".into(), ..TokenSpec::default() };
    let mut claims = spec.claims(iat);
    if let Value::Object(map) = &mut claims {
        edit(map);
    }
    claims
}

/// Signs arbitrary claims with [`key`] under [`KID`].
pub fn sign(claims: &Value) -> String {
    key().sign(Some(KID), claims)
}

/// Serves HTTP/1.1 and HTTP/2 on `listener` with `answer` for every request, in the background.
pub fn serve<S, F, Fut>(listener: tokio::net::TcpListener, state: Arc<S>, answer: F)
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<axum::body::Body>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (state, answer) = (state.clone(), answer.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let (state, answer) = (state.clone(), answer.clone());
                    async move { Ok::<_, std::convert::Infallible>(answer(state, req).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

/// A test that needs an outside tool (`node`, `chromium`) and does not find it: skipped with
/// `message` on a developer's machine, but a failure where `.ci/run` promised the tool
/// (`CLERKGATE_REQUIRE_TOOLS=1`), so CI can never pass by skipping.
pub fn skip_without_tool(message: &str) {
    if std::env::var_os("CLERKGATE_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{message}, and CLERKGATE_REQUIRE_TOOLS=1 says it must be there");
    }
    eprintln!("SKIPPED {message}");
}

/// The first of `names` found as a file in a PATH directory (a tool the tests need), or `None`.
pub fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|d| names.iter().map(move |n| d.join(n))).find(|p| p.is_file())
}

/// The claims of a JWT, unverified (`Null` when they do not decode).
pub fn claims_of(jwt: &str) -> Value {
    use base64::Engine;
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// Starts the echo upstream.
pub async fn upstream() -> SocketAddr {
    clerkgate::echo::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("echo upstream")
}

/// An HTTP/1.1 upstream that counts the connections it accepts and answers every request
/// after `delay` with a small body.
pub async fn counting_upstream(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req: http::Request<hyper::body::Incoming>| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                        bytes::Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, accepted)
}

/// An upstream that takes one request, says so on `arrived`, and answers it (200, body `held`)
/// only when `release` fires: a request held in flight for exactly as long as the test needs.
pub async fn held_upstream() -> (SocketAddr, tokio::sync::oneshot::Receiver<()>, tokio::sync::oneshot::Sender<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("addr");
    let (arrived_tx, arrived) = tokio::sync::oneshot::channel();
    let (release, release_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.expect("read head");
            assert!(n > 0, "the gateway closed before sending a whole head");
            head.extend_from_slice(&buf[..n]);
        }
        let _ = arrived_tx.send(());
        let _ = release_rx.await;
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nheld").await;
        // Keep the connection open until the gateway closes it.
        let _ = conn.read(&mut buf).await;
    });
    (addr, arrived, release)
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
    store: Option<StoreMaker>,
    watch: WatchMode,
}

/// Builds the state store for a gateway from its state dir.
pub type StoreMaker = Box<dyn FnOnce(PathBuf) -> Arc<dyn ControlStore> + Send>;

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
        store: None,
        watch: WatchMode::Off,
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

    /// Keep control state in the store `make` builds from the state dir (default: the file store).
    pub fn store(mut self, make: impl FnOnce(PathBuf) -> Arc<dyn ControlStore> + Send + 'static) -> Self {
        self.store = Some(Box::new(make));
        self
    }

    /// Watch the config file and the files it names this way (default: off, so that a test
    /// that rewrites its config reloads it only when it says so).
    pub fn watch(mut self, mode: WatchMode) -> Self {
        self.watch = mode;
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
        self.start_edited(|text| text).await
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
        Reply::from(req.send().await.expect("request")).await
    }

    /// An admin API call with the builder's admin token ([`ADMIN_TOKEN`]).
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        admin_call(self.admin_url(path), method, body).await
    }

    /// The audit events with `action` (e.g. `config.reload`), oldest first, from `GET /audit`.
    pub async fn audited(&self, action: &str) -> Vec<Value> {
        let r = self.admin("GET", "/audit", None).await;
        assert_eq!(r.status, 200, "GET /audit: {}", r.body);
        let events = r.json()["events"].as_array().cloned().unwrap_or_default();
        events.into_iter().filter(|e| e["action"] == action).collect()
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
                let folded: String =
                    k.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
                folded.starts_with(prefix)
            })
            .map(|(k, _)| k.as_str())
            .collect()
    }
}

/// Shares an `Arc` across test tasks.
pub type Shared<T> = Arc<T>;

/// Adds `lines` at the top of `[table]` in config text the builder produced (for keys of
/// tables the builder writes itself, such as `[server]` and `[upstream]`).
pub fn with_keys(text: &str, table: &str, lines: &str) -> String {
    let header = format!("[{table}]\n");
    assert!(text.contains(&header), "no [{table}] in:\n{text}");
    text.replacen(&header, &format!("{header}{lines}\n"), 1)
}

impl GatewayBuilder {
    /// Starts the gateway in-process after passing its config text through `edit`
    /// (e.g. `|t| with_keys(&t, "upstream", "response_timeout = \"300ms\"")`).
    pub async fn start_edited(self, edit: impl FnOnce(String) -> String) -> TestGateway {
        self.try_start_edited(edit).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`GatewayBuilder::start_edited`], but a config the gateway refuses is an error
    /// (with the config text), not a panic.
    pub async fn try_start_edited(self, edit: impl FnOnce(String) -> String) -> Result<TestGateway, String> {
        self.try_start_placed(|dir, text| {
            let path = dir.join("clerkgate.toml");
            std::fs::write(&path, edit(text)).expect("write config");
            path
        })
        .await
    }

    /// Starts the gateway in-process from the config file that `place` writes, given the
    /// gateway's temporary directory and the config text (laid out as the kubelet does, say);
    /// `place` answers the path to start from.
    pub async fn start_placed(self, place: impl FnOnce(&Path, String) -> PathBuf) -> TestGateway {
        self.try_start_placed(place).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`GatewayBuilder::start_placed`], but a config the gateway refuses is an error.
    pub async fn try_start_placed(self, place: impl FnOnce(&Path, String) -> PathBuf) -> Result<TestGateway, String> {
        let upstream = match self.upstream {
            Some(u) => u,
            None => upstream().await,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("state");
        let path = place(dir.path(), self.config_text(upstream, &state_dir.display().to_string()));
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let env = Env::from_pairs(self.env.clone());
        let config = Config::load(&path, &env).map_err(|e| format!("test config invalid:\n{e}\n---\n{text}"))?;
        let opts = Options {
            clock: self.clock.clone(),
            config_path: Some(path.clone()),
            env,
            discard_state: false,
            watch: self.watch,
        };
        let running = match self.store {
            Some(make) => app::start_with_store(config, opts, make(state_dir)).await,
            None => app::start(config, opts).await,
        }
        .map_err(|e| format!("start gateway: {e}"))?;
        Ok(TestGateway { upstream, config_path: path, running: Some(running), clock: self.clock, _dir: dir })
    }
}

// === The real binary ===

/// The admin token every [`binary_config`] carries.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// What goes into a config file for the real binary (see [`binary_config`]).
#[derive(Debug, Clone)]
pub struct BinaryConfig {
    /// The upstream.
    pub upstream: SocketAddr,
    /// The body of `[routes]`.
    pub routes: String,
    /// Extra sections appended verbatim (e.g. `[[routes.rule]]` tables, `[mode]`).
    pub extra: String,
    /// `[admin] token`; `None` leaves the admin API without a token.
    pub admin_token: Option<String>,
}

/// A config for the real binary: both listeners on `127.0.0.1:0`, JSON logs at `info`, the
/// networkless [`key`], the admin token [`ADMIN_TOKEN`], state in `state` (relative to the
/// gateway's directory, which is its working directory), `/`, `/public(.*)` and `/health` public.
pub fn binary_config(upstream: SocketAddr) -> BinaryConfig {
    BinaryConfig {
        upstream,
        routes: "default = \"protected\"\npublic = [\"/\", \"/public(.*)\", \"/health\"]".into(),
        extra: String::new(),
        admin_token: Some(ADMIN_TOKEN.into()),
    }
}

impl BinaryConfig {
    /// Replaces the `[routes]` body.
    pub fn routes(mut self, body: &str) -> Self {
        self.routes = body.to_string();
        self
    }

    /// Appends a section verbatim (header included).
    pub fn extra(mut self, text: &str) -> Self {
        self.extra.push_str(text);
        self.extra.push_str("\n\n");
        self
    }

    /// Leaves the admin API without a token.
    pub fn no_admin_token(mut self) -> Self {
        self.admin_token = None;
        self
    }

    /// The TOML text.
    pub fn text(&self) -> String {
        let admin_token = match &self.admin_token {
            Some(t) => format!("token = {}\n", toml_str(t)),
            None => String::new(),
        };
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"10s\"\n\n\
             [upstream]\nurl = \"http://{upstream}\"\n\n\
             [clerk]\njwt_key = {jwt_key}\n\n\
             [routes]\n{routes}\n\n\
             {extra}\
             [admin]\nlisten = \"127.0.0.1:0\"\n{admin_token}\n\
             [state]\ndir = \"state\"\n\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\n",
            upstream = self.upstream,
            jwt_key = toml_str(&key().public_pem()),
            routes = self.routes,
            extra = self.extra,
        )
    }
}

/// The real `clerkgate run` as a child process, with real signals.
pub struct BinaryGateway {
    /// The data plane.
    pub data_addr: SocketAddr,
    /// The admin API.
    pub admin_addr: SocketAddr,
    /// The process.
    pub child: std::process::Child,
    /// Its directory: `clerkgate.toml`, and `state/` (its working directory). Shared so a
    /// restart can reuse it.
    pub dir: Arc<tempfile::TempDir>,
    /// Every stderr line so far (drained on a background thread so the pipe never blocks).
    pub logs: Arc<std::sync::Mutex<Vec<String>>>,
}

impl BinaryGateway {
    /// Writes `config_text` to a fresh directory and starts the binary there with a clean
    /// environment (`PATH` plus `env`); waits (30 s at most: a loaded machine may start several
    /// at once) for its "clerkgate listening" line.
    pub fn start(config_text: &str, env: &[(&str, &str)]) -> BinaryGateway {
        Self::start_in(Arc::new(tempfile::tempdir().expect("tempdir")), config_text, env)
    }

    /// Like [`BinaryGateway::start`], in an existing directory (a restart keeps `state/`).
    pub fn start_in(dir: Arc<tempfile::TempDir>, config_text: &str, env: &[(&str, &str)]) -> BinaryGateway {
        Self::launch(dir, config_text, env, &[], vec![binary().into()], false)
    }

    /// Like [`BinaryGateway::start`], watching its files as `clerkgate run` does by default.
    /// The others run with `--no-watch`, so that a test that rewrites the config file reloads
    /// exactly when it sends SIGHUP or `POST /reload`.
    pub fn start_watching(config_text: &str) -> BinaryGateway {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        Self::launch(dir, config_text, &[], &[], vec![binary().into()], true)
    }

    /// Like [`BinaryGateway::start_in`], with the command `program` (e.g. `setpriv … BINARY`,
    /// which runs the binary as another user) in place of the binary itself. When
    /// `dir/clerkgate.toml` already holds `config_text` it is not written again, so the
    /// directory may be read-only.
    pub fn start_in_as(
        dir: Arc<tempfile::TempDir>,
        config_text: &str,
        env: &[(&str, &str)],
        program: Vec<std::ffi::OsString>,
    ) -> BinaryGateway {
        Self::launch(dir, config_text, env, &[], program, false)
    }

    /// Like [`BinaryGateway::start_in`], with more arguments after `run --config FILE` (such as
    /// `--discard-state`).
    pub fn start_in_with_args(dir: Arc<tempfile::TempDir>, config_text: &str, args: &[&str]) -> BinaryGateway {
        Self::launch(dir, config_text, &[], args, vec![binary().into()], false)
    }

    /// Like [`BinaryGateway::start`], with the soft open-descriptor limit lowered to
    /// `soft_nofile` before the binary starts (through `sh -c 'ulimit -S -n …; exec …'`).
    pub fn start_with_soft_nofile(config_text: &str, soft_nofile: u64) -> BinaryGateway {
        let script = format!("ulimit -S -n {soft_nofile} && exec \"$0\" \"$@\"");
        let program = ["sh", "-c", &script, binary()].map(std::ffi::OsString::from).to_vec();
        Self::launch(Arc::new(tempfile::tempdir().expect("tempdir")), config_text, &[], &[], program, false)
    }

    fn launch(
        dir: Arc<tempfile::TempDir>,
        config_text: &str,
        env: &[(&str, &str)],
        args: &[&str],
        program: Vec<std::ffi::OsString>,
        watching: bool,
    ) -> BinaryGateway {
        use std::io::BufRead;
        use std::process::{Command, Stdio};

        let config_path = dir.path().join("clerkgate.toml");
        if std::fs::read_to_string(&config_path).ok().as_deref() != Some(config_text) {
            std::fs::write(&config_path, config_text).expect("write config");
        }
        let (program, prefix) = program.split_first().expect("a program to run");
        let mut cmd = Command::new(program);
        cmd.args(prefix).arg("run").arg("--config").arg(&config_path);
        if !watching {
            cmd.arg("--no-watch");
        }
        cmd.args(args)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn clerkgate");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<(SocketAddr, SocketAddr)>();
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let addrs = if tx.is_some() { listening_addrs(&line) } else { None };
                // Stored before the addresses are reported, so a test that reads the logs once
                // the gateway is up finds its listening line there.
                sink.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                if let Some(addrs) = addrs {
                    let _ = tx.take().expect("sender").send(addrs);
                }
            }
        });
        let mut gw = BinaryGateway {
            data_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            child,
            dir,
            logs,
        };
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok((data, admin)) => {
                gw.data_addr = data;
                gw.admin_addr = admin;
                gw
            }
            Err(e) => {
                let status = gw.child.try_wait().ok().flatten();
                panic!(
                    "clerkgate did not log \"clerkgate listening\" ({e}); exit status {status:?}; stderr:\n{}\n--- config:\n{config_text}",
                    gw.logs().join("\n")
                )
            }
        }
    }

    /// The process id, as `kill` wants it.
    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends a signal (`"-HUP"`, `"-TERM"`) with `kill`.
    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill").args([sig, &self.pid()]).status().expect("run kill");
        assert!(status.success(), "kill {sig} {} failed: {status}", self.pid());
    }

    /// Waits (polling, `deadline` at most) for the process to exit.
    pub async fn wait_exit(&mut self, deadline: std::time::Duration) -> std::process::ExitStatus {
        let until = std::time::Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < until,
                "clerkgate did not exit within {deadline:?}; stderr:\n{}",
                self.logs().join("\n")
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for exit 0.
    pub async fn stop(mut self) {
        self.signal("-TERM");
        let status = self.wait_exit(std::time::Duration::from_secs(20)).await;
        assert!(status.success(), "clerkgate exited with {status} after SIGTERM; stderr:\n{}", self.logs().join("\n"));
    }

    /// Waits (20 s at most) for a stderr line that satisfies `line`. Logs go through a writer
    /// thread, so a line may arrive after the event it reports is visible elsewhere.
    pub async fn await_log(&self, what: &str, line: impl Fn(&str) -> bool) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !self.logs().iter().any(|l| line(l)) {
            assert!(std::time::Instant::now() < until, "no log line {what}:\n{}", self.logs().join("\n"));
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// A copy of every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The config file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("clerkgate.toml")
    }

    /// Rewrites the config file atomically (write a sibling, rename), so a reload never reads
    /// a half-written file; then send SIGHUP or POST /reload.
    pub fn write_config(&self, text: &str) {
        let tmp = self.dir.path().join("clerkgate.toml.new");
        std::fs::write(&tmp, text).expect("write new config");
        std::fs::rename(&tmp, self.config_path()).expect("replace config");
    }

    /// The state dir.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Every event in `state/audit.jsonl` (empty when there is none yet).
    pub fn audit_file(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.state_dir().join("audit.jsonl")).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}")))
            .collect()
    }

    /// `http://data_addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.data_addr)
    }

    /// `http://admin_addr{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin_addr)
    }

    /// GET on the data plane with an optional bearer token.
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        let mut req = client().get(self.url(path));
        if let Some(t) = bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        Reply::from(req.send().await.expect("data-plane request")).await
    }

    /// An admin call with [`ADMIN_TOKEN`] and an optional JSON body.
    pub async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        admin_call(self.admin_url(path), method, body).await
    }
}

/// `method url` with [`ADMIN_TOKEN`] and an optional JSON body.
async fn admin_call(url: String, method: &str, body: Option<Value>) -> Reply {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client().request(method, url).bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    Reply::from(req.send().await.expect("admin request")).await
}

impl Drop for BinaryGateway {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The `clerkgate` binary cargo built for the tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_clerkgate")
}

/// Polls `check` every 50 ms until it yields a value, failing with `what` after `within`. Tests
/// wait this way, never by sleeping a fixed time.
pub async fn eventually<T, F, Fut>(what: &str, within: std::time::Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = std::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < until, "timed out after {within:?} waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs the real CLI binary in `cwd` with only `PATH` and the given variables, and waits for it.
pub fn cli_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(binary());
    cmd.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default()).current_dir(cwd).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the clerkgate CLI")
}

/// The data and admin addresses from a JSON "clerkgate listening" log line.
fn listening_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    if !line.contains("clerkgate listening") {
        return None;
    }
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        // `log.format = "pretty"`: `… data_addr=127.0.0.1:1 admin_addr=127.0.0.1:2 …`.
        let field = |name: &str| {
            line.split_whitespace().find_map(|w| w.strip_prefix(name)?.strip_prefix('=')?.parse::<SocketAddr>().ok())
        };
        return Some((field("data_addr")?, field("admin_addr")?));
    };
    let field = |name: &str| {
        v.get(name)
            .or_else(|| v.get("fields").and_then(|f| f.get(name)))
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<SocketAddr>().ok())
    };
    Some((field("data_addr")?, field("admin_addr")?))
}

/// Writes `config_text` to `dir/clerkgate.toml` and runs `clerkgate run` there (with `args`)
/// until it exits, as a refused start must; kills it and fails when it keeps running (20 s).
pub fn run_until_exit(dir: &Path, config_text: &str, args: &[&str]) -> std::process::Output {
    use std::process::{Command, Stdio};
    let config = dir.join("clerkgate.toml");
    std::fs::write(&config, config_text).expect("write config");
    let mut child = Command::new(binary())
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clerkgate run");
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > until {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "clerkgate run kept running; it must refuse to start. stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}
