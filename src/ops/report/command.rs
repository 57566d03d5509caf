//! `clerkgate incident-report`: gathers, builds, renders, writes. Exit 0 with a report (an
//! empty window included: the report says so), 2 for a bad `--since`/`--until`, 1 when the
//! audit log cannot be read or the file cannot be written.

use std::path::PathBuf;
use std::process::ExitCode;

use super::gather::{gather, Sources};
use super::{build, markdown, Inputs};
use crate::config::Env;

/// The report's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Markdown, to paste into a post-mortem.
    Md,
    /// JSON, for tools.
    Json,
}

/// What the command was asked.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where to read.
    pub sources: Sources,
    /// `--since`, as given.
    pub since: Option<String>,
    /// `--until`, as given.
    pub until: Option<String>,
    /// `--format`.
    pub format: Format,
    /// `--out`.
    pub out: Option<PathBuf>,
}

/// Runs the command.
pub async fn run(opts: Options, env: &Env, now_ms: i64) -> ExitCode {
    let time = |key: &str, text: &Option<String>| {
        text.as_deref().map(|t| crate::admin::parse_time(key, t, now_ms)).transpose()
    };
    let (since_ms, until_ms) = match (time("--since", &opts.since), time("--until", &opts.until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("clerkgate incident-report: {e}");
            return ExitCode::from(2);
        }
    };
    if let (Some(s), Some(u)) = (since_ms, until_ms) {
        if u < s {
            eprintln!("clerkgate incident-report: --until is before --since: give the window's start first");
            return ExitCode::from(2);
        }
    }
    let gathered = match gather(&opts.sources, env).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("clerkgate incident-report: {e}");
            return ExitCode::from(1);
        }
    };
    let report = build(Inputs {
        audit: gathered.audit,
        source: gathered.source,
        counters: gathered.counters,
        since_ms,
        until_ms,
        now_ms,
        notes: gathered.notes,
    });
    let text = match opts.format {
        Format::Md => markdown::render(&report),
        Format::Json => serde_json::to_string_pretty(&report).unwrap_or_default() + "\n",
    };
    match &opts.out {
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Some(path) => match crate::fsutil::write_atomic(path, text.as_bytes()) {
            Ok(()) => {
                eprintln!(
                    "clerkgate incident-report: wrote {} ({} event(s), {} action item(s))",
                    path.display(),
                    report.events_in_window,
                    report.action_items.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "clerkgate incident-report: cannot write {}: {e} (is its directory there and writable?)",
                    path.display()
                );
                ExitCode::from(1)
            }
        },
    }
}
