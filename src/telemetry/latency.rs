//! A latency histogram that serves two readers: `/metrics` gets the usual
//! buckets ([`LATENCY_BUCKETS`]), and the admin API gets percentiles fine
//! enough for calls of a few microseconds, plus the maximum.
//!
//! A Prometheus histogram alone could do neither: its lowest bucket is
//! half a millisecond (so every fast plugin call would read "p50 ≤ 500 µs"),
//! and it has no maximum. So the counts are kept in finer buckets (powers
//! of two microseconds) that include every bound of [`LATENCY_BUCKETS`],
//! and the exposition adds them up at those bounds, exactly.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use serde::Serialize;

/// Bounds in seconds of the exposed buckets for plugin call and delivery
/// attempt times: fine below 10 ms, where a healthy plugin call or store
/// write lands, and reaching 30 s, the longest a delivery attempt is worth
/// telling apart from a timeout.
pub(super) const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Upper bounds (inclusive) of the kept buckets in nanoseconds: 1 µs to
/// 2^27 µs (134 s) by powers of two, and every exposed bound. One more
/// bucket holds whatever is slower.
static BOUNDS_NS: LazyLock<Vec<u64>> = LazyLock::new(|| {
    let mut b: Vec<u64> = (0..28).map(|i| (1u64 << i) * 1000).collect();
    b.extend(LATENCY_BUCKETS.iter().map(|s| (s * 1e9).round() as u64));
    b.sort_unstable();
    b.dedup();
    b
});

/// The admin API's view of a latency histogram, in microseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencyView {
    pub mean: u64,
    /// Upper bounds of the buckets holding the percentile (at most `max`).
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Debug)]
pub(super) struct Latency {
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            counts: (0..=BOUNDS_NS.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

impl Latency {
    pub(super) fn observe(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let slot = BOUNDS_NS.partition_point(|b| *b < ns);
        self.counts[slot].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
        self.max_ns.fetch_max(ns, Relaxed);
    }

    fn counts(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Relaxed)).collect()
    }

    /// The count is the sum of the buckets, read once, so a view racing
    /// with `observe` is still consistent with itself.
    pub(super) fn view(&self) -> LatencyView {
        let counts = self.counts();
        let total: u64 = counts.iter().sum();
        let max_us = self.max_ns.load(Relaxed) / 1000;
        let percentile = |p: f64| {
            if total == 0 {
                return 0;
            }
            let rank = ((total as f64) * p).ceil() as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return BOUNDS_NS
                        .get(i)
                        .map_or(max_us, |b| (b / 1000).min(max_us.max(1)));
                }
            }
            max_us
        };
        LatencyView {
            mean: (self.sum_ns.load(Relaxed) / 1000)
                .checked_div(total)
                .unwrap_or(0),
            p50: percentile(0.5),
            p99: percentile(0.99),
            max: max_us,
        }
    }
}

impl TypedMetric for Latency {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder) -> std::fmt::Result {
        let counts = self.counts();
        // Per exposed bucket (not cumulative: the encoder adds them up),
        // then the rest under +Inf.
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
        let mut slot = 0;
        for &bound in LATENCY_BUCKETS {
            let bound_ns = (bound * 1e9).round() as u64;
            let mut n = 0;
            while slot < BOUNDS_NS.len() && BOUNDS_NS[slot] <= bound_ns {
                n += counts[slot];
                slot += 1;
            }
            buckets.push((bound, n));
        }
        buckets.push((f64::INFINITY, counts[slot..].iter().sum()));
        let count = counts.iter().sum();
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_fine_buckets() {
        let l = Latency::default();
        for _ in 0..99 {
            l.observe(Duration::from_micros(10));
        }
        l.observe(Duration::from_millis(5));
        let v = l.view();
        assert_eq!(v.p50, 16);
        assert_eq!(v.p99, 16);
        assert_eq!(v.max, 5000);
        assert_eq!(v.mean, 59);
        assert_eq!(Latency::default().view().p50, 0);
    }

    #[test]
    fn every_exposed_bound_is_a_kept_bound() {
        for b in LATENCY_BUCKETS {
            let ns = (b * 1e9).round() as u64;
            assert!(BOUNDS_NS.contains(&ns), "{b}");
        }
        assert!(BOUNDS_NS.windows(2).all(|w| w[0] < w[1]));
    }
}
