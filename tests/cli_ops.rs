//! The operator commands (`events`, `replay`, `deliveries`, `targets`) run
//! as the real binary against a real hookyard, plus `--log-format json`.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// What one CLI run printed.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    /// Stdout of a run that must have succeeded.
    fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "command failed\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    fn json(&self) -> Value {
        let text = self.ok();
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
    }

    /// Stderr of a run that must have failed with `code`.
    fn failed(&self, code: i32) -> &str {
        assert_eq!(
            self.code, code,
            "unexpected exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stderr
    }
}

fn cli_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookyard"));
    cmd.args(args)
        .env_remove("HOOKYARD_ADMIN")
        .env_remove("HOOKYARD_ADMIN_TOKEN")
        .env_remove("HOOKYARD_LOG_FORMAT")
        .env_remove("HOOKYARD_LOG");
    cmd
}

/// Runs `hookyard <args> --admin <admin>` off the async runtime (the sink
/// must keep answering meanwhile).
async fn cli_env(admin: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = cli_command(args);
    cmd.arg("--admin").arg(admin);
    cmd.envs(env.iter().copied());
    let output = tokio::task::spawn_blocking(move || cmd.output().expect("run hookyard"))
        .await
        .unwrap();
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn cli(hy: &Hookyard, args: &[&str]) -> Out {
    cli_env(&hy.admin, args, &[]).await
}

/// `shop` passes through to `orders` (the sink); `flaky` to `broken`, which
/// nothing answers until a test starts a sink on `broken_port`.
fn config(dir: &std::path::Path, sink: &Sink, broken_port: u16) -> String {
    format!(
        "{}\n[sources.shop]\ntargets = [\"orders\"]\n\n\
         [sources.flaky]\ntargets = [\"broken\"]\n\n\
         [targets.orders]\nurl = \"{}\"\nsecret = \"{SECRET}\"\nallow_private = true\n\n\
         [targets.broken]\nurl = \"http://127.0.0.1:{broken_port}/broken\"\nsecret = \"{SECRET}\"\n\
         allow_private = true\nretry_schedule = [\"50ms\"]\n",
        server_section(dir),
        sink.url("/orders"),
    )
}

async fn delivered_event(hy: &Hookyard, source: &str, body: &str) -> String {
    let id = hy.send(source, body).await;
    hy.wait_event(&id, Duration::from_secs(20), delivered).await;
    id
}

fn ids_in(v: &Value, key: &str) -> BTreeSet<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key:?} list in {v}"))
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_list_show_and_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink, CLOSED_PORT));
    let mut ids = BTreeSet::new();
    for n in 1..=3 {
        ids.insert(delivered_event(&hy, "shop", &format!("{{\"order\":{n}}}")).await);
    }

    let out = cli(&hy, &["events", "list", "--source", "shop"]).await;
    let table = out.ok();
    let header = table.lines().next().unwrap();
    for col in ["ID", "SOURCE", "RECEIVED", "STATUS", "SIZE", "DELIVERIES"] {
        assert!(header.contains(col), "header {header:?} lacks {col}");
    }
    for id in &ids {
        let row = table
            .lines()
            .find(|l| l.starts_with(id.as_str()))
            .unwrap_or_else(|| panic!("{id} not listed:\n{table}"));
        assert!(row.contains("shop") && row.contains("routed"), "{row}");
        assert!(row.contains("Z "), "RFC 3339 time in {row:?}");
    }
    assert!(!table.contains("next:"), "one page only:\n{table}");

    let v = cli(&hy, &["events", "list", "--source", "shop", "--json"])
        .await
        .json();
    assert_eq!(ids_in(&v, "events"), ids);
    assert!(v["next_cursor"].is_null(), "{v}");

    // Page by page, following the printed hint as a user would paste it.
    let mut seen = BTreeSet::new();
    let mut args: Vec<String> = ["events", "list", "--source", "shop", "--limit", "2"]
        .map(String::from)
        .to_vec();
    for _ in 0..10 {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cli(&hy, &refs).await;
        let text = out.ok();
        for id in &ids {
            if text.contains(id.as_str()) {
                seen.insert(id.clone());
            }
        }
        let Some(hint) = text.lines().find_map(|l| l.strip_prefix("next: hookyard ")) else {
            break;
        };
        assert!(
            hint.contains("--limit 2") && hint.contains("--cursor "),
            "{hint}"
        );
        // The hint names the non-default admin URL itself; cli() adds it again.
        let words: Vec<String> = hint.split_whitespace().map(String::from).collect();
        let at = words.iter().position(|w| w == "--admin").unwrap();
        args = words[..at]
            .iter()
            .chain(&words[at + 2..])
            .cloned()
            .collect();
    }
    assert_eq!(seen, ids, "paging reaches every event");

    let id = ids.iter().next().unwrap();
    let out = cli(&hy, &["events", "show", id]).await;
    let text = out.ok();
    for want in [
        id.as_str(),
        "shop",
        "\"order\": ",
        "-> orders",
        "delivered",
        "HTTP 200",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let v = cli(&hy, &["events", "show", id, "--json"]).await.json();
    let shown = if v["event"].is_object() {
        &v["event"]
    } else {
        &v
    };
    assert_eq!(shown["id"], id.as_str(), "{v}");

    let out = cli(&hy, &["events", "show", "evt_nope"]).await;
    let err = out.failed(1);
    assert!(err.contains("evt_nope") && err.contains("404"), "{err}");
    assert!(!err.contains("{\""), "the message, not raw JSON: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_list_pause_resume_enable() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink, CLOSED_PORT));
    delivered_event(&hy, "shop", "{\"n\":1}").await;

    let out = cli(&hy, &["targets", "list"]).await;
    let table = out.ok();
    let header = table.lines().next().unwrap();
    for col in [
        "NAME",
        "STATE",
        "PAUSED",
        "DISABLED",
        "IN FLIGHT",
        "SUCCESS %",
        "LAST ERROR",
    ] {
        assert!(header.contains(col), "header {header:?} lacks {col}");
    }
    let row = table.lines().find(|l| l.starts_with("orders")).unwrap();
    assert!(row.contains("closed") && row.contains("no"), "{row}");
    assert!(table.lines().any(|l| l.starts_with("broken")), "{table}");

    let paused = |v: &Value| {
        v["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "orders")
            .unwrap()["paused"]
            .clone()
    };
    let out = cli(&hy, &["targets", "pause", "orders"]).await;
    assert!(out.ok().contains("paused orders"), "{}", out.stdout);
    let v = cli(&hy, &["targets", "list", "--json"]).await.json();
    assert_eq!(paused(&v), Value::Bool(true), "{v}");

    // Paused for real: a new event waits instead of reaching the sink.
    let before = sink.received().len();
    let id = hy.send("shop", "{\"n\":2}").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sink.received().len(), before, "nothing sent while paused");

    let v = cli(&hy, &["targets", "resume", "orders", "--json"])
        .await
        .json();
    let target = if v["target"].is_object() {
        &v["target"]
    } else {
        &v
    };
    assert_eq!(target["paused"], false, "{v}");
    let v = cli(&hy, &["targets", "list", "--json"]).await.json();
    assert_eq!(paused(&v), Value::Bool(false), "{v}");
    hy.wait_event(&id, Duration::from_secs(20), delivered).await;

    cli(&hy, &["targets", "enable", "orders"]).await.ok();
    let err = cli(&hy, &["targets", "pause", "nope"]).await;
    assert!(err.failed(1).contains("nope"), "{}", err.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_one_event_and_by_filter() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink, CLOSED_PORT));
    let body = "{\"replay\":\"me\"}";
    let id = delivered_event(&hy, "shop", body).await;
    sink.wait_for(1, Duration::from_secs(10)).await;

    let out = cli(&hy, &["replay", &id]).await;
    assert!(out.ok().contains("queued"), "{}", out.stdout);
    let got = sink.wait_for(2, Duration::from_secs(20)).await;
    assert!(got.iter().all(|r| r.body == body.as_bytes()), "same body");
    let v = hy
        .wait_event(&id, Duration::from_secs(20), |v| {
            delivered(v) && v["deliveries"].as_array().is_some_and(|d| d.len() == 2)
        })
        .await;
    let first = v["deliveries"][0]["id"].as_str().unwrap();
    let second = v["deliveries"][1]["id"].as_str().unwrap();
    assert_ne!(first, second, "a replay is a new delivery");

    let v = cli(&hy, &["replay", "--source", "shop", "--json"])
        .await
        .json();
    assert_eq!(v["replayed"], 1, "{v}");
    assert_eq!(v["events"][0], id.as_str(), "{v}");
    sink.wait_for(3, Duration::from_secs(20)).await;

    let out = cli(&hy, &["replay"]).await;
    assert!(out.failed(1).contains("--source"), "{}", out.stderr);
    let out = cli(&hy, &["replay", &id, "--source", "shop"]).await;
    assert_eq!(
        out.code, 2,
        "clap refuses an id with filters: {}",
        out.stderr
    );
    let out = cli(&hy, &["replay", "evt_nope"]).await;
    assert!(out.failed(1).contains("evt_nope"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_list_and_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let port = free_port();
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink, port));
    let dead = |v: &Value| {
        v["deliveries"]
            .as_array()
            .is_some_and(|d| !d.is_empty() && d.iter().all(|d| d["status"] == "dead"))
    };
    let mut events = vec![];
    for n in 0..2 {
        let id = hy.send("flaky", &format!("{{\"n\":{n}}}")).await;
        let v = hy.wait_event(&id, Duration::from_secs(30), dead).await;
        let msg = v["deliveries"][0]["id"].as_str().unwrap().to_string();
        events.push((id, msg));
    }

    let out = cli(&hy, &["deliveries", "list", "--status", "dead"]).await;
    let table = out.ok();
    let header = table.lines().next().unwrap();
    for col in ["ID", "EVENT", "TARGET", "STATUS", "ATTEMPTS", "LAST ERROR"] {
        assert!(header.contains(col), "header {header:?} lacks {col}");
    }
    for (event, msg) in &events {
        let row = table
            .lines()
            .find(|l| l.starts_with(msg.as_str()))
            .unwrap_or_else(|| panic!("{msg} not listed:\n{table}"));
        assert!(row.contains(event.as_str()) && row.contains("broken") && row.contains("dead"));
        assert!(!row.trim_end().ends_with(" -"), "a last error: {row}");
    }

    let v = cli(&hy, &["deliveries", "list", "--status", "dead", "--json"])
        .await
        .json();
    let msgs: BTreeSet<String> = events.iter().map(|(_, m)| m.clone()).collect();
    assert_eq!(ids_in(&v, "deliveries"), msgs);
    let v = cli(
        &hy,
        &[
            "deliveries",
            "list",
            "--status",
            "dead",
            "--target",
            "orders",
            "--json",
        ],
    )
    .await
    .json();
    assert!(ids_in(&v, "deliveries").is_empty(), "{v}");
    let out = cli(&hy, &["deliveries", "list", "--event", &events[0].0]).await;
    assert!(out.ok().contains(events[0].1.as_str()), "{}", out.stdout);

    // The receiver comes back: retry one by id, then the rest in bulk.
    let back = Sink::start_on(format!("127.0.0.1:{port}").parse().unwrap(), vec![]).await;
    let out = cli(&hy, &["deliveries", "retry", &events[0].1]).await;
    assert!(out.ok().contains("scheduled"), "{}", out.stdout);
    hy.wait_event(&events[0].0, Duration::from_secs(20), delivered)
        .await;
    let out = cli(&hy, &["deliveries", "retry"]).await;
    assert!(out.failed(1).contains("--status dead"), "{}", out.stderr);
    let v = cli(
        &hy,
        &[
            "deliveries",
            "retry",
            "--status",
            "dead",
            "--target",
            "broken",
            "--json",
        ],
    )
    .await
    .json();
    assert_eq!(v["retried"], 1, "{v}");
    hy.wait_event(&events[1].0, Duration::from_secs(20), delivered)
        .await;
    assert_eq!(back.received_on("/broken").len(), 2);
    let out = cli(&hy, &["deliveries", "list", "--status", "dead"]).await;
    assert!(out.ok().contains("no deliveries"), "{}", out.stdout);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_only_new_events_oldest_first() {
    let tmp = tempfile::tempdir().unwrap();
    let sink = Sink::start(vec![]).await;
    let hy = Hookyard::start(tmp.path(), &config(tmp.path(), &sink, CLOSED_PORT));
    let old = hy.send("shop", "{\"old\":true}").await;

    let mut child = cli_command(&[
        "events",
        "tail",
        "--source",
        "shop",
        "--interval",
        "200ms",
        "--admin",
        &hy.admin,
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let (err_tx, err_rx) = std::sync::mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = err_tx.send(line);
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = err_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("tail announces itself on stderr");
    assert!(started.contains("waiting for new events"), "{started}");

    let a = hy.send("shop", "{\"new\":1}").await;
    let b = hy.send("shop", "{\"new\":2}").await;
    let _other = hy.send("flaky", "{\"other\":true}").await;
    let mut lines = vec![];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !(lines.iter().any(|l: &String| l.contains(&b))
        && lines.iter().any(|l: &String| l.contains(&a)))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("tail printed only {lines:?}"),
        }
    }
    // One more interval or two: nothing else (old, other source, repeats).
    tokio::time::sleep(Duration::from_millis(700)).await;
    lines.extend(rx.try_iter());
    child.kill().unwrap();
    child.wait().unwrap();

    assert_eq!(lines.len(), 2, "exactly the two new shop events: {lines:?}");
    assert!(!lines.iter().any(|l| l.contains(&old)), "{lines:?}");
    assert!(
        lines[0].contains(&a) && lines[1].contains(&b),
        "oldest first: {lines:?}"
    );
    assert!(lines[0].contains(" shop "), "{lines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_is_sent_from_flag_or_env() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!("{}\n[sources.shop]\n", server_section(tmp.path())).replacen(
        "[server]\n",
        "[server]\nadmin_token = \"t0ps3cret\"\n",
        1,
    );
    let hy = Hookyard::start(tmp.path(), &config);

    let out = cli(&hy, &["events", "list"]).await;
    let err = out.failed(1);
    assert!(err.contains("401") && err.contains("--token"), "{err}");
    let out = cli(&hy, &["events", "list", "--token", "t0ps3cret"]).await;
    assert!(out.ok().contains("no events"), "{}", out.stdout);
    let out = cli_env(
        &hy.admin,
        &["events", "list", "--json"],
        &[("HOOKYARD_ADMIN_TOKEN", "t0ps3cret")],
    )
    .await;
    assert!(out.json()["events"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_admin_names_the_url() {
    let url = format!("http://127.0.0.1:{CLOSED_PORT}");
    let out = cli_env(&url, &["events", "list"], &[]).await;
    let err = out.failed(1);
    assert!(err.contains(&url) && err.contains("--admin"), "{err}");

    let out = cli_env("127.0.0.1:8081", &["targets", "list"], &[]).await;
    assert!(
        out.failed(1).contains("http://127.0.0.1:8081"),
        "{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format_writes_one_object_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = format!("{}\n[sources.raw]\n", server_section(tmp.path()));
    let hy = Hookyard::start_env(tmp.path(), &config, &[("HOOKYARD_LOG_FORMAT", "json")]);
    let id = hy.send("raw", "{\"a\":1}").await;
    hy.wait_event(&id, Duration::from_secs(20), |v| v["status"] != "pending")
        .await;

    let log = hy.log_text();
    let lines: Vec<Value> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\nlog:\n{log}")))
        .collect();
    assert!(lines.len() >= 2, "some logs:\n{log}");
    for v in &lines {
        assert!(v.is_object(), "{v}");
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
    }
    assert!(
        lines.iter().any(|v| v["message"]
            .as_str()
            .is_some_and(|m| m.contains("listening"))),
        "the start-up line, with its message at the top level:\n{log}"
    );

    // The text default is unchanged, and the flag works on any command.
    let out = cli_command(&[
        "--log-format",
        "json",
        "check",
        "--config",
        "/nonexistent.toml",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = cli_command(&["events", "list", "--log-format", "yaml"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown format is a usage error"
    );
}
