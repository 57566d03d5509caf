//! Wall-clock time, injectable.
//!
//! Token claims (`exp`, `nbf`, `iat`), key staleness and override expiry are all decided by
//! wall-clock time. Everything that decides by time asks a [`Clock`], so tests can freeze and
//! advance it instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time: the system's, or a manual one for tests.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock { manual: None }
    }

    /// A clock frozen at `start` (milliseconds since the Unix epoch) until advanced.
    pub fn manual(start_ms: i64) -> Self {
        Clock { manual: Some(Arc::new(AtomicI64::new(start_ms))) }
    }

    /// Moves a manual clock forward (or back, with a negative amount). No effect on the system clock.
    pub fn advance_ms(&self, ms: i64) {
        if let Some(m) = &self.manual {
            m.fetch_add(ms, Ordering::SeqCst);
        }
    }

    /// Sets a manual clock. No effect on the system clock.
    pub fn set_ms(&self, ms: i64) {
        if let Some(m) = &self.manual {
            m.store(ms, Ordering::SeqCst);
        }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(m) => m.load(Ordering::Relaxed),
            None => system_ms(SystemTime::now()),
        }
    }

    /// The current time as a `SystemTime`.
    pub fn now(&self) -> SystemTime {
        from_ms(self.now_ms())
    }
}

/// Milliseconds since the Unix epoch for a `SystemTime` (negative before 1970).
pub fn system_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The `SystemTime` for milliseconds since the Unix epoch.
pub fn from_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// Milliseconds since the Unix epoch as an RFC 3339 time, to the second (UTC).
pub fn rfc3339(ms: i64) -> String {
    humantime::format_rfc3339_seconds(from_ms(ms)).to_string()
}

/// A duration in milliseconds, saturating.
pub fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The largest distance from the epoch a JavaScript `Date` can hold (ECMA-262 §21.4.1.22):
/// 100,000,000 days either way.
const JS_DATE_LIMIT_MS: i64 = 8_640_000_000_000_000;

/// Formats `ms` as JavaScript's `Date.prototype.toUTCString` does, which is how Clerk's messages
/// show token dates: `Tue, 25 Oct 2022 21:51:50 GMT`.
///
/// Total over every `i64`: years before 1 or after 9999 are written as JavaScript writes them
/// (`-0001`, `10000`), and a moment a `Date` cannot hold is `Invalid Date`, as in JavaScript.
pub fn js_utc_string(ms: i64) -> String {
    const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    if !(-JS_DATE_LIMIT_MS..=JS_DATE_LIMIT_MS).contains(&ms) {
        return "Invalid Date".to_string();
    }
    let days = ms.div_euclid(86_400_000);
    let second_of_day = ms.rem_euclid(86_400_000) / 1000;
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[(days + 4).rem_euclid(7) as usize];
    let sign = if year < 0 { "-" } else { "" };
    format!(
        "{weekday}, {day:02} {} {sign}{:04} {:02}:{:02}:{:02} GMT",
        MONTHS[(month - 1) as usize],
        year.unsigned_abs(),
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    )
}

/// The proleptic Gregorian (year, month 1–12, day 1–31) of a day count from 1970-01-01
/// (Howard Hinnant's `civil_from_days`). Exact for any day a JavaScript `Date` can hold.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn js_utc_string_matches_javascript() {
        // Each expected value is what `new Date(ms).toUTCString()` prints in JavaScript.
        let cases = [
            (1_666_648_310_000, "Mon, 24 Oct 2022 21:51:50 GMT"),
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (-1000, "Wed, 31 Dec 1969 23:59:59 GMT"),
            (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
            (951_782_400_000, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (253_402_300_799_000, "Fri, 31 Dec 9999 23:59:59 GMT"),
            (253_402_300_800_000, "Sat, 01 Jan 10000 00:00:00 GMT"),
            (-62_135_596_800_000, "Mon, 01 Jan 0001 00:00:00 GMT"),
            (-62_135_596_800_001, "Sun, 31 Dec 0000 23:59:59 GMT"),
            (-62_198_755_200_000, "Fri, 01 Jan -0001 00:00:00 GMT"),
            (8_640_000_000_000_000, "Sat, 13 Sep 275760 00:00:00 GMT"),
            (-8_640_000_000_000_000, "Tue, 20 Apr -271821 00:00:00 GMT"),
            (8_640_000_000_000_001, "Invalid Date"),
            (-8_640_000_000_000_001, "Invalid Date"),
            (i64::MAX, "Invalid Date"),
            (i64::MIN, "Invalid Date"),
        ];
        for (ms, expected) in cases {
            assert_eq!(js_utc_string(ms), expected, "{ms}");
        }
    }

    proptest! {
        /// Within httpdate's range (1970..=9999) the two formatters agree; everywhere else
        /// `js_utc_string` still answers.
        #[test]
        fn js_utc_string_agrees_with_httpdate_and_is_total(ms in any::<i64>(), s in 0i64..253_402_300_800) {
            let _ = js_utc_string(ms);
            prop_assert_eq!(js_utc_string(s * 1000), httpdate::fmt_http_date(from_ms(s * 1000)));
        }
    }
}
