//! Development tools, apart from the request path: the demo (`clerkgate demo`), the echo
//! upstream it runs (also the integration tests' witness), token minting (`clerkgate
//! token`, the demo, tests and benches), and a stand-in for Clerk's Frontend and Backend API
//! (the demo's sign-in and handshake, the tests' Clerk end). Only the CLI uses them; no layer
//! of the gateway does (unit tests may, to sign their tokens).

pub mod demo;
pub mod echo;
pub mod frontend;
pub mod mint;
