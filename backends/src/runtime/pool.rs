//! A fixed pool of worker threads for kernel tasks. The caller is worker 0;
//! `threads - 1` more wait on a condition variable between jobs, so a model
//! never runs more threads than asked (no oversubscription with the caller's
//! own pool).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// A job as the workers see it: a borrowed closure whose lifetime `run`
/// guarantees by waiting for every worker before returning.
type Job = *const (dyn Fn(usize) + Sync);

struct State {
    generation: u64,
    job: Option<SendJob>,
    active: usize,
    quit: bool,
}

#[derive(Clone, Copy)]
struct SendJob(Job);
// SAFETY: the closure behind the pointer is `Sync` and outlives every use (see `Pool::run`).
unsafe impl Send for SendJob {}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    done: Condvar,
}

/// Worker threads that run one job at a time.
pub struct Pool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
    threads: usize,
}

impl Pool {
    /// A pool of `threads` (at least 1, counting the caller).
    pub fn new(threads: usize) -> Pool {
        let threads = threads.max(1);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                generation: 0,
                job: None,
                active: 0,
                quit: false,
            }),
            wake: Condvar::new(),
            done: Condvar::new(),
        });
        let handles = (1..threads)
            .map(|id| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("kiln-worker-{id}"))
                    .spawn(move || worker(&s, id))
                    .expect("spawn a kiln worker thread")
            })
            .collect();
        Pool {
            shared,
            handles,
            threads,
        }
    }

    /// Threads in the pool, the caller included.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(thread)` on every thread of the pool and returns when all are done.
    pub fn broadcast(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.threads == 1 {
            f(0);
            return;
        }
        // SAFETY: the lifetime is erased only for the workers, and this call
        // waits below until every worker has finished with `f`.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f) };
        {
            let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.job = Some(SendJob(job));
            st.generation += 1;
            st.active = self.threads - 1;
        }
        self.shared.wake.notify_all();
        f(0);
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.active > 0 {
            st = self.shared.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.job = None;
    }

    /// Runs tasks `0..n` as `f(thread, lo, hi)` chunks spread over the pool.
    pub fn run(&self, n: usize, f: &(dyn Fn(usize, usize, usize) + Sync)) {
        if n == 0 {
            return;
        }
        if self.threads == 1 || n == 1 {
            f(0, 0, n);
            return;
        }
        let chunk = (n / (self.threads * 8)).max(1);
        let next = AtomicUsize::new(0);
        self.broadcast(&|t| loop {
            let lo = next.fetch_add(chunk, Ordering::Relaxed);
            if lo >= n {
                break;
            }
            f(t, lo, (lo + chunk).min(n));
        });
    }
}

fn worker(s: &Shared, id: usize) {
    let mut seen = 0u64;
    loop {
        let job = {
            let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            while st.generation == seen && !st.quit {
                st = s.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.quit {
                return;
            }
            seen = st.generation;
            st.job
        };
        if let Some(SendJob(j)) = job {
            // SAFETY: `broadcast` keeps the closure alive until `active` is 0.
            unsafe { (*j)(id) };
        }
        let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
        st.active -= 1;
        if st.active == 0 {
            s.done.notify_one();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .quit = true;
        self.shared.wake.notify_all();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once() {
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads);
            for n in [0, 1, 7, 100, 1000] {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                pool.run(n, &|_, lo, hi| {
                    for h in &hits[lo..hi] {
                        h.fetch_add(1, Ordering::Relaxed);
                    }
                });
                assert!(
                    hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                    "threads {threads} n {n}"
                );
            }
        }
    }
}
