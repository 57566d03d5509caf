//! `clerkgate keys check`: does the configured secret key work at the Backend API, and which
//! instance is it of? `GET /v1/jwks` with the key (free: not rate limited) answers both — the
//! key is taken or refused (`clerk_key_invalid`), and the JWKS `kid` of session tokens is the
//! instance id (`ins_…`, clerk-ops §1.4). The instance is compared with the kids the running
//! gateway has loaded (its admin API, when reachable) and with the pinned `clerk.jwt_key`,
//! so a key of the wrong instance or environment shows before it is put in force. The key is
//! never printed: a fingerprint names it.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::exit;
use crate::admin::client::Target;
use crate::clerk_api::{self, ApiError, ErrorKind};
use crate::config::Config;
use crate::keys::parse_jwks;

/// What `keys check` found (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct KeyCheck {
    /// `accepted`, `rejected`, `unchecked` (no verdict), or `other-instance` (accepted, but
    /// the gateway or its pinned key is of another instance).
    pub result: &'static str,
    /// The Backend API asked.
    pub api_url: String,
    /// The key: fingerprint, environment, where it was set.
    pub secret_key: KeyInfo,
    /// How long the answer took, in ms.
    pub latency_ms: u64,
    /// The instance ids (JWKS kids) the key's instance serves.
    pub instances: Vec<String>,
    /// The running gateway's loaded kids and whether they match.
    pub gateway: Compared,
    /// The pinned networkless key (`clerk.jwt_key`) and whether the instance serves it.
    pub jwt_key: Compared,
    /// The failed call, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// What to do next, when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The key, without the key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// First 8 hex digits of its SHA-256.
    pub fingerprint: String,
    /// Production, development, or unknown, from the prefix.
    pub environment: &'static str,
    /// The setting it came from.
    pub from: String,
}

/// A comparison with the instance.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Compared {
    /// Nothing to compare with (no gateway reachable, no pinned key), and why.
    NotCompared {
        /// Why.
        why: String,
    },
    /// Compared: what the other side holds and whether it is the same instance.
    Compared {
        /// The kids (gateway), or the kid whose key equals the pinned one (jwt_key).
        kids: Vec<String>,
        /// True when it is the key's instance.
        same_instance: bool,
    },
}

impl Compared {
    fn differs(&self) -> bool {
        matches!(self, Compared::Compared { same_instance: false, .. })
    }
}

/// Runs the check; prints the human form, or the JSON with `json`. `timeout` bounds each try
/// (two at most); `gateway` is the admin API to compare with.
pub async fn run(config: &Config, gateway: Option<&Target>, timeout: Duration, json: bool) -> ExitCode {
    let settings = match super::settings(config) {
        Ok(s) => clerk_api::Settings { timeout, attempts: 2, ..s },
        Err(e) => {
            eprintln!("clerkgate keys check: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let key = settings.secret_key.clone();
    let client = match clerk_api::Client::new(settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("clerkgate keys check: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let started = Instant::now();
    let answer = client.jwks().await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let mut check = KeyCheck {
        result: "accepted",
        api_url: client.settings().api_url.clone(),
        secret_key: KeyInfo {
            fingerprint: key.fingerprint(),
            environment: super::environment(key.expose()),
            from: config.clerk.secret_key_from.clone().unwrap_or_else(|| "clerk.secret_key".into()),
        },
        latency_ms,
        instances: Vec::new(),
        gateway: Compared::NotCompared { why: "the key was not accepted".into() },
        jwt_key: Compared::NotCompared { why: "no clerk.jwt_key is configured".into() },
        error: None,
        next: None,
    };
    match answer {
        Ok(jwks) => {
            check.instances = jwks.kids.clone();
            check.gateway = compare_gateway(gateway, &jwks.kids).await;
            if let Some(pin) = &config.clerk.jwt_key {
                let same: Vec<String> = parse_jwks(&jwks.body)
                    .map(|p| {
                        p.keys.into_iter().filter(|(_, k)| k.n == pin.n && k.e == pin.e).map(|(kid, _)| kid).collect()
                    })
                    .unwrap_or_default();
                check.jwt_key = Compared::Compared { same_instance: !same.is_empty(), kids: same };
            }
            if check.gateway.differs() || check.jwt_key.differs() {
                check.result = "other-instance";
                check.next = Some(
                    "this secret key belongs to another instance (or environment) than the keys the gateway \
                     verifies with: use a secret key of the same instance as the publishable key and clerk.jwt_key \
                     (Clerk dashboard → API keys, same application and environment)"
                        .into(),
                );
            }
        }
        Err(e) => {
            check.result =
                if matches!(e.kind, ErrorKind::Credential | ErrorKind::Forbidden) { "rejected" } else { "unchecked" };
            check.gateway = Compared::NotCompared { why: "the key could not be checked".into() };
            check.next = Some(e.next_step());
            check.error = Some(e);
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&check).unwrap_or_default());
    } else {
        print!("{}", show(&check));
    }
    match check.result {
        "accepted" => ExitCode::SUCCESS,
        "other-instance" => ExitCode::from(exit::MISMATCH),
        _ => check.error.as_ref().map_or(ExitCode::from(exit::UNAVAILABLE), super::exit_for),
    }
}

async fn compare_gateway(gateway: Option<&Target>, instances: &[String]) -> Compared {
    let Some(target) = gateway else {
        return Compared::NotCompared { why: "no admin API to ask".into() };
    };
    match super::gateway_status(target).await {
        Err(e) => Compared::NotCompared { why: format!("the gateway could not be asked: {}", first_line(&e)) },
        Ok(status) if status.keys.kids.is_empty() => {
            Compared::NotCompared { why: "the gateway has no remote keys loaded".into() }
        }
        Ok(status) => {
            let same_instance = status.keys.kids.iter().any(|k| instances.contains(k));
            Compared::Compared { kids: status.keys.kids, same_instance }
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The human form: one line per fact, then what to do.
pub fn show(c: &KeyCheck) -> String {
    let verdict = match c.result {
        "accepted" => "ACCEPTED".to_string(),
        "other-instance" => "ACCEPTED, but of ANOTHER INSTANCE than the gateway's keys".to_string(),
        "rejected" => "REJECTED".to_string(),
        _ => "NOT CHECKED (no verdict)".to_string(),
    };
    let mut out = vec![
        format!(
            "secret key    fingerprint {}  {}  from {}",
            c.secret_key.fingerprint, c.secret_key.environment, c.secret_key.from
        ),
        format!("backend api   {}  {verdict}  ({} ms)", c.api_url, c.latency_ms),
    ];
    if !c.instances.is_empty() {
        out.push(format!("instance      {}", c.instances.join(", ")));
    }
    let compared = |name: &str, what: &Compared| match what {
        Compared::NotCompared { why } => format!("{name}not compared: {why}"),
        Compared::Compared { kids, same_instance: true } => format!("{name}same instance ({})", kids.join(", ")),
        Compared::Compared { kids, same_instance: false } if kids.is_empty() => {
            format!("{name}DIFFERENT: no key of this instance equals it")
        }
        Compared::Compared { kids, .. } => format!("{name}DIFFERENT: the gateway verifies with {}", kids.join(", ")),
    };
    out.push(compared("gateway       ", &c.gateway));
    out.push(compared("jwt_key       ", &c.jwt_key));
    if let Some(e) = &c.error {
        out.push(format!("error         {e}"));
    }
    if let Some(next) = &c.next {
        out.push(format!("next          {next}"));
    }
    out.join("\n") + "\n"
}
