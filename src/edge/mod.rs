//! The listeners' edge: what stands between a socket and a handler. A
//! webhook endpoint faces the internet, so every connection is bounded
//! here before any handler runs: how long its request head may take, how
//! long it may sit silent, how many headers it may send, and how many
//! connections there may be at once. TLS (with certificates picked up
//! again when their files change) and HTTP/2 over ALPN live here too.
//!
//! hyper is used directly rather than through `axum::serve`, which exposes
//! none of these knobs.

mod activity;
pub mod nofile;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use self::activity::{Activity, Clock};
use crate::config::ListenerLimits;
use crate::telemetry::throttle::Throttle;

/// How long to wait before accepting again when the process is out of
/// file descriptors: the connection stays in the kernel's backlog meanwhile.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One listener: its socket, the app it serves, its bounds.
pub struct Listener {
    /// For log lines: "public" or "admin".
    pub name: &'static str,
    pub socket: TcpListener,
    pub limits: ListenerLimits,
    /// How many connections may be open at once (already lowered to what
    /// the open-files limit allows).
    pub max_connections: usize,
    pub tls: Option<Arc<tls::Certificates>>,
}

/// Serves `app` on the listener until `stop` turns true, then lets open
/// requests finish (connections close as they go idle) and returns once
/// every connection has closed. The caller bounds that wait.
pub async fn serve(listener: Listener, app: Router, mut stop: watch::Receiver<bool>) -> Result<()> {
    let Listener {
        name,
        socket,
        limits,
        max_connections,
        tls,
    } = listener;
    let builder = Arc::new(builder(&limits));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(max_connections));
    let accept_errors = Throttle::new(Duration::from_secs(10));
    let at_cap = Throttle::new(Duration::from_secs(10));
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if let Some(suppressed) = at_cap.allow() {
                    tracing::warn!(
                        listener = name,
                        max_connections,
                        suppressed,
                        "connection cap reached: new connections wait in the listen backlog until one closes"
                    );
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => p?,
                    () = stopped(&mut stop) => break,
                }
            }
        };
        let accepted = tokio::select! {
            r = socket.accept() => r,
            () = stopped(&mut stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                if let Some(suppressed) = accept_errors.allow() {
                    tracing::error!(listener = name, error = %e, suppressed, "accepting a connection failed");
                }
                // Out of descriptors (EMFILE/ENFILE) or a connection reset
                // before it was accepted: back off a little rather than spin.
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            app: app.clone(),
            builder: builder.clone(),
            peer,
            idle_timeout: limits.idle_timeout,
            watcher: graceful.watcher(),
        };
        match &tls {
            None => {
                tokio::spawn(async move {
                    conn.run(stream).await;
                    drop(permit);
                });
            }
            Some(certs) => {
                let acceptor = certs.acceptor();
                let handshake = limits.header_timeout;
                tokio::spawn(async move {
                    // The handshake counts against the head's time: a client
                    // that opens a socket and says nothing is closed either way.
                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => conn.run(tls).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    drop(permit);
                });
            }
        }
    }
    drop(socket);
    graceful.shutdown().await;
    Ok(())
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// HTTP/1.1 and HTTP/2 (by ALPN over TLS, by the connection preface in
/// clear text), both bounded.
fn builder(limits: &ListenerLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        // hyper starts this clock whenever it waits for a request head, so
        // it also closes a keep-alive connection idle between requests.
        .header_read_timeout(limits.header_timeout)
        .max_headers(limits.max_headers)
        // Heads larger than the read buffer are answered 431; 8 KiB is
        // hyper's floor.
        .max_buf_size(limits.max_header_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        // No keep-alive pings: their bytes would keep an idle connection
        // from ever looking idle.
        .max_concurrent_streams(100);
    b
}

/// One accepted connection.
struct Conn {
    app: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    peer: SocketAddr,
    idle_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
}

impl Conn {
    /// Serves the connection until it ends, or until it has carried no
    /// byte either way for `idle_timeout` while no request was being
    /// answered.
    async fn run<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let clock = Clock::new();
        let peer = self.peer;
        let app = self.app;
        let requests = clock.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let busy = requests.busy();
            let app = app.clone();
            async move {
                let response = app.oneshot(req).await;
                drop(busy);
                response
            }
        });
        let conn = self
            .builder
            .serve_connection(TokioIo::new(Activity::new(io, clock.clone())), service);
        let conn = self.watcher.watch(conn.into_owned());
        tokio::pin!(conn);
        loop {
            // While a request is being answered past the deadline, look
            // again a little later rather than spin.
            let wait = clock
                .idle_deadline(self.idle_timeout)
                .max(tokio::time::Instant::now() + Duration::from_millis(250));
            tokio::select! {
                r = &mut conn => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = tokio::time::sleep_until(wait) => {
                    if clock.is_idle_for(self.idle_timeout) {
                        tracing::debug!(%peer, "closing an idle connection");
                        return;
                    }
                }
            }
        }
    }
}
