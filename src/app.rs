//! Wiring: builds the shared state from a config and the state store's snapshot, starts the
//! control task, binds the data-plane and admin listeners (and the health listener when
//! `server.health_listen` is set), starts the key refresher and the file watcher, and shuts
//! everything down in order. The binary, the demo and the integration tests all start the
//! gateway through [`start`] (or [`start_with_store`]), so they run the same code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::Layer;

use crate::admin::AdminState;
use crate::auth::{AuthLayer, Gate};
use crate::clock::Clock;
use crate::config::StateBackend;
use crate::config::{Config, Env};
use crate::control;
use crate::keys::KeyStore;
use crate::proxy::Proxy;
use crate::revocation::Revocations;
use crate::state::{Runtime, Shared};
use crate::store::file::StateProblems;
use crate::store::redis::{OpenError, RedisStore};
use crate::store::{ControlStore, FileStore, GatewayFacts, StoreError};
use crate::webhooks::{Journal, Limits};

/// How to start a gateway beyond its config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The clock (tests pass a manual one).
    pub clock: Clock,
    /// The config file, re-read on reload.
    pub config_path: Option<PathBuf>,
    /// The environment.
    pub env: Env,
    /// Set aside state files that cannot be read or are not valid, audited, instead of
    /// refusing to start (`clerkgate run --discard-state`).
    pub discard_state: bool,
    /// How a change to the config file, or a file it names, is noticed (with a config file).
    pub watch: crate::file_watch::WatchMode,
}

/// Why the gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The state directory, or a file in it, is not usable; each problem says what to do.
    /// `check-config` reports the same problems.
    #[error(transparent)]
    State(#[from] StateProblems),
    /// The state store could not be read, or does not take writes.
    #[error("the state store: {0}")]
    Store(String),
    /// A listener could not be bound, or another I/O failure.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<StoreError> for StartError {
    fn from(e: StoreError) -> Self {
        StartError::Store(e.to_string())
    }
}

/// A started gateway.
#[derive(Debug)]
pub struct Running {
    /// Where the data plane listens.
    pub data_addr: SocketAddr,
    /// Where the admin API listens.
    pub admin_addr: SocketAddr,
    /// Where the health listener listens (`server.health_listen`), when it is on.
    pub health_addr: Option<SocketAddr>,
    /// What the running gateway shares, for the code that started it (the binary, the demo,
    /// tests): the same handles the admin API is given. No module imports the wiring; the
    /// control task gets its own ([`control::Handles`]).
    pub ctx: Arc<AdminState>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops accepting, drains in-flight requests within `server.shutdown_grace`, and returns.
    /// The health listener answers until the drain is over (`/readyz` with 503), then stops.
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

/// Builds the shared state, binds both listeners and starts serving, with the file store in
/// `state.dir` — once the directory takes writes and every file in it is valid (see
/// [`FileStore::open`]; `opts.discard_state` sets bad files aside instead).
///
/// With `state.backend = "redis"`, the fleet store: the same local checks, then the link to
/// the fleet's Redis, waited for a moment ([`RedisStore::start`]) but never required.
pub async fn start(config: Config, opts: Options) -> Result<Running, StartError> {
    let (dir, discard, now) = (config.state.dir.clone(), opts.discard_state, opts.clock.now_ms());
    let stopped = |e: tokio::task::JoinError| StartError::Store(format!("the state check stopped: {e}"));
    let store: Arc<dyn ControlStore> = match &config.state.backend {
        StateBackend::File => {
            Arc::new(tokio::task::spawn_blocking(move || FileStore::open(dir, discard, now)).await.map_err(stopped)??)
        }
        StateBackend::Redis(redis) => {
            let (redis, clock) = (redis.clone(), opts.clock.clone());
            let store = tokio::task::spawn_blocking(move || RedisStore::open(&redis, dir, discard, clock))
                .await
                .map_err(stopped)?
                .map_err(|e| match e {
                    OpenError::State(problems) => StartError::State(problems),
                    OpenError::Redis(m) => StartError::Store(m),
                })?;
            store.start().await;
            Arc::new(store)
        }
    };
    start_with_store(config, opts, store).await
}

/// Like [`start`], with control state kept in `store`. A store that cannot be read or does not
/// take writes stops the start: the gateway never serves on an empty state in place of one it
/// could not read.
pub async fn start_with_store(
    config: Config,
    opts: Options,
    store: Arc<dyn ControlStore>,
) -> Result<Running, StartError> {
    // Metrics first, so that whatever is set while starting (the key-set gauge) is recorded.
    crate::telemetry::metrics_handle();
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
    let snapshot = store.snapshot().await?;
    let now = clock.now_ms();
    let keys = Arc::new(KeyStore::restore(&config, clock.clone(), snapshot.keys));
    let revocations = Arc::new(Revocations::new(snapshot.state.revocations));
    // An override that ran out while the gateway was down is already ignored by `mode_at`; the
    // control task's first expiry tick records its end and removes it, as for any other.
    let runtime = Runtime::initial(config.clone(), now).with_override(snapshot.state.admin_override);
    match &runtime.admin_override {
        Some(o) if o.active(now) => {
            tracing::warn!(mode = %o.mode, reason = %o.reason, "restored the admin mode override from the state store")
        }
        Some(o) => {
            tracing::warn!(mode = %o.mode, reason = %o.reason, "the admin override expired while the gateway was down")
        }
        None => {}
    }
    let start_mode = runtime.mode_at(now).clone();
    if start_mode.source == crate::mode::ModeSource::Env {
        tracing::warn!("starting in bypass mode: CLERK_EMERGENCY_BYPASS=true");
    }
    let shared = Arc::new(Shared::with_clock(runtime, clock.clone()));
    store.describe_gateway({
        let (shared, keys, clock) = (shared.clone(), keys.clone(), clock.clone());
        Arc::new(move || {
            let rt = shared.load();
            let mode = rt.mode_at(clock.now_ms());
            GatewayFacts {
                mode: mode.mode.as_str().into(),
                mode_source: mode.source.as_str().into(),
                config_hash: rt.config.origin.hash.clone(),
                kids: keys.current().kids(),
            }
        })
    });
    let journal = open_journal(&config, clock.clone()).await?;
    let gate =
        Gate::new(shared.clone(), keys.clone(), revocations.clone(), clock.clone()).with_journal(journal.clone());
    let gate = Arc::new(gate);
    let data = bind(config.server.listen, "server.listen").await?;
    let admin = bind(config.admin.listen, "admin.listen").await?;
    let health = match config.server.health_listen {
        Some(addr) => Some(bind(addr, "server.health_listen").await?),
        None => None,
    };
    let data_addr = data.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let health_addr = health.as_ref().map(TcpListener::local_addr).transpose()?;
    let (control, control_rx) = control::channel();
    let watch_mode = if opts.config_path.is_some() { opts.watch } else { crate::file_watch::WatchMode::Off };
    let report = Arc::new(control::Report::default());
    control::export_mode(start_mode.mode);
    let handles = control::Handles {
        shared: shared.clone(),
        revocations: revocations.clone(),
        keys: keys.clone(),
        store: store.clone(),
        clock: clock.clone(),
        config_path: opts.config_path,
        env: opts.env,
        report: report.clone(),
    };
    let control_task = control::start(handles, control_rx, snapshot.epoch)
        .await
        .map_err(|e| StartError::Store(format!("cannot record how the gateway starts: {e}")))?;
    let started_at_ms = clock.now_ms();
    if let Some(feed) = journal.take_feed() {
        tokio::spawn(control::feed::run(control.clone(), feed));
    }
    let proxy = Proxy::new(shared.clone());
    let ctx = Arc::new(AdminState {
        shared: shared.clone(),
        keys: keys.clone(),
        revocations,
        gate: gate.clone(),
        clock,
        control,
        store,
        report,
        started_at_ms,
        webhooks: Some(journal),
        proxy: proxy.clone(),
        triage: std::sync::OnceLock::new(),
    });

    let (tx, rx) = watch::channel(false);

    let service = AuthLayer::new(gate).layer(proxy);
    let mut tasks = Vec::new();
    let limits = crate::listener::ConnLimits::new(&config.server, crate::listener::raise_fd_limit());
    let tls = crate::tls::server_config(shared.clone())
        .map_err(|e| std::io::Error::other(format!("cannot set up TLS for server.listen: {e}")))?;
    // The health listener stops only after the data plane has drained, so that probes see the
    // drain (503 from /readyz) rather than a refused connection, and /healthz never fails
    // while requests are still being finished.
    let (drained_tx, drained_rx) = watch::channel(false);
    let data_rx = rx.clone();
    tasks.push(tokio::spawn(async move {
        crate::listener::serve(data, service, limits, tls, wait_for(data_rx)).await;
        let _ = drained_tx.send(true);
    }));
    if let Some(health) = health {
        let health_router = crate::admin::health_router(ctx.clone(), rx.clone());
        let health_limits = crate::listener::ConnLimits::for_health(&config.server);
        tasks.push(tokio::spawn(async move {
            crate::listener::serve(health, health_router, health_limits, None, wait_for(drained_rx)).await;
        }));
    }
    let admin_router = crate::admin::router(ctx.clone());
    let admin_rx = rx.clone();
    tasks.push(tokio::spawn(async move {
        let _ = axum::serve(admin, admin_router).with_graceful_shutdown(wait_for(admin_rx)).await;
    }));
    let refresher = tokio::spawn(keys.clone().run_refresher());
    let watcher = crate::file_watch::spawn(watch_mode, ctx.control.clone());
    let refresher_rx = rx.clone();
    tasks.push(tokio::spawn(async move {
        wait_for(refresher_rx).await;
        refresher.abort();
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        control_task.abort();
    }));
    let tls = config.server.tls.is_some();
    let health_addr_text = health_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
    tracing::info!(%data_addr, %admin_addr, health_addr = %health_addr_text, tls, upstream = %config.upstream.url_text, "clerkgate listening");
    Ok(Running { data_addr, admin_addr, health_addr, ctx, shutdown: tx, tasks })
}

/// Opens the webhook journal in `state.dir` with the config's bounds (read at start).
async fn open_journal(config: &Config, clock: Clock) -> Result<Arc<Journal>, StartError> {
    let dir = config.state.dir.clone();
    let limits = Limits {
        max_bytes: config.state.webhook_journal_max_bytes,
        max_age_ms: crate::clock::duration_ms(config.state.webhook_journal_max_age),
    };
    let opened = tokio::task::spawn_blocking(move || Journal::open(&dir, limits, clock))
        .await
        .map_err(|e| StartError::Store(format!("the webhook journal check stopped: {e}")))?;
    let (journal, loaded) = opened.map_err(|e| {
        StartError::Store(format!("cannot open the webhook journal in {} (state.dir): {e}", config.state.dir.display()))
    })?;
    if loaded.skipped > 0 {
        tracing::warn!(
            skipped = loaded.skipped,
            path = %journal.path().display(),
            "webhook journal: lines that do not read were skipped (a write cut short by a crash; its event was not answered)"
        );
    }
    tracing::debug!(events = loaded.events, "webhook journal opened");
    Ok(Arc::new(journal))
}

/// Binds `addr`, the value of the config key `key`; a failure names both, and for an address
/// in use, how to find the process that holds it.
async fn bind(addr: SocketAddr, key: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let fix = match e.kind() {
            std::io::ErrorKind::AddrInUse => format!(
                "another process holds it (see which: ss -ltnp 'sport = :{}'); stop it, or change {key}",
                addr.port()
            ),
            std::io::ErrorKind::PermissionDenied => {
                format!("ports below 1024 need privileges (CAP_NET_BIND_SERVICE); or change {key}")
            }
            std::io::ErrorKind::AddrNotAvailable => format!("no interface of this host has that address; change {key}"),
            _ => format!("change {key}"),
        };
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({key}): {e}; {fix}"))
    })
}
