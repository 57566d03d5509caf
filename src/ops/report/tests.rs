//! The report from hand-made audit records: the default window, spans, totals, sections and
//! action items, and Markdown that a reason cannot break.

use serde_json::{json, Value};

use super::*;
use crate::store::SkippedLine;

const MIN: i64 = 60_000;
/// 2026-03-04T10:00:00Z.
const T0: i64 = 1_772_618_400_000;

fn rec(at_min: i64, actor: &str, action: &str, before: Value, after: Value, reason: &str) -> AuditRecord {
    let at = T0 + at_min * MIN;
    AuditRecord {
        time: rfc3339(at),
        time_ms: at,
        actor: actor.into(),
        action: action.into(),
        before,
        after,
        reason: reason.into(),
    }
}

fn mode(m: &str, expires_min: Option<i64>) -> Value {
    json!({"mode": m, "source": "admin", "expires_at_ms": expires_min.map(|e| T0 + e * MIN)})
}

fn inputs(records: Vec<AuditRecord>, now_min: i64) -> Inputs {
    Inputs {
        audit: AuditLines { records, skipped: vec![] },
        source: "test".into(),
        counters: Err("no gateway".into()),
        since_ms: None,
        until_ms: None,
        now_ms: T0 + now_min * MIN,
        notes: vec![],
    }
}

/// A day-old bypass, then today's incident: triage, grace, bypass with a TTL, a revocation, a
/// bad reload, a good reload, back to enforce.
fn incident() -> Vec<AuditRecord> {
    vec![
        rec(-1440, "admin:old", "mode.set", mode("enforce", None), mode("bypass", Some(-1430)), "drill"),
        rec(-1430, "timer", "mode.expired", mode("bypass", Some(-1430)), mode("enforce", None), "drill"),
        rec(-5, "cli", "triage.run", Value::Null, json!({"category": "clerk-outage", "severity": "SEV3"}), ""),
        rec(
            -2,
            "cli",
            "triage.run",
            Value::Null,
            json!({"result": {"category": "clerk-outage", "severity": "SEV1"}}),
            "",
        ),
        rec(0, "admin:a", "mode.set", mode("enforce", None), mode("grace", Some(60)), "INC-1 | clerk down"),
        rec(10, "admin:a", "mode.set", mode("grace", Some(60)), mode("bypass", Some(40)), "grace not enough\nsee chat"),
        rec(12, "admin:b", "revocation.add", Value::Null, json!({"user_id": "user_1"}), "takeover"),
        rec(13, "admin:b", "revocation.add", Value::Null, json!({"session_id": "sess_1"}), ""),
        rec(
            14,
            "admin:b",
            "revoke.remote",
            Value::Null,
            json!({"sessions_revoked": 7, "already_gone": 1, "started_ms": 5}),
            "",
        ),
        rec(
            15,
            "signal",
            "config.reload_failed",
            json!({"hash": "aa"}),
            json!({"problems": [{"key": "clerk.secret_key_file", "message": "refused"}]}),
            "",
        ),
        rec(16, "admin:a", "config.reload", json!({"hash": "aa"}), json!({"hash": "bb"}), ""),
        rec(17, "keys", "keys.changed", json!(["ins_1"]), json!(["ins_1", "ins_2"]), ""),
        rec(18, "gateway", "webhook.gap", Value::Null, json!({"missed": 3}), ""),
        rec(20, "gateway", "fleet.joined", Value::Null, Value::Null, ""),
        rec(30, "admin:a", "mode.cleared", mode("bypass", Some(40)), mode("enforce", None), ""),
    ]
}

#[test]
fn without_a_window_the_last_degraded_period_is_the_incident() {
    let r = build(inputs(incident(), 120));
    assert_eq!(r.incident.start.as_deref(), Some("2026-03-04T10:00:00Z"), "the first change away from enforce");
    assert_eq!(r.incident.end.as_deref(), Some("2026-03-04T10:30:00Z"), "the return to enforce");
    assert_eq!(r.incident.duration_seconds, Some(30 * 60));
    assert!(!r.incident.ongoing);
    assert_eq!(r.window.since.as_deref(), Some("2026-03-04T09:30:00Z"), "{LEAD_MS} ms before");
    assert_eq!(r.window.until, "2026-03-04T11:00:00Z", "{LEAD_MS} ms after");
    assert_eq!(r.events_in_window, 13, "yesterday's drill is not in the window");
    assert_eq!((r.category.as_str(), r.severity.as_str()), ("clerk-outage", "SEV1"), "the worst triage record");
    assert_eq!(r.classified_by.as_ref().map(|e| e.time.as_str()), Some("2026-03-04T09:58:00Z"));
    assert_eq!(r.root_cause, None);

    let changes: Vec<(&str, &str, Option<i64>)> =
        r.mode_changes.iter().map(|m| (m.from.as_str(), m.to.as_str(), m.lasted_seconds)).collect();
    assert_eq!(
        changes,
        [("enforce", "grace", Some(600)), ("grace", "bypass", Some(1200)), ("bypass", "enforce", None)]
    );

    assert_eq!((r.reloads.ok, r.reloads.failed), (1, 1));
    let keys: Vec<&str> = r.keys.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(keys, ["config.reload_failed", "keys.changed"], "a refused new secret key is a key change too");
    let v = &r.revocations;
    assert_eq!((v.sessions, v.users, v.issued_before, v.lifted), (1, 1, 0, 0));
    assert_eq!(v.other_totals, [("already_gone".to_string(), 1), ("sessions_revoked".to_string(), 7)].into());
    assert_eq!(r.triage.len(), 2);
    assert_eq!(r.webhook_totals, [("missed".to_string(), 3)].into());
    let other: Vec<&str> = r.other.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(other, ["fleet.joined"], "an action this build does not know is still reported");

    let items = r.action_items.join("\n");
    for expected in [
        "Bypass was in force for 20m in all, longer than 15m",
        "A reload at 2026-03-04T10:15:00Z (signal) was refused (clerk.secret_key_file); a later reload went through",
        "A new secret key was refused",
        "The signing keys changed at 2026-03-04T10:17:00Z",
        "Webhook gaps or failures were recorded and nothing was replayed",
    ] {
        assert!(items.contains(expected), "missing {expected:?} in:\n{items}");
    }
    assert!(!items.contains("revoked at the gateway only"), "a remote revocation was recorded:\n{items}");
    assert!(!items.contains("No triage record"), "{items}");
    assert!(r.notes.iter().any(|n| n.contains("not available (no gateway)")), "{:?}", r.notes);
}

#[test]
fn a_bypass_that_ran_out_unaudited_ends_at_its_expiry_and_one_still_in_force_is_ongoing() {
    // The gateway was stopped when the bypass expired: no record of the end, yet it ended.
    let ran_out = vec![rec(0, "admin:a", "mode.set", mode("enforce", None), mode("bypass", Some(20)), "r")];
    let r = build(inputs(ran_out.clone(), 60));
    assert_eq!(r.incident.end.as_deref(), Some("2026-03-04T10:20:00Z"));
    assert!(!r.incident.ongoing);
    assert_eq!(r.mode_changes[0].lasted_seconds, Some(20 * 60));
    assert!(!r.mode_changes[0].still_in_force);

    let r = build(inputs(ran_out, 10));
    assert!(r.incident.ongoing);
    assert_eq!(r.incident.end, None);
    assert_eq!(r.incident.duration_seconds, Some(600));
    assert!(r.mode_changes[0].still_in_force);
    assert!(r.action_items.iter().any(|i| i.contains("still in bypass")), "{:?}", r.action_items);
    assert!(markdown::render(&r).contains("| End | ongoing |"));
}

#[test]
fn an_expiry_is_an_action_item_and_periods_close_together_are_one_incident() {
    let records = vec![
        rec(0, "admin:a", "mode.set", mode("enforce", None), mode("bypass", Some(10)), "first"),
        rec(10, "timer", "mode.expired", mode("bypass", Some(10)), mode("enforce", None), "first"),
        rec(20, "admin:a", "mode.set", mode("enforce", None), mode("grace", Some(80)), "second"),
        rec(30, "admin:a", "mode.cleared", mode("grace", Some(80)), mode("enforce", None), ""),
    ];
    let r = build(inputs(records, 100));
    assert_eq!(r.incident.start.as_deref(), Some("2026-03-04T10:00:00Z"), "10 minutes apart: one incident");
    assert_eq!(r.incident.duration_seconds, Some(30 * 60));
    let items = r.action_items.join("\n");
    assert!(items.contains("ran out at its TTL (first)"), "{items}");
    assert!(items.contains("Bypass was in force for 10m: review"), "{items}");
}

#[test]
fn a_window_given_is_reported_as_given_and_an_empty_one_says_so() {
    let mut i = inputs(incident(), 120);
    i.since_ms = Some(T0 + 100 * MIN);
    i.until_ms = Some(T0 + 110 * MIN);
    let r = build(i);
    assert_eq!(r.events_in_window, 0);
    assert!(r.timeline.is_empty() && r.mode_changes.is_empty());
    assert_eq!(r.incident.start.as_deref(), Some("2026-03-04T11:40:00Z"), "the window itself");
    assert_eq!(r.incident.duration_seconds, Some(600));
    assert_eq!((r.category.as_str(), r.severity.as_str()), ("not recorded", "not recorded"));
    let text = markdown::render(&r);
    assert!(text.contains("No audit events between 2026-03-04T11:40:00Z and 2026-03-04T11:50:00Z."), "{text}");

    // A window that holds part of the incident reports the whole degraded period's times.
    let mut i = inputs(incident(), 120);
    i.since_ms = Some(T0 + 11 * MIN);
    let r = build(i);
    assert_eq!(r.incident.start.as_deref(), Some("2026-03-04T10:00:00Z"));
    assert_eq!(r.window.basis, "--since, until now");
}

#[test]
fn no_degraded_period_reports_the_last_day_and_asks_for_triage() {
    let records = vec![rec(-60, "admin:a", "revocation.add", Value::Null, json!({"issued_before": "x"}), "leak")];
    let mut i = inputs(records, 0);
    i.audit.skipped.push(SkippedLine { line: 9, why: "not JSON: x".into() });
    let r = build(i);
    assert!(r.window.basis.starts_with("no change away from enforce"), "{}", r.window.basis);
    assert_eq!(r.revocations.issued_before, 1);
    assert!(r.notes.contains(&"audit.jsonl line 9 skipped: not JSON: x".to_string()), "{:?}", r.notes);
    let items = r.action_items.join("\n");
    assert!(items.contains("No triage record") && items.contains("1 line(s) of the audit log"), "{items}");
}

#[test]
fn counters_say_what_they_cover() {
    let mut i = inputs(incident(), 120);
    i.counters = Ok(Counters {
        bypass: 42,
        grace: 7,
        rejected: [("token-invalid-authorized-parties".to_string(), 3)].into(),
        since: Some(rfc3339(T0 - 600 * MIN)),
        ..Counters::default()
    });
    let r = build(i);
    assert_eq!((r.requests.bypass, r.requests.grace), (Some(42), Some(7)));
    assert!(r.requests.note.contains("also hold any bypass or grace before the incident"), "{}", r.requests.note);
    let items = r.action_items.join("\n");
    assert!(items.contains("(42 counted by the gateway)"), "{items}");
    assert!(items.contains("3 request(s) were refused as token-invalid-authorized-parties"), "{items}");
    let text = markdown::render(&r);
    assert!(text.contains("- Requests served in bypass (unverified): 42"), "{text}");
}

#[test]
fn markdown_cells_escape_what_would_break_the_table() {
    let r = build(inputs(incident(), 120));
    let text = markdown::render(&r);
    assert!(text.contains("INC-1 \\| clerk down"), "{text}");
    assert!(text.contains("grace not enough see chat"), "{text}");
    for line in text.lines().filter(|l| l.starts_with("| 2026")) {
        assert_eq!(line.matches(" | ").count() + 2, line.matches('|').count() - line.matches("\\|").count(), "{line}");
    }
    for heading in ["## Root cause", "## Impact", "## Timeline", "## Mode changes", "## Action items"] {
        assert!(text.contains(heading), "{heading} missing:\n{text}");
    }
    assert!(text.contains("_To be written by a person._"));
}
