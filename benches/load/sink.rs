//! The sink role: answers every delivery 200 at once and records when it
//! arrived. hyper's server connection API on one thread (so it takes at most
//! one core); state behind an uncontended mutex.
//!
//! `GET /__stats?since=NS&until=NS[&light=1]` reports counts and, unless
//! `light`, the ingest→sink latency (receive time − the body's `bench_ts`)
//! of deliveries whose event was sent in `[since, until)`.
//! `POST /__reset` forgets everything (between scenarios).

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::stats::{Summary, unix_ns};

#[derive(Default)]
struct State {
    received: u64,
    /// `webhook-id`s seen: at-least-once delivery may repeat one.
    ids: HashSet<Box<str>>,
    /// (event sent at, delivery received at), unix ns.
    samples: Vec<(u64, u64)>,
    /// Deliveries whose body had no `bench_ts`.
    no_ts: u64,
    per_path: BTreeMap<String, u64>,
    first_recv_ns: u64,
    last_recv_ns: u64,
}

pub fn main() -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "sink listening http://{addr}")?;
        out.flush()?;
    }
    let state = Arc::new(Mutex::new(State::default()));
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, state.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/__stats" => {
            let query = req.uri().query().unwrap_or("").to_string();
            let s = state.lock().unwrap_or_else(|e| e.into_inner());
            return Ok(respond(StatusCode::OK, stats(&s, &query).to_string()));
        }
        "/__reset" => {
            *state.lock().unwrap_or_else(|e| e.into_inner()) = State::default();
            return Ok(respond(StatusCode::OK, "{}"));
        }
        _ => {}
    }
    let id = req
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .map(Box::<str>::from);
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(respond(StatusCode::BAD_REQUEST, "")),
    };
    let now = unix_ns();
    let sent = bench_ts(&body);
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    s.received += 1;
    if s.first_recv_ns == 0 {
        s.first_recv_ns = now;
    }
    s.last_recv_ns = now;
    if let Some(id) = id {
        s.ids.insert(id);
    }
    match sent {
        Some(ts) => s.samples.push((ts, now)),
        None => s.no_ts += 1,
    }
    match s.per_path.get_mut(&path) {
        Some(n) => *n += 1,
        None => {
            s.per_path.insert(path, 1);
        }
    }
    drop(s);
    Ok(respond(StatusCode::OK, ""))
}

/// The number after `"bench_ts":` (any whitespace), wherever it is nested:
/// the Python and JavaScript plugins wrap the event in a chat message.
fn bench_ts(body: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"bench_ts\"";
    let at = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &body[at..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
    let rest = rest.strip_prefix(b":")?;
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let digits = &rest[start..];
    let len = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..len]).ok()?.parse().ok()
}

fn stats(s: &State, query: &str) -> serde_json::Value {
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let since: u64 = param("since").and_then(|v| v.parse().ok()).unwrap_or(0);
    let until: u64 = param("until")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    let mut v = json!({
        "received": s.received,
        "unique": s.ids.len(),
        "no_ts": s.no_ts,
        "per_path": s.per_path,
        "first_recv_ns": s.first_recv_ns,
        "last_recv_ns": s.last_recv_ns,
    });
    if param("light").is_none() {
        let mut lat: Vec<u64> = s
            .samples
            .iter()
            .filter(|(sent, _)| *sent >= since && *sent < until)
            .map(|(sent, recv)| recv.saturating_sub(*sent))
            .collect();
        v["latency"] = serde_json::to_value(Summary::from_ns(&mut lat)).unwrap_or_default();
    }
    v
}
