//! When to try a failed delivery again.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// Delay before the attempt after attempt `n` (1-based) failed, or `None`
/// when the schedule is exhausted and the delivery is dead. Jitter (± that
/// fraction) spreads retries of a burst so a recovering target is not hit
/// all at once. A `Retry-After` may lengthen the delay but never shorten
/// it: a target answering `Retry-After: 0` (or a past date) would otherwise
/// spend every attempt within milliseconds and go dead.
pub fn next_delay(
    schedule: &[Duration],
    n: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let base = *schedule.get(n.checked_sub(1)? as usize)?;
    let step = if jitter <= 0.0 {
        base
    } else {
        let factor = rand::rng().random_range(1.0 - jitter..=1.0 + jitter);
        base.mul_f64(factor)
    };
    Some(match retry_after {
        // The target told us when it can take more: never earlier than that.
        Some(ra) => step.max(ra),
        None => step,
    })
}

/// Parses `Retry-After` (delta-seconds or an HTTP date), capped at `max`.
pub fn parse_retry_after(value: &str, max: Duration) -> Option<Duration> {
    let value = value.trim();
    let d = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let when = httpdate::parse_http_date(value).ok()?;
        when.duration_since(SystemTime::now()).unwrap_or_default()
    };
    Some(d.min(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_then_dead() {
        let s = [Duration::from_secs(5), Duration::from_secs(300)];
        let d1 = next_delay(&s, 1, None, 0.2).unwrap();
        assert!(d1 >= Duration::from_secs(4) && d1 <= Duration::from_secs(6));
        assert!(next_delay(&s, 2, None, 0.2).unwrap() >= Duration::from_secs(240));
        assert_eq!(next_delay(&s, 3, None, 0.2), None);
    }

    #[test]
    fn retry_after_wins_but_not_past_the_end() {
        let s = [Duration::from_secs(5)];
        assert_eq!(
            next_delay(&s, 1, Some(Duration::from_secs(42)), 0.2),
            Some(Duration::from_secs(42))
        );
        assert_eq!(next_delay(&s, 2, Some(Duration::from_secs(42)), 0.2), None);
    }

    #[test]
    fn retry_after_never_shortens_the_schedule() {
        let s = [Duration::from_secs(5), Duration::from_secs(300)];
        for _ in 0..100 {
            let d = next_delay(&s, 1, Some(Duration::ZERO), 0.2).unwrap();
            assert!(d >= Duration::from_secs(4), "{d:?}");
            let d = next_delay(&s, 2, Some(Duration::from_secs(10)), 0.2).unwrap();
            assert!(d >= Duration::from_secs(240), "{d:?}");
        }
        assert_eq!(
            next_delay(&s, 1, Some(Duration::from_secs(1)), 0.0),
            Some(Duration::from_secs(5))
        );
        // A past HTTP date parses as zero: the schedule's step applies.
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
        let ra = parse_retry_after(&past, Duration::from_secs(3600));
        assert_eq!(ra, Some(Duration::ZERO));
        assert_eq!(next_delay(&s, 1, ra, 0.0), Some(Duration::from_secs(5)));
    }

    #[test]
    fn retry_after_forms() {
        let max = Duration::from_secs(3600);
        assert_eq!(
            parse_retry_after("120", max),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after("999999", max), Some(max));
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
        let d = parse_retry_after(&future, max).unwrap();
        assert!(d > Duration::from_secs(55) && d <= Duration::from_secs(60));
        assert_eq!(parse_retry_after("soon", max), None);
    }
}
