//! Per-source token bucket: a burst of `burst` requests, refilled at
//! `per_second`. Over the limit the source answers 429 with `Retry-After`,
//! which providers honour, instead of letting one sender starve the rest.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest wait [`TokenBucket::take`] reports. The config keeps rates
/// where waits are far shorter; this only keeps arithmetic on the answer
/// (a `Retry-After`, a sleep) finite whatever the bucket was built with.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A rate that is not a positive number behaves as "almost never"; a
    /// burst below one as one.
    pub fn new(per_second: f64, burst: f64) -> TokenBucket {
        let rate = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else if per_second == f64::INFINITY {
            f64::MAX
        } else {
            f64::MIN_POSITIVE
        };
        let burst = if burst.is_nan() {
            1.0
        } else {
            burst.clamp(1.0, f64::MAX)
        };
        TokenBucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn take(&self) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let refill = now.duration_since(s.1).as_secs_f64() * self.rate;
        s.0 = (s.0 + refill).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            Ok(())
        } else {
            // A tiny rate makes this huge (or infinite): saturate instead of
            // panicking the way `Duration::from_secs_f64` would.
            let wait = Duration::try_from_secs_f64((1.0 - s.0) / self.rate).unwrap_or(MAX_WAIT);
            Err(wait.min(MAX_WAIT))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let b = TokenBucket::new(10.0, 3.0);
        assert!(b.take().is_ok());
        assert!(b.take().is_ok());
        assert!(b.take().is_ok());
        let wait = b.take().unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        std::thread::sleep(Duration::from_millis(120));
        assert!(b.take().is_ok());
    }

    #[test]
    fn absurd_rates_saturate_instead_of_panicking() {
        for (rate, burst) in [
            (1e-30, 1.0),
            (0.0, 1.0),
            (-5.0, 1.0),
            (f64::NAN, f64::NAN),
            (f64::MIN_POSITIVE, 0.0),
        ] {
            let b = TokenBucket::new(rate, burst);
            assert!(b.take().is_ok(), "{rate}: the burst passes");
            for _ in 0..3 {
                assert_eq!(b.take(), Err(MAX_WAIT), "{rate}");
            }
        }
        let b = TokenBucket::new(f64::INFINITY, f64::INFINITY);
        for _ in 0..100 {
            assert!(b.take().is_ok());
        }
    }
}
