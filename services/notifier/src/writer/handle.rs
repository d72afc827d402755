//! [`Writer`]: what a publish hands its notification to, and waits on.

use std::{
    sync::{Arc, atomic::AtomicU64, atomic::Ordering},
    time::Duration,
};

use phantom_layers::{Error, registry::Registry};
use tokio::sync::{mpsc, oneshot};

use super::task::{self, Stats};
use crate::{
    hub::class,
    log::{NotificationLog, Stored},
    repository::NewNotification,
    settings::WriteConfig,
};

/// The priorities by queue index ([`class`]), as metrics label them.
pub(super) const PRIORITIES: [&str; 4] = ["low", "normal", "high", "critical"];

/// What the writer does with each notification it stored anew, in commit order, before its
/// publisher is answered: the live delivery on this replica (see the [module docs](super)).
pub type Committed = Box<dyn Fn(&Stored) + Send + Sync>;

/// What a publish is answered: the notification as stored, and whether it was stored now.
pub(super) type Answer = Result<(Stored, bool), Error>;

/// A publish waiting for the writer.
#[derive(Debug)]
pub(super) struct Pending {
    /// Its notification.
    pub(super) entry: NewNotification,
    /// Where its answer goes; closed when the publisher stopped waiting.
    pub(super) reply: oneshot::Sender<Answer>,
}

/// The writer of one log: publishes wait in one bounded queue per priority, and a task commits
/// what waits in batches, most urgent first. Cheap to clone; the task ends, once what waits is
/// written, when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Writer {
    /// By priority, LOW to CRITICAL.
    queues: Arc<[mpsc::Sender<Pending>; 4]>,
    /// Publishes refused because their priority's queue was full, by priority.
    refused: Arc<[Arc<AtomicU64>; 4]>,
}

impl Writer {
    /// Starts the writer of `log`. `committed` runs for each notification stored anew, in
    /// commit order, before its publisher is answered; its counters go to `registry`.
    pub fn start(
        log: Arc<dyn NotificationLog>,
        config: &WriteConfig,
        committed: Committed,
        registry: &Registry,
    ) -> Self {
        let [low, normal, high, critical] =
            std::array::from_fn(|_| mpsc::channel(config.max_queued.max(1)));
        let refused = PRIORITIES.map(|priority| {
            registry.counter(
                "phantom_notifier_publish_refused_total",
                "Publishes refused because as many of their priority were waiting to be \
                 stored as notifier.write.max_queued allows.",
                &[("priority", priority)],
            )
        });
        tokio::spawn(task::run(
            log,
            [low.1, normal.1, high.1, critical.1],
            config.max_batch.max(1),
            committed,
            Stats::new(registry),
        ));
        Self {
            queues: Arc::new([low.0, normal.0, high.0, critical.0]),
            refused: Arc::new(refused),
        }
    }

    /// Stores `entry` (in a batch, after every more urgent publish waiting) and answers what
    /// was stored, once it is committed: the notification with its sequence and epoch, and
    /// whether it was stored now (false: its idempotency key was already used in its room).
    /// Refused at once with RESOURCE_EXHAUSTED (and RetryInfo) when its priority's queue is
    /// full.
    pub async fn append(&self, entry: NewNotification) -> Answer {
        let class = class(entry.record.priority);
        let queue = &self.queues[class];
        let (reply, answer) = oneshot::channel();
        queue
            .try_send(Pending { entry, reply })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => {
                    self.refused[class].fetch_add(1, Ordering::Relaxed);
                    Error::ResourceExhausted {
                        message: format!(
                            "{} {} publishes are waiting to be stored, as many as this replica \
                             queues (notifier.write.max_queued); retry shortly",
                            queue.max_capacity(),
                            PRIORITIES[class].to_uppercase()
                        ),
                        // The queue drains as batches commit (milliseconds each): a short,
                        // jittered pause is the honest hint, and keeps refused publishers from
                        // coming back all at once.
                        retry_after: Some(Duration::from_millis(50 + fastrand::u64(0..50))),
                    }
                }
                mpsc::error::TrySendError::Closed(_) => stopped(),
            })?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Publishes waiting for the writer now, by priority (LOW to CRITICAL); not those of the
    /// batch being committed.
    pub fn queued(&self) -> [usize; 4] {
        std::array::from_fn(|c| self.queues[c].max_capacity() - self.queues[c].capacity())
    }
}

/// What a publish is told when the writer is gone (the process is stopping) or failed on its
/// batch without an answer (a bug, logged by the writer).
fn stopped() -> Error {
    Error::Unavailable {
        message: "the notification was not stored: the writer stopped; retry".to_owned(),
        retry_after: Some(Duration::from_secs(1)),
    }
}
