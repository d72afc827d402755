//! Where log lines go: a thread of their own, never the request's.
//!
//! A server logs one `api.response` line per call. Written as it happens, each line is a
//! `write(2)` on the calling worker thread, behind a lock every other worker also wants:
//! measured on two cores, `phantom serve vuln-analyzer` answered 19.8k calls/s at `warn`
//! and 11.0k/s at `info` (the default), the log line alone halving throughput.
//!
//! So the request path only formats its line and hands it over: [`tracing_appender`]'s
//! non-blocking writer queues it (bounded: `telemetry.log_buffer_lines`) for a worker
//! thread, which scrubs it of secrets ([`Secrets::scrub`]) and writes it through a buffer
//! flushed whenever the queue runs dry, so a burst of lines is one write, not one each.
//! When the queue is full the line is dropped, never waited for: a stalled stderr (a full
//! pipe, a slow terminal) costs log lines, not calls. Dropped lines are counted
//! (`phantom_log_lines_dropped_total`, and `logs` in `/health/metrics`).
//!
//! The lines left in the queue are written when the [`LogGuard`] is dropped, as the process
//! ends.

use std::{
    io::{self, Write},
    sync::Arc,
};

use phantom_layers::exposition::{Families, Source};
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

use super::Secrets;

/// Bytes buffered by the worker before a write, at most (it also writes whenever its queue
/// is empty).
const WRITE_BUFFER: usize = 64 * 1024;

/// Keeps the log thread's queue: dropping it writes what is queued and stops the thread.
/// Hold it until the process ends.
#[must_use = "dropping the guard stops the log writer: hold it until the process ends"]
#[derive(Debug)]
pub struct LogGuard(#[allow(dead_code)] Option<WorkerGuard>);

impl LogGuard {
    /// A guard that guards nothing: for a subscriber that writes synchronously.
    pub fn none() -> Self {
        Self(None)
    }
}

/// `inner`, written by a thread of its own, scrubbed of `secrets` there; at most `lines`
/// lines wait, the next ones are dropped and counted.
pub(super) fn non_blocking<W: Write + Send + 'static>(
    inner: W,
    secrets: Secrets,
    lines: usize,
) -> (NonBlocking, LogGuard, Arc<LogDrops>) {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(lines)
        .thread_name("phantom-log")
        .finish(Scrubbing {
            inner: io::BufWriter::with_capacity(WRITE_BUFFER, inner),
            secrets,
        });
    let drops = Arc::new(LogDrops {
        dropped: writer.error_counter(),
        capacity: lines,
    });
    (writer, LogGuard(Some(guard)), drops)
}

/// Scrubs each line on its way to `inner`. The non-blocking writer hands it one line per
/// write, as the formatter wrote it.
struct Scrubbing<W> {
    inner: W,
    secrets: Secrets,
}

impl<W: Write> Write for Scrubbing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        super::redact::write_scrubbed(&mut self.inner, &self.secrets, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The lines the log queue dropped, as metrics and `/health/metrics` show them.
#[derive(Debug)]
pub struct LogDrops {
    dropped: ErrorCounter,
    capacity: usize,
}

impl LogDrops {
    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.dropped_lines() as u64
    }
}

impl Source for LogDrops {
    fn describe(&self, out: &mut Families) {
        out.counter(
            "phantom_log_lines_dropped_total",
            "Log lines dropped because the log writer's queue was full (stderr too slow).",
            &[],
            self.dropped() as f64,
        );
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "dropped": self.dropped(), "queue_lines": self.capacity })
    }

    fn kind(&self) -> &'static str {
        "logs"
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A writer that blocks until its gate opens, recording what it was given.
    #[derive(Clone)]
    struct Gated {
        gate: Arc<Mutex<()>>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _open = self.gate.lock().expect("gate");
            self.out.lock().expect("out").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_output_drops_and_counts_lines_instead_of_blocking_the_caller() {
        let gated = Gated {
            gate: Arc::new(Mutex::new(())),
            out: Arc::default(),
        };
        let closed = gated.gate.lock().expect("gate");
        let (mut writer, guard, drops) = non_blocking(gated.clone(), Secrets::new(), 4);
        // Enough lines that the buffer of the worker fills and blocks on the gate, then the
        // queue of 4 fills: every write returns at once, whatever the output does.
        let line = format!("{}\n", "x".repeat(WRITE_BUFFER / 8));
        for _ in 0..64 {
            writer
                .write_all(line.as_bytes())
                .expect("a lossy write never fails");
        }
        let dropped = drops.dropped();
        assert!(dropped > 0, "nothing was dropped");
        drop(closed);
        drop(guard);
        let out = String::from_utf8(gated.out.lock().expect("out").clone()).expect("utf-8");
        assert_eq!(
            out.lines().count() as u64 + dropped,
            64,
            "every line was written or counted as dropped"
        );
        assert_eq!(drops.state()["dropped"], dropped);
        let mut families = Families::default();
        drops.describe(&mut families);
        assert!(families.0.contains_key("phantom_log_lines_dropped_total"));
    }

    #[test]
    fn lines_are_scrubbed_on_the_writer_thread_and_written_when_the_guard_drops() {
        let out = Gated {
            gate: Arc::new(Mutex::new(())),
            out: Arc::default(),
        };
        let secrets = Secrets::new();
        let (mut writer, guard, drops) = non_blocking(out.clone(), secrets.clone(), 16);
        // Registered after the writer was made: the list is shared, as the binary fills it.
        secrets.register("hunter2-secret");
        writer
            .write_all(b"password hunter2-secret\n")
            .expect("write");
        writer.write_all(b"second line\n").expect("write");
        drop(guard);
        let out = String::from_utf8(out.out.lock().expect("out").clone()).expect("utf-8");
        assert_eq!(out, "password ***\nsecond line\n");
        assert_eq!(drops.dropped(), 0);
    }
}
