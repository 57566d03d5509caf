//! clerkgate — a reverse-proxy auth gateway for applications that sign their users in with Clerk.
//!
//! # Architecture in one screen
//!
//! ```text
//!  client ──► server (hyper-util, h1/h2c) ──► auth::Auth (tower layer) ──► proxy::Proxy ──► upstream
//!                                               │ reads, lock-free:
//!                                               ├─ state::Shared   (config + mode, ArcSwap)
//!                                               ├─ keys::KeyStore  (kid → parsed key, ArcSwap)
//!                                               ├─ auth::VerdictCache (whole token → verdict)
//!                                               └─ revocation::Revocations (ArcSwap)
//!  SIGHUP, admin API, timers ──► control (one task) ──► swaps state::Shared
//! ```
//!
//! Per request: strip reserved headers → normalise the path and route it → read the mode →
//! find the token → verify → authorise → forward with identity headers, or answer.
//!
//! # Invariants (each has a test; the README says where)
//!
//! 1. A client's copy of any gateway header never reaches the upstream, in any mode.
//! 2. Keys never come from the request (`jku`, `x5u`, `jwk`, `x5c` are ignored).
//! 3. The request path never awaits the network, except the bounded unknown-kid refetch.
//! 4. A bad reload never replaces a good config; a bad JWKS answer never replaces good keys.
//! 5. Bypass never starts without a reason and never outlives its expiry.
//! 6. Admin mutations need the admin token and are audited.

pub mod admin;
pub mod answer;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod echo;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
pub mod mint;
pub mod proxy;
pub mod revocation;
pub mod routes;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
