//! The one client of Clerk's Backend API (clerk-ops §1–§3, the contract of §8.1), used by the
//! runbook commands and by the gateway's secret-key check.
//!
//! Every call sends `Authorization: Bearer <secret key>`, `Clerk-API-Version`, a `clerkgate/…`
//! user agent, `Accept` and `Content-Type: application/json`, and is bounded by a per-request
//! timeout. Around each call:
//!
//! - **A budget.** A token bucket per client (Clerk counts per secret key): by default 80 % of
//!   the published limit of the key's environment ([`Rate::for_key`]). `GET /v1/jwks` is not
//!   rate limited at Clerk and does not spend from it.
//! - **429.** The endpoint is paused for `Retry-After` (seconds or an HTTP date; 10 s without
//!   one) for every caller of this client, since Clerk blocks the endpoint, not the request;
//!   then the call is tried again, for as long as [`Settings::rate_limited_for`] allows.
//! - **5xx, 409 `resource_locked`, no answer.** Exponential backoff with full jitter
//!   (0.5 s × 2ⁿ, capped at 30 s), [`Settings::attempts`] tries in all.
//! - **401.** Never retried: a [`ErrorKind::Credential`] error that says to replace the key.
//! - **Everything else** is an [`ApiError`] with Clerk's error body and the trace ids.
//!
//! [`Stats`] counts the calls by endpoint and status, the 429s and their waits, and keeps the
//! trace ids of failed answers, for the audit log (clerk-ops §8.6).

mod budget;
mod error;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::Url;
use serde::{Deserialize, Serialize};

pub use budget::{backoff, retry_after, unit_random, Rate};
pub use error::{ApiError, ClerkError, ErrorBody, ErrorKind, Trace};

use crate::config::Secret;

/// The Backend API version clerkgate speaks (`Clerk-API-Version`), the one Clerk's SDKs send.
pub const CLERK_API_VERSION: &str = "2026-05-12";

/// The largest page the list endpoints serve.
pub const PAGE_LIMIT: u32 = 500;

/// The largest answer body read (a page of 500 users with their metadata).
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How many failed answers keep their trace ids in [`Stats`].
const KEPT_FAILURES: usize = 50;

/// How the client calls.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The base URL, e.g. `https://api.clerk.com` (`clerk.api_url`).
    pub api_url: String,
    /// The secret key.
    pub secret_key: Secret,
    /// `Clerk-API-Version`.
    pub api_version: String,
    /// The limit on one request, from sending to the last byte of the answer.
    pub timeout: Duration,
    /// The client-side budget.
    pub rate: Rate,
    /// Tries for a call that meets 5xx or no answer, the first included.
    pub attempts: u32,
    /// The first backoff's ceiling; doubles per retry.
    pub backoff_base: Duration,
    /// The largest backoff.
    pub backoff_cap: Duration,
    /// How long one call may keep waiting out 429s before it fails as [`ErrorKind::RateLimited`].
    pub rate_limited_for: Duration,
}

impl Settings {
    /// The defaults of clerk-ops §8.1 for `api_url` and `secret_key`: 10 s per request, the
    /// key's budget, 6 tries, backoff 0.5 s → 30 s, 429s waited out for up to 15 minutes.
    pub fn new(api_url: &str, secret_key: Secret) -> Settings {
        let rate = Rate::for_key(secret_key.expose());
        Settings {
            api_url: api_url.trim_end_matches('/').to_string(),
            secret_key,
            api_version: CLERK_API_VERSION.into(),
            timeout: Duration::from_secs(10),
            rate,
            attempts: 6,
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            rate_limited_for: Duration::from_secs(15 * 60),
        }
    }
}

/// What the client has done, for summaries and the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Answers by endpoint, then by status (`"timeout"`/`"unreachable"` when none came).
    pub calls: BTreeMap<String, BTreeMap<String, u64>>,
    /// 429 answers.
    pub rate_limited: u64,
    /// Time spent paused by 429s, summed over calls, in ms.
    pub rate_limited_wait_ms: u64,
    /// Retries after 5xx or no answer.
    pub retries: u64,
    /// The last failed answers (status ≥ 400 or none), with their trace ids.
    pub failures: Vec<Failure>,
    /// This host's clock minus the last answer's `Date` header, ms (positive: this host is
    /// ahead). `Date` has whole seconds, so it reads up to a second high.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
}

/// One failed answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The endpoint.
    pub endpoint: String,
    /// The status, or none.
    pub status: Option<u16>,
    /// Clerk's error code, when it gave one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub code: String,
    /// The trace ids.
    #[serde(default, skip_serializing_if = "Trace::is_empty")]
    pub trace: Trace,
    /// `Retry-After`, for a 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<String>,
}

/// The endpoints clerkgate calls. The label names the endpoint in pauses, stats and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Jwks,
    Users,
    UsersCount,
    Sessions,
    Session,
    RevokeSession,
}

impl Endpoint {
    fn label(self) -> &'static str {
        match self {
            Endpoint::Jwks => "GET /v1/jwks",
            Endpoint::Users => "GET /v1/users",
            Endpoint::UsersCount => "GET /v1/users/count",
            Endpoint::Sessions => "GET /v1/sessions",
            Endpoint::Session => "GET /v1/sessions/{id}",
            Endpoint::RevokeSession => "POST /v1/sessions/{id}/revoke",
        }
    }

    fn method(self) -> reqwest::Method {
        match self {
            Endpoint::RevokeSession => reqwest::Method::POST,
            _ => reqwest::Method::GET,
        }
    }

    /// `GET /v1/jwks` is not rate limited at Clerk (system-limits).
    fn budgeted(self) -> bool {
        self != Endpoint::Jwks
    }
}

/// A 2xx answer.
#[derive(Debug)]
struct Answer {
    body: Vec<u8>,
}

/// What a user list page is read into: the id and the creation time are all a walk needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    /// `user_…`.
    pub id: String,
    /// Unix ms.
    #[serde(default)]
    pub created_at: Option<i64>,
}

/// A session, as far as revocation cares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// `sess_…`.
    pub id: String,
    /// The user.
    #[serde(default)]
    pub user_id: String,
    /// `active`, `pending`, `revoked`, `ended`, `expired`, `removed`, `abandoned`, `replaced`.
    #[serde(default)]
    pub status: String,
    /// Unix ms.
    #[serde(default)]
    pub created_at: Option<i64>,
}

impl Session {
    /// True for a session a user can still get tokens for: `active` or `pending`.
    pub fn is_live(&self) -> bool {
        matches!(self.status.as_str(), "active" | "pending")
    }
}

/// Where a page of users starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum UserPage {
    /// After this user id (`starting_after`), or from the first user; `created_at` ascending.
    Cursor {
        /// The last user of the previous page.
        after: Option<String>,
    },
    /// From this offset, `created_at` ascending (the fallback when the cursor is refused).
    Offset {
        /// Users before the page.
        offset: u64,
    },
}

/// How a revocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// Clerk revoked the session now.
    Now,
    /// 404: the session no longer exists.
    AlreadyGone,
    /// The session was found no longer active or pending (revoked by someone else, or by an
    /// earlier attempt of ours whose answer was lost).
    AlreadyEnded,
}

/// The JWKS the Backend API serves for the key: its body and its kids (the instance id
/// `ins_…` for session tokens).
#[derive(Debug, Clone)]
pub struct Jwks {
    /// The body, as sent.
    pub body: Vec<u8>,
    /// The `kid` of every key, in order.
    pub kids: Vec<String>,
}

/// The Backend API client.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    settings: Settings,
    budget: budget::Budget,
    pauses: budget::Pauses,
    stats: Mutex<Stats>,
}

impl Client {
    /// A client with `settings`. Fails only when the TLS stack cannot start, or the URL is not
    /// a URL.
    pub fn new(settings: Settings) -> Result<Client, String> {
        Url::parse(&settings.api_url).map_err(|e| format!("clerk.api_url {:?} is not a URL: {e}", settings.api_url))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("clerkgate/", env!("CARGO_PKG_VERSION")))
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the Backend API client: {e}"))?;
        Ok(Client {
            http,
            budget: budget::Budget::new(settings.rate),
            pauses: budget::Pauses::default(),
            settings,
            stats: Mutex::new(Stats::default()),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// A copy of what the client has done so far.
    pub fn stats(&self) -> Stats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `GET /v1/jwks`: proves the key works and names its instance. Not budgeted.
    pub async fn jwks(&self) -> Result<Jwks, ApiError> {
        let answer = self.call(Endpoint::Jwks, "/v1/jwks", &[], true).await?;
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<Kid>,
        }
        #[derive(Deserialize)]
        struct Kid {
            #[serde(default)]
            kid: Option<String>,
        }
        let doc: Doc = self.read(Endpoint::Jwks, &answer)?;
        let kids = doc.keys.into_iter().filter_map(|k| k.kid).collect();
        Ok(Jwks { body: answer.body, kids })
    }

    /// `GET /v1/users/count`, unfiltered (fast; a filtered count can take minutes).
    pub async fn user_count(&self) -> Result<u64, ApiError> {
        #[derive(Deserialize)]
        struct Count {
            total_count: u64,
        }
        let answer = self.call(Endpoint::UsersCount, "/v1/users/count", &[], true).await?;
        Ok(self.read::<Count>(Endpoint::UsersCount, &answer)?.total_count)
    }

    /// One page of users (`limit` at most 500), oldest first.
    pub async fn users(&self, page: &UserPage, limit: u32) -> Result<Vec<User>, ApiError> {
        let mut query = vec![("limit", limit.clamp(1, PAGE_LIMIT).to_string()), ("order_by", "+created_at".into())];
        match page {
            UserPage::Cursor { after: Some(id) } => query.push(("starting_after", id.clone())),
            UserPage::Cursor { after: None } => {}
            UserPage::Offset { offset } => query.push(("offset", offset.to_string())),
        }
        let answer = self.call(Endpoint::Users, "/v1/users", &query, true).await?;
        self.read(Endpoint::Users, &answer)
    }

    /// Every session Clerk still lists for `user_id`, all statuses (`pending` cannot be
    /// filtered for), every page (clerk-ops §8.2 step 1).
    pub async fn sessions_of(&self, user_id: &str) -> Result<Vec<Session>, ApiError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Page {
            Paginated { data: Vec<Session>, total_count: Option<u64> },
            Bare(Vec<Session>),
        }
        let mut all: Vec<Session> = Vec::new();
        loop {
            let query = [
                ("user_id", user_id.to_string()),
                ("paginated", "true".into()),
                ("limit", PAGE_LIMIT.to_string()),
                ("offset", all.len().to_string()),
            ];
            let answer = self.call(Endpoint::Sessions, "/v1/sessions", &query, true).await?;
            let (data, total) = match self.read::<Page>(Endpoint::Sessions, &answer)? {
                Page::Paginated { data, total_count } => (data, total_count),
                Page::Bare(data) => (data, None),
            };
            let short = data.len() < PAGE_LIMIT as usize;
            all.extend(data);
            if short || total.is_some_and(|t| all.len() as u64 >= t) {
                return Ok(all);
            }
        }
    }

    /// `GET /v1/sessions/{id}`.
    pub async fn session(&self, id: &str) -> Result<Session, ApiError> {
        let path = format!("/v1/sessions/{}", segment(id));
        let answer = self.call(Endpoint::Session, &path, &[], true).await?;
        self.read(Endpoint::Session, &answer)
    }

    /// `POST /v1/sessions/{id}/revoke`, never twice for one session: a 429 means it was not
    /// applied and is waited out; after a 5xx or a lost answer, which may have been applied,
    /// the session is read again before another try, and one that is no longer active or
    /// pending counts as revoked. 404 is [`Revoked::AlreadyGone`]; another 4xx is taken when a
    /// fresh read shows the session ended (what Clerk answers for an ended one is undocumented).
    pub async fn revoke(&self, id: &str) -> Result<Revoked, ApiError> {
        let path = format!("/v1/sessions/{}/revoke", segment(id));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.call(Endpoint::RevokeSession, &path, &[], false).await {
                Ok(_) => return Ok(Revoked::Now),
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(Revoked::AlreadyGone),
                Err(e) => e,
            };
            let may_retry = matches!(error.kind, ErrorKind::Server | ErrorKind::Unreachable);
            if !(may_retry || error.kind == ErrorKind::Rejected) {
                return Err(error);
            }
            if may_retry && attempt < self.settings.attempts {
                self.back_off(attempt - 1).await;
            }
            match self.session(id).await {
                Ok(s) if !s.is_live() => return Ok(Revoked::AlreadyEnded),
                Ok(_) if may_retry && attempt < self.settings.attempts => continue,
                Err(e) if e.kind == ErrorKind::NotFound => return Ok(Revoked::AlreadyGone),
                // The read already had its own retries: the API is failing, or the key is.
                Err(e) if e.kind != ErrorKind::Rejected => return Err(e),
                _ => return Err(ApiError { attempts: attempt, ..error }),
            }
        }
    }

    fn read<T: serde::de::DeserializeOwned>(&self, endpoint: Endpoint, answer: &Answer) -> Result<T, ApiError> {
        serde_json::from_slice(&answer.body).map_err(|e| {
            let body = ErrorBody::parse(&answer.body);
            self.error(
                ErrorKind::BadAnswer,
                endpoint,
                Some(200),
                &body,
                Trace::default(),
                1,
                format!("not the documented answer ({e})"),
            )
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn error(
        &self,
        kind: ErrorKind,
        endpoint: Endpoint,
        status: Option<u16>,
        body: &ErrorBody,
        trace: Trace,
        attempts: u32,
        detail: String,
    ) -> ApiError {
        ApiError {
            kind,
            endpoint: endpoint.label().into(),
            api_url: self.settings.api_url.clone(),
            status,
            errors: body.errors.clone(),
            detail,
            trace: Box::new(trace),
            attempts,
        }
    }

    async fn back_off(&self, retry: u32) {
        if let Ok(mut s) = self.stats.lock() {
            s.retries += 1;
        }
        let wait = backoff(self.settings.backoff_base, self.settings.backoff_cap, retry, unit_random());
        tokio::time::sleep(wait).await;
    }

    fn count(&self, endpoint: Endpoint, status: &str, failure: Option<Failure>) {
        if let Ok(mut s) = self.stats.lock() {
            *s.calls.entry(endpoint.label().into()).or_default().entry(status.into()).or_default() += 1;
            if let Some(f) = failure {
                if s.failures.len() >= KEPT_FAILURES {
                    s.failures.remove(0);
                }
                s.failures.push(f);
            }
        }
    }

    /// One call with the policy of the module doc. `transient_retries` false: 5xx and no
    /// answer fail at once (the caller decides, as [`Client::revoke`] does); 429 is always
    /// waited out, since a 429 was not applied.
    async fn call(
        &self,
        endpoint: Endpoint,
        path: &str,
        query: &[(&str, String)],
        transient_retries: bool,
    ) -> Result<Answer, ApiError> {
        let mut url = match Url::parse(&format!("{}{path}", self.settings.api_url)) {
            Ok(u) => u,
            Err(e) => {
                let detail = format!("cannot build the URL: {e}");
                return Err(self.error(
                    ErrorKind::Rejected,
                    endpoint,
                    None,
                    &ErrorBody::default(),
                    Trace::default(),
                    0,
                    detail,
                ));
            }
        };
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let label = endpoint.label();
        let mut attempts = 0u32;
        let mut rate_limited = Duration::ZERO;
        loop {
            attempts += 1;
            self.pauses.wait(label).await;
            if endpoint.budgeted() {
                self.budget.take().await;
            }
            let sent = self
                .http
                .request(endpoint.method(), url.clone())
                .bearer_auth(self.settings.secret_key.expose())
                .header("Clerk-API-Version", &self.settings.api_version)
                .header("Accept", "application/json")
                .header("Content-Type", "application/json")
                .send()
                .await;
            let outcome = match sent {
                Ok(resp) => read_answer(resp).await,
                Err(e) => Err(e),
            };
            let (status, headers, body) = match outcome {
                Ok((status, headers, body, received)) => {
                    let date = headers.get(reqwest::header::DATE).and_then(|v| v.to_str().ok());
                    if let (Some(offset), Ok(mut s)) = (clock_offset_ms(date, received), self.stats.lock()) {
                        s.clock_offset_ms = Some(offset);
                    }
                    (status, headers, body)
                }
                Err(e) => {
                    let what = if e.is_timeout() { "timeout" } else { "unreachable" };
                    self.count(endpoint, what, Some(Failure { endpoint: label.into(), ..Failure::default() }));
                    let detail = if e.is_timeout() {
                        format!("no answer within {}", humantime::format_duration(self.settings.timeout))
                    } else {
                        error_chain(&e)
                    };
                    if transient_retries && attempts < self.settings.attempts {
                        self.back_off(attempts - 1).await;
                        continue;
                    }
                    let body = ErrorBody::default();
                    return Err(self.error(
                        ErrorKind::Unreachable,
                        endpoint,
                        None,
                        &body,
                        Trace::default(),
                        attempts,
                        detail,
                    ));
                }
            };
            let code = status.as_u16();
            if status.is_success() {
                self.count(endpoint, &code.to_string(), None);
                return Ok(Answer { body });
            }
            let parsed = ErrorBody::parse(&body);
            let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let trace = Trace {
                clerk_trace_id: parsed.clerk_trace_id.clone(),
                trace_header: header("clerk-trace-id"),
                cf_ray: header("cf-ray"),
            };
            let retry_after_header = header("retry-after");
            self.count(
                endpoint,
                &code.to_string(),
                Some(Failure {
                    endpoint: label.into(),
                    status: Some(code),
                    code: parsed.errors.first().map(|e| e.code.clone()).unwrap_or_default(),
                    trace: trace.clone(),
                    retry_after: retry_after_header.clone().filter(|_| code == 429),
                }),
            );
            let summary = parsed.summary();
            let kind = match code {
                429 => {
                    let wait =
                        retry_after(retry_after_header.as_deref(), SystemTime::now(), self.settings.rate_limited_for);
                    if rate_limited + wait > self.settings.rate_limited_for {
                        ErrorKind::RateLimited
                    } else {
                        rate_limited += wait;
                        if let Ok(mut s) = self.stats.lock() {
                            s.rate_limited += 1;
                            s.rate_limited_wait_ms += wait.as_millis() as u64;
                        }
                        tracing::info!(
                            endpoint = label,
                            wait_s = wait.as_secs_f64(),
                            "Backend API rate limit: pausing the endpoint"
                        );
                        self.pauses.pause(label, wait);
                        attempts -= 1;
                        continue;
                    }
                }
                401 => ErrorKind::Credential,
                403 => ErrorKind::Forbidden,
                404 => ErrorKind::NotFound,
                409 if parsed.has_code("resource_locked") => ErrorKind::Server,
                500..=599 => ErrorKind::Server,
                _ => ErrorKind::Rejected,
            };
            if kind == ErrorKind::Server && transient_retries && attempts < self.settings.attempts {
                self.back_off(attempts - 1).await;
                continue;
            }
            return Err(self.error(kind, endpoint, Some(code), &parsed, trace, attempts, summary));
        }
    }
}

/// This host's clock at `received` minus an answer's `Date` header, in ms; none without a
/// readable one.
pub fn clock_offset_ms(date: Option<&str>, received: SystemTime) -> Option<i64> {
    let sent = httpdate::parse_http_date(date?).ok()?;
    Some(crate::clock::system_ms(received) - crate::clock::system_ms(sent))
}

/// The status, headers and body (at most [`MAX_BODY_BYTES`]) of an answer, and when its head
/// arrived.
async fn read_answer(
    mut resp: reqwest::Response,
) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, Vec<u8>, SystemTime), reqwest::Error> {
    let received = SystemTime::now();
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_BODY_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok((status, headers, body, received))
}

/// An error with every error under it ("error sending request: … Connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// An id as one path segment (an id with `/` or `?` cannot reach another endpoint).
fn segment(id: &str) -> String {
    const KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'_').remove(b'-');
    percent_encoding::utf8_percent_encode(id, KEEP).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_offset_is_this_host_minus_the_date_header() {
        let received = crate::clock::from_ms(1_767_225_630_400); // 2026-01-01T00:00:30.4Z
        let date = |text: &str| clock_offset_ms(Some(text), received);
        assert_eq!(date("Thu, 01 Jan 2026 00:00:00 GMT"), Some(30_400), "this host is 30 s ahead");
        assert_eq!(date("Thu, 01 Jan 2026 00:01:00 GMT"), Some(-29_600), "this host is behind");
        assert_eq!(date("yesterday"), None);
        assert_eq!(clock_offset_ms(None, received), None);
    }

    #[test]
    fn ids_stay_one_segment() {
        assert_eq!(segment("sess_2abc-x"), "sess_2abc-x");
        assert_eq!(segment("../users?x=1"), "%2E%2E%2Fusers%3Fx%3D1");
    }

    #[test]
    fn live_sessions_are_active_or_pending() {
        let s = |status: &str| Session { id: "s".into(), user_id: "u".into(), status: status.into(), created_at: None };
        assert!(s("active").is_live() && s("pending").is_live());
        for ended in ["revoked", "ended", "expired", "removed", "abandoned", "replaced", ""] {
            assert!(!s(ended).is_live(), "{ended}");
        }
    }

    #[test]
    fn settings_follow_the_key_and_trim_the_url() {
        let s = Settings::new("https://api.clerk.com/", Secret::new("sk_live_x"));
        assert_eq!(s.api_url, "https://api.clerk.com");
        assert_eq!(s.rate.requests, 800);
        assert!(Client::new(Settings::new("not a url", Secret::new("sk_test_x"))).is_err());
    }
}
