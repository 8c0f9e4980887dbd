//! Mutated webhook requests, written to the socket byte by byte: broken
//! framing (chunked encodings, lengths that lie, truncated bodies), hostile
//! heads (too many or malformed headers, odd methods and paths), wrong and
//! mangled signatures, and random bytes. Shared by the CI slice
//! (tests/fuzz.rs) and the benchmark's 100,000-request run
//! (benches/load/fuzz.rs), so both send the same kinds of requests.
//!
//! Deterministic for a seed, so a crash can be replayed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where to send, and the GitHub-verified source's secret.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// A source with `verify = { scheme = "github", secret = ... }`.
    pub verified: String,
    pub secret: String,
    /// A source without verification.
    pub raw: String,
}

/// What came back for one request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Answer {
    Status(u16),
    /// Closed (or reset) without a status line.
    Closed,
    /// Neither an answer nor a close within the client's timeout.
    TimedOut,
}

impl Answer {
    pub fn label(&self) -> String {
        match self {
            Answer::Status(s) => s.to_string(),
            Answer::Closed => "closed".into(),
            Answer::TimedOut => "timeout".into(),
        }
    }
}

/// Answers counted by [`Answer::label`].
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: u64,
    pub answers: BTreeMap<String, u64>,
}

impl Tally {
    pub fn count(&self, label: &str) -> u64 {
        self.answers.get(label).copied().unwrap_or(0)
    }

    pub fn summary(&self) -> String {
        self.answers
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One request to send, and whether to close the write side after it (a
/// sender that hangs up mid-body).
pub struct Request {
    pub bytes: Vec<u8>,
    pub hang_up: bool,
}

pub struct Fuzzer {
    rng: StdRng,
    n: u64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Fuzzer {
    pub fn new(seed: u64) -> Fuzzer {
        Fuzzer {
            rng: StdRng::seed_from_u64(seed),
            n: 0,
        }
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.random_range(0..100) < percent
    }

    fn body(&mut self) -> Vec<u8> {
        match self.rng.random_range(0..100) {
            0..=59 => format!(r#"{{"action":"opened","n":{}}}"#, self.n).into_bytes(),
            60..=74 => {
                let len = self.rng.random_range(0..2048);
                (0..len).map(|_| self.rng.random()).collect()
            }
            75..=79 => {
                let depth = self.rng.random_range(100..5000);
                let mut b = "[".repeat(depth).into_bytes();
                b.extend("]".repeat(depth).into_bytes());
                b
            }
            80..=84 => br#"{"unterminated": ["#.to_vec(),
            85..=86 => vec![b'x'; 1_100_000], // past the default max_body
            87..=89 => Vec::new(),
            _ => {
                let mut b = format!(r#"{{"n":{},"s":"#, self.n).into_bytes();
                b.extend((0..64).map(|_| self.rng.random_range(0x80u8..=0xff)));
                b.push(b'}');
                b
            }
        }
    }

    fn signature(&mut self, t: &Target, body: &[u8]) -> Vec<String> {
        let mut mac = Hmac::<Sha256>::new_from_slice(t.secret.as_bytes()).expect("any key");
        mac.update(body);
        let good = format!("sha256={}", hex(&mac.finalize().into_bytes()));
        match self.rng.random_range(0..100) {
            0..=49 => vec![format!("X-Hub-Signature-256: {good}")],
            50..=59 => vec![],
            60..=69 => vec![format!("X-Hub-Signature-256: {}", &good[..good.len() / 2])],
            70..=79 => vec![format!(
                "X-Hub-Signature-256: sha256={}",
                hex(&self.rng.random::<[u8; 32]>())
            )],
            80..=84 => vec![format!(
                "X-Hub-Signature-256: {}",
                good.replace("sha256=", "md5=")
            )],
            85..=89 => vec![
                format!("X-Hub-Signature-256: {good}"),
                "X-Hub-Signature-256: sha256=00".into(),
            ],
            _ => vec!["X-Hub-Signature-256: \u{1F4A9}".into()],
        }
    }

    /// The next request.
    pub fn next(&mut self, t: &Target) -> Request {
        self.n += 1;
        if self.chance(2) {
            let len = self.rng.random_range(1..4096);
            return Request {
                bytes: (0..len).map(|_| self.rng.random()).collect(),
                hang_up: self.chance(50),
            };
        }
        let body = self.body();
        let verified = self.chance(50);
        let source = if verified {
            t.verified.clone()
        } else if self.chance(90) {
            t.raw.clone()
        } else {
            format!("no-such-{}", self.rng.random::<u16>())
        };
        let method = if self.chance(92) {
            "POST"
        } else {
            [
                "GET",
                "PUT",
                "DELETE",
                "PATCH",
                "OPTIONS",
                "FOO",
                "P\u{d8}ST",
            ][self.rng.random_range(0..7)]
        };
        let path = match self.rng.random_range(0..100) {
            0..=94 => format!("/hooks/{source}"),
            95 => "/hooks/../admin/events".into(),
            96 => format!("/hooks/{source}%00"),
            97 => format!("/hooks/{}", "a".repeat(5000)),
            98 => format!("/hooks/{source}?x=%zz&y={}", "q".repeat(100)),
            _ => "*".into(),
        };
        let version = if self.chance(98) {
            "HTTP/1.1"
        } else {
            "HTTP/9.9"
        };
        let mut head: Vec<String> = vec![
            format!("{method} {path} {version}"),
            "Host: fuzz".into(),
            "Content-Type: application/json".into(),
            "Connection: close".into(),
            format!("X-GitHub-Delivery: fuzz-{}", self.n),
            "X-GitHub-Event: push".into(),
        ];
        if verified || self.chance(10) {
            head.extend(self.signature(t, &body));
        }
        match self.rng.random_range(0..100) {
            0..=4 => {
                for i in 0..self.rng.random_range(90..160) {
                    head.push(format!("X-Many-{i}: v"));
                }
            }
            5..=6 => head.push(format!("X-Big: {}", "b".repeat(70_000))),
            7 => head.push("No colon here".into()),
            8 => head.push(" folded: continuation".into()),
            9 => head.push("Bad Name: x".into()),
            10 => head.push("X-Bytes: \u{0}\u{7f}".into()),
            _ => {}
        }
        let mut hang_up = false;
        let framed: Vec<u8> = match self.rng.random_range(0..100) {
            0..=59 => {
                head.push(format!("Content-Length: {}", body.len()));
                body
            }
            60..=74 => {
                head.push("Transfer-Encoding: chunked".into());
                self.chunked(&body, false)
            }
            75..=79 => {
                head.push("Transfer-Encoding: chunked".into());
                hang_up = self.chance(50);
                self.chunked(&body, true)
            }
            80..=84 => {
                // The length lies: more is promised than sent.
                head.push(format!("Content-Length: {}", body.len() + 100));
                hang_up = self.chance(70);
                body
            }
            85..=87 => {
                head.push(format!("Content-Length: {}", body.len() / 2));
                body
            }
            88..=90 => {
                head.push(format!("Content-Length: {}", body.len()));
                head.push("Transfer-Encoding: chunked".into());
                self.chunked(&body, false)
            }
            91..=95 => {
                let bad = ["-1", "abc", "1,2", "99999999999999999999", "+5", ""];
                head.push(format!(
                    "Content-Length: {}",
                    bad[self.rng.random_range(0..bad.len())]
                ));
                body
            }
            96..=97 => {
                head.push("Content-Length: 5".into());
                head.push("Content-Length: 6".into());
                body
            }
            _ => body,
        };
        let mut bytes = head.join("\r\n").into_bytes();
        bytes.extend(b"\r\n\r\n");
        bytes.extend(framed);
        if self.chance(5) {
            for _ in 0..self.rng.random_range(1..8) {
                let i = self.rng.random_range(0..bytes.len());
                bytes[i] = self.rng.random();
            }
        }
        Request { bytes, hang_up }
    }

    fn chunked(&mut self, body: &[u8], broken: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let n = self.rng.random_range(1..=rest.len().min(700));
            out.extend(format!("{n:x}").into_bytes());
            if self.chance(5) {
                out.extend(b";ext=1");
            }
            out.extend(b"\r\n");
            out.extend(&rest[..n]);
            out.extend(b"\r\n");
            rest = &rest[n..];
        }
        if broken {
            match self.rng.random_range(0..5) {
                0 => out.extend(b"zz\r\n"),
                1 => out.extend(b"ffffffffffffffffff\r\n"),
                2 => out.truncate(out.len() / 2),
                3 => out.extend(b"5\r\nab"),
                _ => out.extend(b"0\r\nTrailer: x"),
            }
        } else {
            out.extend(b"0\r\n\r\n");
        }
        out
    }
}

/// Sends one request on its own connection and reads the answer's status
/// line, or how the connection ended.
pub async fn send(addr: SocketAddr, req: Request, timeout: Duration) -> Answer {
    let attempt = async {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            return Answer::Closed;
        };
        // The server may answer (413, 431) and close before all is sent.
        let _ = s.write_all(&req.bytes).await;
        if req.hang_up {
            let _ = s.shutdown().await;
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.len() >= 12 || got.contains(&b'\n') {
                        break;
                    }
                }
            }
        }
        let line = String::from_utf8_lossy(&got);
        match line
            .strip_prefix("HTTP/1.1 ")
            .or_else(|| line.strip_prefix("HTTP/1.0 "))
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
        {
            Some(code) => Answer::Status(code),
            None => Answer::Closed,
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(Answer::TimedOut)
}

/// Sends `n` requests, `concurrency` at a time; `progress` is called
/// every 10,000.
pub async fn run(
    target: &Target,
    n: u64,
    concurrency: usize,
    seed: u64,
    timeout: Duration,
    progress: impl Fn(&Tally),
) -> Tally {
    let mut fuzzer = Fuzzer::new(seed);
    let mut tally = Tally::default();
    let mut running = tokio::task::JoinSet::new();
    while tally.sent < n || !running.is_empty() {
        while tally.sent < n && running.len() < concurrency {
            let req = fuzzer.next(target);
            running.spawn(send(target.addr, req, timeout));
            tally.sent += 1;
            if tally.sent.is_multiple_of(10_000) {
                progress(&tally);
            }
        }
        if let Some(Ok(answer)) = running.join_next().await {
            *tally.answers.entry(answer.label()).or_insert(0) += 1;
        }
    }
    tally
}
