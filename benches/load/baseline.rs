//! The bare baseline role: a minimal axum server that reads the body and
//! answers 202, storing nothing — the ceiling for ingestion on this machine
//! with this load generator. Same runtime as hookyard (tokio multi-thread,
//! one worker per core) and the same axum version.

use std::io::Write as _;

use anyhow::Result;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::routing::post;

pub fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve())
}

async fn serve() -> Result<()> {
    let app = axum::Router::new().route(
        "/hooks/{source}",
        post(|body: Bytes| async move {
            std::hint::black_box(&body);
            (
                StatusCode::ACCEPTED,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"id\":\"evt_baseline\"}",
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "baseline listening http://{addr}")?;
    out.flush()?;
    drop(out);
    axum::serve(listener, app).await?;
    Ok(())
}
