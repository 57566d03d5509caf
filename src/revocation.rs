//! Gateway-side revocation: by session id, by user id, and of every token issued before a
//! moment (`issued_before` — the one-call answer to a leaked secret key).
//!
//! The list is an immutable snapshot behind an atomic swap; the request path does one load and
//! two hash lookups. It is read on every request, cache hit or not, so a change applies at once.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

/// One revocation entry as stored and listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When it was added, ms since the epoch.
    pub added_at_ms: i64,
    /// Who added it.
    pub actor: String,
    /// Why, when given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Revocation {
    /// One session.
    Session(String),
    /// Every session of one user.
    User(String),
    /// Every token issued before this moment (ms since the epoch).
    IssuedBefore(i64),
}

/// One entry of the list, to lift.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevocationId {
    /// A revoked session id.
    Session(String),
    /// A revoked user id.
    User(String),
    /// The `issued_before` cut-off.
    IssuedBefore,
}

/// The revocations in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationList {
    /// Revoked session ids.
    #[serde(default)]
    pub sessions: BTreeMap<String, Entry>,
    /// Revoked user ids.
    #[serde(default)]
    pub users: BTreeMap<String, Entry>,
    /// Tokens issued (`iat`) before this moment (ms since the epoch) are revoked.
    #[serde(default)]
    pub issued_before_ms: Option<i64>,
}

impl RevocationList {
    /// True when a token of `user_id` and `session_id`, issued at `issued_at_ms` (`None` when
    /// its `iat` is missing or not a number), is revoked. Plain values rather than the auth
    /// layer's claims, so the list sits below the layer that reads it.
    #[inline]
    pub fn revokes(&self, user_id: &str, session_id: Option<&str>, issued_at_ms: Option<i64>) -> bool {
        if let Some(before) = self.issued_before_ms {
            // A token without a usable `iat` cannot prove it was issued after the cut-off.
            match issued_at_ms {
                Some(iat) if iat >= before => {}
                _ => return true,
            }
        }
        if !self.users.is_empty() && self.users.contains_key(user_id) {
            return true;
        }
        if !self.sessions.is_empty() {
            if let Some(sid) = session_id {
                return self.sessions.contains_key(sid);
            }
        }
        false
    }

    /// The list with `what` added. A later `issued_before` cut-off revokes a superset, so the
    /// cut-off only ever moves forward.
    pub fn with(&self, what: &Revocation, entry: &Entry) -> RevocationList {
        let mut next = self.clone();
        match what {
            Revocation::Session(id) => {
                next.sessions.insert(id.clone(), entry.clone());
            }
            Revocation::User(id) => {
                next.users.insert(id.clone(), entry.clone());
            }
            Revocation::IssuedBefore(at) => {
                next.issued_before_ms = Some(next.issued_before_ms.map_or(*at, |old| old.max(*at)));
            }
        }
        next
    }

    /// The list without `id`.
    pub fn without(&self, id: &RevocationId) -> RevocationList {
        let mut next = self.clone();
        match id {
            RevocationId::Session(id) => {
                next.sessions.remove(id);
            }
            RevocationId::User(id) => {
                next.users.remove(id);
            }
            RevocationId::IssuedBefore => next.issued_before_ms = None,
        }
        next
    }

    /// The entry an admin's `id` names: `issued_before`, else a session id, else a user id.
    pub fn find(&self, id: &str) -> Option<RevocationId> {
        if id == "issued_before" {
            self.issued_before_ms.is_some().then_some(RevocationId::IssuedBefore)
        } else if self.sessions.contains_key(id) {
            Some(RevocationId::Session(id.to_string()))
        } else if self.users.contains_key(id) {
            Some(RevocationId::User(id.to_string()))
        } else {
            None
        }
    }

    /// True when the list holds `id`.
    pub fn contains(&self, id: &RevocationId) -> bool {
        match id {
            RevocationId::Session(s) => self.sessions.contains_key(s),
            RevocationId::User(u) => self.users.contains_key(u),
            RevocationId::IssuedBefore => self.issued_before_ms.is_some(),
        }
    }

    /// Every entry of both lists (an entry in both keeps this list's), with the later cut-off.
    pub fn union(&self, other: &RevocationList) -> RevocationList {
        let mut next = self.clone();
        for (id, entry) in &other.sessions {
            next.sessions.entry(id.clone()).or_insert_with(|| entry.clone());
        }
        for (id, entry) in &other.users {
            next.users.entry(id.clone()).or_insert_with(|| entry.clone());
        }
        next.issued_before_ms = match (self.issued_before_ms, other.issued_before_ms) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        next
    }

    /// Number of entries of each kind, for `/status`.
    pub fn counts(&self) -> (usize, usize, bool) {
        (self.sessions.len(), self.users.len(), self.issued_before_ms.is_some())
    }
}

/// The shared holder of the current [`RevocationList`].
#[derive(Debug, Default)]
pub struct Revocations {
    list: ArcSwap<RevocationList>,
}

impl Revocations {
    /// Holds `list`.
    pub fn new(list: RevocationList) -> Self {
        Revocations { list: ArcSwap::from_pointee(list) }
    }

    /// The current list (one atomic load).
    #[inline]
    pub fn current(&self) -> arc_swap::Guard<Arc<RevocationList>> {
        self.list.load()
    }

    /// Replaces the list.
    pub fn replace(&self, list: RevocationList) {
        self.list.store(Arc::new(list));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_keeps_every_entry_and_the_later_cut_off() {
        let entry = |actor: &str| Entry { added_at_ms: 1, actor: actor.into(), reason: String::new() };
        let a = RevocationList::default()
            .with(&Revocation::Session("s1".into()), &entry("a"))
            .with(&Revocation::IssuedBefore(5), &entry("a"));
        let b = RevocationList::default()
            .with(&Revocation::Session("s1".into()), &entry("b"))
            .with(&Revocation::User("u1".into()), &entry("b"))
            .with(&Revocation::IssuedBefore(9), &entry("b"));
        let u = a.union(&b);
        assert_eq!(u.sessions["s1"].actor, "a", "an entry in both keeps this list's");
        assert!(u.contains(&RevocationId::User("u1".into())) && u.contains(&RevocationId::IssuedBefore));
        assert_eq!(u.issued_before_ms, Some(9));
        assert!(!a.contains(&RevocationId::User("u1".into())));
    }

    fn entry() -> Entry {
        Entry { added_at_ms: 0, actor: "test".into(), reason: String::new() }
    }

    #[test]
    fn revokes_by_session_user_and_issue_time() {
        let mut list = RevocationList::default();
        list.sessions.insert("sess_gone".into(), entry());
        list.users.insert("user_gone".into(), entry());
        // (user, session, iat) → revoked, with no issued_before cut-off.
        let cases = [
            ("user_ok", Some("sess_ok"), Some(5_000), false),
            ("user_ok", Some("sess_gone"), Some(5_000), true),
            ("user_gone", Some("sess_ok"), Some(5_000), true),
            ("user_gone", None, None, true),
            ("user_ok", None, None, false),
        ];
        for (user, session, iat, revoked) in cases {
            assert_eq!(list.revokes(user, session, iat), revoked, "{user} {session:?} {iat:?}");
        }
        list.issued_before_ms = Some(1_000);
        let cases = [
            (Some(999), true),
            (Some(1_000), false),
            (Some(5_000), false),
            // A token without a usable iat cannot prove it came after the cut-off.
            (None, true),
        ];
        for (iat, revoked) in cases {
            assert_eq!(list.revokes("user_ok", Some("sess_ok"), iat), revoked, "iat {iat:?}");
        }
    }
}
