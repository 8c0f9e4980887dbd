//! hookyard: a self-hosted webhook router.
//!
//! # Layout
//!
//! The tree reads as the flow of one webhook:
//!
//! - [`source`]: the public listener. `POST /hooks/{source}` is checked
//!   (allowlist, rate, size, signature, idempotency key) and stored before
//!   the 202.
//! - [`store`]: everything durable, behind the storage seam: events and
//!   their "to route" marks, routing outcomes with the plugins' KV writes,
//!   the per-target delivery queue and attempts, target state; the body log
//!   and group commit of the embedded (sled) backend.
//! - [`routing`]: takes stored events (a bounded queue of ids), runs the
//!   source's [`plugin`]s and commits the outcome, the deliveries and the
//!   plugins' KV writes in one atomic write.
//! - [`plugin`]: the WebAssembly host: compile, cache, hot reload, call
//!   lanes, limits, host imports.
//! - [`delivery`]: one dispatcher per target over its queue: policies,
//!   circuit breaker, SSRF guard, signing, retries. [`webhooks`]: the
//!   Standard Webhooks scheme (secrets, signing, verifying), shared by
//!   delivery, inbound verification and the sink.
//! - [`admin`]: the admin listener (API, `/metrics`), and [`ui`], the
//!   web dashboard it serves at `/ui/`; [`edge`]: what bounds every
//!   connection to either listener (timeouts, caps, TLS); [`cli`]: the
//!   commands that speak to it, and the local dev tools; [`api`]: what both
//!   listeners and the CLI agree on, the `{"error", "code"}` error shape
//!   ([`api::ApiError`]) and the admin API's answers as records
//!   ([`api::types`]), serialized by the handlers and read by the CLI.
//! - [`telemetry`]: below every stage and importing none: the typed events
//!   stages emit, the log lines and counters each one means, and the
//!   registry `/metrics` renders and the admin API reads its counts from.
//! - [`model`]: the records, typed ids ([`model::id::EventId`],
//!   [`model::id::DeliveryId`]) and statuses every stage shares;
//!   [`config`]: the validated config; [`jobs`]: background sweeps;
//!   [`server`]: the wiring.
//!
//! Every hand-off crosses the store, so a crash loses nothing that was
//! acknowledged.

pub mod admin;
pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod delivery;
pub mod edge;
pub mod jobs;
pub mod memory;
pub mod model;
pub mod plugin;
pub mod readiness;
pub mod reload;
pub mod routing;
pub mod server;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod ui;
pub mod webhooks;
