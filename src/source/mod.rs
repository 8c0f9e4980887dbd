//! Ingestion: the public listener. `POST /hooks/{source}` is answered 202
//! only once the event is stored as durably as the config asks; everything
//! after that (routing, delivery) happens asynchronously.

pub mod allowlist;
pub mod encoding;
pub mod handshake;
pub mod idempotency;
pub mod ingest;
pub mod query;
pub mod rate_limit;
pub mod rejections;
pub mod verify;
pub mod version;

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::config::Config;
use crate::config::live::LiveConfig;
use crate::routing::Router as EventRouter;
use crate::store::EventLog;
use crate::telemetry::Telemetry;

/// What the ingest handler needs.
pub struct IngestState {
    /// Read once per request: a request is checked against one config
    /// from start to end, whatever a reload does meanwhile.
    pub config: Arc<LiveConfig>,
    pub events: Arc<dyn EventLog>,
    pub router: Arc<EventRouter>,
    pub rejections: Arc<rejections::RecentRejections>,
    pub telemetry: Arc<Telemetry>,
    /// Token buckets of the sources that have a rate limit.
    buckets: ArcSwap<Buckets>,
}

/// Each rate-limited source's bucket, with the limit it was made for.
type Buckets = HashMap<String, ((f64, f64), Arc<rate_limit::TokenBucket>)>;

impl IngestState {
    pub fn new(
        config: Arc<LiveConfig>,
        events: Arc<dyn EventLog>,
        router: Arc<EventRouter>,
        rejections: Arc<rejections::RecentRejections>,
        telemetry: Arc<Telemetry>,
    ) -> IngestState {
        let buckets = buckets_for(&config.get(), &Buckets::new());
        IngestState {
            config,
            events,
            router,
            rejections,
            telemetry,
            buckets: ArcSwap::from_pointee(buckets),
        }
    }

    /// The source's rate limit bucket, if it has a limit.
    pub fn bucket(&self, source: &str) -> Option<Arc<rate_limit::TokenBucket>> {
        self.buckets.load().get(source).map(|(_, b)| b.clone())
    }

    /// Brings the buckets in line with a new config, before it is swapped
    /// in: a source whose limit did not change keeps its bucket (and the
    /// tokens it has spent), so a reload is no way around a limit.
    pub fn apply(&self, config: &Config) {
        let next = buckets_for(config, &self.buckets.load());
        self.buckets.store(Arc::new(next));
    }
}

fn buckets_for(config: &Config, old: &Buckets) -> Buckets {
    config
        .sources
        .iter()
        .filter_map(|(name, s)| {
            let limit = s.rate_limit?;
            let bucket = match old.get(name) {
                Some((was, b)) if *was == limit => b.clone(),
                _ => Arc::new(rate_limit::TokenBucket::new(limit.0, limit.1)),
            };
            Some((name.clone(), (limit, bucket)))
        })
        .collect()
}

/// The public HTTP surface.
pub fn routes(state: Arc<IngestState>) -> Router {
    Router::new()
        .route(
            "/hooks/{source}",
            // GET is a handshake (Meta, X, Dropbox) or a 405, decided
            // per source by the handler.
            post(ingest::receive)
                .merge(get(ingest::receive))
                .fallback(ingest::method_not_allowed),
        )
        .fallback(ingest::not_found)
        // Limits are per source and enforced by the handler.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}
