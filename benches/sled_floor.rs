//! What sled alone costs per ingested event, without HTTP, routing or
//! hookyard's writer: `cargo bench --bench sled_floor`.
//!
//! Issue 16's ingest goals leave the router a CPU budget per event (two
//! cores shared with the load generator). This measures the part of it
//! sled takes for the records an ingested event needs (the event and its
//! "to route" mark in one batch; the outcome and the mark's removal in
//! another, as in `src/store/sled`), with hookyard's sled settings, in
//! groups as the group writer makes them. Process CPU time counts sled's
//! own IO and epoch threads. The baseline, in the same run, writes the
//! same bytes to an append-only file and keeps the keys in a `BTreeMap`:
//! roughly what an index of our own would pay.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

const EVENTS: usize = 200_000;
/// Without `--bench` (`cargo test --all-targets` runs this too), a smoke
/// run: few events, one round, figures meaningless.
const SMOKE_EVENTS: usize = 2_000;
/// Events per group commit: how many the group writer finds waiting
/// depends on the load, so a range.
const GROUPS: [usize; 3] = [8, 32, 128];
/// An event record's size without its body (meta JSON + body ref).
const EVENT_VALUE: usize = 300;
const OUTCOME_VALUE: usize = 120;

/// User + system CPU seconds of this process, all threads.
fn cpu_seconds() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let u = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr());
        u.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Event ids as hookyard makes them (time-ordered: new keys go to the
/// right edge of the tree).
fn ids(events: usize) -> Vec<String> {
    (0..events)
        .map(|_| {
            hookyard::model::id::EventId::generate()
                .as_str()
                .to_string()
        })
        .collect()
}

fn key(prefix: u8, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + id.len());
    k.push(prefix);
    k.extend_from_slice(id.as_bytes());
    k
}

struct Figures {
    wall: f64,
    cpu: f64,
}

fn run_sled(events: usize, group_size: usize) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = hookyard::store::sled::sled_config(&dir.path().join("sled"))
        .open()
        .expect("sled opens");
    let tree = db.open_tree("hookyard").expect("tree");
    let event = vec![b'e'; EVENT_VALUE];
    let outcome = vec![b'o'; OUTCOME_VALUE];
    let ids = ids(events);
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let mut previous: Option<std::ops::Range<usize>> = None;
    for start in (0..events).step_by(group_size) {
        let group = start..(start + group_size).min(events);
        let mut batch = sled::Batch::default();
        for n in group.clone() {
            let id = &ids[n];
            batch.insert(key(b'e', id), event.as_slice());
            batch.insert(key(b'r', id), &[] as &[u8]);
        }
        // The previous group's events are routed in this group.
        for n in previous.take().into_iter().flatten() {
            let id = &ids[n];
            batch.insert(key(b'o', id), outcome.as_slice());
            batch.remove(key(b'r', id));
        }
        tree.apply_batch(batch).expect("batch");
        previous = Some(group);
    }
    db.flush().expect("flush");
    Figures {
        wall: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu0,
    }
}

fn run_append_log(events: usize, group_size: usize) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = std::io::BufWriter::with_capacity(
        512 * 1024,
        std::fs::File::create(dir.path().join("log")).expect("log file"),
    );
    let mut index: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let event = vec![b'e'; EVENT_VALUE];
    let outcome = vec![b'o'; OUTCOME_VALUE];
    let mut offset = 0u64;
    let mut put =
        |index: &mut BTreeMap<Vec<u8>, u64>, k: Vec<u8>, v: &[u8], file: &mut dyn Write| {
            file.write_all(&(k.len() as u32).to_le_bytes())
                .expect("write");
            file.write_all(&k).expect("write");
            file.write_all(v).expect("write");
            offset += 4 + k.len() as u64 + v.len() as u64;
            index.insert(k, offset);
        };
    let ids = ids(events);
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let mut previous: Option<std::ops::Range<usize>> = None;
    for start in (0..events).step_by(group_size) {
        let group = start..(start + group_size).min(events);
        for n in group.clone() {
            let id = &ids[n];
            put(&mut index, key(b'e', id), &event, &mut file);
            put(&mut index, key(b'r', id), &[], &mut file);
        }
        for n in previous.take().into_iter().flatten() {
            let id = &ids[n];
            put(&mut index, key(b'o', id), &outcome, &mut file);
            index.remove(&key(b'r', id));
        }
        file.flush().expect("flush");
        previous = Some(group);
    }
    file.get_ref().sync_data().expect("sync");
    std::hint::black_box(index.len());
    Figures {
        wall: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu0,
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (events, rounds) = if full { (EVENTS, 3) } else { (SMOKE_EVENTS, 1) };
    let per_event = |f: &Figures| f.cpu / events as f64 * 1e6;
    println!(
        "sled floor: {events} events per run, {EVENT_VALUE} B event records; CPU is the \
         whole process's (sled's IO threads included), median of {rounds} round(s)"
    );
    println!(
        "| events per group | append log + BTreeMap, µs CPU/event | sled, µs CPU/event \
         | sled / baseline | sled, events/s per core of CPU | sled, events/s (one writer, wall) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for group in GROUPS {
        let mut rows = Vec::new();
        for _ in 0..rounds {
            let base = run_append_log(events, group);
            let sled = run_sled(events, group);
            rows.push((
                per_event(&sled),
                per_event(&base),
                events as f64 / sled.wall,
            ));
        }
        rows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (sled, base, rate) = rows[rows.len() / 2];
        println!(
            "| {group} | {base:.1} | {sled:.1} | {:.1}x | {:.0} | {rate:.0} |",
            sled / base,
            1e6 / sled
        );
    }
}
