//! Ingestion: the public listener. `POST /hooks/{source}` is answered 202
//! only once the event is stored as durably as the config asks; everything
//! after that (routing, delivery) happens asynchronously.

pub mod allowlist;
pub mod idempotency;
pub mod ingest;
pub mod query;
pub mod rate_limit;
pub mod rejections;
pub mod verify;
pub mod version;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;

use crate::config::Config;
use crate::routing::Router as EventRouter;
use crate::store::EventLog;
use crate::telemetry::Telemetry;

/// What the ingest handler needs.
pub struct IngestState {
    pub config: Arc<Config>,
    pub events: Arc<dyn EventLog>,
    pub router: Arc<EventRouter>,
    pub rejections: Arc<rejections::RecentRejections>,
    pub telemetry: Arc<Telemetry>,
    /// Token buckets of the sources that have a rate limit.
    pub buckets: std::collections::HashMap<String, rate_limit::TokenBucket>,
}

impl IngestState {
    pub fn new(
        config: Arc<Config>,
        events: Arc<dyn EventLog>,
        router: Arc<EventRouter>,
        rejections: Arc<rejections::RecentRejections>,
        telemetry: Arc<Telemetry>,
    ) -> IngestState {
        let buckets = config
            .sources
            .iter()
            .filter_map(|(name, s)| {
                s.rate_limit
                    .map(|(rate, burst)| (name.clone(), rate_limit::TokenBucket::new(rate, burst)))
            })
            .collect();
        IngestState {
            config,
            events,
            router,
            rejections,
            telemetry,
            buckets,
        }
    }
}

/// The public HTTP surface.
pub fn routes(state: Arc<IngestState>) -> Router {
    Router::new()
        .route(
            "/hooks/{source}",
            post(ingest::receive).fallback(ingest::method_not_allowed),
        )
        .fallback(ingest::not_found)
        // Limits are per source and enforced by the handler.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
