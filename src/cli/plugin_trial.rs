//! `hookyard plugin test NEW.wasm --source S --last N`: the candidate is
//! sent to a running hookyard, which runs it over the source's last stored
//! events (`POST /admin/plugins/{name}/trial`) and answers how each
//! decision differs from the serving version's. One line per event that
//! changed, then a summary; the exit status is 1 when the candidate fails
//! events the serving version handled, so a deploy script can gate on it.

use anyhow::{Context, Result};

use super::admin_client::AdminClient;
use super::plugin_test::{TestRun, plugin_name};
use crate::api::types::{Decision, Difference, TrialReport};

pub fn run(run: &TestRun) -> Result<bool> {
    let name = match &run.name {
        Some(n) => n.clone(),
        None => plugin_name(&run.wasm)?,
    };
    let source = run.source.clone().unwrap_or_default();
    let last = run.last.unwrap_or(100);
    let wasm =
        std::fs::read(&run.wasm).with_context(|| format!("reading {}", run.wasm.display()))?;
    eprintln!(
        "trying {} as plugin {name:?} on the last {last} events of source {source:?} at {} ...",
        run.wasm.display(),
        run.admin
    );
    let client = AdminClient::new(&run.admin, run.token.clone())?;
    let v = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(client.post_wasm(
            &["admin", "plugins", &name, "trial"],
            &[("source", source), ("last", last.to_string())],
            wasm,
        ))?;
    let report: TrialReport =
        serde_json::from_value(v.clone()).context("the trial's answer is not a trial report")?;
    if run.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(report.summary.newly_failing == 0)
}

fn verdict(d: &Decision) -> String {
    match d {
        Decision::Deliver { deliveries } => {
            let mut targets: Vec<&str> = deliveries.iter().map(|d| d.target.as_str()).collect();
            targets.dedup();
            format!("deliver to {}", targets.join(", "))
        }
        Decision::Drop { reason } => format!("drop ({reason})"),
        Decision::Failed { error } => format!("FAILED: {error}"),
        Decision::NotRun => "not run".into(),
    }
}

fn difference(d: &Difference) -> String {
    match d {
        Difference::Verdict { from, to } => format!("{from} -> {to}"),
        Difference::TargetAdded { target } => format!("+{target}"),
        Difference::TargetRemoved { target } => format!("-{target}"),
        Difference::HeadersChanged { target } => format!("headers changed for {target}"),
        Difference::BodyChanged { target } => format!("body changed for {target}"),
        Difference::ReasonChanged => "another reason".into(),
    }
}

fn render(r: &TrialReport) -> String {
    let mut out = format!(
        "candidate {} (contract {}) as plugin {:?} on source {:?}\n",
        &r.candidate[..r.candidate.len().min(12)],
        r.contract,
        r.plugin,
        r.source
    );
    for e in &r.events {
        if e.differences.is_empty() {
            continue;
        }
        let what: Vec<String> = e.differences.iter().map(difference).collect();
        out.push_str(&format!(
            "{}  {}\n    was: {}\n    now: {}  ({:.2} ms)\n",
            e.event,
            what.join("; "),
            verdict(&e.before),
            verdict(&e.after),
            e.call_us as f64 / 1000.0
        ));
    }
    let s = &r.summary;
    out.push_str(&format!(
        "{} events: {} same, {} changed, {} newly failing, {} fixed, {} not run before; calls {:.2} ms mean, {:.2} ms max{}\n",
        s.events,
        s.same,
        s.changed,
        s.newly_failing,
        s.fixed,
        s.not_run_before,
        s.call_ms_mean,
        s.call_ms_max,
        if s.cut_short { " (stopped early: time budget)" } else { "" }
    ));
    if s.newly_failing > 0 {
        out.push_str("the candidate fails events the serving version handled: do not deploy it\n");
    }
    out
}
