//! What sled alone costs per event, without HTTP, routing, plugins or
//! hookyard's writer: `cargo bench --bench sled_floor`.
//!
//! Issue 16's goals leave the router a CPU budget per event (two cores
//! shared with the load generator and the sink). This measures the part
//! of it sled takes, for the records `src/store/sled` writes, in groups as
//! the group writer makes them, with the store's sled settings:
//! - ingest: the event and its "to route" mark in one batch; the outcome
//!   and the mark's removal in the next;
//! - delivered: the same, the outcome batch also carrying the delivery,
//!   the event's index entry for it, its schedule entry and a plugin's KV
//!   counter; then the attempt, the delivery rewritten and its schedule
//!   entry removed.
//!
//! fjall, the store's second engine (an LSM tree), writes the same batches
//! with the store's fjall settings; its CPU is counted until its
//! background flushes and compactions have gone quiet.
//!
//! Process CPU time counts sled's own IO and epoch threads. The baseline,
//! in the same run, writes the same bytes to an append-only file and keeps
//! the keys in a `BTreeMap`: about the least an index of our own would pay
//! (no checksums, no fsync).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use hookyard::model::id::{DeliveryId, EventId};
use hookyard::store::sled::layout::{
    DELIVERY, EVENT, OUTCOME, TO_ROUTE, attempt_key, event_delivery_key, key, kv_key, schedule_key,
};

const EVENTS: usize = 200_000;
/// Without `--bench` (`cargo test --all-targets` runs this too), a smoke
/// run: few events, one round, figures meaningless.
const SMOKE_EVENTS: usize = 2_000;
/// Events per group commit: how many the group writer finds waiting
/// depends on the load, so a range.
const GROUPS: [usize; 3] = [8, 32, 128];
/// Record sizes as stored (JSON without bodies, which are in the body
/// log): an event's meta and body ref, an outcome, a delivery, an attempt.
const EVENT_VALUE: usize = 300;
const OUTCOME_VALUE: usize = 120;
const DELIVERY_VALUE: usize = 250;
const ATTEMPT_VALUE: usize = 150;

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Ingest,
    Delivered,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Ingest => "ingest",
            Scenario::Delivered => "delivered",
        }
    }
}

enum Op {
    Put(Vec<u8>, usize),
    Del(Vec<u8>),
}

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

/// Every batch of a run, built before the clock starts: group `i`'s
/// events are stored in batch `i`, routed in batch `i + 1` and (when
/// delivered) attempted in batch `i + 2`, as a pipeline under steady load.
fn batches(scenario: Scenario, events: usize, group: usize) -> Vec<Vec<Op>> {
    // hookyard's own ids: time-ordered, so new keys go to the right edge.
    let ids: Vec<(String, String)> = (0..events)
        .map(|_| {
            let e = EventId::generate().as_str().to_string();
            let d = DeliveryId::generate().as_str().to_string();
            (e, d)
        })
        .collect();
    let due = |n: usize| 1_780_000_000_000u64 + n as u64;
    let groups: Vec<_> = (0..events)
        .step_by(group)
        .map(|s| s..(s + group).min(events))
        .collect();
    let mut out = Vec::new();
    for i in 0..groups.len() + 2 {
        let mut ops = Vec::new();
        if let Some(g) = groups.get(i) {
            for (e, _) in &ids[g.clone()] {
                ops.push(Op::Put(key(EVENT, &[e.as_bytes()]), EVENT_VALUE));
                ops.push(Op::Put(key(TO_ROUTE, &[e.as_bytes()]), 0));
            }
        }
        if let Some(g) = i.checked_sub(1).and_then(|i| groups.get(i)) {
            for n in g.clone() {
                let (e, d) = &ids[n];
                ops.push(Op::Put(key(OUTCOME, &[e.as_bytes()]), OUTCOME_VALUE));
                ops.push(Op::Del(key(TO_ROUTE, &[e.as_bytes()])));
                if scenario == Scenario::Delivered {
                    ops.push(Op::Put(key(DELIVERY, &[d.as_bytes()]), DELIVERY_VALUE));
                    ops.push(Op::Put(event_delivery_key(e, d), 0));
                    ops.push(Op::Put(schedule_key("sink", due(n), d), 0));
                    ops.push(Op::Put(kv_key("counter", "count"), 8));
                }
            }
        }
        if scenario == Scenario::Delivered
            && let Some(g) = i.checked_sub(2).and_then(|i| groups.get(i))
        {
            for n in g.clone() {
                let d = &ids[n].1;
                ops.push(Op::Put(attempt_key(d, 1), ATTEMPT_VALUE));
                ops.push(Op::Put(key(DELIVERY, &[d.as_bytes()]), DELIVERY_VALUE));
                ops.push(Op::Del(schedule_key("sink", due(n), d)));
            }
        }
        if !ops.is_empty() {
            out.push(ops);
        }
    }
    out
}

struct Figures {
    wall: f64,
    cpu: f64,
}

fn measure(run: impl FnOnce()) -> Figures {
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    run();
    let wall = t0.elapsed().as_secs_f64();
    Figures {
        wall,
        cpu: settled_cpu_seconds() - cpu0,
    }
}

/// The process's CPU once its background threads have gone quiet: an
/// engine that defers work (an LSM tree's flushes and compactions) pays
/// for it after the writes return, and that work is part of its cost.
fn settled_cpu_seconds() -> f64 {
    let mut last = cpu_seconds();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let now = cpu_seconds();
        if now - last < 0.005 {
            return now;
        }
        last = now;
    }
}

fn run_sled(batches: &[Vec<Op>]) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = hookyard::store::sled::sled_config(&dir.path().join("sled"))
        .open()
        .expect("sled opens");
    let tree = db.open_tree("hookyard").expect("tree");
    let value = vec![b'v'; EVENT_VALUE.max(DELIVERY_VALUE)];
    measure(|| {
        for ops in batches {
            let mut batch = sled::Batch::default();
            for op in ops {
                match op {
                    Op::Put(k, len) => batch.insert(k.as_slice(), &value[..*len]),
                    Op::Del(k) => batch.remove(k.as_slice()),
                }
            }
            tree.apply_batch(batch).expect("batch");
        }
        db.flush().expect("flush");
    })
}

fn run_fjall(batches: &[Vec<Op>]) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = hookyard::store::sled::engine::fjall_database(&dir.path().join("fjall"))
        .expect("fjall opens");
    let ks = db
        .keyspace("hookyard", fjall::KeyspaceCreateOptions::default)
        .expect("keyspace");
    let value = vec![b'v'; EVENT_VALUE.max(DELIVERY_VALUE)];
    measure(|| {
        for ops in batches {
            let mut batch = db.batch();
            for op in ops {
                match op {
                    Op::Put(k, len) => batch.insert(&ks, k.as_slice(), &value[..*len]),
                    Op::Del(k) => batch.remove(&ks, k.as_slice()),
                }
            }
            batch.commit().expect("batch");
        }
        db.persist(fjall::PersistMode::SyncAll).expect("sync");
    })
}

fn run_append_log(batches: &[Vec<Op>]) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut file = std::io::BufWriter::with_capacity(
        512 * 1024,
        std::fs::File::create(dir.path().join("log")).expect("log file"),
    );
    let mut index: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    let value = vec![b'v'; EVENT_VALUE.max(DELIVERY_VALUE)];
    measure(|| {
        let mut offset = 0u64;
        for ops in batches {
            for op in ops {
                // A removal is logged too (a tombstone), as a log must.
                let (k, len) = match op {
                    Op::Put(k, len) => {
                        index.insert(k.clone(), offset);
                        (k, *len)
                    }
                    Op::Del(k) => {
                        index.remove(k);
                        (k, 0)
                    }
                };
                file.write_all(&(k.len() as u32).to_le_bytes())
                    .expect("write");
                file.write_all(k).expect("write");
                file.write_all(&value[..len]).expect("write");
                offset += 4 + k.len() as u64 + len as u64;
            }
            file.flush().expect("flush");
        }
        file.get_ref().sync_data().expect("sync");
        std::hint::black_box(index.len());
    })
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (events, rounds) = if full { (EVENTS, 3) } else { (SMOKE_EVENTS, 1) };
    let per_event = |f: &Figures| f.cpu / events as f64 * 1e6;
    println!(
        "sled floor: {events} events per run; CPU is the whole process's (sled's IO \
         threads included), median of {rounds} round(s)"
    );
    println!(
        "| records | events per group | append log + BTreeMap, µs CPU/event | sled, µs CPU/event \
         | sled / baseline | sled, events/s per core of CPU | sled, events/s (one writer, wall) \
         | fjall, µs CPU/event | fjall, events/s (one writer, wall) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for scenario in [Scenario::Ingest, Scenario::Delivered] {
        for group in GROUPS {
            let batches = batches(scenario, events, group);
            let mut rows = Vec::new();
            for _ in 0..rounds {
                let base = run_append_log(&batches);
                let sled = run_sled(&batches);
                let fj = run_fjall(&batches);
                rows.push((
                    per_event(&sled),
                    per_event(&base),
                    events as f64 / sled.wall,
                    per_event(&fj),
                    events as f64 / fj.wall,
                ));
            }
            rows.sort_by(|a, b| a.0.total_cmp(&b.0));
            let (sled, base, rate, fj, fj_rate) = rows[rows.len() / 2];
            println!(
                "| {} | {group} | {base:.1} | {sled:.1} | {:.1}x | {:.0} | {rate:.0} | {fj:.1} | {fj_rate:.0} |",
                scenario.name(),
                sled / base,
                1e6 / sled
            );
        }
    }
}
