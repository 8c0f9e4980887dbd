//! Helpers shared by the tests that operate hookyard through its admin API:
//! the config preamble, polling, reading listings, and metric samples.
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

/// One sample's value from a `/metrics` scrape, by name and some labels.
pub fn sample_value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    parse_metrics(text).sample(name, labels)
}

/// A `/metrics` scrape, read strictly as OpenMetrics text.
pub fn parse_metrics(text: &str) -> super::openmetrics::Scrape {
    super::openmetrics::parse(text)
        .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{text}"))
}

pub fn find_sample(
    scrape: &super::openmetrics::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape.sample(name, labels)
}
