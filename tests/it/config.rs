//! `clerkgate check-config`, run as the real binary (SPEC §1, §2): exit 0 with the effective
//! config and every secret redacted; exit 2 with every problem listed under its key; a missing
//! file is a clear exit 2; `$CLERKGATE_CONFIG`, then `clerkgate.toml`, when `--config` is absent.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_clerkgate");

/// Every variable the config reads, removed so the caller's environment cannot leak in.
const CONFIG_VARS: &[&str] = &[
    "CLERK_SECRET_KEY",
    "CLERK_PUBLISHABLE_KEY",
    "CLERK_JWT_KEY",
    "CLERK_API_URL",
    "CLERK_WEBHOOK_SIGNING_SECRET",
    "CLERK_EMERGENCY_BYPASS",
    "CLERKGATE_ADMIN_TOKEN",
    "CLERKGATE_CONFIG",
];

const FILE_SECRET: &str = "sk_test_from_the_secret_file_3141592653";
const ENV_SECRET: &str = "sk_test_from_the_environment_2718281828";
const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ADMIN_TOKEN: &str = "admin-token-that-must-not-leak-1234";

pub(super) struct Dir(tempfile::TempDir);

impl Dir {
    pub(super) fn new() -> Self {
        Dir(tempfile::tempdir().expect("tempdir"))
    }
    pub(super) fn path(&self) -> &Path {
        self.0.path()
    }
    pub(super) fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, contents).expect("write");
        p
    }
}

pub(super) fn check_config(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("check-config").args(args).current_dir(cwd);
    for v in CONFIG_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run clerkgate")
}

pub(super) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A valid config whose secret key comes from a file (and whose other secrets are inline).
fn valid_config(dir: &Dir, secret_file: &Path) -> PathBuf {
    dir.write(
        "clerkgate.toml",
        &format!(
            r#"
[upstream]
url = "http://127.0.0.1:3000"

[clerk]
secret_key_file = {secret_file:?}
webhook_signing_secret = "{WEBHOOK_SECRET}"
authorized_parties = ["https://app.example.com"]

[[routes.rule]]
path = "/api/webhooks/clerk"
webhook = "clerk"

[admin]
token = "{ADMIN_TOKEN}"

[state]
dir = {state:?}
"#,
            state = dir.path().join("state").display().to_string(),
        ),
    )
}

fn assert_no_secret(out: &Output) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    for secret in [FILE_SECRET, ENV_SECRET, WEBHOOK_SECRET, ADMIN_TOKEN] {
        assert!(!stdout.contains(secret), "stdout shows {secret}:\n{stdout}");
        assert!(!stderr.contains(secret), "stderr shows {secret}:\n{stderr}");
    }
}

fn effective(out: &Output) -> toml::Table {
    let stdout = text(&out.stdout);
    toml::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is not TOML ({e}):\n{stdout}"))
}

#[test]
fn a_valid_file_prints_the_effective_config_with_secrets_redacted() {
    let dir = Dir::new();
    let secret = dir.write("secret_key", &format!("{FILE_SECRET}\n"));
    let config = valid_config(&dir, &secret);
    let out = check_config(&["--config", config.to_str().unwrap()], &[], dir.path());
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    assert_no_secret(&out);
    let t = effective(&out);
    assert_eq!(t["clerk"]["secret_key"].as_str(), Some("[redacted]"));
    assert_eq!(t["clerk"]["webhook_signing_secret"].as_str(), Some("[redacted]"));
    assert_eq!(t["admin"]["token"].as_str(), Some("[redacted]"));
    // The effective config shows the defaults it filled in.
    assert_eq!(t["clerk"]["jwks_url"].as_str(), Some("https://api.clerk.com/v1/jwks"));
    assert_eq!(t["clerk"]["clock_skew"].as_str(), Some("5s"));
    assert_eq!(t["server"]["listen"].as_str(), Some("0.0.0.0:8080"));
    assert_eq!(t["admin"]["listen"].as_str(), Some("127.0.0.1:9901"));
    assert_eq!(t["mode"]["mode"].as_str(), Some("enforce"));
}

#[test]
fn the_environment_secret_wins_over_the_file_and_is_redacted_too() {
    let dir = Dir::new();
    let secret = dir.write("secret_key", FILE_SECRET);
    let config = valid_config(&dir, &secret);
    let out = check_config(&["--config", config.to_str().unwrap()], &[("CLERK_SECRET_KEY", ENV_SECRET)], dir.path());
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    assert_no_secret(&out);
    assert_eq!(effective(&out)["clerk"]["secret_key"].as_str(), Some("[redacted]"));

    // The environment wins outright: the file is not even read, so a missing one is no problem.
    std::fs::remove_file(&secret).unwrap();
    let out = check_config(&["--config", config.to_str().unwrap()], &[("CLERK_SECRET_KEY", ENV_SECRET)], dir.path());
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    assert_no_secret(&out);
    // Without the environment the missing file is a problem under its key.
    let out = check_config(&["--config", config.to_str().unwrap()], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("clerk.secret_key_file:"), "{}", text(&out.stderr));
}

#[test]
fn an_invalid_file_lists_every_problem_with_its_key() {
    let dir = Dir::new();
    let config = dir.write(
        "bad.toml",
        r#"
[server]
listen = "nowhere"
lisen = "0.0.0.0:1"

[upstream]
url = "ftp://127.0.0.1"

[clerk]
clock_skew = "soon"
secret_key = "sk_test_inline_secret_should_not_print"

[clerk.keys]
max_stale = "0s"

[routes]
public = ["no-slash"]

[mode]
mode = "bypass"

[log]
format = "xml"
"#,
    );
    let out = check_config(&["--config", config.to_str().unwrap()], &[], dir.path());
    assert_eq!(out.status.code(), Some(2), "stdout:\n{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    for key in [
        "server.listen",
        "server.lisen",
        "upstream.url",
        "clerk.clock_skew",
        "clerk.keys.max_stale",
        "routes.public[0]",
        "mode.reason",
        "log.format",
    ] {
        assert!(stderr.lines().any(|l| l.trim_start().starts_with(&format!("{key}: "))), "{key} not listed:\n{stderr}");
    }
    assert!(stderr.contains("8 problem(s)"), "{stderr}");
    assert!(stderr.contains(config.to_str().unwrap()), "{stderr}");
    assert!(!stderr.contains("sk_test_inline_secret_should_not_print"));
    // No effective config is printed for an invalid file.
    assert!(text(&out.stdout).trim().is_empty(), "{}", text(&out.stdout));
}

#[test]
fn a_missing_file_is_exit_2_with_a_clear_message() {
    let dir = Dir::new();
    let missing = dir.path().join("does-not-exist.toml");
    let out = check_config(&["--config", missing.to_str().unwrap()], &[], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(missing.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("cannot read"), "{stderr}");
    assert!(text(&out.stdout).trim().is_empty());
}

#[test]
fn clerkgate_config_is_used_when_config_is_absent() {
    let dir = Dir::new();
    let secret = dir.write("secret_key", FILE_SECRET);
    let valid = valid_config(&dir, &secret);
    let invalid = dir.write("invalid.toml", "[mode]\nmode = \"panic\"\n[clerk]\nsecret_key = \"sk\"\n");
    // The working directory holds no clerkgate.toml: only the variable can point at the file.
    let elsewhere = Dir::new();
    let out = check_config(&[], &[("CLERKGATE_CONFIG", valid.to_str().unwrap())], elsewhere.path());
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    assert_eq!(effective(&out)["clerk"]["secret_key"].as_str(), Some("[redacted]"));
    assert_no_secret(&out);
    let out = check_config(&[], &[("CLERKGATE_CONFIG", invalid.to_str().unwrap())], elsewhere.path());
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(invalid.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("mode.mode: "), "{stderr}");
    // --config beats the variable.
    let out = check_config(
        &["--config", valid.to_str().unwrap()],
        &[("CLERKGATE_CONFIG", invalid.to_str().unwrap())],
        elsewhere.path(),
    );
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
}

#[test]
fn without_either_the_default_is_clerkgate_toml_in_the_working_directory() {
    let dir = Dir::new();
    let secret = dir.write("secret_key", FILE_SECRET);
    valid_config(&dir, &secret); // writes <dir>/clerkgate.toml
    let out = check_config(&[], &[], dir.path());
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    let empty = Dir::new();
    let out = check_config(&[], &[], empty.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("clerkgate.toml"), "{}", text(&out.stderr));
}

#[test]
fn the_emergency_bypass_variable_is_validated() {
    let dir = Dir::new();
    let secret = dir.write("secret_key", FILE_SECRET);
    let config = valid_config(&dir, &secret);
    let args = ["--config", config.to_str().unwrap()];
    let out = check_config(&args, &[("CLERK_EMERGENCY_BYPASS", "true")], dir.path());
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    let out = check_config(&args, &[("CLERK_EMERGENCY_BYPASS", "perhaps")], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("CLERK_EMERGENCY_BYPASS: "), "{}", text(&out.stderr));
}
