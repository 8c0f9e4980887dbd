//! `hookyard sink`: a local receiver for trying hookyard out. It prints every
//! delivery it gets and checks its Standard Webhooks signature, so the
//! quickstart needs nothing but hookyard and curl.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

use crate::webhooks::standard::{self, Secret};

struct SinkState {
    key: Option<Secret>,
    status: StatusCode,
    seen: AtomicU64,
}

/// Runs the sink until Ctrl-C.
pub async fn run(listen: SocketAddr, secret: Option<String>, status: u16) -> Result<()> {
    let key = secret
        .map(|s| Secret::parse(&s).map_err(|e| anyhow::anyhow!("--secret: {e}")))
        .transpose()?;
    let state = Arc::new(SinkState {
        key,
        status: StatusCode::from_u16(status).context("--status: not an HTTP status")?,
        seen: AtomicU64::new(0),
    });
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!(
        "hookyard sink listening on http://{} (answering {status})",
        listener.local_addr()?
    );
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move { receive(&state, method, uri, headers, body) }
        },
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn receive(
    state: &SinkState,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let n = state.seen.fetch_add(1, Ordering::Relaxed) + 1;
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let signature = match &state.key {
        None => "not checked (no --secret)".to_string(),
        Some(key) => match standard::verify(
            std::slice::from_ref(key),
            get(standard::ID),
            get(standard::TIMESTAMP).parse().unwrap_or(0),
            &body,
            get(standard::SIGNATURE),
        ) {
            Ok(()) => "valid".to_string(),
            Err(e) => format!("INVALID ({e})"),
        },
    };
    println!(
        "#{n} {method} {uri}  webhook-id={}  signature {signature}",
        get(standard::ID)
    );
    for (k, v) in &headers {
        if k.as_str().starts_with("x-") || k == "content-type" {
            println!("    {k}: {}", v.to_str().unwrap_or("<binary>"));
        }
    }
    let text = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&body).into_owned(),
    };
    let shown: String = text.chars().take(2000).collect();
    for line in shown.lines() {
        println!("    {line}");
    }
    state.status
}
