//! Wake-ups of the nodes that own the targets a routing outcome put work
//! on, sent after that outcome's commit in a transaction of their own.
//!
//! Why not inside the outcome's statement, as before: PostgreSQL orders
//! the commits of notifying transactions on one lock, held through the
//! commit's WAL flush, so outcome commits that notified could not share a
//! flush with each other (with three nodes, sampling `pg_stat_activity`
//! found outcome statements waiting on that lock, `Lock:object`, nearly as
//! often as running). A transaction that only notifies writes no data and
//! waits for no flush (0.08 ms against 0.25 ms for a one-row insert here),
//! so the lock is held for moments. The wake-up still follows the commit:
//! a caller hands its targets over only once its outcome is committed.
//!
//! Wake-ups queued while one is being sent go out together, as one
//! notification (split only past the payload's size limit). They are not
//! durable and need not be: a full queue or a failed send loses a wake-up,
//! never work (the owner's dispatcher polls its targets every second, and
//! a node whose listening connection dropped wakes everything).

use std::collections::BTreeSet;

use deadpool_postgres::Pool;
use tokio::sync::mpsc;

/// Wake-ups waiting to be sent; past it, a wake-up is left to the polls.
const QUEUE: usize = 1024;

/// Most bytes of target names in one notification: PostgreSQL refuses a
/// payload of 8000 bytes or more.
const PAYLOAD_MAX: usize = 7000;

/// Sends the wake-ups handed to it, from a task of its own; the task ends
/// when this is dropped.
pub(super) struct Notifier {
    queue: mpsc::Sender<Vec<String>>,
}

impl Notifier {
    pub fn start(pool: Pool) -> Notifier {
        let (queue, rx) = mpsc::channel(QUEUE);
        tokio::spawn(send_all(pool, rx));
        Notifier { queue }
    }

    /// Wakes the owners of `targets`; call it only after the commit that
    /// put work on them.
    pub fn wake(&self, targets: Vec<String>) {
        if !targets.is_empty() {
            // Full: the wake-ups already queued are sent first, and the
            // owner's poll finds this work within a second.
            let _ = self.queue.try_send(targets);
        }
    }
}

async fn send_all(pool: Pool, mut rx: mpsc::Receiver<Vec<String>>) {
    let mut got = Vec::new();
    while rx.recv_many(&mut got, QUEUE).await > 0 {
        let names: BTreeSet<String> = got.drain(..).flatten().collect();
        for payload in payloads(&names) {
            if let Err(e) = send(&pool, &payload).await {
                tracing::debug!(error = %format!("{e:#}"),
                    "a wake-up for other nodes was not sent; their polls find the work");
            }
        }
    }
}

/// `synchronous_commit` off for this transaction only: a notification is
/// delivered at the commit and lost with a crash either way, so waiting
/// for the WAL would only hold the notify lock longer.
async fn send(pool: &Pool, payload: &str) -> anyhow::Result<()> {
    let client = super::connection(pool).await?;
    client
        .execute(
            &client
                .prepare_cached(
                    "SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)",
                )
                .await?,
            &[&super::listen::CHANNEL, &payload],
        )
        .await?;
    Ok(())
}

/// The notifications naming `names`, each under the payload limit.
fn payloads(names: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut part: Vec<&str> = Vec::new();
    let mut bytes = 0;
    for name in names {
        if !part.is_empty() && bytes + name.len() + 1 > PAYLOAD_MAX {
            out.push(super::listen::due_payload(&part));
            part.clear();
            bytes = 0;
        }
        bytes += name.len() + 1;
        part.push(name);
    }
    if !part.is_empty() {
        out.push(super::listen::due_payload(&part));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_targets_are_split_under_the_payload_limit_and_none_is_lost() {
        let names: BTreeSet<String> = (0..400).map(|i| format!("{i:0>60}")).collect();
        let parts = payloads(&names);
        assert!(parts.len() > 1, "400 names of 60 bytes need more than one");
        let mut back = BTreeSet::new();
        for p in &parts {
            assert!(p.len() < 8000, "payload of {} bytes", p.len());
            let rest = p.strip_prefix("due:").unwrap();
            back.extend(rest.split('\u{1}').map(str::to_string));
        }
        assert_eq!(back, names);
        assert_eq!(payloads(&BTreeSet::new()), Vec::<String>::new());
    }
}
