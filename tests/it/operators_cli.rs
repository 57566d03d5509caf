//! Issue #10, the operator's side: the CLI finds the admin API in either address form and its
//! token in the flag, the config or the environment (item 8); `audit`, `revocations` and
//! `revoke --lift`; `/audit?since=1h`; `status` says only what applies to the key source (item
//! 10); a listener that cannot bind names its address and key (item 4); and the README's
//! "During an incident" section, run command by command as printed.
//!
//! Every test runs the real binary: `clerkgate run` as the gateway, and the CLI as a child
//! process with a clean environment, as an operator's shell would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::jwks::{JwksReply, JwksServer};
use crate::support::{self, binary_config, toml_str, BinaryGateway, ADMIN_TOKEN};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Runs `clerkgate args…` in `cwd` with only `PATH` and `env` set (off the runtime's threads,
/// so the gateway's JWKS server keeps answering while the CLI waits).
async fn cli_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clerkgate"));
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).current_dir(cwd).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("run the clerkgate CLI")).await.expect("join")
}

/// Runs the CLI in a fresh empty directory (so no `clerkgate.toml` is found by default).
async fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let empty = tempfile::tempdir().expect("tempdir");
    cli_in(empty.path(), args, env).await
}

/// Runs an admin command against `gw` (`--admin` its address, the token in the environment).
async fn admin_cli(gw: &BinaryGateway, args: &[&str]) -> Output {
    let admin = gw.admin_addr.to_string();
    let mut full = args.to_vec();
    full.extend(["--admin", admin.as_str()]);
    cli(&full, &TOKEN_ENV).await
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts exit 0 and returns stdout.
fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} exited with {}:\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

const TOKEN_ENV: [(&str, &str); 1] = [("CLERKGATE_ADMIN_TOKEN", ADMIN_TOKEN)];

/// A gateway of the standard test config, networkless (`jwt_key`).
async fn gateway() -> BinaryGateway {
    BinaryGateway::start(&binary_config(support::upstream().await).text(), &[])
}

/// Replaces the standard config's `[admin]` section (listen on port 0, inline token) by `body`.
fn with_admin(text: &str, body: &str) -> String {
    let standard = format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = {}\n", toml_str(ADMIN_TOKEN));
    assert!(text.contains(&standard), "the standard config changed shape:\n{text}");
    text.replace(&standard, &format!("[admin]\n{body}\n"))
}

/// Waits until `GET /readyz` answers 200.
async fn await_ready(gw: &BinaryGateway) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let r = support::client().get(gw.admin_url("/readyz")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            return;
        }
        assert!(Instant::now() < until, "the gateway did not become ready; stderr:\n{}", gw.logs().join("\n"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The admin token id the gateway logs as actor (`admin:<8 hex>`), from its audit log.
fn actor_of(gw: &BinaryGateway) -> String {
    gw.audit_file()
        .iter()
        .find_map(|e| e["actor"].as_str().filter(|a| a.starts_with("admin:")).map(str::to_string))
        .expect("an admin event in audit.jsonl")
}

/// Replaces every RFC 3339 time in `text` (`2026-03-04T10:02:11Z`, with optional fraction,
/// `Z` or a numeric offset) by `<time>`, and every admin token id by `admin:<id>`: the parts
/// of the CLI's output that differ from run to run.
fn normalise(text: &str) -> String {
    let b = text.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        let stamp = (0..19).all(|k| match k {
            4 | 7 => at(i + k, b'-'),
            10 => at(i + k, b'T'),
            13 | 16 => at(i + k, b':'),
            _ => digit(i + k),
        });
        if stamp {
            let mut j = i + 19;
            if at(j, b'.') {
                j += 1;
                while digit(j) {
                    j += 1;
                }
            }
            if at(j, b'Z') {
                j += 1;
            } else if (at(j, b'+') || at(j, b'-')) && digit(j + 1) && digit(j + 2) && at(j + 3, b':') {
                j += 6;
            }
            out.push_str("<time>");
            i = j;
        } else if text[i..].starts_with("admin:")
            && text.len() >= i + 14
            && b[i + 6..i + 14].iter().all(|c| c.is_ascii_hexdigit())
        {
            out.push_str("admin:<id>");
            i += 14;
        } else {
            let c = text[i..].chars().next().expect("a char");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// True when `line` matches `pattern`, where `…` stands for any text.
fn glob(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == line;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !line.starts_with(first) || !line[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(k) => rest = &rest[k + part.len()..],
            None => return false,
        }
    }
    true
}

/// True when `lines` match `expected`, line by line (after [`normalise`]); a line that is only
/// `…` stands for any number of lines.
fn lines_match(expected: &[String], lines: &[String]) -> bool {
    match expected.split_first() {
        None => lines.is_empty(),
        Some((e, rest)) if e == "…" => (0..=lines.len()).any(|k| lines_match(rest, &lines[k..])),
        Some((e, rest)) => {
            lines.split_first().is_some_and(|(l, more)| glob(&normalise(e), &normalise(l)) && lines_match(rest, more))
        }
    }
}

#[test]
fn the_output_matcher_matches_what_it_should() {
    let s = |v: &[&str]| v.iter().map(|l| l.to_string()).collect::<Vec<_>>();
    assert_eq!(normalise("at 2026-03-04T10:02:11Z by admin:1bd8fd47."), "at <time> by admin:<id>.");
    assert_eq!(normalise("2026-03-04T10:02:11.412Z|2026-03-04T10:02:11+01:00|"), "<time>|<time>|");
    assert!(lines_match(&s(&["a …", "…", "c"]), &s(&["a b", "x", "y", "c"])));
    assert!(lines_match(&s(&["…", "c"]), &s(&["c"])));
    assert!(!lines_match(&s(&["a …", "c"]), &s(&["a b", "x", "c"])));
    assert!(glob("x…y…z", "x1y2z") && !glob("x…y…z", "x1z2y"));
}

// ---------------------------------------------------------------------------------------------
// Item 8: addresses, tokens, help
// ---------------------------------------------------------------------------------------------

/// `--admin` and `$CLERKGATE_ADMIN_URL` take `host:port` (the form `admin.listen` uses) as well
/// as a URL; a bare port is refused with a message that shows both forms.
#[tokio::test(flavor = "multi_thread")]
async fn the_admin_address_is_accepted_as_host_port_or_url() {
    let gw = gateway().await;
    let addr = gw.admin_addr.to_string();
    for form in [addr.clone(), format!("http://{addr}"), format!("http://{addr}/")] {
        let out = ok(&cli(&["status", "--admin", &form], &TOKEN_ENV).await, &format!("status --admin {form}"));
        assert!(out.starts_with("ready        true\n"), "{out}");
    }
    let env = [TOKEN_ENV[0], ("CLERKGATE_ADMIN_URL", addr.as_str())];
    let out = ok(&cli(&["mode", "enforce"], &env).await, "mode enforce with CLERKGATE_ADMIN_URL=host:port");
    assert!(out.starts_with("mode enforce"), "{out}");

    let out = cli(&["status", "--admin", "9901"], &TOKEN_ENV).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "clerkgate: --admin: \"9901\" is not an admin address (no port): give host:port as in admin.listen \
         (127.0.0.1:9901, [::1]:9901) or a URL (http://127.0.0.1:9901)\n"
    );

    // An unreachable address says where it came from.
    let out = cli(&["status", "--admin", "127.0.0.1:1"], &TOKEN_ENV).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("clerkgate: cannot reach the admin API at http://127.0.0.1:1/status: "), "{err}");
    assert!(err.contains("The address came from --admin."), "{err}");

    // `[::1]:port`, where this host has an IPv6 loopback.
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let text = with_admin(
            &binary_config(support::upstream().await).text(),
            &format!("listen = \"[::1]:0\"\ntoken = {}", toml_str(ADMIN_TOKEN)),
        );
        let v6 = BinaryGateway::start(&text, &[]);
        let form = v6.admin_addr.to_string();
        assert!(form.starts_with("[::1]:"), "{form}");
        let out = ok(&cli(&["status", "--admin", &form], &TOKEN_ENV).await, &format!("status --admin {form}"));
        assert!(out.starts_with("ready        true\n"), "{out}");
    }
}

/// Every admin command's `--help` names every token source, in order, and the address forms.
#[tokio::test(flavor = "multi_thread")]
async fn every_admin_command_help_names_the_token_sources() {
    let commands: [&[&str]; 7] =
        [&["status"], &["mode"], &["reload"], &["keys", "refresh"], &["revoke"], &["revocations"], &["audit"]];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        let out = ok(&cli(&args, &[]).await, &args.join(" "));
        let flat = out.split_whitespace().collect::<Vec<_>>().join(" ");
        for needle in [
            "--admin-token-file <FILE> A file holding the admin token. Without it, the token is admin.token_file or \
             admin.token in --config, else $CLERKGATE_ADMIN_TOKEN, else admin.token_file or admin.token in the default config",
            "host:port as in admin.listen",
            "[default: admin.listen in --config, else $CLERKGATE_ADMIN_URL, else admin.listen in the default config, \
             else 127.0.0.1:9901]",
            "Without it, the default config ($CLERKGATE_CONFIG, else ./clerkgate.toml, when that file exists) is read, \
             after the environment",
        ] {
            assert!(flat.contains(needle), "`{}` does not say {needle:?}:\n{out}", args.join(" "));
        }
    }
}

/// The token comes from `--admin-token-file`, else the config named by `--config`, else the
/// environment, else the default config (`$CLERKGATE_CONFIG`, `./clerkgate.toml`); the address
/// likewise, from `--admin`, `admin.listen`, `$CLERKGATE_ADMIN_URL`.
#[tokio::test(flavor = "multi_thread")]
async fn the_token_comes_from_the_flag_then_the_config_then_the_environment() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let right = secrets.path().join("admin-token");
    std::fs::write(&right, format!("{ADMIN_TOKEN}\n")).expect("write token");
    let wrong = secrets.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-token").expect("write token");
    let right_s = right.display().to_string();
    let admin = |listen: &str| format!("listen = \"{listen}\"\ntoken_file = {}", toml_str(&right_s));
    let standard = binary_config(support::upstream().await).text();
    // The gateway binds a port of its own choosing (a port found free and then named would be
    // free for any other test to take first); the file the CLI reads then names that port.
    // The gateway runs with --no-watch, so the rewrite is not a reload.
    let gw = BinaryGateway::start(&with_admin(&standard, &admin("127.0.0.1:0")), &[]);
    let listen = gw.admin_addr.to_string();
    gw.write_config(&with_admin(&standard, &admin(&listen)));
    let config = gw.config_path().display().to_string();
    let status_ok = |out: Output, what: &str| {
        let text = ok(&out, what);
        assert!(text.starts_with("ready        true\n"), "{what}: {text}");
        assert_eq!(stderr(&out), "", "{what}");
    };

    // Address and token from --config alone; the named config beats a token in the environment.
    status_ok(cli(&["status", "--config", &config], &[]).await, "status --config");
    status_ok(cli(&["status", "--config", &config], &[("CLERKGATE_ADMIN_TOKEN", "wrong")]).await, "config before env");
    // The default config: $CLERKGATE_CONFIG, else clerkgate.toml in the working directory.
    status_ok(cli(&["status"], &[("CLERKGATE_CONFIG", &config)]).await, "status with CLERKGATE_CONFIG");
    status_ok(cli_in(gw.dir.path(), &["status"], &[]).await, "status beside clerkgate.toml");
    // A default config is only found: the environment beats it, and a refusal names it.
    let out = cli_in(gw.dir.path(), &["status"], &[("CLERKGATE_ADMIN_TOKEN", "wrong")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "clerkgate: the admin API refused the token from CLERKGATE_ADMIN_TOKEN: it must be the gateway's admin \
             token (its admin.token, admin.token_file or CLERKGATE_ADMIN_TOKEN)\n  \
             Also set, not sent: admin.token_file ({right_s}) in clerkgate.toml. A gateway reads \
             CLERKGATE_ADMIN_TOKEN before its admin.token_file; name the right one with --admin-token-file FILE.\n"
        )
    );
    // --admin-token-file beats the config.
    let right_flag = ["status", "--admin", &listen, "--admin-token-file", &right_s];
    status_ok(cli(&right_flag, &[("CLERKGATE_ADMIN_TOKEN", "wrong")]).await, "--admin-token-file");
    let wrong_s = wrong.display().to_string();
    let out = cli(&["status", "--config", &config, "--admin-token-file", &wrong_s], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "clerkgate: the admin API refused the token from --admin-token-file ({wrong_s}): it must be the \
             gateway's admin token (its admin.token, admin.token_file or CLERKGATE_ADMIN_TOKEN)\n  \
             Also set, not sent: admin.token_file ({right_s}) in {config}. A gateway reads CLERKGATE_ADMIN_TOKEN \
             before its admin.token_file; name the right one with --admin-token-file FILE.\n"
        )
    );
    // The environment when nothing else gives one.
    status_ok(cli(&["status", "--admin", &listen], &TOKEN_ENV).await, "token from the environment");
    // None at all: the warning and the refusal list every source.
    let out = cli(&["status", "--admin", &listen], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let sources = "--admin-token-file FILE, else admin.token_file or admin.token in --config FILE, else \
                   $CLERKGATE_ADMIN_TOKEN, else admin.token_file or admin.token in $CLERKGATE_CONFIG or ./clerkgate.toml";
    assert_eq!(
        stderr(&out),
        format!(
            "clerkgate: warning: no admin token ({sources}); the admin API will refuse the call\n\
             clerkgate: the admin API needs a token: give {sources}\n"
        )
    );
    // A wrong token from the config says it came from there.
    let other = secrets.path().join("other.toml");
    std::fs::write(&other, format!("[admin]\nlisten = \"{listen}\"\ntoken = \"wrong\"\n")).expect("write");
    let other_s = other.display().to_string();
    let out = cli(&["status", "--config", &other_s], &TOKEN_ENV).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!("clerkgate: the admin API refused the token from admin.token in {other_s}:"))
    );
    // An explicit config that cannot be read is a usage error naming it.
    let out = cli(&["status", "--config", "/nonexistent/clerkgate.toml"], &TOKEN_ENV).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out)
        .starts_with("clerkgate: /nonexistent/clerkgate.toml: (file): cannot read /nonexistent/clerkgate.toml:"));
}

// ---------------------------------------------------------------------------------------------
// Item 8: audit, revocations, lifting
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn revocations_are_listed_with_their_ids_and_lifted_by_id() {
    let gw = gateway().await;
    let run = |args: &'static [&'static str]| admin_cli(&gw, args);
    let out = run(&["revocations"]).await;
    assert_eq!(ok(&out, "revocations"), "no revocations in force\n");
    ok(&run(&["revoke", "--user", "user_2bad", "--reason", "takeover"]).await, "revoke --user");
    ok(&run(&["revoke", "--session", "sess_2stolen"]).await, "revoke --session");
    ok(
        &run(&["revoke", "--issued-before", "2026-01-01T01:00:00+01:00"]).await,
        "revoke --issued-before with an offset",
    );
    let actor = actor_of(&gw);
    let list = ok(&run(&["revocations"]).await, "revocations");
    let lines: Vec<String> = list.lines().map(|l| normalise(l).replace(&actor, "admin:<id>")).collect();
    assert_eq!(
        lines,
        [
            "sess_2stolen   session  since <time> by admin:<id>",
            "user_2bad      user     since <time> by admin:<id>  \"takeover\"",
            "issued_before  every token issued before <time>",
            "lift one with: clerkgate revoke --lift ID",
        ],
        "{list}"
    );
    assert!(list.contains("every token issued before 2026-01-01T00:00:00Z"), "the offset is applied: {list}");

    // Each listed id lifts its entry.
    let out = ok(&run(&["revoke", "--lift", "user_2bad"]).await, "revoke --lift user_2bad");
    assert_eq!(out, "lifted user_2bad; revocations now: 1 session(s), 0 user(s), issued_before 2026-01-01T00:00:00Z\n");
    let out = ok(&run(&["revoke", "--lift", "issued_before"]).await, "revoke --lift issued_before");
    assert_eq!(out, "lifted issued_before; revocations now: 1 session(s), 0 user(s), issued_before -\n");
    let json: Value = serde_json::from_str(&ok(&run(&["revocations", "--json"]).await, "revocations --json"))
        .expect("revocations --json is JSON");
    assert_eq!(json["users"], serde_json::json!({}));
    assert_eq!(json["sessions"]["sess_2stolen"]["actor"], actor);

    // An id that is not listed: 404, and the message says what an id is.
    let out = run(&["revoke", "--lift", "user_2bad"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "clerkgate: 404 Not Found: no revocation with id \"user_2bad\"; an id is a revoked session or user id, \
         or issued_before (GET /revocations lists them)\n"
    );
    // --lift takes no reason (the DELETE has no body to carry it).
    let out = run(&["revoke", "--lift", "sess_2stolen", "--reason", "r"]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_reads_as_one_line_per_event_and_since_takes_a_duration() {
    let gw = gateway().await;
    let run = |args: &'static [&'static str]| admin_cli(&gw, args);
    ok(&run(&["mode", "grace", "--reason", "INC-1", "--ttl", "1h"]).await, "mode grace");
    ok(&run(&["revoke", "--user", "user_2bad", "--reason", "takeover"]).await, "revoke");
    ok(&run(&["revoke", "--lift", "user_2bad"]).await, "lift");
    ok(&run(&["mode", "enforce"]).await, "mode enforce");

    let out = ok(&run(&["audit", "--since", "1h"]).await, "audit --since 1h");
    let lines: Vec<String> = out.lines().map(normalise).collect();
    assert_eq!(
        lines,
        [
            "<time>  admin:<id>  mode.set  enforce → grace until <time>  \"INC-1\"",
            "<time>  admin:<id>  revocation.add  - → user user_2bad  \"takeover\"",
            "<time>  admin:<id>  revocation.remove  user user_2bad → -",
            "<time>  admin:<id>  mode.cleared  grace until <time> → enforce",
        ],
        "{out}"
    );
    let json: Value =
        serde_json::from_str(&ok(&run(&["audit", "--json"]).await, "audit --json")).expect("audit --json is JSON");
    assert_eq!(json["events"].as_array().map(Vec::len), Some(4), "{json}");
    let out = ok(&run(&["audit", "--since", "2999-01-01T00:00:00+01:00"]).await, "audit, future");
    assert_eq!(out, "no audit events\n");

    // The API itself: a duration back from now, an RFC 3339 time, and a refusal that says both.
    for since in ["1h", "30m", "2000-01-01T00:00:00Z"] {
        let r = gw.admin("GET", &format!("/audit?since={since}"), None).await;
        assert_eq!(r.status, 200, "since={since}: {}", r.body);
        assert_eq!(r.json()["events"].as_array().map(Vec::len), Some(4), "since={since}: {}", r.body);
    }
    let r = gw.admin("GET", "/audit?since=yesterday", None).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        r.json()["message"],
        "since: \"yesterday\" is neither a duration back from now (1h, 30m) nor an RFC 3339 time (2026-01-01T00:00:00Z)"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 10 (status): only what applies to the key source
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn status_names_the_networkless_key_instead_of_empty_jwks_fields() {
    let gw = gateway().await;
    let out = ok(&cli(&["status", "--admin", &gw.admin_addr.to_string()], &TOKEN_ENV).await, "status");
    let keys: Vec<&str> = out.lines().filter(|l| l.starts_with("keys")).collect();
    assert_eq!(keys, ["keys         networkless PEM key (clerk.jwt_key)"], "{out}");
    assert!(!out.contains("kids []") && !out.contains("age -s"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Item 4: a listener that cannot bind says which address, which key, and what to do
// ---------------------------------------------------------------------------------------------

/// Runs `clerkgate run` on `config_text` in a fresh directory until it exits.
fn run_until_exit(config_text: &str) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    support::run_until_exit(dir.path(), config_text, &[])
}

#[tokio::test(flavor = "multi_thread")]
async fn an_address_in_use_names_the_address_its_key_and_the_fix() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken: SocketAddr = held.local_addr().expect("addr");
    let port = taken.port();
    let standard = binary_config(support::upstream().await).text();
    let data_taken = standard.replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"{taken}\""), 1);
    let admin_taken = with_admin(&standard, &format!("listen = \"{taken}\"\ntoken = {}", toml_str(ADMIN_TOKEN)));
    for (text, key) in [(data_taken, "server.listen"), (admin_taken, "admin.listen")] {
        let out = tokio::task::spawn_blocking(move || run_until_exit(&text)).await.expect("join");
        assert_eq!(out.status.code(), Some(1), "{key}: {}", stderr(&out));
        let line = stderr(&out).lines().find(|l| l.starts_with("clerkgate: cannot start:")).map(str::to_string);
        let line = line.unwrap_or_else(|| panic!("{key}: no `cannot start` line:\n{}", stderr(&out)));
        // Between the two: the OS's own words, which vary by platform.
        assert!(line.starts_with(&format!("clerkgate: cannot start: cannot listen on {taken} ({key}): ")), "{line}");
        assert!(
            line.ends_with(&format!(
                "; another process holds it (see which: ss -ltnp 'sport = :{port}'); stop it, or change {key}"
            )),
            "{line}"
        );
    }
    drop(held);
}

// ---------------------------------------------------------------------------------------------
// The README's "During an incident" section, as printed
// ---------------------------------------------------------------------------------------------

/// One `$ command` of a `console` block and the lines the README says it prints.
#[derive(Debug)]
struct Step {
    command: String,
    expected: Vec<String>,
}

/// The section's `sh` setup block and its `console` steps.
fn incident_section() -> (String, Vec<Step>) {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).expect("README.md");
    let start = readme.find("\n## During an incident\n").expect("a \"During an incident\" section in README.md");
    let section = &readme[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |e| e + 1)];
    let mut setup = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut fence: Option<String> = None;
    for line in section.lines() {
        if let Some(lang) = line.strip_prefix("```") {
            fence = if fence.is_some() { None } else { Some(lang.to_string()) };
            continue;
        }
        match fence.as_deref() {
            Some("sh") => setup.push(line.to_string()),
            Some("console") => match line.strip_prefix("$ ") {
                Some(command) => steps.push(Step { command: command.to_string(), expected: Vec::new() }),
                None => steps.last_mut().expect("output before any `$ ` line").expected.push(line.to_string()),
            },
            // Shown, not run: the steps that need Clerk's Backend API (tested in runbook_revoke).
            Some("text") => {}
            Some(other) => panic!("unexpected ```{other} block in the incident section"),
            None => {}
        }
    }
    assert!(fence.is_none(), "an unclosed code block in the incident section");
    (setup.join("\n"), steps)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_incident_section_of_the_readme_works_as_printed() {
    let (setup, steps) = incident_section();
    // The reader sets the address and the token in the shell; so does this test.
    assert!(setup.lines().all(|l| l.starts_with("export ")), "the setup block only exports:\n{setup}");
    const ADDRESS: &str = "127.0.0.1:9901";
    const TOKEN_FILE: &str = "/run/secrets/clerkgate-admin-token";
    assert!(setup.contains(ADDRESS) && setup.contains(TOKEN_FILE), "{setup}");
    let commands: Vec<&str> = steps.iter().map(|s| s.command.as_str()).collect();
    for needed in ["clerkgate status", "clerkgate mode grace", "clerkgate mode bypass", "clerkgate mode enforce"] {
        assert!(commands.iter().any(|c| c.starts_with(needed)), "the section lost `{needed}`: {commands:?}");
    }
    for needed in
        ["--issued-before now", "keys refresh", "--user", "--session", "revocations", "--lift", "audit", "curl "]
    {
        assert!(commands.iter().any(|c| c.contains(needed)), "the section lost `{needed}`: {commands:?}");
    }

    // A gateway fed by a JWKS (so `keys refresh` has something to fetch).
    let jwks = JwksServer::start(JwksReply::Json(support::key().jwks("ins_2abc"))).await;
    let networkless = format!("jwt_key = {}", toml_str(&support::key().public_pem()));
    let text = binary_config(support::upstream().await).text();
    assert!(text.contains(&networkless));
    let gw = BinaryGateway::start(&text.replace(&networkless, &format!("jwks_url = {}", toml_str(&jwks.url()))), &[]);
    await_ready(&gw).await;

    let secrets = tempfile::tempdir().expect("tempdir");
    let token_file = secrets.path().join("admin-token");
    std::fs::write(&token_file, ADMIN_TOKEN).expect("write token");
    let setup =
        setup.replace(ADDRESS, &gw.admin_addr.to_string()).replace(TOKEN_FILE, &token_file.display().to_string());
    let bin_dir: PathBuf = Path::new(env!("CARGO_BIN_EXE_clerkgate")).parent().expect("bin dir").to_path_buf();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .expect("PATH");
    let cwd = tempfile::tempdir().expect("tempdir");

    for step in &steps {
        let script = format!("{setup}\n{}", step.command);
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(&script).env_clear().env("PATH", &path).current_dir(cwd.path());
        let out = tokio::task::spawn_blocking(move || cmd.output().expect("run sh")).await.expect("join");
        let printed: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        assert!(
            out.status.success() && stderr(&out).is_empty(),
            "`{}` exited with {} and wrote to stderr:\n{}\nstdout:\n{}",
            step.command,
            out.status,
            stderr(&out),
            stdout(&out)
        );
        assert!(
            lines_match(&step.expected, &printed),
            "`{}` printed:\n{}\n--- but the README says:\n{}",
            step.command,
            printed.join("\n"),
            step.expected.join("\n")
        );
    }

    // And the commands did what the README says: back in enforce, one session and one user revoked.
    let mode = gw.admin("GET", "/mode", None).await.json();
    assert_eq!(mode["mode"], "enforce", "{mode}");
    let list = gw.admin("GET", "/revocations", None).await.json();
    assert_eq!(list["sessions"].as_object().map(|m| m.len()), Some(1), "{list}");
    assert_eq!(list["users"].as_object().map(|m| m.len()), Some(1), "{list}");
    assert_eq!(list["issued_before"], Value::Null, "{list}");
}
