//! The e2e bench's servers: the upstream, clerkgate, nginx, the peers (Envoy, Node), the JWKS
//! server, the idle-connection holder; each started pinned to the server core.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Ctx, Load, Target, AZP, ISS, KID, SERVER_CORE};

/// The path on which the bench upstream lists the request headers it received.
const HEADERS_PATH: &str = "/__bench/headers";

pub(crate) fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
}

/// `taskset -c <server core> <program>`: add arguments and environment, then spawn.
fn pinned(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(SERVER_CORE).arg(program).stdout(Stdio::null()).stderr(Stdio::null());
    cmd
}

/// A placeholder row for a server whose caller names it and says how to load it.
fn target(addr: SocketAddr, pid: u32, children: Vec<Child>) -> Target {
    Target { group: "", name: String::new(), addr, load: Load::H2 { token: None }, pid: Some(pid), children }
}

/// One GET over a fresh connection: the status (0 when no answer) and the body.
pub(crate) fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else { return (0, String::new()) };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}Connection: close\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn wait_until(what: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn wait_http(addr: SocketAddr, path: &str, want: u16) -> bool {
    wait_until(|| http_get(addr, path, None).0 == want)
}

fn wait_tcp(addr: SocketAddr) -> bool {
    wait_until(|| TcpStream::connect(addr).is_ok())
}

/// Checks a proxy answers 200 with the token and `without` without it.
fn pre_check(addr: SocketAddr, token: &str, without: u16) -> Result<(), String> {
    let with = http_get(addr, "/api/bench", Some(token)).0;
    let none = http_get(addr, "/api/bench", None).0;
    if with == 200 && none == without {
        Ok(())
    } else {
        Err(format!("pre-check failed (with token {with}, without {none}; expected 200 and {without})"))
    }
}

/// The CPU time `pid` and every process under it have used so far, in ns: the first field of
/// each thread's `schedstat` (nanosecond resolution, unlike the tick counts in `stat`).
pub(crate) fn cpu_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.flatten() {
        let dir = task.path();
        let stat = std::fs::read_to_string(dir.join("schedstat")).unwrap_or_default();
        total += stat.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
        let children = std::fs::read_to_string(dir.join("children")).unwrap_or_default();
        total += children.split_whitespace().filter_map(|c| c.parse().ok()).filter_map(cpu_ns).sum::<u64>();
    }
    Some(total)
}

pub(crate) fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// The headers clerkgate adds to a signed-in request, as the upstream received them: every
/// header but the three the bench's own request carries (`Host`, `Authorization`, `Connection`).
pub(crate) fn added_headers(gateway: SocketAddr, token: &str) -> Vec<(String, String)> {
    let (status, body) = http_get(gateway, HEADERS_PATH, Some(token));
    if status != 200 {
        return Vec::new();
    }
    body.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(n, _)| !matches!(*n, "host" | "authorization" | "connection"))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// A fresh upstream process (every row has its own, so no row inherits another's connections).
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    pub(crate) child: Child,
}

impl Upstream {
    pub(crate) fn start() -> Upstream {
        let addr = free_addr();
        let child = pinned(std::env::current_exe().expect("exe"))
            .args(["--upstream", &addr.to_string()])
            .spawn()
            .expect("spawn upstream");
        assert!(wait_http(addr, "/", 200), "the bench upstream did not start");
        Upstream { addr, child }
    }
}

/// The upstream: answers every request `200 ok` (like nginx's `return 200`), and lists the
/// request's headers on [`HEADERS_PATH`].
pub(crate) fn run_upstream(addr: SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind upstream");
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let body = if req.uri().path() == HEADERS_PATH {
                        let list: String = req
                            .headers()
                            .iter()
                            .map(|(n, v)| format!("{n}: {}\n", String::from_utf8_lossy(v.as_bytes())))
                            .collect();
                        bytes::Bytes::from(list)
                    } else {
                        bytes::Bytes::from_static(b"ok")
                    };
                    Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(body)))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

/// One clerkgate (the real binary) and its config.
pub(crate) struct Gateway {
    pub(crate) clerk_extra: String,
    pub(crate) server_extra: String,
    pub(crate) bypass: bool,
    /// `[[routes.rule]]` entries, none matching the bench path.
    pub(crate) rules: usize,
    /// Revoked sessions and users (half each) seeded into `state.json`, none the bench's.
    pub(crate) revocations: usize,
    /// Keys from this JWKS URL instead of the PEM key.
    pub(crate) jwks_url: Option<String>,
    /// The data plane speaks TLS (the plain-HTTP pre-check is skipped).
    pub(crate) tls: bool,
    pub(crate) pem: String,
}

impl Gateway {
    pub(crate) fn new(ctx: &Ctx) -> Gateway {
        Gateway {
            clerk_extra: String::new(),
            server_extra: String::new(),
            bypass: false,
            rules: 0,
            revocations: 0,
            jwks_url: None,
            tls: false,
            pem: ctx.key.public_pem(),
        }
    }

    /// Starts it with its own upstream and checks it answers; `None` (and a note in `skipped`)
    /// when it does not.
    pub(crate) fn target(
        self,
        ctx: &Ctx,
        group: &'static str,
        name: &str,
        load: Load,
        skipped: &mut Vec<String>,
    ) -> Option<Target> {
        let up = Upstream::start();
        let dir = ctx.work.join(format!(
            "gw-{}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        std::fs::create_dir_all(dir.join("state")).expect("gw dir");
        if self.revocations > 0 {
            self.seed_revocations(&dir.join("state").join("state.json"));
        }
        let path = dir.join("clerkgate.toml");
        std::fs::write(&path, self.config(up.addr, &dir)).expect("write config");
        let mut children = vec![up.child];
        let started = start_clerkgate(&path).and_then(|(data, admin, gw)| {
            children.push(gw);
            if !wait_http(admin, "/readyz", 200) {
                return Err("its /readyz did not answer 200".into());
            }
            if !self.tls {
                pre_check(data, &ctx.token, if self.bypass { 200 } else { 401 })?;
            }
            Ok(data)
        });
        let pid = children.last().map(Child::id);
        let t = Target { group, name: name.to_string(), addr: free_addr(), load, pid, children };
        match started {
            Ok(addr) => Some(Target { addr, ..t }),
            Err(e) => {
                skipped.push(format!("{group}: {name}: {e}"));
                t.stop();
                None
            }
        }
    }

    fn config(&self, upstream: SocketAddr, dir: &Path) -> String {
        let key = match &self.jwks_url {
            Some(url) => format!("jwks_url = \"{url}\"\n"),
            None => format!("jwt_key = {}\n", toml::Value::String(self.pem.clone())),
        };
        let rules: String = (0..self.rules)
            .map(|i| format!("[[routes.rule]]\npath = \"/svc{i}/(.*)\"\nmethods = [\"GET\"]\n"))
            .collect();
        let mode = if self.bypass {
            "[mode]\nmode = \"bypass\"\nreason = \"e2e bench\"\nmax_override_ttl = \"24h\"\n"
        } else {
            ""
        };
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n{server}[upstream]\nurl = \"http://{upstream}\"\n[clerk]\n{key}authorized_parties = [\"{AZP}\"]\n{clerk}[routes]\ndefault = \"protected\"\npublic = [\"/\"]\n{rules}{mode}[admin]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = {state}\n[log]\nformat = \"json\"\nlevel = \"info,clerkgate::bypass=error\"\n",
            server = self.server_extra,
            clerk = self.clerk_extra,
            state = toml::Value::String(dir.join("state").display().to_string()),
        )
    }

    fn seed_revocations(&self, path: &Path) {
        use clerkgate::revocation::Entry;
        let entry = || Entry { added_at_ms: 0, actor: "bench".into(), reason: String::new() };
        let mut state = clerkgate::store::ControlState::default();
        for i in 0..self.revocations {
            if i % 2 == 0 {
                state.revocations.sessions.insert(format!("sess_revoked_{i}"), entry());
            } else {
                state.revocations.users.insert(format!("user_revoked_{i}"), entry());
            }
        }
        std::fs::write(path, serde_json::to_vec(&state).expect("state json")).expect("write state.json");
    }
}

/// Starts the real binary pinned, with the descriptor limit raised to the hard limit; gives
/// the data and admin addresses it announces.
fn start_clerkgate(config: &Path) -> Result<(SocketAddr, SocketAddr, Child), String> {
    let mut child = Command::new("sh")
        .args([
            "-c",
            &format!("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec taskset -c {SERVER_CORE} \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_clerkgate"),
            "run",
            "--config",
        ])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn clerkgate: {e}"))?;
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut addrs = None;
    let mut last = String::new();
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if line.contains("clerkgate listening") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            let data = v["data_addr"].as_str().and_then(|s| s.parse().ok());
            let admin = v["admin_addr"].as_str().and_then(|s| s.parse().ok());
            addrs = data.zip(admin);
            break;
        }
        last = line;
    }
    // Keep draining stderr so the gateway never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    match addrs {
        Some((data, admin)) => Ok((data, admin, child)),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("clerkgate did not announce its addresses (last log line: {last})"))
        }
    }
}

/// nginx as a keep-alive reverse proxy, `worker_processes 1`, access log off.
#[derive(Default)]
pub(crate) struct Nginx {
    /// Headers set on the upstream request (the forwarded trio from the connection, the rest
    /// verbatim); none for the bare proxy.
    pub(crate) headers: Vec<(String, String)>,
    /// Serve h2c (HTTP/2 with prior knowledge).
    pub(crate) http2: bool,
    /// Certificate and key: serve TLS.
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
}

impl Nginx {
    pub(crate) fn start(&self, work: &Path, tag: &str) -> Target {
        let up = Upstream::start();
        let addr = free_addr();
        let prefix = work.join(format!("nginx-{tag}"));
        std::fs::create_dir_all(prefix.join("logs")).expect("nginx dir");
        let set: String = self
            .headers
            .iter()
            .map(|(n, v)| {
                let v = match n.as_str() {
                    "x-forwarded-for" => "$remote_addr".to_string(),
                    "x-forwarded-proto" => "$scheme".to_string(),
                    "x-forwarded-host" => "$host".to_string(),
                    _ => v.replace(['"', '$', '\\'], "_"),
                };
                format!(" proxy_set_header {n} \"{v}\";")
            })
            .collect();
        let listen = match (&self.tls, self.http2) {
            (Some(_), _) => format!("{addr} ssl"),
            (None, true) => format!("{addr} http2"),
            (None, false) => addr.to_string(),
        };
        let tls = self
            .tls
            .as_ref()
            .map(|(c, k)| format!("    ssl_certificate {}; ssl_certificate_key {};\n", c.display(), k.display()))
            .unwrap_or_default();
        let conf = prefix.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "worker_processes 1;\nerror_log stderr error;\npid {pid};\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {t}/body; proxy_temp_path {t}/proxy; fastcgi_temp_path {t}/fcgi; uwsgi_temp_path {t}/uwsgi; scgi_temp_path {t}/scgi;\n  upstream app {{ server {upstream}; keepalive 64; }}\n  server {{\n    listen {listen};\n{tls}    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $host;{set} }}\n  }}\n}}\n",
                pid = prefix.join("nginx.pid").display(),
                t = prefix.display(),
                upstream = up.addr,
            ),
        )
        .expect("nginx conf");
        let child = pinned("nginx")
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .spawn()
            .expect("spawn nginx");
        assert!(wait_tcp(addr), "nginx ({tag}) did not start");
        let pid = child.id();
        target(addr, pid, vec![child, up.child])
    }
}

/// A self-signed certificate for `localhost`/`127.0.0.1`, shared by nginx and clerkgate.
pub(crate) fn self_signed(work: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).expect("certificate");
    let (cert, key) = (work.join("cert.pem"), work.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    (cert, key)
}

/// Envoy with `jwt_authn` (the same issuer, `sub`/`sid` to headers, the forwarded trio), the
/// JWKS from a file, one worker; with or without its JWT cache.
pub(crate) fn start_envoy(ctx: &Ctx, cache: bool) -> Result<Target, String> {
    let up = Upstream::start();
    let addr = free_addr();
    let tag = if cache { "cache" } else { "nocache" };
    let jwks = ctx.work.join(format!("envoy-{tag}-jwks.json"));
    std::fs::write(&jwks, ctx.key.jwks(KID).to_string()).expect("jwks file");
    let mut provider = serde_json::json!({
        "issuer": ISS,
        "local_jwks": { "filename": jwks.display().to_string() },
        "forward": true,
        "claim_to_headers": [
            { "header_name": "x-clerk-user-id", "claim_name": "sub" },
            { "header_name": "x-clerk-session-id", "claim_name": "sid" },
        ],
    });
    if cache {
        provider["jwt_cache_config"] = serde_json::json!({ "jwt_cache_size": 100 });
    }
    let config = serde_json::json!({
        "static_resources": {
            "listeners": [{
                "address": { "socket_address": { "address": "127.0.0.1", "port_value": addr.port() } },
                "filter_chains": [{ "filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "bench",
                        "use_remote_address": true,
                        "route_config": { "virtual_hosts": [{
                            "name": "all",
                            "domains": ["*"],
                            "routes": [{ "match": { "prefix": "/" }, "route": { "cluster": "app", "append_x_forwarded_host": true } }],
                        }] },
                        "http_filters": [
                            {
                                "name": "envoy.filters.http.jwt_authn",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
                                    "providers": { "clerk": provider },
                                    "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "clerk" } }],
                                },
                            },
                            {
                                "name": "envoy.filters.http.router",
                                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" },
                            },
                        ],
                    },
                }] }],
            }],
            "clusters": [{
                "name": "app",
                "type": "STATIC",
                "load_assignment": { "cluster_name": "app", "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                    "socket_address": { "address": "127.0.0.1", "port_value": up.addr.port() },
                } } }] }] },
            }],
        },
    });
    let path = ctx.work.join(format!("envoy-{tag}.json"));
    std::fs::write(&path, config.to_string()).expect("envoy config");
    let child = pinned("envoy")
        .arg("-c")
        .arg(&path)
        .args(["--concurrency", "1", "--disable-hot-restart", "--log-level", "error"])
        .spawn()
        .map_err(|e| format!("spawn envoy: {e}"))?;
    let pid = child.id();
    let t = target(addr, pid, vec![child, up.child]);
    let ready = if wait_tcp(addr) { pre_check(addr, &ctx.token, 401) } else { Err("did not listen".into()) };
    match ready {
        Ok(()) => Ok(t),
        Err(e) => {
            t.stop();
            Err(e)
        }
    }
}

/// `benches/peers`: the Node peer's script and its `node_modules`.
pub(crate) fn node_peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches").join("peers")
}

/// The Node gateway (`benches/peers/node-gateway.js`), one process.
pub(crate) fn start_node(ctx: &Ctx) -> Result<Target, String> {
    let up = Upstream::start();
    let addr = free_addr();
    let pem = ctx.work.join("node-jwt-key.pem");
    std::fs::write(&pem, ctx.key.public_pem()).expect("pem");
    let child = pinned("node")
        .arg(node_peer_dir().join("node-gateway.js"))
        .env("PORT", addr.port().to_string())
        .env("UPSTREAM", format!("http://{}", up.addr))
        .env("JWT_KEY_FILE", &pem)
        .env("AUTHORIZED_PARTY", AZP)
        .spawn()
        .map_err(|e| format!("spawn node: {e}"))?;
    let pid = child.id();
    let t = target(addr, pid, vec![child, up.child]);
    let ready = if wait_http(addr, "/", 200) { pre_check(addr, &ctx.token, 401) } else { Err("did not answer".into()) };
    match ready {
        Ok(()) => Ok(t),
        Err(e) => {
            t.stop();
            Err(e)
        }
    }
}

/// Serves `/jwks/<n>`: the signing key (last) after `n - 1` other keys.
pub(crate) struct JwksServer {
    addr: SocketAddr,
}

impl JwksServer {
    pub(crate) fn start(ctx: &Ctx, sizes: &[usize]) -> JwksServer {
        let max = sizes.iter().copied().max().unwrap_or(1);
        let others: Vec<serde_json::Value> = (1..max)
            .map(|i| clerkgate::mint::SigningKey::generate().expect("key").jwk(&format!("other_{i}")))
            .collect();
        let bodies: Vec<(usize, String)> = sizes
            .iter()
            .map(|&n| {
                let mut keys: Vec<serde_json::Value> = others[..n - 1].to_vec();
                keys.push(ctx.key.jwk(KID));
                (n, serde_json::json!({ "keys": keys }).to_string())
            })
            .collect();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind jwks");
        let addr = listener.local_addr().expect("jwks addr");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = [0u8; 4096];
                let n = s.read(&mut head).unwrap_or(0);
                let text = String::from_utf8_lossy(&head[..n]);
                let path = text.split(' ').nth(1).unwrap_or("");
                let body = path
                    .strip_prefix("/jwks/")
                    .and_then(|k| k.parse::<usize>().ok())
                    .and_then(|k| bodies.iter().find(|(size, _)| *size == k))
                    .map(|(_, b)| b.as_str());
                let _ = match body {
                    Some(b) => write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                        b.len()
                    ),
                    None => write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                };
            }
        });
        JwksServer { addr }
    }

    pub(crate) fn url(&self, n: usize) -> String {
        format!("http://{}/jwks/{n}", self.addr)
    }
}

/// Sends every token of the `fill` pool once (at least): one wrk run long enough, timed from
/// a short run's rate (each wrk run starts the pool from its first token).
pub(crate) fn fill_cache(addr: SocketAddr, script: &Path, n: usize) {
    let wrk = |secs: u64| {
        let out = Command::new("taskset")
            .args(["-c", super::LOAD_CORE, "wrk", "-t1", "-c", super::CONNECTIONS, "-d", &format!("{secs}s"), "-s"])
            .arg(script)
            .arg(format!("http://{addr}/api/bench"))
            .output()
            .expect("run wrk");
        super::parse_wrk(&String::from_utf8_lossy(&out.stdout))
    };
    let probe = wrk(2);
    let secs = ((n as f64 / probe.rps.max(100.0)) * 1.3).ceil() as u64 + 1;
    let full = wrk(secs.min(300));
    eprintln!("verdict cache: sent {} requests over {n} tokens ({secs}s)", full.requests);
}

/// The descriptor hard limit, `None` when unlimited or unknown.
pub(crate) fn nofile_hard_limit() -> Option<u64> {
    let out = Command::new("sh").args(["-c", "ulimit -Hn"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Starts the bench itself as `--idle`, with a raised descriptor limit, and waits until it
/// holds its connections.
pub(crate) fn start_idle_holder(addr: SocketAddr, n: usize) -> Result<Child, String> {
    let mut child = Command::new("sh")
        .args(["-c", "ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec \"$0\" \"$@\""])
        .arg(std::env::current_exe().expect("exe"))
        .args(["--idle", &addr.to_string(), &n.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn the idle holder: {e}"))?;
    let mut line = String::new();
    let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    if line.starts_with("ready") {
        Ok(child)
    } else {
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("the idle holder failed: {}", line.trim()))
    }
}

/// `--idle <addr> <n>`: opens `n` keep-alive connections, sends one request on each, reads
/// its answer, says `ready`, and holds them until killed.
pub(crate) fn hold_idle(addr: SocketAddr, n: usize) {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let opened = TcpStream::connect(addr).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")?;
            let mut buf = [0u8; 1024];
            let got = s.read(&mut buf)?;
            if buf[..got].starts_with(b"HTTP/1.1 200") {
                Ok(s)
            } else {
                Err(std::io::Error::other(String::from_utf8_lossy(&buf[..got.min(80)]).into_owned()))
            }
        });
        match opened {
            Ok(s) => held.push(s),
            Err(e) => {
                println!("failed after {i} connections: {e}");
                return;
            }
        }
    }
    println!("ready {n}");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
