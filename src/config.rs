//! The TOML config: parsed once at start, validated up front so that a typo
//! fails the start with an error naming the key instead of surfacing as a
//! lost event hours later.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

pub use crate::store::sled::engine::Engine;
use crate::webhooks::standard::Secret;

pub mod live;
pub mod restart;

/// Default cap on a webhook body; providers rarely send more than a few
/// hundred KB, and an unbounded body is a memory exhaustion vector.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// The largest `max_body` accepted: a body is held in memory whole (and
/// handed to every plugin), so this bounds one request's memory.
pub const MAX_MAX_BODY: usize = 64 * 1024 * 1024;

/// `max_decoded_body` by default: this many times `max_body` (at most
/// [`MAX_MAX_BODY`]). JSON compresses 5-10 times, so an honest compressed
/// body within `max_body` decodes within this; a bomb is cut off early.
pub const DECODED_BODY_FACTOR: usize = 8;

/// The longest duration any key accepts ("100y"). Durations become unix
/// milliseconds in u64 arithmetic (due times, expiries, cut-offs); this
/// keeps every such sum far from overflowing, and nothing sensible needs
/// more.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// Bounds of `rate_limit.per_second`: below one request in 1000 s the wait
/// before a token stops meaning anything, above a million it is no limit.
const RATE_RANGE: std::ops::RangeInclusive<f64> = 0.001..=1_000_000.0;
/// Bounds of `rate_limit.burst`.
const BURST_RANGE: std::ops::RangeInclusive<f64> = 1.0..=1_000_000.0;

/// Shortest timeout accepted where zero would fail every call or attempt.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Validated, ready-to-use configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub plugins: PluginsConfig,
    pub delivery: DeliveryDefaults,
    pub sources: BTreeMap<String, SourceConfig>,
    pub targets: BTreeMap<String, TargetConfig>,
    /// The file this was read from (none: parsed from text, as tests do);
    /// what a reload reads again.
    pub file: Option<ConfigFile>,
}

/// Where a config came from, and its text's digest: the admin API shows
/// it, so two nodes (or a node and the file on disk) can be compared.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// sha256 of the file's bytes, hex.
    pub sha256: String,
    /// The file's tables as written: a reload compares them section by
    /// section to say what it changes, without every validated type
    /// having to be comparable (and secrets compare as their text).
    pub raw: toml::Table,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub data_dir: PathBuf,
    pub durability: Durability,
    /// Bearer token the admin listener requires (all but `/healthz`);
    /// mandatory when it listens beyond loopback.
    pub admin_token: Option<String>,
    /// Host names (lowercase, no port) the admin API answers to besides IP
    /// literals and `localhost`; any other `Host` is refused, so a DNS name
    /// rebound to the admin address cannot be used to read it.
    pub admin_hosts: Vec<String>,
    /// Events (with their deliveries and attempts) older than this are swept.
    pub retention: Duration,
    /// How often the retention sweep runs.
    pub retention_sweep_every: Duration,
    /// On SIGTERM/SIGINT, how long attempts in flight may take to finish.
    pub shutdown_grace: Duration,
    /// New webhooks are refused (503) while the data directory's file
    /// system has less free space than this (embedded store); 0 turns it
    /// off.
    pub min_free_space: u64,
    /// Bounds on every connection to either listener.
    pub limits: ListenerLimits,
    /// TLS on the public listener.
    pub tls: Option<TlsFiles>,
    /// TLS on the admin listener.
    pub admin_tls: Option<TlsFiles>,
    /// Reload when the config file changes, as `SIGHUP` does.
    pub watch_config: bool,
}

/// What a client may cost a listener: the defaults close a silent or
/// half-sent request within seconds and keep a thousand of them from
/// exhausting the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// From when a connection is ready for a request (opened, or done with
    /// the previous one) to the end of its head; also bounds a TLS
    /// handshake. An HTTP/1 keep-alive connection idle this long is closed.
    pub header_timeout: Duration,
    /// For a webhook's whole body, from the end of its head (408 past it).
    pub body_timeout: Duration,
    /// A connection that carries no byte either way this long, while no
    /// request on it is being answered, is closed.
    pub idle_timeout: Duration,
    /// Connections the public listener holds at once; past it, new ones
    /// wait in the kernel's listen backlog until one closes.
    pub max_connections: usize,
    /// Header lines in a request head (431 past it).
    pub max_headers: usize,
    /// Bytes in a request head (431 past it).
    pub max_header_bytes: usize,
}

/// Where a listener's certificate chain and private key are (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        ListenerLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_headers: 100,
            max_header_bytes: 64 * 1024,
        }
    }
}

/// Where events, deliveries and plugin state live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Embedded, in `server.data_dir`: one process. `backend = "sled"`
    /// (the default) or `"fjall"` picks the engine under the index.
    Embedded(Engine),
    /// Shared by every node of a cluster.
    Postgres {
        /// A libpq URL or key=value string (`env:NAME` resolved); holds
        /// the password, so never logged.
        url: String,
        /// This node's id in leases, logs, metrics and the admin API.
        node_id: String,
    },
}

impl StoreConfig {
    /// This process's id: the configured one, or host name and pid (unique
    /// per running process, so a restarted node does not mistake a dead
    /// predecessor's claims for its own).
    pub fn node_id(&self) -> String {
        match self {
            StoreConfig::Postgres { node_id, .. } => node_id.clone(),
            StoreConfig::Embedded(_) => default_node_id(),
        }
    }
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{}", std::process::id())
}

/// Whether a 202 waits for the event to reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// The ack waits for an fsync shared by all concurrent requests (group
    /// commit): nothing acknowledged is lost, even on power loss.
    Flush,
    /// The ack follows the in-memory write; sled persists in the background
    /// (every 500 ms). Faster, but a crash can lose the last moments.
    Buffered,
}

#[derive(Debug, Clone)]
pub struct PluginsConfig {
    pub dir: PathBuf,
    /// Where compiled components are cached; several routers (or test
    /// runs) may share one. Default `<data_dir>/plugin-cache`.
    pub cache_dir: PathBuf,
    pub defaults: PluginLimits,
    pub plugins: BTreeMap<String, PluginSettings>,
}

/// Resource limits for one plugin call; a plugin is untrusted code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PluginLimits {
    pub timeout: Duration,
    pub memory: usize,
    /// Warm instances kept per plugin; 0 means a fresh instance per event
    /// (for plugins that must not share state across events).
    pub warm_instances: usize,
    /// Optional instruction budget per call (deterministic, unlike time).
    pub fuel: Option<u64>,
    /// Most deliveries one call may ask for: the plugin's memory limit
    /// does not bound what the host builds and stores from its answer.
    pub max_deliveries: usize,
    /// Most bytes (targets, headers, bodies) of one call's deliveries.
    pub max_outcome_bytes: usize,
    /// Most KV keys the plugin may hold.
    pub max_kv_keys: usize,
}

/// Default bound on deliveries per plugin call: generous for fan-out to
/// every team's channel, far below what exhausts memory.
pub const DEFAULT_MAX_DELIVERIES: usize = 1000;
/// Highest `max_deliveries` a config may ask for.
pub const MAX_MAX_DELIVERIES: usize = 100_000;
/// Default bound on the bytes of one call's deliveries.
pub const DEFAULT_MAX_OUTCOME_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct PluginSettings {
    pub config: Vec<(String, String)>,
    pub limits: Option<PluginLimits>,
}

#[derive(Debug, Clone)]
pub struct DeliveryDefaults {
    /// Attempts in flight across all targets.
    pub max_in_flight: usize,
    /// What a target table does not say.
    pub policy: TargetPolicy,
}

/// How one target is treated: retries, limits, circuit breaker, SSRF guard.
/// Every field has a global default under `[delivery]`.
#[derive(Debug, Clone)]
pub struct TargetPolicy {
    pub timeout: Duration,
    /// Delay before retry 1, 2, ...; its length is `max_attempts - 1`.
    pub retry_schedule: Vec<Duration>,
    /// Each delay is multiplied by a random factor in `1 ± jitter`, so a
    /// burst of failures does not retry in lockstep.
    pub jitter: f64,
    /// Upper bound on a `Retry-After` we honour, so a target cannot park a
    /// delivery for a year.
    pub max_retry_after: Duration,
    /// Attempts in flight to this target.
    pub max_in_flight: usize,
    /// Requests per second and burst; `None` is unlimited.
    pub rate_limit: Option<(f64, f64)>,
    /// Consecutive failed attempts that open the circuit; 0 never opens it.
    pub breaker_failures: u32,
    /// How long an open circuit waits before one probe attempt (doubling
    /// for each failed probe, up to 16 times).
    pub breaker_cooldown: Duration,
    /// A target failing without a success for this long is disabled until
    /// an operator enables it.
    pub disable_after: Duration,
    /// Allow addresses in loopback, private, link-local and metadata ranges
    /// (refused by default: a webhook URL is attacker-controlled input in a
    /// multi-tenant setup).
    pub allow_private: bool,
}

#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// How requests prove they come from the provider; `None` accepts any.
    pub verifier: Option<crate::source::verify::Verifier>,
    /// The provider's endpoint challenge this source answers, if any.
    pub handshake: Option<crate::source::handshake::Handshake>,
    /// Bounds the received bytes, before any decoding.
    pub max_body: usize,
    /// Bounds a `Content-Encoding` body once decoded (what is stored for
    /// plugins and deliveries, held in memory whole like the received one).
    pub max_decoded_body: usize,
    /// Which sender headers this source's passthrough deliveries carry on.
    pub forward: crate::delivery::forward::HeaderRules,
    pub plugins: Vec<String>,
    pub targets: Vec<String>,
    pub idempotency: Option<crate::source::idempotency::Idempotency>,
    /// Requests per second and burst.
    pub rate_limit: Option<(f64, f64)>,
    /// Empty: any address may send.
    pub allow_ips: Vec<crate::source::allowlist::Cidr>,
    /// A proxy header (e.g. `x-forwarded-for`) trusted to carry the client
    /// address; only set when hookyard sits behind such a proxy.
    pub client_ip_header: Option<String>,
    /// Where the request carries the event's version; `None`: events of
    /// this source have none.
    pub version: Option<crate::source::version::VersionSource>,
}

#[derive(Debug, Clone)]
pub struct TargetConfig {
    pub url: url::Url,
    /// The signing key; `None` sends unsigned deliveries.
    pub secret: Option<Secret>,
    /// The key being rotated out, still signed with (a second `v1,`
    /// signature) until `previous_secret_until` (unix ms; `None`: until it is
    /// removed from the config), so receivers can switch keys without a gap.
    pub previous_secret: Option<Secret>,
    pub previous_secret_until: Option<u64>,
    pub headers: Vec<(String, String)>,
    /// The header (lower-case) that carries the event's version on this
    /// target's deliveries, when the event has one.
    pub version_header: Option<String>,
    /// Which sender headers passthrough deliveries to it carry on (with
    /// the source's rules: both apply).
    pub forward: crate::delivery::forward::HeaderRules,
    /// Deliveries go compressed under this `Content-Encoding`; `None`: as is.
    pub compress: Option<crate::delivery::compress::Compression>,
    pub policy: TargetPolicy,
}

/// A URL as it may be shown or logged: user and password (a credential
/// some receivers take in the URL) replaced by `***`.
pub fn redact_url(url: &url::Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    // Only fails for URLs that cannot have credentials, which had none.
    let _ = shown.set_username("***");
    if url.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

impl TargetConfig {
    /// Attempts allowed in total: the first one plus one per schedule step.
    pub fn max_attempts(&self) -> u32 {
        self.policy.retry_schedule.len() as u32 + 1
    }

    /// The keys to sign with at `now_ms`: the current one, then the previous
    /// one while its rotation window lasts.
    pub fn signing_keys(&self, now_ms: u64) -> Vec<&Secret> {
        let mut keys: Vec<&Secret> = self.secret.iter().collect();
        if let Some(old) = &self.previous_secret
            && self
                .previous_secret_until
                .is_none_or(|until| now_ms < until)
        {
            keys.push(old);
        }
        keys
    }
}

// ---- raw (as written) -------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    sources: BTreeMap<String, RawSource>,
    #[serde(default)]
    targets: BTreeMap<String, RawTarget>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    backend: Option<String>,
    url: Option<String>,
    node_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    admin_listen: Option<String>,
    data_dir: Option<PathBuf>,
    durability: Option<Durability>,
    admin_token: Option<String>,
    #[serde(default)]
    admin_hosts: Vec<String>,
    retention: Option<String>,
    retention_sweep_every: Option<String>,
    shutdown_grace: Option<String>,
    min_free_space: Option<String>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    idle_timeout: Option<String>,
    max_connections: Option<usize>,
    max_headers: Option<usize>,
    max_header_size: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    admin_tls_cert: Option<PathBuf>,
    admin_tls_key: Option<PathBuf>,
    watch_config: Option<bool>,
}

#[derive(Deserialize, Default)]
struct RawPlugins {
    dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    timeout: Option<String>,
    memory: Option<String>,
    warm_instances: Option<usize>,
    fuel: Option<u64>,
    max_deliveries: Option<usize>,
    max_outcome_size: Option<String>,
    max_kv_keys: Option<usize>,
    #[serde(flatten)]
    per_plugin: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPluginTable {
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    timeout: Option<String>,
    memory: Option<String>,
    warm_instances: Option<usize>,
    fresh_instances: Option<bool>,
    fuel: Option<u64>,
    max_deliveries: Option<usize>,
    max_outcome_size: Option<String>,
    max_kv_keys: Option<usize>,
}

#[derive(Deserialize, Default)]
struct RawDelivery {
    max_in_flight: Option<usize>,
    per_target_max_in_flight: Option<usize>,
    #[serde(flatten)]
    policy: RawPolicy,
    /// Whatever the policy did not take: unknown keys, reported by name.
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

/// Policy keys allowed both under `[delivery]` (defaults) and per target.
/// (Flattened into both tables, so unknown keys are caught by the tables'
/// `unknown` maps: serde cannot deny them through a flatten.)
#[derive(Deserialize, Default)]
struct RawPolicy {
    timeout: Option<String>,
    retry_schedule: Option<Vec<String>>,
    max_attempts: Option<u32>,
    jitter: Option<f64>,
    max_retry_after: Option<String>,
    rate_limit: Option<RawRateLimit>,
    breaker_failures: Option<u32>,
    breaker_cooldown: Option<String>,
    disable_after: Option<String>,
    allow_private: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    verify: Option<crate::source::verify::RawVerify>,
    /// A table or `false`; see `source::handshake::RawHandshakeSetting`.
    handshake: Option<toml::Value>,
    max_body: Option<toml::Value>,
    max_decoded_body: Option<toml::Value>,
    forward_headers: Option<Vec<String>>,
    #[serde(default)]
    drop_headers: Vec<String>,
    idempotency: Option<toml::Value>,
    rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    allow_ips: Vec<String>,
    client_ip_header: Option<String>,
    version: Option<toml::Value>,
    #[serde(default)]
    plugins: Vec<String>,
    #[serde(default)]
    targets: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    per_second: f64,
    burst: Option<f64>,
}

#[derive(Deserialize)]
struct RawTarget {
    url: String,
    secret: Option<String>,
    previous_secret: Option<String>,
    previous_secret_until: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    version_header: Option<String>,
    compress: Option<String>,
    forward_headers: Option<Vec<String>>,
    #[serde(default)]
    drop_headers: Vec<String>,
    max_in_flight: Option<usize>,
    #[serde(flatten)]
    policy: RawPolicy,
    #[serde(flatten)]
    unknown: BTreeMap<String, toml::Value>,
}

impl Config {
    /// Reads and validates a config file. Relative paths inside it are
    /// resolved against the file's directory so `serve --config x/y.toml`
    /// works from any working directory.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Self::parse(&text, base)
            .with_context(|| format!("invalid config {}", path.display()))?;
        config.file = Some(ConfigFile {
            path: path.to_path_buf(),
            // It parsed as a config above, so it parses as a table.
            raw: text.parse::<toml::Table>().unwrap_or_default(),
            sha256: crate::plugin::instance::hex(&<sha2::Sha256 as sha2::Digest>::digest(
                text.as_bytes(),
            )),
        });
        Ok(config)
    }

    /// Parses config text; `base` anchors relative paths.
    pub fn parse(text: &str, base: &Path) -> Result<Config> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());

        let limits = listener_limits(&raw.server)?;
        let listen = env("HOOKYARD_LISTEN")
            .or(raw.server.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let admin_listen = env("HOOKYARD_ADMIN_LISTEN")
            .or(raw.server.admin_listen)
            .unwrap_or_else(|| "127.0.0.1:8081".into());
        let data_dir = env("HOOKYARD_DATA_DIR")
            .map(PathBuf::from)
            .or(raw.server.data_dir)
            .unwrap_or_else(|| "./data".into());
        let server = ServerConfig {
            listen: parse_addr("server.listen", &listen)?,
            admin_listen: parse_addr("server.admin_listen", &admin_listen)?,
            data_dir: base.join(data_dir),
            durability: raw.server.durability.unwrap_or(Durability::Flush),
            admin_token: raw
                .server
                .admin_token
                .map(|t| resolve_secret_text("server.admin_token", &t))
                .transpose()?
                .filter(|t| !t.is_empty()),
            admin_hosts: raw
                .server
                .admin_hosts
                .iter()
                .enumerate()
                .map(|(i, h)| admin_host(&format!("server.admin_hosts[{i}]"), h))
                .collect::<Result<_>>()?,
            retention: opt_duration("server.retention", raw.server.retention.as_deref())?
                .unwrap_or(Duration::from_secs(7 * 24 * 3600)),
            // A zero period would make the sweep a busy loop; tests sweep
            // every 200 ms, so the floor stays below that.
            retention_sweep_every: opt_duration_min(
                "server.retention_sweep_every",
                raw.server.retention_sweep_every.as_deref(),
                Duration::from_millis(100),
            )?
            .unwrap_or(Duration::from_secs(60)),
            shutdown_grace: opt_duration(
                "server.shutdown_grace",
                raw.server.shutdown_grace.as_deref(),
            )?
            .unwrap_or(Duration::from_secs(10)),
            min_free_space: opt_size(
                "server.min_free_space",
                raw.server.min_free_space.as_deref(),
            )?
            .map_or(crate::store::sled::DEFAULT_MIN_FREE, |n| n as u64),
            limits,
            tls: tls_files(
                "server.tls_cert",
                "server.tls_key",
                base,
                &raw.server.tls_cert,
                &raw.server.tls_key,
            )?,
            admin_tls: tls_files(
                "server.admin_tls_cert",
                "server.admin_tls_key",
                base,
                &raw.server.admin_tls_cert,
                &raw.server.admin_tls_key,
            )?,
            watch_config: raw.server.watch_config.unwrap_or(false),
        };
        if server.admin_token.is_none() && !server.admin_listen.ip().is_loopback() {
            bail!(
                "server.admin_listen: {} is reachable beyond this machine; set server.admin_token (e.g. \"env:HOOKYARD_ADMIN_TOKEN\") so the admin API requires it",
                server.admin_listen
            );
        }

        let defaults = PluginLimits {
            timeout: opt_duration_min(
                "plugins.timeout",
                raw.plugins.timeout.as_deref(),
                MIN_TIMEOUT,
            )?
            .unwrap_or(Duration::from_secs(1)),
            memory: opt_size("plugins.memory", raw.plugins.memory.as_deref())?
                .unwrap_or(64 * 1024 * 1024),
            warm_instances: raw.plugins.warm_instances.unwrap_or(4),
            fuel: raw.plugins.fuel,
            max_deliveries: max_deliveries("plugins.max_deliveries", raw.plugins.max_deliveries)?
                .unwrap_or(DEFAULT_MAX_DELIVERIES),
            max_outcome_bytes: opt_size(
                "plugins.max_outcome_size",
                raw.plugins.max_outcome_size.as_deref(),
            )?
            .unwrap_or(DEFAULT_MAX_OUTCOME_BYTES),
            max_kv_keys: max_kv_keys("plugins.max_kv_keys", raw.plugins.max_kv_keys)?
                .unwrap_or(crate::plugin::kv::DEFAULT_MAX_KEYS),
        };
        let mut plugin_settings = BTreeMap::new();
        for (name, value) in raw.plugins.per_plugin {
            let key = format!("plugins.{name}");
            let table: RawPluginTable = value
                .try_into()
                .map_err(|e| anyhow!("{key}: expected a plugin table ({e})"))?;
            let config = table
                .config
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        toml::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect();
            let limits = if table.timeout.is_some()
                || table.memory.is_some()
                || table.warm_instances.is_some()
                || table.fresh_instances.is_some()
                || table.fuel.is_some()
                || table.max_deliveries.is_some()
                || table.max_outcome_size.is_some()
                || table.max_kv_keys.is_some()
            {
                let warm = match table.fresh_instances {
                    Some(true) => 0,
                    _ => table.warm_instances.unwrap_or(defaults.warm_instances),
                };
                Some(PluginLimits {
                    timeout: opt_duration_min(
                        &format!("{key}.timeout"),
                        table.timeout.as_deref(),
                        MIN_TIMEOUT,
                    )?
                    .unwrap_or(defaults.timeout),
                    memory: opt_size(&format!("{key}.memory"), table.memory.as_deref())?
                        .unwrap_or(defaults.memory),
                    warm_instances: warm,
                    fuel: table.fuel.or(defaults.fuel),
                    max_deliveries: max_deliveries(
                        &format!("{key}.max_deliveries"),
                        table.max_deliveries,
                    )?
                    .unwrap_or(defaults.max_deliveries),
                    max_outcome_bytes: opt_size(
                        &format!("{key}.max_outcome_size"),
                        table.max_outcome_size.as_deref(),
                    )?
                    .unwrap_or(defaults.max_outcome_bytes),
                    max_kv_keys: max_kv_keys(&format!("{key}.max_kv_keys"), table.max_kv_keys)?
                        .unwrap_or(defaults.max_kv_keys),
                })
            } else {
                None
            };
            plugin_settings.insert(name, PluginSettings { config, limits });
        }
        let plugins = PluginsConfig {
            dir: base.join(raw.plugins.dir.unwrap_or_else(|| "./plugins".into())),
            cache_dir: match raw.plugins.cache_dir {
                Some(d) => base.join(d),
                None => server.data_dir.join("plugin-cache"),
            },
            defaults,
            plugins: plugin_settings,
        };

        reject_unknown("delivery", &raw.delivery.unknown)?;
        let defaults_policy = TargetPolicy::from_raw("delivery", &raw.delivery.policy, None)?;
        let delivery = DeliveryDefaults {
            max_in_flight: raw.delivery.max_in_flight.unwrap_or(256).max(1),
            policy: TargetPolicy {
                max_in_flight: raw.delivery.per_target_max_in_flight.unwrap_or(64).max(1),
                ..defaults_policy
            },
        };

        let mut targets = BTreeMap::new();
        for (name, t) in raw.targets {
            let key = format!("targets.{name}");
            check_name(&key, &name)?;
            reject_unknown(&key, &t.unknown)?;
            // The text is not echoed: it may hold a password.
            let url =
                url::Url::parse(&t.url).map_err(|e| anyhow!("{key}.url: not a valid URL ({e})"))?;
            if !matches!(url.scheme(), "http" | "https") {
                bail!(
                    "{key}.url: {:?} must be an http or https URL",
                    redact_url(&url)
                );
            }
            let secret = match t.secret {
                None => None,
                Some(s) => Some(parse_secret(&format!("{key}.secret"), &s)?),
            };
            let previous_secret = match t.previous_secret {
                None => None,
                Some(s) => Some(parse_secret(&format!("{key}.previous_secret"), &s)?),
            };
            let previous_secret_until = match t.previous_secret_until {
                None => None,
                Some(text) => Some(parse_time(&format!("{key}.previous_secret_until"), &text)?),
            };
            if previous_secret.is_some() && secret.is_none() {
                bail!("{key}.previous_secret: set `secret` (the new key) too");
            }
            let mut headers = Vec::new();
            for (k, v) in t.headers {
                let hk = format!("{key}.headers.{k}");
                reqwest::header::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| anyhow!("{hk}: not a valid header name"))?;
                reqwest::header::HeaderValue::from_str(&v)
                    .map_err(|_| anyhow!("{hk}: not a valid header value"))?;
                headers.push((k.to_ascii_lowercase(), v));
            }
            let version_header = match t.version_header {
                None => None,
                Some(h) => {
                    let name = h.to_ascii_lowercase();
                    let vk = format!("{key}.version_header");
                    reqwest::header::HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| anyhow!("{vk}: {h:?} is not a valid header name"))?;
                    if let Some(why) = crate::delivery::headers::reserved(&name) {
                        bail!("{vk}: hookyard does not let {name:?} be set ({why})");
                    }
                    if headers.iter().any(|(k, _)| *k == name) {
                        bail!("{vk}: {name:?} is also in {key}.headers; keep one");
                    }
                    Some(name)
                }
            };
            let forward = crate::delivery::forward::HeaderRules::from_config(
                &key,
                t.forward_headers.as_deref(),
                &t.drop_headers,
            )?;
            let compress = match t.compress.as_deref() {
                None | Some("none") => None,
                Some(text) => Some(
                    crate::delivery::compress::Compression::parse(text).ok_or_else(|| {
                        anyhow!("{key}.compress: {text:?} is not supported (\"gzip\" or \"none\")")
                    })?,
                ),
            };
            let mut policy = TargetPolicy::from_raw(&key, &t.policy, Some(&delivery.policy))?;
            if let Some(n) = t.max_in_flight {
                if n == 0 {
                    bail!("{key}.max_in_flight: must be at least 1");
                }
                policy.max_in_flight = n;
            }
            targets.insert(
                name,
                TargetConfig {
                    url,
                    secret,
                    previous_secret,
                    previous_secret_until,
                    headers,
                    version_header,
                    forward,
                    compress,
                    policy,
                },
            );
        }

        let mut sources = BTreeMap::new();
        for (name, s) in raw.sources {
            let key = format!("sources.{name}");
            check_name(&key, &name)?;
            let max_body = body_size(&format!("{key}.max_body"), s.max_body.as_ref())?
                .unwrap_or(DEFAULT_MAX_BODY);
            let max_decoded_body = body_size(
                &format!("{key}.max_decoded_body"),
                s.max_decoded_body.as_ref(),
            )?
            .unwrap_or_else(|| {
                max_body
                    .saturating_mul(DECODED_BODY_FACTOR)
                    .min(MAX_MAX_BODY)
            });
            let forward = crate::delivery::forward::HeaderRules::from_config(
                &key,
                s.forward_headers.as_deref(),
                &s.drop_headers,
            )?;
            for (i, t) in s.targets.iter().enumerate() {
                if !targets.contains_key(t) {
                    bail!("{key}.targets[{i}]: unknown target {t:?} (no [targets.{t}] table)");
                }
            }
            // Names only: whether the files exist is the plugin
            // registry's business at runtime (a missing plugin makes its
            // events wait, it does not stop the router) and `hookyard
            // check`'s before a deploy (see `missing_plugins`).
            for (i, p) in s.plugins.iter().enumerate() {
                check_name(&format!("{key}.plugins[{i}]"), p)?;
            }
            let verifier = s
                .verify
                .as_ref()
                .map(|v| {
                    crate::source::verify::Verifier::from_config(
                        &format!("{key}.verify"),
                        v,
                        &resolve_secret_text,
                    )
                })
                .transpose()?;
            let handshake = crate::source::handshake::Handshake::from_config(
                &key,
                s.handshake.as_ref(),
                s.verify.as_ref(),
                &resolve_secret_text,
            )?;
            // Providers that send a delivery id get deduplicated on it by
            // default; Stripe's is the event id in the body.
            let preset = verifier.as_ref().and_then(|v| {
                use crate::source::idempotency::KeySource;
                match (v.scheme(), v.default_idempotency_header()) {
                    ("stripe", _) => Some(KeySource::JsonPointer("/id".into())),
                    (_, Some(h)) => Some(KeySource::Header(h.to_string())),
                    _ => None,
                }
            });
            let idempotency = crate::source::idempotency::Idempotency::from_config(
                &format!("{key}.idempotency"),
                s.idempotency.as_ref(),
                preset,
            )?;
            // A source absorbs a second's worth of burst by default.
            let rate_limit = s
                .rate_limit
                .map(|r| r.validate(&key, r.per_second.max(1.0)))
                .transpose()?;
            let allow_ips = s
                .allow_ips
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    crate::source::allowlist::Cidr::parse(c)
                        .map_err(|e| anyhow!("{key}.allow_ips[{i}]: {e}"))
                })
                .collect::<Result<Vec<_>>>()?;
            let client_ip_header = s.client_ip_header.map(|h| h.to_ascii_lowercase());
            if let Some(h) = &client_ip_header {
                reqwest::header::HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| anyhow!("{key}.client_ip_header: {h:?} is not a header name"))?;
            }
            let version = s
                .version
                .as_ref()
                .map(|v| {
                    crate::source::version::VersionSource::from_config(&format!("{key}.version"), v)
                })
                .transpose()?;
            sources.insert(
                name,
                SourceConfig {
                    verifier,
                    handshake,
                    max_body,
                    max_decoded_body,
                    forward,
                    plugins: s.plugins,
                    targets: s.targets,
                    idempotency,
                    rate_limit,
                    allow_ips,
                    client_ip_header,
                    version,
                },
            );
        }

        let store = store_config(
            raw.store,
            env("HOOKYARD_STORE_URL"),
            env("HOOKYARD_NODE_ID"),
        )?;
        Ok(Config {
            server,
            store,
            plugins,
            delivery,
            sources,
            targets,
            file: None,
        })
    }

    /// Plugins a source lists that have no file in the plugin directory,
    /// as errors naming the key (symlinks are followed, as the registry
    /// follows them).
    pub fn missing_plugins(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, s) in &self.sources {
            for (i, p) in s.plugins.iter().enumerate() {
                let file = self.plugins.dir.join(format!("{p}.wasm"));
                if !file.is_file() {
                    out.push(format!(
                        "sources.{name}.plugins[{i}]: plugin {p:?} not found: no file {}",
                        file.display()
                    ));
                }
            }
        }
        out
    }

    /// Limits for one plugin: its own table's, else the global defaults.
    pub fn plugin_limits(&self, name: &str) -> PluginLimits {
        self.plugins
            .plugins
            .get(name)
            .and_then(|p| p.limits)
            .unwrap_or(self.plugins.defaults)
    }

    /// Whether any plugin has a fuel budget; metering costs some speed, so
    /// the engine only meters when asked to.
    pub fn meters_fuel(&self) -> bool {
        self.plugins.defaults.fuel.is_some()
            || self
                .plugins
                .plugins
                .values()
                .any(|p| p.limits.is_some_and(|l| l.fuel.is_some()))
    }

    /// The `config` table a plugin sees through the `config` host import.
    pub fn plugin_config(&self, name: &str) -> Vec<(String, String)> {
        self.plugins
            .plugins
            .get(name)
            .map(|p| p.config.clone())
            .unwrap_or_default()
    }
}

impl RawRateLimit {
    /// `(per_second, burst)` after checking both, `default_burst` when the
    /// burst is not given.
    fn validate(&self, key: &str, default_burst: f64) -> Result<(f64, f64)> {
        if !RATE_RANGE.contains(&self.per_second) {
            bail!(
                "{key}.rate_limit.per_second: {} is out of range; use {} to {}",
                self.per_second,
                RATE_RANGE.start(),
                RATE_RANGE.end()
            );
        }
        let burst = self.burst.unwrap_or(default_burst).min(*BURST_RANGE.end());
        if let Some(b) = self.burst
            && !BURST_RANGE.contains(&b)
        {
            bail!(
                "{key}.rate_limit.burst: {b} is out of range; use {} to {}",
                BURST_RANGE.start(),
                BURST_RANGE.end()
            );
        }
        Ok((self.per_second, burst))
    }
}

impl TargetPolicy {
    /// Reads policy keys under `key`; `base` supplies what is not set
    /// (`None`: the built-in defaults).
    fn from_raw(key: &str, raw: &RawPolicy, base: Option<&TargetPolicy>) -> Result<TargetPolicy> {
        let builtin;
        let base = match base {
            Some(b) => b,
            None => {
                builtin = TargetPolicy {
                    timeout: Duration::from_secs(10),
                    retry_schedule: ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]
                        .iter()
                        .map(|s| humantime::parse_duration(s).expect("valid default"))
                        .collect(),
                    jitter: 0.2,
                    max_retry_after: Duration::from_secs(24 * 3600),
                    max_in_flight: 64,
                    rate_limit: None,
                    breaker_failures: 5,
                    breaker_cooldown: Duration::from_secs(30),
                    disable_after: Duration::from_secs(5 * 24 * 3600),
                    allow_private: false,
                };
                &builtin
            }
        };
        let mut retry_schedule = match &raw.retry_schedule {
            Some(list) => parse_schedule(&format!("{key}.retry_schedule"), list)?,
            None => base.retry_schedule.clone(),
        };
        if let Some(max) = raw.max_attempts {
            if max == 0 {
                bail!("{key}.max_attempts: must be at least 1");
            }
            // Fewer attempts: cut the schedule; more: repeat its last step.
            let steps = max as usize - 1;
            let last = retry_schedule
                .last()
                .copied()
                .unwrap_or(Duration::from_secs(60));
            retry_schedule.resize(steps, last);
        }
        let jitter = raw.jitter.unwrap_or(base.jitter);
        if !(0.0..=1.0).contains(&jitter) {
            bail!("{key}.jitter: must be between 0 and 1 (a fraction of the delay)");
        }
        // Deliveries are spaced evenly by default (burst 1).
        let rate_limit = match &raw.rate_limit {
            None => base.rate_limit,
            Some(r) => Some(r.validate(key, 1.0)?),
        };
        let breaker_cooldown = opt_duration_min(
            &format!("{key}.breaker_cooldown"),
            raw.breaker_cooldown.as_deref(),
            Duration::from_millis(1),
        )?
        .unwrap_or(base.breaker_cooldown);
        Ok(TargetPolicy {
            timeout: opt_duration_min(
                &format!("{key}.timeout"),
                raw.timeout.as_deref(),
                MIN_TIMEOUT,
            )?
            .unwrap_or(base.timeout),
            retry_schedule,
            jitter,
            max_retry_after: opt_duration(
                &format!("{key}.max_retry_after"),
                raw.max_retry_after.as_deref(),
            )?
            .unwrap_or(base.max_retry_after),
            max_in_flight: base.max_in_flight,
            rate_limit,
            breaker_failures: raw.breaker_failures.unwrap_or(base.breaker_failures),
            breaker_cooldown,
            disable_after: opt_duration(
                &format!("{key}.disable_after"),
                raw.disable_after.as_deref(),
            )?
            .unwrap_or(base.disable_after),
            allow_private: raw.allow_private.unwrap_or(base.allow_private),
        })
    }
}

/// Parses an RFC 3339 time (or unix milliseconds) into unix ms. Times from
/// [`crate::model::id::TIME_LIMIT_MS`] on are refused: ids, which listing and
/// retention filter on, cannot express them.
pub fn parse_time(key: &str, text: &str) -> Result<u64> {
    if let Ok(ms) = text.trim().parse::<u64>() {
        if ms >= crate::model::id::TIME_LIMIT_MS {
            bail!(
                "{key}: {ms} is out of range; times are unix milliseconds below {}",
                crate::model::id::TIME_LIMIT_MS
            );
        }
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(text.trim()).map_err(|e| {
        anyhow!("{key}: {text:?} is not a time like \"2026-11-23T10:00:00Z\" ({e})")
    })?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0))
}

fn reject_unknown(key: &str, unknown: &BTreeMap<String, toml::Value>) -> Result<()> {
    match unknown.keys().next() {
        Some(k) => bail!("{key}.{k}: unknown key (see README.md for the target and delivery keys)"),
        None => Ok(()),
    }
}

fn check_name(key: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.starts_with('.');
    if !ok {
        bail!("{key}: {name:?} is not a valid name (letters, digits, '-', '_', '.')");
    }
    Ok(())
}

/// A host name as `Host` headers carry it, normalised for comparison.
fn admin_host(key: &str, text: &str) -> Result<String> {
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !valid {
        bail!(
            "{key}: {text:?} is not a host name like \"admin.example.com\" (no scheme, port or path; IP addresses and localhost are always allowed)"
        );
    }
    Ok(name)
}

fn parse_addr(key: &str, text: &str) -> Result<SocketAddr> {
    text.parse()
        .map_err(|e| anyhow!("{key}: {text:?} is not an address like 127.0.0.1:8080 ({e})"))
}

fn listener_limits(raw: &RawServer) -> Result<ListenerLimits> {
    let d = ListenerLimits::default();
    let at_least = |key: &str, text: &Option<String>, min: Duration, default: Duration| {
        Ok::<_, anyhow::Error>(opt_duration_min(key, text.as_deref(), min)?.unwrap_or(default))
    };
    let limits = ListenerLimits {
        header_timeout: at_least(
            "server.header_timeout",
            &raw.header_timeout,
            Duration::from_millis(100),
            d.header_timeout,
        )?,
        body_timeout: at_least(
            "server.body_timeout",
            &raw.body_timeout,
            Duration::from_millis(100),
            d.body_timeout,
        )?,
        idle_timeout: at_least(
            "server.idle_timeout",
            &raw.idle_timeout,
            Duration::from_millis(100),
            d.idle_timeout,
        )?,
        max_connections: raw.max_connections.unwrap_or(d.max_connections),
        max_headers: raw.max_headers.unwrap_or(d.max_headers),
        max_header_bytes: opt_size("server.max_header_size", raw.max_header_size.as_deref())?
            .unwrap_or(d.max_header_bytes),
    };
    if limits.max_connections == 0 {
        bail!("server.max_connections: must be at least 1");
    }
    if !(8..=1000).contains(&limits.max_headers) {
        bail!(
            "server.max_headers: {} is out of range; use 8 to 1000",
            limits.max_headers
        );
    }
    if !(8 * 1024..=1024 * 1024).contains(&limits.max_header_bytes) {
        bail!(
            "server.max_header_size: {} bytes is out of range; use \"8KiB\" to \"1MiB\"",
            limits.max_header_bytes
        );
    }
    Ok(limits)
}

/// Both files or neither.
fn tls_files(
    cert_key: &str,
    key_key: &str,
    base: &Path,
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
) -> Result<Option<TlsFiles>> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: base.join(cert),
            key: base.join(key),
        })),
        (Some(_), None) => bail!("{key_key}: required with {cert_key}"),
        (None, Some(_)) => bail!("{cert_key}: required with {key_key}"),
    }
}

fn opt_duration(key: &str, text: Option<&str>) -> Result<Option<Duration>> {
    text.map(|t| parse_duration(key, t)).transpose()
}

/// Like [`opt_duration`], for keys where a shorter value breaks things.
fn opt_duration_min(key: &str, text: Option<&str>, min: Duration) -> Result<Option<Duration>> {
    let d = opt_duration(key, text)?;
    if let (Some(d), Some(text)) = (d, text)
        && d < min
    {
        bail!(
            "{key}: {text:?} is too short; use at least \"{}\"",
            humantime::format_duration(min)
        );
    }
    Ok(d)
}

/// A duration up to [`MAX_DURATION`].
pub(crate) fn parse_duration(key: &str, text: &str) -> Result<Duration> {
    let d = humantime::parse_duration(text)
        .map_err(|e| anyhow!("{key}: {text:?} is not a duration like \"10s\" or \"5m\" ({e})"))?;
    if d > MAX_DURATION {
        bail!("{key}: {text:?} is too long; durations are at most 100 years");
    }
    Ok(d)
}

fn parse_schedule(key: &str, list: &[String]) -> Result<Vec<Duration>> {
    list.iter()
        .enumerate()
        .map(|(i, s)| parse_duration(&format!("{key}[{i}]"), s))
        .collect()
}

fn max_deliveries(key: &str, n: Option<usize>) -> Result<Option<usize>> {
    match n {
        Some(n) if n == 0 || n > MAX_MAX_DELIVERIES => {
            bail!("{key}: must be between 1 and {MAX_MAX_DELIVERIES}")
        }
        n => Ok(n),
    }
}

fn max_kv_keys(key: &str, n: Option<usize>) -> Result<Option<usize>> {
    match n {
        Some(n) if n == 0 || n > 100_000_000 => bail!("{key}: must be between 1 and 100000000"),
        n => Ok(n),
    }
}

/// A body limit (`max_body`, `max_decoded_body`): a size, at most
/// [`MAX_MAX_BODY`] (a body is held in memory whole).
fn body_size(key: &str, value: Option<&toml::Value>) -> Result<Option<usize>> {
    let n = match value {
        None => return Ok(None),
        Some(toml::Value::Integer(n)) if *n > 0 => *n as usize,
        Some(toml::Value::String(text)) => parse_size(key, text)?,
        Some(other) => bail!("{key}: expected a size like \"1MiB\", got {other}"),
    };
    if n > MAX_MAX_BODY {
        bail!(
            "{key}: {n} bytes is more than the most hookyard accepts ({} MiB)",
            MAX_MAX_BODY >> 20
        );
    }
    Ok(Some(n))
}

fn opt_size(key: &str, text: Option<&str>) -> Result<Option<usize>> {
    text.map(|t| parse_size(key, t)).transpose()
}

/// Parses a size into bytes with bytesize's grammar: a number (decimals
/// allowed) and an optional unit, SI (`kB`, `MB`: powers of 1000) or binary
/// (`KiB`, `MiB`: powers of 1024), in any case ("512", "64KiB", "1.5 MiB").
pub fn parse_size(key: &str, text: &str) -> Result<usize> {
    let bytes = text
        .trim()
        .parse::<bytesize::ByteSize>()
        .map_err(|e| anyhow!("{key}: {text:?} is not a size like \"1MiB\" ({e})"))?
        .as_u64();
    // bytesize saturates what does not fit to u64::MAX.
    match usize::try_from(bytes) {
        Ok(v) if v > 0 && bytes < u64::MAX => Ok(v),
        _ => bail!("{key}: {text:?} is out of range"),
    }
}

/// Longest node id: it is in every lease row and log line.
const MAX_NODE_ID: usize = 64;

fn store_config(
    raw: RawStore,
    url_env: Option<String>,
    node_env: Option<String>,
) -> Result<StoreConfig> {
    let backend = raw.backend.as_deref().unwrap_or("sled");
    match backend {
        "postgres" => {
            let url = url_env
                .or(raw.url)
                .ok_or_else(|| anyhow!("store.url: required with store.backend = \"postgres\" (e.g. \"env:HOOKYARD_STORE_URL\")"))?;
            let url = resolve_secret_text("store.url", &url)?;
            if let Err(e) = url.parse::<tokio_postgres::Config>() {
                bail!("store.url: not a PostgreSQL connection string ({e})");
            }
            let node_id = match node_env.or(raw.node_id) {
                Some(id) => {
                    let ok = !id.is_empty()
                        && id.len() <= MAX_NODE_ID
                        && id
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                    if !ok {
                        bail!("store.node_id: 1 to {MAX_NODE_ID} letters, digits, '-', '_' or '.'");
                    }
                    id
                }
                None => default_node_id(),
            };
            Ok(StoreConfig::Postgres { url, node_id })
        }
        other => match Engine::named(other) {
            Some(engine) => {
                if raw.url.is_some() {
                    bail!("store.url: only used with store.backend = \"postgres\"");
                }
                Ok(StoreConfig::Embedded(engine))
            }
            None => bail!(
                "store.backend: \"{other}\" is not a backend (\"sled\", \"fjall\" or \"postgres\")"
            ),
        },
    }
}

/// Resolves `env:NAME` indirection so secrets can stay out of config files.
pub fn resolve_secret_text(key: &str, text: &str) -> Result<String> {
    match text.strip_prefix("env:") {
        Some(var) => {
            std::env::var(var).map_err(|_| anyhow!("{key}: environment variable {var} is not set"))
        }
        None => Ok(text.to_string()),
    }
}

/// A target's signing key (`env:NAME` resolved), by the rule every side of
/// Standard Webhooks shares ([`Secret::parse`]).
fn parse_secret(key: &str, text: &str) -> Result<Secret> {
    let text = resolve_secret_text(key, text)?;
    Secret::parse(&text).map_err(|e| anyhow!("{key}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/nonexistent"))
    }

    #[test]
    fn defaults_fill_an_empty_config() {
        let c = parse("").unwrap();
        assert_eq!(c.server.durability, Durability::Flush);
        assert_eq!(c.delivery.policy.retry_schedule.len(), 7);
        assert_eq!(
            c.delivery.policy.retry_schedule[1],
            Duration::from_secs(300)
        );
    }

    #[test]
    fn unknown_target_names_the_key() {
        let err = parse("[sources.gh]\ntargets = [\"nope\"]\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("sources.gh.targets[0]"),
            "{err:#}"
        );
    }

    #[test]
    fn store_settings_are_checked_and_name_their_key() {
        assert_eq!(
            parse("").unwrap().store,
            StoreConfig::Embedded(Engine::Sled)
        );
        assert_eq!(
            parse("[store]\nbackend = \"fjall\"\n").unwrap().store,
            StoreConfig::Embedded(Engine::Fjall)
        );
        let c = parse(
            "[store]\nbackend = \"postgres\"\nurl = \"postgres://u@127.0.0.1/db\"\nnode_id = \"web-1\"\n",
        )
        .unwrap();
        assert_eq!(
            c.store,
            StoreConfig::Postgres {
                url: "postgres://u@127.0.0.1/db".into(),
                node_id: "web-1".into()
            }
        );
        for (text, key) in [
            ("[store]\nbackend = \"mysql\"\n", "store.backend"),
            ("[store]\nbackend = \"postgres\"\n", "store.url"),
            ("[store]\nurl = \"postgres://x\"\n", "store.url"),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"env:HOOKYARD_TEST_UNSET_URL\"\n",
                "HOOKYARD_TEST_UNSET_URL",
            ),
            (
                "[store]\nbackend = \"postgres\"\nurl = \"postgres://x/db\"\nnode_id = \"a b\"\n",
                "store.node_id",
            ),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn versions_in_and_out_are_configured_and_checked() {
        let c = parse(
            "[sources.s]\nversion = { header = \"Stripe-Version\" }\ntargets = [\"t\"]\n\
             [targets.t]\nurl = \"https://example.com/\"\nversion_header = \"X-Webhook-Version\"\n",
        )
        .unwrap();
        assert_eq!(
            c.sources["s"].version,
            Some(crate::source::version::VersionSource::Header(
                "stripe-version".into()
            ))
        );
        assert_eq!(
            c.targets["t"].version_header.as_deref(),
            Some("x-webhook-version")
        );
        for (text, key) in [
            (
                "[sources.s]\nversion = { json_pointer = \"v\" }\n",
                "sources.s.version.json_pointer",
            ),
            (
                "[targets.t]\nurl = \"https://e.com/\"\nversion_header = \"webhook-id\"\n",
                "targets.t.version_header",
            ),
            (
                "[targets.t]\nurl = \"https://e.com/\"\nversion_header = \"a b\"\n",
                "targets.t.version_header",
            ),
            (
                "[targets.t]\nurl = \"https://e.com/\"\nversion_header = \"x-v\"\nheaders = { X-V = \"1\" }\n",
                "targets.t.version_header",
            ),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn bad_url_names_the_key() {
        let err = parse("[targets.t]\nurl = \"not a url\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("targets.t.url"), "{err:#}");
    }

    #[test]
    fn missing_plugin_file_names_the_key() {
        let c = parse("[sources.s]\nplugins = [\"ghost\"]\n").unwrap();
        let missing = c.missing_plugins();
        assert_eq!(missing.len(), 1);
        assert!(missing[0].contains("sources.s.plugins[0]"), "{missing:?}");
    }

    #[test]
    fn durations_and_rates_are_bounded() {
        let named = |text: &str, key: &str| {
            let err = parse(text).unwrap_err();
            assert!(format!("{err:#}").contains(key), "{key}: {err:#}");
        };
        named(
            "[server]\nretention_sweep_every = \"0s\"\n",
            "server.retention_sweep_every",
        );
        named("[server]\nretention = \"500000000y\"\n", "server.retention");
        named("[delivery]\ntimeout = \"0s\"\n", "delivery.timeout");
        named("[plugins]\ntimeout = \"0s\"\n", "plugins.timeout");
        named(
            "[delivery]\nbreaker_cooldown = \"0s\"\n",
            "delivery.breaker_cooldown",
        );
        named(
            "[delivery]\nrate_limit = { per_second = 1e-30 }\n",
            "delivery.rate_limit.per_second",
        );
        named(
            "[delivery]\nrate_limit = { per_second = 1, burst = 2e6 }\n",
            "delivery.rate_limit.burst",
        );
        // The edges themselves are accepted.
        let c = parse(
            "[server]\nretention = \"100y\"\nretention_sweep_every = \"100ms\"\nshutdown_grace = \"0s\"\n\
             [delivery]\ntimeout = \"1ms\"\nrate_limit = { per_second = 0.001, burst = 1e6 }\n",
        )
        .unwrap();
        assert_eq!(c.server.retention, MAX_DURATION);
        assert_eq!(c.server.shutdown_grace, Duration::ZERO);
        assert_eq!(c.delivery.policy.rate_limit, Some((0.001, 1e6)));
        let c = parse("[sources.s]\nrate_limit = { per_second = 1e6 }\n").unwrap();
        assert_eq!(c.sources["s"].rate_limit, Some((1e6, 1e6)));
    }

    #[test]
    fn max_body_has_a_ceiling() {
        let c = parse("[sources.s]\nmax_body = \"64MiB\"\n").unwrap();
        assert_eq!(c.sources["s"].max_body, MAX_MAX_BODY);
        let err = parse("[sources.s]\nmax_body = \"65MiB\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("sources.s.max_body"), "{err:#}");
    }

    #[test]
    fn encodings_forwarding_and_compression_are_configured_and_checked() {
        let c = parse(
            "[sources.s]\nmax_body = \"100KiB\"\nforward_headers = [\"X-GitHub-*\", \"user-agent\"]\n\
             drop_headers = [\"x-github-hook-id\"]\n\
             [sources.big]\nmax_body = \"60MiB\"\n\
             [sources.own]\nmax_decoded_body = \"2MiB\"\n\
             [targets.t]\nurl = \"https://e.com/\"\ncompress = \"gzip\"\ndrop_headers = [\"user-agent\"]\n",
        )
        .unwrap();
        let s = &c.sources["s"];
        assert_eq!(s.max_decoded_body, 800 * 1024, "8 x max_body by default");
        assert_eq!(c.sources["big"].max_decoded_body, MAX_MAX_BODY);
        assert_eq!(c.sources["own"].max_decoded_body, 2 << 20);
        use crate::delivery::forward::Pattern;
        assert_eq!(
            s.forward.forward,
            Some(vec![
                Pattern::Prefix("x-github-".into()),
                Pattern::Name("user-agent".into())
            ])
        );
        let t = &c.targets["t"];
        assert_eq!(
            t.compress,
            Some(crate::delivery::compress::Compression::Gzip)
        );
        assert_eq!(t.forward.drop, vec![Pattern::Name("user-agent".into())]);
        for (text, key) in [
            (
                "[sources.s]\nmax_decoded_body = \"65MiB\"\n",
                "sources.s.max_decoded_body",
            ),
            (
                "[sources.s]\nforward_headers = [\"a b\"]\n",
                "sources.s.forward_headers[0]",
            ),
            (
                "[targets.t]\nurl = \"https://e.com/\"\ndrop_headers = [\"x-*-y\"]\n",
                "targets.t.drop_headers[0]",
            ),
            (
                "[targets.t]\nurl = \"https://e.com/\"\ncompress = \"br\"\n",
                "targets.t.compress",
            ),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("k", "1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("k", "1 mib").unwrap(), 1 << 20);
        assert_eq!(parse_size("k", "512").unwrap(), 512);
        assert_eq!(parse_size("k", "64kB").unwrap(), 64_000);
        assert_eq!(parse_size("k", "1.5KiB").unwrap(), 1536);
        for bad in ["12 parsecs", "", "-1", "MiB"] {
            let e = parse_size("plugins.memory", bad).unwrap_err().to_string();
            assert!(e.starts_with("plugins.memory: "), "{bad}: {e}");
        }
        for out in ["0", "0MiB", "20EiB"] {
            let e = parse_size("k", out).unwrap_err().to_string();
            assert!(e.contains("out of range"), "{out}: {e}");
        }
    }

    #[test]
    fn plugin_tables_carry_config_and_limits() {
        let c = parse(
            "[plugins]\ntimeout = \"2s\"\n[plugins.router]\nmemory = \"8MiB\"\nconfig = { channel = \"ops\", n = 3 }\n",
        )
        .unwrap();
        assert_eq!(
            c.plugin_config("router"),
            vec![("channel".into(), "ops".into()), ("n".into(), "3".into())]
        );
        let l = c.plugin_limits("router");
        assert_eq!(l.memory, 8 << 20);
        assert_eq!(l.timeout, Duration::from_secs(2));
    }

    #[test]
    fn unknown_policy_keys_are_named() {
        let err = parse("[targets.t]\nurl = \"http://x\"\nretries = 3\n").unwrap_err();
        assert!(format!("{err:#}").contains("targets.t.retries"), "{err:#}");
        let err = parse("[delivery]\nbreaker_failure = 3\n").unwrap_err();
        assert!(
            format!("{err:#}").contains("delivery.breaker_failure"),
            "{err:#}"
        );
    }

    #[test]
    fn target_policies_inherit_and_override() {
        let c = parse(
            "[delivery]\nbreaker_failures = 7\nper_target_max_in_flight = 8\nretry_schedule = [\"1s\", \"2s\"]\n\
             [targets.a]\nurl = \"http://x\"\n\
             [targets.b]\nurl = \"http://x\"\nmax_attempts = 5\nmax_in_flight = 2\nrate_limit = { per_second = 10 }\nallow_private = true\n",
        )
        .unwrap();
        let a = &c.targets["a"].policy;
        assert_eq!(
            (a.breaker_failures, a.max_in_flight, a.allow_private),
            (7, 8, false)
        );
        assert_eq!(c.targets["a"].max_attempts(), 3);
        let b = &c.targets["b"];
        assert_eq!(b.max_attempts(), 5);
        assert_eq!(b.policy.retry_schedule[3], Duration::from_secs(2));
        assert_eq!(b.policy.max_in_flight, 2);
        assert_eq!(b.policy.rate_limit, Some((10.0, 1.0)));
        assert!(b.policy.allow_private);
    }

    #[test]
    fn admin_beyond_loopback_needs_a_token() {
        let err = parse("[server]\nadmin_listen = \"0.0.0.0:8081\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("server.admin_token"), "{err:#}");
        let c = parse("[server]\nadmin_listen = \"0.0.0.0:8081\"\nadmin_token = \"t\"\n").unwrap();
        assert_eq!(c.server.admin_token.as_deref(), Some("t"));
    }

    #[test]
    fn admin_hosts_are_names_without_ports() {
        let c = parse("[server]\nadmin_hosts = [\"Admin.Example.com.\", \"hookyard\"]\n").unwrap();
        assert_eq!(c.server.admin_hosts, ["admin.example.com", "hookyard"]);
        for bad in [
            "admin.example.com:8081",
            "http://admin.example.com",
            "a b",
            "",
            "a..b",
        ] {
            let err = parse(&format!("[server]\nadmin_hosts = [\"ok\", {bad:?}]\n")).unwrap_err();
            assert!(
                format!("{err:#}").contains("server.admin_hosts[1]"),
                "{bad}: {err:#}"
            );
        }
    }

    #[test]
    fn rotation_signs_with_both_keys_until_the_window_ends() {
        let c = parse(
            "[targets.t]\nurl = \"http://x\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n\
             previous_secret = \"whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\nprevious_secret_until = \"2026-01-01T00:00:00Z\"\n",
        )
        .unwrap();
        let t = &c.targets["t"];
        let until = t.previous_secret_until.unwrap();
        assert_eq!(t.signing_keys(until - 1).len(), 2);
        assert_eq!(t.signing_keys(until).len(), 1);
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        let shown = |u: &str| redact_url(&url::Url::parse(u).unwrap());
        assert_eq!(
            shown("https://user:pa%20ss@host.example/in?x=1"),
            "https://***:***@host.example/in?x=1"
        );
        assert_eq!(
            shown("https://tok3n@host.example/"),
            "https://***@host.example/"
        );
        assert_eq!(
            shown("https://:pw@host.example/"),
            "https://***:***@host.example/"
        );
        assert_eq!(
            shown("http://host.example:81/a"),
            "http://host.example:81/a"
        );
        let err = parse("[targets.t]\nurl = \"ftp://u:hunter2@x/\"\n").unwrap_err();
        assert!(!format!("{err:#}").contains("hunter2"), "{err:#}");
        let err = parse("[targets.t]\nurl = \"http://u:hunter2@[x/\"\n").unwrap_err();
        assert!(!format!("{err:#}").contains("hunter2"), "{err:#}");
    }

    #[test]
    fn times_past_the_id_range_are_refused() {
        let limit = crate::model::id::TIME_LIMIT_MS;
        assert_eq!(
            parse_time("since", &(limit - 1).to_string()).unwrap(),
            limit - 1
        );
        for text in [limit.to_string(), u64::MAX.to_string()] {
            let err = parse_time("since", &text).unwrap_err();
            assert!(format!("{err:#}").starts_with("since: "), "{err:#}");
        }
        assert_eq!(
            parse_time("until", "2026-11-23T10:00:00Z").unwrap(),
            1_795_428_000_000
        );
    }

    #[test]
    fn secret_must_be_whsec() {
        let err = parse("[targets.t]\nurl = \"http://x\"\nsecret = \"plain\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("targets.t.secret"), "{err:#}");
    }
}
