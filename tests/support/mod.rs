//! Test harness: builds the real plugins from source, starts the real
//! `hookyard` binary and a real HTTP sink on 127.0.0.1.
#![allow(dead_code)]
pub mod admin;
pub mod openmetrics;
pub mod postgres;
pub mod tmpfs;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds every plugin in `plugins/` once per test process (cargo's own lock
/// serialises concurrent test binaries) and returns `plugins/dist`.
pub fn built_plugins() -> &'static Path {
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    DIST.get_or_init(|| {
        let root = repo_root();
        let status = Command::new("bash")
            .arg(root.join("scripts/build-plugins.sh"))
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/build-plugins.sh");
        assert!(status.success(), "building the plugins failed");
        root.join("plugins/dist")
    })
}

/// Copies built plugin `file` (e.g. "chaos") into `dir` as `<as_name>.wasm`.
pub fn install_plugin(dir: &Path, file: &str, as_name: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(
        built_plugins().join(format!("{file}.wasm")),
        dir.join(format!("{as_name}.wasm")),
    )
    .unwrap_or_else(|e| panic!("copy plugin {file}: {e}"));
}

/// The secret every test target signs with.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A config section that puts the embedded store on fjall, for the tests
/// that run on both engines (sled is the default: no section).
pub const ON_FJALL: &str = "[store]\nbackend = \"fjall\"\n";

/// A running hookyard process.
pub struct Hookyard {
    child: Child,
    pub public: String,
    pub admin: String,
    pub dir: PathBuf,
    log: PathBuf,
    http: reqwest::Client,
}

impl Hookyard {
    /// Writes `config` to `dir/hookyard.toml` and starts the binary on it.
    pub fn start(dir: &Path, config: &str) -> Hookyard {
        Self::start_env(dir, config, &[])
    }

    /// Like `start`, with extra environment variables for the process.
    pub fn start_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Hookyard {
        Self::start_with(dir, config, |c| {
            c.envs(env.iter().copied());
        })
    }

    /// Like `start`, with `prepare` applied to the command first (extra
    /// environment, resource limits).
    pub fn start_with(dir: &Path, config: &str, prepare: impl FnOnce(&mut Command)) -> Hookyard {
        std::fs::create_dir_all(dir).unwrap();
        let config_path = dir.join("hookyard.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.join(format!("hookyard-{}.log", crate_now_nanos()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_hookyard"));
        command
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("HOOKYARD_LOG", "info,hookyard=debug");
        prepare(&mut command);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start hookyard");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("hookyard listening") {
                    let _ = tx.send(line);
                }
            }
        });
        // Generous: a first start compiles Python and JavaScript components
        // (5-30 s each, more on a busy machine).
        let line = match rx.recv_timeout(Duration::from_secs(180)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "hookyard did not start; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(name))
                .unwrap()
                .to_string()
        };
        Hookyard {
            child,
            public: field("public="),
            admin: field("admin="),
            dir: dir.to_path_buf(),
            log,
            http: reqwest::Client::new(),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// POSTs a webhook; returns status and JSON body.
    pub async fn post(&self, source: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/hooks/{source}", self.public))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("POST to hookyard");
        let status = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        (status, v)
    }

    /// Sends one event and returns its id (asserting 202).
    pub async fn send(&self, source: &str, body: &str) -> String {
        let (status, v) = self.post(source, body.to_string()).await;
        assert_eq!(status, 202, "unexpected answer {v}");
        v["id"].as_str().unwrap().to_string()
    }

    /// POST on the admin listener with a JSON body; status and JSON answer.
    pub async fn admin_post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.admin))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GET on the admin listener; status and JSON answer.
    pub async fn admin_get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// GET on the admin listener with a bearer token; status and JSON.
    pub async fn admin_get_token(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.admin))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// SIGTERM, then waits (at most `timeout`) for the process to exit.
    pub fn sigterm(mut self, timeout: Duration) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "hookyard did not exit within {timeout:?} of SIGTERM; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// GET on the admin listener, as JSON.
    pub async fn admin_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A plugin's entry in `GET /admin/plugins` (null when not listed).
    pub async fn plugin_status(&self, name: &str) -> Value {
        let v = self.admin_json("/admin/plugins").await;
        v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// GET on the admin listener, as text (e.g. `/metrics`).
    pub async fn admin_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn event(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/admin/events/{id}", self.admin))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the event's view satisfies `done` (or panics after
    /// `timeout` with the last view).
    pub async fn wait_event(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.event(id).await;
            if done(&v) {
                return v;
            }
            if Instant::now() > deadline {
                panic!(
                    "event {id} did not reach the expected state: {v:#}\nlog:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Hookyard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn crate_now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Whether all events reached a final state.
pub fn delivered(v: &Value) -> bool {
    v["status"] != "pending"
        && v["deliveries"]
            .as_array()
            .is_some_and(|d| d.iter().all(|d| d["status"] == "delivered"))
}

/// One request the sink received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// Whether the Standard Webhooks signature verified against [`SECRET`].
    pub signature_ok: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A planned answer: status plus an optional `Retry-After`.
#[derive(Clone, Copy, Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<u64>,
}

pub const OK: Answer = Answer {
    status: 200,
    retry_after: None,
};

pub fn answer(status: u16) -> Answer {
    Answer {
        status,
        retry_after: None,
    }
}

#[derive(Default)]
struct SinkState {
    received: Vec<Received>,
    script: VecDeque<Answer>,
    /// How long each answer is held back.
    delay: Duration,
    in_flight: usize,
    max_in_flight: usize,
}

/// An HTTP receiver on 127.0.0.1 that records every request, verifies its
/// signature independently of hookyard's code, and answers from a script
/// (then 200).
pub struct Sink {
    pub addr: SocketAddr,
    state: Arc<Mutex<SinkState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    pub async fn start(script: Vec<Answer>) -> Sink {
        Self::start_on("127.0.0.1:0".parse().unwrap(), script).await
    }

    pub async fn start_on(addr: SocketAddr, script: Vec<Answer>) -> Sink {
        let state = Arc::new(Mutex::new(SinkState {
            script: script.into(),
            ..SinkState::default()
        }));
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind sink");
        let addr = listener.local_addr().unwrap();
        let st = state.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let st = st.clone();
                async move {
                    let signature_ok = verify_signature(SECRET, &headers, &body);
                    let delay = {
                        let mut s = st.lock().unwrap();
                        s.in_flight += 1;
                        s.max_in_flight = s.max_in_flight.max(s.in_flight);
                        s.delay
                    };
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    let mut s = st.lock().unwrap();
                    s.in_flight -= 1;
                    s.received.push(Received {
                        path: uri.path().to_string(),
                        headers,
                        body,
                        at: Instant::now(),
                        signature_ok,
                    });
                    let a = s.script.pop_front().unwrap_or(OK);
                    let mut resp = StatusCode::from_u16(a.status).unwrap().into_response();
                    if let Some(ra) = a.retry_after {
                        resp.headers_mut()
                            .insert("retry-after", ra.to_string().parse().unwrap());
                    }
                    resp
                }
            },
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Sink { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Holds every later answer back this long (a slow target). A request
    /// is recorded when it is answered, so `at` is its answer time.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// The most requests the sink was handling at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// Replaces what the sink answers next (then 200).
    pub fn script(&self, script: Vec<Answer>) {
        self.state.lock().unwrap().script = script.into();
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn received_on(&self, path: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Waits until at least `n` requests arrived (or panics).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.received();
            if r.len() >= n {
                return r;
            }
            if Instant::now() > deadline {
                panic!("sink got {} of {n} requests in {timeout:?}", r.len());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until at least `n` requests arrived on `path` (or panics).
    pub async fn wait_for_path(&self, path: &str, n: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(timeout, |r| {
            r.iter().filter(|r| r.path == path).count() >= n
        })
        .await
        .into_iter()
        .filter(|r| r.path == path)
        .collect()
    }

    /// Waits until what arrived satisfies `done` (or panics); all of it.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.received();
            if done(&r) {
                return r;
            }
            if Instant::now() > deadline {
                panic!(
                    "the sink's {} requests never matched in {timeout:?}",
                    r.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// Standard Webhooks verification, written from the spec (not hookyard's
/// signing code): HMAC-SHA256 over `id.timestamp.body`, base64, `v1,` prefix.
pub fn verify_signature(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let (Some(id), Some(ts), Some(sigs)) = (
        get("webhook-id"),
        get("webhook-timestamp"),
        get("webhook-signature"),
    ) else {
        return false;
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    sigs.split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
}

/// A port on 127.0.0.1 where nothing listens, for a target or an admin URL
/// that must stay unreachable: tcpmux, not a `free_port()`, which a sink or
/// router of a test running alongside can take meanwhile and answer on
/// (tests/retries.rs failed so once in a full run).
pub const CLOSED_PORT: u16 = 1;

/// A free port on 127.0.0.1 (bound then released) for a sink that must come
/// up later at an address hookyard already knows.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `[plugins] cache_dir` line for a compile cache shared by every test
/// of this run and the next: a Python or JavaScript component compiles in
/// 5-30 s, from the cache in milliseconds. (Tests about the cache itself
/// use the default, per data directory.)
pub fn shared_cache() -> String {
    format!(
        "cache_dir = \"{}/plugin-cache\"\n",
        env!("CARGO_TARGET_TMPDIR")
    )
}

/// A config preamble: both listeners on port 0, data and plugins in `dir`.
pub fn server_section(dir: &Path) -> String {
    format!(
        "[delivery]\n# Test sinks live on 127.0.0.1, which the SSRF guard refuses by default.\nallow_private = true\n\n[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n[plugins]\ndir = \"{}\"\n",
        dir.join("data").display(),
        dir.join("plugins").display()
    )
}

/// Resident and peak resident memory of a process, in MiB
/// (`/proc/<pid>/status`: VmRSS and VmHWM).
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
