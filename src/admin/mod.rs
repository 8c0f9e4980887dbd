//! The admin listener: health and inspection. Bound to loopback by default;
//! it shows event bodies, so it must not face the internet.

pub(crate) mod actions;
pub(crate) mod auth;
mod cluster;
mod config;
mod guard;
mod kv;
mod list;
mod trial;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::api::ApiError;
use crate::api::extract::JsonPath;
use crate::api::types::{DeliveryView, EventRecord, EventView, OutcomeView};
use crate::config::live::LiveConfig;
use crate::delivery::Dispatcher;
use crate::model::id::EventId;
use crate::model::records::EventState;
use crate::plugin::Plugins;
use crate::routing::Router as EventRouter;
use crate::source::rejections::RecentRejections;
use crate::store::{Records, Store};
use crate::telemetry::{CONTENT_TYPE, Telemetry};

pub struct AdminState {
    pub store: Store,
    pub plugins: Arc<Plugins>,
    pub router: Arc<EventRouter>,
    pub dispatcher: Arc<Dispatcher>,
    pub rejections: Arc<RecentRejections>,
    pub telemetry: Arc<Telemetry>,
    /// The serving config; read it once per request.
    pub config: Arc<LiveConfig>,
    pub reloader: Arc<crate::reload::Reloader>,
    /// Set in cluster mode (the PostgreSQL store).
    pub cluster: Option<crate::store::pg::PgStore>,
    pub readiness: Arc<crate::readiness::Readiness>,
}

/// Every endpoint, as `(method, path)`. docs/admin-api.md documents exactly
/// these (a test compares them), and [`routes`] serves exactly these.
pub const ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/admin/events"),
    ("GET", "/admin/events/{id}"),
    ("POST", "/admin/events/{id}/replay"),
    ("POST", "/admin/events/replay"),
    ("GET", "/admin/deliveries"),
    ("GET", "/admin/deliveries/{id}"),
    ("POST", "/admin/deliveries/{id}/retry"),
    ("POST", "/admin/deliveries/retry"),
    ("GET", "/admin/targets"),
    ("GET", "/admin/targets/{name}"),
    ("POST", "/admin/targets/{name}/pause"),
    ("POST", "/admin/targets/{name}/resume"),
    ("POST", "/admin/targets/{name}/enable"),
    ("GET", "/admin/plugins"),
    ("PUT", "/admin/plugins/{name}"),
    ("POST", "/admin/plugins/{name}/trial"),
    ("GET", "/admin/plugins/{name}/kv"),
    ("GET", "/admin/plugins/{name}/kv/{key}"),
    ("DELETE", "/admin/plugins/{name}/kv/{key}"),
    ("GET", "/admin/sources"),
    ("GET", "/admin/cluster"),
    ("GET", "/admin/config"),
    ("POST", "/admin/config/reload"),
];

pub fn routes(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/admin/events", get(list::events))
        .route("/admin/events/replay", post(actions::replay_events))
        .route("/admin/events/{id}", get(show_event))
        .route("/admin/events/{id}/replay", post(actions::replay_event))
        .route("/admin/deliveries", get(list::deliveries))
        .route("/admin/deliveries/retry", post(actions::retry_deliveries))
        .route("/admin/deliveries/{id}", get(list::delivery))
        .route(
            "/admin/deliveries/{id}/retry",
            post(actions::retry_delivery),
        )
        .route("/admin/targets", get(actions::targets))
        .route("/admin/targets/{name}", get(actions::target))
        .route(
            "/admin/targets/{name}/{action}",
            post(actions::control_target),
        )
        .route("/admin/plugins", get(list_plugins))
        .route(
            "/admin/plugins/{name}",
            axum::routing::put(cluster::push_plugin).layer(axum::extract::DefaultBodyLimit::max(
                cluster::MAX_PLUGIN_BYTES,
            )),
        )
        .route(
            "/admin/plugins/{name}/trial",
            post(trial::trial).layer(axum::extract::DefaultBodyLimit::max(
                cluster::MAX_PLUGIN_BYTES,
            )),
        )
        .route("/admin/cluster", get(cluster::nodes))
        .route("/admin/plugins/{name}/kv", get(kv::list))
        .route(
            "/admin/plugins/{name}/kv/{key}",
            get(kv::get).delete(kv::delete),
        )
        .route("/admin/sources", get(list_sources))
        .route("/admin/config", get(config::show))
        .route("/admin/config/reload", post(config::reload))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let dashboard = crate::ui::routes(
        state.clone(),
        crate::ui::history::History::start(state.telemetry.clone()),
    );
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(protected)
        .with_state(state.clone())
        .merge(dashboard)
        .fallback(no_route)
        .layer(axum::middleware::from_fn_with_state(
            state,
            guard::refuse_browser_attacks,
        ))
}

async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        format!("no admin endpoint {}; see docs/admin-api.md", uri.path()),
    )
}

async fn list_plugins(State(state): State<Arc<AdminState>>) -> Json<Value> {
    let mut v = json!({
        "node": state.config.get().store.node_id(),
        "plugins": state.plugins.statuses(),
        "events_waiting": state.router.waiting_count(),
    });
    if let Some(nodes) = cluster::plugin_reports(&state).await {
        v["nodes"] = nodes;
    }
    Json(v)
}

/// Each source's settings (never its secrets), what it accepted and
/// rejected by reason, and the most recent rejections.
async fn list_sources(State(state): State<Arc<AdminState>>) -> Json<Value> {
    let recent = state.rejections.recent();
    let config = state.config.get();
    let sources: Vec<Value> = config
        .sources
        .iter()
        .map(|(name, s)| {
            json!({
                "name": name,
                "plugins": s.plugins,
                "targets": s.targets,
                "max_body": s.max_body,
                "max_decoded_body": s.max_decoded_body,
                "idempotency": s.idempotency.as_ref().map(|i| format!("{:?}", i.key)),
                "rate_limit": s.rate_limit.map(|(r, b)| json!({ "per_second": r, "burst": b })),
                "allow_ips": s.allow_ips.len(),
                "handshake": s.handshake.as_ref().map(|h| h.provider().as_str()),
                "counts": state.telemetry.source_counts(name),
                "recent_rejections": recent.iter().filter(|r| &r.source == name).take(20).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({ "sources": sources, "recent_rejections": recent }))
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let telemetry = state.telemetry.clone();
    let text = tokio::task::spawn_blocking(move || telemetry.render())
        .await
        .unwrap_or_default();
    ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], text)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness for a load balancer: 503 with the reason while the store
/// cannot take writes (in cluster mode: the database is unreachable).
async fn readyz(State(state): State<Arc<AdminState>>) -> (axum::http::StatusCode, Json<Value>) {
    let node = state.config.get().store.node_id();
    if state.readiness.is_ready() {
        (
            axum::http::StatusCode::OK,
            Json(json!({ "status": "ready", "node": node })),
        )
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "not_ready",
                "node": node,
                "reason": state.readiness.reason(),
            })),
        )
    }
}

/// Deliveries shown with an event per page, by default and at most: an
/// event may fan out to thousands, and a view of all of them at once was
/// tens of MB of JSON.
const EVENT_DELIVERIES_DEFAULT: usize = 100;
const EVENT_DELIVERIES_MAX: usize = 1000;

/// How many of an event's delivery ids its view carries in `outcome`.
const OUTCOME_IDS_SHOWN: usize = 100;

async fn show_event(
    State(state): State<Arc<AdminState>>,
    JsonPath(id): JsonPath<EventId>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<EventView>, ApiError> {
    let limit = match q.get("deliveries_limit").map(|v| v.parse::<usize>()) {
        None => EVENT_DELIVERIES_DEFAULT,
        Some(Ok(n)) if n >= 1 => n.min(EVENT_DELIVERIES_MAX),
        Some(_) => {
            return Err(ApiError::bad_request(
                "deliveries_limit: must be a positive number",
            ));
        }
    };
    let cursor = q.get("deliveries_cursor").cloned();
    event_view(&*state.store.records, &id, cursor.as_deref(), limit)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no event {id:?}")))
}

/// How often [`event_view`] reads an event whose outcome keeps changing
/// under it before it shows the last read (a replay loop cannot stall it).
const VIEW_READS: usize = 4;

/// The event with its outcome and one page of its deliveries with their
/// attempts (`deliveries_next_cursor` continues).
pub async fn event_view(
    store: &dyn Records,
    id: &str,
    deliveries_after: Option<&str>,
    deliveries_limit: usize,
) -> anyhow::Result<Option<EventView>> {
    let Some(event) = store.event(id).await? else {
        return Ok(None);
    };
    // The reads are not one snapshot, and either order of them races a
    // routing, which writes an outcome and its deliveries together: outcome
    // first can show a replay's delivered delivery under the failed outcome
    // it replaced; deliveries first can show a fresh outcome with none of
    // its deliveries. So the outcome is read on both sides of the
    // deliveries and the view is read again when it moved in between.
    let mut tries = 0;
    let (outcome, pending_reason, next_cursor, deliveries) = loop {
        let outcome = store.outcome(id).await?;
        let pending_reason = store.route_note(id).await?.filter(|n| !n.is_empty());
        let page = store
            .deliveries_of_event(id, deliveries_after, deliveries_limit)
            .await?;
        let mut deliveries = Vec::with_capacity(page.items.len());
        for d in page.items {
            let attempts = store.attempts(&d.id).await?;
            deliveries.push(DeliveryView::of(d, attempts));
        }
        tries += 1;
        if tries == VIEW_READS || store.outcome(id).await? == outcome {
            break (outcome, pending_reason, page.next_cursor, deliveries);
        }
    };
    let status = outcome
        .as_ref()
        .map_or(EventState::Pending, |o| o.status.into());
    Ok(Some(EventView {
        event: EventRecord::of(event),
        status,
        pending_reason,
        // The ids are in `deliveries`, a page at a time; here only a count
        // and the first few.
        outcome: outcome.map(|o| OutcomeView::of(o, OUTCOME_IDS_SHOWN)),
        deliveries,
        deliveries_next_cursor: next_cursor,
    }))
}

/// An event listing's query from query-style filters, as `GET
/// /admin/events` reads them (the dashboard's lists share it).
pub(crate) fn list_event_query(
    q: &HashMap<String, String>,
) -> Result<crate::store::EventQuery, ApiError> {
    list::event_query(q, 1000, 50)
}

/// A delivery listing's query, as `GET /admin/deliveries` reads it.
pub(crate) fn list_delivery_query(
    q: &HashMap<String, String>,
) -> Result<crate::store::DeliveryQuery, ApiError> {
    list::delivery_query(q, 1000, 50)
}

#[cfg(test)]
mod tests {
    use super::ENDPOINTS;

    use std::sync::Mutex;

    use async_trait::async_trait;

    use crate::model::records::{
        Attempt, Delivery, DeliveryStatus, Event, EventStatus, Origin, Outcome,
    };
    use crate::store::{DeliveryQuery, EventQuery, EventSummary, Page, Records};

    /// What an event's records hold at one moment: its outcome and its
    /// deliveries, which a routing writes together.
    #[derive(Clone)]
    struct Moment {
        outcome: Option<Outcome>,
        deliveries: Vec<Delivery>,
    }

    /// Records that change from `before` to `after` (one routing's commit)
    /// just before the read numbered `at` answers, so a view can be caught
    /// between any two of its reads.
    struct Flipping {
        before: Moment,
        after: Moment,
        at: usize,
        reads: Mutex<usize>,
    }

    impl Flipping {
        fn now(&self) -> Moment {
            let mut reads = self.reads.lock().unwrap();
            *reads += 1;
            if *reads >= self.at {
                self.after.clone()
            } else {
                self.before.clone()
            }
        }
    }

    #[async_trait]
    impl Records for Flipping {
        async fn event(&self, id: &str) -> anyhow::Result<Option<Event>> {
            Ok(Some(Event {
                id: id.into(),
                source: "s".into(),
                received_at: 1,
                method: "POST".into(),
                path: "/hooks/s".into(),
                query: String::new(),
                headers: vec![],
                body: b"{}".to_vec(),
                version: None,
                content_encoding: None,
                received_body: None,
            }))
        }
        async fn outcome(&self, _: &str) -> anyhow::Result<Option<Outcome>> {
            Ok(self.now().outcome)
        }
        async fn route_note(&self, _: &str) -> anyhow::Result<Option<String>> {
            let waiting = "waiting for plugin \"p\"".to_string();
            Ok(self.now().outcome.is_none().then_some(waiting))
        }
        async fn delivery(&self, _: &str) -> anyhow::Result<Option<Delivery>> {
            unreachable!("an event's view reads deliveries a page at a time")
        }
        async fn attempts(&self, _: &str) -> anyhow::Result<Vec<Attempt>> {
            self.now();
            Ok(vec![])
        }
        async fn deliveries_of_event(
            &self,
            _: &str,
            _: Option<&str>,
            _: usize,
        ) -> anyhow::Result<Page<Delivery>> {
            Ok(Page {
                items: self.now().deliveries,
                next_cursor: None,
            })
        }
        async fn list_events(&self, _: &EventQuery) -> anyhow::Result<Page<EventSummary>> {
            unreachable!("an event's view lists nothing")
        }
        async fn list_deliveries(&self, _: &DeliveryQuery) -> anyhow::Result<Page<Delivery>> {
            unreachable!("an event's view lists nothing")
        }
    }

    fn delivery(id: &str, status: DeliveryStatus) -> Delivery {
        Delivery {
            id: id.into(),
            event_id: "evt_1".into(),
            target: "t".into(),
            origin: Origin::Passthrough,
            headers: vec![],
            created_at: 1,
            status,
            attempts: 0,
            next_attempt_at: None,
            last_error: None,
            body: None,
            refused_headers: vec![],
        }
    }

    fn outcome(status: EventStatus, at: u64, deliveries: &[&Delivery]) -> Outcome {
        Outcome {
            status,
            routed_at: at,
            plugins: vec![],
            deliveries: deliveries.iter().map(|d| d.id.clone()).collect(),
        }
    }

    /// Whichever read a routing's commit lands before, the view shows the
    /// records of one moment: never an outcome beside deliveries of
    /// another. Two commits: the first routing (nothing, then an outcome
    /// and its delivery), and a replay of an event a plugin failed (the
    /// failed outcome, then a new outcome with a delivery the dispatcher
    /// already delivered).
    #[tokio::test]
    async fn an_events_view_never_mixes_two_routings() {
        let scheduled = delivery("msg_1", DeliveryStatus::Scheduled);
        let replayed = delivery("msg_2", DeliveryStatus::Delivered);
        let first_routing = (
            Moment {
                outcome: None,
                deliveries: vec![],
            },
            Moment {
                outcome: Some(outcome(EventStatus::Routed, 1, &[&scheduled])),
                deliveries: vec![scheduled.clone()],
            },
        );
        let replay = (
            Moment {
                outcome: Some(outcome(EventStatus::Failed, 1, &[])),
                deliveries: vec![],
            },
            Moment {
                outcome: Some(outcome(EventStatus::Routed, 2, &[&replayed])),
                deliveries: vec![replayed.clone()],
            },
        );
        for (name, (before, after)) in [("first routing", first_routing), ("replay", replay)] {
            for at in 1..=8 {
                let store = Flipping {
                    before: before.clone(),
                    after: after.clone(),
                    at,
                    reads: Mutex::new(0),
                };
                let view = super::event_view(&store, "evt_1", None, 10)
                    .await
                    .unwrap()
                    .unwrap();
                let shown: Vec<String> = view
                    .deliveries
                    .iter()
                    .map(|d| d.delivery.id.to_string())
                    .collect();
                let outcome = view.outcome.map(|o| o.outcome);
                let moment = if outcome == after.outcome {
                    &after
                } else {
                    assert_eq!(outcome, before.outcome, "{name}, commit at read {at}");
                    &before
                };
                let expected: Vec<String> =
                    moment.deliveries.iter().map(|d| d.id.to_string()).collect();
                assert_eq!(
                    shown, expected,
                    "{name}, commit at read {at}: the outcome of one moment beside the deliveries of another"
                );
                assert_eq!(
                    view.pending_reason.is_some(),
                    moment.outcome.is_none(),
                    "{name}, commit at read {at}"
                );
            }
        }
    }

    /// docs/admin-api.md documents every endpoint, and only those: its
    /// `### \`METHOD /path\`` headings must equal [`ENDPOINTS`].
    #[test]
    fn docs_match_routes() {
        let docs =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/admin-api.md"))
                .unwrap();
        let mut documented: Vec<String> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("### `"))
            .filter_map(|l| l.strip_suffix('`'))
            .map(str::to_string)
            .collect();
        let mut served: Vec<String> = ENDPOINTS.iter().map(|(m, p)| format!("{m} {p}")).collect();
        documented.sort();
        served.sort();
        assert_eq!(
            documented, served,
            "docs/admin-api.md and admin::ENDPOINTS differ"
        );
    }

    /// Every listed endpoint is served: none falls through to `no_route` or
    /// answers 405.
    #[tokio::test]
    async fn every_endpoint_is_routed() {
        // The whole router, in process (server::run), on ports picked now.
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::parse(
            &format!(
                "[server]\ndata_dir = \"{}\"\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
                 [plugins]\ndir = \"{}\"\n[targets.t]\nurl = \"http://example.invalid/\"\n",
                dir.path().join("data").display(),
                dir.path().join("plugins").display()
            ),
            std::path::Path::new("/"),
        )
        .unwrap();
        let listeners = crate::server::Listeners::bind(&config).await.unwrap();
        let addr = listeners.admin.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::server::run(config, listeners, async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::new();
        for (method, path) in ENDPOINTS {
            let path = path
                .replace("{id}", "nope")
                .replace("{name}", "t")
                .replace("{key}", "k");
            let url = format!("http://{addr}{path}");
            let r = match *method {
                "GET" => http.get(&url).send().await.unwrap(),
                "DELETE" => http.delete(&url).send().await.unwrap(),
                "PUT" => http
                    .put(&url)
                    .header("content-type", "application/wasm")
                    .body("not a component")
                    .send()
                    .await
                    .unwrap(),
                _ => http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body("{\"status\":\"failed\"}")
                    .send()
                    .await
                    .unwrap(),
            };
            let status = r.status().as_u16();
            let body = r.text().await.unwrap();
            assert!(
                status != 405 && !body.contains("no_route"),
                "{method} {path}: {status} {body}"
            );
        }

        // The metrics table in the docs lists exactly the families served,
        // counters by their samples' name (OpenMetrics names the family
        // without `_total`).
        let text = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut served: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| match l.split_once(' ') {
                Some((name, "counter")) => format!("{name}_total"),
                Some((name, _)) => name.to_string(),
                None => l.to_string(),
            })
            .collect();
        let docs =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/admin-api.md"))
                .unwrap();
        let mut documented: Vec<&str> = docs
            .lines()
            .filter_map(|l| l.strip_prefix("| `hookyard_"))
            .filter_map(|l| l.split('`').next())
            .collect();
        let mut served: Vec<String> = served
            .drain(..)
            .map(|n| n.trim_start_matches("hookyard_").to_string())
            .collect();
        assert!(!served.is_empty(), "no families in:\n{text}");
        let mut documented: Vec<String> = documented.drain(..).map(str::to_string).collect();
        served.sort();
        documented.sort();
        assert_eq!(
            served, documented,
            "docs/admin-api.md metrics table and /metrics differ"
        );
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
