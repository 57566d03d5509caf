//! Why a request was refused: Clerk's reason strings, and ours. A leaf below both the auth
//! layer, which decides a refusal, and the answers, which render it.

use http::StatusCode;

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
    // Clerk's `AuthErrorReason`s: the states of its browser flow (clerk-semantics §4.3–4.8).
    /// A development instance's request carries the dev-browser token in its query (Clerk).
    DevBrowserSync,
    /// A development instance's request has no dev-browser token (Clerk).
    DevBrowserMissing,
    /// Neither `__client_uat` nor a session cookie: the anonymous visitor (Clerk).
    SessionTokenAndUatMissing,
    /// A session cookie without `__client_uat` (Clerk).
    SessionTokenButNoClientUat,
    /// `__client_uat` says signed in, but there is no session cookie (Clerk).
    ClientUatButNoSessionToken,
    /// The session cookie was issued before the client's last change (Clerk).
    SessionTokenIatBeforeClientUat,
    /// An expired session token; the wire reason adds `-refresh-<why not refreshed>` (Clerk).
    SessionTokenExpired,
    /// A session token not valid yet (`nbf`) (Clerk).
    SessionTokenNbf,
    /// A session token issued in the future (`iat`) (Clerk).
    SessionTokenIatInTheFuture,
    /// A page load from another site onto the primary domain (Clerk).
    PrimaryDomainCrossOriginSync,
    /// A Backend API or SDK failure Clerk does not classify (Clerk).
    UnexpectedError,
    /// A development instance's handshake token does not verify: the keys do not match (500;
    /// Clerk's SDK throws).
    HandshakeFailed,
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
            Reason::DevBrowserSync => "dev-browser-sync",
            Reason::DevBrowserMissing => "dev-browser-missing",
            Reason::SessionTokenAndUatMissing => "session-token-and-uat-missing",
            Reason::SessionTokenButNoClientUat => "session-token-but-no-client-uat",
            Reason::ClientUatButNoSessionToken => "client-uat-but-no-session-token",
            Reason::SessionTokenIatBeforeClientUat => "session-token-iat-before-client-uat",
            Reason::SessionTokenExpired => "session-token-expired",
            Reason::SessionTokenNbf => "session-token-nbf",
            Reason::SessionTokenIatInTheFuture => "session-token-iat-in-the-future",
            Reason::PrimaryDomainCrossOriginSync => "primary-domain-cross-origin-sync",
            Reason::UnexpectedError => "unexpected-error",
            Reason::HandshakeFailed => "handshake-failed",
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
            Reason::HandshakeFailed => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// Every reason, for tables and metrics.
    pub const ALL: [Reason; 34] = [
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
        Reason::DevBrowserSync,
        Reason::DevBrowserMissing,
        Reason::SessionTokenAndUatMissing,
        Reason::SessionTokenButNoClientUat,
        Reason::ClientUatButNoSessionToken,
        Reason::SessionTokenIatBeforeClientUat,
        Reason::SessionTokenExpired,
        Reason::SessionTokenNbf,
        Reason::SessionTokenIatInTheFuture,
        Reason::PrimaryDomainCrossOriginSync,
        Reason::UnexpectedError,
        Reason::HandshakeFailed,
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
    /// What Clerk appends to the reason on the wire: for [`Reason::SessionTokenExpired`], why the
    /// token was not refreshed (`session-token-expired-refresh-<detail>`).
    pub refresh: Option<String>,
}

impl Failure {
    /// A failure with a message.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Failure { reason, message: message.into(), refresh: None }
    }

    /// The reason as sent (`X-Clerk-Auth-Reason`, the body, the handshake's `__clerk_hs_reason`).
    pub fn wire_reason(&self) -> std::borrow::Cow<'static, str> {
        match &self.refresh {
            Some(why) => format!("{}-refresh-{why}", self.reason.as_str()).into(),
            None => self.reason.as_str().into(),
        }
    }
}
