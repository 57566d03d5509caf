//! The console's HTML: the page shell (the login, the controls) and the state fragment (mode,
//! keys, chart, fleet, triage, revocations, timeline), both server-rendered with [`Html`], so
//! every value is escaped here and the script only places what the gateway rendered.

use serde_json::Value;

use super::html::Html;
use crate::admin::api;
use crate::auth::counters::lane_name;
use crate::mode::Mode;
use crate::store::AuditRecord;
use crate::telemetry::history::{Lane, Minute, LANES};

/// Everything the state fragment shows, read once per render.
#[derive(Debug)]
pub(super) struct View {
    /// `/status` as the API answers it.
    pub(super) status: api::Status,
    /// `clerk.keys.max_stale` in seconds, when keys come from a JWKS.
    pub(super) max_stale_seconds: Option<i64>,
    /// Outcomes per minute, oldest first.
    pub(super) minutes: Vec<Minute>,
    /// The audit events shown, newest first (filtered by `kind`).
    pub(super) timeline: Vec<AuditRecord>,
    /// Events in the window before the filter and the cap.
    pub(super) timeline_total: usize,
    /// The timeline's kind filter (`mode`, `revocation`, …), if any.
    pub(super) kind: Option<String>,
    /// The latest `triage.run` record.
    pub(super) triage: Option<AuditRecord>,
    /// The revocations in force.
    pub(super) revocations: api::Revocations,
    /// Why the audit log could not be read, if it could not.
    pub(super) audit_problem: Option<String>,
    /// With the Redis backend: every gateway of the fleet, or why they could not be read.
    pub(super) members: Option<Result<crate::store::redis::FleetStatus, String>>,
}

/// The timeline's kinds: an audit action's part before the dot.
pub(super) const KINDS: [&str; 7] = ["mode", "revocation", "config", "keys", "triage", "webhook", "state"];

/// How the shell is served: for the script (login, then the script fetches the state), or
/// read-only with the state in it (the login form posted without a script).
#[derive(Debug)]
pub(super) enum Shell {
    /// The login form; the script takes it from there.
    Login,
    /// The state, rendered in the page; no controls (they need the script).
    Static(Html),
}

/// The whole page.
pub(super) fn page(shell: Shell, mode: Option<Mode>) -> String {
    let mut h = Html::new();
    h.raw("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
        .raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
        .raw("<meta name=\"referrer\" content=\"no-referrer\">")
        .raw("<title>clerkgate console</title>")
        .raw("<link rel=\"stylesheet\" href=\"/console/app.css\">")
        .raw("<script src=\"/console/app.js\" defer></script></head>\n");
    match (&shell, mode) {
        (Shell::Static(_), Some(m)) => h.raw("<body data-view=\"static\" class=\"").raw(mode_class(m)).raw("\">"),
        (Shell::Static(_), None) => h.raw("<body data-view=\"static\">"),
        (Shell::Login, _) => h.raw("<body data-view=\"live\">"),
    };
    h.raw("<header class=\"top\"><h1>clerkgate <span>on-call console</span></h1>")
        .raw("<p id=\"updated\" class=\"updated\" aria-live=\"polite\"></p>")
        .raw("<button type=\"button\" id=\"signout\" hidden>Sign out</button></header>\n<main>");
    match shell {
        Shell::Login => {
            login(&mut h);
            h.raw("<div id=\"app\" hidden><div id=\"state\"></div>");
            controls(&mut h);
            h.raw("</div>");
        }
        Shell::Static(state) => {
            h.raw("<p class=\"note\">Read-only view (scripts are off): reload to see it again; the switch and the chart's refresh need scripts.</p>")
                .raw("<div id=\"state\">")
                .append(state)
                .raw("</div>");
        }
    }
    h.raw("</main></body></html>\n");
    h.into_string()
}

fn mode_class(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "mode-enforce",
        Mode::Grace => "mode-grace",
        Mode::Bypass => "mode-bypass",
    }
}

fn login(h: &mut Html) {
    h.raw("<section id=\"login\" class=\"card login\" aria-labelledby=\"login-h\"><h2 id=\"login-h\">Sign in</h2>")
        .raw("<form id=\"login-form\" method=\"post\" action=\"/console\" autocomplete=\"off\">")
        .raw("<label for=\"token\">Admin token</label>")
        .raw("<input id=\"token\" name=\"token\" type=\"password\" required autocomplete=\"off\" spellcheck=\"false\">")
        .raw("<button type=\"submit\">Open the console</button>")
        .raw("<p id=\"login-error\" class=\"error\" role=\"alert\" hidden></p>")
        .raw("<p class=\"hint\">The token stays in this tab (sessionStorage) and goes to the admin API as an ")
        .raw("<code>Authorization</code> header, never in a URL. Closing the tab forgets it.</p>")
        .raw("</form></section>");
}

/// The switch, the revoke form and the timeline filter: static, so a refresh of the state never
/// wipes what the operator is typing.
fn controls(h: &mut Html) {
    h.raw("<section class=\"card controls\" aria-labelledby=\"switch-h\"><h2 id=\"switch-h\">Switch the mode</h2>")
        .raw("<form id=\"mode-form\" novalidate><fieldset><legend>Mode</legend>")
        .raw("<label><input type=\"radio\" name=\"mode\" value=\"enforce\" checked> enforce</label>")
        .raw("<label><input type=\"radio\" name=\"mode\" value=\"grace\"> grace</label>")
        .raw("<label><input type=\"radio\" name=\"mode\" value=\"bypass\"> bypass</label></fieldset>")
        .raw("<label for=\"mode-reason\">Reason (required for grace and bypass)</label>")
        .raw("<input id=\"mode-reason\" name=\"reason\" maxlength=\"500\">")
        .raw("<label for=\"mode-ttl\">For how long (capped by mode.max_override_ttl)</label>")
        .raw("<input id=\"mode-ttl\" name=\"ttl\" value=\"30m\">")
        .raw("<button type=\"submit\" id=\"mode-review\">Review…</button></form>")
        .raw("<h2 id=\"revoke-h\">Revoke</h2><form id=\"revoke-form\" novalidate aria-labelledby=\"revoke-h\">")
        .raw("<label for=\"revoke-what\">What</label><select id=\"revoke-what\" name=\"what\">")
        .raw("<option value=\"session_id\">a session (sess_…)</option><option value=\"user_id\">a user, every session (user_…)</option></select>")
        .raw("<label for=\"revoke-id\">Id</label><input id=\"revoke-id\" name=\"id\" spellcheck=\"false\">")
        .raw("<label for=\"revoke-reason\">Reason</label><input id=\"revoke-reason\" name=\"reason\" maxlength=\"500\">")
        .raw("<button type=\"submit\" id=\"revoke-review\">Review…</button></form>")
        .raw("<h2 id=\"triage-run-h\">Triage</h2>")
        .raw("<p>Probes Clerk, this gateway and its upstream at once (6 s at most) and records the verdict.</p>")
        .raw("<button type=\"button\" id=\"run-triage\" aria-describedby=\"triage-run-h\">Run triage</button>")
        .raw("<div id=\"confirm\" class=\"confirm\" role=\"alertdialog\" aria-labelledby=\"confirm-text\" hidden>")
        .raw("<p id=\"confirm-text\"></p><button type=\"button\" id=\"confirm-yes\">Confirm</button> ")
        .raw("<button type=\"button\" id=\"confirm-no\">Cancel</button></div>")
        .raw("<p id=\"result\" class=\"result\" role=\"status\" aria-live=\"polite\"></p>")
        .raw("<label for=\"kind\">Timeline: show</label><select id=\"kind\"><option value=\"\">every kind</option>");
    for kind in KINDS {
        h.raw("<option value=\"").text(kind).raw("\">").text(kind).raw("</option>");
    }
    h.raw("</select></section>");
}

/// The state fragment: what `GET /console/state` answers and the read-only page embeds.
pub(super) fn state(v: &View) -> Html {
    let mut h = Html::new();
    let m = &v.status.mode;
    h.raw("<div id=\"state-root\" data-mode=\"").text(m.mode).raw("\">");
    if m.mode == Mode::Bypass {
        h.raw("<div class=\"banner\" id=\"bypass-banner\" role=\"alert\"><strong>BYPASS</strong> — every request is ")
            .raw("forwarded WITHOUT authentication")
            .raw(" (X-Auth-Bypass: true). Source: ")
            .text(m.source.as_str())
            .raw(", reason: ")
            .text(&m.reason)
            .raw(".</div>");
    }
    mode(&mut h, m);
    keys(&mut h, &v.status.keys, v.max_stale_seconds);
    chart(&mut h, &v.minutes);
    if let Some(fleet) = &v.status.fleet {
        fleet_card(&mut h, fleet, v.members.as_ref());
    }
    triage(&mut h, v.triage.as_ref());
    revocations(&mut h, &v.revocations);
    timeline(&mut h, v);
    h.raw("</div>");
    h
}

fn mode(h: &mut Html, m: &api::ModeView) {
    h.raw("<section class=\"card mode\" aria-labelledby=\"mode-h\"><h2 id=\"mode-h\">Mode in force</h2>")
        .raw("<p class=\"mode-name\" id=\"mode-name\">")
        .text(m.mode)
        .raw("</p><dl>")
        .raw("<dt>Source</dt><dd id=\"mode-source\">")
        .text(m.source.as_str())
        .raw("</dd><dt>Reason</dt><dd id=\"mode-reason-text\">")
        .text(if m.reason.is_empty() { "—" } else { &m.reason })
        .raw("</dd><dt>Actor</dt><dd>")
        .text(&m.actor)
        .raw("</dd><dt>Since</dt><dd><time>")
        .text(&m.since)
        .raw("</time></dd><dt>Expires</dt><dd>");
    match (&m.expires_at, m.seconds_left) {
        (Some(at), Some(left)) => {
            h.raw("<time>").text(at).raw("</time> — <span id=\"countdown\" data-seconds-left=\"").text(left).raw("\">");
            h.text(countdown(left)).raw("</span> left");
        }
        _ => {
            h.raw("never");
        }
    }
    h.raw("</dd><dt>Config file's mode</dt><dd>").text(m.file_mode).raw("</dd></dl></section>");
}

/// `1h 02m 05s`, `29m 59s`, `7s`.
pub(super) fn countdown(seconds: i64) -> String {
    let s = seconds.max(0);
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, sec) => format!("{sec}s"),
        (0, min, sec) => format!("{min}m {sec:02}s"),
        (hours, min, sec) => format!("{hours}h {min:02}m {sec:02}s"),
    }
}

fn keys(h: &mut Html, k: &api::KeysView, max_stale_seconds: Option<i64>) {
    h.raw("<section class=\"card keys\" aria-labelledby=\"keys-h\"><h2 id=\"keys-h\">Keys</h2>");
    if k.stale {
        h.raw("<p class=\"warn\" role=\"alert\">The keys are older than clerk.keys.max_stale: signed-in requests are refused (jwks-unavailable).</p>");
    }
    h.raw("<dl><dt>Key ids</dt><dd><ul id=\"kids\" class=\"plain\">");
    if k.kids.is_empty() {
        h.raw("<li>none fetched</li>");
    }
    for kid in &k.kids {
        h.raw("<li><code>").text(kid).raw("</code></li>");
    }
    h.raw("</ul></dd><dt>Source</dt><dd>");
    match &k.source {
        Some(url) => h.text(url).raw(" (").text(format!("{:?}", k.origin).to_lowercase()).raw(")"),
        None => h.raw("no JWKS"),
    };
    if k.networkless_key {
        h.raw("; a networkless key (clerk.jwt_key)");
    }
    h.raw("</dd><dt>Last good fetch</dt><dd>");
    match (&k.fetched_at, k.age_seconds) {
        (Some(at), Some(age)) => h.text(countdown(age)).raw(" ago (<time>").text(at).raw("</time>)"),
        _ => h.raw("never"),
    };
    h.raw("</dd><dt>Last error</dt><dd>").text(k.last_error.as_deref().unwrap_or("none")).raw("</dd>");
    if let (Some(max), Some(age)) = (max_stale_seconds, k.age_seconds) {
        h.raw("<dt>Until max_stale</dt><dd>").text(countdown(max - age)).raw("</dd>");
    }
    h.raw("</dl></section>");
}

/// Colours of the chart's lanes: fixed for the forwarded outcomes, a cycle for the reasons.
fn colour(lane: Lane) -> &'static str {
    const REASONS: [&str; 6] = ["#e08a1e", "#c2410c", "#7c3aed", "#0e7490", "#be185d", "#4d7c0f"];
    match lane {
        Lane::SIGNED_IN => "#15803d",
        Lane::SIGNED_OUT => "#94a3b8",
        Lane::BYPASS => "#dc2626",
        Lane::GRACE => "#ca8a04",
        Lane::SERVER_ERROR => "#111827",
        Lane(i) => REASONS[i % REASONS.len()],
    }
}

/// Stacked bars, one per minute, as inline SVG (no script needed to draw it).
fn chart(h: &mut Html, minutes: &[Minute]) {
    const W: usize = 900;
    const H: usize = 140;
    // The bars sit below the peak's label and above the axis labels.
    const TOP: usize = 18;
    let lanes: Vec<Lane> =
        (0..LANES).map(Lane).filter(|l| lane_name(*l).is_some() && minutes.iter().any(|m| m.counts[l.0] > 0)).collect();
    let peak = minutes.iter().map(|m| m.counts.iter().sum::<u64>()).max().unwrap_or(0).max(1);
    h.raw("<section class=\"card chart\" aria-labelledby=\"chart-h\"><h2 id=\"chart-h\">Requests, last ")
        .text(minutes.len())
        .raw(" minutes</h2><svg id=\"outcomes\" viewBox=\"0 0 ")
        .text(W)
        .raw(" ")
        .text(H + TOP + 18)
        .raw("\" role=\"img\" aria-label=\"request outcomes per minute, by reason\">");
    let slot = W / minutes.len().max(1);
    for (i, m) in minutes.iter().enumerate() {
        let mut top = H as u64;
        for lane in &lanes {
            let n = m.counts[lane.0];
            if n == 0 {
                continue;
            }
            let height = (n * H as u64).div_ceil(peak).max(1);
            top = top.saturating_sub(height);
            h.raw("<rect x=\"").text(i * slot + 2).raw("\" y=\"").text(top + TOP as u64);
            h.raw("\" width=\"").text(slot.saturating_sub(4)).raw("\" height=\"").text(height);
            h.raw("\" fill=\"").raw(colour(*lane)).raw("\"><title>");
            h.text(lane_name(*lane).unwrap_or_default()).raw(": ").text(n).raw("</title></rect>");
        }
    }
    let base = H + TOP;
    h.raw("<line x1=\"0\" y1=\"").text(base).raw("\" x2=\"").text(W).raw("\" y2=\"").text(base);
    h.raw("\" stroke=\"#64748b\"/><text x=\"0\" y=\"").text(base + 14).raw("\" class=\"axis\">−");
    h.text(minutes.len()).raw(" min</text><text x=\"").text(W).raw("\" y=\"").text(base + 14);
    h.raw("\" class=\"axis\" text-anchor=\"end\">now</text><text x=\"").text(W);
    h.raw("\" y=\"12\" class=\"axis\" text-anchor=\"end\">peak ").text(peak).raw("/min</text>");
    h.raw("</svg><ul class=\"legend\">");
    if lanes.is_empty() {
        h.raw("<li>no requests in the window</li>");
    }
    for lane in &lanes {
        let total: u64 = minutes.iter().map(|m| m.counts[lane.0]).sum();
        h.raw("<li><svg class=\"swatch\" viewBox=\"0 0 10 10\" aria-hidden=\"true\"><rect width=\"10\" height=\"10\" fill=\"")
            .raw(colour(*lane))
            .raw("\"/></svg> ")
            .text(lane_name(*lane).unwrap_or_default())
            .raw(" <strong>")
            .text(total)
            .raw("</strong></li>");
    }
    h.raw("</ul></section>");
}

fn fleet_card(
    h: &mut Html,
    f: &crate::store::FleetReport,
    members: Option<&Result<crate::store::redis::FleetStatus, String>>,
) {
    h.raw("<section class=\"card fleet\" aria-labelledby=\"fleet-h\"><h2 id=\"fleet-h\">Fleet</h2><dl>")
        .raw("<dt>Fleet</dt><dd>")
        .text(&f.fleet)
        .raw(" (")
        .text(&f.backend)
        .raw(")</dd><dt>This gateway</dt><dd>")
        .text(&f.gateway_id)
        .raw("</dd><dt>Link</dt><dd>")
        .text(&f.link);
    if let Some(p) = &f.problem {
        h.raw(": ").text(p);
    }
    h.raw("</dd><dt>Epoch</dt><dd>").text(f.epoch).raw("</dd><dt>Last sync</dt><dd>");
    match f.last_sync_ms {
        Some(ms) => h.text(crate::clock::rfc3339(ms)),
        None => h.raw("never"),
    };
    h.raw("</dd><dt>Fleet override</dt><dd>");
    setting(h, f.fleet_override.as_ref());
    h.raw("</dd><dt>Local override</dt><dd>");
    setting(h, f.local_override.as_ref());
    h.raw("</dd><dt>Audit buffered / dropped</dt><dd>")
        .text(f.audit_buffered)
        .raw(" / ")
        .text(f.audit_dropped)
        .raw("</dd><dt>Store resets</dt><dd>")
        .text(f.store_resets)
        .raw("</dd></dl>");
    match members {
        Some(Ok(fleet)) => {
            h.raw("<table class=\"members\"><caption>Every gateway (fleet epoch ")
                .text(fleet.epoch)
                .raw(")</caption><thead><tr><th scope=\"col\">Gateway</th><th scope=\"col\">Mode</th>")
                .raw("<th scope=\"col\">Source</th><th scope=\"col\">Epoch</th><th scope=\"col\">Reported</th>")
                .raw("<th scope=\"col\">Lag</th></tr></thead><tbody>");
            for m in &fleet.gateways {
                h.raw(if m.lagging.is_some() { "<tr class=\"lagging\">" } else { "<tr>" })
                    .raw("<td>")
                    .text(&m.ack.gateway_id)
                    .raw("</td><td>")
                    .text(&m.ack.mode)
                    .raw("</td><td>")
                    .text(&m.ack.mode_source)
                    .raw("</td><td>")
                    .text(m.ack.epoch)
                    .raw("</td><td>")
                    .text(format!("{:.1} s ago", m.age_ms as f64 / 1000.0))
                    .raw("</td><td>")
                    .text(m.lagging.as_deref().unwrap_or("in step"))
                    .raw("</td></tr>");
            }
            h.raw("</tbody></table>");
        }
        Some(Err(why)) => {
            h.raw("<p class=\"problem\">The fleet's gateways could not be read: ").text(why).raw("</p>");
        }
        None => {}
    }
    h.raw("</section>");
}

fn setting(h: &mut Html, s: Option<&crate::mode::ModeSetting>) {
    match s {
        None => h.raw("none"),
        Some(s) => {
            h.text(s.mode).raw(" — ").text(&s.reason).raw(" (").text(&s.actor);
            if let Some(at) = s.expires_at_ms {
                h.raw(", until ").text(crate::clock::rfc3339(at));
            }
            h.raw(")")
        }
    };
}

fn triage(h: &mut Html, record: Option<&AuditRecord>) {
    h.raw("<section class=\"card triage\" aria-labelledby=\"triage-h\"><h2 id=\"triage-h\">Latest triage</h2>");
    let Some(r) = record else {
        h.raw("<p>No triage recorded. Press <em>Run triage</em>, or run <code>clerkgate triage</code>; either records its result here.</p></section>");
        return;
    };
    h.raw("<p><time>").text(&r.time).raw("</time> by ").text(&r.actor).raw("</p><dl>");
    for key in ["category", "severity", "why", "next"] {
        let Some(value) = r.after.get(key) else { continue };
        h.raw("<dt>").text(key).raw("</dt><dd>");
        match value {
            Value::String(s) => {
                h.text(s);
            }
            Value::Array(items) => {
                h.raw("<ul class=\"plain\">");
                for item in items {
                    h.raw("<li>").text(item.as_str().map_or_else(|| item.to_string(), str::to_string)).raw("</li>");
                }
                h.raw("</ul>");
            }
            other => {
                h.text(other);
            }
        }
        h.raw("</dd>");
    }
    h.raw("</dl></section>");
}

fn revocations(h: &mut Html, r: &api::Revocations) {
    h.raw("<section class=\"card revocations\" aria-labelledby=\"rev-h\"><h2 id=\"rev-h\">Revocations</h2>");
    if let Some(at) = &r.issued_before {
        h.raw("<p class=\"warn\">Every token issued before <time>").text(at).raw("</time> is refused.</p>");
    }
    if r.sessions.is_empty() && r.users.is_empty() {
        h.raw("<p>No session or user is revoked.</p></section>");
        return;
    }
    h.raw("<table><thead><tr><th scope=\"col\">What</th><th scope=\"col\">Id</th><th scope=\"col\">Since</th>")
        .raw("<th scope=\"col\">By</th><th scope=\"col\">Reason</th></tr></thead><tbody id=\"revocation-rows\">");
    let rows = r.sessions.iter().map(|e| ("session", e)).chain(r.users.iter().map(|e| ("user", e)));
    for (what, (id, entry)) in rows {
        h.raw("<tr><td>")
            .text(what)
            .raw("</td><td><code>")
            .text(id)
            .raw("</code></td><td><time>")
            .text(crate::clock::rfc3339(entry.added_at_ms))
            .raw("</time></td><td>")
            .text(&entry.actor)
            .raw("</td><td>")
            .text(&entry.reason)
            .raw("</td></tr>");
    }
    h.raw("</tbody></table></section>");
}

fn timeline(h: &mut Html, v: &View) {
    h.raw("<section class=\"card timeline\" aria-labelledby=\"timeline-h\"><h2 id=\"timeline-h\">Timeline</h2><p class=\"hint\">");
    match &v.kind {
        Some(kind) => h.text(kind).raw(" events, "),
        None => h.raw("Every event, "),
    };
    h.raw("newest first: ").text(v.timeline.len()).raw(" of ").text(v.timeline_total).raw(" in the last 24 hours.</p>");
    if let Some(p) = &v.audit_problem {
        h.raw("<p class=\"warn\" role=\"alert\">The audit log could not be read: ").text(p).raw("</p>");
    }
    h.raw("<ol id=\"timeline\" class=\"plain\">");
    for r in &v.timeline {
        h.raw("<li class=\"event\" data-kind=\"")
            .text(kind_of(&r.action))
            .raw("\"><time>")
            .text(&r.time)
            .raw("</time> <code class=\"action\">")
            .text(&r.action)
            .raw("</code> <span class=\"actor\">")
            .text(&r.actor)
            .raw("</span>");
        if !r.reason.is_empty() {
            h.raw(" <span class=\"reason\">").text(&r.reason).raw("</span>");
        }
        h.raw("</li>");
    }
    h.raw("</ol></section>");
}

/// An audit action's kind: its part before the dot (`mode.set` → `mode`).
pub(super) fn kind_of(action: &str) -> &str {
    action.split('.').next().unwrap_or(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn countdowns_read_as_durations() {
        for (s, text) in [(0, "0s"), (7, "7s"), (61, "1m 01s"), (1799, "29m 59s"), (3725, "1h 02m 05s"), (-5, "0s")] {
            assert_eq!(countdown(s), text);
        }
    }

    #[test]
    fn kinds_are_the_part_before_the_dot() {
        for (action, kind) in [("mode.set", "mode"), ("triage.run", "triage"), ("odd", "odd"), ("", "")] {
            assert_eq!(kind_of(action), kind);
        }
    }
}
