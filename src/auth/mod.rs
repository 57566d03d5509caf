//! Authentication and authorisation of each request, the way Clerk's own SDK does it.
//!
//! - [`token`] finds the token (header, then `__session` cookie).
//! - [`verify`] checks it, in two stages: signed (cacheable) and time (every request).
//! - [`cache`] remembers signed verdicts by whole token.
//! - [`claims`] and [`has`] turn claims into an identity and answer role/permission questions.
//! - [`service`] is the tower layer that puts it together per request, aware of the mode.
//!
//! # Ordering
//!
//! [`AuthLayer`] must sit *outside* the proxy service and see the request before anything
//! else reads its headers: it removes every client-supplied reserved header first, in every
//! mode, so nothing downstream can mistake a client's `X-Clerk-User-Id` for the gateway's.

pub mod cache;
pub mod claims;
pub mod has;
pub mod service;
pub mod token;
pub mod verify;
pub mod webhook;

pub use crate::reason::{Failure, Reason};
pub use cache::{Epoch, VerdictCache};
pub use claims::{OrgContext, SessionClaims};
pub use service::{Auth, AuthLayer, Gate};
pub use verify::{Carrier, TimeClaim, Verified};
