//! One target's health: operator controls (pause, disable), the circuit
//! breaker and running figures. Pure state transitions, so the policy is
//! testable without a network; the dispatcher applies them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::TargetPolicy;
use crate::model::word::Word;

/// Why a target is disabled, and since when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disabled {
    pub reason: String,
    pub at: u64,
}

/// The part of a target's state that survives a restart: an operator's
/// pause, a disable, and an open circuit must not be forgotten by a crash.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Control {
    pub paused: bool,
    pub disabled: Option<Disabled>,
    /// Set while the circuit is open: no attempts before this (unix ms),
    /// then one probe.
    pub open_until: Option<u64>,
    /// Failed probes in a row (the cool-down doubles with each).
    pub opens: u32,
    pub consecutive_failures: u32,
    /// Start of the current run of failures.
    pub failing_since: Option<u64>,
}

/// A target's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Circuit {
    /// Delivering.
    Closed,
    /// Failing: nothing goes until the cool-down ends.
    Open,
    /// The cool-down ended: one probe goes (or is in flight).
    HalfOpen,
}

impl Word for Circuit {
    const ALL: &'static [Circuit] = &[Circuit::Closed, Circuit::Open, Circuit::HalfOpen];

    fn as_str(self) -> &'static str {
        match self {
            Circuit::Closed => "closed",
            Circuit::Open => "open",
            Circuit::HalfOpen => "half_open",
        }
    }
}

/// Whether the dispatcher may start an attempt now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Yes; `probe` means it is the single half-open probe.
    Go { probe: bool },
    /// Not now: wait for a wake-up, or at most this long.
    Wait(Option<Duration>),
}

/// Live state of one target.
#[derive(Debug, Default)]
pub struct TargetState {
    pub control: Control,
    /// The half-open probe is in flight.
    pub probing: bool,
    pub in_flight: usize,
    pub succeeded: u64,
    pub failed: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<u64>,
    pub last_success_at: Option<u64>,
}

impl TargetState {
    pub fn gate(&self, now: u64) -> Gate {
        if self.control.paused || self.control.disabled.is_some() {
            return Gate::Wait(None);
        }
        match self.control.open_until {
            Some(until) if now < until => Gate::Wait(Some(Duration::from_millis(until - now))),
            Some(_) if self.probing => Gate::Wait(None),
            Some(_) => Gate::Go { probe: true },
            None => Gate::Go { probe: false },
        }
    }

    /// Where the circuit stands at `now`.
    pub fn circuit_state(&self, now: u64) -> Circuit {
        match self.control.open_until {
            None => Circuit::Closed,
            Some(until) if now < until => Circuit::Open,
            Some(_) => Circuit::HalfOpen,
        }
    }

    /// [`TargetState::circuit_state`] as its word, for labels.
    pub fn circuit(&self, now: u64) -> &'static str {
        self.circuit_state(now).as_str()
    }

    /// Records a successful attempt; true when the persisted part changed.
    pub fn on_success(&mut self, now: u64) -> bool {
        self.succeeded += 1;
        self.last_success_at = Some(now);
        let before = self.control.clone();
        self.control.open_until = None;
        self.control.opens = 0;
        self.control.consecutive_failures = 0;
        self.control.failing_since = None;
        before.open_until.is_some()
    }

    /// Records a failed attempt (`status`: the HTTP status if one came
    /// back); true when the persisted part changed. `probe` says the attempt
    /// was the half-open probe.
    pub fn on_failure(
        &mut self,
        now: u64,
        status: Option<u16>,
        error: &str,
        probe: bool,
        policy: &TargetPolicy,
    ) -> bool {
        self.failed += 1;
        self.last_error = Some(error.to_string());
        self.last_error_at = Some(now);
        let c = &mut self.control;
        c.consecutive_failures += 1;
        let since = *c.failing_since.get_or_insert(now);
        let mut changed = false;
        if c.disabled.is_none() {
            if status == Some(410) {
                c.disabled = Some(Disabled {
                    reason: "the target answered 410 Gone: it asked not to be sent to again".into(),
                    at: now,
                });
                changed = true;
            } else if now.saturating_sub(since) >= policy.disable_after.as_millis() as u64 {
                c.disabled = Some(Disabled {
                    reason: format!(
                        "failing without a success for {} ({} attempts in a row; last: {error})",
                        humantime::format_duration(Duration::from_secs((now - since) / 1000)),
                        c.consecutive_failures
                    ),
                    at: now,
                });
                changed = true;
            }
        }
        if probe {
            // The probe failed: stay open, and wait longer each time.
            let factor = 1u32 << c.opens.min(4);
            c.open_until = Some(now + (policy.breaker_cooldown * factor).as_millis() as u64);
            c.opens += 1;
            changed = true;
        } else if c.open_until.is_none()
            && policy.breaker_failures > 0
            && c.consecutive_failures >= policy.breaker_failures
        {
            c.open_until = Some(now + policy.breaker_cooldown.as_millis() as u64);
            c.opens = 1;
            changed = true;
        }
        changed
    }

    /// An operator's "enable": clears a disable and closes the circuit.
    pub fn enable(&mut self) {
        self.control.disabled = None;
        self.control.open_until = None;
        self.control.opens = 0;
        self.control.consecutive_failures = 0;
        self.control.failing_since = None;
    }

    /// Share of attempts that succeeded, if there were any.
    pub fn success_rate(&self) -> Option<f64> {
        let total = self.succeeded + self.failed;
        (total > 0).then(|| self.succeeded as f64 / total as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_states_are_spelled_alike_everywhere() {
        crate::model::word::assert_serde_agrees::<Circuit>();
    }

    fn policy() -> TargetPolicy {
        let c = crate::config::Config::parse(
            "[delivery]\nbreaker_failures = 3\nbreaker_cooldown = \"1s\"\ndisable_after = \"1h\"\n",
            std::path::Path::new("/"),
        )
        .unwrap();
        c.delivery.policy
    }

    #[test]
    fn opens_after_consecutive_failures_then_probes_and_closes() {
        let p = policy();
        let mut s = TargetState::default();
        assert_eq!(s.gate(0), Gate::Go { probe: false });
        assert!(!s.on_failure(10, Some(500), "HTTP 500", false, &p));
        assert!(!s.on_failure(20, Some(500), "HTTP 500", false, &p));
        assert!(s.on_failure(30, Some(500), "HTTP 500", false, &p));
        assert_eq!(s.circuit(31), "open");
        assert_eq!(s.gate(31), Gate::Wait(Some(Duration::from_millis(999))));
        // Cool-down over: exactly one probe.
        assert_eq!(s.gate(1030), Gate::Go { probe: true });
        s.probing = true;
        assert_eq!(s.gate(1031), Gate::Wait(None));
        // The probe fails: open again, for twice as long.
        s.probing = false;
        assert!(s.on_failure(1040, None, "timed out", true, &p));
        assert_eq!(s.control.open_until, Some(1040 + 2000));
        assert_eq!(s.gate(3040), Gate::Go { probe: true });
        // The next probe succeeds: closed.
        assert!(s.on_success(3050));
        assert_eq!(s.circuit(3051), "closed");
        assert_eq!(s.control.consecutive_failures, 0);
        assert_eq!(s.success_rate(), Some(0.2));
    }

    #[test]
    fn gone_disables_until_enabled() {
        let p = policy();
        let mut s = TargetState::default();
        assert!(s.on_failure(5, Some(410), "HTTP 410 Gone", false, &p));
        assert!(s.control.disabled.as_ref().unwrap().reason.contains("410"));
        assert_eq!(s.gate(6), Gate::Wait(None));
        s.enable();
        assert_eq!(s.gate(7), Gate::Go { probe: false });
    }

    #[test]
    fn failing_for_the_configured_period_disables() {
        let mut p = policy();
        p.breaker_failures = 0;
        let mut s = TargetState::default();
        assert!(!s.on_failure(0, Some(503), "HTTP 503", false, &p));
        assert!(!s.on_failure(3_599_999, Some(503), "HTTP 503", false, &p));
        assert!(s.on_failure(3_600_000, Some(503), "HTTP 503", false, &p));
        let d = s.control.disabled.clone().unwrap();
        assert!(d.reason.contains("1h"), "{}", d.reason);
        // A success in between would have reset the clock.
        let mut s = TargetState::default();
        s.on_failure(0, None, "x", false, &p);
        s.on_success(10);
        assert!(!s.on_failure(3_600_000, None, "x", false, &p));
    }

    #[test]
    fn pause_blocks_without_touching_the_circuit() {
        let mut s = TargetState::default();
        s.control.paused = true;
        assert_eq!(s.gate(0), Gate::Wait(None));
        assert_eq!(s.circuit(0), "closed");
    }
}
