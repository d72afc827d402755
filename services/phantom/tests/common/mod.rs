//! What the tests that run the `phantom` binary share.

#![allow(dead_code, reason = "each test binary uses a part of it")]

use std::{net::TcpListener, process::Child};

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
