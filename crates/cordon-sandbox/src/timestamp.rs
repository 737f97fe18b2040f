//! RFC 3339 timestamps in UTC for state files, logs and reports, without a date crate.

use std::time::{SystemTime, UNIX_EPOCH};

/// How many fractional digits a timestamp carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// `2026-11-23T15:04:05Z`
    Seconds,
    /// `2026-11-23T15:04:05.123456789Z`
    Nanos,
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (Howard Hinnant's
/// civil-from-days algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).unwrap_or(0),
        u32::try_from(day).unwrap_or(0),
    )
}

/// `t` as RFC 3339 UTC; times before the epoch print as the epoch.
pub fn rfc3339(t: SystemTime, precision: Precision) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    match precision {
        Precision::Seconds => format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
        Precision::Nanos => format!(
            "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:09}Z",
            since.subsec_nanos()
        ),
    }
}

/// The current time as RFC 3339 UTC.
pub fn now_rfc3339(precision: Precision) -> String {
    rfc3339(SystemTime::now(), precision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn formats() {
        let t = UNIX_EPOCH + Duration::new(1_795_446_245, 42);
        assert_eq!(rfc3339(t, Precision::Seconds), "2026-11-23T15:04:05Z");
        assert_eq!(
            rfc3339(t, Precision::Nanos),
            "2026-11-23T15:04:05.000000042Z"
        );
        let before = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(rfc3339(before, Precision::Seconds), "1970-01-01T00:00:00Z");
    }
}
