//! Clerk webhook (Svix / Standard Webhooks) signature verification, as Clerk's `verifyWebhook`
//! does it (clerk-semantics §6): HMAC-SHA256 over `<svix-id>.<timestamp>.<raw body>` with the
//! base64 secret (a `whsec_` prefix is optional), five minutes of tolerance either way, any
//! `v1,<signature>` entry of the space-separated list may match any of the configured secrets
//! (several during a rotation), compared in constant time.

use http::HeaderMap;

use crate::webhooks::svix;

/// Allowed distance between the webhook's timestamp and now, in seconds.
pub const TOLERANCE_S: i64 = 300;

/// JavaScript `parseInt(text, 10)`: optional sign and the leading digits; `None` for NaN.
fn parse_int(text: &str) -> Option<i64> {
    let t = text.trim_start();
    let (sign, digits) = match t.as_bytes().first() {
        Some(b'-') => (-1, &t[1..]),
        Some(b'+') => (1, &t[1..]),
        _ => (1, t),
    };
    let end = digits.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    digits[..end.min(18)].parse::<i64>().ok().map(|n| sign * n)
}

/// A delivery whose signature verified: its id and its timestamp as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// `svix-id`, trimmed.
    pub id: String,
    /// `svix-timestamp`, as the signature covers it.
    pub timestamp_s: i64,
}

/// Verifies a delivery against every secret in `secrets` (several during a rotation: any one
/// may match any `v1` entry). `Err` carries the message Clerk's verifier would give.
pub fn verify<'s>(
    secrets: impl IntoIterator<Item = &'s str>,
    headers: &HeaderMap,
    body: &[u8],
    now_s: i64,
) -> Result<Verified, String> {
    let secrets: Vec<&str> =
        secrets.into_iter().filter(|s| !s.strip_prefix("whsec_").unwrap_or(s).is_empty()).collect();
    if secrets.is_empty() {
        return Err("Missing webhook signing secret".into());
    }
    let keys: Vec<Vec<u8>> = secrets.iter().filter_map(|s| svix::decode_secret(s)).collect();
    if keys.is_empty() {
        return Err("The webhook signing secret is not base64".into());
    }
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    let (id, ts, sigs) = (get("svix-id"), get("svix-timestamp"), get("svix-signature"));
    let missing: Vec<&str> = [("svix-id", id), ("svix-timestamp", ts), ("svix-signature", sigs)]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(n, _)| *n)
        .collect();
    let (Some(id), Some(ts), Some(sigs)) = (id, ts, sigs) else {
        return Err(format!("Missing required webhook headers: {}", missing.join(", ")));
    };
    let ts = parse_int(ts).ok_or("Invalid Signature Headers")?;
    if now_s - ts > TOLERANCE_S {
        return Err("Message timestamp too old".into());
    }
    if ts > now_s + TOLERANCE_S {
        return Err("Message timestamp too new".into());
    }
    let offered: Vec<&str> = sigs
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .map(|(_, sig)| sig)
        .collect();
    let matched = keys.iter().any(|key| {
        let expected = svix::signature(key, id, ts, body);
        offered
            .iter()
            .any(|sig| aws_lc_rs::constant_time::verify_slices_are_equal(sig.as_bytes(), expected.as_bytes()).is_ok())
    });
    if matched {
        Ok(Verified { id: id.to_string(), timestamp_s: ts })
    } else {
        Err("No matching signature found".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(id: &str, ts: &str, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [("svix-id", id), ("svix-timestamp", ts), ("svix-signature", sig)] {
            h.insert(k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_published_vector_verifies_with_and_without_the_prefix() {
        let h = headers(ID, &TS.to_string(), SIG);
        assert_eq!(verify([SECRET], &h, BODY, TS).map(drop), Ok(()));
        assert_eq!(verify([&SECRET[6..]], &h, BODY, TS).map(drop), Ok(()));
        // Case 72: a fractional timestamp string is read as its integer part.
        assert_eq!(verify([SECRET], &headers(ID, "1614265330.5", SIG), BODY, TS).map(drop), Ok(()));
    }

    #[test]
    fn clerks_cases_70_to_75() {
        let ts = TS.to_string();
        // (secret, headers, body, now, expected error)
        type Case<'a> = (Option<&'a str>, HeaderMap, &'a [u8], i64, &'a str);
        let cases: Vec<Case<'_>> = vec![
            (
                Some(SECRET),
                HeaderMap::new(),
                BODY,
                TS,
                "Missing required webhook headers: svix-id, svix-timestamp, svix-signature",
            ),
            (Some(SECRET), headers(" ", &ts, SIG), BODY, TS, "Missing required webhook headers: svix-id"),
            (None, headers(ID, &ts, SIG), BODY, TS, "Missing webhook signing secret"),
            (Some("whsec_"), headers(ID, &ts, SIG), BODY, TS, "Missing webhook signing secret"),
            (Some(SECRET), headers(ID, &ts, "v1,invalid_signature_here"), BODY, TS, "No matching signature found"),
            (Some(SECRET), headers(ID, &ts, "v1,"), BODY, TS, "No matching signature found"),
            (
                Some(SECRET),
                headers(ID, &ts, "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="),
                BODY,
                TS,
                "No matching signature found",
            ),
            (Some(SECRET), headers(ID, &ts, SIG), b"{\"test\": 1}", TS, "No matching signature found"),
            (Some(SECRET), headers(ID, &ts, SIG), BODY, TS + 301, "Message timestamp too old"),
            (Some(SECRET), headers(ID, &ts, SIG), BODY, TS - 301, "Message timestamp too new"),
            (Some(SECRET), headers(ID, "hello", SIG), BODY, TS, "Invalid Signature Headers"),
        ];
        for (secret, h, body, now, want) in cases {
            assert_eq!(verify(secret, &h, body, now), Err(want.to_string()), "{h:?}");
        }
        // Exactly 300 s either way is accepted; one valid entry among invalid ones is enough.
        let h = headers(ID, &ts, SIG);
        assert_eq!(verify(Some(SECRET), &h, BODY, TS + 300).map(drop), Ok(()));
        assert_eq!(verify(Some(SECRET), &h, BODY, TS - 300).map(drop), Ok(()));
        let mixed = headers(ID, &ts, &format!("v1,bad v1a,x {SIG}"));
        assert_eq!(verify(Some(SECRET), &mixed, BODY, TS).map(drop), Ok(()));
    }

    #[test]
    fn during_a_rotation_any_secret_may_match_any_entry() {
        const NEW: &str = "whsec_bmV3LXNlY3JldC1mb3ItdGhlLWVuZHBvaW50";
        let h = headers(ID, &TS.to_string(), SIG);
        let verified = verify([NEW, SECRET], &h, BODY, TS).expect("the old secret still verifies");
        assert_eq!(verified, Verified { id: ID.into(), timestamp_s: TS });
        assert_eq!(verify([NEW], &h, BODY, TS), Err("No matching signature found".into()));
        // Svix signs with both keys during its own rotation: either entry is enough.
        let by_new = svix::sign(NEW, ID, TS, BODY).expect("sign");
        let both = headers(ID, &TS.to_string(), &format!("{by_new} {SIG}"));
        assert!(verify([NEW], &both, BODY, TS).is_ok());
        assert!(verify([SECRET], &both, BODY, TS).is_ok());
        // A broken secret beside a good one does not stop the good one.
        assert!(verify(["whsec_?", SECRET], &h, BODY, TS).is_ok());
    }

    proptest! {
        #[test]
        fn never_panics(id in "\\PC{0,20}", ts in "\\PC{0,20}", sig in "\\PC{0,80}", body in proptest::collection::vec(any::<u8>(), 0..64), secret in "\\PC{0,40}") {
            let mut h = HeaderMap::new();
            for (k, v) in [("svix-id", id), ("svix-timestamp", ts), ("svix-signature", sig)] {
                if let Ok(v) = v.parse() { h.insert(k, v); }
            }
            let _ = verify(Some(secret.as_str()), &h, &body, TS);
        }
    }
}
