//! End-to-end load bench: the upstream alone, nginx as a plain reverse proxy (when installed),
//! and clerkgate with cached verdicts, with cold verification, and in bypass — all over the
//! same upstream, in one run, with the load generator pinned to one core and the servers to
//! the other. Prints requests/s, p50, p99, non-2xx counts and peak RSS, each as a ratio to nginx.
//!
//! Run: `cargo bench --bench e2e` (`E2E_SECONDS=20` for longer runs). Needs `wrk` and `taskset`;
//! `nginx` is optional (its row is skipped with a note). Installs nothing itself.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clerkgate::mint::{SigningKey, TokenSpec};

const LOAD_CORE: &str = "0";
const SERVER_CORE: &str = "1";
const CONNECTIONS: &str = "32";
const COLD_POOL: usize = 2_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--upstream") {
        let addr: SocketAddr = args[i + 1].parse().expect("upstream address");
        return run_upstream(addr);
    }
    // `cargo bench` passes `--bench`; anything else (like a filter) is ignored.
    let seconds: u64 = std::env::var("E2E_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let missing: Vec<&str> = ["wrk", "taskset"].into_iter().filter(|t| !have(t)).collect();
    if !missing.is_empty() {
        println!("e2e bench skipped: missing {} (Debian: apt-get install wrk util-linux)", missing.join(", "));
        return;
    }
    let work = std::env::temp_dir().join(format!("clerkgate-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");

    // Every row gets a fresh upstream process, so no row inherits another's connections.
    let fresh_upstream = || {
        let addr = free_addr();
        let child = pinned(Command::new(std::env::current_exe().expect("exe")).args(["--upstream", &addr.to_string()]));
        wait_http(addr, "/", 200);
        (addr, child)
    };

    let key = SigningKey::generate().expect("key");
    let now = clerkgate::clock::Clock::system().now_ms() / 1000;
    let spec = TokenSpec {
        sub: "user_2GIpXOEpVyJw51rkZn9Kmnc6Sxr".into(),
        sid: "sess_2GbDB4enNdCa5vS1zpC3Xzg9tK9".into(),
        azp: Some("https://app.example.com".into()),
        iss: Some("https://clerk.example.com".into()),
        ttl_s: 3600,
        ..TokenSpec::default()
    };
    let token = key.sign(Some("ins_bench"), &spec.claims(now));
    let pool_file = work.join("tokens.txt");
    {
        let mut f = std::fs::File::create(&pool_file).expect("tokens");
        for i in 0..COLD_POOL {
            let s = TokenSpec { sid: format!("sess_bench_{i}"), ..spec.clone() };
            writeln!(f, "{}", key.sign(Some("ins_bench"), &s.claims(now))).expect("write token");
        }
    }
    let pool_script = work.join("pool.lua");
    std::fs::write(
        &pool_script,
        format!(
            "local tokens = {{}}\nfor line in io.lines(\"{}\") do tokens[#tokens + 1] = line end\nlocal i = 0\nrequest = function()\n  i = i % #tokens + 1\n  return wrk.format(\"GET\", \"/api/bench\", {{[\"Authorization\"] = \"Bearer \" .. tokens[i]}})\nend\n",
            pool_file.display()
        ),
    )
    .expect("lua");
    let one_script = work.join("one.lua");
    std::fs::write(
        &one_script,
        format!("wrk.headers[\"Authorization\"] = \"Bearer {token}\"\nwrk.path = \"/api/bench\"\n"),
    )
    .expect("lua");
    let plain_script = work.join("plain.lua");
    std::fs::write(&plain_script, "wrk.path = \"/api/bench\"\n").expect("lua");

    // All targets run at once (idle unless loaded), each with its own upstream, and are
    // measured round-robin for E2E_ROUNDS rounds; each figure is the median over the rounds.
    // The shared host drifts over minutes, and interleaving spreads that drift over every row
    // instead of penalising whichever row happens to run last.
    let rounds: usize = std::env::var("E2E_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let mut targets: Vec<Target> = Vec::new();
    let (upstream_addr, upstream) = fresh_upstream();
    targets.push(Target {
        name: "upstream direct".into(),
        addr: upstream_addr,
        script: plain_script.clone(),
        pid: None,
        children: vec![upstream],
    });
    if have("nginx") {
        let (upstream_addr, upstream) = fresh_upstream();
        let (addr, nginx) = start_nginx(&work, upstream_addr);
        wait_http(addr, "/api/bench", 200);
        let pid = Some(nginx.id());
        targets.push(Target {
            name: "nginx plain proxy".into(),
            addr,
            script: plain_script.clone(),
            pid,
            children: vec![nginx, upstream],
        });
    } else {
        println!("note: nginx is not installed; its row is skipped and ratios are to the upstream (apt-get install nginx-light)");
    }
    let variants: [(&str, &Path, &str, bool); 4] = [
        ("clerkgate, one token (cache hits)", &one_script, "", true),
        ("clerkgate, token pool, cache off (cold)", &pool_script, "verdict_cache_entries = 0\n", true),
        ("clerkgate, bypass", &plain_script, "", false),
        ("clerkgate, bypass, token sent", &one_script, "", false),
    ];
    for (name, script, clerk_extra, enforce) in variants {
        let mode = if enforce {
            ""
        } else {
            "[mode]\nmode = \"bypass\"\nreason = \"e2e bench\"\nmax_override_ttl = \"24h\"\n"
        };
        let (upstream_addr, upstream) = fresh_upstream();
        let (addr, admin, gw) = start_clerkgate(&work, upstream_addr, &key.public_pem(), clerk_extra, mode);
        wait_http(admin, "/readyz", 200);
        // Before the load: each target answers correctly.
        let with_token = http_get(addr, "/api/bench", Some(&token));
        let without = http_get(addr, "/api/bench", None);
        let expected_without = if enforce { 401 } else { 200 };
        let pid = Some(gw.id());
        let target =
            Target { name: name.into(), addr, script: script.to_path_buf(), pid, children: vec![gw, upstream] };
        if with_token != 200 || without != expected_without {
            println!("{name}: pre-check failed (with token {with_token}, without {without}; expected 200 and {expected_without}); row skipped");
            target.stop();
        } else {
            targets.push(target);
        }
    }
    let mut samples: Vec<Vec<Row>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for (t, out) in targets.iter().zip(samples.iter_mut()) {
            eprint!("round {}/{rounds} ", round + 1);
            out.push(measure(&t.name, t.addr, &t.script, seconds, t.pid));
        }
    }
    let rows: Vec<Row> = samples.into_iter().map(median_row).collect();
    for t in targets {
        t.stop();
    }
    let _ = std::fs::remove_dir_all(&work);
    print_table(&rows, seconds);
}

struct Target {
    name: String,
    addr: SocketAddr,
    script: PathBuf,
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
    let name = std::mem::take(&mut rows[0].name);
    Row { name, rps, p50_ms, p99_ms, non_2xx, requests, rss_kb }
}

struct Row {
    name: String,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    requests: u64,
    rss_kb: Option<u64>,
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
}

fn pinned(cmd: &mut Command) -> Child {
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    Command::new("taskset")
        .arg("-c")
        .arg(SERVER_CORE)
        .arg(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pinned server")
}

fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return 0 };
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: bench\r\n{auth}Connection: close\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

fn wait_http(addr: SocketAddr, path: &str, want: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http_get(addr, path, None) == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{addr}{path} did not answer {want} in time");
}

fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn measure(name: &str, addr: SocketAddr, script: &Path, seconds: u64, pid: Option<u32>) -> Row {
    let url = format!("http://{addr}/api/bench");
    let run = |secs: u64| {
        Command::new("taskset")
            .args(["-c", LOAD_CORE, "wrk", "-t1", "-c", CONNECTIONS, "-d", &format!("{secs}s"), "--latency", "-s"])
            .arg(script)
            .arg(&url)
            .output()
            .expect("run wrk")
    };
    let _ = run(1); // warm-up: connections, caches, allocator
                    // E2E_PERF_DIR=<dir>: also record a CPU profile of the server under load (`perf` needed).
    let perf = match (std::env::var("E2E_PERF_DIR"), pid) {
        (Ok(dir), Some(pid)) => {
            let file = Path::new(&dir).join(format!("{}.perf.data", name.replace([' ', ',', '(', ')'], "_")));
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
    let out = run(seconds);
    if let Some(mut p) = perf {
        let _ = p.wait();
    }
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let row = Row {
        name: name.to_string(),
        rps: field(&text, "Requests/sec:").unwrap_or(0.0),
        p50_ms: latency(&text, "50%").unwrap_or(f64::NAN),
        p99_ms: latency(&text, "99%").unwrap_or(f64::NAN),
        non_2xx: field(&text, "Non-2xx or 3xx responses:").unwrap_or(0.0) as u64,
        requests: text
            .lines()
            .find(|l| l.contains("requests in"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0),
        rss_kb: pid.and_then(peak_rss_kb),
    };
    eprintln!("{name}: {:.0} req/s", row.rps);
    row
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

fn start_nginx(work: &Path, upstream: SocketAddr) -> (SocketAddr, Child) {
    let addr = free_addr();
    let prefix = work.join("nginx");
    std::fs::create_dir_all(prefix.join("logs")).expect("nginx dir");
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\nerror_log stderr error;\npid {pid};\nevents {{ worker_connections 4096; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {t}/body; proxy_temp_path {t}/proxy; fastcgi_temp_path {t}/fcgi; uwsgi_temp_path {t}/uwsgi; scgi_temp_path {t}/scgi;\n  upstream app {{ server {upstream}; keepalive 64; }}\n  server {{\n    listen {addr};\n    location / {{ proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $host; proxy_set_header X-Forwarded-For $remote_addr; }}\n  }}\n}}\n",
            pid = prefix.join("nginx.pid").display(),
            t = prefix.display(),
        ),
    )
    .expect("nginx conf");
    let child = pinned(Command::new("nginx").arg("-p").arg(&prefix).arg("-c").arg(&conf).args(["-g", "daemon off;"]));
    (addr, child)
}

fn start_clerkgate(
    work: &Path,
    upstream: SocketAddr,
    public_pem: &str,
    clerk_extra: &str,
    mode: &str,
) -> (SocketAddr, SocketAddr, Child) {
    let dir: PathBuf = work.join(format!(
        "gw-{}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("gw dir");
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[upstream]\nurl = \"http://{upstream}\"\n[clerk]\njwt_key = {pem}\nauthorized_parties = [\"https://app.example.com\"]\n{clerk_extra}[routes]\ndefault = \"protected\"\npublic = [\"/\"]\n{mode}[admin]\nlisten = \"127.0.0.1:0\"\n[state]\ndir = {state}\n[log]\nformat = \"json\"\nlevel = \"info,clerkgate::bypass=error\"\n",
        pem = toml::Value::String(public_pem.to_string()),
        state = toml::Value::String(dir.join("state").display().to_string()),
    );
    let path = dir.join("clerkgate.toml");
    std::fs::write(&path, config).expect("write config");
    let mut child = Command::new("taskset")
        .args(["-c", SERVER_CORE, env!("CARGO_BIN_EXE_clerkgate"), "run", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clerkgate");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut addrs = None;
    for line in lines.by_ref() {
        let Ok(line) = line else { break };
        if line.contains("clerkgate listening") {
            let v: serde_json::Value = serde_json::from_str(&line).expect("json log line");
            let data = v["data_addr"].as_str().and_then(|s| s.parse().ok()).expect("data_addr");
            let admin = v["admin_addr"].as_str().and_then(|s| s.parse().ok()).expect("admin_addr");
            addrs = Some((data, admin));
            break;
        }
    }
    // Keep draining stderr so the gateway never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let (data, admin) = addrs.expect("clerkgate did not announce its addresses");
    (data, admin, child)
}

fn print_table(rows: &[Row], seconds: u64) {
    let base = rows.iter().find(|r| r.name.starts_with("nginx")).or_else(|| rows.first());
    let Some(base) = base else { return };
    println!();
    println!("e2e: medians over E2E_ROUNDS round-robin rounds of {seconds}s per row (1s warm-up each); wrk -t1 -c{CONNECTIONS} pinned to core {LOAD_CORE}, servers pinned to core {SERVER_CORE}; ratios vs {}", base.name);
    println!("| target | req/s | ×base | p50 ms | p99 ms | p99 ×base | non-2xx | requests | peak RSS MB |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.2} | {:.3} | {:.3} | {:.2} | {} | {} | {} |",
            r.name,
            r.rps,
            r.rps / base.rps,
            r.p50_ms,
            r.p99_ms,
            r.p99_ms / base.p99_ms,
            r.non_2xx,
            r.requests,
            r.rss_kb.map(|k| format!("{:.1}", k as f64 / 1024.0)).unwrap_or_else(|| "-".into()),
        );
    }
}

/// The shared upstream: answers every request `200 ok` (like nginx's `return 200`).
fn run_upstream(addr: SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind upstream");
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: http::Request<hyper::body::Incoming>| async {
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
}
