//! Clerk's webhooks at the gateway (clerk-ops §8.5): the Svix signature both ways ([`svix`]),
//! what an event's envelope says ([`event`]), and the journal every verified event is written
//! to before it is forwarded ([`journal`]), which `clerkgate webhooks list|replay` read through
//! the admin API.
//!
//! The auth layer verifies a delivery, records it here (durable before any answer), forwards
//! it unless it is a duplicate, and notes the outcome. Events that end sessions are handed on
//! ([`Journal::take_feed`]) for the control task to add to the revocation list.

pub mod event;
pub mod journal;
pub mod svix;

pub use event::{Envelope, Revoke};
pub use journal::{
    Delivery, Facts, Fed, Head, Journal, JournalError, Limits, Loaded, Outcome, Recorded, Stored, Summary,
};
