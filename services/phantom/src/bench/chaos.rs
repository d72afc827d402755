//! `phantom bench --chaos`: the design document's claims for the resilience layers (+25-30 %
//! reliability, -20 % latency, +25 % throughput), measured. The same workload runs twice in
//! one run against a whole system (`phantom up`, a child process), first with the resilience
//! layers as shipped, then with every one the configuration can switch off switched off,
//! while a seeded fault injector breaks the system's dependencies on the same schedule in
//! both phases.
//!
//! # The system
//! `phantom up` on free loopback ports, called with the services' token (AnalyzeFindings
//! takes services only), on PostgreSQL and Redis of its own ([`backends`]) reached through
//! TCP proxies ([`proxy`]), triaging with an OpenAI-compatible fake LLM ([`fake_llm`]). Each
//! phase gets a fresh system: a new process, a new database, Redis restarted empty, a new
//! fake.
//!
//! # The workload ([`workload`])
//! An open loop, the same in both phases: AnalyzeFindings of one new finding (so one
//! triage) 8 times a second, Publish 20 times a second with a subscriber counting what is
//! delivered, and a scan a second of three loopback listeners (so with findings, analyzed
//! and notified by the system itself), polled until it ends. Every call has a deadline and
//! its gRPC status is checked.
//!
//! # The faults ([`schedule`])
//! In this order, with quiet gaps between them, their starts moved by the seed: the LLM
//! fails 30 % of triages (HTTP 500) and hangs 10 %; the LLM answers 429 with Retry-After;
//! Redis is stopped for 10 s and started again empty; PostgreSQL's requests are held back
//! 250 ms each. A fault on a backend that is not installed is skipped, and the notes say so.
//!
//! # The figures ([`figures`])
//! Per phase (`on/…`, `off/…`): success rate within the deadline, p50 and p99 latency of
//! every call (and of the successful ones), goodput, calls wasted on a dead dependency
//! (counted by the fake LLM and the Redis proxy), the time to recover from each fault, the
//! success rate while each fault was on, per-call-kind figures, and the share of analyses the
//! rules answered for a wanted LLM (what the LLM's breaker trades for availability);
//! `on_vs_off/…` ratios with the design document's claims as targets. Throughput and success rate over
//! time and latency CDFs per phase, and every fault injected and lifted (and every breaker
//! seen changing state on `/health/metrics`) as events.
//!
//! Of the runner's options, `smoke` shrinks the schedule (phases of 5 s instead of 62 s) and
//! `warmup` is the load sent before each phase's measurement starts; the phases have the
//! schedule's length whatever `duration` says (the faults need it), and the open loop has
//! no `concurrency`. One run (`phantom bench --chaos --repeat 1`) takes a little over two
//! minutes (132 s on a 2-core machine).

mod backends;
mod fake_llm;
mod figures;
mod proxy;
mod schedule;
mod workload;

use std::{collections::HashSet, net::SocketAddr, path::Path, time::Duration};

use anyhow::Context as _;
use phantom_kit::CancellationToken;
use tokio::time::Instant;

use self::{
    backends::{Postgres, Redis},
    fake_llm::{FakeLlm, Mode},
    proxy::{Protocol, Proxy},
    schedule::{DB_DELAY, FaultKind, SEED, Schedule},
    workload::{Clients, Listeners, Record, Subscriber, since},
};
use super::{
    Options,
    attacks::{printed_addresses, up_command},
    model::{Event, Suite},
};

/// The factor a smoke run's schedule is shrunk by: phases of 5 s.
const SMOKE_SCALE: f64 = 0.08;
/// Loopback listeners the scans find.
const LISTENERS: usize = 3;
/// The longest the system may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A task aborted when this is dropped: the bench's servers end with their owner.
#[derive(Debug)]
struct Aborting(tokio::task::JoinHandle<()>);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Which way the system is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layers {
    /// The resilience layers as shipped (the defaults).
    On,
    /// Every resilience layer the configuration can switch off, off.
    Off,
}

impl Layers {
    /// Its prefix in metric names.
    fn key(self) -> &'static str {
        match self {
            Layers::On => "on",
            Layers::Off => "off",
        }
    }

    /// Its phase name in events and series.
    fn label(self) -> &'static str {
        match self {
            Layers::On => "layers on",
            Layers::Off => "layers off",
        }
    }

    /// A number for its made-up finding addresses (`10.<n>.x.y`), so the phases never share
    /// a finding.
    fn number(self) -> u8 {
        match self {
            Layers::On => 1,
            Layers::Off => 2,
        }
    }
}

/// One fault as it happened: when it was injected and lifted, seconds after the phase's
/// measurement began.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ran {
    /// The fault.
    pub(crate) kind: FaultKind,
    /// Injected.
    pub(crate) start: f64,
    /// Lifted.
    pub(crate) end: f64,
}

/// What one phase recorded.
#[derive(Debug)]
pub(crate) struct Phase {
    layers: Layers,
    record: Record,
    /// The notifications the subscriber received.
    delivered: HashSet<u64>,
    /// Triages the fake LLM received.
    llm_triages: u64,
    /// Of which it failed, left hanging, or refused with 429.
    wasted_llm: u64,
    /// Connections and commands that reached Redis' proxy while Redis was stopped (`None`
    /// without Redis).
    wasted_redis: Option<u64>,
    /// The faults injected, in order.
    faults: Vec<Ran>,
    /// Faults injected and lifted, breakers changing state.
    events: Vec<Event>,
    /// The LLM client's adaptive rate over time (empty when it is off).
    llm_rate: Vec<(f64, f64)>,
    /// How the system ended, if it exited during the phase.
    exited: Option<String>,
}

/// The configuration file of a phase. Both phases triage with the fake LLM without a token
/// budget: the budget is a cost limit, not a resilience layer, and at 8 triages a second,
/// about 875 tokens each, the default 100,000 tokens a minute would be spent in 14 s and turn
/// the LLM off for most of either phase, hiding what the faults do. Authentication stays on
/// (the bench calls with the services' token, set through the environment): AnalyzeFindings
/// takes services only, and with authentication off the tenant layer drops the caller's
/// deadline from the call's context, so the LLM's wait would not be bound to it as it is in
/// a real deployment.
fn config_toml(layers: Layers) -> String {
    let mut toml = String::from("[analyzer.llm]\nmodel = \"chaos-model\"\ntokens_per_minute = 0\n");
    if layers == Layers::Off {
        toml.push_str(&layers_off());
    }
    toml
}

/// What "layers off" switches off, to follow `[analyzer.llm]`: the LLM client's provider
/// retries (a count, not a switch), breaker and adaptive rate; the cache's breaker; the
/// server's rate limit, load shedding and adaptive concurrency; each client's retries (and
/// hedging, already off by default), bulkhead, adaptive concurrency and circuit breaker.
fn layers_off() -> String {
    let mut off = String::from(
        "max_retries = 0
[resilience.server.rate_limit]
enabled = false
[resilience.server.load_shed]
enabled = false
[resilience.server.adaptive_concurrency]
enabled = false
[analyzer.llm.circuit_breaker]
enabled = false
[analyzer.llm.adaptive_rate]
enabled = false
[cache.circuit_breaker]
enabled = false
",
    );
    for service in crate::config::ServiceName::ALL {
        let c = format!("resilience.clients.{}", service.key());
        for layer in [
            "retry",
            "retry.hedging",
            "bulkhead",
            "adaptive_concurrency",
            "circuit_breaker",
        ] {
            off.push_str(&format!("[{c}.{layer}]\nenabled = false\n"));
        }
    }
    off
}

/// The system's addresses in one phase.
#[derive(Debug, Clone, Copy)]
struct Addrs {
    scan_orchestrator: SocketAddr,
    vuln_analyzer: SocketAddr,
    notifier: SocketAddr,
    health_aggregator: SocketAddr,
    http: SocketAddr,
}

impl From<[SocketAddr; 6]> for Addrs {
    fn from(
        [
            scan_orchestrator,
            vuln_analyzer,
            notifier,
            health_aggregator,
            http,
            _ws,
        ]: [SocketAddr; 6],
    ) -> Self {
        Self {
            scan_orchestrator,
            vuln_analyzer,
            notifier,
            health_aggregator,
            http,
        }
    }
}

impl Addrs {
    fn grpc(&self) -> [SocketAddr; 4] {
        [
            self.scan_orchestrator,
            self.vuln_analyzer,
            self.notifier,
            self.health_aggregator,
        ]
    }
}

/// Runs the chaos scenario: layers on, then off, on one fault schedule.
pub async fn run(options: &Options) -> anyhow::Result<Suite> {
    let wall = std::time::Instant::now();
    let scale = if options.smoke { SMOKE_SCALE } else { 1.0 };
    let schedule = Schedule::new(SEED, scale);
    let postgres = Postgres::start().await.context("starting PostgreSQL")?;
    let mut redis = Redis::start().await.context("starting Redis")?;
    let listeners = Listeners::start(LISTENERS).await?;
    let mut phases = Vec::new();
    for layers in [Layers::On, Layers::Off] {
        let phase = run_phase(
            layers,
            options,
            &schedule,
            postgres.as_ref(),
            redis.as_mut(),
            &listeners,
        )
        .await
        .with_context(|| format!("the phase with the {}", layers.label()))?;
        phases.push(phase);
    }
    let mut suite = figures::suite(&phases, schedule.length, scale);
    let mut all = notes(&schedule, options, postgres.as_ref(), redis.as_ref());
    all.append(&mut suite.notes);
    suite.notes = all;
    suite.notes.push(format!(
        "the whole run took {:.1} s",
        wall.elapsed().as_secs_f64()
    ));
    Ok(suite)
}

/// What the figures mean, and what was skipped.
fn notes(
    schedule: &Schedule,
    options: &Options,
    postgres: Option<&Postgres>,
    redis: Option<&Redis>,
) -> Vec<String> {
    let mut notes = vec![
        format!(
            "workload, the same in both phases (an open loop, after {:.1} s of warm-up, for {:.1} s): \
             AnalyzeFindings of one new finding {}/s (deadline {:?}), Publish {}/s ({:?}) with a \
             subscriber counting deliveries, CreateScan of 127.0.0.1 on {LISTENERS} loopback \
             listeners {}/s ({:?}), each polled with GetScan every {:?} ({:?}) until it ends \
             (completed: succeeded with a finding per listener within {:?}); a call not OK \
             within its deadline is a failure; plain tonic clients without retries call the \
             system, so only its configuration differs",
            options.warmup.as_secs_f64(),
            schedule.length.as_secs_f64(),
            workload::ANALYZE_PER_S,
            workload::ANALYZE_DEADLINE,
            workload::PUBLISH_PER_S,
            workload::PUBLISH_DEADLINE,
            workload::SCANS_PER_S,
            workload::CREATE_DEADLINE,
            workload::POLL_EVERY,
            workload::GET_DEADLINE,
            workload::SCAN_DEADLINE,
        ),
        "the system: phantom up (a child process) with authentication on; the bench calls as \
         a service, with the services' token (PHANTOM_AUTH_SERVICE_TOKEN, set for the child), \
         as AnalyzeFindings takes services only; analyzer.llm.tokens_per_minute = 0 in both \
         phases (a cost limit, not a resilience layer: at this rate the default budget would \
         be spent in 14 s and turn the LLM off in both)"
            .to_owned(),
        "layers on: the shipped defaults. Layers off: [resilience.server] rate_limit, load_shed \
         and adaptive_concurrency off; for every client (scan_orchestrator, vuln_analyzer, \
         notifier, health_aggregator) retry, retry.hedging, bulkhead, adaptive_concurrency and \
         circuit_breaker off; analyzer.llm.circuit_breaker and adaptive_rate off, \
         analyzer.llm.max_retries = 0; cache.circuit_breaker off. The same in both: every \
         timeout (client 10 s, LLM 20 s, cache 250 ms, database acquire 1 s, each cut to the \
         caller's deadline where it applies), the balancer (one endpoint per peer, which it \
         never ejects), hedging (off by default: no method is listed)"
            .to_owned(),
        format!(
            "faults, seed {} (the same schedule in both phases; times from the measurement's \
             start): {}",
            schedule.seed,
            schedule
                .windows
                .iter()
                .map(|w| format!(
                    "{} {:.1}-{:.1} s",
                    w.kind.key(),
                    w.start.as_secs_f64(),
                    w.end.as_secs_f64()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        "wasted calls: triages the fake LLM answered 500 or 429 or left hanging, plus \
         connection attempts and commands that reached the proxy in front of Redis while it \
         was stopped"
            .to_owned(),
        format!(
            "latency percentiles are over every call, failed ones included (a call past its \
             deadline counts as its deadline); recovery: from a fault's lift until the calls \
             sent in a sliding {:.1} s window succeed at {:.0} % of the rate of the {:.1} s \
             before the fault",
            figures::WINDOW_S * schedule.scale,
            figures::RECOVERED_SHARE * 100.0,
            figures::BEFORE_S * schedule.scale
        ),
        "goodput: the offered load is the same in both phases (an open loop), so goodput \
         differs only by the calls that failed; it says nothing of capacity"
            .to_owned(),
    ];
    if postgres.is_none() {
        notes.push(
            "db_latency skipped: PostgreSQL is not installed (no \
             /usr/lib/postgresql/*/bin/initdb); the system ran on its embedded SQLite"
                .to_owned(),
        );
    }
    if redis.is_none() {
        notes.push(
            "redis_down skipped: redis-server is not on PATH; the system ran with its \
             in-process cache and the database's notification log"
                .to_owned(),
        );
    }
    notes
}

/// One phase: a fresh system configured with `layers`, the load and the faults, and what
/// they recorded.
async fn run_phase(
    layers: Layers,
    options: &Options,
    schedule: &Schedule,
    postgres: Option<&Postgres>,
    mut redis: Option<&mut Redis>,
    listeners: &Listeners,
) -> anyhow::Result<Phase> {
    let data = tempfile::Builder::new()
        .prefix("phantom-chaos.")
        .tempdir()?;
    let llm = FakeLlm::start(schedule.seed).await?;
    // The bench calls as a service, with a token of this phase.
    let token = phantom_identity::ServiceToken::generate()?;
    let bearer = phantom_kit::client::bearer_header(&token.bearer("chaos-bench"))
        .context("the services' token is not a header value")?;
    let mut env = vec![
        ("OPENAI_BASE_URL", llm.base_url()),
        ("OPENAI_API_KEY", "sk-chaos-bench".to_owned()),
        (
            "PHANTOM_AUTH_SERVICE_TOKEN",
            token.secret().expose().to_owned(),
        ),
    ];
    let database = match postgres {
        Some(pg) => {
            let name = format!("chaos_{}", layers.key());
            pg.create_database(&name).await?;
            let proxy = Proxy::start(pg.addr(), Protocol::Opaque).await?;
            let url = format!("postgres://postgres@{}/{name}", proxy.addr());
            env.push(("DATABASE_URL", url));
            Some(proxy)
        }
        None => None,
    };
    let cache = match redis.as_deref_mut() {
        Some(r) => {
            // Empty for each phase, as a restart leaves it.
            r.restart().await?;
            let proxy = Proxy::start(r.addr(), Protocol::Resp).await?;
            env.push(("REDIS_URL", format!("redis://{}", proxy.addr())));
            Some(proxy)
        }
        None => None,
    };
    let toml = config_toml(layers);
    let config = data.path().join("phantom.toml");
    std::fs::write(&config, &toml)?;
    let log = data.path().join("phantom.log");
    crate::config::Config::from_sources(
        &toml,
        None,
        env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())),
    )
    .context("the phase's configuration is refused")?;
    let mut child = up_command(&options.phantom, data.path(), Some(&config))
        .envs(env)
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("cannot start {}", options.phantom.display()))?;
    let addrs = match printed_addresses(&mut child).await {
        Ok(a) => Addrs::from(a),
        Err(err) => return Err(err.context(format!("the system's log: {}", tail(&log)))),
    };
    let clients = Clients::new(
        addrs.scan_orchestrator,
        addrs.vuln_analyzer,
        addrs.notifier,
        &bearer,
    )?;
    if let Err(err) = ready(&mut child, &addrs, &clients).await {
        return Err(err.context(format!("the system's log: {}", tail(&log))));
    }
    let subscriber = Subscriber::start(&clients).await?;

    let t0 = Instant::now() + options.warmup;
    let until = t0 + schedule.length;
    let stop = CancellationToken::new();
    let watcher = workload::watch(addrs.http, layers.label(), t0, stop.clone());
    let faults = Faults {
        llm: &llm,
        database: database.as_ref(),
        redis: redis.zip(cache.as_ref()),
    };
    let (record, injected) = tokio::join!(
        workload::run(&clients, layers.number(), &listeners.ports, t0, until),
        faults.inject(schedule, t0, layers.label()),
    );
    let (faults, mut events) = injected?;
    // Deliveries still on their way.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let delivered = subscriber.finish().await;
    stop.cancel();
    let watched = watcher.await.unwrap_or_default();
    events.extend(watched.breakers);
    let exited = child.try_wait()?.map(|s| format!("{s}; {}", tail(&log)));
    let _ = child.start_kill();
    let _ = child.wait().await;
    Ok(Phase {
        layers,
        record,
        delivered,
        llm_triages: llm.triages(),
        wasted_llm: llm.wasted(),
        wasted_redis: cache.as_ref().map(Proxy::wasted),
        faults,
        events,
        llm_rate: watched.llm_rate,
        exited,
    })
}

/// The last lines of the system's log, for an error.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Waits until every server is ready and AnalyzeFindings and Publish answer OK.
async fn ready(
    child: &mut tokio::process::Child,
    addrs: &Addrs,
    clients: &Clients,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut waiting = addrs.grpc().to_vec();
    let mut k = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("the system exited at start-up: {status}");
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the system was not ready within {START_TIMEOUT:?}"
        );
        let mut still = Vec::new();
        for addr in waiting {
            if !serving(addr).await {
                still.push(addr);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            // Findings of a made-up phase 99, in a room of their own: not measured.
            let (_, analyzed) = clients.analyze(99, k).await;
            let (_, published) = clients.publish("bench/chaos-ready", k).await;
            if analyzed.is_ok() && published.is_ok() {
                return Ok(());
            }
            k += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether the gRPC server at `addr` says its readiness is SERVING.
async fn serving(addr: SocketAddr) -> bool {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let check = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .ok()?
            .connect()
            .await
            .ok()?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: "readiness".into(),
            })
            .await
            .ok()?;
        (answer.into_inner().status() == ServingStatus::Serving).then_some(())
    };
    tokio::time::timeout(Duration::from_secs(1), check)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// What the fault injector acts on.
#[derive(Debug)]
struct Faults<'a> {
    llm: &'a FakeLlm,
    database: Option<&'a Proxy>,
    /// Redis, and the proxy in front of it.
    redis: Option<(&'a mut Redis, &'a Proxy)>,
}

impl Faults<'_> {
    /// Injects and lifts each fault of `schedule` it can, timed from `t0`; returns them as
    /// they happened, and as events of `phase`.
    async fn inject(
        mut self,
        schedule: &Schedule,
        t0: Instant,
        phase: &str,
    ) -> anyhow::Result<(Vec<Ran>, Vec<Event>)> {
        let mut ran = Vec::new();
        let mut events = Vec::new();
        let event = |kind: &str, what: String| Event {
            t: since(t0, Instant::now()),
            phase: phase.to_owned(),
            kind: kind.to_owned(),
            what,
        };
        for w in &schedule.windows {
            let possible = match w.kind {
                FaultKind::LlmErrors | FaultKind::LlmRateLimited => true,
                FaultKind::RedisDown => self.redis.is_some(),
                FaultKind::DbLatency => self.database.is_some(),
            };
            if !possible {
                continue;
            }
            tokio::time::sleep_until(t0 + w.start).await;
            self.set(w.kind, true).await?;
            let injected = event("fault", format!("{}: {}", w.kind.key(), w.kind.describe()));
            let start = injected.t;
            events.push(injected);
            tokio::time::sleep_until(t0 + w.end).await;
            self.set(w.kind, false).await?;
            let lifted = event("lifted", format!("{} lifted", w.kind.key()));
            ran.push(Ran {
                kind: w.kind,
                start,
                end: lifted.t,
            });
            events.push(lifted);
        }
        Ok((ran, events))
    }

    /// Injects (`on`) or lifts one fault.
    async fn set(&mut self, kind: FaultKind, on: bool) -> anyhow::Result<()> {
        match kind {
            FaultKind::LlmErrors => {
                self.llm
                    .set_mode(if on { Mode::Erring } else { Mode::Healthy })
            }
            FaultKind::LlmRateLimited => {
                self.llm
                    .set_mode(if on { Mode::RateLimited } else { Mode::Healthy })
            }
            FaultKind::DbLatency => {
                if let Some(db) = self.database {
                    db.set_delay(if on { DB_DELAY } else { Duration::ZERO });
                }
            }
            FaultKind::RedisDown => {
                if let Some((redis, proxy)) = &mut self.redis {
                    if on {
                        proxy.set_down(true);
                        redis.stop().await;
                    } else {
                        redis.restart().await.context("restarting Redis")?;
                        proxy.set_down(false);
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ServiceName};

    fn load(layers: Layers) -> Config {
        Config::from_sources(&config_toml(layers), None, Vec::new()).unwrap()
    }

    #[test]
    fn layers_on_are_the_shipped_resilience_settings() {
        let on = load(Layers::On);
        let defaults = Config::default();
        let text = |c: &Config| {
            (
                toml::to_string(&c.resilience).unwrap(),
                toml::to_string(&c.cache.circuit_breaker).unwrap(),
                toml::to_string(&c.analyzer.llm.circuit_breaker).unwrap(),
                toml::to_string(&c.analyzer.llm.adaptive_rate).unwrap(),
                c.analyzer.llm.max_retries,
            )
        };
        assert_eq!(text(&on), text(&defaults));
        assert!(on.auth.enabled);
        assert_eq!(on.analyzer.llm.tokens_per_minute, 0);
    }

    #[test]
    fn layers_off_switch_off_every_layer_that_has_a_switch() {
        let off = load(Layers::Off);
        let server = &off.resilience.server;
        assert!(!server.rate_limit.enabled);
        assert!(!server.load_shed.enabled);
        assert!(!server.adaptive_concurrency.enabled);
        for service in ServiceName::ALL {
            let client = off.resilience.clients.for_service(service);
            assert!(!client.retry.enabled, "{service}");
            assert!(!client.retry.hedging.enabled, "{service}");
            assert!(!client.bulkhead.enabled, "{service}");
            assert!(!client.adaptive_concurrency.enabled, "{service}");
            assert!(!client.circuit_breaker.enabled, "{service}");
        }
        let llm = &off.analyzer.llm;
        assert!(!llm.circuit_breaker.enabled);
        assert!(!llm.adaptive_rate.enabled);
        assert_eq!(llm.max_retries, 0);
        assert!(!off.cache.circuit_breaker.enabled);
        // Only the switches differ: the timeouts are the same in both phases.
        let on = load(Layers::On);
        assert_eq!(
            off.resilience.clients.vuln_analyzer.timeout,
            on.resilience.clients.vuln_analyzer.timeout
        );
        assert_eq!(llm.timeout, on.analyzer.llm.timeout);
        assert_eq!(off.cache.timeout, on.cache.timeout);
    }
}
