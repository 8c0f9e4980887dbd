//! Per-minute counts for the overview's charts, drawn from hookyard's own
//! running totals (no Prometheus needed): a sample of the totals every
//! [`EVERY`], the last hour of them kept.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::model::id::now_ms;
use crate::telemetry::Telemetry;
use crate::telemetry::live::TotalsView;

pub const EVERY: Duration = Duration::from_secs(10);

/// Minutes the charts show.
pub const MINUTES: usize = 30;

/// Samples kept: a little more than the charts need.
const KEPT: usize = (MINUTES + 2) * 60 / EVERY.as_secs() as usize;

#[derive(Default)]
pub struct History {
    samples: Mutex<VecDeque<(u64, TotalsView)>>,
}

impl History {
    /// Samples `telemetry` until the returned history is dropped.
    pub fn start(telemetry: Arc<Telemetry>) -> Arc<History> {
        let h = Arc::new(History::default());
        h.record(now_ms(), telemetry.totals());
        let weak: Weak<History> = Arc::downgrade(&h);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(h) = weak.upgrade() else { return };
                h.record(now_ms(), telemetry.totals());
            }
        });
        h
    }

    pub fn record(&self, at: u64, totals: TotalsView) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        s.push_back((at, totals));
        while s.len() > KEPT {
            s.pop_front();
        }
    }

    /// The totals as they were at `at` (the latest sample at or before it).
    fn at(samples: &VecDeque<(u64, TotalsView)>, at: u64) -> Option<TotalsView> {
        samples
            .iter()
            .rev()
            .find(|(t, _)| *t <= at)
            .map(|(_, v)| *v)
    }

    /// What happened in each of the last [`MINUTES`] minutes, oldest first,
    /// the last one ending `now` with `current` totals. Minutes before the
    /// first sample are left out.
    pub fn per_minute(&self, now: u64, current: TotalsView) -> Vec<TotalsView> {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(MINUTES);
        let Some(&(first, first_totals)) = s.front() else {
            return out;
        };
        for i in (0..MINUTES as u64).rev() {
            let end = now.saturating_sub(i * 60_000);
            if end <= first {
                continue;
            }
            let start = end.saturating_sub(60_000);
            let end_totals = if i == 0 {
                Some(current)
            } else {
                Self::at(&s, end)
            };
            // A minute the samples only partly cover counts from the first.
            let start_totals = Self::at(&s, start).unwrap_or(first_totals);
            if let Some(e) = end_totals {
                out.push(e.since(&start_totals));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(accepted: u64) -> TotalsView {
        TotalsView {
            accepted,
            ..Default::default()
        }
    }

    #[test]
    fn minutes_are_differences_of_samples() {
        let h = History::default();
        for i in 0..=18u64 {
            // 10 a second, sampled every 10 s for three minutes.
            h.record(i * 10_000, t(i * 100));
        }
        let m = h.per_minute(180_000, t(1800));
        let accepted: Vec<u64> = m.iter().map(|v| v.accepted).collect();
        assert_eq!(accepted, vec![600, 600, 600]);
    }
}
