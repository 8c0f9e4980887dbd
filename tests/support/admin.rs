//! Helpers shared by the tests that operate hookyard through its admin API:
//! the config preamble, polling, reading listings, and Prometheus samples.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The config preamble like `server_section`, with extra `[server]` keys
/// (`admin_token`, `retention`, `shutdown_grace`, ...).
pub fn preamble(dir: &Path, server_extra: &str) -> String {
    format!(
        "[delivery]\nallow_private = true\n\n[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n{server_extra}\n\n[plugins]\ndir = \"{}\"\n",
        dir.join("data").display(),
        dir.join("plugins").display()
    )
}

/// Calls `check` until it returns `Ok`, or panics after `timeout`
/// describing `what` with the last value `check` reported.
pub async fn poll<T>(
    timeout: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => {
                if Instant::now() > deadline {
                    panic!("{what}: not reached within {timeout:?}; last: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn ids_of(list: &Value, key: &str) -> Vec<String> {
    list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key:?} array in {list}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

pub fn is_final_delivered(v: &Value) -> bool {
    v["deliveries"]
        .as_array()
        .is_some_and(|d| !d.is_empty() && d.iter().all(|d| d["status"] == "delivered"))
}

pub fn addr_of(port: u16) -> SocketAddr {
    format!("127.0.0.1:{port}").parse().unwrap()
}

/// One sample's value from Prometheus text, by name and some labels.
pub fn sample_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = parse_metrics(text);
    find_sample(&scrape, name, labels)
}

pub fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("/metrics parses")
}

pub fn find_sample(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    use prometheus_parse::Value as V;
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .filter_map(|s| match &s.value {
            V::Counter(v) | V::Gauge(v) | V::Untyped(v) => Some(*v),
            _ => None,
        })
        .collect();
    assert!(
        found.len() <= 1,
        "{name}{labels:?} matches {} samples",
        found.len()
    );
    found.first().copied()
}
