//! Clerk webhook (Svix / Standard Webhooks) signature verification, as Clerk's `verifyWebhook`
//! does it (clerk-semantics §6): HMAC-SHA256 over `<svix-id>.<timestamp>.<raw body>` with the
//! base64 secret (a `whsec_` prefix is optional), five minutes of tolerance either way, any
//! `v1,<signature>` entry of the space-separated list may match, compared in constant time.

use base64::Engine;
use http::HeaderMap;

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

/// Verifies a delivery. `Err` carries the message Clerk's verifier would give.
pub fn verify(secret: Option<&str>, headers: &HeaderMap, body: &[u8], now_s: i64) -> Result<(), String> {
    let secret = secret.map(|s| s.strip_prefix("whsec_").unwrap_or(s)).filter(|s| !s.is_empty());
    let Some(secret) = secret else { return Err("Missing webhook signing secret".into()) };
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret)
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or("The webhook signing secret is not base64")?;
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
    let hmac_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &key);
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&hmac_key);
    ctx.update(format!("{id}.{ts}.").as_bytes());
    ctx.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(ctx.sign().as_ref());
    let matched = sigs.split(' ').filter_map(|entry| entry.split_once(',')).any(|(version, sig)| {
        version == "v1"
            && aws_lc_rs::constant_time::verify_slices_are_equal(sig.as_bytes(), expected.as_bytes()).is_ok()
    });
    if matched {
        Ok(())
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
        assert_eq!(verify(Some(SECRET), &h, BODY, TS), Ok(()));
        assert_eq!(verify(Some(&SECRET[6..]), &h, BODY, TS), Ok(()));
        // Case 72: a fractional timestamp string is read as its integer part.
        assert_eq!(verify(Some(SECRET), &headers(ID, "1614265330.5", SIG), BODY, TS), Ok(()));
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
        assert_eq!(verify(Some(SECRET), &h, BODY, TS + 300), Ok(()));
        assert_eq!(verify(Some(SECRET), &h, BODY, TS - 300), Ok(()));
        let mixed = headers(ID, &ts, &format!("v1,bad v1a,x {SIG}"));
        assert_eq!(verify(Some(SECRET), &mixed, BODY, TS), Ok(()));
    }

    proptest! {
        #[test]
        fn never_panics(id in "\\PC{0,20}", ts in "\\PC{0,20}", sig in "\\PC{0,80}", body in proptest::collection::vec(any::<u8>(), 0..64), secret in "\\PC{0,40}") {
            let mut h = HeaderMap::new();
            for (k, v) in [("svix-id", id), ("svix-timestamp", ts), ("svix-signature", sig)] {
                if let Ok(v) = v.parse() { h.insert(k, v); }
            }
            let _ = verify(Some(&secret), &h, &body, TS);
        }
    }
}
