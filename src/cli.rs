//! The command line: parses arguments and calls the library. Exit codes: 0 success, 1 runtime
//! failure, 2 invalid configuration or usage — including a state directory that `check-config`
//! reports (`run` refuses it with 2), and a reload the gateway refused as invalid (422).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::admin::{api, client};
use crate::config::{vars, Config, ConfigErrors, ConfigProblem, Env};
use crate::devtools::mint::{SigningKey, TokenSpec};
use crate::revocation::Revocation;

/// clerkgate: a reverse-proxy auth gateway for applications that sign their users in with Clerk.
#[derive(Debug, Parser)]
#[command(name = "clerkgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// Config file [default: $CLERKGATE_CONFIG, else clerkgate.toml]
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn path(&self, env: &Env) -> PathBuf {
        self.config
            .clone()
            .or_else(|| env.get(vars::CONFIG).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("clerkgate.toml"))
    }
}

// Parsed once per process, so the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Serve: verify every request and forward it to the upstream.
    Run(RunArgs),
    /// Parse and validate the config; print it with secrets redacted (exit 0), or every problem (exit 2).
    CheckConfig(ConfigArg),
    /// Run a self-contained demo: echo upstream, dev signing key, gateway, admin API. Needs no network.
    Demo,
    /// Mint a Clerk-shaped RS256 session token with a local private key.
    Token(TokenArgs),
    /// Change the mode through the admin API: bypass and grace need --reason and expire.
    Mode(ModeArgs),
    /// Show the gateway's status: mode, config, keys, revocations, counters.
    Status(AdminArgs),
    /// Probe Clerk's status page, Frontend and Backend API, the gateway and the upstream at once
    /// (each with a timeout, all within 6 s), then name the incident's category, severity and the
    /// next command; recorded in the audit log. Exit 0 healthy, 11/12/13 for SEV1/SEV2/SEV3,
    /// 2 usage or config.
    Triage(TriageArgs),
    /// Re-read the config file (same as SIGHUP); prints every problem if it is invalid.
    Reload(AdminArgs),
    /// Key operations.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Revoke sessions at the gateway: one session, every session of a user, or every token issued before a moment; or lift a revocation.
    Revoke(RevokeArgs),
    /// List the revocations in force, with the ids that lift them (`revoke --lift ID`).
    Revocations(AdminArgs),
    /// Show the audit log: when, who, what changed and why, one line per event, oldest first.
    Audit(AuditArgs),
    /// The post-incident review, filled in from the audit log and the gateway's counters:
    /// start, end, duration, category, severity, timeline, action items (Markdown or JSON).
    IncidentReport(ReportArgs),
    /// The webhook journal: every verified Clerk webhook the gateway received, and its
    /// re-delivery to the upstream.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Probe a local gateway's /healthz (or /readyz): exit 0 on 200, 1 otherwise. The exec probe
    /// for images without a shell or curl.
    Health(HealthArgs),
    /// The fleet (state.backend = "redis"): every gateway, its mode, the last change it applied
    /// and how long ago it reported. Exit 0 all in step, 4 one lags, 1 Redis unreachable.
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// List every gateway seen recently; flag the ones that lag.
    Status(FleetArgs),
}

/// How to reach the fleet's Redis as the operator.
#[derive(Debug, Args, Clone)]
struct OperatorArgs {
    /// The operator's Redis ACL user (the gateways' own user may not write the fleet's state)
    /// [default: state.redis.username]
    #[arg(long, env = "CLERKGATE_REDIS_USER", value_name = "NAME")]
    redis_user: Option<String>,
    /// A file holding that user's password [default: state.redis.password_file]
    #[arg(long, env = "CLERKGATE_REDIS_PASSWORD_FILE", value_name = "FILE")]
    redis_password_file: Option<PathBuf>,
}

impl OperatorArgs {
    fn operator(&self) -> crate::ops::fleet::Operator {
        crate::ops::fleet::Operator { user: self.redis_user.clone(), password_file: self.redis_password_file.clone() }
    }
}

#[derive(Debug, Args)]
struct FleetArgs {
    #[command(flatten)]
    config: ConfigArg,
    #[command(flatten)]
    operator: OperatorArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct HealthArgs {
    /// Probe /readyz (keys loaded, not draining) instead of /healthz (the process answers).
    #[arg(long)]
    ready: bool,
    /// The listener: host:port as in server.health_listen (0.0.0.0:9902 is probed on
    /// 127.0.0.1:9902) or a URL [default: $CLERKGATE_HEALTH_ADDR, else 127.0.0.1:9902]
    #[arg(long, value_name = "ADDRESS")]
    addr: Option<String>,
}

#[derive(Debug, Subcommand)]
enum WebhooksCommand {
    /// List journalled webhooks in replay order (Clerk's event time): id, type, delivery, status.
    List(WebhooksListArgs),
    /// Re-deliver journalled webhooks to the upstream in timestamp order, with their original
    /// svix-id, re-signed with clerk.upstream_webhook_secret and a fresh timestamp; audited.
    Replay(WebhooksReplayArgs),
}

#[derive(Debug, Args)]
struct WebhooksSelection {
    /// Only events received since this RFC 3339 time, or this long ago (1h, 30m).
    #[arg(long, value_name = "1h|TIME")]
    since: Option<String>,
    /// Only events whose delivery to the upstream failed (or was cut short by a stop).
    #[arg(long)]
    failed: bool,
    /// Only this event (its svix-id, msg_…); repeat for several.
    #[arg(long = "id", value_name = "ID")]
    ids: Vec<String>,
}

impl WebhooksSelection {
    fn selection(self) -> crate::admin::replay::Selection {
        crate::admin::replay::Selection { since: self.since, failed: self.failed, ids: self.ids }
    }
}

#[derive(Debug, Args)]
struct WebhooksListArgs {
    #[command(flatten)]
    select: WebhooksSelection,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, Args)]
struct WebhooksReplayArgs {
    #[command(flatten)]
    select: WebhooksSelection,
    /// Show what would be replayed, in order, and send nothing.
    #[arg(long)]
    dry_run: bool,
    /// At most this many events a second.
    #[arg(long, default_value_t = 10.0, value_name = "N")]
    rate: f64,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Fetch the JWKS now and show the kids loaded.
    Refresh(AdminArgs),
    /// Check that the configured secret key works at the Backend API and which instance it
    /// belongs to, compared with the running gateway's keys and clerk.jwt_key. Exit 0 accepted,
    /// 1 no verdict (unreachable, 5xx, timeout), 2 no key configured, 3 rejected, 4 another instance.
    Check(KeysCheckArgs),
}

#[derive(Debug, Args)]
struct KeysCheckArgs {
    /// The limit on each of the (at most two) tries.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, Args)]
struct TriageArgs {
    /// The limit on each probe (at most 4.5s: the whole run ends within 6s).
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, Args, Clone)]
struct AdminArgs {
    #[command(flatten)]
    target: AdminTarget,
    /// Print the raw JSON answer.
    #[arg(long)]
    json: bool,
}

/// How to reach a running gateway's admin API.
#[derive(Debug, Args, Clone)]
struct AdminTarget {
    /// The admin API: host:port as in admin.listen (127.0.0.1:9901, [::1]:9901) or a URL
    /// (http://127.0.0.1:9901) [default: admin.listen in --config, else $CLERKGATE_ADMIN_URL,
    /// else admin.listen in the default config, else 127.0.0.1:9901]
    #[arg(long, value_name = "ADDRESS")]
    admin: Option<String>,
    /// A file holding the admin token. Without it, the token is admin.token_file or admin.token
    /// in --config, else $CLERKGATE_ADMIN_TOKEN, else admin.token_file or admin.token in the
    /// default config.
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// The gateway's config file, of which only [admin] listen, token_file and token are read;
    /// they come before the environment's. Without it, the default config ($CLERKGATE_CONFIG,
    /// else ./clerkgate.toml, when that file exists) is read, after the environment.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl AdminTarget {
    fn sources(&self) -> client::Sources {
        client::Sources {
            admin: self.admin.clone(),
            token_file: self.admin_token_file.clone(),
            config: self.config.clone(),
        }
    }
}

impl AdminArgs {
    /// Makes one admin API call to the endpoint at `segments` and prints its answer with
    /// `show` (or raw with `--json`). Exit 2 when the address or token cannot be found.
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        env: &Env,
        method: http::Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&impl serde::Serialize>,
        show: impl Fn(&T) -> String,
    ) -> ExitCode {
        let target = match self.target_or_exit(env) {
            Ok(t) => t,
            Err(code) => return code,
        };
        let body = body.and_then(|b| serde_json::to_value(b).ok());
        runtime().block_on(client::call(&target, method, segments, query, body, self.json, show))
    }
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// Only events since this RFC 3339 time, or this long ago (1h, 30m).
    #[arg(long, value_name = "1h|TIME")]
    since: Option<String>,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// The window's start: an RFC 3339 time, or how long ago (2h, 30m) [default: 30m before
    /// the last change away from enforce, or 24h ago when there is none]
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// The window's end, in the same forms [default: 30m after the return to enforce, or now]
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// md: Markdown to paste into a post-mortem; json: for tools.
    #[arg(long, value_enum, default_value = "md")]
    format: crate::ops::report::command::Format,
    /// Write the report to FILE (replaced whole) instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Read audit.jsonl in DIR (the gateway's state.dir) instead of asking the gateway. Without
    /// it, the audit log comes from the admin API, or from state.dir in the config when no
    /// gateway answers.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    admin: AdminTarget,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Start even when a state file (state.json, keys.json, audit.jsonl) cannot be read or is
    /// not valid: each is kept beside as <name>.discarded-<time>, the gateway starts without it,
    /// and the audit log says which and why. Without it, such a file stops the start (exit 2).
    #[arg(long)]
    discard_state: bool,
    /// Do not watch the config file and the files it names: reload only on SIGHUP or
    /// `clerkgate reload`. By default a change to one of them reloads the config.
    #[arg(long)]
    no_watch: bool,
}

#[derive(Debug, Args)]
struct ModeArgs {
    /// enforce, grace or bypass.
    mode: String,
    /// Why (required for grace and bypass; recorded in the audit log).
    #[arg(long, default_value = "")]
    reason: String,
    /// How long the override lasts (capped by mode.max_override_ttl; default 30m).
    #[arg(long)]
    ttl: Option<String>,
    /// With state.backend = "redis": change only the gateway whose admin API is named, not the
    /// whole fleet.
    #[arg(long)]
    local: bool,
    #[command(flatten)]
    operator: OperatorArgs,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false, id = "what")]
struct RevokeTarget {
    /// A session id (sess_…).
    #[arg(long, group = "what")]
    session: Option<String>,
    /// A user id (user_…): every session of that user.
    #[arg(long, group = "what")]
    user: Option<String>,
    /// Every token issued before this RFC 3339 time, or `now`.
    #[arg(long, group = "what")]
    issued_before: Option<String>,
    /// Lift one revocation: a session id, a user id, or `issued_before` (as `clerkgate revocations` lists them).
    #[arg(long, group = "what", value_name = "ID")]
    lift: Option<String>,
    /// With --remote: every active or pending session of the instance.
    #[arg(long, group = "what", requires = "remote")]
    all: bool,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    #[command(flatten)]
    target: RevokeTarget,
    /// Why (recorded in the audit log).
    #[arg(long, default_value = "", conflicts_with = "lift")]
    reason: String,
    /// Also revoke at Clerk's Backend API, after the gateway: the session, every session of
    /// the user, or with --all every active or pending session of the instance. Reads
    /// clerk.api_url, the secret key and state.dir from --config. Exit 0 done, 1 Clerk failed
    /// (continue --all with --resume), 2 usage, 3 secret key rejected, 4 --verify found survivors.
    #[arg(long, conflicts_with_all = ["issued_before", "lift"])]
    remote: bool,
    /// Count and estimate first; revoke nothing (not even at the gateway).
    #[arg(long, requires = "remote")]
    dry_run: bool,
    /// Do not ask for confirmation (needed for --all without a terminal).
    #[arg(long, requires = "remote")]
    yes: bool,
    /// Continue an interrupted --all run from its checkpoint in state.dir.
    #[arg(long, requires = "all")]
    resume: bool,
    /// Afterwards, walk again and list sessions still active or pending.
    #[arg(long, requires = "remote")]
    verify: bool,
    /// Revoke only at Clerk: no gateway runs here (nothing is recorded in an audit log then).
    #[arg(long, requires = "remote")]
    no_gateway: bool,
    /// Users handled at once, all under the one rate budget.
    #[arg(long, default_value_t = 8, requires = "remote")]
    concurrency: usize,
    /// Backend API requests per 10 s [default: 800 for an sk_live_ key, 80 otherwise: 80 % of Clerk's limit].
    #[arg(long, value_name = "REQUESTS", requires = "remote")]
    rate: Option<u32>,
    /// The limit on one Backend API request (each is tried up to 6 times on 5xx or no answer).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, requires = "remote")]
    timeout: Duration,
    /// With state.backend = "redis": revoke (or lift) at the gateway whose admin API is named
    /// only, not for the whole fleet.
    #[arg(long, conflicts_with = "remote")]
    local: bool,
    #[command(flatten)]
    operator: OperatorArgs,
    #[command(flatten)]
    admin: AdminArgs,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// PEM private key (PKCS#8 or PKCS#1).
    #[arg(long)]
    key: PathBuf,
    /// `sub`: the user id.
    #[arg(long, default_value = "user_2demo")]
    sub: String,
    /// `sid`: the session id.
    #[arg(long, default_value = "sess_2demo")]
    sid: String,
    /// Lifetime (`exp - iat`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// `azp`: the authorized party (origin).
    #[arg(long)]
    azp: Option<String>,
    /// `iss`: the issuer (Frontend API URL).
    #[arg(long)]
    iss: Option<String>,
    /// Active organisation id.
    #[arg(long)]
    org_id: Option<String>,
    /// Role in the organisation, e.g. org:admin.
    #[arg(long)]
    org_role: Option<String>,
    /// Organisation slug.
    #[arg(long)]
    org_slug: Option<String>,
    /// Organisation permission (repeatable), e.g. org:billing:manage.
    #[arg(long = "org-permission")]
    org_permissions: Vec<String>,
    /// Encode the organisation as v2 claims (v=2, o, fea, fpm).
    #[arg(long)]
    claims_v2: bool,
    /// `kid` header.
    #[arg(long)]
    kid: Option<String>,
}

/// Runs the CLI.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = Env::from_process();
    match cli.command {
        Command::CheckConfig(c) => check_config(&c.path(&env), &env),
        Command::Token(t) => token(t),
        Command::Run(r) => runtime().block_on(run(r.config.path(&env), env, r.discard_state, r.no_watch)),
        Command::Demo => runtime().block_on(crate::devtools::demo::run()),
        Command::Mode(m) => {
            if !m.local {
                match fleet(m.admin.target.config.as_ref(), &env, &m.operator) {
                    Ok(Some(f)) => {
                        return runtime().block_on(f.set_mode(&m.mode, &m.reason, m.ttl.as_deref(), &env, m.admin.json))
                    }
                    Ok(None) => {}
                    Err(code) => return code,
                }
            }
            let body = api::ModeRequest { mode: m.mode, reason: m.reason, ttl: m.ttl };
            m.admin.call(&env, http::Method::PUT, &["mode"], &[], Some(&body), client::show_mode)
        }
        Command::Status(a) => a.call(&env, http::Method::GET, &["status"], &[], None::<&()>, client::show_status),
        Command::Reload(a) => a.call(&env, http::Method::POST, &["reload"], &[], None::<&()>, client::show_reload),
        Command::Keys { command: KeysCommand::Refresh(a) } => {
            a.call(&env, http::Method::POST, &["keys", "refresh"], &[], None::<&()>, client::show_keys)
        }
        Command::Keys { command: KeysCommand::Check(k) } => keys_check(k, &env),
        Command::Triage(t) => triage(t, &env),
        Command::Revocations(a) => {
            a.call(&env, http::Method::GET, &["revocations"], &[], None::<&()>, client::show_revocation_list)
        }
        Command::Audit(a) => {
            let query: Vec<(&str, &str)> = a.since.as_deref().map(|s| ("since", s)).into_iter().collect();
            a.admin.call(&env, http::Method::GET, &["audit"], &query, None::<&()>, client::show_audit)
        }
        Command::IncidentReport(r) => {
            use crate::ops::report::{command, gather};
            let opts = command::Options {
                sources: gather::Sources { admin: r.admin.sources(), state_dir: r.state_dir },
                since: r.since,
                until: r.until,
                format: r.format,
                out: r.out,
            };
            let now = crate::clock::Clock::system().now_ms();
            runtime().block_on(command::run(opts, &env, now))
        }
        Command::Revoke(r) => revoke(r, &env),
        Command::Webhooks { command } => webhooks(command, &env),
        Command::Health(h) => health(h, &env),
        Command::Fleet { command: FleetCommand::Status(f) } => match fleet(f.config.config.as_ref(), &env, &f.operator)
        {
            Ok(Some(fleet)) => runtime().block_on(fleet.status(f.json)),
            Ok(None) => {
                eprintln!(
                    "clerkgate fleet status: {} does not use state.backend = \"redis\": a gateway on the file backend \
                     is a fleet of one (clerkgate status shows it)",
                    f.config.path(&env).display()
                );
                ExitCode::from(2)
            }
            Err(code) => code,
        },
    }
}

/// Lets the console run triage against this gateway: the running config, and its own admin
/// API (where it listens, with its token) as the gateway to ask.
fn give_triage(ctx: &std::sync::Arc<crate::admin::AdminState>, admin: std::net::SocketAddr) {
    let shared = ctx.shared.clone();
    let runner = crate::admin::TriageRunner(std::sync::Arc::new(move || {
        let config = shared.load().config.clone();
        Box::pin(async move {
            let target = client::Target::local(admin, config.admin.token.clone())?;
            let report =
                crate::ops::triage::assess(&config, Some(target), None, crate::ops::triage::PROBE_TIMEOUT).await?;
            serde_json::to_value(&report).map_err(|e| e.to_string())
        })
    }));
    let _ = ctx.triage.set(runner);
}

/// The fleet a command goes to: `Some` when the config (`--config`, else the default config
/// when that file exists) uses the Redis backend. A config that asks for Redis but does not
/// load is exit 2, with every problem.
fn fleet(
    config: Option<&PathBuf>,
    env: &Env,
    operator: &OperatorArgs,
) -> Result<Option<crate::ops::fleet::Fleet>, ExitCode> {
    let path = ConfigArg { config: config.cloned() }.path(env);
    if !path.exists() {
        return Ok(None);
    }
    crate::ops::fleet::from_config(&path, env, operator.operator()).map_err(|e| {
        eprintln!("clerkgate: {e}");
        ExitCode::from(2)
    })
}

/// `health`: one probe, one line; exit 0 on 200, 1 on anything else, 2 for a bad address.
/// On a runtime of one thread: a probe runs every few seconds and needs no more.
fn health(h: HealthArgs, env: &Env) -> ExitCode {
    use crate::admin::probe;
    let target = match probe::ProbeTarget::resolve(h.addr.as_deref(), env) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("clerkgate health: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("clerkgate health: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(probe::probe(&target, h.ready)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(line) => {
            eprintln!("clerkgate health: {line}");
            ExitCode::from(1)
        }
    }
}

/// The gateway's whole config, for the commands that call Clerk: `--config`, else
/// `$CLERKGATE_CONFIG`, else `./clerkgate.toml`. Exit 2 with every problem when it does not load.
fn gateway_config(path: Option<PathBuf>, env: &Env) -> Result<Config, ExitCode> {
    let path = ConfigArg { config: path }.path(env);
    Config::load(&path, env).map_err(|errors| {
        print_problems(&path, &errors);
        ExitCode::from(2)
    })
}

impl AdminArgs {
    /// The admin API these arguments name, when it can be found.
    fn target(&self, env: &Env) -> Result<client::Target, String> {
        client::Target::resolve(&self.target.sources(), env)
    }

    /// The gateway to call, or exit 2 saying why it cannot be found.
    fn target_or_exit(&self, env: &Env) -> Result<client::Target, ExitCode> {
        self.target(env).map_err(|e| {
            eprintln!("clerkgate: {e}");
            ExitCode::from(2)
        })
    }
}

fn keys_check(k: KeysCheckArgs, env: &Env) -> ExitCode {
    let config = match gateway_config(k.admin.target.config.clone(), env) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let target = k.admin.target(env).ok();
    runtime().block_on(crate::ops::keys_check::run(&config, target.as_ref(), k.timeout, k.admin.json))
}

fn triage(t: TriageArgs, env: &Env) -> ExitCode {
    let config = match gateway_config(t.admin.target.config.clone(), env) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let (target, why) = match t.admin.target(env) {
        Ok(target) => (Some(target), None),
        Err(e) => (None, Some(e)),
    };
    let opts = crate::ops::triage::Options { timeout: t.timeout, json: t.admin.json };
    runtime().block_on(crate::ops::triage::run(&config, target, why, opts))
}

fn revoke_remote(r: RevokeArgs, env: &Env) -> ExitCode {
    use crate::ops::revoke::{Options, Scope};
    let scope = match (r.target.session, r.target.user, r.target.all) {
        (Some(id), ..) => Scope::Session(id),
        (_, Some(id), _) => Scope::User(id),
        (.., true) => Scope::All,
        _ => {
            eprintln!("clerkgate: --remote takes --session ID, --user ID or --all");
            return ExitCode::from(2);
        }
    };
    let config = match gateway_config(r.admin.target.config.clone(), env) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let target = if r.no_gateway {
        None
    } else {
        match r.admin.target(env) {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("clerkgate: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let opts = Options {
        scope,
        reason: r.reason,
        dry_run: r.dry_run,
        yes: r.yes,
        resume: r.resume,
        verify: r.verify,
        json: r.admin.json,
        no_gateway: r.no_gateway,
        concurrency: r.concurrency,
        rate: r.rate,
        timeout: r.timeout,
        fleet: match &config.state.backend {
            crate::config::StateBackend::Redis(redis) if !r.no_gateway => Some((
                crate::ops::fleet::Fleet {
                    redis: redis.clone(),
                    max_ttl: config.mode.max_override_ttl,
                    operator: r.operator.operator(),
                },
                env.clone(),
            )),
            _ => None,
        },
    };
    runtime().block_on(crate::ops::revoke::run(&config, target, opts))
}

/// `webhooks list|replay`, through the running gateway's admin API: the gateway is the
/// journal's only writer, and the replay's outcomes and audit lines are its to record.
fn webhooks(command: WebhooksCommand, env: &Env) -> ExitCode {
    use crate::admin::replay;
    match command {
        WebhooksCommand::List(a) => match a.admin.target_or_exit(env) {
            Ok(target) => runtime().block_on(replay::list(&target, &a.select.selection(), a.admin.json)),
            Err(code) => code,
        },
        WebhooksCommand::Replay(a) => match a.admin.target_or_exit(env) {
            Ok(target) => runtime().block_on(replay::replay(&target, &a.select.selection(), a.rate, a.dry_run)),
            Err(code) => code,
        },
    }
}

fn revoke(r: RevokeArgs, env: &Env) -> ExitCode {
    if r.remote {
        return revoke_remote(r, env);
    }
    if !r.local {
        match fleet(r.admin.target.config.as_ref(), env, &r.operator) {
            Ok(Some(f)) => {
                use crate::ops::fleet::FleetRevoke;
                let t = &r.target;
                let what = match (&t.session, &t.user, &t.issued_before, &t.lift) {
                    (Some(s), ..) => FleetRevoke::Add(Revocation::Session(s.clone())),
                    (_, Some(u), ..) => FleetRevoke::Add(Revocation::User(u.clone())),
                    (_, _, Some(at), _) => match crate::admin::parse_moment(at, crate::clock::Clock::system().now_ms())
                    {
                        Ok(ms) => FleetRevoke::Add(Revocation::IssuedBefore(ms)),
                        Err(e) => {
                            eprintln!("clerkgate revoke: --issued-before: {e}");
                            return ExitCode::from(2);
                        }
                    },
                    (.., Some(id)) => FleetRevoke::Lift(id.clone()),
                    _ => return ExitCode::from(2),
                };
                return runtime().block_on(f.revoke(what, &r.reason, env, r.admin.json));
            }
            Ok(None) => {}
            Err(code) => return code,
        }
    }
    let t = r.target;
    let reason = r.reason;
    let body = match (t.session, t.user, t.issued_before, t.lift) {
        (Some(s), ..) => api::RevokeRequest { session_id: Some(s), reason, ..Default::default() },
        (_, Some(u), ..) => api::RevokeRequest { user_id: Some(u), reason, ..Default::default() },
        (_, _, Some(at), _) => api::RevokeRequest { issued_before: Some(at), reason, ..Default::default() },
        (.., Some(id)) => {
            let show = |v: &api::Revocations| format!("lifted {id}; {}", client::show_revocations(v));
            return r.admin.call(env, http::Method::DELETE, &["revocations", &id], &[], None::<&()>, show);
        }
        _ => return ExitCode::from(2),
    };
    r.admin.call(env, http::Method::POST, &["revocations"], &[], Some(&body), client::show_revocations)
}

/// One worker thread per core the process may run on. On a single core (a pinned sidecar, a
/// one-CPU container) the current-thread scheduler does the same work without the cross-thread
/// hand-offs of the multi-thread one.
fn runtime() -> tokio::runtime::Runtime {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cores == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("clerkgate: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    }
}

fn print_problems(path: &std::path::Path, errors: &crate::config::ConfigErrors) {
    eprintln!("{}: {} problem(s):", path.display(), errors.0.len());
    for p in &errors.0 {
        eprintln!("  {}: {}", p.key, p.message);
    }
}

/// Validates the config, then checks its state directory as a start would (changing nothing):
/// what would stop `run` is reported here, under `state.dir`.
fn check_config(path: &std::path::Path, env: &Env) -> ExitCode {
    let config = match Config::load(path, env) {
        Ok(config) => config,
        Err(errors) => {
            print_problems(path, &errors);
            return ExitCode::from(2);
        }
    };
    for w in &config.warnings {
        eprintln!("warning: {w}");
    }
    let state = crate::store::file::check_state_dir(&config.state.dir);
    if !state.is_empty() {
        let problems = state.iter().map(|p| ConfigProblem { key: "state.dir".into(), message: p.to_string() });
        print_problems(path, &ConfigErrors(problems.collect()));
        return ExitCode::from(2);
    }
    print!("{}", config.effective_toml());
    ExitCode::SUCCESS
}

fn token(t: TokenArgs) -> ExitCode {
    let pem = match std::fs::read_to_string(&t.key) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("clerkgate: cannot read {}: {e}", t.key.display());
            return ExitCode::from(2);
        }
    };
    let key = match SigningKey::from_pem(&pem) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("clerkgate: {}: {e}", t.key.display());
            return ExitCode::from(2);
        }
    };
    let spec = TokenSpec {
        sub: t.sub,
        sid: t.sid,
        ttl_s: t.ttl.as_secs() as i64,
        azp: t.azp,
        iss: t.iss,
        org_id: t.org_id,
        org_role: t.org_role,
        org_slug: t.org_slug,
        org_permissions: t.org_permissions,
        claims_v2: t.claims_v2,
    };
    let now = crate::clock::Clock::system().now_ms() / 1000;
    println!("{}", key.sign(t.kid.as_deref(), &spec.claims(now)));
    ExitCode::SUCCESS
}

async fn run(path: PathBuf, env: Env, discard_state: bool, no_watch: bool) -> ExitCode {
    let config = match Config::load(&path, &env) {
        Ok(c) => c,
        Err(errors) => {
            print_problems(&path, &errors);
            return ExitCode::from(2);
        }
    };
    // Held to the end of `run`: dropping it writes out every buffered log line.
    let _log = crate::telemetry::init_logging(&config.log);
    let signals = match crate::control::signals::Signals::register() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("clerkgate: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let watch = if no_watch { crate::file_watch::WatchMode::Off } else { crate::file_watch::WatchMode::Events };
    let opts = crate::app::Options {
        clock: crate::clock::Clock::system(),
        config_path: Some(path),
        env,
        discard_state,
        watch,
    };
    let running = match crate::app::start(config, opts).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("clerkgate: cannot start: {e}");
            // What `check-config` reports is exit 2, as a config problem; the rest is 1.
            let bad_state = matches!(e, crate::app::StartError::State(_));
            return ExitCode::from(if bad_state { 2 } else { 1 });
        }
    };
    give_triage(&running.ctx, running.admin_addr);
    signals.run(running.ctx.control.clone()).await;
    running.shutdown().await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
