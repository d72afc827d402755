//! The write path of `Publish`: urgency decides the order in which notifications reach the
//! log, not only the order in which subscribers receive them.
//!
//! A publish hands its notification to the replica's [`Writer`] and waits. Publishes wait in
//! one bounded queue per priority; one task takes what waits, CRITICAL first, then HIGH,
//! NORMAL, LOW (first come first served within a priority), up to `notifier.write.max_batch`,
//! and commits it as one batch: one transaction in the database, one script in Redis
//! ([`crate::log::NotificationLog::append_batch`]). Publishes that arrive meanwhile go in the
//! next batch, so a CRITICAL waits for at most the batch being committed, never for the LOWs
//! queued before it; at low load a batch is one publish and nothing waits on a timer.
//!
//! ```text
//!  Publish ─► queue[CRITICAL] ─┐
//!  Publish ─► queue[HIGH]     ─┤   take ≤ max_batch,     commit      live delivery,
//!  Publish ─► queue[NORMAL]   ─┼─► most urgent first ─► (one tx) ─► in commit order ─► answer
//!  Publish ─► queue[LOW]      ─┘
//! ```
//!
//! What holds:
//! - **Durable before acknowledged.** A publisher is answered, with its sequence, only after
//!   its batch committed. A batch is atomic: a failure stores none of it (in Redis, with the
//!   one exception [`crate::log`] describes), and every publisher in it is told. A failure that may be one notification's fault (anything but the store
//!   being away) is retried one notification at a time, so a notification the store refuses
//!   fails its own Publish only.
//! - **Sequences.** Each room's sequences stay gap-free and increase in commit order; within
//!   a batch, a room's notifications take them in the batch's order (most urgent first).
//! - **Idempotency.** A notification with a key its room already has (from an earlier batch
//!   or the same one) stores nothing and answers the first one.
//! - **Live delivery in commit order.** The writer hands each new notification to this
//!   replica's subscribers and webhooks ([`Committed`]) in commit order before answering, so
//!   subscribers receive a room's notifications in sequence. When publishers fanned out
//!   themselves after their own writes, concurrent publishes reached the subscribers out of
//!   order; each subscriber took the later one for a gap and read the missing one from the
//!   store: in `phantom bench notify`, 11,811 such reads in 10 s, on the connections and the
//!   write lock the publishes needed.
//! - **Bounded.** At most `notifier.write.max_queued` publishes of each priority wait; past it
//!   a Publish of that priority is refused at once with RESOURCE_EXHAUSTED and RetryInfo, and
//!   the other priorities still get in. A publisher that stops waiting before its batch is
//!   taken gets no write.
//!
//! # Why this design
//! Measured with `phantom bench notify` (1000 subscribers of one room, a CRITICAL every
//! 100 ms, a LOW flood from 2 publishers, SQLite), release builds, on a 2-core VM that other
//! work shared: the CRITICAL delivery p99 under the flood over its p99 without. One 10 s run
//! each (runs of the same build vary by a third); with 8 flood publishers in the second
//! column:
//!
//! | write path                                                  | 2 flooders | 8 flooders |
//! |-------------------------------------------------------------|-----------:|-----------:|
//! | each publish its own transaction (before)                   |      13.7x |      64.8x |
//! | the writer, publishers fanning out after their own writes   |       6.0x |            |
//! | the writer, one queue (first come, first stored)            |       2.5x |       7.7x |
//! | the writer, batches of one                                  |       1.9x |       2.4x |
//! | the writer, batches of up to 64, most urgent first          |       2.4x |       4.6x |
//!
//! - Before, every publish queued on SQLite's one write lock (busy waits, no order) and, once
//!   stored, raced the others to the subscribers: a CRITICAL's p99 was 150-300 ms under the
//!   flood, 1.07 s with 8 flooders.
//! - Commit-order delivery is the largest single gain (6.0x to 2.4x): it ends the gap fills.
//! - Most urgent first matters once publishes queue: with 8 flooders, 7.7x first come first
//!   stored, 4.6x most urgent first (with a heavier flood: 394 LOW/s against 160).
//! - Group commit pays for itself in the store: a notification costs 0.43 ms committed alone
//!   on SQLite, 35 us in a batch of 32 (PostgreSQL: 0.32 ms, 0.10 ms), so the LOWs take less
//!   of the store. Its lower ratio with batches of one comes from the bench's flood being a
//!   closed loop: a faster write lets the flooders publish more (394 LOW/s against 276), and
//!   delivering those to 1000 subscribers takes the CPU the CRITICAL's delivery then waits
//!   for. `max_batch` defaults to 32, where the cost per notification flattens (40 us in
//!   batches of 64): a batch of 32 commits in 1.1 ms on SQLite, 3.2 ms on PostgreSQL, the
//!   longest a CRITICAL waits for the batch before its own.
//! - A log per priority was not built: a room has one sequence whatever the priority (what
//!   subscribers resume from), so logs per priority would share each room's counter again,
//!   the point where publishes queued.
//! - The writer on a thread of its own, or only its store round trips, so that its wake-ups
//!   do not queue behind the delivery tasks: not better under the flood (2.2x against
//!   1.7-2.3x, 20 s runs); on its own thread its fan-out's wake-ups went through the runtime's
//!   shared queue, ahead of the publishers' answers (CRITICAL acknowledgement p50 11 ms
//!   without the flood, against 2 ms). Not worth a thread and a runtime boundary.
//! - Redis as the log (the same bench, a local `redis-server`): 4.9-5.2x before, 4.1-4.2x
//!   after. Redis does not make writers wait on each other (no lock, a script takes
//!   microseconds); what a publish waits for there is the client's tasks in a busy runtime,
//!   which batches barely change. Redis goes through the writer anyway, one script per
//!   batch, because commit-order delivery is what ends the gap fills there too.
//!
//! With the defaults, the bench went from 8.6-10.0x (four 5 s runs) and 10.4-11.2x (two 20 s
//! runs) to 1.5-3.2x and 2.1-2.9x. What is left is not the write: under the flood the
//! process is CPU-bound delivering 170-270 LOW/s to 1000 subscribers, and a CRITICAL's
//! request and its subscribers' tasks share the runtime's run queue with that work, as every
//! priority does (under the flood, CRITICAL and LOW are delivered in about the same time).

mod handle;
mod task;
#[cfg(test)]
mod tests;

pub use handle::{Committed, Writer};
