//! Every metric name and label value in one place, so a dashboard can be written from this file.

/// Requests answered or forwarded, by `outcome` and `reason`.
pub const REQUESTS: &str = "clerkgate_requests_total";
/// Requests forwarded only because of bypass mode.
pub const BYPASSED: &str = "clerkgate_bypassed_requests_total";
/// Requests accepted only because of grace mode.
pub const GRACE_ACCEPTED: &str = "clerkgate_grace_accepted_requests_total";
/// The current mode as a gauge per `mode` label (1 for the active one).
pub const MODE: &str = "clerkgate_mode";
/// Verdict cache lookups, by `result` (`hit`, `miss`).
pub const VERDICT_CACHE: &str = "clerkgate_verdict_cache_total";
/// JWKS fetches, by `result` (`ok`, `error`, `unchanged`) and `trigger`.
pub const JWKS_FETCHES: &str = "clerkgate_jwks_fetch_total";
/// Seconds since the last successful JWKS fetch.
pub const JWKS_AGE: &str = "clerkgate_jwks_age_seconds";
/// Number of keys in the current remote key set.
pub const JWKS_KEYS: &str = "clerkgate_jwks_keys";
/// Config reloads, by `result` (`ok`, `error`).
pub const RELOADS: &str = "clerkgate_config_reloads_total";
/// Checks of a reload's new secret key at the Backend API, by `result` (`accepted`, `rejected`,
/// `unchecked`).
pub const SECRET_KEY_CHECKS: &str = "clerkgate_secret_key_checks_total";
/// Failures of the upstream hop, by `kind` (`connect`, `timeout`, `broken`, and `upgrade` for a
/// `101` the gateway did not ask for).
pub const UPSTREAM_ERRORS: &str = "clerkgate_upstream_errors_total";

/// Answers the gateway gave itself, by `fault` (`client`, `upstream`, `clerk`, `gateway`) and
/// `reason`.
pub const ANSWERS: &str = "clerkgate_answers_total";
/// Log lines dropped because the log writer could not keep up (the request never waits for it).
pub const LOG_LINES_DROPPED: &str = "clerkgate_log_lines_dropped_total";

/// Client connections open now.
pub const CONNECTIONS_OPEN: &str = "clerkgate_connections_open";
/// Client connections refused, by `why`: at accept (`total`, `per_client`), or at their PROXY
/// header (`proxy_protocol`: from an untrusted peer, or broken; a proxied client over its own
/// limit is `per_client`).
pub const CONNECTIONS_REFUSED: &str = "clerkgate_connections_refused_total";
/// Requests from a trusted peer whose `X-Forwarded-For` or `X-Forwarded-Proto` was not usable
/// (not a list of IP addresses, too long, not one `http`/`https`) and was rebuilt.
pub const FORWARDED_REPLACED: &str = "clerkgate_forwarded_replaced_total";
/// Client connections the watchdog closed, by `why` (`no_request`, `idle`, `send_stalled`).
pub const CONNECTIONS_CLOSED: &str = "clerkgate_connections_closed_total";
/// TLS handshakes a client failed (not TLS, no common version or cipher, a bad record); a
/// client that does not finish in time counts in [`CONNECTIONS_CLOSED`] as `no_request`.
pub const TLS_HANDSHAKE_FAILURES: &str = "clerkgate_tls_handshake_failures_total";
/// Requests answered because of the client's request body, by `kind` (`malformed`, `timeout`).
pub const CLIENT_BODY_ERRORS: &str = "clerkgate_client_body_errors_total";
/// Upstream requests a client cancelled that were left to finish, so their connection stays
/// pooled, by `result` (`finished`, `dropped`).
pub const CANCELLED_UPSTREAM: &str = "clerkgate_cancelled_upstream_requests_total";
/// Backend API calls of the browser flow, by `call` (`handshake_payload`, `refresh`) and
/// `result` (`ok`, `error`, `unreachable`).
pub const BACKEND_API_CALLS: &str = "clerkgate_backend_api_calls_total";
/// 1 while the fleet's Redis is followed, 0 while it is away (the Redis backend only).
pub const FLEET_CONNECTED: &str = "clerkgate_fleet_connected";
/// The last fleet epoch this gateway applied.
pub const FLEET_EPOCH: &str = "clerkgate_fleet_epoch";
/// Whole reads of the fleet's state, by `reason` (`connect`, `drift`, `gap`, `periodic`, …).
pub const FLEET_RESYNCS: &str = "clerkgate_fleet_resyncs_total";
/// Times the fleet's Redis was found to have lost or rewound its data.
pub const FLEET_STORE_RESETS: &str = "clerkgate_fleet_store_resets_total";
/// Audit records written here and not yet copied to the fleet's audit stream.
pub const AUDIT_BUFFERED: &str = "clerkgate_audit_buffered";
/// Audit records skipped from the copy to the fleet (the local buffer was full).
pub const AUDIT_DROPPED: &str = "clerkgate_audit_dropped_total";

/// Label values for `outcome` on [`REQUESTS`].
pub mod outcome {
    /// Forwarded with a verified identity.
    pub const SIGNED_IN: &str = "signed_in";
    /// Forwarded without identity (public route).
    pub const SIGNED_OUT: &str = "signed_out";
    /// Forwarded because of bypass mode.
    pub const BYPASS: &str = "bypass";
    /// Forwarded because of grace mode.
    pub const GRACE: &str = "grace";
    /// Answered by the gateway itself (400, 401, 403, 405, 503).
    pub const REJECTED: &str = "rejected";
}
