//! Issue #13 item 6, `clerkgate incident-report`: after a scripted incident through the real
//! binary (bypass on with a reason and a TTL, requests served in bypass, revocations, a reload,
//! a refused reload, bypass off), the report holds each of those events with its time and actor,
//! the duration and the action items, in Markdown and in JSON; `--out` writes the file; an empty
//! window says so; a malformed audit line and a record this build does not know (a triage run)
//! are reported, never a panic; with the gateway stopped, the log is read from `state.dir`.
//!
//! The gateway is `clerkgate run`, and every command a child process with a clean environment,
//! as an operator's shell would run them.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use clerkgate::ops::report::{human_seconds, rfc3339};
use serde_json::Value;

use crate::support::{self, binary_config, BinaryGateway, ADMIN_TOKEN};

/// Runs `clerkgate args…` in `cwd` with only `PATH` and the admin token set.
async fn cli_in(cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clerkgate"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("CLERKGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .current_dir(cwd)
        .args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run the clerkgate CLI")).await.expect("join")
}

/// Runs a command against `gw` (`--admin` its address), from an empty directory.
async fn cli(gw: &BinaryGateway, args: &[&str]) -> Output {
    let admin = gw.admin_addr.to_string();
    let mut full = args.to_vec();
    full.extend(["--admin", admin.as_str()]);
    let empty = tempfile::tempdir().expect("tempdir");
    cli_in(empty.path(), &full).await
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts `code` and returns stdout.
fn exited(out: &Output, code: i32, what: &str) -> String {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}:\nstdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// An audit line's time as the report prints it: RFC 3339 in whole seconds.
fn seconds(event: &Value) -> String {
    let time = event["time"].as_str().expect("time");
    format!("{}Z", &time[..19])
}

/// The scripted incident. Returns the audit events it wrote.
async fn incident(gw: &BinaryGateway) -> Vec<Value> {
    exited(&cli(gw, &["mode", "bypass", "--reason", "INC-7 Clerk down", "--ttl", "30m"]).await, 0, "bypass on");
    for _ in 0..3 {
        let r = support::client().get(gw.url("/private")).send().await.expect("a request in bypass");
        assert_eq!(r.headers().get("x-auth-bypass").map(|v| v.to_str().unwrap_or("")), Some("true"));
    }
    exited(&cli(gw, &["revoke", "--user", "user_2bad", "--reason", "account takeover"]).await, 0, "revoke a user");
    exited(
        &cli(gw, &["revoke", "--session", "sess_2stolen", "--reason", "stolen laptop"]).await,
        0,
        "revoke a session",
    );
    exited(&cli(gw, &["reload"]).await, 0, "a good reload");
    let good = std::fs::read_to_string(gw.config_path()).expect("read config");
    gw.write_config(&format!("{good}\n[oops]\nkey = 1\n"));
    exited(&cli(gw, &["reload"]).await, 2, "a refused reload");
    gw.write_config(&good);
    exited(&cli(gw, &["mode", "enforce"]).await, 0, "bypass off");
    let events = gw.audit_file();
    let actions: Vec<&str> = events.iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(
        actions,
        ["mode.set", "revocation.add", "revocation.add", "config.reload", "config.reload_failed", "mode.cleared"]
    );
    events
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_after_a_scripted_incident_holds_each_event_its_duration_and_action_items() {
    let gw = BinaryGateway::start(&binary_config(support::upstream().await).text(), &[]);
    let events = incident(&gw).await;
    let started = events[0]["time_ms"].as_i64().expect("time_ms");
    let ended = events[5]["time_ms"].as_i64().expect("time_ms");

    // Markdown: each event in the timeline with its time and actor, the duration, the items.
    let md = exited(&cli(&gw, &["incident-report"]).await, 0, "incident-report");
    for e in &events {
        let row = format!(
            "| {} | {} | {}: ",
            seconds(e),
            e["actor"].as_str().unwrap_or(""),
            e["action"].as_str().unwrap_or("")
        );
        assert!(md.contains(&row), "no timeline row {row:?} in:\n{md}");
    }
    let duration = human_seconds((ended - started) / 1000);
    for expected in [
        format!("| Start | {} |", seconds(&events[0])),
        format!("| End | {} |", seconds(&events[5])),
        format!("| Duration | {duration} (from the first change away from enforce"),
        "| Category | not recorded |".to_string(),
        "INC-7 Clerk down".to_string(),
        "mode.set: enforce → bypass (until ".to_string(),
        "- Requests served in bypass (unverified): 3".to_string(),
        "1 session(s), 1 user(s), 0 issued-before cut-off(s) revoked at the gateway".to_string(),
        "1 went through, 1 refused.".to_string(),
        "- [ ] Bypass was in force for".to_string(),
        "was refused (oops); no reload went through after it".to_string(),
        "revoked at the gateway only".to_string(),
        "- [ ] No triage record in the window".to_string(),
        "## Root cause\n\n_To be written by a person._".to_string(),
    ] {
        assert!(md.contains(&expected), "no {expected:?} in:\n{md}");
    }

    // JSON: the same, for tools.
    let json: Value =
        serde_json::from_str(&exited(&cli(&gw, &["incident-report", "--format", "json"]).await, 0, "json"))
            .expect("--format json is JSON");
    assert_eq!(json["incident"]["duration_seconds"], (ended - started) / 1000, "{json}");
    assert_eq!(json["incident"]["ongoing"], false);
    assert_eq!(json["root_cause"], Value::Null);
    let timeline = json["timeline"].as_array().expect("timeline");
    assert_eq!(timeline.len(), events.len(), "{json}");
    for (t, e) in timeline.iter().zip(&events) {
        assert_eq!((&t["time_ms"], &t["actor"], &t["action"]), (&e["time_ms"], &e["actor"], &e["action"]));
    }
    let bypass_on = &json["mode_changes"][0];
    assert_eq!(
        (&bypass_on["from"], &bypass_on["to"], &bypass_on["reason"]),
        (&"enforce".into(), &"bypass".into(), &"INC-7 Clerk down".into())
    );
    let ttl_end = events[0]["after"]["expires_at_ms"].as_i64().expect("expires_at_ms");
    assert_eq!(bypass_on["expires_at"], Value::from(rfc3339(ttl_end)));
    assert_eq!(bypass_on["lasted_seconds"], (ended - started) / 1000);
    assert_eq!((json["revocations"]["sessions"].as_u64(), json["revocations"]["users"].as_u64()), (Some(1), Some(1)));
    assert_eq!((json["reloads"]["ok"].as_u64(), json["reloads"]["failed"].as_u64()), (Some(1), Some(1)));
    assert_eq!(json["requests"]["bypass"], 3);
    assert_eq!(json["requests"]["grace"], 0);
    assert!(json["action_items"].as_array().is_some_and(|a| a.len() >= 4), "{json}");

    // --out writes the file and nothing to stdout.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("reports/INC-7.md");
    let out = cli(&gw, &["incident-report", "--out", file.to_str().expect("utf-8 path")]).await;
    assert_eq!(exited(&out, 0, "--out"), "");
    assert!(text(&out.stderr).contains("wrote "), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(&file).expect("the report file");
    // Two runs differ only in when they ran: the generation time, and the window's end when
    // the incident ended less than 30m ago (the window then ends now).
    let without_generated = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with("| Generated |") && !l.starts_with("| Window |"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(without_generated(&written), without_generated(&md));

    // An empty window says so; a window that ends before it starts is refused with exit 2.
    let empty = exited(
        &cli(&gw, &["incident-report", "--since", "2000-01-01T00:00:00Z", "--until", "2000-01-02T00:00:00Z"]).await,
        0,
        "an empty window",
    );
    assert!(empty.contains("No audit events between 2000-01-01T00:00:00Z and 2000-01-02T00:00:00Z."), "{empty}");
    let out = cli(&gw, &["incident-report", "--since", "30m", "--until", "1h"]).await;
    exited(&out, 2, "--until before --since");
    assert!(text(&out.stderr).contains("--until is before --since"), "{}", text(&out.stderr));
    let out = cli(&gw, &["incident-report", "--since", "yesterday"]).await;
    exited(&out, 2, "a bad TIME");
    assert!(text(&out.stderr).contains("--since: \"yesterday\" is neither a duration"), "{}", text(&out.stderr));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_lines_and_unknown_records_are_reported_and_a_stopped_gateway_is_read_from_its_state_dir() {
    let gw = BinaryGateway::start(&binary_config(support::upstream().await).text(), &[]);
    let events = incident(&gw).await;
    // A torn write, and a triage record as a later clerkgate writes it, amid the incident.
    let at = events[1]["time_ms"].as_i64().expect("time_ms") + 1;
    let triage = serde_json::json!({
        "time": "t", "time_ms": at, "actor": "cli", "action": "triage.run",
        "before": null, "after": {"category": "clerk-outage", "severity": "SEV2"}, "reason": ""
    });
    let mut log = std::fs::OpenOptions::new().append(true).open(gw.state_dir().join("audit.jsonl")).expect("open");
    write!(log, "{{\"time\": \"cut short\n{triage}\n").expect("append");
    drop(log);

    let md = exited(&cli(&gw, &["incident-report"]).await, 0, "through the admin API");
    for expected in [
        "- audit.jsonl line 7 skipped: not JSON",
        "| Category | clerk-outage (triage at ",
        "| Severity | SEV2 (triage at ",
        "| cli | triage.run: ",
        "- [ ] 1 line(s) of the audit log could not be read",
    ] {
        assert!(md.contains(expected), "no {expected:?} in:\n{md}");
    }
    assert!(!md.contains("No triage record"), "{md}");
    let audit = exited(&cli(&gw, &["audit"]).await, 0, "clerkgate audit");
    assert!(audit.contains("(audit.jsonl line 7 skipped: not JSON"), "{audit}");

    // Stopped: --state-dir reads the file; --config finds state.dir in the config (relative to
    // the working directory, as for `run`); counters are not available, and the report says so.
    let dir = gw.dir.clone();
    gw.stop().await;
    let state = dir.path().join("state");
    let md = exited(
        &cli_in(dir.path(), &["incident-report", "--state-dir", state.to_str().expect("utf-8")]).await,
        0,
        "--state-dir",
    );
    assert!(md.contains("- audit.jsonl line 7 skipped: not JSON") && md.contains("| Severity | SEV2"), "{md}");
    assert!(md.contains("- Requests served in bypass and in grace: not available"), "{md}");
    let md = exited(&cli_in(dir.path(), &["incident-report", "--config", "clerkgate.toml"]).await, 0, "--config");
    assert!(md.contains("No gateway answered (cannot reach the admin API at "), "{md}");
    assert!(md.contains("| cli | triage.run: ") && md.contains("INC-7 Clerk down"), "{md}");

    // A directory that holds no audit log is named, with what to do.
    let empty = tempfile::tempdir().expect("tempdir");
    let out = cli_in(empty.path(), &["incident-report", "--state-dir", "nowhere"]).await;
    exited(&out, 1, "no audit log");
    assert!(text(&out.stderr).contains("is nowhere the gateway's state.dir?"), "{}", text(&out.stderr));
}
