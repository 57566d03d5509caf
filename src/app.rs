//! Wiring: builds the shared state from a config, binds the data-plane and admin listeners,
//! starts the key refresher, and shuts everything down in order. The binary, the demo and the
//! integration tests all start the gateway through [`start`], so they run the same code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::Layer;

use crate::auth::{AuthLayer, Gate};
use crate::clock::Clock;
use crate::config::{Config, Env};
use crate::control::{self, ControlHandle};
use crate::keys::KeyStore;
use crate::proxy::Proxy;
use crate::revocation::Revocations;
use crate::state::{Runtime, Shared};
use crate::store::{FileStore, StateStore};

/// Everything the running gateway shares, for the code that started it (the binary, the demo,
/// tests). No module imports it: the admin API and the control task get their own narrow
/// handles ([`crate::admin::AdminState`], [`crate::control::ControlState`]), built here.
#[derive(Debug)]
pub struct Context {
    /// The runtime snapshot.
    pub shared: Arc<Shared>,
    /// The key store.
    pub keys: Arc<KeyStore>,
    /// Revocations.
    pub revocations: Arc<Revocations>,
    /// The auth gate.
    pub gate: Arc<Gate>,
    /// The clock.
    pub clock: Clock,
    /// The config file, for reloads.
    pub config_path: Option<PathBuf>,
    /// The environment the config was resolved with.
    pub env: Env,
    /// The control funnel.
    pub control: ControlHandle,
    /// Durable state and the audit log.
    pub store: Arc<dyn StateStore>,
}

/// How to start a gateway beyond its config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The clock (tests pass a manual one).
    pub clock: Clock,
    /// The config file, re-read on reload.
    pub config_path: Option<PathBuf>,
    /// The environment.
    pub env: Env,
}

/// A started gateway.
#[derive(Debug)]
pub struct Running {
    /// Where the data plane listens.
    pub data_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// The shared context.
    pub ctx: Arc<Context>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, drains in-flight requests within `server.shutdown_grace`, and returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

async fn wait_for(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Builds the shared state, binds both listeners and starts serving.
pub async fn start(config: Config, opts: Options) -> std::io::Result<Running> {
    let clock = opts.clock.clone();
    let config = Arc::new(config);
    for w in &config.warnings {
        tracing::warn!("config: {w}");
    }
    if config.admin.token.is_none() {
        tracing::warn!(
            "no admin token is configured: every admin endpoint but /healthz, /readyz and /metrics answers 403"
        );
    }
    let keys = Arc::new(KeyStore::new(&config, clock.clone()));
    let store: Arc<dyn StateStore> = Arc::new(FileStore::new(config.state.dir.clone()));
    let persisted = store.load().unwrap_or_else(|e| {
        tracing::error!(error = %e, dir = %config.state.dir.display(), "state.json is unreadable; starting with no override and no revocations");
        Default::default()
    });
    let now = clock.now_ms();
    let revocations = Arc::new(Revocations::new(persisted.revocations));
    let mut runtime = Runtime::initial(config.clone(), now);
    let expired_while_down = persisted.admin_override.clone().filter(|o| !o.active(now));
    runtime.admin_override = persisted.admin_override.filter(|o| o.active(now));
    if let Some(o) = &runtime.admin_override {
        tracing::warn!(mode = %o.mode, reason = %o.reason, "restored the admin mode override from state.json");
    }
    let start_mode = runtime.mode_at(now).clone();
    let shared = Arc::new(Shared::new(runtime));
    let gate = Arc::new(Gate::new(shared.clone(), keys.clone(), revocations.clone(), clock.clone()));
    let (control, control_rx) = control::channel();
    let ctx = Arc::new(Context {
        shared: shared.clone(),
        keys: keys.clone(),
        revocations,
        gate: gate.clone(),
        clock,
        config_path: opts.config_path,
        env: opts.env,
        control,
        store: store.clone(),
    });
    if start_mode.source == crate::mode::ModeSource::Env {
        let ev = crate::store::event(
            now,
            "env",
            "mode.set",
            serde_json::Value::Null,
            serde_json::json!(start_mode),
            &start_mode.reason,
        );
        if let Err(e) = store.append_audit(&ev) {
            tracing::error!(error = %e, "could not write the audit log");
        }
        tracing::warn!("starting in bypass mode: CLERK_EMERGENCY_BYPASS=true");
    }
    if let Some(old) = expired_while_down {
        // The override ran out while the gateway was down: record its end, as the timer would
        // have, and drop it from state.json.
        tracing::warn!(mode = %old.mode, reason = %old.reason, "the admin override expired while the gateway was down");
        let ev = crate::store::event(
            now,
            "timer",
            "mode.expired",
            serde_json::json!(old),
            serde_json::json!(start_mode),
            &old.reason,
        );
        if let Err(e) = store.append_audit(&ev) {
            tracing::error!(error = %e, "could not write the audit log");
        }
        let state =
            crate::store::PersistedState { admin_override: None, revocations: (**ctx.revocations.current()).clone() };
        if let Err(e) = store.save(&state) {
            tracing::error!(error = %e, "could not persist state.json");
        }
    }
    control::export_mode(start_mode.mode);
    let control_task = control::spawn(
        Arc::new(control::ControlState {
            shared: shared.clone(),
            keys: keys.clone(),
            revocations: ctx.revocations.clone(),
            clock: ctx.clock.clone(),
            config_path: ctx.config_path.clone(),
            env: ctx.env.clone(),
            store: store.clone(),
        }),
        control_rx,
    );

    let data = TcpListener::bind(config.server.listen).await?;
    let admin = TcpListener::bind(config.admin.listen).await?;
    let data_addr = data.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let (tx, rx) = watch::channel(false);

    let service = AuthLayer::new(gate).layer(Proxy::new(shared.clone()));
    let mut tasks = Vec::new();
    let limits = crate::listener::ConnLimits::new(&config.server, crate::listener::raise_fd_limit());
    tasks.push(tokio::spawn(crate::listener::serve(data, service, limits, wait_for(rx.clone()))));
    let admin_router = crate::admin::router(Arc::new(crate::admin::AdminState {
        shared: shared.clone(),
        keys: keys.clone(),
        revocations: ctx.revocations.clone(),
        gate: ctx.gate.clone(),
        clock: ctx.clock.clone(),
        control: ctx.control.clone(),
        store: store.clone(),
    }));
    let admin_rx = rx.clone();
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(admin, admin_router).with_graceful_shutdown(wait_for(admin_rx)).await;
    }));
    let refresher = tokio::spawn(keys.clone().run_refresher());
    let refresher_rx = rx.clone();
    tasks.push(tokio::spawn(async move {
        wait_for(refresher_rx).await;
        refresher.abort();
        control_task.abort();
    }));
    tracing::info!(%data_addr, %admin_addr, upstream = %config.upstream.url_text, "clerkgate listening");
    Ok(Running { data_addr, admin_addr, ctx, shutdown: tx, tasks })
}
