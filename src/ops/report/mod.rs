//! `clerkgate incident-report`: the runbook's post-incident template (date, duration, severity,
//! category, timeline, root cause, impact, action items) filled in from the audit log, the
//! triage records in it, and the gateway's request counters.
//!
//! [`build`] is pure: audit records and counters in, a [`Report`] out; [`markdown`] renders it
//! for a person to paste into a post-mortem, and the same value serialised is the JSON for
//! tools. [`gather`] fetches the inputs (the admin API, or `audit.jsonl` when no gateway runs).
//!
//! Records are matched by the name of their action, never by a closed list: an action this
//! build does not know is shown among "other events", and any action named `triage*`,
//! `webhook*`, `revocation*`/`revoke*`, `keys.*` (or naming a secret) lands in its section, so
//! records added by later versions are reported without a change here.
//!
//! Without `--since`/`--until`, the incident is the last degraded period in the log: from the
//! first change away from enforce to the return to enforce (degraded periods less than
//! [`MERGE_GAP_MS`] apart count as one), and the window around it reaches [`LEAD_MS`] either side,
//! for the triage run before the switch and the revocations after it. With a window given, the
//! incident is the degraded time inside it, or the window itself when there is none.

pub mod command;
pub mod gather;
pub mod markdown;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::admin::api::Counters;
use crate::admin::client::summary;
pub use crate::clock::rfc3339;
use crate::store::{AuditLines, AuditRecord};

/// Degraded periods closer than this are one incident (a bypass switched off and on again).
pub const MERGE_GAP_MS: i64 = 30 * 60_000;
/// How far the default window reaches before the incident's start and after its end.
pub const LEAD_MS: i64 = 30 * 60_000;
/// Without any degraded period and without a window, the report covers this much of the past.
pub const DEFAULT_LOOKBACK_MS: i64 = 24 * 3_600_000;
/// A bypass longer than this in total is an action item of its own.
pub const LONG_BYPASS_MS: i64 = 15 * 60_000;

/// What a report is made from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The whole audit log as read back (the default window is found in it).
    pub audit: AuditLines,
    /// Where the audit came from, in words (`GET /audit at http://…`, a file's path).
    pub source: String,
    /// The gateway's request counters, or why there are none.
    pub counters: Result<Counters, String>,
    /// `--since`, ms.
    pub since_ms: Option<i64>,
    /// `--until`, ms.
    pub until_ms: Option<i64>,
    /// Now, ms.
    pub now_ms: i64,
    /// Notes from gathering (e.g. the gateway did not answer, so the file was read).
    pub notes: Vec<String>,
}

/// The report, as JSON for tools; [`markdown::render`] writes it for people.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When the report was made.
    pub generated_at: String,
    /// Where the audit log was read.
    pub source: String,
    /// The events reported.
    pub window: Window,
    /// Start, end and duration.
    pub incident: Incident,
    /// From the worst triage record in the window, else "not recorded".
    pub category: String,
    /// From the same record, else "not recorded".
    pub severity: String,
    /// The triage record the category and severity come from.
    pub classified_by: Option<Entry>,
    /// Always `null`: the cause is for a person to write.
    pub root_cause: Option<String>,
    /// How many events the window holds.
    pub events_in_window: usize,
    /// Every mode change: who, why, for how long.
    pub mode_changes: Vec<ModeChange>,
    /// Key-set changes and anything about secrets (a refused new secret key included).
    pub keys: Vec<Entry>,
    /// Config reloads, good and bad.
    pub reloads: Reloads,
    /// Revocations and their totals.
    pub revocations: Revocations,
    /// Triage records (`triage*`).
    pub triage: Vec<Entry>,
    /// Webhook records (`webhook*`): gaps, replays.
    pub webhooks: Vec<Entry>,
    /// Webhook records' counts, summed by field.
    pub webhook_totals: BTreeMap<String, i64>,
    /// Events of no section above (an action this build does not know, a discarded state file).
    pub other: Vec<Entry>,
    /// Requests served in bypass and in grace.
    pub requests: Requests,
    /// Every event in the window, oldest first.
    pub timeline: Vec<Entry>,
    /// What the data suggests doing.
    pub action_items: Vec<String>,
    /// What the reader should know about the data: skipped lines, where counts came from.
    pub notes: Vec<String>,
}

/// The events reported: `since ≤ time ≤ until`.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// The start (`null`: the beginning of the log).
    pub since: Option<String>,
    /// The end.
    pub until: String,
    /// How the window was chosen.
    pub basis: String,
}

/// When the incident started and ended.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    /// The first change away from enforce (or the window's start).
    pub start: Option<String>,
    /// The return to enforce (or the window's end); `null` while still degraded.
    pub end: Option<String>,
    /// Still degraded when the report was made.
    pub ongoing: bool,
    /// From start to end (or to now, while ongoing).
    pub duration_seconds: Option<i64>,
    /// What start and end stand for.
    pub basis: String,
}

/// One audit event as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// RFC 3339, seconds.
    pub time: String,
    /// Milliseconds since the epoch.
    pub time_ms: i64,
    /// Who.
    pub actor: String,
    /// The action as written.
    pub action: String,
    /// Before → after, in a few words.
    pub what: String,
    /// Why, as given.
    pub reason: String,
    /// As recorded.
    pub before: Value,
    /// As recorded.
    pub after: Value,
}

/// One mode change.
#[derive(Debug, Clone, Serialize)]
pub struct ModeChange {
    /// The event.
    #[serde(flatten)]
    pub entry: Entry,
    /// The mode before.
    pub from: String,
    /// The mode after.
    pub to: String,
    /// When the new setting was due to end.
    pub expires_at: Option<String>,
    /// How long the new mode held: to the next mode change, its expiry, or now.
    pub lasted_seconds: Option<i64>,
    /// Still in force when the report was made.
    pub still_in_force: bool,
}

/// Reloads, good and bad.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reloads {
    /// Went through.
    pub ok: usize,
    /// Refused; the running config stayed.
    pub failed: usize,
    /// Each one.
    pub events: Vec<Entry>,
}

/// Revocations and their totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Revocations {
    /// Sessions revoked at the gateway.
    pub sessions: usize,
    /// Users revoked at the gateway.
    pub users: usize,
    /// `issued_before` cut-offs set.
    pub issued_before: usize,
    /// Revocations lifted.
    pub lifted: usize,
    /// Counts carried by other revocation records (a remote revocation's summary), by field.
    pub other_totals: BTreeMap<String, i64>,
    /// Each one.
    pub events: Vec<Entry>,
}

/// Requests served in bypass and in grace, as the gateway counted them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Requests {
    /// Counters were read.
    pub available: bool,
    /// Forwarded because of bypass.
    pub bypass: Option<u64>,
    /// Accepted because of grace.
    pub grace: Option<u64>,
    /// Refused, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Since when the gateway counts (its start).
    pub counted_since: Option<String>,
    /// What the counts cover, or why there are none.
    pub note: String,
}

/// Builds the report.
pub fn build(inputs: Inputs) -> Report {
    let now = inputs.now_ms;
    let mut records: Vec<&AuditRecord> = inputs.audit.records.iter().collect();
    records.sort_by_key(|r| r.time_ms);
    let spans = degraded_spans(&records, now);
    let given = inputs.since_ms.is_some() || inputs.until_ms.is_some();
    let last = merged(&spans).last().copied();

    let (since, until, window_basis) = match (given, last) {
        (true, _) => {
            let basis = match (inputs.since_ms, inputs.until_ms) {
                (Some(_), Some(_)) => "--since and --until",
                (Some(_), None) => "--since, until now",
                _ => "--until, from the beginning of the log",
            };
            (inputs.since_ms, inputs.until_ms.unwrap_or(now), basis.to_string())
        }
        (false, Some(s)) => (
            Some(s.start - LEAD_MS),
            s.end.map_or(now, |e| (e + LEAD_MS).min(now)),
            format!(
                "the last degraded period, with {} before and after it; give --since/--until for another",
                human_ms(LEAD_MS)
            ),
        ),
        (false, None) => (
            Some(now - DEFAULT_LOOKBACK_MS),
            now,
            format!(
                "no change away from enforce in the audit log: the last {}; give --since/--until for another window",
                human_ms(DEFAULT_LOOKBACK_MS)
            ),
        ),
    };
    let in_window = |t: i64| since.is_none_or(|s| t >= s) && t <= until;
    let window: Vec<&AuditRecord> = records.iter().copied().filter(|r| in_window(r.time_ms)).collect();

    let overlapping: Vec<Span> = spans
        .iter()
        .copied()
        .filter(|s| s.start <= until && s.end.is_none_or(|e| e >= since.unwrap_or(i64::MIN)))
        .collect();
    let incident = match (overlapping.first(), overlapping.last()) {
        (Some(first), Some(last)) => Incident {
            start: Some(rfc3339(first.start)),
            end: last.end.map(rfc3339),
            ongoing: last.end.is_none(),
            duration_seconds: Some((last.end.unwrap_or(now) - first.start) / 1000),
            basis: "from the first change away from enforce to the return to enforce".into(),
        },
        _ => {
            let start = since.or_else(|| window.first().map(|r| r.time_ms));
            Incident {
                start: start.map(rfc3339),
                end: Some(rfc3339(until)),
                ongoing: false,
                duration_seconds: start.map(|s| (until - s) / 1000),
                basis: "no change away from enforce in the window: the window itself".into(),
            }
        }
    };

    let named = |prefixes: &[&str]| -> Vec<Entry> {
        window.iter().filter(|r| prefixes.iter().any(|p| r.action.starts_with(p))).map(|r| entry(r)).collect()
    };
    let triage = named(&["triage"]);
    let webhooks = named(&["webhook"]);
    let (category, severity, classified_by) = classify(&triage);

    let mut keys: Vec<Entry> =
        window.iter().filter(|r| is_key_record(r) || refused_secret_key(r)).map(|r| entry(r)).collect();
    keys.sort_by_key(|e| e.time_ms);

    let reload_events = named(&["config.reload"]);
    let failed = reload_events.iter().filter(|e| e.action == "config.reload_failed").count();
    let reloads = Reloads { ok: reload_events.len() - failed, failed, events: reload_events };

    let revocations = revocations(named(&["revocation", "revoke"]));
    let mode_changes = mode_changes(&records, &window, now);
    // Bypass and grace requests can only have been served from the incident's start on.
    let counted_from = overlapping.first().map(|s| s.start).or(since);
    let requests = requests(&inputs.counters, counted_from, until);

    let sectioned = |r: &AuditRecord| {
        ["mode.", "triage", "webhook", "config.reload", "revocation", "revoke"].iter().any(|p| r.action.starts_with(p))
            || is_key_record(r)
    };
    let other: Vec<Entry> = window.iter().filter(|r| !sectioned(r)).map(|r| entry(r)).collect();
    let timeline: Vec<Entry> = window.iter().map(|r| entry(r)).collect();

    let mut notes = inputs.notes;
    if timeline.is_empty() {
        let from = since.map_or_else(|| "the beginning of the log".to_string(), rfc3339);
        notes.push(format!("No audit events between {from} and {}.", rfc3339(until)));
    }
    for s in &inputs.audit.skipped {
        notes.push(format!("audit.jsonl line {} skipped: {}", s.line, s.why));
    }
    notes.push(requests.note.clone());

    let mut report = Report {
        generated_at: rfc3339(now),
        source: inputs.source,
        window: Window { since: since.map(rfc3339), until: rfc3339(until), basis: window_basis },
        incident,
        category,
        severity,
        classified_by,
        root_cause: None,
        events_in_window: timeline.len(),
        webhook_totals: totals(&webhooks),
        mode_changes,
        keys,
        reloads,
        revocations,
        triage,
        webhooks,
        other,
        requests,
        timeline,
        action_items: Vec::new(),
        notes,
    };
    let bypass_ms = overlapping.iter().map(|s| s.bypass_ms).sum();
    report.action_items = action_items(&report, bypass_ms, inputs.audit.skipped.len());
    report
}

/// A duration in whole seconds as the report prints it (`2m 19s`).
pub fn human_seconds(seconds: i64) -> String {
    if seconds <= 0 {
        return "0s".into();
    }
    crate::state::human(Duration::from_secs(seconds.unsigned_abs()))
}

fn human_ms(ms: i64) -> String {
    human_seconds(ms / 1000)
}

fn entry(r: &AuditRecord) -> Entry {
    Entry {
        time: rfc3339(r.time_ms),
        time_ms: r.time_ms,
        actor: r.actor.clone(),
        action: r.action.clone(),
        what: format!("{} → {}", summary(&r.before), summary(&r.after)),
        reason: r.reason.clone(),
        before: r.before.clone(),
        after: r.after.clone(),
    }
}

/// A mode record's mode on one side, when it names one.
fn mode_of(side: &Value) -> Option<&str> {
    side.get("mode").and_then(Value::as_str)
}

fn is_mode_record(r: &AuditRecord) -> bool {
    r.action.starts_with("mode.")
}

fn is_key_record(r: &AuditRecord) -> bool {
    r.action.starts_with("keys.") || r.action.contains("secret")
}

/// A refused reload that names a secret key among its problems (a new key Clerk refused).
fn refused_secret_key(r: &AuditRecord) -> bool {
    r.action == "config.reload_failed"
        && r.after.get("problems").and_then(Value::as_array).is_some_and(|ps| {
            ps.iter().any(|p| p.get("key").and_then(Value::as_str).is_some_and(|k| k.contains("secret_key")))
        })
}

/// A stretch of time away from enforce: from the change that left it to the return (or the
/// setting's expiry when no return was audited; `None` while it lasts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: i64,
    end: Option<i64>,
    /// Of which in bypass, ms.
    bypass_ms: i64,
}

/// Every degraded stretch of the log, from its mode records in time order.
fn degraded_spans(records: &[&AuditRecord], now: i64) -> Vec<Span> {
    let mut spans = Vec::new();
    let mut open: Option<Span> = None;
    // The degraded setting in force: bypass or not, since when, until when it was due to end.
    let mut setting: Option<(bool, i64, Option<i64>)> = None;
    for r in records.iter().filter(|r| is_mode_record(r)) {
        // The setting in force ends here, or at its expiry if that came first (a gateway that
        // was stopped at the time audits the expiry only when it starts again).
        let mut ended_at = r.time_ms;
        if let (Some(span), Some((bypass, since, due))) = (open.as_mut(), setting.take()) {
            ended_at = due.map_or(r.time_ms, |d| d.min(r.time_ms));
            if bypass {
                span.bypass_ms += (ended_at - since).max(0);
            }
        }
        let to = mode_of(&r.after);
        let degraded = |m: Option<&str>| m.is_some_and(|m| m != "enforce");
        if open.is_none() && (degraded(to) || degraded(mode_of(&r.before))) {
            open = Some(Span { start: r.time_ms, end: None, bypass_ms: 0 });
        }
        match to {
            Some("enforce") => {
                if let Some(mut span) = open.take() {
                    span.end = Some(ended_at.max(span.start));
                    spans.push(span);
                }
            }
            Some(mode) => {
                setting = Some((mode == "bypass", r.time_ms, r.after.get("expires_at_ms").and_then(Value::as_i64)))
            }
            None => {}
        }
    }
    if let Some(mut span) = open {
        let due = setting.and_then(|(_, _, d)| d).filter(|d| *d <= now);
        if let Some((true, since, _)) = setting {
            span.bypass_ms += (due.unwrap_or(now) - since).max(0);
        }
        span.end = due;
        spans.push(span);
    }
    spans
}

/// Spans less than [`MERGE_GAP_MS`] apart, joined.
fn merged(spans: &[Span]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for s in spans {
        match out.last_mut() {
            Some(last) if last.end.is_some_and(|e| s.start - e < MERGE_GAP_MS) => {
                last.end = s.end;
                last.bypass_ms += s.bypass_ms;
            }
            _ => out.push(*s),
        }
    }
    out
}

fn mode_changes(all: &[&AuditRecord], window: &[&AuditRecord], now: i64) -> Vec<ModeChange> {
    window
        .iter()
        .filter(|r| is_mode_record(r))
        .map(|r| {
            let to = mode_of(&r.after).unwrap_or("?").to_string();
            let expires = r.after.get("expires_at_ms").and_then(Value::as_i64);
            let next = all.iter().find(|n| is_mode_record(n) && n.time_ms > r.time_ms).map(|n| n.time_ms);
            let ends = [next, expires, Some(now)].into_iter().flatten().min().unwrap_or(now);
            let degraded = to != "enforce";
            ModeChange {
                entry: entry(r),
                from: mode_of(&r.before).unwrap_or("?").to_string(),
                to,
                expires_at: expires.map(rfc3339),
                lasted_seconds: degraded.then(|| (ends - r.time_ms) / 1000),
                still_in_force: degraded && next.is_none() && expires.is_none_or(|e| e > now),
            }
        })
        .collect()
}

/// Category and severity from the worst triage record (lowest SEVn; the earliest among equals).
fn classify(triage: &[Entry]) -> (String, String, Option<Entry>) {
    let rank = |e: &Entry| {
        let sev = find_text(&e.after, "severity").or_else(|| find_text(&e.before, "severity"))?;
        let n = sev.strip_prefix("SEV").and_then(|n| n.parse::<u32>().ok()).unwrap_or(u32::MAX);
        Some((n, sev))
    };
    let worst = triage.iter().filter_map(|e| rank(e).map(|r| (r, e))).min_by_key(|((n, _), e)| (*n, e.time_ms));
    let not = || "not recorded".to_string();
    match worst {
        Some(((_, sev), e)) => {
            let category = find_text(&e.after, "category").unwrap_or_else(not);
            (category, sev, Some(e.clone()))
        }
        None => match triage.iter().find_map(|e| find_text(&e.after, "category").map(|c| (c, e))) {
            Some((category, e)) => (category, not(), Some(e.clone())),
            None => (not(), not(), None),
        },
    }
}

/// The first string field named `name` in `v`, looked for a few levels down.
fn find_text(v: &Value, name: &str) -> Option<String> {
    fn walk(v: &Value, name: &str, depth: u8) -> Option<String> {
        let obj = v.as_object()?;
        if let Some(s) = obj.get(name).and_then(Value::as_str) {
            return Some(s.to_string());
        }
        if depth == 0 {
            return None;
        }
        obj.values().find_map(|c| walk(c, name, depth - 1))
    }
    walk(v, name, 3)
}

/// Every whole-number field at the top of each record's `after`, summed by name.
fn totals(entries: &[Entry]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for e in entries {
        for (k, v) in e.after.as_object().into_iter().flatten() {
            if let Some(n) = v.as_i64().filter(|_| !k.ends_with("_ms")) {
                *out.entry(k.clone()).or_insert(0) += n;
            }
        }
    }
    out
}

fn revocations(events: Vec<Entry>) -> Revocations {
    let mut out = Revocations::default();
    let mut other = Vec::new();
    for e in &events {
        match e.action.as_str() {
            "revocation.add" if e.after.get("session_id").is_some() => out.sessions += 1,
            "revocation.add" if e.after.get("user_id").is_some() => out.users += 1,
            "revocation.add" if e.after.get("issued_before").is_some() => out.issued_before += 1,
            "revocation.remove" => out.lifted += 1,
            _ => other.push(e.clone()),
        }
    }
    out.other_totals = totals(&other);
    out.events = events;
    out
}

/// The counters, and what they cover of `from..=until`.
fn requests(counters: &Result<Counters, String>, from: Option<i64>, until: i64) -> Requests {
    let c = match counters {
        Ok(c) => c,
        Err(why) => {
            return Requests {
                note: format!("Requests served in bypass and grace: not available ({why})."),
                ..Requests::default()
            }
        }
    };
    let started = c.since.as_deref().and_then(|s| humantime::parse_rfc3339_weak(s).ok()).map(crate::clock::system_ms);
    let cover = match started {
        None => "since the gateway started (it does not say when)".to_string(),
        Some(at) if from.is_some_and(|s| at > s) => format!(
            "since the gateway started at {}, after the incident began: requests before that were not counted",
            rfc3339(at)
        ),
        Some(at) if at <= until => format!(
            "since the gateway started at {}: the counts also hold any bypass or grace before the incident",
            rfc3339(at)
        ),
        Some(at) => format!("since the gateway started at {}, after the incident", rfc3339(at)),
    };
    Requests {
        available: true,
        bypass: Some(c.bypass),
        grace: Some(c.grace),
        rejected: c.rejected.clone(),
        counted_since: c.since.clone(),
        note: format!("Request counts are the gateway's own, per process, not per window: {cover}."),
    }
}

/// What the data suggests doing; `bypass_ms` is the time spent in bypass during the incident,
/// `skipped` the audit lines that could not be read.
fn action_items(r: &Report, bypass_ms: i64, skipped: usize) -> Vec<String> {
    let mut items = Vec::new();
    let served = r.requests.bypass.map_or_else(String::new, |n| format!(" ({n} counted by the gateway)"));
    if bypass_ms > LONG_BYPASS_MS {
        items.push(format!(
            "Bypass was in force for {} in all, longer than {}: every request passed unverified. Find out why grace could not carry the outage, and review what the upstream served with X-Auth-Bypass: true{served}.",
            human_ms(bypass_ms),
            human_ms(LONG_BYPASS_MS)
        ));
    } else if bypass_ms > 0 {
        items.push(format!(
            "Bypass was in force for {}: review what the upstream served with X-Auth-Bypass: true{served}.",
            human_ms(bypass_ms)
        ));
    }
    for m in &r.mode_changes {
        if m.entry.action == "mode.expired" && m.from != "enforce" {
            items.push(format!(
                "The {} in force until {} ran out at its TTL ({}) instead of being ended by a person: check that the return to {} then was wanted, and whether the TTL fitted the incident.",
                m.from, m.entry.time, m.entry.reason, m.to
            ));
        }
    }
    if let Some(m) = r.mode_changes.iter().rev().find(|m| m.still_in_force) {
        items.push(format!(
            "The gateway is still in {} (set at {} by {}): run `clerkgate mode enforce` once the incident is over.",
            m.to, m.entry.time, m.entry.actor
        ));
    }
    for e in r.reloads.events.iter().filter(|e| e.action == "config.reload_failed") {
        let keys = problem_keys(&e.after);
        let fixed = r.reloads.events.iter().any(|l| l.action == "config.reload" && l.time_ms > e.time_ms);
        let next = if fixed {
            "a later reload went through: check that it put in force what was meant"
        } else {
            "no reload went through after it: if the files on disk still hold the refused change, fix them and run `clerkgate reload`"
        };
        items.push(format!("A reload at {} ({}) was refused ({keys}); {next}.", e.time, e.actor));
    }
    for e in r.keys.iter().filter(|e| e.action == "config.reload_failed") {
        items.push(format!(
            "A new secret key was refused or could not be checked at {}: the old key stayed in use. Check the key in Clerk's dashboard before deleting the old one.",
            e.time
        ));
    }
    for e in r.keys.iter().filter(|e| e.action == "keys.changed") {
        items.push(format!(
            "The signing keys changed at {} ({}): confirm it was a planned rotation, or treat it as a key compromise.",
            e.time, e.what
        ));
    }
    let rejected = |reason: &str| r.requests.rejected.get(reason).copied().unwrap_or(0);
    if rejected("token-invalid-authorized-parties") > 0 {
        items.push(format!(
            "{} request(s) were refused as token-invalid-authorized-parties: check that clerk.authorized_parties lists every origin the app is served from.",
            rejected("token-invalid-authorized-parties")
        ));
    }
    if rejected("jwk-kid-mismatch") > 0 {
        items.push(format!(
            "{} request(s) named a signing key the gateway did not have (jwk-kid-mismatch): check for a key rotation, or tokens from another instance.",
            rejected("jwk-kid-mismatch")
        ));
    }
    let local = r.revocations.sessions + r.revocations.users;
    if local > 0 && r.revocations.other_totals.is_empty() {
        items.push(format!(
            "{local} session(s) or user(s) were revoked at the gateway only: they stay valid at Clerk. Revoke them there too (`clerkgate revoke --remote`) if they must not sign in again."
        ));
    }
    let gap = r.webhooks.iter().any(|e| e.action.contains("gap") || e.action.contains("fail"));
    let replayed = r.webhooks.iter().any(|e| e.action.contains("replay"));
    if gap && !replayed {
        items.push("Webhook gaps or failures were recorded and nothing was replayed: run `clerkgate webhooks replay --since <the gap's start>`.".into());
    }
    if r.triage.is_empty() {
        items.push("No triage record in the window: run `clerkgate triage` at the start of the next incident, so the report can quote its category and severity.".into());
    }
    if skipped > 0 {
        items.push(format!(
            "{skipped} line(s) of the audit log could not be read (see the notes): check the state volume for a crash or a full disk."
        ));
    }
    items
}

/// The keys a refused reload's problems name.
fn problem_keys(after: &Value) -> String {
    let keys: Vec<&str> = after
        .get("problems")
        .and_then(Value::as_array)
        .map(|ps| ps.iter().filter_map(|p| p.get("key").and_then(Value::as_str)).collect())
        .unwrap_or_default();
    if keys.is_empty() {
        "no problem recorded".into()
    } else {
        keys.join(", ")
    }
}

#[cfg(test)]
mod tests;
