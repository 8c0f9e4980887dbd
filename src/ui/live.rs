//! `/ui/stream`: server-sent events for open pages. New events arrive as
//! ready-made table rows, delivery results as target and result, and the
//! running totals once a second. A listener that falls behind the feed
//! gets `resync` (its page offers a reload) rather than holding the feed
//! back.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::UiState;
use crate::model::id::{EventId, now_ms};
use crate::model::records::EventState;
use crate::store::EventSummary;
use crate::telemetry::live::Live;

/// Open streams at once; past it, 503 (the page still works, without
/// live updates).
pub const MAX_STREAMS: usize = 64;

const TOTALS_EVERY: Duration = Duration::from_secs(1);

/// Releases a stream's slot when the stream is dropped.
struct Slot(Arc<UiState>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::SeqCst);
    }
}

pub async fn stream(State(state): State<Arc<UiState>>) -> Response {
    if state.streams.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
        state.streams.fetch_sub(1, Ordering::SeqCst);
        return (StatusCode::SERVICE_UNAVAILABLE, "too many live streams").into_response();
    }
    let slot = Slot(state.clone());
    let mut feed = state.admin.telemetry.subscribe();
    let telemetry = state.admin.telemetry.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let _slot = slot;
        let mut tick = tokio::time::interval(TOTALS_EVERY);
        loop {
            let event = tokio::select! {
                _ = tick.tick() => Some(Event::default().event("totals").json_data(telemetry.totals()).ok()),
                got = feed.recv() => match got {
                    Ok(live) => Some(to_event(live)),
                    Err(RecvError::Lagged(_)) => Some(Some(Event::default().event("resync").data("lagged"))),
                    Err(RecvError::Closed) => None,
                },
                _ = tx.closed() => None,
            };
            match event {
                None => return,
                Some(None) => continue,
                Some(Some(e)) => {
                    if tx.send(e).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn to_event(live: Live) -> Option<Event> {
    match live {
        Live::Accepted {
            source,
            event,
            bytes,
        } => {
            let summary = EventSummary {
                id: EventId::from(event.as_str()),
                source: source.clone(),
                received_at: now_ms(),
                status: EventState::Pending,
                version: None,
                size: bytes,
                deliveries: 0,
            };
            let row = super::events::row(&summary).into_string();
            Event::default()
                .event("event")
                .json_data(json!({ "id": event, "source": source, "row": row }))
                .ok()
        }
        Live::Finished { target, result } => Event::default()
            .event("delivery")
            .json_data(json!({ "target": target, "result": result }))
            .ok(),
        _ => None,
    }
}
