//! `clerkgate demo`: the whole gateway on one machine with no Clerk account and no network.
//!
//! It starts the built-in echo upstream, makes an RSA signing key, runs the gateway in front
//! (public `/`, protected `/api(.*)`, an admin-only `/api/admin(.*)` that bypass never opens),
//! and prints `curl` lines that work exactly as printed. Runs until Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use super::mint::{SigningKey, TokenSpec};
use crate::app::{self, Options};
use crate::clock::Clock;
use crate::config::{Config, Env};

/// Preferred ports; a busy one falls back to any free port, and the printed lines say which.
const DATA_PORT: u16 = 8080;
const ADMIN_PORT: u16 = 9901;

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

/// Builds the demo's config text.
pub fn demo_config(
    public_pem: &str,
    upstream: SocketAddr,
    data: SocketAddr,
    admin: SocketAddr,
    state_dir: &str,
    admin_token: &str,
) -> String {
    format!(
        r#"[server]
listen = "{data}"

[upstream]
url = "http://{upstream}"

[clerk]
jwt_key = {jwt_key}

[routes]
default = "public"
public = ["/"]

[[routes.rule]]
path = "/api/admin(.*)"
role = "org:admin"
bypass = "never"

[[routes.rule]]
path = "/api(.*)"

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

    let text = demo_config(
        &key.public_pem(),
        upstream,
        free_or_any(DATA_PORT),
        free_or_any(ADMIN_PORT),
        &dir.join("state").display().to_string(),
        &admin_token,
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
    let token = key.sign(Some("demo-key"), &user.claims(now));
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
    let admin_jwt = key.sign(Some("demo-key"), &admin.claims(now));
    let gw = format!("http://{}", running.data_addr);
    let adm = format!("http://{}", running.admin_addr);
    let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "clerkgate".into());

    // A closed stdout (the reader went away) must not stop a demo that is serving: write, and
    // ignore a failure, instead of println!, which panics on a broken pipe.
    let banner = format!(
        r#"
clerkgate demo is running (Ctrl-C to stop)
  gateway   {gw}   (public /, protected /api(.*), org:admin-only /api/admin(.*))
  admin API {adm}
  upstream  http://{upstream}  (built-in echo: answers with the headers it received)
  files     {dir}
The demo tokens below live one hour (Clerk's own live 60 seconds).

# 1. A valid session token: 200, and the upstream got X-Clerk-User-Id, X-Clerk-Session-Id
curl -s {gw}/api/hello -H 'Authorization: Bearer {token}'

# 2. No token: 401 session-token-missing
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
