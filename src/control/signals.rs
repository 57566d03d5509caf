//! Unix signals: SIGHUP reloads; SIGTERM (Kubernetes) and SIGINT (Ctrl-C) shut down.

use tokio::signal::unix::{signal, SignalKind};

use super::{Actor, ControlHandle};

/// Registers SIGHUP early (so an early `kill -HUP` never terminates the process) and feeds
/// every delivery into the control funnel. Deliveries may coalesce; reload is idempotent.
pub fn forward_sighup(control: ControlHandle) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hup = signal(SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            control.reload_nowait(Actor::Signal);
        }
    }))
}

/// Completes on the first SIGTERM or SIGINT.
pub async fn shutdown() {
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        // Without signal handlers we can only run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
}
