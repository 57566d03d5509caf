#![allow(unreachable_pub)]

//! The one integration-test binary (links once). Every test talks to real sockets on
//! 127.0.0.1 with port 0: a real JWKS HTTP server, the real echo upstream, the gateway either
//! in-process (through the same `app::start` the binary uses) or as the real binary.

mod support;

/// Issue #12 item 8: Debian's headless Chromium through the real binary and the stand-in
/// Clerk: an expired session cookie ends on the page, signed in, with a fresh cookie.
mod browser;
/// Issue #12 items 1–6: Clerk's browser flow — cookie rules, handshake redirect and loop guard,
/// handshake resolution and refresh through a stand-in Backend API, sign-in redirects, modes.
mod browser_flow;
/// Config loading and `check-config`.
mod config;
/// Issue #15, the on-call console (`GET /console`): security headers, login-only without a
/// token, cross-site posts refused, the read-only page; headless Chromium flips the mode.
mod console;
/// The control plane: modes, admin API, signals, reload, revocation, audit (real binary).
mod control;
/// The data plane: header table, answer table, and the peer security cases T01–T15, T23–T26, T28.
mod data_plane;
/// The demo, run as printed.
mod demo;
/// Issue #11, the shipped deployment files: Dockerfile, config/, deploy/ (Kubernetes manifests,
/// compose, systemd) hold together, and each of those checks is shown to fail on a broken file.
mod deploy;
/// Issue #11 item 7, behind a load balancer: `server.trusted_proxies` (a trusted peer's
/// X-Forwarded-For kept and appended to), PROXY protocol v1/v2 from trusted peers only, and
/// the per-client limit for balancers and the clients they carry.
mod edge_lb;
/// Issue #11 item 6, TLS at the edge: HTTP/1.1 and HTTP/2 over TLS, certificate renewal on
/// reload and SIGHUP, bad pairs refused, silent handshakes cut off, `https://` upstreams.
mod edge_tls;
/// Issue #14's "Done when", proved with several real gateway processes on one real
/// `redis-server` and the real CLI: one call flips five gateways within 1 s (and ends it, and
/// revokes), Redis SIGKILLed or restarted empty, a CLIENT KILL storm, a lagging gateway in
/// `fleet status`, the local layer during an outage, and the least-privilege ACL users.
mod fleet;
/// Issue #14's test harness: a real `redis-server` per test (start, SIGKILL, restart empty on
/// the same port, every connection dropped), and the ACL lines of deploy/k8s/fleet/redis-acl.md
/// tried on it: the gateway user reads, appends audit and acks, and is refused every write.
mod fleet_harness;
/// Issue #9, control as the only writer: an unauditable change fails and changes nothing, a
/// slow state write never stalls requests on one thread, key-set changes are audited.
mod foundations_control;
/// Issue #9, the auth decision: the verdict cache survives mode changes; bypass under load
/// is quiet in the log (real binary).
mod foundations_decide;
/// Fuzz findings and seeds, replayed through the fuzz targets' bodies (`fuzz/`).
mod fuzz_regressions;
/// Issue #11: the health listener (`/healthz`, `/readyz`, `/metrics` only; 503 before keys and
/// while draining), `clerkgate health` as the exec probe, and the real binary run as user 65532
/// with a read-only working directory, writing only its state directory.
mod health;
/// Issue #16 item 2: an HTTP/1 client connection's own upstream connection — kept, replaced
/// when the upstream closed it, never shared; the pool when no place of its own is free.
mod hop;
/// Keys: refresh, unknown-kid flood, rotation, bad answers, outage, persistence (T16–T22).
mod keys;
/// Layers point one way: no import cycle between the modules under src/, and every
/// `crate::` path goes down the layer table (the picture in src/lib.rs).
mod layers;
/// Issue #10, the operator's side: the CLI's admin address and token sources, `audit`,
/// `revocations`, `revoke --lift`, `status` by key source, bind errors that name their key,
/// and the README's incident section run as printed.
mod operators_cli;
/// Issue #10 items 3, 5, 6 and 10 through `check-config`: syntax errors with line and column,
/// key problems blamed on their source, unwise values and typos, the bypass in force.
mod operators_config;
/// Issue #10 items 9 and 10: upstream failures say which and where, a 403 says signed-in, no
/// colour codes in piped logs, `/metrics` HELP text, an HTTP/1.0 upstream keeps keep-alive.
mod operators_misc;
/// Issue #10, the state directory and refused reloads (real binary): a state dir that cannot be
/// written or a bad state file stops the start (`check-config` says so too), `--discard-state`
/// is audited, a dir made read-only while running shows in `/readyz` and `/status`, and a
/// refused reload shows in `status`.
mod operators_state;
/// Issue #12 item 7, Clerk's own SDK as the judge: one table of requests through
/// `@clerk/backend`'s `authenticateRequest` (tests/oracle) and through the gateway, compared
/// row by row; every disagreement is a documented deviation.
mod oracle;
/// The proxy hop: streaming, hop-by-hop, forwarded headers, upgrades, 502/504, h2c.
mod proxy;
/// Issue #11 item 5, reload from mounted files: a kubelet `..data` swap reloads without a
/// signal, a bad one keeps the running config, no reload without a change, a rotated secret key
/// is checked at the Backend API first, re-arming, the polling fallback, the binary's default.
mod reload_watch;
/// Issue #13 item 6, `clerkgate incident-report` after a scripted incident through the real
/// binary: every event with its time and actor, duration, action items, md and json, `--out`,
/// an empty window, a malformed line, a record this build does not know, a stopped gateway.
mod runbook_report;
/// Issue #13 items 1, 3 and 4: the Backend API client against a stand-in (`support::bapi`),
/// `keys check`, and `revoke --remote` over 2,000 users with 429s, a SIGKILL and `--resume`.
mod runbook_revoke;
/// Issue #13 item 2: `clerkgate triage` names each category of clerk-ops §8.4 against a
/// stand-in Clerk and Backend API, and ends in time when every remote probe hangs.
mod runbook_triage;
/// Issue #13 item 5 and item 3's webhook secrets: the webhook journal (durable before the
/// upstream sees an event, once per svix-id), `webhooks list|replay` through the real binary
/// with replays a Svix verifier accepts, several secrets, and the revocation feed.
mod runbook_webhooks;
/// Issue #8 items 3–7: absurd time claims, strict decoding, malformed org claims, identity that
/// a header cannot carry, pending sessions.
mod security_auth;
/// Issue #8, connection level: limits, watchdog timeouts, body faults, upstream churn.
mod security_conn;
/// HTTP-level fixes of issue #8: h2c smuggling, routing-override headers, HTTP/2 cookies and
/// authority, CONNECT/TRACE, userinfo in Host.
mod security_http;
