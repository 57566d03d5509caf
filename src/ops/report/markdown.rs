//! The report as Markdown a person can paste into a post-mortem: the runbook's template
//! (date, duration, severity, category, root cause, impact, timeline, action items) with every
//! section the audit log can fill filled in, and the rest marked for a person to write.
//!
//! Text from the audit log (reasons, actors, unknown records) goes into table cells, where a
//! `|` or a line break would end the cell: both are escaped, never passed through.

use std::fmt::Write;

use super::{human_seconds, Entry, Report};

/// What a person still has to write.
const FOR_A_PERSON: &str = "_To be written by a person._";

/// Renders `r`.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let date = r.incident.start.as_deref().map_or("(no date)", |s| s.get(..10).unwrap_or(s));
    let _ = writeln!(out, "# Incident report: {date}\n");

    let i = &r.incident;
    let end = match (&i.end, i.ongoing) {
        (_, true) => "ongoing".to_string(),
        (Some(end), _) => end.clone(),
        (None, _) => "-".to_string(),
    };
    let duration = i.duration_seconds.map_or_else(|| "-".to_string(), human_seconds);
    let duration = if i.ongoing { format!("{duration} so far") } else { duration };
    let from =
        |e: &Option<Entry>| e.as_ref().map_or(String::new(), |e| format!(" (triage at {} by {})", e.time, e.actor));
    let rows = [
        ("Date", date.to_string()),
        ("Start", i.start.clone().unwrap_or_else(|| "-".into())),
        ("End", end),
        ("Duration", format!("{duration} ({})", i.basis)),
        ("Category", format!("{}{}", r.category, from(&r.classified_by))),
        ("Severity", format!("{}{}", r.severity, from(&r.classified_by))),
        (
            "Window",
            format!(
                "{} to {} ({})",
                r.window.since.as_deref().unwrap_or("the beginning of the log"),
                r.window.until,
                r.window.basis
            ),
        ),
        ("Source", format!("{}; {} event(s) in the window", r.source, r.events_in_window)),
        ("Generated", r.generated_at.clone()),
    ];
    out.push_str("| | |\n| --- | --- |\n");
    for (k, v) in rows {
        let _ = writeln!(out, "| {k} | {} |", cell(&v));
    }

    let _ = writeln!(out, "\n## Summary\n\n{FOR_A_PERSON}\n");
    let _ = writeln!(out, "## Root cause\n\n{FOR_A_PERSON} The sections below say what happened and when, not why.\n");

    out.push_str("## Impact\n\n");
    let q = &r.requests;
    match (q.bypass, q.grace) {
        (Some(bypass), Some(grace)) => {
            let _ = writeln!(out, "- Requests served in bypass (unverified): {bypass}");
            let _ = writeln!(out, "- Requests accepted in grace (expired tokens): {grace}");
        }
        _ => out.push_str("- Requests served in bypass and in grace: not available\n"),
    }
    let _ = writeln!(out, "  ({})", q.note);
    let v = &r.revocations;
    let _ = writeln!(
        out,
        "- Revoked at the gateway: {} session(s), {} user(s), {} issued-before cut-off(s); {} lifted{}",
        v.sessions,
        v.users,
        v.issued_before,
        v.lifted,
        totals(&v.other_totals, "; elsewhere: ")
    );
    let _ = writeln!(out, "- Users affected, what they saw: {FOR_A_PERSON}\n");

    out.push_str("## Timeline\n\n");
    if r.timeline.is_empty() {
        let _ = writeln!(
            out,
            "No audit events between {} and {}.\n",
            r.window.since.as_deref().unwrap_or("the beginning of the log"),
            r.window.until
        );
    } else {
        table(&mut out, &r.timeline);
    }

    out.push_str("## Mode changes\n\n");
    if r.mode_changes.is_empty() {
        out.push_str("None in the window.\n\n");
    } else {
        out.push_str("| Time | Who | Change | Why | For how long |\n| --- | --- | --- | --- | --- |\n");
        for m in &r.mode_changes {
            let until = m.expires_at.as_deref().map_or(String::new(), |at| format!(" (until {at} at most)"));
            let lasted = match (m.lasted_seconds, m.still_in_force) {
                (Some(s), true) => format!("{} so far, still in force", human_seconds(s)),
                (Some(s), false) => human_seconds(s),
                (None, _) => "-".into(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                m.entry.time,
                cell(&m.entry.actor),
                cell(&format!("{}: {} → {}{until}", m.entry.action, m.from, m.to)),
                cell(&m.entry.reason),
                lasted
            );
        }
        out.push('\n');
    }

    section(&mut out, "Keys and secrets", &r.keys, "");
    let reloads = format!("{} went through, {} refused.\n\n", r.reloads.ok, r.reloads.failed);
    section(&mut out, "Reloads", &r.reloads.events, &reloads);
    let revocations = format!(
        "{} session(s), {} user(s), {} issued-before cut-off(s) revoked at the gateway; {} lifted{}.\n\n",
        v.sessions,
        v.users,
        v.issued_before,
        v.lifted,
        totals(&v.other_totals, "; other records: ")
    );
    section(&mut out, "Revocations", &v.events, &revocations);
    section(&mut out, "Triage", &r.triage, "");
    let webhooks = if r.webhook_totals.is_empty() {
        String::new()
    } else {
        format!("Totals: {}.\n\n", totals(&r.webhook_totals, "").trim_start_matches("; "))
    };
    section(&mut out, "Webhooks: gaps and replays", &r.webhooks, &webhooks);
    if !r.other.is_empty() {
        section(&mut out, "Other events", &r.other, "");
    }

    out.push_str("## Action items\n\n");
    for item in &r.action_items {
        let _ = writeln!(out, "- [ ] {item}");
    }
    let _ = writeln!(out, "- [ ] {FOR_A_PERSON}\n");

    out.push_str("## Notes on the data\n\n");
    for n in &r.notes {
        let _ = writeln!(out, "- {n}");
    }
    out
}

/// A `## title` section: `lead`, then the entries' table, or "None in the window.".
fn section(out: &mut String, title: &str, entries: &[Entry], lead: &str) {
    let _ = write!(out, "## {title}\n\n{lead}");
    if entries.is_empty() {
        out.push_str("None in the window.\n\n");
    } else {
        table(out, entries);
    }
}

fn table(out: &mut String, entries: &[Entry]) {
    out.push_str("| Time | Who | What | Why |\n| --- | --- | --- | --- |\n");
    for e in entries {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            e.time,
            cell(&e.actor),
            cell(&format!("{}: {}", e.action, e.what)),
            cell(&e.reason)
        );
    }
    out.push('\n');
}

/// `prefix` and `name N, …`, or nothing for no totals.
fn totals(t: &std::collections::BTreeMap<String, i64>, prefix: &str) -> String {
    if t.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = t.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("{prefix}{}", parts.join(", "))
}

/// Text safe inside a Markdown table cell: `|` escaped, line breaks as spaces, `-` for nothing.
fn cell(text: &str) -> String {
    if text.trim().is_empty() {
        return "-".into();
    }
    text.replace('\\', "\\\\").replace('|', "\\|").replace(['\r', '\n'], " ")
}
