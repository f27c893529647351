//! A small fixed pool of threads for planning, so solves never run on the async workers and
//! never more than a bounded number at once. Solver libraries are not all safe to call from
//! arbitrary threads concurrently; a fixed set of long-lived threads keeps that predictable.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, oneshot};

use crate::error::Error;

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Debug, Clone)]
pub struct SolvePool {
    jobs: SyncSender<Job>,
    permits: Arc<Semaphore>,
}

impl SolvePool {
    /// A pool of `threads` threads (at least one).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let (jobs, queue) = sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("dom-solve-{i}"))
                .spawn(move || work(&queue))
                .expect("spawn a solver thread");
        }
        Self {
            jobs,
            permits: Arc::new(Semaphore::new(threads)),
        }
    }

    /// Runs `f` on a pool thread; waits asynchronously for a free thread first.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("solver pool closed".into()))?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
            drop(permit);
        });
        // a permit guarantees a free slot, so this never blocks for long
        self.jobs
            .send(job)
            .map_err(|_| Error::Internal("solver pool closed".into()))?;
        rx.await
            .map_err(|_| Error::Internal("a planning job failed".into()))
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => {
                // a panicking job must not take the thread with it
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}
