//! Per-plugin call counters and a latency histogram, kept per plugin name so
//! they survive reloads of the file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

/// Buckets are powers of two in microseconds: bucket i holds calls that
/// took less than 2^i µs (the last one everything slower).
const BUCKETS: usize = 28;

#[derive(Default)]
pub struct PluginStats {
    calls: AtomicU64,
    errors: AtomicU64,
    fresh_instances: AtomicU64,
    total_us: AtomicU64,
    max_us: AtomicU64,
    load_failures: AtomicU64,
    log_lines_cut: AtomicU64,
    kv_conflicts: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatsView {
    pub calls: u64,
    pub errors: u64,
    /// Calls that had to instantiate (no warm instance was free).
    pub fresh_instances: u64,
    pub load_failures: u64,
    /// Log lines past the per-call limit, not written.
    pub log_lines_cut: u64,
    /// Calls run again because a KV key they read changed before commit.
    pub kv_conflicts: u64,
    pub latency_us: LatencyView,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencyView {
    pub mean: u64,
    /// Upper bounds of the histogram buckets holding the percentile.
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
}

impl PluginStats {
    pub fn record_call(&self, elapsed: Duration, failed: bool, fresh: bool) {
        let us = elapsed.as_micros().min(u64::MAX as u128) as u64;
        self.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if fresh {
            self.fresh_instances.fetch_add(1, Ordering::Relaxed);
        }
        self.total_us.fetch_add(us, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        let bucket = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_log_cut(&self, lines: u64) {
        if lines > 0 {
            self.log_lines_cut.fetch_add(lines, Ordering::Relaxed);
        }
    }

    pub fn record_kv_conflict(&self) {
        self.kv_conflicts.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_load_failure(&self) {
        self.load_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub fn view(&self) -> StatsView {
        let calls = self.calls.load(Ordering::Relaxed);
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let max = self.max_us.load(Ordering::Relaxed);
        let percentile = |p: f64| {
            let total: u64 = counts.iter().sum();
            if total == 0 {
                return 0;
            }
            let rank = ((total as f64) * p).ceil() as u64;
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return (1u64 << i).min(max.max(1));
                }
            }
            max
        };
        StatsView {
            calls,
            errors: self.errors.load(Ordering::Relaxed),
            fresh_instances: self.fresh_instances.load(Ordering::Relaxed),
            load_failures: self.load_failures.load(Ordering::Relaxed),
            log_lines_cut: self.log_lines_cut.load(Ordering::Relaxed),
            kv_conflicts: self.kv_conflicts.load(Ordering::Relaxed),
            latency_us: LatencyView {
                mean: self
                    .total_us
                    .load(Ordering::Relaxed)
                    .checked_div(calls)
                    .unwrap_or(0),
                p50: percentile(0.5),
                p99: percentile(0.99),
                max,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_buckets() {
        let s = PluginStats::default();
        for _ in 0..99 {
            s.record_call(Duration::from_micros(10), false, false);
        }
        s.record_call(Duration::from_millis(5), true, true);
        let v = s.view();
        assert_eq!(v.calls, 100);
        assert_eq!(v.errors, 1);
        assert_eq!(v.latency_us.p50, 16);
        assert_eq!(v.latency_us.p99, 16);
        assert_eq!(v.latency_us.max, 5000);
    }
}
