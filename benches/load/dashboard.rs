//! The dashboard scenario (issue 14): every page rendered with 100,000
//! stored events (half of them delivered to the sink, so deliveries and
//! attempts are there too), each page fetched repeatedly on a keep-alive
//! connection; reports the median and worst time per page. On loopback
//! the fetch time is the server's render time plus well under a
//! millisecond. Goal: under 50 ms each.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde::Serialize;

use crate::harness::{Ctx, Setup};
use crate::procs;

/// Fetches per page (the first, a warm-up, is not counted).
pub const FETCHES: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct PageTime {
    pub page: String,
    pub p50_ms: f64,
    pub max_ms: f64,
    pub bytes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DashboardRun {
    pub events: u64,
    pub pages: Vec<PageTime>,
}

impl Ctx {
    pub fn dashboard(&mut self) -> Result<()> {
        let n = self.opts.dashboard_events;
        let setup = Setup {
            durability: "buffered",
            plugins: vec![],
            passthrough: vec!["a"],
            targets: vec!["a"],
        };
        self.sink_reset()?;
        let dir = self.prepare("dashboard", &setup)?;
        let router = self.start(&dir, &setup)?;
        let admin = router.field("admin=").context("admin address")?;
        let url = router.field("public=").context("public address")?;
        let mut spec = self.closed_spec(&url);
        spec.count = Some(n);
        spec.duration_secs = 900.0;
        let fill = procs::run_load(&spec)?;
        println!("   stored {} events", fill.accepted);
        self.wait_delivered(fill.accepted)?;

        let newest = self.get_json(&format!("{admin}/admin/events?limit=1"))?;
        let event = newest["events"][0]["id"]
            .as_str()
            .context("an event id")?
            .to_string();
        let pages = [
            "/ui/".to_string(),
            "/ui/events".to_string(),
            "/ui/events?source=bench&status=routed".to_string(),
            format!("/ui/events/{event}"),
            "/ui/deliveries".to_string(),
            "/ui/deliveries?status=delivered&target=a".to_string(),
            "/ui/targets".to_string(),
            "/ui/plugins".to_string(),
            "/ui/sources".to_string(),
            "/ui/events?q=no-such-text".to_string(),
        ];
        let client = reqwest::Client::new();
        let mut times = Vec::new();
        for page in pages {
            let (mut took, mut size) = (Vec::new(), 0);
            for i in 0..=FETCHES {
                let start = Instant::now();
                let body = self.rt.block_on(async {
                    let r = client
                        .get(format!("{admin}{page}"))
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await?;
                    ensure!(r.status().is_success(), "GET {page}: {}", r.status());
                    Ok(r.bytes().await?)
                })?;
                if i > 0 {
                    took.push(start.elapsed().as_secs_f64() * 1000.0);
                }
                size = body.len();
            }
            took.sort_by(f64::total_cmp);
            let t = PageTime {
                page: page.clone(),
                p50_ms: took[took.len() / 2],
                max_ms: *took.last().unwrap_or(&0.0),
                bytes: size,
            };
            println!(
                "   {page}: p50 {:.1} ms, max {:.1} ms, {} bytes",
                t.p50_ms, t.max_ms, t.bytes
            );
            times.push(t);
        }
        self.finish(&dir, router)?;
        self.dashboard = Some(DashboardRun {
            events: fill.accepted,
            pages: times,
        });
        Ok(())
    }
}
