//! The worker's queue: bounded on the way in, gathered into batches on the way out. It
//! knows nothing of models, only of jobs ([`Queued`]): how many images each one asks
//! for, whether its client still waits, and until when.
//!
//! - [`JobQueue::submit`] never blocks: a full queue answers Overloaded at once (HTTP 503
//!   with Retry-After), so memory stays bounded and overload fails fast.
//! - [`Gatherer::next_batch`] takes the first waiting job, then whatever else is queued,
//!   and, when requests have been overlapping (the last batch held more than one image),
//!   waits up to `max_wait` for more, until the batch holds `max_batch` images. A job that
//!   would overfill a batch opens the next one instead.
//! - [`live_jobs`] drops jobs whose client went away and fails those past their deadline,
//!   before any model work is spent on them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{
    sync_channel, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::WorkerError;

/// A job as the queue sees it.
pub trait Queued {
    /// Images the job renders (its share of a batch).
    fn images(&self) -> usize;
    /// True when nobody waits for the answer any more.
    fn is_abandoned(&self) -> bool;
    /// When the client stops waiting.
    fn deadline(&self) -> Instant;
    /// Answers the job with `error`.
    fn fail(self, error: WorkerError);
}

/// The sending side: what the HTTP handlers hold (cloned into each one).
pub struct JobQueue<T> {
    tx: SyncSender<T>,
    /// Jobs submitted and not yet taken by the worker (exported as a metric).
    queued: Arc<AtomicUsize>,
}

impl<T> Clone for JobQueue<T> {
    fn clone(&self) -> Self {
        JobQueue {
            tx: self.tx.clone(),
            queued: self.queued.clone(),
        }
    }
}

/// How the receiving side gathers batches.
#[derive(Clone, Copy, Debug)]
pub struct Gathering {
    /// Most images in one batch (a single larger job still runs, alone).
    pub max_batch: usize,
    /// How long the first job of a batch waits for company while requests overlap.
    pub max_wait: Duration,
}

/// A queue holding at most `depth` waiting jobs, and the gatherer that empties it.
pub fn job_queue<T: Queued>(depth: usize, gathering: Gathering) -> (JobQueue<T>, Gatherer<T>) {
    let (tx, rx) = sync_channel(depth);
    let queued = Arc::new(AtomicUsize::new(0));
    let gatherer = Gatherer {
        rx,
        queued: queued.clone(),
        gathering,
        held: None,
        last_batch_images: 1,
    };
    (JobQueue { tx, queued }, gatherer)
}

impl<T> JobQueue<T> {
    /// Queues `job`, or refuses it at once: Overloaded when the queue is full, Stopped
    /// when the worker is gone.
    pub fn submit(&self, job: T) -> Result<(), WorkerError> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => WorkerError::Overloaded,
                    TrySendError::Disconnected(_) => WorkerError::Stopped,
                })
            }
        }
    }

    /// Jobs waiting for the worker.
    pub fn depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// The receiving side, owned by the worker thread.
pub struct Gatherer<T> {
    rx: Receiver<T>,
    queued: Arc<AtomicUsize>,
    gathering: Gathering,
    /// A job that did not fit the last batch: it opens the next one.
    held: Option<T>,
    /// Waiting for company only pays when requests overlap: a lone user (the last batch
    /// had one image) gets no added latency, and a crowd gets full batches.
    last_batch_images: usize,
}

impl<T: Queued> Gatherer<T> {
    /// Blocks until a job is waiting, then gathers a batch around it. `None` once every
    /// sender is gone and the queue is empty.
    pub fn next_batch(&mut self) -> Option<Vec<T>> {
        let first = match self.held.take() {
            Some(job) => job,
            None => self.take(self.rx.recv().ok()?),
        };
        let mut images = first.images();
        let mut batch = vec![first];
        let gather_until = Instant::now() + self.window();
        while images < self.gathering.max_batch {
            // Whatever is already queued joins at once.
            let next = match self.rx.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= gather_until {
                        break;
                    }
                    match self.rx.recv_timeout(gather_until - now) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            let next = self.take(next);
            if images + next.images() > self.gathering.max_batch {
                self.held = Some(next);
                break;
            }
            images += next.images();
            batch.push(next);
        }
        self.last_batch_images = images;
        Some(batch)
    }

    /// How long the next batch waits for company.
    pub fn window(&self) -> Duration {
        if self.last_batch_images > 1 {
            self.gathering.max_wait
        } else {
            Duration::ZERO
        }
    }

    fn take(&self, job: T) -> T {
        self.queued.fetch_sub(1, Ordering::Relaxed);
        job
    }
}

/// The jobs of `batch` still worth running at `now`, in order: abandoned jobs are dropped
/// unanswered (nobody listens), and jobs past their deadline are answered with Timeout.
pub fn live_jobs<T: Queued>(batch: Vec<T>, now: Instant) -> Vec<T> {
    let mut live = Vec::with_capacity(batch.len());
    for job in batch {
        if job.is_abandoned() {
            tracing::debug!("dropping a job whose client went away");
        } else if job.deadline() <= now {
            job.fail(WorkerError::Timeout);
        } else {
            live.push(job);
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    /// A job with a reply channel, as the worker's commands have.
    struct Job {
        name: &'static str,
        images: usize,
        deadline: Instant,
        tx: oneshot::Sender<Result<(), WorkerError>>,
    }

    impl Queued for Job {
        fn images(&self) -> usize {
            self.images
        }
        fn is_abandoned(&self) -> bool {
            self.tx.is_closed()
        }
        fn deadline(&self) -> Instant {
            self.deadline
        }
        fn fail(self, error: WorkerError) {
            let _ = self.tx.send(Err(error));
        }
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    fn job(
        name: &'static str,
        images: usize,
        deadline: Instant,
    ) -> (Job, oneshot::Receiver<Result<(), WorkerError>>) {
        let (tx, rx) = oneshot::channel();
        let job = Job {
            name,
            images,
            deadline,
            tx,
        };
        (job, rx)
    }

    fn queue(depth: usize, max_batch: usize) -> (JobQueue<Job>, Gatherer<Job>) {
        job_queue(
            depth,
            Gathering {
                max_batch,
                max_wait: Duration::ZERO,
            },
        )
    }

    fn names(batch: &[Job]) -> Vec<&'static str> {
        batch.iter().map(|j| j.name).collect()
    }

    #[test]
    fn queued_jobs_gather_into_batches_of_at_most_max_batch_images() {
        let (queue, mut gatherer) = queue(16, 4);
        let mut replies = Vec::new();
        for (name, images) in [("a", 1), ("b", 2), ("c", 1), ("d", 3), ("e", 1)] {
            let (job, rx) = job(name, images, later());
            queue.submit(job).unwrap();
            replies.push(rx);
        }
        assert_eq!(queue.depth(), 5);
        assert_eq!(names(&gatherer.next_batch().unwrap()), ["a", "b", "c"]);
        // The first batch is full at 4 images; `d` and `e` make the next.
        assert_eq!(names(&gatherer.next_batch().unwrap()), ["d", "e"]);
        assert_eq!(queue.depth(), 0);
    }

    #[test]
    fn a_job_that_would_overfill_a_batch_opens_the_next() {
        let (queue, mut gatherer) = queue(16, 4);
        let mut replies = Vec::new();
        for (name, images) in [("a", 3), ("big", 6), ("c", 1)] {
            let (job, rx) = job(name, images, later());
            queue.submit(job).unwrap();
            replies.push(rx);
        }
        assert_eq!(names(&gatherer.next_batch().unwrap()), ["a"]);
        // A job larger than a batch still runs, alone.
        assert_eq!(names(&gatherer.next_batch().unwrap()), ["big"]);
        assert_eq!(names(&gatherer.next_batch().unwrap()), ["c"]);
    }

    #[test]
    fn gathering_ends_when_every_sender_is_gone() {
        let (queue, mut gatherer) = queue(4, 8);
        let (only, _rx) = job("only", 1, later());
        queue.submit(only).unwrap();
        drop(queue);
        assert_eq!(names(&gatherer.next_batch().unwrap()), ["only"]);
        assert!(gatherer.next_batch().is_none());
    }

    #[test]
    fn a_lone_request_waits_for_no_company_and_a_crowd_does() {
        let (queue, mut gatherer) = job_queue(
            8,
            Gathering {
                max_batch: 8,
                max_wait: Duration::from_millis(2),
            },
        );
        assert_eq!(gatherer.window(), Duration::ZERO);
        let mut replies = Vec::new();
        for name in ["a", "b"] {
            let (job, rx) = job(name, 1, later());
            queue.submit(job).unwrap();
            replies.push(rx);
        }
        assert_eq!(gatherer.next_batch().unwrap().len(), 2);
        assert_eq!(gatherer.window(), Duration::from_millis(2));
    }

    #[test]
    fn a_full_queue_refuses_with_overloaded_and_a_gone_worker_with_stopped() {
        let (queue, gatherer) = queue(2, 8);
        let mut replies = Vec::new();
        for name in ["a", "b", "c"] {
            let (job, rx) = job(name, 1, later());
            replies.push(rx);
            let result = queue.submit(job);
            if name == "c" {
                assert!(matches!(result, Err(WorkerError::Overloaded)), "{result:?}");
            } else {
                result.unwrap();
            }
        }
        assert_eq!(queue.depth(), 2);
        drop(gatherer);
        let (late, _rx) = job("late", 1, later());
        assert!(matches!(queue.submit(late), Err(WorkerError::Stopped)));
        assert_eq!(queue.depth(), 2);
    }

    #[test]
    fn abandoned_jobs_are_dropped_unanswered() {
        let (kept, _kept_rx) = job("kept", 1, later());
        let (gone, gone_rx) = job("gone", 1, later());
        drop(gone_rx);
        let live = live_jobs(vec![gone, kept], Instant::now());
        assert_eq!(names(&live), ["kept"]);
    }

    #[test]
    fn jobs_past_their_deadline_are_answered_with_timeout() {
        let now = Instant::now();
        let (expired, mut expired_rx) = job("expired", 1, now);
        let (on_time, mut on_time_rx) = job("on time", 1, later());
        let live = live_jobs(vec![expired, on_time], now);
        assert_eq!(names(&live), ["on time"]);
        assert!(matches!(
            expired_rx.try_recv(),
            Ok(Err(WorkerError::Timeout))
        ));
        // The live job is not answered by the triage.
        assert!(on_time_rx.try_recv().is_err());
    }

    #[test]
    fn a_deadline_is_checked_against_the_time_the_batch_runs() {
        let now = Instant::now();
        let soon = now + Duration::from_secs(5);
        let (first, _rx1) = job("first", 1, soon);
        assert_eq!(names(&live_jobs(vec![first], now)), ["first"]);
        let (second, mut rx2) = job("second", 1, soon);
        assert!(live_jobs(vec![second], soon + Duration::from_millis(1)).is_empty());
        assert!(matches!(rx2.try_recv(), Ok(Err(WorkerError::Timeout))));
    }
}
