//! Webhook events that end sessions, fed to the revocation list: `session.revoked`,
//! `session.ended` and `session.removed` revoke that session, `user.deleted` every session of
//! that user. Each goes through the control task like any revocation — recorded and audited,
//! actor `webhook` — so a token of that session is refused from the next request on, before it
//! expires. An accelerator only: webhooks may lag minutes, and `revoke --remote` at Clerk stays
//! the way to end sessions.

use tokio::sync::mpsc;

use super::{Actor, ControlHandle};
use crate::revocation::Revocation;
use crate::webhooks::{Fed, Revoke};

/// Adds each fed revocation through `control`, until the journal closes the feed.
pub async fn run(control: ControlHandle, mut feed: mpsc::Receiver<Fed>) {
    while let Some(Fed { revoke, svix_id, event_type }) = feed.recv().await {
        let what = match revoke {
            Revoke::Session(id) => Revocation::Session(id),
            Revoke::User(id) => Revocation::User(id),
        };
        let reason = format!("Clerk webhook {event_type} ({svix_id})");
        if let Err(e) = control.revoke(what, reason, Actor::Webhook).await {
            tracing::error!(error = %e, %svix_id, %event_type, "could not add the revocation a webhook asked for");
        }
    }
}
