//! A candidate plugin tried on stored events before it is deployed: each
//! of a source's last events is handed to the candidate as routing would
//! hand it, and its decision is compared with the one the serving version
//! recorded. Nothing is delivered or written: the candidate reads the
//! plugin's KV state as it is, and its writes are discarded.
//!
//! The comparison is per plugin, not per chain: plugins of a chain each see
//! the same event and add their own deliveries, so the candidate's part is
//! exactly what would change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use sha2::{Digest, Sha256};

use super::outcome::deliveries_from_plugin;
use crate::api::types::{
    Decision, Difference, PlannedDelivery, TrialEvent, TrialReport, TrialSummary,
};
use crate::config::Config;
use crate::model::id::now_ms;
use crate::model::records::{Delivery, Event, Origin, PluginVerdict};
use crate::plugin::instance::hex;
use crate::plugin::{LoadedPlugin, PluginOutcome};
use crate::store::{EventQuery, Store};

/// Most events one trial runs over.
pub const MAX_EVENTS: usize = 500;

/// A trial stops starting calls after this long (and says so): the admin
/// client gives up after a minute, and a slow candidate must not hold the
/// admin listener.
const BUDGET: Duration = Duration::from_secs(45);

/// Most deliveries of one event read back for the comparison (a plugin's
/// fan-out is bounded by `max_deliveries`, 1000 by default).
const MAX_DELIVERIES: usize = 1000;

/// Runs `candidate` (linked as plugin `name`) over the last `last` events of
/// `source`, newest first.
pub async fn run(
    store: &Store,
    config: &Config,
    name: &str,
    source: &str,
    last: usize,
    candidate: Arc<LoadedPlugin>,
) -> Result<TrialReport> {
    let page = store
        .records
        .list_events(&EventQuery {
            source: Some(source.to_string()),
            limit: last.min(MAX_EVENTS),
            ..EventQuery::default()
        })
        .await?;
    let started = Instant::now();
    let mut events = Vec::with_capacity(page.items.len());
    let mut cut_short = false;
    for summary in page.items {
        if started.elapsed() > BUDGET {
            cut_short = true;
            break;
        }
        let Some(event) = store.records.event(&summary.id).await? else {
            continue; // swept by retention meanwhile
        };
        let before = recorded(store, name, &event).await?;
        let (after, call_us) = try_candidate(config, name, &candidate, event.clone()).await;
        events.push(TrialEvent {
            event: event.id.clone(),
            differences: differences(&before, &after),
            before,
            after,
            call_us,
        });
    }
    let summary = summarize(&events, cut_short);
    Ok(TrialReport {
        plugin: name.to_string(),
        source: source.to_string(),
        candidate: candidate.sha256.clone(),
        contract: candidate.contract().as_str().to_string(),
        events,
        summary,
    })
}

/// What the serving version decided for `event`, from its stored outcome
/// and deliveries.
async fn recorded(store: &Store, name: &str, event: &Event) -> Result<Decision> {
    let Some(outcome) = store.records.outcome(&event.id).await? else {
        return Ok(Decision::NotRun);
    };
    let Some(result) = outcome.plugins.iter().find(|p| p.plugin == name) else {
        return Ok(Decision::NotRun);
    };
    Ok(match result.result {
        PluginVerdict::Drop => Decision::Drop {
            reason: result.reason.clone().unwrap_or_default(),
        },
        PluginVerdict::Failed => Decision::Failed {
            error: result.reason.clone().unwrap_or_default(),
        },
        PluginVerdict::Deliver => {
            let page = store
                .records
                .deliveries_of_event(&event.id, None, MAX_DELIVERIES)
                .await?;
            let mut planned = Vec::new();
            for d in page.items {
                if d.origin != Origin::Plugin(name.to_string()) {
                    continue;
                }
                // Listings leave own bodies out; the record has it.
                let d = store.queue.delivery(&d.id).await?.unwrap_or(d);
                planned.push(plan(&d));
            }
            Decision::Deliver {
                deliveries: planned,
            }
        }
    })
}

/// Calls the candidate on a blocking thread, as routing does, and turns its
/// answer into a decision with routing's own checks (configured targets,
/// fan-out and size bounds, headers hookyard refuses).
async fn try_candidate(
    config: &Config,
    name: &str,
    candidate: &Arc<LoadedPlugin>,
    event: Event,
) -> (Decision, u64) {
    let plugin = candidate.clone();
    let call_event = crate::plugin::to_plugin_event(&event);
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(move || plugin.call(&call_event, false)).await;
    let call_us = started.elapsed().as_micros() as u64;
    let mut report = match report {
        Ok(r) => r,
        Err(e) => {
            return (
                Decision::Failed {
                    error: format!("the call panicked: {e}"),
                },
                call_us,
            );
        }
    };
    // Its KV writes are discarded: its turn goes at once, and the serving
    // calls stop seeing its writes as pending.
    drop(report.kv_turn.take());
    if let Some(token) = report.txn.token {
        candidate.identity.kv.settle(token);
    }
    let decision = match report.result {
        Err(e) => Decision::Failed {
            error: e.to_string(),
        },
        Ok(PluginOutcome::Drop(reason)) => Decision::Drop { reason },
        Ok(PluginOutcome::Deliver(list)) => {
            let limits = config.plugin_limits(name);
            match deliveries_from_plugin(config, &event, name, &limits, list, now_ms()) {
                Ok(made) => Decision::Deliver {
                    deliveries: made.iter().map(plan).collect(),
                },
                Err(error) => Decision::Failed { error },
            }
        }
    };
    (decision, call_us)
}

fn plan(d: &Delivery) -> PlannedDelivery {
    PlannedDelivery {
        target: d.target.clone(),
        headers: d.headers.clone(),
        body_sha256: d.body.as_ref().map(|b| hex(&Sha256::digest(b))),
        body_size: d.body.as_ref().map(Vec::len),
    }
}

fn verdict(d: &Decision) -> &'static str {
    match d {
        Decision::Deliver { .. } => "deliver",
        Decision::Drop { .. } => "drop",
        Decision::Failed { .. } => "failed",
        Decision::NotRun => "not_run",
    }
}

/// How `after` differs from `before`; empty when they agree. Deliveries
/// are compared per target, as multisets (a plugin may send one target
/// several deliveries), ignoring their order.
pub fn differences(before: &Decision, after: &Decision) -> Vec<Difference> {
    match (before, after) {
        (Decision::NotRun, _) => vec![],
        (Decision::Deliver { deliveries: b }, Decision::Deliver { deliveries: a }) => {
            let (b, a) = (by_target(b), by_target(a));
            let mut out = Vec::new();
            for (target, old) in &b {
                match a.get(target) {
                    None => out.push(Difference::TargetRemoved {
                        target: target.clone(),
                    }),
                    Some(new) => {
                        let headers = |v: &Vec<&PlannedDelivery>| {
                            let mut h: Vec<Vec<(String, String)>> = v
                                .iter()
                                .map(|d| {
                                    let mut h = d.headers.clone();
                                    h.sort();
                                    h
                                })
                                .collect();
                            h.sort();
                            h
                        };
                        let bodies = |v: &Vec<&PlannedDelivery>| {
                            let mut s: Vec<Option<String>> =
                                v.iter().map(|d| d.body_sha256.clone()).collect();
                            s.sort();
                            s
                        };
                        if headers(old) != headers(new) {
                            out.push(Difference::HeadersChanged {
                                target: target.clone(),
                            });
                        }
                        if bodies(old) != bodies(new) {
                            out.push(Difference::BodyChanged {
                                target: target.clone(),
                            });
                        }
                    }
                }
            }
            for target in a.keys().filter(|t| !b.contains_key(*t)) {
                out.push(Difference::TargetAdded {
                    target: target.clone(),
                });
            }
            out
        }
        (Decision::Drop { reason: b }, Decision::Drop { reason: a })
        | (Decision::Failed { error: b }, Decision::Failed { error: a }) => {
            if a == b {
                vec![]
            } else {
                vec![Difference::ReasonChanged]
            }
        }
        _ => vec![Difference::Verdict {
            from: verdict(before).to_string(),
            to: verdict(after).to_string(),
        }],
    }
}

fn by_target(list: &[PlannedDelivery]) -> BTreeMap<String, Vec<&PlannedDelivery>> {
    let mut m: BTreeMap<String, Vec<&PlannedDelivery>> = BTreeMap::new();
    for d in list {
        m.entry(d.target.clone()).or_default().push(d);
    }
    m
}

fn summarize(events: &[TrialEvent], cut_short: bool) -> TrialSummary {
    let mut s = TrialSummary {
        events: events.len(),
        cut_short,
        ..TrialSummary::default()
    };
    let mut total_ms = 0.0;
    for e in events {
        let ms = e.call_us as f64 / 1000.0;
        total_ms += ms;
        s.call_ms_max = s.call_ms_max.max(ms);
        let failed = |d: &Decision| matches!(d, Decision::Failed { .. });
        match &e.before {
            Decision::NotRun => s.not_run_before += 1,
            before if failed(before) && !failed(&e.after) => s.fixed += 1,
            before if !failed(before) && failed(&e.after) => s.newly_failing += 1,
            _ => {}
        }
        if !matches!(e.before, Decision::NotRun) {
            if e.differences.is_empty() {
                s.same += 1;
            } else {
                s.changed += 1;
            }
        }
    }
    if !events.is_empty() {
        s.call_ms_mean = total_ms / events.len() as f64;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(target: &str, header: &str, body: Option<&str>) -> PlannedDelivery {
        PlannedDelivery {
            target: target.into(),
            headers: vec![("x-h".into(), header.into())],
            body_sha256: body.map(str::to_string),
            body_size: body.map(str::len),
        }
    }

    #[test]
    fn differences_name_what_changed_per_target() {
        let before = Decision::Deliver {
            deliveries: vec![to("a", "1", None), to("b", "1", Some("x"))],
        };
        let after = Decision::Deliver {
            deliveries: vec![to("b", "2", Some("y")), to("c", "1", None)],
        };
        assert_eq!(
            differences(&before, &after),
            vec![
                Difference::TargetRemoved { target: "a".into() },
                Difference::HeadersChanged { target: "b".into() },
                Difference::BodyChanged { target: "b".into() },
                Difference::TargetAdded { target: "c".into() },
            ]
        );
        // Order does not matter.
        let swapped = Decision::Deliver {
            deliveries: vec![to("b", "1", Some("x")), to("a", "1", None)],
        };
        assert!(differences(&before, &swapped).is_empty());
        assert_eq!(
            differences(
                &before,
                &Decision::Failed {
                    error: "boom".into()
                }
            ),
            vec![Difference::Verdict {
                from: "deliver".into(),
                to: "failed".into()
            }]
        );
        assert!(differences(&Decision::NotRun, &before).is_empty());
    }
}
