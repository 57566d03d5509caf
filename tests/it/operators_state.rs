//! Issue #10, the state directory and refused reloads, through the real binary: a state
//! directory that cannot be written, or a state file that cannot be read or is not valid, stops
//! the start with the path, the problem and the fix (and `check-config` reports it under
//! `state.dir`); `run --discard-state` is the only way past a bad file, and it is audited; a
//! directory that becomes read-only while running shows in `/readyz` and `/status`, and a change
//! answers with the path and the OS error; a refused reload shows in `status`, and `reload` on a
//! bad file exits 2.
//!
//! Tests run as root, so file permissions stop nothing. A read-only directory is made for real:
//! a tmpfs mounted on it and remounted read-only (writes fail with EROFS, as on a pod with a
//! read-only root filesystem); where `mount` is not permitted, `chattr +i` (EPERM). An
//! unreadable file is a directory in its place (EISDIR).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::support::{self, binary_config, cli_in, eventually, run_until_exit, BinaryGateway, ADMIN_TOKEN};

/// How long a poll waits for the gateway to reach a state before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

/// A valid audit line, as an earlier run would have left it.
const OLD_AUDIT_LINE: &str = r#"{"time":"2026-01-01T00:00:00.000Z","time_ms":1767225600000,"actor":"timer","action":"mode.expired","before":null,"after":null,"reason":"drill"}"#;

/// A directory that can be made to refuse writes for real, even to root.
struct Lockable {
    path: PathBuf,
    how: How,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum How {
    /// A tmpfs mounted on the directory, remounted read-only: EROFS.
    Tmpfs,
    /// `chattr +i` on the directory: EPERM.
    Immutable,
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

impl Lockable {
    /// Creates `path`, writable for now.
    fn new(path: &Path) -> Lockable {
        std::fs::create_dir_all(path).expect("create the state dir");
        let p = path.to_str().expect("a UTF-8 path");
        let how = if succeeds("mount", &["-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", p]) {
            How::Tmpfs
        } else if succeeds("chattr", &["-i", p]) {
            How::Immutable
        } else {
            panic!("these tests need root with either `mount` (a tmpfs) or `chattr` (+i) to make {p} read-only")
        };
        eprintln!("read-only state directory made with {how:?}");
        Lockable { path: path.to_path_buf(), how }
    }

    fn set(&self, read_only: bool) {
        let p = self.path.to_str().expect("a UTF-8 path");
        let (program, args): (&str, Vec<&str>) = match (self.how, read_only) {
            (How::Tmpfs, true) => ("mount", vec!["-o", "remount,ro", p]),
            (How::Tmpfs, false) => ("mount", vec!["-o", "remount,rw", p]),
            (How::Immutable, true) => ("chattr", vec!["+i", p]),
            (How::Immutable, false) => ("chattr", vec!["-i", p]),
        };
        assert!(succeeds(program, &args), "{program} {args:?} failed");
    }

    /// The OS error a write into the directory gets.
    fn os_error(&self) -> &'static str {
        match self.how {
            How::Tmpfs => "Read-only file system (os error 30)",
            How::Immutable => "Operation not permitted (os error 1)",
        }
    }
}

impl Drop for Lockable {
    fn drop(&mut self) {
        let p = self.path.to_str().unwrap_or_default();
        let _ = match self.how {
            How::Tmpfs => succeeds("umount", &["-l", p]),
            How::Immutable => succeeds("chattr", &["-i", p]),
        };
    }
}

/// `clerkgate check-config` on `dir/clerkgate.toml`, in `dir`.
fn check_config(dir: &Path) -> Output {
    cli_in(dir, &["check-config", "--config", "clerkgate.toml"], &[])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts a refused start: exit 2, and stderr names `path`, says `says`, and gives a fix.
fn assert_refused(out: &Output, path: &Path, says: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a bad state dir is exit 2; stderr:\n{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "stderr names {}:\n{stderr}", path.display());
    assert!(stderr.contains(says), "stderr says {says:?}:\n{stderr}");
    assert!(stderr.contains("fix:"), "stderr says what to do:\n{stderr}");
}

/// Asserts that `check-config` reports the problem under `state.dir`, naming `path`.
fn assert_check_config_reports(dir: &Path, path: &Path, says: &str) {
    let out = check_config(dir);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "check-config on a bad state dir is exit 2; stderr:\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.trim_start().starts_with("state.dir: ") && l.contains(&path.display().to_string()))
        .unwrap_or_else(|| panic!("no `state.dir:` problem naming {}:\n{stderr}", path.display()));
    assert!(line.contains(says), "{line}");
}

async fn readyz(gw: &BinaryGateway) -> (u16, Value) {
    let r = support::client().get(gw.admin_url("/readyz")).send().await.expect("GET /readyz");
    let status = r.status().as_u16();
    (status, r.json().await.expect("/readyz is JSON"))
}

async fn status(gw: &BinaryGateway) -> Value {
    let r = gw.admin("GET", "/status", None).await;
    assert_eq!(r.status, 200, "GET /status: {}", r.body);
    r.json()
}

fn admin_env() -> [(&'static str, &'static str); 1] {
    [("CLERKGATE_ADMIN_TOKEN", ADMIN_TOKEN)]
}

/// Runs an admin command of the real CLI against `gw`.
fn admin_cli(gw: &BinaryGateway, args: &[&str]) -> Output {
    let admin = format!("http://{}", gw.admin_addr);
    let mut all = args.to_vec();
    all.extend(["--admin", &admin]);
    cli_in(gw.dir.path(), &all, &admin_env())
}

// ---------------------------------------------------------------------------------------------
// At start
// ---------------------------------------------------------------------------------------------

/// Finding 1: a state file that cannot be read, or holds what the gateway cannot read, stops the
/// start — never an empty state in its place — and `check-config` reports it too.
#[tokio::test]
async fn an_unreadable_or_invalid_state_file_stops_the_start_and_check_config_names_it() {
    let up = support::upstream().await;
    let config = binary_config(up).text();
    let bad_audit = format!("{OLD_AUDIT_LINE}\nnot an event\n");
    let cases: [(&str, Option<&[u8]>, &str); 4] = [
        // A directory in the file's place cannot be read, even by root.
        ("state.json", None, "Is a directory (os error 21)"),
        ("state.json", Some(b"{\"admin_override\": tru"), "not valid"),
        ("keys.json", Some(b"[1, 2]"), "not valid"),
        ("audit.jsonl", Some(bad_audit.as_bytes()), "line 2"),
    ];
    for (file, spoil, says) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let path = state.join(file);
        match spoil {
            None => std::fs::create_dir(&path).expect("a directory in the file's place"),
            Some(bytes) => std::fs::write(&path, bytes).expect("write the bad file"),
        }
        let out = run_until_exit(dir.path(), &config, &[]);
        assert_refused(&out, &path, says);
        assert!(text(&out.stderr).contains("--discard-state"), "the fix names the flag:\n{}", text(&out.stderr));
        assert_check_config_reports(dir.path(), &path, says);
        match spoil {
            None => assert!(path.is_dir(), "{file} is left as it was"),
            Some(bytes) => assert_eq!(std::fs::read(&path).expect("read"), bytes, "{file} is left as it was"),
        }
    }
}

/// Finding 2: a read-only state directory stops the start with its path and the OS error, as
/// does a state dir that is a file; `check-config` reports both. A dir that does not exist yet
/// but can be made passes `check-config`, which leaves nothing behind.
#[tokio::test]
async fn a_read_only_state_directory_stops_the_start_and_check_config_names_it() {
    let up = support::upstream().await;
    let config = binary_config(up).text();

    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let lock = Lockable::new(&state);
    lock.set(true);
    let out = run_until_exit(dir.path(), &config, &[]);
    assert_refused(&out, &state, lock.os_error());
    assert_check_config_reports(dir.path(), &state, lock.os_error());
    drop(lock);

    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::write(&state, "a file where the state dir should be").expect("write");
    let out = run_until_exit(dir.path(), &config, &[]);
    assert_refused(&out, &state, "not a directory");
    assert_check_config_reports(dir.path(), &state, "not a directory");

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("clerkgate.toml"), &config).expect("write config");
    let out = check_config(dir.path());
    assert!(out.status.success(), "a state dir that can be made passes: {}", text(&out.stderr));
    assert!(!dir.path().join("state").exists(), "check-config leaves no state dir behind");
}

/// `run --discard-state` sets each bad file aside (kept beside it, byte for byte), starts, and
/// the audit log says what was discarded and why; the next start needs no flag.
#[tokio::test]
async fn discard_state_starts_and_the_audit_log_says_what_was_discarded() {
    let up = support::upstream().await;
    let config = binary_config(up).text();
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let bad_state = b"{\"revocations\": {\"sessions\": ".to_vec();
    let bad_audit = format!("{OLD_AUDIT_LINE}\n{{\"torn\n").into_bytes();
    std::fs::write(state.join("state.json"), &bad_state).expect("write");
    std::fs::write(state.join("audit.jsonl"), &bad_audit).expect("write");

    let gw = BinaryGateway::start_in_with_args(dir.clone(), &config, &["--discard-state"]);
    let events = gw.audit_file();
    assert_eq!(events.len(), 1, "a fresh audit log that starts with the discard: {events:#?}");
    let event = &events[0];
    assert_eq!(event["action"], "state.discarded");
    assert_eq!(event["actor"], "cli");
    let files = event["before"]["files"].as_array().unwrap_or_else(|| panic!("files: {event}"));
    for (name, kept) in [("state.json", &bad_state), ("audit.jsonl", &bad_audit)] {
        let path = state.join(name).display().to_string();
        let entry = files
            .iter()
            .find(|f| f["file"] == path.as_str())
            .unwrap_or_else(|| panic!("the event names {path}: {event}"));
        assert!(!entry["problem"].as_str().unwrap_or_default().is_empty(), "and why: {entry}");
        let kept_as = entry["kept_as"].as_str().unwrap_or_else(|| panic!("kept_as: {entry}"));
        assert!(kept_as.starts_with(&format!("{path}.discarded-")), "kept beside it: {kept_as}");
        assert_eq!(&std::fs::read(kept_as).expect("the kept copy"), kept, "kept byte for byte");
    }
    let r = gw.admin("GET", "/audit", None).await;
    assert!(r.body.contains("state.discarded"), "GET /audit shows it: {}", r.body);
    assert_eq!(gw.get("/api/orders", Some(&support::token())).await.status, 200, "it serves");
    gw.stop().await;

    let gw = BinaryGateway::start_in(dir.clone(), &config, &[]);
    assert_eq!(gw.audit_file().len(), 1, "nothing more to discard");
    gw.stop().await;
}

// ---------------------------------------------------------------------------------------------
// While running
// ---------------------------------------------------------------------------------------------

/// Finding 2, while running: a state dir that becomes read-only shows in `/readyz` (still 200:
/// the data plane works) and `/status`; `clerkgate mode bypass` fails naming the path and the OS
/// error; the log says it at ERROR; and once the dir is writable again, all of it clears.
#[tokio::test(flavor = "multi_thread")]
async fn a_state_directory_made_read_only_while_running_shows_and_mode_bypass_names_the_path() {
    let up = support::upstream().await;
    let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
    let state = dir.path().join("state");
    let lock = Lockable::new(&state);
    let gw = BinaryGateway::start_in(dir.clone(), &binary_config(up).text(), &[]);
    let state_text = state.display().to_string();

    let (code, body) = readyz(&gw).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["state"]["writable"], true, "{body}");
    assert_eq!(body["state"]["dir"], state_text.as_str(), "{body}");

    lock.set(true);
    let body = eventually("/readyz to say the state dir is not writable", DEADLINE, || async {
        let (code, body) = readyz(&gw).await;
        assert_eq!(code, 200, "readiness stays: the data plane works ({body})");
        (body["state"]["writable"] == false).then_some(body)
    })
    .await;
    let problem = body["state"]["problem"].as_str().unwrap_or_else(|| panic!("a problem: {body}"));
    assert!(problem.contains(&state_text) && problem.contains(lock.os_error()), "{problem}");
    assert_eq!(body["ready"], true, "{body}");

    let s = status(&gw).await;
    assert_eq!(s["state"]["writable"], false, "{s}");
    assert!(s["state"]["problem"].as_str().unwrap_or_default().contains(&state_text), "{s}");
    let out = admin_cli(&gw, &["status"]);
    let human = text(&out.stdout);
    assert!(human.contains("NOT WRITABLE") && human.contains(&state_text), "status says so:\n{human}");

    let out = admin_cli(&gw, &["mode", "bypass", "--reason", "outage drill", "--ttl", "5m"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "a change that cannot be recorded fails: {stderr}");
    assert!(
        stderr.contains(&state_text) && stderr.contains(lock.os_error()),
        "names the path and the error:\n{stderr}"
    );
    assert_eq!(status(&gw).await["mode"]["mode"], "enforce", "nothing changed");
    assert_eq!(gw.get("/api/orders", Some(&support::token())).await.status, 200, "the data plane works");
    gw.await_log("at ERROR naming the state path", |l| l.contains("\"level\":\"ERROR\"") && l.contains(&state_text))
        .await;

    lock.set(false);
    eventually("/readyz to say the state dir is writable again", DEADLINE, || async {
        (readyz(&gw).await.1["state"]["writable"] == true).then_some(())
    })
    .await;
    let out = admin_cli(&gw, &["mode", "bypass", "--reason", "outage drill", "--ttl", "5m"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    gw.stop().await;
    drop(lock);
}

// ---------------------------------------------------------------------------------------------
// Item 7: a refused reload
// ---------------------------------------------------------------------------------------------

/// A refused reload shows in `clerkgate status` (human and `--json`): when, by whom, every
/// problem, and that the config in force is the older one; `clerkgate reload` on a bad file
/// exits 2, like `check-config`.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_reload_shows_in_status_and_reload_exits_2() {
    let up = support::upstream().await;
    let cfg = binary_config(up);
    let gw = BinaryGateway::start(&cfg.text(), &[]);
    let hash = status(&gw).await["config"]["hash"].as_str().expect("hash").to_string();
    assert_eq!(status(&gw).await["last_reload"], Value::Null, "no reload yet");

    gw.write_config(&support::with_keys(&cfg.text(), "server", "bogus_key = 1"));
    let out = admin_cli(&gw, &["reload"]);
    assert_eq!(out.status.code(), Some(2), "a bad file is exit 2: {}", text(&out.stderr));
    assert!(text(&out.stderr).contains("server.bogus_key"), "{}", text(&out.stderr));

    let out = admin_cli(&gw, &["status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    let last = &s["last_reload"];
    assert_eq!(last["ok"], false, "{last}");
    assert!(last["actor"].as_str().is_some_and(|a| a.starts_with("admin:")), "{last}");
    assert!(last["at"].is_string(), "{last}");
    assert_eq!(last["problems"][0]["key"], "server.bogus_key", "{last}");
    assert_eq!(s["config"]["hash"], hash.as_str(), "the older config is in force");

    let out = admin_cli(&gw, &["status"]);
    let human = text(&out.stdout);
    let line = human.lines().find(|l| l.starts_with("reload")).unwrap_or_else(|| panic!("a reload line:\n{human}"));
    assert!(line.contains("REFUSED") && line.contains(&hash), "{line}");
    assert!(human.contains("server.bogus_key"), "the problems are listed:\n{human}");

    gw.write_config(&cfg.routes("default = \"protected\"\npublic = [\"/\", \"/later\"]").text());
    gw.signal("-HUP");
    let s = eventually("a good reload in /status", DEADLINE, || async {
        let s = status(&gw).await;
        (s["last_reload"]["ok"] == true).then_some(s)
    })
    .await;
    assert_eq!(s["last_reload"]["actor"], "signal");
    assert_eq!(s["last_reload"]["hash"], s["config"]["hash"]);
    assert_ne!(s["config"]["hash"], hash.as_str());
    let out = admin_cli(&gw, &["reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    gw.stop().await;
}
