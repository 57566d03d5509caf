//! The admin API's bodies, one type per shape, shared by the router that writes them and the CLI
//! that reads them ([`super::client`]): neither side builds or reads JSON by string keys, and a
//! field renamed on one side is renamed on the other.
//!
//! Times are RFC 3339 strings (seconds), durations whole seconds. Absent values are `null`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::auth::counters::OutcomeCounts;
use crate::keys::KeyOrigin;
use crate::mode::{Mode, ModeSource};
use crate::revocation::Entry;
use crate::store::{AuditRecord, SkippedLine};
use crate::webhooks::Summary;

/// Every admin error: a machine-readable `error` code, a sentence for the operator, and for a
/// config that did not validate, every problem with its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// A snake_case code such as `unauthorized`, `invalid`, `invalid_config`.
    pub error: String,
    /// What went wrong, for a human.
    pub message: String,
    /// The config's problems (`POST /reload` with an invalid file); absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// One config problem under its dotted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The dotted key, e.g. `clerk.keys.max_stale`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl From<crate::config::ConfigProblem> for Problem {
    fn from(p: crate::config::ConfigProblem) -> Self {
        Problem { key: p.key, message: p.message }
    }
}

/// `GET /readyz`: whether tokens can be verified, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// A usable key set is loaded, or a networkless key is configured.
    pub ready: bool,
    /// Why not, when not ready.
    pub why: Option<String>,
    /// A networkless key (`clerk.jwt_key`) is configured.
    pub networkless_key: bool,
    /// The remote kids loaded, sorted.
    pub remote_keys: Vec<String>,
    /// The remote keys are older than `clerk.keys.max_stale`.
    pub stale: bool,
    /// The last JWKS fetch error, cleared by a success.
    pub last_error: Option<String>,
    /// Whether changes can be recorded. A state store that does not take writes leaves the
    /// gateway ready (requests are served as before) but says so here.
    #[serde(default)]
    pub state: StateView,
}

/// `state` in `/readyz` and `/status`: whether the state store takes writes, which every change
/// (mode, revocation, reload, key set) needs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateView {
    /// The state directory.
    pub dir: String,
    /// The last write or probe (every 5 s) of the store worked.
    pub writable: bool,
    /// What failed, with the path and the OS error.
    pub problem: Option<String>,
    /// Since when it has failed.
    pub since: Option<String>,
    /// When the store was last written or probed.
    pub checked_at: Option<String>,
}

/// `last_reload` in `/status`: the last reload attempt (SIGHUP, `POST /reload` or a watched file's
/// change), good or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadView {
    /// When.
    pub at: String,
    /// Who asked: `signal`, `file-watch`, or an admin token id.
    pub actor: String,
    /// It went through. When false, the config in force is the one loaded before (see
    /// `config` in `/status`): the files on disk are invalid, or name a new secret key that
    /// the Backend API refused or could not be asked about.
    pub ok: bool,
    /// The hash of the config it put in force, when it went through.
    pub hash: Option<String>,
    /// Why it was refused, each under its key.
    pub problems: Vec<Problem>,
}

/// `GET /mode`, `PUT /mode` (the answer), and `mode` in `/status`: the mode in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeView {
    /// The mode in force.
    pub mode: Mode,
    /// Who set it.
    pub source: ModeSource,
    /// Why.
    pub reason: String,
    /// Who exactly (admin token id, `env`, `file`).
    pub actor: String,
    /// When it took effect.
    pub since: String,
    /// When it stops applying; bypass always has one.
    pub expires_at: Option<String>,
    /// Whole seconds until `expires_at`, rounded up.
    pub seconds_left: Option<i64>,
    /// The config file's mode, what applies when no override does.
    pub file_mode: Mode,
}

/// `PUT /mode`: set or clear the admin override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeRequest {
    /// `enforce`, `grace` or `bypass`.
    pub mode: String,
    /// Why; required for grace and bypass.
    #[serde(default)]
    pub reason: String,
    /// For how long, e.g. `30m`; capped by `mode.max_override_ttl`.
    pub ttl: Option<String>,
}

/// `GET /status`: the on-call summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The gateway's version.
    pub version: String,
    /// As `/readyz`.
    pub ready: bool,
    /// The mode in force.
    pub mode: ModeView,
    /// The config in force.
    pub config: ConfigView,
    /// The last reload attempt, when there was one since start.
    #[serde(default)]
    pub last_reload: Option<ReloadView>,
    /// Whether changes can be recorded.
    #[serde(default)]
    pub state: StateView,
    /// The keys in force and the last fetches.
    pub keys: KeysView,
    /// How many revocations are in force.
    pub revocations: RevocationCounts,
    /// Request outcomes since start.
    pub counters: Counters,
    /// With the Redis backend: the fleet, this gateway's link to it and both mode layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<crate::store::FleetReport>,
    /// Clerk's webhook deliveries, from the journal (triage's `webhook-gap`).
    #[serde(default)]
    pub webhooks: WebhooksView,
}

/// `webhooks` in `/status`: what the webhook journal knows about Clerk's deliveries. The last
/// delivery and the event counts are read from the journal (a restart keeps them); duplicates
/// and signature failures are counted since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhooksView {
    /// A `webhook = "clerk"` route is configured: without one, no delivery is expected.
    pub route: bool,
    /// Events in the journal.
    pub events: usize,
    /// Of them, delivered to the upstream.
    pub delivered: usize,
    /// Of them, failed or interrupted: what `clerkgate webhooks replay --failed` would deliver.
    pub pending_replay: usize,
    /// Duplicates answered without a delivery, since start.
    pub duplicates: u64,
    /// The last verified delivery; none when the journal has none.
    pub last_verified_at: Option<String>,
    /// Whole seconds without a verified delivery: since the last one, else since the start.
    pub quiet_seconds: i64,
    /// `clerk.webhook_gap_window`, in seconds: quiet for longer is a gap.
    pub gap_window_seconds: u64,
    /// Deliveries refused for their signature or timestamp (`webhook-invalid`), since start.
    pub signature_failures: u64,
    /// The first of them since start.
    pub first_failure_at: Option<String>,
    /// Whole seconds since that first failure.
    pub failing_seconds: Option<i64>,
    /// The last of them.
    pub last_failure_at: Option<String>,
}

/// `config` in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigView {
    /// The file, when there is one.
    pub path: Option<String>,
    /// When it was loaded.
    pub loaded_at: String,
    /// A short hash over the file and its secrets, to compare two loads.
    pub hash: String,
    /// The upstream URL.
    pub upstream: String,
}

/// `keys` in `/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysView {
    /// The JWKS URL, when there is one.
    pub source: Option<String>,
    /// A networkless key is configured.
    pub networkless_key: bool,
    /// Where the remote set came from.
    pub origin: KeyOrigin,
    /// The remote kids, sorted.
    pub kids: Vec<String>,
    /// When the remote set was fetched.
    pub fetched_at: Option<String>,
    /// Its age in whole seconds.
    pub age_seconds: Option<i64>,
    /// It is older than `clerk.keys.max_stale`.
    pub stale: bool,
    /// The last fetch attempt.
    pub last_attempt: Option<String>,
    /// The last fetch error, cleared by a success.
    pub last_error: Option<String>,
    /// The last error was the Backend API refusing the secret key.
    pub secret_key_rejected: bool,
    /// Fetches made since start.
    pub fetches: u64,
}

/// `revocations` in `/status`: counts, not the entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationCounts {
    /// Revoked sessions.
    pub sessions: usize,
    /// Revoked users.
    pub users: usize,
    /// The `issued_before` cut-off, if any.
    pub issued_before: Option<String>,
    /// An `issued_before` cut-off is in force.
    pub issued_before_active: bool,
}

/// `counters` in `/status`: request outcomes since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Forwarded with a verified identity.
    pub signed_in: u64,
    /// Forwarded without identity (public routes).
    pub signed_out: u64,
    /// Forwarded because of bypass.
    pub bypass: u64,
    /// Accepted because of grace.
    pub grace: u64,
    /// Refused, by reason (only reasons seen).
    pub rejected: BTreeMap<String, u64>,
    /// Verdict-cache hits.
    pub cache_hits: u64,
    /// Verdict-cache misses.
    pub cache_misses: u64,
    /// When counting began: the gateway's start (the counters are not kept across restarts).
    #[serde(default)]
    pub since: Option<String>,
}

impl From<OutcomeCounts> for Counters {
    fn from(c: OutcomeCounts) -> Self {
        Counters {
            signed_in: c.signed_in,
            signed_out: c.signed_out,
            bypass: c.bypass,
            grace: c.grace,
            rejected: c.rejected.into_iter().map(|(reason, n)| (reason.to_string(), n)).collect(),
            cache_hits: c.cache_hits,
            cache_misses: c.cache_misses,
            since: None,
        }
    }
}

/// `POST /reload`: the config in force afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reloaded {
    /// The new config hash.
    pub hash: String,
    /// Whether anything changed.
    pub changed: bool,
    /// Changes that wait for a restart (a listener's address, TLS on or off); the rest is in force.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub restart_needed: Vec<String>,
}

/// `POST /keys/refresh`: the kids loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeysLoaded {
    /// The kids, sorted.
    pub kids: Vec<String>,
}

/// `GET /revocations`, and the answer to `POST` and `DELETE`: the entries in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    /// Revoked sessions by id.
    pub sessions: BTreeMap<String, Entry>,
    /// Revoked users by id.
    pub users: BTreeMap<String, Entry>,
    /// The `issued_before` cut-off, if any.
    pub issued_before: Option<String>,
}

/// `POST /revocations`: exactly one of `session_id`, `user_id`, `issued_before`. The id that
/// lifts the entry (`DELETE /revocations/{id}`) is the session or user id, or `issued_before`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// One session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Every session of one user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Every token issued before this RFC 3339 time, or `now`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_before: Option<String>,
    /// Why (recorded in the audit log).
    #[serde(default)]
    pub reason: String,
}

/// `POST /audit`: a runbook command records what it did elsewhere (at Clerk's Backend API),
/// so that the audit log, and the incident report read from it, has it beside the gateway's own
/// changes. Only runbook actions (`revocation.remote`, `triage.run`) are taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookRecord {
    /// The action.
    pub action: crate::store::Action,
    /// What the command did (its summary).
    #[serde(default)]
    pub after: serde_json::Value,
    /// Why.
    #[serde(default)]
    pub reason: String,
}

/// `GET /audit`: the events since the asked moment, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLog {
    /// The events, as written to `audit.jsonl` (an action this build does not know included).
    pub events: Vec<AuditRecord>,
    /// The lines of `audit.jsonl` that could not be read, with their number and why; absent
    /// when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedLine>,
}

/// `GET /webhooks?since=&failed=&ids=`: the webhook journal, in replay order (Clerk's event time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookList {
    /// The journal's file.
    pub journal: String,
    /// `clerk.upstream_webhook_secret` is set, so the events can be replayed.
    pub can_replay: bool,
    /// The events asked for.
    pub events: Vec<Summary>,
}

/// `POST /webhooks/replay`: re-deliver one journalled event to the upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The event's `svix-id`.
    pub svix_id: String,
}

/// The answer to a replay: what the upstream said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replayed {
    /// The event's `svix-id`.
    pub svix_id: String,
    /// The upstream's status (or the gateway's 502/504 when it gave none).
    pub status: u16,
    /// A 2xx.
    pub delivered: bool,
}

#[cfg(test)]
pub(super) mod tests {
    use serde_json::json;

    use super::*;

    /// An admin bypass with half an hour left.
    pub(in crate::admin) fn mode_view() -> ModeView {
        ModeView {
            mode: Mode::Bypass,
            source: ModeSource::Admin,
            reason: "drill".into(),
            actor: "admin:0123abcd".into(),
            since: "2026-01-01T00:00:00Z".into(),
            expires_at: Some("2026-01-01T00:30:00Z".into()),
            seconds_left: Some(1800),
            file_mode: Mode::Enforce,
        }
    }

    /// The wire shapes are the ones the router built with `json!` before these types, so
    /// scripts that read them keep working.
    #[test]
    fn bodies_keep_their_wire_shape() {
        let cases = [
            (
                serde_json::to_value(mode_view()).unwrap(),
                json!({"mode": "bypass", "source": "admin", "reason": "drill", "actor": "admin:0123abcd",
                       "since": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T00:30:00Z",
                       "seconds_left": 1800, "file_mode": "enforce"}),
            ),
            (
                serde_json::to_value(ApiError { error: "invalid".into(), message: "m".into(), problems: vec![] })
                    .unwrap(),
                json!({"error": "invalid", "message": "m"}),
            ),
            (
                serde_json::to_value(ApiError {
                    error: "invalid_config".into(),
                    message: "m".into(),
                    problems: vec![Problem { key: "clerk".into(), message: "p".into() }],
                })
                .unwrap(),
                json!({"error": "invalid_config", "message": "m", "problems": [{"key": "clerk", "message": "p"}]}),
            ),
            (
                serde_json::to_value(RevokeRequest { user_id: Some("user_1".into()), ..Default::default() }).unwrap(),
                json!({"user_id": "user_1", "reason": ""}),
            ),
            (
                serde_json::to_value(ModeRequest { mode: "enforce".into(), reason: String::new(), ttl: None }).unwrap(),
                json!({"mode": "enforce", "reason": "", "ttl": null}),
            ),
        ];
        for (typed, expected) in cases {
            assert_eq!(typed, expected);
        }
    }

    /// What the router writes, the CLI reads back unchanged.
    #[test]
    fn status_round_trips() {
        let status = Status {
            version: "0.1.0".into(),
            ready: true,
            mode: mode_view(),
            config: ConfigView { path: None, loaded_at: "t".into(), hash: "h".into(), upstream: "u".into() },
            last_reload: Some(ReloadView {
                at: "t".into(),
                actor: "signal".into(),
                ok: false,
                hash: None,
                problems: vec![Problem { key: "server.listen".into(), message: "m".into() }],
            }),
            state: StateView { dir: "/s".into(), writable: false, problem: Some("p".into()), ..StateView::default() },
            keys: KeysView {
                source: Some("https://api.clerk.com/v1/jwks".into()),
                networkless_key: false,
                origin: KeyOrigin::Fetched,
                kids: vec!["ins_1".into()],
                fetched_at: Some("t".into()),
                age_seconds: Some(3),
                stale: false,
                last_attempt: Some("t".into()),
                last_error: None,
                secret_key_rejected: false,
                fetches: 2,
            },
            revocations: RevocationCounts { sessions: 1, users: 0, issued_before: None, issued_before_active: false },
            counters: Counters { rejected: [("token-expired".to_string(), 4)].into(), ..Counters::default() },
            fleet: None,
            webhooks: WebhooksView {
                route: true,
                last_verified_at: Some("2026-01-01T00:00:00Z".into()),
                quiet_seconds: 90_000,
                gap_window_seconds: 86_400,
                ..WebhooksView::default()
            },
        };
        let text = serde_json::to_string(&status).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&text).unwrap(), status);

        // With the Redis backend: the fleet round-trips, and `clerkgate status` shows its link.
        let fleet = crate::store::FleetReport {
            backend: "redis".into(),
            fleet: "prod".into(),
            gateway_id: "web-1".into(),
            link: "disconnected".into(),
            epoch: 7,
            last_sync_ms: Some(1),
            problem: Some("Redis at redis://r:6379: Connection refused".into()),
            audit_buffered: 3,
            audit_dropped: 0,
            store_resets: 1,
            fleet_override: None,
            local_override: None,
        };
        let status = Status { fleet: Some(fleet), ..status };
        let text = serde_json::to_string(&status).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&text).unwrap(), status);
        let shown = super::super::client::show_status(&status);
        assert!(shown.contains("fleet        \"prod\" as \"web-1\"  DISCONNECTED  epoch 7"), "{shown}");
        assert!(shown.contains("Connection refused") && shown.contains("store resets 1"), "{shown}");
    }
}
