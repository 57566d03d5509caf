//! The runbook as commands: what an operator runs during and after an incident, built on the
//! admin API and the gateway's records rather than on the request path.
//!
//! - [`report`]: `clerkgate incident-report`, the post-incident review filled in from the
//!   audit log and the gateway's counters.

pub mod report;
