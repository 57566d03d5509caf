//! Issue #14's "Done when", with real parts only: several `clerkgate run` processes (each with
//! its own gateway id, state directory and ports) on one real `redis-server`, the echo upstream,
//! and the real CLI (`clerkgate mode`, `revoke`, `fleet status`) as the operator runs it.
//!
//! Times are measured and printed, never compared with a budget (the house rule: speed is
//! measured, not asserted). The 1 s of issue #14 is reported beside each figure; what the tests
//! assert is that every change reaches every gateway (polling with generous deadlines) and that
//! the CLI saw every live gateway acknowledge it.
//!
//! Every config uses `key_prefix = "clerkgate"` and `fleet = "prod"`, the names of
//! deploy/k8s/fleet/redis-acl.md, so the ACL lines of that file apply as written. The
//! heartbeat is 1 s: short, yet three of them (when `fleet status` and the CLI stop counting a
//! silent gateway as live) are well above a loaded CI machine's hiccups.

use std::process::Output;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use clerkgate::clock::Clock;
use clerkgate::config::{Config, Env, StateBackend};
use clerkgate::mint::TokenSpec;
use clerkgate::mode::{Mode, ModeSetting, ModeSource};
use clerkgate::store::redis::FleetClient;
use clerkgate::store::{Action, AuditEvent, Change};
use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::fleet_harness::{acl_lines, key};
use crate::support::redis::{run, RedisServer};
use crate::support::{self, binary_config, toml_str, with_keys, BinaryGateway, Reply, ADMIN_TOKEN};

/// A protected path: 401 without a token in enforce, forwarded in bypass.
const PROTECTED: &str = "/api/orders";

/// A path whose route says `bypass = "never"`: enforced in every mode, so a revocation can be
/// seen while a bypass runs.
const CRITICAL: &str = "/critical/payouts";

/// How long a gateway may take to reconnect after Redis returns (its backoff tops at 5 s).
const RECONNECT: Duration = Duration::from_secs(20);

/// The config of gateway `id` in the fleet "prod" on `redis_url`, with `redis_extra` lines in
/// `[state.redis]` (a user and a password file).
fn config(upstream: std::net::SocketAddr, redis_url: &str, id: &str, redis_extra: &str) -> String {
    let text = binary_config(upstream).extra("[[routes.rule]]\npath = \"/critical(.*)\"\nbypass = \"never\"").text();
    let text = with_keys(&text, "state", "backend = \"redis\"");
    format!(
        "{text}\n[state.redis]\nurl = {url}\nkey_prefix = \"clerkgate\"\nfleet = \"prod\"\ngateway_id = {id}\n\
         heartbeat = \"1s\"\n{redis_extra}\n",
        url = toml_str(redis_url),
        id = toml_str(id),
    )
}

/// Starts `n` gateways (`gw-1` … `gw-n`) at once on `redis`, and waits until each has reported
/// to the fleet (so the CLI counts it as live).
async fn start_fleet(redis: &RedisServer, n: usize, redis_extra: &str) -> Vec<BinaryGateway> {
    let upstream = support::upstream().await;
    let starts: Vec<_> = (1..=n)
        .map(|i| {
            let text = config(upstream, &redis.url(), &format!("gw-{i}"), redis_extra);
            tokio::task::spawn_blocking(move || BinaryGateway::start(&text, &[]))
        })
        .collect();
    let mut gateways = Vec::with_capacity(n);
    for start in starts {
        gateways.push(start.await.expect("a gateway started"));
    }
    let acks = key("acks");
    support::eventually("every gateway's first report to the fleet", Duration::from_secs(30), || async {
        (redis.cli(&["HLEN", &acks]).await == n.to_string()).then_some(())
    })
    .await;
    gateways
}

/// Stops `gw` (SIGTERM) and starts it again in the same directory, with the same config and
/// state; answers it with its new addresses.
async fn restart(gw: BinaryGateway) -> BinaryGateway {
    let dir = gw.dir.clone();
    let text = std::fs::read_to_string(gw.config_path()).expect("read the gateway's config");
    gw.stop().await;
    tokio::task::spawn_blocking(move || BinaryGateway::start_in(dir, &text, &[])).await.expect("restarted")
}

/// Runs the real CLI in `gw`'s directory with the admin token in the environment, off the
/// runtime's threads (the gateways go on being polled meanwhile).
async fn cli(gw: &BinaryGateway, args: &[&str]) -> Output {
    let dir = gw.dir.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        support::cli_in(dir.path(), &args, &[("CLERKGATE_ADMIN_TOKEN", ADMIN_TOKEN)])
    })
    .await
    .expect("the CLI ran")
}

/// A fleet command (`--config` `gw`'s file, so it goes to the fleet).
async fn fleet_cli(gw: &BinaryGateway, args: &[&str]) -> Output {
    let config = gw.config_path().display().to_string();
    let mut full = args.to_vec();
    full.extend(["--config", &config]);
    cli(gw, &full).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The CLI exited 0 after every one of the `n` live gateways confirmed the change.
fn confirmed_by(out: &Output, n: usize) {
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}", out.status.code(), text(&out.stderr));
    assert!(stdout.contains(&format!("in force on {n} of {n} live gateways")), "{stdout}");
}

/// `/status` of one gateway.
async fn status(gw: &BinaryGateway) -> Value {
    let r = gw.admin("GET", "/status", None).await;
    assert_eq!(r.status, 200, "GET /status: {}", r.body);
    r.json()
}

/// A fresh token of session `sid`.
fn token_of(sid: &str) -> String {
    support::token_for(&TokenSpec { sub: "user_fleet".into(), sid: sid.into(), ..TokenSpec::default() })
}

fn bypassed(r: &Reply) -> bool {
    r.status == 200 && r.header("x-auth-bypass") == Some("true")
}

fn refused(r: &Reply) -> bool {
    r.status == 401 && r.header("x-auth-bypass").is_none()
}

fn revoked(r: &Reply) -> bool {
    r.status == 401 && r.reason() == Some("session-revoked")
}

fn signed_in(r: &Reply) -> bool {
    r.status == 200 && r.header("x-auth-bypass").is_none()
}

fn now_ms() -> i64 {
    Clock::system().now_ms()
}

/// Polls every gateway back to back (`path`, with `token`) until its answer is `wanted`; gives
/// how long each took from `from`. Fails after 15 s with the last answer.
async fn until_each(
    gateways: &[BinaryGateway],
    from: Instant,
    path: &str,
    token: Option<&str>,
    wanted: fn(&Reply) -> bool,
    what: &str,
) -> Vec<Duration> {
    let waits = gateways.iter().map(|gw| async move {
        let deadline = from + Duration::from_secs(15);
        loop {
            let r = gw.get(path, token).await;
            if wanted(&r) {
                return from.elapsed();
            }
            assert!(
                Instant::now() < deadline,
                "{} never {what}; its last answer to {path}: {} {:?} {}",
                gw.config_path().display(),
                r.status,
                r.reason(),
                r.body
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    join_all(waits).await
}

/// Asserts that every gateway answers `path` (with `token`) as `wanted`, now.
async fn each_answers(
    gateways: &[BinaryGateway],
    path: &str,
    token: Option<&str>,
    wanted: fn(&Reply) -> bool,
    what: &str,
) {
    for (i, gw) in gateways.iter().enumerate() {
        let r = gw.get(path, token).await;
        assert!(
            wanted(&r),
            "gateway {} is not {what}: {path} answered {} {:?} {}",
            i + 1,
            r.status,
            r.reason(),
            r.body
        );
    }
}

/// Runs a fleet command from `gateways[0]`'s config while polling every gateway until it
/// answers `wanted`; prints each time, the worst, and whether it is within the issue's 1 s.
async fn timed_fleet_change(
    gateways: &[BinaryGateway],
    args: &[&str],
    path: &str,
    token: Option<&str>,
    wanted: fn(&Reply) -> bool,
    what: &str,
) -> Output {
    let from = Instant::now();
    let config = gateways[0].config_path().display().to_string();
    let mut full = args.to_vec();
    full.extend(["--config", &config]);
    let dir = gateways[0].dir.clone();
    let full: Vec<String> = full.iter().map(|a| a.to_string()).collect();
    let command = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = full.iter().map(String::as_str).collect();
        support::cli_in(dir.path(), &args, &[])
    });
    let times = until_each(gateways, from, path, token, wanted, what).await;
    let out = command.await.expect("the CLI ran");
    let worst = times.iter().max().copied().unwrap_or_default();
    let each: Vec<String> = times.iter().map(|t| format!("{} ms", t.as_millis())).collect();
    println!(
        "fleet: `clerkgate {}`: {what} on all {} gateways {} ms after the call ({} the 1 s of issue #14; each: {}); \
         the CLI said: {}",
        args.join(" "),
        gateways.len(),
        worst.as_millis(),
        if worst < Duration::from_secs(1) { "within" } else { "OVER" },
        each.join(", "),
        text(&out.stdout).trim()
    );
    out
}

/// Waits until `gw`'s `/status` satisfies `check` (15 s at most).
async fn status_until(gw: &BinaryGateway, what: &str, within: Duration, check: impl Fn(&Value) -> bool) -> Value {
    support::eventually(what, within, || async {
        let s = status(gw).await;
        check(&s).then_some(s)
    })
    .await
}

/// Done when, 1: with 5 gateways on one Redis, a bypass set through one CLI call is in force on
/// all of them, and so is its end; a revocation likewise — each measured against the issue's
/// 1 s and printed (the worst case goes in the session note), never asserted as a budget.
#[tokio::test(flavor = "multi_thread")]
async fn one_cli_call_flips_five_gateways_and_reports_how_fast() {
    let Some(redis) = RedisServer::start().await else { return };
    let gateways = start_fleet(&redis, 5, "").await;
    each_answers(&gateways, PROTECTED, None, refused, "enforcing before the call").await;

    let out = timed_fleet_change(
        &gateways,
        &["mode", "bypass", "--reason", "clerk outage drill", "--ttl", "1m"],
        PROTECTED,
        None,
        bypassed,
        "bypass in force",
    )
    .await;
    confirmed_by(&out, 5);
    for gw in &gateways {
        let s = status(gw).await;
        assert_eq!((s["mode"]["mode"].as_str(), s["mode"]["source"].as_str()), (Some("bypass"), Some("fleet")), "{s}");
        assert_eq!(s["mode"]["reason"], "clerk outage drill", "{s}");
        assert_eq!(s["fleet"]["link"], "connected", "{s}");
    }

    let out = timed_fleet_change(&gateways, &["mode", "enforce"], PROTECTED, None, refused, "the bypass ended").await;
    confirmed_by(&out, 5);
    for gw in &gateways {
        let s = status(gw).await;
        assert_eq!((s["mode"]["mode"].as_str(), s["mode"]["source"].as_str()), (Some("enforce"), Some("file")), "{s}");
    }

    let stolen = token_of("sess_x");
    each_answers(&gateways, PROTECTED, Some(&stolen), signed_in, "accepting sess_x before its revocation").await;
    let out = timed_fleet_change(
        &gateways,
        &["revoke", "--session", "sess_x", "--reason", "stolen laptop"],
        PROTECTED,
        Some(&stolen),
        revoked,
        "sess_x refused",
    )
    .await;
    confirmed_by(&out, 5);
    each_answers(&gateways, PROTECTED, Some(&token_of("sess_other")), signed_in, "accepting another session").await;
}

/// Done when, 2: Redis killed with SIGKILL: every gateway keeps serving with the last state, an
/// override expires on time during the outage, and a gateway restarted during the outage
/// serves with the persisted state (the bypass while it runs, the revocation on a route that
/// bypass never opens, and both after the expiry).
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_killed_changes_nothing_and_the_override_still_ends_on_time() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let mut gateways = start_fleet(&redis, 3, "").await;
    confirmed_by(&fleet_cli(&gateways[0], &["revoke", "--session", "sess_k", "--reason", "stolen laptop"]).await, 3);
    // Long enough for a restart during the outage to see it still running: that takes about
    // 2.5 s of it on a lightly loaded machine, and a CI machine may be three times slower.
    confirmed_by(&fleet_cli(&gateways[0], &["mode", "bypass", "--reason", "clerk outage", "--ttl", "15s"]).await, 3);
    let expires_at_ms = status(&gateways[0]).await["fleet"]["fleet_override"]["expires_at_ms"]
        .as_i64()
        .expect("the fleet override has expires_at_ms");

    redis.kill();
    for gw in &gateways {
        status_until(gw, "the gateway to see Redis gone", Duration::from_secs(10), |s| {
            s["fleet"]["link"] == "disconnected"
        })
        .await;
    }
    each_answers(&gateways, PROTECTED, None, bypassed, "still in bypass without Redis").await;
    each_answers(&gateways, CRITICAL, Some(&token_of("sess_k")), revoked, "still refusing sess_k").await;
    // Ready all the same (a Redis blip must not empty the Service), and the metrics say why not.
    for gw in &gateways {
        let ready = gw.admin("GET", "/readyz", None).await;
        assert_eq!(ready.status, 200, "/readyz without Redis: {}", ready.body);
        let metrics = gw.admin("GET", "/metrics", None).await.body;
        assert!(metrics.lines().any(|l| l == "clerkgate_fleet_connected 0"), "{metrics}");
    }

    // A restart while Redis is away: the state comes from fleet.json.
    let first = gateways.remove(0);
    gateways.insert(0, restart(first).await);
    assert!(
        now_ms() < expires_at_ms,
        "the restart took until after the bypass's expiry, so it cannot show the bypass persisted; raise the ttl"
    );
    let s = status(&gateways[0]).await;
    assert_eq!(s["fleet"]["link"], "disconnected", "{s}");
    assert_eq!((s["mode"]["mode"].as_str(), s["mode"]["source"].as_str()), (Some("bypass"), Some("fleet")), "{s}");
    each_answers(&gateways[..1], PROTECTED, None, bypassed, "in bypass after its restart without Redis").await;
    each_answers(&gateways[..1], CRITICAL, Some(&token_of("sess_k")), revoked, "refusing sess_k after its restart")
        .await;
    each_answers(&gateways[..1], CRITICAL, Some(&token_of("sess_ok")), signed_in, "accepting sess_ok").await;

    // The expiry, on each gateway's own timer: never before expires_at, and not much later.
    let ends = gateways.iter().map(|gw| async move {
        loop {
            let r = gw.get(PROTECTED, None).await;
            let seen_ms = now_ms();
            if refused(&r) {
                assert!(
                    seen_ms >= expires_at_ms,
                    "{}: the bypass ended {} ms before its expires_at",
                    gw.config_path().display(),
                    expires_at_ms - seen_ms
                );
                return seen_ms - expires_at_ms;
            }
            assert!(bypassed(&r), "neither bypass nor enforce: {} {}", r.status, r.body);
            assert!(seen_ms < expires_at_ms + 10_000, "the bypass outlived its expires_at by 10 s without Redis");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let late: Vec<i64> = join_all(ends).await;
    println!("fleet: the bypass ended without Redis {late:?} ms after its expires_at (3 gateways, one restarted)");
    for gw in &gateways {
        let s = status(gw).await;
        assert_eq!(s["mode"]["mode"], "enforce", "{s}");
        assert_eq!(s["fleet"]["link"], "disconnected", "{s}");
    }
    each_answers(&gateways, PROTECTED, Some(&token_of("sess_k")), revoked, "refusing sess_k after the expiry").await;
    each_answers(&gateways, PROTECTED, Some(&token_of("sess_ok")), signed_in, "accepting sess_ok").await;
}

/// Done when, 2: Redis restarted empty: the gateways notice the reset, keep the fleet's
/// revocations, drop the fleet override the store no longer has, and follow the next write.
#[tokio::test(flavor = "multi_thread")]
async fn a_redis_restarted_empty_keeps_revocations_and_drops_the_stale_override() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let gateways = start_fleet(&redis, 3, "").await;
    confirmed_by(&fleet_cli(&gateways[0], &["revoke", "--session", "sess_r", "--reason", "stolen laptop"]).await, 3);
    confirmed_by(&fleet_cli(&gateways[0], &["mode", "bypass", "--reason", "before the reset", "--ttl", "1m"]).await, 3);
    each_answers(&gateways, PROTECTED, None, bypassed, "in bypass").await;

    redis.restart().await;
    for gw in &gateways {
        let s = status_until(gw, "the gateway to notice the store reset", RECONNECT, |s| {
            s["fleet"]["store_resets"].as_u64() >= Some(1) && s["fleet"]["link"] == "connected"
        })
        .await;
        assert_eq!(s["fleet"]["fleet_override"], Value::Null, "the stale fleet override was kept: {s}");
        assert_eq!((s["mode"]["mode"].as_str(), s["mode"]["source"].as_str()), (Some("enforce"), Some("file")), "{s}");
    }
    each_answers(&gateways, PROTECTED, None, refused, "enforcing after the reset").await;
    each_answers(&gateways, PROTECTED, Some(&token_of("sess_r")), revoked, "still refusing sess_r").await;
    each_answers(&gateways, PROTECTED, Some(&token_of("sess_ok")), signed_in, "accepting sess_ok").await;

    // The first writes to the new store: followed by all, a kept revocation lifted with them.
    confirmed_by(&fleet_cli(&gateways[1], &["mode", "bypass", "--reason", "after the reset", "--ttl", "1m"]).await, 3);
    each_answers(&gateways, PROTECTED, None, bypassed, "in the new bypass").await;
    confirmed_by(&fleet_cli(&gateways[1], &["revoke", "--lift", "sess_r"]).await, 3);
    each_answers(&gateways, CRITICAL, Some(&token_of("sess_r")), signed_in, "accepting sess_r once lifted").await;
}

/// Done when, 2: `CLIENT KILL` of every connection in a loop while modes flip: every gateway
/// converges to the last written state and the fleet's epoch.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_kill_storm_while_modes_flip_converges_to_the_last_write() {
    let Some(redis) = RedisServer::start().await else { return };
    let gateways = start_fleet(&redis, 3, "").await;
    let config = Config::load(&gateways[0].config_path(), &Env::from_pairs(Vec::<(String, String)>::new()))
        .expect("the gateway's config");
    let StateBackend::Redis(redis_config) = &config.state.backend else { panic!("not the Redis backend") };

    const FLIPS: usize = 30;
    let done = AtomicBool::new(false);
    let killed = AtomicI64::new(0);
    let killer = async {
        while !done.load(Ordering::SeqCst) {
            killed.fetch_add(redis.client_kill_all().await, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    };
    let writer = async {
        let mut client = None;
        let mut last = None;
        for i in 0..FLIPS {
            let now = now_ms();
            let mode = if i % 2 == 0 { Mode::Grace } else { Mode::Bypass };
            let setting = ModeSetting {
                mode,
                source: ModeSource::Fleet,
                reason: format!("flip {i}"),
                actor: "test:storm".into(),
                since_ms: now,
                expires_at_ms: Some(now + 60_000),
            };
            let audit =
                AuditEvent::new(now, "test:storm", Action::ModeSet, Value::Null, json!(setting), &setting.reason);
            let change = Change::SetOverride(setting.clone());
            // Its own connection is killed too: connect again and write again until it is
            // written (a write whose answer was lost may land twice; the last one counts).
            let mut tries = 0;
            loop {
                tries += 1;
                assert!(tries < 200, "flip {i} could not be written in 200 tries");
                if client.is_none() {
                    client = FleetClient::connect(redis_config, None, None, "test:storm").await.ok();
                }
                let Some(c) = client.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                match c.write(&change, &audit).await {
                    Ok(_) => break,
                    Err(_) => client = None,
                }
            }
            last = Some(setting);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        done.store(true, Ordering::SeqCst);
        last.expect("a last write")
    };
    let ((), last) = tokio::join!(killer, writer);
    let kills = killed.load(Ordering::SeqCst);
    assert!(kills >= 10, "the storm dropped only {kills} connections");

    let epoch: u64 = redis.cli(&["GET", &key("epoch")]).await.parse().expect("the fleet's epoch");
    assert!(epoch >= FLIPS as u64, "epoch {epoch} after {FLIPS} writes");
    let started = Instant::now();
    for gw in &gateways {
        let s = status_until(gw, "the gateway to converge to the last write", RECONNECT, |s| {
            s["fleet"]["epoch"].as_u64() == Some(epoch) && s["fleet"]["link"] == "connected"
        })
        .await;
        assert_eq!((s["mode"]["mode"].as_str(), s["mode"]["source"].as_str()), (Some("bypass"), Some("fleet")), "{s}");
        assert_eq!(s["mode"]["reason"].as_str(), Some(last.reason.as_str()), "{s}");
    }
    println!(
        "fleet: {FLIPS} flips under a CLIENT KILL storm ({kills} connections dropped): all 3 gateways at epoch \
         {epoch} and {:?} {} ms after the storm",
        last.reason,
        started.elapsed().as_millis()
    );
    each_answers(&gateways, PROTECTED, None, bypassed, "in the last bypass").await;
}

/// Done when, 4: `fleet status` shows a gateway that stopped acknowledging (SIGSTOP) as lagging
/// after three heartbeats, exit 4, the others ok; once it runs again, all are ok.
#[tokio::test(flavor = "multi_thread")]
async fn fleet_status_shows_a_stopped_gateway_as_lagging() {
    let Some(redis) = RedisServer::start().await else { return };
    let gateways = start_fleet(&redis, 3, "").await;
    let fleet_status = || async {
        let out = fleet_cli(&gateways[0], &["fleet", "status", "--json"]).await;
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("fleet status --json ({e}): {}\n{}", text(&out.stdout), text(&out.stderr)));
        let lagging = |id: &str| {
            v["gateways"]
                .as_array()
                .and_then(|g| g.iter().find(|m| m["gateway_id"] == id))
                .map(|m| m["lagging"].clone())
        };
        let states: Vec<Option<Value>> = ["gw-1", "gw-2", "gw-3"].iter().map(|id| lagging(id)).collect();
        (out.status.code(), states, v)
    };
    let (code, states, v) = fleet_status().await;
    assert_eq!(code, Some(0), "{v}");
    assert!(states.iter().all(|s| s.as_ref() == Some(&Value::Null)), "every gateway ok: {v}");

    gateways[2].signal("-STOP");
    let stopped_at = Instant::now();
    let v = support::eventually("fleet status to call gw-3 lagging", Duration::from_secs(20), || async {
        let (code, states, v) = fleet_status().await;
        let lagging = states[2].as_ref().and_then(Value::as_str).is_some_and(|l| l.starts_with("no report for"));
        (code == Some(4) && lagging).then_some((states, v))
    })
    .await;
    let (states, v) = v;
    println!("fleet: gw-3 (SIGSTOP) shown lagging {} ms after it stopped", stopped_at.elapsed().as_millis());
    assert_eq!(states[..2], [Some(Value::Null), Some(Value::Null)], "the others are ok: {v}");

    let out = fleet_cli(&gateways[0], &["fleet", "status"]).await;
    assert!(text(&out.stdout).contains("LAGGING: no report for"), "{}", text(&out.stdout));

    // Any gateway's admin API shows the same fleet (`GET /fleet`, read with its own user).
    let r = gateways[1].admin("GET", "/fleet", None).await;
    assert_eq!(r.status, 200, "GET /fleet: {}", r.body);
    let fleet = r.json();
    let gw3 = fleet["gateways"].as_array().and_then(|g| g.iter().find(|m| m["gateway_id"] == "gw-3")).cloned();
    assert!(gw3.is_some_and(|m| m["lagging"].is_string()), "{fleet}");
    // So does the console: every gateway, its mode and its lag.
    let page = gateways[1].admin("GET", "/console/state", None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let row = page.body.split("<tr").find(|r| r.contains("<td>gw-3</td>")).unwrap_or_default().to_string();
    assert!(row.starts_with(" class=\"lagging\"") && row.contains("no report for"), "{}", page.body);

    gateways[2].signal("-CONT");
    support::eventually("every gateway ok again", Duration::from_secs(20), || async {
        let (code, states, _) = fleet_status().await;
        (code == Some(0) && states.iter().all(|s| s.as_ref() == Some(&Value::Null))).then_some(())
    })
    .await;
}

/// The documented rule for a local change during an outage: it applies to that gateway only,
/// shows source `admin`, is audited (and copied to the fleet's audit stream once Redis is
/// back); Redis returning does not undo it nor spread it; a newer fleet override takes over.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_change_during_an_outage_stays_local_until_a_newer_fleet_override() {
    let Some(mut redis) = RedisServer::start().await else { return };
    let mut gateways = start_fleet(&redis, 2, "").await;
    redis.kill();
    for gw in &gateways {
        status_until(gw, "the gateway to see Redis gone", Duration::from_secs(10), |s| {
            s["fleet"]["link"] == "disconnected"
        })
        .await;
    }

    let admin = gateways[0].admin_addr.to_string();
    let out =
        cli(&gateways[0], &["mode", "grace", "--reason", "local drill", "--ttl", "5m", "--local", "--admin", &admin])
            .await;
    assert!(out.status.success(), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let s = status(&gateways[0]).await;
    assert_eq!((s["mode"]["mode"].as_str(), s["mode"]["source"].as_str()), (Some("grace"), Some("admin")), "{s}");
    assert_eq!(s["fleet"]["local_override"]["reason"], "local drill", "{s}");
    assert!(s["fleet"]["audit_buffered"].as_u64() >= Some(1), "the record waits for Redis: {s}");
    let s = status(&gateways[1]).await;
    assert_eq!(s["mode"]["mode"], "enforce", "the other gateway is not touched: {s}");
    let audited = gateways[0].audit_file();
    assert!(
        audited.iter().any(|e| e["action"] == "mode.set" && e["reason"] == "local drill"),
        "the local change is in the gateway's audit.jsonl: {audited:?}"
    );
    // Restarted during the outage: the local override and the waiting record are still there.
    let first = gateways.remove(0);
    gateways.insert(0, restart(first).await);
    let s = status(&gateways[0]).await;
    assert_eq!((s["mode"]["mode"].as_str(), s["mode"]["source"].as_str()), (Some("grace"), Some("admin")), "{s}");
    assert_eq!(s["fleet"]["link"], "disconnected", "{s}");
    assert!(s["fleet"]["audit_buffered"].as_u64() >= Some(1), "the record still waits for Redis: {s}");

    redis.restart().await;
    let s = status_until(&gateways[0], "the gateway back on Redis with its audit copied", RECONNECT, |s| {
        s["fleet"]["link"] == "connected" && s["fleet"]["audit_buffered"] == 0
    })
    .await;
    assert_eq!((s["mode"]["mode"].as_str(), s["mode"]["source"].as_str()), (Some("grace"), Some("admin")), "{s}");
    status_until(&gateways[1], "the other gateway back on Redis", RECONNECT, |s| s["fleet"]["link"] == "connected")
        .await;
    assert_eq!(redis.cli(&["GET", &key("mode")]).await, "(nil)", "a local change is never written to the fleet");
    let s = status(&gateways[1]).await;
    assert_eq!(s["mode"]["mode"], "enforce", "{s}");
    let stream = redis.cli(&["XRANGE", &key("audit"), "-", "+"]).await;
    assert!(stream.contains("local drill") && stream.contains("gw-1"), "the fleet's audit stream: {stream}");

    confirmed_by(&fleet_cli(&gateways[1], &["mode", "bypass", "--reason", "fleet takes over", "--ttl", "1m"]).await, 2);
    for gw in &gateways {
        let s = status(gw).await;
        assert_eq!((s["mode"]["mode"].as_str(), s["mode"]["source"].as_str()), (Some("bypass"), Some("fleet")), "{s}");
    }
    each_answers(&gateways, PROTECTED, None, bypassed, "in the fleet's bypass").await;
}

/// Least privilege: gateways run as the restricted user of deploy/k8s/fleet/redis-acl.md and
/// follow a change the operator's user writes; the gateways' user cannot write the mode, not
/// through the CLI and not by hand.
#[tokio::test(flavor = "multi_thread")]
async fn gateways_on_the_restricted_user_follow_the_operators_writes() {
    let Some(redis) = RedisServer::start().await else { return };
    for line in acl_lines() {
        let words: Vec<&str> = line.iter().map(String::as_str).collect();
        assert_eq!(redis.cli(&words).await, "OK", "{}", line.join(" "));
    }
    let secrets = tempfile::tempdir().expect("tempdir");
    let gw_password = secrets.path().join("gw-password");
    let op_password = secrets.path().join("operator-password");
    std::fs::write(&gw_password, "gw-test-password\n").expect("write");
    std::fs::write(&op_password, "op-test-password\n").expect("write");
    let extra =
        format!("username = \"clerkgate-gw\"\npassword_file = {}", toml_str(&gw_password.display().to_string()));
    // Started and reported: the gateways' user may read the state and write its acks.
    let gateways = start_fleet(&redis, 2, &extra).await;

    // The config's own user is the gateways': the fleet refuses the write, nothing changes.
    let out = fleet_cli(&gateways[0], &["mode", "bypass", "--reason", "from a pod", "--ttl", "1m"]).await;
    assert_eq!(out.status.code(), Some(1), "{}\n{}", text(&out.stdout), text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("the ACL user may not do this") && stderr.contains("redis-acl.md"), "{stderr}");
    assert_eq!(redis.cli(&["GET", &key("mode")]).await, "(nil)");
    let mut as_gateway = redis.connect_as("clerkgate-gw", "gw-test-password").await.expect("connect as clerkgate-gw");
    let reply = run(&mut as_gateway, &["SET", &key("mode"), r#"{"mode":"bypass"}"#]).await;
    assert!(reply.starts_with("(error) NOPERM"), "{reply}");
    each_answers(&gateways, PROTECTED, None, refused, "still enforcing").await;

    let op_file = op_password.display().to_string();
    let operator = ["--redis-user", "clerkgate-operator", "--redis-password-file", op_file.as_str()];
    let mut args = vec!["mode", "bypass", "--reason", "operator drill", "--ttl", "1m"];
    args.extend(operator);
    confirmed_by(&fleet_cli(&gateways[0], &args).await, 2);
    each_answers(&gateways, PROTECTED, None, bypassed, "in the operator's bypass").await;
    // A wrong operator password: nothing changes, and the CLI says what to check.
    let wrong = secrets.path().join("wrong-password");
    std::fs::write(&wrong, "not-the-password\n").expect("write");
    let wrong = wrong.display().to_string();
    let args = ["mode", "enforce", "--redis-user", "clerkgate-operator", "--redis-password-file", wrong.as_str()];
    let out = fleet_cli(&gateways[0], &args).await;
    assert_eq!(out.status.code(), Some(1), "{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).contains("--redis-password-file"), "{}", text(&out.stderr));
    each_answers(&gateways, PROTECTED, None, bypassed, "still in the operator's bypass").await;

    let mut args = vec!["revoke", "--session", "sess_op", "--reason", "operator drill"];
    args.extend(operator);
    confirmed_by(&fleet_cli(&gateways[0], &args).await, 2);
    each_answers(&gateways, CRITICAL, Some(&token_of("sess_op")), revoked, "refusing sess_op").await;
    for gw in &gateways {
        let s = status(gw).await;
        assert_eq!(
            (s["mode"]["source"].as_str(), s["fleet"]["link"].as_str()),
            (Some("fleet"), Some("connected")),
            "{s}"
        );
    }
}

/// With the file backend there is no fleet to list: `GET /fleet` says so (404 `no_fleet`), and
/// `/status` has no `fleet` part.
#[tokio::test]
async fn a_gateway_on_the_file_backend_is_a_fleet_of_one() {
    let gw = support::gateway().jwt_key().start().await;
    let r = gw.admin("GET", "/fleet", None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["error"], "no_fleet", "{}", r.body);
    let status = gw.admin("GET", "/status", None).await.json();
    assert!(status.get("fleet").is_none(), "{status}");
}

/// What belongs to the fleet is not undone through one gateway: lifting a fleet revocation, or
/// clearing an override when the one in force is the fleet's, is refused (422, saying who can)
/// and changes nothing there.
#[tokio::test(flavor = "multi_thread")]
async fn one_gateway_cannot_undo_what_the_fleet_decided() {
    let Some(redis) = RedisServer::start().await else { return };
    let gateways = start_fleet(&redis, 1, "").await;
    let gw = &gateways[0];
    confirmed_by(&fleet_cli(gw, &["revoke", "--session", "sess_f", "--reason", "leak"]).await, 1);
    confirmed_by(&fleet_cli(gw, &["mode", "bypass", "--reason", "clerk outage", "--ttl", "1m"]).await, 1);

    let lift = gw.admin("DELETE", "/revocations/sess_f", None).await;
    assert_eq!(lift.status, 422, "{}", lift.body);
    assert!(lift.body.contains("revoked for the whole fleet"), "{}", lift.body);
    let clear = gw.admin("PUT", "/mode", Some(json!({"mode": "enforce"}))).await;
    assert_eq!(clear.status, 422, "{}", clear.body);
    assert!(clear.body.contains("the fleet \\\"prod\\\"'s"), "{}", clear.body);

    let s = status(gw).await;
    assert_eq!((s["mode"]["mode"].as_str(), s["mode"]["source"].as_str()), (Some("bypass"), Some("fleet")), "{s}");
    assert!(gw.admin("GET", "/revocations", None).await.json()["sessions"]["sess_f"].is_object());
}
