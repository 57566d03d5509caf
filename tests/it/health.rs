//! Issue #11, items 2 and 3 and the unprivileged run: the health listener
//! (`server.health_listen`) serves `/healthz`, `/readyz` and `/metrics` and nothing else — no
//! admin endpoint, no data plane — and answers `/readyz` with 503 before a usable key set and
//! while draining; `clerkgate health [--ready]` exits 0 on a 200 and 1 otherwise, with one line
//! that says why; and the real binary runs as an unprivileged user (65532, the image's) with a
//! read-only working directory, writing only to its state directory.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use crate::support::{self, binary_config, cli_in, client, eventually, gateway, with_keys, BinaryGateway, Reply};
use crate::support::{JwksReply, JwksServer};

/// The image's user and group (the Dockerfile's `USER`, the manifests' `runAsUser`).
const NONROOT: u32 = 65532;

const DEADLINE: Duration = Duration::from_secs(20);

async fn get(url: String) -> Reply {
    Reply::from(client().get(url).send().await.expect("request")).await
}

/// `clerkgate health …` (`args` after the binary), off the runtime (the gateway may be in this process).
async fn probe(args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_in(Path::new("/"), &args, &[])
    })
    .await
    .expect("run clerkgate health")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A port on 127.0.0.1 that nothing listens on.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_listener_serves_health_readiness_and_metrics_and_nothing_else() {
    let gw = gateway().jwt_key().start_edited(|t| with_keys(&t, "server", "health_listen = \"127.0.0.1:0\"")).await;
    let health = gw.running().health_addr.expect("the health listener is on");
    assert_ne!(health, gw.running().admin_addr);
    assert_ne!(health, gw.addr());

    let healthz = get(format!("http://{health}/healthz")).await;
    assert_eq!((healthz.status, healthz.json()), (200, json!({"status": "ok"})));
    let readyz = get(format!("http://{health}/readyz")).await;
    assert_eq!(readyz.status, 200, "{}", readyz.body);
    assert_eq!(readyz.json()["ready"], true);
    // The same answer as the admin API's, from the same handler.
    let admin_readyz = get(gw.admin_url("/readyz")).await;
    assert_eq!(readyz.json(), admin_readyz.json());
    let metrics = get(format!("http://{health}/metrics")).await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("clerkgate_"), "{}", metrics.body);

    // No admin endpoint, even with the admin token; no data plane, even for a public route.
    let token = "test-admin-token-0123456789";
    for (method, path) in [
        ("GET", "/status"),
        ("GET", "/mode"),
        ("PUT", "/mode"),
        ("POST", "/reload"),
        ("POST", "/keys/refresh"),
        ("GET", "/revocations"),
        ("GET", "/audit"),
        ("GET", "/public/x"),
        ("GET", "/"),
    ] {
        let req = client()
            .request(method.parse().expect("method"), format!("http://{health}{path}"))
            .bearer_auth(token)
            .json(&json!({"mode": "bypass", "reason": "drill", "ttl": "1m"}));
        let reply = Reply::from(req.send().await.expect("request")).await;
        assert_eq!(reply.status, 404, "{method} {path}: {}", reply.body);
        assert_eq!(reply.json()["error"], "not_found");
        assert!(reply.header("x-clerk-auth-status").is_none(), "{method} {path} reached the data plane");
    }
    // Nothing changed: the mode is the file's.
    let mode = client().get(gw.admin_url("/mode")).bearer_auth(token).send().await.expect("mode");
    assert_eq!(Reply::from(mode).await.json()["source"], "file");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_listener_is_off_unless_configured() {
    let gw = gateway().jwt_key().start().await;
    assert_eq!(gw.running().health_addr, None);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_before_a_key_set_and_the_probe_says_why() {
    let jwks = JwksServer::start(JwksReply::Status(500, "down".into())).await;
    let gw = gateway().jwks(&jwks).start_edited(|t| with_keys(&t, "server", "health_listen = \"127.0.0.1:0\"")).await;
    let health = gw.running().health_addr.expect("health listener").to_string();

    let readyz = get(format!("http://{health}/readyz")).await;
    assert_eq!(readyz.status, 503, "{}", readyz.body);
    assert!(readyz.json()["why"].as_str().unwrap_or_default().contains("no key set loaded yet"), "{}", readyz.body);

    // Alive, not ready: the liveness probe passes and the readiness probe fails, saying why.
    let alive = probe(&["health", "--addr", &health]).await;
    assert!(alive.status.success(), "{}", stderr(&alive));
    let ready = probe(&["health", "--ready", "--addr", &health]).await;
    assert_eq!(ready.status.code(), Some(1));
    let line = stderr(&ready);
    assert_eq!(line.lines().count(), 1, "{line}");
    assert!(line.contains("not ready (503 Service Unavailable): no key set loaded yet"), "{line}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_draining_and_healthz_stays_up_until_the_drain_is_over() {
    let (upstream, arrived, release) = support::held_upstream().await;
    let gw = gateway()
        .jwt_key()
        .upstream(upstream)
        .start_edited(|t| with_keys(&t, "server", "health_listen = \"127.0.0.1:0\""))
        .await;
    let health = gw.running().health_addr.expect("health listener");

    let in_flight = tokio::spawn(client().get(gw.url("/public/held")).send());
    tokio::time::timeout(DEADLINE, arrived).await.expect("the request reaches the upstream").expect("arrived");

    let stopping = tokio::spawn(gw.stop());
    let draining = eventually("/readyz to answer 503 while draining", DEADLINE, || async {
        let r = Reply::from(client().get(format!("http://{health}/readyz")).send().await.ok()?).await;
        (r.status == 503).then_some(r)
    })
    .await;
    assert_eq!(draining.json()["why"], "the gateway is shutting down: in-flight requests are draining");
    assert_eq!(draining.json()["ready"], false);
    let healthz = get(format!("http://{health}/healthz")).await;
    assert_eq!(healthz.status, 200, "the process is alive while it drains");

    // Let the upstream answer: the request completes, the drain ends, and so does the health
    // listener.
    let _ = release.send(());
    let answer = in_flight.await.expect("request task").expect("the in-flight request completes");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.expect("body"), "held");
    tokio::time::timeout(DEADLINE, stopping).await.expect("shutdown ends").expect("shutdown task");
    assert!(tokio::net::TcpStream::connect(health).await.is_err(), "the health listener outlived the shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_command_needs_a_listener_and_says_where_it_looked() {
    let closed = closed_port().to_string();
    let out = probe(&["health", "--ready", "--addr", &closed]).await;
    assert_eq!(out.status.code(), Some(1));
    let line = stderr(&out);
    assert_eq!(
        line.trim_end(),
        format!(
            "clerkgate health: http://{closed}/readyz: connection refused: is the gateway running? \
             is server.health_listen set to {closed}?"
        )
    );
    // The admin API is no health listener for /healthz's sake, but a data-plane port is
    // not either: a 404 or a 401 is a failure, never a pass.
    let gw = gateway().jwt_key().start().await;
    let out = probe(&["health", "--addr", &gw.addr().to_string()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("401"), "{}", stderr(&out));
    gw.stop().await;
}

/// Every file under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let e = e.expect("entry");
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(e.path());
            }
            out.insert(e.path(), (meta.len(), meta.modified().expect("mtime")));
        }
    }
    out
}

/// The health address from the binary's "clerkgate listening" line.
fn health_addr(gw: &BinaryGateway) -> SocketAddr {
    gw.logs()
        .iter()
        .filter(|l| l.contains("clerkgate listening"))
        .find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            let field = v.get("health_addr").or_else(|| v.get("fields")?.get("health_addr"))?;
            field.as_str()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no health_addr in the listening line:\n{}", gw.logs().join("\n")))
}

/// The effective user id of a process, from `/proc`.
fn euid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).expect("a Uid line");
    uids.split_whitespace().nth(1).and_then(|u| u.parse().ok()).expect("an effective uid")
}

/// The command that runs the binary as 65532:65532 with no supplementary groups. The binary
/// must be readable and executable by that user: where its path is not (a checkout under a
/// private directory), a copy in a directory of its own is used.
fn as_nonroot(scratch: &Path) -> Vec<OsString> {
    let setpriv = |binary: &Path| -> Vec<OsString> {
        let mut cmd: Vec<OsString> =
            ["setpriv", "--reuid", "65532", "--regid", "65532", "--clear-groups"].map(OsString::from).to_vec();
        cmd.push(binary.into());
        cmd
    };
    let reaches = |cmd: &[OsString]| {
        std::process::Command::new(&cmd[0]).args(&cmd[1..]).arg("--version").output().is_ok_and(|o| o.status.success())
    };
    let direct = setpriv(Path::new(support::binary()));
    if reaches(&direct) {
        return direct;
    }
    let copy = scratch.join("clerkgate");
    std::fs::copy(support::binary(), &copy).expect("copy the binary");
    std::fs::set_permissions(scratch, std::fs::Permissions::from_mode(0o755)).expect("chmod scratch");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod binary");
    let via_copy = setpriv(&copy);
    assert!(reaches(&via_copy), "user {NONROOT} cannot run {} or a copy of it", support::binary());
    via_copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_unprivileged_with_a_read_only_working_dir_and_writes_only_its_state_dir() {
    let upstream = support::upstream().await;
    let root = rustix::process::geteuid().is_root();
    let work = Arc::new(tempfile::tempdir().expect("working dir"));
    let state = tempfile::tempdir().expect("state dir");
    let scratch = tempfile::tempdir().expect("scratch dir");
    let state_dir = state.path().join("state");

    let text = binary_config(upstream)
        .text()
        .replace("dir = \"state\"", &format!("dir = {}", support::toml_str(&state_dir.display().to_string())));
    let text = with_keys(&text, "server", "health_listen = \"127.0.0.1:0\"");
    assert!(text.contains(&state_dir.display().to_string()), "{text}");
    std::fs::write(work.path().join("clerkgate.toml"), &text).expect("write config");
    std::fs::set_permissions(work.path().join("clerkgate.toml"), std::fs::Permissions::from_mode(0o444))
        .expect("chmod config");
    // Read-only for everyone, the owner too: as root the test drops to 65532, who owns nothing
    // here; otherwise the mode bits alone stop the owner's writes.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o555)).expect("chmod working dir");
    let program = if root {
        // The state directory is the one place the unprivileged user may write, as an emptyDir
        // or a StateDirectory= gives it.
        std::os::unix::fs::chown(state.path(), Some(NONROOT), Some(NONROOT)).expect("chown state");
        as_nonroot(scratch.path())
    } else {
        vec![support::binary().into()]
    };
    let before = snapshot(work.path());

    let gw = BinaryGateway::start_in_as(work.clone(), &text, &[], program);
    if root {
        assert_eq!(euid(gw.child.id()), NONROOT, "the gateway runs as the image's user");
    }
    let health = health_addr(&gw);

    // It serves: a request with a token reaches the upstream with the identity.
    let reply = gw.get("/private", Some(&support::token())).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.echoed().one("x-clerk-user-id"), Some("user_test"));
    let readyz = get(format!("http://{health}/readyz")).await;
    assert_eq!(readyz.status, 200, "{}", readyz.body);
    assert_eq!(readyz.json()["state"]["writable"], true, "{}", readyz.body);

    // The exec probe passes against it, and fails against a closed port.
    let ok = probe(&["health", "--ready", "--addr", &health.to_string()]).await;
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), format!("http://{health}/readyz: 200 OK"));
    let closed = probe(&["health", "--ready", "--addr", &closed_port().to_string()]).await;
    assert_eq!(closed.status.code(), Some(1), "{}", stderr(&closed));

    // A mode change is audited into the state directory.
    let set = gw.admin("PUT", "/mode", Some(json!({"mode": "bypass", "reason": "read-only drill", "ttl": "5m"}))).await;
    assert_eq!(set.status, 200, "{}", set.body);
    let audit = std::fs::read_to_string(state_dir.join("audit.jsonl")).expect("audit.jsonl in state.dir");
    let events: Vec<Value> = audit.lines().map(|l| serde_json::from_str(l).expect("audit JSON")).collect();
    assert!(
        events.iter().any(|e| e["action"] == "mode.set" && e["reason"] == "read-only drill"),
        "no mode.set event in:\n{audit}"
    );
    eventually("the gateway to answer in bypass", DEADLINE, || async {
        (gw.get("/private", None).await.status == 200).then_some(())
    })
    .await;
    gw.stop().await;

    // Nothing else was written: the working directory is as it was.
    assert_eq!(snapshot(work.path()), before, "the gateway wrote into its working directory");
    if root {
        for (path, _) in snapshot(&state_dir) {
            let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&path).expect("metadata"));
            assert_eq!(owner, NONROOT, "{} was written by another user", path.display());
        }
    }
    // Let the temp dirs be removed by their owner.
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod back");
}

/// The health listener is reachable from the pod network, so it holds its connections to the
/// data plane's time limits: one that never sends a request is closed after
/// `server.header_read_timeout`, and the listener still answers afterwards.
#[tokio::test]
async fn the_health_listener_cuts_off_silent_connections() {
    let gw = gateway()
        .jwt_key()
        .start_edited(|t| with_keys(&t, "server", "health_listen = \"127.0.0.1:0\"\nheader_read_timeout = \"300ms\""))
        .await;
    let health = gw.running().health_addr.expect("the health listener is on");
    let mut silent = tokio::net::TcpStream::connect(health).await.expect("connect");
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "a silent connection to the health listener stays open: {closed:?}"
    );
    assert_eq!(get(format!("http://{health}/healthz")).await.status, 200);
    gw.stop().await;
}
