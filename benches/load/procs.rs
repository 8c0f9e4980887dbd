//! Child processes: the router (the release `hookyard` binary cargo built
//! for this bench), and this executable re-run in a role (sink, baseline,
//! load generator), each in its own process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::loadgen::{LoadResult, LoadSpec};

/// A child that announced where it listens.
pub struct Proc {
    child: Child,
    /// Text after `http://` on its listening line, per field.
    pub line: String,
    /// From spawn to the listening line.
    pub started_in: Duration,
    pub log: Option<PathBuf>,
}

impl Proc {
    /// Spawns `cmd` (stdout piped) and waits for a line starting with
    /// `prefix`.
    fn spawn(mut cmd: Command, prefix: &str, log: Option<PathBuf>, wait: Duration) -> Result<Proc> {
        let started = Instant::now();
        cmd.stdout(Stdio::piped());
        match &log {
            Some(path) => {
                cmd.stderr(std::fs::File::create(path)?);
            }
            None => {
                cmd.stderr(Stdio::inherit());
            }
        }
        let mut child = cmd.spawn().with_context(|| format!("start {cmd:?}"))?;
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let prefix = prefix.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with(&prefix) {
                    let _ = tx.send(line);
                }
            }
        });
        match rx.recv_timeout(wait) {
            Ok(line) => Ok(Proc {
                child,
                line,
                started_in: started.elapsed(),
                log,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let tail = log
                    .as_ref()
                    .and_then(|p| std::fs::read_to_string(p).ok())
                    .map(|t| tail_lines(&t, 30))
                    .unwrap_or_default();
                bail!("{cmd:?} did not report listening within {wait:?}\n{tail}")
            }
        }
    }

    /// The value of `name` (e.g. `public=`) on the listening line.
    pub fn field(&self, name: &str) -> Option<String> {
        self.line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(name).map(str::to_string))
    }

    /// The first `http://…` word of the listening line.
    pub fn url(&self) -> Option<String> {
        self.line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_string)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        proc_status_kib(self.pid(), "VmHWM:").map(|kib| kib as f64 / 1024.0)
    }

    /// Resident set size now (`VmRSS`), in MiB.
    pub fn rss_mib(&self) -> Option<f64> {
        proc_status_kib(self.pid(), "VmRSS:").map(|kib| kib as f64 / 1024.0)
    }

    /// SIGTERM, then wait up to `grace` (SIGKILL after that).
    pub fn stop(mut self, grace: Duration) -> Result<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let status = self.child.wait()?;
                eprintln!(
                    "  (pid {} did not stop within {grace:?}; killed)",
                    self.pid()
                );
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL (helpers that keep no state).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A scenario that failed half-way must not leave servers behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (which may hold
/// spaces, so it is skipped by its closing parenthesis): index 1 is the
/// parent's pid, 11 and 12 user and system time in ticks.
pub fn stat_fields(pid: &str) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// User plus system CPU time of a process's `stat` fields, in seconds.
pub fn cpu_of(fields: &[String]) -> f64 {
    seconds_in(fields, 11, 12)
}

/// CPU time of a process's children that ended and were waited for, in
/// seconds.
pub fn children_cpu_of(fields: &[String]) -> f64 {
    seconds_in(fields, 13, 14)
}

/// Two tick counters of a stat line (user and system time), in seconds.
fn seconds_in(fields: &[String], user: usize, system: usize) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let at = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    (at(user).unwrap_or(0.0) + at(system).unwrap_or(0.0)) / ticks
}

/// CPU seconds a live process has used so far (0 once it is gone).
pub fn cpu_secs(pid: u32) -> f64 {
    stat_fields(&pid.to_string()).map_or(0.0, |f| cpu_of(&f))
}

/// The machine's CPU ticks so far: (steal, all). Steal is time a virtual
/// CPU was ready to run and its host ran something else. On the 2-core VM
/// the benchmarks were written on it came as stalls of ~10 ms about every
/// 100 ms under load, which every process sees; a paced run's p99 is the
/// figure most sensitive to it (docs/benchmarks.md).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is
    // already in user).
    let all = ticks.iter().take(8).sum();
    Some((*ticks.get(7)?, all))
}

/// Percent of the machine's CPU time stolen by its host between two
/// [`machine_ticks`] readings.
pub fn steal_percent(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((s0, a0), (s1, a1)) = (before?, after?);
    let all = a1.checked_sub(a0).filter(|&d| d > 0)?;
    Some(s1.saturating_sub(s0) as f64 * 100.0 / all as f64)
}

/// A numeric field (kB) of `/proc/<pid>/status`.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn this_exe() -> Result<PathBuf> {
    std::env::current_exe().context("locate the bench executable")
}

/// Starts this executable as the sink.
pub fn start_sink() -> Result<Proc> {
    let mut cmd = Command::new(this_exe()?);
    cmd.args(["__role", "sink"]);
    Proc::spawn(cmd, "sink listening", None, Duration::from_secs(20))
}

/// Starts this executable as the bare axum baseline.
pub fn start_baseline() -> Result<Proc> {
    let mut cmd = Command::new(this_exe()?);
    cmd.args(["__role", "baseline"]);
    Proc::spawn(cmd, "baseline listening", None, Duration::from_secs(20))
}

/// Starts `hookyard serve` on `dir/hookyard.toml` (written from `config`);
/// its log goes to `dir/hookyard-N.log`.
pub fn start_router(
    dir: &Path,
    config: &str,
    log_filter: Option<&str>,
    env: &[(String, String)],
) -> Result<Proc> {
    std::fs::create_dir_all(dir)?;
    let config_path = dir.join("hookyard.toml");
    std::fs::write(&config_path, config)?;
    let mut n = 1;
    while dir.join(format!("hookyard-{n}.log")).exists() {
        n += 1;
    }
    let log = dir.join(format!("hookyard-{n}.log"));
    let mut cmd = Command::new(router_binary());
    cmd.arg("serve").arg("--config").arg(&config_path);
    for var in [
        "HOOKYARD_LISTEN",
        "HOOKYARD_ADMIN_LISTEN",
        "HOOKYARD_DATA_DIR",
        "HOOKYARD_LOG",
        "HOOKYARD_LOG_FORMAT",
    ] {
        cmd.env_remove(var);
    }
    if let Some(filter) = log_filter {
        cmd.env("HOOKYARD_LOG", filter);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    // Compiling the Python and JavaScript components takes seconds when the
    // compiled cache is cold (longer in a debug build).
    Proc::spawn(
        cmd,
        "hookyard listening",
        Some(log),
        Duration::from_secs(300),
    )
}

/// Runs the load generator in its own process and returns its result.
pub fn run_load(spec: &LoadSpec) -> Result<LoadResult> {
    let json = serde_json::to_string(spec)?;
    let mut child = Command::new(this_exe()?)
        .args(["__role", "loadgen", &json])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("start the load generator")?;
    let mut stdout = child.stdout.take().expect("piped");
    let limit = Duration::from_secs_f64(spec.warmup_secs + spec.duration_secs + 60.0);
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the load generator did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = reader
        .join()
        .map_err(|_| anyhow!("load generator reader panicked"))?;
    if !status.success() {
        bail!("the load generator failed ({status})");
    }
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line).with_context(|| format!("load generator output {line:?}"))
}

static ROUTER: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Measures `path` instead of this build's router (`--router`).
pub fn use_router(path: std::path::PathBuf) {
    let _ = ROUTER.set(path);
}

/// The hookyard binary the scenarios start.
pub fn router_binary() -> &'static std::path::Path {
    ROUTER
        .get()
        .map(|p| p.as_path())
        .unwrap_or(std::path::Path::new(env!("CARGO_BIN_EXE_hookyard")))
}
