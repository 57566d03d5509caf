//! The fleet's key names: `<key_prefix>:{<fleet>}:<name>`. The braces are Redis Cluster's hash
//! tag, so every key of a fleet lives in one slot and one script can write them all.

/// The keys of one fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Random id made by the first write; another one means the store lost or flushed its data.
    pub store_id: String,
    /// The change counter (`INCR` per change).
    pub epoch: String,
    /// The fleet's mode override (JSON), with a TTL a little past its expiry (cleanup only).
    pub mode: String,
    /// The fleet's revocations: `sid:<id>`, `uid:<id>`, `issued_before` → JSON.
    pub revocations: String,
    /// One entry per change: `epoch`, `change` (JSON).
    pub events: String,
    /// One entry per audit record: `origin`, `seq`, `record` (JSON).
    pub audit: String,
    /// Gateway id → its acknowledgement (JSON), refreshed as a heartbeat.
    pub acks: String,
}

impl Names {
    /// The names for `fleet` under `prefix`.
    pub fn new(prefix: &str, fleet: &str) -> Names {
        let key = |name: &str| format!("{prefix}:{{{fleet}}}:{name}");
        Names {
            store_id: key("store_id"),
            epoch: key("epoch"),
            mode: key("mode"),
            revocations: key("revocations"),
            events: key("events"),
            audit: key("audit"),
            acks: key("acks"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shares_the_fleets_hash_tag() {
        let n = Names::new("clerkgate", "prod");
        assert_eq!(n.mode, "clerkgate:{prod}:mode");
        for key in [&n.store_id, &n.epoch, &n.mode, &n.revocations, &n.events, &n.audit, &n.acks] {
            assert!(key.starts_with("clerkgate:{prod}:"), "{key}");
        }
    }
}
