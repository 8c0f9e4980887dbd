//! The load generator role: N keep-alive HTTP/1.1 connections (hyper's
//! client connection API, no pool in between) on one thread, so it takes at
//! most one of the machine's cores.
//!
//! Closed loop (`rate: None`): every connection sends its next request as
//! soon as the previous answer arrives — saturation. Open loop (`rate`):
//! send slots are `start + i / rate`, handed out in order to whichever
//! connection is free; a send that starts more than 2 ms after its slot
//! counts as late (with enough connections and a healthy server there are
//! none). `count` stops after that many requests (used to fill a backlog).
//! Every body carries its send time (`bench_ts`, unix ns) so the sink can
//! compute ingest→sink latency.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::stats::{Summary, unix_ns};

/// What to send, where, how fast and for how long.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadSpec {
    /// `127.0.0.1:port`, or several comma-separated (cluster nodes): each
    /// connection goes to one, in turn.
    pub addr: String,
    /// Request path, e.g. `/hooks/bench`.
    pub path: String,
    pub connections: usize,
    /// Sent but not counted (connections open, caches warm).
    pub warmup_secs: f64,
    /// Measured time; with `count`, the upper bound of the whole run.
    pub duration_secs: f64,
    /// Requests per second (open loop); `None`: closed loop.
    pub rate: Option<f64>,
    /// Stop after this many requests (no warm-up then).
    pub count: Option<u64>,
    /// Size of each JSON body in bytes (at least the fields).
    pub body_size: usize,
    /// The body's `type` field.
    pub event_type: String,
}

/// What the run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadResult {
    /// Requests sent (all phases).
    pub sent: u64,
    /// 202 answers (all phases): what the router has to deliver.
    pub accepted: u64,
    /// 202 answers to requests started in the measured window.
    pub measured_accepted: u64,
    /// Transport errors (connect, reset, …).
    pub errors: u64,
    /// Answers other than 202, by status.
    pub statuses: BTreeMap<String, u64>,
    pub last_error: Option<String>,
    pub measured_secs: f64,
    pub accepted_per_sec: f64,
    /// Request→answer latency of the measured 202s.
    pub latency: Summary,
    pub late_sends: u64,
    pub max_late_ms: f64,
    /// 202s per second of the run (warm-up included), by start time.
    pub per_second: Vec<u64>,
    /// No fixed rate: as fast as answers come.
    pub closed_loop: bool,
    /// The load generator's own CPU time: on a two-core machine it shares
    /// the cores with what it measures.
    #[serde(default)]
    pub cpu_secs: f64,
    pub start_unix_ns: u64,
    /// Requests started at or after this count (the warm-up is over).
    pub measure_start_unix_ns: u64,
    /// … and before this.
    pub measure_end_unix_ns: u64,
    pub end_unix_ns: u64,
}

/// Runs the load (blocking) and returns what it measured.
pub fn run(spec: LoadSpec) -> Result<LoadResult> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(spec))
}

/// The role's entry: spec as JSON in, result as one JSON line out.
pub fn main(spec_json: &str) -> Result<()> {
    let spec: LoadSpec = serde_json::from_str(spec_json).context("load spec")?;
    let result = run(spec)?;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &result)?;
    writeln!(out)?;
    Ok(())
}

struct Shared {
    spec: LoadSpec,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    /// Next open-loop slot.
    next_slot: AtomicU64,
    /// Requests started (for `count`) and the body's `seq`.
    started: AtomicU64,
}

#[derive(Default)]
struct ConnOut {
    latencies_ns: Vec<u64>,
    sent: u64,
    accepted: u64,
    measured_accepted: u64,
    errors: u64,
    statuses: BTreeMap<u16, u64>,
    last_error: Option<String>,
    late: u64,
    max_late: Duration,
    per_second: Vec<u64>,
}

async fn run_async(spec: LoadSpec) -> Result<LoadResult> {
    let start_unix_ns = unix_ns();
    let start = Instant::now();
    let warmup = if spec.count.is_some() {
        Duration::ZERO
    } else {
        Duration::from_secs_f64(spec.warmup_secs)
    };
    let measure_from = start + warmup;
    let end = measure_from + Duration::from_secs_f64(spec.duration_secs);
    let connections = spec.connections.max(1);
    let shared = Arc::new(Shared {
        spec,
        start,
        measure_from,
        end,
        next_slot: AtomicU64::new(0),
        started: AtomicU64::new(0),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(connection(shared.clone()));
    }
    let mut total = ConnOut::default();
    while let Some(out) = tasks.join_next().await {
        let out = out.context("connection task")?;
        total.latencies_ns.extend(out.latencies_ns);
        total.sent += out.sent;
        total.accepted += out.accepted;
        total.measured_accepted += out.measured_accepted;
        total.errors += out.errors;
        for (s, n) in out.statuses {
            *total.statuses.entry(s).or_default() += n;
        }
        total.last_error = out.last_error.or(total.last_error);
        total.late += out.late;
        total.max_late = total.max_late.max(out.max_late);
        if total.per_second.len() < out.per_second.len() {
            total.per_second.resize(out.per_second.len(), 0);
        }
        for (t, n) in total.per_second.iter_mut().zip(&out.per_second) {
            *t += n;
        }
    }
    let finished = Instant::now();
    let end_unix_ns = unix_ns();
    let measured_secs = if shared.spec.count.is_some() {
        finished.duration_since(start).as_secs_f64()
    } else {
        end.duration_since(measure_from).as_secs_f64()
    };
    let to_unix = |t: Instant| start_unix_ns + t.duration_since(start).as_nanos() as u64;
    Ok(LoadResult {
        sent: total.sent,
        accepted: total.accepted,
        measured_accepted: total.measured_accepted,
        errors: total.errors,
        statuses: total
            .statuses
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        last_error: total.last_error,
        measured_secs,
        accepted_per_sec: total.measured_accepted as f64 / measured_secs.max(1e-9),
        latency: Summary::from_ns(&mut total.latencies_ns),
        late_sends: total.late,
        max_late_ms: total.max_late.as_secs_f64() * 1000.0,
        per_second: total.per_second,
        closed_loop: shared.spec.rate.is_none(),
        cpu_secs: crate::procs::cpu_secs(std::process::id()),
        start_unix_ns,
        measure_start_unix_ns: to_unix(measure_from),
        measure_end_unix_ns: to_unix(end),
        end_unix_ns,
    })
}

async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    spec: &LoadSpec,
    addr: &str,
    body: Bytes,
) -> Result<u16> {
    sender.ready().await?;
    let req = hyper::Request::post(spec.path.as_str())
        .header(hyper::header::HOST, addr)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}

/// `{"type":…,"bench_ts":…,"seq":…,"data":"xxx…"}`, padded to `size`.
fn build_body(buf: &mut Vec<u8>, spec: &LoadSpec, ts: u64, seq: u64) -> Bytes {
    buf.clear();
    let _ = write!(
        buf,
        "{{\"type\":\"{}\",\"bench_ts\":{ts},\"seq\":{seq},\"data\":\"",
        spec.event_type
    );
    let pad = spec.body_size.saturating_sub(buf.len() + 2);
    buf.resize(buf.len() + pad, b'x');
    buf.extend_from_slice(b"\"}");
    Bytes::copy_from_slice(buf)
}

async fn connection(shared: Arc<Shared>) -> ConnOut {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let spec = &shared.spec;
    let addrs: Vec<&str> = spec.addr.split(',').collect();
    let addr = addrs[NEXT.fetch_add(1, Ordering::Relaxed) as usize % addrs.len()];
    let mut out = ConnOut::default();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut buf = Vec::with_capacity(spec.body_size + 64);
    loop {
        let slot = match spec.rate {
            Some(rate) => {
                let i = shared.next_slot.fetch_add(1, Ordering::Relaxed);
                let at = shared.start + Duration::from_secs_f64(i as f64 / rate);
                if at >= shared.end {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                Some(at)
            }
            None => {
                if Instant::now() >= shared.end {
                    break;
                }
                None
            }
        };
        let seq = shared.started.fetch_add(1, Ordering::Relaxed);
        if spec.count.is_some_and(|c| seq >= c) {
            break;
        }
        if sender.is_none() {
            match connect(addr).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    out.errors += 1;
                    out.last_error = Some(format!("connect: {e:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let started = Instant::now();
        if let Some(at) = slot {
            let late = started.saturating_duration_since(at);
            if late > Duration::from_millis(2) {
                out.late += 1;
            }
            out.max_late = out.max_late.max(late);
        }
        let body = build_body(&mut buf, spec, unix_ns(), seq);
        out.sent += 1;
        match send(s, spec, addr, body).await {
            Ok(202) => {
                let took = started.elapsed();
                out.accepted += 1;
                let second = started.duration_since(shared.start).as_secs() as usize;
                if out.per_second.len() <= second {
                    out.per_second.resize(second + 1, 0);
                }
                out.per_second[second] += 1;
                if started >= shared.measure_from && started < shared.end {
                    out.measured_accepted += 1;
                    out.latencies_ns.push(took.as_nanos() as u64);
                }
            }
            Ok(status) => *out.statuses.entry(status).or_default() += 1,
            Err(e) => {
                out.errors += 1;
                out.last_error = Some(format!("{e:#}"));
                sender = None;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    out
}
