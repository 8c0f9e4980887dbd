//! Cluster mode: three real hookyard processes on one real PostgreSQL (the
//! test process's throwaway server), a real sink, the real counter plugin.
//! Nodes die with SIGKILL, stall with SIGSTOP, and the database restarts
//! under load; nothing acknowledged is lost and per-target limits hold for
//! the cluster.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::admin::poll;
use support::*;

/// One cluster at a time: three nodes per test already fill two cores, and
/// the lease timings below assume the machine is not starved.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A node's config: its own directory, the shared database.
fn node_config(dir: &std::path::Path, db: &str, node: &str, extra: &str) -> String {
    format!(
        "{}{}\n[store]\nbackend = \"postgres\"\nurl = \"{db}\"\nnode_id = \"{node}\"\n\n{extra}",
        server_section(dir),
        shared_cache(),
    )
}

struct Cluster {
    tmp: tempfile::TempDir,
    db: String,
    extra: String,
    nodes: Vec<Option<Hookyard>>,
}

impl Cluster {
    /// Three nodes; `extra` is the sources, targets and plugins section.
    fn start(extra: &str, plugins: &[(&str, &str)]) -> Cluster {
        Self::start_on(postgres::server().database(), extra, plugins)
    }

    fn start_on(db: String, extra: &str, plugins: &[(&str, &str)]) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = Cluster {
            tmp,
            db,
            extra: extra.to_string(),
            nodes: vec![],
        };
        for i in 0..3 {
            for (file, name) in plugins {
                install_plugin(&c.dir(i).join("plugins"), file, name);
            }
            c.nodes.push(None);
            c.restart(i);
        }
        c
    }

    fn dir(&self, i: usize) -> std::path::PathBuf {
        self.tmp.path().join(format!("node-{i}"))
    }

    fn restart(&mut self, i: usize) {
        let dir = self.dir(i);
        let config = node_config(&dir, &self.db, &format!("node-{i}"), &self.extra);
        self.nodes[i] = Some(Hookyard::start(&dir, &config));
    }

    fn node(&self, i: usize) -> &Hookyard {
        self.nodes[i].as_ref().expect("node running")
    }

    fn running(&self) -> impl Iterator<Item = &Hookyard> {
        self.nodes.iter().flatten()
    }

    /// The node that dispatches `target` now.
    async fn owner_of(&self, target: &str) -> usize {
        let v = poll(Duration::from_secs(30), "a target owner", async || {
            let v = self
                .running()
                .next()
                .unwrap()
                .admin_json("/admin/cluster")
                .await;
            let owner = v["nodes"].as_array().unwrap().iter().find(|n| {
                n["alive"] == true && n["targets"].as_array().unwrap().iter().any(|t| t == target)
            });
            match owner {
                Some(n) => Ok(n["id"].as_str().unwrap().to_string()),
                None => Err(v.to_string()),
            }
        })
        .await;
        v.strip_prefix("node-").unwrap().parse().unwrap()
    }
}

/// Sends `n` events spread over the running nodes' public URLs by
/// `senders` concurrent senders, each retried (on the next URL, after a
/// pause) until acknowledged, as a provider retries; returns the bodies'
/// numbers acknowledged within a minute. `progress` counts
/// acknowledgements as they come.
async fn load(urls: Vec<String>, n: usize, senders: usize, progress: Arc<AtomicUsize>) -> Vec<u64> {
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for s in 0..senders {
        let (urls, next, progress) = (urls.clone(), next.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            let mut acked = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return acked;
                }
                for attempt in 0.. {
                    if Instant::now() > deadline {
                        break;
                    }
                    let url = &urls[(i + s + attempt) % urls.len()];
                    if let Ok(r) = http
                        .post(url)
                        .body(json!({ "i": i }).to_string())
                        .send()
                        .await
                        && r.status() == 202
                    {
                        acked.push(i as u64);
                        progress.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// The distinct bodies (`i`) and counts (`x-count`) the sink received, and
/// how many requests it got in all.
fn received(sink: &Sink) -> (BTreeSet<u64>, Vec<u64>, usize) {
    let got = sink.received_on("/in");
    let bodies = got
        .iter()
        .map(|r| r.json()["i"].as_u64().unwrap())
        .collect();
    let by_delivery: BTreeMap<String, u64> = got
        .iter()
        .map(|r| {
            (
                r.header("webhook-id").unwrap().to_string(),
                r.header("x-count").unwrap().parse().unwrap(),
            )
        })
        .collect();
    let mut counts: Vec<u64> = by_delivery.into_values().collect();
    counts.sort_unstable();
    (bodies, counts, got.len())
}

fn counter_setup(sink: &Sink) -> String {
    format!(
        "[plugins.count]\nconfig = {{ target = \"sink\" }}\n\
         [sources.count]\nplugins = [\"count\"]\n\
         [targets.sink]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        sink.url("/in")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_busiest_node_loses_nothing_and_the_count_stays_exact() {
    let _serial = SERIAL.lock().await;
    let sink = Sink::start(vec![]).await;
    let mut c = Cluster::start(&counter_setup(&sink), &[("counter", "count")]);
    let owner = c.owner_of("sink").await;
    let urls: Vec<String> = c
        .running()
        .map(|h| format!("{}/hooks/count", h.public))
        .collect();
    const N: usize = 1500;
    let progress = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let sender = tokio::spawn(load(urls, N, 12, progress.clone()));
    // The busiest node: it accepts a third of the load, routes what it
    // accepts, and delivers everything (it owns the target).
    while progress.load(Ordering::Relaxed) < N * 4 / 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_flight_at_kill = sink.received_on("/in").len();
    c.nodes[owner].take().unwrap().kill9();
    let acked: BTreeSet<u64> = sender.await.unwrap().into_iter().collect();
    eprintln!(
        "killed node-{owner} (the target's owner) after {} acknowledgements ({in_flight_at_kill} delivered); {} of {N} acknowledged in all in {:?}",
        N * 4 / 10,
        acked.len(),
        started.elapsed()
    );
    // Its requests failed while it was down; the others took them.
    assert_eq!(acked.len(), N);

    // Another node takes the target over; the dead node's claimed events
    // are routed once their claims run out. Then the node comes back.
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.restart(owner);
    let (bodies, counts, total) = poll(
        Duration::from_secs(150),
        "every acknowledged event delivered",
        async || {
            let (bodies, counts, total) = received(&sink);
            let missing: Vec<&u64> = acked.difference(&bodies).collect();
            // Events stored but cut off before their 202 are routed (and
            // counted) too: wait for their deliveries as well, until the
            // counter and the counts delivered agree.
            let kv = c
                .node(owner)
                .admin_json("/admin/plugins/count/kv/count")
                .await;
            let counted = kv["value"]["text"]
                .as_str()
                .and_then(|t| t.parse::<usize>().ok());
            if missing.is_empty() && counted == Some(counts.len()) {
                Ok((bodies, counts, total))
            } else if missing.is_empty() {
                Err(format!(
                    "the counter says {counted:?}, {} counts delivered",
                    counts.len()
                ))
            } else {
                // What the cluster says about events not delivered yet.
                let h = c.node(owner);
                let mut failed = h.admin_json("/admin/events?status=failed&limit=3").await;
                if let Some(id) = failed["events"][0]["id"].as_str() {
                    failed = h.admin_json(&format!("/admin/events/{id}")).await["outcome"].clone();
                }
                let pending = h.admin_json("/admin/events?status=pending&limit=3").await;
                let waiting = h
                    .admin_json("/admin/deliveries?status=scheduled&limit=3")
                    .await;
                Err(format!(
                    "{} missing, e.g. {:?}; failed events: {failed}; pending events: {pending}; scheduled deliveries: {waiting}",
                    missing.len(),
                    &missing[..missing.len().min(5)]
                ))
            }
        },
    )
    .await;
    // The count is over every routed event (events stored but cut off
    // before their 202 are routed too), each number handed out once.
    let n = counts.len() as u64;
    assert_eq!(counts, (1..=n).collect::<Vec<_>>(), "counts across nodes");
    let kv = c
        .node(owner)
        .admin_json("/admin/plugins/count/kv/count")
        .await;
    assert_eq!(kv["value"]["text"], n.to_string(), "{kv}");
    // A request the dead node stored but never answered was sent again
    // to another node (no idempotency key here): two events, one body.
    assert!(
        bodies.len() as u64 <= n && n <= bodies.len() as u64 + 64,
        "{} bodies, {n} counts",
        bodies.len()
    );
    let duplicates = total - counts.len();
    eprintln!(
        "after the kill: {} acknowledged, {n} routed and counted exactly 1..{n} across three nodes; {duplicates} deliveries re-sent (same webhook-id)",
        acked.len()
    );
    // Re-sent: only attempts that were in flight on the dead node.
    assert!(duplicates <= 64, "{duplicates} duplicates");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_in_flight_and_a_pause_hold_for_the_whole_cluster() {
    let _serial = SERIAL.lock().await;
    let sink = Sink::start(vec![]).await;
    sink.set_delay(Duration::from_millis(200));
    let setup = format!(
        "[sources.pass]\ntargets = [\"slow\"]\n\
         [targets.slow]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nmax_in_flight = 2\n",
        sink.url("/in")
    );
    let c = Cluster::start(&setup, &[]);
    let http = reqwest::Client::new();
    for i in 0..30 {
        let node = c.node(i % 3);
        let r = http
            .post(format!("{}/hooks/pass", node.public))
            .body(json!({ "i": i }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    sink.wait_for(12, Duration::from_secs(60)).await;
    assert!(
        sink.max_in_flight() <= 2,
        "the sink saw {} at once",
        sink.max_in_flight()
    );

    // Paused on one node (not the owner): delivery stops everywhere.
    let owner = c.owner_of("slow").await;
    let other = (owner + 1) % 3;
    let (status, v) = c
        .node(other)
        .admin_post("/admin/targets/slow/pause", json!({}))
        .await;
    assert_eq!(status, 200, "{v}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let at_pause = sink.received_on("/in").len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = sink.received_on("/in").len();
    assert!(
        after <= at_pause + 2,
        "{at_pause} at the pause, {after} two seconds later"
    );
    assert!(after < 30, "everything was delivered before the pause took");
    let (status, _) = c
        .node((owner + 2) % 3)
        .admin_post("/admin/targets/slow/resume", json!({}))
        .await;
    assert_eq!(status, 200);
    sink.wait_for(30, Duration::from_secs(60)).await;
    assert!(sink.max_in_flight() <= 2, "{}", sink.max_in_flight());
    eprintln!(
        "max_in_flight 2 over three nodes: the sink saw at most {} at once; the pause on node-{other} held delivery on node-{owner} ({at_pause} -> {after})",
        sink.max_in_flight()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plugin_pushed_to_one_node_serves_on_all_three() {
    let _serial = SERIAL.lock().await;
    let sink = Sink::start(vec![]).await;
    let c = Cluster::start(&counter_setup(&sink), &[]);
    // Built (or found up to date) before the clock starts: the window is
    // the push's, not the plugin's build from source.
    let component = built_plugins().join("counter.wasm");
    let started = Instant::now();
    // The CLI, as an operator pushes.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["plugin", "push", "--name", "count", "--json", "--admin"])
        .arg(&c.node(1).admin)
        .arg(&component)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed["stored_in"], "database", "{pushed}");
    let sha = pushed["sha256"].as_str().unwrap().to_string();
    poll(
        Duration::from_secs(30),
        "served on every node",
        async || {
            for h in c.running() {
                let v = h.admin_json("/admin/plugins").await;
                let serving = v["plugins"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == "count")
                    .and_then(|p| p["serving"]["sha256"].as_str().map(str::to_string));
                if serving.as_deref() != Some(sha.as_str()) {
                    return Err(format!("{}: {serving:?}", h.admin));
                }
            }
            Ok(())
        },
    )
    .await;
    let took = started.elapsed();
    // Every node reports what it serves.
    let v = poll(Duration::from_secs(10), "three reports", async || {
        let v = c.node(0).admin_json("/admin/plugins").await;
        let n = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["plugin"] == "count" && r["sha256"] == sha.as_str())
            .count();
        if n == 3 { Ok(v) } else { Err(v.to_string()) }
    })
    .await;
    eprintln!(
        "pushed to node-1, serving on all three in {took:?}: {}",
        v["nodes"]
    );
    // A bad component is refused before it reaches any node.
    let r = reqwest::Client::new()
        .put(format!("{}/admin/plugins/count", c.node(2).admin))
        .header("content-type", "application/wasm")
        .body(b"\0asm\x01\0\0\0".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // And events flow through it on any node.
    for i in 0..3 {
        let r = reqwest::Client::new()
            .post(format!("{}/hooks/count", c.node(i).public))
            .body(json!({ "i": i }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    sink.wait_for(3, Duration::from_secs(30)).await;
    assert!(took < Duration::from_secs(10), "{took:?}");

    // Each node's config digest is visible from any node; a reload of one
    // node shows there with its next heartbeat.
    let own: Vec<Value> = {
        let mut v = Vec::new();
        for h in c.running() {
            v.push(h.admin_json("/admin/config").await["config"]["sha256"].clone());
        }
        v
    };
    let path = c.dir(2).join("hookyard.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\n[sources.added_on_node_2]\n")).unwrap();
    let (status, reloaded) = c
        .node(2)
        .admin_post("/admin/config/reload", Value::Null)
        .await;
    assert_eq!(status, 200, "{reloaded}");
    assert_ne!(reloaded["sha256"], own[2]);
    poll(
        Duration::from_secs(15),
        "node-2's new digest seen by node-0",
        async || {
            let v = c.node(0).admin_json("/admin/config").await;
            let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
            let of = |id: &str| {
                nodes
                    .iter()
                    .find(|n| n["node"] == id)
                    .map(|n| n["sha256"].clone())
            };
            let ok = of("node-0") == Some(own[0].clone())
                && of("node-1") == Some(own[1].clone())
                && of("node-2") == Some(reloaded["sha256"].clone())
                && v["drift"] == true;
            if ok { Ok(()) } else { Err(v.to_string()) }
        },
    )
    .await;
}

/// Every delivery's attempts as recorded, summed over the target's
/// deliveries, read through one node.
async fn recorded_attempts(h: &Hookyard) -> (usize, usize) {
    let (mut deliveries, mut attempts) = (0, 0);
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/admin/deliveries?limit=500&cursor={c}"),
            None => "/admin/deliveries?limit=500".into(),
        };
        let v = h.admin_json(&path).await;
        for d in v["deliveries"].as_array().unwrap() {
            assert_eq!(d["status"], "delivered", "{d}");
            deliveries += 1;
            attempts += d["attempts"].as_u64().unwrap() as usize;
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return (deliveries, attempts),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_stopped_past_its_leases_records_nothing_twice() {
    let _serial = SERIAL.lock().await;
    let sink = Sink::start(vec![]).await;
    sink.set_delay(Duration::from_millis(300));
    // A short timeout, so a claim (timeout + 5 s) runs out within the test.
    let setup = format!(
        "[sources.pass]\ntargets = [\"slow\"]\n\
         [targets.slow]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nmax_in_flight = 4\ntimeout = \"2s\"\n",
        sink.url("/in")
    );
    let mut c = Cluster::start(&setup, &[]);
    let owner = c.owner_of("slow").await;
    let other = (owner + 1) % 3;
    let http = reqwest::Client::new();
    for i in 0..60 {
        let r = http
            .post(format!("{}/hooks/pass", c.node(other).public))
            .body(json!({ "i": i }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // Attempts are in flight on the owner: stop it mid-way, past both its
    // target lease (10 s) and its delivery claims (7 s).
    sink.wait_for(8, Duration::from_secs(30)).await;
    let pid = c.node(owner).pid();
    signal(pid, "STOP");
    let stopped_at = sink.received_on("/in").len();
    tokio::time::sleep(Duration::from_secs(13)).await;
    // Another node took the target over and delivered the rest.
    let taken = sink.received_on("/in").len();
    signal(pid, "CONT");
    poll(Duration::from_secs(60), "all 60 delivered", async || {
        let bodies: BTreeSet<u64> = sink
            .received_on("/in")
            .iter()
            .map(|r| r.json()["i"].as_u64().unwrap())
            .collect();
        if bodies.len() == 60 {
            Ok(())
        } else {
            Err(format!("{} of 60", bodies.len()))
        }
    })
    .await;
    // Let the resumed node finish its late attempts, then count.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sent = sink.received_on("/in").len();
    let fenced = c
        .node(owner)
        .log_text()
        .matches("attempt result not recorded: another node took the delivery over")
        .count();
    let (deliveries, attempts) = recorded_attempts(c.node(other)).await;
    eprintln!(
        "node-{owner} stopped with {stopped_at} delivered; {taken} by the time it resumed; {sent} requests in all, {attempts} attempts on record for {deliveries} deliveries, {fenced} late results fenced"
    );
    if deliveries != 60 {
        let v = c
            .node(other)
            .admin_json("/admin/deliveries?limit=1000")
            .await;
        panic!("{deliveries} deliveries listed: {v}");
    }
    assert!(
        taken > stopped_at + 4,
        "nobody took over: {stopped_at} -> {taken}"
    );
    assert!(
        fenced >= 1,
        "the stopped node had attempts in flight; none was fenced"
    );
    // Every request the sink saw is on record once, or was fenced.
    assert_eq!(attempts + fenced, sent);
    c.nodes[owner].take();
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restart_mid_load_loses_no_acknowledged_event() {
    let _serial = SERIAL.lock().await;
    // A server of its own: the others' tests must not see it restart.
    let pg = postgres::Postgres::start();
    let sink = Sink::start(vec![]).await;
    let setup = format!(
        "[sources.pass]\ntargets = [\"sink\"]\n\
         [targets.sink]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n",
        sink.url("/in")
    );
    let c = Cluster::start_on(pg.database(), &setup, &[]);
    let urls: Vec<String> = c
        .running()
        .map(|h| format!("{}/hooks/pass", h.public))
        .collect();
    const N: usize = 1200;
    let progress = Arc::new(AtomicUsize::new(0));
    let sender = tokio::spawn(load(urls, N, 8, progress.clone()));
    while progress.load(Ordering::Relaxed) < N / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restarted = Instant::now();
    pg.restart();
    let down_for = restarted.elapsed();
    let acked: BTreeSet<u64> = sender.await.unwrap().into_iter().collect();
    // Refused while the database was down (503, never a 202 without a
    // commit), then acknowledged once the nodes reconnected.
    assert_eq!(acked.len(), N);
    poll(
        Duration::from_secs(90),
        "every acknowledged event delivered",
        async || {
            let got: BTreeSet<u64> = sink
                .received_on("/in")
                .iter()
                .map(|r| r.json()["i"].as_u64().unwrap())
                .collect();
            let missing = acked.difference(&got).count();
            if missing == 0 {
                Ok(())
            } else {
                Err(format!("{missing} missing"))
            }
        },
    )
    .await;
    // Each node is back on the database: it accepts again.
    for h in c.running() {
        let (status, _) = h.post("pass", json!({ "i": 99_999 }).to_string()).await;
        assert_eq!(status, 202, "{}", h.public);
    }
    // A longer outage: every node says it is not ready and refuses
    // webhooks with 503 (never a 202 without a commit), then recovers by
    // itself once the database is back.
    pg.stop();
    for h in c.running() {
        let reason = poll(Duration::from_secs(15), "not ready", async || {
            let (status, v) = h.admin_get("/readyz").await;
            if status == 503 {
                Ok(v["reason"].as_str().unwrap_or_default().to_string())
            } else {
                Err(format!("{status} {v}"))
            }
        })
        .await;
        assert!(!reason.is_empty());
        let (status, v) = h.post("pass", json!({ "i": 99_998 }).to_string()).await;
        assert_eq!(status, 503, "{v}");
    }
    let metrics = c.node(0).admin_text("/metrics").await;
    assert!(metrics.contains("hookyard_ready 0"), "{metrics}");
    pg.restart();
    for h in c.running() {
        poll(Duration::from_secs(30), "ready again", async || {
            let (status, v) = h.admin_get("/readyz").await;
            if status == 200 {
                Ok(())
            } else {
                Err(format!("{status} {v}"))
            }
        })
        .await;
        let (status, v) = h.post("pass", json!({ "i": 99_997 }).to_string()).await;
        assert_eq!(status, 202, "{v}");
    }
    eprintln!(
        "PostgreSQL restarted after {} acknowledgements (down {down_for:?}); {} of {N} acknowledged, all delivered",
        N / 3,
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_retry_and_listings_work_from_any_node() {
    let _serial = SERIAL.lock().await;
    // Two failures, then 200s: with one retry the first delivery dies.
    let sink = Sink::start(vec![answer(500), answer(500)]).await;
    let setup = format!(
        "[sources.pass]\ntargets = [\"t\"]\n\
         [targets.t]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"50ms\"]\n",
        sink.url("/in")
    );
    let c = Cluster::start(&setup, &[]);
    let id = c.node(0).send("pass", r#"{"i": 1}"#).await;
    // Seen dead from another node.
    let v = c
        .node(1)
        .wait_event(&id, Duration::from_secs(30), |v| {
            v["deliveries"][0]["status"] == "dead"
        })
        .await;
    let delivery = v["deliveries"][0]["id"].as_str().unwrap().to_string();
    let dead = c.node(2).admin_json("/admin/deliveries?status=dead").await;
    assert_eq!(dead["deliveries"][0]["id"], delivery.as_str(), "{dead}");

    // Retried on node 2: delivered by whichever node owns the target.
    let (status, v) = c
        .node(2)
        .admin_post(&format!("/admin/deliveries/{delivery}/retry"), json!({}))
        .await;
    assert!(status == 200 || status == 202, "{status} {v}");
    c.node(0)
        .wait_event(&id, Duration::from_secs(30), |v| {
            v["deliveries"][0]["status"] == "delivered"
        })
        .await;
    // Replayed on node 1: a new routing, a second delivery.
    let (status, v) = c
        .node(1)
        .admin_post(&format!("/admin/events/{id}/replay"), json!({}))
        .await;
    assert!(status == 200 || status == 202, "{status} {v}");
    poll(
        Duration::from_secs(30),
        "the replay delivered",
        async || {
            let v = c
                .node(2)
                .admin_json(&format!("/admin/deliveries?event={id}"))
                .await;
            let delivered = v["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["status"] == "delivered")
                .count();
            if delivered == 2 {
                Ok(())
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;
    // Two 500s and two 200s reached the sink, all with the same body.
    let got = sink.received_on("/in");
    assert_eq!(got.len(), 4, "{got:?}");
    // The CLI reads the same records through any node.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["events", "list", "--json", "--admin"])
        .arg(&c.node(2).admin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
}

/// `sslmode=require` means TLS or nothing: against the test server (no
/// TLS) the node refuses to start and says why, instead of falling back
/// to plain TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_requires_tls_gets_tls_or_a_clear_error() {
    let url = format!("{}?sslmode=require", postgres::server().database());
    let err = match hookyard::store::pg::PgStore::open(&url, "tls-node").await {
        Ok(_) => panic!("connected without TLS although the URL requires it"),
        Err(e) => format!("{e:#}"),
    };
    // Either the server refused TLS, or (on a machine without CA
    // certificates) the node says it has none to verify with.
    let lower = err.to_lowercase();
    assert!(lower.contains("tls") || lower.contains("ssl"), "{err}");
}
