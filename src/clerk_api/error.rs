//! What the Backend API answers when something goes wrong, read defensively (clerk-ops §3):
//! Clerk's error body (`{"errors":[{"code","message","long_message","meta"}],"clerk_trace_id"}`)
//! when there is one, else the first 2 KB of whatever came back; the trace ids that let Clerk's
//! support find the call; and [`ApiError`], which says whose problem it is and what to do next.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Clerk's error body text is kept to this many bytes when it is not JSON.
const RAW_TEXT_LIMIT: usize = 2048;

/// One entry of Clerk's `errors` array.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClerkError {
    /// The machine code, e.g. `clerk_key_invalid`, `resource_not_found`.
    #[serde(default)]
    pub code: String,
    /// The short message.
    #[serde(default)]
    pub message: String,
    /// The human detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub long_message: String,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    errors: Vec<ClerkError>,
    clerk_trace_id: Option<String>,
}

/// The ids that identify one call at Clerk: the body's `clerk_trace_id`, the `Clerk-Trace-Id`
/// header, Cloudflare's `cf-ray` header. Kept for the audit log and the error message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// `clerk_trace_id` in the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clerk_trace_id: Option<String>,
    /// The `Clerk-Trace-Id` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
    /// The `cf-ray` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cf_ray: Option<String>,
}

impl Trace {
    /// True when no id is known.
    pub fn is_empty(&self) -> bool {
        self.clerk_trace_id.is_none() && self.trace_header.is_none() && self.cf_ray.is_none()
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids = [
            ("clerk_trace_id", &self.clerk_trace_id),
            ("Clerk-Trace-Id", &self.trace_header),
            ("cf-ray", &self.cf_ray),
        ];
        let shown: Vec<String> = ids.iter().filter_map(|(n, v)| v.as_ref().map(|v| format!("{n} {v}"))).collect();
        f.write_str(&shown.join(", "))
    }
}

/// A non-2xx body read: Clerk's errors when it is Clerk's JSON, else the start of its text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// Clerk's errors, in order; empty when the body was not Clerk's JSON.
    pub errors: Vec<ClerkError>,
    /// The body's `clerk_trace_id`.
    pub clerk_trace_id: Option<String>,
    /// The first 2 KB of a body that is not Clerk's JSON (a proxy's HTML page).
    pub text: String,
}

impl ErrorBody {
    /// Reads `body`; never fails.
    pub fn parse(body: &[u8]) -> ErrorBody {
        match serde_json::from_slice::<Body>(body) {
            Ok(b) => ErrorBody { errors: b.errors, clerk_trace_id: b.clerk_trace_id, text: String::new() },
            Err(_) => {
                let end = body.len().min(RAW_TEXT_LIMIT);
                let text = String::from_utf8_lossy(&body[..end]).trim().to_string();
                ErrorBody { errors: Vec::new(), clerk_trace_id: None, text }
            }
        }
    }

    /// True when one of the errors has `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.code == code)
    }

    /// The error that matters most (`clerk_key_invalid` first) as `code: message`, or the text.
    pub fn summary(&self) -> String {
        let first = self.errors.iter().find(|e| e.code == "clerk_key_invalid").or(self.errors.first());
        match first {
            Some(e) => {
                let message = if e.long_message.is_empty() { &e.message } else { &e.long_message };
                format!("{}: {message}", e.code)
            }
            None if self.text.is_empty() => "no error body".into(),
            None => format!("{:?}", self.text.chars().take(200).collect::<String>()),
        }
    }
}

/// Whose problem a failed call is, which decides what the operator does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 401: the secret key is wrong, deleted or of another environment (`clerk_key_invalid`).
    Credential,
    /// 403: the key is taken but the action is not allowed (plan, quota).
    Forbidden,
    /// 404: the object does not exist (any more).
    NotFound,
    /// 429s went on for longer than this call may wait.
    RateLimited,
    /// 5xx (or 409 `resource_locked`) on every attempt.
    Server,
    /// No answer: connection refused, DNS, TLS, or the per-request timeout, on every attempt.
    Unreachable,
    /// Another 4xx: the request itself was refused (a bug of ours, or an API change).
    Rejected,
    /// A 2xx whose body is not what the API documents.
    BadAnswer,
}

/// A call to the Backend API that failed, with everything the operator and the audit log need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Whose problem.
    pub kind: ErrorKind,
    /// The endpoint, e.g. `GET /v1/users`.
    pub endpoint: String,
    /// The base URL called.
    pub api_url: String,
    /// The last HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// Clerk's errors from the last answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ClerkError>,
    /// What happened, in a few words (Clerk's message, the connection error, the text body).
    pub detail: String,
    /// The trace ids of the last answer (boxed: an error travels in every `Result`).
    #[serde(default)]
    pub trace: Box<Trace>,
    /// How many times the call was tried.
    pub attempts: u32,
}

impl ApiError {
    /// The one sentence that tells the operator what to do about this failure.
    pub fn next_step(&self) -> String {
        match self.kind {
            ErrorKind::Credential => "the secret key is not accepted by this Backend API: put a current secret key of \
                 this instance (Clerk dashboard → API keys) in clerk.secret_key_file or CLERK_SECRET_KEY, check it with \
                 `clerkgate keys check`, then run the command again"
                .into(),
            ErrorKind::Forbidden => "the key is accepted but this action is not allowed for the instance (plan or \
                 quota); see Clerk's message, or ask Clerk support with the trace id"
                .into(),
            ErrorKind::NotFound => "the object does not exist at Clerk (any more); check the id".into(),
            ErrorKind::RateLimited => "Clerk kept answering 429 Too Many Requests: another consumer of this \
                 instance's budget is busy; wait a few minutes, then run the command again (a revocation continues \
                 with --resume)"
                .into(),
            ErrorKind::Server => format!(
                "Clerk's Backend API is failing ({}); check https://status.clerk.com and run the command again once \
                 it answers (a revocation continues with --resume)",
                self.status.map_or_else(|| "5xx".into(), |s| s.to_string())
            ),
            ErrorKind::Unreachable => format!(
                "{} did not answer: check clerk.api_url, DNS and the egress from this host (a proxy, a firewall); \
                 then run the command again (a revocation continues with --resume)",
                self.api_url
            ),
            ErrorKind::Rejected => "Clerk refused the request itself: this is a clerkgate bug or an API change; \
                 report it with the trace id"
                .into(),
            ErrorKind::BadAnswer => format!(
                "{} answered something that is not Clerk's Backend API: check clerk.api_url (a proxy or captive \
                 portal in between?)",
                self.api_url
            ),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.endpoint, self.api_url)?;
        match self.status {
            Some(s) => write!(f, " answered {s}: {}", self.detail)?,
            None => write!(f, ": {}", self.detail)?,
        }
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        if !self.trace.is_empty() {
            write!(f, " [{}]", self.trace)?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read_whatever_they_hold() {
        let clerk = br#"{"errors":[{"code":"form_param_missing","message":"m"},{"code":"clerk_key_invalid","message":"Secret Key is invalid","long_message":"The provided Clerk Secret Key is invalid."}],"clerk_trace_id":"t1"}"#;
        let b = ErrorBody::parse(clerk);
        assert!(b.has_code("clerk_key_invalid"));
        assert_eq!(b.clerk_trace_id.as_deref(), Some("t1"));
        assert_eq!(b.summary(), "clerk_key_invalid: The provided Clerk Secret Key is invalid.");

        let empty = ErrorBody::parse(br#"{"errors":[]}"#);
        assert_eq!(empty.summary(), "no error body");
        let html = ErrorBody::parse(b"<html>502 Bad Gateway</html>");
        assert_eq!(html.summary(), "\"<html>502 Bad Gateway</html>\"");
        let long = vec![b'x'; 10_000];
        assert_eq!(ErrorBody::parse(&long).text.len(), RAW_TEXT_LIMIT);
        let invalid_utf8 = ErrorBody::parse(&[0xff, 0xfe, b'a']);
        assert!(invalid_utf8.text.ends_with('a'));
        for junk in [&b""[..], b"null", b"[]", b"{\"errors\":3}", b"{\"errors\":[{\"code\":1}]}"] {
            let _ = ErrorBody::parse(junk).summary();
        }
    }

    #[test]
    fn every_kind_says_what_to_do_next() {
        let kinds = [
            ErrorKind::Credential,
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::RateLimited,
            ErrorKind::Server,
            ErrorKind::Unreachable,
            ErrorKind::Rejected,
            ErrorKind::BadAnswer,
        ];
        for kind in kinds {
            let e = ApiError {
                kind,
                endpoint: "GET /v1/users".into(),
                api_url: "https://api.clerk.com".into(),
                status: Some(500),
                errors: vec![],
                detail: "d".into(),
                trace: Box::new(Trace { cf_ray: Some("r1".into()), ..Trace::default() }),
                attempts: 6,
            };
            assert!(e.next_step().len() > 40, "{kind:?}");
            assert_eq!(
                e.to_string(),
                "GET /v1/users at https://api.clerk.com answered 500: d (after 6 attempts) [cf-ray r1]"
            );
        }
    }
}
