//! The CLI side of `clerkgate webhooks list|replay`, through the running gateway's admin API
//! (the gateway is the journal's only writer: it notes each replay's outcome in the journal and
//! audits it). The replay asks for the selection once, then re-delivers it one event at a time
//! in the journal's order, paced by `--rate`, with a progress bar on a terminal and one line per
//! event otherwise, and ends with a summary.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;

use super::api::{Replayed, WebhookList};
use super::client::{self, Target};
use super::webhooks::NO_UPSTREAM_SECRET;
use crate::webhooks::Summary;

/// Which journalled events a command is about.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--since`: received at or after (RFC 3339, or a duration back from now).
    pub since: Option<String>,
    /// `--failed`: only events whose delivery failed or was interrupted.
    pub failed: bool,
    /// `--id`: only these.
    pub ids: Vec<String>,
}

impl Selection {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(since) = &self.since {
            q.push(("since", since.clone()));
        }
        if self.failed {
            q.push(("failed", "true".to_string()));
        }
        if !self.ids.is_empty() {
            q.push(("ids", self.ids.join(",")));
        }
        q
    }
}

/// `webhooks list`.
pub async fn list(target: &Target, selection: &Selection, json: bool) -> ExitCode {
    let query = selection.query();
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    client::call(target, http::Method::GET, &["webhooks"], &query, None, json, show_list).await
}

/// One line per event, in replay order, then the count.
pub fn show_list(list: &WebhookList) -> String {
    let mut out: Vec<String> = list.events.iter().map(show_event).collect();
    let failed = list.events.iter().filter(|e| e.delivery.failed()).count();
    out.push(format!("{} event(s), {failed} failed or interrupted  (journal {})", list.events.len(), list.journal));
    out.join("\n")
}

fn show_event(e: &Summary) -> String {
    let when = humantime::format_rfc3339_seconds(crate::clock::from_ms(e.order_ms()));
    let status = e.last_status.map_or_else(|| "-".to_string(), |s| s.to_string());
    let replays = if e.replays > 0 { format!(", {} replayed", e.replays) } else { String::new() };
    format!(
        "{when}  {}  {:<28}  {:<11}  status {status}  ({} attempt(s){replays})",
        e.svix_id,
        e.event_type.as_deref().unwrap_or("-"),
        e.delivery.as_str(),
        e.attempts
    )
}

/// `webhooks replay`: `rate` events a second at most; `dry_run` only says what would be sent.
pub async fn replay(target: &Target, selection: &Selection, rate: f64, dry_run: bool) -> ExitCode {
    if !(rate > 0.0 && rate <= 1000.0) {
        eprintln!("clerkgate: --rate {rate}: give events per second, more than 0 and at most 1000");
        return ExitCode::from(2);
    }
    let query = selection.query();
    let query: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, value) = match client::request(target, http::Method::GET, &["webhooks"], &query, None).await {
        Ok(answer) => answer,
        Err(e) => {
            eprintln!("clerkgate: {e}");
            return ExitCode::from(1);
        }
    };
    if !status.is_success() {
        return client::refused(target, status, &value);
    }
    let Ok(list) = WebhookList::deserialize(&value) else {
        eprintln!("clerkgate: the admin API answered GET /webhooks in an unexpected shape: {value}");
        return ExitCode::from(1);
    };
    let missing: Vec<&String> =
        selection.ids.iter().filter(|id| !list.events.iter().any(|e| &e.svix_id == *id)).collect();
    for id in &missing {
        eprintln!("clerkgate: {id} is not in the journal (or not in --since/--failed); `clerkgate webhooks list` shows what is");
    }
    if list.events.is_empty() {
        println!("nothing to replay: no journalled event matches");
        return if missing.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) };
    }
    if dry_run {
        println!("{}", show_list(&list));
        println!(
            "dry run: would replay these {} event(s) to the upstream, in this order; nothing was sent",
            list.events.len()
        );
        return ExitCode::SUCCESS;
    }
    if !list.can_replay {
        eprintln!("clerkgate: cannot replay: {NO_UPSTREAM_SECRET}");
        return ExitCode::from(2);
    }
    let progress = Progress::new(list.events.len());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut delivered, mut failed) = (0usize, Vec::new());
    for (i, event) in list.events.iter().enumerate() {
        tick.tick().await;
        let body = serde_json::json!({ "svix_id": event.svix_id });
        let answer = client::request(target, http::Method::POST, &["webhooks", "replay"], &[], Some(body)).await;
        let line = match answer {
            Ok((s, v)) if s.is_success() => match Replayed::deserialize(&v) {
                Ok(r) if r.delivered => {
                    delivered += 1;
                    format!("delivered  {}  status {}", r.svix_id, r.status)
                }
                Ok(r) => {
                    failed.push(r.svix_id.clone());
                    format!("FAILED     {}  the upstream answered {}", r.svix_id, r.status)
                }
                Err(_) => {
                    failed.push(event.svix_id.clone());
                    format!("FAILED     {}  unexpected answer: {v}", event.svix_id)
                }
            },
            Ok((s, v)) => {
                progress.finish();
                // A refusal of the call itself (token, secret, journal) stops the run.
                let code = client::refused(target, s, &v);
                eprintln!("clerkgate: stopped after {i} of {} event(s); {delivered} delivered", list.events.len());
                return code;
            }
            Err(e) => {
                eprintln!("clerkgate: {e}");
                let code = ExitCode::from(1);
                progress.finish();
                eprintln!("clerkgate: stopped after {i} of {} event(s); {delivered} delivered", list.events.len());
                return code;
            }
        };
        progress.step(i + 1, &event.svix_id, &line);
    }
    progress.finish();
    println!(
        "replayed {} event(s) to the upstream: {delivered} delivered, {} failed{}",
        list.events.len(),
        failed.len(),
        if failed.is_empty() { String::new() } else { format!(" ({})", failed.join(", ")) }
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("the failed ones stay marked failed: fix the upstream, then `clerkgate webhooks replay --failed`");
        ExitCode::from(1)
    }
}

/// A bar on a terminal, one line per event otherwise.
enum Progress {
    Bar(indicatif::ProgressBar),
    Lines(usize),
}

impl Progress {
    fn new(total: usize) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::Lines(total);
        }
        let bar = indicatif::ProgressBar::new(total as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} replayed  {msg}  (eta {eta})")
        {
            bar.set_style(style);
        }
        Progress::Bar(bar)
    }

    fn step(&self, done: usize, id: &str, line: &str) {
        match self {
            Progress::Bar(bar) => {
                if line.starts_with("FAILED") {
                    bar.println(line);
                }
                bar.set_message(id.to_string());
                bar.set_position(done as u64);
            }
            Progress::Lines(total) => eprintln!("[{done}/{total}] {line}"),
        }
    }

    fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
