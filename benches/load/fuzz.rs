//! The fuzz scenario (issue 13): at least 100,000 mutated requests (broken
//! framing, hostile heads, bad signatures, random bytes; the generator is
//! tests/support/fuzz.rs, shared with the CI slice) against the release
//! router, 64 at a time. Reports what was sent, the answers by status,
//! crashes (the process gone or not healthy afterwards: must be 0), and RSS
//! before and after.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::harness::Ctx;
use crate::procs;

// Shared with the CI slice, which uses all of it.
#[allow(dead_code)]
#[path = "../../tests/support/fuzz.rs"]
mod generator;

const GITHUB_SECRET: &str = "fuzz-secret";

#[derive(Debug, Clone, Serialize)]
pub struct FuzzRun {
    pub requests: u64,
    pub secs: f64,
    pub per_sec: f64,
    pub answers: BTreeMap<String, u64>,
    pub crashes: u64,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    pub peak_rss_mib: Option<f64>,
}

impl Ctx {
    pub fn fuzz(&mut self) -> Result<()> {
        let n = self.opts.fuzz_requests;
        let dir = self.work.join("fuzz");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("plugins"))?;
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\
             header_timeout = \"2s\"\nbody_timeout = \"2s\"\n\n[plugins]\ndir = \"plugins\"\n\n\
             [delivery]\nallow_private = true\n\n\
             [sources.gh]\nverify = {{ scheme = \"github\", secret = \"{GITHUB_SECRET}\" }}\ntargets = [\"out\"]\n\n\
             [sources.raw]\n\n[targets.out]\nurl = \"{}/fuzz\"\nsecret = \"{}\"\n",
            self.sink_url,
            crate::SECRET
        );
        let router = self.start_config(&dir, &config)?;
        let pid = router.pid();
        let admin = router.field("admin=").context("admin address")?;
        let addr = router
            .field("public=")
            .context("public address")?
            .trim_start_matches("http://")
            .parse()?;
        let rss = |pid| procs::proc_status_kib(pid, "VmRSS:").map(|k| k as f64 / 1024.0);
        let rss_before = rss(pid).unwrap_or(0.0);
        let target = generator::Target {
            addr,
            verified: "gh".into(),
            secret: GITHUB_SECRET.into(),
            raw: "raw".into(),
        };
        let started = Instant::now();
        let tally = self.rt.block_on(generator::run(
            &target,
            n,
            64,
            0x5eed_f00d,
            Duration::from_secs(10),
            |t| println!("   {} of {n} sent", t.sent),
        ));
        let secs = started.elapsed().as_secs_f64();
        let rss_after = rss(pid).unwrap_or(0.0);
        let healthy = self
            .rt
            .block_on(async {
                self.http
                    .get(format!("{admin}/healthz"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
            })
            .is_ok_and(|r| r.status().is_success());
        let crashes = u64::from(!healthy);
        let peak = router.peak_rss_mib();
        router.stop(Duration::from_secs(30))?;
        println!(
            "   {} requests in {secs:.1} s; answers: {}; crashes {crashes}; RSS {rss_before:.0} -> {rss_after:.0} MiB",
            tally.sent,
            tally.summary()
        );
        self.fuzz = Some(FuzzRun {
            requests: tally.sent,
            secs,
            per_sec: tally.sent as f64 / secs.max(1e-9),
            answers: tally.answers,
            crashes,
            rss_before_mib: rss_before,
            rss_after_mib: rss_after,
            peak_rss_mib: peak,
        });
        anyhow::ensure!(crashes == 0, "the router did not survive the fuzz run");
        Ok(())
    }
}
