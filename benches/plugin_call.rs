//! Plugin host overhead (scenario 5 of docs/benchmarks.md), with criterion:
//! `cargo bench --bench plugin_call`.
//!
//! The same call of the Rust example plugin (`quickstart-router`, an
//! `order.created` event, one delivery out) through
//! - `raw`: a bare wasmtime component call (default engine, the same WASI
//!   p2 linker, host imports that do nothing),
//! - `hookyard`: `LoadedPlugin::call`, hookyard's plugin runtime (instance
//!   pool, epoch deadline, memory limiter, stderr tail, host imports),
//! - `hookyard_runtime`: `Plugins::call`, what the router awaits (adds the
//!   the plugin's call lane, `spawn_blocking`, event conversion, stats),
//!
//! each with a warm (reused) instance and a fresh instance per call. At
//! the end it prints hookyard / raw ratios (the goal: <= 1.5x).
//! The variants live in `load/plugin_host.rs`, shared with the load bench's
//! own timing loop.

#[path = "load/plugin_host.rs"]
mod plugin_host;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;

fn bench(c: &mut Criterion) {
    let wasm = plugin_host::quickstart_wasm().expect("the Rust example plugin");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let raw_ev = plugin_host::raw_event();
    let hy_ev = plugin_host::hookyard_event();
    let stored = Arc::new(plugin_host::stored_event());

    let mut group = c.benchmark_group("plugin_call");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    let mut raw = plugin_host::RawHost::load(&wasm).expect("raw host");
    group.bench_function("raw_warm", |b| {
        b.iter(|| raw.call_warm(black_box(&raw_ev)).expect("call"))
    });
    group.bench_function("raw_fresh", |b| {
        b.iter(|| raw.call_fresh(black_box(&raw_ev)).expect("call"))
    });

    let warm = plugin_host::HookyardHost::load(&wasm, false).expect("hookyard warm");
    group.bench_function("hookyard_warm", |b| {
        b.iter(|| warm.call(black_box(&hy_ev)).expect("call"))
    });
    group.bench_function("hookyard_runtime_warm", |b| {
        b.iter(|| {
            rt.block_on(warm.call_runtime(stored.clone()))
                .expect("call")
        })
    });

    let fresh = plugin_host::HookyardHost::load(&wasm, true).expect("hookyard fresh");
    group.bench_function("hookyard_fresh", |b| {
        b.iter(|| fresh.call(black_box(&hy_ev)).expect("call"))
    });
    group.bench_function("hookyard_runtime_fresh", |b| {
        b.iter(|| {
            rt.block_on(fresh.call_runtime(stored.clone()))
                .expect("call")
        })
    });
    group.finish();
}

/// hookyard / raw from the estimates criterion just wrote.
fn print_ratios() {
    let means = plugin_host::criterion_means();
    let get = |id: &str| means.iter().find(|(k, _)| k == id).map(|(_, v)| *v);
    println!("\nplugin call, mean per call (criterion):");
    for (id, v) in &means {
        println!("  {id:<24} {:>9.2} us", v / 1000.0);
    }
    for kind in ["warm", "fresh"] {
        let raw = get(&format!("raw_{kind}"));
        for host in ["hookyard", "hookyard_runtime"] {
            if let (Some(raw), Some(h)) = (raw, get(&format!("{host}_{kind}"))) {
                println!("  {host}_{kind} / raw_{kind} = {:.2}x", h / raw);
            }
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    // `cargo test` runs each benchmark once (test mode) and writes no
    // estimates; ratios only make sense after `cargo bench`.
    if std::env::args().any(|a| a == "--bench") {
        print_ratios();
    }
}
