//! Authentication and authorisation of each request, the way Clerk's own SDK does it.
//!
//! Per request, in this order (SPEC §3), each step in its own file:
//!
//! - [`facts`] prepares the head (405 for `CONNECT`/`TRACE`, header hygiene, `Host`, path,
//!   route) and reads the request's facts once: route, mode, credential, document or API call.
//! - [`token`] finds the token (header, then `__session` cookie) and reads Clerk's cookies.
//! - [`decide`] is the decision, a function from facts and a snapshot to a [`Decision`]:
//!   forward with this identity and these tags, or answer with this [`crate::answer::Answer`].
//! - [`browser`] is Clerk's `authenticateRequest` state machine (with a publishable key): the
//!   cookie rules, refresh and handshake; [`handshake`] builds its URLs and cookies and
//!   [`public_url`] reads and writes URLs as Clerk's SDK does; [`backend`] makes the two
//!   Backend API calls the flow may wait for.
//! - [`verify`] checks a token, in two stages: signed (cacheable) and time (every request).
//! - [`cache`] remembers signed verdicts by whole token, across mode changes.
//! - [`claims`] and [`has`] turn claims into an identity and answer role/permission questions.
//! - [`gate`] runs the steps and applies the decision to the request; [`counters`] and
//!   [`bypass_log`] count and log it.
//! - [`layer`] is the tower plumbing around the gate.
//!
//! The decision is synchronous and never awaits anything. The layer awaits the network for two
//! things only, each bounded by `fetch_timeout` and never in bypass mode: one single-flight key
//! refetch for a token whose `kid` is not in the key set (see [`crate::keys`]), and the browser
//! flow's Backend API calls ([`backend`]). Only those paths, and a webhook's body, box a future.
//!
//! # Ordering
//!
//! [`AuthLayer`] must sit *outside* the proxy service and see the request before anything
//! else reads its headers: it removes every client-supplied reserved header first, in every
//! mode, so nothing downstream can mistake a client's `X-Clerk-User-Id` for the gateway's.

pub mod backend;
pub mod browser;
pub mod bypass_log;
pub mod cache;
pub mod claims;
pub mod counters;
pub mod decide;
pub mod facts;
pub mod gate;
pub mod handshake;
pub mod has;
pub mod layer;
pub mod payload;
pub mod public_url;
pub mod token;
pub mod verify;
pub mod webhook;

pub use crate::reason::{Failure, Reason};
pub use cache::{Epoch, VerdictCache};
pub use claims::{OrgContext, SessionClaims};
pub use decide::{decide, Decision, Forward};
pub use facts::RequestFacts;
pub use gate::Gate;
pub use layer::{Auth, AuthLayer};
pub use verify::{Carrier, TimeClaim, Verified};
