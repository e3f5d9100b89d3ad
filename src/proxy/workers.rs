//! The threads that serve client connections: one per core, each running
//! its own single-threaded runtime.
//!
//! A connection is handed to the least-loaded worker once, when it is
//! accepted, and everything it does from then on (its TLS, its requests,
//! their upstream connections and bodies, its tunnels and sockets) runs on
//! that one thread. On a work-stealing runtime a call's tasks (the client
//! connection, the request, the pooled upstream connection) were woken
//! across threads several times per call, each a futex and a context
//! switch; here a call wakes no other thread. Upstream connection pools are
//! per worker for the same reason ([`crate::upstream::Upstream`]).

use std::cell::Cell;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

thread_local! {
    /// This thread's worker index; 0 off the workers.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running this code (0 on any other thread).
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// How many workers to start: one per core the process may use.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// How often [`keep_timer_awake`] ticks.
const TIMER_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// Ticks forever, so that the runtime's timer always has a wake-up within
/// [`TIMER_TICK`]. tokio's timer writes to its driver's eventfd whenever a
/// timer is set earlier than the driver's next wake-up, to wake it; a call
/// sets several long timers (hyper's header read timeout for the next
/// request, the body idle timeouts), and without a nearer wake-up each of
/// them cost a syscall and an extra turn of the event loop, about one per
/// call.
async fn keep_timer_awake() {
    let mut ticker = tokio::time::interval(TIMER_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
    }
}

struct Worker {
    handle: Handle,
    /// Connections running on it.
    load: Arc<AtomicUsize>,
}

/// The connection workers. Dropping them tells their threads to stop;
/// [`Workers::stop`] also waits for them.
pub struct Workers {
    workers: Vec<Worker>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop: CancellationToken,
}

impl Workers {
    /// Start `count` workers (at least one).
    pub fn start(count: usize) -> std::io::Result<Workers> {
        let stop = CancellationToken::new();
        let mut workers = Vec::new();
        let mut threads = Vec::new();
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            workers.push(Worker {
                handle: runtime.handle().clone(),
                load: Arc::new(AtomicUsize::new(0)),
            });
            let stop = stop.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("outpost-worker-{index}"))
                    .spawn(move || {
                        INDEX.with(|i| i.set(index));
                        runtime.block_on(async {
                            tokio::select! {
                                () = stop.cancelled() => {}
                                () = keep_timer_awake() => {}
                            }
                        });
                        // Whatever is still running is dropped with the runtime.
                    })?,
            );
        }
        Ok(Workers {
            workers,
            threads: Mutex::new(threads),
            stop,
        })
    }

    /// How many workers there are.
    pub fn count(&self) -> usize {
        self.workers.len()
    }

    /// Run the future `make` builds on the worker with the fewest
    /// connections. `make` runs on that worker, so it may register sockets
    /// with its runtime.
    pub fn spawn<M, F>(&self, make: M)
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.load.load(Ordering::Relaxed))
            // `start` makes at least one.
            .expect("at least one worker");
        let load = worker.load.clone();
        load.fetch_add(1, Ordering::Relaxed);
        let done = Done(load);
        worker.handle.spawn(async move {
            let _done = done;
            make().await;
        });
    }

    /// Stop every worker, dropping what is still running on them, and wait
    /// for their threads.
    pub fn stop(&self) {
        self.stop.cancel();
        let threads =
            std::mem::take(&mut *self.threads.lock().unwrap_or_else(PoisonError::into_inner));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Counts a connection off its worker when it ends.
struct Done(Arc<AtomicUsize>);

impl Drop for Done {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn connections_go_to_the_least_loaded_worker_and_run_on_its_thread() {
        let workers = Workers::start(2).unwrap();
        let (ran_tx, ran_rx) = mpsc::channel();
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        for _ in 0..4 {
            let ran = ran_tx.clone();
            let mut release = release_rx.clone();
            workers.spawn(move || async move {
                let name = std::thread::current().name().map(str::to_string);
                ran.send((current(), name)).unwrap();
                let _ = release.wait_for(|go| *go).await;
            });
        }
        let mut seen: Vec<(usize, Option<String>)> = (0..4)
            .map(|_| ran_rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        seen.sort();
        // Two each: every spawn went to the worker with fewer running.
        let indexes: Vec<usize> = seen.iter().map(|(i, _)| *i).collect();
        assert_eq!(indexes, [0, 0, 1, 1]);
        for (index, name) in &seen {
            assert_eq!(
                name.as_deref(),
                Some(format!("outpost-worker-{index}").as_str())
            );
        }
        assert_eq!(workers.workers[0].load.load(Ordering::Relaxed), 2);
        release_tx.send(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while workers
            .workers
            .iter()
            .any(|w| w.load.load(Ordering::Relaxed) > 0)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "finished connections still counted"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        workers.stop();
    }

    #[test]
    fn stop_drops_what_still_runs_and_joins_the_threads() {
        let workers = Workers::start(1).unwrap();
        let (dropped_tx, dropped_rx) = mpsc::channel::<()>();
        struct Tell(mpsc::Sender<()>);
        impl Drop for Tell {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        workers.spawn(move || async move {
            let _tell = Tell(dropped_tx);
            std::future::pending::<()>().await;
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(dropped_rx.try_recv().is_err(), "still running before stop");
        workers.stop();
        dropped_rx
            .recv_timeout(Duration::from_secs(1))
            .expect("the running future is dropped by stop");
        assert!(workers.threads.lock().unwrap().is_empty());
    }

    #[test]
    fn off_the_workers_the_index_is_zero() {
        assert_eq!(current(), 0);
        assert!(default_count() >= 1);
    }
}
