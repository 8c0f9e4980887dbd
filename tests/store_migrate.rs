//! `hookyard store migrate` moves an embedded store from sled to fjall and
//! back while the router is stopped: every event, its routing, a plugin's
//! KV and the deliveries still to make come through, the router picks up
//! where it left off, and neither a running router nor the wrong engine in
//! the config gets past it.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::tmpfs::Mounted;
use support::*;

const EVENTS: usize = 30;

/// `orders` is the sink; `raw` is down (nothing listens at `raw`) until
/// the config points it at the sink too. Its breaker stays closed, so its
/// waiting deliveries go out as soon as it is up.
fn config(dir: &std::path::Path, sink: &Sink, raw: &str, store: &str) -> String {
    let retry = format!("retry_schedule = [{}]", vec!["\"1s\""; 30].join(", "));
    format!(
        "{}\n[sources.s]\nplugins = [\"router\"]\ntargets = [\"raw\"]\n\n\
         [targets.orders]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n{retry}\n\n\
         [targets.alerts]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n{retry}\n\n\
         [targets.raw]\nurl = \"{raw}\"\nsecret = \"{SECRET}\"\n{retry}\nbreaker_failures = 100\n\n{store}",
        server_section(dir),
        sink.url("/orders"),
        sink.url("/alerts"),
    )
}

fn hookyard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run hookyard")
}

fn migrate(dir: &std::path::Path, to: &str) -> Output {
    let config = dir.join("hookyard.toml");
    hookyard(&[
        "store",
        "migrate",
        "--config",
        config.to_str().unwrap(),
        "--to",
        to,
    ])
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `serve` with a config naming the engine the store is not on: it must
/// exit with an error, not serve an empty index (bounded: 30 s).
fn serve_refuses(dir: &std::path::Path, config: &str) -> String {
    let path = dir.join("wrong-engine.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookyard"))
        .args(["serve", "--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("hookyard served a store kept with the other engine");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    text(&out).1
}

/// SIGTERM, off the runtime's threads (the sink keeps answering).
async fn stop(hy: Hookyard) {
    let status = tokio::task::spawn_blocking(move || hy.sigterm(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

/// The `x-hookyard-type-count` header of the last delivery on `path`:
/// the quickstart router's KV counter for the event's type.
fn last_count(sink: &Sink, path: &str) -> u64 {
    sink.received_on(path)
        .iter()
        .filter_map(|r| r.header("x-hookyard-type-count")?.parse().ok())
        .max()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_store_moves_to_fjall_and_back_with_nothing_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    install_plugin(&dir.join("plugins"), "quickstart-router", "router");
    let sink = Sink::start(vec![]).await;
    let down = format!("http://127.0.0.1:{}/raw", free_port());

    // On sled: every event reaches `orders`; its `raw` copy waits to retry.
    let hy = Hookyard::start(dir, &config(dir, &sink, &down, ""));
    let mut ids = Vec::new();
    for n in 0..EVENTS {
        ids.push(
            hy.send("s", &format!(r#"{{"type":"order.paid","n":{n}}}"#))
                .await,
        );
    }
    sink.wait_for_path("/orders", EVENTS, Duration::from_secs(20))
        .await;
    assert_eq!(last_count(&sink, "/orders"), EVENTS as u64);
    stop(hy).await;

    let out = migrate(dir, "fjall");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for pass in ["counting:", "copying:", "checking:"] {
        assert!(stderr.contains(pass), "no {pass} progress: {stderr}");
    }
    assert!(stdout.contains("from sled to fjall"), "{stdout}");
    assert!(
        stdout.contains("now set `backend = \"fjall\"`"),
        "says what to change: {stdout}"
    );
    assert!(dir.join("data/fjall").is_dir() && dir.join("data/sled.before-fjall").is_dir());

    // The config still says sled: refused, and the message says why.
    let refused = serve_refuses(dir, &config(dir, &sink, &down, ""));
    assert!(refused.contains("fjall engine"), "{refused}");

    // On fjall, with `raw` up: the waiting copies go out, the KV counter
    // goes on from where it was, and every event is listed as routed.
    let hy = Hookyard::start(dir, &config(dir, &sink, &sink.url("/raw"), ON_FJALL));
    sink.wait_for_path("/raw", EVENTS, Duration::from_secs(30))
        .await;
    for id in &ids {
        let v = hy.wait_event(id, Duration::from_secs(10), delivered).await;
        assert_eq!(v["status"], "routed", "{v}");
    }
    let id = hy.send("s", r#"{"type":"order.paid","n":30}"#).await;
    hy.wait_event(&id, Duration::from_secs(10), delivered).await;
    assert_eq!(last_count(&sink, "/orders"), EVENTS as u64 + 1);

    // Not while it runs: the engine's lock refuses, and nothing moves.
    let out = migrate(dir, "sled");
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stderr.contains("(a running hookyard?) is using it"),
        "{stderr}"
    );
    assert!(dir.join("data/fjall").is_dir() && !dir.join("data/sled").exists());
    stop(hy).await;

    // And back: the same history on sled.
    let out = migrate(dir, "sled");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let hy = Hookyard::start(dir, &config(dir, &sink, &sink.url("/raw"), ""));
    let (status, listed) = hy.admin_get("/admin/events?limit=100").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["events"].as_array().unwrap().len(), EVENTS + 1);
    let id = hy.send("s", r#"{"type":"order.paid","n":31}"#).await;
    hy.wait_event(&id, Duration::from_secs(10), delivered).await;
    assert_eq!(last_count(&sink, "/orders"), EVENTS as u64 + 2);
    // Each event reached each target once: nothing was delivered twice
    // by coming through the migration with a stale schedule.
    assert_eq!(sink.received_on("/orders").len(), EVENTS + 2);
    assert_eq!(sink.received_on("/raw").len(), EVENTS + 2);
}

/// A partial copy that a killed migration left is named in the log when
/// hookyard starts, since it holds as much space as the index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_copy_left_behind_is_reported_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let partial = tmp.path().join("data").join("fjall.migrating");
    std::fs::create_dir_all(&partial).unwrap();
    let hy = Hookyard::start(tmp.path(), &server_section(tmp.path()));
    let log = hy.log_text();
    assert!(
        log.contains("interrupted `hookyard store migrate` left a partial copy")
            && log.contains("fjall.migrating"),
        "{log}"
    );
    stop(hy).await;
}

#[test]
fn a_postgres_config_or_an_unknown_engine_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("hookyard.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[store]\nbackend = \"postgres\"\nurl = \"postgres://nobody@127.0.0.1:1/none\"\n",
            server_section(tmp.path())
        ),
    )
    .unwrap();
    let out = migrate(tmp.path(), "fjall");
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("keeps its store in PostgreSQL"), "{stderr}");

    let out = migrate(tmp.path(), "rocksdb");
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("one of sled, fjall"), "{stderr}");
}

/// A disk without room for the copy: the migration stops with a clear
/// error, removes what it copied, and leaves the store as it was; once
/// there is room, it moves. Runs as root (it mounts a small tmpfs).
#[test]
fn a_disk_without_room_for_the_copy_changes_nothing() {
    use hookyard::store::sled::engine::{Batch, Engine, Tree};

    let tmp = tempfile::tempdir().unwrap();
    let disk = Mounted::tmpfs(&tmp.path().join("disk"), "64m");
    let data = disk.path().join("data");
    // Small records: the new engine's journal spends more on each than
    // its key and value, so room for the records alone is not enough.
    let records = 100_000;
    let tree = Tree::open(&data, Engine::Sled).unwrap();
    let mut b = Batch::default();
    for i in 0..records {
        b.insert(format!("e{i:08}"), (i as u64).to_be_bytes());
    }
    tree.apply_batch(b).unwrap();
    tree.flush().unwrap();
    drop(tree);
    std::fs::write(
        tmp.path().join("hookyard.toml"),
        format!("[server]\ndata_dir = \"{}\"\n", data.display()),
    )
    .unwrap();
    let logical = records * (9 + 8);

    let mut outcomes = Vec::new();
    // Nothing free (the source cannot even be opened), less than the
    // records (the check up front), then a quarter more than the records
    // (the engine runs out mid-copy).
    for room in [0, logical / 2, logical + logical / 4] {
        let filler = fill_leaving(disk.path(), room as u64);
        let out = migrate(tmp.path(), "fjall");
        let (stdout, stderr) = text(&out);
        std::fs::remove_file(filler).unwrap();
        assert!(!out.status.success(), "moved with {room} bytes free");
        assert!(
            stderr.contains("nothing was changed") || stderr.contains("partial copy removed"),
            "{stdout}\n{stderr}"
        );
        eprintln!("{room} bytes free: {stderr}");
        outcomes.push(if stderr.contains("partial copy removed") {
            "stopped"
        } else {
            "refused"
        });
        assert!(!data.join("fjall.migrating").exists() && !data.join("fjall").exists());
        let tree = Tree::open(&data, Engine::Sled).unwrap();
        assert_eq!(tree.range::<&[u8], _>(..).count(), records);
    }
    assert_eq!(outcomes, ["refused", "refused", "stopped"]);

    disk.grow("256m");
    let out = migrate(tmp.path(), "fjall");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let tree = Tree::open(&data, Engine::Fjall).unwrap();
    assert_eq!(tree.range::<&[u8], _>(..).count(), records);
}

/// Writes a file that leaves about `room` bytes free on the file system at
/// `dir`.
fn fill_leaving(dir: &std::path::Path, room: u64) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    loop {
        let free = rustix::fs::statvfs(dir).unwrap();
        let free = free.f_bavail * free.f_frsize;
        if free <= room {
            break;
        }
        let n = (free - room).min(chunk.len() as u64) as usize;
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    f.sync_all().unwrap();
    path
}
