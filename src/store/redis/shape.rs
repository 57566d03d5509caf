//! What the fleet's keys hold, in one place for the writer (the operator's CLI) and the
//! followers (every gateway): the mode override as JSON, the revocations as hash fields, a
//! change as a stream entry.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::mode::ModeSetting;
use crate::revocation::{Entry, Revocation, RevocationId, RevocationList};
use crate::store::{Change, ControlState};

/// The hash field of a session revocation.
const SESSION: &str = "sid:";
/// The hash field of a user revocation.
const USER: &str = "uid:";
/// The hash field of the `issued_before` cut-off.
const CUTOFF: &str = "issued_before";

/// The `issued_before` field's value.
#[derive(Debug, Serialize, Deserialize)]
struct Cutoff {
    at_ms: i64,
    entry: Entry,
}

/// How long the mode key outlives the override's own expiry (Redis's TTL only cleans up).
pub(super) const MODE_TTL_SLACK_MS: i64 = 60_000;

/// What the write script does to the state keys for one change: an operation name and its
/// two arguments (see `write.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Op {
    /// `mode`, `clear`, `hset`, `cutoff` or `hdel`.
    pub(super) name: &'static str,
    /// The first argument.
    pub(super) a: String,
    /// The second argument.
    pub(super) b: String,
}

/// The script operation that makes `change` in the fleet's keys, at `now_ms`. A fleet change
/// is a mode override set or cleared, or a revocation added or lifted; anything else is one
/// gateway's own business.
pub(super) fn op(change: &Change, now_ms: i64) -> Result<Op, String> {
    Ok(match change {
        Change::SetOverride(setting) => {
            let expires = setting.expires_at_ms.ok_or("a fleet override always expires")?;
            let ttl = (expires - now_ms).max(1) + MODE_TTL_SLACK_MS;
            Op { name: "mode", a: json(setting)?, b: ttl.to_string() }
        }
        Change::ClearOverride => Op { name: "clear", a: String::new(), b: String::new() },
        Change::Revoke { what: Revocation::Session(id), entry } => {
            Op { name: "hset", a: format!("{SESSION}{id}"), b: json(entry)? }
        }
        Change::Revoke { what: Revocation::User(id), entry } => {
            Op { name: "hset", a: format!("{USER}{id}"), b: json(entry)? }
        }
        Change::Revoke { what: Revocation::IssuedBefore(at_ms), entry } => {
            Op { name: "cutoff", a: json(&Cutoff { at_ms: *at_ms, entry: entry.clone() })?, b: at_ms.to_string() }
        }
        Change::Unrevoke(id) => Op { name: "hdel", a: field(id), b: String::new() },
        Change::ExpireOverride(_) | Change::KeySet(_) | Change::Note => {
            return Err("only a mode override or a revocation is changed for a fleet".into())
        }
    })
}

/// The hash field that holds `id`.
pub(super) fn field(id: &RevocationId) -> String {
    match id {
        RevocationId::Session(id) => format!("{SESSION}{id}"),
        RevocationId::User(id) => format!("{USER}{id}"),
        RevocationId::IssuedBefore => CUTOFF.into(),
    }
}

/// The control state the fleet's keys hold: the mode key's JSON and the revocations hash.
/// A field or value this build cannot read is skipped and named in the second part of the
/// answer (a newer writer's field must not stop a gateway from following).
pub(super) fn state(mode: Option<&str>, revocations: &HashMap<String, String>) -> (ControlState, Vec<String>) {
    let mut skipped = Vec::new();
    let admin_override = mode.and_then(|m| match serde_json::from_str::<ModeSetting>(m) {
        Ok(s) => Some(s),
        Err(e) => {
            skipped.push(format!("mode: {e}"));
            None
        }
    });
    let mut list = RevocationList::default();
    for (key, value) in revocations {
        let read = if key == CUTOFF {
            serde_json::from_str::<Cutoff>(value)
                .map(|c| list = list.with(&Revocation::IssuedBefore(c.at_ms), &c.entry))
        } else if let Some(id) = key.strip_prefix(SESSION) {
            serde_json::from_str::<Entry>(value).map(|e| list = list.with(&Revocation::Session(id.into()), &e))
        } else if let Some(id) = key.strip_prefix(USER) {
            serde_json::from_str::<Entry>(value).map(|e| list = list.with(&Revocation::User(id.into()), &e))
        } else {
            skipped.push(format!("revocations: unknown field {key:?}"));
            continue;
        };
        if let Err(e) = read {
            skipped.push(format!("revocations field {key:?}: {e}"));
        }
    }
    (ControlState { admin_override, revocations: list }, skipped)
}

/// A gateway's acknowledgement: what it applied and runs, refreshed as its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The gateway.
    pub gateway_id: String,
    /// The last fleet epoch it applied.
    pub epoch: u64,
    /// When it wrote this, ms since the epoch.
    pub at_ms: i64,
    /// The mode in force there.
    pub mode: String,
    /// Who set it: `fleet`, `admin` (its local layer), `file`, `env`, `default`.
    pub mode_source: String,
    /// Its config's hash.
    pub config_hash: String,
    /// The kids of its key set.
    pub kids: Vec<String>,
    /// Its clerkgate version.
    pub version: String,
}

/// `value` as JSON, with the error as text.
fn json<T: Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mode::{Mode, ModeSource};

    fn entry() -> Entry {
        Entry { added_at_ms: 5, actor: "op".into(), reason: "leak".into() }
    }

    #[test]
    fn each_change_round_trips_through_the_keys() {
        let setting = ModeSetting {
            mode: Mode::Bypass,
            source: ModeSource::Fleet,
            reason: "outage".into(),
            actor: "op".into(),
            since_ms: 1_000,
            expires_at_ms: Some(61_000),
        };
        let set = op(&Change::SetOverride(setting.clone()), 1_000).expect("op");
        assert_eq!((set.name, set.b.as_str()), ("mode", "120000"), "TTL = time left + slack");
        let mut hash = HashMap::new();
        for change in [
            Change::Revoke { what: Revocation::Session("sess_1".into()), entry: entry() },
            Change::Revoke { what: Revocation::User("user_1".into()), entry: entry() },
            Change::Revoke { what: Revocation::IssuedBefore(42), entry: entry() },
        ] {
            let o = op(&change, 0).expect("op");
            let (k, v) = if o.name == "cutoff" { (CUTOFF.to_string(), o.a) } else { (o.a, o.b) };
            hash.insert(k, v);
        }
        hash.insert("zz:new".into(), "{}".into());
        let (state, skipped) = state(Some(&set.a), &hash);
        assert_eq!(state.admin_override, Some(setting));
        assert!(state.revocations.sessions.contains_key("sess_1") && state.revocations.users.contains_key("user_1"));
        assert_eq!(state.revocations.issued_before_ms, Some(42));
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(field(&RevocationId::User("user_1".into())), "uid:user_1");
        assert!(op(&Change::Note, 0).is_err());
    }
}
