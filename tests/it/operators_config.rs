//! Issue #10, the config half, through the real binary's `check-config`: every message names
//! the place to fix — a syntax error its line and column (item 3), a bad key the variable or
//! the file it came from (item 5), an unwise value or a typo its key (item 6) — and the printed
//! config shows the bypass `CLERK_EMERGENCY_BYPASS=true` puts in force (item 10).

use std::path::Path;
use std::process::Output;

use super::config::{check_config, text, Dir};
use super::support;

/// A valid config with a networkless key from `jwt_key_file`, plus `extra` (whole sections).
fn config(dir: &Dir, extra: &str) -> String {
    let key = dir.write("public.pem", &support::key().public_pem());
    let path = dir.write(
        "clerkgate.toml",
        &format!(
            "[clerk]\njwt_key_file = {}\n\n[state]\ndir = {}\n\n{extra}",
            support::toml_str(&key.display().to_string()),
            support::toml_str(&dir.path().join("state").display().to_string()),
        ),
    );
    path.display().to_string()
}

fn run(path: &str, env: &[(&str, &str)], cwd: &Path) -> (Option<i32>, String, String) {
    let out: Output = check_config(&["--config", path], env, cwd);
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// Item 3: the issue's `not valid TOML: invalid float, expected nothing` had no place; now the
/// line and column, and the line with a caret, as cargo shows them.
#[test]
fn a_syntax_error_names_its_line_and_column_and_shows_the_line() {
    let dir = Dir::new();
    let path = config(&dir, "[clerk.keys]\nmax_stale = 1.5.5\n");
    let (code, stdout, stderr) = run(&path, &[], dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines[1..],
        [
            "  (file): not valid TOML at line 8, column 16: invalid float, expected nothing",
            "      |",
            "    8 | max_stale = 1.5.5",
            "      |                ^^",
        ],
        "{stderr}"
    );
}

/// Item 5: a private key in `jwt_key_file` is reported under `clerk.jwt_key_file` with the
/// file's name and the `openssl` command; a bad `CLERK_JWT_KEY` is blamed on the variable,
/// not on the (good) file key it overrides.
#[test]
fn a_bad_key_is_blamed_on_the_file_or_the_variable_that_gave_it() {
    let dir = Dir::new();
    let path = config(&dir, "");
    let private = dir.write("key.pem", support::key().private_pem());
    let text = std::fs::read_to_string(&path).unwrap();
    let public = dir.path().join("public.pem").display().to_string();
    std::fs::write(
        &path,
        text.replace(&support::toml_str(&public), &support::toml_str(&private.display().to_string())),
    )
    .unwrap();
    let (code, _, stderr) = run(&path, &[], dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr.lines().nth(1),
        Some(
            format!(
                "  clerk.jwt_key_file: {}: this is a private key; give the public key: \
                 `openssl rsa -in key.pem -pubout`",
                private.display()
            )
            .as_str()
        ),
        "{stderr}"
    );

    let good = config(&dir, "");
    let garbage = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----";
    let (code, _, stderr) = run(&good, &[("CLERK_JWT_KEY", garbage)], dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    let problem = stderr.lines().nth(1).unwrap_or_default();
    assert!(problem.starts_with("  CLERK_JWT_KEY: not a usable RS256 public key"), "{stderr}");
    assert!(problem.ends_with("(set in the environment, which wins over clerk.jwt_key)"), "{stderr}");
    assert_eq!(stderr.lines().count(), 2, "one problem only:\n{stderr}");
}

/// Item 6: the values the issue found passing silently are warned about under their key (the
/// config is still valid); a typo gets "did you mean"; a one-character admin token is refused
/// on an admin listener reachable from the network and only warned about on loopback.
#[test]
fn unwise_values_warn_typos_get_a_suggestion_and_a_short_exposed_token_is_refused() {
    let dir = Dir::new();
    let path = config(
        &dir,
        "[clerk.keys]\nmax_stale = \"3650d\"\nrefresh_interval = \"1ms\"\n\n[mode]\nmax_override_ttl = \"365d\"\n",
    );
    let (code, stdout, stderr) = run(&path, &[], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stdout.is_empty());
    let warnings: Vec<&str> = stderr.lines().filter_map(|l| l.strip_prefix("warning: ")).collect();
    for expected in [
        "clerk.keys.max_stale: \"3650d\" is over 7d: ",
        "clerk.keys.refresh_interval: \"1ms\" is under 10s: ",
        "mode.max_override_ttl: \"365d\" is over 24h: ",
    ] {
        assert!(warnings.iter().any(|w| w.starts_with(expected)), "{expected}\n{stderr}");
    }

    let path = config(&dir, "[clerk.keys]\nmax_stael = \"1h\"\n");
    let (code, _, stderr) = run(&path, &[], dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.lines().any(|l| l == "  clerk.keys.max_stael: unknown key; did you mean `clerk.keys.max_stale`?"),
        "{stderr}"
    );

    let path = config(&dir, "[admin]\nlisten = \"0.0.0.0:9901\"\ntoken = \"x\"\n");
    let (code, _, stderr) = run(&path, &[], dir.path());
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with(
            "  admin.token: shorter than 16 characters, and admin.listen (0.0.0.0:9901) is reachable from the network"
        )),
        "{stderr}"
    );
    let path = config(&dir, "[admin]\nlisten = \"127.0.0.1:9901\"\ntoken = \"x\"\n");
    let (code, _, stderr) = run(&path, &[], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.lines().any(|l| l == "warning: admin.token: shorter than 16 characters"), "{stderr}");
}

/// Item 10: with `CLERK_EMERGENCY_BYPASS=true`, `check-config` printed `mode = "enforce"`; it
/// shows the bypass that will be in force, and where it comes from.
#[test]
fn check_config_shows_the_emergency_bypass_in_force() {
    let dir = Dir::new();
    let path = config(&dir, "");
    let (code, stdout, stderr) = run(&path, &[("CLERK_EMERGENCY_BYPASS", "true")], dir.path());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.lines().any(|l| l
            == "mode = \"bypass\"  # from CLERK_EMERGENCY_BYPASS, for max_override_ttl; then the file's \"enforce\""),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l == "reason = \"CLERK_EMERGENCY_BYPASS=true\""), "{stdout}");
    let (_, stdout, _) = run(&path, &[], dir.path());
    assert!(stdout.lines().any(|l| l == "mode = \"enforce\""), "{stdout}");
}
