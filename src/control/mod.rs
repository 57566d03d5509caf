//! The control funnel: every change to the running gateway — SIGHUP, `POST /reload`, mode
//! changes, the expiry timer — is a [`Control`] message handled by one task, one at a time.
//! Nothing else writes the runtime snapshot, so two changes can never interleave.

pub mod signals;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::app::Context;
use crate::config::{Config, ConfigErrors};
use crate::state::Runtime;
use crate::telemetry::names as metric;

/// Who asked for a change (recorded in the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A signal (SIGHUP).
    Signal,
    /// An admin API call, by token id.
    Admin(String),
    /// The expiry timer.
    Timer,
}

impl Actor {
    /// The name written to the audit log.
    pub fn name(&self) -> String {
        match self {
            Actor::Signal => "signal".into(),
            Actor::Admin(id) => id.clone(),
            Actor::Timer => "timer".into(),
        }
    }
}

/// A request to the control task.
#[derive(Debug)]
pub enum Control {
    /// Re-read the config file and secret files, validate, swap; keep the old one on error.
    Reload {
        /// Who asked.
        actor: Actor,
        /// Where to send the outcome.
        reply: Option<oneshot::Sender<Result<ReloadOutcome, ConfigErrors>>>,
    },
}

/// A successful reload.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    /// The new config hash.
    pub hash: String,
    /// Whether anything changed.
    pub changed: bool,
}

/// The sending side of the funnel.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<Control>,
}

impl ControlHandle {
    /// Asks for a reload and waits for its outcome.
    pub async fn reload(&self, actor: Actor) -> Result<ReloadOutcome, ConfigErrors> {
        let (reply, rx) = oneshot::channel();
        let closed = || {
            ConfigErrors(vec![crate::config::ConfigProblem {
                key: "(control)".into(),
                message: "the gateway is shutting down".into(),
            }])
        };
        self.tx
            .send(Control::Reload {
                actor,
                reply: Some(reply),
            })
            .await
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Asks for a reload without waiting (signal handlers).
    pub fn reload_nowait(&self, actor: Actor) {
        let _ = self.tx.try_send(Control::Reload { actor, reply: None });
    }
}

/// The funnel's two ends; the receiver goes to [`spawn`].
pub fn channel() -> (ControlHandle, mpsc::Receiver<Control>) {
    let (tx, rx) = mpsc::channel(64);
    (ControlHandle { tx }, rx)
}

/// Starts the control task for `ctx`, draining `rx` until every handle is dropped.
pub fn spawn(ctx: Arc<Context>, mut rx: mpsc::Receiver<Control>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            match msg {
                Control::Reload { actor, reply } => {
                    let outcome = reload(&ctx, &actor);
                    if let Some(reply) = reply {
                        let _ = reply.send(outcome);
                    }
                }
            }
        }
    })
}

/// Re-reads and validates the config; swaps it in only when valid.
fn reload(ctx: &Context, actor: &Actor) -> Result<ReloadOutcome, ConfigErrors> {
    let Some(path) = &ctx.config_path else {
        return Err(ConfigErrors(vec![crate::config::ConfigProblem {
            key: "(file)".into(),
            message: "this gateway was not started from a config file".into(),
        }]));
    };
    match Config::load(path, &ctx.env) {
        Ok(config) => {
            let config = Arc::new(config);
            let now = ctx.clock.now_ms();
            let old_hash = ctx.shared.load().config.origin.hash.clone();
            ctx.keys.reconfigure(&config);
            let next = ctx.shared.update(|rt| {
                // The file's mode keeps its original start (and so its expiry) while the file
                // says the same thing; a changed [mode] section starts afresh.
                let file_mode = {
                    let fresh = Runtime::file_mode_for(&config, now);
                    if fresh.mode == rt.file_mode.mode && fresh.reason == rt.file_mode.reason {
                        rt.file_mode.clone()
                    } else {
                        fresh
                    }
                };
                Runtime {
                    config: config.clone(),
                    admin_override: rt.admin_override.clone(),
                    env_mode: rt.env_mode.clone(),
                    file_mode,
                    generation: rt.generation,
                }
            });
            metrics::counter!(metric::RELOADS, "result" => "ok").increment(1);
            let changed = old_hash != next.config.origin.hash;
            tracing::info!(actor = %actor.name(), hash = %next.config.origin.hash, changed, "config reloaded");
            Ok(ReloadOutcome {
                hash: next.config.origin.hash.clone(),
                changed,
            })
        }
        Err(errors) => {
            metrics::counter!(metric::RELOADS, "result" => "error").increment(1);
            tracing::error!(actor = %actor.name(), errors = %errors, "config reload refused; the running config stays");
            Err(errors)
        }
    }
}
