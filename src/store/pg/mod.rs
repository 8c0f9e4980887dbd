//! The PostgreSQL backend: the storage seam for cluster mode, where several
//! hookyard processes ("nodes") share one database and any of them may die.
//!
//! Every multi-record change of the seam is one transaction (an event and
//! its mark; an outcome, its deliveries and the plugins' KV writes with
//! their checks; an attempt and the delivery's move), so a 202 follows a
//! commit and a node killed mid-change leaves all of it or none.
//!
//! Work that any node may do is *claimed* with a lease (owner, until) using
//! `FOR UPDATE SKIP LOCKED`: unrouted events (the node that accepts an
//! event claims it at once) and due deliveries. A lease that runs out is
//! taken over by another node, and the late node's result is *fenced*: an
//! outcome or an attempt is only recorded while the recording node still
//! holds the claim, so nothing is recorded twice. Leases run on the
//! database's clock (`now()`), so nodes' clocks do not have to agree.
//!
//! The layout is in `schema.rs`; the cluster side (nodes, target owners,
//! notifications, plugins) in `cluster.rs`.

mod batch;
mod cluster;
mod events;
mod kv;
mod listen;
mod notify;
mod queue;
mod reads;
mod records;
pub mod schema;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::broadcast;
use tokio_postgres::NoTls;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

pub use cluster::{HEARTBEAT_EVERY, NodeInfo, PluginBlob, PluginReport};
pub use listen::Wake;

/// How long the node that accepted (or replayed) an event holds it before
/// another node may route it: long enough for a busy queue, short enough
/// that a dead node's events move on within a minute.
pub const ROUTE_LEASE: Duration = Duration::from_secs(60);

/// Connections per node: routing, delivery and ingestion run concurrently,
/// each transaction holding one for a few milliseconds.
const POOL_SIZE: usize = 16;

/// Set on every pooled connection. The statements are prepared once per
/// connection and run for its lifetime; by default PostgreSQL switches a
/// prepared statement to a generic plan after five runs, planned against
/// the table sizes of that moment. On a new database the tables are nearly
/// empty then, so the generic plan of a batched `UPDATE ... FROM unnest(..)`
/// or an `= ANY($1)` read is a sequential scan, and it stays one while the
/// table grows to millions of rows (until an autovacuum analyze happens to
/// invalidate it): measured 10-15 ms per batch after 30 000 events, and a
/// different statement stuck each run. A custom plan per run sees the
/// array's length and the table's current size and always takes the
/// primary key; planning these statements costs far less than one scan.
const CONNECTION_SETTINGS: &str = "SET plan_cache_mode = force_custom_plan";

/// The PostgreSQL store of one node.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    node: String,
    /// The runtime plugin threads block on for their KV reads.
    runtime: tokio::runtime::Handle,
    wakes: broadcast::Sender<Wake>,
    /// The database's size, refreshed in the background (a scrape must not
    /// wait for the database).
    size: AtomicU64,
    /// Targets this node owns, as of its last renewal.
    owned: OwnedSet,
    /// The grouped writers of the hot path (see `batch.rs`).
    accepts: batch::Batcher<events::Accepts>,
    outcomes: batch::Batcher<events::Outcomes>,
    attempts: batch::Batcher<queue::Attempts>,
    /// Wakes other nodes after outcomes that put work on their targets.
    notifier: notify::Notifier,
    event_reads: batch::Batcher<reads::ById<crate::model::records::Event>>,
    delivery_reads: batch::Batcher<reads::ById<crate::model::records::Delivery>>,
    attempt_reads: batch::Batcher<
        reads::ById<(
            crate::model::records::Delivery,
            Option<crate::model::records::Event>,
        )>,
    >,
}

/// The targets a node owns, shared with the writers that notify the others
/// and that hand new deliveries of those targets straight to this node.
type OwnedSet = Arc<std::sync::Mutex<OwnedTargets>>;

/// The targets a node owns and the lease it holds them under, as of its
/// last renewal.
#[derive(Default)]
struct OwnedTargets {
    names: std::collections::HashSet<String>,
    /// A delivery routed for one of `names` is claimed for this node for
    /// this long as it is inserted (see `events::insert_deliveries`).
    lease: Duration,
}

impl PgStore {
    /// Connects, applies the schema's migrations (once, whatever the number
    /// of nodes starting at the same time) and starts listening for the
    /// other nodes' notifications. `url` is a libpq URL or key=value string.
    pub async fn open(url: &str, node: &str) -> Result<PgStore> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow!("store.url: not a PostgreSQL connection string ({e})"))?;
        let tls = Tls::for_config(&config)?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Tls::Plain => Manager::from_config(config.clone(), NoTls, manager_config),
            Tls::Rustls(t) => Manager::from_config(config.clone(), t.clone(), manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(Duration::from_secs(10)))
            .create_timeout(Some(Duration::from_secs(5)))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .post_create(Hook::async_fn(|client, _| {
                Box::pin(async move {
                    client
                        .batch_execute(CONNECTION_SETTINGS)
                        .await
                        .map_err(HookError::Backend)
                })
            }))
            .build()
            .context("creating the PostgreSQL connection pool")?;
        {
            let mut client = pool
                .get()
                .await
                .map_err(|e| anyhow!("cannot connect to PostgreSQL: {e}"))?;
            schema::migrate(&mut client).await?;
        }
        let (wakes, _) = broadcast::channel(1024);
        let owned = OwnedSet::default();
        let node = node.to_string();
        let accepts = batch::Batcher::start(
            pool.clone(),
            Arc::new(events::Accepts { node: node.clone() }),
        );
        let (outcomes, attempts) = batch::start_together(
            pool.clone(),
            Arc::new(events::Outcomes {
                node: node.clone(),
                owned: owned.clone(),
            }),
            Arc::new(queue::Attempts { node: node.clone() }),
        );
        let store = PgStore {
            inner: Arc::new(Inner {
                accepts,
                outcomes,
                attempts,
                notifier: notify::Notifier::start(pool.clone()),
                event_reads: batch::Batcher::start(pool.clone(), Arc::new(reads::events())),
                delivery_reads: batch::Batcher::start(pool.clone(), Arc::new(reads::deliveries())),
                attempt_reads: batch::Batcher::start(
                    pool.clone(),
                    Arc::new(reads::deliveries_with_events()),
                ),
                pool,
                node,
                runtime: tokio::runtime::Handle::current(),
                wakes: wakes.clone(),
                size: AtomicU64::new(0),
                owned,
            }),
        };
        listen::spawn(config, tls, wakes);
        tokio::spawn(refresh_size(Arc::downgrade(&store.inner)));
        Ok(store)
    }

    /// Every concern of the seam, served by this store.
    pub fn into_store(self) -> super::Store {
        super::Store::from_backend(Arc::new(self))
    }

    /// This node's id, as it appears in leases, logs and the admin API.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Notifications from the other nodes (and this one's own).
    pub fn wakes(&self) -> broadcast::Receiver<Wake> {
        self.inner.wakes.subscribe()
    }

    /// An event with its body: routing, delivery and the admin API all
    /// read it the same way.
    async fn load_event(&self, id: &str) -> Result<Option<crate::model::records::Event>> {
        self.inner.event_reads.submit(id.to_string()).await
    }

    /// A delivery with its own body, if it has one.
    async fn load_delivery(&self, id: &str) -> Result<Option<crate::model::records::Delivery>> {
        self.inner.delivery_reads.submit(id.to_string()).await
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        connection(&self.inner.pool).await
    }
}

/// A pooled connection, or the error every caller reports when there is
/// none (ingestion answers 503 with it).
async fn connection(pool: &Pool) -> Result<deadpool_postgres::Client> {
    pool.get()
        .await
        .map_err(|e| anyhow!("the database is unavailable: {e}"))
}

/// How a node talks to the database: TLS when the URL asks for it
/// (`sslmode=require`), verified against the system's CA certificates;
/// plain TCP otherwise (`prefer`, the default, would try TLS against
/// servers with self-signed certificates, such as a stock Debian install,
/// and fail).
#[derive(Clone)]
pub(crate) enum Tls {
    Plain,
    Rustls(MakeRustlsConnect),
}

impl Tls {
    fn for_config(config: &tokio_postgres::Config) -> Result<Tls> {
        if config.get_ssl_mode() != SslMode::Require {
            return Ok(Tls::Plain);
        }
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(anyhow!(
                "store.url asks for TLS (sslmode=require) but no CA certificates were found on this system (install ca-certificates)"
            ));
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS for the database")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls::Rustls(MakeRustlsConnect::new(client)))
    }
}

async fn refresh_size(inner: std::sync::Weak<Inner>) {
    loop {
        let Some(i) = inner.upgrade() else { return };
        if let Ok(c) = i.pool.get().await
            && let Ok(row) = c
                .query_one("SELECT pg_database_size(current_database())", &[])
                .await
        {
            let n: i64 = row.get(0);
            i.size.store(n.max(0) as u64, Ordering::Relaxed);
        }
        drop(i);
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}

/// A u64 (ms, counts) as PostgreSQL's bigint.
fn big(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// A bigint back.
fn small(n: i64) -> u64 {
    n.max(0) as u64
}
