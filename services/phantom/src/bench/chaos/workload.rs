//! What the chaos run asks of the system, and what it records of each answer.
//!
//! The load is an open loop: each kind of call is sent at a fixed rate whatever the system
//! answers, each call in its own task with its own deadline, so a slow system does not get
//! fewer calls (no coordinated omission) and a call held up by a fault counts as the failure
//! it is for its caller. The calls go through plain tonic clients without retries: what
//! differs between the phases is the system's configuration, not its caller's.

use std::{
    collections::{BTreeMap, HashSet},
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::HeaderValue;
use phantom_kit::CancellationToken;
use phantom_proto::pb::{
    self, notifier_client::NotifierClient, scan_orchestrator_client::ScanOrchestratorClient,
    subscribe_response::Event as StreamEvent, vuln_analyzer_client::VulnAnalyzerClient,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    task::JoinSet,
    time::Instant,
};
use tonic::{Code, transport::Channel};
use tower_http::set_header::SetRequestHeaderLayer;

use super::Aborting;
use crate::{bench::model::Event, commands::remote::RemoteChannel};

/// The room the load publishes into and the subscriber follows.
pub(crate) const ROOM: &str = "bench/chaos";

/// AnalyzeFindings calls per second, each with one new finding (so each wants a triage).
pub(crate) const ANALYZE_PER_S: f64 = 8.0;
/// Publish calls per second.
pub(crate) const PUBLISH_PER_S: f64 = 20.0;
/// Scans created per second.
pub(crate) const SCANS_PER_S: f64 = 1.0;
/// Deadline of an AnalyzeFindings call.
pub(crate) const ANALYZE_DEADLINE: Duration = Duration::from_secs(2);
/// Deadline of a Publish call.
pub(crate) const PUBLISH_DEADLINE: Duration = Duration::from_secs(1);
/// Deadline of a CreateScan call.
pub(crate) const CREATE_DEADLINE: Duration = Duration::from_secs(2);
/// Deadline of a GetScan call.
pub(crate) const GET_DEADLINE: Duration = Duration::from_secs(1);
/// How often a scan is polled.
pub(crate) const POLL_EVERY: Duration = Duration::from_millis(250);
/// A scan that has not succeeded this long after it was asked for has failed its caller.
pub(crate) const SCAN_DEADLINE: Duration = Duration::from_secs(5);

/// Which RPC a call was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    /// `VulnAnalyzer/AnalyzeFindings`.
    Analyze,
    /// `Notifier/Publish`.
    Publish,
    /// `ScanOrchestrator/CreateScan`.
    CreateScan,
    /// `ScanOrchestrator/GetScan`.
    GetScan,
}

impl Kind {
    /// Its name in metric names.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Kind::Analyze => "analyze",
            Kind::Publish => "publish",
            Kind::CreateScan => "create_scan",
            Kind::GetScan => "get_scan",
        }
    }
}

/// One call and its answer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    /// Which RPC.
    pub(crate) kind: Kind,
    /// When it was sent, seconds after the start of the phase's measurement (negative in the
    /// warm-up).
    pub(crate) start: f64,
    /// How long until it was answered (its deadline when it was not).
    pub(crate) latency: Duration,
    /// Its gRPC status (`DeadlineExceeded` also when the deadline passed at the caller).
    pub(crate) code: Code,
    /// An analysis answered by the rules for an LLM that was wanted (AnalyzeFindings only).
    pub(crate) degraded: bool,
    /// The status's message (empty when OK).
    pub(crate) message: String,
}

impl Call {
    /// Whether it succeeded within its deadline.
    pub(crate) fn ok(&self) -> bool {
        self.code == Code::Ok
    }
}

/// One scan, from CreateScan to the poll that saw it end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ScanRun {
    /// When it was asked for, as [`Call::start`].
    pub(crate) start: f64,
    /// It succeeded with a finding on every listener, within [`SCAN_DEADLINE`].
    pub(crate) completed: bool,
    /// How long until it was seen to end (or given up on).
    pub(crate) took: Duration,
}

/// What a phase's load recorded.
#[derive(Debug, Default)]
pub(crate) struct Record {
    /// Every call.
    pub(crate) calls: Vec<Call>,
    /// Every scan.
    pub(crate) scans: Vec<ScanRun>,
    /// The notifications published (answered OK): their number, and when they were sent.
    pub(crate) published: Vec<(u64, f64)>,
}

/// The system's three APIs, over one HTTP/2 connection each, every call with the bench's
/// credential.
#[derive(Debug, Clone)]
pub(crate) struct Clients {
    scans: ScanOrchestratorClient<RemoteChannel>,
    analyzer: VulnAnalyzerClient<RemoteChannel>,
    notifier: NotifierClient<RemoteChannel>,
}

/// A channel to `addr` (connected on first use) that sends `bearer` on every call.
fn channel(addr: SocketAddr, bearer: &HeaderValue) -> anyhow::Result<RemoteChannel> {
    let channel = Channel::from_shared(format!("http://{addr}"))?.connect_lazy();
    Ok(tower_layer::Layer::layer(
        &SetRequestHeaderLayer::overriding(http::header::AUTHORIZATION, Some(bearer.clone())),
        channel,
    ))
}

impl Clients {
    /// Clients of the servers at these addresses, calling with `bearer`.
    pub(crate) fn new(
        scan_orchestrator: SocketAddr,
        vuln_analyzer: SocketAddr,
        notifier: SocketAddr,
        bearer: &HeaderValue,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            scans: ScanOrchestratorClient::new(channel(scan_orchestrator, bearer)?),
            analyzer: VulnAnalyzerClient::new(channel(vuln_analyzer, bearer)?),
            notifier: NotifierClient::new(channel(notifier, bearer)?),
        })
    }

    /// One AnalyzeFindings of finding `i` of `phase`: whether the analysis was degraded.
    pub(crate) async fn analyze(
        &self,
        phase: u8,
        i: u64,
    ) -> (Duration, Result<bool, tonic::Status>) {
        let mut client = self.analyzer.clone();
        let request = pb::AnalyzeFindingsRequest {
            findings: vec![finding(phase, i)],
        };
        timed(ANALYZE_DEADLINE, request, |r| async move {
            client
                .analyze_findings(r)
                .await
                .map(|a| a.into_inner().analyses.first().is_some_and(|a| a.degraded))
        })
        .await
    }

    /// One Publish of notification `i` into `room`.
    pub(crate) async fn publish(
        &self,
        room: &str,
        i: u64,
    ) -> (Duration, Result<(), tonic::Status>) {
        let mut client = self.notifier.clone();
        let request = pb::Notification {
            room: room.to_owned(),
            r#type: "chaos".into(),
            payload: i.to_string(),
            priority: pb::Priority::Normal as i32,
            idempotency_key: format!("chaos-{i}"),
            ..Default::default()
        };
        timed(PUBLISH_DEADLINE, request, |r| async move {
            client.publish(r).await.map(|_| ())
        })
        .await
    }

    /// Scan `i` of the loopback `ports`, polled until it ends: its calls and how it went.
    async fn scan(&self, ports: &str, i: u64, t0: Instant) -> (Vec<Call>, ScanRun) {
        let started = Instant::now();
        let start = since(t0, started);
        let mut calls = Vec::new();
        let mut client = self.scans.clone();
        let request = pb::CreateScanRequest {
            targets: vec!["127.0.0.1".into()],
            ports: ports.to_owned(),
            scanner: "builtin".into(),
            idempotency_key: format!("chaos-{i}"),
        };
        let (latency, created) = timed(CREATE_DEADLINE, request, |r| async move {
            client.create_scan(r).await.map(|s| s.into_inner().id)
        })
        .await;
        calls.push(call(Kind::CreateScan, start, latency, &created, false));
        let wanted = ports.split(',').count() as u64;
        let mut completed = false;
        if let Ok(id) = created {
            while started.elapsed() < SCAN_DEADLINE {
                tokio::time::sleep(POLL_EVERY).await;
                let sent = Instant::now();
                let mut client = self.scans.clone();
                let request = pb::GetScanRequest { id: id.clone() };
                let (latency, scan) = timed(GET_DEADLINE, request, |r| async move {
                    client.get_scan(r).await.map(|s| s.into_inner())
                })
                .await;
                calls.push(call(Kind::GetScan, since(t0, sent), latency, &scan, false));
                let Ok(scan) = scan else { continue };
                match scan.state() {
                    pb::ScanState::Pending | pb::ScanState::Running => {}
                    state => {
                        completed = state == pb::ScanState::Succeeded
                            && scan.findings_count >= wanted
                            && started.elapsed() <= SCAN_DEADLINE;
                        break;
                    }
                }
            }
        }
        let run = ScanRun {
            start,
            completed,
            took: started.elapsed().min(SCAN_DEADLINE),
        };
        (calls, run)
    }
}

/// An SSH server's finding on a made-up address of `phase`, distinct for every `i` below
/// 2^24 (so that each is new to the analyzer, and wants a triage).
fn finding(phase: u8, i: u64) -> pb::Finding {
    let target = format!("10.{phase}.{}.{}", (i >> 8) & 0xff, i & 0xff);
    let port = 22 + u32::try_from(i >> 16).unwrap_or(0);
    pb::Finding {
        target,
        port,
        protocol: "tcp".into(),
        service: "ssh".into(),
        banner: "SSH-2.0-OpenSSH_9.2p1".into(),
        engine: "builtin".into(),
        check_id: "open-port".into(),
        title: format!("Port {port}/tcp open (ssh)"),
        ..Default::default()
    }
}

/// Sends `request` with `deadline` (as `grpc-timeout`, and enforced here too): how long the
/// answer took, and the answer or its status. A server answers a call past its deadline
/// CANCELLED ("Timeout expired", tonic's), the caller's own timer DEADLINE_EXCEEDED.
async fn timed<Q, T, F>(
    deadline: Duration,
    request: Q,
    send: impl FnOnce(tonic::Request<Q>) -> F,
) -> (Duration, Result<T, tonic::Status>)
where
    F: Future<Output = Result<T, tonic::Status>>,
{
    let mut request = tonic::Request::new(request);
    request.set_timeout(deadline);
    let started = Instant::now();
    match tokio::time::timeout(deadline, send(request)).await {
        Ok(answer) => (started.elapsed(), answer),
        Err(_) => (
            deadline,
            Err(tonic::Status::deadline_exceeded(
                "no answer within the deadline",
            )),
        ),
    }
}

fn call<T>(
    kind: Kind,
    start: f64,
    latency: Duration,
    r: &Result<T, tonic::Status>,
    degraded: bool,
) -> Call {
    let (code, message) = match r {
        Ok(_) => (Code::Ok, String::new()),
        Err(status) => (status.code(), status.message().to_owned()),
    };
    Call {
        kind,
        start,
        latency,
        code,
        degraded,
        message,
    }
}

/// Seconds from `t0` to `t`, negative before it.
pub(crate) fn since(t0: Instant, t: Instant) -> f64 {
    if t >= t0 {
        (t - t0).as_secs_f64()
    } else {
        -(t0 - t).as_secs_f64()
    }
}

/// Sends one kind of call every `period` until `until`, each in its own task, and waits for
/// the last answers.
async fn generate<F, Fut>(period: Duration, until: Instant, mut send: F)
where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut tick = tokio::time::interval(period);
    let mut calls = JoinSet::new();
    let mut i = 0;
    loop {
        if tick.tick().await >= until {
            break;
        }
        calls.spawn(send(i));
        i += 1;
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
}

/// Runs the load from now until `until`, timing it from `t0` (the warm-up before it is
/// recorded with negative times), scans on the loopback `ports`; returns once every call
/// sent has been answered or given up on.
pub(crate) async fn run(
    clients: &Clients,
    phase: u8,
    ports: &str,
    t0: Instant,
    until: Instant,
) -> Record {
    let record = Arc::new(Mutex::new(Record::default()));
    let per = |rate: f64| Duration::from_secs_f64(1.0 / rate);
    let analyses = generate(per(ANALYZE_PER_S), until, |i| {
        let (clients, record) = (clients.clone(), record.clone());
        async move {
            let start = since(t0, Instant::now());
            let (latency, answer) = clients.analyze(phase, i).await;
            let degraded = answer.as_ref().is_ok_and(|d| *d);
            let c = call(Kind::Analyze, start, latency, &answer, degraded);
            record.lock().expect("record lock").calls.push(c);
        }
    });
    let publishes = generate(per(PUBLISH_PER_S), until, |i| {
        let (clients, record) = (clients.clone(), record.clone());
        async move {
            let start = since(t0, Instant::now());
            let (latency, answer) = clients.publish(ROOM, i).await;
            let mut r = record.lock().expect("record lock");
            if answer.is_ok() {
                r.published.push((i, start));
            }
            r.calls
                .push(call(Kind::Publish, start, latency, &answer, false));
        }
    });
    let scans = generate(per(SCANS_PER_S), until, |i| {
        let (clients, record, ports) = (clients.clone(), record.clone(), ports.to_owned());
        async move {
            let (calls, run) = clients.scan(&ports, i, t0).await;
            let mut r = record.lock().expect("record lock");
            r.calls.extend(calls);
            r.scans.push(run);
        }
    });
    tokio::join!(analyses, publishes, scans);
    std::mem::take(&mut *record.lock().expect("record lock"))
}

/// A subscriber to [`ROOM`] that counts the notifications delivered to it, resuming where it
/// was after a broken stream, and from the start of the new log after a reset (LOG_RESET),
/// as the API asks of a client that wants every notification.
#[derive(Debug)]
pub(crate) struct Subscriber {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<HashSet<u64>>,
}

impl Subscriber {
    /// Subscribes; returns once the subscription is in place.
    pub(crate) async fn start(clients: &Clients) -> anyhow::Result<Self> {
        let stop = CancellationToken::new();
        let (subscribed, first) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(follow(clients.notifier.clone(), stop.clone(), subscribed));
        tokio::time::timeout(Duration::from_secs(10), first)
            .await
            .map_err(|_| anyhow::anyhow!("the subscriber was not subscribed within 10 s"))??;
        Ok(Self { stop, task })
    }

    /// Stops; the numbers of the notifications delivered.
    pub(crate) async fn finish(self) -> HashSet<u64> {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

async fn follow(
    mut client: NotifierClient<RemoteChannel>,
    stop: CancellationToken,
    subscribed: tokio::sync::oneshot::Sender<()>,
) -> HashSet<u64> {
    let mut subscribed = Some(subscribed);
    let mut seen = HashSet::new();
    // Where to resume: the last sequence received and its epoch.
    let mut position: Option<(u64, String)> = None;
    while !stop.is_cancelled() {
        let request = pb::SubscribeRequest {
            rooms: vec![ROOM.to_owned()],
            after_sequence: position
                .as_ref()
                .map(|(seq, _)| [(ROOM.to_owned(), *seq)].into())
                .unwrap_or_default(),
            epoch: position
                .as_ref()
                .map(|(_, e)| e.clone())
                .unwrap_or_default(),
            ..Default::default()
        };
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            s = client.subscribe(request) => s,
        };
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(status) => {
                if status.code() == Code::FailedPrecondition {
                    // LOG_RESET: the log lost its data; everything of the new one is wanted.
                    position = Some((0, String::new()));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            let item = tokio::select! {
                () = stop.cancelled() => break,
                item = stream.message() => item,
            };
            match item {
                Ok(Some(pb::SubscribeResponse { event: Some(event) })) => match event {
                    StreamEvent::Subscribed(s) => {
                        let after = s.after_sequence.get(ROOM).copied().unwrap_or(0);
                        position = Some((after, s.epoch));
                        if let Some(tx) = subscribed.take() {
                            let _ = tx.send(());
                        }
                    }
                    StreamEvent::Notification(n) => {
                        if let Ok(i) = n.payload.parse::<u64>() {
                            seen.insert(i);
                        }
                        if let Some((seq, _)) = &mut position {
                            *seq = (*seq).max(n.sequence);
                        }
                    }
                    StreamEvent::Heartbeat(_) => {}
                },
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(status) => {
                    if status.code() == Code::FailedPrecondition {
                        position = Some((0, String::new()));
                    }
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen
}

/// Loopback TCP servers that greet like an SSH server: what the scans find.
#[derive(Debug)]
pub(crate) struct Listeners {
    /// Their ports, as a CreateScan port list.
    pub(crate) ports: String,
    _servers: Vec<Aborting>,
}

impl Listeners {
    /// `n` of them, on free loopback ports.
    pub(crate) async fn start(n: usize) -> anyhow::Result<Self> {
        let mut ports = Vec::new();
        let mut servers = Vec::new();
        for _ in 0..n {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            ports.push(listener.local_addr()?.port().to_string());
            servers.push(Aborting(tokio::spawn(async move {
                while let Ok((mut s, _)) = listener.accept().await {
                    tokio::spawn(async move {
                        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2p1 chaos\r\n").await;
                        let _ = s.shutdown().await;
                    });
                }
            })));
        }
        Ok(Self {
            ports: ports.join(","),
            _servers: servers,
        })
    }
}

/// One plain HTTP/1.0 GET on loopback: the status and the body, if an answer came in 3 s.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, Vec<u8>)> {
    let fetch = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
        let head = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        tcp.write_all(head.as_bytes()).await.ok()?;
        let mut reply = Vec::new();
        tcp.read_to_end(&mut reply).await.ok()?;
        let split = reply.windows(4).position(|w| w == b"\r\n\r\n")?;
        let status = std::str::from_utf8(&reply[..split])
            .ok()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((status, reply[split + 4..].to_vec()))
    };
    tokio::time::timeout(Duration::from_secs(3), fetch)
        .await
        .ok()
        .flatten()
}

/// What the system said of itself during a phase.
#[derive(Debug, Default)]
pub(crate) struct Watched {
    /// Breakers seen changing state.
    pub(crate) breakers: Vec<Event>,
    /// The LLM client's adaptive rate (calls/s) over time, while it has one.
    pub(crate) llm_rate: Vec<(f64, f64)>,
}

/// Reads every circuit breaker's state and the LLM client's adaptive rate from the
/// health-aggregator's `/health/metrics` each second until stopped, timed from `t0`;
/// breaker changes become events of `phase`. A breaker that opens and closes again within a
/// second may be missed.
pub(crate) fn watch(
    http: SocketAddr,
    phase: &'static str,
    t0: Instant,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Watched> {
    tokio::spawn(async move {
        let mut states = BTreeMap::<String, String>::new();
        let mut watched = Watched::default();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let Some((200, body)) = http_get(http, "/health/metrics").await else {
                continue;
            };
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(&body) else {
                continue;
            };
            let t = since(t0, Instant::now());
            if t < 0.0 {
                continue;
            }
            for breaker in json["circuit_breakers"].as_array().into_iter().flatten() {
                let name = format!(
                    "{} ({})",
                    breaker["name"].as_str().unwrap_or("?"),
                    breaker["service"].as_str().unwrap_or("?")
                );
                let state = breaker["state"].as_str().unwrap_or("?").to_owned();
                let before = states.insert(name.clone(), state.clone());
                let changed = match &before {
                    Some(b) => *b != state,
                    None => state != "CLOSED" && state != "DISABLED",
                };
                if changed {
                    watched.breakers.push(Event {
                        t,
                        phase: phase.to_owned(),
                        kind: "breaker".into(),
                        what: format!(
                            "breaker {name}: {} -> {state}",
                            before.as_deref().unwrap_or("?")
                        ),
                    });
                }
            }
            // A disabled limiter's rate is infinite, which JSON writes as null.
            let rate = json["adaptive_limiters"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["name"] == "vuln-analyzer->llm")
                .and_then(|l| l["current_rate"].as_f64());
            if let Some(rate) = rate {
                watched.llm_rate.push((t, rate));
            }
        }
        watched
    })
}
