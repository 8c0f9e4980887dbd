//! The schema, as numbered migrations applied at start. Several nodes may
//! start at once: each applies the missing ones inside a transaction that
//! holds one advisory lock, so exactly one of them does, and the others
//! find them applied.
//!
//! Times that come from hookyard's records (`received_at`, `due_at`,
//! `created_at`, idempotency expiry) are unix ms as bigint, as in the
//! records; leases are `timestamptz` on the database's clock.

use anyhow::{Context, Result};

/// Migration `n` is `MIGRATIONS[n - 1]`. Append only: a migration that
/// shipped is never edited.
const MIGRATIONS: &[&str] = &[
    // 1: the flow's tables.
    r#"
    CREATE TABLE events (
        id          text PRIMARY KEY,
        source      text NOT NULL,
        received_at bigint NOT NULL,
        meta        jsonb NOT NULL,
        body        bytea NOT NULL,
        to_route    boolean NOT NULL DEFAULT true,
        route_note  text,
        route_owner text,
        route_until timestamptz,
        outcome     jsonb
    );
    CREATE INDEX events_to_route ON events (id) WHERE to_route;
    CREATE INDEX events_by_source ON events (source, id);

    CREATE TABLE idempotency (
        source     text NOT NULL,
        key        text NOT NULL,
        event_id   text NOT NULL,
        expires_at bigint NOT NULL,
        PRIMARY KEY (source, key)
    );
    CREATE INDEX idempotency_expiry ON idempotency (expires_at);

    CREATE TABLE deliveries (
        id          text PRIMARY KEY,
        event_id    text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
        target      text NOT NULL,
        meta        jsonb NOT NULL,
        body        bytea,
        status      text NOT NULL,
        due_at      bigint,
        created_at  bigint NOT NULL,
        lease_owner text,
        lease_until timestamptz
    );
    -- The schedule: each target's due deliveries, in due order.
    CREATE INDEX deliveries_schedule ON deliveries (target, due_at, id) WHERE status = 'scheduled';
    CREATE INDEX deliveries_of_event ON deliveries (event_id, id);
    -- The dead-letter queue.
    CREATE INDEX deliveries_dead ON deliveries (id) WHERE status = 'dead';

    CREATE TABLE attempts (
        delivery_id text NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        n           integer NOT NULL,
        data        jsonb NOT NULL,
        PRIMARY KEY (delivery_id, n)
    );

    CREATE TABLE targets (
        name        text PRIMARY KEY,
        control     jsonb,
        owner       text,
        epoch       bigint NOT NULL DEFAULT 0,
        lease_until timestamptz
    );

    CREATE TABLE plugin_kv (
        plugin text NOT NULL,
        key    text NOT NULL,
        value  bytea NOT NULL,
        PRIMARY KEY (plugin, key)
    );
    CREATE TABLE plugin_kv_counts (
        plugin text PRIMARY KEY,
        n      bigint NOT NULL
    );

    CREATE TABLE plugins (
        name       text PRIMARY KEY,
        sha256     text NOT NULL,
        wasm       bytea NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE plugin_status (
        node   text NOT NULL,
        plugin text NOT NULL,
        sha256 text,
        error  text,
        at     timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (node, plugin)
    );

    CREATE TABLE nodes (
        id         text PRIMARY KEY,
        started_at timestamptz NOT NULL DEFAULT now(),
        heartbeat  timestamptz NOT NULL DEFAULT now(),
        info       jsonb NOT NULL DEFAULT '{}'
    );
    "#,
    // 2: the body as received, for events that arrived with a
    // Content-Encoding (`body` holds the decoded one); NULL otherwise, so
    // the common case stores its body once.
    r#"
    ALTER TABLE events ADD COLUMN received_body bytea;
    "#,
    // 3: ids, names and keys compare byte by byte. They are ASCII ids
    // ordered by time, names and plugin keys, which sled (and every cursor
    // hookyard hands out) orders by bytes; under a database's linguistic
    // collation (en_US.UTF-8, or even C.UTF-8) every index probe and sort
    // went through strcoll, a few per cent of the database's CPU in the
    // cluster benchmark, and could order mixed-case names and keys unlike
    // the sled backend. Rebuilds the indexes on these columns.
    r#"
    ALTER TABLE events ALTER COLUMN id TYPE text COLLATE "C",
                       ALTER COLUMN source TYPE text COLLATE "C";
    ALTER TABLE idempotency ALTER COLUMN source TYPE text COLLATE "C",
                            ALTER COLUMN key TYPE text COLLATE "C",
                            ALTER COLUMN event_id TYPE text COLLATE "C";
    ALTER TABLE deliveries ALTER COLUMN id TYPE text COLLATE "C",
                           ALTER COLUMN event_id TYPE text COLLATE "C",
                           ALTER COLUMN target TYPE text COLLATE "C";
    ALTER TABLE attempts ALTER COLUMN delivery_id TYPE text COLLATE "C";
    ALTER TABLE targets ALTER COLUMN name TYPE text COLLATE "C";
    ALTER TABLE plugin_kv ALTER COLUMN plugin TYPE text COLLATE "C",
                          ALTER COLUMN key TYPE text COLLATE "C";
    ALTER TABLE plugin_kv_counts ALTER COLUMN plugin TYPE text COLLATE "C";
    ALTER TABLE plugins ALTER COLUMN name TYPE text COLLATE "C";
    ALTER TABLE plugin_status ALTER COLUMN node TYPE text COLLATE "C",
                              ALTER COLUMN plugin TYPE text COLLATE "C";
    ALTER TABLE nodes ALTER COLUMN id TYPE text COLLATE "C";
    "#,
    // 4: no foreign keys from deliveries to events and attempts to
    // deliveries. Each was checked per inserted row by a trigger running
    // its own query (and locking the parent row), although a delivery is
    // only ever inserted in the transaction that records its event's
    // outcome, and an attempt in the one that updates its delivery under
    // the node's lease. The retention sweep, the only place rows are
    // deleted, deletes the three tables' rows itself.
    r#"
    ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_event_id_fkey;
    ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_delivery_id_fkey;
    "#,
];

/// An arbitrary constant: the advisory lock migrations take.
const MIGRATION_LOCK: i64 = 0x686f6f6b79617264; // "hookyard"

/// Applies the migrations this database lacks.
pub async fn migrate(client: &mut tokio_postgres::Client) -> Result<()> {
    migrate_to(client, MIGRATIONS.len()).await
}

/// Applies the migrations this database lacks up to version `upto`: the
/// upgrade test builds a database as an earlier hookyard left it.
#[doc(hidden)]
pub async fn migrate_to(client: &mut tokio_postgres::Client, upto: usize) -> Result<()> {
    let tx = client
        .transaction()
        .await
        .context("starting the migration")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("taking the migration lock")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS hookyard_migrations (
            version    integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let row = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM hookyard_migrations",
            &[],
        )
        .await?;
    let have: i32 = row.get(0);
    if have as usize > MIGRATIONS.len() {
        anyhow::bail!(
            "the database's schema (version {have}) is newer than this hookyard's ({}): upgrade this node",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().take(upto).skip(have as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("applying schema migration {version}"))?;
        tx.execute(
            "INSERT INTO hookyard_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(version, "applied a schema migration");
    }
    tx.commit().await.context("committing the migrations")?;
    Ok(())
}
