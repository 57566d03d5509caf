//! Development tools, apart from the request path: the demo (`clerkgate demo`), the echo
//! upstream it runs (also the integration tests' witness), and token minting (`clerkgate
//! token`, the demo, tests and benches). Only the CLI uses them; no layer of the gateway
//! does (unit tests may, to sign their tokens).

pub mod demo;
pub mod echo;
pub mod mint;
