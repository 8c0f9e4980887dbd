//! Group commit on PostgreSQL: the hot writes (accepting an event,
//! recording a routing outcome, recording an attempt) and the hot point
//! reads (an event or a delivery by id) are queued, and one task per kind
//! sends everything that queued while it was busy as one transaction with
//! multi-row statements. One task, not several: while it commits (waiting
//! for the WAL flush) the next batch fills, so under load batches are
//! about twice as large as with two writers and the database runs half the
//! statements per event (measured: docs/benchmarks.md, "One writer per
//! kind").
//!
//! Why: one transaction per event costs a commit (a WAL flush), a round
//! trip and a statement start per row, and at a few thousand events a
//! second the database spends its CPU on that overhead, not on the rows.
//! Batching turns the per-event cost into a fraction of a statement while
//! each caller still gets its own answer after the commit that holds its
//! write, so "a 202 only after the commit" and fencing are unchanged.
//!
//! A batch that the database refuses (a constraint, a deadlock with another
//! node) is written again one item per transaction, so one bad item fails
//! alone. A batch that fails because the database is unreachable fails
//! every caller in it with that error (each caller answers 503 or retries,
//! as for a single write).

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Result, anyhow};
use async_trait::async_trait;
use deadpool_postgres::{Pool, Transaction};
use tokio::sync::{mpsc, oneshot};

/// Most items in one transaction: large enough that a full queue drains in
/// a few commits, small enough that one statement's arrays stay modest.
const MAX_BATCH: usize = 256;

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
    /// Writes `items` inside `tx` and says, for each in order, what
    /// happened to it.
    async fn apply(&self, tx: &Transaction<'_>, items: &[Self::Item]) -> Result<Vec<Self::Done>>;
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
        while !jobs.is_empty() {
            let (now, later) = split_on_repeats::<B>(jobs);
            run(&pool, kind.as_ref(), now).await;
            jobs = later;
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

async fn run<B: Batched>(pool: &Pool, kind: &B, jobs: Vec<Job<B>>) {
    let (items, replies): (Vec<B::Item>, Vec<_>) =
        jobs.into_iter().map(|j| (j.item, j.reply)).unzip();
    match transaction(pool, kind, &items).await {
        Ok(done) => {
            for (reply, d) in replies.into_iter().zip(done) {
                let _ = reply.send(Ok(d));
            }
        }
        Err(e) if items.len() > 1 && refused_by_database(&e) => {
            tracing::debug!(error = %format!("{e:#}"), n = items.len(),
                "a grouped write was refused; writing its items one by one");
            for (item, reply) in items.iter().zip(replies) {
                let one = transaction(pool, kind, std::slice::from_ref(item))
                    .await
                    .and_then(|mut d| d.pop().ok_or_else(|| anyhow!("no answer for the write")));
                let _ = reply.send(one);
            }
        }
        Err(e) => {
            let text = format!("{e:#}");
            for reply in replies {
                let _ = reply.send(Err(anyhow!("{text}")));
            }
        }
    }
}

async fn transaction<B: Batched>(pool: &Pool, kind: &B, items: &[B::Item]) -> Result<Vec<B::Done>> {
    let mut client = pool
        .get()
        .await
        .map_err(|e| anyhow!("the database is unavailable: {e}"))?;
    let tx = client.transaction().await?;
    let done = kind.apply(&tx, items).await?;
    if done.len() != items.len() {
        return Err(anyhow!(
            "a grouped write answered {} of {} items",
            done.len(),
            items.len()
        ));
    }
    tx.commit().await?;
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
