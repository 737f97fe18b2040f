//! Parsers for the human-friendly values the fronts accept: sizes (`256M`), durations (`10s`),
//! CPU shares (`0.5`).

use std::time::Duration;

use thiserror::Error;

/// A value given on the command line (or in an API request) that does not parse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ValueError {
    #[error(
        "invalid size {0:?}: expected a number with an optional K, M, G or T suffix (e.g. 256M)"
    )]
    Size(String),
    #[error("invalid duration {0:?}: expected a number with a ms, s, m or h suffix (e.g. 10s)")]
    Duration(String),
    #[error("invalid cpu count {0:?}: expected a positive number such as 0.5 or 2")]
    Cpus(String),
}

/// Parses a byte size: `1048576`, `512K`, `256M`, `1G`, `1T` (binary units; a trailing `B`
/// or `iB` is accepted). Zero is rejected: no limit is expressed by leaving the option out.
pub fn parse_size(text: &str) -> Result<u64, ValueError> {
    let err = || ValueError::Size(text.to_string());
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 30),
        Some('t' | 'T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let n: u64 = digits.parse().map_err(|_| err())?;
    let bytes = n.checked_mul(1u64 << shift).ok_or_else(err)?;
    if bytes == 0 {
        return Err(err());
    }
    Ok(bytes)
}

/// Parses a duration: `500ms`, `10s`, `2m`, `1h`, or a bare number of seconds. Fractions are
/// allowed (`1.5s`). Zero is rejected.
pub fn parse_duration(text: &str) -> Result<Duration, ValueError> {
    let err = || ValueError::Duration(text.to_string());
    let t = text.trim();
    let (num, unit_secs) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(err());
    }
    let value: f64 = num.parse().map_err(|_| err())?;
    let secs = value * unit_secs;
    if !(secs > 0.0 && secs < 1e9) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a CPU allowance in cores (`0.5` = half a core) into millicores.
pub fn parse_cpus(text: &str) -> Result<u32, ValueError> {
    let err = || ValueError::Cpus(text.to_string());
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(err());
    }
    let cores: f64 = t.parse().map_err(|_| err())?;
    if !(0.001..=4096.0).contains(&cores) {
        return Err(err());
    }
    // Bounded above, so the rounded value fits in u32.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((cores * 1000.0).round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2MB"), Ok(2 << 20));
        for bad in ["abc", "", "M", "-1M", "1.5G", "0", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "ten", "-1s", "0s", "1d"] {
            assert!(parse_duration(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpus("0.5"), Ok(500));
        assert_eq!(parse_cpus("2"), Ok(2000));
        for bad in ["", "0", "-1", "x", "1e3"] {
            assert!(parse_cpus(bad).is_err(), "{bad} should not parse");
        }
    }
}
