//! clerkgate — a reverse-proxy auth gateway for applications that sign their users in with Clerk.
//!
//! # Architecture in one screen
//!
//! ```text
//!  request path   client ─► listener ─► auth (tower layer) ─► proxy ─► upstream
//!                                        │                      │
//!                                        ├─ reads, lock-free: state (config + mode),
//!                                        │  keys (kid → parsed key), revocation (ArcSwap each),
//!                                        │  auth::VerdictCache (whole token → verdict)
//!                                        ▼                      ▼
//!                                 answer: every response the gateway writes itself
//!
//!  control path   SIGHUP (control::signals), admin API, file watch, expiry timer
//!                   ─► control (one task, one change at a time)
//!                        ─► store: a typed change and its audit line, durable, off the runtime
//!                           (state.json, audit.jsonl, keys.json)
//!                        ─► then swaps state, revocations and key sets
//! ```
//!
//! Per request: strip reserved headers → normalise the path and route it → read the mode →
//! find the token → verify → authorise → forward with identity headers, or answer.
//!
//! # Layers
//!
//! Top to bottom. A module names only modules in rows below its own, never one in its own row
//! (so `auth` and `proxy` stay apart, and what both need sits below both); `tests/it/layers.rs`
//! checks every `crate::` path against this table and that there is no import cycle.
//!
//! ```text
//!  entry                         cli (main.rs calls it)
//!  runbook commands              ops: triage, keys check, revoke --remote, the incident report
//!  fuzz targets                  fuzzing (the bodies fuzz/ calls)
//!  development tools             devtools: demo, echo upstream, token minting, Clerk stand-in
//!  wiring                        app: builds everything from a config, binds the listeners
//!  edges                         listener (data plane)        admin (API, guard, CLI client)
//!                                file_watch (mounted files: asks control for reloads)
//!  TLS termination               tls (the certificate in force, per handshake)
//!  the one writer                control
//!  durable state and audit       store
//!  the decision and the hop      auth                         proxy
//!  the gateway's own answers     answer
//!  what auth and proxy share     headers (names, hygiene)     reason (why refused)
//!  what the request path reads   keys    state    revocation
//!                                webhooks (the journal of Clerk's webhooks, the Svix signature)
//!  the Backend API client        clerk_api (budget, 429 pauses, retries, Clerk's errors)
//!  logging and metrics           telemetry
//!  validated configuration       config
//!  what the config is made of    routes    mode    verifying_key
//!  base                          clock    fsutil    proxy_protocol (the PROXY header parser)
//! ```
//!
//! # Invariants (each has a test; the README says where)
//!
//! 1. A client's copy of any gateway header never reaches the upstream, in any mode — except,
//!    from a peer in `server.trusted_proxies` only, an `X-Forwarded-For` chain of IP addresses
//!    (written anew, the peer appended) and an `X-Forwarded-Proto` of `http` or `https`.
//! 2. Keys never come from the request (`jku`, `x5u`, `jwk`, `x5c` are ignored).
//! 3. The request path never awaits the network, except the unknown-kid refetch and the browser
//!    flow's Backend API calls (handshake payload, refresh), each bounded by `fetch_timeout` and
//!    never in bypass mode.
//! 4. A bad reload never replaces a good config; a bad JWKS answer never replaces good keys.
//! 5. Bypass never starts without a reason and never outlives its expiry.
//! 6. Admin mutations need the admin token and are audited; a change that cannot be audited
//!    does not happen, and a state write never stalls a request.
//! 7. A signed-in request carries its user id exactly; an identity a header cannot carry is
//!    refused, never shortened.
//! 8. A state file that cannot be read is never replaced by an empty state: the start refuses
//!    it, and only `run --discard-state` sets it aside — kept, and audited.
//! 9. A verified webhook reaches the upstream only once it is durable in the journal, and once
//!    per `svix-id` unless its delivery failed.

pub mod admin;
pub mod answer;
pub mod app;
pub mod auth;
pub mod clerk_api;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod devtools;
pub mod file_watch;
pub mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
pub mod headers;
pub mod keys;
pub mod listener;
pub mod mode;
pub mod ops;
pub mod proxy;
pub mod proxy_protocol;
pub mod reason;
pub mod revocation;
pub mod routes;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod verifying_key;
pub mod webhooks;

/// The echo upstream and token minting, at the paths the integration tests and benches use.
pub use devtools::{echo, mint};
