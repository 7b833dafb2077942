//! Wall-clock helpers: milliseconds since the Unix epoch, and RFC 3339 rendering.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `ms` since the epoch as RFC 3339 in UTC with milliseconds, e.g. `2024-01-15T10:30:00.000Z`.
pub fn rfc3339(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    match ::time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
        Ok(t) => {
            let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
            let (h, mi, s, milli) = (t.hour(), t.minute(), t.second(), t.millisecond());
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
        }
        Err(_) => String::from("1970-01-01T00:00:00.000Z"),
    }
}

/// Parses an RFC 3339 timestamp into milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let t = ::time::OffsetDateTime::parse(s, &::time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_parses_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_705_314_600_123), "2024-01-15T10:30:00.123Z");
        assert_eq!(parse_rfc3339("2024-01-15T10:30:00.123Z"), Some(1_705_314_600_123));
        assert_eq!(parse_rfc3339("2024-01-15T11:30:00+01:00"), Some(1_705_314_600_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
