//! Durations that are accepted but look unwise (SPEC §2: any positive duration is accepted,
//! an unwise one is warned about). One table, read by the validator for every duration key and
//! mirrored in the README's "Warns when" column (a unit test keeps the two in step).

use std::time::Duration;

/// One side of a sensible range: beyond it the value is warned about, with why.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limit {
    /// The limit as the README writes it, e.g. `7d`.
    pub(super) text: &'static str,
    /// The limit itself.
    pub(super) value: Duration,
    /// What the operator gets with a value beyond it.
    pub(super) why: &'static str,
}

/// The sensible range of one duration key.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sensible {
    /// The dotted key.
    pub(super) key: &'static str,
    /// Shorter than this is warned about.
    pub(super) under: Option<Limit>,
    /// Longer than this is warned about.
    pub(super) over: Option<Limit>,
}

const fn limit(text: &'static str, secs: u64, why: &'static str) -> Option<Limit> {
    Some(Limit { text, value: Duration::from_secs(secs), why })
}

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Every duration key with a range outside which it is warned about.
pub(super) const SENSIBLE_DURATIONS: &[Sensible] = &[
    Sensible {
        key: "server.header_read_timeout",
        under: limit("1s", 1, "clients on slow networks are cut off before their request head arrives"),
        over: limit("10m", 10 * MINUTE, "a client that trickles its headers holds a connection that long"),
    },
    Sensible {
        key: "server.idle_timeout",
        under: limit("1s", 1, "keep-alive connections close between requests, so clients keep reconnecting"),
        over: limit("10m", 10 * MINUTE, "idle connections hold a descriptor each that long"),
    },
    Sensible {
        key: "server.request_body_timeout",
        under: limit("1s", 1, "an upload that pauses briefly is refused with 408"),
        over: limit("10m", 10 * MINUTE, "a stalled upload holds a connection and an upstream request that long"),
    },
    Sensible {
        key: "server.send_timeout",
        under: limit("1s", 1, "a client on a slow link is cut off in the middle of a response"),
        over: limit("10m", 10 * MINUTE, "a client that stops reading holds upstream capacity that long"),
    },
    Sensible {
        key: "clerk.clock_skew",
        under: None,
        over: limit("60s", MINUTE, "it widens every token's validity window; fix the clock instead"),
    },
    Sensible {
        key: "clerk.keys.refresh_interval",
        under: limit("10s", 10, "every gateway fetches the JWKS that often"),
        over: None,
    },
    Sensible {
        key: "clerk.keys.unknown_kid_cooldown",
        under: limit("1s", 1, "a flood of tokens naming unknown kids reaches the JWKS that often"),
        over: None,
    },
    Sensible {
        key: "clerk.keys.max_stale",
        under: None,
        over: limit(
            "7d",
            7 * DAY,
            "a key Clerk has rotated out keeps verifying that long while the JWKS is unreachable",
        ),
    },
    Sensible {
        key: "mode.grace_max_expired",
        under: None,
        over: limit("24h", DAY, "grace accepts session tokens expired that long (Clerk's live 60 seconds)"),
    },
    Sensible {
        key: "mode.max_override_ttl",
        under: None,
        over: limit("24h", DAY, "a forgotten bypass or grace stays in force that long"),
    },
    Sensible {
        key: "state.redis.heartbeat",
        under: limit("1s", 1, "every gateway writes its acknowledgement to Redis that often"),
        over: limit("60s", MINUTE, "`fleet status` sees a gateway that stopped only that late"),
    },
];

/// The warning for `key = text` (parsed as `value`), when the value is outside its range.
pub(super) fn warning(key: &str, text: &str, value: Duration) -> Option<String> {
    let range = SENSIBLE_DURATIONS.iter().find(|s| s.key == key)?;
    let text = text.trim();
    match (range.under, range.over) {
        (Some(l), _) if value < l.value => Some(format!("\"{text}\" is under {}: {}", l.text, l.why)),
        (_, Some(l)) if value > l.value => Some(format!("\"{text}\" is over {}: {}", l.text, l.why)),
        _ => None,
    }
}
