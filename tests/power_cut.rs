//! A simulated power cut on the sled backend: hookyard is killed with -9
//! mid-stream, then the newest body-log segment is cut where a power cut
//! could cut it (anywhere after the last record of an acknowledged event,
//! mid-record included, or with a torn record's bytes left at the end).
//! On restart, every acknowledged event is there with the body it was sent
//! with, nothing listed is corrupt, an event whose body was cut is gone
//! with its idempotency key (the sender's retry is stored afresh), and
//! every acknowledged event is delivered.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// One record of a body-log segment: `len u32 · crc u32 · key_len u16 ·
/// key · body`, little-endian (`src/store/sled/bodies.rs`).
struct Record {
    key: String,
    start: u64,
    end: u64,
}

/// The segment's complete records, in order.
fn records(bytes: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 10 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        let end = at + 8 + len;
        if len < 2 || end > bytes.len() {
            break;
        }
        let key_len = u16::from_le_bytes(bytes[at + 8..at + 10].try_into().unwrap()) as usize;
        out.push(Record {
            key: String::from_utf8_lossy(&bytes[at + 10..at + 10 + key_len]).into_owned(),
            start: at as u64,
            end: end as u64,
        });
        at = end;
    }
    out
}

fn newest_segment(data: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data.join("bodies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    segments.pop().expect("a body segment")
}

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// A small deterministic generator (the seed is printed), for the cuts.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn config(dir: &Path, sink_port: u16, store: &str) -> String {
    format!(
        "{}\n[sources.s]\ntargets = [\"raw\"]\nidempotency = {{ header = \"x-id\", window = \"1h\" }}\n\n\
         [targets.raw]\nurl = \"http://127.0.0.1:{sink_port}/raw\"\nsecret = \"{SECRET}\"\nretry_schedule = [\"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\", \"200ms\"]\n\n{store}",
        server_section(dir)
    )
}

/// The body sent as request `n` (sizes vary, so records end anywhere).
fn body_of(n: usize) -> String {
    format!(
        r#"{{"type":"order.paid","n":{n},"pad":"{}"}}"#,
        "x".repeat(n * 37 % 900)
    )
}

/// Every stored event of source `s`, id → the `n` of its body, asserting
/// each body is whole and one that was sent.
async fn stored(hy: &Hookyard) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let path = match &cursor {
            None => "/admin/events?limit=200".to_string(),
            Some(c) => format!("/admin/events?limit=200&cursor={c}"),
        };
        let (status, page) = hy.admin_get(&path).await;
        assert_eq!(status, 200, "{page}");
        for e in page["events"].as_array().unwrap() {
            let id = e["id"].as_str().unwrap().to_string();
            let v = hy.event(&id).await;
            let text = v["event"]["body"]["text"]
                .as_str()
                .unwrap_or_else(|| panic!("event {id} has no readable body: {v}"));
            let body: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("event {id}'s body is corrupt ({e}): {text:?}"));
            let n = body["n"].as_u64().unwrap() as usize;
            assert_eq!(
                text,
                body_of(n),
                "event {id}'s body differs from what was sent"
            );
            out.insert(id, n);
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
    panic!("event listing does not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_anywhere_in_the_body_log_tail_loses_no_acknowledged_event() {
    power_cut("").await;
}

/// The same with the store's index on fjall: its journal, synced by the
/// same flush, holds the references the cut body log is checked against.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_on_fjall_anywhere_in_the_body_log_tail_loses_no_acknowledged_event() {
    power_cut(ON_FJALL).await;
}

async fn power_cut(store: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let origin = tmp.path().join("origin");
    std::fs::create_dir_all(origin.join("plugins")).unwrap();
    // The target stays down while the crash happens: events stay pending.
    let sink_port = free_port();
    let hy = Hookyard::start(&origin, &config(&origin, sink_port, store));

    // Eight clients send back to back (flush durability, the default);
    // SIGKILL lands mid-stream.
    let url = format!("{}/hooks/s", hy.public);
    let http = reqwest::Client::new();
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url, counter) = (http.clone(), url.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut failed = 0;
            for _ in 0..5000 {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answered = async {
                    let r = http
                        .post(&url)
                        .header("x-id", format!("k{n}"))
                        .body(body_of(n))
                        .send()
                        .await
                        .ok()?;
                    if r.status() != 202 {
                        return None;
                    }
                    let v = r.json::<Value>().await.ok()?;
                    Some(v["id"].as_str()?.to_string())
                };
                match answered.await {
                    Some(id) => acked.push((id, n)),
                    None => {
                        failed += 1;
                        if failed > 3 {
                            break;
                        }
                    }
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    hy.kill9();
    let mut acked: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(acked.len() >= 8, "events were acknowledged before the kill");

    let segment = newest_segment(&origin.join("data"));
    let pristine = std::fs::read(&segment).unwrap();
    let recs = records(&pristine);
    let segment_keys: HashSet<&str> = recs.iter().map(|r| r.key.as_str()).collect();
    // The newest segment holds the newest acknowledged events' bodies (a
    // sealed segment was synced when sealed, and is never cut).
    let last_acked = recs
        .iter()
        .filter(|r| acked.contains_key(&r.key))
        .map(|r| r.end)
        .max()
        .expect("acknowledged events in the newest segment");
    let after: Vec<&Record> = recs.iter().filter(|r| r.start >= last_acked).collect();
    eprintln!(
        "{} acknowledged; newest segment {} bytes, {} records, the last acknowledged one ends at {last_acked}; {} records after it",
        acked.len(),
        pristine.len(),
        recs.len(),
        after.len()
    );

    // Where a power cut may cut: right after the last acknowledged record,
    // nowhere, inside a later record, at random, and with a torn record's
    // bytes left behind.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("cut seed {seed}");
    let mut rng = Rng(seed);
    let len = pristine.len() as u64;
    let mut cuts: Vec<(String, Vec<u8>)> = vec![
        (
            format!("at {last_acked}"),
            pristine[..last_acked as usize].to_vec(),
        ),
        ("none".into(), pristine.clone()),
    ];
    if let Some(r) = after.first() {
        let mid = r.start + 1 + rng.below(r.end - r.start - 1);
        cuts.push((
            format!("mid-record at {mid}"),
            pristine[..mid as usize].to_vec(),
        ));
    }
    for _ in 0..3 {
        let at = last_acked + rng.below(len - last_acked + 1);
        cuts.push((format!("random at {at}"), pristine[..at as usize].to_vec()));
    }
    {
        // A torn write: the start of a record (header and part of a body
        // copied from one that exists) after the last acknowledged one.
        let r = &recs[recs.len() - 1];
        let torn = &pristine[r.start as usize..(r.start + (r.end - r.start) / 2) as usize];
        let mut bytes = pristine[..last_acked as usize].to_vec();
        bytes.extend_from_slice(torn);
        cuts.push(("torn record appended".into(), bytes));
    }

    let sink = Sink::start_on(format!("127.0.0.1:{sink_port}").parse().unwrap(), vec![]).await;
    let last = cuts.len() - 1;
    for (i, (what, bytes)) in cuts.into_iter().enumerate() {
        let dir = tmp.path().join(format!("cut-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        copy_dir(&origin.join("data"), &dir.join("data"));
        copy_dir(&origin.join("plugins"), &dir.join("plugins"));
        let seg = dir.join("data/bodies").join(segment.file_name().unwrap());
        std::fs::write(&seg, &bytes).unwrap();
        let whole: HashSet<u64> = records(&bytes).iter().map(|r| r.start).collect();
        let kept: HashSet<&str> = recs
            .iter()
            .filter(|r| whole.contains(&r.start))
            .map(|r| r.key.as_str())
            .collect();

        // Only the last trial lets the sink answer (the others keep their
        // events pending, so the listing shows them all).
        let sink_for_this = if i == last { sink_port } else { CLOSED_PORT };
        let hy = Hookyard::start(&dir, &config(&dir, sink_for_this, store));
        let listed = stored(&hy).await;
        let missing: Vec<_> = acked
            .keys()
            .filter(|id| !listed.contains_key(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "cut {what}: {} acknowledged events are gone, e.g. {:?}\nlog:\n{}",
            missing.len(),
            &missing[..missing.len().min(5)],
            hy.log_text()
        );
        for (id, n) in &acked {
            assert_eq!(listed[id], *n, "cut {what}: event {id} holds another body");
        }
        // Events whose records the cut removed are gone. One whose record
        // it kept may be listed (whole: `stored` checked) or not (the kill
        // came between the body's append and sled's batch).
        let cut_away: Vec<&str> = segment_keys
            .iter()
            .copied()
            .filter(|k| k.starts_with("evt_") && !kept.contains(k))
            .collect();
        for id in &cut_away {
            assert!(
                !listed.contains_key(*id),
                "cut {what}: event {id}'s body was cut, yet it is listed"
            );
        }
        let (status, ready) = hy.admin_get("/readyz").await;
        assert_eq!(status, 200, "cut {what}: not ready after recovery: {ready}");
        eprintln!(
            "cut {what}: {} events listed, all {} acknowledged whole; {} cut away",
            listed.len(),
            acked.len(),
            cut_away.len()
        );

        if i == last {
            // The sender retries what was cut away: stored afresh (its
            // idempotency key went with it), not answered as a duplicate.
            let by_id: HashMap<&str, usize> = recs
                .iter()
                .filter(|r| !acked.contains_key(&r.key))
                .filter_map(|r| {
                    let start = r.start as usize + 10 + r.key.len();
                    let body: Value =
                        serde_json::from_slice(&pristine[start..r.end as usize]).ok()?;
                    Some((r.key.as_str(), body["n"].as_u64()? as usize))
                })
                .collect();
            let mut resent = 0;
            for id in &cut_away {
                let Some(&n) = by_id.get(id) else { continue };
                let r = http
                    .post(format!("{}/hooks/s", hy.public))
                    .header("x-id", format!("k{n}"))
                    .body(body_of(n))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 202, "cut {what}: a retry of a cut event");
                resent += 1;
            }
            // And an acknowledged one is still a duplicate.
            let (id, n) = acked.iter().next().unwrap();
            let r = http
                .post(format!("{}/hooks/s", hy.public))
                .header("x-id", format!("k{n}"))
                .body(body_of(*n))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "a retry of an acknowledged event");
            assert_eq!(r.json::<Value>().await.unwrap()["id"], id.as_str());

            // Every acknowledged event (and every retry) is delivered.
            let want: HashSet<usize> = acked.values().copied().collect();
            let got = sink
                .wait_until(Duration::from_secs(60), |got| {
                    let seen: HashSet<usize> = got
                        .iter()
                        .map(|r| r.json()["n"].as_u64().unwrap() as usize)
                        .collect();
                    want.is_subset(&seen)
                })
                .await;
            assert!(got.iter().all(|r| r.signature_ok));
            eprintln!(
                "cut {what}: {} acknowledged events delivered, {resent} cut ones resent and stored",
                want.len()
            );
        }
    }
}
