//! `clerkgate demo`: the whole gateway on one machine with no Clerk account and no network.
//!
//! It starts the built-in echo upstream, makes an RSA signing key, runs a stand-in for Clerk's
//! Frontend and Backend API on loopback (a sign-in page and the handshake,
//! [`super::frontend`]), and the gateway in front (public `/`, protected `/api(.*)` and
//! `/app(.*)`, an admin-only `/api/admin(.*)` that bypass never opens). It prints `curl` lines
//! that work exactly as printed, and a sign-in URL for a browser: sign in, wait past the
//! token's 60 seconds, reload, and stay signed in through Clerk's handshake. Runs until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use super::frontend::{ClerkStandIn, StandInOptions};
use super::mint::{SigningKey, TokenSpec};
use crate::app::{self, Options};
use crate::clock::Clock;
use crate::config::{Config, Env};

/// Preferred ports; a busy one falls back to any free port, and the printed lines say which.
const DATA_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 9901;
/// The stand-in Clerk's port.
const CLERK_PORT: u16 = 9911;
/// The demo instance's Frontend API, as its publishable key names it (a production instance:
/// the handshake comes back in a cookie, and the page proceeds signed in).
const DEMO_FRONTEND_API: &str = "clerk.demo.clerkgate.test";
/// The `kid` the demo signs with.
const DEMO_KID: &str = "demo-key";

fn free_or_any(port: u16) -> SocketAddr {
    let preferred = SocketAddr::from(([127, 0, 0, 1], port));
    match std::net::TcpListener::bind(preferred) {
        Ok(_) => preferred,
        Err(_) => SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The demo instance's publishable key (`pk_live_` + base64 of its Frontend API host + `$`).
pub fn demo_publishable_key() -> String {
    use base64::Engine;
    format!("pk_live_{}", base64::engine::general_purpose::STANDARD.encode(format!("{DEMO_FRONTEND_API}$")))
}

/// The stand-in Clerk the demo's gateway talks to: its URL (Frontend API through Clerk's
/// proxy mode, and Backend API) and the secret key it expects.
#[derive(Debug, Clone)]
pub struct DemoClerk {
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// The Backend API secret key.
    pub secret_key: String,
}

/// Builds the demo's config text.
pub fn demo_config(
    public_pem: &str,
    upstream: SocketAddr,
    data: SocketAddr,
    admin: SocketAddr,
    state_dir: &str,
    admin_token: &str,
    clerk: &DemoClerk,
) -> String {
    format!(
        r#"[server]
listen = "{data}"

[upstream]
url = "http://{upstream}"

[clerk]
jwt_key = {jwt_key}
publishable_key = {publishable_key}
secret_key = {secret_key}
api_url = {clerk_url}
proxy_url = {clerk_url}
sign_in_url = {sign_in_url}

[routes]
default = "public"
public = ["/"]

[[routes.rule]]
path = "/api/admin(.*)"
role = "org:admin"
bypass = "never"

[[routes.rule]]
path = "/api(.*)"

[[routes.rule]]
path = "/app(.*)"

[admin]
listen = "{admin}"
token = {admin_token}

[state]
dir = {state_dir}

[log]
format = "pretty"
level = "warn"
"#,
        jwt_key = toml_string(public_pem),
        publishable_key = toml_string(&demo_publishable_key()),
        secret_key = toml_string(&clerk.secret_key),
        clerk_url = toml_string(&clerk.url),
        sign_in_url = toml_string(&format!("{}/sign-in", clerk.url)),
        admin_token = toml_string(admin_token),
        state_dir = toml_string(state_dir),
    )
}

/// Runs the demo until Ctrl-C.
pub async fn run() -> ExitCode {
    match run_inner().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clerkgate demo: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run_inner() -> Result<(), String> {
    let upstream = super::echo::spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.map_err(|e| e.to_string())?;
    let key = SigningKey::generate()?;
    let dir = std::env::temp_dir().join(format!("clerkgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key_path = dir.join("dev-signing-key.pem");
    std::fs::write(&key_path, key.private_pem()).map_err(|e| e.to_string())?;
    let mut token_bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut token_bytes).map_err(|e| e.to_string())?;
    let admin_token: String = token_bytes.iter().map(|b| format!("{b:02x}")).collect();
    aws_lc_rs::rand::fill(&mut token_bytes).map_err(|e| e.to_string())?;
    let secret_key = format!("sk_live_demo{}", token_bytes.iter().map(|b| format!("{b:02x}")).collect::<String>());

    let data = free_or_any(DATA_PORT);
    let options = StandInOptions::new(&demo_publishable_key(), &secret_key, &key, DEMO_KID)?;
    let clerk = ClerkStandIn::spawn(free_or_any(CLERK_PORT), options).await?;
    let demo_clerk = DemoClerk { url: clerk.url(), secret_key };
    let text = demo_config(
        &key.public_pem(),
        upstream,
        data,
        free_or_any(ADMIN_PORT),
        &dir.join("state").display().to_string(),
        &admin_token,
        &demo_clerk,
    );
    let config_path = dir.join("clerkgate.toml");
    std::fs::write(&config_path, &text).map_err(|e| e.to_string())?;
    let env = Env::default();
    let config = Config::load(&config_path, &env).map_err(|e| e.to_string())?;
    let _log = crate::telemetry::init_logging(&config.log);
    let signals = crate::control::signals::Signals::register().map_err(|e| e.to_string())?;
    let running = app::start(
        config,
        Options { clock: Clock::system(), config_path: Some(config_path.clone()), env, ..Options::default() },
    )
    .await
    .map_err(|e| e.to_string())?;

    let now = Clock::system().now_ms() / 1000;
    let user = TokenSpec { ttl_s: 3600, ..TokenSpec::default() };
    let token = key.sign(Some(DEMO_KID), &user.claims(now));
    let admin = TokenSpec {
        sub: "user_2admin".into(),
        sid: "sess_2admin".into(),
        ttl_s: 3600,
        org_id: Some("org_2demo".into()),
        org_role: Some("org:admin".into()),
        org_slug: Some("demo-org".into()),
        org_permissions: vec!["org:billing:manage".into()],
        claims_v2: true,
        ..TokenSpec::default()
    };
    let admin_jwt = key.sign(Some(DEMO_KID), &admin.claims(now));
    let gw = format!("http://{}", running.data_addr);
    let adm = format!("http://{}", running.admin_addr);
    clerk.set_after_sign_in(&format!("{gw}/app"));
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "clerkgate".into());

    // A closed stdout (the reader went away) must not stop a demo that is serving: write, and
    // ignore a failure, instead of println!, which panics on a broken pipe.
    let banner = format!(
        r#"
clerkgate demo is running (Ctrl-C to stop)
  gateway   {gw}   (public /, protected /api(.*) and /app(.*), org:admin-only /api/admin(.*))
  admin API {adm}
  upstream  http://{upstream}  (built-in echo: answers with the headers it received)
  clerk     {clerk_url}  (stand-in for Clerk's Frontend and Backend API: sign-in page, handshake)
  files     {dir}

In a browser: open this sign-in URL (or {gw}/app, which sends a signed-out visitor there),
sign in as the demo user, and you land on the protected page {gw}/app signed in (the echo
shows X-Clerk-User-Id). Its session token lives 60 seconds, as Clerk's do: wait past that,
reload, and you stay signed in — the gateway sends the browser through Clerk's handshake (the
stand-in) and back, and sets a fresh __session cookie.
  sign in   {sign_in}?redirect_url={gw}/app

The curl tokens below live one hour.

# 1. A valid session token: 200, and the upstream got X-Clerk-User-Id, X-Clerk-Session-Id
curl -s {gw}/api/hello -H 'Authorization: Bearer {token}'

# 2. No token: 401, the reason in X-Clerk-Auth-Reason
curl -si {gw}/api/hello

# 3. A forged identity header is removed; the upstream sees the token's user, not user_evil
curl -s {gw}/api/hello -H 'Authorization: Bearer {token}' -H 'X-Clerk-User-Id: user_evil'

# 4. A token that is not a JWT: 401 token-invalid
curl -si {gw}/api/hello -H 'Authorization: Bearer not.a.jwt'

# 5. An org admin on the admin-only route (v2 claims, permissions decoded from fpm): 200
curl -s {gw}/api/admin/panel -H 'Authorization: Bearer {admin_jwt}'

# 6. Emergency bypass for 5 minutes, with a reason; then /api/hello passes without a token, tagged X-Auth-Bypass
curl -s -X PUT {adm}/mode -H 'Authorization: Bearer {admin_token}' -H 'Content-Type: application/json' -d '{{"mode":"bypass","reason":"demo: Clerk outage drill","ttl":"5m"}}'
curl -si {gw}/api/hello
# ...and back to enforce
curl -s -X PUT {adm}/mode -H 'Authorization: Bearer {admin_token}' -H 'Content-Type: application/json' -d '{{"mode":"enforce"}}'

# 7. Mint your own token with the demo's key
{exe} token --key {key} --sub user_2you --kid demo-key

# 8. The same control plane from the CLI: status, a grace window, and back
CLERKGATE_ADMIN_TOKEN={admin_token} {exe} status --admin {adm}
CLERKGATE_ADMIN_TOKEN={admin_token} {exe} mode grace --reason 'Clerk outage drill' --ttl 10m --admin {adm}
CLERKGATE_ADMIN_TOKEN={admin_token} {exe} mode enforce --admin {adm}
"#,
        dir = dir.display(),
        key = key_path.display(),
        clerk_url = clerk.url(),
        sign_in = clerk.sign_in_url(),
    );
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    }
    signals.run(running.ctx.control.clone()).await;
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
