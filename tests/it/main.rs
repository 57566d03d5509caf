#![allow(unreachable_pub)]

//! The one integration-test binary (links once). Every test talks to real sockets on
//! 127.0.0.1 with port 0: a real JWKS HTTP server, the real echo upstream, the gateway either
//! in-process (through the same `app::start` the binary uses) or as the real binary.

mod support;

/// Config loading and `check-config`.
mod config;
/// The control plane: modes, admin API, signals, reload, revocation, audit (real binary).
mod control;
/// The data plane: header table, answer table, and the peer security cases T01–T15, T23–T26, T28.
mod data_plane;
/// The demo, run as printed.
mod demo;
/// Fuzz findings and seeds, replayed through the fuzz targets' bodies (`fuzz/`).
mod fuzz_regressions;
/// Keys: refresh, unknown-kid flood, rotation, bad answers, outage, persistence (T16–T22).
mod keys;
/// The proxy hop: streaming, hop-by-hop, forwarded headers, upgrades, 502/504, h2c.
mod proxy;
