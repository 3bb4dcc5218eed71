//! The step workers: the threads that run guest code, one per core by
//! default, named `cairn-step-N`.
//!
//! They run at a lower CPU priority (nice +10) than the host's own threads.
//! When the CPU is short, tenants' steps wait before ingest, commits and the
//! API do: a commit's round trips to its connection's thread are on the way
//! of every event behind it, a step only on its own. Idle host threads cost
//! the steps nothing, so throughput is unchanged; under contention an
//! event's resume is faster (`cargo bench -p cairn-tests --bench events --
//! latency`), and a tenant whose steps burn CPU cannot starve the host.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

/// How much nicer than the host the step workers are.
const STEP_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of step worker threads; they end when this is dropped.
pub(super) struct StepWorkers {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl StepWorkers {
    /// Starts `count` workers.
    pub(super) fn start(count: usize) -> Arc<StepWorkers> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..count {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("cairn-step-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = queue.lock().expect("step queue lock").recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("a step worker thread starts");
        }
        Arc::new(StepWorkers {
            jobs: Mutex::new(jobs),
        })
    }

    /// Runs `work` on a worker; its result (or its panic) comes back
    /// through the receiver.
    pub(super) fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<std::thread::Result<T>> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(work)));
        });
        self.jobs
            .lock()
            .expect("step jobs lock")
            .send(job)
            .expect("the step workers run while the scheduler exists");
        result
    }
}

/// Lowers the calling thread's CPU priority (Linux: per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread; no memory is shared.
        let failed = unsafe {
            let tid = libc::gettid() as libc::id_t;
            let current = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, current + STEP_NICE) != 0
        };
        if failed {
            tracing::debug!(
                "step worker keeps the host's CPU priority: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_a_nicer_named_thread_and_panics_come_back() {
        let workers = StepWorkers::start(2);
        let (name, nice) = workers
            .run(|| {
                let name = std::thread::current().name().map(str::to_string);
                // SAFETY: reads the calling thread's priority.
                let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as _) };
                (name, nice)
            })
            .await
            .unwrap()
            .unwrap();
        assert!(name.unwrap().starts_with("cairn-step-"));
        // SAFETY: as above, on this thread.
        let host = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as _) };
        assert_eq!(nice, (host + STEP_NICE).min(19));
        let panicked = workers.run(|| panic!("a guest bug")).await.unwrap();
        assert!(panicked.is_err());
        // The worker survived its job's panic.
        assert_eq!(workers.run(|| 7).await.unwrap().unwrap(), 7);
    }
}
