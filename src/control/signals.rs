//! Unix signals: SIGHUP reloads; SIGTERM (Kubernetes) and SIGINT (Ctrl-C) shut down.
//!
//! [`Signals::register`] installs all three handlers at once and must run *before* the gateway
//! announces it is listening: once a supervisor may send SIGHUP, the default action (terminate)
//! must already be replaced.

use tokio::signal::unix::{signal, Signal, SignalKind};

use super::{Actor, ControlHandle};

/// The registered signal streams.
#[derive(Debug)]
pub struct Signals {
    hup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the SIGHUP, SIGTERM and SIGINT handlers.
    pub fn register() -> std::io::Result<Self> {
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Feeds every SIGHUP into the control funnel until SIGTERM or SIGINT arrives, then returns.
    /// Deliveries may coalesce; reload is idempotent.
    pub async fn run(mut self, control: ControlHandle) {
        loop {
            tokio::select! {
                Some(()) = self.hup.recv() => control.reload_nowait(Actor::Signal),
                _ = self.term.recv() => {
                    tracing::info!("SIGTERM: draining");
                    return;
                }
                _ = self.int.recv() => {
                    tracing::info!("SIGINT: draining");
                    return;
                }
            }
        }
    }
}
