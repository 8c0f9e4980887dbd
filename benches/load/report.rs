//! What a run reports: the Markdown tables (scenarios, recovery, plugin
//! call, criterion means), the goals and whether they were met, the notes,
//! and the JSON results file with the machine it ran on. Number formatting
//! (`ms`, `thousands`) lives here too, so every figure is shown one way.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::RUST_PLUGIN;
use crate::harness::Ctx;
use crate::plugin_host;
use crate::scenarios::Row;
use crate::stats::unix_ns;

impl Ctx {
    fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.scenario == name)
    }

    fn goals(&self) -> Vec<Value> {
        let rate = format!("{:.0}", self.opts.rate);
        let mut goals = Vec::new();
        let mut goal =
            |what: String, target: &str, measured: Option<f64>, ok: Option<bool>, shown: String| {
                goals.push(json!({
                    "goal": what,
                    "target": target,
                    "measured": measured,
                    "shown": shown,
                    "met": ok,
                }));
            };
        for (d, min) in [("buffered", 0.6), ("flush", 0.3)] {
            let r = self.row(&format!("ingest-{d}")).and_then(|r| r.vs_baseline);
            goal(
                format!("ingest, durability = {d}, vs bare baseline"),
                &format!(">= {min} x"),
                r,
                r.map(|r| r >= min),
                r.map_or("n/a".into(), |r| format!("{r:.2} x")),
            );
        }
        for (row, what) in [
            ("e2e-rust-burst", "flush"),
            ("e2e-rust-burst-buffered", "buffered"),
        ] {
            let d = self.row(row).and_then(|r| r.delivered_per_sec);
            goal(
                format!("end to end, Rust plugin, delivered/s (durability = {what})"),
                ">= 10 000/s",
                d,
                d.map(|d| d >= 10_000.0),
                d.map_or("n/a".into(), |d| format!("{}/s", thousands(d))),
            );
        }
        for lang in ["rust", "python", "js"] {
            let p = self
                .row(&format!("e2e-{lang}-{rate}"))
                .and_then(|r| r.ingest_to_sink)
                .map(|l| l.p99_us / 1000.0);
            goal(
                format!("p99 ingest->sink at {rate}/s, {lang} plugin"),
                "< 10 ms",
                p,
                p.map(|p| p < 10.0),
                p.map_or("n/a".into(), |p| format!("{} ms", ms(p * 1000.0))),
            );
        }
        let pc = self.plugin_call.as_ref();
        goal(
            "plugin call, warm instance: hookyard / raw wasmtime".into(),
            "<= 1.5 x",
            pc.map(|p| p.warm_ratio),
            pc.map(|p| p.warm_ratio <= 1.5),
            pc.map_or("n/a".into(), |p| format!("{:.2} x", p.warm_ratio)),
        );
        goal(
            "plugin call, fresh instance: hookyard / raw wasmtime".into(),
            "<= 1.5 x",
            pc.map(|p| p.fresh_ratio),
            pc.map(|p| p.fresh_ratio <= 1.5),
            pc.map_or("n/a".into(), |p| format!("{:.2} x", p.fresh_ratio)),
        );
        // Bounds are in MB (10^6 bytes), as the issue states them.
        let mut rss_goal = |what: &str, bound_mb: f64, mib: Option<f64>| {
            goal(
                what.into(),
                &format!("< {bound_mb:.0} MB"),
                mib,
                mib.map(|r| r * 1.048_576 < bound_mb),
                mib.map_or("n/a".into(), |r| format!("{:.0} MB", r * 1.048_576)),
            )
        };
        let plugins_3 = self.row("plugins-3");
        rss_goal(
            "peak RSS, Rust + Python + JS plugins under load",
            300.0,
            plugins_3.and_then(|r| r.peak_rss_mib),
        );
        // Idle both on a fresh start and after the load drained: the larger.
        let idle = plugins_3
            .and_then(|r| r.idle_rss_mib)
            .and_then(|(before, after)| before.into_iter().chain(after).reduce(f64::max));
        rss_goal(
            "RSS idle with Rust + Python + JS plugins (before and after the load, larger)",
            150.0,
            idle,
        );
        goals
    }

    pub fn render(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "| scenario | load | accepted/s | ingest p50 / p90 / p99 / max (ms) | x baseline | delivered/s | ingest->sink p50 / p99 (ms) | peak RSS (MiB) |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            let ingest = r.ingest_latency.map_or("".into(), |l| {
                format!(
                    "{} / {} / {} / {}",
                    ms(l.p50_us),
                    ms(l.p90_us),
                    ms(l.p99_us),
                    ms(l.max_us)
                )
            });
            let e2e = r.ingest_to_sink.map_or("".into(), |l| {
                format!("{} / {}", ms(l.p50_us), ms(l.p99_us))
            });
            let delivered = match (r.delivered_per_sec, r.delivered, r.expected_deliveries) {
                (Some(d), Some(n), Some(e)) if n < e => format!("{} ({n} of {e})", thousands(d)),
                (Some(d), _, _) => thousands(d),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.scenario,
                r.load,
                r.accepted_per_sec.map_or("".into(), thousands),
                ingest,
                r.vs_baseline.map_or("".into(), |v| format!("{v:.2}")),
                delivered,
                e2e,
                r.peak_rss_mib.map_or("".into(), |v| format!("{v:.0}")),
            );
        }
        if let Some(d) = &self.dashboard {
            let _ = writeln!(
                out,
                "\nDashboard (14): pages with {} stored events, {} fetches each:\n\n| page | p50 (ms) | max (ms) | bytes |\n|---|---:|---:|---:|",
                thousands(d.events as f64),
                crate::dashboard::FETCHES
            );
            for p in &d.pages {
                let _ = writeln!(
                    out,
                    "| `{}` | {:.1} | {:.1} | {} |",
                    p.page, p.p50_ms, p.max_ms, p.bytes
                );
            }
        }
        if let Some(f) = &self.fuzz {
            let answers: Vec<String> = f.answers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let _ = writeln!(
                out,
                "\nFuzz (13): {} mutated requests in {:.1} s ({}/s); answers {}; crashes {}; RSS {:.0} -> {:.0} MiB (peak {}).",
                thousands(f.requests as f64),
                f.secs,
                thousands(f.per_sec),
                answers.join(", "),
                f.crashes,
                f.rss_before_mib,
                f.rss_after_mib,
                f.peak_rss_mib.map_or("?".into(), |p| format!("{p:.0} MiB")),
            );
        }
        if let Some(rc) = &self.recovery {
            let _ = writeln!(
                out,
                "\nRecovery (6): {} scheduled deliveries (target paused while filling at {}/s), SIGTERM took {:.2} s, \
                 restart to listening {:.2} s, resume -> all {} at the sink {:.2} s ({}/s){}; peak RSS {} MiB filling, {} MiB draining.",
                rc.backlog,
                thousands(rc.fill_accepted_per_sec),
                rc.shutdown_secs,
                rc.restart_secs,
                rc.delivered,
                rc.drain_secs,
                thousands(rc.drain_per_sec),
                rc.scheduled_zero_secs.map_or(String::new(), |s| format!(
                    ", admin shows 0 scheduled after {s:.2} s"
                )),
                rc.peak_rss_fill_mib
                    .map_or("?".into(), |v| format!("{v:.0}")),
                rc.peak_rss_drain_mib
                    .map_or("?".into(), |v| format!("{v:.0}")),
            );
        }
        if let Some(pc) = &self.plugin_call {
            let c = &pc.costs;
            let _ = writeln!(
                out,
                "\nPlugin call (5), {RUST_PLUGIN}, us per call (in-process timing loop):\n\n\
                 | instance | raw wasmtime | hookyard LoadedPlugin::call | ratio | hookyard Plugins::call (call lane) | ratio |\n\
                 |---|---:|---:|---:|---:|---:|\n\
                 | warm (reused) | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n\
                 | fresh per call | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                c.raw_warm_ns / 1000.0,
                c.hookyard_warm_ns / 1000.0,
                pc.warm_ratio,
                c.hookyard_runtime_warm_ns / 1000.0,
                pc.runtime_warm_ratio,
                c.raw_fresh_ns / 1000.0,
                c.hookyard_fresh_ns / 1000.0,
                pc.fresh_ratio,
                c.hookyard_runtime_fresh_ns / 1000.0,
                pc.runtime_fresh_ratio,
            );
        }
        let criterion = plugin_host::criterion_means();
        if !criterion.is_empty() {
            let _ = writeln!(
                out,
                "\nCriterion (last `cargo bench --bench plugin_call`, {}), mean us per call: {}",
                plugin_host::criterion_dir().display(),
                criterion
                    .iter()
                    .map(|(k, v)| format!("{k} {:.2}", v / 1000.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let _ = writeln!(
            out,
            "\n| goal | target | measured | met |\n|---|---|---:|---|"
        );
        for g in self.goals() {
            let met = match g["met"].as_bool() {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "n/a",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {met} |",
                g["goal"].as_str().unwrap_or(""),
                g["target"].as_str().unwrap_or(""),
                g["shown"].as_str().unwrap_or(""),
            );
        }
        let notes: Vec<String> = self
            .rows
            .iter()
            .flat_map(|r| {
                r.notes
                    .iter()
                    .map(move |n| format!("- {}: {n}", r.scenario))
            })
            .chain(
                self.recovery
                    .iter()
                    .flat_map(|r| r.notes.iter().map(|n| format!("- recovery: {n}"))),
            )
            .chain(self.skipped.iter().map(|s| format!("- skipped {s}")))
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(out, "\nNotes:\n{}", notes.join("\n"));
        }
    }

    /// The JSON results file's content.
    pub fn results(&self, mut machine: Value, root: &Path, wall: f64, report: String) -> Value {
        machine["loadavg_end"] = json!(loadavg());
        json!({
            "mode": self.opts.mode,
            "command": std::env::args().collect::<Vec<_>>(),
            "router_binary": crate::procs::router_binary(),
            "git_commit": git_commit(root),
            "started_unix_ms": unix_ns() / 1_000_000 - (wall * 1000.0) as u64,
            "wall_secs": wall,
            "machine": machine,
            "options": self.opts,
            "baseline_accepted_per_sec": self.baseline,
            "scenarios": self.rows,
            "recovery": self.recovery,
            "fuzz": self.fuzz,
            "dashboard": self.dashboard,
            "plugin_call": self.plugin_call,
            "criterion_plugin_call_ns": plugin_host::criterion_means()
                .into_iter()
                .map(|(k, v)| (k, json!(v)))
                .collect::<serde_json::Map<_, _>>(),
            "skipped": self.skipped,
            "goals": self.goals(),
            "table_markdown": report,
        })
    }
}

/// Microseconds shown as milliseconds with sensible precision.
fn ms(us: f64) -> String {
    let v = us / 1000.0;
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// 12345.6 -> "12 346".
pub fn thousands(v: f64) -> String {
    let n = v.round() as u64;
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn machine_info() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_default();
    let mem_kib = procs_meminfo_kib("MemTotal:");
    let cmd_out = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu": cpu,
        "memory_gib": mem_kib.map(|k| k as f64 / 1024.0 / 1024.0),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "rustc": cmd_out("rustc", &["--version"]),
        "loadavg_start": loadavg(),
    })
}

fn procs_meminfo_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn git_commit(root: &Path) -> Option<String> {
    std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}
