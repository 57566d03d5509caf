//! The runbook as commands (SPEC §9): each step of the incident runbook that talks to Clerk.
//!
//! - [`keys_check`]: `clerkgate keys check` — does the configured secret key work at the
//!   Backend API, and which instance is it of (runbook step 3, key rotation).
//! - [`revoke`]: `clerkgate revoke --remote` — the gateway-side revocation first, then every
//!   active or pending session at Clerk, resumable (runbook step 4, session recovery).
//! - [`triage`]: `clerkgate triage` — probes Clerk, the gateway and the upstream at once and
//!   names the incident's category, severity and next command (runbook step 1).
//! - [`report`]: `clerkgate incident-report`, the post-incident review filled in from the
//!   audit log and the gateway's counters.
//!
//! The commands read the gateway's config for `clerk.api_url`, the secret key and `state.dir`,
//! call Clerk through [`crate::clerk_api`], and the running gateway through its admin API: the
//! gateway stays the only writer of its state and audit log, so what a command did at Clerk is
//! recorded with `POST /audit` (a fleet's shared store gets it too; a file written beside the
//! gateway's own would not be).

pub mod fleet;
pub mod keys_check;
pub mod report;
pub mod revoke;
pub mod triage;
pub mod walk;

use std::process::ExitCode;

use serde_json::Value;

use crate::admin::api::{self, Status};
use crate::admin::client::{self, Target};
use crate::clerk_api::{ApiError, ErrorKind};
use crate::config::Config;
use crate::store::Action;

/// Exit codes of the runbook commands, beyond 0 (done) and 2 (usage or config).
pub mod exit {
    /// Clerk could not be asked, or kept failing (unreachable, 5xx, timeouts, 429s): try again.
    pub const UNAVAILABLE: u8 = 1;
    /// Usage or configuration.
    pub const USAGE: u8 = 2;
    /// The Backend API refused the secret key (`clerk_key_invalid`).
    pub const KEY_REJECTED: u8 = 3;
    /// `keys check`: the key works but belongs to another instance than the gateway's keys;
    /// `revoke --verify`: sessions are still active.
    pub const MISMATCH: u8 = 4;
}

/// The exit code for a failed Backend API call.
pub fn exit_for(e: &ApiError) -> ExitCode {
    ExitCode::from(match e.kind {
        ErrorKind::Credential | ErrorKind::Forbidden => exit::KEY_REJECTED,
        _ => exit::UNAVAILABLE,
    })
}

/// The secret key's environment, from its prefix.
pub fn environment(secret_key: &str) -> &'static str {
    if secret_key.starts_with("sk_live_") {
        "production (sk_live_)"
    } else if secret_key.starts_with("sk_test_") {
        "development (sk_test_)"
    } else {
        "unknown (not sk_live_ or sk_test_)"
    }
}

/// The Backend API settings for `config`, or what is missing.
pub fn settings(config: &Config) -> Result<crate::clerk_api::Settings, String> {
    let key = config.clerk.secret_key.clone().ok_or(
        "no secret key is configured: set clerk.secret_key_file (or clerk.secret_key, or CLERK_SECRET_KEY) to a \
         secret key of the instance (Clerk dashboard → API keys)",
    )?;
    Ok(crate::clerk_api::Settings::new(&config.clerk.api_url, key))
}

/// The gateway's `/status`, or why it could not be read.
pub async fn gateway_status(target: &Target) -> Result<Status, String> {
    let (status, value) = client::request(target, http::Method::GET, &["status"], &[], None).await?;
    if !status.is_success() {
        return Err(client::refusal(target, status, &value).join("\n"));
    }
    serde_json::from_value(value).map_err(|e| format!("the admin API answered /status in an unexpected shape: {e}"))
}

/// Records a runbook action in the gateway's audit log (`POST /audit`).
pub async fn record(target: &Target, action: Action, after: Value, reason: &str) -> Result<(), String> {
    let body = api::RunbookRecord { action, after, reason: reason.to_string() };
    let body = serde_json::to_value(body).map_err(|e| e.to_string())?;
    let (status, value) = client::request(target, http::Method::POST, &["audit"], &[], Some(body)).await?;
    if status.is_success() {
        return Ok(());
    }
    Err(client::refusal(target, status, &value).join("\n"))
}
