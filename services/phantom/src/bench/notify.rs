//! `phantom bench notify`: the notifier's delivery latency, from the start of a `Publish`
//! call to the arrival at each subscriber, for CRITICAL notifications alone (the baseline)
//! and then through a flood of LOW ones, in the same run.
//!
//! An in-process notifier (SQLite in a temporary directory, under `$TMPDIR`; its rate limit
//! out of reach, so the run measures delivery and not the limit) serves `subscribers` subscriptions to one
//! room, sharing `connections` HTTP/2 connections. A CRITICAL is published every
//! `critical_every`, each call on its own task (an open loop: a slow call does not delay the
//! next); during the flood, `flooders` publishers also publish LOW as fast as they are
//! answered. Every payload carries the time its `Publish` call started (nanoseconds since the
//! run's epoch), so each subscriber measures each delivery itself.
//!
//! After each phase the publishers stop, and the run waits until every subscriber has
//! accounted for every notification published: delivered, or dropped as counted by the
//! heartbeat its stream gets once idle.
//!
//! Publishers, subscribers and the notifier share this process and its cores: the figures
//! include the clients' own work, as on a machine running both.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use phantom_kit::{CancellationToken, Listeners};
use phantom_layers::{rate_limit::QuotaConfig, registry::Registry};
use phantom_proto::pb::{self, notifier_client::NotifierClient, subscribe_response::Event};

use crate::config::Config;
use tokio::task::JoinSet;
use tonic::transport::{Channel, Endpoint};

/// The room every subscriber follows.
const ROOM: &str = "bench/notify";
/// Heartbeat period of the benchmark's notifier: short, so the drop counts of a drained
/// stream arrive soon after a phase.
const HEARTBEAT: Duration = Duration::from_millis(200);
/// Longest wait for the subscribers to account for a phase's notifications.
const DRAIN_PATIENCE: Duration = Duration::from_secs(120);
/// Notifications published before measuring, to warm connections, caches and the store.
const WARMUP: u64 = 20;
/// The phase tag of the warm-up's payloads.
const WARMUP_TAG: &str = "warmup";

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct NotifyArgs {
    /// Length of each phase.
    pub duration: Duration,
    /// Subscribers to the room.
    pub subscribers: usize,
    /// HTTP/2 connections the subscribers share.
    pub connections: usize,
    /// Concurrent publishers of the LOW flood.
    pub flooders: usize,
    /// Period of the CRITICAL notifications.
    pub critical_every: Duration,
}

/// The two phases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// CRITICAL notifications alone.
    Baseline = 0,
    /// CRITICAL notifications through a flood of LOW ones.
    Flood = 1,
}

/// The classes measured, as indices.
const CRITICAL: usize = 0;
const LOW: usize = 1;

/// What one subscriber received.
#[derive(Debug, Default)]
struct Received {
    /// Warm-up notifications received.
    warmed: u64,
    /// Delivery latencies (ns), by phase and class.
    latencies: [[Vec<u64>; 2]; 2],
    /// LOW dropped for this subscription, from its latest heartbeat (a running total).
    dropped_low: u64,
    /// Why its stream ended, if it did.
    ended: Option<String>,
}

type Subscribers = Vec<Arc<Mutex<Received>>>;

fn lock(r: &Mutex<Received>) -> std::sync::MutexGuard<'_, Received> {
    r.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Nanoseconds since `epoch`.
fn nanos(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

fn note(priority: pb::Priority, phase: Phase, sent: u64) -> pb::Notification {
    pb::Notification {
        room: ROOM.into(),
        priority: priority as i32,
        r#type: "bench".into(),
        payload: format!("{} {sent}", phase as u8),
        ..Default::default()
    }
}

/// Starts a notifier on a free port; returns its URL, its queue capacity, and the token
/// that stops it.
async fn notifier(data: &Path) -> anyhow::Result<(String, usize, CancellationToken, Registry)> {
    let mut config = Config::default();
    config.storage.data_dir = data.to_owned();
    config.notifier.heartbeat = HEARTBEAT;
    // Every subscriber is this one process: the subscription caps, per caller and per
    // replica, out of reach too.
    config.notifier.max_subscriptions = Some(1_000_000);
    config.notifier.max_subscriptions_per_caller = 1_000_000;
    config.resilience.server.rate_limit.default = QuotaConfig {
        per_second: 1e9,
        burst: 1_000_000_000,
    };
    let capacity = config.notifier.queue_capacity;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let context = phantom_kit::Context::default();
    let registry = context.registry.clone();
    tokio::spawn(phantom_notifier::run(
        config.notifier(),
        Listeners::grpc_only(listener),
        context,
        shutdown.clone(),
    ));
    // Ready means its store is open: Subscribe answers instead of UNAVAILABLE.
    for _ in 0..400 {
        if let Ok(mut c) = NotifierClient::connect(url.clone()).await
            && c.subscribe(pb::SubscribeRequest {
                rooms: vec![ROOM.into()],
                ..Default::default()
            })
            .await
            .is_ok()
        {
            return Ok((url, capacity, shutdown, registry));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("the benchmark's notifier did not start")
}

/// The notifier's writer, from its registry: batches committed, publishes they answered, and
/// the time spent committing them.
#[derive(Debug, Clone, Copy, Default)]
struct Writes {
    batches: u64,
    written: u64,
    commit_seconds: f64,
}

impl Writes {
    fn read(registry: &Registry) -> Self {
        let snapshot = registry.snapshot();
        let counter = |name: &str| {
            snapshot
                .counters
                .iter()
                .filter(|c| c.name == name)
                .map(|c| c.value)
                .sum()
        };
        Self {
            batches: counter("phantom_notifier_write_batches_total"),
            written: counter("phantom_notifier_written_total"),
            commit_seconds: snapshot
                .histograms
                .iter()
                .filter(|h| h.name == "phantom_notifier_write_batch_seconds")
                .map(|h| h.sum)
                .sum(),
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            batches: self.batches - before.batches,
            written: self.written - before.written,
            commit_seconds: self.commit_seconds - before.commit_seconds,
        }
    }
}

async fn connect(url: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// Opens the subscriptions (each one registered in the notifier when this returns) and
/// spawns their readers.
async fn subscribe(
    channels: &[Channel],
    count: usize,
    epoch: Instant,
    readers: &mut JoinSet<()>,
) -> anyhow::Result<Subscribers> {
    let mut calls = JoinSet::new();
    for i in 0..count {
        let mut client = NotifierClient::new(channels[i % channels.len()].clone());
        calls.spawn(async move {
            client
                .subscribe(pb::SubscribeRequest {
                    rooms: vec![ROOM.into()],
                    ..Default::default()
                })
                .await
        });
    }
    let mut subscribers = Vec::with_capacity(count);
    while let Some(call) = calls.join_next().await {
        let mut stream = call?.context("Subscribe")?.into_inner();
        let received = Arc::new(Mutex::new(Received::default()));
        subscribers.push(received.clone());
        readers.spawn(async move {
            loop {
                let item = match stream.message().await {
                    Ok(Some(item)) => item,
                    Ok(None) => break lock(&received).ended = Some("ended".into()),
                    Err(status) => break lock(&received).ended = Some(format!("{status}")),
                };
                match item.event {
                    Some(Event::Notification(n)) => {
                        let now = nanos(epoch);
                        let Some((phase, sent)) = n.payload.split_once(' ') else {
                            continue;
                        };
                        if phase == WARMUP_TAG {
                            lock(&received).warmed += 1;
                            continue;
                        }
                        let (Ok(phase), Ok(sent)) = (phase.parse::<usize>(), sent.parse::<u64>())
                        else {
                            continue;
                        };
                        let class = if n.priority == pb::Priority::Critical as i32 {
                            CRITICAL
                        } else {
                            LOW
                        };
                        lock(&received).latencies[phase.min(1)][class]
                            .push(now.saturating_sub(sent));
                    }
                    Some(Event::Heartbeat(h)) => lock(&received).dropped_low = h.dropped_low,
                    Some(Event::Subscribed(_)) | None => {}
                }
            }
        });
    }
    Ok(subscribers)
}

/// What the publishers of one phase did.
#[derive(Debug, Default)]
struct Published {
    critical: u64,
    low: u64,
    failed: u64,
    /// `Publish` call durations of the CRITICAL notifications (ns).
    critical_acks: Vec<u64>,
}

/// Publishes for `args.duration`: a CRITICAL every `critical_every`, and the LOW flood in
/// [`Phase::Flood`].
async fn publish(
    channel: &Channel,
    phase: Phase,
    args: NotifyArgs,
    epoch: Instant,
) -> anyhow::Result<Published> {
    let stop = CancellationToken::new();
    let critical = tokio::spawn({
        let (client, stop) = (NotifierClient::new(channel.clone()), stop.clone());
        async move {
            let mut tick = tokio::time::interval(args.critical_every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut calls = JoinSet::new();
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let mut client = client.clone();
                calls.spawn(async move {
                    let sent = nanos(epoch);
                    let ok = client
                        .publish(note(pb::Priority::Critical, phase, sent))
                        .await
                        .is_ok();
                    (ok, nanos(epoch) - sent)
                });
            }
            calls.join_all().await
        }
    });
    let flooders = if phase == Phase::Flood {
        args.flooders
    } else {
        0
    };
    let mut flood = JoinSet::new();
    for _ in 0..flooders {
        let (mut client, stop) = (NotifierClient::new(channel.clone()), stop.clone());
        flood.spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while !stop.is_cancelled() {
                match client
                    .publish(note(pb::Priority::Low, phase, nanos(epoch)))
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(_) => failed += 1,
                }
            }
            (ok, failed)
        });
    }
    tokio::time::sleep(args.duration).await;
    stop.cancel();
    let mut published = Published::default();
    for (ok, failed) in flood.join_all().await {
        published.low += ok;
        published.failed += failed;
    }
    for (ok, took) in critical.await? {
        if ok {
            published.critical += 1;
            published.critical_acks.push(took);
        } else {
            published.failed += 1;
        }
    }
    Ok(published)
}

/// Waits until every subscriber has accounted for what was published in `phase`: true when
/// they all have, false when [`DRAIN_PATIENCE`] ran out first.
async fn drain(subscribers: &Subscribers, phase: Phase, published: &Published) -> bool {
    let deadline = Instant::now() + DRAIN_PATIENCE;
    loop {
        let done = subscribers.iter().all(|s| {
            let r = lock(s);
            let [critical, low] = &r.latencies[phase as usize];
            r.ended.is_some()
                || (critical.len() as u64 >= published.critical
                    && low.len() as u64 + r.dropped_low >= published.low)
        });
        if done {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One line of the table: a class in a phase.
#[derive(Debug)]
struct Figures {
    published: u64,
    delivered: u64,
    dropped: Option<u64>,
    /// Delivery latencies (ns), sorted.
    latencies: Vec<u64>,
    /// `Publish` call durations (ns), sorted; CRITICAL only.
    acks: Vec<u64>,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1e6
}

impl Figures {
    fn collect(
        subscribers: &Subscribers,
        phase: Phase,
        class: usize,
        published: u64,
        dropped: Option<u64>,
        acks: &[u64],
    ) -> Self {
        let mut latencies: Vec<u64> = subscribers
            .iter()
            .flat_map(|s| std::mem::take(&mut lock(s).latencies[phase as usize][class]))
            .collect();
        latencies.sort_unstable();
        let mut acks = acks.to_vec();
        acks.sort_unstable();
        Self {
            published,
            delivered: latencies.len() as u64,
            dropped,
            latencies,
            acks,
        }
    }

    fn p50(&self) -> f64 {
        percentile(&self.latencies, 0.5)
    }

    fn p99(&self) -> f64 {
        percentile(&self.latencies, 0.99)
    }

    fn max(&self) -> f64 {
        percentile(&self.latencies, 1.0)
    }

    fn line(&self, phase: &str, class: &str) -> String {
        let acks = if self.acks.is_empty() {
            String::new()
        } else {
            format!(
                "{:>7.2} / {:.2}",
                percentile(&self.acks, 0.5),
                percentile(&self.acks, 0.99)
            )
        };
        format!(
            "{phase:<14} {class:<9} {:>9} {:>11} {:>11} {:>9.2} {:>9.2} {:>9.2}   {acks}",
            self.published,
            self.delivered,
            self.dropped.map_or_else(|| "-".into(), |d| d.to_string()),
            self.p50(),
            self.p99(),
            self.max(),
        )
    }
}

/// The figures of a run, in milliseconds where they are latencies.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    /// CRITICAL alone: p50, p99.
    pub baseline: (f64, f64),
    /// CRITICAL under the LOW flood: p50, p99, max.
    pub flood: (f64, f64, f64),
    /// LOW published per second during the flood.
    pub low_per_s: f64,
    /// Share of LOW offers dropped (%).
    pub low_dropped_pct: f64,
    /// Publish calls that failed, subscriptions that ended early, phases not accounted for.
    pub problems: (u64, usize, usize),
}

/// The notifier suite of the runner: `phantom bench notify` with the runner's duration (and
/// 20 subscribers, a CRITICAL every 20 ms, in a smoke run).
pub async fn suite(options: &super::Options) -> anyhow::Result<super::model::Suite> {
    use super::model::{Better, Metric, Suite, Target};

    let args = NotifyArgs {
        duration: options.duration,
        subscribers: if options.smoke { 20 } else { 1000 },
        connections: if options.smoke { 2 } else { 10 },
        flooders: 2,
        critical_every: Duration::from_millis(if options.smoke { 20 } else { 100 }),
    };
    let s = run(args).await?;
    let mut suite = Suite {
        name: "notifier".into(),
        ..Default::default()
    };
    suite.notes.push(format!(
        "in-process notifier, SQLite under $TMPDIR; {} subscribers of one room; a CRITICAL every \
         {:?}; LOW flood from {} publishers",
        args.subscribers, args.critical_every, args.flooders
    ));
    let m = |name: &str, unit: &str, better, v| Metric::new(name, unit, better, v);
    suite.metrics.extend([
        m("critical_alone_p50_ms", "ms", Better::Lower, s.baseline.0),
        m("critical_alone_p99_ms", "ms", Better::Lower, s.baseline.1),
        m("critical_flood_p50_ms", "ms", Better::Lower, s.flood.0),
        m("critical_flood_p99_ms", "ms", Better::Lower, s.flood.1),
        m("critical_flood_max_ms", "ms", Better::Lower, s.flood.2),
        m(
            "critical_p99_flood_vs_alone",
            "x",
            Better::Lower,
            s.flood.1 / s.baseline.1.max(1e-9),
        )
        .target(Target::AtMost(1.5)),
        m(
            "low_published_per_s",
            "calls/s",
            Better::Higher,
            s.low_per_s,
        ),
        m("low_dropped", "%", Better::Neither, s.low_dropped_pct),
    ]);
    let (failed, ended, unaccounted) = s.problems;
    if failed + ended as u64 + unaccounted as u64 > 0 {
        suite.notes.push(format!(
            "{failed} Publish calls failed; {ended} subscriptions ended early; {unaccounted} \
             phases not fully accounted for"
        ));
    }
    Ok(suite)
}

/// Runs the benchmark, prints its figures and returns them.
pub async fn run(args: NotifyArgs) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        args.subscribers > 0 && args.connections > 0,
        "--subscribers and --connections must be at least 1"
    );
    anyhow::ensure!(
        !args.critical_every.is_zero(),
        "--critical-every must be more than 0"
    );
    let data = tempfile::tempdir()?;
    let (url, capacity, stop, registry) = notifier(data.path()).await?;
    let epoch = Instant::now();
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        channels.push(connect(&url).await?);
    }
    let publisher = connect(&url).await?;
    let mut readers = JoinSet::new();
    let subscribers = subscribe(&channels, args.subscribers, epoch, &mut readers).await?;

    println!(
        "phantom bench notify: {} subscribers of one room over {} HTTP/2 connections (publishers on \
         one more), in-process notifier (SQLite under {}, queue of {capacity} per subscriber); \
         {:?} per phase, a CRITICAL every {:?}, LOW flood from {} publishers",
        args.subscribers,
        args.connections,
        data.path().parent().unwrap_or(data.path()).display(),
        args.duration,
        args.critical_every,
        args.flooders
    );

    // Warm up: connections, the store's pages, the subscribers' buffers.
    let mut client = NotifierClient::new(publisher.clone());
    for _ in 0..WARMUP {
        let mut n = note(pb::Priority::Critical, Phase::Baseline, 0);
        n.payload = format!("{WARMUP_TAG} 0");
        client.publish(n).await.context("warm-up Publish")?;
    }
    let deadline = Instant::now() + DRAIN_PATIENCE;
    while !subscribers.iter().all(|s| lock(s).warmed >= WARMUP) {
        anyhow::ensure!(Instant::now() < deadline, "the warm-up was not delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut rows = Vec::new();
    let mut failed = 0;
    let mut unaccounted = Vec::new();
    let mut writes = Vec::new();
    for phase in [Phase::Baseline, Phase::Flood] {
        let dropped_before: u64 = subscribers.iter().map(|s| lock(s).dropped_low).sum();
        let writes_before = Writes::read(&registry);
        let started = Instant::now();
        let published = publish(&publisher, phase, args, epoch).await?;
        let elapsed = started.elapsed();
        if !drain(&subscribers, phase, &published).await {
            unaccounted.push(phase);
        }
        failed += published.failed;
        let dropped = subscribers.iter().map(|s| lock(s).dropped_low).sum::<u64>() - dropped_before;
        let critical = Figures::collect(
            &subscribers,
            phase,
            CRITICAL,
            published.critical,
            None,
            &published.critical_acks,
        );
        let low = Figures::collect(&subscribers, phase, LOW, published.low, Some(dropped), &[]);
        rows.push((phase, critical, low, elapsed));
        writes.push(Writes::read(&registry).since(writes_before));
    }

    println!(
        "{:<14} {:<9} {:>9} {:>11} {:>11} {:>9} {:>9} {:>9}   publish ack p50 / p99 ms",
        "phase", "class", "published", "delivered", "dropped", "p50 ms", "p99 ms", "max ms"
    );
    for (phase, critical, low, _) in &rows {
        let label = match phase {
            Phase::Baseline => "CRITICAL only",
            Phase::Flood => "LOW flood",
        };
        println!("{}", critical.line(label, "CRITICAL"));
        if *phase == Phase::Flood {
            println!("{}", low.line(label, "LOW"));
        }
    }
    for ((phase, ..), w) in rows.iter().zip(&writes) {
        println!(
            "writer, {:<14} {} batches, {:.1} publishes per batch, commit mean {:.2} ms",
            match phase {
                Phase::Baseline => "CRITICAL only:",
                Phase::Flood => "LOW flood:",
            },
            w.batches,
            w.written as f64 / w.batches.max(1) as f64,
            1e3 * w.commit_seconds / w.batches.max(1) as f64,
        );
    }
    let (_, base, _, _) = &rows[0];
    let (_, critical, low, elapsed) = &rows[1];
    println!(
        "CRITICAL under the flood / baseline:  p50 {:.2}x   p99 {:.2}x   max {:.2}x",
        critical.p50() / base.p50(),
        critical.p99() / base.p99(),
        critical.max() / base.max(),
    );
    println!(
        "LOW under the flood / baseline CRITICAL:  p50 {:.2}x   p99 {:.2}x   max {:.2}x",
        low.p50() / base.p50(),
        low.p99() / base.p99(),
        low.max() / base.max(),
    );
    let offers = low.published * args.subscribers as u64;
    println!(
        "flood: {:.0} LOW published/s, {:.0} delivered/s to all subscribers; {:.1}% of {} LOW \
         offers dropped",
        low.published as f64 / elapsed.as_secs_f64(),
        low.delivered as f64 / elapsed.as_secs_f64(),
        100.0 * low.dropped.unwrap_or(0) as f64 / (offers.max(1)) as f64,
        offers,
    );
    let ended = subscribers
        .iter()
        .filter(|s| lock(s).ended.is_some())
        .count();
    if failed > 0 || ended > 0 || !unaccounted.is_empty() {
        println!(
            "warnings: {failed} Publish calls failed; {ended} subscriptions ended early; phases not \
             fully accounted for within {DRAIN_PATIENCE:?}: {unaccounted:?}"
        );
    }
    stop.cancel();
    readers.shutdown().await;
    Ok(Summary {
        baseline: (base.p50(), base.p99()),
        flood: (critical.p50(), critical.p99(), critical.max()),
        low_per_s: low.published as f64 / elapsed.as_secs_f64(),
        low_dropped_pct: 100.0 * low.dropped.unwrap_or(0) as f64 / (offers.max(1)) as f64,
        problems: (failed, ended, unaccounted.len()),
    })
}
