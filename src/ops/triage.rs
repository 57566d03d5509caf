//! `clerkgate triage [--json]` (SPEC §9, the decided design of clerk-ops §8.4): the runbook's
//! first step, three curl probes read by a human, as one command. The probes run at once, each
//! with its own timeout and latency, and the whole run ends by a global deadline even when every
//! remote hangs:
//!
//! | # | Probe |
//! | --- | --- |
//! | P1 | Clerk's status page: `clerk.status_url` (a `status.json` is read as the `summary.json` beside it, for the components) |
//! | P2 | The Frontend API's `/v1/health` (`clerk.proxy_url`, `clerk.frontend_api` or the publishable key's host) |
//! | P3 | The Frontend API's `/.well-known/jwks.json`: its kids |
//! | P4 | The Backend API's `GET /v1/jwks` with the secret key (not rate limited); a pinned `clerk.jwt_key` among its keys? |
//! | P5 | The Backend API's `GET /v1/users?limit=1` (one budgeted call) |
//! | P6 | The gateway itself: its `/status` (keys, state, refusals by reason, the webhook journal's facts) and `/metrics` (upstream errors); this host's clock against P4/P5's `Date` |
//! | P7 | The upstream: `GET /` on `upstream.url` (a TCP connect for `https://`) |
//!
//! Then [`classify`] names the category, the severity and the next command: the first matching
//! row of §8.4's table, with two rows of clerkgate's own for what the gateway's refusals show
//! when Clerk is fine — `authorized-parties` (a spike of `token-invalid-authorized-parties`:
//! the app is served from an origin `clerk.authorized_parties` lacks) and `clock-skew` (expired
//! or not-yet-valid tokens). The counters are the gateway's since its start, so a "spike" is a
//! share of the verdicts since then ([`spike`]). The result is printed and recorded in the
//! gateway's audit log as `triage.run` (its `after` holds `category` and `severity`, which the
//! incident report quotes).

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::admin::api::Status;
use crate::admin::client::{self, Target};
use crate::clerk_api::{self, ApiError, ErrorKind, UserPage};
use crate::config::Config;
use crate::keys::VerifyingKey;
use crate::store::Action;

/// The default limit on each probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(4);
/// The whole run, probes and the audit record, ends by then (SPEC: under 6 s).
pub const DEADLINE: Duration = Duration::from_millis(5500);
/// An answer slower than this counts as "slow" (clerk-degraded).
const SLOW: Duration = Duration::from_secs(2);
/// The status page components that matter to a gateway (clerk-ops §8.4 P1).
const RELEVANT_COMPONENTS: [&str; 3] = ["Session management", "User and authentication", "Webhooks"];
/// A reason is a spike when at least this many requests were refused for it…
const SPIKE_MIN: u64 = 3;
/// …and they are at least this share (in percent) of the token verdicts since the start.
const SPIKE_PERCENT: u64 = 10;
/// A clock further than this from the Backend API's `Date` is a gateway fault (clerk-ops §8.4:
/// Clerk allows 5 s of skew by default).
pub const CLOCK_OFFSET_MAX_MS: i64 = 5_000;
/// Webhook signature failures for longer than this are SEV2: Svix disables an endpoint after
/// five days of failures (clerk-ops §8.4).
const WEBHOOK_FAILING_SEV2_S: i64 = 24 * 3600;

/// Exit codes: 0 healthy, 2 usage or config, and 10 + n for SEVn.
pub mod exit {
    /// SEV1.
    pub const SEV1: u8 = 11;
    /// SEV2.
    pub const SEV2: u8 = 12;
    /// SEV3.
    pub const SEV3: u8 = 13;
}

/// What the command was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// The limit on each probe.
    pub timeout: Duration,
    /// Print JSON.
    pub json: bool,
}

/// How one probe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    /// Answered, nominal.
    Ok,
    /// Answered, but degraded, slow or not as expected.
    Warn,
    /// Answered with a failure, or refused the connection.
    Fail,
    /// No answer within its timeout.
    Timeout,
    /// Not run (nothing configured to probe).
    Skipped,
}

/// One probe's line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// `P1` … `P7`.
    pub id: String,
    /// What it asks.
    pub name: String,
    /// Where.
    pub target: String,
    /// How it ended.
    pub state: State,
    /// How long it took; none when skipped.
    pub latency_ms: Option<u64>,
    /// What it found.
    pub detail: String,
}

/// The severity of §8.4's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    /// Sign-ins failing or no usable keys.
    #[serde(rename = "SEV1")]
    Sev1,
    /// Degraded for users, or tooling broken.
    #[serde(rename = "SEV2")]
    Sev2,
    /// Watch it.
    #[serde(rename = "SEV3")]
    Sev3,
    /// Nothing to do.
    #[serde(rename = "none")]
    None,
}

impl Severity {
    /// As written: `SEV1` … `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Sev1 => "SEV1",
            Severity::Sev2 => "SEV2",
            Severity::Sev3 => "SEV3",
            Severity::None => "none",
        }
    }

    /// The exit code (see [`exit`]).
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Severity::Sev1 => exit::SEV1,
            Severity::Sev2 => exit::SEV2,
            Severity::Sev3 => exit::SEV3,
            Severity::None => 0,
        })
    }
}

/// The verdict: category, severity, why, and the exact next command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// One of §8.4's categories, or `authorized-parties` / `clock-skew`.
    pub category: String,
    /// Its severity.
    pub severity: Severity,
    /// The evidence, in one sentence.
    pub why: String,
    /// What to run next.
    pub next: String,
}

/// What `triage` prints with `--json`, and records as the audit line's `after`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The category (top level, as the incident report reads it).
    pub category: String,
    /// `SEV1`, `SEV2`, `SEV3` or `none`.
    pub severity: Severity,
    /// The evidence.
    pub why: String,
    /// The next command.
    pub next: String,
    /// Every probe, P1 to P7.
    pub probes: Vec<Probe>,
    /// The probes that ran out of time.
    pub timed_out: Vec<String>,
    /// How long the probes took, in ms.
    pub elapsed_ms: u64,
    /// This host's clock minus the Backend API's `Date` header (P4, P5), ms; none without an
    /// answer. Further than 5 s is a `gateway-fault`.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
    /// Whether the audit log has it, or why not.
    pub recorded: String,
}

/// What the status page says (P1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Page {
    /// `none`, relevant components operational.
    Healthy,
    /// `minor`/`maintenance`, or a relevant component not operational.
    Degraded,
    /// `major`/`critical`, or a relevant component in `major_outage`.
    Outage,
    /// No answer, not the Statuspage shape, or a value not known.
    #[default]
    Unknown,
}

/// What a reachability probe found (P2, P7).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Reach {
    /// Answered as expected.
    Up,
    /// Answered, oddly (not the documented shape, another status, slow).
    Odd,
    /// Failing: a 5xx (503 unhealthy), refused, no answer.
    Down,
    /// Not probed.
    #[default]
    Skipped,
}

/// What a Backend API probe found (P4, P5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Api {
    /// 2xx (P4: with these kids).
    Ok(Vec<String>),
    /// Answered, but slowly or with another 4xx / a body not as documented.
    Odd,
    /// 401 `clerk_key_invalid`.
    KeyInvalid,
    /// 429.
    RateLimited,
    /// 5xx, refused, no answer.
    Failing,
    /// No secret key configured.
    #[default]
    Skipped,
}

/// Everything [`classify`] reads.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    /// P1.
    pub page: Page,
    /// P2.
    pub fapi: Reach,
    /// P3: the kids the Frontend API serves, when it answered.
    pub fapi_kids: Option<Vec<String>>,
    /// P3 answered oddly or not at all while configured.
    pub fapi_jwks_odd: bool,
    /// P4.
    pub jwks: Api,
    /// P5.
    pub users: Api,
    /// P6: the gateway's `/status`, when it answered.
    pub gateway: Option<Status>,
    /// P7.
    pub upstream: Reach,
    /// P4 with a pinned `clerk.jwt_key`: whether the Backend API serves that key (by modulus
    /// and exponent); none without a pinned key or an answer.
    pub pinned_key_served: Option<bool>,
    /// P6: this host's clock minus the Backend API's `Date` (P4, P5), ms.
    pub clock_offset_ms: Option<i64>,
    /// A `revoke --remote --all` run in progress (its checkpoint is recent): what it is.
    pub revoke_running: Option<String>,
}

fn api_failing(a: &Api) -> bool {
    matches!(a, Api::Failing)
}

/// Refusals for `reasons` in `status`'s counters, when they are a spike: at least
/// [`SPIKE_MIN`], and at least [`SPIKE_PERCENT`] % of the token verdicts (signed in, grace, and
/// refused) since the gateway started.
pub fn spike(status: &Status, reasons: &[&str]) -> Option<u64> {
    let c = &status.counters;
    let n: u64 = reasons.iter().filter_map(|r| c.rejected.get(*r)).sum();
    let verdicts = c.signed_in + c.grace + c.rejected.values().sum::<u64>();
    (n >= SPIKE_MIN && n * 100 >= verdicts * SPIKE_PERCENT).then_some(n)
}

/// Refusals that mean the clock: the token's time window against the gateway's clock.
/// (The `session-token-*` ones are the browser flow's names for the same checks.)
const CLOCK_REASONS: [&str; 6] = [
    "token-expired",
    "token-not-active-yet",
    "token-iat-in-the-future",
    "session-token-expired",
    "session-token-nbf",
    "session-token-iat-in-the-future",
];
/// Refusals that mean the app's origin is not an authorized party.
const AZP_REASONS: [&str; 1] = ["token-invalid-authorized-parties"];
/// Refusals that mean a signing key the gateway does not hold.
const KID_REASONS: [&str; 1] = ["jwk-kid-mismatch"];

/// The category, severity and next command: the first matching row of clerk-ops §8.4's table,
/// with `authorized-parties` and `clock-skew` after the rows that blame Clerk (a Clerk outage
/// also ends in expired tokens) and before the gateway's and the upstream's.
pub fn classify(f: &Findings) -> Verdict {
    let verdict = |category: &str, severity: Severity, why: String, next: &str| Verdict {
        category: category.into(),
        severity,
        why,
        next: next.into(),
    };
    let gw = f.gateway.as_ref();
    let keys_usable = gw.is_some_and(|s| s.ready);

    // clerk-outage
    let mut outage = Vec::new();
    if f.fapi == Reach::Down {
        outage.push("the Frontend API's health check fails (P2)");
    }
    if f.page == Page::Outage {
        outage.push("Clerk's status page reports an outage (P1)");
    }
    if api_failing(&f.jwks) && api_failing(&f.users) {
        outage.push("the Backend API fails or does not answer (P4, P5)");
    }
    if !outage.is_empty() {
        let (severity, next) = if keys_usable {
            (Severity::Sev2, "clerkgate mode grace --reason \"Clerk outage (triage)\" --ttl 1h")
        } else {
            (Severity::Sev1, "clerkgate mode bypass --reason \"Clerk outage, no usable keys (triage)\" --ttl 30m")
        };
        let tail = if keys_usable {
            "; the gateway still verifies with its cached keys, refresh and handshake fail"
        } else {
            "; the gateway has no usable keys"
        };
        return verdict("clerk-outage", severity, format!("{}{tail}", outage.join("; ")), next);
    }

    // credential-invalid
    if f.jwks == Api::KeyInvalid || f.users == Api::KeyInvalid {
        return verdict(
            "credential-invalid",
            Severity::Sev2,
            "the Backend API refuses the secret key (401 clerk_key_invalid): JWKS refresh, revoke and webhook replay \
             are broken; auth continues on cached keys"
                .into(),
            "clerkgate keys check   (after putting a current secret key in clerk.secret_key_file, then clerkgate reload)",
        );
    }

    // signing-key-change
    let bapi_kids: Option<BTreeSet<&String>> = match &f.jwks {
        Api::Ok(kids) if !kids.is_empty() => Some(kids.iter().collect()),
        _ => None,
    };
    let gateway_kids: Option<BTreeSet<&String>> =
        gw.filter(|s| !s.keys.kids.is_empty()).map(|s| s.keys.kids.iter().collect());
    let fapi_kids: Option<BTreeSet<&String>> =
        f.fapi_kids.as_ref().filter(|k| !k.is_empty()).map(|k| k.iter().collect());
    let mut change = Vec::new();
    if let (Some(b), Some(g)) = (&bapi_kids, &gateway_kids) {
        if b != g {
            change.push(format!(
                "the Backend API serves kids {:?}, the gateway holds {:?}",
                b.iter().collect::<Vec<_>>(),
                g.iter().collect::<Vec<_>>()
            ));
        }
    }
    if let (Some(b), Some(fk)) = (&bapi_kids, &fapi_kids) {
        if b != fk {
            change.push("the Frontend API and the Backend API serve different kids".into());
        }
    }
    // A gateway on a pinned key alone verifies with nothing else: Clerk no longer serving it
    // means every new token fails.
    if f.pinned_key_served == Some(false) && gateway_kids.is_none() {
        let served = bapi_kids.iter().flatten().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
        change.push(format!("the pinned clerk.jwt_key is not among the keys the Backend API serves (kids {served})"));
    }
    if let Some(n) = gw.and_then(|s| spike(s, &KID_REASONS)) {
        change.push(format!("{n} requests refused with jwk-kid-mismatch"));
    }
    if !change.is_empty() {
        return verdict(
            "signing-key-change",
            Severity::Sev2,
            change.join("; "),
            "clerkgate keys refresh && clerkgate keys check",
        );
    }

    // clerk-rate-limited
    if f.users == Api::RateLimited || f.jwks == Api::RateLimited {
        let why = "the Backend API answers 429: the instance's rate budget is spent";
        return match &f.revoke_running {
            Some(run) => verdict(
                "clerk-rate-limited",
                Severity::Sev2,
                format!("{why}, and {run}: it stalls while the budget is spent"),
                "clerkgate triage   (again in a minute; pause other Backend API jobs; the revoke waits out the 429s \
                 by itself, and if it stops: clerkgate revoke --remote --all --resume --yes)",
            ),
            None => verdict(
                "clerk-rate-limited",
                Severity::Sev3,
                format!("{why} (a remote revoke would stall)"),
                "clerkgate triage   (again in a minute; pause bulk Backend API jobs, resume revoke --remote with --resume)",
            ),
        };
    }

    // clerk-degraded
    let mut degraded = Vec::new();
    if f.page == Page::Degraded {
        degraded.push("Clerk's status page reports degradation (P1)");
    }
    if f.fapi == Reach::Odd || f.fapi_jwks_odd {
        degraded.push("the Frontend API answers slowly or oddly (P2, P3)");
    }
    if matches!(f.jwks, Api::Odd | Api::Failing) || matches!(f.users, Api::Odd | Api::Failing) {
        degraded.push("the Backend API answers slowly or with errors (P4, P5)");
    }
    if !degraded.is_empty() {
        return verdict(
            "clerk-degraded",
            Severity::Sev3,
            degraded.join("; "),
            "clerkgate triage   (again in a few minutes; if tokens stop refreshing: clerkgate mode grace --reason \"Clerk degraded\" --ttl 1h)",
        );
    }

    if let Some(s) = gw {
        // authorized-parties (clerkgate's own row)
        if let Some(n) = spike(s, &AZP_REASONS) {
            return verdict(
                "authorized-parties",
                Severity::Sev2,
                format!(
                    "{n} requests refused with token-invalid-authorized-parties while Clerk is healthy: the app is served \
                     from an origin clerk.authorized_parties does not list"
                ),
                "add the new origin to clerk.authorized_parties, then: clerkgate reload",
            );
        }
        // clock-skew (clerkgate's own row)
        if let Some(n) = spike(s, &CLOCK_REASONS) {
            return verdict(
                "clock-skew",
                Severity::Sev2,
                format!(
                    "{n} requests refused as expired or not yet valid while Clerk is healthy: the gateway's clock (or \
                     the clients') is off"
                ),
                "chronyc tracking   (or timedatectl status: fix NTP on the gateway's host)",
            );
        }
        // webhook-gap
        if let Some(v) = webhook_gap(s, f.page) {
            return v;
        }
    }

    // gateway-fault
    let mut fault = Vec::new();
    let clock_off = f.clock_offset_ms.filter(|ms| ms.abs() > CLOCK_OFFSET_MAX_MS);
    if let Some(ms) = clock_off {
        fault.push(format!(
            "this host's clock is {} from the Backend API's Date header (more than {} s)",
            offset_text(ms),
            CLOCK_OFFSET_MAX_MS / 1000
        ));
    }
    if let Some(s) = gw {
        if !s.state.writable {
            fault.push(format!(
                "the state store takes no writes ({})",
                s.state.problem.as_deref().unwrap_or("no detail")
            ));
        }
        if s.keys.stale && s.keys.last_error.is_some() {
            fault.push(format!(
                "the key set is stale and fetching fails ({})",
                s.keys.last_error.as_deref().unwrap_or("")
            ));
        }
        if !s.ready {
            fault.push("the gateway is not ready (no usable keys)".into());
        }
        if let Some(n) = s.counters.rejected.get("unexpected-error").filter(|n| **n > 0) {
            fault.push(format!("{n} requests ended in unexpected-error"));
        }
    }
    if !fault.is_empty() {
        let next = if fault.len() == 1 && clock_off.is_some() {
            "chronyc tracking   (or timedatectl status: fix NTP on the gateway's host)"
        } else {
            "clerkgate status"
        };
        return verdict("gateway-fault", Severity::Sev2, fault.join("; "), next);
    }

    // upstream-outage
    if f.upstream == Reach::Down {
        return verdict(
            "upstream-outage",
            Severity::Sev2,
            "the upstream fails while Clerk's probes are healthy (P7)".into(),
            "clerkgate status   (then the upstream's own runbook: the gateway and Clerk are fine)",
        );
    }

    // No row matched: say what was not seen, since "status unknown" is not "healthy" (§8.4).
    let mut unseen = Vec::new();
    if f.page == Page::Unknown {
        unseen.push("Clerk's status page could not be read (P1)");
    }
    if f.gateway.is_none() {
        unseen.push("the gateway itself could not be asked (P6)");
    }
    if unseen.is_empty() {
        return verdict("healthy", Severity::None, "every probe is nominal".into(), "nothing to do");
    }
    verdict(
        "healthy",
        Severity::None,
        format!("no probe found a fault, but {}", unseen.join(", and ")),
        "check https://status.clerk.com by hand, and that --admin names the gateway (clerkgate status)",
    )
}

/// The `webhook-gap` row from the gateway's webhook facts: signature failures (SEV2 once the
/// first is over a day old), or no verified delivery for longer than `clerk.webhook_gap_window`
/// while the status page has Webhooks operational (only with a `webhook = "clerk"` route).
fn webhook_gap(s: &Status, page: Page) -> Option<Verdict> {
    let w = &s.webhooks;
    // An older gateway reports only the refusal counter.
    let failures = w.signature_failures.max(s.counters.rejected.get("webhook-invalid").copied().unwrap_or(0));
    if failures > 0 {
        let failing = w.failing_seconds.unwrap_or(0);
        let severity = if failing > WEBHOOK_FAILING_SEV2_S { Severity::Sev2 } else { Severity::Sev3 };
        let since = w.first_failure_at.as_deref().map(|t| format!(" since {t}")).unwrap_or_default();
        return Some(Verdict {
            category: "webhook-gap".into(),
            severity,
            why: format!(
                "{failures} webhooks refused with webhook-invalid{since}: a wrong or rotated \
                 clerk.webhook_signing_secret (Svix disables an endpoint after 5 days of failures)"
            ),
            next:
                "clerkgate webhooks list --failed   (fix clerk.webhook_signing_secret, clerkgate reload, then recover \
                   the failed messages in Clerk's dashboard)"
                    .into(),
        });
    }
    let window = i64::try_from(w.gap_window_seconds).unwrap_or(i64::MAX);
    if w.route && page == Page::Healthy && w.quiet_seconds > window {
        let last = match &w.last_verified_at {
            Some(at) => format!("the last at {at}"),
            None => "none since the gateway started".into(),
        };
        return Some(Verdict {
            category: "webhook-gap".into(),
            severity: Severity::Sev3,
            why: format!(
                "no verified webhook for {} ({last}; clerk.webhook_gap_window {}) while Clerk reports Webhooks \
                 operational: the endpoint may be disabled or pointed elsewhere",
                humantime::format_duration(Duration::from_secs(w.quiet_seconds.unsigned_abs())),
                humantime::format_duration(Duration::from_secs(w.gap_window_seconds)),
            ),
            next: "clerkgate webhooks list   (then Clerk's dashboard → Webhooks → the endpoint: enabled, this URL, \
                   failed attempts to recover)"
                .into(),
        });
    }
    None
}

/// `+30.2 s` / `-6.0 s`.
fn offset_text(ms: i64) -> String {
    format!("{}{:.1} s", if ms >= 0 { "+" } else { "-" }, ms.unsigned_abs() as f64 / 1000.0)
}

/// Whether the Backend API's JWKS (`body`) holds `pinned` (same modulus and exponent); none
/// when the body is not a JWKS with a usable key.
pub fn pinned_key_served(pinned: &VerifyingKey, body: &[u8]) -> Option<bool> {
    let served = crate::keys::parse_jwks(body).ok()?;
    Some(served.keys.values().any(|k| k.n == pinned.n && k.e == pinned.e))
}

/// Runs triage: the probes, the verdict, the output, the audit record; the exit code is the
/// severity's ([`exit`]).
pub async fn run(config: &Config, gateway: Option<Target>, gateway_why: Option<String>, opts: Options) -> ExitCode {
    let report = match assess(config, gateway, gateway_why, opts.timeout).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("clerkgate triage: {e}");
            return ExitCode::from(super::exit::USAGE);
        }
    };
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print!("{}", show(&report));
    }
    report.severity.exit_code()
}

/// Runs the probes, names the category and severity, and records the result in the gateway's
/// audit log (`triage.run`): triage without its output, for `run` and the console's button.
pub async fn assess(
    config: &Config,
    gateway: Option<Target>,
    gateway_why: Option<String>,
    timeout: Duration,
) -> Result<Report, String> {
    let started = Instant::now();
    let timeout = timeout.min(DEADLINE.saturating_sub(Duration::from_millis(1000)));
    // The clients' own limits are a little longer, so that a probe that runs out of time is
    // cut by [`bounded`] and reported as a timeout.
    let client_limit = timeout + Duration::from_millis(500);
    let http = match reqwest::Client::builder()
        .user_agent(concat!("clerkgate/", env!("CARGO_PKG_VERSION"), " triage"))
        .timeout(client_limit)
        .connect_timeout(client_limit)
        .redirect(reqwest::redirect::Policy::limited(3))
        .build()
    {
        Ok(c) => c,
        Err(e) => return Err(format!("cannot build an HTTP client: {e}")),
    };
    let bapi = super::settings(config).ok().and_then(|s| {
        let settings =
            clerk_api::Settings { timeout: client_limit, attempts: 1, rate_limited_for: Duration::from_millis(1), ..s };
        clerk_api::Client::new(settings).ok()
    });
    let fapi = frontend_api(config);

    let (p1, p2, p3, p4, p5, p6, p7) = tokio::join!(
        bounded("P1", "status page", timeout, status_page(&http, &config.clerk.status_url)),
        bounded("P2", "frontend api health", timeout, fapi_health(&http, fapi.as_deref())),
        bounded("P3", "frontend api jwks", timeout, fapi_jwks(&http, fapi.as_deref())),
        bounded("P4", "backend api jwks", timeout, bapi_jwks(bapi.as_ref(), config.clerk.jwt_key.as_deref())),
        bounded("P5", "backend api users", timeout, bapi_users(bapi.as_ref())),
        bounded("P6", "gateway", timeout, gateway_self(gateway.as_ref(), gateway_why.as_deref())),
        bounded("P7", "upstream", timeout, upstream(&http, config)),
    );
    let mut probes = Vec::new();
    let slow_api = |a: Api| if matches!(a, Api::Ok(_)) { Api::Odd } else { a };
    let slow_reach = |r: Reach| if r == Reach::Up { Reach::Odd } else { r };
    let p3_odd = !matches!(p3.line.state, State::Ok | State::Skipped);
    // The lines in probe order.
    let page = take(p1, &mut probes, |p| p).unwrap_or_default();
    let fapi_health = take(p2, &mut probes, slow_reach).unwrap_or(Reach::Down);
    let fapi_kids = take(p3, &mut probes, |k| k).flatten();
    let (jwks, pinned_key_served) =
        take(p4, &mut probes, |(a, pinned)| (slow_api(a), pinned)).unwrap_or((Api::Failing, None));
    let users = take(p5, &mut probes, slow_api).unwrap_or(Api::Failing);
    let gateway_status = take(p6, &mut probes, |s| s).flatten();
    let upstream = take(p7, &mut probes, |r| r).unwrap_or(Reach::Down);
    let clock_offset_ms = bapi.as_ref().and_then(|c| c.stats().clock_offset_ms);
    let revoke_running = super::revoke::in_progress(&config.state.dir, std::time::SystemTime::now()).map(|age| {
        format!(
            "a revoke --remote --all run is in progress (its checkpoint was written {} ago)",
            humantime::format_duration(Duration::from_secs(age.as_secs()))
        )
    });
    let findings = Findings {
        page,
        fapi: fapi_health,
        fapi_kids,
        fapi_jwks_odd: p3_odd,
        jwks,
        users,
        gateway: gateway_status,
        upstream,
        pinned_key_served,
        clock_offset_ms,
        revoke_running,
    };
    let verdict = classify(&findings);
    let timed_out = probes.iter().filter(|p| p.state == State::Timeout).map(|p| p.id.clone()).collect();
    let mut report = Report {
        category: verdict.category,
        severity: verdict.severity,
        why: verdict.why,
        next: verdict.next,
        probes,
        timed_out,
        elapsed_ms: started.elapsed().as_millis() as u64,
        clock_offset_ms,
        recorded: String::new(),
    };
    report.recorded = match &gateway {
        None => format!("not recorded: no admin API to record it in ({})", gateway_why.unwrap_or_default()),
        Some(target) => {
            let left = DEADLINE.saturating_sub(started.elapsed()).max(Duration::from_millis(200));
            let after = serde_json::to_value(&report).unwrap_or(Value::Null);
            let reason = format!("triage: {} {}", report.category, report.severity.as_str());
            match tokio::time::timeout(left, super::record(target, Action::TriageRun, after, &reason)).await {
                Ok(Ok(())) => "in the gateway's audit log (triage.run)".into(),
                Ok(Err(e)) => format!("not recorded: {}", e.lines().next().unwrap_or_default()),
                Err(_) => "not recorded: the admin API did not answer before the deadline".into(),
            }
        }
    };
    Ok(report)
}

/// A probe's outcome before it becomes a line: its state, what it found, and its evidence.
struct Outcome<T> {
    state: State,
    target: String,
    detail: String,
    found: T,
}

impl<T> Outcome<T> {
    fn new(state: State, target: impl Into<String>, detail: impl Into<String>, found: T) -> Self {
        Outcome { state, target: target.into(), detail: detail.into(), found }
    }
}

/// A probe's line and evidence: none when it timed out; `slow` when it answered after [`SLOW`].
struct Ran<T> {
    line: Probe,
    found: Option<T>,
    slow: bool,
}

/// A probe with its timeout and its latency.
async fn bounded<T>(
    id: &str,
    name: &str,
    timeout: Duration,
    probe: impl std::future::Future<Output = Outcome<T>>,
) -> Ran<T> {
    let started = Instant::now();
    let answer = tokio::time::timeout(timeout, probe).await;
    let elapsed = started.elapsed();
    let line = |state, target: String, detail: String| Probe {
        id: id.into(),
        name: name.into(),
        target,
        latency_ms: (state != State::Skipped).then_some(elapsed.as_millis() as u64),
        state,
        detail,
    };
    match answer {
        Ok(o) => {
            let slow = o.state == State::Ok && elapsed > SLOW;
            let (state, detail) =
                if slow { (State::Warn, format!("{} (slow)", o.detail)) } else { (o.state, o.detail) };
            Ran { line: line(state, o.target, detail), found: Some(o.found), slow }
        }
        Err(_) => Ran {
            line: line(
                State::Timeout,
                String::new(),
                format!("no answer within {}", humantime::format_duration(timeout)),
            ),
            found: None,
            slow: false,
        },
    }
}

/// Files the line; the evidence (`when_slow` applied to a slow answer), none after a timeout.
fn take<T>(ran: Ran<T>, probes: &mut Vec<Probe>, when_slow: impl FnOnce(T) -> T) -> Option<T> {
    probes.push(ran.line);
    if ran.slow {
        ran.found.map(when_slow)
    } else {
        ran.found
    }
}

/// The Frontend API's base URL: `clerk.proxy_url` when absolute, else `clerk.frontend_api`,
/// else the publishable key's host.
fn frontend_api(config: &Config) -> Option<String> {
    let clerk = &config.clerk;
    let base = match (&clerk.proxy_url, &clerk.frontend_api, &clerk.publishable_key) {
        (Some(p), ..) if p.starts_with("http") => p.clone(),
        (_, Some(f), _) => f.clone(),
        (_, _, Some(pk)) => pk.frontend_api.clone(),
        _ => return None,
    };
    let base =
        if base.starts_with("http://") || base.starts_with("https://") { base } else { format!("https://{base}") };
    Some(base.trim_end_matches('/').to_string())
}

/// P1's URL: a Statuspage `status.json` is read as the `summary.json` beside it, which has the
/// same `status` and the components too.
pub fn summary_url(status_url: &str) -> String {
    match status_url.strip_suffix("/status.json") {
        Some(base) => format!("{base}/summary.json"),
        None => status_url.to_string(),
    }
}

/// Reads a Statuspage v2 document (clerk-ops §6): only the indicator and the components.
pub fn read_page(body: &[u8]) -> (Page, String) {
    #[derive(Deserialize)]
    struct Doc {
        status: Indicator,
        #[serde(default)]
        components: Vec<Component>,
    }
    #[derive(Deserialize)]
    struct Indicator {
        indicator: String,
        #[serde(default)]
        description: String,
    }
    #[derive(Deserialize)]
    struct Component {
        #[serde(default)]
        name: String,
        #[serde(default)]
        status: String,
    }
    let Ok(doc) = serde_json::from_slice::<Doc>(body) else {
        return (Page::Unknown, "not a Statuspage v2 document".into());
    };
    let off: Vec<&Component> = doc
        .components
        .iter()
        .filter(|c| RELEVANT_COMPONENTS.contains(&c.name.as_str()) && c.status != "operational")
        .collect();
    let listed = off.iter().map(|c| format!("{}: {}", c.name, c.status)).collect::<Vec<_>>().join(", ");
    let mut detail = format!("indicator {}", doc.status.indicator);
    if !doc.status.description.is_empty() {
        detail.push_str(&format!(" ({})", doc.status.description));
    }
    if !listed.is_empty() {
        detail.push_str(&format!("; {listed}"));
    }
    let page = match doc.status.indicator.as_str() {
        "major" | "critical" => Page::Outage,
        _ if off.iter().any(|c| c.status == "major_outage") => Page::Outage,
        "minor" | "maintenance" => Page::Degraded,
        _ if !off.is_empty() => Page::Degraded,
        "none" => Page::Healthy,
        _ => Page::Unknown,
    };
    (page, detail)
}

async fn status_page(http: &reqwest::Client, status_url: &str) -> Outcome<Page> {
    let url = summary_url(status_url);
    match get(http, &url).await {
        Err(e) => Outcome::new(State::Fail, url, format!("status unknown: {e}"), Page::Unknown),
        Ok((status, _)) if !status.is_success() => {
            Outcome::new(State::Fail, url, format!("status unknown: HTTP {}", status.as_u16()), Page::Unknown)
        }
        Ok((_, body)) => {
            let (page, detail) = read_page(&body);
            let state = match page {
                Page::Healthy => State::Ok,
                Page::Degraded | Page::Unknown => State::Warn,
                Page::Outage => State::Fail,
            };
            Outcome::new(state, url, detail, page)
        }
    }
}

async fn fapi_health(http: &reqwest::Client, fapi: Option<&str>) -> Outcome<Reach> {
    let Some(base) = fapi else {
        return Outcome::new(
            State::Skipped,
            "",
            "no Frontend API configured (clerk.publishable_key, clerk.frontend_api or clerk.proxy_url)",
            Reach::Skipped,
        );
    };
    let url = format!("{base}/v1/health");
    match get(http, &url).await {
        Err(e) => Outcome::new(
            State::Fail,
            url,
            format!("unreachable: {e} (check DNS / the CNAME of a custom domain)"),
            Reach::Down,
        ),
        Ok((s, body)) if s.as_u16() == 503 || s.is_server_error() => {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            Outcome::new(State::Fail, url, format!("HTTP {} {text}", s.as_u16()), Reach::Down)
        }
        Ok((s, _)) if s.is_success() => Outcome::new(State::Ok, url, "healthy", Reach::Up),
        Ok((s, _)) => Outcome::new(State::Warn, url, format!("HTTP {}", s.as_u16()), Reach::Odd),
    }
}

/// P3's evidence: the kids, or none when skipped; a failure is no evidence (see [`take`]).
async fn fapi_jwks(http: &reqwest::Client, fapi: Option<&str>) -> Outcome<Option<Vec<String>>> {
    let Some(base) = fapi else {
        return Outcome::new(State::Skipped, "", "no Frontend API configured", None);
    };
    let url = format!("{base}/.well-known/jwks.json");
    match get(http, &url).await {
        Err(e) => Outcome::new(State::Fail, url, format!("unreachable: {e}"), None),
        Ok((s, body)) if s.is_success() => match kids(&body) {
            Some(k) if !k.is_empty() => Outcome::new(State::Ok, url, format!("kids {}", k.join(", ")), Some(k)),
            _ => Outcome::new(State::Warn, url, "no keys in the answer", None),
        },
        Ok((s, _)) => Outcome::new(State::Fail, url, format!("HTTP {}", s.as_u16()), None),
    }
}

fn kids(body: &[u8]) -> Option<Vec<String>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let keys = v.get("keys")?.as_array()?;
    Some(keys.iter().filter_map(|k| k.get("kid")?.as_str().map(str::to_string)).collect())
}

fn api_outcome(e: &ApiError) -> (State, Api) {
    match e.kind {
        ErrorKind::Credential => (State::Fail, Api::KeyInvalid),
        ErrorKind::RateLimited => (State::Warn, Api::RateLimited),
        ErrorKind::Server | ErrorKind::Unreachable => (State::Fail, Api::Failing),
        ErrorKind::Forbidden | ErrorKind::NotFound | ErrorKind::Rejected | ErrorKind::BadAnswer => {
            (State::Warn, Api::Odd)
        }
    }
}

fn no_key() -> Outcome<Api> {
    Outcome::new(State::Skipped, "", "no secret key configured (clerk.secret_key_file)", Api::Skipped)
}

fn api_error_line(e: &ApiError) -> String {
    match e.status {
        Some(s) => format!("HTTP {s}: {}", e.detail),
        None => e.detail.clone(),
    }
}

/// P4; with a pinned `clerk.jwt_key`, also whether Clerk still serves it.
async fn bapi_jwks(client: Option<&clerk_api::Client>, pinned: Option<&VerifyingKey>) -> Outcome<(Api, Option<bool>)> {
    let Some(client) = client else {
        let o = no_key();
        return Outcome::new(o.state, o.target, o.detail, (o.found, None));
    };
    let url = format!("{}/v1/jwks", client.settings().api_url);
    match client.jwks().await {
        Ok(j) => {
            let served = pinned.and_then(|k| pinned_key_served(k, &j.body));
            let mut detail = format!("key accepted, kids {}", j.kids.join(", "));
            match served {
                Some(true) => detail.push_str("; serves the pinned clerk.jwt_key"),
                Some(false) => detail.push_str("; does NOT serve the pinned clerk.jwt_key"),
                None => {}
            }
            if let Some(ms) = client.stats().clock_offset_ms {
                detail.push_str(&format!("; clock offset {}", offset_text(ms)));
            }
            let state = if served == Some(false) { State::Warn } else { State::Ok };
            Outcome::new(state, url, detail, (Api::Ok(j.kids), served))
        }
        Err(e) => {
            let (state, api) = api_outcome(&e);
            Outcome::new(state, url, api_error_line(&e), (api, None))
        }
    }
}

async fn bapi_users(client: Option<&clerk_api::Client>) -> Outcome<Api> {
    let Some(client) = client else { return no_key() };
    let url = format!("{}/v1/users?limit=1", client.settings().api_url);
    match client.users(&UserPage::Cursor { after: None }, 1).await {
        Ok(_) => Outcome::new(State::Ok, url, "data plane answers", Api::Ok(Vec::new())),
        Err(e) => {
            let (state, api) = api_outcome(&e);
            Outcome::new(state, url, api_error_line(&e), api)
        }
    }
}

async fn gateway_self(target: Option<&Target>, why: Option<&str>) -> Outcome<Option<Status>> {
    let Some(target) = target else {
        return Outcome::new(State::Skipped, "", format!("no admin API: {}", why.unwrap_or("not found")), None);
    };
    let url = target.base().join("status").map_or_else(|_| target.base().to_string(), |u| u.to_string());
    let status = match super::gateway_status(target).await {
        Ok(s) => s,
        Err(e) => return Outcome::new(State::Fail, url, e.lines().next().unwrap_or_default().to_string(), None),
    };
    let c = &status.counters;
    let mut refused: Vec<(&String, &u64)> = c.rejected.iter().collect();
    refused.sort_by(|a, b| b.1.cmp(a.1));
    let top = refused.iter().take(4).map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", ");
    let mut detail = format!(
        "ready {}, mode {:?}, keys {} (age {}s{}), signed in {}, refused: {}",
        status.ready,
        status.mode.mode,
        if status.keys.kids.is_empty() { "none remote".to_string() } else { status.keys.kids.join(",") },
        status.keys.age_seconds.map_or("-".into(), |a| a.to_string()),
        if status.keys.stale { ", STALE" } else { "" },
        c.signed_in,
        if top.is_empty() { "none".into() } else { top },
    );
    if let Some(e) = &status.keys.last_error {
        detail.push_str(&format!(", last key fetch error: {e}"));
    }
    let w = &status.webhooks;
    if w.route {
        detail.push_str(&format!(
            ", webhooks: last verified {} (quiet {}s), pending replay {}, duplicates {}, signature failures {}",
            w.last_verified_at.as_deref().unwrap_or("none"),
            w.quiet_seconds,
            w.pending_replay,
            w.duplicates,
            w.signature_failures
        ));
    }
    if let Some(n) = upstream_errors(target).await.filter(|n| *n > 0) {
        detail.push_str(&format!(", upstream errors {n}"));
    }
    let healthy = status.ready && status.state.writable;
    Outcome::new(if healthy { State::Ok } else { State::Warn }, url, detail, Some(status))
}

/// The gateway's upstream errors since start, from its `/metrics`.
async fn upstream_errors(target: &Target) -> Option<u64> {
    let (status, body) = client::request(target, http::Method::GET, &["metrics"], &[], None).await.ok()?;
    let text = body.as_str().filter(|_| status.is_success())?;
    Some(
        text.lines()
            .filter(|l| l.starts_with(crate::telemetry::names::UPSTREAM_ERRORS))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64,
    )
}

async fn upstream(http: &reqwest::Client, config: &Config) -> Outcome<Reach> {
    let up = &config.upstream;
    let authority = up.url.as_str();
    if up.tls.is_some() {
        let target = format!("tcp://{authority}");
        let host_port = if up.url.port().is_some() { authority.to_string() } else { format!("{authority}:443") };
        return match tokio::net::TcpStream::connect(host_port.as_str()).await {
            Ok(_) => Outcome::new(State::Ok, target, "accepts connections (https: TCP only)", Reach::Up),
            Err(e) => Outcome::new(State::Fail, target, format!("cannot connect: {e}"), Reach::Down),
        };
    }
    let url = format!("http://{authority}/");
    match get(http, &url).await {
        Err(e) => Outcome::new(State::Fail, url, format!("unreachable: {e}"), Reach::Down),
        Ok((s, _)) if s.is_server_error() => {
            Outcome::new(State::Fail, url, format!("HTTP {}", s.as_u16()), Reach::Down)
        }
        Ok((s, _)) => Outcome::new(State::Ok, url, format!("answers (HTTP {})", s.as_u16()), Reach::Up),
    }
}

/// A GET with the probe client: the status and the first 64 KB of the body.
async fn get(http: &reqwest::Client, url: &str) -> Result<(reqwest::StatusCode, Vec<u8>), String> {
    let mut resp = http.get(url).send().await.map_err(|e| clerk_api::error_chain(&e))?;
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| clerk_api::error_chain(&e))? {
        body.extend_from_slice(&chunk[..chunk.len().min((64 * 1024usize).saturating_sub(body.len()))]);
    }
    Ok((status, body))
}

/// The human form: one line per probe, then the verdict.
pub fn show(r: &Report) -> String {
    let mut out = Vec::new();
    for p in &r.probes {
        let state = match p.state {
            State::Ok => "ok",
            State::Warn => "WARN",
            State::Fail => "FAIL",
            State::Timeout => "TIMEOUT",
            State::Skipped => "skipped",
        };
        let latency = p.latency_ms.map_or("-".to_string(), |ms| format!("{ms} ms"));
        let target = if p.target.is_empty() { String::new() } else { format!("  {}", p.target) };
        out.push(format!("{} {:<20} {state:<8} {latency:>8}  {}{target}", p.id, p.name, p.detail));
    }
    if !r.timed_out.is_empty() {
        out.push(format!("timed out    {}", r.timed_out.join(", ")));
    }
    if let Some(ms) = r.clock_offset_ms {
        out.push(format!(
            "clock        {} from the Backend API's Date header (limit {} s)",
            offset_text(ms),
            CLOCK_OFFSET_MAX_MS / 1000
        ));
    }
    out.push(String::new());
    out.push(format!("category     {}", r.category));
    out.push(format!("severity     {}", r.severity.as_str()));
    out.push(format!("why          {}", r.why));
    out.push(format!("next         {}", r.next));
    out.push(format!("recorded     {}", r.recorded));
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::api::{ConfigView, Counters, KeysView, ModeView, RevocationCounts, StateView, WebhooksView};
    use crate::keys::KeyOrigin;
    use crate::mode::{Mode, ModeSource};

    fn status(kids: &[&str], rejected: &[(&str, u64)], signed_in: u64) -> Status {
        Status {
            version: "0".into(),
            ready: true,
            mode: ModeView {
                mode: Mode::Enforce,
                source: ModeSource::File,
                reason: String::new(),
                actor: "file".into(),
                since: "t".into(),
                expires_at: None,
                seconds_left: None,
                file_mode: Mode::Enforce,
            },
            config: ConfigView { path: None, loaded_at: "t".into(), hash: "h".into(), upstream: "u".into() },
            last_reload: None,
            state: StateView { writable: true, ..StateView::default() },
            keys: KeysView {
                source: None,
                networkless_key: true,
                origin: KeyOrigin::Fetched,
                kids: kids.iter().map(|k| k.to_string()).collect(),
                fetched_at: None,
                age_seconds: None,
                stale: false,
                last_attempt: None,
                last_error: None,
                secret_key_rejected: false,
                fetches: 0,
            },
            revocations: RevocationCounts { sessions: 0, users: 0, issued_before: None, issued_before_active: false },
            counters: Counters {
                signed_in,
                rejected: rejected.iter().map(|(r, n)| (r.to_string(), *n)).collect(),
                ..Counters::default()
            },
            fleet: None,
            webhooks: WebhooksView {
                route: true,
                quiet_seconds: 60,
                gap_window_seconds: 86_400,
                ..WebhooksView::default()
            },
        }
    }

    fn healthy() -> Findings {
        Findings {
            page: Page::Healthy,
            fapi: Reach::Up,
            fapi_kids: Some(vec!["ins_1".into()]),
            fapi_jwks_odd: false,
            jwks: Api::Ok(vec!["ins_1".into()]),
            users: Api::Ok(vec![]),
            gateway: Some(status(&["ins_1"], &[], 100)),
            upstream: Reach::Up,
            pinned_key_served: None,
            clock_offset_ms: Some(400),
            revoke_running: None,
        }
    }

    fn webhooks(f: &mut Findings) -> &mut WebhooksView {
        &mut f.gateway.as_mut().unwrap().webhooks
    }

    fn category(edit: impl FnOnce(&mut Findings)) -> (String, Severity) {
        let mut f = healthy();
        edit(&mut f);
        let v = classify(&f);
        (v.category, v.severity)
    }

    /// "Status unknown" is not "healthy" (§8.4): with no row matched, the verdict names what
    /// could not be seen, and says to look.
    #[test]
    fn healthy_names_what_it_could_not_see() {
        assert_eq!(classify(&healthy()).why, "every probe is nominal");
        let mut f = healthy();
        f.page = Page::Unknown;
        f.gateway = None;
        let v = classify(&f);
        assert_eq!(v.category, "healthy");
        assert!(v.why.contains("status page could not be read (P1)") && v.why.contains("(P6)"), "{}", v.why);
        assert!(v.next.contains("status.clerk.com"), "{}", v.next);
    }

    /// One scenario per row of clerk-ops §8.4's table (and clerkgate's two), first row winning.
    #[test]
    fn each_row_of_the_table() {
        let c = |s: &str, sev| (s.to_string(), sev);
        assert_eq!(category(|_| {}), c("healthy", Severity::None));
        assert_eq!(category(|f| f.page = Page::Outage), c("clerk-outage", Severity::Sev2));
        assert_eq!(category(|f| f.fapi = Reach::Down), c("clerk-outage", Severity::Sev2));
        assert_eq!(
            category(|f| {
                f.jwks = Api::Failing;
                f.users = Api::Failing;
                f.gateway.as_mut().unwrap().ready = false;
            }),
            c("clerk-outage", Severity::Sev1)
        );
        assert_eq!(category(|f| f.jwks = Api::KeyInvalid), c("credential-invalid", Severity::Sev2));
        assert_eq!(category(|f| f.jwks = Api::Ok(vec!["ins_2".into()])), c("signing-key-change", Severity::Sev2));
        assert_eq!(
            category(|f| f.gateway = Some(status(&["ins_1"], &[("jwk-kid-mismatch", 50)], 10))),
            c("signing-key-change", Severity::Sev2)
        );
        assert_eq!(category(|f| f.users = Api::RateLimited), c("clerk-rate-limited", Severity::Sev3));
        assert_eq!(category(|f| f.page = Page::Degraded), c("clerk-degraded", Severity::Sev3));
        assert_eq!(category(|f| f.users = Api::Failing), c("clerk-degraded", Severity::Sev3));
        assert_eq!(
            category(|f| f.gateway = Some(status(&["ins_1"], &[("token-invalid-authorized-parties", 20)], 10))),
            c("authorized-parties", Severity::Sev2)
        );
        assert_eq!(
            category(|f| f.gateway = Some(status(&["ins_1"], &[("token-expired", 8), ("token-not-active-yet", 4)], 10))),
            c("clock-skew", Severity::Sev2)
        );
        assert_eq!(
            category(|f| f.gateway = Some(status(&["ins_1"], &[("webhook-invalid", 1)], 10))),
            c("webhook-gap", Severity::Sev3)
        );
        assert_eq!(
            category(|f| f.gateway.as_mut().unwrap().state.writable = false),
            c("gateway-fault", Severity::Sev2)
        );
        assert_eq!(category(|f| f.upstream = Reach::Down), c("upstream-outage", Severity::Sev2));
        // Expired tokens during a Clerk outage are the outage, not the clock.
        assert_eq!(
            category(|f| {
                f.page = Page::Outage;
                f.gateway = Some(status(&["ins_1"], &[("token-expired", 80)], 10));
            }),
            c("clerk-outage", Severity::Sev2)
        );
    }

    /// clerk-ops §8.4's `webhook-gap` row: silence past the window while Clerk reports Webhooks
    /// operational, or signature failures (SEV2 once they have lasted a day).
    #[test]
    fn webhook_gap_by_time_and_by_failures() {
        let c = |s: &str, sev| (s.to_string(), sev);
        let quiet = |f: &mut Findings| webhooks(f).quiet_seconds = 86_401;
        assert_eq!(category(quiet), c("webhook-gap", Severity::Sev3));
        assert_eq!(category(|f| webhooks(f).quiet_seconds = 86_400), c("healthy", Severity::None), "not past it");
        let no_route = |f: &mut Findings| {
            quiet(f);
            webhooks(f).route = false;
        };
        assert_eq!(category(no_route), c("healthy", Severity::None), "no webhook route: none expected");
        let page_unknown = |f: &mut Findings| {
            quiet(f);
            f.page = Page::Unknown;
        };
        assert_eq!(category(page_unknown), c("healthy", Severity::None), "Clerk's Webhooks not known operational");
        let failing = |secs: i64| {
            move |f: &mut Findings| {
                let w = webhooks(f);
                (w.signature_failures, w.failing_seconds) = (4, Some(secs));
                w.first_failure_at = Some("2026-01-01T00:00:00Z".into());
            }
        };
        assert_eq!(category(failing(3_600)), c("webhook-gap", Severity::Sev3));
        assert_eq!(category(failing(25 * 3_600)), c("webhook-gap", Severity::Sev2), "failing for over a day");
    }

    /// P6's clock offset against the Backend API's `Date`, a pinned key Clerk no longer serves,
    /// and a 429 while a remote revoke runs.
    #[test]
    fn clock_offset_pinned_key_and_a_running_revoke() {
        let c = |s: &str, sev| (s.to_string(), sev);
        assert_eq!(category(|f| f.clock_offset_ms = Some(30_000)), c("gateway-fault", Severity::Sev2));
        assert_eq!(category(|f| f.clock_offset_ms = Some(-6_000)), c("gateway-fault", Severity::Sev2));
        assert_eq!(category(|f| f.clock_offset_ms = Some(4_900)), c("healthy", Severity::None));
        let f = Findings { clock_offset_ms: Some(30_000), ..healthy() };
        assert!(classify(&f).next.starts_with("chronyc"), "{:?}", classify(&f));

        let pinned = |served: bool| {
            move |f: &mut Findings| {
                f.gateway = Some(status(&[], &[], 10));
                f.pinned_key_served = Some(served);
            }
        };
        assert_eq!(category(pinned(false)), c("signing-key-change", Severity::Sev2));
        assert_eq!(category(pinned(true)), c("healthy", Severity::None));

        let limited = |f: &mut Findings| f.users = Api::RateLimited;
        assert_eq!(category(limited), c("clerk-rate-limited", Severity::Sev3));
        let while_revoking = |f: &mut Findings| {
            limited(f);
            f.revoke_running = Some("a revoke --remote --all run is in progress".into());
        };
        assert_eq!(category(while_revoking), c("clerk-rate-limited", Severity::Sev2));
    }

    #[test]
    fn a_pinned_key_is_found_by_modulus_and_exponent_under_any_kid() {
        let (a, b) = (crate::mint::SigningKey::generate().unwrap(), crate::mint::SigningKey::generate().unwrap());
        let pinned = VerifyingKey::from_pem(&a.public_pem(), None).unwrap();
        let body = |keys: Vec<Value>| serde_json::json!({ "keys": keys }).to_string().into_bytes();
        assert_eq!(pinned_key_served(&pinned, &body(vec![b.jwk("ins_new"), a.jwk("ins_old")])), Some(true));
        assert_eq!(pinned_key_served(&pinned, &body(vec![b.jwk("ins_new")])), Some(false), "rotated away");
        assert_eq!(pinned_key_served(&pinned, b"<html>"), None, "no evidence");
    }

    #[test]
    fn a_spike_is_a_share_of_the_verdicts() {
        let s = status(&[], &[("token-expired", 5)], 1000);
        assert_eq!(spike(&s, &CLOCK_REASONS), None, "5 in 1005 is noise");
        let s = status(&[], &[("token-expired", 2)], 0);
        assert_eq!(spike(&s, &CLOCK_REASONS), None, "too few");
        let s = status(&[], &[("token-expired", 20), ("token-not-active-yet", 5)], 100);
        assert_eq!(spike(&s, &CLOCK_REASONS), Some(25));
    }

    #[test]
    fn the_status_page_is_read_defensively() {
        let doc = |indicator: &str, comp: &str, st: &str| {
            serde_json::json!({"page": {"id": "x"}, "status": {"indicator": indicator, "description": "d"},
                "components": [{"name": comp, "status": st}]})
            .to_string()
        };
        assert_eq!(read_page(doc("none", "Session management", "operational").as_bytes()).0, Page::Healthy);
        assert_eq!(read_page(doc("none", "Billing", "major_outage").as_bytes()).0, Page::Healthy);
        assert_eq!(read_page(doc("none", "Webhooks", "degraded_performance").as_bytes()).0, Page::Degraded);
        assert_eq!(read_page(doc("minor", "Session management", "major_outage").as_bytes()).0, Page::Outage);
        assert_eq!(read_page(doc("critical", "Billing", "operational").as_bytes()).0, Page::Outage);
        assert_eq!(read_page(doc("weird", "Billing", "operational").as_bytes()).0, Page::Unknown);
        assert_eq!(read_page(b"<html>").0, Page::Unknown);
        assert_eq!(read_page(br#"{"status":{"indicator":"none"}}"#).0, Page::Healthy);
        assert_eq!(
            summary_url("https://status.clerk.com/api/v2/status.json"),
            "https://status.clerk.com/api/v2/summary.json"
        );
        assert_eq!(summary_url("http://127.0.0.1:1/page"), "http://127.0.0.1:1/page");
    }

    #[test]
    fn severities_map_to_exit_codes() {
        assert_eq!(Severity::None.exit_code(), ExitCode::SUCCESS);
        assert_eq!(Severity::Sev1.exit_code(), ExitCode::from(11));
        assert_eq!(Severity::Sev3.exit_code(), ExitCode::from(13));
    }
}
