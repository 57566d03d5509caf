//! What the gateway reads from a Clerk event's body (clerk-ops §5.1): the envelope's `type`,
//! `instance_id` and `timestamp` (ms), and, for the events that end sessions, whom they end.
//! Nothing here fails: a body that is not Clerk's envelope is still journalled and forwarded,
//! with the fields it lacks left empty.

use serde::Deserialize;

/// The parts of an event the journal keeps beside its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// `type`, e.g. `user.deleted`.
    pub event_type: Option<String>,
    /// `instance_id` (`ins_…`).
    pub instance_id: Option<String>,
    /// `timestamp`: when Clerk made the event, ms since the epoch.
    pub timestamp_ms: Option<i64>,
    /// What the event asks the gateway to revoke, when it ends sessions.
    pub revokes: Option<Revoke>,
}

/// A revocation an event feeds to the gateway's list (an accelerator only: webhooks may lag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoke {
    /// `session.revoked`, `session.ended`, `session.removed`: that session.
    Session(String),
    /// `user.deleted`: every session of that user.
    User(String),
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    event_type: Option<String>,
    instance_id: Option<String>,
    timestamp: Option<i64>,
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    id: Option<String>,
}

/// Longest id taken from an event (Clerk's are about 30 characters).
const MAX_ID: usize = 128;

impl Envelope {
    /// Reads the envelope of `body`; every field it cannot read is `None`.
    pub fn read(body: &[u8]) -> Envelope {
        let Ok(raw) = serde_json::from_slice::<Raw>(body) else { return Envelope::default() };
        let id = raw.data.and_then(|d| d.id).filter(|id| !id.trim().is_empty() && id.len() <= MAX_ID);
        let revokes = match (raw.event_type.as_deref(), id) {
            (Some("session.revoked" | "session.ended" | "session.removed"), Some(id)) => Some(Revoke::Session(id)),
            (Some("user.deleted"), Some(id)) => Some(Revoke::User(id)),
            _ => None,
        };
        Envelope { event_type: raw.event_type, instance_id: raw.instance_id, timestamp_ms: raw.timestamp, revokes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn clerk_events_are_read() {
        let cases: [(&str, Option<&str>, Option<Revoke>); 6] = [
            (
                r#"{"type":"session.revoked","object":"event","data":{"id":"sess_1","user_id":"user_1"},"timestamp":1,"instance_id":"ins_1"}"#,
                Some("session.revoked"),
                Some(Revoke::Session("sess_1".into())),
            ),
            (
                r#"{"type":"session.ended","data":{"id":"sess_2"}}"#,
                Some("session.ended"),
                Some(Revoke::Session("sess_2".into())),
            ),
            (
                r#"{"type":"user.deleted","data":{"id":"user_9","deleted":true}}"#,
                Some("user.deleted"),
                Some(Revoke::User("user_9".into())),
            ),
            (r#"{"type":"user.created","data":{"id":"user_9"}}"#, Some("user.created"), None),
            (r#"{"type":"user.deleted","data":{"id":" "}}"#, Some("user.deleted"), None),
            (r#"{"test": 2432232314}"#, None, None),
        ];
        for (body, event_type, revokes) in cases.clone() {
            let e = Envelope::read(body.as_bytes());
            assert_eq!((e.event_type.as_deref(), e.revokes), (event_type, revokes), "{body}");
        }
        let e = Envelope::read(cases[0].0.as_bytes());
        assert_eq!((e.instance_id.as_deref(), e.timestamp_ms), (Some("ins_1"), Some(1)));
        assert_eq!(Envelope::read(b"not json"), Envelope::default());
        assert_eq!(Envelope::read(br#"{"type":7}"#), Envelope::default());
    }

    proptest! {
        #[test]
        fn never_panics(body in proptest::collection::vec(any::<u8>(), 0..200), t in "\\PC{0,20}", id in "\\PC{0,20}") {
            let _ = Envelope::read(&body);
            let json = serde_json::json!({"type": t, "data": {"id": id}}).to_string();
            let e = Envelope::read(json.as_bytes());
            prop_assert_eq!(e.event_type.as_deref(), Some(t.as_str()));
        }
    }
}
