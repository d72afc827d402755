//! The writer's task: takes what waits, most urgent first, commits it as one batch, hands each
//! new notification to the live delivery in commit order, and answers the publishers.

use std::{
    cmp::Reverse,
    panic::AssertUnwindSafe,
    sync::{Arc, atomic::AtomicU64, atomic::Ordering},
};

use futures::FutureExt as _;
use phantom_layers::{
    Error,
    registry::{Histogram, Registry},
};
use tokio::{sync::mpsc, sync::oneshot, time::Instant};

use super::handle::{Answer, Committed, Pending};
use crate::{
    hub::class,
    log::{NotificationLog, Stored},
};

/// What the writer did, in the notifier's registry (`/metrics`).
#[derive(Debug)]
pub(super) struct Stats {
    /// Batches committed.
    batches: Arc<AtomicU64>,
    /// Publishes answered from a committed batch (over `batches`: the mean batch).
    written: Arc<AtomicU64>,
    /// Time to commit one batch.
    commit: Arc<Histogram>,
}

impl Stats {
    /// The writer's counters, in `r`.
    pub(super) fn new(r: &Registry) -> Self {
        Self {
            batches: r.counter(
                "phantom_notifier_write_batches_total",
                "Batches of notifications committed to the log (one transaction each).",
                &[],
            ),
            written: r.counter(
                "phantom_notifier_written_total",
                "Publishes answered from a committed batch.",
                &[],
            ),
            commit: r.histogram(
                "phantom_notifier_write_batch_seconds",
                "Time to commit one batch of notifications to the log.",
                &[],
            ),
        }
    }
}

/// Writes what the queues (LOW to CRITICAL) bring, in batches of at most `max_batch`, until
/// every sender is gone and nothing waits.
pub(super) async fn run(
    log: Arc<dyn NotificationLog>,
    mut queues: [mpsc::Receiver<Pending>; 4],
    max_batch: usize,
    committed: Committed,
    stats: Stats,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while take(&mut queues, max_batch, &mut batch).await {
        let work = commit(&*log, std::mem::take(&mut batch), &committed, &stats);
        // A bug in one batch (a panic in the live delivery, say) fails that batch's publishes
        // (their answers are dropped: UNAVAILABLE), not every publish after it.
        if AssertUnwindSafe(work).catch_unwind().await.is_err() {
            tracing::error!(
                "The notification writer failed on a batch; its publishes were answered UNAVAILABLE"
            );
        }
    }
}

/// Waits for a publish, then takes the others waiting, most urgent first, up to `max` in all,
/// into `batch`, ordered most urgent first: within a room, the order of their sequences.
/// False when the senders are all gone and nothing waits.
async fn take(
    queues: &mut [mpsc::Receiver<Pending>; 4],
    max: usize,
    batch: &mut Vec<Pending>,
) -> bool {
    let [low, normal, high, critical] = queues;
    let first = tokio::select! {
        biased;
        Some(p) = critical.recv() => p,
        Some(p) = high.recv() => p,
        Some(p) = normal.recv() => p,
        Some(p) = low.recv() => p,
        else => return false,
    };
    batch.push(first);
    for queue in [critical, high, normal, low] {
        while batch.len() < max {
            let Ok(p) = queue.try_recv() else { break };
            batch.push(p);
        }
    }
    // A publisher that stopped waiting (its deadline passed, it cancelled) before its write
    // began gets no write it would have to retry blindly.
    batch.retain(|p| !p.reply.is_closed());
    // Stable: within a priority, first come first stored.
    batch.sort_by_key(|p| Reverse(class(p.entry.record.priority)));
    true
}

/// Commits `batch` and answers its publishers. When the log fails the batch for a reason that
/// may be one notification's (anything but the store being away), each is retried alone, so
/// a notification the store refuses fails its own Publish only.
async fn commit(
    log: &dyn NotificationLog,
    batch: Vec<Pending>,
    committed: &Committed,
    stats: &Stats,
) {
    if batch.is_empty() {
        return;
    }
    let (entries, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.entry, p.reply)).unzip();
    let started = Instant::now();
    match log.append_batch(&entries).await {
        Ok(stored) => {
            stats.commit.observe(started.elapsed());
            answer(stored, replies, committed, stats);
        }
        Err(Error::Unavailable {
            message,
            retry_after,
        }) => {
            for reply in replies {
                let _ = reply.send(Err(Error::Unavailable {
                    message: message.clone(),
                    retry_after,
                }));
            }
        }
        Err(err) if entries.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(err));
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, notifications = entries.len(), "A batch of notifications failed; storing them one at a time");
            for (entry, reply) in entries.into_iter().zip(replies) {
                match log.append_batch(std::slice::from_ref(&entry)).await {
                    Ok(stored) => answer(stored, vec![reply], committed, stats),
                    Err(err) => {
                        let _ = reply.send(Err(err));
                    }
                }
            }
        }
    }
}

/// Hands each notification of a committed batch stored anew to the live delivery and answers
/// its publisher, in the batch's order: within a room, the order of the sequences, so a
/// subscriber never sees a later one before an earlier one (which it would take for a gap, and
/// fill from the store).
fn answer(
    stored: Vec<(Stored, bool)>,
    replies: Vec<oneshot::Sender<Answer>>,
    committed: &Committed,
    stats: &Stats,
) {
    stats.batches.fetch_add(1, Ordering::Relaxed);
    stats
        .written
        .fetch_add(stored.len() as u64, Ordering::Relaxed);
    for ((stored, fresh), reply) in stored.into_iter().zip(replies) {
        if fresh {
            committed(&stored);
        }
        let _ = reply.send(Ok((stored, fresh)));
    }
}
