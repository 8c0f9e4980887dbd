//! Wiring: open the store, load plugins, start routing and delivery, bind
//! the two listeners, and shut down cleanly on SIGTERM/SIGINT.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;

use crate::admin::{self, AdminState};
use crate::config::live::LiveConfig;
use crate::config::{Config, StoreConfig};
use crate::delivery::Dispatcher;
use crate::edge::{self, tls::Certificates};
use crate::plugin::Plugins;
use crate::readiness::Readiness;
use crate::reload::Reloader;
use crate::routing::Router;
use crate::source::rejections::RecentRejections;
use crate::source::{self, IngestState};
use crate::store::Upkeep;
use crate::store::pg::PgStore;
use crate::store::sled::SledStore;
use crate::telemetry::{PluginUp, TargetGauges, Telemetry};

/// The two listeners, bound before anything else starts, so a port that
/// is taken fails the start at once with the key at fault.
pub struct Listeners {
    pub public: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Listeners> {
        let public = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("server.listen: cannot listen on {}", config.server.listen))?;
        let admin = TcpListener::bind(config.server.admin_listen)
            .await
            .with_context(|| {
                format!(
                    "server.admin_listen: cannot listen on {}",
                    config.server.admin_listen
                )
            })?;
        Ok(Listeners { public, admin })
    }
}

/// Runs hookyard until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> Result<()> {
    let listeners = Listeners::bind(&config).await?;
    run(config, listeners, shutdown_signal()).await
}

/// Runs hookyard on `listeners` until `shutdown` completes, then stops as
/// SIGTERM does. Tests start the whole router in-process this way.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let live = LiveConfig::new(config);
    let config = live.get();
    let open_files = edge::nofile::raise();
    // Certificates first: a bad file stops the start before anything runs.
    let public_tls = config
        .server
        .tls
        .clone()
        .map(|f| Certificates::load(f, "server.tls_cert"))
        .transpose()?;
    let admin_tls = config
        .server
        .admin_tls
        .clone()
        .map(|f| Certificates::load(f, "server.admin_tls_cert"))
        .transpose()?;
    let (store, cluster) = match &config.store {
        StoreConfig::Embedded(engine) => (
            SledStore::open_with_reserve(
                &config.server.data_dir,
                config.server.durability,
                config.server.min_free_space,
                *engine,
            )?
            .into_store(),
            None,
        ),
        StoreConfig::Postgres { url, node_id } => {
            tracing::info!(node = %node_id, "cluster mode: connecting to PostgreSQL");
            let pg = PgStore::open(url, node_id).await?;
            (pg.clone().into_store(), Some(pg))
        }
    };
    let telemetry = Arc::new(Telemetry::new());

    let plugins = Arc::new(Plugins::new(
        live.clone(),
        Some(store.kv.clone()),
        Some(config.plugins.cache_dir.clone()),
        telemetry.clone(),
    )?);
    plugins.reconcile()?;
    plugins.warn_missing();
    crate::plugin::watcher::spawn(plugins.clone(), &config.plugins.dir)?;
    crate::plugin::idle::spawn(plugins.clone());

    let dispatcher = Dispatcher::new(config.clone(), &store, telemetry.clone()).await?;
    let router = Router::start(
        live.clone(),
        store.routing.clone(),
        plugins.clone(),
        dispatcher.clone(),
        telemetry.clone(),
    )?;
    dispatcher.start();

    let Listeners { public, admin } = listeners;
    let public_addr = public.local_addr()?;
    let admin_addr = admin.local_addr()?;
    if let Some(pg) = &cluster {
        crate::cluster::Node {
            store: pg.clone(),
            dispatcher: dispatcher.clone(),
            router: router.clone(),
            plugins: plugins.clone(),
            plugin_dir: config.plugins.dir.clone(),
            config: live.clone(),
            info: serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "public": format!("http://{public_addr}"),
                "admin": format!("http://{admin_addr}"),
                "pid": std::process::id(),
            }),
        }
        .start();
    }

    let rejections = Arc::new(RecentRejections::default());
    let ingest = Arc::new(IngestState::new(
        live.clone(),
        store.events.clone(),
        router.clone(),
        rejections.clone(),
        telemetry.clone(),
    ));
    let reloader = Reloader::new(
        live.clone(),
        plugins.clone(),
        dispatcher.clone(),
        ingest.clone(),
        telemetry.clone(),
    );
    reloader
        .on_sighup()
        .context("installing the SIGHUP handler")?;
    if config.server.watch_config {
        reloader.watch_file(std::time::Duration::from_secs(1));
    }
    let public_app = source::routes(ingest);
    tokio::spawn(crate::jobs::sweep_idempotency_keys(store.upkeep.clone()));
    tokio::spawn(crate::jobs::retention(
        store.upkeep.clone(),
        telemetry.clone(),
        dispatcher.clone(),
        config.server.retention,
        config.server.retention_sweep_every,
    ));
    scrape_from(&telemetry, &plugins, &router, &dispatcher, &store.upkeep);
    let readiness = Readiness::start(store.upkeep.clone());
    {
        let scrape = telemetry.scrape();
        let r = Arc::downgrade(&readiness);
        scrape.ready(move || r.upgrade().is_some_and(|r| r.is_ready()));
        let node = config.store.node_id();
        scrape.node(move || node.clone());
    }
    let admin_app = admin::routes(Arc::new(AdminState {
        store: store.clone(),
        plugins: plugins.clone(),
        router: router.clone(),
        dispatcher: dispatcher.clone(),
        rejections,
        telemetry,
        config: live.clone(),
        reloader,
        cluster: cluster.clone(),
        readiness: readiness.clone(),
    }));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let public_task = tokio::spawn(listen(
        edge::Listener {
            name: "public",
            socket: public,
            limits: config.server.limits,
            max_connections: edge::nofile::connection_cap(
                config.server.limits.max_connections,
                open_files,
                ADMIN_CONNECTIONS,
            ),
            tls: public_tls,
        },
        public_app,
        stop_rx.clone(),
        readiness.clone(),
    ));
    let admin_task = tokio::spawn(listen(
        edge::Listener {
            name: "admin",
            socket: admin,
            limits: config.server.limits,
            max_connections: ADMIN_CONNECTIONS,
            tls: admin_tls,
        },
        admin_app,
        stop_rx,
        readiness,
    ));

    let scheme = |tls: bool| if tls { "https" } else { "http" };
    let public_url = format!("{}://{public_addr}", scheme(config.server.tls.is_some()));
    let admin_url = format!(
        "{}://{admin_addr}",
        scheme(config.server.admin_tls.is_some())
    );
    tracing::info!(public = %public_url, admin = %admin_url, "hookyard is listening");
    // A machine-readable line for scripts and tests that start hookyard on
    // port 0 and need to know where it ended up.
    println!("hookyard listening public={public_url} admin={admin_url}");

    shutdown.await;
    let grace = config.server.shutdown_grace;
    tracing::info!(grace = ?grace, "shutting down: no longer accepting webhooks");
    let _ = stop_tx.send(true);
    // Everything below shares one grace period: the process is gone
    // within it (plus the final flush) whatever a client, a plugin or a
    // target does. What does not finish keeps its mark or schedule entry in
    // the store and runs after a restart.
    let deadline = tokio::time::Instant::now() + grace;
    // Requests already being answered finish (their events are stored and
    // acknowledged).
    if tokio::time::timeout_at(deadline, public_task)
        .await
        .is_err()
    {
        tracing::warn!("requests still open at the end of the grace period were cut off");
    }
    // Queued plugin calls are dropped; calls running finish.
    plugins.stop();
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let (routing, attempts) = tokio::join!(router.shutdown(left), dispatcher.shutdown(left));
    if routing > 0 {
        tracing::warn!(
            routing,
            "events still being routed after the grace period; they are routed again after a restart"
        );
    }
    if attempts > 0 {
        tracing::warn!(
            attempts,
            "attempts still in flight after the grace period; they stay scheduled and run after a restart"
        );
    }
    let _ = tokio::time::timeout(std::time::Duration::from_millis(200), admin_task).await;
    if let Err(e) = store.upkeep.flush().await {
        tracing::error!(error = format!("{e:#}"), "final flush failed");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Connections the admin listener holds at once: operators and a
/// dashboard, not the internet.
const ADMIN_CONNECTIONS: usize = 256;

/// Serves one listener; should it stop before shutdown is asked for, the
/// process reports itself not ready instead of running deaf.
async fn listen(
    listener: edge::Listener,
    app: axum::Router,
    stop: tokio::sync::watch::Receiver<bool>,
    readiness: Arc<Readiness>,
) {
    let name = listener.name;
    let result = edge::serve(listener, app, stop.clone()).await;
    if !*stop.borrow() {
        let why = match result {
            Ok(()) => format!("the {name} listener stopped"),
            Err(e) => format!("the {name} listener failed: {e:#}"),
        };
        tracing::error!(listener = name, reason = %why, "listener down");
        readiness.listener_down(why);
    }
}

/// Hands telemetry what `/metrics` reads from the components at scrape
/// time; telemetry cannot call them itself (it sits below them). The
/// closures hold weak references: the components hold the telemetry, and
/// it must not keep them (and the store's files) alive in turn.
fn scrape_from(
    telemetry: &Telemetry,
    plugins: &Arc<Plugins>,
    router: &Arc<Router>,
    dispatcher: &Arc<Dispatcher>,
    store: &Arc<dyn Upkeep>,
) {
    let scrape = telemetry.scrape();
    let p = Arc::downgrade(plugins);
    scrape.plugins(move || {
        let Some(p) = p.upgrade() else {
            return vec![];
        };
        p.statuses()
            .into_iter()
            .map(|s| PluginUp {
                up: s.serving.is_some(),
                plugin: s.name,
            })
            .collect()
    });
    let r = Arc::downgrade(router);
    scrape.events_waiting(move || r.upgrade().map_or(0, |r| r.waiting_count() as u64));
    let d = Arc::downgrade(dispatcher);
    scrape.targets(move || {
        let Some(d) = d.upgrade() else {
            return vec![];
        };
        d.targets()
            .iter()
            .map(|t| TargetGauges {
                target: t.name.clone(),
                scheduled: t.scheduled(),
                dead: t.dead(),
                in_flight: t.in_flight() as i64,
                state: t.state_label(),
            })
            .collect()
    });
    let s = Arc::downgrade(store);
    scrape.store_size(move || s.upgrade().map_or(0, |s| s.size_on_disk()));
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("can install a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
