//! The recovery scenario (requirement 6): a backlog of scheduled
//! deliveries survives a SIGTERM and a restart, then drains. Its own file
//! because it is the one scenario with two router lifetimes and its own
//! result (`Recovery`) rather than a table row.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::json;

use crate::harness::{Ctx, Setup};
use crate::procs;
use crate::scenarios::check_load;
use crate::stats::unix_ns;

#[derive(Debug, Clone, Serialize)]
pub struct Recovery {
    pub backlog: u64,
    pub fill_accepted_per_sec: f64,
    pub fill_secs: f64,
    pub shutdown_secs: f64,
    pub restart_secs: f64,
    pub drain_secs: f64,
    pub drain_per_sec: f64,
    /// Until `GET /admin/targets` shows nothing scheduled.
    pub scheduled_zero_secs: Option<f64>,
    pub delivered: u64,
    pub peak_rss_fill_mib: Option<f64>,
    pub peak_rss_drain_mib: Option<f64>,
    pub notes: Vec<String>,
}

impl Ctx {
    /// A backlog of scheduled deliveries survives a restart and drains:
    /// fill with the target paused (pause is stored, so it holds across
    /// the restart), SIGTERM, start again, resume, time until the sink has
    /// them all.
    pub fn recovery(&mut self) -> Result<()> {
        let n = self.opts.backlog;
        let setup = Setup {
            // The fill is not what is measured; SIGTERM flushes anyway.
            durability: "buffered",
            plugins: vec![],
            passthrough: vec!["drain"],
            targets: vec!["drain"],
        };
        self.sink_reset()?;
        let dir = self.prepare("recovery", &setup)?;
        let mut notes = Vec::new();

        // Fill.
        let router = self.start(&dir, &setup)?;
        let admin = router.field("admin=").context("admin address")?;
        let url = router.field("public=").context("public address")?;
        self.post_json(&format!("{admin}/admin/targets/drain/pause"))?;
        let mut spec = self.closed_spec(&url);
        spec.count = Some(n);
        spec.duration_secs = 900.0;
        let fill = procs::run_load(&spec)?;
        check_load(&fill)?;
        let deadline = Instant::now() + Duration::from_secs(300);
        let scheduled = loop {
            let s = self.admin_target(&admin, "drain")?["scheduled"]
                .as_u64()
                .unwrap_or(0);
            if s >= fill.accepted || Instant::now() > deadline {
                break s;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        println!(
            "   filled: {} accepted ({:.0}/s), {scheduled} scheduled",
            fill.accepted, fill.accepted_per_sec
        );
        let rss_fill = router.peak_rss_mib();
        self.stop_perf();
        let stopping = Instant::now();
        let status = router.stop(Duration::from_secs(120))?;
        let shutdown_secs = stopping.elapsed().as_secs_f64();
        if !status.success() {
            notes.push(format!("router exited with {status} on SIGTERM"));
        }

        // Restart and drain.
        let router = self.start(&dir, &setup)?;
        let restart_secs = router.started_in.as_secs_f64();
        let admin = router.field("admin=").context("admin address")?;
        let t = self.admin_target(&admin, "drain")?;
        let after_restart = t["scheduled"].as_u64().unwrap_or(0);
        if t["paused"] != json!(true) {
            notes.push("target was not paused after the restart".into());
        }
        if after_restart != scheduled {
            notes.push(format!(
                "{scheduled} scheduled before the restart, {after_restart} after"
            ));
        }
        let resumed_at = unix_ns();
        let resumed = Instant::now();
        self.post_json(&format!("{admin}/admin/targets/drain/resume"))?;
        let light = self.wait_delivered(after_restart);
        let mut scheduled_zero_secs = None;
        if light.is_ok() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let t = self.admin_target(&admin, "drain")?;
                if t["scheduled"].as_u64() == Some(0) {
                    scheduled_zero_secs = Some(resumed.elapsed().as_secs_f64());
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        let failed = self.failed_attempts(&admin);
        let (rss_drain, more) = self.finish(&dir, router)?;
        notes.extend(more);
        if failed > 0 {
            notes.push(format!("{failed} failed delivery attempts"));
        }
        let light = light?;
        let delivered = light["unique"].as_u64().unwrap_or(0);
        let drain_secs = light["last_recv_ns"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(resumed_at) as f64
            / 1e9;
        if delivered < after_restart {
            notes.push(format!(
                "only {delivered} of {after_restart} delivered in time"
            ));
        }
        println!(
            "   shutdown {shutdown_secs:.2} s, restart {restart_secs:.2} s, drained {delivered} in {drain_secs:.2} s ({:.0}/s)",
            delivered as f64 / drain_secs.max(1e-9)
        );
        self.recovery = Some(Recovery {
            backlog: after_restart,
            fill_accepted_per_sec: fill.accepted_per_sec,
            fill_secs: fill.measured_secs,
            shutdown_secs,
            restart_secs,
            drain_secs,
            drain_per_sec: delivered as f64 / drain_secs.max(1e-9),
            scheduled_zero_secs,
            delivered,
            peak_rss_fill_mib: rss_fill,
            peak_rss_drain_mib: rss_drain,
            notes,
        });
        Ok(())
    }
}
