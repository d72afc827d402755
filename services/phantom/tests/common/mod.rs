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
