//! Unit tests of config loading (SPEC §2): defaults, every problem listed with its key, the
//! secrets precedence (environment, then `*_file`, then inline), publishable keys, redaction.
//!
//! Environments are passed as [`Env`] values; the process environment is never touched.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use proptest::prelude::*;

use super::*;
use crate::mint::SigningKey;
use crate::mode::Mode;
use crate::routes::Access;
use crate::verifying_key::VerifyingKey;

const JWKS: &str = r#"
[clerk]
jwks_url = "http://127.0.0.1:9/v1/jwks"
"#;

const PK_LIVE: &str = "pk_live_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA";
const PK_TEST: &str = "pk_test_Y2xlcmsuaW5zcGlyZWQucHVtYS03NC5sY2wuZGV2JA";

fn no_env() -> Env {
    Env::default()
}

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(pairs.iter().copied())
}

fn load(text: &str) -> Config {
    match Config::from_toml(text, &no_env()) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn problems(text: &str, env: &Env) -> ConfigErrors {
    match Config::from_toml(text, env) {
        Ok(_) => panic!("expected problems for:\n{text}"),
        Err(e) => e,
    }
}

fn keys_of(errors: &ConfigErrors) -> BTreeSet<String> {
    errors.0.iter().map(|p| p.key.clone()).collect()
}

fn signing_keys() -> &'static [SigningKey; 3] {
    static KEYS: OnceLock<[SigningKey; 3]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [SigningKey::generate().unwrap(), SigningKey::generate().unwrap(), SigningKey::generate().unwrap()]
    })
}

/// (name, section body, environment, expected secret)
type SecretCase<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str);
/// (name, `[clerk]` body, environment, expected JWKS URL)
type UrlCase<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, Option<&'a str>);

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

// === Minimal config and defaults ===

#[test]
fn upstream_header_policy_defaults_and_values() {
    let c = load(JWKS);
    assert_eq!(c.upstream.headers.upgrade_protocols.names(), ["websocket"]);
    assert!(c.upstream.headers.allow_routing_headers.is_empty());

    let c = load(&format!(
        "{JWKS}\n[upstream]\nupgrade_protocols = [\"WebSocket\", \"x-custom\"]\n\
         allow_routing_headers = [\"X-HTTP-Method-Override\"]\n"
    ));
    assert_eq!(c.upstream.headers.upgrade_protocols.names(), ["websocket", "x-custom"]);
    assert_eq!(c.upstream.headers.allow_routing_headers, ["x-http-method-override"]);
    let again = load(&c.effective_toml());
    assert_eq!(again.upstream.headers, c.upstream.headers);

    // An HTTP-like protocol is refused with a message saying why, under its key.
    let errors = problems(&format!("{JWKS}\n[upstream]\nupgrade_protocols = [\"h2c\", \"tls/1.0\"]\n"), &no_env());
    assert_eq!(errors.0.len(), 2, "{errors}");
    assert!(errors.0.iter().all(|p| p.key == "upstream.upgrade_protocols" && p.message.contains("never spliced")));
}

/// Issue #11 item 7: nothing is trusted by default; each bad `trusted_proxies` entry is its own
/// problem naming the entry; `proxy_protocol` without a trusted peer could never apply.
#[test]
fn trusted_proxies_and_proxy_protocol() {
    let c = load(JWKS);
    assert!(c.server.trusted_proxies.is_empty(), "nothing is trusted by default");
    assert!(!c.server.proxy_protocol);

    let c = load(&format!(
        "{JWKS}\n[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]\nproxy_protocol = true\n"
    ));
    assert!(c.server.proxy_protocol);
    assert!(c.server.trusted_proxies.contains("10.9.8.7".parse().unwrap()));
    assert!(c.server.trusted_proxies.contains("192.0.2.7".parse().unwrap()));
    assert!(!c.server.trusted_proxies.contains("192.0.2.8".parse().unwrap()));
    let out = c.effective_toml();
    assert!(out.contains(r#"trusted_proxies = ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]"#), "{out}");
    assert_eq!(load(&out).server.trusted_proxies, c.server.trusted_proxies);

    let errors = problems(
        &format!("{JWKS}\n[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"lb.internal\", \"10.1.2.3/8\", \"::/129\"]\n"),
        &no_env(),
    );
    assert_eq!(errors.0.len(), 3, "{errors}");
    for (problem, entry) in errors.0.iter().zip(["lb.internal", "10.1.2.3/8", "::/129"]) {
        assert_eq!(problem.key, "server.trusted_proxies");
        assert!(problem.message.contains(&format!("{entry:?}")), "{}", problem.message);
    }

    let errors = problems(&format!("{JWKS}\n[server]\nproxy_protocol = true\n"), &no_env());
    assert_eq!(keys_of(&errors), BTreeSet::from(["server.proxy_protocol".to_string()]), "{errors}");
    assert!(errors.0[0].message.contains("server.trusted_proxies"), "{errors}");

    let c = load(&format!("{JWKS}\n[server]\ntrusted_proxies = [\"0.0.0.0/0\"]\n"));
    assert!(c.warnings.iter().any(|w| w.starts_with("server.trusted_proxies: \"0.0.0.0/0\" trusts every peer")));
}

#[test]
fn minimal_config_takes_the_spec_defaults() {
    let c = load(JWKS);
    assert_eq!(c.server.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(c.server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(c.upstream.url_text, "http://127.0.0.1:3000");
    assert_eq!(c.upstream.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.upstream.response_timeout, Duration::from_secs(60));
    let k = &c.clerk;
    assert_eq!(k.api_url, "https://api.clerk.com");
    assert!(k.authorized_parties.is_empty());
    assert_eq!(k.clock_skew, Duration::from_secs(5));
    assert_eq!(k.issuer, None);
    assert!(k.reject_pending_sessions, "pending sessions are signed out by default, as in Clerk's SDK");
    assert_eq!(k.status_url, "https://status.clerk.com/api/v2/status.json");
    assert_eq!(k.keys.refresh_interval, Duration::from_secs(5 * 60));
    assert_eq!(k.keys.unknown_kid_cooldown, Duration::from_secs(10));
    assert_eq!(k.keys.max_stale, Duration::from_secs(24 * 3600));
    assert_eq!(k.keys.fetch_timeout, Duration::from_secs(5));
    assert!(k.secret_key.is_none() && k.jwt_key.is_none() && k.publishable_key.is_none());
    assert_eq!(k.jwks.as_ref().unwrap().url, "http://127.0.0.1:9/v1/jwks");
    assert!(k.jwks.as_ref().unwrap().bearer.is_none());
    assert_eq!(c.routes.default(), Access::Protected);
    let public: Vec<&str> = c.routes.public().iter().map(|p| p.as_str()).collect();
    assert_eq!(public, ["/", "/sign-in(.*)", "/sign-up(.*)"]);
    assert!(c.routes.rules().is_empty());
    assert_eq!(c.mode.mode, Mode::Enforce);
    assert_eq!(c.mode.reason, "");
    assert_eq!(c.mode.grace_max_expired, Duration::from_secs(3600));
    assert_eq!(c.mode.max_override_ttl, Duration::from_secs(4 * 3600));
    assert!(!c.mode.emergency_bypass_env);
    assert_eq!(c.admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert!(c.admin.token.is_none());
    assert_eq!(c.state.dir, PathBuf::from("./clerkgate-state"));
    assert_eq!(c.state.backend, StateBackend::File);
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level, "info");
}

#[test]
fn each_key_source_alone_is_enough() {
    let pem = signing_keys()[0].public_pem();
    for text in [
        JWKS.to_string(),
        "[clerk]\nsecret_key = \"sk_test_abc\"\n".to_string(),
        format!("[clerk]\njwt_key = {}\n", toml_string(&pem)),
    ] {
        load(&text);
    }
    for (name, value) in [("CLERK_SECRET_KEY", "sk_test_env".to_string()), ("CLERK_JWT_KEY", pem.clone())] {
        assert!(Config::from_toml("", &env(&[(name, &value)])).is_ok(), "{name}");
    }
}

#[test]
fn the_example_in_the_spec_loads() {
    let text = r#"
[server]
listen = "0.0.0.0:8080"
header_read_timeout = "10s"

[upstream]
url = "http://127.0.0.1:3000"
connect_timeout = "5s"
response_timeout = "60s"

[clerk]
secret_key = "sk_live_example"
api_url = "https://api.clerk.com"
authorized_parties = []
clock_skew = "5s"
reject_pending_sessions = false

[clerk.keys]
refresh_interval = "5m"
unknown_kid_cooldown = "10s"
max_stale = "24h"
fetch_timeout = "5s"

[routes]
default = "protected"
public = ["/", "/sign-in(.*)", "/sign-up(.*)"]
[[routes.rule]]
path = "/api/admin(.*)"
methods = ["GET", "POST"]
role = "org:admin"
bypass = "never"
[[routes.rule]]
path = "/api/webhooks/clerk"
webhook = "clerk"

[mode]
mode = "enforce"
reason = ""
grace_max_expired = "1h"
max_override_ttl = "4h"

[admin]
listen = "127.0.0.1:9901"

[state]
dir = "./clerkgate-state"
backend = "file"

[log]
format = "json"
level = "info"
"#;
    let with_webhook = env(&[("CLERK_WEBHOOK_SIGNING_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]);
    let c = Config::from_toml(text, &with_webhook).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.routes.rules().len(), 2);
    assert!(c.routes.rules()[0].bypass_never);
    assert_eq!(c.routes.rules()[0].role.as_deref(), Some("org:admin"));
    assert!(c.routes.rules()[1].webhook);
    // Without the webhook secret the webhook route is a problem.
    assert_eq!(keys_of(&problems(text, &no_env())), BTreeSet::from(["routes.rule[1].webhook".to_string()]));
}

// === Every problem, each with its key ===

#[test]
fn many_problems_are_all_listed_with_their_keys() {
    let text = r#"
colour = "blue"

[server]
listen = "not an address"
lisen = "0.0.0.0:1"

[upstream]
url = "ftp://127.0.0.1:21"
timeout = "5s"

[clerk]
clock_skew = "5 parsecs"
secret_kye = "sk_test_typo"

[clerk.keys]
max_stael = "1h"
fetch_timeout = "0s"

[routes]
default = "sometimes"
public = ["no-leading-slash", "/ok(.*)"]
[[routes.rule]]
path = "/api(foo)"
colour = "red"
[[routes.rule]]
path = "/x"
bypass = "sometimes"

[mode]
mode = "bypass"
grace_max_expired = "forever"

[admin]
tokn = "x"

[log]
format = "xml"
"#;
    let errors = problems(text, &no_env());
    let expected: BTreeSet<String> = [
        "colour",
        "server.listen",
        "server.lisen",
        "upstream.url",
        "upstream.timeout",
        "clerk",
        "clerk.clock_skew",
        "clerk.secret_kye",
        "clerk.keys.max_stael",
        "clerk.keys.fetch_timeout",
        "routes.default",
        "routes.public[0]",
        "routes.rule[0].path",
        "routes.rule[0].colour",
        "routes.rule[1].bypass",
        "mode.reason",
        "mode.grace_max_expired",
        "admin.tokn",
        "log.format",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(keys_of(&errors), expected, "\n{errors}");
    // Every problem says something, and the Display lists one per line as `key: message`.
    assert!(errors.0.iter().all(|p| !p.message.trim().is_empty()));
    let shown = errors.to_string();
    assert_eq!(shown.lines().count(), errors.0.len());
    for p in &errors.0 {
        assert!(shown.contains(&format!("{}: {}", p.key, p.message)));
    }
    // The messages name what is wrong.
    let by_key = problems_by_key(&errors);
    assert!(by_key["clerk.clock_skew"].contains("5 parsecs"));
    assert!(by_key["routes.public[0]"].contains("no-leading-slash"));
    assert!(by_key["clerk"].contains("no key source"));
    assert!(by_key["mode.reason"].contains("bypass"));
}

#[test]
fn single_problem_table() {
    let cases: &[(&str, &str)] = &[
        ("[mode]\nmode = \"panic\"", "mode.mode"),
        ("[mode]\nmode = \"Enforce\"", "mode.mode"),
        ("[mode]\nmode = \"bypass\"\nreason = \"  \"", "mode.reason"),
        ("[upstream]\nca_file = \"ca.pem\"", "upstream.ca_file"),
        ("[upstream]\nurl = \"https://127.0.0.1:3000\"\nca_file = \"/nonexistent/ca.pem\"", "upstream.ca_file"),
        ("[upstream]\nurl = \"http://127.0.0.1:3000/app\"", "upstream.url"),
        ("[upstream]\nurl = \"not a url\"", "upstream.url"),
        ("[upstream]\nupgrade_protocols = [\"h2c\"]", "upstream.upgrade_protocols"),
        ("[upstream]\nupgrade_protocols = [\"websocket\", \"HTTP/2.0\"]", "upstream.upgrade_protocols"),
        ("[upstream]\nupgrade_protocols = [\"web socket\"]", "upstream.upgrade_protocols"),
        ("[upstream]\nallow_routing_headers = [\"X-Forwarded-Prefix\"]", "upstream.allow_routing_headers"),
        ("[clerk]\napi_url = \"api.clerk.com\"", "clerk.api_url"),
        ("[clerk]\nsign_in_url = \"sign-in\"", "clerk.sign_in_url"),
        ("[clerk]\nsign_in_url = \"//evil.example/sign-in\"", "clerk.sign_in_url"),
        ("[clerk]\nproxy_url = \"ftp://example.com/__clerk\"", "clerk.proxy_url"),
        ("[clerk]\npublishable_key = \"pk_test_Y2xlcmsuZXhhbXBsZS5jb20k\"\nfrontend_api = \"user@clerk.example.com\"", "clerk.frontend_api"),
        ("[clerk]\nfrontend_api = \"clerk.example.com\"", "clerk.frontend_api"),
        ("[clerk]\npublishable_key = \"pk_test_nope\"", "clerk.publishable_key"),
        ("[admin]\nlisten = \"0.0.0.0:8080\"", "admin.listen"),
        ("[admin]\nlisten = \"localhost\"", "admin.listen"),
        ("[state]\nbackend = \"redis\"", "state.redis.url"),
        ("[state]\nbackend = \"s3\"", "state.backend"),
        ("[state.redis]\nurl = \"redis://x\"", "state.redis"),
        ("[log]\nlevel = \"[[[\"", "log.level"),
        ("[server]\ntls_cert = \"c.pem\"", "server.tls_key"),
        ("[server]\ntls_key = \"k.pem\"", "server.tls_cert"),
        ("[server]\nhealth_listen = \"localhost:9902\"", "server.health_listen"),
        // The default server.listen is 0.0.0.0:8080, which holds 127.0.0.1:8080 too.
        ("[server]\nhealth_listen = \"127.0.0.1:8080\"", "server.health_listen"),
        ("[server]\nhealth_listen = \"127.0.0.1:9901\"", "server.health_listen"),
        ("[server]\nlisten = \"127.0.0.1:8080\"\nhealth_listen = \"0.0.0.0:8080\"", "server.health_listen"),
        ("[[routes.rule]]\nmethods = [\"GET\"]", "routes.rule[0].path"),
        ("[[routes.rule]]\npath = \"/x\"\nmethods = [\"G ET\"]", "routes.rule[0].methods"),
        ("[[routes.rule]]\npath = \"/x\"\nrole = \"\"", "routes.rule[0].role"),
        ("[[routes.rule]]\npath = \"/x\"\nwebhook = \"github\"", "routes.rule[0].webhook"),
        ("[clerk.keys]\nrefresh_interval = \"-5s\"", "clerk.keys.refresh_interval"),
    ];
    for (section, key) in cases {
        let text = format!("{JWKS}\n{section}\n");
        // Sections may repeat [clerk]; fold a second [clerk] into the first.
        let text = if section.starts_with("[clerk]") {
            format!("[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\n{}\n", section.trim_start_matches("[clerk]"))
        } else {
            text
        };
        let errors = problems(&text, &no_env());
        assert_eq!(keys_of(&errors), BTreeSet::from([key.to_string()]), "{section}\n{errors}");
    }
}

#[test]
fn the_health_listener_is_off_by_default_and_takes_a_port_of_its_own() {
    assert_eq!(load(JWKS).server.health_listen, None);
    let c = load(&format!("[server]\nhealth_listen = \"0.0.0.0:9902\"\n{JWKS}"));
    assert_eq!(c.server.health_listen, Some("0.0.0.0:9902".parse().unwrap()));
    assert!(c.effective_toml().contains("health_listen = \"0.0.0.0:9902\""));
    // Another address family, or port 0 (any free port), is no clash.
    for other in ["[::1]:8080", "127.0.0.1:0"] {
        let c = load(&format!("[server]\nlisten = \"0.0.0.0:8080\"\nhealth_listen = \"{other}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n{JWKS}"));
        assert_eq!(c.server.health_listen, Some(other.parse().unwrap()));
    }
    let errors = problems(&format!("[server]\nhealth_listen = \"127.0.0.1:9901\"\n{JWKS}"), &no_env());
    assert_eq!(
        problems_by_key(&errors)["server.health_listen"],
        "must differ from admin.listen (127.0.0.1:9901): the health listener serves only /healthz, /readyz and \
         /metrics, on a port of its own"
    );
}

/// Found by the config fuzzer: as a regular expression this field value takes about two minutes
/// and 2 GB to compile (release build), so loading the config stalled until killed. Field values
/// now match literally, and the same filter loads at once.
#[test]
fn a_log_filter_field_value_is_literal_text_not_a_regex() {
    let c = load(&format!("{JWKS}\n[log]\nlevel = \"clerkgate[request{{path=2....................}}]=debug\"\n"));
    assert_eq!(c.log.level, "clerkgate[request{path=2....................}]=debug");
}

#[test]
fn the_emergency_bypass_variable_must_be_a_boolean() {
    let errors = problems(JWKS, &env(&[("CLERK_EMERGENCY_BYPASS", "maybe")]));
    assert_eq!(keys_of(&errors), BTreeSet::from(["CLERK_EMERGENCY_BYPASS".to_string()]));
}

/// A value of the wrong TOML type (`clock_skew = 5`) must still be reported under its dotted key
/// (SPEC §2: "every problem listed, with its key"), and must not hide the other problems.
#[test]
fn a_wrongly_typed_value_is_reported_under_its_key() {
    let text = "[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\nclock_skew = 5\n[server]\nlisen = \"x\"\n";
    let errors = problems(text, &no_env());
    let keys = keys_of(&errors);
    assert!(keys.contains("clerk.clock_skew"), "{errors}");
    assert!(keys.contains("server.lisen"), "{errors}");
}

#[test]
fn toml_syntax_errors_are_one_file_problem() {
    for text in ["[server", "a = ", "[clerk]\n[clerk]\n", "x = \"unterminated"] {
        let errors = problems(text, &no_env());
        assert_eq!(errors.0.len(), 1, "{text}");
        assert_eq!(errors.0[0].key, "(file)", "{text}");
    }
}

// === Durations ===

#[test]
fn zero_durations_are_refused_except_clock_skew() {
    let keys = [
        ("server", "header_read_timeout"),
        ("server", "shutdown_grace"),
        ("upstream", "connect_timeout"),
        ("upstream", "response_timeout"),
        ("clerk.keys", "refresh_interval"),
        ("clerk.keys", "unknown_kid_cooldown"),
        ("clerk.keys", "max_stale"),
        ("clerk.keys", "fetch_timeout"),
        ("mode", "grace_max_expired"),
        ("mode", "max_override_ttl"),
    ];
    for (section, key) in keys {
        for zero in ["0s", "0ms", "0"] {
            let text = format!("{JWKS}\n[{section}]\n{key} = \"{zero}\"\n");
            let errors = problems(&text, &no_env());
            assert_eq!(keys_of(&errors), BTreeSet::from([format!("{section}.{key}")]), "{section}.{key} = {zero}");
        }
        // Short positive ones are accepted (tests use them).
        let text = format!("{JWKS}\n[{section}]\n{key} = \"1ms\"\n");
        load(&text);
    }
    let c = load(&format!("{JWKS}clock_skew = \"0s\"\n"));
    assert_eq!(c.clerk.clock_skew, Duration::ZERO);
}

#[test]
fn duration_formats() {
    for (text, expected) in [
        ("250ms", Duration::from_millis(250)),
        ("5s", Duration::from_secs(5)),
        ("10m", Duration::from_secs(600)),
        ("24h", Duration::from_secs(86_400)),
        ("1h 30m", Duration::from_secs(5_400)),
        (" 7s ", Duration::from_secs(7)),
    ] {
        let c = load(&format!("{JWKS}[clerk.keys]\nmax_stale = \"{text}\"\n"));
        assert_eq!(c.clerk.keys.max_stale, expected, "{text}");
    }
}

#[test]
fn unwise_values_are_warned_about_not_refused() {
    let c = load(&format!(
        "{JWKS}clock_skew = \"2m\"\n[clerk.keys]\nunknown_kid_cooldown = \"100ms\"\nmax_stale = \"1m\"\n"
    ));
    let w = c.warnings.join("\n");
    assert!(w.contains("clerk.clock_skew"), "{w}");
    assert!(w.contains("clerk.keys.unknown_kid_cooldown"), "{w}");
    assert!(w.contains("clerk.keys.max_stale"), "{w}");
}

// === Secrets: environment, then *_file, then inline ===

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        Files { dir: tempfile::tempdir().unwrap() }
    }
    fn write(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }
}

#[test]
fn secret_key_precedence() {
    let files = Files::new();
    let file = files.write("sk", "sk_from_file\n");
    let missing = files.dir.path().join("nope").display().to_string();
    let inline = "secret_key = \"sk_inline\"\n";
    let from_file = format!("secret_key_file = {}\n", toml_string(&file));
    // (name, clerk body, env, expected secret)
    let cases: Vec<SecretCase> = vec![
        ("inline", inline.to_string(), vec![], "sk_inline"),
        ("file (trimmed)", from_file.clone(), vec![], "sk_from_file"),
        ("env over inline", inline.to_string(), vec![("CLERK_SECRET_KEY", "sk_env")], "sk_env"),
        ("env over file", from_file.clone(), vec![("CLERK_SECRET_KEY", "sk_env")], "sk_env"),
        ("env alone", String::new(), vec![("CLERK_SECRET_KEY", "sk_env")], "sk_env"),
        ("empty env is unset", from_file.clone(), vec![("CLERK_SECRET_KEY", "")], "sk_from_file"),
        // The env wins even when the file is unreadable... no: the file is not read at all.
        (
            "env over an unreadable file",
            format!("secret_key_file = {}\n", toml_string(&missing)),
            vec![("CLERK_SECRET_KEY", "sk_env")],
            "sk_env",
        ),
    ];
    for (name, body, pairs, expected) in cases {
        let c = Config::from_toml(&format!("[clerk]\n{body}"), &env(&pairs)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.clerk.secret_key.as_ref().unwrap().expose(), expected, "{name}");
        // The Backend API JWKS is derived from it and authenticated with it.
        let jwks = c.clerk.jwks.as_ref().unwrap();
        assert_eq!(jwks.url, "https://api.clerk.com/v1/jwks", "{name}");
        assert_eq!(jwks.bearer.as_ref().unwrap().expose(), expected, "{name}");
    }
}

#[test]
fn secret_problems() {
    let files = Files::new();
    let file = files.write("sk", "sk_from_file");
    let missing = files.dir.path().join("nope").display().to_string();
    let both = format!(
        "[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\nsecret_key = \"sk_inline\"\nsecret_key_file = {}\n",
        toml_string(&file)
    );
    assert_eq!(keys_of(&problems(&both, &no_env())), BTreeSet::from(["clerk.secret_key_file".to_string()]));
    // Both set is a problem even when the environment would win.
    assert_eq!(
        keys_of(&problems(&both, &env(&[("CLERK_SECRET_KEY", "sk_env")]))),
        BTreeSet::from(["clerk.secret_key_file".to_string()])
    );
    let unreadable =
        format!("[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\nsecret_key_file = {}\n", toml_string(&missing));
    let errors = problems(&unreadable, &no_env());
    assert_eq!(keys_of(&errors), BTreeSet::from(["clerk.secret_key_file".to_string()]));
    assert!(errors.0[0].message.contains("nope"));
    let both_admin = format!("{JWKS}[admin]\ntoken = \"a\"\ntoken_file = {}\n", toml_string(&file));
    assert_eq!(keys_of(&problems(&both_admin, &no_env())), BTreeSet::from(["admin.token_file".to_string()]));
    let both_jwt = format!(
        "[clerk]\njwt_key = {}\njwt_key_file = {}\n",
        toml_string(&signing_keys()[0].public_pem()),
        toml_string(&file)
    );
    let errors = problems(&both_jwt, &no_env());
    assert!(keys_of(&errors).contains("clerk.jwt_key_file"), "{errors}");
}

#[test]
fn files_a_config_names_are_bounded_and_recorded() {
    let files = Files::new();
    let huge = files.write("huge", &"s".repeat(2 * 1024 * 1024));
    let text =
        format!("[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\nsecret_key_file = {}\n", toml_string(&huge));
    let errors = problems(&text, &no_env());
    assert_eq!(keys_of(&errors), BTreeSet::from(["clerk.secret_key_file".to_string()]));
    assert!(errors.0[0].message.contains("larger than"), "{errors}");

    let sk = files.write("sk", "sk_from_file");
    let text = format!("[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\nsecret_key_file = {}\n", toml_string(&sk));
    let config = Config::from_toml(&text, &no_env()).expect("valid");
    assert_eq!(config.origin.files, vec![std::path::PathBuf::from(&sk)]);
}

#[test]
fn jwt_key_precedence() {
    let [a, b, c] = signing_keys();
    let (pem_a, pem_b, pem_c) = (a.public_pem(), b.public_pem(), c.public_pem());
    let n_of = |pem: &str| VerifyingKey::from_pem(pem, None).unwrap().n;
    let files = Files::new();
    let file_b = files.write("jwt.pem", &pem_b);
    let inline = format!("jwt_key = {}\n", toml_string(&pem_a));
    let from_file = format!("jwt_key_file = {}\n", toml_string(&file_b));
    let cases: Vec<SecretCase> = vec![
        ("inline", inline.clone(), vec![], &pem_a),
        ("file", from_file.clone(), vec![], &pem_b),
        ("env over file", from_file, vec![("CLERK_JWT_KEY", &pem_c)], &pem_c),
        ("env over inline", inline, vec![("CLERK_JWT_KEY", &pem_c)], &pem_c),
    ];
    for (name, body, pairs, expected) in cases {
        let cfg =
            Config::from_toml(&format!("[clerk]\n{body}"), &env(&pairs)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cfg.clerk.jwt_key.as_ref().unwrap().n, n_of(expected), "{name}");
        // A networkless key alone configures no remote JWKS.
        assert!(cfg.clerk.jwks.is_none(), "{name}");
    }
    // The PEM as Clerk's dashboard shows it (bare base64 on one line) also loads.
    let bare: String = pem_a.lines().filter(|l| !l.starts_with("-----")).collect();
    let cfg = Config::from_toml("", &env(&[("CLERK_JWT_KEY", &bare)])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.clerk.jwt_key.as_ref().unwrap().n, n_of(&pem_a));
    // A PEM that is not a key is a problem under clerk.jwt_key, and no "no key source" on top.
    let errors =
        problems("[clerk]\njwt_key = \"-----BEGIN PUBLIC KEY-----\\nAAAA\\n-----END PUBLIC KEY-----\"\n", &no_env());
    assert_eq!(keys_of(&errors), BTreeSet::from(["clerk.jwt_key".to_string()]));
}

/// `VerifyingKey::from_pem` means to accept a PEM whose newlines arrive as literal `\n` (how a
/// PEM often lands in one environment variable): it has a `.replace("\\n", "")` for that. But it
/// drops every line starting with `-----` *before* that replacement, so a one-line PEM — armour
/// and body on the same line — is filtered away entirely and refused.
#[test]
fn a_one_line_pem_with_escaped_newlines_loads() {
    let pem = signing_keys()[0].public_pem();
    let escaped = pem.trim_end().replace('\n', "\\n");
    assert!(!escaped.contains('\n'));
    let cfg = Config::from_toml("", &env(&[("CLERK_JWT_KEY", &escaped)])).unwrap_or_else(|e| panic!("{escaped}: {e}"));
    assert_eq!(cfg.clerk.jwt_key.as_ref().unwrap().n, VerifyingKey::from_pem(&pem, None).unwrap().n);
}

#[test]
fn admin_token_precedence() {
    let files = Files::new();
    let file = files.write("admin", "  token-from-file-0123456789 \n");
    let inline = "[admin]\ntoken = \"token-inline-0123456789\"\n".to_string();
    let from_file = format!("[admin]\ntoken_file = {}\n", toml_string(&file));
    let cases: Vec<SecretCase> = vec![
        ("inline", inline.clone(), vec![], "token-inline-0123456789"),
        ("file", from_file.clone(), vec![], "token-from-file-0123456789"),
        ("env over file", from_file, vec![("CLERKGATE_ADMIN_TOKEN", "token-env-0123456789")], "token-env-0123456789"),
        ("env over inline", inline, vec![("CLERKGATE_ADMIN_TOKEN", "token-env-0123456789")], "token-env-0123456789"),
    ];
    for (name, body, pairs, expected) in cases {
        let c = Config::from_toml(&format!("{JWKS}{body}"), &env(&pairs)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.admin.token.as_ref().unwrap().expose(), expected, "{name}");
    }
    let short = load(&format!("{JWKS}[admin]\ntoken = \"short\"\n"));
    assert!(short.warnings.iter().any(|w| w.starts_with("admin.token")));
}

#[test]
fn webhook_secret_precedence() {
    let files = Files::new();
    let file = files.write("wh", "whsec_file\n");
    let c =
        Config::from_toml(&format!("{JWKS}webhook_signing_secret_file = {}\n", toml_string(&file)), &no_env()).unwrap();
    assert_eq!(c.clerk.webhook_signing_secrets[0].expose(), "whsec_file");
    let c = Config::from_toml(
        &format!("{JWKS}webhook_signing_secret = \"whsec_aW5saW5l\"\n"),
        &env(&[("CLERK_WEBHOOK_SIGNING_SECRET", "whsec_ZW52")]),
    )
    .unwrap();
    assert_eq!(c.clerk.webhook_signing_secrets[0].expose(), "whsec_ZW52");
}

#[test]
fn several_webhook_secrets_for_a_rotation() {
    let exposed =
        |c: &Config| c.clerk.webhook_signing_secrets.iter().map(|s| s.expose().to_string()).collect::<Vec<_>>();
    let two = vec!["whsec_bmV3".to_string(), "whsec_b2xk".to_string()];
    let list =
        Config::from_toml(&format!("{JWKS}webhook_signing_secret = [\"whsec_bmV3\", \"whsec_b2xk\"]\n"), &no_env());
    assert_eq!(exposed(&list.unwrap()), two);
    let spaced = Config::from_toml(&format!("{JWKS}webhook_signing_secret = \"whsec_bmV3 whsec_b2xk\"\n"), &no_env());
    assert_eq!(exposed(&spaced.unwrap()), two);
    let files = Files::new();
    let file = files.write("wh", "whsec_bmV3\nwhsec_b2xk\n");
    let from_file =
        Config::from_toml(&format!("{JWKS}webhook_signing_secret_file = {}\n", toml_string(&file)), &no_env());
    assert_eq!(exposed(&from_file.unwrap()), two);
    let from_env = Config::from_toml(JWKS, &env(&[("CLERK_WEBHOOK_SIGNING_SECRET", "whsec_bmV3 whsec_b2xk")]));
    let from_env = from_env.unwrap();
    assert_eq!(exposed(&from_env), two);
    let printed: toml::Value = toml::from_str(&from_env.effective_toml()).unwrap();
    assert_eq!(printed["clerk"]["webhook_signing_secret"].as_array().map(Vec::len), Some(2));
    // A bad one among several is named by its place.
    let errors = problems(&format!("{JWKS}webhook_signing_secret = [\"whsec_bmV3\", \"whsec_?\"]\n"), &no_env());
    assert!(
        errors.0.iter().any(|p| p.key == "clerk.webhook_signing_secret" && p.message.starts_with("secret 2 of 2:")),
        "{errors:?}"
    );
    // The upstream's secret, and the journal's bounds.
    let c = Config::from_toml(
        &format!("{JWKS}upstream_webhook_secret = \"whsec_dXA=\"\n[state]\nwebhook_journal_max_mib = 5\nwebhook_journal_max_age = \"2d\"\n"),
        &no_env(),
    )
    .unwrap();
    assert_eq!(c.clerk.upstream_webhook_secret.as_ref().map(|s| s.expose()), Some("whsec_dXA="));
    assert_eq!((c.state.webhook_journal_max_bytes, c.state.webhook_journal_max_age.as_secs()), (5 << 20, 2 * 86_400));
    let errors = problems(
        &format!("{JWKS}upstream_webhook_secret = \"nope!\"\n[state]\nwebhook_journal_max_mib = 0\n"),
        &no_env(),
    );
    assert_eq!(
        keys_of(&errors),
        BTreeSet::from(["clerk.upstream_webhook_secret".to_string(), "state.webhook_journal_max_mib".to_string()])
    );
}

/// `clerk.webhook_gap_window`: a day by default, any positive duration, printed by check-config.
#[test]
fn webhook_gap_window() {
    assert_eq!(load(JWKS).clerk.webhook_gap_window, Duration::from_secs(24 * 3600));
    let c = load(&format!("{JWKS}webhook_gap_window = \"6h\"\n"));
    assert_eq!(c.clerk.webhook_gap_window, Duration::from_secs(6 * 3600));
    let printed: toml::Value = toml::from_str(&c.effective_toml()).unwrap();
    assert_eq!(printed["clerk"]["webhook_gap_window"].as_str(), Some("6h"));
    for bad in ["0s", "a while"] {
        let errors = problems(&format!("{JWKS}webhook_gap_window = \"{bad}\"\n"), &no_env());
        assert_eq!(keys_of(&errors), BTreeSet::from(["clerk.webhook_gap_window".to_string()]), "{bad}");
    }
}

// === Environment switches ===

#[test]
fn emergency_bypass_env() {
    for (value, expected) in
        [("true", true), ("TRUE", true), ("True", true), ("1", true), ("false", false), ("0", false), ("", false)]
    {
        let c = Config::from_toml(JWKS, &env(&[("CLERK_EMERGENCY_BYPASS", value)]))
            .unwrap_or_else(|e| panic!("{value:?}: {e}"));
        assert_eq!(c.mode.emergency_bypass_env, expected, "{value:?}");
        // The file's own mode is untouched.
        assert_eq!(c.mode.mode, Mode::Enforce);
    }
}

#[test]
fn api_url_and_jwks_url() {
    // (name, clerk body, env, expected jwks url or None)
    let cases: Vec<UrlCase> = vec![
        ("secret key → Backend API JWKS", "secret_key = \"sk\"", vec![], Some("https://api.clerk.com/v1/jwks")),
        (
            "custom api_url, trailing slash",
            "secret_key = \"sk\"\napi_url = \"https://api.example.com/\"",
            vec![],
            Some("https://api.example.com/v1/jwks"),
        ),
        (
            "CLERK_API_URL wins",
            "secret_key = \"sk\"\napi_url = \"https://api.example.com\"",
            vec![("CLERK_API_URL", "http://127.0.0.1:7")],
            Some("http://127.0.0.1:7/v1/jwks"),
        ),
        (
            "explicit jwks_url wins",
            "secret_key = \"sk\"\njwks_url = \"https://clerk.example.com/.well-known/jwks.json\"",
            vec![],
            Some("https://clerk.example.com/.well-known/jwks.json"),
        ),
        (
            "jwks_url without secret",
            "jwks_url = \"https://clerk.example.com/.well-known/jwks.json\"",
            vec![],
            Some("https://clerk.example.com/.well-known/jwks.json"),
        ),
    ];
    for (name, body, pairs, expected) in cases {
        let c =
            Config::from_toml(&format!("[clerk]\n{body}\n"), &env(&pairs)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.clerk.jwks.as_ref().map(|j| j.url.as_str()), expected, "{name}");
    }
    // jwt_key only: no JWKS, even with an api_url.
    let pem = signing_keys()[0].public_pem();
    let c = Config::from_toml(
        &format!("[clerk]\napi_url = \"https://api.example.com\"\njwt_key = {}\n", toml_string(&pem)),
        &no_env(),
    )
    .unwrap();
    assert!(c.clerk.jwks.is_none());
    // api_url alone is not a key source.
    let errors = problems("[clerk]\napi_url = \"https://api.example.com\"\n", &no_env());
    assert_eq!(keys_of(&errors), BTreeSet::from(["clerk".to_string()]));
    // A bad jwks_url is reported under its key.
    let errors = problems("[clerk]\njwks_url = \"file:///etc/passwd\"\n", &no_env());
    assert_eq!(keys_of(&errors), BTreeSet::from(["clerk.jwks_url".to_string()]));
}

// === Publishable keys ===

#[test]
fn publishable_key_parsing() {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let valid = [
        (PK_LIVE.to_string(), "clerk.inspired.puma-74.lcl.dev", true),
        (PK_TEST.to_string(), "clerk.inspired.puma-74.lcl.dev", false),
        (
            "pk_live_ZmFrZS1jbGVyay10ZXN0LmNsZXJrLmFjY291bnRzLmRldiQ=".to_string(),
            "fake-clerk-test.clerk.accounts.dev",
            true,
        ),
        ("pk_test_Y2xlcmsuY2xlcmsuZGV2JA".to_string(), "clerk.clerk.dev", false),
        (format!("pk_test_{}", b64("x.y$")), "x.y", false),
    ];
    for (raw, fapi, production) in valid {
        let pk = parse_publishable_key(&raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(pk.frontend_api, fapi, "{raw}");
        assert_eq!(pk.production, production, "{raw}");
        assert_eq!(pk.raw, raw);
        assert_eq!(pk.cookie_suffix, cookie_suffix(&raw));
    }
    let invalid = [
        String::new(),
        "pk_test".to_string(),
        "pk_test_".to_string(),
        "pk_prod_Y2xlcmsuY2xlcmsuZGV2JA".to_string(),
        "sk_test_Y2xlcmsuY2xlcmsuZGV2JA".to_string(),
        "PK_TEST_Y2xlcmsuY2xlcmsuZGV2JA".to_string(),
        "pk_test_Y2xlcmsuY2xlcmsuZGV2JA_extra".to_string(),
        "pk_test_!!!!".to_string(),
        format!("pk_test_{}", b64("clerk.example.com")),
        format!("pk_test_{}", b64("clerk.example.com$$")),
        format!("pk_test_{}", b64("clerk$.example.com$")),
        format!("pk_test_{}", b64("localhost$")),
        format!("pk_test_{}", base64::engine::general_purpose::STANDARD.encode([0xff, b'.', b'$'])),
    ];
    for raw in invalid {
        assert!(parse_publishable_key(&raw).is_err(), "{raw:?} should be refused");
    }
}

#[test]
fn publishable_key_from_file_or_env() {
    let c = load(&format!("{JWKS}publishable_key = \"{PK_TEST}\"\n"));
    let pk = c.clerk.publishable_key.as_ref().unwrap();
    assert!(!pk.production);
    assert_eq!(pk.cookie_suffix, "vWCgMp3A");
    let c = Config::from_toml(
        &format!("{JWKS}publishable_key = \"{PK_TEST}\"\n"),
        &env(&[("CLERK_PUBLISHABLE_KEY", PK_LIVE)]),
    )
    .unwrap();
    assert!(c.clerk.publishable_key.as_ref().unwrap().production);
    // A bad key from the environment is blamed on the variable, which is what needs fixing.
    let errors = problems(JWKS, &env(&[("CLERK_PUBLISHABLE_KEY", "pk_live_garbage")]));
    assert_eq!(keys_of(&errors), BTreeSet::from(["CLERK_PUBLISHABLE_KEY".to_string()]));
}

// === [state.redis] (issue #14) ===

/// A config with `backend = "redis"` and these `[state.redis]` lines.
fn redis_text(lines: &str) -> String {
    format!("{JWKS}[state]\nbackend = \"redis\"\n[state.redis]\n{lines}\n")
}

fn redis_of(c: &Config) -> &RedisConfig {
    match &c.state.backend {
        StateBackend::Redis(r) => r,
        other => panic!("expected the redis backend, got {other:?}"),
    }
}

#[test]
fn the_redis_backend_takes_its_defaults_and_the_pod_name() {
    let c = Config::from_toml(&redis_text("url = \"redis://redis:6379\""), &env(&[("POD_NAME", "web-7d9f-abc")]))
        .unwrap_or_else(|e| panic!("{e}"));
    let r = redis_of(&c);
    assert_eq!(r.url, "redis://redis:6379");
    assert_eq!((r.username.as_deref(), r.password.is_none()), (None, true));
    assert_eq!((r.key_prefix.as_str(), r.fleet.as_str()), ("clerkgate", "default"));
    assert_eq!(r.gateway_id, "web-7d9f-abc");
    assert_eq!((r.heartbeat, r.resync_interval), (Duration::from_secs(5), Duration::from_secs(60)));
    assert_eq!(r.audit_buffer_max, 10_000);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // check-config shows the block, says where the id came from, and loads back to itself.
    let out = c.effective_toml();
    assert!(out.contains("[state.redis]\n"), "{out}");
    assert!(out.contains("gateway_id = \"web-7d9f-abc\"  # from POD_NAME\n"), "{out}");
    let again = load(&out);
    assert_eq!(redis_of(&again), r);
    assert_eq!(again.effective_toml().replace("  # from POD_NAME", ""), out.replace("  # from POD_NAME", ""));
}

#[test]
fn every_redis_key_is_read() {
    let c = load(&redis_text(
        "url = \"valkeys://gw@redis.example.com:6380/2\"\nkey_prefix = \"cg\"\nfleet = \"prod-eu\"\n\
         gateway_id = \"edge-1\"\nheartbeat = \"2s\"\nresync_interval = \"30s\"\naudit_buffer_max = 500",
    ));
    let r = redis_of(&c);
    assert_eq!(r.url, "valkeys://gw@redis.example.com:6380/2");
    // A user named in the URL is the user.
    assert_eq!(r.username.as_deref(), Some("gw"));
    assert_eq!((r.key_prefix.as_str(), r.fleet.as_str(), r.gateway_id.as_str()), ("cg", "prod-eu", "edge-1"));
    assert_eq!(
        (r.heartbeat, r.resync_interval, r.audit_buffer_max),
        (Duration::from_secs(2), Duration::from_secs(30), 500)
    );
    for scheme in ["redis", "rediss", "valkey", "valkeys"] {
        load(&redis_text(&format!("url = \"{scheme}://127.0.0.1:6379\"\nusername = \"clerkgate-gw\"")));
    }
}

#[test]
fn the_gateway_id_is_the_key_else_the_pod_name_else_the_hostname() {
    let pod = [("POD_NAME", "web-0"), ("HOSTNAME", "ignored")];
    let id = |lines: &str, pairs: &[(&str, &str)]| {
        let c = Config::from_toml(&redis_text(&format!("url = \"redis://r\"\n{lines}")), &env(pairs))
            .unwrap_or_else(|e| panic!("{e}"));
        redis_of(&c).gateway_id.clone()
    };
    assert_eq!(id("gateway_id = \"edge-1\"", &pod), "edge-1");
    // The example config writes `gateway_id = ""` for "the default".
    assert_eq!(id("gateway_id = \"\"", &pod), "web-0");
    assert_eq!(id("", &pod), "web-0");
    let no_pod = [("HOSTNAME", "host-from-env")];
    let host = super::validate::hostname(&env(&no_pod)).expect("a hostname");
    assert!(!host.is_empty());
    assert_eq!(id("", &no_pod), host);
    // A bad POD_NAME is blamed on the variable.
    let errors = problems(&redis_text("url = \"redis://r\""), &env(&[("POD_NAME", "web 0")]));
    assert_eq!(keys_of(&errors), BTreeSet::from(["state.redis.gateway_id".to_string()]));
    assert!(errors.0[0].message.contains("from POD_NAME"), "{errors}");
}

#[test]
fn each_redis_problem_is_listed_under_its_key() {
    let files = Files::new();
    let empty = files.write("empty", " \n");
    let missing = files.dir.path().join("nope").display().to_string();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "state.redis.url"),
        ("url = \"http://redis:6379\"".into(), "state.redis.url"),
        ("url = \"redis+unix:///run/redis.sock\"".into(), "state.redis.url"),
        ("url = \"redis:6379\"".into(), "state.redis.url"),
        ("url = \"redis://0.0.0.0:6379\"".into(), "state.redis.url"),
        ("url = \"redis://redis:6379/zero\"".into(), "state.redis.url"),
        ("url = \"redis://:hunter2secret@redis:6379\"".into(), "state.redis.url"),
        ("url = \"redis://gw:hunter2secret@redis:6379\"".into(), "state.redis.url"),
        ("url = \"redis://gw@redis\"\nusername = \"other\"".into(), "state.redis.username"),
        ("url = \"redis://r\"\nusername = \"\"".into(), "state.redis.username"),
        ("url = \"redis://r\"\nusername = \"clerk gate\"".into(), "state.redis.username"),
        (format!("url = \"redis://r\"\npassword_file = {}", toml_string(&empty)), "state.redis.password_file"),
        (format!("url = \"redis://r\"\npassword_file = {}", toml_string(&missing)), "state.redis.password_file"),
        ("url = \"redis://r\"\nkey_prefix = \"\"".into(), "state.redis.key_prefix"),
        ("url = \"redis://r\"\nkey_prefix = \"cg{x}\"".into(), "state.redis.key_prefix"),
        ("url = \"redis://r\"\nkey_prefix = \"c g\"".into(), "state.redis.key_prefix"),
        ("url = \"redis://r\"\nfleet = \"{prod}\"".into(), "state.redis.fleet"),
        ("url = \"redis://r\"\nfleet = \"prod\\n\"".into(), "state.redis.fleet"),
        ("url = \"redis://r\"\ngateway_id = \"edge 1\"".into(), "state.redis.gateway_id"),
        (format!("url = \"redis://r\"\ngateway_id = \"{}\"", "g".repeat(254)), "state.redis.gateway_id"),
        ("url = \"redis://r\"\nheartbeat = \"0s\"".into(), "state.redis.heartbeat"),
        ("url = \"redis://r\"\nheartbeat = \"often\"".into(), "state.redis.heartbeat"),
        ("url = \"redis://r\"\nresync_interval = \"2s\"".into(), "state.redis.resync_interval"),
        ("url = \"redis://r\"\nheartbeat = \"30s\"\nresync_interval = \"20s\"".into(), "state.redis.resync_interval"),
        ("url = \"redis://r\"\naudit_buffer_max = 99".into(), "state.redis.audit_buffer_max"),
        ("url = \"redis://r\"\naudit_buffer_max = 1000001".into(), "state.redis.audit_buffer_max"),
        ("url = \"redis://r\"\npasswrd_file = \"x\"".into(), "state.redis.passwrd_file"),
    ];
    for (lines, key) in cases {
        let errors = problems(&redis_text(&lines), &env(&[("POD_NAME", "web-0")]));
        assert_eq!(keys_of(&errors), BTreeSet::from([key.to_string()]), "{lines}\n{errors}");
        // A password in the URL is never repeated back.
        assert!(!errors.to_string().contains("hunter2secret"), "{errors}");
    }
    let errors = problems(&redis_text("url = \"redis://r\"\npasswrd_file = \"x\""), &env(&[("POD_NAME", "p")]));
    assert!(errors.0[0].message.contains("did you mean `state.redis.password_file`?"), "{errors}");
    let errors = problems(&redis_text("url = \"redis://:pw@r\""), &env(&[("POD_NAME", "p")]));
    assert!(errors.0[0].message.contains("state.redis.password_file"), "{errors}");
    // The block with the file backend.
    for backend in ["", "backend = \"file\"\n"] {
        let text = format!("{JWKS}[state]\n{backend}[state.redis]\nurl = \"redis://r\"\n");
        let errors = problems(&text, &no_env());
        assert_eq!(keys_of(&errors), BTreeSet::from(["state.redis".to_string()]), "{errors}");
        assert!(errors.0[0].message.contains("only applies with backend = \"redis\""), "{errors}");
    }
}

#[test]
fn a_heartbeat_outside_1s_to_60s_is_warned_about() {
    for (value, word) in [("500ms", "under 1s"), ("2m", "over 60s")] {
        let c = load(&redis_text(&format!(
            "url = \"redis://r\"\ngateway_id = \"g\"\nheartbeat = \"{value}\"\nresync_interval = \"5m\""
        )));
        assert!(
            c.warnings.iter().any(|w| w.starts_with("state.redis.heartbeat: ") && w.contains(word)),
            "{:?}",
            c.warnings
        );
    }
}

#[test]
fn the_redis_password_comes_from_its_file_and_is_never_shown() {
    let files = Files::new();
    let path = files.write("redis-password", "s3cret-redis-pass\n");
    let text = redis_text(&format!("url = \"redis://r\"\ngateway_id = \"g\"\npassword_file = {}", toml_string(&path)));
    let c = load(&text);
    assert_eq!(redis_of(&c).password.as_ref().map(Secret::expose), Some("s3cret-redis-pass"));
    // The reload watcher sees the file.
    assert_eq!(c.origin.files, vec![PathBuf::from(&path)]);
    let out = c.effective_toml();
    assert!(!out.contains("s3cret") && !format!("{c:?}").contains("s3cret"), "{out}");
    let parsed: toml::Table = toml::from_str(&out).unwrap();
    assert_eq!(parsed["state"]["redis"]["password"].as_str(), Some("[redacted]"));
    // A rotated password changes the config's hash.
    files.write("redis-password", "another-pass");
    assert_ne!(load(&text).origin.hash, c.origin.hash);
}

#[test]
fn a_change_of_backend_or_of_any_redis_key_waits_for_a_restart() {
    let files = Files::new();
    let pw = files.write("pw", "one");
    let file = load(JWKS);
    let base = "url = \"redis://r\"\ngateway_id = \"g\"";
    let redis = load(&redis_text(base));
    assert!(redis.restart_needed(&redis).is_empty());
    let keys = |c: &Config, running: &Config| -> Vec<String> {
        c.restart_needed(running).iter().map(|l| l.split(':').next().unwrap_or_default().to_string()).collect()
    };
    assert_eq!(keys(&redis, &file), ["state.backend"]);
    assert_eq!(keys(&file, &redis), ["state.backend"]);
    for (line, key) in [
        ("url = \"redis://r2\"\ngateway_id = \"g\"".to_string(), "state.redis.url"),
        (format!("{base}\nusername = \"u\""), "state.redis.username"),
        (format!("{base}\npassword_file = {}", toml_string(&pw)), "state.redis.password_file"),
        (format!("{base}\nkey_prefix = \"cg\""), "state.redis.key_prefix"),
        (format!("{base}\nfleet = \"prod\""), "state.redis.fleet"),
        ("url = \"redis://r\"\ngateway_id = \"h\"".to_string(), "state.redis.gateway_id"),
        (format!("{base}\nheartbeat = \"2s\""), "state.redis.heartbeat"),
        (format!("{base}\nresync_interval = \"2m\""), "state.redis.resync_interval"),
        (format!("{base}\naudit_buffer_max = 100"), "state.redis.audit_buffer_max"),
    ] {
        assert_eq!(keys(&load(&redis_text(&line)), &redis), [key], "{line}");
    }
}

/// The commented `[state.redis]` block of config/sidecar.toml, uncommented, is a valid config
/// but for the mounted files this machine does not have.
#[test]
fn the_sidecar_examples_redis_block_uncommented_loads() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/sidecar.toml")).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest) if rest.starts_with("backend =") || rest.starts_with("[state.redis]") => rest,
            Some(rest)
                if ["url", "username", "password_file", "key_prefix", "fleet", "gateway_id"]
                    .iter()
                    .any(|k| rest.starts_with(&format!("{k} ="))) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(uncommented.contains("\nbackend = \"redis\"\n") && uncommented.contains("\n[state.redis]\n"));
    let errors = problems(&uncommented, &env(&[("POD_NAME", "web-0")]));
    let files = ["clerk.secret_key_file", "admin.token_file", "state.redis.password_file"];
    assert_eq!(keys_of(&errors), files.iter().map(|k| k.to_string()).collect(), "{errors}");
}

// === Redaction ===

#[test]
fn effective_toml_never_shows_a_secret() {
    let files = Files::new();
    let admin_file = files.write("admin", "admin-secret-from-file-9876\n");
    let secrets = [
        "sk_live_inline_secret_123",
        "whsec_aW5saW5lIHdlYmhvb2sgc2VjcmV0",
        "admin-secret-from-file-9876",
        "sk_live_env_secret_456",
    ];
    let text = format!(
        "[clerk]\nsecret_key = \"{}\"\nwebhook_signing_secret = \"{}\"\npublishable_key = \"{PK_LIVE}\"\njwt_key = {}\n[admin]\ntoken_file = {}\n",
        secrets[0],
        secrets[1],
        toml_string(&signing_keys()[0].public_pem()),
        toml_string(&admin_file),
    );
    for e in [no_env(), env(&[("CLERK_SECRET_KEY", secrets[3])])] {
        let c = Config::from_toml(&text, &e).unwrap_or_else(|e| panic!("{e}"));
        let out = c.effective_toml();
        let debug = format!("{c:?}");
        for s in secrets {
            assert!(!out.contains(s), "effective config shows {s}:\n{out}");
            assert!(!debug.contains(s), "Debug shows {s}");
        }
        assert!(!out.contains("BEGIN PUBLIC KEY"));
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(parsed["clerk"]["secret_key"].as_str(), Some("[redacted]"));
        assert_eq!(parsed["clerk"]["webhook_signing_secret"].as_str(), Some("[redacted]"));
        assert_eq!(parsed["admin"]["token"].as_str(), Some("[redacted]"));
        // The publishable key is public and shown as is.
        assert_eq!(parsed["clerk"]["publishable_key"].as_str(), Some(PK_LIVE));
    }
}

#[test]
fn effective_toml_of_a_secret_free_config_loads_back_to_itself() {
    let text = format!(
        "{JWKS}authorized_parties = [\"https://app.example.com\"]\nissuer = \"https://clerk.example.com/\"\n\
         [clerk.keys]\nmax_stale = \"90m\"\n\
         [routes]\ndefault = \"public\"\npublic = [\"/\", \"/docs(.*)\"]\n\
         [[routes.rule]]\npath = \"/api/admin(.*)\"\nmethods = [\"get\", \"POST\"]\nrole = \"org:admin\"\nbypass = \"never\"\n\
         [mode]\nmode = \"grace\"\nreason = \"clerk outage\"\n"
    );
    let first = load(&text);
    let out = first.effective_toml();
    let second = load(&out);
    assert_eq!(second.effective_toml(), out);
    assert_eq!(second.clerk.issuer.as_deref(), Some("https://clerk.example.com"));
    assert_eq!(second.mode.mode, Mode::Grace);
    assert_eq!(second.routes.default(), Access::Public);
    assert_eq!(second.clerk.keys.max_stale, Duration::from_secs(5400));
}

#[test]
fn the_hash_changes_with_a_secret_file() {
    let files = Files::new();
    let path = files.write("sk", "sk_one");
    let text = format!("[clerk]\nsecret_key_file = {}\n", toml_string(&path));
    let one = load(&text).origin.hash;
    files.write("sk", "sk_two");
    let two = load(&text).origin.hash;
    assert_ne!(one, two);
    assert_eq!(one.len(), 16);
    assert!(!one.contains("sk_"));
}

// === Issue #10: every problem names the place to fix, and what to do ===

/// Item 3: a syntax error names its line and column and shows the line with a caret under the
/// place, as cargo does; the column counts characters (a tab or an `é` is one).
#[test]
fn a_toml_syntax_error_names_its_line_and_column() {
    // (text, line, column, the line as shown, the caret line as shown)
    let cases: &[(&str, usize, usize, &str, &str)] = &[
        (
            "[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\n\n[clerk.keys]\nmax_stale = 3650d\n",
            5,
            13,
            "    5 | max_stale = 3650d",
            "      |             ^^^^^",
        ),
        ("[mode]\nmode = \"bypass\nreason = \"x\"\n", 2, 15, "    2 | mode = \"bypass", "      |               ^"),
        ("[server]\n\tlisten = \"a\" x\n", 2, 15, "    2 | \tlisten = \"a\" x", "      | \t             ^"),
        ("a = \"é\" é\n", 1, 9, "    1 | a = \"é\" é", "      |         ^"),
        ("[server\n", 1, 8, "    1 | [server", "      |        ^"),
    ];
    for (text, line, column, shown, caret) in cases {
        let errors = problems(text, &no_env());
        assert_eq!(keys_of(&errors), BTreeSet::from(["(file)".to_string()]), "{text:?}");
        let message = &errors.0[0].message;
        let mut lines = message.lines();
        let first = lines.next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("not valid TOML at line {line}, column {column}: ")),
            "{text:?}:\n{message}"
        );
        assert_eq!(lines.nth(1), Some(*shown), "{text:?}:\n{message}");
        assert_eq!(lines.next(), Some(*caret), "{text:?}:\n{message}");
    }
}

/// Item 3, the other half: a wrongly typed value names its line and its key, even inside a
/// value spread over lines, and blanking it out to read on keeps the later lines' numbers.
#[test]
fn a_wrongly_typed_value_names_its_line() {
    let text = "[clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\nauthorized_parties = [\n  1,\n  2,\n]\n\
                clock_skew = 5\n[log]\nlevel = true\n";
    let errors = problems(text, &no_env());
    let lines: Vec<(&str, &str)> =
        errors.0.iter().map(|p| (p.key.as_str(), p.message.split(':').next().unwrap_or_default())).collect();
    assert_eq!(
        lines,
        [
            ("clerk.authorized_parties", "line 4"),
            ("clerk.authorized_parties", "line 5"),
            ("clerk.clock_skew", "line 7"),
            ("log.level", "line 9"),
        ],
        "{errors}"
    );
}

const PRIVATE_KEY_HINT: &str = "this is a private key; give the public key: `openssl rsa -in key.pem -pubout`";

/// Item 5: a bad networkless key is blamed on where it came from — the variable, the file (by
/// name), or the inline key — and a private key gets the command that makes the public one.
#[test]
fn a_bad_jwt_key_is_blamed_on_its_source() {
    let key = &signing_keys()[0];
    let private = key.private_pem().to_string();
    let pkcs1 = private.replace("PRIVATE KEY", "RSA PRIVATE KEY");
    let garbage = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    let files = Files::new();
    let good_file = files.write("public.pem", &key.public_pem());
    let private_file = files.write("key.pem", &private);
    let garbage_file = files.write("garbage.pem", garbage);
    let file_body = |path: &str| format!("[clerk]\njwt_key_file = {}\n", toml_string(path));
    // (name, config, environment, expected key, the message starts with, and contains)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str, String, &'a str);
    let cases: Vec<Case> = vec![
        (
            "private key in a file",
            file_body(&private_file),
            vec![],
            "clerk.jwt_key_file",
            format!("{private_file}: "),
            PRIVATE_KEY_HINT,
        ),
        (
            "garbage in a file",
            file_body(&garbage_file),
            vec![],
            "clerk.jwt_key_file",
            format!("{garbage_file}: "),
            "not a usable RS256 public key",
        ),
        (
            "private key inline",
            format!("[clerk]\njwt_key = {}\n", toml_string(&pkcs1)),
            vec![],
            "clerk.jwt_key",
            String::new(),
            PRIVATE_KEY_HINT,
        ),
        (
            "garbage inline",
            format!("[clerk]\njwt_key = {}\n", toml_string(garbage)),
            vec![],
            "clerk.jwt_key",
            String::new(),
            "not a usable RS256 public key",
        ),
        // The variable wins over a perfectly good file: the variable is what to fix.
        (
            "garbage in the environment",
            file_body(&good_file),
            vec![("CLERK_JWT_KEY", garbage)],
            "CLERK_JWT_KEY",
            String::new(),
            "set in the environment, which wins over clerk.jwt_key",
        ),
        (
            "private key in the environment",
            String::new(),
            vec![("CLERK_JWT_KEY", &pkcs1)],
            "CLERK_JWT_KEY",
            String::new(),
            PRIVATE_KEY_HINT,
        ),
    ];
    for (name, text, pairs, key, starts, contains) in cases {
        let errors = problems(&text, &env(&pairs));
        // Only that problem: no "no key source" on top of it.
        assert_eq!(keys_of(&errors), BTreeSet::from([key.to_string()]), "{name}:\n{errors}");
        let message = &errors.0[0].message;
        assert!(message.starts_with(&starts), "{name}: {message}");
        assert!(message.contains(contains), "{name}: {message}");
        assert!(!message.contains("MII"), "{name}: the key material is never echoed: {message}");
    }
}

/// Item 5, the other secrets: each problem is listed under the variable, the `*_file` key (with
/// the file's name) or the inline key — whichever set the value.
#[test]
fn every_secret_problem_is_blamed_on_its_source() {
    let files = Files::new();
    let empty = files.write("empty", "\n");
    let pk_file = files.write("sk", &format!("{PK_TEST}\n"));
    let bad_webhook = files.write("wh", "whsec_not-base64!\n");
    let short_token = files.write("token", "x\n");
    let q = |p: &str| toml_string(p);
    let public_admin = "[admin]\nlisten = \"0.0.0.0:9901\"\n";
    // (name, config, environment, expected key, the message contains)
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, &'a str, String);
    let cases: Vec<Case> = vec![
        (
            "empty secret file",
            format!("[clerk]\nsecret_key_file = {}\n", q(&empty)),
            vec![],
            "clerk.secret_key_file",
            format!("{empty} is empty"),
        ),
        (
            "publishable key as secret key, file",
            format!("[clerk]\nsecret_key_file = {}\n", q(&pk_file)),
            vec![],
            "clerk.secret_key_file",
            format!("{pk_file}: this is a publishable key"),
        ),
        (
            "publishable key as secret key, env",
            format!("{JWKS}secret_key = \"sk_test_x\"\n"),
            vec![("CLERK_SECRET_KEY", PK_TEST)],
            "CLERK_SECRET_KEY",
            "this is a publishable key".into(),
        ),
        (
            "webhook secret, file",
            format!("{JWKS}webhook_signing_secret_file = {}\n", q(&bad_webhook)),
            vec![],
            "clerk.webhook_signing_secret_file",
            format!("{bad_webhook}: not a webhook signing secret"),
        ),
        (
            "webhook secret, env",
            JWKS.to_string(),
            vec![("CLERK_WEBHOOK_SIGNING_SECRET", "whsec_?")],
            "CLERK_WEBHOOK_SIGNING_SECRET",
            "not a webhook signing secret".into(),
        ),
        (
            "webhook secret, inline",
            format!("{JWKS}webhook_signing_secret = \"whsec_?\"\n"),
            vec![],
            "clerk.webhook_signing_secret",
            "not a webhook signing secret".into(),
        ),
        (
            "short admin token, file",
            format!("{JWKS}{public_admin}token_file = {}\n", q(&short_token)),
            vec![],
            "admin.token_file",
            format!("{short_token}: shorter than 16 characters"),
        ),
        (
            "short admin token, env",
            format!("{JWKS}{public_admin}token = \"a-long-enough-inline-token\"\n"),
            vec![("CLERKGATE_ADMIN_TOKEN", "x")],
            "CLERKGATE_ADMIN_TOKEN",
            "shorter than 16 characters".into(),
        ),
        (
            "short admin token, inline",
            format!("{JWKS}{public_admin}token = \"x\"\n"),
            vec![],
            "admin.token",
            "admin.listen (0.0.0.0:9901) is reachable from the network".into(),
        ),
        (
            "publishable key, env",
            JWKS.to_string(),
            vec![("CLERK_PUBLISHABLE_KEY", "pk_live_garbage")],
            "CLERK_PUBLISHABLE_KEY",
            "set in the environment".into(),
        ),
        (
            "api url, env",
            "[clerk]\nsecret_key = \"sk_test_x\"\n".to_string(),
            vec![("CLERK_API_URL", "api.clerk.com")],
            "CLERK_API_URL",
            "api.clerk.com".into(),
        ),
    ];
    for (name, text, pairs, key, contains) in cases {
        let errors = problems(&text, &env(&pairs));
        assert_eq!(keys_of(&errors), BTreeSet::from([key.to_string()]), "{name}:\n{errors}");
        assert!(errors.0[0].message.contains(&contains), "{name}: {}", errors.0[0].message);
    }
    // A refused secret that is no key source does not hide that there is none.
    let errors = problems("[clerk]\nwebhook_signing_secret = \"whsec_?\"\n", &no_env());
    assert_eq!(keys_of(&errors), BTreeSet::from(["clerk".to_string(), "clerk.webhook_signing_secret".to_string()]));
}

/// Item 6: the unwise values the issue found, and their neighbours, are warned about under
/// their key; a default config warns about nothing.
#[test]
fn unwise_durations_are_warned_about_under_their_key() {
    assert_eq!(load(JWKS).warnings, Vec::<String>::new());
    // (section, key, value, the warning starts with)
    let cases = [
        ("clerk.keys", "max_stale", "3650d", "clerk.keys.max_stale: \"3650d\" is over 7d: "),
        ("mode", "max_override_ttl", "365d", "mode.max_override_ttl: \"365d\" is over 24h: "),
        ("mode", "grace_max_expired", "2d", "mode.grace_max_expired: \"2d\" is over 24h: "),
        ("clerk.keys", "refresh_interval", "1ms", "clerk.keys.refresh_interval: \"1ms\" is under 10s: "),
        ("clerk.keys", "unknown_kid_cooldown", "100ms", "clerk.keys.unknown_kid_cooldown: \"100ms\" is under 1s: "),
        ("server", "header_read_timeout", "500ms", "server.header_read_timeout: \"500ms\" is under 1s: "),
        ("server", "header_read_timeout", "1h", "server.header_read_timeout: \"1h\" is over 10m: "),
        ("server", "idle_timeout", "11m", "server.idle_timeout: \"11m\" is over 10m: "),
        ("server", "send_timeout", "10ms", "server.send_timeout: \"10ms\" is under 1s: "),
        ("server", "request_body_timeout", "2h", "server.request_body_timeout: \"2h\" is over 10m: "),
    ];
    for (section, key, value, expected) in cases {
        let c = load(&format!("{JWKS}[{section}]\n{key} = \"{value}\"\n"));
        assert!(c.warnings.iter().any(|w| w.starts_with(expected)), "{section}.{key} = {value}: {:?}", c.warnings);
    }
    let c = load(&format!("{JWKS}clock_skew = \"2m\"\n"));
    assert!(c.warnings.iter().any(|w| w.starts_with("clerk.clock_skew: \"2m\" is over 60s: ")), "{:?}", c.warnings);
    // On the limit is not beyond it.
    let c = load(&format!(
        "{JWKS}[clerk.keys]\nmax_stale = \"7d\"\nrefresh_interval = \"10s\"\n[mode]\nmax_override_ttl = \"24h\"\n"
    ));
    assert_eq!(c.warnings, Vec::<String>::new());
}

/// Item 6: the README's configuration table says, for each key the validator warns about,
/// exactly where the warning starts.
#[test]
fn the_readme_config_table_names_every_warning() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let row = |key: &str| {
        readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}` |")))
            .unwrap_or_else(|| panic!("README has no row for `{key}`"))
    };
    for range in super::unwise::SENSIBLE_DURATIONS {
        let cell = row(range.key).rsplit('|').nth(1).unwrap_or_default();
        if let Some(l) = range.under {
            assert!(cell.contains(&format!("under `{}`", l.text)), "`{}`: {cell}", range.key);
        }
        if let Some(l) = range.over {
            assert!(cell.contains(&format!("over `{}`", l.text)), "`{}`: {cell}", range.key);
        }
    }
    let token = readme.lines().find(|l| l.starts_with("| `admin.token`")).unwrap_or_default();
    assert!(token.contains(&format!("under {} characters", super::validate::MIN_ADMIN_TOKEN_CHARS)), "{token}");
}

/// Item 6: a mistyped key is still refused, and the problem names the key that was meant.
#[test]
fn a_mistyped_key_gets_did_you_mean() {
    let text = "[server]\nlisen = \"0.0.0.0:1\"\nconnect_timeout = \"1s\"\n\
                [clerk]\njwks_url = \"http://127.0.0.1:9/v1/jwks\"\nsecret-key = \"sk_test_x\"\n\
                [clerk.keys]\nmax_stael = \"1h\"\n[[routes.rule]]\npath = \"/x\"\nrol = \"org:admin\"\n\
                [admn]\ntoken = \"x\"\n";
    let errors = problems(text, &no_env());
    let by_key = problems_by_key(&errors);
    for (key, hint) in [
        ("server.lisen", "did you mean `server.listen`?"),
        ("server.connect_timeout", "did you mean `upstream.connect_timeout`? It belongs in [upstream]"),
        ("clerk.secret-key", "did you mean `clerk.secret_key`?"),
        ("clerk.keys.max_stael", "did you mean `clerk.keys.max_stale`?"),
        ("routes.rule[0].rol", "did you mean `routes.rule.role`?"),
        ("admn", "did you mean `admin`?"),
    ] {
        assert_eq!(by_key.get(key).copied(), Some(format!("unknown key; {hint}").as_str()), "{errors}");
    }
}

/// Every key the validator knows is in the "did you mean" list, and every listed key is known.
#[test]
fn the_known_keys_list_matches_the_raw_mirror() {
    use super::raw::{RawConfig, KNOWN_KEYS};
    // Every listed key is accepted (a wrong type is a type problem, never "unknown key").
    for (section, keys) in KNOWN_KEYS.iter().filter(|(s, _)| !s.is_empty()) {
        for key in *keys {
            let header = if *section == "routes.rule" { format!("[[{section}]]") } else { format!("[{section}]") };
            let text = format!("{header}\n{key} = 1\n");
            if let Err(errors) = Config::from_toml(&text, &no_env()) {
                assert!(!errors.to_string().contains("unknown key"), "{section}.{key}:\n{errors}");
            }
        }
    }
    // Every field of the mirror is listed (its pretty Debug names every field, one per line).
    let listed: BTreeSet<&str> = KNOWN_KEYS.iter().flat_map(|(_, keys)| keys.iter().copied()).collect();
    let debug = format!(
        "{:#?}",
        RawConfig {
            routes: super::raw::RawRoutes { rule: vec![Default::default()], ..Default::default() },
            state: super::raw::RawState { redis: Some(Default::default()), ..Default::default() },
            ..Default::default()
        }
    );
    for line in debug.lines() {
        let Some((field, _)) = line.trim().split_once(": ") else { continue };
        if field != "unknown" && field.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            assert!(listed.contains(field), "raw field `{field}` is missing from KNOWN_KEYS");
        }
    }
}

/// Item 10: `CLERK_EMERGENCY_BYPASS=true` shows in the effective config as the bypass it puts
/// in force, marked as coming from the variable; other values the environment set are marked
/// too. The result still loads, and in bypass.
#[test]
fn the_effective_config_shows_what_the_environment_puts_in_force() {
    let pairs = [("CLERK_EMERGENCY_BYPASS", "true"), ("CLERK_SECRET_KEY", "sk_test_from_env_0123")];
    let c = Config::from_toml(&format!("{JWKS}[mode]\nmode = \"grace\"\nreason = \"file\"\n"), &env(&pairs)).unwrap();
    let out = c.effective_toml();
    let line = |key: &str| out.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_default().to_string();
    assert_eq!(
        line("mode"),
        "mode = \"bypass\"  # from CLERK_EMERGENCY_BYPASS, for max_override_ttl; then the file's \"grace\""
    );
    assert_eq!(line("reason"), "reason = \"CLERK_EMERGENCY_BYPASS=true\"");
    assert_eq!(line("secret_key"), "secret_key = \"[redacted]\"  # from CLERK_SECRET_KEY");
    assert_eq!(load(&out).mode.mode, Mode::Bypass);
    // Without the variable, the file's mode and no comments.
    let c = load(&format!("{JWKS}[mode]\nmode = \"grace\"\nreason = \"file\"\n"));
    assert!(!c.effective_toml().contains('#'));
    assert!(c.effective_toml().contains("mode = \"grace\"\n"));
}

// === Never panics ===

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\"[ -~]{0,20}\"",
        Just("\"5s\"".to_string()),
        Just("\"0s\"".to_string()),
        Just("\"bypass\"".to_string()),
        Just("\"/a(.*)\"".to_string()),
        Just("\"http://127.0.0.1:1\"".to_string()),
        Just("[\"/\", \"x\"]".to_string()),
        Just("true".to_string()),
        "-?[0-9]{1,12}",
        Just("{}".to_string()),
        Just("[]".to_string()),
    ]
}

fn section_line() -> impl Strategy<Value = String> {
    let sections = prop::sample::select(vec![
        "",
        "[server]",
        "[upstream]",
        "[clerk]",
        "[clerk.keys]",
        "[routes]",
        "[[routes.rule]]",
        "[mode]",
        "[admin]",
        "[state]",
        "[state.redis]",
        "[log]",
        "[other]",
    ]);
    let keys = prop::sample::select(vec![
        "listen",
        "url",
        "secret_key",
        "jwks_url",
        "publishable_key",
        "jwt_key",
        "clock_skew",
        "max_stale",
        "refresh_interval",
        "default",
        "public",
        "path",
        "methods",
        "role",
        "permission",
        "bypass",
        "webhook",
        "mode",
        "reason",
        "grace_max_expired",
        "token",
        "dir",
        "backend",
        "format",
        "level",
        "issuer",
        "authorized_parties",
        "api_url",
        "x",
    ]);
    (sections, keys, toml_value()).prop_map(|(s, k, v)| format!("{s}\n{k} = {v}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn from_toml_never_panics_on_arbitrary_text(text in any::<String>()) {
        let _ = Config::from_toml(&text, &no_env());
    }

    #[test]
    fn from_toml_never_panics_on_config_shaped_text(lines in prop::collection::vec(section_line(), 0..12)) {
        let text = lines.join("\n");
        match Config::from_toml(&text, &no_env()) {
            Ok(c) => {
                let _ = c.effective_toml();
            }
            // Every problem names a key and says something.
            Err(e) => prop_assert!(e.0.iter().all(|p| !p.key.is_empty() && !p.message.is_empty())),
        }
    }
}
