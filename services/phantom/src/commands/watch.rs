//! `phantom watch`: follows rooms of the notifier and prints each notification once, riding
//! out broken connections.
//!
//! The notifier numbers each room's notifications without gaps and resumes a subscription
//! after a given sequence per room, replaying what it kept. The watcher keeps a [`Cursor`] of
//! what it printed. When the stream ends or fails (the notifier restarting, the connection
//! lost, `RESOURCE_EXHAUSTED` for a subscriber that fell too far behind) it waits, with
//! exponential backoff and full jitter (200 ms doubling to 10 s, reset once a stream
//! delivers), and subscribes again after each room's watermark, skipping the sequences above
//! it that it printed already.
//!
//! When the notifier's log lost its data (Redis emptied) its sequences start again in a new
//! epoch: the notifier says so (`FAILED_PRECONDITION`, `LOG_RESET`) when the watcher resumes
//! with the old epoch, and ends a live stream the same way at the first notification of the
//! new one. Either way the watcher subscribes again at once from the start of the new epoch.
//!
//! A heartbeat reporting LOW or NORMAL notifications dropped for this watcher (it read too
//! slowly) makes it subscribe again at once: the replay fetches them from storage.
//!
//! What follows from what a subscriber is told:
//! - Filters (`--min-priority`, `--types`, `--min-severity`) hide sequences from the watcher,
//!   so its watermark stops before the first hidden one. A resume then replays from there
//!   (filtered by the server) and the watcher skips what it printed: correct, but the replay
//!   and the cursor grow with what was printed since.
//! - (A room followed without `--after` starts where the notifier says it does, in its first
//!   `Subscribed` message: the room's sequence at that moment. So a resume also fetches a
//!   lower sequence that was still queued, overtaken by a more urgent one, when a stream broke.)

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    io::Write as _,
    process::ExitCode,
    time::Duration,
};

use clap::ValueEnum;
use phantom_kit::{CancellationToken, server::cancel_on_signals};
use phantom_layers::backoff::{Backoff, Strategy};
use phantom_proto::pb::{self, notifier_client::NotifierClient, subscribe_response::Event};
use serde_json::json;
use tonic::{Code, Status, transport::Endpoint};

use super::Output;
use super::{
    errln, exit_for, print_status, rfc3339,
    terminal::{inert, inert_lines},
};

/// First delay before subscribing again.
const BACKOFF_INITIAL: Duration = Duration::from_millis(200);
/// Longest delay before subscribing again.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Lowest priority printed (`--min-priority`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MinPriority {
    /// Everything.
    Low,
    /// Progress and status changes and above.
    Normal,
    /// Scan completions, findings and above.
    High,
    /// Security alerts and system failures only.
    Critical,
}

impl From<MinPriority> for pb::Priority {
    fn from(p: MinPriority) -> Self {
        match p {
            MinPriority::Low => Self::Low,
            MinPriority::Normal => Self::Normal,
            MinPriority::High => Self::High,
            MinPriority::Critical => Self::Critical,
        }
    }
}

/// Lowest finding severity printed (`--min-severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MinSeverity {
    /// Everything.
    Info,
    /// CVSS 0.1 and above.
    Low,
    /// CVSS 4.0 and above.
    Medium,
    /// CVSS 7.0 and above.
    High,
    /// CVSS 9.0 and above.
    Critical,
}

impl From<MinSeverity> for pb::Severity {
    fn from(s: MinSeverity) -> Self {
        match s {
            MinSeverity::Info => Self::Info,
            MinSeverity::Low => Self::Low,
            MinSeverity::Medium => Self::Medium,
            MinSeverity::High => Self::High,
            MinSeverity::Critical => Self::Critical,
        }
    }
}

/// What to watch.
#[derive(Debug)]
pub struct Args {
    /// notifier URL.
    pub addr: String,
    /// Rooms to follow.
    pub rooms: Vec<String>,
    /// Per room, the sequence to start after; other rooms start live.
    pub after: Vec<(String, u64)>,
    /// Lowest priority printed.
    pub min_priority: Option<MinPriority>,
    /// Types printed (empty: all).
    pub types: Vec<String>,
    /// Lowest finding severity printed.
    pub min_severity: Option<MinSeverity>,
    /// Output format.
    pub output: Output,
    /// The credential and transport.
    pub credentials: super::remote::Credentials,
}

/// Parses `room:sequence` (the room may itself contain `:`).
pub fn parse_after(s: &str) -> Result<(String, u64), String> {
    let (room, seq) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not room:sequence"))?;
    let seq = seq
        .parse()
        .map_err(|_| format!("{seq:?} is not a sequence number"))?;
    if room.is_empty() {
        return Err(format!("{s:?} names no room"));
    }
    Ok((room.to_owned(), seq))
}

/// The sequences of one room seen so far, as disjoint runs `start -> end` (both included),
/// merged as they meet. The first run's end is the room's watermark; the other runs are what
/// was seen above it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Runs(BTreeMap<u64, u64>);

impl Runs {
    /// Adds `seq`; false when it was there already.
    fn insert(&mut self, seq: u64) -> bool {
        let next = seq.checked_add(1);
        if let Some((&start, &end)) = self.0.range(..=seq).next_back() {
            if seq <= end {
                return false;
            }
            if end.checked_add(1) == Some(seq) {
                let end = next.and_then(|n| self.0.remove(&n)).unwrap_or(seq);
                self.0.insert(start, end);
                return true;
            }
        }
        let end = next.and_then(|n| self.0.remove(&n)).unwrap_or(seq);
        self.0.insert(seq, end);
        true
    }

    fn watermark(&self) -> Option<u64> {
        self.0.first_key_value().map(|(_, &end)| end)
    }
}

/// What a watcher has printed, per room, and where it resumes.
///
/// A room started with `--after N` begins with the run `0..=N` (sequences start at 1), so its
/// watermark is the highest sequence up to which every one was printed: what `Subscribe`'s
/// `after_sequence` asks for. A room started live begins where the notifier's `Subscribed`
/// message says, so a lower sequence arriving later (it was queued behind a more urgent one)
/// still counts as new, and is fetched again if a stream breaks first.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    rooms: HashMap<String, Runs>,
    /// The notifier log's epoch the sequences belong to, once a `Subscribed` said it.
    epoch: Option<String>,
}

impl Cursor {
    /// A cursor starting each room of `after` after its sequence; other rooms start live.
    pub fn new(after: &[(String, u64)]) -> Self {
        let rooms = after
            .iter()
            .map(|(room, seq)| (room.clone(), Runs(BTreeMap::from([(0, *seq)]))))
            .collect();
        Self { rooms, epoch: None }
    }

    /// The notifier's log lost its data and its sequences started again: every room followed
    /// starts over from the beginning of the new epoch (what was printed before stays
    /// printed; what the new epoch holds is all new).
    pub fn log_reset(&mut self) {
        for runs in self.rooms.values_mut() {
            *runs = Runs(BTreeMap::from([(0, 0)]));
        }
        self.epoch = None;
    }

    /// Records sequence `seq` of `room`: true the first time (print it), false for a repeat.
    pub fn first_time(&mut self, room: &str, seq: u64) -> bool {
        if let Some(runs) = self.rooms.get_mut(room) {
            return runs.insert(seq);
        }
        let mut runs = Runs::default();
        runs.insert(seq);
        self.rooms.insert(room.to_owned(), runs);
        true
    }

    /// The server says where `room` starts (its `Subscribed` event): a room not yet followed
    /// begins with the run `0..=after`, so every later sequence counts, whatever the order
    /// it arrives in. A room already followed keeps what it has.
    pub fn starts_at(&mut self, room: &str, after: u64) {
        self.rooms
            .entry(room.to_owned())
            .or_insert_with(|| Runs(BTreeMap::from([(0, after)])));
    }

    /// Per room started or seen, the sequence to resume after: its watermark.
    pub fn resume_points(&self) -> HashMap<String, u64> {
        self.rooms
            .iter()
            .filter_map(|(room, runs)| Some((room.clone(), runs.watermark()?)))
            .collect()
    }
}

impl fmt::Display for Cursor {
    /// `after room:watermark, ...` (sorted), or `live` before anything was seen.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let points: BTreeMap<_, _> = self.resume_points().into_iter().collect();
        if points.is_empty() {
            return f.write_str("live");
        }
        let mut sep = "after ";
        for (room, seq) in points {
            write!(f, "{sep}{room}:{seq}")?;
            sep = ", ";
        }
        Ok(())
    }
}

/// When to subscribe again: exponential backoff with full jitter, reset once a stream
/// delivers (so one blip after hours of service waits 200 ms, not the last delay).
#[derive(Debug)]
struct Reconnect {
    policy: Backoff,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Reconnect {
    fn new(rng: fastrand::Rng) -> Self {
        Self {
            policy: Backoff {
                strategy: Strategy::FullJitter,
                initial: BACKOFF_INITIAL,
                max: BACKOFF_MAX,
                multiplier: 2.0,
            },
            attempt: 0,
            rng,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self
            .policy
            .delay(self.attempt, Duration::ZERO, &mut self.rng);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Whether `status` says the log was reset since the epoch the watcher's positions belong to:
/// a resume refused, or a live stream ended when the first notification of a new epoch came.
fn is_log_reset(status: &Status) -> bool {
    use tonic_types::StatusExt as _;
    status.code() == Code::FailedPrecondition
        && status
            .get_details_error_info()
            .is_some_and(|info| info.reason == "LOG_RESET")
}

/// Whether subscribing again would meet the same refusal. Unlike [`phantom_layers::classify`]
/// (for unary calls), a broken stream's UNKNOWN or INTERNAL is worth another attempt: a
/// subscription is a read resumed from the cursor, and h2 errors surface as those codes.
fn refused(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Unauthenticated
    )
}

/// How one subscription ended.
#[derive(Debug)]
enum Ended {
    /// Ctrl-C or SIGTERM.
    Shutdown,
    /// Nobody reads stdout any more (`phantom watch … | head`).
    StdoutClosed,
    /// Refused for a reason another attempt would meet again (a bad room name, ...).
    Refused(Status),
    /// The server dropped LOW or NORMAL notifications for this watcher; a replay fetches them.
    Dropped {
        /// LOW dropped.
        low: u64,
        /// NORMAL dropped.
        normal: u64,
    },
    /// The connection or the stream broke: subscribe again after a backoff.
    Broken(String),
}

fn priority_name(priority: i32) -> &'static str {
    pb::Priority::try_from(priority)
        .map(|p| p.as_str_name().trim_start_matches("PRIORITY_"))
        .unwrap_or("UNKNOWN")
}

/// Prints notifications as table rows (a header first) or JSON lines.
#[derive(Debug)]
struct Printer {
    output: Output,
    header_done: bool,
}

impl Printer {
    fn print(&mut self, n: &pb::Notification) -> std::io::Result<()> {
        let text = self.render(n);
        std::io::stdout().lock().write_all(text.as_bytes())
    }

    /// What printing `n` writes: its line (after the header, the first time).
    fn render(&mut self, n: &pb::Notification) -> String {
        let mut out = String::new();
        match self.output {
            // CSV and SARIF describe findings; a feed is JSON lines.
            Output::Json | Output::Csv | Output::Sarif => {
                let line = notification_json(n).to_string();
                out.push_str(&format!("{}\n", inert_lines(&line)));
            }
            Output::Table => {
                if !self.header_done {
                    out.push_str(&format!(
                        "{:<20}  {:<20}  {:>6}  {:<8}  {:<16}  PAYLOAD\n",
                        "TIME", "ROOM", "SEQ", "PRIORITY", "TYPE"
                    ));
                    self.header_done = true;
                }
                // One line per notification, whatever its fields hold: a line break could
                // forge a line, an escape sequence could rewrite the screen.
                out.push_str(&format!(
                    "{:<20}  {:<20}  {:>6}  {:<8}  {:<16}  {}\n",
                    rfc3339(n.created_at.as_ref()),
                    inert(&n.room),
                    n.sequence,
                    priority_name(n.priority),
                    inert(&n.r#type),
                    inert(&n.payload),
                ));
            }
        }
        out
    }
}

/// A notification as the WebSocket gateway shapes it, with its time in RFC 3339.
fn notification_json(n: &pb::Notification) -> serde_json::Value {
    let severity = pb::Severity::try_from(n.severity)
        .ok()
        .filter(|s| *s != pb::Severity::Unspecified)
        .map(|s| s.as_str_name().trim_start_matches("SEVERITY_"));
    json!({
        "kind": "notification",
        "room": n.room,
        "sequence": n.sequence,
        "priority": priority_name(n.priority),
        "type": n.r#type,
        "severity": severity,
        "payload": n.payload,
        "id": n.id,
        "created_at": rfc3339(n.created_at.as_ref()),
    })
}

/// Subscribes once, from the cursor, and prints until the subscription ends.
async fn subscribe(
    endpoint: &Endpoint,
    args: &Args,
    cursor: &mut Cursor,
    reconnect: &mut Reconnect,
    printer: &mut Printer,
    shutdown: &CancellationToken,
) -> Ended {
    let connected = tokio::select! {
        () = shutdown.cancelled() => return Ended::Shutdown,
        c = args.credentials.connect(&args.addr, endpoint) => match c {
            Ok(c) => c,
            Err(_) => return Ended::Refused(Status::invalid_argument(
                "the TLS options do not load (see the message above)",
            )),
        },
    };
    let channel = match connected {
        Ok(c) => match args.credentials.wrap(&args.addr, c) {
            Ok(c) => c,
            Err(_) => {
                return Ended::Refused(Status::invalid_argument(
                    "the token has characters a header cannot carry",
                ));
            }
        },
        Err(e) => {
            // The transport error's own text is only "transport error": say why.
            let mut why = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(e) = source {
                why = format!("{why}: {e}");
                source = e.source();
            }
            return Ended::Broken(format!("cannot connect to {}: {why}", args.addr));
        }
    };
    let request = pb::SubscribeRequest {
        rooms: args.rooms.clone(),
        min_priority: args
            .min_priority
            .map_or(0, |p| pb::Priority::from(p) as i32),
        after_sequence: cursor.resume_points(),
        epoch: cursor.epoch.clone().unwrap_or_default(),
        types: args.types.clone(),
        min_severity: args
            .min_severity
            .map_or(0, |s| pb::Severity::from(s) as i32),
    };
    let mut client = NotifierClient::new(channel);
    let subscribed = tokio::select! {
        () = shutdown.cancelled() => return Ended::Shutdown,
        s = client.subscribe(request) => s,
    };
    let mut stream = match subscribed {
        Ok(s) => s.into_inner(),
        Err(status) if refused(status.code()) => return Ended::Refused(status),
        Err(status) => return Ended::Broken(describe(&status)),
    };
    loop {
        let item = tokio::select! {
            () = shutdown.cancelled() => return Ended::Shutdown,
            item = stream.message() => item,
        };
        match item {
            Ok(Some(item)) => {
                // Delivering (not merely starting) is what proves the stream works.
                if !matches!(item.event, Some(Event::Subscribed(_))) {
                    reconnect.reset();
                }
                match item.event {
                    Some(Event::Notification(n)) => {
                        if cursor.first_time(&n.room, n.sequence) && printer.print(&n).is_err() {
                            return Ended::StdoutClosed;
                        }
                    }
                    // Counts are per subscription, and each new one starts at zero.
                    Some(Event::Heartbeat(h)) if h.dropped_low + h.dropped_normal > 0 => {
                        return Ended::Dropped {
                            low: h.dropped_low,
                            normal: h.dropped_normal,
                        };
                    }
                    Some(Event::Subscribed(start)) => {
                        for (room, after) in start.after_sequence {
                            cursor.starts_at(&room, after);
                        }
                        cursor.epoch = Some(start.epoch);
                    }
                    Some(Event::Heartbeat(_)) | None => {}
                }
            }
            Ok(None) => return Ended::Broken("the notifier ended the stream".into()),
            Err(status) if refused(status.code()) => return Ended::Refused(status),
            Err(status) => return Ended::Broken(describe(&status)),
        }
    }
}

fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), inert(status.message()))
}

/// Follows the rooms until Ctrl-C or SIGTERM (exit 0), or a refusal (exit 2 for the caller's
/// mistakes).
pub async fn run(args: Args) -> ExitCode {
    let endpoint = match args.credentials.endpoint(&args.addr) {
        // Keep-alives find a notifier that vanished without closing the connection.
        Ok(e) => e
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true),
        Err(code) => return code,
    };
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    // Printing blocks while stdout's reader is stalled (a pager); stop even then. This task
    // runs on a worker thread, not on the main thread that may be stuck in a write.
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            std::process::exit(0);
        }
    });
    let mut cursor = Cursor::new(&args.after);
    let mut reconnect = Reconnect::new(fastrand::Rng::new());
    let mut printer = Printer {
        output: args.output,
        header_done: false,
    };
    loop {
        let why = match subscribe(
            &endpoint,
            &args,
            &mut cursor,
            &mut reconnect,
            &mut printer,
            &shutdown,
        )
        .await
        {
            Ended::Shutdown | Ended::StdoutClosed => return ExitCode::SUCCESS,
            Ended::Refused(status) if is_log_reset(&status) => {
                errln!(
                    "phantom watch: the notifier's log lost its data and started again; \
                     replaying its rooms from the start (what was printed stays printed)"
                );
                cursor.log_reset();
                continue;
            }
            Ended::Refused(status) => {
                print_status("Subscribe", &status);
                return exit_for(&status);
            }
            Ended::Dropped { low, normal } => {
                errln!(
                    "phantom watch: the notifier dropped {low} LOW and {normal} NORMAL notifications \
                     (this watcher read too slowly); subscribing again to fetch them (resuming {cursor})"
                );
                continue;
            }
            Ended::Broken(why) => why,
        };
        let delay = reconnect.next_delay();
        errln!(
            "phantom watch: {why}; subscribing again in {} (resuming {cursor})",
            humantime::format_duration(Duration::from_millis(
                u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)
            ))
        );
        tokio::select! {
            () = shutdown.cancelled() => return ExitCode::SUCCESS,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_times(cursor: &mut Cursor, room: &str, seqs: &[u64]) -> Vec<bool> {
        seqs.iter().map(|&s| cursor.first_time(room, s)).collect()
    }

    fn point(cursor: &Cursor, room: &str) -> Option<u64> {
        cursor.resume_points().get(room).copied()
    }

    #[test]
    fn a_log_reset_starts_every_followed_room_over_in_the_new_epoch() {
        let mut c = Cursor::new(&[("a".into(), 0)]);
        assert!(first_times(&mut c, "a", &[1, 2, 3]).iter().all(|&f| f));
        c.starts_at("b", 40);
        c.epoch = Some("old".into());
        c.log_reset();
        assert_eq!(point(&c, "a"), Some(0));
        assert_eq!(point(&c, "b"), Some(0));
        assert_eq!(c.epoch, None, "the next Subscribe asks for no epoch");
        // The new epoch's 1, 2, 3 are new notifications, printed again.
        assert!(first_times(&mut c, "a", &[1, 2, 3]).iter().all(|&f| f));
    }

    #[test]
    fn a_live_stream_ended_by_a_log_reset_is_resubscribed_not_reported() {
        // What the notifier ends a live stream with when a new epoch's notification comes.
        let status = Status::from(phantom_layers::Error::FailedPrecondition {
            reason: "LOG_RESET",
            message: "the notification log lost its data".into(),
        });
        assert!(refused(status.code()), "ends this subscription");
        assert!(
            is_log_reset(&status),
            "and starts the next from the new epoch"
        );
        let other = Status::from(phantom_layers::Error::FailedPrecondition {
            reason: "SOMETHING_ELSE",
            message: String::new(),
        });
        assert!(!is_log_reset(&other));
        assert!(!is_log_reset(&Status::failed_precondition("no details")));
    }

    #[test]
    fn in_order_arrivals_advance_the_watermark_room_by_room() {
        let mut c = Cursor::new(&[("a".into(), 0), ("b".into(), 7)]);
        assert_eq!(point(&c, "a"), Some(0));
        assert_eq!(point(&c, "b"), Some(7));
        assert!(first_times(&mut c, "a", &[1, 2, 3]).iter().all(|&f| f));
        assert!(first_times(&mut c, "b", &[8, 9]).iter().all(|&f| f));
        assert_eq!(point(&c, "a"), Some(3));
        assert_eq!(point(&c, "b"), Some(9));
        assert_eq!(c.to_string(), "after a:3, b:9");
    }

    #[test]
    fn a_critical_overtaking_queued_lows_waits_in_the_watermark_for_them() {
        let mut c = Cursor::new(&[("r".into(), 10)]);
        // 14 (CRITICAL) overtook 11-13 (LOW) in the server's queue.
        assert!(c.first_time("r", 14));
        assert_eq!(point(&c, "r"), Some(10), "11-13 not seen yet");
        assert!(c.first_time("r", 11));
        assert!(c.first_time("r", 12));
        assert_eq!(point(&c, "r"), Some(12));
        assert!(c.first_time("r", 13));
        assert_eq!(point(&c, "r"), Some(14), "the runs merged");
    }

    #[test]
    fn a_live_room_starts_where_the_server_says_and_resumes_below_an_overtaking_one() {
        let mut c = Cursor::new(&[]);
        c.starts_at("r", 5);
        // 7 (CRITICAL) overtook 6: the resume point stays below 6 until 6 is printed.
        assert!(c.first_time("r", 7));
        assert_eq!(point(&c, "r"), Some(5));
        assert!(c.first_time("r", 6));
        assert_eq!(point(&c, "r"), Some(7));
        assert!(!c.first_time("r", 6));
        // A second Subscribed (after a reconnect) does not move a room already followed.
        c.starts_at("r", 2);
        assert_eq!(point(&c, "r"), Some(7));
    }

    #[test]
    fn a_live_room_takes_lower_sequences_that_arrive_late() {
        let mut c = Cursor::new(&[]);
        assert_eq!(c.to_string(), "live");
        assert!(c.resume_points().is_empty(), "nothing seen: stays live");
        assert!(c.first_time("r", 51), "a CRITICAL first");
        assert_eq!(point(&c, "r"), Some(51));
        assert!(c.first_time("r", 49), "a LOW queued before it");
        assert_eq!(point(&c, "r"), Some(49), "50 is still to come");
        assert!(c.first_time("r", 50));
        assert_eq!(point(&c, "r"), Some(51));
        assert!(!c.first_time("r", 49));
    }

    #[test]
    fn a_resume_skips_what_was_printed_above_the_watermark() {
        let mut c = Cursor::new(&[("r".into(), 0)]);
        // 3 was dropped by the server (a slow watcher), 4 and 5 printed.
        assert_eq!(first_times(&mut c, "r", &[1, 2, 4, 5]), vec![true; 4]);
        assert_eq!(
            point(&c, "r"),
            Some(2),
            "resume after the last contiguous one"
        );
        // The replay after 2 gives 3 (new), 4 and 5 (printed already), then 6 live.
        assert_eq!(
            first_times(&mut c, "r", &[3, 4, 5, 6]),
            vec![true, false, false, true]
        );
        assert_eq!(point(&c, "r"), Some(6));
        // Sequences at or below the start point are not printed either.
        let mut c = Cursor::new(&[("r".into(), 5)]);
        assert_eq!(
            first_times(&mut c, "r", &[5, 3, 6, 6]),
            [false, false, true, false]
        );
    }

    fn hostile() -> pb::Notification {
        pb::Notification {
            room: "scan/\u{202e}1".into(),
            sequence: 7,
            priority: pb::Priority::High as i32,
            r#type: "\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}1;1H\u{7f}".into(),
            payload: "ok\n2099-01-01T00:00:00Z  system  1  CRITICAL  forged".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_notification_cannot_send_control_sequences_to_the_terminal() {
        let mut printer = Printer {
            output: Output::Table,
            header_done: false,
        };
        let text = printer.render(&hostile());
        assert_eq!(
            crate::commands::terminal_hazards(&text),
            Vec::<char>::new(),
            "{text:?}"
        );
        assert_eq!(text.lines().count(), 2, "a header and one line: {text:?}");
    }

    #[test]
    fn json_lines_are_inert_and_still_say_the_same() {
        let mut printer = Printer {
            output: Output::Json,
            header_done: false,
        };
        let n = hostile();
        let text = printer.render(&n);
        assert_eq!(
            crate::commands::terminal_hazards(&text),
            Vec::<char>::new(),
            "{text:?}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["type"], n.r#type.as_str());
        assert_eq!(parsed["room"], n.room.as_str());
    }

    #[test]
    fn runs_merge_on_both_sides() {
        let mut r = Runs::default();
        for s in [1, 3, 5, 2, 4] {
            assert!(r.insert(s));
        }
        assert_eq!(r.0, BTreeMap::from([(1, 5)]));
        assert!(r.insert(u64::MAX));
        assert!(!r.insert(u64::MAX));
    }

    #[test]
    fn backoff_is_fully_jittered_doubling_from_200ms_to_10s_and_resets_after_a_delivery() {
        let mut r = Reconnect::new(fastrand::Rng::with_seed(3));
        let mut longest = Duration::ZERO;
        for attempt in 0..12 {
            let bound = (BACKOFF_INITIAL * 2u32.pow(attempt)).min(BACKOFF_MAX);
            let d = r.next_delay();
            assert!(d <= bound, "attempt {attempt}: {d:?} > {bound:?}");
            longest = longest.max(d);
        }
        assert!(
            longest > BACKOFF_INITIAL * 8,
            "the delays grow: {longest:?}"
        );
        // Full jitter: draws spread over [0, bound], not bunched at the bound.
        let mut capped = Reconnect::new(fastrand::Rng::with_seed(9));
        capped.attempt = 20;
        let draws: Vec<Duration> = (0..200)
            .map(|_| {
                capped.attempt = 20;
                capped.next_delay()
            })
            .collect();
        assert!(draws.iter().all(|d| *d <= BACKOFF_MAX));
        assert!(draws.iter().any(|d| *d < BACKOFF_MAX / 4));
        assert!(draws.iter().any(|d| *d > BACKOFF_MAX * 3 / 4));
        r.reset();
        assert!(r.next_delay() <= BACKOFF_INITIAL);
    }

    #[test]
    fn only_the_callers_mistakes_stop_the_watcher() {
        for code in [
            Code::Unavailable,
            Code::ResourceExhausted,
            Code::Unknown,
            Code::Internal,
            Code::Cancelled,
            Code::DeadlineExceeded,
        ] {
            assert!(!refused(code), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::Unimplemented,
        ] {
            assert!(refused(code), "{code:?}");
        }
    }

    #[test]
    fn after_takes_the_last_colon_as_the_separator() {
        assert_eq!(parse_after("scan/1:12"), Ok(("scan/1".into(), 12)));
        assert_eq!(parse_after("a:b:3"), Ok(("a:b".into(), 3)));
        assert!(parse_after("system").is_err());
        assert!(parse_after("system:x").is_err());
        assert!(parse_after(":3").is_err());
    }
}
