//! The probes' port answers while the API's runtime cannot: liveness is served by a thread
//! and runtime of its own, so a pod whose workers are all busy is not restarted for it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use phantom_kit::{
    CancellationToken, Context,
    config::{ServerSettings, ShutdownConfig},
    server,
};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

/// `Check(liveness)` on `addr` from a thread and runtime of its own; `None` if it never
/// answered SERVING within a minute.
fn liveness_from_elsewhere(addr: std::net::SocketAddr) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while tokio::time::Instant::now() < deadline {
                let channel = tonic::transport::Endpoint::try_from(format!("http://{addr}"))
                    .unwrap()
                    .connect()
                    .await;
                if let Ok(channel) = channel {
                    let status = tonic_health::pb::health_client::HealthClient::new(channel)
                        .check(HealthCheckRequest {
                            service: server::LIVENESS.to_owned(),
                        })
                        .await;
                    if status.is_ok_and(|s| s.into_inner().status() == ServingStatus::Serving) {
                        return true;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            false
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_port_answers_while_every_worker_of_the_api_runtime_is_busy() {
    let (router, health) = server::router(
        "vuln-analyzer",
        &ServerSettings::default(),
        &Context::default(),
        &[],
    )
    .unwrap();
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probes = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probe_addr = probes.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let served = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            server::serve_when_ready(
                "vuln-analyzer",
                router,
                api,
                None,
                Some(probes),
                health,
                &ShutdownConfig::default(),
                shutdown,
                std::future::ready(true),
            )
            .await
        }
    });
    assert!(
        liveness_from_elsewhere(probe_addr).join().unwrap(),
        "the probe port serves"
    );

    // Every worker of this runtime (the API's) spins until the probe has answered.
    let answered = Arc::new(AtomicBool::new(false));
    let (blocked_tx, blocked_rx) = std::sync::mpsc::channel();
    let blockers: Vec<_> = (0..2)
        .map(|_| {
            let (answered, blocked) = (answered.clone(), blocked_tx.clone());
            tokio::spawn(async move {
                blocked.send(()).unwrap();
                let until = std::time::Instant::now() + Duration::from_secs(60);
                while !answered.load(Ordering::SeqCst) && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        })
        .collect();
    for _ in 0..2 {
        blocked_rx.recv().unwrap();
    }
    let probe = liveness_from_elsewhere(probe_addr);
    let ok = tokio::task::block_in_place(|| probe.join().unwrap());
    answered.store(true, Ordering::SeqCst);
    assert!(
        ok,
        "liveness answered while the API's workers were all busy"
    );
    for blocker in blockers {
        blocker.await.unwrap();
    }
    shutdown.cancel();
    served.await.unwrap().unwrap();
}
