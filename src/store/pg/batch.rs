//! Group commit on PostgreSQL: the hot writes (accepting an event,
//! recording a routing outcome, recording an attempt) and the hot point
//! reads (an event or a delivery by id) are queued, and a writer task sends
//! everything that queued while it was busy as multi-row statements, one
//! per kind, in one transaction (or none, for one kind alone: see
//! `Batched::ONE_STATEMENT`). Outcomes and attempts share one writer and,
//! when both have queued, commit together; accepts have their own, as each
//! read kind does. One writer, not several per kind: while it commits
//! (waiting for the WAL flush) the next batch fills, so batches are larger
//! and the database runs fewer statements and commits per event. Outcomes
//! and attempts together: with a node's load split over three nodes each
//! kind's batches were a third as large, and the commits cost the database
//! more than their rows (three nodes: 0.8-0.9x the database's CPU per
//! event, 1.08-1.16x delivered/s). Accepts apart: a 202 waits for its
//! commit, and an accept's commit holding a batch of attempts made
//! ingestion slower (measured: docs/benchmarks.md, "Custom plans, no
//! foreign keys, outcomes and attempts in one commit").
//!
//! Why: one transaction per event costs a commit (a WAL flush), a round
//! trip and a statement start per row, and at a few thousand events a
//! second the database spends its CPU on that overhead, not on the rows.
//! Batching turns the per-event cost into a fraction of a statement while
//! each caller still gets its own answer after the commit that holds its
//! write, so "a 202 only after the commit" and fencing are unchanged. The
//! writes of one commit take row locks table by table in one order
//! (events, then deliveries), as every other transaction does.
//!
//! A commit that the database refuses (a constraint, a deadlock with
//! another node) is written again kind by kind, and a kind's batch that is
//! refused again item by item, so one bad item fails alone. A commit that
//! fails because the database is unreachable fails every caller in it with
//! that error (each caller answers 503 or retries, as for a single write).

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::{mpsc, oneshot};

use super::connection;

/// Most items in one transaction: large enough that a full queue drains in
/// a few commits, small enough that one statement's arrays stay modest.
const MAX_BATCH: usize = 256;

/// The shared writer, finding fewer than `LINGER_BELOW` items, waits
/// `LINGER` for more before it writes. Outcomes and attempts answer no
/// sender, so the wait costs a delivery at most a millisecond; with three
/// nodes each node's batches were a third as large, and the wait gave
/// fewer commits (0.4 to 0.3 per delivered event), 0.85x the database's
/// CPU per event and 1.05-1.09x delivered/s (docs/benchmarks.md). Accepts
/// do not wait: a sender waits for each of their commits.
const LINGER_BELOW: usize = 32;
const LINGER: std::time::Duration = std::time::Duration::from_millis(1);

/// With only outcomes queued, the shared writer keeps waiting, a `LINGER`
/// at a time, while it holds fewer than `LINGER_ALONE_BELOW`: sleeps of
/// `LINGER_ALONE` in all, counting the first `LINGER` whether or not it
/// was slept (each timer may run past its millisecond). On a cluster the nodes that own no busy target
/// write outcomes and no attempts, each for a third of the events, so
/// their batches were small (three nodes: 0.04-0.05 outcome statements
/// per event, one node 0.02). Nothing holds a delivery slot while
/// outcomes wait (an attempt queued ends the wait within a `LINGER`), and
/// a routing outcome's few ms reach no sender. Below the router's 64
/// events in flight, so a batch never waits for events that wait for it.
/// Three nodes: the database's CPU per event 0.90-0.96x in four paired
/// runs, delivered/s within noise (docs/benchmarks.md).
const LINGER_ALONE_BELOW: usize = 48;
const LINGER_ALONE: std::time::Duration = std::time::Duration::from_millis(4);

/// Times a single-kind writer yields before taking what queued.
const YIELDS: usize = 4;

/// Callers waiting to be written, per kind; past it, callers wait for room.
const QUEUE: usize = 4096;

/// One kind of write that can be grouped.
#[async_trait]
pub(super) trait Batched: Send + Sync + 'static {
    type Item: Send + Sync + 'static;
    type Done: Send + 'static;
    /// The row an item changes: two items with the same key never share a
    /// batch (the second waits for the next), so each statement touches a
    /// row once.
    fn key(item: &Self::Item) -> &str;
    /// Whether `apply` runs a single statement. Such a batch, written
    /// alone, is sent without BEGIN and COMMIT: PostgreSQL runs the
    /// statement as its own transaction and answers after its commit, so
    /// the caller's guarantee is the same and the database is spared two
    /// statements and two round trips per batch (with three nodes, nearly
    /// half of all the statements it ran).
    const ONE_STATEMENT: bool = false;
    /// Writes `items` through `c` (a transaction, unless `ONE_STATEMENT`)
    /// and says, for each in order, what happened to it.
    async fn apply<C: GenericClient>(&self, c: &C, items: &[Self::Item])
    -> Result<Vec<Self::Done>>;
}

struct Job<B: Batched> {
    item: B::Item,
    reply: oneshot::Sender<Result<B::Done>>,
}

/// The queue of one kind of write and its writer task.
pub(super) struct Batcher<B: Batched> {
    jobs: mpsc::Sender<Job<B>>,
    kind: Arc<B>,
}

impl<B: Batched> Batcher<B> {
    /// Starts the writer; it stops when the batcher is dropped.
    pub fn start(pool: Pool, kind: Arc<B>) -> Batcher<B> {
        let (jobs, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(pool, kind.clone(), rx));
        Batcher { jobs, kind }
    }

    /// A queue whose writer is started elsewhere (`start_together`).
    fn queue(kind: Arc<B>) -> (Batcher<B>, mpsc::Receiver<Job<B>>) {
        let (jobs, rx) = mpsc::channel(QUEUE);
        (Batcher { jobs, kind }, rx)
    }

    /// The write itself, for a caller that must run it inside a
    /// transaction of its own (with other statements around it).
    pub fn kind(&self) -> &B {
        &self.kind
    }

    /// Writes `item` with whatever else is queued; returns after the
    /// commit that holds it.
    pub async fn submit(&self, item: B::Item) -> Result<B::Done> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { item, reply })
            .await
            .map_err(|_| anyhow!("the store is shutting down"))?;
        answer
            .await
            .map_err(|_| anyhow!("the store's writer stopped"))?
    }
}

async fn writer<B: Batched>(pool: Pool, kind: Arc<B>, mut rx: mpsc::Receiver<Job<B>>) {
    loop {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        if rx.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return;
        }
        // Let the tasks that are about to submit (requests whose bodies
        // are being read) run first: a few more items per commit for the
        // cost of a few polls (accepts' commits per delivered event with
        // three nodes 0.3-0.4 -> 0.2, the database's CPU per event 0.9x).
        for _ in 0..YIELDS {
            tokio::task::yield_now().await;
        }
        take_ready(&mut rx, &mut jobs);
        drain_alone(&pool, kind.as_ref(), jobs).await;
    }
}

/// Starts one writer for two kinds of write, each batch of which commits
/// with whatever the other queued (see the module doc); it stops when the
/// batchers are dropped. `A`'s rows are written first, then `B`'s: the
/// order in which a commit takes its row locks. `A` alone waits longer
/// for a fuller batch (`LINGER_ALONE`): `B`'s callers hold delivery slots.
pub(super) fn start_together<A: Batched, B: Batched>(
    pool: Pool,
    a: Arc<A>,
    b: Arc<B>,
) -> (Batcher<A>, Batcher<B>) {
    let (qa, ra) = Batcher::queue(a);
    let (qb, rb) = Batcher::queue(b);
    let kinds = (qa.kind.clone(), qb.kind.clone());
    tokio::spawn(writer_together(pool, kinds, (ra, rb)));
    (qa, qb)
}

async fn writer_together<A: Batched, B: Batched>(
    pool: Pool,
    kinds: (Arc<A>, Arc<B>),
    mut queues: (mpsc::Receiver<Job<A>>, mpsc::Receiver<Job<B>>),
) {
    loop {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        // Wait for either kind; then take what the other holds already.
        let got = tokio::select! {
            n = queues.0.recv_many(&mut a, MAX_BATCH) => n,
            n = queues.1.recv_many(&mut b, MAX_BATCH) => n,
        };
        if got == 0 {
            return; // a queue closed: the store is gone
        }
        if got < LINGER_BELOW {
            tokio::time::sleep(LINGER).await;
        }
        take_ready(&mut queues.0, &mut a);
        take_ready(&mut queues.1, &mut b);
        // Only `A`s (outcomes; see `LINGER_ALONE`): wait for more.
        let mut waited = LINGER;
        while b.is_empty() && a.len() < LINGER_ALONE_BELOW && waited < LINGER_ALONE {
            tokio::time::sleep(LINGER).await;
            waited += LINGER;
            take_ready(&mut queues.0, &mut a);
            take_ready(&mut queues.1, &mut b);
        }
        let (a, a_later) = split_on_repeats::<A>(a);
        let (b, b_later) = split_on_repeats::<B>(b);
        let (a, b) = (Taken::new(a), Taken::new(b));
        if a.items.is_empty() || b.items.is_empty() {
            // One kind only: written alone, a one-statement kind needs no
            // transaction around it.
            run(&pool, kinds.0.as_ref(), a).await;
            run(&pool, kinds.1.as_ref(), b).await;
        } else {
            together(&pool, (kinds.0.as_ref(), kinds.1.as_ref()), a, b).await;
        }
        // Repeats of a key (rare): after the commit that held the first.
        drain_alone(&pool, kinds.0.as_ref(), a_later).await;
        drain_alone(&pool, kinds.1.as_ref(), b_later).await;
    }
}

/// Both kinds' batches in one transaction; refused, kind by kind.
async fn together<A: Batched, B: Batched>(pool: &Pool, kinds: (&A, &B), a: Taken<A>, b: Taken<B>) {
    let written = async {
        let mut client = connection(pool).await?;
        let tx = client.transaction().await?;
        let done = (
            apply_all(kinds.0, &tx, &a.items).await?,
            apply_all(kinds.1, &tx, &b.items).await?,
        );
        tx.commit().await?;
        Ok::<_, anyhow::Error>(done)
    };
    match written.await {
        Ok((da, db)) => {
            a.answer(da);
            b.answer(db);
        }
        Err(e) if refused_by_database(&e) => {
            tracing::debug!(error = %format!("{e:#}"),
                "a grouped commit was refused; writing it kind by kind");
            run(pool, kinds.0, a).await;
            run(pool, kinds.1, b).await;
        }
        Err(e) => {
            let text = format!("{e:#}");
            a.fail(&text);
            b.fail(&text);
        }
    }
}

/// Adds what `rx` holds right now to `jobs`, up to a batch.
fn take_ready<B: Batched>(rx: &mut mpsc::Receiver<Job<B>>, jobs: &mut Vec<Job<B>>) {
    while jobs.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
}

/// Writes `jobs` in transactions of their own, splitting on repeats.
async fn drain_alone<B: Batched>(pool: &Pool, kind: &B, mut jobs: Vec<Job<B>>) {
    while !jobs.is_empty() {
        let (now, later) = split_on_repeats::<B>(jobs);
        run(pool, kind, Taken::new(now)).await;
        jobs = later;
    }
}

/// One kind's share of a grouped commit: the items, and who waits for each.
struct Taken<B: Batched> {
    items: Vec<B::Item>,
    replies: Vec<oneshot::Sender<Result<B::Done>>>,
}

impl<B: Batched> Taken<B> {
    fn new(jobs: Vec<Job<B>>) -> Self {
        let (items, replies) = jobs.into_iter().map(|j| (j.item, j.reply)).unzip();
        Taken { items, replies }
    }

    fn answer(self, done: Vec<B::Done>) {
        for (reply, d) in self.replies.into_iter().zip(done) {
            let _ = reply.send(Ok(d));
        }
    }

    fn fail(self, text: &str) {
        for reply in self.replies {
            let _ = reply.send(Err(anyhow!("{text}")));
        }
    }
}

/// The jobs up to each key's first occurrence, and the repeats after.
fn split_on_repeats<B: Batched>(jobs: Vec<Job<B>>) -> (Vec<Job<B>>, Vec<Job<B>>) {
    let repeat: Vec<bool> = {
        let mut seen = HashSet::with_capacity(jobs.len());
        jobs.iter().map(|j| !seen.insert(B::key(&j.item))).collect()
    };
    let (later, now): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .zip(repeat)
        .partition(|(_, repeat)| *repeat);
    (
        now.into_iter().map(|(j, _)| j).collect(),
        later.into_iter().map(|(j, _)| j).collect(),
    )
}

async fn run<B: Batched>(pool: &Pool, kind: &B, taken: Taken<B>) {
    if taken.items.is_empty() {
        return;
    }
    match transaction(pool, kind, &taken.items).await {
        Ok(done) => taken.answer(done),
        Err(e) if taken.items.len() > 1 && refused_by_database(&e) => {
            tracing::debug!(error = %format!("{e:#}"), n = taken.items.len(),
                "a grouped write was refused; writing its items one by one");
            for (item, reply) in taken.items.iter().zip(taken.replies) {
                let one = transaction(pool, kind, std::slice::from_ref(item))
                    .await
                    .and_then(|mut d| d.pop().ok_or_else(|| anyhow!("no answer for the write")));
                let _ = reply.send(one);
            }
        }
        Err(e) => taken.fail(&format!("{e:#}")),
    }
}

async fn transaction<B: Batched>(pool: &Pool, kind: &B, items: &[B::Item]) -> Result<Vec<B::Done>> {
    let mut client = connection(pool).await?;
    if B::ONE_STATEMENT {
        return apply_all(kind, &client, items).await;
    }
    let tx = client.transaction().await?;
    let done = apply_all(kind, &tx, items).await?;
    tx.commit().await?;
    Ok(done)
}

/// `kind.apply`, held to answering every item (none asked, none run).
async fn apply_all<B: Batched, C: GenericClient>(
    kind: &B,
    c: &C,
    items: &[B::Item],
) -> Result<Vec<B::Done>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let done = kind.apply(c, items).await?;
    if done.len() != items.len() {
        return Err(anyhow!(
            "a grouped write answered {} of {} items",
            done.len(),
            items.len()
        ));
    }
    Ok(done)
}

/// Whether the database answered with an error about the statement (as
/// opposed to being unreachable), so that writing the items one by one
/// can tell which one it was about.
fn refused_by_database(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<tokio_postgres::Error>()
            .is_some_and(|p| p.as_db_error().is_some())
    })
}
