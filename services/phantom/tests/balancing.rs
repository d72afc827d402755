//! Client-side balancing over three `phantom serve vuln-analyzer` processes behind one peer
//! address: calls spread evenly; one replica made ten times slower is left nearly alone; one
//! killed mid-run costs no call (its failures are retried on the others) and is ejected, then
//! taken back once it serves again.

mod common;

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use phantom_kit::{
    client::{self, Balance, BalanceConfig, BalanceSnapshot},
    config::ClientPolicy,
};
use phantom_layers::registry::Registry;
use phantom_proto::pb::{self, vuln_analyzer_client::VulnAnalyzerClient};

use common::{BIN, Killed, free_port, serving};

/// Calls in flight at once from the test's client.
const CONCURRENCY: usize = 12;

/// `phantom serve vuln-analyzer` on `port`, with its own embedded database.
fn analyzer(port: u16, data: &std::path::Path) -> Killed {
    let child = Command::new(BIN)
        .args(["serve", "vuln-analyzer"])
        .env("PHANTOM_DATA_DIR", data.join(port.to_string()))
        .env("PHANTOM_VULN_ANALYZER_ADDR", format!("127.0.0.1:{port}"))
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("OPENAI_API_KEY")
        // Who may call, and how often, is not this test's subject.
        .env("PHANTOM__AUTH__ENABLED", "false")
        .env("PHANTOM__RESILIENCE__SERVER__RATE_LIMIT__ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("phantom serve starts");
    Killed(child)
}

fn snapshot(registry: &Registry) -> BalanceSnapshot {
    registry
        .sources()
        .into_iter()
        .find(|(name, _)| name == "test->vuln-analyzer")
        .and_then(|(_, s)| s.as_any().downcast_ref::<Balance>().map(Balance::snapshot))
        .expect("the balancer is registered")
}

/// Calls answered per endpoint so far, in the order of `ports`.
fn calls(registry: &Registry, ports: &[u16]) -> Vec<u64> {
    let s = snapshot(registry);
    ports
        .iter()
        .map(|p| {
            s.endpoints
                .iter()
                .find(|e| e.addr == format!("127.0.0.1:{p}"))
                .map_or(0, |e| e.calls)
        })
        .collect()
}

fn state(registry: &Registry, port: u16) -> &'static str {
    snapshot(registry)
        .endpoints
        .iter()
        .find(|e| e.addr == format!("127.0.0.1:{port}"))
        .map_or("absent", |e| e.state)
}

/// Calls ScoreCvss from `CONCURRENCY` tasks until `stop`; returns (answered, failed).
async fn load(
    client: VulnAnalyzerClient<client::GrpcChannel>,
    stop: Arc<AtomicBool>,
) -> (u64, u64) {
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let tasks: Vec<_> = (0..CONCURRENCY)
        .map(|_| {
            let (mut client, stop, ok, failed) =
                (client.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let request = pb::ScoreCvssRequest {
                        vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".into(),
                    };
                    match client.score_cvss(request).await {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(status) => {
                            eprintln!("failed call: {status:?}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed))
}

/// Runs `load` for `d`.
async fn load_for(client: &VulnAnalyzerClient<client::GrpcChannel>, d: Duration) -> (u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(client.clone(), stop.clone()));
    tokio::time::sleep(d).await;
    stop.store(true, Ordering::Relaxed);
    running.await.unwrap()
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_over_replicas_avoid_a_slow_one_and_survive_a_killed_one() {
    let data = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut processes: Vec<Killed> = ports.iter().map(|p| analyzer(*p, data.path())).collect();
    for p in &ports {
        serving(*p).await;
    }
    let url = ports
        .iter()
        .map(|p| format!("http://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let registry = Registry::default();
    let policy = ClientPolicy {
        balance: BalanceConfig {
            base_ejection: Duration::from_secs(1),
            ..BalanceConfig::default()
        },
        ..ClientPolicy::default()
    };
    let channel = client::channel(
        "test",
        "vuln-analyzer",
        &url,
        &policy,
        None,
        None,
        &registry,
    )
    .unwrap();
    let client = VulnAnalyzerClient::new(channel);

    // 1. Even: three equal replicas take a third each, within ±15 %.
    let (ok, failed) = load_for(&client, Duration::from_secs(4)).await;
    let spread = calls(&registry, &ports);
    let even = ok as f64 / 3.0;
    println!("even: {ok} calls, {failed} failed, per replica {spread:?}");
    assert_eq!(failed, 0);
    for n in &spread {
        assert!(
            (*n as f64 - even).abs() <= 0.15 * even,
            "{spread:?} is not within 15 % of {even:.0} each"
        );
    }

    // 2. Slow: replica 0 stopped 90 ms of every 100 ms (ten times slower) gets under 5 % of
    //    the calls once 10 s have passed.
    let slow_pid = processes[0].0.id();
    let slowing = Arc::new(AtomicBool::new(true));
    let duty = std::thread::spawn({
        let slowing = slowing.clone();
        move || {
            while slowing.load(Ordering::Relaxed) {
                signal(slow_pid, "STOP");
                std::thread::sleep(Duration::from_millis(90));
                signal(slow_pid, "CONT");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    });
    let before = calls(&registry, &ports);
    let (first, _) = load_for(&client, Duration::from_secs(5)).await;
    let settled = calls(&registry, &ports);
    let (ok, failed) = load_for(&client, Duration::from_secs(5)).await;
    let after = calls(&registry, &ports);
    slowing.store(false, Ordering::Relaxed);
    duty.join().unwrap();
    signal(slow_pid, "CONT");
    let slow_share = (after[0] - settled[0]) as f64 / (ok.max(1)) as f64;
    println!(
        "slow: first 5 s {first} calls ({} to the slow one), next 5 s {ok} calls, {:.1} % to the slow one, {failed} failed",
        settled[0] - before[0],
        100.0 * slow_share
    );
    assert!(
        slow_share < 0.05,
        "the slow replica took {:.1} % of the calls in 5-10 s",
        100.0 * slow_share
    );

    // 3. Killed: replica 1 dies mid-run; no call fails (its failures are retried on the
    //    others) and it is ejected.
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(client.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed_at = calls(&registry, &ports)[1];
    signal(processes[1].0.id(), "KILL");
    let _ = processes[1].0.wait();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ejected = state(&registry, ports[1]);
    let ejections = snapshot(&registry).endpoints[1].ejections;
    // 4. Back: it serves again on the same port; once its ejection lapses it is probed back
    //    in and takes calls again.
    processes[1] = analyzer(ports[1], data.path());
    serving(ports[1]).await;
    let back_by = Instant::now() + Duration::from_secs(30);
    let returned = calls(&registry, &ports)[1];
    while calls(&registry, &ports)[1] < returned + 50 {
        assert!(
            Instant::now() < back_by,
            "the restarted replica never took calls again: {:?}",
            snapshot(&registry)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = running.await.unwrap();
    println!(
        "killed: {ok} calls, {failed} failed; the killed replica had {killed_at} calls, was {ejected} \
         ({ejections} ejections), then took {} more after its restart",
        calls(&registry, &ports)[1] - returned
    );
    let retries = registry
        .snapshot()
        .retries
        .into_iter()
        .find(|r| r.name == "test->vuln-analyzer")
        .expect("the retry policy is registered");
    println!("retries: {retries:?}");
    assert_eq!(failed, 0, "a call failed while a replica died");
    assert!(ejections >= 1, "{:?}", snapshot(&registry));
    assert_eq!(state(&registry, ports[1]), "active");
}
