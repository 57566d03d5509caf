//! Why a request was refused: Clerk's reason strings, and ours.

use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use crate::answer::{Answer, Fault};

/// How many seconds a 503 `jwks-unavailable` asks the client to wait.
pub const RETRY_AFTER_SECONDS: &str = "5";

/// A reason, as sent in `X-Clerk-Auth-Reason` and the JSON body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not a JWT, undecodable, a bad `typ`, or an M2M category (Clerk); ours too: an identity
    /// claim that a header cannot carry exactly.
    TokenInvalid,
    /// `alg` outside RS256/RS384/RS512 (Clerk).
    TokenInvalidAlgorithm,
    /// Signature mismatch (Clerk).
    TokenInvalidSignature,
    /// `exp` passed (Clerk).
    TokenExpired,
    /// `nbf` in the future (Clerk).
    TokenNotActiveYet,
    /// `iat` in the future (Clerk).
    TokenIatInTheFuture,
    /// `azp` missing or not allowed (Clerk).
    TokenInvalidAuthorizedParties,
    /// A required claim missing or of the wrong type, or the key cannot check this `alg` (Clerk);
    /// ours too: organisation claims Clerk's auth object cannot read.
    TokenVerificationFailed,
    /// No key with the token's `kid`, even after a refetch (Clerk).
    JwkKidMismatch,
    /// A machine or JWT-template token presented as a session token (Clerk).
    TokenTypeMismatch,
    /// No token at all on a protected route.
    SessionTokenMissing,
    /// The session, user or issue time is revoked at the gateway.
    SessionRevoked,
    /// `sts: pending` while `reject_pending_sessions` is on (the default).
    SessionPending,
    /// `iss` differs from the configured issuer.
    IssuerMismatch,
    /// No usable key is loaded (503).
    JwksUnavailable,
    /// The route's role is not held (403).
    MissingRole,
    /// The route's permission is not held (403).
    MissingPermission,
    /// The path is ambiguous (400).
    AmbiguousPath,
    /// Several credentials that disagree, e.g. two `Authorization` headers (400).
    ConflictingCredentials,
    /// A webhook route's Svix signature did not verify.
    WebhookInvalid,
    /// A missing, repeated or malformed `Host`, or userinfo in the authority (400).
    InvalidHost,
    /// `CONNECT` or `TRACE`, which the gateway never forwards (405).
    MethodNotAllowed,
}

impl Reason {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TokenInvalid => "token-invalid",
            Reason::TokenInvalidAlgorithm => "token-invalid-algorithm",
            Reason::TokenInvalidSignature => "token-invalid-signature",
            Reason::TokenExpired => "token-expired",
            Reason::TokenNotActiveYet => "token-not-active-yet",
            Reason::TokenIatInTheFuture => "token-iat-in-the-future",
            Reason::TokenInvalidAuthorizedParties => "token-invalid-authorized-parties",
            Reason::TokenVerificationFailed => "token-verification-failed",
            Reason::JwkKidMismatch => "jwk-kid-mismatch",
            Reason::TokenTypeMismatch => "token-type-mismatch",
            Reason::SessionTokenMissing => "session-token-missing",
            Reason::SessionRevoked => "session-revoked",
            Reason::SessionPending => "session-pending",
            Reason::IssuerMismatch => "issuer-mismatch",
            Reason::JwksUnavailable => "jwks-unavailable",
            Reason::MissingRole => "missing-role",
            Reason::MissingPermission => "missing-permission",
            Reason::AmbiguousPath => "ambiguous-path",
            Reason::ConflictingCredentials => "conflicting-credentials",
            Reason::WebhookInvalid => "webhook-invalid",
            Reason::InvalidHost => "invalid-host",
            Reason::MethodNotAllowed => "method-not-allowed",
        }
    }

    /// The status the gateway answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Reason::MissingRole | Reason::MissingPermission => StatusCode::FORBIDDEN,
            Reason::AmbiguousPath | Reason::ConflictingCredentials | Reason::InvalidHost | Reason::WebhookInvalid => {
                StatusCode::BAD_REQUEST
            }
            Reason::JwksUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reason::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// Whose fault a refusal for this reason is: Clerk's when no usable key is loaded, the
    /// client's otherwise.
    pub fn fault(self) -> Fault {
        match self {
            Reason::JwksUnavailable => Fault::Clerk,
            _ => Fault::Client,
        }
    }

    /// Every reason, for tables and metrics.
    pub const ALL: [Reason; 22] = [
        Reason::TokenInvalid,
        Reason::TokenInvalidAlgorithm,
        Reason::TokenInvalidSignature,
        Reason::TokenExpired,
        Reason::TokenNotActiveYet,
        Reason::TokenIatInTheFuture,
        Reason::TokenInvalidAuthorizedParties,
        Reason::TokenVerificationFailed,
        Reason::JwkKidMismatch,
        Reason::TokenTypeMismatch,
        Reason::SessionTokenMissing,
        Reason::SessionRevoked,
        Reason::SessionPending,
        Reason::IssuerMismatch,
        Reason::JwksUnavailable,
        Reason::MissingRole,
        Reason::MissingPermission,
        Reason::AmbiguousPath,
        Reason::ConflictingCredentials,
        Reason::WebhookInvalid,
        Reason::InvalidHost,
        Reason::MethodNotAllowed,
    ];
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the reason and a message for the operator reading the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The reason.
    pub reason: Reason,
    /// Clerk's message for Clerk reasons (with the action and `(reason=…)` suffix), ours otherwise.
    pub message: String,
}

impl Failure {
    /// A failure with a message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Failure { reason, message: message.into() }
    }

    /// The gateway's answer to a request refused for this failure. `token_presented` picks the
    /// RFC 6750 form of `WWW-Authenticate` on a 401: `error="invalid_token"` only when there
    /// was a token to be invalid.
    pub fn answer(self, token_presented: bool) -> Answer {
        let reason = self.reason;
        let status = reason.status();
        let answer = Answer::new(reason.fault(), status, reason.as_str(), self.message);
        if status == StatusCode::UNAUTHORIZED {
            let challenge = if token_presented {
                HeaderValue::from_static("Bearer realm=\"clerkgate\", error=\"invalid_token\"")
            } else {
                HeaderValue::from_static("Bearer realm=\"clerkgate\"")
            };
            return answer.with_header(WWW_AUTHENTICATE, challenge);
        }
        if reason == Reason::JwksUnavailable {
            return answer.with_header(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECONDS));
        }
        answer
    }
}
