//! Per-host politeness across replicas: two scan-orchestrator replicas on one PostgreSQL and
//! one Redis scan the same loopback host at the same time, and the host's listeners see no
//! more than its caps, connections per second and connections open at once, counted over
//! both replicas. The same scans without Redis (each replica capping on its own) exceed them:
//! the measurement can tell the shared cap from per-process ones.
//!
//! The scenarios run one after the other, in one test: replicas claim any pending scan in the
//! database, so two scenarios at once would run each other's scans. Each uses a loopback
//! address of its own (the caps are per host, kept in Redis across runs until they expire),
//! and real listeners that record what they see.

use std::{
    net::{IpAddr, SocketAddr, TcpListener},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use phantom::config::Config;
use phantom_kit::{CancellationToken, Listeners};
use phantom_proto::pb::{self, scan_orchestrator_client::ScanOrchestratorClient};
use phantom_tests::{Running, channel, config_on_backends, wait_for_status, wait_for_success};
use tonic_health::pb::health_check_response::ServingStatus;

/// Connections per second to the host in the rate scenario.
const RATE: usize = 10;
/// Connections open at once to the host in the in-flight scenario.
const IN_FLIGHT: usize = 3;
/// How much shorter than a second the windows the rate is checked over are. The cap holds
/// exactly on Redis's clock (GCRA with a burst of one: admissions at least 1/RATE apart);
/// the listener sees each connection a variable moment later (the connect, the wake-up of
/// its accepting thread on a busy machine), which can bring the k-th and (k+RATE)-th
/// admissions, a second apart, a little closer. 50 ms is far beyond loopback's delays, and
/// far below what per-process caps make (twice the rate).
const WINDOW_SLACK: Duration = Duration::from_millis(50);

/// Listeners on `ports` ports of `host` that call `on_accept` with each connection, on a
/// thread of their own (precise timestamps, whatever the runtime is doing), until dropped.
struct Host {
    addr: IpAddr,
    ports: Vec<u16>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Host {
    fn new(
        addr: &str,
        ports: usize,
        on_accept: impl Fn(std::net::TcpStream) + Send + Sync + 'static,
    ) -> Self {
        let addr: IpAddr = addr.parse().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let on_accept = Arc::new(on_accept);
        let (mut numbers, mut threads) = (Vec::new(), Vec::new());
        for _ in 0..ports {
            let listener = TcpListener::bind(SocketAddr::new(addr, 0)).unwrap();
            numbers.push(listener.local_addr().unwrap().port());
            let (stop, on_accept) = (stop.clone(), on_accept.clone());
            threads.push(std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        on_accept(stream);
                    }
                }
            }));
        }
        Self {
            addr,
            ports: numbers,
            stop,
            threads,
        }
    }

    fn ports(&self) -> String {
        let list: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        list.join(",")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for port in &self.ports {
            // Wakes the accepting thread up, to see the flag.
            let _ = std::net::TcpStream::connect(SocketAddr::new(self.addr, *port));
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Two replicas of `cfg`'s orchestrator (the first with the rest of the system), each running
/// one scan of `host` at the same time, to the end.
async fn two_replicas_scan(cfg: Config, host: &Host) {
    let a = Running::start(cfg.clone()).await;
    // Replica B: another orchestrator on the same database (and Redis, when there is one),
    // using A's analyzer and notifier.
    let mut cfg_b = cfg.clone();
    cfg_b.endpoints.vuln_analyzer = format!("http://{}", a.addrs.vuln_analyzer);
    cfg_b.endpoints.notifier = format!("http://{}", a.addrs.notifier);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_addr = listener.local_addr().unwrap();
    let stop_b = CancellationToken::new();
    let b = tokio::spawn(phantom_scan_orchestrator::run(
        cfg_b.scan_orchestrator(),
        Listeners::grpc_only(listener),
        phantom_kit::Context::default(),
        stop_b.clone(),
    ));
    wait_for_status(b_addr, "", ServingStatus::Serving).await;

    // A scan created on a replica starts there at once: one scan each, together.
    let mut clients = [
        ScanOrchestratorClient::new(channel(a.addrs.scan_orchestrator).await),
        ScanOrchestratorClient::new(channel(b_addr).await),
    ];
    let request = pb::CreateScanRequest {
        targets: vec![host.addr.to_string()],
        ports: host.ports(),
        ..Default::default()
    };
    let [ca, cb] = &mut clients;
    let (sa, sb) = tokio::join!(ca.create_scan(request.clone()), cb.create_scan(request));
    let ids = [sa.unwrap().into_inner().id, sb.unwrap().into_inner().id];
    for (client, id) in clients.iter_mut().zip(&ids) {
        let scan = wait_for_success(client, id).await;
        assert_eq!(scan.findings_count as usize, host.ports.len());
    }
    let store = phantom_scan_orchestrator::repository::SqlScanRepository::new(
        phantom_storage::Database::open_url(&cfg.storage.database_url, 2, Duration::from_secs(5))
            .await
            .unwrap(),
    );
    let mut owners = std::collections::HashSet::new();
    for id in &ids {
        use phantom_scan_orchestrator::repository::ScanRepository as _;
        let id = phantom_domain::ScanId::parse(id).unwrap();
        let scan = store
            .get_scan(&cfg.tenancy.default_tenant, &id)
            .await
            .unwrap()
            .unwrap();
        owners.insert(scan.owner);
    }
    assert_eq!(owners.len(), 2, "each replica ran a scan: {owners:?}");

    stop_b.cancel();
    b.await.unwrap().unwrap();
    a.stop().await;
}

/// The configuration of one scenario: on the provisioned backends, Redis shared by both
/// replicas or not at all.
fn scenario(data: &std::path::Path, test: &str, shared: bool) -> Option<Config> {
    let mut cfg = config_on_backends(data, test)?;
    if !shared {
        cfg.cache.redis_url.clear();
    }
    cfg.scan.claim_every = Duration::from_millis(200);
    // One scan per replica: the first to wake would claim both otherwise.
    cfg.scan.max_concurrent_scans = 1;
    Some(cfg)
}

/// Most timestamps of `times` (sorted) within any window of `width`.
fn most_within(times: &[Instant], width: Duration) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (last, t) in times.iter().enumerate() {
        while *t - times[first] >= width {
            first += 1;
        }
        most = most.max(last - first + 1);
    }
    most
}

/// Accept timestamps of both replicas' scans of a host of 20 ports, with `per_host_rate`.
async fn accepts(addr: &str, shared: bool) -> Option<Vec<Instant>> {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = scenario(data.path(), "politeness-rate", shared)?;
    cfg.scan.per_host_rate = RATE as u32;
    // A plain connect sweep: each connection is one connect, closed at once.
    cfg.scan.banner_timeout = Duration::ZERO;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let host = Host::new(addr, 2 * RATE, {
        let seen = seen.clone();
        move |_| seen.lock().unwrap().push(Instant::now())
    });
    two_replicas_scan(cfg, &host).await;
    drop(host);
    let mut times = std::mem::take(&mut *seen.lock().unwrap());
    times.sort_unstable();
    assert_eq!(times.len(), 2 * 2 * RATE, "every probe connected once");
    Some(times)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_together_never_exceed_a_hosts_caps() {
    let Some(shared) = accepts("127.0.0.21", true).await else {
        return;
    };
    rate_is_shared(&shared).await;
    in_flight_is_shared().await;
}

/// The rate scenario, `shared` measured already.
async fn rate_is_shared(shared: &[Instant]) {
    let per_process = accepts("127.0.0.22", false).await.unwrap();
    let second = Duration::from_secs(1);
    let (on, off) = (
        most_within(shared, second - WINDOW_SLACK),
        most_within(&per_process, second - WINDOW_SLACK),
    );
    eprintln!(
        "connections in any 1 s window (cap {RATE}): shared cap {} ({on} in {:?}), \
         per-process caps {} ({off} in {:?})",
        most_within(shared, second),
        second - WINDOW_SLACK,
        most_within(&per_process, second),
        second - WINDOW_SLACK,
    );
    assert!(on <= RATE, "{on} connections within a second, over {RATE}");
    // Without the shared cap, the same two scans make the host's rate twice over.
    assert!(
        off > RATE + RATE / 2,
        "per-process caps made only {off} connections within a second: the scenario cannot \
         tell them from a shared cap"
    );
}

/// The most connections open at once while both replicas scan a host of 12 ports that holds
/// each connection 150 ms, with `per_host_in_flight`.
async fn most_open(addr: &str, shared: bool) -> Option<usize> {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = scenario(data.path(), "politeness-in-flight", shared)?;
    cfg.scan.per_host_in_flight = IN_FLIGHT as u32;
    // Longer than the listener holds a connection: the scanner waits for it to close.
    cfg.scan.banner_timeout = Duration::from_secs(2);
    let (open, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let host = Host::new(addr, 12, {
        let (open, most) = (open.clone(), most.clone());
        move |stream| {
            let now = open.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let open = open.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(150));
                // Counted out before it is closed: the scanner can only give its slot back
                // after it saw the close, so the count is never behind the replicas'.
                open.fetch_sub(1, Ordering::SeqCst);
                drop(stream);
            });
        }
    });
    two_replicas_scan(cfg, &host).await;
    drop(host);
    Some(most.load(Ordering::SeqCst))
}

/// The in-flight scenario.
async fn in_flight_is_shared() {
    let on = most_open("127.0.0.23", true).await.unwrap();
    let off = most_open("127.0.0.24", false).await.unwrap();
    eprintln!(
        "connections open at once (cap {IN_FLIGHT}): shared cap {on}, per-process caps {off}"
    );
    assert!(
        on <= IN_FLIGHT,
        "{on} connections open at once, over {IN_FLIGHT}"
    );
    assert!(
        off > IN_FLIGHT,
        "per-process caps kept {off} open at once: the scenario cannot tell them from a shared cap"
    );
}

#[test]
fn per_host_caps_out_of_range_are_refused_at_load_naming_the_key() {
    for (toml, key) in [
        ("[scan]\nper_host_rate = 1000001\n", "scan.per_host_rate"),
        (
            "[scan]\nper_host_in_flight = 70000\n",
            "scan.per_host_in_flight",
        ),
        ("[scan]\nper_host_in_flight = -1\n", "per_host_in_flight"),
    ] {
        let refused = Config::from_sources(toml, None, Vec::new())
            .unwrap_err()
            .to_string();
        assert!(refused.contains(key), "{refused}");
    }
    let env = vec![(
        "PHANTOM__SCAN__PER_HOST_RATE".to_owned(),
        "4294967296".to_owned(),
    )];
    let refused = Config::from_sources("", None, env).unwrap_err().to_string();
    assert!(refused.contains("per_host_rate"), "{refused}");
}
