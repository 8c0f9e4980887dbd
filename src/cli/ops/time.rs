//! Times on the command line: the `--since`/`--until` window, resolved to
//! the unix milliseconds the admin API takes, and the tail's poll interval.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;

/// A time range; times are unix ms, RFC 3339 UTC, or a duration ago.
#[derive(Args, Debug, Clone, Default)]
pub(super) struct Window {
    /// From this time: unix ms, RFC 3339 UTC (2026-11-23T10:00:00Z) or a
    /// duration ago (15m, 2h, 7d).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub(super) since: Option<u64>,
    /// Up to this time (same forms as --since).
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    pub(super) until: Option<u64>,
}

/// `--since`/`--until`: unix ms as the API takes them, an RFC 3339 UTC
/// time (or a bare date), or a duration meaning that long ago. Resolved to
/// ms here so the server sees one unambiguous form.
fn parse_time(s: &str) -> Result<u64, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|e| format!("{s:?}: {e}"));
    }
    let rfc3339 = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_string()
    };
    if let Ok(t) = humantime::parse_rfc3339_weak(&rfc3339) {
        return Ok(unix_ms(t));
    }
    if let Ok(ago) = humantime::parse_duration(s) {
        return Ok(unix_ms(SystemTime::now()).saturating_sub(ago.as_millis() as u64));
    }
    Err(format!(
        "{s:?}: expected unix milliseconds, an RFC 3339 UTC time (2026-11-23T10:00:00Z) \
         or a duration ago (15m, 2h, 7d)"
    ))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The tail's poll interval; zero would hammer the server.
pub(super) fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e} (e.g. 500ms, 2s)"))?;
    if d < Duration::from_millis(50) {
        return Err(format!("{s:?}: at least 50ms"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_ms_rfc3339_dates_and_durations_ago() {
        assert_eq!(parse_time("1763892000000"), Ok(1_763_892_000_000));
        assert_eq!(parse_time("2025-11-23T10:00:00Z"), Ok(1_763_892_000_000));
        assert_eq!(parse_time("2025-11-23T10:00:00.5Z"), Ok(1_763_892_000_500));
        assert_eq!(parse_time("2025-11-23"), Ok(1_763_856_000_000));
        let now = unix_ms(SystemTime::now());
        let ago = parse_time("1h").unwrap();
        assert!(
            ago <= now - 3_600_000 && ago > now - 3_700_000,
            "{ago} vs {now}"
        );
        let err = parse_time("yesterday").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn the_interval_must_be_sane() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("soon").is_err());
    }
}
