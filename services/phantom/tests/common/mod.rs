//! What the tests that run the `phantom` binary share.

#![allow(dead_code, reason = "each test binary uses a part of it")]

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
};

/// The binary under test.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_phantom");

/// A child process killed (and reaped) when dropped, so no test leaves one behind.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port (for a process that binds it next).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `phantom up` on the embedded database in `data`, every listener on a free loopback port,
/// no PostgreSQL or Redis from the environment, stdout piped (it prints the addresses) and
/// stderr silenced. The caller adds what its test is about and spawns it.
pub(crate) fn phantom_up(data: &std::path::Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("up").env("PHANTOM_DATA_DIR", data);
    for var in [
        "PHANTOM_SCAN_ORCHESTRATOR_ADDR",
        "PHANTOM_VULN_ANALYZER_ADDR",
        "PHANTOM_NOTIFIER_ADDR",
        "PHANTOM_HEALTH_AGGREGATOR_ADDR",
        "PHANTOM_HTTP_ADDR",
        "PHANTOM_WS_ADDR",
    ] {
        cmd.env(var, "127.0.0.1:0");
    }
    cmd.env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

/// Waits until `127.0.0.1:port` says its readiness is SERVING (two minutes at most).
pub(crate) async fn serving(port: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        if let Ok(ch) = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
        {
            let status = tonic_health::pb::health_client::HealthClient::new(ch)
                .check(tonic_health::pb::HealthCheckRequest {
                    service: "readiness".into(),
                })
                .await
                .map(|r| r.into_inner().status());
            if status
                .is_ok_and(|s| s == tonic_health::pb::health_check_response::ServingStatus::Serving)
            {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "127.0.0.1:{port} never ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
