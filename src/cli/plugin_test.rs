//! `hookyard plugin test`: run a plugin once on a sample event and show what
//! it decided, without a server. The inner loop of writing a plugin.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::model::id::{EventId, now_ms};
use crate::model::records::Event;
use crate::plugin::{CallError, Level, PluginOutcome, Plugins, to_plugin_event};
use crate::store::sled::SledStore;

/// What to run and on what (the `plugin test` arguments).
#[derive(clap::Args)]
pub struct TestRun {
    /// The plugin component (<name>.wasm).
    pub wasm: PathBuf,
    /// A raw body file, or a JSON event description
    /// ({"body": ..., "headers": {...}, "source": ..., ...}).
    #[arg(long)]
    pub event: Option<PathBuf>,
    /// Treat --event as a raw body even if it looks like a description.
    #[arg(long)]
    pub raw: bool,
    /// The source name the event pretends to come from (default "test");
    /// with --last, the source whose stored events to try.
    #[arg(long)]
    pub source: Option<String>,
    /// Try the plugin on the last N events a running hookyard stored for
    /// --source and compare its decisions with what the serving version
    /// decided; nothing is delivered or written. Exits 1 when it fails
    /// events the serving version handled.
    #[arg(long, value_name = "N", requires = "source")]
    pub last: Option<usize>,
    /// With --last: the plugin it would replace (default: the file name).
    #[arg(long, requires = "last")]
    pub name: Option<String>,
    /// With --last: the running hookyard's admin API.
    #[arg(long = "admin", env = "HOOKYARD_ADMIN", default_value = crate::cli::ops::DEFAULT_ADMIN, value_name = "URL")]
    pub admin: String,
    /// With --last: the admin token, if the API needs one.
    #[arg(long, env = "HOOKYARD_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Extra request header, 'name: value' (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Plugin config entry key=value (repeatable).
    #[arg(long = "config")]
    pub config: Vec<String>,
    /// Call time limit (default 1s).
    #[arg(long)]
    pub timeout: Option<String>,
    /// Memory limit (default 64MiB).
    #[arg(long)]
    pub memory: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// A JSON event description: any subset of the event's fields. Recognised
/// only when every key is one of these and `body` or `body_base64` is
/// present; anything else in `--event` is taken as a raw body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventDescription {
    id: Option<String>,
    source: Option<String>,
    method: Option<String>,
    path: Option<String>,
    query: Option<String>,
    received_at: Option<u64>,
    /// The event's version, as a source's `version` setting would find it.
    version: Option<String>,
    #[serde(default)]
    headers: HeaderList,
    body: Option<Value>,
    body_base64: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum HeaderList {
    #[default]
    None,
    Map(std::collections::BTreeMap<String, String>),
    Pairs(Vec<(String, String)>),
}

fn load_event(run: &TestRun) -> Result<Event> {
    let source = run.source.as_deref().unwrap_or("test");
    let bytes = match &run.event {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("--event: cannot read {}", path.display()))?,
        None => b"{}".to_vec(),
    };
    let mut event = Event {
        id: EventId::generate(),
        source: source.to_string(),
        received_at: now_ms(),
        method: "POST".into(),
        path: format!("/hooks/{source}"),
        query: String::new(),
        headers: vec![],
        body: bytes.clone(),
        version: None,
        content_encoding: None,
        received_body: None,
    };
    let description = if run.raw {
        None
    } else {
        serde_json::from_slice::<EventDescription>(&bytes)
            .ok()
            .filter(|d| d.body.is_some() || d.body_base64.is_some())
    };
    match description {
        Some(d) => {
            event.id = d.id.map_or(event.id, EventId::from);
            event.source = d.source.unwrap_or(event.source);
            event.method = d.method.unwrap_or(event.method);
            event.path = d.path.unwrap_or(format!("/hooks/{}", event.source));
            event.query = d.query.unwrap_or_default();
            event.received_at = d.received_at.unwrap_or(event.received_at);
            event.version = d.version;
            event.headers = match d.headers {
                HeaderList::None => vec![],
                HeaderList::Map(m) => m.into_iter().collect(),
                HeaderList::Pairs(p) => p,
            };
            event.body = match (d.body, d.body_base64) {
                (_, Some(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .context("--event: body_base64 is not base64")?,
                (Some(Value::String(s)), None) => s.into_bytes(),
                (Some(other), None) => serde_json::to_vec(&other)?,
                (None, None) => vec![],
            };
        }
        None => {
            if serde_json::from_slice::<Value>(&bytes).is_ok() {
                event
                    .headers
                    .push(("content-type".into(), "application/json".into()));
            }
        }
    }
    for h in &run.headers {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?}: expected 'name: value'"))?;
        event
            .headers
            .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    for (k, _) in event.headers.iter_mut() {
        *k = k.to_ascii_lowercase();
    }
    Ok(event)
}

fn plugin_config_toml(run: &TestRun, name: &str) -> Result<String> {
    let mut table = toml::Table::new();
    let mut cfg = toml::Table::new();
    for kv in &run.config {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--config {kv:?}: expected key=value"))?;
        cfg.insert(k.trim().to_string(), toml::Value::String(v.to_string()));
    }
    table.insert("config".into(), toml::Value::Table(cfg));
    if let Some(t) = &run.timeout {
        table.insert("timeout".into(), toml::Value::String(t.clone()));
    }
    if let Some(m) = &run.memory {
        table.insert("memory".into(), toml::Value::String(m.clone()));
    }
    let mut plugins = toml::Table::new();
    plugins.insert(name.into(), toml::Value::Table(table));
    let mut root = toml::Table::new();
    root.insert("plugins".into(), toml::Value::Table(plugins));
    Ok(toml::to_string(&root)?)
}

/// Runs the plugin once; the exit status says whether it produced an
/// outcome (deliver or drop) or failed.
pub fn run(run: TestRun) -> Result<bool> {
    if run.last.is_some() {
        return super::plugin_trial::run(&run);
    }
    let name = plugin_name(&run.wasm)?;
    let config = Config::parse(&plugin_config_toml(&run, &name)?, Path::new("."))?;
    let store = SledStore::temporary()?.into_store();
    let plugins = Plugins::new(
        crate::config::live::LiveConfig::new(config),
        Some(store.kv.clone()),
        cache_dir(),
        Arc::default(),
    )?;
    let started = Instant::now();
    let (plugin, info) = plugins
        .compile_file(&run.wasm, &name)
        .with_context(|| format!("cannot load {}", run.wasm.display()))?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;
    let event = load_event(&run)?;

    let started = Instant::now();
    let report = plugin.call(&to_plugin_event(&event), true);
    let call_us = started.elapsed().as_micros() as u64;
    let logs: Vec<Value> = report
        .logs
        .iter()
        .map(|(l, m)| json!({ "level": level_name(*l), "message": m }))
        .collect();

    let (ok, result) = match &report.result {
        Ok(PluginOutcome::Drop(reason)) => (true, json!({ "outcome": "drop", "reason": reason })),
        Ok(PluginOutcome::Deliver(list)) => (
            true,
            json!({
                "outcome": "deliver",
                "deliveries": list.iter().map(|d| json!({
                    "target": d.target,
                    "headers": d.headers,
                    "body": d.body.as_ref().map(|b| body_view(b)),
                })).collect::<Vec<_>>(),
            }),
        ),
        Err(e) => (
            false,
            json!({ "outcome": "failed", "error": e.to_string(), "kind": error_kind(e) }),
        ),
    };

    if run.json {
        let out = json!({
            "plugin": { "name": name, "sha256": info.sha256, "load_ms": load_ms, "contract": info.contract },
            "event": { "id": event.id, "source": event.source, "bytes": event.body.len() },
            "call_us": call_us,
            "result": result,
            "logs": logs,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ok);
    }

    println!(
        "plugin  {} (sha256 {}…, contract {}, loaded in {load_ms:.0} ms)",
        run.wasm.display(),
        &info.sha256[..12],
        info.contract
    );
    println!(
        "event   {} from source {:?}, {} bytes",
        event.id,
        event.source,
        event.body.len()
    );
    match &report.result {
        Ok(PluginOutcome::Drop(reason)) => println!("result  drop: {reason}  ({call_us} µs)"),
        Ok(PluginOutcome::Deliver(list)) => {
            println!(
                "result  deliver to {} target(s)  ({call_us} µs)",
                list.len()
            );
            for d in list {
                println!("  -> {}", d.target);
                for (k, v) in &d.headers {
                    println!("     {k}: {v}");
                }
                match &d.body {
                    None => println!("     body: the event's body, unchanged"),
                    Some(b) => {
                        let text = String::from_utf8_lossy(b);
                        let shown: String = text.chars().take(2000).collect();
                        println!("     body: {shown}");
                    }
                }
            }
        }
        Err(e) => println!("result  FAILED: {e}  ({call_us} µs)"),
    }
    if !report.logs.is_empty() {
        println!("logs");
        for (l, m) in &report.logs {
            println!("  [{}] {m}", level_name(*l));
        }
    }
    Ok(ok)
}

/// Where `plugin test` keeps compiled components, so re-testing an
/// unchanged JS or Python plugin skips the seconds-long compile:
/// `$HOOKYARD_CACHE_DIR`, else `$XDG_CACHE_HOME/hookyard`, else
/// `~/.cache/hookyard`.
fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("HOOKYARD_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("hookyard")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/hookyard")))
        .map(|d| d.join("plugin-cache"))
}

pub(super) fn plugin_name(path: &Path) -> Result<String> {
    let Some(name) = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".wasm"))
    else {
        bail!("{}: expected a <name>.wasm file", path.display());
    };
    Ok(name.to_string())
}

fn body_view(b: &[u8]) -> Value {
    match std::str::from_utf8(b) {
        Ok(s) => json!(s),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) }),
    }
}

fn error_kind(e: &CallError) -> &'static str {
    match e {
        CallError::Returned(_) => "returned",
        CallError::Timeout(_) => "timeout",
        CallError::OutOfMemory(_) => "out-of-memory",
        CallError::Trap(_) => "trap",
        CallError::Limit(_) => "limit",
        CallError::ShuttingDown => "shutting-down",
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}
