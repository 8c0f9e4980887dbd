//! A fixed set of threads for the store's reads.
//!
//! sled is a blocking library, so its reads leave the async workers. With
//! `spawn_blocking` per read, a burst (64 events routing, every attempt
//! reading its delivery) grew tokio's blocking pool to 155 threads; each
//! thread keeps its own allocator heap, and the pages those heaps held, and
//! abandoned when the threads went idle, were most of the router's peak
//! memory with three plugins. A handful of threads taking reads from one
//! queue serves the same reads with a bounded number of heaps.
//!
//! The queue is unbounded here because its callers are bounded: routing
//! and delivery run a fixed number of tasks, admin reads one per request.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};

type Job = Box<dyn FnOnce() + Send>;

pub struct Readers {
    jobs: Sender<Job>,
}

/// Threads per store: reads are short (a cached B-tree lookup, a `pread`
/// of a body), so a few more than the cores keep the cores busy while one
/// waits on the disk.
fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
        * 2
}

impl Readers {
    /// Starts the threads; they end once the store (the last sender) is
    /// dropped and the reads queued before are done.
    pub fn start() -> Result<Readers> {
        let (jobs, queue) = channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads() {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("hookyard-read-{i}"))
                .spawn(move || serve(&queue))
                .map_err(|e| anyhow!("starting the store's read threads: {e}"))?;
        }
        Ok(Readers { jobs })
    }

    /// Runs `read` on one of the threads and waits for its answer.
    pub async fn run<T: Send + 'static>(
        &self,
        read: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = answer.send(read());
            }))
            .map_err(|_| anyhow!("the store's read threads have stopped"))?;
        answered
            .await
            .map_err(|_| anyhow!("a store read panicked (see the log)"))
    }
}

fn serve(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while waiting for the next job; the job
        // runs after it is let go, so the other threads take the next ones.
        let job = match queue.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        // A panic drops the job's answer (its caller gets an error) and
        // leaves the thread serving; the panic hook has logged it.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_read_fails_alone_and_the_threads_keep_serving() {
        let readers = Readers::start().unwrap();
        let failed = readers.run(|| -> u32 { panic!("boom") }).await;
        assert!(failed.is_err());
        let many: Vec<_> = (0..100u32).map(|i| readers.run(move || i * 2)).collect();
        let answers = futures_util::future::join_all(many).await;
        let sum: u32 = answers.into_iter().map(|a| a.unwrap()).sum();
        assert_eq!(sum, (0..100u32).map(|i| i * 2).sum::<u32>());
    }
}
