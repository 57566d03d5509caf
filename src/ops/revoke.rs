//! `clerkgate revoke --remote`: revocation at Clerk's Backend API (clerk-ops §8.2–§8.3).
//!
//! 1. **Pre-flight.** `GET /v1/jwks` (the key works; which instance) and, for `--all`,
//!    `GET /v1/users/count` for the estimate. `--dry-run` stops here with the estimate (`--all`:
//!    a full count of sessions would cost half the run's budget) or the sessions it would revoke.
//! 2. **Confirmation** for `--all`: typed on a terminal, or `--yes`; refused otherwise.
//! 3. **The gateway first** (admin API): `--all` refuses every token issued before now,
//!    `--user`/`--session` that user or session, so the edge refuses the affected tokens at once
//!    while Clerk's revocation (which does not recall tokens already minted) proceeds.
//! 4. **The walk.** Every user (see [`super::walk`]), 8 at a time under the shared budget; for
//!    each, every session Clerk lists, and `POST …/revoke` for those `active` or `pending`, one
//!    after another (no `resource_locked` on one user); 404 counts as already gone. `--all`
//!    keeps a checkpoint in `state.dir` so a killed run continues with `--resume`.
//! 5. **`--verify`** walks again and lists the sessions still active or pending that were
//!    created before the run started (a later one is a new sign-in, which is allowed).
//! 6. **The summary** on stdout (`--json` for machines) and, through `POST /audit`, in the
//!    gateway's audit log as `revocation.remote`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::exit;
use super::walk::{self, Position, Progress};
use crate::admin::api;
use crate::admin::client::{self, Target};
use crate::clerk_api::{self, ApiError, Client, ErrorKind, Rate, Revoked, Stats};
use crate::clock::{rfc3339, Clock};
use crate::config::Config;
use crate::store::Action;

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One session.
    Session(String),
    /// Every session of one user.
    User(String),
    /// Every active or pending session of the instance.
    All,
}

impl Scope {
    fn describe(&self) -> String {
        match self {
            Scope::Session(id) => format!("session {id}"),
            Scope::User(id) => format!("user {id}"),
            Scope::All => "all".into(),
        }
    }
}

/// The command line, read.
#[derive(Debug, Clone)]
pub struct Options {
    /// What.
    pub scope: Scope,
    /// Why (the audit log).
    pub reason: String,
    /// Count and estimate; revoke nothing.
    pub dry_run: bool,
    /// Skip the confirmation.
    pub yes: bool,
    /// Continue the interrupted `--all` run from its checkpoint.
    pub resume: bool,
    /// Walk again afterwards and report survivors.
    pub verify: bool,
    /// Print the summary as JSON.
    pub json: bool,
    /// Do not touch the gateway (no gateway runs here); nothing is audited either.
    pub no_gateway: bool,
    /// Users in flight at once.
    pub concurrency: usize,
    /// Requests per 10 s instead of the key's default budget.
    pub rate: Option<u32>,
    /// The limit on one request.
    pub timeout: std::time::Duration,
    /// With the Redis backend: the gateway-side revocation goes to the whole fleet.
    pub fleet: Option<(super::fleet::Fleet, crate::config::Env)>,
}

/// Counts of a revocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Users whose sessions were listed.
    pub users: u64,
    /// Sessions Clerk listed for them, every status.
    pub sessions_listed: u64,
    /// Of those, active or pending.
    pub sessions_live: u64,
    /// Revoked by this run.
    pub revoked: u64,
    /// 404 on revoke: already gone.
    pub already_gone: u64,
    /// Found ended when re-read (revoked meanwhile, or by an earlier attempt whose answer was lost).
    pub already_ended: u64,
}

impl Totals {
    fn add(&mut self, o: &Totals) {
        self.users += o.users;
        self.sessions_listed += o.sessions_listed;
        self.sessions_live += o.sessions_live;
        self.revoked += o.revoked;
        self.already_gone += o.already_gone;
        self.already_ended += o.already_ended;
    }

    fn count(&mut self, r: Revoked) {
        match r {
            Revoked::Now => self.revoked += 1,
            Revoked::AlreadyGone => self.already_gone += 1,
            Revoked::AlreadyEnded => self.already_ended += 1,
        }
    }
}

/// A checkpoint written this recently is a run in progress: the walk saves it twice a second
/// while it goes (a long 429 pause aside), and removes it when it finishes; an older one is a
/// run that stopped and waits for `--resume`.
pub const IN_PROGRESS_WITHIN: std::time::Duration = std::time::Duration::from_secs(3600);

/// How long ago an unfinished `revoke --remote --all` run in `state_dir` last wrote its
/// checkpoint, when that is within [`IN_PROGRESS_WITHIN`] of `now`: a run in progress.
pub fn in_progress(state_dir: &std::path::Path, now: std::time::SystemTime) -> Option<std::time::Duration> {
    let written = std::fs::metadata(walk::checkpoint_path(state_dir)).and_then(|m| m.modified()).ok()?;
    let age = now.duration_since(written).unwrap_or_default();
    (age <= IN_PROGRESS_WITHIN).then_some(age)
}

/// An `--all` run in progress, as its checkpoint file holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Checkpoint {
    version: u32,
    api_url: String,
    key_fingerprint: String,
    instance: Vec<String>,
    started_at_ms: i64,
    reason: String,
    users_estimate: Option<u64>,
    position: Position,
    totals: Totals,
}

/// The estimate of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// Users at Clerk now.
    pub users: u64,
    /// Calls: a page per 500 users, a session list per user, a revoke per session (one per
    /// user assumed).
    pub calls: u64,
    /// At the budget.
    pub seconds: u64,
    /// The budget, requests per 10 s.
    pub rate_per_10s: u32,
}

/// Sessions found still active or pending by `--verify`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verified {
    /// How many.
    pub survivors: u64,
    /// The first ones.
    pub sample: Vec<String>,
}

const SAMPLE: usize = 20;

/// What the run did: printed, and recorded in the audit log.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `all`, `user …`, `session …`.
    pub scope: String,
    /// `done`, `stopped` (resume it), `dry-run`.
    pub outcome: &'static str,
    /// Continued from a checkpoint.
    pub resumed: bool,
    /// The instance (JWKS kids of the key).
    pub instance: Vec<String>,
    /// When the run (the first one, when resumed) started.
    pub started_at: String,
    /// Seconds this invocation took.
    pub duration_s: f64,
    /// What the gateway now refuses, or why it was not asked.
    pub gateway: String,
    /// `cursor` or `offset`, for `--all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paging: Option<&'static str>,
    /// The counts.
    pub totals: Totals,
    /// The estimate, for `--all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimate: Option<Estimate>,
    /// Live sessions a dry run would revoke (`--user`, `--session`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_revoke: Vec<String>,
    /// What the run does not cover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_covered: Option<String>,
    /// `--verify`'s findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<Verified>,
    /// The Backend API calls made.
    pub api: Stats,
    /// Why the run stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// What to do next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Runs `revoke --remote`. `admin` is the gateway's admin API (unused with `no_gateway`).
pub async fn run(config: &Config, admin: Option<Target>, opts: Options) -> ExitCode {
    match Run::prepare(config, admin, &opts) {
        Ok(run) => run.go(opts).await,
        Err(why) => {
            eprintln!("clerkgate revoke --remote: {why}");
            ExitCode::from(exit::USAGE)
        }
    }
}

struct Run {
    client: Client,
    admin: Option<Target>,
    checkpoint: PathBuf,
    fingerprint: String,
    started: Instant,
    clock: Clock,
}

impl Run {
    fn prepare(config: &Config, admin: Option<Target>, opts: &Options) -> Result<Run, String> {
        if opts.resume && opts.scope != Scope::All {
            return Err(
                "--resume continues an interrupted --all run; a --user or --session run is simply run again".into()
            );
        }
        let mut settings = clerk_api::Settings { timeout: opts.timeout, ..super::settings(config)? };
        if let Some(rate) = opts.rate {
            settings.rate = Rate { requests: rate.max(1), per: Rate::WINDOW };
        }
        let fingerprint = settings.secret_key.fingerprint();
        let client = Client::new(settings)?;
        let admin = if opts.no_gateway { None } else { admin };
        Ok(Run {
            client,
            admin,
            checkpoint: walk::checkpoint_path(&config.state.dir),
            fingerprint,
            started: Instant::now(),
            clock: Clock::system(),
        })
    }

    fn summary(&self, opts: &Options, started_at_ms: i64) -> Summary {
        Summary {
            scope: opts.scope.describe(),
            outcome: "done",
            resumed: false,
            instance: Vec::new(),
            started_at: rfc3339(started_at_ms),
            duration_s: 0.0,
            gateway: if opts.no_gateway { "not asked (--no-gateway)".into() } else { "not asked".into() },
            paging: None,
            totals: Totals::default(),
            estimate: None,
            would_revoke: Vec::new(),
            not_covered: None,
            verify: None,
            api: Stats::default(),
            error: None,
            next: None,
        }
    }

    /// Prints `s` and ends with its exit code; records it in the audit log unless it is a dry
    /// run or the gateway is not asked.
    async fn finish(&self, mut s: Summary, opts: &Options) -> ExitCode {
        s.duration_s = (self.started.elapsed().as_millis() as f64) / 1000.0;
        s.api = self.client.stats();
        if s.outcome != "dry-run" {
            if let Some(admin) = &self.admin {
                let after = serde_json::to_value(&s).unwrap_or_default();
                if let Err(e) = super::record(admin, Action::RevocationRemote, after, &opts.reason).await {
                    eprintln!("clerkgate: warning: the summary could not be recorded in the gateway's audit log: {e}");
                }
            }
        }
        if opts.json {
            println!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
        } else {
            print!("{}", show(&s));
        }
        match (&s.error, &s.verify) {
            (Some(e), _) => super::exit_for(e),
            (None, Some(v)) if v.survivors > 0 => ExitCode::from(exit::MISMATCH),
            _ => ExitCode::SUCCESS,
        }
    }

    async fn fail(&self, mut s: Summary, e: ApiError, opts: &Options) -> ExitCode {
        if s.outcome != "dry-run" {
            s.outcome = "stopped";
        }
        let resume = if opts.scope == Scope::All && s.outcome == "stopped" {
            format!(
                "; then continue with: clerkgate revoke --remote --all --resume --yes (the checkpoint is {})",
                self.checkpoint.display()
            )
        } else {
            String::new()
        };
        s.next = Some(format!("{}{resume}", e.next_step()));
        if e.kind == ErrorKind::Credential && s.gateway.starts_with("not asked") {
            s.next = Some(format!(
                "{}. Meanwhile the gateway can refuse the tokens itself: clerkgate revoke {}",
                e.next_step(),
                match &opts.scope {
                    Scope::All => "--issued-before now".to_string(),
                    Scope::User(id) => format!("--user {id}"),
                    Scope::Session(id) => format!("--session {id}"),
                }
            ));
        }
        s.error = Some(e);
        self.finish(s, opts).await
    }

    async fn go(self, opts: Options) -> ExitCode {
        let now = self.clock.now_ms();
        let saved: Option<Checkpoint> = if opts.scope == Scope::All && !opts.dry_run {
            match walk::read_checkpoint(&self.checkpoint) {
                Ok(saved) => saved,
                Err(e) => return usage(&e),
            }
        } else {
            None
        };
        match (&saved, opts.resume) {
            (Some(cp), false) => {
                return usage(&format!(
                    "an earlier --all run (started {}) stopped with {} users done; continue it with --resume, or \
                     remove {} to start over",
                    rfc3339(cp.started_at_ms),
                    cp.totals.users,
                    self.checkpoint.display()
                ))
            }
            (None, true) => {
                return usage(&format!(
                    "there is no interrupted run to resume ({} does not exist)",
                    self.checkpoint.display()
                ))
            }
            (Some(cp), true)
                if cp.api_url != self.client.settings().api_url || cp.key_fingerprint != self.fingerprint =>
            {
                return usage(&format!(
                    "the checkpoint {} belongs to another Backend API or secret key (fingerprint {}); resume with the \
                     same clerk.api_url and key, or remove it to start over",
                    self.checkpoint.display(),
                    cp.key_fingerprint
                ))
            }
            _ => {}
        }
        let started_at_ms = saved.as_ref().map_or(now, |cp| cp.started_at_ms);
        let mut s = self.summary(&opts, started_at_ms);
        s.resumed = saved.is_some();
        if opts.dry_run {
            s.outcome = "dry-run";
        }

        // 1. Pre-flight.
        match self.client.jwks().await {
            Ok(jwks) => s.instance = jwks.kids,
            Err(e) => return self.fail(s, e, &opts).await,
        }
        if opts.scope == Scope::All {
            match self.client.user_count().await {
                Ok(users) => s.estimate = Some(self.estimate(users)),
                Err(e) => return self.fail(s, e, &opts).await,
            }
        }
        if opts.dry_run {
            return self.dry_run(s, &opts).await;
        }

        // 2. Confirmation.
        if opts.scope == Scope::All && !opts.yes && !s.resumed {
            let users = s.estimate.as_ref().map_or(0, |e| e.users);
            let prompt = format!(
                "This revokes EVERY active or pending session of instance {} ({users} users) at Clerk: every user \
                 must sign in again. Type \"yes\" to continue: ",
                s.instance.join(", ")
            );
            match confirm(&prompt) {
                Ok(true) => {}
                Ok(false) => return usage("not confirmed; nothing was revoked"),
                Err(e) => return usage(&e),
            }
        }

        // 3. The gateway first.
        if let Some(admin) = &self.admin {
            if s.resumed {
                s.gateway = "revoked at the gateway by the interrupted run".into();
            } else {
                match self.revoke_at_gateway(admin, &opts).await {
                    Ok(text) => s.gateway = text,
                    Err(e) => {
                        eprintln!("clerkgate revoke --remote: the gateway-side revocation failed, so nothing was revoked at Clerk either:\n{e}");
                        eprintln!("  Fix the admin access (--admin, --admin-token-file), or pass --no-gateway when no gateway runs here.");
                        return ExitCode::from(exit::UNAVAILABLE);
                    }
                }
            }
        }

        // 4. The walk.
        match &opts.scope {
            Scope::Session(id) => match self.client.revoke(id).await {
                Ok(r) => {
                    s.totals.sessions_live = 1;
                    s.totals.count(r);
                }
                Err(e) => return self.fail(s, e, &opts).await,
            },
            Scope::User(id) => match revoke_user(&self.client, id).await {
                Ok(t) => s.totals = t,
                Err(e) => return self.fail(s, e, &opts).await,
            },
            Scope::All => {
                let cp = saved.unwrap_or_else(|| Checkpoint {
                    version: 1,
                    api_url: self.client.settings().api_url.clone(),
                    key_fingerprint: self.fingerprint.clone(),
                    instance: s.instance.clone(),
                    started_at_ms,
                    reason: opts.reason.clone(),
                    users_estimate: s.estimate.as_ref().map(|e| e.users),
                    position: Position::default(),
                    totals: Totals::default(),
                });
                s.not_covered = Some(format!(
                    "users who signed up after {} (the walk goes in creation order; their sessions are new sign-ins)",
                    rfc3339(started_at_ms)
                ));
                let outcome = self.revoke_all(cp, &opts, &mut s).await;
                if let Err(e) = outcome {
                    return self.fail(s, e, &opts).await;
                }
            }
        }

        // 5. Verify.
        if opts.verify {
            match self.verify(&opts.scope, started_at_ms).await {
                Ok(v) => {
                    if v.survivors > 0 {
                        s.next = Some(
                            "sessions are still active: run the same command again (it revokes only what is still \
                             active), then --verify once more"
                                .into(),
                        );
                    }
                    s.verify = Some(v);
                }
                Err(e) => {
                    s.next = Some(format!("the verification walk failed: {}", e.next_step()));
                    s.error = Some(e);
                }
            }
        }
        self.finish(s, &opts).await
    }

    fn estimate(&self, users: u64) -> Estimate {
        let rate = self.client.settings().rate;
        let calls = users.div_ceil(u64::from(clerk_api::PAGE_LIMIT)) + 2 * users;
        let per_second = f64::from(rate.requests) / rate.per.as_secs_f64();
        Estimate { users, calls, seconds: (calls as f64 / per_second).ceil() as u64, rate_per_10s: rate.requests }
    }

    async fn dry_run(&self, mut s: Summary, opts: &Options) -> ExitCode {
        match &opts.scope {
            Scope::All => {}
            Scope::User(id) => match self.client.sessions_of(id).await {
                Ok(sessions) => {
                    s.totals.users = 1;
                    s.totals.sessions_listed = sessions.len() as u64;
                    s.would_revoke = sessions.into_iter().filter(|x| x.is_live()).map(|x| x.id).collect();
                    s.totals.sessions_live = s.would_revoke.len() as u64;
                }
                Err(e) => return self.fail(s, e, opts).await,
            },
            Scope::Session(id) => match self.client.session(id).await {
                Ok(session) if session.is_live() => {
                    s.totals.sessions_live = 1;
                    s.would_revoke.push(session.id);
                }
                Ok(_) => s.totals.already_ended = 1,
                Err(e) if e.kind == ErrorKind::NotFound => s.totals.already_gone = 1,
                Err(e) => return self.fail(s, e, opts).await,
            },
        }
        self.finish(s, opts).await
    }

    async fn revoke_at_gateway(&self, admin: &Target, opts: &Options) -> Result<String, String> {
        let reason = if opts.reason.is_empty() { "revoke --remote".to_string() } else { opts.reason.clone() };
        if let Some((fleet, env)) = &opts.fleet {
            use super::fleet::FleetRevoke;
            use crate::revocation::Revocation;
            let what = match &opts.scope {
                Scope::All => FleetRevoke::Add(Revocation::IssuedBefore(Clock::system().now_ms())),
                Scope::User(id) => FleetRevoke::Add(Revocation::User(id.clone())),
                Scope::Session(id) => FleetRevoke::Add(Revocation::Session(id.clone())),
            };
            return fleet.revoke_quietly(what, &reason, env).await;
        }
        let body = match &opts.scope {
            Scope::All => api::RevokeRequest { issued_before: Some("now".into()), reason, ..Default::default() },
            Scope::User(id) => api::RevokeRequest { user_id: Some(id.clone()), reason, ..Default::default() },
            Scope::Session(id) => api::RevokeRequest { session_id: Some(id.clone()), reason, ..Default::default() },
        };
        let body = serde_json::to_value(body).map_err(|e| e.to_string())?;
        let (status, value) = client::request(admin, http::Method::POST, &["revocations"], &[], Some(body)).await?;
        if !status.is_success() {
            return Err(client::refusal(admin, status, &value).join("\n"));
        }
        let list: api::Revocations = serde_json::from_value(value).unwrap_or(api::Revocations {
            sessions: Default::default(),
            users: Default::default(),
            issued_before: None,
        });
        Ok(match &opts.scope {
            Scope::All => {
                format!("refuses every token issued before {}", list.issued_before.as_deref().unwrap_or("now"))
            }
            Scope::User(id) => format!("refuses every token of user {id}"),
            Scope::Session(id) => format!("refuses every token of session {id}"),
        })
    }

    async fn revoke_all(&self, mut cp: Checkpoint, opts: &Options, s: &mut Summary) -> Result<(), ApiError> {
        let save = |cp: &Checkpoint| {
            if let Err(e) = walk::write_checkpoint(&self.checkpoint, cp) {
                eprintln!("clerkgate: warning: {e}; an interruption now would redo more users (never skip one)");
            }
        };
        save(&cp);
        let total = s.estimate.as_ref().map(|e| e.users);
        let mut progress = Progress::new(total);
        let mut totals = cp.totals.clone();
        let mut position = cp.position.clone();
        let mut last_save = Instant::now();
        let outcome = walk::walk(
            &self.client,
            &mut position,
            opts.concurrency,
            |user| async move { revoke_user(&self.client, &user.id).await },
            |pos, outcome: Option<Totals>| {
                if let Some(t) = &outcome {
                    totals.add(t);
                }
                if outcome.is_none() || last_save.elapsed() >= std::time::Duration::from_millis(500) {
                    cp.position = pos.clone();
                    cp.totals = totals.clone();
                    save(&cp);
                    last_save = Instant::now();
                }
                let stats = self.client.stats();
                progress.update(
                    totals.users,
                    total,
                    &format!(
                        "{} revoked, {} already gone, {} rate-limited waits",
                        totals.revoked, totals.already_gone, stats.rate_limited
                    ),
                );
            },
        )
        .await;
        progress.finish();
        s.paging = Some(position.paging());
        s.totals = totals.clone();
        match outcome {
            Ok(()) => {
                if let Err(e) = std::fs::remove_file(&self.checkpoint) {
                    eprintln!(
                        "clerkgate: warning: cannot remove the finished run's checkpoint {}: {e}",
                        self.checkpoint.display()
                    );
                }
                Ok(())
            }
            Err(e) => {
                cp.position = position;
                cp.totals = totals;
                save(&cp);
                Err(e)
            }
        }
    }

    async fn verify(&self, scope: &Scope, started_at_ms: i64) -> Result<Verified, ApiError> {
        let before_start = |created: Option<i64>| created.is_none_or(|c| c <= started_at_ms);
        let mut v = Verified::default();
        let mut note = |ids: Vec<String>| {
            v.survivors += ids.len() as u64;
            let room = SAMPLE.saturating_sub(v.sample.len());
            v.sample.extend(ids.into_iter().take(room));
        };
        match scope {
            Scope::Session(id) => match self.client.session(id).await {
                Ok(x) if x.is_live() => note(vec![x.id]),
                Ok(_) => {}
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            },
            Scope::User(id) => {
                let live = self
                    .client
                    .sessions_of(id)
                    .await?
                    .into_iter()
                    .filter(|x| x.is_live() && before_start(x.created_at));
                note(live.map(|x| x.id).collect());
            }
            Scope::All => {
                let mut position = Position::default();
                walk::walk(
                    &self.client,
                    &mut position,
                    8,
                    |user| async move {
                        let sessions = self.client.sessions_of(&user.id).await?;
                        Ok(sessions
                            .into_iter()
                            .filter(|x| x.is_live() && before_start(x.created_at))
                            .map(|x| x.id)
                            .collect())
                    },
                    |_, ids: Option<Vec<String>>| note(ids.unwrap_or_default()),
                )
                .await?;
            }
        }
        Ok(v)
    }
}

/// Every session of `user_id` that is active or pending, revoked one after another.
async fn revoke_user(client: &Client, user_id: &str) -> Result<Totals, ApiError> {
    let sessions = client.sessions_of(user_id).await?;
    let mut t = Totals { users: 1, sessions_listed: sessions.len() as u64, ..Totals::default() };
    for session in sessions.iter().filter(|s| s.is_live()) {
        t.sessions_live += 1;
        t.count(client.revoke(&session.id).await?);
    }
    Ok(t)
}

fn usage(why: &str) -> ExitCode {
    eprintln!("clerkgate revoke --remote: {why}");
    ExitCode::from(exit::USAGE)
}

/// Asks on the terminal; refuses without one.
fn confirm(prompt: &str) -> Result<bool, String> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Err("this revokes every session of the instance and needs a confirmation: no terminal to ask on, so \
                    pass --yes (see the estimate first with --dry-run)"
            .into());
    }
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read the confirmation: {e}"))?;
    Ok(line.trim().eq_ignore_ascii_case("yes"))
}

/// The human summary.
pub fn show(s: &Summary) -> String {
    let t = &s.totals;
    let title = match s.outcome {
        "dry-run" => format!("revoke --remote {} (dry run: nothing revoked)", s.scope),
        "stopped" => format!("revoke --remote {}: STOPPED after {:.1} s", s.scope, s.duration_s),
        _ => format!(
            "revoke --remote {}: done in {:.1} s{}",
            s.scope,
            s.duration_s,
            if s.resumed { " (resumed)" } else { "" }
        ),
    };
    let mut out = vec![title];
    let mut line = |k: &str, v: String| out.push(format!("  {k:<13} {v}"));
    if !s.instance.is_empty() {
        line("instance", s.instance.join(", "));
    }
    if let Some(e) = &s.estimate {
        line(
            "estimate",
            format!(
                "{} users, about {} Backend API calls, about {} at {} requests per 10 s",
                e.users,
                e.calls,
                crate::state::human(std::time::Duration::from_secs(e.seconds)),
                e.rate_per_10s
            ),
        );
    }
    if s.outcome == "dry-run" {
        if s.scope == "all" {
            line("would", "refuse every token issued before now at the gateway, then revoke every active or pending session at Clerk".into());
        } else if !s.would_revoke.is_empty() {
            line("would revoke", s.would_revoke.join(", "));
        } else {
            line("would revoke", "nothing: no active or pending session".into());
        }
    } else {
        line("gateway", s.gateway.clone());
        line("users", format!("{}{}", t.users, s.paging.map_or_else(String::new, |p| format!(" (paging: {p})"))));
        line("sessions", format!("{} listed, {} active or pending", t.sessions_listed, t.sessions_live));
        line(
            "revoked",
            format!("{} now, {} already gone (404), {} already ended", t.revoked, t.already_gone, t.already_ended),
        );
    }
    let calls: u64 = s.api.calls.values().flat_map(|m| m.values()).sum();
    line(
        "backend api",
        format!(
            "{calls} calls, {} rate-limited waits ({}), {} retries",
            s.api.rate_limited,
            crate::state::human(std::time::Duration::from_millis(s.api.rate_limited_wait_ms)),
            s.api.retries
        ),
    );
    if let Some(n) = &s.not_covered {
        line("not covered", n.clone());
    }
    if let Some(v) = &s.verify {
        let sample = if v.sample.is_empty() { String::new() } else { format!(": {}", v.sample.join(", ")) };
        line("verify", format!("{} sessions still active or pending{sample}", v.survivors));
    }
    if let Some(e) = &s.error {
        line("error", e.to_string());
    }
    if let Some(n) = &s.next {
        line("next", n.clone());
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn totals_add_up() {
        let mut t = Totals::default();
        t.count(Revoked::Now);
        t.count(Revoked::AlreadyGone);
        t.count(Revoked::AlreadyEnded);
        let mut all = Totals::default();
        all.add(&t);
        all.add(&t);
        assert_eq!((all.revoked, all.already_gone, all.already_ended), (2, 2, 2));
        assert_eq!(json!(all)["revoked"], 2);
    }

    #[test]
    fn a_recent_checkpoint_is_a_run_in_progress() {
        let dir = tempfile::tempdir().expect("dir");
        let now = std::time::SystemTime::now();
        assert_eq!(in_progress(dir.path(), now), None, "no checkpoint");
        std::fs::write(walk::checkpoint_path(dir.path()), b"{}").expect("write");
        assert!(in_progress(dir.path(), now + std::time::Duration::from_secs(60)).is_some(), "written a minute ago");
        let later = now + IN_PROGRESS_WITHIN + std::time::Duration::from_secs(60);
        assert_eq!(in_progress(dir.path(), later), None, "stopped over an hour ago: waits for --resume");
    }
}
