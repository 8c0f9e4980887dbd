//! Latency summaries: exact percentiles over every recorded sample (a
//! sorted vector; a few hundred thousand samples per phase at most).

use serde::{Deserialize, Serialize};

/// Percentiles of one latency distribution, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Summary {
    /// Summarises samples given in nanoseconds (sorts them in place).
    pub fn from_ns(samples: &mut [u64]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        // Nearest-rank percentile.
        let at = |q: f64| {
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            samples[rank - 1] as f64 / 1000.0
        };
        let sum: u128 = samples.iter().map(|&s| s as u128).sum();
        Summary {
            count: n as u64,
            p50_us: at(0.50),
            p90_us: at(0.90),
            p99_us: at(0.99),
            max_us: samples[n - 1] as f64 / 1000.0,
            mean_us: sum as f64 / n as f64 / 1000.0,
        }
    }
}

/// Unix time in nanoseconds (the clock both the load generator and the
/// sink read, so their difference is ingest→sink latency on this machine).
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
