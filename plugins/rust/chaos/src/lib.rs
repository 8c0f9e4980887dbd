//! Misbehaving test plugin for hookyard.
//!
//! Exercises the host's failure handling (errors, traps, timeouts, memory
//! limits) and its bounds on what a plugin hands back (fan-out, reason and
//! log sizes, KV keys, headers) from one plugin file. The behaviour comes
//! from the config key `mode`, and a JSON body with a string field `mode`
//! overrides it per event; `n`, `ms` and `headers` in the body size it.

/// Bindings generated from `wit/plugin.wit`.
mod bindings {
    // The generated ABI shim for `handle` takes the event's fields flattened
    // into one argument each, which clippy would otherwise flag.
    #![allow(clippy::too_many_arguments)]
    wit_bindgen::generate!({
        world: "plugin",
        path: "../../../wit",
        default_bindings_module: "bindings",
    });
}

use bindings::hookyard::plugin::host::{self, Level};
use bindings::hookyard::plugin::types::Delivery;
use bindings::{Event, Guest, Outcome};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

/// Events handled by this instance (instance memory, not host state).
static CALLS: AtomicU64 = AtomicU64::new(0);

/// Target for `ok` mode when the config has no `target`.
const DEFAULT_TARGET: &str = "sink";
/// Size of each chunk `alloc` mode hoards.
const CHUNK: usize = 1 << 20;

struct Chaos;

impl Guest for Chaos {
    fn handle(event: Event) -> Result<Outcome, String> {
        let config = host::config();
        let mode = body_mode(&event.body)
            .or_else(|| config_value(&config, "mode"))
            .unwrap_or_else(|| "ok".to_owned());
        host::log(
            Level::Debug,
            &format!("event {} in mode {mode:?}", event.id),
        );

        let target =
            config_value(&config, "target").unwrap_or_else(|| DEFAULT_TARGET.to_owned());
        let n = body_number(&event.body, "n").unwrap_or(1) as usize;
        match mode.as_str() {
            "ok" => Ok(Outcome::Deliver(vec![Delivery {
                target,
                // How many events this instance has handled: shows whether
                // the host reuses warm instances or starts fresh ones.
                headers: vec![(
                    "x-instance-calls".to_owned(),
                    CALLS.fetch_add(1, Ordering::Relaxed).wrapping_add(1).to_string(),
                )],
                body: None,
            }])),
            "error" => Err("chaos plugin asked to fail".to_owned()),
            "trap" => panic!("chaos plugin trapping on purpose"),
            "loop" => spin_forever(),
            "alloc" => hoard_memory(),
            "drop" => Ok(Outcome::Drop("chaos plugin dropping".to_owned())),
            // `n` deliveries for one event: a fan-out bomb when n is large.
            "fanout" => Ok(Outcome::Deliver(
                (0..n)
                    .map(|i| Delivery {
                        target: target.clone(),
                        headers: vec![("x-fanout".to_owned(), i.to_string())],
                        body: None,
                    })
                    .collect(),
            )),
            // Reasons and errors of `n` bytes.
            "bigdrop" => Ok(Outcome::Drop("d".repeat(n))),
            "bigerror" => Err("e".repeat(n)),
            // `n` log lines of 1 KiB each, then an ordinary delivery.
            "logflood" => {
                let line = "l".repeat(1024);
                for _ in 0..n {
                    host::log(Level::Info, &line);
                }
                Ok(Outcome::Deliver(vec![Delivery {
                    target,
                    headers: vec![],
                    body: None,
                }]))
            }
            // A KV key of `n` bytes.
            "bigkey" => {
                host::kv_set(&"k".repeat(n), b"v");
                Ok(Outcome::Drop("stored a big key".to_owned()))
            }
            // Counts like the counter plugin, but sleeps `ms` between its
            // read and its write: something can change the count meanwhile.
            "slowcount" => {
                let count = host::kv_get("count")
                    .and_then(|v| String::from_utf8(v).ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                let ms = body_number(&event.body, "ms").unwrap_or(10);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                host::kv_set("count", count.to_string().as_bytes());
                Ok(Outcome::Deliver(vec![Delivery {
                    target,
                    headers: vec![("x-count".to_owned(), count.to_string())],
                    body: None,
                }]))
            }
            // A KV write, then a trap or an error: neither may leave the
            // write behind.
            "settrap" => {
                host::kv_set("left-behind", b"by a trap");
                panic!("chaos plugin trapping after kv-set");
            }
            "seterror" => {
                host::kv_set("left-behind", b"by an error");
                Err("chaos plugin failing after kv-set".to_owned())
            }
            // The headers listed in the body (`"headers": [["name", "value"]]`).
            "headers" => Ok(Outcome::Deliver(vec![Delivery {
                target,
                headers: body_headers(&event.body),
                body: Some(b"{\"from\":\"chaos\"}".to_vec()),
            }])),
            // Sleeps `ms` milliseconds, then delivers: a plugin slower than
            // ingestion.
            "slow" => {
                let ms = body_number(&event.body, "ms").unwrap_or(10);
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(Outcome::Deliver(vec![Delivery {
                    target,
                    headers: vec![],
                    body: None,
                }]))
            }
            other => Err(format!("unknown chaos mode {other:?}")),
        }
    }
}

/// A number field of a JSON body.
fn body_number(body: &[u8], field: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get(field)?.as_u64()
}

/// `"headers": [["name", "value"], ...]` from a JSON body.
fn body_headers(body: &[u8]) -> Vec<(String, String)> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return vec![];
    };
    value
        .get("headers")
        .and_then(|h| h.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|pair| {
                    let pair = pair.as_array()?;
                    Some((
                        pair.first()?.as_str()?.to_owned(),
                        pair.get(1)?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The per-event override: a string `mode` field in a JSON body.
fn body_mode(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("mode")?.as_str().map(str::to_owned)
}

/// Looks up a plugin config key.
fn config_value(config: &[(String, String)], key: &str) -> Option<String> {
    config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// Never returns; `black_box` keeps the counter observable so the loop cannot
/// be optimised away and the host's timeout has to stop it.
fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Grows memory until the host's limit (or the 4 GiB address space) stops it.
/// Chunks are non-zero and passed through `black_box` so the allocations and
/// the writes really happen instead of being elided or left as zero pages.
fn hoard_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(black_box(vec![0xA5; CHUNK]));
        black_box(&hoard);
    }
}

bindings::export!(Chaos);
