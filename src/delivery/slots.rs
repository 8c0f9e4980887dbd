//! A concurrency limit that a reload can change while attempts hold it.

use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

/// Permits for attempts in flight, resizable. Growing adds permits at
/// once; shrinking takes the difference out as attempts give theirs back
/// (a queued `acquire_many`, which the semaphore's fairness puts ahead of
/// new attempts), so the new limit holds from the moment the attempts
/// over it have ended, and none is cut short.
pub struct Slots {
    sem: Arc<Semaphore>,
    size: Mutex<usize>,
}

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots {
            sem: Arc::new(Semaphore::new(n)),
            size: Mutex::new(n),
        }
    }

    pub fn semaphore(&self) -> &Arc<Semaphore> {
        &self.sem
    }

    /// Makes the limit `n`. Grows and shrinks commute, so a later resize
    /// is right even while an earlier shrink still waits.
    pub fn resize(&self, n: usize) {
        let mut size = self.size.lock().unwrap_or_else(|e| e.into_inner());
        if n > *size {
            self.sem.add_permits(n - *size);
        } else if n < *size {
            let take = (*size - n) as u32;
            let sem = self.sem.clone();
            tokio::spawn(async move {
                if let Ok(p) = sem.acquire_many_owned(take).await {
                    p.forget();
                }
            });
        }
        *size = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn shrinking_waits_for_holders_and_growing_is_immediate() {
        let s = Slots::new(3);
        let held = s.semaphore().clone().acquire_many_owned(3).await.unwrap();
        s.resize(1);
        tokio::task::yield_now().await;
        drop(held);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(s.semaphore().available_permits(), 1);
        s.resize(4);
        assert_eq!(s.semaphore().available_permits(), 4);
    }
}
